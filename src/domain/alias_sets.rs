//! A key's set of aliases, under a seal: what `kms:ResourceAliases` holds when a policy's
//! conditions ask for it.
//!
//! Each alias row is sealed (name, key, generation), so a database writer cannot forge one,
//! move one to another key or put an older one back. A row *deleted* in the database leaves no
//! row to check, and a condition on the key's aliases (a Deny for `alias/restricted-*`, an
//! Allow for `ForAllValues` of `alias/dev-*`) would decide as if the alias had never been. So
//! each key keeps the set of its aliases as the service last wrote it (`keys.alias_set`: each
//! name with the generation its row had then), sealed with a generation of its own
//! (`<key ARN>#aliases` in the trail). A name of the set that no row of the key holds is
//! refused unless the trail holds a later generation of that alias: a call deleted it or
//! pointed it elsewhere since (on this release, which also writes the set, or on the previous
//! one beside it during a rolling upgrade, which does not). A row of the key that the set
//! does not name is a verified alias all the same (written by the previous release, say); the
//! next alias change of the key seals it into the set.
//!
//! A key from before the set was kept has none (`NULL`): its rows are taken as they are, as
//! before, until its first alias change seals its set, unless the trail holds a generation of
//! its set (the set was removed in the database).

use super::*;
use crate::store::AliasSetSeal;

/// A key's aliases as verified: each name with its row's generation, by name, and the seal
/// they were read under (`None`: a key from before the set was kept).
pub(crate) struct AliasSet {
    pub names: Vec<(String, i64)>,
    pub sealed: Option<Vec<u8>>,
}

impl AliasSet {
    /// The names alone, by name.
    pub fn names(&self) -> Vec<String> {
        self.names.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The set with `name` (at its row's generation `generation`) and without `without`.
    pub fn with(&self, add: Option<(&str, i64)>, without: Option<&str>) -> Vec<(String, i64)> {
        let mut next: Vec<(String, i64)> = self
            .names
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != without && Some(n.as_str()) != add.map(|a| a.0))
            .cloned()
            .collect();
        if let Some((n, g)) = add {
            next.push((n.to_string(), g));
        }
        next.sort();
        next
    }
}

/// A set as stored: JSON, `[[name, generation], …]`.
fn stored_form(names: &[(String, i64)]) -> String {
    serde_json::to_string(names).expect("names and numbers")
}

impl Kms {
    /// `rec`'s aliases, read now (not cached): its sealed set and its alias rows, each
    /// verified. Refused (`KeyUnavailable`) when the set's seal fails, or when a name of the
    /// set has no row and the trail holds no later generation of it (deleted in the
    /// database). A change committing between the two reads makes them disagree for a moment:
    /// read again a few times before refusing.
    pub(crate) async fn alias_set(&self, rec: &KeyRecord) -> Result<AliasSet> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(set) = self.alias_set_once(rec).await? {
                return Ok(set);
            }
            if attempt == 5 {
                tracing::error!(key_id = %rec.key_id, "an alias of the key's sealed set has no row, and the trail records no later change of it (deleted in the database?); refusing to use the key");
                return Err(KmsError::KeyUnavailable);
            }
            tokio::time::sleep(std::time::Duration::from_millis(5 << (attempt - 1))).await;
        }
    }

    /// One reading of [`Kms::alias_set`]; `None` when a name of the set has no row.
    async fn alias_set_once(&self, rec: &KeyRecord) -> Result<Option<AliasSet>> {
        let row = seal::key_row(rec, "aliases");
        // The trail before the row: it then holds only generations committed before the read.
        let trail = self.trail_of(std::slice::from_ref(&row)).await?;
        let Some(k) = self.keys.key(rec.key_id).await? else {
            return Ok(Some(AliasSet {
                names: Vec::new(),
                sealed: None,
            }));
        };
        let refuse = |why: &str| {
            tracing::error!(key_id = %rec.key_id, why, "the key's set of aliases failed its integrity check; refusing to use the key");
            Err(KmsError::KeyUnavailable)
        };
        let sealed: Vec<(String, i64)> = match (&k.alias_set, &k.aliases_mac) {
            (Some(set), Some(_)) => {
                let input = aliases_mac_input(&k, set);
                if !self
                    .current_under(row, input, &k.aliases_mac, &trail)
                    .await?
                {
                    return refuse("its seal does not hold, or the trail holds a later set");
                }
                match serde_json::from_str(set) {
                    Ok(names) => names,
                    Err(_) => return refuse("its stored set does not read"),
                }
            }
            (None, None) => {
                // From before the set was kept, unless the trail holds a set of it.
                if seal::first_behind(&[(row, &[])], &trail).is_some() {
                    return refuse("the set is gone, and the trail holds one");
                }
                Vec::new()
            }
            _ => return refuse("half of it is stored"),
        };
        let mut names = Vec::new();
        for a in self
            .keys
            .list_aliases(&rec.account_id, &rec.region, Some(rec.key_id), "", i64::MAX)
            .await?
        {
            // Read again if it raced a change; one that moved to another key meanwhile is
            // not this key's any more.
            match self.verified_alias(a).await? {
                Some(a) if a.key_id == rec.key_id => {
                    names.push((a.alias_name, seal::generation_of(&a.mac)))
                }
                _ => {}
            }
        }
        let missing: Vec<&(String, i64)> = sealed
            .iter()
            .filter(|(n, _)| !names.iter().any(|(m, _)| m == n))
            .collect();
        if !missing.is_empty() {
            let rows: Vec<String> = missing
                .iter()
                .map(|(n, _)| seal::alias_row_of(&rec.account_id, &rec.region, n))
                .collect();
            for ((_, generation), row) in missing.iter().zip(&rows) {
                if !self.removed_per_sealed_event(row, *generation).await? {
                    return Ok(None);
                }
            }
        }
        names.sort();
        Ok(Some(AliasSet {
            names,
            sealed: k.aliases_mac.clone(),
        }))
    }

    /// Whether the trail holds a later change of alias row `row` than `generation` (the one
    /// the key's set sealed), by an event the service sealed that names it: the alias was
    /// deleted or moved on, not removed from the database. The generations index beside the
    /// trail is not hashed, and an event a database writer appends is not sealed.
    async fn removed_per_sealed_event(&self, row: &str, generation: i64) -> Result<bool> {
        let public_key = self.audit_public_key().await?;
        for (later, seq) in self.keys.generation_events(row, generation, 16).await? {
            let Some(event) =
                crate::audit::sealed_event(self.keys.as_ref(), &public_key, seq).await?
            else {
                continue;
            };
            let body: serde_json::Value = serde_json::from_str(&event.body).unwrap_or_default();
            if crate::audit::generations_in(&body)
                .iter()
                .any(|(r, g)| r == row && *g == later)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The seal of `rec`'s next set of aliases, `next`, over the set as verified (`current`):
    /// stored with the alias change, and passed to [`Kms::written`] once it committed.
    pub(crate) async fn next_alias_set(
        &self,
        rec: &KeyRecord,
        current: &AliasSet,
        next: &[(String, i64)],
    ) -> Result<(AliasSetSeal, seal::Seal)> {
        let alias_set = stored_form(next);
        let seal = self
            .seal_row(
                seal::key_row(rec, "aliases"),
                aliases_mac_input(rec, &alias_set),
                current.sealed.as_deref(),
            )
            .await?;
        Ok((
            AliasSetSeal {
                key_id: rec.key_id,
                expected: current.sealed.clone(),
                alias_set,
                mac: seal.mac.clone(),
            },
            seal,
        ))
    }

    /// A new key's set of aliases (`names`, each with its row's generation), sealed into
    /// `rec` before it is stored; pass the seal to [`Kms::written`] once the key committed.
    pub(crate) async fn seal_new_alias_set(
        &self,
        rec: &mut KeyRecord,
        names: &[(String, i64)],
    ) -> Result<seal::Seal> {
        let set = stored_form(names);
        let seal = self
            .seal_row(
                seal::key_row(rec, "aliases"),
                aliases_mac_input(rec, &set),
                None,
            )
            .await?;
        rec.alias_set = Some(set);
        rec.aliases_mac = Some(seal.mac.clone());
        Ok(seal)
    }
}
