//! Key policies (`PutKeyPolicy`, `GetKeyPolicy`, `ListKeyPolicies`) and the key reads
//! (`DescribeKey`, `GetKeyLastUsage`, `ListKeys`).

use super::*;

impl Kms {
    /// A new key policy must be valid, at most 32 KB, and (unless the caller bypasses the
    /// check) still allow the caller to change it later.
    pub(super) async fn check_new_policy(
        &self,
        caller: &Caller,
        rec: &KeyRecord,
        text: &str,
        bypass: bool,
    ) -> Result<()> {
        if text.len() > MAX_KEY_POLICY_BYTES {
            return Err(KmsError::LimitExceeded(format!(
                "The key policy is {} bytes; the limit is {MAX_KEY_POLICY_BYTES} bytes.",
                text.len()
            )));
        }
        let doc = policy::parse_new(text, PolicyKind::Key).map_err(KmsError::MalformedPolicy)?;
        self.principals_exist(&doc).await?;
        if !bypass {
            let identity = self
                .identity_policies(caller.role_arn.as_deref().unwrap_or(&caller.principal_arn))
                .await?;
            let mut req = self.request(caller, "kms:PutKeyPolicy", Some(rec), None);
            self.add_tags(&mut req, &identity, None).await?;
            if policy::decide(
                &doc,
                &rec.account_id,
                &identity.policies,
                policy::GrantAllows::No,
                &req,
            ) != policy::Decision::Allow
            {
                return Err(KmsError::MalformedPolicy(
                    "The new key policy will not allow you to update the key policy in the future."
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// AWS: "The principals in the key policy must exist and be visible to KMS". A user or
    /// role (or a session of a role) that no account here has is refused with AWS's words, as
    /// a principal that is not one is: a Deny naming a misspelt or not yet created principal
    /// would otherwise be kept and apply to no one. Accounts (`<account>`, `…:root`) and the
    /// unique ids of deleted principals are not looked up.
    async fn principals_exist(&self, doc: &policy::PolicyDocument) -> Result<()> {
        let mut named: Vec<String> = Vec::new();
        for s in &doc.statements {
            for p in [&s.principal, &s.not_principal].into_iter().flatten() {
                if let policy::document::Principals::List { aws, .. } = p {
                    named.extend(aws.iter().cloned());
                }
            }
        }
        for identity in named
            .iter()
            .filter_map(|p| super::grants::identity_named(p))
        {
            if !self.ids.principal_exists(&identity).await? {
                return Err(KmsError::MalformedPolicy(
                    policy::document::INVALID_PRINCIPALS.into(),
                ));
            }
        }
        Ok(())
    }

    pub async fn put_key_policy(
        &self,
        caller: &Caller,
        key_id: &str,
        text: &str,
        bypass: bool,
    ) -> Result<()> {
        self.as_current(|| self.put_key_policy_once(caller, key_id, text, bypass))
            .await
    }

    pub(super) async fn put_key_policy_once(
        &self,
        caller: &Caller,
        key_id: &str,
        text: &str,
        bypass: bool,
    ) -> Result<()> {
        // Every state, a key pending deletion too (AWS's key-state table).
        let bypassing = [(
            "kms:BypassPolicyLockoutSafetyCheck",
            if bypass { "true" } else { "false" },
        )];
        let access = Access::to("kms:PutKeyPolicy", ANY_STATE).conditions(&bypassing);
        let rec = self.key_for(caller, key_id, access).await?;
        self.check_new_policy(caller, &rec, text, bypass).await?;
        if !self.store_key_policy(&rec, text).await? {
            return Err(KmsError::Changed(rec.key_id));
        }
        Ok(())
    }

    /// Replace `rec`'s policy with `policy`, sealed; false when the row changed since `rec`
    /// was read (nothing is written then).
    pub(super) async fn store_key_policy(&self, rec: &KeyRecord, policy: &str) -> Result<bool> {
        let sealed = KeyRecord {
            policy: policy.to_string(),
            ..rec.clone()
        };
        let seal = self
            .seal_row(
                seal::key_row(rec, "policy"),
                policy_mac_input(&sealed),
                rec.policy_mac.as_deref(),
            )
            .await?;
        if !self
            .keys
            .set_key_policy(rec.key_id, rec.policy_mac.as_deref(), policy, &seal.mac)
            .await?
        {
            return Ok(false);
        }
        self.written(&seal);
        self.invalidate(Some(rec.key_id));
        Ok(true)
    }

    pub async fn get_key_policy(&self, caller: &Caller, key_id: &str) -> Result<String> {
        let access = Access::to("kms:GetKeyPolicy", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        Ok(rec.policy.clone())
    }

    pub async fn list_key_policies(&self, caller: &Caller, key_id: &str) -> Result<Vec<String>> {
        self.key_for(caller, key_id, Access::to("kms:ListKeyPolicies", ANY_STATE))
            .await?;
        Ok(vec!["default".into()])
    }

    pub async fn describe_key(&self, caller: &Caller, key_id: &str) -> Result<KeyMetadata> {
        let access = Access::to("kms:DescribeKey", ANY_STATE);
        let rec = self.key_for(caller, key_id, access).await?;
        self.metadata(&rec).await
    }

    /// `GetKeyLastUsage`: the key's latest successful cryptographic call, from the audit trail
    /// (every call this deployment answered is in it, so tracking starts when the key was
    /// created). A key id or key ARN of the caller's own account only, as on AWS.
    pub async fn key_last_usage(&self, caller: &Caller, key_id: &str) -> Result<KeyLastUsage> {
        if matches!(keyid::parse(key_id)?, KeyRef::Alias { .. }) {
            return Err(KmsError::NotFound(format!(
                "Alias names are not supported: specify the key ID or key ARN instead of {key_id}."
            )));
        }
        let rec = self.resolve_own(caller, key_id).await?;
        self.admit(caller, &rec, Access::to("kms:GetKeyLastUsage", ANY_STATE))
            .await?;
        let last = match self.audit.get() {
            Some(a) => a.last_key_use(&rec.arn()).await?,
            None => None,
        };
        Ok(KeyLastUsage {
            key_id: rec.public_id().to_string(),
            last,
            tracking_start: rec.created_at,
            created: rec.created_at,
        })
    }

    /// `ListKeys`. `own` is whether `ResourceOwners` names `SELF` (as it does when absent).
    /// `OTHER_ACCOUNTS_VIA_RAM` adds nothing: no key here is shared through Resource Access
    /// Manager. A listing of shared keys alone is empty, and takes no marker (this service
    /// never returned one for it).
    pub async fn list_keys(
        &self,
        caller: &Caller,
        own: bool,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<ListKeysOutput> {
        if !own {
            self.authorize(caller, "kms:ListKeys", None, None, &[])
                .await?;
            if marker.is_some() {
                return Err(KmsError::InvalidMarker);
            }
            return Ok(ListKeysOutput {
                keys: Vec::new(),
                next_marker: None,
            });
        }
        let (rows, next_marker) = self.list_key_rows(caller, limit, marker).await?;
        Ok(ListKeysOutput {
            keys: rows.iter().map(|r| (r.public_id(), r.arn())).collect(),
            next_marker,
        })
    }

    /// `ListKeys`'s rows (unchecked: what they say is only listed, never used) and the marker
    /// of the next page.
    pub(super) async fn list_key_rows(
        &self,
        caller: &Caller,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<(Vec<KeyRecord>, Option<String>)> {
        self.authorize(caller, "kms:ListKeys", None, None, &[])
            .await?;
        let after = match marker {
            None => None,
            Some(m) => Some(Uuid::parse_str(m).map_err(|_| KmsError::InvalidMarker)?),
        };
        let mut rows = self
            .keys
            .list_keys(&caller.account_id, &caller.region, after, limit as i64 + 1)
            .await?;
        let truncated = rows.len() > limit;
        rows.truncate(limit);
        let next_marker = if truncated {
            rows.last().map(|r| r.key_id.to_string())
        } else {
            None
        };
        Ok((rows, next_marker))
    }
}
