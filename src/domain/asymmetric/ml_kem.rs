//! ML-KEM data key pairs (FIPS 203), as AWS gives them: the private key as a PKCS #8
//! `PrivateKeyInfo` holding the 64-byte seed (`d ‖ z`), so that it is 86 bytes for every
//! parameter set, and the public key as a `SubjectPublicKeyInfo` (the encapsulation key), with
//! the algorithm identifiers of RFC 9935 (`id-alg-ml-kem-512/768/1024`, no parameters).
//!
//! The pair is made by AWS-LC (the library behind aws-lc-rs), from a seed drawn from its
//! generator: aws-lc-rs generates ML-KEM keys but gives no seed back, so its deterministic key
//! generation is called directly. Like the other data key pairs, it is made outside the
//! token: it is a data key, for the caller.

use super::{KmsError, Result};
use aws_lc_sys as sys;
use zeroize::Zeroizing;

/// A parameter set: its AWS-LC NID, the last arc of its OID (2.16.840.1.101.3.4.4.n) and its
/// encapsulation key's length.
struct Params {
    nid: i32,
    arc: u8,
    public_len: usize,
}

fn params(spec: &str) -> Option<Params> {
    let (nid, arc, public_len) = match spec {
        "ML_KEM_512" => (sys::NID_MLKEM512, 1, 800),
        "ML_KEM_768" => (sys::NID_MLKEM768, 2, 1184),
        "ML_KEM_1024" => (sys::NID_MLKEM1024, 3, 1568),
        _ => return None,
    };
    Some(Params {
        nid,
        arc,
        public_len,
    })
}

/// Whether `spec` is an ML-KEM data key pair spec.
pub fn is_ml_kem(spec: &str) -> bool {
    params(spec).is_some()
}

/// `(PrivateKeyInfo, SubjectPublicKeyInfo)` of a new ML-KEM key pair of `spec`.
pub fn generate(spec: &str) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let p = params(spec)
        .ok_or_else(|| KmsError::Internal(format!("{spec} is not an ML-KEM key pair spec")))?;
    let failed = || KmsError::Internal("ML-KEM key pair generation failed".into());
    let mut seed = Zeroizing::new([0u8; 64]);
    aws_lc_rs::rand::fill(&mut seed[..]).map_err(|_| failed())?;
    let public = public_of(&p, &seed).ok_or_else(failed)?;
    Ok((
        private_key_info(p.arc, &seed),
        public_key_info(p.arc, &public),
    ))
}

/// The encapsulation key that the seed `d ‖ z` gives (FIPS 203 `ML-KEM.KeyGen_internal`).
fn public_of(p: &Params, seed: &[u8; 64]) -> Option<Vec<u8>> {
    // SAFETY: each pointer passed is either one AWS-LC returned (checked for null, freed once
    // on every path) or a live buffer whose length is passed with it.
    unsafe {
        let ctx = sys::EVP_PKEY_CTX_new_id(sys::EVP_PKEY_KEM, std::ptr::null_mut());
        if ctx.is_null() {
            return None;
        }
        let mut pkey: *mut sys::EVP_PKEY = std::ptr::null_mut();
        let mut seed_len = seed.len();
        let made = sys::EVP_PKEY_CTX_kem_set_params(ctx, p.nid) == 1
            && sys::EVP_PKEY_keygen_init(ctx) == 1
            && sys::EVP_PKEY_keygen_deterministic(ctx, &mut pkey, seed.as_ptr(), &mut seed_len)
                == 1;
        sys::EVP_PKEY_CTX_free(ctx);
        if pkey.is_null() {
            return None;
        }
        let mut public = vec![0u8; p.public_len];
        let mut len = public.len();
        let read = sys::EVP_PKEY_get_raw_public_key(pkey, public.as_mut_ptr(), &mut len) == 1;
        sys::EVP_PKEY_free(pkey);
        (made && seed_len == seed.len() && read && len == p.public_len).then_some(public)
    }
}

/// The DER of `AlgorithmIdentifier { id-alg-ml-kem-* }` (no parameters).
fn algorithm(arc: u8) -> [u8; 13] {
    [
        0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x04, arc,
    ]
}

/// `OneAsymmetricKey { version 0, algorithm, privateKey OCTET STRING { seed [0] } }`.
fn private_key_info(arc: u8, seed: &[u8; 64]) -> Zeroizing<Vec<u8>> {
    let mut der = Zeroizing::new(Vec::with_capacity(86));
    der.extend([0x30, 0x54, 0x02, 0x01, 0x00]);
    der.extend(algorithm(arc));
    der.extend([0x04, 0x42, 0x80, 0x40]);
    der.extend(seed);
    der
}

/// `SubjectPublicKeyInfo { algorithm, subjectPublicKey BIT STRING }`.
fn public_key_info(arc: u8, public: &[u8]) -> Vec<u8> {
    let mut bits = vec![0x03];
    super::der::push_len(public.len() + 1, &mut bits);
    bits.push(0x00);
    bits.extend(public);
    let mut der = vec![0x30];
    super::der::push_len(algorithm(arc).len() + bits.len(), &mut der);
    der.extend(algorithm(arc));
    der.extend(bits);
    der
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_set_gives_its_encodings_and_a_working_pair() {
        use aws_lc_rs::kem::{EncapsulationKey, ML_KEM_1024, ML_KEM_512, ML_KEM_768};
        for (spec, alg, public_len) in [
            ("ML_KEM_512", &ML_KEM_512, 800),
            ("ML_KEM_768", &ML_KEM_768, 1184),
            ("ML_KEM_1024", &ML_KEM_1024, 1568),
        ] {
            let (private, spki) = generate(spec).unwrap();
            // 86 bytes whatever the set, as AWS says; the seed after a fixed prefix.
            assert_eq!(private.len(), 86, "{spec}");
            let seed: [u8; 64] = private[22..].try_into().unwrap();
            assert_eq!(
                private[..],
                private_key_info(params(spec).unwrap().arc, &seed)[..]
            );
            // The public key is the one the seed gives, and it encapsulates.
            let public = &spki[spki.len() - public_len..];
            assert_eq!(public_of(&params(spec).unwrap(), &seed).unwrap(), public);
            let ek = EncapsulationKey::new(alg, public).unwrap();
            ek.encapsulate().unwrap();
            // Two pairs differ.
            assert_ne!(generate(spec).unwrap().0[..], private[..]);
        }
        // The DER of ML-KEM-768's SubjectPublicKeyInfo, head to tail.
        let (_, spki) = generate("ML_KEM_768").unwrap();
        assert_eq!(spki.len(), 1206);
        assert_eq!(
            spki[..22],
            [
                0x30, 0x82, 0x04, 0xb2, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03,
                0x04, 0x04, 0x02, 0x03, 0x82, 0x04, 0xa1, 0x00
            ]
        );
        assert!(!is_ml_kem("ECC_NIST_P256") && is_ml_kem("ML_KEM_512"));
    }
}
