//! The console's pages, rendered on the server (maud: compiled into the binary, every value
//! escaped). No script, no inline style: the Content-Security-Policy forbids both.

use super::session::Session;
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
.signin label{display:block;margin:.8em 0 .2em}.signin input{width:100%;box-sizing:border-box}";

fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
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
pub fn sign_in(error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
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
    }
}

/// One row of the inventory: a key the principal may describe, and its aliases.
pub struct KeyRow {
    pub meta: KeyMetadata,
    pub aliases: Vec<String>,
}

/// The key inventory: the keys the signed-in principal may list and describe.
pub fn keys(session: &Session, filter: &KeyFilter, rows: &[KeyRow], hidden: usize) -> Markup {
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
                button type="submit" { "Filter" }
            }
            p.muted {
                (rows.len()) " keys"
                @if hidden > 0 { " (" (hidden) " more you may list but not describe)" }
            }
            table {
                thead { tr {
                    th { "Key" } th { "Aliases" } th { "State" } th { "Spec" } th { "Usage" }
                    th { "Origin" } th { "Created" } th { "Custom key store" } th { "Description" }
                } }
                tbody {
                    @for r in rows {
                        tr {
                            td { code { (r.meta.key_id) } }
                            td { @for a in &r.aliases { code { (a) } " " } }
                            td { (r.meta.key_state.to_string()) }
                            td { (r.meta.key_spec.to_string()) }
                            td { (r.meta.key_usage.to_string()) }
                            td { (r.meta.origin.to_string()) }
                            td { (r.meta.created_at.format("%Y-%m-%d %H:%M UTC")) }
                            td { @if let Some((id, _)) = &r.meta.custom_key_store { code { (id) } } }
                            td { (r.meta.description) }
                        }
                    }
                }
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
