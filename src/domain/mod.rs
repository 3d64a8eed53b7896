//! The domain: one function per operation, key states, the ciphertext format, and the caches
//! that keep the hot path free of SQL, session opening and unwrapping.

pub(crate) mod alias_sets;
pub mod asymmetric;
mod authorize;
mod cache;
pub mod ciphertext;
mod create;
pub mod credentials;
pub mod custom_key_stores;
mod error;
pub mod external_key_stores;
pub mod grants;
pub mod import;
mod imported_materials;
pub mod inventory;
mod key_policy;
pub mod keyid;
pub mod lifecycle;
mod mac_inputs;
pub mod mac_keys;
mod managed_keys;
mod material;
pub mod multi_region;
pub mod nodes;
pub mod operator;
mod preamble;
pub mod reports;
pub mod root;
pub mod rotation;
mod rows;
mod seal;
pub mod simulate;
mod symmetric;
pub mod trail;
pub mod xks;

/// `kms --version` and `/healthz`: the release and the schema versions it migrates to.
pub use crate::store::VERSION;
pub(crate) use error::OnConflict;
pub use error::{KeyStoreError, KmsError};
/// The domain's result: a [`KmsError`] unless another error is named.
pub type Result<T, E = KmsError> = std::result::Result<T, E>;
pub use keyid::KeyRef;
pub(crate) use mac_inputs::{
    alias_mac_input, aliases_mac_input, attrs_mac_input, mac_input, policy_mac_input,
    rotation_mac_input, state_mac_input, tags_mac_input,
};
use mac_inputs::{key_part_rows, material_mac_input, principal_mac_input, KEY_PARTS};
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
    /// For ReEncrypt: whether its source and destination are the same key
    /// (`kms:ReEncryptOnSameKey`); set by the domain once it knows both.
    pub re_encrypt_on_same_key: Option<bool>,
}

impl Caller {
    /// Who the trail says made the call.
    pub fn identity(&self) -> crate::audit::Identity {
        let (p, a, k) = (&self.principal_arn, &self.account_id, &self.access_key_id);
        crate::audit::Identity::of(p, a, k, self.role_arn.as_ref())
    }

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
    /// `CustomKeyStoreId`: the key is created in that store's partition.
    pub custom_key_store_id: Option<String>,
    /// `XksKeyId`: the external key of a key in an external key store.
    pub xks_key_id: Option<String>,
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
    /// For a key in a custom key store: `CustomKeyStoreId` and `CloudHsmClusterId`.
    pub custom_key_store: Option<(String, Option<String>)>,
    /// For a key in an external key store: its `XksKeyId`.
    pub xks_key_id: Option<String>,
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

/// One end of a `ReEncrypt`: the key named, its encryption context and algorithm.
#[derive(Clone, Copy)]
pub struct ReEncryptEnd<'a> {
    pub key_id: &'a str,
    pub ctx: &'a Context,
    pub algorithm: crate::vocab::EncryptionAlgorithmSpec,
}

/// `ReEncrypt`'s destination key, checked for its algorithm.
pub(crate) enum Destination {
    Symmetric(Arc<KeyRecord>),
    Rsa(asymmetric::RsaKey),
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
    /// The token the handle is of: the service token, or the partition of the key's custom
    /// key store (whose keys the service token never holds).
    hsm: Hsm,
    /// The custom key store the key lives in: its handles go when it disconnects.
    store: Option<String>,
    /// A key pair's public key (SPKI DER), covered by the row MAC.
    public_key: Option<Vec<u8>>,
    lease: tokio::sync::Mutex<Lease>,
    /// The metadata the row MAC was verified against; a cached handle is only used for a key
    /// record that still says the same (the record may be reloaded from the database).
    bound_to: Binding,
    /// Imported material's `ValidTo`, from its verified import record: past it, the handle is
    /// never used, whatever becomes of the record in the database.
    valid_to: Option<chrono::DateTime<Utc>>,
    /// Imported material: when its import record is read again (the caches' maximum age
    /// after the load). The record may change on another node (imported again with an earlier
    /// `ValidTo`) or be deleted with SQL with its change's notification suppressed; past this
    /// the handle is used only once the record, as it is then, still allows it.
    recheck_at: Option<std::time::Instant>,
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
    /// How long a cached row is used before it is read again ([`cache::Cache`]).
    pub max_age: std::time::Duration,
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

tokio::task_local! {
    /// The keys a call resolved, for its event in the trail.
    static NOTED_KEYS: std::cell::RefCell<Vec<String>>;
}

/// Run `f` (one API call), noting the ARN of every key it resolves: the event of the call
/// names them (CloudTrail's `resources`) even where the request named a key by id or alias
/// and the response names none (`DisableKey`, `PutKeyPolicy`, a refused `Decrypt`…).
pub async fn noting_keys<F: std::future::Future>(f: F) -> (F::Output, Vec<String>) {
    NOTED_KEYS
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let out = f.await;
            (out, NOTED_KEYS.with(|k| k.take()))
        })
        .await
}

/// Note a key the current call resolved (nothing outside [`noting_keys`]).
fn note_key(arn: String) {
    let _ = NOTED_KEYS.try_with(|k| {
        let mut k = k.borrow_mut();
        if !k.contains(&arn) {
            k.push(arn);
        }
    });
}

pub struct Kms {
    hsm: Hsm,
    keys: Arc<dyn KeyStore>,
    meta: Mutex<cache::Cache<Uuid, Arc<KeyRecord>>>,
    live: Mutex<LruCache<(Uuid, i32), Arc<LiveMaterial>>>,
    /// One load (MAC check + unwrap) at a time per key version: concurrent first uses of a
    /// cold key wait for it instead of unwrapping the same blob N times.
    loading: Mutex<std::collections::HashMap<(Uuid, i32), LoadGate>>,
    pub credentials: credentials::Credentials,
    ids: Arc<dyn crate::store::IdentityStore>,
    /// Parsed identity policies per principal; dropped on any identity change (NOTIFY).
    identity: Mutex<cache::Cache<String, Arc<Identity>>>,
    /// Key tags (for `aws:ResourceTag/…`), dropped with the key's metadata.
    key_tags: Mutex<cache::Cache<Uuid, Arc<Vec<Tag>>>>,
    /// Parsed key policies, with the text they were parsed from.
    key_policies: Mutex<cache::Cache<Uuid, Arc<ParsedPolicy>>>,
    grant_store: Arc<dyn crate::store::GrantStore>,
    /// Grants per key; dropped when any node changes a key's grants (NOTIFY).
    grants: Mutex<cache::Cache<Uuid, Arc<Vec<crate::store::GrantRecord>>>>,
    /// Alias → key, per account and region; dropped on any alias change (NOTIFY).
    aliases: Mutex<cache::Cache<(String, String, String), Option<Uuid>>>,
    clock_offset: std::sync::atomic::AtomicI64,
    /// Wakes this node's background jobs before their next run (an on-demand rotation to
    /// complete).
    wake: tokio::sync::Notify,
    /// Key → its alias names, for `kms:ResourceAliases`.
    key_aliases: Mutex<cache::Cache<Uuid, Arc<Vec<String>>>>,
    /// This node's alias changes, one at a time: each rewrites its keys' sealed sets of
    /// aliases over the sets it read, so two at once on one key would send one of them back
    /// to read again. (Across nodes, the one that loses the race reads again.)
    alias_changes: tokio::sync::Mutex<()>,
    /// The regions this deployment serves (where multi-Region keys can be replicated).
    regions: Vec<String>,
    /// Where the service's own actions (rotation, deletion) are recorded.
    audit: std::sync::OnceLock<Arc<crate::audit::Audit>>,
    /// The deployment's own account (`account_id`, its operators'): the only one whose
    /// principals may see the operator view of every node and tenant.
    operator_account: std::sync::OnceLock<String>,
    pub(crate) limits: ResourceLimits,
    /// Custom key stores: the registered partitions, their repository, the ones logged in to.
    cks: custom_key_stores::CustomKeyStoreState,
}

/// Serialises the loading of one key version.
type LoadGate = Arc<tokio::sync::Mutex<()>>;
/// A key policy's text and what it parsed to (`None`: invalid, allows nothing).
type ParsedPolicy = (String, Option<Arc<PolicyDocument>>);

/// Key policies are limited to 32 KB.
pub const MAX_KEY_POLICY_BYTES: usize = 32 * 1024;

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n.max(1)).expect("max(1) is non-zero")
}

/// The key policy a key gets when its creator names none: AWS's text to the byte (its layout
/// too, as `GetKeyPolicy` and `ReplicaPolicy` answer it; botocore's GetKeyPolicy example).
pub fn default_key_policy(account_id: &str) -> String {
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : \"arn:aws:iam::{account_id}:root\"\n    }},\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
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
            operator_account: std::sync::OnceLock::new(),
            credentials: credentials::Credentials::new(
                hsm.clone(),
                ids.clone(),
                keys.clone(),
                sizes.signing_keys,
                sizes.max_age,
            ),
            ids,
            identity: Mutex::new(cache::Cache::new(nz(sizes.signing_keys), sizes.max_age)),
            key_policies: Mutex::new(cache::Cache::new(nz(sizes.key_metadata), sizes.max_age)),
            key_tags: Mutex::new(cache::Cache::new(nz(sizes.key_metadata), sizes.max_age)),
            grant_store,
            grants: Mutex::new(cache::Cache::new(nz(sizes.key_metadata), sizes.max_age)),
            aliases: Mutex::new(cache::Cache::new(nz(sizes.key_metadata), sizes.max_age)),
            clock_offset: std::sync::atomic::AtomicI64::new(0),
            wake: tokio::sync::Notify::new(),
            key_aliases: Mutex::new(cache::Cache::new(nz(sizes.key_metadata), sizes.max_age)),
            alias_changes: tokio::sync::Mutex::new(()),
            hsm,
            keys,
            meta: Mutex::new(cache::Cache::new(nz(sizes.key_metadata), sizes.max_age)),
            live: Mutex::new(LruCache::new(nz(sizes.key_handles))),
            loading: Mutex::new(std::collections::HashMap::new()),
            cks: Default::default(),
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
    /// The service token's manufacturer and model, as it reports them.
    pub fn token_capabilities(&self) -> (String, String) {
        let c = self.hsm.capabilities();
        (c.manufacturer.clone(), c.model.clone())
    }

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

    /// The custom key stores' repository, the partitions the settings register, and the client
    /// of external key stores' proxies.
    pub fn with_custom_key_stores(
        mut self,
        store: Arc<dyn crate::store::Store>,
        partitions: BTreeMap<String, custom_key_stores::Partition>,
        proxies: Arc<dyn external_key_stores::KeyManager>,
    ) -> Kms {
        self.cks = custom_key_stores::CustomKeyStoreState::new(store, partitions, proxies);
        self
    }

    /// `LimitExceededException` when the account already has its quota of customer managed
    /// keys in the region (counted in the database: every node's keys). A quick refusal
    /// before any token work; the insert counts again in its own transaction
    /// ([`Kms::key_quota_error`]), which is what holds under concurrent creations.
    pub(crate) async fn check_key_quota(&self, account: &str, region: &str) -> Result<()> {
        let n = self.keys.count_customer_keys(account, region).await?;
        if n >= self.limits.keys_per_region {
            return Err(self.key_quota_exceeded(n));
        }
        Ok(())
    }

    /// AWS's text, with the account's count of keys in the region (`usage`).
    fn key_quota_exceeded(&self, usage: i64) -> KmsError {
        KmsError::LimitExceeded(crate::messages::key_quota(
            self.limits.keys_per_region as usize,
            usage.max(0) as usize,
        ))
    }

    /// A store error from inserting a customer managed key: the quota counted in the insert's
    /// transaction becomes `LimitExceededException`.
    pub(crate) fn key_quota_error(&self, e: crate::store::StoreError) -> KmsError {
        match e {
            crate::store::StoreError::Conflict { constraint }
                if constraint == crate::store::QUOTA_EXCEEDED =>
            {
                // Counted in the insert's transaction: the account was at its quota.
                self.key_quota_exceeded(self.limits.keys_per_region)
            }
            other => other.into(),
        }
    }

    pub fn set_audit(&self, audit: Arc<crate::audit::Audit>) {
        let _ = self.audit.set(audit);
    }

    /// The deployment's own account (see [`Kms::may_view_operations`]).
    pub fn set_operator_account(&self, account_id: String) {
        let _ = self.operator_account.set(account_id);
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
    ) -> Result<ServiceAction> {
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
    ) -> Result<()> {
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

    /// Run this node's background jobs now rather than at their next run.
    pub(crate) fn wake_background_jobs(&self) {
        self.wake.notify_one();
    }

    /// Until [`Kms::wake_background_jobs`] is called (at once if it was since the last wait).
    pub async fn background_jobs_woken(&self) {
        self.wake.notified().await;
    }

    pub fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn ids_store(&self) -> &Arc<dyn crate::store::IdentityStore> {
        &self.ids
    }

    /// The audit public key (SubjectPublicKeyInfo DER) the trail's seals and checkpoints
    /// verify with.
    pub(crate) async fn audit_public_key(&self) -> Result<Vec<u8>> {
        self.credentials.audit_public_key().await
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
                drop((m, t));
                self.drop_live_where(|k, _| k.0 == id);
            }
            None => {
                m.clear();
                t.clear();
                drop((m, t));
                // Changes may have been missed: imported material's records are read again.
                self.drop_live_where(|_, l| l.recheck_at.is_some());
            }
        }
    }

    /// Forget the cached handles `gone` picks; each is destroyed once no request holds it,
    /// outside the cache's lock.
    fn drop_live_where(&self, gone: impl Fn(&(Uuid, i32), &LiveMaterial) -> bool) {
        let mut live = self.live.lock().unwrap();
        let keys: Vec<(Uuid, i32)> = live
            .iter()
            .filter(|(k, l)| gone(k, l))
            .map(|(k, _)| *k)
            .collect();
        let dropped: Vec<_> = keys.iter().filter_map(|k| live.pop(k)).collect();
        drop(live);
        drop(dropped);
    }

    /// An identity (identity policy or access key) changed somewhere: forget what was derived.
    pub fn invalidate_identities(&self) {
        self.identity.lock().unwrap().clear();
        self.credentials.invalidate_all();
    }

    // ----- authorization --------------------------------------------------------------------

    // ----- key resolution -------------------------------------------------------------------

    // ----- operations -----------------------------------------------------------------------
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
    ) -> (bool, Result<()>) {
        let tampered = material_mac_input(rec, m) != material_mac_input(original.0, original.1)
            || m.mac != original.1.mac;
        let r = async {
            self.verify_material(rec, m).await?;
            self.hsm
                .unwrap_key(
                    m.wrapped.clone(),
                    m.root_version as u32,
                    crate::hsm::BlobKind::Aes,
                )
                .await
                .map(drop)
                .map_err(KmsError::from)
        }
        .await;
        (tampered, r)
    }
}
