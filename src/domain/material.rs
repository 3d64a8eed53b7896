//! A key's rows checked and its material loaded: resolving a key id or alias, the row MACs and
//! their generations, unwrapping material in the token (once per key version, cached), GCM
//! invocation leases, and the symmetric seal and open that every ciphertext goes through.

use super::*;

impl Kms {
    /// The key's policy decides who may use it, its state whether it may be used, its
    /// attributes what it is: any of them altered in the database (or written there by anyone
    /// but this service) makes the key unusable, not open.
    pub(super) async fn key_parts_sealed(&self, rec: &KeyRecord) -> Result<()> {
        let checks = [
            ("key policy failed its integrity check", policy_mac_input(rec), &rec.policy_mac),
            ("key state failed its integrity check", state_mac_input(rec), &rec.state_mac),
            (
                "key attributes failed their integrity check (altered in the database, or stored before they were sealed: review with `kms admin seal`)",
                attrs_mac_input(rec),
                &rec.attrs_mac,
            ),
            (
                "key rotation state failed its integrity check (altered in the database, or stored before it was sealed: review with `kms admin seal`)",
                rotation_mac_input(rec),
                &rec.rotation_mac,
            ),
        ];
        for (what, input, stored) in checks {
            if !self.sealed(input, stored).await? {
                tracing::error!(key_id = %rec.key_id, state = %rec.key_state, "{what}; refusing to use the key");
                return Err(KmsError::KeyUnavailable);
            }
        }
        Ok(())
    }

    pub(super) async fn record(&self, id: Uuid) -> Result<Option<Arc<KeyRecord>>> {
        if let Some(r) = self.meta.lock().unwrap().get(&id) {
            crate::metrics::cache("key_metadata", true);
            return Ok(Some(r.clone()));
        }
        crate::metrics::cache("key_metadata", false);
        // A change that commits while the row is read drops the key from the cache before this
        // read ends: what was read is then not kept (it may be the row from before).
        let drops = self.meta.lock().unwrap().drops();
        let Some(rec) = self.load_verified(id).await? else {
            return Ok(None);
        };
        let rec = Arc::new(rec);
        self.meta
            .lock()
            .unwrap()
            .put_unless_dropped_since(drops, id, rec.clone());
        Ok(Some(rec))
    }

    /// A key's row as stored now (never the cache), each part as sealed, none an older one put
    /// back, and not a deleted key's rows put back: `KeyUnavailable` (logged) otherwise.
    pub(super) async fn load_verified(&self, id: Uuid) -> Result<Option<KeyRecord>> {
        let Some(mut rec) = self.keys.key(id).await? else {
            return Ok(None);
        };
        self.key_parts_sealed(&rec).await?;
        // Each part as sealed, but an older one put back (the policy before the last
        // PutKeyPolicy, the state before DisableKey): the trail holds a later generation.
        let names: Vec<String> = KEY_PARTS
            .iter()
            .map(|part| seal::key_row(&rec, part))
            .collect();
        let trail = self.keys.generations_per_trail(&names).await?;
        if seal::first_behind(&key_part_rows(&rec), &trail).is_some() {
            // Or the row was read just before a change committed and reached the trail. Every
            // generation the trail held when asked was committed before it was asked, so the
            // row read again now is at or above it, unless it is an older row put back.
            let Some(again) = self.keys.key(id).await? else {
                return Ok(None);
            };
            self.key_parts_sealed(&again).await?;
            if let Some((row, have, held)) = seal::first_behind(&key_part_rows(&again), &trail) {
                tracing::error!(key_id = %again.key_id, row, generation = have, trail = held, "a part of the key is older than the audit trail records (an older row put back in the database?); refusing to use the key");
                return Err(KmsError::KeyUnavailable);
            }
            rec = again;
        }
        // A deleted key's rows put back (from an older backup) are sealed rows: its DeleteKey
        // event in the trail, later than the key's sealed creation time, refuses them (removing
        // the event breaks the chain). A multi-Region replica deleted and replicated again has
        // the same ARN and a later creation time.
        if self
            .keys
            .deleted_per_trail(&rec.arn(), rec.created_at)
            .await?
        {
            tracing::error!(key_id = %rec.key_id, "the audit trail records this key's deletion, but its rows are in the database again (put back from a backup?); refusing to use it");
            return Err(KmsError::KeyUnavailable);
        }
        Ok(Some(rec))
    }

    /// Check the rows of a listing as [`Kms::record`] checks a key it reads, all at once (the
    /// generations of every row from the trail in one query), and keep those that pass in the
    /// cache: the inventory reads a page of keys so, not one key at a time. A row that is not
    /// as sealed, is behind the trail or whose deletion the trail records is not kept; `record`
    /// then reads it again and judges it. `drops`: the cache's drops taken before the rows
    /// were read (a row a change dropped since may be from before the change: not kept).
    pub(super) async fn cache_listed(&self, drops: u64, rows: Vec<KeyRecord>) -> Result<()> {
        let rows: Vec<KeyRecord> = {
            let meta = self.meta.lock().unwrap();
            rows.into_iter()
                .filter(|r| !meta.contains(&r.key_id))
                .collect()
        };
        let mut sealed = Vec::with_capacity(rows.len());
        for rec in rows {
            if self.key_parts_sealed(&rec).await.is_ok() {
                sealed.push(rec);
            }
        }
        let names: Vec<String> = sealed
            .iter()
            .flat_map(|r| KEY_PARTS.iter().map(move |part| seal::key_row(r, part)))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let trail = self.keys.generations_per_trail(&names).await?;
        for rec in sealed {
            if seal::first_behind(&key_part_rows(&rec), &trail).is_some()
                || self
                    .keys
                    .deleted_per_trail(&rec.arn(), rec.created_at)
                    .await?
            {
                continue;
            }
            self.meta
                .lock()
                .unwrap()
                .put_unless_dropped_since(drops, rec.key_id, Arc::new(rec));
        }
        Ok(())
    }

    /// Resolve a `KeyId` parameter to a key the caller can see in the caller's region, for
    /// `action`.
    pub(super) async fn resolve(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
    ) -> Result<Arc<KeyRecord>> {
        let rec = self.resolve_unnoted(caller, key_id, action).await?;
        // Another account's key (named by ARN): its key policy decides, in `authorize`.
        note_key(rec.arn());
        Ok(rec)
    }

    /// [`Kms::resolve`] without naming the key in the call's event (a look at a key the call
    /// may never get to use).
    ///
    /// Another account's key or alias that does not exist is refused as AWS refuses another
    /// account's key whose policy does not let the caller in: `AccessDeniedException` "…
    /// because the resource does not exist in this Region, no resource-based policies allow
    /// access, …", never `NotFoundException`. Otherwise the two answers would tell any account
    /// which key ids and alias names another account has.
    pub(super) async fn resolve_unnoted(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
    ) -> Result<Arc<KeyRecord>> {
        match self.resolve_as_named(caller, key_id).await {
            Err(KmsError::NotFound(m)) => match foreign_reference(caller, key_id)? {
                Some(arn) => Err(self.absent_elsewhere(caller, action, arn).await?),
                None => Err(KmsError::NotFound(m)),
            },
            found => found,
        }
    }

    /// [`Kms::resolve`] for the operations that take the caller's own keys only: another
    /// account's key is `NotFoundException` ("Key '<its ARN>' does not exist") whether it
    /// exists or not.
    pub(super) async fn resolve_own(
        &self,
        caller: &Caller,
        key_id: &str,
    ) -> Result<Arc<KeyRecord>> {
        let rec = self.resolve_as_named(caller, key_id).await?;
        if rec.account_id != caller.account_id {
            return Err(KmsError::NotFound(crate::messages::key_does_not_exist(
                &rec.arn(),
            )));
        }
        note_key(rec.arn());
        Ok(rec)
    }

    /// The key `key_id` names, looked up as named (`NotFoundException` for none).
    async fn resolve_as_named(&self, caller: &Caller, key_id: &str) -> Result<Arc<KeyRecord>> {
        let r = keyid::parse(key_id)?;
        let (id, account) = match &r {
            KeyRef::Id(id) => (*id, caller.account_id.clone()),
            KeyRef::Arn {
                region,
                account,
                id,
            } => {
                // AWS's recorded answer names only the ARN's region.
                if region != &caller.region {
                    return Err(KmsError::NotFound(crate::messages::invalid_arn_region(
                        region,
                    )));
                }
                (*id, account.clone())
            }
            KeyRef::Alias {
                name,
                region,
                account,
            } => {
                let region = region.as_deref().unwrap_or(&caller.region);
                let account = account.as_deref().unwrap_or(&caller.account_id);
                if region != caller.region {
                    return Err(keyid::alias_not_found(region, account, name));
                }
                let found = match self.alias_target(account, region, name).await? {
                    Some(id) => Some(id),
                    None if account == caller.account_id => {
                        self.managed_key(account, region, name).await?
                    }
                    None => None,
                };
                let id = found.ok_or_else(|| keyid::alias_not_found(region, account, name))?;
                let rec = self
                    .record(id)
                    .await?
                    .ok_or_else(|| keyid::alias_not_found(region, account, name))?;
                (rec.public_id(), account.to_string())
            }
        };
        let not_found = || {
            KmsError::NotFound(crate::messages::key_does_not_exist(&keyid::key_arn(
                &caller.region,
                &account,
                &id,
            )))
        };
        let rec = self
            .record(id.internal(&caller.region))
            .await?
            .ok_or_else(not_found)?;
        // A multi-Region key is named by its `mrk-` id only, never by its row id.
        if rec.region != caller.region || rec.account_id != account || rec.public_id() != id {
            return Err(not_found());
        }
        Ok(rec)
    }

    /// The ARN of a key by id, whatever its account (for listing grants).
    pub(super) async fn key_arn_of(&self, key_id: Uuid) -> Result<String> {
        let rec = self
            .record(key_id)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("Key '{key_id}' does not exist")))?;
        Ok(rec.arn())
    }

    /// For `kms backup verify`: the key's rows pass every check, and every material version
    /// it holds unwraps under this token (the handle is only cached, never exported). Returns
    /// how many versions unwrapped.
    pub async fn verify_key_material(&self, id: Uuid) -> Result<usize> {
        let rec = self.record(id).await?.ok_or(KmsError::KeyUnavailable)?;
        let mut n = 0;
        for version in 1..=rec.current_version {
            if self.live_material(&rec, version).await?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The usable material of a key version: from the cache, or loaded, checked and unwrapped.
    pub(super) async fn live_material(
        &self,
        rec: &KeyRecord,
        version: i32,
    ) -> Result<Option<Arc<LiveMaterial>>> {
        let k = (rec.key_id, version);
        // A key in a custom key store is usable only while its store is connected here.
        let token = self.token_of(rec).await?;
        let hit = self.live.lock().unwrap().get(&k).cloned();
        if let Some(l) = hit {
            if l.bound_to == Binding::of(rec) && l.handle.is_current() && self.valid(&l) {
                crate::metrics::cache("key_material", true);
                return Ok(Some(l));
            }
        }
        crate::metrics::cache("key_material", false);
        let gate = self.loading.lock().unwrap().entry(k).or_default().clone();
        let _loading = gate.lock().await;
        let r = self.load_material(rec, version, &token).await;
        self.loading.lock().unwrap().remove(&k);
        r
    }

    pub(super) async fn load_material(
        &self,
        rec: &KeyRecord,
        version: i32,
        token: &Hsm,
    ) -> Result<Option<Arc<LiveMaterial>>> {
        let k = (rec.key_id, version);
        let cached = self.live.lock().unwrap().get(&k).cloned();
        if let Some(l) = cached {
            if l.bound_to == Binding::of(rec) && l.handle.is_current() && self.valid(&l) {
                return Ok(Some(l));
            }
            if !self.valid(&l) {
                // Past the ValidTo it was loaded under, or due to read its import record again:
                // loaded again, under the import record as it is now (another node may have
                // imported it again with another ValidTo, or deleted it).
                let evicted = self.live.lock().unwrap().pop(&k);
                drop(evicted);
            } else if !l.handle.is_current() {
                // The token was re-opened: the object died with its session; unwrap again.
                let evicted = self.live.lock().unwrap().pop(&k);
                drop(evicted);
            } else {
                // The key's record changed under a loaded handle: verify the row again.
                tracing::warn!(key_id = %rec.key_id, version, "key metadata changed under a cached key handle; re-verifying");
                let evicted = self.live.lock().unwrap().pop(&k);
                drop(evicted);
            }
        }
        // A version above the current one is material imported for a rotation that has not
        // happened: not part of the key yet, never used (a ciphertext naming it is refused).
        if version > rec.current_version {
            return Ok(None);
        }
        let Some(m) = self.keys.material(rec.key_id, version).await? else {
            return Ok(None);
        };
        self.verify_material(rec, &m).await?;
        // Imported material is used only under its import row, passing its seal and not
        // pending rotation: one altered or deleted in the database (to escape its expiry, or
        // to use a material before its rotation) refuses the material instead.
        let mut valid_to = None;
        if rec.origin == Origin::External {
            match self.verified_import(rec.key_id, version).await? {
                // Held: not pending rotation, and not deleted or expired (its record cleared).
                Some(i) if !i.pending && i.expiration_model.is_some() => {
                    self.not_expired(rec, i.valid_to)?;
                    valid_to = i.valid_to;
                }
                _ => {
                    tracing::error!(key_id = %rec.key_id, version, "imported key material has no import row of its own (deleted in the database?), is pending rotation, or was deleted (its row put back?); refusing it");
                    return Err(KmsError::KeyUnavailable);
                }
            }
        }
        let unwrapped = match asymmetric::kind(rec.key_spec) {
            Some(asymmetric::Kind::Pair(_)) if crate::hsm::held_id(&m.wrapped).is_some() => {
                self.hsm
                    .held_private(
                        m.wrapped.clone(),
                        super::create::held_label(rec.key_id, version),
                    )
                    .await
            }
            Some(asymmetric::Kind::Pair(kind)) => {
                self.hsm
                    .unwrap_key(
                        m.wrapped.clone(),
                        m.root_version as u32,
                        crate::hsm::BlobKind::Private(kind, asymmetric::private_use(rec.key_usage)),
                    )
                    .await
            }
            Some(asymmetric::Kind::Hmac(..)) => {
                self.hsm
                    .unwrap_key(
                        m.wrapped.clone(),
                        m.root_version as u32,
                        crate::hsm::BlobKind::Secret,
                    )
                    .await
            }
            _ => {
                token
                    .unwrap_key(
                        m.wrapped.clone(),
                        m.root_version as u32,
                        crate::hsm::BlobKind::Aes,
                    )
                    .await
            }
        };
        let handle = unwrapped.map_err(|e| {
            tracing::error!(key_id = %rec.key_id, version, error = %e, "could not unwrap key material");
            KmsError::KeyUnavailable
        })?;
        let live = Arc::new(LiveMaterial {
            handle,
            hsm: token.clone(),
            store: rec.custom_key_store_id.clone(),
            public_key: m.public_key.clone(),
            lease: tokio::sync::Mutex::new(Lease::default()),
            bound_to: Binding::of(rec),
            valid_to,
            recheck_at: (rec.origin == Origin::External)
                .then(|| std::time::Instant::now() + self.meta.lock().unwrap().max_age()),
        });
        let evicted = {
            let mut c = self.live.lock().unwrap();
            match c.get(&k) {
                Some(existing)
                    if existing.bound_to == live.bound_to && existing.handle.is_current() =>
                {
                    return Ok(Some(existing.clone()))
                }
                _ => c.push(k, live.clone()),
            }
        };
        drop(evicted); // destroys the evicted object once no request holds it
        Ok(Some(live))
    }

    /// Whether a loaded material is still within the `ValidTo` it was loaded under, and its
    /// import record was read within the caches' maximum age (past either, it is loaded
    /// again: the import record decides, not the handle).
    fn valid(&self, l: &LiveMaterial) -> bool {
        l.valid_to.is_none_or(|t| self.now() < t)
            && l.recheck_at.is_none_or(|t| std::time::Instant::now() < t)
    }

    /// Imported material past its `ValidTo` is expired, as the key is once the expiry job has
    /// run (AWS: the key is then pending import): refused, on every node, whether or not the
    /// job ran, and a handle loaded before is never used past the `ValidTo` it was loaded
    /// under.
    fn not_expired(
        &self,
        rec: &KeyRecord,
        valid_to: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<()> {
        if valid_to.is_some_and(|t| t <= self.now()) {
            return Err(KmsError::InvalidState(crate::messages::key_state(
                &rec.arn(),
                &KeyState::PendingImport.words(),
            )));
        }
        Ok(())
    }

    /// Check a material row's MAC (computed in the token) against the key it claims to be of.
    pub(super) async fn verify_material(&self, rec: &KeyRecord, m: &MaterialRecord) -> Result<()> {
        if !self
            .hsm
            .row_mac_matches(material_mac_input(rec, m), &m.mac)
            .await?
        {
            tracing::error!(key_id = %rec.key_id, version = m.version, "key material row failed its integrity check; refusing to use it");
            return Err(KmsError::KeyUnavailable);
        }
        Ok(())
    }

    /// The material version to encrypt with and one AES-GCM invocation of it, leasing more
    /// from the database when the lease runs out. `None` once the material is at the bound.
    pub(super) async fn try_invocation(
        &self,
        rec: &KeyRecord,
    ) -> Result<Option<Arc<LiveMaterial>>> {
        let version = rec.current_version;
        let live = self.live_material(rec, version).await?.ok_or_else(|| {
            KmsError::Internal(format!(
                "current material v{version} of {} is missing",
                rec.key_id
            ))
        })?;
        let mut lease = live.lease.lock().await;
        if lease.next >= lease.end {
            let size = (lease.size * 2).clamp(GCM_LEASE_MIN, GCM_LEASE_MAX);
            // Every lease is in the trail before it is used, and the database hands leases out
            // in order: read before reserving, every end the trail holds is at most where the
            // next lease starts. A lease starting before one of them means the count was set
            // back in the database (to pass the 2^32 bound of one material).
            let material = rotation::material_id(&rec.blob_id(), version);
            let used = self.leased_per_trail(&material).await?;
            match self
                .keys
                .reserve_invocations(rec.key_id, rec.mrk_id, version, size, GCM_INVOCATION_LIMIT)
                .await?
            {
                Some((start, end)) => {
                    if start < used {
                        tracing::error!(key_id = %rec.key_id, version, start, used, "the key material's invocation count is behind the leases the audit trail records (set back in the database?); refusing to use it");
                        return Err(KmsError::KeyUnavailable);
                    }
                    self.record_before(
                        "InvocationsLeased",
                        rec,
                        serde_json::json!({ "materialId": material, "start": start, "end": end }),
                    )
                    .await?;
                    lease.next = start;
                    lease.end = end;
                    lease.size = size;
                }
                None => {
                    tracing::warn!(key_id = %rec.key_id, version, "key material reached the AES-GCM invocation limit");
                    return Ok(None);
                }
            }
        }
        lease.next += 1;
        drop(lease);
        Ok(Some(live))
    }

    /// The furthest end of the material's latest leases in the trail (0: none).
    pub(super) async fn leased_per_trail(&self, material: &str) -> Result<i64> {
        // Leases of several nodes may reach the trail out of order: the latest few, not only
        // the last, bound where the count stands. The latest few *sealed*: a database writer
        // appends leases of its own (each ends where it likes) until the service's fall out
        // of any fixed window. Every lease read counts towards the furthest end (one of a
        // writer's only ever holds the count back further); only the service's count towards
        // the few.
        const SEALED: usize = 16;
        let public_key = self.audit_public_key().await?;
        let (mut furthest, mut sealed, mut before) = (0i64, 0usize, i64::MAX);
        loop {
            let page = self.keys.leases_per_trail(material, before, 64).await?;
            let last_page = page.len() < 64;
            for (seq, body, seal) in page {
                before = seq;
                let end = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|b| b.pointer("/additionalEventData/end")?.as_i64());
                furthest = furthest.max(end.unwrap_or(0));
                let genuine =
                    seal.is_some_and(|s| crate::audit::seal_verifies(&public_key, seq, &body, &s));
                sealed += usize::from(genuine);
            }
            if sealed >= SEALED || last_page {
                return Ok(furthest);
            }
        }
    }

    /// Like `try_invocation`, but a key at the bound rotates to new material (once) and uses it.
    pub(super) async fn invocation(&self, rec: &KeyRecord) -> Result<(i32, Arc<LiveMaterial>)> {
        if let Some(live) = self.try_invocation(rec).await? {
            return Ok((rec.current_version, live));
        }
        match self.rotate_material(rec, "AUTOMATIC", None, false).await {
            // Conflict: another request or node rotated it first.
            Ok(()) | Err(KmsError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        self.invalidate(Some(rec.key_id));
        let fresh = self
            .record(rec.key_id)
            .await?
            .ok_or(KmsError::KeyUnavailable)?;
        let live = self
            .try_invocation(&fresh)
            .await?
            .ok_or(KmsError::KeyUnavailable)?;
        Ok((fresh.current_version, live))
    }

    pub(super) async fn seal(
        &self,
        caller: &Caller,
        rec: &KeyRecord,
        plaintext: Zeroizing<Vec<u8>>,
        ctx: &Context,
    ) -> Result<Vec<u8>> {
        // A key in an external key store: its proxy encrypts the blob again (checked first:
        // a store that is not connected refuses before anything is encrypted).
        let proxy = self.proxy_of(rec).await?;
        let (version, live) = self.invocation(rec).await?;
        let mut iv = [0u8; 12];
        aws_lc_rs::rand::fill(&mut iv)
            .map_err(|_| KmsError::Internal("system RNG failed".into()))?;
        let header = Header {
            key_id: rec.blob_id(),
            material_version: version as u32,
            iv,
        };
        let aad = ciphertext::aad(&header, ctx);
        let body = live
            .hsm
            .gcm_encrypt(live.handle.clone(), iv, aad, plaintext)
            .await?;
        let mut blob = header.to_bytes().to_vec();
        blob.extend_from_slice(&body);
        match proxy {
            Some(p) => self.xks_wrap(rec, &p, blob, &caller.principal_arn).await,
            None => Ok(blob),
        }
    }

    /// What decrypting with a symmetric key checks before the ciphertext: the caller may do
    /// `action` with this context, and the key is a usable symmetric encryption key.
    pub(super) async fn check_symmetric_decrypt(
        &self,
        caller: &Caller,
        action: &str,
        rec: &KeyRecord,
        ctx: &Context,
    ) -> Result<()> {
        let access = Access::to(action, &[Check::Enabled, Check::Symmetric("Decrypt")])
            .context(ctx)
            .conditions(&[("kms:EncryptionAlgorithm", SYMMETRIC_DEFAULT)]);
        self.admit(caller, rec, access).await
    }

    /// Decrypt a blob: the blob names its key; `expected` (from `KeyId`) must match it.
    pub(super) async fn open(
        &self,
        caller: &Caller,
        action: &str,
        blob: &[u8],
        ctx: &Context,
        expected: Option<&str>,
    ) -> Result<(Arc<KeyRecord>, Zeroizing<Vec<u8>>)> {
        let expected = match expected {
            // A key ARN of another Region never names the key a ciphertext decrypts with here
            // (its copy in this Region, for a multi-Region key): recorded on AWS as
            // IncorrectKeyException, a replica's ciphertext with its primary's ARN.
            Some(k) if matches!(keyid::parse(k), Ok(KeyRef::Arn { ref region, .. }) if region != &caller.region) => {
                return Err(KmsError::IncorrectKey)
            }
            Some(k) => Some(self.resolve(caller, k, action).await?),
            None => None,
        };
        // Another account's key named by KeyId: the caller may decrypt with it before anything
        // is said of the blob (an IncorrectKeyException would tell that the key exists). The
        // blob's key is then that key, already admitted.
        let mut admitted = None;
        if let Some(e) = expected
            .as_ref()
            .filter(|e| e.account_id != caller.account_id)
        {
            self.check_symmetric_decrypt(caller, action, e, ctx).await?;
            admitted = Some(e.key_id);
        }
        // Found from the ciphertext alone, a refused key is "the resource associated with this
        // ciphertext" (AWS's words), not named.
        let admit = |rec: Arc<KeyRecord>| {
            let named = expected.is_some();
            async move {
                if admitted == Some(rec.key_id) {
                    return Ok(());
                }
                match self
                    .check_symmetric_decrypt(caller, action, &rec, ctx)
                    .await
                {
                    Err(KmsError::AccessDenied(m)) if !named => Err(KmsError::AccessDenied(
                        crate::policy::named_by_ciphertext(&m, &rec.arn()),
                    )),
                    other => other,
                }
            }
        };
        // A blob of a key in an external key store: its proxy removes the outer layer first,
        // once the caller may decrypt with the key; the inner blob must name the same key.
        let inner;
        let through_proxy = blob.first() == Some(&ciphertext::FORMAT_XKS);
        let blob = match ciphertext::Outer::parse(blob) {
            Some(outer) => {
                if let Some(e) = &expected {
                    if e.blob_id() != outer.key_id {
                        return Err(KmsError::IncorrectKey);
                    }
                }
                let row = keyid::PublicId::of_blob(outer.key_id).internal(&caller.region);
                let rec = match self.record(row).await? {
                    // A multi-Region key by its public id alone, never its row's.
                    Some(r) if r.region == caller.region && r.blob_id() == outer.key_id => r,
                    _ => return Err(self.absent_by_ciphertext(caller, action).await?),
                };
                admit(rec.clone()).await?;
                if rec.xks_key_id.is_none() {
                    return Err(KmsError::InvalidCiphertext);
                }
                let proxy = self
                    .proxy_of(&rec)
                    .await?
                    .ok_or(KmsError::InvalidCiphertext)?;
                inner = self
                    .xks_unwrap(&rec, &proxy, &outer, &caller.principal_arn)
                    .await?;
                match ciphertext::parse(&inner) {
                    Some((h, _)) if h.key_id == outer.key_id => inner.as_slice(),
                    _ => return Err(KmsError::InvalidCiphertext),
                }
            }
            None => blob,
        };
        let (header, body) = ciphertext::parse(blob).ok_or(KmsError::InvalidCiphertext)?;
        if let Some(e) = &expected {
            if e.blob_id() != header.key_id {
                return Err(KmsError::IncorrectKey);
            }
        }
        // A multi-Region blob decrypts with its key's copy in the caller's region.
        let row = keyid::PublicId::of_blob(header.key_id).internal(&caller.region);
        let rec = match self.record(row).await? {
            // A multi-Region key by its public id alone, never its row's.
            Some(r) if r.region == caller.region && r.blob_id() == header.key_id => r,
            _ => return Err(self.absent_by_ciphertext(caller, action).await?),
        };
        admit(rec.clone()).await?;
        // A key in an external key store decrypts only what its proxy decrypted first: its
        // own layer alone is never enough. (Told only to a caller the key admits.)
        if rec.xks_key_id.is_some() != through_proxy {
            return Err(KmsError::InvalidCiphertext);
        }
        let version =
            i32::try_from(header.material_version).map_err(|_| KmsError::InvalidCiphertext)?;
        let live = self
            .live_material(&rec, version)
            .await?
            .ok_or(KmsError::InvalidCiphertext)?;
        let aad = ciphertext::aad(&header, ctx);
        match live
            .hsm
            .gcm_decrypt(live.handle.clone(), header.iv, aad, body.to_vec())
            .await
        {
            Ok(pt) => Ok((rec, pt)),
            // The token profile says which codes mean a bad ciphertext (HsmError::BadCiphertext).
            Err(e) => Err(e.into()),
        }
    }
}

impl Kms {
    /// The refusal of a ciphertext whose key does not exist in the caller's Region (deleted,
    /// of another Region, or a header naming no key): as AWS answers it, the refusal of a key
    /// found from a ciphertext that does not let the caller in (recorded: "… on the resource
    /// associated with this ciphertext because the resource does not exist in this Region,
    /// …"), so a forged header tells nothing of which keys exist. The request's grant tokens
    /// are checked first, as they are for a key that exists.
    async fn absent_by_ciphertext(&self, caller: &Caller, action: &str) -> Result<KmsError> {
        for t in &caller.grant_tokens {
            self.verify_grant_token(t).await?;
        }
        Ok(KmsError::AccessDenied(format!(
            "User: {} is not authorized to perform: {action} on the resource associated with this ciphertext {}",
            caller.principal_arn,
            crate::policy::CROSS_ACCOUNT_RESOURCE_DENIAL
        )))
    }
}

/// The ARN `key_id` names when it is another account's key or alias in the caller's Region
/// (the references whose absence must read as a refusal: [`Kms::absent_elsewhere`]).
pub(super) fn foreign_reference(caller: &Caller, key_id: &str) -> Result<Option<String>> {
    Ok(keyid::foreign_arn(
        &keyid::parse(key_id)?,
        &caller.region,
        &caller.account_id,
    ))
}
