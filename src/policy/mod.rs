//! Key policies, identity policies and grants → Allow / Deny. Pure: no I/O, no clock (the
//! current time is a request-context key), testable with tables of cases (`tests.rs`).
//!
//! * [`document`] parses the IAM policy language as KMS uses it and says what is wrong with a
//!   document that is not valid (`MalformedPolicyDocumentException`).
//! * [`condition`] evaluates the `Condition` element: the String, Numeric, Date, Bool, Null,
//!   Arn and IpAddress families, the `…IfExists` forms and the `ForAnyValue:` /
//!   `ForAllValues:` qualifiers.
//! * [`variables`] replaces policy variables (`${aws:username}`) in a statement's `Resource`
//!   and in its String and ARN conditions' values.
//! * [`decide`] combines the key policy, the caller's identity policies and grants the way AWS
//!   KMS does.

pub mod condition;
pub mod document;
mod glob;
mod variables;

#[cfg(test)]
mod tests;

pub use document::{parse, parse_new, PolicyDocument, PolicyKind};

use std::collections::{BTreeMap, BTreeSet};

/// Everything evaluation needs to know about one request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `arn:aws:iam::<account>:user/<name>`, or for an assumed role
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub principal_arn: String,
    pub principal_account: String,
    /// For an assumed-role session: the role's ARN, which is what policies name.
    pub role_arn: Option<String>,
    /// `kms:Encrypt`, …
    pub action: String,
    /// The key's ARN, or `*` for actions on no particular key (`kms:CreateKey`, `kms:ListKeys`).
    pub resource: String,
    /// Condition keys (lower-cased names) and their values.
    pub context: BTreeMap<String, Vec<String>>,
    /// Condition keys (lower-cased) whose values are alternatives: the request holds one of
    /// them under that name, and which one is ambiguous. Encryption context keys that differ
    /// only in case (`Stage`, `stage`) are one condition key, `kms:EncryptionContext:stage`.
    /// A condition on such a key is read the strict way for its statement: an Allow's must
    /// hold for every alternative, a Deny's for any ([`condition::Condition::holds`]).
    pub alternatives: BTreeSet<String>,
}

impl Request {
    pub fn with(mut self, key: &str, values: &[&str]) -> Request {
        self.context.insert(
            key.to_ascii_lowercase(),
            values.iter().map(|v| v.to_string()).collect(),
        );
        self
    }

    pub fn value(&self, key: &str) -> Option<&Vec<String>> {
        self.context.get(&key.to_ascii_lowercase())
    }
}

/// How a statement's principal matched the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalMatch {
    /// By `*` or by the caller's own ARN.
    Direct,
    /// By the caller's account (`<account>` or `arn:aws:iam::<account>:root`): the account's
    /// identity policies decide.
    Account,
}

/// The outcome of one policy document for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    ExplicitDeny,
    Allow(PrincipalMatch),
    NotApplicable,
}

/// Evaluate one document: an explicit deny wins over any allow; among allows, a direct one
/// wins over one through the account.
pub fn evaluate(doc: &PolicyDocument, req: &Request) -> Outcome {
    let mut best = Outcome::NotApplicable;
    for st in &doc.statements {
        let Some(m) = st.applies(req) else { continue };
        match st.effect {
            document::Effect::Deny => return Outcome::ExplicitDeny,
            document::Effect::Allow => {
                best = match (best, m) {
                    (Outcome::Allow(PrincipalMatch::Direct), _) | (_, PrincipalMatch::Direct) => {
                        Outcome::Allow(PrincipalMatch::Direct)
                    }
                    _ => Outcome::Allow(PrincipalMatch::Account),
                }
            }
        }
    }
    best
}

/// Why a request was refused: AWS names the kind of policy in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    ExplicitInKeyPolicy,
    ExplicitInIdentityPolicy,
    NoKeyPolicyAllows,
    NoIdentityPolicyAllows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(Denial),
}

/// How the key's grants answer a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantAllows {
    /// No grant allows it.
    No,
    /// A grant whose grantee is the caller itself allows it.
    Caller,
    /// Only a grant whose grantee is the caller's account (`arn:aws:iam::<account>:root`)
    /// allows it: as in a key policy, the account's identity policies must then allow the
    /// action too.
    Account,
}

impl From<bool> for GrantAllows {
    fn from(direct: bool) -> GrantAllows {
        if direct {
            GrantAllows::Caller
        } else {
            GrantAllows::No
        }
    }
}

/// AWS KMS's evaluation: an explicit deny anywhere wins; otherwise the key policy must allow
/// the caller directly, or trust the caller's account so that an identity policy can allow,
/// or a grant must allow (one naming the caller's account only with an identity policy that
/// allows). Cross-account use needs the key policy (directly or through the caller's account)
/// and an identity policy of the caller's account.
pub fn decide(
    key_policy: &PolicyDocument,
    key_account: &str,
    identity_policies: &[PolicyDocument],
    grant: GrantAllows,
    req: &Request,
) -> Decision {
    let key = evaluate(key_policy, req);
    if key == Outcome::ExplicitDeny {
        return Decision::Deny(Denial::ExplicitInKeyPolicy);
    }
    let mut identity = Outcome::NotApplicable;
    for p in identity_policies {
        match evaluate(p, req) {
            Outcome::ExplicitDeny => return Decision::Deny(Denial::ExplicitInIdentityPolicy),
            Outcome::Allow(_) => identity = Outcome::Allow(PrincipalMatch::Direct),
            Outcome::NotApplicable => {}
        }
    }
    let identity_allows = matches!(identity, Outcome::Allow(_));
    match grant {
        GrantAllows::Caller => return Decision::Allow,
        GrantAllows::Account if identity_allows => return Decision::Allow,
        GrantAllows::Account | GrantAllows::No => {}
    }
    let same_account = req.principal_account == key_account;
    match key {
        Outcome::Allow(PrincipalMatch::Direct) if same_account => Decision::Allow,
        Outcome::Allow(_) if identity_allows => Decision::Allow,
        Outcome::Allow(_) => Decision::Deny(Denial::NoIdentityPolicyAllows),
        _ => Decision::Deny(Denial::NoKeyPolicyAllows),
    }
}

/// Actions on no particular key (`kms:CreateKey`, `kms:ListKeys`, `kms:GenerateRandom`) are
/// decided by identity policies alone.
pub fn decide_identity_only(identity_policies: &[PolicyDocument], req: &Request) -> Decision {
    let mut allowed = false;
    for p in identity_policies {
        match evaluate(p, req) {
            Outcome::ExplicitDeny => return Decision::Deny(Denial::ExplicitInIdentityPolicy),
            Outcome::Allow(_) => allowed = true,
            Outcome::NotApplicable => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny(Denial::NoIdentityPolicyAllows)
    }
}

/// How AWS ends the refusal of another account's resource by the resource's side (absent, not
/// allowed by its policy, or denied by it). Recorded against AWS (2025).
pub const CROSS_ACCOUNT_RESOURCE_DENIAL: &str = "because the resource does not exist in this Region, no resource-based policies allow access, or a resource-based policy explicitly denies access";

/// A refusal of a key found from a ciphertext (a `Decrypt` without `KeyId`), as AWS words it:
/// "… on the resource associated with this ciphertext …" where `denial_message` names the
/// resource (`arn`) or says "this resource" (recorded, 2025, and in AWS's documentation).
pub fn named_by_ciphertext(message: &str, arn: &str) -> String {
    const PHRASE: &str = " on the resource associated with this ciphertext ";
    let named = format!(" on resource: {arn} ");
    if message.contains(&named) {
        message.replacen(&named, PHRASE, 1)
    } else {
        message.replacen(" on this resource ", PHRASE, 1)
    }
}

/// AWS's wording for an `AccessDeniedException`.
pub fn denial_message(req: &Request, why: Denial) -> String {
    let tail = match why {
        Denial::ExplicitInKeyPolicy => {
            "with an explicit deny in a resource-based policy".to_string()
        }
        Denial::ExplicitInIdentityPolicy => {
            "with an explicit deny in an identity-based policy".to_string()
        }
        Denial::NoKeyPolicyAllows => format!(
            "because no resource-based policy allows the {} action",
            req.action
        ),
        Denial::NoIdentityPolicyAllows => format!(
            "because no identity-based policy allows the {} action",
            req.action
        ),
    };
    // Another account's resource is never named back ("on this resource", recorded for a
    // caller its own policies do not allow). Refused by the resource's side, AWS answers with
    // one text whether the resource is absent, its policy does not allow the caller or denies
    // it (recorded, 2025), so an account cannot tell another's keys that exist from those
    // that do not.
    let resource_account = req.resource.split(':').nth(4);
    if resource_account.is_some_and(|a| !a.is_empty() && a != req.principal_account) {
        let tail = match why {
            Denial::NoKeyPolicyAllows | Denial::ExplicitInKeyPolicy => {
                CROSS_ACCOUNT_RESOURCE_DENIAL.to_string()
            }
            Denial::NoIdentityPolicyAllows | Denial::ExplicitInIdentityPolicy => tail,
        };
        return format!(
            "User: {} is not authorized to perform: {} on this resource {tail}",
            req.principal_arn, req.action
        );
    }
    format!(
        "User: {} is not authorized to perform: {} on resource: {} {tail}",
        req.principal_arn, req.action, req.resource
    )
}

pub use glob::glob;
pub(crate) use glob::{glob_tokens, tokens, Tok};
