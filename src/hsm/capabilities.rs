//! Capabilities: what the token offers that the service relies on, probed once (the mechanism
//! list, which RFC 5649 mechanism really works, Ed25519 once the root key is loaded) and the
//! mechanisms without which the service refuses to start. Separate because it only answers
//! questions about the token, at start-up.

use super::*;

/// What the token offers that the service relies on, probed once at start-up.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The RFC 5649 wrap mechanism this token implements.
    pub wrap: Rfc5649,
    /// What the mechanism list cannot say about this vendor's token.
    pub profile: Profile,
    pub manufacturer: String,
    pub model: String,
    /// Every mechanism the token lists.
    pub mechanisms: Vec<MechanismType>,
    /// Whether RSAES-OAEP with SHA-256 works (probed; SoftHSM 2.6.1 has SHA-1 only).
    pub oaep_sha256: bool,
    /// Whether raw RSA (`CKM_RSA_X_509`) decrypts in the token (probed). Where the token has no
    /// RSAES-OAEP with SHA-256, the RSA operation runs in the token this way and the OAEP
    /// padding is removed in the service, in constant time (`oaep.rs`).
    pub rsa_raw: bool,
    /// Whether `RSAES_OAEP_SHA_256` imports of secret key material (AES, HMAC) are taken on a
    /// token without OAEP-SHA-256, by raw RSA in the token and OAEP decoding in the service:
    /// the material then passes through this process's memory (zeroized after) on its way
    /// into the token. Only where the operator opted in (`hsm.oaep_sha256_import_in_service`).
    pub oaep_sha256_import_in_service: bool,
    /// The elliptic curves the token generates keys on (probed; Kryoptic built against
    /// OpenSSL 3.0 has no secp256k1).
    pub curves: Vec<asym::Curve>,
}

impl Capabilities {
    pub fn has(&self, m: MechanismType) -> bool {
        self.mechanisms.contains(&m)
    }

    /// Whether RSAES-OAEP with SHA-256 decrypts: in the token, or as raw RSA in the token with
    /// the padding removed in the service. Either way the private key never leaves the token.
    pub fn decrypts_oaep_sha256(&self) -> bool {
        self.oaep_sha256 || self.rsa_raw
    }
}

/// Whether the token lists `CKM_AES_KEY_WRAP_KWP` (cryptoki 0.12 drops mechanisms it cannot
/// name from the list it returns, so this asks for it by number).
pub(super) fn lists_kwp(raw: Option<&raw::RawModule>, slot: Slot) -> bool {
    let Some(raw) = raw else { return false };
    let mut info = cryptoki_sys::CK_MECHANISM_INFO::default();
    let rv = raw.mechanism_info(slot.id(), CKM_AES_KEY_WRAP_KWP, &mut info);
    rv == cryptoki_sys::CKR_OK
        && info.flags & (cryptoki_sys::CKF_WRAP | cryptoki_sys::CKF_UNWRAP) != 0
}

/// Whether `mech` produces RFC 5649 on this token: a known 256-bit key wrapped under a known
/// key-encryption key (both short-lived session objects) must give RFC 5649's output.
/// `None` when the token will not take known key values (some FIPS-mode HSMs refuse them).
fn probe_rfc5649(s: &Session, mech: Rfc5649, raw: Option<&raw::RawModule>) -> Option<bool> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
    let kek_value = [0x4bu8; 32];
    let key_value: Vec<u8> = (0u8..32).collect();
    let secret = |value: &[u8], wrap: bool| {
        s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(value.to_vec()),
            Attribute::Wrap(wrap),
            Attribute::Unwrap(wrap),
            Attribute::Extractable(!wrap),
            Attribute::Sensitive(wrap),
        ])
    };
    let kek = secret(&kek_value, true).ok()?;
    let key = match secret(&key_value, false) {
        Ok(k) => k,
        Err(_) => {
            let _ = s.destroy_object(kek);
            return None;
        }
    };
    let wrapped = wrap5649(s, mech, raw, kek, key);
    let _ = s.destroy_object(key);
    let _ = s.destroy_object(kek);
    let mut expected = [0u8; 48];
    let expected = AesKek::new(&AES_256, &kek_value)
        .ok()?
        .wrap_with_padding(&key_value, &mut expected)
        .ok()?
        .to_vec();
    Some(wrapped.is_ok_and(|w| w == expected))
}

/// The RFC 5649 mechanism to use: `CKM_AES_KEY_WRAP_KWP` if listed, else the vendor's
/// `CKM_AES_KEY_WRAP_PAD`, each only if its output is RFC 5649 (probed; where the token
/// refuses the probe, KWP is taken at its word and PAD only where the profile says so).
pub(super) fn choose_rfc5649(
    s: &Session,
    raw: Option<&raw::RawModule>,
    mechs: &[MechanismType],
    kwp_listed: bool,
    profile: &Profile,
) -> Result<Rfc5649, HsmError> {
    let mut candidates = Vec::new();
    if kwp_listed {
        candidates.push(Rfc5649::Kwp);
    }
    if mechs.contains(&MechanismType::AES_KEY_WRAP_PAD) {
        candidates.push(Rfc5649::Pad);
    }
    for m in candidates {
        match probe_rfc5649(s, m, raw) {
            Some(true) => return Ok(m),
            Some(false) => {
                tracing::warn!(mechanism = ?m, "the token's output for this mechanism is not RFC 5649; not using it")
            }
            None if m == Rfc5649::Kwp || profile.pad_is_rfc5649 => return Ok(m),
            None => {}
        }
    }
    Err(HsmError::MechanismMissing {
        what: "RFC 5649 AES key wrap (CKM_AES_KEY_WRAP_KWP, or CKM_AES_KEY_WRAP_PAD where it is RFC 5649)",
    })
}

/// The mechanisms the service needs besides RFC 5649 wrap (chosen by `choose_rfc5649`),
/// checked once at start-up.
pub fn check_mechanisms(mechs: &[MechanismType]) -> Result<(), HsmError> {
    let need = [
        (MechanismType::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
        (MechanismType::AES_GCM, "CKM_AES_GCM"),
        (MechanismType::SHA256_HMAC, "CKM_SHA256_HMAC"),
        (
            MechanismType::GENERIC_SECRET_KEY_GEN,
            "CKM_GENERIC_SECRET_KEY_GEN",
        ),
    ];
    for (m, name) in need {
        if !mechs.contains(&m) {
            return Err(HsmError::MechanismMissing { what: name });
        }
    }
    Ok(())
}

impl Hsm {
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// Capabilities that need the root key to probe.
    pub(super) fn probe_with_root(&self, s: &Session, root: ObjectHandle) {
        let tok = Tok {
            session: s,
            inner: &self.inner,
            messages: None,
        };
        let (generates, wraps) = if self.inner.caps.has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN) {
            asym::probe_ed25519(&tok, root)
        } else {
            (false, false)
        };
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.inner.ed25519.store(wraps, relaxed);
        // Kept as token objects where they cannot be wrapped (`held.rs`), but not in a pool of
        // tokens: the other tokens would not have them.
        self.inner
            .ed25519_held
            .store(generates && !wraps && !self.is_pool(), relaxed);
    }

    /// Whether Ed25519 keys can be created on this token (generated and wrapped).
    pub fn ed25519_supported(&self) -> bool {
        self.inner
            .ed25519
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_mechanism_is_named() {
        let all = vec![
            MechanismType::AES_KEY_GEN,
            MechanismType::AES_GCM,
            MechanismType::SHA256_HMAC,
            MechanismType::GENERIC_SECRET_KEY_GEN,
        ];
        check_mechanisms(&all).unwrap();
        for i in 0..all.len() {
            let mut fewer = all.clone();
            fewer.remove(i);
            let e = check_mechanisms(&fewer).unwrap_err().to_string();
            assert!(
                e.starts_with("the token does not offer ") && e.contains("CKM_"),
                "{e}"
            );
        }
    }
}
