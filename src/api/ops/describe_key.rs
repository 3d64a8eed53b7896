use crate::api::error::ApiError;
use crate::api::wire::{parse, Validator};
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
    let meta = kms
        .describe_key(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            r.key_id.as_deref().unwrap_or_default(),
        )
        .await?;
    Ok(json!({ "KeyMetadata": super::key_metadata(&meta) }))
}
