//! Root key rotation, as an operator runs it: `kms hsm rotate-root-key` killed with SIGKILL in
//! the middle of re-wrapping, resumed by a node and by `kms hsm rewrap` at once; every blob
//! (key material of each kind, access key secrets, import tokens) moved to the new root key,
//! none lost, every read working throughout; the old root key destroyed only once nothing
//! records it, on an audited command.

use crate::import::{external_key, oaep_sha1, parameters};
use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, KeySpec, KeyUsageType, MacAlgorithmSpec,
    SigningAlgorithmSpec, WrappingKeySpec,
};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const ACCOUNT: &str = "123456789012";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `kms hsm rotate-root-key --batch <batch>` killed (SIGKILL) once it reports its first
/// re-wrap progress: the lines it printed.
fn rotation_killed_mid_way(s: &Server, batch: &str) -> Vec<String> {
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, &s.token, &s.db);
    let mut child = cmd
        .args(["hsm", "rotate-root-key", "--batch", batch])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .expect("rotate-root-key printed no progress")
            .unwrap();
        seen.push(line.clone());
        if line.contains("re-wrapped") && line.contains('%') {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

/// Stored blobs per root key version, straight from the tables.
async fn blobs_under(s: &Server, version: i32) -> i64 {
    let mut n = 0;
    for table in ["key_materials", "access_keys", "sessions", "import_tokens"] {
        n +=
            s.db.int(&format!(
                "SELECT count(*) FROM {table} WHERE root_version = {version}"
            ))
            .await;
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn the_root_key_rotates_with_every_blob_rewrapped_and_the_old_key_destroyed_only_when_unused()
{
    let mut s = Server::start_with(&[("KMS_SCHEDULER_INTERVAL_MS", "100")]).await;
    let c = s.client();
    // Blobs of every kind, with something each one did.
    let mut sealed = Vec::new();
    for i in 0..10u8 {
        let key = new_key(&c).await;
        let ct = c
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(vec![i; 32]))
            .send()
            .await
            .unwrap()
            .ciphertext_blob
            .unwrap();
        sealed.push((ct, vec![i; 32]));
    }
    let rsa = new_key_with(&c, KeySpec::Rsa2048, KeyUsageType::SignVerify)
        .await
        .key_id;
    let signature = c
        .sign()
        .key_id(&rsa)
        .message(Blob::new(b"signed under root key v1".to_vec()))
        .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
        .send()
        .await
        .unwrap()
        .signature
        .unwrap();
    let hmac = new_key_with(&c, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac)
        .await
        .key_id;
    let mac = c
        .generate_mac()
        .key_id(&hmac)
        .message(Blob::new(b"maced".to_vec()))
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap()
        .mac
        .unwrap();
    let wide = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let user = tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "rotor", Some(wide)));
    let external = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let (import_token, public) = parameters(
        &c,
        &external,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    let total = blobs_under(&s, 1).await;
    // 12 key materials, the administrator's and the user's access keys, one import token.
    assert_eq!(total, 15);
    assert_eq!(blobs_under(&s, 2).await, 0);

    // Bad input gets one sentence and changes nothing.
    for (args, says) in [
        (
            vec!["hsm", "destroy-root-key", "--version", "1"],
            "is the current root key",
        ),
        (
            vec!["hsm", "destroy-root-key", "--version", "7"],
            "there is no root key v7",
        ),
        (
            vec!["hsm", "rewrap", "--batch", "0"],
            "--batch must be at least 1",
        ),
    ] {
        let out = s.kms(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(blobs_under(&s, 1).await, total);

    // The nodes stopped, the rotation is killed (SIGKILL) in the middle of re-wrapping.
    s.stop();
    let seen = rotation_killed_mid_way(&s, "2");
    assert!(
        seen.iter().any(|l| l.contains("root key v2 created")),
        "{seen:?}"
    );
    let (moved, left) = (blobs_under(&s, 2).await, blobs_under(&s, 1).await);
    assert!(
        moved > 0 && left > 0,
        "killed half-way: {moved} moved, {left} left"
    );
    assert_eq!(moved + left, total, "no blob lost");
    // A second rotation is refused until this one is finished.
    let out = s.kms(&["hsm", "rotate-root-key"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not finished") && stderr(&out).contains("kms hsm rewrap"),
        "{}",
        stderr(&out)
    );

    // A node comes back (it wraps new blobs under v2 and re-wraps in the background) while
    // the operator resumes with `kms hsm rewrap`: each blob is re-wrapped once.
    s.spawn();
    let out = s.kms(&["hsm", "rewrap", "--batch", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every stored blob is wrapped under root key v2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(blobs_under(&s, 1).await, 0);
    assert_eq!(blobs_under(&s, 2).await, total, "no blob lost");
    let status = s.kms(&["hsm", "root-keys"]);
    let listed = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        listed.contains("kms-root-wrapping-key-v2  (current)"),
        "{listed}"
    );

    // Everything made under v1 works, on a node with nothing cached.
    s.spawn();
    let c = s.client();
    let check_all = |c: aws_sdk_kms::Client| {
        let sealed = sealed.clone();
        let (rsa, hmac, signature, mac) =
            (rsa.clone(), hmac.clone(), signature.clone(), mac.clone());
        async move {
            for (ct, pt) in &sealed {
                let out = c
                    .decrypt()
                    .ciphertext_blob(ct.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(out.plaintext.unwrap().into_inner(), *pt);
            }
            let v = c
                .verify()
                .key_id(&rsa)
                .message(Blob::new(b"signed under root key v1".to_vec()))
                .signature(signature)
                .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
                .send()
                .await
                .unwrap();
            assert!(v.signature_valid);
            c.sign()
                .key_id(&rsa)
                .message(Blob::new(b"and under v2".to_vec()))
                .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
                .send()
                .await
                .unwrap();
            let v = c
                .verify_mac()
                .key_id(&hmac)
                .message(Blob::new(b"maced".to_vec()))
                .mac(mac)
                .mac_algorithm(MacAlgorithmSpec::HmacSha256)
                .send()
                .await
                .unwrap();
            assert!(v.mac_valid);
        }
    };
    check_all(c.clone()).await;
    // The user's access key (its secret re-wrapped) still signs requests.
    let user_client = s.client_with(&user.1, &user.2, REGION, None);
    user_client.list_keys().send().await.unwrap();
    // The import token made under v1 (its private key re-wrapped) still imports.
    c.import_key_material()
        .key_id(&external)
        .import_token(import_token)
        .encrypted_key_material(Blob::new(oaep_sha1(&public, &[7u8; 32])))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .unwrap();
    c.encrypt()
        .key_id(&external)
        .plaintext(Blob::new(b"imported".to_vec()))
        .send()
        .await
        .unwrap();
    // New blobs are made under v2.
    new_key(&c).await;
    assert_eq!(blobs_under(&s, 1).await, 0);

    // The old root key goes, on an audited command; everything still works after a restart.
    let out = s.kms(&["hsm", "destroy-root-key", "--version", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("root key v1 destroyed"),
        "{}",
        stderr(&out)
    );
    let listed = String::from_utf8_lossy(&s.kms(&["hsm", "root-keys"]).stdout).to_string();
    assert!(!listed.contains("-v1"), "{listed}");
    s.spawn();
    check_all(s.client()).await;
    let (ok, out) = tokio::task::block_in_place(|| audit_verify(&s));
    assert!(ok, "{out}");
    let events = s
        .db
        .strings("SELECT event_name FROM audit_events WHERE event_name IN ('RotateRootKey', 'DestroyRootKey') ORDER BY seq")
        .await;
    assert!(
        events.iter().filter(|e| *e == "RotateRootKey").count() >= 1
            && events.iter().any(|e| e == "DestroyRootKey"),
        "{events:?}"
    );
}

/// Operators rotate the root key at the same moment (four commands at once, in rounds). PKCS#11
/// has no create-if-absent: two commands that each found no `kms-root-wrapping-key-vN` would
/// each create one, and the token would hold two keys of one label, which no process can start
/// with. Each version is made once, whatever the commands' order, and the service carries on.
#[tokio::test(flavor = "multi_thread")]
async fn operators_rotating_at_once_make_each_root_key_once() {
    let mut s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"kept".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    s.stop();
    for _ in 0..3 {
        let rotors: Vec<_> = (0..4)
            .map(|_| {
                let mut cmd = Command::new(kms_bin());
                kms_env(&mut cmd, &s.token, &s.db);
                cmd.args(["hsm", "rotate-root-key"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outs: Vec<_> = rotors
            .into_iter()
            .map(|c| stderr(&c.wait_with_output().unwrap()))
            .collect();
        let listed = pkcs11_tool(
            &s.token.conf(),
            &[
                "--token-label",
                &s.token.label,
                "--login",
                "--pin",
                PIN,
                "--list-objects",
            ],
        );
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        let current = s.db.int("SELECT max(version) FROM root_keys").await;
        for version in 1..=current {
            let label = format!("kms-root-wrapping-key-v{version}");
            let copies = listed
                .lines()
                .filter(|l| l.trim().strip_prefix("label:").map(str::trim) == Some(label.as_str()))
                .count();
            assert_eq!(copies, 1, "{label}: {outs:?}");
        }
        // Whichever command finished the rotation, it is finished before the next round.
        let out = s.kms(&["hsm", "rewrap"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            blobs_under(&s, current as i32).await,
            blobs_under_any(&s).await
        );
    }
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    let plain = c
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_eq!(plain.as_ref(), b"kept");
}

/// Stored blobs under any root key version.
async fn blobs_under_any(s: &Server) -> i64 {
    let mut n = 0;
    for table in ["key_materials", "access_keys", "sessions", "import_tokens"] {
        n += s.db.int(&format!("SELECT count(*) FROM {table}")).await;
    }
    n
}

/// The SQL writer relabels key material still wrapped under the old root key as wrapped under
/// the new one, so that nothing seems to need the old key: destroyed, it would take that
/// material with it, for good (backups included). Now `destroy-root-key` first checks every
/// material row's MAC (which covers the root version it records) and refuses while any fails.
/// With the labels put back, the re-wrap moves them and the old key goes, nothing lost.
#[tokio::test(flavor = "multi_thread")]
async fn material_relabelled_with_sql_keeps_its_root_key_from_being_destroyed() {
    let mut s = Server::start().await;
    let c = s.client();
    let mut keys = Vec::new();
    for _ in 0..20 {
        keys.push(new_key(&c).await);
    }
    s.stop();
    // The rotation killed after its first batch: material is left under v1.
    rotation_killed_mid_way(&s, "1");
    let under_v1 = "FROM key_materials WHERE root_version = 1";
    assert!(s.db.int(&format!("SELECT count(*) {under_v1}")).await > 0);
    s.db.execute(&format!(
        "CREATE TABLE relabelled AS SELECT key_id, version {under_v1}"
    ))
    .await;
    s.db.execute("UPDATE key_materials SET root_version = 2 WHERE root_version = 1")
        .await;
    let out = s.kms(&["hsm", "rewrap", "--batch", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(blobs_under(&s, 1).await, 0);
    let out = s.kms(&["hsm", "destroy-root-key", "--version", "1"]);
    assert!(!out.status.success(), "destroyed under hidden material");
    assert!(
        stderr(&out).contains("fail their integrity check"),
        "{}",
        stderr(&out)
    );
    s.db.execute(
        "UPDATE key_materials SET root_version = 1 WHERE EXISTS (SELECT 1 FROM relabelled r \
         WHERE r.key_id = key_materials.key_id AND r.version = key_materials.version)",
    )
    .await;
    let out = s.kms(&["hsm", "rewrap", "--batch", "50"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.kms(&["hsm", "destroy-root-key", "--version", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.spawn();
    let c = s.client();
    for k in &keys {
        c.encrypt()
            .key_id(k)
            .plaintext(Blob::new(b"kept".to_vec()))
            .send()
            .await
            .unwrap();
    }
}

/// The attack: a material row whose key is gone (the foreign key dropped, the row copied under
/// a key id that names no key) is listed under the older root key for ever, and no reader
/// finds it. `kms hsm rewrap` counted it as moved by another process on every pass and looped
/// without end (and the older root key could never be destroyed). Now passes that move
/// nothing while the backlog stays end the command with what is left, named.
#[tokio::test(flavor = "multi_thread")]
async fn a_material_row_without_its_key_ends_the_rewrap_instead_of_holding_it() {
    if skip_on_sqlite("drops a Postgres foreign key") {
        return;
    }
    let mut s = Server::start().await;
    let c = s.client();
    for _ in 0..4 {
        new_key(&c).await;
    }
    s.stop();
    rotation_killed_mid_way(&s, "1");
    s.db.execute("ALTER TABLE key_materials DROP CONSTRAINT key_materials_key_id_fkey")
        .await;
    s.db.execute(
        "CREATE TABLE orphan AS SELECT * FROM key_materials WHERE root_version = 1 LIMIT 1",
    )
    .await;
    s.db.execute("UPDATE orphan SET key_id = gen_random_uuid()")
        .await;
    s.db.execute("INSERT INTO key_materials SELECT * FROM orphan")
        .await;
    let started = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| {
        let mut cmd = std::process::Command::new(kms_bin());
        kms_env(&mut cmd, &s.token, &s.db);
        let mut child = cmd
            .args(["hsm", "rewrap", "--batch", "50"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        child.wait_with_output().unwrap()
    });
    assert!(
        started.elapsed() < std::time::Duration::from_secs(29),
        "kms hsm rewrap did not end"
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("1 stored blobs are left under an older root key and no process moves them"),
        "{}",
        stderr(&out)
    );
    assert_eq!(blobs_under(&s, 1).await, 1, "the real blobs moved");
}
