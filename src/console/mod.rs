//! The console for operators and auditors (`console_listen`): pages rendered on the server,
//! signed in with an access key of this service, every page authorized by the policy engine as
//! the signed-in principal (the domain's own calls, as the API makes them) and recorded in the
//! audit trail like an API call.
//!
//! Defences, each on every response or request: a strict Content-Security-Policy (no script,
//! no inline style, `frame-ancestors 'none'`), `nosniff`, no caching, no referrer to another
//! site; the session
//! cookie `HttpOnly`, `SameSite=Strict`, `Secure` under TLS, short-lived; every change is a
//! POST carrying the session's CSRF token, from this origin only (`Origin`,
//! `Sec-Fetch-Site`).

mod audit;
pub mod certificate;
mod operator;
pub mod pages;
pub mod session;

use crate::api::call::{call_as, OnBehalf};
use crate::api::error::ApiError;
use crate::api::{ApiState, TlsDetails};
use crate::domain::inventory::{InventoryRow, DEFAULT_CRYPTOPERIOD_DAYS, KEYS_AT_ONCE};
use crate::domain::Caller;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use session::{Session, Sessions, COOKIE, HOST_COOKIE};
use std::sync::Arc;

/// At most this many keys are shown on one inventory page...
const KEYS_PER_PAGE: usize = 100;
/// ...listed from at most this many when a filter leaves some out.
const KEYS_SCANNED: usize = 1000;

/// Trail searches and filtered inventories that may run at once on one node.
const SEARCHES: usize = 4;
/// The largest form the console takes.
const MAX_FORM: usize = 16 * 1024;
/// How much of a client's header a console event or log line keeps.
const HEADER_KEPT: usize = 256;

/// The console of one node: its sessions.
pub struct Console {
    pub sessions: Sessions,
    /// Whether a client certificate may sign in (`console_certificate_sign_in`).
    certificates: bool,
    /// Held by the one verification, export or report running on this node.
    heavy: tokio::sync::Mutex<()>,
    /// Taken by each trail search and each filtered inventory running on this node: each
    /// holds a database connection for up to its budget, and the API's calls need the rest.
    searches: tokio::sync::Semaphore,
    /// POSTs from another origin refused on this node (logged at the 1st, 2nd, 4th…).
    refused_posts: std::sync::atomic::AtomicU64,
    /// What the operator view's charts are drawn from.
    pub samples: Arc<operator::Samples>,
}

impl Console {
    pub fn new(session_lifetime: std::time::Duration, certificates: bool) -> Console {
        Console {
            sessions: Sessions::new(session_lifetime),
            certificates,
            heavy: tokio::sync::Mutex::new(()),
            searches: tokio::sync::Semaphore::new(SEARCHES),
            refused_posts: std::sync::atomic::AtomicU64::new(0),
            samples: Arc::default(),
        }
    }
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A response with the console's headers.
fn respond(status: StatusCode, content_type: &str) -> http::response::Builder {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null`
        // with its own forms' POSTs, which the same-origin check must then refuse (found by
        // browser::an_auditor_walks_through_the_console_in_chromium). No URL of the console
        // leaves it as a referrer either way.
        .header("referrer-policy", "same-origin")
        .header("cache-control", "no-store")
}

fn page(status: StatusCode, markup: maud::Markup) -> Response<Full<Bytes>> {
    let body = markup.into_string().into_bytes();
    respond(status, "text/html; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Full<Bytes>> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain").header("location", to);
    if let Some(c) = cookie {
        r = r.header("set-cookie", c);
    }
    r.body(Full::new(Bytes::new())).unwrap_or_default()
}

/// The `Set-Cookie` of a session (`value` empty: the cookie cleared). Over TLS it is a
/// `__Host-` cookie ([`HOST_COOKIE`]), which a browser requires to be `Secure` with `Path=/`.
fn set_cookie(value: &str, secure: bool, lifetime: std::time::Duration) -> String {
    let max_age = if value.is_empty() {
        0
    } else {
        lifetime.as_secs()
    };
    let (name, path) = if secure {
        (HOST_COOKIE, "/; Secure")
    } else {
        (COOKIE, "/console")
    };
    format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict; Max-Age={max_age}")
}

/// The session cookie the request carries, if any: over TLS only the `__Host-` one.
fn cookie_of(req: &hyper::http::request::Parts, secure: bool) -> Option<String> {
    let name = if secure { HOST_COOKIE } else { COOKIE };
    req.headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether a POST comes from a page of this console: a browser's `Sec-Fetch-Site` and
/// `Origin`, where sent, name this origin.
fn same_origin(req: &hyper::http::request::Parts) -> bool {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) == Some(host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// What an event of the console records of its request.
struct Call<'a> {
    api: &'a ApiState,
    peer: std::net::IpAddr,
    tls: Option<&'a TlsDetails>,
    /// Over TLS, to this listener or to the trusted proxy that forwarded the request.
    secure: bool,
    user_agent: String,
    request_id: String,
}

impl Call<'_> {
    /// Record `operation` (an API operation's name, or `ConsoleLogin`) by `who` in the trail,
    /// as the API records its calls; false if the trail could not take it.
    async fn record(
        &self,
        operation: &str,
        who: Option<&Session>,
        request: serde_json::Value,
        error: Option<&str>,
    ) -> bool {
        let identity = who.map(|s| s.caller(&self.peer.to_string(), self.secure).identity());
        let region = who
            .map(|s| s.region.clone())
            .or_else(|| self.api.regions.first().cloned())
            .unwrap_or_default();
        let event = crate::audit::api_event(&crate::audit::ApiCall {
            operation,
            sts: false,
            region: &region,
            source_ip: &self.peer.to_string(),
            user_agent: &self.user_agent,
            identity: identity.as_ref(),
            request: Some(&request),
            response: None,
            error: error.map(|e| (e, "")),
            request_id: &self.request_id,
            tls: self.tls.map(TlsDetails::parts),
            time: chrono::Utc::now(),
            keys: &[],
        });
        match self.api.audit.record(event).await {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(error = %e, operation, "a console event could not be recorded");
                false
            }
        }
    }
}

/// Whether a signed-in request's fetch metadata allow it: from this console's own pages, or
/// typed in (`Sec-Fetch-Site` `same-origin` or `none`, or a client that sends none); from
/// elsewhere, only a link followed to a page that costs no more than a page (not an export, a
/// report, an access review or a search). A session cookie is `SameSite=Strict`, but the
/// browser still sends it to requests from the same site: a sibling host's page must not be
/// able to make an auditor's browser run the node's costliest work in the auditor's name.
fn fetch_allowed(req: &hyper::http::request::Parts) -> bool {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    match header("sec-fetch-site") {
        None | Some("same-origin" | "none") => return true,
        Some(_) => {}
    }
    let path = req.uri.path();
    let costly = path.starts_with("/console/audit")
        || path.starts_with("/console/reports")
        || path.ends_with("/access")
        || req.uri.query().is_some_and(|q| !q.is_empty());
    req.method == hyper::Method::GET
        && header("sec-fetch-mode") == Some("navigate")
        && header("sec-fetch-dest").is_none_or(|d| d == "document")
        && !costly
}

/// Answer one request of the console listener.
pub async fn handle(
    console: &Console,
    api: &ApiState,
    peer: std::net::IpAddr,
    tls: Option<Arc<TlsDetails>>,
    forwarded_https: bool,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    // Over TLS to this listener, or to the trusted proxy that forwarded the request.
    let secure = tls.is_some() || forwarded_https;
    let call = Call {
        api,
        peer,
        tls: tls.as_deref(),
        secure,
        user_agent: format!(
            "kms-console ({})",
            parts
                .headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .chars()
                .take(HEADER_KEPT)
                .collect::<String>()
        ),
        request_id: uuid::Uuid::new_v4().to_string(),
    };
    let path = parts.uri.path().to_string();
    let cookie = cookie_of(&parts, secure);
    let certificate = tls.as_deref().and_then(|t| t.client_certificate.as_deref());
    let session = match &cookie {
        Some(c) => console.sessions.find(api, c, certificate).await,
        None => None,
    };
    // The access key the connection's client certificate names, where it may sign in: read
    // only by the sign-in pages (a certificate is not parsed on every request).
    let offer = || {
        tls.as_deref()
            .and_then(|t| t.client_certificate_der.as_deref())
            .filter(|_| console.certificates)
            .and_then(certificate::access_key_of)
    };
    let post = parts.method == hyper::Method::POST;
    if post && !same_origin(&parts) {
        let refused =
            1 + (console.refused_posts).fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if refused.is_power_of_two() {
            // The client's own headers: only their beginning.
            let header = |n: &str| {
                let v = parts.headers.get(n).and_then(|v| v.to_str().ok());
                v.unwrap_or("")
                    .chars()
                    .take(HEADER_KEPT)
                    .collect::<String>()
            };
            tracing::warn!(
                refused,
                origin = header("origin"),
                host = header("host"),
                sec_fetch_site = header("sec-fetch-site"),
                path = %path.chars().take(HEADER_KEPT).collect::<String>(),
                "console POST from another origin refused (logged at the 1st, 2nd, 4th… refusal)"
            );
        }
        return page(StatusCode::FORBIDDEN, pages::not_found(session.as_ref()));
    }
    if session.is_some() && !fetch_allowed(&parts) {
        return page(StatusCode::FORBIDDEN, pages::not_found(session.as_ref()));
    }
    let form = if post {
        let declared = (parts.headers.get("content-length"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > MAX_FORM) {
            return page(
                StatusCode::PAYLOAD_TOO_LARGE,
                pages::sign_in(offer().as_deref(), None),
            );
        }
        // A client that sends its form slowly holds a connection only this long.
        let limit = crate::api::BODY_READ_TIMEOUT.min(api.request_timeout / 2);
        match tokio::time::timeout(limit, crate::api::read_body(body, MAX_FORM)).await {
            Ok(Ok(b)) => form_urlencoded::parse(&b).into_owned().collect::<Vec<_>>(),
            Ok(Err(_)) => {
                return page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    pages::sign_in(offer().as_deref(), None),
                )
            }
            Err(_) => {
                return page(
                    StatusCode::REQUEST_TIMEOUT,
                    pages::sign_in(offer().as_deref(), None),
                )
            }
        }
    } else {
        Vec::new()
    };
    match (post, path.as_str()) {
        (false, "/console/style.css") => respond(StatusCode::OK, "text/css")
            .body(Full::new(Bytes::from_static(pages::STYLE.as_bytes())))
            .unwrap_or_default(),
        (false, "/" | "/console" | "/console/") => match session {
            Some(_) => redirect("/console/keys", None),
            None => redirect("/console/sign-in", None),
        },
        (false, "/console/sign-in") => {
            page(StatusCode::OK, pages::sign_in(offer().as_deref(), None))
        }
        (true, "/console/sign-in" | "/console/sign-in-certificate") => {
            let offer = offer();
            if api.auth_guard.blocked(peer) {
                let error = "Too many failed sign-ins from here; try again later.";
                return page(
                    StatusCode::TOO_MANY_REQUESTS,
                    pages::sign_in(offer.as_deref(), Some(error)),
                );
            }
            let (id, opened, refused) = if path == "/console/sign-in" {
                let id = field(&form, "access_key_id").trim().to_string();
                let secret = field(&form, "secret_access_key");
                let opened = console.sessions.sign_in(api, &id, secret).await;
                (id, opened, "The access key ID or the secret is not valid.")
            } else {
                // Only where the connection holds a certificate naming an access key, and
                // certificate sign-in is on.
                let (Some(id), Some(fingerprint)) = (offer.clone(), certificate) else {
                    return page(StatusCode::FORBIDDEN, pages::not_found(None));
                };
                let opened = (console.sessions)
                    .sign_in_certificate(api, &id, fingerprint)
                    .await;
                (
                    id,
                    opened,
                    "The certificate's access key is not an active access key.",
                )
            };
            match opened {
                Err(session::SignInRefused::Throttled) => {
                    let error = "Too many requests for this account; try again later.";
                    page(
                        StatusCode::TOO_MANY_REQUESTS,
                        pages::sign_in(offer.as_deref(), Some(error)),
                    )
                }
                Ok((value, s)) => {
                    let recorded = call
                        .record("ConsoleLogin", Some(&s), serde_json::json!({}), None)
                        .await;
                    if !recorded {
                        console.sessions.end(&value);
                        let error = "The audit trail cannot record the sign-in; try again later.";
                        return page(
                            StatusCode::SERVICE_UNAVAILABLE,
                            pages::sign_in(offer.as_deref(), Some(error)),
                        );
                    }
                    let lifetime = console.sessions.lifetime();
                    redirect("/console/keys", Some(set_cookie(&value, secure, lifetime)))
                }
                Err(_) => {
                    // The form is anyone's to fill: an id that is not one (a line break to
                    // forge log lines, a secret pasted in the wrong field) is not logged.
                    let shown = if crate::domain::credentials::valid_access_key_id(&id) {
                        id.as_str()
                    } else {
                        "(not an access key id)"
                    };
                    tracing::warn!(access_key_id = shown, "console sign-in refused");
                    if api.auth_guard.failed(peer) {
                        call.record(
                            "ConsoleLogin",
                            None,
                            serde_json::json!({}),
                            Some("AuthenticationFailed"),
                        )
                        .await;
                    }
                    page(
                        StatusCode::UNAUTHORIZED,
                        pages::sign_in(offer.as_deref(), Some(refused)),
                    )
                }
            }
        }
        (_, _) if session.is_none() => redirect("/console/sign-in", None),
        (true, _) if !csrf_matches(field(&form, "csrf"), session.as_ref()) => {
            page(StatusCode::FORBIDDEN, pages::not_found(session.as_ref()))
        }
        // Signing out is never throttled.
        (true, "/console/sign-out") => {
            if let Some(c) = &cookie {
                console.sessions.end(c);
            }
            redirect(
                "/console/sign-in",
                Some(set_cookie("", secure, console.sessions.lifetime())),
            )
        }
        // Pages read the trail, inventories and policies straight from the domain: each
        // signed-in request takes one request of its account's management rate, as an API
        // call does, so one account's auditor cannot keep the database busy for every account.
        (_, _)
            if !session
                .as_ref()
                .is_some_and(|s| api.quotas.allow(&s.account_id, &s.region, "ConsolePage")) =>
        {
            page(
                StatusCode::TOO_MANY_REQUESTS,
                pages::throttled(session.as_ref()),
            )
        }
        (false, "/console/keys") => {
            let s = session.expect("checked above");
            let caller = s.caller(&peer.to_string(), secure);
            let query = parts.uri.query().unwrap_or("");
            let filter = pages::KeyFilter::from_query(query);
            let marker = Some(query_value(query, "marker")).filter(|m| key_id_shaped(m));
            // A filtered inventory reads up to a thousand keys: one of the node's searches.
            let rows = key_rows(api, &caller, &filter, marker);
            let listed = if filter.filters() {
                let Some(listed) = search(console, api, rows).await else {
                    return page(StatusCode::SERVICE_UNAVAILABLE, pages::throttled(Some(&s)));
                };
                listed
            } else {
                // Unfiltered, it still reads past keys the principal may not describe: within
                // the call's deadline.
                match tokio::time::timeout(api.request_timeout, rows).await {
                    Ok(listed) => listed,
                    Err(_) => {
                        return page(StatusCode::SERVICE_UNAVAILABLE, pages::throttled(Some(&s)))
                    }
                }
            };
            let (listed, error) = match listed {
                Ok(l) => (Some(l), None),
                Err(e) => (None, Some(crate::api::error::ApiError::from(e).wire().1)),
            };
            if !call
                .record("ListKeys", Some(&s), serde_json::json!({}), error)
                .await
            {
                return page(StatusCode::SERVICE_UNAVAILABLE, pages::not_found(Some(&s)));
            }
            match listed {
                Some(rows) => page(StatusCode::OK, pages::keys(&s, &filter, &rows)),
                None => page(
                    StatusCode::FORBIDDEN,
                    pages::keys(&s, &filter, &pages::KeyRows::default()),
                ),
            }
        }
        (false, "/console/operator") => {
            let s = session.expect("checked above");
            let caller = s.caller(&peer.to_string(), secure);
            let nodes = (api.kms.nodes_seen(&caller).await).map_err(|e| ApiError::from(e).wire().1);
            let error = nodes.as_ref().err().copied();
            if !call
                .record("ConsoleOperatorView", Some(&s), json!({}), error)
                .await
            {
                return page(StatusCode::SERVICE_UNAVAILABLE, pages::not_found(Some(&s)));
            }
            match nodes {
                Ok(nodes) => {
                    let view = operator::gather(api, &s, nodes).await;
                    page(StatusCode::OK, operator::page(&s, &view, &console.samples))
                }
                Err(_) => page(StatusCode::FORBIDDEN, pages::not_found(Some(&s))),
            }
        }
        (false, "/console/simulate") => {
            let s = session.expect("checked above");
            let caller = s.caller(&peer.to_string(), secure);
            let q = |name: &str| query_value(parts.uri.query().unwrap_or(""), name);
            let mut sim = pages::SimulatorPage {
                principal: q("principal"),
                action: q("action"),
                key: q("key"),
                context: q("context"),
                answer: None,
            };
            if !sim.principal.is_empty() {
                let answer = simulate(api, &caller, &sim).await;
                let request =
                    json!({ "KeyId": sim.key, "Action": sim.action, "Principal": sim.principal });
                let error = answer.as_ref().err().map(|(kind, _)| *kind);
                if !call
                    .record("ConsoleSimulatePolicy", Some(&s), request, error)
                    .await
                {
                    return page(StatusCode::SERVICE_UNAVAILABLE, pages::not_found(Some(&s)));
                }
                sim.answer = Some(answer.map_err(|(_, m)| m));
            } else {
                sim.action = "kms:Decrypt".into();
            }
            page(StatusCode::OK, pages::simulator(&s, &sim))
        }
        (false, p) if p == "/console/trail" || p.starts_with("/console/trail/") => {
            let s = session.expect("checked above");
            let caller = s.caller(&peer.to_string(), secure);
            let query = parts.uri.query().unwrap_or("");
            let one = p.strip_prefix("/console/trail/").map(|n| n.parse::<i64>());
            let (markup, error) = match one {
                Some(Ok(seq)) => trail_event(api, &caller, &s, seq).await,
                Some(Err(_)) => (pages::not_found(Some(&s)), Some("NotFoundException")),
                None => match search(console, api, trail_page(api, &caller, &s, query)).await {
                    Some(answer) => answer,
                    None => {
                        return page(StatusCode::SERVICE_UNAVAILABLE, pages::throttled(Some(&s)))
                    }
                },
            };
            let request = json!({ "Query": query, "Path": p });
            if !call.record("LookupEvents", Some(&s), request, error).await {
                return page(StatusCode::SERVICE_UNAVAILABLE, pages::not_found(Some(&s)));
            }
            let status = match error {
                None => StatusCode::OK,
                Some("NotFoundException") => StatusCode::NOT_FOUND,
                Some(_) => StatusCode::FORBIDDEN,
            };
            page(status, markup)
        }
        (_, p) if p.starts_with("/console/audit") || p.starts_with("/console/reports") => {
            let s = session.expect("checked above");
            let caller = s.caller(&peer.to_string(), secure);
            let query = parts.uri.query().unwrap_or("");
            let answer = audit::handle(console, &call, &s, &caller, post, p, query).await;
            answer.unwrap_or_else(|| page(StatusCode::NOT_FOUND, pages::not_found(Some(&s))))
        }
        (_, p) if p.starts_with("/console/keys/") => {
            let s = session.expect("checked above");
            let caller = s.caller(&peer.to_string(), secure);
            let who = OnBehalf {
                caller: &caller,
                peer,
                tls: tls.as_deref(),
                user_agent: &call.user_agent,
            };
            let rest = &p["/console/keys/".len()..];
            let (id, act) = rest.split_once('/').unwrap_or((rest, ""));
            if !key_id_shaped(id) {
                return page(StatusCode::NOT_FOUND, pages::not_found(Some(&s)));
            }
            if post {
                let done = act_on_key(api, &who, id, act, &form).await;
                let to = match done {
                    Ok(op) => format!("/console/keys/{id}?done={op}"),
                    Err(e) => format!("/console/keys/{id}?error={e}"),
                };
                return redirect(&to, None);
            }
            if act == "access" {
                // Up to a thousand principals, each asked nine actions: one review at a time
                // on this node, as the trail's verification and exports are.
                let Ok(_one) = console.heavy.try_lock() else {
                    return page(StatusCode::SERVICE_UNAVAILABLE, pages::throttled(Some(&s)));
                };
                let review = (api.kms.access_review(&caller, id).await)
                    .map_err(|e| ApiError::from(e).wire().1);
                let error = review.as_ref().err().copied();
                let request = json!({ "KeyId": id });
                if !call
                    .record("ConsoleAccessReview", Some(&s), request, error)
                    .await
                {
                    return page(StatusCode::SERVICE_UNAVAILABLE, pages::not_found(Some(&s)));
                }
                return match review {
                    Ok(r) => page(StatusCode::OK, pages::access(&s, id, &r)),
                    Err(_) => page(StatusCode::NOT_FOUND, pages::not_found(Some(&s))),
                };
            }
            if !act.is_empty() {
                return page(StatusCode::NOT_FOUND, pages::not_found(Some(&s)));
            }
            match key_page(api, &who, id, parts.uri.query().unwrap_or("")).await {
                Some(k) => page(StatusCode::OK, pages::key(&s, &k)),
                // Not there, or not the principal's to describe: the same answer.
                None => page(StatusCode::NOT_FOUND, pages::not_found(Some(&s))),
            }
        }
        _ => page(StatusCode::NOT_FOUND, pages::not_found(session.as_ref())),
    }
}

/// `work`, a search (of the trail, or of the inventory), within this node's share of
/// searches and the API's deadline for a call (`request_timeout_ms`); `None` where the share
/// is taken or the deadline passed. Each search holds a database connection while it runs:
/// an account's auditors cannot hold every connection the node's API calls need.
async fn search<T>(
    console: &Console,
    api: &ApiState,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let Ok(_share) = console.searches.try_acquire() else {
        return None;
    };
    tokio::time::timeout(api.request_timeout, work).await.ok()
}

/// Whether a form's CSRF token is the session's (compared in constant time).
fn csrf_matches(sent: &str, session: Option<&session::Session>) -> bool {
    session.is_some_and(|s| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            s.csrf.as_bytes(),
        ))
    })
}

/// One event of the caller's account, or why not (the exception's name).
async fn trail_event(
    api: &ApiState,
    caller: &Caller,
    s: &Session,
    seq: i64,
) -> (maud::Markup, Option<&'static str>) {
    let filter = crate::domain::trail::EventFilter::default();
    // The last sequence number has no event after it to look below.
    let Some(below) = seq.checked_add(1) else {
        return (pages::not_found(Some(s)), Some("NotFoundException"));
    };
    match api
        .kms
        .lookup_events(caller, &filter, (seq, Some(below)), 1)
        .await
    {
        Ok(page) => match page.rows.into_iter().find(|(r, _)| r.seq == seq) {
            Some((r, intact)) => (pages::event(s, seq, intact, &r.body), None),
            None => (pages::not_found(Some(s)), Some("NotFoundException")),
        },
        Err(e) => {
            let kind = ApiError::from(e).wire().1;
            (pages::not_found(Some(s)), Some(kind))
        }
    }
}

/// The trail viewer for the query's filters, or why not.
async fn trail_page(
    api: &ApiState,
    caller: &Caller,
    s: &Session,
    query: &str,
) -> (maud::Markup, Option<&'static str>) {
    const PAGE: i64 = 50;
    let q = |name: &str| query_value(query, name);
    let time = |v: String| {
        chrono::DateTime::parse_from_rfc3339(&v)
            .ok()
            .map(|t| t.to_utc())
    };
    let some = |v: String| (!v.is_empty()).then_some(v);
    let mut t = pages::TrailPage {
        event: q("event"),
        key: q("key"),
        text: q("text"),
        errors: q("errors") == "1",
        from: q("from"),
        to: q("to"),
        rows: Vec::new(),
        error: None,
        older: None,
        stopped_at: None,
    };
    let filter = crate::domain::trail::EventFilter {
        event_name: some(t.event.clone()),
        key_arn: some(t.key.clone()),
        text: some(t.text.clone()),
        errors_only: t.errors,
        from: time(t.from.clone()),
        to: time(t.to.clone()),
    };
    let before = q("before").parse::<i64>().ok();
    match api
        .kms
        .lookup_events(caller, &filter, (0, before), PAGE)
        .await
    {
        Ok(crate::audit::Lookup { rows, next }) => {
            // A full page, or a search that read its share of the trail and found fewer.
            if let Some(last) = next {
                if (rows.len() as i64) < PAGE {
                    t.stopped_at = Some(last);
                }
                let mut next = form_urlencoded::Serializer::new(String::new());
                for (k, v) in form_urlencoded::parse(query.as_bytes()) {
                    if k != "before" {
                        next.append_pair(&k, &v);
                    }
                }
                t.older = Some(next.append_pair("before", &last.to_string()).finish());
            }
            t.rows = rows
                .into_iter()
                .map(|(r, intact)| {
                    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
                    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
                    // What the hashed body says, not the columns kept for queries.
                    let time = chrono::DateTime::parse_from_rfc3339(&text(&body["eventTime"]))
                        .map(|t| t.to_utc())
                        .unwrap_or(r.event_time);
                    pages::TrailRow {
                        seq: r.seq,
                        time: time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        event: text(&body["eventName"]),
                        principal: text(&body["userIdentity"]["arn"]),
                        key: text(&body["resources"][0]["ARN"]),
                        error: text(&body["errorCode"]),
                        intact,
                    }
                })
                .collect();
            (pages::trail(s, &t), None)
        }
        Err(e) => {
            let (_, kind, message) = ApiError::from(e).wire();
            t.error = Some(format!("{kind}: {message}"));
            (pages::trail(s, &t), Some(kind))
        }
    }
}

/// The simulator's answer for the page's question: the exception's name and message if it
/// could not be answered.
async fn simulate(
    api: &ApiState,
    caller: &Caller,
    p: &pages::SimulatorPage,
) -> Result<crate::domain::simulate::Simulation, (&'static str, String)> {
    let ctx: crate::domain::Context = if p.context.is_empty() {
        Default::default()
    } else {
        serde_json::from_str(&p.context).map_err(|_| {
            (
                "ValidationException",
                "The encryption context is not a JSON object of strings.".to_string(),
            )
        })?
    };
    api.kms
        .simulate(caller, &p.principal, &p.action, &p.key, &ctx)
        .await
        .map_err(|e| {
            let (_, kind, message) = ApiError::from(e).wire();
            (kind, format!("{kind}: {message}"))
        })
}

/// A form field's value (empty if absent).
fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Whether `id` looks like a key id (a UUID or `mrk-…`): anything else is not looked up.
fn key_id_shaped(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// An exception or operation name from a query string, if it is one (letters only): what the
/// key page says the last action answered, never text a link could choose.
fn word(query: &str, name: &str) -> Option<String> {
    Some(query_value(query, name))
        .filter(|v| (1..=64).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// A query string member's value, trimmed (empty if absent).
fn query_value(query: &str, name: &str) -> String {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

/// The key page of `id`: the API calls behind each part, as the principal. `None` if the
/// principal may not describe the key (or there is none).
async fn key_page(
    api: &ApiState,
    who: &OnBehalf<'_>,
    id: &str,
    query: &str,
) -> Option<pages::KeyPage> {
    let describe = call_as(api, who, "DescribeKey", json!({ "KeyId": id }))
        .await
        .ok()?;
    let key_id = describe["KeyMetadata"]["KeyId"].as_str()?.to_string();
    let of = |r: Result<serde_json::Value, ApiError>| r.map_err(|e| e.wire().1.to_string());
    let key = json!({ "KeyId": key_id });
    let aliases = of(call_as(api, who, "ListAliases", key.clone()).await);
    let tags = of(call_as(api, who, "ListResourceTags", key.clone()).await);
    let policy_request = json!({ "KeyId": key_id, "PolicyName": "default" });
    let policy = of(call_as(api, who, "GetKeyPolicy", policy_request).await);
    let grants = of(call_as(api, who, "ListGrants", key.clone()).await);
    let rotation = of(call_as(api, who, "GetKeyRotationStatus", key.clone()).await);
    let rotations = of(call_as(api, who, "ListKeyRotations", key).await);
    let notice = match (word(query, "done"), word(query, "error")) {
        (Some(op), _) => Some((true, format!("{op}: done."))),
        (None, Some(e)) => Some((false, format!("Refused: {e}."))),
        _ => None,
    };
    Some(pages::KeyPage {
        key_id,
        describe,
        aliases,
        tags,
        policy,
        grants,
        rotation,
        rotations,
        notice,
    })
}

/// A key page's action, as the API call it is: the operation's name, or the exception.
async fn act_on_key(
    api: &ApiState,
    who: &OnBehalf<'_>,
    id: &str,
    act: &str,
    form: &[(String, String)],
) -> Result<&'static str, String> {
    let key = json!({ "KeyId": id });
    let (op, request) = match act {
        "disable" => ("DisableKey", key),
        "enable" => ("EnableKey", key),
        "cancel-deletion" => ("CancelKeyDeletion", key),
        "rotate" => ("RotateKeyOnDemand", key),
        "create-alias" => {
            let name = field(form, "alias").trim();
            (
                "CreateAlias",
                json!({ "AliasName": name, "TargetKeyId": id }),
            )
        }
        "tag" => {
            let tag =
                json!({ "TagKey": field(form, "tag_key"), "TagValue": field(form, "tag_value") });
            ("TagResource", json!({ "KeyId": id, "Tags": [tag] }))
        }
        "enable-rotation" => ("EnableKeyRotation", key),
        "disable-rotation" => ("DisableKeyRotation", key),
        "schedule-deletion" => {
            // A deletion is confirmed by typing the key's id.
            if field(form, "confirm").trim() != id {
                return Err("ConfirmationMissing".into());
            }
            let days: i64 = field(form, "days").trim().parse().unwrap_or(30);
            let request = json!({ "KeyId": id, "PendingWindowInDays": days });
            ("ScheduleKeyDeletion", request)
        }
        _ => return Err("UnknownAction".into()),
    };
    call_as(api, who, op, request)
        .await
        .map(|_| op)
        .map_err(|e| e.wire().1.to_string())
}

/// A page of the inventory for `filter`: the keys `caller` may list after `marker` and also
/// describe, that the filter admits (from whole listed pages of [`KEYS_PER_PAGE`] until one
/// fills the page, at most [`KEYS_SCANNED`] listed), how many of those listed it may not describe, and where the next page starts.
async fn key_rows(
    api: &ApiState,
    caller: &Caller,
    filter: &pages::KeyFilter,
    marker: Option<String>,
) -> Result<pages::KeyRows, crate::domain::KmsError> {
    let mut out = pages::KeyRows::default();
    let mut marker = marker;
    let now = api.kms.now();
    let mut scanned = 0;
    loop {
        let page = api
            .kms
            .inventory(caller, marker.as_deref(), KEYS_PER_PAGE)
            .await?;
        scanned += page.rows.len() + page.hidden;
        out.hidden += page.hidden;
        // A page ends with the listed page it fills up in (its marker is ListKeys's). Each
        // key's reads are a few database round trips: several keys at a time, in order.
        let row = |key: InventoryRow| async move {
            if !filter.admits(&key.meta, &key.aliases) {
                return None;
            }
            let arn = key.meta.arn.clone();
            let renewal = api.kms.renewal(caller, &arn).await;
            let rotation = renewal.status.as_ref().map(|r| (r.enabled, r.next));
            let cryptoperiod = renewal.cryptoperiod(&key.meta, DEFAULT_CRYPTOPERIOD_DAYS, now);
            if !filter.admits_rotation(rotation.map(|(on, _)| on))
                || !filter.admits_period(cryptoperiod.map(|(_, v)| v))
            {
                return None;
            }
            if filter.by_tag() {
                let tags = api
                    .kms
                    .list_resource_tags(caller, &arn)
                    .await
                    .unwrap_or_default();
                if !filter.admits_tags(&tags) {
                    return None;
                }
            }
            let last_used = (api.kms.key_last_usage(caller, &arn).await)
                .ok()
                .map(|u| u.last.map(|l| l.time));
            Some(pages::KeyRow {
                key,
                rotation,
                cryptoperiod,
                last_used,
            })
        };
        let rows = futures_util::stream::iter(page.rows.into_iter().map(row))
            .buffered(KEYS_AT_ONCE)
            .filter_map(std::future::ready)
            .collect::<Vec<_>>()
            .await;
        out.rows.extend(rows);
        marker = page.next_marker;
        if marker.is_none() || out.rows.len() >= KEYS_PER_PAGE || scanned >= KEYS_SCANNED {
            break;
        }
    }
    out.next_marker = marker;
    Ok(out)
}
