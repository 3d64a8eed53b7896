//! The console's pages, rendered on the server (maud: compiled into the binary, every value
//! escaped). No script, no inline style: the Content-Security-Policy forbids both.

use super::session::Session;
use crate::domain::inventory::{Cryptoperiod, DEFAULT_CRYPTOPERIOD_DAYS};
use crate::domain::KeyMetadata;
use crate::vocab::{KeySpec, KeyState, KeyUsage, Origin};
use maud::{html, Markup, DOCTYPE};

/// The stylesheet, served at `/console/style.css`.
pub const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}\
header{display:flex;gap:1.5em;align-items:center;padding:.6em 1.2em;background:#1d2330;color:#fff}\
header a{color:#fff}header form{margin-left:auto}\
main{padding:1.2em}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #dde1e7;font-size:.9em}\
th{background:#eef0f4}form.filters{display:flex;gap:.6em;flex-wrap:wrap;margin-bottom:1em}\
.error{color:#a4161a}.muted{color:#5c6370}code{font-size:.85em}\
.signin{max-width:26em;margin:4em auto;background:#fff;padding:1.5em;border:1px solid #dde1e7}\
.signin label{display:block;margin:.8em 0 .2em}.signin input{width:100%;box-sizing:border-box}\
.actions{display:flex;gap:1em;flex-wrap:wrap;margin:1em 0}.done{color:#1b6e2d}\
table.meta{width:auto}table.meta th{width:12em}.charts{display:flex;flex-wrap:wrap;gap:1em}\
figure.chart{margin:0;background:#fff;padding:.5em;border:1px solid #dde1e7}figcaption{font-size:.85em}pre{background:#fff;padding:.8em;border:1px solid #dde1e7;overflow:auto}";

pub(super) fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · kms console" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    strong { "kms console" }
                    @if let Some(s) = session {
                        a href="/console/keys" { "Keys" }
                        a href="/console/simulate" { "Policy simulator" }
                        a href="/console/trail" { "Audit trail" }
                        a href="/console/audit" { "Integrity" }
                        a href="/console/reports" { "Reports" }
                        a href="/console/operator" { "Operations" }
                        span.muted { (s.principal_arn) }
                        form method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in form, with what went wrong last, if anything.
/// The sign-in page; `certificate`: the access key the connection's client certificate names,
/// where it may sign in with it.
pub fn sign_in(certificate: Option<&str>, error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(id) = certificate {
                form.signin method="post" action="/console/sign-in-certificate" {
                    h1 { "Sign in" }
                    p { "Your client certificate names access key " code { (id) } "." }
                    p { button #certificate_sign_in type="submit" { "Sign in with the certificate" } }
                }
            }
            form.signin method="post" action="/console/sign-in" autocomplete="off" {
                h1 { "Sign in" }
                p.muted { "With an access key of this service. The secret is checked once and kept nowhere." }
                @if let Some(e) = error { p.error { (e) } }
                label for="access_key_id" { "Access key ID" }
                input #access_key_id name="access_key_id" required;
                label for="secret_access_key" { "Secret access key" }
                input #secret_access_key type="password" name="secret_access_key" required;
                p { button type="submit" { "Sign in" } }
            }
        },
    )
}

/// What the inventory is filtered by (the query string of `/console/keys`).
#[derive(Default)]
pub struct KeyFilter {
    pub text: String,
    pub state: String,
    pub spec: String,
    pub usage: String,
    pub origin: String,
    /// `on` or `off`: automatic rotation.
    pub rotation: String,
    /// `within` or `exceeded`: the cryptoperiod verdict.
    pub period: String,
    /// A custom key store's id, or `any` (keys in any custom key store).
    pub store: String,
    /// `key=value` (or `key`): a tag the key carries.
    pub tag: String,
}

impl KeyFilter {
    pub fn from_query(query: &str) -> KeyFilter {
        let mut f = KeyFilter::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.trim().to_string();
            match k.as_ref() {
                "q" => f.text = v,
                "state" => f.state = v,
                "spec" => f.spec = v,
                "usage" => f.usage = v,
                "origin" => f.origin = v,
                "rotation" => f.rotation = v,
                "period" => f.period = v,
                "store" => f.store = v,
                "tag" => f.tag = v,
                _ => {}
            }
        }
        f
    }

    /// Whether key `m` (with its aliases) is one the filter lets through.
    pub fn admits(&self, m: &KeyMetadata, aliases: &[String]) -> bool {
        let is = |want: &str, have: String| want.is_empty() || want == have;
        let text = self.text.to_lowercase();
        (text.is_empty()
            || m.arn.to_lowercase().contains(&text)
            || m.description.to_lowercase().contains(&text)
            || aliases.iter().any(|a| a.to_lowercase().contains(&text)))
            && is(&self.state, m.key_state.to_string())
            && is(&self.spec, m.key_spec.to_string())
            && is(&self.usage, m.key_usage.to_string())
            && is(&self.origin, m.origin.to_string())
            && match (self.store.as_str(), &m.custom_key_store) {
                ("", _) => true,
                ("any", store) => store.is_some(),
                (want, Some((id, _))) => want == id,
                (_, None) => false,
            }
    }

    /// Whether any filter is set (the inventory then reads up to its scan's worth of keys).
    pub fn filters(&self) -> bool {
        [
            &self.text,
            &self.state,
            &self.spec,
            &self.usage,
            &self.origin,
            &self.rotation,
            &self.period,
            &self.store,
            &self.tag,
        ]
        .iter()
        .any(|f| !f.is_empty())
    }

    /// Whether the filter needs the key's tags.
    pub fn by_tag(&self) -> bool {
        !self.tag.is_empty()
    }

    /// Whether `tags` hold the tag the filter asks for.
    pub fn admits_tags(&self, tags: &[crate::vocab::Tag]) -> bool {
        let (key, value) = match self.tag.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (self.tag.trim(), None),
        };
        tags.iter()
            .any(|t| t.key == key && value.is_none_or(|v| t.value == v))
    }

    /// Whether a key whose automatic rotation is `enabled` (`None`: not readable) passes.
    pub fn admits_rotation(&self, enabled: Option<bool>) -> bool {
        match self.rotation.as_str() {
            "on" => enabled == Some(true),
            "off" => enabled == Some(false),
            _ => true,
        }
    }

    /// Whether a key with cryptoperiod `verdict` (`None`: not readable) passes.
    pub fn admits_period(&self, verdict: Option<Cryptoperiod>) -> bool {
        match self.period.as_str() {
            "within" => verdict == Some(Cryptoperiod::Within),
            "exceeded" => matches!(verdict, Some(Cryptoperiod::Exceeded(_))),
            _ => true,
        }
    }
}

/// One key of an inventory page, with what the principal may read of its rotation and use.
pub struct KeyRow {
    pub key: crate::domain::inventory::InventoryRow,
    /// Automatic rotation and the next date (`None`: not readable, `kms:GetKeyRotationStatus`).
    pub rotation: Option<(bool, Option<chrono::DateTime<chrono::Utc>>)>,
    /// The cryptoperiod applied (days) and its verdict (`None`: rotations not readable).
    pub cryptoperiod: Option<(i64, Cryptoperiod)>,
    /// The last use (`Some(None)`: never; `None`: not readable, `kms:GetKeyLastUsage`).
    pub last_used: Option<Option<chrono::DateTime<chrono::Utc>>>,
}

/// A page of the inventory: the keys the principal may describe that the filter admits, how
/// many listed keys it may not describe, and where the next page starts.
#[derive(Default)]
pub struct KeyRows {
    pub rows: Vec<KeyRow>,
    pub hidden: usize,
    pub next_marker: Option<String>,
}

impl KeyFilter {
    /// The query string of the filter's next page, from `marker`.
    fn next_page(&self, marker: &str) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("q", &self.text),
            ("state", &self.state),
            ("spec", &self.spec),
            ("usage", &self.usage),
            ("origin", &self.origin),
            ("rotation", &self.rotation),
            ("period", &self.period),
            ("store", &self.store),
            ("tag", &self.tag),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("marker", marker).finish()
    }
}

/// The key inventory: the keys the signed-in principal may list and describe.
pub fn keys(session: &Session, filter: &KeyFilter, listed: &KeyRows) -> Markup {
    let (rows, hidden) = (&listed.rows, listed.hidden);
    let select = |name: &str, current: &str, options: &[&str]| {
        html! {
            select name=(name) {
                option value="" { "any " (name) }
                @for o in options {
                    option value=(o) selected[*o == current] { (o) }
                }
            }
        }
    };
    page(
        "Keys",
        Some(session),
        html! {
            h1 { "Keys" }
            form.filters method="get" action="/console/keys" {
                input name="q" value=(filter.text) placeholder="id, alias or description";
                (select("state", &filter.state, KeyState::WORDS))
                (select("spec", &filter.spec, KeySpec::WORDS))
                (select("usage", &filter.usage, KeyUsage::WORDS))
                (select("origin", &filter.origin, Origin::WORDS))
                (select("rotation", &filter.rotation, &["on", "off"]))
                (select("period", &filter.period, &["within", "exceeded"]))
                input name="store" value=(filter.store) placeholder="custom key store (or any)" size="22";
                input name="tag" value=(filter.tag) placeholder="tag (key=value)" size="16";
                button type="submit" { "Filter" }
            }
            p.muted {
                (rows.len()) " keys" @if listed.next_marker.is_some() { " on this page" }
                @if hidden > 0 { " (" (hidden) " more you may list but not describe)" }
            }
            table {
                thead { tr {
                    th { "Key" } th { "Aliases" } th { "State" } th { "Spec" } th { "Usage" }
                    th { "Origin" } th { "Created" } th { "Rotation" }
                    th title={ "Time since creation or last rotation, against the rotation period or " (DEFAULT_CRYPTOPERIOD_DAYS) " days" } { "Cryptoperiod" }
                    th { "Last used" }
                    th { "Custom key store" } th { "Description" }
                } }
                tbody {
                    @for row in rows {
                        @let r = &row.key;
                        tr {
                            td { a href={ "/console/keys/" (r.meta.key_id) } { code { (r.meta.key_id) } } }
                            td { @for a in r.aliases.iter() { code { (a) } " " } }
                            td { (r.meta.key_state.to_string()) }
                            td { (r.meta.key_spec.to_string()) }
                            td { (r.meta.key_usage.to_string()) }
                            td { (r.meta.origin.to_string()) }
                            td { (r.meta.created_at.format("%Y-%m-%d %H:%M UTC")) }
                            td { @match &row.rotation {
                                Some((true, next)) => { "on" @if let Some(n) = next { br; span.muted { "next " (n.format("%Y-%m-%d")) } } }
                                Some((false, _)) => "off",
                                None => span.muted { "—" },
                            } }
                            td { @match &row.cryptoperiod {
                                Some((days, v @ Cryptoperiod::Exceeded(_))) => { strong { (v.to_string()) } br; span.muted { (days) " d" } }
                                Some((days, v)) => { (v.to_string()) br; span.muted { (days) " d" } }
                                None => span.muted { "—" },
                            } }
                            td { @match &row.last_used {
                                Some(Some(t)) => (t.format("%Y-%m-%d %H:%M UTC")),
                                Some(None) => span.muted { "never" },
                                None => span.muted { "—" },
                            } }
                            td { @if let Some((id, _)) = &r.meta.custom_key_store { code { (id) } } }
                            td { (r.meta.description) }
                        }
                    }
                }
            }
            @if let Some(m) = &listed.next_marker {
                p { a href={ "/console/keys?" (filter.next_page(m)) } { "Next page" } }
            }
        },
    )
}

/// A page for what is not there, or not the signed-in principal's to see.
pub fn not_found(session: Option<&Session>) -> Markup {
    page(
        "Not found",
        session,
        html! { h1 { "Not found" } p { a href="/console/keys" { "Keys" } } },
    )
}

/// The account's request rate is used up for now.
pub fn throttled(session: Option<&Session>) -> Markup {
    page(
        "Rate exceeded",
        session,
        html! { h1 { "Rate exceeded" } p { "Too many requests for this account just now; try again in a moment." } },
    )
}

/// What the key page shows: each part the answer of the API call behind it, or the exception
/// the API gave the principal for it.
pub struct KeyPage {
    pub key_id: String,
    pub describe: serde_json::Value,
    pub aliases: Result<serde_json::Value, String>,
    pub tags: Result<serde_json::Value, String>,
    pub policy: Result<serde_json::Value, String>,
    pub grants: Result<serde_json::Value, String>,
    pub rotation: Result<serde_json::Value, String>,
    /// `ListKeyRotations`: the materials rotation made (or imported).
    pub rotations: Result<serde_json::Value, String>,
    /// What the last action answered (`?done=` or `?error=`).
    pub notice: Option<(bool, String)>,
}

/// A value of a JSON answer as text (`—` when absent).
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A date of a JSON answer (seconds since the epoch, as the API sends them) as UTC time.
fn date(v: &serde_json::Value) -> String {
    match v
        .as_f64()
        .and_then(|t| chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64))
    {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => text(v),
    }
}

/// One part of the key page: its rows, or why the principal may not see it.
fn part(
    title: &str,
    answer: &Result<serde_json::Value, String>,
    body: impl Fn(&serde_json::Value) -> Markup,
) -> Markup {
    html! {
        h2 { (title) }
        @match answer {
            Ok(v) => (body(v)),
            Err(e) => p.muted { "Not shown: " code { (e) } }
        }
    }
}

/// An action button: a POST form with the session's CSRF token (and more fields).
fn action(s: &Session, key_id: &str, name: &str, label: &str, fields: Markup) -> Markup {
    html! {
        form.action method="post" action={ "/console/keys/" (key_id) "/" (name) } {
            input type="hidden" name="csrf" value=(s.csrf);
            (fields)
            button type="submit" { (label) }
        }
    }
}

/// One key: its metadata, aliases, tags, key policy, grants and rotation, and the actions the
/// API allows on it.
pub fn key(s: &Session, k: &KeyPage) -> Markup {
    let m = &k.describe["KeyMetadata"];
    let state = m["KeyState"].as_str().unwrap_or("");
    page(
        &k.key_id,
        Some(s),
        html! {
            p { a href="/console/keys" { "← Keys" } }
            h1 { "Key " code { (k.key_id) } }
            @if let Some((ok, msg)) = &k.notice {
                p class=(if *ok { "done" } else { "error" }) { (msg) }
            }
            table.meta {
                @for (label, member) in [("ARN", "Arn"), ("State", "KeyState"), ("Spec", "KeySpec"),
                    ("Usage", "KeyUsage"), ("Origin", "Origin"), ("Created", "CreationDate"),
                    ("Description", "Description"), ("Deletion date", "DeletionDate"),
                    ("Custom key store", "CustomKeyStoreId"), ("Multi-Region", "MultiRegion"),
                    ("Key manager", "KeyManager")] {
                    tr { th { (label) } td { (if member.ends_with("Date") { date(&m[member]) } else { text(&m[member]) }) } }
                }
            }
            div.actions {
                @if state == "Enabled" { (action(s, &k.key_id, "disable", "Disable", html! {})) }
                @if state == "Disabled" { (action(s, &k.key_id, "enable", "Enable", html! {})) }
                @if state == "PendingDeletion" {
                    (action(s, &k.key_id, "cancel-deletion", "Cancel deletion", html! {}))
                } @else {
                    (action(s, &k.key_id, "schedule-deletion", "Schedule deletion", html! {
                        label { "Waiting period (days) " input name="days" value="30" size="3"; }
                        label { " Type the key id to confirm " input name="confirm" size="36"; }
                    }))
                }
                (action(s, &k.key_id, "rotate", "Rotate now", html! {}))
            }
            p { a href={ "/console/keys/" (k.key_id) "/access" } { "Who can use this key" } }
            (part("Aliases", &k.aliases, |v| html! {
                ul { @for a in v["Aliases"].as_array().into_iter().flatten() { li { code { (text(&a["AliasName"])) } } } }
            }))
            (part("Tags", &k.tags, |v| html! {
                table { @for t in v["Tags"].as_array().into_iter().flatten() {
                    tr { td { (text(&t["TagKey"])) } td { (text(&t["TagValue"])) } }
                } }
            }))
            (part("Key policy", &k.policy, |v| {
                let pretty = v["Policy"].as_str()
                    .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                    .and_then(|p| serde_json::to_string_pretty(&p).ok())
                    .unwrap_or_else(|| text(&v["Policy"]));
                html! { pre { (pretty) } }
            }))
            (part("Grants", &k.grants, |v| html! {
                table {
                    tr { th { "Grant" } th { "Grantee" } th { "Operations" } th { "Name" } }
                    @for g in v["Grants"].as_array().into_iter().flatten() {
                        tr {
                            td { code { (text(&g["GrantId"])) } }
                            td { (text(&g["GranteePrincipal"])) }
                            td { (g["Operations"].as_array().map(|o| o.iter().map(text).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                            td { (text(&g["Name"])) }
                        }
                    }
                }
            }))
            (part("Rotation", &k.rotation, |v| html! {
                table.meta {
                    tr { th { "Automatic rotation" } td { (text(&v["KeyRotationEnabled"])) } }
                    tr { th { "Period (days)" } td { (text(&v["RotationPeriodInDays"])) } }
                    tr { th { "Next rotation" } td { (date(&v["NextRotationDate"])) } }
                }
                div.actions {
                    @if v["KeyRotationEnabled"].as_bool() == Some(true) {
                        (action(s, &k.key_id, "disable-rotation", "Turn automatic rotation off", html! {}))
                    } @else {
                        (action(s, &k.key_id, "enable-rotation", "Turn automatic rotation on", html! {}))
                    }
                }
            }))
            (part("Rotations and materials", &k.rotations, |v| html! {
                @let list = v["Rotations"].as_array().cloned().unwrap_or_default();
                @if list.is_empty() { p.muted { "None yet." } } @else {
                    table {
                        tr { th { "Material" } th { "Rotated" } th { "Type" } th { "State" } th { "Import" } th { "Valid to" } }
                        @for r in &list {
                            tr {
                                td { code { (text(&r["KeyMaterialId"])) } }
                                td { (date(&r["RotationDate"])) }
                                td { (text(&r["RotationType"])) }
                                td { (text(&r["KeyMaterialState"])) }
                                td { (text(&r["ImportState"])) }
                                td { (date(&r["ValidTo"])) }
                            }
                        }
                    }
                }
            }))
            @if m["MultiRegion"].as_bool() == Some(true) {
                h2 { "Replicas" }
                @let config = &m["MultiRegionConfiguration"];
                table {
                    tr { th { "Key" } th { "Region" } th { "Role" } }
                    tr { td { code { (text(&config["PrimaryKey"]["Arn"])) } } td { (text(&config["PrimaryKey"]["Region"])) } td { "primary" } }
                    @for r in config["ReplicaKeys"].as_array().into_iter().flatten() {
                        tr { td { code { (text(&r["Arn"])) } } td { (text(&r["Region"])) } td { "replica" } }
                    }
                }
            }
            @if m["Origin"].as_str() == Some("EXTERNAL") {
                h2 { "Imported key material" }
                table.meta {
                    tr { th { "Expiration model" } td { (text(&m["ExpirationModel"])) } }
                    tr { th { "Valid to" } td { (date(&m["ValidTo"])) } }
                }
            }
            h2 { "Add" }
            div.actions {
                (action(s, &k.key_id, "create-alias", "Create alias", html! {
                    label { "Alias " input name="alias" value="alias/" size="30"; }
                }))
                (action(s, &k.key_id, "tag", "Tag", html! {
                    label { "Key " input name="tag_key" size="16"; }
                    label { " Value " input name="tag_value" size="24"; }
                }))
            }
        },
    )
}

/// The policy simulator's form (a GET: it changes nothing), with the last answer.
pub struct SimulatorPage {
    pub principal: String,
    pub action: String,
    pub key: String,
    pub context: String,
    pub answer: Option<Result<crate::domain::simulate::Simulation, String>>,
}

pub fn simulator(s: &Session, p: &SimulatorPage) -> Markup {
    let applied = |list: Vec<(String, &crate::domain::simulate::Applied)>| {
        html! {
            @if list.is_empty() { p.muted { "No statement applies." } }
            ul { @for (label, a) in list {
                li { (label) code { (a.statement) } " — " (if a.allow { "Allow" } else { "Deny" }) }
            } }
        }
    };
    page(
        "Policy simulator",
        Some(s),
        html! {
            h1 { "Policy simulator" }
            p.muted { "May a principal of your account perform an action on a key? Answered by the engine that authorizes every call." }
            form.simulator method="get" action="/console/simulate" {
                label { "Principal ARN " input name="principal" value=(p.principal) size="60"; }
                label { " Action " input name="action" value=(p.action) size="24"; }
                label { " Key " input name="key" value=(p.key) size="40"; }
                label { " Encryption context (JSON) " input name="context" value=(p.context) size="40"; }
                button type="submit" { "Simulate" }
            }
            @match &p.answer {
                None => {}
                Some(Err(e)) => p.error { (e) }
                Some(Ok(sim)) => {
                    @match &sim.denied {
                        None => h2.done { "Allowed" }
                        Some(m) => { h2.error { "Denied" } p { (m) } }
                    }
                    h3 { "Key policy" }
                    (applied(sim.key_policy.iter().map(|a| (String::new(), a)).collect()))
                    h3 { "Identity policies" }
                    (applied(sim.identity.iter().map(|(i, a)| (format!("policy {i}: "), a)).collect()))
                    h3 { "Grants" }
                    p { (if sim.grant { "A grant allows it." } else { "No grant allows it." }) }
                }
            }
        },
    )
}

/// The trail viewer's filters (its query string) and the events found.
pub struct TrailPage {
    pub event: String,
    pub key: String,
    pub text: String,
    pub errors: bool,
    pub from: String,
    pub to: String,
    /// (sequence number, time, event name, principal, key, error, row intact, body)
    pub rows: Vec<TrailRow>,
    pub error: Option<String>,
    /// The query for the next (older) page, if there may be one.
    pub older: Option<String>,
    /// Where a search that read its share of the trail before it filled the page stopped.
    pub stopped_at: Option<i64>,
}

pub struct TrailRow {
    pub seq: i64,
    pub time: String,
    pub event: String,
    pub principal: String,
    pub key: String,
    pub error: String,
    pub intact: bool,
}

pub fn trail(s: &Session, t: &TrailPage) -> Markup {
    page(
        "Audit trail",
        Some(s),
        html! {
            h1 { "Audit trail" }
            form.filters method="get" action="/console/trail" {
                input name="event" value=(t.event) placeholder="event (Decrypt)";
                input name="key" value=(t.key) placeholder="key ARN" size="40";
                input name="text" value=(t.text) placeholder="principal or access key";
                input name="from" value=(t.from) placeholder="from (2026-12-01T00:00:00Z)";
                input name="to" value=(t.to) placeholder="to";
                label { input type="checkbox" name="errors" value="1" checked[t.errors]; " failures only" }
                button type="submit" { "Filter" }
            }
            @if let Some(e) = &t.error { p.error { (e) } }
            table {
                thead { tr {
                    th { "#" } th { "Time" } th { "Event" } th { "Principal" } th { "Key" }
                    th { "Error" } th { "Row" }
                } }
                tbody { @for r in &t.rows {
                    tr {
                        td { a href={ "/console/trail/" (r.seq) } { (r.seq) } }
                        td { (r.time) } td { (r.event) } td { (r.principal) }
                        td { code { (r.key) } } td { (r.error) }
                        td { @if r.intact { "intact" } @else { strong.error { "ALTERED" } } }
                    }
                } }
            }
            @if let Some(n) = t.stopped_at { p { "This page's search read the trail down to event " (n) " and stopped there." } }
            @if let Some(q) = &t.older { p { a href={ "/console/trail?" (q) } { "Older events" } } }
        },
    )
}

/// One event, as the trail holds it.
pub fn event(s: &Session, seq: i64, intact: bool, body: &str) -> Markup {
    let pretty = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_string());
    page(
        "Event",
        Some(s),
        html! {
            p { a href="/console/trail" { "← Audit trail" } }
            h1 { "Event " (seq) }
            p { @if intact { "Its row hashes to what it records." } @else { strong.error { "Its row was altered in the database: it does not hash to what it records, or its columns do not say what it records." } } }
            pre { (pretty) }
        },
    )
}

/// Who can use a key, and through what (`/console/keys/{id}/access`).
pub fn access(s: &Session, key_id: &str, r: &crate::domain::simulate::AccessReview) -> Markup {
    let table = |entries: &[crate::domain::simulate::AccessEntry]| {
        html! {
            table.access {
                thead { tr { th { "Principal" } th { "Actions" } th { "Through" } } }
                tbody { @for e in entries {
                    tr {
                        td { code { (e.principal) } }
                        td { (e.actions.join(", ")) }
                        td { @for t in &e.through { (t) br; } }
                    }
                } }
            }
        }
    };
    page(
        "Access",
        Some(s),
        html! {
            p { a href={ "/console/keys/" (key_id) } { "← Key" } }
            h1 { "Who can use " code { (r.key_arn) } }
            p.muted { "Each principal of the key's account asked of the engine that authorizes every call, for the key's uses and its management; then the other accounts the key policy names, and the grants." }
            h2 { "Principals of this account" }
            @if r.principals.is_empty() { p.muted { "None." } } @else { (table(&r.principals)) }
            @if r.truncated { p.error { "The account has more principals than were reviewed." } }
            h2 { "Other accounts named by the key policy" }
            p.muted { "Their own account's identity policies must allow it too." }
            @if r.other_accounts.is_empty() { p.muted { "None." } } @else { (table(&r.other_accounts)) }
            h2 { "Grants" }
            @if r.grants.is_empty() { p.muted { "None." } } @else { (table(&r.grants)) }
        },
    )
}
