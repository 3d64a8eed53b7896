//! Test harness: every test gets its own SoftHSM2 token directory (with its own
//! `SOFTHSM2_CONF`), its own Postgres database, and its own `kms` server process on an
//! ephemeral port, started the way an operator would (`kms init`, then `kms serve`).

#![allow(dead_code)]

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::ProvideErrorMetadata;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub const PIN: &str = "98765432";
pub const SO_PIN: &str = "12345678";
pub const REGION: &str = "us-east-1";
pub const OTHER_REGION: &str = "eu-west-1";

pub fn kms_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kms")
}

pub fn pg_base() -> String {
    std::env::var("KMS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Wait (at most 30 s) for `kms serve`'s listening line on the child's stdout, which is then
/// drained in the background: the API's URL, then the metrics URL if there is one, separated
/// by a space. Lines before it (development mode's credentials) are skipped. Panics with the
/// server's log (`log`) if it does not start.
pub fn listening_urls(child: &mut std::process::Child, log: &std::path::Path) -> String {
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for l in lines.by_ref().map_while(Result::ok) {
            let urls: Vec<&str> = l
                .split_whitespace()
                .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
                .collect();
            if !urls.is_empty() {
                let _ = tx.send(urls.join(" "));
                break;
            }
        }
        for _ in lines {}
    });
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "kms serve did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })
}

/// The PKCS#11 module under test: SoftHSM2 unless `KMS_TEST_TOKEN=kryoptic`, whose module is
/// `KMS_TEST_KRYOPTIC_MODULE` (scripts/test.sh builds it).
pub fn softhsm_module() -> String {
    if kryoptic() {
        return std::env::var("KMS_TEST_KRYOPTIC_MODULE")
            .expect("KMS_TEST_KRYOPTIC_MODULE names the Kryoptic module");
    }
    std::env::var("KMS_TEST_PKCS11_MODULE")
        .unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into())
}

/// `hsm/latency-shim` (a PKCS#11 module that forwards every call to another after a delay),
/// built once for the run; scripts/test.sh builds it first, so tests find it ready.
pub fn latency_shim() -> String {
    static BUILT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = env!("CARGO_MANIFEST_DIR");
            let target = format!("{root}/target/latency-shim");
            let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-q", "--manifest-path"])
                .arg(format!("{root}/hsm/latency-shim/Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target)
                .output()
                .expect("run cargo");
            assert!(
                out.status.success(),
                "build hsm/latency-shim: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            format!("{target}/debug/libkms_latency_shim.so")
        })
        .clone()
}

/// Whether this run's token is Kryoptic (else SoftHSM2).
pub fn kryoptic() -> bool {
    std::env::var("KMS_TEST_TOKEN").is_ok_and(|t| t == "kryoptic")
}

/// Skip the rest of a test on Kryoptic, saying why: true means "return now".
pub fn skip_on_kryoptic(reason: &str) -> bool {
    skip_on(kryoptic(), "Kryoptic", reason)
}

/// `pkcs11-tool` against the module under test (Kryoptic tokens are made with it).
pub fn pkcs11_tool(conf: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = Command::new("pkcs11-tool")
        .env("KRYOPTIC_CONF", conf)
        .env("SOFTHSM2_CONF", conf)
        .arg("--module")
        .arg(softhsm_module())
        .args(args)
        .output()
        .expect("pkcs11-tool must be installed (scripts/test.sh installs opensc)");
    assert!(
        out.status.success(),
        "pkcs11-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A Kryoptic configuration with one slot per label (slot i stores in `token-i.sql`).
fn kryoptic_conf(dir: &std::path::Path, slots: usize) -> String {
    let mut conf = String::new();
    for i in 0..slots {
        conf.push_str(&format!(
            "[[slots]]\nslot = {i}\ndescription = \"kms test slot {i}\"\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
            dir.join(format!("token-{i}.sql")).display()
        ));
    }
    conf
}

/// Initialise the Kryoptic token in `slot` with `label` and the test PINs.
fn kryoptic_init(conf: &std::path::Path, slot: usize, label: &str) {
    let slot = slot.to_string();
    pkcs11_tool(
        conf,
        &[
            "--slot",
            &slot,
            "--init-token",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
        ],
    );
    pkcs11_tool(
        conf,
        &[
            "--slot",
            &slot,
            "--init-pin",
            "--login",
            "--login-type",
            "so",
            "--so-pin",
            SO_PIN,
            "--pin",
            PIN,
        ],
    );
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A fresh SoftHSM2 token in its own directory.
pub struct Token {
    pub dir: tempfile::TempDir,
    pub label: String,
}

impl Token {
    pub fn new() -> Token {
        let dir = tempfile::tempdir().expect("tempdir");
        if kryoptic() {
            let label = format!("t{}", random_suffix());
            std::fs::write(
                dir.path().join("softhsm2.conf"),
                kryoptic_conf(dir.path(), 1),
            )
            .unwrap();
            kryoptic_init(&dir.path().join("softhsm2.conf"), 0, &label);
            return Token { dir, label };
        }
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let label = format!("t{}", random_suffix());
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", dir.path().join("softhsm2.conf"))
            .args([
                "--init-token",
                "--free",
                "--label",
                &label,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ])
            .output()
            .expect("softhsm2-util must be installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "init-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Token { dir, label }
    }

    /// Another token in the same SoftHSM2 directory (another slot of the same module), with
    /// the same PINs: for a pool of tokens.
    pub fn add_token(&self) -> String {
        let label = format!("t{}", random_suffix());
        if kryoptic() {
            std::fs::write(self.conf(), kryoptic_conf(self.dir.path(), 2)).unwrap();
            kryoptic_init(&self.conf(), 1, &label);
            return label;
        }
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", self.conf())
            .args([
                "--init-token",
                "--free",
                "--label",
                &label,
                "--so-pin",
                SO_PIN,
                "--pin",
                PIN,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        label
    }

    /// Take the token labelled `label` away: its storage is deleted (the module notices when
    /// it is initialised again).
    pub fn take_away(&self, label: &str) {
        if kryoptic() {
            let slot = if label == self.label { 0 } else { 1 };
            std::fs::remove_file(self.dir.path().join(format!("token-{slot}.sql"))).unwrap();
            return;
        }
        std::fs::remove_dir_all(self.token_dir(label)).unwrap();
    }

    /// The SoftHSM2 directory of the token labelled `label`.
    fn token_dir(&self, label: &str) -> PathBuf {
        for d in std::fs::read_dir(self.dir.path().join("tokens")).unwrap() {
            let d = d.unwrap().path();
            let object = std::fs::read(d.join("token.object")).unwrap_or_default();
            if object.windows(label.len()).any(|w| w == label.as_bytes()) {
                return d;
            }
        }
        panic!("no token directory for {label}");
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// A copy of the token as it is now (a backup of it), in a directory of its own.
    pub fn copy(&self) -> Token {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", self.dir.path().display()))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "copying the token failed");
        let from = self.dir.path().to_str().unwrap();
        let conf = std::fs::read_to_string(self.conf())
            .unwrap()
            .replace(from, dir.path().to_str().unwrap());
        std::fs::write(dir.path().join("softhsm2.conf"), conf).unwrap();
        let _ = std::fs::remove_file(dir.path().join("server.log"));
        Token {
            dir,
            label: self.label.clone(),
        }
    }

    /// The token objects (SoftHSM's file backend keeps one file per token object; Kryoptic's
    /// are counted by listing them).
    pub fn object_files(&self) -> usize {
        if kryoptic() {
            let out = pkcs11_tool(&self.conf(), &["--login", "--pin", PIN, "--list-objects"]);
            return String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("Object;"))
                .count();
        }
        let mut n = 0;
        for token in std::fs::read_dir(self.dir.path().join("tokens")).unwrap() {
            let token = token.unwrap().path();
            if token.is_dir() {
                n += std::fs::read_dir(&token)
                    .unwrap()
                    .filter(|e| {
                        let p = e.as_ref().unwrap().path();
                        // token.object holds the token itself, not a key.
                        p.extension().is_some_and(|x| x == "object")
                            && p.file_name().is_some_and(|n| n != "token.object")
                    })
                    .count();
            }
        }
        n
    }
}

/// A fresh database, dropped when the value is dropped.
pub struct Database {
    pub name: String,
    /// The embedded store's directory (`KMS_TEST_STORE=sqlite`).
    sqlite: Option<tempfile::TempDir>,
    /// A database the test made elsewhere (its own clusters), by URL; not dropped here.
    external: Option<String>,
}

/// Whether this run's store is the embedded SQLite store (else Postgres).
pub fn sqlite() -> bool {
    std::env::var("KMS_TEST_STORE").is_ok_and(|t| t == "sqlite")
}

/// Skip the rest of a test on the SQLite store, saying why: true means "return now".
pub fn skip_on_sqlite(reason: &str) -> bool {
    skip_on(sqlite(), "SQLite", reason)
}

fn skip_on(yes: bool, what: &str, reason: &str) -> bool {
    if !yes {
        return false;
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    eprintln!("SKIPPED on {what}: {test}: {reason}");
    // scripts/test.sh lists every skip with its reason after the run.
    if let Ok(f) = std::env::var("KMS_TEST_SKIPS") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(f) {
            let _ = writeln!(f, "{what}: {test}: {reason}");
        }
    }
    true
}

impl Database {
    pub fn new() -> Database {
        let name = format!("kms_t_{}", random_suffix());
        if sqlite() {
            return Database {
                name,
                sqlite: Some(tempfile::tempdir().expect("tempdir")),
                external: None,
            };
        }
        psql(&format!("CREATE DATABASE {name}"));
        Database {
            name,
            sqlite: None,
            external: None,
        }
    }

    /// A database the test created itself, reached at `url` (which may list several hosts).
    pub fn at(url: &str) -> Database {
        Database {
            name: "kms".into(),
            sqlite: None,
            external: Some(url.to_string()),
        }
    }

    pub fn url(&self) -> String {
        if let Some(u) = &self.external {
            return u.clone();
        }
        match &self.sqlite {
            Some(dir) => format!("sqlite://{}/kms.db", dir.path().display()),
            None => format!("{}/{}", pg_base(), self.name),
        }
    }

    /// A key id as an SQL literal of this store (Postgres: uuid; SQLite: its 16 bytes).
    pub fn key(&self, key_id: &str) -> String {
        let id: uuid::Uuid = key_id.parse().expect("a key id");
        if self.sqlite.is_some() {
            format!("x'{}'", id.simple())
        } else {
            format!("'{id}'::uuid")
        }
    }

    /// A string as an SQL literal (both dialects: single quotes doubled).
    pub fn text(&self, v: &str) -> String {
        format!("'{}'", v.replace('\'', "''"))
    }

    /// Bytes as an SQL literal of this store.
    pub fn bytes(&self, v: &[u8]) -> String {
        if self.sqlite.is_some() {
            format!("x'{}'", hex::encode(v))
        } else {
            format!("decode('{}', 'hex')", hex::encode(v))
        }
    }

    /// An SQL expression giving a bytes column as lower-case hex.
    pub fn hex(&self, column: &str) -> String {
        if self.sqlite.is_some() {
            format!("lower(hex({column}))")
        } else {
            format!("encode({column}, 'hex')")
        }
    }

    /// SQL for "now" as this store keeps timestamps.
    pub fn now(&self) -> &'static str {
        if self.sqlite.is_some() {
            "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
        } else {
            "now()"
        }
    }

    /// SQL for "now plus `days` days" as this store keeps timestamps.
    pub fn now_plus_days(&self, days: i64) -> String {
        if self.sqlite.is_some() {
            format!("strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+{days} days')")
        } else {
            format!("now() + interval '{days} days'")
        }
    }

    /// SQL for a new random UUID as this store keeps them.
    pub fn new_uuid(&self) -> &'static str {
        if self.sqlite.is_some() {
            "randomblob(16)"
        } else {
            "gen_random_uuid()"
        }
    }

    /// Run SQL that both stores understand, returning its rows' first column as text.
    pub async fn strings(&self, sql: &str) -> Vec<String> {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.url())
            .await
            .expect("open the test database");
        let rows = sqlx::query(sql)
            .fetch_all(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let v = rows
            .iter()
            .map(|r| {
                r.try_get::<String, _>(0)
                    .or_else(|_| r.try_get::<i64, _>(0).map(|v| v.to_string()))
                    .unwrap_or_else(|_| r.get::<i32, _>(0).to_string())
            })
            .collect();
        pool.close().await;
        v
    }

    /// Run SQL that both stores understand and that returns one integer.
    pub async fn int(&self, sql: &str) -> i64 {
        self.strings(sql).await[0].parse().expect("an integer")
    }

    /// Run SQL that both stores understand, for its effect.
    pub async fn execute(&self, sql: &str) {
        self.strings(sql).await;
    }

    /// A Postgres pool, for the one test that reads every Postgres table (SQLite reads the file).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url())
            .await
            .expect("connect to test db")
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.sqlite.is_some() || self.external.is_some() {
            return;
        }
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([&format!("{}/postgres", pg_base()), "-qXc", sql])
        .output()
        .expect("psql must be installed");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Environment for a `kms` process bound to a token and a database.
pub fn kms_env(cmd: &mut Command, token: &Token, db: &Database) {
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SOFTHSM2_CONF", token.conf())
        .env("KRYOPTIC_CONF", token.conf())
        .env("KMS_DATABASE_URL", db.url())
        .env("KMS_HSM__MODULE", softhsm_module())
        .env("KMS_HSM__TOKEN_LABEL", &token.label)
        .env("KMS_HSM__PIN", PIN)
        .env("KMS_LISTEN", "127.0.0.1:0")
        .env("KMS_REGIONS", format!("{REGION},{OTHER_REGION}"))
        .env("RUST_LOG", "info,cryptoki=off,sqlx=warn");
}

pub struct Server {
    pub token: Token,
    pub db: Database,
    child: Option<Child>,
    pub endpoint: String,
    /// The metrics listener's `/metrics` URL, when `KMS_METRICS_LISTEN` is set.
    pub metrics: Option<String>,
    /// The console's `/console/` URL, when `KMS_CONSOLE_LISTEN` is set.
    pub console: Option<String>,
    pub access_key_id: String,
    pub secret: String,
    pub log: PathBuf,
    /// Extra environment for the server process.
    pub env: Vec<(String, String)>,
    /// The `kms` binary it runs (this build's, or an older release's).
    pub bin: String,
}

pub fn run_init(token: &Token, db: &Database, creds: Option<(&str, &str)>) -> std::process::Output {
    run_init_with(kms_bin(), token, db, creds)
}

/// [`run_init`] with another `kms` binary (an older release's).
pub fn run_init_with(
    bin: &str,
    token: &Token,
    db: &Database,
    creds: Option<(&str, &str)>,
) -> std::process::Output {
    let mut cmd = Command::new(bin);
    kms_env(&mut cmd, token, db);
    if let Some((id, secret)) = creds {
        cmd.env("KMS_ADMIN_ACCESS_KEY_ID", id)
            .env("KMS_ADMIN_SECRET_ACCESS_KEY", secret);
    }
    cmd.arg("init").output().expect("run kms init")
}

/// Parse `AWS_ACCESS_KEY_ID=…` / `AWS_SECRET_ACCESS_KEY=…` lines.
pub fn parse_credentials(stdout: &str) -> (Option<String>, Option<String>) {
    let mut id = None;
    let mut secret = None;
    for l in stdout.lines() {
        if let Some(v) = l.strip_prefix("AWS_ACCESS_KEY_ID=") {
            id = Some(v.to_string());
        }
        if let Some(v) = l.strip_prefix("AWS_SECRET_ACCESS_KEY=") {
            secret = Some(v.to_string());
        }
    }
    (id, secret)
}

impl Server {
    pub async fn start() -> Server {
        tokio::task::spawn_blocking(|| Self::start_blocking(vec![]))
            .await
            .unwrap()
    }

    /// A server with extra settings in its environment.
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || Self::start_blocking(env))
            .await
            .unwrap()
    }

    /// A server for a token and database that `kms init` already prepared.
    pub fn from_parts(token: Token, db: Database, id: &str, secret: &str) -> Server {
        Self::from_parts_with(token, db, id, secret, &[])
    }

    /// `from_parts` with extra settings in the server's environment.
    pub fn from_parts_with(
        token: Token,
        db: Database,
        id: &str,
        secret: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let log = token.dir.path().join("server.log");
        let mut s = Server {
            token,
            db,
            child: None,
            endpoint: String::new(),
            metrics: None,
            console: None,
            access_key_id: id.into(),
            secret: secret.into(),
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bin: kms_bin().to_string(),
        };
        s.spawn();
        s
    }

    /// A server running another `kms` binary (an older release's) on a token and database
    /// that binary's `kms init` prepared.
    pub fn from_parts_on(
        bin: &str,
        token: Token,
        db: Database,
        id: &str,
        secret: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let log = token.dir.path().join("server.log");
        let mut s = Server {
            token,
            db,
            child: None,
            endpoint: String::new(),
            metrics: None,
            console: None,
            access_key_id: id.into(),
            secret: secret.into(),
            log,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            bin: bin.to_string(),
        };
        s.spawn();
        s
    }

    fn start_blocking(env: Vec<(String, String)>) -> Server {
        let token = Token::new();
        let db = Database::new();
        // `{db}` in a setting stands for this server's database name.
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k, v.replace("{db}", &db.name)))
            .collect();
        let init = run_init(&token, &db, None);
        assert!(
            init.status.success(),
            "kms init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let (id, secret) = parse_credentials(&String::from_utf8_lossy(&init.stdout));
        let log = token.dir.path().join("server.log");
        let mut s = Server {
            token,
            db,
            child: None,
            endpoint: String::new(),
            metrics: None,
            console: None,
            access_key_id: id.expect("init prints the key id"),
            secret: secret.expect("init prints the secret"),
            log,
            env,
            bin: kms_bin().to_string(),
        };
        s.spawn();
        s
    }

    /// Start (or restart) the server process.
    /// SIGKILL the server: no drain, no shutdown work.
    /// The server process id (changes only when the test restarts it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Send the server a signal (`kill -<sig>`).
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig}");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn spawn(&mut self) {
        self.stop();
        let (child, endpoint) = self.start_process();
        let mut urls = endpoint.split(' ');
        self.endpoint = urls.next().unwrap_or_default().to_string();
        let rest: Vec<&str> = urls.collect();
        let find = |end: &str| {
            rest.iter()
                .find(|u| u.ends_with(end))
                .map(|u| u.to_string())
        };
        self.metrics = find("/metrics");
        self.console = find("/console/");
        self.child = Some(child);
    }

    /// Another server process on the same token and database (a second node).
    pub fn second_node(&self) -> Node {
        self.node_on(&self.bin.clone())
    }

    /// A second node that runs another `kms` binary (this build's beside an older release's).
    pub fn node_on(&self, bin: &str) -> Node {
        let (child, endpoint) = self.start_process_on(bin);
        let endpoint = endpoint.split(' ').next().unwrap_or_default().to_string();
        Node { child, endpoint }
    }

    /// Move the service clock forward (needs `KMS_CLOCK_OFFSET_FILE` from `start_with`).
    pub fn advance_days(&self, days: i64) {
        let now: i64 = std::fs::read_to_string(self.clock_file())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        self.set_clock_offset(now + days * 86400);
    }

    /// Set the service clock to `seconds` past the real one (needs `KMS_CLOCK_OFFSET_FILE`).
    pub fn set_clock_offset(&self, seconds: i64) {
        std::fs::write(self.clock_file(), seconds.to_string()).unwrap();
    }

    fn clock_file(&self) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == "KMS_CLOCK_OFFSET_FILE")
            .map(|(_, v)| v.clone())
            .expect("clock file")
    }

    fn start_process(&self) -> (Child, String) {
        self.start_process_on(&self.bin)
    }

    fn start_process_on(&self, bin: &str) -> (Child, String) {
        let mut cmd = Command::new(bin);
        kms_env(&mut cmd, &self.token, &self.db);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        for (k, v) in &self.env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn kms serve");
        let urls = listening_urls(&mut child, &self.log);
        (child, urls)
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc_kill(c.id() as i32, 15);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Send SIGTERM and wait for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        unsafe {
            libc_kill(c.id() as i32, 15);
        }
        c.wait().unwrap()
    }

    pub fn client(&self) -> aws_sdk_kms::Client {
        self.client_with(&self.access_key_id, &self.secret, REGION, None)
    }

    pub fn client_in(&self, region: &str) -> aws_sdk_kms::Client {
        self.client_with(&self.access_key_id, &self.secret, region, None)
    }

    /// A client of another node of this deployment.
    pub fn client_of(&self, node: &Node, id: &str, secret: &str) -> aws_sdk_kms::Client {
        self.client_of_with(node, id, secret, REGION)
    }

    /// A client of another node of this deployment, in `region`, as the root user.
    pub fn client_of_in(&self, node: &Node, region: &str) -> aws_sdk_kms::Client {
        self.client_of_with(node, &self.access_key_id, &self.secret, region)
    }

    fn client_of_with(
        &self,
        node: &Node,
        id: &str,
        secret: &str,
        region: &str,
    ) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .endpoint_url(&node.endpoint)
            .credentials_provider(Credentials::new(id, secret, None, None, "test"))
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }

    pub fn client_with(
        &self,
        id: &str,
        secret: &str,
        region: &str,
        at: Option<SystemTime>,
    ) -> aws_sdk_kms::Client {
        client_at(&self.endpoint, id, secret, region, at)
    }

    /// Run `kms admin …` against this server's token and database.
    pub fn admin(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        kms_env(&mut cmd, &self.token, &self.db);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.arg("admin").args(args).output().expect("run kms admin");
        out
    }

    /// Run `kms <args>` (any subcommand) against this server's token and database.
    /// Run `kms …` with this server's environment (its extra settings included).
    pub fn kms(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        kms_env(&mut cmd, &self.token, &self.db);
        for (k, v) in &self.env {
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        cmd.args(args).output().expect("run kms")
    }

    /// A file in this test's directory.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.token.dir.path().join(name)
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn admin_ok(&self, args: &[&str]) -> String {
        let out = self.admin(args, &[]);
        assert!(
            out.status.success(),
            "kms admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Attach an identity policy (JSON text) to a principal.
    pub fn put_user_policy(&self, arn: &str, name: &str, policy: &str) {
        let f = self
            .token
            .dir
            .path()
            .join(format!("{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&f, policy).unwrap();
        self.admin_ok(&[
            "put-user-policy",
            "--user-arn",
            arn,
            "--policy-name",
            name,
            "--policy-document",
            f.to_str().unwrap(),
        ]);
    }

    /// A user in `account` (created if needed) with an optional identity policy, and a client
    /// signed with a fresh access key of theirs. Returns (user ARN, access key id, client).
    pub fn new_user(
        &self,
        account: &str,
        name: &str,
        policy: Option<&str>,
    ) -> (String, String, aws_sdk_kms::Client) {
        let (arn, id, _, client) = self.new_user_with_secret(account, name, policy);
        (arn, id, client)
    }

    /// A role with a trust policy (JSON text); returns its ARN.
    pub fn create_role(&self, account: &str, name: &str, trust: &str) -> String {
        let f = self
            .token
            .dir
            .path()
            .join(format!("{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&f, trust).unwrap();
        self.admin_ok(&[
            "create-role",
            "--account-id",
            account,
            "--role-name",
            name,
            "--trust-policy",
            f.to_str().unwrap(),
        ])
        .trim()
        .to_string()
    }

    pub fn new_user_with_secret(
        &self,
        account: &str,
        name: &str,
        policy: Option<&str>,
    ) -> (String, String, String, aws_sdk_kms::Client) {
        self.admin_ok(&["create-account", "--account-id", account]);
        let arn = self
            .admin_ok(&["create-user", "--account-id", account, "--user-name", name])
            .trim()
            .to_string();
        if let Some(p) = policy {
            self.put_user_policy(&arn, "policy", p);
        }
        let out = self.admin_ok(&["create-access-key", "--user-arn", &arn]);
        let (id, secret) = parse_credentials(&out);
        let (id, secret) = (id.unwrap(), secret.unwrap());
        let client = self.client_with(&id, &secret, REGION, None);
        (arn, id, secret, client)
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send a request signed by an independent SigV4 implementation (aws-sigv4), or unsigned.
    pub async fn raw(
        &self,
        target: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
        sign: bool,
    ) -> RawResponse {
        raw_request(
            &self.endpoint,
            &self.access_key_id,
            &self.secret,
            REGION,
            target,
            content_type,
            body,
            sign,
            SystemTime::now(),
        )
        .await
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // A failing test shows what the server said (the token directory goes with it).
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- server log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A second server process; stopped when dropped.
pub struct Node {
    child: Child,
    pub endpoint: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let _ = self.child.wait();
    }
}

pub struct RawResponse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: serde_json::Value,
}

impl RawResponse {
    pub fn error_type(&self) -> &str {
        self.json["__type"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or("")
    }
}

#[allow(clippy::too_many_arguments)]
pub async fn raw_request(
    endpoint: &str,
    id: &str,
    secret: &str,
    region: &str,
    target: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
    sign: bool,
    at: SystemTime,
) -> RawResponse {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("{endpoint}/"));
    let host = endpoint.trim_start_matches("http://").to_string();
    req = req
        .header("host", host)
        .header("content-type", content_type);
    if let Some(t) = target {
        req = req.header("x-amz-target", t);
    }
    let mut req = req.body(body.clone()).unwrap();
    if sign {
        sign_request(&mut req, id, secret, region, at);
    }
    let client = reqwest::Client::new();
    let mut rb = client.post(format!("{endpoint}/"));
    for (k, v) in req.headers() {
        if k.as_str() != "host" {
            rb = rb.header(k.as_str(), v.to_str().unwrap());
        }
    }
    let resp = rb.body(req.into_body()).send().await.expect("http");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    RawResponse {
        status,
        headers,
        json,
    }
}

/// Sign an HTTP request with the independent `aws-sigv4` implementation, over the headers it
/// carries now.
pub fn sign_request(
    req: &mut http::Request<Vec<u8>>,
    id: &str,
    secret: &str,
    region: &str,
    at: SystemTime,
) {
    sign_request_for(req, id, secret, region, "kms", at)
}

/// [`sign_request`] for another service's name (`kms-xks-proxy`).
pub fn sign_request_for(
    req: &mut http::Request<Vec<u8>>,
    id: &str,
    secret: &str,
    region: &str,
    service: &str,
    at: SystemTime,
) {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = Credentials::new(id, secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let body = req.body().clone();
    let signable = SignableRequest::new(
        "POST",
        req.uri().to_string(),
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(req);
}

/// The AWS error code of a failed SDK call.
pub fn code<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("no error code in {e:?}"))
            .to_string(),
    }
}

pub fn message<T: std::fmt::Debug, E: ProvideErrorMetadata + std::fmt::Debug>(
    r: Result<T, E>,
) -> (String, String) {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => (
            e.code()
                .unwrap_or_else(|| panic!("no error code in {e:?}"))
                .to_string(),
            e.message().unwrap_or("").to_string(),
        ),
    }
}

/// A server whose clock tests move forward (`Server::advance_days`), with a fast scheduler.
pub async fn clocked() -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let f = dir.join("clock-offset");
    std::fs::write(&f, "0").unwrap();
    Server::start_with(&[
        ("KMS_CLOCK_OFFSET_FILE", f.to_str().unwrap()),
        ("KMS_ENABLE_TEST_HOOKS", "true"),
        ("KMS_SCHEDULER_INTERVAL_MS", "50"),
    ])
    .await
}

/// Wait (up to 15 s) until `f` holds.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Call `f` until it succeeds (a policy just written reaches every cache within moments),
/// each failure meanwhile an `AccessDeniedException`; its success.
pub async fn once_allowed<T, E, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: ProvideErrorMetadata + std::fmt::Debug,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(e) => {
                assert_eq!(e.code(), Some("AccessDeniedException"), "{e:?}");
                assert!(Instant::now() < deadline, "never allowed: {e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// `RotateKeyOnDemand`, then wait until the background jobs completed the rotation (as on
/// AWS, the call only starts it).
pub async fn rotate_now(
    c: &aws_sdk_kms::Client,
    key: &str,
) -> aws_sdk_kms::operation::rotate_key_on_demand::RotateKeyOnDemandOutput {
    let out = c.rotate_key_on_demand().key_id(key).send().await.unwrap();
    rotation_completed(c, key).await;
    out
}

/// Wait until no on-demand rotation of `key` is in progress (`GetKeyRotationStatus` shows no
/// `OnDemandRotationStartDate`).
pub async fn rotation_completed(c: &aws_sdk_kms::Client, key: &str) {
    let (c, key) = (c.clone(), key.to_string());
    eventually("the on-demand rotation to complete", move || {
        let (c, key) = (c.clone(), key.clone());
        async move {
            c.get_key_rotation_status()
                .key_id(&key)
                .send()
                .await
                .is_ok_and(|s| s.on_demand_rotation_start_date.is_none())
        }
    })
    .await;
}

/// `kms audit verify` against the server's database: (passed, what it printed).
pub fn audit_verify(s: &Server) -> (bool, String) {
    let key = s.path("audit.pem");
    if !key.exists() {
        let pem = s.kms(&["audit", "public-key"]);
        assert!(pem.status.success(), "kms audit public-key failed");
        std::fs::write(&key, pem.stdout).unwrap();
    }
    let out = s.kms(&["audit", "verify", "--public-key", key.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// An SDK client of the service at `endpoint` (no retries: tests see every error).
pub fn client_at(
    endpoint: &str,
    id: &str,
    secret: &str,
    region: &str,
    at: Option<SystemTime>,
) -> aws_sdk_kms::Client {
    let mut b = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(id, secret, None, None, "test"))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled());
    if let Some(t) = at {
        b = b.time_source(aws_smithy_async::time::StaticTimeSource::new(t));
    }
    aws_sdk_kms::Client::from_conf(b.build())
}

/// A new key of `spec` for `usage`: its metadata.
pub async fn new_key_with(
    c: &aws_sdk_kms::Client,
    spec: aws_sdk_kms::types::KeySpec,
    usage: aws_sdk_kms::types::KeyUsageType,
) -> aws_sdk_kms::types::KeyMetadata {
    c.create_key()
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
}

/// `DescribeKey`'s metadata of `key`.
pub async fn describe(c: &aws_sdk_kms::Client, key: &str) -> aws_sdk_kms::types::KeyMetadata {
    c.describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
}

/// A new multi-Region symmetric encryption key's id (`mrk-…`).
pub async fn new_multi_region_key(c: &aws_sdk_kms::Client) -> String {
    let made = c.create_key().multi_region(true).send().await.unwrap();
    made.key_metadata.unwrap().key_id
}

/// A new symmetric encryption key's id.
pub async fn new_key(c: &aws_sdk_kms::Client) -> String {
    c.create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}
