//! Multi-Region keys: one key id (`mrk-…`) and one key material shared by a primary key and
//! its replicas, each region's key a row of its own (row id derived from the shared id and the
//! region) with its own policy, aliases, tags, grants and state. Shared properties (material,
//! spec, usage, origin, rotation) are written to every row in one transaction.

use super::keyid;
use super::preamble::{Access, Check};
use super::{
    default_key_policy, material_mac_input, Caller, KeyMetadata, Kms, KmsError, RelatedKey,
};
use crate::domain::{OnConflict, Result};
use crate::store::{KeyRecord, MaterialRecord, StoreError, Tag};
use crate::vocab::{KeySpec, KeyState, Origin};

pub struct ReplicateInput {
    pub key_id: String,
    pub replica_region: String,
    pub policy: Option<String>,
    pub bypass_policy_lockout_safety_check: bool,
    pub description: String,
    pub tags: Vec<Tag>,
}

pub struct ReplicateOutput {
    pub metadata: KeyMetadata,
    pub policy: String,
    pub tags: Vec<Tag>,
}

impl Kms {
    /// A key's metadata as `DescribeKey` shows it, with its related multi-Region keys.
    pub(crate) async fn metadata(&self, rec: &KeyRecord) -> Result<KeyMetadata> {
        let mut related: Vec<RelatedKey> = match rec.mrk_id {
            None => vec![],
            Some(mrk) => self
                .verified_family(mrk, &rec.account_id)
                .await?
                .iter()
                .map(|r| RelatedKey {
                    arn: r.arn(),
                    region: r.region.clone(),
                    primary: r.mrk_primary,
                })
                .collect(),
        };
        related.sort_by_key(|k| !k.primary);
        let store = self.key_store_view(rec).await?;
        // AWS: the keys of a custom key store that is not connected are `Unavailable`.
        let key_state = match &store {
            Some((_, _, false))
                if matches!(rec.key_state, KeyState::Enabled | KeyState::Disabled) =>
            {
                KeyState::Unavailable
            }
            _ => rec.key_state,
        };
        Ok(KeyMetadata {
            custom_key_store: store.map(|(id, cluster, _)| (id, cluster)),
            xks_key_id: rec.xks_key_id.clone(),
            account_id: rec.account_id.clone(),
            key_id: rec.public_id().to_string(),
            arn: rec.arn(),
            created_at: rec.created_at,
            description: rec.description.clone(),
            key_state,
            key_usage: rec.key_usage,
            key_spec: rec.key_spec,
            origin: rec.origin,
            key_manager: rec.key_manager.clone(),
            multi_region: rec.multi_region,
            primary: rec.mrk_primary,
            // Only symmetric encryption keys name their material (they can have several); a
            // key pending its first import has none yet.
            // AWS's current documentation: symmetric encryption keys of AWS_KMS or EXTERNAL
            // origin (its earlier text excluded multi-Region keys with imported material).
            // Keys in a custom key store (AWS_CLOUDHSM, EXTERNAL_KEY_STORE) have none.
            current_key_material_id: (rec.current_version > 0
                && rec.key_spec == KeySpec::SymmetricDefault
                && matches!(rec.origin, Origin::AwsKms | Origin::External))
            .then(|| super::rotation::material_id(&rec.blob_id(), rec.current_version)),
            deletion_date: rec.deletion_date,
            pending_window_days: rec.pending_window_days,
            related,
            algorithms: super::asymmetric::algorithms(
                rec.key_spec,
                rec.key_usage,
                self.hsm.capabilities(),
            ),
            expiration: self.import_expiration(rec).await?,
        })
    }

    /// Drop this node's cached copies of a key and, for a multi-Region key, of its copies in
    /// every region (other nodes hear of the change through NOTIFY).
    pub(crate) fn invalidate_related(&self, rec: &KeyRecord) {
        self.invalidate(Some(rec.key_id));
        if let Some(mrk) = rec.mrk_id {
            for r in &self.regions {
                self.invalidate(Some(keyid::mrk_key_id(&mrk, r)));
            }
        }
    }

    /// The caller, acting in another region of this deployment.
    fn in_region(caller: &Caller, region: &str) -> Caller {
        Caller {
            region: region.to_string(),
            ..caller.clone()
        }
    }

    /// A Region this deployment serves; another is answered as AWS answers a Region it has
    /// no multi-Region keys in (recorded).
    fn require_served(&self, region: &str) -> Result<()> {
        if !self.regions.iter().any(|r| r == region) {
            return Err(KmsError::Validation(format!(
                "Region {region} is not a valid Region or multi-Region keys are not supported in Region {region}."
            )));
        }
        Ok(())
    }

    pub async fn replicate_key(
        &self,
        caller: &Caller,
        input: ReplicateInput,
    ) -> Result<ReplicateOutput> {
        let primary = self
            .key_for(
                caller,
                &input.key_id,
                // A disabled primary is refused (`DisabledException`, as recorded on AWS).
                Access::to("kms:ReplicateKey", &[Check::Primary, Check::Enabled])
                    .conditions(&[("kms:ReplicaRegion", &input.replica_region)]),
            )
            .await?;
        if input.replica_region == primary.region {
            // Recorded, in these words.
            return Err(KmsError::Validation(format!(
                "{} cannot have a replica because it contains the primary.",
                input.replica_region
            )));
        }
        if aws_partition(&input.replica_region) != aws_partition(&primary.region) {
            // Recorded (a replica in cn-north-1 of a key in us-east-1), in these words.
            return Err(KmsError::Validation(
                crate::messages::REPLICA_IN_ANOTHER_PARTITION.into(),
            ));
        }
        self.require_served(&input.replica_region)?;
        let mrk = primary.mrk_id.expect("require_primary: a multi-Region key");
        let there = Self::in_region(caller, &input.replica_region);
        if self
            .keys
            .key(keyid::mrk_key_id(&mrk, &input.replica_region))
            .await?
            .is_some()
        {
            return Err(Self::replica_exists());
        }
        // The replica is created (and tagged) with the condition keys CreateKey has.
        let conditions = vec![
            ("kms:KeySpec", primary.key_spec.as_str()),
            ("kms:KeyUsage", primary.key_usage.as_str()),
            ("kms:KeyOrigin", primary.origin.as_str()),
            ("kms:MultiRegion", "true"),
            ("kms:MultiRegionKeyType", "REPLICA"),
        ];
        self.authorize_creation(
            &there,
            conditions,
            &input.tags,
            input.bypass_policy_lockout_safety_check,
        )
        .await?;
        // Another request may rotate the key between reading its material and committing the
        // copy; the store refuses a stale copy, and we read again.
        for _ in 0..3 {
            // The stored primary, not a cached one: its current version must be exact. The
            // replica copies what it is (spec, usage, origin, account, family, key store) and
            // its rotation state, and is sealed with them: the primary as its seals hold it.
            let primary = self
                .load_verified(primary.key_id)
                .await?
                .ok_or(KmsError::KeyUnavailable)?;
            Self::check(&primary, &[Check::Primary, Check::Enabled])?;
            let external = primary.origin == Origin::External;
            let mut replica = KeyRecord {
                key_id: keyid::mrk_key_id(&mrk, &input.replica_region),
                region: input.replica_region.clone(),
                description: input.description.clone(),
                policy: input
                    .policy
                    .clone()
                    .unwrap_or_else(|| default_key_policy(&primary.account_id)),
                // AWS does not copy imported material: the same material is imported into
                // the replica on its own.
                key_state: if external {
                    KeyState::PendingImport
                } else {
                    KeyState::Enabled
                },
                mrk_primary: false,
                // With imported material too: the replica names the primary's current material
                // (AWS shows its CurrentKeyMaterialId) until that material is imported into it.
                current_version: primary.current_version,
                // The primary's rotation in progress is the primary's to complete.
                on_demand_rotation_start: None,
                created_at: self.now(),
                deletion_date: None,
                pending_window_days: None,
                ..primary.clone()
            };
            if input.policy.is_some() {
                self.check_new_policy(
                    &there,
                    &replica,
                    &replica.policy,
                    input.bypass_policy_lockout_safety_check,
                )
                .await?;
            }
            self.check_key_quota(&replica.account_id, &replica.region)
                .await?;
            self.seal_new_key(&mut replica, &input.tags).await?;
            let aliases = self.seal_new_alias_set(&mut replica, &[]).await?;
            let mut copies = Vec::new();
            let versions = if external { 0 } else { primary.current_version };
            for v in 1..=versions {
                let m = self
                    .keys
                    .material(primary.key_id, v)
                    .await?
                    .ok_or(KmsError::KeyUnavailable)?;
                self.verify_material(&primary, &m).await?;
                if crate::hsm::held_id(&m.wrapped).is_some() {
                    // Not made multi-Region at creation (see `create_key`); never shared.
                    return Err(KmsError::UnsupportedOperation(
                        "This key's private key is a token object of this key store's HSM and cannot be shared between Regions.".into(),
                    ));
                }
                let copy = MaterialRecord {
                    key_id: replica.key_id,
                    ..m.clone()
                };
                let mac = self
                    .hsm
                    .row_mac(material_mac_input(&replica, &copy))
                    .await?;
                copies.push((m, mac));
            }
            match self
                .keys
                .create_replica(
                    &replica,
                    primary.key_id,
                    primary.current_version,
                    &copies,
                    &input.tags,
                    self.limits.keys_per_region,
                )
                .await
            {
                Ok(()) => {
                    self.written(&aliases);
                    tracing::info!(key_id = %replica.public_id(), region = %replica.region, "multi-Region key replicated");
                    return Ok(ReplicateOutput {
                        metadata: self.metadata(&replica).await?,
                        policy: replica.policy.clone(),
                        tags: input.tags,
                    });
                }
                Err(StoreError::Conflict { constraint }) if constraint == "mrk_primary_changed" => {
                    continue
                }
                Err(e @ StoreError::Conflict { .. }) if matches!(&e, StoreError::Conflict { constraint } if constraint == crate::store::QUOTA_EXCEEDED) => {
                    return Err(self.key_quota_error(e))
                }
                Err(StoreError::Conflict { .. }) => return Err(Self::replica_exists()),
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::InvalidState(format!(
            "{} is being updated; try again.",
            primary.arn()
        )))
    }

    /// Recorded, in these words (a replica pending deletion there counts too).
    fn replica_exists() -> KmsError {
        KmsError::AlreadyExists(
            "You can create only one replica of each primary key in each AWS Region.".into(),
        )
    }

    pub async fn update_primary_region(
        &self,
        caller: &Caller,
        key_id: &str,
        region: &str,
    ) -> Result<()> {
        let primary = self
            .key_for(
                caller,
                key_id,
                Access::to(
                    "kms:UpdatePrimaryRegion",
                    &[Check::MovablePrimary, Check::Enabled],
                )
                .conditions(&[("kms:PrimaryRegion", region)]),
            )
            .await?;
        self.require_served(region)?;
        if region == primary.region {
            return Ok(());
        }
        let mrk = primary.mrk_id.expect("require_primary: a multi-Region key");
        let there = Self::in_region(caller, region);
        let replica = self
            .record(keyid::mrk_key_id(&mrk, region))
            .await?
            .ok_or_else(|| {
                // Recorded, in these words.
                KmsError::Validation(format!(
                    "{} does not have a replica key in the specified Region.",
                    primary.public_id()
                ))
            })?;
        let conditions = [("kms:PrimaryRegion", region)];
        let access =
            Access::to("kms:UpdatePrimaryRegion", &[Check::Enabled]).conditions(&conditions);
        self.admit(&there, &replica, access).await?;
        // Both flags move together, each row verified before it is changed and sealed again.
        let (mut updates, mut seals) = (Vec::new(), Vec::new());
        for r in self.verified_rotation_rows(&primary).await? {
            let primary_now = r.key_id == replica.key_id;
            if r.mrk_primary != primary_now {
                let moved = KeyRecord {
                    mrk_primary: primary_now,
                    ..r.clone()
                };
                let (u, seal) = self.rotation_update(&r, &moved).await?;
                updates.push(u);
                seals.push(seal);
            }
        }
        // The old primary's flag clears first: a multi-Region key never has two primaries.
        updates.sort_by_key(|u| u.mrk_primary);
        self.keys.set_primary(mrk, &updates).await.on_conflict(|| {
            KmsError::InvalidState(format!("{} is being updated; try again.", primary.arn()))
        })?;
        self.written_all(&seals);
        self.invalidate_related(&primary);
        tracing::info!(key_id = %primary.public_id(), from = %primary.region, to = %region, "multi-Region primary moved");
        Ok(())
    }
}

/// The AWS partition a Region name belongs to, by its prefix (`cn-` is `aws-cn`,
/// `us-gov-` `aws-us-gov`, the isolated Regions theirs); every other name is `aws`.
fn aws_partition(region: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 6] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}
