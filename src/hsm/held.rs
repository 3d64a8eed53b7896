//! Private keys the token can generate but cannot wrap (Ed25519 on SoftHSM 2.6.1, which
//! answers `CKR_KEY_NOT_WRAPPABLE`): the one kind of customer key kept as a token object.
//!
//! The private key is generated as a token object — sensitive, never extractable, named by a
//! random `CKA_ID` and labelled with its key and version — and the database stores, where a
//! wrapped blob would be, a stand-in naming that `CKA_ID` (`held_blob`). The row's MAC binds the
//! stand-in to its key like any blob, so a row edited to name another key's object is refused
//! before the object is looked for. The object is destroyed when the key is deleted.
//!
//! What this costs, and why it is confined to these specs: the key exists only in this token
//! (a backup of the database alone cannot bring it back; the token's own backup must), a pool
//! of tokens could not fail over with it (so a pool does not offer it), and token objects are
//! slow to create and found by scanning. Root key rotation leaves such keys where they are.

use super::asym::{generate_pair_with, read_public, PairKind, PrivateUse, PublicKey};
use super::{ck, Hsm, HsmError, KeyHandle, Tok};
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How every held key object's label begins (`kms-key-<key id>-v<version>`).
pub const HELD_LABEL_PREFIX: &str = "kms-key-";

/// What stands in the database for a held key's wrapped blob: this prefix and the `CKA_ID`.
const STAND_IN: &[u8] = b"kms-token-object-v1:";

/// The stored stand-in for the key object with this `CKA_ID`.
pub fn held_blob(id: &[u8; 16]) -> Vec<u8> {
    let mut b = STAND_IN.to_vec();
    b.extend_from_slice(id);
    b
}

/// The `CKA_ID` a stored blob names, if it is a held key's stand-in (an RFC 5649 wrap never
/// begins with this ASCII prefix by more than chance, and the row MAC says which it is).
pub fn held_id(blob: &[u8]) -> Option<[u8; 16]> {
    blob.strip_prefix(STAND_IN)?.try_into().ok()
}

fn find_held(s: &Tok, id: &[u8; 16], label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    let found = ck(s.find_objects(&[
        Attribute::Token(true),
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::Id(id.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
    ]))?;
    match found[..] {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(HsmError::Other(format!(
            "the token holds {} key objects '{label}'; expected one",
            found.len()
        ))),
    }
}

/// A held key object just generated: destroyed (by the reaper thread, never blocking the
/// dropper) when this is dropped, unless [`NewHeld::keep`] was called once the key's rows are
/// written.
pub struct NewHeld {
    obj: ObjectHandle,
    generation: u64,
    reaper: std::sync::mpsc::Sender<super::Reap>,
    armed: bool,
}

impl NewHeld {
    /// The key's rows are written: the object stays.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for NewHeld {
    fn drop(&mut self) {
        if self.armed {
            let _ = self
                .reaper
                .send(super::Reap::Destroy(self.obj, self.generation));
        }
    }
}

impl Hsm {
    /// Whether keys of this kind are kept as token objects here: the token generates them but
    /// cannot wrap them, and it is a single token (a pool could not fail over with them).
    pub fn holds(&self, kind: PairKind) -> bool {
        kind == PairKind::Ed25519 && self.inner.ed25519_held.load(Ordering::Relaxed)
    }

    /// Generate a key pair whose private key stays in the token as a token object labelled
    /// `label`; returns the stand-in to store, the public key (its session object is
    /// destroyed), the root key version, and the new object's guard: dropped without
    /// [`NewHeld::keep`] — the key's rows not written, the request cancelled — it destroys the
    /// object. The guard is made inside the token call, so a caller cancelled before the call
    /// returns drops it too.
    pub async fn generate_held_key_pair(
        &self,
        kind: PairKind,
        use_: PrivateUse,
        label: String,
    ) -> Result<(Vec<u8>, PublicKey, u32, NewHeld), HsmError> {
        let mut id = [0u8; 16];
        aws_lc_rs::rand::fill(&mut id).map_err(|_| HsmError::Other("no randomness".into()))?;
        let reaper = self.inner.reaper.clone();
        let current = self.inner.generation.clone();
        // A prime search: its request's clock stops meanwhile (`crate::deadline`).
        let _generating = crate::deadline::generating();
        self.run(move |s| {
            let (version, _) = s.root()?;
            let (public, private) = generate_pair_with(
                s,
                kind,
                use_,
                &[
                    Attribute::Token(true),
                    Attribute::Id(id.to_vec()),
                    Attribute::Label(label.into_bytes()),
                ],
            )?;
            let guard = NewHeld {
                obj: private,
                generation: current.load(Ordering::Acquire),
                reaper,
                armed: true,
            };
            let read = read_public(s, kind, public);
            let destroyed = ck(s.destroy_object(public));
            match (read, destroyed) {
                (Ok(p), Ok(())) => Ok((held_blob(&id), p, version, guard)),
                // The guard destroys the private object.
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        })
        .await
    }

    /// The held private key a stand-in names, checked to carry `label`. The handle does not
    /// destroy the object when dropped.
    pub async fn held_private(
        &self,
        blob: Vec<u8>,
        label: String,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        let id = held_id(&blob).ok_or_else(|| HsmError::Other("not a held key".into()))?;
        self.run(move |s| {
            let obj = find_held(s, &id, &label)?.ok_or_else(|| {
                HsmError::Other(format!(
                    "the token no longer holds the key object '{label}'"
                ))
            })?;
            Ok(s.handle(obj, false))
        })
        .await
    }

    /// Every held key object in the token: (label, `CKA_ID`), for an operator's inventory.
    pub async fn held_objects(&self) -> Result<Vec<(String, Vec<u8>)>, HsmError> {
        use cryptoki::object::AttributeType;
        self.run(|s| {
            let mut out = Vec::new();
            for obj in ck(s.find_objects(&[
                Attribute::Token(true),
                Attribute::Class(ObjectClass::PRIVATE_KEY),
            ]))? {
                let attrs = ck(s.get_attributes(obj, &[AttributeType::Label, AttributeType::Id]))?;
                let (mut label, mut id) = (None, None);
                for a in attrs {
                    match a {
                        Attribute::Label(l) => {
                            label = Some(String::from_utf8_lossy(&l).into_owned())
                        }
                        Attribute::Id(i) => id = Some(i),
                        _ => {}
                    }
                }
                if let (Some(label), Some(id)) = (label, id) {
                    if label.starts_with(HELD_LABEL_PREFIX) {
                        out.push((label, id));
                    }
                }
            }
            out.sort();
            Ok(out)
        })
        .await
    }

    /// Destroy the held key object a stand-in names; false if the token has none.
    pub async fn destroy_held(&self, blob: Vec<u8>, label: String) -> Result<bool, HsmError> {
        let Some(id) = held_id(&blob) else {
            return Ok(false);
        };
        self.run(move |s| match find_held(s, &id, &label)? {
            Some(obj) => ck(s.destroy_object(obj)).map(|()| true),
            None => Ok(false),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_name_their_object_and_nothing_else_is_one() {
        let id = [7u8; 16];
        assert_eq!(held_id(&held_blob(&id)), Some(id));
        let mut long = held_blob(&id);
        long.push(0);
        assert_eq!(held_id(&long), None);
        assert_eq!(held_id(&held_blob(&id)[..30]), None);
        assert_eq!(held_id(&[0xa6; 40]), None);
    }
}
