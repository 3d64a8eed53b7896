//! Key states (enable, disable, schedule and cancel deletion, description), aliases and tags.

use super::preamble::{Access, Check, ANY_STATE};
use super::{keyid, Caller, Kms, KmsError};
use crate::domain::Result;
use crate::store::{AliasRecord, KeyRecord, StoreError, Tag};
use crate::vocab::{KeyState, Origin};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

pub const MAX_ALIASES_PER_KEY: usize = 50;
const PER_KEY: i64 = MAX_ALIASES_PER_KEY as i64;
pub const MAX_TAGS_PER_KEY: usize = 50;
/// The waiting periods `ScheduleKeyDeletion` takes, in days (AWS's).
pub const PENDING_WINDOW_DAYS: std::ops::RangeInclusive<i64> = 7..=30;

/// The type of key `UpdateAlias` keeps an alias within: symmetric, asymmetric or HMAC.
fn alias_type(k: &KeyRecord) -> &'static str {
    use super::asymmetric::{kind, Kind};
    match kind(k.key_spec) {
        Some(Kind::Symmetric) => "symmetric",
        Some(Kind::Pair(_)) => "asymmetric",
        Some(Kind::Hmac(..)) => "HMAC",
        None => k.key_spec.as_str(),
    }
}

/// Whether the store refused an alias because its key has [`MAX_ALIASES_PER_KEY`] already.
fn too_many_for_key(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict { constraint } if constraint == crate::store::KEY_ALIASES_EXCEEDED)
}

/// Whether a store error is the conflict of a key's set of aliases changed since it was read.
fn alias_set_changed(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict { constraint } if constraint == crate::store::ALIAS_SET_CHANGED)
}

/// One alias change, `attempt` (it reads the sets of aliases it changes and writes them with
/// the alias), made again while another change of a set came first: up to 8 attempts, then
/// the answer that `rec`'s aliases kept changing. The store's other answers are the caller's.
async fn alias_set_retries<T, F>(
    rec: &KeyRecord,
    attempt: impl Fn() -> F,
) -> Result<std::result::Result<T, StoreError>>
where
    F: std::future::Future<Output = Result<std::result::Result<T, StoreError>>>,
{
    for n in 1.. {
        match attempt().await? {
            Err(e) if alias_set_changed(&e) && n < 8 => {
                tokio::time::sleep(std::time::Duration::from_millis(2 * n)).await
            }
            Err(e) if alias_set_changed(&e) => break,
            other => return Ok(other),
        }
    }
    Err(KmsError::changed(
        rec.arn(),
        "changed its aliases during this request",
    ))
}

/// The key already has its quota of aliases (the write counted them in its transaction).
fn key_aliases_exceeded() -> KmsError {
    KmsError::LimitExceeded(crate::messages::aliases_per_key_quota(
        MAX_ALIASES_PER_KEY,
        MAX_ALIASES_PER_KEY,
    ))
}

/// AWS's alias name rules: `alias/` then letters, digits, `/`, `_`, `-`; at most 256 in all;
/// `alias/aws/` is reserved for AWS managed keys ([`not_reserved`]).
pub fn check_alias_name(name: &str) -> Result<()> {
    // AWS refuses a colon as a validation error although the model's pattern admits it.
    if name.contains(':') {
        return Err(KmsError::Validation(format!(
            "{name} contains invalid characters for an alias"
        )));
    }
    let Some(rest) = name.strip_prefix("alias/") else {
        // AWS's recorded answer: a ValidationException, in these words.
        return Err(KmsError::Validation(crate::messages::ALIAS_PREFIX.into()));
    };
    if rest.is_empty()
        || name.len() > 256
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    {
        return Err(KmsError::InvalidAliasName(format!(
            "Alias {name} must be 1 to 256 characters of letters, digits, '/', '_' and '-' after the prefix \"alias/\"."
        )));
    }
    not_reserved(name)
}

/// An alias a caller may create, re-point or delete: not `alias/aws/…`, the aliases of AWS
/// managed keys. AWS answers `NotAuthorizedException` with no message, before it looks at the
/// key (the answer of moto's test, whose expected body was written from AWS's, and of
/// local-kms; AWS's model does not list it, so clients see an unmodelled error code).
pub fn not_reserved(name: &str) -> Result<()> {
    if name.starts_with("alias/aws/") {
        return Err(KmsError::NotAuthorized);
    }
    Ok(())
}

/// A new key's tags: each valid, and at most 50.
pub fn check_new_tags(tags: &[Tag]) -> Result<()> {
    check_tags(tags)?;
    if tags.len() > MAX_TAGS_PER_KEY {
        return Err(KmsError::Tag(crate::messages::TOO_MANY_TAGS.into()));
    }
    Ok(())
}

pub fn check_tags(tags: &[Tag]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for t in tags {
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(crate::messages::TAGS_RESERVED.into()));
        }
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(KmsError::Tag(
                "Tag keys are 1 to 128 characters and tag values at most 256.".into(),
            ));
        }
        if !seen.insert(t.key.clone()) {
            return Err(KmsError::Tag(crate::messages::DUPLICATE_TAG_KEYS.into()));
        }
    }
    Ok(())
}

impl Kms {
    pub fn invalidate_aliases(&self) {
        self.aliases.lock().unwrap().clear();
        self.key_aliases.lock().unwrap().clear();
    }

    pub(super) async fn alias_target(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<Uuid>> {
        let k = (account.to_string(), region.to_string(), name.to_string());
        if let Some(t) = self.aliases.lock().unwrap().get(&k) {
            crate::metrics::cache("aliases", true);
            return Ok(*t);
        }
        crate::metrics::cache("aliases", false);
        // A change that commits while this is read drops the entry before the read ends:
        // what was read is then not kept (it may be from before the change).
        let drops = self.aliases.lock().unwrap().drops();
        let t = self
            .alias_trail_first(account, region, name)
            .await?
            .map(|a| a.key_id);
        self.aliases
            .lock()
            .unwrap()
            .put_unless_dropped_since(drops, k, t);
        Ok(t)
    }

    /// Alias `name` as stored now, verified against the trail read before it. An alias
    /// re-pointed by a change that commits while it is read is then never taken for an older
    /// row put back. A row still refused may have raced a change whose generation reached the
    /// trail just before its row committed: it is read again (trail, then row), and only a row
    /// behind the trail every time is refused — an older row put back stays behind however
    /// often it is read. `None`: there is no such alias (now).
    async fn alias_trail_first(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let trail = self
                .trail_of(&[super::seal::alias_row_of(account, region, name)])
                .await?;
            let Some(a) = self.keys.alias(account, region, name).await? else {
                return Ok(None);
            };
            if self.alias_is_current(&a, Some(&trail)).await? {
                return Ok(Some(a));
            }
            if attempt == 5 {
                tracing::error!(alias = %a.alias_name, account_id = %a.account_id, region = %a.region, key_id = %a.key_id, sealed = !a.mac.is_empty(), "alias row failed its integrity check (altered in the database, an older row put back, or stored before aliases were sealed: review with `kms admin seal`); refusing it");
                return Err(KmsError::KeyUnavailable);
            }
            // Backing off (5, 10, 20, 40 ms): on a loaded host the change's row can commit a
            // while after its generation reached the trail (seen on SQLite under CI).
            tokio::time::sleep(std::time::Duration::from_millis(5 << (attempt - 1))).await;
        }
    }

    /// An alias row read a moment ago (listed, or read to be changed), verified: one whose MAC
    /// does not hold (re-pointed, inserted or moved in the database) or that is behind the
    /// trail is refused (the request fails), never followed to the key it names. The trail is
    /// asked after the row was read, so a change that committed in between makes the row look
    /// behind it: a row that fails is read again trail first ([`Kms::alias_trail_first`])
    /// before it is refused. `None`: the alias is gone now.
    pub(super) async fn verified_alias(&self, a: AliasRecord) -> Result<Option<AliasRecord>> {
        if self.alias_is_current(&a, None).await? {
            return Ok(Some(a));
        }
        self.alias_trail_first(&a.account_id, &a.region, &a.alias_name)
            .await
    }

    /// Whether an alias row's seal holds and its generation is not behind the trail (as read
    /// before the row, if given; else asked now).
    async fn alias_is_current(
        &self,
        a: &AliasRecord,
        trail: Option<&[(String, i64)]>,
    ) -> Result<bool> {
        let stored = Some(a.mac.clone());
        let (row, input) = (super::seal::alias_row(a), super::alias_mac_input(a));
        match trail {
            Some(t) => self.current_under(row, input, &stored, t).await,
            None => self.current_seal(row, input, &stored).await,
        }
    }

    pub async fn enable_key(&self, caller: &Caller, key_id: &str) -> Result<()> {
        self.as_current(|| self.switch_key(caller, key_id, "kms:EnableKey", KeyState::Enabled))
            .await
    }

    pub async fn disable_key(&self, caller: &Caller, key_id: &str) -> Result<()> {
        self.as_current(|| self.switch_key(caller, key_id, "kms:DisableKey", KeyState::Disabled))
            .await
    }

    /// `EnableKey` and `DisableKey`: the key (not pending deletion) set to `state`.
    async fn switch_key(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        state: KeyState,
    ) -> Result<()> {
        let access = Access::to(action, &[Check::NotPending]);
        let rec = self.key_for(caller, key_id, access).await?;
        self.set_state(&rec, state, None, None).await?;
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// Returns the key's ARN, its new state and its deletion date (a `days` outside
    /// [`PENDING_WINDOW_DAYS`] is refused before the key is looked up). A multi-Region primary
    /// with replicas waits in `PendingReplicaDeletion` (no date yet) until they are gone.
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        key_id: &str,
        days: i64,
        now: DateTime<Utc>,
    ) -> Result<(String, &'static str, Option<DateTime<Utc>>)> {
        self.as_current(|| self.schedule_key_deletion_once(caller, key_id, days, now))
            .await
    }

    async fn schedule_key_deletion_once(
        &self,
        caller: &Caller,
        key_id: &str,
        days: i64,
        now: DateTime<Utc>,
    ) -> Result<(String, &'static str, Option<DateTime<Utc>>)> {
        if !PENDING_WINDOW_DAYS.contains(&days) {
            return Err(KmsError::Validation(
                crate::messages::PENDING_WINDOW_RANGE.into(),
            ));
        }
        let window = days.to_string();
        let window = [(
            "kms:ScheduleKeyDeletionPendingWindowInDays",
            window.as_str(),
        )];
        let access =
            Access::to("kms:ScheduleKeyDeletion", &[Check::Manageable]).conditions(&window);
        // A key waiting for imported material can be deleted too, as on AWS.
        let rec = self.key_for(caller, key_id, access).await?;
        let has_replicas = match (rec.mrk_id, rec.mrk_primary) {
            (Some(mrk), true) => self.verified_family(mrk, &rec.account_id).await?.len() > 1,
            _ => false,
        };
        let (state, when) = if has_replicas {
            self.set_state(
                &rec,
                KeyState::PendingReplicaDeletion,
                None,
                Some(days as i32),
            )
            .await?;
            ("PendingReplicaDeletion", None)
        } else {
            let when = now + Duration::days(days);
            self.set_state(&rec, KeyState::PendingDeletion, Some(when), None)
                .await?;
            ("PendingDeletion", Some(when))
        };
        self.invalidate(Some(rec.key_id));
        Ok((rec.arn(), state, when))
    }

    /// A key whose deletion is cancelled comes back Disabled, or pending import when it has no
    /// imported material.
    pub async fn cancel_key_deletion(&self, caller: &Caller, key_id: &str) -> Result<String> {
        self.as_current(|| self.cancel_key_deletion_once(caller, key_id))
            .await
    }

    async fn cancel_key_deletion_once(&self, caller: &Caller, key_id: &str) -> Result<String> {
        let access = Access::to("kms:CancelKeyDeletion", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        if rec.key_state != KeyState::PendingDeletion
            && rec.key_state != KeyState::PendingReplicaDeletion
        {
            return Err(KmsError::InvalidState(format!(
                "{} is not pending deletion.",
                rec.arn()
            )));
        }
        // Past its deletion date the key is deleted: the job removing its rows (and destroying
        // a private key kept in the token) may not have run yet, but nothing brings it back.
        if rec.deletion_date.is_some_and(|d| d <= self.now()) {
            return Err(KmsError::NotFound(crate::messages::key_does_not_exist(
                &rec.arn(),
            )));
        }
        // A key with imported material whose material is gone (deleted or expired while
        // pending deletion, or never imported) is pending import again, as on AWS. Decided
        // from its sealed import records, not from whether a material row is there: a row
        // put back with SQL after its deletion would otherwise bring the key back usable.
        let state = if rec.origin == Origin::External && !self.imported_material_held(&rec).await? {
            KeyState::PendingImport
        } else {
            KeyState::Disabled
        };
        self.set_state(&rec, state, None, None).await?;
        self.invalidate(Some(rec.key_id));
        Ok(rec.arn())
    }

    pub async fn update_key_description(
        &self,
        caller: &Caller,
        key_id: &str,
        description: &str,
    ) -> Result<()> {
        let access = Access::to("kms:UpdateKeyDescription", &[Check::Manageable]);
        let rec = self.key_for(caller, key_id, access).await?;
        self.keys.set_description(rec.key_id, description).await?;
        self.invalidate(Some(rec.key_id));
        Ok(())
    }

    /// The key an existing alias of the caller's account and region names.
    async fn alias_key(&self, caller: &Caller, name: &str) -> Result<std::sync::Arc<KeyRecord>> {
        let not_found = || keyid::alias_not_found(&caller.region, &caller.account_id, name);
        let current = self
            .keys
            .alias(&caller.account_id, &caller.region, name)
            .await?
            .ok_or_else(not_found)?;
        let current = self.verified_alias(current).await?.ok_or_else(not_found)?;
        self.record(current.key_id).await?.ok_or_else(not_found)
    }

    /// The target of an alias operation: a key id or key ARN of the caller's account.
    async fn alias_target_key(
        &self,
        caller: &Caller,
        target: &str,
    ) -> Result<std::sync::Arc<KeyRecord>> {
        if matches!(keyid::parse(target)?, keyid::KeyRef::Alias { .. }) {
            return Err(KmsError::Validation(
                "Aliases must refer to keys. Not aliases".into(),
            ));
        }
        let rec = self.resolve_own(caller, target).await?;
        Ok(rec)
    }

    pub async fn create_alias(&self, caller: &Caller, name: &str, target: &str) -> Result<()> {
        check_alias_name(name)?;
        let rec = self.alias_target_key(caller, target).await?;
        self.authorize_on_alias(caller, "kms:CreateAlias", name)
            .await?;
        self.admit(
            caller,
            &rec,
            Access::to("kms:CreateAlias", &[Check::Manageable]),
        )
        .await?;
        let now = self.now();
        let mut a = AliasRecord {
            alias_name: name.to_string(),
            key_id: rec.key_id,
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            created_at: now,
            updated_at: now,
            target_mrk: None,
            mac: vec![],
        };
        // A name used before (an alias deleted since) starts above its last generation.
        let seal = self
            .seal_row(super::seal::alias_row(&a), super::alias_mac_input(&a), None)
            .await?;
        a.mac = seal.mac.clone();
        // With the key's new set of aliases; again if another change of the set came first.
        let _one_at_a_time = self.alias_changes.lock().await;
        let (key, a, generation) = (&*rec, &a, seal.generation);
        let written = alias_set_retries(key, move || async move {
            let current = self.alias_set(key).await?;
            let next = current.with(Some((name, generation)), None);
            let (set, set_seal) = self.next_alias_set(key, &current, &next).await?;
            Ok(self
                .keys
                .create_alias(a, self.limits.aliases_per_region, PER_KEY, &set)
                .await
                .map(|()| set_seal))
        })
        .await?;
        match written {
            Ok(set_seal) => {
                self.written(&seal);
                self.written(&set_seal);
            }
            Err(e) if too_many_for_key(&e) => return Err(key_aliases_exceeded()),
            Err(StoreError::Conflict { constraint })
                if constraint == crate::store::QUOTA_EXCEEDED =>
            {
                return Err(KmsError::LimitExceeded(format!(
                    "The request was rejected because the account {} has reached the limit of {} aliases in {}.",
                    caller.account_id, self.limits.aliases_per_region, caller.region
                )))
            }
            Err(StoreError::Conflict { .. }) => {
                return Err(KmsError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    keyid::alias_arn(&caller.region, &caller.account_id, name)
                )))
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate_aliases();
        Ok(())
    }

    pub async fn update_alias(&self, caller: &Caller, name: &str, target: &str) -> Result<()> {
        check_alias_name(name)?;
        let not_found = || keyid::alias_not_found(&caller.region, &caller.account_id, name);
        let old = self.alias_key(caller, name).await?;
        let new = self.alias_target_key(caller, target).await?;
        self.authorize_on_alias(caller, "kms:UpdateAlias", name)
            .await?;
        self.admit(caller, &old, Access::to("kms:UpdateAlias", ANY_STATE))
            .await?;
        self.admit(
            caller,
            &new,
            Access::to("kms:UpdateAlias", &[Check::Manageable]),
        )
        .await?;
        // AWS: "the same type (both symmetric or both asymmetric or both HMAC), and ... the
        // same key usage": an RSA_2048 signing key's alias moves to an ECC_NIST_P256 one.
        if alias_type(&old) != alias_type(&new) || old.key_usage != new.key_usage {
            return Err(KmsError::Validation(format!(
                "{} and {} are not the same type of key (both symmetric, both asymmetric or both HMAC, with the same key usage).",
                old.arn(),
                new.arn()
            )));
        }
        let stored = self.stored_alias(caller, name).await?;
        // The alias keeps its creation date; only its last update moves (as on AWS).
        let created_at = stored.as_ref().map_or_else(|| self.now(), |p| p.created_at);
        let mut a = AliasRecord {
            alias_name: name.to_string(),
            key_id: new.key_id,
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            created_at,
            updated_at: self.now(),
            target_mrk: None,
            mac: vec![],
        };
        let previous = stored.map(|p| p.mac);
        let seal = self
            .seal_row(
                super::seal::alias_row(&a),
                super::alias_mac_input(&a),
                previous.as_deref(),
            )
            .await?;
        a.mac = seal.mac.clone();
        // The sets of aliases of the key it leaves and the key it joins (the same key: its
        // set with the alias's new generation).
        let _one_at_a_time = self.alias_changes.lock().await;
        let (old, new, a, generation) = (&*old, &*new, &a, seal.generation);
        let written = alias_set_retries(new, move || async move {
            let mut sets = Vec::new();
            let joining = self.alias_set(new).await?;
            sets.push(
                self.next_alias_set(new, &joining, &joining.with(Some((name, generation)), None))
                    .await?,
            );
            if old.key_id != new.key_id {
                let leaving = self.alias_set(old).await?;
                sets.push(
                    self.next_alias_set(old, &leaving, &leaving.with(None, Some(name)))
                        .await?,
                );
            }
            let (stored, seals): (Vec<_>, Vec<_>) = sets.into_iter().unzip();
            Ok(self
                .keys
                .update_alias(a, old.key_id, PER_KEY, &stored)
                .await
                .map(|done| (done, seals)))
        })
        .await?;
        match written {
            Ok((true, seals)) => {
                for s in &seals {
                    self.written(s);
                }
            }
            Ok((false, _)) => return Err(not_found()),
            Err(e) if too_many_for_key(&e) => return Err(key_aliases_exceeded()),
            Err(e) => return Err(e.into()),
        }
        self.written(&seal);
        self.invalidate_aliases();
        Ok(())
    }

    pub async fn delete_alias(&self, caller: &Caller, name: &str) -> Result<()> {
        not_reserved(name)?;
        let not_found = || keyid::alias_not_found(&caller.region, &caller.account_id, name);
        let rec = self.alias_key(caller, name).await?;
        self.authorize_on_alias(caller, "kms:DeleteAlias", name)
            .await?;
        self.admit(caller, &rec, Access::to("kms:DeleteAlias", ANY_STATE))
            .await?;
        let previous = self.stored_alias(caller, name).await?;
        // With the key's new set of aliases; again if another change of the set came first.
        let _one_at_a_time = self.alias_changes.lock().await;
        let key = &*rec;
        let deleted = alias_set_retries(key, move || async move {
            let current = self.alias_set(key).await?;
            let (set, set_seal) = self
                .next_alias_set(key, &current, &current.with(None, Some(name)))
                .await?;
            Ok(self
                .keys
                .delete_alias(&caller.account_id, &caller.region, name, &set)
                .await
                .map(|done| done.then_some(set_seal)))
        })
        .await?;
        match deleted {
            Ok(Some(set_seal)) => self.written(&set_seal),
            Ok(None) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        }
        // The row put back after its deletion is refused: the trail holds a later generation.
        if let Some(p) = previous {
            self.removed(&super::seal::alias_row(&p), &p.mac);
        }
        self.invalidate_aliases();
        Ok(())
    }

    /// The caller's alias `name` as stored, verified (not from the cache): the generation a
    /// change to it moves on from.
    async fn stored_alias(&self, caller: &Caller, name: &str) -> Result<Option<AliasRecord>> {
        match self
            .keys
            .alias(&caller.account_id, &caller.region, name)
            .await?
        {
            Some(a) => self.verified_alias(a).await,
            None => Ok(None),
        }
    }

    /// A page of the aliases of the caller's account and region (of one key, with `key_id`),
    /// and — listing them all — of the predefined `alias/aws/<service>` names whose AWS managed
    /// key does not exist yet, which AWS lists without a `TargetKeyId`: each by name, after
    /// the name `marker` (the last one listed before). At most `limit` + 1 aliases are read
    /// past the ones that fail their checks, so that a page costs a page, however many
    /// aliases the account has; the predefined names after the marker are all given, for the
    /// caller to merge.
    pub async fn list_aliases(
        &self,
        caller: &Caller,
        key_id: Option<&str>,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<(Vec<AliasRecord>, Vec<String>)> {
        let key = match key_id {
            Some(k) => {
                if matches!(keyid::parse(k)?, keyid::KeyRef::Alias { .. }) {
                    return Err(KmsError::InvalidArn(format!("Invalid keyId {k}")));
                }
                // ListAliases takes the caller's own keys only: another account's key is
                // refused alike whether it exists or not.
                if let Some(arn) = super::material::foreign_reference(caller, k)? {
                    return Err(self
                        .absent_elsewhere(caller, "kms:ListAliases", arn)
                        .await?);
                }
                let rec = self.resolve(caller, k, "kms:ListAliases").await?;
                self.authorize(caller, "kms:ListAliases", None, None, &[])
                    .await?;
                Some(rec.key_id)
            }
            None => {
                self.authorize(caller, "kms:ListAliases", None, None, &[])
                    .await?;
                None
            }
        };
        let predefined = |after: &str| match key {
            Some(_) => Vec::new(),
            None => super::managed_keys::MANAGED_KEY_SERVICES
                .iter()
                .map(|s| format!("alias/aws/{s}"))
                .filter(|name| name.as_str() > after)
                .collect(),
        };
        // The marker is a name listed before: a predefined one, or an alias of the listing.
        let after = marker.unwrap_or("");
        if let Some(m) = marker {
            let listed = predefined("").iter().any(|n| n == m)
                || self
                    .keys
                    .alias(&caller.account_id, &caller.region, m)
                    .await?
                    .is_some_and(|a| key.is_none_or(|k| a.key_id == k));
            if !listed {
                return Err(KmsError::InvalidMarker);
            }
        }
        let mut out = Vec::with_capacity(limit + 1);
        let mut from = after.to_string();
        loop {
            let rows = self
                .keys
                .list_aliases(
                    &caller.account_id,
                    &caller.region,
                    key,
                    &from,
                    limit as i64 + 1,
                )
                .await?;
            let last_page = rows.len() <= limit;
            if let Some(a) = rows.last() {
                from = a.alias_name.clone();
            }
            for a in rows {
                // A row that fails its check is logged and left out of the listing, as is one
                // that moved to another key, or went, while it was read.
                match self.verified_alias(a).await {
                    Ok(Some(a)) if key.is_none_or(|k| a.key_id == k) => {
                        // Its target named as the key is verified (a family's key by its
                        // family's id), never from the key row's family as stored.
                        match self.record(a.key_id).await {
                            Ok(Some(rec)) => out.push(AliasRecord {
                                target_mrk: rec.mrk_id,
                                ..a
                            }),
                            Ok(None) | Err(KmsError::KeyUnavailable) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(_) | Err(KmsError::KeyUnavailable) => {}
                    Err(e) => return Err(e),
                }
            }
            if out.len() > limit || last_page {
                break;
            }
        }
        let predefined = predefined(after)
            .into_iter()
            .filter(|name| !out.iter().any(|a| &a.alias_name == name))
            .collect();
        Ok((out, predefined))
    }

    pub async fn tag_resource(&self, caller: &Caller, key_id: &str, tags: Vec<Tag>) -> Result<()> {
        let conditions = TagConditions::of(&tags)?;
        let (single, multi) = (conditions.single(), conditions.multi());
        let access = Access::to("kms:TagResource", &[Check::Manageable])
            .conditions(&single)
            .multi(&multi);
        let rec = self.key_for(caller, key_id, access).await?;
        check_tags(&tags)?;
        let mut next: Vec<Tag> = self
            .tags_of(&rec)
            .await?
            .iter()
            .filter(|e| !tags.iter().any(|t| t.key == e.key))
            .cloned()
            .collect();
        next.extend(tags);
        no_case_twins(&next)?;
        if next.len() > MAX_TAGS_PER_KEY {
            return Err(KmsError::LimitExceeded(format!(
                "A KMS key can have at most {MAX_TAGS_PER_KEY} tags."
            )));
        }
        self.store_tags(&rec, &next).await
    }

    pub async fn untag_resource(
        &self,
        caller: &Caller,
        key_id: &str,
        keys: Vec<String>,
    ) -> Result<()> {
        let tag_keys = [("aws:TagKeys", keys.as_slice())];
        let access = Access::to("kms:UntagResource", &[Check::Manageable]).multi(&tag_keys);
        let rec = self.key_for(caller, key_id, access).await?;
        let next: Vec<Tag> = self
            .tags_of(&rec)
            .await?
            .iter()
            .filter(|t| !keys.contains(&t.key))
            .cloned()
            .collect();
        self.store_tags(&rec, &next).await
    }

    pub async fn list_resource_tags(&self, caller: &Caller, key_id: &str) -> Result<Vec<Tag>> {
        let access = Access::to("kms:ListResourceTags", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        Ok(self.tags_of(&rec).await?.to_vec())
    }
}

/// A key's tags (or a request's) never hold two keys that differ only by case: policies see
/// tag keys without case (`aws:RequestTag/env`, `aws:ResourceTag/env`), so one of the two
/// values would decide unseen. Refused with `TagException`.
fn no_case_twins(tags: &[Tag]) -> Result<()> {
    // (The same key twice is another error, `check_tags`'s.)
    let mut seen = std::collections::HashMap::new();
    for t in tags {
        if seen
            .insert(t.key.to_lowercase(), t.key.as_str())
            .is_some_and(|k| k != t.key)
        {
            return Err(KmsError::Tag(format!(
                "Tag keys that differ only by case cannot be set together: {}",
                tags.iter()
                    .filter(|o| o.key.eq_ignore_ascii_case(&t.key))
                    .map(|o| o.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// The condition keys of the tags a request sets: `aws:RequestTag/<key>` for each, and
/// `aws:TagKeys` (multi-valued) for all of them.
pub(crate) struct TagConditions {
    requested: Vec<(String, String)>,
    keys: Vec<String>,
}

impl TagConditions {
    /// (A set with two keys that differ only by case is refused: see [`no_case_twins`].)
    pub(crate) fn of(tags: &[Tag]) -> Result<TagConditions> {
        no_case_twins(tags)?;
        Ok(TagConditions {
            requested: tags
                .iter()
                .map(|t| (format!("aws:RequestTag/{}", t.key), t.value.clone()))
                .collect(),
            keys: tags.iter().map(|t| t.key.clone()).collect(),
        })
    }

    pub(crate) fn single(&self) -> Vec<(&str, &str)> {
        self.requested
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub(crate) fn multi(&self) -> [(&'static str, &[String]); 1] {
        [("aws:TagKeys", self.keys.as_slice())]
    }
}
