//! The audit trail: CloudTrail-shaped events in one hash chain, appended with group commit,
//! with checkpoints over the chain head signed in the token; `verify` checks a trail (from the
//! database or an export) with nothing but the audit public key.
//!
//! An event is durable before the response it describes is sent: `Audit::record` returns only
//! once the batch holding the event has committed, and a failed write fails the call.
//!
//! This file holds the chain itself (its hash, the checkpoint message, canonical JSON);
//! `events.rs` builds the events, `recorder.rs` appends them (group commit, change records),
//! `checkpoint.rs` signs the head, `report.rs` signs reports. All but `verify`, `report` and
//! `anchor` are re-exported here.

pub mod anchor;
mod checkpoint;
mod events;
mod recorder;
pub mod report;
mod seals;
pub mod verify;

pub use checkpoint::*;
pub use events::*;
pub use recorder::*;
pub use seals::*;

use crate::hsm::Hsm;
/// A call's change record (the trail's outbox entry that commits with the change) and the
/// scope its writes run in: the API prepares the one and runs the call in the other.
pub use crate::store::{in_change, ChangeRecord};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Sign `message` in the token with the audit key: the DER ECDSA P-256 signature of its
/// SHA-256 (what checkpoints and reports carry).
pub(crate) async fn audit_signature(hsm: &Hsm, message: &[u8]) -> Result<Vec<u8>, AuditError> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
    let raw = hsm
        .audit_sign(digest.as_ref().to_vec())
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    crate::domain::asymmetric::ecdsa_raw_to_der(&raw)
        .ok_or_else(|| AuditError("the token returned a malformed signature".into()))
}

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// The chain hash of event `seq`: SHA-256 over a domain tag, the sequence number, the
/// predecessor's hash and the event's canonical JSON.
pub fn chain_hash(seq: i64, prev: &[u8], body: &str) -> Vec<u8> {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    c.update(b"kms.audit.event.v1\0");
    c.update(&seq.to_be_bytes());
    c.update(prev);
    c.update(body.as_bytes());
    c.finish().as_ref().to_vec()
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: i64, hash: &[u8], signed_at: &DateTime<Utc>) -> Vec<u8> {
    let mut m = b"kms.audit.checkpoint.v1\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&signed_at.timestamp_micros().to_be_bytes());
    m
}

/// JSON with object keys sorted at every level and no insignificant whitespace, so the same
/// event always encodes to the same bytes (whatever serde_json's map order is).
pub fn canonical(v: &Value) -> String {
    let mut out = Vec::with_capacity(1024);
    canonical_into(v, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`canonical`] appended to `out`: written straight into one buffer, keys and leaves through
/// serde_json's own escaping, with no intermediate values (every audited call writes one; this
/// is on the hot path).
pub(crate) fn canonical_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("a string serializes");
                out.push(b':');
                canonical_into(x, out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_into(x, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect("a JSON value serializes"),
    }
}

#[derive(Debug)]
pub struct AuditError(pub String);

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the audit trail could not be written: {}", self.0)
    }
}

impl std::error::Error for AuditError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A trail of `n` events of which every `every`-th matches, read as the store reads it:
    /// how many reads a search makes, and what it answers.
    async fn search(
        n: i64,
        every: i64,
        limit: i64,
        budget: std::time::Duration,
    ) -> (Vec<i64>, Option<i64>, usize) {
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = |(floor, top): (i64, i64), want: i64| {
            reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let rows = (floor.max(1)..top.min(n + 1))
                .rev()
                .filter(|s| s % every == 0)
                .take(want as usize)
                .map(|seq| crate::store::AuditRow {
                    seq,
                    event_id: uuid::Uuid::nil(),
                    event_time: chrono::Utc::now(),
                    event_name: String::new(),
                    account_id: None,
                    key_arns: Vec::new(),
                    body: String::new(),
                    prev_hash: Vec::new(),
                    hash: Vec::new(),
                })
                .collect();
            async move { Ok(rows) }
        };
        let (rows, next) = read_windows((0, n + 1), limit, (1000, budget), read)
            .await
            .unwrap();
        let seqs = rows.iter().map(|r| r.seq).collect();
        (seqs, next, reads.into_inner())
    }

    /// A search that matches nothing in a long trail reads one window and answers where the
    /// next page goes on (before, it walked the whole trail in one query, holding a database
    /// connection for as long as the trail was long); given time, it reads on to the start.
    #[tokio::test]
    async fn a_search_reads_a_bounded_part_of_the_trail_per_page() {
        let none = std::time::Duration::ZERO;
        let (rows, next, reads) = search(100_000, 1_000_000, 50, none).await;
        assert!(rows.is_empty());
        assert_eq!((next, reads), (Some(99_001), 1));
        let (rows, next, reads) = search(100_000, 1_000_000, 50, std::time::Duration::MAX).await;
        assert!(rows.is_empty());
        assert_eq!((next, reads), (None, 100));
        // A page filled in the first window: below its last row.
        let (rows, next, reads) = search(100_000, 3, 5, none).await;
        assert_eq!(rows, [99_999, 99_996, 99_993, 99_990, 99_987]);
        assert_eq!((next, reads), (Some(99_987), 1));
        // Filled across windows, each asked only for what is still missing.
        let (rows, next, _) = search(10_000, 700, 5, std::time::Duration::MAX).await;
        assert_eq!(rows, [9_800, 9_100, 8_400, 7_700, 7_000]);
        assert_eq!(next, Some(7_000));
        // The whole trail inside one window.
        let (rows, next, reads) = search(10, 2, 50, none).await;
        assert_eq!((rows, next, reads), (vec![10, 8, 6, 4, 2], None, 1));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x\"y"}});
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":"x\"y","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn canonical_json_escapes_keys_and_leaves_as_serde_json_does() {
        // The bytes of events already in a trail must not change: escapes, non-ASCII text,
        // control characters, numbers, null and booleans encode as before.
        let v = json!({"k\u{1}\n\"": "é\u{7f}\t\\", "Z": [null, true, -1.5, 1e300, 18446744073709551615u64], "é": {}});
        assert_eq!(
            canonical(&v),
            "{\"Z\":[null,true,-1.5,1e+300,18446744073709551615],\"k\\u0001\\n\\\"\":\"é\u{7f}\\t\\\\\",\"é\":{}}"
        );
    }

    #[test]
    fn the_chain_hash_covers_position_predecessor_and_body() {
        let h = chain_hash(1, &GENESIS, "{}");
        assert_ne!(h, chain_hash(2, &GENESIS, "{}"));
        assert_ne!(h, chain_hash(1, &h, "{}"));
        assert_ne!(h, chain_hash(1, &GENESIS, "{ }"));
    }
}
