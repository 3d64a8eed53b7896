//! The domain: one function per operation, key states, the ciphertext format, and the caches
//! that keep the hot path free of SQL, session opening and unwrapping.

pub mod asymmetric;
pub mod ciphertext;
pub mod credentials;
mod error;
pub mod grants;
pub mod import;
pub mod keyid;
pub mod lifecycle;
pub mod mac_keys;
pub mod multi_region;
pub mod operator;
mod preamble;
pub mod root;
mod seal;

/// `kms --version` and `/healthz`: the release and the schema versions it migrates to.
pub use crate::store::VERSION;
pub use error::KmsError;
pub use keyid::KeyRef;
use preamble::{Access, Check, ANY_STATE};

use crate::hsm::{Hsm, KeyHandle};
use crate::policy::{self, PolicyDocument, PolicyKind};
use crate::store::{KeyRecord, KeyStore, MaterialRecord, PrincipalAuthz, Tag};
use crate::vocab::{KeySpec, KeyState, KeyUsage, Origin};
use chrono::Utc;
use ciphertext::Header;
use lru::LruCache;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use uuid::Uuid;
use zeroize::Zeroizing;

/// AES-GCM with random 96-bit IVs: at most 2^32 invocations per key (NIST SP 800-38D §8.3).
pub const GCM_INVOCATION_LIMIT: i64 = 1 << 32;
/// Invocations leased from the database at a time: the first lease of a freshly loaded key is
/// small and each next one doubles up to the maximum, so a key whose handle is evicted and
/// reloaded often wastes little of its budget, and a busy key rarely goes to the database.
pub const GCM_LEASE_MIN: i64 = 1 << 10;
pub const GCM_LEASE_MAX: i64 = 1 << 18;

pub const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
pub const ENCRYPT_DECRYPT: KeyUsage = KeyUsage::EncryptDecrypt;

/// Who is calling, as established by SigV4.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: String,
    pub principal_arn: String,
    pub region: String,
    /// The client's address, for `aws:SourceIp`.
    pub source_ip: Option<String>,
    /// `GrantTokens` of the request: they make grants usable before caches know of them.
    pub grant_tokens: Vec<String>,
    /// For an assumed-role session: the role (whose identity policies apply).
    pub role_arn: Option<String>,
    /// The alias the request named its key by, if it did (`kms:RequestAlias`).
    pub request_alias: Option<String>,
    /// The access key that signed the request.
    pub access_key_id: String,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
}

impl Caller {
    /// The request's grant tokens and the alias (name or ARN) its `KeyId` used, if any.
    pub fn for_request(&self, tokens: Option<Vec<String>>, key_id: Option<&str>) -> Caller {
        let request_alias = key_id.and_then(|k| match keyid::parse(k) {
            Ok(KeyRef::Alias { name, .. }) => Some(name),
            _ => None,
        });
        Caller {
            grant_tokens: tokens.unwrap_or_default(),
            request_alias,
            ..self.clone()
        }
    }
}

pub struct CreateKeyInput {
    pub description: String,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub policy: Option<String>,
    pub tags: Vec<Tag>,
    pub multi_region: bool,
    pub bypass_policy_lockout_safety_check: bool,
}

/// What `DescribeKey` and `CreateKey` return.
#[derive(Debug, Clone)]
pub struct KeyMetadata {
    pub account_id: String,
    /// The key id callers use (`mrk-…` for a multi-Region key).
    pub key_id: String,
    pub arn: String,
    pub created_at: chrono::DateTime<Utc>,
    pub description: String,
    pub key_state: KeyState,
    pub key_usage: KeyUsage,
    pub key_spec: KeySpec,
    pub origin: Origin,
    pub key_manager: String,
    pub multi_region: bool,
    /// A multi-Region primary (false for a replica and a single-Region key).
    pub primary: bool,
    /// The current material's id (symmetric encryption keys with material only).
    pub current_key_material_id: Option<String>,
    pub deletion_date: Option<chrono::DateTime<Utc>>,
    /// The waiting period of a primary pending its replicas' deletion.
    pub pending_window_days: Option<i32>,
    /// For a multi-Region key: every related key (this one included), primary first.
    pub related: Vec<RelatedKey>,
    /// The algorithms the key offers on this key store's token.
    pub algorithms: asymmetric::Algorithms,
    /// For an `EXTERNAL` key with material: its `ExpirationModel` and `ValidTo`.
    pub expiration: Option<(String, Option<chrono::DateTime<Utc>>)>,
}

#[derive(Debug, Clone)]
pub struct RelatedKey {
    pub arn: String,
    pub region: String,
    pub primary: bool,
}

/// What `GetKeyLastUsage` returns.
pub struct KeyLastUsage {
    pub key_id: String,
    pub last: Option<crate::audit::KeyUse>,
    pub tracking_start: chrono::DateTime<Utc>,
    pub created: chrono::DateTime<Utc>,
}

pub struct EncryptOutput {
    pub blob: Vec<u8>,
    pub key_arn: String,
}

pub struct DecryptOutput {
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_arn: String,
}

pub struct DataKeyOutput {
    pub blob: Vec<u8>,
    pub plaintext: Zeroizing<Vec<u8>>,
    pub key_arn: String,
}

pub struct ReEncryptOutput {
    pub blob: Vec<u8>,
    pub source_key_arn: String,
    pub key_arn: String,
}

pub struct ListKeysOutput {
    pub keys: Vec<(keyid::PublicId, String)>,
    pub next_marker: Option<String>,
}

pub type Context = BTreeMap<String, String>;

/// What authorization needs to know about a principal: its identity policies and its tags.
pub struct Identity {
    pub policies: Vec<PolicyDocument>,
    pub tags: Vec<Tag>,
    /// The integrated service this principal is registered as (its `kms:ViaService`).
    pub via_service: Option<String>,
}

/// A usable version of a key's material: the unwrapped token object and the invocation lease.
struct LiveMaterial {
    handle: Arc<KeyHandle>,
    /// A key pair's public key (SPKI DER), covered by the row MAC.
    public_key: Option<Vec<u8>>,
    lease: tokio::sync::Mutex<Lease>,
    /// The metadata the row MAC was verified against; a cached handle is only used for a key
    /// record that still says the same (the record may be reloaded from the database).
    bound_to: Binding,
}

#[derive(PartialEq, Eq)]
struct Binding {
    account_id: String,
    region: String,
    key_spec: KeySpec,
    key_usage: KeyUsage,
}

impl Binding {
    fn of(k: &KeyRecord) -> Binding {
        Binding {
            account_id: k.account_id.clone(),
            region: k.region.clone(),
            key_spec: k.key_spec,
            key_usage: k.key_usage,
        }
    }
}

#[derive(Default)]
struct Lease {
    next: i64,
    end: i64,
    size: i64,
}

/// AWS's resource quotas (adjustable, as AWS's are): `LimitExceededException` beyond them.
#[derive(Clone, Copy, Debug)]
pub struct ResourceLimits {
    /// Customer managed keys per account and region (AWS: 100,000).
    pub keys_per_region: i64,
    /// Grants per key (AWS: 50,000).
    pub grants_per_key: i64,
    /// Aliases per account and region, AWS managed aliases not counted (AWS: 50,000).
    pub aliases_per_region: i64,
    /// `GetParametersForImport` calls per second per account and region, on all nodes
    /// together (each generates an RSA key pair in the token).
    pub import_parameters_per_second: i64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            keys_per_region: 100_000,
            grants_per_key: 50_000,
            aliases_per_region: 50_000,
            import_parameters_per_second: 10,
        }
    }
}

pub struct CacheSizes {
    pub key_metadata: usize,
    pub key_handles: usize,
    pub signing_keys: usize,
}

/// An action the service takes by itself, its intent recorded ([`Kms::audit_service_intent`]).
pub(crate) struct ServiceAction(Option<Arc<crate::store::ChangeRecord>>);

impl ServiceAction {
    /// No action of the service's own (a change a call makes, recorded by the call).
    pub(crate) fn none() -> ServiceAction {
        ServiceAction(None)
    }

    /// Run the action's change: its write transactions carry the action's change record.
    pub(crate) async fn run<F: std::future::Future>(&self, f: F) -> F::Output {
        crate::store::in_change(self.0.clone(), f).await
    }
}

pub struct Kms {
    hsm: Hsm,
    keys: Arc<dyn KeyStore>,
    meta: Mutex<LruCache<Uuid, Arc<KeyRecord>>>,
    live: Mutex<LruCache<(Uuid, i32), Arc<LiveMaterial>>>,
    /// One load (MAC check + unwrap) at a time per key version: concurrent first uses of a
    /// cold key wait for it instead of unwrapping the same blob N times.
    loading: Mutex<std::collections::HashMap<(Uuid, i32), LoadGate>>,
    pub credentials: credentials::Credentials,
    ids: Arc<dyn crate::store::IdentityStore>,
    /// Parsed identity policies per principal; dropped on any identity change (NOTIFY).
    identity: Mutex<LruCache<String, Arc<Identity>>>,
    /// Key tags (for `aws:ResourceTag/…`), dropped with the key's metadata.
    key_tags: Mutex<LruCache<Uuid, Arc<Vec<Tag>>>>,
    /// Parsed key policies, with the text they were parsed from.
    key_policies: Mutex<LruCache<Uuid, Arc<ParsedPolicy>>>,
    grant_store: Arc<dyn crate::store::GrantStore>,
    /// Grants per key; dropped when any node changes a key's grants (NOTIFY).
    grants: Mutex<LruCache<Uuid, Arc<Vec<crate::store::GrantRecord>>>>,
    /// Alias → key, per account and region; dropped on any alias change (NOTIFY).
    aliases: Mutex<LruCache<(String, String, String), Option<Uuid>>>,
    clock_offset: std::sync::atomic::AtomicI64,
    /// Key → its alias names, for `kms:ResourceAliases`.
    key_aliases: Mutex<LruCache<Uuid, Arc<Vec<String>>>>,
    /// The regions this deployment serves (where multi-Region keys can be replicated).
    regions: Vec<String>,
    /// Where the service's own actions (rotation, deletion) are recorded.
    audit: std::sync::OnceLock<Arc<crate::audit::Audit>>,
    pub(crate) limits: ResourceLimits,
}

/// Serialises the loading of one key version.
type LoadGate = Arc<tokio::sync::Mutex<()>>;
/// A key policy's text and what it parsed to (`None`: invalid, allows nothing).
type ParsedPolicy = (String, Option<PolicyDocument>);

/// The sealed parts of a key row, each with its own generation.
const KEY_PARTS: [&str; 4] = ["policy", "state", "attributes", "rotation"];

/// Each sealed part of a key row by name, with its stored seal.
fn key_part_rows(rec: &KeyRecord) -> Vec<(String, &[u8])> {
    let macs = [
        &rec.policy_mac,
        &rec.state_mac,
        &rec.attrs_mac,
        &rec.rotation_mac,
    ];
    KEY_PARTS
        .iter()
        .zip(macs)
        .map(|(part, mac)| (seal::key_row(rec, part), mac.as_deref().unwrap_or_default()))
        .collect()
}

/// Key policies are limited to 32 KB.
pub const MAX_KEY_POLICY_BYTES: usize = 32 * 1024;

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).expect("max(1) is non-zero")
}

/// Length-prefixed concatenation for MAC inputs, so no two field lists encode alike.
pub(crate) fn mac_input(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in std::iter::once(domain.as_bytes()).chain(fields.iter().copied()) {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// What a principal's MAC covers: its account, kind, trust policy, service registration, and
/// every identity policy and tag (sorted bytewise, so storage order does not matter).
fn principal_mac_input(arn: &str, a: &PrincipalAuthz) -> Vec<u8> {
    let mut policies: Vec<&(String, String)> = a.policies.iter().collect();
    policies.sort();
    let mut tags: Vec<(&str, &str)> = a
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    tags.sort();
    let (np, nt) = (
        (policies.len() as u32).to_be_bytes(),
        (tags.len() as u32).to_be_bytes(),
    );
    let mut fields: Vec<&[u8]> = vec![
        arn.as_bytes(),
        a.account_id.as_bytes(),
        a.kind.as_bytes(),
        a.trust_policy.as_deref().unwrap_or("\u{0}none").as_bytes(),
        a.via_service.as_deref().unwrap_or("\u{0}none").as_bytes(),
        &np,
    ];
    for (n, d) in &policies {
        fields.push(n.as_bytes());
        fields.push(d.as_bytes());
    }
    fields.push(&nt);
    for (k, v) in &tags {
        fields.push(k.as_bytes());
        fields.push(v.as_bytes());
    }
    mac_input("kms.principal-authz.v1", &fields)
}

fn material_mac_input(k: &KeyRecord, m: &MaterialRecord) -> Vec<u8> {
    let mut fields: Vec<&[u8]> = vec![
        m.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        k.key_spec.as_str().as_bytes(),
        k.key_usage.as_str().as_bytes(),
    ];
    let (version, root_version) = (m.version.to_be_bytes(), m.root_version.to_be_bytes());
    fields.extend_from_slice(&[&version, &root_version, &m.wrapped]);
    match &m.public_key {
        None => mac_input("kms.key-material.v1", &fields),
        // A key pair's row also binds its public key.
        Some(p) => {
            fields.push(p);
            mac_input("kms.key-material.v2", &fields)
        }
    }
}

/// A key's policy, bound to the key it belongs to, for its MAC.
pub(crate) fn policy_mac_input(k: &KeyRecord) -> Vec<u8> {
    mac_input(
        "kms.key-policy.v1",
        &[
            k.key_id.as_bytes(),
            k.account_id.as_bytes(),
            k.region.as_bytes(),
            k.policy.as_bytes(),
        ],
    )
}

/// What a key's state MAC covers: its identity, state and deletion date, and for a primary
/// waiting for its replicas' deletion the waiting period its own deletion will get.
pub(crate) fn state_mac_input(k: &KeyRecord) -> Vec<u8> {
    let date = k
        .deletion_date
        .map(|d| d.timestamp_micros().to_be_bytes().to_vec())
        .unwrap_or_default();
    let mut fields: Vec<&[u8]> = vec![
        k.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        k.key_state.as_str().as_bytes(),
        &date,
    ];
    match k.pending_window_days {
        None => mac_input("kms.key-state.v1", &fields),
        Some(days) => {
            let days = days.to_be_bytes();
            fields.push(&days);
            mac_input("kms.key-state.v2", &fields)
        }
    }
}

/// What a key's tags MAC covers: its identity and every tag (sorted, so storage order does not
/// matter): a tag inserted, altered, deleted or moved from another key no longer matches.
pub(crate) fn tags_mac_input(k: &KeyRecord, tags: &[Tag]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    sorted.sort();
    let n = (sorted.len() as u32).to_be_bytes();
    let mut fields: Vec<&[u8]> = vec![
        k.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        &n,
    ];
    for (key, value) in &sorted {
        fields.push(key.as_bytes());
        fields.push(value.as_bytes());
    }
    mac_input("kms.key-tags.v1", &fields)
}

/// What a key's attributes MAC covers: what the key is, fixed when it is created.
pub(crate) fn attrs_mac_input(k: &KeyRecord) -> Vec<u8> {
    let mrk = k.mrk_id.map(|m| m.as_bytes().to_vec()).unwrap_or_default();
    mac_input(
        "kms.key-attributes.v1",
        &[
            k.key_id.as_bytes(),
            k.account_id.as_bytes(),
            k.region.as_bytes(),
            k.key_spec.as_str().as_bytes(),
            k.key_usage.as_str().as_bytes(),
            k.origin.as_str().as_bytes(),
            k.key_manager.as_bytes(),
            &[k.multi_region as u8],
            &mrk,
        ],
    )
}

/// What a key's rotation MAC covers: its identity and creation time (a deletion recorded in
/// the trail after it refuses the row), and what rotation and primary moves change (current
/// material version, schedule, on-demand count, primary flag).
pub(crate) fn rotation_mac_input(k: &KeyRecord) -> Vec<u8> {
    let period = k
        .rotation_period_days
        .map(|d| d.to_be_bytes().to_vec())
        .unwrap_or_default();
    let next = k
        .next_rotation_date
        .map(|d| d.timestamp_micros().to_be_bytes().to_vec())
        .unwrap_or_default();
    let created = k.created_at.timestamp_micros().to_be_bytes();
    mac_input(
        "kms.key-rotation.v1",
        &[
            k.key_id.as_bytes(),
            k.account_id.as_bytes(),
            k.region.as_bytes(),
            &created,
            &k.current_version.to_be_bytes(),
            &[k.rotation_enabled as u8],
            &period,
            &next,
            &k.on_demand_rotations.to_be_bytes(),
            &[k.mrk_primary as u8],
        ],
    )
}

/// What an alias row's MAC covers: where it lives, its name and the key it names.
pub(crate) fn alias_mac_input(a: &crate::store::AliasRecord) -> Vec<u8> {
    mac_input(
        "kms.alias.v1",
        &[
            a.account_id.as_bytes(),
            a.region.as_bytes(),
            a.alias_name.as_bytes(),
            a.key_id.as_bytes(),
        ],
    )
}

pub fn default_key_policy(account_id: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{account_id}:root")},
            "Action": "kms:*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// What `/readyz` reports.
pub struct Readiness {
    pub token: Result<(), String>,
    /// The token in use (of a pool, the one calls go to now).
    pub token_label: String,
    /// The database answers and its migrations are current.
    pub database: Result<(), String>,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.token.is_ok() && self.database.is_ok()
    }
}

impl Kms {
    pub fn new(
        hsm: Hsm,
        keys: Arc<dyn KeyStore>,
        ids: Arc<dyn crate::store::IdentityStore>,
        grant_store: Arc<dyn crate::store::GrantStore>,
        sizes: &CacheSizes,
        regions: Vec<String>,
    ) -> Kms {
        Kms {
            regions,
            audit: std::sync::OnceLock::new(),
            credentials: credentials::Credentials::new(
                hsm.clone(),
                ids.clone(),
                sizes.signing_keys,
            ),
            ids,
            identity: Mutex::new(LruCache::new(nz(sizes.signing_keys))),
            key_policies: Mutex::new(LruCache::new(nz(sizes.key_metadata))),
            key_tags: Mutex::new(LruCache::new(nz(sizes.key_metadata))),
            grant_store,
            grants: Mutex::new(LruCache::new(nz(sizes.key_metadata))),
            aliases: Mutex::new(LruCache::new(nz(sizes.key_metadata))),
            clock_offset: std::sync::atomic::AtomicI64::new(0),
            key_aliases: Mutex::new(LruCache::new(nz(sizes.key_metadata))),
            hsm,
            keys,
            meta: Mutex::new(LruCache::new(nz(sizes.key_metadata))),
            live: Mutex::new(LruCache::new(nz(sizes.key_handles))),
            loading: Mutex::new(std::collections::HashMap::new()),
            limits: ResourceLimits::default(),
        }
    }

    /// The one clock every time-driven decision reads: the system clock plus an offset that
    /// tests and drills may set (`clock_offset_file`); zero otherwise.
    pub fn now(&self) -> chrono::DateTime<Utc> {
        Utc::now()
            + chrono::Duration::seconds(
                self.clock_offset.load(std::sync::atomic::Ordering::Relaxed),
            )
    }

    /// Readiness: the token answers with the service session logged in; the database answers
    /// and its migrations are current. Each check is bounded by `within`.
    pub async fn readiness(&self, within: std::time::Duration) -> Readiness {
        let token = async {
            match tokio::time::timeout(within, self.hsm.check()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the token did not answer in time".to_string()),
            }
        };
        let database = async {
            match tokio::time::timeout(within, self.keys.readiness()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the database did not answer in time".to_string()),
            }
        };
        let (token, database) = tokio::join!(token, database);
        Readiness {
            token,
            database,
            token_label: self.hsm.current_label(),
        }
    }

    /// Resource quotas other than AWS's defaults.
    pub fn with_limits(mut self, limits: ResourceLimits) -> Kms {
        self.limits = limits;
        self
    }

    /// `LimitExceededException` when the account already has its quota of customer managed
    /// keys in the region (counted in the database: every node's keys). A quick refusal
    /// before any token work; the insert counts again in its own transaction
    /// ([`Kms::key_quota_error`]), which is what holds under concurrent creations.
    pub(crate) async fn check_key_quota(
        &self,
        account: &str,
        region: &str,
    ) -> Result<(), KmsError> {
        let n = self.keys.count_customer_keys(account, region).await?;
        if n >= self.limits.keys_per_region {
            return Err(self.key_quota_exceeded(account, region));
        }
        Ok(())
    }

    fn key_quota_exceeded(&self, account: &str, region: &str) -> KmsError {
        KmsError::LimitExceeded(format!(
            "The request was rejected because the account {account} has reached the limit of {} KMS keys in {region}.",
            self.limits.keys_per_region
        ))
    }

    /// A store error from inserting a customer managed key: the quota counted in the insert's
    /// transaction becomes `LimitExceededException`.
    pub(crate) fn key_quota_error(
        &self,
        e: crate::store::StoreError,
        account: &str,
        region: &str,
    ) -> KmsError {
        match e {
            crate::store::StoreError::Conflict { constraint }
                if constraint == crate::store::QUOTA_EXCEEDED =>
            {
                self.key_quota_exceeded(account, region)
            }
            other => other.into(),
        }
    }

    pub fn set_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    /// Before the service changes something by itself (a scheduled rotation, a deletion at the
    /// end of its waiting period, an import's expiry), its intent goes into the trail
    /// (`ServiceActionStarted`): if the trail cannot take it, nothing is done (the job runs
    /// again at its next tick). The event for the action done (`action`, with `details`) is
    /// prepared now: the change runs inside [`ServiceAction::run`], which writes it as the
    /// change's record in the change's transaction, and [`Kms::audit_service_done`] chains it.
    pub(crate) async fn audit_service_intent(
        &self,
        action: &str,
        arn: &str,
        region: &str,
        details: serde_json::Value,
    ) -> Result<ServiceAction, KmsError> {
        let Some(a) = self.audit.get() else {
            return Ok(ServiceAction::none());
        };
        let refuse = |e: crate::audit::AuditError| {
            tracing::error!(error = %e, action, key = arn, "the audit trail cannot record what the service is about to do; not doing it");
            KmsError::DependencyTimeout
        };
        let done = crate::audit::service_event(action, arn, region, details);
        let record = a.change_record(done).await.map_err(refuse)?;
        let ev = crate::audit::service_intent_event(action, arn, region);
        a.record(ev).await.map_err(refuse)?;
        Ok(ServiceAction(record))
    }

    /// Chain a service event about `rec` before the change it records (a grant's end, a lease
    /// of invocations) is made or used: a trail that cannot take it refuses the change
    /// (`DependencyTimeoutException`). Nothing is recorded when the trail is off.
    pub(crate) async fn record_before(
        &self,
        name: &str,
        rec: &KeyRecord,
        details: serde_json::Value,
    ) -> Result<(), KmsError> {
        let Some(a) = self.audit.get() else {
            return Ok(());
        };
        let ev = crate::audit::service_event(name, &rec.arn(), &rec.region, details);
        a.record(ev).await.map_err(|e| {
            tracing::error!(error = %e, event = name, key_id = %rec.key_id, "the audit trail cannot record this; not doing it");
            KmsError::DependencyTimeout
        })
    }

    /// The service's action committed: its event goes into the trail (settling its change
    /// record). A failure is logged; the record reaches the trail by itself later.
    pub(crate) async fn audit_service_done(&self, action: ServiceAction) {
        if let (Some(a), Some(r)) = (self.audit.get(), action.0) {
            let id = r.event.event_id;
            let event = crate::audit::with_generations(r.event.clone(), &r.written);
            if let Err(e) = a.record_settling(event, Some(id)).await {
                tracing::error!(error = %e, event = %r.event.event_name, "could not record a service event; its change record will be chained later");
            }
        }
    }

    pub fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn ids_store(&self) -> &Arc<dyn crate::store::IdentityStore> {
        &self.ids
    }

    pub fn hsm(&self) -> &Hsm {
        &self.hsm
    }

    /// Drop cached metadata for one key (another node changed it) or for all keys (the
    /// notification channel was interrupted, so changes may have been missed).
    pub fn invalidate(&self, key_id: Option<Uuid>) {
        let mut m = self.meta.lock().unwrap();
        let mut t = self.key_tags.lock().unwrap();
        match key_id {
            Some(id) => {
                m.pop(&id);
                t.pop(&id);
                let mut live = self.live.lock().unwrap();
                let stale: Vec<(Uuid, i32)> = live
                    .iter()
                    .filter(|(k, _)| k.0 == id)
                    .map(|(k, _)| *k)
                    .collect();
                let dropped: Vec<_> = stale.iter().filter_map(|k| live.pop(k)).collect();
                drop(live);
                drop(dropped);
            }
            None => {
                m.clear();
                t.clear();
            }
        }
    }

    /// An identity (identity policy or access key) changed somewhere: forget what was derived.
    pub fn invalidate_identities(&self) {
        self.identity.lock().unwrap().clear();
        self.credentials.invalidate_all();
    }

    // ----- authorization --------------------------------------------------------------------

    async fn identity_policies(&self, principal_arn: &str) -> Result<Arc<Identity>, KmsError> {
        if let Some(p) = self.identity.lock().unwrap().get(principal_arn) {
            crate::metrics::cache("identity", true);
            return Ok(p.clone());
        }
        crate::metrics::cache("identity", false);
        let mut docs = Vec::new();
        let authz = self.verified_authz(principal_arn).await?;
        let (policies, tags, via_service) = match authz {
            Some(a) => (a.policies, a.tags, a.via_service),
            None => (vec![], vec![], None),
        };
        for (name, text) in policies {
            match policy::parse(&text, PolicyKind::Identity) {
                Ok(d) => docs.push(d),
                Err(e) => {
                    tracing::error!(principal_arn, policy = %name, error = %e, "stored identity policy is not valid; ignoring it")
                }
            }
        }
        let id = Arc::new(Identity {
            policies: docs,
            tags,
            via_service,
        });
        self.identity
            .lock()
            .unwrap()
            .put(principal_arn.to_string(), id.clone());
        Ok(id)
    }

    /// A principal's authorization data, once its MAC (computed in the token) matches: an
    /// identity policy, tag, service registration or trust policy altered, added or removed
    /// in the database refuses the principal everything. `None`: no such principal.
    async fn verified_authz(&self, arn: &str) -> Result<Option<PrincipalAuthz>, KmsError> {
        // The trail first: a change that commits while the row is read is then never taken
        // for an older row put back.
        let trail = self.trail_of(&[seal::principal_row(arn)]).await?;
        let Some(a) = self.ids.principal_authz(arn).await? else {
            return Ok(None);
        };
        let holds = a.mac.is_some()
            && self
                .current_under(
                    seal::principal_row(arn),
                    principal_mac_input(arn, &a),
                    &a.mac,
                    &trail,
                )
                .await?;
        if !holds {
            tracing::error!(principal_arn = arn, sealed = a.mac.is_some(), "the principal's policies, tags or trust policy failed their integrity check (altered in the database, an older row put back, or stored before principals were sealed: review with `kms admin seal`); refusing the principal");
            return Err(KmsError::AccessDenied(format!(
                "{arn} is not authorized to perform this operation: its identity record failed an integrity check"
            )));
        }
        Ok(Some(a))
    }

    /// A key's tags, once their MAC (in the key row) holds: a tag inserted, altered, deleted
    /// or moved in the database makes the key unusable rather than changing a decision.
    pub(crate) async fn tags_of(&self, rec: &KeyRecord) -> Result<Arc<Vec<Tag>>, KmsError> {
        if let Some(t) = self.key_tags.lock().unwrap().get(&rec.key_id) {
            crate::metrics::cache("key_tags", true);
            return Ok(t.clone());
        }
        crate::metrics::cache("key_tags", false);
        let tags = self.keys.tags(rec.key_id).await?;
        if !self
            .sealed(tags_mac_input(rec, &tags), &rec.tags_mac)
            .await?
        {
            tracing::error!(key_id = %rec.key_id, sealed = rec.tags_mac.is_some(), "key tags failed their integrity check (altered in the database, or stored before tags were sealed: review with `kms admin seal`); refusing to use the key");
            return Err(KmsError::KeyUnavailable);
        }
        let stored = rec.tags_mac.as_deref().unwrap_or_default();
        if let Some((row, have, held)) = self
            .behind_trail(&[(seal::key_row(rec, "tags"), stored)])
            .await?
        {
            tracing::error!(key_id = %rec.key_id, row, generation = have, trail = held, "key tags are older than the audit trail records (an older set put back in the database?); refusing to use the key");
            return Err(KmsError::KeyUnavailable);
        }
        let t = Arc::new(tags);
        self.key_tags.lock().unwrap().put(rec.key_id, t.clone());
        Ok(t)
    }

    /// Replace a key's tags with `next` (the verified set with a change applied) and their
    /// new MAC, computed before anything is written.
    pub(crate) async fn store_tags(&self, rec: &KeyRecord, next: &[Tag]) -> Result<(), KmsError> {
        self.tags_of(rec).await?;
        let expected = rec.tags_mac.as_deref().unwrap_or_default();
        let seal = self
            .seal_row(
                seal::key_row(rec, "tags"),
                tags_mac_input(rec, next),
                Some(expected),
            )
            .await?;
        if !self
            .keys
            .set_tags(rec.key_id, expected, next, &seal.mac)
            .await?
        {
            return Err(KmsError::Conflict(format!(
                "The tags of {} changed during this request; try again.",
                rec.arn()
            )));
        }
        self.written(&seal);
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// Request context keys that come from stored data: principal and resource tags.
    async fn add_tags(
        &self,
        req: &mut policy::Request,
        id: &Identity,
        rec: Option<&KeyRecord>,
    ) -> Result<(), KmsError> {
        for t in &id.tags {
            req.context.insert(
                format!("aws:principaltag/{}", t.key.to_ascii_lowercase()),
                vec![t.value.clone()],
            );
        }
        if let Some(rec) = rec {
            for t in self.tags_of(rec).await?.iter() {
                req.context.insert(
                    format!("aws:resourcetag/{}", t.key.to_ascii_lowercase()),
                    vec![t.value.clone()],
                );
            }
            let aliases = self.aliases_of(rec).await?;
            if !aliases.is_empty() {
                req.context
                    .insert("kms:resourcealiases".into(), aliases.to_vec());
            }
        }
        Ok(())
    }

    fn key_policy(&self, rec: &KeyRecord) -> Option<PolicyDocument> {
        if let Some(p) = self.key_policies.lock().unwrap().get(&rec.key_id) {
            if p.0 == rec.policy {
                crate::metrics::cache("key_policies", true);
                return p.1.clone();
            }
        }
        crate::metrics::cache("key_policies", false);
        let parsed = match policy::parse(&rec.policy, PolicyKind::Key) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(key_id = %rec.key_id, error = %e, "stored key policy is not valid; it allows nothing");
                None
            }
        };
        self.key_policies
            .lock()
            .unwrap()
            .put(rec.key_id, Arc::new((rec.policy.clone(), parsed.clone())));
        parsed
    }

    fn request(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
    ) -> policy::Request {
        let mut r = policy::Request {
            principal_arn: caller.principal_arn.clone(),
            principal_account: caller.account_id.clone(),
            role_arn: caller.role_arn.clone(),
            action: action.to_string(),
            resource: rec.map(Self::arn).unwrap_or_else(|| "*".into()),
            context: Default::default(),
        };
        let mut put = |k: &str, v: Vec<String>| {
            r.context.insert(k.to_ascii_lowercase(), v);
        };
        put("kms:CallerAccount", vec![caller.account_id.clone()]);
        put("aws:PrincipalArn", vec![caller.principal_arn.clone()]);
        put("aws:PrincipalAccount", vec![caller.account_id.clone()]);
        put(
            "aws:CurrentTime",
            vec![self
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)],
        );
        put(
            "aws:SecureTransport",
            vec![caller.secure_transport.to_string()],
        );
        if let Some(ip) = &caller.source_ip {
            put("aws:SourceIp", vec![ip.clone()]);
        }
        if let Some(a) = &caller.request_alias {
            put("kms:RequestAlias", vec![a.clone()]);
        }
        if let Some(rec) = rec {
            put("kms:KeySpec", vec![rec.key_spec.to_string()]);
            put("kms:KeyUsage", vec![rec.key_usage.to_string()]);
            put("kms:KeyOrigin", vec![rec.origin.to_string()]);
        }
        if let Some(ctx) = ctx {
            for (k, v) in ctx {
                put(&format!("kms:EncryptionContext:{k}"), vec![v.clone()]);
            }
            if !ctx.is_empty() {
                put("kms:EncryptionContextKeys", ctx.keys().cloned().collect());
            }
        }
        r
    }

    /// Allow or refuse `action` for the caller, on a key (key policy + identity policies +
    /// grants) or on no key (identity policies alone).
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
        extra: &[(&str, &str)],
    ) -> Result<(), KmsError> {
        self.authorize_multi(caller, action, rec, ctx, extra, &[])
            .await
    }

    pub(crate) async fn authorize_multi(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
        extra: &[(&str, &str)],
        multi: &[(&str, &[String])],
    ) -> Result<(), KmsError> {
        self.authorize_with(caller, action, rec, ctx, extra, multi, None)
            .await
    }

    /// As `authorize_multi`; `grants` says how grants allow the request when the caller of
    /// this function has decided it (CreateGrant limits what a grant may create), `None` asks
    /// the key's grants.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn authorize_with(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
        extra: &[(&str, &str)],
        multi: &[(&str, &[String])],
        grants: Option<policy::GrantAllows>,
    ) -> Result<(), KmsError> {
        let identity = self
            .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
            .await?;
        let ids = &identity.policies;
        let mut req = self.request(caller, action, rec, ctx);
        self.add_tags(&mut req, &identity, rec).await?;
        if let Some(service) = &identity.via_service {
            req.context.insert(
                "kms:viaservice".into(),
                vec![format!("{service}.{}.amazonaws.com", caller.region)],
            );
        }
        for (k, v) in extra {
            req.context
                .insert(k.to_ascii_lowercase(), vec![v.to_string()]);
        }
        for (k, v) in multi {
            req.context.insert(k.to_ascii_lowercase(), v.to_vec());
        }
        let decision = match rec {
            Some(rec) => match self.key_policy(rec) {
                Some(kp) => {
                    let grant = match grants {
                        Some(g) => g,
                        None => self.grant_allows(caller, action, rec, ctx).await?,
                    };
                    policy::decide(&kp, &rec.account_id, ids, grant, &req)
                }
                None => policy::Decision::Deny(policy::Denial::NoKeyPolicyAllows),
            },
            None => policy::decide_identity_only(ids, &req),
        };
        match decision {
            policy::Decision::Allow => Ok(()),
            policy::Decision::Deny(why) => {
                Err(KmsError::AccessDenied(policy::denial_message(&req, why)))
            }
        }
    }

    /// `sts:AssumeRole`: the role's trust policy must allow the caller (directly, or by
    /// trusting the caller's account whose identity policies then must allow it). Returns the
    /// role's account.
    pub async fn authorize_assume_role(
        &self,
        caller: &Caller,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> Result<String, KmsError> {
        let denied = || {
            KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.principal_arn
            ))
        };
        let Some(role) = self.verified_authz(role_arn).await.map_err(|_| denied())? else {
            return Err(denied());
        };
        let (account, Some(trust)) = (role.account_id, role.trust_policy) else {
            return Err(denied());
        };
        let trust = policy::parse(&trust, PolicyKind::Key).map_err(|e| {
            tracing::error!(role_arn, error = %e, "stored trust policy is not valid");
            denied()
        })?;
        let identity = self
            .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
            .await?;
        let mut req = self.request(caller, "sts:AssumeRole", None, None);
        self.add_tags(&mut req, &identity, None).await?;
        req.resource = role_arn.to_string();
        if let Some(x) = external_id {
            req.context
                .insert("sts:externalid".into(), vec![x.to_string()]);
        }
        match policy::decide(
            &trust,
            &account,
            &identity.policies,
            policy::GrantAllows::No,
            &req,
        ) {
            policy::Decision::Allow => Ok(account),
            policy::Decision::Deny(_) => Err(denied()),
        }
    }

    // ----- key resolution -------------------------------------------------------------------

    /// The key's policy decides who may use it, its state whether it may be used, its
    /// attributes what it is: any of them altered in the database (or written there by anyone
    /// but this service) makes the key unusable, not open.
    async fn key_parts_sealed(&self, rec: &KeyRecord) -> Result<(), KmsError> {
        let checks = [
            ("key policy failed its integrity check", policy_mac_input(rec), &rec.policy_mac),
            ("key state failed its integrity check", state_mac_input(rec), &rec.state_mac),
            (
                "key attributes failed their integrity check (altered in the database, or stored before they were sealed: review with `kms admin seal`)",
                attrs_mac_input(rec),
                &rec.attrs_mac,
            ),
            (
                "key rotation state failed its integrity check (altered in the database, or stored before it was sealed: review with `kms admin seal`)",
                rotation_mac_input(rec),
                &rec.rotation_mac,
            ),
        ];
        for (what, input, stored) in checks {
            if !self.sealed(input, stored).await? {
                tracing::error!(key_id = %rec.key_id, state = %rec.key_state, "{what}; refusing to use the key");
                return Err(KmsError::KeyUnavailable);
            }
        }
        Ok(())
    }

    async fn record(&self, id: Uuid) -> Result<Option<Arc<KeyRecord>>, KmsError> {
        if let Some(r) = self.meta.lock().unwrap().get(&id) {
            crate::metrics::cache("key_metadata", true);
            return Ok(Some(r.clone()));
        }
        crate::metrics::cache("key_metadata", false);
        let Some(mut rec) = self.keys.key(id).await? else {
            return Ok(None);
        };
        self.key_parts_sealed(&rec).await?;
        // Each part as sealed, but an older one put back (the policy before the last
        // PutKeyPolicy, the state before DisableKey): the trail holds a later generation.
        let names: Vec<String> = KEY_PARTS
            .iter()
            .map(|part| seal::key_row(&rec, part))
            .collect();
        let trail = self.keys.generations_per_trail(&names).await?;
        if seal::first_behind(&key_part_rows(&rec), &trail).is_some() {
            // Or the row was read just before a change committed and reached the trail. Every
            // generation the trail held when asked was committed before it was asked, so the
            // row read again now is at or above it, unless it is an older row put back.
            let Some(again) = self.keys.key(id).await? else {
                return Ok(None);
            };
            self.key_parts_sealed(&again).await?;
            if let Some((row, have, held)) = seal::first_behind(&key_part_rows(&again), &trail) {
                tracing::error!(key_id = %again.key_id, row, generation = have, trail = held, "a part of the key is older than the audit trail records (an older row put back in the database?); refusing to use the key");
                return Err(KmsError::KeyUnavailable);
            }
            rec = again;
        }
        // A deleted key's rows put back (from an older backup) are sealed rows: its DeleteKey
        // event in the trail, later than the key's sealed creation time, refuses them (removing
        // the event breaks the chain). A multi-Region replica deleted and replicated again has
        // the same ARN and a later creation time.
        if self
            .keys
            .deleted_per_trail(&rec.arn(), rec.created_at)
            .await?
        {
            tracing::error!(key_id = %rec.key_id, "the audit trail records this key's deletion, but its rows are in the database again (put back from a backup?); refusing to use it");
            return Err(KmsError::KeyUnavailable);
        }
        let rec = Arc::new(rec);
        self.meta.lock().unwrap().put(id, rec.clone());
        Ok(Some(rec))
    }

    /// Resolve a `KeyId` parameter to a key the caller can see in the caller's region.
    async fn resolve(&self, caller: &Caller, key_id: &str) -> Result<Arc<KeyRecord>, KmsError> {
        let r = keyid::parse(key_id)?;
        let (id, account) = match &r {
            KeyRef::Id(id) => (*id, caller.account_id.clone()),
            KeyRef::Arn {
                region,
                account,
                id,
            } => {
                if region != &caller.region {
                    return Err(KmsError::NotFound(format!(
                        "Key '{}' does not exist",
                        keyid::key_arn(region, account, id)
                    )));
                }
                (*id, account.clone())
            }
            KeyRef::Alias {
                name,
                region,
                account,
            } => {
                let region = region.as_deref().unwrap_or(&caller.region);
                let account = account.as_deref().unwrap_or(&caller.account_id);
                if region != caller.region {
                    return Err(keyid::alias_not_found(region, account, name));
                }
                let found = match self.alias_target(account, region, name).await? {
                    Some(id) => Some(id),
                    None if account == caller.account_id => {
                        self.managed_key(account, region, name).await?
                    }
                    None => None,
                };
                let id = found.ok_or_else(|| keyid::alias_not_found(region, account, name))?;
                let rec = self
                    .record(id)
                    .await?
                    .ok_or_else(|| keyid::alias_not_found(region, account, name))?;
                (rec.public_id(), account.to_string())
            }
        };
        let not_found = || {
            KmsError::NotFound(format!(
                "Key '{}' does not exist",
                keyid::key_arn(&caller.region, &account, &id)
            ))
        };
        let rec = self
            .record(id.internal(&caller.region))
            .await?
            .ok_or_else(not_found)?;
        // A multi-Region key is named by its `mrk-` id only, never by its row id.
        if rec.region != caller.region || rec.account_id != account || rec.public_id() != id {
            return Err(not_found());
        }
        // Another account's key (named by ARN): its key policy decides, in `authorize`.
        Ok(rec)
    }

    /// The ARN of a key by id, whatever its account (for listing grants).
    async fn key_arn_of(&self, key_id: Uuid) -> Result<String, KmsError> {
        let rec = self
            .record(key_id)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("Key '{key_id}' does not exist")))?;
        Ok(Self::arn(&rec))
    }

    fn arn(rec: &KeyRecord) -> String {
        rec.arn()
    }

    /// The usable material of a key version: from the cache, or loaded, checked and unwrapped.
    /// For `kms backup verify`: the key's rows pass every check, and every material version
    /// it holds unwraps under this token (the handle is only cached, never exported). Returns
    /// how many versions unwrapped.
    pub async fn verify_key_material(&self, id: Uuid) -> Result<usize, KmsError> {
        let rec = self.record(id).await?.ok_or(KmsError::KeyUnavailable)?;
        let mut n = 0;
        for version in 1..=rec.current_version {
            if self.live_material(&rec, version).await?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn live_material(
        &self,
        rec: &KeyRecord,
        version: i32,
    ) -> Result<Option<Arc<LiveMaterial>>, KmsError> {
        let k = (rec.key_id, version);
        if let Some(l) = self.live.lock().unwrap().get(&k) {
            if l.bound_to == Binding::of(rec) && l.handle.is_current() {
                crate::metrics::cache("key_material", true);
                return Ok(Some(l.clone()));
            }
        }
        crate::metrics::cache("key_material", false);
        let gate = self.loading.lock().unwrap().entry(k).or_default().clone();
        let _loading = gate.lock().await;
        let r = self.load_material(rec, version).await;
        self.loading.lock().unwrap().remove(&k);
        r
    }

    async fn load_material(
        &self,
        rec: &KeyRecord,
        version: i32,
    ) -> Result<Option<Arc<LiveMaterial>>, KmsError> {
        let k = (rec.key_id, version);
        let cached = self.live.lock().unwrap().get(&k).cloned();
        if let Some(l) = cached {
            if l.bound_to == Binding::of(rec) && l.handle.is_current() {
                return Ok(Some(l));
            }
            if !l.handle.is_current() {
                // The token was re-opened: the object died with its session; unwrap again.
                let evicted = self.live.lock().unwrap().pop(&k);
                drop(evicted);
            } else {
                // The key's record changed under a loaded handle: verify the row again.
                tracing::warn!(key_id = %rec.key_id, version, "key metadata changed under a cached key handle; re-verifying");
                let evicted = self.live.lock().unwrap().pop(&k);
                drop(evicted);
            }
        }
        let Some(m) = self.keys.material(rec.key_id, version).await? else {
            return Ok(None);
        };
        self.verify_material(rec, &m).await?;
        // Imported material is used only under an import row that passes its MAC: one altered
        // or deleted in the database (to escape its expiry) refuses the material instead.
        if rec.origin == Origin::External && self.verified_import(rec.key_id).await?.is_none() {
            tracing::error!(key_id = %rec.key_id, "imported key material has no import row (deleted in the database?); refusing it");
            return Err(KmsError::KeyUnavailable);
        }
        let unwrapped = match asymmetric::kind(rec.key_spec) {
            Some(asymmetric::Kind::Pair(kind)) => {
                self.hsm
                    .unwrap_private(
                        m.wrapped.clone(),
                        m.root_version as u32,
                        kind,
                        asymmetric::private_use(rec.key_usage),
                    )
                    .await
            }
            Some(asymmetric::Kind::Hmac(..)) => {
                self.hsm
                    .unwrap_hmac_secret(m.wrapped.clone(), m.root_version as u32)
                    .await
            }
            _ => {
                self.hsm
                    .unwrap_aes(m.wrapped.clone(), m.root_version as u32)
                    .await
            }
        };
        let handle = unwrapped.map_err(|e| {
            tracing::error!(key_id = %rec.key_id, version, error = %e, "could not unwrap key material");
            KmsError::KeyUnavailable
        })?;
        let live = Arc::new(LiveMaterial {
            handle,
            public_key: m.public_key.clone(),
            lease: tokio::sync::Mutex::new(Lease::default()),
            bound_to: Binding::of(rec),
        });
        let evicted = {
            let mut c = self.live.lock().unwrap();
            match c.get(&k) {
                Some(existing)
                    if existing.bound_to == live.bound_to && existing.handle.is_current() =>
                {
                    return Ok(Some(existing.clone()))
                }
                _ => c.push(k, live.clone()),
            }
        };
        drop(evicted); // destroys the evicted object once no request holds it
        Ok(Some(live))
    }

    /// Check a material row's MAC (computed in the token) against the key it claims to be of.
    async fn verify_material(&self, rec: &KeyRecord, m: &MaterialRecord) -> Result<(), KmsError> {
        if !self
            .hsm
            .row_mac_matches(material_mac_input(rec, m), &m.mac)
            .await?
        {
            tracing::error!(key_id = %rec.key_id, version = m.version, "key material row failed its integrity check; refusing to use it");
            return Err(KmsError::KeyUnavailable);
        }
        Ok(())
    }

    /// The material version to encrypt with and one AES-GCM invocation of it, leasing more
    /// from the database when the lease runs out. `None` once the material is at the bound.
    async fn try_invocation(&self, rec: &KeyRecord) -> Result<Option<Arc<LiveMaterial>>, KmsError> {
        let version = rec.current_version;
        let live = self.live_material(rec, version).await?.ok_or_else(|| {
            KmsError::Internal(format!(
                "current material v{version} of {} is missing",
                rec.key_id
            ))
        })?;
        let mut lease = live.lease.lock().await;
        if lease.next >= lease.end {
            let size = (lease.size * 2).clamp(GCM_LEASE_MIN, GCM_LEASE_MAX);
            // Every lease is in the trail before it is used, and the database hands leases out
            // in order: read before reserving, every end the trail holds is at most where the
            // next lease starts. A lease starting before one of them means the count was set
            // back in the database (to pass the 2^32 bound of one material).
            let material = lifecycle::material_id(&rec.blob_id(), version);
            let used = self.leased_per_trail(&material).await?;
            match self
                .keys
                .reserve_invocations(rec.key_id, rec.mrk_id, version, size, GCM_INVOCATION_LIMIT)
                .await?
            {
                Some((start, end)) => {
                    if start < used {
                        tracing::error!(key_id = %rec.key_id, version, start, used, "the key material's invocation count is behind the leases the audit trail records (set back in the database?); refusing to use it");
                        return Err(KmsError::KeyUnavailable);
                    }
                    self.record_before(
                        "InvocationsLeased",
                        rec,
                        serde_json::json!({ "materialId": material, "start": start, "end": end }),
                    )
                    .await?;
                    lease.next = start;
                    lease.end = end;
                    lease.size = size;
                }
                None => {
                    tracing::warn!(key_id = %rec.key_id, version, "key material reached the AES-GCM invocation limit");
                    return Ok(None);
                }
            }
        }
        lease.next += 1;
        drop(lease);
        Ok(Some(live))
    }

    /// The furthest end of the material's latest leases in the trail (0: none).
    async fn leased_per_trail(&self, material: &str) -> Result<i64, KmsError> {
        // Leases of several nodes may reach the trail out of order: the latest few, not only
        // the last, bound where the count stands.
        let bodies = self.keys.leases_per_trail(material, 16).await?;
        Ok(bodies
            .iter()
            .filter_map(|b| {
                serde_json::from_str::<serde_json::Value>(b)
                    .ok()?
                    .pointer("/additionalEventData/end")?
                    .as_i64()
            })
            .max()
            .unwrap_or(0))
    }

    /// Like `try_invocation`, but a key at the bound rotates to new material (once) and uses it.
    async fn invocation(&self, rec: &KeyRecord) -> Result<(i32, Arc<LiveMaterial>), KmsError> {
        if let Some(live) = self.try_invocation(rec).await? {
            return Ok((rec.current_version, live));
        }
        match self.rotate_material(rec, "AUTOMATIC", None, false).await {
            // Conflict: another request or node rotated it first.
            Ok(()) | Err(KmsError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        self.invalidate(Some(rec.key_id));
        let fresh = self
            .record(rec.key_id)
            .await?
            .ok_or(KmsError::KeyUnavailable)?;
        let live = self
            .try_invocation(&fresh)
            .await?
            .ok_or(KmsError::KeyUnavailable)?;
        Ok((fresh.current_version, live))
    }

    async fn seal(
        &self,
        rec: &KeyRecord,
        plaintext: Zeroizing<Vec<u8>>,
        ctx: &Context,
    ) -> Result<Vec<u8>, KmsError> {
        let (version, live) = self.invocation(rec).await?;
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv)
            .map_err(|_| KmsError::Internal("system RNG failed".into()))?;
        let header = Header {
            key_id: rec.blob_id(),
            material_version: version as u32,
            iv,
        };
        let aad = ciphertext::aad(&header, ctx);
        let body = self
            .hsm
            .gcm_encrypt(live.handle.clone(), iv, aad, plaintext)
            .await?;
        let mut blob = header.to_bytes().to_vec();
        blob.extend_from_slice(&body);
        Ok(blob)
    }

    /// What decrypting with a symmetric key checks before the ciphertext: the caller may do
    /// `action` with this context, and the key is a usable symmetric encryption key.
    async fn check_symmetric_decrypt(
        &self,
        caller: &Caller,
        action: &str,
        rec: &KeyRecord,
        ctx: &Context,
    ) -> Result<(), KmsError> {
        let access = Access::to(action, &[Check::Enabled, Check::Symmetric("Decrypt")])
            .context(ctx)
            .conditions(&[("kms:EncryptionAlgorithm", SYMMETRIC_DEFAULT)]);
        self.admit(caller, rec, access).await
    }

    /// Decrypt a blob: the blob names its key; `expected` (from `KeyId`) must match it.
    async fn open(
        &self,
        caller: &Caller,
        action: &str,
        blob: &[u8],
        ctx: &Context,
        expected: Option<&str>,
    ) -> Result<(Arc<KeyRecord>, Zeroizing<Vec<u8>>), KmsError> {
        let expected = match expected {
            Some(k) => Some(self.resolve(caller, k).await?),
            None => None,
        };
        let (header, body) = ciphertext::parse(blob).ok_or(KmsError::InvalidCiphertext)?;
        if let Some(e) = &expected {
            if e.blob_id() != header.key_id {
                return Err(KmsError::IncorrectKey);
            }
        }
        // A multi-Region blob decrypts with its key's copy in the caller's region.
        let row = keyid::PublicId::of_blob(header.key_id).internal(&caller.region);
        let rec = match self.record(row).await? {
            Some(r) if r.region == caller.region => r,
            _ => return Err(KmsError::InvalidCiphertext),
        };
        self.check_symmetric_decrypt(caller, action, &rec, ctx)
            .await?;
        let version =
            i32::try_from(header.material_version).map_err(|_| KmsError::InvalidCiphertext)?;
        let live = self
            .live_material(&rec, version)
            .await?
            .ok_or(KmsError::InvalidCiphertext)?;
        let aad = ciphertext::aad(&header, ctx);
        match self
            .hsm
            .gcm_decrypt(live.handle.clone(), header.iv, aad, body.to_vec())
            .await
        {
            Ok(pt) => Ok((rec, pt)),
            // The token profile says which codes mean a bad ciphertext (HsmError::BadCiphertext).
            Err(e) => Err(e.into()),
        }
    }

    // ----- operations -----------------------------------------------------------------------

    pub async fn create_key(
        &self,
        caller: &Caller,
        input: CreateKeyInput,
    ) -> Result<KeyMetadata, KmsError> {
        let external = input.origin == Origin::External;
        match input.origin {
            Origin::AwsKms => {}
            Origin::External
                if input.key_spec == KeySpec::SymmetricDefault
                    || input.key_spec.is_hmac()
                    || input.key_spec.is_rsa()
                    || (input.key_spec.is_ecc()
                        && input.key_spec != KeySpec::EccNistEdwards25519) => {}
            Origin::External => {
                return Err(KmsError::UnsupportedOperation(format!(
                "Keys with Origin EXTERNAL and KeySpec {} are not supported by this key store yet.",
                input.key_spec
            )))
            }
            other => {
                return Err(KmsError::UnsupportedOperation(format!(
                    "Origin {other} is not supported by this key store."
                )))
            }
        }
        let Some(kind) = asymmetric::kind(input.key_spec) else {
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {} is not supported by this key store.",
                input.key_spec
            )));
        };
        if !asymmetric::usages(input.key_spec).contains(&input.key_usage) {
            return Err(KmsError::Validation(format!(
                "KeyUsage {} is not compatible with KeySpec {}",
                input.key_usage, input.key_spec
            )));
        }
        if !asymmetric::token_supports(&self.hsm, kind) {
            let caps = self.hsm.capabilities();
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {} is not available: this key store's HSM ({} {}) cannot generate and wrap such keys.",
                input.key_spec, caps.manufacturer, caps.model
            )));
        }
        lifecycle::check_tags(&input.tags)?;
        if input.tags.len() > lifecycle::MAX_TAGS_PER_KEY {
            return Err(KmsError::Tag(format!(
                "A KMS key can have at most {} tags.",
                lifecycle::MAX_TAGS_PER_KEY
            )));
        }
        self.authorize(
            caller,
            "kms:CreateKey",
            None,
            None,
            &[
                ("kms:KeySpec", input.key_spec.as_str()),
                ("kms:KeyUsage", input.key_usage.as_str()),
                ("kms:KeyOrigin", input.origin.as_str()),
                (
                    "kms:MultiRegion",
                    if input.multi_region { "true" } else { "false" },
                ),
            ],
        )
        .await?;
        self.check_key_quota(&caller.account_id, &caller.region)
            .await?;
        let mut rec = KeyRecord {
            description: input.description,
            key_spec: input.key_spec,
            key_usage: input.key_usage,
            origin: input.origin,
            ..self.new_record(
                &caller.account_id,
                &caller.region,
                input
                    .policy
                    .clone()
                    .unwrap_or_else(|| default_key_policy(&caller.account_id)),
            )
        };
        if input.multi_region {
            let mrk = keyid::new_mrk();
            rec.key_id = keyid::mrk_key_id(&mrk, &rec.region);
            rec.mrk_id = Some(mrk);
            rec.mrk_primary = true;
            rec.multi_region = true;
        }
        if input.policy.is_some() {
            self.check_new_policy(
                caller,
                &rec,
                &rec.policy,
                input.bypass_policy_lockout_safety_check,
            )
            .await?;
        }
        if external {
            // No material until it is imported.
            rec.key_state = KeyState::PendingImport;
            rec.current_version = 0;
            self.seal_new_key(&mut rec, &input.tags).await?;
            self.keys
                .create_key(&rec, None, &input.tags, self.limits.keys_per_region)
                .await
                .map_err(|e| self.key_quota_error(e, &rec.account_id, &rec.region))?;
            return self.metadata(&rec).await;
        }
        self.seal_new_key(&mut rec, &input.tags).await?;
        // Token generates → token wraps → database commits → reply.
        let m = self.new_material(&rec, 1).await?;
        self.keys
            .create_key(&rec, Some(&m), &input.tags, self.limits.keys_per_region)
            .await
            .map_err(|e| self.key_quota_error(e, &rec.account_id, &rec.region))?;
        self.metadata(&rec).await
    }

    /// An enabled, customer-managed symmetric key created now, to be adjusted by the caller.
    pub(crate) fn new_record(&self, account: &str, region: &str, policy: String) -> KeyRecord {
        KeyRecord {
            key_id: Uuid::new_v4(),
            account_id: account.to_string(),
            region: region.to_string(),
            description: String::new(),
            key_spec: KeySpec::SymmetricDefault,
            key_usage: ENCRYPT_DECRYPT,
            origin: Origin::AwsKms,
            key_manager: "CUSTOMER".into(),
            key_state: KeyState::Enabled,
            policy,
            multi_region: false,
            current_version: 1,
            created_at: self.now(),
            deletion_date: None,
            rotation_enabled: false,
            rotation_period_days: None,
            next_rotation_date: None,
            on_demand_rotations: 0,
            mrk_id: None,
            mrk_primary: false,
            pending_window_days: None,
            policy_mac: None,
            state_mac: None,
            tags_mac: None,
            attrs_mac: None,
            rotation_mac: None,
        }
    }

    /// The MACs of a new key: policy, state, tags and attributes (set before it is stored).
    pub(crate) async fn seal_new_key(
        &self,
        rec: &mut KeyRecord,
        tags: &[Tag],
    ) -> Result<(), KmsError> {
        let mut seals = self
            .seal_rows(vec![
                (seal::key_row(rec, "policy"), policy_mac_input(rec), None),
                (seal::key_row(rec, "state"), state_mac_input(rec), None),
                (seal::key_row(rec, "tags"), tags_mac_input(rec, tags), None),
                (seal::key_row(rec, "attributes"), attrs_mac_input(rec), None),
                (
                    seal::key_row(rec, "rotation"),
                    rotation_mac_input(rec),
                    None,
                ),
            ])
            .await?
            .into_iter()
            .map(|s| Some(s.mac));
        let mut next = || seals.next().flatten();
        rec.policy_mac = next();
        rec.state_mac = next();
        rec.tags_mac = next();
        rec.attrs_mac = next();
        rec.rotation_mac = next();
        Ok(())
    }

    /// The rows whose rotation state a change to `rec`'s writes (the key, and for a
    /// multi-Region key every related key), read afresh and each verified: a row that fails
    /// its rotation MAC is never re-sealed with the change (the change is refused, naming it).
    pub(crate) async fn verified_rotation_rows(
        &self,
        rec: &KeyRecord,
    ) -> Result<Vec<KeyRecord>, KmsError> {
        let rows = match rec.mrk_id {
            Some(mrk) => self.keys.related_keys(mrk).await?,
            None => self.keys.key(rec.key_id).await?.into_iter().collect(),
        };
        if !rows.iter().any(|r| r.key_id == rec.key_id) {
            return Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                rec.arn()
            )));
        }
        for r in &rows {
            if r.account_id != rec.account_id
                || !self
                    .current_seal(
                        seal::key_row(r, "rotation"),
                        rotation_mac_input(r),
                        &r.rotation_mac,
                    )
                    .await?
            {
                tracing::error!(key_id = %r.key_id, region = %r.region, "key rotation state failed its integrity check; refusing to change it");
                return Err(KmsError::KeyUnavailable);
            }
        }
        Ok(rows)
    }

    /// The store update that moves `old`'s rotation state to `new`'s, with `new`'s seal
    /// (returned too: pass it to [`Kms::written`] once the update committed): written only
    /// where the row still carries the seal `old` was verified with.
    pub(crate) async fn rotation_update(
        &self,
        old: &KeyRecord,
        new: &KeyRecord,
    ) -> Result<(crate::store::RotationUpdate, seal::Seal), KmsError> {
        let seal = self
            .seal_row(
                seal::key_row(new, "rotation"),
                rotation_mac_input(new),
                old.rotation_mac.as_deref(),
            )
            .await?;
        let update = crate::store::RotationUpdate {
            key_id: new.key_id,
            expected_mac: old.rotation_mac.clone().unwrap_or_default(),
            current_version: new.current_version,
            rotation_enabled: new.rotation_enabled,
            rotation_period_days: new.rotation_period_days,
            next_rotation_date: new.next_rotation_date,
            on_demand_rotations: new.on_demand_rotations,
            mrk_primary: new.mrk_primary,
            mac: seal.mac.clone(),
        };
        Ok((update, seal))
    }

    /// `seal` was written if `done`.
    fn written_if(&self, done: bool, seal: &seal::Seal) {
        if done {
            self.written(seal);
        }
    }

    /// Every seal of `seals` was written (their writes committed).
    pub(crate) fn written_all(&self, seals: &[seal::Seal]) {
        for s in seals {
            self.written(s);
        }
    }

    /// Store a key's new state with its MAC, over the state `rec` was verified with:
    /// [`KmsError::Changed`] if the row moved on meanwhile (run under [`Kms::as_current`]).
    pub(crate) async fn set_state(
        &self,
        rec: &KeyRecord,
        state: KeyState,
        deletion_date: Option<chrono::DateTime<Utc>>,
        pending_window_days: Option<i32>,
    ) -> Result<(), KmsError> {
        let seal = self
            .state_seal(rec, state, deletion_date, pending_window_days)
            .await?;
        if !self
            .keys
            .set_key_state(
                rec.key_id,
                rec.state_mac.as_deref(),
                state,
                deletion_date,
                pending_window_days,
                &seal.mac,
            )
            .await?
        {
            return Err(KmsError::Changed(rec.key_id));
        }
        self.written(&seal);
        Ok(())
    }

    /// Run `change` (which reads a key, decides, and writes with compare-and-set) and, when its
    /// write finds the row changed since it was read ([`KmsError::Changed`]: another request or
    /// node got there first, or this node's cache was behind), run it again with the key read
    /// afresh, so it decides on the row as it is now. Two racing writes therefore never both
    /// land (on the same generation: either row would then pass the replay check), and neither
    /// is lost silently: the second is re-decided, as AWS serialises them.
    pub(crate) async fn as_current<T, F, Fut>(&self, mut change: F) -> Result<T, KmsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, KmsError>>,
    {
        const ATTEMPTS: usize = 16;
        for _ in 1..ATTEMPTS {
            match change().await {
                Err(KmsError::Changed(key_id)) => {
                    tracing::debug!(%key_id, "key row changed while a change was being made; deciding again on the row as it is now");
                    self.invalidate(Some(key_id));
                }
                other => return other,
            }
        }
        match change().await {
            Err(KmsError::Changed(key_id)) => Err(KmsError::Internal(format!(
                "key {key_id} changed under every one of {ATTEMPTS} attempts to change it"
            ))),
            other => other,
        }
    }

    /// The state seal a key would have in `state` (the next generation of `rec`'s); pass it
    /// to [`Kms::written`] once it is stored.
    pub(crate) async fn state_seal(
        &self,
        rec: &KeyRecord,
        state: KeyState,
        deletion_date: Option<chrono::DateTime<Utc>>,
        pending_window_days: Option<i32>,
    ) -> Result<seal::Seal, KmsError> {
        let next = KeyRecord {
            key_state: state,
            deletion_date,
            pending_window_days,
            ..rec.clone()
        };
        self.seal_row(
            seal::key_row(rec, "state"),
            state_mac_input(&next),
            rec.state_mac.as_deref(),
        )
        .await
    }

    /// Material version `version` of a key: generated and wrapped in the token, with the row
    /// MAC that binds it to the key.
    pub(crate) async fn new_material(
        &self,
        rec: &KeyRecord,
        version: i32,
    ) -> Result<MaterialRecord, KmsError> {
        let (wrapped, root_version, public_key) = match asymmetric::kind(rec.key_spec) {
            Some(asymmetric::Kind::Pair(kind)) => {
                let (w, public, v) = self
                    .hsm
                    .generate_wrapped_key_pair(kind, asymmetric::private_use(rec.key_usage))
                    .await?;
                (w, v, Some(asymmetric::spki(kind, &public)?))
            }
            Some(asymmetric::Kind::Hmac(_, len)) => {
                let (w, v) = self.hsm.generate_wrapped_secret(len).await?;
                (w, v, None)
            }
            _ => {
                let (w, v) = self.hsm.generate_wrapped_aes256().await?;
                (w, v, None)
            }
        };
        let mut m = MaterialRecord {
            key_id: rec.key_id,
            version,
            wrapped,
            root_version: root_version as i32,
            mac: vec![],
            public_key,
        };
        m.mac = self.hsm.row_mac(material_mac_input(rec, &m)).await?;
        Ok(m)
    }

    /// A new key policy must be valid, at most 32 KB, and (unless the caller bypasses the
    /// check) still allow the caller to change it later.
    async fn check_new_policy(
        &self,
        caller: &Caller,
        rec: &KeyRecord,
        text: &str,
        bypass: bool,
    ) -> Result<(), KmsError> {
        if text.len() > MAX_KEY_POLICY_BYTES {
            return Err(KmsError::LimitExceeded(format!(
                "The key policy is {} bytes; the limit is {MAX_KEY_POLICY_BYTES} bytes.",
                text.len()
            )));
        }
        let doc = policy::parse(text, PolicyKind::Key).map_err(KmsError::MalformedPolicy)?;
        if !bypass {
            let identity = self
                .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
                .await?;
            let mut req = self.request(caller, "kms:PutKeyPolicy", Some(rec), None);
            self.add_tags(&mut req, &identity, None).await?;
            if policy::decide(
                &doc,
                &rec.account_id,
                &identity.policies,
                policy::GrantAllows::No,
                &req,
            ) != policy::Decision::Allow
            {
                return Err(KmsError::MalformedPolicy(
                    "The new key policy will not allow you to update the key policy in the future."
                        .into(),
                ));
            }
        }
        Ok(())
    }

    pub async fn put_key_policy(
        &self,
        caller: &Caller,
        key_id: &str,
        text: &str,
        bypass: bool,
    ) -> Result<(), KmsError> {
        self.as_current(|| self.put_key_policy_once(caller, key_id, text, bypass))
            .await
    }

    async fn put_key_policy_once(
        &self,
        caller: &Caller,
        key_id: &str,
        text: &str,
        bypass: bool,
    ) -> Result<(), KmsError> {
        let rec = self
            .key_for(caller, key_id, Access::to("kms:PutKeyPolicy", ANY_STATE))
            .await?;
        if rec.key_state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending deletion.",
                Self::arn(&rec)
            )));
        }
        self.check_new_policy(caller, &rec, text, bypass).await?;
        let sealed = KeyRecord {
            policy: text.to_string(),
            ..(*rec).clone()
        };
        let seal = self
            .seal_row(
                seal::key_row(&rec, "policy"),
                policy_mac_input(&sealed),
                rec.policy_mac.as_deref(),
            )
            .await?;
        if !self
            .keys
            .set_key_policy(rec.key_id, rec.policy_mac.as_deref(), text, &seal.mac)
            .await?
        {
            return Err(KmsError::Changed(rec.key_id));
        }
        self.written(&seal);
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    pub async fn get_key_policy(&self, caller: &Caller, key_id: &str) -> Result<String, KmsError> {
        let rec = self
            .key_for(caller, key_id, Access::to("kms:GetKeyPolicy", ANY_STATE))
            .await?;
        Ok(rec.policy.clone())
    }

    pub async fn list_key_policies(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<Vec<String>, KmsError> {
        self.key_for(caller, key_id, Access::to("kms:ListKeyPolicies", ANY_STATE))
            .await?;
        Ok(vec!["default".into()])
    }

    pub async fn describe_key(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<KeyMetadata, KmsError> {
        let rec = self
            .key_for(caller, key_id, Access::to("kms:DescribeKey", ANY_STATE))
            .await?;
        self.metadata(&rec).await
    }

    /// `GetKeyLastUsage`: the key's latest successful cryptographic call, from the audit trail
    /// (every call this deployment answered is in it, so tracking starts when the key was
    /// created). A key id or key ARN of the caller's own account only, as on AWS.
    pub async fn key_last_usage(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<KeyLastUsage, KmsError> {
        if matches!(keyid::parse(key_id)?, KeyRef::Alias { .. }) {
            return Err(KmsError::NotFound(format!(
                "Alias names are not supported: specify the key ID or key ARN instead of {key_id}."
            )));
        }
        let rec = self
            .key_for(caller, key_id, Access::to("kms:GetKeyLastUsage", ANY_STATE))
            .await?;
        if rec.account_id != caller.account_id {
            return Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                rec.arn()
            )));
        }
        let last = match self.audit.get() {
            Some(a) => a.last_key_use(&rec.arn()).await?,
            None => None,
        };
        Ok(KeyLastUsage {
            key_id: rec.public_id().to_string(),
            last,
            tracking_start: rec.created_at,
            created: rec.created_at,
        })
    }

    pub async fn list_keys(
        &self,
        caller: &Caller,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<ListKeysOutput, KmsError> {
        self.authorize(caller, "kms:ListKeys", None, None, &[])
            .await?;
        let after = match marker {
            None => None,
            Some(m) => Some(Uuid::parse_str(m).map_err(|_| KmsError::InvalidMarker)?),
        };
        let mut rows = self
            .keys
            .list_keys(&caller.account_id, &caller.region, after, limit as i64 + 1)
            .await?;
        let truncated = rows.len() > limit;
        rows.truncate(limit);
        let next_marker = if truncated {
            rows.last().map(|r| r.key_id.to_string())
        } else {
            None
        };
        Ok(ListKeysOutput {
            keys: rows.iter().map(|r| (r.public_id(), Self::arn(r))).collect(),
            next_marker,
        })
    }

    pub async fn encrypt(
        &self,
        caller: &Caller,
        key_id: &str,
        plaintext: Zeroizing<Vec<u8>>,
        ctx: &Context,
        dry_run: bool,
    ) -> Result<EncryptOutput, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to(
                    "kms:Encrypt",
                    &[Check::Enabled, Check::Symmetric("Encrypt")],
                )
                .context(ctx)
                .conditions(&[("kms:EncryptionAlgorithm", SYMMETRIC_DEFAULT)]),
            )
            .await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let blob = self.seal(&rec, plaintext, ctx).await?;
        Ok(EncryptOutput {
            blob,
            key_arn: Self::arn(&rec),
        })
    }

    pub async fn decrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        ctx: &Context,
        key_id: Option<&str>,
        dry_run: bool,
    ) -> Result<DecryptOutput, KmsError> {
        let (rec, plaintext) = self.open(caller, "kms:Decrypt", blob, ctx, key_id).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok(DecryptOutput {
            plaintext,
            key_arn: Self::arn(&rec),
        })
    }

    /// `DryRun` with `IGNORE_CIPHERTEXT`: the checks a real call makes on the key `key_id`
    /// names (permission with this encryption context and algorithm, key state and usage),
    /// without a ciphertext; `DryRunOperationException` if they pass.
    pub async fn dry_run_without_ciphertext(
        &self,
        caller: &Caller,
        action: &str,
        key_id: &str,
        ctx: &Context,
        algorithm: &str,
    ) -> Result<(), KmsError> {
        let rec = self.resolve(caller, key_id).await?;
        if algorithm == SYMMETRIC_DEFAULT {
            self.check_symmetric_decrypt(caller, action, &rec, ctx)
                .await?;
        } else {
            let conditions = [("kms:EncryptionAlgorithm", algorithm)];
            let access = Access::to(action, &[Check::Enabled])
                .context(ctx)
                .conditions(&conditions);
            self.admit(caller, &rec, access).await?;
            self.require_rsa_encryption(&rec, algorithm, "Decrypt")?;
            Self::refuse_context(ctx)?;
        }
        Err(KmsError::DryRun)
    }

    /// `ReEncrypt`'s destination key, checked: the caller may `ReEncryptTo` it with this
    /// context, and it is a usable symmetric encryption key.
    async fn re_encrypt_destination(
        &self,
        caller: &Caller,
        destination_key_id: &str,
        destination_ctx: &Context,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let dest = self
            .key_for(
                caller,
                destination_key_id,
                Access::to(
                    "kms:ReEncryptTo",
                    &[Check::Enabled, Check::Symmetric("ReEncrypt")],
                )
                .context(destination_ctx),
            )
            .await?;
        Ok(dest)
    }

    /// `ReEncrypt` with `DryRun` and `IGNORE_CIPHERTEXT`: both keys' checks, no ciphertext.
    pub async fn dry_run_re_encrypt_without_ciphertext(
        &self,
        caller: &Caller,
        source_key_id: &str,
        source_ctx: &Context,
        destination_key_id: &str,
        destination_ctx: &Context,
    ) -> Result<(), KmsError> {
        self.re_encrypt_destination(caller, destination_key_id, destination_ctx)
            .await?;
        self.dry_run_without_ciphertext(
            caller,
            "kms:ReEncryptFrom",
            source_key_id,
            source_ctx,
            SYMMETRIC_DEFAULT,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        source_ctx: &Context,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &Context,
        dry_run: bool,
    ) -> Result<ReEncryptOutput, KmsError> {
        let dest = self
            .re_encrypt_destination(caller, destination_key_id, destination_ctx)
            .await?;
        let (src, plaintext) = self
            .open(caller, "kms:ReEncryptFrom", blob, source_ctx, source_key_id)
            .await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let blob = self.seal(&dest, plaintext, destination_ctx).await?;
        Ok(ReEncryptOutput {
            blob,
            source_key_arn: Self::arn(&src),
            key_arn: Self::arn(&dest),
        })
    }

    /// A data key from the token's RNG, encrypted under the KMS key. The plaintext is returned
    /// to the caller (when asked for) and forgotten.
    #[allow(clippy::too_many_arguments)]
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        action: &str,
        key_id: &str,
        bytes: usize,
        ctx: &Context,
        dry_run: bool,
    ) -> Result<DataKeyOutput, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to(
                    action,
                    &[Check::Enabled, Check::Symmetric("GenerateDataKey")],
                )
                .context(ctx),
            )
            .await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let plaintext = self.hsm.random(bytes).await?;
        let blob = self
            .seal(&rec, Zeroizing::new(plaintext.to_vec()), ctx)
            .await?;
        Ok(DataKeyOutput {
            blob,
            plaintext,
            key_arn: Self::arn(&rec),
        })
    }

    pub async fn generate_random(
        &self,
        caller: &Caller,
        bytes: usize,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.authorize(caller, "kms:GenerateRandom", None, None, &[])
            .await?;
        Ok(self.hsm.random(bytes).await?)
    }
}

/// Hooks for the cargo-fuzz targets (compiled only with `--cfg fuzzing`).
#[cfg(fuzzing)]
impl Kms {
    /// A principal's authorization data as stored, and whether its MAC holds.
    pub async fn fuzz_principal(&self, arn: &str) -> Option<(PrincipalAuthz, bool)> {
        let a = self.ids.principal_authz(arn).await.unwrap()?;
        let ok = self.principal_mac_holds(arn, &a).await.unwrap();
        Some((a, ok))
    }

    /// A key's record and its current material row, as stored.
    pub async fn fuzz_row(&self, key_id: Uuid) -> (KeyRecord, MaterialRecord) {
        let rec = self.keys.key(key_id).await.unwrap().unwrap();
        let m = self
            .keys
            .material(key_id, rec.current_version)
            .await
            .unwrap()
            .unwrap();
        (rec, m)
    }

    /// Load a material row the way every request does (MAC check in the token, then unwrap),
    /// bypassing the cache. Returns whether its MAC input differs from `original`'s.
    pub async fn fuzz_load_row(
        &self,
        original: (&KeyRecord, &MaterialRecord),
        rec: &KeyRecord,
        m: &MaterialRecord,
    ) -> (bool, Result<(), KmsError>) {
        let tampered = material_mac_input(rec, m) != material_mac_input(original.0, original.1)
            || m.mac != original.1.mac;
        let r = async {
            self.verify_material(rec, m).await?;
            self.hsm
                .unwrap_aes(m.wrapped.clone(), m.root_version as u32)
                .await
                .map(drop)
                .map_err(KmsError::from)
        }
        .await;
        (tampered, r)
    }
}
