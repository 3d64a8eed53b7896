//! Event seals: the trail's own word on which events the service wrote.
//!
//! The chain's hashes are not keyed: anyone who can write to the database can append an event
//! that hashes as chained after the head (`kms_audit_append` does it in one statement). The
//! checkpoints sign whatever head they find, and `kms audit verify` checks links, not authors.
//! So every event a decision reads (an access key's creation, activation, deactivation or
//! deletion, a principal's deletion, a role's trust replaced, a material's leases, a change's
//! row generations: [`is_sealed_kind`]) is sealed once it is chained: signed in the token
//! with the audit key over its sequence number and a digest of its body, and the signature
//! stored beside it (`audit_events.seal`). A
//! decision that an event *permits* (a key used again after its deactivation, a row offered as
//! from before sealing) takes the event only with its seal; an event that *restricts* counts
//! either way (a database writer who forges one only refuses what it could delete anyway).
//!
//! A seal binds the sequence number: a genuine event copied to the end of the trail (after a
//! later deactivation) does not verify there. A permit must also come after the end it lifts
//! in time (`domain::credentials`): an event the service sealed where the database put the
//! head (moved ahead, then back) keeps the time it was made. It is written after the append, before any call
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

/// The events a decision reads from the trail by name (besides those naming row
/// generations): what permits (an access key's creation or activation, a material's leases),
/// what ends (an access key's deactivation or deletion, a principal's deletion, a role's
/// trust replaced), and coverage.
const SEALED_NAMES: &[&str] = &[
    "CreateAccessKey",
    "ActivateAccessKey",
    "DeactivateAccessKey",
    "DeleteAccessKey",
    "DeletePrincipal",
    "CreateRole",
    "InvocationsLeased",
    "SealCoverage",
];

/// Whether an event is sealed once chained: one a decision reads (by its name, or the row
/// generations it names). Not the bulk of the trail (cryptographic and read-only calls, the
/// intents of changes, failed calls), which decides nothing.
pub fn is_sealed_kind(event: &NewAuditEvent) -> bool {
    !event.generations.is_empty() || SEALED_NAMES.contains(&event.event_name.as_str())
}

/// Seal the events of a batch chained at `first`, `first + 1`, … (those [`is_sealed_kind`]
/// names) in the token, and store the seals.
pub(crate) async fn seal_chained(
    store: &dyn AuditStore,
    hsm: &Hsm,
    first: i64,
    events: &[NewAuditEvent],
) -> Result<(), AuditError> {
    let sealed: Vec<(i64, &NewAuditEvent)> = (first..)
        .zip(events)
        .filter(|(_, e)| is_sealed_kind(e))
        .collect();
    if sealed.is_empty() {
        return Ok(());
    }
    // Signed at once (each on a session of its own), then stored.
    let messages: Vec<Vec<u8>> = sealed
        .iter()
        .map(|(seq, e)| seal_message(*seq, &e.body))
        .collect();
    let signing = messages.iter().map(|m| audit_signature(hsm, m));
    let signed = futures_util::future::join_all(signing).await;
    let mut seals = Vec::with_capacity(signed.len());
    for ((seq, _), seal) in sealed.iter().zip(signed) {
        seals.push((*seq, seal?));
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
