//! [`ServiceStore`](super::ServiceStore) (the service's own keys: root key versions, the
//! re-wrap of every stored blob, metadata MAC key versions and the re-MAC), written once for
//! both stores: one SQL text per statement (`$N` placeholders), one method body. It uses the
//! store's `pool`, `cell`, `map_err` and `write_on`, each found in the invoking store's module,
//! and the SQL of `root_sql` and `mac_sql`.

/// `impl ServiceStore for $store`.
macro_rules! service_store {
    ($store:ty) => {
        impl $store {
            /// Record version `version` of a service key (`root_keys`, `mac_keys`) by its label,
            /// once.
            async fn ensure_service_key(
                &self,
                table: &str,
                version: i32,
                label: &str,
            ) -> Result<(), StoreError> {
                let q = format!(
                    "INSERT INTO {table} (version, label, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (version) DO NOTHING"
                );
                sqlx::query(&q)
                    .bind(version)
                    .bind(label)
                    .bind(Utc::now())
                    .write_on(self)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl ServiceStore for $store {
            async fn node_seen(
                &self,
                n: &NodeRecord,
                forget_before: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO nodes (node_id, address, version, token_label, ready, started_at, last_seen) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (node_id) DO UPDATE SET \
                     address = $2, version = $3, token_label = $4, ready = $5, started_at = $6, last_seen = $7",
                )
                .bind(&n.node_id)
                .bind(&n.address)
                .bind(&n.version)
                .bind(&n.token_label)
                .bind(n.ready)
                .bind(n.started_at)
                .bind(n.last_seen)
                .write_on(self)
                .await?;
                sqlx::query("DELETE FROM nodes WHERE last_seen < $1")
                    .bind(forget_before)
                    .write_on(self)
                    .await?;
                Ok(())
            }

            async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
                sqlx::query_as(
                    "SELECT node_id, address, version, token_label, ready, started_at, last_seen \
                     FROM nodes ORDER BY last_seen DESC, node_id LIMIT 1000",
                )
                .all(&self.pool)
                .await
            }

            async fn token_key_lock(&self, scope: &str) -> Result<Box<dyn HeldLock>, StoreError> {
                let tx = token_key_lock(self, scope).await?;
                Ok(Box::new(super::service::HeldTransaction(tx)))
            }

            async fn ensure_root_key(&self, version: i32, label: &str) -> Result<(), StoreError> {
                self.ensure_service_key("root_keys", version, label).await
            }

            async fn current_root_version(&self) -> Result<Option<i32>, StoreError> {
                let row = sqlx::query("SELECT max(version) AS v FROM root_keys")
                    .one(&self.pool)
                    .await?;
                cell(&row, "v")
            }

            async fn blobs_per_root(&self) -> Result<Vec<(i32, i64)>, StoreError> {
                let rows = sqlx::query(root_sql::BLOBS_PER_ROOT)
                    .all(&self.pool)
                    .await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "version")?, cell(r, "blobs")?)))
                    .collect()
            }

            async fn blobs_below_root(
                &self,
                version: i32,
                limit: i64,
            ) -> Result<Vec<BlobRef>, StoreError> {
                let mut out = Vec::new();
                for r in sqlx::query(root_sql::MATERIALS_BELOW)
                    .bind(version)
                    .bind(limit)
                    .all(&self.pool)
                    .await?
                {
                    out.push(BlobRef::Material(cell(&r, "key_id")?, cell(&r, "version")?));
                }
                for (sql, kind) in [
                    (root_sql::ACCESS_KEYS_BELOW, 0),
                    (root_sql::SESSIONS_BELOW, 1),
                    (root_sql::IMPORT_TOKENS_BELOW, 2),
                    (root_sql::KEY_STORE_PINS_BELOW, 3),
                ] {
                    for r in sqlx::query(sql)
                        .bind(version)
                        .bind(limit)
                        .all(&self.pool)
                        .await?
                    {
                        out.push(match kind {
                            0 => BlobRef::AccessKey(cell(&r, "access_key_id")?),
                            1 => BlobRef::Session(cell(&r, "access_key_id")?),
                            2 => BlobRef::ImportToken(cell(&r, "token_id")?),
                            _ => BlobRef::KeyStorePin(cell(&r, "custom_key_store_id")?),
                        });
                    }
                }
                Ok(out)
            }

            async fn rewrap_blob(
                &self,
                blob: &BlobRef,
                old_mac: &[u8],
                wrapped: &[u8],
                root_version: i32,
                mac: &[u8],
            ) -> Result<bool, StoreError> {
                let q = match blob {
                    BlobRef::Material(key_id, version) => sqlx::query(root_sql::REWRAP_MATERIAL)
                        .bind(*key_id)
                        .bind(*version),
                    BlobRef::AccessKey(id) => {
                        sqlx::query(root_sql::REWRAP_ACCESS_KEY).bind(id.clone())
                    }
                    BlobRef::Session(id) => sqlx::query(root_sql::REWRAP_SESSION).bind(id.clone()),
                    BlobRef::ImportToken(id) => {
                        sqlx::query(root_sql::REWRAP_IMPORT_TOKEN).bind(*id)
                    }
                    BlobRef::KeyStorePin(_) => {
                        return Err(StoreError::Other(
                            "a custom key store's PIN is re-wrapped by the domain".into(),
                        ))
                    }
                };
                let n = q
                    .bind(old_mac.to_vec())
                    .bind(wrapped.to_vec())
                    .bind(root_version)
                    .bind(mac.to_vec())
                    .write_on(self)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn ensure_mac_key(&self, version: i32, label: &str) -> Result<(), StoreError> {
                self.ensure_service_key("mac_keys", version, label).await
            }

            async fn current_mac_version(&self) -> Result<Option<i32>, StoreError> {
                let row = sqlx::query(mac_sql::CURRENT).one(&self.pool).await?;
                cell(&row, "v")
            }

            async fn mac_key_versions(&self) -> Result<Vec<i32>, StoreError> {
                let rows = sqlx::query(mac_sql::VERSIONS).all(&self.pool).await?;
                rows.iter().map(|r| cell(r, "version")).collect()
            }

            async fn macs_below(
                &self,
                version: i32,
                limit: i64,
            ) -> Result<Vec<MacRow>, StoreError> {
                let tag = mac_sql::tag(version);
                let mut out = Vec::new();
                for (i, (table, column, key)) in mac_sql::COLUMNS.iter().enumerate() {
                    let sql = mac_sql::select_below(table, column, key);
                    let rows = sqlx::query(&sql)
                        .bind(tag.clone())
                        .bind(limit)
                        .all(&self.pool)
                        .await?;
                    for r in rows {
                        let row = match *table {
                            "keys" => MacRow::Key(cell(&r, "key_id")?, KeyMac::ALL[i]),
                            "key_materials" => {
                                MacRow::Material(cell(&r, "key_id")?, cell(&r, "version")?)
                            }
                            "key_imports" => MacRow::ImportRecord(cell(&r, "key_id")?, 1),
                            "key_material_imports" => {
                                MacRow::ImportRecord(cell(&r, "key_id")?, cell(&r, "version")?)
                            }
                            "import_tokens" => MacRow::ImportToken(cell(&r, "token_id")?),
                            "grants" => MacRow::Grant(cell(&r, "grant_id")?),
                            "principals" => MacRow::Principal(cell(&r, "arn")?),
                            "aliases" => MacRow::Alias(
                                cell(&r, "account_id")?,
                                cell(&r, "region")?,
                                cell(&r, "alias_name")?,
                            ),
                            "access_keys" => MacRow::AccessKey(cell(&r, "access_key_id")?),
                            "sessions" => MacRow::Session(cell(&r, "access_key_id")?),
                            _ => MacRow::CustomKeyStore(cell(&r, "custom_key_store_id")?),
                        };
                        if !out.contains(&row) {
                            out.push(row);
                        }
                    }
                }
                Ok(out)
            }

            async fn count_macs_below(&self, version: i32) -> Result<i64, StoreError> {
                let tag = mac_sql::tag(version);
                let mut n = 0i64;
                let (t, c, _) = mac_sql::OUTBOX;
                for (table, column) in mac_sql::COLUMNS
                    .iter()
                    .map(|(t, c, _)| (*t, *c))
                    .chain([(t, c)])
                {
                    let sql = mac_sql::count_below(table, column);
                    let row = sqlx::query(&sql).bind(tag.clone()).one(&self.pool).await?;
                    n += sqlx::Row::try_get::<i64, _>(&row, 0).map_err(map_err)?;
                }
                Ok(n)
            }

            async fn remac(
                &self,
                row: &MacRow,
                old: &[u8],
                new: &[u8],
                check: Option<&[u8]>,
            ) -> Result<bool, StoreError> {
                let column = |table: &str, column: &str| {
                    let (t, c, k) = mac_sql::COLUMNS
                        .iter()
                        .find(|(t, c, _)| *t == table && *c == column)
                        .expect("a MAC'd column");
                    mac_sql::update(t, c, k)
                };
                let sql = match (row, check) {
                    (MacRow::ImportRecord(_, v), Some(_)) => mac_sql::update_import_record(*v),
                    (MacRow::Key(_, part), _) => column("keys", part.column()),
                    (MacRow::Material(..), _) => column("key_materials", "mac"),
                    (MacRow::ImportRecord(_, v), None) => {
                        let (table, _) = crate::store::key_imports::import_record_at(*v);
                        let (t, c, k) = mac_sql::COLUMNS
                            .iter()
                            .find(|(t, c, _)| *t == table && *c == "mac")
                            .expect("a MAC'd column");
                        let sql = mac_sql::update(t, c, k);
                        if *v == 1 {
                            // `key_imports` names its row by key alone: the version bound
                            // (`$4`) is checked, not a column.
                            sql + " AND $4 = 1"
                        } else {
                            sql
                        }
                    }
                    (MacRow::ImportToken(_), _) => column("import_tokens", "mac"),
                    (MacRow::Grant(_), _) => column("grants", "mac"),
                    (MacRow::Principal(_), _) => column("principals", "authz_mac"),
                    (MacRow::Alias(..), _) => column("aliases", "mac"),
                    (MacRow::AccessKey(_), _) => column("access_keys", "mac"),
                    (MacRow::Session(_), _) => column("sessions", "mac"),
                    (MacRow::CustomKeyStore(_), _) => column("custom_key_stores", "mac"),
                };
                let q = sqlx::query(&sql).bind(new.to_vec()).bind(old.to_vec());
                let q = match row {
                    MacRow::Key(id, _) | MacRow::ImportToken(id) => q.bind(*id),
                    MacRow::Material(id, v) | MacRow::ImportRecord(id, v) => q.bind(*id).bind(*v),
                    MacRow::Grant(id)
                    | MacRow::Principal(id)
                    | MacRow::AccessKey(id)
                    | MacRow::Session(id)
                    | MacRow::CustomKeyStore(id) => q.bind(id.clone()),
                    MacRow::Alias(a, r, n) => q.bind(a.clone()).bind(r.clone()).bind(n.clone()),
                };
                let q = match check {
                    Some(c) => q.bind(c.to_vec()),
                    None => q,
                };
                Ok(q.write_on(self).await?.rows_affected() == 1)
            }

            async fn forget_mac_key(&self, version: i32) -> Result<bool, StoreError> {
                let n = sqlx::query(mac_sql::FORGET)
                    .bind(version)
                    .write_on(self)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }

            async fn forget_root_key(&self, version: i32) -> Result<bool, StoreError> {
                let n = sqlx::query(root_sql::FORGET_ROOT)
                    .bind(version)
                    .write_on(self)
                    .await?
                    .rows_affected();
                Ok(n == 1)
            }
        }
    };
}

pub(crate) use service_store;

/// A lock held as an open transaction that wrote nothing: released by rolling it back (or
/// by dropping it, which rolls it back when its connection is next used).
pub(super) struct HeldTransaction<DB: sqlx::Database>(pub sqlx::Transaction<'static, DB>);

#[async_trait::async_trait]
impl<DB: sqlx::Database> super::HeldLock for HeldTransaction<DB> {
    async fn release(self: Box<Self>) -> Result<(), super::StoreError> {
        self.0
            .rollback()
            .await
            .map_err(|e| super::StoreError::Unavailable(e.to_string()))
    }
}
