//! Row MACs: the metadata MAC keys (versions, rotation, loading, destroying), the stored MAC's
//! form (`2 || version || HMAC` above version 1) and computing and checking MACs over rows.
//! Separate from the root keys (`service_keys.rs`) because MAC keys rotate on their own and
//! every stored row's seal depends on this format.

use super::*;

pub const MAC_KEY_LABEL: &str = "kms-metadata-mac-key-v1";

/// Label of the metadata MAC key of a given version (version 1 is [`MAC_KEY_LABEL`]).
pub fn mac_key_label(version: u32) -> String {
    format!("kms-metadata-mac-key-v{version}")
}

/// First byte of a MAC made with a MAC key above version 1: `2 || version (4 bytes,
/// big-endian) || HMAC-SHA256` (37 bytes). A MAC of 32 bytes is version 1's, as every MAC was
/// before MAC keys had versions (and as they stay while version 1 is current, so a node of an
/// older release reads them during a rolling upgrade).
const MAC_TAG: u8 = 2;

const HMAC_LEN: usize = 32;

/// The MAC key version and the HMAC of a stored MAC, if it has either form.
pub fn mac_parts(mac: &[u8]) -> Option<(u32, &[u8])> {
    match mac.len() {
        HMAC_LEN => Some((1, mac)),
        37 if mac[0] == MAC_TAG => Some((
            u32::from_be_bytes(mac[1..5].try_into().expect("4 bytes")),
            &mac[5..],
        )),
        _ => None,
    }
}

/// A MAC as stored: the HMAC under MAC key `version`, tagged with the version above 1.
fn tagged_mac(version: u32, hmac: Vec<u8>) -> Vec<u8> {
    if version == 1 {
        return hmac;
    }
    let mut out = Vec::with_capacity(5 + hmac.len());
    out.push(MAC_TAG);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&hmac);
    out
}

/// How many verified row MACs [`VerifiedMacs`] keeps per generation.
const VERIFIED_MACS: usize = 1 << 16;

/// Row MACs the token has verified, each as a digest of the data and the MAC it verified: a
/// row read again (each page of a list call reads every row of the page) is not sent to the
/// token again, so a caller cannot make one call cost the token thousands of HMACs. Bounded:
/// two generations of at most [`VERIFIED_MACS`] digests; when the newer fills, the older is
/// dropped. Only matches are kept, and a hit counts only while the token still holds the MAC
/// key version the MAC names (a destroyed key's MACs are refused at once, as before).
#[derive(Default)]
pub(super) struct VerifiedMacs {
    newer: std::collections::HashSet<[u8; 32]>,
    older: std::collections::HashSet<[u8; 32]>,
}

impl VerifiedMacs {
    fn contains(&self, d: &[u8; 32]) -> bool {
        self.newer.contains(d) || self.older.contains(d)
    }

    fn insert(&mut self, d: [u8; 32]) {
        if self.newer.len() >= VERIFIED_MACS {
            self.older = std::mem::take(&mut self.newer);
        }
        self.newer.insert(d);
    }
}

/// What [`VerifiedMacs`] keeps of a verified (data, MAC): SHA-256 over the data's length, the
/// data and the MAC as stored (its version tag included). Finding another pair with the same
/// digest is finding a SHA-256 collision.
fn verified_digest(data: &[u8], mac: &[u8]) -> [u8; 32] {
    let mut c = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    c.update(&(data.len() as u64).to_be_bytes());
    c.update(data);
    c.update(mac);
    c.finish().as_ref().try_into().expect("32 bytes")
}

/// The MAC keys of versions below `current` still in the token (each checked as a MAC key
/// must be).
pub(super) fn older_macs(s: &Session, current: u32) -> Result<Vec<(u32, ObjectHandle)>, HsmError> {
    let mut out = Vec::new();
    for v in 1..current {
        let label = mac_key_label(v);
        if let Some(h) = find_one(s, &label)? {
            verify_service_key(s, h, &label, AttributeType::Sign, false)?;
            out.push((v, h));
        }
    }
    Ok(out)
}

impl Tok<'_> {
    /// The MAC key that MACs new rows: (version, handle).
    fn mac(&self) -> Result<(u32, ObjectHandle), HsmError> {
        self.inner
            .mac
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: MAC_KEY_LABEL.into(),
            })
    }

    /// The MAC key of `version`, if the token still holds it.
    fn mac_of(&self, version: u32) -> Result<Option<ObjectHandle>, HsmError> {
        match self.mac()? {
            (v, h) if v == version => Ok(Some(h)),
            _ => Ok(self
                .inner
                .older_macs
                .lock()
                .unwrap()
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, h)| *h)),
        }
    }

    /// A row MAC of `data` under the current MAC key, as stored.
    pub(super) fn row_mac(&self, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let (version, key) = self.mac()?;
        Ok(tagged_mac(
            version,
            self.sign_once(&Mechanism::Sha256Hmac, key, data)?,
        ))
    }
}

impl Hsm {
    /// HMAC-SHA256 in the token with an unwrapped secret.
    pub async fn hmac_sha256(
        &self,
        key: Arc<KeyHandle>,
        data: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run_fast(move |s| {
            s.sign_once(&Mechanism::Sha256Hmac, s.obj(&key)?, &data)
                .map(Zeroizing::new)
        })
        .await
    }

    /// MAC over a database row, computed with the token-held, non-extractable MAC key that
    /// is current (tagged with its version above 1: see [`mac_parts`]).
    pub async fn row_mac(&self, data: Vec<u8>) -> Result<Vec<u8>, HsmError> {
        self.run_fast(move |s| s.row_mac(&data)).await
    }

    /// Whether `mac` is the row MAC of `data` (computed in the token under the MAC key version
    /// the MAC names, compared in constant time): the one check behind every row the service
    /// refuses to trust unverified. A MAC under a MAC key the token no longer holds (destroyed
    /// after a rotation) never matches.
    /// A match is remembered ([`VerifiedMacs`]): the same data and MAC again is answered
    /// without the token while the MAC key version stays held.
    pub async fn row_mac_matches(&self, data: Vec<u8>, mac: &[u8]) -> Result<bool, HsmError> {
        let Some((version, hmac)) = mac_parts(mac) else {
            return Ok(false);
        };
        let digest = verified_digest(&data, mac);
        let seen = self.inner.verified_macs.lock().unwrap().contains(&digest);
        crate::metrics::cache("row_mac", seen);
        if seen && self.holds_mac_version(version) {
            return Ok(true);
        }
        let hmac = hmac.to_vec();
        let matches = self
            .run_fast(move |s| {
                let Some(key) = s.mac_of(version)? else {
                    tracing::warn!(
                        mac_version = version,
                        "a row is MAC'd under a MAC key the token no longer holds; refusing it"
                    );
                    return Ok(false);
                };
                let expect = s.sign_once(&Mechanism::Sha256Hmac, key, &data)?;
                Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
                    expect.as_slice(),
                    hmac.as_slice(),
                )))
            })
            .await?;
        if matches {
            self.inner.verified_macs.lock().unwrap().insert(digest);
        }
        Ok(matches)
    }

    /// The version of the MAC key that MACs new rows.
    pub fn mac_version(&self) -> Result<u32, HsmError> {
        self.inner
            .mac
            .lock()
            .unwrap()
            .map(|(v, _)| v)
            .ok_or(HsmError::ServiceKeyMissing {
                label: MAC_KEY_LABEL.into(),
            })
    }

    /// Whether the token holds MAC key `version` (current, or older and not destroyed); no
    /// allocation: asked on every remembered row MAC.
    fn holds_mac_version(&self, version: u32) -> bool {
        self.inner
            .mac
            .lock()
            .unwrap()
            .is_some_and(|(v, _)| v == version)
            || self
                .inner
                .older_macs
                .lock()
                .unwrap()
                .iter()
                .any(|(v, _)| *v == version)
    }

    /// The MAC key versions the token holds (the current one and older ones not destroyed).
    pub fn mac_versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .inner
            .older_macs
            .lock()
            .unwrap()
            .iter()
            .map(|(v, _)| *v)
            .collect();
        v.extend(self.mac_version().ok());
        v.sort_unstable();
        v
    }

    pub(super) fn held_mac_version(&self) -> u32 {
        self.mac_version().unwrap_or(1)
    }

    /// Create MAC key `version` in the token (and copy it to every token of a pool) and make it
    /// the one new row MACs are made with; older versions stay for the rows MAC'd under them.
    /// Returns whether it was created (false: it was there).
    pub fn add_mac_key(&self, version: u32) -> Result<bool, HsmError> {
        let clonable = self.is_pool();
        let label = mac_key_label(version);
        let created = {
            let s = self.pinned();
            match find_one(&s, &label)? {
                Some(_) => false,
                None => {
                    ck(s.generate_key(
                        &Mechanism::GenericSecretKeyGen,
                        &[
                            service_key_template(ServiceKey::Mac, &label, clonable),
                            vec![
                                Attribute::KeyType(KeyType::GENERIC_SECRET),
                                Attribute::ValueLen(32.into()),
                            ],
                        ]
                        .concat(),
                    ))?;
                    true
                }
            }
        };
        if clonable {
            let root = self.root_version()?;
            self.replicate_service_keys_with(root, version)?;
        }
        self.load_mac_key(version)?;
        Ok(created)
    }

    /// The newest MAC key version the token holds from `version` up (a database that records
    /// an older current version than the token holds cannot move new MACs back under an
    /// older key: the token, not the database, says which keys exist).
    pub fn newest_mac_key_from(&self, version: u32) -> Result<u32, HsmError> {
        let s = self.pinned();
        let mut v = version.max(1);
        while find_one(&s, &mac_key_label(v + 1))?.is_some() {
            v += 1;
        }
        Ok(v)
    }

    /// Use MAC key `version` for new row MACs from now on (another process rotated it): it
    /// must be in the token as a service MAC key must be; older versions stay for verifying.
    pub fn load_mac_key(&self, version: u32) -> Result<(), HsmError> {
        let s = self.pinned();
        let label = mac_key_label(version);
        let mac = find_one(&s, &label)?.ok_or(HsmError::ServiceKeyMissing {
            label: label.clone(),
        })?;
        verify_service_key(&s, mac, &label, AttributeType::Sign, false)?;
        *self.inner.older_macs.lock().unwrap() = older_macs(&s, version)?;
        *self.inner.mac.lock().unwrap() = Some((version, mac));
        Ok(())
    }

    /// Stop verifying with MAC key `version` (an older one, destroyed by another process): a
    /// MAC made under it is refused from now on, even if this process's handle still works.
    pub fn forget_mac_key(&self, version: u32) {
        self.inner
            .older_macs
            .lock()
            .unwrap()
            .retain(|(v, _)| *v != version);
    }

    /// Destroy MAC key `version` (not the current one) in the token and every token of a
    /// pool: a row still MAC'd under it is refused from then on, so the caller first makes
    /// sure none is left. Returns the labels of the tokens it was destroyed in.
    pub fn destroy_mac_key(&self, version: u32) -> Result<Vec<String>, HsmError> {
        if self.mac_version()? == version {
            return Err(HsmError::Other(format!(
                "MAC key v{version} is the current MAC key; rotate to a new one first"
            )));
        }
        let label = mac_key_label(version);
        let done = self.destroy_everywhere(&label)?;
        self.inner
            .older_macs
            .lock()
            .unwrap()
            .retain(|(v, _)| *v != version);
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_names_its_key_version() {
        let hmac = vec![9u8; 32];
        assert_eq!(mac_parts(&hmac), Some((1, hmac.as_slice())));
        assert_eq!(
            tagged_mac(1, hmac.clone()),
            hmac,
            "version 1 stays untagged"
        );
        let v3 = tagged_mac(3, hmac.clone());
        assert_eq!(v3.len(), 37);
        assert_eq!(mac_parts(&v3), Some((3, hmac.as_slice())));
        // Tags order by version, bytewise (the stores select older MACs that way).
        assert!(tagged_mac(2, hmac.clone())[..5] < v3[..5]);
        assert!(tagged_mac(255, hmac.clone())[..5] < tagged_mac(256, hmac.clone())[..5]);
        assert_eq!(mac_parts(&v3[1..]), None);
        assert_eq!(mac_parts(&[]), None);
        let mut wrong = v3.clone();
        wrong[0] = 3;
        assert_eq!(mac_parts(&wrong), None);
    }
}
