//! `CreateAlias`, `UpdateAlias`, `DeleteAlias`, `ListAliases`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Page, Validator};
use crate::domain::{keyid, Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Target {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

fn target(body: &[u8]) -> Result<(String, String), ApiError> {
    let r: Target = parse(body)?;
    Validator::new()
        .alias_name(&r.alias_name)
        .required(&r.target_key_id, "targetKeyId")
        .str_len(r.target_key_id.as_deref(), "targetKeyId", 1, 2048)
        .finish()?;
    Ok((
        r.alias_name.unwrap_or_default(),
        r.target_key_id.unwrap_or_default(),
    ))
}

pub async fn create(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let (name, target) = target(body)?;
    kms.create_alias(caller, &name, &target).await?;
    Ok(json!({}))
}

pub async fn update(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let (name, target) = target(body)?;
    kms.update_alias(caller, &name, &target).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Name {
    alias_name: Option<String>,
}

pub async fn delete(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Name = parse(body)?;
    Validator::new().alias_name(&r.alias_name).finish()?;
    kms.delete_alias(caller, or_empty(&r.alias_name)).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct List {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub async fn list(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: List = parse(body)?;
    Validator::new()
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .paging(r.limit, r.marker.as_deref())
        .finish()?;
    let limit = Page::of(r.limit, &r.marker, 50, 100).limit();
    let (aliases, predefined) = kms
        .list_aliases(caller, r.key_id.as_deref(), limit, r.marker.as_deref())
        .await?;
    // Aliases and AWS's predefined ones (no key yet: name and ARN only, as AWS lists them),
    // by name.
    let mut listed: Vec<(String, Value)> = aliases
        .iter()
        .map(|a| {
            let target = match a.target_mrk {
                Some(m) => crate::domain::keyid::PublicId::Mrk(m).to_string(),
                None => a.key_id.to_string(),
            };
            let v = json!({
                "AliasName": a.alias_name,
                "AliasArn": keyid::alias_arn(&a.region, &a.account_id, &a.alias_name),
                "TargetKeyId": target,
                "CreationDate": super::epoch(&a.created_at),
                "LastUpdatedDate": super::epoch(&a.updated_at),
            });
            (a.alias_name.clone(), v)
        })
        .chain(predefined.iter().map(|n| {
            let v = json!({
                "AliasName": n,
                "AliasArn": keyid::alias_arn(&caller.region, &caller.account_id, n),
            });
            (n.clone(), v)
        }))
        .collect();
    // Both come after the marker: the page is the first `limit` of them.
    listed.sort_by(|x, y| x.0.cmp(&y.0));
    let next = (listed.len() > limit).then(|| listed[limit - 1].0.clone());
    listed.truncate(limit);
    let shown = listed.into_iter().map(|l| l.1).collect();
    Ok(Page::cut("Aliases", shown, next))
}
