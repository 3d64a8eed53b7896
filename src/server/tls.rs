//! TLS for the API listener: rustls on the aws-lc-rs provider, optional client certificates.

use crate::config::Settings;
use anyhow::{anyhow, Result};
use std::sync::Arc;

/// rustls on the aws-lc-rs provider, from the configured PEM files; `None` for plain HTTP.
pub fn tls_acceptor(s: &Settings) -> Result<Option<tokio_rustls::TlsAcceptor>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if s.console_certificate_sign_in && s.tls.client_ca_file.is_none() {
        return Err(anyhow!(
            "console_certificate_sign_in needs tls.client_ca_file (mutual TLS)"
        ));
    }
    let (cert, key) = match (&s.tls.cert_file, &s.tls.key_file) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err(anyhow!("tls.cert_file and tls.key_file go together")),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "the TLS certificate file {} holds no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow!("cannot read the TLS private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &s.tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow!("cannot read the client CA file {}: {e}", ca.display()))?
            {
                roots.add(c).map_err(|e| {
                    anyhow!("a certificate in {} is not a usable CA: {e}", ca.display())
                })?;
            }
            if roots.is_empty() {
                return Err(anyhow!(
                    "the client CA file {} holds no certificate",
                    ca.display()
                ));
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if s.tls.client_cert_optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build()?)
        }
    };
    if s.tls.client_ca_file.is_none() && s.tls.client_cert_optional {
        return Err(anyhow!("tls.client_cert_optional needs tls.client_ca_file"));
    }
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow!("the TLS certificate and key do not form a usable pair: {e}"))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}
