//! The service's own token objects: the root wrapping keys (current and older versions) and
//! the audit key pair, their templates, creating or finding and verifying them at start-up,
//! adding and destroying root key versions, and finding objects by label. Separate because
//! these are the few long-lived token objects every other call relies on; the MAC keys are in
//! `mac.rs`.

use super::*;

/// Label of the root wrapping key of a given version.
pub fn root_key_label(version: u32) -> String {
    format!("kms-root-wrapping-key-v{version}")
}

/// The service's own token keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServiceKey {
    /// The root wrapping key: wrap and unwrap only.
    Root,
    /// The metadata MAC key: sign and verify only.
    Mac,
    /// The audit key pair's private half: sign only.
    AuditPrivate,
}

/// A service key's attributes, the same whether it is generated or copied into another token
/// of a pool (each adds only what its call needs: a length, a class and key type).
/// `extractable` only while `kms init` copies it to the pool's other tokens.
pub(super) fn service_key_template(
    key: ServiceKey,
    label: &str,
    extractable: bool,
) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
    ];
    match key {
        ServiceKey::Root => t.extend([
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ]),
        ServiceKey::Mac => t.extend([
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Derive(false),
        ]),
        ServiceKey::AuditPrivate => t.push(Attribute::Sign(true)),
    }
    t.push(Attribute::Label(label.as_bytes().to_vec()));
    t
}

/// The one token object of `class` labelled `label`, if any.
/// The root keys of versions below `current` still in the token (each checked as a root key
/// must be): older versions are kept until an operator destroys them.
pub(super) fn older_roots(s: &Session, current: u32) -> Result<Vec<(u32, ObjectHandle)>, HsmError> {
    let mut out = Vec::new();
    for v in 1..current {
        let label = root_key_label(v);
        if let Some(h) = find_one(s, &label)? {
            verify_service_key(s, h, &label, AttributeType::Wrap, false)?;
            out.push((v, h));
        }
    }
    Ok(out)
}

pub(super) fn find_one(s: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    find_labelled(s, ObjectClass::SECRET_KEY, label)
}

pub(super) fn find_labelled(
    s: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Option<ObjectHandle>, HsmError> {
    let found = ck(s.find_objects(&[
        Attribute::Token(true),
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ]))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(HsmError::Other(format!(
            "the token holds {n} keys labelled '{label}'; expected exactly one"
        ))),
    }
}

/// A service key must be sensitive, never extractable, and able to do its one job.
/// `extractable_for_now`: in `kms init` of a pool, before the keys are copied to its tokens.
pub(super) fn verify_service_key(
    s: &Session,
    h: ObjectHandle,
    label: &str,
    purpose: AttributeType,
    extractable_for_now: bool,
) -> Result<(), HsmError> {
    let attrs = ck(s.get_attributes(
        h,
        &[
            AttributeType::Sensitive,
            AttributeType::Extractable,
            purpose,
        ],
    ))?;
    let mut ok = attrs.len() == 3;
    for a in &attrs {
        ok &= match a {
            Attribute::Sensitive(v) => *v,
            Attribute::Extractable(v) => !*v || extractable_for_now,
            Attribute::Wrap(v) | Attribute::Sign(v) => *v,
            _ => false,
        };
    }
    if ok {
        Ok(())
    } else {
        Err(HsmError::Other(format!(
            "the token key '{label}' is not a sensitive, non-extractable key with the expected usage; refusing to use it"
        )))
    }
}

impl Tok<'_> {
    /// The root wrapping key: (version, handle).
    pub fn root(&self) -> Result<(u32, ObjectHandle), HsmError> {
        self.inner
            .root
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: root_key_label(1),
            })
    }

    /// The root key of `version`: the current one, or an older one still in the token. A blob
    /// unwraps only under the version it records.
    pub fn root_of(&self, version: u32) -> Result<ObjectHandle, HsmError> {
        match self.root()? {
            (v, h) if v == version => Ok(h),
            _ => self
                .inner
                .older_roots
                .lock()
                .unwrap()
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, h)| *h)
                .ok_or(HsmError::ServiceKeyMissing {
                    label: root_key_label(version),
                }),
        }
    }

    pub(super) fn audit(&self) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
        self.inner
            .audit
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: AUDIT_KEY_LABEL.into(),
            })
    }
}

/// The service key `(kind, label, clonable)` if the token holds it, else a new one generated
/// with `mechanism` and `extra` attributes; and whether it was generated.
fn find_or_generate(
    s: &Session,
    (kind, label, clonable): (ServiceKey, &str, bool),
    mechanism: Mechanism,
    extra: Vec<Attribute>,
) -> Result<(ObjectHandle, bool), HsmError> {
    if let Some(h) = find_one(s, label)? {
        return Ok((h, false));
    }
    let template = [service_key_template(kind, label, clonable), extra].concat();
    Ok((ck(s.generate_key(&mechanism, &template))?, true))
}

impl Hsm {
    /// Create the service's own token objects if absent; verify them if present.
    /// Returns `(created_root, created_mac)`.
    pub fn ensure_service_keys(&self, root_version: u32) -> Result<(bool, bool), HsmError> {
        let s = self.pinned();
        let root_label = root_key_label(root_version);
        let clonable = self.is_pool();
        let (root, created_root) = find_or_generate(
            &s,
            (ServiceKey::Root, &root_label, clonable),
            Mechanism::AesKeyGen,
            // Until `kms init` has copied it to the pool's other tokens, extractable.
            vec![Attribute::ValueLen(32.into())],
        )?;
        verify_service_key(&s, root, &root_label, AttributeType::Wrap, clonable)?;
        // The MAC key version this process uses (1 until it follows a rotation).
        let mac_version = self.held_mac_version();
        let mac_label = mac_key_label(mac_version);
        let (mac, created_mac) = find_or_generate(
            &s,
            (ServiceKey::Mac, &mac_label, clonable),
            Mechanism::GenericSecretKeyGen,
            vec![
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(32.into()),
            ],
        )?;
        verify_service_key(&s, mac, &mac_label, AttributeType::Sign, clonable)?;
        *self.inner.older_roots.lock().unwrap() = older_roots(&s, root_version)?;
        *self.inner.root.lock().unwrap() = Some((root_version, root));
        *self.inner.older_macs.lock().unwrap() = older_macs(&s, mac_version)?;
        *self.inner.mac.lock().unwrap() = Some((mac_version, mac));
        self.probe_with_root(&s, root);
        Ok((created_root, created_mac))
    }

    /// Find (and check) the service keys without creating anything: `kms serve` uses this so
    /// that a token that was never initialised is reported, not silently populated.
    pub fn load_service_keys(&self, root_version: u32) -> Result<(), HsmError> {
        let s = self.pinned();
        let root_label = root_key_label(root_version);
        let root = find_one(&s, &root_label)?.ok_or(HsmError::ServiceKeyMissing {
            label: root_label.clone(),
        })?;
        verify_service_key(&s, root, &root_label, AttributeType::Wrap, false)?;
        let mac_version = self.held_mac_version();
        let mac_label = mac_key_label(mac_version);
        let mac = find_one(&s, &mac_label)?.ok_or(HsmError::ServiceKeyMissing {
            label: mac_label.clone(),
        })?;
        verify_service_key(&s, mac, &mac_label, AttributeType::Sign, false)?;
        *self.inner.older_roots.lock().unwrap() = older_roots(&s, root_version)?;
        *self.inner.root.lock().unwrap() = Some((root_version, root));
        *self.inner.older_macs.lock().unwrap() = older_macs(&s, mac_version)?;
        *self.inner.mac.lock().unwrap() = Some((mac_version, mac));
        self.probe_with_root(&s, root);
        Ok(())
    }

    /// A custom key store's partition: its own root wrapping key of `version` (the service
    /// token's current root key version: a root key rotation rotates every partition's too),
    /// found, and created if `create` (the caller holds the database's lock on creating it:
    /// PKCS#11 has no create-if-absent), and made the one its keys are wrapped under; its
    /// older ones stay for the blobs that record them. Nothing else of the service's is
    /// created there. Returns whether the partition holds it now.
    pub fn partition_root(&self, version: u32, create: bool) -> Result<bool, HsmError> {
        let s = self.pinned();
        let label = root_key_label(version);
        let root = match find_one(&s, &label)? {
            Some(h) => h,
            None if !create => return Ok(false),
            None => ck(s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    service_key_template(ServiceKey::Root, &label, false),
                    vec![Attribute::ValueLen(32.into())],
                ]
                .concat(),
            ))?,
        };
        verify_service_key(&s, root, &label, AttributeType::Wrap, false)?;
        *self.inner.older_roots.lock().unwrap() = older_roots(&s, version)?;
        *self.inner.root.lock().unwrap() = Some((version, root));
        Ok(true)
    }

    /// The version of the root key that wraps new blobs.
    pub fn root_version(&self) -> Result<u32, HsmError> {
        self.inner
            .root
            .lock()
            .unwrap()
            .map(|(v, _)| v)
            .ok_or(HsmError::ServiceKeyMissing {
                label: root_key_label(1),
            })
    }

    /// Create root key `version` in the token (and copy it to every token of a pool, as
    /// `kms init` does), and make it the one new blobs are wrapped under; older versions stay
    /// for the blobs that record them. Returns whether it was created (false: it was there).
    pub fn add_root_key(&self, version: u32) -> Result<bool, HsmError> {
        let (created, _) = self.ensure_service_keys(version)?;
        if self.is_pool() {
            self.replicate_service_keys(version)?;
            self.load_service_keys(version)?;
        }
        Ok(created)
    }

    /// Destroy root key `version` (not the current one) in the token and in every token of a
    /// pool: blobs still wrapped under it could never be unwrapped again, so the caller first
    /// makes sure none is left. Returns the labels of the tokens it was destroyed in.
    pub fn destroy_root_key(&self, version: u32) -> Result<Vec<String>, HsmError> {
        if self.root_version()? == version {
            return Err(HsmError::Other(format!(
                "root key v{version} is the current root key; rotate to a new one first"
            )));
        }
        let label = root_key_label(version);
        let done = self.destroy_everywhere(&label)?;
        self.inner
            .older_roots
            .lock()
            .unwrap()
            .retain(|(v, _)| *v != version);
        Ok(done)
    }

    /// Destroy the object labelled `label` in this token and in every token of a pool; the
    /// labels of the tokens it was found in.
    pub(super) fn destroy_everywhere(&self, label: &str) -> Result<Vec<String>, HsmError> {
        let mut done = Vec::new();
        {
            let s = self.pinned();
            if let Some(h) = find_one(&s, label)? {
                ck(s.destroy_object(h))?;
                done.push(self.current_label());
            }
        }
        done.extend(self.destroy_in_other_tokens(label)?);
        Ok(done)
    }
}
