//! The row readers both stores share: a column by name (a value the service never writes is
//! [`StoreError::Invalid`](super::StoreError::Invalid), never a panic) and the key, alias,
//! access key and tag rows. `row_readers!()` expands them in `postgres.rs` and `sqlite.rs`,
//! over that file's `Db` and `DbRow`, like the repository macros; the rows whose columns differ
//! between the databases (grants' operations and constraints, the trail's key ARNs) keep their
//! readers in each store's file.

/// The shared row readers, as free functions of the invoking store's module.
macro_rules! row_readers {
    () => {
        /// A column of `r`, or an error naming it.
        fn cell<'r, T>(r: &'r DbRow, name: &str) -> Result<T, StoreError>
        where
            T: sqlx::Decode<'r, Db> + sqlx::Type<Db>,
        {
            r.try_get(name).map_err(|e| match e {
                sqlx::Error::ColumnDecode { .. } => {
                    StoreError::Invalid(format!("column {name}: {e}"))
                }
                e => StoreError::Other(format!("column {name}: {e}")),
            })
        }

        /// A key row; a value the service never writes (a key state that is not AWS's) is
        /// [`StoreError::Invalid`], never a panic.
        fn key_from_row(r: &DbRow) -> Result<KeyRecord, StoreError> {
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

        fn keys_from_rows(rows: &[DbRow]) -> Result<Vec<KeyRecord>, StoreError> {
            rows.iter().map(key_from_row).collect()
        }

        fn key_ids(rows: &[DbRow]) -> Result<Vec<Uuid>, StoreError> {
            rows.iter().map(|r| cell(r, "key_id")).collect()
        }

        fn alias_from_row(r: &DbRow) -> Result<AliasRecord, StoreError> {
            Ok(AliasRecord {
                alias_name: cell(r, "alias_name")?,
                key_id: cell(r, "key_id")?,
                account_id: cell(r, "account_id")?,
                region: cell(r, "region")?,
                created_at: cell(r, "created_at")?,
                updated_at: cell(r, "updated_at")?,
                // Selected only where the alias is read with its key (`list_aliases`).
                target_mrk: r.try_get("mrk_id").ok().flatten(),
                mac: cell::<Option<Vec<u8>>>(r, "mac")?.unwrap_or_default(),
            })
        }

        fn access_key_from_row(r: &DbRow) -> Result<AccessKeyRecord, StoreError> {
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

        fn tag_from_row(r: &DbRow) -> Result<Tag, StoreError> {
            Ok(Tag {
                key: cell(r, "tag_key")?,
                value: cell(r, "tag_value")?,
            })
        }
    };
}

pub(crate) use row_readers;
