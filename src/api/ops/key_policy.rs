//! `PutKeyPolicy`, `GetKeyPolicy`, `ListKeyPolicies`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Validator};
use crate::domain::{Caller, Kms, KmsError};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRequest {
    key_id: Option<String>,
    policy_name: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRequest {
    key_id: Option<String>,
    policy_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

fn check_name(name: Option<&str>) -> Result<(), ApiError> {
    match name {
        None | Some("default") => Ok(()),
        Some(_) => Err(KmsError::NotFound("No such policy exists".into()).into()),
    }
}

pub async fn put(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: PutRequest = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .required(&r.policy, "policy")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .policy_name(r.policy_name.as_deref())
        .policy(r.policy.as_deref())
        .finish()?;
    // RAM's policy (`AWS_RAM`) is RAM's to set; AWS's model: "the request fails with a
    // ValidationException".
    if r.policy_name.as_deref() == Some("AWS_RAM") {
        return Err(
            KmsError::Validation(crate::messages::AWS_RAM_POLICY_NOT_SETTABLE.into()).into(),
        );
    }
    check_name(r.policy_name.as_deref())?;
    kms.put_key_policy(
        caller,
        or_empty(&r.key_id),
        or_empty(&r.policy),
        r.bypass_policy_lockout_safety_check.unwrap_or(false),
    )
    .await?;
    Ok(json!({}))
}

pub async fn get(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: GetRequest = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .policy_name(r.policy_name.as_deref())
        .finish()?;
    check_name(r.policy_name.as_deref())?;
    let policy = kms.get_key_policy(caller, or_empty(&r.key_id)).await?;
    Ok(json!({ "Policy": policy, "PolicyName": "default" }))
}

pub async fn list(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: ListRequest = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .paging(r.limit, r.marker.as_deref())
        .finish()?;
    if r.marker.is_some() {
        return Err(KmsError::InvalidMarker.into());
    }
    let names = kms.list_key_policies(caller, or_empty(&r.key_id)).await?;
    Ok(json!({ "PolicyNames": names, "Truncated": false }))
}
