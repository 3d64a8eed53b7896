//! Deletion after the waiting period and rotation, by schedule and on demand, with the clock
//! moved forward instead of waiting; two nodes do each due job exactly once.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::RotationType;
use std::time::Duration;

fn pt() -> Blob {
    Blob::new(b"long-lived".to_vec())
}

#[tokio::test]
async fn a_key_is_deleted_when_its_window_ends_and_its_material_is_gone() {
    let s = clocked().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.create_alias()
        .alias_name("alias/doomed")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    s.advance_days(6);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        c.describe_key().key_id(&key).send().await.is_ok(),
        "not before the window ends"
    );
    s.advance_days(2);
    eventually("deletion", || async {
        c.describe_key().key_id(&key).send().await.is_err()
    })
    .await;
    assert_eq!(
        code(c.describe_key().key_id(&key).send().await),
        "NotFoundException"
    );
    // As AWS answers a deleted key's ciphertext.
    assert_eq!(
        code(c.decrypt().ciphertext_blob(blob).send().await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(c.describe_key().key_id("alias/doomed").send().await),
        "NotFoundException"
    );
    assert!(c
        .list_aliases()
        .limit(100)
        .send()
        .await
        .unwrap()
        .aliases()
        .iter()
        .all(|a| a.target_key_id.is_none()));
    let left =
        s.db.int(&format!(
            "SELECT count(*) FROM key_materials WHERE key_id = {}",
            s.db.key(&key)
        ))
        .await;
    assert_eq!(left, 0, "the wrapped material is gone from the database");
}

#[tokio::test]
async fn rotation_by_schedule_and_on_demand_keeps_old_ciphertexts_working() {
    let s = clocked().await;
    let c = s.client();
    let key = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let id = key.key_id.clone();
    let first_material = key.current_key_material_id.clone().unwrap();
    assert_eq!(
        code(
            c.enable_key_rotation()
                .key_id(&id)
                .rotation_period_in_days(89)
                .send()
                .await
        ),
        "ValidationException"
    );
    c.enable_key_rotation()
        .key_id(&id)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let st = c
        .get_key_rotation_status()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    assert!(st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, Some(90));
    let days = (st.next_rotation_date.unwrap().as_secs_f64()
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64())
        / 86400.0;
    assert!((89.9..90.1).contains(&days), "{days}");
    let old = c
        .encrypt()
        .key_id(&id)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    // Ten minutes before the automatic rotation, an on-demand one is a conflict (AWS: "in
    // progress or scheduled to begin within the next 20 minutes").
    s.set_clock_offset(90 * 86400 - 600);
    // The service reads its clock offset between background runs: until a new key's creation
    // date shows it.
    eventually("the clock moved", || async {
        let made = c.create_key().send().await.unwrap().key_metadata.unwrap();
        made.creation_date.unwrap().secs() > chrono::Utc::now().timestamp() + 89 * 86400
    })
    .await;
    let (c_, m) = message(c.rotate_key_on_demand().key_id(&id).send().await);
    assert_eq!(c_, "ConflictException", "{m}");
    s.set_clock_offset(0);
    eventually("the clock moved back", || async {
        let made = c.create_key().send().await.unwrap().key_metadata.unwrap();
        made.creation_date.unwrap().secs() < chrono::Utc::now().timestamp() + 86400
    })
    .await;
    s.advance_days(91);
    eventually("scheduled rotation", || async {
        c.list_key_rotations()
            .key_id(&id)
            .send()
            .await
            .unwrap()
            .rotations()
            .len()
            == 1
    })
    .await;
    let r = c.list_key_rotations().key_id(&id).send().await.unwrap();
    assert_eq!(
        r.rotations()[0].rotation_type,
        Some(RotationType::Automatic)
    );
    let d = c
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_ne!(d.current_key_material_id.unwrap(), first_material);
    let new = c
        .encrypt()
        .key_id(&id)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(&new.as_ref()[17..21], &2u32.to_be_bytes());
    for b in [old.clone(), new] {
        assert_eq!(
            c.decrypt()
                .ciphertext_blob(b)
                .send()
                .await
                .unwrap()
                .plaintext
                .unwrap()
                .into_inner(),
            b"long-lived"
        );
    }
    // On demand.
    rotate_now(&c, &id).await;
    let r = c.list_key_rotations().key_id(&id).send().await.unwrap();
    assert_eq!(r.rotations().len(), 2);
    assert_eq!(r.rotations()[1].rotation_type, Some(RotationType::OnDemand));
    let current = c
        .describe_key()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .current_key_material_id
        .unwrap();
    {
        use aws_sdk_kms::types::{IncludeKeyMaterial, KeyMaterialState};
        let states = |r: &aws_sdk_kms::operation::list_key_rotations::ListKeyRotationsOutput| {
            r.rotations()
                .iter()
                .map(|x| x.key_material_state.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            states(&r),
            vec![KeyMaterialState::NonCurrent, KeyMaterialState::Current]
        );
        assert_eq!(
            r.rotations()[1].key_material_id.as_deref(),
            Some(current.as_str())
        );
        // ALL_KEY_MATERIAL adds the first material, which no rotation made.
        let all = c
            .list_key_rotations()
            .key_id(&id)
            .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
            .send()
            .await
            .unwrap();
        assert_eq!(all.rotations().len(), 3);
        let first = &all.rotations()[0];
        assert_eq!(
            first.key_material_id.as_deref(),
            Some(first_material.as_str())
        );
        assert_eq!(
            (first.rotation_date, first.rotation_type.clone()),
            (None, None)
        );
        assert_eq!(
            states(&all),
            vec![
                KeyMaterialState::NonCurrent,
                KeyMaterialState::NonCurrent,
                KeyMaterialState::Current
            ]
        );
    }
    // Each answer names the material it used: the old ciphertext's, and the current one.
    let out = c
        .decrypt()
        .ciphertext_blob(old.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.key_material_id.as_deref(),
        Some(first_material.as_str())
    );
    let out = c
        .re_encrypt()
        .ciphertext_blob(old)
        .destination_key_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.source_key_material_id.as_deref(),
        Some(first_material.as_str())
    );
    assert_eq!(
        out.destination_key_material_id.as_deref(),
        Some(current.as_str())
    );
    let out = c
        .generate_data_key()
        .key_id(&id)
        .number_of_bytes(16)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_material_id.as_deref(), Some(current.as_str()));
    // Pending deletion, the status is false (AWS); cancelled, the schedule is back.
    let enabled = |c: aws_sdk_kms::Client, id: String| async move {
        c.get_key_rotation_status()
            .key_id(id)
            .send()
            .await
            .unwrap()
            .key_rotation_enabled
    };
    assert!(enabled(c.clone(), id.clone()).await);
    c.schedule_key_deletion()
        .key_id(&id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert!(!enabled(c.clone(), id.clone()).await);
    c.cancel_key_deletion().key_id(&id).send().await.unwrap();
    assert!(enabled(c.clone(), id.clone()).await);
    c.enable_key().key_id(&id).send().await.unwrap();
    c.disable_key_rotation().key_id(&id).send().await.unwrap();
    assert!(!enabled(c.clone(), id.clone()).await);
    // Rotation off: AWS answers KeyId and KeyRotationEnabled alone (recorded).
    let st = c
        .get_key_rotation_status()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (st.rotation_period_in_days, st.next_rotation_date),
        (None, None)
    );
    c.disable_key().key_id(&id).send().await.unwrap();
    assert_eq!(
        code(c.rotate_key_on_demand().key_id(&id).send().await),
        "DisabledException"
    );
    assert_eq!(
        code(c.enable_key_rotation().key_id(&id).send().await),
        "DisabledException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_rotate_and_delete_each_due_key_exactly_once() {
    let s = clocked().await;
    let _second = tokio::task::block_in_place(|| s.second_node());
    let c = s.client();
    let mut rotating = Vec::new();
    for _ in 0..6 {
        let k = new_key(&c).await;
        c.enable_key_rotation()
            .key_id(&k)
            .rotation_period_in_days(90)
            .send()
            .await
            .unwrap();
        rotating.push(k);
    }
    let mut doomed = Vec::new();
    for _ in 0..4 {
        let k = new_key(&c).await;
        c.schedule_key_deletion()
            .key_id(&k)
            .pending_window_in_days(7)
            .send()
            .await
            .unwrap();
        doomed.push(k);
    }
    s.advance_days(100);
    let db = &s.db;
    eventually("all jobs", || async {
        let rotated = db
            .int("SELECT count(*) FROM key_materials WHERE rotation_type = 'AUTOMATIC'")
            .await;
        let left = db
            .int("SELECT count(*) FROM keys WHERE key_state = 'PendingDeletion'")
            .await;
        rotated >= 6 && left == 0
    })
    .await;
    // Give both nodes a few more ticks, then check nothing ran twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for k in &rotating {
        let n = db
            .int(&format!(
                "SELECT count(*) FROM key_materials WHERE key_id = {}",
                db.key(k)
            ))
            .await;
        assert_eq!(n, 2, "key {k} rotated exactly once");
    }
    for k in &doomed {
        assert_eq!(
            code(c.describe_key().key_id(k).send().await),
            "NotFoundException"
        );
    }
    // Each background action is one audit event, by the service, naming its key.
    for (name, keys) in [("RotateKey", &rotating), ("DeleteKey", &doomed)] {
        for k in keys.iter() {
            // The first key ARN: a Postgres array, a JSON array in SQLite.
            let first_arn = if sqlite() {
                "json_extract(key_arns, '$[0]')"
            } else {
                "key_arns[1]"
            };
            let bodies = db
                .strings(&format!(
                    "SELECT body FROM audit_events WHERE event_name = '{name}' AND {first_arn} LIKE '%{k}'"
                ))
                .await;
            assert_eq!(bodies.len(), 1, "{name} of {k}");
            let e: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
            assert_eq!(e["userIdentity"]["type"], "AWSService");
            assert_eq!(e["eventType"], "AwsServiceEvent");
        }
    }
}

/// Terraform's `aws_kms_key` reads the rotation status of every key it manages. AWS answers
/// `false` for keys that cannot rotate (asymmetric, HMAC) instead of an error, and still
/// refuses to turn rotation on or off for them.
#[tokio::test]
async fn keys_that_cannot_rotate_report_rotation_off() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let s = Server::start().await;
    let c = s.client();
    for (spec, usage) in [
        (KeySpec::Rsa2048, KeyUsageType::SignVerify),
        (KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt),
        (KeySpec::EccNistP256, KeyUsageType::SignVerify),
        (KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac),
    ] {
        let key = new_key_with(&c, spec.clone(), usage).await.key_id;
        let st = c
            .get_key_rotation_status()
            .key_id(&key)
            .send()
            .await
            .unwrap();
        assert!(!st.key_rotation_enabled, "{spec:?}");
        assert_eq!(st.rotation_period_in_days, None, "{spec:?}");
        assert_eq!(st.next_rotation_date, None, "{spec:?}");
        assert_eq!(
            code(c.enable_key_rotation().key_id(&key).send().await),
            "UnsupportedOperationException",
            "{spec:?}"
        );
        // Turning it off is answered as done (recorded for an HMAC key): it is off.
        c.disable_key_rotation().key_id(&key).send().await.unwrap();
        // And it has made no rotation (recorded for an HMAC key: an empty list).
        let listed = c.list_key_rotations().key_id(&key).send().await.unwrap();
        assert!(
            listed.rotations().is_empty() && !listed.truncated,
            "{spec:?}"
        );
        // Disabled, it is still answered (GetKeyRotationStatus works in the Disabled state).
        c.disable_key().key_id(&key).send().await.unwrap();
        let st = c
            .get_key_rotation_status()
            .key_id(&key)
            .send()
            .await
            .unwrap();
        assert!(!st.key_rotation_enabled, "{spec:?}");
    }
}

/// `RotateKeyOnDemand` only starts the rotation, as on AWS: while it runs (here held back by a
/// lock on the material table, Postgres only) `GetKeyRotationStatus` shows its
/// `OnDemandRotationStartDate`, the key still encrypts under its current material, a second
/// request is answered as a success and is the same rotation (recorded); released, the
/// background jobs complete it, the start date goes, and the trail records the service's
/// `RotateKey` after the call's `RotateKeyOnDemand`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_rotation_runs_in_the_background_and_shows_its_start() {
    if skip_on_sqlite("holds a Postgres table lock to keep the rotation in progress") {
        return;
    }
    use sqlx::Connection;
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let described = describe(&c, &key).await;
    let (before, arn) = (described.current_key_material_id, described.arn.unwrap());
    let mut lock = sqlx::PgConnection::connect(&s.db.url()).await.unwrap();
    let mut held = lock.begin().await.unwrap();
    sqlx::query("LOCK TABLE key_materials IN SHARE MODE")
        .execute(&mut *held)
        .await
        .unwrap();
    let asked = chrono::Utc::now();
    // The response names the key by its ARN, asked by key ID too (recorded on AWS:
    // radkawar/stackd testdata/aws/kms/rotation.json, rotate_first).
    let started = c.rotate_key_on_demand().key_id(&key).send().await.unwrap();
    assert_eq!(started.key_id(), Some(arn.as_str()));
    let status = c
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let started = status
        .on_demand_rotation_start_date
        .expect("the rotation in progress shows its start");
    assert!(
        (started.secs() - asked.timestamp()).abs() <= 2,
        "{started:?}"
    );
    assert!(!status.key_rotation_enabled);
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.current_key_material_id, before, "not rotated yet");
    c.rotate_key_on_demand().key_id(&key).send().await.unwrap();
    held.rollback().await.unwrap();
    rotation_completed(&c, &key).await;
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_ne!(m.current_key_material_id, before, "rotated");
    let r = c.list_key_rotations().key_id(&key).send().await.unwrap();
    assert_eq!(r.rotations().len(), 1);
    assert_eq!(r.rotations()[0].rotation_type, Some(RotationType::OnDemand));
    // The trail: the call, then the service's rotation.
    let names = s
        .db
        .strings("SELECT event_name FROM audit_events WHERE event_name IN ('RotateKeyOnDemand', 'RotateKey') ORDER BY seq")
        .await;
    let first = names.iter().position(|n| n == "RotateKeyOnDemand");
    let done = names.iter().position(|n| n == "RotateKey");
    assert!(
        first.is_some() && done.is_some() && first < done,
        "{names:?}"
    );
}

/// Rotation calls as recorded on AWS: an alias is refused by the rotation calls; enabling
/// rotation that is on with no period or the same one changes nothing (the next rotation
/// stays), while after a disable no period means 365 days; a bad marker is answered without a
/// message; and a grant on an HMAC key lists the operations it may have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_calls_answer_as_recorded() {
    use aws_sdk_kms::types::{GrantConstraints, GrantOperation, KeySpec, KeyUsageType};
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.create_alias()
        .alias_name("alias/rotating")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let aliases = [
        "alias/rotating".to_string(),
        format!("arn:aws:kms:{REGION}:123456789012:alias/rotating"),
    ];
    for a in &aliases {
        let want = (
            "InvalidArnException".to_string(),
            "Key Aliases are not supported for this operation.".to_string(),
        );
        assert_eq!(
            message(c.get_key_rotation_status().key_id(a).send().await),
            want
        );
        assert_eq!(message(c.list_key_rotations().key_id(a).send().await), want);
        assert_eq!(
            message(c.enable_key_rotation().key_id(a).send().await),
            want
        );
        assert_eq!(
            message(c.disable_key_rotation().key_id(a).send().await),
            want
        );
        assert_eq!(
            message(c.rotate_key_on_demand().key_id(a).send().await),
            want
        );
    }
    let status = |c: aws_sdk_kms::Client, k: String| async move {
        let st = c.get_key_rotation_status().key_id(k).send().await.unwrap();
        (
            st.rotation_period_in_days,
            st.next_rotation_date.map(|d| d.secs()),
        )
    };
    c.enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let first = status(c.clone(), key.clone()).await;
    assert_eq!(first.0, Some(90));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    c.enable_key_rotation().key_id(&key).send().await.unwrap();
    assert_eq!(
        status(c.clone(), key.clone()).await,
        first,
        "no period: unchanged"
    );
    c.enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status(c.clone(), key.clone()).await,
        first,
        "the same period: unchanged"
    );
    c.disable_key_rotation().key_id(&key).send().await.unwrap();
    c.enable_key_rotation().key_id(&key).send().await.unwrap();
    assert_eq!(status(c.clone(), key.clone()).await.0, Some(365));
    assert_eq!(
        message(
            c.list_key_rotations()
                .key_id(&key)
                .marker("not-a-marker")
                .send()
                .await
        ),
        ("InvalidMarkerException".to_string(), String::new())
    );

    let hmac = new_key_with(&c, KeySpec::Hmac224, KeyUsageType::GenerateVerifyMac)
        .await
        .key_id;
    assert_eq!(
        message(
            c.create_grant()
                .key_id(&hmac)
                .grantee_principal("arn:aws:iam::123456789012:root")
                .operations(GrantOperation::GenerateMac)
                .operations(GrantOperation::Encrypt)
                .send()
                .await
        ),
        (
            "ValidationException".to_string(),
            "Operations [Encrypt] are not supported when creating a grant for a symmetric KMS key with key usage GENERATE_VERIFY_MAC. Valid operations are [CreateGrant, RetireGrant, DescribeKey, GenerateMac, VerifyMac]".to_string()
        )
    );
    assert_eq!(
        message(
            c.create_grant()
                .key_id(&hmac)
                .grantee_principal("arn:aws:iam::123456789012:root")
                .operations(GrantOperation::GenerateMac)
                .constraints(
                    GrantConstraints::builder()
                        .encryption_context_subset("a", "b")
                        .build()
                )
                .send()
                .await
        ),
        (
            "ValidationException".to_string(),
            "EncryptionContext is supported only when creating a grant for a symmetric encryption KMS key.".to_string()
        )
    );
}

/// ListKeyRotations lists only rotations the key has made: a material row inserted with SQL
/// (a version the key never reached, a MAC that does not hold) is neither listed nor counted
/// (the compliance inventory's cryptoperiod reads the same list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_inserted_with_sql_is_not_listed() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.rotate_key_on_demand().key_id(&key).send().await.unwrap();
    rotation_completed(&c, &key).await;
    let listed = || async {
        c.list_key_rotations()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .rotations()
            .len()
    };
    assert_eq!(listed().await, 1);
    for version in [99, 2] {
        let sql = if version == 2 {
            format!(
                "UPDATE key_materials SET mac = {} WHERE key_id = {} AND version = 2",
                s.db.bytes(&[7u8; 32]),
                s.db.key(&key)
            )
        } else {
            format!(
                "INSERT INTO key_materials (key_id, version, wrapped, root_version, mac, rotation_type, created_at) \
                 VALUES ({}, 99, {}, 1, {}, 'AUTOMATIC', {})",
                s.db.key(&key),
                s.db.bytes(&[1u8; 40]),
                s.db.bytes(&[7u8; 32]),
                s.db.now()
            )
        };
        if version == 99 {
            s.db.execute(&sql).await;
            assert_eq!(
                listed().await,
                1,
                "a version the key never reached is listed"
            );
        } else {
            let node = tokio::task::block_in_place(|| s.second_node());
            s.db.execute(&sql).await;
            let fresh = s.client_of(&node, &s.access_key_id, &s.secret);
            let r = fresh
                .list_key_rotations()
                .key_id(&key)
                .send()
                .await
                .unwrap();
            assert!(r.rotations().is_empty(), "{:?}", r.rotations());
        }
    }
}

/// `kms:RotationPeriodInDays` is in every EnableKeyRotation request, 365 when the period is
/// omitted, as recorded on AWS (radkawar/stackd testdata/aws/kms/rotation.json,
/// `condition_null_omitted` and `condition_numeric_omitted`): a Deny on the key's absence does
/// not apply, and a Deny on any period but 90 does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rotation_period_condition_key_is_365_when_the_period_is_omitted() {
    let s = Server::start().await;
    let c = s.client();
    let policy = |condition: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Effect":"Deny","Principal":"*","Action":"kms:EnableKeyRotation","Resource":"*","Condition":{condition}}}]}}"#
        )
    };
    let enable = |key: String, days: Option<i32>| {
        c.enable_key_rotation()
            .key_id(key)
            .set_rotation_period_in_days(days)
            .send()
    };
    // A key whose policy denies EnableKeyRotation under `condition`.
    let key_denying = |condition: &str| {
        let create = c.create_key().policy(policy(condition)).send();
        async move { create.await.unwrap().key_metadata.unwrap().key_id }
    };
    let absent = key_denying(r#"{"Null":{"kms:RotationPeriodInDays":"true"}}"#).await;
    enable(absent.clone(), None).await.unwrap();
    let other = key_denying(r#"{"NumericNotEquals":{"kms:RotationPeriodInDays":"90"}}"#).await;
    enable(other.clone(), Some(90)).await.unwrap();
    assert_eq!(
        code(enable(other.clone(), None).await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(enable(other, Some(180)).await),
        "AccessDeniedException"
    );
}
