//! The service as an External Key Store (XKS) proxy for AWS KMS: the cryptography behind the
//! proxy API's `GetKeyMetadata`, `Encrypt` and `Decrypt` (the `xks` front parses, authenticates
//! and maps errors). An operator maps each XKS key id to a symmetric encryption key of this
//! service by its ARN; the mapping is the authorization. AES-256-GCM in the token with a fresh
//! 96-bit IV, the GCM AAD as the specification builds it (`u16 len ‖ AAD ‖ u8 len ‖
//! ciphertextMetadata`), and the key's material version in the `ciphertextMetadata`, so a
//! rotated key still decrypts what it encrypted before.

use super::{keyid, Kms, KmsError, Result};
use crate::store::KeyRecord;
use crate::vocab::{KeySpec, KeyState, KeyUsage};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Why the proxy refuses a call on a key, in the specification's words.
#[derive(Debug, PartialEq, Eq)]
pub enum XksRefusal {
    /// `KeyNotFoundException`: no such key (or not a key this mapping may name).
    KeyNotFound,
    /// `InvalidStateException`: the key is disabled, pending deletion or unavailable.
    InvalidState,
    /// `InvalidKeyUsageException`: not a symmetric encryption key.
    InvalidKeyUsage,
    /// `InvalidCiphertextException`: the ciphertext, IV, AAD, metadata or tag do not verify.
    InvalidCiphertext,
}

/// A key's answer to `GetKeyMetadata`: `ENABLED` or `DISABLED`.
pub struct XksKeyStatus {
    pub enabled: bool,
}

/// What `Encrypt` returns: the GCM output, split as the specification asks.
pub struct XksCiphertext {
    pub ciphertext: Vec<u8>,
    pub metadata: Vec<u8>,
    pub iv: [u8; 12],
    pub tag: Vec<u8>,
}

/// The `ciphertextMetadata` of this proxy: a format byte and the material version.
const METADATA_FORMAT: u8 = 1;

fn metadata(version: i32) -> Vec<u8> {
    let mut m = vec![METADATA_FORMAT];
    m.extend_from_slice(&version.to_be_bytes());
    m
}

fn version_of(metadata: &[u8]) -> Option<i32> {
    match metadata {
        [METADATA_FORMAT, v @ ..] if v.len() == 4 => {
            Some(i32::from_be_bytes(v.try_into().ok()?)).filter(|v| *v > 0)
        }
        _ => None,
    }
}

/// The GCM AAD of the specification: `u16_be(len AAD) ‖ AAD ‖ u8(len meta) ‖ meta`.
pub fn gcm_aad(aad: &[u8], metadata: &[u8]) -> Option<Vec<u8>> {
    let (a, m) = (
        u16::try_from(aad.len()).ok()?,
        u8::try_from(metadata.len()).ok()?,
    );
    let mut out = Vec::with_capacity(3 + aad.len() + metadata.len());
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(aad);
    out.push(m);
    out.extend_from_slice(metadata);
    Some(out)
}

impl Kms {
    /// The mapped key `arn`, as the service wrote it (`record` verifies a key's sealed parts
    /// when it loads it, and serves it from the cache after), if it is a symmetric encryption
    /// key.
    async fn xks_key(&self, arn: &str) -> std::result::Result<Arc<KeyRecord>, XksRefusal> {
        let Ok(keyid::KeyRef::Arn {
            region,
            account,
            id,
        }) = keyid::parse(arn)
        else {
            return Err(XksRefusal::KeyNotFound);
        };
        let rec = match self.record(id.internal(&region)).await {
            Ok(Some(r)) if r.account_id == account && r.region == region => r,
            _ => return Err(XksRefusal::KeyNotFound),
        };
        if rec.key_spec != KeySpec::SymmetricDefault || rec.key_usage != KeyUsage::EncryptDecrypt {
            return Err(XksRefusal::InvalidKeyUsage);
        }
        Ok(rec)
    }

    /// `GetKeyMetadata`: the mapped key's status.
    pub async fn xks_key_status(&self, arn: &str) -> std::result::Result<XksKeyStatus, XksRefusal> {
        let rec = self.xks_key(arn).await?;
        Ok(XksKeyStatus {
            enabled: rec.key_state == KeyState::Enabled,
        })
    }

    /// `Encrypt`: AES-256-GCM under the key's current material.
    pub async fn xks_encrypt(
        &self,
        arn: &str,
        plaintext: Zeroizing<Vec<u8>>,
        aad: &[u8],
    ) -> Result<std::result::Result<XksCiphertext, XksRefusal>> {
        let rec = match self.xks_key(arn).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if rec.key_state != KeyState::Enabled {
            return Ok(Err(XksRefusal::InvalidState));
        }
        let (version, live) = match self.invocation(&rec).await {
            Ok(v) => v,
            Err(KmsError::InvalidState(_) | KmsError::Disabled(_)) => {
                return Ok(Err(XksRefusal::InvalidState))
            }
            Err(e) => return Err(e),
        };
        let meta = metadata(version);
        let Some(full_aad) = gcm_aad(aad, &meta) else {
            return Ok(Err(XksRefusal::InvalidCiphertext));
        };
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv)
            .map_err(|_| KmsError::Internal("system RNG failed".into()))?;
        let mut out = live
            .hsm
            .gcm_encrypt(live.handle.clone(), iv, full_aad, plaintext)
            .await?;
        let tag = out.split_off(out.len() - 16);
        Ok(Ok(XksCiphertext {
            ciphertext: out,
            metadata: meta,
            iv,
            tag,
        }))
    }

    /// `Decrypt`: the material version the metadata names, the tag checked in the token.
    pub async fn xks_decrypt(
        &self,
        arn: &str,
        ct: &XksCiphertext,
        aad: &[u8],
    ) -> Result<std::result::Result<Zeroizing<Vec<u8>>, XksRefusal>> {
        let rec = match self.xks_key(arn).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        if rec.key_state != KeyState::Enabled {
            return Ok(Err(XksRefusal::InvalidState));
        }
        let (Some(version), Some(full_aad)) =
            (version_of(&ct.metadata), gcm_aad(aad, &ct.metadata))
        else {
            return Ok(Err(XksRefusal::InvalidCiphertext));
        };
        let live = match self.live_material(&rec, version).await {
            Ok(Some(l)) => l,
            Ok(None) => return Ok(Err(XksRefusal::InvalidCiphertext)),
            Err(KmsError::InvalidState(_) | KmsError::Disabled(_)) => {
                return Ok(Err(XksRefusal::InvalidState))
            }
            Err(e) => return Err(e),
        };
        let mut body = ct.ciphertext.clone();
        body.extend_from_slice(&ct.tag);
        match live
            .hsm
            .gcm_decrypt(live.handle.clone(), ct.iv, full_aad, body)
            .await
        {
            Ok(pt) => Ok(Ok(pt)),
            Err(crate::hsm::HsmError::BadCiphertext) => Ok(Err(XksRefusal::InvalidCiphertext)),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gcm_aad_is_the_specifications() {
        assert_eq!(gcm_aad(b"", b"").unwrap(), vec![0, 0, 0]);
        assert_eq!(
            gcm_aad(b"ab", b"m").unwrap(),
            vec![0, 2, b'a', b'b', 1, b'm']
        );
        assert!(gcm_aad(&vec![0; 70_000], b"").is_none());
    }

    #[test]
    fn the_metadata_names_the_material_version() {
        assert_eq!(version_of(&metadata(7)), Some(7));
        assert_eq!(metadata(7).len(), 5);
        assert_eq!(version_of(b""), None);
        assert_eq!(version_of(&[2, 0, 0, 0, 1]), None);
        assert_eq!(version_of(&[1, 0, 0, 0, 0]), None);
    }
}
