//! [`ServiceStore`]: the records of the service's own keys (root keys, MAC keys) and the
//! re-wrap and re-MAC jobs over every row they protect: the row references ([`BlobRef`],
//! [`MacRow`], [`KeyMac`]) and the SQL both stores run (`mac_sql`, `root_sql`). Its one
//! implementation for both stores is `store/service.rs`.

use crate::store::*;
use async_trait::async_trait;
use uuid::Uuid;

/// A node of the deployment as it last reported itself (shown, never trusted).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeRecord {
    pub node_id: String,
    /// Its API listener's address.
    pub address: String,
    /// Its release (`kms --version`).
    pub version: String,
    /// The token it calls now.
    pub token_label: String,
    /// Whether its token and database checks passed when it reported.
    pub ready: bool,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

#[async_trait]
pub trait ServiceStore: Send + Sync {
    /// Hold the lock on creating the token keys named `scope` (a version of the service's root
    /// key, a custom key store partition's root key…) until released, on every node and
    /// process that shares the database (Postgres: an advisory lock; SQLite: its write lock,
    /// so nothing may be written to the database while it is held). PKCS#11 has no
    /// create-if-absent: two processes that each found no key of a label would each create one.
    async fn token_key_lock(&self, scope: &str) -> Result<Box<dyn HeldLock>, StoreError>;
    /// Record that node `n` reported itself now (its row replaced), and forget nodes not seen
    /// since `forget_before`.
    async fn node_seen(
        &self,
        n: &NodeRecord,
        forget_before: DateTime<Utc>,
    ) -> Result<(), StoreError>;
    /// The nodes that reported themselves, the most recently seen first.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
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
    /// A key's import record of one material version (`key_imports.mac` and
    /// `material_check`).
    ImportRecord(Uuid, i32),
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
    /// A custom key store (`custom_key_stores.mac`).
    CustomKeyStore(String),
}

/// The sealed parts of a key row, by their MAC column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMac {
    Policy,
    State,
    Tags,
    Attrs,
    Rotation,
    Aliases,
}

impl KeyMac {
    pub const ALL: [KeyMac; 6] = [
        KeyMac::Policy,
        KeyMac::State,
        KeyMac::Tags,
        KeyMac::Attrs,
        KeyMac::Rotation,
        KeyMac::Aliases,
    ];
    pub fn column(self) -> &'static str {
        match self {
            KeyMac::Policy => "policy_mac",
            KeyMac::State => "state_mac",
            KeyMac::Tags => "tags_mac",
            KeyMac::Attrs => "attrs_mac",
            KeyMac::Rotation => "rotation_mac",
            KeyMac::Aliases => "aliases_mac",
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
    pub const COLUMNS: [(&str, &str, &str); 18] = [
        ("keys", "policy_mac", "key_id"),
        ("keys", "state_mac", "key_id"),
        ("keys", "tags_mac", "key_id"),
        ("keys", "attrs_mac", "key_id"),
        ("keys", "rotation_mac", "key_id"),
        ("keys", "aliases_mac", "key_id"),
        ("key_materials", "mac", "key_id, version"),
        ("key_imports", "mac", "key_id"),
        ("key_imports", "material_check", "key_id"),
        ("key_material_imports", "mac", "key_id, version"),
        ("key_material_imports", "material_check", "key_id, version"),
        ("import_tokens", "mac", "token_id"),
        ("grants", "mac", "grant_id"),
        ("principals", "authz_mac", "arn"),
        ("aliases", "mac", "account_id, region, alias_name"),
        ("access_keys", "mac", "access_key_id"),
        ("sessions", "mac", "access_key_id"),
        ("custom_key_stores", "mac", "custom_key_store_id"),
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
    /// `$3` key, `$4` version, `$5` new check), in the table that holds that version's record.
    pub fn update_import_record(version: i32) -> String {
        let (table, at) = crate::store::key_imports::import_record_at(version);
        let at = at.replace("$1", "$3").replace("$2", "$4");
        format!("UPDATE {table} SET mac = $1, material_check = $5 WHERE mac = $2 AND {at}")
    }

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
    /// The key that encrypts a custom key store's PIN (`custom_key_stores`): re-wrapped by the
    /// domain, which seals the store's row again.
    KeyStorePin(String),
}

/// The SQL of the root key statements, one text for both stores (`$N` placeholders).
pub(crate) mod root_sql {
    pub const BLOBS_PER_ROOT: &str = "SELECT r.version, \
        (SELECT count(*) FROM key_materials WHERE root_version = r.version) \
        + (SELECT count(*) FROM custom_key_stores WHERE password_root_version = r.version) \
        + (SELECT count(*) FROM access_keys WHERE root_version = r.version) \
        + (SELECT count(*) FROM sessions WHERE root_version = r.version) \
        + (SELECT count(*) FROM import_tokens WHERE root_version = r.version) AS blobs \
        FROM root_keys r ORDER BY r.version";
    pub const MATERIALS_BELOW: &str =
        "SELECT key_id, version FROM key_materials WHERE root_version < $1 ORDER BY key_id, version LIMIT $2";
    /// Custom key stores whose PIN's key is under an older root key. (The material of the keys
    /// in them is listed above: under their partition's root key of the same version, re-wrapped
    /// in the partition.)
    pub const KEY_STORE_PINS_BELOW: &str =
        "SELECT custom_key_store_id FROM custom_key_stores WHERE password_root_version < $1 \
        ORDER BY custom_key_store_id LIMIT $2";
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

/// A lock the store holds for its caller until [`release`](HeldLock::release).
#[async_trait]
pub trait HeldLock: Send {
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}
