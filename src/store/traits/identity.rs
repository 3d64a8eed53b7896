//! [`IdentityStore`]: the repository of accounts, principals, access keys, sessions and
//! identity policies (its one implementation for both stores is `store/identity.rs`).

use crate::store::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// The sequence number of the trail's latest `DeactivateAccessKey` or `DeleteAccessKey`
    /// of the key (by the events' hashed bodies).
    async fn access_key_ended_per_trail(
        &self,
        access_key_id: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// The trail's `DeactivateAccessKey` and `DeleteAccessKey` events of the key before
    /// sequence number `before`, newest first, at most `limit` (by their hashed bodies):
    /// sequence number, body and seal.
    async fn access_key_ends_per_trail(
        &self,
        access_key_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError>;
    /// The trail's `DeletePrincipal` events of `arn` before sequence number `before`, newest
    /// first, at most `limit` (by their hashed bodies): sequence number, body and seal.
    async fn principal_deletions_per_trail(
        &self,
        arn: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError>;
    /// The trail's `ActivateAccessKey` and `CreateAccessKey` events of the key after sequence
    /// number `after` (by their hashed bodies): name and sequence number, newest first, at
    /// most `limit`.
    async fn access_key_permits_after(
        &self,
        access_key_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// The sequence number of the trail's latest `DeletePrincipal` of `arn`, by the event's
    /// hashed body.
    async fn principal_deleted_per_trail(&self, arn: &str) -> Result<Option<i64>, StoreError>;
    /// The trail's events that end sessions of the role `arn` (`CreateRole`, which replaces
    /// its trust policy, and `DeletePrincipal`) before sequence number `before`, newest first,
    /// at most `limit`, by the events' hashed bodies: sequence number, body and seal.
    async fn principal_changes_per_trail(
        &self,
        arn: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError>;
    /// The sequence number of the trail's latest `CreateAccessKey` naming `access_key_id`, by
    /// the event's hashed body.
    async fn access_key_created_per_trail(
        &self,
        access_key_id: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// A principal's identity policies, tags, service registration, trust policy and their
    /// MAC, read in one transaction; `None` if there is no such principal.
    async fn principal_authz(&self, arn: &str) -> Result<Option<PrincipalAuthz>, StoreError>;
    /// Roles (of every account) whose trust policy contains `text`: their ARNs.
    async fn roles_whose_trust_contains(&self, text: &str) -> Result<Vec<String>, StoreError>;
    /// Seal a principal stored without a MAC (`kms admin seal`); false if it has one now.
    async fn set_principal_mac(&self, arn: &str, mac: &[u8]) -> Result<bool, StoreError>;
    /// Apply `change` and store `mac` in one transaction, provided the principal's stored MAC
    /// is still `expected` (`None`: the principal must not exist yet). `Conflict` (constraint
    /// `principal_mac`) when it is not: the principal changed since it was verified.
    async fn change_principal(
        &self,
        arn: &str,
        change: &PrincipalChange,
        expected: Option<&[u8]>,
        mac: &[u8],
    ) -> Result<(), StoreError>;
    /// Principals that carry no MAC yet (stored before principals were sealed).
    async fn principals_without_mac(&self) -> Result<Vec<String>, StoreError>;
    /// Create a role with its trust policy, or replace the trust policy of an existing one.
    async fn put_role(
        &self,
        arn: &str,
        account_id: &str,
        name: &str,
        trust_policy: &str,
    ) -> Result<(), StoreError>;
    /// `(account, trust policy)` of a role.
    async fn role(&self, arn: &str) -> Result<Option<(String, String)>, StoreError>;
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError>;
    /// Forget sessions that expired before `before`; returns how many.
    async fn purge_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn session(&self, access_key_id: &str) -> Result<Option<SessionRecord>, StoreError>;
    async fn ensure_account(&self, account_id: &str, name: &str) -> Result<(), StoreError>;
    async fn ensure_principal(
        &self,
        arn: &str,
        account_id: &str,
        kind: &str,
        name: &str,
        admin: bool,
    ) -> Result<(), StoreError>;
    async fn put_access_key(&self, rec: &AccessKeyRecord) -> Result<(), StoreError>;
    async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError>;
    async fn access_keys_of(&self, principal_arn: &str)
        -> Result<Vec<AccessKeyRecord>, StoreError>;
    async fn account_exists(&self, account_id: &str) -> Result<bool, StoreError>;
    /// Set an access key's status and its new row MAC, over the row whose MAC is `old_mac`;
    /// false if there is no such row.
    async fn set_access_key_status(
        &self,
        access_key_id: &str,
        status: &str,
        old_mac: &[u8],
        mac: &[u8],
    ) -> Result<bool, StoreError>;
    async fn principal_exists(&self, arn: &str) -> Result<bool, StoreError>;
    /// The users and roles of an account: their ARNs, in order, at most `limit`.
    async fn principals_of(&self, account_id: &str, limit: i64) -> Result<Vec<String>, StoreError>;
    /// Attach (or replace) a named identity policy.
    async fn put_identity_policy(
        &self,
        principal_arn: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError>;
    async fn delete_identity_policy(
        &self,
        principal_arn: &str,
        name: &str,
    ) -> Result<bool, StoreError>;
    /// `(name, document)` of every policy attached to a principal.
    async fn identity_policies(
        &self,
        principal_arn: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    async fn principal_tags(&self, principal_arn: &str) -> Result<Vec<Tag>, StoreError>;
    /// The integrated service a principal is registered as (`kms:ViaService`), if any.
    async fn principal_service(&self, principal_arn: &str) -> Result<Option<String>, StoreError>;
    /// Register (or with `None`, unregister) a principal as an integrated service; false if
    /// there is no such principal.
    async fn set_principal_service(
        &self,
        principal_arn: &str,
        service: Option<&str>,
    ) -> Result<bool, StoreError>;
    async fn put_principal_tag(&self, principal_arn: &str, tag: &Tag) -> Result<(), StoreError>;
    /// Delete a user or role with its keys, sessions, policies and the grants naming it (or its
    /// sessions) as grantee; the grants deleted, or `None` (nothing deleted) if it is absent.
    async fn delete_principal(&self, arn: &str) -> Result<Option<Vec<GrantRecord>>, StoreError>;
    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, StoreError>;
    /// Record an identity change for the audit trail.
    async fn record_admin_event(
        &self,
        operator: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError>;
}
