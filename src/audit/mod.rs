//! The audit trail: CloudTrail-shaped events in one hash chain, appended with group commit,
//! with checkpoints over the chain head signed in the token; `verify` checks a trail (from the
//! database or an export) with nothing but the audit public key.
//!
//! An event is durable before the response it describes is sent: `Audit::record` returns only
//! once the batch holding the event has committed, and a failed write fails the call.

pub mod anchor;
pub mod verify;

use crate::hsm::Hsm;
/// A call's change record (the trail's outbox entry that commits with the change) and the
/// scope its writes run in: the API prepares the one and runs the call in the other.
pub use crate::store::{in_change, ChangeRecord};
use crate::store::{AuditStore, CheckpointRow, NewAuditEvent, StoreError};
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The hash before the first event.
pub const GENESIS: [u8; 32] = [0u8; 32];
/// At most this many events share one commit.
const MAX_BATCH: usize = 512;

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
    fn write(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    write(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    write(v, &mut out);
    out
}

#[derive(Debug)]
pub struct AuditError(pub String);

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the audit trail could not be written: {}", self.0)
    }
}

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
}

/// Group commit without a writer thread: the first request that finds no batch in progress
/// commits everything waiting (its own event included) and keeps going while more arrive; the
/// others wait for the commit that carries their event. At low load an event costs one
/// statement and no hand-off between threads; at high load one statement carries hundreds.
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
        Arc::new(Audit {
            enabled: true,
            append_timeout,
            queue: Default::default(),
            store,
            hsm,
            anchor,
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
                (batch, q.head.take())
            };
            // Events move into the statement; their waiters keep only the reply channel.
            let settles: Vec<Uuid> = batch.iter().filter_map(|p| p.settles).collect();
            let (events, waiters): (Vec<NewAuditEvent>, Vec<_>) =
                batch.into_iter().map(|p| (p.event, p.done)).unzip();
            let result = match tokio::time::timeout(
                self.append_timeout,
                append(self.store.as_ref(), &mut head, &events, &settles),
            )
            .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => {
                    head = None;
                    Err("the database did not commit the batch in time".into())
                }
            };
            // Anchored outside the database before anyone is answered: an acknowledged event
            // cannot be deleted from the database unnoticed.
            let result = match (result, &self.anchor, &head) {
                (Ok(()), Some(a), Some((seq, hash))) => a.head(*seq, hash),
                (r, _, _) => r,
            };
            self.queue.lock().unwrap().head = head;
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
    /// service's word; a `ChangeRecordRefused` event names it instead. Returns how many were
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
            let event = if genuine {
                tracing::warn!(event_id = %id, "a committed change had no event of its own in the trail; its change record is chained instead");
                r.event
            } else {
                tracing::error!(event_id = %id, event_name = %r.event.event_name, "a change record in the database does not verify (written with SQL?): refused, not chained as the service's record");
                security_event(
                    "ChangeRecordRefused",
                    json!({
                        "eventId": id.to_string(),
                        "eventName": r.event.event_name,
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
        checkpoint(self.store.as_ref(), &self.hsm, self.anchor.as_deref()).await
    }
}

/// Append events after the chain head, reading the head again whenever another writer
/// moved it. `head` is the caller's idea of it (refreshed here), so a single writer needs one
/// round trip per batch.
async fn append(
    store: &dyn AuditStore,
    head: &mut Option<(i64, Vec<u8>)>,
    events: &[NewAuditEvent],
    settles: &[Uuid],
) -> Result<(), StoreError> {
    loop {
        let (seq, hash) = match head.take() {
            Some(h) => h,
            None => store.audit_head().await?,
        };
        if let Some(new) = store
            .append_audit((seq, &hash), events, settles, &chain_hash)
            .await?
        {
            *head = Some(new);
            return Ok(());
        }
    }
}

/// Append one event directly (for `kms admin`, which has no writer task).
pub async fn record_direct(
    store: &dyn AuditStore,
    event: NewAuditEvent,
    anchor: Option<&anchor::Anchor>,
) -> Result<(), AuditError> {
    record_direct_settling(store, event, None, anchor).await
}

/// Append one event directly that accounts for the change record `settles`.
pub async fn record_direct_settling(
    store: &dyn AuditStore,
    event: NewAuditEvent,
    settles: Option<Uuid>,
    anchor: Option<&anchor::Anchor>,
) -> Result<(), AuditError> {
    let mut head = None;
    let settles: Vec<Uuid> = settles.into_iter().collect();
    append(store, &mut head, &[event], &settles)
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    if let (Some(a), Some((seq, hash))) = (anchor, &head) {
        a.head(*seq, hash).map_err(AuditError)?;
    }
    Ok(())
}

/// Sign the current chain head in the token unless a checkpoint already covers it.
pub async fn checkpoint(
    store: &dyn AuditStore,
    hsm: &Hsm,
    anchor: Option<&anchor::Anchor>,
) -> Result<Option<i64>, AuditError> {
    let err = |e: StoreError| AuditError(e.to_string());
    let (seq, hash) = store.audit_head().await.map_err(err)?;
    if seq == 0 {
        return Ok(None);
    }
    let last = store
        .checkpoints()
        .await
        .map_err(err)?
        .last()
        .map(|c| c.seq);
    if last == Some(seq) {
        return Ok(None);
    }
    let signed_at = Utc::now();
    let msg = checkpoint_message(seq, &hash, &signed_at);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &msg);
    let raw = hsm
        .audit_sign(digest.as_ref().to_vec())
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    let signature = crate::domain::asymmetric::ecdsa_raw_to_der(&raw)
        .ok_or_else(|| AuditError("the token returned a malformed signature".into()))?;
    let row = CheckpointRow {
        seq,
        hash,
        signed_at,
        signature,
    };
    store.insert_checkpoint(&row).await.map_err(err)?;
    if let Some(a) = anchor {
        a.checkpoint(&row).map_err(AuditError)?;
    }
    Ok(Some(seq))
}

/// The audit public key as SubjectPublicKeyInfo DER.
pub async fn public_key_der(hsm: &Hsm) -> Result<Vec<u8>, AuditError> {
    let point = hsm
        .audit_public_point()
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    crate::domain::asymmetric::spki(
        crate::hsm::PairKind::Ec(crate::hsm::Curve::P256),
        &crate::hsm::PublicKey::Point(point),
    )
    .map_err(|e| AuditError(e.to_string()))
}

/// Who made a call, as CloudTrail's `userIdentity` shows it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub principal_arn: String,
    pub account_id: String,
    pub access_key_id: String,
    pub role_arn: Option<String>,
}

/// Everything one API call's event is made of.
pub struct ApiCall<'a> {
    pub operation: &'a str,
    pub sts: bool,
    pub region: &'a str,
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    pub identity: Option<&'a Identity>,
    pub request: Option<&'a Value>,
    pub response: Option<&'a Value>,
    pub error: Option<(&'a str, &'a str)>,
    pub request_id: &'a str,
    /// TLS version, cipher suite and the client certificate's SHA-256, if any.
    pub tls: Option<(&'a str, &'a str, Option<&'a str>)>,
    pub time: DateTime<Utc>,
}

/// Request members that may appear in the trail: identifiers, contexts, algorithms, specs and
/// settings. Anything else (plaintexts, ciphertexts, messages, signatures, MACs, public keys,
/// grant tokens, secrets) is left out by construction.
const LOGGED_MEMBERS: &[&str] = &[
    "KeyId",
    "AliasName",
    "TargetKeyId",
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "EncryptionAlgorithm",
    "SourceEncryptionAlgorithm",
    "DestinationEncryptionAlgorithm",
    "SourceKeyId",
    "DestinationKeyId",
    "SigningAlgorithm",
    "MessageType",
    "MacAlgorithm",
    "KeyAgreementAlgorithm",
    "KeySpec",
    "CustomerMasterKeySpec",
    "KeyPairSpec",
    "KeyUsage",
    "Origin",
    "MultiRegion",
    "NumberOfBytes",
    "Description",
    "Policy",
    "PolicyName",
    "BypassPolicyLockoutSafetyCheck",
    "PendingWindowInDays",
    "RotationPeriodInDays",
    "ReplicaRegion",
    "PrimaryRegion",
    "GranteePrincipal",
    "RetiringPrincipal",
    "Operations",
    "Constraints",
    "Name",
    "GrantId",
    "Tags",
    "TagKeys",
    "Limit",
    "Marker",
    "DryRun",
    "RoleArn",
    "RoleSessionName",
    "DurationSeconds",
];

fn camel(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The logged part of a request, with CloudTrail's camelCase member names.
pub fn request_parameters(request: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = request.as_object() {
        for (k, v) in m {
            if LOGGED_MEMBERS.contains(&k.as_str()) {
                out.insert(camel(k), v.clone());
            }
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

/// Whether a call may change something (CloudTrail's `readOnly` is false): such a call's
/// intent is recorded before it runs ([`intent_event`]).
pub fn changes_state(op: &str) -> bool {
    !read_only(op)
}

/// Operations whose event CloudTrail marks `readOnly` (an operation the table does not know
/// is taken to change something, so its intent would be recorded first).
fn read_only(op: &str) -> bool {
    crate::operations::find_any(op).is_some_and(|o| o.read_only)
}

fn key_arns_of(request: Option<&Value>, response: Option<&Value>) -> Vec<String> {
    let mut arns = Vec::new();
    let mut take = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            if s.starts_with("arn:") && s.contains(":key/") && !arns.iter().any(|a| a == s) {
                arns.push(s.to_string());
            }
        }
    };
    if let Some(r) = response {
        take(r.get("KeyId"));
        take(r.get("SourceKeyId"));
        take(r.pointer("/KeyMetadata/Arn"));
        take(r.pointer("/ReplicaKeyMetadata/Arn"));
    }
    if let Some(r) = request {
        take(r.get("KeyId"));
    }
    arns
}

/// CloudTrail's `responseElements` for the operations AWS fills it for; null otherwise.
fn response_elements(op: &str, response: Option<&Value>) -> Value {
    let Some(r) = response else {
        return Value::Null;
    };
    let pick = |names: &[&str]| {
        let mut m = Map::new();
        for n in names {
            if let Some(v) = r.get(*n) {
                m.insert(camel(n), v.clone());
            }
        }
        Value::Object(m)
    };
    match crate::operations::find_any(op) {
        Some(o) if !o.response_elements.is_empty() => pick(o.response_elements),
        _ => Value::Null,
    }
}

fn user_identity(id: Option<&Identity>) -> Value {
    match id {
        None => json!({ "type": "Unknown" }),
        Some(i) => {
            let kind = if i.role_arn.is_some() {
                "AssumedRole"
            } else {
                "IAMUser"
            };
            let principal = i.principal_arn.rsplit('/').next().unwrap_or_default();
            json!({
                "type": kind,
                "principalId": principal,
                "arn": i.principal_arn,
                "accountId": i.account_id,
                "accessKeyId": i.access_key_id,
            })
        }
    }
}

fn new_event(
    name: &str,
    account: Option<String>,
    arns: Vec<String>,
    body: &Value,
    time: DateTime<Utc>,
    event_id: Uuid,
) -> NewAuditEvent {
    NewAuditEvent {
        event_id,
        event_time: time,
        event_name: name.to_string(),
        account_id: account,
        key_arns: arns,
        body: canonical(body),
        generations: Vec::new(),
    }
}

/// `event` naming the row generations its change wrote (`written`, see `domain::seal`): in its
/// body (`additionalEventData.rowGenerations`, hashed with the rest) and for the
/// `audit_generations` index. An event whose change wrote nothing is returned as it is.
pub fn with_generations(
    mut event: NewAuditEvent,
    written: &crate::store::Written,
) -> NewAuditEvent {
    let list = written.list();
    if list.is_empty() {
        return event;
    }
    let Ok(mut body) = serde_json::from_str::<Value>(&event.body) else {
        return event;
    };
    let map: serde_json::Map<String, Value> =
        list.iter().map(|(r, g)| (r.clone(), json!(g))).collect();
    if !body["additionalEventData"].is_object() {
        body["additionalEventData"] = json!({});
    }
    body["additionalEventData"]["rowGenerations"] = Value::Object(map);
    event.body = canonical(&body);
    event.generations = list;
    event
}

/// The row generations an event's body names (`additionalEventData.rowGenerations`).
pub fn generations_in(body: &Value) -> Vec<(String, i64)> {
    body.pointer("/additionalEventData/rowGenerations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(r, g)| Some((r.clone(), g.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The event for one API call.
pub fn api_event(c: &ApiCall<'_>) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let arns = key_arns_of(c.request, c.response);
    let mut e = api_body(c, &arns, event_id);
    e["eventName"] = json!(c.operation);
    e["responseElements"] = if c.error.is_none() {
        response_elements(c.operation, c.response)
    } else {
        Value::Null
    };
    e["readOnly"] = json!(read_only(c.operation));
    e["eventType"] = json!("AwsApiCall");
    if let Some((code, message)) = c.error {
        e["errorCode"] = json!(code);
        e["errorMessage"] = json!(message);
    }
    if let Some((version, suite, client)) = c.tls {
        e["tlsDetails"] = json!({ "tlsVersion": version, "cipherSuite": suite });
        if let Some(fp) = client {
            e["tlsDetails"]["clientCertificateSha256"] = json!(fp);
        }
    }
    let account = c.identity.map(|i| i.account_id.clone());
    new_event(c.operation, account, arns, &e, c.time, event_id)
}

/// What an API call's events (its intent and its outcome) have in common.
fn api_body(c: &ApiCall<'_>, arns: &[String], event_id: Uuid) -> Value {
    json!({
        "eventVersion": "1.11",
        "eventTime": c.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": if c.sts { "sts.amazonaws.com" } else { "kms.amazonaws.com" },
        "awsRegion": c.region,
        "sourceIPAddress": c.source_ip,
        "userAgent": c.user_agent,
        "userIdentity": user_identity(c.identity),
        "requestParameters": c.request.map(request_parameters).unwrap_or(Value::Null),
        "responseElements": Value::Null,
        "requestID": c.request_id,
        "eventID": event_id.to_string(),
        "resources": arns.iter().map(|a| json!({
            "accountId": a.split(':').nth(4).unwrap_or_default(),
            "type": "AWS::KMS::Key",
            "ARN": a,
        })).collect::<Vec<_>>(),
        "managementEvent": true,
        "recipientAccountId": c.identity.map(|i| i.account_id.as_str()),
        "eventCategory": "Management",
    })
}

/// The event recorded before a call that may change something runs (`ApiCallStarted`): who
/// asks for what. The call runs only once it is durable, so no change is ever made without a
/// trace in the trail, even if the call's own event (with its outcome) cannot be written
/// afterwards; both carry the request id.
pub fn intent_event(c: &ApiCall<'_>) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let arns = key_arns_of(c.request, None);
    let mut e = api_body(c, &arns, event_id);
    e["eventName"] = json!(INTENT_EVENT);
    e["additionalEventData"] = json!({ "operation": c.operation });
    e["readOnly"] = json!(false);
    e["eventType"] = json!("AwsApiCallIntent");
    let account = c.identity.map(|i| i.account_id.clone());
    new_event(INTENT_EVENT, account, arns, &e, c.time, event_id)
}

/// The name of the event recorded before a call that may change something runs.
pub const INTENT_EVENT: &str = "ApiCallStarted";

/// The record that a call's change committed ([`ChangeRecord`]), prepared before the call runs
/// and written in the change's own transaction. Chained only if the call's own event never is
/// (`ApiCallCommitted`, with the call's request id): a change in force always has a trace of
/// its outcome in the trail, not only of its intent.
pub fn committed_event(c: &ApiCall<'_>) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let arns = key_arns_of(c.request, None);
    let mut e = api_body(c, &arns, event_id);
    e["eventName"] = json!(COMMITTED_EVENT);
    e["additionalEventData"] = json!({ "operation": c.operation });
    e["readOnly"] = json!(false);
    e["eventType"] = json!("AwsApiCallCommitted");
    let account = c.identity.map(|i| i.account_id.clone());
    new_event(COMMITTED_EVENT, account, arns, &e, c.time, event_id)
}

/// The name of the event chained for a change whose call's own event was never chained.
pub const COMMITTED_EVENT: &str = "ApiCallCommitted";

/// The change record for `event`, its MAC computed in the token.
pub async fn change_record_of(hsm: &Hsm, event: NewAuditEvent) -> Result<ChangeRecord, AuditError> {
    let mac = hsm
        .row_mac(change_record_message(&event))
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    Ok(ChangeRecord {
        event,
        mac,
        written: Default::default(),
    })
}

/// The bytes a change record's MAC covers: every column the record is chained with.
fn change_record_message(e: &NewAuditEvent) -> Vec<u8> {
    let mut m = b"kms.audit.change-record.v1\0".to_vec();
    m.extend_from_slice(e.event_id.as_bytes());
    m.extend_from_slice(&e.event_time.timestamp_micros().to_be_bytes());
    for part in [
        e.event_name.as_str(),
        e.account_id.as_deref().unwrap_or(""),
        &e.key_arns.join("\n"),
        &e.body,
    ] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    m
}

/// The event for something the service did by itself (rotation, deletion).
pub fn service_event(name: &str, key_arn: &str, region: &str, details: Value) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let time = Utc::now();
    let account = key_arn.split(':').nth(4).map(str::to_string);
    let e = json!({
        "eventVersion": "1.11",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "kms.amazonaws.com",
        "userAgent": "kms.amazonaws.com",
        "userIdentity": { "type": "AWSService", "invokedBy": "kms.amazonaws.com" },
        "requestParameters": Value::Null,
        "responseElements": Value::Null,
        "additionalEventData": details,
        "eventID": event_id.to_string(),
        "readOnly": false,
        "resources": [{ "accountId": account, "type": "AWS::KMS::Key", "ARN": key_arn }],
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
    });
    new_event(name, account, vec![key_arn.to_string()], &e, time, event_id)
}

/// The name of the event that records a grant's end (retired or revoked), chained before the
/// grant's row is deleted.
pub const GRANT_ENDED_EVENT: &str = "GrantEnded";

/// The grant a `GrantEnded` event's body names.
pub fn ended_grant_id(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .pointer("/additionalEventData/grantId")?
        .as_str()
        .map(str::to_string)
}

/// The event recorded before the service changes something by itself
/// (`ServiceActionStarted`, naming the action and the key).
pub fn service_intent_event(action: &str, key_arn: &str, region: &str) -> NewAuditEvent {
    service_event(
        SERVICE_INTENT_EVENT,
        key_arn,
        region,
        json!({ "action": action }),
    )
}

/// The name of the event recorded before the service changes something by itself.
pub const SERVICE_INTENT_EVENT: &str = "ServiceActionStarted";

/// An event about the service's own protection (authentication failures summarised per
/// source address), not about any key.
pub fn security_event(name: &str, details: Value) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let time = Utc::now();
    let e = json!({
        "eventVersion": "1.11",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": Value::Null,
        "sourceIPAddress": "kms.amazonaws.com",
        "userAgent": "kms.amazonaws.com",
        "userIdentity": { "type": "AWSService", "invokedBy": "kms.amazonaws.com" },
        "requestParameters": Value::Null,
        "responseElements": Value::Null,
        "additionalEventData": details,
        "eventID": event_id.to_string(),
        "readOnly": true,
        "resources": [],
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "eventCategory": "Management",
    });
    new_event(name, None, vec![], &e, time, event_id)
}

/// The event for an operator's `kms admin` change.
pub fn admin_event(action: &str, target: &str, operator: &str, details: Value) -> NewAuditEvent {
    operator_event(action, target, operator, details, Value::Null)
}

/// An operator's event named `name`, with `additional` as its `additionalEventData` unless null.
fn operator_event(
    name: &str,
    target: &str,
    operator: &str,
    details: Value,
    additional: Value,
) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let time = Utc::now();
    let mut e = json!({
        "eventVersion": "1.11",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms-admin",
        "eventName": name,
        "awsRegion": Value::Null,
        "sourceIPAddress": "localhost",
        "userAgent": "kms admin",
        "userIdentity": { "type": "Operator", "principalId": operator },
        "requestParameters": { "target": target, "details": details },
        "responseElements": Value::Null,
        "eventID": event_id.to_string(),
        "readOnly": false,
        "resources": [],
        "eventType": "AwsConsoleAction",
        "managementEvent": true,
        "eventCategory": "Management",
    });
    if !additional.is_null() {
        e["additionalEventData"] = additional;
    }
    new_event(name, None, vec![], &e, time, event_id)
}

/// The event recorded before a `kms admin` command changes anything (`AdminCommandStarted`):
/// a command whose intent cannot be recorded changes nothing.
pub fn admin_intent_event(
    action: &str,
    target: &str,
    operator: &str,
    details: Value,
) -> NewAuditEvent {
    operator_event(
        ADMIN_INTENT_EVENT,
        target,
        operator,
        details,
        json!({ "command": action }),
    )
}

/// The name of the event recorded before a `kms admin` command runs.
pub const ADMIN_INTENT_EVENT: &str = "AdminCommandStarted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x\"y"}});
        assert_eq!(
            canonical(&v),
            r#"{"a":{"c":"x\"y","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn only_listed_request_members_are_logged() {
        let req = json!({
            "KeyId": "alias/x",
            "Plaintext": "c2VjcmV0",
            "EncryptionContext": {"a": "b"},
            "GrantTokens": ["t"],
            "Message": "bQ==",
            "CiphertextBlob": "AQ==",
        });
        let p = request_parameters(&req);
        assert_eq!(
            p,
            json!({"keyId": "alias/x", "encryptionContext": {"a": "b"}})
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
