//! [`KeyStore`]: the repository of keys, their material, tags, aliases, imports and rotations
//! (its one implementation for both stores is `store/keys.rs`). The largest trait, so it has
//! its own file.

use crate::store::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

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
    /// A key's import records, one per material imported into it, by version.
    async fn key_imports(&self, key_id: Uuid) -> Result<Vec<KeyImportRecord>, StoreError>;
    /// The same material imported again while it is in the key: its new `ExpirationModel`,
    /// `ValidTo` and description (`imp`, whose `material_check` must be the stored one of its
    /// version). False if that material is no longer in the key.
    async fn update_import_expiration(&self, imp: &KeyImportRecord) -> Result<bool, StoreError>;
    /// Material imported into a key, in one transaction: its row `m` and its import record
    /// `imp` (new, or the record of a deleted material of that version replaced); only while
    /// the key is in `from` (else `Conflict`), moving it to `to` (state, `state_mac`) if given,
    /// and writing `rotation` if given (the key's first material becomes its current one).
    /// `Conflict` too for a second pending material.
    async fn import_material(
        &self,
        m: &MaterialRecord,
        imp: &KeyImportRecord,
        from: KeyState,
        to: Option<(KeyState, &[u8])>,
        rotation: Option<&RotationUpdate>,
    ) -> Result<(), StoreError>;
    /// Delete one of a key's imported materials (`imp.version`): its row goes, and its import
    /// record becomes `imp` (or, with `discard`, a pending material's record goes too: it was
    /// never part of the key). With `state`, the key moves from the first state to the second
    /// (`state_mac`). `Conflict` if the key is no longer in that state, if a discarded
    /// material is no longer pending, or, with `expired_at`, if the import had not expired by
    /// then (so one node expires it).
    async fn delete_imported_material(
        &self,
        imp: &KeyImportRecord,
        discard: bool,
        state: Option<(KeyState, KeyState, &[u8])>,
        expired_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
    /// `RotateKeyOnDemand` of a key with imported material, completed: its pending material
    /// becomes its current one, in every region of a multi-Region key, in one transaction.
    /// Each import record is written only while its seal is still the one verified, each
    /// material row is marked an on-demand rotation at `at`. `Conflict` if any of it changed
    /// meanwhile.
    async fn rotate_to_imported(&self, r: &ImportedRotation) -> Result<(), StoreError>;
    /// Every key of every account and region, by id (backup verification).
    async fn all_key_ids(&self) -> Result<Vec<Uuid>, StoreError>;
    /// Every import record (key, version), whatever its columns say (the expiry job judges
    /// each by its verified row, not by a column a database writer could change).
    async fn import_rows(&self) -> Result<Vec<(Uuid, i32)>, StoreError>;
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
    /// Whether the audit trail records the deletion of the key `arn` (the service's `DeleteKey`
    /// event, as its hashed body says) in or after the second of `created_at`.
    async fn deleted_per_trail(
        &self,
        arn: &str,
        created_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// The trail's `InvocationsLeased` events of the material `material_id` before sequence
    /// number `before`, newest first, at most `limit`: sequence number, body and seal.
    async fn leases_per_trail(
        &self,
        material_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, Option<Vec<u8>>)>, StoreError>;
    /// The highest generation the trail's events name for each of `rows` (rows it names
    /// nowhere are left out).
    /// The generations above `above` the trail's index holds for `row`, with the sequence
    /// number of the event that names each, highest first, at most `limit` (the index is not
    /// hashed: each is read from its event before it permits anything).
    async fn generation_events(
        &self,
        row: &str,
        above: i64,
        limit: i64,
    ) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Event `seq` of the audit trail and its seal, if it has one (checked by
    /// `audit::sealed_event`): what a decision read from the trail reads before an event
    /// permits anything.
    async fn audit_event_sealed(
        &self,
        seq: i64,
    ) -> Result<Option<(super::AuditRow, Option<Vec<u8>>)>, StoreError>;
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
    /// Keys with no MAC yet over `mac`'s columns (created before those columns had one).
    async fn keys_without_mac(&self, mac: KeyMac) -> Result<Vec<KeyRecord>, StoreError>;
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
    /// Keys with an on-demand rotation in progress, oldest first (at most `limit`). Nothing
    /// is claimed: the rotation's write decides which node completes it.
    async fn on_demand_rotations_started(&self, limit: i64) -> Result<Vec<Uuid>, StoreError>;
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
    /// Seal a key's rotation state stored without a MAC, only if it is still unsealed and
    /// still as shown.
    async fn set_rotation_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError>;
    /// Give a key from before sets of aliases were kept its set and seal (`set.expected` is
    /// not read), only if it still has none; false otherwise.
    async fn seal_alias_set(&self, set: &AliasSetSeal) -> Result<bool, StoreError>;
    /// Seal a key's attributes stored without a MAC, only if they are still unsealed and
    /// still as shown.
    async fn set_attrs_mac(&self, k: &KeyRecord, mac: &[u8]) -> Result<bool, StoreError>;
    async fn aliases_without_mac(&self) -> Result<Vec<AliasRecord>, StoreError>;
    /// Seal an alias stored without a MAC, only if it is still unsealed and still names the key.
    async fn set_alias_mac(&self, a: &AliasRecord, mac: &[u8]) -> Result<bool, StoreError>;
    /// Insert an alias; `Conflict` if the name is taken, ([`QUOTA_EXCEEDED`]) if the account
    /// has `max_aliases` in the region already, or ([`KEY_ALIASES_EXCEEDED`]) if its key has
    /// `per_key` (both counted in the same transaction, so calls at once cannot pass them).
    /// With it, its key's new set of aliases (`set`: [`ALIAS_SET_CHANGED`] if the key's set
    /// changed since it was read).
    async fn create_alias(
        &self,
        a: &AliasRecord,
        max_aliases: i64,
        per_key: i64,
        set: &AliasSetSeal,
    ) -> Result<(), StoreError>;
    /// Point an existing alias at `a.key_id` with its new MAC, provided it still names
    /// `from_key`; false if there is no such alias or it changed; ([`KEY_ALIASES_EXCEEDED`])
    /// if `a.key_id` has `per_key` aliases already (counted in the same transaction). With it,
    /// the new sets of aliases of the keys it leaves and joins (`sets`).
    async fn update_alias(
        &self,
        a: &AliasRecord,
        from_key: Uuid,
        per_key: i64,
        sets: &[AliasSetSeal],
    ) -> Result<bool, StoreError>;
    /// Delete an alias, with its key's new set of aliases; false if there is no such alias.
    async fn delete_alias(
        &self,
        account_id: &str,
        region: &str,
        name: &str,
        set: &AliasSetSeal,
    ) -> Result<bool, StoreError>;
    async fn alias(
        &self,
        account_id: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    /// Aliases of one account and region (of one key, if given), by name: at most `limit`
    /// of those named after `after` (`""`: from the first).
    async fn list_aliases(
        &self,
        account_id: &str,
        region: &str,
        key_id: Option<Uuid>,
        after: &str,
        limit: i64,
    ) -> Result<Vec<AliasRecord>, StoreError>;
    /// Every key material row after `after` (key id, then version), at most `limit`, in that
    /// order: a walk over all of them, a page at a time.
    async fn materials_after(
        &self,
        after: Option<(Uuid, i32)>,
        limit: i64,
    ) -> Result<Vec<MaterialRecord>, StoreError>;
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
