//! [`AuditStore`]: the trail's storage (the chain, checkpoints, the change outbox and the
//! trail lookups), with the values it takes and gives and the task-local change scope
//! ([`in_change`]) whose record every write transaction inside it writes. Its one
//! implementation for both stores is `store/audit.rs`.

use crate::store::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// An audit event to append; the store gives it its sequence number and chain hash.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub event_id: Uuid,
    pub event_time: DateTime<Utc>,
    pub event_name: String,
    pub account_id: Option<String>,
    pub key_arns: Vec<String>,
    /// The event's canonical JSON.
    pub body: String,
    /// The row generations the event names (`additionalEventData.rowGenerations` in `body`):
    /// indexed in `audit_generations` when it is chained.
    pub generations: Vec<(String, i64)>,
}

/// The record that a change committed: written by the store in the change's own transaction
/// (the `audit_outbox` table), so the change and this record are durable together. The
/// call's event, once chained, removes it; a record whose call never got its event chained is
/// chained by the service itself (`ApiCallCommitted`). `mac` (computed in the token) covers
/// the event, so a record written with SQL is never chained as the service's word.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub event: NewAuditEvent,
    pub mac: Vec<u8>,
    /// The row generations the change wrote (noted once each write committed): the change's
    /// event names them, so the trail knows how far every row it rewrote has moved.
    pub written: Written,
}

/// Row generations a change wrote, by row name (see `domain::seal`).
#[derive(Debug, Clone, Default)]
pub struct Written(std::sync::Arc<std::sync::Mutex<Vec<(String, i64)>>>);

impl Written {
    pub fn list(&self) -> Vec<(String, i64)> {
        self.0.lock().unwrap().clone()
    }
}

/// Note that the running change committed generation `generation` of `row` (nothing outside
/// a change's scope: with no trail there is nothing to tell).
pub(crate) fn note_written(row: &str, generation: i64) {
    let _ = CHANGE.try_with(|c| {
        let mut w = c.written.0.lock().unwrap();
        if let Some(e) = w.iter_mut().find(|(r, _)| r == row) {
            e.1 = e.1.max(generation);
        } else {
            w.push((row.to_string(), generation));
        }
    });
}

tokio::task_local! {
    static CHANGE: std::sync::Arc<ChangeRecord>;
}

/// Run `f` as the change `record` describes: every write transaction the store commits inside
/// it also writes `record` (once). Outside such a scope (reads, jobs, crypto) nothing is added.
pub async fn in_change<F: std::future::Future>(
    record: Option<std::sync::Arc<ChangeRecord>>,
    f: F,
) -> F::Output {
    match record {
        Some(r) => CHANGE.scope(r, f).await,
        None => f.await,
    }
}

/// The change the running task is making, if any.
pub(crate) fn current_change() -> Option<std::sync::Arc<ChangeRecord>> {
    CHANGE.try_with(|r| r.clone()).ok()
}

/// An audit event as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub seq: i64,
    /// A copy of the body's `eventID` kept for lookups (the sweeper's: is a change record's
    /// event in the trail?), like the other columns beside the body.
    pub event_id: Uuid,
    pub event_time: DateTime<Utc>,
    pub event_name: String,
    pub account_id: Option<String>,
    #[sqlx(try_from = "crate::store::TextList")]
    pub key_arns: Vec<String>,
    pub body: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// What a trail lookup keeps: each member, when set, must match.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub event_name: Option<String>,
    /// The key's ARN, as the event names it (first or second key: ReEncrypt's source).
    pub key_arn: Option<String>,
    /// Text the event's body holds (a principal's ARN or an access key id).
    pub text: Option<String>,
    /// Only events that failed (carry an `errorCode`).
    pub errors_only: bool,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub signature: Vec<u8>,
}

/// Computes an event's chain hash from its sequence number, its predecessor's hash and its
/// body (the audit layer's function; the store only orders and persists).
pub type ChainFn = dyn Fn(i64, &[u8], &str) -> Vec<u8> + Send + Sync;

/// The operations `GetKeyLastUsage` reports (botocore's `KeyLastUsageTrackingOperation`, less
/// `Encapsulate` and `Decapsulate`, which this service does not offer), as SQL: the trail's
/// partial indexes (sql/0029, sql/sqlite/0016) list the same.
pub const KEY_USE_OPERATIONS: &str = "'Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac'";

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append events in order to the one chain, after `head` (sequence number and hash) if the
    /// chain still ends there: returns the new head, or `None` (nothing written) if another
    /// writer moved it first.
    /// `settles`: change records ([`ChangeRecord`]) the events account for, removed from the
    /// outbox in the same transaction.
    async fn append_audit(
        &self,
        head: (i64, &[u8]),
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<Option<(i64, Vec<u8>)>, StoreError>;
    /// [`AuditStore::append_audit`] after the head as it is when the append runs: for a writer
    /// that found the head moved by another node, which would likely lose the next race too.
    /// On Postgres one round trip locks the head's row, chains the events after it and
    /// writes them (`kms_audit_append`, every hash it returns checked with `chain`): appends
    /// from several nodes wait for each other instead of failing.
    async fn append_audit_serialized(
        &self,
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<(i64, Vec<u8>), StoreError>;
    /// Change records written before `cutoff` and not claimed by anyone (or whose claim ran out
    /// by `now`), at most `limit`, oldest first: claimed until `claim_until`, so that one
    /// sweeper (of any node) chains each while its claim holds.
    async fn claim_change_records(
        &self,
        now: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError>;
    /// Whether the change record `event_id` is still in `audit_outbox` (a call's event removes
    /// its record in the statement that chains it).
    async fn change_record_pending(&self, event_id: Uuid) -> Result<bool, StoreError>;
    /// Whether the trail holds an event with this id and a time within `within` (both ends
    /// included): a change record's event, chained already (the record, found again in the
    /// outbox, was put back), or a live trail's event already in a restored one.
    async fn event_in_trail(
        &self,
        event_id: Uuid,
        within: (DateTime<Utc>, DateTime<Utc>),
    ) -> Result<bool, StoreError>;
    /// The chain head: the last sequence number and its hash.
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;
    /// The latest `limit` cryptographic calls ([`KEY_USE_OPERATIONS`]) that used the key `arn`
    /// (ReEncrypt's source key too) before sequence number `before`, newest first: sequence
    /// number, time and body (`GetKeyLastUsage` reads whether each succeeded).
    async fn key_uses_before(
        &self,
        arn: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, DateTime<Utc>, String)>, StoreError>;
    /// Every `SealCoverage` event (by the event's hashed body), in order.
    async fn seal_coverages(&self) -> Result<Vec<AuditRow>, StoreError>;
    /// Account `account_id`'s events with sequence numbers in `[floor, before)` that match
    /// `filter`, newest first, at most `limit` (the console's trail viewer). The range bounds
    /// the rows the query reads, whatever the filter leaves.
    async fn lookup_events(
        &self,
        account_id: &str,
        filter: &EventFilter,
        range: (i64, i64),
        limit: i64,
    ) -> Result<Vec<AuditRow>, StoreError>;
    /// Events after `after` in sequence order, at most `limit`.
    async fn audit_events(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError>;
    /// Every (row, generation, seq) of `audit_generations`, by seq (for verification).
    async fn audit_generations(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;
    /// Store each event's seal (by sequence number), where it has none yet.
    async fn seal_audit_events(&self, seals: &[(i64, Vec<u8>)]) -> Result<(), StoreError>;
    async fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError>;
    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_use_indexes_list_the_operations_the_lookup_asks_for() {
        // A list that differs would leave `key_uses_before` scanning the trail.
        for migration in [
            include_str!("../../../sql/0029_key_last_usage.sql"),
            include_str!("../../../sql/sqlite/0016_key_last_usage.sql"),
            include_str!("../../../sql/0035_trail_by_account.sql"),
            include_str!("../../../sql/sqlite/0021_trail_by_account.sql"),
        ] {
            assert!(migration.contains(&format!("IN ({KEY_USE_OPERATIONS})")));
        }
        for (migration, succeeded) in [
            (
                include_str!("../../../sql/0035_trail_by_account.sql"),
                crate::store::postgres::SUCCEEDED,
            ),
            (
                include_str!("../../../sql/sqlite/0021_trail_by_account.sql"),
                crate::store::sqlite::SUCCEEDED,
            ),
        ] {
            assert_eq!(migration.matches(&format!("AND {succeeded};")).count(), 2);
        }
    }
}
