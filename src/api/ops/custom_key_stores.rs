//! `CreateCustomKeyStore`, `DescribeCustomKeyStores`, `UpdateCustomKeyStore`,
//! `DeleteCustomKeyStore`, `ConnectCustomKeyStore`, `DisconnectCustomKeyStore`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Page, Validator};
use crate::domain::custom_key_stores::{
    CustomKeyStoreUpdate, CustomKeyStoreView, NewCustomKeyStore, AWS_CLOUDHSM,
};
use crate::domain::{Caller, Kms, KmsError};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

const CLUSTER_ID_PATTERN: &str = "cluster-[2-7a-zA-Z]{11,16}";
const TYPES: &[&str] = &["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"];

fn cluster_id(s: &str) -> bool {
    s.strip_prefix("cluster-").is_some_and(|r| {
        (11..=16).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_alphabetic() || (b'2'..=b'7').contains(&b))
    })
}

/// The external key store members (`EXTERNAL_KEY_STORE`), read so that they are refused by
/// name rather than ignored: this service does not offer external key stores yet.
macro_rules! refuse_xks {
    ($r:expr) => {
        refuse_xks(&[
            ("XksProxyUriEndpoint", $r.xks_proxy_uri_endpoint.is_some()),
            ("XksProxyUriPath", $r.xks_proxy_uri_path.is_some()),
            (
                "XksProxyVpcEndpointServiceName",
                $r.xks_proxy_vpc_endpoint_service_name.is_some(),
            ),
            (
                "XksProxyVpcEndpointServiceOwner",
                $r.xks_proxy_vpc_endpoint_service_owner.is_some(),
            ),
            (
                "XksProxyAuthenticationCredential",
                $r.xks_proxy_authentication_credential.is_some(),
            ),
            ("XksProxyConnectivity", $r.xks_proxy_connectivity.is_some()),
        ])
    };
}

fn refuse_xks(members: &[(&str, bool)]) -> Result<(), ApiError> {
    match members.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(KmsError::Validation(format!(
            "{name} is for external key stores (EXTERNAL_KEY_STORE), which this service does not offer yet."
        ))
        .into()),
        None => Ok(()),
    }
}

/// The members of AWS's model both requests that name a cluster and a PIN share.
fn store_members(v: &mut Validator, cluster: &Option<String>, password: &Option<String>) {
    v.str_len(cluster.as_deref(), "cloudHsmClusterId", 19, 24)
        .pattern(
            cluster.as_deref(),
            "cloudHsmClusterId",
            CLUSTER_ID_PATTERN,
            cluster_id,
        )
        .str_len(password.as_deref(), "keyStorePassword", 7, 32);
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRequest {
    custom_key_store_name: Option<String>,
    cloud_hsm_cluster_id: Option<String>,
    trust_anchor_certificate: Option<String>,
    key_store_password: Option<String>,
    custom_key_store_type: Option<String>,
    xks_proxy_uri_endpoint: Option<Value>,
    xks_proxy_uri_path: Option<Value>,
    xks_proxy_vpc_endpoint_service_name: Option<Value>,
    xks_proxy_vpc_endpoint_service_owner: Option<Value>,
    xks_proxy_authentication_credential: Option<Value>,
    xks_proxy_connectivity: Option<Value>,
}

pub async fn create(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: CreateRequest = parse(body)?;
    refuse_xks!(r)?;
    let mut v = Validator::new();
    v.required(&r.custom_key_store_name, "customKeyStoreName")
        .str_len(
            r.custom_key_store_name.as_deref(),
            "customKeyStoreName",
            1,
            256,
        )
        .str_len(
            r.trust_anchor_certificate.as_deref(),
            "trustAnchorCertificate",
            1,
            5000,
        )
        .one_of(
            r.custom_key_store_type.as_deref(),
            "customKeyStoreType",
            TYPES,
        );
    store_members(&mut v, &r.cloud_hsm_cluster_id, &r.key_store_password);
    v.finish()?;
    let store_type = r
        .custom_key_store_type
        .unwrap_or_else(|| AWS_CLOUDHSM.into());
    if store_type == AWS_CLOUDHSM {
        let missing: Vec<&str> = [
            ("CloudHsmClusterId", r.cloud_hsm_cluster_id.is_none()),
            (
                "TrustAnchorCertificate",
                r.trust_anchor_certificate.is_none(),
            ),
            ("KeyStorePassword", r.key_store_password.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        if !missing.is_empty() {
            return Err(KmsError::Validation(format!(
                "A custom key store of type AWS_CLOUDHSM requires {}.",
                missing.join(", ")
            ))
            .into());
        }
    }
    let id = kms
        .create_custom_key_store(
            caller,
            NewCustomKeyStore {
                name: r.custom_key_store_name.unwrap_or_default(),
                store_type,
                cluster_id: r.cloud_hsm_cluster_id,
                trust_anchor: r.trust_anchor_certificate,
                password: r.key_store_password.map(SecretString::from),
            },
        )
        .await?;
    Ok(json!({ "CustomKeyStoreId": id }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeRequest {
    custom_key_store_id: Option<String>,
    custom_key_store_name: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

pub async fn describe(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: DescribeRequest = parse(body)?;
    Validator::new()
        .str_len(r.custom_key_store_id.as_deref(), "customKeyStoreId", 1, 64)
        .str_len(
            r.custom_key_store_name.as_deref(),
            "customKeyStoreName",
            1,
            256,
        )
        .paging(r.limit, r.marker.as_deref(), 1000)
        .finish()?;
    let id = r.custom_key_store_id.as_deref();
    let stores = kms
        .describe_custom_key_stores(caller, id, r.custom_key_store_name.as_deref())
        .await?;
    let page = Page::of(r.limit, &r.marker, 100);
    let mut v = page.of_list(&stores, "CustomKeyStores", |s| s.id.clone(), entry)?;
    if v.get("NextMarker").is_none() {
        v["Truncated"] = json!(false);
    }
    Ok(v)
}

/// One `CustomKeyStoresListEntry`.
fn entry(s: &CustomKeyStoreView) -> Value {
    let mut e = json!({
        "CustomKeyStoreId": s.id,
        "CustomKeyStoreName": s.name,
        "CustomKeyStoreType": s.store_type,
        "ConnectionState": s.connection_state,
        "CreationDate": super::epoch(&s.created_at),
    });
    if let Some(c) = &s.cluster_id {
        e["CloudHsmClusterId"] = json!(c);
    }
    if let Some(t) = &s.trust_anchor {
        e["TrustAnchorCertificate"] = json!(t);
    }
    if let Some(c) = &s.connection_error {
        e["ConnectionErrorCode"] = json!(c);
    }
    e
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateRequest {
    custom_key_store_id: Option<String>,
    new_custom_key_store_name: Option<String>,
    key_store_password: Option<String>,
    cloud_hsm_cluster_id: Option<String>,
    xks_proxy_uri_endpoint: Option<Value>,
    xks_proxy_uri_path: Option<Value>,
    xks_proxy_vpc_endpoint_service_name: Option<Value>,
    xks_proxy_vpc_endpoint_service_owner: Option<Value>,
    xks_proxy_authentication_credential: Option<Value>,
    xks_proxy_connectivity: Option<Value>,
}

pub async fn update(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: UpdateRequest = parse(body)?;
    refuse_xks!(r)?;
    let mut v = Validator::new();
    v.required(&r.custom_key_store_id, "customKeyStoreId")
        .str_len(r.custom_key_store_id.as_deref(), "customKeyStoreId", 1, 64)
        .str_len(
            r.new_custom_key_store_name.as_deref(),
            "newCustomKeyStoreName",
            1,
            256,
        );
    store_members(&mut v, &r.cloud_hsm_cluster_id, &r.key_store_password);
    v.finish()?;
    let update = CustomKeyStoreUpdate {
        new_name: r.new_custom_key_store_name,
        cluster_id: r.cloud_hsm_cluster_id,
        password: r.key_store_password.map(SecretString::from),
    };
    let id = or_empty(&r.custom_key_store_id);
    kms.update_custom_key_store(caller, id, update).await?;
    Ok(json!({}))
}

/// A request that names one custom key store (`DeleteCustomKeyStore`, `Connect…`,
/// `Disconnect…`): its id.
fn store_only(body: &[u8]) -> Result<String, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Request {
        custom_key_store_id: Option<String>,
    }
    let r: Request = parse(body)?;
    Validator::new()
        .required(&r.custom_key_store_id, "customKeyStoreId")
        .str_len(r.custom_key_store_id.as_deref(), "customKeyStoreId", 1, 64)
        .finish()?;
    Ok(r.custom_key_store_id.unwrap_or_default())
}

pub async fn delete(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    kms.delete_custom_key_store(caller, &store_only(body)?)
        .await?;
    Ok(json!({}))
}

pub async fn connect(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    kms.connect_custom_key_store(caller, &store_only(body)?)
        .await?;
    Ok(json!({}))
}

pub async fn disconnect(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    kms.disconnect_custom_key_store(caller, &store_only(body)?)
        .await?;
    Ok(json!({}))
}
