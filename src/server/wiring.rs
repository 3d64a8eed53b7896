//! Wiring of the layers: the store, the token and the domain, opened from the settings with
//! the start-up checks that fail fast in one sentence an operator can act on.

use crate::config::Settings;
use crate::domain::custom_key_stores::Partition;
use crate::domain::operator::Operator;
use crate::domain::{CacheSizes, Kms};
use crate::hsm::{Hsm, HsmConfig};
use crate::store::Store;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

pub async fn connect_store(s: &Settings) -> Result<Arc<dyn Store>> {
    let store = crate::store::connect(
        &s.database_url,
        s.database_max_connections,
        s.commit_timeout(),
    )
    .await
    .map_err(|e| {
        let what = if s.database_url.starts_with("sqlite:") {
            "the SQLite database cannot be opened"
        } else {
            "Postgres is unreachable"
        };
        anyhow!("{what} at {}: {e}", s.database_url_redacted())
    })?;
    // A database a newer release migrated is never served, migrated or changed by this one,
    // unless that release's migrations were additive for this build (its schema floor).
    let v = store.schema_versions().await?;
    crate::store::refuse_newer_schema(v).map_err(|e| anyhow!(e))?;
    Ok(store)
}

/// [`connect_store`] for a command that does not migrate (`kms admin`, `kms hsm`, `kms backup`):
/// a database an older release left (this release's migrations not applied yet) is refused
/// in one sentence, before this build reads tables that are not there.
pub async fn connect_migrated_store(s: &Settings) -> Result<Arc<dyn Store>> {
    let store = connect_store(s).await?;
    let v = store.schema_versions().await?;
    if v.database > 0 && v.database < v.build {
        bail!(
            "the database's schema is at version {}, older than this build's {}: run this release's `kms init` (or start its `kms serve`) first, which migrates it",
            v.database,
            v.build
        );
    }
    Ok(store)
}

pub async fn open_hsm(s: &Settings) -> Result<Hsm> {
    let cfg = HsmConfig {
        strict_login: false,
        module: s.hsm.module.clone(),
        token_label: s.hsm.token_label.clone(),
        failover_labels: s.hsm.failover_labels.clone(),
        pin: s.pin().map_err(|e| anyhow!(e))?,
        pin_file: s
            .hsm
            .pin
            .is_none()
            .then(|| s.hsm.pin_file.clone())
            .flatten(),
        pool_size: s.hsm.session_pool_size,
        inline_calls: s.hsm.inline_calls,
        oaep_sha256_import_in_service: s.hsm.oaep_sha256_import_in_service,
    };
    Ok(tokio::task::spawn_blocking(move || Hsm::open(&cfg)).await??)
}

/// The HSM (with its service keys verified) and the domain layer over `store`.
pub async fn open_kms(s: &Settings, store: Arc<dyn Store>) -> Result<Kms> {
    let version = store
        .current_root_version()
        .await?
        .context("the database records no root key; run `kms init` first")?;
    let mac_version = store.current_mac_version().await?.unwrap_or(1);
    let hsm = open_hsm(s).await?;
    let h = hsm.clone();
    tokio::task::spawn_blocking(move || {
        // The MAC key first: the service keys are loaded with the MAC key version in use.
        h.load_mac_key(h.newest_mac_key_from(mac_version as u32)?)?;
        h.load_service_keys(version as u32)?;
        // Tokens initialised before the audit trail existed get their audit key now.
        if h.ensure_audit_key()? {
            tracing::info!("created the audit signing key in the token");
        }
        Ok::<_, crate::hsm::HsmError>(())
    })
    .await??;
    Ok(Kms::new(
        hsm,
        store.clone(),
        store.clone(),
        store.clone(),
        &cache_sizes(s),
        s.regions.clone(),
    )
    .with_limits(crate::domain::ResourceLimits {
        keys_per_region: s.quota.keys_per_region,
        grants_per_key: s.quota.grants_per_key,
        aliases_per_region: s.quota.aliases_per_region,
        import_parameters_per_second: s.quota.import_parameters_per_second,
    })
    .with_custom_key_stores(
        store,
        partitions(s)?,
        Arc::new(
            crate::xks::client::XksClient::new(
                &s.xks_client_ca_file,
                std::time::Duration::from_millis(s.xks_client_timeout_ms.max(1)),
                &s.xks_client_endpoints,
            )
            .map_err(|e| anyhow!("the XKS proxy client: {e}"))?,
        ),
    ))
}

/// The partitions the settings register, by cluster id (trust anchors read).
fn partitions(s: &Settings) -> Result<BTreeMap<String, Partition>> {
    let mut out = BTreeMap::new();
    for p in &s.partitions {
        let trust_anchor = match &p.trust_anchor_file {
            Some(f) => Some(std::fs::read_to_string(f).with_context(|| {
                format!("partitions: cannot read the trust anchor {}", f.display())
            })?),
            None => None,
        };
        out.insert(
            p.cluster_id.clone(),
            Partition {
                module: p.module.clone().unwrap_or_else(|| s.hsm.module.clone()),
                token_label: p.token_label.clone(),
                trust_anchor,
                related: p.related_clusters.clone(),
                accounts: p.accounts.clone(),
            },
        );
    }
    Ok(out)
}

pub fn cache_sizes(s: &Settings) -> CacheSizes {
    CacheSizes {
        key_metadata: s.cache.key_metadata,
        key_handles: s.cache.key_handles,
        signing_keys: s.cache.signing_keys,
        max_age: std::time::Duration::from_secs(s.cache.max_age_secs),
    }
}

/// The audit anchor outside the database, when configured.
pub fn open_anchor(s: &Settings) -> Result<Option<Arc<crate::audit::anchor::Anchor>>> {
    s.audit_anchor_file
        .as_deref()
        .map(|p| crate::audit::anchor::Anchor::open(p).map(Arc::new))
        .transpose()
        .map_err(|e| anyhow!(e))
}

/// A migrated, initialised store and the domain over it, for a command that changes nothing
/// before both are there (`kms admin`, `kms hsm`, `kms backup`).
pub async fn open_initialised(s: &Settings) -> Result<(Arc<dyn Store>, Kms)> {
    let store = connect_migrated_store(s).await?;
    if !store.is_initialised().await? {
        bail!("the database has no schema; run `kms init` first");
    }
    // The token first: a command that cannot seal what it changes changes nothing.
    let kms = open_kms(s, store.clone()).await?;
    Ok((store, kms))
}

/// The operator's service ([`Operator`]) over an initialised store.
pub async fn open_operator(s: &Settings) -> Result<Operator> {
    let (store, kms) = open_initialised(s).await?;
    Ok(Operator::new(kms, store, open_anchor(s)?))
}
