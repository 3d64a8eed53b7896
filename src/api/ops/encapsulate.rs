//! `Encapsulate`, `Decapsulate` (ML-KEM). No token here generates ML-KEM keys, so these answer
//! as AWS does for every key that can exist here (not found, disabled, the wrong key usage);
//! see `Kms::encapsulation_key`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Blob, Validator, Word};
use crate::domain::{Caller, Kms, KmsError};
use crate::vocab::EncapsulationAlgorithmSpec;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    shared_secret_ciphertext_blob: Option<Blob>,
    encapsulation_algorithm: Option<Word<EncapsulationAlgorithmSpec>>,
    grant_tokens: Option<Vec<String>>,
    /// Read (a member of the model), but no call gets as far as a dry run would stop.
    #[allow(dead_code)]
    dry_run: Option<bool>,
}

async fn handle(kms: &Kms, caller: &Caller, body: &[u8], op: &str) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    let mut v = Validator::new();
    v.key_id(&r.key_id)
        .required(&r.encapsulation_algorithm, "encapsulationAlgorithm")
        .word(&r.encapsulation_algorithm, "encapsulationAlgorithm")
        .grant_tokens(r.grant_tokens.as_ref());
    if op == "Decapsulate" {
        v.required(
            &r.shared_secret_ciphertext_blob,
            "sharedSecretCiphertextBlob",
        )
        .blob_len(
            r.shared_secret_ciphertext_blob.as_ref(),
            "sharedSecretCiphertextBlob",
            1,
            6144,
        );
    }
    v.finish()?;
    kms.encapsulation_key(
        &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
        or_empty(&r.key_id),
        op,
    )
    .await?;
    // `encapsulation_key` answers every call with an error (no ML-KEM key can exist here).
    Err(
        KmsError::Internal("an ML-KEM key was found, which this service cannot create".into())
            .into(),
    )
}

pub async fn encapsulate(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    handle(kms, caller, body, "Encapsulate").await
}

pub async fn decapsulate(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    handle(kms, caller, body, "Decapsulate").await
}
