//! Metadata MAC key rotation, as an operator answers a MAC key that may be compromised:
//! `kms hsm rotate-mac-key` killed with SIGKILL in the middle, resumed by a node and by `kms hsm
//! remac` at once; every MAC'd row (key seals, materials, an import record and its material
//! check, grants, principals, aliases, access keys) moved to the new key, each row verified
//! first and nothing lost; then the old key destroyed on an audited command, after which a
//! row or grant token MAC'd under it (as someone holding the old key could make one) is
//! refused.

use crate::import::{external_key, oaep_sha1, parameters};
use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, GrantOperation, KeySpec, KeyUsageType, WrappingKeySpec,
};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const ACCOUNT: &str = "123456789012";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// What `kms hsm mac-keys` says is left under an older MAC key.
fn macs_behind(s: &Server) -> i64 {
    let out = s.kms(&["hsm", "mac-keys"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_suffix(" stored MACs are under an older MAC key"))
        .unwrap_or_else(|| panic!("{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mac_key_rotates_with_every_row_moved_and_rows_under_the_destroyed_key_refused() {
    let mut s = Server::start_with(&[("KMS_SCHEDULER_INTERVAL_MS", "100")]).await;
    let c = s.client();
    // Rows of every MAC'd kind.
    let key = new_key(&c).await;
    c.tag_resource()
        .key_id(&key)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("team")
                .tag_value("a")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.create_alias()
        .alias_name("alias/remac")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let ct = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"under MAC key v1".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let (bob_arn, bob_id, bob_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "bob", None));
    let grant = c
        .create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    let old_grant_token = grant.grant_token.unwrap();
    let wide = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#;
    let (_, mallory_id, mallory_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "mallory", Some(wide)));
    let external = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let material = [7u8; 32];
    let import = |c: &aws_sdk_kms::Client, token: Blob, public: Vec<u8>, material: [u8; 32]| {
        c.import_key_material()
            .key_id(&external)
            .import_token(token)
            .encrypted_key_material(Blob::new(oaep_sha1(&public, &material)))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
    };
    let (t, p) = parameters(
        &c,
        &external,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    import(&c, t, p, material).await.unwrap();
    let policy_seal_sql = format!(
        "SELECT {} FROM keys WHERE key_id = {}",
        s.db.hex("policy_mac"),
        s.db.key(&key)
    );
    let v1_policy_seal = s.db.strings(&policy_seal_sql).await.remove(0);
    // A second key, which the node running when v1 is destroyed never loads before.
    let key2 = new_key(&c).await;
    let key2_seal_sql = format!(
        "SELECT {} FROM keys WHERE key_id = {}",
        s.db.hex("policy_mac"),
        s.db.key(&key2)
    );
    let key2_v1_seal = s.db.strings(&key2_seal_sql).await.remove(0);
    assert_eq!(v1_policy_seal.len(), 41 * 2, "a seal under MAC key v1");
    let total = macs_behind(&s);
    assert_eq!(total, 0, "nothing is behind before a rotation");

    // Bad input gets one sentence and changes nothing.
    for (args, says) in [
        (
            vec!["hsm", "destroy-mac-key", "--version", "1"],
            "is the current MAC key",
        ),
        (
            vec!["hsm", "destroy-mac-key", "--version", "7"],
            "the token holds no MAC key v7",
        ),
        (
            vec!["hsm", "remac", "--batch", "0"],
            "--batch must be at least 1",
        ),
    ] {
        let out = s.kms(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }

    // The nodes stopped, the rotation is killed (SIGKILL) in the middle of re-MACing.
    s.stop();
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, &s.token, &s.db);
    let mut child = cmd
        .args(["hsm", "rotate-mac-key", "--batch", "1"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut total = 0i64;
    loop {
        let line = lines
            .next()
            .expect("rotate-mac-key printed no progress")
            .unwrap();
        seen.push(line.clone());
        if let Some(n) = line
            .strip_prefix("kms hsm: ")
            .and_then(|l| l.strip_suffix(" stored MACs to make again under MAC key v2"))
        {
            total = n.parse().unwrap();
        }
        if line.contains("made") && line.contains('%') {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("MAC key v2 created")),
        "{seen:?}"
    );
    // Key seals (5 parts of 2 keys and of the imported one), materials, the import record,
    // the import token, the grant, principals, the alias, access keys.
    assert!(total >= 20, "{total} MACs under v1: {seen:?}");
    let left = macs_behind(&s);
    assert!(
        left > 0 && left < total,
        "killed half-way: {left} of {total} left"
    );
    let out = s.kms(&["hsm", "rotate-mac-key"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not finished") && stderr(&out).contains("kms hsm remac"),
        "{}",
        stderr(&out)
    );

    // A node comes back (it MACs new rows under v2 and re-MACs in the background) while the
    // operator resumes with `kms hsm remac`: each row moves once.
    s.spawn();
    let out = s.kms(&["hsm", "remac", "--batch", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every stored MAC is made under MAC key v2"),
        "{}",
        stderr(&out)
    );
    assert_eq!(macs_behind(&s), 0);
    let listed = String::from_utf8_lossy(&s.kms(&["hsm", "mac-keys"]).stdout).to_string();
    assert!(
        listed.contains("kms-metadata-mac-key-v2  (current)")
            && listed.contains("kms-metadata-mac-key-v1"),
        "{listed}"
    );
    let v2_policy_seal = s.db.strings(&policy_seal_sql).await.remove(0);
    assert_eq!(v2_policy_seal.len(), 46 * 2, "a seal under MAC key v2");
    assert_eq!(
        v2_policy_seal[2..18],
        v1_policy_seal[2..18],
        "the generation stays"
    );

    // Everything made under v1 works, on a node with nothing cached.
    s.spawn();
    let c = s.client();
    let clients = |s: &Server| {
        (
            s.client_with(&bob_id, &bob_secret, REGION, None),
            s.client_with(&mallory_id, &mallory_secret, REGION, None),
        )
    };
    let works = |c: aws_sdk_kms::Client,
                 (bob, mallory): (aws_sdk_kms::Client, aws_sdk_kms::Client),
                 token: String| {
        let (ct, key, external) = (ct.clone(), key.clone(), external.clone());
        async move {
            let out = c.decrypt().ciphertext_blob(ct).send().await.unwrap();
            assert_eq!(out.plaintext.unwrap().into_inner(), b"under MAC key v1");
            c.encrypt()
                .key_id("alias/remac")
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
                .unwrap();
            let tags = c.list_resource_tags().key_id(&key).send().await.unwrap();
            assert_eq!(tags.tags.unwrap().len(), 1);
            bob.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"granted".to_vec()))
                .grant_tokens(token)
                .send()
                .await
                .unwrap();
            mallory.list_keys().send().await.unwrap();
            c.encrypt()
                .key_id(&external)
                .plaintext(Blob::new(b"imported".to_vec()))
                .send()
                .await
                .unwrap();
        }
    };
    works(c.clone(), clients(&s), old_grant_token.clone()).await;
    // The import record's material check moved with it: the same material imports again, other
    // material does not.
    let (t, p) = parameters(
        &c,
        &external,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    let refused = import(&c, t, p, [8u8; 32]).await;
    assert_eq!(code(refused), "IncorrectKeyMaterialException");
    let (t, p) = parameters(
        &c,
        &external,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    import(&c, t, p, material).await.unwrap();

    // A row MAC'd under v1 (here the policy seal as it was) is still a valid MAC while v1 is
    // in the token, and it holds up the destruction of v1 until it is moved.
    s.db.execute(&format!(
        "UPDATE keys SET policy_mac = {} WHERE key_id = {}",
        s.db.bytes(&hex::decode(&v1_policy_seal).unwrap()),
        s.db.key(&key)
    ))
    .await;
    assert_eq!(macs_behind(&s), 1);
    let out = s.kms(&["hsm", "destroy-mac-key", "--version", "1"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("1 stored MACs are still under an older MAC key"),
        "{}",
        stderr(&out)
    );
    let out = s.kms(&["hsm", "remac"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The old MAC key goes, on an audited command. The database forgets it first: a run that
    // stopped after that (a token of a pool unreachable, the process gone) left a key no node
    // verifies with, and the command, run again, destroys what is left (here: the whole key,
    // as if the first run stopped before any token).
    s.db.execute("DELETE FROM mac_keys WHERE version = 1").await;
    let out = s.kms(&["hsm", "destroy-mac-key", "--version", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("MAC key v1 destroyed"),
        "{}",
        stderr(&out)
    );
    let listed = String::from_utf8_lossy(&s.kms(&["hsm", "mac-keys"]).stdout).to_string();
    assert!(!listed.contains("-v1"), "{listed}");
    // The node that was running stops verifying with v1 within a scheduler interval, whatever
    // handle it still holds: key2's v1 seal put back is refused on its first load there.
    s.db.execute(&format!(
        "UPDATE keys SET policy_mac = {} WHERE key_id = {}",
        s.db.bytes(&hex::decode(&key2_v1_seal).unwrap()),
        s.db.key(&key2)
    ))
    .await;
    // (A first load that verified would cache the key: wait out several scheduler ticks.)
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let refused = s
        .client()
        .encrypt()
        .key_id(&key2)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(refused), "KeyUnavailableException");
    s.spawn();
    let c = s.client();
    // Grant tokens minted under v1 are refused now; a new one works.
    let refused = clients(&s)
        .0
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"granted".to_vec()))
        .grant_tokens(old_grant_token)
        .send()
        .await;
    assert_eq!(code(refused), "InvalidGrantTokenException");
    let new_token = c
        .create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap()
        .grant_token
        .unwrap();
    works(c.clone(), clients(&s), new_token).await;

    // Someone holding the old key makes a row MAC under it (here: the seal it made before):
    // refused on a node with nothing cached.
    s.db.execute(&format!(
        "UPDATE keys SET policy_mac = {} WHERE key_id = {}",
        s.db.bytes(&hex::decode(&v1_policy_seal).unwrap()),
        s.db.key(&key)
    ))
    .await;
    s.spawn();
    let refused = s
        .client()
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(refused), "KeyUnavailableException");
    s.db.execute(&format!(
        "UPDATE keys SET policy_mac = {} WHERE key_id = {}",
        s.db.bytes(&hex::decode(&v2_policy_seal).unwrap()),
        s.db.key(&key)
    ))
    .await;

    let (ok, out) = tokio::task::block_in_place(|| audit_verify(&s));
    assert!(ok, "{out}");
    let events = s
        .db
        .strings("SELECT event_name FROM audit_events WHERE event_name IN ('RotateMacKey', 'DestroyMacKey') ORDER BY seq")
        .await;
    assert!(
        events.iter().any(|e| e == "RotateMacKey") && events.iter().any(|e| e == "DestroyMacKey"),
        "{events:?}"
    );
}

/// The token layer remembers the row MACs it verified (so list calls do not make it verify the
/// same rows again). Someone holding the old MAC key, or a seal it made, puts that seal back
/// after the key was destroyed: the running node had verified exactly those bytes before, and
/// a remembered match must not outlive the key. Refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remembered_row_mac_is_refused_once_its_mac_key_is_destroyed() {
    let s = Server::start_with(&[("KMS_SCHEDULER_INTERVAL_MS", "100")]).await;
    let c = s.client();
    let key = new_key(&c).await;
    let encrypt = || {
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
    };
    let seal_sql = format!(
        "SELECT {} FROM keys WHERE key_id = {}",
        s.db.hex("policy_mac"),
        s.db.key(&key)
    );
    // Loaded, so its v1 seals were verified by this node.
    encrypt().await.unwrap();
    let v1_seal = s.db.strings(&seal_sql).await.remove(0);
    for args in [
        vec!["hsm", "rotate-mac-key"],
        vec!["hsm", "remac"],
        vec!["hsm", "destroy-mac-key", "--version", "1"],
    ] {
        let out = tokio::task::block_in_place(|| s.kms(&args));
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    assert_ne!(s.db.strings(&seal_sql).await.remove(0), v1_seal);
    // The running node stops verifying with v1 within a few scheduler intervals.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    s.db.execute(&format!(
        "UPDATE keys SET policy_mac = {} WHERE key_id = {}",
        s.db.bytes(&hex::decode(&v1_seal).unwrap()),
        s.db.key(&key)
    ))
    .await;
    let c2 = c.clone();
    let k2 = key.clone();
    eventually("the v1 seal to be refused", move || {
        let (c, k) = (c2.clone(), k2.clone());
        async move {
            matches!(c.encrypt().key_id(&k).plaintext(Blob::new(b"x".to_vec())).send().await,
                Err(e) if aws_sdk_kms::error::ProvideErrorMetadata::code(&e) == Some("KeyUnavailableException"))
        }
    })
    .await;
}
