//! `GetKeyLastUsage`.

use crate::api::error::ApiError;
use crate::api::wire::{parse, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .finish()?;
    let u = kms
        .key_last_usage(caller, r.key_id.as_deref().unwrap_or_default())
        .await?;
    // Never used since tracking began: an empty object, as AWS answers.
    let last = match &u.last {
        Some(l) => json!({
            "Operation": l.operation,
            "Timestamp": super::epoch(&l.time),
            "CloudTrailEventId": l.event_id,
            "KmsRequestId": l.request_id,
        }),
        None => json!({}),
    };
    Ok(json!({
        "KeyId": u.key_id,
        "KeyLastUsage": last,
        "TrackingStartDate": super::epoch(&u.tracking_start),
        "KeyCreationDate": super::epoch(&u.created),
    }))
}
