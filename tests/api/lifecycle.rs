//! Key states, aliases and tags through the AWS SDK.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, Tag};

fn pt() -> Blob {
    Blob::new(b"lifecycle".to_vec())
}

#[tokio::test]
async fn states_follow_aws_key_state_table() {
    let s = Server::start().await;
    let c = s.client();
    let key = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let (id, arn) = (key.key_id.clone(), key.arn.clone().unwrap());
    let blob = c
        .encrypt()
        .key_id(&id)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    c.disable_key().key_id(&id).send().await.unwrap();
    let d = c
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!((d.key_state, d.enabled), (Some(KeyState::Disabled), false));
    let (code_, m) = message(c.encrypt().key_id(&id).plaintext(pt()).send().await);
    assert_eq!(
        (code_.as_str(), m.as_str()),
        ("DisabledException", format!("{arn} is disabled.").as_str())
    );
    assert_eq!(
        code(c.decrypt().ciphertext_blob(blob.clone()).send().await),
        "DisabledException"
    );
    assert_eq!(
        code(
            c.generate_data_key()
                .key_id(&id)
                .number_of_bytes(8)
                .send()
                .await
        ),
        "DisabledException"
    );
    c.disable_key().key_id(&id).send().await.unwrap();
    c.update_key_description()
        .key_id(&id)
        .description("still managed")
        .send()
        .await
        .unwrap();
    c.enable_key().key_id(&id).send().await.unwrap();
    c.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();

    // Deletion: 7–30 days, default 30. AWS's model takes 1 to 365 (outside it, the model's
    // text); inside it, the service's own text for anything but 7 to 30.
    for (days, text) in [
        (6, "PendingWindowInDays must be between 7 and 30"),
        (1, "PendingWindowInDays must be between 7 and 30"),
        (31, "PendingWindowInDays must be between 7 and 30"),
        (365, "PendingWindowInDays must be between 7 and 30"),
        (0, "1 validation error detected: Value '0' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value greater than or equal to 1"),
        (366, "1 validation error detected: Value '366' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value less than or equal to 365"),
    ] {
        let (c_, m) = message(
            c.schedule_key_deletion()
                .key_id(&id)
                .pending_window_in_days(days)
                .send()
                .await,
        );
        assert_eq!((c_.as_str(), m.as_str()), ("ValidationException", text), "{days}");
    }
    let sch = c.schedule_key_deletion().key_id(&id).send().await.unwrap();
    assert_eq!(sch.key_state, Some(KeyState::PendingDeletion));
    assert_eq!(sch.pending_window_in_days, Some(30));
    let days = (sch.deletion_date.unwrap().as_secs_f64()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64())
        / 86400.0;
    assert!((29.9..30.1).contains(&days), "{days}");
    let d = c
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(d.key_state, Some(KeyState::PendingDeletion));
    assert!(d.deletion_date.is_some());
    let (code_, m) = message(c.encrypt().key_id(&id).plaintext(pt()).send().await);
    assert_eq!(
        (code_.as_str(), m.as_str()),
        (
            "KMSInvalidStateException",
            format!("{arn} is pending deletion.").as_str()
        )
    );
    assert_eq!(
        code(c.decrypt().ciphertext_blob(blob.clone()).send().await),
        "KMSInvalidStateException"
    );
    for r in [
        code(c.enable_key().key_id(&id).send().await),
        code(c.disable_key().key_id(&id).send().await),
        code(c.schedule_key_deletion().key_id(&id).send().await),
        code(
            c.update_key_description()
                .key_id(&id)
                .description("x")
                .send()
                .await,
        ),
        code(
            c.create_alias()
                .alias_name("alias/late")
                .target_key_id(&id)
                .send()
                .await,
        ),
        code(
            c.tag_resource()
                .key_id(&id)
                .tags(Tag::builder().tag_key("a").tag_value("b").build().unwrap())
                .send()
                .await,
        ),
    ] {
        assert_eq!(r, "KMSInvalidStateException");
    }
    // The key policy can change in every state (AWS's key-state table).
    c.put_key_policy()
        .key_id(&id)
        .policy(crate::access::default_policy())
        .send()
        .await
        .unwrap();
    c.get_key_policy().key_id(&id).send().await.unwrap();
    c.list_resource_tags().key_id(&id).send().await.unwrap();
    // Cancelled: back as Disabled.
    assert_eq!(
        c.cancel_key_deletion()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .key_id
            .as_deref(),
        Some(arn.as_str())
    );
    let d = c
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(d.key_state, Some(KeyState::Disabled));
    assert!(d.deletion_date.is_none());
    assert_eq!(d.description.as_deref(), Some("still managed"));
    assert_eq!(
        code(c.cancel_key_deletion().key_id(&id).send().await),
        "KMSInvalidStateException"
    );
    c.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            c.enable_key()
                .key_id(uuid::Uuid::new_v4().to_string())
                .send()
                .await
        ),
        "NotFoundException"
    );
}

/// The operations whose `KeyId` is "the key ID or key ARN" refuse an alias (or an alias ARN)
/// as AWS does (recorded: InvalidArnException, "Key Aliases are not supported for this
/// operation."), and change nothing.
#[tokio::test]
async fn the_operations_that_take_only_a_key_id_refuse_an_alias() {
    let s = Server::start().await;
    let c = s.client();
    let key = c
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    c.create_alias()
        .alias_name("alias/only-ids")
        .target_key_id(&key.key_id)
        .send()
        .await
        .unwrap();
    let want = (
        "InvalidArnException".to_string(),
        "Key Aliases are not supported for this operation.".to_string(),
    );
    for a in [
        "alias/only-ids".to_string(),
        format!("arn:aws:kms:{REGION}:123456789012:alias/only-ids"),
    ] {
        let tag = Tag::builder().tag_key("k").tag_value("v").build().unwrap();
        let answers = [
            (
                "GetKeyPolicy",
                message(c.get_key_policy().key_id(&a).send().await),
            ),
            (
                "ListKeyPolicies",
                message(c.list_key_policies().key_id(&a).send().await),
            ),
            (
                "DisableKey",
                message(c.disable_key().key_id(&a).send().await),
            ),
            ("EnableKey", message(c.enable_key().key_id(&a).send().await)),
            (
                "ScheduleKeyDeletion",
                message(c.schedule_key_deletion().key_id(&a).send().await),
            ),
            (
                "UpdateKeyDescription",
                message(
                    c.update_key_description()
                        .key_id(&a)
                        .description("x")
                        .send()
                        .await,
                ),
            ),
            (
                "TagResource",
                message(c.tag_resource().key_id(&a).tags(tag).send().await),
            ),
            (
                "ListResourceTags",
                message(c.list_resource_tags().key_id(&a).send().await),
            ),
            (
                "CreateGrant",
                message(
                    c.create_grant()
                        .key_id(&a)
                        .grantee_principal("arn:aws:iam::123456789012:root")
                        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                        .send()
                        .await,
                ),
            ),
            (
                "ListGrants",
                message(c.list_grants().key_id(&a).send().await),
            ),
            (
                "ReplicateKey",
                message(
                    c.replicate_key()
                        .key_id(&a)
                        .replica_region(OTHER_REGION)
                        .send()
                        .await,
                ),
            ),
            (
                "GetParametersForImport",
                message(
                    c.get_parameters_for_import()
                        .key_id(&a)
                        .wrapping_algorithm(aws_sdk_kms::types::AlgorithmSpec::RsaesOaepSha256)
                        .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
                        .send()
                        .await,
                ),
            ),
            (
                "ListAliases",
                message(c.list_aliases().key_id(&a).send().await),
            ),
            (
                "GetKeyLastUsage",
                message(c.get_key_last_usage().key_id(&a).send().await),
            ),
        ];
        for (op, answer) in answers {
            assert_eq!(answer, want, "{op} with {a}");
        }
        // The model's constraints are checked first (AWS's framework validates a request
        // before the service reads its key id).
        let (code, m) = message(
            c.schedule_key_deletion()
                .key_id(&a)
                .pending_window_in_days(0)
                .send()
                .await,
        );
        assert_eq!(code, "ValidationException", "{m}");
        assert!(m.contains("'0' at 'pendingWindowInDays'"), "{m}");
        let (code, m) = message(
            c.update_key_description()
                .key_id(&a)
                .description("d".repeat(8193))
                .send()
                .await,
        );
        assert_eq!(code, "ValidationException", "{m}");
        assert!(m.contains("at 'description'"), "{m}");
    }
    let now = c
        .describe_key()
        .key_id("alias/only-ids")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(now.key_state, Some(KeyState::Enabled));
    assert_eq!(now.description.as_deref(), Some(""));
}

#[tokio::test]
async fn aliases_name_keys_everywhere_a_key_id_is_accepted() {
    let s = Server::start().await;
    let c = s.client();
    let k1 = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let k2 = c.create_key().send().await.unwrap().key_metadata.unwrap();
    c.create_alias()
        .alias_name("alias/app/payments")
        .target_key_id(&k1.key_id)
        .send()
        .await
        .unwrap();
    let alias_arn = "arn:aws:kms:us-east-1:123456789012:alias/app/payments";
    for key_id in ["alias/app/payments", alias_arn] {
        let d = c
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(d.key_id, k1.key_id);
    }
    let blob = c
        .encrypt()
        .key_id("alias/app/payments")
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.decrypt()
        .ciphertext_blob(blob.clone())
        .key_id(alias_arn)
        .send()
        .await
        .unwrap();
    // Names.
    assert_eq!(
        code(
            c.create_alias()
                .alias_name("alias/app/payments")
                .target_key_id(&k2.key_id)
                .send()
                .await
        ),
        "AlreadyExistsException"
    );
    // Outside the model's pattern (and a colon, which AWS refuses too): validation errors.
    for bad in ["alias/has space", "alias/ü", "alias/a:b"] {
        let (c_, m) = message(
            c.create_alias()
                .alias_name(bad)
                .target_key_id(&k2.key_id)
                .send()
                .await,
        );
        assert_eq!(c_, "ValidationException", "{bad}: {m}");
        assert!(m.contains(bad), "{m}");
    }
    // Without the prefix: AWS answers a ValidationException in these words (recorded).
    let (c_, m) = message(
        c.create_alias()
            .alias_name("payments")
            .target_key_id(&k2.key_id)
            .send()
            .await,
    );
    assert_eq!(c_, "ValidationException");
    assert_eq!(
        m,
        "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
    );
    for (bad, answer) in [
        ("alias/", "InvalidAliasNameException"),
        // Reserved for AWS managed keys: no message (see `lifecycle::not_reserved`).
        ("alias/aws/s3", "NotAuthorizedException"),
        ("alias/aws/mine", "NotAuthorizedException"),
    ] {
        let r = c
            .create_alias()
            .alias_name(bad)
            .target_key_id(&k2.key_id)
            .send()
            .await;
        assert_eq!(message(r), (answer.to_string(), match answer {
            "NotAuthorizedException" => String::new(),
            _ => "Alias alias/ must be 1 to 256 characters of letters, digits, '/', '_' and '-' after the prefix \"alias/\".".to_string(),
        }), "{bad}");
    }
    assert_eq!(
        code(
            c.create_alias()
                .alias_name(format!("alias/{}", "a".repeat(251)))
                .target_key_id(&k2.key_id)
                .send()
                .await
        ),
        "ValidationException"
    );
    // AWS's words, as moto and local-kms repeat them.
    assert_eq!(
        message(
            c.create_alias()
                .alias_name("alias/x")
                .target_key_id("alias/app/payments")
                .send()
                .await
        ),
        (
            "ValidationException".to_string(),
            "Aliases must refer to keys. Not aliases".to_string()
        )
    );
    assert_eq!(
        code(
            c.create_alias()
                .alias_name("alias/x")
                .target_key_id(uuid::Uuid::new_v4().to_string())
                .send()
                .await
        ),
        "NotFoundException"
    );
    // An alias moves only within a type of key (symmetric, asymmetric, HMAC) and its key
    // usage, as AWS documents UpdateAlias: across specs of one type it moves.
    {
        use aws_sdk_kms::types::{KeySpec as S, KeyUsageType as U};
        let p256 = new_key_with(&c, S::EccNistP256, U::SignVerify).await.key_id;
        let p384 = new_key_with(&c, S::EccNistP384, U::SignVerify).await.key_id;
        let agree = new_key_with(&c, S::EccNistP256, U::KeyAgreement)
            .await
            .key_id;
        let hmac256 = new_key_with(&c, S::Hmac256, U::GenerateVerifyMac)
            .await
            .key_id;
        let hmac512 = new_key_with(&c, S::Hmac512, U::GenerateVerifyMac)
            .await
            .key_id;
        for (name, from) in [("alias/typed/ecc", &p256), ("alias/typed/hmac", &hmac256)] {
            c.create_alias()
                .alias_name(name)
                .target_key_id(from)
                .send()
                .await
                .unwrap();
        }
        let update = |name: &'static str, to: &str| {
            c.update_alias().alias_name(name).target_key_id(to).send()
        };
        update("alias/typed/ecc", &p384).await.unwrap();
        update("alias/typed/hmac", &hmac512).await.unwrap();
        for (name, to) in [
            ("alias/typed/ecc", &agree),
            ("alias/typed/ecc", &hmac256),
            ("alias/typed/hmac", &k2.key_id),
        ] {
            let (c_, m) = message(update(name, to).await);
            assert_eq!(c_, "ValidationException", "{name} -> {to}: {m}");
            assert!(m.contains("not the same type of key"), "{m}");
        }
        for name in ["alias/typed/ecc", "alias/typed/hmac"] {
            c.delete_alias().alias_name(name).send().await.unwrap();
        }
    }
    // Update: the alias now names k2; old ciphertexts still decrypt (they name k1).
    c.update_alias()
        .alias_name("alias/app/payments")
        .target_key_id(&k2.key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.describe_key()
            .key_id("alias/app/payments")
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id,
        k2.key_id
    );
    c.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(blob)
                .key_id("alias/app/payments")
                .send()
                .await
        ),
        "IncorrectKeyException"
    );
    assert_eq!(
        code(
            c.update_alias()
                .alias_name("alias/none")
                .target_key_id(&k2.key_id)
                .send()
                .await
        ),
        "NotFoundException"
    );
    // List, filter, page.
    for i in 0..3 {
        c.create_alias()
            .alias_name(format!("alias/k1-{i}"))
            .target_key_id(&k1.key_id)
            .send()
            .await
            .unwrap();
    }
    let all = c.list_aliases().limit(100).send().await.unwrap();
    let own: Vec<_> = all
        .aliases()
        .iter()
        .filter(|a| a.target_key_id.is_some())
        .collect();
    assert_eq!(own.len(), 4);
    assert!(!all.truncated);
    assert!(own[0]
        .alias_arn
        .as_deref()
        .unwrap()
        .starts_with("arn:aws:kms:us-east-1:123456789012:alias/"));
    // As AWS lists them: the predefined aliases of AWS managed keys not created yet, by name
    // and ARN only, among the rest in name order.
    let s3 = all
        .aliases()
        .iter()
        .find(|a| a.alias_name() == Some("alias/aws/s3"))
        .expect("the predefined alias/aws/s3");
    assert_eq!(
        s3.alias_arn.as_deref(),
        Some("arn:aws:kms:us-east-1:123456789012:alias/aws/s3")
    );
    assert!(s3.target_key_id.is_none() && s3.creation_date.is_none());
    let names: Vec<&str> = all
        .aliases()
        .iter()
        .filter_map(|a| a.alias_name())
        .collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert_eq!(
        c.list_aliases()
            .key_id(&k1.key_id)
            .send()
            .await
            .unwrap()
            .aliases()
            .len(),
        3
    );
    // Pages of 7 give the same list.
    let mut paged = Vec::new();
    let mut marker = None;
    loop {
        let p = c
            .list_aliases()
            .limit(7)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        paged.extend(p.aliases().iter().filter_map(|a| a.alias_name.clone()));
        if !p.truncated {
            break;
        }
        marker = p.next_marker;
    }
    assert_eq!(paged, names);
    assert_eq!(
        code(c.list_aliases().marker("nope").send().await),
        "InvalidMarkerException"
    );
    // Another region sees none of them (only AWS's predefined ones).
    assert!(s
        .client_in(OTHER_REGION)
        .list_aliases()
        .limit(100)
        .send()
        .await
        .unwrap()
        .aliases()
        .iter()
        .all(|a| a.target_key_id.is_none()));
    assert_eq!(
        code(
            s.client_in(OTHER_REGION)
                .describe_key()
                .key_id("alias/app/payments")
                .send()
                .await
        ),
        "NotFoundException"
    );
    // Delete.
    c.delete_alias()
        .alias_name("alias/app/payments")
        .send()
        .await
        .unwrap();
    let (code_, m) = message(c.describe_key().key_id("alias/app/payments").send().await);
    assert_eq!(code_, "NotFoundException");
    assert_eq!(m, format!("Alias {alias_arn} is not found."));
    assert_eq!(
        code(
            c.delete_alias()
                .alias_name("alias/app/payments")
                .send()
                .await
        ),
        "NotFoundException"
    );
}

#[tokio::test]
async fn tags_with_aws_limits() {
    let s = Server::start().await;
    let c = s.client();
    let t = |k: &str, v: &str| Tag::builder().tag_key(k).tag_value(v).build().unwrap();
    let key = c
        .create_key()
        .tags(t("env", "dev"))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    c.tag_resource()
        .key_id(&key)
        .tags(t("team", "blue"))
        .tags(t("env", "prod"))
        .send()
        .await
        .unwrap();
    let tags = c.list_resource_tags().key_id(&key).send().await.unwrap();
    let got: Vec<(String, String)> = tags
        .tags()
        .iter()
        .map(|t| (t.tag_key.clone(), t.tag_value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("env".into(), "prod".into()),
            ("team".into(), "blue".into())
        ]
    );
    c.untag_resource()
        .key_id(&key)
        .tag_keys("env")
        .send()
        .await
        .unwrap();
    assert_eq!(
        c.list_resource_tags()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .tags()
            .len(),
        1
    );
    assert_eq!(
        code(
            c.tag_resource()
                .key_id(&key)
                .tags(t("aws:x", "y"))
                .send()
                .await
        ),
        "TagException"
    );
    assert_eq!(
        code(c.tag_resource().key_id(&key).tags(t("", "y")).send().await),
        "ValidationException"
    );
    let mut many = c.tag_resource().key_id(&key);
    for i in 0..50 {
        many = many.tags(t(&format!("k{i}"), "v"));
    }
    assert_eq!(code(many.send().await), "LimitExceededException");
    let page = c
        .list_resource_tags()
        .key_id(&key)
        .limit(1)
        .send()
        .await
        .unwrap();
    assert_eq!(page.tags().len(), 1);
}

#[tokio::test]
async fn aws_managed_keys_are_created_on_first_use_and_cannot_be_changed() {
    let s = Server::start().await;
    let c = s.client();
    // Concurrent first uses create one key.
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.describe_key()
                .key_id("alias/aws/s3")
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let m = &ids[0];
    assert!(ids.iter().all(|k| k.key_id == m.key_id), "one managed key");
    assert_eq!(m.key_manager, Some(aws_sdk_kms::types::KeyManagerType::Aws));
    assert_eq!(
        m.description.as_deref(),
        Some("Default key that protects my S3 data when no other key is defined")
    );
    // As recorded on AWS for a new AWS managed key: rotation shown off, with no schedule.
    let st = c
        .get_key_rotation_status()
        .key_id(&m.key_id)
        .send()
        .await
        .unwrap();
    assert!(!st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, None);
    assert_eq!(st.next_rotation_date, None);
    // SQS's key: its description and policy are AWS's, to the byte (recorded on AWS:
    // radkawar/stackd testdata/aws/kms/rotation.json, managed_sqs_policy).
    let sqs = c
        .describe_key()
        .key_id("alias/aws/sqs")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(
        sqs.description.as_deref(),
        Some("Default key that protects my SQS messages when no other key is defined")
    );
    let policy = c
        .get_key_policy()
        .key_id(&sqs.key_id)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(
        policy,
        "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"auto-sqs-1\",\n  \"Statement\" : [ {\n    \"Sid\" : \"Allow access through Simple Queue Service (SQS) for all principals in the account that are authorized to use SQS\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"*\"\n    },\n    \"Action\" : [ \"kms:Encrypt\", \"kms:Decrypt\", \"kms:ReEncrypt*\", \"kms:GenerateDataKey*\", \"kms:CreateGrant\", \"kms:DescribeKey\" ],\n    \"Resource\" : \"*\",\n    \"Condition\" : {\n      \"StringEquals\" : {\n        \"kms:ViaService\" : \"sqs.us-east-1.amazonaws.com\",\n        \"kms:CallerAccount\" : \"123456789012\"\n      }\n    }\n  }, {\n    \"Sid\" : \"Allow direct access to key metadata to the account\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::123456789012:root\"\n    },\n    \"Action\" : [ \"kms:Describe*\", \"kms:Get*\", \"kms:List*\", \"kms:RevokeGrant\" ],\n    \"Resource\" : \"*\"\n  } ]\n}"
    );
    let aliases = c.list_aliases().send().await.unwrap();
    assert_eq!(
        aliases
            .aliases()
            .iter()
            .filter(|a| a.alias_name.as_deref() == Some("alias/aws/s3"))
            .count(),
        1
    );
    assert_eq!(
        code(
            c.describe_key()
                .key_id("alias/aws/no-such-service")
                .send()
                .await
        ),
        "NotFoundException"
    );
    // Only the service may use it (kms:ViaService), and users may not change it.
    assert_eq!(
        code(
            c.encrypt()
                .key_id("alias/aws/s3")
                .plaintext(pt())
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    // A principal the operator registered as the s3 service may use it; one registered as
    // another service may not; registration can be withdrawn.
    let (s3_arn, _, s3) = s.new_user("123456789012", "s3-service", None);
    let (ebs_arn, _, ebs) = s.new_user("123456789012", "ebs-service", None);
    for (arn, svc) in [(&s3_arn, "s3"), (&ebs_arn, "ebs")] {
        s.admin_ok(&[
            "set-integrated-service",
            "--principal-arn",
            arn,
            "--service",
            svc,
        ]);
    }
    let blob = s3
        .encrypt()
        .key_id("alias/aws/s3")
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    s3.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(ebs.decrypt().ciphertext_blob(blob.clone()).send().await),
        "AccessDeniedException"
    );
    s.admin_ok(&["set-integrated-service", "--principal-arn", &s3_arn]);
    let s3_again = s3.clone();
    let b2 = blob.clone();
    crate::support::eventually("the withdrawn registration to apply", move || {
        let (c, b) = (s3_again.clone(), b2.clone());
        async move { c.decrypt().ciphertext_blob(b).send().await.is_err() }
    })
    .await;
    let id = m.key_id.clone();
    for r in [
        code(c.disable_key().key_id(&id).send().await),
        code(c.schedule_key_deletion().key_id(&id).send().await),
        code(c.disable_key_rotation().key_id(&id).send().await),
        code(
            c.put_key_policy()
                .key_id(&id)
                .policy(crate::access::default_policy())
                .send()
                .await,
        ),
        code(
            c.tag_resource()
                .key_id(&id)
                .tags(Tag::builder().tag_key("a").tag_value("b").build().unwrap())
                .send()
                .await,
        ),
    ] {
        assert_eq!(r, "AccessDeniedException");
    }
    assert_eq!(
        code(
            c.update_alias()
                .alias_name("alias/aws/s3")
                .target_key_id(&id)
                .send()
                .await
        ),
        "NotAuthorizedException"
    );
    assert_eq!(
        code(c.delete_alias().alias_name("alias/aws/s3").send().await),
        "NotAuthorizedException"
    );
    c.get_key_policy().key_id(&id).send().await.unwrap();
}

/// Past its deletion date a key is deleted, whether or not the deletion job has removed its
/// rows yet (here the database refuses the job's delete for a while): `CancelKeyDeletion`
/// cannot bring it back (the job may already have destroyed a private key kept in the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_deletion_date_cannot_be_cancelled_back() {
    let s = clocked().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    if sqlite() {
        s.db.execute("CREATE TRIGGER refuse_delete BEFORE DELETE ON keys BEGIN SELECT RAISE(ABORT, 'refused'); END").await;
    } else {
        s.db.execute("CREATE FUNCTION refuse_delete() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql").await;
        s.db.execute("CREATE TRIGGER refuse_delete BEFORE DELETE ON keys FOR EACH ROW EXECUTE FUNCTION refuse_delete()").await;
    }
    s.advance_days(8);
    // Several passes of the job, each refused.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (code_, m) = message(c.cancel_key_deletion().key_id(&key).send().await);
    assert_eq!(code_, "NotFoundException");
    assert!(m.ends_with("does not exist"), "{m}");
    s.db.execute(if sqlite() {
        "DROP TRIGGER refuse_delete"
    } else {
        "DROP TRIGGER refuse_delete ON keys"
    })
    .await;
    let c2 = c.clone();
    eventually("the key to be deleted", move || {
        let c = c2.clone();
        let k = key.clone();
        async move {
            matches!(c.describe_key().key_id(k).send().await, Err(e) if aws_sdk_kms::error::ProvideErrorMetadata::code(&e) == Some("NotFoundException"))
        }
    })
    .await;
}

/// A key has at most 50 aliases, however they come to it: created for it, or re-pointed to it
/// with UpdateAlias (which used not to count them); an alias keeps its creation date when it
/// is re-pointed.
#[tokio::test]
async fn a_key_has_at_most_fifty_aliases_however_they_arrive() {
    let s = Server::start().await;
    let c = s.client();
    let (full, other) = (new_key(&c).await, new_key(&c).await);
    for i in 0..50 {
        c.create_alias()
            .alias_name(format!("alias/full-{i}"))
            .target_key_id(&full)
            .send()
            .await
            .unwrap();
    }
    let limit = (
        "LimitExceededException".to_string(),
        "Aliases per key quota for this account in this region is 50, current usage is 50."
            .to_string(),
    );
    assert_eq!(
        message(
            c.create_alias()
                .alias_name("alias/one-more")
                .target_key_id(&full)
                .send()
                .await
        ),
        limit
    );
    c.create_alias()
        .alias_name("alias/elsewhere")
        .target_key_id(&other)
        .send()
        .await
        .unwrap();
    let created = |aliases: Vec<aws_sdk_kms::types::AliasListEntry>| {
        aliases
            .into_iter()
            .find(|a| a.alias_name.as_deref() == Some("alias/elsewhere"))
            .and_then(|a| a.creation_date)
    };
    let before = created(c.list_aliases().send().await.unwrap().aliases.unwrap());
    assert_eq!(
        message(
            c.update_alias()
                .alias_name("alias/elsewhere")
                .target_key_id(&full)
                .send()
                .await
        ),
        limit
    );
    // Re-pointed where there is room, it keeps its creation date.
    let third = new_key(&c).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.update_alias()
        .alias_name("alias/elsewhere")
        .target_key_id(&third)
        .send()
        .await
        .unwrap();
    let listed = c
        .list_aliases()
        .key_id(&third)
        .send()
        .await
        .unwrap()
        .aliases
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(created(listed.clone()), before);
    assert!(listed[0].last_updated_date > before);
}

/// The attack: many CreateAlias and UpdateAlias calls at once toward one key each read its
/// count below 50 before any of them wrote, and together left it with more than 50 aliases.
#[tokio::test]
async fn aliases_arriving_at_once_still_stop_at_fifty() {
    let s = Server::start().await;
    let c = s.client();
    let (full, other) = (new_key(&c).await, new_key(&c).await);
    for i in 0..44 {
        c.create_alias()
            .alias_name(format!("alias/race-{i}"))
            .target_key_id(&full)
            .send()
            .await
            .unwrap();
    }
    for i in 0..8 {
        c.create_alias()
            .alias_name(format!("alias/moving-{i}"))
            .target_key_id(&other)
            .send()
            .await
            .unwrap();
    }
    let creates = (0..16).map(|i| {
        let c = c.clone();
        let full = full.clone();
        tokio::spawn(async move {
            c.create_alias()
                .alias_name(format!("alias/burst-{i}"))
                .target_key_id(&full)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| message(Err::<(), _>(e)))
        })
    });
    let updates = (0..8).map(|i| {
        let c = c.clone();
        let full = full.clone();
        tokio::spawn(async move {
            c.update_alias()
                .alias_name(format!("alias/moving-{i}"))
                .target_key_id(&full)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| message(Err::<(), _>(e)))
        })
    });
    let tasks: Vec<_> = creates.chain(updates).collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(e) => assert_eq!(
                e,
                (
                    "LimitExceededException".to_string(),
                    "Aliases per key quota for this account in this region is 50, current usage is 50.".to_string()
                )
            ),
        }
    }
    let listed = c
        .list_aliases()
        .key_id(&full)
        .limit(100)
        .send()
        .await
        .unwrap()
        .aliases
        .unwrap();
    assert_eq!(listed.len(), 50, "{won} of 24 calls succeeded");
    assert_eq!(won, 6);
}

/// ListAliases reads its page from the database a page at a time, past rows that fail their
/// checks (here copies of a valid row under other names): every page but the last is full,
/// and the pages together are the whole listing, AWS's predefined names among the aliases.
#[tokio::test]
async fn list_aliases_pages_past_rows_that_fail_their_checks() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    for i in 0..5 {
        c.create_alias()
            .alias_name(format!("alias/z-{i}"))
            .target_key_id(&key)
            .send()
            .await
            .unwrap();
    }
    for name in ["alias/z-1a", "alias/z-2a", "alias/z-2b"] {
        s.db.execute(&format!(
            "INSERT INTO aliases (account_id, region, alias_name, key_id, created_at, updated_at, mac) \
             SELECT account_id, region, '{name}', key_id, created_at, updated_at, mac FROM aliases WHERE alias_name = 'alias/z-0'"
        ))
        .await;
    }
    let names = |p: &aws_sdk_kms::operation::list_aliases::ListAliasesOutput| {
        p.aliases()
            .iter()
            .filter_map(|a| a.alias_name.clone())
            .collect::<Vec<_>>()
    };
    let all = names(&c.list_aliases().limit(1000).send().await.unwrap());
    assert!(
        !all.iter().any(|n| n.len() == "alias/z-1a".len()),
        "{all:?}"
    );
    assert!(all.iter().any(|n| n == "alias/aws/s3"), "{all:?}");
    let mut paged = Vec::new();
    let mut marker = None;
    loop {
        let p = c
            .list_aliases()
            .limit(2)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        paged.extend(names(&p));
        if !p.truncated {
            break;
        }
        assert_eq!(names(&p).len(), 2, "{paged:?}");
        marker = p.next_marker;
    }
    assert_eq!(paged, all);
    // A page of one key's, through the copies.
    let of_key = c
        .list_aliases()
        .key_id(&key)
        .limit(2)
        .marker("alias/z-1")
        .send()
        .await
        .unwrap();
    assert_eq!(names(&of_key), ["alias/z-2", "alias/z-3"]);
    assert!(of_key.truncated);
}
