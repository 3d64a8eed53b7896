//! A pool of tokens presented as one, as an HA group presents them: the service keys (root
//! wrapping key, metadata MAC key, audit key pair) exist, identical, in every token, and calls
//! move to the next token when the one in use is lost (`Inner::reopen`).
//!
//! Vendors copy keys between the members of an HA group themselves (Luna cloning, nShield
//! security worlds). Tokens without that (SoftHSM2, Kryoptic, separate partitions) get the keys
//! from `kms init`: the first token creates them still extractable; for each other token an
//! ECDH key agreement between two short-lived key pairs, one in each token, derives the same
//! AES transport key inside both; each key is wrapped under it in the first token and unwrapped
//! in the other (never in plaintext outside a token); then the first token's copies are made
//! non-extractable (`CKA_EXTRACTABLE` can only go from true to false). `kms serve` refuses
//! service keys that are still extractable, so an interrupted ceremony cannot be served from.

use super::asym::{generate_pair, read_public, Curve, PairKind, PrivateUse, PublicKey};
use super::{
    ck, find_labelled, find_one, mac_key_label, root_key_label, service_key_template, unwrap5649,
    wrap5649, Hsm, HsmError, ServiceKey, AUDIT_KEY_LABEL,
};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

/// The service keys in one token (the audit pair may not exist yet).
struct ServiceKeys {
    root: Option<ObjectHandle>,
    mac: Option<ObjectHandle>,
    audit_private: Option<ObjectHandle>,
    audit_public: Option<ObjectHandle>,
}

impl ServiceKeys {
    fn find(s: &Session, root_version: u32, mac_version: u32) -> Result<ServiceKeys, HsmError> {
        let public_label = format!("{AUDIT_KEY_LABEL}-public");
        Ok(ServiceKeys {
            root: find_one(s, &root_key_label(root_version))?,
            mac: find_one(s, &mac_key_label(mac_version))?,
            audit_private: find_labelled(s, ObjectClass::PRIVATE_KEY, AUDIT_KEY_LABEL)?,
            audit_public: find_labelled(s, ObjectClass::PUBLIC_KEY, &public_label)?,
        })
    }
}

/// An AES transport key derived by ECDH in two tokens at once: (in `a`, in `b`). The key
/// pairs are destroyed; the transport keys are session objects the caller destroys.
fn transport_keys(a: &Session, b: &Session) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
    let kind = PairKind::Ec(Curve::P256);
    let (a_pub, a_priv) = generate_pair(a, kind, PrivateUse::Derive)?;
    let b_pair = generate_pair(b, kind, PrivateUse::Derive);
    let result = (|| {
        let (b_pub, b_priv) = b_pair
            .as_ref()
            .map_err(|e| HsmError::Other(e.to_string()))?;
        let point = |s: &Session, h| match read_public(s, kind, h)? {
            PublicKey::Point(p) => Ok(p),
            PublicKey::Rsa { .. } => Err(HsmError::Other("not an EC key".into())),
        };
        let (a_point, b_point) = (point(a, a_pub)?, point(b, *b_pub)?);
        let template = |wrap: bool| {
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Wrap(wrap),
                Attribute::Unwrap(!wrap),
                Attribute::ValueLen(32.into()),
            ]
        };
        let derive = |s: &Session, private, peer: &[u8], wrap| {
            ck(s.derive_key(
                &Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer)),
                private,
                &template(wrap),
            ))
        };
        let ta = derive(a, a_priv, &b_point, true)?;
        match derive(b, *b_priv, &a_point, false) {
            Ok(tb) => Ok((ta, tb)),
            Err(e) => {
                let _ = a.destroy_object(ta);
                Err(e)
            }
        }
    })();
    let _ = a.destroy_object(a_pub);
    let _ = a.destroy_object(a_priv);
    if let Ok((b_pub, b_priv)) = b_pair {
        let _ = b.destroy_object(b_pub);
        let _ = b.destroy_object(b_priv);
    }
    result
}

/// The template of a service key's copy in another token: the original's attributes, never
/// extractable.
fn copy_template(
    key: ServiceKey,
    class: ObjectClass,
    key_type: KeyType,
    label: &str,
) -> Vec<Attribute> {
    let mut t = vec![Attribute::Class(class), Attribute::KeyType(key_type)];
    t.extend(service_key_template(key, label, false));
    t
}

/// DER OCTET STRING around an EC point (`CKA_EC_POINT`).
fn octet_string(point: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04, point.len() as u8];
    v.extend_from_slice(point);
    v
}

impl Hsm {
    /// Destroy the secret key labelled `label` in every token of the pool but the one in use
    /// (a root key no blob needs any more). Returns the tokens it was destroyed in.
    pub(super) fn destroy_in_other_tokens(&self, label: &str) -> Result<Vec<String>, HsmError> {
        let inner = &self.inner;
        if inner.labels.len() < 2 {
            return Ok(vec![]);
        }
        let here = self.current_label();
        let pin = inner.pin.lock().unwrap().clone();
        let mut done = Vec::new();
        for other in inner.labels.iter().filter(|l| **l != here) {
            let b = inner.log_in_to(other, &pin)?;
            if let Some(h) = find_one(&b, label)? {
                ck(b.destroy_object(h))?;
                done.push(other.clone());
            }
        }
        Ok(done)
    }

    /// `kms init` with failover tokens: give every token of the pool the service keys of the
    /// one in use (copied as the module explains), check the ones that have them are the same
    /// keys, then make the keys of the token in use non-extractable. Returns what was done, a
    /// line per token. A no-op without failover tokens.
    pub fn replicate_service_keys(&self, root_version: u32) -> Result<Vec<String>, HsmError> {
        self.replicate_service_keys_with(root_version, self.held_mac_version())
    }

    /// [`Hsm::replicate_service_keys`] with the MAC key of `mac_version`.
    pub(super) fn replicate_service_keys_with(
        &self,
        root_version: u32,
        mac_version: u32,
    ) -> Result<Vec<String>, HsmError> {
        let inner = &self.inner;
        let mac_label = mac_key_label(mac_version);
        if inner.labels.len() < 2 {
            return Ok(vec![]);
        }
        let a = inner.pinned.lock().expect("pinned session lock poisoned");
        let here = inner.labels[inner.current.load(std::sync::atomic::Ordering::Acquire)].clone();
        let mine = ServiceKeys::find(&a, root_version, mac_version)?;
        let root_label = root_key_label(root_version);
        let (Some(root), Some(mac)) = (mine.root, mine.mac) else {
            return Err(HsmError::ServiceKeyMissing { label: root_label });
        };
        let pin = inner.pin.lock().unwrap().clone();
        let mut report = Vec::new();
        for label in inner.labels.iter().filter(|l| **l != here) {
            let b = inner.log_in_to(label, &pin)?;
            let theirs = ServiceKeys::find(&b, root_version, mac_version)?;
            let mut transport: Option<(ObjectHandle, ObjectHandle)> = None;
            let mut copied = Vec::new();
            let wrap = inner.caps.wrap;
            let raw = inner.raw.as_ref();
            let mut copy = |key: ObjectHandle, template: Vec<Attribute>| -> Result<(), HsmError> {
                if transport.is_none() {
                    transport = Some(transport_keys(&a, &b)?);
                }
                let (ta, tb) = transport.expect("set above");
                let blob = wrap5649(&a, wrap, raw, ta, key).map_err(|e| {
                    HsmError::Other(format!(
                        "a service key of token '{here}' cannot be copied to '{label}' ({e}); keys can be copied only by the `kms init` that creates them (or with the vendor's cloning)"
                    ))
                })?;
                unwrap5649(&b, wrap, raw, tb, &blob, &template)?;
                Ok(())
            };
            let outcome = (|| -> Result<(), HsmError> {
                match theirs.root {
                    Some(r) => same_root(&a, &b, wrap, raw, root, r, label)?,
                    None => {
                        copy(
                            root,
                            copy_template(
                                ServiceKey::Root,
                                ObjectClass::SECRET_KEY,
                                KeyType::AES,
                                &root_label,
                            ),
                        )?;
                        copied.push("root key");
                    }
                }
                match theirs.mac {
                    Some(m) => same_mac(&a, &b, mac, m, label)?,
                    None => {
                        copy(
                            mac,
                            copy_template(
                                ServiceKey::Mac,
                                ObjectClass::SECRET_KEY,
                                KeyType::GENERIC_SECRET,
                                &mac_label,
                            ),
                        )?;
                        copied.push("MAC key");
                    }
                }
                if let (Some(private), Some(public)) = (mine.audit_private, mine.audit_public) {
                    let point = match read_public(&a, PairKind::Ec(Curve::P256), public)? {
                        PublicKey::Point(p) => p,
                        PublicKey::Rsa { .. } => {
                            return Err(HsmError::Other("the audit key is not an EC key".into()))
                        }
                    };
                    match (theirs.audit_private, theirs.audit_public) {
                        (Some(_), Some(their_public)) => {
                            if read_public(&b, PairKind::Ec(Curve::P256), their_public)?
                                != PublicKey::Point(point)
                            {
                                return Err(HsmError::Other(format!(
                                    "token '{label}' holds a different audit key"
                                )));
                            }
                        }
                        (None, None) => {
                            copy(
                                private,
                                copy_template(
                                    ServiceKey::AuditPrivate,
                                    ObjectClass::PRIVATE_KEY,
                                    KeyType::EC,
                                    AUDIT_KEY_LABEL,
                                ),
                            )?;
                            ck(b.create_object(&[
                                Attribute::Class(ObjectClass::PUBLIC_KEY),
                                Attribute::KeyType(KeyType::EC),
                                Attribute::Token(true),
                                Attribute::EcParams(Curve::P256.oid_der().to_vec()),
                                Attribute::EcPoint(octet_string(&point)),
                                Attribute::Verify(true),
                                Attribute::Label(format!("{AUDIT_KEY_LABEL}-public").into_bytes()),
                            ]))?;
                            copied.push("audit key pair");
                        }
                        _ => {
                            return Err(HsmError::Other(format!(
                                "token '{label}' holds only half of the audit key pair"
                            )))
                        }
                    }
                }
                Ok(())
            })();
            if let Some((ta, tb)) = transport {
                let _ = a.destroy_object(ta);
                let _ = b.destroy_object(tb);
            }
            outcome?;
            report.push(if copied.is_empty() {
                format!("token '{label}': service keys verified")
            } else {
                format!("token '{label}': copied {}", copied.join(", "))
            });
        }
        // Every token has the keys now: the originals stop being extractable.
        for key in [Some(root), Some(mac), mine.audit_private]
            .into_iter()
            .flatten()
        {
            let extractable = ck(a.get_attributes(key, &[AttributeType::Extractable]))?;
            if extractable
                .iter()
                .any(|a| matches!(a, Attribute::Extractable(true)))
            {
                ck(a.update_attributes(key, &[Attribute::Extractable(false)]))?;
            }
        }
        Ok(report)
    }
}

/// Whether two root keys are the same key: a short-lived key wrapped under one unwraps under
/// the other (RFC 5649's integrity check fails otherwise).
fn same_root(
    a: &Session,
    b: &Session,
    wrap: super::Rfc5649,
    raw: Option<&super::raw::RawModule>,
    mine: ObjectHandle,
    theirs: ObjectHandle,
    label: &str,
) -> Result<(), HsmError> {
    let probe = ck(a.generate_key(
        &Mechanism::AesKeyGen,
        &super::wrap::secret_key(
            KeyType::AES,
            true,
            &[Attribute::Encrypt(true), Attribute::ValueLen(32.into())],
        ),
    ))?;
    let blob = wrap5649(a, wrap, raw, mine, probe);
    let _ = a.destroy_object(probe);
    let template = super::wrap::secret_key(KeyType::AES, false, &[Attribute::Encrypt(true)]);
    match unwrap5649(b, wrap, raw, theirs, &blob?, &template) {
        Ok(h) => {
            let _ = b.destroy_object(h);
            Ok(())
        }
        Err(_) => Err(HsmError::Other(format!(
            "token '{label}' holds a different root key; a pool's tokens must hold the same keys"
        ))),
    }
}

/// Whether two MAC keys are the same key: equal HMACs of a fixed message.
fn same_mac(
    a: &Session,
    b: &Session,
    mine: ObjectHandle,
    theirs: ObjectHandle,
    label: &str,
) -> Result<(), HsmError> {
    let msg = b"kms pool member check";
    let x = ck(a.sign(&Mechanism::Sha256Hmac, mine, msg))?;
    let y = ck(b.sign(&Mechanism::Sha256Hmac, theirs, msg))?;
    if x == y {
        Ok(())
    } else {
        Err(HsmError::Other(format!(
            "token '{label}' holds a different metadata MAC key"
        )))
    }
}
