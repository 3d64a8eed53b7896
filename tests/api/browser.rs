//! The console in a real browser: Debian's headless Chromium, driven through WebDriver
//! (`chromedriver`, the `fantoccini` client) as an auditor would use it — sign in, find a key,
//! disable it (and see the API answer `DisabledException`), ask the policy simulator, open the
//! audit event of that change, verify the chain, download a report and check its signature
//! with `kms audit verify` — and what only a browser shows: a script in a key's description
//! never runs, and the session cookie is out of any script's reach.
//!
//! scripts/test.sh installs `chromium` and `chromium-driver` and sets
//! `KMS_TEST_REQUIRE_BROWSER=1`, so there this cannot be skipped. Each page's screenshot is
//! kept under `target/tmp/console-screenshots/`.

use crate::console::{with_console, ACCOUNT};
use crate::support::*;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium under its own chromedriver, stopped when dropped.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Start one, downloads going to `downloads`; `None` (the test skipped) where Chromium is
    /// not installed and the run does not require it.
    async fn start(downloads: &Path) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var("KMS_TEST_REQUIRE_BROWSER").is_err(),
                "chromium and chromium-driver are required but missing"
            );
            eprintln!("chromium not installed; run scripts/test.sh to include this test");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1366,900", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()
                .expect("a TLS configuration")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let shots =
                        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
                    std::fs::create_dir_all(&shots).unwrap();
                    return Some(Browser {
                        client,
                        driver,
                        shots,
                        _profile: profile,
                    });
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not answer: {last:?}");
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The page's text, once it has loaded.
    async fn text(&self) -> String {
        for _ in 0..50 {
            if let Ok(body) = self.client.find(Locator::Css("body")).await {
                if let Ok(text) = body.text().await {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let url = self.client.current_url().await.unwrap();
        let source = self.client.source().await.unwrap_or_default();
        panic!("no page at {url}: {source}");
    }

    /// The page's text once `ok` holds of it (a click that submits a form may return before
    /// the next page has loaded), or after 15 s the text as it is.
    async fn text_until(&self, ok: impl Fn(&str) -> bool) -> String {
        let mut text = String::new();
        for _ in 0..150 {
            text = self.text().await;
            if ok(&text) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        text
    }

    async fn fill(&self, css: &str, value: &str) {
        let field = self.client.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Keep a screenshot of the page as `name.png`.
    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Whether a dialog (`alert`) is open: a script ran.
    async fn alert_open(&self) -> bool {
        self.client.get_alert_text().await.is_ok()
    }
}

/// The one file that appears in `dir` within ten seconds (a finished download).
async fn downloaded(dir: &Path) -> PathBuf {
    for _ in 0..100 {
        let all: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        // Chromium writes a download under a hidden name, then as `….crdownload`, and may
        // hold the final name as an empty file meanwhile (a loaded CI host read it empty):
        // done when only the final file is left, with content.
        let writing = all.iter().any(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with('.') || name.ends_with(".crdownload")
        });
        if let ([one], false) = (all.as_slice(), writing) {
            if std::fs::metadata(one).map(|m| m.len() > 0).unwrap_or(false) {
                return one.clone();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing was downloaded to {}", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_auditor_walks_through_the_console_in_chromium() {
    let downloads = tempfile::tempdir().unwrap();
    let Some(b) = Browser::start(downloads.path()).await else {
        return;
    };
    let s = with_console().await;
    let c = s.client();
    let key = c
        .create_key()
        .description("<script>alert('owned')</script> payments")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let other = new_key(&c).await;
    const AUDITOR: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:*","cloudtrail:LookupEvents","cloudwatch:GetMetricData"],"Resource":"*"}]}"#;
    let (auditor, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "auditor", Some(AUDITOR)));
    let base = s.console.clone().unwrap();
    let base = base.trim_end_matches("/console/");

    // A page without a session: the sign-in form.
    b.goto(&format!("{base}/console/keys")).await;
    assert!(b
        .client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/console/sign-in"));
    b.shot("1-sign-in").await;
    b.fill("#access_key_id", &id).await;
    b.fill("#secret_access_key", &secret).await;
    b.click("form.signin button").await;

    // The inventory: the key, its description as text; no script ran; the cookie is out of
    // any script's reach (HttpOnly).
    let page = b.text_until(|t| t.contains(&key)).await;
    let at = b.client.current_url().await.unwrap();
    assert!(
        page.contains(&key) && page.contains(&other),
        "{at}: {page}\n{}",
        s.log_text()
    );
    assert!(
        page.contains("<script>alert('owned')</script> payments"),
        "{page}"
    );
    assert!(!b.alert_open().await, "a script in a description ran");
    let cookies = b
        .client
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert!(!cookies.to_string().contains("kms_console"), "{cookies}");
    b.shot("2-keys").await;

    // Find the key by its description, open it, disable it.
    b.fill("input[name=q]", "payments").await;
    b.click("form.filters button").await;
    let page = b.text_until(|t| !t.contains(&other)).await;
    assert!(page.contains(&key) && !page.contains(&other), "{page}");
    b.click(&format!("a[href='/console/keys/{key}']")).await;
    b.text_until(|t| t.contains("Key policy")).await;
    b.shot("3-key").await;
    b.click(&format!(
        "form[action='/console/keys/{key}/disable'] button"
    ))
    .await;
    let page = b.text_until(|t| t.contains("DisableKey: done.")).await;
    assert!(page.contains("DisableKey: done."), "{page}");
    let refused = c
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(refused), "DisabledException");

    // Who can use it.
    b.click(&format!("a[href='/console/keys/{key}/access']"))
        .await;
    let page = b.text_until(|t| t.contains(&auditor)).await;
    assert!(page.contains(&auditor), "{page}");
    b.shot("4-access").await;

    // The simulator.
    b.goto(&format!("{base}/console/simulate")).await;
    b.fill("input[name=principal]", &auditor).await;
    b.fill("input[name=action]", "kms:Decrypt").await;
    b.fill("input[name=key]", &key).await;
    b.click("form.simulator button").await;
    let page = b.text_until(|t| t.contains("Allowed")).await;
    assert!(page.contains("Allowed"), "{page}");
    b.shot("5-simulator").await;

    // The audit event of the change.
    b.goto(&format!("{base}/console/trail?event=DisableKey"))
        .await;
    b.shot("6-trail").await;
    b.click("td a[href^='/console/trail/']").await;
    let page = b
        .text_until(|t| t.contains("\"eventName\": \"DisableKey\""))
        .await;
    assert!(
        page.contains("\"eventName\": \"DisableKey\"")
            && page.contains(&key)
            && page.contains("kms-console"),
        "{page}"
    );
    b.shot("7-event").await;

    // The chain verified.
    b.goto(&format!("{base}/console/audit")).await;
    b.click("form[action='/console/audit/verify'] button").await;
    let page = b.text_until(|t| t.contains("Intact.")).await;
    assert!(page.contains("Intact."), "{page}");
    b.shot("8-integrity").await;

    // A report downloaded, and its signature checked by `kms audit verify`.
    b.goto(&format!("{base}/console/reports")).await;
    b.shot("9-reports").await;
    b.click("form[action='/console/reports/inventory.csv'] button")
        .await;
    let report = downloaded(downloads.path()).await;
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains(&key) && text.contains("Disabled"), "{text}");
    let pem = s.path("audit.pem");
    std::fs::write(&pem, s.kms(&["audit", "public-key"]).stdout).unwrap();
    let out = s.kms(&[
        "audit",
        "verify",
        "--public-key",
        pem.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("OK"), "{said}");

    // The operator view.
    b.goto(&format!("{base}/console/operator")).await;
    let page = b.text().await;
    assert!(
        page.contains("Sessions in use") && page.contains("Nodes seen"),
        "{page}"
    );
    b.shot("10-operations").await;

    // Signed out: the cookie is worth nothing after.
    b.click("header form button").await;
    // The sign-out's answer (a redirect to the sign-in page) first: a page asked for before it
    // arrives would still carry the cookie (seen on a loaded CI host).
    for _ in 0..150 {
        let at = b.client.current_url().await.unwrap();
        if at.as_str().ends_with("/console/sign-in") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.goto(&format!("{base}/console/keys")).await;
    assert!(b
        .client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .ends_with("/console/sign-in"));
    b.client.clone().close().await.unwrap();
}
