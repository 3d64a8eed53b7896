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

/// The columns `kms audit export` filters on (event name, account, key ARNs, time) and the
/// event id the change records are looked up by are copies of the hashed body kept for queries: each must say what the body says, or an event could be
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
    if body["eventID"].as_str() != Some(row.event_id.to_string().as_str()) {
        wrong.push("event_id");
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
pub fn check_generations(
    r: &mut Report,
    named: &std::collections::BTreeSet<(i64, String, i64)>,
    indexed: &[(String, i64, i64)],
    appended_up_to: i64,
) {
    use std::collections::BTreeSet;
    // Entries of events appended after the trail was read (up to the head as it was once the
    // index had been read) are not compared; one beyond that head names no event at all.
    let appended = |seq: i64| seq > r.last_seq && seq <= appended_up_to;
    let held: BTreeSet<(i64, String, i64)> = indexed
        .iter()
        .filter(|(_, _, seq)| !appended(*seq))
        .map(|(name, g, seq)| (*seq, name.clone(), *g))
        .collect();
    for (seq, name, g) in named.difference(&held) {
        r.problems.push((
            *seq,
            format!("event {seq} names generation {g} of {name}, which the audit_generations index does not hold (deleted from it)"),
        ));
    }
    for (seq, name, g) in held.difference(named) {
        r.problems.push((
            *seq,
            format!("the audit_generations index holds generation {g} of {name} at event {seq}, which that event does not name (inserted into it)"),
        ));
    }
    r.problems.sort_by_key(|p| p.0);
}

/// The row generations `rows` name (sequence number, row, generation), for
/// [`check_generations`].
fn named_generations(
    rows: &[AuditRow],
    named: &mut std::collections::BTreeSet<(i64, String, i64)>,
) {
    for row in rows {
        if let Ok(body) = serde_json::from_str::<Value>(&row.body) {
            for (name, g) in super::generations_in(&body) {
                named.insert((row.seq, name, g));
            }
        }
    }
}

/// Check a whole trail against what was anchored outside the database: the anchored head must
/// be in the trail with the same hash (events acknowledged and then deleted, or a chain
/// rewritten, show here), and every anchored checkpoint must verify and be in the database
/// and the trail.
pub fn check_anchor(
    r: &mut Report,
    hashes: &Hashes,
    checkpoints: &[CheckpointRow],
    anchored: &super::anchor::Anchored,
    what: &str,
    public_key: &[u8],
) {
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        public_key,
    );
    let hash_at = |seq: i64| hashes.get(&seq);
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

/// The hashes of the events at the sequence numbers a check asked about (checkpoints,
/// anchors), as the trail holds them.
pub type Hashes = std::collections::BTreeMap<i64, Vec<u8>>;

/// A chain checked link by link, in order: a trail read in pages keeps one page in memory,
/// and of the rest only the hashes at the sequence numbers asked about.
pub struct ChainCheck {
    r: Report,
    expected: Option<i64>,
    prev: Option<Vec<u8>>,
    first: Option<i64>,
    wanted: std::collections::BTreeSet<i64>,
    hashes: Hashes,
}

impl ChainCheck {
    /// `from_start`: the links must begin at the first event (a whole trail, not an export of
    /// part of it). `wanted`: the sequence numbers whose hashes [`ChainCheck::finish`] returns
    /// (the checkpoints' are always kept).
    pub fn new(from_start: bool, wanted: impl IntoIterator<Item = i64>) -> Self {
        ChainCheck {
            r: Report::default(),
            expected: from_start.then_some(1),
            prev: from_start.then(|| GENESIS.to_vec()),
            first: None,
            wanted: wanted.into_iter().collect(),
            hashes: Hashes::new(),
        }
    }

    /// The next link: its sequence number, its predecessor's hash, its hash, and its body if
    /// it has one to check.
    pub fn link(&mut self, seq: i64, prev_hash: &[u8], hash: &[u8], body: Option<&str>) {
        let r = &mut self.r;
        r.events += 1;
        self.first.get_or_insert(seq);
        if let Some(e) = self.expected {
            if seq > e {
                r.problems.push((
                    e,
                    format!(
                        "event {e}{} missing: deleted from the trail",
                        if seq > e + 1 {
                            format!(" to {} are", seq - 1)
                        } else {
                            " is".into()
                        }
                    ),
                ));
            } else if seq < e {
                r.problems.push((
                    seq,
                    format!("event {seq} appears out of order (after event {})", e - 1),
                ));
            }
        }
        if let (Some(p), Some(e)) = (&self.prev, self.expected) {
            if seq == e && prev_hash != p.as_slice() {
                r.problems.push((
                    seq,
                    format!(
                        "event {seq} does not follow event {}: an event was inserted, deleted or reordered here",
                        seq - 1
                    ),
                ));
            }
        }
        if let Some(body) = body {
            r.bodies_checked += 1;
            if chain_hash(seq, prev_hash, body) != hash {
                r.problems.push((
                    seq,
                    format!("event {seq} was altered: its content does not match its hash"),
                ));
            }
        }
        if self.wanted.contains(&seq) {
            self.hashes.entry(seq).or_insert_with(|| hash.to_vec());
        }
        self.expected = Some(seq + 1);
        self.prev = Some(hash.to_vec());
        r.last_seq = seq;
    }

    /// The report, with the checkpoints checked against the chain; `head`: the database's
    /// chain head when the reading began, if known, to notice a tail removed after the last
    /// checkpoint. Also the hashes asked for.
    pub fn finish(
        self,
        checkpoints: &[CheckpointRow],
        public_key: &[u8],
        head: Option<i64>,
    ) -> (Report, Hashes) {
        let ChainCheck {
            mut r,
            first,
            hashes,
            ..
        } = self;
        let first = first.unwrap_or(1);
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
            match hashes.get(&c.seq) {
                Some(h) if *h == c.hash => {}
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
        (r, hashes)
    }
}

/// Check links (in the order given) and checkpoints: [`ChainCheck`] over links in memory (an
/// export read back).
pub fn verify(
    links: &[Link],
    checkpoints: &[CheckpointRow],
    public_key: &[u8],
    from_start: bool,
    head: Option<i64>,
) -> Report {
    let mut check = ChainCheck::new(from_start, checkpoints.iter().map(|c| c.seq));
    for l in links {
        check.link(l.seq, &l.prev_hash, &l.hash, l.body.as_deref());
    }
    check.finish(checkpoints, public_key, head).0
}

/// How many events a whole-trail read holds at once.
const PAGE: i64 = 5000;

/// The events of the trail in the database after `after`, in order, a page at a time.
pub(crate) async fn pages<F>(
    store: &dyn AuditStore,
    mut after: i64,
    mut each: F,
) -> Result<(), StoreError>
where
    F: FnMut(&[AuditRow]) -> std::ops::ControlFlow<()>,
{
    loop {
        let page = store.audit_events(after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        if each(&page).is_break() || (page.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

/// The trail in the database verified with the audit public key: the chain from the first
/// event to the head, the checkpoints, the columns exports filter on, and the key
/// generations. Read a page at a time: what it keeps of the events read is their problems, the
/// generations they name, and the hashes at the checkpoints and at `wanted` (the sequence
/// numbers an anchor outside the database names, which the caller checks).
pub async fn stored(
    store: &dyn AuditStore,
    public_key: &[u8],
    wanted: &[i64],
) -> Result<(Report, Hashes, Vec<CheckpointRow>), StoreError> {
    // The checkpoints and the head before the events: a checkpoint or an append that comes
    // while the events are read is past what this check sees, not a gap in it.
    let cps = store.checkpoints().await?;
    let (head, _) = store.audit_head().await?;
    let wanted = cps.iter().map(|c| c.seq).chain(wanted.iter().copied());
    let mut check = ChainCheck::new(true, wanted);
    let mut columns = Report::default();
    let mut named = std::collections::BTreeSet::new();
    pages(store, 0, |page| {
        for r in page {
            check.link(r.seq, &r.prev_hash, &r.hash, Some(&r.body));
        }
        check_columns(&mut columns, page);
        named_generations(page, &mut named);
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    let (mut report, hashes) = check.finish(&cps, public_key, Some(head));
    report.problems.append(&mut columns.problems);
    let generations = store.audit_generations().await?;
    let (head_after, _) = store.audit_head().await?;
    check_generations(&mut report, &named, &generations, head_after);
    Ok((report, hashes, cps))
}

/// The export of the trail in the database that `filter` keeps ([`export`]), read a page at a
/// time (twice: to find the matching events, then to write the links from the first to the
/// checkpoint after the last), and how many events matched.
pub async fn export_stored(
    store: &dyn AuditStore,
    filter: &Filter,
) -> Result<(Vec<String>, usize), StoreError> {
    let cps = store.checkpoints().await?;
    let (mut lo, mut hi, mut n, mut read_to) = (None, None, 0, 0);
    pages(store, 0, |page| {
        for r in page.iter().filter(|r| filter.matches(r)) {
            lo.get_or_insert(r.seq);
            hi = Some(r.seq);
            n += 1;
        }
        read_to = page.last().map_or(read_to, |r| r.seq);
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    let mut out = vec![export_header()];
    if let (Some(lo), Some(hi)) = (lo, hi) {
        // What the first reading saw, no more: events appended since were not counted.
        let end = checkpoints_end(&cps, hi).min(read_to);
        pages(store, lo - 1, |page| {
            for r in page {
                if r.seq > end {
                    return std::ops::ControlFlow::Break(());
                }
                out.push(export_line(r, filter));
            }
            std::ops::ControlFlow::Continue(())
        })
        .await?;
    }
    out.extend(cps.iter().map(checkpoint_line));
    Ok((out, n))
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
            && self.account.as_ref().is_none_or(|a| {
                // The account's callers' events, and other accounts' calls that used its keys
                // (AWS records a cross-account call in the key owner's account as well), of an
                // event's first two key ARNs, as the trail viewer's indexes read them.
                r.account_id.as_deref() == Some(a.as_str())
                    || r.key_arns
                        .iter()
                        .take(2)
                        .any(|k| super::events::key_owner(k) == Some(a.as_str()))
            })
            && self.key.as_ref().is_none_or(|k| {
                r.key_arns
                    .iter()
                    .any(|a| a == k || a.ends_with(&format!("/{k}")))
            })
            && self.event_name.as_ref().is_none_or(|n| &r.event_name == n)
    }
}

/// An export is JSON Lines: a header, then every link from the first matching event to the
/// first checkpoint at or after the last one (bodies only for matching events), then the
/// checkpoints ([`export_stored`]).
fn export_header() -> String {
    json!({
        "type": "header",
        "format": "kms-audit-export-v1",
        "exportedAt": Utc::now().to_rfc3339(),
    })
    .to_string()
}

/// Where an export of events up to `hi` ends: the first checkpoint at or after it (the end of
/// the trail if none).
fn checkpoints_end(checkpoints: &[CheckpointRow], hi: i64) -> i64 {
    checkpoints
        .iter()
        .map(|c| c.seq)
        .find(|&s| s >= hi)
        .unwrap_or(i64::MAX)
}

/// An event's line: its link, and its body if the filter keeps it.
fn export_line(r: &AuditRow, filter: &Filter) -> String {
    let mut line = json!({
        "type": "event",
        "seq": r.seq,
        "prevHash": b64(&r.prev_hash),
        "hash": b64(&r.hash),
    });
    if filter.matches(r) {
        line["body"] = json!(r.body);
    }
    line.to_string()
}

fn checkpoint_line(c: &CheckpointRow) -> String {
    json!({
        "type": "checkpoint",
        "seq": c.seq,
        "hash": b64(&c.hash),
        "signedAt": c.signed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "signature": b64(&c.signature),
    })
    .to_string()
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
