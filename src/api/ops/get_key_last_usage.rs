//! `GetKeyLastUsage`.

use crate::api::error::ApiError;
use crate::domain::{Caller, Kms};
use serde_json::{json, Value};

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let u = kms.key_last_usage(caller, &super::key_only(body)?).await?;
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
