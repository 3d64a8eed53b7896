use crate::api::error::ApiError;
use crate::api::wire::{
    b64, ignores_ciphertext, parse, refuse_recipient, Blob, Context, Recipient, Validator, Word,
};
use crate::domain::{Caller, Kms, KmsError};
use crate::vocab::EncryptionAlgorithmSpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    ciphertext_blob: Option<Blob>,
    encryption_context: Option<Context>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<Word<EncryptionAlgorithmSpec>>,
    recipient: Option<Recipient>,
    dry_run: Option<bool>,
    dry_run_modifiers: Option<Vec<String>>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    let ignore_ciphertext = ignores_ciphertext(r.dry_run, r.dry_run_modifiers.as_ref());
    Validator::new()
        .ciphertext(
            &r.ciphertext_blob,
            ignore_ciphertext,
            r.dry_run_modifiers.as_ref(),
        )
        .blob_len(r.ciphertext_blob.as_ref(), "ciphertextBlob", 1, 6144)
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .grant_tokens(r.grant_tokens.as_ref())
        .word(&r.encryption_algorithm, "encryptionAlgorithm")
        .finish()?;
    refuse_recipient(&r.recipient)?;
    let blob = r.ciphertext_blob.map(|b| b.0).unwrap_or_default();
    let ctx = r.encryption_context.unwrap_or_default();
    let caller = caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref());
    let dry_run = r.dry_run.unwrap_or(false);
    let algorithm =
        Word::known(&r.encryption_algorithm).unwrap_or(EncryptionAlgorithmSpec::SymmetricDefault);
    if ignore_ciphertext {
        // Without the ciphertext, the key comes from KeyId.
        let Some(key_id) = r.key_id.as_deref() else {
            return Err(KmsError::Validation(
                "KeyId is required when DryRunModifiers includes IGNORE_CIPHERTEXT.".into(),
            )
            .into());
        };
        kms.dry_run_without_ciphertext(&caller, "kms:Decrypt", key_id, &ctx, algorithm)
            .await?;
        return Err(KmsError::DryRun.into());
    }
    let out = match (algorithm, r.key_id.as_deref()) {
        (EncryptionAlgorithmSpec::SymmetricDefault, key_id) => {
            kms.decrypt(&caller, &blob, &ctx, key_id, dry_run).await?
        }
        (_, Some(key_id)) => {
            kms.decrypt_asymmetric(&caller, key_id, &blob, &ctx, algorithm, dry_run)
                .await?
        }
        // An asymmetric ciphertext does not name its key.
        // (Recorded, in these words.)
        (_, None) => return Err(KmsError::Validation("KeyId must not be null".into()).into()),
    };
    let mut v = json!({
        "KeyId": out.key_arn,
        "Plaintext": b64(&out.plaintext),
        "EncryptionAlgorithm": algorithm,
    });
    // Present only for a symmetric encryption key, as AWS.
    if algorithm == EncryptionAlgorithmSpec::SymmetricDefault {
        if let Some(id) = crate::domain::rotation::material_id_of_blob(&blob) {
            v["KeyMaterialId"] = json!(id);
        }
    }
    Ok(v)
}
