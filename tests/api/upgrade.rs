//! Rolling upgrades, as an operator runs one: nodes of the previous release serve; a node of
//! this release starts beside them on the same database (it applies this release's migrations,
//! which only add); both serve at once, each on the other's rows; a node of the previous
//! release restarts against the newer schema; the trail verifies with either binary.
//!
//! The previous release's binary is built by scripts/test.sh from the commit that
//! `scripts/previous-release` names and passed in `KMS_TEST_PREVIOUS_BIN`.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::GrantOperation;
use std::process::Command;

const ACCOUNT: &str = "123456789012";

/// The previous release's `kms`, or `None` (skipped, and said) when it was not built; under
/// scripts/test.sh (`KMS_TEST_REQUIRE_PREVIOUS=1`) it must be there.
fn previous_bin() -> Option<String> {
    match std::env::var("KMS_TEST_PREVIOUS_BIN") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("KMS_TEST_REQUIRE_PREVIOUS").is_err(),
                "KMS_TEST_PREVIOUS_BIN is not set: scripts/test.sh builds the previous release"
            );
            None
        }
    }
}

async fn encrypt(c: &aws_sdk_kms::Client, key: &str, pt: &[u8]) -> Blob {
    c.encrypt()
        .key_id(key)
        .plaintext(Blob::new(pt.to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

async fn decrypts(c: &aws_sdk_kms::Client, ct: &Blob, pt: &[u8]) {
    let out = c
        .decrypt()
        .ciphertext_blob(ct.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), pt);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_previous_release_and_this_one_serve_one_database_at_once() {
    if skip_on_sqlite("the embedded store serves one node; rolling upgrades are for Postgres") {
        return;
    }
    let Some(prev) = previous_bin() else {
        eprintln!("SKIPPED: no previous release binary (KMS_TEST_PREVIOUS_BIN)");
        return;
    };
    let version = Command::new(&prev).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    let mine = Command::new(kms_bin()).arg("--version").output().unwrap();
    let mine = String::from_utf8_lossy(&mine.stdout).to_string();
    assert_ne!(version, mine, "the previous release is another build");

    // The previous release sets the deployment up and serves.
    let (token, db) = tokio::task::block_in_place(|| (Token::new(), Database::new()));
    let init = tokio::task::block_in_place(|| run_init_with(&prev, &token, &db, None));
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let (id, secret) = parse_credentials(&String::from_utf8_lossy(&init.stdout));
    let (id, secret) = (id.unwrap(), secret.unwrap());
    let mut old = tokio::task::block_in_place(|| {
        Server::from_parts_on(
            &prev,
            token,
            db,
            &id,
            &secret,
            &[("KMS_SCHEDULER_INTERVAL_MS", "200")],
        )
    });
    let before: i64 = old
        .db
        .int("SELECT max(version) FROM _sqlx_migrations")
        .await;
    let c_old = old.client();
    let key_a = new_key(&c_old).await;
    let ct_a = encrypt(&c_old, &key_a, b"written by the previous release").await;
    let (bob_arn, bob_id, bob_secret, _) =
        tokio::task::block_in_place(|| old.new_user_with_secret(ACCOUNT, "bob", None));

    // This release's commands that do not migrate refuse the older schema in one sentence.
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, &old.token, &old.db);
    let out = tokio::task::block_in_place(|| {
        cmd.args(["admin", "create-account", "--account-id", "444444444444"])
            .output()
            .unwrap()
    });
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{said}");
    assert!(
        said.trim().lines().count() == 1 && said.contains("older than this build's"),
        "{said}"
    );

    // A node of this release starts beside it: it migrates the schema while the old one
    // serves.
    let new = tokio::task::block_in_place(|| old.node_on(kms_bin()));
    let after: i64 = old
        .db
        .int("SELECT max(version) FROM _sqlx_migrations")
        .await;
    assert!(after > before, "this release migrated: {before} -> {after}");
    let c_new = old.client_of(&new, &id, &secret);
    let bob_old = old.client_with(&bob_id, &bob_secret, REGION, None);
    let bob_new = old.client_of(&new, &bob_id, &bob_secret);

    // Both serve, each on the other's rows.
    decrypts(&c_new, &ct_a, b"written by the previous release").await;
    let key_b = new_key(&c_new).await;
    let ct_b = encrypt(&c_new, &key_b, b"written by this release").await;
    decrypts(&c_old, &ct_b, b"written by this release").await;
    let ct_a2 = encrypt(&c_new, &key_a, b"the old key, on the new node").await;
    decrypts(&c_old, &ct_a2, b"the old key, on the new node").await;
    c_new
        .create_alias()
        .alias_name("alias/upgraded")
        .target_key_id(&key_a)
        .send()
        .await
        .unwrap();
    let ct_alias = encrypt(&c_old, "alias/upgraded", b"through an alias").await;
    decrypts(&c_new, &ct_alias, b"through an alias").await;
    // A grant made on either node is used on the other.
    for (maker, user, key) in [(&c_old, &bob_new, &key_a), (&c_new, &bob_old, &key_b)] {
        maker
            .create_grant()
            .key_id(key)
            .grantee_principal(&bob_arn)
            .operations(GrantOperation::Encrypt)
            .send()
            .await
            .unwrap();
        eventually("the grant is usable on the other node", || async {
            user.encrypt()
                .key_id(key)
                .plaintext(Blob::new(b"granted".to_vec()))
                .send()
                .await
                .is_ok()
        })
        .await;
    }
    // A change on one node is enforced on the other.
    c_new.disable_key().key_id(&key_a).send().await.unwrap();
    // (Until the old node hears of the change it still encrypts: that is not an answer yet.)
    eventually("the old node refuses the disabled key", || async {
        matches!(
            c_old
                .encrypt()
                .key_id(&key_a)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await,
            Err(e) if aws_sdk_kms::error::ProvideErrorMetadata::code(&e) == Some("DisabledException")
        )
    })
    .await;
    c_old.enable_key().key_id(&key_a).send().await.unwrap();
    eventually("the new node takes the key enabled again", || async {
        c_new
            .encrypt()
            .key_id(&key_a)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .is_ok()
    })
    .await;
    c_old
        .tag_resource()
        .key_id(&key_b)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("by")
                .tag_value("old")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let tags = c_new
        .list_resource_tags()
        .key_id(&key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags.unwrap().len(), 1);

    // A node of the previous release restarts against the newer schema, and serves.
    tokio::task::block_in_place(|| old.spawn());
    let c_old = old.client();
    decrypts(&c_old, &ct_b, b"written by this release").await;
    new_key(&c_old).await;
    let c_new = old.client_of(&new, &id, &secret);
    decrypts(&c_new, &ct_a, b"written by the previous release").await;

    // The trail verifies with either binary.
    let (ok, out) = tokio::task::block_in_place(|| audit_verify(&old));
    assert!(ok, "previous release: {out}");
    old.bin = kms_bin().to_string();
    std::fs::remove_file(old.path("audit.pem")).ok();
    let (ok, out) = tokio::task::block_in_place(|| audit_verify(&old));
    assert!(ok, "this release: {out}");
}
