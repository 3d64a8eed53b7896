//! The console's audit side: who can use a key and through what, the chain's integrity page
//! (checkpoint, verification, export), and the signed compliance reports an auditor checks
//! later with `kms audit verify --report` — and the attacks on them: a report edited after it
//! was signed, a trail rewritten after a report, a row altered in the database, another
//! account's auditor.

use crate::console::{browser, csrf_of, get, sign_in, url, with_console, ACCOUNT};
use crate::support::*;
use reqwest::StatusCode;

const AUDITOR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["cloudtrail:LookupEvents","kms:ListKeys","kms:ListAliases","kms:DescribeKey","kms:GetKeyPolicy","kms:ListGrants","kms:GetKeyRotationStatus","kms:ListKeyRotations","kms:GetKeyLastUsage"],"Resource":"*"}]}"#;

/// GET a file: status, `Content-Disposition`, bytes.
async fn download(s: &Server, path: &str, cookie: &str) -> (StatusCode, String, Vec<u8>) {
    let r = browser()
        .get(url(s, path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let disposition = r
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (r.status(), disposition, r.bytes().await.unwrap().to_vec())
}

/// `kms audit verify` with `args`: success, and what it printed.
fn verify(s: &Server, args: &[&str]) -> (bool, String) {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    let out = s.kms(&all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// Another account's administrator and auditor, signed in: its session cookie.
async fn tenant(s: &Server) -> String {
    const OTHER: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:*","cloudtrail:LookupEvents"],"Resource":"*"}]}"#;
    let (_, id, secret, _) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("111122223333", "tenant", Some(OTHER))
    });
    sign_in(s, &id, &secret).await.1.expect("signed in")
}

/// An auditor of the account, signed in: its session cookie.
async fn auditor(s: &Server, name: &str) -> String {
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, name, Some(AUDITOR)));
    sign_in(s, &id, &secret).await.1.expect("signed in")
}

#[tokio::test(flavor = "multi_thread")]
async fn reports_are_signed_and_kms_audit_verify_catches_any_change() {
    let s = with_console().await;
    let c = s.client();
    let rotating = new_key(&c).await;
    c.enable_key_rotation()
        .key_id(&rotating)
        .send()
        .await
        .unwrap();
    let formula = c
        .create_key()
        .description("=HYPERLINK(\"http://evil.example\",\"click\")")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let retiring = new_key(&c).await;
    c.schedule_key_deletion()
        .key_id(&retiring)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let cookie = auditor(&s, "ada").await;

    // The public key, from the console, in the PEM `kms audit verify` takes.
    let (status, _, pem) = download(&s, "/console/audit/public-key.pem", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let pem_path = s.path("audit.pem");
    std::fs::write(&pem_path, &pem).unwrap();
    let pem_arg = pem_path.to_str().unwrap().to_string();

    // The inventory, as CSV: every key, its cryptoperiod, a formula never a formula.
    let (status, disposition, csv) = download(&s, "/console/reports/inventory.csv", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        disposition.contains("attachment") && disposition.contains(".csv"),
        "{disposition}"
    );
    let text = String::from_utf8(csv.clone()).unwrap();
    assert!(
        text.contains("key_id,key_arn") || text.contains(",key_id,"),
        "{text}"
    );
    for k in [&rotating, &formula, &retiring] {
        assert!(text.contains(k.as_str()), "{k}: {text}");
    }
    let row = |id: &str| text.lines().find(|l| l.contains(id)).unwrap().to_string();
    assert!(row(&rotating).contains(",true,365,"), "{}", row(&rotating));
    assert!(row(&rotating).ends_with(",within"), "{}", row(&rotating));
    assert!(row(&retiring).contains("retiring (pending deletion)"));
    assert!(
        row(&formula).contains("\"'=HYPERLINK("),
        "{}",
        row(&formula)
    );
    assert!(text
        .lines()
        .last()
        .unwrap()
        .starts_with("# kms-report-signature v1 "));

    // Verified as it is; refused once one cell is changed; refused once the trail is
    // rewritten under it.
    let report = s.path("inventory.csv");
    std::fs::write(&report, &csv).unwrap();
    let (ok, out) = verify(
        &s,
        &[
            "--public-key",
            &pem_arg,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("OK"), "{out}");
    let edited = text.replacen("PendingDeletion", "Enabled", 1);
    std::fs::write(&report, &edited).unwrap();
    let (ok, out) = verify(
        &s,
        &[
            "--public-key",
            &pem_arg,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("does not verify"), "{out}");
    // The same for the printable page.
    let (status, _, html) = download(&s, "/console/reports/inventory.html", &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(html.clone()).unwrap();
    assert!(page.contains("<!-- kms-report-signature v1 ") && page.contains(&formula));
    let report = s.path("inventory.html");
    std::fs::write(&report, &html).unwrap();
    let (ok, out) = verify(
        &s,
        &[
            "--public-key",
            &pem_arg,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let seq: i64 = page
        .rsplit("seq=")
        .next()
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    s.db.execute(&format!(
        "UPDATE audit_events SET hash = prev_hash WHERE seq = {seq}"
    ))
    .await;
    let (ok, out) = verify(
        &s,
        &[
            "--public-key",
            &pem_arg,
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("rewritten"), "{out}");

    // Unused keys: the one pending deletion, with its date.
    let (_, _, unused) = download(&s, "/console/reports/unused-keys.csv", &cookie).await;
    let unused = String::from_utf8(unused).unwrap();
    let pending = unused.lines().find(|l| l.contains(&retiring)).unwrap();
    assert!(pending.starts_with("pending deletion,"), "{unused}");
    // Used today: nothing is unused for 90 days.
    assert!(
        !unused.lines().any(|l| l.starts_with("unused,")),
        "{unused}"
    );

    // Another account's auditor: its report holds none of these keys.
    let other = tenant(&s).await;
    let (status, _, theirs) = download(&s, "/console/reports/inventory.csv", &other).await;
    assert_eq!(status, StatusCode::OK);
    let theirs = String::from_utf8(theirs).unwrap();
    assert!(
        !theirs.contains(&rotating) && !theirs.contains(ACCOUNT),
        "{theirs}"
    );

    // Each report is in the trail, under its principal.
    let events =
        s.db.strings("SELECT body FROM audit_events WHERE event_name = 'ConsoleReport'")
            .await;
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events
        .iter()
        .any(|e| e.contains("ada") && e.contains("unused-keys")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_integrity_page_verifies_the_chain_exports_and_shows_tampering() {
    let s = with_console().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.disable_key().key_id(&key).send().await.unwrap();
    assert!(s.kms(&["audit", "checkpoint"]).status.success());
    let cookie = auditor(&s, "ada").await;

    let (status, _, page) = get(&s, "/console/audit", &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("Covers events up to") && page.contains("verifies with the audit public key"),
        "{page}"
    );
    assert!(page.contains("BEGIN PUBLIC KEY"));
    // Verify now (a POST with the session's CSRF token): intact.
    let verify_now = |csrf: String| {
        browser()
            .post(url(&s, "/console/audit/verify"))
            .header("cookie", cookie.clone())
            .form(&[("csrf", csrf)])
            .send()
    };
    let r = verify_now(csrf_of(&page)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let result = r.text().await.unwrap();
    assert!(result.contains("Intact."), "{result}");
    // Without the token: refused.
    let forged = verify_now("0".repeat(64)).await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // An export of the account's events that `kms audit verify --export` accepts.
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("key", &key)
        .finish();
    let (status, disposition, export) =
        download(&s, &format!("/console/audit/export?{q}"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    assert!(disposition.contains("kms-audit-export.jsonl"));
    let text = String::from_utf8(export.clone()).unwrap();
    assert!(
        text.contains("DisableKey") && text.contains("\"checkpoint\""),
        "{text}"
    );
    let file = s.path("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let pem = s.path("audit.pem");
    std::fs::write(&pem, s.kms(&["audit", "public-key"]).stdout).unwrap();
    let (ok, out) = verify(
        &s,
        &[
            "--public-key",
            pem.to_str().unwrap(),
            "--export",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");

    // A row altered in the database: the next verification says where.
    let seq =
        s.db.int("SELECT max(seq) FROM audit_events WHERE event_name = 'DisableKey'")
            .await;
    s.db.execute(&format!(
        "UPDATE audit_events SET body = replace(body, 'DisableKey', 'EnableKey') WHERE seq = {seq}"
    ))
    .await;
    let (_, _, page) = get(&s, "/console/audit", &cookie).await;
    let result = verify_now(csrf_of(&page))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        result.contains("TAMPERED") && result.contains(&format!("event {seq} was altered")),
        "{result}"
    );

    // Another account's auditor exports no body of this account.
    let other = tenant(&s).await;
    let (status, _, theirs) = download(&s, "/console/audit/export", &other).await;
    assert_eq!(status, StatusCode::OK);
    let theirs = String::from_utf8(theirs).unwrap();
    assert!(
        !theirs.contains(&key) && !theirs.contains(ACCOUNT),
        "{theirs}"
    );
    // A principal without cloudtrail:LookupEvents sees none of it.
    let (_, admin) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let admin = admin.unwrap();
    assert_eq!(
        get(&s, "/console/audit", &admin).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        download(&s, "/console/audit/export", &admin).await.0,
        StatusCode::FORBIDDEN
    );
    let events =
        s.db.strings("SELECT event_name FROM audit_events WHERE event_name LIKE 'Console%Trail%'")
            .await;
    assert!(
        events.iter().any(|e| e == "ConsoleVerifyTrail"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e == "ConsoleExportTrail"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_page_lists_who_can_use_a_key_and_through_what() {
    let s = with_console().await;
    let c = s.client();
    const NONE: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListKeys","Resource":"*"}]}"#;
    const ENCRYPT: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"CarolEncrypts","Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
    let (alice, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "alice", Some(NONE)));
    let (bob, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "bob", Some(NONE)));
    let (carol, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "carol", Some(ENCRYPT)));
    let (dan, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "dan", Some(NONE)));
    let admin_arn = format!("arn:aws:iam::{ACCOUNT}:user/admin");
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"RootAccess","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Sid":"AliceDecrypts","Effect":"Allow","Principal":{{"AWS":"{alice}"}},"Action":"kms:Decrypt","Resource":"*"}},
            {{"Sid":"PartnerEncrypts","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::111122223333:root"}},"Action":"kms:Encrypt","Resource":"*"}}]}}"#
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
    let grant = c
        .create_grant()
        .key_id(&key)
        .grantee_principal(&bob)
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let (_, cookie) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let cookie = cookie.unwrap();
    let (status, _, page) = get(&s, &format!("/console/keys/{key}/access"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    // One row per principal: its actions, then what allows them.
    let row = |who: &str| {
        let at = page
            .find(&format!("<code>{who}</code>"))
            .unwrap_or_else(|| panic!("{who}: {page}"));
        page[at..].split("</tr>").next().unwrap().to_string()
    };
    let a = row(&alice);
    assert!(
        a.contains("kms:Decrypt") && a.contains("key policy: AliceDecrypts"),
        "{a}"
    );
    assert!(!a.contains("kms:Encrypt"), "{a}");
    let cr = row(&carol);
    assert!(
        cr.contains("kms:Encrypt") && cr.contains("identity policy 1: CarolEncrypts"),
        "{cr}"
    );
    assert!(!cr.contains("kms:Decrypt"), "{cr}");
    let ad = row(&admin_arn);
    assert!(ad.contains("kms:ScheduleKeyDeletion"), "{ad}");
    // Dan may do nothing with it: not listed.
    assert!(!page.contains(&format!("<code>{dan}</code>")), "{page}");
    // The partner account, named by the key policy; bob, through his grant only.
    let p = row("arn:aws:iam::111122223333:root");
    assert!(
        p.contains("kms:Encrypt") && p.contains("PartnerEncrypts"),
        "{p}"
    );
    // Bob: an account principal allowed through his grant alone (the statement naming the
    // account does not allow him without an identity policy), and the grant itself.
    let b = page.matches(&format!("<code>{bob}</code>")).count();
    assert_eq!(b, 2, "{page}");
    let g = row(&bob);
    assert!(g.contains("kms:Decrypt") && g.contains("grant"), "{g}");
    assert!(
        !g.contains("RootAccess") && !g.contains("kms:Encrypt"),
        "{g}"
    );
    let a = row(&alice);
    assert!(!a.contains("RootAccess"), "{a}");
    assert!(page.contains(&format!("grant {grant}")), "{page}");

    // The same in the access review report.
    let (_, _, csv) = download(&s, "/console/reports/access-review.csv", &cookie).await;
    let csv = String::from_utf8(csv).unwrap();
    assert!(
        csv.lines().any(|l| l.contains(&alice)
            && l.contains("account principal")
            && l.contains("AliceDecrypts")),
        "{csv}"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(&bob) && l.contains(",grant,")),
        "{csv}"
    );

    // A multi-Region key, named by its `mrk-` id, is reviewed too.
    let mrk = new_multi_region_key(&c).await;
    let (status, _, page) = get(&s, &format!("/console/keys/{mrk}/access"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(&admin_arn), "{page}");

    // Only for a principal that may read the key's policy: dan gets nothing.
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "eve", Some(NONE)));
    let eve = sign_in(&s, &id, &secret).await.1.unwrap();
    let (status, _, page) = get(&s, &format!("/console/keys/{key}/access"), &eve).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains(&alice), "{page}");
    let events =
        s.db.strings("SELECT body FROM audit_events WHERE event_name = 'ConsoleAccessReview'")
            .await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        events.iter().any(|e| e.contains("AccessDeniedException")),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_view_shows_the_token_the_nodes_and_the_rates_to_an_operator_only() {
    let s = with_console().await;
    let c = s.client();
    new_key(&c).await;
    const OPERATOR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"cloudwatch:GetMetricData","Resource":"*"}]}"#;
    let (_, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "olga", Some(OPERATOR)));
    let cookie = sign_in(&s, &id, &secret).await.1.unwrap();
    // The node reports itself at start and every five seconds.
    let mut page = String::new();
    for _ in 0..50 {
        let (status, _, p) = get(&s, "/console/operator", &cookie).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        page = p;
        if page.contains("<span class=\"done\">ready</span>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for part in [
        "Token state",
        "logged in",
        "Sessions in use",
        "<svg",
        "Requests",
        "Quota of account 123456789012",
        "<span class=\"done\">ready</span>",
        "Nodes seen",
    ] {
        assert!(page.contains(part), "{part}: {page}");
    }
    let nodes = s.db.int("SELECT count(*) FROM nodes").await;
    assert_eq!(nodes, 1);
    // A row planted in the database is shown as what it says, never believed: a node that
    // reported a day ago is gone.
    let hour_ago =
        (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%d %H:%M:%S+00:00");
    s.db.execute(&format!(
        "INSERT INTO nodes (node_id, address, version, token_label, ready, started_at, last_seen) \
         VALUES ('<b>old</b>', '10.0.0.9:443', 'x', 'kms', true, '{hour_ago}', '{hour_ago}')"
    ))
    .await;
    let (_, _, page) = get(&s, "/console/operator", &cookie).await;
    assert!(
        page.contains("&lt;b&gt;old&lt;/b&gt;") && page.contains(">gone<"),
        "{page}"
    );
    // Nor is another account's principal allowed the same action: the view is of every node
    // and tenant (before, any account's administrator saw it).
    let (_, id, secret, _) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("111122223333", "tenant-ops", Some(OPERATOR))
    });
    let tenant = sign_in(&s, &id, &secret).await.1.unwrap();
    let (status, _, page) = get(&s, "/console/operator", &tenant).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!page.contains("Token state"), "{page}");
    // The account's administrator (kms:*) is no operator of the deployment.
    let (_, admin) = sign_in(&s, &s.access_key_id, &s.secret).await;
    let (status, _, page) = get(&s, "/console/operator", &admin.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        !page.contains("logged in") && !page.contains("Token state"),
        "{page}"
    );
    let events =
        s.db.strings("SELECT body FROM audit_events WHERE event_name = 'ConsoleOperatorView'")
            .await;
    assert!(
        events.iter().any(|e| e.contains("AccessDeniedException")),
        "{events:?}"
    );
}

/// The SQL writer relabels trail rows. The chain hashes each row's body, not the columns the
/// trail viewer selects rows by, and the viewer called such a row intact: another account's
/// event given this account's number appeared in this account's trail, and an Encrypt
/// renamed GenerateRandom was listed under that name. Now a row whose columns do not say
/// what its body says is shown ALTERED, with what its body says.
#[tokio::test(flavor = "multi_thread")]
async fn trail_rows_relabelled_in_sql_are_shown_altered() {
    let s = with_console().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"relabel".to_vec()))
        .send()
        .await
        .unwrap();
    let (_, _, theirs) = tokio::task::block_in_place(|| {
        s.new_user(
            "111122223333",
            "mallory",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#),
        )
    });
    let their_key = once_allowed(|| theirs.create_key().send())
        .await
        .key_metadata
        .unwrap()
        .key_id;
    let ann = auditor(&s, "ann").await;
    let (_, _, before) = get(&s, "/console/trail", &ann).await;
    assert!(!before.contains("ALTERED"), "{before}");
    assert!(!before.contains(&their_key));

    let foreign =
        s.db.int("SELECT max(seq) FROM audit_events WHERE account_id = '111122223333'")
            .await;
    s.db.execute(&format!(
        "UPDATE audit_events SET account_id = '{ACCOUNT}' WHERE seq = {foreign}"
    ))
    .await;
    let renamed =
        s.db.int("SELECT max(seq) FROM audit_events WHERE event_name = 'Encrypt'")
            .await;
    s.db.execute(&format!(
        "UPDATE audit_events SET event_name = 'GenerateRandom' WHERE seq = {renamed}"
    ))
    .await;

    let (_, _, slipped) = get(&s, &format!("/console/trail/{foreign}"), &ann).await;
    assert!(slipped.contains("was altered in the database"), "{slipped}");
    let (_, _, listed) = get(&s, "/console/trail?event=GenerateRandom", &ann).await;
    assert!(listed.contains("ALTERED"), "{listed}");
    assert!(
        listed.contains(">Encrypt<"),
        "shown with its recorded name: {listed}"
    );
    // The last sequence number asked for is no event, not a failure.
    let (status, _, _) = get(&s, &format!("/console/trail/{}", i64::MAX), &ann).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The attack on the key owner's oversight: another account uses one of the account's keys
/// (its policy allows that account). The call was in the caller's trail only, so the key
/// owner's auditor could not see who outside the account used its keys. As AWS records a
/// cross-account call in the key owner's account as well, it is now in both accounts' trail
/// viewers and in the owner's export; an account whose keys it did not use sees nothing of it.
#[tokio::test(flavor = "multi_thread")]
async fn another_accounts_use_of_a_key_is_in_the_key_owners_trail() {
    const OTHER: &str = "111122223333";
    const THIRD: &str = "444455556666";
    const USER: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:*","cloudtrail:LookupEvents"],"Resource":"*"}]}"#;
    let s = with_console().await;
    let c = s.client();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{OTHER}:root"}},"Action":"kms:Encrypt","Resource":"*"}}]}}"#
    );
    let arn = c
        .create_key()
        .policy(policy)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let (bob_arn, bob_id, bob_secret, bob) =
        tokio::task::block_in_place(|| s.new_user_with_secret(OTHER, "bob", Some(USER)));
    once_allowed(|| {
        bob.encrypt()
            .key_id(&arn)
            .plaintext(aws_sdk_kms::primitives::Blob::new(b"cross".to_vec()))
            .send()
    })
    .await;
    let (_, carol_id, carol_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(THIRD, "carol", Some(USER)));
    let trail = format!(
        "/console/trail?event=Encrypt&key={}",
        form_urlencoded::byte_serialize(arn.as_bytes()).collect::<String>()
    );
    let ann = auditor(&s, "ann").await;
    let bobs = sign_in(&s, &bob_id, &bob_secret).await.1.unwrap();
    for (who, cookie) in [("the key owner's auditor", &ann), ("the caller", &bobs)] {
        let (status, _, page) = get(&s, &trail, cookie).await;
        assert_eq!(status, StatusCode::OK, "{who}");
        assert!(page.contains(&bob_arn), "{who} sees bob's call: {page}");
        assert!(!page.contains("ALTERED"), "{who}: {page}");
    }
    // What the caller cannot file in the key owner's trail by naming its key: a call the key
    // refuses (and the intent recorded before it), a call of an operation that takes no key.
    assert_eq!(
        code(bob.disable_key().key_id(&arn).send().await),
        "AccessDeniedException"
    );
    let r = raw_request(
        &s.endpoint,
        &bob_id,
        &bob_secret,
        REGION,
        Some("TrentService.GenerateRandom"),
        "application/x-amz-json-1.1",
        format!(r#"{{"NumberOfBytes":8,"KeyId":"{arn}"}}"#).into_bytes(),
        true,
        std::time::SystemTime::now(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json);
    let bobs_calls = format!(
        "/console/trail?text={}",
        form_urlencoded::byte_serialize(bob_arn.as_bytes()).collect::<String>()
    );
    let (_, _, owners) = get(&s, &bobs_calls, &ann).await;
    assert!(owners.contains(">Encrypt<"), "{owners}");
    for other in ["DisableKey", "GenerateRandom", "ApiCallStarted"] {
        assert!(!owners.contains(other), "{other} is bob's to see: {owners}");
    }
    let (_, _, his) = get(&s, &bobs_calls, &bobs).await;
    assert!(his.contains(">DisableKey<"), "{his}");
    let carols = sign_in(&s, &carol_id, &carol_secret).await.1.unwrap();
    let (_, _, page) = get(&s, "/console/trail", &carols).await;
    assert!(
        !page.contains(&bob_arn),
        "another account sees nothing of it: {page}"
    );
    assert!(!page.contains(&arn), "{page}");

    let file = s.path("owner.jsonl");
    let out = s.kms(&[
        "audit",
        "export",
        "--out",
        file.to_str().unwrap(),
        "--account",
        ACCOUNT,
        "--event-name",
        "Encrypt",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&bob_arn),
        "the owner's export holds bob's call: {text}"
    );
}
