//! Faults: the database stops answering under load. Requests fail fast with AWS's errors
//! instead of hanging, and the service recovers by itself when the database answers again,
//! with nothing acknowledged lost.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP proxy to Postgres that can stop passing bytes (they wait, nothing is lost).
struct Proxy {
    port: u16,
    paused: Arc<AtomicBool>,
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    paused: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while paused.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn proxy_to_postgres() -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let paused = Arc::new(AtomicBool::new(false));
    let p = paused.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else {
                continue;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::spawn(pump(cr, sw, p.clone()));
            tokio::spawn(pump(sr, cw, p.clone()));
        }
    });
    Proxy { port, paused }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_requests_fast_and_the_service_recovers() {
    if skip_on_sqlite("the embedded store has no network connection to lose") {
        return;
    }
    let proxy = proxy_to_postgres().await;
    // The server reaches its database through the proxy; `kms init` ran directly.
    let url = format!("postgres://postgres@127.0.0.1:{}/{{db}}", proxy.port);
    let s = Server::start_with(&[
        ("KMS_DATABASE_URL", url.as_str()),
        ("KMS_REQUEST_TIMEOUT_MS", "1500"),
    ])
    .await;
    let c = s.client();
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"acknowledged".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    proxy.paused.store(true, Ordering::SeqCst);
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let t0 = Instant::now();
        let code_ = match i % 3 {
            0 => code(c.create_key().send().await),
            1 => code(
                c.encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(b"x".to_vec()))
                    .send()
                    .await,
            ),
            _ => code(c.list_keys().send().await),
        };
        slowest = slowest.max(t0.elapsed());
        assert!(
            code_ == "DependencyTimeoutException" || code_ == "KMSInternalException",
            "{code_}"
        );
    }
    assert!(
        slowest < Duration::from_millis(2500),
        "a request took {slowest:?} with the database gone (deadline 1.5 s)"
    );

    proxy.paused.store(false, Ordering::SeqCst);
    // Recovery: every kind of request succeeds again, and what was acknowledged before the
    // fault is intact.
    let resumed = Instant::now();
    loop {
        let ok = c
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"y".to_vec()))
            .send()
            .await
            .is_ok()
            && c.create_key().send().await.is_ok()
            && c.decrypt()
                .ciphertext_blob(blob.clone())
                .send()
                .await
                .is_ok_and(|o| o.plaintext.unwrap().into_inner() == b"acknowledged");
        if ok {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "no recovery within 5 s of the database coming back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "recovered {:?} after the database came back",
        resumed.elapsed()
    );
    println!("slowest request during the outage: {slowest:?}");
}

/// `kill -9` at arbitrary points while keys are created, rotated and used: every key and
/// every ciphertext the service acknowledged still works after restarts, no token object is
/// left behind, and the audit trail still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    type Acked = Arc<std::sync::Mutex<Vec<(String, Blob, Vec<u8>)>>>;
    let mut s = Server::start().await;
    let objects = s.token.object_files();
    let acked: Acked = Default::default();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let rounds = 8;
    for _ in 0..rounds {
        let c = s.client();
        let mut workers = Vec::new();
        for w in 0..4u8 {
            let (c, acked) = (c.clone(), acked.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let Ok(k) = c.create_key().send().await else {
                        return;
                    };
                    let key = k.key_metadata.unwrap().key_id;
                    if w % 2 == 0 && c.rotate_key_on_demand().key_id(&key).send().await.is_err() {
                        return;
                    }
                    let Ok(dk) = c
                        .generate_data_key()
                        .key_id(&key)
                        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                        .send()
                        .await
                    else {
                        return;
                    };
                    acked.lock().unwrap().push((
                        key,
                        dk.ciphertext_blob.unwrap(),
                        dk.plaintext.unwrap().into_inner(),
                    ));
                }
            }));
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Each round kills the server at a random moment after its first acknowledged data
        // key (a slow token on a loaded machine may take longer than a fixed window to give
        // one), so every round has something to lose.
        let before = acked.lock().unwrap().len();
        let waiting = std::time::Instant::now();
        while acked.lock().unwrap().len() == before && waiting.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis((seed >> 33) % 600)).await;
        tokio::task::block_in_place(|| s.kill9());
        for w in workers {
            let _ = w.await;
        }
        tokio::task::block_in_place(|| s.spawn());
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= rounds,
        "only {} acknowledged data keys",
        acked.len()
    );
    let c = s.client();
    for (key, blob, plaintext) in &acked {
        let out = c
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged data key under {key} lost: {e:?}"));
        assert_eq!(&out.plaintext.unwrap().into_inner(), plaintext);
        c.encrypt()
            .key_id(key)
            .plaintext(Blob::new(b"after".to_vec()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        s.token.object_files(),
        objects,
        "no token object left behind"
    );
    let (ok, out) = audit_verify(&s);
    assert!(ok, "{out}");
    println!(
        "{rounds} kill -9 survived; {} acknowledged data keys all decrypt",
        acked.len()
    );
}

/// `kill -9` while the scheduler deletes keys whose waiting period ended: each due key ends
/// up deleted whole (row, material, aliases) or not at all, and the restarted server finishes
/// the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_scheduled_deletion_leaves_no_half_deleted_key() {
    let mut s = clocked().await;
    let c = s.client();
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for i in 0..40 {
        let key = new_key(&c).await;
        let blob = c
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"kept".to_vec()))
            .send()
            .await
            .unwrap()
            .ciphertext_blob
            .unwrap();
        if i % 2 == 0 {
            c.create_alias()
                .alias_name(format!("alias/doomed-{i}"))
                .target_key_id(&key)
                .send()
                .await
                .unwrap();
            c.schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(7)
                .send()
                .await
                .unwrap();
            doomed.push(key);
        } else {
            kept.push((key, blob));
        }
    }
    s.advance_days(8);
    for delay in [5u64, 30, 80] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tokio::task::block_in_place(|| s.kill9());
        tokio::task::block_in_place(|| s.spawn());
    }
    let db = &s.db;
    eventually("every due key deleted after the restarts", || async {
        db.int("SELECT count(*) FROM keys WHERE key_state = 'PendingDeletion'")
            .await
            == 0
    })
    .await;
    let c = s.client();
    for k in &doomed {
        assert_eq!(
            code(c.describe_key().key_id(k).send().await),
            "NotFoundException"
        );
        let rows =
            s.db.int(&format!(
                "SELECT (SELECT count(*) FROM key_materials WHERE key_id = {k}) + \
                        (SELECT count(*) FROM aliases WHERE key_id = {k})",
                k = s.db.key(k)
            ))
            .await;
        assert_eq!(rows, 0, "nothing of deleted key {k} remains");
    }
    for (k, blob) in &kept {
        let out = c
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(
            out.key_id.as_deref().map(|a| a.ends_with(k.as_str())),
            Some(true)
        );
    }
}

/// `kill -9` while the scheduler rotates keys whose rotation is due: each key ends up rotated
/// exactly once (a rotation interrupted before its commit is redone by the restarted server,
/// none is skipped or doubled), old ciphertexts still decrypt, no token object is orphaned
/// and the audit trail verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_scheduled_rotation_rotates_each_due_key_exactly_once() {
    let mut s = clocked().await;
    let objects = s.token.object_files();
    let c = s.client();
    let mut keys = Vec::new();
    for _ in 0..40 {
        let key = new_key(&c).await;
        c.enable_key_rotation()
            .key_id(&key)
            .rotation_period_in_days(90)
            .send()
            .await
            .unwrap();
        let blob = c
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"before rotation".to_vec()))
            .send()
            .await
            .unwrap()
            .ciphertext_blob
            .unwrap();
        keys.push((key, blob));
    }
    s.advance_days(91);
    for delay in [5u64, 30, 80, 150] {
        tokio::time::sleep(Duration::from_millis(delay)).await;
        tokio::task::block_in_place(|| s.kill9());
        tokio::task::block_in_place(|| s.spawn());
    }
    let db = &s.db;
    let due = format!(
        "SELECT count(*) FROM keys WHERE next_rotation_date < {}",
        db.now_plus_days(120)
    );
    eventually("every due key rotated after the restarts", || async {
        db.int(&due).await == 0
    })
    .await;
    let c = s.client();
    for (k, blob) in &keys {
        let versions: Vec<i32> =
            s.db.strings(&format!(
                "SELECT version FROM key_materials WHERE key_id = {} ORDER BY version",
                s.db.key(k)
            ))
            .await
            .iter()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(versions, vec![1, 2], "key {k} rotated exactly once");
        let rotations = c.list_key_rotations().key_id(k).send().await.unwrap();
        assert_eq!(
            rotations.rotations().len(),
            1,
            "key {k}: one rotation listed"
        );
        let out = c
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.plaintext.unwrap().into_inner(), b"before rotation");
    }
    assert_eq!(
        s.token.object_files(),
        objects,
        "no token object left behind"
    );
    let (ok, out) = audit_verify(&s);
    assert!(ok, "{out}");
    println!("4 kill -9 during scheduled rotation survived; 40 due keys each rotated exactly once");
}

fn err_code<E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug>(e: &E) -> String {
    e.code()
        .map(str::to_string)
        .unwrap_or_else(|| format!("no error code: {e:?}"))
}

/// A server whose token can be hit with faults: `inflict(fault)` writes the fault's name and
/// sends SIGUSR1 (see `fault_injection_file`).
async fn faultable(extra: &[(&str, &str)]) -> (Server, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let f = dir.join("fault");
    let mut env = vec![
        ("KMS_FAULT_INJECTION_FILE", f.to_str().unwrap()),
        ("KMS_ENABLE_TEST_HOOKS", "true"),
    ];
    env.extend_from_slice(extra);
    (Server::start_with(&env).await, f)
}

fn inflict(s: &Server, file: &std::path::Path, fault: &str) {
    std::fs::write(file, fault).unwrap();
    s.signal("USR1");
}

/// The token lost under load, three ways (every session closed on the token, the login
/// dropped, the module finalized): the same process re-opens the token, logs in again, drops
/// its stale key objects and serves again; the requests caught in the fault fail with a
/// retryable error and nothing else is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_lost_under_load_is_reopened_without_a_restart() {
    let (s, fault_file) = faultable(&[]).await;
    let pid = s.pid();
    let c = s.client();
    let key = new_key(&c).await;
    let signing = new_key_with(
        &c,
        aws_sdk_kms::types::KeySpec::EccNistP256,
        aws_sdk_kms::types::KeyUsageType::SignVerify,
    )
    .await
    .key_id;
    let before = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"before the faults".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    // Clients without retries, so that the failures the faults cause are seen and counted.
    let raw = s.client();
    let stop = Arc::new(AtomicBool::new(false));
    let tally: Arc<std::sync::Mutex<(u64, Vec<String>)>> = Default::default();
    let mut workers = Vec::new();
    for w in 0..4u32 {
        let (c, stop, tally, key, signing) = (
            raw.clone(),
            stop.clone(),
            tally.clone(),
            key.clone(),
            signing.clone(),
        );
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r: Result<(), String> = match w {
                    0 => match c
                        .encrypt()
                        .key_id(&key)
                        .plaintext(Blob::new(b"x".to_vec()))
                        .send()
                        .await
                    {
                        Ok(o) => c
                            .decrypt()
                            .ciphertext_blob(o.ciphertext_blob.unwrap())
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| err_code(&e)),
                        Err(e) => Err(err_code(&e)),
                    },
                    1 => c
                        .generate_data_key()
                        .key_id(&key)
                        .number_of_bytes(32)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| err_code(&e)),
                    2 => c
                        .sign()
                        .key_id(&signing)
                        .message(Blob::new(b"m".to_vec()))
                        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| err_code(&e)),
                    _ => c
                        .create_key()
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| err_code(&e)),
                };
                let mut t = tally.lock().unwrap();
                match r {
                    Ok(()) => t.0 += 1,
                    Err(code) => t.1.push(code),
                }
            }
        }));
    }
    for fault in ["close-sessions", "logout", "finalize"] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let ok_before = tally.lock().unwrap().0;
        inflict(&s, &fault_file, fault);
        // Served again, by the same process, within a second or two.
        let c = c.clone();
        let started = Instant::now();
        eventually(&format!("requests succeed again after {fault}"), || {
            let (c, key) = (c.clone(), key.clone());
            async move {
                c.encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(b"y".to_vec()))
                    .send()
                    .await
                    .is_ok()
            }
        })
        .await;
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            tally.lock().unwrap().0 > ok_before,
            "load resumed after {fault}"
        );
        println!("{fault}: serving again after {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(s.pid(), pid, "no restart");
    let (ok, errors) = tally.lock().unwrap().clone();
    for e in &errors {
        assert!(
            e == "DependencyTimeoutException" || e == "KMSInternalException",
            "a request caught in a token fault failed with {e}"
        );
    }
    let log = s.server_log();
    assert_eq!(
        log.matches("the token is open again").count(),
        3,
        "one re-open per fault:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let out = c.decrypt().ciphertext_blob(before).send().await.unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"before the faults");
    c.sign()
        .key_id(&signing)
        .message(Blob::new(b"after".to_vec()))
        .signing_algorithm(aws_sdk_kms::types::SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    let (audit_ok, out) = audit_verify(&s);
    assert!(audit_ok, "{out}");
    println!(
        "3 token faults under load survived without a restart: {ok} requests served, {} failed retryably during the faults",
        errors.len()
    );
}

/// The token lost while its PIN was changed: re-opening fails loudly and at once, every
/// request fails fast (never hangs) with a retryable error, the refused PIN is never offered
/// again (a token that counts failures would lock it), and writing the new PIN into the PIN
/// file brings the service back without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_pin_fails_fast_and_loudly_and_a_corrected_pin_file_recovers() {
    let dir = tempfile::tempdir().unwrap().keep();
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    let (s, fault_file) = faultable(&[
        ("KMS_HSM__PIN", ""),
        ("KMS_HSM__PIN_FILE", pin_file.to_str().unwrap()),
    ])
    .await;
    let pid = s.pid();
    let c = s.client();
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"kept".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let new_pin = dir.join("new-pin");
    std::fs::write(&new_pin, "87654321").unwrap();
    let out = s.kms(&[
        "hsm",
        "set-pin",
        "--new-pin-file",
        new_pin.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // SoftHSM reads the changed PIN from disk only when the module is initialised again.
    inflict(&s, &fault_file, "finalize");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        let started = Instant::now();
        let r = c.decrypt().ciphertext_blob(blob.clone()).send().await;
        assert_eq!(code(r), "DependencyTimeoutException");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request against a lost token took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not ready while the token cannot be used; still alive.
    let (status, _, body) = crate::operator::get(&format!("{}/readyz", s.endpoint)).await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["token"]["ok"], false, "{body}");
    assert_eq!(v["database"]["ok"], true, "{body}");
    let (status, _, _) = crate::operator::get(&format!("{}/healthz", s.endpoint)).await;
    assert_eq!(status, 200);
    let log = s.server_log();
    assert!(log.contains("THE TOKEN CANNOT BE USED"), "{log}");
    let logins_refused = log
        .lines()
        .filter(|l| l.contains("THE TOKEN CANNOT BE USED") && l.contains("CKR_PIN_INCORRECT"))
        .count();
    assert_eq!(
        logins_refused, 1,
        "the refused PIN was offered once only:\n{log}"
    );
    assert!(log.contains("it is not offered again"), "{log}");
    std::fs::copy(&new_pin, &pin_file).unwrap();
    let c2 = c.clone();
    eventually("requests succeed once the PIN file is corrected", || {
        let (c, blob) = (c2.clone(), blob.clone());
        async move { c.decrypt().ciphertext_blob(blob).send().await.is_ok() }
    })
    .await;
    assert_eq!(s.pid(), pid, "no restart");
    let (status, _, body) = crate::operator::get(&format!("{}/readyz", s.endpoint)).await;
    assert_eq!(status, 200, "ready again: {body}");
    let out = c.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"kept");
}

/// A pool of two tokens (two slots of one module, as an HA group presents them). `kms init`
/// copies the service keys from the first to the second inside the tokens; when the token in
/// use goes away, the same process moves to the other one and every key, ciphertext,
/// signature and MAC made before keeps working, as does the audit trail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_tokens_fails_over_when_the_one_in_use_is_lost() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, MacAlgorithmSpec, SigningAlgorithmSpec};
    let token = Token::new();
    let first = token.label.clone();
    let second = token.add_token();
    let db = Database::new();
    let init = |token: &Token, db: &Database| {
        let mut cmd = std::process::Command::new(kms_bin());
        kms_env(&mut cmd, token, db);
        let out = cmd
            .env("KMS_HSM__FAILOVER_LABELS", &second)
            .arg("init")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        (String::from_utf8_lossy(&out.stdout).to_string(), err)
    };
    let (stdout, stderr) = init(&token, &db);
    assert!(
        stderr.contains(&format!(
            "token '{second}': copied root key, MAC key, audit key pair"
        )),
        "{stderr}"
    );
    // Again: nothing is copied, the second token is checked to hold the same keys.
    let (_, again) = init(&token, &db);
    assert!(
        again.contains(&format!("token '{second}': service keys verified")),
        "{again}"
    );
    let (id, secret) = parse_credentials(&stdout);
    let dir = tempfile::tempdir().unwrap().keep();
    let fault = dir.join("fault");
    // A pool takes one PIN: `kms hsm set-pin` changes it on every token (the failover below
    // logs in to the second token with the new one).
    let new_pin = "55556666";
    std::fs::write(dir.join("new-pin"), new_pin).unwrap();
    let mut cmd = std::process::Command::new(kms_bin());
    kms_env(&mut cmd, &token, &db);
    let out = cmd
        .env("KMS_HSM__FAILOVER_LABELS", &second)
        .args(["hsm", "set-pin", "--new-pin-file"])
        .arg(dir.join("new-pin"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(&first) && said.contains(&second),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut s = Server::from_parts_with(
        token,
        db,
        &id.unwrap(),
        &secret.unwrap(),
        &[
            ("KMS_HSM__FAILOVER_LABELS", second.as_str()),
            ("KMS_HSM__PIN", new_pin),
            ("KMS_FAULT_INJECTION_FILE", fault.to_str().unwrap()),
            ("KMS_ENABLE_TEST_HOOKS", "true"),
            ("KMS_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let c = s.client();
    let create = |spec, usage| async { new_key_with(&c, spec, usage).await.key_id };
    let key = create(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let signing = create(KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let hmac = create(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"survives".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let message = Blob::new(b"signed before".to_vec());
    let signature = c
        .sign()
        .key_id(&signing)
        .message(message.clone())
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap()
        .signature
        .unwrap();
    let mac = c
        .generate_mac()
        .key_id(&hmac)
        .message(message.clone())
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap()
        .mac
        .unwrap();
    let ready = |endpoint: String| async move {
        let (status, _, body) = crate::operator::get(&format!("{endpoint}/readyz")).await;
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        )
    };
    let (status, body) = ready(s.endpoint.clone()).await;
    assert_eq!(
        (status, body["token"]["label"].as_str()),
        (200, Some(first.as_str()))
    );
    let (ok, report) = audit_verify(&s);
    assert!(ok, "{report}");
    // A MAC key rotation reaches every token of the pool: the new MAC key is copied inside
    // the tokens, and the rows MAC'd under it verify on the other token after the failover.
    let out = s.kms(&["hsm", "rotate-mac-key"]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && said.contains("MAC key v2 created"),
        "{said}"
    );

    // The token in use goes away (its files are gone; the module is re-initialised).
    s.token.take_away(&first);
    inflict(&s, &fault, "finalize");
    // (The signal is handled asynchronously: wait until the service is ready on the other
    // token, not merely for a request to succeed, which could precede the fault.)
    let (endpoint, second_label) = (s.endpoint.clone(), second.clone());
    eventually("the service is ready on the other token", || {
        let (endpoint, second) = (endpoint.clone(), second_label.clone());
        async move {
            let (status, body) = ready(endpoint).await;
            status == 200 && body["token"]["label"].as_str() == Some(second.as_str())
        }
    })
    .await;
    let out = c
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.server_log()));
    assert_eq!(out.plaintext.unwrap().into_inner(), b"survives");
    let verified = c
        .verify()
        .key_id(&signing)
        .message(message.clone())
        .signature(signature)
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .send()
        .await
        .unwrap();
    assert!(verified.signature_valid);
    let mac_ok = c
        .verify_mac()
        .key_id(&hmac)
        .message(message)
        .mac(mac)
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap();
    assert!(mac_ok.mac_valid);
    // New keys are made in the second token, and wrapped under the same root key.
    let fresh = create(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    c.encrypt()
        .key_id(&fresh)
        .plaintext(Blob::new(b"new".to_vec()))
        .send()
        .await
        .unwrap();
    let (status, body) = ready(s.endpoint.clone()).await;
    assert_eq!(
        (status, body["token"]["label"].as_str()),
        (200, Some(second.as_str()))
    );
    let (_, _, metrics) = crate::operator::get(s.metrics.as_deref().unwrap()).await;
    assert!(
        metrics.contains("kms_token_failovers_total 1\n"),
        "{metrics}"
    );
    assert!(s.server_log().contains("FAILED OVER"));
    let (ok, report) = audit_verify(&s);
    assert!(
        ok,
        "the audit trail signed in both tokens verifies with one key: {report}"
    );
    // Started again on the second token alone, with nothing cached: the rows MAC'd under MAC
    // key v2 in the first token verify with its copy.
    s.spawn();
    let c = s.client();
    for k in [&key, &fresh] {
        c.encrypt()
            .key_id(k)
            .plaintext(Blob::new(b"after".to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", s.server_log()));
    }
    let listed = String::from_utf8_lossy(&s.kms(&["hsm", "mac-keys"]).stdout).to_string();
    assert!(
        listed.contains("kms-metadata-mac-key-v2  (current)"),
        "{listed}"
    );
}

/// A token lost and re-opened is asked again whether it does AES-GCM as messages: on Kryoptic
/// the encryptions after the re-open are still one call each (their sessions set up afresh),
/// never the two calls of PKCS#11 2.40; on SoftHSM2 they stay two calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_token_keeps_encrypting_as_messages_where_it_can() {
    let (s, fault_file) = faultable(&[("KMS_METRICS_LISTEN", "127.0.0.1:0")]).await;
    let c = s.client();
    let key = new_key(&c).await;
    let encrypt = || {
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"around the re-open".to_vec()))
            .send()
    };
    encrypt().await.unwrap();
    let calls = |text: &str, call: &str| {
        crate::operator::samples(text)
            .get(&format!(r#"kms_token_gcm_calls_total{{call="{call}"}}"#))
            .copied()
            .unwrap_or(0.0)
    };
    let metrics = s.metrics.clone().unwrap();
    let (_, _, before) = crate::operator::get(&metrics).await;
    inflict(&s, &fault_file, "close-sessions");
    // The re-open happens behind the next calls; a call caught in it may fail retryably.
    let mut done = 0;
    for _ in 0..50 {
        if encrypt().await.is_ok() {
            done += 1;
            if done == 5 {
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(done, 5, "{}", s.server_log());
    let (_, _, after) = crate::operator::get(&metrics).await;
    assert!(
        s.server_log().contains("re-open") || s.server_log().contains("reopen"),
        "{}",
        s.server_log()
    );
    if kryoptic() {
        assert!(calls(&after, "setup") > calls(&before, "setup"), "{after}");
        assert!(
            calls(&after, "message") >= calls(&before, "message") + 5.0,
            "{after}"
        );
        assert_eq!(calls(&after, "two_calls"), 0.0, "{after}");
    } else {
        assert_eq!(calls(&after, "message"), 0.0, "{after}");
        assert!(
            calls(&after, "two_calls") >= calls(&before, "two_calls") + 5.0,
            "{after}"
        );
    }
}

/// A token that takes its time over a key pair (an HSM generating RSA-4096 can take tens of
/// seconds) is working, not stalled: the generation stops the request's clock, up to
/// `key_generation_timeout_ms`, and the call succeeds past `request_timeout_ms`. Past that
/// limit the call fails with AWS's timeout error and leaves no key behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_pair_generation_stops_the_request_clock_up_to_its_limit() {
    use aws_sdk_kms::types::{AlgorithmSpec, KeySpec, KeyUsageType, WrappingKeySpec};
    let dir = tempfile::tempdir().unwrap();
    let slowness = dir.path().join("generate-key-pair-ms");
    let (shim, module) = (latency_shim(), softhsm_module());
    let s = Server::start_with(&[
        ("KMS_HSM__MODULE", shim.as_str()),
        ("LATENCY_SHIM_MODULE", module.as_str()),
        ("LATENCY_SHIM_DELAY_US", "0"),
        (
            "LATENCY_SHIM_GENERATE_KEY_PAIR_FILE",
            slowness.to_str().unwrap(),
        ),
        ("KMS_REQUEST_TIMEOUT_MS", "1500"),
        ("KMS_KEY_GENERATION_TIMEOUT_MS", "3000"),
    ])
    .await;
    let c = s.client();
    let external =
        crate::import::external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt)
            .await;
    // From now on each key pair takes the token 2.5 s: past the 1.5 s deadline.
    std::fs::write(&slowness, "2500").unwrap();
    let t0 = Instant::now();
    let key = new_key_with(&c, KeySpec::Rsa2048, KeyUsageType::SignVerify)
        .await
        .key_id;
    assert!(t0.elapsed() >= Duration::from_millis(2500));
    c.get_parameters_for_import()
        .key_id(&external)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .expect("GetParametersForImport with a 2.5 s key pair generation");
    assert!(c
        .get_public_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .public_key
        .is_some());

    // A 6 s generation against the 3 s limit: the call fails as AWS's timeout once the
    // deadline and the limit are spent (4.5 s), and no key is left behind.
    std::fs::write(&slowness, "6000").unwrap();
    let before = c.list_keys().send().await.unwrap().keys.unwrap().len();
    let t0 = Instant::now();
    let r = c
        .create_key()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    let took = t0.elapsed();
    assert_eq!(code(r), "DependencyTimeoutException");
    assert!(
        took >= Duration::from_millis(4400) && took < Duration::from_millis(6000),
        "{took:?}"
    );
    std::fs::write(&slowness, "0").unwrap();
    let after = c.list_keys().send().await.unwrap().keys.unwrap().len();
    assert_eq!(after, before, "the timed-out CreateKey left a key");
}
