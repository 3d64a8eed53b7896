//! `Sign`, `Verify`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, parse, Blob, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

pub const SIGNING_ALGORITHMS: &[&str] = &[
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
    "ECDSA_SHA_256",
    "ECDSA_SHA_384",
    "ECDSA_SHA_512",
    "SM2DSA",
    "ML_DSA_SHAKE_256",
    "ED25519_SHA_512",
    "ED25519_PH_SHA_512",
];
const MESSAGE_TYPES: &[&str] = &["RAW", "DIGEST", "EXTERNAL_MU"];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    message: Option<Blob>,
    message_type: Option<String>,
    signature: Option<Blob>,
    signing_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

fn request(body: &[u8], verify: bool) -> Result<Request, ApiError> {
    let r: Request = parse(body)?;
    let mut v = Validator::new();
    v.required(&r.key_id, "keyId")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .required(&r.message, "message")
        .blob_len(r.message.as_ref(), "message", 1, 4096)
        .one_of(r.message_type.as_deref(), "messageType", MESSAGE_TYPES)
        .required(&r.signing_algorithm, "signingAlgorithm")
        .one_of(
            r.signing_algorithm.as_deref(),
            "signingAlgorithm",
            SIGNING_ALGORITHMS,
        )
        .grant_tokens(r.grant_tokens.as_ref());
    if verify {
        v.required(&r.signature, "signature")
            .blob_len(r.signature.as_ref(), "signature", 1, 6144);
    }
    v.finish()?;
    if r.message_type.as_deref() == Some("EXTERNAL_MU") {
        return Err(crate::domain::KmsError::InvalidKeyUsage(
            "MessageType EXTERNAL_MU is only for ML-DSA keys, which this key store does not offer."
                .into(),
        )
        .into());
    }
    Ok(r)
}

pub async fn sign(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = request(body, false)?;
    let alg = r.signing_algorithm.clone().unwrap_or_default();
    let out = kms
        .sign(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            r.key_id.as_deref().unwrap_or_default(),
            &r.message.map(|b| b.0).unwrap_or_default(),
            r.message_type.as_deref() == Some("DIGEST"),
            &alg,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({
        "KeyId": out.key_arn,
        "Signature": b64(&out.signature),
        "SigningAlgorithm": alg,
    }))
}

pub async fn verify(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = request(body, true)?;
    let alg = r.signing_algorithm.clone().unwrap_or_default();
    let arn = kms
        .verify(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            r.key_id.as_deref().unwrap_or_default(),
            &r.message.map(|b| b.0).unwrap_or_default(),
            r.message_type.as_deref() == Some("DIGEST"),
            &r.signature.map(|b| b.0).unwrap_or_default(),
            &alg,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({
        "KeyId": arn,
        "SignatureValid": true,
        "SigningAlgorithm": alg,
    }))
}
