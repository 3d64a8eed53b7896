//! Parsing the IAM policy language as KMS uses it. A document that is not valid is refused
//! with a sentence that says what is wrong.

use super::condition::Condition;
use super::{glob, glob_tokens, PrincipalMatch, Request};
use serde::Deserializer as _;
use serde_json::Value;

/// Key policies name principals; identity policies are attached to one and must not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    Key,
    Identity,
    /// A role's trust policy: a key policy's shape, whose statements need no `Resource`
    /// (IAM's trust policies have none; one without it applies to the role).
    Trust,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Principals {
    /// `"*"` or `{"AWS": "*"}`.
    Anyone,
    /// ARNs and account ids from `{"AWS": …}`; service principals are kept but never match a
    /// caller of this service.
    List {
        aws: Vec<String>,
        services: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Option<Principals>,
    pub not_principal: Option<Principals>,
    pub action: Vec<String>,
    pub not_action: bool,
    pub resource: Vec<String>,
    pub not_resource: bool,
    /// Whether `resource` holds policy variables to replace first.
    pub resource_variables: bool,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    pub version: Option<String>,
    pub id: Option<String>,
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    /// A policy with no statement: it allows and denies nothing.
    pub fn empty() -> PolicyDocument {
        PolicyDocument {
            version: None,
            id: None,
            statements: Vec::new(),
        }
    }
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{what} must be a string or a list of strings"))
            })
            .collect(),
        _ => Err(format!(
            "{what} must be a string or a non-empty list of strings"
        )),
    }
}

/// An IAM unique id (`AIDA…` for a user, `AROA…` for a role): how a policy shows a principal
/// that was deleted. Accepted (a policy read back must be writable again), matches no caller.
fn unique_id(p: &str) -> bool {
    (p.starts_with("AIDA") || p.starts_with("AROA"))
        && (16..=128).contains(&p.len())
        && p.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

fn valid_aws_principal(p: &str) -> bool {
    if p == "*" || unique_id(p) {
        return true;
    }
    if p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[1].is_empty() || !parts[3].is_empty() {
        return false;
    }
    let account_ok = parts[4].len() == 12 && parts[4].bytes().all(|b| b.is_ascii_digit());
    let res = parts[5];
    account_ok
        && match parts[2] {
            "iam" => {
                res == "root"
                    || (res.starts_with("user/") && res.len() > 5)
                    || (res.starts_with("role/") && res.len() > 5)
            }
            "sts" => res.starts_with("assumed-role/") && res.matches('/').count() >= 2,
            _ => false,
        }
}

/// AWS's text for a statement naming a principal that is not one (recorded against AWS,
/// 2020 and 2025): sent as it is, not prefixed with the statement's place.
/// AWS's refusal of a principal that is not one (recorded).
pub const INVALID_PRINCIPALS: &str =
    "Policy contains a statement with one or more invalid principals.";

fn principals(v: &Value) -> Result<Principals, String> {
    match v {
        Value::String(s) if s == "*" => Ok(Principals::Anyone),
        Value::Object(m) if !m.is_empty() => {
            let mut aws = Vec::new();
            let mut services = Vec::new();
            for (k, v) in m {
                match k.as_str() {
                    "AWS" => aws.extend(
                        strings(v, "Principal AWS").map_err(|_| INVALID_PRINCIPALS.to_string())?,
                    ),
                    "Service" => services.extend(
                        strings(v, "Principal Service")
                            .map_err(|_| INVALID_PRINCIPALS.to_string())?,
                    ),
                    _ => return Err(INVALID_PRINCIPALS.into()),
                }
            }
            if aws.iter().any(|p| !valid_aws_principal(p)) {
                return Err(INVALID_PRINCIPALS.into());
            }
            if aws.iter().any(|p| p == "*") {
                return Ok(Principals::Anyone);
            }
            Ok(Principals::List { aws, services })
        }
        _ => Err(INVALID_PRINCIPALS.into()),
    }
}

fn valid_action(a: &str) -> bool {
    a == "*"
        || a.split_once(':').is_some_and(|(svc, act)| {
            !svc.is_empty()
                && !act.is_empty()
                && svc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// [`parse`] for a policy being written (PutKeyPolicy, CreateKey, a role's trust policy): a
/// principal names one identity, and AWS refuses a partial wildcard (`user/contractor-*`),
/// which would otherwise be kept and match no one (`ArnLike` on `aws:PrincipalArn` names
/// several). A policy stored before this rule is still read as it was (refusing it on read
/// would lock its key).
pub fn parse_new(text: &str, kind: PolicyKind) -> Result<PolicyDocument, String> {
    // serde_json keeps the last of a key repeated in one object and drops the others without
    // a word: a reviewer reading the policy would see a condition, principal or effect that
    // is not the one applied.
    if let Err(e) = serde_json::Deserializer::from_str(text).deserialize_any(NoRepeatedKeys) {
        return Err(format!("The policy is not valid JSON: {e}"));
    }
    let doc = parse(text, kind)?;
    let wildcard = |p: &Option<Principals>| match p {
        Some(Principals::List { aws, .. }) => aws.iter().any(|a| a.contains(['*', '?'])),
        _ => false,
    };
    if doc
        .statements
        .iter()
        .any(|s| wildcard(&s.principal) || wildcard(&s.not_principal))
    {
        return Err(INVALID_PRINCIPALS.into());
    }
    Ok(doc)
}

/// Walks a JSON text and fails on a key that one object holds twice.
struct NoRepeatedKeys;

impl<'de> serde::de::DeserializeSeed<'de> for NoRepeatedKeys {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NoRepeatedKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        while a.next_element_seed(NoRepeatedKeys)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = a.next_key::<String>()? {
            if !seen.insert(k.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key '{k}' appears twice in one object"
                )));
            }
            a.next_value_seed(NoRepeatedKeys)?;
        }
        Ok(())
    }
}

/// Parse and check a policy document.
pub fn parse(text: &str, kind: PolicyKind) -> Result<PolicyDocument, String> {
    let v: Value =
        serde_json::from_str(text).map_err(|e| format!("The policy is not valid JSON: {e}"))?;
    let Value::Object(top) = v else {
        return Err("The policy must be a JSON object.".into());
    };
    let mut version = None;
    let mut id = None;
    let mut statements = None;
    for (k, v) in &top {
        match k.as_str() {
            "Version" => {
                let s = v.as_str().ok_or("Version must be a string.")?;
                if s != "2012-10-17" && s != "2008-10-17" {
                    return Err(format!(
                        "The policy version {s} is not supported; use 2012-10-17."
                    ));
                }
                version = Some(s.to_string());
            }
            "Id" => id = Some(v.as_str().ok_or("Id must be a string.")?.to_string()),
            "Statement" => statements = Some(v),
            other => return Err(format!("The policy has an unknown element '{other}'.")),
        }
    }
    let stmts = match statements {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => {
            return Err(
                "The policy must have a Statement: an object or a non-empty list of objects."
                    .into(),
            )
        }
    };
    // Policy variables came with this version of the language.
    let variables = version.as_deref() == Some("2012-10-17");
    let mut out = Vec::new();
    for (i, s) in stmts.iter().enumerate() {
        out.push(statement(s, kind, variables).map_err(|e| {
            if e == INVALID_PRINCIPALS {
                e
            } else {
                format!("Statement {}: {e}", i + 1)
            }
        })?);
    }
    Ok(PolicyDocument {
        version,
        id,
        statements: out,
    })
}

fn statement(v: &Value, kind: PolicyKind, variables: bool) -> Result<Statement, String> {
    let Value::Object(m) = v else {
        return Err("a statement must be a JSON object.".into());
    };
    let mut st = Statement {
        sid: None,
        effect: Effect::Allow,
        principal: None,
        not_principal: None,
        action: vec![],
        not_action: false,
        resource: vec![],
        not_resource: false,
        resource_variables: false,
        conditions: vec![],
    };
    let mut effect = None;
    let (mut has_action, mut has_resource) = (0, 0);
    for (k, v) in m {
        match k.as_str() {
            "Sid" => st.sid = Some(v.as_str().ok_or("Sid must be a string.")?.to_string()),
            "Effect" => {
                effect = Some(match v.as_str() {
                    Some("Allow") => Effect::Allow,
                    Some("Deny") => Effect::Deny,
                    _ => return Err("Effect must be \"Allow\" or \"Deny\".".into()),
                })
            }
            "Principal" => st.principal = Some(principals(v)?),
            "NotPrincipal" => st.not_principal = Some(principals(v)?),
            "Action" | "NotAction" => {
                has_action += 1;
                st.not_action = k == "NotAction";
                st.action = strings(v, k)?;
                if let Some(bad) = st.action.iter().find(|a| !valid_action(a)) {
                    return Err(format!(
                        "'{bad}' is not a valid action; actions look like kms:Encrypt."
                    ));
                }
            }
            "Resource" | "NotResource" => {
                has_resource += 1;
                st.not_resource = k == "NotResource";
                st.resource = strings(v, k)?;
                st.resource_variables = variables
                    && st
                        .resource
                        .iter()
                        .any(|r| super::variables::has_variables(r));
            }
            "Condition" => st.conditions = super::condition::parse_block(v, variables)?,
            other => return Err(format!("unknown element '{other}'.")),
        }
    }
    st.effect = effect.ok_or("Effect is required.")?;
    // A key policy's statement without Action or without Resource is taken, as AWS takes it,
    // and has no effect (its empty list matches nothing): "the CreateKey and PutKeyPolicy API
    // requests succeed, even though the policy statement is ineffective" (the model's Policy).
    let inert = kind == PolicyKind::Key;
    if has_action > 1 || (has_action == 0 && !inert) {
        return Err("exactly one of Action or NotAction is required.".into());
    }
    if has_resource == 0 && kind == PolicyKind::Trust {
        st.resource = vec!["*".into()];
    } else if has_resource > 1 || (has_resource == 0 && !inert) {
        return Err("exactly one of Resource or NotResource is required.".into());
    }
    match kind {
        PolicyKind::Key | PolicyKind::Trust => {
            if st.principal.is_some() == st.not_principal.is_some() {
                return Err(
                    "a key policy statement needs exactly one of Principal or NotPrincipal.".into(),
                );
            }
        }
        PolicyKind::Identity => {
            if st.principal.is_some() || st.not_principal.is_some() {
                return Err("an identity-based policy cannot name a Principal.".into());
            }
        }
    }
    Ok(st)
}

fn account_of(arn_or_account: &str) -> Option<&str> {
    if arn_or_account.len() == 12 && arn_or_account.bytes().all(|b| b.is_ascii_digit()) {
        return Some(arn_or_account);
    }
    arn_or_account
        .strip_prefix("arn:")
        .and_then(|r| r.split(':').nth(3))
}

impl Principals {
    /// Whether a Deny's `NotPrincipal` spares the caller. AWS evaluates each identity of the
    /// caller's chain (its account, the role of a session, the caller itself) against the
    /// statement, so each must be listed: a user with its account, a role session with its
    /// role and account (IAM's NotPrincipal examples). Naming a user alone spares no one.
    fn spares(&self, req: &Request) -> bool {
        match self {
            Principals::Anyone => true,
            Principals::List { aws, .. } => {
                let listed = |arn: &str| aws.iter().any(|p| p == arn);
                let account = aws.iter().any(|p| {
                    (p.len() == 12 || p.ends_with(":root"))
                        && account_of(p) == Some(req.principal_account.as_str())
                });
                let root = req.principal_arn.ends_with(":root");
                account
                    && (root || listed(&req.principal_arn))
                    && req.role_arn.as_deref().is_none_or(listed)
            }
        }
    }

    fn matches(&self, req: &Request) -> Option<PrincipalMatch> {
        match self {
            Principals::Anyone => Some(PrincipalMatch::Direct),
            Principals::List { aws, .. } => {
                let mut found = None;
                for p in aws {
                    if p == &req.principal_arn || Some(p) == req.role_arn.as_ref() {
                        return Some(PrincipalMatch::Direct);
                    }
                    let is_account = p.len() == 12 || p.ends_with(":root");
                    if is_account && account_of(p) == Some(req.principal_account.as_str()) {
                        found = Some(PrincipalMatch::Account);
                    }
                }
                found
            }
        }
    }
}

impl Statement {
    /// Whether this statement applies to the request, and how its principal matched
    /// (identity policies apply to their own principal: `Direct`).
    pub fn applies(&self, req: &Request) -> Option<PrincipalMatch> {
        let m = match (&self.principal, &self.not_principal) {
            (Some(p), _) => p.matches(req)?,
            (None, Some(np)) => {
                let spared = match self.effect {
                    Effect::Deny => np.spares(req),
                    // An Allow applies to fewer callers the more it spares (fail closed).
                    Effect::Allow => np.matches(req).is_some(),
                };
                if spared {
                    return None;
                }
                PrincipalMatch::Direct
            }
            (None, None) => PrincipalMatch::Direct,
        };
        let action = self.action.iter().any(|a| glob(a, &req.action, true));
        if action == self.not_action {
            return None;
        }
        let resource = if self.resource_variables {
            let arn: Vec<char> = req.resource.chars().collect();
            self.resource.iter().any(|r| {
                super::variables::resolve(r, req)
                    .is_some_and(|p| glob_tokens(&super::variables::pattern(&p), &arn))
            })
        } else {
            self.resource.iter().any(|r| glob(r, &req.resource, false))
        };
        if resource == self.not_resource {
            return None;
        }
        if !self.conditions.iter().all(|c| c.holds(req, self.effect)) {
            return None;
        }
        Some(m)
    }
}
