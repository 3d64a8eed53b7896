//! The calls the Terraform AWS provider makes for `aws_kms_key` (its public source,
//! `internal/service/kms/key.go`: create, read after every change, update, delete), replayed
//! through `aws-sdk-kms` for every kind of key a user declares. A call Terraform makes that
//! this service answers differently from AWS fails `terraform apply` for everyone who uses it.

use crate::support::*;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, OriginType, Tag};

/// What the provider's read (`findKey`) asks, in its order: DescribeKey, GetKeyPolicy for the
/// policy named `default`, GetKeyRotationStatus when the key's origin is AWS_KMS, and
/// ListResourceTags. Returns (enabled, rotation, tag count).
async fn terraform_read(c: &aws_sdk_kms::Client, key: &str) -> (bool, Option<bool>, usize) {
    let meta = c
        .describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let policy = c
        .get_key_policy()
        .key_id(key)
        .policy_name("default")
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    serde_json::from_str::<serde_json::Value>(&policy).expect("the policy is JSON");
    let rotation = if meta.origin == Some(OriginType::AwsKms) {
        Some(
            c.get_key_rotation_status()
                .key_id(key)
                .send()
                .await
                .unwrap()
                .key_rotation_enabled,
        )
    } else {
        None
    };
    let tags = c
        .list_resource_tags()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default()
        .len();
    (meta.enabled, rotation, tags)
}

#[tokio::test]
async fn aws_kms_key_create_read_update_delete_for_every_kind_of_key() {
    let s = Server::start().await;
    let c = s.client();
    for (spec, usage, rotates) in [
        (
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
            true,
        ),
        (KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt, false),
        (KeySpec::Rsa3072, KeyUsageType::SignVerify, false),
        (KeySpec::EccNistP256, KeyUsageType::SignVerify, false),
        (KeySpec::EccNistP384, KeyUsageType::KeyAgreement, false),
        (KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac, false),
    ] {
        let what = format!("{spec:?}/{usage:?}");
        // Create: CreateKey with the declared attributes and tags.
        let key = c
            .create_key()
            .key_spec(spec.clone())
            .key_usage(usage.clone())
            .description("managed by terraform")
            .tags(
                Tag::builder()
                    .tag_key("team")
                    .tag_value("a")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        // enable_key_rotation = true is declared only where AWS allows it.
        if rotates {
            c.enable_key_rotation().key_id(&key).send().await.unwrap();
        }
        assert_eq!(
            terraform_read(&c, &key).await,
            (true, Some(rotates), 1),
            "{what}"
        );
        // Update: description, policy (PutKeyPolicy named default), tags, then disable last.
        c.update_key_description()
            .key_id(&key)
            .description("still managed by terraform")
            .send()
            .await
            .unwrap();
        let policy = c
            .get_key_policy()
            .key_id(&key)
            .policy_name("default")
            .send()
            .await
            .unwrap()
            .policy
            .unwrap();
        c.put_key_policy()
            .key_id(&key)
            .policy_name("default")
            .policy(policy)
            .bypass_policy_lockout_safety_check(false)
            .send()
            .await
            .unwrap();
        c.tag_resource()
            .key_id(&key)
            .tags(
                Tag::builder()
                    .tag_key("env")
                    .tag_value("prod")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        c.untag_resource()
            .key_id(&key)
            .tag_keys("team")
            .send()
            .await
            .unwrap();
        c.disable_key().key_id(&key).send().await.unwrap();
        assert_eq!(
            terraform_read(&c, &key).await,
            (false, Some(rotates), 1),
            "{what}"
        );
        // Re-enabled first, as the provider does before other changes.
        c.enable_key().key_id(&key).send().await.unwrap();
        // Delete: ScheduleKeyDeletion with the declared window, then the provider waits for
        // DescribeKey to say PendingDeletion; a second delete is answered "is pending
        // deletion", which the provider takes as done.
        c.schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
        let state = c
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_state;
        assert_eq!(state, Some(KeyState::PendingDeletion), "{what}");
        let (code, message) = message(
            c.schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(7)
                .send()
                .await,
        );
        assert_eq!(code, "KMSInvalidStateException", "{what}");
        assert!(message.contains("is pending deletion"), "{what}: {message}");
        // The read Terraform makes of a key pending deletion (a refresh before it is gone).
        assert_eq!(
            terraform_read(&c, &key).await,
            (false, Some(false), 1),
            "{what}"
        );
    }
}
