//! Ciphertext blob, format v1.
//!
//! ```text
//! offset  size  field
//!      0     1  format version, 0x01
//!      1    16  key id (the KMS key's UUID, big-endian bytes)
//!     17     4  key material version (u32, big-endian)
//!     21    12  IV (random, 96 bits)
//!     33     n  AES-256-GCM ciphertext (n = plaintext length)
//!   33+n    16  GCM tag
//! ```
//! The AAD is the 33 header bytes followed by the canonical encoding of the encryption context
//! (see [`encode_context`]). Every byte of the blob is therefore authenticated: the header by
//! the AAD, the rest by GCM itself. Overhead is 49 bytes, so a 4096-byte plaintext gives a
//! 4145-byte blob, under AWS's 6144-byte limit.

use std::collections::BTreeMap;
use uuid::Uuid;

pub const FORMAT_V1: u8 = 0x01;

/// A blob of a key in an external key store: a v1 blob encrypted again by the XKS proxy.
///
/// ```text
/// offset  size  field
///      0     1  format, 0x02
///      1    16  key id
///     17     1  m: length of the proxy's ciphertextMetadata (at most 20)
///     18     m  ciphertextMetadata
///   18+m     1  v: length of the proxy's IV (12 or 16)
///   19+m     v  IV
/// 19+m+v    16  the proxy's authentication tag
/// 35+m+v     n  the proxy's ciphertext of the v1 blob
/// ```
/// The proxy's AAD is the first 17 bytes: the blob cannot be moved to another key.
pub const FORMAT_XKS: u8 = 0x02;

/// An external key store's outer layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outer {
    pub key_id: Uuid,
    pub metadata: Vec<u8>,
    pub iv: Vec<u8>,
    pub tag: Vec<u8>,
    pub body: Vec<u8>,
}

impl Outer {
    /// The proxy's AAD for a key's outer layer.
    pub fn aad(key_id: Uuid) -> Vec<u8> {
        let mut a = vec![FORMAT_XKS];
        a.extend_from_slice(key_id.as_bytes());
        a
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Outer::aad(self.key_id);
        out.push(self.metadata.len() as u8);
        out.extend_from_slice(&self.metadata);
        out.push(self.iv.len() as u8);
        out.extend_from_slice(&self.iv);
        out.extend_from_slice(&self.tag);
        out.extend_from_slice(&self.body);
        out
    }

    /// `None` for anything that is not a well-formed outer layer.
    pub fn parse(blob: &[u8]) -> Option<Outer> {
        if blob.len() < 18 || blob[0] != FORMAT_XKS {
            return None;
        }
        let key_id = Uuid::from_slice(&blob[1..17]).ok()?;
        let m = blob[17] as usize;
        let rest = blob.get(18..)?;
        let (metadata, rest) = (rest.get(..m)?, rest.get(m..)?);
        let v = *rest.first()? as usize;
        if m > 20 || !(v == 12 || v == 16) {
            return None;
        }
        let rest = rest.get(1..)?;
        let (iv, rest) = (rest.get(..v)?, rest.get(v..)?);
        let (tag, body) = (rest.get(..16)?, rest.get(16..)?);
        if body.len() < OVERHEAD {
            return None;
        }
        Some(Outer {
            key_id,
            metadata: metadata.to_vec(),
            iv: iv.to_vec(),
            tag: tag.to_vec(),
            body: body.to_vec(),
        })
    }
}
pub const HEADER_LEN: usize = 1 + 16 + 4 + 12;
pub const TAG_LEN: usize = 16;
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key_id: Uuid,
    pub material_version: u32,
    pub iv: [u8; 12],
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = FORMAT_V1;
        out[1..17].copy_from_slice(self.key_id.as_bytes());
        out[17..21].copy_from_slice(&self.material_version.to_be_bytes());
        out[21..33].copy_from_slice(&self.iv);
        out
    }
}

/// Split a blob into its header and the GCM ciphertext-with-tag. `None` for anything that is
/// not a well-formed v1 blob.
pub fn parse(blob: &[u8]) -> Option<(Header, &[u8])> {
    if blob.len() < OVERHEAD || blob[0] != FORMAT_V1 {
        return None;
    }
    let key_id = Uuid::from_slice(&blob[1..17]).ok()?;
    let material_version = u32::from_be_bytes(blob[17..21].try_into().ok()?);
    let iv: [u8; 12] = blob[21..33].try_into().ok()?;
    Some((
        Header {
            key_id,
            material_version,
            iv,
        },
        &blob[HEADER_LEN..],
    ))
}

/// Canonical encoding of an encryption context: the number of pairs, then each pair sorted by
/// key (bytewise), every string prefixed by its length; all integers u32 big-endian. Length
/// prefixes make the encoding injective, so no two different contexts encode alike.
pub fn encode_context(ctx: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        4 + ctx
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&(ctx.len() as u32).to_be_bytes());
    for (k, v) in ctx {
        out.extend_from_slice(&(k.len() as u32).to_be_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// AAD = header bytes || canonical context.
pub fn aad(header: &Header, ctx: &BTreeMap<String, String>) -> Vec<u8> {
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(&encode_context(ctx));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = Header {
            key_id: Uuid::new_v4(),
            material_version: 7,
            iv: [9; 12],
        };
        let mut blob = h.to_bytes().to_vec();
        blob.extend_from_slice(&[0u8; 20]);
        let (p, rest) = parse(&blob).unwrap();
        assert_eq!(p, h);
        assert_eq!(rest.len(), 20);
    }

    #[test]
    fn short_or_unknown_blobs_are_refused() {
        assert!(parse(&[1u8; OVERHEAD - 1]).is_none());
        let mut b = vec![1u8; OVERHEAD];
        b[0] = 2;
        assert!(parse(&b).is_none());
    }

    #[test]
    fn context_encoding_is_injective_on_boundaries() {
        let a: BTreeMap<_, _> = [("ab".to_string(), "c".to_string())].into();
        let b: BTreeMap<_, _> = [("a".to_string(), "bc".to_string())].into();
        assert_ne!(encode_context(&a), encode_context(&b));
        let e: BTreeMap<String, String> = BTreeMap::new();
        assert_eq!(encode_context(&e), vec![0, 0, 0, 0]);
    }
}
