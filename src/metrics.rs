//! The operator's signals: Prometheus metrics (OpenMetrics text) for requests, the token, the
//! caches and the audit trail. One process-wide registry; every layer records into it and the
//! metrics listener encodes it. Label values come from fixed sets (operation names, exception
//! names, PKCS#11 return codes, cache names), so a client cannot grow the label space.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    /// The AWS exception name, or empty for a success.
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    operation: &'static str,
    /// [`Stage`]'s name.
    stage: &'static str,
}

/// The stages of an API request, in order: where its time goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the request's head to its whole body read.
    Receive,
    /// The SigV4 check (a signing key derived or read from its cache).
    Authenticate,
    /// The operation: the request read for its event, the quota, its intent in the trail (a
    /// call that may change something), the key's resolution and authorisation, the token
    /// call.
    Operation,
    /// The call's event made durable in the trail.
    Record,
    /// The response body built.
    Respond,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Receive,
        Stage::Authenticate,
        Stage::Operation,
        Stage::Record,
        Stage::Respond,
    ];

    fn name(self) -> &'static str {
        match self {
            Stage::Receive => "receive",
            Stage::Authenticate => "authenticate",
            Stage::Operation => "operation",
            Stage::Record => "record",
            Stage::Respond => "respond",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenCallLabels {
    /// `pool` (a pooled session on the blocking pool), `inline` (a short call on the caller's
    /// thread) or `pinned` (the session that owns unwrapped objects).
    session: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GcmLabels {
    /// `message` (one PKCS#11 3.0 call on a session set up for the key), `setup` (a session's
    /// message-based operation set up for a key) or `two_calls` (PKCS#11 2.40: init, then the
    /// operation).
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenErrorLabels {
    /// The PKCS#11 return code (cryptoki's name: `GeneralError` for `CKR_GENERAL_ERROR`), or
    /// the service's reason when no call returned one.
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<OperationLabels>,
    stage_seconds: HistogramFamily<StageLabels>,
    token_calls: Family<TokenCallLabels, Counter>,
    token_call_seconds: HistogramFamily<TokenCallLabels>,
    token_errors: Family<TokenErrorLabels, Counter>,
    token_gcm: Family<GcmLabels, Counter>,
    token_reopens: Counter,
    token_failovers: Counter,
    token_up: Gauge,
    sessions_in_use: Gauge,
    sessions_max: Gauge,
    cache: Family<CacheLabels, Counter>,
    audit_append_seconds: Histogram,
    audit_batch_events: Histogram,
    audit_failures: Counter,
    rewrap_backlog: Gauge,
    rewrapped: Counter,
    remac_backlog: Gauge,
    remacced: Counter,
}

/// 50 µs … ~26 s: token calls take tens of microseconds, RSA-4096 generation seconds.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// 2 µs … ~4 s: a request's stages take from microseconds to a commit's milliseconds.
fn fine() -> Histogram {
    Histogram::new(exponential_buckets(0.000002, 2.0, 22))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("kms");
    let m = Metrics {
        requests: Family::default(),
        request_seconds: Family::new_with_constructor(latency),
        stage_seconds: Family::new_with_constructor(fine),
        token_calls: Family::default(),
        token_call_seconds: Family::new_with_constructor(latency),
        token_errors: Family::default(),
        token_gcm: Family::default(),
        token_reopens: Counter::default(),
        token_failovers: Counter::default(),
        token_up: Gauge::default(),
        sessions_in_use: Gauge::default(),
        sessions_max: Gauge::default(),
        cache: Family::default(),
        audit_append_seconds: latency(),
        audit_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 10)),
        audit_failures: Counter::default(),
        rewrap_backlog: Gauge::default(),
        rewrapped: Counter::default(),
        remac_backlog: Gauge::default(),
        remacced: Counter::default(),
        registry: Registry::default(),
    };
    registry.register(
        "requests",
        "API requests by operation and error (the AWS exception name; empty on success)",
        m.requests.clone(),
    );
    registry.register(
        "request_duration_seconds",
        "API request latency by operation, from the request's arrival to its response",
        m.request_seconds.clone(),
    );
    registry.register(
        "request_stage_duration_seconds",
        "API request latency by operation and stage (receive, authenticate, operation, record, respond): where a request's time goes",
        m.stage_seconds.clone(),
    );
    registry.register(
        "token_calls",
        "Calls into the PKCS#11 token, by the kind of session they ran on",
        m.token_calls.clone(),
    );
    registry.register(
        "token_call_duration_seconds",
        "Latency of calls into the PKCS#11 token, waiting for a session included",
        m.token_call_seconds.clone(),
    );
    registry.register(
        "token_errors",
        "Failed calls into the PKCS#11 token, by return code (a failed GCM tag check is GeneralError on SoftHSM)",
        m.token_errors.clone(),
    );
    registry.register(
        "token_gcm_calls",
        "AES-GCM encryptions and decryptions in the token, by how they were called: as one PKCS#11 3.0 message, as two PKCS#11 2.40 calls, and the set-ups of a session's message-based operation for a key",
        m.token_gcm.clone(),
    );
    registry.register(
        "token_reopens",
        "Times the token was found lost and re-opened (re-initialised, logged in again)",
        m.token_reopens.clone(),
    );
    registry.register(
        "token_failovers",
        "Times the service moved to another token of its pool because the one in use was lost",
        m.token_failovers.clone(),
    );
    registry.register(
        "token_up",
        "1 while the token is logged in and usable, 0 while it is lost",
        m.token_up.clone(),
    );
    registry.register(
        "token_sessions_in_use",
        "Pooled token sessions in use by a call now",
        m.sessions_in_use.clone(),
    );
    registry.register(
        "token_sessions_max",
        "Size of the token session pool",
        m.sessions_max.clone(),
    );
    registry.register(
        "cache_lookups",
        "Cache lookups by cache and result (hit or miss)",
        m.cache.clone(),
    );
    registry.register(
        "audit_append_duration_seconds",
        "Audit lag: how long an audited call waits for its event to be durable (group commit included)",
        m.audit_append_seconds.clone(),
    );
    registry.register(
        "audit_batch_events",
        "Events per audit group commit",
        m.audit_batch_events.clone(),
    );
    registry.register(
        "audit_append_failures",
        "Audit batches that failed to commit (their calls were refused)",
        m.audit_failures.clone(),
    );
    registry.register(
        "root_rewrap_backlog",
        "Stored blobs still wrapped under an older root key (0 once a root key rotation is done)",
        m.rewrap_backlog.clone(),
    );
    registry.register(
        "root_rewrapped_blobs",
        "Blobs this process re-wrapped under the current root key",
        m.rewrapped.clone(),
    );
    registry.register(
        "mac_remac_backlog",
        "Row MACs still made under an older metadata MAC key (0 once a MAC key rotation is done)",
        m.remac_backlog.clone(),
    );
    registry.register(
        "mac_remacced_rows",
        "Row MACs this process made again under the current MAC key",
        m.remacced.clone(),
    );
    Metrics { registry, ..m }
});

/// Running totals of this process, for the console's operator view (the families above
/// keep them per label only).
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static REQUEST_ERRORS: AtomicU64 = AtomicU64::new(0);
static TOKEN_CALLS: AtomicU64 = AtomicU64::new(0);
static TOKEN_ERRORS: AtomicU64 = AtomicU64::new(0);

/// This process's totals since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    /// Requests answered with an error.
    pub errors: u64,
    pub token_calls: u64,
    pub token_errors: u64,
    pub token_reopens: u64,
    pub token_failovers: u64,
    pub audit_failures: u64,
}

pub fn totals() -> Totals {
    let m = &*METRICS;
    Totals {
        requests: REQUESTS.load(Ordering::Relaxed),
        errors: REQUEST_ERRORS.load(Ordering::Relaxed),
        token_calls: TOKEN_CALLS.load(Ordering::Relaxed),
        token_errors: TOKEN_ERRORS.load(Ordering::Relaxed),
        token_reopens: m.token_reopens.get(),
        token_failovers: m.token_failovers.get(),
        audit_failures: m.audit_failures.get(),
    }
}

/// The stages one API request went through, and how long each took.
#[derive(Debug, Default)]
pub struct Stages([Option<Duration>; 5]);

impl Stages {
    /// `stage` ended now, begun at `began`: returns now, the next stage's beginning.
    pub fn ended(&mut self, stage: Stage, began: Instant) -> Instant {
        let now = Instant::now();
        self.0[stage as usize] = Some(now.duration_since(began));
        now
    }
}

/// The stages of one request of `operation` (the operation's name, once it is known).
pub fn stages(operation: &'static str, s: &Stages) {
    for (stage, took) in Stage::ALL.iter().zip(s.0) {
        if let Some(took) = took {
            METRICS
                .stage_seconds
                .get_or_create(&StageLabels {
                    operation,
                    stage: stage.name(),
                })
                .observe(took.as_secs_f64());
        }
    }
}

/// One answered API request.
pub fn request(operation: &'static str, error: &'static str, took: Duration) {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    if !error.is_empty() {
        REQUEST_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    let m = &*METRICS;
    m.requests
        .get_or_create(&RequestLabels { operation, error })
        .inc();
    m.request_seconds
        .get_or_create(&OperationLabels { operation })
        .observe(took.as_secs_f64());
}

/// One call into the token (`session`: `pool`, `inline` or `pinned`); `error` is its failure.
pub fn token_call(session: &'static str, took: Duration, error: Option<String>) {
    TOKEN_CALLS.fetch_add(1, Ordering::Relaxed);
    if error.is_some() {
        TOKEN_ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    let m = &*METRICS;
    let l = TokenCallLabels { session };
    m.token_calls.get_or_create(&l).inc();
    m.token_call_seconds
        .get_or_create(&l)
        .observe(took.as_secs_f64());
    if let Some(error) = error {
        m.token_errors
            .get_or_create(&TokenErrorLabels { error })
            .inc();
    }
}

/// An AES-GCM operation in the token, or the set-up of a session for them: `message`, `setup`
/// or `two_calls` (see `GcmLabels`).
pub fn token_gcm(call: &'static str) {
    METRICS.token_gcm.get_or_create(&GcmLabels { call }).inc();
}

pub fn token_reopened() {
    METRICS.token_reopens.inc();
}

pub fn token_failed_over() {
    METRICS.token_failovers.inc();
}

/// The token's state now (set when the metrics are read).
pub fn token_state(up: bool, sessions_in_use: usize, sessions_max: usize) {
    let m = &*METRICS;
    m.token_up.set(up as i64);
    m.sessions_in_use.set(sessions_in_use as i64);
    m.sessions_max.set(sessions_max as i64);
}

/// One cache lookup.
pub fn cache(cache: &'static str, hit: bool) {
    METRICS
        .cache
        .get_or_create(&CacheLabels {
            cache,
            result: if hit { "hit" } else { "miss" },
        })
        .inc();
}

/// One audited call's wait for its event to be durable.
pub fn audit_append(took: Duration) {
    METRICS.audit_append_seconds.observe(took.as_secs_f64());
}

/// One audit group commit of `events` events.
pub fn audit_batch(events: usize, ok: bool) {
    METRICS.audit_batch_events.observe(events as f64);
    if !ok {
        METRICS.audit_failures.inc();
    }
}

/// Blobs still under an older root key, as last counted.
pub fn rewrap_backlog(blobs: i64) {
    METRICS.rewrap_backlog.set(blobs);
}

/// Blobs re-wrapped under the current root key by this process.
pub fn rewrapped(blobs: usize) {
    METRICS.rewrapped.inc_by(blobs as u64);
}

/// Row MACs still under an older MAC key, as last counted.
pub fn remac_backlog(rows: i64) {
    METRICS.remac_backlog.set(rows);
}

/// Row MACs made again under the current MAC key by this process.
pub fn remacced(rows: usize) {
    METRICS.remacced.inc_by(rows as u64);
}

/// Everything, in the OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_are_encoded_with_their_labels() {
        request("Encrypt", "", Duration::from_micros(300));
        request(
            "Decrypt",
            "InvalidCiphertextException",
            Duration::from_micros(200),
        );
        token_call(
            "pool",
            Duration::from_micros(40),
            Some("GeneralError".into()),
        );
        cache("key_material", true);
        audit_append(Duration::from_micros(500));
        let text = encode();
        assert!(text.contains(r#"kms_requests_total{operation="Encrypt",error=""} "#));
        assert!(text.contains(
            r#"kms_requests_total{operation="Decrypt",error="InvalidCiphertextException"} "#
        ));
        assert!(
            text.contains(
                r#"kms_request_duration_seconds_bucket{le="0.0004",operation="Encrypt"}"#
            ) || text.contains(r#"kms_request_duration_seconds_bucket{operation="Encrypt",le="#)
        );
        assert!(text.contains(r#"kms_token_errors_total{error="GeneralError"} "#));
        assert!(text.contains(r#"kms_cache_lookups_total{cache="key_material",result="hit"} "#));
        assert!(text.contains("kms_audit_append_duration_seconds_count "));
        assert!(text.ends_with("# EOF\n"));
    }
}
