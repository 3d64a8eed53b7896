//! `EnableKeyRotation`, `DisableKeyRotation`, `GetKeyRotationStatus`, `RotateKeyOnDemand`,
//! `ListKeyRotations`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Validator};
use crate::domain::rotation::{material_id, ROTATION_DAYS};
use crate::domain::{Caller, Kms, KmsError};
use serde::Deserialize;
use serde_json::{json, Value};

/// `DisableKeyRotation`, `GetKeyRotationStatus` and `RotateKeyOnDemand`: `KeyId` alone. Each
/// operation reads only the members its model has (AWS ignores the others, whatever their type).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyOnly {
    key_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Enable {
    key_id: Option<String>,
    rotation_period_in_days: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listing {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
    include_key_material: Option<String>,
}

fn key_only(body: &[u8]) -> Result<KeyOnly, ApiError> {
    let r: KeyOnly = parse(body)?;
    Validator::new().key_id(&r.key_id).finish()?;
    Ok(r)
}

pub async fn enable(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Enable = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .int_range(
            r.rotation_period_in_days,
            "rotationPeriodInDays",
            *ROTATION_DAYS.start(),
            *ROTATION_DAYS.end(),
        )
        .finish()?;
    kms.enable_key_rotation(caller, or_empty(&r.key_id), r.rotation_period_in_days)
        .await?;
    Ok(json!({}))
}

pub async fn disable(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = key_only(body)?;
    kms.disable_key_rotation(caller, or_empty(&r.key_id))
        .await?;
    Ok(json!({}))
}

pub async fn status(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = key_only(body)?;
    let s = kms.key_rotation_status(caller, or_empty(&r.key_id)).await?;
    let mut v = json!({ "KeyRotationEnabled": s.enabled, "KeyId": s.key_arn });
    // The schedule only while rotation is on: AWS's answer for a key whose rotation is off is
    // `KeyId` and `KeyRotationEnabled` alone (recorded).
    if let Some(t) = &s.on_demand_start {
        v["OnDemandRotationStartDate"] = json!(super::epoch(t));
    }
    if s.enabled {
        if let Some(p) = s.period_days {
            v["RotationPeriodInDays"] = json!(p);
        }
        if let Some(n) = &s.next {
            v["NextRotationDate"] = json!(super::epoch(n));
        }
    }
    Ok(v)
}

pub async fn on_demand(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r = key_only(body)?;
    let id = kms
        .rotate_key_on_demand(caller, or_empty(&r.key_id))
        .await?;
    Ok(json!({ "KeyId": id }))
}

pub async fn list(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Listing = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .paging(r.limit, r.marker.as_deref())
        .one_of(
            r.include_key_material.as_deref(),
            "includeKeyMaterial",
            &["ALL_KEY_MATERIAL", "ROTATIONS_ONLY"],
        )
        .finish()?;
    let all_material = r.include_key_material.as_deref() == Some("ALL_KEY_MATERIAL");
    let k = kms
        .list_key_rotations(
            caller,
            or_empty(&r.key_id),
            r.include_key_material.is_some(),
        )
        .await?;
    let state = |version: i32| {
        if version == k.current_version {
            "CURRENT"
        } else {
            "NON_CURRENT"
        }
    };
    let mut all: Vec<Value> = Vec::new();
    match &k.imported {
        // Imported material: one entry per material, with its import state, expiry and
        // description; ROTATIONS_ONLY lists those that became current by a rotation.
        Some(materials) => {
            for m in materials {
                if !all_material && m.rotated_at.is_none() {
                    continue;
                }
                let mut e = json!({
                    "KeyId": k.arn,
                    "KeyMaterialId": material_id(&k.blob_id, m.version),
                    "KeyMaterialState": m.state,
                    "ImportState": if m.imported { "IMPORTED" } else { "PENDING_IMPORT" },
                });
                if let Some(d) = &m.description {
                    e["KeyMaterialDescription"] = json!(d);
                }
                if let Some((model, valid_to)) = &m.expiration {
                    e["ExpirationModel"] = json!(model);
                    if let Some(t) = valid_to {
                        e["ValidTo"] = json!(super::epoch(t));
                    }
                }
                if let Some(t) = &m.rotated_at {
                    e["RotationDate"] = json!(super::epoch(t));
                    e["RotationType"] = json!("ON_DEMAND");
                }
                all.push(e);
            }
        }
        None => {
            // ALL_KEY_MATERIAL adds the first material (which no rotation made).
            if all_material && k.current_version > 0 {
                all.push(json!({
                    "KeyId": k.arn,
                    "KeyMaterialId": material_id(&k.blob_id, 1),
                    "KeyMaterialState": state(1),
                }));
            }
            all.extend(k.rotations.iter().map(|x| {
                json!({
                    "KeyId": k.arn,
                    "KeyMaterialId": material_id(&k.blob_id, x.version),
                    "KeyMaterialState": state(x.version),
                    "RotationDate": super::epoch(&x.created_at),
                    "RotationType": x.rotation_type,
                })
            }));
        }
    }
    let limit = r.limit.unwrap_or(100) as usize;
    let start = match &r.marker {
        None => 0,
        Some(m) => m.parse::<usize>().map_err(|_| KmsError::InvalidMarker)?,
    };
    let rest = all.get(start..).unwrap_or(&[]);
    let shown: Vec<Value> = rest.iter().take(limit).cloned().collect();
    let truncated = rest.len() > limit;
    let mut v = json!({ "Rotations": shown, "Truncated": truncated });
    if truncated {
        v["NextMarker"] = json!((start + limit).to_string());
    }
    Ok(v)
}
