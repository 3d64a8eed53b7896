//! The console's audit pages: the chain's state (the latest signed checkpoint, a verification
//! on demand, the audit public key), an export of the account's events in the `kms audit
//! export` format, and the compliance reports, each signed with the audit key over the chain
//! head (`kms audit verify --report` checks one).
//!
//! A verification, an export and a report each read the whole trail or every key: one at a
//! time per node, so a principal cannot hold the node's database connections with them.

use super::session::Session;
use super::{page, query_value, respond, Call};
use crate::api::error::ApiError;
use crate::domain::reports::{Report, ReportKind, ReportParams};
use crate::domain::Caller;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use maud::{html, Markup};
use serde_json::json;

type Answer = Response<Full<Bytes>>;

/// A file to download: its bytes with the console's headers.
fn download(content_type: &str, name: &str, body: Vec<u8>) -> Answer {
    respond(StatusCode::OK, content_type)
        .header(
            "content-disposition",
            format!("attachment; filename=\"{name}\""),
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn kind_of(e: crate::domain::KmsError) -> (&'static str, String) {
    let (_, kind, message) = ApiError::from(e).wire();
    (kind, format!("{kind}: {message}"))
}

/// Answer the audit and report pages (`None`: not one of theirs).
pub(super) async fn handle(
    console: &super::Console,
    call: &Call<'_>,
    s: &Session,
    caller: &Caller,
    post: bool,
    path: &str,
    query: &str,
) -> Option<Answer> {
    let (api, heavy) = (call.api, &console.heavy);
    let q = |name: &str| query_value(query, name);
    let busy = || {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            audit_page(s, None, Some(Err("Another verification, export or report is running on this node; try again shortly.".into()))),
        )
    };
    let unrecorded = || {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            super::pages::not_found(Some(s)),
        )
    };
    Some(match (post, path) {
        (false, "/console/audit") | (true, "/console/audit/verify") => {
            let status = api.kms.trail_status(caller).await.map_err(kind_of);
            let verification = if post {
                let Ok(_one) = heavy.try_lock() else {
                    return Some(busy());
                };
                Some(api.kms.verify_trail(caller).await.map_err(kind_of))
            } else {
                None
            };
            let error = status.as_ref().err().map(|(k, _)| *k).or_else(|| {
                verification
                    .as_ref()
                    .and_then(|v| v.as_ref().err().map(|(k, _)| *k))
            });
            let operation = if post {
                "ConsoleVerifyTrail"
            } else {
                "ConsoleTrailStatus"
            };
            if !call.record(operation, Some(s), json!({}), error).await {
                return Some(unrecorded());
            }
            let status_code = if error.is_some() {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::OK
            };
            let verification = verification.map(|v| v.map_err(|(_, m)| m));
            page(
                status_code,
                audit_page(s, Some(status.map_err(|(_, m)| m)), verification),
            )
        }
        (false, "/console/audit/public-key.pem") => {
            let status = api.kms.trail_status(caller).await.map_err(kind_of);
            let error = status.as_ref().err().map(|(k, _)| *k);
            if !call
                .record("ConsoleTrailStatus", Some(s), json!({}), error)
                .await
            {
                return Some(unrecorded());
            }
            match status {
                Ok(status) => download(
                    "application/x-pem-file",
                    "kms-audit-public-key.pem",
                    crate::audit::public_key_pem(&status.public_key).into_bytes(),
                ),
                Err(_) => page(StatusCode::FORBIDDEN, super::pages::not_found(Some(s))),
            }
        }
        (false, "/console/audit/export") => {
            let time = |v: String| {
                chrono::DateTime::parse_from_rfc3339(&v)
                    .ok()
                    .map(|t| t.to_utc())
            };
            let some = |v: String| (!v.is_empty()).then_some(v);
            let filter = crate::audit::verify::Filter {
                from: time(q("from")),
                to: time(q("to")),
                account: None,
                key: some(q("key")),
                event_name: some(q("event")),
            };
            let Ok(_one) = heavy.try_lock() else {
                return Some(busy());
            };
            let exported = api.kms.export_trail(caller, &filter).await.map_err(kind_of);
            let error = exported.as_ref().err().map(|(k, _)| *k);
            let request = json!({
                "From": q("from"), "To": q("to"), "Key": q("key"), "EventName": q("event"),
                "Events": exported.as_ref().map(|(_, n)| *n).unwrap_or(0),
            });
            if !call
                .record("ConsoleExportTrail", Some(s), request, error)
                .await
            {
                return Some(unrecorded());
            }
            match exported {
                Ok((lines, _)) => download(
                    "application/x-ndjson",
                    "kms-audit-export.jsonl",
                    (lines.join("\n") + "\n").into_bytes(),
                ),
                Err((_, m)) => page(StatusCode::FORBIDDEN, audit_page(s, None, Some(Err(m)))),
            }
        }
        (false, "/console/reports") => page(StatusCode::OK, reports_page(s, None)),
        (false, p) if p.starts_with("/console/reports/") => {
            let file = &p["/console/reports/".len()..];
            let (name, html) = match file.rsplit_once('.') {
                Some((n, "csv")) => (n, false),
                Some((n, "html")) => (n, true),
                _ => return None,
            };
            let kind = ReportKind::parse(name)?;
            let number = |name: &str, default: i64| {
                q(name)
                    .parse::<i64>()
                    .ok()
                    .filter(|d| (1..=3650).contains(d))
                    .unwrap_or(default)
            };
            let defaults = ReportParams::default();
            let params = ReportParams {
                cryptoperiod_days: number("cryptoperiod_days", defaults.cryptoperiod_days),
                unused_days: number("unused_days", defaults.unused_days),
            };
            let Ok(_one) = heavy.try_lock() else {
                return Some(busy());
            };
            let built = match api.kms.report(caller, kind, params).await {
                Ok(r) => {
                    let content = if html {
                        report_html(&r)
                    } else {
                        report_csv(&r)
                    };
                    match api.kms.sign_report(content.as_bytes()).await {
                        Ok(sig) => Ok(content + &sig.line(html)),
                        Err(e) => Err(kind_of(e)),
                    }
                }
                Err(e) => Err(kind_of(e)),
            };
            let error = built.as_ref().err().map(|(k, _)| *k);
            let request =
                json!({ "Report": kind.name(), "Format": if html { "html" } else { "csv" } });
            if !call.record("ConsoleReport", Some(s), request, error).await {
                return Some(unrecorded());
            }
            match built {
                Ok(text) => {
                    let (ct, ext) = if html {
                        ("text/html; charset=utf-8", "html")
                    } else {
                        ("text/csv; charset=utf-8", "csv")
                    };
                    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
                    download(
                        ct,
                        &format!("kms-{}-{stamp}.{ext}", kind.name()),
                        text.into_bytes(),
                    )
                }
                Err((_, m)) => page(StatusCode::FORBIDDEN, reports_page(s, Some(&m))),
            }
        }
        _ => return None,
    })
}

/// The chain's state: the latest checkpoint, the public key, a verification's result.
fn audit_page(
    s: &Session,
    status: Option<Result<crate::domain::trail::TrailStatus, String>>,
    verification: Option<Result<crate::audit::verify::Report, String>>,
) -> Markup {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    super::pages::page(
        "Audit",
        Some(s),
        html! {
            h1 { "Audit trail: integrity" }
            @match &status {
                None => {}
                Some(Err(e)) => p.error { (e) }
                Some(Ok(status)) => {
                    h2 { "Latest signed checkpoint" }
                    @match &status.latest {
                        None => p.error { "No checkpoint has been signed yet." }
                        Some((c, verifies)) => table.meta {
                            tr { th { "Covers events up to" } td { (c.seq) } }
                            tr { th { "Chain head" } td { code { (hex(&c.hash)) } } }
                            tr { th { "Signed at" } td { (c.signed_at.to_rfc3339()) } }
                            tr { th { "Signature" } td {
                                @if *verifies { span.done { "verifies with the audit public key" } }
                                @else { strong.error { "DOES NOT VERIFY with the audit public key" } }
                            } }
                        }
                    }
                    h2 { "Audit public key" }
                    pre { (crate::audit::public_key_pem(&status.public_key)) }
                    p { a href="/console/audit/public-key.pem" { "Download (PEM)" } " — what " code { "kms audit verify --public-key" } " takes." }
                }
            }
            h2 { "Verify the whole chain" }
            p.muted { "Every event's hash and link, every checkpoint's signature, the chain head, and the columns exports filter on: what " code { "kms audit verify" } " checks in the database (anchor files on the nodes aside)." }
            form method="post" action="/console/audit/verify" {
                input type="hidden" name="csrf" value=(s.csrf);
                button type="submit" { "Verify now" }
            }
            @match &verification {
                None => {}
                Some(Err(e)) => p.error { (e) }
                Some(Ok(r)) => {
                    p { "Checked " (r.events) " events and " (r.checkpoints) " checkpoints, up to event " (r.last_seq) "." }
                    @if r.ok() { p.done { strong { "Intact." } } }
                    @else {
                        p.error { strong { "TAMPERED:" } }
                        ul { @for (_, problem) in &r.problems { li.error { (problem) } } }
                    }
                }
            }
            h2 { "Export" }
            p.muted { "Your account's events as " code { "kms audit export" } " writes them, with the hashes and checkpoints " code { "kms audit verify --export" } " needs." }
            form.filters method="get" action="/console/audit/export" {
                input name="from" placeholder="from (2026-12-01T00:00:00Z)";
                input name="to" placeholder="to";
                input name="key" placeholder="key id or ARN" size="40";
                input name="event" placeholder="event (Decrypt)";
                button type="submit" { "Export" }
            }
            p { a href="/console/reports" { "Compliance reports" } }
        },
    )
}

/// The reports' page: each report, as CSV or printable HTML.
fn reports_page(s: &Session, error: Option<&str>) -> Markup {
    super::pages::page(
        "Reports",
        Some(s),
        html! {
            h1 { "Compliance reports" }
            p.muted { "Each is built from what you may see, and ends with a signature of the audit key over its text and the chain head it was built from: " code { "kms audit verify --public-key audit.pem --report FILE" } " checks it." }
            @if let Some(e) = error { p.error { (e) } }
            @for kind in ReportKind::ALL {
                h2 { (kind.title()) }
                p.muted { (kind.basis()) }
                form.filters method="get" action={ "/console/reports/" (kind.name()) ".csv" } {
                    @match kind {
                        ReportKind::Inventory => label { "Cryptoperiod without rotation (days) " input name="cryptoperiod_days" value="365" size="4"; }
                        ReportKind::Unused => label { "Unused for (days) " input name="unused_days" value="90" size="4"; }
                        ReportKind::Access => {}
                    }
                    button type="submit" { "CSV" }
                }
                p { a href={ "/console/reports/" (kind.name()) ".html" } { "Printable page" } }
            }
        },
    )
}

/// A CSV cell: quoted where it must be, and never read as a formula by a spreadsheet.
fn cell(v: &str) -> String {
    let v = if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    };
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// A comment line of a CSV report: one line, whatever the text.
fn comment(v: &str) -> String {
    format!("# {}\n", v.replace(['\n', '\r'], " "))
}

/// A report as CSV: comment lines saying what it is, the header, the rows.
pub fn report_csv(r: &Report) -> String {
    let mut out = comment(r.kind.title());
    out += &comment(&format!("basis: {}", r.kind.basis()));
    out += &comment(&format!("account: {}, region: {}", r.account_id, r.region));
    out += &comment(&format!(
        "generated at {} for {}",
        r.generated_at.to_rfc3339(),
        r.principal
    ));
    for (k, v) in &r.parameters {
        out += &comment(&format!("{k}: {v}"));
    }
    for n in &r.notes {
        out += &comment(&format!("note: {n}"));
    }
    out += &r.kind.columns().join(",");
    out.push('\n');
    for row in &r.rows {
        out += &row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

/// A report as a printable HTML page.
pub fn report_html(r: &Report) -> String {
    let markup = html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (r.kind.title()) }
                link rel="stylesheet" href="/console/style.css";
            }
            body.report {
                main {
                    h1 { (r.kind.title()) }
                    p.muted { (r.kind.basis()) }
                    table.meta {
                        tr { th { "Account" } td { (r.account_id) } }
                        tr { th { "Region" } td { (r.region) } }
                        tr { th { "Generated at" } td { (r.generated_at.to_rfc3339()) } }
                        tr { th { "For" } td { (r.principal) } }
                        @for (k, v) in &r.parameters { tr { th { (k) } td { (v) } } }
                    }
                    @for n in &r.notes { p.error { (n) } }
                    table {
                        thead { tr { @for c in r.kind.columns() { th { (c) } } } }
                        tbody { @for row in &r.rows { tr { @for c in row { td { (c) } } } } }
                    }
                    p.muted { "Signed with the audit key: the last line of this file. Check it with " code { "kms audit verify --public-key audit.pem --report FILE" } "." }
                }
            }
        }
    };
    markup.into_string() + "\n"
}
