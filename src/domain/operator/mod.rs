//! The operator's service: every write `kms init`, `kms admin` and `kms hsm` make, checked,
//! sealed and audited here. The command line parses arguments and prints; it never writes to
//! the store itself, so an operator's change passes the same checks whichever command makes it.
//!
//! Errors are sentences for the operator (`anyhow`), not AWS errors: nothing here is answered
//! through the API.

mod principals;
mod restore;
mod review;
mod token_keys;

pub use principals::Forgotten;
pub use restore::CarriedForward;
pub use review::{unsealed_rows, MAC_KINDS};
pub use review::{Review, UnsealedRow};
pub use token_keys::{bootstrap_token_keys, token_list, KeyChange};

use super::Kms;
use crate::audit::anchor::Anchor;
use crate::store::{PrincipalChange, Store, Tag};
use anyhow::{anyhow, bail, Result};
use secrecy::SecretString;

use std::sync::Arc;

/// The policy `kms init` gives the default account's administrator.
pub const ADMIN_POLICY_NAME: &str = "KMSFullAccess";
pub const ADMIN_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"KMSFullAccess","Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;

/// The default account's administrator, created by `kms init`.
pub fn admin_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:user/admin")
}

/// IAM's user and role names: 1 to 64 letters, digits and `+=,.@_-`.
fn valid_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Who runs the command, for the audit trail (`KMS_OPERATOR`, else the login name).
fn operator_name() -> String {
    std::env::var("KMS_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into())
}

/// The domain and the store, for an operator's commands.
pub struct Operator {
    kms: Kms,
    store: Arc<dyn Store>,
    anchor: Option<Arc<Anchor>>,
    name: String,
}

impl Operator {
    /// `anchor`: the audit anchor outside the database, when configured; every event the
    /// operator records is noted in it.
    pub fn new(kms: Kms, store: Arc<dyn Store>, anchor: Option<Arc<Anchor>>) -> Operator {
        Operator {
            kms,
            store,
            anchor,
            name: operator_name(),
        }
    }

    pub fn kms(&self) -> &Kms {
        &self.kms
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Record `event` in the trail directly (no change rides on it).
    async fn record(&self, event: crate::store::NewAuditEvent) -> Result<()> {
        Ok(crate::audit::record_direct(
            self.store.as_ref(),
            self.kms.hsm(),
            event,
            self.anchor.as_deref(),
        )
        .await?)
    }

    /// Run `change`, an operator's command `action` on `target`, under the audit trail: its
    /// intent is in the trail before anything changes (a trail that cannot take it leaves the
    /// database as it was); every write transaction of the command carries the command's
    /// event as its change record, so the change and its record are durable together; the
    /// event itself is chained once the command is done.
    pub async fn audited<F>(
        &self,
        action: &str,
        target: &str,
        detail: serde_json::Value,
        change: F,
    ) -> Result<()>
    where
        F: std::future::Future<Output = Result<()>>,
    {
        self.record(crate::audit::admin_intent_event(
            action,
            target,
            &self.name,
            detail.clone(),
        ))
        .await
        .map_err(|e| {
            anyhow!("the audit trail cannot record this command, so nothing was changed: {e}")
        })?;
        let done = crate::audit::admin_event(action, target, &self.name, detail.clone());
        let record = crate::audit::change_record_of(self.kms.hsm(), done.clone())
            .await
            .map_err(|e| {
                anyhow!("the token cannot seal this command's record, so nothing was changed: {e}")
            })?;
        let settles = record.event.event_id;
        let written = record.written.clone();
        crate::store::in_change(Some(Arc::new(record)), async {
            change.await?;
            self.store
                .record_admin_event(&self.name, action, target, detail)
                .await?;
            Ok::<(), anyhow::Error>(())
        })
        .await?;
        let done = crate::audit::with_generations(done, &written);
        Ok(crate::audit::record_direct_settling(
            self.store.as_ref(),
            self.kms.hsm(),
            done,
            Some(settles),
            self.anchor.as_deref(),
        )
        .await?)
    }

    /// A change to a principal, through the domain's guarded, sealed write.
    async fn change(&self, arn: &str, c: PrincipalChange) -> Result<()> {
        Ok(self.kms.change_principal(arn, &c).await?)
    }

    async fn need_account(&self, account_id: &str) -> Result<()> {
        if !self.store.account_exists(account_id).await? {
            bail!("no account {account_id}; create it with `kms admin create-account`");
        }
        Ok(())
    }

    async fn need_user(&self, arn: &str) -> Result<()> {
        if !self.store.principal_exists(arn).await? {
            bail!("no user {arn}; create it with `kms admin create-user`");
        }
        Ok(())
    }

    async fn need_principal(&self, arn: &str) -> Result<()> {
        if !self.store.principal_exists(arn).await? {
            bail!("no user or role {arn}");
        }
        Ok(())
    }

    /// An account (a tenant): 12 digits, as on AWS.
    pub async fn create_account(&self, account_id: &str, name: &str) -> Result<()> {
        if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
            bail!("account ids are 12 digits, not '{account_id}'");
        }
        Ok(self.store.ensure_account(account_id, name).await?)
    }

    /// A user of an existing account; its ARN. `admin`: the default account's administrator
    /// (`kms init`), which cannot be deleted.
    pub async fn create_user(
        &self,
        account_id: &str,
        user_name: &str,
        admin: bool,
    ) -> Result<String> {
        self.need_account(account_id).await?;
        if !valid_name(user_name, 64) {
            bail!("user names are 1 to 64 letters, digits and +=,.@_-");
        }
        let arn = format!("arn:aws:iam::{account_id}:user/{user_name}");
        self.change(
            &arn,
            PrincipalChange::CreateUser {
                account_id: account_id.into(),
                name: user_name.into(),
                admin,
            },
        )
        .await?;
        Ok(arn)
    }

    /// A role of an existing account with the trust policy `trust_policy` (replaced when the
    /// role exists); its ARN.
    pub async fn put_role(
        &self,
        account_id: &str,
        role_name: &str,
        trust_policy: &str,
    ) -> Result<String> {
        self.need_account(account_id).await?;
        if !valid_name(role_name, 64) {
            bail!("role names are 1 to 64 letters, digits and +=,.@_-");
        }
        crate::policy::parse_new(trust_policy, crate::policy::PolicyKind::Trust)
            .map_err(|e| anyhow!("the trust policy is not valid: {e}"))?;
        let arn = format!("arn:aws:iam::{account_id}:role/{role_name}");
        self.change(
            &arn,
            PrincipalChange::PutRole {
                account_id: account_id.into(),
                name: role_name.into(),
                trust_policy: trust_policy.into(),
            },
        )
        .await?;
        Ok(arn)
    }

    /// A new access key's id and secret, drawn from the token's RNG (nothing stored: give it
    /// to a user with [`Operator::import_access_key`]; the secret is shown once).
    pub async fn new_access_key(&self) -> Result<(String, SecretString)> {
        Ok(self.kms.credentials.new_access_key().await?)
    }

    /// An existing access key (id and secret) given to a user.
    pub async fn import_access_key(
        &self,
        user_arn: &str,
        id: &str,
        secret: &SecretString,
    ) -> Result<()> {
        self.need_user(user_arn).await?;
        Ok(self.kms.credentials.import(user_arn, id, secret).await?)
    }

    /// Activate or deactivate an access key (on every node at once).
    pub async fn set_access_key_status(&self, id: &str, active: bool) -> Result<()> {
        Ok(self.kms.credentials.set_status(id, active).await?)
    }

    pub async fn delete_access_key(&self, id: &str) -> Result<()> {
        if !self.store.delete_access_key(id).await? {
            bail!("access key {id} does not exist");
        }
        Ok(())
    }

    /// Attach (or replace) a named identity policy of a user or role.
    pub async fn put_principal_policy(&self, arn: &str, name: &str, document: &str) -> Result<()> {
        self.need_user(arn).await?;
        crate::policy::parse_new(document, crate::policy::PolicyKind::Identity)
            .map_err(|e| anyhow!("the policy document is not valid: {e}"))?;
        if !valid_name(name, 128) {
            bail!("policy names are 1 to 128 letters, digits and +=,.@_-");
        }
        self.change(
            arn,
            PrincipalChange::PutPolicy {
                name: name.into(),
                document: document.into(),
            },
        )
        .await
    }

    pub async fn delete_principal_policy(&self, arn: &str, name: &str) -> Result<()> {
        self.need_user(arn).await?;
        self.change(arn, PrincipalChange::DeletePolicy { name: name.into() })
            .await
    }

    /// Tag a user or role (`aws:PrincipalTag/<key>` in policy conditions).
    pub async fn tag_principal(&self, arn: &str, key: &str, value: &str) -> Result<()> {
        self.need_user(arn).await?;
        if !(1..=128).contains(&key.len()) || value.len() > 256 {
            bail!("tag keys are 1 to 128 characters, values at most 256");
        }
        self.change(
            arn,
            PrincipalChange::PutTag(Tag {
                key: key.into(),
                value: value.into(),
            }),
        )
        .await
    }

    /// Make a user or role the identity of an integrated service (`kms:ViaService`), or no
    /// longer (`None`).
    pub async fn set_integrated_service(&self, arn: &str, service: Option<&str>) -> Result<()> {
        if let Some(svc) = service {
            let ok = (1..=63).contains(&svc.len())
                && svc
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !svc.starts_with('-');
            if !ok {
                bail!("{svc:?} is not a service name (lower-case letters, digits and '-')");
            }
        }
        self.need_principal(arn).await?;
        self.change(
            arn,
            PrincipalChange::SetService(service.map(str::to_string)),
        )
        .await
    }

    /// Delete a user or role. First the policies naming it name its unique id instead (as AWS
    /// shows a deleted principal), so one re-created with the same name inherits nothing; then
    /// it goes, with its access keys, sessions, policies and tags. `protected`: the default
    /// account's administrator, which stays.
    /// Whether `arn` may be deleted: it exists, and is not the account's administrator.
    pub async fn check_deletable(&self, arn: &str, protected: &str) -> Result<()> {
        if arn == protected {
            bail!("the default account's administrator cannot be deleted");
        }
        self.need_principal(arn).await
    }

    /// The ids of the access keys of `arn`.
    pub async fn access_key_ids_of(&self, arn: &str) -> Result<Vec<String>> {
        Ok(self
            .store
            .access_keys_of(arn)
            .await?
            .into_iter()
            .map(|k| k.access_key_id)
            .collect())
    }

    pub async fn delete_principal(&self, arn: &str, protected: &str) -> Result<Forgotten> {
        self.check_deletable(arn, protected).await?;
        let forgotten = self.kms.forget_principal(arn).await?;
        let ended = self
            .end_grants(self.store.grants_to_principal(arn).await?)
            .await?;
        let marks = self.kms.deletion_marks(arn).await?;
        let Some(deleted) = self.store.delete_principal(arn).await? else {
            bail!("no user or role {arn}");
        };
        self.kms.deleted(&marks);
        // A grant created to it after its grants were ended went with it: ended now.
        let late: Vec<_> = deleted
            .into_iter()
            .filter(|g| !ended.contains(&g.grant_id))
            .collect();
        self.end_grants(late).await?;
        Ok(forgotten)
    }
}

impl Operator {
    /// Each grant to a principal being deleted (and, for a role, to its sessions) ends in the
    /// trail, as a retired grant does (`GrantEnded`): its row, saved and put back once a
    /// principal of the same name exists again, is then refused. The rows go with the
    /// principal's; returns the grants ended.
    async fn end_grants(&self, grants: Vec<crate::store::GrantRecord>) -> Result<Vec<String>> {
        let mut ended = Vec::new();
        for g in grants {
            // A grant of a key that no longer exists allows nothing. The key's row as stored
            // names it: a key that fails its own checks still has its grants ended.
            let Some(rec) = self.store.key(g.key_id).await? else {
                continue;
            };
            let details =
                serde_json::json!({ "grantId": g.grant_id, "operation": "DeletePrincipal" });
            self.record(crate::audit::service_event(
                crate::audit::GRANT_ENDED_EVENT,
                &rec.arn(),
                &rec.region,
                details,
            ))
            .await
            .map_err(|e| {
                anyhow!(
                    "the audit trail cannot record the end of grant {}: {e}",
                    g.grant_id
                )
            })?;
            ended.push(g.grant_id);
        }
        Ok(ended)
    }
}

/// The administrator's access key, as `kms init` leaves it.
pub enum AdminKey {
    /// Given in the environment and imported now.
    Imported(String),
    /// Given in the environment and already the administrator's.
    Present(String),
    /// None given; the administrator has this one (its secret was shown when it was made).
    Existing(String),
    /// None given and none existed: made now; the secret is shown once.
    Created(String, SecretString),
}

impl Operator {
    /// `kms init`: the default account, its administrator with the full-access identity policy
    /// (created or verified through the same guarded change as every `kms admin` command, so
    /// an administrator row that fails its check stops here instead of being sealed as found),
    /// and the administrator's access key: `given` (id and secret) when set, else the one it
    /// has, else a new one.
    pub async fn bootstrap_admin(
        &self,
        account_id: &str,
        given: Option<(String, SecretString)>,
    ) -> Result<AdminKey> {
        self.create_account(account_id, "default").await?;
        let admin = self.create_user(account_id, "admin", true).await?;
        // The default key policy trusts the account, which delegates to identity policies: the
        // administrator gets all of KMS through one (replace it with `kms admin` to narrow it).
        if !self
            .store
            .identity_policies(&admin)
            .await?
            .iter()
            .any(|(n, _)| n == ADMIN_POLICY_NAME)
        {
            self.change(
                &admin,
                PrincipalChange::PutPolicy {
                    name: ADMIN_POLICY_NAME.into(),
                    document: ADMIN_POLICY.into(),
                },
            )
            .await?;
        }
        let existing = self.store.access_keys_of(&admin).await?;
        Ok(match given {
            Some((id, secret)) => match self.store.access_key(&id).await? {
                Some(found) if found.principal_arn != admin => {
                    bail!("access key {id} already belongs to {}", found.principal_arn)
                }
                Some(_) => AdminKey::Present(id),
                None => {
                    self.admin_key_created(&admin, &id, &secret, true)
                        .await
                        .map_err(|e| anyhow!("cannot import the administrator's key: {e}"))?;
                    AdminKey::Imported(id)
                }
            },
            None if !existing.is_empty() => AdminKey::Existing(existing[0].access_key_id.clone()),
            None => {
                let (id, secret) = async {
                    let (id, secret) = self.new_access_key().await?;
                    self.admin_key_created(&admin, &id, &secret, false).await?;
                    Ok::<_, anyhow::Error>((id, secret))
                }
                .await
                .map_err(|e| anyhow!("cannot create the administrator's key: {e}"))?;
                AdminKey::Created(id, secret)
            }
        })
    }

    /// The administrator's access key `id` stored, recorded as `kms admin create-access-key`
    /// records a key (a `CreateAccessKey` naming it): a key is refused once the trail records
    /// its principal deleted after that event.
    async fn admin_key_created(
        &self,
        admin: &str,
        id: &str,
        secret: &SecretString,
        imported: bool,
    ) -> Result<()> {
        let detail = serde_json::json!({ "imported": imported, "access_key_id": id });
        self.audited("CreateAccessKey", admin, detail, async {
            Ok(self.kms.credentials.import(admin, id, secret).await?)
        })
        .await
    }
}
