//! The operator view (`/console/operator`): this node's token and session pool, its readiness,
//! the nodes of the deployment as they last reported, the signed-in account's quota use, and
//! this node's request, error and token-call rates over the last ten minutes as small SVG
//! charts drawn on the server (no script). For a principal allowed `cloudwatch:GetMetricData`.

use super::session::Session;
use crate::api::ApiState;
use crate::domain::nodes::NodeRecord;
use crate::metrics::Totals;
use maud::{html, Markup};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the charts' samples are taken, and how many are kept (ten minutes).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);
const SAMPLES: usize = 120;

/// One sample of this node's counters.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    totals: Totals,
    sessions_in_use: usize,
}

/// The samples the charts are drawn from.
#[derive(Default)]
pub struct Samples(Mutex<VecDeque<Sample>>);

impl Samples {
    fn take(&self, api: &ApiState) {
        let (sessions_in_use, _) = api.kms.hsm().sessions_in_use();
        let mut q = self.0.lock().unwrap();
        if q.len() == SAMPLES {
            q.pop_front();
        }
        q.push_back(Sample {
            at: Instant::now(),
            totals: crate::metrics::totals(),
            sessions_in_use,
        });
    }

    /// Sample every [`SAMPLE_EVERY`] for as long as the process runs.
    pub fn start(self: &Arc<Self>, api: Arc<ApiState>) {
        let samples = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tick.tick().await;
                samples.take(&api);
            }
        });
    }

    /// Per-second rates of one counter between consecutive samples.
    fn rates(&self, of: impl Fn(&Totals) -> u64) -> Vec<f64> {
        let q = self.0.lock().unwrap();
        q.iter()
            .zip(q.iter().skip(1))
            .map(|(a, b)| {
                let dt = b.at.duration_since(a.at).as_secs_f64().max(0.001);
                of(&b.totals).saturating_sub(of(&a.totals)) as f64 / dt
            })
            .collect()
    }

    fn sessions(&self) -> Vec<f64> {
        let q = self.0.lock().unwrap();
        q.iter().map(|s| s.sessions_in_use as f64).collect()
    }
}

/// A small line chart of `values` (oldest first), its scale from 0 to their maximum.
pub fn chart(title: &str, unit: &str, values: &[f64]) -> Markup {
    const W: f64 = 360.0;
    const H: f64 = 60.0;
    let max = values.iter().cloned().fold(0.0, f64::max);
    let top = if max > 0.0 { max } else { 1.0 };
    let step = W / (SAMPLES.max(2) - 1) as f64;
    let start = W - step * values.len().saturating_sub(1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                start + step * i as f64,
                H - v / top * (H - 4.0) - 2.0
            )
        })
        .collect();
    let now = values.last().copied().unwrap_or(0.0);
    html! {
        figure.chart {
            figcaption { (title) ": " strong { (format!("{now:.1}")) } " " (unit) span.muted { " (max " (format!("{max:.1}")) ")" } }
            svg xmlns="http://www.w3.org/2000/svg" width="360" height="60" viewBox="0 0 360 60" role="img" aria-label=(title) {
                rect x="0" y="0" width="360" height="60" fill="#fff" stroke="#dde1e7" {}
                @if points.len() > 1 {
                    polyline points=(points.join(" ")) fill="none" stroke="#1d6fd8" stroke-width="1.5" {}
                }
            }
        }
    }
}

/// What the operator view shows.
pub struct OperatorPage {
    pub token_label: String,
    pub manufacturer: String,
    pub model: String,
    pub token_up: bool,
    pub sessions: (usize, usize),
    pub totals: Totals,
    pub ready: (Result<(), String>, Result<(), String>),
    pub nodes: Vec<NodeRecord>,
    /// The account's shares: (rate per second, left now), cryptographic then the rest.
    pub quota: [(f64, f64); 2],
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Gather the operator view of this node (the caller was allowed it: `nodes`).
pub async fn gather(api: &ApiState, s: &Session, nodes: Vec<NodeRecord>) -> OperatorPage {
    let hsm = api.kms.hsm();
    let caps = hsm.capabilities();
    let r = api.kms.readiness(crate::api::READINESS_TIMEOUT).await;
    OperatorPage {
        token_label: r.token_label.clone(),
        manufacturer: caps.manufacturer.clone(),
        model: caps.model.clone(),
        token_up: hsm.is_open(),
        sessions: hsm.sessions_in_use(),
        totals: crate::metrics::totals(),
        ready: (r.token, r.database),
        nodes,
        quota: api.quotas.usage(&s.account_id, &s.region),
        now: chrono::Utc::now(),
    }
}

pub fn page(s: &Session, p: &OperatorPage, samples: &Samples) -> Markup {
    let check = |c: &Result<(), String>| match c {
        Ok(()) => html! { span.done { "ok" } },
        Err(e) => html! { strong.error { "failing: " (e) } },
    };
    let rate = |r: f64| {
        if r <= 0.0 {
            "unlimited".to_string()
        } else {
            format!("{r:.0}/s")
        }
    };
    super::pages::page(
        "Operations",
        Some(s),
        html! {
            h1 { "Operations" }
            h2 { "This node" }
            table.meta {
                tr { th { "Token" } td { code { (p.token_label) } " — " (p.manufacturer) " " (p.model) } }
                tr { th { "Token state" } td { @if p.token_up { span.done { "logged in" } } @else { strong.error { "lost" } } } }
                tr { th { "Sessions in use" } td { (p.sessions.0) " of " (p.sessions.1) } }
                tr { th { "Ready: token" } td { (check(&p.ready.0)) } }
                tr { th { "Ready: database" } td { (check(&p.ready.1)) } }
                tr { th { "Requests answered" } td { (p.totals.requests) " (" (p.totals.errors) " with an error)" } }
                tr { th { "Token calls" } td { (p.totals.token_calls) " (" (p.totals.token_errors) " failed; " (p.totals.token_reopens) " re-opened, " (p.totals.token_failovers) " failed over)" } }
                tr { th { "Audit batches failed" } td { (p.totals.audit_failures) } }
            }
            h2 { "The last ten minutes on this node" }
            div.charts {
                (chart("Requests", "/s", &samples.rates(|t| t.requests)))
                (chart("Errors", "/s", &samples.rates(|t| t.errors)))
                (chart("Token calls", "/s", &samples.rates(|t| t.token_calls)))
                (chart("Token sessions in use", "", &samples.sessions()))
            }
            h2 { "Quota of account " (s.account_id) " in " (s.region) }
            table.meta {
                tr { th { "Cryptographic operations" } td { (rate(p.quota[0].0)) @if p.quota[0].0 > 0.0 { ", " (format!("{:.0}", p.quota[0].1)) " left of this second's burst" } } }
                tr { th { "Other operations" } td { (rate(p.quota[1].0)) @if p.quota[1].0 > 0.0 { ", " (format!("{:.0}", p.quota[1].1)) " left of this second's burst" } } }
            }
            h2 { "Nodes seen" }
            p.muted { "As each node last reported itself (every few seconds); a node silent for 30 seconds is shown as gone." }
            table {
                thead { tr { th { "Node" } th { "Address" } th { "Release" } th { "Token" } th { "Ready" } th { "Started" } th { "Last seen" } } }
                tbody { @for n in &p.nodes {
                    @let gone = (p.now - n.last_seen).num_seconds() > 30;
                    tr {
                        td { code { (n.node_id) } }
                        td { (n.address) }
                        td { (n.version) }
                        td { code { (n.token_label) } }
                        td { @if gone { strong.error { "gone" } } @else if n.ready { span.done { "ready" } } @else { strong.error { "not ready" } } }
                        td { (n.started_at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        td { (n.last_seen.format("%Y-%m-%d %H:%M:%S UTC")) }
                    }
                } }
            }
        },
    )
}
