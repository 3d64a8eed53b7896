//! A key's imported materials once they are in it: their records (one per material version,
//! each sealed), their deletion and expiry, and the rotation to material imported for it.
//! `import.rs` brings material in; this file keeps what a key holds consistent after.

use super::import::import_mac_input;
use super::preamble::{Access, Check};
use super::rotation::material_id;
use super::{Caller, Kms, KmsError};
use crate::domain::{OnConflict, Result};
use crate::store::{KeyImportRecord, KeyRecord};
use crate::vocab::{KeySpec, KeyState, Origin};
use chrono::{DateTime, Utc};

/// Pending deletion, or (a multi-Region primary) waiting for its replicas' deletion.
fn pending_deletion(rec: &KeyRecord) -> bool {
    matches!(
        rec.key_state,
        KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
    )
}

/// The key states in which imported material can be deleted, by `DeleteImportedKeyMaterial`
/// or by its expiry (AWS's key-state table): not while the key is unavailable or being made.
const MATERIAL_DELETABLE: [KeyState; 5] = [
    KeyState::Enabled,
    KeyState::Disabled,
    KeyState::PendingImport,
    KeyState::PendingDeletion,
    KeyState::PendingReplicaDeletion,
];

impl Kms {
    /// Delete one of an `EXTERNAL` key's materials: `key_material_id`'s, or the current one.
    /// Returns the key's ARN and, for a symmetric encryption key, the deleted material's id.
    pub async fn delete_imported_key_material(
        &self,
        caller: &Caller,
        key_id: &str,
        key_material_id: Option<&str>,
    ) -> Result<(String, Option<String>)> {
        let access = Access::to("kms:DeleteImportedKeyMaterial", &[Check::External]);
        let rec = self.key_for(caller, key_id, access).await?;
        if !MATERIAL_DELETABLE.contains(&rec.key_state) {
            return Err(KmsError::InvalidState(crate::messages::key_state(
                &rec.arn(),
                &rec.key_state.words(),
            )));
        }
        let symmetric = rec.key_spec == KeySpec::SymmetricDefault;
        let blob_id = rec.blob_id();
        let own = self.verified_imports(rec.key_id).await?;
        let target = match key_material_id {
            None => own.iter().find(|p| p.version == rec.current_version),
            Some(id) => {
                let found = own
                    .iter()
                    .find(|p| symmetric && material_id(&blob_id, p.version) == id);
                if found.is_none() {
                    return Err(KmsError::Validation(
                        crate::messages::key_material_never_imported(id, &rec.arn()),
                    ));
                }
                found
            }
        };
        let Some(p) = target else {
            // Never had material: AWS answers with the key alone.
            return Ok((rec.arn(), None));
        };
        // Already deleted (or expired): nothing more to do.
        if p.expiration_model.is_some() {
            self.remove_imported(&rec, p.clone(), None).await?;
        }
        Ok((
            rec.arn(),
            symmetric.then(|| material_id(&blob_id, p.version)),
        ))
    }

    /// Delete one of a key's imported materials (`p`, as verified). A material that is part
    /// of the key leaves its record behind (cleared: it can be imported again) and makes the
    /// key pending import (AWS: every material that is part of the key must be imported for it
    /// to be used), unless it is pending deletion; a material pending rotation was never part
    /// of it and goes with its record, the key's state unchanged.
    async fn remove_imported(
        &self,
        rec: &KeyRecord,
        p: KeyImportRecord,
        expired_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let discard = p.pending;
        let row = super::seal::import_row(rec.key_id, p.version);
        let previous = p.mac.clone();
        let mut imp = KeyImportRecord {
            expiration_model: None,
            valid_to: None,
            ..p
        };
        let mut seals = Vec::new();
        if !discard {
            // Never re-sealed unverified: `p` passed its seal.
            let s = self
                .seal_row(row.clone(), import_mac_input(&imp), Some(&previous))
                .await?;
            imp.mac = s.mac.clone();
            seals.push(s);
        }
        // A key pending deletion stays so (AWS: "does not change the KMS key's state").
        let to_state =
            (!discard && !pending_deletion(rec) && rec.key_state != KeyState::PendingImport)
                .then_some(KeyState::PendingImport);
        let state = match to_state {
            Some(to) => {
                let s = self
                    .state_seal(rec, to, rec.deletion_date, rec.pending_window_days)
                    .await?;
                seals.push(s.clone());
                Some((rec.key_state, to, s.mac))
            }
            None => None,
        };
        let deleted = self
            .keys
            .delete_imported_material(
                &imp,
                discard,
                state.as_ref().map(|(f, t, m)| (*f, *t, m.as_slice())),
                expired_at,
            )
            .await;
        deleted.on_conflict(|| {
            KmsError::changed(
                rec.arn(),
                "changed while its key material was being deleted",
            )
        })?;
        self.written_all(&seals);
        if discard {
            self.removed(&row, &previous);
        }
        self.invalidate(Some(rec.key_id));
        // A multi-Region primary's pending material goes from its replicas too (AWS: "you'll
        // also be deleting the key materials for the replica Region keys").
        if discard && rec.mrk_primary {
            if let Some(mrk) = rec.mrk_id {
                for k in self.verified_family(mrk, &rec.account_id).await? {
                    if k.key_id == rec.key_id {
                        continue;
                    }
                    if let Some(copy) = self
                        .verified_import(k.key_id, imp.version)
                        .await?
                        .filter(|c| c.pending)
                    {
                        Box::pin(self.remove_imported(&k, copy, None)).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A key's imported materials as `ListKeyRotations` shows them: a multi-Region key's are
    /// its family's (each region lists every material, with its own import state), a material
    /// pending rotation is pending in every region until each holds it.
    pub(super) async fn material_views(
        &self,
        rec: &KeyRecord,
    ) -> Result<Vec<super::rotation::MaterialView>> {
        let own = self.verified_imports(rec.key_id).await?;
        let mut family: Vec<(bool, Vec<KeyImportRecord>)> = Vec::new();
        if let Some(mrk) = rec.mrk_id {
            for k in self.verified_family(mrk, &rec.account_id).await? {
                if k.key_id != rec.key_id {
                    family.push((k.mrk_primary, self.verified_imports(k.key_id).await?));
                }
            }
        }
        let held = |records: &[KeyImportRecord], v: i32| {
            records
                .iter()
                .any(|i| i.version == v && i.expiration_model.is_some())
        };
        let versions: std::collections::BTreeSet<i32> = own
            .iter()
            .chain(family.iter().flat_map(|(_, r)| r.iter()))
            .map(|i| i.version)
            .collect();
        let mut views = Vec::with_capacity(versions.len());
        for v in versions {
            let mine = own.iter().find(|i| i.version == v);
            // What the family knows of the material: the primary's record first.
            let primary = if rec.mrk_primary || rec.mrk_id.is_none() {
                mine
            } else {
                family
                    .iter()
                    .filter(|(p, _)| *p)
                    .flat_map(|(_, r)| r.iter())
                    .find(|i| i.version == v)
            };
            let Some(known) = primary.or(mine).or_else(|| {
                family
                    .iter()
                    .flat_map(|(_, r)| r.iter())
                    .find(|i| i.version == v)
            }) else {
                continue;
            };
            let state = if known.pending {
                let everywhere = held(&own, v) && family.iter().all(|(_, r)| held(r, v));
                if everywhere {
                    "PENDING_ROTATION"
                } else {
                    "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
                }
            } else if v == rec.current_version {
                "CURRENT"
            } else {
                "NON_CURRENT"
            };
            let imported = mine.is_some_and(|i| i.expiration_model.is_some());
            views.push(super::rotation::MaterialView {
                version: v,
                state,
                imported,
                expiration: mine
                    .filter(|_| imported)
                    .and_then(|i| i.expiration_model.clone().map(|m| (m, i.valid_to))),
                description: mine
                    .and_then(|i| i.description.clone())
                    .or_else(|| known.description.clone()),
                rotated_at: mine.and_then(|i| i.rotated_at).or(known.rotated_at),
            });
        }
        Ok(views)
    }

    /// The material imported into a key for its next rotation (pending rotation), verified;
    /// AWS's recorded refusal if there is none, or (a multi-Region primary) if a replica does
    /// not hold it yet.
    pub(super) async fn pending_material(&self, rec: &KeyRecord) -> Result<KeyImportRecord> {
        let p = self
            .verified_imports(rec.key_id)
            .await?
            .into_iter()
            .find(|p| p.pending && p.expiration_model.is_some())
            .ok_or_else(|| {
                KmsError::InvalidState(crate::messages::no_pending_key_material(&rec.arn()))
            })?;
        if let Some(mrk) = rec.mrk_id {
            for k in self.verified_family(mrk, &rec.account_id).await? {
                if k.key_id == rec.key_id {
                    continue;
                }
                let held = self
                    .verified_import(k.key_id, p.version)
                    .await?
                    .is_some_and(|i| i.expiration_model.is_some());
                if !held {
                    return Err(KmsError::InvalidState(
                        crate::messages::REPLICAS_LACK_ROTATION_MATERIAL.into(),
                    ));
                }
            }
        }
        Ok(p)
    }

    /// The completion of `RotateKeyOnDemand` for a key with imported material: the material
    /// imported for it (pending rotation) becomes the key's current material — in every
    /// region of a multi-Region key, in one transaction; a replica that no longer holds it
    /// (deleted since) moves to it all the same and is pending import until it is imported
    /// again (as on AWS). If the primary's pending material was deleted since the rotation
    /// started, the rotation ends without one (as on AWS). `Conflict` once the rotation is no
    /// longer in progress (completed elsewhere).
    pub(super) async fn rotate_to_imported(&self, rec: &KeyRecord) -> Result<()> {
        let rows = self.verified_rotation_rows(rec).await?;
        let stored = rows
            .iter()
            .find(|r| r.key_id == rec.key_id)
            .expect("verified_rotation_rows holds the key")
            .clone();
        if stored.on_demand_rotation_start.is_none() {
            return Err(KmsError::Conflict(format!(
                "{} is already rotated.",
                rec.arn()
            )));
        }
        let own = self.verified_imports(rec.key_id).await?;
        let Some(p) = own
            .into_iter()
            .find(|p| p.pending && p.expiration_model.is_some())
        else {
            self.write_rotation_state(
                &stored,
                KeyRecord {
                    on_demand_rotation_start: None,
                    ..stored.clone()
                },
            )
            .await?;
            tracing::info!(key_id = %rec.key_id, "on-demand rotation ended without a rotation: the material imported for it was deleted");
            self.invalidate(Some(rec.key_id));
            return Ok(());
        };
        let now = self.now();
        let mut rotated = crate::store::ImportedRotation {
            mrk: rec.mrk_id,
            at: now,
            ..Default::default()
        };
        let mut seals = Vec::new();
        for r in &rows {
            // Each region's record of the material: no longer pending.
            let held = if r.key_id == rec.key_id {
                Some(p.clone())
            } else {
                self.verified_import(r.key_id, p.version)
                    .await?
                    .filter(|i| i.pending && i.expiration_model.is_some())
            };
            if let Some(h) = &held {
                let mut imp = KeyImportRecord {
                    pending: false,
                    rotated_at: Some(now),
                    ..h.clone()
                };
                let s = self
                    .seal_row(
                        super::seal::import_row(r.key_id, p.version),
                        import_mac_input(&imp),
                        Some(&h.mac),
                    )
                    .await?;
                imp.mac = s.mac.clone();
                seals.push(s);
                rotated.records.push((imp, h.mac.clone()));
            } else if matches!(r.key_state, KeyState::Enabled | KeyState::Disabled) {
                // A replica that let its copy go: pending import, as on AWS. Its state row is
                // sealed again only once it passes its own seal (never re-sealed unverified).
                if !self.current_state_seal(r).await? {
                    tracing::error!(key_id = %r.key_id, "a replica's state failed its integrity check; not rotating its family");
                    return Err(KmsError::KeyUnavailable);
                }
                let s = self
                    .state_seal(
                        r,
                        KeyState::PendingImport,
                        r.deletion_date,
                        r.pending_window_days,
                    )
                    .await?;
                rotated.states.push((
                    r.key_id,
                    r.key_state,
                    KeyState::PendingImport,
                    s.mac.clone(),
                ));
                seals.push(s);
            }
            let (u, s) = self
                .rotation_update(
                    r,
                    &KeyRecord {
                        current_version: p.version,
                        on_demand_rotation_start: if r.key_id == rec.key_id {
                            None
                        } else {
                            r.on_demand_rotation_start
                        },
                        ..r.clone()
                    },
                )
                .await?;
            seals.push(s);
            rotated.rotations.push(u);
        }
        let action = self.rotation_intent(rec, "ON_DEMAND", p.version).await?;
        let r = action
            .run(async {
                let r = self.keys.rotate_to_imported(&rotated).await;
                if r.is_ok() {
                    self.written_all(&seals);
                }
                r
            })
            .await;
        r.on_conflict(|| KmsError::Conflict(format!("{} is already being rotated.", rec.arn())))?;
        self.invalidate_related(rec);
        tracing::info!(key_id = %rec.key_id, version = p.version, "key rotated to imported key material");
        self.audit_service_done(action).await;
        Ok(())
    }

    /// The scheduler's part: imported material whose `ValidTo` passed is deleted, exactly
    /// once across nodes, and audited. Returns how many materials expired.
    pub(super) async fn expire_imports(&self, now: DateTime<Utc>) -> Result<usize> {
        let mut n = 0;
        // Every import record, judged by its verified row: a ValidTo moved later, cleared, or
        // rows crowding the due list in the database neither postpone nor hide an expiry.
        for (id, version) in self.keys.import_rows().await? {
            let p = match self.verified_import(id, version).await {
                Ok(Some(p)) if p.valid_to.is_some_and(|t| t <= now) => p,
                Ok(_) => continue,
                Err(e) => {
                    // Fail closed: the key's cached material goes, and loading it again
                    // refuses it while its import row fails its check.
                    tracing::error!(key_id = %id, version, error = %e, "cannot judge the expiry of imported key material; its key is refused");
                    self.invalidate(Some(id));
                    continue;
                }
            };
            // The key as verified (policy, state, attributes): its state is never re-sealed
            // from an unverified row.
            let rec = match self.record(id).await {
                Ok(Some(rec)) => rec,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(key_id = %id, error = %e, "cannot expire imported key material: the key fails its checks");
                    continue;
                }
            };
            if !MATERIAL_DELETABLE.contains(&rec.key_state) {
                continue;
            }
            let mut detail =
                serde_json::json!({ "reason": "the imported key material reached its ValidTo" });
            if rec.key_spec == KeySpec::SymmetricDefault {
                detail["keyMaterialId"] = serde_json::json!(material_id(&rec.blob_id(), version));
            }
            let action = self
                .audit_service_intent("DeleteExpiredKeyMaterial", &rec.arn(), &rec.region, detail)
                .await?;
            match action.run(self.remove_imported(&rec, p, Some(now))).await {
                Ok(()) => {
                    n += 1;
                    tracing::info!(key_id = %id, version, "imported key material expired and was deleted");
                    self.audit_service_done(action).await;
                }
                Err(KmsError::Conflict(_)) => {}
                Err(e) => {
                    tracing::error!(key_id = %id, version, error = %e, "could not expire imported key material")
                }
            }
        }
        Ok(n)
    }

    /// `ExpirationModel` and `ValidTo` of an `EXTERNAL` key, over the materials that are part
    /// of it and imported now: AWS's `ValidTo` is "the earliest time at which any imported key
    /// material permanently associated with this KMS key expires" (one expiring material makes
    /// the key unusable), so the key's materials expire if any of them does. A material
    /// imported for a rotation that has not happened is not part of the key yet.
    pub(crate) async fn import_expiration(
        &self,
        rec: &KeyRecord,
    ) -> Result<Option<(String, Option<DateTime<Utc>>)>> {
        if rec.origin != Origin::External {
            return Ok(None);
        }
        let imports = self.verified_imports(rec.key_id).await?;
        // Materials that expire sort first (`false` < `true`), the earliest of them first.
        Ok(imports
            .into_iter()
            .filter(|i| !i.pending && i.version <= rec.current_version.max(1))
            .filter_map(|i| Some((i.expiration_model?, i.valid_to)))
            .min_by_key(|(_, valid_to)| (valid_to.is_none(), *valid_to)))
    }

    /// A key's import records, each once its seal holds: one altered in the database (a later
    /// `ValidTo`, another material check, a pending material made part of the key) or an
    /// older one put back refuses them all, never shown or re-sealed.
    pub(crate) async fn verified_imports(
        &self,
        key_id: uuid::Uuid,
    ) -> Result<Vec<KeyImportRecord>> {
        let rows = self.keys.key_imports(key_id).await?;
        for i in &rows {
            self.verify_import(i).await?;
        }
        Ok(rows)
    }

    /// Whether every material that is part of `rec` (versions up to its current one) is
    /// imported, by its sealed import records: none deleted or expired, none missing.
    pub(crate) async fn imported_material_held(&self, rec: &KeyRecord) -> Result<bool> {
        if rec.current_version < 1 {
            return Ok(false); // Never imported.
        }
        let imports = self.verified_imports(rec.key_id).await?;
        Ok((1..=rec.current_version).all(|v| {
            imports
                .iter()
                .any(|i| i.version == v && !i.pending && i.expiration_model.is_some())
        }))
    }

    /// [`Kms::verified_imports`] for one material version.
    pub(crate) async fn verified_import(
        &self,
        key_id: uuid::Uuid,
        version: i32,
    ) -> Result<Option<KeyImportRecord>> {
        let Some(i) = self
            .keys
            .key_imports(key_id)
            .await?
            .into_iter()
            .find(|i| i.version == version)
        else {
            return Ok(None);
        };
        self.verify_import(&i).await?;
        Ok(Some(i))
    }

    async fn verify_import(&self, i: &KeyImportRecord) -> Result<()> {
        if !self
            .current_seal(
                super::seal::import_row(i.key_id, i.version),
                import_mac_input(i),
                &Some(i.mac.clone()),
            )
            .await?
        {
            tracing::error!(key_id = %i.key_id, version = i.version, "key import row failed its integrity check (altered in the database, or an older record put back); refusing it");
            return Err(KmsError::KeyUnavailable);
        }
        Ok(())
    }
}
