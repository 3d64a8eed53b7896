//! [`KeyStore`](super::KeyStore)'s rotations and multi-Region keys, written once for both
//! stores: new material versions, the rotation schedule, replicas, moving the primary and the
//! primary's deletion once its replicas are gone. Separate from `keys.rs` because these are
//! the writes that span several keys of one family (under `lock_related`); `key_store!`
//! gathers these methods into its `impl`.

/// The rotation and multi-Region methods of `impl KeyStore`, after the methods `key_store!`
/// gathered so far (`methods`); hands them all to `key_store_aliases!` (`aliases.rs`).
macro_rules! key_store_rotations {
    ($store:ty; $($methods:tt)*) => {
        $crate::store::aliases::key_store_aliases! { $store;
            $($methods)*
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
                sqlx::query_as(&q)
                    .bind(mrk)
                    .all(&self.pool).await
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
                .all(&mut *tx).await?;
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
                sqlx::query_as(&q)
                    .all(&self.pool).await
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
                sqlx::query_as(
                    "SELECT version, rotation_type, created_at FROM key_materials WHERE key_id = $1 AND rotation_type IS NOT NULL ORDER BY version",
                )
                .bind(key_id)
                .all(&self.pool).await
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

            async fn on_demand_rotations_started(&self, limit: i64) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query(
                    "SELECT key_id FROM keys WHERE on_demand_rotation_start IS NOT NULL \
                     ORDER BY on_demand_rotation_start LIMIT $1",
                )
                .bind(limit)
                .all(&self.pool).await?;
                key_ids(&rows)
            }

            async fn due_rotations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError> {
                let rows = sqlx::query(
                    "SELECT key_id FROM keys WHERE rotation_enabled AND key_state = 'Enabled' \
                     AND (mrk_id IS NULL OR mrk_primary) AND next_rotation_date <= $1 \
                     ORDER BY next_rotation_date LIMIT $2",
                )
                .bind(now)
                .bind(limit)
                .all(&self.pool).await?;
                key_ids(&rows)
            }
        }
    };
}

pub(crate) use key_store_rotations;
