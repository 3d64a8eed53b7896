//! SQLite implementation of the repository traits: the embedded store of the development mode
//! and of small single-machine deployments. Several `kms` processes may share one database file
//! (the integration suite runs two nodes on it). Same semantics as `PgStore`; the schema is
//! `sql/sqlite/`; every repository trait is written once for both stores (`keys.rs`,
//! `grants.rs`, `identity.rs`, `service.rs`, `audit.rs`): this file holds what differs. SQLite
//! has one writer at a time:
//! every transaction that writes starts with `BEGIN IMMEDIATE` (it takes the write lock before
//! it reads), which stands in for Postgres's row locks and `FOR UPDATE SKIP LOCKED`.

use super::audit::{AppendResult, AuditBatch};
use super::custom_key_stores::{
    insert_custom_key_store_sql, unchanged, BindStore, CUSTOM_KEY_STORE_COLUMNS,
    DELETE_IF_UNCHANGED,
};
use super::grants::GRANT_COLUMNS;
use super::rows::Read;
use super::writes::KEY_COLUMNS;
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

type Tx<'a> = sqlx::Transaction<'a, Sqlite>;
type Db = Sqlite;
type DbRow = SqliteRow;

/// When a new material row was made: now, to the nanosecond, in the format every other
/// timestamp of the store has (SQLite's `CURRENT_TIMESTAMP` has seconds only, in another).
fn material_created_at() -> Option<chrono::DateTime<Utc>> {
    Some(Utc::now())
}

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
        // A value the service never writes (a key state that is not AWS's, a list that is
        // not one): the row was not written by this service.
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Invalid(e.to_string())
        }
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
                ("custom_key_stores", ["account_id", "region", "name"]) => {
                    "custom_key_stores_name".into()
                }
                ("custom_key_stores", ["cluster_id"]) => "custom_key_stores_cluster".into(),
                ("custom_key_stores", ["xks_uri_endpoint", "xks_uri_path"]) => {
                    "custom_key_stores_xks_proxy".into()
                }
                ("keys", ["custom_key_store_id", "xks_key_id"]) => "keys_xks_key".into(),
                _ => format!("{table}_{}_key", cols.join("_")),
            }
        }
        _ => "foreign_key".into(),
    }
}

impl super::rows::Dialect for Sqlite {
    fn store_error(e: sqlx::Error) -> StoreError {
        map_err(e)
    }
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

    /// Whether the schema has been created (i.e. `kms init` ran against this database).
    pub async fn is_initialised(&self) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'root_keys') AS ok",
        )
        .one(&self.pool).await?;
        cell(&row, "ok")
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
            .one(&self.pool)
            .await
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
        .all(&self.pool)
        .await?;
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
    async fn begin_write(&self) -> Result<Tx<'static>, StoreError> {
        let mut tx = self.begin_unrecorded().await?;
        record_change(&mut tx).await?;
        Ok(tx)
    }

    /// A read transaction: one snapshot (SQLite's transactions are serializable).
    async fn begin_snapshot(&self) -> Result<Tx<'static>, StoreError> {
        self.begin_read().await
    }

    /// Commit a write transaction.
    async fn commit(&self, tx: Tx<'static>) -> Result<(), StoreError> {
        tx.commit().await.map_err(map_err)
    }

    /// A write transaction that is no change of a call (the trail's own appends).
    async fn begin_unrecorded(&self) -> Result<Tx<'static>, StoreError> {
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
    async fn begin_read(&self) -> Result<Tx<'static>, StoreError> {
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

/// SQLite's pieces of the key store written once in `keys.rs`.
const IS_SAME: &str = "IS";
const GREATEST: &str = "max";
const FOR_UPDATE: &str = "";

/// The key quota's writers: the write transaction is the one writer already.
async fn keys_lock(_tx: &mut Tx<'_>, _account_id: &str, _region: &str) -> Result<(), StoreError> {
    Ok(())
}

/// The alias quota's writers: the write transaction is the one writer already.
async fn aliases_lock(
    _tx: &mut Tx<'_>,
    _account_id: &str,
    _region: &str,
) -> Result<(), StoreError> {
    Ok(())
}

/// A transaction that holds, until it ends, the lock every process takes to create token
/// keys: the database's write lock (`BEGIN IMMEDIATE`; it writes nothing).
async fn token_key_lock(s: &SqliteStore, _scope: &str) -> Result<Tx<'static>, StoreError> {
    s.begin_unrecorded().await
}

/// SQLite's pieces of the identity store written once in `identity.rs`.
const REQUEST_TARGET: &str = "json_extract(body, '$.requestParameters.target')";
/// What the index of decisions by what bodies say (`audit_events_decided_by_body`) keys an
/// event on, read only from an event of its name: a lease's material, a created access key's
/// id, a deleted principal's or re-trusted role's ARN, an access key changed, a deleted key's
/// ARN, an ended grant's id.
fn decision_key() -> String {
    format!("(CASE WHEN {BODY_EVENT_NAME} = 'InvocationsLeased' THEN json_extract(body, '$.additionalEventData.materialId') WHEN {BODY_EVENT_NAME} = 'CreateAccessKey' THEN json_extract(body, '$.requestParameters.details.access_key_id') WHEN {BODY_EVENT_NAME} IN ('CreateRole', 'DeletePrincipal', 'ActivateAccessKey', 'DeactivateAccessKey', 'DeleteAccessKey') THEN {REQUEST_TARGET} WHEN {BODY_EVENT_NAME} = 'DeleteKey' THEN {BODY_FIRST_RESOURCE_ARN} WHEN {BODY_EVENT_NAME} = 'GrantEnded' THEN {ENDED_GRANT_ID} END)")
}
const INSTR: &str = "instr";
/// Text compared and ordered byte by byte: SQLite's own (BINARY) collation.
const BYTE_ORDER: &str = "";
const ACCESS_KEYS_IN_CREATION_ORDER: &str = "a.created_at, a.rowid";

/// SQLite's pieces of the schema lookups written once in `schema.rs`: its migrations, the
/// schema they reach, and its catalogue's answer to whether the migrations' table and the
/// schema floor exist.
fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./sql/sqlite")
}
const SCHEMA_BUILD: i64 = super::SCHEMA_SQLITE;
const MIGRATIONS_TABLE_EXISTS: &str =
    "SELECT count(*) > 0 FROM sqlite_master WHERE name = '_sqlx_migrations'";
const SCHEMA_FLOOR_EXISTS: &str =
    "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_floor')";

/// This store's part of the key store written once in `keys.rs`.
impl SqliteStore {
    async fn dialect_generations_per_trail(
        &self,
        rows: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::new();
        for r in rows {
            let g: Option<i64> = sqlx::query_scalar(
                "SELECT max(generation) FROM audit_generations WHERE row_name = $1",
            )
            .bind(r)
            .one(&self.pool)
            .await?;
            if let Some(g) = g {
                out.push((r.clone(), g));
            }
        }
        Ok(out)
    }

    async fn dialect_reserve_invocations(
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
            .maybe(&mut *tx).await?,
            // Every region's copy of the version moves to the same count: the highest.
            Some(mrk) => sqlx::query_scalar(
                "SELECT max(m.invocations_reserved) FROM key_materials m JOIN keys k USING (key_id) \
                 WHERE k.mrk_id = ?1 AND m.version = ?2",
            )
            .bind(mrk)
            .bind(version)
            .one(&mut *tx).await?,
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

/// SQLite's pieces of the grant store written once in `grants.rs`.
async fn grants_lock(_tx: &mut Tx<'_>, _key_id: Uuid) -> Result<(), StoreError> {
    // The transaction began with BEGIN IMMEDIATE: it is the one writer already.
    Ok(())
}

/// The grant a `GrantEnded` event names, as the trail's index of ended grants has it.
const ENDED_GRANT_ID: &str = "json_extract(body, '$.additionalEventData.grantId')";
/// An audit event's first key ARN (`key_arns` is JSON text).
const FIRST_KEY_ARN: &str = "json_extract(key_arns, '$[0]')";
/// Its second (ReEncrypt's source key).
const SECOND_KEY_ARN: &str = "json_extract(key_arns, '$[1]')";
/// An event's name as its hashed body says it, read as text (see the Postgres store's): the
/// value of the body's first `"eventName":"`, the top-level member's.
const BODY_EVENT_NAME: &str = "substr(substr(body, instr(body, '\"eventName\":\"') + 13, 64), 1, instr(substr(body, instr(body, '\"eventName\":\"') + 13, 64), '\"') - 1)";
/// `expr`, read only from an event whose top-level name passes `test` (`= 'DeleteKey'`): a
/// caller's body may hold an escape (`\u0000`) that cannot be read as text, and a plan may test
/// conditions in any order. The indexes on what bodies say are on such expressions.
fn when_named(test: &str, expr: &str) -> String {
    format!("(CASE WHEN {BODY_EVENT_NAME} {test} THEN {expr} END)")
}
const BODY_EVENT_TYPE: &str = "json_extract(body, '$.eventType')";
const BODY_EVENT_TIME: &str = "json_extract(body, '$.eventTime')";
const BODY_FIRST_RESOURCE_ARN: &str = "json_extract(body, '$.resources[0].ARN')";
/// The account of the first key ARN (`arn:aws:kms:<region>:<account>:…`), as the trail's index
/// by key owner has it.
const FIRST_KEY_OWNER: &str = "substr(json_extract(key_arns, '$[0]'), instr(substr(json_extract(key_arns, '$[0]'), 13), ':') + 13, 12)";
/// The text list bound as `param` ([`TextList`]: a JSON array here) as a table `g` of one
/// column, `value`.
fn text_list_rows(param: &str) -> String {
    format!("json_each({param}) AS g")
}
/// "Not equal, a NULL being unequal to a value" (the indexes by key owner's predicate).
const DISTINCT_FROM: &str = "IS NOT";
/// The account of the second.
const SECOND_KEY_OWNER: &str = "substr(json_extract(key_arns, '$[1]'), instr(substr(json_extract(key_arns, '$[1]'), 13), ':') + 13, 12)";

/// The predicate of the partial indexes of successful calls (see the migration that made
/// them): no top-level `errorCode`. Event bodies are written with their members sorted, so a
/// top-level `errorCode` comes before the top-level `eventCategory`, the first member named so
/// (the members before it are the service's or escaped strings); a caller's encryption context
/// key `errorCode` sits in `requestParameters`, after it.
pub(crate) const SUCCEEDED: &str =
    "NOT (instr(body, '\"errorCode\":') BETWEEN 1 AND instr(body, '\"eventCategory\":'))";

super::repositories!(SqliteStore);

/// This store's part of the audit store written once in `audit.rs`: the trail's append (the
/// statement every audited call waits for) and the sweeper's claim of change records, which
/// each dialect does its own way.
impl SqliteStore {
    /// The append after the head as it is now: read it and append, again if another writer
    /// (another process on the same file) moved it in between.
    async fn dialect_append_audit_serialized(
        &self,
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<(i64, Vec<u8>), StoreError> {
        loop {
            let head = AuditStore::audit_head(self).await?;
            let batch = AuditBatch((head.0, &head.1), events, settles, chain);
            if let Some(new) = self.dialect_append_audit(batch).await? {
                return Ok(new);
            }
        }
    }

    async fn dialect_append_audit(&self, batch: AuditBatch<'_>) -> AppendResult {
        let AuditBatch(head, events, settles, chain) = batch;
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
            .bind(TextList(e.key_arns.clone()))
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
        .all(&mut *tx).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let c = change_from_row(r)?;
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
