//! External key stores (`EXTERNAL_KEY_STORE` custom key stores): this service as a client of an
//! XKS proxy, as AWS KMS is one. A key in such a store has two backing keys, as on AWS: its own
//! material in the service token, and the external key the proxy holds (`XksKeyId`). Every
//! ciphertext is encrypted twice — by the service (a v1 blob), then by the proxy (the outer
//! layer, `ciphertext::Outer`, bound to the key by its AAD) — so neither side alone can
//! decrypt it. The proxy's answers are checked as the specification requires; a slow or
//! failing proxy is a clear error (`KMSInvalidStateException` for cryptographic calls, an
//! `XksProxy…Exception` for the store's management), never a hang (the client's timeout).

use super::custom_key_stores::{CustomKeyStoreUpdate, DISCONNECTED};
use super::error::KeyStoreError as E;
use super::{ciphertext, Kms, KmsError, Result};
use crate::encoding::{b64, unb64};
use crate::messages;
use crate::store::{CustomKeyStoreRecord, KeyRecord};
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

pub const EXTERNAL_KEY_STORE: &str = "EXTERNAL_KEY_STORE";

/// An XKS proxy as a store names it, with its credential (decrypted in the token when the
/// store connects, kept in memory while it is connected).
pub struct ProxyTarget {
    pub uri_endpoint: String,
    pub uri_path: String,
    pub access_key_id: String,
    pub secret: SecretString,
    pub region: String,
}

/// What went wrong talking to a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    NotReachable,
    TimedOut,
    InvalidTls,
    InvalidResponse,
    InvalidConfiguration,
    AuthenticationFailed,
    AccessDenied,
    KeyNotFound,
    InvalidCiphertext,
    KeyInvalidState,
    KeyInvalidUsage,
    Failed(u16),
}

impl ProxyError {
    /// AWS's `ConnectionErrorCode` for a store whose proxy answered so.
    pub fn connection_error(self) -> &'static str {
        match self {
            ProxyError::NotReachable => "XKS_PROXY_NOT_REACHABLE",
            ProxyError::TimedOut => "XKS_PROXY_TIMED_OUT",
            ProxyError::InvalidTls => "XKS_PROXY_INVALID_TLS_CONFIGURATION",
            ProxyError::AuthenticationFailed | ProxyError::AccessDenied => {
                "XKS_PROXY_ACCESS_DENIED"
            }
            ProxyError::InvalidConfiguration => "XKS_PROXY_INVALID_CONFIGURATION",
            _ => "XKS_PROXY_INVALID_RESPONSE",
        }
    }

    /// The exception a store's creation answers for it.
    pub(crate) fn exception(self) -> E {
        match self {
            ProxyError::NotReachable | ProxyError::TimedOut | ProxyError::InvalidTls => {
                E::XksProxyUriUnreachable
            }
            ProxyError::AuthenticationFailed | ProxyError::AccessDenied => {
                E::XksProxyIncorrectAuthenticationCredential
            }
            ProxyError::InvalidConfiguration => E::XksProxyInvalidConfiguration,
            _ => E::XksProxyInvalidResponse,
        }
    }
}

/// Talks to XKS proxies (`crate::xks::client`): the domain never sees HTTP.
#[async_trait::async_trait]
pub trait KeyManager: Send + Sync {
    /// POST `body` to `{uri_endpoint}{uri_path}/{path}`, signed; the JSON answer of a 200.
    async fn call(
        &self,
        t: &ProxyTarget,
        path: &str,
        body: Value,
    ) -> std::result::Result<Value, ProxyError>;
}

/// `CreateCustomKeyStore`'s proxy members.
pub struct XksProxyInput {
    pub uri_endpoint: String,
    pub uri_path: String,
    pub access_key_id: String,
    pub secret: SecretString,
    pub connectivity: String,
}

/// The `requestMetadata` of a call for `op`.
fn request_metadata(op: &str, key_arn: Option<&str>, principal: &str) -> Value {
    let mut m = json!({
        "awsPrincipalArn": principal,
        "kmsOperation": op,
        "kmsRequestId": uuid::Uuid::new_v4().to_string(),
    });
    if let Some(arn) = key_arn {
        m["kmsKeyArn"] = json!(arn);
    }
    m
}

impl Kms {
    fn key_manager(&self) -> Result<&Arc<dyn KeyManager>> {
        self.cks
            .manager
            .as_ref()
            .ok_or_else(|| KmsError::Internal("no XKS proxy client".into()))
    }

    /// The proxy a store row names, its credential decrypted in the token.
    pub(crate) async fn proxy_target(&self, r: &CustomKeyStoreRecord) -> Result<ProxyTarget> {
        let secret = self.store_pin(r).await?;
        Ok(ProxyTarget {
            uri_endpoint: r.xks_uri_endpoint.clone().unwrap_or_default(),
            uri_path: r.xks_uri_path.clone().unwrap_or_default(),
            access_key_id: r.xks_access_key_id.clone().unwrap_or_default(),
            secret: SecretString::from(String::from_utf8_lossy(&secret).into_owned()),
            region: r.region.clone(),
        })
    }

    /// The proxy's health (`GetHealthStatus`, for `op`): usable unless every key manager it
    /// reports is `UNAVAILABLE`.
    pub(crate) async fn proxy_health(
        &self,
        t: &ProxyTarget,
        op: &str,
    ) -> std::result::Result<(), ProxyError> {
        let Ok(m) = self.key_manager() else {
            return Err(ProxyError::InvalidConfiguration);
        };
        let body = json!({"requestMetadata": {
            "kmsRequestId": uuid::Uuid::new_v4().to_string(),
            "kmsOperation": op,
        }});
        let v = m.call(t, "health", body).await?;
        let fleet = v["ekmFleetDetails"]
            .as_array()
            .ok_or(ProxyError::InvalidResponse)?;
        if v["xksProxyFleetSize"].as_u64().unwrap_or(0) < 1 || fleet.is_empty() {
            return Err(ProxyError::InvalidResponse);
        }
        if fleet.iter().all(|e| e["healthStatus"] == "UNAVAILABLE") {
            return Err(ProxyError::NotReachable);
        }
        Ok(())
    }

    /// `CreateCustomKeyStore` of an `EXTERNAL_KEY_STORE`: the proxy answers its health check
    /// with the credential given (AWS checks it the same way), then the store is recorded,
    /// disconnected, its secret sealed as a PIN is.
    pub(crate) async fn new_external_store(
        &self,
        rec: &mut CustomKeyStoreRecord,
        input: XksProxyInput,
    ) -> Result<()> {
        if input.connectivity != "PUBLIC_ENDPOINT" {
            return Err(KmsError::UnsupportedOperation(
                "XksProxyConnectivity VPC_ENDPOINT_SERVICE is not supported: this service reaches its proxies at a public endpoint (PUBLIC_ENDPOINT).".into(),
            ));
        }
        let target = ProxyTarget {
            uri_endpoint: input.uri_endpoint.clone(),
            uri_path: input.uri_path.clone(),
            access_key_id: input.access_key_id.clone(),
            secret: input.secret.clone(),
            region: rec.region.clone(),
        };
        if let Err(e) = self.proxy_health(&target, "CreateCustomKeyStore").await {
            return Err(KmsError::KeyStore(
                e.exception(),
                format!(
                    "The XKS proxy did not answer its health check ({}).",
                    e.connection_error()
                ),
            ));
        }
        let (k, v, c) = self
            .seal_pin(&rec.custom_key_store_id, &input.secret)
            .await?;
        (
            rec.password_key,
            rec.password_root_version,
            rec.password_ciphertext,
        ) = (Some(k), Some(v), Some(c));
        rec.store_type = EXTERNAL_KEY_STORE.into();
        rec.cluster_id = None;
        rec.trust_anchor = None;
        rec.xks_uri_endpoint = Some(input.uri_endpoint);
        rec.xks_uri_path = Some(input.uri_path);
        rec.xks_access_key_id = Some(input.access_key_id);
        rec.xks_connectivity = Some(input.connectivity);
        Ok(())
    }

    /// `CreateKey` in an external key store: the proxy must hold `xks_key_id` as an enabled
    /// AES-256 key for encryption and decryption.
    pub(crate) async fn check_external_key(
        &self,
        target: &ProxyTarget,
        xks_key_id: &str,
        principal: &str,
    ) -> Result<()> {
        let m = self.key_manager()?;
        let body = json!({"requestMetadata": request_metadata("CreateKey", None, principal)});
        match m
            .call(target, &format!("keys/{xks_key_id}/metadata"), body)
            .await
        {
            Ok(v) => {
                let usage = v["keyUsage"].as_array().cloned().unwrap_or_default();
                let has = |u: &str| usage.iter().any(|x| x == u);
                if v["keySpec"] != "AES_256"
                    || !has("ENCRYPT")
                    || !has("DECRYPT")
                    || v["keyStatus"] != "ENABLED"
                {
                    return Err(KmsError::KeyStore(
                        E::XksKeyInvalidConfiguration,
                        format!("The external key {xks_key_id} is not an enabled AES_256 key for ENCRYPT and DECRYPT."),
                    ));
                }
                Ok(())
            }
            Err(ProxyError::KeyNotFound) => Err(KmsError::KeyStore(
                E::XksKeyNotFound,
                format!("The external key store proxy has no key {xks_key_id}."),
            )),
            Err(e) => Err(KmsError::KeyStore(
                e.exception(),
                format!("The XKS proxy did not answer ({}).", e.connection_error()),
            )),
        }
    }

    /// `CreateKey` with `Origin=EXTERNAL_KEY_STORE`: the caller's external key store,
    /// connected, whose proxy holds `xks_key_id` as AWS requires.
    pub(crate) async fn external_store_for_new_key(
        &self,
        caller: &super::Caller,
        id: &str,
        xks_key_id: &str,
    ) -> Result<()> {
        let rec = self.store_of(caller, id).await?;
        let not_connected = || {
            KmsError::KeyStore(
                E::InvalidState,
                crate::messages::key_store_not_connected("CreateKey"),
            )
        };
        if rec.store_type != EXTERNAL_KEY_STORE {
            return Err(KmsError::Validation(
                "Origin EXTERNAL_KEY_STORE needs an external key store (CustomKeyStoreType EXTERNAL_KEY_STORE).".into(),
            ));
        }
        if rec.connection_state != "CONNECTED" {
            return Err(not_connected());
        }
        let existing = self.cks.proxies.lock().unwrap().get(id).cloned();
        let target = match existing {
            Some(t) => t,
            None => {
                self.log_in_following(&rec)
                    .await
                    .map_err(|_| not_connected())?;
                let t = self.cks.proxies.lock().unwrap().get(id).cloned();
                t.ok_or_else(not_connected)?
            }
        };
        self.check_external_key(&target, xks_key_id, &caller.principal_arn)
            .await
    }

    /// A key's proxy, if it lives in an external key store, which must be connected (here, or
    /// on another node: then this one connects too): `KMSInvalidStateException` otherwise.
    pub(crate) async fn proxy_of(&self, rec: &KeyRecord) -> Result<Option<Arc<ProxyTarget>>> {
        let (Some(store), Some(_)) = (&rec.custom_key_store_id, &rec.xks_key_id) else {
            return Ok(None);
        };
        if let Some(p) = self.cks.proxies.lock().unwrap().get(store) {
            return Ok(Some(p.clone()));
        }
        let unavailable = || {
            KmsError::InvalidState(format!(
                "{} is unavailable because its custom key store is not connected.",
                rec.arn()
            ))
        };
        let row = self.connected_row(store).await?.ok_or_else(unavailable)?;
        self.log_in_following(&row)
            .await
            .map_err(|_| unavailable())?;
        let p = self.cks.proxies.lock().unwrap().get(store).cloned();
        p.ok_or_else(unavailable).map(Some)
    }

    /// The outer layer of a key in an external key store over `inner` (a v1 blob).
    pub(crate) async fn xks_wrap(
        &self,
        rec: &KeyRecord,
        proxy: &ProxyTarget,
        inner: Vec<u8>,
        principal: &str,
    ) -> Result<Vec<u8>> {
        let m = self.key_manager()?;
        let aad = ciphertext::Outer::aad(rec.blob_id());
        let xks_key = rec.xks_key_id.as_deref().unwrap_or_default();
        let body = json!({
            "requestMetadata": request_metadata("Encrypt", Some(&rec.arn()), principal),
            "plaintext": b64(&inner),
            "additionalAuthenticatedData": b64(&aad),
            "encryptionAlgorithm": "AES_GCM",
            "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
        });
        let v = m
            .call(proxy, &format!("keys/{xks_key}/encrypt"), body)
            .await
            .map_err(|e| self.proxy_refused(rec, e))?;
        let invalid = || self.proxy_refused(rec, ProxyError::InvalidResponse);
        let (Some(body), Some(iv), Some(tag)) = (
            unb64(&v["ciphertext"]),
            unb64(&v["initializationVector"]),
            unb64(&v["authenticationTag"]),
        ) else {
            return Err(invalid());
        };
        let metadata = match &v["ciphertextMetadata"] {
            Value::Null => vec![],
            m => unb64(m).ok_or_else(invalid)?,
        };
        // The specification's checks of an answer: sizes, and the integrity value over
        // exactly what was sent and returned.
        if body.len() != inner.len()
            || tag.len() != 16
            || !(iv.len() == 12 || iv.len() == 16)
            || metadata.len() > 20
        {
            return Err(invalid());
        }
        let mut covered = aad.clone();
        for part in [&metadata, &iv, &body, &tag] {
            covered.extend_from_slice(part);
        }
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &covered);
        if unb64(&v["ciphertextDataIntegrityValue"]).as_deref() != Some(d.as_ref()) {
            return Err(invalid());
        }
        Ok(ciphertext::Outer {
            key_id: rec.blob_id(),
            metadata,
            iv,
            tag,
            body,
        }
        .to_bytes())
    }

    /// The inner v1 blob of an outer layer: decrypted by the key's proxy.
    pub(crate) async fn xks_unwrap(
        &self,
        rec: &KeyRecord,
        proxy: &ProxyTarget,
        outer: &ciphertext::Outer,
        principal: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let m = self.key_manager()?;
        let xks_key = rec.xks_key_id.as_deref().unwrap_or_default();
        let body = json!({
            "requestMetadata": request_metadata("Decrypt", Some(&rec.arn()), principal),
            "ciphertext": b64(&outer.body),
            "ciphertextMetadata": b64(&outer.metadata),
            "initializationVector": b64(&outer.iv),
            "authenticationTag": b64(&outer.tag),
            "additionalAuthenticatedData": b64(&ciphertext::Outer::aad(rec.blob_id())),
            "encryptionAlgorithm": "AES_GCM",
        });
        let v = match m
            .call(proxy, &format!("keys/{xks_key}/decrypt"), body)
            .await
        {
            Ok(v) => v,
            Err(ProxyError::InvalidCiphertext) => return Err(KmsError::InvalidCiphertext),
            Err(e) => return Err(self.proxy_refused(rec, e)),
        };
        let pt = unb64(&v["plaintext"])
            .ok_or_else(|| self.proxy_refused(rec, ProxyError::InvalidResponse))?;
        if pt.len() != outer.body.len() {
            return Err(self.proxy_refused(rec, ProxyError::InvalidResponse));
        }
        Ok(Zeroizing::new(pt))
    }

    /// `UpdateCustomKeyStore` of an external key store: its name, proxy path and credential at
    /// any time (AWS's rule), its endpoint and connectivity only while disconnected; the proxy
    /// as changed must answer its health check first.
    pub(crate) async fn update_external_key_store(
        &self,
        old: CustomKeyStoreRecord,
        update: CustomKeyStoreUpdate,
    ) -> Result<()> {
        if update.cluster_id.is_some() || update.password.is_some() {
            return Err(KmsError::Validation(
                "CloudHsmClusterId and KeyStorePassword are for AWS_CLOUDHSM key stores.".into(),
            ));
        }
        let connected = old.connection_state != DISCONNECTED;
        if connected && (update.xks_endpoint.is_some() || update.xks_connectivity.is_some()) {
            return Err(KmsError::KeyStore(
                E::InvalidState,
                messages::key_store_not_disconnected("UpdateCustomKeyStore"),
            ));
        }
        if update
            .xks_connectivity
            .as_deref()
            .is_some_and(|c| c != "PUBLIC_ENDPOINT")
        {
            return Err(KmsError::UnsupportedOperation(
                "XksProxyConnectivity VPC_ENDPOINT_SERVICE is not supported: this service reaches its proxies at a public endpoint (PUBLIC_ENDPOINT).".into(),
            ));
        }
        let id = old.custom_key_store_id.clone();
        let mut rec = old.clone();
        if let Some(name) = update.new_name {
            rec.name = name;
        }
        let proxy_changed = update.xks_endpoint.is_some()
            || update.xks_path.is_some()
            || update.xks_credential.is_some();
        let mut target = self.proxy_target(&old).await?;
        if let Some(e) = update.xks_endpoint {
            target.uri_endpoint = e.clone();
            rec.xks_uri_endpoint = Some(e);
        }
        if let Some(p) = update.xks_path {
            target.uri_path = p.clone();
            rec.xks_uri_path = Some(p);
        }
        if let Some((key_id, secret)) = update.xks_credential {
            let (k, v, c) = self.seal_pin(&id, &secret).await?;
            (
                rec.password_key,
                rec.password_root_version,
                rec.password_ciphertext,
            ) = (Some(k), Some(v), Some(c));
            target.access_key_id = key_id.clone();
            target.secret = secret;
            rec.xks_access_key_id = Some(key_id);
        }
        if proxy_changed {
            if let Err(e) = self.proxy_health(&target, "UpdateCustomKeyStore").await {
                return Err(KmsError::KeyStore(
                    e.exception(),
                    format!(
                        "The XKS proxy did not answer its health check ({}).",
                        e.connection_error()
                    ),
                ));
            }
        }
        self.rewrite_store(&old, rec).await?;
        if connected && proxy_changed {
            self.cks
                .proxies
                .lock()
                .unwrap()
                .insert(id, Arc::new(target));
        }
        Ok(())
    }

    /// A cryptographic call its proxy failed: `KMSInvalidStateException`, as AWS answers.
    fn proxy_refused(&self, rec: &KeyRecord, e: ProxyError) -> KmsError {
        tracing::warn!(key_id = %rec.key_id, error = ?e, "the external key store proxy refused or failed a call");
        KmsError::InvalidState(format!(
            "{} is unavailable: its external key store proxy failed the request ({}).",
            rec.arn(),
            e.connection_error()
        ))
    }
}
