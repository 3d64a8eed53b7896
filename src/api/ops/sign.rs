//! `Sign`, `Verify`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, or_empty, parse, Blob, Validator, Word};
use crate::domain::{Caller, Kms};
use crate::vocab::{MessageType, SigningAlgorithmSpec};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    message: Option<Blob>,
    message_type: Option<Word<MessageType>>,
    signature: Option<Blob>,
    signing_algorithm: Option<Word<SigningAlgorithmSpec>>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

fn request(body: &[u8], verify: bool) -> Result<Request, ApiError> {
    let r: Request = parse(body)?;
    let mut v = Validator::new();
    v.key_id(&r.key_id)
        .required(&r.message, "message")
        .blob_len(r.message.as_ref(), "message", 1, 4096)
        .word(&r.message_type, "messageType")
        .required(&r.signing_algorithm, "signingAlgorithm")
        .word(&r.signing_algorithm, "signingAlgorithm")
        .grant_tokens(r.grant_tokens.as_ref());
    if verify {
        v.required(&r.signature, "signature")
            .blob_len(r.signature.as_ref(), "signature", 1, 6144);
    }
    v.finish()?;
    Ok(r)
}

pub async fn sign(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = request(body, false)?;
    let alg = Word::required(&r.signing_algorithm, "signingAlgorithm")?;
    if Word::known(&r.message_type) == Some(MessageType::ExternalMu) {
        let caller = caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref());
        kms.refuse_external_mu(&caller, or_empty(&r.key_id), "kms:Sign", alg)
            .await?;
    }
    let out = kms
        .sign(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            or_empty(&r.key_id),
            &r.message.map(|b| b.0).unwrap_or_default(),
            Word::known(&r.message_type) == Some(MessageType::Digest),
            alg,
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
    let alg = Word::required(&r.signing_algorithm, "signingAlgorithm")?;
    if Word::known(&r.message_type) == Some(MessageType::ExternalMu) {
        let caller = caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref());
        kms.refuse_external_mu(&caller, or_empty(&r.key_id), "kms:Verify", alg)
            .await?;
    }
    let arn = kms
        .verify(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            or_empty(&r.key_id),
            &r.message.map(|b| b.0).unwrap_or_default(),
            Word::known(&r.message_type) == Some(MessageType::Digest),
            &r.signature.map(|b| b.0).unwrap_or_default(),
            alg,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({
        "KeyId": arn,
        "SignatureValid": true,
        "SigningAlgorithm": alg,
    }))
}
