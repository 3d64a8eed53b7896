//! Metadata MAC key rotation, the response to a MAC key that may be compromised.
//!
//! `kms hsm rotate-mac-key` creates a new MAC key in the token and records its version; from
//! then on every new row MAC (row seals, grant MACs and grant tokens, access key and session
//! MACs, import records' material checks, pending audit records) is made under it, and a job
//! (on every node, and in the command itself) makes the MACs still under an older key again
//! under the new one. A MAC names its key version in its own bytes (`crate::hsm::mac_parts`), so
//! verification works throughout: a row verifies under the key it names. Each row is verified
//! under its old key first (nothing unverified is MAC'd again) and written only if its MAC is
//! still the one verified (compare-and-set), so each row moves once whichever nodes run the
//! job. A seal keeps its generation (the row's content is the same change), so a row put back
//! is behind the trail exactly when it was before.
//!
//! `kms hsm destroy-mac-key` then removes the old key from the token once no MAC needs it:
//! from that moment a row (or grant token) carrying a MAC made under it is refused, whoever
//! made the MAC, which is what a compromised key calls for.

use super::{credentials, import, Kms, KmsError};
use crate::domain::Result;
use crate::store::{KeyMac, MacRow, ServiceStore};

/// What one pass of the re-MAC job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Remacced {
    /// MACs this pass made again under the current MAC key.
    pub remacced: usize,
    /// Rows another process moved (or changed, or deleted) first.
    pub elsewhere: usize,
    /// Rows whose MAC failed its check: left as they are, and reported.
    pub refused: usize,
    /// Import records whose material check cannot move (the key's imported material is
    /// deleted): it moves when the same material is imported again.
    pub waiting: usize,
}

impl Remacced {
    /// Whether the pass moved anything.
    pub fn moved(&self) -> bool {
        self.remacced + self.elsewhere > 0
    }
}

/// How one row went.
enum Moved {
    Here,
    Elsewhere,
    Refused,
    Waiting,
}

impl Kms {
    /// Follow a MAC key version the database records beyond the one this process MACs under
    /// (another process rotated it): new MACs are made under it from now on. Returns the
    /// version followed, if any. A version the token does not hold is logged and not followed.
    pub async fn follow_mac_key<S: ServiceStore + ?Sized>(&self, store: &S) -> Result<Option<u32>> {
        let Some(recorded) = store.current_mac_version().await? else {
            return Ok(None);
        };
        // An older key that `kms hsm destroy-mac-key` destroyed (the database no longer records
        // it) stops verifying here too, whatever handle this process still holds.
        let versions = store.mac_key_versions().await?;
        let current = self.hsm.mac_version()?;
        for v in self.hsm.mac_versions() {
            if v < current && !versions.contains(&(v as i32)) {
                self.hsm.forget_mac_key(v);
                tracing::warn!(
                    mac_version = v,
                    "MAC key destroyed: rows and grant tokens MAC'd under it are refused from now on"
                );
            }
        }
        let recorded = recorded as u32;
        if recorded <= current {
            return Ok(None);
        }
        let h = self.hsm.clone();
        tokio::task::spawn_blocking(move || h.load_mac_key(recorded))
            .await
            .map_err(|e| KmsError::Internal(e.to_string()))?
            .map_err(|e| {
                tracing::error!(mac_version = recorded, error = %e, "the database records a newer MAC key than the token provides; new MACs stay under the older one");
                KmsError::from(e)
            })?;
        tracing::warn!(
            mac_version = recorded,
            "MAC key rotated: new row MACs are made under the new MAC key from now on"
        );
        Ok(Some(recorded))
    }

    /// The current MAC key version and how many MACs are still under an older one (and the
    /// metric of those left).
    pub async fn mac_key_status<S: ServiceStore + ?Sized>(&self, store: &S) -> Result<(u32, i64)> {
        let current = self.hsm.mac_version()?;
        // Nothing is older than version 1.
        let behind = if current > 1 {
            store.count_macs_below(current as i32).await?
        } else {
            0
        };
        crate::metrics::remac_backlog(behind);
        Ok((current, behind))
    }

    /// Make again under the current MAC key up to `limit` MACs of each column that are still
    /// under an older one.
    pub async fn remac_batch<S: ServiceStore + ?Sized>(
        &self,
        store: &S,
        limit: i64,
    ) -> Result<Remacced> {
        let current = self.hsm.mac_version()?;
        let mut out = Remacced::default();
        if current == 1 {
            return Ok(out);
        }
        let rows = store.macs_below(current as i32, limit).await?;
        for wave in rows.chunks(16) {
            let done =
                super::root::join_all(wave.iter().map(|r| self.remac_one(store, r)).collect())
                    .await;
            for (r, row) in done.into_iter().zip(wave) {
                match r {
                    Ok(Moved::Here) => out.remacced += 1,
                    Ok(Moved::Elsewhere) => out.elsewhere += 1,
                    Ok(Moved::Waiting) => out.waiting += 1,
                    Ok(Moved::Refused) | Err(KmsError::KeyUnavailable) => {
                        tracing::error!(?row, "a row's MAC failed its integrity check; not making it again (the older MAC key cannot be destroyed while the row needs it)");
                        out.refused += 1
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        crate::metrics::remacced(out.remacced);
        Ok(out)
    }

    /// One row's MAC made again under the current MAC key.
    async fn remac_one<S: ServiceStore + ?Sized>(&self, store: &S, row: &MacRow) -> Result<Moved> {
        // (the MAC as stored, what it covers now, and what it should cover)
        let (old, input): (Vec<u8>, Vec<u8>) = match row {
            MacRow::Key(id, part) => {
                let Some(rec) = self.keys.key(*id).await? else {
                    return Ok(Moved::Elsewhere);
                };
                let (stored, input) = match part {
                    KeyMac::Policy => (&rec.policy_mac, super::policy_mac_input(&rec)),
                    KeyMac::State => (&rec.state_mac, super::state_mac_input(&rec)),
                    KeyMac::Attrs => (&rec.attrs_mac, super::attrs_mac_input(&rec)),
                    KeyMac::Rotation => (&rec.rotation_mac, super::rotation_mac_input(&rec)),
                    KeyMac::Tags => {
                        let tags = self.keys.tags(*id).await?;
                        (&rec.tags_mac, super::tags_mac_input(&rec, &tags))
                    }
                    KeyMac::Aliases => (
                        &rec.aliases_mac,
                        super::aliases_mac_input(
                            &rec,
                            rec.alias_set.as_deref().unwrap_or_default(),
                        ),
                    ),
                };
                let Some(stored) = stored.clone() else {
                    return Ok(Moved::Elsewhere);
                };
                (stored, input)
            }
            MacRow::Material(id, version) => {
                let (Some(rec), Some(m)) = (
                    self.keys.key(*id).await?,
                    self.keys.material(*id, *version).await?,
                ) else {
                    return Ok(Moved::Elsewhere);
                };
                (m.mac.clone(), super::material_mac_input(&rec, &m))
            }
            MacRow::ImportRecord(id, v) => {
                return self.remac_import_record(store, row, *id, *v).await
            }
            MacRow::ImportToken(id) => {
                let Some(t) = self.keys.import_token(*id).await? else {
                    return Ok(Moved::Elsewhere);
                };
                (t.mac.clone(), import::token_mac_input(&t))
            }
            MacRow::Grant(id) => {
                let Some(g) = self.grant_store.grant(id).await? else {
                    return Ok(Moved::Elsewhere);
                };
                (g.mac.clone(), Kms::grant_mac_input(&g))
            }
            MacRow::Principal(arn) => {
                let Some(a) = self.ids.principal_authz(arn).await? else {
                    return Ok(Moved::Elsewhere);
                };
                let Some(stored) = a.mac.clone() else {
                    return Ok(Moved::Elsewhere);
                };
                (stored, super::principal_mac_input(arn, &a))
            }
            MacRow::Alias(account, region, name) => {
                let Some(a) = self.keys.alias(account, region, name).await? else {
                    return Ok(Moved::Elsewhere);
                };
                (a.mac.clone(), super::alias_mac_input(&a))
            }
            MacRow::AccessKey(id) => {
                let Some(r) = self.ids.access_key(id).await? else {
                    return Ok(Moved::Elsewhere);
                };
                (r.mac.clone(), credentials::access_key_mac_input(&r))
            }
            MacRow::Session(id) => {
                let Some(r) = self.ids.session(id).await? else {
                    return Ok(Moved::Elsewhere);
                };
                (r.mac.clone(), credentials::session_mac_input(&r))
            }
            MacRow::CustomKeyStore(id) => {
                let Some(r) = self.cks.store()?.custom_key_store(id).await? else {
                    return Ok(Moved::Elsewhere);
                };
                (r.mac.clone(), super::custom_key_stores::store_mac_input(&r))
            }
        };
        let Some(new) = self
            .reseal_under_current(input.clone(), input, &old)
            .await?
        else {
            return Ok(Moved::Refused);
        };
        Ok(if store.remac(row, &old, &new, None).await? {
            Moved::Here
        } else {
            Moved::Elsewhere
        })
    }

    /// A key's import record: its seal, and its material check worked out again in the token
    /// from the key's material (a check cannot be re-MAC'd: it is a MAC of something only the
    /// material gives). Without material (deleted imported material) only the seal moves.
    async fn remac_import_record<S: ServiceStore + ?Sized>(
        &self,
        store: &S,
        row: &MacRow,
        key_id: uuid::Uuid,
        version: i32,
    ) -> Result<Moved> {
        let import = self
            .keys
            .key_imports(key_id)
            .await?
            .into_iter()
            .find(|p| p.version == version);
        let (Some(rec), Some(p)) = (self.keys.key(key_id).await?, import) else {
            return Ok(Moved::Elsewhere);
        };
        let current = self.hsm.mac_version()?;
        let check_behind =
            crate::hsm::mac_parts(&p.material_check).map(|(v, _)| v) != Some(current);
        let seal_behind = super::seal::mac_version_of(&p.mac) != Some(current);
        let new_check = if check_behind {
            self.stored_material_check(key_id, version, import::import_as(&rec)?)
                .await?
        } else {
            None
        };
        let moved = crate::store::KeyImportRecord {
            material_check: new_check
                .clone()
                .unwrap_or_else(|| p.material_check.clone()),
            ..p.clone()
        };
        if new_check.is_none() && !seal_behind {
            return Ok(Moved::Waiting);
        }
        let Some(seal) = self
            .reseal_under_current(
                import::import_mac_input(&p),
                import::import_mac_input(&moved),
                &p.mac,
            )
            .await?
        else {
            return Ok(Moved::Refused);
        };
        if !store
            .remac(row, &p.mac, &seal, new_check.as_deref())
            .await?
        {
            return Ok(Moved::Elsewhere);
        }
        Ok(if check_behind && new_check.is_none() {
            Moved::Waiting
        } else {
            Moved::Here
        })
    }
}
