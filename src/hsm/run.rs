//! Running calls: [`Hsm::open`], the calls that run a closure on a pooled or the pinned
//! session (on the blocking pool, or inline for short calls), the health check, re-opening a
//! lost token (or a failover token) behind every call, changing the PIN and fault injection
//! for tests. Separate from `session.rs`, which holds the sessions these calls borrow.

use super::*;

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
        let login_rule = session::LoginRule {
            module: cfg.module.clone(),
            strict: cfg.strict_login,
        };
        login(&pinned, &login_rule, &info, &cfg.pin)?;
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
            rsa_raw: false,
            oaep_sha256_import_in_service: false,
            curves: vec![],
        };
        if caps.has(MechanismType::RSA_PKCS_KEY_PAIR_GEN) {
            (caps.oaep_sha256, caps.rsa_raw) = asym::probe_rsa_decryption(
                &pinned,
                caps.has(MechanismType::RSA_PKCS_OAEP),
                caps.has(MechanismType::RSA_X_509),
            )?;
        }
        caps.oaep_sha256_import_in_service =
            cfg.oaep_sha256_import_in_service && !caps.oaep_sha256 && caps.rsa_raw;
        if caps.has(MechanismType::ECC_KEY_PAIR_GEN) {
            caps.curves = asym::probe_curves(&pinned);
        }
        let pool_size = cfg.pool_size.max(1);
        let mut pool = Vec::with_capacity(pool_size);
        for _ in 0..pool_size {
            pool.push(Pooled::new(ck(ctx.open_rw_session(slot))?));
        }
        let gcm_messages = messages::gcm_messages(raw.as_ref(), slot);
        tracing::debug!(gcm_messages, "AES-GCM as PKCS#11 3.0 messages");
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
                login: login_rule,
                slot: Mutex::new(slot),
                caps,
                pinned,
                pool: Mutex::new(pool),
                pool_size,
                gcm_messages: AtomicBool::new(gcm_messages),
                inline_calls: cfg.inline_calls,
                permits: Arc::new(tokio::sync::Semaphore::new(pool_size)),
                reaper,
                reaper_thread: Mutex::new(reaper_thread),
                root: Mutex::new(None),
                older_roots: Mutex::new(Vec::new()),
                mac: Mutex::new(None),
                older_macs: Mutex::new(Vec::new()),
                verified_macs: Mutex::new(Default::default()),
                ed25519: std::sync::atomic::AtomicBool::new(false),
                ed25519_held: std::sync::atomic::AtomicBool::new(false),
                audit: Mutex::new(None),
                generation,
                healthy: AtomicBool::new(true),
                down: Mutex::new(None),
            }),
        })
    }

    /// Run `f` on a pooled session on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        self.run_on(None, f).await
    }

    /// [`Hsm::run`] on a session set up for `prefer`'s key, if one is free.
    async fn run_on<R, F>(&self, prefer: Option<Prefer>, f: F) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        let started = std::time::Instant::now();
        let r = self.run_pooled(prefer, f).await;
        record_call("pool", started, &r);
        r
    }

    async fn run_pooled<R, F>(&self, prefer: Option<Prefer>, f: F) -> Result<R, HsmError>
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
            inner.with_pooled_session(prefer, f)
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
        self.run_fast_on(None, f).await
    }

    /// [`Hsm::run_fast`] on a session set up for `prefer`'s key, if one is free.
    pub(super) async fn run_fast_on<R, F>(
        &self,
        prefer: Option<Prefer>,
        f: F,
    ) -> Result<R, HsmError>
    where
        F: FnOnce(&Tok) -> Result<R, HsmError> + Send + 'static,
        R: Send + 'static,
    {
        if !self.inner.inline_calls {
            return self.run_on(prefer, f).await;
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
            self.inner.with_pooled_session(prefer, f)
        };
        record_call("inline", started, &r);
        self.after(generation, r).await
    }

    /// Run `f` on the pinned session (for objects that must outlive any pooled session).
    pub(super) async fn run_pinned<R, F>(&self, f: F) -> Result<R, HsmError>
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
                messages: None,
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

    /// Every session permit of the pool: while held, no call is inside the token.
    async fn every_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, HsmError> {
        self.inner
            .permits
            .acquire_many(self.inner.pool_size as u32)
            .await
            .map_err(|_| HsmError::Other("session pool closed".into()))
    }

    /// Re-open the token, once for all callers that saw generation `seen` fail (`None`: the
    /// token is known to be down). Takes every session permit, so no call is inside the
    /// token meanwhile.
    async fn reopen(&self, seen: Option<u64>) -> Result<(), HsmError> {
        let _all = self.every_permit().await?;
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
        let _all = self.every_permit().await?;
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
}
