//! [`KeyStore`](super::KeyStore)'s aliases, written once for both stores: create (under the
//! alias quota), repoint, delete, read, list and seal. Separate from `keys.rs` because aliases
//! are rows of their own, keyed by account, region and name; `key_store!` gathers these
//! methods into its `impl`.

/// The alias methods of `impl KeyStore`, after the methods `key_store!` gathered so far
/// (`methods`); the last of the chain, it writes the one `impl KeyStore for $store`.
macro_rules! key_store_aliases {
    ($store:ty; $($methods:tt)*) => {
        #[async_trait]
        impl KeyStore for $store {
            $($methods)*
            async fn aliases_without_mac(&self) -> Result<Vec<AliasRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT * FROM aliases WHERE mac IS NULL ORDER BY account_id, region, alias_name",
                )
                .all(&self.pool).await
            }

            async fn set_alias_mac(&self, a: &AliasRecord, mac: &[u8]) -> Result<bool, StoreError> {
                let n = sqlx::query(
                    "UPDATE aliases SET mac = $5 WHERE account_id = $1 AND region = $2 AND alias_name = $3 AND key_id = $4 AND mac IS NULL",
                )
                .bind(&a.account_id)
                .bind(&a.region)
                .bind(&a.alias_name)
                .bind(a.key_id)
                .bind(mac)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn create_alias(
                &self,
                a: &AliasRecord,
                max_aliases: i64,
                per_key: i64,
                set: &AliasSetSeal,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                // Every alias write of the account and region takes this lock first, so the
                // counts below stay true until the insert commits.
                aliases_lock(&mut tx, &a.account_id, &a.region).await?;
                lock_key_rows(&mut tx, &[set.key_id]).await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name NOT LIKE 'alias/aws/%'",
                )
                .bind(&a.account_id)
                .bind(&a.region)
                .one(&mut *tx).await?;
                if n >= max_aliases {
                    return Err(quota_exceeded());
                }
                key_alias_room(&mut tx, a, per_key).await?;
                insert_alias(&mut *tx, a).await?;
                set_alias_set(&mut tx, set).await?;
                self.commit(tx).await
            }

            async fn update_alias(
                &self,
                a: &AliasRecord,
                from_key: Uuid,
                per_key: i64,
                sets: &[AliasSetSeal],
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                aliases_lock(&mut tx, &a.account_id, &a.region).await?;
                lock_key_rows(&mut tx, &[a.key_id, from_key]).await?;
                if a.key_id != from_key {
                    key_alias_room(&mut tx, a, per_key).await?;
                }
                let r = sqlx::query(
                    "UPDATE aliases SET key_id = $4, updated_at = $5, mac = $6 \
                     WHERE account_id = $1 AND region = $2 AND alias_name = $3 AND key_id = $7",
                )
                .bind(&a.account_id)
                .bind(&a.region)
                .bind(&a.alias_name)
                .bind(a.key_id)
                .bind(a.updated_at)
                .bind(&a.mac)
                .bind(from_key)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    // Nothing changed: rolled back, with the change's record.
                    return Ok(false);
                }
                for set in sets {
                    set_alias_set(&mut tx, set).await?;
                }
                self.commit(tx).await?;
                Ok(true)
            }

            async fn delete_alias(
                &self,
                account_id: &str,
                region: &str,
                name: &str,
                set: &AliasSetSeal,
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                aliases_lock(&mut tx, account_id, region).await?;
                lock_key_rows(&mut tx, &[set.key_id]).await?;
                let r = sqlx::query(
                    "DELETE FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3 AND key_id = $4",
                )
                .bind(account_id)
                .bind(region)
                .bind(name)
                .bind(set.key_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if r.rows_affected() == 0 {
                    return Ok(false);
                }
                set_alias_set(&mut tx, set).await?;
                self.commit(tx).await?;
                Ok(true)
            }

            async fn alias(
                &self,
                account_id: &str,
                region: &str,
                name: &str,
            ) -> Result<Option<AliasRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT * FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3",
                )
                .bind(account_id)
                .bind(region)
                .bind(name)
                .maybe(&self.pool).await
            }

            async fn list_aliases(
                &self,
                account_id: &str,
                region: &str,
                key_id: Option<Uuid>,
                after: &str,
                limit: i64,
            ) -> Result<Vec<AliasRecord>, StoreError> {
                // Two statements, not `($3 IS NULL OR a.key_id = $3)`: a generic plan of that
                // one reads every alias of the account to find one key's (see `list_keys`).
                // In byte order, as the listing merges and pages them (not the database's
                // collation, which may order `alias/Prod` after `alias/dev`).
                let all = format!(
                    "SELECT a.*, k.mrk_id FROM aliases a JOIN keys k USING (key_id) \
                     WHERE a.account_id = $1 AND a.region = $2 AND a.alias_name{BYTE_ORDER} > $3"
                );
                let order = format!("ORDER BY a.alias_name{BYTE_ORDER} LIMIT $4");
                match key_id {
                    Some(key_id) => {
                        sqlx::query_as(&format!("{all} AND a.key_id = $5 {order}"))
                            .bind(account_id)
                            .bind(region)
                            .bind(after)
                            .bind(limit)
                            .bind(key_id)
                            .all(&self.pool).await
                    }
                    None => {
                        sqlx::query_as(&format!("{all} {order}"))
                            .bind(account_id)
                            .bind(region)
                            .bind(after)
                            .bind(limit)
                            .all(&self.pool).await
                    }
                }
            }
        }
    };
}

pub(crate) use key_store_aliases;
