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
mod error;

pub use asym::{Curve, Hash, PairKind, PrivateUse, PublicKey, SignScheme, AUDIT_KEY_LABEL};
pub use error::HsmError;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Label of the root wrapping key of a given version.
pub fn root_key_label(version: u32) -> String {
    format!("kms-root-wrapping-key-v{version}")
}
/// Label of the token-held HMAC key that authenticates database rows.
/// The RFC 5649 wrap mechanism; `open` refuses tokens that do not offer it.
const WRAP: Mechanism<'static> = Mechanism::AesKeyWrapPad;

pub const MAC_KEY_LABEL: &str = "kms-metadata-mac-key-v1";

pub struct HsmConfig {
    pub module: String,
    pub token_label: String,
    pub pin: SecretString,
    pub pool_size: usize,
    /// Run short calls (`run_fast`) on the caller's thread.
    pub inline_calls: bool,
}

/// What the token offers that the service relies on, probed once at start-up.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// The RFC 5649 wrap mechanism this token implements.
    pub wrap: MechanismType,
    pub manufacturer: String,
    pub model: String,
    /// Every mechanism the token lists.
    pub mechanisms: Vec<MechanismType>,
    /// Whether RSAES-OAEP with SHA-256 works (probed; SoftHSM 2.6.1 has SHA-1 only).
    pub oaep_sha256: bool,
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
    slot: Slot,
    caps: Capabilities,
    /// Logged in for the life of the process; owns every unwrapped session object.
    pinned: Arc<Mutex<Session>>,
    pool: Mutex<Vec<Session>>,
    pool_size: usize,
    inline_calls: bool,
    permits: Arc<tokio::sync::Semaphore>,
    /// Objects to destroy, handed to a dedicated thread so that dropping a handle never
    /// blocks (or deadlocks) the caller.
    reaper: std::sync::mpsc::Sender<Reap>,
    reaper_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    root: Mutex<Option<(u32, ObjectHandle)>>,
    mac: Mutex<Option<ObjectHandle>>,
    /// Whether Ed25519 private keys can be generated and wrapped (probed once the root key is
    /// loaded; SoftHSM 2.6.1 generates them but cannot wrap them).
    ed25519: std::sync::atomic::AtomicBool,
    /// The audit signing key pair (private, public), once found or created.
    audit: Mutex<Option<(ObjectHandle, ObjectHandle)>>,
}

/// Work for the reaper thread.
enum Reap {
    Destroy(ObjectHandle),
    Stop,
}

impl Inner {
    /// Run `f` on a session taken from the pool (or opened if the pool is empty) and give it
    /// back, unless the token no longer knows it. The caller holds a pool permit.
    fn with_pooled_session<R>(
        &self,
        f: impl FnOnce(&Session) -> Result<R, HsmError>,
    ) -> Result<R, HsmError> {
        let pooled = self.pool.lock().unwrap().pop();
        let session = match pooled {
            Some(s) => s,
            None => ck(self.ctx.open_rw_session(self.slot))?,
        };
        let r = f(&session);
        let broken = matches!(
            r.as_ref().err().and_then(HsmError::rv),
            Some(RvError::SessionHandleInvalid)
                | Some(RvError::SessionClosed)
                | Some(RvError::DeviceRemoved)
                | Some(RvError::TokenNotPresent)
        );
        if !broken {
            let mut pool = self.pool.lock().unwrap();
            if pool.len() < self.pool_size {
                pool.push(session);
            }
        }
        r
    }
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
}

impl Drop for KeyHandle {
    fn drop(&mut self) {
        // The reaper thread lives as long as the process; if it is gone, so is the session
        // that owned the object.
        let _ = self.reaper.send(Reap::Destroy(self.obj));
    }
}

fn spawn_reaper(
    pinned: Arc<Mutex<Session>>,
) -> (
    std::sync::mpsc::Sender<Reap>,
    Option<std::thread::JoinHandle<()>>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<Reap>();
    let spawned = std::thread::Builder::new().name("kms-hsm-reaper".into()).spawn(move || {
        for msg in rx {
            let Reap::Destroy(obj) = msg else { return };
            let Ok(s) = pinned.lock() else { return };
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
fn wrap_and_destroy(
    s: &Session,
    root: ObjectHandle,
    key: ObjectHandle,
) -> Result<Vec<u8>, HsmError> {
    let wrapped = ck(s.wrap_key(&WRAP, root, key));
    let destroyed = ck(s.destroy_object(key));
    let wrapped = wrapped?;
    destroyed?;
    Ok(wrapped)
}

fn ck<T>(r: Result<T, CkError>) -> Result<T, HsmError> {
    r.map_err(HsmError::from)
}

impl Hsm {
    /// Load the module, find the token by label, probe its mechanisms, log in and open the
    /// session pool. Every failure is one sentence an operator can act on.
    pub fn open(cfg: &HsmConfig) -> Result<Hsm, HsmError> {
        if !std::path::Path::new(&cfg.module).exists() {
            return Err(HsmError::ModuleLoad {
                path: cfg.module.clone(),
                detail: "no such file".into(),
            });
        }
        let ctx = Pkcs11::new(&cfg.module).map_err(|e| HsmError::ModuleLoad {
            path: cfg.module.clone(),
            detail: e.to_string(),
        })?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(e.into()),
        }
        let mut found = None;
        for slot in ck(ctx.get_slots_with_token())? {
            let info = ck(ctx.get_token_info(slot))?;
            if info.label().trim_end() == cfg.token_label {
                found = Some((slot, info));
                break;
            }
        }
        let (slot, info) = found.ok_or_else(|| HsmError::TokenNotFound {
            label: cfg.token_label.clone(),
        })?;
        let mechs = ck(ctx.get_mechanism_list(slot))?;
        let wrap = check_mechanisms(&mechs)?;
        let mut caps = Capabilities {
            wrap,
            manufacturer: info.manufacturer_id().trim().to_string(),
            model: info.model().trim().to_string(),
            mechanisms: mechs.clone(),
            oaep_sha256: false,
        };
        let pinned = ck(ctx.open_rw_session(slot))?;
        match pinned.login(UserType::User, Some(&cfg.pin)) {
            Ok(()) => {}
            Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _))
            | Err(CkError::Pkcs11(RvError::PinInvalid, _))
            | Err(CkError::Pkcs11(RvError::PinLenRange, _)) => return Err(HsmError::PinIncorrect),
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                return Err(HsmError::Other(
                    "the user PIN is locked (CKR_PIN_LOCKED); the security officer must reset it"
                        .into(),
                ))
            }
            Err(e) => return Err(e.into()),
        }
        if caps.has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) && caps.has(MechanismType::RSA_PKCS_OAEP)
        {
            caps.oaep_sha256 = asym::probe_oaep_sha256(&pinned)?;
        }
        let pool_size = cfg.pool_size.max(1);
        let mut pool = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            pool.push(ck(ctx.open_rw_session(slot))?);
        }
        let pinned = Arc::new(Mutex::new(pinned));
        let (reaper, reaper_thread) = spawn_reaper(pinned.clone());
        Ok(Hsm {
            inner: Arc::new(Inner {
                ctx,
                slot,
                caps,
                pinned,
                pool: Mutex::new(pool),
                pool_size,
                inline_calls: cfg.inline_calls,
                permits: Arc::new(tokio::sync::Semaphore::new(pool_size)),
                reaper,
                reaper_thread: Mutex::new(reaper_thread),
                root: Mutex::new(None),
                mac: Mutex::new(None),
                ed25519: std::sync::atomic::AtomicBool::new(false),
                audit: Mutex::new(None),
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
        let root = match find_one(&s, &root_label)? {
            Some(h) => h,
            None => {
                created.0 = true;
                ck(s.generate_key(
                    &Mechanism::AesKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Wrap(true),
                        Attribute::Unwrap(true),
                        Attribute::Encrypt(false),
                        Attribute::Decrypt(false),
                        Attribute::Sign(false),
                        Attribute::Verify(false),
                        Attribute::Derive(false),
                        Attribute::ValueLen(32.into()),
                        Attribute::Label(root_label.clone().into_bytes()),
                    ],
                ))?
            }
        };
        verify_service_key(&s, root, &root_label, AttributeType::Wrap)?;
        let mac = match find_one(&s, MAC_KEY_LABEL)? {
            Some(h) => h,
            None => {
                created.1 = true;
                ck(s.generate_key(
                    &Mechanism::GenericSecretKeyGen,
                    &[
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(true),
                        Attribute::Extractable(false),
                        Attribute::Sign(true),
                        Attribute::Verify(true),
                        Attribute::Derive(false),
                        Attribute::KeyType(KeyType::GENERIC_SECRET),
                        Attribute::ValueLen(32.into()),
                        Attribute::Label(MAC_KEY_LABEL.as_bytes().to_vec()),
                    ],
                ))?
            }
        };
        verify_service_key(&s, mac, MAC_KEY_LABEL, AttributeType::Sign)?;
        *self.inner.root.lock().unwrap() = Some((root_version, root));
        *self.inner.mac.lock().unwrap() = Some(mac);
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
        verify_service_key(&s, root, &root_label, AttributeType::Wrap)?;
        let mac = find_one(&s, MAC_KEY_LABEL)?.ok_or(HsmError::ServiceKeyMissing {
            label: MAC_KEY_LABEL.into(),
        })?;
        verify_service_key(&s, mac, MAC_KEY_LABEL, AttributeType::Sign)?;
        *self.inner.root.lock().unwrap() = Some((root_version, root));
        *self.inner.mac.lock().unwrap() = Some(mac);
        self.probe_with_root(&s, root);
        Ok(())
    }

    /// Capabilities that need the root key to probe.
    fn probe_with_root(&self, s: &Session, root: ObjectHandle) {
        let ed = self.inner.caps.has(MechanismType::ECC_EDWARDS_KEY_PAIR_GEN)
            && asym::probe_ed25519(s, root);
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

    fn root(&self) -> Result<(u32, ObjectHandle), HsmError> {
        self.inner
            .root
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: root_key_label(1),
            })
    }

    fn mac_key(&self) -> Result<ObjectHandle, HsmError> {
        self.inner
            .mac
            .lock()
            .unwrap()
            .ok_or(HsmError::ServiceKeyMissing {
                label: MAC_KEY_LABEL.into(),
            })
    }

    /// The version of the root key that wraps new blobs.
    pub fn root_version(&self) -> Result<u32, HsmError> {
        Ok(self.root()?.0)
    }

    /// Run `f` on a pooled session on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Session) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
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
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner.with_pooled_session(f)
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(HsmError::Other(format!("token call did not complete: {e}"))),
        }
    }

    /// Run a short call (microseconds on a local token) on a pooled session. With
    /// `inline_calls` it runs on the caller's thread, saving the hand-off to the blocking pool
    /// (which costs more than the call); otherwise it is `run`.
    pub async fn run_fast<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Session) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        if !self.inner.inline_calls {
            return self.run(f).await;
        }
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| HsmError::Other("session pool closed".into()))?;
        self.inner.with_pooled_session(f)
    }

    /// Run `f` on the pinned session (for objects that must outlive any pooled session).
    async fn run_pinned<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Session) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let s = inner.pinned.lock().expect("pinned session lock poisoned");
            f(&s)
        })
        .await
        .map_err(|e| HsmError::Other(format!("token call did not complete: {e}")))?
    }

    /// Generate a fresh AES-256 key in the token and return it wrapped under the root key,
    /// with the root key version that wrapped it. The cleartext key never leaves the token.
    pub async fn generate_wrapped_aes256(&self) -> Result<(Vec<u8>, u32), HsmError> {
        let (version, root) = self.root()?;
        let blob = self
            .run(move |s| {
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
                wrap_and_destroy(s, root, key)
            })
            .await?;
        Ok((blob, version))
    }

    /// Unwrap an AES key blob into a non-extractable session object for encrypt/decrypt.
    pub async fn unwrap_aes(&self, blob: Vec<u8>) -> Result<Arc<KeyHandle>, HsmError> {
        self.unwrap(
            blob,
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
    pub async fn unwrap_hmac_secret(&self, blob: Vec<u8>) -> Result<Arc<KeyHandle>, HsmError> {
        self.unwrap(
            blob,
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
        template: Vec<Attribute>,
    ) -> Result<Arc<KeyHandle>, HsmError> {
        let (_, root) = self.root()?;
        let reaper = self.inner.reaper.clone();
        // The handle is made inside the blocking task, so the object is destroyed even if the
        // caller is cancelled before the task returns.
        self.run_pinned(move |s| {
            let obj = ck(s.unwrap_key(&WRAP, root, &blob, &template))?;
            Ok(Arc::new(KeyHandle { obj, reaper }))
        })
        .await
    }

    /// Import a caller-supplied secret (an access key's signing secret) as a generic secret and
    /// return it wrapped under the root key. The session object is destroyed before returning.
    pub async fn wrap_hmac_secret(
        &self,
        secret: Zeroizing<Vec<u8>>,
    ) -> Result<(Vec<u8>, u32), HsmError> {
        let (version, root) = self.root()?;
        let blob = self
            .run(move |s| {
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
                wrap_and_destroy(s, root, key)
            })
            .await?;
        Ok((blob, version))
    }

    /// HMAC-SHA256 in the token with an unwrapped secret.
    pub async fn hmac_sha256(
        &self,
        key: Arc<KeyHandle>,
        data: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        self.run_fast(move |s| {
            ck(s.sign(&Mechanism::Sha256Hmac, key.obj, &data)).map(Zeroizing::new)
        })
        .await
    }

    /// MAC over a database row, computed with the token-held, non-extractable MAC key.
    pub async fn row_mac(&self, data: Vec<u8>) -> Result<Vec<u8>, HsmError> {
        let mac = self.mac_key()?;
        self.run_fast(move |s| ck(s.sign(&Mechanism::Sha256Hmac, mac, &data)))
            .await
    }

    /// Whether `mac` is the row MAC of `data` (computed in the token, compared in constant
    /// time): the one check behind every row the service refuses to trust unverified.
    pub async fn row_mac_matches(&self, data: Vec<u8>, mac: &[u8]) -> Result<bool, HsmError> {
        let expect = self.row_mac(data).await?;
        Ok(bool::from(subtle::ConstantTimeEq::ct_eq(
            expect.as_slice(),
            mac,
        )))
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
            ck(s.encrypt(&Mechanism::AesGcm(params), key.obj, &plaintext))
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
            ck(s.decrypt(&Mechanism::AesGcm(params), key.obj, &ciphertext)).map(Zeroizing::new)
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

/// The mechanisms the service needs, checked once at start-up; returns the RFC 5649 wrap
/// mechanism to use. SoftHSM calls RFC 5649 `CKM_AES_KEY_WRAP_PAD` (0x210A); PKCS#11 3.0
/// tokens name it `CKM_AES_KEY_WRAP_KWP` (0x210B), which cryptoki 0.12 cannot express, so such
/// a token is refused with a sentence that says so.
pub fn check_mechanisms(mechs: &[MechanismType]) -> Result<MechanismType, HsmError> {
    let need = [
        (MechanismType::AES_KEY_GEN, "CKM_AES_KEY_GEN"),
        (MechanismType::AES_GCM, "CKM_AES_GCM"),
        (MechanismType::SHA256_HMAC, "CKM_SHA256_HMAC"),
        (
            MechanismType::GENERIC_SECRET_KEY_GEN,
            "CKM_GENERIC_SECRET_KEY_GEN",
        ),
        (
            MechanismType::AES_KEY_WRAP_PAD,
            "RFC 5649 key wrap (CKM_AES_KEY_WRAP_PAD)",
        ),
    ];
    for (m, name) in need {
        if !mechs.contains(&m) {
            return Err(HsmError::MechanismMissing { what: name });
        }
    }
    Ok(MechanismType::AES_KEY_WRAP_PAD)
}

/// The one token object of `class` labelled `label`, if any.
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
fn verify_service_key(
    s: &Session,
    h: ObjectHandle,
    label: &str,
    purpose: AttributeType,
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
            Attribute::Extractable(v) => !*v,
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
    fn a_missing_mechanism_is_named() {
        let all = vec![
            MechanismType::AES_KEY_GEN,
            MechanismType::AES_GCM,
            MechanismType::SHA256_HMAC,
            MechanismType::GENERIC_SECRET_KEY_GEN,
            MechanismType::AES_KEY_WRAP_PAD,
        ];
        assert_eq!(
            check_mechanisms(&all).unwrap(),
            MechanismType::AES_KEY_WRAP_PAD
        );
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
