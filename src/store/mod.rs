//! The only code that speaks SQL. The domain layer sees the repository traits below. Each trait
//! is written once for both databases (`keys.rs`, `grants.rs`, `identity.rs`, `service.rs`,
//! `audit.rs`: one SQL text per statement); `postgres.rs` and `sqlite.rs` hold what really
//! differs between them and each store's change feed.

mod audit;
mod grants;
mod identity;
mod keys;
mod postgres;
mod service;
mod sqlite;
mod writes;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub use crate::vocab::{KeySpec, KeyState, KeyUsage, Origin, Tag};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::fmt;
use uuid::Uuid;

/// Every repository of one database, and what the application needs besides: `domain` picks the
/// backend from the URL (`postgres://…` or `sqlite://…`) and sees only this.
#[async_trait]
pub trait Store: KeyStore + IdentityStore + ServiceStore + GrantStore + AuditStore {
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

/// Readiness of a schema: every migration this build has (`known`) is among those the
/// database records as applied, and the database records none this build does not know
/// unless the schema floor says every later migration is additive for this build (a newer
/// release beside this one during a rolling upgrade).
pub(crate) fn migrations_current(
    known: &[i64],
    applied: &[i64],
    floor: Option<i64>,
) -> Result<(), StoreError> {
    if let Some(missing) = known.iter().find(|v| !applied.contains(v)) {
        return Err(StoreError::Other(format!(
            "migration {missing} is not applied"
        )));
    }
    let build = known.iter().copied().max().unwrap_or(0);
    let newer_allowed = floor.is_some_and(|f| f <= build);
    let admitted = |v: i64| known.contains(&v) || (newer_allowed && v > build);
    if let Some(unknown) = applied.iter().find(|v| !admitted(**v)) {
        return Err(StoreError::Other(format!(
            "the database has migration {unknown}, which this build does not know"
        )));
    }
    Ok(())
}

/// The schema versions this build migrates to: the highest migration of `sql/` (Postgres)
/// and of `sql/sqlite/` (a unit test keeps them equal to the migrations).
pub const SCHEMA_POSTGRES: i64 = 29;
pub const SCHEMA_SQLITE: i64 = 16;

/// `kms --version`: the release and the schema versions it migrates to.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (schema: Postgres 29, SQLite 16)"
);

/// A database's schema as this build sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersions {
    /// The schema this build migrates to.
    pub build: i64,
    /// The highest migration applied (0 for an empty database).
    pub database: i64,
    /// The oldest release schema that may still run against the database (`schema_floor`):
    /// every migration above it only added (expand), so a binary of that schema or newer
    /// reads and writes what it knows unchanged. A contract migration (one that drops or
    /// changes what an older binary uses) raises it. `None` before the table existed.
    pub floor: Option<i64>,
}

/// Refuse a database this build cannot run against: one a newer release migrated with a
/// migration that is not additive for this build (the floor above this build's schema, or a
/// database from before the floor was recorded). A newer schema whose every migration beyond
/// this build's is additive is served, so old and new binaries run side by side during a
/// rolling upgrade.
pub fn refuse_newer_schema(v: SchemaVersions) -> Result<(), String> {
    let SchemaVersions {
        build,
        database,
        floor,
    } = v;
    if database <= build {
        return Ok(());
    }
    match floor {
        Some(f) if f <= build => Ok(()),
        Some(f) => Err(format!(
            "the database's schema is at version {database} and no longer runs releases below schema {f} (a newer release contracted it); this build is at {build}: run a release at schema {f} or newer"
        )),
        None => Err(format!(
            "the database's schema is at version {database}, newer than this build's {build}: a newer release migrated it; run that release (or a newer one), not this one"
        )),
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

/// The constraint a `Conflict` names when a resource quota (keys per region, grants per key,
/// aliases per region) refused the insert.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

#[derive(Debug)]
pub enum StoreError {
    /// A uniqueness or foreign-key constraint refused the write; carries the constraint name.
    Conflict { constraint: String },
    /// The database could not be reached or is shutting down (by SQLSTATE class or I/O).
    Unavailable(String),
    /// A row holds a value the service never writes (a key state that is not one of AWS's):
    /// it was written by someone else, and what depends on it is refused.
    Invalid(String),
    /// Anything else; logged, never shown to a client.
    Other(String),
}

/// The words of [`crate::vocab`] are stored as AWS writes them (`PendingDeletion`,
/// `AWS_KMS`); a row holding any other word fails to load ([`StoreError::Invalid`]).
macro_rules! stored_as_text {
    ($($t:ty),+) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $t
        where
            str: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <str as sqlx::Type<DB>>::type_info()
            }

            fn compatible(ty: &DB::TypeInfo) -> bool {
                <str as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $t
        where
            &'q str: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer<'q>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&'q str as sqlx::Encode<'q, DB>>::encode(self.as_str(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $t
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                Ok(<&'r str as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
            }
        }
    )+};
}

stored_as_text!(KeyState, Origin, KeyUsage, KeySpec);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict { constraint } => {
                write!(f, "constraint {constraint} refused the write")
            }
            StoreError::Unavailable(s) => write!(f, "database unavailable: {s}"),
            StoreError::Invalid(s) => write!(f, "a row the service did not write: {s}"),
            StoreError::Other(s) => write!(f, "database error: {s}"),
        }
    }
}
impl std::error::Error for StoreError {}

#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key_id: Uuid,
    pub account_id: String,
    pub region: String,
    pub description: String,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    pub key_manager: String,
    pub key_state: KeyState,
    pub policy: String,
    pub multi_region: bool,
    pub current_version: i32,
    pub created_at: DateTime<Utc>,
    /// When a key pending deletion will be deleted.
    pub deletion_date: Option<DateTime<Utc>>,
    pub rotation_enabled: bool,
    pub rotation_period_days: Option<i32>,
    pub next_rotation_date: Option<DateTime<Utc>>,
    pub on_demand_rotations: i32,
    /// A multi-Region key's shared id (the `mrk-…` key id), the same in every region.
    pub mrk_id: Option<Uuid>,
    /// Whether this is the primary of its multi-Region key.
    pub mrk_primary: bool,
    /// For a primary pending replica deletion: the waiting period once its replicas are gone.
    pub pending_window_days: Option<i32>,
    /// MAC (computed in the token) over the key's identity and its policy.
    pub policy_mac: Option<Vec<u8>>,
    /// MAC (computed in the token) over the key's identity, state and deletion date.
    pub state_mac: Option<Vec<u8>>,
    /// MAC (computed in the token) over the key's identity and its whole set of tags.
    pub tags_mac: Option<Vec<u8>>,
    /// MAC (computed in the token) over what the key is, fixed at creation: spec, usage,
    /// origin, manager and multi-Region family.
    pub attrs_mac: Option<Vec<u8>>,
    /// MAC (computed in the token) over what changes as the key is rotated or its multi-Region
    /// primary moves: current material version, rotation schedule, on-demand rotation count,
    /// primary flag.
    pub rotation_mac: Option<Vec<u8>>,
}

/// A key's new rotation state (current material version, schedule, on-demand count, primary
/// flag) with its MAC, written only where the row still carries `expected_mac` (the MAC the
/// caller verified); otherwise the write is a `Conflict` ([`ROTATION_STATE_CHANGED`]).
#[derive(Clone, Debug)]
pub struct RotationUpdate {
    pub key_id: Uuid,
    pub expected_mac: Vec<u8>,
    pub current_version: i32,
    pub rotation_enabled: bool,
    pub rotation_period_days: Option<i32>,
    pub next_rotation_date: Option<DateTime<Utc>>,
    pub on_demand_rotations: i32,
    pub mrk_primary: bool,
    pub mac: Vec<u8>,
}

/// The constraint a `Conflict` names when a key's rotation state changed after it was read.
pub const ROTATION_STATE_CHANGED: &str = "rotation_state_changed";

/// A wrapping key pair handed out by `GetParametersForImport`.
#[derive(Clone, Debug)]
pub struct ImportTokenRecord {
    pub token_id: Uuid,
    pub key_id: Uuid,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
    pub wrapped_private: Vec<u8>,
    pub root_version: i32,
    pub valid_to: DateTime<Utc>,
    pub mac: Vec<u8>,
}

/// What was imported into a key with origin `EXTERNAL`.
#[derive(Clone, Debug)]
pub struct KeyImportRecord {
    pub key_id: Uuid,
    /// A keyed check value of the material, computed in the token.
    pub material_check: Vec<u8>,
    /// Of the current import; `None` while the key is pending import.
    pub expiration_model: Option<String>,
    pub valid_to: Option<DateTime<Utc>>,
    pub mac: Vec<u8>,
}

/// One rotation of a key: the material version it created.
#[derive(Debug, Clone)]
pub struct RotationRecord {
    pub version: i32,
    pub rotation_type: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasRecord {
    pub alias_name: String,
    pub key_id: Uuid,
    pub account_id: String,
    pub region: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The target's multi-Region id, if it is a multi-Region key (filled by listings).
    pub target_mrk: Option<Uuid>,
    /// MAC over account, region, name and target (empty: none stored).
    pub mac: Vec<u8>,
}

/// One version of a key's material, wrapped by the HSM.
#[derive(Clone)]
pub struct MaterialRecord {
    pub key_id: Uuid,
    pub version: i32,
    pub wrapped: Vec<u8>,
    pub root_version: i32,
    pub mac: Vec<u8>,
    /// For a key pair: the public key, X.509 SubjectPublicKeyInfo DER.
    pub public_key: Option<Vec<u8>>,
}

impl fmt::Debug for MaterialRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaterialRecord")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct AccessKeyRecord {
    pub access_key_id: String,
    pub principal_arn: String,
    pub account_id: String,
    pub status: String,
    pub secret_blob: Vec<u8>,
    pub root_version: i32,
    pub mac: Vec<u8>,
}

impl fmt::Debug for AccessKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKeyRecord")
            .field("access_key_id", &self.access_key_id)
            .field("principal_arn", &self.principal_arn)
            .finish_non_exhaustive()
    }
}

/// A grant as stored. `constraints` is the JSON of `GrantConstraints`, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantRecord {
    pub grant_id: String,
    pub key_id: Uuid,
    pub name: Option<String>,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    pub operations: Vec<String>,
    pub constraints: Option<serde_json::Value>,
    pub issuing_account: String,
    pub created_at: DateTime<Utc>,
    /// MAC (computed in the token) over everything the grant allows.
    pub mac: Vec<u8>,
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Insert a grant unless its key has `max_grants` already (counted in the same
    /// transaction, serialised across nodes): `Conflict` ([`QUOTA_EXCEEDED`]).
    async fn insert_grant(&self, g: &GrantRecord, max_grants: i64) -> Result<(), StoreError>;
    async fn grants_of_key(&self, key_id: Uuid) -> Result<Vec<GrantRecord>, StoreError>;
    /// The bodies of the trail's `GrantEnded` events of the key `arn` (grants retired or
    /// revoked).
    async fn ended_grants_per_trail(&self, arn: &str) -> Result<Vec<String>, StoreError>;
    async fn grant(&self, grant_id: &str) -> Result<Option<GrantRecord>, StoreError>;
    async fn grants_retirable_by(&self, principal: &str) -> Result<Vec<GrantRecord>, StoreError>;
    /// Delete a grant; false if it did not exist.
    async fn delete_grant(&self, grant_id: &str) -> Result<bool, StoreError>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    /// For readiness: the database answers, and its schema is the one this build migrates to
    /// (every migration this build has is applied, none it does not know of).
    async fn readiness(&self) -> Result<(), StoreError>;
    /// The schema version this build migrates to, the database's (the highest migration
    /// applied; 0 for an empty database) and its floor.
    async fn schema_versions(&self) -> Result<SchemaVersions, StoreError>;
    /// Insert a key with its first material (none for a key pending import) and tags, in one
    /// transaction that also counts the customer managed keys of its account and region
    /// (every node's, serialised with other writers of the same quota): `Conflict`
    /// ([`QUOTA_EXCEEDED`]) if there are `max_keys` already.
    async fn create_key(
        &self,
        key: &KeyRecord,
        material: Option<&MaterialRecord>,
        tags: &[Tag],
        max_keys: i64,
    ) -> Result<(), StoreError>;
    async fn insert_import_token(&self, t: &ImportTokenRecord) -> Result<(), StoreError>;
    /// Import tokens of an account's keys in a region valid beyond `valid_to_after` (tokens
    /// issued since then: their validity is fixed), on every node: the
    /// `GetParametersForImport` rate.
    async fn count_import_tokens_since(
        &self,
        account_id: &str,
        region: &str,
        valid_to_after: DateTime<Utc>,
    ) -> Result<i64, StoreError>;
    async fn import_token(&self, token_id: Uuid) -> Result<Option<ImportTokenRecord>, StoreError>;
    async fn key_import(&self, key_id: Uuid) -> Result<Option<KeyImportRecord>, StoreError>;
    /// The same material imported again into an enabled key: its new `ExpirationModel` and
    /// `ValidTo` (`imp`, whose `material_check` must be the stored one). False if the key is
    /// no longer enabled or holds other material.
    async fn update_import_expiration(&self, imp: &KeyImportRecord) -> Result<bool, StoreError>;
    /// Make imported material the key's material, in one transaction: only while the key is
    /// pending import (else `Conflict`); the key becomes `Enabled` with `state_mac`, and its
    /// current version the material's (`rotation`).
    async fn import_material(
        &self,
        m: &MaterialRecord,
        imp: &KeyImportRecord,
        state_mac: &[u8],
        rotation: &RotationUpdate,
    ) -> Result<(), StoreError>;
    /// Delete a key's imported material, recording `imp`, and move the key from `from_state`
    /// to `to_state` (`state_mac`): pending import, or still pending deletion. `Conflict` if
    /// the key is no longer in `from_state`, or, with `expired_at`, if the import had not
    /// expired by then (so one node expires it).
    async fn delete_imported_material(
        &self,
        imp: &KeyImportRecord,
        from_state: KeyState,
        to_state: KeyState,
        state_mac: &[u8],
        expired_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// Keys whose imported material expired by `now`.
    async fn expired_imports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError>;
    /// Every key of every account and region, by id (backup verification).
    async fn all_key_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    /// Every key with an import row, whatever its columns say (the expiry job judges each by
    /// its verified row, not by a column a database writer could change).
    async fn import_key_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    async fn key(&self, key_id: Uuid) -> Result<Option<KeyRecord>, StoreError>;
    /// Insert an AWS managed key with its first material and its `alias/aws/…` alias in one
    /// transaction; `Conflict` if the alias exists (another request created it first).
    async fn create_managed_key(
        &self,
        key: &KeyRecord,
        material: &MaterialRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError>;
    /// Keys of one account in one region, ordered by id, after `after`.
    async fn list_keys(
        &self,
        account_id: &str,
        region: &str,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    async fn tags(&self, key_id: Uuid) -> Result<Vec<Tag>, StoreError>;
    /// Customer managed keys of an account in a region, in any state, as the database's
    /// triggers count them (`quota_usage`): the key quota's quick refusal.
    async fn count_customer_keys(&self, account_id: &str, region: &str) -> Result<i64, StoreError>;
    /// Whether the audit trail records the deletion of the key `arn` (a `DeleteKey` event)
    /// after `created_at`.
    async fn deleted_per_trail(
        &self,
        arn: &str,
        created_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The bodies of the trail's latest `InvocationsLeased` events (at most `limit`, newest
    /// first) of the material `material_id`.
    async fn leases_per_trail(
        &self,
        material_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// The highest generation the trail's events name for each of `rows` (rows it names
    /// nowhere are left out).
    async fn generations_per_trail(
        &self,
        rows: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Keys (of every account) whose policy text contains `text`.
    async fn keys_whose_policy_contains(&self, text: &str) -> Result<Vec<KeyRecord>, StoreError>;
    /// Replace a key's policy with `policy` and its MAC, provided the stored policy MAC is
    /// still `expected_mac` (the policy the domain verified): false (nothing written)
    /// otherwise, so two racing writes never both land on the same generation.
    async fn set_key_policy(
        &self,
        key_id: Uuid,
        expected_mac: Option<&[u8]>,
        policy: &str,
        policy_mac: &[u8],
    ) -> Result<bool, StoreError>;
    /// Keys whose policy has no MAC yet (created before policies had one).
    async fn keys_without_policy_mac(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Seal a key policy stored without a MAC, only if it is still unsealed and still `policy`.
    async fn set_policy_mac(
        &self,
        key_id: Uuid,
        policy: &str,
        policy_mac: &[u8],
    ) -> Result<bool, StoreError>;
    /// Add a new material version and make it current, in one transaction: one record per
    /// key that shares the material (several for a multi-Region key `mrk`, whose related keys
    /// must be exactly the records' keys, else `Conflict`), with each key's new rotation state
    /// (`updates`: current version, schedule, on-demand count; each written only where the row
    /// still carries the MAC it was verified with). `scheduled`: the scheduled rotation, which
    /// commits only while the rotated key (the first record's) is still enabled (else
    /// `Conflict`); its replicas follow in any state.
    async fn add_material(
        &self,
        ms: &[MaterialRecord],
        mrk: Option<Uuid>,
        rotation_type: &str,
        scheduled: bool,
        updates: &[RotationUpdate],
    ) -> Result<(), StoreError>;
    /// The keys of one multi-Region key, in every region.
    async fn related_keys(&self, mrk: Uuid) -> Result<Vec<KeyRecord>, StoreError>;
    /// Insert a replica of a multi-Region primary with copies of all its material versions
    /// (`macs`: each version's wrapped blob as verified and the replica row's MAC for it), in
    /// one transaction. `Conflict` unless the primary is still usable at `primary_version`.
    /// A replica of an `EXTERNAL` key gets no copies (`macs` empty; the primary may be
    /// pending import): its material is imported into it on its own.
    async fn create_replica(
        &self,
        replica: &KeyRecord,
        primary: Uuid,
        primary_version: i32,
        macs: &[(MaterialRecord, Vec<u8>)],
        tags: &[Tag],
        max_keys: i64,
    ) -> Result<(), StoreError>;
    /// Move the primary of multi-Region key `mrk`: `updates` (the old and the new primary's
    /// flags) in one transaction, each only where the row is still as verified.
    async fn set_primary(&self, mrk: Uuid, updates: &[RotationUpdate]) -> Result<(), StoreError>;
    /// Primaries pending replica deletion whose last replica is gone: their waiting period is
    /// due to start.
    async fn replica_deletions_done(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Start such a primary's waiting period: `PendingDeletion` until `deletion_date`, with its
    /// state MAC, in one statement (never a state without its MAC). False if it is no longer
    /// pending replica deletion with the state MAC `expected_mac` it was verified with, or has
    /// a replica again (another node did it).
    async fn start_primary_deletion(
        &self,
        key_id: Uuid,
        deletion_date: DateTime<Utc>,
        state_mac: &[u8],
        expected_mac: &[u8],
    ) -> Result<bool, StoreError>;
    async fn rotations(&self, key_id: Uuid) -> Result<Vec<RotationRecord>, StoreError>;
    /// Set a key's rotation schedule (and every related key's, for a multi-Region `mrk`, whose
    /// related keys must be exactly the updates' keys, else `Conflict`), each only where the
    /// row is still as verified.
    async fn set_rotation(
        &self,
        mrk: Option<Uuid>,
        updates: &[RotationUpdate],
    ) -> Result<(), StoreError>;
    /// Primary keys whose scheduled rotation is due at `now` (at most `limit`). Nothing is
    /// claimed: `add_material` with `due_at` decides which node's rotation counts.
    async fn due_rotations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError>;
    /// Keys whose deletion date has passed at `now` (pending deletion; a multi-Region primary
    /// only once it has no replica left), oldest first, after `after` (a deletion date and key
    /// id, the last of the previous page), at most `limit`. Nothing is claimed.
    async fn keys_due_for_deletion(
        &self,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// Delete a key found due (its material, aliases, tags, grants and import go with it),
    /// only if its row still carries the state MAC it was read with and is still due at `now`
    /// (and, for a primary, has no replica): false otherwise (another node deleted it first,
    /// or the row changed). Exactly one caller deletes each key.
    async fn delete_due_key(&self, k: &KeyRecord, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Set a key's state with the MAC over the new state, provided the stored state MAC is
    /// still `expected_mac` (the state the domain verified): false (nothing written) otherwise.
    async fn set_key_state(
        &self,
        key_id: Uuid,
        expected_mac: Option<&[u8]>,
        state: KeyState,
        deletion_date: Option<DateTime<Utc>>,
        pending_window_days: Option<i32>,
        state_mac: &[u8],
    ) -> Result<bool, StoreError>;
    async fn keys_without_state_mac(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Seal a key state stored without a MAC, only if it is still unsealed and still as shown
    /// (state, deletion date, waiting period).
    async fn set_state_mac(&self, shown: &KeyRecord, state_mac: &[u8]) -> Result<bool, StoreError>;
    async fn set_description(&self, key_id: Uuid, description: &str) -> Result<(), StoreError>;
    /// Replace a key's tags with `tags` and their MAC, provided the stored MAC is still
    /// `expected_mac` (the set the domain verified); false (nothing written) otherwise.
    async fn set_tags(
        &self,
        key_id: Uuid,
        expected_mac: &[u8],
        tags: &[Tag],
        tags_mac: &[u8],
    ) -> Result<bool, StoreError>;
    /// Seal a key's tags stored without a MAC, only if they are still unsealed and still `tags`.
    async fn set_tags_mac(
        &self,
        key_id: Uuid,
        tags: &[Tag],
        tags_mac: &[u8],
    ) -> Result<bool, StoreError>;
    async fn keys_without_tags_mac(&self) -> Result<Vec<KeyRecord>, StoreError>;
    async fn keys_without_attrs_mac(&self) -> Result<Vec<KeyRecord>, StoreError>;
    async fn keys_without_rotation_mac(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Seal a key's rotation state stored without a MAC, only if it is still unsealed and
    /// still as shown.
    async fn set_rotation_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError>;
    /// Seal a key's attributes stored without a MAC, only if they are still unsealed and
    /// still as shown.
    async fn set_attrs_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError>;
    async fn aliases_without_mac(&self) -> Result<Vec<AliasRecord>, StoreError>;
    /// Seal an alias stored without a MAC, only if it is still unsealed and still names the key.
    async fn set_alias_mac(&self, a: &AliasRecord, mac: &[u8]) -> Result<bool, StoreError>;
    /// Insert an alias; `Conflict` if the name is taken, or ([`QUOTA_EXCEEDED`]) if the account
    /// has `max_aliases` in the region already (counted in the same transaction).
    async fn create_alias(&self, a: &AliasRecord, max_aliases: i64) -> Result<(), StoreError>;
    /// Point an existing alias at `a.key_id` with its new MAC, provided it still names
    /// `from_key`; false if there is no such alias or it changed.
    async fn update_alias(&self, a: &AliasRecord, from_key: Uuid) -> Result<bool, StoreError>;
    async fn delete_alias(
        &self,
        account_id: &str,
        region: &str,
        name: &str,
    ) -> Result<bool, StoreError>;
    async fn alias(
        &self,
        account_id: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    /// Aliases of one account and region (of one key, if given), by name.
    async fn list_aliases(
        &self,
        account_id: &str,
        region: &str,
        key_id: Option<Uuid>,
    ) -> Result<Vec<AliasRecord>, StoreError>;
    async fn material(
        &self,
        key_id: Uuid,
        version: i32,
    ) -> Result<Option<MaterialRecord>, StoreError>;
    /// Atomically reserve up to `n` more encryptions with a material version, never passing
    /// `limit`; returns the reserved range `[start, end)`, or `None` when nothing is left (or
    /// the row does not exist). The keys of a multi-Region key `mrk` share one count.
    async fn reserve_invocations(
        &self,
        key_id: Uuid,
        mrk: Option<Uuid>,
        version: i32,
        n: i64,
        limit: i64,
    ) -> Result<Option<(i64, i64)>, StoreError>;
}

/// Temporary credentials of an assumed-role session.
#[derive(Clone)]
pub struct SessionRecord {
    pub access_key_id: String,
    pub role_arn: String,
    pub account_id: String,
    pub session_name: String,
    pub secret_blob: Vec<u8>,
    pub root_version: i32,
    pub token_sha256: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub mac: Vec<u8>,
}

/// Everything that decides what a principal may do, as stored, with the MAC over it.
#[derive(Clone, Debug)]
pub struct PrincipalAuthz {
    pub account_id: String,
    pub kind: String,
    pub trust_policy: Option<String>,
    pub via_service: Option<String>,
    /// `(name, document)`, in no particular order.
    pub policies: Vec<(String, String)>,
    pub tags: Vec<Tag>,
    pub mac: Option<Vec<u8>>,
}

/// One administrator change to what a principal may do (`kms admin`). The domain computes
/// the principal's MAC over the result (`apply`) and the store writes the change with that MAC
/// in one transaction, so a change is never stored without its MAC nor a MAC without it.
#[derive(Clone, Debug)]
pub enum PrincipalChange {
    CreateUser {
        account_id: String,
        name: String,
        admin: bool,
    },
    /// Create a role, or replace an existing role's trust policy.
    PutRole {
        account_id: String,
        name: String,
        trust_policy: String,
    },
    PutPolicy {
        name: String,
        document: String,
    },
    DeletePolicy {
        name: String,
    },
    PutTag(Tag),
    SetService(Option<String>),
}

impl PrincipalChange {
    /// The principal's authorization data after this change, from what it was (`None`: no such
    /// principal yet). Pure: the MAC is computed over this, never over what the database holds.
    pub fn apply(&self, current: Option<&PrincipalAuthz>) -> Result<PrincipalAuthz, String> {
        use PrincipalChange::*;
        let mut next = match (self, current) {
            (CreateUser { account_id, .. }, None) => {
                return Ok(PrincipalAuthz::new(account_id, "user", None))
            }
            (
                PutRole {
                    account_id,
                    trust_policy,
                    ..
                },
                None,
            ) => return Ok(PrincipalAuthz::new(account_id, "role", Some(trust_policy))),
            (_, None) => return Err("no such principal".into()),
            (_, Some(c)) => c.clone(),
        };
        match self {
            CreateUser { .. } => {}
            PutRole { trust_policy, .. } => {
                if next.kind != "role" {
                    return Err("the principal is not a role".into());
                }
                next.trust_policy = Some(trust_policy.clone());
            }
            PutPolicy { name, document } => {
                next.policies.retain(|(n, _)| n != name);
                next.policies.push((name.clone(), document.clone()));
            }
            DeletePolicy { name } => {
                let before = next.policies.len();
                next.policies.retain(|(n, _)| n != name);
                if next.policies.len() == before {
                    return Err(format!("the principal has no policy named {name}"));
                }
            }
            PutTag(t) => {
                next.tags.retain(|x| x.key != t.key);
                next.tags.push(t.clone());
            }
            SetService(s) => next.via_service = s.clone(),
        }
        Ok(next)
    }
}

impl PrincipalAuthz {
    fn new(account_id: &str, kind: &str, trust_policy: Option<&String>) -> PrincipalAuthz {
        PrincipalAuthz {
            account_id: account_id.to_string(),
            kind: kind.to_string(),
            trust_policy: trust_policy.cloned(),
            via_service: None,
            policies: vec![],
            tags: vec![],
            mac: None,
        }
    }
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// The name of the trail's latest operator event on the access key `access_key_id`
    /// (`DeactivateAccessKey`, `ActivateAccessKey` or `DeleteAccessKey`), if any.
    async fn access_key_per_trail(&self, access_key_id: &str)
        -> Result<Option<String>, StoreError>;
    /// A principal's identity policies, tags, service registration, trust policy and their
    /// MAC, read in one transaction; `None` if there is no such principal.
    async fn principal_authz(&self, arn: &str) -> Result<Option<PrincipalAuthz>, StoreError>;
    /// Roles (of every account) whose trust policy contains `text`: their ARNs.
    async fn roles_whose_trust_contains(&self, text: &str) -> Result<Vec<String>, StoreError>;
    /// Seal a principal stored without a MAC (`kms admin seal`); false if it has one now.
    async fn set_principal_mac(&self, arn: &str, mac: &[u8]) -> Result<bool, StoreError>;
    /// Apply `change` and store `mac` in one transaction, provided the principal's stored MAC
    /// is still `expected` (`None`: the principal must not exist yet). `Conflict` (constraint
    /// `principal_mac`) when it is not: the principal changed since it was verified.
    async fn change_principal(
        &self,
        arn: &str,
        change: &PrincipalChange,
        expected: Option<&[u8]>,
        mac: &[u8],
    ) -> Result<(), StoreError>;
    /// Principals that carry no MAC yet (stored before principals were sealed).
    async fn principals_without_mac(&self) -> Result<Vec<String>, StoreError>;
    /// Create a role with its trust policy, or replace the trust policy of an existing one.
    async fn put_role(
        &self,
        arn: &str,
        account_id: &str,
        name: &str,
        trust_policy: &str,
    ) -> Result<(), StoreError>;
    /// `(account, trust policy)` of a role.
    async fn role(&self, arn: &str) -> Result<Option<(String, String)>, StoreError>;
    async fn insert_session(&self, s: &SessionRecord) -> Result<(), StoreError>;
    /// Forget sessions that expired before `before`; returns how many.
    async fn purge_sessions(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    async fn session(&self, access_key_id: &str) -> Result<Option<SessionRecord>, StoreError>;
    async fn ensure_account(&self, account_id: &str, name: &str) -> Result<(), StoreError>;
    async fn ensure_principal(
        &self,
        arn: &str,
        account_id: &str,
        kind: &str,
        name: &str,
        admin: bool,
    ) -> Result<(), StoreError>;
    async fn put_access_key(&self, rec: &AccessKeyRecord) -> Result<(), StoreError>;
    async fn access_key(&self, access_key_id: &str) -> Result<Option<AccessKeyRecord>, StoreError>;
    async fn access_keys_of(&self, principal_arn: &str)
        -> Result<Vec<AccessKeyRecord>, StoreError>;
    async fn account_exists(&self, account_id: &str) -> Result<bool, StoreError>;
    /// Set an access key's status and its new row MAC; false if there is no such key.
    async fn set_access_key_status(
        &self,
        access_key_id: &str,
        status: &str,
        mac: &[u8],
    ) -> Result<bool, StoreError>;
    async fn principal_exists(&self, arn: &str) -> Result<bool, StoreError>;
    /// Attach (or replace) a named identity policy.
    async fn put_identity_policy(
        &self,
        principal_arn: &str,
        name: &str,
        document: &str,
    ) -> Result<(), StoreError>;
    async fn delete_identity_policy(
        &self,
        principal_arn: &str,
        name: &str,
    ) -> Result<bool, StoreError>;
    /// `(name, document)` of every policy attached to a principal.
    async fn identity_policies(
        &self,
        principal_arn: &str,
    ) -> Result<Vec<(String, String)>, StoreError>;
    async fn principal_tags(&self, principal_arn: &str) -> Result<Vec<Tag>, StoreError>;
    /// The integrated service a principal is registered as (`kms:ViaService`), if any.
    async fn principal_service(&self, principal_arn: &str) -> Result<Option<String>, StoreError>;
    /// Register (or with `None`, unregister) a principal as an integrated service; false if
    /// there is no such principal.
    async fn set_principal_service(
        &self,
        principal_arn: &str,
        service: Option<&str>,
    ) -> Result<bool, StoreError>;
    async fn put_principal_tag(&self, principal_arn: &str, tag: &Tag) -> Result<(), StoreError>;
    /// Delete a user or role with its keys, sessions, policies and the grants naming it (or its
    /// sessions) as grantee; false if absent.
    async fn delete_principal(&self, arn: &str) -> Result<bool, StoreError>;
    async fn delete_access_key(&self, access_key_id: &str) -> Result<bool, StoreError>;
    /// Record an identity change for the audit trail.
    async fn record_admin_event(
        &self,
        operator: &str,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Record a root key version (idempotent).
    async fn ensure_root_key(&self, version: i32, label: &str) -> Result<(), StoreError>;
    /// The newest recorded root key version.
    async fn current_root_version(&self) -> Result<Option<i32>, StoreError>;
    /// Every recorded root key version, with how many stored blobs it wraps (over every table
    /// that holds one: key material, access key and session secrets, import tokens).
    async fn blobs_per_root(&self) -> Result<Vec<(i32, i64)>, StoreError>;
    /// Blobs wrapped under a root key older than `version`: at most `limit` of each kind.
    async fn blobs_below_root(&self, version: i32, limit: i64) -> Result<Vec<BlobRef>, StoreError>;
    /// Store the re-wrapped form of one blob with its root version and row MAC, only if the row
    /// still carries `old_mac` (the row as verified, under the old root): false (nothing
    /// written) if another node re-wrapped it first or the row changed. So each blob is
    /// re-wrapped once, whichever nodes run the job and however often they are killed.
    async fn rewrap_blob(
        &self,
        blob: &BlobRef,
        old_mac: &[u8],
        wrapped: &[u8],
        root_version: i32,
        mac: &[u8],
    ) -> Result<bool, StoreError>;
    /// Forget root key `version` once it is destroyed: false if it is not recorded. Refused by
    /// the database (a foreign key) while any blob still records it.
    async fn forget_root_key(&self, version: i32) -> Result<bool, StoreError>;

    /// Record a metadata MAC key version (idempotent).
    async fn ensure_mac_key(&self, version: i32, label: &str) -> Result<(), StoreError>;
    /// The newest recorded MAC key version (`None` before any was recorded: version 1).
    async fn current_mac_version(&self) -> Result<Option<i32>, StoreError>;
    /// Every recorded MAC key version (a destroyed one is forgotten).
    async fn mac_key_versions(&self) -> Result<Vec<i32>, StoreError>;
    /// Rows whose MAC (or import record's material check) was made under a MAC key older than
    /// `version`: at most `limit` per column.
    async fn macs_below(&self, version: i32, limit: i64) -> Result<Vec<MacRow>, StoreError>;
    /// How many MACs, over every MAC'd column (pending audit records included), were made under
    /// a MAC key older than `version`.
    async fn count_macs_below(&self, version: i32) -> Result<i64, StoreError>;
    /// Store one row's MAC made again under the current MAC key (and, for an import record,
    /// its material check), only if the row still carries `old` (the MAC as verified): false
    /// (nothing written) if another process re-MAC'd it first or the row changed.
    async fn remac(
        &self,
        row: &MacRow,
        old: &[u8],
        new: &[u8],
        check: Option<&[u8]>,
    ) -> Result<bool, StoreError>;
    /// Forget MAC key `version` once it is destroyed: false if it is not recorded.
    async fn forget_mac_key(&self, version: i32) -> Result<bool, StoreError>;
}

/// A MAC'd row, by the row (and column) that holds the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacRow {
    /// One of a key's sealed parts (`keys.<part>_mac`: policy, state, tags, attrs, rotation).
    Key(Uuid, KeyMac),
    /// A key's material version (`key_materials.mac`).
    Material(Uuid, i32),
    /// A key's import record (`key_imports.mac` and `material_check`).
    ImportRecord(Uuid),
    /// An import token (`import_tokens.mac`).
    ImportToken(Uuid),
    /// A grant (`grants.mac`).
    Grant(String),
    /// A principal's authorization (`principals.authz_mac`).
    Principal(String),
    /// An alias (account, region, name).
    Alias(String, String, String),
    /// An access key (`access_keys.mac`).
    AccessKey(String),
    /// A role session (`sessions.mac`).
    Session(String),
}

/// The sealed parts of a key row, by their MAC column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMac {
    Policy,
    State,
    Tags,
    Attrs,
    Rotation,
}

impl KeyMac {
    pub const ALL: [KeyMac; 5] = [
        KeyMac::Policy,
        KeyMac::State,
        KeyMac::Tags,
        KeyMac::Attrs,
        KeyMac::Rotation,
    ];
    pub fn column(self) -> &'static str {
        match self {
            KeyMac::Policy => "policy_mac",
            KeyMac::State => "state_mac",
            KeyMac::Tags => "tags_mac",
            KeyMac::Attrs => "attrs_mac",
            KeyMac::Rotation => "rotation_mac",
        }
    }
}

/// The SQL of the MAC key statements, one text for both stores (`$N` placeholders).
///
/// A MAC's key version is in its bytes (`crate::hsm::mac_parts`): 32 bytes (or a seal of 41,
/// `1 || generation || MAC`) is version 1's; 37 bytes (a seal of 46) is `2 || version || HMAC`.
/// `$1` is `2 || version` of the current key: a tagged MAC below it compares lower, bytewise,
/// in both databases.
pub(crate) mod mac_sql {
    /// Every MAC'd column: (table, column, the row's key columns).
    pub const COLUMNS: [(&str, &str, &str); 14] = [
        ("keys", "policy_mac", "key_id"),
        ("keys", "state_mac", "key_id"),
        ("keys", "tags_mac", "key_id"),
        ("keys", "attrs_mac", "key_id"),
        ("keys", "rotation_mac", "key_id"),
        ("key_materials", "mac", "key_id, version"),
        ("key_imports", "mac", "key_id"),
        ("key_imports", "material_check", "key_id"),
        ("import_tokens", "mac", "token_id"),
        ("grants", "mac", "grant_id"),
        ("principals", "authz_mac", "arn"),
        ("aliases", "mac", "account_id, region, alias_name"),
        ("access_keys", "mac", "access_key_id"),
        ("sessions", "mac", "access_key_id"),
    ];
    /// Pending audit records: counted (they settle into the trail within seconds), never
    /// re-MAC'd.
    pub const OUTBOX: (&str, &str, &str) = ("audit_outbox", "mac", "event_id");

    /// `column` holds a MAC made under a MAC key older than `$1`'s.
    pub fn below(c: &str) -> String {
        format!(
            "({c} IS NOT NULL AND (length({c}) IN (32, 41) \
             OR (length({c}) = 37 AND substr({c}, 1, 5) < $1) \
             OR (length({c}) = 46 AND substr({c}, 10, 5) < $1)))"
        )
    }

    pub fn select_below(table: &str, column: &str, key: &str) -> String {
        format!(
            "SELECT {key} FROM {table} WHERE {} ORDER BY {key} LIMIT $2",
            below(column)
        )
    }

    pub fn count_below(table: &str, column: &str) -> String {
        format!("SELECT count(*) FROM {table} WHERE {}", below(column))
    }

    /// `UPDATE` of one MAC column, compare-and-set on its old value (`$1` new, `$2` old,
    /// the key columns from `$3`).
    pub fn update(table: &str, column: &str, key: &str) -> String {
        let key_match: Vec<String> = key
            .split(", ")
            .enumerate()
            .map(|(i, k)| format!("{k} = ${}", i + 3))
            .collect();
        format!(
            "UPDATE {table} SET {column} = $1 WHERE {column} = $2 AND {}",
            key_match.join(" AND ")
        )
    }

    /// The import record's seal and material check together (`$1` new seal, `$2` old seal,
    /// `$3` key, `$4` new check).
    pub const UPDATE_IMPORT_RECORD: &str =
        "UPDATE key_imports SET mac = $1, material_check = $4 WHERE mac = $2 AND key_id = $3";

    pub const CURRENT: &str = "SELECT max(version) AS v FROM mac_keys";
    pub const VERSIONS: &str = "SELECT version FROM mac_keys ORDER BY version";
    pub const FORGET: &str = "DELETE FROM mac_keys WHERE version = $1";

    /// The bytes `$1` is bound to for MAC key `version`.
    pub fn tag(version: i32) -> Vec<u8> {
        let mut t = vec![2u8];
        t.extend_from_slice(&(version as u32).to_be_bytes());
        t
    }
}

/// A stored blob wrapped under a root key, by the row that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRef {
    /// A key's material version (`key_materials`).
    Material(Uuid, i32),
    /// An access key's signing secret (`access_keys`).
    AccessKey(String),
    /// A role session's signing secret (`sessions`).
    Session(String),
    /// An import token's wrapping private key (`import_tokens`).
    ImportToken(Uuid),
}

/// The SQL of the root key statements, one text for both stores (`$N` placeholders).
pub(crate) mod root_sql {
    pub const BLOBS_PER_ROOT: &str = "SELECT r.version, \
        (SELECT count(*) FROM key_materials WHERE root_version = r.version) \
        + (SELECT count(*) FROM access_keys WHERE root_version = r.version) \
        + (SELECT count(*) FROM sessions WHERE root_version = r.version) \
        + (SELECT count(*) FROM import_tokens WHERE root_version = r.version) AS blobs \
        FROM root_keys r ORDER BY r.version";
    pub const MATERIALS_BELOW: &str =
        "SELECT key_id, version FROM key_materials WHERE root_version < $1 ORDER BY key_id, version LIMIT $2";
    pub const ACCESS_KEYS_BELOW: &str =
        "SELECT access_key_id FROM access_keys WHERE root_version < $1 ORDER BY access_key_id LIMIT $2";
    pub const SESSIONS_BELOW: &str =
        "SELECT access_key_id FROM sessions WHERE root_version < $1 ORDER BY access_key_id LIMIT $2";
    pub const IMPORT_TOKENS_BELOW: &str =
        "SELECT token_id FROM import_tokens WHERE root_version < $1 ORDER BY token_id LIMIT $2";
    pub const REWRAP_MATERIAL: &str =
        "UPDATE key_materials SET wrapped = $4, root_version = $5, mac = $6 \
        WHERE key_id = $1 AND version = $2 AND mac = $3";
    pub const REWRAP_ACCESS_KEY: &str =
        "UPDATE access_keys SET secret_blob = $3, root_version = $4, mac = $5 \
        WHERE access_key_id = $1 AND mac = $2";
    pub const REWRAP_SESSION: &str =
        "UPDATE sessions SET secret_blob = $3, root_version = $4, mac = $5 \
        WHERE access_key_id = $1 AND mac = $2";
    pub const REWRAP_IMPORT_TOKEN: &str =
        "UPDATE import_tokens SET wrapped_private = $3, root_version = $4, mac = $5 \
        WHERE token_id = $1 AND mac = $2";
    pub const FORGET_ROOT: &str = "DELETE FROM root_keys WHERE version = $1";
}

/// An audit event to append; the store gives it its sequence number and chain hash.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub event_id: Uuid,
    pub event_time: DateTime<Utc>,
    pub event_name: String,
    pub account_id: Option<String>,
    pub key_arns: Vec<String>,
    /// The event's canonical JSON.
    pub body: String,
    /// The row generations the event names (`additionalEventData.rowGenerations` in `body`):
    /// indexed in `audit_generations` when it is chained.
    pub generations: Vec<(String, i64)>,
}

/// The record that a change committed: written by the store in the change's own transaction
/// (the `audit_outbox` table), so the change and this record are durable together. The
/// call's event, once chained, removes it; a record whose call never got its event chained is
/// chained by the service itself (`ApiCallCommitted`). `mac` (computed in the token) covers
/// the event, so a record written with SQL is never chained as the service's word.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub event: NewAuditEvent,
    pub mac: Vec<u8>,
    /// The row generations the change wrote (noted once each write committed): the change's
    /// event names them, so the trail knows how far every row it rewrote has moved.
    pub written: Written,
}

/// Row generations a change wrote, by row name (see `domain::seal`).
#[derive(Debug, Clone, Default)]
pub struct Written(std::sync::Arc<std::sync::Mutex<Vec<(String, i64)>>>);

impl Written {
    pub fn list(&self) -> Vec<(String, i64)> {
        self.0.lock().unwrap().clone()
    }
}

/// Note that the running change committed generation `generation` of `row` (nothing outside
/// a change's scope: with no trail there is nothing to tell).
pub(crate) fn note_written(row: &str, generation: i64) {
    let _ = CHANGE.try_with(|c| {
        let mut w = c.written.0.lock().unwrap();
        if let Some(e) = w.iter_mut().find(|(r, _)| r == row) {
            e.1 = e.1.max(generation);
        } else {
            w.push((row.to_string(), generation));
        }
    });
}

tokio::task_local! {
    static CHANGE: std::sync::Arc<ChangeRecord>;
}

/// Run `f` as the change `record` describes: every write transaction the store commits inside
/// it also writes `record` (once). Outside such a scope (reads, jobs, crypto) nothing is added.
pub async fn in_change<F: std::future::Future>(
    record: Option<std::sync::Arc<ChangeRecord>>,
    f: F,
) -> F::Output {
    match record {
        Some(r) => CHANGE.scope(r, f).await,
        None => f.await,
    }
}

/// The change the running task is making, if any.
pub(crate) fn current_change() -> Option<std::sync::Arc<ChangeRecord>> {
    CHANGE.try_with(|r| r.clone()).ok()
}

/// An audit event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub event_time: DateTime<Utc>,
    pub event_name: String,
    pub account_id: Option<String>,
    pub key_arns: Vec<String>,
    pub body: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub signature: Vec<u8>,
}

/// Computes an event's chain hash from its sequence number, its predecessor's hash and its
/// body (the audit layer's function; the store only orders and persists).
pub type ChainFn = dyn Fn(i64, &[u8], &str) -> Vec<u8> + Send + Sync;

/// The operations `GetKeyLastUsage` reports (botocore's `KeyLastUsageTrackingOperation`, less
/// `Encapsulate` and `Decapsulate`, which this service does not offer), as SQL: the trail's
/// partial indexes (sql/0029, sql/sqlite/0016) list the same.
pub const KEY_USE_OPERATIONS: &str = "'Decrypt', 'DeriveSharedSecret', 'Encrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'GenerateDataKeyPairWithoutPlaintext', 'GenerateDataKeyWithoutPlaintext', 'GenerateMac', 'ReEncrypt', 'Sign', 'Verify', 'VerifyMac'";

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append events in order to the one chain, after `head` (sequence number and hash) if the
    /// chain still ends there: returns the new head, or `None` (nothing written) if another
    /// writer moved it first.
    /// `settles`: change records ([`ChangeRecord`]) the events account for, removed from the
    /// outbox in the same transaction.
    async fn append_audit(
        &self,
        head: (i64, &[u8]),
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<Option<(i64, Vec<u8>)>, StoreError>;
    /// Change records written before `cutoff` and not claimed by anyone (or whose claim ran out
    /// by `now`), at most `limit`, oldest first: claimed until `claim_until`, so that one
    /// sweeper (of any node) chains each while its claim holds.
    async fn claim_change_records(
        &self,
        now: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError>;
    /// The chain head: the last sequence number and its hash.
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;
    /// The latest `limit` cryptographic calls ([`KEY_USE_OPERATIONS`]) that used the key `arn`
    /// (ReEncrypt's source key too) before sequence number `before`, newest first: sequence
    /// number, time and body (`GetKeyLastUsage` reads whether each succeeded).
    async fn key_uses_before(
        &self,
        arn: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, DateTime<Utc>, String)>, StoreError>;
    /// The last `SealCoverage` event, if any.
    async fn last_seal_coverage(&self) -> Result<Option<AuditRow>, StoreError>;
    /// Events after `after` in sequence order, at most `limit`.
    async fn audit_events(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError>;
    /// Every (row, generation, seq) of `audit_generations`, by seq (for verification).
    async fn audit_generations(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;
    async fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError>;
    async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError>;
}

#[cfg(test)]
pub(crate) mod contract;

#[cfg(test)]
mod schema_version_tests {
    use super::*;

    #[test]
    fn the_key_use_indexes_list_the_operations_the_lookup_asks_for() {
        // A list that differs would leave `key_uses_before` scanning the trail.
        for migration in [
            include_str!("../../sql/0029_key_last_usage.sql"),
            include_str!("../../sql/sqlite/0016_key_last_usage.sql"),
        ] {
            assert!(migration.contains(&format!("IN ({KEY_USE_OPERATIONS})")));
        }
    }

    #[test]
    fn the_schema_versions_are_the_highest_migrations() {
        let pg = sqlx::migrate!("./sql").iter().map(|m| m.version).max();
        let lite = sqlx::migrate!("./sql/sqlite")
            .iter()
            .map(|m| m.version)
            .max();
        assert_eq!(pg, Some(SCHEMA_POSTGRES));
        assert_eq!(lite, Some(SCHEMA_SQLITE));
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")));
        assert!(VERSION.contains(&format!(
            "Postgres {SCHEMA_POSTGRES}, SQLite {SCHEMA_SQLITE}"
        )));
    }

    #[test]
    fn a_newer_schema_is_served_only_while_its_floor_admits_this_build() {
        let v = |database, floor| SchemaVersions {
            build: 27,
            database,
            floor,
        };
        assert!(refuse_newer_schema(v(27, Some(27))).is_ok());
        assert!(refuse_newer_schema(v(0, None)).is_ok());
        assert!(refuse_newer_schema(v(20, None)).is_ok());
        // Additive migrations beyond this build: served side by side.
        assert!(refuse_newer_schema(v(29, Some(27))).is_ok());
        assert!(refuse_newer_schema(v(29, Some(20))).is_ok());
        // A contract migration beyond this build, or no floor recorded: refused.
        let e = refuse_newer_schema(v(29, Some(28))).unwrap_err();
        assert!(e.contains("schema 28 or newer"), "{e}");
        assert!(refuse_newer_schema(v(28, None)).is_err());
        // Readiness: later migrations are known-unknown only under an admitting floor.
        assert!(migrations_current(&[1, 2], &[1, 2, 3], Some(2)).is_ok());
        assert!(migrations_current(&[1, 2], &[1, 2, 3], Some(3)).is_err());
        assert!(migrations_current(&[1, 2], &[1, 2, 3], None).is_err());
        assert!(migrations_current(&[1, 2, 3], &[1, 2], Some(1)).is_err());
    }
}
