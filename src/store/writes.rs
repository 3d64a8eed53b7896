//! The helpers the repository methods call inside a write transaction (the change record, a
//! key's rows: the key, its material, tags and aliases, a new rotation state, the lock on a
//! multi-Region key's family, the key quota), written once for both stores like the repository
//! traits: `write_helpers!()` expands them in `postgres.rs` and `sqlite.rs`, over that file's
//! `Tx`, `Db`, `map_err`, `key_ids` and its pieces of SQL and locking (`FOR_UPDATE`,
//! `keys_lock`, `material_created_at`). They are separate from the trait macros because they
//! are free functions that the methods of several areas (keys, aliases, imports, rotations,
//! grants) share, not trait methods.

/// Every column of a key row, so no writer forgets one.
pub(super) const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_spec, key_usage, origin, key_manager, \
     key_state, policy, multi_region, current_version, created_at, deletion_date, rotation_enabled, \
     rotation_period_days, next_rotation_date, on_demand_rotations, mrk_id, mrk_primary, pending_window_days, policy_mac, state_mac, tags_mac, attrs_mac, rotation_mac, on_demand_rotation_start, custom_key_store_id, xks_key_id, alias_set, aliases_mac";

/// The write helpers, as free functions of the invoking store's module.
macro_rules! write_helpers {
    () => {
        /// Inside a change's scope, write its record in `tx` (once per change, however many
        /// transactions it takes).
        async fn record_change(tx: &mut Tx<'_>) -> Result<(), StoreError> {
            let Some(c) = current_change() else {
                return Ok(());
            };
            let e = &c.event;
            sqlx::query(
                "INSERT INTO audit_outbox (event_id, event_time, event_name, account_id, key_arns, body, mac) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING",
            )
            .bind(e.event_id)
            .bind(e.event_time)
            .bind(&e.event_name)
            .bind(&e.account_id)
            .bind(TextList(e.key_arns.clone()))
            .bind(&e.body)
            .bind(&c.mac)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
            Ok(())
        }

        /// Lock every key of multi-Region key `mrk` for the rest of `tx` (Postgres: `FOR
        /// UPDATE`; SQLite's write transaction holds the one write lock already, which keeps a
        /// replica from being created meanwhile) and check they are exactly `ids` (a replica
        /// created or deleted meanwhile is a `Conflict`).
        async fn lock_related(tx: &mut Tx<'_>, mrk: Uuid, ids: &[Uuid]) -> Result<(), StoreError> {
            let rows = sqlx::query(&format!(
                "SELECT key_id FROM keys WHERE mrk_id = $1 ORDER BY key_id{FOR_UPDATE}"
            ))
            .bind(mrk)
            .all(&mut **tx).await?;
            let mut have = key_ids(&rows)?;
            let mut want = ids.to_vec();
            have.sort();
            want.sort();
            if have != want {
                return Err(StoreError::Conflict {
                    constraint: "mrk_related_keys_changed".into(),
                });
            }
            Ok(())
        }

        /// A material row, made at `material_created_at()` (else the column's default).
        async fn insert_material(
            tx: &mut Tx<'_>,
            m: &MaterialRecord,
            rotation_type: Option<&str>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO key_materials (key_id, version, wrapped, root_version, mac, rotation_type, public_key, created_at) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,COALESCE($8, CURRENT_TIMESTAMP))",
            )
            .bind(m.key_id)
            .bind(m.version)
            .bind(&m.wrapped)
            .bind(m.root_version)
            .bind(&m.mac)
            .bind(rotation_type)
            .bind(&m.public_key)
            .bind(material_created_at())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
            Ok(())
        }

        fn quota_exceeded() -> StoreError {
            StoreError::Conflict {
                constraint: QUOTA_EXCEEDED.into(),
            }
        }

        /// The customer managed keys of `k`'s account and region as the triggers count them.
        async fn kept_keys(tx: &mut Tx<'_>, k: &KeyRecord) -> Result<i64, StoreError> {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(sum(used), 0) AS BIGINT) FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
            )
            .bind(&k.account_id)
            .bind(&k.region)
            .one(&mut **tx).await
        }

        /// The customer managed keys quota of an account and region, checked inside the
        /// inserting transaction (`keys_lock`: Postgres's advisory lock; SQLite's write
        /// transaction, `BEGIN IMMEDIATE`, serialises it with every other writer already).
        async fn within_key_quota(tx: &mut Tx<'_>, k: &KeyRecord, max: i64) -> Result<(), StoreError> {
            // The count the triggers keep (16 rows, not a count of the account's keys). Far below the
            // quota, no creation racing this one can reach it: no lock. Near it, read again under the
            // lock that serialises the account's creations: every creation that could still be in
            // flight without the lock started while the count was more than the margin away.
            if kept_keys(tx, k).await? + super::QUOTA_EXACT_MARGIN < max {
                return Ok(());
            }
            keys_lock(tx, &k.account_id, &k.region).await?;
            if kept_keys(tx, k).await? >= max {
                return Err(quota_exceeded());
            }
            Ok(())
        }

        /// Write one key's new rotation state, only where the row still carries the MAC the caller
        /// verified (and, with `require_enabled`, the key is still enabled).
        async fn apply_rotation(
            tx: &mut Tx<'_>,
            u: &RotationUpdate,
            require_enabled: bool,
        ) -> Result<(), StoreError> {
            let n = sqlx::query(
                "UPDATE keys SET current_version = $2, rotation_enabled = $3, rotation_period_days = $4, \
                 next_rotation_date = $5, on_demand_rotations = $6, mrk_primary = $7, rotation_mac = $8, \
                 on_demand_rotation_start = $11 \
                 WHERE key_id = $1 AND rotation_mac = $9 AND (NOT $10 OR key_state = 'Enabled')",
            )
            .bind(u.key_id)
            .bind(u.current_version)
            .bind(u.rotation_enabled)
            .bind(u.rotation_period_days)
            .bind(u.next_rotation_date)
            .bind(u.on_demand_rotations)
            .bind(u.mrk_primary)
            .bind(&u.mac)
            .bind(&u.expected_mac)
            .bind(require_enabled)
            .bind(u.on_demand_rotation_start)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?
            .rows_affected();
            if n != 1 {
                return Err(StoreError::Conflict {
                    constraint: ROTATION_STATE_CHANGED.into(),
                });
            }
            Ok(())
        }

        async fn insert_key(tx: &mut Tx<'_>, k: &KeyRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO keys (key_id, account_id, region, description, key_spec, key_usage, origin, key_manager, \
                 key_state, policy, multi_region, current_version, created_at, deletion_date, rotation_enabled, \
                 rotation_period_days, next_rotation_date, on_demand_rotations, mrk_id, mrk_primary, pending_window_days, policy_mac, state_mac, tags_mac, attrs_mac, rotation_mac, custom_key_store_id, xks_key_id, alias_set, aliases_mac) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28,$29,$30)",
            )
            .bind(k.key_id)
            .bind(&k.account_id)
            .bind(&k.region)
            .bind(&k.description)
            .bind(k.key_spec)
            .bind(k.key_usage)
            .bind(k.origin)
            .bind(&k.key_manager)
            .bind(k.key_state)
            .bind(&k.policy)
            .bind(k.multi_region)
            .bind(k.current_version)
            .bind(k.created_at)
            .bind(k.deletion_date)
            .bind(k.rotation_enabled)
            .bind(k.rotation_period_days)
            .bind(k.next_rotation_date)
            .bind(k.on_demand_rotations)
            .bind(k.mrk_id)
            .bind(k.mrk_primary)
            .bind(k.pending_window_days)
            .bind(&k.policy_mac)
            .bind(&k.state_mac)
            .bind(&k.tags_mac)
            .bind(&k.attrs_mac)
            .bind(&k.rotation_mac)
            .bind(&k.custom_key_store_id)
            .bind(&k.xks_key_id)
            .bind(&k.alias_set)
            .bind(&k.aliases_mac)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
            Ok(())
        }

        /// Lock key rows (in key order) for the rest of the transaction. An alias write takes
        /// the rows of the keys it touches before their aliases: the order a key's deletion
        /// takes them in (its row, then its aliases by cascade), so the two never wait on each
        /// other in a cycle.
        async fn lock_key_rows(tx: &mut Tx<'_>, ids: &[Uuid]) -> Result<(), StoreError> {
            let mut ids = ids.to_vec();
            ids.sort();
            ids.dedup();
            for id in ids {
                sqlx::query(&format!("SELECT key_id FROM keys WHERE key_id = $1{FOR_UPDATE}"))
                    .bind(id)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
            }
            Ok(())
        }

        /// A key's new set of aliases and its seal, where the row still carries the seal the
        /// caller verified.
        async fn set_alias_set(tx: &mut Tx<'_>, s: &AliasSetSeal) -> Result<(), StoreError> {
            let q = sqlx::query(match s.expected {
                Some(_) => "UPDATE keys SET alias_set = $2, aliases_mac = $3 WHERE key_id = $1 AND aliases_mac = $4",
                None => "UPDATE keys SET alias_set = $2, aliases_mac = $3 WHERE key_id = $1 AND aliases_mac IS NULL",
            })
            .bind(s.key_id)
            .bind(&s.alias_set)
            .bind(&s.mac);
            let q = match &s.expected {
                Some(e) => q.bind(e),
                None => q,
            };
            let n = q.execute(&mut **tx).await.map_err(map_err)?.rows_affected();
            if n != 1 {
                return Err(StoreError::Conflict {
                    constraint: ALIAS_SET_CHANGED.into(),
                });
            }
            Ok(())
        }

        async fn insert_tags(tx: &mut Tx<'_>, key_id: Uuid, tags: &[Tag]) -> Result<(), StoreError> {
            for t in tags {
                sqlx::query("INSERT INTO key_tags (key_id, tag_key, tag_value) VALUES ($1,$2,$3)")
                    .bind(key_id)
                    .bind(&t.key)
                    .bind(&t.value)
                    .execute(&mut **tx)
                    .await
                    .map_err(map_err)?;
            }
            Ok(())
        }

        async fn insert_alias<'e, E: sqlx::Executor<'e, Database = Db>>(
            exec: E,
            a: &AliasRecord,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO aliases (account_id, region, alias_name, key_id, created_at, updated_at, mac) \
                 VALUES ($1,$2,$3,$4,$5,$6,$7)",
            )
            .bind(&a.account_id)
            .bind(&a.region)
            .bind(&a.alias_name)
            .bind(a.key_id)
            .bind(a.created_at)
            .bind(a.updated_at)
            .bind(&a.mac)
            .execute(exec)
            .await
            .map_err(map_err)?;
            Ok(())
        }

        /// `Err` ([`KEY_ALIASES_EXCEEDED`](crate::store::KEY_ALIASES_EXCEEDED)) if the key `a`
        /// names has `per_key` aliases already; under the account and region's alias lock.
        async fn key_alias_room(tx: &mut Tx<'_>, a: &AliasRecord, per_key: i64) -> Result<(), StoreError> {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM aliases WHERE account_id = $1 AND region = $2 AND key_id = $3",
            )
            .bind(&a.account_id)
            .bind(&a.region)
            .bind(a.key_id)
            .one(&mut **tx).await?;
            if n >= per_key {
                return Err(StoreError::Conflict {
                    constraint: crate::store::KEY_ALIASES_EXCEEDED.into(),
                });
            }
            Ok(())
        }
    };
}

pub(crate) use write_helpers;
