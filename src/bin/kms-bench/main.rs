//! `kms-bench`: a load generator for any AWS-KMS-compatible endpoint (AWS JSON 1.1, SigV4),
//! plus the limits to compare a server against: the token's own rate for the same mechanism
//! (direct PKCS#11 calls on one session with a cached handle) and a bare HTTP server answering
//! a fixed body to the same signed client.
//!
//! Every measurement prints a line and appends a JSON object to `--json`; `report` turns a
//! run's JSON into the table of `docs/benchmarks.md`.

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "kms-bench", about = "Measure an AWS-KMS-compatible endpoint")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Target {
    /// http://host:port of the endpoint; several, comma-separated, spread the connections
    /// over them in turn (nodes of one service) and report each one's latency.
    #[arg(long)]
    endpoint: String,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
}

impl Target {
    fn endpoints(&self) -> Vec<&str> {
        self.endpoint.split(',').map(str::trim).collect()
    }

    /// The endpoint for set-up calls (the first).
    fn first(&self) -> &str {
        self.endpoints()[0]
    }
}

#[derive(Args, Clone)]
struct Common {
    /// Concurrency levels (connections), comma-separated.
    #[arg(long, default_value = "1,8,64")]
    concurrency: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Append results here as JSON Lines.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label recorded with each result (e.g. the implementation measured).
    #[arg(long, default_value = "kms")]
    label: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure the operation matrix against an endpoint.
    Run {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        common: Common,
        /// Operations (default: all).
        #[arg(long)]
        ops: Option<String>,
        /// Seconds of each case's unrecorded first calls, at concurrency 8 (0: none, for a
        /// server already warm whose own metrics are read around the run).
        #[arg(long, default_value_t = 0.3)]
        warmup: f64,
    },
    /// A bare HTTP server answering a fixed body, driven by the same signed client.
    Baseline {
        #[command(flatten)]
        common: Common,
    },
    /// The token's own rates, on one session with a cached handle (reads the kms
    /// configuration for the token).
    Token {
        #[command(flatten)]
        common: Common,
    },
    /// Create `keys` keys, then measure Encrypt spread over `spread` of them.
    Scale {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        #[arg(long, default_value_t = 1000)]
        spread: usize,
        #[arg(long, default_value = "scale")]
        case: String,
        /// Reuse the keys listed in this file (one id a line) if it exists; otherwise create
        /// them and write it (so that rounds in turns measure the same keys).
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Send `requests` Encrypts as fast as possible (for memory measurements).
    Load {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        requests: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Measure the console's pages (signed in with the target's access key), after creating
    /// `keys` more keys.
    Console {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        common: Common,
        /// http://host:port of the console listener.
        #[arg(long)]
        console: String,
        #[arg(long, default_value_t = 0)]
        keys: usize,
        /// Requests per page measured.
        #[arg(long, default_value_t = 50)]
        samples: usize,
    },
    /// The disk's own commit cost: `count` writes of 8 KiB, each followed by `fdatasync`, in a
    /// file under `dir` (give the database's data directory: one Postgres commit costs one).
    Fsync {
        #[command(flatten)]
        common: Common,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1000)]
        count: usize,
    },
    /// The audit trail's append alone, one event at a time, on the database of the instance in
    /// the environment (`KMS_DATABASE_URL`): Postgres's own floor under an audited call.
    Trail {
        #[command(flatten)]
        common: Common,
    },
    /// Print the table (Markdown) of a run's JSON Lines.
    Report { json: PathBuf },
}

use kms::encoding::b64;

mod console;
mod token;
mod trail;
use console::console_pages;
use token::token;
use trail::trail;

/// One keep-alive HTTP/1.1 connection that sends signed KMS requests.
struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(endpoint: &str) -> Result<Conn, String> {
        let host = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let stream = tokio::net::TcpStream::connect(&host)
            .await
            .map_err(|e| format!("connect {host}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(Conn { send, host })
    }

    async fn call(&mut self, t: &Target, op: &str, body: &[u8]) -> Result<(u16, Bytes), String> {
        let mut req = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}/", self.host))
            .header("host", &self.host)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("TrentService.{op}"))
            .body(body.to_vec())
            .map_err(|e| e.to_string())?;
        sign(&mut req, t)?;
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        self.send.ready().await.map_err(|e| e.to_string())?;
        let resp = self
            .send
            .send_request(req)
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

fn sign(req: &mut http::Request<Vec<u8>>, t: &Target) -> Result<(), String> {
    kms::api::sigv4::sign_request(
        req,
        &t.access_key_id,
        &t.secret_access_key,
        &t.region,
        "kms",
    )
}

/// One call, outside a measurement; the parsed response or the error body.
async fn once(t: &Target, op: &str, body: Value) -> Result<Value, String> {
    let mut c = Conn::open(t.first()).await?;
    let (status, bytes) = c.call(t, op, body.to_string().as_bytes()).await?;
    if status != 200 {
        return Err(format!(
            "{op}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[derive(Debug, Clone)]
struct Stats {
    requests: u64,
    errors: u64,
    seconds: f64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    /// With several endpoints: each one's (requests/s, p50, p99), in the order given.
    nodes: Vec<(f64, u64, u64)>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn of(mut lat: Vec<u32>, errors: u64, seconds: f64) -> Stats {
        lat.sort_unstable();
        let pct = |p: f64| -> u64 {
            if lat.is_empty() {
                return 0;
            }
            let i = ((lat.len() as f64) * p).ceil() as usize;
            lat[i.clamp(1, lat.len()) - 1] as u64
        };
        Stats {
            requests: lat.len() as u64,
            errors,
            seconds,
            p50_us: pct(0.50),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            nodes: Vec::new(),
        }
    }
}

/// Bodies for one case: called with the worker's request counter.
type BodyFn = Arc<dyn Fn(u64) -> Vec<u8> + Send + Sync>;

/// Drive `op` from `conc` connections for `seconds` (connection `w` to endpoint `w mod n`).
async fn measure(t: &Target, op: &str, body: BodyFn, conc: usize, seconds: f64) -> Stats {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let endpoints: Vec<String> = t.endpoints().into_iter().map(str::to_string).collect();
    let mut tasks = Vec::new();
    for w in 0..conc {
        let (t, op, body) = (t.clone(), op.to_string(), body.clone());
        let endpoint = endpoints[w % endpoints.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let Ok(mut c) = Conn::open(&endpoint).await else {
                return (w, lat, 1);
            };
            let mut n = w as u64 * 1_000_000_007;
            while Instant::now() < deadline {
                let b = body(n);
                n += 1;
                let t0 = Instant::now();
                match c.call(&t, &op, &b).await {
                    Ok((200, _)) => lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        match Conn::open(&endpoint).await {
                            Ok(nc) => c = nc,
                            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                }
            }
            (w, lat, errors)
        }));
    }
    let mut per_node: Vec<Vec<u32>> = vec![Vec::new(); endpoints.len()];
    let mut errors = 0;
    for t in tasks {
        if let Ok((w, l, e)) = t.await {
            per_node[w % endpoints.len()].extend(l);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let nodes = if endpoints.len() > 1 {
        per_node
            .iter()
            .map(|l| {
                let s = Stats::of(l.clone(), 0, seconds);
                (s.rps(), s.p50_us, s.p99_us)
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut s = Stats::of(per_node.concat(), errors, seconds);
    s.nodes = nodes;
    s
}

fn record(common: &Common, case: &str, conc: usize, s: &Stats, extra: Value) {
    println!(
        "{:<28} c={:<3} {:>9.0} req/s  p50 {:>7} µs  p99 {:>7} µs  p99.9 {:>7} µs  errors {}",
        case,
        conc,
        s.rps(),
        s.p50_us,
        s.p99_us,
        s.p999_us,
        s.errors
    );
    if let Some(path) = &common.json {
        let mut v = json!({
            "label": common.label,
            "case": case,
            "concurrency": conc,
            "rps": s.rps(),
            "requests": s.requests,
            "errors": s.errors,
            "p50_us": s.p50_us,
            "p99_us": s.p99_us,
            "p999_us": s.p999_us,
        });
        if !s.nodes.is_empty() {
            v["nodes"] = json!(s
                .nodes
                .iter()
                .map(|(rps, p50, p99)| json!({"rps": rps, "p50_us": p50, "p99_us": p99}))
                .collect::<Vec<_>>());
        }
        if let (Some(m), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in x {
                m.insert(k.clone(), val.clone());
            }
        }
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{v}");
        }
    }
}

fn levels(common: &Common) -> Vec<usize> {
    common
        .concurrency
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect()
}

async fn create_key(t: &Target, spec: &str, usage: &str) -> Result<String, String> {
    let v = once(t, "CreateKey", json!({"KeySpec": spec, "KeyUsage": usage})).await?;
    v["KeyMetadata"]["KeyId"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "CreateKey returned no KeyId".into())
}

async fn run(t: Target, common: Common, ops: Option<String>, warmup: f64) -> Result<(), String> {
    let wanted: Option<Vec<String>> =
        ops.map(|o| o.split(',').map(|s| s.trim().to_string()).collect());
    // Only the keys the chosen cases use: an RSA key pair generated during a run of Encrypt
    // alone would show in its profile (bench.sh records one while the run starts).
    let wants = |case: &str, op: &str| {
        (wanted.as_ref()).is_none_or(|w| w.iter().any(|c| c == case || c == op))
    };
    let key_for =
        |case: &'static str, op: &'static str, spec: &'static str, usage: &'static str| {
            let t = &t;
            async move {
                match wants(case, op) {
                    true => create_key(t, spec, usage).await,
                    false => Ok(String::new()),
                }
            }
        };
    let sym = create_key(&t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT").await?;
    let rsa = key_for("Sign RSA-2048 PSS", "Sign", "RSA_2048", "SIGN_VERIFY").await?;
    let p256 = key_for("Sign P-256", "Sign", "ECC_NIST_P256", "SIGN_VERIFY").await?;
    let hmac = key_for(
        "GenerateMac",
        "GenerateMac",
        "HMAC_256",
        "GENERATE_VERIFY_MAC",
    )
    .await?;
    let ct = once(
        &t,
        "Encrypt",
        json!({"KeyId": sym, "Plaintext": b64(&[7u8; 64])}),
    )
    .await?["CiphertextBlob"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let fixed = |op: &str, v: Value| -> (String, BodyFn) {
        let b = v.to_string().into_bytes();
        (op.to_string(), Arc::new(move |_| b.clone()))
    };
    let cases: Vec<(&str, (String, BodyFn))> = vec![
        (
            "Encrypt 64 B",
            fixed(
                "Encrypt",
                json!({"KeyId": sym, "Plaintext": b64(&[1u8; 64])}),
            ),
        ),
        (
            "Encrypt 4 KB",
            fixed(
                "Encrypt",
                json!({"KeyId": sym, "Plaintext": b64(&[1u8; 4096])}),
            ),
        ),
        ("Decrypt", fixed("Decrypt", json!({"CiphertextBlob": ct}))),
        (
            "GenerateDataKey",
            fixed(
                "GenerateDataKey",
                json!({"KeyId": sym, "KeySpec": "AES_256"}),
            ),
        ),
        (
            "GenerateRandom",
            fixed("GenerateRandom", json!({"NumberOfBytes": 32})),
        ),
        (
            "ReEncrypt",
            fixed(
                "ReEncrypt",
                json!({"CiphertextBlob": ct, "DestinationKeyId": sym}),
            ),
        ),
        (
            "Sign RSA-2048 PSS",
            fixed(
                "Sign",
                json!({"KeyId": rsa, "Message": b64(b"benchmark message"), "MessageType": "RAW", "SigningAlgorithm": "RSASSA_PSS_SHA_256"}),
            ),
        ),
        (
            "Sign P-256",
            fixed(
                "Sign",
                json!({"KeyId": p256, "Message": b64(b"benchmark message"), "MessageType": "RAW", "SigningAlgorithm": "ECDSA_SHA_256"}),
            ),
        ),
        (
            "GenerateMac",
            fixed(
                "GenerateMac",
                json!({"KeyId": hmac, "Message": b64(b"benchmark message"), "MacAlgorithm": "HMAC_SHA_256"}),
            ),
        ),
        ("DescribeKey", fixed("DescribeKey", json!({"KeyId": sym}))),
        ("CreateKey", fixed("CreateKey", json!({}))),
    ];
    for (case, (op, body)) in cases {
        if !wants(case, &op) {
            continue;
        }
        // Unrecorded: the case's first calls (its key unwrapped, its statements prepared on
        // the connections in use) are not its steady state.
        if warmup > 0.0 {
            measure(&t, &op, body.clone(), 8, warmup).await;
        }
        for conc in levels(&common) {
            let s = measure(&t, &op, body.clone(), conc, common.seconds).await;
            record(&common, case, conc, &s, json!({}));
        }
    }
    Ok(())
}

/// The same signed client against a minimal hyper server answering a fixed body.
async fn baseline(common: Common) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        br#"{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/x","CiphertextBlob":"AAAA","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#,
                    ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let t = Target {
        endpoint: format!("http://{addr}"),
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        region: "us-east-1".into(),
    };
    let body = json!({"KeyId": "x", "Plaintext": b64(&[1u8; 64])})
        .to_string()
        .into_bytes();
    let f: BodyFn = Arc::new(move |_| body.clone());
    for conc in levels(&common) {
        let s = measure(&t, "Encrypt", f.clone(), conc, common.seconds).await;
        record(&common, "HTTP baseline", conc, &s, json!({}));
    }
    Ok(())
}

/// Create `keys` symmetric keys from 64 connections (the CreateKey path as clients use it).
async fn create_keys(t: &Target, keys: usize) -> Result<Vec<String>, String> {
    // Create keys from 64 connections (the CreateKey path as clients use it).
    let made = Arc::new(tokio::sync::Mutex::new(Vec::<String>::with_capacity(keys)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (t, made, next) = (t.clone(), made.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(t.first()).await?;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < keys {
                let (status, body) = c.call(&t, "CreateKey", b"{}").await?;
                if status != 200 {
                    return Err(format!("CreateKey: HTTP {status}"));
                }
                let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                if let Some(id) = v["KeyMetadata"]["KeyId"].as_str() {
                    made.lock().await.push(id.to_string());
                }
            }
            Ok::<_, String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let made = made.lock().await.clone();
    println!(
        "created {} keys in {:.1} s ({:.0}/s)",
        made.len(),
        started.elapsed().as_secs_f64(),
        made.len() as f64 / started.elapsed().as_secs_f64()
    );
    Ok(made)
}

async fn scale(
    t: Target,
    common: Common,
    keys: usize,
    spread: usize,
    case: String,
    key_file: Option<PathBuf>,
) -> Result<(), String> {
    let made = match &key_file {
        Some(f) if f.exists() => std::fs::read_to_string(f)
            .map_err(|e| e.to_string())?
            .lines()
            .map(str::to_string)
            .collect(),
        _ => {
            let made = create_keys(&t, keys).await?;
            if let Some(f) = &key_file {
                std::fs::write(f, made.join("\n")).map_err(|e| e.to_string())?;
            }
            made
        }
    };
    let spread_keys: Vec<String> = made.iter().take(spread.max(1)).cloned().collect();
    let bodies: Vec<Vec<u8>> = spread_keys
        .iter()
        .map(|k| {
            json!({"KeyId": k, "Plaintext": b64(&[1u8; 64])})
                .to_string()
                .into_bytes()
        })
        .collect();
    // Warm every key once so the figure is the steady state, not the first unwrap.
    for b in &bodies {
        let mut c = Conn::open(t.first()).await?;
        c.call(&t, "Encrypt", b).await?;
    }
    let n = bodies.len();
    let f: BodyFn = Arc::new(move |i| bodies[(i as usize) % n].clone());
    for conc in levels(&common) {
        let s = measure(&t, "Encrypt", f.clone(), conc, common.seconds).await;
        record(
            &common,
            &case,
            conc,
            &s,
            json!({"keys_created": made.len(), "spread": n}),
        );
    }
    Ok(())
}

async fn load(t: Target, requests: u64, conc: usize) -> Result<(), String> {
    let key = create_key(&t, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT").await?;
    let body = json!({"KeyId": key, "Plaintext": b64(&[1u8; 64])})
        .to_string()
        .into_bytes();
    let left = Arc::new(std::sync::atomic::AtomicU64::new(requests));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (t, body, left) = (t.clone(), body.clone(), left.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(t.first()).await?;
            let mut errors = 0u64;
            while left
                .fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |n| n.checked_sub(1),
                )
                .is_ok()
            {
                if !matches!(c.call(&t, "Encrypt", &body).await, Ok((200, _))) {
                    errors += 1;
                }
            }
            Ok::<_, String>(errors)
        }));
    }
    let mut errors = 0;
    for task in tasks {
        errors += task.await.map_err(|e| e.to_string())??;
    }
    println!(
        "{requests} Encrypt requests in {:.1} s ({:.0}/s), {errors} errors",
        started.elapsed().as_secs_f64(),
        requests as f64 / started.elapsed().as_secs_f64()
    );
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
}

/// The latency of one durable commit on the disk under `dir`.
fn fsync(common: Common, dir: PathBuf, count: usize) -> Result<(), String> {
    use std::io::{Seek, Write};
    let path = dir.join(format!(".kms-bench-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let block = [0x5au8; 8192];
    let mut lat = Vec::with_capacity(count);
    let started = Instant::now();
    let r = (|| {
        for _ in 0..count {
            let t0 = Instant::now();
            f.rewind()?;
            f.write_all(&block)?;
            f.sync_data()?;
            lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        Ok::<_, std::io::Error>(())
    })();
    let _ = std::fs::remove_file(&path);
    r.map_err(|e| e.to_string())?;
    let s = Stats::of(lat, 0, started.elapsed().as_secs_f64());
    record(&common, "fdatasync 8 KiB", 1, &s, json!({"limit": "disk"}));
    Ok(())
}

/// The Markdown table of a run, with each server figure's ratio to the limits of the same
/// run (the HTTP baseline and the token's rate) where one applies.
fn report(path: &PathBuf) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let rows: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |case: &str, conc: u64| {
        rows.iter()
            .find(|r| r["case"] == case && r["concurrency"].as_u64() == Some(conc))
            .and_then(|r| r["rps"].as_f64())
    };
    let token_of = |case: &str| -> Option<(&str, f64)> {
        let t = match case {
            c if c.starts_with("Encrypt") || c == "Decrypt" => "token AES-GCM 64 B",
            "Sign RSA-2048 PSS" => "token RSA-2048 PSS sign",
            "Sign P-256" => "token P-256 ECDSA sign",
            "GenerateMac" => "token HMAC-SHA256",
            _ => return None,
        };
        find(t, 1).map(|r| (t, r))
    };
    println!("| Run | Case | Concurrency | Requests/s | p50 µs | p99 µs | p99.9 µs | Errors | × HTTP baseline | × token (1 session) |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows.iter().filter(|r| r.get("rps").is_some()) {
        let case = r["case"].as_str().unwrap_or_default();
        let conc = r["concurrency"].as_u64().unwrap_or(0);
        let rps = r["rps"].as_f64().unwrap_or(0.0);
        let is_limit = r.get("limit").is_some() || case == "HTTP baseline";
        let vs_http = (!is_limit)
            .then(|| find("HTTP baseline", conc))
            .flatten()
            .map(|b| format!("{:.2}", rps / b))
            .unwrap_or_default();
        let vs_token = (!is_limit)
            .then(|| token_of(case))
            .flatten()
            .map(|(_, t)| format!("{:.2}", rps / t))
            .unwrap_or_default();
        println!(
            "| {} | {case} | {conc} | {rps:.0} | {} | {} | {} | {} | {vs_http} | {vs_token} |",
            r["label"].as_str().unwrap_or_default(),
            r["p50_us"],
            r["p99_us"],
            r["p999_us"],
            r["errors"]
        );
    }
    let memory: Vec<&Value> = rows.iter().filter(|r| r.get("kb").is_some()).collect();
    if !memory.is_empty() {
        println!();
        println!("| Resident memory | kB |");
        println!("|---|---:|");
        for r in memory {
            println!(
                "| {} | {} |",
                r["case"].as_str().unwrap_or_default(),
                r["kb"]
            );
        }
    }
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let r = rt.block_on(async move {
        match cli.cmd {
            Cmd::Run {
                target,
                common,
                ops,
                warmup,
            } => run(target, common, ops, warmup).await,
            Cmd::Baseline { common } => baseline(common).await,
            Cmd::Token { common } => token(common).await,
            Cmd::Scale {
                target,
                common,
                keys,
                spread,
                case,
                key_file,
            } => scale(target, common, keys, spread, case, key_file).await,
            Cmd::Load {
                target,
                requests,
                concurrency,
            } => load(target, requests, concurrency).await,
            Cmd::Console {
                target,
                common,
                console,
                keys,
                samples,
            } => console_pages(target, common, console, keys, samples).await,
            Cmd::Fsync { common, dir, count } => fsync(common, dir, count),
            Cmd::Trail { common } => trail(common).await,
            Cmd::Report { json } => report(&json),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    if let Err(e) = r {
        eprintln!("kms-bench: {e}");
        std::process::exit(1);
    }
}
