//! The console for operators and auditors, through real HTTP as a browser speaks it (forms,
//! cookies, redirects): sign-in with an access key, what each principal may see, and the
//! attacks on a web console — a page without a session, a forged CSRF token, a foreign origin,
//! markup in a key's description, a cookie whose access key was deactivated.

use crate::support::*;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use reqwest::StatusCode;

pub(crate) const ACCOUNT: &str = "123456789012";

/// A server with its console on a port of its own.
pub(crate) async fn with_console() -> Server {
    Server::start_with(&[("KMS_CONSOLE_LISTEN", "127.0.0.1:0")]).await
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The console's URL for `path` (`/console/keys`).
pub(crate) fn url(s: &Server, path: &str) -> String {
    let base = s.console.as_deref().expect("the console is on");
    format!("{}{path}", base.trim_end_matches("/console/"))
}

/// Sign in: the response, and the session cookie (`name=value`) if one was set.
pub(crate) async fn sign_in(
    s: &Server,
    id: &str,
    secret: &str,
) -> (reqwest::Response, Option<String>) {
    let r = browser()
        .post(url(s, "/console/sign-in"))
        .form(&[("access_key_id", id), ("secret_access_key", secret)])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    (r, cookie)
}

/// GET `path` with the session `cookie`: status, `Location`, body.
pub(crate) async fn get(s: &Server, path: &str, cookie: &str) -> (StatusCode, String, String) {
    let r = browser()
        .get(url(s, path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), location, r.text().await.unwrap())
}

/// The CSRF token of the page's forms.
pub(crate) fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    page[at..].split('"').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_shows_each_principal_only_the_keys_it_may_describe() {
    let s = with_console().await;
    let c = s.client();
    let mine = new_key(&c).await;
    let script = c
        .create_key()
        .description("<script>alert('owned')</script>")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;

    // Without a session: every page sends the browser to the sign-in form.
    let (status, location, _) = get(&s, "/console/keys", "").await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    let form = browser()
        .get(url(&s, "/console/sign-in"))
        .send()
        .await
        .unwrap();
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(form.headers()["cache-control"], "no-store");
    assert!(!form.text().await.unwrap().contains("<script"));

    // A wrong secret: refused, no cookie, recorded.
    let (r, cookie) = sign_in(&s, &s.access_key_id, "not-the-secret").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
    let (r, cookie) = sign_in(&s, "AKIAUNKNOWNKEY000000", &s.secret).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());

    // The right one: a session cookie a script cannot read, sent to this site only.
    let (r, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=900",
    ] {
        assert!(set.contains(flag), "{set}");
    }
    let admin = cookie.unwrap();
    let (status, _, page) = get(&s, "/console/keys", &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&mine) && page.contains(&script), "{page}");
    // Markup in a description is text, never markup.
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("&lt;script&gt;alert"));
    // Filters: only what matches.
    let (_, _, filtered) = get(&s, &format!("/console/keys?q={}", &script[..8]), &admin).await;
    assert!(filtered.contains(&script) && !filtered.contains(&mine));

    // A user whose identity policy allows listing, and describing one key only.
    let arn = describe(&c, &mine).await.arn.unwrap();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}},{{"Effect":"Allow","Action":"kms:DescribeKey","Resource":"{arn}"}}]}}"#
    );
    let (_, erin_id, erin_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "erin", Some(&policy)));
    let (_, erin) = sign_in(&s, &erin_id, &erin_secret).await;
    let (_, _, page) = get(&s, "/console/keys", &erin.unwrap()).await;
    assert!(page.contains(&mine) && !page.contains(&script), "{page}");
    assert!(
        page.contains("1 more you may list but not describe"),
        "{page}"
    );

    // Another account's user, allowed everything in its own account: none of these keys.
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let (_, other_id, other_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("111122223333", "tenant", Some(ALL)));
    let (_, other) = sign_in(&s, &other_id, &other_secret).await;
    let (status, _, page) = get(&s, "/console/keys", &other.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains(&mine) && !page.contains(&script), "{page}");

    // The trail: each sign-in and page, under its principal; the failures; never a secret.
    let trail = s
        .db
        .strings("SELECT body FROM audit_events WHERE event_name IN ('ConsoleLogin', 'ListKeys')")
        .await
        .join("\n");
    assert!(
        trail.contains("ConsoleLogin") && trail.contains("erin"),
        "{trail}"
    );
    assert!(trail.contains("AuthenticationFailed"), "{trail}");
    assert!(trail.contains("kms-console"), "{trail}");
    assert!(!trail.contains(&s.secret) && !trail.contains(&erin_secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_csrf_token_a_foreign_origin_or_a_deactivated_key_change_nothing() {
    let s = with_console().await;
    const LIST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "frank", Some(LIST)));
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let (_, _, page) = get(&s, "/console/keys", &cookie).await;
    let csrf = csrf_of(&page);

    // Sign-out with a forged token, or posted from another site: refused, the session lives.
    let post = |form: Vec<(&'static str, String)>, origin: Option<&'static str>| {
        let mut r = browser()
            .post(url(&s, "/console/sign-out"))
            .header("cookie", cookie.clone())
            .form(&form);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    let forged = post(vec![("csrf", "0".repeat(64))], None).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let none = post(vec![], None).await.unwrap();
    assert_eq!(none.status(), StatusCode::FORBIDDEN);
    let foreign = post(vec![("csrf", csrf.clone())], Some("http://evil.example"))
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&s, "/console/keys", &cookie).await.0, StatusCode::OK);
    // The right token: signed out, the cookie cleared, and worth nothing after.
    let out = post(vec![("csrf", csrf)], None).await.unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        get(&s, "/console/keys", &cookie).await.0,
        StatusCode::SEE_OTHER
    );

    // A session whose access key is deactivated ends with it.
    let (_, frank) = sign_in(&s, &id, &secret).await;
    let frank = frank.expect("signed in");
    assert_eq!(get(&s, "/console/keys", &frank).await.0, StatusCode::OK);
    let out = tokio::task::block_in_place(|| {
        s.admin(&["deactivate-access-key", "--access-key-id", &id], &[])
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = async {
        for _ in 0..50 {
            if get(&s, "/console/keys", &frank).await.0 == StatusCode::SEE_OTHER {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        false
    };
    assert!(ended.await, "the deactivated key's session still works");
    // And a cookie nobody was given is no session.
    let (status, location, _) = get(&s, "/console/keys", "kms_console=00ff").await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
}

/// POST a key page's action with the session's CSRF token: where the browser is sent next.
async fn act(s: &Server, cookie: &str, key: &str, action: &str, form: &[(&str, &str)]) -> String {
    let (_, _, page) = get(s, &format!("/console/keys/{key}"), cookie).await;
    let csrf = csrf_of(&page);
    let mut fields = vec![("csrf", csrf.as_str())];
    fields.extend_from_slice(form);
    let r = browser()
        .post(url(s, &format!("/console/keys/{key}/{action}")))
        .header("cookie", cookie)
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_page_shows_its_parts_and_its_actions_are_api_calls() {
    let s = with_console().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.create_alias()
        .alias_name("alias/payments")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    c.tag_resource()
        .key_id(&key)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("team")
                .tag_value("<b>billing</b>")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let (status, _, page) = get(&s, &format!("/console/keys/{key}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    for part in [
        "alias/payments",
        "team",
        "&lt;b&gt;billing&lt;/b&gt;",
        "&quot;Version&quot;",
        "Disable",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }

    // Rotations, aliases and tags from the page, each the API call it is.
    let to = act(&s, &cookie, &key, "enable-rotation", &[]).await;
    assert!(to.ends_with("?done=EnableKeyRotation"), "{to}");
    let to = act(
        &s,
        &cookie,
        &key,
        "create-alias",
        &[("alias", "alias/from-console")],
    )
    .await;
    assert!(to.ends_with("?done=CreateAlias"), "{to}");
    let to = act(
        &s,
        &cookie,
        &key,
        "create-alias",
        &[("alias", "not-an-alias")],
    )
    .await;
    assert!(to.contains("?error="), "{to}");
    let to = act(
        &s,
        &cookie,
        &key,
        "tag",
        &[("tag_key", "owner"), ("tag_value", "ops")],
    )
    .await;
    assert!(to.ends_with("?done=TagResource"), "{to}");
    let (_, _, page) = get(&s, &format!("/console/keys/{key}"), &cookie).await;
    for part in [
        "alias/from-console",
        "owner",
        "ops",
        "Turn automatic rotation off",
        "Rotations and materials",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }
    let aliases = c
        .list_aliases()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .aliases
        .unwrap();
    assert!(aliases
        .iter()
        .any(|a| a.alias_name.as_deref() == Some("alias/from-console")));

    // Disable: the API answers DisabledException from then on, and the trail has the call.
    let to = act(&s, &cookie, &key, "disable", &[]).await;
    assert_eq!(to, format!("/console/keys/{key}?done=DisableKey"));
    let refused = c
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(refused), "DisabledException");
    let (_, _, page) = get(&s, &to, &cookie).await;
    assert!(
        page.contains("DisableKey: done.") && page.contains("Enable"),
        "{page}"
    );
    let trail =
        s.db.strings("SELECT body FROM audit_events WHERE event_name = 'DisableKey'")
            .await
            .join("\n");
    assert!(
        trail.contains("kms-console") && trail.contains(&key),
        "{trail}"
    );

    // Deletion needs the key id typed; then it is scheduled, and can be cancelled.
    let to = act(
        &s,
        &cookie,
        &key,
        "schedule-deletion",
        &[("days", "7"), ("confirm", "")],
    )
    .await;
    assert!(to.ends_with("?error=ConfirmationMissing"), "{to}");
    let to = act(
        &s,
        &cookie,
        &key,
        "schedule-deletion",
        &[("days", "7"), ("confirm", &key)],
    )
    .await;
    assert!(to.ends_with("?done=ScheduleKeyDeletion"), "{to}");
    let state = describe(&c, &key).await.key_state;
    assert_eq!(state, Some(aws_sdk_kms::types::KeyState::PendingDeletion));
    // A refusal of the API is shown as its exception.
    let to = act(&s, &cookie, &key, "rotate", &[]).await;
    assert!(to.contains("?error="), "{to}");
    let to = act(&s, &cookie, &key, "cancel-deletion", &[]).await;
    assert!(to.ends_with("?done=CancelKeyDeletion"), "{to}");

    // Another account's principal naming this key in a URL: not found, and no action.
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let (_, other_id, other_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("111122223333", "tenant", Some(ALL)));
    let (_, other) = sign_in(&s, &other_id, &other_secret).await;
    let other = other.unwrap();
    let (status, _, page) = get(&s, &format!("/console/keys/{key}"), &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("alias/payments"));
    let (_, _, own_page) = get(&s, "/console/keys", &other).await;
    let csrf = csrf_of(&own_page);
    let r = browser()
        .post(url(&s, &format!("/console/keys/{key}/enable")))
        .header("cookie", other.clone())
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("?error="));
    let state = describe(&c, &key).await.key_state;
    assert_eq!(state, Some(aws_sdk_kms::types::KeyState::Disabled));
    // A path that is no key id is not looked up.
    let (status, _, _) = get(&s, "/console/keys/..%2F..%2Fetc", &cookie).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_simulator_answers_with_the_statements_that_decided() {
    let s = with_console().await;
    let c = s.client();
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let (dave, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "dave", Some(ALL)));
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"RootAccess","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},{{"Sid":"NoDecryptForDave","Effect":"Deny","Principal":{{"AWS":"{dave}"}},"Action":"kms:Decrypt","Resource":"*"}}]}}"#
    );
    let key = c
        .create_key()
        .policy(policy)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let ask = |principal: String, action: &str| {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("principal", &principal)
            .append_pair("action", action)
            .append_pair("key", &key)
            .append_pair("context", r#"{"purpose":"test"}"#)
            .finish();
        format!("/console/simulate?{q}")
    };
    let (status, _, page) = get(&s, &ask(dave.clone(), "kms:Decrypt"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Denied") && page.contains("NoDecryptForDave"),
        "{page}"
    );
    let (_, _, page) = get(&s, &ask(dave.clone(), "kms:Encrypt"), &cookie).await;
    assert!(
        page.contains("Allowed") && page.contains("RootAccess"),
        "{page}"
    );
    assert!(page.contains("policy 1:"), "{page}");
    // Only principals of one's own account.
    let (_, _, page) = get(
        &s,
        &ask("arn:aws:iam::111122223333:user/x".into(), "kms:Encrypt"),
        &cookie,
    )
    .await;
    assert!(page.contains("ValidationException"), "{page}");
    // Only on a key whose policy the asker may read.
    const LIST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "gina", Some(LIST)));
    let (_, gina) = sign_in(&s, &id, &secret).await;
    let (_, _, page) = get(&s, &ask(dave.clone(), "kms:Encrypt"), &gina.unwrap()).await;
    assert!(
        page.contains("AccessDeniedException") && !page.contains("RootAccess"),
        "{page}"
    );
    let trail =
        s.db.strings("SELECT body FROM audit_events WHERE event_name = 'ConsoleSimulatePolicy'")
            .await;
    assert_eq!(trail.len(), 4, "{trail:?}");
    // Each says whom and what was asked of (before, only the key: the principals probed were
    // nowhere in the trail).
    assert!(
        trail
            .iter()
            .all(|b| b.contains(r#""principal":"#) && b.contains(r#""action":"#)),
        "{trail:?}"
    );
    assert!(trail.iter().any(|b| b.contains(&dave)), "{trail:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trail_viewer_shows_an_accounts_events_and_flags_an_altered_row() {
    let s = with_console().await;
    let c = s.client();
    let key = new_key(&c).await;
    let arn = describe(&c, &key).await.arn.unwrap();
    let other = new_key(&c).await;
    c.disable_key().key_id(&key).send().await.unwrap();
    let refused = c
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(refused), "DisabledException");
    // Reading the trail takes `cloudtrail:LookupEvents` (AWS's action for the event history):
    // the administrator's `kms:*` is not enough; an auditor of the account is allowed it.
    let (_, admin) = sign_in(&s, &s.access_key_id, &s.secret).await;
    assert_eq!(
        get(&s, "/console/trail", &admin.unwrap()).await.0,
        StatusCode::FORBIDDEN
    );
    const AUDITOR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudtrail:LookupEvents","kms:ListKeys"],"Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "ivy", Some(AUDITOR)));
    let (_, cookie) = sign_in(&s, &id, &secret).await;
    let cookie = cookie.unwrap();

    let (status, _, page) = get(&s, "/console/trail", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("CreateKey") && page.contains("ConsoleLogin"),
        "{page}"
    );
    // Filters: by event, by key, failures only; a text with LIKE's wildcards is literal.
    let (_, _, page) = get(&s, "/console/trail?event=DisableKey", &cookie).await;
    assert!(
        page.contains("DisableKey") && !page.contains("ConsoleLogin"),
        "{page}"
    );
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("key", &arn)
        .finish();
    let (_, _, page) = get(&s, &format!("/console/trail?{q}"), &cookie).await;
    assert!(page.contains(&key) && !page.contains(&other), "{page}");
    // A successful call whose encryption context names `errorCode` is no failure (before, the
    // filter matched the text anywhere in the event, so callers padded the failures view).
    c.encrypt()
        .key_id(&other)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .encryption_context("errorCode", "x")
        .send()
        .await
        .unwrap();
    let (_, _, page) = get(&s, "/console/trail?errors=1", &cookie).await;
    assert!(
        page.contains("DisabledException") && !page.contains(">CreateKey<"),
        "{page}"
    );
    assert!(!page.contains(&other), "{page}");
    let (_, _, page) = get(&s, "/console/trail?text=%25", &cookie).await;
    assert!(!page.contains("CreateKey"), "{page}");
    // By time: everything is after 2000, nothing before.
    let (_, _, page) = get(&s, "/console/trail?from=2000-01-01T00:00:00Z", &cookie).await;
    assert!(page.contains("DisableKey"), "{page}");
    let (_, _, page) = get(&s, "/console/trail?to=2000-01-01T00:00:00Z", &cookie).await;
    assert!(!page.contains("DisableKey"), "{page}");

    // One event; and a row edited in the database is shown as altered.
    let seq =
        s.db.int("SELECT max(seq) FROM audit_events WHERE event_name = 'DisableKey'")
            .await;
    let (status, _, page) = get(&s, &format!("/console/trail/{seq}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("&quot;eventName&quot;: &quot;DisableKey&quot;")
            && page.contains("hashes to what it records"),
        "{page}"
    );
    s.db.execute(&format!(
        "UPDATE audit_events SET body = replace(body, 'DisableKey', 'EnableKey') WHERE seq = {seq}"
    ))
    .await;
    let (_, _, page) = get(&s, &format!("/console/trail/{seq}"), &cookie).await;
    assert!(page.contains("was altered in the database"), "{page}");

    // A principal its identity policies do not allow to read the trail: refused.
    const LIST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "hal", Some(LIST)));
    let (_, hal) = sign_in(&s, &id, &secret).await;
    let (status, _, page) = get(&s, "/console/trail", &hal.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        page.contains("AccessDeniedException") && !page.contains("CreateKey"),
        "{page}"
    );
    // Another account's auditor: its own account's events only.
    let (_, id, secret, _) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("111122223333", "auditor", Some(AUDITOR))
    });
    let (_, auditor) = sign_in(&s, &id, &secret).await;
    let auditor = auditor.unwrap();
    let (status, _, page) = get(&s, "/console/trail", &auditor).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("ConsoleLogin") && !page.contains(&key) && !page.contains("CreateKey"),
        "{page}"
    );
    let (status, _, _) = get(&s, &format!("/console/trail/{seq}"), &auditor).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_pages_through_every_key_and_filters_across_pages() {
    let s = with_console().await;
    let c = s.client();
    let mut made = Vec::new();
    for i in 0..105 {
        let mut req = c.create_key();
        if i == 104 {
            req = req.description("the needle");
        }
        made.push(req.send().await.unwrap().key_metadata.unwrap().key_id);
    }
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let shown = |page: &str| made.iter().filter(|k| page.contains(k.as_str())).count();
    let (status, _, first) = get(&s, "/console/keys", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown(&first), 100, "{first}");
    assert!(first.contains("100 keys on this page"), "{first}");
    let at = first
        .find("href=\"/console/keys?marker=")
        .expect("a next page")
        + 6;
    let next = first[at..].split('"').next().unwrap().replace("&amp;", "&");
    let (_, _, second) = get(&s, &next, &cookie).await;
    assert_eq!(shown(&second), 5, "{second}");
    assert!(!second.contains("Next page"), "{second}");
    // A filter looks through more than one page of keys.
    let (_, _, found) = get(&s, "/console/keys?q=needle", &cookie).await;
    assert_eq!(shown(&found), 1, "{found}");
    assert!(found.contains(&made[104]));
    // A marker that is no key id is not used.
    let (status, _, _) = get(&s, "/console/keys?marker=%27%3B--", &cookie).await;
    assert_eq!(status, StatusCode::OK);

    // Filters by rotation, tag and custom key store; last use and next rotation shown.
    c.enable_key_rotation()
        .key_id(&made[3])
        .send()
        .await
        .unwrap();
    c.tag_resource()
        .key_id(&made[7])
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("team")
                .tag_value("blue")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.encrypt()
        .key_id(&made[7])
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    let (_, _, rotating) = get(&s, "/console/keys?rotation=on", &cookie).await;
    assert_eq!(shown(&rotating), 1, "{rotating}");
    assert!(
        rotating.contains(&made[3]) && rotating.contains("next "),
        "{rotating}"
    );
    let (_, _, tagged) = get(&s, "/console/keys?tag=team%3Dblue", &cookie).await;
    assert_eq!(shown(&tagged), 1, "{tagged}");
    assert!(
        tagged.contains(&made[7]) && !tagged.contains(">never<"),
        "{tagged}"
    );
    let (_, _, other_tag) = get(&s, "/console/keys?tag=team%3Dred", &cookie).await;
    assert_eq!(shown(&other_tag), 0, "{other_tag}");
    let (_, _, in_stores) = get(&s, "/console/keys?store=any", &cookie).await;
    assert_eq!(shown(&in_stores), 0, "{in_stores}");
    assert!(first.contains(">never<"), "{first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_credentials_cannot_sign_in() {
    // A role's temporary credentials (an `ASIA…` key, its secret and its session token) work
    // for the API; the console takes long-term access keys only, so the key id and secret of a
    // session (which leaked without its token, say) open nothing.
    let s = with_console().await;
    let (alice_arn, alice_id, alice_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "alice", None));
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"sts:AssumeRole","Resource":"*"}}]}}"#
    );
    let role = tokio::task::block_in_place(|| s.create_role(ACCOUNT, "console-role", &trust));
    tokio::task::block_in_place(|| s.put_user_policy(&role, "use", crate::access::ALL));
    let creds = crate::roles::sts(&s, &alice_id, &alice_secret)
        .assume_role()
        .role_arn(&role)
        .role_session_name("web")
        .send()
        .await
        .unwrap()
        .credentials
        .unwrap();
    let session = crate::roles::kms_with_session(&s, &creds);
    assert!(session.list_keys().send().await.is_ok());
    let (r, cookie) = sign_in(&s, &creds.access_key_id, &creds.secret_access_key).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie.is_none());
}

/// The inventory's cryptoperiod column: the time since a key's creation or last rotation
/// against its rotation period, or 365 days for a key without automatic rotation; and the
/// inventory report says the same of each key. An RSA key (it cannot rotate) is judged, not
/// reported as unreadable.
#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_shows_whether_each_key_keeps_its_cryptoperiod() {
    let dir = tempfile::tempdir().unwrap().keep();
    let clock = dir.join("clock-offset");
    std::fs::write(&clock, "0").unwrap();
    let s = Server::start_with(&[
        ("KMS_CONSOLE_LISTEN", "127.0.0.1:0"),
        ("KMS_CLOCK_OFFSET_FILE", clock.to_str().unwrap()),
        ("KMS_ENABLE_TEST_HOOKS", "true"),
        ("KMS_SCHEDULER_INTERVAL_MS", "50"),
    ])
    .await;
    let c = s.client();
    let kept = new_key(&c).await;
    let rotating = new_key(&c).await;
    let rsa = new_key_with(&c, KeySpec::Rsa2048, KeyUsageType::SignVerify).await;
    let rsa = rsa.key_id;
    c.enable_key_rotation()
        .key_id(&rotating)
        .rotation_period_in_days(400)
        .send()
        .await
        .unwrap();
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let row = |page: &str, key: &str| {
        let at = page.find(&format!("/console/keys/{key}")).expect(key);
        page[at..].split("</tr>").next().unwrap().to_string()
    };
    let (_, _, now) = get(&s, "/console/keys", &cookie).await;
    for k in [&kept, &rotating, &rsa] {
        assert!(row(&now, k).contains("within"), "{}", row(&now, k));
    }
    assert!(row(&now, &rotating).contains("400 d"), "{now}");
    assert!(row(&now, &kept).contains("365 d"), "{now}");

    // 380 days on: the keys without rotation are past 365 days; the rotating one (400) is not.
    s.advance_days(380);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (_, _, later) = get(&s, "/console/keys", &cookie).await;
    for k in [&kept, &rsa] {
        assert!(
            row(&later, k).contains("exceeded by 15 days"),
            "{}",
            row(&later, k)
        );
    }
    assert!(row(&later, &rotating).contains("within"), "{later}");
    let (_, _, exceeded) = get(&s, "/console/keys?period=exceeded", &cookie).await;
    assert!(
        exceeded.contains(kept.as_str())
            && exceeded.contains(rsa.as_str())
            && !exceeded.contains(rotating.as_str()),
        "{exceeded}"
    );
    let (_, _, within) = get(&s, "/console/keys?period=within", &cookie).await;
    assert!(
        within.contains(rotating.as_str()) && !within.contains(kept.as_str()),
        "{within}"
    );

    // The inventory report: the same verdicts, and no key reported as unreadable.
    let (status, _, csv) = get(&s, "/console/reports/inventory.csv", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let line = |k: &str| {
        csv.lines()
            .find(|l| l.contains(k))
            .unwrap_or_else(|| panic!("{k} in {csv}"))
            .to_string()
    };
    assert!(line(&rsa).contains("exceeded by 15 days"), "{csv}");
    assert!(line(&kept).contains("exceeded by 15 days"), "{csv}");
    assert!(line(&rotating).contains(",400,within"), "{csv}");
    assert!(!csv.contains("may not read every part"), "{csv}");
    // The one column a database writer can change unseen is said to be so.
    assert!(
        csv.contains("# note: A key's description (its purpose) is shown as stored"),
        "{csv}"
    );
}

/// A database writer who edits a sealed column of a key's row (its usage, here) does not get
/// the edit shown by the console as the key's: the inventory checks each page's rows before it
/// shows them, at once for a cold page, and a row that fails is left out as one the principal
/// cannot describe. Put back, the key shows again. (A description is shown, never decides, and
/// is not sealed: the tamper matrix lists it so.)
#[tokio::test(flavor = "multi_thread")]
async fn the_inventory_never_shows_a_key_row_written_with_sql() {
    let s = with_console().await;
    let c = s.client();
    let honest = c.create_key().description("honest").send().await.unwrap();
    let key = honest.key_metadata.unwrap().key_id;
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let (_, _, page) = get(&s, "/console/keys", &cookie).await;
    assert!(page.contains("honest"), "{page}");
    let id = s.db.key(&key);
    let set = |usage: &str| format!("UPDATE keys SET key_usage = '{usage}' WHERE key_id = {id}");
    s.db.execute(&set("SIGN_VERIFY")).await;
    let mut shown = String::new();
    for _ in 0..75 {
        shown = get(&s, "/console/keys", &cookie).await.2;
        if !shown.contains("honest") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        !shown.contains("SIGN_VERIFY</td>") && !shown.contains(key.as_str()),
        "{shown}"
    );
    assert!(
        shown.contains("1 more you may list but not describe"),
        "{shown}"
    );
    s.db.execute(&set("ENCRYPT_DECRYPT")).await;
    let mut back = String::new();
    for _ in 0..75 {
        back = get(&s, "/console/keys", &cookie).await.2;
        if back.contains("honest") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        back.contains(key.as_str()) && back.contains("honest"),
        "{back}"
    );
}

/// The flood through the console: the pages read the trail, inventories and policies straight
/// from the domain, outside the API's request quotas, so one account's signed-in user could ask
/// page after page with no limit. Each page now takes one request of its account's management
/// rate: past it the account is answered 429, another account is still served, and signing out
/// is never throttled.
#[tokio::test(flavor = "multi_thread")]
async fn console_pages_count_against_the_accounts_request_rate() {
    let s = Server::start_with(&[
        ("KMS_CONSOLE_LISTEN", "127.0.0.1:0"),
        ("KMS_QUOTA__MANAGEMENT_PER_SECOND", "3"),
    ])
    .await;
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("111122223333", "tenant", Some(ALL)));
    let (_, flooder) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let (_, other) = sign_in(&s, &id, &secret).await;
    let (flooder, other) = (flooder.unwrap(), other.unwrap());
    let mut statuses = Vec::new();
    let mut csrf = None;
    for _ in 0..12 {
        let (status, _, page) = get(&s, "/console/keys", &flooder).await;
        if status == StatusCode::OK {
            csrf = Some(csrf_of(&page));
        }
        statuses.push(status);
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(get(&s, "/console/keys", &other).await.0, StatusCode::OK);
    let out = browser()
        .post(url(&s, "/console/sign-out"))
        .header("cookie", flooder.clone())
        .form(&[("csrf", csrf.expect("a page was served first"))])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
}

/// The sign-in flood: one access key signing in again and again. Each sign-in counts against
/// its account's share (a page does too), and a key holds at most ten live sessions (the
/// eleventh ends the oldest). Before, a successful sign-in was never throttled and every one
/// added a session for fifteen minutes, each insert scanning them all.
#[tokio::test(flavor = "multi_thread")]
async fn signing_in_again_and_again_is_throttled_and_holds_ten_sessions() {
    let s = Server::start_with(&[
        ("KMS_CONSOLE_LISTEN", "127.0.0.1:0"),
        ("KMS_QUOTA__MANAGEMENT_PER_SECOND", "1000"),
    ])
    .await;
    let mut cookies = Vec::new();
    for _ in 0..11 {
        let (r, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        cookies.push(cookie.unwrap());
    }
    let (status, location, _) = get(&s, "/console/keys", &cookies[0]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in"),
        "the oldest session was ended"
    );
    for c in &cookies[1..] {
        assert_eq!(get(&s, "/console/keys", c).await.0, StatusCode::OK);
    }
    drop(s);
    let s = Server::start_with(&[
        ("KMS_CONSOLE_LISTEN", "127.0.0.1:0"),
        ("KMS_QUOTA__MANAGEMENT_PER_SECOND", "2"),
    ])
    .await;
    let (r, first) = sign_in(&s, &s.access_key_id, &s.secret).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..20 {
        let (r, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(cookie.is_none());
        }
        *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
    }
    assert!(statuses.get(&429) >= Some(&5), "{statuses:?}");
    // The throttled sign-ins ended no session: with fewer than ten let in, the first one lives.
    assert!(statuses.get(&303) < Some(&9), "{statuses:?}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status, _, _) = get(&s, "/console/keys", &first.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{statuses:?}");
}

/// Behind a TLS-terminating proxy listed in `trusted_proxies`, the console serves the client
/// the proxy names: the sign-in cookie is the `Secure` `__Host-` one when the proxy took HTTPS,
/// and one client's failed sign-ins throttle that client, not every client behind the proxy.
/// Without the setting the same headers change nothing: every caller is the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_proxy_the_console_serves_the_proxys_client() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("proxy.toml");
    std::fs::write(&conf, "trusted_proxies = [\"127.0.0.0/8\"]\n").unwrap();
    let common = [
        ("KMS_CONSOLE_LISTEN", "127.0.0.1:0"),
        ("KMS_QUOTA__AUTH_FAILURES_PER_SECOND", "1"),
        ("KMS_QUOTA__AUTH_FAILURE_BURST", "3"),
    ];
    let mut with_proxy = common.to_vec();
    with_proxy.push(("KMS_CONFIG", conf.to_str().unwrap()));
    let behind = Server::start_with(&with_proxy).await;
    let direct = Server::start_with(&common).await;
    for (s, trusted) in [(&behind, true), (&direct, false)] {
        let from = |client: &'static str, secret: &str| {
            browser()
                .post(url(s, "/console/sign-in"))
                .header("x-forwarded-for", client)
                .header("x-forwarded-proto", "https")
                .form(&[
                    ("access_key_id", s.access_key_id.as_str()),
                    ("secret_access_key", secret),
                ])
                .send()
        };
        let r = from("203.0.113.9", &s.secret).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(
            set.starts_with("__Host-kms_console=") && set.contains("; Secure;"),
            trusted,
            "{set}"
        );
        for _ in 0..6 {
            from("203.0.113.9", "not-the-secret").await.unwrap();
        }
        let again = from("203.0.113.9", &s.secret).await.unwrap();
        assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
        let other = from("198.51.100.2", &s.secret).await.unwrap();
        let expected = if trusted {
            StatusCode::SEE_OTHER
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(other.status(), expected, "trusted {trusted}");
    }
}

/// The sign-in form is anyone's to fill: an access key id holding a line break (to forge a log
/// line for the operators who read the service's log) or a secret pasted in the wrong field is
/// refused and not written to the log; a refused id of the right form is logged. Before, such
/// an id panicked the request's task inside `aws-sigv4` (the connection dropped, no answer),
/// and the field was logged as typed, line breaks and terminal escapes included.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_sign_in_cannot_write_lines_into_the_log() {
    let s = with_console().await;
    let forged =
        "AKIA0000\n2026-01-01T00:00:00Z  INFO kms::console: FORGED sign-in succeeded\u{1b}[2J";
    let (r, _) = sign_in(&s, forged, "x").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (r, _) = sign_in(&s, "AKIAQQQQQQQQQQQQQQQQ", "wrong").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let log = s.server_log();
    assert!(!log.contains("FORGED"), "{log}");
    assert!(!log.contains("[2J"), "{log}");
    assert!(log.contains("(not an access key id)"));
    assert!(log.contains("AKIAQQQQQQQQQQQQQQQQ"));
}

/// The console's unauthenticated and same-site floods, each first watched to succeed:
/// - a failed sign-in's event kept the whole `User-Agent` (400 KiB a failure, chained for
///   good): now its first 256 characters, as the API keeps;
/// - a form sent one byte at a time held its connection for as long as the client liked: now
///   it is answered 408 within the body timeout, and a declared length over the form limit at
///   once;
/// - every POST from another origin wrote its headers, whole, to the log: now the 1st, 2nd,
///   4th… refusal is logged;
/// - a page of a sibling host (same site, so the `SameSite=Strict` cookie goes with it) could
///   make a signed-in auditor's browser run exports and searches: now only a followed link to a
///   plain page is served from outside the console's own pages.
#[tokio::test(flavor = "multi_thread")]
async fn the_consoles_floods_and_sibling_pages_are_bounded() {
    let s = Server::start_with(&[
        ("KMS_CONSOLE_LISTEN", "127.0.0.1:0"),
        ("KMS_REQUEST_TIMEOUT_MS", "2000"),
    ])
    .await;
    // The agent, 100 KiB.
    let agent = format!("flood-{}", "u".repeat(100 * 1024));
    let r = browser()
        .post(url(&s, "/console/sign-in"))
        .header("user-agent", agent.as_str())
        .form(&[
            ("access_key_id", "AKIAQQQQQQQQQQQQQQQQ"),
            ("secret_access_key", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let bodies =
        s.db.strings("SELECT body FROM audit_events WHERE body LIKE '%flood-%'")
            .await;
    assert_eq!(bodies.len(), 1, "the failed sign-in is recorded");
    assert!(bodies[0].len() < 4096, "{} bytes", bodies[0].len());

    // A slow form, and a form too long by its own word.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = url(&s, "")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let mut c = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /console/sign-in HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\na"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 256];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), c.read(&mut answer))
        .await
        .expect("answered before the client finished sending")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let mut c = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /console/sign-in HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 413"));

    // Ten POSTs from another origin: four log lines (the 1st, 2nd, 4th, 8th).
    for _ in 0..10 {
        let r = browser()
            .post(url(&s, "/console/sign-out"))
            .header(
                "origin",
                format!("https://evil.example{}", "x".repeat(4096)),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let log = s.server_log();
    let lines: Vec<_> = log
        .lines()
        .filter(|l| l.contains("console POST from another origin refused"))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.len() < 2048));

    // Signed in: what a sibling host's page may make the browser fetch.
    const AUDITOR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudtrail:LookupEvents","kms:ListKeys"],"Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "auditor", Some(AUDITOR)));
    let (_, cookie) = sign_in(&s, &id, &secret).await;
    let cookie = cookie.unwrap();
    let fetch = |path: &'static str, site: &'static str, mode: &'static str, dest: &'static str| {
        let cookie = cookie.clone();
        let s = &s;
        async move {
            browser()
                .get(url(s, path))
                .header("cookie", cookie)
                .header("sec-fetch-site", site)
                .header("sec-fetch-mode", mode)
                .header("sec-fetch-dest", dest)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let exports = || async {
        s.db.int("SELECT count(*) FROM audit_events WHERE event_name = 'ConsoleExportTrail'")
            .await
    };
    for (site, mode, dest) in [
        ("same-site", "no-cors", "image"),
        ("cross-site", "no-cors", "image"),
        ("same-site", "navigate", "document"),
    ] {
        assert_eq!(
            fetch("/console/audit/export", site, mode, dest).await,
            StatusCode::FORBIDDEN,
            "{site} {mode} {dest}"
        );
        assert_eq!(
            fetch("/console/trail?text=x", site, mode, dest).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(exports().await, 0, "no export ran");
    assert_eq!(
        fetch("/console/keys", "same-site", "navigate", "document").await,
        StatusCode::OK,
        "a link followed to a plain page"
    );
    assert_eq!(
        fetch("/console/keys", "same-site", "no-cors", "image").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        fetch(
            "/console/audit/export",
            "same-origin",
            "navigate",
            "document"
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(exports().await, 1);
}
