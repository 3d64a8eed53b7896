//! The calls the Terraform AWS provider makes for `aws_kms_key`, `aws_kms_alias`,
//! `aws_kms_grant`, `aws_kms_ciphertext`, `aws_kms_external_key`, `aws_kms_replica_key` and `aws_kms_custom_key_store` (its public source, `internal/service/kms/`:
//! create, read after every change, update, delete), replayed through `aws-sdk-kms`. A call
//! Terraform makes that this service answers differently from AWS fails `terraform apply` for
//! everyone who uses it.

use crate::support::*;
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, OriginType, Tag};

const ACCOUNT: &str = "123456789012";

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

/// `aws_kms_alias` (`alias.go`): CreateAlias, then the read finds the alias by name in
/// ListAliases (every page) and takes its target key id; UpdateAlias to another key;
/// DeleteAlias. `aws_kms_ciphertext` is one Encrypt with an encryption context.
#[tokio::test]
async fn aws_kms_alias_and_aws_kms_ciphertext() {
    let s = Server::start().await;
    let c = s.client();
    let new_key = || async {
        c.create_key()
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id
    };
    let (k1, k2) = (new_key().await, new_key().await);
    let find = |name: &'static str| {
        let c = c.clone();
        async move {
            let mut marker = None;
            loop {
                let page = c
                    .list_aliases()
                    .set_marker(marker)
                    .limit(1)
                    .send()
                    .await
                    .unwrap();
                if let Some(a) = page.aliases().iter().find(|a| a.alias_name() == Some(name)) {
                    return a.target_key_id().map(str::to_string);
                }
                if !page.truncated() {
                    return None;
                }
                marker = page.next_marker().map(str::to_string);
            }
        }
    };
    c.create_alias()
        .alias_name("alias/terraform")
        .target_key_id(&k1)
        .send()
        .await
        .unwrap();
    assert_eq!(find("alias/terraform").await.as_deref(), Some(k1.as_str()));
    c.update_alias()
        .alias_name("alias/terraform")
        .target_key_id(&k2)
        .send()
        .await
        .unwrap();
    assert_eq!(find("alias/terraform").await.as_deref(), Some(k2.as_str()));
    // aws_kms_ciphertext through the alias.
    let blob = c
        .encrypt()
        .key_id("alias/terraform")
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"secret".to_vec()))
        .encryption_context("app", "terraform")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let plain = c
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("app", "terraform")
        .send()
        .await
        .unwrap();
    assert_eq!(
        plain.key_id.as_deref().map(|a| a.ends_with(&k2)),
        Some(true)
    );
    c.delete_alias()
        .alias_name("alias/terraform")
        .send()
        .await
        .unwrap();
    assert_eq!(find("alias/terraform").await, None);
}

/// `aws_kms_grant` (`grant.go`): CreateGrant with a name, constraints and a retiring
/// principal; the read finds the grant by id in ListGrants for the key (every page); delete
/// retires it (`retire_on_delete`) or revokes it, after which ListGrants no longer has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_grant_create_read_retire_and_revoke() {
    use aws_sdk_kms::types::{GrantConstraints, GrantOperation};
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let admin = format!("arn:aws:iam::{ACCOUNT}:user/admin");
    // A grant names a principal that exists.
    let (grantee, _, _) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "app", None));
    let create = |name: &'static str| {
        let (c, key, grantee, admin) = (c.clone(), key.clone(), grantee.clone(), admin.clone());
        async move {
            c.create_grant()
                .key_id(&key)
                .name(name)
                .grantee_principal(&grantee)
                .retiring_principal(&admin)
                .operations(GrantOperation::Encrypt)
                .operations(GrantOperation::Decrypt)
                .constraints(
                    GrantConstraints::builder()
                        .encryption_context_subset("app", "terraform")
                        .build(),
                )
                .send()
                .await
                .unwrap()
                .grant_id
                .unwrap()
        }
    };
    let listed = |id: String| {
        let (c, key) = (c.clone(), key.clone());
        async move {
            let mut marker = None;
            loop {
                let page = c
                    .list_grants()
                    .key_id(&key)
                    .set_marker(marker)
                    .limit(1)
                    .send()
                    .await
                    .unwrap();
                if let Some(g) = page.grants().iter().find(|g| g.grant_id() == Some(&id)) {
                    return Some(g.clone());
                }
                if !page.truncated() {
                    return None;
                }
                marker = page.next_marker().map(str::to_string);
            }
        }
    };
    let retired = create("retired-on-delete").await;
    let revoked = create("revoked-on-delete").await;
    let g = listed(retired.clone()).await.expect("the grant is listed");
    assert_eq!(g.name(), Some("retired-on-delete"));
    assert_eq!(g.grantee_principal(), Some(grantee.as_str()));
    assert_eq!(g.retiring_principal(), Some(admin.as_str()));
    assert_eq!(g.operations().len(), 2);
    assert!(g.constraints().is_some());
    c.retire_grant()
        .key_id(&key)
        .grant_id(&retired)
        .send()
        .await
        .unwrap();
    c.revoke_grant()
        .key_id(&key)
        .grant_id(&revoked)
        .send()
        .await
        .unwrap();
    assert!(listed(retired).await.is_none());
    assert!(listed(revoked).await.is_none());
}

/// `aws_kms_external_key` (`external_key.go`): CreateKey with `Origin=EXTERNAL` and
/// `KeyUsage=ENCRYPT_DECRYPT`; GetParametersForImport with `RSAES_OAEP_SHA_256` and
/// `RSA_2048`, the material encrypted with Go's `rsa.EncryptOAEP(sha256.New(), …)` over the
/// raw material, ImportKeyMaterial (expiring when `valid_to` is set); then the provider waits
/// for DescribeKey to leave `PendingImport` and show `ValidTo`, reads (DescribeKey,
/// GetKeyPolicy, ListResourceTags — no rotation status for an EXTERNAL key), updates `valid_to`
/// by importing the same material again, disables, and deletes. On a token without OAEP with
/// SHA-256 (SoftHSM 2.6.1) this needs `hsm.oaep_sha256_import_in_service`, which this test sets;
/// without it the import is refused with a sentence that says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_external_key_create_import_read_update_delete() {
    use aws_sdk_kms::primitives::{Blob, DateTime};
    use aws_sdk_kms::types::{AlgorithmSpec, ExpirationModelType, WrappingKeySpec};
    let s = Server::start_with(&[("KMS_HSM__OAEP_SHA256_IMPORT_IN_SERVICE", "true")]).await;
    let c = s.client();
    let material = {
        let mut m = vec![0u8; 32];
        aws_lc_rs::rand::fill(&mut m).unwrap();
        m
    };
    let key = c
        .create_key()
        .key_usage(KeyUsageType::EncryptDecrypt)
        .origin(OriginType::External)
        .bypass_policy_lockout_safety_check(false)
        .description("external, managed by terraform")
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
    let import = |valid_to: Option<i64>| {
        let c = c.clone();
        let key = key.clone();
        let material = material.clone();
        async move {
            let p = c
                .get_parameters_for_import()
                .key_id(&key)
                .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
                .wrapping_key_spec(WrappingKeySpec::Rsa2048)
                .send()
                .await
                .unwrap();
            let public = p.public_key.unwrap().into_inner();
            let wrapping = aws_lc_rs::rsa::OaepPublicEncryptingKey::new(
                aws_lc_rs::rsa::PublicEncryptingKey::from_der(&public).unwrap(),
            )
            .unwrap();
            let mut out = vec![0u8; wrapping.ciphertext_size()];
            let encrypted = wrapping
                .encrypt(
                    &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                    &material,
                    &mut out,
                    None,
                )
                .unwrap()
                .to_vec();
            let mut input = c
                .import_key_material()
                .key_id(&key)
                .import_token(p.import_token.unwrap())
                .encrypted_key_material(Blob::new(encrypted))
                .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire);
            if let Some(t) = valid_to {
                input = input
                    .expiration_model(ExpirationModelType::KeyMaterialExpires)
                    .valid_to(DateTime::from_secs(t));
            }
            input.send().await.unwrap();
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let valid_to = now + 30 * 86400;
    import(Some(valid_to)).await;
    // WaitKeyMaterialImported and WaitKeyValidToPropagated.
    let meta = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(meta.key_state, Some(KeyState::Enabled));
    assert_eq!(meta.origin, Some(OriginType::External));
    assert_eq!(meta.valid_to.map(|t| t.secs()), Some(valid_to));
    assert_eq!(
        meta.expiration_model,
        Some(ExpirationModelType::KeyMaterialExpires)
    );
    assert_eq!(terraform_read(&c, &key).await, (true, None, 1));
    // The imported material is the material: a ciphertext opens outside with it.
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"terraform".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    assert_eq!(crate::import::open_outside(&material, &blob), b"terraform");
    // Update valid_to: the same material imported again with the new date.
    let later = valid_to + 86400;
    import(Some(later)).await;
    let meta = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(meta.valid_to.map(|t| t.secs()), Some(later));
    let back = c
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap()
        .into_inner();
    assert_eq!(back, b"terraform");
    // enabled = false, then destroy.
    c.disable_key().key_id(&key).send().await.unwrap();
    assert_eq!(terraform_read(&c, &key).await, (false, None, 1));
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(30)
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
    assert_eq!(state, Some(KeyState::PendingDeletion));

    // Without the setting, a token without OAEP-SHA-256 refuses the provider's import and
    // says why (a token with it takes it either way).
    if !kryoptic() {
        let s = Server::start().await;
        let c = s.client();
        let key = c
            .create_key()
            .origin(OriginType::External)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id;
        let (code, m) = message(
            c.get_parameters_for_import()
                .key_id(&key)
                .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
                .wrapping_key_spec(WrappingKeySpec::Rsa2048)
                .send()
                .await,
        );
        assert_eq!(code, "UnsupportedOperationException");
        assert!(
            m.contains("Use RSAES_OAEP_SHA_1, or let the service decode it"),
            "{m}"
        );
    }
}

/// `aws_kms_replica_key` (`replica_key.go`): ReplicateKey called in the primary's Region, then
/// in the replica's Region the provider waits for DescribeKey to leave `Creating`, reads
/// (DescribeKey: customer managed, AWS_KMS, a multi-Region REPLICA whose primary it records;
/// GetKeyPolicy; GetKeyRotationStatus; ListResourceTags), updates (description, policy,
/// disable) and deletes (ScheduleKeyDeletion, then DescribeKey until PendingDeletion).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_replica_key_create_read_update_delete() {
    use aws_sdk_kms::types::{KeyManagerType, MultiRegionKeyType};
    let s = Server::start().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let primary = east
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let replica = east
        .replicate_key()
        .key_id(&primary.key_id)
        .replica_region(OTHER_REGION)
        .description("replica, managed by terraform")
        .tags(
            Tag::builder()
                .tag_key("team")
                .tag_value("a")
                .build()
                .unwrap(),
        )
        .bypass_policy_lockout_safety_check(false)
        .send()
        .await
        .unwrap()
        .replica_key_metadata
        .unwrap();
    let id = replica.key_id.clone();
    // WaitReplicaKeyCreated: DescribeKey until the state is Enabled.
    let mut state = None;
    for _ in 0..50 {
        state = west
            .describe_key()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_state;
        if state != Some(KeyState::Creating) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, Some(KeyState::Enabled));
    let meta = west
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(meta.key_manager, Some(KeyManagerType::Customer));
    assert_eq!(meta.origin, Some(OriginType::AwsKms));
    assert_eq!(meta.multi_region, Some(true));
    let config = meta.multi_region_configuration.unwrap();
    assert_eq!(
        config.multi_region_key_type,
        Some(MultiRegionKeyType::Replica)
    );
    assert_eq!(config.primary_key.unwrap().arn, primary.arn.clone());
    assert_eq!(terraform_read(&west, &id).await, (true, Some(false), 1));
    west.update_key_description()
        .key_id(&id)
        .description("still a replica")
        .send()
        .await
        .unwrap();
    let policy = west
        .get_key_policy()
        .key_id(&id)
        .policy_name("default")
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    west.put_key_policy()
        .key_id(&id)
        .policy_name("default")
        .policy(policy)
        .bypass_policy_lockout_safety_check(false)
        .send()
        .await
        .unwrap();
    west.disable_key().key_id(&id).send().await.unwrap();
    assert_eq!(terraform_read(&west, &id).await, (false, Some(false), 1));
    west.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let state = west
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_state;
    assert_eq!(state, Some(KeyState::PendingDeletion));
    let (code, message) = message(
        west.schedule_key_deletion()
            .key_id(&id)
            .pending_window_in_days(7)
            .send()
            .await,
    );
    assert_eq!(code, "KMSInvalidStateException");
    assert!(message.contains("is pending deletion"), "{message}");
}

/// `aws_kms_custom_key_store` (its `custom_key_store.go`): CreateCustomKeyStore, the read by
/// id (DescribeCustomKeyStores with CustomKeyStoreId: cluster, name, trust anchor), an update
/// that always names the cluster beside what changed, delete; the read of a deleted store is
/// CustomKeyStoreNotFoundException, which removes it from the state.
#[tokio::test(flavor = "multi_thread")]
async fn aws_kms_custom_key_store_create_read_update_delete() {
    use crate::custom_key_stores::{with_partition, CLUSTER};
    let (s, _) = with_partition().await;
    let c = s.client();
    let anchor = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let id = c
        .create_custom_key_store()
        .cloud_hsm_cluster_id(CLUSTER)
        .custom_key_store_name("terraform")
        .key_store_password(PIN)
        .trust_anchor_certificate(anchor)
        .send()
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    let read = |c: aws_sdk_kms::Client, id: String| async move {
        c.describe_custom_key_stores()
            .custom_key_store_id(id)
            .send()
            .await
            .map(|o| o.custom_key_stores.unwrap_or_default().remove(0))
    };
    let r = read(c.clone(), id.clone()).await.unwrap();
    assert_eq!(r.cloud_hsm_cluster_id(), Some(CLUSTER));
    assert_eq!(r.custom_key_store_name(), Some("terraform"));
    assert_eq!(r.trust_anchor_certificate(), Some(anchor));
    // An update: the cluster as it is, the name and the password changed.
    c.update_custom_key_store()
        .custom_key_store_id(&id)
        .cloud_hsm_cluster_id(CLUSTER)
        .new_custom_key_store_name("terraform-renamed")
        .key_store_password("another-pin")
        .send()
        .await
        .unwrap();
    let r = read(c.clone(), id.clone()).await.unwrap();
    assert_eq!(r.custom_key_store_name(), Some("terraform-renamed"));
    c.delete_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(read(c.clone(), id.clone()).await),
        "CustomKeyStoreNotFoundException"
    );
}
