//! Key states (enable, disable, schedule and cancel deletion, description), aliases and tags.

use super::preamble::{Access, Check, ANY_STATE};
use super::{keyid, Caller, Kms, KmsError};
use crate::store::{AliasRecord, KeyRecord, MaterialRecord, StoreError, Tag};
use crate::vocab::{KeySpec, KeyState, Origin};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

pub const MAX_ALIASES_PER_KEY: usize = 50;
pub const MAX_TAGS_PER_KEY: usize = 50;

/// AWS's alias name rules: `alias/` then letters, digits, `/`, `_`, `-`; at most 256 in all;
/// `alias/aws/` is reserved for AWS managed keys.
pub fn check_alias_name(name: &str) -> Result<(), KmsError> {
    // AWS refuses a colon as a validation error although the model's pattern admits it.
    if name.contains(':') {
        return Err(KmsError::Validation(format!(
            "{name} contains invalid characters for an alias"
        )));
    }
    let Some(rest) = name.strip_prefix("alias/") else {
        return Err(KmsError::InvalidAliasName(format!("Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html (got {name})")));
    };
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} must be 1 to 256 characters of letters, digits, '/', '_' and '-' after the prefix \"alias/\"."
        )));
    }
    if rest.starts_with("aws/") {
        return Err(KmsError::InvalidAliasName("Alias must not begin with \"alias/aws/\"; that prefix is reserved for AWS managed keys.".into()));
    }
    Ok(())
}

pub fn check_tags(tags: &[Tag]) -> Result<(), KmsError> {
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(
                "Tags beginning with aws: are reserved.".into(),
            ));
        }
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(KmsError::Tag(
                "Tag keys are 1 to 128 characters and tag values at most 256.".into(),
            ));
        }
        if !seen.insert(t.key.clone()) {
            return Err(KmsError::Tag(format!("Duplicate tag key {}", t.key)));
        }
    }
    Ok(())
}

impl Kms {
    pub fn invalidate_aliases(&self) {
        self.aliases.lock().unwrap().clear();
        self.key_aliases.lock().unwrap().clear();
    }

    pub(super) async fn alias_target(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<Uuid>, KmsError> {
        let k = (account.to_string(), region.to_string(), name.to_string());
        if let Some(t) = self.aliases.lock().unwrap().get(&k) {
            crate::metrics::cache("aliases", true);
            return Ok(*t);
        }
        crate::metrics::cache("aliases", false);
        // The trail first: an alias re-pointed by a change that commits while it is read is
        // then never taken for an older row put back.
        let trail = self
            .trail_of(&[super::seal::alias_row_of(account, region, name)])
            .await?;
        let t = match self.keys.alias(account, region, name).await? {
            Some(a) => Some(self.verified_alias_under(a, Some(&trail)).await?.key_id),
            None => None,
        };
        self.aliases.lock().unwrap().put(k, t);
        Ok(t)
    }

    /// An alias row whose MAC holds. One re-pointed, inserted or moved in the database is
    /// refused (the request fails), never followed to the key it now names.
    pub(super) async fn verified_alias(&self, a: AliasRecord) -> Result<AliasRecord, KmsError> {
        self.verified_alias_under(a, None).await
    }

    /// [`Kms::verified_alias`], against generations read from the trail before the row (if
    /// given; else the trail is asked now).
    async fn verified_alias_under(
        &self,
        a: AliasRecord,
        trail: Option<&[(String, i64)]>,
    ) -> Result<AliasRecord, KmsError> {
        let stored = Some(a.mac.clone());
        let (row, input) = (super::seal::alias_row(&a), super::alias_mac_input(&a));
        let current = match trail {
            Some(t) => self.current_under(row, input, &stored, t).await?,
            None => self.current_seal(row, input, &stored).await?,
        };
        if current {
            return Ok(a);
        }
        tracing::error!(alias = %a.alias_name, account_id = %a.account_id, region = %a.region, key_id = %a.key_id, sealed = !a.mac.is_empty(), "alias row failed its integrity check (altered in the database, an older row put back, or stored before aliases were sealed: review with `kms admin seal`); refusing it");
        Err(KmsError::KeyUnavailable)
    }

    pub async fn enable_key(&self, caller: &Caller, key_id: &str) -> Result<(), KmsError> {
        self.as_current(|| self.enable_key_once(caller, key_id))
            .await
    }

    async fn enable_key_once(&self, caller: &Caller, key_id: &str) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:EnableKey", &[Check::NotPending]),
            )
            .await?;
        self.set_state(&rec, KeyState::Enabled, None, None).await?;
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    pub async fn disable_key(&self, caller: &Caller, key_id: &str) -> Result<(), KmsError> {
        self.as_current(|| self.disable_key_once(caller, key_id))
            .await
    }

    async fn disable_key_once(&self, caller: &Caller, key_id: &str) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:DisableKey", &[Check::NotPending]),
            )
            .await?;
        self.set_state(&rec, KeyState::Disabled, None, None).await?;
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// Returns the key's ARN, its new state and its deletion date. A multi-Region primary
    /// with replicas waits in `PendingReplicaDeletion` (no date yet) until they are gone.
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        key_id: &str,
        days: i64,
        now: DateTime<Utc>,
    ) -> Result<(String, &'static str, Option<DateTime<Utc>>), KmsError> {
        self.as_current(|| self.schedule_key_deletion_once(caller, key_id, days, now))
            .await
    }

    async fn schedule_key_deletion_once(
        &self,
        caller: &Caller,
        key_id: &str,
        days: i64,
        now: DateTime<Utc>,
    ) -> Result<(String, &'static str, Option<DateTime<Utc>>), KmsError> {
        let rec = self
            // A key waiting for imported material can be deleted too, as on AWS.
            .key_for(
                caller,
                key_id,
                Access::to("kms:ScheduleKeyDeletion", &[Check::Manageable]),
            )
            .await?;
        let has_replicas = match (rec.mrk_id, rec.mrk_primary) {
            (Some(mrk), true) => self.keys.related_keys(mrk).await?.len() > 1,
            _ => false,
        };
        let (state, when) = if has_replicas {
            self.set_state(
                &rec,
                KeyState::PendingReplicaDeletion,
                None,
                Some(days as i32),
            )
            .await?;
            ("PendingReplicaDeletion", None)
        } else {
            let when = now + Duration::days(days);
            self.set_state(&rec, KeyState::PendingDeletion, Some(when), None)
                .await?;
            ("PendingDeletion", Some(when))
        };
        self.invalidate(Some(rec.key_id));
        Ok((Self::arn(&rec), state, when))
    }

    /// A key whose deletion is cancelled comes back Disabled, or pending import when it has no
    /// imported material.
    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<String, KmsError> {
        self.as_current(|| self.cancel_key_deletion_once(caller, key_id))
            .await
    }

    async fn cancel_key_deletion_once(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<String, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:CancelKeyDeletion", ANY_STATE),
            )
            .await?;
        if rec.key_state != KeyState::PendingDeletion
            && rec.key_state != KeyState::PendingReplicaDeletion
        {
            return Err(KmsError::InvalidState(format!(
                "{} is not pending deletion.",
                Self::arn(&rec)
            )));
        }
        // A key with imported material whose material is gone (deleted or expired while
        // pending deletion, or never imported) is pending import again, as on AWS.
        let state = if rec.origin == Origin::External
            && self.keys.material(rec.key_id, 1).await?.is_none()
        {
            KeyState::PendingImport
        } else {
            KeyState::Disabled
        };
        self.set_state(&rec, state, None, None).await?;
        self.invalidate(Some(rec.key_id));
        Ok(Self::arn(&rec))
    }

    pub async fn update_key_description(
        &self,
        caller: &Caller,
        key_id: &str,
        description: &str,
    ) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:UpdateKeyDescription", &[Check::Manageable]),
            )
            .await?;
        self.keys.set_description(rec.key_id, description).await?;
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// The key an existing alias of the caller's account and region names.
    async fn alias_key(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<std::sync::Arc<KeyRecord>, KmsError> {
        let not_found = || keyid::alias_not_found(&caller.region, &caller.account_id, name);
        let current = self
            .keys
            .alias(&caller.account_id, &caller.region, name)
            .await?
            .ok_or_else(not_found)?;
        let current = self.verified_alias(current).await?;
        self.record(current.key_id).await?.ok_or_else(not_found)
    }

    /// The target of an alias operation: a key id or key ARN of the caller's account.
    async fn alias_target_key(
        &self,
        caller: &Caller,
        target: &str,
    ) -> Result<std::sync::Arc<KeyRecord>, KmsError> {
        if matches!(keyid::parse(target)?, keyid::KeyRef::Alias { .. }) {
            return Err(KmsError::Validation(
                "TargetKeyId must be a key ID or key ARN, not an alias.".into(),
            ));
        }
        let rec = self.resolve(caller, target).await?;
        if rec.account_id != caller.account_id {
            return Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                Self::arn(&rec)
            )));
        }
        Ok(rec)
    }

    pub async fn create_alias(
        &self,
        caller: &Caller,
        name: &str,
        target: &str,
    ) -> Result<(), KmsError> {
        check_alias_name(name)?;
        let rec = self.alias_target_key(caller, target).await?;
        self.admit(
            caller,
            &rec,
            Access::to("kms:CreateAlias", &[Check::Manageable]),
        )
        .await?;
        if self
            .keys
            .list_aliases(&caller.account_id, &caller.region, Some(rec.key_id))
            .await?
            .len()
            >= MAX_ALIASES_PER_KEY
        {
            return Err(KmsError::LimitExceeded(format!(
                "A KMS key can have at most {MAX_ALIASES_PER_KEY} aliases."
            )));
        }
        let now = self.now();
        let mut a = AliasRecord {
            alias_name: name.to_string(),
            key_id: rec.key_id,
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            created_at: now,
            updated_at: now,
            target_mrk: None,
            mac: vec![],
        };
        // A name used before (an alias deleted since) starts above its last generation.
        let seal = self
            .seal_row(super::seal::alias_row(&a), super::alias_mac_input(&a), None)
            .await?;
        a.mac = seal.mac.clone();
        match self
            .keys
            .create_alias(&a, self.limits.aliases_per_region)
            .await
        {
            Ok(()) => self.written(&seal),
            Err(StoreError::Conflict { constraint })
                if constraint == crate::store::QUOTA_EXCEEDED =>
            {
                return Err(KmsError::LimitExceeded(format!(
                    "The request was rejected because the account {} has reached the limit of {} aliases in {}.",
                    caller.account_id, self.limits.aliases_per_region, caller.region
                )))
            }
            Err(StoreError::Conflict { .. }) => {
                return Err(KmsError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    keyid::alias_arn(&caller.region, &caller.account_id, name)
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate_aliases();
        Ok(())
    }

    pub async fn update_alias(
        &self,
        caller: &Caller,
        name: &str,
        target: &str,
    ) -> Result<(), KmsError> {
        check_alias_name(name)?;
        let not_found = || keyid::alias_not_found(&caller.region, &caller.account_id, name);
        let old = self.alias_key(caller, name).await?;
        let new = self.alias_target_key(caller, target).await?;
        self.admit(caller, &old, Access::to("kms:UpdateAlias", ANY_STATE))
            .await?;
        self.admit(
            caller,
            &new,
            Access::to("kms:UpdateAlias", &[Check::Manageable]),
        )
        .await?;
        if old.key_spec != new.key_spec || old.key_usage != new.key_usage {
            return Err(KmsError::Validation(format!(
                "{} and {} are not the same type of key (key spec and key usage must match).",
                Self::arn(&old),
                Self::arn(&new)
            )));
        }
        let mut a = AliasRecord {
            alias_name: name.to_string(),
            key_id: new.key_id,
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            created_at: self.now(),
            updated_at: self.now(),
            target_mrk: None,
            mac: vec![],
        };
        let previous = self.stored_alias(caller, name).await?.map(|p| p.mac);
        let seal = self
            .seal_row(
                super::seal::alias_row(&a),
                super::alias_mac_input(&a),
                previous.as_deref(),
            )
            .await?;
        a.mac = seal.mac.clone();
        if !self.keys.update_alias(&a, old.key_id).await? {
            return Err(not_found());
        }
        self.written(&seal);
        self.invalidate_aliases();
        Ok(())
    }

    pub async fn delete_alias(&self, caller: &Caller, name: &str) -> Result<(), KmsError> {
        let not_found = || keyid::alias_not_found(&caller.region, &caller.account_id, name);
        let rec = self.alias_key(caller, name).await?;
        self.admit(caller, &rec, Access::to("kms:DeleteAlias", ANY_STATE))
            .await?;
        let previous = self.stored_alias(caller, name).await?;
        if !self
            .keys
            .delete_alias(&caller.account_id, &caller.region, name)
            .await?
        {
            return Err(not_found());
        }
        // The row put back after its deletion is refused: the trail holds a later generation.
        if let Some(p) = previous {
            self.removed(&super::seal::alias_row(&p), &p.mac);
        }
        self.invalidate_aliases();
        Ok(())
    }

    /// The caller's alias `name` as stored, verified (not from the cache): the generation a
    /// change to it moves on from.
    async fn stored_alias(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Option<AliasRecord>, KmsError> {
        match self
            .keys
            .alias(&caller.account_id, &caller.region, name)
            .await?
        {
            Some(a) => Ok(Some(self.verified_alias(a).await?)),
            None => Ok(None),
        }
    }

    pub async fn list_aliases(
        &self,
        caller: &Caller,
        key_id: Option<&str>,
    ) -> Result<Vec<AliasRecord>, KmsError> {
        let key = match key_id {
            Some(k) => {
                if matches!(keyid::parse(k)?, keyid::KeyRef::Alias { .. }) {
                    return Err(KmsError::InvalidArn(format!("Invalid keyId {k}")));
                }
                let rec = self.resolve(caller, k).await?;
                self.authorize(caller, "kms:ListAliases", None, None, &[])
                    .await?;
                Some(rec.key_id)
            }
            None => {
                self.authorize(caller, "kms:ListAliases", None, None, &[])
                    .await?;
                None
            }
        };
        let mut out = Vec::new();
        for a in self
            .keys
            .list_aliases(&caller.account_id, &caller.region, key)
            .await?
        {
            // A row that fails its check is logged and left out of the listing.
            match self.verified_alias(a).await {
                Ok(a) => out.push(a),
                Err(KmsError::KeyUnavailable) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    pub async fn tag_resource(
        &self,
        caller: &Caller,
        key_id: &str,
        tags: Vec<Tag>,
    ) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:TagResource", &[Check::Manageable]),
            )
            .await?;
        check_tags(&tags)?;
        let mut next: Vec<Tag> = self
            .tags_of(&rec)
            .await?
            .iter()
            .filter(|e| !tags.iter().any(|t| t.key == e.key))
            .cloned()
            .collect();
        next.extend(tags);
        if next.len() > MAX_TAGS_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "A KMS key can have at most {MAX_TAGS_PER_KEY} tags."
            )));
        }
        self.store_tags(&rec, &next).await
    }

    pub async fn untag_resource(
        &self,
        caller: &Caller,
        key_id: &str,
        keys: Vec<String>,
    ) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:UntagResource", &[Check::Manageable]),
            )
            .await?;
        let next: Vec<Tag> = self
            .tags_of(&rec)
            .await?
            .iter()
            .filter(|t| !keys.contains(&t.key))
            .cloned()
            .collect();
        self.store_tags(&rec, &next).await
    }

    pub async fn list_resource_tags(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<Vec<Tag>, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:ListResourceTags", ANY_STATE),
            )
            .await?;
        Ok(self.tags_of(&rec).await?.to_vec())
    }
}

/// Rotation periods AWS allows.
pub const ROTATION_DAYS: std::ops::RangeInclusive<i64> = 90..=2560;
pub const MAX_ON_DEMAND_ROTATIONS: i32 = 25;

pub struct RotationStatus {
    pub enabled: bool,
    pub key_arn: String,
    pub period_days: Option<i32>,
    pub next: Option<DateTime<Utc>>,
}

/// `ListKeyRotations`: what a key's materials are.
pub struct KeyRotations {
    pub arn: String,
    pub blob_id: Uuid,
    /// The current material's version (0: none imported yet).
    pub current_version: i32,
    /// Materials made by rotation, oldest first.
    pub rotations: Vec<crate::store::RotationRecord>,
    /// For a key with imported material: its import state and expiry.
    pub imported: Option<ImportedMaterial>,
}

pub struct ImportedMaterial {
    /// The material is in the key now (not deleted or expired).
    pub imported: bool,
    /// `ExpirationModel` and `ValidTo` of the import, while imported.
    pub expiration: Option<(String, Option<DateTime<Utc>>)>,
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
    /// New material for a key, generated and wrapped in the token, committed as the current
    /// version. `Conflict` if another node added the same version first.
    pub(super) async fn rotate_material(
        &self,
        rec: &KeyRecord,
        rotation_type: &str,
        due_at: Option<DateTime<Utc>>,
        on_demand: bool,
    ) -> Result<(), KmsError> {
        let busy = || KmsError::Conflict(format!("{} is already being rotated.", Self::arn(rec)));
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
        let version = current.current_version + 1;
        let m = self.new_material(current, version).await?;
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
                on_demand_rotations: r.on_demand_rotations + i32::from(on_demand),
                ..r.clone()
            };
            let (u, seal) = self.rotation_update(r, &moved).await?;
            updates.push(u);
            seals.push(seal);
        }
        // Rotations the service starts by itself are recorded by it (on-demand ones are a
        // call's change).
        let action = if rotation_type == "AUTOMATIC" {
            self.audit_service_intent(
                "RotateKey",
                &rec.arn(),
                &rec.region,
                serde_json::json!({
                    "rotationType": rotation_type,
                    "keyMaterialId": material_id(&rec.blob_id(), version),
                }),
            )
            .await?
        } else {
            super::ServiceAction::none()
        };
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
        match added {
            Ok(()) => {}
            Err(StoreError::Conflict { .. }) => {
                return Err(KmsError::Conflict(format!(
                    "{} is already being rotated.",
                    Self::arn(rec)
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate_related(rec);
        tracing::info!(key_id = %rec.key_id, version, rotation_type, "key rotated");
        self.audit_service_done(action).await;
        Ok(())
    }

    pub async fn enable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
        days: i64,
    ) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:EnableKeyRotation", &[Check::Rotatable]),
            )
            .await?;
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
    ) -> Result<(), KmsError> {
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
        match self.keys.set_rotation(rec.mrk_id, &updates).await {
            Ok(()) => self.written_all(&seals),
            Err(StoreError::Conflict { .. }) => {
                return Err(KmsError::Conflict(format!(
                    "{} is being updated; try again.",
                    Self::arn(rec)
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate_related(rec);
        Ok(())
    }

    pub async fn disable_key_rotation(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<(), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:DisableKeyRotation", &[Check::Rotatable]),
            )
            .await?;
        self.set_rotation(&rec, false, rec.rotation_period_days, None)
            .await
    }

    pub async fn key_rotation_status(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<RotationStatus, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:GetKeyRotationStatus", ANY_STATE),
            )
            .await?;
        if rec.key_spec != KeySpec::SymmetricDefault {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} does not support automatic rotation.",
                Self::arn(&rec)
            )));
        }
        // AWS: "While a KMS key is pending deletion, its key rotation status is false"; the
        // stored schedule comes back if the deletion is cancelled.
        if matches!(
            rec.key_state,
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
        ) {
            return Ok(RotationStatus {
                enabled: false,
                key_arn: Self::arn(&rec),
                period_days: rec.rotation_period_days,
                next: None,
            });
        }
        Self::check(&rec, &[Check::Manageable])?;
        Ok(RotationStatus {
            enabled: rec.rotation_enabled,
            key_arn: Self::arn(&rec),
            period_days: rec.rotation_period_days,
            next: rec.next_rotation_date,
        })
    }

    pub async fn rotate_key_on_demand(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<String, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:RotateKeyOnDemand", &[Check::Rotatable]),
            )
            .await?;
        if rec.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
            return Err(KmsError::LimitExceeded(format!(
                "{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations.",
                Self::arn(&rec)
            )));
        }
        if rec.rotation_enabled && rec.next_rotation_date.is_some_and(|n| n <= self.now()) {
            return Err(KmsError::Conflict(format!(
                "An automatic rotation of {} is due; try again later.",
                Self::arn(&rec)
            )));
        }
        self.rotate_material(&rec, "ON_DEMAND", None, true).await?;
        Ok(Self::arn(&rec))
    }

    pub async fn list_key_rotations(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<KeyRotations, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:ListKeyRotations", ANY_STATE),
            )
            .await?;
        if rec.key_spec != KeySpec::SymmetricDefault {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} does not support rotation.",
                Self::arn(&rec)
            )));
        }
        let imported = if rec.origin == Origin::External {
            Some(ImportedMaterial {
                imported: rec.key_state != KeyState::PendingImport,
                expiration: self.import_expiration(&rec).await?,
            })
        } else {
            None
        };
        Ok(KeyRotations {
            arn: Self::arn(&rec),
            blob_id: rec.blob_id(),
            current_version: rec.current_version,
            rotations: self.keys.rotations(rec.key_id).await?,
            imported,
        })
    }

    /// The background work due at the clock's now: delete keys whose window ended
    /// (crypto-shredding their material) and rotate keys whose rotation is due. Safe to run on
    /// every node at once: each key is claimed by exactly one (`FOR UPDATE SKIP LOCKED`).
    pub async fn run_due(&self) -> Result<(usize, usize), KmsError> {
        let now = self.now();
        // A primary whose last replica is gone starts its own waiting period.
        // The state MAC is computed first and stored with the state in one statement: a
        // reader never sees the new state under the old MAC (which it would take for
        // tampering), and a crash leaves either state whole.
        for rec in self.keys.replica_deletions_done().await? {
            // Only a wait the service started (state and waiting period as sealed): a row
            // made to wait for replicas in the database is never sealed as pending deletion.
            if !self
                .current_seal(
                    super::seal::key_row(&rec, "state"),
                    super::state_mac_input(&rec),
                    &rec.state_mac,
                )
                .await?
            {
                tracing::error!(key_id = %rec.key_id, "a primary waiting for its replicas' deletion failed its state integrity check (or is an older state put back); not scheduling its deletion");
                continue;
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
                if !self
                    .current_seal(
                        super::seal::key_row(k, "state"),
                        super::state_mac_input(k),
                        &k.state_mac,
                    )
                    .await?
                {
                    tracing::error!(key_id = %k.key_id, "a key due for deletion failed its state integrity check (or is an older state put back: a cancelled deletion); not deleting it");
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
    pub(super) async fn aliases_of(
        &self,
        rec: &KeyRecord,
    ) -> Result<std::sync::Arc<Vec<String>>, KmsError> {
        if let Some(a) = self.key_aliases.lock().unwrap().get(&rec.key_id) {
            crate::metrics::cache("key_aliases", true);
            return Ok(a.clone());
        }
        crate::metrics::cache("key_aliases", false);
        // kms:ResourceAliases decides: any alias row of the key that fails its check refuses
        // the request.
        let mut names = Vec::new();
        for a in self
            .keys
            .list_aliases(&rec.account_id, &rec.region, Some(rec.key_id))
            .await?
        {
            names.push(self.verified_alias(a).await?.alias_name);
        }
        let names = std::sync::Arc::new(names);
        self.key_aliases
            .lock()
            .unwrap()
            .put(rec.key_id, names.clone());
        Ok(names)
    }
}

/// Services whose AWS managed key (`alias/aws/<service>`) is created on first use.
pub const MANAGED_KEY_SERVICES: &[&str] = &[
    "acm",
    "backup",
    "cloudtrail",
    "codecommit",
    "dynamodb",
    "ebs",
    "ecr",
    "elasticfilesystem",
    "es",
    "fsx",
    "glue",
    "kafka",
    "kinesis",
    "lambda",
    "lightsail",
    "logs",
    "rds",
    "redshift",
    "s3",
    "secretsmanager",
    "sns",
    "sqs",
    "ssm",
    "xray",
];

/// AWS's key policy for an AWS managed key: the service may use it on behalf of principals of
/// the account (`kms:ViaService`), and the account may only read its metadata. Everything
/// else (disabling, deleting, re-policing, re-aliasing, rotation changes) is refused by it.
pub fn managed_key_policy(account: &str, region: &str, service: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Id": format!("auto-{service}-1"),
        "Statement": [
            {
                "Sid": format!("Allow access through {service} for all principals in the account that are authorized to use {service}"),
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"StringEquals": {
                    "kms:CallerAccount": account,
                    "kms:ViaService": format!("{service}.{region}.amazonaws.com")
                }}
            },
            {
                "Sid": "Allow direct access to key metadata to the account",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": ["kms:Describe*", "kms:Get*", "kms:List*"],
                "Resource": "*"
            }
        ]
    })
    .to_string()
}

impl Kms {
    /// The AWS managed key behind `alias/aws/<service>`, created on first use (as AWS's
    /// DescribeKey does for a predefined alias with no key yet).
    pub(super) async fn managed_key(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<Uuid>, KmsError> {
        let Some(service) = name.strip_prefix("alias/aws/") else {
            return Ok(None);
        };
        if !MANAGED_KEY_SERVICES.contains(&service) {
            return Ok(None);
        }
        let now = self.now();
        let mut rec = KeyRecord {
            description: format!(
                "Default key that protects my {service} data when no other key is defined"
            ),
            key_manager: "AWS".into(),
            rotation_enabled: true,
            rotation_period_days: Some(365),
            next_rotation_date: Some(now + Duration::days(365)),
            ..self.new_record(
                account,
                region,
                managed_key_policy(account, region, service),
            )
        };
        let key_id = rec.key_id;
        self.seal_new_key(&mut rec, &[]).await?;
        let m = self.new_material(&rec, 1).await?;
        let mut alias = AliasRecord {
            alias_name: name.to_string(),
            key_id,
            account_id: account.to_string(),
            region: region.to_string(),
            created_at: now,
            updated_at: now,
            target_mrk: None,
            mac: vec![],
        };
        alias.mac = self
            .seal_row(
                super::seal::alias_row(&alias),
                super::alias_mac_input(&alias),
                None,
            )
            .await?
            .mac;
        match self.keys.create_managed_key(&rec, &m, &alias).await {
            Ok(()) => {
                tracing::info!(%key_id, alias = name, "AWS managed key created on first use");
                self.invalidate_aliases();
                Ok(Some(key_id))
            }
            // Another request created it first: use that one.
            Err(StoreError::Conflict { .. }) => {
                self.invalidate_aliases();
                match self.keys.alias(account, region, name).await? {
                    Some(a) => Ok(Some(self.verified_alias(a).await?.key_id)),
                    None => Ok(None),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
