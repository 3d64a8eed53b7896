//! `kms-bench trail`: the audit trail's append alone, one event after another on one
//! connection, through the service's own statement (`AuditStore::append_audit`) on the
//! instance's database. No HTTP, no token: what Postgres itself takes to make one event durable,
//! the floor under an audited call's latency at c=1.

use super::*;
use kms::store::{AuditStore, NewAuditEvent, PgStore};

/// An event of the size and shape of an `Encrypt`'s (one key ARN; about 800 bytes of JSON).
fn encrypt_event(n: u64) -> NewAuditEvent {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let id = uuid::Uuid::new_v4();
    let time = chrono::Utc::now();
    let body = json!({
        "awsRegion": "us-east-1",
        "eventCategory": "Management",
        "eventID": id.to_string(),
        "eventName": "Encrypt",
        "eventSource": "kms.amazonaws.com",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventType": "AwsApiCall",
        "eventVersion": "1.11",
        "managementEvent": true,
        "readOnly": true,
        "recipientAccountId": "111122223333",
        "requestID": format!("{:08x}-bench-trail", n),
        "requestParameters": {"encryptionAlgorithm": "SYMMETRIC_DEFAULT", "keyId": arn},
        "resources": [{"ARN": arn, "accountId": "111122223333", "type": "AWS::KMS::Key"}],
        "responseElements": null,
        "sourceIPAddress": "127.0.0.1",
        "userAgent": "kms-bench",
        "userIdentity": {
            "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "accountId": "111122223333",
            "arn": "arn:aws:iam::111122223333:user/bench",
            "principalId": "AIDAEXAMPLEEXAMPLE0001",
            "type": "IAMUser",
            "userName": "bench"
        },
    });
    NewAuditEvent {
        event_id: id,
        event_time: time,
        event_name: "Encrypt".into(),
        account_id: Some("111122223333".into()),
        key_arns: vec![arn.into()],
        body: body.to_string(),
        generations: Vec::new(),
    }
}

/// Append events one at a time for `common.seconds`: each one's latency, from the call to its
/// commit confirmed.
pub(super) async fn trail(common: Common) -> Result<(), String> {
    let s = kms::config::Settings::load(None)?;
    let store = PgStore::connect(&s.database_url, 2)
        .await
        .map_err(|e| e.to_string())?;
    let mut head = store
        .append_audit_serialized(&[encrypt_event(0)], &[], &kms::audit::chain_hash)
        .await
        .map_err(|e| e.to_string())?;
    let mut lat = Vec::new();
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed().as_secs_f64() < common.seconds {
        let e = encrypt_event(n);
        let t0 = Instant::now();
        head = store
            .append_audit((head.0, &head.1), &[e], &[], &kms::audit::chain_hash)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("another writer moved the trail's head")?;
        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        n += 1;
    }
    let st = Stats::of(lat, 0, started.elapsed().as_secs_f64());
    record(
        &common,
        "the trail's append alone (Postgres)",
        1,
        &st,
        json!({"limit": "database"}),
    );
    Ok(())
}
