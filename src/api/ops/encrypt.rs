use crate::api::error::ApiError;
use crate::api::wire::{b64, parse, Blob, Context, Validator, ENCRYPTION_ALGORITHMS};
use crate::domain::{Caller, Kms};
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
    let plaintext = r.plaintext.map(|b| b.0).unwrap_or_default();
    let ctx = r.encryption_context.unwrap_or_default();
    let caller = caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref());
    let key_id = r.key_id.as_deref().unwrap_or_default();
    let dry_run = r.dry_run.unwrap_or(false);
    let algorithm = r
        .encryption_algorithm
        .as_deref()
        .unwrap_or("SYMMETRIC_DEFAULT");
    let out = if algorithm == "SYMMETRIC_DEFAULT" {
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
