use crate::api::error::ApiError;
use crate::api::wire::{parse, Page, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    limit: Option<i64>,
    marker: Option<String>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .paging(r.limit, r.marker.as_deref())
        .finish()?;
    let out = kms
        .list_keys(caller, r.limit.unwrap_or(100) as usize, r.marker.as_deref())
        .await?;
    let keys: Vec<Value> = out
        .keys
        .iter()
        .map(|(id, arn)| json!({"KeyId": id.to_string(), "KeyArn": arn}))
        .collect();
    Ok(Page::cut("Keys", keys, out.next_marker))
}
