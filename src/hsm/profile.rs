//! What differs between tokens, in one place per vendor. The service picks mechanisms from what
//! the token reports at start-up; a profile adds what a mechanism list cannot say: which return
//! codes mean "this ciphertext does not authenticate", whether the vendor's
//! `CKM_AES_KEY_WRAP_PAD` is RFC 5649, and the vendor's known limits. `hsm/README.md` and
//! `hsm/<vendor>.md` are the operator's side of the same facts.

use cryptoki::error::RvError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    SoftHsm2,
    Kryoptic,
    Luna,
    YubiHsm2,
    NShield,
    /// Any other token: standard PKCS#11 behaviour is assumed.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub vendor: Vendor,
    pub name: &'static str,
    /// Whether the vendor's `CKM_AES_KEY_WRAP_PAD` (0x210A) is RFC 5649. PKCS#11 2.40 defines
    /// 0x210A as RFC 3394 over PKCS#7-padded input; SoftHSM2 implements RFC 5649 under it. The
    /// start-up probe checks the actual output against RFC 5649 where the token lets it.
    pub pad_is_rfc5649: bool,
    /// Return codes that mean a decryption's input does not authenticate or decode (a failed
    /// GCM tag check, a bad RSA-OAEP block), as opposed to a token fault.
    pub bad_ciphertext: &'static [RvError],
    /// Whether a private key object shows `CKA_EC_POINT` (the import path works it out in the
    /// token either way).
    pub ec_point_on_private_key: bool,
    /// Stated limits, logged at start-up.
    pub notes: &'static str,
}

/// Codes every conformant token uses for input that does not decrypt.
const STANDARD_BAD_CIPHERTEXT: &[RvError] = &[
    RvError::EncryptedDataInvalid,
    RvError::EncryptedDataLenRange,
];

/// Kryoptic reports a bad RSA-OAEP block as `CKR_DEVICE_ERROR` (an OpenSSL failure inside
/// the module), which must not be taken for a lost token there.
const KRYOPTIC_BAD_CIPHERTEXT: &[RvError] = &[
    RvError::DeviceError,
    RvError::EncryptedDataInvalid,
    RvError::EncryptedDataLenRange,
];

/// SoftHSM2 reports a failed GCM tag check (and a bad OAEP block) as `CKR_GENERAL_ERROR`.
const SOFTHSM_BAD_CIPHERTEXT: &[RvError] = &[
    RvError::GeneralError,
    RvError::EncryptedDataInvalid,
    RvError::EncryptedDataLenRange,
];

impl Profile {
    /// The profile of a token, from its `CK_TOKEN_INFO` manufacturer and model and the
    /// module's `CK_INFO` manufacturer.
    pub fn detect(token_manufacturer: &str, model: &str, library_manufacturer: &str) -> Profile {
        let all = format!("{token_manufacturer} {model} {library_manufacturer}").to_lowercase();
        let vendor = if all.contains("softhsm") {
            Vendor::SoftHsm2
        } else if all.contains("kryoptic") {
            Vendor::Kryoptic
        } else if all.contains("safenet") || all.contains("luna") || all.contains("thales") {
            Vendor::Luna
        } else if all.contains("yubico") || all.contains("yubihsm") {
            Vendor::YubiHsm2
        } else if all.contains("ncipher") || all.contains("nshield") || all.contains("entrust") {
            Vendor::NShield
        } else {
            Vendor::Other
        };
        Profile::of(vendor)
    }

    pub fn of(vendor: Vendor) -> Profile {
        match vendor {
            Vendor::SoftHsm2 => Profile {
                vendor,
                name: "SoftHSM2",
                pad_is_rfc5649: true,
                bad_ciphertext: SOFTHSM_BAD_CIPHERTEXT,
                ec_point_on_private_key: false,
                notes: "development and test token: keys are files protected by the PIN; no RSA-OAEP with SHA-256, no CKM_RSA_AES_KEY_WRAP, Ed25519 keys cannot be wrapped (2.6.1)",
            },
            Vendor::Kryoptic => Profile {
                vendor,
                name: "Kryoptic",
                pad_is_rfc5649: false,
                bad_ciphertext: KRYOPTIC_BAD_CIPHERTEXT,
                ec_point_on_private_key: false,
                notes: "software token (Rust, OpenSSL primitives): for tests and development; built against OpenSSL 3.0 it has no EdDSA and no secp256k1",
            },
            Vendor::Luna => Profile {
                vendor,
                name: "Thales Luna",
                pad_is_rfc5649: false,
                bad_ciphertext: STANDARD_BAD_CIPHERTEXT,
                ec_point_on_private_key: false,
                notes: "not tested here; in FIPS mode the partition may refuse caller-chosen AES-GCM IVs and plaintext key import (the RFC 5649 probe is then skipped)",
            },
            Vendor::YubiHsm2 => Profile {
                vendor,
                name: "YubiHSM 2",
                pad_is_rfc5649: false,
                bad_ciphertext: STANDARD_BAD_CIPHERTEXT,
                ec_point_on_private_key: false,
                notes: "not tested here; its PKCS#11 module has no RFC 5649 AES key wrap (it wraps with AES-CCM), so the service refuses it at start-up",
            },
            Vendor::NShield => Profile {
                vendor,
                name: "Entrust nShield",
                pad_is_rfc5649: false,
                bad_ciphertext: STANDARD_BAD_CIPHERTEXT,
                ec_point_on_private_key: false,
                notes: "not tested here; keys must be usable by the module's preloaded OCS or softcard, and session objects count against module memory",
            },
            Vendor::Other => Profile {
                vendor,
                name: "unknown token",
                pad_is_rfc5649: false,
                bad_ciphertext: STANDARD_BAD_CIPHERTEXT,
                ec_point_on_private_key: false,
                notes: "no profile: standard PKCS#11 behaviour is assumed",
            },
        }
    }

    /// Whether a failed decryption with this code means the input is bad (the caller's
    /// `InvalidCiphertextException`) rather than a token fault.
    pub fn is_bad_ciphertext(&self, rv: RvError) -> bool {
        self.bad_ciphertext.contains(&rv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_are_told_apart_by_their_token_info() {
        let v = |m: &str, model: &str, lib: &str| Profile::detect(m, model, lib).vendor;
        assert_eq!(
            v("SoftHSM project", "SoftHSM v2", "SoftHSM"),
            Vendor::SoftHsm2
        );
        assert_eq!(v("Kryoptic", "v1", "Kryoptic project"), Vendor::Kryoptic);
        assert_eq!(v("Safenet, Inc.", "LunaSA 7", "Safenet"), Vendor::Luna);
        assert_eq!(
            v("Yubico (www.yubico.com)", "YubiHSM", "Yubico"),
            Vendor::YubiHsm2
        );
        assert_eq!(v("nCipher Corp. Ltd", "", "nCipher"), Vendor::NShield);
        assert_eq!(v("Acme", "X", "Acme"), Vendor::Other);
        // A failed GCM tag check is a bad ciphertext on SoftHSM2 only when it says
        // CKR_GENERAL_ERROR; elsewhere that code is a token fault.
        assert!(Profile::of(Vendor::SoftHsm2).is_bad_ciphertext(RvError::GeneralError));
        assert!(!Profile::of(Vendor::Luna).is_bad_ciphertext(RvError::GeneralError));
        assert!(Profile::of(Vendor::Luna).is_bad_ciphertext(RvError::EncryptedDataInvalid));
    }
}
