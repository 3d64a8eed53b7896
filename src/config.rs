//! Settings: a TOML file (`--config`) with every setting overridable by environment variables
//! (`KMS_LISTEN`, `KMS_HSM__PIN`, `KMS_CACHE__KEY_HANDLES`, …; lists comma-separated).
//! `kms.example.toml` documents each one.

use secrecy::SecretString;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A PIN from a file, without its trailing line break.
pub fn read_pin_file(f: &Path) -> Result<SecretString, String> {
    let s = std::fs::read_to_string(f)
        .map_err(|e| format!("cannot read the PIN file {}: {e}", f.display()))?;
    Ok(SecretString::from(
        s.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// `KMS_…` environment variables that are not settings: read by the command line (`kms init`,
/// `kms admin`, `--config`) and by the scripts.
const NOT_SETTINGS: &[&str] = &[
    "KMS_CONFIG",
    "KMS_ADMIN_ACCESS_KEY_ID",
    "KMS_ADMIN_SECRET_ACCESS_KEY",
    "KMS_IMPORT_SECRET_ACCESS_KEY",
    "KMS_OPERATOR",
    "KMS_RELEASE",
    "KMS_BIN",
    "KMS_PG_BASE",
    "KMS_SKIP_SOFTHSM_INIT",
];
const NOT_SETTING_PREFIXES: &[&str] = &["KMS_TEST_", "KMS_DEV_", "KMS_KRYOPTIC_"];

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub listen: String,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy). Without
    /// TLS and without this, only loopback addresses are served.
    pub allow_plain_http: bool,
    /// A TOML array, or a comma-separated string (`KMS_REGIONS=us-east-1,eu-west-1`).
    #[serde(deserialize_with = "string_or_list")]
    pub regions: Vec<String>,
    pub account_id: String,
    pub database_url: String,
    pub database_max_connections: u32,
    /// How long a commit may wait for the database's confirmation (with synchronous
    /// replication, for a standby) before the call is answered `DependencyTimeoutException`:
    /// shorter than `request_timeout_ms`, so a standby that is gone is reported promptly.
    /// Unset: 2 s, or half of `request_timeout_ms` if that is less.
    pub database_commit_timeout_ms: Option<u64>,
    pub max_body_bytes: usize,
    pub drain_seconds: u64,
    /// Every request is answered within this (`DependencyTimeoutException` when the database
    /// or the token does not answer in time), audit write included.
    pub request_timeout_ms: u64,
    /// Generating a key pair (an RSA-4096 pair takes seconds on a busy machine, tens of
    /// seconds on some HSMs) stops a request's clock for at most this long; the rest of the
    /// call keeps the whole of `request_timeout_ms` (see `deadline`).
    pub key_generation_timeout_ms: u64,
    /// Connections served at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Connections one source (an IPv4 address, an IPv6 /64) may hold at once, so that one
    /// client cannot take every slot; further ones from it are closed as they are accepted.
    /// Raise it when every client comes through one proxy that does not keep its address.
    pub max_connections_per_source: usize,
    /// Reverse proxies (load balancers) in front of the API and the console, as addresses or
    /// CIDR blocks: list only the proxies' own addresses. A request one of them forwards is the
    /// client's that its `X-Forwarded-For` names (the rightmost address that is not a trusted
    /// proxy), over TLS when its last `X-Forwarded-Proto` says `https`: for `aws:SourceIp`,
    /// `aws:SecureTransport`, the trail and the failed-authentication budget per source. A
    /// trusted proxy has no connection share (it carries every client's). The proxy must
    /// append to `X-Forwarded-For` and overwrite `X-Forwarded-Proto`. Anyone else's
    /// `X-Forwarded-*` headers are ignored. Empty (the default): none.
    pub trusted_proxies: Vec<String>,
    /// Shortest session AssumeRole grants (AWS: 900 seconds).
    pub sts_min_session_seconds: i64,
    /// How often the background jobs (deletion, rotation) look for due work.
    pub scheduler_interval_ms: u64,
    /// How often a checkpoint over the audit chain head is signed in the token (also at
    /// shutdown).
    pub audit_checkpoint_interval_ms: u64,
    /// Record the audit trail (default). `false` is for measuring what recording costs.
    pub audit_enabled: bool,
    /// Outside the database: the chain head after every commit (`<file>.head`, rewritten in
    /// place) and every signed checkpoint (`<file>`, append-only). `kms audit verify` checks
    /// the trail against them, so events or checkpoints deleted from the database (and a
    /// chain rewritten after them) are detected. Keep it where the database's writers cannot
    /// write (another disk, another host's mount, a WORM volume).
    pub audit_anchor_file: Option<PathBuf>,
    /// `kms audit verify` refuses a trail whose events run past a last checkpoint older than
    /// this many seconds (0: no bound).
    pub audit_max_checkpoint_age_secs: u64,
    /// Allow the test hooks below. A production service never sets this: without it, a
    /// configured hook refuses the start (with it, the start logs a warning).
    pub enable_test_hooks: bool,
    /// Tests and drills only (`enable_test_hooks`): a file holding a number of seconds to add
    /// to the clock.
    pub clock_offset_file: Option<PathBuf>,
    /// Fault tests only (`enable_test_hooks`): on SIGUSR1 the service reads a fault name from this file
    /// (`close-sessions`, `logout`, `finalize`) and inflicts it on its token, or, written
    /// `store <id> <fault>`, on the partition of a custom key store it is logged in to.
    pub fault_injection_file: Option<PathBuf>,
    pub log: String,
    /// `text` (default) or `json` (one object per line, the request id in its span).
    pub log_format: String,
    /// Where to serve `/metrics` (Prometheus/OpenMetrics), `/healthz` and `/readyz`, e.g.
    /// `127.0.0.1:9464`. Unauthenticated: keep it where only the scraper reaches it. Off when
    /// unset.
    pub metrics_listen: Option<String>,
    /// Where to serve the console for operators and auditors (`/console/`), e.g.
    /// `127.0.0.1:4001`: TLS with the API's `[tls]` settings, plain HTTP only on loopback or
    /// with `allow_plain_http`. Off when unset (on in `kms serve --dev`).
    pub console_listen: Option<String>,
    /// How long a console session lasts after its sign-in.
    pub console_session_minutes: u64,
    /// Let a client certificate (mutual TLS, `tls.client_ca_file`) sign in to the console as
    /// the access key its subjectAltName URI `urn:kms:access-key:<id>` names. Off by default:
    /// it makes the client CA an issuer of console identities.
    pub console_certificate_sign_in: bool,
    pub hsm: HsmSettings,
    pub cache: CacheSettings,
    pub quota: QuotaSettings,
    pub tls: TlsSettings,
    /// HSM partitions custom key stores (`AWS_CLOUDHSM`) can be created over, each under the
    /// cluster id a `CreateCustomKeyStore` names (`[[partitions]]` tables).
    pub partitions: Vec<PartitionSettings>,
    /// The service as an External Key Store proxy for AWS KMS: the logical key stores it
    /// serves (`[[xks_stores]]`), each under its URI path prefix.
    pub xks_stores: Vec<XksStoreSettings>,
    /// Proxy API requests per second per logical key store (AWS KMS's own limit: 1800).
    pub xks_requests_per_second: u32,
    /// External key stores this service uses: the CAs (PEM) an XKS proxy's certificate must
    /// chain to.
    pub xks_client_ca_file: PathBuf,
    /// How long an XKS proxy has to answer a call (AWS KMS gives it 250 ms).
    pub xks_client_timeout_ms: u64,
    /// The XKS proxy endpoints (`https://host[:port]`) external key stores may name; the
    /// service connects to no other. Empty: any (a principal allowed CreateCustomKeyStore can
    /// then have a node connect to any host and port its network reaches).
    pub xks_client_endpoints: Vec<String>,
}

/// One logical external key store (`[[xks_stores]]`).
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct XksStoreSettings {
    /// `""` or `/…`: requests arrive at `{uri_path_prefix}/kms/xks/v1/…` (AWS KMS's
    /// `XksProxyUriPath` is this and `/kms/xks/v1`).
    #[serde(default)]
    pub uri_path_prefix: String,
    /// Access keys of this service (`kms admin`) whose secrets AWS KMS signs with (its
    /// `XksProxyAuthenticationCredential`); two during a rotation.
    pub access_key_ids: Vec<String>,
    /// The external keys it exposes.
    #[serde(default)]
    pub keys: Vec<XksKeySettings>,
}

/// An external key: its XKS key id, and the symmetric encryption key of this service behind it.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct XksKeySettings {
    pub xks_key_id: String,
    /// The key's ARN (`arn:aws:kms:<region>:<account>:key/<id>`).
    pub key_arn: String,
    /// `ENCRYPT`, `DECRYPT` or both (the default).
    #[serde(default = "both_usages")]
    pub usage: Vec<String>,
    /// Secondary authorization (the specification's `AccessDeniedException`): the AWS
    /// principals (`requestMetadata.awsPrincipalArn`) whose requests AWS KMS may forward for
    /// this key, each an ARN, a trailing `*` matching any ending. Empty (the default): any.
    #[serde(default)]
    pub allowed_principals: Vec<String>,
}

fn both_usages() -> Vec<String> {
    vec!["ENCRYPT".into(), "DECRYPT".into()]
}

/// One partition (`[[partitions]]`): a token of a PKCS#11 module, registered under a cluster id.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PartitionSettings {
    /// AWS's `CloudHsmClusterId` form: `cluster-` and 11 to 16 letters or digits 2-7.
    pub cluster_id: String,
    /// The partition's token label.
    pub token_label: String,
    /// The accounts (12 digits each) whose custom key stores may use it. Any other account is
    /// answered as if the cluster did not exist: a tenant can neither claim another tenant's
    /// partition nor try PINs against it, nor learn that it exists.
    pub accounts: Vec<String>,
    /// Its PKCS#11 module; the service token's (`hsm.module`) when unset.
    pub module: Option<String>,
    /// A PEM certificate a store's `TrustAnchorCertificate` must match (where the partition is
    /// reached over TLS); unset: not applicable, any certificate given is recorded.
    pub trust_anchor_file: Option<PathBuf>,
    /// Clusters holding the same partition (a restored backup, an HA peer): a store may move to
    /// them with `UpdateCustomKeyStore`.
    #[serde(default)]
    pub related_clusters: Vec<String>,
}

/// TLS (rustls on aws-lc-rs). Without a certificate the server speaks plain HTTP.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
    /// PEM CAs whose client certificates are accepted (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: also accept connections that present no certificate.
    pub client_cert_optional: bool,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HsmSettings {
    pub module: String,
    pub token_label: String,
    /// Further tokens (slots of the same module) holding the same service keys, as an HA group
    /// presents them: when the token in use is lost, the service moves to the next one that
    /// answers. `kms init` copies the service keys to them. Comma-separated in the environment.
    #[serde(deserialize_with = "string_or_list")]
    pub failover_labels: Vec<String>,
    /// From the environment (`KMS_HSM__PIN`) only in practice; never a command-line argument.
    pub pin: Option<SecretString>,
    pub pin_file: Option<PathBuf>,
    pub session_pool_size: usize,
    /// Run short token calls (symmetric encryption, HMAC, random) on the request's own thread
    /// rather than handing each to the blocking pool: a local token answers in microseconds,
    /// less than the hand-off costs. Turn off for a network HSM whose calls take milliseconds.
    pub inline_calls: bool,
    /// On a token without RSAES-OAEP with SHA-256 (SoftHSM 2.6.1), accept `ImportKeyMaterial`
    /// of symmetric and HMAC material wrapped with `RSAES_OAEP_SHA_256` (Terraform's
    /// `aws_kms_external_key` uses it): the RSA operation stays in the token, but the padding
    /// is removed in the service, so the key material passes through this process's memory
    /// before it is put into the token. Off: such imports are refused
    /// (`RSA_AES_KEY_WRAP_SHA_256` works without it, the material never leaving the token).
    pub oaep_sha256_import_in_service: bool,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    pub key_metadata: usize,
    pub key_handles: usize,
    pub signing_keys: usize,
    /// How long a node uses a row it read and verified (key metadata, tags, policies, grants,
    /// aliases, identities, signing keys) before reading it again, at least 1: what a node
    /// acts on is at most this old when the database's change notifications do not reach it.
    pub max_age_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:4000".into(),
            allow_plain_http: false,
            regions: vec!["us-east-1".into()],
            account_id: "123456789012".into(),
            database_url: "postgres://postgres@127.0.0.1:5432/kms".into(),
            database_max_connections: 16,
            database_commit_timeout_ms: None,
            max_body_bytes: 256 * 1024,
            drain_seconds: 30,
            request_timeout_ms: 10_000,
            key_generation_timeout_ms: 120_000,
            max_connections: 10_000,
            max_connections_per_source: 1_000,
            trusted_proxies: vec![],
            sts_min_session_seconds: 900,
            scheduler_interval_ms: 60_000,
            audit_checkpoint_interval_ms: 60_000,
            audit_enabled: true,
            audit_anchor_file: None,
            audit_max_checkpoint_age_secs: 0,
            enable_test_hooks: false,
            clock_offset_file: None,
            fault_injection_file: None,
            log: "info,cryptoki=off,sqlx::postgres::notice=warn".into(),
            log_format: "text".into(),
            metrics_listen: None,
            console_listen: None,
            console_session_minutes: 15,
            console_certificate_sign_in: false,
            hsm: HsmSettings::default(),
            cache: CacheSettings::default(),
            quota: QuotaSettings::default(),
            tls: TlsSettings::default(),
            partitions: vec![],
            xks_stores: vec![],
            xks_requests_per_second: 1800,
            xks_client_ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            xks_client_timeout_ms: 250,
            xks_client_endpoints: vec![],
        }
    }
}

impl Default for HsmSettings {
    fn default() -> Self {
        HsmSettings {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: "kms".into(),
            failover_labels: vec![],
            pin: None,
            pin_file: None,
            session_pool_size: 4,
            inline_calls: true,
            oaep_sha256_import_in_service: false,
        }
    }
}

/// Request quotas per account and region, as AWS applies them: requests over the rate are
/// answered with `ThrottlingException`.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaSettings {
    /// Cryptographic operations (Encrypt, Decrypt, GenerateDataKey*, Sign, …) per second,
    /// shared by all of them (AWS: 50,000 in its largest regions).
    pub crypto_per_second: u32,
    /// Every other operation, per second (AWS sets per-operation rates, mostly lower).
    pub management_per_second: u32,
    /// Requests that fail authentication, per second per source address, with a burst of
    /// `auth_failure_burst`: past it the source is throttled before any database work, and
    /// its failures are summarised in the audit trail once a minute instead of one by one.
    pub auth_failures_per_second: u32,
    pub auth_failure_burst: u32,
    /// Failures audited one by one per second from all sources together (a second's worth at
    /// once; 0: no limit): past it, failures from sources within their own budgets are
    /// summarised too, so a flood spread over many addresses does not grow the trail.
    pub auth_failures_audited_per_second: u32,
    /// Customer managed keys per account and region (AWS: 100,000), counted across nodes.
    pub keys_per_region: i64,
    /// Grants per key (AWS: 50,000), counted across nodes.
    pub grants_per_key: i64,
    /// Aliases per account and region (AWS: 50,000; AWS managed aliases do not count),
    /// counted across nodes.
    pub aliases_per_region: i64,
    /// `GetParametersForImport` calls per second per account and region, counted across
    /// nodes; beyond it `ThrottlingException` (each call generates an RSA key pair in the
    /// token).
    pub import_parameters_per_second: i64,
}

impl Default for QuotaSettings {
    fn default() -> Self {
        QuotaSettings {
            crypto_per_second: 50_000,
            management_per_second: 2_000,
            auth_failures_per_second: 5,
            auth_failure_burst: 20,
            auth_failures_audited_per_second: 100,
            keys_per_region: 100_000,
            grants_per_key: 50_000,
            aliases_per_region: 50_000,
            import_parameters_per_second: 10,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            key_metadata: 10_000,
            key_handles: 1_000,
            signing_keys: 10_000,
            max_age_secs: 60,
        }
    }
}

impl Settings {
    pub fn load(file: Option<&Path>) -> Result<Settings, String> {
        Settings::load_from(file, std::env::vars())
    }

    /// Settings from `file` and the `KMS_…` variables among `env`. A name that is not a
    /// setting — misspelt in the file or in the environment — is refused, never ignored; the
    /// `KMS_…` variables that the command line and the scripts read for themselves are not
    /// settings and are left alone.
    pub fn load_from(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Settings, String> {
        let top = field_names::<Settings>();
        let env: config::Map<String, String> = env
            .filter(|(k, _)| {
                !NOT_SETTINGS.contains(&k.as_str())
                    && !NOT_SETTING_PREFIXES.iter().any(|p| k.starts_with(p))
            })
            .filter(|(k, _)| {
                // `KMS_<SECTION>__<NAME>` is a setting's form: judged (refused if unknown). A
                // top-level name is judged if it is, or nearly is, a setting's (`KMS_REGION`
                // for `KMS_REGIONS`); the rest are some other program's (a Kubernetes
                // service named `kms` sets `KMS_SERVICE_HOST`, `KMS_PORT`, …): left alone.
                let Some(name) = k.strip_prefix("KMS_") else {
                    return true;
                };
                let name = name.to_ascii_lowercase();
                if name.contains("__") || top.iter().any(|t| near(t, &name)) {
                    return true;
                }
                eprintln!("kms: {k} is not a setting; ignored");
                false
            })
            .collect();
        let mut b = config::Config::builder();
        if let Some(f) = file {
            if !f.exists() {
                return Err(format!(
                    "the configuration file {} does not exist",
                    f.display()
                ));
            }
            b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
        }
        b = b.add_source(
            config::Environment::with_prefix("KMS")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        let s: Settings = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| {
                let e = e.to_string();
                match e.strip_prefix("unknown field ") {
                    // serde names the field and lists the settings of its section.
                    Some(rest) => format!(
                        "the configuration is invalid: {} is not a setting (in the file, or as KMS_<SECTION>__<NAME> in the environment); the settings are {}",
                        rest.split(',').next().unwrap_or(rest),
                        rest.split_once("expected one of ")
                            .or_else(|| rest.split_once("expected "))
                            .map_or("in kms.example.toml", |(_, l)| l)
                    ),
                    None => format!("the configuration is invalid: {e}"),
                }
            })?;
        s.checked()
    }

    /// These settings, if they hold together; one sentence on the first that does not.
    fn checked(self) -> Result<Settings, String> {
        let s = self;
        let cluster_id = |c: &str| {
            c.strip_prefix("cluster-").is_some_and(|r| {
                (11..=16).contains(&r.len())
                    && r.bytes()
                        .all(|b| b.is_ascii_alphabetic() || (b'2'..=b'7').contains(&b))
            })
        };
        for e in &s.xks_client_endpoints {
            if crate::xks::client::proxy_authority(e).is_none() {
                return Err(format!(
                    "xks_client_endpoints: '{e}' is not an XKS proxy endpoint (https://host or https://host:port, nothing after)"
                ));
            }
        }
        for (i, x) in s.xks_stores.iter().enumerate() {
            let p = &x.uri_path_prefix;
            let chars = p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
            if !(p.is_empty()
                || (p.starts_with('/') && !p.ends_with('/') && chars && p.len() <= 117))
            {
                return Err(format!(
                    "xks_stores: uri_path_prefix '{p}' must be empty or /… (letters, digits, /, _, -; no trailing /)"
                ));
            }
            if s.xks_stores[..i].iter().any(|o| &o.uri_path_prefix == p) {
                return Err(format!("xks_stores: uri_path_prefix '{p}' is listed twice"));
            }
            if x.access_key_ids.is_empty() {
                return Err(format!("xks_stores: '{p}' names no access_key_ids"));
            }
            for k in &x.keys {
                if k.usage.is_empty() || k.usage.iter().any(|u| u != "ENCRYPT" && u != "DECRYPT") {
                    return Err(format!(
                        "xks_stores: key {} has usage {:?}; ENCRYPT and/or DECRYPT",
                        k.xks_key_id, k.usage
                    ));
                }
                if !k.key_arn.starts_with("arn:") || !k.key_arn.contains(":key/") {
                    return Err(format!(
                        "xks_stores: key {} must name a key ARN, not '{}'",
                        k.xks_key_id, k.key_arn
                    ));
                }
                if let Some(p) = k.allowed_principals.iter().find(|p| !p.starts_with("arn:")) {
                    return Err(format!(
                        "xks_stores: key {} allows '{p}', which is not a principal ARN",
                        k.xks_key_id
                    ));
                }
            }
        }
        for (i, p) in s.partitions.iter().enumerate() {
            if !cluster_id(&p.cluster_id) {
                return Err(format!(
                    "partitions: '{}' is not a cluster id (cluster- and 11 to 16 letters or digits 2-7)",
                    p.cluster_id
                ));
            }
            if s.partitions[..i]
                .iter()
                .any(|q| q.cluster_id == p.cluster_id)
            {
                return Err(format!(
                    "partitions: cluster {} is listed twice",
                    p.cluster_id
                ));
            }
            if p.token_label.trim().is_empty() {
                return Err(format!(
                    "partitions: cluster {} names no token_label",
                    p.cluster_id
                ));
            }
            let token = |q: &PartitionSettings| {
                (
                    q.module.clone().unwrap_or_else(|| s.hsm.module.clone()),
                    q.token_label.clone(),
                )
            };
            // A token logged in to once is logged in for every session of the process: a
            // second store over it would connect with any PIN.
            let (module, label) = token(p);
            if module == s.hsm.module
                && std::iter::once(&s.hsm.token_label)
                    .chain(&s.hsm.failover_labels)
                    .any(|l| *l == label)
            {
                return Err(format!(
                    "partitions: cluster {} names the service's own token",
                    p.cluster_id
                ));
            }
            // Clusters on one token (an HA peer, a restored backup) serve one account: two
            // stores of different accounts on it would share one login.
            let set = |q: &PartitionSettings| {
                (q.accounts.iter().cloned()).collect::<std::collections::BTreeSet<String>>()
            };
            if let Some(q) = s.partitions[..i]
                .iter()
                .find(|q| token(q) == token(p) && (set(q) != set(p) || set(p).len() != 1))
            {
                return Err(format!(
                    "partitions: clusters {} and {} name the same token: they must serve the same one account",
                    q.cluster_id, p.cluster_id
                ));
            }
            if p.accounts.is_empty() {
                return Err(format!(
                    "partitions: cluster {} names no accounts (those whose custom key stores may use it)",
                    p.cluster_id
                ));
            }
            if let Some(a) = p
                .accounts
                .iter()
                .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(format!(
                    "partitions: cluster {}: '{a}' is not an account id (12 digits)",
                    p.cluster_id
                ));
            }
        }
        if s.regions.is_empty() || s.regions.iter().any(|r| r.trim().is_empty()) {
            return Err("the configuration must list at least one region".into());
        }
        if s.log_format != "text" && s.log_format != "json" {
            return Err(format!(
                "log_format must be text or json, not '{}'",
                s.log_format
            ));
        }
        if !s.enable_test_hooks {
            for (name, set) in [
                ("clock_offset_file", s.clock_offset_file.is_some()),
                ("fault_injection_file", s.fault_injection_file.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{name} is a test hook and is refused unless enable_test_hooks = true (never in production)"
                    ));
                }
            }
        }
        if s.cache.max_age_secs == 0 {
            return Err("cache.max_age_secs must be at least 1".into());
        }
        if let Some(bad) =
            (s.trusted_proxies.iter()).find(|p| crate::policy::condition::parse_cidr(p).is_none())
        {
            return Err(format!(
                "trusted_proxies: '{bad}' is not an IP address or CIDR block"
            ));
        }
        if s.max_connections_per_source == 0 {
            return Err("max_connections_per_source must be at least 1".into());
        }
        if s.key_generation_timeout_ms < 1_000 {
            return Err(format!(
                "key_generation_timeout_ms must be at least 1000 (an RSA-4096 key pair takes seconds), not {}",
                s.key_generation_timeout_ms
            ));
        }
        if let Some(t) = s.database_commit_timeout_ms {
            if t == 0 || t >= s.request_timeout_ms {
                return Err(format!(
                    "database_commit_timeout_ms must be above 0 and below request_timeout_ms ({}), not {t}",
                    s.request_timeout_ms
                ));
            }
        }
        if s.account_id.len() != 12 || !s.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "account_id must be 12 digits, not '{}'",
                s.account_id
            ));
        }
        Ok(s)
    }

    /// The user PIN, from `KMS_HSM__PIN` or `hsm.pin_file`.
    pub fn pin(&self) -> Result<SecretString, String> {
        if let Some(p) = &self.hsm.pin {
            return Ok(p.clone());
        }
        if let Some(f) = &self.hsm.pin_file {
            return read_pin_file(f);
        }
        Err("no user PIN: set KMS_HSM__PIN or hsm.pin_file".into())
    }

    /// How long a commit may wait for the database's confirmation.
    pub fn commit_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            self.database_commit_timeout_ms
                .unwrap_or_else(|| 2_000.min(self.request_timeout_ms / 2))
                .max(1),
        )
    }

    /// The database URL without its password, for messages.
    pub fn database_url_redacted(&self) -> String {
        match url_without_password(&self.database_url) {
            Some(u) => u,
            None => "the configured database".into(),
        }
    }
}

/// Whether `b` is `a` or within two edits of it (a misspelling of a setting's name).
fn near(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 2 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 2
}

/// The fields a settings struct reads, as serde names them (asked of its `Deserialize`, so
/// the list is never written twice).
fn field_names<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Lister<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Lister<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Lister(&mut fields));
    fields
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => s
            .split(',')
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect(),
        Either::Many(v) => v,
    })
}

pub(crate) fn url_without_password(u: &str) -> Option<String> {
    let (scheme, rest) = u.split_once("://")?;
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let user = auth
        .map(|a| a.split(':').next().unwrap_or(""))
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    Some(format!("{scheme}://{user}{host}"))
}

#[cfg(test)]
mod tests;
