//! A deleted principal is forgotten the way AWS forgets one: the key policies and role trust
//! policies that named its ARN name a unique id instead (`AIDA…` for a user, `AROA…` for a
//! role), which nothing matches, so a user or role re-created with the same name inherits none
//! of the old one's access. Conditions that compare ARNs (`aws:PrincipalArn`) are strings and
//! stay as they are, as on AWS.

use crate::domain::seal;
use crate::domain::Result;
use crate::domain::{policy_mac_input, principal_mac_input, Kms, KmsError};
use crate::store::PrincipalAuthz;
use crate::store::PrincipalChange;
use serde_json::Value;

/// What `Kms::forget_principal` rewrote.
#[derive(Debug, Default)]
pub struct Forgotten {
    /// The id the deleted principal is shown as from now on.
    pub unique_id: String,
    pub key_policies: usize,
    pub trust_policies: usize,
}

/// `policy` with every `Principal` (and `NotPrincipal`) entry equal to `arn` replaced by `id`;
/// `None` when no principal element names `arn`. The text keeps its formatting where a plain
/// replacement of the quoted ARN gives the same document (the ARN appears nowhere else).
pub(crate) fn forget_in_policy(policy: &str, arn: &str, id: &str) -> Option<String> {
    let mut doc: Value = serde_json::from_str(policy).ok()?;
    let mut changed = false;
    let mut rewrite = |stmt: &mut Value| {
        for member in ["Principal", "NotPrincipal"] {
            let Some(aws) = stmt.get_mut(member).and_then(|p| p.get_mut("AWS")) else {
                continue;
            };
            match aws {
                Value::String(s) if s == arn => {
                    *s = id.to_string();
                    changed = true;
                }
                Value::Array(items) => {
                    for item in items {
                        if item.as_str() == Some(arn) {
                            *item = Value::String(id.to_string());
                            changed = true;
                        }
                    }
                }
                _ => {}
            }
        }
    };
    match doc.get_mut("Statement") {
        Some(Value::Array(stmts)) => stmts.iter_mut().for_each(&mut rewrite),
        Some(stmt @ Value::Object(_)) => rewrite(stmt),
        _ => {}
    }
    if !changed {
        return None;
    }
    let quoted = serde_json::to_string(arn).ok()?;
    let plain = policy.replace(&quoted, &serde_json::to_string(id).ok()?);
    if serde_json::from_str::<Value>(&plain).ok().as_ref() == Some(&doc) {
        return Some(plain);
    }
    serde_json::to_string(&doc).ok()
}

/// AWS's shape of a unique id: a 4-letter prefix and 17 upper-case letters and digits.
fn unique_id(prefix: &str, random: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut id = prefix.to_string();
    id.extend(
        random
            .iter()
            .take(17)
            .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char),
    );
    id
}

impl Kms {
    /// Before a principal is deleted: every key policy and role trust policy naming it names
    /// its unique id instead. Each row is verified before it is rewritten and sealed again; a
    /// row that fails its check is left as it is (it is refused anyway) and reported.
    pub async fn forget_principal(&self, arn: &str) -> Result<Forgotten> {
        let prefix = if arn.contains(":role/") {
            "AROA"
        } else {
            "AIDA"
        };
        let random = self.hsm.random(17).await?;
        let id = unique_id(prefix, &random);
        let mut out = Forgotten {
            unique_id: id.clone(),
            ..Default::default()
        };
        for rec in self.keys.keys_whose_policy_contains(arn).await? {
            let Some(policy) = forget_in_policy(&rec.policy, arn, &id) else {
                continue;
            };
            if !self
                .current_seal(
                    seal::key_row(&rec, "policy"),
                    policy_mac_input(&rec),
                    &rec.policy_mac,
                )
                .await?
            {
                tracing::error!(key_id = %rec.key_id, principal = arn, "a key policy naming a deleted principal fails its integrity check; left as it is (refused)");
                continue;
            }
            if !self.store_key_policy(&rec, &policy).await? {
                return Err(KmsError::Conflict(format!(
                    "the policy of key {} changed while {arn} was being deleted; run the command again",
                    rec.arn()
                )));
            }
            out.key_policies += 1;
        }
        for role in self.ids.roles_whose_trust_contains(arn).await? {
            let Some(current) = self.ids.principal_authz(&role).await? else {
                continue;
            };
            let Some(trust) = current
                .trust_policy
                .as_deref()
                .and_then(|t| forget_in_policy(t, arn, &id))
            else {
                continue;
            };
            let name = role.rsplit('/').next().unwrap_or_default().to_string();
            self.change_principal(
                &role,
                &PrincipalChange::PutRole {
                    account_id: current.account_id.clone(),
                    name,
                    trust_policy: trust,
                },
            )
            .await?;
            out.trust_policies += 1;
        }
        Ok(out)
    }

    /// An administrator's change to a principal (`kms admin`). Nothing unverified is ever
    /// sealed: the principal as stored must pass its MAC (or not exist yet); the new MAC is
    /// computed in the token over the verified data with the change applied, before anything
    /// is written; the change and its MAC are then written in one guarded transaction. A
    /// token that cannot be reached, a principal that fails its check, or one changed in
    /// between leave the database as it was.
    pub async fn change_principal(
        &self,
        arn: &str,
        change: &crate::store::PrincipalChange,
    ) -> Result<()> {
        let current = self.ids.principal_authz(arn).await?;
        if let Some(cur) = &current {
            if !self.principal_mac_holds(arn, cur).await? {
                return Err(KmsError::Conflict(format!(
                    "{arn}: its row in principals (with its identity_policies and principal_tags) {}; nothing was changed. Review it with `kms admin seal`",
                    if cur.mac.is_none() { "has no MAC" } else { "fails its integrity check" }
                )));
            }
            if matches!(change, crate::store::PrincipalChange::CreateUser { .. }) {
                return Ok(());
            }
        }
        let next = change
            .apply(current.as_ref())
            .map_err(|e| KmsError::Validation(format!("{arn}: {e}")))?;
        let expected = current.as_ref().and_then(|c| c.mac.as_deref());
        let seal = self
            .seal_row(
                seal::principal_row(arn),
                principal_mac_input(arn, &next),
                expected,
            )
            .await?;
        let written = self
            .ids
            .change_principal(arn, change, expected, &seal.mac)
            .await;
        if written.is_ok() {
            self.written(&seal);
            if matches!(change, crate::store::PrincipalChange::PutRole { .. }) {
                // The store ended the role's sessions with the write: a session issued under
                // an earlier generation of the role is behind the trail from now on, its row
                // put back included.
                crate::store::note_written(&seal::sessions_row(arn), seal.generation);
            }
        }
        match written {
            Err(crate::store::StoreError::Conflict { constraint })
                if constraint == "principal_mac" =>
            {
                Err(KmsError::Conflict(format!(
                    "{arn} changed while it was being changed; nothing was written, try again"
                )))
            }
            Err(crate::store::StoreError::Conflict { constraint }) => Err(KmsError::Conflict(
                format!("{arn}: constraint {constraint} refused the change"),
            )),
            other => Ok(other?),
        }
    }

    /// The generations a principal's deletion leaves in the trail, worked out before the
    /// deletion (so a trail that cannot be read stops it before anything is deleted): its
    /// authorization row and, for a role, its sessions, one past the row as it verifies and
    /// past every generation the trail holds for either. Once the deletion committed, pass
    /// them to [`Kms::deleted`]; neither row put back is then taken for current, even once
    /// the same ARN exists again.
    pub(crate) async fn deletion_marks(&self, arn: &str) -> Result<Vec<(String, i64)>> {
        let rows = [seal::principal_row(arn), seal::sessions_row(arn)];
        let held = self.trail_of(&rows).await?;
        // The row's own generation only as sealed: an unverified one is a database writer's.
        let sealed = match self.ids.principal_authz(arn).await? {
            Some(a) if self.principal_mac_holds(arn, &a).await? => {
                a.mac.as_deref().map(seal::generation_of)
            }
            _ => None,
        };
        let past = held
            .iter()
            .map(|(_, g)| *g)
            .chain(sealed)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        Ok(rows.into_iter().map(|r| (r, past)).collect())
    }

    /// A deletion committed: the running change's event names `marks`
    /// ([`Kms::deletion_marks`]).
    pub(crate) fn deleted(&self, marks: &[(String, i64)]) {
        for (row, generation) in marks {
            crate::store::note_written(row, *generation);
        }
    }

    /// Whether a principal's authorization is as the service last wrote it (sealed, and not
    /// an older row put back).
    pub(crate) async fn principal_mac_holds(&self, arn: &str, a: &PrincipalAuthz) -> Result<bool> {
        Ok(a.mac.is_some()
            && self
                .current_seal(
                    seal::principal_row(arn),
                    principal_mac_input(arn, a),
                    &a.mac,
                )
                .await?)
    }

    /// Principals whose stored authorization data carries no MAC, with that data: what
    /// `kms admin seal` shows before it seals anything. (One whose MAC fails is never sealed.)
    pub async fn unsealed_principals(&self) -> Result<Vec<(String, PrincipalAuthz)>> {
        let mut out = Vec::new();
        for arn in self.ids.principals_without_mac().await? {
            if let Some(a) = self.ids.principal_authz(&arn).await? {
                out.push((arn, a));
            }
        }
        Ok(out)
    }

    /// Seal one principal stored without a MAC, exactly as it was shown to the operator
    /// (`kms admin seal --confirm`): refused when it changed since, or got a MAC meanwhile.
    pub async fn seal_reviewed_principal(&self, arn: &str, shown: &PrincipalAuthz) -> Result<()> {
        let seal = self
            .seal_row(
                seal::principal_row(arn),
                principal_mac_input(arn, shown),
                None,
            )
            .await?;
        let now = self.ids.principal_authz(arn).await?;
        let same = now.as_ref().is_some_and(|n| {
            principal_mac_input(arn, n) == principal_mac_input(arn, shown) && n.mac == shown.mac
        });
        if !same {
            return Err(KmsError::Conflict(format!(
                "{arn} changed after it was shown; nothing was sealed"
            )));
        }
        if !self.ids.set_principal_mac(arn, &seal.mac).await? {
            return Err(KmsError::Conflict(format!(
                "{arn} changed after it was shown; nothing was sealed"
            )));
        }
        self.written(&seal);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "arn:aws:iam::111122223333:user/alice";

    #[test]
    fn only_principal_elements_are_rewritten_and_formatting_is_kept() {
        let policy = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{\"Effect\": \"Allow\", \"Principal\": {\"AWS\": \"arn:aws:iam::111122223333:user/alice\"}, \"Action\": \"kms:*\", \"Resource\": \"*\"}]\n}";
        let out = forget_in_policy(policy, ALICE, "AIDAEXAMPLE").unwrap();
        assert_eq!(out, policy.replace(ALICE, "AIDAEXAMPLE"));
        // In a condition too: the condition stays (a string comparison, as on AWS), so the
        // document is written again rather than edited as text.
        let both = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam::111122223333:root","arn:aws:iam::111122223333:user/alice"]},"Action":"kms:*","Resource":"*","Condition":{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}}]}"#;
        let out: Value =
            serde_json::from_str(&forget_in_policy(both, ALICE, "AIDAEXAMPLE").unwrap()).unwrap();
        assert_eq!(
            out["Statement"][0]["Principal"]["AWS"],
            serde_json::json!(["arn:aws:iam::111122223333:root", "AIDAEXAMPLE"])
        );
        assert_eq!(
            out["Statement"][0]["Condition"]["ArnEquals"]["aws:PrincipalArn"],
            ALICE
        );
        // Not named as a principal (only in a condition, or another user): nothing to do.
        let other = r#"{"Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:user/alicex"},"Action":"kms:*","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalArn":"arn:aws:iam::111122223333:user/alice"}}}}"#;
        assert_eq!(forget_in_policy(other, ALICE, "AIDAEXAMPLE"), None);
    }

    #[test]
    fn unique_ids_look_like_aws_ids() {
        let id = unique_id(
            "AIDA",
            &[
                0, 31, 32, 255, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
            ],
        );
        assert_eq!(id.len(), 21);
        assert!(id.starts_with("AIDA"));
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
    }
}
