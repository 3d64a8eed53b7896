//! The only code that calls PKCS#11.
//!
//! * One session is opened, logged in and **pinned** for the life of the process: closing the
//!   last session logs every session out, and session objects die with the session that made
//!   them. Unwrapped key objects are therefore created on the pinned session, so their handles
//!   stay valid for as long as the cache keeps them.
//! * A pool of further sessions carries the hot-path calls (encrypt, decrypt, MAC, random).
//!   PKCS#11 calls block, so each runs on tokio's blocking pool with its `Session` moved in by
//!   ownership and handed back afterwards (cryptoki's `thread_local_session` pattern).
//! * Customer key material is never a token object: it is generated as a session object,
//!   wrapped under the root key with RFC 5649 and destroyed; only the wrapped blob leaves.
//!
//! Undoing partial failures: every function that creates a session object destroys it before
//! returning, on success and on error alike, except `unwrap_*`, whose object is owned by the
//! returned [`KeyHandle`] and destroyed when the last reference to it is dropped.
//!
//! This file holds the handle ([`Hsm`]), its shared state and the per-call session view
//! ([`Tok`]); the rest is by responsibility: `session.rs` (login, the pool, re-opening),
//! `run.rs` (opening, running calls), `service_keys.rs` (root and audit keys), `mac.rs` (MAC
//! keys and row MACs), `wrap.rs` (RFC 5649 wrap and unwrap), `symmetric.rs` (AES-GCM, random),
//! `capabilities.rs` (what the token offers), `asym.rs`, `import.rs` and `pool.rs`.

mod asym;
mod capabilities;
mod error;
mod held;
mod import;
mod mac;
mod messages;
mod oaep;
mod pool;
mod profile;
mod raw;
mod run;
mod service_keys;
mod session;
mod symmetric;
mod wrap;

pub use capabilities::*;
pub use mac::*;
pub use profile::{Profile, Vendor};
pub use service_keys::*;
pub use session::*;
pub use wrap::*;

pub use asym::{Curve, Hash, PairKind, PrivateUse, PublicKey, SignScheme, AUDIT_KEY_LABEL};
pub use error::HsmError;
pub use held::{held_blob, held_id, NewHeld, HELD_LABEL_PREFIX};
pub use import::{ImportAs, ImportWrap, Imported};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

pub struct HsmConfig {
    pub module: String,
    pub token_label: String,
    /// Further tokens with the same service keys, tried in order when the one in use is lost.
    pub failover_labels: Vec<String>,
    pub pin: SecretString,
    /// Where the PIN came from, if a file: read again when the service logs in again after
    /// losing the token, so an operator can correct a PIN without a restart.
    pub pin_file: Option<std::path::PathBuf>,
    pub pool_size: usize,
    /// Run short calls (`run_fast`) on the caller's thread.
    pub inline_calls: bool,
    /// On a token without RSAES-OAEP with SHA-256, take `RSAES_OAEP_SHA_256` imports of
    /// secret key material by removing the padding in the service (the material passes
    /// through this process's memory): see `Capabilities::oaep_sha256_import_in_service`.
    pub oaep_sha256_import_in_service: bool,
    /// Hold every login to the token to the PIN that logged this process in to it (a custom
    /// key store's partition, whose PIN is what admits a store: another store over the same
    /// token, answered "already logged in", must offer the same PIN). Off for the service's
    /// own token, whose PIN comes from the operator (a PIN changed on the token is taken at
    /// the next login even while old sessions live).
    pub strict_login: bool,
}

#[derive(Clone)]
pub struct Hsm {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: Pkcs11,
    /// The same module loaded through its raw function list, for the calls cryptoki does
    /// not wrap (`C_CloseAllSessions`).
    raw: Option<raw::RawModule>,
    /// The configured token first, then the failover tokens.
    labels: Vec<String>,
    /// Which of `labels` is in use.
    current: std::sync::atomic::AtomicUsize,
    pin: Mutex<SecretString>,
    pin_file: Option<std::path::PathBuf>,
    login: session::LoginRule,
    slot: Mutex<Slot>,
    caps: Capabilities,
    /// Logged in for the life of the process; owns every unwrapped session object.
    pinned: Arc<Mutex<Session>>,
    pool: Mutex<Vec<Pooled>>,
    pool_size: usize,
    /// Whether AES-GCM runs as PKCS#11 3.0 messages (`messages.rs`): the module has the calls
    /// and the token lists AES-GCM for message-based encryption and decryption.
    gcm_messages: AtomicBool,
    inline_calls: bool,
    /// One permit per pooled session. Re-opening the token takes all of them (and the pinned
    /// session), so no call is inside the token while its sessions are replaced.
    permits: Arc<tokio::sync::Semaphore>,
    /// Objects to destroy, handed to a dedicated thread so that dropping a handle never
    /// blocks (or deadlocks) the caller.
    reaper: std::sync::mpsc::Sender<Reap>,
    reaper_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    root: Mutex<Option<(u32, ObjectHandle)>>,
    /// Root keys of older versions still in the token (being re-wrapped from, or not yet
    /// destroyed): blobs that record them unwrap with them.
    older_roots: Mutex<Vec<(u32, ObjectHandle)>>,
    /// The metadata MAC key that MACs new rows: (version, handle).
    mac: Mutex<Option<(u32, ObjectHandle)>>,
    /// MAC keys of older versions still in the token: rows MAC'd under them verify with them
    /// until they are re-MAC'd and the key is destroyed.
    older_macs: Mutex<Vec<(u32, ObjectHandle)>>,
    /// Row MACs the token verified, so a row read again is not verified in it again.
    verified_macs: Mutex<mac::VerifiedMacs>,
    /// Whether Ed25519 private keys can be generated and wrapped (probed once the root key is
    /// loaded; SoftHSM 2.6.1 generates them but cannot wrap them).
    ed25519: std::sync::atomic::AtomicBool,
    /// Whether Ed25519 private keys are kept as token objects instead (`held.rs`): generated
    /// but not wrappable, on a single token.
    ed25519_held: std::sync::atomic::AtomicBool,
    /// The audit signing key pair (private, public), once found or created.
    audit: Mutex<Option<(ObjectHandle, ObjectHandle)>>,
    /// Bumped each time the token is re-opened: session objects and handles of an older
    /// generation are gone.
    generation: Arc<AtomicU64>,
    /// False while the token is lost and could not be re-opened; `down` says why.
    healthy: AtomicBool,
    down: Mutex<Option<Down>>,
}

/// Why the token is unusable, and when re-opening it was last tried.
struct Down {
    at: std::time::Instant,
    reason: String,
    /// A digest of a PIN the token refused: never offered again, so that retries cannot lock
    /// the user PIN on a token that counts failures.
    refused_pin: Option<[u8; 32]>,
}

/// How long a lost token is left alone between attempts to re-open it; calls in between fail
/// at once.
const REOPEN_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

/// Work for the reaper thread.
enum Reap {
    Destroy(ObjectHandle, u64),
    Stop,
}

/// A session checked out for one call, with the service's token objects as the token knows
/// them now. Re-opening the token waits for every `Tok` to be gone, so what it hands out is
/// current for the whole call.
pub struct Tok<'a> {
    session: &'a Session,
    inner: &'a Inner,
    /// The message-based operations set up on this session (a pooled session only).
    messages: Option<&'a std::cell::RefCell<messages::Bound>>,
}

/// A pooled session, with the message-based AES-GCM operations it has set up.
pub(super) struct Pooled {
    session: Session,
    messages: std::cell::RefCell<messages::Bound>,
}

impl Pooled {
    fn new(session: Session) -> Pooled {
        Pooled {
            session,
            messages: Default::default(),
        }
    }
}

impl std::ops::Deref for Tok<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session
    }
}

/// A call's wish for a pooled session whose message-based operation of `direction` is set up
/// for the key at address `key` (an address, so that the wish can cross threads).
#[derive(Clone, Copy)]
struct Prefer {
    direction: raw::Direction,
    key: usize,
}

impl Inner {
    /// Whether AES-GCM runs as messages now.
    fn messages_on(&self) -> bool {
        self.gcm_messages.load(Ordering::Relaxed)
    }
}

impl Hsm {
    /// The session pinned for the life of the process (its login state), held while the
    /// guard lives.
    fn pinned(&self) -> std::sync::MutexGuard<'_, Session> {
        self.inner
            .pinned
            .lock()
            .expect("pinned session lock poisoned")
    }

    /// The wish for a session set up for `key` in `direction`; none where AES-GCM does not run
    /// as messages (no session is ever set up, so none is looked for).
    fn prefer(&self, direction: raw::Direction, key: &Arc<KeyHandle>) -> Option<Prefer> {
        self.inner.messages_on().then_some(Prefer {
            direction,
            key: Arc::as_ptr(key) as usize,
        })
    }
}

/// An unwrapped key object on the token. The object is destroyed when the last clone of the
/// handle is dropped, so a cache may evict it while a request still uses it.
pub struct KeyHandle {
    obj: ObjectHandle,
    /// The token generation the object belongs to (see [`Tok::obj`]).
    generation: u64,
    current: Arc<AtomicU64>,
    reaper: std::sync::mpsc::Sender<Reap>,
    /// Whether dropping the last handle destroys the object: an unwrapped session object, not
    /// a held token object.
    owned: bool,
}

impl std::fmt::Debug for KeyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHandle({})", self.obj)
    }
}

impl KeyHandle {
    /// The token object, for code that times raw PKCS#11 calls (`kms-bench token`).
    pub fn object(&self) -> ObjectHandle {
        self.obj
    }

    /// Whether the object still exists: false once the token was lost and re-opened, which
    /// destroys every session object. A cache drops such a handle and unwraps again.
    pub fn is_current(&self) -> bool {
        self.current.load(Ordering::Acquire) == self.generation
    }
}

impl Drop for KeyHandle {
    fn drop(&mut self) {
        // The reaper thread lives as long as the process; if it is gone, so is the session
        // that owned the object.
        if self.owned {
            let _ = self.reaper.send(Reap::Destroy(self.obj, self.generation));
        }
    }
}

fn ck<T>(r: Result<T, CkError>) -> Result<T, HsmError> {
    r.map_err(HsmError::from)
}

impl Tok<'_> {
    /// A handle on `obj` of the token as it is now; `owned`: destroyed when the last clone is
    /// dropped (an unwrapped session object), not a held token object. Made inside the token
    /// call, so a caller cancelled before the call returns still drops (and destroys) it.
    pub(super) fn handle(&self, obj: ObjectHandle, owned: bool) -> Arc<KeyHandle> {
        Arc::new(KeyHandle {
            obj,
            generation: self.inner.generation.load(Ordering::Acquire),
            current: self.inner.generation.clone(),
            reaper: self.inner.reaper.clone(),
            owned,
        })
    }

    /// A decryption's failure, with the codes that mean "bad input" on this token (its
    /// profile) turned into `BadCiphertext`.
    pub(super) fn bad_ciphertext<T>(&self, r: Result<T, HsmError>) -> Result<T, HsmError> {
        match r {
            Err(e)
                if e.rv()
                    .is_some_and(|rv| self.inner.caps.profile.is_bad_ciphertext(rv)) =>
            {
                Err(HsmError::BadCiphertext)
            }
            r => r,
        }
    }

    /// The object of an unwrapped key, if it belongs to the token as it is now.
    pub fn obj(&self, key: &KeyHandle) -> Result<ObjectHandle, HsmError> {
        if key.generation == self.inner.generation.load(Ordering::Acquire) {
            Ok(key.obj)
        } else {
            Err(HsmError::Reopened)
        }
    }

    /// Single-part encryption in two token calls (`C_EncryptInit`, then `C_Encrypt` into a
    /// buffer of `capacity` bytes) where cryptoki's `encrypt` makes three (it asks the length
    /// first). Each call is a round trip to a token across a network.
    pub fn encrypt_once(
        &self,
        mechanism: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
        capacity: usize,
    ) -> Result<Vec<u8>, HsmError> {
        let mut out = self.once(raw::SinglePart::Encrypt, mechanism, key, data, capacity)?;
        Ok(std::mem::take(&mut *out))
    }

    /// [`Tok::encrypt_once`] for decryption: the output is at most the input's length.
    pub fn decrypt_once(
        &self,
        mechanism: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.once(raw::SinglePart::Decrypt, mechanism, key, data, data.len())
    }

    /// [`Tok::encrypt_once`] for signatures and MACs (at most 512 bytes: RSA-4096).
    pub fn sign_once(
        &self,
        mechanism: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
        let mut out = self.once(raw::SinglePart::Sign, mechanism, key, data, 512)?;
        Ok(std::mem::take(&mut *out))
    }

    /// `op` initialised with `mechanism` and `key`, then finished by [`Tok::single_part`];
    /// cryptoki's own call where the module's raw function list is not loaded.
    fn once(
        &self,
        op: raw::SinglePart,
        mechanism: &Mechanism,
        key: ObjectHandle,
        data: &[u8],
        capacity: usize,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let s = self.session;
        let Some(raw) = &self.inner.raw else {
            return ck(match op {
                raw::SinglePart::Encrypt => s.encrypt(mechanism, key, data),
                raw::SinglePart::Decrypt => s.decrypt(mechanism, key, data),
                raw::SinglePart::Sign => s.sign(mechanism, key, data),
            })
            .map(Zeroizing::new);
        };
        ck(match op {
            raw::SinglePart::Encrypt => s.encrypt_init(mechanism, key),
            raw::SinglePart::Decrypt => s.decrypt_init(mechanism, key),
            raw::SinglePart::Sign => s.sign_init(mechanism, key),
        })?;
        self.single_part(raw, op, data, capacity)
    }

    /// The operation initialised on this session, finished in one call into `capacity`
    /// bytes, or two if the token wants more (`CKR_BUFFER_TOO_SMALL` leaves the operation
    /// active and says how much).
    fn single_part(
        &self,
        raw: &raw::RawModule,
        op: raw::SinglePart,
        data: &[u8],
        capacity: usize,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let mut out = Zeroizing::new(vec![0u8; capacity.max(1)]);
        // SAFETY: the session is ours for the call, `data` is read-only input and `out` holds
        // `len` bytes.
        let mut len = out.len() as cryptoki_sys::CK_ULONG;
        let mut rv =
            unsafe { raw.single_part(op, self.session.handle(), data, &mut out, &mut len) };
        if rv == cryptoki_sys::CKR_BUFFER_TOO_SMALL {
            out = Zeroizing::new(vec![0u8; len as usize]);
            // SAFETY: as above, with the length the token asked for.
            rv = unsafe { raw.single_part(op, self.session.handle(), data, &mut out, &mut len) };
        }
        ck(cryptoki::error::Rv::from(rv).into_result(op.function()))?;
        out.truncate(len as usize);
        Ok(out)
    }
}
