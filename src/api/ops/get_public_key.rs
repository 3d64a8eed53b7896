//! `GetPublicKey`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, parse, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .grant_tokens(r.grant_tokens.as_ref())
        .finish()?;
    let out = kms
        .get_public_key(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            r.key_id.as_deref().unwrap_or_default(),
        )
        .await?;
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
