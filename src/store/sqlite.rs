//! SQLite implementation of the repository traits: the embedded store of the development mode
//! and of small single-machine deployments. Several `kms` processes may share one database file
//! (the integration suite runs two nodes on it). Same semantics as `PgStore`; the schema is
//! `sql/sqlite/`; the traits in `grants.rs`, `service.rs`, `identity.rs` and `audit.rs` are
//! written once for both stores. SQLite has one writer at a time:
//! every transaction that writes starts with `BEGIN IMMEDIATE` (it takes the write lock before
//! it reads), which stands in for Postgres's row locks and `FOR UPDATE SKIP LOCKED`.

use super::grants::GRANT_COLUMNS;
use super::*;
use sqlx::error::ErrorKind;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

type Tx = sqlx::Transaction<'static, Sqlite>;

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code: i32 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
            match db.kind() {
                kind @ (ErrorKind::UniqueViolation
                | ErrorKind::ForeignKeyViolation
                | ErrorKind::CheckViolation) => StoreError::Conflict {
                    constraint: constraint_name(kind, code, db.message()),
                },
                // BUSY, LOCKED, IOERR, FULL, CANTOPEN (primary codes, any extended variant).
                _ if matches!(code & 0xff, 5 | 6 | 10 | 13 | 14) => {
                    StoreError::Unavailable(format!("SQLite error {code}: {}", db.message()))
                }
                _ => StoreError::Other(format!("SQLite error {code}: {}", db.message())),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Other(e.to_string()),
    }
}

/// The name Postgres gives the constraint, from SQLite's message: "UNIQUE constraint failed:
/// t.a, t.b" (primary key: `t_pkey`; unique index: its name, else `t_a_b_key`), "CHECK
/// constraint failed: <name>" (every CHECK in the schema is named as in Postgres). SQLite
/// does not say which foreign key failed: `foreign_key`.
fn constraint_name(kind: ErrorKind, code: i32, message: &str) -> String {
    match kind {
        ErrorKind::CheckViolation => message
            .strip_prefix("CHECK constraint failed: ")
            .unwrap_or("check")
            .trim()
            .to_string(),
        ErrorKind::UniqueViolation => {
            let Some(list) = message.strip_prefix("UNIQUE constraint failed: ") else {
                return "unique".into();
            };
            let mut table = "";
            let mut cols = Vec::new();
            for item in list.split(',') {
                let (t, c) = item.trim().split_once('.').unwrap_or(("", item.trim()));
                table = t;
                cols.push(c);
            }
            // 1555: SQLITE_CONSTRAINT_PRIMARYKEY.
            if code == 1555 {
                return format!("{table}_pkey");
            }
            match (table, cols.as_slice()) {
                ("keys", ["mrk_id", "region"]) => "keys_mrk_region".into(),
                ("keys", ["mrk_id"]) => "keys_mrk_one_primary".into(),
                _ => format!("{table}_{}_key", cols.join("_")),
            }
        }
        _ => "foreign_key".into(),
    }
}

fn col<'r, T>(r: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    r.try_get(name).map_err(|e| match e {
        sqlx::Error::ColumnDecode { .. } => StoreError::Invalid(format!("column {name}: {e}")),
        e => StoreError::Other(format!("column {name}: {e}")),
    })
}

/// [`col`], by the name the Postgres store's row readers use too.
fn cell<'r, T>(r: &'r SqliteRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    col(r, name)
}

fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(format!("JSON encoding: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Other(format!("column {what}: {e}")))
}

impl SqliteStore {
    /// Open (creating the file if missing) a database such as `sqlite:///var/lib/kms/kms.db`.
    /// Run `migrate` before use.
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteStore { pool })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        // Migrations a newer release applied are left alone: `connect_store` has refused the
        // database unless its schema floor admits this build (rolling upgrades).
        let mut m = sqlx::migrate!("./sql/sqlite");
        m.set_ignore_missing(true);
        m.run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }

    /// The oldest release schema that may run against this database (`schema_floor`, set by
    /// migrations); `None` before the table existed.
    async fn schema_floor(&self) -> Result<Option<i64>, StoreError> {
        let table: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_floor')")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        if !table {
            return Ok(None);
        }
        sqlx::query_scalar("SELECT oldest_release_schema FROM schema_floor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Whether the schema has been created (i.e. `kms init` ran against this database).
    pub async fn is_initialised(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'root_keys') AS ok",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        col(&row, "ok")
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// [`Store::changes`]: the `changes` table polled every 100 ms (and trimmed to its last
    /// 10,000 rows every minute); `Missed` when a poll fails.
    pub async fn changes(&self) -> Result<tokio::sync::mpsc::Receiver<Change>, StoreError> {
        let mut last = self.last_change().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let lite = self.clone();
        tokio::spawn(async move {
            let mut polls: u64 = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match lite.changes_after(last).await {
                    Ok(changes) => {
                        for (seq, channel, payload) in changes {
                            last = seq;
                            if tx.send(Change::Changed { channel, payload }).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed failed; retrying");
                        if tx.send(Change::Missed).await.is_err() {
                            return;
                        }
                    }
                }
                polls += 1;
                if polls.is_multiple_of(600) {
                    let _ = lite.trim_changes(10_000).await;
                }
            }
        });
        Ok(rx)
    }

    /// The newest change recorded (0 when none): where a new poller starts.
    pub async fn last_change(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Changes recorded after `after`, oldest first: (seq, channel, payload).
    pub async fn changes_after(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, channel, payload FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("seq").map_err(map_err)?,
                    r.try_get("channel").map_err(map_err)?,
                    r.try_get("payload").map_err(map_err)?,
                ))
            })
            .collect()
    }

    /// Forget changes every poller has long seen (all but the newest `keep`).
    pub async fn trim_changes(&self, keep: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?")
            .bind(keep)
            .write_on(self)
            .await?;
        Ok(())
    }

    /// A write transaction: `BEGIN IMMEDIATE` takes the database's write lock (waiting up to
    /// the busy timeout), so what it reads stays true until it commits. Run in its own task so
    /// that it always completes (see `PgStore::begin`); a dropped `Transaction` rolls back.
    /// Inside a change's scope ([`in_change`]) its first statement writes the change's record,
    /// so the record commits exactly when the change does.
    async fn begin_write(&self) -> Result<Tx, StoreError> {
        let mut tx = self.begin_unrecorded().await?;
        record_change(&mut tx).await?;
        Ok(tx)
    }

    /// A read transaction: one snapshot (SQLite's transactions are serializable).
    async fn begin_snapshot(&self) -> Result<Tx, StoreError> {
        self.begin_read().await
    }

    /// Commit a write transaction.
    async fn commit(&self, tx: Tx) -> Result<(), StoreError> {
        tx.commit().await.map_err(map_err)
    }

    /// A write transaction that is no change of a call (the trail's own appends).
    async fn begin_unrecorded(&self) -> Result<Tx, StoreError> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
            .await
            .map_err(|e| StoreError::Other(format!("BEGIN did not complete: {e}")))?
            .map_err(map_err)
    }

    /// Run one writing statement: on its own outside a change, in a transaction with the
    /// change's record inside one (rolled back if the statement changed nothing).
    async fn write<'q>(
        &self,
        q: sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<sqlx::sqlite::SqliteQueryResult, StoreError> {
        if current_change().is_none() {
            return q.execute(&self.pool).await.map_err(map_err);
        }
        let mut tx = self.begin_write().await?;
        let r = q.execute(&mut *tx).await.map_err(map_err)?;
        if r.rows_affected() > 0 {
            tx.commit().await.map_err(map_err)?;
        }
        Ok(r)
    }

    /// A read transaction: one snapshot of the database (WAL mode).
    async fn begin_read(&self) -> Result<Tx, StoreError> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin().await })
            .await
            .map_err(|e| StoreError::Other(format!("BEGIN did not complete: {e}")))?
            .map_err(map_err)
    }
}

/// A writing statement, run by [`SqliteStore::write`].
trait WriteOn {
    async fn write_on(self, s: &SqliteStore)
        -> Result<sqlx::sqlite::SqliteQueryResult, StoreError>;
}

impl<'q> WriteOn for sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    async fn write_on(
        self,
        s: &SqliteStore,
    ) -> Result<sqlx::sqlite::SqliteQueryResult, StoreError> {
        s.write(self).await
    }
}

/// Inside a change's scope, write its record in `tx` (once per change, however many
/// transactions it takes).
async fn record_change(tx: &mut Tx) -> Result<(), StoreError> {
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
    .bind(to_json(&e.key_arns)?)
    .bind(&e.body)
    .bind(&c.mac)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

fn key_from_row(r: &SqliteRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        key_id: col(r, "key_id")?,
        account_id: col(r, "account_id")?,
        region: col(r, "region")?,
        description: col(r, "description")?,
        key_spec: col(r, "key_spec")?,
        key_usage: col(r, "key_usage")?,
        origin: col(r, "origin")?,
        key_manager: col(r, "key_manager")?,
        key_state: col(r, "key_state")?,
        policy: col(r, "policy")?,
        multi_region: col(r, "multi_region")?,
        current_version: col(r, "current_version")?,
        created_at: col(r, "created_at")?,
        deletion_date: col(r, "deletion_date")?,
        rotation_enabled: col(r, "rotation_enabled")?,
        rotation_period_days: col(r, "rotation_period_days")?,
        next_rotation_date: col(r, "next_rotation_date")?,
        on_demand_rotations: col(r, "on_demand_rotations")?,
        mrk_id: col(r, "mrk_id")?,
        mrk_primary: col(r, "mrk_primary")?,
        pending_window_days: col(r, "pending_window_days")?,
        policy_mac: col(r, "policy_mac")?,
        state_mac: col(r, "state_mac")?,
        tags_mac: col(r, "tags_mac")?,
        attrs_mac: col(r, "attrs_mac")?,
        rotation_mac: col(r, "rotation_mac")?,
    })
}

fn keys_from_rows(rows: &[SqliteRow]) -> Result<Vec<KeyRecord>, StoreError> {
    rows.iter().map(key_from_row).collect()
}

fn alias_from_row(r: &SqliteRow) -> Result<AliasRecord, StoreError> {
    Ok(AliasRecord {
        alias_name: col(r, "alias_name")?,
        key_id: col(r, "key_id")?,
        account_id: col(r, "account_id")?,
        region: col(r, "region")?,
        created_at: col(r, "created_at")?,
        updated_at: col(r, "updated_at")?,
        target_mrk: r.try_get("mrk_id").ok().flatten(),
        mac: col::<Option<Vec<u8>>>(r, "mac")?.unwrap_or_default(),
    })
}

fn access_key_from_row(r: &SqliteRow) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        access_key_id: col(r, "access_key_id")?,
        principal_arn: col(r, "principal_arn")?,
        account_id: col(r, "account_id")?,
        status: col(r, "status")?,
        secret_blob: col(r, "secret_blob")?,
        root_version: col(r, "root_version")?,
        mac: col(r, "mac")?,
    })
}

/// SQLite's pieces of the identity store written once in `identity.rs`.
const REQUEST_TARGET: &str = "json_extract(body, '$.requestParameters.target')";
const INSTR: &str = "instr";
const ACCESS_KEYS_IN_CREATION_ORDER: &str = "a.created_at, a.rowid";

fn tag_from_row(r: &SqliteRow) -> Result<Tag, StoreError> {
    Ok(Tag {
        key: col(r, "tag_key")?,
        value: col(r, "tag_value")?,
    })
}

fn key_ids(rows: &[SqliteRow]) -> Result<Vec<Uuid>, StoreError> {
    rows.iter().map(|r| col(r, "key_id")).collect()
}

const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_spec, key_usage, origin, key_manager, \
     key_state, policy, multi_region, current_version, created_at, deletion_date, rotation_enabled, \
     rotation_period_days, next_rotation_date, on_demand_rotations, mrk_id, mrk_primary, pending_window_days, policy_mac, state_mac, tags_mac, attrs_mac, rotation_mac";

/// Every column of a key row, so no writer forgets one.
fn quota_exceeded() -> StoreError {
    StoreError::Conflict {
        constraint: QUOTA_EXCEEDED.into(),
    }
}

/// The customer managed keys of `k`'s account and region as the triggers count them.
async fn kept_keys(tx: &mut Tx, k: &KeyRecord) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(used), 0) FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
    )
    .bind(&k.account_id)
    .bind(&k.region)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)
}

/// The customer managed keys quota of an account and region, checked inside the inserting
/// transaction (a write transaction: `BEGIN IMMEDIATE` serialises it with every other writer).
async fn within_key_quota(tx: &mut Tx, k: &KeyRecord, max: i64) -> Result<(), StoreError> {
    // The count the triggers keep (16 rows, not a count of the account's keys). Far below the
    // quota, no creation racing this one can reach it: no lock. Near it, read again under the
    // lock that serialises the account's creations: every creation that could still be in
    // flight without the lock started while the count was more than the margin away.
    if kept_keys(tx, k).await? + super::QUOTA_EXACT_MARGIN < max {
        return Ok(());
    }
    if kept_keys(tx, k).await? >= max {
        return Err(quota_exceeded());
    }
    Ok(())
}

/// Write one key's new rotation state, only where the row still carries the MAC the caller
/// verified (and, with `require_enabled`, the key is still enabled).
async fn apply_rotation(
    tx: &mut Tx,
    u: &RotationUpdate,
    require_enabled: bool,
) -> Result<(), StoreError> {
    let n = sqlx::query(
        "UPDATE keys SET current_version = ?2, rotation_enabled = ?3, rotation_period_days = ?4, \
         next_rotation_date = ?5, on_demand_rotations = ?6, mrk_primary = ?7, rotation_mac = ?8 \
         WHERE key_id = ?1 AND rotation_mac = ?9 AND (NOT ?10 OR key_state = 'Enabled')",
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

/// Check the keys of multi-Region key `mrk` are exactly `ids` (the write transaction's lock
/// keeps a replica from being created meanwhile).
async fn check_related(tx: &mut Tx, mrk: Uuid, ids: &[Uuid]) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT key_id FROM keys WHERE mrk_id = ?1 ORDER BY key_id")
        .bind(mrk)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
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

async fn insert_key(tx: &mut Tx, k: &KeyRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO keys (key_id, account_id, region, description, key_spec, key_usage, origin, key_manager, \
         key_state, policy, multi_region, current_version, created_at, deletion_date, rotation_enabled, \
         rotation_period_days, next_rotation_date, on_demand_rotations, mrk_id, mrk_primary, pending_window_days, policy_mac, state_mac, tags_mac, attrs_mac, rotation_mac) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26)",
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
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_material(
    tx: &mut Tx,
    m: &MaterialRecord,
    rotation_type: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO key_materials (key_id, version, wrapped, root_version, mac, rotation_type, public_key, created_at) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    )
    .bind(m.key_id)
    .bind(m.version)
    .bind(&m.wrapped)
    .bind(m.root_version)
    .bind(&m.mac)
    .bind(rotation_type)
    .bind(&m.public_key)
    .bind(Utc::now())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

async fn insert_tags(tx: &mut Tx, key_id: Uuid, tags: &[Tag]) -> Result<(), StoreError> {
    for t in tags {
        sqlx::query("INSERT INTO key_tags (key_id, tag_key, tag_value) VALUES (?1,?2,?3)")
            .bind(key_id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

async fn insert_alias<'e, E: sqlx::SqliteExecutor<'e>>(
    exec: E,
    a: &AliasRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO aliases (account_id, region, alias_name, key_id, created_at, updated_at, mac) \
         VALUES (?1,?2,?3,?4,?5,?6,?7)",
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

#[async_trait]
impl KeyStore for SqliteStore {
    async fn schema_versions(&self) -> Result<super::SchemaVersions, StoreError> {
        let table: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_sqlx_migrations'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        let database: i64 = if table {
            sqlx::query_scalar(
                "SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success",
            )
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?
        } else {
            0
        };
        let floor = self.schema_floor().await?;
        Ok(super::SchemaVersions {
            build: super::SCHEMA_SQLITE,
            database,
            floor,
        })
    }

    async fn readiness(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let known: Vec<i64> = sqlx::migrate!("./sql/sqlite")
            .iter()
            .map(|m| m.version)
            .collect();
        super::migrations_current(&known, &applied, self.schema_floor().await?)
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
        tx.commit().await.map_err(map_err)
    }

    async fn count_import_tokens_since(
        &self,
        account_id: &str,
        region: &str,
        valid_to_after: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT count(*) FROM import_tokens t JOIN keys k ON k.key_id = t.key_id \
             WHERE k.account_id = ?1 AND k.region = ?2 AND t.valid_to > ?3",
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
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
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
        sqlx::query("DELETE FROM import_tokens WHERE valid_to < ?1")
            .bind(Utc::now() - chrono::TimeDelta::days(1))
            .write_on(self)
            .await?;
        Ok(())
    }

    async fn import_token(&self, token_id: Uuid) -> Result<Option<ImportTokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM import_tokens WHERE token_id = ?1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(ImportTokenRecord {
                token_id: col(&r, "token_id")?,
                key_id: col(&r, "key_id")?,
                wrapping_algorithm: col(&r, "wrapping_algorithm")?,
                wrapping_key_spec: col(&r, "wrapping_key_spec")?,
                wrapped_private: col(&r, "wrapped_private")?,
                root_version: col(&r, "root_version")?,
                valid_to: col(&r, "valid_to")?,
                mac: col(&r, "mac")?,
            })
        })
        .transpose()
    }

    async fn key_import(&self, key_id: Uuid) -> Result<Option<KeyImportRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM key_imports WHERE key_id = ?1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.map(|r| {
            Ok(KeyImportRecord {
                key_id: col(&r, "key_id")?,
                material_check: col(&r, "material_check")?,
                expiration_model: col(&r, "expiration_model")?,
                valid_to: col(&r, "valid_to")?,
                mac: col(&r, "mac")?,
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
            "UPDATE keys SET key_state = 'Enabled', state_mac = ?2 \
             WHERE key_id = ?1 AND key_state = 'PendingImport'",
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
             (SELECT invocations FROM key_imports WHERE key_id = ?1) \
             WHERE key_id = ?1 AND EXISTS (SELECT 1 FROM key_imports WHERE key_id = ?1)",
        )
        .bind(m.key_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO key_imports (key_id, material_check, expiration_model, valid_to, mac) VALUES (?1,?2,?3,?4,?5) \
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
        tx.commit().await.map_err(map_err)
    }

    async fn update_import_expiration(&self, imp: &KeyImportRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE key_imports SET expiration_model = ?2, valid_to = ?3, mac = ?4 \
             WHERE key_id = ?1 AND material_check = ?5 \
               AND EXISTS (SELECT 1 FROM keys WHERE keys.key_id = ?1 AND keys.key_state = 'Enabled')",
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
        let done = sqlx::query(
            "UPDATE key_imports SET expiration_model = NULL, valid_to = NULL, mac = ?2, \
             invocations = max(invocations, \
                 (SELECT COALESCE(max(invocations_reserved), 0) FROM key_materials WHERE key_id = ?1)) \
             WHERE key_id = ?1 AND (?3 IS NULL OR valid_to <= ?3)",
        )
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
        sqlx::query("DELETE FROM key_materials WHERE key_id = ?1")
            .bind(imp.key_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let moved = sqlx::query(
            "UPDATE keys SET key_state = ?3, state_mac = ?2 WHERE key_id = ?1 AND key_state = ?4",
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
        tx.commit().await.map_err(map_err)
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
        rows.iter().map(|r| col(r, "key_id")).collect()
    }

    async fn expired_imports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.key_id FROM key_imports i JOIN keys k USING (key_id) \
             WHERE i.valid_to <= ?1 AND k.key_state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingReplicaDeletion') ORDER BY i.valid_to LIMIT 100",
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
        tx.commit().await.map_err(map_err)
    }

    async fn key(&self, key_id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1");
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
            "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = ?1 AND region = ?2 \
             AND (?3 IS NULL OR key_id > ?3) ORDER BY key_id LIMIT ?4"
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
            "SELECT COALESCE(sum(used), 0) FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
        )
        .bind(account_id)
        .bind(region)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn tags(&self, key_id: Uuid) -> Result<Vec<Tag>, StoreError> {
        let rows = sqlx::query(
            "SELECT tag_key, tag_value FROM key_tags WHERE key_id = ?1 ORDER BY tag_key",
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
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM audit_events WHERE event_name = 'DeleteKey' AND json_extract(key_arns, '$[0]') = ?1 AND event_time > ?2)")
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
        sqlx::query_scalar("SELECT body FROM audit_events WHERE event_name = 'InvocationsLeased' AND json_extract(body, '$.additionalEventData.materialId') = $1 ORDER BY seq DESC LIMIT $2")
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
        let mut out = Vec::new();
        for r in rows {
            let g: Option<i64> = sqlx::query_scalar(
                "SELECT max(generation) FROM audit_generations WHERE row_name = $1",
            )
            .bind(r)
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
            if let Some(g) = g {
                out.push((r.clone(), g));
            }
        }
        Ok(out)
    }

    async fn keys_whose_policy_contains(&self, text: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let q =
            format!("SELECT {KEY_COLUMNS} FROM keys WHERE instr(policy, ?1) > 0 ORDER BY key_id");
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
        let n = sqlx::query(
            "UPDATE keys SET policy = ?3, policy_mac = ?4 WHERE key_id = ?1 AND policy_mac IS ?2",
        )
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
            check_related(&mut tx, mrk, &ids).await?;
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
        tx.commit().await.map_err(map_err)
    }

    async fn related_keys(&self, mrk: Uuid) -> Result<Vec<KeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE mrk_id = ?1 ORDER BY region");
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
        let rows = sqlx::query(
            "SELECT key_id, mrk_primary, current_version, key_state FROM keys WHERE mrk_id = ?1 ORDER BY key_id",
        )
        .bind(replica.mrk_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut ok = false;
        for r in &rows {
            let state: KeyState = col(r, "key_state")?;
            if col::<Uuid>(r, "key_id")? == primary
                && col::<bool>(r, "mrk_primary")?
                && col::<i32>(r, "current_version")? == primary_version
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
                 SELECT ?1, version, wrapped, root_version, ?4, invocations_reserved, rotation_type, created_at, public_key \
                 FROM key_materials WHERE key_id = ?2 AND version = ?3 AND wrapped = ?5 AND root_version = ?6",
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
        tx.commit().await.map_err(map_err)
    }

    async fn set_primary(&self, _mrk: Uuid, updates: &[RotationUpdate]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for u in updates {
            apply_rotation(&mut tx, u, false).await?;
        }
        tx.commit().await.map_err(map_err)
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
            "UPDATE keys SET key_state = 'PendingDeletion', deletion_date = ?2, \
                 pending_window_days = NULL, state_mac = ?3 \
             WHERE key_id = ?1 AND key_state = 'PendingReplicaDeletion' AND state_mac = ?4 \
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
            "SELECT version, rotation_type, created_at FROM key_materials WHERE key_id = ?1 AND rotation_type IS NOT NULL ORDER BY version",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(RotationRecord {
                    version: col(r, "version")?,
                    rotation_type: col(r, "rotation_type")?,
                    created_at: col(r, "created_at")?,
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
            check_related(&mut tx, mrk, &ids).await?;
        }
        for u in updates {
            apply_rotation(&mut tx, u, false).await?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn due_rotations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id FROM keys WHERE rotation_enabled AND key_state = 'Enabled' \
             AND (mrk_id IS NULL OR mrk_primary) AND next_rotation_date <= ?1 \
             ORDER BY next_rotation_date LIMIT ?2",
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
            "SELECT {KEY_COLUMNS} FROM keys k WHERE key_state = 'PendingDeletion' AND deletion_date <= ?1 \
             AND NOT (mrk_primary AND EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = k.mrk_id AND r.key_id <> k.key_id)) \
             AND (?3 IS NULL OR (deletion_date, key_id) > (?3, ?4)) \
             ORDER BY deletion_date, key_id LIMIT ?2"
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
            "DELETE FROM keys WHERE key_id = ?1 AND key_state = 'PendingDeletion' AND deletion_date <= ?2 \
             AND state_mac = ?3 \
             AND NOT (mrk_primary AND EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = keys.mrk_id AND r.key_id <> keys.key_id))",
        )
        .bind(k.key_id)
        .bind(now)
        .bind(&k.state_mac)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        tx.commit().await.map_err(map_err)?;
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
        let n = sqlx::query(
            "UPDATE keys SET key_state = ?3, deletion_date = ?4, pending_window_days = ?5, state_mac = ?6 \
             WHERE key_id = ?1 AND state_mac IS ?2",
        )
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
        let n = sqlx::query(
            "UPDATE keys SET state_mac = ?2 WHERE key_id = ?1 AND state_mac IS NULL AND key_state = ?3 \
             AND deletion_date IS ?4 AND pending_window_days IS ?5",
        )
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
        sqlx::query("UPDATE keys SET description = ?2 WHERE key_id = ?1")
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
        tx.commit().await.map_err(map_err)?;
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
        tx.commit().await.map_err(map_err)?;
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
        let n = sqlx::query(
            "UPDATE keys SET rotation_mac = ?2 WHERE key_id = ?1 AND rotation_mac IS NULL \
             AND account_id = ?3 AND region = ?4 AND current_version = ?5 AND rotation_enabled = ?6 \
             AND rotation_period_days IS ?7 AND next_rotation_date IS ?8 \
             AND on_demand_rotations = ?9 AND mrk_primary = ?10",
        )
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
        tx.commit().await.map_err(map_err)
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
            "DELETE FROM aliases WHERE account_id = ?1 AND region = ?2 AND alias_name = ?3",
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
            "SELECT * FROM aliases WHERE account_id = ?1 AND region = ?2 AND alias_name = ?3",
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
             WHERE a.account_id = ?1 AND a.region = ?2 AND (?3 IS NULL OR a.key_id = ?3) ORDER BY a.alias_name",
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
            "SELECT key_id, version, wrapped, root_version, mac, public_key FROM key_materials WHERE key_id = ?1 AND version = ?2",
        )
        .bind(key_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.map(|r| {
            Ok(MaterialRecord {
                key_id: col(&r, "key_id")?,
                version: col(&r, "version")?,
                wrapped: col(&r, "wrapped")?,
                root_version: col(&r, "root_version")?,
                mac: col(&r, "mac")?,
                public_key: col(&r, "public_key")?,
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
        let mut tx = self.begin_write().await?;
        let start: Option<i64> = match mrk {
            None => sqlx::query_scalar(
                "SELECT invocations_reserved FROM key_materials WHERE key_id = ?1 AND version = ?2",
            )
            .bind(key_id)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_err)?,
            // Every region's copy of the version moves to the same count: the highest.
            Some(mrk) => sqlx::query_scalar(
                "SELECT max(m.invocations_reserved) FROM key_materials m JOIN keys k USING (key_id) \
                 WHERE k.mrk_id = ?1 AND m.version = ?2",
            )
            .bind(mrk)
            .bind(version)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_err)?,
        };
        let Some(start) = start.filter(|s| *s < limit) else {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        };
        let end = start.saturating_add(n).min(limit);
        match mrk {
            None => sqlx::query(
                "UPDATE key_materials SET invocations_reserved = ?3 WHERE key_id = ?1 AND version = ?2",
            )
            .bind(key_id),
            Some(mrk) => sqlx::query(
                "UPDATE key_materials SET invocations_reserved = ?3 \
                 WHERE key_id IN (SELECT key_id FROM keys WHERE mrk_id = ?1) AND version = ?2",
            )
            .bind(mrk),
        }
        .bind(version)
        .bind(end)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(Some((start, end)))
    }
}

fn grant_from_row(r: &SqliteRow) -> Result<GrantRecord, StoreError> {
    let operations: String = col(r, "operations")?;
    let constraints: Option<String> = col(r, "constraints")?;
    Ok(GrantRecord {
        grant_id: col(r, "grant_id")?,
        key_id: col(r, "key_id")?,
        name: col(r, "name")?,
        grantee_principal: col(r, "grantee_principal")?,
        retiring_principal: col(r, "retiring_principal")?,
        operations: from_json(&operations, "operations")?,
        constraints: constraints
            .map(|c| from_json(&c, "constraints"))
            .transpose()?,
        issuing_account: col(r, "issuing_account")?,
        created_at: col(r, "created_at")?,
        mac: col::<Option<Vec<u8>>>(r, "mac")?.unwrap_or_default(),
    })
}

/// SQLite's pieces of the grant store written once in `grants.rs`.
async fn grants_lock(_tx: &mut Tx, _key_id: Uuid) -> Result<(), StoreError> {
    // The transaction began with BEGIN IMMEDIATE: it is the one writer already.
    Ok(())
}

fn list_arg(v: &[String]) -> Result<String, StoreError> {
    to_json(v)
}

fn json_arg(v: Option<&serde_json::Value>) -> Result<Option<String>, StoreError> {
    v.map(to_json).transpose()
}

/// An audit event's first key ARN (`key_arns` is JSON text).
const FIRST_KEY_ARN: &str = "json_extract(key_arns, '$[0]')";
/// Its second (ReEncrypt's source key).
const SECOND_KEY_ARN: &str = "json_extract(key_arns, '$[1]')";
/// An audit event of a call that succeeded (no `errorCode`).
const SUCCEEDED: &str = "json_extract(body, '$.errorCode') IS NULL";

super::grants::grant_store!(SqliteStore);
super::service::service_store!(SqliteStore);
super::identity::identity_store!(SqliteStore);
super::audit::audit_store!(SqliteStore);

fn audit_row(r: &SqliteRow) -> Result<AuditRow, StoreError> {
    let key_arns: String = col(r, "key_arns")?;
    Ok(AuditRow {
        seq: col(r, "seq")?,
        event_time: col(r, "event_time")?,
        event_name: col(r, "event_name")?,
        account_id: col(r, "account_id")?,
        key_arns: from_json(&key_arns, "key_arns")?,
        body: col(r, "body")?,
        prev_hash: col(r, "prev_hash")?,
        hash: col(r, "hash")?,
    })
}

/// This store's part of the audit store written once in `audit.rs`: the trail's append (the
/// statement every audited call waits for) and the sweeper's claim of change records, which
/// each dialect does its own way.
impl SqliteStore {
    async fn dialect_append_audit(
        &self,
        head: (i64, &[u8]),
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        // As in Postgres, an empty batch writes nothing and returns the caller's head.
        if events.is_empty() {
            return Ok(Some((head.0, head.1.to_vec())));
        }
        let (mut seq, mut prev) = (head.0, head.1.to_vec());
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            seq += 1;
            let hash = chain(seq, &prev, &e.body);
            rows.push((seq, e, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        // The head moves only if it is still where the caller saw it; otherwise nothing is
        // written and the caller reads the head again.
        let mut tx = self.begin_unrecorded().await?;
        let moved = sqlx::query(
            "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1 AND seq = ?3 AND hash = ?4",
        )
        .bind(seq)
        .bind(&prev)
        .bind(head.0)
        .bind(head.1)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        if moved != 1 {
            tx.rollback().await.map_err(map_err)?;
            return Ok(None);
        }
        for (s, e, p, h) in &rows {
            sqlx::query(
                "INSERT INTO audit_events (seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash) \
                 VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            )
            .bind(s)
            .bind(e.event_id)
            .bind(e.event_time)
            .bind(&e.event_name)
            .bind(&e.account_id)
            .bind(to_json(&e.key_arns)?)
            .bind(&e.body)
            .bind(p)
            .bind(h)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        for (s, e, _, _) in &rows {
            for (r, g) in &e.generations {
                sqlx::query(
                    "INSERT INTO audit_generations (row_name, generation, seq) VALUES ($1, $2, $3)",
                )
                .bind(r)
                .bind(g)
                .bind(s)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            }
        }
        for id in settles {
            sqlx::query("DELETE FROM audit_outbox WHERE event_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(Some((seq, prev)))
    }

    async fn dialect_claim_change_records(
        &self,
        now: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut tx = self.begin_unrecorded().await?;
        let rows = sqlx::query(
            "SELECT event_id, event_time, event_name, account_id, key_arns, body, mac FROM audit_outbox \
             WHERE event_time < $2 AND (claimed_until IS NULL OR claimed_until < $1) \
             ORDER BY event_time LIMIT $3",
        )
        .bind(now)
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key_arns: String = col(r, "key_arns")?;
            let c = ChangeRecord {
                event: NewAuditEvent {
                    event_id: col(r, "event_id")?,
                    event_time: col(r, "event_time")?,
                    event_name: col(r, "event_name")?,
                    account_id: col(r, "account_id")?,
                    key_arns: from_json(&key_arns, "key_arns")?,
                    body: col(r, "body")?,
                    generations: Vec::new(),
                },
                mac: col(r, "mac")?,
                written: Default::default(),
            };
            sqlx::query("UPDATE audit_outbox SET claimed_until = $2 WHERE event_id = $1")
                .bind(c.event.event_id)
                .bind(claim_until)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            out.push(c);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{conflict_name, key_rec, ACCOUNT, REGION};
    use chrono::TimeDelta;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let url = format!("sqlite://{}", path.display());
        let s = SqliteStore::connect(&url, 4).await.unwrap();
        assert!(path.exists(), "connect creates the file");
        assert!(!s.is_initialised().await.unwrap());
        s.migrate().await.unwrap();
        assert!(s.is_initialised().await.unwrap());
        s.ensure_root_key(1, "kms-root-1").await.unwrap();
        s.ensure_account(ACCOUNT, "development").await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn readiness_checks_applied_migrations() {
        let (_dir, s) = store().await;
        s.readiness().await.unwrap();
        // Migrating again is a no-op.
        s.migrate().await.unwrap();
        s.readiness().await.unwrap();

        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 1")
            .execute(s.pool())
            .await
            .unwrap();
        match s.readiness().await {
            Err(StoreError::Other(m)) => assert!(m.contains("migration 1 is not applied"), "{m}"),
            other => panic!("expected a missing migration, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn readiness_refuses_unknown_migration() {
        let (_dir, s) = store().await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, X'00', 0)",
        )
        .execute(s.pool())
        .await
        .unwrap();
        // Additive, as far as the schema floor says: a newer release beside this one.
        s.readiness().await.unwrap();
        sqlx::query("UPDATE schema_floor SET oldest_release_schema = 9999")
            .execute(s.pool())
            .await
            .unwrap();
        match s.readiness().await {
            Err(StoreError::Other(m)) => assert!(m.contains("9999"), "{m}"),
            other => panic!("expected an unknown migration, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn root_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kms.db").display());
        let s = SqliteStore::connect(&url, 2).await.unwrap();
        s.migrate().await.unwrap();
        assert_eq!(s.current_root_version().await.unwrap(), None);
        s.ensure_root_key(1, "kms-root-1").await.unwrap();
        s.ensure_root_key(1, "kms-root-1").await.unwrap();
        s.ensure_root_key(2, "kms-root-2").await.unwrap();
        assert_eq!(s.current_root_version().await.unwrap(), Some(2));
        assert_eq!(
            conflict_name(s.ensure_root_key(3, "kms-root-1").await),
            "root_keys_label_key"
        );
        assert_eq!(
            conflict_name(s.ensure_root_key(0, "zero").await),
            "root_keys_version_check"
        );
    }

    /// Timestamps are compared as text: sqlx writes 0, 3, 6 or 9 fraction digits, and
    /// "+00:00" sorts before any fraction, so text order is time order.
    #[tokio::test]
    async fn timestamps_compare_in_time_order() {
        let (_dir, s) = store().await;
        let t = DateTime::parse_from_rfc3339("2030-06-01T12:00:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let offsets = [
            TimeDelta::milliseconds(1),
            TimeDelta::zero(),
            TimeDelta::microseconds(1),
            TimeDelta::nanoseconds(1),
            TimeDelta::nanoseconds(999_999_999),
            TimeDelta::microseconds(120),
        ];
        let mut ids = Vec::new();
        for d in offsets {
            let id = Uuid::new_v4();
            let mut k = key_rec(id, REGION);
            k.rotation_enabled = true;
            k.rotation_period_days = Some(90);
            k.next_rotation_date = Some(t + d);
            s.create_key(&k, None, &[], i64::MAX).await.unwrap();
            ids.push((t + d, id));
        }
        ids.sort();
        let all: Vec<Uuid> = ids.iter().map(|(_, id)| *id).collect();
        let at = |d| s.due_rotations(t + d, 100);
        assert_eq!(at(TimeDelta::seconds(1)).await.unwrap(), all);
        assert_eq!(at(TimeDelta::zero()).await.unwrap(), all[..1]);
        assert_eq!(at(TimeDelta::microseconds(1)).await.unwrap(), all[..3]);
        assert_eq!(at(TimeDelta::microseconds(500)).await.unwrap(), all[..4]);
        assert!(at(TimeDelta::nanoseconds(-1)).await.unwrap().is_empty());
    }

    #[test]
    fn constraint_names_follow_postgres() {
        assert_eq!(
            constraint_name(
                ErrorKind::UniqueViolation,
                1555,
                "UNIQUE constraint failed: aliases.account_id, aliases.region, aliases.alias_name"
            ),
            "aliases_pkey"
        );
        assert_eq!(
            constraint_name(
                ErrorKind::UniqueViolation,
                2067,
                "UNIQUE constraint failed: keys.mrk_id, keys.region"
            ),
            "keys_mrk_region"
        );
        assert_eq!(
            constraint_name(
                ErrorKind::UniqueViolation,
                2067,
                "UNIQUE constraint failed: root_keys.label"
            ),
            "root_keys_label_key"
        );
        assert_eq!(
            constraint_name(
                ErrorKind::CheckViolation,
                275,
                "CHECK constraint failed: keys_mrk_primary_has_id"
            ),
            "keys_mrk_primary_has_id"
        );
        assert_eq!(
            constraint_name(
                ErrorKind::ForeignKeyViolation,
                787,
                "FOREIGN KEY constraint failed"
            ),
            "foreign_key"
        );
    }
}

mac_key_methods!(SqliteStore);
