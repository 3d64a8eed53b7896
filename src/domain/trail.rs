//! The audit trail as the console shows it: an account's events, to a principal whose identity
//! policies allow `cloudtrail:LookupEvents` (AWS's action for reading the event history).

use super::*;
use crate::audit::verify;
/// A signed checkpoint over the chain head.
pub use crate::store::CheckpointRow;

/// The trail's latest checkpoint, whether its signature verifies, and the audit public key
/// (SubjectPublicKeyInfo DER).
pub struct TrailStatus {
    pub latest: Option<(CheckpointRow, bool)>,
    pub public_key: Vec<u8>,
}
/// What a trail lookup keeps (the console builds it; the store applies it).
pub use crate::store::EventFilter;

impl Kms {
    /// The caller's account's events matching `filter`, newest first, with sequence numbers
    /// in `range` (from its first, down to which, to before its second, if any), at most
    /// `limit` (≤ 200), each with whether its row still hashes to what it records; read a
    /// bounded part of the trail at a time ([`crate::audit::Audit::lookup`]).
    pub async fn lookup_events(
        &self,
        caller: &Caller,
        filter: &EventFilter,
        range: (i64, Option<i64>),
        limit: i64,
    ) -> Result<crate::audit::Lookup> {
        self.authorize(caller, "cloudtrail:LookupEvents", None, None, &[])
            .await?;
        let Some(audit) = self.audit.get() else {
            return Ok(crate::audit::Lookup {
                rows: Vec::new(),
                next: None,
            });
        };
        let (down_to, before) = range;
        Ok(audit
            .lookup(
                &caller.account_id,
                filter,
                (down_to, before.unwrap_or(i64::MAX)),
                limit.clamp(1, 200),
            )
            .await?)
    }

    fn trail(&self) -> Result<&Arc<crate::audit::Audit>> {
        self.audit
            .get()
            .ok_or_else(|| KmsError::Internal("the audit trail is not running".into()))
    }

    /// The latest signed checkpoint and whether it verifies with the audit public key; with
    /// the public key. For a principal allowed `cloudtrail:LookupEvents`.
    pub async fn trail_status(&self, caller: &Caller) -> Result<TrailStatus> {
        self.authorize(caller, "cloudtrail:LookupEvents", None, None, &[])
            .await?;
        let audit = self.trail()?;
        let internal = |e: crate::audit::AuditError| KmsError::Internal(e.to_string());
        let latest = audit.latest_checkpoint().await.map_err(internal)?;
        let public_key = audit.public_key_der().await.map_err(internal)?;
        Ok(TrailStatus { latest, public_key })
    }

    /// The whole trail verified as `kms audit verify` verifies it in the database (anchor
    /// files aside: they are on the nodes' disks). For a principal allowed
    /// `cloudtrail:LookupEvents`; the problems name sequence numbers, never another account's
    /// events' content.
    pub async fn verify_trail(&self, caller: &Caller) -> Result<verify::Report> {
        self.authorize(caller, "cloudtrail:LookupEvents", None, None, &[])
            .await?;
        let (report, _) =
            (self.trail()?.verify_stored().await).map_err(|e| KmsError::Internal(e.to_string()))?;
        Ok(report)
    }

    /// The caller's account's events that `filter` keeps, as `kms audit export` writes them
    /// (other accounts' events appear only as the hashes that link the chain), and how many.
    pub async fn export_trail(
        &self,
        caller: &Caller,
        filter: &verify::Filter,
    ) -> Result<(Vec<String>, usize)> {
        self.authorize(caller, "cloudtrail:LookupEvents", None, None, &[])
            .await?;
        let filter = verify::Filter {
            account: Some(caller.account_id.clone()),
            ..filter.clone()
        };
        (self.trail()?.export(&filter).await).map_err(|e| KmsError::Internal(e.to_string()))
    }
}
