//! Event seals: the trail's own word on which events the service wrote.
//!
//! The chain's hashes are not keyed: anyone who can write to the database can append an event
//! that hashes as chained after the head (`kms_audit_append` does it in one statement). The
//! checkpoints sign whatever head they find, and `kms audit verify` checks links, not authors.
//! So every event that can decide something (every event but a read-only call's: a
//! `CreateAccessKey`, an `ActivateAccessKey`, a `SealCoverage`, a change's generations) is
//! sealed once it is chained: signed in the token with the audit key over its sequence number
//! and a digest of its body, and the signature stored beside it (`audit_events.seal`). A
//! decision that an event *permits* (a key used again after its deactivation, a row offered as
//! from before sealing) takes the event only with its seal; an event that *restricts* counts
//! either way (a database writer who forges one only refuses what it could delete anyway).
//!
//! A seal binds the sequence number: a genuine event copied to the end of the trail (after a
//! later deactivation) does not verify there. It is written after the append, before any call
//! the batch records is answered; an event chained but never sealed (the node died between)
//! permits nothing.

use super::*;
use crate::store::{AuditRow, AuditStore, KeyStore, NewAuditEvent, StoreError};

/// What the seal of event `seq` with `body` signs.
fn seal_message(seq: i64, body: &str) -> Vec<u8> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let mut m = b"kms-audit-event-seal\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(digest.as_ref());
    m
}

/// Whether an event is sealed once chained: every event but a read-only API call's (the bulk
/// of the trail, which decides nothing).
pub fn is_sealed_kind(event: &NewAuditEvent) -> bool {
    changes_state(&event.event_name)
}

/// Seal the events of a batch chained at `first`, `first + 1`, … (those [`is_sealed_kind`]
/// names) in the token, and store the seals.
pub(crate) async fn seal_chained(
    store: &dyn AuditStore,
    hsm: &Hsm,
    first: i64,
    events: &[NewAuditEvent],
) -> Result<(), AuditError> {
    let mut seals = Vec::new();
    for (seq, e) in (first..).zip(events) {
        if is_sealed_kind(e) {
            seals.push((
                seq,
                audit_signature(hsm, &seal_message(seq, &e.body)).await?,
            ));
        }
    }
    if seals.is_empty() {
        return Ok(());
    }
    store
        .seal_audit_events(&seals)
        .await
        .map_err(|e| AuditError(e.to_string()))
}

/// Event `seq` if it carries its seal, verified with the audit public key (SubjectPublicKeyInfo
/// DER): as the service chained it, at that place in the trail. `None` for an event with no
/// seal, or one that does not verify (written, copied or edited with SQL).
pub async fn sealed_event(
    store: &dyn KeyStore,
    public_key: &[u8],
    seq: i64,
) -> Result<Option<AuditRow>, StoreError> {
    let Some((row, Some(seal))) = store.audit_event_sealed(seq).await? else {
        return Ok(None);
    };
    Ok(seal_verifies(public_key, row.seq, &row.body, &seal).then_some(row))
}

/// Whether `seal` is the service's seal of event `seq` with `body`, verified with the audit
/// public key (SubjectPublicKeyInfo DER).
pub fn seal_verifies(public_key: &[u8], seq: i64, body: &str, seal: &[u8]) -> bool {
    let verifies = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        public_key,
    )
    .verify(&seal_message(seq, body), seal)
    .is_ok();
    if !verifies {
        tracing::error!(
            seq,
            "an event's seal does not verify (written, copied or edited in the database?); it permits nothing"
        );
    }
    verifies
}
