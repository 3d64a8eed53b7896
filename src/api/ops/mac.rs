//! `GenerateMac`, `VerifyMac`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, or_empty, parse, Blob, Validator, Word};
use crate::domain::{Caller, Kms};
use crate::vocab::MacAlgorithmSpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    message: Option<Blob>,
    mac_algorithm: Option<Word<MacAlgorithmSpec>>,
    mac: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

fn request(body: &[u8], verify: bool) -> Result<Request, ApiError> {
    let r: Request = parse(body)?;
    let mut v = Validator::new();
    v.required(&r.message, "message")
        .blob_len(r.message.as_ref(), "message", 1, 4096)
        .key_id(&r.key_id)
        .required(&r.mac_algorithm, "macAlgorithm")
        .word(&r.mac_algorithm, "macAlgorithm")
        .grant_tokens(r.grant_tokens.as_ref());
    if verify {
        v.required(&r.mac, "mac")
            .blob_len(r.mac.as_ref(), "mac", 1, 6144);
    }
    v.finish()?;
    Ok(r)
}

pub async fn generate(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = request(body, false)?;
    let alg = Word::required(&r.mac_algorithm, "macAlgorithm")?;
    let (arn, mac) = kms
        .generate_mac(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            or_empty(&r.key_id),
            &r.message.map(|b| b.0).unwrap_or_default(),
            alg,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({ "KeyId": arn, "Mac": b64(&mac), "MacAlgorithm": alg }))
}

pub async fn verify(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = request(body, true)?;
    let alg = Word::required(&r.mac_algorithm, "macAlgorithm")?;
    let arn = kms
        .verify_mac(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            or_empty(&r.key_id),
            &r.message.map(|b| b.0).unwrap_or_default(),
            &r.mac.map(|b| b.0).unwrap_or_default(),
            alg,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({ "KeyId": arn, "MacValid": true, "MacAlgorithm": alg }))
}
