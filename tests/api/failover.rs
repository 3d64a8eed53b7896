//! The Postgres failover drill: two real clusters on this machine (a primary and a synchronous
//! standby made with `initdb` and `pg_basebackup`), the service given both hosts, the primary
//! killed with SIGKILL under load and the standby promoted. The service finds the new primary
//! by itself; nothing acknowledged is lost.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "123456789012";

/// The newest installed Postgres's programs.
fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres server programs (apt-get install postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("bin/initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .last()
        .expect("a Postgres version with initdb")
        .join("bin")
        .join(name)
}

/// Run a Postgres program as the `postgres` user (the server refuses to run as root).
fn as_postgres(program: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(pg_bin(program))
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn psql_at(port: u16, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            "-qXAtc",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A primary and its synchronous standby, stopped (SIGKILL) when dropped.
struct Clusters {
    dir: tempfile::TempDir,
    primary_port: u16,
    standby_port: u16,
}

impl Clusters {
    fn start() -> Clusters {
        let dir = tempfile::tempdir().unwrap();
        let pg = nix_ids();
        std::os::unix::fs::chown(dir.path(), Some(pg.0), Some(pg.1)).unwrap();
        let (p, s) = (dir.path().join("primary"), dir.path().join("standby"));
        let (primary_port, standby_port) = (free_port(), free_port());
        as_postgres(
            "initdb",
            &[
                "-D",
                p.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        let socket = dir.path().to_str().unwrap();
        append(
            &p.join("postgresql.conf"),
            &format!(
                "\nport = {primary_port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket}'\n\
                 wal_level = replica\nmax_wal_senders = 4\nfsync = off\n"
            ),
        );
        let start = |data: &Path| {
            let log = data.with_extension("log");
            as_postgres(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap(),
                    "-l",
                    log.to_str().unwrap(),
                    "-w",
                    "start",
                ],
            );
        };
        start(&p);
        as_postgres(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                s.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        append(
            &s.join("postgresql.conf"),
            &format!("\nport = {standby_port}\n"),
        );
        start(&s);
        // Every commit waits for the standby: what the primary acknowledges, the standby has.
        psql_at(
            primary_port,
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        );
        psql_at(primary_port, "SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(30);
        while psql_at(
            primary_port,
            "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
        ) != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the standby did not become synchronous"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        psql_at(primary_port, "CREATE DATABASE kms");
        Clusters {
            dir,
            primary_port,
            standby_port,
        }
    }

    fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/kms",
            self.primary_port, self.standby_port
        )
    }

    fn postmaster(&self, which: &str) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join(which).join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The primary's machine dies: its postmaster and every backend, SIGKILL.
    fn kill_primary(&self) {
        kill_tree(self.postmaster("primary").expect("primary running"));
    }

    fn promote_standby(&self) {
        let s = self.dir.path().join("standby");
        as_postgres("pg_ctl", &["-D", s.to_str().unwrap(), "-w", "promote"]);
    }
}

impl Drop for Clusters {
    fn drop(&mut self) {
        for which in ["primary", "standby"] {
            if let Some(pid) = self.postmaster(which) {
                kill_tree(pid);
            }
        }
    }
}

/// The `postgres` user's uid and gid.
fn nix_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// SIGKILL a process and its children (a postmaster and its backends).
fn kill_tree(pid: i32) {
    let mut children = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let ppid: i32 = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if ppid == pid {
                if let Ok(child) = e.file_name().to_string_lossy().parse::<i32>() {
                    children.push(child);
                }
            }
        }
    }
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    for c in children {
        let _ = Command::new("kill").args(["-9", &c.to_string()]).status();
    }
}

/// What the clients were told succeeded.
#[derive(Default)]
struct Acknowledged {
    keys: Vec<String>,
    /// (key, plaintext, ciphertext) from GenerateDataKey and Encrypt.
    ciphertexts: Vec<(String, Vec<u8>, Blob)>,
    /// (key, grant id)
    grants: Vec<(String, String)>,
    /// key → the description last set (UpdateKeyDescription).
    descriptions: std::collections::HashMap<String, String>,
    /// key → descriptions sent but not acknowledged since (the call failed: it may or may not
    /// have committed, as with any database when the connection drops at commit).
    unacknowledged: std::collections::HashMap<String, Vec<String>>,
    /// Errors seen, by code, and when.
    errors: Vec<(Instant, String)>,
    successes: Vec<Instant>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_loses_nothing_acknowledged() {
    if skip_on_sqlite("a Postgres failover drill") {
        return;
    }
    let clusters = tokio::task::spawn_blocking(Clusters::start).await.unwrap();
    let token = Token::new();
    let db = Database::at(&clusters.url());
    let init = tokio::task::block_in_place(|| run_init(&token, &db, None));
    assert!(
        init.status.success(),
        "kms init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let (id, secret) = parse_credentials(&String::from_utf8_lossy(&init.stdout));
    let (id, secret) = (id.unwrap(), secret.unwrap());
    let s = tokio::task::block_in_place(|| {
        Server::from_parts_with(
            token,
            db,
            &id,
            &secret,
            &[("KMS_REQUEST_TIMEOUT_MS", "3000")],
        )
    });
    let c = s.client();
    // A second node, whose caches must follow changes made through the first after the
    // failover (its change listener moves to the new primary too).
    let node2 = tokio::task::block_in_place(|| s.second_node());
    let c2 = s.client_of(&node2, &id, &secret);
    let watched = new_key(&c).await;
    c2.encrypt()
        .key_id(&watched)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    let (grantee, _, _) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "bob", None));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two clients doing a mix of writes and crypto until told to stop.
    let mut load = Vec::new();
    for worker in 0..2 {
        let (c, acked, stop, grantee) = (c.clone(), acked.clone(), stop.clone(), grantee.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut key: Option<String> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let result: Result<(), String> = async {
                    let k = match &key {
                        Some(k) if !n.is_multiple_of(10) => k.clone(),
                        _ => {
                            let k = c
                                .create_key()
                                .send()
                                .await
                                .map_err(|e| code_of(&e))?
                                .key_metadata
                                .unwrap()
                                .key_id;
                            acked.lock().unwrap().keys.push(k.clone());
                            key = Some(k.clone());
                            k
                        }
                    };
                    match n % 4 {
                        0 => {
                            let d = c
                                .generate_data_key()
                                .key_id(&k)
                                .key_spec(DataKeySpec::Aes256)
                                .send()
                                .await
                                .map_err(|e| code_of(&e))?;
                            acked.lock().unwrap().ciphertexts.push((
                                k,
                                d.plaintext.unwrap().into_inner(),
                                d.ciphertext_blob.unwrap(),
                            ));
                        }
                        1 => {
                            let pt = format!("w{worker}-{n}").into_bytes();
                            let e = c
                                .encrypt()
                                .key_id(&k)
                                .plaintext(Blob::new(pt.clone()))
                                .send()
                                .await
                                .map_err(|e| code_of(&e))?;
                            acked.lock().unwrap().ciphertexts.push((
                                k,
                                pt,
                                e.ciphertext_blob.unwrap(),
                            ));
                        }
                        2 => {
                            let g = c
                                .create_grant()
                                .key_id(&k)
                                .grantee_principal(&grantee)
                                .operations(GrantOperation::Decrypt)
                                .send()
                                .await
                                .map_err(|e| code_of(&e))?;
                            acked.lock().unwrap().grants.push((k, g.grant_id.unwrap()));
                        }
                        _ => {
                            let text = format!("w{worker}-{n}");
                            let sent = c
                                .update_key_description()
                                .key_id(&k)
                                .description(&text)
                                .send()
                                .await;
                            let mut a = acked.lock().unwrap();
                            if sent.is_ok() {
                                a.unacknowledged.remove(&k);
                                a.descriptions.insert(k, text);
                            } else {
                                a.unacknowledged.entry(k).or_default().push(text);
                            }
                            drop(a);
                            sent.map_err(|e| code_of(&e))?;
                        }
                    }
                    Ok(())
                }
                .await;
                let failed = result.is_err();
                {
                    let mut a = acked.lock().unwrap();
                    match result {
                        Ok(()) => a.successes.push(Instant::now()),
                        Err(code) => a.errors.push((Instant::now(), code)),
                    }
                }
                if failed {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = acked.lock().unwrap().successes.len();
    assert!(before > 10, "the load did not run: {before} calls");
    let killed = Instant::now();
    tokio::task::block_in_place(|| clusters.kill_primary());
    // The operator (or the cluster manager) promotes the standby a moment later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| clusters.promote_standby());
    let promoted = Instant::now();
    // The service finds the new primary by itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = acked.lock().unwrap();
        if a.successes.iter().filter(|t| **t > killed).count() >= 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not come back after the failover; errors: {:?}",
            a.errors
                .iter()
                .rev()
                .take(5)
                .map(|(_, c)| c)
                .collect::<Vec<_>>()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let a = std::mem::take(&mut *acked.lock().unwrap());
    // The outage the clients saw: the longest stretch without a success around the kill.
    let mut times: Vec<Instant> = a.successes.clone();
    times.sort();
    let outage = times
        .windows(2)
        .filter(|w| w[1] > killed)
        .map(|w| w[1].duration_since(w[0]))
        .max()
        .unwrap();
    let back = times
        .iter()
        .find(|t| **t > promoted)
        .map(|t| t.duration_since(promoted))
        .unwrap();
    let during: Vec<&String> = a
        .errors
        .iter()
        .filter(|(t, _)| *t > killed)
        .map(|(_, c)| c)
        .collect();
    eprintln!(
        "failover drill: outage seen by clients {} ms (primary killed, standby promoted 1 s later; first success {} ms after the promotion); {} calls failed meanwhile ({:?}); {} keys, {} ciphertexts, {} grants acknowledged",
        outage.as_millis(),
        back.as_millis(),
        during.len(),
        during.iter().collect::<std::collections::BTreeSet<_>>(),
        a.keys.len(),
        a.ciphertexts.len(),
        a.grants.len(),
    );
    // While no host took writes, callers were told to retry (503), never an internal error.
    for code in &during {
        assert_eq!(
            code.as_str(),
            "DependencyTimeoutException",
            "a call during the failover got {code}"
        );
    }
    // Nothing acknowledged is lost: every key, ciphertext, data key, grant and description.
    for k in &a.keys {
        c.describe_key().key_id(k).send().await.unwrap();
    }
    for (k, pt, blob) in &a.ciphertexts {
        let d = c
            .decrypt()
            .key_id(k)
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(&d.plaintext.unwrap().into_inner(), pt);
    }
    for (k, g) in &a.grants {
        let listed = c.list_grants().key_id(k).grant_id(g).send().await.unwrap();
        assert_eq!(listed.grants().len(), 1, "grant {g} of {k} lost");
    }
    for (k, text) in &a.descriptions {
        let m = c
            .describe_key()
            .key_id(k)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        // The last acknowledged description, or one sent after it whose call failed (it
        // may have committed before the primary died): never an older one, never lost.
        let later = a.unacknowledged.get(k).cloned().unwrap_or_default();
        let now = m.description.unwrap_or_default();
        assert!(
            now == *text || later.contains(&now),
            "description of {k}: {now:?}, acknowledged {text:?}, sent since without an answer {later:?}"
        );
    }
    drop(a);
    // A change made through one node after the failover is enforced on the other within a
    // second (its cached key state dropped by a notification from the new primary).
    c.disable_key().key_id(&watched).send().await.unwrap();
    let changed = Instant::now();
    loop {
        let r = c2
            .encrypt()
            .key_id(&watched)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await;
        if r.is_err() {
            assert_eq!(code(r), "DisabledException");
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "the second node still used a key disabled after the failover; log:\n{}",
            s.log_text()
                .lines()
                .filter(|l| l.contains("listener")
                    || l.contains("primary")
                    || l.contains("WARN")
                    || l.contains("ERROR"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "failover drill: a key disabled after the failover was refused by the other node after {} ms",
        changed.elapsed().as_millis()
    );
    // The trail is whole on the new primary.
    let (ok, out) = tokio::task::block_in_place(|| audit_verify(&s));
    assert!(ok, "{out}");
    assert!(
        s.log_text().contains("the database primary moved"),
        "the server did not say it followed the primary"
    );
}

fn code_of<E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug>(e: &E) -> String {
    e.code()
        .map(str::to_string)
        .unwrap_or_else(|| format!("no code: {e:?}"))
}

/// The synchronous standby dies (the primary lives): every commit would wait for it forever.
/// Callers are answered `DependencyTimeoutException` within `database_commit_timeout_ms`, not
/// after the whole request timeout, with a log line that names the cause; nothing is
/// acknowledged that the standby does not have. Once a standby is back, calls succeed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_waiting_for_a_standby_that_is_gone_are_answered_503_promptly() {
    if skip_on_sqlite("a Postgres synchronous-standby drill") {
        return;
    }
    let clusters = tokio::task::spawn_blocking(Clusters::start).await.unwrap();
    let token = Token::new();
    let db = Database::at(&clusters.url());
    let init = tokio::task::block_in_place(|| run_init(&token, &db, None));
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let (id, secret) = parse_credentials(&String::from_utf8_lossy(&init.stdout));
    let (id, secret) = (id.unwrap(), secret.unwrap());
    let s = tokio::task::block_in_place(|| {
        Server::from_parts_with(
            token,
            db,
            &id,
            &secret,
            &[
                ("KMS_REQUEST_TIMEOUT_MS", "10000"),
                ("KMS_DATABASE_COMMIT_TIMEOUT_MS", "1000"),
            ],
        )
    });
    let c = s.client();
    let key = new_key(&c).await;
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    // The standby's machine dies.
    kill_tree(clusters.postmaster("standby").expect("standby running"));
    for call in ["Encrypt", "CreateKey", "DisableKey"] {
        let started = Instant::now();
        let got = match call {
            "Encrypt" => code(
                c.encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(b"x".to_vec()))
                    .send()
                    .await,
            ),
            "CreateKey" => code(c.create_key().send().await),
            _ => code(c.disable_key().key_id(&key).send().await),
        };
        let took = started.elapsed();
        assert_eq!(got, "DependencyTimeoutException", "{call}");
        assert!(
            took < Duration::from_millis(5000),
            "{call} answered after {took:?}, not promptly"
        );
    }
    assert!(
        s.log_text().contains("synchronous standby that is gone"),
        "the log names the cause"
    );
    // Without synchronous replication (the operator's choice while the standby is rebuilt),
    // calls succeed again.
    psql_at(
        clusters.primary_port,
        "ALTER SYSTEM SET synchronous_standby_names = ''",
    );
    psql_at(clusters.primary_port, "SELECT pg_reload_conf()");
    eventually("calls succeed again", || {
        let c = c.clone();
        let key = key.clone();
        async move {
            c.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
                .is_ok()
        }
    })
    .await;
}
