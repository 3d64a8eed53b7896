//! The key inventory of the console and the reports: a page of the keys a principal may list,
//! each it may also describe with its aliases, through the same authorization as
//! `ListKeys`, `DescribeKey` and `ListAliases`.

use super::preamble::{Access, ANY_STATE};
use super::rotation::RotationStatus;
use super::*;
use chrono::{DateTime, Duration};
use futures_util::StreamExt;

/// One key of the inventory.
#[derive(Debug, Clone)]
pub struct InventoryRow {
    pub meta: KeyMetadata,
    /// Its aliases (none shown where the principal may not list aliases).
    pub aliases: Arc<Vec<String>>,
}

/// A page of the inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryPage {
    pub rows: Vec<InventoryRow>,
    /// Keys of the page the principal may list but not describe.
    pub hidden: usize,
    /// Where the next page starts, if there is one.
    pub next_marker: Option<String>,
}

/// How many keys of a page are read at a time (each read is a few database round trips, and
/// the pool has connections to spare for them).
pub const KEYS_AT_ONCE: usize = 8;

impl Kms {
    /// At most `limit` of the keys `caller` may list (`kms:ListKeys`) after `marker`: each it
    /// may describe (`kms:DescribeKey`), with its aliases where it may list them
    /// (`kms:ListAliases`).
    pub async fn inventory(
        &self,
        caller: &Caller,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<InventoryPage> {
        // Taken before the rows are read: a row a change drops meanwhile is not kept.
        let drops = self.meta.lock().unwrap().drops();
        let (rows, next_marker) = self.list_key_rows(caller, limit, marker).await?;
        let arns: Vec<String> = rows.iter().map(|r| r.arn()).collect();
        // The page's keys checked at once (a cold page: one trail query, not one a key).
        self.cache_listed(drops, rows).await?;
        let aliases_shown = self
            .authorize(caller, "kms:ListAliases", None, None, &[])
            .await
            .is_ok();
        let mut page = InventoryPage {
            next_marker,
            ..InventoryPage::default()
        };
        // Each key's reads are a few database round trips: several keys at a time, in order.
        let row = |arn: String| async move {
            let access = Access::to("kms:DescribeKey", ANY_STATE);
            let Ok(rec) = self.key_for(caller, &arn, access).await else {
                return Ok(None);
            };
            let meta = self.metadata(&rec).await?;
            let aliases = if aliases_shown {
                // A key whose alias row fails its check shows none (the failure is logged).
                self.aliases_of(&rec).await.unwrap_or_default()
            } else {
                Arc::default()
            };
            Ok::<_, KmsError>(Some(InventoryRow { meta, aliases }))
        };
        let mut rows = futures_util::stream::iter(arns.into_iter().map(row)).buffered(KEYS_AT_ONCE);
        while let Some(r) = rows.next().await {
            match r? {
                Some(r) => page.rows.push(r),
                None => page.hidden += 1,
            }
        }
        Ok(page)
    }
}

/// The cryptoperiod of a key without automatic rotation, unless a report is asked for another
/// (days): AWS's default rotation period.
pub const DEFAULT_CRYPTOPERIOD_DAYS: i64 = super::rotation::DEFAULT_ROTATION_DAYS;

/// How a key's material is renewed, as the principal may read it: automatic rotation
/// (`kms:GetKeyRotationStatus`) and the rotations made so far (`kms:ListKeyRotations`; a key
/// other than a symmetric encryption key has none).
#[derive(Default)]
pub struct Renewal {
    pub status: Option<RotationStatus>,
    /// How many rotations, and the last (`None`: not readable).
    pub rotations: Option<(usize, Option<DateTime<Utc>>)>,
}

/// Whether a key's current material is within its cryptoperiod (NIST SP 800-57 Part 1, 5.3;
/// PCI DSS v4.0 3.6.1): the time since its creation or last rotation against the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cryptoperiod {
    Within,
    /// By this many days.
    Exceeded(i64),
    /// Pending deletion: the key is being retired.
    Retiring,
}

impl std::fmt::Display for Cryptoperiod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cryptoperiod::Within => f.write_str("within"),
            Cryptoperiod::Exceeded(days) => write!(f, "exceeded by {days} days"),
            Cryptoperiod::Retiring => f.write_str("retiring (pending deletion)"),
        }
    }
}

impl Renewal {
    /// The cryptoperiod applied (days) and the verdict at `now`: a key with automatic
    /// rotation has its rotation period; any other, `default_days`. `None` where the rotation
    /// status or the rotations cannot be read.
    pub fn cryptoperiod(
        &self,
        meta: &KeyMetadata,
        default_days: i64,
        now: DateTime<Utc>,
    ) -> Option<(i64, Cryptoperiod)> {
        let status = self.status.as_ref()?;
        let (_, last_rotation) = self.rotations?;
        let period = match status.enabled {
            true => status
                .period_days
                .map(i64::from)
                .unwrap_or(super::rotation::DEFAULT_ROTATION_DAYS),
            false => default_days,
        };
        let renewed = last_rotation
            .unwrap_or(meta.created_at)
            .max(meta.created_at);
        let verdict = match meta.key_state {
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion => Cryptoperiod::Retiring,
            // A day's grace for the rotation job's schedule.
            _ if now - renewed <= Duration::days(period + 1) => Cryptoperiod::Within,
            _ => Cryptoperiod::Exceeded((now - renewed).num_days() - period),
        };
        Some((period, verdict))
    }
}

impl Kms {
    /// Key `arn`'s [`Renewal`] as `caller` may read it.
    pub async fn renewal(&self, caller: &Caller, arn: &str) -> Renewal {
        let status = match self.key_rotation_status(caller, arn).await {
            Ok(s) => Some(s),
            // A key in a custom key store has no rotation status on AWS: it never rotates.
            Err(KmsError::UnsupportedOperation(_)) => Some(RotationStatus {
                enabled: false,
                key_arn: arn.to_string(),
                period_days: None,
                next: None,
                on_demand_start: None,
            }),
            Err(_) => None,
        };
        // What ListKeyRotations would answer, as the principal may ask it.
        let access = Access::to("kms:ListKeyRotations", ANY_STATE);
        let rotations = match self.key_for(caller, arn, access).await {
            // Only symmetric encryption keys rotate; a key at its first material has made no
            // rotation (each rotation makes the next version current): no query for those.
            Ok(rec) if rec.key_spec != KeySpec::SymmetricDefault || rec.current_version <= 1 => {
                Some((0, None))
            }
            Ok(rec) => match self.verified_rotations(&rec).await {
                Ok(r) => Some((r.len(), r.iter().map(|r| r.created_at).max())),
                Err(_) => None,
            },
            Err(_) => None,
        };
        Renewal { status, rotations }
    }
}
