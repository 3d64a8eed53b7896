//! The only code that speaks SQL. The domain layer sees [`Store`] and the repository traits
//! (`traits/`, one file per area, re-exported here) with their rows (`records.rs`) and errors
//! (`error.rs`); `schema.rs` judges schema versions. Each trait is written once for both
//! databases (`keys.rs`, `grants.rs`, `identity.rs`, `service.rs`, `audit.rs`: one SQL text
//! per statement; `writes.rs`: the helpers their write transactions share); `postgres.rs` and
//! `sqlite.rs` hold what really differs between them and each store's change feed.

mod aliases;
mod audit;
mod custom_key_stores;
mod error;
mod grants;
mod identity;
mod key_imports;
mod key_rotations;
mod keys;
mod postgres;
mod records;
mod rows;
mod schema;
mod service;
mod sqlite;
mod traits;
mod writes;

pub use custom_key_stores::CustomKeyStoreRecord;
pub(crate) use grants::{sessions_of, GRANTS_TO_PRINCIPAL};

/// Every repository written once for both dialects, implemented for `$store` in its dialect's
/// module (whose `Tx`, `map_err`, locks and SQL pieces the bodies use).
macro_rules! repositories {
    ($store:ty) => {
        super::grants::grant_store!($store);
        super::service::service_store!($store);
        super::identity::identity_store!($store);
        super::audit::audit_store!($store);
        super::keys::key_store!($store);
        super::custom_key_stores::custom_key_store_store!($store);
        super::schema::schema_lookups!($store);
        super::writes::write_helpers!();
        super::rows::row_readers!();
    };
}
pub use error::*;
pub use records::*;
use repositories;
pub use schema::*;
pub use traits::*;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub use crate::vocab::{KeySpec, KeyState, KeyUsage, Origin, Tag};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Every repository of one database, and what the application needs besides: `domain` picks the
/// backend from the URL (`postgres://…` or `sqlite://…`) and sees only this.
#[async_trait]
pub trait Store:
    KeyStore + IdentityStore + ServiceStore + GrantStore + AuditStore + CustomKeyStores
{
    /// Apply the migrations this build has.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Whether the schema exists (`kms init` ran against this database).
    async fn is_initialised(&self) -> Result<bool, StoreError>;
    /// What every process changes from now on, as it is announced (a key, a grant, an alias,
    /// an identity), and `Missed` when announcements may have been lost (the feed broke and
    /// resumed): Postgres LISTEN/NOTIFY, listened to again on whichever host takes writes;
    /// the embedded store's `changes` table, polled every 100 ms. Ends only with the process.
    async fn changes(&self) -> Result<tokio::sync::mpsc::Receiver<Change>, StoreError>;
    /// Keep the connections on the database host that takes writes, checking every `every`
    /// (Postgres with several hosts; nothing to do otherwise).
    fn follow_primary(&self, _every: std::time::Duration) {}
    /// `Postgres` or `SQLite`, for messages.
    fn kind(&self) -> &'static str;
}

/// One announcement of [`Store::changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Something changed: its channel (`kms_key_changed`, `kms_grant_changed`,
    /// `kms_alias_changed`, `kms_identity_changed`) and payload (the key id, if any).
    Changed { channel: String, payload: String },
    /// Announcements may have been lost: everything cached may be stale.
    Missed,
}

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        PgStore::migrate(self).await
    }
    async fn is_initialised(&self) -> Result<bool, StoreError> {
        PgStore::is_initialised(self).await
    }
    async fn changes(&self) -> Result<tokio::sync::mpsc::Receiver<Change>, StoreError> {
        PgStore::changes(self).await
    }
    fn follow_primary(&self, every: std::time::Duration) {
        PgStore::follow_primary(self, every)
    }
    fn kind(&self) -> &'static str {
        "Postgres"
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        SqliteStore::migrate(self).await
    }
    async fn is_initialised(&self) -> Result<bool, StoreError> {
        SqliteStore::is_initialised(self).await
    }
    async fn changes(&self) -> Result<tokio::sync::mpsc::Receiver<Change>, StoreError> {
        SqliteStore::changes(self).await
    }
    fn kind(&self) -> &'static str {
        "SQLite"
    }
}

/// Connect to the database `url` names: SQLite for `sqlite:` URLs, else Postgres.
/// `commit_timeout`: how long a Postgres commit may wait for its confirmation (a synchronous
/// standby's) before it is reported as the database being unavailable.
pub async fn connect(
    url: &str,
    max_connections: u32,
    commit_timeout: std::time::Duration,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect(url, max_connections).await?,
        ))
    } else {
        Ok(std::sync::Arc::new(
            PgStore::connect(url, max_connections)
                .await?
                .with_commit_timeout(commit_timeout),
        ))
    }
}

/// How far below the customer managed keys quota CreateKey trusts the count the triggers keep
/// (`quota_usage`) without taking the quota's lock: more creations than this never race.
pub(crate) const QUOTA_EXACT_MARGIN: i64 = 1024;

#[cfg(test)]
pub(crate) mod contract;
