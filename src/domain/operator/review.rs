//! Rows stored before they carried a MAC (an upgrade from a release that did not seal them)
//! are refused until an operator has seen them and sealed exactly what was seen (`kms admin
//! seal`, then `kms admin seal --confirm <digest>`). A row whose MAC fails, or whose MAC was
//! removed after the trail recorded that every row of its kind carried one, is never sealed.

use super::Operator;
use crate::domain::seal;
use crate::domain::{
    alias_mac_input, attrs_mac_input, policy_mac_input, rotation_mac_input, state_mac_input,
    tags_mac_input, Kms, KmsError,
};
use crate::store::{KeyMac, KeyRecord, Tag};
use anyhow::{anyhow, bail, Result};

/// Every kind of row MAC. A `SealCoverage` event in the trail lists the kinds every row
/// carried when it was recorded (by `kms init` on a database with nothing unsealed, and by
/// `kms admin seal` once nothing is left to seal); afterwards a row of such a kind without its
/// MAC had it removed in the database.
pub const MAC_KINDS: &[&str] = &[
    "principal",
    "key-policy",
    "key-state",
    "alias",
    "key-attributes",
    "key-rotation",
    "key-tags",
    "key-aliases",
];

/// The latest `SealCoverage` event's sequence number and the MAC kinds the trail's
/// `SealCoverage` events list (a kind once covered stays covered: a later event with fewer
/// kinds takes none away). Every event the search finds must be as it was chained: the chain
/// from it to the first checkpoint after it (every checkpoint after it must verify with the
/// audit public key), or else to the head this operator's anchor file holds, or else to the
/// head, hashes link by link. A coverage rewritten in the database (its kinds removed, or its
/// author, so that a row whose MAC a writer removed is offered as never sealed, with the hashes
/// after it computed again) refuses the review.
async fn sealed_coverage(
    store: &dyn crate::store::Store,
    public_key: &[u8],
    anchored: Option<(i64, Vec<u8>)>,
) -> Result<(Option<i64>, Vec<String>)> {
    use crate::audit::verify::{checkpoint_verifies, ChainCheck};
    let mut kinds: Vec<String> = Vec::new();
    let mut last = None;
    let found = store.seal_coverages().await?;
    if found.is_empty() {
        return Ok((None, kinds));
    }
    let checkpoints = store.checkpoints().await?;
    let head = store.audit_head().await?;
    for row in found {
        let after_it: Vec<_> = checkpoints.iter().filter(|c| c.seq >= row.seq).collect();
        if let Some(c) = after_it
            .iter()
            .find(|c| !checkpoint_verifies(c, public_key))
        {
            bail!(
                "the checkpoint at event {} does not verify with the audit public key (run `kms audit verify`): the trail cannot say which rows had their MAC removed, so no row is offered for sealing",
                c.seq
            );
        }
        let (end, end_hash, what) = match (after_it.first(), &anchored) {
            (Some(c), _) => (
                c.seq,
                c.hash.clone(),
                format!("the checkpoint at event {}", c.seq),
            ),
            (None, Some((seq, hash))) if *seq >= row.seq => (
                *seq,
                hash.clone(),
                format!("the anchored head (event {seq})"),
            ),
            _ => (
                head.0,
                head.1.clone(),
                format!("the head (event {})", head.0),
            ),
        };
        let mut check = ChainCheck::new(false, [end]);
        let mut after = row.seq - 1;
        crate::audit::verify::pages(store, after, |page| {
            for e in page.iter().filter(|e| e.seq <= end) {
                check.link(e.seq, &e.prev_hash, &e.hash, Some(&e.body));
                after = e.seq;
            }
            if after >= end {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        })
        .await?;
        let (report, hashes) = check.finish(&[], public_key, None);
        if !report.ok() || after < end || hashes.get(&end) != Some(&end_hash) {
            bail!(
                "the audit trail's SealCoverage event {} is not as it was chained up to {what} (run `kms audit verify`): the trail cannot say which rows had their MAC removed, so no row is offered for sealing",
                row.seq
            );
        }
        // The operator's own event, by its body (an older release's refusal event could carry
        // a writer's text as its first `eventName`): as chained, so as written.
        let body: serde_json::Value = serde_json::from_str(&row.body).unwrap_or_default();
        if body["eventName"] != "SealCoverage" || body["userIdentity"]["type"] != "Operator" {
            continue;
        }
        for k in body
            .pointer("/requestParameters/details/kinds")
            .and_then(|k| k.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            if !kinds.iter().any(|x| x == k) {
                kinds.push(k.to_string());
            }
        }
        last = Some(row.seq);
    }
    Ok((last, kinds))
}

/// One row without a MAC, as `kms admin seal` shows it.
pub enum Unsealed {
    Principal(String, crate::store::PrincipalAuthz),
    KeyPolicy(crate::store::KeyRecord),
    KeyState(crate::store::KeyRecord),
    Alias(crate::store::AliasRecord),
    KeyAttrs(crate::store::KeyRecord),
    KeyRotation(crate::store::KeyRecord),
    KeyTags(crate::store::KeyRecord, Vec<crate::store::Tag>),
    KeyAliases(crate::store::KeyRecord, Vec<(String, i64)>),
}

impl Unsealed {
    /// Its kind of MAC (one of [`MAC_KINDS`]).
    fn kind(&self) -> &'static str {
        match self {
            Unsealed::Principal(..) => "principal",
            Unsealed::KeyPolicy(_) => "key-policy",
            Unsealed::KeyState(_) => "key-state",
            Unsealed::Alias(_) => "alias",
            Unsealed::KeyAttrs(_) => "key-attributes",
            Unsealed::KeyRotation(_) => "key-rotation",
            Unsealed::KeyTags(..) => "key-tags",
            Unsealed::KeyAliases(..) => "key-aliases",
        }
    }
}

pub struct UnsealedRow {
    /// What the row is ("principal arn:…", "policy of key …").
    pub name: String,
    /// Everything that would be sealed, in one line.
    pub shown: String,
    row: Unsealed,
}

/// Every row without a MAC, as `kms admin seal` shows it (also counted at `kms serve` start).
pub async fn unsealed_rows(kms: &Kms) -> Result<Vec<UnsealedRow>, KmsError> {
    let mut out = Vec::new();
    for (arn, a) in kms.unsealed_principals().await? {
        let mut policies = a.policies.clone();
        policies.sort();
        let mut tags: Vec<String> = a
            .tags
            .iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect();
        tags.sort();
        let shown = serde_json::json!({
            "row": "principal",
            "arn": arn,
            "account": a.account_id,
            "kind": a.kind,
            "trust_policy": a.trust_policy,
            "integrated_service": a.via_service,
            "identity_policies": policies,
            "tags": tags,
        });
        out.push(UnsealedRow {
            name: format!("principal {arn}"),
            shown: shown.to_string(),
            row: Unsealed::Principal(arn, a),
        });
    }
    let (policies, states) = kms.unsealed_keys().await?;
    for k in policies {
        let shown = serde_json::json!({
            "row": "key policy",
            "key": k.arn(),
            "policy": k.policy,
        });
        out.push(UnsealedRow {
            name: format!("policy of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyPolicy(k),
        });
    }
    for k in states {
        let shown = serde_json::json!({
            "row": "key state",
            "key": k.arn(),
            "state": k.key_state,
            "deletion_date": k.deletion_date.map(|d| d.to_rfc3339()),
        });
        out.push(UnsealedRow {
            name: format!("state of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyState(k),
        });
    }
    for k in kms.unsealed_attrs().await? {
        let shown = serde_json::json!({
            "row": "key attributes",
            "key": k.arn(),
            "key_spec": k.key_spec,
            "key_usage": k.key_usage,
            "origin": k.origin,
            "key_manager": k.key_manager,
            "multi_region": k.multi_region,
            "mrk_id": k.mrk_id.map(|m| m.to_string()),
        });
        out.push(UnsealedRow {
            name: format!("attributes of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyAttrs(k),
        });
    }
    for k in kms.unsealed_rotation().await? {
        let shown = serde_json::json!({
            "row": "key rotation state",
            "key": k.arn(),
            "current_version": k.current_version,
            "rotation_enabled": k.rotation_enabled,
            "rotation_period_days": k.rotation_period_days,
            "next_rotation_date": k.next_rotation_date.map(|d| d.to_rfc3339()),
            "on_demand_rotations": k.on_demand_rotations,
            "mrk_primary": k.mrk_primary,
        });
        out.push(UnsealedRow {
            name: format!("rotation state of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyRotation(k),
        });
    }
    let (aliases, tags) = kms.unsealed_aliases_and_tags().await?;
    for a in aliases {
        let name = crate::domain::keyid::alias_arn(&a.region, &a.account_id, &a.alias_name);
        let shown = serde_json::json!({
            "row": "alias",
            "alias": name,
            "target_key_id": a.key_id.to_string(),
        });
        out.push(UnsealedRow {
            name: format!("alias {name}"),
            shown: shown.to_string(),
            row: Unsealed::Alias(a),
        });
    }
    for (k, t) in tags {
        let mut pairs: Vec<String> = t.iter().map(|t| format!("{}={}", t.key, t.value)).collect();
        pairs.sort();
        let shown = serde_json::json!({
            "row": "key tags",
            "key": k.arn(),
            "tags": pairs,
        });
        out.push(UnsealedRow {
            name: format!("tags of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyTags(k, t),
        });
    }
    for (k, names) in kms.unsealed_alias_sets().await? {
        let shown = serde_json::json!({
            "row": "key aliases",
            "key": k.arn(),
            "aliases": names.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        });
        out.push(UnsealedRow {
            name: format!("aliases of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyAliases(k, names),
        });
    }
    Ok(out)
}

/// SHA-256 over what was shown, in hex: `--confirm` seals only what the operator saw.
fn rows_digest(rows: &[UnsealedRow]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for r in rows {
        ctx.update(r.shown.as_bytes());
        ctx.update(b"\n");
    }
    hex::encode(ctx.finish().as_ref())
}

/// What `kms admin seal` found: the rows it may seal (`rows`, with their [`Review::digest`])
/// and those it refuses (`refused`: their MAC was removed).
pub struct Review {
    pub rows: Vec<UnsealedRow>,
    pub refused: Vec<UnsealedRow>,
    /// The `SealCoverage` event that makes `refused` refused.
    pub coverage_seq: Option<i64>,
    covered: Vec<String>,
}

impl Review {
    /// SHA-256 over what is shown, in hex: `--confirm` seals only what the operator saw.
    pub fn digest(&self) -> String {
        rows_digest(&self.rows)
    }
}

impl Operator {
    /// The rows without a MAC: those an operator may seal, and those never sealed (rows of a
    /// kind the trail says every row carried, in a `SealCoverage` event, had their MAC removed).
    pub async fn review(&self) -> Result<Review> {
        let unsealed = unsealed_rows(&self.kms).await?;
        let (coverage_seq, covered) = sealed_coverage(
            self.store.as_ref(),
            &self.audit_public_key().await?,
            self.anchored(),
        )
        .await?;
        let (refused, rows) = unsealed
            .into_iter()
            .partition(|r| covered.iter().any(|k| k == r.row.kind()));
        Ok(Review {
            rows,
            refused,
            coverage_seq,
            covered,
        })
    }

    /// The head this operator's anchor file holds (seq and hash), if one is configured.
    fn anchored(&self) -> Option<(i64, Vec<u8>)> {
        self.anchor.as_ref().and_then(|a| a.opened_at())
    }

    /// The audit public key (SubjectPublicKeyInfo DER) the checkpoints verify with.
    async fn audit_public_key(&self) -> Result<Vec<u8>> {
        crate::audit::public_key_der(self.kms.hsm())
            .await
            .map_err(|e| anyhow!("the audit public key cannot be read: {e}"))
    }

    /// Seal the rows of `review`, if `confirm` is its digest and they are still as shown;
    /// `sealed` is told each row's name as it is sealed. Once nothing is left to seal, the
    /// trail records that every row carries every MAC.
    pub async fn seal(
        &self,
        review: &Review,
        confirm: &str,
        mut sealed: impl FnMut(&str),
    ) -> Result<()> {
        let digest = review.digest();
        if review.rows.is_empty() || confirm != digest {
            bail!(
                "the rows without a MAC are not those of digest {confirm} (now {digest}); run `kms admin seal` again and review them"
            );
        }
        let kms = &self.kms;
        for r in &review.rows {
            let done = match &r.row {
                Unsealed::Principal(arn, a) => {
                    kms.seal_reviewed_principal(arn, a).await.map(|_| true)
                }
                Unsealed::KeyPolicy(k) => kms.seal_reviewed_policy(k).await,
                Unsealed::KeyState(k) => kms.seal_reviewed_state(k).await,
                Unsealed::Alias(a) => kms.seal_reviewed_alias(a).await,
                Unsealed::KeyAttrs(k) => kms.seal_reviewed_attrs(k).await,
                Unsealed::KeyRotation(k) => kms.seal_reviewed_rotation(k).await,
                Unsealed::KeyTags(k, t) => kms.seal_reviewed_tags(k, t).await,
                Unsealed::KeyAliases(k, names) => kms.seal_reviewed_alias_set(k, names).await,
            }?;
            if !done {
                bail!(
                    "{} changed after it was shown; it was not sealed (rows before it were). Run `kms admin seal` again",
                    r.name
                );
            }
            sealed(&r.name);
        }
        let left = unsealed_rows(kms)
            .await?
            .into_iter()
            .filter(|r| !review.covered.iter().any(|k| k == r.row.kind()))
            .count();
        if left == 0 {
            self.record_coverage().await?;
        }
        Ok(())
    }

    /// `kms init`: how many rows carry no MAC; when none, the trail records (once) that every
    /// row carries every kind of MAC, so that from then on a MAC missing is a MAC removed.
    pub async fn unsealed_at_init(&self) -> Result<usize> {
        let n = unsealed_rows(&self.kms).await?.len();
        if n == 0
            && sealed_coverage(
                self.store.as_ref(),
                &self.audit_public_key().await?,
                self.anchored(),
            )
            .await?
            .1
            .len()
                < MAC_KINDS.len()
        {
            self.record_coverage().await?;
        }
        Ok(n)
    }

    /// Record that every row carries every kind of MAC.
    async fn record_coverage(&self) -> Result<()> {
        self.record(crate::audit::admin_event(
            "SealCoverage",
            "*",
            &self.name,
            serde_json::json!({ "kinds": MAC_KINDS }),
        ))
        .await
    }
}

impl Kms {
    /// Keys whose policy, and keys whose state, carry no MAC (stored before they had one):
    /// what `kms admin seal` shows before it seals anything.
    pub async fn unsealed_keys(&self) -> Result<(Vec<KeyRecord>, Vec<KeyRecord>), KmsError> {
        Ok((
            self.keys.keys_without_mac(KeyMac::Policy).await?,
            self.keys.keys_without_mac(KeyMac::State).await?,
        ))
    }

    /// Aliases and key tag sets stored without a MAC (before they had one), with the tags:
    /// what `kms admin seal` shows.
    #[allow(clippy::type_complexity)]
    pub async fn unsealed_aliases_and_tags(
        &self,
    ) -> Result<(Vec<crate::store::AliasRecord>, Vec<(KeyRecord, Vec<Tag>)>), KmsError> {
        let aliases = self.keys.aliases_without_mac().await?;
        let mut tags = Vec::new();
        for k in self.keys.keys_without_mac(KeyMac::Tags).await? {
            let t = self.keys.tags(k.key_id).await?;
            tags.push((k, t));
        }
        Ok((aliases, tags))
    }

    /// Keys from before sets of aliases were kept (no set, no seal), each with its aliases as
    /// stored (name, the generation of its row): what `kms admin seal` shows. (Each alias row
    /// is still checked on its own when it is used.)
    pub async fn unsealed_alias_sets(
        &self,
    ) -> Result<Vec<(KeyRecord, Vec<(String, i64)>)>, KmsError> {
        let mut out = Vec::new();
        // The aliases of each account and Region read once (a deployment from before the sets
        // has every key here).
        let mut listed: std::collections::HashMap<
            (String, String),
            Vec<crate::store::AliasRecord>,
        > = Default::default();
        for k in self.keys.keys_without_mac(KeyMac::Aliases).await? {
            if k.alias_set.is_some() {
                // A set without its seal: refused where the key is used; never sealed as found.
                tracing::error!(key_id = %k.key_id, "the key's set of aliases has no seal (removed in the database?); it is refused and not offered for sealing");
                continue;
            }
            let place = (k.account_id.clone(), k.region.clone());
            if !listed.contains_key(&place) {
                let all = self
                    .keys
                    .list_aliases(&place.0, &place.1, None, "", i64::MAX)
                    .await?;
                listed.insert(place.clone(), all);
            }
            let mut names: Vec<(String, i64)> = listed[&place]
                .iter()
                .filter(|a| a.key_id == k.key_id)
                .map(|a| (a.alias_name.clone(), seal::generation_of(&a.mac)))
                .collect();
            names.sort();
            out.push((k, names));
        }
        Ok(out)
    }

    /// Seal a key's set of aliases as shown to an operator; false when it changed since.
    pub async fn seal_reviewed_alias_set(
        &self,
        shown: &KeyRecord,
        names: &[(String, i64)],
    ) -> Result<bool, KmsError> {
        let (set, seal) = self
            .next_alias_set(
                shown,
                &crate::domain::alias_sets::AliasSet {
                    names: Vec::new(),
                    sealed: None,
                },
                names,
            )
            .await?;
        let done = self.keys.seal_alias_set(&set).await?;
        self.written_if(done, &seal);
        Ok(done)
    }

    /// Keys whose attributes carry no MAC: what `kms admin seal` shows.
    pub async fn unsealed_attrs(&self) -> Result<Vec<KeyRecord>, KmsError> {
        Ok(self.keys.keys_without_mac(KeyMac::Attrs).await?)
    }

    /// Keys whose rotation state carries no MAC: what `kms admin seal` shows.
    pub async fn unsealed_rotation(&self) -> Result<Vec<KeyRecord>, KmsError> {
        Ok(self.keys.keys_without_mac(KeyMac::Rotation).await?)
    }

    /// Seal a key's rotation state as shown to an operator; false when it changed since.
    pub async fn seal_reviewed_rotation(&self, shown: &KeyRecord) -> Result<bool, KmsError> {
        let seal = self
            .seal_row(
                seal::key_row(shown, "rotation"),
                rotation_mac_input(shown),
                None,
            )
            .await?;
        let done = self.keys.set_rotation_mac(shown, &seal.mac).await?;
        self.written_if(done, &seal);
        Ok(done)
    }

    /// Seal a key's attributes as shown to an operator; false when they changed since.
    pub async fn seal_reviewed_attrs(&self, shown: &KeyRecord) -> Result<bool, KmsError> {
        let seal = self
            .seal_row(
                seal::key_row(shown, "attributes"),
                attrs_mac_input(shown),
                None,
            )
            .await?;
        let done = self.keys.set_attrs_mac(shown, &seal.mac).await?;
        self.written_if(done, &seal);
        Ok(done)
    }

    /// Seal an alias as shown to an operator; false when it changed since.
    pub async fn seal_reviewed_alias(
        &self,
        shown: &crate::store::AliasRecord,
    ) -> Result<bool, KmsError> {
        let seal = self
            .seal_row(seal::alias_row(shown), alias_mac_input(shown), None)
            .await?;
        let done = self.keys.set_alias_mac(shown, &seal.mac).await?;
        self.written_if(done, &seal);
        Ok(done)
    }

    /// Seal a key's tags as shown to an operator; false when they changed since.
    pub async fn seal_reviewed_tags(
        &self,
        shown: &KeyRecord,
        tags: &[Tag],
    ) -> Result<bool, KmsError> {
        let seal = self
            .seal_row(
                seal::key_row(shown, "tags"),
                tags_mac_input(shown, tags),
                None,
            )
            .await?;
        let done = self
            .keys
            .set_tags_mac(shown.key_id, tags, &seal.mac)
            .await?;
        self.written_if(done, &seal);
        Ok(done)
    }

    /// Seal a key's policy as shown to an operator (`kms admin seal`); false when the row has
    /// changed since (nothing sealed).
    pub async fn seal_reviewed_policy(&self, shown: &KeyRecord) -> Result<bool, KmsError> {
        let seal = self
            .seal_row(
                seal::key_row(shown, "policy"),
                policy_mac_input(shown),
                None,
            )
            .await?;
        let done = self
            .keys
            .set_policy_mac(shown.key_id, &shown.policy, &seal.mac)
            .await?;
        self.written_if(done, &seal);
        Ok(done)
    }

    /// Seal a key's state as shown to an operator (`kms admin seal`); false when the row has
    /// changed since (nothing sealed).
    pub async fn seal_reviewed_state(&self, shown: &KeyRecord) -> Result<bool, KmsError> {
        let seal = self
            .seal_row(seal::key_row(shown, "state"), state_mac_input(shown), None)
            .await?;
        let done = self.keys.set_state_mac(shown, &seal.mac).await?;
        self.written_if(done, &seal);
        Ok(done)
    }
}
