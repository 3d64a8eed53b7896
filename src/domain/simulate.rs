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
        .filter(|(_, st)| st.applies(req).is_some())
        .map(|(i, st)| Applied {
            statement: st.sid.clone().unwrap_or_else(|| format!("#{}", i + 1)),
            allow: st.effect == Effect::Allow,
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
        let role = principal_arn.contains(":role/");
        let who = Caller {
            account_id: asker.account_id.clone(),
            principal_arn: principal_arn.to_string(),
            region: asker.region.clone(),
            source_ip: None,
            grant_tokens: Vec::new(),
            role_arn: role.then(|| principal_arn.to_string()),
            request_alias: None,
            access_key_id: String::new(),
            secure_transport: true,
        };
        let ctx_given = (!ctx.is_empty()).then_some(ctx);
        let denied = match self
            .authorize(&who, action, Some(&rec), ctx_given, &[])
            .await
        {
            Ok(()) => None,
            Err(KmsError::AccessDenied(m)) => Some(m),
            Err(e) => return Err(e),
        };
        let identity = self.identity_policies(principal_arn).await?;
        let mut req = self.request(&who, action, Some(&rec), ctx_given);
        self.add_tags(&mut req, &identity, Some(&rec)).await?;
        let key_policy = self
            .key_policy(&rec)
            .map(|kp| applied(&kp, &req))
            .unwrap_or_default();
        let identity = identity
            .policies
            .iter()
            .enumerate()
            .flat_map(|(i, d)| applied(d, &req).into_iter().map(move |a| (i + 1, a)))
            .collect();
        let grant =
            self.grant_allows(&who, action, &rec, ctx_given).await? != policy::GrantAllows::No;
        Ok(Simulation {
            denied,
            key_policy,
            identity,
            grant,
        })
    }
}
