//! Verification of an audit trail with only the audit public key, and the export format that
//! carries what verification needs.

use super::{chain_hash, checkpoint_message, GENESIS};
use crate::encoding::{b64, unb64};
use crate::store::{AuditRow, AuditStore, CheckpointRow, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// One link of the chain. An export leaves out the body of events outside its filter; their
/// hashes still carry the chain from one exported event to the next and to a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub seq: i64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub body: Option<String>,
}

impl From<&AuditRow> for Link {
    fn from(r: &AuditRow) -> Link {
        Link {
            seq: r.seq,
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
            body: Some(r.body.clone()),
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub events: usize,
    pub bodies_checked: usize,
    pub checkpoints: usize,
    pub last_seq: i64,
    /// Every problem found, by the sequence number where it shows, earliest first.
    pub problems: Vec<(i64, String)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The columns `kms audit export` filters on (event name, account, key ARNs, time) are copies
/// of the hashed body kept for queries: each must say what the body says, or an event could be
/// hidden from (or slipped into) an export by editing a column the chain does not cover.
pub fn check_columns(r: &mut Report, rows: &[AuditRow]) {
    for row in rows {
        let wrong = altered_columns(row);
        if !wrong.is_empty() {
            r.problems.push((
                row.seq,
                format!(
                    "event {} was altered: its {} column does not match its content",
                    row.seq,
                    wrong.join(", ")
                ),
            ));
        }
    }
    r.problems.sort_by_key(|p| p.0);
}

/// The columns of `row` kept for queries (event name, account, key ARNs, time) that do not say
/// what its hashed body says. None for a body that is not JSON: it fails its hash check, or
/// was never valid.
pub fn altered_columns(row: &AuditRow) -> Vec<&'static str> {
    let Ok(body) = serde_json::from_str::<Value>(&row.body) else {
        return Vec::new();
    };
    let mut wrong = Vec::new();
    if body["eventName"].as_str() != Some(row.event_name.as_str()) {
        wrong.push("event_name");
    }
    if body["recipientAccountId"].as_str() != row.account_id.as_deref() {
        wrong.push("account_id");
    }
    let mut arns: Vec<&str> = body["resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["ARN"].as_str()).collect())
        .unwrap_or_default();
    let mut stored: Vec<&str> = row.key_arns.iter().map(String::as_str).collect();
    arns.sort();
    stored.sort();
    if arns != stored {
        wrong.push("key_arns");
    }
    let body_time = body["eventTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp());
    if body_time != Some(row.event_time.timestamp()) {
        wrong.push("event_time");
    }
    wrong
}

/// The row generations the trail's events name (`additionalEventData.rowGenerations`, in the
/// hashed bodies) must be exactly those of their index (`indexed`: row, generation, seq), which
/// the service reads to refuse an older row put back: an entry deleted from the index (to let
/// a replayed row through) or added to it (to lock a row out) is reported at its event.
pub fn check_generations(r: &mut Report, rows: &[AuditRow], indexed: &[(String, i64, i64)]) {
    use std::collections::BTreeSet;
    let mut named = BTreeSet::new();
    for row in rows {
        if let Ok(body) = serde_json::from_str::<Value>(&row.body) {
            for (name, g) in super::generations_in(&body) {
                named.insert((row.seq, name, g));
            }
        }
    }
    let held: BTreeSet<(i64, String, i64)> = indexed
        .iter()
        .map(|(name, g, seq)| (*seq, name.clone(), *g))
        .collect();
    for (seq, name, g) in named.difference(&held) {
        r.problems.push((
            *seq,
            format!("event {seq} names generation {g} of {name}, which the audit_generations index does not hold (deleted from it)"),
        ));
    }
    for (seq, name, g) in held.difference(&named) {
        r.problems.push((
            *seq,
            format!("the audit_generations index holds generation {g} of {name} at event {seq}, which that event does not name (inserted into it)"),
        ));
    }
    r.problems.sort_by_key(|p| p.0);
}

/// Check a whole trail against what was anchored outside the database: the anchored head must
/// be in the trail with the same hash (events acknowledged and then deleted, or a chain
/// rewritten, show here), and every anchored checkpoint must verify and be in the database
/// and the trail.
pub fn check_anchor(
    r: &mut Report,
    links: &[Link],
    checkpoints: &[CheckpointRow],
    anchored: &super::anchor::Anchored,
    what: &str,
    public_key: &[u8],
) {
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        public_key,
    );
    let hash_at = |seq: i64| links.iter().find(|l| l.seq == seq).map(|l| &l.hash);
    if let Some((seq, hash)) = &anchored.head {
        match hash_at(*seq) {
            None if *seq > r.last_seq => r.problems.push((
                r.last_seq + 1,
                format!(
                    "events {} to {seq} were acknowledged (the anchor {what} holds the head at event {seq}) but are missing from the trail: deleted",
                    r.last_seq + 1
                ),
            )),
            None => r.problems.push((
                *seq,
                format!("event {seq}, the head anchored in {what}, is missing from the trail"),
            )),
            Some(h) if h != hash => r.problems.push((
                *seq,
                format!("event {seq} is not the event anchored in {what}: the chain was rewritten"),
            )),
            Some(_) => {}
        }
    }
    for c in &anchored.checkpoints {
        let msg = checkpoint_message(c.seq, &c.hash, &c.signed_at);
        if key.verify(&msg, &c.signature).is_err() {
            r.problems.push((
                c.seq,
                format!("the checkpoint at event {} in the anchor {what} does not verify with the audit public key", c.seq),
            ));
            continue;
        }
        if !checkpoints
            .iter()
            .any(|d| d.seq == c.seq && d.hash == c.hash && d.signature == c.signature)
        {
            r.problems.push((
                c.seq,
                format!(
                    "the checkpoint at event {} (signed {}) in the anchor {what} is missing from the database: deleted",
                    c.seq, c.signed_at
                ),
            ));
        }
        match hash_at(c.seq) {
            Some(h) if h == &c.hash => {}
            Some(_) => r.problems.push((
                c.seq,
                format!("event {} does not match the checkpoint anchored in {what}: the chain was rewritten", c.seq),
            )),
            None => r.problems.push((
                c.seq,
                format!("event {} (anchored by a checkpoint in {what}) is missing from the trail", c.seq),
            )),
        }
    }
    r.problems.sort_by_key(|p| p.0);
}

/// A trail whose events run past a last checkpoint older than `max_age` (or that has events
/// and no checkpoint at all) is refused: checkpoints stopped, or were deleted.
pub fn check_freshness(
    r: &mut Report,
    checkpoints: &[CheckpointRow],
    max_age: chrono::Duration,
    now: DateTime<Utc>,
) {
    let last = checkpoints.iter().max_by_key(|c| c.seq);
    let covered = last.map(|c| c.seq).unwrap_or(0);
    if r.last_seq <= covered {
        return;
    }
    match last {
        Some(c) if now - c.signed_at <= max_age => {}
        Some(c) => r.problems.push((
            c.seq + 1,
            format!(
                "the last checkpoint (event {}, signed {}) is older than the bound of {} s and events follow it: checkpoints stopped or were deleted",
                c.seq,
                c.signed_at,
                max_age.num_seconds()
            ),
        )),
        None => r.problems.push((
            1,
            format!(
                "the trail has {} events and no checkpoint: checkpoints were deleted or never signed",
                r.events
            ),
        )),
    }
}

/// Check links (in the order given) and checkpoints. `from_start`: the links must begin at the
/// first event (a whole trail, not an export of part of it). `head`: the database's chain head,
/// if known, to notice a tail removed after the last checkpoint.
pub fn verify(
    links: &[Link],
    checkpoints: &[CheckpointRow],
    public_key: &[u8],
    from_start: bool,
    head: Option<i64>,
) -> Report {
    let mut r = Report::default();
    let mut expected: Option<i64> = if from_start { Some(1) } else { None };
    let mut prev: Option<Vec<u8>> = if from_start {
        Some(GENESIS.to_vec())
    } else {
        None
    };
    for l in links {
        r.events += 1;
        if let Some(e) = expected {
            if l.seq > e {
                r.problems.push((
                    e,
                    format!(
                        "event {e}{} missing: deleted from the trail",
                        if l.seq > e + 1 {
                            format!(" to {} are", l.seq - 1)
                        } else {
                            " is".into()
                        }
                    ),
                ));
            } else if l.seq < e {
                r.problems.push((
                    l.seq,
                    format!(
                        "event {} appears out of order (after event {})",
                        l.seq,
                        e - 1
                    ),
                ));
            }
        }
        if let (Some(p), Some(e)) = (&prev, expected) {
            if l.seq == e && &l.prev_hash != p {
                r.problems.push((
                    l.seq,
                    format!(
                        "event {} does not follow event {}: an event was inserted, deleted or reordered here",
                        l.seq,
                        l.seq - 1
                    ),
                ));
            }
        }
        if let Some(body) = &l.body {
            r.bodies_checked += 1;
            if chain_hash(l.seq, &l.prev_hash, body) != l.hash {
                r.problems.push((
                    l.seq,
                    format!(
                        "event {} was altered: its content does not match its hash",
                        l.seq
                    ),
                ));
            }
        }
        expected = Some(l.seq + 1);
        prev = Some(l.hash.clone());
        r.last_seq = l.seq;
    }
    let first = links.first().map(|l| l.seq).unwrap_or(1);
    for c in checkpoints {
        r.checkpoints += 1;
        if !checkpoint_verifies(c, public_key) {
            r.problems.push((
                c.seq,
                format!(
                    "the checkpoint at event {} (signed {}) does not verify with the audit public key",
                    c.seq, c.signed_at
                ),
            ));
            continue;
        }
        if c.seq > r.last_seq {
            r.problems.push((
                r.last_seq + 1,
                format!(
                    "the trail is truncated: it ends at event {} but a checkpoint signed {} covers events up to {}",
                    r.last_seq, c.signed_at, c.seq
                ),
            ));
            continue;
        }
        if c.seq < first {
            continue;
        }
        match links.iter().find(|l| l.seq == c.seq) {
            Some(l) if l.hash == c.hash => {}
            Some(_) => r.problems.push((
                c.seq,
                format!(
                    "events up to {} were rewritten: the chain no longer matches the checkpoint signed {}",
                    c.seq, c.signed_at
                ),
            )),
            None => {}
        }
    }
    if let Some(h) = head {
        if h > r.last_seq {
            r.problems.push((
                r.last_seq + 1,
                format!(
                    "the trail is truncated: the chain head says {h} events, the trail ends at {}",
                    r.last_seq
                ),
            ));
        }
    }
    r.problems.sort_by_key(|(s, _)| *s);
    r
}

/// Every event of the trail in the database, in order.
pub async fn all_events(store: &dyn AuditStore) -> Result<Vec<AuditRow>, StoreError> {
    const PAGE: i64 = 5000;
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_events(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let done = (page.len() as i64) < PAGE;
        out.extend(page);
        if done {
            break;
        }
    }
    Ok(out)
}

/// The trail in the database verified with the audit public key: the chain from the first
/// event to the head, the checkpoints, the columns exports filter on, and the key
/// generations; with the links checked (for anchors). What it cannot see is an anchor outside
/// the database: the caller checks those.
pub async fn stored(
    store: &dyn AuditStore,
    public_key: &[u8],
) -> Result<(Report, Vec<Link>, Vec<CheckpointRow>), StoreError> {
    let rows = all_events(store).await?;
    let links: Vec<Link> = rows.iter().map(Link::from).collect();
    let cps = store.checkpoints().await?;
    let (head, _) = store.audit_head().await?;
    let mut report = verify(&links, &cps, public_key, true, Some(head));
    check_columns(&mut report, &rows);
    let generations = store.audit_generations().await?;
    check_generations(&mut report, &rows, &generations);
    Ok((report, links, cps))
}

/// Whether checkpoint `c`'s signature verifies with the audit public key (DER).
pub fn checkpoint_verifies(c: &CheckpointRow, public_key: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        public_key,
    )
    .verify(
        &checkpoint_message(c.seq, &c.hash, &c.signed_at),
        &c.signature,
    )
    .is_ok()
}

/// What an export keeps.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub account: Option<String>,
    /// A key id or ARN (matched against the events' key ARNs).
    pub key: Option<String>,
    pub event_name: Option<String>,
}

impl Filter {
    pub fn matches(&self, r: &AuditRow) -> bool {
        self.from.is_none_or(|f| r.event_time >= f)
            && self.to.is_none_or(|t| r.event_time <= t)
            && self
                .account
                .as_ref()
                .is_none_or(|a| r.account_id.as_deref() == Some(a.as_str()))
            && self.key.as_ref().is_none_or(|k| {
                r.key_arns
                    .iter()
                    .any(|a| a == k || a.ends_with(&format!("/{k}")))
            })
            && self.event_name.as_ref().is_none_or(|n| &r.event_name == n)
    }
}

/// JSON Lines: a header, then every link from the first matching event to the first checkpoint
/// at or after the last one (bodies only for matching events), then the checkpoints.
pub fn export(rows: &[AuditRow], checkpoints: &[CheckpointRow], filter: &Filter) -> Vec<String> {
    let mut out = vec![json!({
        "type": "header",
        "format": "kms-audit-export-v1",
        "exportedAt": Utc::now().to_rfc3339(),
    })
    .to_string()];
    let matching: Vec<i64> = rows
        .iter()
        .filter(|r| filter.matches(r))
        .map(|r| r.seq)
        .collect();
    if let (Some(&lo), Some(&hi)) = (matching.first(), matching.last()) {
        let end = checkpoints
            .iter()
            .map(|c| c.seq)
            .find(|&s| s >= hi)
            .unwrap_or(i64::MAX);
        for r in rows.iter().filter(|r| r.seq >= lo && r.seq <= end) {
            let mut line = json!({
                "type": "event",
                "seq": r.seq,
                "prevHash": b64(&r.prev_hash),
                "hash": b64(&r.hash),
            });
            if filter.matches(r) {
                line["body"] = json!(r.body);
            }
            out.push(line.to_string());
        }
    }
    for c in checkpoints {
        out.push(
            json!({
                "type": "checkpoint",
                "seq": c.seq,
                "hash": b64(&c.hash),
                "signedAt": c.signed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "signature": b64(&c.signature),
            })
            .to_string(),
        );
    }
    out
}

/// Read an export back; `Err` names the first line that does not parse.
pub fn parse_export(text: &str) -> Result<(Vec<Link>, Vec<CheckpointRow>), String> {
    let (mut links, mut cps) = (Vec::new(), Vec::new());
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = || format!("line {} of the export is not a valid record", i + 1);
        let v: Value = serde_json::from_str(line).map_err(|_| bad())?;
        match v.get("type").and_then(Value::as_str) {
            Some("header") => {}
            Some("event") => links.push(Link {
                seq: v.get("seq").and_then(Value::as_i64).ok_or_else(bad)?,
                prev_hash: v.get("prevHash").and_then(unb64).ok_or_else(bad)?,
                hash: v.get("hash").and_then(unb64).ok_or_else(bad)?,
                body: v.get("body").and_then(Value::as_str).map(str::to_string),
            }),
            Some("checkpoint") => cps.push(CheckpointRow {
                seq: v.get("seq").and_then(Value::as_i64).ok_or_else(bad)?,
                hash: v.get("hash").and_then(unb64).ok_or_else(bad)?,
                signed_at: v
                    .get("signedAt")
                    .and_then(Value::as_str)
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|d| d.with_timezone(&Utc))
                    .ok_or_else(bad)?,
                signature: v.get("signature").and_then(unb64).ok_or_else(bad)?,
            }),
            _ => return Err(bad()),
        }
    }
    Ok((links, cps))
}
