//! `kms init` and `kms serve` start-up: idempotent bootstrap, provisioning from the
//! environment, and one clear sentence for each way start-up can fail.

use crate::support::*;
use std::process::Command;

fn serve_fails(token: &Token, db: &Database, tweak: impl FnOnce(&mut Command)) -> String {
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, token, db);
    tweak(&mut cmd);
    let out = cmd.arg("serve").output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test]
async fn init_is_idempotent_and_provisionable() {
    tokio::task::spawn_blocking(|| {
        let token = Token::new();
        let db = Database::new();
        let id = "AKIAPROVISIONED00001";
        let secret = "Provisioned/Secret/0123456789abcdefghijkl";
        let first = run_init(&token, &db, Some((id, secret)));
        assert!(
            first.status.success(),
            "{}",
            String::from_utf8_lossy(&first.stderr)
        );
        let out = String::from_utf8_lossy(&first.stdout).to_string();
        assert_eq!(parse_credentials(&out).0.as_deref(), Some(id));
        assert!(
            !out.contains(secret),
            "a provisioned secret is not printed back"
        );
        let objects = token.object_files();
        assert_eq!(objects, 4, "root key, MAC key, audit key pair");
        let again = run_init(&token, &db, None);
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        let out = String::from_utf8_lossy(&again.stdout).to_string();
        assert_eq!(
            parse_credentials(&out),
            (Some(id.to_string()), None),
            "no new key, no secret"
        );
        assert_eq!(token.object_files(), objects, "no new token objects");
    })
    .await
    .unwrap();
    // The provisioned credentials work.
    let token = Token::new();
    let db = Database::new();
    let (id, secret) = (
        "AKIAPROVISIONED00002",
        "Another/Provisioned/Secret/0123456789abcd",
    );
    assert!(run_init(&token, &db, Some((id, secret))).status.success());
    let s = Server::from_parts(token, db, id, secret);
    s.client().list_keys().send().await.unwrap();
}

#[test]
fn init_refuses_unusable_provisioned_credentials() {
    let token = Token::new();
    let db = Database::new();
    let out = run_init(&token, &db, Some(("AKIASHORTSECRET00001", "too-short")));
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("28 to 128"), "{e}");
    let out = run_init(
        &token,
        &db,
        Some(("bad id!", "Provisioned/Secret/0123456789abcdefghijkl")),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access key ids"));
}

#[test]
fn serve_fails_fast_with_one_clear_sentence() {
    let token = Token::new();
    let db = Database::new();
    let mut errors = Vec::new();
    // Database without schema: tells the user to run kms init.
    let e = serve_fails(&token, &db, |_| {});
    assert!(e.contains("run `kms init`"), "{e}");
    errors.push(e);
    assert!(run_init(&token, &db, None).status.success());
    let e = serve_fails(&token, &db, |c| {
        c.env("KMS_HSM__PIN", "00000000");
    });
    assert!(e.contains("PIN"), "{e}");
    errors.push(e);
    let e = serve_fails(&token, &db, |c| {
        c.env("KMS_HSM__TOKEN_LABEL", "no-such-token");
    });
    assert!(e.contains("no-such-token"), "{e}");
    errors.push(e);
    let e = serve_fails(&token, &db, |c| {
        c.env("KMS_HSM__MODULE", "/nonexistent/libpkcs11.so");
    });
    assert!(e.contains("could not be loaded"), "{e}");
    errors.push(e);
    let e = serve_fails(&token, &db, |c| {
        c.env("KMS_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none");
    });
    assert!(e.contains("Postgres is unreachable"), "{e}");
    errors.push(e);
    // Plain HTTP on a non-loopback address, without saying so.
    let e = serve_fails(&token, &db, |c| {
        c.env("KMS_LISTEN", "0.0.0.0:0");
    });
    assert!(e.contains("refusing to serve plain HTTP"), "{e}");
    errors.push(e);
    // A token that was never initialised for the service: its root key is missing.
    let fresh = Token::new();
    let e = serve_fails(&fresh, &db, |_| {});
    assert!(e.contains("kms init"), "{e}");
    errors.push(e);
    for e in errors {
        assert_eq!(e.trim().lines().count(), 1, "one sentence: {e}");
        assert!(e.starts_with("kms: "), "{e}");
    }
}

#[tokio::test]
async fn plain_http_beyond_loopback_only_when_configured() {
    let s = Server::start_with(&[
        ("KMS_LISTEN", "0.0.0.0:0"),
        ("KMS_ALLOW_PLAIN_HTTP", "true"),
    ])
    .await;
    s.client().list_keys().send().await.unwrap();
}

/// SIGTERM stops accepting, lets in-flight requests finish, and exits 0: no client sees a
/// 5xx or a half-written response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    use aws_sdk_kms::primitives::Blob;
    let mut s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, key, stop) = (c.clone(), key.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match c
                    .encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(vec![1u8; 64]))
                    .send()
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        // After shutdown, connections are refused or closed before a request
                        // is read; never a service error.
                        assert!(
                            e.as_service_error().is_none(),
                            "service error during drain: {e:?}"
                        );
                        assert!(
                            e.raw_response().is_none(),
                            "a response was cut or failed: {e:?}"
                        );
                        refused += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                }
            }
            (ok, refused)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let status = tokio::task::block_in_place(|| s.terminate());
    assert!(status.success(), "exit status {status:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ok = 0;
    for t in tasks {
        total_ok += t.await.unwrap().0;
    }
    assert!(total_ok > 0);
    assert!(s.server_log().contains("shutting down"));
}

/// `kms serve --dev`: one command, no database server and no token set up beforehand. It
/// creates an embedded SQLite store and a SoftHSM2 token in its directory, initialises them,
/// prints credentials that work, and on the next start finds everything again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_needs_no_database_server() {
    if skip_on_kryoptic("development mode creates its own SoftHSM2 token") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev_dir = dir.path().join("dev");
    let start = || start_dev(dir.path(), &dev_dir);
    let (mut child, endpoint) = tokio::task::block_in_place(start);
    let creds = std::fs::read_to_string(dev_dir.join("credentials")).unwrap();
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert!(
        stderr.contains(&creds),
        "the credentials are printed: {stderr}"
    );
    let field = |name: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .to_string()
    };
    let (id, secret) = (field("AWS_ACCESS_KEY_ID="), field("AWS_SECRET_ACCESS_KEY="));
    for f in ["credentials", "pin", "so-pin"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dev_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable only by its owner");
    }
    assert!(dev_dir.join("kms.db").exists(), "the embedded store");
    let c = client_at(&endpoint, &id, &secret, REGION, None);
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"dev".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();

    // Started again: the same token, store and credentials.
    let (mut child, endpoint) = tokio::task::block_in_place(start);
    let c = client_at(&endpoint, &id, &secret, REGION, None);
    let out = c.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"dev");
    assert_eq!(c.list_keys().send().await.unwrap().keys().len(), 1);
    let _ = child.kill();
    let _ = child.wait();
}

/// Start `kms serve --dev --dev-dir dev_dir` (stderr to `dir/stderr`): the child and its
/// endpoint once it listens.
fn start_dev(dir: &std::path::Path, dev_dir: &std::path::Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(kms_bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KMS_LISTEN", "127.0.0.1:0")
        .env("KMS_HSM__MODULE", softhsm_module())
        .env("RUST_LOG", "info,cryptoki=off")
        .args(["serve", "--dev", "--dev-dir", dev_dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    // The API's URL first; the console's after it (dev mode serves one).
    let urls = listening_urls(&mut child, &dir.join("stderr"));
    assert!(urls.contains("/console/"), "{urls}");
    let endpoint = urls.split(' ').next().unwrap_or_default().to_string();
    (child, endpoint)
}

/// A development token left half-made (initialised, stopped before its user PIN was set, as a
/// crash between the two steps leaves it) is finished on the next start, not a log-in failure
/// on every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_finishes_a_half_made_token() {
    if skip_on_kryoptic("development mode creates its own SoftHSM2 token") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev_dir = dir.path().join("dev");
    std::fs::create_dir_all(dev_dir.join("softhsm/tokens")).unwrap();
    let conf = dev_dir.join("softhsm/softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            dev_dir.join("softhsm/tokens").display()
        ),
    )
    .unwrap();
    std::fs::write(dev_dir.join("so-pin"), "5o5o5o5o").unwrap();
    let out = std::process::Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--module",
            &softhsm_module(),
            "--init-token",
            "--label",
            "kms-dev",
        ])
        .args(["--so-pin", "5o5o5o5o"])
        .output()
        .expect("pkcs11-tool (opensc) must be installed (scripts/test.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    let (mut child, endpoint) = tokio::task::block_in_place(|| start_dev(dir.path(), &dev_dir));
    let creds = std::fs::read_to_string(dev_dir.join("credentials")).unwrap();
    let field = |name: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .to_string()
    };
    let c = client_at(
        &endpoint,
        &field("AWS_ACCESS_KEY_ID="),
        &field("AWS_SECRET_ACCESS_KEY="),
        REGION,
        None,
    );
    c.create_key().send().await.unwrap();
    let _ = child.kill();
    let _ = child.wait();
}

/// Rolling upgrades: `kms --version` and `/healthz` say which release this is and the schema it
/// migrates to; a binary runs against a schema a newer release migrated additively, and
/// refuses, in one sentence and before anything is written, one whose floor a newer release
/// raised above it (to serve it, to migrate it, or to change it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_a_newer_release_contracted_is_refused_in_one_sentence() {
    let out = Command::new(kms_bin()).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        version.contains("(schema: Postgres ") && version.contains(", SQLite "),
        "{version}"
    );
    let s = Server::start().await;
    // /healthz carries the same, in a header.
    let addr = s.endpoint.trim_start_matches("http://").to_string();
    let head = tokio::task::block_in_place(|| {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut r = String::new();
        c.read_to_string(&mut r).unwrap();
        r
    });
    let header = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("x-kms-version:"))
        .unwrap_or_else(|| panic!("no x-kms-version header: {head}"));
    assert!(
        version
            .trim()
            .ends_with(header.split_once(':').unwrap().1.trim()),
        "{header} / {version}"
    );
    // A newer release migrated the database with an additive migration: this build still
    // runs against it (a rolling upgrade), and leaves the newer migration alone.
    let newer = if sqlite() { "1" } else { "true" };
    let checksum = s.db.bytes(&[0]);
    let add = |version: u32| {
        format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ({version}, 'from a newer release', {newer}, {checksum}, 0)"
        )
    };
    s.db.execute(&add(9998)).await;
    let run = |args: &[&str]| {
        let mut cmd = Command::new(kms_bin());
        kms_env(&mut cmd, &s.token, &s.db);
        tokio::task::block_in_place(|| cmd.args(args).output().unwrap())
    };
    let out = run(&["admin", "create-account", "--account-id", "333333333333"]);
    assert!(
        out.status.success(),
        "an additive newer schema is refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Then with a contract migration, which raises the floor above this build.
    s.db.execute(&add(9999)).await;
    s.db.execute("UPDATE schema_floor SET oldest_release_schema = 9999 WHERE id = 1")
        .await;
    for args in [
        vec!["serve"],
        vec!["init"],
        vec!["admin", "create-account", "--account-id", "222222222222"],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} ran against a newer schema");
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(said.trim().lines().count(), 1, "one sentence: {said}");
        assert!(
            said.contains(
                "schema is at version 9999 and no longer runs releases below schema 9999"
            ),
            "{said}"
        );
    }
    assert_eq!(
        s.db.int("SELECT count(*) FROM accounts WHERE account_id = '222222222222'")
            .await,
        0
    );
}
