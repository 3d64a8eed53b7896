//! `GenerateDataKey` and `GenerateDataKeyWithoutPlaintext`.

use crate::api::error::ApiError;
use crate::api::wire::{
    b64, or_empty, parse, refuse_recipient, Context, Recipient, Validator, Word,
};
use crate::domain::{Caller, Kms, KmsError};
use crate::vocab::DataKeySpec;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    encryption_context: Option<Context>,
    number_of_bytes: Option<i64>,
    key_spec: Option<Word<DataKeySpec>>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<Recipient>,
    dry_run: Option<bool>,
}

pub async fn handle(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
    with_plaintext: bool,
) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .int_range(r.number_of_bytes, "numberOfBytes", 1, 1024)
        .word(&r.key_spec, "keySpec")
        .grant_tokens(r.grant_tokens.as_ref())
        .finish()?;
    let bytes = match (r.number_of_bytes, Word::known(&r.key_spec)) {
        (Some(n), None) => n as usize,
        (None, Some(DataKeySpec::Aes256)) => 32,
        (None, Some(DataKeySpec::Aes128)) => 16,
        // Neither, or both: one text for the two, as AWS answers them.
        _ => return Err(KmsError::Validation(crate::messages::BYTES_OR_KEY_SPEC.into()).into()),
    };
    // The WithoutPlaintext model has no Recipient: a member it does not have is ignored.
    if with_plaintext {
        refuse_recipient(&r.recipient)?;
    }
    let ctx = r.encryption_context.unwrap_or_default();
    let out = kms
        .generate_data_key(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            if with_plaintext {
                "kms:GenerateDataKey"
            } else {
                "kms:GenerateDataKeyWithoutPlaintext"
            },
            or_empty(&r.key_id),
            bytes,
            &ctx,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    let mut v = json!({ "CiphertextBlob": b64(&out.blob), "KeyId": out.key_arn });
    if let Some(id) = crate::domain::rotation::material_id_of_blob(&out.blob) {
        v["KeyMaterialId"] = json!(id);
    }
    if with_plaintext {
        v["Plaintext"] = json!(b64(&out.plaintext));
    }
    Ok(v)
}
