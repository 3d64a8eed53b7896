//! [`GrantStore`](super::GrantStore), written once for both stores: one SQL text per statement
//! (`$N` placeholders, which SQLite accepts too), one method body.
//!
//! What really differs between the dialects is named in each store's module and looked up there
//! when the macro expands (the small per-dialect surface, as `../shared/DESIGN.md` asks):
//! - `begin_write` / `commit` on the store: a write transaction (SQLite takes the write lock at
//!   `BEGIN IMMEDIATE`) and its commit (Postgres waits at most the commit timeout);
//! - `grants_lock(&mut tx, key_id)`: serialise every node's writers of one key's grants
//!   (a Postgres advisory lock; nothing on SQLite, whose one writer is already alone);
//! - `FIRST_KEY_ARN`: the SQL for an audit event's first key ARN; `ENDED_GRANT_ID`: for the
//!   grant a `GrantEnded` event names;
//! - `map_err`, `write_on`: errors and writes. Rows are read with `query_as`; operations are a
//!   [`TextList`](crate::store::TextList) and constraints `Json` (Postgres `text[]` and
//!   `jsonb`; SQLite JSON text).
//!
//! The store contract suite (`contract.rs`) runs every method on both.

/// The grants to a user or role (`$1`) and, for a role, to its sessions (`$2`, the `LIKE`
/// pattern of [`sessions_of`]).
pub(crate) const GRANTS_TO_PRINCIPAL: &str =
    "(grantee_principal = $1 OR grantee_principal LIKE $2 ESCAPE '\\')";

/// The `LIKE` pattern of a role's sessions' ARNs (`arn:aws:sts::<account>:assumed-role/<name>/%`,
/// the name's wildcards escaped); a user's matches nothing.
pub(crate) fn sessions_of(arn: &str) -> String {
    arn.split_once(":role/")
        .map(|(head, name)| {
            let name = name
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!(
                "{}:assumed-role/{name}/%",
                head.replacen("arn:aws:iam::", "arn:aws:sts::", 1)
            )
        })
        .unwrap_or_default()
}

/// `impl GrantStore for $store`, from the names above in the invoking module.
macro_rules! grant_store {
    ($store:ty) => {
        #[async_trait]
        impl GrantStore for $store {
            async fn insert_grant(
                &self,
                g: &GrantRecord,
                max_grants: i64,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                grants_lock(&mut tx, g.key_id).await?;
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM grants WHERE key_id = $1")
                    .bind(g.key_id)
                    .one(&mut *tx).await?;
                if n >= max_grants {
                    return Err(quota_exceeded());
                }
                sqlx::query(
                    "INSERT INTO grants (grant_id, key_id, name, grantee_principal, retiring_principal, \
                     operations, constraints, issuing_account, created_at, mac) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&g.grant_id)
                .bind(g.key_id)
                .bind(&g.name)
                .bind(&g.grantee_principal)
                .bind(&g.retiring_principal)
                .bind(TextList(g.operations.clone()))
                .bind(g.constraints.clone().map(sqlx::types::Json))
                .bind(&g.issuing_account)
                .bind(g.created_at)
                .bind(&g.mac)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                self.commit(tx).await
            }

            async fn ended_grants_per_trail(&self, arn: &str) -> Result<Vec<String>, StoreError> {
                let q = format!(
                    "SELECT body FROM audit_events WHERE event_name = 'GrantEnded' AND {FIRST_KEY_ARN} = $1"
                );
                sqlx::query_scalar(&q)
                    .bind(arn)
                    .all(&self.pool).await
            }

            async fn grants_ended_per_trail(
                &self,
                arn: &str,
                grant_ids: &[String],
            ) -> Result<Vec<String>, StoreError> {
                if grant_ids.is_empty() {
                    return Ok(Vec::new());
                }
                // One lookup by the index of ended grant ids per id asked of (a subquery with a
                // LIMIT, which the planner cannot turn into a join that reads every end of the
                // key). The event's name and key are read from its hashed body, not from the
                // columns beside it, which a database writer renames without breaking the chain.
                use super::identity::DECIDED;
                sqlx::query_scalar(&format!(
                    "SELECT DISTINCT g.value FROM {} WHERE (SELECT 1 FROM audit_events \
                     WHERE {BODY_EVENT_NAME} {DECIDED} AND {BODY_EVENT_NAME} = 'GrantEnded' \
                     AND {} = g.value AND {} = $1 LIMIT 1) IS NOT NULL",
                    text_list_rows("$2"),
                    decision_key(),
                    when_named("= 'GrantEnded'", BODY_FIRST_RESOURCE_ARN)
                ))
                .bind(arn)
                .bind(TextList(grant_ids.to_vec()))
                .all(&self.pool).await
            }

            async fn grants_of_key(&self, key_id: Uuid) -> Result<Vec<GrantRecord>, StoreError> {
                let q = format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE key_id = $1 ORDER BY created_at, grant_id"
                );
                sqlx::query_as(&q)
                    .bind(key_id)
                    .all(&self.pool).await
            }

            async fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError> {
                let q = format!("SELECT {GRANT_COLUMNS} FROM grants WHERE grant_id = $1");
                sqlx::query_as(&q)
                    .bind(grant_id)
                    .maybe(&self.pool).await
            }

            async fn grants_retirable_by(
                &self,
                principal: &str,
                after: Option<(DateTime<Utc>, &str)>,
                limit: i64,
            ) -> Result<Vec<GrantRecord>, StoreError> {
                // In creation order, after the position `after` (the index by retiring
                // principal and creation: a page reads a page). Two statements, not
                // `$2 IS NULL OR …`: a generic plan of that one reads from the first grant.
                match after {
                    None => {
                        sqlx::query_as(&format!(
                            "SELECT {GRANT_COLUMNS} FROM grants WHERE retiring_principal = $1 \
                             ORDER BY created_at, grant_id LIMIT $2"
                        ))
                        .bind(principal)
                        .bind(limit)
                        .all(&self.pool).await
                    }
                    Some((at, id)) => {
                        sqlx::query_as(&format!(
                            "SELECT {GRANT_COLUMNS} FROM grants WHERE retiring_principal = $1 \
                             AND (created_at, grant_id) > ($2, $3) \
                             ORDER BY created_at, grant_id LIMIT $4"
                        ))
                        .bind(principal)
                        .bind(at)
                        .bind(id)
                        .bind(limit)
                        .all(&self.pool).await
                    }
                }
            }

            async fn grants_to_principal(&self, arn: &str) -> Result<Vec<GrantRecord>, StoreError> {
                let q = format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE {} ORDER BY created_at, grant_id",
                    crate::store::GRANTS_TO_PRINCIPAL
                );
                sqlx::query_as(&q)
                    .bind(arn)
                    .bind(crate::store::sessions_of(arn))
                    .all(&self.pool).await
            }

            async fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM grants WHERE grant_id = $1")
                    .bind(grant_id)
                    .write_on(self)
                    .await?;
                Ok(r.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use grant_store;

/// The columns every grant read selects, in both stores.
pub(crate) const GRANT_COLUMNS: &str =
    "grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, \
     issuing_account, created_at, mac";
