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
    resource_owners: Option<Vec<String>>,
}

/// `ResourceOwnerType`'s words, in the model's order.
const RESOURCE_OWNERS: &[&str] = &["SELF", "OTHER_ACCOUNTS_VIA_RAM"];

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .paging(r.limit, r.marker.as_deref())
        .list_len(r.resource_owners.as_ref(), "resourceOwners", 1..=2)
        .list_of_words(
            r.resource_owners.as_ref(),
            "resourceOwners",
            RESOURCE_OWNERS,
        )
        .finish()?;
    let own = r
        .resource_owners
        .as_ref()
        .is_none_or(|owners| owners.iter().any(|o| o == "SELF"));
    let out = kms
        .list_keys(
            caller,
            own,
            r.limit.unwrap_or(100) as usize,
            r.marker.as_deref(),
        )
        .await?;
    let keys: Vec<Value> = out
        .keys
        .iter()
        .map(|(id, arn)| json!({"KeyId": id.to_string(), "KeyArn": arn}))
        .collect();
    Ok(Page::cut("Keys", keys, out.next_marker))
}
