//! Importing key material (bring your own key): the importer wraps it with the public half of
//! a wrapping key pair generated here; it is unwrapped inside the token — never in host
//! memory — checked, and wrapped again under the root key.

use super::asym::{ecdh_x, private_template, Curve, Hash, PairKind, PrivateUse};
use super::{ck, wrap_and_destroy, Hsm, HsmError, Tok};
use cryptoki::mechanism::rsa::{PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

/// How the importer wrapped the material (`WrappingAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportWrap {
    /// RSAES-OAEP directly over the material.
    Oaep(Hash),
    /// RSAES-OAEP over an ephemeral AES key, followed by the material wrapped under that key
    /// with RFC 5649 (AES key wrap with padding): done as those two unwraps in the token.
    RsaAes(Hash),
}

/// What the material must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportAs {
    /// A 256-bit AES key (`SYMMETRIC_DEFAULT`).
    Aes256,
    /// An HMAC key of `min..=max` bytes.
    Secret { min: usize, max: usize },
    /// An RSA private key of `bits` (PKCS#8, which only `RsaAes` can carry), for `use_`.
    Rsa { bits: u32, use_: PrivateUse },
    /// An EC private key on `curve` (PKCS#8, which only `RsaAes` can carry), for `use_`.
    Ec { curve: Curve, use_: PrivateUse },
}

/// Imported material, wrapped under the root key.
pub struct Imported {
    pub wrapped: Vec<u8>,
    pub root_version: u32,
    /// A check value of the material, keyed with the token's MAC key: equal for the same
    /// material, and saying nothing about it.
    pub check: Vec<u8>,
    /// For a private key: its public key, read from the token.
    pub public: Option<super::PublicKey>,
}

const CHECK_MESSAGE: &[u8] = b"kms imported key material check value v1";

fn target_template(as_: ImportAs) -> Vec<Attribute> {
    if let ImportAs::Rsa { bits, use_ } = as_ {
        // Extractable: it is wrapped again under the root key, then destroyed.
        return private_template(PairKind::Rsa(bits), use_, true);
    }
    if let ImportAs::Ec { curve, use_ } = as_ {
        // Extractable: it is wrapped again under the root key, then destroyed. This object may
        // also sign and derive, whatever the key's use, because its public key is worked out
        // that way (see `ec_public`); the stored wrap carries no attributes.
        let mut t = private_template(PairKind::Ec(curve), use_, true);
        for a in t.iter_mut() {
            match a {
                Attribute::Sign(_) => *a = Attribute::Sign(true),
                Attribute::Derive(_) => *a = Attribute::Derive(true),
                _ => {}
            }
        }
        return t;
    }
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        // Wrapped again under the root key, then destroyed.
        Attribute::Extractable(true),
    ];
    match as_ {
        ImportAs::Aes256 => t.extend([
            Attribute::KeyType(KeyType::AES),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
        ]),
        ImportAs::Secret { .. } => t.extend([
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Sign(true),
            Attribute::Verify(true),
        ]),
        ImportAs::Rsa { .. } | ImportAs::Ec { .. } => {}
    }
    t
}

fn oaep(h: Hash) -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        h.mechanism(),
        h.mgf(),
        PkcsOaepSource::empty(),
    ))
}

/// Unwrap the importer's material with the wrapping private key: the new object, or why the
/// material was refused. `raw`: the token has no RSAES-OAEP over the hash, so the ephemeral
/// AES key of `RsaAes` is recovered by raw RSA in the token and OAEP decoding in the service,
/// then put back into the token as a short-lived session object; the material itself is
/// unwrapped inside the token as always.
#[allow(clippy::too_many_arguments)]
fn unwrap_material(
    s: &Tok,
    private: ObjectHandle,
    modulus_len: usize,
    wrap: ImportWrap,
    raw: bool,
    encrypted: &[u8],
    as_: ImportAs,
    template: &[Attribute],
) -> Result<Result<ObjectHandle, String>, HsmError> {
    match wrap {
        ImportWrap::Oaep(h) if raw => {
            // Opted in (`oaep_sha256_import_in_service`): the material itself is decoded here.
            if encrypted.len() != modulus_len {
                return Ok(Err("not as long as the wrapping key's modulus".into()));
            }
            let material = match super::asym::raw_oaep_decrypt(s, private, h, encrypted) {
                Ok(m) => m,
                Err(HsmError::BadCiphertext) => {
                    return Ok(Err("RSAES-OAEP decryption failed".into()))
                }
                Err(e) => return Err(e),
            };
            if let Err(why) = value_fits(as_, material.len()) {
                return Ok(Err(why));
            }
            let mut t = template.to_vec();
            t.push(Attribute::Value(material.to_vec()));
            let created = s.create_object(&t);
            for a in t.iter_mut() {
                if let Attribute::Value(v) = a {
                    zeroize::Zeroize::zeroize(v);
                }
            }
            Ok(created.map_err(|e| format!("the token refused the material: {e}")))
        }
        ImportWrap::Oaep(h) => Ok(s
            .unwrap_key(&oaep(h), private, encrypted, template)
            .map_err(|e| format!("RSAES-OAEP unwrap failed: {e}"))),
        ImportWrap::RsaAes(h) => {
            if encrypted.len() <= modulus_len {
                return Ok(Err("too short for RSA_AES_KEY_WRAP".into()));
            }
            let (key_part, material_part) = encrypted.split_at(modulus_len);
            let unwrap_only = [Attribute::Unwrap(true)];
            let ephemeral = if raw {
                match super::asym::raw_oaep_decrypt(s, private, h, key_part) {
                    Ok(aes) if [16, 24, 32].contains(&aes.len()) => {
                        let mut t = super::wrap::secret_key(KeyType::AES, false, &unwrap_only);
                        t.push(Attribute::Value(aes.to_vec()));
                        let created = ck(s.create_object(&t));
                        for a in t.iter_mut() {
                            if let Attribute::Value(v) = a {
                                zeroize::Zeroize::zeroize(v);
                            }
                        }
                        created?
                    }
                    Ok(_) => {
                        return Ok(Err("the RSAES-OAEP block does not hold an AES key".into()))
                    }
                    Err(HsmError::BadCiphertext) => {
                        return Ok(Err("RSAES-OAEP decryption of the AES key failed".into()))
                    }
                    Err(e) => return Err(e),
                }
            } else {
                match s.unwrap_key(
                    &oaep(h),
                    private,
                    key_part,
                    &super::wrap::secret_key(KeyType::AES, false, &unwrap_only),
                ) {
                    Ok(k) => k,
                    Err(e) => {
                        return Ok(Err(format!("RSAES-OAEP unwrap of the AES key failed: {e}")))
                    }
                }
            };
            let r = s
                .unwrap5649(ephemeral, material_part, template)
                .map_err(|e| format!("AES key wrap with padding unwrap failed: {e}"));
            ck(s.destroy_object(ephemeral))?;
            Ok(r)
        }
    }
}

/// Whether secret material of `len` bytes is of this kind (for material decoded in the service,
/// whose length is exact).
fn value_fits(as_: ImportAs, len: usize) -> Result<(), String> {
    match as_ {
        ImportAs::Aes256 if len == 32 => Ok(()),
        ImportAs::Secret { min, max } if (min..=max).contains(&len) => Ok(()),
        ImportAs::Aes256 => Err(format!("the material is {len} bytes, not a 256-bit key")),
        ImportAs::Secret { min, max } => {
            Err(format!("the material is {len} bytes, not {min} to {max}"))
        }
        ImportAs::Rsa { .. } | ImportAs::Ec { .. } => {
            Err("private keys are not decoded in the service".into())
        }
    }
}

/// Whether material of this kind can have wrapped to `wrapped_len` bytes under RFC 5649
/// (the padded length plus 8). Tokens need not report `CKA_VALUE_LEN` for an unwrapped key
/// (SoftHSM does not), so the length is read off the wrap: exact for AES-256, to within the
/// 8-byte padding for HMAC keys.
fn length_fits(as_: ImportAs, wrapped_len: usize) -> Result<(), String> {
    let padded = wrapped_len.saturating_sub(8);
    match as_ {
        ImportAs::Aes256 if padded == 32 => Ok(()),
        ImportAs::Aes256 => Err(format!(
            "the material is about {padded} bytes, not a 256-bit key"
        )),
        ImportAs::Secret { min, max } if padded >= min && padded <= max.div_ceil(8) * 8 => Ok(()),
        ImportAs::Secret { min, max } => Err(format!(
            "the material is about {padded} bytes, not {min} to {max}"
        )),
        // Checked by its modulus or its curve.
        ImportAs::Rsa { .. } | ImportAs::Ec { .. } => Ok(()),
    }
}

/// The check value and (for a private key) the public key, or why the material is refused.
type Checked = Result<(Vec<u8>, Option<super::PublicKey>), String>;

/// The material's check value, keyed with the MAC key: from AES-ECB of a zero block (the usual
/// key check value), an HMAC of a fixed message, or a private key's public half (an RSA modulus
/// of the key spec's size, a point on the key spec's curve).
fn check_value(s: &super::Tok, key: ObjectHandle, as_: ImportAs) -> Result<Checked, HsmError> {
    let mut public = None;
    let value = match as_ {
        ImportAs::Rsa { bits, .. } => {
            // A private key is identified by its public half, which the token shows.
            let p = super::asym::read_public(s, PairKind::Rsa(bits), key)?;
            let super::PublicKey::Rsa { modulus, exponent } = &p else {
                return Ok(Err("not an RSA key".into()));
            };
            let n = modulus.iter().skip_while(|b| **b == 0).count();
            if n != bits as usize / 8 {
                return Ok(Err(format!(
                    "the key has a {}-bit modulus, not {bits}",
                    n * 8
                )));
            }
            let mut v = modulus.clone();
            v.extend_from_slice(exponent);
            public = Some(p);
            v
        }
        ImportAs::Ec { curve, .. } => match ec_public(s, key, curve)? {
            Ok(point) => {
                public = Some(super::PublicKey::Point(point.clone()));
                point
            }
            Err(why) => return Ok(Err(why)),
        },
        ImportAs::Aes256 => ck(s.encrypt(&Mechanism::AesEcb, key, &[0u8; 16]))?,
        ImportAs::Secret { .. } => ck(s.sign(&Mechanism::Sha256Hmac, key, CHECK_MESSAGE))?,
    };
    let mut input = CHECK_MESSAGE.to_vec();
    input.extend_from_slice(&value);
    Ok(Ok((s.row_mac(&input)?, public)))
}

/// The public point of an imported EC private key, or why the key is refused.
///
/// Tokens need not show a private key's public point (SoftHSM does not), and it must be served
/// by `GetPublicKey`, so it is worked out in the token: ECDH of the key with the base point G
/// gives the x coordinate of d·G, which leaves two candidate points, (x, y) and (x, −y); the
/// one under which a signature made in the token verifies is the key's.
fn ec_public(
    s: &Session,
    key: ObjectHandle,
    curve: Curve,
) -> Result<Result<Vec<u8>, String>, HsmError> {
    use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
    use cryptoki::object::AttributeType;
    let params = ck(s.get_attributes(key, &[AttributeType::EcParams]))?
        .into_iter()
        .find_map(|a| match a {
            Attribute::EcParams(p) => Some(p),
            _ => None,
        });
    if params.as_deref() != Some(curve.oid_der()) {
        return Ok(Err(format!(
            "the key is not on the key spec's curve ({curve:?})"
        )));
    }
    let len = curve.field_len();
    let x = ecdh_x(s, key, &curve.generator(), len)?;
    let (algorithm, digest): (&'static dyn VerificationAlgorithm, _) = match curve {
        Curve::P256 => (
            &signature::ECDSA_P256_SHA256_FIXED,
            &aws_lc_rs::digest::SHA256,
        ),
        Curve::P384 => (
            &signature::ECDSA_P384_SHA384_FIXED,
            &aws_lc_rs::digest::SHA384,
        ),
        Curve::P521 => (
            &signature::ECDSA_P521_SHA512_FIXED,
            &aws_lc_rs::digest::SHA512,
        ),
        Curve::Secp256k1 => (
            &signature::ECDSA_P256K1_SHA256_FIXED,
            &aws_lc_rs::digest::SHA256,
        ),
    };
    let sig = ck(s.sign(
        &Mechanism::Ecdsa,
        key,
        aws_lc_rs::digest::digest(digest, CHECK_MESSAGE).as_ref(),
    ))?;
    for prefix in [0x02, 0x03] {
        let mut compressed = vec![prefix];
        compressed.extend_from_slice(&x);
        let Ok(candidate) = ParsedPublicKey::new(algorithm, &compressed) else {
            continue;
        };
        if candidate.verify_sig(CHECK_MESSAGE, &sig).is_err() {
            continue;
        }
        // The SubjectPublicKeyInfo ends with the uncompressed point.
        let der = aws_lc_rs::encoding::AsDer::as_der(&candidate)
            .map_err(|_| HsmError::Other("an EC public key would not encode".into()))?;
        let der = der.as_ref();
        let point = &der[der.len().saturating_sub(1 + 2 * len)..];
        if point.len() != 1 + 2 * len || point[0] != 0x04 || point[1..=len] != x[..] {
            return Err(HsmError::Other(
                "an EC public key encoded unexpectedly".into(),
            ));
        }
        return Ok(Ok(point.to_vec()));
    }
    Ok(Err("no public key verifies the key's own signature".into()))
}

impl Hsm {
    /// The check value, under the current MAC key, of material stored wrapped under root key
    /// `root_version`: for comparing a re-import with material whose stored check was made
    /// under an older MAC key, and for moving that check to the current one. The unwrapped
    /// object is destroyed on every path.
    pub async fn material_check(
        &self,
        blob: Vec<u8>,
        root_version: u32,
        as_: ImportAs,
    ) -> Result<Vec<u8>, HsmError> {
        self.run(move |s| {
            let key = s.unwrap5649(s.root_of(root_version)?, &blob, &target_template(as_))?;
            let checked = check_value(s, key, as_);
            let _ = s.destroy_object(key);
            match checked? {
                Ok((check, _)) => Ok(check),
                Err(why) => Err(HsmError::Other(format!(
                    "the stored material gives no check value: {why}"
                ))),
            }
        })
        .await
    }

    /// Import material wrapped by the importer: unwrap the wrapping private key (RSA of
    /// `bits`), unwrap the material with it, check its length, compute its check value,
    /// wrap it under the root key; every session object destroyed on every path. The inner
    /// `Err` says why the material was refused (a bad wrap, a wrong length).
    pub async fn import_material(
        &self,
        wrapped_private: Vec<u8>,
        private_root_version: u32,
        bits: u32,
        wrap: ImportWrap,
        encrypted: Vec<u8>,
        as_: ImportAs,
    ) -> Result<Result<Imported, String>, HsmError> {
        // Where the token has no RSAES-OAEP over the hash, the wrapping key decrypts raw RSA.
        let raw = match wrap {
            ImportWrap::RsaAes(Hash::Sha256) => !self.inner.caps.oaep_sha256,
            ImportWrap::Oaep(Hash::Sha256) => {
                !self.inner.caps.oaep_sha256 && self.inner.caps.oaep_sha256_import_in_service
            }
            _ => false,
        };
        self.run(move |s| {
            let (root_version, root) = s.root()?;
            let mut template = private_template(PairKind::Rsa(bits), PrivateUse::Unwrap, false);
            if raw {
                template.push(Attribute::Decrypt(true));
                template.retain(|a| !matches!(a, Attribute::Decrypt(false)));
            }
            let private = s.unwrap5649(
                s.root_of(private_root_version)?,
                &wrapped_private,
                &template,
            )?;
            let unwrapped = unwrap_material(
                s,
                private,
                bits as usize / 8,
                wrap,
                raw,
                &encrypted,
                as_,
                &target_template(as_),
            );
            ck(s.destroy_object(private))?;
            let key = match unwrapped? {
                Ok(k) => k,
                Err(why) => return Ok(Err(why)),
            };
            match check_value(s, key, as_) {
                Ok(Ok((check, public))) => {
                    let wrapped = wrap_and_destroy(s, root, key)?;
                    if let Err(why) = length_fits(as_, wrapped.len()) {
                        return Ok(Err(why));
                    }
                    Ok(Ok(Imported {
                        wrapped,
                        root_version,
                        check,
                        public,
                    }))
                }
                Ok(Err(why)) => {
                    ck(s.destroy_object(key))?;
                    Ok(Err(why))
                }
                Err(e) => {
                    let _ = s.destroy_object(key);
                    Err(e)
                }
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn material_length_is_read_off_the_rfc5649_wrap() {
        assert!(length_fits(ImportAs::Aes256, 40).is_ok());
        assert!(length_fits(ImportAs::Aes256, 24).is_err());
        assert!(length_fits(ImportAs::Aes256, 48).is_err());
        let hmac256 = ImportAs::Secret { min: 32, max: 64 };
        assert!(length_fits(hmac256, 40).is_ok());
        assert!(length_fits(hmac256, 72).is_ok());
        assert!(length_fits(hmac256, 32).is_err());
        assert!(length_fits(hmac256, 80).is_err());
    }

    #[test]
    fn base_points_are_on_their_curves() {
        use aws_lc_rs::signature::{self, ParsedPublicKey};
        for (curve, alg) in [
            (Curve::P256, &signature::ECDSA_P256_SHA256_FIXED),
            (Curve::P384, &signature::ECDSA_P384_SHA384_FIXED),
            (Curve::P521, &signature::ECDSA_P521_SHA512_FIXED),
            (Curve::Secp256k1, &signature::ECDSA_P256K1_SHA256_FIXED),
        ] {
            let g = curve.generator();
            assert_eq!(g.len(), 1 + 2 * curve.field_len());
            // Parsing checks the point is on the curve.
            ParsedPublicKey::new(alg, &g).unwrap_or_else(|_| panic!("{curve:?}"));
            // Compressed forms parse too, and re-encode uncompressed (as `ec_public` relies on).
            let mut c = vec![0x02 | (g[g.len() - 1] & 1)];
            c.extend_from_slice(&g[1..=curve.field_len()]);
            let der = aws_lc_rs::encoding::AsDer::as_der(&ParsedPublicKey::new(alg, &c).unwrap())
                .unwrap();
            assert!(der.as_ref().ends_with(&g), "{curve:?}");
        }
    }
}
