//! Recording: [`Audit`], the group commit that appends events to the one chain (the first
//! waiting request leads a batch; the others wait for the commit that carries their event),
//! the direct appends of `kms admin`, and the change records a call's event settles (or the
//! sweeper settles for it). Separate from the events (what is written) and from checkpoints
//! (what signs the chain).

use super::*;
use crate::store::{AuditStore, NewAuditEvent, StoreError};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

/// At most this many events share one commit.
const MAX_BATCH: usize = 512;

struct Pending {
    event: NewAuditEvent,
    /// The change record this event accounts for, removed with the event's commit.
    settles: Option<Uuid>,
    done: oneshot::Sender<Result<(), String>>,
}

/// Events waiting for a commit, and whether a request is committing a batch right now.
#[derive(Default)]
struct Queue {
    waiting: Vec<Pending>,
    leading: bool,
    /// The chain head after this instance's last append (`None`: read it from the store).
    head: Option<(i64, Vec<u8>)>,
    /// Until when appends lock the head first: another node appended after this one's last
    /// batch not long ago, so a batch after the head it knows would likely be refused.
    contended_until: Option<std::time::Instant>,
}

/// How long after finding the head moved by another node this node's appends lock it first.
const CONTENDED_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Group commit without a writer thread: the first request that finds no batch in progress
/// commits everything waiting (its own event included) and keeps going while more arrive; the
/// others wait for the commit that carries their event. At low load an event costs one
/// statement and no hand-off between threads; at high load one statement carries hundreds.
/// How many of the trail's sequence numbers one query of [`Audit::lookup`] reads.
pub const LOOKUP_WINDOW: i64 = 20_000;
/// How long [`Audit::lookup`] reads on before it answers with what it found.
pub const LOOKUP_BUDGET: std::time::Duration = std::time::Duration::from_millis(500);

/// Rows newest first from `[down_to, top)`, read `window` sequence numbers at a time by
/// `read(range, at_most)`, until `limit` rows are found, the range is read or `budget` has
/// passed; with where a next page goes on from (below its last row, or below what was read).
pub(crate) async fn read_windows<F, Fut>(
    (down_to, mut top): (i64, i64),
    limit: i64,
    (window, budget): (i64, std::time::Duration),
    read: F,
) -> Result<(Vec<crate::store::AuditRow>, Option<i64>), StoreError>
where
    F: Fn((i64, i64), i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<crate::store::AuditRow>, StoreError>>,
{
    let started = std::time::Instant::now();
    let mut rows: Vec<crate::store::AuditRow> = Vec::new();
    loop {
        let floor = top.saturating_sub(window).max(down_to);
        rows.extend(read((floor, top), limit - rows.len() as i64).await?);
        if rows.len() as i64 >= limit {
            let last = rows.last().map(|r| r.seq);
            return Ok((rows, last));
        }
        if floor <= down_to.max(1) {
            return Ok((rows, None));
        }
        top = floor;
        if started.elapsed() >= budget {
            return Ok((rows, Some(top)));
        }
    }
}

/// A page of [`Audit::lookup`]: the events, each with whether its row is as written, and the
/// sequence number the next page reads below, if any of the trail is left to read.
pub struct Lookup {
    pub rows: Vec<(crate::store::AuditRow, bool)>,
    pub next: Option<i64>,
}

pub struct Audit {
    /// `false`: recording is off (`audit_enabled = false`, for benchmarks only).
    enabled: bool,
    /// A batch that has not committed in this time fails (its callers are refused), so a
    /// database that stops answering cannot stall the trail for good.
    append_timeout: std::time::Duration,
    queue: std::sync::Mutex<Queue>,
    store: Arc<dyn AuditStore>,
    hsm: Hsm,
    /// The head and checkpoints, also outside the database (`audit_anchor_file`).
    anchor: Option<Arc<anchor::Anchor>>,
    /// The last point of the chain this node wrote or anchored: whatever other nodes append,
    /// the trail must still hold it, with its hash ([`still_holds`]).
    known: std::sync::Mutex<Option<(i64, Vec<u8>)>>,
}

/// Hands leadership on when a leading request is done with its own batch, or is cancelled (its
/// client went away): the events still waiting get a new leader (a task of its own); a batch in
/// flight when a request is cancelled reports failure to its waiters.
struct Leading {
    audit: Arc<Audit>,
    finished: bool,
}

impl Drop for Leading {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut q = self.audit.queue.lock().unwrap();
        if q.waiting.is_empty() {
            q.leading = false;
            return;
        }
        drop(q);
        let audit = self.audit.clone();
        tokio::spawn(async move { audit.lead(false).await });
    }
}

/// A key's latest successful cryptographic call, as `GetKeyLastUsage` reports it.
#[derive(Debug, Clone)]
pub struct KeyUse {
    pub operation: String,
    pub time: chrono::DateTime<chrono::Utc>,
    /// The event's `eventID` (CloudTrail's event id).
    pub event_id: String,
    /// The call's request id (`requestID`).
    pub request_id: String,
}

impl Audit {
    /// The account's events matching `filter`, newest first, before `before` and not below
    /// `down_to`: each with whether its row is as written: it hashes to what it records, and
    /// the columns the query selected it by (account, event name, key ARNs, time) say what its
    /// hashed body says. A row edited in the database, or relabelled to slip another account's
    /// event into this account's trail, is not.
    ///
    /// The trail is read [`LOOKUP_WINDOW`] sequence numbers at a time, newest first, until
    /// `limit` events are found or [`LOOKUP_BUDGET`] has passed: a filter that matches nothing
    /// in a long trail costs each request a bounded read, not a walk of the whole trail, and
    /// the page says where the next one goes on from (as CloudTrail's pages may be short, or
    /// empty, and still have a next).
    pub async fn lookup(
        &self,
        account_id: &str,
        filter: &crate::store::EventFilter,
        (down_to, before): (i64, i64),
        limit: i64,
    ) -> Result<Lookup, StoreError> {
        let (head, _) = self.store.audit_head().await?;
        let top = before.min(head.saturating_add(1));
        let read = |range, want| self.store.lookup_events(account_id, filter, range, want);
        // With no filter every row the account's indexes walk is one of the page: one query.
        let unfiltered = filter.event_name.is_none()
            && filter.key_arn.is_none()
            && filter.text.is_none()
            && !filter.errors_only
            && filter.from.is_none()
            && filter.to.is_none();
        let window = if unfiltered { i64::MAX } else { LOOKUP_WINDOW };
        let (rows, next) =
            read_windows((down_to, top), limit, (window, LOOKUP_BUDGET), read).await?;
        let rows = rows
            .into_iter()
            .map(|r| {
                let intact = super::chain_hash(r.seq, &r.prev_hash, &r.body) == r.hash
                    && super::verify::altered_columns(&r).is_empty();
                (r, intact)
            })
            .collect();
        Ok(Lookup { rows, next })
    }

    /// The latest successful cryptographic call that used the key `arn`, from the trail (an
    /// event without `errorCode`; a body that is not JSON is passed over). Read for display:
    /// the trail's integrity is what `kms audit verify` checks.
    pub async fn last_key_use(&self, arn: &str) -> Result<Option<KeyUse>, StoreError> {
        const PAGE: i64 = 100;
        let mut before = i64::MAX;
        loop {
            let page = self.store.key_uses_before(arn, before, PAGE).await?;
            for (seq, time, body) in &page {
                before = *seq;
                let Ok(v) = serde_json::from_str::<Value>(body) else {
                    continue;
                };
                if v.get("errorCode").is_some() {
                    continue;
                }
                let text = |k: &str| {
                    v.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                return Ok(Some(KeyUse {
                    operation: text("eventName"),
                    time: *time,
                    event_id: text("eventID"),
                    request_id: text("requestID"),
                }));
            }
            if (page.len() as i64) < PAGE {
                return Ok(None);
            }
        }
    }

    pub fn start(
        store: Arc<dyn AuditStore>,
        hsm: Hsm,
        append_timeout: std::time::Duration,
        anchor: Option<Arc<anchor::Anchor>>,
    ) -> Arc<Audit> {
        let known = anchor.as_ref().and_then(|a| a.opened_at());
        Arc::new(Audit {
            enabled: true,
            append_timeout,
            queue: Default::default(),
            store,
            hsm,
            anchor,
            known: std::sync::Mutex::new(known),
        })
    }

    /// An audit trail that records nothing: only for measuring what recording costs.
    pub fn disabled(store: Arc<dyn AuditStore>, hsm: Hsm) -> Arc<Audit> {
        tracing::warn!("the audit trail is OFF (audit_enabled = false): calls are not recorded");
        Arc::new(Audit {
            enabled: false,
            append_timeout: std::time::Duration::from_secs(10),
            queue: Default::default(),
            store,
            hsm,
            anchor: None,
            known: Default::default(),
        })
    }

    /// Append an event; returns once it is committed.
    pub async fn record(self: &Arc<Self>, event: NewAuditEvent) -> Result<(), AuditError> {
        self.record_settling(event, None).await
    }

    /// Append an event that accounts for the change record `settles` (removed from the
    /// outbox in the same commit); returns once it is committed.
    pub async fn record_settling(
        self: &Arc<Self>,
        event: NewAuditEvent,
        settles: Option<Uuid>,
    ) -> Result<(), AuditError> {
        if !self.enabled {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (done, wait) = oneshot::channel();
        let lead = {
            let mut q = self.queue.lock().unwrap();
            q.waiting.push(Pending {
                event,
                settles,
                done,
            });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            self.clone().lead(true).await;
        }
        let r = wait.await;
        crate::metrics::audit_append(started.elapsed());
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AuditError(e)),
            Err(_) => Err(AuditError(
                "the batch holding this event was abandoned".into(),
            )),
        }
    }

    /// Commit batches until nothing is waiting (the caller holds `leading`). A request that
    /// leads (`inline`) commits the one batch that carries its own event, then hands on to a
    /// task of its own if more are waiting: under steady load the queue never empties, and a
    /// request that led until it did would answer late (or past its deadline, abandoning the
    /// batch in flight for everyone in it).
    async fn lead(self: Arc<Self>, inline: bool) {
        let mut guard = Leading {
            audit: self.clone(),
            finished: false,
        };
        loop {
            let (batch, mut head) = {
                let mut q = self.queue.lock().unwrap();
                if q.waiting.is_empty() {
                    q.leading = false;
                    guard.finished = true;
                    return;
                }
                let n = q.waiting.len().min(MAX_BATCH);
                let batch: Vec<Pending> = q.waiting.drain(..n).collect();
                // Within the contended window the known head is passed over: the append locks
                // and reads the head as it is.
                let now = std::time::Instant::now();
                let contended = q.contended_until.is_some_and(|t| t > now);
                (batch, q.head.take().filter(|_| !contended))
            };
            // Events move into the statement; their waiters keep only the reply channel.
            let settles: Vec<Uuid> = batch.iter().filter_map(|p| p.settles).collect();
            let (events, waiters): (Vec<NewAuditEvent>, Vec<_>) =
                batch.into_iter().map(|p| (p.event, p.done)).unzip();
            let mut moved = false;
            let known = self.known.lock().unwrap().clone();
            let result = match tokio::time::timeout(
                self.append_timeout,
                append(self.store.as_ref(), &mut head, known, &events, &settles),
            )
            .await
            {
                Ok(Ok(m)) => {
                    moved = m;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => {
                    head = None;
                    Err("the database did not commit the batch in time".into())
                }
            };
            // Sealed before anyone is answered: an acknowledged event that can decide
            // something is the service's, by its seal ([`super::seals`]).
            let result = match (result, &head) {
                (Ok(()), Some((last, _))) => {
                    let first = last - events.len() as i64 + 1;
                    let sealing = seal_chained(self.store.as_ref(), &self.hsm, first, &events);
                    match tokio::time::timeout(self.append_timeout, sealing).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => {
                            Err("the database did not store the events' seals in time".into())
                        }
                    }
                }
                (r, _) => r,
            };
            // Anchored outside the database before anyone is answered: an acknowledged event
            // cannot be deleted from the database unnoticed.
            let result = match (result, &self.anchor, &head) {
                (Ok(()), Some(a), Some((seq, hash))) => a.head(*seq, hash),
                (r, _, _) => r,
            };
            if let (Ok(()), Some(h)) = (&result, &head) {
                *self.known.lock().unwrap() = Some(h.clone());
            }
            {
                let mut q = self.queue.lock().unwrap();
                q.head = head;
                if moved {
                    q.contended_until = Some(std::time::Instant::now() + CONTENDED_FOR);
                }
            }
            crate::metrics::audit_batch(events.len(), result.is_ok());
            if let Err(e) = &result {
                tracing::error!(error = %e, events = events.len(), "audit append failed; the calls it records are refused");
            }
            for done in waiters {
                let _ = done.send(result.clone());
            }
            if inline {
                // The guard hands leadership on to a task (or lets it go if nothing waits).
                return;
            }
        }
    }

    /// The change record for `event` ([`committed_event`]), its MAC computed in the token;
    /// `None` when recording is off.
    pub async fn change_record(
        &self,
        event: NewAuditEvent,
    ) -> Result<Option<Arc<ChangeRecord>>, AuditError> {
        if !self.enabled {
            return Ok(None);
        }
        Ok(Some(Arc::new(change_record_of(&self.hsm, event).await?)))
    }

    /// Chain the change records older than `older_than` (their calls' own events will not
    /// come: the trail refused them, or the node died) and remove them, a batch at a time.
    /// A record whose MAC does not verify was written with SQL: it is not chained as the
    /// service's word; a `ChangeRecordRefused` event names it instead, as it names a record
    /// whose event is in the trail already (settled, then put back). Returns how many were
    /// settled.
    pub async fn settle_change_records(
        self: &Arc<Self>,
        older_than: std::time::Duration,
    ) -> Result<usize, AuditError> {
        if !self.enabled {
            return Ok(0);
        }
        let err = |e: StoreError| AuditError(e.to_string());
        let now = Utc::now();
        let older = chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        // Held long enough for one append to finish or fail (then another sweep may retry).
        let hold = chrono::Duration::from_std(self.append_timeout * 2)
            .unwrap_or(chrono::Duration::MAX)
            + chrono::Duration::seconds(5);
        let records = self
            .store
            .claim_change_records(now, now - older, now + hold, 100)
            .await
            .map_err(err)?;
        let n = records.len();
        for r in records {
            let id = r.event.event_id;
            let genuine = self
                .hsm
                .row_mac_matches(change_record_message(&r.event), &r.mac)
                .await
                .map_err(|e| AuditError(e.to_string()))?;
            let chained = genuine
                && (self.store)
                    .event_in_trail(id, (r.event.event_time, r.event.event_time))
                    .await
                    .map_err(err)?;
            // The call's own event came late (after this sweep claimed its record): it removed
            // the record in the statement that chained it, so a record no longer waiting was
            // settled, not put back.
            if chained && !self.store.change_record_pending(id).await.map_err(err)? {
                continue;
            }
            let event = if chained {
                tracing::error!(event_id = %id, "a change record in the database is in the trail already (put back with SQL?): refused, not chained again");
                security_event(
                    "ChangeRecordRefused",
                    json!({
                        "eventId": id.to_string(),
                        // Not `eventName`: a member before the body's own, which the trail's
                        // indexes read as the event's name (a database writer's text here).
                        "refusedEventName": r.event.event_name,
                        "reason": "The record's event is in the trail already.",
                    }),
                )
            } else if genuine {
                tracing::warn!(event_id = %id, "a committed change had no event of its own in the trail; its change record is chained instead");
                r.event
            } else {
                tracing::error!(event_id = %id, event_name = %r.event.event_name, "a change record in the database does not verify (written with SQL?): refused, not chained as the service's record");
                security_event(
                    "ChangeRecordRefused",
                    json!({
                        "eventId": id.to_string(),
                        "refusedEventName": r.event.event_name,
                        "reason": "The record's MAC does not verify.",
                    }),
                )
            };
            self.record_settling(event, Some(id)).await?;
        }
        Ok(n)
    }

    /// Sign a checkpoint over the chain head, if the head moved since the last one.
    pub async fn checkpoint(&self) -> Result<Option<i64>, AuditError> {
        // Never a signature over a chain that lost what this node wrote.
        let known = self.known.lock().unwrap().clone();
        still_holds(self.store.as_ref(), known.as_ref())
            .await
            .map_err(|e| AuditError(e.to_string()))?;
        checkpoint(self.store.as_ref(), &self.hsm, self.anchor.as_deref()).await
    }

    /// Sign a report this service built, over the chain head now ([`super::report`]).
    pub async fn sign_report(
        &self,
        content: &[u8],
    ) -> Result<super::report::ReportSignature, AuditError> {
        super::report::sign(self.store.as_ref(), &self.hsm, content).await
    }

    /// The audit public key (SubjectPublicKeyInfo DER).
    pub async fn public_key_der(&self) -> Result<Vec<u8>, AuditError> {
        public_key_der(&self.hsm).await
    }

    /// The trail in the database verified with the audit public key, as `kms audit verify`
    /// does (anchors aside), and the latest checkpoint.
    pub async fn verify_stored(
        &self,
    ) -> Result<(super::verify::Report, Option<crate::store::CheckpointRow>), AuditError> {
        let key = self.public_key_der().await?;
        let (report, _, cps) = super::verify::stored(self.store.as_ref(), &key, &[])
            .await
            .map_err(|e| AuditError(e.to_string()))?;
        Ok((report, cps.last().cloned()))
    }

    /// The latest checkpoint, and whether its signature verifies with the audit public key.
    pub async fn latest_checkpoint(
        &self,
    ) -> Result<Option<(crate::store::CheckpointRow, bool)>, AuditError> {
        let cps = (self.store.checkpoints().await).map_err(|e| AuditError(e.to_string()))?;
        let Some(c) = cps.last().cloned() else {
            return Ok(None);
        };
        let key = self.public_key_der().await?;
        let verifies = super::verify::checkpoint_verifies(&c, &key);
        Ok(Some((c, verifies)))
    }

    /// The events `filter` keeps, as `kms audit export` writes them (JSON Lines), and how
    /// many.
    pub async fn export(
        &self,
        filter: &super::verify::Filter,
    ) -> Result<(Vec<String>, usize), AuditError> {
        super::verify::export_stored(self.store.as_ref(), filter)
            .await
            .map_err(|e| AuditError(e.to_string()))
    }
}

/// Append events after the chain head. `head` is the caller's idea of it (refreshed here): a
/// single writer needs one round trip per batch. Append after `head` if known (one
/// statement), else, or if another writer moved it, after the head as it is under its lock.
/// Returns whether another writer had moved it.
async fn append(
    store: &dyn AuditStore,
    head: &mut Option<(i64, Vec<u8>)>,
    known: Option<(i64, Vec<u8>)>,
    events: &[NewAuditEvent],
    settles: &[Uuid],
) -> Result<bool, StoreError> {
    let mut moved = false;
    if let Some((seq, hash)) = head.take() {
        if let Some(new) = store
            .append_audit((seq, &hash), events, settles, &chain_hash)
            .await?
        {
            *head = Some(new);
            return Ok(false);
        }
        moved = true;
    }
    // After a head this node did not know: it must still follow what this node knows.
    still_holds(store, known.as_ref()).await?;
    let (last, hash) = store
        .append_audit_serialized(events, settles, &chain_hash)
        .await?;
    // And go on after it: a head moved back below what this node knows (the head's row
    // rewritten) would chain these events below an event of this node's, and their seals
    // would rank an older event of its above them.
    let first = last - events.len() as i64 + 1;
    if let Some((seq, _)) = known.as_ref().filter(|(seq, _)| first <= *seq) {
        tracing::error!(seq, first, "the audit trail's head in the database moved back below an event this node wrote or anchored; the events just chained are not sealed and the calls they record are refused");
        return Err(StoreError::Other(format!(
            "the audit trail's head moved back below event {seq} in the database"
        )));
    }
    *head = Some((last, hash));
    Ok(moved)
}

/// Whether the trail holds event `seq` with `hash` (seq 0: the empty chain, always held).
pub async fn holds_event(
    store: &dyn AuditStore,
    seq: i64,
    hash: &[u8],
) -> Result<bool, StoreError> {
    if seq <= 0 {
        return Ok(true);
    }
    Ok(store
        .audit_events(seq - 1, 1)
        .await?
        .first()
        .is_some_and(|e| e.seq == seq && e.hash == hash))
}

/// Whether the trail still holds `known` (a point this node wrote, saw or anchored): the event
/// at its seq, with its hash. Another node appending after it moves the head, never that
/// event; a trail rolled back or cut in the database (an older snapshot, its tail deleted and
/// written again) has lost it, and nothing more is appended or signed after such a chain: the
/// calls it would record are refused until an operator has looked (`kms audit verify`).
async fn still_holds(
    store: &dyn AuditStore,
    known: Option<&(i64, Vec<u8>)>,
) -> Result<(), StoreError> {
    let Some((seq, hash)) = known else {
        return Ok(());
    };
    if holds_event(store, *seq, hash).await? {
        return Ok(());
    }
    tracing::error!(seq, "the audit trail in the database no longer holds an event this node wrote or anchored: it was rolled back or cut (a restored snapshot, its tail deleted or rewritten); nothing is appended after it and the calls to record are refused. Run `kms audit verify` (with --anchor) to see what is missing");
    Err(StoreError::Other(format!(
        "the audit trail no longer holds event {seq} as this node wrote it: it was rolled back or cut in the database"
    )))
}

/// Append one event directly (for `kms admin`, which has no writer task), sealed in `hsm`.
pub async fn record_direct(
    store: &dyn AuditStore,
    hsm: &Hsm,
    event: NewAuditEvent,
    anchor: Option<&anchor::Anchor>,
) -> Result<(), AuditError> {
    record_direct_settling(store, hsm, event, None, anchor).await
}

/// Append one event directly that accounts for the change record `settles`, sealed in `hsm`.
pub async fn record_direct_settling(
    store: &dyn AuditStore,
    hsm: &Hsm,
    event: NewAuditEvent,
    settles: Option<Uuid>,
    anchor: Option<&anchor::Anchor>,
) -> Result<(), AuditError> {
    let mut head = None;
    let settles: Vec<Uuid> = settles.into_iter().collect();
    let known = anchor.and_then(|a| a.opened_at());
    let events = [event];
    append(store, &mut head, known, &events, &settles)
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    if let Some((seq, _)) = &head {
        seal_chained(store, hsm, *seq, &events).await?;
    }
    if let (Some(a), Some((seq, hash))) = (anchor, &head) {
        a.head(*seq, hash).map_err(AuditError)?;
    }
    Ok(())
}
