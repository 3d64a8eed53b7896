use crate::api::error::ApiError;
use crate::api::wire::{b64, parse, refuse_recipient, Recipient, Validator};
use crate::domain::{Caller, Kms, KmsError};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    number_of_bytes: Option<i64>,
    custom_key_store_id: Option<String>,
    recipient: Option<Recipient>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .int_range(r.number_of_bytes, "numberOfBytes", 1, 1024)
        .str_len(r.custom_key_store_id.as_deref(), "customKeyStoreId", 1, 64)
        .finish()?;
    // Then AWS's recorded answer to a request without NumberOfBytes (SDKs send `{}`: the
    // member is optional in the model, so the model's checks come first).
    if r.number_of_bytes.is_none() {
        return Err(KmsError::Validation(crate::messages::NUMBER_OF_BYTES_REQUIRED.into()).into());
    }
    refuse_recipient(&r.recipient)?;
    let n = r.number_of_bytes.unwrap_or_default() as usize;
    let bytes = match &r.custom_key_store_id {
        // From the store's partition (AWS: a CloudHSM key store's cluster).
        Some(id) => kms.random_from_store(caller, id, n).await?,
        None => kms.generate_random(caller, n).await?,
    };
    Ok(json!({ "Plaintext": b64(&bytes) }))
}
