//! Key rotation: the rotation schedule (`EnableKeyRotation`, `DisableKeyRotation`,
//! `GetKeyRotationStatus`), `RotateKeyOnDemand`, `ListKeyRotations`, and the background job
//! that rotates keys that are due and deletes keys whose waiting period ended.

use super::preamble::{Access, Check, ANY_STATE};
use super::{Caller, Kms, KmsError};
use crate::domain::{OnConflict, Result};
use crate::store::{KeyRecord, MaterialRecord};
use crate::vocab::{KeySpec, KeyState, Origin};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// Rotation periods AWS allows.
pub const ROTATION_DAYS: std::ops::RangeInclusive<i64> = 90..=2560;
pub const MAX_ON_DEMAND_ROTATIONS: i32 = 25;

/// How close to its automatic rotation a key refuses an on-demand one (`ConflictException`).
const AUTOMATIC_ROTATION_CONFLICT: Duration = Duration::minutes(20);
/// The rotation period when `EnableKeyRotation` names none.
pub const DEFAULT_ROTATION_DAYS: i64 = 365;

pub struct RotationStatus {
    pub enabled: bool,
    pub key_arn: String,
    pub period_days: Option<i32>,
    pub next: Option<DateTime<Utc>>,
    /// The start of the on-demand rotation in progress (`OnDemandRotationStartDate`).
    pub on_demand_start: Option<DateTime<Utc>>,
}

/// `ListKeyRotations`: what a key's materials are.
pub struct KeyRotations {
    pub arn: String,
    pub blob_id: Uuid,
    /// The current material's version (0: none imported yet).
    pub current_version: i32,
    /// Materials made by rotation, oldest first.
    pub rotations: Vec<crate::store::RotationRecord>,
    /// For a key with imported material: each of its materials (a multi-Region key's: its
    /// family's), by version.
    pub imported: Option<Vec<MaterialView>>,
}

/// One material of a key with imported material, as `ListKeyRotations` shows it.
pub struct MaterialView {
    pub version: i32,
    /// `KeyMaterialState`: `CURRENT`, `NON_CURRENT`, `PENDING_ROTATION`, or (a multi-Region
    /// key's material not yet in every region) `PENDING_MULTI_REGION_IMPORT_AND_ROTATION`.
    pub state: &'static str,
    /// In this key now (`ImportState` `IMPORTED`; else `PENDING_IMPORT`).
    pub imported: bool,
    /// `ExpirationModel` and `ValidTo` of its import into this key, while imported.
    pub expiration: Option<(String, Option<DateTime<Utc>>)>,
    pub description: Option<String>,
    /// When a rotation made it current (`RotationDate`).
    pub rotated_at: Option<DateTime<Utc>>,
}

/// A stable id for one version of a key's material (`CurrentKeyMaterialId`).
pub fn material_id(key_id: &Uuid, version: i32) -> String {
    let mut d = key_id.as_bytes().to_vec();
    d.extend_from_slice(&version.to_be_bytes());
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &d).as_ref())
}

/// The `KeyMaterialId` a symmetric ciphertext blob of this service was made with (its header
/// names the key and the material version); `None` for anything else.
pub fn material_id_of_blob(blob: &[u8]) -> Option<String> {
    let (header, _) = super::ciphertext::parse(blob)?;
    let version = i32::try_from(header.material_version).ok()?;
    Some(material_id(&header.key_id, version))
}

impl Kms {
    /// The service's own record, before the rotation is written, that `rec` rotates to
    /// material `version` (`RotateKey`, of `rotation_type` `AUTOMATIC` or `ON_DEMAND`).
    pub(super) async fn rotation_intent(
        &self,
        rec: &KeyRecord,
        rotation_type: &str,
        version: i32,
    ) -> Result<super::ServiceAction> {
        self.audit_service_intent(
            "RotateKey",
            &rec.arn(),
            &rec.region,
            serde_json::json!({
                "rotationType": rotation_type,
                "keyMaterialId": material_id(&rec.blob_id(), version),
            }),
        )
        .await
    }

    /// New material for a key, generated and wrapped in the token, committed as the current
    /// version. `Conflict` if another node added the same version first. `on_demand`: the
    /// completion of the on-demand rotation `RotateKeyOnDemand` started (`Conflict` once it
    /// is no longer in progress: completed elsewhere); its start is cleared with the rotation.
    pub(super) async fn rotate_material(
        &self,
        rec: &KeyRecord,
        rotation_type: &str,
        due_at: Option<DateTime<Utc>>,
        on_demand: bool,
    ) -> Result<()> {
        let busy = || KmsError::Conflict(format!("{} is already being rotated.", rec.arn()));
        // The rotation state as stored now, verified (the key's and every related key's).
        let rows = self.verified_rotation_rows(rec).await?;
        let current = rows
            .iter()
            .find(|r| r.key_id == rec.key_id)
            .expect("verified_rotation_rows holds the key");
        // A scheduled rotation counts only while the key is still due.
        let next = match due_at {
            Some(due) => {
                if !(current.rotation_enabled
                    && current.key_state == KeyState::Enabled
                    && current.next_rotation_date.is_some_and(|n| n <= due))
                {
                    return Err(busy());
                }
                current
                    .rotation_period_days
                    .map(|days| due + Duration::days(days.into()))
            }
            None => current.next_rotation_date,
        };
        if on_demand && current.on_demand_rotation_start.is_none() {
            return Err(busy());
        }
        let version = current.current_version + 1;
        // Symmetric: no held object.
        let (m, _) = self.new_material(current, version).await?;
        // A multi-Region key's regions share the new material: one copy (and MAC) per region,
        // and every region moves to it; replicas show the primary's schedule.
        let mut ms = vec![m];
        let (mut updates, mut seals) = (Vec::with_capacity(rows.len()), Vec::new());
        for r in &rows {
            if r.key_id != rec.key_id {
                let mut c = MaterialRecord {
                    key_id: r.key_id,
                    ..ms[0].clone()
                };
                c.mac = self.hsm.row_mac(super::material_mac_input(r, &c)).await?;
                ms.push(c);
            }
            let moved = KeyRecord {
                current_version: version,
                next_rotation_date: next,
                // Any rotation of the key completes an on-demand rotation in progress.
                on_demand_rotation_start: if r.key_id == rec.key_id {
                    None
                } else {
                    r.on_demand_rotation_start
                },
                ..r.clone()
            };
            let (u, seal) = self.rotation_update(r, &moved).await?;
            updates.push(u);
            seals.push(seal);
        }
        // The rotation itself is the service's work, recorded by it (an on-demand one was
        // asked for by a call, recorded as that call).
        let action = self.rotation_intent(rec, rotation_type, version).await?;
        let added = action
            .run(async {
                let added = self
                    .keys
                    .add_material(&ms, rec.mrk_id, rotation_type, due_at.is_some(), &updates)
                    .await;
                if added.is_ok() {
                    self.written_all(&seals);
                }
                added
            })
            .await;
        added.on_conflict(|| {
            KmsError::Conflict(format!("{} is already being rotated.", rec.arn()))
        })?;
        self.invalidate_related(rec);
        tracing::info!(key_id = %rec.key_id, version, rotation_type, "key rotated");
        self.audit_service_done(action).await;
        Ok(())
    }

    pub async fn enable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
        days: Option<i64>,
    ) -> Result<()> {
        // `kms:RotationPeriodInDays` is in every request, 365 when the caller gave no period
        // (recorded on AWS: a Deny on `Null` of it does not apply to such a request, and a
        // numeric Deny that lets 90 through refuses it).
        let given = days.unwrap_or(DEFAULT_ROTATION_DAYS).to_string();
        let period = [("kms:RotationPeriodInDays", given.as_str())];
        let access = Access::to(
            "kms:EnableKeyRotation",
            &[Check::Rotatable("EnableKeyRotation")],
        )
        .conditions(&period);
        let rec = self.key_for(caller, key_id, access).await?;
        // As recorded: enabling rotation that is on, with no period or the same one, changes
        // nothing (the next rotation stays); otherwise the period (365 days if none is given)
        // counts from now.
        if rec.rotation_enabled
            && days.is_none_or(|d| Some(d) == rec.rotation_period_days.map(i64::from))
        {
            return Ok(());
        }
        let days = days.unwrap_or(DEFAULT_ROTATION_DAYS);
        let next = self.now() + Duration::days(days);
        self.set_rotation(&rec, true, Some(days as i32), Some(next))
            .await
    }

    /// Write a key's rotation schedule (every related key's too, for a multi-Region key), each
    /// row verified before it is changed and sealed again.
    async fn set_rotation(
        &self,
        rec: &KeyRecord,
        enabled: bool,
        period_days: Option<i32>,
        next: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let rows = self.verified_rotation_rows(rec).await?;
        let (mut updates, mut seals) = (Vec::with_capacity(rows.len()), Vec::new());
        for r in &rows {
            let set = KeyRecord {
                rotation_enabled: enabled,
                rotation_period_days: period_days,
                next_rotation_date: next,
                ..r.clone()
            };
            let (u, seal) = self.rotation_update(r, &set).await?;
            updates.push(u);
            seals.push(seal);
        }
        self.keys
            .set_rotation(rec.mrk_id, &updates)
            .await
            .on_conflict(|| KmsError::changed(rec.arn(), "is being updated"))?;
        self.written_all(&seals);
        self.invalidate_related(rec);
        Ok(())
    }

    pub async fn disable_key_rotation(&self, caller: &Caller, key_id: &str) -> Result<()> {
        let access = Access::to("kms:DisableKeyRotation", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        // An enabled asymmetric or HMAC key: rotation is off already, and AWS answers so
        // (recorded for an HMAC key).
        if rec.origin == Origin::AwsKms
            && rec.key_spec != KeySpec::SymmetricDefault
            && rec.key_state == KeyState::Enabled
        {
            return Ok(());
        }
        Self::check(&rec, &[Check::Rotatable("DisableKeyRotation")])?;
        self.set_rotation(&rec, false, rec.rotation_period_days, None)
            .await
    }

    pub async fn key_rotation_status(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<RotationStatus> {
        let access = Access::to("kms:GetKeyRotationStatus", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        // A key in a custom key store has no rotation status (recorded: "<arn> origin is
        // AWS_CLOUDHSM which is not valid for this operation.", UnsupportedOperationException).
        if rec.custom_key_store_id.is_some() {
            return Err(KmsError::UnsupportedOperation(
                crate::messages::origin_not_valid(&rec.arn(), rec.origin.as_str()),
            ));
        }
        // AWS: "While a KMS key is pending deletion, its key rotation status is false"; the
        // stored schedule comes back if the deletion is cancelled. A primary waiting for its
        // replicas' deletion still reports its schedule (recorded).
        if rec.key_state == KeyState::PendingDeletion {
            return Ok(RotationStatus {
                enabled: false,
                key_arn: rec.arn(),
                period_days: rec.rotation_period_days,
                next: None,
                on_demand_start: rec.on_demand_rotation_start,
            });
        }
        if rec.key_state != KeyState::PendingReplicaDeletion {
            Self::check(&rec, &[Check::Manageable])?;
        }
        // AWS: automatic rotation is for symmetric encryption keys only; "the key rotation
        // status of these KMS keys [asymmetric, HMAC] is always false" (Enable and
        // DisableKeyRotation still refuse them). Clients such as Terraform ask every key.
        if rec.key_spec != KeySpec::SymmetricDefault {
            return Ok(RotationStatus {
                enabled: false,
                key_arn: rec.arn(),
                period_days: None,
                next: None,
                on_demand_start: None,
            });
        }
        Ok(RotationStatus {
            enabled: rec.rotation_enabled,
            key_arn: rec.arn(),
            period_days: rec.rotation_period_days,
            next: rec.next_rotation_date,
            on_demand_start: rec.on_demand_rotation_start,
        })
    }

    /// Start an on-demand rotation; answers the key's ARN, as AWS's `RotateKeyOnDemand` does
    /// (recorded, asked by key ID).
    pub async fn rotate_key_on_demand(&self, caller: &Caller, key_id: &str) -> Result<String> {
        let access = Access::to("kms:RotateKeyOnDemand", &[Check::OnDemandRotatable]);
        let rec = self.key_for(caller, key_id, access).await?;
        if rec.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(
                crate::messages::on_demand_rotation_limit(&rec.arn()),
            ));
        }
        // A request while one runs is the same rotation (AWS answers it as a success).
        if rec.on_demand_rotation_start.is_some() {
            return Ok(rec.arn());
        }
        if rec.origin == Origin::External {
            // AWS refuses at once a key with no material imported for the rotation.
            self.pending_material(&rec).await?;
        } else if rec.rotation_enabled
            && rec
                .next_rotation_date
                .is_some_and(|n| n <= self.now() + AUTOMATIC_ROTATION_CONFLICT)
        {
            // AWS: "an automatic rotation of this key is currently in progress or scheduled to
            // begin within the next 20 minutes" (its ConflictException).
            return Err(KmsError::Conflict(format!(
                "An automatic rotation of {} is due within 20 minutes; try again later.",
                rec.arn()
            )));
        }
        // As on AWS, the rotation runs in the background: its start is recorded (and counted)
        // now, `GetKeyRotationStatus` shows it until the background jobs complete it (this
        // node's at once; any node's at their next run if this one stops first).
        let rows = self.verified_rotation_rows(&rec).await?;
        let stored = rows
            .iter()
            .find(|r| r.key_id == rec.key_id)
            .expect("verified_rotation_rows holds the key");
        if stored.on_demand_rotation_start.is_some() {
            return Ok(rec.arn());
        }
        self.write_rotation_state(
            stored,
            KeyRecord {
                on_demand_rotation_start: Some(self.now()),
                on_demand_rotations: stored.on_demand_rotations + 1,
                ..stored.clone()
            },
        )
        .await?;
        self.invalidate_related(&rec);
        tracing::info!(key_id = %rec.key_id, "on-demand rotation started");
        self.wake_background_jobs();
        Ok(rec.arn())
    }

    /// One key's rotation state moved from `stored` (as verified) to `moved`, sealed; a
    /// `Conflict` if it changed since it was verified.
    pub(super) async fn write_rotation_state(
        &self,
        stored: &KeyRecord,
        moved: KeyRecord,
    ) -> Result<()> {
        let (u, seal) = self.rotation_update(stored, &moved).await?;
        let set = self.keys.set_rotation(None, &[u]).await;
        set.on_conflict(|| KmsError::changed(stored.arn(), "is being updated"))?;
        self.written(&seal);
        Ok(())
    }

    /// The background jobs' part of on-demand rotations: each one in progress is completed
    /// (new material, or the material imported for it, made current), exactly once across
    /// nodes. Returns how many completed.
    async fn complete_on_demand_rotations(&self) -> Result<usize> {
        let mut done = 0;
        for id in self.keys.on_demand_rotations_started(100).await? {
            self.invalidate(Some(id));
            let rec = match self.record(id).await {
                Ok(Some(rec)) => rec,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(key_id = %id, error = %e, "cannot complete an on-demand rotation: the key fails its checks");
                    continue;
                }
            };
            if rec.on_demand_rotation_start.is_none() {
                continue;
            }
            let r = if rec.origin == Origin::External {
                self.rotate_to_imported(&rec).await
            } else {
                self.rotate_material(&rec, "ON_DEMAND", None, true).await
            };
            match r {
                Ok(()) => done += 1,
                // Completed by another node first.
                Err(KmsError::Conflict(_)) => {}
                Err(e) => {
                    tracing::error!(key_id = %id, error = %e, "on-demand rotation failed; retrying at the next run")
                }
            }
        }
        Ok(done)
    }

    pub async fn list_key_rotations(
        &self,
        caller: &Caller,
        key_id: &str,
        include_key_material: bool,
    ) -> Result<KeyRotations> {
        let access = Access::to("kms:ListKeyRotations", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        if rec.key_spec != KeySpec::SymmetricDefault {
            if include_key_material {
                return Err(KmsError::Validation(
                    crate::messages::INCLUDE_KEY_MATERIAL_SYMMETRIC_ONLY.into(),
                ));
            }
            // A key that never rotates has made no rotation (recorded for an HMAC key:
            // `{"Rotations": [], "Truncated": false}`).
            return Ok(KeyRotations {
                arn: rec.arn(),
                blob_id: rec.blob_id(),
                current_version: rec.current_version,
                rotations: Vec::new(),
                imported: None,
            });
        }
        let imported = if rec.origin == Origin::External {
            Some(self.material_views(&rec).await?)
        } else {
            None
        };
        Ok(KeyRotations {
            arn: rec.arn(),
            blob_id: rec.blob_id(),
            current_version: rec.current_version,
            rotations: self.verified_rotations(&rec).await?,
            imported,
        })
    }

    /// The key's rotations as its material rows record them, only those of a version the key
    /// has reached whose row passes its MAC: a row inserted or relabelled with SQL is neither
    /// listed nor counted towards a cryptoperiod (their dates are display columns).
    pub(crate) async fn verified_rotations(
        &self,
        rec: &KeyRecord,
    ) -> Result<Vec<crate::store::RotationRecord>> {
        let mut out = Vec::new();
        for r in self.keys.rotations(rec.key_id).await? {
            if r.version > rec.current_version {
                continue;
            }
            let Some(m) = self.keys.material(rec.key_id, r.version).await? else {
                continue;
            };
            match self.verify_material(rec, &m).await {
                Ok(()) => out.push(r),
                Err(KmsError::KeyUnavailable) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// A Region (other than the primary's own) where a copy of the multi-Region primary `rec`
    /// still exists, found by the id each Region's copy has (derived from the family's id):
    /// `None` once every replica is gone. The family's id is the primary's as sealed.
    async fn replica_left(&self, rec: &KeyRecord) -> Result<Option<String>> {
        let Some(primary) = self.load_verified(rec.key_id).await? else {
            return Ok(None);
        };
        let Some(mrk) = primary.mrk_id else {
            return Ok(None);
        };
        for region in self.regions.iter().filter(|r| **r != primary.region) {
            if self
                .keys
                .key(crate::domain::keyid::mrk_key_id(&mrk, region))
                .await?
                .is_some()
            {
                return Ok(Some(region.clone()));
            }
        }
        Ok(None)
    }

    /// The background work due at the clock's now: delete keys whose window ended
    /// (crypto-shredding their material) and rotate keys whose rotation is due. Safe to run on
    /// every node at once: each key is claimed by exactly one (`FOR UPDATE SKIP LOCKED`).
    pub async fn run_due(&self) -> Result<(usize, usize)> {
        let now = self.now();
        // A primary whose last replica is gone starts its own waiting period.
        // The state MAC is computed first and stored with the state in one statement: a
        // reader never sees the new state under the old MAC (which it would take for
        // tampering), and a crash leaves either state whole.
        for rec in self.keys.replica_deletions_done().await? {
            // Only a wait the service started (state and waiting period as sealed): a row
            // made to wait for replicas in the database is never sealed as pending deletion.
            if !self.current_state_seal(&rec).await? {
                tracing::error!(key_id = %rec.key_id, "a primary waiting for its replicas' deletion failed its state integrity check (or is an older state put back); not scheduling its deletion");
                continue;
            }
            // Its replicas found by their ids, not by the unsealed `mrk_id` column (the store
            // selected it so): cleared on a replica with SQL, that column would start the
            // primary's waiting period while the replica still exists.
            match self.replica_left(&rec).await {
                Ok(None) => {}
                Ok(Some(region)) => {
                    tracing::error!(key_id = %rec.key_id, region, "a primary waiting for its replicas' deletion has a replica whose family was altered in the database; still waiting");
                    continue;
                }
                Err(e) => {
                    tracing::error!(key_id = %rec.key_id, error = ?e, "a primary waiting for its replicas' deletion could not be checked; still waiting");
                    continue;
                }
            }
            let when = now + Duration::days(i64::from(rec.pending_window_days.unwrap_or(30)));
            let seal = self
                .state_seal(&rec, KeyState::PendingDeletion, Some(when), None)
                .await?;
            let action = self
                .audit_service_intent(
                    "ScheduleKeyDeletion",
                    &rec.arn(),
                    &rec.region,
                    serde_json::json!({
                        "reason": "the multi-Region primary key has no replica left; its waiting period starts",
                        "deletionDate": when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    }),
                )
                .await?;
            if action
                .run(async {
                    let started = self
                        .keys
                        .start_primary_deletion(
                            rec.key_id,
                            when,
                            &seal.mac,
                            rec.state_mac.as_deref().unwrap_or_default(),
                        )
                        .await;
                    if matches!(started, Ok(true)) {
                        self.written(&seal);
                    }
                    started
                })
                .await?
            {
                tracing::info!(key_id = %rec.key_id, "multi-Region primary key has no replicas left; its deletion waiting period starts");
                self.invalidate(Some(rec.key_id));
                self.audit_service_done(action).await;
            }
        }
        let mut deleted = 0;
        // Page by (deletion date, key id): a row that is refused below does not hold back the
        // genuine deletions after it.
        let mut after = None;
        loop {
            let due = self.keys.keys_due_for_deletion(now, after, 100).await?;
            after = due
                .last()
                .and_then(|k| k.deletion_date.map(|d| (d, k.key_id)));
            for k in &due {
                // Only a deletion the service scheduled: the state and date as sealed. A row
                // made pending deletion in the database is refused, never shredded.
                if !self.current_state_seal(k).await? {
                    tracing::error!(key_id = %k.key_id, "a key due for deletion failed its state integrity check (or is an older state put back: a cancelled deletion); not deleting it");
                    continue;
                }
                // Keys kept as token objects (`hsm::held`): the object is destroyed first, and
                // the rows only once it is gone, so a token that cannot be reached leaves the
                // whole key for a later pass, never rows gone and the private key still there.
                // (Nothing revives the key meanwhile: CancelKeyDeletion refuses a key past its
                // deletion date.)
                let mut held = Vec::new();
                let mut undecided = false;
                if k.key_spec == KeySpec::EccNistEdwards25519 {
                    for v in 1..=k.current_version {
                        if let Some(m) = self.keys.material(k.key_id, v).await? {
                            // Only a row that is this key's (its MAC; the object's label names
                            // the key too): an edited row must not destroy another key.
                            match self.verify_material(k, &m).await {
                                Ok(()) => held.push(m),
                                Err(KmsError::KeyUnavailable) => {}
                                // The token did not answer: not deleted until it can be
                                // destroyed too (the next pass).
                                Err(e) => {
                                    tracing::warn!(key_id = %k.key_id, error = %e, "a key due for deletion keeps a private key in the token that cannot be checked now; deleting it later");
                                    undecided = true;
                                }
                            }
                        }
                    }
                }
                if undecided {
                    continue;
                }
                let mut destroyed = true;
                for m in &held {
                    destroyed &= self.destroy_held(k, m).await;
                }
                if !destroyed {
                    continue;
                }
                let action = self
                    .audit_service_intent(
                        "DeleteKey",
                        &k.arn(),
                        &k.region,
                        serde_json::json!({ "reason": "the waiting period ended; all key material was destroyed" }),
                    )
                    .await?;
                if !action.run(self.keys.delete_due_key(k, now)).await? {
                    continue;
                }
                self.invalidate(Some(k.key_id));
                deleted += 1;
                tracing::info!(key_id = %k.key_id, "key deleted at the end of its waiting period; its material is destroyed");
                self.invalidate(Some(k.key_id));
                self.audit_service_done(action).await;
            }
            if due.len() < 100 {
                break;
            }
        }
        let mut rotated = 0;
        let mut seen = std::collections::HashSet::new();
        loop {
            let ids = self.keys.due_rotations(now, 100).await?;
            let mut progress = false;
            for id in &ids {
                if !seen.insert(*id) {
                    continue;
                }
                progress = true;
                self.invalidate(Some(*id));
                let Some(rec) = self.record(*id).await? else {
                    continue;
                };
                match self
                    .rotate_material(&rec, "AUTOMATIC", Some(now), false)
                    .await
                {
                    Ok(()) => rotated += 1,
                    // Another node rotated it first, or it was disabled meanwhile.
                    Err(KmsError::Conflict(_)) => {
                        tracing::debug!(key_id = %id, "scheduled rotation done elsewhere")
                    }
                    Err(e) => {
                        tracing::error!(key_id = %id, error = %e, "scheduled rotation failed")
                    }
                }
            }
            if ids.len() < 100 || !progress {
                break;
            }
        }
        rotated += self.complete_on_demand_rotations().await?;
        let expired = self.expire_imports(now).await?;
        if expired > 0 {
            tracing::info!(expired, "imported key material expired");
        }
        // Expired temporary credentials are useless; a day of grace keeps "expired" (rather
        // than "unknown") as the answer for a while.
        let purged = self
            .ids_store()
            .purge_sessions(now - Duration::days(1))
            .await?;
        if purged > 0 {
            tracing::info!(purged, "expired sessions removed");
        }
        Ok((deleted, rotated))
    }

    /// Aliases of a key (`kms:ResourceAliases`), cached until any alias changes.
    pub(super) async fn aliases_of(&self, rec: &KeyRecord) -> Result<std::sync::Arc<Vec<String>>> {
        if let Some(a) = self.key_aliases.lock().unwrap().get(&rec.key_id) {
            crate::metrics::cache("key_aliases", true);
            return Ok(a.clone());
        }
        crate::metrics::cache("key_aliases", false);
        // A change that commits while this is read drops the entry before the read ends:
        // what was read is then not kept (it may be from before the change).
        let drops = self.key_aliases.lock().unwrap().drops();
        // kms:ResourceAliases decides: an alias row of the key that fails its check, or one
        // of its sealed set deleted in the database, refuses the request.
        let names = self.alias_set(rec).await?.names();
        let names = std::sync::Arc::new(names);
        self.key_aliases
            .lock()
            .unwrap()
            .put_unless_dropped_since(drops, rec.key_id, names.clone());
        Ok(names)
    }
}
