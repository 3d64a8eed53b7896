//! Authorization: the key policy, the caller's identity policies (verified against their MACs)
//! and the key's grants, with the request context AWS gives a policy (principal and resource
//! tags, aliases, conditions), decided by [`crate::policy`].

use super::*;

impl Kms {
    pub(super) async fn identity_policies(&self, principal_arn: &str) -> Result<Arc<Identity>> {
        if let Some(p) = self.identity.lock().unwrap().get(principal_arn) {
            crate::metrics::cache("identity", true);
            return Ok(p.clone());
        }
        crate::metrics::cache("identity", false);
        // A change that commits while this is read drops the entry before the read ends:
        // what was read is then not kept (it may be from before the change).
        let drops = self.identity.lock().unwrap().drops();
        let mut docs = Vec::new();
        let authz = self.verified_authz(principal_arn).await?;
        let (policies, tags, via_service) = match authz {
            Some(a) => (a.policies, a.tags, a.via_service),
            None => (vec![], vec![], None),
        };
        for (name, text) in policies {
            match policy::parse(&text, PolicyKind::Identity) {
                Ok(d) => docs.push(d),
                Err(e) => {
                    tracing::error!(principal_arn, policy = %name, error = %e, "stored identity policy is not valid; ignoring it")
                }
            }
        }
        let id = Arc::new(Identity {
            policies: docs,
            tags,
            via_service,
        });
        self.identity.lock().unwrap().put_unless_dropped_since(
            drops,
            principal_arn.to_string(),
            id.clone(),
        );
        Ok(id)
    }

    /// A principal's authorization data, once its MAC (computed in the token) matches: an
    /// identity policy, tag, service registration or trust policy altered, added or removed
    /// in the database refuses the principal everything. `None`: no such principal.
    pub(super) async fn verified_authz(&self, arn: &str) -> Result<Option<PrincipalAuthz>> {
        // The trail first: a change that commits while the row is read is then never taken
        // for an older row put back.
        let trail = self.trail_of(&[seal::principal_row(arn)]).await?;
        let Some(a) = self.ids.principal_authz(arn).await? else {
            return Ok(None);
        };
        let holds = a.mac.is_some()
            && self
                .current_under(
                    seal::principal_row(arn),
                    principal_mac_input(arn, &a),
                    &a.mac,
                    &trail,
                )
                .await?;
        if !holds {
            tracing::error!(principal_arn = arn, sealed = a.mac.is_some(), "the principal's policies, tags or trust policy failed their integrity check (altered in the database, an older row put back, or stored before principals were sealed: review with `kms admin seal`); refusing the principal");
            return Err(KmsError::AccessDenied(format!(
                "{arn} is not authorized to perform this operation: its identity record failed an integrity check"
            )));
        }
        Ok(Some(a))
    }

    /// Request context keys that come from stored data: principal and resource tags.
    pub(super) async fn add_tags(
        &self,
        req: &mut policy::Request,
        id: &Identity,
        rec: Option<&KeyRecord>,
    ) -> Result<()> {
        for t in &id.tags {
            req.context.insert(
                format!("aws:principaltag/{}", t.key.to_ascii_lowercase()),
                vec![t.value.clone()],
            );
        }
        if let Some(rec) = rec {
            for t in self.tags_of(rec).await?.iter() {
                req.context.insert(
                    format!("aws:resourcetag/{}", t.key.to_ascii_lowercase()),
                    vec![t.value.clone()],
                );
            }
            let aliases = self.aliases_of(rec).await?;
            if !aliases.is_empty() {
                req.context
                    .insert("kms:resourcealiases".into(), aliases.to_vec());
            }
        }
        Ok(())
    }

    pub(super) fn key_policy(&self, rec: &KeyRecord) -> Option<Arc<PolicyDocument>> {
        if let Some(p) = self.key_policies.lock().unwrap().get(&rec.key_id) {
            if p.0 == rec.policy {
                crate::metrics::cache("key_policies", true);
                return p.1.clone();
            }
        }
        crate::metrics::cache("key_policies", false);
        let parsed = match policy::parse(&rec.policy, PolicyKind::Key) {
            Ok(d) => Some(Arc::new(d)),
            Err(e) => {
                tracing::error!(key_id = %rec.key_id, error = %e, "stored key policy is not valid; it allows nothing");
                None
            }
        };
        self.key_policies
            .lock()
            .unwrap()
            .put(rec.key_id, Arc::new((rec.policy.clone(), parsed.clone())));
        parsed
    }

    pub(super) fn request(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
    ) -> policy::Request {
        let mut r = policy::Request {
            principal_arn: caller.principal_arn.clone(),
            principal_account: caller.account_id.clone(),
            role_arn: caller.role_arn.clone(),
            action: action.to_string(),
            resource: rec.map(KeyRecord::arn).unwrap_or_else(|| "*".into()),
            context: Default::default(),
            alternatives: Default::default(),
        };
        let mut put = |k: &str, v: Vec<String>| {
            r.context.insert(k.to_ascii_lowercase(), v);
        };
        put("kms:CallerAccount", vec![caller.account_id.clone()]);
        // A role's session is known to policies by its role's ARN (IAM's aws:PrincipalArn).
        put(
            "aws:PrincipalArn",
            vec![caller
                .role_arn
                .clone()
                .unwrap_or_else(|| caller.principal_arn.clone())],
        );
        put("aws:PrincipalAccount", vec![caller.account_id.clone()]);
        let resource = caller.principal_arn.splitn(6, ':').nth(5).unwrap_or("");
        let kind = if caller.role_arn.is_some() {
            "AssumedRole"
        } else if resource == "root" {
            "Account"
        } else {
            "User"
        };
        put("aws:PrincipalType", vec![kind.to_string()]);
        // An IAM user's friendly name (the last part of its path); other principals have none.
        if let Some(user) = resource.strip_prefix("user/") {
            put(
                "aws:username",
                vec![user.rsplit('/').next().unwrap_or(user).to_string()],
            );
        }
        put("aws:RequestedRegion", vec![caller.region.clone()]);
        let now = self.now();
        put(
            "aws:CurrentTime",
            vec![now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)],
        );
        put("aws:EpochTime", vec![now.timestamp().to_string()]);
        put(
            "aws:SecureTransport",
            vec![caller.secure_transport.to_string()],
        );
        if let Some(ip) = &caller.source_ip {
            put("aws:SourceIp", vec![ip.clone()]);
        }
        if let Some(a) = &caller.request_alias {
            put("kms:RequestAlias", vec![a.clone()]);
        }
        if let Some(same) = caller.re_encrypt_on_same_key {
            put("kms:ReEncryptOnSameKey", vec![same.to_string()]);
        }
        if let Some(rec) = rec {
            put("kms:KeySpec", vec![rec.key_spec.to_string()]);
            put("kms:KeyUsage", vec![rec.key_usage.to_string()]);
            put("kms:KeyOrigin", vec![rec.origin.to_string()]);
            put("kms:MultiRegion", vec![rec.mrk_id.is_some().to_string()]);
            if rec.mrk_id.is_some() {
                let kind = if rec.mrk_primary {
                    "PRIMARY"
                } else {
                    "REPLICA"
                };
                put("kms:MultiRegionKeyType", vec![kind.to_string()]);
            }
        }
        if let Some(ctx) = ctx {
            for (k, v) in ctx {
                // Condition key names are not case-sensitive, so `Stage` and `stage` are one
                // key: it holds both values, as alternatives (`policy::Request::alternatives`).
                let key = format!("kms:encryptioncontext:{}", k.to_ascii_lowercase());
                let values = r.context.entry(key.clone()).or_default();
                values.push(v.clone());
                if values.len() > 1 {
                    r.alternatives.insert(key);
                }
            }
            if !ctx.is_empty() {
                r.context.insert(
                    "kms:encryptioncontextkeys".into(),
                    ctx.keys().cloned().collect(),
                );
            }
        }
        r
    }

    /// Allow or refuse `action` for the caller, on a key (key policy + identity policies +
    /// grants) or on no key (identity policies alone).
    pub async fn authorize(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        self.authorize_with(caller, action, rec, ctx, extra, &[], None)
            .await
    }

    /// As `authorize`, with `multi` (multi-valued condition keys, `ForAnyValue`/
    /// `ForAllValues`); `grants` says how grants allow the request when the caller of this
    /// function has decided it (CreateGrant limits what a grant may create), `None` asks the
    /// key's grants.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn authorize_with(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        ctx: Option<&Context>,
        extra: &[(&str, &str)],
        multi: &[(&str, &[String])],
        grants: Option<policy::GrantAllows>,
    ) -> Result<()> {
        let identity = self
            .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
            .await?;
        let ids = &identity.policies;
        let mut req = self.request(caller, action, rec, ctx);
        self.add_tags(&mut req, &identity, rec).await?;
        if let Some(service) = &identity.via_service {
            req.context.insert(
                "kms:viaservice".into(),
                vec![format!("{service}.{}.amazonaws.com", caller.region)],
            );
        }
        for (k, v) in extra {
            req.context
                .insert(k.to_ascii_lowercase(), vec![v.to_string()]);
        }
        for (k, v) in multi {
            req.context.insert(k.to_ascii_lowercase(), v.to_vec());
        }
        let decision = match rec {
            // AWS: a key policy's allow for another account has no effect on the operations
            // that do not cross accounts (administering, tagging, replicating a key...).
            Some(rec)
                if rec.account_id != caller.account_id
                    && !crate::operations::crosses_accounts(action) =>
            {
                policy::Decision::Deny(policy::Denial::NoKeyPolicyAllows)
            }
            Some(rec) => match self.key_policy(rec) {
                Some(kp) => {
                    let grant = match grants {
                        Some(g) => g,
                        None => self.grant_allows(caller, action, rec, ctx).await?,
                    };
                    let decision = policy::decide(&kp, &rec.account_id, ids, grant, &req);
                    // Another account's key tells the caller of its own explicit deny only once
                    // the key's side (its policy or a grant) would let the caller in: otherwise
                    // the refusal is the key's, worded as for a key that does not exist
                    // ([`Kms::absent_elsewhere`]), whatever the caller's policies say.
                    match decision {
                        policy::Decision::Deny(policy::Denial::ExplicitInIdentityPolicy)
                            if rec.account_id != caller.account_id
                                && matches!(
                                    policy::decide(&kp, &rec.account_id, &[], grant, &req),
                                    policy::Decision::Deny(
                                        policy::Denial::NoKeyPolicyAllows
                                            | policy::Denial::ExplicitInKeyPolicy
                                    )
                                ) =>
                        {
                            policy::Decision::Deny(policy::Denial::NoKeyPolicyAllows)
                        }
                        d => d,
                    }
                }
                None => policy::Decision::Deny(policy::Denial::NoKeyPolicyAllows),
            },
            None => policy::decide_identity_only(ids, &req),
        };
        match decision {
            policy::Decision::Allow => Ok(()),
            policy::Decision::Deny(why) => {
                Err(KmsError::AccessDenied(policy::denial_message(&req, why)))
            }
        }
    }

    /// The refusal of `action` on `arn`, another account's key or alias that does not exist
    /// in this Region: the key's side refuses it, so it reads exactly as the refusal of a key
    /// that exists and does not let the caller in, whatever the caller's own policies say.
    /// The request's grant tokens are checked first, as they are for a key that exists.
    pub(super) async fn absent_elsewhere(
        &self,
        caller: &Caller,
        action: &str,
        arn: String,
    ) -> Result<KmsError> {
        if crate::operations::crosses_accounts(action) {
            for t in &caller.grant_tokens {
                self.verify_grant_token(t).await?;
            }
        }
        let mut req = self.request(caller, action, None, None);
        req.resource = arn;
        Ok(KmsError::AccessDenied(policy::denial_message(
            &req,
            policy::Denial::NoKeyPolicyAllows,
        )))
    }

    /// `action` on the alias `name` of the caller's account and region, as AWS asks it of the
    /// alias operations besides the key's policy: the caller's identity policies, with the
    /// alias's ARN as the resource (so an IAM statement naming aliases, `alias/prod-*`, allows
    /// or denies it).
    pub(crate) async fn authorize_on_alias(
        &self,
        caller: &Caller,
        action: &str,
        name: &str,
    ) -> Result<()> {
        let resource = keyid::alias_arn(&caller.region, &caller.account_id, name);
        self.authorize_by_identity(caller, action, None, Some(resource))
            .await
    }

    /// `action` decided by the caller's identity policies alone (no key policy, no grant), on
    /// `rec` (its tags in the context) and, with `resource`, on that ARN instead.
    pub(crate) async fn authorize_by_identity(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        resource: Option<String>,
    ) -> Result<()> {
        self.by_identity(caller, action, rec, resource, false).await
    }

    /// Refuse `action` only where one of the caller's identity policies explicitly denies it
    /// (what AWS lets an IAM policy do to the principals a grant lets retire it).
    pub(crate) async fn refuse_if_identity_denies(
        &self,
        caller: &Caller,
        action: &str,
        rec: &KeyRecord,
    ) -> Result<()> {
        self.by_identity(caller, action, Some(rec), None, true)
            .await
    }

    async fn by_identity(
        &self,
        caller: &Caller,
        action: &str,
        rec: Option<&KeyRecord>,
        resource: Option<String>,
        deny_only: bool,
    ) -> Result<()> {
        let identity = self
            .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
            .await?;
        let mut req = self.request(caller, action, rec, None);
        self.add_tags(&mut req, &identity, rec).await?;
        if let Some(resource) = resource {
            req.resource = resource;
        }
        match policy::decide_identity_only(&identity.policies, &req) {
            policy::Decision::Allow => Ok(()),
            policy::Decision::Deny(policy::Denial::NoIdentityPolicyAllows) if deny_only => Ok(()),
            policy::Decision::Deny(why) => {
                Err(KmsError::AccessDenied(policy::denial_message(&req, why)))
            }
        }
    }

    /// `sts:AssumeRole`: the role's trust policy must allow the caller (directly, or by
    /// trusting the caller's account whose identity policies then must allow it). Returns the
    /// role's account.
    pub async fn authorize_assume_role(
        &self,
        caller: &Caller,
        role_arn: &str,
        external_id: Option<&str>,
    ) -> Result<super::credentials::AssumableRole> {
        let denied = || {
            KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.principal_arn
            ))
        };
        let Some(role) = self.verified_authz(role_arn).await.map_err(|_| denied())? else {
            return Err(denied());
        };
        let generation = role.mac.as_deref().map_or(0, super::seal::generation_of);
        let (account, Some(trust)) = (role.account_id, role.trust_policy) else {
            return Err(denied());
        };
        let trust = policy::parse(&trust, PolicyKind::Trust).map_err(|e| {
            tracing::error!(role_arn, error = %e, "stored trust policy is not valid");
            denied()
        })?;
        let identity = self
            .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
            .await?;
        let mut req = self.request(caller, "sts:AssumeRole", None, None);
        self.add_tags(&mut req, &identity, None).await?;
        req.resource = role_arn.to_string();
        if let Some(x) = external_id {
            req.context
                .insert("sts:externalid".into(), vec![x.to_string()]);
        }
        match policy::decide(
            &trust,
            &account,
            &identity.policies,
            policy::GrantAllows::No,
            &req,
        ) {
            policy::Decision::Allow => Ok(super::credentials::AssumableRole {
                account_id: account,
                generation,
            }),
            policy::Decision::Deny(_) => Err(denied()),
        }
    }
}
