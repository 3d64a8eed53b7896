//! One store contract, run on both backends: every test here runs against the embedded SQLite
//! store (a file per test) and against Postgres (a database per test, on
//! `KMS_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432`), so a fix lands once
//! and both stores are held to the same behaviour. Tests of one backend's own mechanics
//! (SQLite's text timestamps, its constraint names, migration readiness) stay beside it.

use super::*;
use chrono::TimeDelta;
use std::fmt;

/// A store under test, with what the test needs of its database besides the traits.
pub(crate) enum Backend {
    /// The directory holds the database file for as long as the test runs.
    Sqlite(#[allow(dead_code)] tempfile::TempDir, SqliteStore),
    Postgres(String, PgStore),
}

fn pg_base() -> String {
    std::env::var("KMS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

impl Backend {
    async fn prepared(self) -> Backend {
        assert!(!self.is_initialised().await.unwrap());
        self.migrate().await.unwrap();
        assert!(self.is_initialised().await.unwrap());
        self.ensure_root_key(1, "kms-root-1").await.unwrap();
        self.ensure_account(ACCOUNT, "development").await.unwrap();
        self
    }

    pub(crate) async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kms.db");
        let url = format!("sqlite://{}", path.display());
        let s = SqliteStore::connect(&url, 4).await.unwrap();
        assert!(path.exists(), "connect creates the file");
        Backend::Sqlite(dir, s).prepared().await
    }

    /// A fresh database (named like the integration tests' ones, which scripts/test.sh drops
    /// if a run is interrupted).
    pub(crate) async fn postgres() -> Backend {
        let name = format!("kms_t_store_{}", Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&format!("{}/postgres", pg_base()))
            .await
            .expect("Postgres for the store tests (KMS_TEST_DATABASE_URL)");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let s = PgStore::connect(&format!("{}/{name}", pg_base()), 4)
            .await
            .unwrap();
        Backend::Postgres(name, s).prepared().await
    }

    /// The store, to share between tasks.
    pub(crate) fn shared(&self) -> std::sync::Arc<dyn Store> {
        match self {
            Backend::Sqlite(_, s) => std::sync::Arc::new(s.clone()),
            Backend::Postgres(_, s) => std::sync::Arc::new(s.clone()),
        }
    }

    /// One integer from SQL both dialects understand.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        match self {
            Backend::Sqlite(_, s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
            Backend::Postgres(_, s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        }
    }

    /// One text value from SQL both dialects understand.
    pub(crate) async fn text(&self, sql: &str) -> String {
        match self {
            Backend::Sqlite(_, s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
            Backend::Postgres(_, s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await.unwrap(),
        }
    }

    /// A statement about one key (`$1`), its error mapped as the store maps them.
    pub(crate) async fn execute_for_key(&self, sql: &str, key_id: Uuid) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(_, s) => sqlx::query(sql)
                .bind(key_id)
                .execute(s.pool())
                .await
                .map(|_| ())
                .map_err(super::sqlite::map_err),
            Backend::Postgres(_, s) => sqlx::query(sql)
                .bind(key_id)
                .execute(s.pool())
                .await
                .map(|_| ())
                .map_err(super::postgres::map_err),
        }
    }
}

/// A Postgres test's database is dropped when the test ends, passed or not (connections
/// closed by force); what an interrupted run leaves, scripts/test.sh drops at its next start.
impl Drop for Backend {
    fn drop(&mut self) {
        let Backend::Postgres(name, _) = self else {
            return;
        };
        let name = name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                if let Ok(admin) = sqlx::PgPool::connect(&format!("{}/postgres", pg_base())).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            })
        })
        .join();
    }
}

impl std::ops::Deref for Backend {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        match self {
            Backend::Sqlite(_, s) => s,
            Backend::Postgres(_, s) => s,
        }
    }
}

/// Each test of the contract, on each backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::sqlite().await;
                    super::$name(&b).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::Backend::postgres().await;
                    super::$name(&b).await;
                }
            )*
        }
    };
}

contract!(
    concurrent_reservations_never_overlap,
    due_deletions_cascade_and_happen_once,
    concurrent_audit_writers_take_turns,
    create_key_reads_back_equal,
    list_keys_paginates_in_id_order,
    key_updates_and_macs,
    aliases_create_update_delete_and_conflict,
    managed_key_with_alias_is_all_or_nothing,
    rotation_on_demand_and_scheduled,
    reserve_invocations_up_to_the_limit,
    multi_region_replicas_rotation_and_primary,
    replica_deletion_promotes_the_primary,
    import_tokens_and_key_imports,
    grants_insert_list_delete,
    identity_accounts_principals_access_keys,
    identity_policies_tags_services_and_authz,
    roles_and_sessions,
    audit_chain_head_events_and_checkpoints,
    audit_lookup_filters_one_accounts_events_and_calls_on_its_keys,
    a_keys_last_use_skips_failed_calls_in_the_store,
    a_trail_is_verified_and_exported_a_page_at_a_time,
    a_keys_deletion_is_read_from_the_events_body,
    nodes_report_and_are_forgotten
);

pub(crate) const ACCOUNT: &str = "111122223333";

/// Now, to the microsecond: what both stores keep of a timestamp (Postgres's resolution), so a
/// record reads back equal.
fn now() -> DateTime<Utc> {
    chrono::SubsecRound::trunc_subsecs(Utc::now(), 6)
}
pub(crate) const REGION: &str = "eu-west-1";

/// The update that moves a key's stored rotation state by `f` (the MAC is a fresh
/// placeholder: the store only compares it with what the row holds).
async fn moved(s: &dyn Store, id: Uuid, f: impl FnOnce(&mut KeyRecord)) -> RotationUpdate {
    let old = s.key(id).await.unwrap().unwrap();
    let mut new = old.clone();
    f(&mut new);
    RotationUpdate::between(&old, &new, Uuid::new_v4().as_bytes().to_vec())
}

fn version(v: i32, on_demand: bool) -> impl FnOnce(&mut KeyRecord) {
    move |k: &mut KeyRecord| {
        k.current_version = v;
        k.on_demand_rotations += i32::from(on_demand);
    }
}

fn schedule(
    enabled: bool,
    days: Option<i32>,
    next: Option<DateTime<Utc>>,
) -> impl FnOnce(&mut KeyRecord) {
    move |k: &mut KeyRecord| {
        k.rotation_enabled = enabled;
        k.rotation_period_days = days;
        k.next_rotation_date = next;
    }
}

/// Set a key's state over whatever state MAC it has now.
async fn set_state(
    s: &dyn Store,
    id: Uuid,
    state: KeyState,
    deletion_date: Option<DateTime<Utc>>,
    days: Option<i32>,
    mac: &[u8],
) {
    let now = s.key(id).await.unwrap().unwrap().state_mac;
    assert!(s
        .set_key_state(id, now.as_deref(), state, deletion_date, days, mac)
        .await
        .unwrap());
}

pub(crate) fn key_rec(key_id: Uuid, region: &str) -> KeyRecord {
    KeyRecord {
        description: "orders table key".into(),
        policy_mac: Some(vec![0x11; 32]),
        state_mac: Some(vec![0x22; 32]),
        tags_mac: Some(vec![0x33; 32]),
        alias_set: Some("[]".into()),
        aliases_mac: Some(vec![0x3a; 32]),
        attrs_mac: Some(vec![0x34; 32]),
        rotation_mac: Some(vec![0x35; 32]),
        ..KeyRecord::new(
            key_id,
            ACCOUNT,
            region,
            r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
            now(),
        )
    }
}

pub(crate) fn material(key_id: Uuid, version: i32) -> MaterialRecord {
    MaterialRecord {
        key_id,
        version,
        wrapped: vec![0xA0 | version as u8; 40],
        root_version: 1,
        mac: vec![version as u8; 32],
        public_key: None,
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag {
        key: k.into(),
        value: v.into(),
    }
}

fn alias_rec(name: &str, key_id: Uuid) -> AliasRecord {
    let now = now();
    AliasRecord {
        alias_name: name.into(),
        key_id,
        account_id: ACCOUNT.into(),
        region: REGION.into(),
        created_at: now,
        updated_at: now,
        target_mrk: None,
        mac: vec![0x44; 32],
    }
}

fn same_key(a: &KeyRecord, b: &KeyRecord) {
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

/// A foreign key violation: Postgres names the constraint (`<table>_<column>_fkey`); SQLite's
/// error does not, so its store reports `foreign_key`.
fn assert_foreign_key(r: Result<impl fmt::Debug, StoreError>) {
    let name = conflict_name(r);
    assert!(
        name == "foreign_key" || name.ends_with("_fkey"),
        "expected a foreign key violation, got {name}"
    );
}

pub(crate) fn conflict_name(r: Result<impl fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict { constraint }) => constraint,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn count(s: &Backend, sql: &str) -> i64 {
    s.count(sql).await
}

async fn create_key_reads_back_equal(s: &Backend) {
    let id = Uuid::new_v4();
    let mut k = key_rec(id, REGION);
    k.rotation_enabled = true;
    k.rotation_period_days = Some(365);
    k.next_rotation_date = Some(now() + TimeDelta::days(365));
    let mut m = material(id, 1);
    m.public_key = Some(vec![0x30, 0x59, 0x30, 0x13]);
    s.create_key(
        &k,
        Some(&m),
        &[tag("team", "orders"), tag("env", "dev")],
        i64::MAX,
    )
    .await
    .unwrap();

    same_key(&s.key(id).await.unwrap().unwrap(), &k);
    assert!(s.key(Uuid::new_v4()).await.unwrap().is_none());
    let got = s.material(id, 1).await.unwrap().unwrap();
    assert_eq!(
        (
            got.key_id,
            got.version,
            got.wrapped,
            got.root_version,
            got.mac,
            got.public_key
        ),
        (
            m.key_id,
            m.version,
            m.wrapped,
            m.root_version,
            m.mac,
            m.public_key
        )
    );
    assert!(s.material(id, 2).await.unwrap().is_none());
    assert_eq!(
        s.tags(id).await.unwrap(),
        vec![tag("env", "dev"), tag("team", "orders")]
    );
    // Creating it again is refused as a whole: nothing of the second attempt remains.
    let again = s
        .create_key(&k, Some(&material(id, 1)), &[tag("x", "y")], i64::MAX)
        .await;
    assert_eq!(conflict_name(again), "keys_pkey");
    assert_eq!(s.tags(id).await.unwrap().len(), 2);
    // A key of an account that does not exist.
    let mut orphan = key_rec(Uuid::new_v4(), REGION);
    orphan.account_id = "999999999999".into();
    assert_foreign_key(s.create_key(&orphan, None, &[], i64::MAX).await);
    assert!(s.key(orphan.key_id).await.unwrap().is_none());
}

async fn list_keys_paginates_in_id_order(s: &Backend) {
    let mut ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for id in &ids {
        s.create_key(
            &key_rec(*id, REGION),
            Some(&material(*id, 1)),
            &[],
            i64::MAX,
        )
        .await
        .unwrap();
    }
    let other = Uuid::new_v4();
    s.create_key(&key_rec(other, "us-east-1"), None, &[], i64::MAX)
        .await
        .unwrap();
    // Uuid's order is bytewise, as Postgres orders uuids.
    ids.sort();
    let page1 = s.list_keys(ACCOUNT, REGION, None, 2).await.unwrap();
    assert_eq!(page1.iter().map(|k| k.key_id).collect::<Vec<_>>(), ids[..2]);
    let page2 = s
        .list_keys(ACCOUNT, REGION, Some(page1[1].key_id), 2)
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|k| k.key_id).collect::<Vec<_>>(),
        ids[2..4]
    );
    let page3 = s
        .list_keys(ACCOUNT, REGION, Some(page2[1].key_id), 2)
        .await
        .unwrap();
    assert_eq!(page3.iter().map(|k| k.key_id).collect::<Vec<_>>(), ids[4..]);
    let east = s.list_keys(ACCOUNT, "us-east-1", None, 10).await.unwrap();
    assert_eq!(east.len(), 1);
    assert_eq!(east[0].key_id, other);
    // Every material row, walked a page at a time in (key id, version) order.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = s.materials_after(after, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.key_id, last.version));
        walked.extend(page.iter().map(|m| (m.key_id, m.version)));
    }
    assert_eq!(walked, ids.iter().map(|id| (*id, 1)).collect::<Vec<_>>());
}

async fn key_updates_and_macs(s: &Backend) {
    let id = Uuid::new_v4();
    let mut k = key_rec(id, REGION);
    k.policy_mac = None;
    k.state_mac = None;
    s.create_key(&k, Some(&material(id, 1)), &[tag("a", "1")], i64::MAX)
        .await
        .unwrap();

    let without: Vec<Uuid> = s
        .keys_without_mac(KeyMac::Policy)
        .await
        .unwrap()
        .iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(without, vec![id]);
    assert!(s.set_policy_mac(id, &k.policy, &[7; 32]).await.unwrap());
    assert!(s.keys_without_mac(KeyMac::Policy).await.unwrap().is_empty());
    assert_eq!(s.keys_without_mac(KeyMac::State).await.unwrap().len(), 1);
    let shown = s.key(id).await.unwrap().unwrap();
    let other = KeyRecord {
        key_state: KeyState::Disabled,
        ..shown.clone()
    };
    assert!(!s.set_state_mac(&other, &[8; 32]).await.unwrap());
    assert!(s.set_state_mac(&shown, &[8; 32]).await.unwrap());
    assert!(s.keys_without_mac(KeyMac::State).await.unwrap().is_empty());

    // Policy and state writes are compare-and-set: against a MAC the row no longer has,
    // nothing is written.
    let before = s.key(id).await.unwrap().unwrap();
    assert!(!s
        .set_key_policy(id, Some(&[6; 32]), r#"{"Statement":[1]}"#, &[9; 32])
        .await
        .unwrap());
    assert!(s
        .set_key_policy(
            id,
            before.policy_mac.as_deref(),
            r#"{"Statement":[1]}"#,
            &[9; 32]
        )
        .await
        .unwrap());
    s.set_description(id, "renamed").await.unwrap();
    let when = now() + TimeDelta::days(7);
    assert!(!s
        .set_key_state(
            id,
            Some(&[6; 32]),
            KeyState::Disabled,
            None,
            None,
            &[10; 32]
        )
        .await
        .unwrap());
    assert!(s
        .set_key_state(
            id,
            Some(&[8; 32]),
            KeyState::PendingDeletion,
            Some(when),
            Some(7),
            &[10; 32]
        )
        .await
        .unwrap());
    let got = s.key(id).await.unwrap().unwrap();
    assert_eq!(got.policy, r#"{"Statement":[1]}"#);
    assert_eq!(got.policy_mac, Some(vec![9; 32]));
    assert_eq!(got.description, "renamed");
    assert_eq!(got.key_state, KeyState::PendingDeletion);
    assert_eq!(got.deletion_date, Some(when));
    assert_eq!(got.pending_window_days, Some(7));
    assert_eq!(got.state_mac, Some(vec![10; 32]));

    // Tags change only under the MAC the caller verified, with their new MAC.
    let sealed = s.key(id).await.unwrap().unwrap().tags_mac.unwrap();
    let three = [tag("a", "2"), tag("b", "3"), tag("c", "4")];
    assert!(!s.set_tags(id, &[0; 32], &three, &[5; 32]).await.unwrap());
    assert_eq!(s.tags(id).await.unwrap(), vec![tag("a", "1")]);
    assert!(s.set_tags(id, &sealed, &three, &[5; 32]).await.unwrap());
    assert_eq!(s.tags(id).await.unwrap(), three.to_vec());
    assert!(s
        .set_tags(id, &[5; 32], &[tag("b", "3")], &[6; 32])
        .await
        .unwrap());
    assert_eq!(s.tags(id).await.unwrap(), vec![tag("b", "3")]);
    assert_eq!(
        s.key(id).await.unwrap().unwrap().tags_mac,
        Some(vec![6; 32])
    );
}

/// A key's next set of aliases, written over the seal it carries now (`from` repeated) with
/// the seal `to` repeated, its set `[to]`.
fn set_of(key_id: Uuid, from: u8, to: u8) -> AliasSetSeal {
    AliasSetSeal {
        key_id,
        expected: Some(vec![from; 32]),
        alias_set: format!("[{to}]"),
        mac: vec![to; 32],
    }
}

/// A key's set of aliases and its seal, as stored.
async fn set_now(s: &Backend, key_id: Uuid) -> (Option<String>, Option<Vec<u8>>) {
    let k = s.key(key_id).await.unwrap().unwrap();
    (k.alias_set, k.aliases_mac)
}

async fn aliases_create_update_delete_and_conflict(s: &Backend) {
    let (k1, k2) = (Uuid::new_v4(), Uuid::new_v4());
    s.create_key(&key_rec(k1, REGION), Some(&material(k1, 1)), &[], i64::MAX)
        .await
        .unwrap();
    let mrk = Uuid::new_v4();
    let mut mk = mrk_rec(k2, REGION, mrk);
    mk.mrk_primary = true;
    s.create_key(&mk, Some(&material(k2, 1)), &[], i64::MAX)
        .await
        .unwrap();

    let a = alias_rec("alias/orders", k1);
    s.create_alias(&a, i64::MAX, i64::MAX, &set_of(k1, 0x3a, 1))
        .await
        .unwrap();
    s.create_alias(
        &alias_rec("alias/billing", k2),
        i64::MAX,
        i64::MAX,
        &set_of(k2, 0x3a, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        conflict_name(
            s.create_alias(
                &alias_rec("alias/orders", k2),
                i64::MAX,
                i64::MAX,
                &set_of(k2, 2, 3)
            )
            .await
        ),
        "aliases_pkey"
    );
    // Written with the key's new set of aliases, over the set as the caller read it.
    assert_eq!(
        set_now(s, k1).await,
        (Some("[1]".to_string()), Some(vec![1; 32]))
    );
    assert_eq!(
        conflict_name(
            s.create_alias(
                &alias_rec("alias/stale", k1),
                i64::MAX,
                i64::MAX,
                &set_of(k1, 0x3a, 9)
            )
            .await
        ),
        ALIAS_SET_CHANGED
    );
    assert!(s
        .alias(ACCOUNT, REGION, "alias/stale")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.alias(ACCOUNT, REGION, "alias/orders").await.unwrap(),
        Some(a.clone())
    );
    assert!(s
        .alias(ACCOUNT, "us-east-1", "alias/orders")
        .await
        .unwrap()
        .is_none());

    let all = s
        .list_aliases(ACCOUNT, REGION, None, "", i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .map(|a| (a.alias_name.as_str(), a.target_mrk))
            .collect::<Vec<_>>(),
        vec![("alias/billing", Some(mrk)), ("alias/orders", None)]
    );
    let of_k1 = s
        .list_aliases(ACCOUNT, REGION, Some(k1), "", i64::MAX)
        .await
        .unwrap();
    assert_eq!(of_k1.len(), 1);
    assert_eq!(of_k1[0].alias_name, "alias/orders");
    // A page: at most `limit`, after a name.
    let names = |after: &'static str, limit: i64, key: Option<Uuid>| async move {
        s.list_aliases(ACCOUNT, REGION, key, after, limit)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.alias_name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("", 1, None).await, ["alias/billing"]);
    assert_eq!(names("alias/billing", 1, None).await, ["alias/orders"]);
    assert_eq!(names("alias/c", 5, None).await, ["alias/orders"]);
    assert!(names("alias/orders", 5, None).await.is_empty());
    assert!(names("alias/orders", 5, Some(k1)).await.is_empty());
    assert_eq!(names("alias/b", 5, Some(k1)).await, ["alias/orders"]);

    let to_k2 = AliasRecord {
        key_id: k2,
        mac: vec![0x55; 32],
        ..alias_rec("alias/orders", k2)
    };
    let moving = [set_of(k2, 2, 5), set_of(k1, 1, 6)];
    // A key's alias count is checked in the writing transaction, on create and on repoint.
    assert_eq!(
        conflict_name(
            s.create_alias(
                &alias_rec("alias/third", k1),
                i64::MAX,
                1,
                &set_of(k1, 1, 4)
            )
            .await
        ),
        KEY_ALIASES_EXCEEDED
    );
    assert_eq!(
        conflict_name(s.update_alias(&to_k2, k1, 1, &moving).await),
        KEY_ALIASES_EXCEEDED
    );
    assert_eq!(
        s.alias(ACCOUNT, REGION, "alias/orders").await.unwrap(),
        Some(a.clone())
    );
    // Only from the key the caller verified.
    assert!(!s.update_alias(&to_k2, k2, i64::MAX, &moving).await.unwrap());
    assert!(s.update_alias(&to_k2, k1, i64::MAX, &moving).await.unwrap());
    assert_eq!(set_now(s, k2).await.1, Some(vec![5; 32]));
    assert_eq!(
        set_now(s, k1).await,
        (Some("[6]".to_string()), Some(vec![6; 32]))
    );
    let moved = s
        .alias(ACCOUNT, REGION, "alias/orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(moved.key_id, k2);
    assert!(moved.updated_at >= a.updated_at);
    assert_eq!(moved.created_at, a.created_at);
    assert_eq!(moved.mac, vec![0x55; 32]);
    assert!(!s
        .update_alias(&alias_rec("alias/missing", k2), k1, i64::MAX, &[])
        .await
        .unwrap());

    // A deletion with a stale set deletes nothing.
    assert_eq!(
        conflict_name(
            s.delete_alias(ACCOUNT, REGION, "alias/orders", &set_of(k2, 2, 8))
                .await
        ),
        ALIAS_SET_CHANGED
    );
    assert!(s
        .delete_alias(ACCOUNT, REGION, "alias/orders", &set_of(k2, 5, 7))
        .await
        .unwrap());
    assert_eq!(set_now(s, k2).await.1, Some(vec![7; 32]));
    assert!(!s
        .delete_alias(ACCOUNT, REGION, "alias/orders", &set_of(k2, 7, 8))
        .await
        .unwrap());
    assert_eq!(
        s.list_aliases(ACCOUNT, REGION, None, "", i64::MAX)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn managed_key_with_alias_is_all_or_nothing(s: &Backend) {
    let first = Uuid::new_v4();
    let mut k = key_rec(first, REGION);
    k.key_manager = "AWS".into();
    s.create_managed_key(&k, &material(first, 1), &alias_rec("alias/aws/s3", first))
        .await
        .unwrap();
    let second = Uuid::new_v4();
    let mut k2 = key_rec(second, REGION);
    k2.key_manager = "AWS".into();
    let r = s
        .create_managed_key(
            &k2,
            &material(second, 1),
            &alias_rec("alias/aws/s3", second),
        )
        .await;
    assert_eq!(conflict_name(r), "aliases_pkey");
    assert!(s.key(second).await.unwrap().is_none());
    assert!(s.material(second, 1).await.unwrap().is_none());
    assert_eq!(
        s.alias(ACCOUNT, REGION, "alias/aws/s3")
            .await
            .unwrap()
            .unwrap()
            .key_id,
        first
    );
}

async fn rotation_on_demand_and_scheduled(s: &Backend) {
    let id = Uuid::new_v4();
    s.create_key(&key_rec(id, REGION), Some(&material(id, 1)), &[], i64::MAX)
        .await
        .unwrap();

    let u = moved(&**s, id, version(2, true)).await;
    s.add_material(&[material(id, 2)], None, "ON_DEMAND", false, &[u])
        .await
        .unwrap();
    let k = s.key(id).await.unwrap().unwrap();
    assert_eq!((k.current_version, k.on_demand_rotations), (2, 1));
    assert_eq!(k.next_rotation_date, None);
    // The same version again: another node rotated first.
    let u = moved(&**s, id, version(2, true)).await;
    assert_eq!(
        conflict_name(
            s.add_material(&[material(id, 2)], None, "ON_DEMAND", false, &[u])
                .await
        ),
        "key_materials_pkey"
    );
    // A rotation computed from a row that changed since is refused.
    let stale = moved(&**s, id, version(3, true)).await;
    let u = moved(&**s, id, |k| k.on_demand_rotations = 7).await;
    s.set_rotation(None, &[u]).await.unwrap();
    assert_eq!(
        conflict_name(
            s.add_material(&[material(id, 3)], None, "ON_DEMAND", false, &[stale])
                .await
        ),
        "rotation_state_changed"
    );
    assert!(s.material(id, 3).await.unwrap().is_none());
    let u = moved(&**s, id, |k| k.on_demand_rotations = 1).await;
    s.set_rotation(None, &[u]).await.unwrap();

    let due = now() - TimeDelta::minutes(1);
    let u = moved(&**s, id, schedule(true, Some(90), Some(due))).await;
    s.set_rotation(None, &[u]).await.unwrap();
    let now = now();
    assert_eq!(s.due_rotations(now, 10).await.unwrap(), vec![id]);
    assert!(s
        .due_rotations(due - TimeDelta::seconds(1), 10)
        .await
        .unwrap()
        .is_empty());

    let next = due + TimeDelta::days(90);
    let stale = moved(&**s, id, |k| {
        k.current_version = 4;
        k.next_rotation_date = Some(next);
    })
    .await;
    let u = moved(&**s, id, |k| {
        k.current_version = 3;
        k.next_rotation_date = Some(next);
    })
    .await;
    s.add_material(&[material(id, 3)], None, "AUTOMATIC", true, &[u])
        .await
        .unwrap();
    let k = s.key(id).await.unwrap().unwrap();
    assert_eq!(k.current_version, 3);
    assert_eq!(k.on_demand_rotations, 1);
    assert_eq!(k.next_rotation_date, Some(due + TimeDelta::days(90)));
    assert!(s.due_rotations(now, 10).await.unwrap().is_empty());
    // A second node's attempt for the same due time finds the row no longer as it read it.
    assert_eq!(
        conflict_name(
            s.add_material(&[material(id, 4)], None, "AUTOMATIC", true, &[stale])
                .await
        ),
        "rotation_state_changed"
    );
    assert!(s.material(id, 4).await.unwrap().is_none());

    let rotations = s.rotations(id).await.unwrap();
    assert_eq!(
        rotations
            .iter()
            .map(|r| (r.version, r.rotation_type.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, "ON_DEMAND"), (3, "AUTOMATIC")]
    );
    assert!(rotations[0].created_at <= rotations[1].created_at);

    // Disabled keys are not due.
    let u = moved(&**s, id, schedule(true, Some(90), Some(due))).await;
    s.set_rotation(None, &[u]).await.unwrap();
    set_state(&**s, id, KeyState::Disabled, None, None, &[1]).await;
    assert!(s.due_rotations(now, 10).await.unwrap().is_empty());
    let u = moved(&**s, id, version(4, false)).await;
    assert_eq!(
        conflict_name(
            s.add_material(&[material(id, 4)], None, "AUTOMATIC", true, &[u])
                .await
        ),
        "rotation_state_changed"
    );
}

async fn reserve_invocations_up_to_the_limit(s: &Backend) {
    let id = Uuid::new_v4();
    s.create_key(&key_rec(id, REGION), Some(&material(id, 1)), &[], i64::MAX)
        .await
        .unwrap();
    assert_eq!(
        s.reserve_invocations(id, None, 1, 10, 25).await.unwrap(),
        Some((0, 10))
    );
    assert_eq!(
        s.reserve_invocations(id, None, 1, 10, 25).await.unwrap(),
        Some((10, 20))
    );
    assert_eq!(
        s.reserve_invocations(id, None, 1, 10, 25).await.unwrap(),
        Some((20, 25))
    );
    assert_eq!(
        s.reserve_invocations(id, None, 1, 10, 25).await.unwrap(),
        None
    );
    assert_eq!(
        s.reserve_invocations(id, None, 2, 10, 25).await.unwrap(),
        None
    );
    assert_eq!(
        s.reserve_invocations(Uuid::new_v4(), None, 1, 10, 25)
            .await
            .unwrap(),
        None
    );
}

async fn concurrent_reservations_never_overlap(b: &Backend) {
    let s = b.shared();
    let id = Uuid::new_v4();
    s.create_key(&key_rec(id, REGION), Some(&material(id, 1)), &[], i64::MAX)
        .await
        .unwrap();
    let limit = 1_000;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(r) = s.reserve_invocations(id, None, 1, 7, limit).await.unwrap() {
                got.push(r);
            }
            got
        }));
    }
    let mut ranges = Vec::new();
    for t in tasks {
        ranges.extend(t.await.unwrap());
    }
    ranges.sort();
    let mut next = 0;
    for (start, end) in ranges {
        assert_eq!(start, next, "ranges are contiguous and disjoint");
        assert!(end > start && end <= limit);
        next = end;
    }
    assert_eq!(next, limit);
}

/// A key of multi-Region key `mrk` in `region` (a replica unless marked primary).
fn mrk_rec(key_id: Uuid, region: &str, mrk: Uuid) -> KeyRecord {
    let mut r = key_rec(key_id, region);
    r.multi_region = true;
    r.mrk_id = Some(mrk);
    r
}

/// Replica `r` of `primary`, asked at the primary's material version `version` with copies
/// of `copied` (its first version's material, as the primary holds it, unless forged).
async fn replicate(
    s: &dyn Store,
    r: &KeyRecord,
    primary: Uuid,
    version: i32,
    copied: MaterialRecord,
    mac: u8,
) -> Result<(), StoreError> {
    s.create_replica(
        r,
        primary,
        version,
        &[(copied, vec![mac; 32])],
        &[],
        i64::MAX,
    )
    .await
}

/// A primary in `REGION` and its replica in us-east-1.
async fn mrk_pair(s: &dyn Store) -> (Uuid, Uuid, Uuid) {
    let (mrk, primary, replica) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut p = mrk_rec(primary, REGION, mrk);
    p.mrk_primary = true;
    s.create_key(&p, Some(&material(primary, 1)), &[tag("t", "1")], i64::MAX)
        .await
        .unwrap();
    let r = mrk_rec(replica, "us-east-1", mrk);
    replicate(s, &r, primary, 1, material(primary, 1), 0x55)
        .await
        .unwrap();
    (mrk, primary, replica)
}

async fn multi_region_replicas_rotation_and_primary(s: &Backend) {
    let (mrk, primary, replica) = mrk_pair(&**s).await;

    let related = s.related_keys(mrk).await.unwrap();
    assert_eq!(
        related
            .iter()
            .map(|k| (k.region.as_str(), k.key_id, k.mrk_primary))
            .collect::<Vec<_>>(),
        vec![("eu-west-1", primary, true), ("us-east-1", replica, false)]
    );
    let copy = s.material(replica, 1).await.unwrap().unwrap();
    assert_eq!(copy.wrapped, material(primary, 1).wrapped);
    assert_eq!(copy.mac, vec![0x55; 32]);

    // The primary moved on (or the material differs): the caller retries.
    let r2 = mrk_rec(Uuid::new_v4(), "ap-south-1", mrk);
    let stale = replicate(&**s, &r2, primary, 2, material(primary, 1), 1).await;
    assert_eq!(conflict_name(stale), "mrk_primary_changed");
    let mut forged = material(primary, 1);
    forged.wrapped = vec![0; 40];
    let changed = replicate(&**s, &r2, primary, 1, forged, 1).await;
    assert_eq!(conflict_name(changed), "mrk_primary_changed");
    assert!(s.key(r2.key_id).await.unwrap().is_none());
    // A second replica in a region that has one.
    let dup = mrk_rec(Uuid::new_v4(), "us-east-1", mrk);
    let exists = replicate(&**s, &dup, primary, 1, material(primary, 1), 1).await;
    assert_eq!(conflict_name(exists), "keys_mrk_region");

    // Invocations are counted across regions.
    assert_eq!(
        s.reserve_invocations(primary, Some(mrk), 1, 5, 100)
            .await
            .unwrap(),
        Some((0, 5))
    );
    assert_eq!(
        s.reserve_invocations(replica, Some(mrk), 1, 5, 100)
            .await
            .unwrap(),
        Some((5, 10))
    );
    assert_eq!(
        s.reserve_invocations(replica, None, 1, 1, 100)
            .await
            .unwrap(),
        Some((10, 11))
    );

    // Rotating must cover every related key.
    assert_eq!(
        conflict_name(
            s.add_material(&[material(primary, 2)], Some(mrk), "ON_DEMAND", false, &[])
                .await
        ),
        "mrk_related_keys_changed"
    );
    let due = now() - TimeDelta::hours(1);
    let both = [
        moved(&**s, primary, schedule(true, Some(30), Some(due))).await,
        moved(&**s, replica, schedule(true, Some(30), Some(due))).await,
    ];
    assert_eq!(
        conflict_name(s.set_rotation(Some(mrk), &both[..1]).await),
        "mrk_related_keys_changed"
    );
    s.set_rotation(Some(mrk), &both).await.unwrap();
    assert_eq!(
        s.due_rotations(now(), 10).await.unwrap(),
        vec![primary],
        "only primaries are due"
    );
    let next = Some(due + TimeDelta::days(30));
    let updates = [
        moved(&**s, primary, |k| {
            k.current_version = 2;
            k.next_rotation_date = next;
        })
        .await,
        moved(&**s, replica, |k| {
            k.current_version = 2;
            k.next_rotation_date = next;
        })
        .await,
    ];
    s.add_material(
        &[material(primary, 2), material(replica, 2)],
        Some(mrk),
        "AUTOMATIC",
        true,
        &updates,
    )
    .await
    .unwrap();
    for id in [primary, replica] {
        let k = s.key(id).await.unwrap().unwrap();
        assert_eq!(k.current_version, 2);
        assert_eq!(k.next_rotation_date, Some(due + TimeDelta::days(30)));
    }

    let flip = [
        moved(&**s, primary, |k| k.mrk_primary = false).await,
        moved(&**s, replica, |k| k.mrk_primary = true).await,
    ];
    s.set_primary(mrk, &flip).await.unwrap();
    assert!(!s.key(primary).await.unwrap().unwrap().mrk_primary);
    assert!(s.key(replica).await.unwrap().unwrap().mrk_primary);
    // Two primaries are refused by the schema.
    let two = s
        .execute_for_key(
            "UPDATE keys SET mrk_primary = true WHERE key_id = $1",
            primary,
        )
        .await;
    assert_eq!(conflict_name(two), "keys_mrk_one_primary");
}

async fn replica_deletion_promotes_the_primary(s: &Backend) {
    let (mrk, primary, replica) = mrk_pair(&**s).await;
    let now = now();
    set_state(
        &**s,
        primary,
        KeyState::PendingReplicaDeletion,
        None,
        Some(7),
        &[1],
    )
    .await;
    set_state(
        &**s,
        replica,
        KeyState::PendingDeletion,
        Some(now - TimeDelta::days(1)),
        None,
        &[1],
    )
    .await;
    // The replica still exists.
    assert!(s.replica_deletions_done().await.unwrap().is_empty());
    assert!(!s
        .start_primary_deletion(primary, now + TimeDelta::days(7), &[2], &[1])
        .await
        .unwrap());

    let deleted = s.keys_due_for_deletion(now, None, 10).await.unwrap();
    assert_eq!(
        deleted.iter().map(|k| k.key_id).collect::<Vec<_>>(),
        vec![replica]
    );
    assert_eq!(deleted[0].key_state, KeyState::PendingDeletion);
    assert!(s.delete_due_key(&deleted[0], now).await.unwrap());
    assert!(s.material(replica, 1).await.unwrap().is_none());

    let ready = s.replica_deletions_done().await.unwrap();
    assert_eq!(
        ready.iter().map(|k| k.key_id).collect::<Vec<_>>(),
        vec![primary]
    );
    assert_eq!(ready[0].pending_window_days, Some(7));
    // Not as verified (the row changed since): nothing is written.
    assert!(!s
        .start_primary_deletion(primary, now + TimeDelta::days(7), &[2], &[9])
        .await
        .unwrap());
    assert!(s
        .start_primary_deletion(primary, now + TimeDelta::days(7), &[2], &[1])
        .await
        .unwrap());
    let p = s.key(primary).await.unwrap().unwrap();
    assert_eq!(p.key_state, KeyState::PendingDeletion);
    assert_eq!(p.deletion_date, Some(now + TimeDelta::days(7)));
    assert_eq!(p.pending_window_days, None);
    assert_eq!(p.state_mac.as_deref(), Some(&[2u8][..]), "with its MAC");
    assert!(s.replica_deletions_done().await.unwrap().is_empty());
    // Done once: a second node finds nothing to do.
    assert!(!s
        .start_primary_deletion(primary, now + TimeDelta::days(8), &[3], &[1])
        .await
        .unwrap());
    assert_eq!(s.related_keys(mrk).await.unwrap().len(), 1);
}

async fn due_deletions_cascade_and_happen_once(b: &Backend) {
    let s = b.shared();
    let now = now();
    let mut due = Vec::new();
    for i in 0..4 {
        let id = Uuid::new_v4();
        let mut k = key_rec(id, REGION);
        k.key_state = KeyState::PendingDeletion;
        k.deletion_date = Some(now - TimeDelta::days(4 - i));
        s.create_key(&k, Some(&material(id, 1)), &[tag("a", "b")], i64::MAX)
            .await
            .unwrap();
        s.create_alias(
            &alias_rec(&format!("alias/k{i}"), id),
            i64::MAX,
            i64::MAX,
            &set_of(id, 0x3a, 1),
        )
        .await
        .unwrap();
        s.insert_grant(&grant_rec(&format!("g{i}"), id, now), i64::MAX)
            .await
            .unwrap();
        due.push(id);
    }
    let later = Uuid::new_v4();
    let mut k = key_rec(later, REGION);
    k.key_state = KeyState::PendingDeletion;
    k.deletion_date = Some(now + TimeDelta::days(3));
    s.create_key(&k, Some(&material(later, 1)), &[], i64::MAX)
        .await
        .unwrap();

    // Oldest first; two callers at once: each due key is deleted by exactly one.
    let found = s.keys_due_for_deletion(now, None, 10).await.unwrap();
    assert_eq!(found.iter().map(|k| k.key_id).collect::<Vec<_>>(), due);
    let page = s.keys_due_for_deletion(now, None, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let last = page.last().map(|k| (k.deletion_date.unwrap(), k.key_id));
    let next = s.keys_due_for_deletion(now, last, 10).await.unwrap();
    assert_eq!(next.iter().map(|k| k.key_id).collect::<Vec<_>>(), due[2..]);
    let mut deleted = 0;
    for k in &found {
        let (a, b) = tokio::join!(s.delete_due_key(k, now), s.delete_due_key(k, now));
        assert!(a.unwrap() ^ b.unwrap(), "deleted by exactly one caller");
        deleted += 1;
    }
    assert_eq!(deleted, 4);
    assert!(s
        .keys_due_for_deletion(now, None, 10)
        .await
        .unwrap()
        .is_empty());
    // A row that changed since it was read is not deleted.
    let mut stale = s.key(later).await.unwrap().unwrap();
    stale.state_mac = Some(vec![9; 32]);
    assert!(!s
        .delete_due_key(&stale, now + TimeDelta::days(4))
        .await
        .unwrap());
    for table in ["key_materials", "key_tags", "aliases", "grants"] {
        assert_eq!(
            count(b, &format!("SELECT count(*) FROM {table}")).await,
            if table == "key_materials" { 1 } else { 0 },
            "{table}"
        );
    }
    assert!(s.key(later).await.unwrap().is_some());
}

async fn import_tokens_and_key_imports(s: &Backend) {
    let id = Uuid::new_v4();
    let mut k = key_rec(id, REGION);
    k.origin = Origin::External;
    k.key_state = KeyState::PendingImport;
    k.current_version = 0;
    s.create_key(&k, None, &[], i64::MAX).await.unwrap();

    let stale = ImportTokenRecord {
        token_id: Uuid::new_v4(),
        key_id: id,
        wrapping_algorithm: "RSAES_OAEP_SHA_256".into(),
        wrapping_key_spec: "RSA_2048".into(),
        wrapped_private: vec![0x42; 1200],
        root_version: 1,
        valid_to: now() - TimeDelta::days(3),
        mac: vec![3; 32],
    };
    s.insert_import_token(&stale).await.unwrap();
    let t = ImportTokenRecord {
        token_id: Uuid::new_v4(),
        valid_to: now() + TimeDelta::hours(24),
        ..stale.clone()
    };
    s.insert_import_token(&t).await.unwrap();
    let got = s.import_token(t.token_id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.token_id,
            got.key_id,
            got.wrapping_algorithm,
            got.wrapping_key_spec
        ),
        (
            t.token_id,
            t.key_id,
            t.wrapping_algorithm.clone(),
            t.wrapping_key_spec.clone()
        )
    );
    assert_eq!(
        (got.wrapped_private, got.root_version, got.valid_to, got.mac),
        (
            t.wrapped_private.clone(),
            t.root_version,
            t.valid_to,
            t.mac.clone()
        )
    );
    assert!(
        s.import_token(stale.token_id).await.unwrap().is_none(),
        "expired tokens are purged"
    );

    assert!(s.key_imports(id).await.unwrap().is_empty());
    let valid_to = now() + TimeDelta::days(30);
    let imp = KeyImportRecord {
        key_id: id,
        version: 1,
        material_check: vec![0xC0; 32],
        expiration_model: Some("KEY_MATERIAL_EXPIRES".into()),
        valid_to: Some(valid_to),
        description: None,
        pending: false,
        rotated_at: None,
        mac: vec![4; 32],
    };
    let u = moved(&**s, id, version(1, false)).await;
    let enable = Some((KeyState::Enabled, [5u8; 32].as_slice()));
    s.import_material(
        &material(id, 1),
        &imp,
        KeyState::PendingImport,
        enable,
        Some(&u),
    )
    .await
    .unwrap();
    let k = s.key(id).await.unwrap().unwrap();
    assert_eq!((k.key_state.as_str(), k.current_version), ("Enabled", 1));
    assert_eq!(k.state_mac, Some(vec![5; 32]));
    let got = s.key_imports(id).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].material_check, imp.material_check);
    assert_eq!(got[0].expiration_model, imp.expiration_model);
    assert_eq!(got[0].valid_to, Some(valid_to));
    assert_eq!((got[0].version, got[0].pending), (1, false));
    assert_eq!(
        conflict_name(
            s.import_material(
                &material(id, 1),
                &imp,
                KeyState::PendingImport,
                enable,
                None
            )
            .await
        ),
        "key_state_changed"
    );
    assert_eq!(
        s.reserve_invocations(id, None, 1, 40, 1000).await.unwrap(),
        Some((0, 40))
    );
    assert_eq!(s.import_rows().await.unwrap(), vec![(id, 1)]);

    let after = valid_to + TimeDelta::seconds(1);
    let cleared = KeyImportRecord {
        expiration_model: None,
        valid_to: None,
        mac: vec![6; 32],
        ..imp.clone()
    };
    let to_pending = |mac: u8| Some((KeyState::Enabled, KeyState::PendingImport, [mac; 32]));
    let st = to_pending(7);
    // Not expired yet at that time: another node may have re-imported.
    assert_eq!(
        conflict_name(
            s.delete_imported_material(
                &cleared,
                false,
                st.as_ref().map(|(f, t, m)| (*f, *t, m.as_slice())),
                Some(now())
            )
            .await
        ),
        "import_changed"
    );
    s.delete_imported_material(
        &cleared,
        false,
        st.as_ref().map(|(f, t, m)| (*f, *t, m.as_slice())),
        Some(after),
    )
    .await
    .unwrap();
    let k = s.key(id).await.unwrap().unwrap();
    assert_eq!(k.key_state, KeyState::PendingImport);
    assert!(s.material(id, 1).await.unwrap().is_none());
    let got = s.key_imports(id).await.unwrap();
    assert_eq!(
        (got[0].expiration_model.clone(), got[0].valid_to),
        (None, None)
    );
    assert_eq!(count(s, "SELECT invocations FROM key_imports").await, 40);

    // The same material again: its invocations still count.
    let again = KeyImportRecord {
        expiration_model: Some("KEY_MATERIAL_DOES_NOT_EXPIRE".into()),
        valid_to: None,
        ..imp.clone()
    };
    s.import_material(
        &material(id, 1),
        &again,
        KeyState::PendingImport,
        enable,
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        s.reserve_invocations(id, None, 1, 10, 1000).await.unwrap(),
        Some((40, 50))
    );
    // Its expiry changes while it is in the key; not once it is gone, nor for another check.
    let longer = KeyImportRecord {
        description: Some("second import".into()),
        mac: vec![10; 32],
        ..again.clone()
    };
    assert!(s.update_import_expiration(&longer).await.unwrap());
    assert_eq!(
        s.key_imports(id).await.unwrap()[0].description.as_deref(),
        Some("second import")
    );
    let other = KeyImportRecord {
        material_check: vec![0xC1; 32],
        ..longer.clone()
    };
    assert!(!s.update_import_expiration(&other).await.unwrap());

    // A second material, pending rotation: no state change, and only one at a time.
    let pending = KeyImportRecord {
        version: 2,
        material_check: vec![0xC2; 32],
        pending: true,
        mac: vec![11; 32],
        ..again.clone()
    };
    s.import_material(&material(id, 2), &pending, KeyState::Enabled, None, None)
        .await
        .unwrap();
    let third = KeyImportRecord {
        version: 3,
        material_check: vec![0xC3; 32],
        ..pending.clone()
    };
    assert!(matches!(
        s.import_material(&material(id, 3), &third, KeyState::Enabled, None, None)
            .await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        s.material(id, 3).await.unwrap().is_none(),
        "nothing half-written"
    );
    assert_eq!(s.import_rows().await.unwrap(), vec![(id, 1), (id, 2)]);
    // The pending material becomes current: only while its seal is the one verified.
    let rotated_at = now();
    let promoted = KeyImportRecord {
        pending: false,
        rotated_at: Some(rotated_at),
        mac: vec![12; 32],
        ..pending.clone()
    };
    let u = moved(&**s, id, version(2, false)).await;
    assert!(matches!(
        s.rotate_to_imported(&ImportedRotation {
            mrk: None,
            at: rotated_at,
            records: vec![(promoted.clone(), vec![0; 32])],
            rotations: vec![u.clone()],
            states: vec![],
        })
        .await,
        Err(StoreError::Conflict { .. })
    ));
    s.rotate_to_imported(&ImportedRotation {
        mrk: None,
        at: rotated_at,
        records: vec![(promoted.clone(), pending.mac.clone())],
        rotations: vec![u],
        states: vec![],
    })
    .await
    .unwrap();
    let k = s.key(id).await.unwrap().unwrap();
    assert_eq!(k.current_version, 2);
    let got = s.key_imports(id).await.unwrap();
    assert_eq!((got[1].pending, got[1].rotated_at.is_some()), (false, true));
    let rotations = s.rotations(id).await.unwrap();
    assert_eq!(rotations.len(), 1);
    assert_eq!(
        (rotations[0].version, rotations[0].rotation_type.as_str()),
        (2, "ON_DEMAND")
    );
    // A material pending rotation is discarded with its record; one that is part of the key
    // leaves its record.
    let pending3 = KeyImportRecord {
        version: 3,
        material_check: vec![0xC3; 32],
        pending: true,
        mac: vec![13; 32],
        ..again.clone()
    };
    s.import_material(&material(id, 3), &pending3, KeyState::Enabled, None, None)
        .await
        .unwrap();
    s.delete_imported_material(&pending3, true, None, None)
        .await
        .unwrap();
    assert!(s.material(id, 3).await.unwrap().is_none());
    assert_eq!(s.key_imports(id).await.unwrap().len(), 2);
    assert_eq!(
        s.key(id).await.unwrap().unwrap().key_state,
        KeyState::Enabled
    );
    // Discarding needs the record still pending (it was not rotated to meanwhile).
    assert_eq!(
        conflict_name(
            s.delete_imported_material(&promoted, true, None, None)
                .await
        ),
        "import_changed"
    );
    // Without `expired_at`, deletion needs no expiry.
    let st = to_pending(9);
    s.delete_imported_material(
        &cleared,
        false,
        st.as_ref().map(|(f, t, m)| (*f, *t, m.as_slice())),
        None,
    )
    .await
    .unwrap();
    assert_eq!(count(s, "SELECT invocations FROM key_imports").await, 50);
    assert!(
        s.material(id, 2).await.unwrap().is_some(),
        "one material at a time"
    );
    // The key's state moved meanwhile (here: it is pending import now): nothing changes.
    assert_eq!(
        conflict_name(
            s.delete_imported_material(
                &cleared,
                false,
                st.as_ref().map(|(f, t, m)| (*f, *t, m.as_slice())),
                None
            )
            .await
        ),
        "key_state_changed"
    );
}

fn grant_rec(id: &str, key_id: Uuid, created_at: DateTime<Utc>) -> GrantRecord {
    GrantRecord {
        grant_id: id.into(),
        key_id,
        name: Some("ebs-volume".into()),
        grantee_principal: "arn:aws:iam::111122223333:role/app".into(),
        retiring_principal: Some("arn:aws:iam::111122223333:role/ops".into()),
        operations: vec!["Encrypt".into(), "Decrypt".into()],
        constraints: Some(serde_json::json!({
            "EncryptionContextSubset": {"Department": "IT", "Project": "Alpha"}
        })),
        issuing_account: ACCOUNT.into(),
        created_at,
        mac: vec![0xEE; 32],
    }
}

async fn grants_insert_list_delete(s: &Backend) {
    let id = Uuid::new_v4();
    s.create_key(&key_rec(id, REGION), Some(&material(id, 1)), &[], i64::MAX)
        .await
        .unwrap();
    let t = now();
    let g_late = grant_rec("b-late", id, t + TimeDelta::seconds(5));
    let g_tie_b = grant_rec("b-tie", id, t);
    let mut g_tie_a = grant_rec("a-tie", id, t);
    g_tie_a.name = None;
    g_tie_a.retiring_principal = None;
    g_tie_a.constraints = None;
    for g in [&g_late, &g_tie_b, &g_tie_a] {
        s.insert_grant(g, i64::MAX).await.unwrap();
    }
    assert_eq!(
        conflict_name(s.insert_grant(&g_late, i64::MAX).await),
        "grants_pkey"
    );
    assert_foreign_key(
        s.insert_grant(&grant_rec("x", Uuid::new_v4(), t), i64::MAX)
            .await,
    );

    assert_eq!(
        s.grants_of_key(id).await.unwrap(),
        vec![g_tie_a.clone(), g_tie_b.clone(), g_late.clone()]
    );
    assert_eq!(s.grant("b-tie").await.unwrap(), Some(g_tie_b.clone()));
    assert_eq!(s.grant("nope").await.unwrap(), None);
    let ops = "arn:aws:iam::111122223333:role/ops";
    assert_eq!(
        s.grants_retirable_by(ops, None, 10).await.unwrap(),
        vec![g_tie_b.clone(), g_late.clone()]
    );
    // In pages: after a grant of the principal, and none after one that is not its own.
    assert_eq!(
        s.grants_retirable_by(ops, None, 1).await.unwrap(),
        vec![g_tie_b.clone()]
    );
    assert_eq!(
        s.grants_retirable_by(ops, Some((t, "b-tie")), 1)
            .await
            .unwrap(),
        vec![g_late.clone()]
    );
    assert!(s
        .grants_retirable_by(ops, Some((g_late.created_at, &g_late.grant_id)), 1)
        .await
        .unwrap()
        .is_empty());
    // From a place, whether a grant is there or not: at the same time, after the id.
    assert_eq!(
        s.grants_retirable_by(ops, Some((t, "b-a")), 10)
            .await
            .unwrap(),
        vec![g_tie_b.clone(), g_late.clone()]
    );
    // The grants to a principal: to the role itself and to its sessions; a name's `_` is no
    // wildcard (`role/a_p` is not `role/app`).
    let mut g_session = grant_rec("c-session", id, t + TimeDelta::seconds(9));
    g_session.grantee_principal = "arn:aws:sts::111122223333:assumed-role/app/s1".into();
    s.insert_grant(&g_session, i64::MAX).await.unwrap();
    assert_eq!(
        s.grants_to_principal("arn:aws:iam::111122223333:role/app")
            .await
            .unwrap(),
        vec![g_tie_a.clone(), g_tie_b.clone(), g_late.clone(), g_session]
    );
    for none in [
        "arn:aws:iam::111122223333:role/a_p",
        "arn:aws:iam::111122223333:user/app",
    ] {
        assert!(s.grants_to_principal(none).await.unwrap().is_empty());
    }
    assert!(s.delete_grant("c-session").await.unwrap());
    assert!(s.delete_grant("b-tie").await.unwrap());
    assert!(!s.delete_grant("b-tie").await.unwrap());
    assert_eq!(s.grants_of_key(id).await.unwrap(), vec![g_tie_a, g_late]);
}

async fn identity_accounts_principals_access_keys(s: &Backend) {
    s.ensure_account(ACCOUNT, "renamed is ignored")
        .await
        .unwrap();
    assert!(s.account_exists(ACCOUNT).await.unwrap());
    assert!(!s.account_exists("000000000000").await.unwrap());
    assert_eq!(
        conflict_name(s.ensure_account("12345", "short").await),
        "accounts_account_id_check"
    );

    let user = "arn:aws:iam::111122223333:user/alice";
    s.ensure_principal(user, ACCOUNT, "user", "alice", true)
        .await
        .unwrap();
    s.ensure_principal(user, ACCOUNT, "user", "alice", false)
        .await
        .unwrap();
    assert!(s.principal_exists(user).await.unwrap());
    assert!(!s
        .principal_exists("arn:aws:iam::111122223333:user/bob")
        .await
        .unwrap());
    assert_eq!(s.principals_of(ACCOUNT, 10).await.unwrap(), vec![user]);
    assert!(s
        .principals_of("000000000000", 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s.principals_of(ACCOUNT, 0).await.unwrap().is_empty());
    assert_eq!(
        conflict_name(
            s.ensure_principal("arn:x", ACCOUNT, "group", "g", false)
                .await
        ),
        "principals_kind_check"
    );

    let key = |id: &str| AccessKeyRecord {
        access_key_id: id.into(),
        principal_arn: user.into(),
        account_id: String::new(),
        status: "Active".into(),
        secret_blob: vec![0x99; 48],
        root_version: 1,
        mac: vec![1; 32],
    };
    s.put_access_key(&key("AKIAFIRST")).await.unwrap();
    s.put_access_key(&key("AKIASECOND")).await.unwrap();
    assert_eq!(
        conflict_name(s.put_access_key(&key("AKIAFIRST")).await),
        "access_keys_pkey"
    );
    let got = s.access_key("AKIAFIRST").await.unwrap().unwrap();
    assert_eq!(got.account_id, ACCOUNT);
    assert_eq!(
        (
            got.principal_arn.as_str(),
            got.status.as_str(),
            got.secret_blob,
            got.root_version,
            got.mac
        ),
        (user, "Active", vec![0x99; 48], 1, vec![1; 32])
    );
    assert!(s.access_key("AKIANONE").await.unwrap().is_none());
    let mine: Vec<String> = s
        .access_keys_of(user)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.access_key_id)
        .collect();
    assert_eq!(mine, vec!["AKIAFIRST", "AKIASECOND"]);

    // Written only over the row whose MAC the caller verified.
    assert!(!s
        .set_access_key_status("AKIAFIRST", "Inactive", &[7; 32], &[2; 32])
        .await
        .unwrap());
    assert!(s
        .set_access_key_status("AKIAFIRST", "Inactive", &[1; 32], &[2; 32])
        .await
        .unwrap());
    let got = s.access_key("AKIAFIRST").await.unwrap().unwrap();
    assert_eq!((got.status.as_str(), got.mac), ("Inactive", vec![2; 32]));
    assert!(!s
        .set_access_key_status("AKIANONE", "Inactive", &[1; 32], &[2; 32])
        .await
        .unwrap());
    assert_eq!(
        conflict_name(
            s.set_access_key_status("AKIAFIRST", "Gone", &[2; 32], &[3; 32])
                .await
        ),
        "access_keys_status_check"
    );
    assert!(s.delete_access_key("AKIAFIRST").await.unwrap());
    assert!(!s.delete_access_key("AKIAFIRST").await.unwrap());

    s.record_admin_event(
        "root",
        "CreateAccessKey",
        user,
        serde_json::json!({"access_key_id": "AKIASECOND"}),
    )
    .await
    .unwrap();
    let detail = s
        .text("SELECT CAST(detail AS TEXT) FROM admin_events")
        .await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&detail).unwrap(),
        serde_json::json!({"access_key_id": "AKIASECOND"})
    );

    // Deleting the principal takes its access keys with it.
    assert!(s.delete_principal(user).await.unwrap().is_some());
    assert!(s.delete_principal(user).await.unwrap().is_none());
    assert!(s.access_key("AKIASECOND").await.unwrap().is_none());
    assert_eq!(count(s, "SELECT count(*) FROM access_keys").await, 0);
}

async fn identity_policies_tags_services_and_authz(s: &Backend) {
    let user = "arn:aws:iam::111122223333:user/alice";
    s.ensure_principal(user, ACCOUNT, "user", "alice", false)
        .await
        .unwrap();

    s.put_identity_policy(user, "kms-use", r#"{"Statement":[1]}"#)
        .await
        .unwrap();
    s.put_identity_policy(user, "audit", r#"{"Statement":[2]}"#)
        .await
        .unwrap();
    s.put_identity_policy(user, "kms-use", r#"{"Statement":[3]}"#)
        .await
        .unwrap();
    assert_eq!(
        s.identity_policies(user).await.unwrap(),
        vec![
            ("audit".to_string(), r#"{"Statement":[2]}"#.to_string()),
            ("kms-use".to_string(), r#"{"Statement":[3]}"#.to_string()),
        ]
    );
    assert_eq!(
        conflict_name(s.put_identity_policy(user, "bad name!", "{}").await),
        "identity_policies_policy_name_check"
    );
    assert_foreign_key(
        s.put_identity_policy("arn:aws:iam::111122223333:user/none", "p", "{}")
            .await,
    );

    s.put_principal_tag(user, &tag("team", "payments"))
        .await
        .unwrap();
    s.put_principal_tag(user, &tag("cost", "42")).await.unwrap();
    s.put_principal_tag(user, &tag("team", "orders"))
        .await
        .unwrap();
    assert_eq!(
        s.principal_tags(user).await.unwrap(),
        vec![tag("cost", "42"), tag("team", "orders")]
    );

    assert_eq!(s.principal_service(user).await.unwrap(), None);
    assert!(s.set_principal_service(user, Some("s3")).await.unwrap());
    assert_eq!(
        s.principal_service(user).await.unwrap().as_deref(),
        Some("s3")
    );
    assert_eq!(
        conflict_name(s.set_principal_service(user, Some("S3!")).await),
        "principals_via_service_check"
    );
    assert!(!s
        .set_principal_service("arn:aws:iam::111122223333:user/none", Some("s3"))
        .await
        .unwrap());

    assert_eq!(
        s.principals_without_mac().await.unwrap(),
        vec![user.to_string()]
    );
    s.set_principal_mac(user, &[0xAA; 32]).await.unwrap();
    assert!(s.principals_without_mac().await.unwrap().is_empty());

    let authz = s.principal_authz(user).await.unwrap().unwrap();
    assert_eq!(authz.account_id, ACCOUNT);
    assert_eq!(authz.kind, "user");
    assert_eq!(authz.trust_policy, None);
    assert_eq!(authz.via_service.as_deref(), Some("s3"));
    let mut policies = authz.policies.clone();
    policies.sort();
    assert_eq!(policies, s.identity_policies(user).await.unwrap());
    let mut tags = authz.tags.clone();
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(tags, s.principal_tags(user).await.unwrap());
    assert_eq!(authz.mac, Some(vec![0xAA; 32]));
    assert!(s
        .principal_authz("arn:aws:iam::111122223333:user/none")
        .await
        .unwrap()
        .is_none());

    assert!(s.delete_identity_policy(user, "audit").await.unwrap());
    assert!(!s.delete_identity_policy(user, "audit").await.unwrap());
    assert_eq!(s.identity_policies(user).await.unwrap().len(), 1);

    // Policies and tags go with the principal.
    assert!(s.delete_principal(user).await.unwrap().is_some());
    assert!(s.identity_policies(user).await.unwrap().is_empty());
    assert!(s.principal_tags(user).await.unwrap().is_empty());
}

async fn roles_and_sessions(s: &Backend) {
    let role = "arn:aws:iam::111122223333:role/deployer";
    assert!(s.role(role).await.unwrap().is_none());
    s.put_role(role, ACCOUNT, "deployer", r#"{"v":1}"#)
        .await
        .unwrap();
    s.put_role(role, ACCOUNT, "deployer", r#"{"v":2}"#)
        .await
        .unwrap();
    assert_eq!(
        s.role(role).await.unwrap(),
        Some((ACCOUNT.to_string(), r#"{"v":2}"#.to_string()))
    );
    // A user is not a role.
    let user = "arn:aws:iam::111122223333:user/alice";
    s.ensure_principal(user, ACCOUNT, "user", "alice", false)
        .await
        .unwrap();
    assert!(s.role(user).await.unwrap().is_none());
    let authz = s.principal_authz(role).await.unwrap().unwrap();
    assert_eq!(authz.kind, "role");
    assert_eq!(authz.trust_policy.as_deref(), Some(r#"{"v":2}"#));

    let now = now();
    let session = |id: &str, expires_at| SessionRecord {
        access_key_id: id.into(),
        role_arn: role.into(),
        account_id: String::new(),
        session_name: "ci-run-17".into(),
        secret_blob: vec![0x77; 48],
        root_version: 1,
        token_sha256: vec![0x88; 32],
        expires_at,
        mac: vec![0x66; 32],
    };
    s.insert_session(&session("ASIAOLD", now - TimeDelta::hours(2)))
        .await
        .unwrap();
    s.insert_session(&session("ASIANEW", now + TimeDelta::hours(1)))
        .await
        .unwrap();
    assert_eq!(
        conflict_name(s.insert_session(&session("ASIANEW", now)).await),
        "sessions_pkey"
    );
    let got = s.session("ASIANEW").await.unwrap().unwrap();
    assert_eq!(
        (
            got.access_key_id.as_str(),
            got.role_arn.as_str(),
            got.account_id.as_str()
        ),
        ("ASIANEW", role, ACCOUNT)
    );
    assert_eq!(got.session_name, "ci-run-17");
    assert_eq!(
        (got.secret_blob, got.root_version, got.token_sha256, got.mac),
        (vec![0x77; 48], 1, vec![0x88; 32], vec![0x66; 32])
    );
    assert_eq!(got.expires_at, now + TimeDelta::hours(1));

    assert_eq!(s.purge_sessions(now).await.unwrap(), 1);
    assert!(s.session("ASIAOLD").await.unwrap().is_none());
    assert!(s.session("ASIANEW").await.unwrap().is_some());
    // Sessions go with their role.
    // The grants to the role's sessions go with it, and are told.
    let key = Uuid::new_v4();
    s.create_key(
        &key_rec(key, REGION),
        Some(&material(key, 1)),
        &[],
        i64::MAX,
    )
    .await
    .unwrap();
    let mut g = grant_rec("to-a-session", key, now);
    g.grantee_principal = "arn:aws:sts::111122223333:assumed-role/deployer/s1".into();
    s.insert_grant(&g, i64::MAX).await.unwrap();
    let gone = s.delete_principal(role).await.unwrap().unwrap();
    assert_eq!(gone, vec![g]);
    assert!(s.grant("to-a-session").await.unwrap().is_none());
    assert!(s.session("ASIANEW").await.unwrap().is_none());
}

/// The console's trail lookup: one account's events only, newest first, each filter applied,
/// LIKE's wildcards in the text taken literally, paged by sequence number.
async fn audit_lookup_filters_one_accounts_events_and_calls_on_its_keys(s: &Backend) {
    let chain: &ChainFn = &crate::audit::chain_hash;
    let (seq0, hash0) = s.audit_head().await.unwrap();
    let (a, b) = (
        "arn:aws:kms:eu-west-1:111122223333:key/a",
        "arn:aws:kms:eu-west-1:111122223333:key/b",
    );
    let mut failed = event("Decrypt", &[a]);
    // As the service writes bodies: members sorted, so a top-level errorCode comes before the
    // first eventCategory (one in a caller's context comes after it, and is no failure).
    failed.body = r#"{"errorCode":"DisabledException","eventCategory":"Management","eventName":"Decrypt","userIdentity":{"arn":"arn:aws:iam::111122223333:user/x_y"}}"#.into();
    // Calls from another account: on one of the account's keys (the first, the second or
    // both of ReEncrypt's), shown to the key owner too, each once; on its own key, not.
    let theirs = "arn:aws:kms:eu-west-1:999999999999:key/c";
    let from_elsewhere = |name: &str, arns: &[&str]| {
        let mut e = event(name, arns);
        e.account_id = Some("999999999999".into());
        e
    };
    let batch = vec![
        event("Encrypt", &[a]),
        event("ReEncrypt", &[b, a]),
        failed,
        from_elsewhere("Encrypt", &[a]),
        from_elsewhere("Encrypt", &[theirs]),
        from_elsewhere("ReEncrypt", &[theirs, a]),
        from_elsewhere("ReEncrypt", &[b, a]),
        event("CreateKey", &[b]),
    ];
    s.append_audit((seq0, &hash0), &batch, &[], chain)
        .await
        .unwrap()
        .unwrap();
    let look = |f: EventFilter, before: i64, limit: i64| async move {
        s.lookup_events(ACCOUNT, &f, (0, before), limit)
            .await
            .unwrap()
            .iter()
            .map(|r| r.event_name.clone())
            .collect::<Vec<_>>()
    };
    let all = EventFilter::default();
    let seven = [
        "CreateKey",
        "ReEncrypt",
        "ReEncrypt",
        "Encrypt",
        "Decrypt",
        "ReEncrypt",
        "Encrypt",
    ];
    assert_eq!(look(all.clone(), i64::MAX, 10).await, seven);
    let key_a = EventFilter {
        key_arn: Some(a.into()),
        ..all.clone()
    };
    assert_eq!(look(key_a, i64::MAX, 10).await, seven[1..]);
    let named = EventFilter {
        event_name: Some("Encrypt".into()),
        ..all.clone()
    };
    assert_eq!(look(named, i64::MAX, 10).await, ["Encrypt", "Encrypt"]);
    let errors = EventFilter {
        errors_only: true,
        ..all.clone()
    };
    assert_eq!(look(errors, i64::MAX, 10).await, ["Decrypt"]);
    let literal = EventFilter {
        text: Some("user/x_y".into()),
        ..all.clone()
    };
    assert_eq!(look(literal, i64::MAX, 10).await, ["Decrypt"]);
    let wildcard = EventFilter {
        text: Some("user/x%".into()),
        ..all.clone()
    };
    assert!(look(wildcard, i64::MAX, 10).await.is_empty());
    let later = EventFilter {
        from: Some(now() + TimeDelta::hours(1)),
        ..all.clone()
    };
    assert!(look(later, i64::MAX, 10).await.is_empty());
    // Paged: the two newest, then what is before the second.
    let newest = s
        .lookup_events(ACCOUNT, &all, (0, i64::MAX), 2)
        .await
        .unwrap();
    assert_eq!(newest.len(), 2);
    assert_eq!(look(all.clone(), newest[1].seq, 10).await, seven[2..]);
    // Bounded below: nothing under the floor is read, whatever the limit.
    let above = s
        .lookup_events(ACCOUNT, &all, (newest[1].seq, i64::MAX), 10)
        .await
        .unwrap();
    assert_eq!(above.len(), 2);
}

fn event(name: &str, arns: &[&str]) -> NewAuditEvent {
    NewAuditEvent {
        event_id: Uuid::new_v4(),
        event_time: now(),
        event_name: name.into(),
        account_id: Some(ACCOUNT.into()),
        key_arns: arns.iter().map(|a| a.to_string()).collect(),
        body: format!(r#"{{"eventName":"{name}"}}"#),
        generations: Vec::new(),
    }
}

/// A key's deletion is read from the service's DeleteKey event as its hashed body says it (name,
/// type, key, time to the second), never from the columns beside the body: a column renamed to
/// DeleteKey deletes nothing, and a DeleteKey renamed in its column is still a deletion.
async fn a_keys_deletion_is_read_from_the_events_body(s: &Backend) {
    let chain: &ChainFn = &crate::audit::chain_hash;
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/5ee1";
    let other = "arn:aws:kms:eu-west-1:111122223333:key/07e2";
    let created = now() - TimeDelta::days(8);
    let mut deleted =
        crate::audit::service_event("DeleteKey", arn, "eu-west-1", serde_json::json!({}));
    deleted.event_name = "Decrypt".into();
    let column_only = event("DeleteKey", &[other]);
    let head = s.audit_head().await.unwrap();
    s.append_audit((head.0, &head.1), &[deleted, column_only], &[], chain)
        .await
        .unwrap()
        .unwrap();
    assert!(s.deleted_per_trail(arn, created).await.unwrap());
    // Deleted before this key (of the same ARN) was created: not this key's deletion.
    assert!(!s
        .deleted_per_trail(arn, now() + TimeDelta::hours(1))
        .await
        .unwrap());
    assert!(!s.deleted_per_trail(other, created).await.unwrap());
}

/// A trail longer than the pages it is read in (5,000 events) is verified and exported a page
/// at a time: clean, it verifies; a body altered in its third page is named; an export of
/// one event past the first pages holds that event's body and the links after it.
async fn a_trail_is_verified_and_exported_a_page_at_a_time(s: &Backend) {
    use crate::audit::verify;
    let chain: &ChainFn = &crate::audit::chain_hash;
    let as_recorded = |account: &str| {
        let mut e = event("Encrypt", &[]);
        e.account_id = Some(account.into());
        e.body = serde_json::json!({
            "eventID": e.event_id.to_string(),
            "eventName": "Encrypt",
            "recipientAccountId": account,
            "eventTime": e.event_time.to_rfc3339(),
        })
        .to_string();
        e
    };
    let mut head = s.audit_head().await.unwrap();
    let start = head.0;
    for batch in 0..12 {
        let events: Vec<_> = (0..1000)
            .map(|i| match (batch, i) {
                (11, 500) => as_recorded("999988887777"),
                _ => as_recorded(ACCOUNT),
            })
            .collect();
        head = s
            .append_audit((head.0, &head.1), &events, &[], chain)
            .await
            .unwrap()
            .unwrap();
    }
    let store: &dyn AuditStore = &**s;
    let (report, _, _) = verify::stored(store, &[], &[]).await.unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.events as i64, start + 12_000);

    let lone = start + 11_501;
    let filter = verify::Filter {
        account: Some("999988887777".into()),
        ..Default::default()
    };
    let (lines, n) = verify::export_stored(store, &filter).await.unwrap();
    assert_eq!(n, 1);
    // The header, the lone event and every link after it (no checkpoint ends it sooner).
    assert_eq!(lines.len() as i64, 1 + (start + 12_000 - lone + 1));
    assert!(lines[1].contains(&format!("\"seq\":{lone}")) && lines[1].contains("body"));
    assert!(!lines[2].contains("body"));

    let altered = start + 10_002;
    s.execute_for_key(
        &format!(
            "UPDATE audit_events SET body = body || ' ' WHERE seq = {altered} AND $1 IS NOT NULL"
        ),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    let (report, _, _) = verify::stored(store, &[], &[]).await.unwrap();
    assert_eq!(
        report.problems,
        vec![(
            altered,
            format!("event {altered} was altered: its content does not match its hash")
        )]
    );
    // An index entry naming an event past the head (which would refuse its row from then on)
    // is no append in flight: it is reported.
    let beyond = start + 12_000 + 1_000;
    s.execute_for_key(
        &format!("INSERT INTO audit_generations (row_name, generation, seq) SELECT 'key/x#policy', 99, {beyond} WHERE $1 IS NOT NULL"),
        Uuid::new_v4(),
    )
    .await
    .unwrap();
    let (report, _, _) = verify::stored(store, &[], &[]).await.unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|(seq, p)| *seq == beyond && p.contains("inserted into it")),
        "{:?}",
        report.problems
    );
}

/// Failed calls (another account can add them at will, denied) are not walked to find a key's
/// last successful use: one row asked for is the success, under 300 newer failures.
async fn a_keys_last_use_skips_failed_calls_in_the_store(s: &Backend) {
    let chain: &ChainFn = &crate::audit::chain_hash;
    let arn = "arn:aws:kms:eu-west-1:111122223333:key/1f2e";
    // Bodies as the service writes them: members sorted, a failure's errorCode at the top
    // level, a caller's encryption context inside requestParameters (here naming errorCode).
    let mut used = event("Encrypt", &[arn]);
    used.body = r#"{"eventCategory":"Management","eventName":"Encrypt","requestParameters":{"encryptionContext":{"errorCode":"x","eventCategory":"y"}}}"#.into();
    let mut batch = vec![used];
    for _ in 0..300 {
        let mut denied = event("Decrypt", &[arn]);
        denied.body = r#"{"errorCode":"AccessDeniedException","eventCategory":"Management","eventName":"Decrypt"}"#.into();
        batch.push(denied);
    }
    let mut reencrypted = event("ReEncrypt", &["k2", arn]);
    reencrypted.body = r#"{"errorCode":"AccessDeniedException","eventCategory":"Management","eventName":"ReEncrypt"}"#.into();
    batch.push(reencrypted);
    let head = s.audit_head().await.unwrap();
    s.append_audit((head.0, &head.1), &batch, &[], chain)
        .await
        .unwrap()
        .unwrap();
    let last = s.key_uses_before(arn, i64::MAX, 1).await.unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].0, head.0 + 1, "the Encrypt, first of the batch");
    let body = &last[0].2;
    assert!(body.contains("errorCode"), "{body}");
}

async fn audit_chain_head_events_and_checkpoints(s: &Backend) {
    let chain: &ChainFn = &crate::audit::chain_hash;
    let (seq0, hash0) = s.audit_head().await.unwrap();
    assert_eq!((seq0, hash0.clone()), (0, vec![0; 32]));

    let arn = "arn:aws:kms:eu-west-1:111122223333:key/0b3d";
    let mut no_account = event("CreateKey", &[]);
    no_account.account_id = None;
    let batch = vec![
        event("Encrypt", &[arn]),
        no_account,
        event("ReEncrypt", &[arn, "k2"]),
    ];
    let head = s
        .append_audit((seq0, &hash0), &batch, &[], chain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.0, 3);
    assert_eq!(s.audit_head().await.unwrap(), head);

    let rows = s.audit_events(0, 100).await.unwrap();
    assert_eq!(rows.len(), 3);
    let mut prev = hash0.clone();
    for (i, (r, e)) in rows.iter().zip(&batch).enumerate() {
        assert_eq!(r.seq, i as i64 + 1);
        assert_eq!(r.event_time, e.event_time);
        assert_eq!(r.event_name, e.event_name);
        assert_eq!(r.account_id, e.account_id);
        assert_eq!(r.key_arns, e.key_arns);
        assert_eq!(r.body, e.body);
        assert_eq!(r.prev_hash, prev);
        assert_eq!(r.hash, crate::audit::chain_hash(r.seq, &prev, &r.body));
        prev = r.hash.clone();
    }
    assert_eq!(prev, head.1);
    // An event is found by its id and time, and only so.
    let (id, at) = (batch[1].event_id, batch[1].event_time);
    assert!(s.event_in_trail(id, (at, at)).await.unwrap());
    assert!(!s.event_in_trail(Uuid::new_v4(), (at, at)).await.unwrap());
    let later = at + chrono::Duration::microseconds(1);
    assert!(!s.event_in_trail(id, (later, later)).await.unwrap());
    // Within the second its body names.
    let second = chrono::Timelike::with_nanosecond(&at, 0).unwrap();
    let end = second + chrono::Duration::microseconds(999_999);
    assert!(s.event_in_trail(id, (second, end)).await.unwrap());
    assert!(!s
        .event_in_trail(id, (later, end + chrono::Duration::seconds(1)))
        .await
        .unwrap());
    assert_eq!(
        s.audit_events(1, 1)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect::<Vec<_>>(),
        vec![2]
    );

    // Someone else moved the head: nothing is written.
    let stale = s
        .append_audit((seq0, &hash0), &[event("Decrypt", &[])], &[], chain)
        .await
        .unwrap();
    assert_eq!(stale, None);
    let wrong_hash = s
        .append_audit((head.0, &[1; 32]), &[event("Decrypt", &[])], &[], chain)
        .await
        .unwrap();
    assert_eq!(wrong_hash, None);
    assert_eq!(s.audit_events(0, 100).await.unwrap().len(), 3);
    assert_eq!(s.audit_head().await.unwrap(), head);
    // An empty batch changes nothing.
    assert_eq!(
        s.append_audit((head.0, &head.1), &[], &[], chain)
            .await
            .unwrap(),
        Some(head.clone())
    );

    let next = s
        .append_audit((head.0, &head.1), &[event("Decrypt", &[arn])], &[], chain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.0, 4);

    // A key's grant ends, found by the event's first key ARN only.
    let ended = event("GrantEnded", &[arn]);
    let elsewhere = event("GrantEnded", &["k2", arn]);
    s.append_audit((next.0, &next.1), &[ended.clone(), elsewhere], &[], chain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.ended_grants_per_trail(arn).await.unwrap(),
        vec![ended.body]
    );
    assert!(s.ended_grants_per_trail("k3").await.unwrap().is_empty());
    // One grant's end, by its id and key.
    let named = |id: &str| {
        let mut e = event("GrantEnded", &[arn]);
        e.body = format!(
            r#"{{"additionalEventData":{{"grantId":"{id}"}},"eventName":"GrantEnded","resources":[{{"ARN":"{arn}"}}]}}"#
        );
        e
    };
    let head = s.audit_head().await.unwrap();
    // (ended twice: told once; an end renamed in its column is still an end, read from its
    // hashed body)
    let mut renamed = named("g3");
    renamed.event_name = "ListKeys".into();
    s.append_audit(
        (head.0, &head.1),
        &[named("g1"), named("g1"), renamed],
        &[],
        chain,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        s.grants_ended_per_trail(arn, &["g3".to_string()])
            .await
            .unwrap(),
        ["g3".to_string()]
    );
    let ids = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        s.grants_ended_per_trail(arn, &ids(&["g1", "g2"]))
            .await
            .unwrap(),
        ids(&["g1"])
    );
    assert!(s
        .grants_ended_per_trail(arn, &ids(&["g2"]))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .grants_ended_per_trail("k3", &ids(&["g1"]))
        .await
        .unwrap()
        .is_empty());
    assert!(s.grants_ended_per_trail(arn, &[]).await.unwrap().is_empty());
    // A key's cryptographic calls, newest first: as the first ARN, and as ReEncrypt's second.
    let uses: Vec<i64> = s
        .key_uses_before(arn, i64::MAX, 10)
        .await
        .unwrap()
        .iter()
        .map(|u| u.0)
        .collect();
    assert_eq!(uses, vec![4, 3, 1], "Decrypt, ReEncrypt, Encrypt");
    let second: Vec<i64> = s
        .key_uses_before("k2", i64::MAX, 10)
        .await
        .unwrap()
        .iter()
        .map(|u| u.0)
        .collect();
    assert_eq!(second, vec![3], "ReEncrypt's second key");
    let older = s.key_uses_before(arn, 4, 1).await.unwrap();
    assert_eq!((older.len(), older[0].0), (1, 3));
    assert!(s
        .key_uses_before("k3", i64::MAX, 10)
        .await
        .unwrap()
        .is_empty());

    let c3 = CheckpointRow {
        seq: 3,
        hash: head.1.clone(),
        signed_at: now(),
        signature: vec![0x5A; 64],
    };
    let c1 = CheckpointRow {
        seq: 1,
        hash: rows[0].hash.clone(),
        signed_at: now(),
        signature: vec![0x5B; 64],
    };
    s.insert_checkpoint(&c3).await.unwrap();
    s.insert_checkpoint(&c1).await.unwrap();
    // Another node's checkpoint at the same sequence number is ignored.
    s.insert_checkpoint(&CheckpointRow {
        signature: vec![0; 64],
        ..c3.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.checkpoints().await.unwrap(), vec![c1, c3]);

    // The append after the head as it is (a writer that lost a race to another node): it
    // goes after the real head, whatever head the writer knew, and chains from it.
    let before = s.audit_head().await.unwrap();
    let after = s
        .append_audit_serialized(
            &[event("Encrypt", &["k4"]), event("Decrypt", &["k4"])],
            &[],
            chain,
        )
        .await
        .unwrap();
    assert_eq!(after.0, before.0 + 2);
    assert_eq!(s.audit_head().await.unwrap(), after);
    let tail = s.audit_events(before.0, 10).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].prev_hash, before.1);
    assert_eq!(tail[1].hash, after.1);
    assert_eq!(
        tail[1].hash,
        crate::audit::chain_hash(tail[1].seq, &tail[0].hash, &tail[1].body)
    );
}

/// The attack: someone who can write the database replaces the function that chains a
/// contended append (sql/0034) with one that chains what it likes. The service recomputes every
/// hash it is given back, and acknowledges nothing it did not compute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_append_function_cannot_make_the_service_take_its_chain() {
    let b = Backend::postgres().await;
    let Backend::Postgres(_, pg) = &b else {
        unreachable!()
    };
    let chain = &crate::audit::chain_hash;
    let honest = b
        .append_audit_serialized(&[event("Encrypt", &["k1"])], &[], chain)
        .await
        .unwrap();
    assert_eq!(b.audit_head().await.unwrap(), honest);
    // Its own hash: over the body alone, so no later event's link to it can be checked.
    let forged = include_str!("../../sql/0034_audit_append_in_one_round_trip.sql")
        .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        .replace(
            "h := sha256('\\x6b6d732e61756469742e6576656e742e763100'::bytea || int8send(head_seq + i)\n                    || h || convert_to(bodies[i], 'UTF8'));",
            "h := sha256(convert_to(bodies[i], 'UTF8'));",
        );
    assert!(forged.contains("h := sha256(convert_to(bodies[i], 'UTF8'));"));
    sqlx::raw_sql(&forged).execute(pg.pool()).await.unwrap();
    let e = b
        .append_audit_serialized(&[event("Decrypt", &["k1"])], &[], chain)
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("with a hash the service did not compute"),
        "{e}"
    );
}

async fn concurrent_audit_writers_take_turns(b: &Backend) {
    let s = b.shared();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let batch = [event(&format!("W{w}E{i}"), &[])];
                loop {
                    let (seq, hash) = s.audit_head().await.unwrap();
                    if s.append_audit((seq, &hash), &batch, &[], &crate::audit::chain_hash)
                        .await
                        .unwrap()
                        .is_some()
                    {
                        break;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rows = s.audit_events(0, 100).await.unwrap();
    assert_eq!(rows.len(), 20);
    let mut prev = vec![0; 32];
    for r in &rows {
        assert_eq!(r.prev_hash, prev);
        assert_eq!(r.hash, crate::audit::chain_hash(r.seq, &prev, &r.body));
        prev = r.hash.clone();
    }
    assert_eq!(s.audit_head().await.unwrap(), (20, prev));
}

async fn nodes_report_and_are_forgotten(s: &Backend) {
    let t0 = now();
    let node = |id: &str, seen: DateTime<Utc>| NodeRecord {
        node_id: id.into(),
        address: "127.0.0.1:8443".into(),
        version: "1.0.0".into(),
        token_label: "kms".into(),
        ready: true,
        started_at: t0,
        last_seen: seen,
    };
    let long_ago = t0 - chrono::Duration::days(2);
    s.node_seen(&node("a", t0), long_ago).await.unwrap();
    s.node_seen(&node("b", t0 - chrono::Duration::seconds(5)), long_ago)
        .await
        .unwrap();
    // A node's next report replaces its row.
    let mut again = node("a", t0 + chrono::Duration::seconds(10));
    again.ready = false;
    s.node_seen(&again, long_ago).await.unwrap();
    let seen = s.nodes().await.unwrap();
    assert_eq!(
        seen,
        vec![again, node("b", t0 - chrono::Duration::seconds(5))]
    );
    // Nodes not seen since the cut are forgotten.
    s.node_seen(&node("a", t0 + chrono::Duration::seconds(20)), t0)
        .await
        .unwrap();
    let ids: Vec<String> = s
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    assert_eq!(ids, vec!["a".to_string()]);
}
