//! The policy simulator: "may principal P perform action A on key K, with encryption context
//! C?", answered by the engine that authorizes every call, with the statements that applied.

use super::preamble::{Access, ANY_STATE};
use super::*;
use crate::policy::document::Effect;

/// A statement of a policy that applied to the simulated request.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Its `Sid`, or its place in the document (`#1`, …).
    pub statement: String,
    pub allow: bool,
    /// It names the principal's account (`<account>`, `arn:aws:iam::<account>:root`), not
    /// the principal: in a key policy, the account's identity policies decide.
    pub by_account: bool,
}

/// The engine's answer, and why.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// `None`: allowed; else AWS's `AccessDeniedException` message.
    pub denied: Option<String>,
    /// The key policy's statements that applied.
    pub key_policy: Vec<Applied>,
    /// The principal's identity policies' statements that applied (policy number, statement).
    pub identity: Vec<(usize, Applied)>,
    /// Whether a grant of the key allows it.
    pub grant: bool,
}

fn applied(doc: &PolicyDocument, req: &policy::Request) -> Vec<Applied> {
    doc.statements
        .iter()
        .enumerate()
        .filter_map(|(i, st)| {
            st.applies(req).map(|m| Applied {
                statement: st.sid.clone().unwrap_or_else(|| format!("#{}", i + 1)),
                allow: st.effect == Effect::Allow,
                by_account: m == policy::PrincipalMatch::Account,
            })
        })
        .collect()
}

impl Kms {
    /// Simulate `action` on `key_id` by `principal_arn` (a user or role of the asker's own
    /// account) with encryption context `ctx`. The asker must be allowed to read the key's
    /// policy (`kms:GetKeyPolicy`): the simulator shows nothing it could not read.
    pub async fn simulate(
        &self,
        asker: &Caller,
        principal_arn: &str,
        action: &str,
        key_id: &str,
        ctx: &Context,
    ) -> Result<Simulation> {
        let rec = self
            .key_for(asker, key_id, Access::to("kms:GetKeyPolicy", ANY_STATE))
            .await?;
        let account = principal_arn
            .strip_prefix("arn:aws:iam::")
            .and_then(|r| r.split_once(':'))
            .map(|(a, _)| a.to_string());
        if account.as_deref() != Some(asker.account_id.as_str()) {
            return Err(KmsError::Validation(format!(
                "{principal_arn} is not a user or role of account {}.",
                asker.account_id
            )));
        }
        if !action.starts_with("kms:") || action.len() > 64 {
            return Err(KmsError::Validation(format!(
                "{action} is not a KMS action."
            )));
        }
        let who = principal(&asker.account_id, &asker.region, principal_arn);
        self.simulate_on(&who, action, &rec, (!ctx.is_empty()).then_some(ctx))
            .await
    }

    /// The engine's answer for `who` doing `action` on `rec`, and the statements that applied.
    async fn simulate_on(
        &self,
        who: &Caller,
        action: &str,
        rec: &KeyRecord,
        ctx: Option<&Context>,
    ) -> Result<Simulation> {
        let denied = match self.authorize(who, action, Some(rec), ctx, &[]).await {
            Ok(()) => None,
            Err(KmsError::AccessDenied(m)) => Some(m),
            Err(e) => return Err(e),
        };
        let identity = self.identity_policies(&who.principal_arn).await?;
        let mut req = self.request(who, action, Some(rec), ctx);
        self.add_tags(&mut req, &identity, Some(rec)).await?;
        let key_policy = self
            .key_policy(rec)
            .map(|kp| applied(&kp, &req))
            .unwrap_or_default();
        let identity = identity
            .policies
            .iter()
            .enumerate()
            .flat_map(|(i, d)| applied(d, &req).into_iter().map(move |a| (i + 1, a)))
            .collect();
        let grant = self.grant_allows(who, action, rec, ctx).await? != policy::GrantAllows::No;
        Ok(Simulation {
            denied,
            key_policy,
            identity,
            grant,
        })
    }
}

/// A caller that is `principal_arn` (a user or role of `account_id`), as a simulation asks.
fn principal(account_id: &str, region: &str, principal_arn: &str) -> Caller {
    let role = principal_arn.contains(":role/");
    Caller {
        account_id: account_id.to_string(),
        principal_arn: principal_arn.to_string(),
        region: region.to_string(),
        source_ip: None,
        grant_tokens: Vec::new(),
        role_arn: role.then(|| principal_arn.to_string()),
        request_alias: None,
        access_key_id: String::new(),
        secure_transport: true,
        re_encrypt_on_same_key: None,
    }
}

/// The actions an access review asks about for a key of `usage`: what uses it, then what
/// manages it.
pub fn reviewed_actions(usage: KeyUsage) -> &'static [&'static str] {
    match usage {
        KeyUsage::EncryptDecrypt => &[
            "kms:Encrypt",
            "kms:Decrypt",
            "kms:ReEncryptFrom",
            "kms:GenerateDataKey",
            "kms:GenerateDataKeyPair",
            "kms:PutKeyPolicy",
            "kms:CreateGrant",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
        ],
        KeyUsage::SignVerify => &[
            "kms:Sign",
            "kms:Verify",
            "kms:GetPublicKey",
            "kms:PutKeyPolicy",
            "kms:CreateGrant",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
        ],
        KeyUsage::GenerateVerifyMac => &[
            "kms:GenerateMac",
            "kms:VerifyMac",
            "kms:PutKeyPolicy",
            "kms:CreateGrant",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
        ],
        KeyUsage::EncapsulateDecapsulate => &[
            "kms:Decapsulate",
            "kms:GetPublicKey",
            "kms:PutKeyPolicy",
            "kms:CreateGrant",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
        ],
        KeyUsage::KeyAgreement => &[
            "kms:DeriveSharedSecret",
            "kms:GetPublicKey",
            "kms:PutKeyPolicy",
            "kms:CreateGrant",
            "kms:DisableKey",
            "kms:ScheduleKeyDeletion",
        ],
    }
}

/// One principal's access to a key: the actions it may perform, and through what.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessEntry {
    pub principal: String,
    pub actions: Vec<String>,
    /// What allows it: `key policy: <sid>`, `identity policy <n>: <sid>`, `grant <id>`, or
    /// for a principal of another account the key policy statement that names it.
    pub through: Vec<String>,
}

/// Who can use a key, as the engine decides today.
#[derive(Debug, Clone)]
pub struct AccessReview {
    pub key_arn: String,
    /// The users and roles of the key's account the engine allows something, each principal
    /// once.
    pub principals: Vec<AccessEntry>,
    /// Principals of other accounts the key policy names: their own account's identity
    /// policies must allow it too, which this service cannot see for an account it does not
    /// hold.
    pub other_accounts: Vec<AccessEntry>,
    /// Grantees, with the grant's operations.
    pub grants: Vec<AccessEntry>,
    /// More principals in the account than were reviewed.
    pub truncated: bool,
}

/// At most this many principals of an account are reviewed for one key.
pub const REVIEWED_PRINCIPALS: i64 = 1000;

impl Kms {
    /// Who can use `key_id` and through what: every user and role of the key's account asked of
    /// the engine for each of [`reviewed_actions`], the other accounts the key policy names, and
    /// the grants. The asker must be allowed to read the key's policy and list its grants.
    pub async fn access_review(&self, asker: &Caller, key_id: &str) -> Result<AccessReview> {
        let rec = self
            .key_for(asker, key_id, Access::to("kms:GetKeyPolicy", ANY_STATE))
            .await?;
        // Another account's principal, even one the key policy lets read the policy, never
        // learns the users and roles of the key's account (as on AWS, where that takes
        // iam:ListUsers in the key's own account). The console names keys by id, which resolve
        // in the asker's own account only; this holds for any other caller too.
        if rec.account_id != asker.account_id {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to review access to {}: the key is in another account",
                asker.principal_arn,
                rec.arn()
            )));
        }
        let grants = self.list_grants(asker, &rec.arn()).await?;
        let arns = self
            .ids
            .principals_of(&rec.account_id, REVIEWED_PRINCIPALS + 1)
            .await?;
        let truncated = arns.len() as i64 > REVIEWED_PRINCIPALS;
        let mut principals = Vec::new();
        for arn in arns.iter().take(REVIEWED_PRINCIPALS as usize) {
            let who = principal(&rec.account_id, &rec.region, arn);
            let mut entry = AccessEntry {
                principal: arn.clone(),
                actions: Vec::new(),
                through: Vec::new(),
            };
            for action in reviewed_actions(rec.key_usage) {
                let sim = self.simulate_on(&who, action, &rec, None).await?;
                if sim.denied.is_some() {
                    continue;
                }
                entry.actions.push(action.to_string());
                let key_policy = |by_account: bool| {
                    sim.key_policy
                        .iter()
                        .filter(move |a| a.allow && a.by_account == by_account)
                        .map(|a| format!("key policy: {}", a.statement))
                };
                let identity: Vec<String> = sim
                    .identity
                    .iter()
                    .filter(|(_, a)| a.allow)
                    .map(|(n, a)| format!("identity policy {n}: {}", a.statement))
                    .collect();
                // A statement naming the account allows only with an identity policy.
                let delegated: Vec<String> = if identity.is_empty() {
                    Vec::new()
                } else {
                    key_policy(true).chain(identity).collect()
                };
                let via = key_policy(false)
                    .chain(delegated)
                    .chain(sim.grant.then(|| "grant".to_string()));
                for v in via {
                    if !entry.through.contains(&v) {
                        entry.through.push(v);
                    }
                }
            }
            if !entry.actions.is_empty() {
                principals.push(entry);
            }
        }
        let other_accounts = self
            .key_policy(&rec)
            .map(|kp| named_elsewhere(&kp, &rec.account_id))
            .unwrap_or_default();
        let grants = grants
            .into_iter()
            .map(|g| AccessEntry {
                principal: g.grantee_principal,
                actions: g.operations.iter().map(|o| format!("kms:{o}")).collect(),
                through: vec![match g.constraints {
                    Some(c) => format!("grant {} (constraints {c})", g.grant_id),
                    None => format!("grant {}", g.grant_id),
                }],
            })
            .collect();
        Ok(AccessReview {
            key_arn: rec.arn(),
            principals,
            other_accounts,
            grants,
            truncated,
        })
    }
}

/// The principals of accounts other than `account_id` that the key policy's `Allow`
/// statements name, with the statements' actions.
fn named_elsewhere(doc: &PolicyDocument, account_id: &str) -> Vec<AccessEntry> {
    use crate::policy::document::Principals;
    let mut out: Vec<AccessEntry> = Vec::new();
    for (i, st) in doc.statements.iter().enumerate() {
        // An inert statement (no Action, or no Resource: taken, with no effect) grants nothing.
        if st.effect != Effect::Allow
            || (st.action.is_empty() && !st.not_action)
            || (st.resource.is_empty() && !st.not_resource)
        {
            continue;
        }
        let named: Vec<String> = match &st.principal {
            Some(Principals::Anyone) => vec!["*".to_string()],
            Some(Principals::List { aws, .. }) => aws
                .iter()
                .filter(|p| {
                    let account = p
                        .strip_prefix("arn:aws:iam::")
                        .map_or(p.as_str(), |r| r.split_once(':').map_or(r, |(a, _)| a));
                    account != account_id
                })
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let actions = if st.not_action {
            vec![format!("every action but {}", st.action.join(", "))]
        } else {
            st.action.clone()
        };
        let sid = st.sid.clone().unwrap_or_else(|| format!("#{}", i + 1));
        for p in named {
            out.push(AccessEntry {
                principal: p,
                actions: actions.clone(),
                through: vec![format!("key policy: {sid}")],
            });
        }
    }
    out
}
