//! The rows the repositories read and write (keys, material, aliases, imports, grants,
//! access keys, sessions, principals), and how the vocabulary's words are stored as text.
//! Separate from the traits: the domain builds and reads these values, the traits only name
//! them.

use crate::vocab::{KeySpec, KeyState, KeyUsage, Origin, Tag};
use chrono::{DateTime, Utc};
use std::fmt;
use uuid::Uuid;

/// The words of [`crate::vocab`] are stored as AWS writes them (`PendingDeletion`,
/// `AWS_KMS`); a row holding any other word fails to load
/// ([`StoreError::Invalid`](super::StoreError::Invalid)).
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

/// A list of strings as each database stores it: `text[]` in Postgres, a JSON array in
/// SQLite's text (which `json_extract` reads). Grants' operations and the trail's key ARNs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextList(pub Vec<String>);

impl From<TextList> for Vec<String> {
    fn from(l: TextList) -> Vec<String> {
        l.0
    }
}

impl sqlx::Type<sqlx::Postgres> for TextList {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<String> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Postgres> for TextList {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <Vec<String> as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for TextList {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(TextList(<Vec<String> as sqlx::Decode<
            'r,
            sqlx::Postgres,
        >>::decode(value)?))
    }
}

impl sqlx::Type<sqlx::Sqlite> for TextList {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <str as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for TextList {
    fn encode_by_ref(
        &self,
        buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for TextList {
    fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
        Ok(TextList(serde_json::from_str(text)?))
    }
}

/// A MAC column that is NULL on rows written before it had one: read as empty (no MAC).
pub struct MacOrEmpty(Option<Vec<u8>>);

impl From<MacOrEmpty> for Vec<u8> {
    fn from(m: MacOrEmpty) -> Vec<u8> {
        m.0.unwrap_or_default()
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for MacOrEmpty
where
    Vec<u8>: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <Vec<u8> as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <Vec<u8> as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for MacOrEmpty
where
    Option<Vec<u8>>: sqlx::Decode<'r, DB>,
{
    fn decode(
        value: <DB as sqlx::Database>::ValueRef<'r>,
    ) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(MacOrEmpty(
            <Option<Vec<u8>> as sqlx::Decode<'r, DB>>::decode(value)?,
        ))
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
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
    /// The key's aliases as the service last wrote them: JSON, `[[name, generation of the
    /// alias row then], …]` by name (`None` for a key from before the set was kept).
    pub alias_set: Option<String>,
    /// Seal (computed in the token) over the key's identity and `alias_set`.
    pub aliases_mac: Option<Vec<u8>>,
    /// MAC (computed in the token) over what the key is, fixed at creation: spec, usage,
    /// origin, manager and multi-Region family.
    pub attrs_mac: Option<Vec<u8>>,
    /// MAC (computed in the token) over what changes as the key is rotated or its multi-Region
    /// primary moves: current material version, rotation schedule, on-demand rotation count,
    /// primary flag, the start of an on-demand rotation in progress.
    pub rotation_mac: Option<Vec<u8>>,
    /// When the on-demand rotation in progress started (`RotateKeyOnDemand` recorded it; the
    /// background jobs complete it): AWS's `OnDemandRotationStartDate`.
    pub on_demand_rotation_start: Option<DateTime<Utc>>,
    /// The custom key store the key lives in (`CustomKeyStoreId`), under the attributes MAC.
    pub custom_key_store_id: Option<String>,
    /// For a key in an external key store: its `XksKeyId` (under the attributes MAC).
    pub xks_key_id: Option<String>,
}

impl KeyRecord {
    /// An enabled, customer-managed symmetric key with nothing sealed yet: what a key is made
    /// from (the maker sets what differs, then seals it).
    pub fn new(
        key_id: Uuid,
        account_id: &str,
        region: &str,
        policy: String,
        created_at: DateTime<Utc>,
    ) -> KeyRecord {
        KeyRecord {
            key_id,
            account_id: account_id.to_string(),
            region: region.to_string(),
            description: String::new(),
            key_spec: KeySpec::SymmetricDefault,
            key_usage: KeyUsage::EncryptDecrypt,
            origin: Origin::AwsKms,
            key_manager: "CUSTOMER".into(),
            key_state: KeyState::Enabled,
            policy,
            multi_region: false,
            current_version: 1,
            created_at,
            deletion_date: None,
            rotation_enabled: false,
            rotation_period_days: None,
            next_rotation_date: None,
            on_demand_rotations: 0,
            mrk_id: None,
            mrk_primary: false,
            pending_window_days: None,
            policy_mac: None,
            state_mac: None,
            tags_mac: None,
            alias_set: None,
            aliases_mac: None,
            attrs_mac: None,
            rotation_mac: None,
            on_demand_rotation_start: None,
            custom_key_store_id: None,
            xks_key_id: None,
        }
    }
}

/// A key's new set of aliases with its seal, written in an alias change's transaction only
/// where the key row still carries `expected` (the seal the caller verified; `None` for a key
/// from before the set was kept); otherwise the write is a `Conflict` ([`ALIAS_SET_CHANGED`]).
#[derive(Clone, Debug)]
pub struct AliasSetSeal {
    pub key_id: Uuid,
    pub expected: Option<Vec<u8>>,
    pub alias_set: String,
    pub mac: Vec<u8>,
}

/// The `Conflict` of an alias change whose key's set of aliases changed since it was read.
pub const ALIAS_SET_CHANGED: &str = "alias set changed";

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
    pub on_demand_rotation_start: Option<DateTime<Utc>>,
    pub mac: Vec<u8>,
}

impl RotationUpdate {
    /// `new`'s rotation columns with their seal `mac`, written only where the row still
    /// carries `old`'s rotation seal.
    pub fn between(old: &KeyRecord, new: &KeyRecord, mac: Vec<u8>) -> RotationUpdate {
        RotationUpdate {
            key_id: new.key_id,
            expected_mac: old.rotation_mac.clone().unwrap_or_default(),
            current_version: new.current_version,
            rotation_enabled: new.rotation_enabled,
            rotation_period_days: new.rotation_period_days,
            next_rotation_date: new.next_rotation_date,
            on_demand_rotations: new.on_demand_rotations,
            mrk_primary: new.mrk_primary,
            on_demand_rotation_start: new.on_demand_rotation_start,
            mac,
        }
    }
}

/// A rotation to imported material (`RotateKeyOnDemand` of a key with imported material), in
/// every region of a multi-Region key at once.
#[derive(Debug, Default)]
pub struct ImportedRotation {
    /// The multi-Region key whose regions rotate (their rows are locked together).
    pub mrk: Option<Uuid>,
    /// The rotation's date (`RotationDate`).
    pub at: DateTime<Utc>,
    /// Each region's record of the material, no longer pending, with the seal it was verified
    /// with (the write needs it unchanged).
    pub records: Vec<(KeyImportRecord, Vec<u8>)>,
    /// Each region's new rotation state (its current version the material's).
    pub rotations: Vec<RotationUpdate>,
    /// Regions that no longer hold the material: (key, from state, to state, state MAC).
    pub states: Vec<(Uuid, KeyState, KeyState, Vec<u8>)>,
}

/// The constraint a `Conflict` names when a key's rotation state changed after it was read.
pub const ROTATION_STATE_CHANGED: &str = "rotation_state_changed";

/// A wrapping key pair handed out by `GetParametersForImport`.
#[derive(Clone, Debug, sqlx::FromRow)]
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

/// What was imported into a key with origin `EXTERNAL`: one record per material version.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct KeyImportRecord {
    pub key_id: Uuid,
    /// The material version (`key_materials.version`) this is the record of.
    pub version: i32,
    /// A keyed check value of the material, computed in the token.
    pub material_check: Vec<u8>,
    /// Of the material's current import; `None` while it is not imported (deleted, expired).
    pub expiration_model: Option<String>,
    pub valid_to: Option<DateTime<Utc>>,
    /// AWS's `KeyMaterialDescription`.
    pub description: Option<String>,
    /// Imported for a rotation that has not happened (AWS's `PENDING_ROTATION`): not yet part
    /// of the key, never used.
    pub pending: bool,
    /// When the material became the key's current material by a rotation (`RotationDate`);
    /// `None` for the first material and a pending one.
    pub rotated_at: Option<DateTime<Utc>>,
    pub mac: Vec<u8>,
}

/// One rotation of a key: the material version it created.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RotationRecord {
    pub version: i32,
    pub rotation_type: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AliasRecord {
    pub alias_name: String,
    pub key_id: Uuid,
    pub account_id: String,
    pub region: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The target's multi-Region id, if it is a multi-Region key (filled by listings).
    #[sqlx(rename = "mrk_id", default)]
    pub target_mrk: Option<Uuid>,
    /// MAC over account, region, name and target (empty: none stored).
    #[sqlx(try_from = "MacOrEmpty")]
    pub mac: Vec<u8>,
}

/// One version of a key's material, wrapped by the HSM.
#[derive(Clone, sqlx::FromRow)]
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

#[derive(Clone, sqlx::FromRow)]
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
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct GrantRecord {
    pub grant_id: String,
    pub key_id: Uuid,
    pub name: Option<String>,
    pub grantee_principal: String,
    pub retiring_principal: Option<String>,
    #[sqlx(try_from = "TextList")]
    pub operations: Vec<String>,
    #[sqlx(json(nullable))]
    pub constraints: Option<serde_json::Value>,
    pub issuing_account: String,
    pub created_at: DateTime<Utc>,
    /// MAC (computed in the token) over everything the grant allows.
    #[sqlx(try_from = "MacOrEmpty")]
    pub mac: Vec<u8>,
}

/// Temporary credentials of an assumed-role session.
#[derive(Clone, sqlx::FromRow)]
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
