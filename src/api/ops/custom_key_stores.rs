//! `CreateCustomKeyStore`, `DescribeCustomKeyStores`, `UpdateCustomKeyStore`,
//! `DeleteCustomKeyStore`, `ConnectCustomKeyStore`, `DisconnectCustomKeyStore`.

use crate::api::error::ApiError;
use crate::api::wire::{or_empty, parse, Page, Validator};
use crate::domain::custom_key_stores::{
    CustomKeyStoreUpdate, CustomKeyStoreView, NewCustomKeyStore, AWS_CLOUDHSM,
};
use crate::domain::external_key_stores::XksProxyInput;
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
    xks_proxy_uri_endpoint: Option<String>,
    xks_proxy_uri_path: Option<String>,
    xks_proxy_vpc_endpoint_service_name: Option<String>,
    xks_proxy_vpc_endpoint_service_owner: Option<String>,
    xks_proxy_authentication_credential: Option<Credential>,
    xks_proxy_connectivity: Option<String>,
}

/// `XksProxyAuthenticationCredential`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Credential {
    access_key_id: Option<String>,
    raw_secret_access_key: Option<String>,
}

pub async fn create(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: CreateRequest = parse(body)?;
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
    let proxy = proxy_members!(r);
    proxy.check(v)?;
    let (id, secret) = (proxy.id, proxy.secret);
    let xks = match (
        &r.xks_proxy_uri_endpoint,
        &r.xks_proxy_uri_path,
        id,
        secret,
        &r.xks_proxy_connectivity,
    ) {
        (Some(e), Some(p), Some(i), Some(s), Some(c)) => Some(XksProxyInput {
            uri_endpoint: e.clone(),
            uri_path: p.clone(),
            access_key_id: i.to_string(),
            secret: SecretString::from(s.to_string()),
            connectivity: c.clone(),
        }),
        _ => None,
    };
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
                xks,
            },
        )
        .await?;
    Ok(json!({ "CustomKeyStoreId": id }))
}

/// The external key store members of a request (`CreateCustomKeyStore` and
/// `UpdateCustomKeyStore` name them alike).
struct ProxyMembers<'a> {
    endpoint: Option<&'a str>,
    path: Option<&'a str>,
    connectivity: Option<&'a str>,
    id: Option<&'a str>,
    secret: Option<&'a str>,
    /// `XksProxyAuthenticationCredential` given (the model requires both its members).
    credential: bool,
    /// `XksProxyVpcEndpointServiceName`, `XksProxyVpcEndpointServiceOwner`.
    vpc_name: Option<&'a str>,
    vpc_owner: Option<&'a str>,
}

/// The [`ProxyMembers`] of request `r`.
macro_rules! proxy_members {
    ($r:expr) => {{
        let credential = $r.xks_proxy_authentication_credential.as_ref();
        ProxyMembers {
            endpoint: $r.xks_proxy_uri_endpoint.as_deref(),
            path: $r.xks_proxy_uri_path.as_deref(),
            connectivity: $r.xks_proxy_connectivity.as_deref(),
            id: credential.and_then(|c| c.access_key_id.as_deref()),
            secret: credential.and_then(|c| c.raw_secret_access_key.as_deref()),
            credential: credential.is_some(),
            vpc_name: $r.xks_proxy_vpc_endpoint_service_name.as_deref(),
            vpc_owner: $r.xks_proxy_vpc_endpoint_service_owner.as_deref(),
        }
    }};
}
use proxy_members;

impl ProxyMembers<'_> {
    /// The members as AWS's model constrains them, added to the request's other violations
    /// (`v`) and reported with them; then the VPC endpoint service members refused (this
    /// service reaches proxies at public endpoints).
    fn check(&self, mut v: Validator) -> Result<(), ApiError> {
        const ID: &str = "xksProxyAuthenticationCredential.accessKeyId";
        const SECRET: &str = "xksProxyAuthenticationCredential.rawSecretAccessKey";
        v.str_len(self.endpoint, "xksProxyUriEndpoint", 10, 128)
            .pattern(
                self.endpoint,
                "xksProxyUriEndpoint",
                "^https://[a-zA-Z0-9.-]+$",
                uri_endpoint,
            )
            .str_len(self.path, "xksProxyUriPath", 10, 128)
            .pattern(
                self.path,
                "xksProxyUriPath",
                "^(/[a-zA-Z0-9\\/_-]+/kms/xks/v\\d{1,2})$|^(/kms/xks/v\\d{1,2})$",
                uri_path,
            )
            .one_of(
                self.connectivity,
                "xksProxyConnectivity",
                &["PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"],
            );
        if self.credential {
            v.required(&self.id, ID).required(&self.secret, SECRET);
        }
        v.str_len(self.id, ID, 20, 30)
            .pattern(self.id, ID, "^[A-Z2-7]+$", |s| {
                s.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
            })
            .str_len(self.secret, SECRET, 43, 64)
            .pattern(self.secret, SECRET, "^[a-zA-Z0-9\\/+=]+$", |s| {
                s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/+=".contains(&b))
            });
        v.str_len(self.vpc_name, "xksProxyVpcEndpointServiceName", 20, 64)
            .pattern(
                self.vpc_name,
                "xksProxyVpcEndpointServiceName",
                "^(com|eu)\\.amazonaws\\.vpce\\.([a-z]+-){2,3}\\d+\\.vpce-svc-[0-9a-z]+$",
                vpc_service_name,
            )
            .str_len(self.vpc_owner, "xksProxyVpcEndpointServiceOwner", 12, 12)
            .pattern(
                self.vpc_owner,
                "xksProxyVpcEndpointServiceOwner",
                "^[0-9]{12}$",
                |s| s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()),
            );
        v.finish()?;
        if self.vpc_name.is_some() || self.vpc_owner.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "XksProxyVpcEndpointServiceName: this service reaches its proxies at a public endpoint (PUBLIC_ENDPOINT).".into(),
            )
            .into());
        }
        Ok(())
    }
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
        .paging(r.limit, r.marker.as_deref())
        .finish()?;
    let id = r.custom_key_store_id.as_deref();
    let stores = kms
        .describe_custom_key_stores(caller, id, r.custom_key_store_name.as_deref())
        .await?;
    let page = Page::of(r.limit, &r.marker, 100, 1000);
    let mut v = page.of_list(&stores, "CustomKeyStores", |s| s.id.clone(), entry)?;
    if v.get("NextMarker").is_none() {
        v["Truncated"] = json!(false);
    }
    Ok(v)
}

/// `XksProxyUriEndpoint`: AWS's `^https://[a-zA-Z0-9.-]+$` (no path, no trailing slash), and, as an on-premises
/// proxy may listen elsewhere than 443, a port after the host (`https://host:8443`).
fn uri_endpoint(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://") else {
        return false;
    };
    let (host, port) = match rest.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-".contains(&b))
        && port.is_none_or(|p| {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
        })
}

/// `^(com|eu)\.amazonaws\.vpce\.([a-z]+-){2,3}\d+\.vpce-svc-[0-9a-z]+$`.
fn vpc_service_name(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("com.amazonaws.vpce.")
        .or_else(|| s.strip_prefix("eu.amazonaws.vpce."))
    else {
        return false;
    };
    let Some((region, svc)) = rest.split_once(".vpce-svc-") else {
        return false;
    };
    let parts: Vec<&str> = region.split('-').collect();
    let (last, words) = parts.split_last().expect("split yields one part at least");
    (2..=3).contains(&words.len())
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
        && !svc.is_empty()
        && svc
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// `XksProxyUriPath`: `/kms/xks/v<n>` under an optional prefix.
fn uri_path(s: &str) -> bool {
    let Some(i) = s.rfind("/kms/xks/v") else {
        return false;
    };
    let (prefix, v) = (&s[..i], &s[i + "/kms/xks/v".len()..]);
    (1..=2).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_digit())
        && (prefix.is_empty()
            || (prefix.starts_with('/')
                && prefix.len() > 1
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))))
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
    if let Some((endpoint, path, id, connectivity)) = &s.xks {
        e["XksProxyConfiguration"] = json!({
            "Connectivity": connectivity,
            "AccessKeyId": id,
            "UriEndpoint": endpoint,
            "UriPath": path,
        });
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
    xks_proxy_uri_endpoint: Option<String>,
    xks_proxy_uri_path: Option<String>,
    xks_proxy_vpc_endpoint_service_name: Option<String>,
    xks_proxy_vpc_endpoint_service_owner: Option<String>,
    xks_proxy_authentication_credential: Option<Credential>,
    xks_proxy_connectivity: Option<String>,
}

pub async fn update(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: UpdateRequest = parse(body)?;
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
    let proxy = proxy_members!(r);
    proxy.check(v)?;
    // Both members or neither: `check` refused a credential with one.
    let credential = proxy
        .id
        .zip(proxy.secret)
        .map(|(i, s)| (i.to_string(), SecretString::from(s.to_string())));
    let update = CustomKeyStoreUpdate {
        new_name: r.new_custom_key_store_name,
        cluster_id: r.cloud_hsm_cluster_id,
        password: r.key_store_password.map(SecretString::from),
        xks_endpoint: r.xks_proxy_uri_endpoint,
        xks_path: r.xks_proxy_uri_path,
        xks_credential: credential,
        xks_connectivity: r.xks_proxy_connectivity,
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
