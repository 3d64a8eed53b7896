//! The row readers both stores share: a column by name (a value the service never writes is
//! [`StoreError::Invalid`](super::StoreError::Invalid), never a panic), key ids, tags and
//! claimed change records. `row_readers!()` expands them in `postgres.rs` and `sqlite.rs`,
//! over that file's `Db` and `DbRow`, like the repository macros. The records are read with
//! `sqlx::FromRow` (`query_as`); a column each database stores its own way is a type that
//! knows both ([`TextList`](super::TextList), `Json`).

use super::StoreError;
use sqlx::{Database, Executor, FromRow};

/// A database with its own reading of sqlx's errors (`map_err` in `postgres.rs`, `sqlite.rs`).
pub(super) trait Dialect: Database {
    fn store_error(e: sqlx::Error) -> StoreError;
}

/// A read, its errors mapped: `.all(e)`, `.one(e)`, `.maybe(e)` (a row or none) on a
/// `query`, `query_as` or `query_scalar`, on the pool or in a transaction.
pub(super) trait Read<'q, DB: Database, O> {
    async fn all<'e, 'c: 'e, E>(self, e: E) -> Result<Vec<O>, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = DB>,
        O: 'e;
    async fn one<'e, 'c: 'e, E>(self, e: E) -> Result<O, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = DB>,
        O: 'e;
    async fn maybe<'e, 'c: 'e, E>(self, e: E) -> Result<Option<O>, StoreError>
    where
        'q: 'e,
        E: 'e + Executor<'c, Database = DB>,
        O: 'e;
}

/// `Read` for one of sqlx's query types (`$out`: what a row reads as): its three fetches, the
/// errors mapped by the dialect.
macro_rules! read_for {
    (<$($g:ident),*> $query:ty => $out:ty, where $($bounds:tt)*) => {
        impl<'q, DB, A, $($g),*> Read<'q, DB, $out> for $query
        where
            DB: Dialect,
            A: 'q + Send + sqlx::IntoArguments<'q, DB>,
            $($bounds)*
        {
            async fn all<'e, 'c: 'e, E>(self, e: E) -> Result<Vec<$out>, StoreError>
            where
                'q: 'e,
                E: 'e + Executor<'c, Database = DB>,
                $out: 'e,
            {
                self.fetch_all(e).await.map_err(DB::store_error)
            }

            async fn one<'e, 'c: 'e, E>(self, e: E) -> Result<$out, StoreError>
            where
                'q: 'e,
                E: 'e + Executor<'c, Database = DB>,
                $out: 'e,
            {
                self.fetch_one(e).await.map_err(DB::store_error)
            }

            async fn maybe<'e, 'c: 'e, E>(self, e: E) -> Result<Option<$out>, StoreError>
            where
                'q: 'e,
                E: 'e + Executor<'c, Database = DB>,
                $out: 'e,
            {
                self.fetch_optional(e).await.map_err(DB::store_error)
            }
        }
    };
}

read_for!(<O> sqlx::query::QueryAs<'q, DB, O, A> => O,
    where O: Send + Unpin + for<'r> FromRow<'r, DB::Row>,);
read_for!(<O> sqlx::query::QueryScalar<'q, DB, O, A> => O,
    where O: Send + Unpin, (O,): Send + Unpin + for<'r> FromRow<'r, DB::Row>,);
read_for!(<> sqlx::query::Query<'q, DB, A> => DB::Row, where);

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

        fn key_ids(rows: &[DbRow]) -> Result<Vec<Uuid>, StoreError> {
            rows.iter().map(|r| cell(r, "key_id")).collect()
        }

        fn tag_from_row(r: &DbRow) -> Result<Tag, StoreError> {
            Ok(Tag {
                key: cell(r, "tag_key")?,
                value: cell(r, "tag_value")?,
            })
        }

        /// A change record claimed from the outbox.
        fn change_from_row(r: &DbRow) -> Result<ChangeRecord, StoreError> {
            Ok(ChangeRecord {
                event: NewAuditEvent {
                    event_id: cell(r, "event_id")?,
                    event_time: cell(r, "event_time")?,
                    event_name: cell(r, "event_name")?,
                    account_id: cell(r, "account_id")?,
                    key_arns: cell::<TextList>(r, "key_arns")?.0,
                    body: cell(r, "body")?,
                    generations: Vec::new(),
                },
                mac: cell(r, "mac")?,
                written: Default::default(),
            })
        }
    };
}

pub(crate) use row_readers;
