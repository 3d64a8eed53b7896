//! Sessions: finding the token and logging in (never offering a PIN it refused), the pinned
//! session and the pool, opening a failover token's sessions and installing them when the
//! token is lost, the reaper thread that destroys dropped key objects, and loading the
//! PKCS#11 module (with the SoftHSM token `kms init` may create). Separate from `run.rs`
//! (the calls that use these sessions) because it is the token's state machine, not a call.

use super::*;

/// Return codes that mean the session, the login or the token itself is gone: the service
/// re-opens the token rather than report the same failure forever.
pub(super) fn token_lost(e: &HsmError) -> bool {
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
pub(super) fn find_slot(
    ctx: &Pkcs11,
    label: &str,
) -> Result<(Slot, cryptoki::slot::TokenInfo), HsmError> {
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

/// The PIN (its digest) each token this process logged in to took, by module and token (label
/// and serial number): login state is per process, so once one session logged in, the token
/// checks no PIN another offers.
static LOGGED_IN: Mutex<std::collections::BTreeMap<String, [u8; 32]>> =
    Mutex::new(std::collections::BTreeMap::new());

/// How an [`Hsm`] logs in to its tokens.
pub(super) struct LoginRule {
    /// The PKCS#11 module's path: with the token's label and serial number, which token.
    pub module: String,
    /// Hold a login the token does not check (this process is logged in to it already) to the
    /// PIN that logged in ([`HsmConfig::strict_login`]).
    pub strict: bool,
}

/// `C_Login` as the user on the token `token` describes; "already logged in" is success (login
/// state is per process). Under a strict rule, only for the PIN that logged this process in:
/// the token checks no PIN then, so a different one (a second custom key store over the same
/// token with a wrong PIN) is refused here, as the token would have refused it.
pub(super) fn login(
    session: &Session,
    rule: &LoginRule,
    token: &cryptoki::slot::TokenInfo,
    pin: &SecretString,
) -> Result<(), HsmError> {
    let key = format!(
        "{}\u{0}{}\u{0}{}",
        rule.module,
        token.label().trim_end(),
        token.serial_number().trim_end()
    );
    let digest = pin_digest(pin);
    // Held across C_Login: a login racing another on the same token finds its PIN recorded.
    let mut logged_in = LOGGED_IN.lock().unwrap();
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => {
            logged_in.insert(key, digest);
            Ok(())
        }
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match logged_in.get(&key) {
            Some(took) if *took == digest => Ok(()),
            _ if !rule.strict => Ok(()),
            // Another PIN logged in (or one this process did not record): not checked, refused.
            _ => Err(HsmError::LoggedInWithAnotherPin),
        },
        Err(CkError::Pkcs11(RvError::PinIncorrect, _))
        | Err(CkError::Pkcs11(RvError::PinInvalid, _))
        | Err(CkError::Pkcs11(RvError::PinLenRange, _)) => Err(HsmError::PinIncorrect),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked),
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
pub(super) fn record_call<R>(
    session: &'static str,
    started: std::time::Instant,
    r: &Result<R, HsmError>,
) {
    crate::metrics::token_call(
        session,
        started.elapsed(),
        r.as_ref().err().map(HsmError::label),
    );
}

impl Inner {
    /// Run `f` on a session taken from the pool (or opened if the pool is empty) and give it
    /// back, unless the token no longer knows it. The caller holds a pool permit.
    pub(super) fn with_pooled_session<R>(
        &self,
        prefer: Option<Prefer>,
        f: impl FnOnce(&Tok) -> Result<R, HsmError>,
    ) -> Result<R, HsmError> {
        let pooled = {
            let mut pool = self.pool.lock().unwrap();
            // A session whose message-based operation is set up for the key, else one set up
            // for no key (another key's stays for it), else the last.
            let chosen = prefer.and_then(|p| {
                let key = p.key as *const KeyHandle;
                pool.iter()
                    .rposition(|s| s.messages.borrow().is_for(p.direction, key))
                    .or_else(|| {
                        pool.iter()
                            .rposition(|s| s.messages.borrow().is_free(p.direction))
                    })
            });
            match chosen {
                Some(i) => Some(pool.swap_remove(i)),
                None => pool.pop(),
            }
        };
        let pooled = match pooled {
            Some(s) => s,
            None => Pooled::new(ck(self.ctx.open_rw_session(*self.slot.lock().unwrap()))?),
        };
        let r = f(&Tok {
            session: &pooled.session,
            inner: self,
            messages: Some(&pooled.messages),
        });
        if r.as_ref().err().is_some_and(token_lost) {
            // Its handle may be reused by the token once re-opened: never close it.
            std::mem::forget(pooled.session);
        } else {
            let stale = pooled.messages.borrow().is_stale(!self.messages_on());
            {
                let mut pool = self.pool.lock().unwrap();
                if pool.len() < self.pool_size {
                    pool.push(pooled);
                }
            }
            if stale {
                self.end_stale_messages();
            }
        }
        r
    }

    /// End the message-based operations of idle pooled sessions whose key's handle is gone (all
    /// of them once messages are off): the token's copy of such a key goes with them. Each such
    /// session is taken out of the pool for its call and put back.
    fn end_stale_messages(&self) {
        let all = !self.messages_on();
        let stale: Vec<Pooled> = {
            let mut pool = self.pool.lock().unwrap();
            let (stale, keep) = std::mem::take(&mut *pool)
                .into_iter()
                .partition(|p| p.messages.borrow().is_stale(all));
            *pool = keep;
            stale
        };
        for p in stale {
            p.messages
                .borrow_mut()
                .end_stale(self.raw.as_ref(), &p.session, all);
            let mut pool = self.pool.lock().unwrap();
            if pool.len() < self.pool_size {
                pool.push(p);
            }
        }
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
    pub(super) fn reopen(
        &self,
        refused_pin: Option<[u8; 32]>,
    ) -> Result<(), (HsmError, Option<[u8; 32]>)> {
        let mut pinned = self.pinned.lock().unwrap();
        let old_slot = *self.slot.lock().unwrap();
        if let Some(raw) = &self.raw {
            // No call is inside the token now.
            raw.close_all_sessions(old_slot.id());
        }
        // The old sessions are closed (or died with the token): forget their handles.
        for s in self.pool.lock().unwrap().drain(..) {
            std::mem::forget(s.session);
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
    pub(super) fn log_in_to(&self, label: &str, pin: &SecretString) -> Result<Session, HsmError> {
        let (slot, info) = find_slot(&self.ctx, label)?;
        let session = ck(self.ctx.open_rw_session(slot))?;
        login(&session, &self.login, &info, pin)?;
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
        let (slot, info) = find_slot(&self.ctx, label).map_err(|e| (e, None))?;
        let session = ck(self.ctx.open_rw_session(slot)).map_err(|e| (e, None))?;
        login(&session, &self.login, &info, pin).map_err(|e| {
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
        // Another token of the pool (or the same one, re-initialised) is asked afresh whether
        // it does AES-GCM as messages; its pooled sessions are new, set up for no key.
        let messages = super::messages::gcm_messages(self.raw.as_ref(), o.slot);
        self.gcm_messages.store(messages, Ordering::Relaxed);
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

pub(super) fn spawn_reaper(
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

/// Load a PKCS#11 module and initialise it with OS locking ("already initialised" is fine).
pub(super) fn load_module(module: &str) -> Result<Pkcs11, HsmError> {
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
