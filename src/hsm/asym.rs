//! Key pairs and HMAC secrets in the token: generation (as session objects, wrapped under the
//! root key and destroyed), unwrapping, signing, RSA-OAEP decryption, ECDH and HMAC.

use super::{ck, find_labelled, wrap_and_destroy, Hsm, HsmError, KeyHandle, Tok};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
    Secp256k1,
}

impl Curve {
    /// DER of the curve's object identifier (`CKA_EC_PARAMS`).
    pub fn oid_der(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            Curve::P521 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
            Curve::Secp256k1 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        }
    }

    /// The base point G, uncompressed (0x04 ‖ x ‖ y), from SEC 2 / FIPS 186-4.
    pub(super) fn generator(self) -> Vec<u8> {
        let (x, y) = match self {
            Curve::P256 => (
                "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
            ),
            Curve::P384 => (
                "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
                "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
            ),
            Curve::P521 => (
                "00c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3dbaa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66",
                "011839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e662c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650",
            ),
            Curve::Secp256k1 => (
                "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
                "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8",
            ),
        };
        let mut g = vec![0x04];
        g.extend(hex::decode(x).expect("constant"));
        g.extend(hex::decode(y).expect("constant"));
        g
    }

    /// Bytes of one field element (and of an ECDH shared secret).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 | Curve::Secp256k1 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// DER of Ed25519's object identifier 1.3.101.112.
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    Rsa(u32),
    Ec(Curve),
    Ed25519,
}

/// What a private key may do once unwrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateUse {
    Sign,
    Decrypt,
    Derive,
    /// An import wrapping key: decrypts (RSA-OAEP) by unwrapping into the token.
    Unwrap,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(super) fn mechanism(self) -> MechanismType {
        match self {
            Hash::Sha1 => MechanismType::SHA1,
            Hash::Sha224 => MechanismType::SHA224,
            Hash::Sha256 => MechanismType::SHA256,
            Hash::Sha384 => MechanismType::SHA384,
            Hash::Sha512 => MechanismType::SHA512,
        }
    }

    pub(super) fn mgf(self) -> PkcsMgfType {
        match self {
            Hash::Sha1 => PkcsMgfType::MGF1_SHA1,
            Hash::Sha224 => PkcsMgfType::MGF1_SHA224,
            Hash::Sha256 => PkcsMgfType::MGF1_SHA256,
            Hash::Sha384 => PkcsMgfType::MGF1_SHA384,
            Hash::Sha512 => PkcsMgfType::MGF1_SHA512,
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha224 => 28,
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

/// How to sign. RSA and ECDSA sign a digest the caller computed; Ed25519 signs the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignScheme {
    /// RSASSA-PKCS1-v1_5 over a digest: the DigestInfo is added here.
    RsaPkcs1(Hash),
    /// RSASSA-PSS over a digest, salt as long as the digest.
    RsaPss(Hash),
    /// ECDSA over a digest; the token returns r ‖ s.
    Ecdsa,
    /// Pure Ed25519 over the message.
    Ed25519,
}

/// A public key as the token reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Rsa {
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    },
    /// An uncompressed EC point (0x04 ‖ x ‖ y), or Ed25519's 32 bytes.
    Point(Vec<u8>),
}

/// The DigestInfo prefix of RSASSA-PKCS1-v1_5 (RFC 8017 §9.2, note 1).
fn digest_info(hash: Hash) -> &'static [u8] {
    match hash {
        Hash::Sha1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        Hash::Sha224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
        Hash::Sha256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        Hash::Sha384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        Hash::Sha512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point on PKCS#11-conformant tokens; some
/// return the bare point. `len` is the bare point's length.
fn strip_octet_string(v: Vec<u8>, len: usize) -> Result<Vec<u8>, HsmError> {
    if v.len() == len {
        return Ok(v);
    }
    let header = if len < 128 { 2 } else { 3 };
    if v.len() == len + header && v[0] == 0x04 {
        return Ok(v[header..].to_vec());
    }
    Err(HsmError::Other(format!(
        "the token returned a {}-byte public point where {len} bytes were expected",
        v.len()
    )))
}

pub(super) fn private_template(
    kind: PairKind,
    use_: PrivateUse,
    extractable: bool,
) -> Vec<Attribute> {
    let key_type = match kind {
        PairKind::Rsa(_) => KeyType::RSA,
        PairKind::Ec(_) => KeyType::EC,
        PairKind::Ed25519 => KeyType::EC_EDWARDS,
    };
    vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(false),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
        Attribute::Sign(use_ == PrivateUse::Sign),
        Attribute::Decrypt(use_ == PrivateUse::Decrypt),
        Attribute::Derive(use_ == PrivateUse::Derive),
        Attribute::Unwrap(use_ == PrivateUse::Unwrap),
    ]
}

pub(super) fn generate_pair(
    s: &Session,
    kind: PairKind,
    use_: PrivateUse,
) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
    generate_pair_with(s, kind, use_, &[])
}

/// A key pair of session objects, the private one extractable (to be wrapped), unless
/// `private_overrides` say otherwise: attributes that replace those of the same type.
pub(super) fn generate_pair_with(
    s: &Session,
    kind: PairKind,
    use_: PrivateUse,
    private_overrides: &[Attribute],
) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
    let mut public = vec![Attribute::Token(false)];
    let mechanism = match kind {
        PairKind::Rsa(bits) => {
            public.push(Attribute::ModulusBits((bits as u64).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            public.push(Attribute::Verify(use_ == PrivateUse::Sign));
            public.push(Attribute::Encrypt(use_ == PrivateUse::Decrypt));
            public.push(Attribute::Wrap(use_ == PrivateUse::Unwrap));
            Mechanism::RsaPkcsKeyPairGen
        }
        PairKind::Ec(curve) => {
            public.push(Attribute::EcParams(curve.oid_der().to_vec()));
            public.push(Attribute::Verify(use_ == PrivateUse::Sign));
            Mechanism::EccKeyPairGen
        }
        PairKind::Ed25519 => {
            public.push(Attribute::EcParams(ED25519_OID.to_vec()));
            public.push(Attribute::Verify(true));
            Mechanism::EccEdwardsKeyPairGen
        }
    };
    // Held keys (a token object) are never extractable.
    let extractable = !private_overrides.contains(&Attribute::Token(true));
    let mut private = private_template(kind, use_, extractable);
    private.retain(|a| {
        !matches!(a, Attribute::Class(_) | Attribute::KeyType(_))
            && !private_overrides
                .iter()
                .any(|o| o.attribute_type() == a.attribute_type())
    });
    private.extend_from_slice(private_overrides);
    ck(s.generate_key_pair(&mechanism, &public, &private))
}

/// ECDH (no KDF) of a private key with a point: the x coordinate of their product, read out of a
/// short-lived derived object that is then destroyed.
pub(super) fn ecdh_x(
    s: &Session,
    key: ObjectHandle,
    peer_point: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, HsmError> {
    let params = Ecdh1DeriveParams::new(EcKdf::null(), peer_point);
    let derived = ck(s.derive_key(
        &Mechanism::Ecdh1Derive(params),
        key,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen((len as u64).into()),
        ],
    ))?;
    let value = ck(s.get_attributes(derived, &[AttributeType::Value]));
    let destroyed = ck(s.destroy_object(derived));
    let value = value?.into_iter().find_map(|a| match a {
        Attribute::Value(v) => Some(Zeroizing::new(v)),
        _ => None,
    });
    destroyed?;
    value.ok_or_else(|| HsmError::Other("the token did not return the shared secret".into()))
}

pub(super) fn read_public(
    s: &Session,
    kind: PairKind,
    obj: ObjectHandle,
) -> Result<PublicKey, HsmError> {
    match kind {
        PairKind::Rsa(_) => {
            let attrs = ck(s.get_attributes(
                obj,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            ))?;
            let (mut modulus, mut exponent) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Modulus(m) => modulus = Some(m),
                    Attribute::PublicExponent(e) => exponent = Some(e),
                    _ => {}
                }
            }
            match (modulus, exponent) {
                (Some(modulus), Some(exponent)) => Ok(PublicKey::Rsa { modulus, exponent }),
                _ => Err(HsmError::Other(
                    "the token did not return the RSA public key".into(),
                )),
            }
        }
        PairKind::Ec(_) | PairKind::Ed25519 => {
            let len = match kind {
                PairKind::Ec(c) => 1 + 2 * c.field_len(),
                _ => 32,
            };
            let attrs = ck(s.get_attributes(obj, &[AttributeType::EcPoint]))?;
            let point = attrs.into_iter().find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            });
            let point = point.ok_or_else(|| {
                HsmError::Other("the token did not return the public point".into())
            })?;
            Ok(PublicKey::Point(strip_octet_string(point, len)?))
        }
    }
}

impl Hsm {
    /// Generate a key pair in the token; return the private key wrapped under the root key
    /// (RFC 5649 over its PKCS#8 encoding), the public key, and the root key version. Both
    /// session objects are destroyed before returning.
    pub async fn generate_wrapped_key_pair(
        &self,
        kind: PairKind,
        use_: PrivateUse,
    ) -> Result<(Vec<u8>, PublicKey, u32), HsmError> {
        // A prime search: its request's clock stops meanwhile (`crate::deadline`).
        let _generating = crate::deadline::generating();
        self.run(move |s| {
            let (version, root) = s.root()?;
            let (public, private) = generate_pair(s, kind, use_)?;
            let read = read_public(s, kind, public);
            let wrapped = s.wrap5649(root, private);
            let d1 = ck(s.destroy_object(public));
            let d2 = ck(s.destroy_object(private));
            let (read, wrapped) = (read?, wrapped?);
            d1?;
            d2?;
            Ok((wrapped, read, version))
        })
        .await
    }

    /// Generate a generic secret of `len` bytes (an HMAC key) and return it wrapped.
    pub async fn generate_wrapped_secret(&self, len: usize) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            let key = ck(s.generate_key(
                &Mechanism::GenericSecretKeyGen,
                &super::wrap::secret_key(
                    KeyType::GENERIC_SECRET,
                    true,
                    &[
                        Attribute::Sign(true),
                        Attribute::Verify(true),
                        Attribute::ValueLen((len as u64).into()),
                    ],
                ),
            ))?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }

    /// Sign in the token. For RSA and ECDSA `data` is the digest; for Ed25519 the message.
    pub async fn sign(
        &self,
        key: Arc<KeyHandle>,
        scheme: SignScheme,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, HsmError> {
        // ECDSA and EdDSA take tens of microseconds on a local token: run them like the other
        // short calls. RSA private-key operations take about a millisecond: blocking pool.
        let call = move |s: &Tok| match scheme {
            SignScheme::RsaPkcs1(h) => {
                let mut input = digest_info(h).to_vec();
                input.extend_from_slice(&data);
                s.sign_once(&Mechanism::RsaPkcs, s.obj(&key)?, &input)
            }
            SignScheme::RsaPss(h) => {
                let params = PkcsPssParams {
                    hash_alg: h.mechanism(),
                    mgf: h.mgf(),
                    s_len: (h.output_len() as u64).into(),
                };
                s.sign_once(&Mechanism::RsaPkcsPss(params), s.obj(&key)?, &data)
            }
            SignScheme::Ecdsa => s.sign_once(&Mechanism::Ecdsa, s.obj(&key)?, &data),
            SignScheme::Ed25519 => s.sign_once(
                &Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
                    cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
                )),
                s.obj(&key)?,
                &data,
            ),
        };
        match scheme {
            SignScheme::Ecdsa | SignScheme::Ed25519 => self.run_fast(call).await,
            _ => self.run(call).await,
        }
    }

    /// RSAES-OAEP decryption (MGF1 with the same hash, no label) of a ciphertext as long as
    /// the modulus. In the token where it has the hash; otherwise raw RSA in the token and the
    /// padding removed here in constant time (`oaep.rs`), every failure alike.
    pub async fn rsa_oaep_decrypt(
        &self,
        key: Arc<KeyHandle>,
        hash: Hash,
        ciphertext: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let in_token = hash != Hash::Sha256 || self.inner.caps.oaep_sha256;
        self.run(move |s| {
            if !in_token {
                return raw_oaep_decrypt(s, s.obj(&key)?, hash, &ciphertext);
            }
            let params = PkcsOaepParams::new(hash.mechanism(), hash.mgf(), PkcsOaepSource::empty());
            s.bad_ciphertext(ck(s.decrypt(
                &Mechanism::RsaPkcsOaep(params),
                s.obj(&key)?,
                &ciphertext,
            )))
            .map(Zeroizing::new)
        })
        .await
    }

    /// ECDH (no KDF) between a private key and a peer's uncompressed point; the raw shared
    /// secret (x coordinate), read out of a short-lived derived object that is then destroyed.
    pub async fn ecdh(
        &self,
        key: Arc<KeyHandle>,
        peer_point: Vec<u8>,
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run(move |s| ecdh_x(s, s.obj(&key)?, &peer_point, len))
            .await
    }

    /// HMAC with a generic secret in the token.
    pub async fn hmac(
        &self,
        key: Arc<KeyHandle>,
        hash: Hash,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, HsmError> {
        self.run_fast(move |s| {
            let mechanism = match hash {
                Hash::Sha1 => Mechanism::Sha1Hmac,
                Hash::Sha224 => Mechanism::Sha224Hmac,
                Hash::Sha256 => Mechanism::Sha256Hmac,
                Hash::Sha384 => Mechanism::Sha384Hmac,
                Hash::Sha512 => Mechanism::Sha512Hmac,
            };
            s.sign_once(&mechanism, s.obj(&key)?, &data)
        })
        .await
    }
}

/// Whether the token can generate an Ed25519 key pair, and whether it can wrap its private key
/// (SoftHSM 2.6.1 generates them but refuses to wrap them: `CKR_KEY_NOT_WRAPPABLE`).
pub(super) fn probe_ed25519(s: &Tok, root: ObjectHandle) -> (bool, bool) {
    let Ok((public, private)) = generate_pair(s, PairKind::Ed25519, PrivateUse::Sign) else {
        return (false, false);
    };
    let wrapped = s.wrap5649(root, private);
    let _ = s.destroy_object(public);
    let _ = s.destroy_object(private);
    match wrapped {
        Ok(_) => (true, true),
        // The token says so: such keys can be kept as token objects (`held.rs`).
        Err(e) if e.rv() == Some(cryptoki::error::RvError::KeyNotWrappable) => (true, false),
        // Anything else (a transient failure) offers no Ed25519 at all rather than keys the
        // database backup would not hold.
        Err(e) => {
            tracing::warn!(error = %e, "Ed25519 probe: the token failed to wrap a private key; Ed25519 keys are not offered");
            (false, false)
        }
    }
}

/// The curves the token generates key pairs on: probed once at start-up with throwaway
/// session key pairs.
pub(super) fn probe_curves(s: &Session) -> Vec<Curve> {
    [Curve::P256, Curve::P384, Curve::P521, Curve::Secp256k1]
        .into_iter()
        .filter(
            |c| match generate_pair(s, PairKind::Ec(*c), PrivateUse::Sign) {
                Ok((public, private)) => {
                    let _ = s.destroy_object(public);
                    let _ = s.destroy_object(private);
                    true
                }
                Err(_) => false,
            },
        )
        .collect()
}

/// RSAES-OAEP decryption as raw RSA (`CKM_RSA_X_509`) in the token and OAEP decoding here: for
/// tokens without OAEP over `hash`. The key object needs `CKA_DECRYPT`. Every failure, the
/// token's refusal of the block included, is `BadCiphertext`.
pub(super) fn raw_oaep_decrypt(
    s: &Tok,
    private: ObjectHandle,
    hash: Hash,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, HsmError> {
    let k = ciphertext.len();
    let em = Zeroizing::new(s.bad_ciphertext(ck(s.decrypt(
        &Mechanism::RsaX509,
        private,
        ciphertext,
    )))?);
    // The block is as long as the modulus (the start-up probe takes raw RSA only from a token
    // that returns it whole).
    if em.len() != k {
        return Err(HsmError::BadCiphertext);
    }
    super::oaep::decode(hash, &em).ok_or(HsmError::BadCiphertext)
}

/// Which RSA decryptions the token does, probed once at start-up with a throwaway session key
/// pair: (RSAES-OAEP with SHA-256 — SoftHSM 2.6.1 implements only SHA-1 —, raw RSA).
///
/// The pair is 1,024 bits where the token makes one (what is probed, a mechanism, does not
/// depend on the size, and every `kms` process pays for the pair: a 2,048-bit one cost SoftHSM
/// 0.1 to 0.4 s of CPU, most of what a `kms admin` command spent), 2,048 where it refuses short
/// keys (FIPS-mode HSMs do).
pub(super) fn probe_rsa_decryption(
    s: &Session,
    oaep_listed: bool,
    raw_listed: bool,
) -> Result<(bool, bool), HsmError> {
    let pair = |bits: u32| {
        generate_pair(s, PairKind::Rsa(bits), PrivateUse::Decrypt).map(|pair| (bits, pair))
    };
    let (bits, (public, private)) = pair(1024).or_else(|_| pair(2048))?;
    let h = Hash::Sha256;
    let params = PkcsOaepParams::new(h.mechanism(), h.mgf(), PkcsOaepSource::empty());
    let oaep = oaep_listed
        && s.encrypt(&Mechanism::RsaPkcsOaep(params), public, b"probe")
            .and_then(|ct| s.decrypt(&Mechanism::RsaPkcsOaep(params), private, &ct))
            .is_ok_and(|pt| pt == b"probe");
    // A block below the modulus (leading zero byte), through raw RSA and back.
    let block: Vec<u8> = (0..bits / 8)
        .map(|i| if i == 0 { 0 } else { i as u8 })
        .collect();
    let raw = raw_listed
        && s.encrypt(&Mechanism::RsaX509, public, &block)
            .and_then(|ct| s.decrypt(&Mechanism::RsaX509, private, &ct))
            // The whole block back, leading zero byte included: a token that drops leading
            // zeros would tell by its output length whether a block starts with one.
            .is_ok_and(|pt| pt == block);
    let d1 = ck(s.destroy_object(public));
    let d2 = ck(s.destroy_object(private));
    d1?;
    d2?;
    Ok((oaep, raw))
}

/// Label of the token-held P-256 key that signs audit checkpoints (private half; the public
/// half carries the same label with `-public`).
pub const AUDIT_KEY_LABEL: &str = "kms-audit-signing-key-v1";

impl Hsm {
    /// Find the audit signing key pair, creating it (once, as token objects: the private key
    /// sensitive and never extractable) if absent. Returns whether it was created.
    pub fn ensure_audit_key(&self) -> Result<bool, HsmError> {
        let s = self.pinned();
        let public_label = format!("{AUDIT_KEY_LABEL}-public");
        let private = find_labelled(&s, ObjectClass::PRIVATE_KEY, AUDIT_KEY_LABEL)?;
        let public = find_labelled(&s, ObjectClass::PUBLIC_KEY, &public_label)?;
        let (pair, created) = match (private, public) {
            (Some(a), Some(b)) => ((a, b), false),
            (None, None) => {
                let (public, private) = ck(s.generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::EcParams(Curve::P256.oid_der().to_vec()),
                        Attribute::Verify(true),
                        Attribute::Label(public_label.into_bytes()),
                    ],
                    // Extractable until `kms init` has copied it to the pool's other tokens.
                    &super::service_key_template(
                        super::ServiceKey::AuditPrivate,
                        AUDIT_KEY_LABEL,
                        self.is_pool(),
                    ),
                ))?;
                ((private, public), true)
            }
            _ => {
                return Err(HsmError::Other(format!(
                    "the token holds only half of the audit key pair '{AUDIT_KEY_LABEL}'"
                )))
            }
        };
        *self.inner.audit.lock().unwrap() = Some(pair);
        Ok(created)
    }

    /// The audit key's public point (uncompressed P-256).
    pub async fn audit_public_point(&self) -> Result<Vec<u8>, HsmError> {
        self.run(
            move |s| match read_public(s, PairKind::Ec(Curve::P256), s.audit()?.1)? {
                PublicKey::Point(p) => Ok(p),
                PublicKey::Rsa { .. } => {
                    Err(HsmError::Other("the audit key is not an EC key".into()))
                }
            },
        )
        .await
    }

    /// ECDSA P-256 over a SHA-256 digest with the audit key; r ‖ s.
    pub async fn audit_sign(&self, digest: Vec<u8>) -> Result<Vec<u8>, HsmError> {
        self.run(move |s| ck(s.sign(&Mechanism::Ecdsa, s.audit()?.0, &digest)))
            .await
    }
}
