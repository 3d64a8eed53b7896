use crate::api::error::ApiError;
use crate::api::wire::{
    b64, parse, require_symmetric_algorithm, Blob, Context, Validator, ENCRYPTION_ALGORITHMS,
};
use crate::kms::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    plaintext: Option<Blob>,
    encryption_context: Option<Context>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
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
        .one_of(
            r.encryption_algorithm.as_deref(),
            "encryptionAlgorithm",
            ENCRYPTION_ALGORITHMS,
        )
        .finish()?;
    require_symmetric_algorithm(r.encryption_algorithm.as_deref())?;
    let plaintext = r.plaintext.map(|b| b.0).unwrap_or_default();
    let ctx = r.encryption_context.unwrap_or_default();
    let out = kms
        .encrypt(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            r.key_id.as_deref().unwrap_or_default(),
            plaintext,
            &ctx,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(json!({
        "CiphertextBlob": b64(&out.blob),
        "KeyId": out.key_arn,
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}
