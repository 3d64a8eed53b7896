//! The External Key Store (XKS) proxy API that AWS KMS calls (specification:
//! `aws/aws-kms-xksproxy-api-spec`, version 1.0.2): `POST {prefix}/kms/xks/v1/health`, and
//! `…/keys/{externalKeyId}/metadata|encrypt|decrypt`, served on the API listener beside the
//! AWS JSON API. A front like `api`: it parses, authenticates (SigV4, service
//! `kms-xks-proxy`, with an access key of this service that the operator gave the logical key
//! store), authorizes by the operator's mapping of XKS key ids to keys of this service, throttles
//! per key store, records every call in the audit trail before it answers, and maps errors to
//! the specification's names and status codes in one place ([`XksError::wire`]). Bodies are
//! never logged.

use crate::api::sigv4;
use crate::config::XksStoreSettings;
use crate::domain::xks::{XksCiphertext, XksRefusal};
use crate::domain::Kms;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use zeroize::Zeroizing;

pub mod client;

pub const SERVICE: &str = "kms-xks-proxy";
/// The part of every path after the key store's prefix.
pub const BASE: &str = "/kms/xks/v1/";
/// Largest plaintext or ciphertext taken (the specification asks for 4300 bytes at least).
pub const MAX_DATA: usize = 65_536;

/// The logical key stores the operator configured.
pub struct XksState {
    stores: Vec<XksStoreSettings>,
    quotas: crate::api::quota::Quotas,
}

impl XksState {
    pub fn new(stores: Vec<XksStoreSettings>, per_second: u32) -> XksState {
        XksState {
            stores,
            quotas: crate::api::quota::Quotas::new(per_second, per_second),
        }
    }

    /// Whether `path` is one of the proxy API's (under any configured prefix).
    pub fn serves(&self, path: &str) -> bool {
        !self.stores.is_empty() && path.contains(BASE.trim_end_matches('/'))
    }
}

/// The specification's errors, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XksError {
    Validation,
    InvalidState,
    InvalidCiphertext,
    InvalidKeyUsage,
    AuthenticationFailed,
    AccessDenied,
    KeyNotFound,
    InvalidUriPath,
    Throttling,
    UnsupportedOperation,
    DependencyTimeout,
    Internal,
}

impl XksError {
    /// Status and `errorName`.
    pub fn wire(self) -> (u16, &'static str) {
        match self {
            XksError::Validation => (400, "ValidationException"),
            XksError::InvalidState => (400, "InvalidStateException"),
            XksError::InvalidCiphertext => (400, "InvalidCiphertextException"),
            XksError::InvalidKeyUsage => (400, "InvalidKeyUsageException"),
            XksError::AuthenticationFailed => (401, "AuthenticationFailedException"),
            XksError::AccessDenied => (403, "AccessDeniedException"),
            XksError::KeyNotFound => (404, "KeyNotFoundException"),
            XksError::InvalidUriPath => (404, "InvalidUriPathException"),
            XksError::Throttling => (429, "ThrottlingException"),
            XksError::UnsupportedOperation => (501, "UnsupportedOperationException"),
            XksError::DependencyTimeout => (503, "DependencyTimeoutException"),
            XksError::Internal => (500, "InternalException"),
        }
    }
}

impl From<XksRefusal> for XksError {
    fn from(r: XksRefusal) -> XksError {
        match r {
            XksRefusal::KeyNotFound => XksError::KeyNotFound,
            XksRefusal::InvalidState => XksError::InvalidState,
            XksRefusal::InvalidKeyUsage => XksError::InvalidKeyUsage,
            XksRefusal::InvalidCiphertext => XksError::InvalidCiphertext,
        }
    }
}

impl From<crate::domain::KmsError> for XksError {
    fn from(e: crate::domain::KmsError) -> XksError {
        use crate::domain::KmsError as K;
        match e {
            K::DependencyTimeout => XksError::DependencyTimeout,
            K::InvalidState(_) | K::Disabled(_) => XksError::InvalidState,
            K::InvalidCiphertext => XksError::InvalidCiphertext,
            other => {
                tracing::error!(error = ?other, "XKS proxy call failed");
                XksError::Internal
            }
        }
    }
}

/// What one call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Health,
    Metadata(String),
    Encrypt(String),
    Decrypt(String),
}

impl Call {
    /// The operation's name in the trail.
    pub fn event_name(&self) -> &'static str {
        match self {
            Call::Health => "XksGetHealthStatus",
            Call::Metadata(_) => "XksGetKeyMetadata",
            Call::Encrypt(_) => "XksEncrypt",
            Call::Decrypt(_) => "XksDecrypt",
        }
    }
}

/// The key store a path belongs to and the call it names; `InvalidUriPathException` for any
/// other path.
pub fn route<'a>(
    stores: &'a [XksStoreSettings],
    path: &str,
) -> Result<(&'a XksStoreSettings, Call), XksError> {
    let i = path.rfind(BASE).ok_or(XksError::InvalidUriPath)?;
    let (prefix, rest) = (&path[..i], &path[i + BASE.len()..]);
    let store = stores
        .iter()
        .find(|s| s.uri_path_prefix.trim_end_matches('/') == prefix)
        .ok_or(XksError::InvalidUriPath)?;
    let call = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["health"] => Call::Health,
        ["keys", id, op] if valid_key_id(id) => match *op {
            "metadata" => Call::Metadata(id.to_string()),
            "encrypt" => Call::Encrypt(id.to_string()),
            "decrypt" => Call::Decrypt(id.to_string()),
            _ => return Err(XksError::InvalidUriPath),
        },
        _ => return Err(XksError::InvalidUriPath),
    };
    Ok((store, call))
}

/// An `externalKeyId`: 1 to 128 letters, digits, `-`, `.` and `_`.
fn valid_key_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
}

/// The `requestMetadata` member, as the specification lists it.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RequestMetadata {
    aws_principal_arn: Option<String>,
    kms_key_arn: Option<String>,
    kms_operation: Option<String>,
    kms_request_id: Option<String>,
    kms_via_service: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    request_metadata: Option<RequestMetadata>,
    plaintext: Option<String>,
    ciphertext: Option<String>,
    ciphertext_metadata: Option<String>,
    encryption_algorithm: Option<String>,
    additional_authenticated_data: Option<String>,
    authentication_tag: Option<String>,
    initialization_vector: Option<String>,
    ciphertext_data_integrity_value_algorithm: Option<String>,
}

fn b64(s: &Option<String>) -> Result<Option<Vec<u8>>, XksError> {
    s.as_deref()
        .map(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|_| XksError::Validation)
        })
        .transpose()
}

fn enc(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// What the trail records of a call: the key store, the external key, the mapped key, the
/// request metadata AWS KMS sent (never a plaintext, a ciphertext or the AAD).
pub struct Recorded {
    pub request: Value,
    /// The mapped key's ARN (from the operator's configuration), where the trail files the
    /// call's event, whichever account the proxy credential's user is of.
    pub key_arn: Option<String>,
}

/// Answer one authenticated call of `store`: the reply body, or the error. `recorded` gets what
/// the trail keeps of the request.
pub async fn answer(
    kms: &Kms,
    store: &XksStoreSettings,
    call: &Call,
    body: &[u8],
    recorded: &mut Recorded,
) -> Result<Value, XksError> {
    let b: Body = serde_json::from_slice(body).map_err(|_| XksError::Validation)?;
    let meta = b.request_metadata.ok_or(XksError::Validation)?;
    recorded.request = json!({
        "XksProxyUriPath": format!("{}/kms/xks/v1", store.uri_path_prefix.trim_end_matches('/')),
        "KmsRequestId": meta.kms_request_id,
        "KmsOperation": meta.kms_operation,
        "AwsPrincipalArn": meta.aws_principal_arn,
        "KmsKeyArn": meta.kms_key_arn,
        "KmsViaService": meta.kms_via_service,
    });
    if meta.kms_request_id.is_none() || meta.kms_operation.is_none() {
        return Err(XksError::Validation);
    }
    let (Call::Metadata(id) | Call::Encrypt(id) | Call::Decrypt(id)) = call else {
        return Ok(health(kms).await);
    };
    if meta.aws_principal_arn.is_none()
        || (!matches!(call, Call::Metadata(_)) && meta.kms_key_arn.is_none())
    {
        return Err(XksError::Validation);
    }
    let mapped = store
        .keys
        .iter()
        .find(|k| &k.xks_key_id == id)
        .ok_or(XksError::KeyNotFound)?;
    recorded.request["ExternalKeyId"] = json!(id);
    // The mapped key's ARN, where the trail indexes the events of a key.
    recorded.request["KeyId"] = json!(mapped.key_arn);
    recorded.key_arn = Some(mapped.key_arn.clone());
    // Secondary authorization: the AWS principals the operator allows for this key.
    let principal = meta.aws_principal_arn.as_deref().unwrap_or_default();
    let allowed = |p: &String| match p.strip_suffix('*') {
        Some(prefix) => principal.starts_with(prefix),
        None => p == principal,
    };
    if !mapped.allowed_principals.is_empty() && !mapped.allowed_principals.iter().any(allowed) {
        return Err(XksError::AccessDenied);
    }
    let may = |usage: &str| mapped.usage.iter().any(|u| u == usage);
    match call {
        Call::Metadata(_) => {
            let status = kms.xks_key_status(&mapped.key_arn).await?;
            Ok(json!({
                "keySpec": "AES_256",
                "keyUsage": mapped.usage,
                "keyStatus": if status.enabled { "ENABLED" } else { "DISABLED" },
            }))
        }
        Call::Encrypt(_) => {
            if b.encryption_algorithm.as_deref() != Some("AES_GCM") {
                return Err(XksError::Validation);
            }
            let cdiv = match b.ciphertext_data_integrity_value_algorithm.as_deref() {
                None => false,
                Some("SHA_256") => true,
                Some(_) => return Err(XksError::Validation),
            };
            let plaintext = Zeroizing::new(b64(&b.plaintext)?.ok_or(XksError::Validation)?);
            let aad = b64(&b.additional_authenticated_data)?.unwrap_or_default();
            if plaintext.len() > MAX_DATA || aad.len() > u16::MAX as usize {
                return Err(XksError::UnsupportedOperation);
            }
            if !may("ENCRYPT") {
                return Err(XksError::InvalidKeyUsage);
            }
            let ct = kms.xks_encrypt(&mapped.key_arn, plaintext, &aad).await??;
            let mut out = json!({
                "ciphertext": enc(&ct.ciphertext),
                "ciphertextMetadata": enc(&ct.metadata),
                "initializationVector": enc(&ct.iv),
                "authenticationTag": enc(&ct.tag),
            });
            if cdiv {
                // The integrity value first, then a decryption of what it covers (the
                // specification's order: a flipped bit cannot hide behind a later hash).
                let mut covered = aad.clone();
                for part in [&ct.metadata[..], &ct.iv[..], &ct.ciphertext, &ct.tag] {
                    covered.extend_from_slice(part);
                }
                let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &covered);
                out["ciphertextDataIntegrityValue"] = json!(enc(d.as_ref()));
                if kms.xks_decrypt(&mapped.key_arn, &ct, &aad).await?.is_err() {
                    tracing::error!("an XKS encryption did not decrypt back; not returned");
                    return Err(XksError::Internal);
                }
            }
            Ok(out)
        }
        Call::Decrypt(_) => {
            if b.encryption_algorithm.as_deref() != Some("AES_GCM") {
                return Err(XksError::Validation);
            }
            let ciphertext = b64(&b.ciphertext)?.ok_or(XksError::Validation)?;
            let tag = b64(&b.authentication_tag)?.ok_or(XksError::Validation)?;
            let iv = b64(&b.initialization_vector)?.ok_or(XksError::Validation)?;
            let metadata = b64(&b.ciphertext_metadata)?.unwrap_or_default();
            let aad = b64(&b.additional_authenticated_data)?.unwrap_or_default();
            if tag.len() != 16 || !(iv.len() == 12 || iv.len() == 16) || metadata.len() > 20 {
                return Err(XksError::Validation);
            }
            if ciphertext.len() > MAX_DATA || aad.len() > u16::MAX as usize {
                return Err(XksError::UnsupportedOperation);
            }
            if !may("DECRYPT") {
                return Err(XksError::InvalidKeyUsage);
            }
            // This proxy's IVs are 96 bits: a 128-bit one is not one of its ciphertexts.
            let Ok(iv) = <[u8; 12]>::try_from(iv.as_slice()) else {
                return Err(XksError::InvalidCiphertext);
            };
            let ct = XksCiphertext {
                ciphertext,
                metadata,
                iv,
                tag,
            };
            let pt = kms.xks_decrypt(&mapped.key_arn, &ct, &aad).await??;
            Ok(json!({ "plaintext": enc(&pt) }))
        }
        Call::Health => unreachable!("answered above"),
    }
}

/// `GetHealthStatus`: the token as the readiness check finds it (cached by the caller's
/// schedule: a check is one token call).
async fn health(kms: &Kms) -> Value {
    let r = kms.readiness(crate::api::READINESS_TIMEOUT).await;
    let caps = kms.token_capabilities();
    json!({
        "xksProxyFleetSize": 1,
        "xksProxyVendor": "kms (on-premises AWS KMS)",
        "xksProxyModel": format!("kms {}", crate::domain::VERSION),
        "ekmVendor": caps.0,
        "ekmFleetDetails": [{
            "id": r.token_label,
            "model": caps.1,
            "healthStatus": if r.token.is_ok() { "ACTIVE" } else { "UNAVAILABLE" },
        }],
    })
}

/// The access key a request was signed with, if the signature verifies for the
/// `kms-xks-proxy` service (in whatever Region AWS KMS calls from) and the key store lists
/// the key; `AuthenticationFailedException` otherwise.
pub async fn authenticate(
    kms: &Kms,
    store: &XksStoreSettings,
    path: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> Result<Arc<crate::domain::credentials::SigningKey>, XksError> {
    let failed = XksError::AuthenticationFailed;
    let value = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(failed)?;
    let auth = sigv4::parse_authorization(value).map_err(|_| failed)?;
    if auth.service != SERVICE || !store.access_key_ids.contains(&auth.access_key_id) {
        return Err(failed);
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or(failed)?
        .to_string();
    let when = chrono::NaiveDateTime::parse_from_str(&amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| failed)?
        .and_utc();
    let now = kms.now();
    if (now - when).abs() > sigv4::MAX_SKEW || auth.date != when.format("%Y%m%d").to_string() {
        return Err(failed);
    }
    if !auth.signed_headers.iter().any(|h| h == "x-amz-date") {
        return Err(failed);
    }
    let key = kms
        .credentials
        .signing_key(&auth.access_key_id, &auth.date, &auth.region, &auth.service)
        .await
        .map_err(|_| failed)?;
    let sts = sigv4::string_to_sign("POST", path, "", headers, &auth, &amz_date, body);
    let expected = hex::encode(key.sign(sts.as_bytes()));
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        auth.signature.as_bytes(),
    )) {
        Ok(key)
    } else {
        Err(failed)
    }
}

/// Where a proxy call came from, for its audit event.
struct Who<'a> {
    call: &'a Call,
    peer: std::net::IpAddr,
    headers: &'a hyper::HeaderMap,
    request_id: &'a str,
}

impl Who<'_> {
    /// Record the call's event: who made it (once authenticated), what it asked, how it ended.
    async fn record(
        &self,
        audit: &std::sync::Arc<crate::audit::Audit>,
        identity: Option<&crate::audit::Identity>,
        request: &Value,
        keys: &[String],
        error: Option<&str>,
    ) -> Result<(), crate::audit::AuditError> {
        let event = crate::audit::api_event(&crate::audit::ApiCall {
            operation: self.call.event_name(),
            sts: false,
            region: "xks",
            source_ip: &self.peer.to_string(),
            user_agent: self
                .headers
                .get("user-agent")
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            identity,
            request: Some(request),
            response: None,
            error: error.map(|k| (k, "")),
            request_id: self.request_id,
            tls: None,
            time: chrono::Utc::now(),
            keys,
        });
        audit.record(event).await
    }
}

/// One request of the proxy API, start to finish: routed, authenticated, throttled, answered,
/// recorded. Returns (status, body).
pub async fn handle(
    state: &crate::api::ApiState,
    xks: &XksState,
    peer: std::net::IpAddr,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    request_id: &str,
) -> (u16, Value) {
    let (method, path, headers) = (&parts.method, parts.uri.path(), &parts.headers);
    let (store, call) = match route(&xks.stores, path) {
        Ok(r) => r,
        Err(e) => return error(e),
    };
    if method != hyper::Method::POST {
        return (405, json!({}));
    }
    // A source that keeps failing authentication is refused before any work is done for it
    // (the API's guard, shared): a flood of forged requests reaches neither the database nor
    // the token, and only the failures within its budget are recorded one by one.
    if state.auth_guard.blocked(peer) {
        return error(XksError::AuthenticationFailed);
    }
    let key = match authenticate(&state.kms, store, path, headers, body).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(prefix = %store.uri_path_prefix, "XKS proxy request failed authentication");
            if state.auth_guard.failed(peer) {
                let request = json!({
                    "XksProxyUriPath": format!("{}/kms/xks/v1", store.uri_path_prefix),
                });
                let who = Who {
                    call: &call,
                    peer,
                    headers,
                    request_id,
                };
                if let Err(err) = who
                    .record(&state.audit, None, &request, &[], Some(e.wire().1))
                    .await
                {
                    tracing::error!(error = %err, "a failed XKS authentication could not be recorded");
                }
            }
            return error(e);
        }
    };
    let mut recorded = Recorded {
        request: json!({}),
        key_arn: None,
    };
    let result = if !xks.quotas.allow(&store.uri_path_prefix, "xks", "Encrypt") {
        Err(XksError::Throttling)
    } else {
        answer(&state.kms, store, &call, body, &mut recorded).await
    };
    let identity = key.identity();
    let error_of = result.as_ref().err().map(|e| e.wire().1);
    let who = Who {
        call: &call,
        peer,
        headers,
        request_id,
    };
    // The call's event is durable before its answer; a trail that cannot take it fails it.
    if let Err(e) = who
        .record(
            &state.audit,
            Some(&identity),
            &recorded.request,
            recorded.key_arn.as_slice(),
            error_of,
        )
        .await
    {
        tracing::error!(error = %e, "the XKS call's event could not be recorded; answered as failed");
        return error(XksError::DependencyTimeout);
    }
    match result {
        Ok(v) => (200, v),
        Err(e) => error(e),
    }
}

fn error(e: XksError) -> (u16, Value) {
    let (status, name) = e.wire();
    (status, json!({ "errorName": name }))
}
