//! `DeriveSharedSecret`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, or_empty, parse, refuse_recipient, Blob, Recipient, Validator, Word};
use crate::domain::{Caller, Kms};
use crate::vocab::KeyAgreementAlgorithmSpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    key_agreement_algorithm: Option<Word<KeyAgreementAlgorithmSpec>>,
    public_key: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
    recipient: Option<Recipient>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .required(&r.key_agreement_algorithm, "keyAgreementAlgorithm")
        .word(&r.key_agreement_algorithm, "keyAgreementAlgorithm")
        .required(&r.public_key, "publicKey")
        .blob_len(r.public_key.as_ref(), "publicKey", 1, 8192)
        .grant_tokens(r.grant_tokens.as_ref())
        .finish()?;
    refuse_recipient(&r.recipient)?;
    let alg = Word::required(&r.key_agreement_algorithm, "keyAgreementAlgorithm")?;
    let (arn, secret, origin) = kms
        .derive_shared_secret(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            or_empty(&r.key_id),
            alg,
            &r.public_key.map(|b| b.0).unwrap_or_default(),
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({
        "KeyId": arn,
        "SharedSecret": b64(&secret),
        "KeyAgreementAlgorithm": alg,
        "KeyOrigin": origin,
    }))
}
