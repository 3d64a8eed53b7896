//! `kms init` and `kms serve`: wiring of the layers, and start-up checks that fail fast with
//! one sentence an operator can act on.

use crate::api::{self, ApiState};
use crate::config::Settings;
use crate::hsm::{root_key_label, Hsm, HsmConfig};
use crate::kms::{CacheSizes, Kms};
use crate::store::{IdentityStore, PgStore, ServiceStore};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

pub type Error = String;

async fn connect_store(s: &Settings) -> Result<PgStore, Error> {
    PgStore::connect(&s.database_url, s.database_max_connections)
        .await
        .map_err(|e| format!("Postgres is unreachable at {}: {e}", s.database_url_redacted()))
}

async fn open_hsm(s: &Settings) -> Result<Hsm, Error> {
    let cfg = HsmConfig {
        module: s.hsm.module.clone(),
        token_label: s.hsm.token_label.clone(),
        pin: s.pin()?,
        pool_size: s.hsm.session_pool_size,
    };
    tokio::task::spawn_blocking(move || Hsm::open(&cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

pub const ADMIN_POLICY_NAME: &str = "KMSFullAccess";
pub const ADMIN_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"KMSFullAccess","Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;

pub fn admin_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:user/admin")
}

/// Idempotent bootstrap. Prints the administrator's credentials (once) on stdout.
pub async fn init(s: &Settings) -> Result<(), Error> {
    let store = connect_store(s).await?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let hsm = open_hsm(s).await?;
    let recorded = store.current_root_version().await.map_err(|e| e.to_string())?;
    let version = match recorded {
        Some(v) => {
            // Blobs may already be wrapped under this root key: never replace it.
            let h = hsm.clone();
            tokio::task::spawn_blocking(move || h.load_service_keys(v as u32))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| {
                    format!(
                        "the database records root key v{v} but the token cannot provide it ({e}); \
                         restore the token or use a fresh database"
                    )
                })?;
            eprintln!("kms init: token keys verified (root key v{v})");
            v
        }
        None => {
            let h = hsm.clone();
            let (root, mac) = tokio::task::spawn_blocking(move || h.ensure_service_keys(1))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            eprintln!(
                "kms init: root wrapping key {}, metadata MAC key {}",
                if root { "created" } else { "verified" },
                if mac { "created" } else { "verified" }
            );
            store.ensure_root_key(1, &root_key_label(1)).await.map_err(|e| e.to_string())?;
            1
        }
    };
    let _ = version;
    store.ensure_account(&s.account_id, "default").await.map_err(|e| e.to_string())?;
    let admin = admin_arn(&s.account_id);
    store.ensure_principal(&admin, &s.account_id, "user", "admin", true).await.map_err(|e| e.to_string())?;
    // The default key policy trusts the account, which delegates to identity policies: the
    // administrator gets all of KMS through one (replace it with `kms admin` to narrow it).
    if !store.identity_policies(&admin).await.map_err(|e| e.to_string())?.iter().any(|(n, _)| n == ADMIN_POLICY_NAME) {
        store.put_identity_policy(&admin, ADMIN_POLICY_NAME, ADMIN_POLICY).await.map_err(|e| e.to_string())?;
    }
    let store = Arc::new(store);
    let kms = Kms::new(hsm, store.clone(), store.clone(), &cache_sizes(s));
    let given_id = std::env::var("KMS_ADMIN_ACCESS_KEY_ID").ok().filter(|v| !v.is_empty());
    let given_secret = std::env::var("KMS_ADMIN_SECRET_ACCESS_KEY").ok().filter(|v| !v.is_empty()).map(SecretString::from);
    let existing = store.access_keys_of(&admin).await.map_err(|e| e.to_string())?;
    match (given_id, given_secret) {
        (Some(id), Some(secret)) => {
            if let Some(found) = store.access_key(&id).await.map_err(|e| e.to_string())? {
                if found.principal_arn != admin {
                    return Err(format!("access key {id} already belongs to {}", found.principal_arn));
                }
                eprintln!("kms init: administrator access key {id} already present");
            } else {
                kms.credentials.import(&admin, &id, &secret).await.map_err(|e| format!("cannot import the administrator's key: {e}"))?;
                eprintln!("kms init: administrator access key {id} imported from the environment");
            }
            println!("AWS_ACCESS_KEY_ID={id}");
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err("set both KMS_ADMIN_ACCESS_KEY_ID and KMS_ADMIN_SECRET_ACCESS_KEY, or neither".into());
        }
        (None, None) if !existing.is_empty() => {
            eprintln!(
                "kms init: the administrator already has access key {}; its secret was shown when it was created",
                existing[0].access_key_id
            );
            println!("AWS_ACCESS_KEY_ID={}", existing[0].access_key_id);
        }
        (None, None) => {
            let (id, secret) = kms.credentials.create(&admin).await.map_err(|e| format!("cannot create the administrator's key: {e}"))?;
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={}", secret.expose_secret());
        }
    }
    Ok(())
}

fn cache_sizes(s: &Settings) -> CacheSizes {
    CacheSizes { key_metadata: s.cache.key_metadata, key_handles: s.cache.key_handles, signing_keys: s.cache.signing_keys }
}

/// Serve the API until SIGINT/SIGTERM, then drain.
pub async fn serve(s: &Settings) -> Result<(), Error> {
    let store = connect_store(s).await?;
    if !store.is_initialised().await.map_err(|e| e.to_string())? {
        return Err(format!("the database at {} has no schema; run `kms init` first", s.database_url_redacted()));
    }
    store.migrate().await.map_err(|e| e.to_string())?;
    let version = store
        .current_root_version()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the database records no root key; run `kms init` first")?;
    let hsm = open_hsm(s).await?;
    let h = hsm.clone();
    tokio::task::spawn_blocking(move || h.load_service_keys(version as u32))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    let kms = Arc::new(Kms::new(hsm, store.clone(), store.clone(), &cache_sizes(s)));
    spawn_invalidation(store.clone(), kms.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("kms listening on http://{addr} (regions: {})", s.regions.join(", "));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tracing::info!(%addr, "serving");
    let state = Arc::new(ApiState { kms, regions: s.regions.clone(), max_body_bytes: s.max_body_bytes });
    api::serve(listener, state, shutdown_signal(), Duration::from_secs(s.drain_seconds)).await;
    Ok(())
}

/// Drop cached key metadata when any node changes a key (Postgres LISTEN/NOTIFY). If the
/// connection drops, notifications may have been missed, so the whole cache is dropped.
async fn spawn_invalidation(store: Arc<PgStore>, kms: Arc<Kms>) -> Result<(), Error> {
    let mut listener = store.key_change_listener().await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == "kms_identity_changed" => kms.invalidate_identities(),
                Ok(Some(n)) => kms.invalidate(n.payload().parse().ok()),
                Ok(None) => {
                    kms.invalidate(None);
                    kms.invalidate_identities();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change listener failed; retrying");
                    kms.invalidate(None);
                    kms.invalidate_identities();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
