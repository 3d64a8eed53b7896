//! Multi-Region keys across the two regions the test server serves: one key id and one key
//! material, so a ciphertext made in one region decrypts in the other; rotation shared and
//! driven by the primary; the primary movable; deletion of a primary waiting for its replicas.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyState, MultiRegionKeyType, Tag};

fn pt() -> Blob {
    Blob::new(b"travels between regions".to_vec())
}

async fn mrk(c: &aws_sdk_kms::Client) -> String {
    c.create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

async fn replicate(c: &aws_sdk_kms::Client, key: &str) {
    let out = c
        .replicate_key()
        .key_id(key)
        .replica_region(OTHER_REGION)
        .send()
        .await
        .unwrap();
    // No tags: AWS omits ReplicaTags rather than sending `[]`.
    assert!(out.replica_tags.is_none(), "{:?}", out.replica_tags);
}

async fn describe(c: &aws_sdk_kms::Client, key: &str) -> aws_sdk_kms::types::KeyMetadata {
    c.describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
}

async fn encrypt(c: &aws_sdk_kms::Client, key: &str) -> Blob {
    c.encrypt()
        .key_id(key)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

async fn decrypt(c: &aws_sdk_kms::Client, blob: &Blob) -> (Vec<u8>, String) {
    let out = c
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    (out.plaintext.unwrap().into_inner(), out.key_id.unwrap())
}

#[tokio::test]
async fn a_multi_region_key_is_one_key_in_every_region() {
    let s = Server::start().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let created = east
        .create_key()
        .multi_region(true)
        .description("primary")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let key = created.key_id.clone();
    assert!(key.starts_with("mrk-") && key.len() == 36, "{key}");
    assert_eq!(created.multi_region, Some(true));
    assert!(created
        .arn
        .as_deref()
        .unwrap()
        .ends_with(&format!(":key/{key}")));
    let cfg = created.multi_region_configuration.unwrap();
    assert_eq!(cfg.multi_region_key_type, Some(MultiRegionKeyType::Primary));
    assert_eq!(cfg.primary_key.unwrap().region.as_deref(), Some(REGION));
    assert!(cfg.replica_keys.unwrap_or_default().is_empty());

    let made_east = encrypt(&east, &key).await;
    let tag = Tag::builder()
        .tag_key("team")
        .tag_value("west")
        .build()
        .unwrap();
    let rep = east
        .replicate_key()
        .key_id(created.arn.clone().unwrap())
        .replica_region(OTHER_REGION)
        .description("replica")
        .tags(tag)
        .send()
        .await
        .unwrap();
    let meta = rep.replica_key_metadata.unwrap();
    assert_eq!(meta.key_id, key);
    assert_eq!(meta.description.as_deref(), Some("replica"));
    // As AWS answers (recorded): the replica is `Creating`, disabled; `DescribeKey` then
    // shows it settled.
    assert_eq!(
        (meta.key_state.clone(), meta.enabled),
        (Some(KeyState::Creating), false)
    );
    // Nor a current key material, in AWS's answer (recorded); `DescribeKey` shows it after.
    assert_eq!(meta.current_key_material_id, None);
    // The default policy, as AWS writes it (layout and all).
    assert_eq!(
        rep.replica_policy.as_deref(),
        Some(crate::access::aws_default_policy_text().as_str())
    );
    let settled = describe(&west, &key).await;
    assert_eq!(
        (settled.key_state, settled.enabled),
        (Some(KeyState::Enabled), true)
    );
    assert!(meta
        .arn
        .as_deref()
        .unwrap()
        .contains(&format!(":{OTHER_REGION}:")));
    let cfg = meta.multi_region_configuration.unwrap();
    assert_eq!(cfg.multi_region_key_type, Some(MultiRegionKeyType::Replica));
    assert_eq!(cfg.primary_key.unwrap().arn, created.arn);
    let replicas = cfg.replica_keys.unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].region.as_deref(), Some(OTHER_REGION));
    assert!(rep.replica_policy.unwrap().contains("kms:*"));
    assert_eq!(rep.replica_tags.unwrap().len(), 1);

    // The same material: blobs cross regions both ways, and name the local key.
    let (plain, by) = decrypt(&west, &made_east).await;
    assert_eq!(plain, pt().into_inner());
    assert_eq!(by, meta.arn.clone().unwrap());
    let made_west = encrypt(&west, &key).await;
    let (plain, by) = decrypt(&east, &made_west).await;
    assert_eq!(plain, pt().into_inner());
    assert_eq!(by, created.arn.clone().unwrap());
    assert_eq!(
        describe(&east, &key).await.current_key_material_id,
        describe(&west, &key).await.current_key_material_id
    );
    // The primary now lists its replica.
    let cfg = describe(&east, &key)
        .await
        .multi_region_configuration
        .unwrap();
    assert_eq!(cfg.replica_keys.unwrap()[0].arn, meta.arn);

    // Everything else is per region: tags, aliases, state.
    assert!(east
        .list_resource_tags()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default()
        .is_empty());
    west.create_alias()
        .alias_name("alias/west-only")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let aliases = west.list_aliases().key_id(&key).send().await.unwrap();
    assert_eq!(
        aliases.aliases.unwrap()[0].target_key_id.as_deref(),
        Some(key.as_str())
    );
    assert_eq!(
        code(east.describe_key().key_id("alias/west-only").send().await),
        "NotFoundException"
    );
    let listed = west.list_keys().send().await.unwrap().keys.unwrap();
    assert!(listed
        .iter()
        .any(|k| k.key_id.as_deref() == Some(key.as_str())));
    // The primary's ARN named in the replica's Region: not the key that decrypts here
    // (recorded on AWS, decrypt_replica_primary_arn, in these words).
    assert_eq!(
        message(
            west.decrypt()
                .key_id(created.arn.clone().unwrap())
                .ciphertext_blob(made_east.clone())
                .send()
                .await
        ),
        (
            "IncorrectKeyException".to_string(),
            "The key ID in the request does not identify a CMK that can perform this operation."
                .to_string()
        )
    );
    west.disable_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        code(
            west.decrypt()
                .ciphertext_blob(made_east.clone())
                .send()
                .await
        ),
        "DisabledException"
    );
    decrypt(&east, &made_west).await;

    // The AES-GCM bound counts every region's encryptions: all copies share one count.
    let mrk = s.db.key(key.trim_start_matches("mrk-"));
    let counts: Vec<i64> =
        s.db.strings(&format!(
            "SELECT m.invocations_reserved FROM key_materials m JOIN keys k USING (key_id) \
             WHERE k.mrk_id = {mrk}"
        ))
        .await
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 2);
    assert_eq!(counts[0], counts[1]);
    assert!(counts[0] >= 2);
}

#[tokio::test]
async fn replicate_key_and_update_primary_region_refuse_what_aws_refuses() {
    let s = Server::start().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let single = new_key(&east).await;
    let key = mrk(&east).await;
    let refuse =
        |r: Result<_, _>| code::<aws_sdk_kms::operation::replicate_key::ReplicateKeyOutput, _>(r);
    let answer =
        |r: Result<aws_sdk_kms::operation::replicate_key::ReplicateKeyOutput, _>| message(r);
    let pair = |c: &str, m: String| (c.to_string(), m);
    let replicate_to = |key: &str, region: &str| {
        east.replicate_key()
            .key_id(key)
            .replica_region(region)
            .send()
    };
    let id = describe(&east, &key).await.key_id;
    let west_arn = format!("arn:aws:kms:{OTHER_REGION}:123456789012:key/{id}");
    assert_eq!(
        refuse(replicate_to(&single, OTHER_REGION).await),
        "UnsupportedOperationException"
    );
    // Recorded on AWS, in these words.
    assert_eq!(
        answer(replicate_to(&key, REGION).await),
        pair(
            "ValidationException",
            format!("{REGION} cannot have a replica because it contains the primary.")
        )
    );
    assert_eq!(
        answer(
            replicate_to(&key, "ap-south-1").await
        ),
        pair(
            "ValidationException",
            "Region ap-south-1 is not a valid Region or multi-Region keys are not supported in Region ap-south-1.".into()
        )
    );
    assert_eq!(
        refuse(replicate_to(&key, "moon").await),
        "ValidationException"
    );
    // Recorded on AWS, in these words: another partition's Region.
    assert_eq!(
        answer(replicate_to(&key, "cn-north-1").await),
        pair(
            "ValidationException",
            "The replica key Region must be in the same AWS partition as the primary key Region."
                .into()
        )
    );
    // A disabled primary is not replicated (recorded on AWS, in these words).
    east.disable_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        answer(replicate_to(&key, OTHER_REGION).await),
        pair(
            "DisabledException",
            format!("arn:aws:kms:{REGION}:123456789012:key/{id} is disabled.")
        )
    );
    east.enable_key().key_id(&key).send().await.unwrap();
    east.create_alias()
        .alias_name("alias/mr")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer(replicate_to("alias/mr", OTHER_REGION).await),
        pair(
            "InvalidArnException",
            "Key Aliases are not supported for this operation.".into()
        )
    );
    assert_eq!(
        refuse(replicate_to("mrk-0123456789abcdef0123456789abcdef", OTHER_REGION).await),
        "NotFoundException"
    );
    // No replica yet: the primary cannot move there.
    assert_eq!(
        message(
            east.update_primary_region()
                .key_id(&key)
                .primary_region(OTHER_REGION)
                .send()
                .await
        ),
        pair(
            "ValidationException",
            format!("{id} does not have a replica key in the specified Region.")
        )
    );
    replicate(&east, &key).await;
    assert_eq!(
        answer(replicate_to(&key, OTHER_REGION).await),
        pair(
            "AlreadyExistsException",
            "You can create only one replica of each primary key in each AWS Region.".into()
        )
    );
    // A replica is not replicated, and cannot be made primary from itself.
    assert_eq!(
        answer(
            west.replicate_key()
                .key_id(&key)
                .replica_region(REGION)
                .send()
                .await
        ),
        pair(
            "UnsupportedOperationException",
            format!("{west_arn} is not a multi-region primary key.")
        )
    );
    assert_eq!(
        message(
            west.update_primary_region()
                .key_id(&key)
                .primary_region(REGION)
                .send()
                .await
        ),
        pair(
            "KMSInvalidStateException",
            format!("{west_arn} is not a multi-Region primary key.")
        )
    );

    assert_eq!(
        code(
            east.update_primary_region()
                .key_id(&single)
                .primary_region(OTHER_REGION)
                .send()
                .await
        ),
        "UnsupportedOperationException"
    );

    // Move the primary west: the roles swap, crypto goes on in both regions.
    let blob = encrypt(&east, &key).await;
    east.update_primary_region()
        .key_id(&key)
        .primary_region(OTHER_REGION)
        .send()
        .await
        .unwrap();
    let w = describe(&west, &key)
        .await
        .multi_region_configuration
        .unwrap();
    assert_eq!(w.multi_region_key_type, Some(MultiRegionKeyType::Primary));
    assert_eq!(w.primary_key.unwrap().region.as_deref(), Some(OTHER_REGION));
    let e = describe(&east, &key)
        .await
        .multi_region_configuration
        .unwrap();
    assert_eq!(e.multi_region_key_type, Some(MultiRegionKeyType::Replica));
    assert_eq!(e.replica_keys.unwrap()[0].region.as_deref(), Some(REGION));
    decrypt(&west, &blob).await;
    decrypt(&east, &blob).await;
    assert_eq!(
        refuse(replicate_to(&key, OTHER_REGION).await),
        "UnsupportedOperationException"
    );
    assert_eq!(
        code(east.enable_key_rotation().key_id(&key).send().await),
        "UnsupportedOperationException"
    );
    west.enable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn rotation_is_shared_and_driven_by_the_primary() {
    let s = clocked().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let key = mrk(&east).await;
    replicate(&east, &key).await;
    let old = encrypt(&west, &key).await;
    // Recorded on AWS, in these words.
    let arn = describe(&west, &key).await.arn.unwrap();
    let replica = |op: &str| {
        (
            "UnsupportedOperationException".to_string(),
            format!("{arn} is a multi-region replica key which is not valid for {op}."),
        )
    };
    assert_eq!(
        message(west.enable_key_rotation().key_id(&key).send().await),
        replica("EnableKeyRotation")
    );
    assert_eq!(
        message(west.rotate_key_on_demand().key_id(&key).send().await),
        replica("RotateKeyOnDemand")
    );
    assert_eq!(
        message(west.disable_key_rotation().key_id(&key).send().await),
        replica("DisableKeyRotation")
    );
    let before = describe(&west, &key).await.current_key_material_id;
    rotate_now(&east, &key).await;
    let after = describe(&west, &key).await.current_key_material_id;
    assert_ne!(before, after);
    assert_eq!(after, describe(&east, &key).await.current_key_material_id);
    let rotations = west
        .list_key_rotations()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .rotations
        .unwrap();
    assert_eq!(rotations.len(), 1);
    let new = encrypt(&east, &key).await;
    assert_eq!(decrypt(&west, &new).await.0, pt().into_inner());
    assert_eq!(decrypt(&east, &old).await.0, pt().into_inner());

    // The schedule is the primary's, shown in every region, and rotates every copy.
    east.enable_key_rotation()
        .key_id(&key)
        .rotation_period_in_days(90)
        .send()
        .await
        .unwrap();
    let st = west
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert!(st.key_rotation_enabled);
    assert_eq!(st.rotation_period_in_days, Some(90));
    s.advance_days(91);
    let west2 = west.clone();
    let k2 = key.clone();
    let east2 = east.clone();
    // (Each Region's caches learn of the job's rotation a moment after it commits, as AWS's
    // Regions do: both copies are asked until they agree.)
    eventually("the scheduled rotation of both copies", move || {
        let (w, e, k) = (west2.clone(), east2.clone(), k2.clone());
        async move {
            let rotated = w
                .list_key_rotations()
                .key_id(&k)
                .send()
                .await
                .map(|o| o.rotations.unwrap_or_default().len() == 2)
                .unwrap_or(false);
            rotated
                && describe(&e, &k).await.current_key_material_id
                    == describe(&w, &k).await.current_key_material_id
        }
    })
    .await;
    let newest = encrypt(&west, &key).await;
    decrypt(&east, &newest).await;
    decrypt(&east, &old).await;

    // A disabled replica does not hold up the primary's schedule: it follows.
    west.disable_key().key_id(&key).send().await.unwrap();
    s.advance_days(91);
    let west3 = west.clone();
    let k3 = key.clone();
    eventually(
        "the scheduled rotation with a disabled replica",
        move || {
            let (w, k) = (west3.clone(), k3.clone());
            async move {
                w.list_key_rotations()
                    .key_id(&k)
                    .send()
                    .await
                    .map(|o| o.rotations.unwrap_or_default().len() == 3)
                    .unwrap_or(false)
            }
        },
    )
    .await;
    west.enable_key().key_id(&key).send().await.unwrap();
    assert_eq!(
        describe(&east, &key).await.current_key_material_id,
        describe(&west, &key).await.current_key_material_id
    );
}

/// A replica deleted at the end of its waiting period can be replicated into its region again
/// (same key id and ARN, as on AWS), and the new replica works: the trail's DeleteKey event
/// refuses only rows created before it.
#[tokio::test]
async fn a_replica_deleted_can_be_replicated_again() {
    let s = clocked().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let key = mrk(&east).await;
    replicate(&east, &key).await;
    let blob = encrypt(&west, &key).await;
    west.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    s.advance_days(8);
    let (w2, k2) = (west.clone(), key.clone());
    eventually("the replica's deletion", move || {
        let (w, k) = (w2.clone(), k2.clone());
        async move { w.describe_key().key_id(&k).send().await.is_err() }
    })
    .await;
    replicate(&east, &key).await;
    let again = encrypt(&west, &key).await;
    decrypt(&west, &again).await;
    decrypt(&west, &blob).await;
}

#[tokio::test]
async fn a_primary_with_replicas_is_deleted_only_after_them() {
    let s = clocked().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let key = mrk(&east).await;
    replicate(&east, &key).await;
    let blob = encrypt(&east, &key).await;
    east.enable_key_rotation()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let rotation_enabled_before = true;

    let out = east
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_state, Some(KeyState::PendingReplicaDeletion));
    assert!(out.deletion_date.is_none());
    assert_eq!(out.pending_window_in_days, Some(7));
    let (c, m) = message(east.encrypt().key_id(&key).plaintext(pt()).send().await);
    assert_eq!(c, "KMSInvalidStateException");
    assert!(m.ends_with("is pending replica deletion."), "{m}");
    // Unlike a key pending deletion, it still reports its rotation (recorded).
    let status = east
        .get_key_rotation_status()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            status.key_rotation_enabled,
            status.rotation_period_in_days.is_some()
        ),
        (rotation_enabled_before, rotation_enabled_before)
    );
    // It can be cancelled like any pending deletion, and scheduled again.
    east.cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        describe(&east, &key).await.key_state,
        Some(KeyState::Disabled)
    );
    east.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    s.advance_days(30);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    // Still waiting for the replica, which works on.
    let m = describe(&east, &key).await;
    assert_eq!(m.key_state, Some(KeyState::PendingReplicaDeletion));
    assert_eq!(m.pending_deletion_window_in_days, Some(7));
    assert_eq!(m.deletion_date, None);
    decrypt(&west, &blob).await;

    let out = west
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_state, Some(KeyState::PendingDeletion));
    s.advance_days(8);
    let (e2, w2, k2) = (east.clone(), west.clone(), key.clone());
    eventually(
        "the replica's deletion and the primary's window",
        move || {
            let (e, w, k) = (e2.clone(), w2.clone(), k2.clone());
            async move {
                let gone = w.describe_key().key_id(&k).send().await.is_err();
                let primary = match e.describe_key().key_id(&k).send().await {
                    Ok(p) => p,
                    Err(err) => panic!("the primary cannot be described: {err:?}"),
                };
                let m = primary.key_metadata.unwrap();
                gone && m.key_state == Some(KeyState::PendingDeletion) && m.deletion_date.is_some()
            }
        },
    )
    .await;
    assert_eq!(
        code(west.describe_key().key_id(&key).send().await),
        "NotFoundException"
    );
    let cfg = describe(&east, &key)
        .await
        .multi_region_configuration
        .unwrap();
    assert!(cfg.replica_keys.unwrap_or_default().is_empty());

    s.advance_days(8);
    let (e2, k2) = (east.clone(), key.clone());
    eventually("the primary's deletion", move || {
        let (e, k) = (e2.clone(), k2.clone());
        async move { e.describe_key().key_id(&k).send().await.is_err() }
    })
    .await;
    let left =
        s.db.int(&format!(
            "SELECT count(*) FROM keys WHERE mrk_id = {}",
            s.db.key(key.trim_start_matches("mrk-"))
        ))
        .await;
    assert_eq!(left, 0);
    let materials = s.db.int("SELECT count(*) FROM key_materials").await;
    assert_eq!(
        materials, 0,
        "the shared material is destroyed in every region"
    );
    // As AWS answers a ciphertext whose key was deleted.
    assert_eq!(
        code(east.decrypt().ciphertext_blob(blob.clone()).send().await),
        "AccessDeniedException"
    );
}

/// The SQL writer enrols a key in a multi-Region key's family: `keys.mrk_id` is where
/// membership is read, and the rotation seal does not cover it. The primary's next rotation
/// then wrote its new material into the unrelated key and sealed it there; with the column
/// set back, every seal of the key held, and it encrypted under another key's material. Now a
/// family's rotation checks each key's attributes seal (which covers `mrk_id`): a key that
/// was not created in the family refuses the rotation until it is gone from it, and is never
/// given the family's material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_enrolled_in_a_family_with_sql_is_not_rotated_with_it() {
    let s = Server::start().await;
    let c = s.client();
    let primary = new_multi_region_key(&c).await;
    // In a Region where the family has no key (a family holds one key per Region).
    let west = s.client_in(OTHER_REGION);
    let bystander = new_key(&west).await;
    let id = |k: &str| s.db.key(k);
    let version = |k: String| {
        let db = &s.db;
        async move {
            db.int(&format!(
                "SELECT current_version FROM keys WHERE key_id = {}",
                k
            ))
            .await
        }
    };
    assert_eq!(version(id(&bystander)).await, 1);
    s.db.execute(&format!(
        "UPDATE keys SET mrk_id = (SELECT mrk_id FROM keys WHERE mrk_id IS NOT NULL AND mrk_primary) WHERE key_id = {}",
        id(&bystander)
    ))
    .await;
    // The family holds a key that was not created in it: it is not rotated.
    assert_eq!(
        code(c.rotate_key_on_demand().key_id(&primary).send().await),
        "KeyUnavailableException"
    );
    assert_eq!(
        version(id(&bystander)).await,
        1,
        "the enrolled key was not given the family's material"
    );
    s.db.execute(&format!(
        "UPDATE keys SET mrk_id = NULL WHERE key_id = {}",
        id(&bystander)
    ))
    .await;
    c.rotate_key_on_demand()
        .key_id(&primary)
        .send()
        .await
        .unwrap();
    rotation_completed(&c, &primary).await;
    let primary_row = "(SELECT key_id FROM keys WHERE mrk_id IS NOT NULL AND mrk_primary)";
    assert_eq!(version(primary_row.into()).await, 2, "the primary rotated");
    assert_eq!(version(id(&bystander)).await, 1);
    let blob = west
        .encrypt()
        .key_id(&bystander)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"own material".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    west.decrypt().ciphertext_blob(blob).send().await.unwrap();
}

/// The SQL writer edits a multi-Region primary while its metadata is cached (a node whose
/// change notifications it stopped, by disabling the trigger that sends them): ReplicateKey
/// checked the cached primary, then built and sealed the replica from the primary's row as
/// stored, unchecked. A primary made EXTERNAL in SQL gave a replica sealed as EXTERNAL, which
/// copies no material. Now the row the replica is built from must pass the primary's seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_built_only_from_the_primary_as_sealed() {
    let s = Server::start().await;
    let c = s.client();
    let primary = new_multi_region_key(&c).await;
    c.describe_key().key_id(&primary).send().await.unwrap();
    let (quiet, loud) = if sqlite() {
        (
            "DROP TRIGGER keys_update_change",
            "CREATE TRIGGER keys_update_change AFTER UPDATE ON keys BEGIN INSERT INTO changes (channel, payload) VALUES ('kms_key_changed', lower(hex(NEW.key_id))); END",
        )
    } else {
        (
            "ALTER TABLE keys DISABLE TRIGGER keys_changed",
            "ALTER TABLE keys ENABLE TRIGGER keys_changed",
        )
    };
    s.db.execute(quiet).await;
    s.db.execute("UPDATE keys SET origin = 'EXTERNAL' WHERE mrk_primary")
        .await;
    assert_eq!(
        code(
            c.replicate_key()
                .key_id(&primary)
                .replica_region(OTHER_REGION)
                .send()
                .await
        ),
        "KeyUnavailableException"
    );
    s.db.execute("UPDATE keys SET origin = 'AWS_KMS' WHERE mrk_primary")
        .await;
    s.db.execute(loud).await;
    let replica = c
        .replicate_key()
        .key_id(&primary)
        .replica_region(OTHER_REGION)
        .send()
        .await
        .unwrap()
        .replica_key_metadata
        .unwrap();
    assert_eq!(replica.origin, Some(aws_sdk_kms::types::OriginType::AwsKms));
}

/// The attack: a primary waits in `PendingReplicaDeletion` for its replica. A database writer
/// clears the replica's `mrk_id`, so the primary counts no replica and its own waiting period
/// starts (then its deletion), while the replica still exists. Now the primary finds its
/// replicas by their ids (each Region's copy of a multi-Region key has an id derived from the
/// family's), not by that column: it keeps waiting.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_hidden_from_its_family_with_sql_keeps_the_primary_waiting() {
    let s = clocked().await;
    let east = s.client();
    let key = mrk(&east).await;
    replicate(&east, &key).await;
    let out = east
        .schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_state, Some(KeyState::PendingReplicaDeletion));
    s.db.execute(&format!(
        "UPDATE keys SET mrk_id = NULL WHERE region = '{OTHER_REGION}' AND mrk_id = {}",
        s.db.key(key.trim_start_matches("mrk-"))
    ))
    .await;
    s.advance_days(1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let m = describe(&east, &key).await;
    assert_eq!(
        (m.key_state, m.deletion_date),
        (Some(KeyState::PendingReplicaDeletion), None),
        "the primary still waits for its replica"
    );
}

/// ListAliases names an alias's target from the key as verified, never from the key row's
/// multi-Region family as stored: the SQL writer who enrolls an alias's key in another family
/// cannot make the listing name that family's key as the alias's target (a tool that resolves
/// aliases through ListAliases would then encrypt under it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_listed_never_names_a_family_written_with_sql() {
    let s = Server::start().await;
    let c = s.client();
    let family = new_multi_region_key(&c).await;
    // In a Region where the family has no key (a family holds one key per Region).
    let west = s.client_in(OTHER_REGION);
    let key = new_key(&west).await;
    west.create_alias()
        .alias_name("alias/payments")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    s.db.execute(&format!(
        "UPDATE keys SET mrk_id = (SELECT mrk_id FROM keys WHERE mrk_id IS NOT NULL AND mrk_primary) WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    let node = tokio::task::block_in_place(|| s.second_node());
    let fresh = s.client_of_in(&node, OTHER_REGION);
    let listed = fresh.list_aliases().send().await.unwrap();
    let targets: Vec<_> = listed
        .aliases()
        .iter()
        .filter(|a| a.alias_name() == Some("alias/payments"))
        .map(|a| a.target_key_id().unwrap_or_default().to_string())
        .collect();
    assert!(
        !targets.contains(&family),
        "the alias was listed as {family}'s: {targets:?}"
    );
}

/// A replica hidden from its family's rotation: the SQL writer clears the replica's `mrk_id`
/// around a rotation, so the store counts the primary alone and the replica would keep
/// encrypting under the old material (and never decrypt what the family makes under the new).
/// Now every row at a family id must be counted in the family: the rotation is refused while
/// one is hidden, and goes through for all once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_hidden_from_its_family_is_not_left_out_of_a_rotation() {
    let s = Server::start().await;
    let east = s.client();
    let key = mrk(&east).await;
    replicate(&east, &key).await;
    let mrk_id = s.db.key(key.trim_start_matches("mrk-"));
    let versions = || async {
        s.db.strings(&format!(
            "SELECT current_version FROM keys WHERE key_id IN (SELECT key_id FROM keys WHERE mrk_id = {mrk_id}) OR region = '{OTHER_REGION}' ORDER BY region"
        ))
        .await
    };
    let hide = format!(
        "UPDATE keys SET mrk_id = NULL WHERE region = '{OTHER_REGION}' AND mrk_id = {mrk_id}"
    );
    s.db.execute(&hide).await;
    assert_eq!(
        code(east.rotate_key_on_demand().key_id(&key).send().await),
        "KeyUnavailableException"
    );
    assert_eq!(versions().await, vec!["1", "1"]);
    s.db.execute(&format!(
        "UPDATE keys SET mrk_id = {mrk_id} WHERE region = '{OTHER_REGION}'"
    ))
    .await;
    east.rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while versions().await != vec!["2", "2"] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            versions().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
