//! Signed reports: a report the service built (the console's compliance reports) carries, as
//! its last line, a signature made in the token with the audit key over the report's bytes and
//! the chain head it was built from, so an auditor can check later, with only the audit public
//! key (`kms audit verify --report`), that the service produced exactly this text at that point
//! of the trail.
//!
//! The signed message starts with its own label, so a report's signature can never pass for a
//! checkpoint's (`kms.audit.checkpoint.v1`) or the other way round.

use super::{AuditError, Hsm};
use crate::encoding::b64;
use crate::store::AuditStore;
use base64::Engine;
use chrono::{DateTime, Utc};

/// What starts the signature line of a CSV report (a comment line).
pub const CSV_MARK: &str = "# kms-report-signature ";
/// What starts the signature line of an HTML report (a comment).
pub const HTML_MARK: &str = "<!-- kms-report-signature ";

/// A report's signature: the chain head it was built from, when, and the ECDSA P-256 signature
/// (DER) of the audit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSignature {
    pub seq: i64,
    pub head: Vec<u8>,
    pub signed_at: DateTime<Utc>,
    pub signature: Vec<u8>,
}

/// The bytes the audit key signs for a report of `content`.
fn message(content: &[u8], seq: i64, head: &[u8], signed_at: &DateTime<Utc>) -> Vec<u8> {
    let mut m = b"kms.report.v1\0".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(head);
    m.extend_from_slice(&signed_at.timestamp_micros().to_be_bytes());
    m.extend_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content).as_ref());
    m
}

/// Sign `content` (a whole report, up to its signature line) over the chain head now.
pub async fn sign(
    store: &dyn AuditStore,
    hsm: &Hsm,
    content: &[u8],
) -> Result<ReportSignature, AuditError> {
    let (seq, head) = store
        .audit_head()
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    // Microseconds: what the message carries and the line prints.
    let signed_at =
        DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_else(Utc::now);
    let signature = super::audit_signature(hsm, &message(content, seq, &head, &signed_at)).await?;
    Ok(ReportSignature {
        seq,
        head,
        signed_at,
        signature,
    })
}

impl ReportSignature {
    /// The signature line a report ends with (`html`: as an HTML comment), newline included.
    pub fn line(&self, html: bool) -> String {
        let fields = format!(
            "v1 seq={} head={} signed-at={} signature={}",
            self.seq,
            b64(&self.head),
            self.signed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            b64(&self.signature)
        );
        if html {
            format!("{HTML_MARK}{fields} -->\n")
        } else {
            format!("{CSV_MARK}{fields}\n")
        }
    }
}

/// Check a signed report with the audit public key (SubjectPublicKeyInfo DER): the signature
/// it carries, if its content is what was signed. `Err` says what is wrong.
pub fn verify(text: &[u8], public_key: &[u8]) -> Result<ReportSignature, String> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (content, last) = (&text[..start], &body[start..]);
    let last = std::str::from_utf8(last).map_err(|_| "the report has no signature line")?;
    let fields = last
        .strip_prefix(CSV_MARK)
        .or_else(|| {
            last.strip_prefix(HTML_MARK)
                .and_then(|l| l.strip_suffix(" -->"))
        })
        .ok_or("the report has no signature line (it must be its last line)")?;
    let mut parts = fields.split(' ');
    if parts.next() != Some("v1") {
        return Err("the report's signature line is not of a known version".into());
    }
    let mut field = |name: &str| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(name))
            .and_then(|p| p.strip_prefix('='))
            .ok_or_else(|| format!("the report's signature line has no {name}"))
    };
    let unb64 = |v: &str, name: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v)
            .map_err(|_| format!("the report's {name} is not base64"))
    };
    let seq = field("seq")?
        .parse::<i64>()
        .map_err(|_| "the report's seq is not a number")?;
    let head = unb64(field("head")?, "head")?;
    let signed_at = DateTime::parse_from_rfc3339(field("signed-at")?)
        .map_err(|_| "the report's signed-at is not a time")?
        .to_utc();
    let signature = unb64(field("signature")?, "signature")?;
    let key = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        public_key,
    );
    key.verify(&message(content, seq, &head, &signed_at), &signature)
        .map_err(|_| {
            "the report's signature does not verify with the audit public key: it was altered, or signed by another key".to_string()
        })?;
    Ok(ReportSignature {
        seq,
        head,
        signed_at,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn signed(content: &[u8], html: bool) -> (Vec<u8>, Vec<u8>) {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let signed_at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let sig = pair
            .sign(&rng, &message(content, 42, &[7; 32], &signed_at))
            .unwrap();
        let s = ReportSignature {
            seq: 42,
            head: vec![7; 32],
            signed_at,
            signature: sig.as_ref().to_vec(),
        };
        let mut text = content.to_vec();
        text.extend_from_slice(s.line(html).as_bytes());
        let spki = crate::domain::asymmetric::spki(
            crate::hsm::PairKind::Ec(crate::hsm::Curve::P256),
            &crate::hsm::PublicKey::Point(pair.public_key().as_ref().to_vec()),
        )
        .unwrap();
        (text, spki)
    }

    #[test]
    fn a_report_verifies_as_signed_and_not_once_changed() {
        for html in [false, true] {
            let (text, key) = signed(b"key_id,state\nabc,Enabled\n", html);
            let s = verify(&text, &key).unwrap();
            assert_eq!((s.seq, s.head.clone()), (42, vec![7; 32]));
            // One byte of the content changed.
            let mut changed = text.clone();
            changed[14] = b'X';
            assert!(verify(&changed, &key)
                .unwrap_err()
                .contains("does not verify"));
            // A line added after the signature: the signature is no longer the last line.
            let mut appended = text.clone();
            appended.extend_from_slice(b"evil,Enabled\n");
            assert!(verify(&appended, &key).is_err());
            // The chain head claimed changed.
            let forged = String::from_utf8(text.clone())
                .unwrap()
                .replace("seq=42", "seq=43");
            assert!(verify(forged.as_bytes(), &key).is_err());
            // Another key.
            let (_, other) = signed(b"", html);
            assert!(verify(&text, &other).is_err());
        }
        assert!(verify(b"no signature\n", &signed(b"", false).1).is_err());
    }
}
