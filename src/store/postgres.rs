//! Postgres implementation of the repository traits.

use super::grants::GRANT_COLUMNS;
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
        _ => StoreError::Other(e.to_string()),
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

    pub async fn migrate(&self) -> Result<(), StoreError> {
        // Migrations a newer release applied are left alone: `connect_store` has refused the
        // database unless its schema floor admits this build (rolling upgrades).
        let mut m = sqlx::migrate!("./sql");
        m.set_ignore_missing(true);
        m.run(&self.pool)
            .await
            .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
    }

    /// The oldest release schema that may run against this database (`schema_floor`, set by
    /// migrations); `None` before the table existed.
    async fn schema_floor(&self) -> Result<Option<i64>, StoreError> {
        let table: bool =
            sqlx::query_scalar("SELECT to_regclass('public.schema_floor') IS NOT NULL")
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
        let row = sqlx::query("SELECT to_regclass('public.root_keys') IS NOT NULL AS ok")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.get::<bool, _>("ok"))
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
        match tokio::time::timeout(self.commit_timeout, q.execute(&self.pool)).await {
            Ok(r) => r.map_err(map_err),
            Err(_) => {
                tracing::error!(
                    timeout_ms = self.commit_timeout.as_millis() as u64,
                    "the database did not confirm a write within database_commit_timeout_ms: no host taking writes, or commits waiting for a synchronous standby that is gone"
                );
                Err(StoreError::Unavailable(
                    "the database did not confirm a write in time".into(),
                ))
            }
        }
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
    .bind(&e.key_arns)
    .bind(&e.body)
    .bind(&c.mac)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// A key row; a value the service never writes (a key state that is not AWS's) is
/// [`StoreError::Invalid`], never a panic.
fn key_from_row(r: &PgRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        key_id: cell(r, "key_id")?,
        account_id: cell(r, "account_id")?,
        region: cell(r, "region")?,
        description: cell(r, "description")?,
        key_spec: cell(r, "key_spec")?,
        key_usage: cell(r, "key_usage")?,
        origin: cell(r, "origin")?,
        key_manager: cell(r, "key_manager")?,
        key_state: cell(r, "key_state")?,
        policy: cell(r, "policy")?,
        multi_region: cell(r, "multi_region")?,
        current_version: cell(r, "current_version")?,
        created_at: cell(r, "created_at")?,
        deletion_date: cell(r, "deletion_date")?,
        rotation_enabled: cell(r, "rotation_enabled")?,
        rotation_period_days: cell(r, "rotation_period_days")?,
        next_rotation_date: cell(r, "next_rotation_date")?,
        on_demand_rotations: cell(r, "on_demand_rotations")?,
        mrk_id: cell(r, "mrk_id")?,
        mrk_primary: cell(r, "mrk_primary")?,
        pending_window_days: cell(r, "pending_window_days")?,
        policy_mac: cell(r, "policy_mac")?,
        state_mac: cell(r, "state_mac")?,
        tags_mac: cell(r, "tags_mac")?,
        attrs_mac: cell(r, "attrs_mac")?,
        rotation_mac: cell(r, "rotation_mac")?,
    })
}

fn alias_from_row(r: &PgRow) -> AliasRecord {
    AliasRecord {
        alias_name: r.get("alias_name"),
        key_id: r.get("key_id"),
        account_id: r.get("account_id"),
        region: r.get("region"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
        target_mrk: r.try_get("mrk_id").ok().flatten(),
        mac: r.get::<Option<Vec<u8>>, _>("mac").unwrap_or_default(),
    }
}

fn access_key_from_row(r: &PgRow) -> Result<AccessKeyRecord, StoreError> {
    Ok(AccessKeyRecord {
        access_key_id: cell(r, "access_key_id")?,
        principal_arn: cell(r, "principal_arn")?,
        account_id: cell(r, "account_id")?,
        status: cell(r, "status")?,
        secret_blob: cell(r, "secret_blob")?,
        root_version: cell(r, "root_version")?,
        mac: cell(r, "mac")?,
    })
}

fn tag_from_row(r: &PgRow) -> Result<Tag, StoreError> {
    Ok(Tag {
        key: cell(r, "tag_key")?,
        value: cell(r, "tag_value")?,
    })
}

/// Postgres's pieces of the identity store written once in `identity.rs`.
const REQUEST_TARGET: &str = "((body::jsonb) #>> '{requestParameters,target}')";
const INSTR: &str = "strpos";
const ACCESS_KEYS_IN_CREATION_ORDER: &str = "a.created_at, a.access_key_id";

const KEY_COLUMNS: &str = "key_id, account_id, region, description, key_spec, key_usage, origin, key_manager, \
     key_state, policy, multi_region, current_version, created_at, deletion_date, rotation_enabled, \
     rotation_period_days, next_rotation_date, on_demand_rotations, mrk_id, mrk_primary, pending_window_days, policy_mac, state_mac, tags_mac, attrs_mac, rotation_mac";

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Every column of a key row, so no writer forgets one.
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

fn quota_exceeded() -> StoreError {
    StoreError::Conflict {
        constraint: QUOTA_EXCEEDED.into(),
    }
}

/// The customer managed keys of `k`'s account and region as the triggers count them.
async fn kept_keys(tx: &mut Tx<'_>, k: &KeyRecord) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT COALESCE(sum(used), 0)::BIGINT FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
    )
    .bind(&k.account_id)
    .bind(&k.region)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_err)
}

/// The customer managed keys quota of an account and region, checked inside the inserting
/// transaction.
async fn within_key_quota(tx: &mut Tx<'_>, k: &KeyRecord, max: i64) -> Result<(), StoreError> {
    // The count the triggers keep (16 rows, not a count of the account's keys). Far below the
    // quota, no creation racing this one can reach it: no lock. Near it, read again under the
    // lock that serialises the account's creations: every creation that could still be in
    // flight without the lock started while the count was more than the margin away.
    if kept_keys(tx, k).await? + super::QUOTA_EXACT_MARGIN < max {
        return Ok(());
    }
    quota_lock(tx, &format!("keys\n{}\n{}", k.account_id, k.region)).await?;
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
         next_rotation_date = $5, on_demand_rotations = $6, mrk_primary = $7, rotation_mac = $8 \
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

/// Lock every key of multi-Region key `mrk` for the rest of `tx` and check they are exactly
/// `ids` (a replica created or deleted meanwhile is a `Conflict`).
async fn lock_related(tx: &mut Tx<'_>, mrk: Uuid, ids: &[Uuid]) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT key_id FROM keys WHERE mrk_id = $1 ORDER BY key_id FOR UPDATE")
        .bind(mrk)
        .fetch_all(&mut **tx)
        .await
        .map_err(map_err)?;
    let mut have: Vec<Uuid> = rows.iter().map(|r| r.get("key_id")).collect();
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

async fn insert_key(tx: &mut Tx<'_>, k: &KeyRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO keys (key_id, account_id, region, description, key_spec, key_usage, origin, key_manager, \
         key_state, policy, multi_region, current_version, created_at, deletion_date, rotation_enabled, \
         rotation_period_days, next_rotation_date, on_demand_rotations, mrk_id, mrk_primary, pending_window_days, policy_mac, state_mac, tags_mac, attrs_mac, rotation_mac) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26)",
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
    tx: &mut Tx<'_>,
    m: &MaterialRecord,
    rotation_type: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO key_materials (key_id, version, wrapped, root_version, mac, rotation_type, public_key) \
         VALUES ($1,$2,$3,$4,$5,$6,$7)",
    )
    .bind(m.key_id)
    .bind(m.version)
    .bind(&m.wrapped)
    .bind(m.root_version)
    .bind(&m.mac)
    .bind(rotation_type)
    .bind(&m.public_key)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
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

async fn insert_alias<'e, E: sqlx::PgExecutor<'e>>(
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

#[async_trait]
impl KeyStore for PgStore {
    async fn schema_versions(&self) -> Result<super::SchemaVersions, StoreError> {
        let table: bool = sqlx::query_scalar(
            "SELECT count(*) > 0 FROM information_schema.tables WHERE table_name = '_sqlx_migrations'",
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
            build: super::SCHEMA_POSTGRES,
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
        let known: Vec<i64> = sqlx::migrate!("./sql").iter().map(|m| m.version).collect();
        super::migrations_current(&known, &applied, self.schema_floor().await?)
    }

    async fn create_key(
        &self,
        k: &KeyRecord,
        m: Option<&MaterialRecord>,
        tags: &[Tag],
        max_keys: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        within_key_quota(&mut tx, k, max_keys).await?;
        insert_key(&mut tx, k).await?;
        if let Some(m) = m {
            insert_material(&mut tx, m, None).await?;
        }
        insert_tags(&mut tx, k.key_id, tags).await?;
        self.commit(tx).await
    }

    async fn count_import_tokens_since(
        &self,
        account_id: &str,
        region: &str,
        valid_to_after: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        sqlx::query_scalar(
            "SELECT count(*) FROM import_tokens t JOIN keys k ON k.key_id = t.key_id \
             WHERE k.account_id = $1 AND k.region = $2 AND t.valid_to > $3",
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
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
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
        sqlx::query("DELETE FROM import_tokens WHERE valid_to < now() - interval '1 day'")
            .write_on(self)
            .await?;
        Ok(())
    }

    async fn import_token(&self, token_id: Uuid) -> Result<Option<ImportTokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM import_tokens WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| ImportTokenRecord {
            token_id: r.get("token_id"),
            key_id: r.get("key_id"),
            wrapping_algorithm: r.get("wrapping_algorithm"),
            wrapping_key_spec: r.get("wrapping_key_spec"),
            wrapped_private: r.get("wrapped_private"),
            root_version: r.get("root_version"),
            valid_to: r.get("valid_to"),
            mac: r.get("mac"),
        }))
    }

    async fn key_import(&self, key_id: Uuid) -> Result<Option<KeyImportRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM key_imports WHERE key_id = $1")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| KeyImportRecord {
            key_id: r.get("key_id"),
            material_check: r.get("material_check"),
            expiration_model: r.get("expiration_model"),
            valid_to: r.get("valid_to"),
            mac: r.get("mac"),
        }))
    }

    async fn import_material(
        &self,
        m: &MaterialRecord,
        imp: &KeyImportRecord,
        state_mac: &[u8],
        rotation: &RotationUpdate,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE keys SET key_state = 'Enabled', state_mac = $2 \
             WHERE key_id = $1 AND key_state = 'PendingImport'",
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
             (SELECT invocations FROM key_imports WHERE key_id = $1) \
             WHERE key_id = $1 AND EXISTS (SELECT 1 FROM key_imports WHERE key_id = $1)",
        )
        .bind(m.key_id)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "INSERT INTO key_imports (key_id, material_check, expiration_model, valid_to, mac) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT (key_id) DO UPDATE SET material_check = EXCLUDED.material_check, \
             expiration_model = EXCLUDED.expiration_model, valid_to = EXCLUDED.valid_to, mac = EXCLUDED.mac",
        )
        .bind(imp.key_id)
        .bind(&imp.material_check)
        .bind(&imp.expiration_model)
        .bind(imp.valid_to)
        .bind(&imp.mac)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        self.commit(tx).await
    }

    async fn update_import_expiration(&self, imp: &KeyImportRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE key_imports SET expiration_model = $2, valid_to = $3, mac = $4 \
             WHERE key_id = $1 AND material_check = $5 \
               AND EXISTS (SELECT 1 FROM keys WHERE keys.key_id = $1 AND keys.key_state = 'Enabled')",
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
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE key_imports SET expiration_model = NULL, valid_to = NULL, mac = $2, \
             invocations = GREATEST(invocations, \
                 (SELECT COALESCE(max(invocations_reserved), 0) FROM key_materials WHERE key_id = $1)) \
             WHERE key_id = $1 AND ($3::timestamptz IS NULL OR valid_to <= $3)",
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
        sqlx::query("DELETE FROM key_materials WHERE key_id = $1")
            .bind(imp.key_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let moved = sqlx::query(
            "UPDATE keys SET key_state = $3, state_mac = $2 WHERE key_id = $1 AND key_state = $4",
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
        self.commit(tx).await
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
        Ok(rows.iter().map(|r| r.get("key_id")).collect())
    }

    async fn expired_imports(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.key_id FROM key_imports i JOIN keys k USING (key_id) \
             WHERE i.valid_to <= $1 AND k.key_state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingReplicaDeletion') ORDER BY i.valid_to LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(|r| r.get("key_id")).collect())
    }

    async fn create_managed_key(
        &self,
        k: &KeyRecord,
        m: &MaterialRecord,
        a: &AliasRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        insert_key(&mut tx, k).await?;
        insert_material(&mut tx, m, None).await?;
        insert_alias(&mut *tx, a).await?;
        self.commit(tx).await
    }

    async fn key(&self, key_id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1");
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
        let q = format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE account_id = $1 AND region = $2 \
             AND ($3::uuid IS NULL OR key_id > $3) ORDER BY key_id LIMIT $4"
        );
        let rows = sqlx::query(&q)
            .bind(account_id)
            .bind(region)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn count_customer_keys(&self, account_id: &str, region: &str) -> Result<i64, StoreError> {
        // The count the triggers keep (not a count of the account's keys, which grows with
        // them): this is the quick refusal; the insert decides.
        sqlx::query_scalar(
            "SELECT COALESCE(sum(used), 0)::BIGINT FROM quota_usage WHERE account_id = $1 AND region = $2 AND resource = 'keys'",
        )
        .bind(account_id)
        .bind(region)
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)
    }

    async fn tags(&self, key_id: Uuid) -> Result<Vec<Tag>, StoreError> {
        let rows = sqlx::query(
            "SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1 ORDER BY tag_key",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| Tag {
                key: r.get("tag_key"),
                value: r.get("tag_value"),
            })
            .collect())
    }

    async fn keys_without_policy_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE policy_mac IS NULL ORDER BY key_id");
        let rows = sqlx::query(&q)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
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
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM audit_events WHERE event_name = 'DeleteKey' AND key_arns[1] = $1 AND event_time > $2)")
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
        sqlx::query_scalar("SELECT body FROM audit_events WHERE event_name = 'InvocationsLeased' AND ((body::jsonb) #>> '{additionalEventData,materialId}') = $1 ORDER BY seq DESC LIMIT $2")
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
        let found = sqlx::query(
            "SELECT row_name, max(generation) AS g FROM audit_generations \
             WHERE row_name = ANY($1::text[]) GROUP BY row_name",
        )
        .bind(rows)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(found
            .iter()
            .map(|r| (r.get::<String, _>("row_name"), r.get::<i64, _>("g")))
            .collect())
    }

    async fn keys_whose_policy_contains(&self, text: &str) -> Result<Vec<KeyRecord>, StoreError> {
        let q =
            format!("SELECT {KEY_COLUMNS} FROM keys WHERE strpos(policy, $1) > 0 ORDER BY key_id");
        let rows = sqlx::query(&q)
            .bind(text)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn set_key_policy(
        &self,
        key_id: Uuid,
        expected_mac: Option<&[u8]>,
        policy: &str,
        policy_mac: &[u8],
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE keys SET policy = $3, policy_mac = $4 WHERE key_id = $1 AND policy_mac IS NOT DISTINCT FROM $2",
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
        let mut tx = self.begin().await?;
        if let Some(mrk) = mrk {
            // Every related key locked, so a replica created meanwhile cannot miss this version.
            let ids: Vec<Uuid> = ms.iter().map(|m| m.key_id).collect();
            lock_related(&mut tx, mrk, &ids).await?;
        }
        for m in ms {
            insert_material(&mut tx, m, Some(rotation_type)).await?;
        }
        // The schedule moves in the same transaction as the material: a crash before the
        // commit leaves the key due; a second node's attempt finds the row no longer as it
        // verified it.
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
        let rows = sqlx::query(&q)
            .bind(mrk)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
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
        let mut tx = self.begin().await?;
        let rows = sqlx::query(
            "SELECT key_id, mrk_primary, current_version, key_state FROM keys WHERE mrk_id = $1 ORDER BY key_id FOR UPDATE",
        )
        .bind(replica.mrk_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        let ok = rows.iter().any(|r| {
            r.get::<Uuid, _>("key_id") == primary
                && r.get::<bool, _>("mrk_primary")
                && r.get::<i32, _>("current_version") == primary_version
                && match r.try_get::<KeyState, _>("key_state") {
                    Ok(KeyState::Enabled | KeyState::Disabled) => true,
                    Ok(KeyState::PendingImport) => external,
                    _ => false,
                }
        });
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
        let mut tx = self.begin().await?;
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
        let rows = sqlx::query(&q)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn start_primary_deletion(
        &self,
        key_id: Uuid,
        deletion_date: DateTime<Utc>,
        state_mac: &[u8],
        expected_mac: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE keys k SET key_state = 'PendingDeletion', deletion_date = $2, \
                 pending_window_days = NULL, state_mac = $3 \
             WHERE k.key_id = $1 AND k.key_state = 'PendingReplicaDeletion' AND state_mac = $4 \
               AND NOT EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = k.mrk_id AND r.key_id <> k.key_id)",
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
            "SELECT version, rotation_type, created_at FROM key_materials WHERE key_id = $1 AND rotation_type IS NOT NULL ORDER BY version",
        )
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| RotationRecord {
                version: r.get("version"),
                rotation_type: r.get("rotation_type"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    async fn set_rotation(
        &self,
        mrk: Option<Uuid>,
        updates: &[RotationUpdate],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if let Some(mrk) = mrk {
            let ids: Vec<Uuid> = updates.iter().map(|u| u.key_id).collect();
            lock_related(&mut tx, mrk, &ids).await?;
        }
        for u in updates {
            apply_rotation(&mut tx, u, false).await?;
        }
        self.commit(tx).await
    }

    async fn due_rotations(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT key_id FROM keys WHERE rotation_enabled AND key_state = 'Enabled' \
             AND (mrk_id IS NULL OR mrk_primary) AND next_rotation_date <= $1 \
             ORDER BY next_rotation_date LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(|r| r.get("key_id")).collect())
    }

    async fn keys_due_for_deletion(
        &self,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<KeyRecord>, StoreError> {
        let q = format!(
            "SELECT {KEY_COLUMNS} FROM keys k WHERE key_state = 'PendingDeletion' AND deletion_date <= $1 \
             AND NOT (mrk_primary AND EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = k.mrk_id AND r.key_id <> k.key_id)) \
             AND ($3 IS NULL OR (deletion_date, key_id) > ($3, $4)) \
             ORDER BY deletion_date, key_id LIMIT $2"
        );
        let rows = sqlx::query(&q)
            .bind(now)
            .bind(limit)
            .bind(after.map(|a| a.0))
            .bind(after.map(|a| a.1))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn delete_due_key(&self, k: &KeyRecord, now: DateTime<Utc>) -> Result<bool, StoreError> {
        // Cascades remove its material, tags, aliases, grants and import.
        let n = sqlx::query(
            "DELETE FROM keys k WHERE key_id = $1 AND key_state = 'PendingDeletion' AND deletion_date <= $2 \
             AND state_mac = $3 \
             AND NOT (mrk_primary AND EXISTS (SELECT 1 FROM keys r WHERE r.mrk_id = k.mrk_id AND r.key_id <> k.key_id))",
        )
        .bind(k.key_id)
        .bind(now)
        .bind(&k.state_mac)
        .write_on(self)
        .await?
        .rows_affected();
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
            "UPDATE keys SET key_state = $3, deletion_date = $4, pending_window_days = $5, state_mac = $6 \
             WHERE key_id = $1 AND state_mac IS NOT DISTINCT FROM $2",
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
        rows.iter().map(key_from_row).collect()
    }

    async fn set_state_mac(&self, shown: &KeyRecord, state_mac: &[u8]) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE keys SET state_mac = $2 WHERE key_id = $1 AND state_mac IS NULL AND key_state = $3 \
             AND deletion_date IS NOT DISTINCT FROM $4 AND pending_window_days IS NOT DISTINCT FROM $5",
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
        sqlx::query("UPDATE keys SET description = $2 WHERE key_id = $1")
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
        let mut tx = self.begin().await?;
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
        self.commit(tx).await?;
        Ok(true)
    }

    async fn set_tags_mac(
        &self,
        key_id: Uuid,
        tags: &[Tag],
        tags_mac: &[u8],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let stored: Vec<Tag> =
            sqlx::query("SELECT tag_key, tag_value FROM key_tags WHERE key_id = $1")
                .bind(key_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_err)?
                .iter()
                .map(|r| Tag {
                    key: r.get("tag_key"),
                    value: r.get("tag_value"),
                })
                .collect();
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
        self.commit(tx).await?;
        Ok(n == 1)
    }

    async fn keys_without_attrs_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let q = format!("SELECT {KEY_COLUMNS} FROM keys WHERE attrs_mac IS NULL ORDER BY key_id");
        let rows = sqlx::query(&q)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn keys_without_rotation_mac(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let q =
            format!("SELECT {KEY_COLUMNS} FROM keys WHERE rotation_mac IS NULL ORDER BY key_id");
        let rows = sqlx::query(&q)
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn set_rotation_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE keys SET rotation_mac = $2 WHERE key_id = $1 AND rotation_mac IS NULL \
             AND account_id = $3 AND region = $4 AND current_version = $5 AND rotation_enabled = $6 \
             AND rotation_period_days IS NOT DISTINCT FROM $7 AND next_rotation_date IS NOT DISTINCT FROM $8 \
             AND on_demand_rotations = $9 AND mrk_primary = $10",
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
        rows.iter().map(key_from_row).collect()
    }

    async fn aliases_without_mac(&self) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM aliases WHERE mac IS NULL ORDER BY account_id, region, alias_name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(alias_from_row).collect())
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
        let mut tx = self.begin().await?;
        quota_lock(&mut tx, &format!("aliases\n{}\n{}", a.account_id, a.region)).await?;
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name NOT LIKE 'alias/aws/%'")
                .bind(&a.account_id)
                .bind(&a.region)
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
        if n >= max_aliases {
            return Err(quota_exceeded());
        }
        insert_alias(&mut *tx, a).await?;
        self.commit(tx).await
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
            "DELETE FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3",
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
            "SELECT * FROM aliases WHERE account_id = $1 AND region = $2 AND alias_name = $3",
        )
        .bind(account_id)
        .bind(region)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(row.as_ref().map(alias_from_row))
    }

    async fn list_aliases(
        &self,
        account_id: &str,
        region: &str,
        key_id: Option<Uuid>,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.*, k.mrk_id FROM aliases a JOIN keys k USING (key_id) \
             WHERE a.account_id = $1 AND a.region = $2 AND ($3::uuid IS NULL OR a.key_id = $3) ORDER BY a.alias_name",
        )
        .bind(account_id)
        .bind(region)
        .bind(key_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(alias_from_row).collect())
    }

    async fn material(
        &self,
        key_id: Uuid,
        version: i32,
    ) -> Result<Option<MaterialRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT key_id, version, wrapped, root_version, mac, public_key FROM key_materials WHERE key_id = $1 AND version = $2",
        )
        .bind(key_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(row.map(|r| MaterialRecord {
            key_id: r.get("key_id"),
            version: r.get("version"),
            wrapped: r.get("wrapped"),
            root_version: r.get("root_version"),
            mac: r.get("mac"),
            public_key: r.get("public_key"),
        }))
    }

    async fn reserve_invocations(
        &self,
        key_id: Uuid,
        mrk: Option<Uuid>,
        version: i32,
        n: i64,
        limit: i64,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let row = match mrk {
            None => sqlx::query(
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
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?,
            // Every region's copy of the version moves to the same count: the highest.
            Some(mrk) => sqlx::query(
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
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .into_iter()
            .next(),
        };
        Ok(row.map(|r| {
            (
                r.get::<i64, _>("start"),
                r.get::<i64, _>("invocations_reserved"),
            )
        }))
    }
}

/// A column of `r`, or an error naming it.
fn cell<'r, T>(r: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    r.try_get(name).map_err(|e| match e {
        sqlx::Error::ColumnDecode { .. } => StoreError::Invalid(format!("column {name}: {e}")),
        e => StoreError::Other(format!("column {name}: {e}")),
    })
}

fn grant_from_row(r: &PgRow) -> Result<GrantRecord, StoreError> {
    Ok(GrantRecord {
        grant_id: cell(r, "grant_id")?,
        key_id: cell(r, "key_id")?,
        name: cell(r, "name")?,
        grantee_principal: cell(r, "grantee_principal")?,
        retiring_principal: cell(r, "retiring_principal")?,
        operations: cell(r, "operations")?,
        constraints: cell::<Option<sqlx::types::Json<serde_json::Value>>>(r, "constraints")?
            .map(|j| j.0),
        issuing_account: cell(r, "issuing_account")?,
        created_at: cell(r, "created_at")?,
        mac: cell::<Option<Vec<u8>>>(r, "mac")?.unwrap_or_default(),
    })
}

/// Postgres's pieces of the grant store written once in `grants.rs`.
async fn grants_lock(tx: &mut Tx<'_>, key_id: Uuid) -> Result<(), StoreError> {
    quota_lock(tx, &format!("grants\n{key_id}")).await
}

fn list_arg(v: &[String]) -> Result<Vec<String>, StoreError> {
    Ok(v.to_vec())
}

fn json_arg(
    v: Option<&serde_json::Value>,
) -> Result<Option<sqlx::types::Json<serde_json::Value>>, StoreError> {
    Ok(v.cloned().map(sqlx::types::Json))
}

/// An audit event's first key ARN (`key_arns` is `text[]`).
const FIRST_KEY_ARN: &str = "key_arns[1]";
/// Its second (ReEncrypt's source key).
const SECOND_KEY_ARN: &str = "key_arns[2]";
/// An audit event of a call that succeeded (no `errorCode`).
const SUCCEEDED: &str = "((body::jsonb) ->> 'errorCode') IS NULL";

super::grants::grant_store!(PgStore);
super::service::service_store!(PgStore);
super::identity::identity_store!(PgStore);
super::audit::audit_store!(PgStore);

fn audit_row(r: &PgRow) -> Result<AuditRow, StoreError> {
    Ok(AuditRow {
        seq: cell(r, "seq")?,
        event_time: cell(r, "event_time")?,
        event_name: cell(r, "event_name")?,
        account_id: cell(r, "account_id")?,
        key_arns: cell(r, "key_arns")?,
        body: cell(r, "body")?,
        prev_hash: cell(r, "prev_hash")?,
        hash: cell(r, "hash")?,
    })
}

/// This store's part of the audit store written once in `audit.rs`: the trail's append (the
/// statement every audited call waits for) and the sweeper's claim of change records, which
/// each dialect does its own way.
impl PgStore {
    async fn dialect_append_audit(
        &self,
        head: (i64, &[u8]),
        events: &[NewAuditEvent],
        settles: &[Uuid],
        chain: &ChainFn,
    ) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        // One statement, one round trip: the head moves only if it is still where the caller
        // saw it (another instance may have appended since), and the events go in only if it
        // moved. Otherwise nothing is written and the caller reads the head again.
        let (mut seq, mut prev) = (head.0, head.1.to_vec());
        let n = events.len();
        let mut seqs = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut times = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut accounts = Vec::with_capacity(n);
        let mut arns = Vec::with_capacity(n);
        let mut bodies = Vec::with_capacity(n);
        let mut prevs = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        for e in events {
            seq += 1;
            let hash = chain(seq, &prev, &e.body);
            seqs.push(seq);
            ids.push(e.event_id);
            times.push(e.event_time);
            names.push(e.event_name.as_str());
            accounts.push(e.account_id.as_deref());
            // ARNs hold no newline; arrays of arrays must be rectangular, so join them.
            arns.push(e.key_arns.join("\n"));
            bodies.push(e.body.as_str());
            prevs.push(std::mem::replace(&mut prev, hash.clone()));
            hashes.push(hash);
        }
        // The change records the events account for are removed in the same statement (a
        // batch of reads binds an empty list: a lookup of nothing in the primary key).
        // The row generations the events name go into their index in the same statement.
        let (mut gen_rows, mut gens, mut gen_seqs) = (Vec::new(), Vec::new(), Vec::new());
        for (e, s) in events.iter().zip(&seqs) {
            for (r, g) in &e.generations {
                gen_rows.push(r.as_str());
                gens.push(*g);
                gen_seqs.push(*s);
            }
        }
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
        let inserted = sqlx::query(sql)
            .bind(&seqs)
            .bind(&ids)
            .bind(&times)
            .bind(&names)
            .bind(&accounts)
            .bind(&arns)
            .bind(&bodies)
            .bind(&prevs)
            .bind(&hashes)
            .bind(seq)
            .bind(&prev)
            .bind(head.0)
            .bind(head.1)
            .bind(settles)
            .bind(&gen_rows)
            .bind(&gens)
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
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut out: Vec<ChangeRecord> = rows
            .iter()
            .map(|r| ChangeRecord {
                event: NewAuditEvent {
                    event_id: r.get("event_id"),
                    event_time: r.get("event_time"),
                    event_name: r.get("event_name"),
                    account_id: r.get("account_id"),
                    key_arns: r.get("key_arns"),
                    body: r.get("body"),
                    generations: Vec::new(),
                },
                mac: r.get("mac"),
                written: Default::default(),
            })
            .collect();
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

mac_key_methods!(PgStore);
