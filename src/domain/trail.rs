//! The audit trail as the console shows it: an account's events, to a principal whose identity
//! policies allow `cloudtrail:LookupEvents` (AWS's action for reading the event history).

use super::*;
use crate::store::AuditRow;
/// What a trail lookup keeps (the console builds it; the store applies it).
pub use crate::store::EventFilter;

impl Kms {
    /// The caller's account's events matching `filter`, newest first, before sequence number
    /// `before`, at most `limit` (≤ 200), each with whether its row still hashes to what it
    /// records.
    pub async fn lookup_events(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(AuditRow, bool)>> {
        self.authorize(caller, "cloudtrail:LookupEvents", None, None, &[])
            .await?;
        let Some(audit) = self.audit.get() else {
            return Ok(Vec::new());
        };
        Ok(audit
            .lookup(
                &caller.account_id,
                filter,
                before.unwrap_or(i64::MAX),
                limit.clamp(1, 200),
            )
            .await?)
    }
}
