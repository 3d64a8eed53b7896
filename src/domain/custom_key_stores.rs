//! Custom key stores (`CreateCustomKeyStore`, `DescribeCustomKeyStores`,
//! `UpdateCustomKeyStore`, `DeleteCustomKeyStore`, `ConnectCustomKeyStore`,
//! `DisconnectCustomKeyStore`).
//!
//! An `AWS_CLOUDHSM` key store is a PKCS#11 partition (an HSM partition or slot, a SoftHSM2 or
//! Kryoptic token in tests) that the operator registers in the settings under a cluster id
//! (`[partitions.<cluster id>]`). Its `KeyStorePassword` is the partition's user PIN (AWS's
//! `kmsuser` password): kept only as an AES-GCM ciphertext under a fresh AES key generated in
//! the service token and stored wrapped by its root key, with the store's id as the AAD, so the
//! database holds no PIN and a ciphertext moved to another store's row does not decrypt.
//! Connecting logs the partition in (the PIN decrypted in the token, used, forgotten); its
//! state and the error of a failed connection are recorded as AWS shows them.
//!
//! Every decision read from a store's row (its account, cluster, PIN, state) is under the row's
//! seal; a row altered with SQL is refused, never used.

use super::error::KeyStoreError as E;
use super::external_key_stores::{KeyManager, ProxyTarget, XksProxyInput, EXTERNAL_KEY_STORE};
use super::{mac_input, seal, Caller, Kms, KmsError, Result};
use crate::hsm::{Hsm, HsmConfig, HsmError};
use crate::messages;
use crate::store::{CustomKeyStoreRecord, KeyRecord, StoreError};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

mod following;

/// Custom key stores per account and Region (AWS: 10).
pub const MAX_CUSTOM_KEY_STORES: i64 = 10;

/// A partition the operator registered as a cluster (`[partitions.<cluster id>]`).
#[derive(Debug, Clone)]
pub struct Partition {
    pub module: String,
    pub token_label: String,
    /// The PEM certificate a `TrustAnchorCertificate` must match, where the partition is
    /// reached over TLS; none: not applicable (the module reaches the partition itself).
    pub trust_anchor: Option<String>,
    /// Clusters holding the same partition (a backup restored, an HA peer): a store may move
    /// between them (`UpdateCustomKeyStore` with `CloudHsmClusterId`).
    pub related: Vec<String>,
    /// The accounts whose stores may use it; to any other it does not exist.
    pub accounts: Vec<String>,
}

/// The custom key stores' part of the domain: the registered partitions, the repository, and
/// the partitions this process has logged in to.
#[derive(Default)]
pub struct CustomKeyStoreState {
    store: Option<Arc<dyn crate::store::Store>>,
    partitions: BTreeMap<String, Partition>,
    open: Mutex<HashMap<String, Hsm>>,
    /// Talks to the XKS proxies of external key stores.
    pub(crate) manager: Option<Arc<dyn KeyManager>>,
    /// The external key stores connected on this node, with their proxies.
    pub(crate) proxies: Mutex<HashMap<String, Arc<ProxyTarget>>>,
    /// When this node last failed to follow a store another node connected: for a second
    /// after, its keys are refused at once (a partition that is down is not opened again for
    /// every request).
    follow_failed: Mutex<HashMap<String, std::time::Instant>>,
}

impl CustomKeyStoreState {
    pub fn new(
        store: Arc<dyn crate::store::Store>,
        partitions: BTreeMap<String, Partition>,
        manager: Arc<dyn KeyManager>,
    ) -> Self {
        CustomKeyStoreState {
            store: Some(store),
            partitions,
            open: Mutex::new(HashMap::new()),
            manager: Some(manager),
            proxies: Mutex::new(HashMap::new()),
            follow_failed: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn store(&self) -> Result<&Arc<dyn crate::store::Store>> {
        self.store
            .as_ref()
            .ok_or_else(|| KmsError::Internal("no custom key store repository".into()))
    }
}

/// What `DescribeCustomKeyStores` shows of one store.
#[derive(Debug, Clone)]
pub struct CustomKeyStoreView {
    pub id: String,
    pub name: String,
    pub store_type: String,
    pub cluster_id: Option<String>,
    pub trust_anchor: Option<String>,
    pub connection_state: String,
    pub connection_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// An external key store's proxy: endpoint, path, access key id, connectivity.
    pub xks: Option<(String, String, String, String)>,
}

/// `CreateCustomKeyStore`'s request, validated by the API layer.
pub struct NewCustomKeyStore {
    pub name: String,
    pub store_type: String,
    pub cluster_id: Option<String>,
    pub trust_anchor: Option<String>,
    pub password: Option<SecretString>,
    /// `EXTERNAL_KEY_STORE`: the proxy.
    pub xks: Option<XksProxyInput>,
}

/// `UpdateCustomKeyStore`'s request.
pub struct CustomKeyStoreUpdate {
    pub new_name: Option<String>,
    pub cluster_id: Option<String>,
    pub password: Option<SecretString>,
    /// An external key store's proxy: endpoint, path, credential (id, secret), connectivity.
    pub xks_endpoint: Option<String>,
    pub xks_path: Option<String>,
    pub xks_credential: Option<(String, SecretString)>,
    pub xks_connectivity: Option<String>,
}

pub const AWS_CLOUDHSM: &str = "AWS_CLOUDHSM";
const CONNECTED: &str = "CONNECTED";
pub(crate) const DISCONNECTED: &str = "DISCONNECTED";
const FAILED: &str = "FAILED";

/// What a store's seal covers: every column but the last connection's error code.
pub(super) fn store_mac_input(r: &CustomKeyStoreRecord) -> Vec<u8> {
    let none = "\u{0}none".as_bytes();
    let version = r.password_root_version.unwrap_or(0).to_be_bytes();
    let created = r.created_at.timestamp_micros().to_be_bytes();
    mac_input(
        "kms.custom-key-store.v1",
        &[
            r.custom_key_store_id.as_bytes(),
            r.account_id.as_bytes(),
            r.region.as_bytes(),
            r.name.as_bytes(),
            r.store_type.as_bytes(),
            r.cluster_id.as_deref().map_or(none, str::as_bytes),
            r.trust_anchor.as_deref().map_or(none, str::as_bytes),
            r.password_key.as_deref().unwrap_or(none),
            &version,
            r.password_ciphertext.as_deref().unwrap_or(none),
            r.connection_state.as_bytes(),
            &created,
            r.xks_uri_endpoint.as_deref().map_or(none, str::as_bytes),
            r.xks_uri_path.as_deref().map_or(none, str::as_bytes),
            r.xks_access_key_id.as_deref().map_or(none, str::as_bytes),
            r.xks_connectivity.as_deref().map_or(none, str::as_bytes),
        ],
    )
}

/// AWS's `ConnectionErrorCode` for a partition that could not be logged in to.
fn connection_error(e: &HsmError) -> &'static str {
    match e {
        HsmError::TokenNotFound { .. } | HsmError::ModuleLoad { .. } => "NETWORK_ERRORS",
        e if e.is_pin_incorrect() => "INVALID_CREDENTIALS",
        e if e.is_pin_locked() => "USER_LOCKED_OUT",
        _ => "INTERNAL_ERROR",
    }
}

impl Kms {
    /// `CreateCustomKeyStore`: a store of the caller's account and Region over a registered
    /// partition, disconnected.
    pub async fn create_custom_key_store(
        &self,
        caller: &Caller,
        input: NewCustomKeyStore,
    ) -> Result<String> {
        self.authorize(caller, "kms:CreateCustomKeyStore", None, None, &[])
            .await?;
        if input.store_type == EXTERNAL_KEY_STORE {
            return self.create_external_key_store(caller, input).await;
        }
        let cluster = input.cluster_id.unwrap_or_default();
        let partition = self.partition(&caller.account_id, &cluster)?;
        self.check_trust_anchor(partition, input.trust_anchor.as_deref())?;
        let cks = self.cks.store()?;
        // A retry of the same request answers the store it created (AWS: idempotent while
        // the store is disconnected and every value is the same).
        for r in cks
            .custom_key_stores(&caller.account_id, &caller.region)
            .await?
        {
            if r.name == input.name
                && r.cluster_id.as_deref() == Some(&cluster)
                && r.connection_state == DISCONNECTED
                && r.trust_anchor == input.trust_anchor
            {
                let verified = self.verified_store(r).await?;
                if let Some(pin) = &input.password {
                    if self.store_pin(&verified).await?.as_slice()
                        == secrecy::ExposeSecret::expose_secret(pin).as_bytes()
                    {
                        return Ok(verified.custom_key_store_id);
                    }
                }
            }
        }
        let id = self.new_custom_key_store_id().await?;
        let (password_key, password_root_version, password_ciphertext) = self
            .seal_pin(&id, input.password.as_ref().expect("validated: required"))
            .await?;
        let mut rec = self.new_store_row(caller, &id, input.name, AWS_CLOUDHSM);
        rec.cluster_id = Some(cluster.clone());
        rec.trust_anchor = input.trust_anchor;
        rec.password_key = Some(password_key);
        rec.password_root_version = Some(password_root_version);
        rec.password_ciphertext = Some(password_ciphertext);
        self.insert_store(rec, &cluster).await
    }

    /// A new store's row, disconnected, with nothing of its type's yet (unsealed).
    fn new_store_row(
        &self,
        caller: &Caller,
        id: &str,
        name: String,
        store_type: &str,
    ) -> CustomKeyStoreRecord {
        CustomKeyStoreRecord {
            custom_key_store_id: id.to_string(),
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            name,
            store_type: store_type.into(),
            cluster_id: None,
            trust_anchor: None,
            password_key: None,
            password_root_version: None,
            password_ciphertext: None,
            connection_state: DISCONNECTED.into(),
            connection_error: None,
            xks_uri_endpoint: None,
            xks_uri_path: None,
            xks_access_key_id: None,
            xks_connectivity: None,
            created_at: self.now(),
            mac: vec![],
        }
    }

    /// Seal a new store's row and insert it (the account's quota counted with the insert);
    /// its name, or its `cluster` (empty: none), already taken is AWS's exception. Returns
    /// its id.
    async fn insert_store(&self, mut rec: CustomKeyStoreRecord, cluster: &str) -> Result<String> {
        let id = rec.custom_key_store_id.clone();
        let seal = self
            .seal_row(seal::custom_key_store_row(&id), store_mac_input(&rec), None)
            .await?;
        rec.mac = seal.mac.clone();
        match self
            .cks
            .store()?
            .insert_custom_key_store(&rec, MAX_CUSTOM_KEY_STORES)
            .await
        {
            Ok(()) => self.written(&seal),
            Err(e) => return Err(self.store_conflict(e, &rec.name, cluster)),
        }
        Ok(id)
    }

    /// `CreateCustomKeyStore` of an `EXTERNAL_KEY_STORE`.
    async fn create_external_key_store(
        &self,
        caller: &Caller,
        input: NewCustomKeyStore,
    ) -> Result<String> {
        let xks = input.xks.ok_or_else(|| {
            KmsError::Validation(
                "An external key store requires XksProxyUriEndpoint, XksProxyUriPath, XksProxyAuthenticationCredential and XksProxyConnectivity.".into(),
            )
        })?;
        let id = self.new_custom_key_store_id().await?;
        let mut rec = self.new_store_row(caller, &id, input.name, EXTERNAL_KEY_STORE);
        self.new_external_store(&mut rec, xks).await?;
        self.insert_store(rec, "").await
    }

    /// `DescribeCustomKeyStores`: the caller's stores in the Region, or the one named by id
    /// or by name.
    pub async fn describe_custom_key_stores(
        &self,
        caller: &Caller,
        id: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<CustomKeyStoreView>> {
        self.authorize(caller, "kms:DescribeCustomKeyStores", None, None, &[])
            .await?;
        let cks = self.cks.store()?;
        let mut out = Vec::new();
        for r in cks
            .custom_key_stores(&caller.account_id, &caller.region)
            .await?
        {
            if id.is_some_and(|i| i != r.custom_key_store_id) || name.is_some_and(|n| n != r.name) {
                continue;
            }
            let r = self.verified_store(r).await?;
            out.push(CustomKeyStoreView {
                id: r.custom_key_store_id,
                name: r.name,
                store_type: r.store_type,
                cluster_id: r.cluster_id,
                trust_anchor: r.trust_anchor,
                connection_state: r.connection_state,
                connection_error: r.connection_error,
                created_at: r.created_at,
                xks: r.xks_uri_endpoint.map(|e| {
                    (
                        e,
                        r.xks_uri_path.unwrap_or_default(),
                        r.xks_access_key_id.unwrap_or_default(),
                        r.xks_connectivity.unwrap_or_default(),
                    )
                }),
            });
        }
        if out.is_empty() && (id.is_some() || name.is_some()) {
            return Err(not_found(id, name));
        }
        Ok(out)
    }

    /// `UpdateCustomKeyStore`: a new name, PIN or (related) cluster, while disconnected.
    pub async fn update_custom_key_store(
        &self,
        caller: &Caller,
        id: &str,
        update: CustomKeyStoreUpdate,
    ) -> Result<()> {
        self.authorize(caller, "kms:UpdateCustomKeyStore", None, None, &[])
            .await?;
        let old = self.store_of(caller, id).await?;
        if old.store_type == EXTERNAL_KEY_STORE {
            return self.update_external_key_store(old, update).await;
        }
        if update.xks_endpoint.is_some()
            || update.xks_path.is_some()
            || update.xks_credential.is_some()
            || update.xks_connectivity.is_some()
        {
            return Err(KmsError::Validation(
                "The XksProxy members are for external key stores (EXTERNAL_KEY_STORE).".into(),
            ));
        }
        if old.connection_state != DISCONNECTED {
            return Err(KmsError::KeyStore(
                E::InvalidState,
                messages::key_store_not_disconnected("UpdateCustomKeyStore"),
            ));
        }
        let mut rec = old.clone();
        if let Some(cluster) = update.cluster_id {
            let current = old.cluster_id.clone().unwrap_or_default();
            if cluster != current {
                let account = &caller.account_id;
                let to = self.partition(account, &cluster)?;
                let from = self.partition(account, &current);
                let related = to.related.contains(&current)
                    || from.is_ok_and(|p| p.related.contains(&cluster));
                if !related {
                    return Err(KmsError::KeyStore(
                        E::ClusterNotRelated,
                        messages::cluster_not_related(&cluster),
                    ));
                }
            }
            rec.cluster_id = Some(cluster);
        }
        if let Some(name) = update.new_name {
            rec.name = name;
        }
        if let Some(pin) = &update.password {
            let (k, v, c) = self.seal_pin(id, pin).await?;
            (
                rec.password_key,
                rec.password_root_version,
                rec.password_ciphertext,
            ) = (Some(k), Some(v), Some(c));
        }
        rec.connection_error = None;
        self.rewrite_store(&old, rec).await
    }

    /// `DeleteCustomKeyStore`: a disconnected store that holds no key.
    pub async fn delete_custom_key_store(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, "kms:DeleteCustomKeyStore", None, None, &[])
            .await?;
        let rec = self.store_of(caller, id).await?;
        if rec.connection_state != DISCONNECTED {
            return Err(KmsError::KeyStore(
                E::InvalidState,
                messages::key_store_not_disconnected("DeleteCustomKeyStore"),
            ));
        }
        let cks = self.cks.store()?;
        match cks.delete_custom_key_store(id, &rec.mac).await {
            Ok(()) => {
                self.removed(&seal::custom_key_store_row(id), &rec.mac);
                Ok(())
            }
            Err(StoreError::Conflict { constraint })
                if constraint == "custom_key_store_has_keys" =>
            {
                Err(KmsError::KeyStore(
                    E::HasCmks,
                    messages::key_store_has_keys(id),
                ))
            }
            Err(StoreError::Conflict { .. }) => Err(KmsError::changed(id, "is being updated")),
            Err(e) => Err(e.into()),
        }
    }

    /// `ConnectCustomKeyStore`: log in to the store's partition with its PIN. The outcome is
    /// recorded as AWS shows it: `CONNECTED`, or `FAILED` with the `ConnectionErrorCode` of
    /// what went wrong (the call itself succeeds, as AWS's does). A connected store stays so.
    pub async fn connect_custom_key_store(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, "kms:ConnectCustomKeyStore", None, None, &[])
            .await?;
        let rec = self.store_of(caller, id).await?;
        match rec.connection_state.as_str() {
            CONNECTED => {
                if !self.connected_here(id) {
                    // Another node connected it: this one logs in too.
                    let _ = self.log_in_following(&rec).await;
                }
                return Ok(());
            }
            DISCONNECTED => {}
            _ => {
                return Err(KmsError::KeyStore(
                    E::InvalidState,
                    messages::key_store_cannot_connect(&rec.connection_state),
                ))
            }
        }
        let mut next = rec.clone();
        match self.log_in(&rec).await {
            Ok(()) => {
                next.connection_state = CONNECTED.into();
                next.connection_error = None;
            }
            Err(code) => {
                next.connection_state = FAILED.into();
                next.connection_error = Some(code.into());
            }
        }
        self.rewrite_store(&rec, next).await
    }

    /// `DisconnectCustomKeyStore`: log out of the store's partition (on this node at once; on
    /// the others at their next use of it).
    pub async fn disconnect_custom_key_store(&self, caller: &Caller, id: &str) -> Result<()> {
        self.authorize(caller, "kms:DisconnectCustomKeyStore", None, None, &[])
            .await?;
        let rec = self.store_of(caller, id).await?;
        if rec.connection_state == DISCONNECTED {
            return Err(KmsError::KeyStore(
                E::InvalidState,
                messages::key_store_cannot_disconnect(&rec.connection_state),
            ));
        }
        let mut next = rec.clone();
        next.connection_state = DISCONNECTED.into();
        next.connection_error = None;
        self.rewrite_store(&rec, next).await?;
        self.close_partition(id);
        Ok(())
    }

    /// The token a key's material lives in: the service token, or the partition of its custom
    /// key store, logged in on this node (again, if another node connected it); a store that is
    /// not connected makes its keys unusable (`KMSInvalidStateException`, as AWS).
    pub(crate) async fn token_of(&self, rec: &KeyRecord) -> Result<Hsm> {
        let Some(id) = &rec.custom_key_store_id else {
            return Ok(self.hsm.clone());
        };
        if rec.xks_key_id.is_some() {
            // An external key store's key: its own material is the service token's; the store
            // must be connected all the same.
            self.proxy_of(rec).await?;
            return Ok(self.hsm.clone());
        }
        if let Some(h) = self.open_partition(id) {
            return Ok(h);
        }
        let unavailable = || {
            KmsError::InvalidState(format!(
                "{} is unavailable because its custom key store is not connected.",
                rec.arn()
            ))
        };
        let store = self.cks.store()?;
        let row = match store.custom_key_store(id).await? {
            Some(r) => self.verified_store(r).await?,
            None => return Err(unavailable()),
        };
        if row.connection_state != CONNECTED {
            return Err(unavailable());
        }
        let recently_failed = self
            .cks
            .follow_failed
            .lock()
            .unwrap()
            .get(id)
            .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1));
        if recently_failed {
            return Err(unavailable());
        }
        if self.log_in_following(&row).await.is_err() {
            let now = std::time::Instant::now();
            self.cks
                .follow_failed
                .lock()
                .unwrap()
                .insert(id.clone(), now);
            return Err(unavailable());
        }
        self.cks.follow_failed.lock().unwrap().remove(id);
        self.open_partition(id).ok_or_else(unavailable)
    }

    /// `CreateKey` with `CustomKeyStoreId`: the caller's store, connected, and its partition.
    pub(crate) async fn store_for_new_key(&self, caller: &Caller, id: &str) -> Result<Hsm> {
        self.connected_store(caller, id, "CreateKey").await
    }

    /// `GenerateRandom` with `CustomKeyStoreId`: `n` bytes from the store's partition.
    pub async fn random_from_store(
        &self,
        caller: &Caller,
        id: &str,
        n: usize,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.authorize(caller, "kms:GenerateRandom", None, None, &[])
            .await?;
        // AWS: "If you specify the ID of an external key store, GenerateRandom throws an
        // UnsupportedOperationException."
        if self.store_of(caller, id).await?.store_type == EXTERNAL_KEY_STORE {
            let m = format!("{id} is an external key store, which GenerateRandom does not take.");
            return Err(KmsError::UnsupportedOperation(m));
        }
        let h = self.connected_store(caller, id, "GenerateRandom").await?;
        Ok(h.random(n).await?)
    }

    /// The partition of the caller's store `id`, which must be connected (logged in on this
    /// node now if another node connected it): `CustomKeyStoreInvalidStateException` naming
    /// `op` otherwise.
    async fn connected_store(&self, caller: &Caller, id: &str, op: &str) -> Result<Hsm> {
        let rec = self.store_of(caller, id).await?;
        let not_connected =
            || KmsError::KeyStore(E::InvalidState, messages::key_store_not_connected(op));
        if rec.connection_state != CONNECTED {
            return Err(not_connected());
        }
        if self.open_partition(id).is_none() {
            self.log_in_following(&rec)
                .await
                .map_err(|_| not_connected())?;
        }
        self.open_partition(id).ok_or_else(not_connected)
    }

    /// What `DescribeKey` shows of a key's custom key store: (its id, its cluster), and
    /// whether it is connected (its keys are `Unavailable` otherwise).
    pub(crate) async fn key_store_view(
        &self,
        rec: &KeyRecord,
    ) -> Result<Option<(String, Option<String>, bool)>> {
        let Some(id) = &rec.custom_key_store_id else {
            return Ok(None);
        };
        let store = self.cks.store()?;
        Ok(Some(match store.custom_key_store(id).await? {
            Some(r) => {
                let r = self.verified_store(r).await?;
                let connected = r.connection_state == CONNECTED;
                (id.clone(), r.cluster_id, connected)
            }
            None => (id.clone(), None, false),
        }))
    }

    /// Log out of store `id`'s partition on this node: its keys' cached handles go first.
    fn close_partition(&self, id: &str) {
        self.drop_live_where(|_, l| l.store.as_deref() == Some(id));
        let proxy = self.cks.proxies.lock().unwrap().remove(id).is_some();
        if self.cks.open.lock().unwrap().remove(id).is_some() || proxy {
            tracing::info!(store = %id, "custom key store disconnected on this node");
        }
    }

    /// Root key rotation: the partition of a key's custom key store, with its root key of the
    /// service token's current version (created there if this is the first blob moved to it).
    pub(crate) async fn partition_at_current_root(&self, rec: &KeyRecord) -> Result<Hsm> {
        let token = self.token_of(rec).await?;
        let version = self.hsm.root_version()?;
        let id = rec.custom_key_store_id.clone().unwrap_or_default();
        self.use_partition_root(&token, &id, version).await?;
        Ok(token)
    }

    /// Make `token`, custom key store `id`'s partition, wrap under its root key of `version`:
    /// found, or created under the database's lock on the store's partition. Without it the rotation
    /// command and a node's re-wrap job (or two nodes connecting at once) could each find none
    /// and each create one, and the partition would hold two keys of one label.
    async fn use_partition_root(
        &self,
        token: &Hsm,
        id: &str,
        version: u32,
    ) -> std::result::Result<(), HsmError> {
        let in_token = |create: bool| {
            let t = token.clone();
            async move {
                tokio::task::spawn_blocking(move || t.partition_root(version, create))
                    .await
                    .map_err(|e| HsmError::Other(e.to_string()))?
            }
        };
        if in_token(false).await? {
            return Ok(());
        }
        let unavailable = |e: crate::store::StoreError| HsmError::Other(e.to_string());
        let store = self
            .cks
            .store()
            .map_err(|e| HsmError::Other(e.to_string()))?;
        let lock = store
            .token_key_lock(&format!("partition {id}"))
            .await
            .map_err(unavailable)?;
        let made = in_token(true).await;
        lock.release().await.map_err(unavailable)?;
        made.map(|_| ())
    }

    /// Log in to a store that another node connected (its row was read as `CONNECTED`), then
    /// check that it still is: a disconnection that committed meanwhile — whose announcement
    /// this node may have followed before this login finished — logs this node out again.
    pub(crate) async fn log_in_following(
        &self,
        rec: &CustomKeyStoreRecord,
    ) -> std::result::Result<(), &'static str> {
        self.log_in(rec).await?;
        match self.connected_row(&rec.custom_key_store_id).await {
            Ok(Some(_)) => Ok(()),
            _ => {
                self.close_partition(&rec.custom_key_store_id);
                Err("INTERNAL_ERROR")
            }
        }
    }

    /// Whether this node is connected to store `id` (its partition logged in, its proxy
    /// answering).
    fn connected_here(&self, id: &str) -> bool {
        self.open_partition(id).is_some() || self.cks.proxies.lock().unwrap().contains_key(id)
    }

    /// Store `id`'s row, verified, if it is recorded connected.
    pub(crate) async fn connected_row(&self, id: &str) -> Result<Option<CustomKeyStoreRecord>> {
        let store = self.cks.store()?;
        Ok(match store.custom_key_store(id).await? {
            Some(r) => {
                Some(self.verified_store(r).await?).filter(|r| r.connection_state == CONNECTED)
            }
            None => None,
        })
    }

    /// The partition this process has logged in to for store `id`, if any.
    pub(crate) fn open_partition(&self, id: &str) -> Option<Hsm> {
        self.cks.open.lock().unwrap().get(id).cloned()
    }

    /// Log in to the partition of `rec` (its PIN decrypted in the service token) and make sure
    /// it holds its own root key; the `ConnectionErrorCode` of what failed otherwise.
    pub(crate) async fn log_in(
        &self,
        rec: &CustomKeyStoreRecord,
    ) -> std::result::Result<(), &'static str> {
        if rec.store_type == EXTERNAL_KEY_STORE {
            let target = match self.proxy_target(rec).await {
                Ok(t) => t,
                Err(_) => return Err("INTERNAL_ERROR"),
            };
            self.proxy_health(&target, "ConnectCustomKeyStore")
                .await
                .map_err(|e| e.connection_error())?;
            self.cks
                .proxies
                .lock()
                .unwrap()
                .insert(rec.custom_key_store_id.clone(), Arc::new(target));
            return Ok(());
        }
        let cluster = rec.cluster_id.clone().unwrap_or_default();
        let Ok(partition) = self.partition(&rec.account_id, &cluster) else {
            tracing::error!(store = %rec.custom_key_store_id, cluster = %cluster, account = %rec.account_id, "the store's cluster is not registered for its account (the settings' [[partitions]] accounts): it cannot connect");
            return Err("CLUSTER_NOT_FOUND");
        };
        let pin = match self.store_pin(rec).await {
            Ok(pin) => pin,
            Err(e) => {
                tracing::error!(error = ?e, store = %rec.custom_key_store_id, "the custom key store's PIN could not be decrypted");
                return Err("INTERNAL_ERROR");
            }
        };
        let pin = SecretString::from(String::from_utf8_lossy(&pin).into_owned());
        let cfg = HsmConfig {
            strict_login: true,
            module: partition.module.clone(),
            token_label: partition.token_label.clone(),
            failover_labels: vec![],
            pin,
            pin_file: None,
            pool_size: 2,
            inline_calls: false,
            oaep_sha256_import_in_service: false,
        };
        let Ok(root_version) = self.hsm.root_version() else {
            return Err("INTERNAL_ERROR");
        };
        // A token that another process is writing to can be missing from one slot list (SoftHSM
        // reads its files again on every C_GetSlotList): asked twice more before it is lost.
        let open = move || {
            let mut again = 2;
            loop {
                match Hsm::open(&cfg) {
                    Err(HsmError::TokenNotFound { .. }) if again > 0 => {
                        again -= 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    opened => return opened,
                }
            }
        };
        let opened = match tokio::task::spawn_blocking(open).await {
            Ok(Ok(hsm)) => self
                .use_partition_root(&hsm, &rec.custom_key_store_id, root_version)
                .await
                .map(|()| hsm),
            Ok(Err(e)) => Err(e),
            Err(_) => return Err("INTERNAL_ERROR"),
        };
        match opened {
            Ok(hsm) => {
                tracing::info!(store = %rec.custom_key_store_id, cluster = %cluster, "custom key store connected");
                self.cks
                    .open
                    .lock()
                    .unwrap()
                    .insert(rec.custom_key_store_id.clone(), hsm);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(store = %rec.custom_key_store_id, cluster = %cluster, error = %e, "custom key store connection failed");
                Err(connection_error(&e))
            }
        }
    }

    /// The registered partition of cluster `id` that `account`'s stores may use:
    /// `CloudHsmClusterNotFoundException` if the settings name none, or give it to other
    /// accounts only (the same answer, so that no account learns of another's partitions).
    fn partition(&self, account: &str, id: &str) -> Result<&Partition> {
        self.cks
            .partitions
            .get(id)
            .filter(|p| p.accounts.iter().any(|a| a == account))
            .ok_or_else(|| KmsError::KeyStore(E::ClusterNotFound, messages::cluster_not_found(id)))
    }

    fn check_trust_anchor(&self, p: &Partition, given: Option<&str>) -> Result<()> {
        let norm = |s: &str| s.split_whitespace().collect::<String>();
        match (&p.trust_anchor, given) {
            (Some(want), Some(got)) if norm(want) != norm(got) => Err(KmsError::KeyStore(
                E::IncorrectTrustAnchor,
                messages::INCORRECT_TRUST_ANCHOR.into(),
            )),
            _ => Ok(()),
        }
    }

    /// The caller's store `id`, verified: `CustomKeyStoreNotFoundException` if the account has
    /// none of that id in the Region.
    pub(crate) async fn store_of(&self, caller: &Caller, id: &str) -> Result<CustomKeyStoreRecord> {
        let cks = self.cks.store()?;
        match cks.custom_key_store(id).await? {
            Some(r) if r.account_id == caller.account_id && r.region == caller.region => {
                self.verified_store(r).await
            }
            _ => Err(not_found(Some(id), None)),
        }
    }

    /// The row as the service wrote it, or `KeyUnavailable` (an altered row is never used).
    pub(super) async fn verified_store(
        &self,
        r: CustomKeyStoreRecord,
    ) -> Result<CustomKeyStoreRecord> {
        let row = seal::custom_key_store_row(&r.custom_key_store_id);
        if self
            .current_seal(row.clone(), store_mac_input(&r), &Some(r.mac.clone()))
            .await?
        {
            return Ok(r);
        }
        // A row read just before a change committed is behind the trail that change reached a
        // moment later: read again, the trail first, then the row (backing off, 5 to 40 ms).
        // An older row put back stays behind however often it is read.
        let store = self.cks.store()?;
        for attempt in 0..4u32 {
            tokio::time::sleep(std::time::Duration::from_millis(5 << attempt)).await;
            let trail = self.trail_of(std::slice::from_ref(&row)).await?;
            let Some(again) = store.custom_key_store(&r.custom_key_store_id).await? else {
                break;
            };
            let input = store_mac_input(&again);
            if self
                .current_under(row.clone(), input, &Some(again.mac.clone()), &trail)
                .await?
            {
                return Ok(again);
            }
        }
        tracing::error!(store = %r.custom_key_store_id, "a custom key store row failed its integrity check; refusing it");
        Err(KmsError::KeyUnavailable)
    }

    /// Write `next` in place of `old` (as verified), sealed as the row's next generation.
    pub(crate) async fn rewrite_store(
        &self,
        old: &CustomKeyStoreRecord,
        mut next: CustomKeyStoreRecord,
    ) -> Result<()> {
        let row = seal::custom_key_store_row(&old.custom_key_store_id);
        let seal = self
            .seal_row(row, store_mac_input(&next), Some(&old.mac))
            .await?;
        next.mac = seal.mac.clone();
        let cks = self.cks.store()?;
        match cks.update_custom_key_store(&next, &old.mac).await {
            Ok(()) => {
                self.written(&seal);
                Ok(())
            }
            Err(e) => Err(self.store_conflict(
                e,
                &next.name,
                next.cluster_id.as_deref().unwrap_or_default(),
            )),
        }
    }

    fn store_conflict(&self, e: StoreError, name: &str, cluster: &str) -> KmsError {
        match e {
            StoreError::Conflict { constraint } => match constraint.as_str() {
                crate::store::QUOTA_EXCEEDED => {
                    KmsError::LimitExceeded(messages::CUSTOM_KEY_STORE_LIMIT.into())
                }
                "custom_key_stores_name" => {
                    KmsError::KeyStore(E::NameInUse, messages::key_store_name_in_use(name))
                }
                "custom_key_stores_cluster" => {
                    KmsError::KeyStore(E::ClusterInUse, messages::cluster_in_use(cluster))
                }
                "custom_key_stores_xks_proxy" => KmsError::KeyStore(
                    E::XksProxyUriInUse,
                    "The request was rejected because the concatenation of the XksProxyUriEndpoint and XksProxyUriPath is already associated with another external key store in this AWS Region.".into(),
                ),
                _ => KmsError::Conflict("The custom key store is being updated; try again.".into()),
            },
            e => e.into(),
        }
    }

    /// `cks-` and 17 hex digits from the token's RNG, as AWS writes them.
    async fn new_custom_key_store_id(&self) -> Result<String> {
        let r = self.hsm.random(9).await?;
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        Ok(format!("cks-{}", &hex[..17]))
    }

    /// The PIN sealed for store `id`: (AES key wrapped by the root key, its root version, IV
    /// and ciphertext under it with the store id as AAD).
    pub(crate) async fn seal_pin(
        &self,
        id: &str,
        pin: &SecretString,
    ) -> Result<(Vec<u8>, i32, Vec<u8>)> {
        let (wrapped, version) = self.hsm.generate_wrapped_aes256().await?;
        let key = self
            .hsm
            .unwrap_key(wrapped.clone(), version, crate::hsm::BlobKind::Aes)
            .await?;
        let iv: [u8; 12] = self.hsm.random(12).await?[..12]
            .try_into()
            .expect("12 bytes");
        let plain = Zeroizing::new(
            secrecy::ExposeSecret::expose_secret(pin)
                .as_bytes()
                .to_vec(),
        );
        let ct = self.hsm.gcm_encrypt(key, iv, pin_aad(id), plain).await?;
        let mut out = iv.to_vec();
        out.extend_from_slice(&ct);
        Ok((wrapped, version as i32, out))
    }

    /// The PIN of a verified store row, decrypted in the service token.
    pub(crate) async fn store_pin(&self, r: &CustomKeyStoreRecord) -> Result<Zeroizing<Vec<u8>>> {
        let (Some(wrapped), Some(version), Some(ct)) = (
            r.password_key.clone(),
            r.password_root_version,
            r.password_ciphertext.as_deref(),
        ) else {
            return Err(KmsError::Internal(
                "a custom key store without a PIN".into(),
            ));
        };
        if ct.len() < 12 + 16 {
            return Err(KmsError::KeyUnavailable);
        }
        let key = self
            .hsm
            .unwrap_key(wrapped, version as u32, crate::hsm::BlobKind::Aes)
            .await?;
        let iv: [u8; 12] = ct[..12].try_into().expect("12 bytes");
        Ok(self
            .hsm
            .gcm_decrypt(key, iv, pin_aad(&r.custom_key_store_id), ct[12..].to_vec())
            .await?)
    }
}

fn pin_aad(id: &str) -> Vec<u8> {
    mac_input("kms.custom-key-store-pin.v1", &[id.as_bytes()])
}

fn not_found(id: Option<&str>, name: Option<&str>) -> KmsError {
    KmsError::KeyStore(E::NotFound, messages::key_store_not_found(id, name))
}
