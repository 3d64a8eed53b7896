//! `DescribeKey`.

use crate::api::error::ApiError;
use crate::domain::{Caller, Kms};
use serde_json::{json, Value};

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let (caller, key_id) = super::key_request(caller, body)?;
    let meta = kms.describe_key(&caller, &key_id).await?;
    Ok(json!({ "KeyMetadata": super::key_metadata(&meta) }))
}
