//! TLS with rustls: the SDK talks HTTPS to the server, trusting its certificate;
//! `aws:SecureTransport` is true on TLS connections.

use crate::support::*;
use std::process::Command;

/// A test CA and a server certificate for 127.0.0.1 signed by it. Returns (CA cert, server
/// chain, server key).
pub(crate) fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n);
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl must be installed (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=kms test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_trusted_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let s = Server::start_with(&[
        ("KMS_TLS__CERT_FILE", cert.to_str().unwrap()),
        ("KMS_TLS__KEY_FILE", key.to_str().unwrap()),
    ])
    .await;
    assert!(s.endpoint.starts_with("https://"), "{}", s.endpoint);
    use aws_smithy_http_client::tls;
    let pem = std::fs::read(&ca).unwrap();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .tls_context(
            tls::TlsContext::builder()
                .with_trust_store(tls::TrustStore::empty().with_pem_certificate(pem))
                .build()
                .unwrap(),
        )
        .build_https();
    let client = |id: &str, secret: &str| {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                .region(aws_sdk_kms::config::Region::new(REGION))
                .endpoint_url(&s.endpoint)
                .http_client(http.clone())
                .credentials_provider(aws_sdk_kms::config::Credentials::new(
                    id, secret, None, None, "tls",
                ))
                .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                .build(),
        )
    };
    let admin = client(&s.access_key_id, &s.secret);
    let key_id = new_key(&admin).await;
    // A user allowed only over TLS.
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
        "Condition":{"Bool":{"aws:SecureTransport":"true"}}}]}"#;
    let (_, id, secret, _) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("123456789012", "tls-user", Some(policy))
    });
    client(&id, &secret)
        .encrypt()
        .key_id(&key_id)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"over tls".to_vec()))
        .send()
        .await
        .unwrap();
    // A client that does not trust the certificate cannot talk to it.
    let untrusting = s.client_with(&s.access_key_id, &s.secret, REGION, None);
    assert!(untrusting.list_keys().send().await.is_err());
    // The audit trail says how each call was protected.
    let body =
        s.db.strings(
            "SELECT body FROM audit_events WHERE event_name = 'Encrypt' ORDER BY seq DESC LIMIT 1",
        )
        .await
        .remove(0);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        matches!(
            e["tlsDetails"]["tlsVersion"].as_str(),
            Some("TLSv1.3") | Some("TLSv1.2")
        ),
        "{e}"
    );
    assert!(
        e["tlsDetails"]["cipherSuite"]
            .as_str()
            .unwrap()
            .starts_with("TLS"),
        "{e}"
    );
}

#[test]
fn a_bad_certificate_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let token = Token::new();
    let db = Database::new();
    assert!(run_init(&token, &db, None).status.success());
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, &token, &db);
    let out = cmd
        .env("KMS_TLS__CERT_FILE", &bad)
        .env("KMS_TLS__KEY_FILE", &bad)
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("TLS"), "{e}");
}

/// A client certificate for `name`, signed by a new CA in `dir`: (CA cert, cert, key).
fn client_certificate(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let f = |s: &str| format!("{name}-{s}");
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        &format!("/CN={name} CA"),
        "-keyout",
        &f("ca.key"),
        "-out",
        &f("ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &f("client.key"),
        "-out",
        &f("client.csr"),
    ]);
    std::fs::write(
        dir.join(f("ext.cnf")),
        "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &f("client.csr"),
        "-CA",
        &f("ca.pem"),
        "-CAkey",
        &f("ca.key"),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &f("ext.cnf"),
        "-out",
        &f("client.pem"),
    ]);
    (
        dir.join(f("ca.pem")),
        dir.join(f("client.pem")),
        dir.join(f("client.key")),
    )
}

/// One signed `ListKeys` over TLS with an optional client certificate: the HTTP response
/// text, or the connection error.
async fn list_keys_over_mtls(
    s: &Server,
    server_ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<String, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let addr = s.endpoint.trim_start_matches("https://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("{}/", s.endpoint))
        .header("host", addr.clone())
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", "TrentService.ListKeys")
        .body(b"{}".to_vec())
        .unwrap();
    sign_request(
        &mut req,
        &s.access_key_id,
        &s.secret,
        REGION,
        std::time::SystemTime::now(),
    );
    let mut wire = format!(
        "POST / HTTP/1.1\r\ncontent-length: {}\r\nconnection: close\r\n",
        req.body().len()
    );
    for (k, v) in req.headers() {
        wire.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap()));
    }
    wire.push_str("\r\n");
    let mut bytes = wire.into_bytes();
    bytes.extend_from_slice(req.body());
    tls.write_all(&bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out).await {
        Ok(_) if !out.is_empty() => Ok(String::from_utf8_lossy(&out).to_string()),
        Ok(_) => Err("closed without a response".into()),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// Client-certificate authentication: with `tls.client_ca_file` only clients holding a
/// certificate from that CA get as far as a request; the others are refused in the handshake.
/// The audit event names the certificate that was used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, cert, key) = certificates(dir.path());
    let (clients_ca, client, client_key) = client_certificate(dir.path(), "app");
    let (_, stranger, stranger_key) = client_certificate(dir.path(), "stranger");
    let s = Server::start_with(&[
        ("KMS_TLS__CERT_FILE", cert.to_str().unwrap()),
        ("KMS_TLS__KEY_FILE", key.to_str().unwrap()),
        ("KMS_TLS__CLIENT_CA_FILE", clients_ca.to_str().unwrap()),
    ])
    .await;
    let ok = list_keys_over_mtls(&s, &server_ca, Some((&client, &client_key)))
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("\"Keys\""), "{ok}");
    for (who, id) in [
        ("no certificate", None),
        (
            "a certificate from another CA",
            Some((stranger.as_path(), stranger_key.as_path())),
        ),
    ] {
        let r = list_keys_over_mtls(&s, &server_ca, id).await;
        assert!(r.is_err(), "a client with {who} was served: {r:?}");
    }
    // The audit trail records which certificate each call came with.
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&client).unwrap()
    };
    let fp = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        der.as_ref(),
    ));
    let body =
        s.db.strings(
            "SELECT body FROM audit_events WHERE event_name = 'ListKeys' ORDER BY seq DESC LIMIT 1",
        )
        .await
        .remove(0);
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["tlsDetails"]["clientCertificateSha256"], fp, "{e}");
}

/// `tls.client_cert_optional`: clients without a certificate are served too, but a
/// certificate from an unknown CA is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_client_certificates_must_still_be_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, cert, key) = certificates(dir.path());
    let (clients_ca, client, client_key) = client_certificate(dir.path(), "app");
    let (_, stranger, stranger_key) = client_certificate(dir.path(), "stranger");
    let s = Server::start_with(&[
        ("KMS_TLS__CERT_FILE", cert.to_str().unwrap()),
        ("KMS_TLS__KEY_FILE", key.to_str().unwrap()),
        ("KMS_TLS__CLIENT_CA_FILE", clients_ca.to_str().unwrap()),
        ("KMS_TLS__CLIENT_CERT_OPTIONAL", "true"),
    ])
    .await;
    for id in [None, Some((client.as_path(), client_key.as_path()))] {
        let r = list_keys_over_mtls(&s, &server_ca, id).await.unwrap();
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    let r = list_keys_over_mtls(&s, &server_ca, Some((&stranger, &stranger_key))).await;
    assert!(
        r.is_err(),
        "an untrusted client certificate was accepted: {r:?}"
    );
}
