//! [`ServiceStore`](super::ServiceStore) (the service's own keys: root key versions, the
//! re-wrap of every stored blob, metadata MAC key versions and the re-MAC), written once for
//! both stores: one SQL text per statement (`$N` placeholders), one method body. It uses the
//! store's `pool`, `cell`, `map_err`, `write_on` and the `mac_*` methods of
//! `mac_key_methods!`, each found in the invoking store's module.

/// `impl ServiceStore for $store`.
macro_rules! service_store {
    ($store:ty) => {
        #[async_trait]
        impl ServiceStore for $store {
            async fn ensure_root_key(&self, version: i32, label: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO root_keys (version, label, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(version)
                .bind(label)
                .bind(Utc::now())
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn current_root_version(&self) -> Result<Option<i32>, StoreError> {
                let row = sqlx::query("SELECT max(version) AS v FROM root_keys")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(map_err)?;
                cell(&row, "v")
            }

            async fn blobs_per_root(&self) -> Result<Vec<(i32, i64)>, StoreError> {
                let rows = sqlx::query(root_sql::BLOBS_PER_ROOT)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?;
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
                    .fetch_all(&self.pool)
                    .await
                    .map_err(map_err)?
                {
                    out.push(BlobRef::Material(cell(&r, "key_id")?, cell(&r, "version")?));
                }
                for (sql, kind) in [
                    (root_sql::ACCESS_KEYS_BELOW, 0),
                    (root_sql::SESSIONS_BELOW, 1),
                    (root_sql::IMPORT_TOKENS_BELOW, 2),
                ] {
                    for r in sqlx::query(sql)
                        .bind(version)
                        .bind(limit)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(map_err)?
                    {
                        out.push(match kind {
                            0 => BlobRef::AccessKey(cell(&r, "access_key_id")?),
                            1 => BlobRef::Session(cell(&r, "access_key_id")?),
                            _ => BlobRef::ImportToken(cell(&r, "token_id")?),
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
                sqlx::query(
                    "INSERT INTO mac_keys (version, label, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(version)
                .bind(label)
                .bind(Utc::now())
                .write_on(self)
                .await?;
                Ok(())
            }

            async fn current_mac_version(&self) -> Result<Option<i32>, StoreError> {
                self.mac_current_mac_version().await
            }

            async fn mac_key_versions(&self) -> Result<Vec<i32>, StoreError> {
                self.mac_mac_key_versions().await
            }

            async fn macs_below(
                &self,
                version: i32,
                limit: i64,
            ) -> Result<Vec<MacRow>, StoreError> {
                self.mac_macs_below(version, limit).await
            }

            async fn count_macs_below(&self, version: i32) -> Result<i64, StoreError> {
                self.mac_count_macs_below(version).await
            }

            async fn remac(
                &self,
                row: &MacRow,
                old: &[u8],
                new: &[u8],
                check: Option<&[u8]>,
            ) -> Result<bool, StoreError> {
                self.mac_remac(row, old, new, check).await
            }

            async fn forget_mac_key(&self, version: i32) -> Result<bool, StoreError> {
                self.mac_forget_mac_key(version).await
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
