//! [`KeyStore`](super::KeyStore) (keys, their material, tags, aliases, imports, rotations and
//! the trail lookups that guard them), written once for both stores: one SQL text per
//! statement (`$N` placeholders), one method body. This file holds the keys' own rows (create,
//! read, list, policy, state, tags, seals, material and its invocation count); imports,
//! rotations and multi-Region replicas, and aliases have files of their own (`key_imports.rs`,
//! `key_rotations.rs`, `aliases.rs`), each a macro that adds its methods to those gathered so
//! far, so `key_store!` still writes the one `impl KeyStore`.
//!
//! Two operations stay each dialect's own, as inherent methods of the store:
//! `dialect_generations_per_trail` (Postgres asks for every row in one statement) and
//! `dialect_reserve_invocations` (Postgres leases invocations in one statement under row locks;
//! SQLite in its one write transaction). The schema versions and readiness are `schema.rs`'s
//! (`schema_lookups!`).
//!
//! What else differs is named in each store's module: `IS_SAME` (a comparison that takes
//! NULL as a value: `IS NOT DISTINCT FROM`, SQLite's `IS`), `GREATEST`, `FOR_UPDATE`, `INSTR`,
//! `FIRST_KEY_ARN`, `decision_key()`; `keys_lock` and `aliases_lock` (Postgres locks,
//! SQLite's one writer); the row readers. The helpers that write a key, its material, tags and
//! aliases, its rotation state and the lock on its multi-Region family are written once too
//! (`writes.rs`).

/// `impl KeyStore for $store`: this file's methods, then those of `key_imports.rs`,
/// `key_rotations.rs` and `aliases.rs`, each macro handing the methods gathered so far to the
/// next; the last writes the one `impl` (`#[async_trait]` has to see every method at once).
macro_rules! key_store {
    ($store:ty) => {
        $crate::store::key_imports::key_store_imports! { $store;
            async fn schema_versions(&self) -> Result<super::SchemaVersions, StoreError> {
                self.stored_schema_versions().await
            }

            async fn readiness(&self) -> Result<(), StoreError> {
                self.schema_readiness().await
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

            async fn all_key_ids(&self) -> Result<Vec<Uuid>, StoreError> {
                sqlx::query_scalar("SELECT key_id FROM keys ORDER BY key_id")
                    .all(&self.pool).await
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
                sqlx::query_as(&q)
                    .bind(key_id)
                    .maybe(&self.pool).await
            }

            async fn list_keys(
                &self,
                account_id: &str,
                region: &str,
                after: Option<Uuid>,
                limit: i64,
            ) -> Result<Vec<KeyRecord>, StoreError> {
                // Blobs compare bytewise, as Postgres compares uuids. Two statements, not one
                // with `($3 IS NULL OR key_id > $3)`: Postgres's generic plan for that one
                // cannot seek to the marker, so every page read the account's keys from the
                // first (a middle page of 100,000 keys took 90 ms instead of 2).
                match after {
                    Some(after) => {
                        let q = format!(
                            "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND region = $2 \
                             AND key_id > $3 ORDER BY key_id LIMIT $4"
                        );
                        sqlx::query_as(&q)
                            .bind(account_id)
                            .bind(region)
                            .bind(after)
                            .bind(limit)
                            .all(&self.pool).await
                    }
                    None => {
                        let q = format!(
                            "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND region = $2 \
                             ORDER BY key_id LIMIT $3"
                        );
                        sqlx::query_as(&q)
                            .bind(account_id)
                            .bind(region)
                            .bind(limit)
                            .all(&self.pool).await
                    }
                }
            }

            async fn count_customer_keys(&self, account_id: &str, region: &str) -> Result<i64, StoreError> {
                // The count the triggers keep (not a count of the account's keys, which grows with
                // them): this is the quick refusal; the insert decides.
                sqlx::query_scalar(
                    "SELECT CAST(COALESCE(sum(used), 0) AS BIGINT) FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
                )
                .bind(account_id)
                .bind(region)
                .one(&self.pool).await
            }

            async fn tags(&self, key_id: Uuid) -> Result<Vec<Tag>, StoreError> {
                let rows = sqlx::query(
                    "SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1 ORDER BY tag_key",
                )
                .bind(key_id)
                .all(&self.pool).await?;
                rows.iter().map(tag_from_row).collect()
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
                // Read from the event's hashed body (its name, type, key and time), never
                // from the columns beside it, which a database writer edits without breaking
                // the chain: a deletion renamed in `event_name` is still a deletion. The body's
                // time is to the second, so a deletion in the second of the key's creation
                // counts (a replica deleted and replicated again within one second is refused).
                let created = created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                use super::identity::DECIDED;
                let named = |expr: &str| when_named("= 'DeleteKey'", expr);
                // Through the index of decisions (name, key: the deleted key's ARN).
                sqlx::query_scalar(&format!(
                    "SELECT EXISTS (SELECT 1 FROM audit_events WHERE {BODY_EVENT_NAME} {DECIDED} \
                     AND {BODY_EVENT_NAME} = 'DeleteKey' \
                     AND {} = $1 AND {} = 'AwsServiceEvent' AND {} >= $2)",
                    decision_key(),
                    named(BODY_EVENT_TYPE),
                    named(BODY_EVENT_TIME)
                ))
                .bind(arn)
                .bind(created)
                .one(&self.pool).await
            }

            async fn leases_per_trail(
                &self,
                material_id: &str,
                before: i64,
                limit: i64,
            ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError> {
                // By the event's hashed body (its name and material), not the column beside
                // it: leases renamed there would let the material's count be set back.
                self.decided_events("= 'InvocationsLeased'", material_id, before, limit)
                    .await
            }

            async fn audit_event_sealed(
                &self,
                seq: i64,
            ) -> Result<Option<(AuditRow, Option<Vec<u8>>)>, StoreError> {
                let row = sqlx::query(
                    "SELECT seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash, seal \
                     FROM audit_events WHERE seq = $1",
                )
                .bind(seq)
                .maybe(&self.pool)
                .await?;
                let Some(r) = row else { return Ok(None) };
                use sqlx::FromRow;
                let event = AuditRow::from_row(&r).map_err(map_err)?;
                Ok(Some((event, cell(&r, "seal")?)))
            }

            async fn generation_events(
                &self,
                row: &str,
                above: i64,
                limit: i64,
            ) -> Result<Vec<(i64, i64)>, StoreError> {
                sqlx::query_as(
                    "SELECT generation, seq FROM audit_generations WHERE row_name = $1 AND generation > $2 \
                     ORDER BY generation DESC, seq DESC LIMIT $3",
                )
                .bind(row)
                .bind(above)
                .bind(limit)
                .all(&self.pool)
                .await
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
                sqlx::query_as(&q)
                    .bind(text)
                    .all(&self.pool).await
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
                sqlx::query_as(&q)
                    .bind(now)
                    .bind(limit)
                    .bind(after.map(|a| a.0))
                    .bind(after.map(|a| a.1))
                    .all(&self.pool).await
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
                        .all(&mut *tx).await?
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

            async fn keys_without_mac(&self, mac: KeyMac) -> Result<Vec<KeyRecord>, StoreError> {
                let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE {} IS NULL ORDER BY key_id", mac.column());
                sqlx::query_as(&q)
                    .all(&self.pool).await
            }

            async fn seal_alias_set(&self, set: &AliasSetSeal) -> Result<bool, StoreError> {
                let n = sqlx::query(
                    "UPDATE keys SET alias_set = $2, aliases_mac = $3 WHERE key_id = $1 \
                     AND alias_set IS NULL AND aliases_mac IS NULL",
                )
                .bind(set.key_id)
                .bind(&set.alias_set)
                .bind(&set.mac)
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

            async fn materials_after(
                &self,
                after: Option<(Uuid, i32)>,
                limit: i64,
            ) -> Result<Vec<MaterialRecord>, StoreError> {
                const COLUMNS: &str =
                    "SELECT key_id, version, wrapped, root_version, mac, public_key FROM key_materials";
                match after {
                    None => {
                        sqlx::query_as(&format!("{COLUMNS} ORDER BY key_id, version LIMIT $1"))
                            .bind(limit)
                            .all(&self.pool).await
                    }
                    Some((key_id, version)) => {
                        sqlx::query_as(&format!(
                            "{COLUMNS} WHERE key_id > $1 OR (key_id = $1 AND version > $2) \
                             ORDER BY key_id, version LIMIT $3"
                        ))
                        .bind(key_id)
                        .bind(version)
                        .bind(limit)
                        .all(&self.pool).await
                    }
                }
            }

            async fn material(
                &self,
                key_id: Uuid,
                version: i32,
            ) -> Result<Option<MaterialRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT key_id, version, wrapped, root_version, mac, public_key FROM key_materials WHERE key_id = $1 AND version = $2",
                )
                .bind(key_id)
                .bind(version)
                .maybe(&self.pool).await
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
