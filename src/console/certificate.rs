//! Sign-in with a client certificate (mutual TLS, `console_certificate_sign_in`): the
//! certificate, already verified by the TLS layer against `tls.client_ca_file`, names the
//! access key its holder signs in as, in a subjectAltName URI `urn:kms:access-key:<id>`. The
//! session is then the access key's, as after a sign-in with its secret (it ends as soon as the
//! key is deactivated or deleted), and it is bound to the certificate: the cookie alone, on a
//! connection without that certificate, opens nothing.

use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// What a certificate's subjectAltName URI starts with, before the access key id.
pub const ACCESS_KEY_URI: &str = "urn:kms:access-key:";

/// The access key certificate `der` names: its one `urn:kms:access-key:` URI. `None` for a
/// certificate that does not parse, names none, or names more than one.
pub fn access_key_of(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let mut named = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id != x509_cert::der::oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes()).ok()?;
        for name in san.0 {
            if let GeneralName::UniformResourceIdentifier(uri) = name {
                if let Some(id) = uri.as_str().strip_prefix(ACCESS_KEY_URI) {
                    named.push(id.to_string());
                }
            }
        }
    }
    match named.as_slice() {
        [one] if crate::domain::credentials::valid_access_key_id(one) => Some(one.clone()),
        _ => None,
    }
}
