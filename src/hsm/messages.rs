//! AES-GCM as PKCS#11 3.0 messages. A pooled session sets up a message-based operation for a
//! key once (`C_MessageEncryptInit`); after that each message is one call (`C_EncryptMessage`,
//! the IV and the tag in its parameters), where PKCS#11 2.40 needs two for every message
//! (`C_EncryptInit` with the IV, then `C_Encrypt`). Against a token across a network each call
//! is a round trip, so a warm key's Encrypt or Decrypt costs one round trip instead of two.
//!
//! A session keeps its operation for the key it last used; calls for a key prefer a session set
//! up for it, then one set up for no key (`Inner::with_pooled_session`). The operation is
//! compared with a key by identity: a `Weak` on the key's handle keeps the handle's address from
//! being reused and says when the handle is gone. The token keeps its own copy of the key in an
//! operation; when a handle is gone (the cache evicted it, the key was deleted, the object was
//! destroyed), the next call given back to the pool ends every idle session's operation for it
//! (`Inner::end_stale_messages`), so that copy does not outlive the service's handle by more
//! than the time to the next call.
//!
//! Used where the module's default interface is PKCS#11 3.0 and the token lists AES-GCM with
//! `CKF_MESSAGE_ENCRYPT` and `CKF_MESSAGE_DECRYPT` (Kryoptic); otherwise, and for empty messages,
//! the 2.40 calls. Both give the same bytes for the same key, IV and AAD: ciphertexts made either
//! way decrypt either way.

use super::raw::{Direction, RawModule};
use super::*;
use cryptoki::context::Function;
use cryptoki_sys::{CK_GCM_MESSAGE_PARAMS, CK_ULONG};
use std::sync::Weak;

/// AES-GCM's tag, in bytes.
const TAG: usize = 16;

/// The key each message-based operation of a session is set up for, if any.
#[derive(Default)]
pub(super) struct Bound {
    encrypt: Option<Weak<KeyHandle>>,
    decrypt: Option<Weak<KeyHandle>>,
}

impl Bound {
    fn get(&self, d: Direction) -> &Option<Weak<KeyHandle>> {
        match d {
            Direction::Encrypt => &self.encrypt,
            Direction::Decrypt => &self.decrypt,
        }
    }

    fn slot(&mut self, d: Direction) -> &mut Option<Weak<KeyHandle>> {
        match d {
            Direction::Encrypt => &mut self.encrypt,
            Direction::Decrypt => &mut self.decrypt,
        }
    }

    /// Whether no operation of direction `d` is set up, or only one for a handle that is gone.
    pub(super) fn is_free(&self, d: Direction) -> bool {
        self.get(d).as_ref().is_none_or(|w| stale(w, false))
    }

    /// Whether the operation of direction `d` is set up for the handle at `key`.
    pub(super) fn is_for(&self, d: Direction, key: *const KeyHandle) -> bool {
        self.get(d)
            .as_ref()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), key))
    }

    /// Whether an operation is set up for a key whose handle is gone, or is set up at all
    /// while messages are off (`all`).
    pub(super) fn is_stale(&self, all: bool) -> bool {
        [&self.encrypt, &self.decrypt]
            .into_iter()
            .flatten()
            .any(|w| stale(w, all))
    }

    /// End the operations whose key's handle is gone (every operation: `all`).
    pub(super) fn end_stale(&mut self, raw: Option<&RawModule>, session: &Session, all: bool) {
        for d in [Direction::Encrypt, Direction::Decrypt] {
            let slot = self.slot(d);
            if slot.as_ref().is_some_and(|w| stale(w, all)) {
                *slot = None;
                if let Some(raw) = raw {
                    // SAFETY: a live session of ours, not in use by anyone else.
                    unsafe { raw.message_final(d, session.handle()) };
                }
            }
        }
    }
}

/// Whether an operation set up for the handle `w` is to end: the handle is gone, or every
/// operation is (`all`: messages are off).
fn stale(w: &Weak<KeyHandle>, all: bool) -> bool {
    all || w.strong_count() == 0
}

/// Whether the module and the token do AES-GCM as messages.
pub(super) fn gcm_messages(raw: Option<&RawModule>, slot: Slot) -> bool {
    let Some(raw) = raw.filter(|r| r.has_messages()) else {
        return false;
    };
    let mut info = cryptoki_sys::CK_MECHANISM_INFO::default();
    let rv = raw.mechanism_info(slot.id(), cryptoki_sys::CKM_AES_GCM, &mut info);
    let both = cryptoki_sys::CKF_MESSAGE_ENCRYPT | cryptoki_sys::CKF_MESSAGE_DECRYPT;
    rv == cryptoki_sys::CKR_OK && info.flags & both == both
}

/// A code that means the token does not do AES-GCM messages as the service asks for them (the
/// message's parameters are the same for every message, so a token that refuses them once
/// refuses them always; Kryoptic says `CKR_ARGUMENTS_BAD` for parameters it cannot read).
fn refused(rv: cryptoki_sys::CK_RV) -> bool {
    matches!(
        rv,
        cryptoki_sys::CKR_MECHANISM_INVALID
            | cryptoki_sys::CKR_MECHANISM_PARAM_INVALID
            | cryptoki_sys::CKR_FUNCTION_NOT_SUPPORTED
            | cryptoki_sys::CKR_ARGUMENTS_BAD
    )
}

fn check(rv: cryptoki_sys::CK_RV, f: Function) -> Result<(), HsmError> {
    ck(cryptoki::error::Rv::from(rv).into_result(f))
}

impl Tok<'_> {
    /// Make the 2.40 calls from now on: the token refused a message-based set-up or message.
    fn stop_messages(&self, rv: cryptoki_sys::CK_RV) {
        if self.inner.gcm_messages.swap(false, Ordering::Relaxed) {
            tracing::warn!(rv = format!("{rv:#x}"), "the token refused AES-GCM as a PKCS#11 3.0 message; using C_EncryptInit/C_Encrypt from now on");
        }
    }

    /// AES-GCM of one message (a 96-bit IV, a 128-bit tag) as a PKCS#11 3.0 message: for
    /// encryption, ciphertext || tag; for decryption, the plaintext of ciphertext || tag. `None`
    /// where it cannot be one (no message calls, not a pooled session, an empty message, or a
    /// token that refuses to set the operation up): the caller makes the 2.40 calls.
    pub(super) fn gcm_message(
        &self,
        d: Direction,
        key: &Arc<KeyHandle>,
        iv: [u8; 12],
        aad: &[u8],
        data: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>, HsmError>> {
        let bound = self.messages.filter(|_| self.inner.messages_on())?;
        let raw = self.inner.raw.as_ref()?;
        // Kryoptic refuses an empty message; a decryption needs a byte besides its tag.
        let least = match d {
            Direction::Encrypt => 1,
            Direction::Decrypt => TAG + 1,
        };
        if data.len() < least {
            return None;
        }
        // A handle of a token since re-opened is refused before any call (a re-open also
        // empties the pool, so no session set up for it is left either).
        let obj = match self.obj(key) {
            Ok(o) => o,
            Err(e) => return Some(Err(e)),
        };
        let mut bound = bound.borrow_mut();
        let session = self.session.handle();
        if !bound.is_for(d, Arc::as_ptr(key)) {
            let slot = bound.slot(d);
            if slot.take().is_some() {
                // SAFETY: our live session; its operation was for another key.
                unsafe { raw.message_final(d, session) };
            }
            // SAFETY: our live session and a key object of the token as it is now.
            let mut rv = unsafe { raw.message_init(d, session, obj.handle()) };
            if rv == cryptoki_sys::CKR_OPERATION_ACTIVE {
                // An operation the service lost track of (a final that failed): end it, once.
                // SAFETY: as above.
                rv = unsafe {
                    raw.message_final(d, session);
                    raw.message_init(d, session, obj.handle())
                };
            }
            if refused(rv) {
                self.stop_messages(rv);
                return None;
            }
            let init = match d {
                Direction::Encrypt => Function::MessageEncryptInit,
                Direction::Decrypt => Function::MessageDecryptInit,
            };
            if let Err(e) = check(rv, init) {
                return Some(Err(e));
            }
            *slot = Some(Arc::downgrade(key));
            crate::metrics::token_gcm("setup");
        }
        let (input, mut tag) = match d {
            Direction::Encrypt => (data, [0u8; TAG]),
            Direction::Decrypt => {
                let (c, t) = data.split_at(data.len() - TAG);
                (c, t.try_into().expect("TAG bytes"))
            }
        };
        let mut iv = iv;
        let mut params = CK_GCM_MESSAGE_PARAMS {
            pIv: iv.as_mut_ptr(),
            ulIvLen: iv.len() as CK_ULONG,
            ulIvFixedBits: 0,
            ivGenerator: cryptoki_sys::CKG_NO_GENERATE,
            pTag: tag.as_mut_ptr(),
            ulTagBits: (TAG * 8) as CK_ULONG,
        };
        // GCM's output is as long as its input; the encryption's tag follows it.
        let mut out = Zeroizing::new(vec![0u8; input.len() + TAG]);
        let mut len = input.len() as CK_ULONG;
        // SAFETY: the operation is set up on our live session; `params` points at the IV and
        // the tag above, `out` holds at least `len` bytes.
        let rv =
            unsafe { raw.gcm_message(d, session, &mut params, aad, input, &mut out, &mut len) };
        crate::metrics::token_gcm("message");
        let call = match d {
            Direction::Encrypt => Function::EncryptMessage,
            Direction::Decrypt => Function::DecryptMessage,
        };
        if let Err(e) = check(rv, call) {
            // The operation may be left in any state: end it; the next call sets it up again.
            *bound.slot(d) = None;
            // SAFETY: our live session.
            unsafe { raw.message_final(d, session) };
            if refused(rv) {
                // Parameters the token will not take (its own IVs only, say): 2.40 from now.
                self.stop_messages(rv);
                return None;
            }
            return Some(Err(e));
        }
        let n = len as usize;
        if n != input.len() {
            return Some(Err(HsmError::Other(format!(
                "the token's AES-GCM message was {n} bytes for {} bytes in",
                input.len()
            ))));
        }
        match d {
            Direction::Encrypt => out[n..n + TAG].copy_from_slice(&tag),
            Direction::Decrypt => out.truncate(n),
        }
        Some(Ok(out))
    }
}
