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

mod asym;
mod pool;
mod profile;
mod raw;
pub use profile::{Profile, Vendor};
mod error;
mod import;

pub use asym::{Curve, Hash, PairKind, PrivateUse, PublicKey, SignScheme, AUDIT_KEY_LABEL};
pub use error::HsmError;
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

/// Label of the root wrapping key of a given version.
pub fn root_key_label(version: u32) -> String {
    format!("kms-root-wrapping-key-v{version}")
}
/// RFC 5649 (AES key wrap with padding), as the token names it. Every wrapped blob the service
/// stores, and the second step of `RSA_AES_KEY_WRAP_*` imports, use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc5649 {
    /// `CKM_AES_KEY_WRAP_PAD` (0x210A), which SoftHSM2 implements as RFC 5649.
    Pad,
    /// `CKM_AES_KEY_WRAP_KWP` (0x210B), RFC 5649 in PKCS#11 3.0 (Kryoptic, Luna, nShield).
    /// cryptoki 0.12 cannot name it, so it is called through the raw function list.
    Kwp,
}

/// What a wrapped blob holds, for re-wrapping it (the unwrap template must name the class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// An AES-256 backing key.
    Aes,
    /// A generic secret: an HMAC key, an access key's signing secret.
    Secret,
    /// A private key (PKCS#8), with the one use it is unwrapped for.
    Private(asym::PairKind, asym::PrivateUse),
}

/// `CKM_AES_KEY_WRAP_KWP` (PKCS#11 3.0).
const CKM_AES_KEY_WRAP_KWP: cryptoki_sys::CK_MECHANISM_TYPE = 0x210B;

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
}

/// What the token offers that the service relies on, probed once at start-up.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The RFC 5649 wrap mechanism this token implements.
    pub wrap: Rfc5649,
    /// What the mechanism list cannot say about this vendor's token.
    pub profile: Profile,
    pub manufacturer: String,
    pub model: String,
    /// Every mechanism the token lists.
    pub mechanisms: Vec<MechanismType>,
    /// Whether RSAES-OAEP with SHA-256 works (probed; SoftHSM 2.6.1 has SHA-1 only).
    pub oaep_sha256: bool,
    /// The elliptic curves the token generates keys on (probed; Kryoptic built against
    /// OpenSSL 3.0 has no secp256k1).
    pub curves: Vec<asym::Curve>,
}

impl Capabilities {
    pub fn has(&self, m: MechanismType) -> bool {
        self.mechanisms.contains(&m)
    }
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
    slot: Mutex<Slot>,
    caps: Capabilities,
    /// Logged in for the life of the process; owns every unwrapped session object.
    pinned: Arc<Mutex<Session>>,
    pool: Mutex<Vec<Session>>,
    pool_size: usize,
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
    /// Whether Ed25519 private keys can be generated and wrapped (probed once the root key is
    /// loaded; SoftHSM 2.6.1 generates them but cannot wrap them).
    ed25519: std::sync::atomic::AtomicBool,
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
}

impl std::ops::Deref for Tok<'_> {
    type Target = Session;
    fn deref(&self) -> &Session {
        self.session
    }
}

impl Tok<'_> {
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

    /// RFC 5649 wrap of `key` under `wrapping`, with the token's mechanism for it.
    pub(super) fn wrap5649(
        &self,
        wrapping: ObjectHandle,
        key: ObjectHandle,
    ) -> Result<Vec<u8>, HsmError> {
        wrap5649(
            self.session,
            self.inner.caps.wrap,
            self.inner.raw.as_ref(),
            wrapping,
            key,
        )
    }

    /// RFC 5649 unwrap of `blob` under `unwrapping` into a new object made from `template`.
    pub(super) fn unwrap5649(
        &self,
        unwrapping: ObjectHandle,
        blob: &[u8],
        template: &[Attribute],
    ) -> Result<ObjectHandle, HsmError> {
        unwrap5649(
            self.session,
            self.inner.caps.wrap,
            self.inner.raw.as_ref(),
            unwrapping,
            blob,
            template,
        )
    }

    /// The root wrapping key: (version, handle).
    pub fn root(&self) -> Result<(u32, ObjectHandle), HsmError> {
        self.inner
            .root
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: root_key_label(1),
            })
    }

    /// The root key of `version`: the current one, or an older one still in the token. A blob
    /// unwraps only under the version it records.
    pub fn root_of(&self, version: u32) -> Result<ObjectHandle, HsmError> {
        match self.root()? {
            (v, h) if v == version => Ok(h),
            _ => self
                .inner
                .older_roots
                .lock()
                .unwrap()
                .iter()
                .find(|(v, _)| *v == version)
                .map(|(_, h)| *h)
                .ok_or(HsmError::ServiceKeyMissing {
                    label: root_key_label(version),
                }),
        }
    }

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
            ck(self.sign(&Mechanism::Sha256Hmac, key, data))?,
        ))
    }

    fn audit(&self) -> Result<(ObjectHandle, ObjectHandle), HsmError> {
        self.inner
            .audit
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: AUDIT_KEY_LABEL.into(),
            })
    }

    /// The object of an unwrapped key, if it belongs to the token as it is now.
    pub fn obj(&self, key: &KeyHandle) -> Result<ObjectHandle, HsmError> {
        if key.generation == self.inner.generation.load(Ordering::Acquire) {
            Ok(key.obj)
        } else {
            Err(HsmError::Reopened)
        }
    }
}

/// Return codes that mean the session, the login or the token itself is gone: the service
/// re-opens the token rather than report the same failure forever.
fn token_lost(e: &HsmError) -> bool {
    matches!(
        e.rv(),
        Some(RvError::SessionHandleInvalid)
            | Some(RvError::SessionClosed)
            | Some(RvError::DeviceRemoved)
            | Some(RvError::DeviceError)
            | Some(RvError::TokenNotPresent)
            | Some(RvError::TokenNotRecognized)
            | Some(RvError::SlotIdInvalid)
            | Some(RvError::UserNotLoggedIn)
            | Some(RvError::CryptokiNotInitialized)
            // Only handles the service holds are used: one the token does not know means it
            // forgot its objects (a logout destroys private session objects).
            | Some(RvError::ObjectHandleInvalid)
            | Some(RvError::KeyHandleInvalid)
            | Some(RvError::WrappingKeyHandleInvalid)
            | Some(RvError::UnwrappingKeyHandleInvalid)
    )
}

/// The slot holding the token labelled `label`, and its info.
fn find_slot(ctx: &Pkcs11, label: &str) -> Result<(Slot, cryptoki::slot::TokenInfo), HsmError> {
    for slot in ck(ctx.get_slots_with_token())? {
        let info = ck(ctx.get_token_info(slot))?;
        if info.label().trim_end() == label {
            return Ok((slot, info));
        }
    }
    Err(HsmError::TokenNotFound {
        label: label.to_string(),
    })
}

/// `C_Login` as the user; "already logged in" is success (login state is per process).
fn login(session: &Session, pin: &SecretString) -> Result<(), HsmError> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _))
        | Err(CkError::Pkcs11(RvError::PinInvalid, _))
        | Err(CkError::Pkcs11(RvError::PinLenRange, _)) => Err(HsmError::PinIncorrect),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::Other(
            "the user PIN is locked (CKR_PIN_LOCKED); the security officer must reset it".into(),
        )),
        Err(CkError::Pkcs11(RvError::PinExpired, _)) => Err(HsmError::Other(
            "the user PIN has expired (CKR_PIN_EXPIRED); set a new one on the token".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

fn pin_digest(pin: &SecretString) -> [u8; 32] {
    use secrecy::ExposeSecret;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pin.expose_secret().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A fault to inject into the token, for the fault tests (`fault_injection_file`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `C_CloseAllSessions` on the slot: every session and session object is gone, and the
    /// process is logged out.
    CloseSessions,
    /// `C_Logout` on the pinned session: private session objects are gone.
    Logout,
    /// `C_Finalize`: the module forgets everything until `C_Initialize`.
    Finalize,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Fault, String> {
        match s.trim() {
            "close-sessions" => Ok(Fault::CloseSessions),
            "logout" => Ok(Fault::Logout),
            "finalize" => Ok(Fault::Finalize),
            other => Err(format!(
                "unknown fault '{other}' (close-sessions, logout, finalize)"
            )),
        }
    }
}

/// Count a token call and its latency (waiting for a session included) in the metrics.
fn record_call<R>(session: &'static str, started: std::time::Instant, r: &Result<R, HsmError>) {
    crate::metrics::token_call(
        session,
        started.elapsed(),
        r.as_ref().err().map(HsmError::label),
    );
}

impl Inner {
    /// Run `f` on a session taken from the pool (or opened if the pool is empty) and give it
    /// back, unless the token no longer knows it. The caller holds a pool permit.
    fn with_pooled_session<R>(
        &self,
        f: impl FnOnce(&Tok) -> Result<R, HsmError>,
    ) -> Result<R, HsmError> {
        let pooled = self.pool.lock().unwrap().pop();
        let session = match pooled {
            Some(s) => s,
            None => ck(self.ctx.open_rw_session(*self.slot.lock().unwrap()))?,
        };
        let r = f(&Tok {
            session: &session,
            inner: self,
        });
        if r.as_ref().err().is_some_and(token_lost) {
            // Its handle may be reused by the token once re-opened: never close it.
            std::mem::forget(session);
        } else {
            let mut pool = self.pool.lock().unwrap();
            if pool.len() < self.pool_size {
                pool.push(session);
            }
        }
        r
    }

    /// The PIN to log in with now: the PIN file as it reads now, if there is one.
    fn current_pin(&self) -> SecretString {
        if let Some(f) = &self.pin_file {
            match crate::config::read_pin_file(f) {
                Ok(p) => {
                    *self.pin.lock().unwrap() = p.clone();
                    return p;
                }
                Err(e) => {
                    tracing::error!(error = %e, "using the PIN read at start-up")
                }
            }
        }
        self.pin.lock().unwrap().clone()
    }

    /// Replace every session: close what is left of the old ones on the token, initialise
    /// the module again if it was finalized, find the token (its slot may have changed), log
    /// in, find the service's token objects, and start a new generation. The caller holds
    /// every pool permit.
    fn reopen(&self, refused_pin: Option<[u8; 32]>) -> Result<(), (HsmError, Option<[u8; 32]>)> {
        let mut pinned = self.pinned.lock().unwrap();
        let old_slot = *self.slot.lock().unwrap();
        if let Some(raw) = &self.raw {
            // No call is inside the token now.
            raw.close_all_sessions(old_slot.id());
        }
        // The old sessions are closed (or died with the token): forget their handles.
        for s in self.pool.lock().unwrap().drain(..) {
            std::mem::forget(s);
        }
        match self
            .ctx
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err((e.into(), None)),
        }
        let pin = self.current_pin();
        let digest = pin_digest(&pin);
        if refused_pin == Some(digest) {
            return Err((
                HsmError::Other("the token refused this PIN before; it is not offered again (correct hsm.pin_file)".into()),
                Some(digest),
            ));
        }
        // The token in use first, then the rest of the pool in order.
        let was = self.current.load(Ordering::Acquire);
        let n = self.labels.len();
        let mut first_error = None;
        for i in (0..n).map(|k| (was + k) % n) {
            match self.open_member(&self.labels[i], &pin, digest) {
                Ok(opened) => {
                    if i != was {
                        tracing::warn!(from = %self.labels[was], to = %self.labels[i], "FAILED OVER to another token of the pool");
                        crate::metrics::token_failed_over();
                    }
                    self.current.store(i, Ordering::Release);
                    return self.install(&mut pinned, opened);
                }
                // A refused PIN is not offered to the other tokens (they may count failures).
                Err((e, Some(refused))) => return Err((e, Some(refused))),
                Err((e, None)) => {
                    if n > 1 {
                        tracing::error!(token = %self.labels[i], error = %e, "this token of the pool cannot be used");
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        Err((
            first_error.unwrap_or_else(|| HsmError::Other("no token configured".into())),
            None,
        ))
    }

    /// A new session on the token labelled `label`, logged in with `pin` (another token of
    /// the pool; closing it does not affect the token in use).
    fn log_in_to(&self, label: &str, pin: &SecretString) -> Result<Session, HsmError> {
        let (slot, _) = find_slot(&self.ctx, label)?;
        let session = ck(self.ctx.open_rw_session(slot))?;
        login(&session, pin)?;
        Ok(session)
    }

    /// Find the token labelled `label`, log in on a new session and find the service keys
    /// this process uses.
    fn open_member(
        &self,
        label: &str,
        pin: &SecretString,
        digest: [u8; 32],
    ) -> Result<Opened, (HsmError, Option<[u8; 32]>)> {
        let (slot, _) = find_slot(&self.ctx, label).map_err(|e| (e, None))?;
        let session = ck(self.ctx.open_rw_session(slot)).map_err(|e| (e, None))?;
        login(&session, pin).map_err(|e| {
            let refused = matches!(e, HsmError::PinIncorrect).then_some(digest);
            (e, refused)
        })?;
        let find = |label: &str, class| -> Result<ObjectHandle, (HsmError, Option<[u8; 32]>)> {
            find_labelled(&session, class, label)
                .map_err(|e| (e, None))?
                .ok_or((
                    HsmError::ServiceKeyMissing {
                        label: label.to_string(),
                    },
                    None,
                ))
        };
        let root = match *self.root.lock().unwrap() {
            Some((v, _)) => Some((v, find(&root_key_label(v), ObjectClass::SECRET_KEY)?)),
            None => None,
        };
        let older_roots = match root {
            Some((v, _)) => older_roots(&session, v).map_err(|e| (e, None))?,
            None => Vec::new(),
        };
        // The MAC key in use, or a newer one (another process rotated and destroyed it).
        let mac = match *self.mac.lock().unwrap() {
            Some((v, _)) => {
                let mut w = v;
                while find_one(&session, &mac_key_label(w + 1))
                    .map_err(|e| (e, None))?
                    .is_some()
                {
                    w += 1;
                }
                Some((w, find(&mac_key_label(w), ObjectClass::SECRET_KEY)?))
            }
            None => None,
        };
        let older_macs = match mac {
            Some((v, _)) => older_macs(&session, v).map_err(|e| (e, None))?,
            None => Vec::new(),
        };
        let audit = match *self.audit.lock().unwrap() {
            Some(_) => Some((
                find(AUDIT_KEY_LABEL, ObjectClass::PRIVATE_KEY)?,
                find(
                    &format!("{AUDIT_KEY_LABEL}-public"),
                    ObjectClass::PUBLIC_KEY,
                )?,
            )),
            None => None,
        };
        Ok(Opened {
            slot,
            session,
            root,
            older_roots,
            mac,
            older_macs,
            audit,
        })
    }

    /// Make a newly opened token the one in use; every older key object is stale from now.
    fn install(&self, pinned: &mut Session, o: Opened) -> Result<(), (HsmError, Option<[u8; 32]>)> {
        std::mem::forget(std::mem::replace(pinned, o.session));
        *self.slot.lock().unwrap() = o.slot;
        *self.root.lock().unwrap() = o.root;
        *self.older_roots.lock().unwrap() = o.older_roots;
        *self.mac.lock().unwrap() = o.mac;
        *self.older_macs.lock().unwrap() = o.older_macs;
        *self.audit.lock().unwrap() = o.audit;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

/// A token of the pool, opened and logged in, with its service keys found.
struct Opened {
    slot: Slot,
    session: Session,
    root: Option<(u32, ObjectHandle)>,
    older_roots: Vec<(u32, ObjectHandle)>,
    mac: Option<(u32, ObjectHandle)>,
    older_macs: Vec<(u32, ObjectHandle)>,
    audit: Option<(ObjectHandle, ObjectHandle)>,
}

impl Drop for Inner {
    /// Stop and join the reaper before the sessions close, so that no thread is inside the
    /// PKCS#11 library when the process exits (SoftHSM can hang in its exit handlers if one is).
    fn drop(&mut self) {
        let _ = self.reaper.send(Reap::Stop);
        if let Some(h) = self.reaper_thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = h.join();
        }
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
        let _ = self.reaper.send(Reap::Destroy(self.obj, self.generation));
    }
}

fn spawn_reaper(
    pinned: Arc<Mutex<Session>>,
    current: Arc<AtomicU64>,
) -> (
    std::sync::mpsc::Sender<Reap>,
    Option<std::thread::JoinHandle<()>>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<Reap>();
    let spawned = std::thread::Builder::new().name("kms-hsm-reaper".into()).spawn(move || {
        for msg in rx {
            let Reap::Destroy(obj, generation) = msg else { return };
            let Ok(s) = pinned.lock() else { return };
            // An object of a lost generation died with its session; its handle number may
            // name another object now.
            if current.load(Ordering::Acquire) != generation {
                continue;
            }
            if let Err(e) = s.destroy_object(obj) {
                tracing::warn!(error = %HsmError::from(e), "could not destroy an evicted key object");
            }
        }
    });
    match spawned {
        Ok(h) => (tx, Some(h)),
        Err(e) => {
            tracing::error!(error = %e, "could not start the key object reaper; evicted objects will stay until exit");
            (tx, None)
        }
    }
}

/// Wrap a session object under the root key and destroy it, on success and on failure alike.
fn wrap_and_destroy(s: &Tok, root: ObjectHandle, key: ObjectHandle) -> Result<Vec<u8>, HsmError> {
    let wrapped = s.wrap5649(root, key);
    let destroyed = ck(s.destroy_object(key));
    let wrapped = wrapped?;
    destroyed?;
    Ok(wrapped)
}

fn raw_rv(rv: cryptoki_sys::CK_RV, function: cryptoki::context::Function) -> Result<(), HsmError> {
    ck(cryptoki::error::Rv::from(rv).into_result(function))
}

fn kwp_mechanism() -> cryptoki_sys::CK_MECHANISM {
    cryptoki_sys::CK_MECHANISM {
        mechanism: CKM_AES_KEY_WRAP_KWP,
        pParameter: std::ptr::null_mut(),
        ulParameterLen: 0,
    }
}

fn no_raw() -> HsmError {
    HsmError::Other(
        "the module's raw function list is not loaded (needed for CKM_AES_KEY_WRAP_KWP)".into(),
    )
}

/// RFC 5649 wrap with `mech`: cryptoki for `Pad`, the raw `C_WrapKey` for `Kwp`.
fn wrap5649(
    s: &Session,
    mech: Rfc5649,
    raw: Option<&raw::RawModule>,
    wrapping: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    use cryptoki::context::Function;
    match mech {
        Rfc5649::Pad => ck(s.wrap_key(&Mechanism::AesKeyWrapPad, wrapping, key)),
        Rfc5649::Kwp => {
            let raw = raw.ok_or_else(no_raw)?;
            let mut m = kwp_mechanism();
            let mut len: cryptoki_sys::CK_ULONG = 0;
            // PKCS#11's two calls: the length (a null buffer), then the bytes.
            let mut call = |buf: *mut u8, len: &mut cryptoki_sys::CK_ULONG| {
                // SAFETY: a live session and object handles; `m` and `len` outlive the call,
                // and `buf` is null or holds the `len` bytes the token asked for.
                raw_rv(
                    unsafe {
                        raw.wrap_key(
                            s.handle(),
                            &mut m,
                            wrapping.handle(),
                            key.handle(),
                            buf,
                            len,
                        )
                    },
                    Function::WrapKey,
                )
            };
            call(std::ptr::null_mut(), &mut len)?;
            let mut out = vec![0u8; len as usize];
            call(out.as_mut_ptr(), &mut len)?;
            out.truncate(len as usize);
            Ok(out)
        }
    }
}

/// RFC 5649 unwrap with `mech` into a new object made from `template`.
fn unwrap5649(
    s: &Session,
    mech: Rfc5649,
    raw: Option<&raw::RawModule>,
    unwrapping: ObjectHandle,
    blob: &[u8],
    template: &[Attribute],
) -> Result<ObjectHandle, HsmError> {
    match mech {
        Rfc5649::Pad => ck(s.unwrap_key(&Mechanism::AesKeyWrapPad, unwrapping, blob, template)),
        Rfc5649::Kwp => {
            let raw = raw.ok_or_else(no_raw)?;
            let mut m = kwp_mechanism();
            // Each CK_ATTRIBUTE points into `template`, which outlives the call.
            let mut attrs: Vec<cryptoki_sys::CK_ATTRIBUTE> =
                template.iter().map(|a| a.into()).collect();
            let mut blob = blob.to_vec();
            let mut h: cryptoki_sys::CK_OBJECT_HANDLE = 0;
            // SAFETY: every pointer is to memory owned here for the duration of the call.
            raw_rv(
                unsafe {
                    raw.unwrap_key(
                        s.handle(),
                        &mut m,
                        unwrapping.handle(),
                        &mut blob,
                        attrs.as_mut_ptr(),
                        attrs.len() as cryptoki_sys::CK_ULONG,
                        &mut h,
                    )
                },
                cryptoki::context::Function::UnwrapKey,
            )?;
            // SAFETY: the token just returned this handle for a new object.
            Ok(unsafe { ObjectHandle::new_from_raw(h) })
        }
    }
}

/// Whether the token lists `CKM_AES_KEY_WRAP_KWP` (cryptoki 0.12 drops mechanisms it cannot
/// name from the list it returns, so this asks for it by number).
fn lists_kwp(raw: Option<&raw::RawModule>, slot: Slot) -> bool {
    let Some(raw) = raw else { return false };
    let mut info = cryptoki_sys::CK_MECHANISM_INFO::default();
    let rv = raw.mechanism_info(slot.id(), CKM_AES_KEY_WRAP_KWP, &mut info);
    rv == cryptoki_sys::CKR_OK
        && info.flags & (cryptoki_sys::CKF_WRAP | cryptoki_sys::CKF_UNWRAP) != 0
}

/// Whether `mech` produces RFC 5649 on this token: a known 256-bit key wrapped under a known
/// key-encryption key (both short-lived session objects) must give RFC 5649's output.
/// `None` when the token will not take known key values (some FIPS-mode HSMs refuse them).
fn probe_rfc5649(s: &Session, mech: Rfc5649, raw: Option<&raw::RawModule>) -> Option<bool> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
    let kek_value = [0x4bu8; 32];
    let key_value: Vec<u8> = (0u8..32).collect();
    let secret = |value: &[u8], wrap: bool| {
        s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(cryptoki::object::KeyType::AES),
            Attribute::Token(false),
            Attribute::Value(value.to_vec()),
            Attribute::Wrap(wrap),
            Attribute::Unwrap(wrap),
            Attribute::Extractable(!wrap),
            Attribute::Sensitive(wrap),
        ])
    };
    let kek = secret(&kek_value, true).ok()?;
    let key = match secret(&key_value, false) {
        Ok(k) => k,
        Err(_) => {
            let _ = s.destroy_object(kek);
            return None;
        }
    };
    let wrapped = wrap5649(s, mech, raw, kek, key);
    let _ = s.destroy_object(key);
    let _ = s.destroy_object(kek);
    let mut expected = [0u8; 48];
    let expected = AesKek::new(&AES_256, &kek_value)
        .ok()?
        .wrap_with_padding(&key_value, &mut expected)
        .ok()?
        .to_vec();
    Some(wrapped.is_ok_and(|w| w == expected))
}

/// The RFC 5649 mechanism to use: `CKM_AES_KEY_WRAP_KWP` if listed, else the vendor's
/// `CKM_AES_KEY_WRAP_PAD`, each only if its output is RFC 5649 (probed; where the token
/// refuses the probe, KWP is taken at its word and PAD only where the profile says so).
fn choose_rfc5649(
    s: &Session,
    raw: Option<&raw::RawModule>,
    mechs: &[MechanismType],
    kwp_listed: bool,
    profile: &Profile,
) -> Result<Rfc5649, HsmError> {
    let mut candidates = Vec::new();
    if kwp_listed {
        candidates.push(Rfc5649::Kwp);
    }
    if mechs.contains(&MechanismType::AES_KEY_WRAP_PAD) {
        candidates.push(Rfc5649::Pad);
    }
    for m in candidates {
        match probe_rfc5649(s, m, raw) {
            Some(true) => return Ok(m),
            Some(false) => {
                tracing::warn!(mechanism = ?m, "the token's output for this mechanism is not RFC 5649; not using it")
            }
            None if m == Rfc5649::Kwp || profile.pad_is_rfc5649 => return Ok(m),
            None => {}
        }
    }
    Err(HsmError::MechanismMissing {
        what: "RFC 5649 AES key wrap (CKM_AES_KEY_WRAP_KWP, or CKM_AES_KEY_WRAP_PAD where it is RFC 5649)",
    })
}

fn ck<T>(r: Result<T, CkError>) -> Result<T, HsmError> {
    r.map_err(HsmError::from)
}

/// The service's own token keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServiceKey {
    /// The root wrapping key: wrap and unwrap only.
    Root,
    /// The metadata MAC key: sign and verify only.
    Mac,
    /// The audit key pair's private half: sign only.
    AuditPrivate,
}

/// A service key's attributes, the same whether it is generated or copied into another token
/// of a pool (each adds only what its call needs: a length, a class and key type).
/// `extractable` only while `kms init` copies it to the pool's other tokens.
pub(super) fn service_key_template(
    key: ServiceKey,
    label: &str,
    extractable: bool,
) -> Vec<Attribute> {
    let mut t = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(extractable),
    ];
    match key {
        ServiceKey::Root => t.extend([
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
        ]),
        ServiceKey::Mac => t.extend([
            Attribute::Sign(true),
            Attribute::Verify(true),
            Attribute::Derive(false),
        ]),
        ServiceKey::AuditPrivate => t.push(Attribute::Sign(true)),
    }
    t.push(Attribute::Label(label.as_bytes().to_vec()));
    t
}

/// Load a PKCS#11 module and initialise it with OS locking ("already initialised" is fine).
fn load_module(module: &str) -> Result<Pkcs11, HsmError> {
    if !std::path::Path::new(module).exists() {
        return Err(HsmError::ModuleLoad {
            path: module.to_string(),
            detail: "no such file".into(),
        });
    }
    let ctx = Pkcs11::new(module).map_err(|e| HsmError::ModuleLoad {
        path: module.to_string(),
        detail: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(e.into()),
    }
}

/// Create a token labelled `label` in the first slot that holds no initialised token (a soft
/// token's free slot), with the given SO and user PINs; nothing if one with the label exists.
/// For the development mode, which creates its own SoftHSM2 token. Returns whether it created.
pub fn ensure_soft_token(
    module: &str,
    label: &str,
    so_pin: &SecretString,
    pin: &SecretString,
) -> Result<bool, HsmError> {
    let ctx = load_module(module)?;
    if let Ok((slot, info)) = find_slot(&ctx, label) {
        if info.user_pin_initialized() {
            return Ok(false);
        }
        // A token left half-made (initialised, but stopped before its user PIN was set):
        // finish it rather than fail at log-in on every start.
        init_user_pin(&ctx, slot, so_pin, pin)?;
        let _ = ctx.finalize();
        return Ok(true);
    }
    let free = ck(ctx.get_slots_with_token())?
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|i| !i.token_initialized()))
        .ok_or_else(|| {
            HsmError::Other("the module has no free slot to create a token in".into())
        })?;
    ck(ctx.init_token(free, so_pin, label))?;
    // The slot may be renumbered once initialised: find it again by label.
    let (slot, _) = find_slot(&ctx, label)?;
    init_user_pin(&ctx, slot, so_pin, pin)?;
    let _ = ctx.finalize();
    Ok(true)
}

fn init_user_pin(
    ctx: &Pkcs11,
    slot: Slot,
    so_pin: &SecretString,
    pin: &SecretString,
) -> Result<(), HsmError> {
    let session = ck(ctx.open_rw_session(slot))?;
    ck(session.login(UserType::So, Some(so_pin)))?;
    ck(session.init_pin(pin))?;
    ck(session.logout())?;
    Ok(())
}

impl Hsm {
    /// Load the module, find the token by label, probe its mechanisms, log in and open the
    /// session pool. Every failure is one sentence an operator can act on.
    pub fn open(cfg: &HsmConfig) -> Result<Hsm, HsmError> {
        let ctx = load_module(&cfg.module)?;
        // The first token of the pool that is present; the error of the configured one if none.
        let labels: Vec<String> = std::iter::once(cfg.token_label.clone())
            .chain(cfg.failover_labels.iter().cloned())
            .collect();
        let mut found = Err(HsmError::TokenNotFound {
            label: cfg.token_label.clone(),
        });
        let mut current = 0;
        for (i, label) in labels.iter().enumerate() {
            if let Ok(f) = find_slot(&ctx, label) {
                if i > 0 {
                    tracing::warn!(configured = %cfg.token_label, using = %label, "the configured token is not present; starting on a failover token");
                }
                found = Ok(f);
                current = i;
                break;
            }
        }
        let (slot, info) = found?;
        let mechs = ck(ctx.get_mechanism_list(slot))?;
        check_mechanisms(&mechs)?;
        let library = ctx
            .get_library_info()
            .map(|l| l.manufacturer_id().trim().to_string())
            .unwrap_or_default();
        let profile = Profile::detect(info.manufacturer_id(), info.model(), &library);
        let raw = raw::RawModule::load(&cfg.module);
        let kwp_listed = lists_kwp(raw.as_ref(), slot);
        let pinned = ck(ctx.open_rw_session(slot))?;
        login(&pinned, &cfg.pin)?;
        let wrap = choose_rfc5649(&pinned, raw.as_ref(), &mechs, kwp_listed, &profile)?;
        tracing::debug!(
            token = profile.name,
            manufacturer = info.manufacturer_id().trim(),
            model = info.model().trim(),
            rfc5649 = ?wrap,
            notes = profile.notes,
            "token profile"
        );
        let mut caps = Capabilities {
            wrap,
            profile,
            manufacturer: info.manufacturer_id().trim().to_string(),
            model: info.model().trim().to_string(),
            mechanisms: mechs.clone(),
            oaep_sha256: false,
            curves: vec![],
        };
        if caps.has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) && caps.has(MechanismType::RSA_PKCS_OAEP)
        {
            caps.oaep_sha256 = asym::probe_oaep_sha256(&pinned)?;
        }
        if caps.has(MechanismType::ECC_KEY_PAIR_GEN) {
            caps.curves = asym::probe_curves(&pinned);
        }
        let pool_size = cfg.pool_size.max(1);
        let mut pool = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            pool.push(ck(ctx.open_rw_session(slot))?);
        }
        let pinned = Arc::new(Mutex::new(pinned));
        let generation = Arc::new(AtomicU64::new(1));
        let (reaper, reaper_thread) = spawn_reaper(pinned.clone(), generation.clone());
        Ok(Hsm {
            inner: Arc::new(Inner {
                ctx,
                raw,
                labels,
                current: std::sync::atomic::AtomicUsize::new(current),
                pin: Mutex::new(cfg.pin.clone()),
                pin_file: cfg.pin_file.clone(),
                slot: Mutex::new(slot),
                caps,
                pinned,
                pool: Mutex::new(pool),
                pool_size,
                inline_calls: cfg.inline_calls,
                permits: Arc::new(tokio::sync::Semaphore::new(pool_size)),
                reaper,
                reaper_thread: Mutex::new(reaper_thread),
                root: Mutex::new(None),
                older_roots: Mutex::new(Vec::new()),
                mac: Mutex::new(None),
                older_macs: Mutex::new(Vec::new()),
                ed25519: std::sync::atomic::AtomicBool::new(false),
                audit: Mutex::new(None),
                generation,
                healthy: AtomicBool::new(true),
                down: Mutex::new(None),
            }),
        })
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.caps
    }

    /// Create the service's own token objects if absent; verify them if present.
    /// Returns `(created_root, created_mac)`.
    pub fn ensure_service_keys(&self, root_version: u32) -> Result<(bool, bool), HsmError> {
        let s = self
            .inner
            .pinned
            .lock()
            .expect("pinned session lock poisoned");
        let root_label = root_key_label(root_version);
        let mut created = (false, false);
        let clonable = self.is_pool();
        let root = match find_one(&s, &root_label)? {
            Some(h) => h,
            None => {
                created.0 = true;
                ck(s.generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        service_key_template(ServiceKey::Root, &root_label, clonable),
                        // Until `kms init` has copied it to the pool's other tokens, extractable.
                        vec![Attribute::ValueLen(32.into())],
                    ]
                    .concat(),
                ))?
            }
        };
        verify_service_key(&s, root, &root_label, AttributeType::Wrap, clonable)?;
        // The MAC key version this process uses (1 until it follows a rotation).
        let mac_version = self.held_mac_version();
        let mac_label = mac_key_label(mac_version);
        let mac = match find_one(&s, &mac_label)? {
            Some(h) => h,
            None => {
                created.1 = true;
                ck(s.generate_key(
                    &Mechanism::GenericSecretKeyGen,
                    &[
                        service_key_template(ServiceKey::Mac, &mac_label, clonable),
                        vec![
                            Attribute::KeyType(KeyType::GENERIC_SECRET),
                            Attribute::ValueLen(32.into()),
                        ],
                    ]
                    .concat(),
                ))?
            }
        };
        verify_service_key(&s, mac, &mac_label, AttributeType::Sign, clonable)?;
        *self.inner.older_roots.lock().unwrap() = older_roots(&s, root_version)?;
        *self.inner.root.lock().unwrap() = Some((root_version, root));
        *self.inner.older_macs.lock().unwrap() = older_macs(&s, mac_version)?;
        *self.inner.mac.lock().unwrap() = Some((mac_version, mac));
        self.probe_with_root(&s, root);
        Ok(created)
    }

    /// Find (and check) the service keys without creating anything: `kms serve` uses this so
    /// that a token that was never initialised is reported, not silently populated.
    pub fn load_service_keys(&self, root_version: u32) -> Result<(), HsmError> {
        let s = self
            .inner
            .pinned
            .lock()
            .expect("pinned session lock poisoned");
        let root_label = root_key_label(root_version);
        let root = find_one(&s, &root_label)?.ok_or(HsmError::ServiceKeyMissing {
            label: root_label.clone(),
        })?;
        verify_service_key(&s, root, &root_label, AttributeType::Wrap, false)?;
        let mac_version = self.held_mac_version();
        let mac_label = mac_key_label(mac_version);
        let mac = find_one(&s, &mac_label)?.ok_or(HsmError::ServiceKeyMissing {
            label: mac_label.clone(),
        })?;
        verify_service_key(&s, mac, &mac_label, AttributeType::Sign, false)?;
        *self.inner.older_roots.lock().unwrap() = older_roots(&s, root_version)?;
        *self.inner.root.lock().unwrap() = Some((root_version, root));
        *self.inner.older_macs.lock().unwrap() = older_macs(&s, mac_version)?;
        *self.inner.mac.lock().unwrap() = Some((mac_version, mac));
        self.probe_with_root(&s, root);
        Ok(())
    }

    /// Capabilities that need the root key to probe.
    fn probe_with_root(&self, s: &Session, root: ObjectHandle) {
        let tok = Tok {
            session: s,
            inner: &self.inner,
        };
        let ed = self.inner.caps.has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN)
            && asym::probe_ed25519(&tok, root);
        self.inner
            .ed25519
            .store(ed, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether Ed25519 keys can be created on this token (generated and wrapped).
    pub fn ed25519_supported(&self) -> bool {
        self.inner
            .ed25519
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The version of the root key that wraps new blobs.
    pub fn root_version(&self) -> Result<u32, HsmError> {
        self.inner
            .root
            .lock()
            .unwrap()
            .map(|(v, _)| v)
            .ok_or(HsmError::ServiceKeyMissing {
                label: root_key_label(1),
            })
    }

    /// Run `f` on a pooled session on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        let started = std::time::Instant::now();
        let r = self.run_pooled(f).await;
        record_call("pool", started, &r);
        r
    }

    async fn run_pooled<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        self.ensure_open().await?;
        let generation = self.generation();
        // The permit moves into the blocking task: if the caller goes away, the session stays
        // counted until the token call returns.
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HsmError::Other("session pool closed".into()))?;
        let inner = self.inner.clone();
        // Log lines from the token call carry the request's span (its request id).
        let span = tracing::Span::current();
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _span = span.enter();
            inner.with_pooled_session(f)
        })
        .await;
        let r = match joined {
            Ok(r) => r,
            Err(e) => Err(HsmError::Other(format!("token call did not complete: {e}"))),
        };
        self.after(generation, r).await
    }

    /// Run a short call (microseconds on a local token) on a pooled session. With
    /// `inline_calls` it runs on the caller's thread, saving the hand-off to the blocking pool
    /// (which costs more than the call); otherwise it is `run`.
    pub async fn run_fast<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        if !self.inner.inline_calls {
            return self.run(f).await;
        }
        let started = std::time::Instant::now();
        self.ensure_open().await?;
        let generation = self.generation();
        let r = {
            let _permit = self
                .inner
                .permits
                .acquire()
                .await
                .map_err(|_| HsmError::Other("session pool closed".into()))?;
            self.inner.with_pooled_session(f)
        };
        record_call("inline", started, &r);
        self.after(generation, r).await
    }

    /// Run `f` on the pinned session (for objects that must outlive any pooled session).
    async fn run_pinned<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        let started = std::time::Instant::now();
        self.ensure_open().await?;
        let generation = self.generation();
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        let r = tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let s = inner.pinned.lock().expect("pinned session lock poisoned");
            f(&Tok {
                session: &s,
                inner: &inner,
            })
        })
        .await
        .map_err(|e| HsmError::Other(format!("token call did not complete: {e}")))
        .and_then(|r| r);
        record_call("pinned", started, &r);
        self.after(generation, r).await
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// Whether failover tokens are configured.
    pub fn is_pool(&self) -> bool {
        self.inner.labels.len() > 1
    }

    /// The label of the token in use.
    pub fn current_label(&self) -> String {
        self.inner.labels[self.inner.current.load(Ordering::Acquire)].clone()
    }

    /// Whether the token is usable now (for readiness).
    pub fn is_open(&self) -> bool {
        self.inner.healthy.load(Ordering::Acquire)
    }

    /// (pooled sessions in use by a call now, pool size), for the metrics.
    pub fn sessions_in_use(&self) -> (usize, usize) {
        let free = self.inner.permits.available_permits();
        (
            self.inner.pool_size.saturating_sub(free),
            self.inner.pool_size,
        )
    }

    /// Whether the token answers now, logged in, for readiness: the root key's label read on
    /// the pinned session.
    pub async fn check(&self) -> Result<(), HsmError> {
        // The root key is a private object: only a logged-in session sees it. A failure here
        // that means the token is lost re-opens it, as for any call.
        self.run_pinned(|s| {
            let (_, root) = s.root()?;
            ck(s.get_attributes(root, &[AttributeType::Label]))?;
            Ok(())
        })
        .await
    }

    /// Before a call: if the token is lost, try to re-open it (at most once per
    /// `REOPEN_BACKOFF`), else fail at once with the reason.
    async fn ensure_open(&self) -> Result<(), HsmError> {
        if self.inner.healthy.load(Ordering::Acquire) {
            return Ok(());
        }
        self.reopen(None).await
    }

    /// After a call: a failure that means the token is lost re-opens it, so the next call
    /// works; this call still reports its failure.
    async fn after<R>(&self, generation: u64, r: Result<R, HsmError>) -> Result<R, HsmError> {
        if let Err(e) = &r {
            if token_lost(e) {
                tracing::error!(error = %e, "the token session is lost; re-opening it");
                if let Err(again) = self.reopen(Some(generation)).await {
                    tracing::debug!(error = %again, "re-opening the token failed");
                }
            }
        }
        r
    }

    /// Re-open the token, once for all callers that saw generation `seen` fail (`None`: the
    /// token is known to be down). Takes every session permit, so no call is inside the
    /// token meanwhile.
    async fn reopen(&self, seen: Option<u64>) -> Result<(), HsmError> {
        let _all = self
            .inner
            .permits
            .acquire_many(self.inner.pool_size as u32)
            .await
            .map_err(|_| HsmError::Other("session pool closed".into()))?;
        let healthy = self.inner.healthy.load(Ordering::Acquire);
        let refused_pin = match seen {
            Some(g) if self.generation() != g => return Ok(()), // someone else re-opened it
            Some(_) => None,
            None if healthy => return Ok(()),
            None => {
                let down = self.inner.down.lock().unwrap();
                match down.as_ref() {
                    Some(d) if d.at.elapsed() < REOPEN_BACKOFF => {
                        return Err(HsmError::Unavailable(d.reason.clone()))
                    }
                    Some(d) => d.refused_pin,
                    None => None,
                }
            }
        };
        let inner = self.inner.clone();
        let r = tokio::task::spawn_blocking(move || inner.reopen(refused_pin))
            .await
            .map_err(|e| {
                (
                    HsmError::Other(format!("re-opening the token did not complete: {e}")),
                    None,
                )
            })
            .and_then(|r| r);
        match r {
            Ok(()) => {
                self.inner.healthy.store(true, Ordering::Release);
                *self.inner.down.lock().unwrap() = None;
                crate::metrics::token_reopened();
                tracing::warn!(generation = self.generation(), "the token is open again: logged in, service keys found, cached key objects dropped");
                Ok(())
            }
            Err((e, refused)) => {
                tracing::error!(error = %e, "THE TOKEN CANNOT BE USED: re-opening it failed; every request that needs it fails until it can be re-opened");
                self.inner.healthy.store(false, Ordering::Release);
                let mut down = self.inner.down.lock().unwrap();
                let keep = down.as_ref().and_then(|d| d.refused_pin);
                *down = Some(Down {
                    at: std::time::Instant::now(),
                    reason: e.to_string(),
                    refused_pin: refused.or(keep),
                });
                Err(HsmError::Unavailable(e.to_string()))
            }
        }
    }

    /// Change the user PIN on the token (`C_SetPIN`, logged in as the user).
    pub fn set_pin(&self, new_pin: &SecretString) -> Result<Vec<String>, HsmError> {
        let old = self.inner.pin.lock().unwrap().clone();
        let refused = |e: CkError| match e {
            CkError::Pkcs11(RvError::PinInvalid, _) | CkError::Pkcs11(RvError::PinLenRange, _) => {
                HsmError::Other(
                    "the token refused the new PIN (CKR_PIN_INVALID / CKR_PIN_LEN_RANGE)".into(),
                )
            }
            e => e.into(),
        };
        let here = self.current_label();
        {
            let s = self.inner.pinned.lock().unwrap();
            s.set_pin(&old, new_pin).map_err(refused)?;
        }
        let mut changed = vec![here.clone()];
        // A pool's tokens all take one PIN: change it on each of them.
        for label in self.inner.labels.iter().filter(|l| **l != here) {
            let r = self
                .inner
                .log_in_to(label, &old)
                .and_then(|s| s.set_pin(&old, new_pin).map_err(refused));
            if let Err(e) = r {
                return Err(HsmError::Other(format!(
                    "the PIN is changed on {} but not on token '{label}' ({e}); change it there (or back) before the pool fails over",
                    changed.join(", ")
                )));
            }
            changed.push(label.clone());
        }
        Ok(changed)
    }

    /// Inject a token fault between calls (for the fault tests): every pool permit and the
    /// pinned session are held, so no call is inside the token when it happens.
    pub async fn inject_fault(&self, fault: Fault) -> Result<(), HsmError> {
        let _all = self
            .inner
            .permits
            .acquire_many(self.inner.pool_size as u32)
            .await
            .map_err(|_| HsmError::Other("session pool closed".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pinned = inner.pinned.lock().unwrap();
            match fault {
                Fault::CloseSessions => {
                    let raw = inner.raw.as_ref().ok_or_else(|| {
                        HsmError::Other("the module's raw function list is not loaded".into())
                    })?;
                    // No call is in the token.
                    let rv = raw.close_all_sessions(inner.slot.lock().unwrap().id());
                    if rv != 0 {
                        return Err(HsmError::Other(format!(
                            "C_CloseAllSessions returned {rv:#x}"
                        )));
                    }
                    Ok(())
                }
                Fault::Logout => ck(pinned.logout()),
                Fault::Finalize => ck(inner.ctx.clone().finalize()),
            }
        })
        .await
        .map_err(|e| HsmError::Other(e.to_string()))?
    }

    /// Generate a fresh AES-256 key in the token and return it wrapped under the root key,
    /// with the root key version that wrapped it. The cleartext key never leaves the token.
    pub async fn generate_wrapped_aes256(&self) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            let key = ck(s.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::ValueLen(32.into()),
                ],
            ))?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }

    /// Unwrap an AES key blob into a non-extractable session object for encrypt/decrypt.
    pub async fn unwrap_aes(
        &self,
        blob: Vec<u8>,
        root_version: u32,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        self.unwrap(
            blob,
            root_version,
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ],
        )
        .await
    }

    /// Unwrap an HMAC secret blob into a non-extractable session object that can sign.
    pub async fn unwrap_hmac_secret(
        &self,
        blob: Vec<u8>,
        root_version: u32,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        self.unwrap(
            blob,
            root_version,
            vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Verify(true),
            ],
        )
        .await
    }

    async fn unwrap(
        &self,
        blob: Vec<u8>,
        root_version: u32,
        template: Vec<Attribute>,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        let reaper = self.inner.reaper.clone();
        let current = self.inner.generation.clone();
        // The handle is made inside the blocking task, so the object is destroyed even if the
        // caller is cancelled before the task returns.
        self.run_pinned(move |s| {
            let root = s.root_of(root_version)?;
            let obj = s.unwrap5649(root, &blob, &template)?;
            Ok(Arc::new(KeyHandle {
                obj,
                generation: current.load(Ordering::Acquire),
                current,
                reaper,
            }))
        })
        .await
    }

    /// Re-wrap a stored blob under the current root key: unwrapped under the root key of
    /// `from` (the version the blob records) into an extractable session object, wrapped under
    /// the current root, and destroyed, on every path. The key never leaves the token in
    /// plaintext. Returns the new blob and the current root version.
    pub async fn rewrap(
        &self,
        blob: Vec<u8>,
        from: u32,
        kind: BlobKind,
    ) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            if from == version {
                return Err(HsmError::Other(format!(
                    "the blob is wrapped under root key v{version} already"
                )));
            }
            let template = match kind {
                BlobKind::Aes => vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                ],
                BlobKind::Secret => vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(false),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(true),
                    Attribute::Sign(true),
                    Attribute::Verify(true),
                ],
                BlobKind::Private(kind, use_) => asym::private_template(kind, use_, true),
            };
            let key = s.unwrap5649(s.root_of(from)?, &blob, &template)?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }

    /// Create root key `version` in the token (and copy it to every token of a pool, as
    /// `kms init` does), and make it the one new blobs are wrapped under; older versions stay
    /// for the blobs that record them. Returns whether it was created (false: it was there).
    pub fn add_root_key(&self, version: u32) -> Result<bool, HsmError> {
        let (created, _) = self.ensure_service_keys(version)?;
        if self.is_pool() {
            self.replicate_service_keys(version)?;
            self.load_service_keys(version)?;
        }
        Ok(created)
    }

    /// Destroy root key `version` (not the current one) in the token and in every token of a
    /// pool: blobs still wrapped under it could never be unwrapped again, so the caller first
    /// makes sure none is left. Returns the labels of the tokens it was destroyed in.
    pub fn destroy_root_key(&self, version: u32) -> Result<Vec<String>, HsmError> {
        if self.root_version()? == version {
            return Err(HsmError::Other(format!(
                "root key v{version} is the current root key; rotate to a new one first"
            )));
        }
        let label = root_key_label(version);
        let mut done = Vec::new();
        {
            let s = self
                .inner
                .pinned
                .lock()
                .expect("pinned session lock poisoned");
            if let Some(h) = find_one(&s, &label)? {
                ck(s.destroy_object(h))?;
                done.push(self.current_label());
            }
        }
        done.extend(self.destroy_in_other_tokens(&label)?);
        self.inner
            .older_roots
            .lock()
            .unwrap()
            .retain(|(v, _)| *v != version);
        Ok(done)
    }

    /// Import a caller-supplied secret (an access key's signing secret) as a generic secret and
    /// return it wrapped under the root key. The session object is destroyed before returning.
    pub async fn wrap_hmac_secret(
        &self,
        secret: Zeroizing<Vec<u8>>,
    ) -> Result<(Vec<u8>, u32), HsmError> {
        self.run(move |s| {
            let (version, root) = s.root()?;
            let mut template = vec![
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Value(secret.to_vec()),
            ];
            let created = ck(s.create_object(&template));
            for a in template.iter_mut() {
                if let Attribute::Value(v) = a {
                    zeroize::Zeroize::zeroize(v);
                }
            }
            let key = created?;
            Ok((wrap_and_destroy(s, root, key)?, version))
        })
        .await
    }

    /// HMAC-SHA256 in the token with an unwrapped secret.
    pub async fn hmac_sha256(
        &self,
        key: Arc<KeyHandle>,
        data: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run_fast(move |s| {
            ck(s.sign(&Mechanism::Sha256Hmac, s.obj(&key)?, &data)).map(Zeroizing::new)
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
    pub async fn row_mac_matches(&self, data: Vec<u8>, mac: &[u8]) -> Result<bool, HsmError> {
        let Some((version, hmac)) = mac_parts(mac) else {
            return Ok(false);
        };
        let hmac = hmac.to_vec();
        self.run_fast(move |s| {
            let Some(key) = s.mac_of(version)? else {
                tracing::warn!(
                    mac_version = version,
                    "a row is MAC'd under a MAC key the token no longer holds; refusing it"
                );
                return Ok(false);
            };
            let expect = ck(s.sign(&Mechanism::Sha256Hmac, key, &data))?;
            Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
                expect.as_slice(),
                hmac.as_slice(),
            )))
        })
        .await
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

    fn held_mac_version(&self) -> u32 {
        self.mac_version().unwrap_or(1)
    }

    /// Create MAC key `version` in the token (and copy it to every token of a pool) and make it
    /// the one new row MACs are made with; older versions stay for the rows MAC'd under them.
    /// Returns whether it was created (false: it was there).
    pub fn add_mac_key(&self, version: u32) -> Result<bool, HsmError> {
        let clonable = self.is_pool();
        let label = mac_key_label(version);
        let created = {
            let s = self
                .inner
                .pinned
                .lock()
                .expect("pinned session lock poisoned");
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
        let s = self
            .inner
            .pinned
            .lock()
            .expect("pinned session lock poisoned");
        let mut v = version.max(1);
        while find_one(&s, &mac_key_label(v + 1))?.is_some() {
            v += 1;
        }
        Ok(v)
    }

    /// Use MAC key `version` for new row MACs from now on (another process rotated it): it
    /// must be in the token as a service MAC key must be; older versions stay for verifying.
    pub fn load_mac_key(&self, version: u32) -> Result<(), HsmError> {
        let s = self
            .inner
            .pinned
            .lock()
            .expect("pinned session lock poisoned");
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
        let mut done = Vec::new();
        {
            let s = self
                .inner
                .pinned
                .lock()
                .expect("pinned session lock poisoned");
            if let Some(h) = find_one(&s, &label)? {
                ck(s.destroy_object(h))?;
                done.push(self.current_label());
            }
        }
        done.extend(self.destroy_in_other_tokens(&label)?);
        self.inner
            .older_macs
            .lock()
            .unwrap()
            .retain(|(v, _)| *v != version);
        Ok(done)
    }

    /// AES-256-GCM encryption in the token with a 96-bit IV and a 128-bit tag; returns
    /// ciphertext || tag.
    pub async fn gcm_encrypt(
        &self,
        key: Arc<KeyHandle>,
        iv: [u8; 12],
        aad: Vec<u8>,
        plaintext: Zeroizing<Vec<u8>>,
    ) -> Result<Vec<u8>, HsmError> {
        self.run_fast(move |s| {
            let mut iv = iv;
            let params = ck(GcmParams::new(&mut iv, &aad, 128.into()))?;
            ck(s.encrypt(&Mechanism::AesGcm(params), s.obj(&key)?, &plaintext))
        })
        .await
    }

    /// AES-256-GCM decryption in the token; the tag is checked by the token.
    pub async fn gcm_decrypt(
        &self,
        key: Arc<KeyHandle>,
        iv: [u8; 12],
        aad: Vec<u8>,
        ciphertext: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run_fast(move |s| {
            let mut iv = iv;
            let params = ck(GcmParams::new(&mut iv, &aad, 128.into()))?;
            s.bad_ciphertext(ck(s.decrypt(
                &Mechanism::AesGcm(params),
                s.obj(&key)?,
                &ciphertext,
            )))
            .map(Zeroizing::new)
        })
        .await
    }

    /// `n` bytes from the token's RNG.
    pub async fn random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run_fast(move |s| {
            let mut buf = Zeroizing::new(vec![0u8; n]);
            ck(s.generate_random_slice(&mut buf))?;
            Ok(buf)
        })
        .await
    }
}

/// The mechanisms the service needs besides RFC 5649 wrap (chosen by `choose_rfc5649`),
/// checked once at start-up.
pub fn check_mechanisms(mechs: &[MechanismType]) -> Result<(), HsmError> {
    let need = [
        (MechanismType::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
        (MechanismType::AES_GCM, "CKM_AES_GCM"),
        (MechanismType::SHA256_HMAC, "CKM_SHA256_HMAC"),
        (
            MechanismType::GENERIC_SECRET_KEY_GEN,
            "CKM_GENERIC_SECRET_KEY_GEN",
        ),
    ];
    for (m, name) in need {
        if !mechs.contains(&m) {
            return Err(HsmError::MechanismMissing { what: name });
        }
    }
    Ok(())
}

/// The one token object of `class` labelled `label`, if any.
/// The root keys of versions below `current` still in the token (each checked as a root key
/// must be): older versions are kept until an operator destroys them.
fn older_roots(s: &Session, current: u32) -> Result<Vec<(u32, ObjectHandle)>, HsmError> {
    let mut out = Vec::new();
    for v in 1..current {
        let label = root_key_label(v);
        if let Some(h) = find_one(s, &label)? {
            verify_service_key(s, h, &label, AttributeType::Wrap, false)?;
            out.push((v, h));
        }
    }
    Ok(out)
}

/// The MAC keys of versions below `current` still in the token (each checked as a MAC key
/// must be).
fn older_macs(s: &Session, current: u32) -> Result<Vec<(u32, ObjectHandle)>, HsmError> {
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

fn find_one(s: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
    find_labelled(s, ObjectClass::SECRET_KEY, label)
}

fn find_labelled(
    s: &Session,
    class: ObjectClass,
    label: &str,
) -> Result<Option<ObjectHandle>, HsmError> {
    let found = ck(s.find_objects(&[
        Attribute::Token(true),
        Attribute::Class(class),
        Attribute::Label(label.as_bytes().to_vec()),
    ]))?;
    match found.len() {
        0 => Ok(None),
        1 => Ok(Some(found[0])),
        n => Err(HsmError::Other(format!(
            "the token holds {n} keys labelled '{label}'; expected exactly one"
        ))),
    }
}

/// A service key must be sensitive, never extractable, and able to do its one job.
/// `extractable_for_now`: in `kms init` of a pool, before the keys are copied to its tokens.
fn verify_service_key(
    s: &Session,
    h: ObjectHandle,
    label: &str,
    purpose: AttributeType,
    extractable_for_now: bool,
) -> Result<(), HsmError> {
    let attrs = ck(s.get_attributes(
        h,
        &[
            AttributeType::Sensitive,
            AttributeType::Extractable,
            purpose,
        ],
    ))?;
    let mut ok = attrs.len() == 3;
    for a in &attrs {
        ok &= match a {
            Attribute::Sensitive(v) => *v,
            Attribute::Extractable(v) => !*v || extractable_for_now,
            Attribute::Wrap(v) | Attribute::Sign(v) => *v,
            _ => false,
        };
    }
    if ok {
        Ok(())
    } else {
        Err(HsmError::Other(format!(
            "the token key '{label}' is not a sensitive, non-extractable key with the expected usage; refusing to use it"
        )))
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

    #[test]
    fn a_missing_mechanism_is_named() {
        let all = vec![
            MechanismType::AES_KEY_GEN,
            MechanismType::AES_GCM,
            MechanismType::SHA256_HMAC,
            MechanismType::GENERIC_SECRET_KEY_GEN,
        ];
        check_mechanisms(&all).unwrap();
        for i in 0..all.len() {
            let mut fewer = all.clone();
            fewer.remove(i);
            let e = check_mechanisms(&fewer).unwrap_err().to_string();
            assert!(
                e.starts_with("the token does not offer ") && e.contains("CKM_"),
                "{e}"
            );
        }
    }
}
