//! The words of AWS's key model as types, and the key's tag: a value is parsed once where it
//! enters (a store row, a request) and compared as a type everywhere else, so a misspelt state
//! is a compile error, not a branch that never runs. Written back, each is the exact string
//! AWS uses.
//!
//! A leaf module: the store, the domain and the API all read it, and it reads none of them.

use std::fmt;
use std::str::FromStr;

/// An enum of AWS words: the type, `ALL` (in botocore's order), `as_str` (the word as AWS
/// writes it), `FromStr` (only those words, exactly), `Display` and `Serialize` (the word).
/// As rustls's `enum_builder!` does for protocol constants.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal,)+ }) => {
        vocabulary! { $(#[$doc])* $name { $($variant = $word,)+ } message_order [$($word,)+] }
    };
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal,)+ } message_order [$($listed:literal,)+]) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            /// Every value, in the order of botocore's enum.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Every word, in the same order (a validator's list of allowed values).
            pub const WORDS: &'static [&'static str] = &[$($word,)+];

            /// The word as AWS writes it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl Vocabulary for $name {
            const WORDS: &'static [&'static str] = $name::WORDS;
            const MESSAGE_ORDER: &'static [&'static str] = &[$($listed,)+];
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|k| k.as_str() == s)
                    .ok_or_else(|| UnknownWord {
                        what: stringify!($name),
                        word: s.to_string(),
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

/// A type of AWS words (made by `vocabulary!`): what a request member of that type may be.
pub trait Vocabulary: Copy + FromStr<Err = UnknownWord> + fmt::Display + 'static {
    /// Every word, in botocore's order.
    const WORDS: &'static [&'static str];
    /// Every word, in the order AWS's "enum value set" message lists them: botocore's, unless a
    /// recorded AWS answer lists them otherwise.
    const MESSAGE_ORDER: &'static [&'static str];
}

/// A word that is not one of the type's (`what`: `KeyState`, `Origin`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a valid {}", self.word, self.what)
    }
}

impl std::error::Error for UnknownWord {}

vocabulary! {
    /// A key's state, as AWS's key-state table names it
    /// (<https://docs.aws.amazon.com/kms/latest/developerguide/key-state.html>).
    KeyState {
        Creating = "Creating",
        Enabled = "Enabled",
        Disabled = "Disabled",
        PendingDeletion = "PendingDeletion",
        PendingImport = "PendingImport",
        PendingReplicaDeletion = "PendingReplicaDeletion",
        Unavailable = "Unavailable",
        Updating = "Updating",
    }
}

vocabulary! {
    /// Where a key's material comes from (botocore's `OriginType`).
    Origin {
        AwsKms = "AWS_KMS",
        External = "EXTERNAL",
        AwsCloudHsm = "AWS_CLOUDHSM",
        ExternalKeyStore = "EXTERNAL_KEY_STORE",
    }
}

vocabulary! {
    /// What a key is for (botocore's `KeyUsageType`).
    KeyUsage {
        SignVerify = "SIGN_VERIFY",
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        KeyAgreement = "KEY_AGREEMENT",
        EncapsulateDecapsulate = "ENCAPSULATE_DECAPSULATE",
    }
    // As AWS answered CreateKey with an unknown KeyUsage (recorded before KEY_AGREEMENT and
    // ENCAPSULATE_DECAPSULATE were added; they are put last).
    message_order [
        "ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT",
        "ENCAPSULATE_DECAPSULATE",
    ]
}

vocabulary! {
    /// A key's spec (botocore's `KeySpec`; the deprecated `CustomerMasterKeySpec` is its first
    /// 13 words).
    KeySpec {
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        Sm2 = "SM2",
        MlDsa44 = "ML_DSA_44",
        MlDsa65 = "ML_DSA_65",
        MlDsa87 = "ML_DSA_87",
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
        MlKem512 = "ML_KEM_512",
        MlKem768 = "ML_KEM_768",
        MlKem1024 = "ML_KEM_1024",
    }
    // As AWS answered CreateKey with an unknown KeySpec (recorded before SM2, ML-DSA and
    // Ed25519 were added; they are put last, in botocore's order).
    message_order [
        "RSA_2048", "ECC_NIST_P384", "ECC_NIST_P256", "ECC_NIST_P521", "HMAC_384", "RSA_3072",
        "ECC_SECG_P256K1", "RSA_4096", "SYMMETRIC_DEFAULT", "HMAC_256", "HMAC_224", "HMAC_512",
        "SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519", "ML_KEM_512",
        "ML_KEM_768", "ML_KEM_1024",
    ]
}

vocabulary! {
    /// An encryption algorithm (botocore's `EncryptionAlgorithmSpec`).
    EncryptionAlgorithmSpec {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        Sm2Pke = "SM2PKE",
    }
}

vocabulary! {
    /// A signing algorithm (botocore's `SigningAlgorithmSpec`).
    SigningAlgorithmSpec {
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        EcdsaSha256 = "ECDSA_SHA_256",
        EcdsaSha384 = "ECDSA_SHA_384",
        EcdsaSha512 = "ECDSA_SHA_512",
        Sm2Dsa = "SM2DSA",
        MlDsaShake256 = "ML_DSA_SHAKE_256",
        Ed25519Sha512 = "ED25519_SHA_512",
        Ed25519PhSha512 = "ED25519_PH_SHA_512",
    }
}

vocabulary! {
    /// What `Sign` and `Verify` are given (botocore's `MessageType`).
    MessageType {
        Raw = "RAW",
        Digest = "DIGEST",
        ExternalMu = "EXTERNAL_MU",
    }
}

vocabulary! {
    /// A MAC algorithm (botocore's `MacAlgorithmSpec`).
    MacAlgorithmSpec {
        HmacSha224 = "HMAC_SHA_224",
        HmacSha256 = "HMAC_SHA_256",
        HmacSha384 = "HMAC_SHA_384",
        HmacSha512 = "HMAC_SHA_512",
    }
    // As AWS answered GenerateMac with an unknown MacAlgorithm (recorded).
    message_order ["HMAC_SHA_384", "HMAC_SHA_256", "HMAC_SHA_224", "HMAC_SHA_512",]
}

vocabulary! {
    /// A key encapsulation algorithm (botocore's `EncapsulationAlgorithmSpec`).
    EncapsulationAlgorithmSpec {
        MlKem = "ML_KEM",
    }
}

vocabulary! {
    /// A key agreement algorithm (botocore's `KeyAgreementAlgorithmSpec`).
    KeyAgreementAlgorithmSpec {
        Ecdh = "ECDH",
    }
}

vocabulary! {
    /// How imported key material is wrapped (botocore's `AlgorithmSpec`).
    AlgorithmSpec {
        RsaesPkcs1V15 = "RSAES_PKCS1_V1_5",
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        RsaAesKeyWrapSha1 = "RSA_AES_KEY_WRAP_SHA_1",
        RsaAesKeyWrapSha256 = "RSA_AES_KEY_WRAP_SHA_256",
        Sm2Pke = "SM2PKE",
    }
}

vocabulary! {
    /// The key that wraps imported key material (botocore's `WrappingKeySpec`).
    WrappingKeySpec {
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        Sm2 = "SM2",
    }
}

vocabulary! {
    /// Whether imported key material expires (botocore's `ExpirationModelType`).
    ExpirationModelType {
        KeyMaterialExpires = "KEY_MATERIAL_EXPIRES",
        KeyMaterialDoesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE",
    }
}

vocabulary! {
    /// A data key's length by name (botocore's `DataKeySpec`).
    DataKeySpec {
        Aes256 = "AES_256",
        Aes128 = "AES_128",
    }
}

impl KeySpec {
    /// `HMAC_224` … `HMAC_512`.
    pub fn is_hmac(self) -> bool {
        self.as_str().starts_with("HMAC_")
    }

    /// `RSA_2048` … `RSA_4096`.
    pub fn is_rsa(self) -> bool {
        self.as_str().starts_with("RSA_")
    }

    /// The elliptic-curve specs (`ECC_…`).
    pub fn is_ecc(self) -> bool {
        self.as_str().starts_with("ECC_")
    }
}

impl KeyState {
    /// The state in a sentence (`pending deletion`), as AWS's messages have it.
    pub fn words(self) -> String {
        let mut out = String::new();
        for (i, c) in self.as_str().chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push(' ');
            }
            out.extend(c.to_lowercase());
        }
        out
    }
}

/// A key's tag (`TagKey`, `TagValue`), as `TagResource` and `ListResourceTags` carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order an error message lists a type's words in holds every word once, and no other.
    #[test]
    fn message_orders_are_the_words_reordered() {
        fn same<T: Vocabulary>() {
            let mut a = T::WORDS.to_vec();
            let mut b = T::MESSAGE_ORDER.to_vec();
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
        same::<MacAlgorithmSpec>();
        same::<SigningAlgorithmSpec>();
        same::<EncryptionAlgorithmSpec>();
        same::<KeySpec>();
        same::<KeyUsage>();
    }

    #[test]
    fn every_state_reads_back_as_written_and_nothing_else_reads() {
        for &k in KeyState::ALL {
            assert_eq!(k.as_str().parse::<KeyState>(), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for &o in Origin::ALL {
            assert_eq!(o.as_str().parse::<Origin>(), Ok(o));
        }
        for &k in KeySpec::ALL {
            assert_eq!(k.as_str().parse::<KeySpec>(), Ok(k));
        }
        assert!(KeySpec::Hmac384.is_hmac() && KeySpec::Rsa4096.is_rsa());
        assert!(KeySpec::EccSecgP256k1.is_ecc() && !KeySpec::SymmetricDefault.is_ecc());
        for &u in KeyUsage::ALL {
            assert_eq!(u.as_str().parse::<KeyUsage>(), Ok(u));
        }
        fn reads_back<T>(all: &[T])
        where
            T: Copy + PartialEq + std::fmt::Debug + std::str::FromStr + std::fmt::Display,
            T::Err: std::fmt::Debug,
        {
            for &w in all {
                assert_eq!(w.to_string().parse::<T>().unwrap(), w);
            }
        }
        reads_back(EncryptionAlgorithmSpec::ALL);
        reads_back(SigningAlgorithmSpec::ALL);
        reads_back(MessageType::ALL);
        reads_back(MacAlgorithmSpec::ALL);
        reads_back(KeyAgreementAlgorithmSpec::ALL);
        reads_back(AlgorithmSpec::ALL);
        reads_back(WrappingKeySpec::ALL);
        reads_back(ExpirationModelType::ALL);
        reads_back(DataKeySpec::ALL);
        for bad in [
            "",
            "enabled",
            "ENABLED",
            "Enabled ",
            "PendingDeletion\0",
            "Deleted",
        ] {
            assert!(bad.parse::<KeyState>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "aws_kms".parse::<Origin>().unwrap_err().to_string(),
            "\"aws_kms\" is not a valid Origin"
        );
        assert_eq!(
            KeyState::PendingReplicaDeletion.words(),
            "pending replica deletion"
        );
    }
}
