//! The service as a client of an External Key Store proxy (`EXTERNAL_KEY_STORE` custom key
//! stores): one signed HTTPS POST per call, over rustls with the operator's trusted CAs, within
//! a timeout (AWS KMS gives a proxy 250 ms), never a hang. The domain sees only
//! [`crate::domain::external_key_stores::KeyManager`].

use crate::domain::external_key_stores::{KeyManager, ProxyError, ProxyTarget};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer read from a proxy.
const MAX_ANSWER: usize = 1 << 20;

pub struct XksClient {
    tls: tokio_rustls::TlsConnector,
    timeout: Duration,
    /// The endpoints it may connect to (host lower-cased, port); empty: any.
    allowed: Vec<(String, u16)>,
}

/// The host (lower-cased) and port of an XKS proxy endpoint, `https://host[:port]` (a trailing
/// `/` aside); `None` for anything else.
pub fn proxy_authority(endpoint: &str) -> Option<(String, u16)> {
    let authority = endpoint.strip_prefix("https://")?.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        // An IPv6 literal's colons are inside its brackets.
        Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().ok()?),
        _ => (authority, 443),
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

impl XksClient {
    /// Trusting the CAs of `ca_file` (a PEM bundle: the public CAs a real proxy's certificate
    /// chains to, or an operator's own).
    /// `allowed`: the endpoints it may connect to (`xks_client_endpoints`); empty: any.
    pub fn new(
        ca_file: &std::path::Path,
        timeout: Duration,
        allowed: &[String],
    ) -> Result<XksClient, String> {
        let allowed = allowed
            .iter()
            .map(|e| {
                proxy_authority(e).ok_or_else(|| format!("'{e}' is not an XKS proxy endpoint"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        if let Ok(certs) = CertificateDer::pem_file_iter(ca_file) {
            for c in certs.flatten() {
                let _ = roots.add(c);
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(XksClient {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            timeout,
            allowed,
        })
    }

    async fn post(
        &self,
        t: &ProxyTarget,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), ProxyError> {
        // One reading of the endpoint, for the allow-list and the connection alike.
        let (host, port) =
            proxy_authority(&t.uri_endpoint).ok_or(ProxyError::InvalidConfiguration)?;
        let authority = (t.uri_endpoint.strip_prefix("https://"))
            .ok_or(ProxyError::InvalidConfiguration)?
            .trim_end_matches('/');
        // An endpoint the operator did not list is never connected to: it answers as one that
        // cannot be reached, whatever is there (no port of the node's network is probed).
        if !self.allowed.is_empty() && !self.allowed.contains(&(host.clone(), port)) {
            tracing::warn!(endpoint = %t.uri_endpoint, "an external key store names an XKS proxy endpoint not in xks_client_endpoints; not connecting");
            return Err(ProxyError::NotReachable);
        }
        // An IPv6 literal is written in brackets; the socket and the TLS name take it bare.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|_| ProxyError::NotReachable)?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|_| ProxyError::InvalidConfiguration)?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|_| ProxyError::InvalidTls)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|_| ProxyError::NotReachable)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let uri = format!("https://{authority}{}/{path}", t.uri_path);
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&uri)
            .header("host", authority)
            .header("content-type", "application/json")
            .body(body)
            .map_err(|_| ProxyError::InvalidConfiguration)?;
        // SigV4 for `kms-xks-proxy`, in this service's Region, with the store's credential.
        let secret = secrecy::ExposeSecret::expose_secret(&t.secret);
        crate::api::sigv4::sign_request(
            &mut req,
            &t.access_key_id,
            secret,
            &t.region,
            super::SERVICE,
        )
        .map_err(|_| ProxyError::InvalidConfiguration)?;
        let (parts, body) = req.into_parts();
        let req = hyper::Request::from_parts(parts, Full::new(bytes::Bytes::from(body)));
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| ProxyError::NotReachable)?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|_| ProxyError::InvalidResponse)?
            .to_bytes()
            .to_vec();
        Ok((status, body))
    }
}

#[async_trait::async_trait]
impl KeyManager for XksClient {
    async fn call(&self, t: &ProxyTarget, path: &str, body: Value) -> Result<Value, ProxyError> {
        let bytes = serde_json::to_vec(&body).map_err(|_| ProxyError::InvalidConfiguration)?;
        let (status, answer) = tokio::time::timeout(self.timeout, self.post(t, path, bytes))
            .await
            .map_err(|_| ProxyError::TimedOut)??;
        let v: Value = serde_json::from_slice(&answer).map_err(|_| ProxyError::InvalidResponse)?;
        if status == 200 {
            return Ok(v);
        }
        let name = v["errorName"].as_str().unwrap_or("").to_string();
        Err(match (status, name.as_str()) {
            (401, _) | (_, "AuthenticationFailedException") => ProxyError::AuthenticationFailed,
            (403, _) => ProxyError::AccessDenied,
            (_, "KeyNotFoundException") => ProxyError::KeyNotFound,
            (_, "InvalidCiphertextException") => ProxyError::InvalidCiphertext,
            (_, "InvalidStateException") => ProxyError::KeyInvalidState,
            (_, "InvalidKeyUsageException") => ProxyError::KeyInvalidUsage,
            (_, "InvalidUriPathException") => ProxyError::InvalidConfiguration,
            _ => ProxyError::Failed(status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::proxy_authority;

    #[test]
    fn proxy_endpoints_are_read_as_host_and_port() {
        let a = |e: &str| proxy_authority(e);
        assert_eq!(
            a("https://xks.example.com"),
            Some(("xks.example.com".into(), 443))
        );
        assert_eq!(
            a("https://XKS.example.com:8443/"),
            Some(("xks.example.com".into(), 8443))
        );
        assert_eq!(a("https://127.0.0.1:443"), a("https://127.0.0.1"));
        assert_eq!(a("https://[::1]:8443"), Some(("[::1]".into(), 8443)));
        assert_eq!(a("https://[::1]"), Some(("[::1]".into(), 443)));
        for bad in [
            "http://xks.example.com",
            "https://",
            "https://:443",
            "https://xks.example.com:port",
            "https://xks.example.com:70000",
            "https://xks.example.com/kms",
            "https://user@xks.example.com",
        ] {
            assert_eq!(a(bad), None, "{bad}");
        }
    }
}
