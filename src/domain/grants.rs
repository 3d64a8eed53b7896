//! Grants: `CreateGrant`, `ListGrants`, `ListRetirableGrants`, `RetireGrant`, `RevokeGrant`,
//! grant tokens, and whether a grant allows a request.

use super::preamble::{Access, Check, ANY_STATE};
use super::{mac_input, Caller, Context, Kms, KmsError};
use crate::domain::Result;
use crate::operations::{grant_operation, KeyKind};
use crate::policy::GrantAllows;
use crate::store::{GrantRecord, KeyRecord, StoreError};
use crate::vocab::{KeySpec, KeyUsage};
use base64::Engine;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

mod constraints;

pub use constraints::Constraints;
use constraints::{constraints_json, stored_constraints, LazyContext};

/// A grant id as this service issues them: 64 lowercase hex digits. Anything else is
/// `InvalidGrantIdException`, as AWS answers a grant id that is not one.
pub fn check_grant_id(id: &str) -> Result<()> {
    if id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    Err(KmsError::InvalidGrantId(format!(
        "Grant ID {id} is not valid."
    )))
}

/// The kind of key a grant names, as grant operations tell them apart.
fn key_kind(rec: &KeyRecord) -> KeyKind {
    if rec.key_spec == KeySpec::SymmetricDefault {
        return KeyKind::Symmetric;
    }
    if rec.key_spec.is_hmac() {
        return KeyKind::Hmac;
    }
    match rec.key_usage {
        KeyUsage::EncryptDecrypt => KeyKind::AsymmetricEncryption,
        KeyUsage::KeyAgreement => KeyKind::KeyAgreement,
        KeyUsage::EncapsulateDecapsulate => KeyKind::KeyEncapsulation,
        _ => KeyKind::Signing,
    }
}

/// Whether the grant operation `op` allows an operation that takes an encryption context.
fn with_context(op: &str) -> bool {
    grant_operation(op).is_some_and(|g| g.with_context)
}

pub struct CreateGrantInput {
    pub key_id: String,
    pub grantee: String,
    pub retiring: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<Constraints>,
    pub name: Option<String>,
    pub dry_run: bool,
}

impl Kms {
    /// A principal a grant names must be one: an account's root, a user or a role that exists,
    /// a session of a role that exists, a federated user of an account that exists. AWS's
    /// answers, recorded: a malformed one (an assumed-role ARN with a path) is "ARN is not
    /// valid: <arn>", one that names no principal "ARN does not refer to a valid principal:
    /// <arn>" (both InvalidArnException).
    /// A principal a ListGrants filter names, checked as a grant's is ([`check_grant_principal`]);
    /// one that is not an ARN (a unique id) is "Input does not refer to a valid principal", as
    /// AWS answers (recorded).
    pub async fn check_listed_principal(&self, p: &str) -> Result<()> {
        if !p.starts_with("arn:") {
            return Err(KmsError::InvalidArn(
                "Input does not refer to a valid principal".into(),
            ));
        }
        self.check_grant_principal(p).await
    }

    async fn check_grant_principal(&self, p: &str) -> Result<()> {
        if !valid_principal(p) {
            return Err(KmsError::InvalidArn(format!("ARN is not valid: {p}")));
        }
        let parts: Vec<&str> = p.splitn(6, ':').collect();
        let (service, account, resource) = (parts[2], parts[4], parts[5]);
        let exists = match (identity_named(p), service, resource.split_once('/')) {
            (Some(identity), _, _) => self.ids.principal_authz(&identity).await?.is_some(),
            (None, "iam", None) => self.ids.account_exists(account).await?,
            (None, "sts", Some(("federated-user", _))) => self.ids.account_exists(account).await?,
            _ => false,
        };
        if !exists {
            return Err(KmsError::InvalidArn(format!(
                "ARN does not refer to a valid principal: {p}"
            )));
        }
        Ok(())
    }
}

/// The IAM user or role a principal ARN stands for: a user or role itself, or the role of an
/// assumed-role session (`arn:aws:sts::<account>:assumed-role/<role>/<session>`); `None` for
/// an account, a federated user or anything else.
pub(crate) fn identity_named(p: &str) -> Option<String> {
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    let [_, _, service, _, account, resource] = parts[..] else {
        return None;
    };
    match (service, resource.split_once('/')?) {
        ("iam", ("user" | "role", _)) => Some(p.to_string()),
        ("sts", ("assumed-role", rest)) => {
            let role = rest.split_once('/').map_or(rest, |(r, _)| r);
            Some(format!("arn:aws:iam::{account}:role/{role}"))
        }
        _ => None,
    }
}

/// Principals a grant may name, by the form of their ARN: an account's root, a user, a role,
/// an assumed-role session (`assumed-role/<role>/<session>`, no path) or a federated user.
pub fn valid_principal(p: &str) -> bool {
    let parts: Vec<&str> = p.splitn(6, ':').collect();
    if parts.len() != 6
        || parts[0] != "arn"
        || !parts[3].is_empty()
        || parts[4].len() != 12
        || !parts[4].bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    match parts[2] {
        "iam" => {
            parts[5] == "root" || parts[5].starts_with("user/") || parts[5].starts_with("role/")
        }
        "sts" => match parts[5].split_once('/') {
            Some(("assumed-role", rest)) => {
                let names: Vec<&str> = rest.split('/').collect();
                names.len() == 2 && names.iter().all(|n| !n.is_empty())
            }
            Some(("federated-user", name)) => !name.is_empty() && !name.contains('/'),
            _ => false,
        },
        _ => false,
    }
}

/// `kms:GrantIsForAWSResource` of CreateGrant, ListGrants and RevokeGrant (as AWS sets it):
/// no AWS service calls this server.
const FOR_NO_AWS_RESOURCE: &[(&str, &str)] = &[("kms:GrantIsForAWSResource", "false")];

/// Whether one grant allows `action` for the caller with this encryption context, and how: a
/// grant to the caller itself (or to the role it assumed) allows; a grant to the caller's
/// account allows only with an identity policy that allows too (decided in `policy`).
fn grant_allows(g: &GrantRecord, caller: &Caller, action: &str, ctx: &LazyContext) -> GrantAllows {
    let op = action.strip_prefix("kms:").unwrap_or(action);
    if !g.operations.iter().any(|o| o == op) {
        return GrantAllows::No;
    }
    let how = if g.grantee_principal == caller.principal_arn
        || caller.role_arn.as_deref() == Some(g.grantee_principal.as_str())
    {
        GrantAllows::Caller
    } else if g
        .grantee_principal
        .strip_prefix("arn:aws:iam::")
        .and_then(|a| a.strip_suffix(":root"))
        == Some(caller.account_id.as_str())
    {
        GrantAllows::Account
    } else {
        return GrantAllows::No;
    };
    if let Some(c) = &g.constraints {
        let Some(c) = stored_constraints(c) else {
            tracing::error!(grant_id = %g.grant_id, "grant constraints cannot be evaluated; the grant allows nothing");
            return GrantAllows::No;
        };
        // AWS applies constraints to the operations that take an encryption context; those
        // that do not (DescribeKey, RetireGrant) are allowed as granted, and CreateGrant is
        // held to the constraints by `create_grant`.
        if with_context(op) && !c.admit(ctx.get()) {
            return GrantAllows::No;
        }
    }
    how
}

/// The better of two ways a request is allowed.
fn best(a: GrantAllows, b: GrantAllows) -> GrantAllows {
    match (a, b) {
        (GrantAllows::Caller, _) | (_, GrantAllows::Caller) => GrantAllows::Caller,
        (GrantAllows::Account, _) | (_, GrantAllows::Account) => GrantAllows::Account,
        _ => GrantAllows::No,
    }
}

/// A grant as `ListGrants` and `ListRetirableGrants` show it.
#[derive(Debug, Clone)]
pub struct Grant {
    pub key_arn: String,
    pub grant_id: String,
    pub name: Option<String>,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<serde_json::Value>,
    pub issuing_account: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Grant {
    fn of(g: GrantRecord, key_arn: &str) -> Grant {
        Grant {
            key_arn: key_arn.to_string(),
            grant_id: g.grant_id,
            name: g.name,
            grantee_principal: g.grantee_principal,
            retiring_principal: g.retiring_principal,
            operations: g.operations,
            constraints: g.constraints,
            issuing_account: g.issuing_account,
            created_at: g.created_at,
        }
    }
}

impl Kms {
    pub fn invalidate_grants(&self, key_id: Option<Uuid>) {
        let mut g = self.grants.lock().unwrap();
        match key_id {
            Some(k) => {
                g.pop(&k);
            }
            None => g.clear(),
        }
    }

    /// Everything a grant allows, for its row MAC.
    pub(crate) fn grant_mac_input(g: &GrantRecord) -> Vec<u8> {
        let constraints = g
            .constraints
            .as_ref()
            .map(crate::audit::canonical)
            .unwrap_or_default();
        mac_input(
            "kms.grant.v1",
            &[
                g.grant_id.as_bytes(),
                g.key_id.as_bytes(),
                g.name.as_deref().unwrap_or("").as_bytes(),
                g.grantee_principal.as_bytes(),
                g.retiring_principal.as_deref().unwrap_or("").as_bytes(),
                g.operations.join("\n").as_bytes(),
                constraints.as_bytes(),
                g.issuing_account.as_bytes(),
            ],
        )
    }

    /// Only grants whose row MAC holds: a grant written into the database by anyone but this
    /// service (or altered there) allows nothing, and is reported. Nor does a grant the trail
    /// says was retired or revoked (its genuine row put back from an older backup, or saved and
    /// re-inserted by a database writer).
    async fn verified(&self, grants: Vec<GrantRecord>) -> Result<Vec<GrantRecord>> {
        // Per key, which of these grants the trail has ended, asked by their ids (never by
        // reading every grant end of the key: a loop of CreateGrant and RetireGrant would make
        // each later load heavier for good); `None`: the key does not load (deleted, or
        // failing its checks), so none of its grants allows anything.
        let mut asked: HashMap<Uuid, Vec<String>> = HashMap::new();
        for g in &grants {
            asked.entry(g.key_id).or_default().push(g.grant_id.clone());
        }
        let mut ended: HashMap<Uuid, Option<HashSet<String>>> = HashMap::new();
        for (key_id, ids) in asked {
            let rec = match self.record(key_id).await {
                Ok(Some(rec)) => rec,
                Ok(None) | Err(_) => {
                    ended.insert(key_id, None);
                    continue;
                }
            };
            let found = self
                .grant_store
                .grants_ended_per_trail(&rec.arn(), &ids)
                .await?;
            ended.insert(key_id, Some(found.into_iter().collect()));
        }
        let mut out = Vec::with_capacity(grants.len());
        for g in grants {
            let Some(Some(ended)) = ended.get(&g.key_id) else {
                continue;
            };
            if self.intact(&g, ended.contains(&g.grant_id)).await? {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// [`Kms::verified`] for one grant (named by a grant token).
    async fn verified_one(&self, g: GrantRecord) -> Result<Option<GrantRecord>> {
        Ok(self.verified(vec![g]).await?.pop())
    }

    /// Whether a grant row may allow anything: the trail has not `ended` it, and its MAC holds.
    async fn intact(&self, g: &GrantRecord, ended: bool) -> Result<bool> {
        if ended {
            tracing::error!(grant_id = %g.grant_id, key_id = %g.key_id, "the audit trail records this grant's end, but its row is in the database again (put back from a backup?); ignoring it");
            return Ok(false);
        }
        let holds = self
            .hsm
            .row_mac_matches(Self::grant_mac_input(g), &g.mac)
            .await?;
        if !holds {
            tracing::error!(grant_id = %g.grant_id, key_id = %g.key_id, "grant row failed its integrity check; ignoring it");
        }
        Ok(holds)
    }

    async fn grants_of(&self, key_id: Uuid) -> Result<Arc<Vec<GrantRecord>>> {
        if let Some(g) = self.grants.lock().unwrap().get(&key_id) {
            crate::metrics::cache("grants", true);
            return Ok(g.clone());
        }
        crate::metrics::cache("grants", false);
        // A change that commits while this is read drops the entry before the read ends:
        // what was read is then not kept (it may be from before the change).
        let drops = self.grants.lock().unwrap().drops();
        let g = Arc::new(
            self.verified(self.grant_store.grants_of_key(key_id).await?)
                .await?,
        );
        self.grants
            .lock()
            .unwrap()
            .put_unless_dropped_since(drops, key_id, g.clone());
        Ok(g)
    }

    fn grant_token_mac_input(grant_id: &str, key_id: &Uuid) -> Vec<u8> {
        mac_input(
            "kms.grant-token.v1",
            &[grant_id.as_bytes(), key_id.as_bytes()],
        )
    }

    async fn make_grant_token(&self, grant_id: &str, key_id: &Uuid) -> Result<String> {
        let mac = self
            .hsm
            .row_mac(Self::grant_token_mac_input(grant_id, key_id))
            .await?;
        let mut raw = b"kgt1".to_vec();
        raw.extend_from_slice(grant_id.as_bytes());
        raw.extend_from_slice(key_id.as_bytes());
        raw.extend_from_slice(&mac);
        Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
    }

    /// A grant token names its grant and key and carries a MAC from the token's MAC key.
    pub(super) async fn verify_grant_token(&self, token: &str) -> Result<(String, Uuid)> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| KmsError::InvalidGrantToken)?;
        // The MAC is 32 bytes under MAC key version 1, 37 (tagged with its version) above it.
        if !matches!(raw.len().checked_sub(84), Some(32 | 37)) || &raw[..4] != b"kgt1" {
            return Err(KmsError::InvalidGrantToken);
        }
        let grant_id = std::str::from_utf8(&raw[4..68])
            .map_err(|_| KmsError::InvalidGrantToken)?
            .to_string();
        let key_id = Uuid::from_slice(&raw[68..84]).map_err(|_| KmsError::InvalidGrantToken)?;
        if !self
            .hsm
            .row_mac_matches(Self::grant_token_mac_input(&grant_id, &key_id), &raw[84..])
            .await?
        {
            return Err(KmsError::InvalidGrantToken);
        }
        Ok((grant_id, key_id))
    }

    /// Grants named by the request's grant tokens for this key, read fresh (so a new grant
    /// works at once on any node) and verified.
    async fn token_grants(&self, caller: &Caller, rec: &KeyRecord) -> Result<Vec<GrantRecord>> {
        let mut out = Vec::new();
        for t in &caller.grant_tokens {
            let (grant_id, key_id) = self.verify_grant_token(t).await?;
            if key_id == rec.key_id {
                if let Some(g) = self.grant_store.grant(&grant_id).await? {
                    out.extend(self.verified_one(g).await?);
                }
            }
        }
        Ok(out)
    }

    /// How the key's grants allow the request: from the cache, or named by a grant token of
    /// this request.
    pub(super) async fn grant_allows(
        &self,
        caller: &Caller,
        action: &str,
        rec: &KeyRecord,
        ctx: Option<&Context>,
    ) -> Result<GrantAllows> {
        let lazy = LazyContext::new(ctx);
        let mut how = GrantAllows::No;
        for g in self.token_grants(caller, rec).await? {
            how = best(how, grant_allows(&g, caller, action, &lazy));
        }
        if how == GrantAllows::Caller {
            return Ok(how);
        }
        for g in self.grants_of(rec.key_id).await?.iter() {
            how = best(how, grant_allows(g, caller, action, &lazy));
            if how == GrantAllows::Caller {
                break;
            }
        }
        Ok(how)
    }

    /// How the caller's grants allow it to create this grant: only grants with CreateGrant
    /// whose operations include every requested one and whose constraints the new grant's are
    /// at least as strict as count (AWS: a grantee never creates a grant wider than its own).
    async fn grants_allowing_grant(
        &self,
        caller: &Caller,
        rec: &KeyRecord,
        operations: &[String],
        constraints: Option<&Constraints>,
    ) -> Result<GrantAllows> {
        let covers = |g: &GrantRecord| {
            operations.iter().all(|o| g.operations.contains(o))
                && match &g.constraints {
                    None => true,
                    Some(c) => {
                        stored_constraints(c).is_some_and(|c| c.at_least_as_strict(constraints))
                    }
                }
        };
        let mut how = GrantAllows::No;
        let cached = self.grants_of(rec.key_id).await?;
        for g in self
            .token_grants(caller, rec)
            .await?
            .iter()
            .chain(cached.iter())
        {
            if covers(g) {
                how = best(
                    how,
                    grant_allows(g, caller, "kms:CreateGrant", &LazyContext::new(None)),
                );
            }
        }
        Ok(how)
    }

    /// The refusal of the grant `input` asks for on `rec` by the key's kind: operations the
    /// kind does not take, or constraints where no encryption context applies.
    fn grant_unfit_for(rec: &KeyRecord, input: &CreateGrantInput) -> Option<KmsError> {
        let kind = key_kind(rec);
        let mut refused = Vec::new();
        for op in &input.operations {
            let Some(g) = grant_operation(op) else {
                return Some(KmsError::Validation(format!(
                    "{op} is not a grant operation."
                )));
            };
            if !g.kinds.contains(&kind) {
                refused.push(op.as_str());
            }
        }
        if !refused.is_empty() {
            // AWS's words and order: the operations every key has, then the key kind's own.
            let general = ["CreateGrant", "RetireGrant", "DescribeKey"];
            let valid: Vec<&str> = general
                .iter()
                .copied()
                .chain(
                    crate::operations::grant_operation_names()
                        .into_iter()
                        .filter(|n| {
                            !general.contains(n)
                                && grant_operation(n).is_some_and(|g| g.kinds.contains(&kind))
                        }),
                )
                .collect();
            let symmetric = rec.key_spec == KeySpec::SymmetricDefault || rec.key_spec.is_hmac();
            return Some(KmsError::Validation(
                crate::messages::grant_operations_not_supported(
                    &refused,
                    symmetric,
                    rec.key_usage.as_str(),
                    &valid,
                ),
            ));
        }
        // Encryption context belongs to symmetric encryption: no constraint on other keys.
        if input.constraints.is_some() && rec.key_spec != KeySpec::SymmetricDefault {
            return Some(KmsError::Validation(
                crate::messages::GRANT_CONTEXT_SYMMETRIC_ONLY.into(),
            ));
        }
        // AWS applies constraints to the operations that take an encryption context (and holds
        // grants created through CreateGrant to them); a constrained grant of nothing else
        // would constrain nothing.
        if input.constraints.is_some()
            && !input
                .operations
                .iter()
                .any(|o| with_context(o) || o == "CreateGrant")
        {
            return Some(KmsError::Validation(
                "Grant constraints apply only to cryptographic operations that take an encryption context.".into(),
            ));
        }
        None
    }

    pub async fn create_grant(
        &self,
        caller: &Caller,
        input: CreateGrantInput,
    ) -> Result<(String, String)> {
        // The form of the principals first: it says nothing of the key.
        // Not an ARN at all (a unique id, `AROA…:session`): AWS names the member, recorded
        // for GranteePrincipal; a malformed ARN: "ARN is not valid: <arn>".
        let members = [
            ("GranteePrincipal", Some(&input.grantee)),
            ("RetiringPrincipal", input.retiring.as_ref()),
        ];
        for (member, p) in members {
            let Some(p) = p else { continue };
            if !p.starts_with("arn:") {
                return Err(KmsError::InvalidArn(format!(
                    "{member} does not refer to a valid principal."
                )));
            }
            if !valid_principal(p) {
                return Err(KmsError::InvalidArn(format!("ARN is not valid: {p}")));
            }
        }
        if let Some(c) = &input.constraints {
            c.within_limits()?;
        }
        let rec = self
            .resolve(caller, &input.key_id, "kms:CreateGrant")
            .await?;
        // What the key's kind refuses; for another account's key only once the caller may
        // create grants on it (its kind would tell that the key exists, and what it is).
        let unfit = match Self::grant_unfit_for(&rec, &input) {
            Some(e) if rec.account_id == caller.account_id => return Err(e),
            unfit => unfit,
        };
        let constraint_type = input.constraints.as_ref().map(|c| {
            if c.equals.is_some() {
                "EncryptionContextEquals"
            } else {
                "EncryptionContextSubset"
            }
        });
        let mut extra: Vec<(&str, &str)> = vec![
            ("kms:GranteePrincipal", &input.grantee),
            ("kms:GrantIsForAWSResource", "false"),
        ];
        if let Some(r) = &input.retiring {
            extra.push(("kms:RetiringPrincipal", r));
        }
        if let Some(t) = constraint_type {
            extra.push(("kms:GrantConstraintType", t));
        }
        let multi: &[(&str, &[String])] = &[("kms:GrantOperations", &input.operations)];
        // `kms:EncryptionContext:<key>` and `kms:EncryptionContextKeys` are the constraint's
        // pairs in a CreateGrant (AWS's condition keys apply to the grant constraints there).
        let constraint_context =
            (input.constraints.as_ref()).and_then(|c| c.equals.as_ref().or(c.subset.as_ref()));
        // The key policy and identity policies first; a grant with CreateGrant allows only
        // grants no wider than itself.
        let authorize = |grants| {
            self.authorize_with(
                caller,
                "kms:CreateGrant",
                Some(&rec),
                constraint_context,
                &extra,
                multi,
                Some(grants),
            )
        };
        let by_policy = authorize(GrantAllows::No).await;
        if let Err(KmsError::AccessDenied(why)) = by_policy {
            let how = self
                .grants_allowing_grant(caller, &rec, &input.operations, input.constraints.as_ref())
                .await?;
            if how == GrantAllows::No {
                return Err(KmsError::AccessDenied(why));
            }
            authorize(how).await?;
        } else {
            by_policy?;
        }
        if let Some(e) = unfit {
            return Err(e);
        }
        // After authorization: a caller without permission learns nothing of the key's state.
        // AWS's key-state table: an enabled key only (a disabled one is DisabledException).
        Self::check(&rec, &[Check::Enabled])?;
        for p in std::iter::once(&input.grantee).chain(input.retiring.iter()) {
            self.check_grant_principal(p).await?;
        }
        if input.dry_run {
            return Err(KmsError::DryRun);
        }
        let constraints = input.constraints.as_ref().map(constraints_json);
        // A retry with the same Name and the same parameters returns the same grant.
        if let Some(name) = &input.name {
            for g in self
                .verified(self.grant_store.grants_of_key(rec.key_id).await?)
                .await?
                .iter()
            {
                if g.name.as_deref() == Some(name)
                    && g.grantee_principal == input.grantee
                    && g.retiring_principal == input.retiring
                    && g.operations == input.operations
                    && g.constraints == constraints
                {
                    let token = self.make_grant_token(&g.grant_id, &rec.key_id).await?;
                    return Ok((g.grant_id.clone(), token));
                }
            }
        }
        let quota_exceeded = || {
            KmsError::LimitExceeded(format!(
                "The request was rejected because {} has reached the limit of {} grants.",
                rec.arn(),
                self.limits.grants_per_key
            ))
        };
        // Counted by the insert, in its transaction (a grant costs the token one random and one
        // HMAC: no need to refuse before them).
        let grant_id = hex::encode(self.hsm.random(32).await?.as_slice());
        let mut g = GrantRecord {
            grant_id: grant_id.clone(),
            key_id: rec.key_id,
            name: input.name,
            grantee_principal: input.grantee,
            retiring_principal: input.retiring,
            operations: input.operations,
            constraints,
            issuing_account: format!("arn:aws:iam::{}:root", caller.account_id),
            created_at: self.now(),
            mac: vec![],
        };
        g.mac = self.hsm.row_mac(Self::grant_mac_input(&g)).await?;
        match self
            .grant_store
            .insert_grant(&g, self.limits.grants_per_key)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict { constraint })
                if constraint == crate::store::QUOTA_EXCEEDED =>
            {
                return Err(quota_exceeded())
            }
            Err(e) => return Err(e.into()),
        }
        self.invalidate_grants(Some(rec.key_id));
        let token = self.make_grant_token(&grant_id, &rec.key_id).await?;
        Ok((grant_id, token))
    }

    pub async fn list_grants(&self, caller: &Caller, key_id: &str) -> Result<Vec<Grant>> {
        let access = Access::to("kms:ListGrants", ANY_STATE).conditions(FOR_NO_AWS_RESOURCE);
        let rec = self.key_for(caller, key_id, access).await?;
        // The key's verified grants as authorization reads them (cached, dropped on any change
        // of the key's grants): a key holding its quota of grants, listed a page at a time in
        // a loop, would otherwise load and check every row on every page.
        let grants = self.grants_of(rec.key_id).await?;
        let arn = rec.arn();
        Ok(grants.iter().map(|g| Grant::of(g.clone(), &arn)).collect())
    }

    pub async fn list_retirable_grants(
        &self,
        caller: &Caller,
        retiring: &str,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<(Vec<Grant>, Option<String>)> {
        self.authorize(caller, "kms:ListRetirableGrants", None, None, &[])
            .await?;
        // AWS: the retiring principal must be in the caller's own account. Another account's
        // grants, grantees and constraints are never listed.
        // Not an ARN (a unique id, `AROA…:session`): AWS's answer, recorded.
        if !retiring.starts_with("arn:") {
            return Err(KmsError::NotFound(format!(
                "Retiring principal {retiring} could not be found"
            )));
        }
        let account = retiring.split(':').nth(4);
        if valid_principal(retiring) && account == Some(caller.account_id.as_str()) {
            // One of the caller's account that does not exist: AWS's answer, recorded.
            self.check_grant_principal(retiring).await?;
        }
        if !valid_principal(retiring) || account != Some(caller.account_id.as_str()) {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: kms:ListRetirableGrants on resource: {retiring} because the retiring principal is not in the caller's account",
                caller.principal_arn
            )));
        }
        // The marker is the last grant listed: one the principal may retire; the listing goes
        // on from its place (a creation time and id), which stays if the grant goes meanwhile.
        let mut after = match marker {
            None => None,
            Some(m) => match self.grant_store.grant(m).await? {
                Some(g) if g.retiring_principal.as_deref() == Some(retiring) => {
                    Some((g.created_at, g.grant_id))
                }
                _ => return Err(KmsError::InvalidMarker),
            },
        };
        // Read a page at a time (any account may name this principal as a grant's retiring
        // principal: the list can be long) until a page and one more are listed: a row that
        // fails its checks, or whose key went, is left out.
        let mut out = Vec::with_capacity(limit + 1);
        loop {
            let rows = self
                .grant_store
                .grants_retirable_by(
                    retiring,
                    after.as_ref().map(|(at, id)| (*at, id.as_str())),
                    limit as i64 + 1,
                )
                .await?;
            let last_page = rows.len() <= limit;
            if let Some(g) = rows.last() {
                after = Some((g.created_at, g.grant_id.clone()));
            }
            for g in self.verified(rows).await? {
                // The key's ARN: its region and account come from the key's record.
                if let Ok(arn) = self.key_arn_of(g.key_id).await {
                    out.push(Grant::of(g, &arn));
                }
            }
            if out.len() > limit || last_page {
                break;
            }
        }
        let next = (out.len() > limit).then(|| {
            out.truncate(limit);
            out[limit - 1].grant_id.clone()
        });
        Ok((out, next))
    }

    /// Retire by token, or by key and grant id. The retiring principal, or the grantee of a
    /// grant that includes RetireGrant, may unless an identity policy denies kms:RetireGrant
    /// (one in another account than the key's only where its identity policies allow it); so
    /// may the key's account, and a principal of that account whose identity policies allow
    /// kms:RetireGrant (the key policy has no say, as on AWS).
    pub async fn retire_grant(
        &self,
        caller: &Caller,
        token: Option<&str>,
        key_id: Option<&str>,
        grant_id: Option<&str>,
        dry_run: bool,
    ) -> Result<()> {
        let (gid, kid) = match (token, key_id, grant_id) {
            (Some(t), _, _) => self.verify_grant_token(t).await?,
            (None, Some(k), Some(g)) => {
                check_grant_id(g)?;
                let rec = self.resolve(caller, k, "kms:RetireGrant").await?;
                // Another account's key: a grant id that is not its grant is refused as a key
                // that does not exist is (a NotFoundException would tell that the key exists).
                if let Some(arn) = super::material::foreign_reference(caller, k)? {
                    let on_key = self
                        .grant_store
                        .grant(g)
                        .await?
                        .is_some_and(|x| x.key_id == rec.key_id);
                    if !on_key {
                        return Err(self
                            .absent_elsewhere(caller, "kms:RetireGrant", arn)
                            .await?);
                    }
                }
                (g.to_string(), rec.key_id)
            }
            _ => {
                return Err(KmsError::Validation(
                    "Specify a GrantToken, or both KeyId and GrantId.".into(),
                ))
            }
        };
        let g = self
            .grant_store
            .grant(&gid)
            .await?
            .filter(|g| g.key_id == kid)
            .ok_or_else(|| KmsError::NotFound(format!("Grant ID {gid} not found")))?;
        let me = |p: &str| p == caller.principal_arn || caller.role_arn.as_deref() == Some(p);
        // The retiring principal, or the grantee of this grant when it includes RetireGrant;
        // otherwise the key's policies (AWS: another grant's RetireGrant retires only itself).
        // Read from a row that verifies: principals written with SQL retire nothing.
        let may = (g.retiring_principal.as_deref().is_some_and(me)
            || (me(&g.grantee_principal) && g.operations.iter().any(|o| o == "RetireGrant")))
            && self.verified_one(g.clone()).await?.is_some();
        let rec = self
            .record(kid)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("Grant ID {gid} not found")))?;
        let another_account = rec.account_id != caller.account_id;
        // AWS: "The kms:RetireGrant permission is not effective in a key policy": the grant,
        // the key's account and IAM policies decide.
        if may && another_account {
            // A grant's principal in another account than the key's retires it only where its
            // own identity policies allow kms:RetireGrant (recorded: "... on this resource
            // because no identity-based policy allows the kms:RetireGrant action").
            self.authorize_by_identity(caller, "kms:RetireGrant", Some(&rec), None)
                .await?;
        } else if may {
            // A grant's principal needs no policy, but an IAM policy may deny it ("To deny
            // permission to retire a grant, you can use a Deny action with the kms:RetireGrant
            // permission in your IAM policies").
            self.refuse_if_identity_denies(caller, "kms:RetireGrant", &rec)
                .await?;
        } else if another_account {
            // Beyond the grant's own principals, only the key's account (AWS: "the account in
            // which the grant was created"): another account that the key policy trusts
            // retires nothing.
            let req = self.request(caller, "kms:RetireGrant", Some(&rec), None);
            return Err(KmsError::AccessDenied(crate::policy::denial_message(
                &req,
                crate::policy::Denial::NoKeyPolicyAllows,
            )));
        } else if caller.role_arn.is_some()
            || caller.principal_arn != format!("arn:aws:iam::{}:root", rec.account_id)
        {
            // The account itself retires any of its grants; its principals where their IAM
            // policies allow kms:RetireGrant (a key policy naming them does not).
            self.authorize_by_identity(caller, "kms:RetireGrant", Some(&rec), None)
                .await?;
        }
        // A dry run answers only after everything a real call checks.
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.end_grant(&g, "RetireGrant").await
    }

    /// Delete a grant, its end first in the trail (`GrantEnded`): the row put back later is
    /// refused ([`Kms::verified`]). A trail that cannot take the event refuses the call; a
    /// deletion that fails after it leaves a grant the trail has ended, which allows nothing.
    async fn end_grant(&self, g: &GrantRecord, operation: &str) -> Result<()> {
        let rec = self
            .record(g.key_id)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("Grant ID {} not found", g.grant_id)))?;
        self.record_before(
            crate::audit::GRANT_ENDED_EVENT,
            &rec,
            serde_json::json!({ "grantId": g.grant_id, "operation": operation }),
        )
        .await?;
        let deleted = self.grant_store.delete_grant(&g.grant_id).await;
        self.invalidate_grants(Some(g.key_id));
        deleted?;
        Ok(())
    }

    pub async fn revoke_grant(
        &self,
        caller: &Caller,
        key_id: &str,
        grant_id: &str,
        dry_run: bool,
    ) -> Result<()> {
        check_grant_id(grant_id)?;
        let access = Access::to("kms:RevokeGrant", ANY_STATE).conditions(FOR_NO_AWS_RESOURCE);
        let rec = self.key_for(caller, key_id, access).await?;
        let Some(g) = self
            .grant_store
            .grant(grant_id)
            .await?
            .filter(|g| g.key_id == rec.key_id)
        else {
            return Err(KmsError::NotFound(format!("Grant ID {grant_id} not found")));
        };
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.end_grant(&g, "RevokeGrant").await
    }
}
