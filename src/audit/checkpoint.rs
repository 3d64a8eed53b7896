//! Checkpoints: the chain head signed in the token with the audit key, and that key's public
//! half for verifiers. Separate from recording because it runs on its own schedule, needs only
//! the store and the token, and is what `verify` checks against.

use super::*;
use crate::store::{AuditStore, CheckpointRow, StoreError};
use chrono::Utc;

/// Sign the current chain head in the token unless a checkpoint already covers it.
pub async fn checkpoint(
    store: &dyn AuditStore,
    hsm: &Hsm,
    anchor: Option<&anchor::Anchor>,
) -> Result<Option<i64>, AuditError> {
    let err = |e: StoreError| AuditError(e.to_string());
    let (seq, hash) = store.audit_head().await.map_err(err)?;
    if seq == 0 {
        return Ok(None);
    }
    let last = store
        .checkpoints()
        .await
        .map_err(err)?
        .last()
        .map(|c| c.seq);
    if last == Some(seq) {
        return Ok(None);
    }
    let signed_at = Utc::now();
    let signature = audit_signature(hsm, &checkpoint_message(seq, &hash, &signed_at)).await?;
    let row = CheckpointRow {
        seq,
        hash,
        signed_at,
        signature,
    };
    store.insert_checkpoint(&row).await.map_err(err)?;
    if let Some(a) = anchor {
        a.checkpoint(&row).map_err(AuditError)?;
    }
    Ok(Some(seq))
}

/// The audit public key as SubjectPublicKeyInfo DER.
pub async fn public_key_der(hsm: &Hsm) -> Result<Vec<u8>, AuditError> {
    let point = hsm
        .audit_public_point()
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    crate::domain::asymmetric::spki(
        crate::hsm::PairKind::Ec(crate::hsm::Curve::P256),
        &crate::hsm::PublicKey::Point(point),
    )
    .map_err(|e| AuditError(e.to_string()))
}

/// A SubjectPublicKeyInfo (DER) as PEM, 64 characters a line: what `kms audit public-key`
/// prints and `kms audit verify --public-key` reads.
pub fn public_key_pem(der: &[u8]) -> String {
    let b64 = crate::encoding::b64(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem + "-----END PUBLIC KEY-----\n"
}
