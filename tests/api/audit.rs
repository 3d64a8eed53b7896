//! The audit trail: one CloudTrail-shaped event per call, no secrets in events or logs, a hash
//! chain with signed checkpoints that `kms audit verify` checks with only the public key, and
//! exports that verify offline.

use crate::support::audit_verify as verify;
use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine;
use serde_json::Value;

async fn events(s: &Server) -> Vec<Value> {
    s.db.strings("SELECT body FROM audit_events ORDER BY seq")
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["eventName"] == name).collect()
}

fn run_ok(s: &Server, args: &[&str]) -> String {
    let out = s.kms(args);
    assert!(
        out.status.success(),
        "kms {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn every_call_is_recorded_with_its_fields_and_no_secret() {
    let s = Server::start().await;
    let c = s.client();
    let key = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let planted = b"PLANTED-PLAINTEXT-4f1e9c".to_vec();
    let blob = c
        .encrypt()
        .key_id(&key.key_id)
        .plaintext(Blob::new(planted.clone()))
        .encryption_context("tenant", "blue")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "blue")
        .send()
        .await
        .unwrap();
    let dk = c
        .generate_data_key()
        .key_id(&key.key_id)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let data_key = dk.plaintext.unwrap().into_inner();
    assert_eq!(
        code(c.describe_key().key_id("alias/nothing-here").send().await),
        "NotFoundException"
    );
    let (user_arn, _, user) = s.new_user("123456789012", "auditee", None);
    assert_eq!(
        code(
            user.encrypt()
                .key_id(&key.key_id)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    c.disable_key().key_id(&key.key_id).send().await.unwrap();

    let all = events(&s).await;
    // A call that named its key by id and whose response names none: its event still names
    // the key (CloudTrail's `resources`), so a search by key finds it.
    let disabled = named(&all, "DisableKey");
    assert_eq!(
        disabled[0]["resources"][0]["ARN"],
        key.arn.clone().unwrap().as_str()
    );
    let enc = named(&all, "Encrypt");
    assert_eq!(enc.len(), 2, "one allowed and one denied Encrypt");
    let ok = enc.iter().find(|e| e.get("errorCode").is_none()).unwrap();
    for field in [
        "eventVersion",
        "eventTime",
        "eventSource",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "requestID",
        "eventID",
        "eventType",
        "recipientAccountId",
        "eventCategory",
    ] {
        assert!(
            ok.get(field).is_some_and(|v| !v.is_null()),
            "{field} missing in {ok}"
        );
    }
    assert_eq!(ok["eventSource"], "kms.amazonaws.com");
    assert_eq!(ok["awsRegion"], REGION);
    assert_eq!(ok["readOnly"], true);
    assert_eq!(ok["managementEvent"], true);
    assert_eq!(ok["userIdentity"]["type"], "IAMUser");
    assert_eq!(ok["userIdentity"]["accessKeyId"], s.access_key_id.as_str());
    assert_eq!(ok["userIdentity"]["accountId"], "123456789012");
    assert_eq!(ok["requestParameters"]["keyId"], key.key_id.as_str());
    assert_eq!(
        ok["requestParameters"]["encryptionContext"]["tenant"],
        "blue"
    );
    assert_eq!(ok["resources"][0]["ARN"], key.arn.clone().unwrap().as_str());
    assert!(ok["userAgent"].as_str().unwrap().contains("aws-sdk-rust"));
    let denied = enc.iter().find(|e| e.get("errorCode").is_some()).unwrap();
    assert_eq!(denied["errorCode"], "AccessDeniedException");
    assert_eq!(denied["userIdentity"]["arn"], user_arn.as_str());
    assert_eq!(
        denied["resources"][0]["ARN"],
        key.arn.clone().unwrap().as_str()
    );
    assert!(denied["errorMessage"]
        .as_str()
        .unwrap()
        .contains("kms:Encrypt"));
    let nf = named(&all, "DescribeKey");
    assert_eq!(nf[0]["errorCode"], "NotFoundException");
    let created = named(&all, "CreateKey");
    assert_eq!(
        created[0]["responseElements"]["keyMetadata"]["KeyId"],
        key.key_id.as_str()
    );
    assert_eq!(created[0]["readOnly"], false);
    assert_eq!(named(&all, "Decrypt").len(), 1);
    assert_eq!(named(&all, "GenerateDataKey").len(), 1);
    // `kms admin` changes are events too.
    assert!(named(&all, "CreateUser")
        .iter()
        .any(|e| e["requestParameters"]["target"] == user_arn.as_str()));

    // No secret anywhere: plaintexts, data keys, the PIN, the secret access key.
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let text: String = all
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let log = s.log_text();
    for (what, needle) in [
        ("plaintext", String::from_utf8(planted.clone()).unwrap()),
        ("plaintext (base64)", b64(&planted)),
        ("data key (base64)", b64(&data_key)),
        ("data key (hex)", hex::encode(&data_key)),
        ("ciphertext (base64)", b64(blob.as_ref())),
        ("PIN", PIN.to_string()),
        ("secret access key", s.secret.clone()),
    ] {
        assert!(!text.contains(&needle), "the audit trail holds the {what}");
        assert!(!log.contains(&needle), "the server log holds the {what}");
    }
}

#[tokio::test]
async fn verify_passes_untouched_and_names_each_kind_of_tampering() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    for i in 0..10 {
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(vec![i; 8]))
            .send()
            .await
            .unwrap();
    }
    run_ok(&s, &["audit", "checkpoint"]);
    let (ok, out) = verify(&s);
    assert!(ok, "{out}");
    assert!(out.contains("OK: the trail is intact"), "{out}");

    let db = &s.db;
    let exec = |q: String| async move { db.execute(&q).await };
    // Altered: one event's content changed (the first Encrypt's).
    let n = db
        .int("SELECT min(seq) FROM audit_events WHERE event_name = 'Encrypt'")
        .await;
    let original = db
        .strings(&format!("SELECT body FROM audit_events WHERE seq = {n}"))
        .await
        .remove(0);
    exec(format!(
        "UPDATE audit_events SET body = replace(body, 'Encrypt', 'Decrypt') WHERE seq = {n}"
    ))
    .await;
    let (ok, out) = verify(&s);
    assert!(
        !ok && out.contains(&format!("event {n} was altered")),
        "{out}"
    );
    exec(format!(
        "UPDATE audit_events SET body = {} WHERE seq = {n}",
        db.text(&original)
    ))
    .await;
    assert!(verify(&s).0);

    // Deleted: one event removed.
    exec("CREATE TABLE saved AS SELECT * FROM audit_events WHERE seq = 4".into()).await;
    exec("DELETE FROM audit_events WHERE seq = 4".into()).await;
    let (ok, out) = verify(&s);
    assert!(!ok && out.contains("event 4 is missing"), "{out}");
    exec("INSERT INTO audit_events SELECT * FROM saved".into()).await;
    exec("DROP TABLE saved".into()).await;
    assert!(verify(&s).0);

    // Reordered: two events swap places.
    exec("UPDATE audit_events SET seq = seq + 100000 WHERE seq IN (5, 6)".into()).await;
    exec(
        "UPDATE audit_events SET seq = CASE seq WHEN 100005 THEN 6 ELSE 5 END WHERE seq > 100000"
            .into(),
    )
    .await;
    let (ok, out) = verify(&s);
    assert!(
        !ok && out.contains("event 5 does not follow event 4"),
        "{out}"
    );
    exec("UPDATE audit_events SET seq = seq + 100000 WHERE seq IN (5, 6)".into()).await;
    exec(
        "UPDATE audit_events SET seq = CASE seq WHEN 100005 THEN 6 ELSE 5 END WHERE seq > 100000"
            .into(),
    )
    .await;
    assert!(verify(&s).0);

    // Inserted: a well-formed event (its own hash is right) slipped in after event 6.
    exec("UPDATE audit_events SET seq = seq + 100000 WHERE seq >= 7".into()).await;
    exec("UPDATE audit_events SET seq = seq - 100000 + 1 WHERE seq > 100000".into()).await;
    let prev = hex::decode(
        db.strings(&format!(
            "SELECT {} FROM audit_events WHERE seq = 6",
            db.hex("hash")
        ))
        .await
        .remove(0),
    )
    .unwrap();
    let body = r#"{"eventName":"Forged"}"#;
    exec(format!(
        "INSERT INTO audit_events (seq, event_id, event_time, event_name, body, prev_hash, hash) \
         VALUES (7, {}, {}, 'Forged', {}, {}, {})",
        db.new_uuid(),
        db.now(),
        db.text(body),
        db.bytes(&prev),
        db.bytes(&kms::audit::chain_hash(7, &prev, body))
    ))
    .await;
    let (ok, out) = verify(&s);
    assert!(
        !ok && out.contains("event 8 does not follow event 7"),
        "{out}"
    );
    exec("DELETE FROM audit_events WHERE seq = 7".into()).await;
    exec("UPDATE audit_events SET seq = seq + 100000 WHERE seq >= 8".into()).await;
    exec("UPDATE audit_events SET seq = seq - 100000 - 1 WHERE seq > 100000".into()).await;
    assert!(verify(&s).0, "{}", verify(&s).1);

    // Truncated: the newest events removed (the signed checkpoint still covers them).
    let head = db.int("SELECT max(seq) FROM audit_events").await;
    exec(format!("DELETE FROM audit_events WHERE seq > {}", head - 2)).await;
    exec(format!("UPDATE audit_head SET seq = {}", head - 2)).await;
    let (ok, out) = verify(&s);
    assert!(!ok && out.contains("truncated"), "{out}");
    assert!(
        out.contains(&format!("ends at event {}", head - 2)),
        "{out}"
    );

    // Rewritten: every hash recomputed after a change; only the signed checkpoint catches it.
    let s2 = Server::start().await;
    let c2 = s2.client();
    let k2 = new_key(&c2).await;
    for _ in 0..3 {
        c2.encrypt()
            .key_id(&k2)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap();
    }
    run_ok(&s2, &["audit", "checkpoint"]);
    let seqs = s2
        .db
        .strings("SELECT seq FROM audit_events ORDER BY seq")
        .await;
    let bodies = s2
        .db
        .strings("SELECT body FROM audit_events ORDER BY seq")
        .await;
    let mut prev = vec![0u8; 32];
    let mut changed = false;
    for (seq, mut body) in seqs.iter().zip(bodies) {
        let seq: i64 = seq.parse().unwrap();
        // The first Encrypt event becomes a Decrypt.
        if !changed && body.contains(r#""eventName":"Encrypt""#) {
            body = body.replace("Encrypt", "Decrypt");
            changed = true;
        }
        let hash = kms::audit::chain_hash(seq, &prev, &body);
        s2.db
            .execute(&format!(
                "UPDATE audit_events SET body = {}, prev_hash = {}, hash = {} WHERE seq = {seq}",
                s2.db.text(&body),
                s2.db.bytes(&prev),
                s2.db.bytes(&hash)
            ))
            .await;
        prev = hash;
    }
    assert!(changed, "no Encrypt event to rewrite");
    let (ok, out) = verify(&s2);
    assert!(!ok && out.contains("rewritten"), "{out}");
}

#[tokio::test]
async fn an_export_verifies_offline_and_a_changed_export_does_not() {
    let s = Server::start().await;
    let c = s.client();
    let a = new_key(&c).await;
    let b = new_key(&c).await;
    for k in [&a, &b, &a] {
        c.encrypt()
            .key_id(k)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap();
    }
    run_ok(&s, &["audit", "checkpoint"]);
    let pem = run_ok(&s, &["audit", "public-key"]);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    let key = s.path("audit.pem");
    std::fs::write(&key, &pem).unwrap();
    let file = s.path("export.jsonl");
    run_ok(
        &s,
        &[
            "audit",
            "export",
            "--out",
            file.to_str().unwrap(),
            "--key",
            &a,
            "--event-name",
            "Encrypt",
        ],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let with_body: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("body").is_some())
        .collect();
    assert_eq!(with_body.len(), 2, "exactly the two Encrypts under key a");
    // Offline: a process with no database and no token, just the file and the key.
    let offline = std::process::Command::new(env!("CARGO_BIN_EXE_kms"))
        .env("KMS_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env("KMS_HSM__MODULE", "/nonexistent.so")
        .args([
            "audit",
            "verify",
            "--public-key",
            key.to_str().unwrap(),
            "--export",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stdout)
    );
    // One character changed in an exported event fails it.
    let changed = text.replacen("\\\"Encrypt\\\"", "\\\"Decrypt\\\"", 1);
    assert_ne!(changed, text);
    let bad = s.path("changed.jsonl");
    std::fs::write(&bad, changed).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kms"))
        .args([
            "audit",
            "verify",
            "--public-key",
            key.to_str().unwrap(),
            "--export",
            bad.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("was altered"));
}

#[tokio::test]
async fn a_call_whose_audit_write_fails_is_refused() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    s.db.execute("ALTER TABLE audit_events RENAME TO audit_events_away")
        .await;
    let r = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"unrecorded".to_vec()))
        .send()
        .await;
    // A dependency that failed (the caller may retry), not an internal error.
    assert_eq!(code(r), "DependencyTimeoutException");
    s.db.execute("ALTER TABLE audit_events_away RENAME TO audit_events")
        .await;
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"recorded".to_vec()))
        .send()
        .await
        .unwrap();
    assert!(verify(&s).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_append_to_one_verifiable_trail() {
    let s = Server::start().await;
    let second = tokio::task::block_in_place(|| s.second_node());
    let c1 = s.client();
    let c2 = s.client_of(&second, &s.access_key_id, &s.secret);
    let key = new_key(&c1).await;
    let mut tasks = Vec::new();
    for c in [c1.clone(), c2.clone()] {
        for _ in 0..4 {
            let (c, key) = (c.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    c.encrypt()
                        .key_id(&key)
                        .plaintext(Blob::new(b"x".to_vec()))
                        .send()
                        .await
                        .unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(second); // stops (SIGTERM): its final checkpoint is signed on the way out
    let all = events(&s).await;
    assert_eq!(named(&all, "Encrypt").len(), 200);
    let (ok, out) = tokio::task::block_in_place(|| verify(&s));
    assert!(ok, "{out}");
}

#[tokio::test]
async fn every_operation_of_the_api_produces_its_event() {
    let s = Server::start().await;
    for op in kms::operations::OPERATIONS.iter().map(|o| o.name) {
        raw_request(
            &s.endpoint,
            &s.access_key_id,
            &s.secret,
            REGION,
            Some(&format!("TrentService.{op}")),
            "application/x-amz-json-1.1",
            b"{}".to_vec(),
            true,
            std::time::SystemTime::now(),
        )
        .await;
    }
    let all = events(&s).await;
    for op in kms::operations::OPERATIONS.iter().map(|o| o.name) {
        let e = named(&all, op);
        assert_eq!(e.len(), 1, "{op}: {} events", e.len());
        assert_eq!(
            e[0]["userIdentity"]["accessKeyId"],
            s.access_key_id.as_str()
        );
        assert!(
            e[0]["requestID"].is_string() && e[0]["eventID"].is_string(),
            "{op}"
        );
    }
    // A call that never authenticated is recorded too, as an unknown caller.
    raw_request(
        &s.endpoint,
        &s.access_key_id,
        "not-the-secret",
        REGION,
        Some("TrentService.ListKeys"),
        "application/x-amz-json-1.1",
        b"{}".to_vec(),
        true,
        std::time::SystemTime::now(),
    )
    .await;
    let all = events(&s).await;
    let last = all.last().unwrap();
    assert_eq!(last["userIdentity"]["type"], "Unknown");
    assert_eq!(last["errorCode"], "InvalidSignatureException");
}

/// `GetKeyLastUsage` as AWS documents it: the latest successful cryptographic call with the key
/// (its operation, its time, the trail's event id and the call's request id), both keys of a
/// ReEncrypt; failed calls and dry runs are not uses; before any use `KeyLastUsage` is empty and
/// tracking starts at the key's creation. Aliases and another account's keys are refused, even
/// where the key policy trusts that account.
#[tokio::test(flavor = "multi_thread")]
async fn key_last_usage_is_the_latest_successful_cryptographic_call_in_the_trail() {
    use aws_sdk_kms::operation::RequestId;
    use aws_sdk_kms::types::KeyLastUsageTrackingOperation as Op;
    const ACCOUNT: &str = "123456789012";
    const OTHER: &str = "210987654321";
    let s = Server::start().await;
    let c = s.client();
    let (key, dest) = (new_key(&c).await, new_key(&c).await);

    let u = c.get_key_last_usage().key_id(&key).send().await.unwrap();
    assert_eq!(u.key_id(), Some(key.as_str()));
    assert!(
        u.key_last_usage().is_none_or(|l| l.operation().is_none()),
        "{u:?}"
    );
    assert!(u.key_creation_date().is_some());
    assert_eq!(u.tracking_start_date(), u.key_creation_date());

    let enc = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"used".to_vec()))
        .send()
        .await
        .unwrap();
    let blob = enc.ciphertext_blob().unwrap().clone();
    let last = |key: String| {
        let c = c.clone();
        async move {
            let u = c.get_key_last_usage().key_id(&key).send().await.unwrap();
            u.key_last_usage().cloned().unwrap()
        }
    };
    let l = last(key.clone()).await;
    assert_eq!(l.operation(), Some(&Op::Encrypt));
    assert_eq!(l.kms_request_id(), enc.request_id());
    let event_id = l.cloud_trail_event_id().unwrap().to_string();
    let body = s
        .db
        .strings(&format!(
            "SELECT body FROM audit_events WHERE event_name = 'Encrypt' AND body LIKE '%\"eventID\":\"{event_id}\"%'"
        ))
        .await;
    assert_eq!(
        body.len(),
        1,
        "the event id names the Encrypt event in the trail"
    );
    let age = chrono::Utc::now().timestamp() - l.timestamp().unwrap().secs();
    assert!((0..60).contains(&age), "{age}");

    // A failed call and a dry run are not uses.
    let mut broken = blob.clone().into_inner();
    let n = broken.len();
    broken[n - 1] ^= 1;
    assert_eq!(
        code(c.decrypt().ciphertext_blob(Blob::new(broken)).send().await),
        "InvalidCiphertextException"
    );
    assert_eq!(
        code(
            c.generate_data_key()
                .key_id(&key)
                .number_of_bytes(32)
                .dry_run(true)
                .send()
                .await
        ),
        "DryRunOperationException"
    );
    assert_eq!(
        last(key.clone()).await.cloud_trail_event_id(),
        Some(event_id.as_str())
    );

    // ReEncrypt uses both keys: one event, reported for each.
    let re = c
        .re_encrypt()
        .ciphertext_blob(blob)
        .destination_key_id(&dest)
        .send()
        .await
        .unwrap();
    let (src, dst) = (last(key.clone()).await, last(dest.clone()).await);
    assert_eq!(
        (src.operation(), dst.operation()),
        (Some(&Op::ReEncrypt), Some(&Op::ReEncrypt))
    );
    assert_eq!(src.cloud_trail_event_id(), dst.cloud_trail_event_id());
    assert_eq!(src.kms_request_id(), re.request_id());

    // A caller's encryption context key named errorCode (recorded in the event's request
    // parameters) does not make a successful call look failed.
    let hidden = c
        .generate_data_key()
        .key_id(&dest)
        .number_of_bytes(32)
        .encryption_context("errorCode", "AccessDeniedException")
        .encryption_context("eventCategory", "Management")
        .send()
        .await
        .unwrap();
    let l = last(dest.clone()).await;
    assert_eq!(l.operation(), Some(&Op::GenerateDataKey));
    assert_eq!(l.kms_request_id(), hidden.request_id());

    // Key id or key ARN of the caller's own account only.
    c.create_alias()
        .alias_name("alias/used")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(c.get_key_last_usage().key_id("alias/used").send().await),
        "InvalidArnException"
    );
    let arn = format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}");
    let trusting = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{OTHER}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    c.put_key_policy()
        .key_id(&key)
        .policy_name("default")
        .policy(trusting)
        .send()
        .await
        .unwrap();
    let (_, _, eve) = tokio::task::block_in_place(|| {
        s.new_user(
            OTHER,
            "eve",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#),
        )
    });
    eve.describe_key().key_id(&arn).send().await.unwrap();
    assert_eq!(
        code(eve.get_key_last_usage().key_id(&arn).send().await),
        "NotFoundException"
    );
}
