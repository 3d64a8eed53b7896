//! Postgres's side of the repository traits: every trait is written once for both stores
//! (`keys.rs`, `grants.rs`, `identity.rs`, `service.rs`, `audit.rs`); this file holds what
//! differs (connection and failover across hosts, commit timeouts, locks, SQL words, row
//! readers, the trail's one-statement append, the invocation lease) and the change feed.

use super::audit::{AppendResult, AuditBatch};
use super::custom_key_stores::{
    insert_custom_key_store_sql, unchanged, BindStore, CUSTOM_KEY_STORE_COLUMNS,
    DELETE_IF_UNCHANGED,
};
use super::grants::GRANT_COLUMNS;
use super::rows::Read;
use super::writes::KEY_COLUMNS;
use super::*;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// One URL per host of the configured URL (one, unless it lists several:
    /// `postgres://user@host1:5432,host2:5432/kms`).
    hosts: Arc<Vec<String>>,
    /// The host that takes writes now (the pool connects only there).
    primary: Arc<std::sync::Mutex<String>>,
    /// When the pool last moved to another host: connections opened before are never used
    /// again (they lead to the old one).
    moved_at: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// How long a commit may wait for its confirmation ([`PgStore::commit`]).
    commit_timeout: Duration,
}

/// Whether a connection of age `age` was opened before the pool last moved host.
fn opened_before_move(
    moved_at: &std::sync::Mutex<Option<std::time::Instant>>,
    age: Duration,
) -> bool {
    moved_at.lock().unwrap().is_some_and(|m| age > m.elapsed())
}

/// The URLs of every host a libpq-style URL lists (`postgres://u@h1:5432,h2:5433/db?o=v`): the
/// URL itself when it names one host.
pub fn split_hosts(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_string()];
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| format!("{scheme}://{user}{h}{path}"))
        .collect()
}

/// Whether the server at `url` takes writes (is not a standby), asked on a connection of its
/// own within `timeout`. `None`: it does not answer.
async fn takes_writes(url: &str, timeout: Duration) -> Option<bool> {
    use sqlx::Connection;
    let probe = async {
        let mut c = sqlx::PgConnection::connect(url).await.ok()?;
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut c)
            .await
            .ok()?;
        let _ = c.close().await;
        Some(!standby)
    };
    tokio::time::timeout(timeout, probe).await.ok().flatten()
}

/// The first host of `hosts` that takes writes.
async fn find_primary(hosts: &[String]) -> Option<String> {
    for h in hosts {
        if takes_writes(h, Duration::from_secs(2)).await == Some(true) {
            return Some(h.clone());
        }
    }
    None
}

pub(super) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            if code == "23505" || code == "23503" || code == "23514" {
                StoreError::Conflict {
                    constraint: db.constraint().unwrap_or("unknown").to_string(),
                }
            } else if code.starts_with("08") || code.starts_with("53") || code.starts_with("57P") {
                StoreError::Unavailable(format!("SQLSTATE {code}"))
            } else {
                StoreError::Other(format!("SQLSTATE {code}: {}", db.message()))
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        // A value the service never writes (a key state that is not AWS's, a list that is
        // not one): the row was not written by this service.
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Invalid(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

impl super::rows::Dialect for sqlx::Postgres {
    fn store_error(e: sqlx::Error) -> StoreError {
        map_err(e)
    }
}

impl PgStore {
    /// Connect (failing fast if Postgres is unreachable) and run the migrations in `sql/`.
    /// A URL that lists several hosts connects to the one that takes writes; with several,
    /// [`PgStore::follow_primary`] moves the pool when another host is promoted.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore, StoreError> {
        let hosts = split_hosts(url);
        let primary = if hosts.len() == 1 {
            hosts[0].clone()
        } else {
            find_primary(&hosts).await.ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "none of the {} database hosts takes writes (each is unreachable or a standby)",
                    hosts.len()
                ))
            })?
        };
        let options: sqlx::postgres::PgConnectOptions = primary
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Unavailable(e.to_string()))?;
        let moved_at: Arc<std::sync::Mutex<Option<std::time::Instant>>> = Default::default();
        let (on_acquire, on_release) = (moved_at.clone(), moved_at.clone());
        let mut pool = PgPoolOptions::new().max_connections(max_connections);
        if hosts.len() > 1 {
            // After a failover, connections to the old primary are closed, not used. Only
            // with several hosts: with one, the pool never moves and every acquire would pay
            // for the check.
            pool = pool
                .before_acquire(move |_, meta| {
                    let keep = !opened_before_move(&on_acquire, meta.age);
                    Box::pin(async move { Ok(keep) })
                })
                .after_release(move |_, meta| {
                    let keep = !opened_before_move(&on_release, meta.age);
                    Box::pin(async move { Ok(keep) })
                });
        }
        let pool = pool
            .acquire_timeout(Duration::from_secs(5))
            // No ping before each use: a dead connection fails its query and is replaced;
            // the ping would cost every query a second round trip.
            .test_before_acquire(false)
            // A request that is abandoned (its deadline passed) mid-statement can leave its
            // connection inside a transaction, holding row locks, until the connection is used
            // again; Postgres ends such a session after a few idle seconds instead. A standby
            // (a host demoted, or one the pool was pointed at before a failover settled) is
            // never used: it cannot take writes.
            .after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("SET idle_in_transaction_session_timeout = '3s'")
                        .await?;
                    let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                        .fetch_one(&mut *conn)
                        .await?;
                    if standby {
                        return Err(sqlx::Error::Protocol(
                            "the database host is a standby (read-only)".into(),
                        ));
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(PgStore {
            pool,
            hosts: Arc::new(hosts),
            primary: Arc::new(std::sync::Mutex::new(primary)),
            moved_at,
            commit_timeout: Duration::from_secs(2),
        })
    }

    /// With several hosts: every `every`, check that the pool's host still takes writes, and
    /// when it does not (it is gone, or was demoted), find the host that does and move the
    /// pool there (new connections go to it; those to the old host fail and are dropped).
    pub fn follow_primary(&self, every: Duration) {
        if self.hosts.len() < 2 {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let current = store.primary_url();
                if takes_writes(&current, every.max(Duration::from_millis(500))).await == Some(true)
                {
                    continue;
                }
                let Some(next) = find_primary(&store.hosts).await else {
                    tracing::error!(
                        hosts = store.hosts.len(),
                        "no database host takes writes: calls are refused (DependencyTimeoutException) until one does"
                    );
                    continue;
                };
                if next == current {
                    continue;
                }
                match next.parse::<sqlx::postgres::PgConnectOptions>() {
                    Ok(o) => {
                        store.pool.set_connect_options(o);
                        *store.moved_at.lock().unwrap() = Some(std::time::Instant::now());
                        tracing::warn!(
                            from = %crate::config::url_without_password(&current).unwrap_or_default(),
                            to = %crate::config::url_without_password(&next).unwrap_or_default(),
                            "the database primary moved; the pool follows it"
                        );
                        *store.primary.lock().unwrap() = next;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot use the new primary's URL"),
                }
            }
        });
    }

    /// The URL of the host the pool uses now.
    pub fn primary_url(&self) -> String {
        self.primary.lock().unwrap().clone()
    }

    /// Whether the schema has been created (i.e. `kms init` ran against this database).
    pub async fn is_initialised(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar("SELECT to_regclass('public.root_keys') IS NOT NULL")
            .one(&self.pool)
            .await
    }

    /// [`Store::changes`]: LISTEN/NOTIFY on the host that takes writes; when the connection
    /// is lost (the host died, the primary moved), `Missed`, then listen again on the host the
    /// pool uses now, and `Missed` once more for whatever changed while nobody listened.
    pub async fn changes(&self) -> Result<tokio::sync::mpsc::Receiver<Change>, StoreError> {
        let mut listener = self.key_change_listener().await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        let pg = self.clone();
        tokio::spawn(async move {
            loop {
                let change = match listener.try_recv().await {
                    Ok(Some(n)) => Change::Changed {
                        channel: n.channel().to_string(),
                        payload: n.payload().to_string(),
                    },
                    Ok(None) | Err(_) => {
                        tracing::warn!("change listener lost its connection; listening again");
                        if tx.send(Change::Missed).await.is_err() {
                            return;
                        }
                        loop {
                            match pg.key_change_listener().await {
                                Ok(l) => {
                                    listener = l;
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "change listener cannot connect; retrying");
                                    tokio::time::sleep(Duration::from_millis(250)).await;
                                }
                            }
                        }
                        Change::Missed
                    }
                };
                if tx.send(change).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// A listener for key-change notifications from any node.
    pub async fn key_change_listener(&self) -> Result<PgListener, StoreError> {
        // Its own one-connection pool to the host that takes writes now, which fails fast when
        // that host is gone; no reconnecting by itself (to a host that may be gone for good):
        // the caller listens again, on whichever host the pool has moved to.
        let options: sqlx::postgres::PgConnectOptions = self
            .primary_url()
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Unavailable(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(1))
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(options)
            .await
            .map_err(map_err)?;
        let mut l = PgListener::connect_with(&pool).await.map_err(map_err)?;
        l.eager_reconnect(false);
        l.listen_all([
            "kms_key_changed",
            "kms_identity_changed",
            "kms_grant_changed",
            "kms_alias_changed",
            "kms_custom_key_store_changed",
        ])
        .await
        .map_err(map_err)?;
        Ok(l)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// BEGIN, in its own task so that it always completes. A request abandoned at its deadline
    /// while BEGIN was on the wire would otherwise leave the connection inside a transaction
    /// the pool does not know about, and every statement later run on it would stay
    /// uncommitted, holding its locks. A `Transaction` that is dropped rolls back (on the
    /// connection's next use), so abandoning a request after BEGIN is safe.
    ///
    /// A transaction that writes: inside a change's scope ([`in_change`]) its first statement
    /// writes the change's record, so the record commits exactly when the change does.
    async fn begin(&self) -> Result<Tx<'static>, StoreError> {
        let mut tx = self.begin_read().await?;
        record_change(&mut tx).await?;
        Ok(tx)
    }

    /// Commit `tx`, waiting at most `commit_timeout` for the database to confirm it. A commit
    /// that waits longer (no host taking writes, or a synchronous standby that is gone) is
    /// reported as the database being unavailable, so the call is answered promptly
    /// (`DependencyTimeoutException`), not acknowledged. The commit itself goes on in the
    /// background (its connection held) until the database answers or drops it.
    /// A read transaction that sees one snapshot (`REPEATABLE READ`).
    async fn begin_snapshot(&self) -> Result<Tx<'static>, StoreError> {
        let mut tx = self.begin_read().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        Ok(tx)
    }

    /// [`PgStore::begin`], by the name the methods written once for both stores use.
    async fn begin_write(&self) -> Result<Tx<'static>, StoreError> {
        self.begin().await
    }

    async fn commit(&self, tx: Tx<'static>) -> Result<(), StoreError> {
        let waiting = tokio::spawn(async move { tx.commit().await });
        match tokio::time::timeout(self.commit_timeout, waiting).await {
            Ok(Ok(r)) => r.map_err(map_err),
            Ok(Err(e)) => Err(StoreError::Other(format!("COMMIT did not complete: {e}"))),
            Err(_) => {
                tracing::error!(
                    timeout_ms = self.commit_timeout.as_millis() as u64,
                    "the database did not confirm a commit within database_commit_timeout_ms: no host taking writes, or commits waiting for a synchronous standby that is gone"
                );
                Err(StoreError::Unavailable(
                    "the database did not confirm a commit in time".into(),
                ))
            }
        }
    }

    /// Run one statement in its own transaction, its commit confirmed within `commit_timeout`
    /// (as [`PgStore::commit`]).
    async fn autocommit(
        &self,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<sqlx::postgres::PgQueryResult, StoreError> {
        self.confirmed(q.execute(&self.pool)).await
    }

    /// `write` (one statement that commits), confirmed within `commit_timeout`.
    async fn confirmed<T>(
        &self,
        write: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.commit_timeout, write).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => Err(self.unconfirmed()),
        }
    }

    /// A write not confirmed within `database_commit_timeout_ms`, logged with its likely cause.
    fn unconfirmed(&self) -> StoreError {
        tracing::error!(
            timeout_ms = self.commit_timeout.as_millis() as u64,
            "the database did not confirm a write within database_commit_timeout_ms: no host taking writes, or commits waiting for a synchronous standby that is gone"
        );
        StoreError::Unavailable("the database did not confirm a write in time".into())
    }

    /// This store with commits waiting at most `t` for their confirmation.
    pub fn with_commit_timeout(mut self, t: Duration) -> PgStore {
        self.commit_timeout = t;
        self
    }

    /// A transaction that only reads (no change record).
    async fn begin_read(&self) -> Result<Tx<'static>, StoreError> {
        let pool = self.pool.clone();
        tokio::spawn(async move { pool.begin().await })
            .await
            .map_err(|e| StoreError::Other(format!("BEGIN did not complete: {e}")))?
            .map_err(map_err)
    }

    /// Run one writing statement: on its own outside a change, in a transaction with the
    /// change's record inside one (rolled back if the statement changed nothing).
    async fn write(
        &self,
        q: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<sqlx::postgres::PgQueryResult, StoreError> {
        if current_change().is_none() {
            return self.autocommit(q).await;
        }
        let mut tx = self.begin().await?;
        let r = q.execute(&mut *tx).await.map_err(map_err)?;
        if r.rows_affected() > 0 {
            self.commit(tx).await?;
        }
        Ok(r)
    }
}

/// A writing statement, run by [`PgStore::write`].
trait WriteOn {
    async fn write_on(self, s: &PgStore) -> Result<sqlx::postgres::PgQueryResult, StoreError>;
}

impl WriteOn for sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    async fn write_on(self, s: &PgStore) -> Result<sqlx::postgres::PgQueryResult, StoreError> {
        s.write(self).await
    }
}

/// Postgres's pieces of the key store written once in `keys.rs`.
const IS_SAME: &str = "IS NOT DISTINCT FROM";
const GREATEST: &str = "GREATEST";
const FOR_UPDATE: &str = " FOR UPDATE";

/// Serialise every node's creators of one account's keys in one Region (the key quota).
async fn keys_lock(tx: &mut Tx<'_>, account_id: &str, region: &str) -> Result<(), StoreError> {
    quota_lock(tx, &format!("keys\n{account_id}\n{region}")).await
}

/// Serialise every node's writers of one account's aliases in one Region (the alias quota).
async fn aliases_lock(tx: &mut Tx<'_>, account_id: &str, region: &str) -> Result<(), StoreError> {
    quota_lock(tx, &format!("aliases\n{account_id}\n{region}")).await
}

/// A transaction that holds, until it ends, the lock every process takes to create the
/// token keys of `scope` (an advisory lock; it writes nothing).
async fn token_key_lock(s: &PgStore, scope: &str) -> Result<Tx<'static>, StoreError> {
    let mut tx = s.begin_read().await?;
    quota_lock(&mut tx, &format!("token-key\n{scope}")).await?;
    Ok(tx)
}
/// Postgres's pieces of the identity store written once in `identity.rs`.
const REQUEST_TARGET: &str = "((body::json) #>> '{requestParameters,target}')";
/// What the index of decisions by what bodies say (`audit_events_decided_by_body`) keys an
/// event on, read only from an event of its name: a lease's material, a created access key's
/// id, a deleted principal's or re-trusted role's ARN, an access key changed, a deleted key's
/// ARN, an ended grant's id.
fn decision_key() -> String {
    format!("(CASE WHEN {BODY_EVENT_NAME} = 'InvocationsLeased' THEN ((body::json) #>> '{{additionalEventData,materialId}}') WHEN {BODY_EVENT_NAME} = 'CreateAccessKey' THEN ((body::json) #>> '{{requestParameters,details,access_key_id}}') WHEN {BODY_EVENT_NAME} IN ('CreateRole', 'DeletePrincipal', 'ActivateAccessKey', 'DeactivateAccessKey', 'DeleteAccessKey') THEN {REQUEST_TARGET} WHEN {BODY_EVENT_NAME} = 'DeleteKey' THEN {BODY_FIRST_RESOURCE_ARN} WHEN {BODY_EVENT_NAME} = 'GrantEnded' THEN {ENDED_GRANT_ID} END)")
}
const INSTR: &str = "strpos";
/// Text compared and ordered byte by byte (as Rust's `str` is), whatever the database's
/// collation.
const BYTE_ORDER: &str = " COLLATE \"C\"";
const ACCESS_KEYS_IN_CREATION_ORDER: &str = "a.created_at, a.access_key_id";

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;
type Db = sqlx::Postgres;
type DbRow = PgRow;

/// When a new material row was made: `None`, the database's `CURRENT_TIMESTAMP` (the
/// transaction's time, as the column's default).
fn material_created_at() -> Option<chrono::DateTime<Utc>> {
    None
}

/// Serialise, for the rest of `tx`, every writer that counts against the same quota (on every
/// node: a transaction-scoped advisory lock), so the count taken after it is exact.
async fn quota_lock(tx: &mut Tx<'_>, scope: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(scope)
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

/// Postgres's pieces of the schema lookups written once in `schema.rs`: its migrations, the
/// schema they reach, and its catalogue's answer to whether the migrations' table and the
/// schema floor exist.
fn migrator() -> sqlx::migrate::Migrator {
    sqlx::migrate!("./sql")
}
const SCHEMA_BUILD: i64 = super::SCHEMA_POSTGRES;
const MIGRATIONS_TABLE_EXISTS: &str =
    "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = '_sqlx_migrations'";
const SCHEMA_FLOOR_EXISTS: &str = "SELECT to_regclass('public.schema_floor') IS NOT NULL";

/// This store's part of the key store written once in `keys.rs`.
impl PgStore {
    async fn dialect_generations_per_trail(
        &self,
        rows: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as(
            "SELECT row_name, max(generation) FROM audit_generations \
             WHERE row_name = ANY($1::text[]) GROUP BY row_name",
        )
        .bind(rows)
        .all(&self.pool)
        .await
    }

    async fn dialect_reserve_invocations(
        &self,
        key_id: Uuid,
        mrk: Option<Uuid>,
        version: i32,
        n: i64,
        limit: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let row: Option<(i64, i64)> = match mrk {
            None => sqlx::query_as(
                "WITH old AS (SELECT invocations_reserved AS start FROM key_materials \
                              WHERE key_id = $1 AND version = $2 FOR UPDATE) \
                 UPDATE key_materials k SET invocations_reserved = LEAST(old.start + $3, $4) FROM old \
                 WHERE k.key_id = $1 AND k.version = $2 AND old.start < $4 \
                 RETURNING old.start, k.invocations_reserved",
            )
            .bind(key_id)
            .bind(version)
            .bind(n)
            .bind(limit)
            .maybe(&self.pool).await?,
            // Every region's copy of the version moves to the same count: the highest.
            Some(mrk) => sqlx::query_as(
                "WITH copies AS (SELECT m.key_id, m.invocations_reserved FROM key_materials m JOIN keys k USING (key_id) \
                                 WHERE k.mrk_id = $1 AND m.version = $2 ORDER BY m.key_id FOR UPDATE OF m), \
                      old AS (SELECT max(invocations_reserved) AS start FROM copies) \
                 UPDATE key_materials k SET invocations_reserved = LEAST(old.start + $3, $4) FROM old, copies \
                 WHERE k.key_id = copies.key_id AND k.version = $2 AND old.start < $4 \
                 RETURNING old.start, k.invocations_reserved",
            )
            .bind(mrk)
            .bind(version)
            .bind(n)
            .bind(limit)
            .all(&self.pool).await?
            .into_iter()
            .next(),
        };
        Ok(row)
    }
}

/// Postgres's pieces of the grant store written once in `grants.rs`.
async fn grants_lock(tx: &mut Tx<'_>, key_id: Uuid) -> Result<(), StoreError> {
    quota_lock(tx, &format!("grants\n{key_id}")).await
}

/// The grant a `GrantEnded` event names, as the trail's index of ended grants has it.
const ENDED_GRANT_ID: &str = "((body::json) #>> '{additionalEventData,grantId}')";
/// An audit event's first key ARN (`key_arns` is `text[]`).
const FIRST_KEY_ARN: &str = "key_arns[1]";
/// Its second (ReEncrypt's source key).
const SECOND_KEY_ARN: &str = "key_arns[2]";
/// An event's name as its hashed body says it, read as text: the value of the first
/// `"eventName":"` of the body, which is the top-level member's (bodies are written with their
/// members sorted, and those before it are the service's or escaped strings; a caller's
/// context key `eventName` sits in `requestParameters`, after it). No event is parsed to read
/// it, and no caller's text reaches it: the partial indexes on what bodies say take it as
/// their predicate. The rest is read from the events it admits, as `json` (which takes any
/// escape a caller may have sent, unlike `jsonb`).
const BODY_EVENT_NAME: &str =
    "split_part(substr(body, strpos(body, '\"eventName\":\"') + 13, 64), '\"', 1)";
/// `expr`, read only from an event whose top-level name passes `test` (`= 'DeleteKey'`): a
/// caller's body may hold an escape (`\u0000`) that cannot be read as text, and a plan may test
/// conditions in any order. The indexes on what bodies say are on such expressions.
fn when_named(test: &str, expr: &str) -> String {
    format!("(CASE WHEN {BODY_EVENT_NAME} {test} THEN {expr} END)")
}
const BODY_EVENT_TYPE: &str = "((body::json) ->> 'eventType')";
const BODY_EVENT_TIME: &str = "((body::json) ->> 'eventTime')";
const BODY_FIRST_RESOURCE_ARN: &str = "((body::json) #>> '{resources,0,ARN}')";
/// The account of the first key ARN (`arn:aws:kms:<region>:<account>:…`), as the trail's index
/// by key owner has it.
const FIRST_KEY_OWNER: &str = "split_part(key_arns[1], ':', 5)";
/// The text list bound as `param` ([`TextList`]: a `text[]` here) as a table `g` of one
/// column, `value`.
fn text_list_rows(param: &str) -> String {
    format!("unnest({param}::text[]) AS g(value)")
}
/// "Not equal, a NULL being unequal to a value" (the indexes by key owner's predicate).
const DISTINCT_FROM: &str = "IS DISTINCT FROM";
/// The account of the second.
const SECOND_KEY_OWNER: &str = "split_part(key_arns[2], ':', 5)";

/// The predicate of the partial indexes of successful calls (see the migration that made
/// them): no top-level `errorCode`. Event bodies are written with their members sorted, so a
/// top-level `errorCode` comes before the top-level `eventCategory`, the first member named so
/// (the members before it are the service's or escaped strings); a caller's encryption context
/// key `errorCode` sits in `requestParameters`, after it.
pub(crate) const SUCCEEDED: &str =
    "NOT (strpos(body, '\"errorCode\":') BETWEEN 1 AND strpos(body, '\"eventCategory\":'))";

super::repositories!(PgStore);

/// A batch of events as the columns an append binds (one array per column).
struct EventColumns<'a> {
    ids: Vec<Uuid>,
    times: Vec<chrono::DateTime<Utc>>,
    names: Vec<&'a str>,
    accounts: Vec<Option<&'a str>>,
    /// Each event's key ARNs joined by newlines (ARNs hold none; arrays of arrays must be
    /// rectangular).
    arns: Vec<String>,
    bodies: Vec<&'a str>,
    /// The row generations the events name, each with its event's place in the batch (from 1).
    gen_rows: Vec<&'a str>,
    gens: Vec<i64>,
    gen_events: Vec<i32>,
}

impl<'a> EventColumns<'a> {
    fn of(events: &'a [NewAuditEvent]) -> Self {
        let n = events.len();
        let mut c = EventColumns {
            ids: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
            names: Vec::with_capacity(n),
            accounts: Vec::with_capacity(n),
            arns: Vec::with_capacity(n),
            bodies: Vec::with_capacity(n),
            gen_rows: Vec::new(),
            gens: Vec::new(),
            gen_events: Vec::new(),
        };
        for (i, e) in events.iter().enumerate() {
            c.ids.push(e.event_id);
            c.times.push(e.event_time);
            c.names.push(e.event_name.as_str());
            c.accounts.push(e.account_id.as_deref());
            c.arns.push(e.key_arns.join("\n"));
            c.bodies.push(e.body.as_str());
            for (r, g) in &e.generations {
                c.gen_rows.push(r.as_str());
                c.gens.push(*g);
                c.gen_events.push(i as i32 + 1);
            }
        }
        c
    }

    /// `q` with the six event columns bound next (ids, times, names, accounts, ARNs, bodies).
    fn bind<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(&self.ids)
            .bind(&self.times)
            .bind(&self.names)
            .bind(&self.accounts)
            .bind(&self.arns)
            .bind(&self.bodies)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The contended append (sql/0034): the event columns, the settled change records, the row
/// generations with their events' places in the batch.
const APPEND_AFTER_HEAD: &str = "SELECT first_seq, first_prev, hashes \
     FROM kms_audit_append($1, $2, $3, $4, $5, $6, $7::uuid[], $8, $9, $10)";

/// This store's part of the audit store written once in `audit.rs`: the trail's append (the
/// statement every audited call waits for) and the sweeper's claim of change records, which
/// each dialect does its own way.
impl PgStore {
    /// The append after the head as it is, in one round trip: `kms_audit_append` (sql/0034)
    /// locks the head's row, chains the events after it, writes them and moves the head, so
    /// another node's append waits for this one's commit, then goes after it (no statement
    /// wasted). Every hash it returns is checked against `chain` before it is taken as the
    /// new head.
    async fn dialect_append_audit_serialized(
        &self,
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<(i64, Vec<u8>), StoreError> {
        let n = events.len();
        let c = EventColumns::of(events);
        let q = c.bind(sqlx::query(APPEND_AFTER_HEAD)).bind(settles);
        let q = q.bind(&c.gen_rows).bind(&c.gens).bind(&c.gen_events);
        // The head's row is held by the last append until its commit is confirmed (one waiting
        // for a synchronous standby that is gone holds it for good): the wait for it counts as
        // this commit's, and is answered as promptly.
        let r = self.confirmed(q.fetch_one(&self.pool)).await?;
        let first: i64 = r.try_get("first_seq").map_err(map_err)?;
        let mut prev: Vec<u8> = r.try_get("first_prev").map_err(map_err)?;
        let hashes: Vec<Vec<u8>> = r.try_get("hashes").map_err(map_err)?;
        if hashes.len() != n {
            return Err(StoreError::Other(format!(
                "the database chained {} of {n} events",
                hashes.len()
            )));
        }
        for ((seq, e), h) in (first..).zip(events).zip(hashes) {
            if chain(seq, &prev, &e.body) != h {
                return Err(StoreError::Other(format!(
                    "the database chained event {seq} with a hash the service did not compute"
                )));
            }
            prev = h;
        }
        Ok((first + n as i64 - 1, prev))
    }

    /// The append's one statement, in a transaction of its own.
    async fn dialect_append_audit(&self, batch: AuditBatch<'_>) -> AppendResult {
        let AuditBatch(head, events, settles, chain) = batch;
        // One statement, one round trip: the head moves only if it is still where the caller
        // saw it (another instance may have appended since), and the events go in only if it
        // moved. Otherwise nothing is written and the caller reads the head again.
        let (mut seq, mut prev) = (head.0, head.1.to_vec());
        let n = events.len();
        let c = EventColumns::of(events);
        let mut seqs = Vec::with_capacity(n);
        let mut prevs = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for e in events {
            seq += 1;
            let hash = chain(seq, &prev, &e.body);
            seqs.push(seq);
            prevs.push(std::mem::replace(&mut prev, hash.clone()));
            hashes.push(hash);
        }
        // The change records the events account for are removed in the same statement (a
        // batch of reads binds an empty list: a lookup of nothing in the primary key).
        // The row generations the events name go into their index in the same statement.
        let gen_seqs: Vec<i64> = c.gen_events.iter().map(|i| head.0 + *i as i64).collect();
        let sql = "WITH moved AS (UPDATE audit_head SET seq = $10, hash = $11 WHERE id = 1 AND seq = $12 AND hash = $13 RETURNING 1), \
                  settled AS (DELETE FROM audit_outbox WHERE event_id = ANY($14::uuid[]) AND EXISTS (SELECT 1 FROM moved)), \
                  generations AS (INSERT INTO audit_generations (row_name, generation, seq) \
                      SELECT r, g, s FROM UNNEST($15::text[], $16::bigint[], $17::bigint[]) AS y(r, g, s) \
                      WHERE EXISTS (SELECT 1 FROM moved)) \
             INSERT INTO audit_events (seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash) \
                 SELECT s, i, t, n, a, CASE WHEN k = '' THEN '{}'::text[] ELSE string_to_array(k, E'\\n') END, b, p, h \
                 FROM UNNEST($1::bigint[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::bytea[]) \
                      AS x(s, i, t, n, a, k, b, p, h) \
                 WHERE EXISTS (SELECT 1 FROM moved)";
        let inserted = c
            .bind(sqlx::query(sql).bind(&seqs))
            .bind(&prevs)
            .bind(&hashes)
            .bind(seq)
            .bind(&prev)
            .bind(head.0)
            .bind(head.1)
            .bind(settles)
            .bind(&c.gen_rows)
            .bind(&c.gens)
            .bind(&gen_seqs);
        // The trail's commit is what every audited call waits for: confirmed in time or
        // reported (a synchronous standby that is gone answers every call 503, promptly).
        let inserted = self.autocommit(inserted).await?.rows_affected();
        Ok((inserted as usize == n).then_some((seq, prev)))
    }

    async fn dialect_claim_change_records(
        &self,
        now: DateTime<Utc>,
        cutoff: DateTime<Utc>,
        claim_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE audit_outbox SET claimed_until = $3 WHERE event_id IN ( \
                 SELECT event_id FROM audit_outbox \
                 WHERE event_time < $2 AND (claimed_until IS NULL OR claimed_until < $1) \
                 ORDER BY event_time LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING event_id, event_time, event_name, account_id, key_arns, body, mac",
        )
        .bind(now)
        .bind(cutoff)
        .bind(claim_until)
        .bind(limit)
        .all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(change_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by_key(|c| c.event.event_time);
        Ok(out)
    }
}

#[cfg(test)]
mod host_list_tests {
    use super::split_hosts;

    #[test]
    fn a_url_listing_hosts_gives_one_url_per_host() {
        assert_eq!(
            split_hosts("postgres://kms:pw@db1:5432,db2:5433/kms?sslmode=require"),
            vec![
                "postgres://kms:pw@db1:5432/kms?sslmode=require".to_string(),
                "postgres://kms:pw@db2:5433/kms?sslmode=require".to_string(),
            ]
        );
        assert_eq!(
            split_hosts("postgres://db1,db2"),
            vec!["postgres://db1".to_string(), "postgres://db2".to_string()]
        );
        assert_eq!(
            split_hosts("postgres://postgres@127.0.0.1:5432/kms"),
            vec!["postgres://postgres@127.0.0.1:5432/kms".to_string()]
        );
    }
}
