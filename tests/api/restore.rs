//! The restore drill: back up (pg_dump and a copy of the token), keep working (a new key, a
//! rotation, a deletion, a revoked grant), then restore to a fresh database and token and
//! start the service on them, as an operator recovering from a disaster would.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::GrantOperation;
use std::process::Command;

const ACCOUNT: &str = "123456789012";

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

async fn encrypt(c: &aws_sdk_kms::Client, key: &str, text: &str) -> Blob {
    c.encrypt()
        .key_id(key)
        .plaintext(Blob::new(text.as_bytes().to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

async fn decrypts(c: &aws_sdk_kms::Client, blob: &Blob, text: &str) {
    let d = c
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(d.plaintext.unwrap().into_inner(), text.as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_decrypts_what_it_held_and_revives_nothing_ended_since() {
    if skip_on_sqlite("a pg_dump backup and restore") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (clock, anchor) = (dir.path().join("clock"), dir.path().join("anchor"));
    std::fs::write(&clock, "0").unwrap();
    let s = Server::start_with(&[
        ("KMS_CLOCK_OFFSET_FILE", clock.to_str().unwrap()),
        ("KMS_ENABLE_TEST_HOOKS", "true"),
        ("KMS_SCHEDULER_INTERVAL_MS", "50"),
        ("KMS_AUDIT_ANCHOR_FILE", anchor.to_str().unwrap()),
    ])
    .await;
    let c = s.client();
    let (kept, doomed, shared) = (new_key(&c).await, new_key(&c).await, new_key(&c).await);
    let (bob_arn, bob_id, bob_secret, bob) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "bob", None));
    let (_, carol_id, carol_secret, carol) = tokio::task::block_in_place(|| {
        s.new_user_with_secret(
            ACCOUNT,
            "carol",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#),
        )
    });
    carol.list_keys().send().await.unwrap();
    // Dave's key was deleted once and imported again under the same id before the backup, so
    // the backup's trail already ends the key with a DeleteAccessKey; the live trail's second
    // deletion, after the backup, has the same name.
    let (dave_arn, dave_id, dave_secret, _) = tokio::task::block_in_place(|| {
        s.new_user_with_secret(
            ACCOUNT,
            "dave",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#),
        )
    });
    tokio::task::block_in_place(|| {
        s.admin_ok(&["delete-access-key", "--access-key-id", &dave_id]);
        let out = s.admin(
            &[
                "create-access-key",
                "--user-arn",
                &dave_arn,
                "--access-key-id",
                &dave_id,
            ],
            &[("KMS_IMPORT_SECRET_ACCESS_KEY", &dave_secret)],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let grant = c
        .create_grant()
        .key_id(&shared)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let before = [
        (encrypt(&c, &kept, "kept").await, "kept"),
        (encrypt(&c, &doomed, "doomed").await, "doomed"),
        (encrypt(&bob, &shared, "shared").await, "shared"),
    ];
    // The backup: the database with pg_dump, the token copied (an HSM's own backup).
    let dump = dir.path().join("backup.sql");
    tokio::task::block_in_place(|| {
        run(Command::new("pg_dump")
            .arg("--no-owner")
            .arg(format!("--dbname={}", s.db.url()))
            .arg("-f")
            .arg(&dump))
    });
    let token_backup = s.token.copy();
    // Work goes on: a new key, a rotation, a deletion, a revoked grant, carol's access key
    // deactivated (it leaked, say).
    tokio::task::block_in_place(|| {
        s.admin_ok(&["deactivate-access-key", "--access-key-id", &carol_id]);
        s.admin_ok(&["delete-access-key", "--access-key-id", &dave_id]);
    });
    let later = new_key(&c).await;
    rotate_now(&c, &kept).await;
    let after_rotation = encrypt(&c, &kept, "rotated").await;
    c.revoke_grant()
        .key_id(&shared)
        .grant_id(&grant)
        .send()
        .await
        .unwrap();
    c.schedule_key_deletion()
        .key_id(&doomed)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    s.advance_days(8);
    let (c2, d2) = (c.clone(), doomed.clone());
    eventually("the key to be deleted", move || {
        let (c, d) = (c2.clone(), d2.clone());
        async move { c.describe_key().key_id(d).send().await.is_err() }
    })
    .await;
    // The live trail, signed to its end and exported; its public key.
    ok(s.kms(&["audit", "checkpoint"]));
    let live = dir.path().join("live-trail.jsonl");
    ok(s.kms(&["audit", "export", "--out", live.to_str().unwrap()]));
    let pem = dir.path().join("audit.pem");
    let out = s.kms(&["audit", "public-key"]);
    std::fs::write(&pem, &out.stdout).unwrap();

    // The disaster: restore to a fresh database and token, and start the service on them
    // (with a new anchor: the old one records a trail this database does not hold).
    let restored_db = Database::new();
    tokio::task::block_in_place(|| {
        run(Command::new("psql")
            .args(["-qX", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--dbname={}", restored_db.url()))
            .arg("-f")
            .arg(&dump))
    });
    let restored = tokio::task::block_in_place(|| {
        Server::from_parts(token_backup, restored_db, &s.access_key_id, &s.secret)
    });
    // The backup's blobs unwrap under the restored token.
    let said = ok(restored.kms(&["backup", "verify"]));
    assert!(
        said.contains("3 keys pass their checks; 3 material versions unwrap"),
        "{said}"
    );
    // Started with the live anchor, the restored database is refused at once.
    let with_live_anchor = restored.kms(&[
        "audit",
        "verify",
        "--public-key",
        pem.to_str().unwrap(),
        "--anchor",
        anchor.to_str().unwrap(),
    ]);
    assert!(
        !with_live_anchor.status.success(),
        "the restored trail passed as the live one"
    );
    // The operator carries the live trail's ends forward.
    let said = ok(restored.admin(
        &[
            "carry-forward-ends",
            "--live-trail",
            live.to_str().unwrap(),
            "--public-key",
            pem.to_str().unwrap(),
        ],
        &[],
    ));
    assert!(
        said.contains(
            "carried forward 1 key deletions, 1 grant ends and 2 access key deactivations or deletions"
        ),
        "{said}"
    );
    // Dave's key, imported again before the backup and deleted again after it, stays deleted
    // (before, the restored trail's earlier DeleteAccessKey of the same name was taken for
    // this one, nothing was carried, and the key signed again).
    let rdave = client_at(&restored.endpoint, &dave_id, &dave_secret, REGION, None);
    assert_eq!(
        code(rdave.list_keys().send().await),
        "UnrecognizedClientException"
    );
    // Carol's access key, Active in the backup, stays deactivated (before, it signed again).
    let rcarol = client_at(&restored.endpoint, &carol_id, &carol_secret, REGION, None);
    assert_eq!(
        code(rcarol.list_keys().send().await),
        "UnrecognizedClientException"
    );
    let rc = restored.client();
    // Everything up to the backup decrypts, except under the key deleted since.
    for (blob, text) in &before {
        if *text == "doomed" {
            assert_eq!(
                code(rc.decrypt().ciphertext_blob(blob.clone()).send().await),
                "KeyUnavailableException"
            );
        } else {
            decrypts(&rc, blob, text).await;
        }
    }
    // The grant revoked after the backup allows nothing.
    // Bob's access key is in the backup.
    let rbob = client_at(&restored.endpoint, &bob_id, &bob_secret, REGION, None);
    assert_eq!(
        code(
            rbob.encrypt()
                .key_id(&shared)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    // What came after the backup is not there: the later key, the rotated material.
    assert_eq!(
        code(rc.describe_key().key_id(&later).send().await),
        "NotFoundException"
    );
    assert!(rc
        .decrypt()
        .ciphertext_blob(after_rotation)
        .send()
        .await
        .is_err());
    // The restored trail verifies on its own (it is a whole trail), and it says what it
    // carried forward.
    let (whole, out) = tokio::task::block_in_place(|| audit_verify(&restored));
    assert!(whole, "{out}");
}

/// Bad input to the backup commands gets one clear sentence and changes nothing: a token that
/// is not the backup's, a trail export edited or truncated, the audit key of another
/// deployment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_commands_refuse_what_is_not_this_deployments() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    encrypt(&c, &key, "x").await;
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    // Another deployment: its own token and database.
    let other = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A token that is not this database's: refused in one sentence.
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, &other.token, &s.db);
    let out = tokio::task::block_in_place(|| cmd.args(["backup", "verify"]).output().unwrap());
    assert!(!out.status.success(), "a foreign token verified the backup");
    let said = String::from_utf8_lossy(&out.stderr);
    let last = said.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kms: ") && last.contains("do not verify under token"),
        "{said}"
    );
    // A trail export edited, truncated, or signed by another deployment's key.
    ok(s.kms(&["audit", "checkpoint"]));
    let live = dir.path().join("live.jsonl");
    ok(s.kms(&["audit", "export", "--out", live.to_str().unwrap()]));
    let pem = dir.path().join("audit.pem");
    std::fs::write(&pem, s.kms(&["audit", "public-key"]).stdout).unwrap();
    let other_pem = dir.path().join("other.pem");
    std::fs::write(&other_pem, other.kms(&["audit", "public-key"]).stdout).unwrap();
    let text = std::fs::read_to_string(&live).unwrap();
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(
        &edited,
        text.replacen("ScheduleKeyDeletion", "DisableKey", 1),
    )
    .unwrap();
    let truncated = dir.path().join("truncated.jsonl");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let events_before = s.db.int("SELECT count(*) FROM audit_events").await;
    for (trail, key) in [(&edited, &pem), (&truncated, &pem), (&live, &other_pem)] {
        let out = s.admin(
            &[
                "carry-forward-ends",
                "--live-trail",
                trail.to_str().unwrap(),
                "--public-key",
                key.to_str().unwrap(),
            ],
            &[],
        );
        assert!(
            !out.status.success(),
            "{} with {} was carried forward",
            trail.display(),
            key.display()
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("kms:"), "{said}");
    }
    // Refused before anything was written: only the commands' intents are in the trail.
    let added = s.db.int("SELECT count(*) FROM audit_events").await - events_before;
    let intents = s
        .db
        .int(&format!(
            "SELECT count(*) FROM audit_events WHERE event_name = 'AdminCommandStarted' AND seq > (SELECT max(seq) FROM audit_events) - {added}"
        ))
        .await;
    assert_eq!(added, intents, "a refused carry-forward wrote events");
}
