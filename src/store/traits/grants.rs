//! [`GrantStore`]: the repository of grants (its one implementation for both stores is
//! `store/grants.rs`).

use crate::store::*;
use async_trait::async_trait;
use uuid::Uuid;

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Insert a grant unless its key has `max_grants` already (counted in the same
    /// transaction, serialised across nodes): `Conflict` ([`QUOTA_EXCEEDED`]).
    async fn insert_grant(&self, g: &GrantRecord, max_grants: i64) -> Result<(), StoreError>;
    async fn grants_of_key(&self, key_id: Uuid) -> Result<Vec<GrantRecord>, StoreError>;
    /// The bodies of the trail's `GrantEnded` events of the key `arn` (grants retired or
    /// revoked): all of them, for restoring a backup.
    async fn ended_grants_per_trail(&self, arn: &str) -> Result<Vec<String>, StoreError>;
    /// Which of `grant_ids` the trail holds a `GrantEnded` event of the key `arn` for: one
    /// lookup by id per grant asked of, whatever number of the key's grants have ended.
    async fn grants_ended_per_trail(
        &self,
        arn: &str,
        grant_ids: &[String],
    ) -> Result<Vec<String>, StoreError>;
    async fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// The grants `principal` may retire, in creation order (then grant id): at most `limit`,
    /// after the position `after` (a creation time and grant id).
    async fn grants_retirable_by(
        &self,
        principal: &str,
        after: Option<(DateTime<Utc>, &str)>,
        limit: i64,
    ) -> Result<Vec<GrantRecord>, StoreError>;
    /// The grants to a user or role `arn`, and for a role to its sessions.
    async fn grants_to_principal(&self, arn: &str) -> Result<Vec<GrantRecord>, StoreError>;
    /// Delete a grant; false if it did not exist.
    async fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError>;
}
