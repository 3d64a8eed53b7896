//! TLS with rustls: the SDK talks HTTPS to the server, trusting its certificate;
//! `aws:SecureTransport` is true on TLS connections.

use crate::support::*;
use std::process::Command;

/// A test CA and a server certificate for 127.0.0.1 signed by it. Returns (CA cert, server
/// chain, server key).
fn certificates(
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
    let key_id = admin
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
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
    use sqlx::Row;
    let pool = s.db.pool().await;
    let body: String = sqlx::query(
        "SELECT body FROM audit_events WHERE event_name = 'Encrypt' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
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
