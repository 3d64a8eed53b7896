//! [`KeyStore`](super::KeyStore) (keys, their material, tags, aliases, imports, rotations and
//! the trail lookups that guard them), written once for both stores: one SQL text per
//! statement (`$N` placeholders), one method body. Four operations stay each dialect's own, as
//! inherent methods of the store: `dialect_schema_versions` and `dialect_readiness` (each
//! reads its own migrations), `dialect_generations_per_trail` (Postgres asks for every row in
//! one statement) and `dialect_reserve_invocations` (Postgres leases invocations in one
//! statement under row locks; SQLite in its one write transaction).
//!
//! What else differs is named in each store's module: `IS_SAME` (a comparison that takes
//! NULL as a value: `IS NOT DISTINCT FROM`, SQLite's `IS`), `GREATEST`, `FOR_UPDATE`, `INSTR`,
//! `FIRST_KEY_ARN`, `LEASED_MATERIAL_ID`; `keys_lock` and `aliases_lock` (Postgres locks,
//! SQLite's one writer); the row readers. The helpers that write a key, its material, tags and
//! aliases, its rotation state and the lock on its multi-Region family are written once too
//! (`writes.rs`).

/// `impl KeyStore for $store`.
macro_rules! key_store {
    ($store:ty) => {
        #[async_trait]
        impl KeyStore for $store {
            async fn schema_versions(&self) -> Result<super::SchemaVersions, StoreError> {
                self.dialect_schema_versions().await
            }

            async fn readiness(&self) -> Result<(), StoreError> {
                self.dialect_readiness().await
            }

            async fn create_key(
                &self,
                k: &KeyRecord,
                m: Option<&MaterialRecord>,
                tags: &[Tag],
                max_keys: i64,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                within_key_quota(&mut tx, k, max_keys).await?;
                insert_key(&mut tx, k).await?;
                if let Some(m) = m {
                    insert_material(&mut tx, m, None).await?;
                }
                insert_tags(&mut tx, k.key_id, tags).await?;
                self.commit(tx).await
            }

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
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)
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
                let row = sqlx::query("SELECT * FROM import_tokens WHERE token_id = $1")
                    .bind(token_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.map(|r| {
                    Ok(ImportTokenRecord {
                        token_id: cell(&r, "token_id")?,
                        key_id: cell(&r, "key_id")?,
                        wrapping_algorithm: cell(&r, "wrapping_algorithm")?,
                        wrapping_key_spec: cell(&r, "wrapping_key_spec")?,
                        wrapped_private: cell(&r, "wrapped_private")?,
                        root_version: cell(&r, "root_version")?,
                        valid_to: cell(&r, "valid_to")?,
                        mac: cell(&r, "mac")?,
                    })
                })
                .transpose()
            }

            async fn key_import(&self, key_id: Uuid) -> Result<Option<KeyImportRecord>, StoreError> {
                let row = sqlx::query("SELECT * FROM key_imports WHERE key_id = $1")
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.map(|r| {
                    Ok(KeyImportRecord {
                        key_id: cell(&r, "key_id")?,
                        material_check: cell(&r, "material_check")?,
                        expiration_model: cell(&r, "expiration_model")?,
                        valid_to: cell(&r, "valid_to")?,
                        mac: cell(&r, "mac")?,
                    })
                })
                .transpose()
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

            async fn all_key_ids(&self) -> Result<Vec<Uuid>, StoreError> {
                sqlx::query_scalar("SELECT key_id FROM keys ORDER BY key_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)
            }

            async fn import_key_ids(&self) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query("SELECT key_id FROM key_imports ORDER BY key_id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                rows.iter().map(|r| cell(r, "key_id")).collect()
            }

            async fn expired_imports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query(
                    "SELECT i.key_id FROM key_imports i JOIN keys k USING (key_id) \
                     WHERE i.valid_to <= $1 AND k.key_state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingReplicaDeletion') ORDER BY i.valid_to LIMIT 100",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                key_ids(&rows)
            }

            async fn create_managed_key(
                &self,
                k: &KeyRecord,
                m: &MaterialRecord,
                a: &AliasRecord,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                insert_key(&mut tx, k).await?;
                insert_material(&mut tx, m, None).await?;
                insert_alias(&mut *tx, a).await?;
                self.commit(tx).await
            }

            async fn key(&self, key_id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1");
                let row = sqlx::query(&q)
                    .bind(key_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(map_err)?;
                row.as_ref().map(key_from_row).transpose()
            }

            async fn list_keys(
                &self,
                account_id: &str,
                region: &str,
                after: Option<Uuid>,
                limit: i64,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                // Blobs compare bytewise, as Postgres compares uuids.
                let q = format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND region = $2 \
                     AND ($3 IS NULL OR key_id > $3) ORDER BY key_id LIMIT $4"
                );
                let rows = sqlx::query(&q)
                    .bind(account_id)
                    .bind(region)
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn count_customer_keys(&self, account_id: &str, region: &str) -> Result<i64, StoreError> {
                // The count the triggers keep (not a count of the account's keys, which grows with
                // them): this is the quick refusal; the insert decides.
                sqlx::query_scalar(
                    "SELECT CAST(COALESCE(sum(used), 0) AS BIGINT) FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
                )
                .bind(account_id)
                .bind(region)
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)
            }

            async fn tags(&self, key_id: Uuid) -> Result<Vec<Tag>, StoreError> {
                let rows = sqlx::query(
                    "SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1 ORDER BY tag_key",
                )
                .bind(key_id)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(tag_from_row).collect()
            }

            async fn keys_without_policy_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE policy_mac IS NULL ORDER BY key_id");
                let rows = sqlx::query(&q)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn set_policy_mac(
                &self,
                key_id: Uuid,
                policy: &str,
                policy_mac: &[u8],
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(
                    "UPDATE keys SET policy_mac = $2 WHERE key_id = $1 AND policy_mac IS NULL AND policy = $3",
                )
                .bind(key_id)
                .bind(policy_mac)
                .bind(policy)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn deleted_per_trail(
                &self,
                arn: &str,
                created_at: DateTime<Utc>,
            ) -> Result<bool, StoreError> {
                sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM audit_events WHERE event_name = 'DeleteKey' AND {FIRST_KEY_ARN} = $1 AND event_time > $2)"))
                    .bind(arn)
                    .bind(created_at)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)
            }

            async fn leases_per_trail(
                &self,
                material_id: &str,
                limit: i64,
            ) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar(&format!("SELECT body FROM audit_events WHERE event_name = 'InvocationsLeased' AND {LEASED_MATERIAL_ID} = $1 ORDER BY seq DESC LIMIT $2"))
                    .bind(material_id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)
            }

            async fn generations_per_trail(
                &self,
                rows: &[String],
            ) -> Result<Vec<(String, i64)>, StoreError> {
                self.dialect_generations_per_trail(rows).await
            }

            async fn keys_whose_policy_contains(&self, text: &str) -> Result<Vec<KeyRecord>, StoreError> {
                let q =
                    format!("SELECT {KEY_COLUMNS} FROM keys WHERE {INSTR}(policy, $1) > 0 ORDER BY key_id");
                let rows = sqlx::query(&q)
                    .bind(text)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn set_key_policy(
                &self,
                key_id: Uuid,
                expected_mac: Option<&[u8]>,
                policy: &str,
                policy_mac: &[u8],
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(&format!("UPDATE keys SET policy = $3, policy_mac = $4 WHERE key_id = $1 AND policy_mac {IS_SAME} $2"))
                .bind(key_id)
                .bind(expected_mac)
                .bind(policy)
                .bind(policy_mac)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn add_material(
                &self,
                ms: &[MaterialRecord],
                mrk: Option<Uuid>,
                rotation_type: &str,
                scheduled: bool,
                updates: &[RotationUpdate],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                if let Some(mrk) = mrk {
                    let ids: Vec<Uuid> = ms.iter().map(|m| m.key_id).collect();
                    lock_related(&mut tx, mrk, &ids).await?;
                }
                for m in ms {
                    insert_material(&mut tx, m, Some(rotation_type)).await?;
                }
                // The schedule moves in the same transaction as the material.
                for u in updates {
                    // A scheduled rotation needs the rotated key enabled; its replicas follow it in
                    // any state.
                    let rotated = ms.first().is_some_and(|m| m.key_id == u.key_id);
                    apply_rotation(&mut tx, u, scheduled && rotated).await?;
                }
                self.commit(tx).await
            }

            async fn related_keys(&self, mrk: Uuid) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE mrk_id = $1 ORDER BY region");
                let rows = sqlx::query(&q)
                    .bind(mrk)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn create_replica(
                &self,
                replica: &KeyRecord,
                primary: Uuid,
                primary_version: i32,
                macs: &[(MaterialRecord, Vec<u8>)],
                tags: &[Tag],
                max_keys: i64,
            ) -> Result<(), StoreError> {
                let conflict = || StoreError::Conflict {
                    constraint: "mrk_primary_changed".into(),
                };
                let external = replica.origin == Origin::External;
                let mut tx = self.begin_write().await?;
                let rows = sqlx::query(&format!("SELECT key_id, mrk_primary, current_version, key_state FROM keys WHERE mrk_id = $1 ORDER BY key_id{FOR_UPDATE}"))
                .bind(replica.mrk_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?;
                let mut ok = false;
                for r in &rows {
                    let state: KeyState = cell(r, "key_state")?;
                    if cell::<Uuid>(r, "key_id")? == primary
                        && cell::<bool>(r, "mrk_primary")?
                        && cell::<i32>(r, "current_version")? == primary_version
                        && (matches!(state, KeyState::Enabled | KeyState::Disabled)
                            || (external && state == KeyState::PendingImport))
                    {
                        ok = true;
                    }
                }
                // A replica of a key with imported material starts without material: it is imported
                // into each related key on its own.
                let copies = if external {
                    0
                } else {
                    primary_version as usize
                };
                if !ok || macs.len() != copies {
                    return Err(conflict());
                }
                within_key_quota(&mut tx, replica, max_keys).await?;
                insert_key(&mut tx, replica).await?;
                for (m, mac) in macs {
                    // Copy the row as verified (same wrapped blob), with its invocation count, so the
                    // AES-GCM bound counts every region's encryptions.
                    let n = sqlx::query(
                        "INSERT INTO key_materials (key_id, version, wrapped, root_version, mac, invocations_reserved, rotation_type, created_at, public_key) \
                         SELECT $1, version, wrapped, root_version, $4, invocations_reserved, rotation_type, created_at, public_key \
                         FROM key_materials WHERE key_id = $2 AND version = $3 AND wrapped = $5 AND root_version = $6",
                    )
                    .bind(replica.key_id)
                    .bind(primary)
                    .bind(m.version)
                    .bind(mac)
                    .bind(&m.wrapped)
                    .bind(m.root_version)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                    if n != 1 {
                        return Err(conflict());
                    }
                }
                insert_tags(&mut tx, replica.key_id, tags).await?;
                self.commit(tx).await
            }

            async fn set_primary(&self, _mrk: Uuid, updates: &[RotationUpdate]) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                for u in updates {
                    apply_rotation(&mut tx, u, false).await?;
                }
                self.commit(tx).await
            }

            async fn replica_deletions_done(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE k.key_state = 'PendingReplicaDeletion' \
                       AND NOT EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = k.mrk_id AND r.key_id <> k.key_id)"
                );
                let rows = sqlx::query(&q)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn start_primary_deletion(
                &self,
                key_id: Uuid,
                deletion_date: DateTime<Utc>,
                state_mac: &[u8],
                expected_mac: &[u8],
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE keys SET key_state = 'PendingDeletion', deletion_date = $2, \
                         pending_window_days = NULL, state_mac = $3 \
                     WHERE key_id = $1 AND key_state = 'PendingReplicaDeletion' AND state_mac = $4 \
                       AND NOT EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = keys.mrk_id AND r.key_id <> keys.key_id)",
                )
                .bind(key_id)
                .bind(deletion_date)
                .bind(state_mac)
                .bind(expected_mac)
                .write_on(self)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn rotations(&self, key_id: Uuid) -> Result<Vec<RotationRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT version, rotation_type, created_at FROM key_materials WHERE key_id = $1 AND rotation_type IS NOT NULL ORDER BY version",
                )
                .bind(key_id)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter()
                    .map(|r| {
                        Ok(RotationRecord {
                            version: cell(r, "version")?,
                            rotation_type: cell(r, "rotation_type")?,
                            created_at: cell(r, "created_at")?,
                        })
                    })
                    .collect()
            }

            async fn set_rotation(
                &self,
                mrk: Option<Uuid>,
                updates: &[RotationUpdate],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                if let Some(mrk) = mrk {
                    let ids: Vec<Uuid> = updates.iter().map(|u| u.key_id).collect();
                    lock_related(&mut tx, mrk, &ids).await?;
                }
                for u in updates {
                    apply_rotation(&mut tx, u, false).await?;
                }
                self.commit(tx).await
            }

            async fn due_rotations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query(
                    "SELECT key_id FROM keys WHERE rotation_enabled AND key_state = 'Enabled' \
                     AND (mrk_id IS NULL OR mrk_primary) AND next_rotation_date <= $1 \
                     ORDER BY next_rotation_date LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                key_ids(&rows)
            }

            async fn keys_due_for_deletion(
                &self,
                now: DateTime<Utc>,
                after: Option<(DateTime<Utc>, Uuid)>,
                limit: i64,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!(
                    "SELECT {KEY_COLUMNS} FROM keys k WHERE key_state = 'PendingDeletion' AND deletion_date <= $1 \
                     AND NOT (mrk_primary AND EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = k.mrk_id AND r.key_id <> k.key_id)) \
                     AND ($3 IS NULL OR (deletion_date, key_id) > ($3, $4)) \
                     ORDER BY deletion_date, key_id LIMIT $2"
                );
                let rows = sqlx::query(&q)
                    .bind(now)
                    .bind(limit)
                    .bind(after.map(|a| a.0))
                    .bind(after.map(|a| a.1))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn delete_due_key(&self, k: &KeyRecord, now: DateTime<Utc>) -> Result<bool, StoreError> {
                // Cascades remove its material, tags, aliases, grants and import.
                let mut tx = self.begin_write().await?;
                let n = sqlx::query(
                    "DELETE FROM keys WHERE key_id = $1 AND key_state = 'PendingDeletion' AND deletion_date <= $2 \
                     AND state_mac = $3 \
                     AND NOT (mrk_primary AND EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = keys.mrk_id AND r.key_id <> keys.key_id))",
                )
                .bind(k.key_id)
                .bind(now)
                .bind(&k.state_mac)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?
                .rows_affected();
                self.commit(tx).await?;
                Ok(n == 1)
            }

            async fn set_key_state(
                &self,
                key_id: Uuid,
                expected_mac: Option<&[u8]>,
                state: KeyState,
                deletion_date: Option<DateTime<Utc>>,
                pending_window_days: Option<i32>,
                state_mac: &[u8],
            ) -> Result<bool, StoreError> {
                let n = sqlx::query(&format!("UPDATE keys SET key_state = $3, deletion_date = $4, pending_window_days = $5, state_mac = $6 \
                     WHERE key_id = $1 AND state_mac {IS_SAME} $2"))
                .bind(key_id)
                .bind(expected_mac)
                .bind(state)
                .bind(deletion_date)
                .bind(pending_window_days)
                .bind(state_mac)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn keys_without_state_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE state_mac IS NULL ORDER BY key_id");
                let rows = sqlx::query(&q)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn set_state_mac(&self, shown: &KeyRecord, state_mac: &[u8]) -> Result<bool, StoreError> {
                let n = sqlx::query(&format!("UPDATE keys SET state_mac = $2 WHERE key_id = $1 AND state_mac IS NULL AND key_state = $3 \
                     AND deletion_date {IS_SAME} $4 AND pending_window_days {IS_SAME} $5"))
                .bind(shown.key_id)
                .bind(state_mac)
                .bind(shown.key_state)
                .bind(shown.deletion_date)
                .bind(shown.pending_window_days)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn set_description(&self, key_id: Uuid, description: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE keys SET description = $2 WHERE key_id = $1")
                    .bind(key_id)
                    .bind(description)
                    .write_on(self)
                    .await?;
                Ok(())
            }

            async fn set_tags(
                &self,
                key_id: Uuid,
                expected_mac: &[u8],
                tags: &[Tag],
                tags_mac: &[u8],
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let n = sqlx::query("UPDATE keys SET tags_mac = $2 WHERE key_id = $1 AND tags_mac = $3")
                    .bind(key_id)
                    .bind(tags_mac)
                    .bind(expected_mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                if n != 1 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM key_tags WHERE key_id = $1")
                    .bind(key_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                insert_tags(&mut tx, key_id, tags).await?;
                self.commit(tx).await?;
                Ok(true)
            }

            async fn set_tags_mac(
                &self,
                key_id: Uuid,
                tags: &[Tag],
                tags_mac: &[u8],
            ) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                let stored: Vec<Tag> =
                    sqlx::query("SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1")
                        .bind(key_id)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(map_err)?
                        .iter()
                        .map(tag_from_row)
                        .collect::<Result<_, _>>()?;
                let (mut a, mut b) = (stored.clone(), tags.to_vec());
                a.sort_by(|x, y| x.key.cmp(&y.key));
                b.sort_by(|x, y| x.key.cmp(&y.key));
                if a != b {
                    return Ok(false);
                }
                let n = sqlx::query("UPDATE keys SET tags_mac = $2 WHERE key_id = $1 AND tags_mac IS NULL")
                    .bind(key_id)
                    .bind(tags_mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?
                    .rows_affected();
                self.commit(tx).await?;
                Ok(n == 1)
            }

            async fn keys_without_attrs_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE attrs_mac IS NULL ORDER BY key_id");
                let rows = sqlx::query(&q)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn keys_without_rotation_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let q =
                    format!("SELECT {KEY_COLUMNS} FROM keys WHERE rotation_mac IS NULL ORDER BY key_id");
                let rows = sqlx::query(&q)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn set_rotation_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError> {
                let n = sqlx::query(&format!("UPDATE keys SET rotation_mac = $2 WHERE key_id = $1 AND rotation_mac IS NULL \
                     AND account_id = $3 AND region = $4 AND current_version = $5 AND rotation_enabled = $6 \
                     AND rotation_period_days {IS_SAME} $7 AND next_rotation_date {IS_SAME} $8 \
                     AND on_demand_rotations = $9 AND mrk_primary = $10"))
                .bind(k.key_id)
                .bind(mac)
                .bind(&k.account_id)
                .bind(&k.region)
                .bind(k.current_version)
                .bind(k.rotation_enabled)
                .bind(k.rotation_period_days)
                .bind(k.next_rotation_date)
                .bind(k.on_demand_rotations)
                .bind(k.mrk_primary)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn set_attrs_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError> {
                let n = sqlx::query(
                    "UPDATE keys SET attrs_mac = $2 WHERE key_id = $1 AND attrs_mac IS NULL \
                     AND account_id = $3 AND region = $4 AND key_spec = $5 AND key_usage = $6 AND origin = $7 AND key_manager = $8",
                )
                .bind(k.key_id)
                .bind(mac)
                .bind(&k.account_id)
                .bind(&k.region)
                .bind(k.key_spec)
                .bind(k.key_usage)
                .bind(k.origin)
                .bind(&k.key_manager)
                .write_on(self)
                .await?
                .rows_affected();
                Ok(n == 1)
            }

            async fn keys_without_tags_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE tags_mac IS NULL ORDER BY key_id");
                let rows = sqlx::query(&q)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
                keys_from_rows(&rows)
            }

            async fn aliases_without_mac(&self) -> Result<Vec<AliasRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT * FROM aliases WHERE mac IS NULL ORDER BY account_id, region, alias_name",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(alias_from_row).collect()
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

            async fn create_alias(&self, a: &AliasRecord, max_aliases: i64) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                aliases_lock(&mut tx, &a.account_id, &a.region).await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name NOT LIKE 'alias/aws/%'",
                )
                .bind(&a.account_id)
                .bind(&a.region)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
                if n >= max_aliases {
                    return Err(quota_exceeded());
                }
                insert_alias(&mut *tx, a).await?;
                self.commit(tx).await
            }

            async fn update_alias(&self, a: &AliasRecord, from_key: Uuid) -> Result<bool, StoreError> {
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
                .write_on(self)
                .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_alias(
                &self,
                account_id: &str,
                region: &str,
                name: &str,
            ) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "DELETE FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3",
                )
                .bind(account_id)
                .bind(region)
                .bind(name)
                .write_on(self)
                .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn alias(
                &self,
                account_id: &str,
                region: &str,
                name: &str,
            ) -> Result<Option<AliasRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT * FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3",
                )
                .bind(account_id)
                .bind(region)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.as_ref().map(alias_from_row).transpose()
            }

            async fn list_aliases(
                &self,
                account_id: &str,
                region: &str,
                key_id: Option<Uuid>,
            ) -> Result<Vec<AliasRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT a.*, k.mrk_id FROM aliases a JOIN keys k USING (key_id) \
                     WHERE a.account_id = $1 AND a.region = $2 AND ($3 IS NULL OR a.key_id = $3) ORDER BY a.alias_name",
                )
                .bind(account_id)
                .bind(region)
                .bind(key_id)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
                rows.iter().map(alias_from_row).collect()
            }

            async fn material(
                &self,
                key_id: Uuid,
                version: i32,
            ) -> Result<Option<MaterialRecord>, StoreError> {
                let row = sqlx::query(
                    "SELECT key_id, version, wrapped, root_version, mac, public_key FROM key_materials WHERE key_id = $1 AND version = $2",
                )
                .bind(key_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
                row.map(|r| {
                    Ok(MaterialRecord {
                        key_id: cell(&r, "key_id")?,
                        version: cell(&r, "version")?,
                        wrapped: cell(&r, "wrapped")?,
                        root_version: cell(&r, "root_version")?,
                        mac: cell(&r, "mac")?,
                        public_key: cell(&r, "public_key")?,
                    })
                })
                .transpose()
            }

            async fn reserve_invocations(
                &self,
                key_id: Uuid,
                mrk: Option<Uuid>,
                version: i32,
                n: i64,
                limit: i64,
            ) -> Result<Option<(i64, i64)>, StoreError> {
                self.dialect_reserve_invocations(key_id, mrk, version, n, limit).await
            }
        }
    };
}

pub(crate) use key_store;
