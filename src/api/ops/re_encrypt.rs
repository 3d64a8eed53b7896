use crate::api::error::ApiError;
use crate::api::wire::{b64, ignores_ciphertext, or_empty, parse, Blob, Context, Validator, Word};
use crate::domain::{Caller, Kms, KmsError, ReEncryptEnd};
use crate::vocab::EncryptionAlgorithmSpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    ciphertext_blob: Option<Blob>,
    source_encryption_context: Option<Context>,
    source_key_id: Option<String>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<Context>,
    source_encryption_algorithm: Option<Word<EncryptionAlgorithmSpec>>,
    destination_encryption_algorithm: Option<Word<EncryptionAlgorithmSpec>>,
    grant_tokens: Option<Vec<String>>,
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
        .required(&r.destination_key_id, "destinationKeyId")
        .blob_len(r.ciphertext_blob.as_ref(), "ciphertextBlob", 1, 6144)
        .str_len(r.source_key_id.as_deref(), "sourceKeyId", 1, 2048)
        .str_len(r.destination_key_id.as_deref(), "destinationKeyId", 1, 2048)
        .word(&r.source_encryption_algorithm, "sourceEncryptionAlgorithm")
        .word(
            &r.destination_encryption_algorithm,
            "destinationEncryptionAlgorithm",
        )
        .grant_tokens(r.grant_tokens.as_ref())
        .finish()?;
    let symmetric = EncryptionAlgorithmSpec::SymmetricDefault;
    let source_algorithm = Word::known(&r.source_encryption_algorithm).unwrap_or(symmetric);
    let destination_algorithm =
        Word::known(&r.destination_encryption_algorithm).unwrap_or(symmetric);
    let blob = r.ciphertext_blob.map(|b| b.0).unwrap_or_default();
    let source_ctx = r.source_encryption_context.unwrap_or_default();
    let destination_ctx = r.destination_encryption_context.unwrap_or_default();
    let destination = ReEncryptEnd {
        key_id: or_empty(&r.destination_key_id),
        ctx: &destination_ctx,
        algorithm: destination_algorithm,
    };
    let caller = caller.for_request(r.grant_tokens.clone(), r.destination_key_id.as_deref());
    if ignore_ciphertext {
        // Without the ciphertext, the source key comes from SourceKeyId.
        let Some(source) = r.source_key_id.as_deref() else {
            return Err(KmsError::Validation(
                "SourceKeyId is required when DryRunModifiers includes IGNORE_CIPHERTEXT.".into(),
            )
            .into());
        };
        let source = ReEncryptEnd {
            key_id: source,
            ctx: &source_ctx,
            algorithm: source_algorithm,
        };
        kms.dry_run_re_encrypt_without_ciphertext(&caller, source, destination)
            .await?;
        return Err(KmsError::DryRun.into());
    }
    let out = kms
        .re_encrypt(
            &caller,
            &blob,
            r.source_key_id.as_deref(),
            &source_ctx,
            source_algorithm,
            destination,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    let mut v = json!({
        "CiphertextBlob": b64(&out.blob),
        "SourceKeyId": out.source_key_arn,
        "KeyId": out.key_arn,
        "SourceEncryptionAlgorithm": source_algorithm,
        "DestinationEncryptionAlgorithm": destination_algorithm,
    });
    // Key material ids are those of symmetric encryption keys only, as AWS.
    if source_algorithm == symmetric {
        if let Some(id) = crate::domain::rotation::material_id_of_blob(&blob) {
            v["SourceKeyMaterialId"] = json!(id);
        }
    }
    if destination_algorithm == symmetric {
        if let Some(id) = crate::domain::rotation::material_id_of_blob(&out.blob) {
            v["DestinationKeyMaterialId"] = json!(id);
        }
    }
    Ok(v)
}
