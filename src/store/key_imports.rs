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

            async fn key_imports(&self, key_id: Uuid) -> Result<Vec<KeyImportRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT key_id, 1 AS version, material_check, expiration_model, valid_to, description, \
                            (1 = 0) AS pending, NULL AS rotated_at, mac \
                     FROM key_imports WHERE key_id = $1 \
                     UNION ALL \
                     SELECT key_id, version, material_check, expiration_model, valid_to, description, \
                            pending, rotated_at, mac \
                     FROM key_material_imports WHERE key_id = $1 \
                     ORDER BY version",
                )
                .bind(key_id)
                .all(&self.pool).await
            }

            async fn import_material(
                &self,
                m: &MaterialRecord,
                imp: &KeyImportRecord,
                from: KeyState,
                to: Option<(KeyState, &[u8])>,
                rotation: Option<&RotationUpdate>,
            ) -> Result<(), StoreError> {
                let (table, at) = $crate::store::key_imports::import_record_at(imp.version);
                let mut tx = self.begin_write().await?;
                let (to_state, state_mac) = match to {
                    Some((s, mac)) => (s, Some(mac)),
                    None => (from, None),
                };
                let done = sqlx::query(
                    "UPDATE keys SET key_state = $2, state_mac = COALESCE($3, state_mac) \
                     WHERE key_id = $1 AND key_state = $4",
                )
                .bind(m.key_id)
                .bind(to_state)
                .bind(state_mac)
                .bind(from)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict {
                        constraint: "key_state_changed".into(),
                    });
                }
                if let Some(r) = rotation {
                    apply_rotation(&mut tx, r, false).await?;
                }
                insert_material(&mut tx, m, None).await?;
                // The same material again: its AES-GCM invocations so far still count, and a
                // material that became current by a rotation keeps its rotation's date.
                sqlx::query(&format!(
                    "UPDATE key_materials SET \
                       invocations_reserved = COALESCE((SELECT invocations FROM {table} WHERE {at}), 0), \
                       rotation_type = CASE WHEN $3 IS NULL THEN NULL ELSE 'ON_DEMAND' END, \
                       created_at = COALESCE($3, created_at) \
                     WHERE key_id = $1 AND version = $2"
                ))
                .bind(m.key_id)
                .bind(m.version)
                .bind(imp.rotated_at)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
                let upsert = if imp.version == 1 {
                    sqlx::query(
                        "INSERT INTO key_imports (key_id, material_check, expiration_model, valid_to, description, mac) \
                         VALUES ($1,$2,$3,$4,$5,$6) \
                         ON CONFLICT (key_id) DO UPDATE SET material_check = excluded.material_check, \
                         expiration_model = excluded.expiration_model, valid_to = excluded.valid_to, \
                         description = excluded.description, mac = excluded.mac",
                    )
                    .bind(imp.key_id)
                } else {
                    sqlx::query(
                        "INSERT INTO key_material_imports (key_id, version, material_check, expiration_model, valid_to, description, pending, rotated_at, mac) \
                         VALUES ($1,$7,$2,$3,$4,$5,$8,$9,$6) \
                         ON CONFLICT (key_id, version) DO UPDATE SET material_check = excluded.material_check, \
                         expiration_model = excluded.expiration_model, valid_to = excluded.valid_to, \
                         description = excluded.description, pending = excluded.pending, \
                         rotated_at = excluded.rotated_at, mac = excluded.mac",
                    )
                    .bind(imp.key_id)
                };
                let upsert = upsert
                    .bind(&imp.material_check)
                    .bind(&imp.expiration_model)
                    .bind(imp.valid_to)
                    .bind(&imp.description)
                    .bind(&imp.mac);
                let upsert = if imp.version == 1 {
                    upsert
                } else {
                    upsert.bind(imp.version).bind(imp.pending).bind(imp.rotated_at)
                };
                upsert.execute(&mut *tx).await.map_err(map_err)?;
                self.commit(tx).await
            }

            async fn update_import_expiration(&self, imp: &KeyImportRecord) -> Result<bool, StoreError> {
                let (table, at) = $crate::store::key_imports::import_record_at(imp.version);
                let done = sqlx::query(&format!(
                    "UPDATE {table} SET expiration_model = $3, valid_to = $4, description = $5, mac = $6 \
                     WHERE {at} AND material_check = $7 \
                       AND EXISTS (SELECT 1 FROM key_materials m WHERE m.key_id = $1 AND m.version = $2)"
                ))
                .bind(imp.key_id)
                .bind(imp.version)
                .bind(&imp.expiration_model)
                .bind(imp.valid_to)
                .bind(&imp.description)
                .bind(&imp.mac)
                .bind(&imp.material_check)
                .write_on(self)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn delete_imported_material(
                &self,
                imp: &KeyImportRecord,
                discard: bool,
                state: Option<(KeyState, KeyState, &[u8])>,
                expired_at: Option<DateTime<Utc>>,
            ) -> Result<(), StoreError> {
                let (table, at) = $crate::store::key_imports::import_record_at(imp.version);
                let mut tx = self.begin_write().await?;
                let done = if discard {
                    // Only a pending material (never a key's first) is discarded.
                    sqlx::query(
                        "DELETE FROM key_material_imports WHERE key_id = $1 AND version = $2 AND pending \
                         AND ($3 IS NULL OR valid_to <= $3)",
                    )
                    .bind(imp.key_id)
                    .bind(imp.version)
                    .bind(expired_at)
                    .execute(&mut *tx)
                    .await
                } else {
                    sqlx::query(&format!("UPDATE {table} SET expiration_model = NULL, valid_to = NULL, mac = $3, \
                         invocations = {GREATEST}(invocations, \
                             (SELECT COALESCE(max(invocations_reserved), 0) FROM key_materials WHERE key_id = $1 AND version = $2)) \
                         WHERE {at} AND ($4 IS NULL OR valid_to <= $4)"))
                    .bind(imp.key_id)
                    .bind(imp.version)
                    .bind(&imp.mac)
                    .bind(expired_at)
                    .execute(&mut *tx)
                    .await
                }
                .map_err(map_err)?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict {
                        constraint: "import_changed".into(),
                    });
                }
                sqlx::query("DELETE FROM key_materials WHERE key_id = $1 AND version = $2")
                    .bind(imp.key_id)
                    .bind(imp.version)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                if let Some((from_state, to_state, state_mac)) = state {
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
                }
                self.commit(tx).await
            }

            async fn rotate_to_imported(&self, r: &ImportedRotation) -> Result<(), StoreError> {
                let conflict = || StoreError::Conflict {
                    constraint: "import_changed".into(),
                };
                let mut tx = self.begin_write().await?;
                if let Some(mrk) = r.mrk {
                    let ids: Vec<Uuid> = r.rotations.iter().map(|u| u.key_id).collect();
                    lock_related(&mut tx, mrk, &ids).await?;
                }
                for (imp, expected_mac) in &r.records {
                    let done = sqlx::query(
                        "UPDATE key_material_imports SET pending = $3, rotated_at = $4, mac = $5 \
                         WHERE key_id = $1 AND version = $2 AND pending AND mac = $6",
                    )
                    .bind(imp.key_id)
                    .bind(imp.version)
                    .bind(imp.pending)
                    .bind(imp.rotated_at)
                    .bind(&imp.mac)
                    .bind(expected_mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    let marked = sqlx::query(
                        "UPDATE key_materials SET rotation_type = 'ON_DEMAND', created_at = $3 \
                         WHERE key_id = $1 AND version = $2",
                    )
                    .bind(imp.key_id)
                    .bind(imp.version)
                    .bind(r.at)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    if done.rows_affected() != 1 || marked.rows_affected() != 1 {
                        return Err(conflict());
                    }
                }
                for (key_id, from, to, mac) in &r.states {
                    let moved = sqlx::query(
                        "UPDATE keys SET key_state = $3, state_mac = $2 WHERE key_id = $1 AND key_state = $4",
                    )
                    .bind(key_id)
                    .bind(mac)
                    .bind(to)
                    .bind(from)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                    if moved.rows_affected() != 1 {
                        return Err(conflict());
                    }
                }
                for u in &r.rotations {
                    apply_rotation(&mut tx, u, false).await?;
                }
                self.commit(tx).await
            }

            async fn import_rows(&self) -> Result<Vec<(Uuid, i32)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT key_id, 1 AS version FROM key_imports \
                     UNION ALL SELECT key_id, version FROM key_material_imports \
                     ORDER BY key_id, version",
                )
                .all(&self.pool).await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "key_id")?, cell(r, "version")?)))
                    .collect()
            }
        }
    };
}

pub(crate) use key_store_imports;

/// The table holding the import record of material `version`, and the condition that picks it
/// (`$1` the key, `$2` the version): a key's first material is recorded in `key_imports`, as
/// releases before several materials per key wrote it; later ones in `key_material_imports`.
pub(crate) fn import_record_at(version: i32) -> (&'static str, &'static str) {
    if version == 1 {
        ("key_imports", "key_id = $1 AND $2 = 1")
    } else {
        ("key_material_imports", "key_id = $1 AND version = $2")
    }
}
