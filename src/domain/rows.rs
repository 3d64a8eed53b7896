//! Sealed writes of a key's rows: tags, state, rotation state and a new key's rows, each with
//! its MAC computed in the token before anything is written and written only if the row is
//! still as it was read (a change in between is a conflict, never a lost update).

use super::*;

impl Kms {
    /// A key's tags, once their MAC (in the key row) holds: a tag inserted, altered, deleted
    /// or moved in the database makes the key unusable rather than changing a decision.
    pub(crate) async fn tags_of(&self, rec: &KeyRecord) -> Result<Arc<Vec<Tag>>> {
        if let Some(t) = self.key_tags.lock().unwrap().get(&rec.key_id) {
            crate::metrics::cache("key_tags", true);
            return Ok(t.clone());
        }
        crate::metrics::cache("key_tags", false);
        // A change that commits while this is read drops the entry before the read ends:
        // what was read is then not kept (it may be from before the change).
        let drops = self.key_tags.lock().unwrap().drops();
        let mut tags = self.keys.tags(rec.key_id).await?;
        let mut sealed = self
            .sealed(tags_mac_input(rec, &tags), &rec.tags_mac)
            .await?;
        let stored_row;
        let mut rec = rec;
        if !sealed {
            // The key row in hand (cached) may be older than the tags just read: another node
            // changed them and its notice has not arrived yet. Judged once more against the
            // row as stored now, read before the tags, before anything is refused (as it
            // stands, a tag written with SQL fails either way).
            if let Some(now) = self.load_verified(rec.key_id).await? {
                if now.tags_mac != rec.tags_mac {
                    stored_row = now;
                    rec = &stored_row;
                    tags = self.keys.tags(rec.key_id).await?;
                    sealed = self
                        .sealed(tags_mac_input(rec, &tags), &rec.tags_mac)
                        .await?;
                }
            }
        }
        if !sealed {
            tracing::error!(key_id = %rec.key_id, sealed = rec.tags_mac.is_some(), "key tags failed their integrity check (altered in the database, or stored before tags were sealed: review with `kms admin seal`); refusing to use the key");
            return Err(KmsError::KeyUnavailable);
        }
        let stored = rec.tags_mac.as_deref().unwrap_or_default();
        if let Some((row, have, held)) = self
            .behind_trail(&[(seal::key_row(rec, "tags"), stored)])
            .await?
        {
            tracing::error!(key_id = %rec.key_id, row, generation = have, trail = held, "key tags are older than the audit trail records (an older set put back in the database?); refusing to use the key");
            return Err(KmsError::KeyUnavailable);
        }
        let t = Arc::new(tags);
        self.key_tags
            .lock()
            .unwrap()
            .put_unless_dropped_since(drops, rec.key_id, t.clone());
        Ok(t)
    }

    /// Replace a key's tags with `next` (the verified set with a change applied) and their
    /// new MAC, computed before anything is written.
    pub(crate) async fn store_tags(&self, rec: &KeyRecord, next: &[Tag]) -> Result<()> {
        self.tags_of(rec).await?;
        let expected = rec.tags_mac.as_deref().unwrap_or_default();
        let seal = self
            .seal_row(
                seal::key_row(rec, "tags"),
                tags_mac_input(rec, next),
                Some(expected),
            )
            .await?;
        if !self
            .keys
            .set_tags(rec.key_id, expected, next, &seal.mac)
            .await?
        {
            return Err(KmsError::Conflict(format!(
                "The tags of {} changed during this request; try again.",
                rec.arn()
            )));
        }
        self.written(&seal);
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// The MACs of a new key: policy, state, tags and attributes (set before it is stored).
    pub(crate) async fn seal_new_key(&self, rec: &mut KeyRecord, tags: &[Tag]) -> Result<()> {
        let mut seals = self
            .seal_rows(vec![
                (seal::key_row(rec, "policy"), policy_mac_input(rec), None),
                (seal::key_row(rec, "state"), state_mac_input(rec), None),
                (seal::key_row(rec, "tags"), tags_mac_input(rec, tags), None),
                (seal::key_row(rec, "attributes"), attrs_mac_input(rec), None),
                (
                    seal::key_row(rec, "rotation"),
                    rotation_mac_input(rec),
                    None,
                ),
            ])
            .await?
            .into_iter()
            .map(|s| Some(s.mac));
        let mut next = || seals.next().flatten();
        rec.policy_mac = next();
        rec.state_mac = next();
        rec.tags_mac = next();
        rec.attrs_mac = next();
        rec.rotation_mac = next();
        Ok(())
    }

    /// The keys of the multi-Region family `mrk` (of `account`), as stored, less any row
    /// whose attributes seal does not hold: membership is read from `keys.mrk_id`, which a
    /// database writer can set on any key of a Region the family is not in, and only the
    /// attributes seal (which covers `mrk_id`, account and Region) says which family a key was
    /// created in. A key left out is one the service refuses to use anyway.
    pub(crate) async fn verified_family(&self, mrk: Uuid, account: &str) -> Result<Vec<KeyRecord>> {
        let mut family = Vec::new();
        for r in self.keys.related_keys(mrk).await? {
            if self.created_in_family(&r, account).await? {
                family.push(r);
            } else {
                tracing::error!(key_id = %r.key_id, region = %r.region, "a key names a multi-Region key it was not created in (its attributes fail their integrity check); leaving it out of that key's family");
            }
        }
        Ok(family)
    }

    /// Whether a row the store counts in a family (by its `mrk_id`) was created in it: of the
    /// family's account, its attributes seal (which covers `mrk_id`) holding.
    async fn created_in_family(&self, r: &KeyRecord, account: &str) -> Result<bool> {
        Ok(r.account_id == account && self.sealed(attrs_mac_input(r), &r.attrs_mac).await?)
    }

    /// The rows whose rotation state a change to `rec`'s writes (the key, and for a
    /// multi-Region key every related key), read afresh and each verified: a row that fails
    /// its rotation MAC is never re-sealed with the change (the change is refused, naming it).
    pub(crate) async fn verified_rotation_rows(&self, rec: &KeyRecord) -> Result<Vec<KeyRecord>> {
        // Every row the store counts in the family, each checked: the store writes a family's
        // rotation only to the rows it holds as the family, so a row that does not belong
        // (its attributes seal, which covers `mrk_id`, fails) refuses the change rather than
        // receiving the family's material.
        let rows = match rec.mrk_id {
            Some(mrk) => self.keys.related_keys(mrk).await?,
            None => self.keys.key(rec.key_id).await?.into_iter().collect(),
        };
        if !rows.iter().any(|r| r.key_id == rec.key_id) {
            return Err(KmsError::NotFound(crate::messages::key_does_not_exist(
                &rec.arn(),
            )));
        }
        // And every row at a family id (each Region's key of the family has an id derived
        // from the family's): one whose `mrk_id` was cleared or changed in the database is
        // not counted by the store, and would be left out of the rotation, keeping the old
        // material. The change is refused while one is hidden.
        if let Some(mrk) = rec.mrk_id {
            for region in &self.regions {
                let id = super::keyid::mrk_key_id(&mrk, region);
                if !rows.iter().any(|r| r.key_id == id) && self.keys.key(id).await?.is_some() {
                    tracing::error!(key_id = %id, region = %region, mrk_id = %mrk, "a key of a multi-Region key's family is not counted in it by the database (its mrk_id changed?); refusing to rotate the family");
                    return Err(KmsError::KeyUnavailable);
                }
            }
        }
        for r in &rows {
            if !self.created_in_family(r, &rec.account_id).await? {
                tracing::error!(key_id = %r.key_id, region = %r.region, mrk_id = ?rec.mrk_id, "a key the database counts in a multi-Region key's family was not created in it (its attributes fail their integrity check); refusing to rotate the family");
                return Err(KmsError::KeyUnavailable);
            }
            if !self
                .current_seal(
                    seal::key_row(r, "rotation"),
                    rotation_mac_input(r),
                    &r.rotation_mac,
                )
                .await?
            {
                tracing::error!(key_id = %r.key_id, region = %r.region, "key rotation state failed its integrity check; refusing to change it");
                return Err(KmsError::KeyUnavailable);
            }
        }
        Ok(rows)
    }

    /// The store update that moves `old`'s rotation state to `new`'s, with `new`'s seal
    /// (returned too: pass it to [`Kms::written`] once the update committed): written only
    /// where the row still carries the seal `old` was verified with.
    pub(crate) async fn rotation_update(
        &self,
        old: &KeyRecord,
        new: &KeyRecord,
    ) -> Result<(crate::store::RotationUpdate, seal::Seal)> {
        let seal = self
            .seal_row(
                seal::key_row(new, "rotation"),
                rotation_mac_input(new),
                old.rotation_mac.as_deref(),
            )
            .await?;
        let update = crate::store::RotationUpdate::between(old, new, seal.mac.clone());
        Ok((update, seal))
    }

    /// `seal` was written if `done`.
    pub(super) fn written_if(&self, done: bool, seal: &seal::Seal) {
        if done {
            self.written(seal);
        }
    }

    /// Every seal of `seals` was written (their writes committed).
    pub(crate) fn written_all(&self, seals: &[seal::Seal]) {
        for s in seals {
            self.written(s);
        }
    }

    /// Store a key's new state with its MAC, over the state `rec` was verified with:
    /// [`KmsError::Changed`] if the row moved on meanwhile (run under [`Kms::as_current`]).
    pub(crate) async fn set_state(
        &self,
        rec: &KeyRecord,
        state: KeyState,
        deletion_date: Option<chrono::DateTime<Utc>>,
        pending_window_days: Option<i32>,
    ) -> Result<()> {
        let seal = self
            .state_seal(rec, state, deletion_date, pending_window_days)
            .await?;
        if !self
            .keys
            .set_key_state(
                rec.key_id,
                rec.state_mac.as_deref(),
                state,
                deletion_date,
                pending_window_days,
                &seal.mac,
            )
            .await?
        {
            return Err(KmsError::Changed(rec.key_id));
        }
        self.written(&seal);
        Ok(())
    }

    /// Run `change` (which reads a key, decides, and writes with compare-and-set) and, when its
    /// write finds the row changed since it was read ([`KmsError::Changed`]: another request or
    /// node got there first, or this node's cache was behind), run it again with the key read
    /// afresh, so it decides on the row as it is now. Two racing writes therefore never both
    /// land (on the same generation: either row would then pass the replay check), and neither
    /// is lost silently: the second is re-decided, as AWS serialises them.
    pub(crate) async fn as_current<T, F, Fut>(&self, mut change: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        const ATTEMPTS: usize = 16;
        for _ in 1..ATTEMPTS {
            match change().await {
                Err(KmsError::Changed(key_id)) => {
                    tracing::debug!(%key_id, "key row changed while a change was being made; deciding again on the row as it is now");
                    self.invalidate(Some(key_id));
                }
                other => return other,
            }
        }
        match change().await {
            Err(KmsError::Changed(key_id)) => Err(KmsError::Internal(format!(
                "key {key_id} changed under every one of {ATTEMPTS} attempts to change it"
            ))),
            other => other,
        }
    }

    /// The state seal a key would have in `state` (the next generation of `rec`'s); pass it
    /// to [`Kms::written`] once it is stored.
    pub(crate) async fn state_seal(
        &self,
        rec: &KeyRecord,
        state: KeyState,
        deletion_date: Option<chrono::DateTime<Utc>>,
        pending_window_days: Option<i32>,
    ) -> Result<seal::Seal> {
        let next = KeyRecord {
            key_state: state,
            deletion_date,
            pending_window_days,
            ..rec.clone()
        };
        self.seal_row(
            seal::key_row(rec, "state"),
            state_mac_input(&next),
            rec.state_mac.as_deref(),
        )
        .await
    }
}
