//! Bring your own key: `GetParametersForImport`, `ImportKeyMaterial`,
//! `DeleteImportedKeyMaterial`, and the expiry of imported material.

use super::preamble::{Access, Check};
use super::{mac_input, Caller, Kms, KmsError};
use crate::hsm::{Curve, Hash, ImportAs, ImportWrap, PairKind, PrivateUse};
use crate::store::{ImportTokenRecord, KeyImportRecord, KeyRecord, MaterialRecord, StoreError};
use crate::vocab::{
    AlgorithmSpec, ExpirationModelType, KeySpec, KeyState, Origin, WrappingKeySpec,
};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// How long an import token and its public key may be used (as AWS: 24 hours).
const TOKEN_LIFETIME_HOURS: i64 = 24;
/// The latest `ValidTo` an import may have (as AWS: 365 days ahead).
const MAX_VALID_DAYS: i64 = 365;

pub struct ImportParameters {
    pub key_arn: String,
    pub import_token: Vec<u8>,
    pub public_key: Vec<u8>,
    pub valid_to: DateTime<Utc>,
}

pub(super) fn token_mac_input(t: &ImportTokenRecord) -> Vec<u8> {
    let (rv, at) = (
        t.root_version.to_be_bytes(),
        t.valid_to.timestamp_micros().to_be_bytes(),
    );
    mac_input(
        "kms.import-token.v1",
        &[
            t.token_id.as_bytes(),
            t.key_id.as_bytes(),
            t.wrapping_algorithm.as_bytes(),
            t.wrapping_key_spec.as_bytes(),
            &t.wrapped_private,
            &rv,
            &at,
        ],
    )
}

pub(super) fn import_mac_input(i: &KeyImportRecord) -> Vec<u8> {
    let at = i
        .valid_to
        .map(|t| t.timestamp_micros().to_be_bytes().to_vec())
        .unwrap_or_default();
    mac_input(
        "kms.key-import.v1",
        &[
            i.key_id.as_bytes(),
            &i.material_check,
            i.expiration_model.as_deref().unwrap_or("").as_bytes(),
            &at,
        ],
    )
}

/// The wrapping mechanism for an algorithm name, if this token can do it.
fn wrap_of(kms: &Kms, algorithm: AlgorithmSpec, as_: ImportAs) -> Result<ImportWrap, KmsError> {
    let caps = kms.hsm.capabilities();
    let (wrap, hash) = match algorithm {
        AlgorithmSpec::RsaesOaepSha1 => (ImportWrap::Oaep(Hash::Sha1), Hash::Sha1),
        AlgorithmSpec::RsaesOaepSha256 => (ImportWrap::Oaep(Hash::Sha256), Hash::Sha256),
        AlgorithmSpec::RsaAesKeyWrapSha1 => (ImportWrap::RsaAes(Hash::Sha1), Hash::Sha1),
        AlgorithmSpec::RsaAesKeyWrapSha256 => (ImportWrap::RsaAes(Hash::Sha256), Hash::Sha256),
        other @ (AlgorithmSpec::RsaesPkcs1V15 | AlgorithmSpec::Sm2Pke) => {
            return Err(KmsError::UnsupportedOperation(format!(
                "WrappingAlgorithm {other} is not supported by this key store."
            )))
        }
    };
    // RSAES_OAEP_SHA_256 wraps the material itself: without OAEP-SHA-256 in the token, the
    // padding would have to come off in host memory with the material in it. RSA_AES_KEY_WRAP
    // wraps only an ephemeral AES key that way; the material stays in the token.
    // Where the operator opted in, secret material (not a private key) may be decoded here.
    let secret = matches!(as_, ImportAs::Aes256 | ImportAs::Secret { .. });
    let available = match wrap {
        ImportWrap::Oaep(_) => caps.oaep_sha256 || (caps.oaep_sha256_import_in_service && secret),
        ImportWrap::RsaAes(_) => caps.decrypts_oaep_sha256(),
    };
    if hash == Hash::Sha256 && !available {
        let instead = match wrap {
            ImportWrap::Oaep(_) if caps.decrypts_oaep_sha256() => ", and the key material would have to leave it to be unwrapped. Use RSA_AES_KEY_WRAP_SHA_256",
            _ => "",
        };
        return Err(KmsError::UnsupportedOperation(format!(
            "WrappingAlgorithm {algorithm} is not available: this key store's HSM ({} {}) has no RSAES-OAEP with SHA-256{instead}.",
            caps.manufacturer, caps.model
        )));
    }
    Ok(wrap)
}

/// What material a key takes.
pub(super) fn import_as(rec: &KeyRecord) -> Result<ImportAs, KmsError> {
    match rec.key_spec {
        KeySpec::SymmetricDefault => Ok(ImportAs::Aes256),
        // AWS: HMAC key material of at least the digest length, at most 64 bytes.
        KeySpec::Hmac224 => Ok(ImportAs::Secret { min: 28, max: 64 }),
        KeySpec::Hmac256 => Ok(ImportAs::Secret { min: 32, max: 64 }),
        KeySpec::Hmac384 => Ok(ImportAs::Secret { min: 48, max: 64 }),
        KeySpec::Hmac512 => Ok(ImportAs::Secret { min: 64, max: 64 }),
        spec if spec.is_rsa() => Ok(ImportAs::Rsa {
            bits: spec.as_str()[4..].parse().unwrap_or(2048),
            use_: super::asymmetric::private_use(rec.key_usage),
        }),
        spec if spec.is_ecc() => match super::asymmetric::kind(spec) {
            Some(super::asymmetric::Kind::Pair(PairKind::Ec(curve))) => Ok(ImportAs::Ec {
                curve,
                use_: super::asymmetric::private_use(rec.key_usage),
            }),
            _ => Err(KmsError::UnsupportedOperation(format!(
                "Importing key material for KeySpec {spec} is not supported by this key store yet."
            ))),
        },
        other => Err(KmsError::UnsupportedOperation(format!(
            "Importing key material for KeySpec {other} is not supported by this key store yet."
        ))),
    }
}

/// Pending deletion, or (a multi-Region primary) waiting for its replicas' deletion.
fn pending_deletion(rec: &KeyRecord) -> bool {
    matches!(
        rec.key_state,
        KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
    )
}

impl Kms {
    /// The check value of an import record's material under the current MAC key: the stored
    /// one, or (stored under an older MAC key, before the re-MAC job moved it) worked out again
    /// in the token from the key's stored material. A check made under an older MAC key whose
    /// material is gone (deleted imported material) stays under its key, which is destroyed
    /// only once none is left ([`Kms::mac_key_status`]).
    pub(crate) async fn check_under_current_mac(
        &self,
        p: &KeyImportRecord,
        as_: ImportAs,
    ) -> Result<Vec<u8>, KmsError> {
        let current = self.hsm.mac_version()?;
        let stored = crate::hsm::mac_parts(&p.material_check).map(|(v, _)| v);
        if stored == Some(current) {
            return Ok(p.material_check.clone());
        }
        match self.stored_material_check(p.key_id, as_).await? {
            Some(check) => Ok(check),
            None => Err(KmsError::KeyUnavailable),
        }
    }

    /// The check value, under the current MAC key, of the material key `key_id` holds now
    /// (its row verified first); `None` if it holds none.
    pub(crate) async fn stored_material_check(
        &self,
        key_id: uuid::Uuid,
        as_: ImportAs,
    ) -> Result<Option<Vec<u8>>, KmsError> {
        let Some(rec) = self.keys.key(key_id).await? else {
            return Ok(None);
        };
        let Some(m) = self.keys.material(key_id, rec.current_version).await? else {
            return Ok(None);
        };
        if !self
            .hsm
            .row_mac_matches(super::material_mac_input(&rec, &m), &m.mac)
            .await?
        {
            tracing::error!(key_id = %key_id, "the key's material row failed its integrity check");
            return Err(KmsError::KeyUnavailable);
        }
        Ok(Some(
            self.hsm
                .material_check(m.wrapped.clone(), m.root_version as u32, as_)
                .await?,
        ))
    }

    pub async fn get_parameters_for_import(
        &self,
        caller: &Caller,
        key_id: &str,
        algorithm: AlgorithmSpec,
        key_spec: WrappingKeySpec,
    ) -> Result<ImportParameters, KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:GetParametersForImport", &[Check::External]).conditions(&[
                    ("kms:WrappingAlgorithm", algorithm.as_str()),
                    ("kms:WrappingKeySpec", key_spec.as_str()),
                ]),
            )
            .await?;
        if !matches!(
            rec.key_state,
            KeyState::PendingImport | KeyState::Enabled | KeyState::Disabled
        ) {
            return Err(KmsError::InvalidState(crate::messages::key_state(
                &rec.arn(),
                &rec.key_state.words(),
            )));
        }
        let as_ = import_as(&rec)?;
        let wrap = wrap_of(self, algorithm, as_)?;
        if matches!(as_, ImportAs::Rsa { .. }) && matches!(wrap, ImportWrap::Oaep(_)) {
            return Err(KmsError::UnsupportedOperation(format!(
                "WrappingAlgorithm {algorithm} cannot carry a private key; use RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256."
            )));
        }
        let bits = match key_spec {
            WrappingKeySpec::Rsa2048 => 2048,
            WrappingKeySpec::Rsa3072 => 3072,
            WrappingKeySpec::Rsa4096 => 4096,
            other @ WrappingKeySpec::Sm2 => {
                return Err(KmsError::UnsupportedOperation(format!(
                    "WrappingKeySpec {other} is not supported by this key store."
                )))
            }
        };
        if matches!(
            as_,
            ImportAs::Ec {
                curve: Curve::P521,
                ..
            }
        ) && matches!(wrap, ImportWrap::Oaep(_))
            && bits == 2048
        {
            return Err(KmsError::UnsupportedOperation(format!(
                "WrappingAlgorithm {algorithm} with WrappingKeySpec RSA_2048 cannot carry ECC_NIST_P521 key material; use RSA_3072 or RSA_4096, or an RSA_AES_KEY_WRAP algorithm."
            )));
        }
        // Each call generates a key pair in the token: a rate per account and region, counted
        // in the database (every node's calls) from the tokens issued in the last second.
        let issued = self
            .keys
            .count_import_tokens_since(
                &rec.account_id,
                &rec.region,
                self.now() + Duration::hours(TOKEN_LIFETIME_HOURS) - Duration::seconds(1),
            )
            .await?;
        if issued >= self.limits.import_parameters_per_second {
            return Err(KmsError::Throttled);
        }
        let kind = PairKind::Rsa(bits);
        let (wrapped_private, public, root_version) = self
            .hsm
            .generate_wrapped_key_pair(kind, PrivateUse::Unwrap)
            .await?;
        let public_key = super::asymmetric::spki(kind, &public)?;
        let mut t = ImportTokenRecord {
            token_id: Uuid::new_v4(),
            key_id: rec.key_id,
            wrapping_algorithm: algorithm.to_string(),
            wrapping_key_spec: key_spec.to_string(),
            wrapped_private,
            root_version: root_version as i32,
            valid_to: self.now() + Duration::hours(TOKEN_LIFETIME_HOURS),
            mac: vec![],
        };
        t.mac = self.hsm.row_mac(token_mac_input(&t)).await?;
        self.keys.insert_import_token(&t).await?;
        Ok(ImportParameters {
            key_arn: rec.arn(),
            import_token: t.token_id.as_bytes().to_vec(),
            public_key,
            valid_to: t.valid_to,
        })
    }

    /// `ValidTo`/`ExpirationModel` checked as AWS checks them; the expiry to store.
    fn import_expiry(
        &self,
        model: Option<ExpirationModelType>,
        valid_to: Option<DateTime<Utc>>,
    ) -> Result<(String, Option<DateTime<Utc>>), KmsError> {
        use ExpirationModelType::{KeyMaterialDoesNotExpire, KeyMaterialExpires};
        let model = model.unwrap_or(KeyMaterialExpires);
        match (model, valid_to) {
            (KeyMaterialExpires, None) => Err(KmsError::Validation(
                crate::messages::VALID_TO_REQUIRED.into(),
            )),
            (KeyMaterialDoesNotExpire, Some(_)) => Err(KmsError::Validation(
                "ValidTo must be omitted when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE."
                    .into(),
            )),
            (KeyMaterialExpires, Some(t)) => {
                let now = self.now();
                if t <= now || t > now + Duration::days(MAX_VALID_DAYS) {
                    return Err(KmsError::Validation(format!(
                        "ValidTo must be in the future and at most {MAX_VALID_DAYS} days from now."
                    )));
                }
                Ok((model.to_string(), Some(t)))
            }
            (KeyMaterialDoesNotExpire, None) => Ok((model.to_string(), None)),
        }
    }

    /// Import material into an `EXTERNAL` key pending import. Returns the key's ARN and, for a
    /// symmetric encryption key, the material's id (`KeyMaterialId`).
    #[allow(clippy::too_many_arguments)]
    pub async fn import_key_material(
        &self,
        caller: &Caller,
        key_id: &str,
        import_token: &[u8],
        encrypted: Vec<u8>,
        expiration_model: Option<ExpirationModelType>,
        valid_to: Option<DateTime<Utc>>,
        import_type: Option<&str>,
        key_material_id: Option<&str>,
    ) -> Result<(String, Option<String>), KmsError> {
        let (model, valid_to) = self.import_expiry(expiration_model, valid_to)?;
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:ImportKeyMaterial", &[Check::External])
                    .conditions(&[("kms:ExpirationModel", &model)]),
            )
            .await?;
        // Enabled: the same material again, to change its expiration (AWS: "PendingImport or
        // Enabled").
        let reimport = rec.key_state == KeyState::Enabled;
        if rec.key_state != KeyState::PendingImport && !reimport {
            return Err(KmsError::InvalidState(crate::messages::key_state(
                &rec.arn(),
                &rec.key_state.words(),
            )));
        }
        let as_ = import_as(&rec)?;
        let symmetric = rec.key_spec == KeySpec::SymmetricDefault;
        if !symmetric && (import_type.is_some() || key_material_id.is_some()) {
            return Err(KmsError::UnsupportedOperation(format!(
                "ImportType and KeyMaterialId are only usable with symmetric encryption keys; {} has KeySpec {}.",
                rec.arn(),
                rec.key_spec
            )));
        }
        if import_type == Some("NEW_KEY_MATERIAL") && key_material_id.is_some() {
            return Err(KmsError::Validation(
                "You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL.".into(),
            ));
        }
        let material_id = super::rotation::material_id(&rec.blob_id(), 1);
        if let Some(id) = key_material_id {
            if id != material_id {
                return Err(KmsError::NotFound(format!(
                    "Key material {id} is not associated with {}.",
                    rec.arn()
                )));
            }
        }
        let token_id = Uuid::from_slice(import_token).map_err(|_| KmsError::InvalidImportToken)?;
        let Some(t) = self.keys.import_token(token_id).await? else {
            return Err(KmsError::InvalidImportToken);
        };
        if t.key_id != rec.key_id
            || !self
                .hsm
                .row_mac_matches(token_mac_input(&t), &t.mac)
                .await?
        {
            return Err(KmsError::InvalidImportToken);
        }
        if t.valid_to <= self.now() {
            return Err(KmsError::ExpiredImportToken);
        }
        // The token's row passed its MAC: a word this build does not know is a row it did not
        // write.
        let algorithm = t
            .wrapping_algorithm
            .parse::<AlgorithmSpec>()
            .map_err(|_| KmsError::InvalidImportToken)?;
        let wrap = wrap_of(self, algorithm, as_)?;
        let bits = t
            .wrapping_key_spec
            .strip_prefix("RSA_")
            .and_then(|b| b.parse().ok())
            .ok_or(KmsError::InvalidImportToken)?;
        let imported = match self
            .hsm
            .import_material(
                t.wrapped_private.clone(),
                t.root_version as u32,
                bits,
                wrap,
                encrypted,
                as_,
            )
            .await?
        {
            Ok(i) => i,
            Err(why) => {
                tracing::info!(key_id = %rec.key_id, reason = %why, "imported key material refused");
                return Err(KmsError::InvalidCiphertext);
            }
        };
        // The material this key had before, and (for a multi-Region key) what its related keys
        // have: AWS does not copy imported material between them, so each takes only the same.
        let mut previous: Vec<KeyImportRecord> = self
            .keys
            .key_import(rec.key_id)
            .await?
            .into_iter()
            .collect();
        if let Some(mrk) = rec.mrk_id {
            for k in self.keys.related_keys(mrk).await? {
                if k.key_id != rec.key_id {
                    previous.extend(self.keys.key_import(k.key_id).await?);
                }
            }
        }
        match import_type {
            // A second material for on-demand rotation: not kept by this key store.
            Some("NEW_KEY_MATERIAL") if !previous.is_empty() => {
                return Err(KmsError::UnsupportedOperation(format!(
                    "Importing new key material into {}, which already has key material, is not supported by this key store yet; import the same key material with ImportType EXISTING_KEY_MATERIAL.",
                    rec.arn()
                )))
            }
            Some("EXISTING_KEY_MATERIAL") if previous.is_empty() => {
                return Err(KmsError::IncorrectKeyMaterial);
            }
            _ => {}
        }
        for p in &previous {
            if !self
                .current_seal(
                    super::seal::import_row(p.key_id),
                    import_mac_input(p),
                    &Some(p.mac.clone()),
                )
                .await?
            {
                tracing::error!(key_id = %p.key_id, "the key's import record failed its integrity check (or is an older record put back)");
                return Err(KmsError::KeyUnavailable);
            }
            let stored_check = self.check_under_current_mac(p, as_).await?;
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                stored_check.as_slice(),
                imported.check.as_slice(),
            )) {
                return Err(KmsError::IncorrectKeyMaterial);
            }
        }
        let mut imp = KeyImportRecord {
            key_id: rec.key_id,
            material_check: imported.check,
            expiration_model: Some(model),
            valid_to,
            mac: vec![],
        };
        let own = previous.iter().find(|p| p.key_id == rec.key_id);
        let import_seal = self
            .seal_row(
                super::seal::import_row(rec.key_id),
                import_mac_input(&imp),
                own.map(|p| p.mac.as_slice()),
            )
            .await?;
        imp.mac = import_seal.mac.clone();
        if reimport {
            // The material stays as it is; only the import's expiry changes.
            if !self.keys.update_import_expiration(&imp).await? {
                return Err(KmsError::InvalidState(format!(
                    "{} changed while its key material was being imported; try again.",
                    rec.arn()
                )));
            }
            self.written(&import_seal);
            self.invalidate(Some(rec.key_id));
            return Ok((rec.arn(), symmetric.then_some(material_id)));
        }
        // The same material always comes back as version 1, so ciphertexts made before a
        // deletion decrypt after the re-import.
        let public_key = match (&imported.public, as_) {
            (Some(p), ImportAs::Rsa { bits, .. }) => {
                Some(super::asymmetric::spki(PairKind::Rsa(bits), p)?)
            }
            (Some(p), ImportAs::Ec { curve, .. }) => {
                Some(super::asymmetric::spki(PairKind::Ec(curve), p)?)
            }
            _ => None,
        };
        let mut m = MaterialRecord {
            key_id: rec.key_id,
            version: 1,
            wrapped: imported.wrapped,
            root_version: imported.root_version as i32,
            mac: vec![],
            public_key,
        };
        m.mac = self
            .hsm
            .row_mac(super::material_mac_input(&rec, &m))
            .await?;
        let state = self
            .state_seal(
                &rec,
                KeyState::Enabled,
                rec.deletion_date,
                rec.pending_window_days,
            )
            .await?;
        let stored = self
            .verified_rotation_rows(&rec)
            .await?
            .into_iter()
            .find(|r| r.key_id == rec.key_id)
            .expect("verified_rotation_rows holds the key");
        let (rotation, rotation_seal) = self
            .rotation_update(
                &stored,
                &KeyRecord {
                    current_version: m.version,
                    ..stored.clone()
                },
            )
            .await?;
        match self
            .keys
            .import_material(&m, &imp, &state.mac, &rotation)
            .await
        {
            Ok(()) => self.written_all(&[import_seal, state, rotation_seal]),
            Err(StoreError::Conflict { .. }) => {
                return Err(KmsError::InvalidState(format!(
                    "{} is not pending import.",
                    rec.arn()
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate(Some(rec.key_id));
        Ok((rec.arn(), symmetric.then_some(material_id)))
    }

    /// Delete an `EXTERNAL` key's material. `key_material_id`, if given, must name it. Returns
    /// the key's ARN and, for a symmetric encryption key, the deleted material's id.
    pub async fn delete_imported_key_material(
        &self,
        caller: &Caller,
        key_id: &str,
        key_material_id: Option<&str>,
    ) -> Result<(String, Option<String>), KmsError> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:DeleteImportedKeyMaterial", &[Check::External]),
            )
            .await?;
        if !matches!(
            rec.key_state,
            KeyState::Enabled
                | KeyState::Disabled
                | KeyState::PendingImport
                | KeyState::PendingDeletion
                | KeyState::PendingReplicaDeletion
        ) {
            return Err(KmsError::InvalidState(crate::messages::key_state(
                &rec.arn(),
                &rec.key_state.words(),
            )));
        }
        let symmetric = rec.key_spec == KeySpec::SymmetricDefault;
        let material_id = super::rotation::material_id(&rec.blob_id(), 1);
        if let Some(id) = key_material_id {
            if !symmetric || id != material_id {
                return Err(KmsError::NotFound(format!(
                    "Key material {id} is not associated with {}.",
                    rec.arn()
                )));
            }
        }
        if rec.key_state != KeyState::PendingImport {
            self.remove_imported(&rec, None).await?;
        }
        Ok((rec.arn(), symmetric.then_some(material_id)))
    }

    /// Delete a key's imported material: it is pending import again (or still pending
    /// deletion).
    async fn remove_imported(
        &self,
        rec: &KeyRecord,
        expired_at: Option<DateTime<Utc>>,
    ) -> Result<(), KmsError> {
        // Never re-sealed unverified: the row must pass its MAC first.
        let Some(p) = self.verified_import(rec.key_id).await? else {
            // Scheduled for deletion before any material was imported: nothing to delete.
            if pending_deletion(rec) {
                return Ok(());
            }
            return Err(KmsError::KeyUnavailable);
        };
        let previous = p.mac.clone();
        let mut imp = KeyImportRecord {
            expiration_model: None,
            valid_to: None,
            ..p
        };
        let import_seal = self
            .seal_row(
                super::seal::import_row(rec.key_id),
                import_mac_input(&imp),
                Some(&previous),
            )
            .await?;
        imp.mac = import_seal.mac.clone();
        // A key pending deletion stays so (AWS: "does not change the KMS key's state").
        let to_state = if pending_deletion(rec) {
            rec.key_state
        } else {
            KeyState::PendingImport
        };
        let state = self
            .state_seal(rec, to_state, rec.deletion_date, rec.pending_window_days)
            .await?;
        match self
            .keys
            .delete_imported_material(&imp, rec.key_state, to_state, &state.mac, expired_at)
            .await
        {
            Ok(()) => self.written_all(&[import_seal, state]),
            Err(StoreError::Conflict { .. }) => {
                return Err(KmsError::Conflict(format!(
                    "{} changed while its key material was being deleted; try again.",
                    rec.arn()
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// The scheduler's part: imported material whose `ValidTo` passed is deleted, exactly
    /// once across nodes, and audited. Returns how many keys expired.
    pub(super) async fn expire_imports(&self, now: DateTime<Utc>) -> Result<usize, KmsError> {
        let mut n = 0;
        // Every import, judged by its verified row: a ValidTo moved later, cleared, or rows
        // crowding the due list in the database neither postpone nor hide an expiry.
        for id in self.keys.import_key_ids().await? {
            match self.verified_import(id).await {
                Ok(Some(i)) if i.valid_to.is_some_and(|t| t <= now) => {}
                Ok(_) => continue,
                Err(e) => {
                    // Fail closed: the key's cached material goes, and loading it again
                    // refuses it while its import row fails its check.
                    tracing::error!(key_id = %id, error = %e, "cannot judge the expiry of imported key material; its key is refused");
                    self.invalidate(Some(id));
                    continue;
                }
            }
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
            if !matches!(
                rec.key_state,
                KeyState::Enabled
                    | KeyState::Disabled
                    | KeyState::PendingDeletion
                    | KeyState::PendingReplicaDeletion
            ) {
                continue;
            }
            let action = self
                .audit_service_intent(
                    "DeleteExpiredKeyMaterial",
                    &rec.arn(),
                    &rec.region,
                    serde_json::json!({ "reason": "the imported key material reached its ValidTo" }),
                )
                .await?;
            match action.run(self.remove_imported(&rec, Some(now))).await {
                Ok(()) => {
                    n += 1;
                    tracing::info!(key_id = %id, "imported key material expired and was deleted");
                    self.audit_service_done(action).await;
                }
                Err(KmsError::Conflict(_)) => {}
                Err(e) => {
                    tracing::error!(key_id = %id, error = %e, "could not expire imported key material")
                }
            }
        }
        Ok(n)
    }

    /// `ExpirationModel` and `ValidTo` of an `EXTERNAL` key's current import.
    pub(crate) async fn import_expiration(
        &self,
        rec: &KeyRecord,
    ) -> Result<Option<(String, Option<DateTime<Utc>>)>, KmsError> {
        if rec.origin != Origin::External {
            return Ok(None);
        }
        Ok(self
            .verified_import(rec.key_id)
            .await?
            .and_then(|i| i.expiration_model.map(|m| (m, i.valid_to))))
    }

    /// A key's import record once its MAC holds: one altered in the database (a later
    /// `ValidTo`, another material check) is refused, never shown or re-sealed.
    pub(crate) async fn verified_import(
        &self,
        key_id: uuid::Uuid,
    ) -> Result<Option<KeyImportRecord>, KmsError> {
        let Some(i) = self.keys.key_import(key_id).await? else {
            return Ok(None);
        };
        if !self
            .current_seal(
                super::seal::import_row(key_id),
                import_mac_input(&i),
                &Some(i.mac.clone()),
            )
            .await?
        {
            tracing::error!(%key_id, "key import row failed its integrity check (altered in the database, or an older record put back); refusing it");
            return Err(KmsError::KeyUnavailable);
        }
        Ok(Some(i))
    }
}
