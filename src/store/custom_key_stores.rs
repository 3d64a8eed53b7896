//! [`CustomKeyStores`](super::CustomKeyStores), written once for both stores (one SQL text per
//! statement, `$N` placeholders), and its row.

use chrono::{DateTime, Utc};

/// A custom key store as stored. `connection_state` is AWS's word (`CONNECTED`,
/// `DISCONNECTED`, `FAILED`…), `connection_error` AWS's `ConnectionErrorCode` of the last
/// failed connection. The PIN (`KeyStorePassword`) is `password_ciphertext` (IV, AES-GCM
/// ciphertext and tag) under the AES key `password_key`, wrapped by the service token's root
/// key of `password_root_version`.
#[derive(Clone, PartialEq, sqlx::FromRow)]
pub struct CustomKeyStoreRecord {
    pub custom_key_store_id: String,
    pub account_id: String,
    pub region: String,
    pub name: String,
    pub store_type: String,
    pub cluster_id: Option<String>,
    pub trust_anchor: Option<String>,
    pub password_key: Option<Vec<u8>>,
    pub password_root_version: Option<i32>,
    pub password_ciphertext: Option<Vec<u8>>,
    pub connection_state: String,
    pub connection_error: Option<String>,
    /// `EXTERNAL_KEY_STORE`: the proxy's `XksProxyUriEndpoint`, `XksProxyUriPath`, the
    /// credential's `AccessKeyId` (its secret is sealed as the PIN is), `XksProxyConnectivity`.
    pub xks_uri_endpoint: Option<String>,
    pub xks_uri_path: Option<String>,
    pub xks_access_key_id: Option<String>,
    pub xks_connectivity: Option<String>,
    pub created_at: DateTime<Utc>,
    /// MAC (computed in the token) over every column but `connection_error`.
    pub mac: Vec<u8>,
}

impl std::fmt::Debug for CustomKeyStoreRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomKeyStoreRecord")
            .field("custom_key_store_id", &self.custom_key_store_id)
            .field("name", &self.name)
            .field("cluster_id", &self.cluster_id)
            .field("connection_state", &self.connection_state)
            .finish_non_exhaustive()
    }
}

pub(super) const CUSTOM_KEY_STORE_COLUMNS: &str = "custom_key_store_id, account_id, region, \
    name, store_type, cluster_id, trust_anchor, password_key, password_root_version, \
    password_ciphertext, connection_state, connection_error, created_at, mac, xks_uri_endpoint, \
    xks_uri_path, xks_access_key_id, xks_connectivity";

/// The row's insert, its columns in [`CUSTOM_KEY_STORE_COLUMNS`]' order.
pub(super) fn insert_custom_key_store_sql() -> String {
    format!(
        "INSERT INTO custom_key_stores ({CUSTOM_KEY_STORE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
    )
}

/// A store's row deleted only as it was read (its seal unchanged): the compare of a
/// compare-and-set.
pub(super) const DELETE_IF_UNCHANGED: &str =
    "DELETE FROM custom_key_stores WHERE custom_key_store_id = $1 AND mac = $2";

/// The compare-and-set's verdict: `Conflict` unless exactly the row read was replaced.
pub(super) fn unchanged(rows: u64) -> Result<(), super::StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(super::StoreError::Conflict {
            constraint: "custom_key_store_changed".into(),
        })
    }
}

/// `impl CustomKeyStores for $store`, from the invoking store's `begin_write`, `commit`,
/// `map_err` and `Read`.
macro_rules! custom_key_store_store {
    ($store:ty) => {
        /// Write a store's row in `tx`.
        async fn insert_store_row(
            tx: &mut Tx<'_>,
            r: &CustomKeyStoreRecord,
        ) -> Result<(), StoreError> {
            sqlx::query(&insert_custom_key_store_sql())
                .bind_store(r)
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
            Ok(())
        }

        #[async_trait]
        impl CustomKeyStores for $store {
            async fn insert_custom_key_store(
                &self,
                r: &CustomKeyStoreRecord,
                max: i64,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM custom_key_stores WHERE account_id = $1 AND region = $2",
                )
                .bind(&r.account_id)
                .bind(&r.region)
                .one(&mut *tx).await?;
                if n >= max {
                    return Err(quota_exceeded());
                }
                insert_store_row(&mut tx, r).await?;
                self.commit(tx).await
            }

            async fn custom_key_stores(
                &self,
                account_id: &str,
                region: &str,
            ) -> Result<Vec<CustomKeyStoreRecord>, StoreError> {
                let q = format!(
                    "SELECT {CUSTOM_KEY_STORE_COLUMNS} FROM custom_key_stores \
                     WHERE account_id = $1 AND region = $2 ORDER BY created_at, custom_key_store_id"
                );
                sqlx::query_as(&q).bind(account_id).bind(region).all(&self.pool).await
            }

            async fn custom_key_store(
                &self,
                id: &str,
            ) -> Result<Option<CustomKeyStoreRecord>, StoreError> {
                let q = format!(
                    "SELECT {CUSTOM_KEY_STORE_COLUMNS} FROM custom_key_stores WHERE custom_key_store_id = $1"
                );
                sqlx::query_as(&q).bind(id).maybe(&self.pool).await
            }

            async fn update_custom_key_store(
                &self,
                r: &CustomKeyStoreRecord,
                expected_mac: &[u8],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(DELETE_IF_UNCHANGED)
                    .bind(&r.custom_key_store_id)
                    .bind(expected_mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                unchanged(done.rows_affected())?;
                insert_store_row(&mut tx, r).await?;
                self.commit(tx).await
            }

            async fn delete_custom_key_store(
                &self,
                id: &str,
                expected_mac: &[u8],
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let n: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM keys WHERE custom_key_store_id = $1")
                        .bind(id)
                        .one(&mut *tx).await?;
                if n > 0 {
                    return Err(StoreError::Conflict {
                        constraint: "custom_key_store_has_keys".into(),
                    });
                }
                let done = sqlx::query(DELETE_IF_UNCHANGED)
                    .bind(id)
                    .bind(expected_mac)
                    .execute(&mut *tx)
                    .await
                    .map_err(map_err)?;
                unchanged(done.rows_affected())?;
                self.commit(tx).await
            }

            async fn connected_custom_key_stores(&self) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar(
                    "SELECT custom_key_store_id FROM custom_key_stores WHERE connection_state = 'CONNECTED'",
                )
                .all(&self.pool).await
            }

            async fn keys_in_custom_key_store(&self, id: &str) -> Result<i64, StoreError> {
                sqlx::query_scalar("SELECT count(*) FROM keys WHERE custom_key_store_id = $1")
                    .bind(id)
                    .one(&self.pool).await
            }
        }
    };
}
pub(super) use custom_key_store_store;

/// Binds a row's columns in [`CUSTOM_KEY_STORE_COLUMNS`]' order.
pub(super) trait BindStore<'q> {
    fn bind_store(self, r: &'q CustomKeyStoreRecord) -> Self;
}

impl<'q, DB: sqlx::Database> BindStore<'q>
    for sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<Vec<u8>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i32>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DateTime<Utc>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    fn bind_store(self, r: &'q CustomKeyStoreRecord) -> Self {
        self.bind(r.custom_key_store_id.clone())
            .bind(r.account_id.clone())
            .bind(r.region.clone())
            .bind(r.name.clone())
            .bind(r.store_type.clone())
            .bind(r.cluster_id.clone())
            .bind(r.trust_anchor.clone())
            .bind(r.password_key.clone())
            .bind(r.password_root_version)
            .bind(r.password_ciphertext.clone())
            .bind(r.connection_state.clone())
            .bind(r.connection_error.clone())
            .bind(r.created_at)
            .bind(r.mac.clone())
            .bind(r.xks_uri_endpoint.clone())
            .bind(r.xks_uri_path.clone())
            .bind(r.xks_access_key_id.clone())
            .bind(r.xks_connectivity.clone())
    }
}
