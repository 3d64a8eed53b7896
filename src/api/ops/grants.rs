//! `CreateGrant`, `ListGrants`, `ListRetirableGrants`, `RetireGrant`, `RevokeGrant`.

use crate::api::error::ApiError;
use crate::api::wire::{self, or_empty, parse, Context, Page, Validator};
use crate::domain::grants::Grant;
use crate::domain::grants::{Constraints, CreateGrantInput};
use crate::domain::{Caller, Kms, KmsError};
use serde::Deserialize;
use serde_json::{json, Value};

/// `Constraints` as sent: every member is read or refused, never dropped (a member dropped
/// would make the grant wider than asked). A member of the wrong type is a
/// `SerializationException`, as AWS's framework answers it.
fn constraints_in(v: Option<Value>) -> Result<Option<Constraints>, ApiError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(_) => {
            return Err(ApiError::Serialization(
                "Constraints must be a structure.".into(),
            ))
        }
    };
    let mut c = Constraints::default();
    for (name, value) in obj {
        let ctx = || -> Result<Context, ApiError> {
            serde_json::from_value(value.clone()).map_err(|_| {
                ApiError::Serialization(format!(
                    "Constraints.{name} must be a map of strings to strings."
                ))
            })
        };
        match name.as_str() {
            "EncryptionContextEquals" => c.equals = Some(ctx()?),
            "EncryptionContextSubset" => c.subset = Some(ctx()?),
            "SourceArn" => {
                return Err(ApiError::from(KmsError::Validation(
                    "The SourceArn grant constraint applies to grants for AWS service principals, which this service does not support.".into(),
                )))
            }
            other => {
                return Err(KmsError::Validation(format!(
                    "Constraints has an unknown member {other}: the grant would allow more than asked, so it is not created."
                ))
                .into())
            }
        }
    }
    if c.equals.is_some() && c.subset.is_some() {
        return Err(KmsError::Validation(crate::messages::MORE_THAN_ONE_CONSTRAINT.into()).into());
    }
    // An empty structure constrains nothing.
    Ok((c.equals.is_some() || c.subset.is_some()).then_some(c))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRequest {
    key_id: Option<String>,
    grantee_principal: Option<String>,
    retiring_principal: Option<String>,
    operations: Option<Vec<String>>,
    constraints: Option<Value>,
    grant_tokens: Option<Vec<String>>,
    name: Option<String>,
    dry_run: Option<bool>,
    grantee_service_principal: Option<String>,
    retiring_service_principal: Option<String>,
}

/// Grants for AWS service principals (`GranteeServicePrincipal`, `RetiringServicePrincipal`):
/// refused, never ignored, as this service has no AWS services to grant to. Ignoring the member
/// would create a grant for a principal other than the one asked for, or list other grants.
fn refuse_service_principals(members: &[(&str, &Option<String>)]) -> Result<(), ApiError> {
    match members.iter().find(|(_, v)| v.is_some()) {
        Some((name, _)) => Err(KmsError::UnsupportedOperation(format!(
            "{name} is not supported: grants for AWS service principals need AWS services, which this service does not have."
        ))
        .into()),
        None => Ok(()),
    }
}

pub async fn create(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: CreateRequest = parse(body)?;
    refuse_service_principals(&[
        ("GranteeServicePrincipal", &r.grantee_service_principal),
        ("RetiringServicePrincipal", &r.retiring_service_principal),
    ])?;
    let mut v = Validator::new();
    v.required(&r.key_id, "keyId")
        .required(&r.grantee_principal, "granteePrincipal")
        .required(&r.operations, "operations")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .principal(r.grantee_principal.as_deref(), "granteePrincipal")
        .principal(r.retiring_principal.as_deref(), "retiringPrincipal")
        .str_len(r.name.as_deref(), "name", 1, 256)
        .pattern(r.name.as_deref(), "name", wire::NAME_PATTERN, wire::name_ok)
        .grant_tokens(r.grant_tokens.as_ref());
    v.list_of_words(
        r.operations.as_ref(),
        "operations",
        &crate::operations::grant_operation_names(),
    )
    .finish()?;
    let ops = r.operations.unwrap_or_default();
    if ops.is_empty() {
        return Err(KmsError::Validation("1 validation error detected: Value '[]' at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1".into()).into());
    }
    if ops.iter().all(|o| o == "CreateGrant") {
        return Err(KmsError::Validation(crate::messages::GRANT_ONLY_CREATE_GRANT.into()).into());
    }
    let constraints = constraints_in(r.constraints)?;
    let (grant_id, token) = kms
        .create_grant(
            &caller.for_request(r.grant_tokens, r.key_id.as_deref()),
            CreateGrantInput {
                key_id: r.key_id.unwrap_or_default(),
                grantee: r.grantee_principal.unwrap_or_default(),
                retiring: r.retiring_principal,
                operations: ops,
                constraints,
                name: r.name,
                dry_run: r.dry_run.unwrap_or(false),
            },
        )
        .await?;
    Ok(json!({ "GrantToken": token, "GrantId": grant_id }))
}

fn grant_json(g: &Grant) -> Value {
    let mut v = json!({
        "KeyId": g.key_arn,
        "GrantId": g.grant_id,
        "CreationDate": super::epoch(&g.created_at),
        "GranteePrincipal": g.grantee_principal,
        "IssuingAccount": g.issuing_account,
        "Operations": g.operations,
    });
    // AWS lists a grant created without a name with an empty one.
    v["Name"] = json!(g.name.as_deref().unwrap_or_default());
    if let Some(r) = &g.retiring_principal {
        v["RetiringPrincipal"] = json!(r);
    }
    if let Some(c) = &g.constraints {
        v["Constraints"] = c.clone();
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
    grant_id: Option<String>,
    grantee_principal: Option<String>,
    grantee_service_principal: Option<String>,
}

pub async fn list(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: ListRequest = parse(body)?;
    refuse_service_principals(&[("GranteeServicePrincipal", &r.grantee_service_principal)])?;
    Validator::new()
        .key_id(&r.key_id)
        .paging(r.limit, r.marker.as_deref())
        .str_len(r.grant_id.as_deref(), "grantId", 1, 128)
        .principal(r.grantee_principal.as_deref(), "granteePrincipal")
        .finish()?;
    if let Some(id) = &r.grant_id {
        crate::domain::grants::check_grant_id(id)?;
    }
    let grants = kms.list_grants(caller, or_empty(&r.key_id)).await?;
    // A filter that names no principal is refused (as AWS does), told only to a caller that
    // may list the key's grants.
    if let Some(p) = &r.grantee_principal {
        kms.check_listed_principal(p).await?;
    }
    // Filtered as grants; only the page is rendered.
    let shown: Vec<&Grant> = grants
        .iter()
        .filter(|g| r.grant_id.as_ref().is_none_or(|id| &g.grant_id == id))
        .filter(|g| {
            r.grantee_principal
                .as_ref()
                .is_none_or(|p| &g.grantee_principal == p)
        })
        .collect();
    let page = Page::of(r.limit, &r.marker, 50, 100);
    page.of_list(&shown, "Grants", |g| g.grant_id.clone(), |g| grant_json(g))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRetirableRequest {
    limit: Option<i64>,
    marker: Option<String>,
    retiring_principal: Option<String>,
    retiring_service_principal: Option<String>,
}

pub async fn list_retirable(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: ListRetirableRequest = parse(body)?;
    refuse_service_principals(&[("RetiringServicePrincipal", &r.retiring_service_principal)])?;
    Validator::new()
        .required(&r.retiring_principal, "retiringPrincipal")
        .principal(r.retiring_principal.as_deref(), "retiringPrincipal")
        .paging(r.limit, r.marker.as_deref())
        .finish()?;
    let (grants, next) = kms
        .list_retirable_grants(
            caller,
            or_empty(&r.retiring_principal),
            Page::of(r.limit, &r.marker, 50, 100).limit(),
            r.marker.as_deref(),
        )
        .await?;
    Ok(Page::cut(
        "Grants",
        grants.iter().map(grant_json).collect(),
        next,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetireRequest {
    grant_token: Option<String>,
    key_id: Option<String>,
    grant_id: Option<String>,
    dry_run: Option<bool>,
}

pub async fn retire(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: RetireRequest = parse(body)?;
    Validator::new()
        .str_len(r.grant_token.as_deref(), "grantToken", 1, 8192)
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .str_len(r.grant_id.as_deref(), "grantId", 1, 128)
        .finish()?;
    kms.retire_grant(
        caller,
        r.grant_token.as_deref(),
        r.key_id.as_deref(),
        r.grant_id.as_deref(),
        r.dry_run.unwrap_or(false),
    )
    .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RevokeRequest {
    key_id: Option<String>,
    grant_id: Option<String>,
    dry_run: Option<bool>,
}

pub async fn revoke(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: RevokeRequest = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .required(&r.grant_id, "grantId")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .str_len(r.grant_id.as_deref(), "grantId", 1, 128)
        .finish()?;
    kms.revoke_grant(
        caller,
        or_empty(&r.key_id),
        or_empty(&r.grant_id),
        r.dry_run.unwrap_or(false),
    )
    .await?;
    Ok(json!({}))
}
