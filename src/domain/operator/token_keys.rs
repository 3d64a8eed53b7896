//! The service's own keys in the token: created or verified at `kms init`, and the root
//! wrapping key and metadata MAC key rotated and retired by `kms hsm`. Each rotation and
//! destruction is bracketed in the audit trail: its intent before it acts (a trail that cannot
//! take it stops the command before anything changes), its event once done.

use super::Operator;
use crate::domain::root::current_and_backlog;
use crate::hsm::{mac_key_label, root_key_label, Hsm, HsmError};
use crate::store::Store;
use anyhow::{anyhow, bail, Result};

/// A token key a rotation made current.
pub struct KeyChange {
    pub version: u32,
    pub label: String,
    /// Created now (false: it was already in the token, from an interrupted run).
    pub created: bool,
}

/// `kms init`: the token's root wrapping key, metadata MAC key and audit signing key, created
/// on a new database or verified against what the database records (blobs may already be
/// wrapped under them: they are never replaced). In a pool every token gets the same keys.
/// Returns what was done, a line each.
pub async fn bootstrap_token_keys(store: &dyn Store, hsm: &Hsm) -> Result<Vec<String>> {
    let mut said = Vec::new();
    match store.current_root_version().await? {
        Some(v) => {
            let mac_version = store.current_mac_version().await?.unwrap_or(1) as u32;
            let h = hsm.clone();
            let lines = creating(store, move || {
                if mac_version > 1 {
                    h.load_mac_key(h.newest_mac_key_from(mac_version)?)?;
                }
                // A pool's other tokens get the keys (or are checked to hold the same ones).
                let lines = h.replicate_service_keys(v as u32)?;
                h.load_service_keys(v as u32)?;
                Ok(lines)
            })
            .await?
            .map_err(|e| {
                anyhow!(
                    "the database records root key v{v} but the token cannot provide it ({e}); \
                     restore the token or use a fresh database"
                )
            })?;
            said.extend(lines);
            said.push(format!("token keys verified (root key v{v})"));
        }
        None => {
            let h = hsm.clone();
            let (root, mac) = creating(store, move || h.ensure_service_keys(1)).await??;
            said.push(format!(
                "root wrapping key {}, metadata MAC key {}",
                if root { "created" } else { "verified" },
                if mac { "created" } else { "verified" }
            ));
            store.ensure_root_key(1, &root_key_label(1)).await?;
        }
    }
    let h = hsm.clone();
    let audit_created = creating(store, move || h.ensure_audit_key()).await??;
    said.push(format!(
        "audit signing key {}",
        if audit_created { "created" } else { "verified" }
    ));
    if hsm.is_pool() {
        let version = store
            .current_root_version()
            .await?
            .ok_or_else(|| anyhow!("the database records no root key"))?
            as u32;
        let h = hsm.clone();
        let report = creating(store, move || {
            let report = h.replicate_service_keys(version)?;
            h.load_service_keys(version)?;
            Ok(report)
        })
        .await?
        .map_err(|e| anyhow!("copying the service keys to the pool's tokens failed: {e}"))?;
        said.extend(report);
    }
    Ok(said)
}

/// Run `make`, a find-or-create of service keys in the token, holding the database's lock on
/// creating them: PKCS#11 has no create-if-absent, and two commands at once (two operators
/// rotating, two `kms init`) would otherwise each find no key of a label and each create one.
async fn creating<T: Send + 'static>(
    store: &dyn Store,
    make: impl FnOnce() -> std::result::Result<T, HsmError> + Send + 'static,
) -> Result<std::result::Result<T, HsmError>> {
    let lock = store.token_key_lock("service keys").await?;
    let made = tokio::task::spawn_blocking(make).await;
    lock.release().await?;
    Ok(made?)
}

/// `'a', 'b'`: token labels as the commands print them.
pub fn token_list(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("'{l}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Operator {
    /// Record a token key command in the trail: its intent (`intent`) or its event.
    async fn audit_key_command(
        &self,
        action: &str,
        target: &str,
        detail: &serde_json::Value,
        intent: bool,
    ) -> Result<()> {
        let event = if intent {
            crate::audit::admin_intent_event(action, target, &self.name, detail.clone())
        } else {
            crate::audit::admin_event(action, target, &self.name, detail.clone())
        };
        self.record(event).await.map_err(|e| {
            if intent {
                anyhow!("the audit trail cannot record this command, so nothing was changed: {e}")
            } else {
                anyhow!("the command is done but the audit trail could not record it: {e}")
            }
        })
    }

    /// A new root wrapping key in the token (every token of a pool), made the one new blobs
    /// are wrapped under. Refused while a previous rotation's re-wrapping is unfinished.
    pub async fn rotate_root_key(&self) -> Result<KeyChange> {
        let per_root = self.kms.root_key_status(self.store()).await?;
        let (current, behind) = current_and_backlog(&per_root);
        if behind > 0 {
            bail!(
                "the rotation to root key v{current} is not finished: {behind} blobs are still under an older root key; run `kms hsm rewrap` to finish it first"
            );
        }
        let next = current + 1;
        let label = root_key_label(next as u32);
        let detail =
            serde_json::json!({ "rootKeyVersion": next, "previousRootKeyVersion": current });
        self.audit_key_command("RotateRootKey", &label, &detail, true)
            .await?;
        let h = self.kms.hsm().clone();
        let created = creating(self.store(), move || h.add_root_key(next as u32))
            .await?
            .map_err(|e| anyhow!("the token could not create root key v{next}: {e}"))?;
        self.store.ensure_root_key(next, &label).await?;
        self.audit_key_command("RotateRootKey", &label, &detail, false)
            .await?;
        Ok(KeyChange {
            version: next as u32,
            label,
            created,
        })
    }

    /// Destroy an older root key in the token (every token of a pool), once no stored blob
    /// records it; the tokens it was destroyed in (none: it was already gone).
    pub async fn destroy_root_key(&self, version: i32) -> Result<Vec<String>> {
        let per_root = self.kms.root_key_status(self.store()).await?;
        let (current, _) = current_and_backlog(&per_root);
        if version == current {
            bail!(
                "root key v{version} is the current root key; rotate to a new one first (`kms hsm rotate-root-key`)"
            );
        }
        if version < 1 || version > current {
            bail!("there is no root key v{version}");
        }
        if let Some((_, n)) = per_root.iter().find(|(v, n)| *v == version && *n > 0) {
            bail!(
                "root key v{version} still wraps {n} stored blobs; run `kms hsm rewrap` first, so that none needs it"
            );
        }
        let bad = self.kms.materials_failing_their_check().await?;
        if bad > 0 {
            bail!(
                "{bad} stored key material rows fail their integrity check (written or relabelled in the database?): one may be wrapped under root key v{version}, so it was not destroyed; the log names each row"
            );
        }
        let label = root_key_label(version as u32);
        let detail = serde_json::json!({ "rootKeyVersion": version });
        self.audit_key_command("DestroyRootKey", &label, &detail, true)
            .await?;
        // The database forgets the version first: its foreign key refuses while any blob
        // (one written meanwhile by a node that had not followed the rotation) records it,
        // and from then on no blob can record it.
        self.store.forget_root_key(version).await.map_err(|e| {
            anyhow!("root key v{version} is still recorded by a stored blob, so it was not destroyed; run `kms hsm rewrap` first ({e})")
        })?;
        let h = self.kms.hsm().clone();
        let tokens = tokio::task::spawn_blocking(move || h.destroy_root_key(version as u32))
            .await?
            .map_err(|e| {
                anyhow!(
                    "the token could not destroy root key v{version}: {e}; run the command again"
                )
            })?;
        self.audit_key_command("DestroyRootKey", &label, &detail, false)
            .await?;
        Ok(tokens)
    }

    /// A new metadata MAC key in the token (every token of a pool), made the one new row MACs
    /// are made with. Refused while a previous rotation's re-MACing is unfinished.
    pub async fn rotate_mac_key(&self) -> Result<KeyChange> {
        let (current, behind) = self.kms.mac_key_status(self.store()).await?;
        if behind > 0 {
            bail!(
                "the rotation to MAC key v{current} is not finished: {behind} MACs are still under an older MAC key; run `kms hsm remac` to finish it first"
            );
        }
        let next = current + 1;
        let label = mac_key_label(next);
        let detail = serde_json::json!({ "macKeyVersion": next, "previousMacKeyVersion": current });
        self.audit_key_command("RotateMacKey", &label, &detail, true)
            .await?;
        let h = self.kms.hsm().clone();
        let created = creating(self.store(), move || h.add_mac_key(next))
            .await?
            .map_err(|e| anyhow!("the token could not create MAC key v{next}: {e}"))?;
        self.store.ensure_mac_key(next as i32, &label).await?;
        self.audit_key_command("RotateMacKey", &label, &detail, false)
            .await?;
        Ok(KeyChange {
            version: next,
            label,
            created,
        })
    }

    /// Destroy an older MAC key in the token (every token of a pool), once no stored MAC was
    /// made under it; the tokens it was destroyed in.
    pub async fn destroy_mac_key(&self, version: i32) -> Result<Vec<String>> {
        let kms = &self.kms;
        let (current, behind) = kms.mac_key_status(self.store()).await?;
        if version == current as i32 {
            bail!(
                "MAC key v{version} is the current MAC key; rotate to a new one first (`kms hsm rotate-mac-key`)"
            );
        }
        // The database's word first: a version it no longer records was forgotten by a run of
        // this command that did not finish destroying it in every token of a pool (run again,
        // it destroys what is left).
        let recorded = self.store.mac_key_versions().await?.contains(&version);
        let held = kms.hsm().mac_versions().contains(&(version as u32));
        if version < 1 || version > current as i32 {
            bail!("the token holds no MAC key v{version}");
        }
        if !(recorded || held) {
            // Forgotten, and gone from this token: other tokens of a pool may still hold it
            // (the run that forgot it stopped there); destroying is idempotent.
            tracing::info!(
                version,
                "MAC key forgotten already; destroying it where it is left"
            );
        }
        if behind > 0 {
            bail!(
                "{behind} stored MACs are still under an older MAC key; run `kms hsm remac` first, so that none needs MAC key v{version}"
            );
        }
        let label = mac_key_label(version as u32);
        let detail = serde_json::json!({ "macKeyVersion": version });
        self.audit_key_command("DestroyMacKey", &label, &detail, true)
            .await?;
        // Forgotten by the database before it is destroyed anywhere (as a root key is): a
        // destruction that stops half-way (a token of the pool unreachable, the process gone)
        // leaves a key no node loads or verifies with (`follow_mac_key`), never one the
        // database still names after a token lost it.
        self.store.forget_mac_key(version).await?;
        let h = kms.hsm().clone();
        let tokens = tokio::task::spawn_blocking(move || h.destroy_mac_key(version as u32))
            .await?
            .map_err(|e| {
                anyhow!(
                    "the token could not destroy MAC key v{version}: {e}; the database no longer names it; run the command again to destroy it where it is left"
                )
            })?;
        self.audit_key_command("DestroyMacKey", &label, &detail, false)
            .await?;
        Ok(tokens)
    }
}
