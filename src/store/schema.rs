//! Schema versioning: the versions this build migrates to, what a database's applied
//! migrations and schema floor say about it, and the refusal of a database a newer release
//! contracted. Separate from the repositories because it is pure policy over version numbers,
//! shared by both stores' readiness and by `kms --version`.

use super::StoreError;

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
pub const SCHEMA_POSTGRES: i64 = 46;
pub const SCHEMA_SQLITE: i64 = 32;

/// `kms --version`: the release and the schema versions it migrates to.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (schema: Postgres 46, SQLite 32)"
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

/// The schema lookups of `impl $store`, written once for both stores: applying this build's
/// migrations, the schema floor, the schema versions ([`KeyStore::schema_versions`]) and
/// readiness ([`KeyStore::readiness`]). Each store names what differs: `migrator()` (its
/// migrations), `SCHEMA_BUILD`, and its catalogue queries `MIGRATIONS_TABLE_EXISTS` and
/// `SCHEMA_FLOOR_EXISTS`.
///
/// [`KeyStore::schema_versions`]: super::KeyStore::schema_versions
/// [`KeyStore::readiness`]: super::KeyStore::readiness
macro_rules! schema_lookups {
    ($store:ty) => {
        impl $store {
            pub async fn migrate(&self) -> Result<(), StoreError> {
                // Migrations a newer release applied are left alone: `connect_store` has refused the
                // database unless its schema floor admits this build (rolling upgrades).
                let mut m = migrator();
                m.set_ignore_missing(true);
                m.run(&self.pool)
                    .await
                    .map_err(|e| StoreError::Other(format!("migration failed: {e}")))
            }

            /// The oldest release schema that may run against this database (`schema_floor`, set by
            /// migrations); `None` before the table existed.
            async fn schema_floor(&self) -> Result<Option<i64>, StoreError> {
                let table: bool = sqlx::query_scalar(SCHEMA_FLOOR_EXISTS)
                    .one(&self.pool)
                    .await?;
                if !table {
                    return Ok(None);
                }
                sqlx::query_scalar("SELECT oldest_release_schema FROM schema_floor WHERE id = 1")
                    .maybe(&self.pool)
                    .await
            }

            async fn stored_schema_versions(&self) -> Result<super::SchemaVersions, StoreError> {
                let table: bool = sqlx::query_scalar(MIGRATIONS_TABLE_EXISTS)
                    .one(&self.pool)
                    .await?;
                let database: i64 = if table {
                    sqlx::query_scalar(
                        "SELECT COALESCE(max(version), 0) FROM _sqlx_migrations WHERE success",
                    )
                    .one(&self.pool)
                    .await?
                } else {
                    0
                };
                let floor = self.schema_floor().await?;
                Ok(super::SchemaVersions {
                    build: SCHEMA_BUILD,
                    database,
                    floor,
                })
            }

            async fn schema_readiness(&self) -> Result<(), StoreError> {
                let applied: Vec<i64> = sqlx::query_scalar(
                    "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
                )
                .all(&self.pool)
                .await?;
                let known: Vec<i64> = migrator().iter().map(|m| m.version).collect();
                super::migrations_current(&known, &applied, self.schema_floor().await?)
            }
        }
    };
}

pub(crate) use schema_lookups;

#[cfg(test)]
mod schema_version_tests {
    use super::*;

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
