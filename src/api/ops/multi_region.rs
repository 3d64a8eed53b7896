//! `ReplicateKey`, `UpdatePrimaryRegion`.

use crate::api::error::ApiError;
use crate::api::wire::{into_tags, or_empty, parse, TagIn, Validator};
use crate::domain::multi_region::ReplicateInput;
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Replicate {
    key_id: Option<String>,
    replica_region: Option<String>,
    policy: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    description: Option<String>,
    tags: Option<Vec<TagIn>>,
}

pub async fn replicate(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Replicate = parse(body)?;
    let mut v = Validator::new();
    v.key_id(&r.key_id)
        .required(&r.replica_region, "replicaRegion")
        .region(r.replica_region.as_deref(), "replicaRegion")
        .policy(r.policy.as_deref())
        .str_len(r.description.as_deref(), "description", 0, 8192)
        .tags(r.tags.as_ref());
    v.finish()?;
    let out = kms
        .replicate_key(
            caller,
            ReplicateInput {
                key_id: r.key_id.unwrap_or_default(),
                replica_region: r.replica_region.unwrap_or_default(),
                policy: r.policy,
                bypass_policy_lockout_safety_check: r
                    .bypass_policy_lockout_safety_check
                    .unwrap_or(false),
                description: r.description.unwrap_or_default(),
                tags: into_tags(r.tags),
            },
        )
        .await?;
    let tags: Vec<Value> = out
        .tags
        .iter()
        .map(|t| json!({"TagKey": t.key, "TagValue": t.value}))
        .collect();
    // AWS answers with the replica in its transient `Creating` state (disabled), which turns
    // to `Enabled` (or `PendingImport`) "after a few seconds" (recorded). Here the replica is
    // whole when the call returns: `DescribeKey` shows its settled state at once.
    let mut metadata = super::key_metadata(&out.metadata);
    metadata["KeyState"] = json!("Creating");
    metadata["Enabled"] = json!(false);
    // Nor has it a current key material yet in AWS's answer (recorded).
    if let Some(m) = metadata.as_object_mut() {
        m.remove("CurrentKeyMaterialId");
    }
    let mut v = json!({
        "ReplicaKeyMetadata": metadata,
        "ReplicaPolicy": out.policy,
    });
    // AWS omits the member when the replica has no tags (never `[]`).
    if !tags.is_empty() {
        v["ReplicaTags"] = json!(tags);
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdatePrimary {
    key_id: Option<String>,
    primary_region: Option<String>,
}

pub async fn update_primary_region(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Value, ApiError> {
    let r: UpdatePrimary = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .required(&r.primary_region, "primaryRegion")
        .region(r.primary_region.as_deref(), "primaryRegion")
        .finish()?;
    kms.update_primary_region(caller, or_empty(&r.key_id), or_empty(&r.primary_region))
        .await?;
    Ok(json!({}))
}
