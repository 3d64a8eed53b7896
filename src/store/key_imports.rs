//! [`KeyStore`](super::KeyStore)'s imported key material, written once for both stores: import
//! tokens (`GetParametersForImport`), import records, importing, re-importing and deleting
//! imported material, and the expiry job's lookups. Separate from `keys.rs` because it is the
//! `EXTERNAL` origin's own lifecycle; `key_store!` gathers these methods into its `impl`.

/// The import methods of `impl KeyStore`, after the methods `key_store!` gathered so far
/// (`methods`); hands them all to `key_store_rotations!` (`key_rotations.rs`).
macro_rules! key_store_imports {
    ($store:ty; $($methods:tt)*) => {
        $crate::store::key_rotations::key_store_rotations! { $store;
            $($methods)*
            async fn count_import_tokens_since(
                &self,
                account_id: &str,
                region: &str,
                valid_to_after: DateTime<Utc>,
            ) -> Result<i64, StoreError> {
                sqlx::query_scalar(
                    "SELECT count(*) FROM import_tokens t JOIN keys k ON k.key_id = t.key_id \
                     WHERE k.account_id = $1 AND k.region = $2 AND t.valid_to > $3",
                )
                .bind(account_id)
                .bind(region)
                .bind(valid_to_after)
                .one(&self.pool).await
            }

            async fn insert_import_token(&self, t: &ImportTokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO import_tokens (token_id, key_id, wrapping_algorithm, wrapping_key_spec, wrapped_private, root_version, valid_to, mac) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
                )
                .bind(t.token_id)
                .bind(t.key_id)
                .bind(&t.wrapping_algorithm)
                .bind(&t.wrapping_key_spec)
                .bind(&t.wrapped_private)
                .bind(t.root_version)
                .bind(t.valid_to)
                .bind(&t.mac)
                .write_on(self)
                .await?;
                // Expired tokens are useless; keep the table small.
                sqlx::query("DELETE FROM import_tokens WHERE valid_to < $1")
                    .bind(Utc::now() - chrono::TimeDelta::days(1))
                    .write_on(self)
                    .await?;
                Ok(())
            }

            async fn import_token(&self, token_id: Uuid) -> Result<Option<ImportTokenRecord>, StoreError> {
                sqlx::query_as("SELECT * FROM import_tokens WHERE token_id = $1")
                    .bind(token_id)
                    .maybe(&self.pool).await
            }

            async fn key_import(&self, key_id: Uuid) -> Result<Option<KeyImportRecord>, StoreError> {
                sqlx::query_as("SELECT * FROM key_imports WHERE key_id = $1")
                    .bind(key_id)
                    .maybe(&self.pool).await
            }

            async fn import_material(
                &self,
                m: &MaterialRecord,
                imp: &KeyImportRecord,
                state_mac: &[u8],
                rotation: &RotationUpdate,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE keys SET key_state = 'Enabled', state_mac = $2 \
                     WHERE key_id = $1 AND key_state = 'PendingImport'",
                )
                .bind(m.key_id)
                .bind(state_mac)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict {
                        constraint: "key_not_pending_import".into(),
                    });
                }
                apply_rotation(&mut tx, rotation, false).await?;
                insert_material(&mut tx, m, None).await?;
                // The same material again: its AES-GCM invocations so far still count.
                sqlx::query(
                    "UPDATE key_materials SET invocations_reserved = \
                     (SELECT invocations FROM key_imports WHERE key_id = $1) \
                     WHERE key_id = $1 AND EXISTS (SELECT 1 FROM key_imports WHERE key_id = $1)",
                )
                .bind(m.key_id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                sqlx::query(
                    "INSERT INTO key_imports (key_id, material_check, expiration_model, valid_to, mac) VALUES ($1,$2,$3,$4,$5) \
                     ON CONFLICT (key_id) DO UPDATE SET material_check = excluded.material_check, \
                     expiration_model = excluded.expiration_model, valid_to = excluded.valid_to, mac = excluded.mac",
                )
                .bind(imp.key_id)
                .bind(&imp.material_check)
                .bind(&imp.expiration_model)
                .bind(imp.valid_to)
                .bind(&imp.mac)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                self.commit(tx).await
            }

            async fn update_import_expiration(&self, imp: &KeyImportRecord) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE key_imports SET expiration_model = $2, valid_to = $3, mac = $4 \
                     WHERE key_id = $1 AND material_check = $5 \
                       AND EXISTS (SELECT 1 FROM keys WHERE keys.key_id = $1 AND keys.key_state = 'Enabled')",
                )
                .bind(imp.key_id)
                .bind(&imp.expiration_model)
                .bind(imp.valid_to)
                .bind(&imp.mac)
                .bind(&imp.material_check)
                .write_on(self)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_imported_material(
                &self,
                imp: &KeyImportRecord,
                from_state: KeyState,
                to_state: KeyState,
                state_mac: &[u8],
                expired_at: Option<DateTime<Utc>>,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(&format!("UPDATE key_imports SET expiration_model = NULL, valid_to = NULL, mac = $2, \
                     invocations = {GREATEST}(invocations, \
                         (SELECT COALESCE(max(invocations_reserved), 0) FROM key_materials WHERE key_id = $1)) \
                     WHERE key_id = $1 AND ($3 IS NULL OR valid_to <= $3)"))
                .bind(imp.key_id)
                .bind(&imp.mac)
                .bind(expired_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict {
                        constraint: "import_not_expired".into(),
                    });
                }
                sqlx::query("DELETE FROM key_materials WHERE key_id = $1")
                    .bind(imp.key_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                let moved = sqlx::query(
                    "UPDATE keys SET key_state = $3, state_mac = $2 WHERE key_id = $1 AND key_state = $4",
                )
                .bind(imp.key_id)
                .bind(state_mac)
                .bind(to_state)
                .bind(from_state)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if moved.rows_affected() != 1 {
                    return Err(StoreError::Conflict {
                        constraint: "key_state_changed".into(),
                    });
                }
                self.commit(tx).await
            }

            async fn import_key_ids(&self) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query("SELECT key_id FROM key_imports ORDER BY key_id")
                    .all(&self.pool).await?;
                rows.iter().map(|r| cell(r, "key_id")).collect()
            }

            async fn expired_imports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query(
                    "SELECT i.key_id FROM key_imports i JOIN keys k USING (key_id) \
                     WHERE i.valid_to <= $1 AND k.key_state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingReplicaDeletion') ORDER BY i.valid_to LIMIT 100",
                )
                .bind(now)
                .all(&self.pool).await?;
                key_ids(&rows)
            }
        }
    };
}

pub(crate) use key_store_imports;
