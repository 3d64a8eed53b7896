//! `CreateKey`: a new key's record, its material generated and wrapped in the token, its rows
//! sealed and written in one transaction, within the account's quota.

use super::*;

impl Kms {
    /// Authorize creating a key (CreateKey, or ReplicateKey's replica in its Region) with
    /// `conditions` (its spec, usage, origin, multi-Region type) and the condition keys every
    /// creation has: the lockout bypass, and `aws:RequestTag/*` and `aws:TagKeys` for its
    /// tags, which (AWS) also need `kms:TagResource`.
    pub(super) async fn authorize_creation(
        &self,
        caller: &Caller,
        conditions: Vec<(&str, &str)>,
        tags: &[Tag],
        bypass_lockout_check: bool,
    ) -> Result<()> {
        lifecycle::check_new_tags(tags)?;
        let tagged = lifecycle::TagConditions::of(tags)?;
        let mut conditions = conditions;
        conditions.push((
            "kms:BypassPolicyLockoutSafetyCheck",
            if bypass_lockout_check {
                "true"
            } else {
                "false"
            },
        ));
        conditions.extend(tagged.single());
        let multi = tagged.multi();
        let (multi, actions): (&[(&str, &[String])], &[&str]) = if tags.is_empty() {
            (&[], &["kms:CreateKey"])
        } else {
            (&multi, &["kms:CreateKey", "kms:TagResource"])
        };
        for action in actions {
            self.authorize_with(caller, action, None, None, &conditions, multi, None)
                .await?;
        }
        Ok(())
    }

    pub async fn create_key(&self, caller: &Caller, input: CreateKeyInput) -> Result<KeyMetadata> {
        let external = input.origin == Origin::External;
        if external
            && matches!(
                input.key_spec,
                KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87
            )
        {
            // Recorded, no final period.
            return Err(KmsError::Validation(format!(
                "KeySpec {} is not supported for Origin EXTERNAL",
                input.key_spec
            )));
        }
        match (input.origin, &input.custom_key_store_id) {
            (Origin::ExternalKeyStore, None) => {
                return Err(KmsError::Validation(
                    "Origin EXTERNAL_KEY_STORE requires a CustomKeyStoreId and an XksKeyId.".into(),
                ))
            }
            (Origin::ExternalKeyStore, Some(_))
                if input.key_spec != KeySpec::SymmetricDefault
                    || input.key_usage != KeyUsage::EncryptDecrypt
                    || input.multi_region =>
            {
                return Err(KmsError::UnsupportedOperation(
                    crate::messages::CUSTOM_KEY_STORE_KEYS.into(),
                ));
            }
            (Origin::ExternalKeyStore, Some(_)) if input.xks_key_id.is_none() => {
                return Err(KmsError::Validation(
                    "Origin EXTERNAL_KEY_STORE requires an XksKeyId.".into(),
                ))
            }
            (Origin::AwsKms | Origin::External, Some(_)) => {
                return Err(KmsError::Validation(
                    crate::messages::CUSTOM_KEY_STORE_NEEDS_ORIGIN.into(),
                ))
            }
            (Origin::AwsCloudHsm, None) => {
                return Err(KmsError::Validation(
                    crate::messages::ORIGIN_NEEDS_CUSTOM_KEY_STORE.into(),
                ))
            }
            // AWS: symmetric encryption keys only, never multi-Region.
            (Origin::AwsCloudHsm, Some(_))
                if input.key_spec != KeySpec::SymmetricDefault
                    || input.key_usage != KeyUsage::EncryptDecrypt
                    || input.multi_region =>
            {
                return Err(KmsError::UnsupportedOperation(
                    crate::messages::CUSTOM_KEY_STORE_KEYS.into(),
                ));
            }
            _ => {}
        }
        if input.xks_key_id.is_some() && input.origin != Origin::ExternalKeyStore {
            return Err(KmsError::Validation(
                "XksKeyId is only for keys with Origin EXTERNAL_KEY_STORE.".into(),
            ));
        }
        match input.origin {
            Origin::AwsKms | Origin::AwsCloudHsm | Origin::ExternalKeyStore => {}
            Origin::External
                if input.key_spec == KeySpec::SymmetricDefault
                    || input.key_spec.is_hmac()
                    || input.key_spec.is_rsa()
                    || (input.key_spec.is_ecc()
                        && input.key_spec != KeySpec::EccNistEdwards25519) => {}
            Origin::External => {
                return Err(KmsError::UnsupportedOperation(format!(
                "Keys with Origin EXTERNAL and KeySpec {} are not supported by this key store yet.",
                input.key_spec
            )))
            }
        }
        if !asymmetric::usages(input.key_spec).contains(&input.key_usage) {
            return Err(KmsError::Validation(
                crate::messages::usage_incompatible_with_spec(
                    input.key_usage.as_str(),
                    input.key_spec.as_str(),
                ),
            ));
        }
        let kind = asymmetric::kind(input.key_spec);
        if !kind.is_some_and(|k| asymmetric::token_supports(&self.hsm, k)) {
            let caps = self.hsm.capabilities();
            return Err(KmsError::UnsupportedOperation(format!(
                "KeySpec {} is not available: this key store's HSM ({} {}) cannot generate such keys.",
                input.key_spec, caps.manufacturer, caps.model
            )));
        }
        let conditions = vec![
            ("kms:KeySpec", input.key_spec.as_str()),
            ("kms:KeyUsage", input.key_usage.as_str()),
            ("kms:KeyOrigin", input.origin.as_str()),
            (
                "kms:MultiRegion",
                if input.multi_region { "true" } else { "false" },
            ),
        ];
        // A multi-Region key is created as its family's primary.
        let mut conditions = conditions;
        if input.multi_region {
            conditions.push(("kms:MultiRegionKeyType", "PRIMARY"));
        }
        self.authorize_creation(
            caller,
            conditions,
            &input.tags,
            input.bypass_policy_lockout_safety_check,
        )
        .await?;
        self.check_key_quota(&caller.account_id, &caller.region)
            .await?;
        // A key in a custom key store: its store, connected, and the partition that generates
        // and wraps its material (the service token never holds it).
        let partition = match (&input.custom_key_store_id, input.origin) {
            (Some(id), Origin::ExternalKeyStore) => {
                // Its own material is the service token's; the proxy must hold the external key.
                let xks = input.xks_key_id.as_deref().unwrap_or_default();
                self.external_store_for_new_key(caller, id, xks).await?;
                None
            }
            (Some(id), _) => Some(self.store_for_new_key(caller, id).await?),
            (None, _) => None,
        };
        let mut rec = KeyRecord {
            description: input.description,
            key_spec: input.key_spec,
            key_usage: input.key_usage,
            origin: input.origin,
            custom_key_store_id: input.custom_key_store_id.clone(),
            xks_key_id: input.xks_key_id.clone(),
            ..self.new_record(
                &caller.account_id,
                &caller.region,
                input
                    .policy
                    .clone()
                    .unwrap_or_else(|| default_key_policy(&caller.account_id)),
            )
        };
        if input.multi_region {
            if let Some(asymmetric::Kind::Pair(k)) = kind {
                if self.hsm.holds(k) {
                    return Err(KmsError::UnsupportedOperation(format!(
                        "Multi-Region keys with KeySpec {} are not available: this key store's HSM keeps such keys as token objects, which cannot be shared between Regions.",
                        input.key_spec
                    )));
                }
            }
            let mrk = keyid::new_mrk();
            rec.key_id = keyid::mrk_key_id(&mrk, &rec.region);
            rec.mrk_id = Some(mrk);
            rec.mrk_primary = true;
            rec.multi_region = true;
        }
        if input.policy.is_some() {
            self.check_new_policy(
                caller,
                &rec,
                &rec.policy,
                input.bypass_policy_lockout_safety_check,
            )
            .await?;
        }
        if external {
            // No material until it is imported.
            rec.key_state = KeyState::PendingImport;
            rec.current_version = 0;
            self.seal_new_key(&mut rec, &input.tags).await?;
            let aliases = self.seal_new_alias_set(&mut rec, &[]).await?;
            self.keys
                .create_key(&rec, None, &input.tags, self.limits.keys_per_region)
                .await
                .map_err(|e| self.key_quota_error(e))?;
            self.written(&aliases);
            return self.metadata(&rec).await;
        }
        self.seal_new_key(&mut rec, &input.tags).await?;
        let aliases = self.seal_new_alias_set(&mut rec, &[]).await?;
        // Token generates → token wraps → database commits → reply.
        let (m, held) = match &partition {
            Some(p) => (self.new_partition_material(&rec, p).await?, None),
            None => self.new_material(&rec, 1).await?,
        };
        let written = self
            .keys
            .create_key(&rec, Some(&m), &input.tags, self.limits.keys_per_region)
            .await;
        if let Some(held) = held {
            // A key kept as a token object (`hsm::held`): the object stays only with the key's
            // rows. A commit whose outcome is unknown (the database went away, a commit that
            // timed out and may still land) keeps it unless the key is certainly not there.
            let keep = match &written {
                Ok(()) => true,
                Err(crate::store::StoreError::Conflict { .. })
                | Err(crate::store::StoreError::Invalid(_)) => false,
                Err(_) => !matches!(self.keys.key(rec.key_id).await, Ok(None)),
            };
            if keep {
                held.keep();
            }
        }
        written.map_err(|e| match e {
            crate::store::StoreError::Conflict { constraint } if constraint == "keys_xks_key" => {
                KmsError::KeyStore(
                    super::error::KeyStoreError::XksKeyAlreadyInUse,
                    "The request was rejected because the (XksKeyId) is already associated with another KMS key in this external key store.".into(),
                )
            }
            e => self.key_quota_error(e),
        })?;
        // The trail holds the new key's set of aliases: a set removed later is refused.
        self.written(&aliases);
        self.metadata(&rec).await
    }

    /// Destroy the token object of a held key's material (`hsm::held`), if it is one: false
    /// (logged) if the token could not be asked.
    pub(crate) async fn destroy_held(&self, rec: &KeyRecord, m: &MaterialRecord) -> bool {
        if crate::hsm::held_id(&m.wrapped).is_none() {
            return true;
        }
        let label = held_label(rec.key_id, m.version);
        match self
            .hsm
            .destroy_held(m.wrapped.clone(), label.clone())
            .await
        {
            Ok(true) => {
                tracing::info!(key_id = %rec.key_id, label, "key object destroyed in the token");
                true
            }
            Ok(false) => {
                tracing::info!(key_id = %rec.key_id, label, "the token holds no such key object (destroyed by an earlier pass)");
                true
            }
            Err(e) => {
                tracing::error!(key_id = %rec.key_id, label, error = %e, "could not destroy the key object in the token; the key is deleted at a later pass");
                false
            }
        }
    }

    /// An enabled, customer-managed symmetric key created now, to be adjusted by the caller.
    pub(crate) fn new_record(&self, account: &str, region: &str, policy: String) -> KeyRecord {
        KeyRecord::new(Uuid::new_v4(), account, region, policy, self.now())
    }

    /// Material version `version` of a key: generated and wrapped in the token, with the row
    /// MAC that binds it to the key; for a key kept as a token object, the new object's guard
    /// (`NewHeld`: the object is destroyed unless the caller keeps it once the rows are
    /// written — on every error path here too).
    pub(crate) async fn new_material(
        &self,
        rec: &KeyRecord,
        version: i32,
    ) -> Result<(MaterialRecord, Option<crate::hsm::NewHeld>)> {
        let mut held = None;
        let (wrapped, root_version, public_key) = match asymmetric::kind(rec.key_spec) {
            Some(asymmetric::Kind::Pair(kind)) => {
                let use_ = asymmetric::private_use(rec.key_usage);
                let (w, public, v) = if self.hsm.holds(kind) {
                    let (w, public, v, guard) = self
                        .hsm
                        .generate_held_key_pair(kind, use_, held_label(rec.key_id, version))
                        .await?;
                    held = Some(guard);
                    (w, public, v)
                } else {
                    self.hsm.generate_wrapped_key_pair(kind, use_).await?
                };
                (w, v, Some(asymmetric::spki(kind, &public)?))
            }
            Some(asymmetric::Kind::Hmac(_, len)) => {
                let (w, v) = self.hsm.generate_wrapped_secret(len).await?;
                (w, v, None)
            }
            _ => {
                let (w, v) = self.hsm.generate_wrapped_aes256().await?;
                (w, v, None)
            }
        };
        let mut m = MaterialRecord {
            key_id: rec.key_id,
            version,
            wrapped,
            root_version: root_version as i32,
            mac: vec![],
            public_key,
        };
        m.mac = self.hsm.row_mac(material_mac_input(rec, &m)).await?;
        Ok((m, held))
    }
}

impl Kms {
    /// The first material of a key in a custom key store: an AES-256 key generated in its
    /// partition and wrapped there under the partition's own root key.
    async fn new_partition_material(
        &self,
        rec: &KeyRecord,
        partition: &crate::hsm::Hsm,
    ) -> Result<MaterialRecord> {
        let (wrapped, root_version) = partition.generate_wrapped_aes256().await?;
        let mut m = MaterialRecord {
            key_id: rec.key_id,
            version: 1,
            wrapped,
            root_version: root_version as i32,
            mac: vec![],
            public_key: None,
        };
        m.mac = self.hsm.row_mac(material_mac_input(rec, &m)).await?;
        Ok(m)
    }
}

/// The label of a held key's token object (`hsm::held`): its key and material version.
pub(crate) fn held_label(key_id: Uuid, version: i32) -> String {
    format!("{}{key_id}-v{version}", crate::hsm::HELD_LABEL_PREFIX)
}

/// A held key object in the token, and whether a key of the database still names it.
pub struct HeldObject {
    pub label: String,
    /// `None`: no key version's row names this object (its key was deleted while the token
    /// was unreachable, or its rows were removed with SQL): an orphan to remove by hand.
    pub key: Option<(Uuid, i32)>,
}

impl Kms {
    /// The token's held key objects (`hsm::held`), each with the key version whose row names
    /// it: `kms hsm held-keys`.
    pub async fn held_objects(&self) -> Result<Vec<HeldObject>> {
        let mut out = Vec::new();
        for (label, id) in self.hsm.held_objects().await? {
            let parsed = label
                .strip_prefix(crate::hsm::HELD_LABEL_PREFIX)
                .and_then(|rest| rest.rsplit_once("-v"))
                .and_then(|(k, v)| Some((k.parse::<Uuid>().ok()?, v.parse::<i32>().ok()?)));
            let mut key = None;
            if let Some((key_id, version)) = parsed {
                if let Some(m) = self.keys.material(key_id, version).await? {
                    if crate::hsm::held_id(&m.wrapped).is_some_and(|h| h[..] == id[..]) {
                        key = Some((key_id, version));
                    }
                }
            }
            out.push(HeldObject { label, key });
        }
        Ok(out)
    }
}
