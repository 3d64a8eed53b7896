//! `GetPublicKey`.

use crate::api::error::ApiError;
use crate::api::wire::b64;
use crate::domain::{Caller, Kms};
use serde_json::{json, Value};

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let (caller, key_id) = super::key_request(caller, body)?;
    let out = kms.get_public_key(&caller, &key_id).await?;
    let mut v = json!({
        "KeyId": out.key_arn,
        "PublicKey": b64(&out.public_key),
        "KeySpec": out.key_spec,
        "KeyUsage": out.key_usage,
    });
    if let Some(spec) = super::create_key::customer_master_key_spec(out.key_spec) {
        v["CustomerMasterKeySpec"] = json!(spec);
    }
    super::put_algorithms(&mut v, &out.algorithms);
    Ok(v)
}
