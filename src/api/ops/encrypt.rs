use crate::api::error::ApiError;
use crate::api::wire::{b64, or_empty, parse, Blob, Context, Validator, Word};
use crate::domain::{Caller, Kms};
use crate::vocab::EncryptionAlgorithmSpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    plaintext: Option<Blob>,
    encryption_context: Option<Context>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<Word<EncryptionAlgorithmSpec>>,
    dry_run: Option<bool>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .required(&r.plaintext, "plaintext")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .blob_len(r.plaintext.as_ref(), "plaintext", 1, 4096)
        .grant_tokens(r.grant_tokens.as_ref())
        .word(&r.encryption_algorithm, "encryptionAlgorithm")
        .finish()?;
    let plaintext = r.plaintext.map(|b| b.0).unwrap_or_default();
    let ctx = r.encryption_context.unwrap_or_default();
    let caller = caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref());
    let key_id = or_empty(&r.key_id);
    let dry_run = r.dry_run.unwrap_or(false);
    let algorithm =
        Word::known(&r.encryption_algorithm).unwrap_or(EncryptionAlgorithmSpec::SymmetricDefault);
    let out = if algorithm == EncryptionAlgorithmSpec::SymmetricDefault {
        kms.encrypt(&caller, key_id, plaintext, &ctx, dry_run)
            .await?
    } else {
        kms.encrypt_asymmetric(&caller, key_id, plaintext, &ctx, algorithm, dry_run)
            .await?
    };
    Ok(json!({
        "CiphertextBlob": b64(&out.blob),
        "KeyId": out.key_arn,
        "EncryptionAlgorithm": algorithm,
    }))
}
