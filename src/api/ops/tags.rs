//! `TagResource`, `UntagResource`, `ListResourceTags`.

use crate::api::error::ApiError;
use crate::api::wire::{into_tags, or_empty, parse, Page, TagIn, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagRequest {
    key_id: Option<String>,
    tags: Option<Vec<TagIn>>,
}

pub async fn tag(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: TagRequest = parse(body)?;
    let mut v = Validator::new();
    v.required(&r.key_id, "keyId")
        .required(&r.tags, "tags")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048);
    v.tags(r.tags.as_ref()).finish()?;
    let tags = into_tags(r.tags);
    kms.tag_resource(caller, or_empty(&r.key_id), tags).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagRequest {
    key_id: Option<String>,
    tag_keys: Option<Vec<String>>,
}

pub async fn untag(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: UntagRequest = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .required(&r.tag_keys, "tagKeys")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .list_of_strings(r.tag_keys.as_ref(), "tagKeys", 1, 128)
        .finish()?;
    kms.untag_resource(caller, or_empty(&r.key_id), r.tag_keys.unwrap_or_default())
        .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub async fn list(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: ListRequest = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .paging(r.limit, r.marker.as_deref())
        .finish()?;
    let tags = kms.list_resource_tags(caller, or_empty(&r.key_id)).await?;
    let page = Page::of(r.limit, &r.marker, 50, 50);
    page.of_list(
        &tags,
        "Tags",
        |t| t.key.clone(),
        |t| json!({"TagKey": t.key, "TagValue": t.value}),
    )
}
