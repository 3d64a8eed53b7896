//! Bring your own key: `GetParametersForImport`, `ImportKeyMaterial`,
//! `DeleteImportedKeyMaterial`, and the expiry of imported material.

use super::preamble::{Access, Check};
use super::rotation::material_id;
use super::{mac_input, Caller, Kms, KmsError};
use crate::domain::{OnConflict, Result};
use crate::hsm::{Curve, Hash, ImportAs, ImportWrap, PairKind, PrivateUse};
use crate::store::{ImportTokenRecord, KeyImportRecord, KeyRecord, MaterialRecord};
use crate::vocab::{AlgorithmSpec, ExpirationModelType, KeySpec, KeyState, WrappingKeySpec};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// How long an import token and its public key may be used (as AWS: 24 hours).
const TOKEN_LIFETIME_HOURS: i64 = 24;
/// The latest `ValidTo` an import may have (as AWS: 365 days ahead).
const MAX_VALID_DAYS: i64 = 365;

/// GetParametersForImport and ImportKeyMaterial: a key with imported material (`EXTERNAL`),
/// pending import, enabled or disabled (AWS's key-state table: an enabled or disabled key takes
/// its material again, to change its expiry, or a new material to rotate to).
const IMPORTABLE: &[Check] = &[Check::External, Check::Manageable];

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
    let at = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.timestamp_micros().to_be_bytes().to_vec())
            .unwrap_or_default()
    };
    let model = i.expiration_model.as_deref().unwrap_or("").as_bytes();
    // A key's first material, imported before keys held several: the form it was sealed in.
    if i.version == 1 && i.description.is_none() && !i.pending && i.rotated_at.is_none() {
        return mac_input(
            "kms.key-import.v1",
            &[
                i.key_id.as_bytes(),
                &i.material_check,
                model,
                &at(i.valid_to),
            ],
        );
    }
    // The description is length-prefixed with a presence byte: none and "" differ.
    let description = match &i.description {
        None => vec![0],
        Some(d) => [&[1u8][..], d.as_bytes()].concat(),
    };
    mac_input(
        "kms.key-import.v2",
        &[
            i.key_id.as_bytes(),
            &i.version.to_be_bytes(),
            &i.material_check,
            model,
            &at(i.valid_to),
            &description,
            &[u8::from(i.pending)],
            &at(i.rotated_at),
        ],
    )
}

/// The wrapping mechanism for an algorithm name, if this token can do it.
fn wrap_of(kms: &Kms, algorithm: AlgorithmSpec, as_: ImportAs) -> Result<ImportWrap> {
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
            // Symmetric and HMAC material: RSA-AES key wrap is not offered for it (as AWS).
            ImportWrap::Oaep(_) if secret => ", and the key material would have to leave it to be unwrapped. Use RSAES_OAEP_SHA_1, or let the service decode it (hsm.oaep_sha256_import_in_service = true)",
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
pub(super) fn import_as(rec: &KeyRecord) -> Result<ImportAs> {
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
    ) -> Result<Vec<u8>> {
        let current = self.hsm.mac_version()?;
        let stored = crate::hsm::mac_parts(&p.material_check).map(|(v, _)| v);
        if stored == Some(current) {
            return Ok(p.material_check.clone());
        }
        match self.stored_material_check(p.key_id, p.version, as_).await? {
            Some(check) => Ok(check),
            None => Err(KmsError::KeyUnavailable),
        }
    }

    /// The check value, under the current MAC key, of the material version `version` key
    /// `key_id` holds now (its row verified first); `None` if it does not hold it.
    pub(crate) async fn stored_material_check(
        &self,
        key_id: uuid::Uuid,
        version: i32,
        as_: ImportAs,
    ) -> Result<Option<Vec<u8>>> {
        let Some(rec) = self.keys.key(key_id).await? else {
            return Ok(None);
        };
        let Some(m) = self.keys.material(key_id, version).await? else {
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
    ) -> Result<ImportParameters> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:GetParametersForImport", IMPORTABLE).conditions(&[
                    ("kms:WrappingAlgorithm", algorithm.as_str()),
                    ("kms:WrappingKeySpec", key_spec.as_str()),
                ]),
            )
            .await?;
        let as_ = import_as(&rec)?;
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
        // What AWS lets each kind of material be wrapped with: RSAES-OAEP for all but an RSA
        // private key (and not a P-521 key under RSA_2048), RSA-AES key wrap for RSA and ECC
        // private keys only, RSAES_PKCS1_V1_5 for none (recorded answers).
        let fits = match algorithm {
            AlgorithmSpec::RsaesOaepSha1 | AlgorithmSpec::RsaesOaepSha256 => match as_ {
                ImportAs::Rsa { .. } => false,
                ImportAs::Ec {
                    curve: Curve::P521, ..
                } => bits != 2048,
                _ => true,
            },
            AlgorithmSpec::RsaAesKeyWrapSha1 | AlgorithmSpec::RsaAesKeyWrapSha256 => {
                matches!(as_, ImportAs::Rsa { .. } | ImportAs::Ec { .. })
            }
            AlgorithmSpec::RsaesPkcs1V15 => false,
            // SM2 (China Regions): refused by `wrap_of` as not offered here.
            AlgorithmSpec::Sm2Pke => true,
        };
        if !fits {
            return Err(KmsError::Validation(
                crate::messages::wrapping_cannot_import(
                    algorithm.as_str(),
                    key_spec.as_str(),
                    rec.key_spec.as_str(),
                ),
            ));
        }
        wrap_of(self, algorithm, as_)?;
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
    ) -> Result<(String, Option<DateTime<Utc>>)> {
        use ExpirationModelType::{KeyMaterialDoesNotExpire, KeyMaterialExpires};
        let model = model.unwrap_or(KeyMaterialExpires);
        match (model, valid_to) {
            (KeyMaterialExpires, None) => Err(KmsError::Validation(
                crate::messages::VALID_TO_REQUIRED.into(),
            )),
            (KeyMaterialDoesNotExpire, Some(_)) => Err(KmsError::Validation(
                crate::messages::VALID_TO_NOT_ALLOWED.into(),
            )),
            (KeyMaterialExpires, Some(t)) => {
                let now = self.now();
                if t <= now {
                    return Err(KmsError::Validation(crate::messages::VALID_TO_PAST.into()));
                }
                if t > now + Duration::days(MAX_VALID_DAYS) {
                    return Err(KmsError::Validation(
                        crate::messages::VALID_TO_TOO_FAR.into(),
                    ));
                }
                // AWS keeps whole seconds (recorded).
                let t = DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t);
                Ok((model.to_string(), Some(t)))
            }
            (KeyMaterialDoesNotExpire, None) => Ok((model.to_string(), None)),
        }
    }

    /// Import material into an `EXTERNAL` key: its first material; one of its materials again
    /// (to change its expiry or description, or after it was deleted or expired); or, with
    /// `NEW_KEY_MATERIAL` into a symmetric single-Region key that has material, a new material
    /// for the next on-demand rotation (AWS's `PENDING_ROTATION`: kept, never used until
    /// `RotateKeyOnDemand` makes it current). Returns the key's ARN and, for a symmetric
    /// encryption key, the material's id (`KeyMaterialId`).
    #[allow(clippy::too_many_arguments)]
    pub async fn import_key_material(
        &self,
        caller: &Caller,
        key_id: &str,
        import_token: &[u8],
        encrypted: Vec<u8>,
        expiration_model: Option<ExpirationModelType>,
        valid_to: Option<DateTime<Utc>>,
        which: MaterialChoice<'_>,
    ) -> Result<(String, Option<String>)> {
        let (model, valid_to) = self.import_expiry(expiration_model, valid_to)?;
        if which.import_type == Some("NEW_KEY_MATERIAL") && which.key_material_id.is_some() {
            return Err(KmsError::Validation(
                crate::messages::KEY_MATERIAL_ID_WITH_NEW.into(),
            ));
        }
        // `kms:ValidTo` is the expiry in seconds since the epoch, absent for material that
        // does not expire (AWS's condition key, compared with the Numeric operators).
        let valid_to_seconds = valid_to.map(|t| t.timestamp().to_string());
        let mut conditions = vec![("kms:ExpirationModel", model.as_str())];
        if let Some(seconds) = &valid_to_seconds {
            conditions.push(("kms:ValidTo", seconds));
        }
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:ImportKeyMaterial", IMPORTABLE).conditions(&conditions),
            )
            .await?;
        let as_ = import_as(&rec)?;
        let symmetric = rec.key_spec == KeySpec::SymmetricDefault;
        // Several materials, their ids and descriptions are for symmetric encryption keys only
        // (members in the model's order).
        if !symmetric {
            let given = [
                ("importType", which.import_type.is_some()),
                ("keyMaterialDescription", which.description.is_some()),
                ("keyMaterialId", which.key_material_id.is_some()),
            ];
            if let Some((member, _)) = given.iter().find(|(_, g)| *g) {
                return Err(KmsError::Validation(
                    crate::messages::import_member_not_for_spec(member, rec.key_spec.as_str()),
                ));
            }
        }
        if which.description.is_some() && rec.mrk_id.is_some() && !rec.mrk_primary {
            return Err(KmsError::Validation(
                crate::messages::DESCRIPTION_ON_REPLICA.into(),
            ));
        }
        let blob_id = rec.blob_id();
        let incorrect = |id: &str| {
            KmsError::IncorrectKeyMaterial(if symmetric {
                crate::messages::unexpected_key_material(id)
            } else {
                crate::messages::INCORRECT_KEY_MATERIAL.into()
            })
        };
        // The key's materials as sealed, and (a multi-Region key) what its related keys hold:
        // AWS does not copy imported material between them, so each takes only the same.
        let own = self.verified_imports(rec.key_id).await?;
        let mut related = Vec::new();
        if let Some(mrk) = rec.mrk_id {
            for k in self.verified_family(mrk, &rec.account_id).await? {
                if k.key_id != rec.key_id {
                    related.extend(self.verified_imports(k.key_id).await?);
                }
            }
        }
        // A material id names one of the key's materials, or one of its family's: multi-Region
        // keys share their material ids.
        if let Some(id) = which.key_material_id {
            let named = |p: &KeyImportRecord| material_id(&blob_id, p.version) == id;
            if !(own.iter().any(named) || related.iter().any(named)) {
                return Err(incorrect(id));
            }
        }
        let imported = self
            .unwrap_import(&rec, import_token, encrypted, as_)
            .await?;
        // Which of the key's materials this is, if any (each keyed check compared in constant
        // time).
        let mut same = None;
        for p in &own {
            if self.same_material(p, as_, &imported.check).await? {
                same = Some(p.clone());
            }
        }
        // AWS: without ImportType, NEW_KEY_MATERIAL for a key that never had material,
        // EXISTING_KEY_MATERIAL after.
        let replica = rec.mrk_id.is_some() && !rec.mrk_primary;
        if replica && which.import_type == Some("NEW_KEY_MATERIAL") {
            return Err(KmsError::Validation(
                crate::messages::NEW_KEY_MATERIAL_ON_REPLICA.into(),
            ));
        }
        // AWS: without ImportType, NEW_KEY_MATERIAL for a key that never had material,
        // EXISTING_KEY_MATERIAL after.
        let new = match which.import_type {
            Some(t) => t == "NEW_KEY_MATERIAL",
            None => own.is_empty() && related.is_empty(),
        };
        // The version the material is (or becomes), this key's record of it if it has one,
        // and whether the material is pending rotation.
        let (version, previous, pending) = if new && own.is_empty() && related.is_empty() {
            // A first material only for a key whose sealed record says it never had one: the
            // records of a key that has material, deleted in the database, would otherwise let
            // other material in as its first.
            if rec.current_version > 0 {
                tracing::error!(key_id = %rec.key_id, current_version = rec.current_version, "the key has material by its sealed record, but no import records (deleted in the database?); refusing the import");
                return Err(KmsError::KeyUnavailable);
            }
            (1, None, false)
        } else if new {
            if let Some(p) = &same {
                return Err(KmsError::IncorrectKeyMaterial(
                    crate::messages::key_material_already_associated(
                        &material_id(&blob_id, p.version),
                        &rec.arn(),
                    ),
                ));
            }
            // Above every version of the family (a multi-Region key's materials share their
            // versions, and so their ids).
            let next = own
                .iter()
                .chain(&related)
                .map(|p| p.version)
                .max()
                .unwrap_or(0);
            let next = next.max(rec.current_version) + 1;
            if let Some(p) = own.iter().find(|p| p.pending) {
                return Err(KmsError::InvalidState(
                    crate::messages::another_key_material_pending(
                        &material_id(&blob_id, next),
                        &rec.arn(),
                        &material_id(&blob_id, p.version),
                    ),
                ));
            }
            (next, None, true)
        } else if let Some(p) = same {
            let pending = p.pending;
            (p.version, Some(p), pending)
        } else {
            // Another key of the family's material (a multi-Region key takes the materials of
            // its primary, each imported on its own), as the version it is there.
            let mut found = None;
            for p in related
                .iter()
                .filter(|p| !own.iter().any(|o| o.version == p.version))
            {
                if self.same_material(p, as_, &imported.check).await? {
                    found = Some((p.version, p.pending));
                    break;
                }
            }
            match found {
                Some((version, pending)) => (version, None, pending),
                None => {
                    let expected = which.key_material_id.map_or_else(
                        || material_id(&blob_id, rec.current_version.max(1)),
                        str::to_string,
                    );
                    return Err(incorrect(&expected));
                }
            }
        };
        if let Some(id) = which.key_material_id {
            if material_id(&blob_id, version) != id {
                return Err(incorrect(id));
            }
        }
        let mut imp = KeyImportRecord {
            key_id: rec.key_id,
            version,
            material_check: imported.check,
            expiration_model: Some(model),
            valid_to,
            // AWS: without one, the description of the material's last import stays.
            description: which
                .description
                .map(str::to_string)
                .or_else(|| previous.as_ref().and_then(|p| p.description.clone())),
            pending,
            rotated_at: previous.as_ref().and_then(|p| p.rotated_at),
            mac: vec![],
        };
        let import_seal = self
            .seal_row(
                super::seal::import_row(rec.key_id, version),
                import_mac_input(&imp),
                previous.as_ref().map(|p| p.mac.as_slice()),
            )
            .await?;
        imp.mac = import_seal.mac.clone();
        let answer = (rec.arn(), symmetric.then(|| material_id(&blob_id, version)));
        if previous
            .as_ref()
            .is_some_and(|p| p.expiration_model.is_some())
        {
            // The material is in the key: only the import's expiry (and description) change.
            if !self.keys.update_import_expiration(&imp).await? {
                return Err(KmsError::Conflict(format!(
                    "{} changed while its key material was being imported; try again.",
                    rec.arn()
                )));
            }
            self.written(&import_seal);
            // A disabled key that takes its current material again is enabled (recorded).
            if rec.key_state == KeyState::Disabled && version == rec.current_version {
                self.set_state(&rec, KeyState::Enabled, None, None).await?;
            }
            self.invalidate(Some(rec.key_id));
            return Ok(answer);
        }
        // The material comes (back) into the key under its version, so ciphertexts made
        // before a deletion decrypt after the re-import.
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
            version,
            wrapped: imported.wrapped,
            root_version: imported.root_version as i32,
            mac: vec![],
            public_key,
        };
        m.mac = self
            .hsm
            .row_mac(super::material_mac_input(&rec, &m))
            .await?;
        let mut seals = vec![import_seal];
        // AWS: the key is usable once every material that is part of it is imported.
        let complete = own
            .iter()
            .filter(|p| !p.pending && p.version != version)
            .all(|p| p.expiration_model.is_some());
        let state = if rec.key_state == KeyState::PendingImport && complete && !pending {
            let s = self
                .state_seal(
                    &rec,
                    KeyState::Enabled,
                    rec.deletion_date,
                    rec.pending_window_days,
                )
                .await?;
            Some(s)
        } else {
            None
        };
        // The key's first material becomes its current one.
        let rotation = if rec.current_version == 0 {
            let stored = self
                .verified_rotation_rows(&rec)
                .await?
                .into_iter()
                .find(|r| r.key_id == rec.key_id)
                .expect("verified_rotation_rows holds the key");
            let (u, seal) = self
                .rotation_update(
                    &stored,
                    &KeyRecord {
                        current_version: version,
                        ..stored.clone()
                    },
                )
                .await?;
            seals.push(seal);
            Some(u)
        } else {
            None
        };
        if let Some(s) = &state {
            seals.push(s.clone());
        }
        self.keys
            .import_material(
                &m,
                &imp,
                rec.key_state,
                state
                    .as_ref()
                    .map(|s| (KeyState::Enabled, s.mac.as_slice())),
                rotation.as_ref(),
            )
            .await
            .on_conflict(|| {
                KmsError::changed(
                    rec.arn(),
                    "changed while its key material was being imported",
                )
            })?;
        self.written_all(&seals);
        self.invalidate(Some(rec.key_id));
        Ok(answer)
    }

    /// The import token checked (this key's, sealed, unexpired) and the material unwrapped
    /// with it into the token.
    async fn unwrap_import(
        &self,
        rec: &KeyRecord,
        import_token: &[u8],
        encrypted: Vec<u8>,
        as_: ImportAs,
    ) -> Result<crate::hsm::Imported> {
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
        match self
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
            Ok(i) => Ok(i),
            Err(why) => {
                tracing::info!(key_id = %rec.key_id, reason = %why, "imported key material refused");
                Err(KmsError::InvalidCiphertext)
            }
        }
    }

    /// Whether `check` (of material just imported) is the check of the material `p` records.
    async fn same_material(
        &self,
        p: &KeyImportRecord,
        as_: ImportAs,
        check: &[u8],
    ) -> Result<bool> {
        let stored = self.check_under_current_mac(p, as_).await?;
        Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
            stored.as_slice(),
            check,
        )))
    }
}

/// Which material an `ImportKeyMaterial` call means, and its description (symmetric keys).
#[derive(Default, Clone, Copy)]
pub struct MaterialChoice<'a> {
    /// `NEW_KEY_MATERIAL` or `EXISTING_KEY_MATERIAL`; `None`: AWS's default.
    pub import_type: Option<&'a str>,
    pub key_material_id: Option<&'a str>,
    pub description: Option<&'a str>,
}
