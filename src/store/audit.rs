//! [`AuditStore`](super::AuditStore) (the hash-chained trail, its head, generations and
//! checkpoints), written once for both stores: one SQL text per statement (`$N`
//! placeholders), one method body. Two operations are each dialect's own, as inherent methods
//! of the store: `dialect_append_audit` (Postgres appends a batch, settles its change records
//! and indexes its generations in one statement; SQLite in one write transaction) and
//! `dialect_claim_change_records` (Postgres `FOR UPDATE SKIP LOCKED`). The rest uses the
//! store's `pool`, `cell`, `map_err`, and its SQL for an event's first and
//! second key ARN (`FIRST_KEY_ARN`, `SECOND_KEY_ARN`) and their accounts (`FIRST_KEY_OWNER`,
//! `SECOND_KEY_OWNER`), written as the trail's indexes have them.

use super::{ChainFn, NewAuditEvent, StoreError};
use uuid::Uuid;

/// What [`AuditStore::append_audit`](super::AuditStore::append_audit) appends, as each dialect's `dialect_append_audit` takes it.
/// The chain's head it goes after, the events, the change records they settle, the hash.
pub(super) struct AuditBatch<'a>(
    pub (i64, &'a [u8]),
    pub &'a [NewAuditEvent],
    pub &'a [Uuid],
    pub &'a ChainFn,
);

/// The new head, or `None` if another writer moved it first.
pub(super) type AppendResult = Result<Option<(i64, Vec<u8>)>, StoreError>;

/// `impl AuditStore for $store`.
macro_rules! audit_store {
    ($store:ty) => {
        #[async_trait]
        impl AuditStore for $store {
            async fn append_audit(
                &self,
                head: (i64, &[u8]),
                events: &[NewAuditEvent],
                settles: &[Uuid],
                chain: &ChainFn,
            ) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
                let batch = AuditBatch(head, events, settles, chain);
                self.dialect_append_audit(batch).await
            }

            async fn append_audit_serialized(
                &self,
                events: &[NewAuditEvent],
                settles: &[Uuid],
                chain: &ChainFn,
            ) -> Result<(i64, Vec<u8>), StoreError> {
                self.dialect_append_audit_serialized(events, settles, chain)
                    .await
            }

            async fn claim_change_records(
                &self,
                now: DateTime<Utc>,
                cutoff: DateTime<Utc>,
                claim_until: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<ChangeRecord>, StoreError> {
                self.dialect_claim_change_records(now, cutoff, claim_until, limit)
                    .await
            }

            async fn change_record_pending(&self, event_id: Uuid) -> Result<bool, StoreError> {
                let found: Option<i32> =
                    sqlx::query_scalar("SELECT 1 FROM audit_outbox WHERE event_id = $1")
                        .bind(event_id)
                        .maybe(&self.pool)
                        .await?;
                Ok(found.is_some())
            }

            async fn event_in_trail(
                &self,
                event_id: Uuid,
                (from, to): (DateTime<Utc>, DateTime<Utc>),
            ) -> Result<bool, StoreError> {
                // Through the index by time.
                let found: Option<i32> = sqlx::query_scalar(
                    "SELECT 1 FROM audit_events WHERE event_time >= $1 AND event_time <= $3 AND event_id = $2 LIMIT 1",
                )
                .bind(from)
                .bind(event_id)
                .bind(to)
                .maybe(&self.pool)
                .await?;
                Ok(found.is_some())
            }

            async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
                let r = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                    .one(&self.pool).await?;
                Ok((cell(&r, "seq")?, cell(&r, "hash")?))
            }

            async fn key_uses_before(
                &self,
                arn: &str,
                before: i64,
                limit: i64,
            ) -> Result<Vec<(i64, DateTime<Utc>, String)>, StoreError> {
                // Each branch reads one partial index of successful calls backwards (the
                // predicate as the index names it: failed calls, which another account can add
                // at will, are never walked).
                let q = format!(
                    "SELECT seq, event_time, body FROM ( \
                       SELECT seq, event_time, body FROM audit_events \
                         WHERE {FIRST_KEY_ARN} = $1 AND event_name IN ({KEY_USE_OPERATIONS}) \
                         AND {SUCCEEDED} AND seq < $2 \
                         ORDER BY seq DESC LIMIT $3) AS a \
                     UNION ALL SELECT seq, event_time, body FROM ( \
                       SELECT seq, event_time, body FROM audit_events \
                         WHERE {SECOND_KEY_ARN} = $1 AND event_name = 'ReEncrypt' \
                         AND {SUCCEEDED} AND seq < $2 \
                         ORDER BY seq DESC LIMIT $3) AS b \
                     ORDER BY seq DESC LIMIT $3"
                );
                let rows = sqlx::query(&q)
                    .bind(arn)
                    .bind(before)
                    .bind(limit)
                    .all(&self.pool).await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "seq")?, cell(r, "event_time")?, cell(r, "body")?)))
                    .collect()
            }

            async fn seal_coverages(&self) -> Result<Vec<AuditRow>, StoreError> {
                // By the event's hashed body, not the column beside it.
                sqlx::query_as(&format!(
                    "SELECT seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash \
                     FROM audit_events WHERE {BODY_EVENT_NAME} {} \
                     AND {BODY_EVENT_NAME} = 'SealCoverage' ORDER BY seq",
                    super::identity::DECIDED
                ))
                .all(&self.pool).await
            }

            async fn lookup_events(
                &self,
                account_id: &str,
                filter: &EventFilter,
                (floor, before): (i64, i64),
                limit: i64,
            ) -> Result<Vec<AuditRow>, StoreError> {
                // Only sequence numbers in [floor, before) are read, whatever the filters: the
                // caller bounds how much of the trail one query walks. Every value is bound; the text is matched literally (LIKE's wildcards escaped).
                // The account's own callers' events, and other accounts' calls that used one of
                // its keys (first or second key ARN): each part newest first through its own
                // index, then merged.
                const COLUMNS: &str =
                    "seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash";
                let filters = format!(
                    "seq < $2 AND seq >= $10 AND ($3 IS NULL OR event_name = $3) \
                     AND ($4 IS NULL OR {FIRST_KEY_ARN} = $4 OR {SECOND_KEY_ARN} = $4) \
                     AND ($5 IS NULL OR body LIKE $5 ESCAPE '!') \
                     AND ($6 = 0 OR NOT {SUCCEEDED}) \
                     AND ($7 IS NULL OR event_time >= $7) AND ($8 IS NULL OR event_time < $8)"
                );
                // Each index by key owner holds only calls from another account (its predicate
                // is repeated here, as the index has it).
                let first = format!(
                    "{FIRST_KEY_ARN} IS NOT NULL AND {FIRST_KEY_OWNER} {DISTINCT_FROM} account_id"
                );
                let second = format!(
                    "{SECOND_KEY_ARN} IS NOT NULL AND {SECOND_KEY_OWNER} {DISTINCT_FROM} account_id"
                );
                let part = |name: &str, owner: String| {
                    format!("SELECT * FROM (SELECT {COLUMNS} FROM audit_events WHERE {owner} AND {filters} ORDER BY seq DESC LIMIT $9) AS {name}")
                };
                let q = format!(
                    "SELECT {COLUMNS} FROM ({} UNION ALL {} UNION ALL {}) AS merged ORDER BY seq DESC LIMIT $9",
                    part("own", "account_id = $1".into()),
                    part("first_key", format!("{first} AND {FIRST_KEY_OWNER} = $1")),
                    // Not again where the first key is the account's too.
                    part(
                        "second_key",
                        format!(
                            "{second} AND {SECOND_KEY_OWNER} = $1 \
                             AND ({FIRST_KEY_ARN} IS NULL OR {FIRST_KEY_OWNER} <> $1)"
                        )
                    ),
                );
                let text = filter.text.as_ref().map(|t| {
                    let escaped: String = t
                        .chars()
                        .flat_map(|c| match c {
                            '%' | '_' | '!' => vec!['!', c],
                            c => vec![c],
                        })
                        .collect();
                    format!("%{escaped}%")
                });
                sqlx::query_as(&q)
                    .bind(account_id)
                    .bind(before)
                    .bind(filter.event_name.clone())
                    .bind(filter.key_arn.clone())
                    .bind(text)
                    .bind(filter.errors_only as i32)
                    .bind(filter.from)
                    .bind(filter.to)
                    .bind(limit)
                    .bind(floor)
                    .all(&self.pool).await
            }

            async fn audit_events(&self, after: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
                sqlx::query_as(
                    "SELECT seq, event_id, event_time, event_name, account_id, key_arns, body, prev_hash, hash \
                     FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .all(&self.pool).await
            }

            async fn audit_generations(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
                let rows = sqlx::query(
                    "SELECT row_name, generation, seq FROM audit_generations ORDER BY seq, row_name",
                )
                .all(&self.pool).await?;
                rows.iter()
                    .map(|r| Ok((cell(r, "row_name")?, cell(r, "generation")?, cell(r, "seq")?)))
                    .collect()
            }

            async fn seal_audit_events(&self, seals: &[(i64, Vec<u8>)]) -> Result<(), StoreError> {
                // Only an event without a seal takes one: a seal is never replaced. A batch's
                // seals in one transaction (one commit, one fsync on SQLite).
                let mut tx = self.pool.begin().await.map_err(map_err)?;
                for (seq, seal) in seals {
                    sqlx::query("UPDATE audit_events SET seal = $2 WHERE seq = $1 AND seal IS NULL")
                        .bind(seq)
                        .bind(seal)
                        .execute(&mut *tx)
                        .await
                        .map_err(map_err)?;
                }
                tx.commit().await.map_err(map_err)
            }

            async fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO audit_checkpoints (seq, hash, signed_at, signature) VALUES ($1,$2,$3,$4) \
                     ON CONFLICT (seq) DO NOTHING",
                )
                .bind(c.seq)
                .bind(&c.hash)
                .bind(c.signed_at)
                .bind(&c.signature)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
                Ok(())
            }

            async fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
                sqlx::query_as(
                    "SELECT seq, hash, signed_at, signature FROM audit_checkpoints ORDER BY seq",
                )
                .all(&self.pool).await
            }
        }
    };
}

pub(crate) use audit_store;
