//! HTTP: AWS JSON 1.1 framing on `POST /`, SigV4, dispatch to one module per operation, and the
//! one error-to-wire mapping. Request and response bodies are never logged.

pub mod call;
pub mod error;
mod forwarded;
pub mod ops;
pub mod quota;
pub mod sigv4;
pub mod sts;
pub mod wire;

use bytes::Bytes;
use error::ApiError;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::domain::{Caller, Kms};
use crate::metrics::Stage;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const TARGET_PREFIX: &str = "TrentService.";
/// A client gets this long to send a request's headers, and again its body.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

pub struct ApiState {
    pub kms: Arc<Kms>,
    pub audit: Arc<crate::audit::Audit>,
    pub regions: Vec<String>,
    pub max_body_bytes: usize,
    pub sts_min_session_seconds: i64,
    /// Every request is answered within this, plus the time it spent generating key pairs
    /// (each up to `key_generation_timeout`; see `crate::deadline`).
    pub request_timeout: Duration,
    pub key_generation_timeout: Duration,
    pub quotas: quota::Quotas,
    /// Authentication failures per source address.
    pub auth_guard: Arc<quota::AuthGuard>,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed
    /// (`trusted_proxies`, parsed).
    pub trusted_proxies: Vec<forwarded::Block>,
    /// The External Key Store proxy API, when logical key stores are configured.
    pub xks: Option<Arc<crate::xks::XksState>>,
    /// The last readiness checks and when they ran (see [`ApiState::recent_readiness`]).
    pub readiness: tokio::sync::Mutex<Option<(Instant, Arc<crate::domain::Readiness>)>>,
}

/// How long one run of the readiness checks answers `/readyz`.
const READINESS_REUSE: Duration = Duration::from_secs(1);

impl ApiState {
    fn trusted_proxy(&self, ip: std::net::IpAddr) -> bool {
        forwarded::trusted(&self.trusted_proxies, ip)
    }

    /// The readiness checks (a database query, a call on the token's pinned session), run at
    /// most once a [`READINESS_REUSE`] however many ask: the API listener's `/readyz` is
    /// unauthenticated, and a flood of it would otherwise queue on the pinned session every
    /// unwrap needs. Callers that arrive during a run wait for it and take its answer.
    /// The operator's listener (`fresh`) runs them unless a run ended while it waited, and its
    /// run answers the public probes too; a run that found the service not ready answers only
    /// those that waited for it.
    async fn recent_readiness(&self, fresh: bool) -> Arc<crate::domain::Readiness> {
        let asked = Instant::now();
        let mut last = self.readiness.lock().await;
        if let Some((at, r)) = &*last {
            // A run that ended while this caller waited answers it, pass or fail; a passing
            // one answers the public probes for a while; a failing one is run again (its
            // recovery shows without delay).
            if *at >= asked || (!fresh && r.ready() && at.elapsed() < READINESS_REUSE) {
                return r.clone();
            }
        }
        let r = Arc::new(self.kms.readiness(READINESS_TIMEOUT).await);
        *last = Some((Instant::now(), r.clone()));
        r
    }
}

/// What a request turned out to be, and so how to answer it.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Protocol {
    #[default]
    Json,
    Query,
}

enum Reply {
    Json(serde_json::Value),
    Xml(String),
}

/// The TLS session a request came over (for `aws:SecureTransport` and the audit trail).
pub struct TlsDetails {
    pub version: String,
    pub cipher_suite: String,
    /// SHA-256 of the client certificate (hex), when the client presented one (mutual TLS).
    pub client_certificate: Option<String>,
    /// The client certificate itself (DER), for the console's certificate sign-in.
    pub client_certificate_der: Option<Vec<u8>>,
}

impl TlsDetails {
    /// What the trail records of it: version, cipher suite, client certificate's SHA-256.
    pub fn parts(&self) -> (&str, &str, Option<&str>) {
        (
            self.version.as_str(),
            self.cipher_suite.as_str(),
            self.client_certificate.as_deref(),
        )
    }
}

/// What the audit event of a call needs beyond its outcome.
#[derive(Default)]
struct CallInfo {
    identity: Option<crate::audit::Identity>,
    region: String,
    user_agent: String,
    request: Option<serde_json::Value>,
    operation: String,
    protocol: Protocol,
    /// An authentication failure over its source's budget: not audited one by one.
    suppressed: bool,
    /// The change record written with the call's change, which the call's event settles.
    change: Option<Arc<crate::audit::ChangeRecord>>,
    /// The keys the call resolved, which its event names.
    keys: Vec<String>,
    /// How long each stage of the call took.
    stages: crate::metrics::Stages,
}

/// Run operation `op` of the JSON API for `caller`: its intent first (for a call that may
/// change something), then its handler in the scope its writes commit in, noting the keys it
/// resolves for its event.
async fn run_operation(
    state: &ApiState,
    peer: std::net::IpAddr,
    info: &mut CallInfo,
    caller: &Caller,
    op: &str,
    body: &[u8],
    request_id: &str,
) -> Result<Reply, ApiError> {
    let change = record_intent(state, peer, info, op, request_id, false).await?;
    info.change = change.clone();
    // Boxed: the dispatch future is as large as the largest operation's, and each wrapper
    // below would otherwise copy all of it (a CPU profile of Encrypt at c=64 showed 9 % of
    // the server's time in memcpy under `Instrumented::poll`).
    let (result, keys) = crate::domain::noting_keys(crate::audit::in_change(
        change,
        Box::pin(ops::dispatch(op, &state.kms, caller, body)),
    ))
    .await;
    // Failed: another account's key is not named in the caller's event (the caller named an
    // alias of that account, say, and was refused; its key is for that account to show).
    info.keys = match &result {
        Err(_) => keys
            .into_iter()
            .filter(|arn| crate::audit::key_owner(arn) == Some(caller.account_id.as_str()))
            .collect(),
        Ok(_) => keys,
    };
    result.map(Reply::Json)
}

/// What a listener serves: the API (with the XKS proxy API), or the console.
#[derive(Clone)]
pub enum Serves {
    Api,
    Console(Arc<crate::console::Console>),
}

/// Serve until `shutdown` resolves, then stop accepting and drain in-flight requests (for at
/// most `drain`).
pub async fn serve(
    listener: TcpListener,
    state: Arc<ApiState>,
    serves: Serves,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(state.max_connections));
    let sources = quota::SourceConnections::default();
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // An IPv4 client of a dual-stack listener arrives as `::ffff:a.b.c.d`: it is
                // the IPv4 address it is, for `aws:SourceIp`, the trail and its share.
                let peer = peer.ip().to_canonical();
                // One slot per connection, held by its task; without a free slot the
                // connection is closed at once (the client sees it closed, not a hang).
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    refused += 1;
                    if refused.is_power_of_two() {
                        tracing::warn!(refused, limit = state.max_connections, "connection limit reached; closing new connections");
                    }
                    drop(stream);
                    continue;
                };
                // And one of its source's share, so that one client cannot hold them all (a
                // trusted proxy carries every client's connections: it has no share).
                let share = if state.trusted_proxy(peer) {
                    None
                } else {
                    let Some(share) = sources.take(peer, state.max_connections_per_source) else {
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(refused, limit = state.max_connections_per_source, "a source holds its share of connections; closing its new ones");
                        }
                        drop((slot, stream));
                        continue;
                    };
                    Some(share)
                };
                let slot = (slot, share);
                let _ = stream.set_nodelay(true);
                let (state, serves) = (state.clone(), serves.clone());
                let make_svc = move |tls: Option<Arc<TlsDetails>>| {
                    service_fn(move |req| {
                        let (state, serves, tls) = (state.clone(), serves.clone(), tls.clone());
                        async move {
                            // The client behind a trusted proxy.
                            let (peer, forwarded_https) =
                                forwarded::client(&state.trusted_proxies, peer, req.headers());
                            match serves {
                                Serves::Api => handle(state, peer, tls, forwarded_https, req).await,
                                Serves::Console(c) => Ok(crate::console::handle(&c, &state, peer, tls, forwarded_https, req).await),
                            }
                        }
                    })
                };
                let builder = {
                    let mut b = http1::Builder::new();
                    b.keep_alive(true).timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                    b
                };
                match &tls {
                    None => {
                        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), make_svc(None)));
                        tokio::spawn(async move {
                            let _ = conn.await;
                            drop(slot);
                        });
                    }
                    Some(acceptor) => {
                        // The handshake runs in the connection's task, bounded like a header read.
                        let acceptor = acceptor.clone();
                        let watcher = graceful.watcher();
                        tokio::spawn(async move {
                            let Ok(Ok(tls_stream)) = tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await else {
                                return;
                            };
                            let (_, session) = tls_stream.get_ref();
                            let details = TlsDetails {
                                version: match session.protocol_version() {
                                    Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".into(),
                                    Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".into(),
                                    Some(other) => format!("{other:?}"),
                                    None => "unknown".into(),
                                },
                                cipher_suite: session
                                    .negotiated_cipher_suite()
                                    .map(|c| format!("{:?}", c.suite()))
                                    .unwrap_or_default(),
                                client_certificate: session.peer_certificates().and_then(|c| c.first()).map(|c| {
                                    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, c.as_ref()))
                                }),
                                client_certificate_der: session
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| c.as_ref().to_vec()),
                            };
                            let svc = make_svc(Some(Arc::new(details)));
                            let conn = watcher.watch(builder.serve_connection(TokioIo::new(tls_stream), svc));
                            let _ = conn.await;
                            drop(slot);
                        });
                    }
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(drain) => tracing::warn!("drain timed out; closing remaining connections"),
    }
}

async fn handle(
    state: Arc<ApiState>,
    peer: std::net::IpAddr,
    tls: Option<Arc<TlsDetails>>,
    forwarded_https: bool,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(r) = probe(&state, &req, false).await {
        return Ok(r);
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    if let Some(xks) = state.xks.clone().filter(|x| x.serves(req.uri().path())) {
        let span = tracing::info_span!("xks", request_id = %request_id);
        return Ok(handle_xks(state, xks, peer, req, request_id)
            .instrument(span)
            .await);
    }
    // Every log line of the request, in any layer, carries its request id.
    let span = tracing::info_span!("request", request_id = %request_id);
    Ok(
        handle_api(state, peer, tls, forwarded_https, req, request_id)
            .instrument(span)
            .await,
    )
}

/// A request of the External Key Store proxy API (`crate::xks`), within the request timeout.
async fn handle_xks(
    state: Arc<ApiState>,
    xks: Arc<crate::xks::XksState>,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
    request_id: String,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let answered = tokio::time::timeout(state.request_timeout, async {
        let body = match read_body(body, state.max_body_bytes).await {
            Ok(b) => b,
            Err(_) => return (413, serde_json::json!({"errorName": "ValidationException"})),
        };
        crate::xks::handle(&state, &xks, peer, &parts, &body, &request_id).await
    })
    .await;
    let (status, body) = answered.unwrap_or_else(|_| {
        (
            503,
            serde_json::json!({"errorName": "DependencyTimeoutException"}),
        )
    });
    tracing::info!(
        status,
        micros = started.elapsed().as_micros() as u64,
        error = body.get("errorName").and_then(|e| e.as_str()).unwrap_or(""),
        "xks request"
    );
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&body).unwrap_or_default(),
        )))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// The metrics label of an operation name: one of the fixed set, else `Unknown`.
fn operation_label(op: &str) -> &'static str {
    crate::operations::find_any(op).map_or("Unknown", |o| o.name)
}

/// `GET /healthz` (the process answers) and `GET /readyz` (the token is logged in, the
/// database answers, its migrations are current): not signed, not audited, for load balancers
/// and orchestrators. `None` for every other request. With `detail`, a failing check carries
/// its error text; without it (the API listener, which anyone reaching the port may ask) only
/// whether it passed, and the text goes to the log.
async fn probe<B>(
    state: &ApiState,
    req: &Request<B>,
    detail: bool,
) -> Option<Response<Full<Bytes>>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return None;
    }
    match req.uri().path() {
        "/healthz" => {
            // The release and the schema it migrates to, for rolling upgrades.
            let mut r = plain(StatusCode::OK, "text/plain", "ok\n".into());
            r.headers_mut().insert(
                "x-kms-version",
                hyper::header::HeaderValue::from_static(crate::domain::VERSION),
            );
            Some(r)
        }
        "/readyz" => {
            let r = state.recent_readiness(detail).await;
            let report = |detail: bool| {
                let check = |c: &Result<(), String>| match c {
                    Ok(()) => serde_json::json!({"ok": true}),
                    Err(e) if detail => serde_json::json!({"ok": false, "error": e}),
                    Err(_) => serde_json::json!({"ok": false}),
                };
                let mut token = check(&r.token);
                token["label"] = serde_json::Value::String(r.token_label.clone());
                serde_json::json!({
                    "ready": r.ready(),
                    "token": token,
                    "database": check(&r.database),
                })
            };
            if !r.ready() {
                tracing::warn!(report = %report(true), "not ready");
            }
            let body = report(detail);
            let status = if r.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Some(plain(
                status,
                "application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            ))
        }
        _ => None,
    }
}

/// How long each readiness check may take.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

fn plain(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Serve the operator's endpoints on their own listener: `/metrics` (OpenMetrics text),
/// `/healthz` and `/readyz`. Unauthenticated: bind it where only the scraper reaches it.
pub async fn serve_metrics(
    listener: TcpListener,
    state: Arc<ApiState>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            if let Some(r) = probe(&state, &req, true).await {
                                return Ok::<_, Infallible>(r);
                            }
                            if req.uri().path() != "/metrics" {
                                return Ok(plain(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()));
                            }
                            let (in_use, max) = state.kms.hsm().sessions_in_use();
                            crate::metrics::token_state(state.kms.hsm().is_open(), in_use, max);
                            Ok(plain(StatusCode::OK, crate::metrics::CONTENT_TYPE, crate::metrics::encode().into_bytes()))
                        }
                    });
                    let mut b = http1::Builder::new();
                    b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
                    let _ = b.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
}

async fn handle_api(
    state: Arc<ApiState>,
    peer: std::net::IpAddr,
    tls: Option<Arc<TlsDetails>>,
    forwarded_https: bool,
    req: Request<Incoming>,
    request_id: String,
) -> Response<Full<Bytes>> {
    // Over TLS to this listener, or to the trusted proxy that forwarded the request.
    let secure = tls.is_some() || forwarded_https;
    let started = Instant::now();
    let mut info = CallInfo::default();
    let (answered, clock) = crate::deadline::within(
        started + state.request_timeout,
        state.key_generation_timeout,
        process(&state, peer, secure, req, &request_id, &mut info),
    )
    .await;
    let deadline = clock.deadline();
    let (op, protocol, result) = match answered {
        Ok(r) => r,
        // The database or the token did not answer in time; what was in flight is dropped
        // (an open transaction rolls back).
        Err(_) => {
            tracing::error!(
                operation = %info.operation,
                request_id = %request_id,
                timeout_ms = state.request_timeout.as_millis() as u64,
                "the call did not finish within request_timeout_ms (the database or the token did not answer: no host taking writes, or commits waiting for a synchronous standby that is gone); answered DependencyTimeoutException"
            );
            (
                info.operation.clone(),
                info.protocol,
                Err(ApiError::Kms(crate::domain::KmsError::DependencyTimeout)),
            )
        }
    };
    // The event is durable before the response goes out; a call that cannot be recorded (in
    // what is left of the deadline, and at least a moment) fails.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(250));
    let stage = Instant::now();
    let recorded = if info.suppressed {
        // Over its source's budget of authentication failures: counted for the summary
        // event, not recorded one by one.
        Ok(Ok(()))
    } else {
        tokio::time::timeout(
            left,
            audit(
                &state,
                peer,
                tls.as_deref(),
                &request_id,
                &info,
                protocol,
                &result,
            ),
        )
        .await
    };
    let stage = info.stages.ended(Stage::Record, stage);
    // A dependency failed (the database, or a trail it cannot append to): the caller may
    // retry. A call that changes something already has its intent in the trail.
    let result = match recorded {
        Ok(Ok(())) => result,
        Ok(Err(e)) => {
            tracing::error!(operation = %op, request_id = %request_id, error = %e, "the call's event could not be recorded; the call is answered as failed");
            Err(ApiError::Kms(crate::domain::KmsError::DependencyTimeout))
        }
        Err(_) => {
            tracing::error!(operation = %op, request_id = %request_id, "the call's event could not be recorded in time; the call is answered as failed");
            Err(ApiError::Kms(crate::domain::KmsError::DependencyTimeout))
        }
    };
    let error = match &result {
        Ok(_) => "",
        Err(e) => e.wire().1,
    };
    let (status, body) = match result {
        Ok(Reply::Json(v)) => (StatusCode::OK, serde_json::to_vec(&v).unwrap_or_default()),
        Ok(Reply::Xml(x)) => (StatusCode::OK, x.into_bytes()),
        Err(e) if protocol == Protocol::Query => {
            if let Some(detail) = e.internal_detail() {
                tracing::error!(operation = %op, detail, "internal error");
            }
            let (status, body) = sts::error_body(&e, &request_id);
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body.into_bytes(),
            )
        }
        Err(e) => {
            let (status, kind, message) = e.wire();
            if let Some(detail) = e.internal_detail() {
                tracing::error!(operation = %op, detail, "internal error");
            }
            // AWS sends some errors with no message at all (KMSInvalidSignatureException,
            // KMSInvalidMacException, InvalidCiphertextException): no member, not "".
            let body = if message.is_empty() {
                serde_json::json!({ "__type": kind })
            } else {
                serde_json::json!({ "__type": kind, "message": message })
            };
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
    };
    info.stages.ended(Stage::Respond, stage);
    let took = started.elapsed();
    let label = operation_label(&op);
    crate::metrics::request(label, error, took);
    crate::metrics::stages(label, &info.stages);
    tracing::info!(
        operation = %op,
        status = status.as_u16(),
        error,
        micros = took.as_micros() as u64,
        "request"
    );
    Response::builder()
        .status(status)
        .header(
            "content-type",
            if protocol == Protocol::Query {
                "text/xml"
            } else {
                CONTENT_TYPE
            },
        )
        .header("x-amzn-RequestId", &request_id)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Before a call that may change something runs, its intent goes into the trail: a trail that
/// cannot take it refuses the call (`DependencyTimeoutException`) before anything changes.
/// Returns the call's change record, which every write transaction of the call commits with
/// its change (see [`crate::audit::ChangeRecord`]).
async fn record_intent(
    state: &ApiState,
    peer: std::net::IpAddr,
    info: &CallInfo,
    operation: &str,
    request_id: &str,
    sts: bool,
) -> Result<Option<Arc<crate::audit::ChangeRecord>>, ApiError> {
    if !crate::audit::changes_state(operation) {
        return Ok(None);
    }
    let call = crate::audit::ApiCall {
        operation,
        sts,
        region: &info.region,
        source_ip: &peer.to_string(),
        user_agent: &info.user_agent,
        identity: info.identity.as_ref(),
        request: info.request.as_ref(),
        response: None,
        error: None,
        request_id,
        tls: None,
        time: chrono::Utc::now(),
        keys: &[],
    };
    let refuse = |e: crate::audit::AuditError| {
        tracing::error!(operation, error = %e, "the audit trail cannot take the call's intent; the call is refused before it changes anything");
        ApiError::Kms(crate::domain::KmsError::DependencyTimeout)
    };
    let change = state
        .audit
        .change_record(crate::audit::committed_event(&call))
        .await
        .map_err(refuse)?;
    state
        .audit
        .record(crate::audit::intent_event(&call))
        .await
        .map_err(refuse)?;
    Ok(change)
}

async fn audit(
    state: &ApiState,
    peer: std::net::IpAddr,
    tls: Option<&TlsDetails>,
    request_id: &str,
    info: &CallInfo,
    protocol: Protocol,
    result: &Result<Reply, ApiError>,
) -> Result<(), crate::audit::AuditError> {
    let error = match result {
        Ok(_) => None,
        Err(e) if protocol == Protocol::Query => {
            let (_, kind, message) = sts::wire(e);
            Some((kind, message))
        }
        Err(e) => {
            let (_, kind, message) = e.wire();
            Some((kind, message))
        }
    };
    let response = match result {
        Ok(Reply::Json(v)) => Some(v),
        _ => None,
    };
    let operation = if info.operation.is_empty() {
        "-"
    } else {
        info.operation.as_str()
    };
    let event = crate::audit::api_event(&crate::audit::ApiCall {
        operation,
        sts: protocol == Protocol::Query,
        region: &info.region,
        source_ip: &peer.to_string(),
        user_agent: &info.user_agent,
        identity: info.identity.as_ref(),
        request: info.request.as_ref(),
        response,
        error: error.as_ref().map(|(k, m)| (*k, m.as_str())),
        request_id,
        tls: tls.map(TlsDetails::parts),
        time: chrono::Utc::now(),
        keys: &info.keys,
    });
    let (event, settles) = match &info.change {
        Some(c) => (
            crate::audit::with_generations(crate::audit::settling(event, &c.event), &c.written),
            Some(c.event.event_id),
        ),
        None => (event, None),
    };
    state.audit.record_settling(event, settles).await
}

/// A body somewhat over the limit is read and discarded, so that the client gets its 400
/// instead of a connection reset while it is still sending; a body far over it is cut off.
const DRAIN_FACTOR: usize = 16;

pub(crate) async fn read_body(mut body: Incoming, max: usize) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|_| ApiError::Serialization("The request body could not be read.".into()))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= max {
                buf.extend_from_slice(&data);
            } else if total > max.saturating_mul(DRAIN_FACTOR) {
                return Err(ApiError::RequestTooLarge(max));
            }
        }
    }
    if total > max {
        return Err(ApiError::RequestTooLarge(max));
    }
    Ok(buf.freeze())
}

/// The request's body, once the request is one the service takes: `POST /`, within the size
/// limit, received within the body timeout (and well within the call's deadline, so that a
/// client that sends slowly is told so, not answered as if a dependency had timed out).
async fn receive(
    state: &ApiState,
    parts: &hyper::http::request::Parts,
    body: Incoming,
) -> Result<Bytes, ApiError> {
    if parts.method != hyper::Method::POST || parts.uri.path() != "/" {
        // Method and path are the client's: only their beginning is repeated.
        let method: String = parts.method.as_str().chars().take(16).collect();
        let path: String = parts.uri.path().chars().take(128).collect();
        return Err(ApiError::UnknownOperation(format!(
            "The service accepts only POST / (got {method} {path})"
        )));
    }
    if let Some(len) = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > state.max_body_bytes.saturating_mul(DRAIN_FACTOR) {
            return Err(ApiError::RequestTooLarge(state.max_body_bytes));
        }
    }
    let limit = BODY_READ_TIMEOUT.min(state.request_timeout / 2);
    tokio::time::timeout(limit, read_body(body, state.max_body_bytes))
        .await
        .map_err(|_| ApiError::Serialization("The request body was not received in time.".into()))?
}

async fn process(
    state: &ApiState,
    peer: std::net::IpAddr,
    secure: bool,
    req: Request<Incoming>,
    request_id: &str,
    info: &mut CallInfo,
) -> (String, Protocol, Result<Reply, ApiError>) {
    let (parts, body) = req.into_parts();
    info.user_agent = parts
        .headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    let ct = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    let protocol = if ct.starts_with(sts::CONTENT_TYPE) {
        Protocol::Query
    } else {
        Protocol::Json
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let op = target.strip_prefix(TARGET_PREFIX).unwrap_or("").to_string();
    // Only a known operation name is logged; the header is the client's to fill.
    let label = if crate::operations::find(&op).is_some() {
        op.clone()
    } else {
        "-".to_string()
    };
    info.protocol = protocol;
    if protocol == Protocol::Json {
        info.operation = label.clone();
    }
    let result = async {
        let stage = Instant::now();
        // What fails before the signature is checked (no request at all, too large, too slow)
        // counts against its source's budget like a failed signature: an unauthenticated
        // flood of them is neither recorded one by one nor worked on once over the budget.
        // A source that keeps failing authentication is refused before any work (the
        // signature check may read the database).
        if state.auth_guard.blocked(peer) {
            info.suppressed = true;
            return Err(ApiError::Kms(crate::domain::KmsError::Throttled));
        }
        let body = receive(state, &parts, body).await.inspect_err(|_| {
            if !state.auth_guard.failed(peer) {
                info.suppressed = true;
            }
        })?;
        let stage = info.stages.ended(Stage::Receive, stage);
        let verified = sigv4::verify(
            &state.kms.credentials,
            if protocol == Protocol::Query {
                "sts"
            } else {
                "kms"
            },
            &state.regions,
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            &parts.headers,
            &body,
            chrono::Utc::now(),
        )
        .await
        .inspect_err(|e| {
            if e.is_authentication_failure() && !state.auth_guard.failed(peer) {
                info.suppressed = true;
            }
        })?;
        let stage = info.stages.ended(Stage::Authenticate, stage);
        info.region = verified.region.clone();
        info.identity = Some(verified.key.identity());
        // A JSON request that cannot be read whole: refused once it has counted against the
        // account's share, as any call.
        let mut unreadable: Option<ApiError> = None;
        info.request = if protocol == Protocol::Query {
            let params: serde_json::Map<String, serde_json::Value> = form_urlencoded::parse(&body)
                .into_owned()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            // Only an action STS has names the event: the trail's readers take some event
            // names as the service's own (`DeleteKey`, `GrantEnded`, …), and the caller fills
            // this member.
            info.operation = params
                .get("Action")
                .and_then(|v| v.as_str())
                .filter(|a| sts::ACTIONS.contains(a))
                .unwrap_or("-")
                .to_string();
            Some(serde_json::Value::Object(params))
        } else if wire::json_depth(&body) > wire::MAX_JSON_DEPTH {
            unreadable = Some(ApiError::Serialization(format!(
                "Malformed JSON: the request nests deeper than {} levels.",
                wire::MAX_JSON_DEPTH
            )));
            None
        } else if body.iter().all(|b| b.is_ascii_whitespace()) {
            None
        } else {
            // Read whole, as the trail keeps it: a request the handler's own reading would take
            // (it skips members it does not know without reading their numbers or escapes) but
            // that cannot be read whole would leave its event without its parameters.
            match wire::parse::<serde_json::Value>(&body) {
                Ok(v) => Some(v),
                Err(e) => {
                    unreadable = Some(e);
                    None
                }
            }
        };
        let caller = Caller {
            account_id: verified.key.account_id.clone(),
            principal_arn: verified.key.principal_arn.clone(),
            region: verified.region.clone(),
            source_ip: Some(peer.to_string()),
            grant_tokens: Vec::new(),
            role_arn: verified.key.role_arn.clone(),
            request_alias: None,
            access_key_id: verified.key.access_key_id.clone(),
            secure_transport: secure,
            re_encrypt_on_same_key: None,
        };
        if protocol == Protocol::Query {
            // AssumeRole counts against the management share like any other call.
            if !state
                .quotas
                .allow(&caller.account_id, &caller.region, "AssumeRole")
            {
                return Err(ApiError::Kms(crate::domain::KmsError::Throttled));
            }
            let action = info.operation.clone();
            let change = record_intent(state, peer, info, &action, request_id, true).await?;
            info.change = change.clone();
            return crate::audit::in_change(change, sts::handle(state, &caller, &body, request_id))
                .await
                .map(Reply::Xml);
        }
        // The account's share is taken before anything else is asked of the request: a call
        // refused for its operation or its Content-Type is recorded in the trail too, and
        // counts like any other (one of the management share).
        if !state.quotas.allow(&caller.account_id, &caller.region, &op) {
            return Err(ApiError::Kms(crate::domain::KmsError::Throttled));
        }
        if crate::operations::find(&op).is_none() {
            return Err(ApiError::UnknownOperation(if target.is_empty() {
                "Missing X-Amz-Target header".into()
            } else {
                format!(
                    "Unknown operation {}",
                    target.chars().take(128).collect::<String>()
                )
            }));
        }
        let ct = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct.trim().starts_with(CONTENT_TYPE) {
            return Err(ApiError::UnknownOperation(format!(
                "Content-Type must be {CONTENT_TYPE} (got '{}')",
                ct.chars().take(100).collect::<String>()
            )));
        }
        if let Some(e) = unreadable {
            return Err(e);
        }
        let r = run_operation(state, peer, info, &caller, &op, &body, request_id).await;
        info.stages.ended(Stage::Operation, stage);
        r
    }
    .await;
    if protocol == Protocol::Json {
        info.operation = label.clone();
    }
    let label = if protocol == Protocol::Query {
        "sts".to_string()
    } else {
        label
    };
    (label, protocol, result)
}
