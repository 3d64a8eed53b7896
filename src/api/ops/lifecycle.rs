//! `EnableKey`, `DisableKey`, `ScheduleKeyDeletion`, `CancelKeyDeletion`, `UpdateKeyDescription`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

use super::key_only;

pub async fn enable(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    kms.enable_key(caller, &key_only(body)?).await?;
    Ok(json!({}))
}

pub async fn disable(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    kms.disable_key(caller, &key_only(body)?).await?;
    Ok(json!({}))
}

pub async fn cancel_deletion(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let arn = kms.cancel_key_deletion(caller, &key_only(body)?).await?;
    Ok(json!({ "KeyId": arn }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Schedule {
    key_id: Option<String>,
    pending_window_in_days: Option<i64>,
}

pub async fn schedule_deletion(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Schedule = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        // AWS's model allows 1 to 365; the service then asks for 7 to 30 (the domain's check).
        .int_range(r.pending_window_in_days, "pendingWindowInDays", 1, 365)
        .finish()?;
    let days = r.pending_window_in_days.unwrap_or(30);
    let (arn, state, when) = kms
        .schedule_key_deletion(caller, or_empty(&r.key_id), days, kms.now())
        .await?;
    let mut v = json!({
        "KeyId": arn,
        "KeyState": state,
        "PendingWindowInDays": days,
    });
    if let Some(when) = when {
        v["DeletionDate"] = json!(super::epoch(&when));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Describe {
    key_id: Option<String>,
    description: Option<String>,
}

pub async fn update_description(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Value, ApiError> {
    let r: Describe = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .required(&r.description, "description")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .str_len(r.description.as_deref(), "description", 0, 8192)
        .finish()?;
    kms.update_key_description(caller, or_empty(&r.key_id), or_empty(&r.description))
        .await?;
    Ok(json!({}))
}
