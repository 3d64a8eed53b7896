//! One module per AWS operation: its wire shapes, validation and call into the domain layer.
//! Which operations exist, and what each is, is [`crate::operations`]; [`dispatch`] routes them.

mod aliases;
mod create_key;
mod custom_key_stores;
mod decrypt;
mod derive_shared_secret;
mod describe_key;
mod encapsulate;
mod encrypt;
mod generate_data_key;
mod generate_data_key_pair;
mod generate_random;
mod get_key_last_usage;
mod get_public_key;
mod grants;
mod import;
mod key_policy;
mod lifecycle;
mod list_keys;
mod mac;
mod multi_region;
mod re_encrypt;
mod rotation;
mod sign;
mod tags;

use super::error::ApiError;
use crate::domain::{Caller, KeyMetadata, Kms};
use crate::vocab::KeyState;
use serde_json::{json, Value};

/// Whether a request names its key by an alias or alias ARN (a body that is no JSON object is
/// the handler's to refuse).
fn names_alias(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(rename = "KeyId", borrow)]
        key_id: Option<std::borrow::Cow<'a, str>>,
    }
    matches!(
        serde_json::from_slice::<Named>(body),
        Ok(Named { key_id: Some(id) }) if id.starts_with("alias/") || id.contains(":alias/")
    )
}

/// The handler of each operation of [`crate::operations::OPERATIONS`] (a test asks every one
/// of them through HTTP and gets no `UnknownOperationException`).
///
/// An operation that names its key by key id or key ARN only refuses an alias as AWS does: once
/// the request passes the model's constraints, before anything else is asked of it (the
/// handler's [`Validator::finish`](crate::api::wire::Validator::finish) answers so).
pub async fn dispatch(
    op: &str,
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Value, ApiError> {
    if crate::operations::find(op).is_some_and(|o| o.key_only) && names_alias(body) {
        let route = route(op, kms, caller, body);
        return crate::api::wire::ALIAS_REFUSED.scope((), route).await;
    }
    route(op, kms, caller, body).await
}

async fn route(op: &str, kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    match op {
        "CreateKey" => create_key::handle(kms, caller, body).await,
        "Decrypt" => decrypt::handle(kms, caller, body).await,
        "DescribeKey" => describe_key::handle(kms, caller, body).await,
        "Encrypt" => encrypt::handle(kms, caller, body).await,
        "GenerateDataKey" => generate_data_key::handle(kms, caller, body, true).await,
        "GenerateDataKeyWithoutPlaintext" => {
            generate_data_key::handle(kms, caller, body, false).await
        }
        "GenerateRandom" => generate_random::handle(kms, caller, body).await,
        "ListKeys" => list_keys::handle(kms, caller, body).await,
        "CreateGrant" => grants::create(kms, caller, body).await,
        "EnableKey" => lifecycle::enable(kms, caller, body).await,
        "EnableKeyRotation" => rotation::enable(kms, caller, body).await,
        "DisableKeyRotation" => rotation::disable(kms, caller, body).await,
        "GetKeyRotationStatus" => rotation::status(kms, caller, body).await,
        "RotateKeyOnDemand" => rotation::on_demand(kms, caller, body).await,
        "ListKeyRotations" => rotation::list(kms, caller, body).await,
        "DisableKey" => lifecycle::disable(kms, caller, body).await,
        "ScheduleKeyDeletion" => lifecycle::schedule_deletion(kms, caller, body).await,
        "CancelKeyDeletion" => lifecycle::cancel_deletion(kms, caller, body).await,
        "UpdateKeyDescription" => lifecycle::update_description(kms, caller, body).await,
        "CreateAlias" => aliases::create(kms, caller, body).await,
        "UpdateAlias" => aliases::update(kms, caller, body).await,
        "DeleteAlias" => aliases::delete(kms, caller, body).await,
        "ListAliases" => aliases::list(kms, caller, body).await,
        "TagResource" => tags::tag(kms, caller, body).await,
        "UntagResource" => tags::untag(kms, caller, body).await,
        "ListResourceTags" => tags::list(kms, caller, body).await,
        "ListGrants" => grants::list(kms, caller, body).await,
        "ListRetirableGrants" => grants::list_retirable(kms, caller, body).await,
        "RetireGrant" => grants::retire(kms, caller, body).await,
        "RevokeGrant" => grants::revoke(kms, caller, body).await,
        "PutKeyPolicy" => key_policy::put(kms, caller, body).await,
        "GetKeyPolicy" => key_policy::get(kms, caller, body).await,
        "ListKeyPolicies" => key_policy::list(kms, caller, body).await,
        "ReEncrypt" => re_encrypt::handle(kms, caller, body).await,
        "ReplicateKey" => multi_region::replicate(kms, caller, body).await,
        "Sign" => sign::sign(kms, caller, body).await,
        "Verify" => sign::verify(kms, caller, body).await,
        "GetPublicKey" => get_public_key::handle(kms, caller, body).await,
        "Encapsulate" => encapsulate::encapsulate(kms, caller, body).await,
        "Decapsulate" => encapsulate::decapsulate(kms, caller, body).await,
        "GenerateMac" => mac::generate(kms, caller, body).await,
        "VerifyMac" => mac::verify(kms, caller, body).await,
        "GenerateDataKeyPair" => generate_data_key_pair::handle(kms, caller, body, true).await,
        "GenerateDataKeyPairWithoutPlaintext" => {
            generate_data_key_pair::handle(kms, caller, body, false).await
        }
        "DeriveSharedSecret" => derive_shared_secret::handle(kms, caller, body).await,
        "GetParametersForImport" => import::parameters(kms, caller, body).await,
        "ImportKeyMaterial" => import::import(kms, caller, body).await,
        "DeleteImportedKeyMaterial" => import::delete(kms, caller, body).await,
        "UpdatePrimaryRegion" => multi_region::update_primary_region(kms, caller, body).await,
        "GetKeyLastUsage" => get_key_last_usage::handle(kms, caller, body).await,
        "CreateCustomKeyStore" => custom_key_stores::create(kms, caller, body).await,
        "DescribeCustomKeyStores" => custom_key_stores::describe(kms, caller, body).await,
        "UpdateCustomKeyStore" => custom_key_stores::update(kms, caller, body).await,
        "DeleteCustomKeyStore" => custom_key_stores::delete(kms, caller, body).await,
        "ConnectCustomKeyStore" => custom_key_stores::connect(kms, caller, body).await,
        "DisconnectCustomKeyStore" => custom_key_stores::disconnect(kms, caller, body).await,
        other => Err(ApiError::UnknownOperation(format!(
            "Unknown operation {other}"
        ))),
    }
}

/// A request that names one key and may carry grant tokens (`DescribeKey`, `GetPublicKey`):
/// the caller with its grant tokens, and the key id.
pub(super) fn key_request(caller: &Caller, body: &[u8]) -> Result<(Caller, String), ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        key_id: Option<String>,
        grant_tokens: Option<Vec<String>>,
    }
    let r: Request = crate::api::wire::parse(body)?;
    crate::api::wire::Validator::new()
        .key_id(&r.key_id)
        .grant_tokens(r.grant_tokens.as_ref())
        .finish()?;
    let caller = caller.for_request(r.grant_tokens, r.key_id.as_deref());
    Ok((caller, r.key_id.unwrap_or_default()))
}

/// A request that names one key and nothing else (`EnableKey`, `DisableKey`, …): the key id.
pub(super) fn key_only(body: &[u8]) -> Result<String, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        key_id: Option<String>,
    }
    let r: Request = crate::api::wire::parse(body)?;
    crate::api::wire::Validator::new()
        .key_id(&r.key_id)
        .finish()?;
    Ok(r.key_id.unwrap_or_default())
}

/// AWS timestamps on the JSON protocols are epoch seconds (with a fraction).
pub fn epoch(t: &chrono::DateTime<chrono::Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

pub fn key_metadata(m: &KeyMetadata) -> Value {
    let mut v = json!({
        "AWSAccountId": m.account_id,
        "KeyId": m.key_id,
        "Arn": m.arn,
        "CreationDate": epoch(&m.created_at),
        "Enabled": m.key_state == KeyState::Enabled,
        "Description": m.description,
        "KeyUsage": m.key_usage,
        "KeyState": m.key_state,
        "Origin": m.origin,
        "KeyManager": m.key_manager,
        "KeySpec": m.key_spec,
        "MultiRegion": m.multi_region,
    });
    if let Some(spec) = create_key::customer_master_key_spec(m.key_spec) {
        v["CustomerMasterKeySpec"] = json!(spec);
    }
    if let Some(id) = &m.current_key_material_id {
        v["CurrentKeyMaterialId"] = json!(id);
    }
    if let Some((model, valid_to)) = &m.expiration {
        v["ExpirationModel"] = json!(model);
        if let Some(t) = valid_to {
            v["ValidTo"] = json!(epoch(t));
        }
    }
    if !m.related.is_empty() {
        let key = |k: &crate::domain::RelatedKey| json!({"Arn": k.arn, "Region": k.region});
        let mut config = json!({
            "MultiRegionKeyType": if m.primary { "PRIMARY" } else { "REPLICA" },
            "ReplicaKeys": m.related.iter().filter(|k| !k.primary).map(key).collect::<Vec<_>>(),
        });
        // Left out, never null, should the family's primary not be among the keys read (one
        // refused for a failed seal, say).
        if let Some(p) = m.related.iter().find(|k| k.primary) {
            config["PrimaryKey"] = key(p);
        }
        v["MultiRegionConfiguration"] = config;
    }
    if let Some(d) = &m.deletion_date {
        v["DeletionDate"] = json!(epoch(d));
    }
    if let Some(id) = &m.xks_key_id {
        v["XksKeyConfiguration"] = json!({ "Id": id });
    }
    if let Some((store, cluster)) = &m.custom_key_store {
        v["CustomKeyStoreId"] = json!(store);
        if let Some(c) = cluster {
            v["CloudHsmClusterId"] = json!(c);
        }
    }
    // A primary waiting for its replicas: the window that starts when they are gone.
    if m.key_state == KeyState::PendingReplicaDeletion {
        if let Some(days) = m.pending_window_days {
            v["PendingDeletionWindowInDays"] = json!(days);
        }
    }
    put_algorithms(&mut v, &m.algorithms);
    v
}

/// `EncryptionAlgorithms`, `SigningAlgorithms`, `MacAlgorithms`, `KeyAgreementAlgorithms`:
/// each present when the key has any.
pub fn put_algorithms(v: &mut Value, a: &crate::domain::asymmetric::Algorithms) {
    for (field, list) in [
        ("EncryptionAlgorithms", json!(a.encryption)),
        ("SigningAlgorithms", json!(a.signing)),
        ("MacAlgorithms", json!(a.mac)),
        ("KeyAgreementAlgorithms", json!(a.key_agreement)),
    ] {
        if list.as_array().is_some_and(|l| !l.is_empty()) {
            v[field] = list;
        }
    }
}
