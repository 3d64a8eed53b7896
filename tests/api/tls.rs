//! TLS with rustls: the SDK talks HTTPS to the server, trusting its certificate;
//! `aws:SecureTransport` is true on TLS connections.

use crate::support::*;
use std::process::Command;

/// A test CA and a server certificate for 127.0.0.1 signed by it. Returns (CA cert, server
/// chain, server key).
pub(crate) fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    new_ca(dir, "ca", "kms test CA");
    let ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n";
    let (cert, key) = issue(dir, "ca", "server", "localhost", ext);
    (dir.join("ca.pem"), cert, key)
}

/// A new self-signed CA in `dir`: `<file>.pem` and its key `<file>.key`, named `cn`.
fn new_ca(dir: &std::path::Path, file: &str, cn: &str) {
    openssl(
        dir,
        &[
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
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{file}.key"),
            "-out",
            &format!("{file}.pem"),
        ],
    );
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
    // Certificate sign-in to the console without client CAs to check certificates against.
    let (_, cert, key) = certificates(dir.path());
    let mut cmd = Command::new(kms_bin());
    kms_env(&mut cmd, &token, &db);
    let out = cmd
        .env("KMS_TLS__CERT_FILE", &cert)
        .env("KMS_TLS__KEY_FILE", &key)
        .env("KMS_CONSOLE_LISTEN", "127.0.0.1:0")
        .env("KMS_CONSOLE_CERTIFICATE_SIGN_IN", "true")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("console_certificate_sign_in needs tls.client_ca_file"),
        "{e}"
    );
}

/// Run `openssl` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
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
}

/// A client certificate for `name`, signed by a new CA in `dir` (`<name>-ca.pem`, its key
/// `<name>-ca.key`): (CA cert, cert, key).
fn client_certificate(
    dir: &std::path::Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca = format!("{name}-ca");
    new_ca(dir, &ca, &format!("{name} CA"));
    let (cert, key) = issue_client(dir, &ca, &format!("{name}-client"), "");
    (dir.join(format!("{ca}.pem")), cert, key)
}

/// A client certificate `<name>.pem` (key `<name>.key`) for CN `name` from CA `<ca>.pem` in
/// `dir`, with `extra` extension lines (`subjectAltName=…`): (cert, key).
fn issue_client(
    dir: &std::path::Path,
    ca: &str,
    name: &str,
    extra: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let ext = format!("basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n{extra}");
    issue(dir, ca, name, name, &ext)
}

/// A certificate `<file>.pem` (key `<file>.key`) for CN `cn` from CA `<ca>.pem` in `dir`,
/// with extensions `ext` (openssl's `-extfile` lines): (cert, key).
fn issue(
    dir: &std::path::Path,
    ca: &str,
    file: &str,
    cn: &str,
    ext: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let f = |e: &str| format!("{file}.{e}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &f("key"),
            "-out",
            &f("csr"),
        ],
    );
    std::fs::write(dir.join(f("cnf")), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &f("csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &f("cnf"),
            "-out",
            &f("pem"),
        ],
    );
    (dir.join(f("pem")), dir.join(f("key")))
}

/// One signed `ListKeys` over TLS with an optional client certificate: the HTTP response
/// text, or the connection error.
async fn list_keys_over_mtls(
    s: &Server,
    server_ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<String, String> {
    let addr = s.endpoint.trim_start_matches("https://").to_string();
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
    exchange(&addr, server_ca, identity, &bytes).await
}

/// One HTTP/1.1 exchange over TLS to `addr` (trusting `server_ca`, presenting `identity` if
/// given): the response text, or the connection error.
async fn exchange(
    addr: &str,
    server_ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    request: &[u8],
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
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(request)
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

/// One console request over TLS: (status, the session cookie it sets if any, the response).
async fn console_request(
    s: &Server,
    server_ca: &std::path::Path,
    identity: Option<(&std::path::Path, &std::path::Path)>,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> (u16, Option<String>, String) {
    let base = s.console.as_deref().expect("the console is on");
    let addr = base
        .trim_start_matches("https://")
        .trim_end_matches("/console/");
    let mut wire = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n"
    );
    if let Some(c) = cookie {
        wire.push_str(&format!("cookie: {c}\r\n"));
    }
    wire.push_str("\r\n");
    let text = exchange(addr, server_ca, identity, wire.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let cookie = text
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: __host-kms_console=")
        })
        .map(|l| {
            l["set-cookie: ".len()..]
                .split(';')
                .next()
                .unwrap()
                .to_string()
        })
        .filter(|c| c != "__Host-kms_console=");
    (status, cookie, text)
}

/// Console sign-in with a client certificate (`console_certificate_sign_in`): a certificate
/// from the client CA that names an access key (`urn:kms:access-key:<id>`) signs in as that
/// key without its secret. The session is bound to the certificate (its cookie over a
/// connection without it opens nothing) and ends with the access key. A certificate naming
/// no key, or a deactivated one, opens nothing; with the setting off the certificate is
/// offered nothing; the setting without client CAs stops the server at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_signs_in_to_the_console_as_the_access_key_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, cert, key) = certificates(dir.path());
    let (clients_ca, anonymous, anonymous_key) = client_certificate(dir.path(), "clients");
    let env = |on: &'static str| {
        vec![
            ("KMS_TLS__CERT_FILE", cert.to_str().unwrap().to_string()),
            ("KMS_TLS__KEY_FILE", key.to_str().unwrap().to_string()),
            (
                "KMS_TLS__CLIENT_CA_FILE",
                clients_ca.to_str().unwrap().to_string(),
            ),
            ("KMS_TLS__CLIENT_CERT_OPTIONAL", "true".to_string()),
            ("KMS_CONSOLE_LISTEN", "127.0.0.1:0".to_string()),
            ("KMS_CONSOLE_CERTIFICATE_SIGN_IN", on.to_string()),
        ]
    };
    let owned = env("true");
    let s = Server::start_with(
        &owned
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    let (alice, alice_key, _, _) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("222233334444", "alice", Some(crate::access::ALL))
    });
    // A certificate from the same client CA, naming alice's access key.
    let issue = |name: &str, san: &str| issue_client(dir.path(), "clients-ca", name, san);
    let (alice_cert, alice_cert_key) = issue(
        "alice",
        &format!("subjectAltName=URI:urn:kms:access-key:{alice_key}\n"),
    );
    let alice_id = Some((alice_cert.as_path(), alice_cert_key.as_path()));
    let req = |id, method: &'static str, path: &'static str, cookie: Option<String>| {
        let (s, ca) = (&s, server_ca.clone());
        async move { console_request(s, &ca, id, method, path, cookie.as_deref()).await }
    };

    // The sign-in page offers the certificate's access key; posting signs in as alice.
    let (status, _, page) = req(alice_id, "GET", "/console/sign-in", None).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Sign in with the certificate") && page.contains(&alice_key),
        "{page}"
    );
    let (status, cookie, page) = req(alice_id, "POST", "/console/sign-in-certificate", None).await;
    assert_eq!(status, 303, "{page}");
    // Over TLS the session is a __Host- cookie: Secure, for the whole host, set by it alone.
    let set = page
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_default();
    assert!(set.contains("; Path=/;") && set.contains("Secure"), "{set}");
    let cookie = cookie.expect("a session");
    let (status, _, keys) = req(alice_id, "GET", "/console/keys", Some(cookie.clone())).await;
    assert_eq!(status, 200, "{keys}");
    assert!(keys.contains(&alice), "{keys}");
    // The planted cookie: a sibling host sets a session of its own under the plain name (no
    // __Host- prefix); over TLS it opens nothing.
    let planted = cookie.replacen("__Host-kms_console=", "kms_console=", 1);
    let (status, _, _) = req(alice_id, "GET", "/console/keys", Some(planted)).await;
    assert_eq!(status, 303);

    // The cookie without the certificate, or with another one, opens nothing.
    let (status, _, _) = req(None, "GET", "/console/keys", Some(cookie.clone())).await;
    assert_eq!(status, 303);
    let other = Some((anonymous.as_path(), anonymous_key.as_path()));
    let (status, _, _) = req(other, "GET", "/console/keys", Some(cookie.clone())).await;
    assert_eq!(status, 303);
    // A certificate naming no access key is offered nothing and signs in as no one.
    let (_, _, page) = req(other, "GET", "/console/sign-in", None).await;
    assert!(!page.contains("Sign in with the certificate"), "{page}");
    let (status, cookie_none, _) = req(other, "POST", "/console/sign-in-certificate", None).await;
    assert_eq!((status, cookie_none), (403, None));
    // Nor one naming an access key that does not exist.
    let (ghost, ghost_key) = issue(
        "ghost",
        "subjectAltName=URI:urn:kms:access-key:AKIAAAAAAAAAAAAAAAAA\n",
    );
    let ghost_id = Some((ghost.as_path(), ghost_key.as_path()));
    let (status, cookie_none, _) =
        req(ghost_id, "POST", "/console/sign-in-certificate", None).await;
    assert_eq!((status, cookie_none), (401, None));

    // Deactivating the access key ends the session, and the certificate signs in no more.
    let out = tokio::task::block_in_place(|| {
        s.admin(
            &["deactivate-access-key", "--access-key-id", &alice_key],
            &[],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ended = false;
    for _ in 0..50 {
        let (status, _, _) = req(alice_id, "GET", "/console/keys", Some(cookie.clone())).await;
        if status == 303 {
            ended = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ended, "the session outlived its access key");
    let (status, cookie_none, _) =
        req(alice_id, "POST", "/console/sign-in-certificate", None).await;
    assert_eq!((status, cookie_none), (401, None));
    // Each sign-in is in the trail, with the certificate that made it.
    let fingerprint = {
        let pem = std::fs::read_to_string(&alice_cert).unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der))
    };
    let trail =
        s.db.strings("SELECT body FROM audit_events WHERE event_name = 'ConsoleLogin'")
            .await;
    assert!(
        trail
            .iter()
            .any(|b| b.contains(&fingerprint) && b.contains(&alice)),
        "no ConsoleLogin with the certificate in the trail: {trail:?}"
    );
    drop(s);

    // With the setting off, a certificate naming a key is offered nothing.
    let owned = env("false");
    let off = Server::start_with(
        &owned
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    let (_, _, page) =
        console_request(&off, &server_ca, alice_id, "GET", "/console/sign-in", None).await;
    assert!(!page.contains("Sign in with the certificate"), "{page}");
    let (status, _, _) = console_request(
        &off,
        &server_ca,
        alice_id,
        "POST",
        "/console/sign-in-certificate",
        None,
    )
    .await;
    assert_eq!(status, 403);
}
