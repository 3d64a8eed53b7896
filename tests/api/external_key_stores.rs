//! External key stores: this service using an XKS proxy — here its own proxy API, over TLS on
//! loopback — as AWS KMS uses one. Every ciphertext is encrypted twice (the service's own key
//! material, then the proxy's external key), so neither side alone decrypts it.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    ConnectionStateType, CustomKeyStoreType, OriginType, XksProxyConnectivityType,
};

const XKS_ID: &str = "XKSPROXYEXTERNALSTORE234";
const XKS_SECRET: &str = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5d2FsZG8xMjM0NTY3OA==";

/// A TLS server that serves the proxy API under `/ext` (its key `ext-1` for encryption and
/// decryption, `enc-only` only for encryption) and trusts its own CA as an XKS client; an SDK
/// client over TLS.
async fn setup() -> (Server, aws_sdk_kms::Client, String) {
    setup_with("", &[]).await
}

/// [`setup`], with `top` (top-level settings) at the head of the server's settings file and
/// `env` in its environment.
async fn setup_with(top: &str, env: &[(&str, &str)]) -> (Server, aws_sdk_kms::Client, String) {
    let dir = tempfile::tempdir().unwrap().keep();
    let (ca, cert, key) = crate::tls::certificates(&dir);
    let mut s = Server::start_with(&[
        ("KMS_TLS__CERT_FILE", cert.to_str().unwrap()),
        ("KMS_TLS__KEY_FILE", key.to_str().unwrap()),
        ("KMS_XKS_CLIENT_CA_FILE", ca.to_str().unwrap()),
        ("KMS_XKS_CLIENT_TIMEOUT_MS", "5000"),
    ])
    .await;
    let client = || {
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
        move |s: &Server| {
            aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::Config::builder()
                    .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
                    .region(aws_sdk_kms::config::Region::new(REGION))
                    .endpoint_url(&s.endpoint)
                    .http_client(http.clone())
                    .credentials_provider(aws_sdk_kms::config::Credentials::new(
                        &s.access_key_id,
                        &s.secret,
                        None,
                        None,
                        "tls",
                    ))
                    .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
                    .build(),
            )
        }
    };
    let c = client()(&s);
    // The proxy's side: the external key, and the credential AWS KMS would be given.
    let mut arns = Vec::new();
    for _ in 0..2 {
        arns.push(
            c.create_key()
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .arn
                .unwrap(),
        );
    }
    let (user, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "xks-proxy", None));
    let out = tokio::task::block_in_place(|| {
        s.admin(
            &[
                "create-access-key",
                "--user-arn",
                &user,
                "--access-key-id",
                XKS_ID,
            ],
            &[("KMS_IMPORT_SECRET_ACCESS_KEY", XKS_SECRET)],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf = dir.join("xks.toml");
    std::fs::write(
        &conf,
        format!(
            "{top}[[xks_stores]]\nuri_path_prefix = \"/ext\"\naccess_key_ids = [\"{XKS_ID}\"]\n\
             [[xks_stores.keys]]\nxks_key_id = \"ext-1\"\nkey_arn = \"{}\"\n\
             [[xks_stores.keys]]\nxks_key_id = \"enc-only\"\nkey_arn = \"{}\"\nusage = [\"ENCRYPT\"]\n",
            arns[0], arns[1]
        ),
    )
    .unwrap();
    s.env
        .push(("KMS_CONFIG".into(), conf.to_str().unwrap().into()));
    s.env
        .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    tokio::task::block_in_place(|| s.spawn());
    let c = client()(&s);
    (s, c, arns[0].clone())
}

async fn new_store(
    c: &aws_sdk_kms::Client,
    name: &str,
    endpoint: &str,
    secret: &str,
) -> Result<String, String> {
    c.create_custom_key_store()
        .custom_key_store_name(name)
        .custom_key_store_type(CustomKeyStoreType::ExternalKeyStore)
        .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
        .xks_proxy_uri_endpoint(endpoint)
        .xks_proxy_uri_path("/ext/kms/xks/v1")
        .xks_proxy_authentication_credential(
            aws_sdk_kms::types::XksProxyAuthenticationCredentialType::builder()
                .access_key_id(XKS_ID)
                .raw_secret_access_key(secret)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .map(|o| o.custom_key_store_id.unwrap())
        .map_err(|e| {
            use aws_sdk_kms::error::ProvideErrorMetadata;
            e.code().unwrap_or_default().to_string()
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_key_store_on_its_own_proxy_encrypts_twice() {
    let (s, c, proxy_key) = setup().await;
    // The proxy is checked at creation, as AWS checks it.
    assert_eq!(
        new_store(
            &c,
            "bad-credential",
            &s.endpoint,
            &XKS_SECRET.replace('Z', "Y")
        )
        .await
        .unwrap_err(),
        "XksProxyIncorrectAuthenticationCredentialException"
    );
    assert_eq!(
        new_store(&c, "unreachable", "https://127.0.0.1:1", XKS_SECRET)
            .await
            .unwrap_err(),
        "XksProxyUriUnreachableException"
    );
    let id = new_store(&c, "external", &s.endpoint, XKS_SECRET)
        .await
        .unwrap();
    assert_eq!(
        new_store(&c, "same-proxy", &s.endpoint, XKS_SECRET)
            .await
            .unwrap_err(),
        "XksProxyUriInUseException"
    );
    let d = c
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    let e = &d.custom_key_stores()[0];
    assert_eq!(
        e.custom_key_store_type(),
        Some(&CustomKeyStoreType::ExternalKeyStore)
    );
    let x = e.xks_proxy_configuration().unwrap();
    assert_eq!(x.access_key_id(), Some(XKS_ID));
    assert_eq!(x.uri_path(), Some("/ext/kms/xks/v1"));
    assert_eq!(x.uri_endpoint(), Some(s.endpoint.as_str()));
    c.connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    let d = c
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        d.custom_key_stores()[0].connection_state(),
        Some(&ConnectionStateType::Connected)
    );

    // Keys: the proxy must hold the external key, enabled, for both uses; one KMS key each.
    let in_store = |xks: &str| {
        c.create_key()
            .custom_key_store_id(&id)
            .origin(OriginType::ExternalKeyStore)
            .xks_key_id(xks)
    };
    assert_eq!(
        code(in_store("nope").send().await),
        "XksKeyNotFoundException"
    );
    assert_eq!(
        code(in_store("enc-only").send().await),
        "XksKeyInvalidConfigurationException"
    );
    let key = in_store("ext-1")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(key.origin(), Some(&OriginType::ExternalKeyStore));
    assert_eq!(
        key.xks_key_configuration().and_then(|x| x.id()),
        Some("ext-1")
    );
    assert_eq!(key.custom_key_store_id(), Some(id.as_str()));
    // AWS names the current material only of AWS_KMS and EXTERNAL keys.
    assert_eq!(key.current_key_material_id(), None);
    assert_eq!(
        code(in_store("ext-1").send().await),
        "XksKeyAlreadyInUseException"
    );

    // Encrypted twice: the proxy's layer outside, the service's own inside.
    let k = key.key_id();
    let blob = c
        .encrypt()
        .key_id(k)
        .plaintext(Blob::new(b"held outside and inside".to_vec()))
        .encryption_context("app", "xks")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(blob.as_ref()[0], 0x02);
    let decrypt = |blob: Blob| {
        c.decrypt()
            .ciphertext_blob(blob)
            .encryption_context("app", "xks")
            .send()
    };
    let pt = decrypt(blob.clone()).await.unwrap().plaintext.unwrap();
    assert_eq!(pt.as_ref(), b"held outside and inside");
    // AWS: no data key pair under a key in a custom key store, and no random bytes from an
    // external key store ("UnsupportedOperationException").
    for plaintext in [true, false] {
        let spec = aws_sdk_kms::types::DataKeyPairSpec::EccNistP256;
        let r = if plaintext {
            code(
                c.generate_data_key_pair()
                    .key_id(k)
                    .key_pair_spec(spec)
                    .send()
                    .await,
            )
        } else {
            let r = c.generate_data_key_pair_without_plaintext().key_id(k);
            code(r.key_pair_spec(spec).send().await)
        };
        assert_eq!(r, "UnsupportedOperationException");
    }
    assert_eq!(
        code(
            c.generate_random()
                .number_of_bytes(16)
                .custom_key_store_id(&id)
                .send()
                .await
        ),
        "UnsupportedOperationException"
    );
    let dk = c
        .generate_data_key()
        .key_id(k)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let back = c
        .decrypt()
        .ciphertext_blob(dk.ciphertext_blob.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        back.plaintext.unwrap().as_ref(),
        dk.plaintext.unwrap().as_ref()
    );
    // Any byte of the outer layer changed: InvalidCiphertextException.
    let mut bad = blob.as_ref().to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert_eq!(
        code(decrypt(Blob::new(bad)).await),
        "InvalidCiphertextException"
    );

    // The proxy's side alone decides too: its external key disabled, nothing decrypts.
    c.disable_key().key_id(&proxy_key).send().await.unwrap();
    assert_eq!(
        code(decrypt(blob.clone()).await),
        "KMSInvalidStateException"
    );
    c.enable_key().key_id(&proxy_key).send().await.unwrap();
    assert_eq!(
        decrypt(blob.clone())
            .await
            .unwrap()
            .plaintext
            .unwrap()
            .as_ref(),
        b"held outside and inside"
    );

    // The key's external key is under its attributes seal: another one named with SQL is refused.
    s.db.execute(&format!(
        "UPDATE keys SET xks_key_id = 'enc-only' WHERE key_id = {}",
        s.db.key(k)
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(code(decrypt(blob.clone()).await), "KeyUnavailableException");
    s.db.execute(&format!(
        "UPDATE keys SET xks_key_id = 'ext-1' WHERE key_id = {}",
        s.db.key(k)
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // Updates, as AWS allows them: the name, path and credential while connected (each proxy
    // change checked first), the endpoint only while disconnected.
    let update = || c.update_custom_key_store().custom_key_store_id(&id);
    update()
        .new_custom_key_store_name("external-renamed")
        .send()
        .await
        .unwrap();
    let credential = |secret: &str| {
        aws_sdk_kms::types::XksProxyAuthenticationCredentialType::builder()
            .access_key_id(XKS_ID)
            .raw_secret_access_key(secret)
            .build()
            .unwrap()
    };
    assert_eq!(
        code(
            update()
                .xks_proxy_authentication_credential(credential(&XKS_SECRET.replace('Z', "Y")))
                .send()
                .await
        ),
        "XksProxyIncorrectAuthenticationCredentialException"
    );
    assert_eq!(
        code(
            update()
                .xks_proxy_uri_path("/other/kms/xks/v1")
                .send()
                .await
        ),
        "XksProxyInvalidConfigurationException"
    );
    assert_eq!(
        code(
            update()
                .xks_proxy_uri_endpoint("https://localhost:1")
                .send()
                .await
        ),
        "CustomKeyStoreInvalidStateException"
    );
    update()
        .xks_proxy_authentication_credential(credential(XKS_SECRET))
        .send()
        .await
        .unwrap();
    let d = c
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    let e = &d.custom_key_stores()[0];
    assert_eq!(e.custom_key_store_name(), Some("external-renamed"));
    assert_eq!(
        e.xks_proxy_configuration().unwrap().uri_path(),
        Some("/ext/kms/xks/v1")
    );
    assert_eq!(
        decrypt(blob.clone())
            .await
            .unwrap()
            .plaintext
            .unwrap()
            .as_ref(),
        b"held outside and inside"
    );

    // Disconnected: unusable, as AWS has it.
    c.disconnect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(code(decrypt(blob).await), "KMSInvalidStateException");
}

/// A proxy that accepts connections and never answers: the call ends at the client's timeout
/// with AWS's exception, never a hang.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_that_never_answers_is_an_error_not_a_hang() {
    let (_s, c, _) = setup().await;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            open.push(conn);
        }
    });
    let started = std::time::Instant::now();
    let r = new_store(
        &c,
        "silent",
        &format!("https://127.0.0.1:{port}"),
        XKS_SECRET,
    )
    .await;
    assert_eq!(r.unwrap_err(), "XksProxyUriUnreachableException");
    // The client's timeout here is 5 s (`setup`); far below the test's patience.
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    held.abort();
}

/// With `xks_client_endpoints` set, a node connects to no other proxy endpoint: a store naming
/// one is answered as one that cannot be reached, whatever listens there, so a principal
/// allowed CreateCustomKeyStore cannot have the node probe its network. (The endpoint named
/// here is the very proxy the listed name reaches: only the list refuses it.)
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_endpoint_not_listed_is_never_connected_to() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let top = format!("xks_client_endpoints = [\"https://LOCALHOST:{port}/\"]\n");
    let listen = format!("127.0.0.1:{port}");
    let (s, c, _) = setup_with(&top, &[("KMS_LISTEN", &listen)]).await;
    assert_eq!(s.endpoint, format!("https://127.0.0.1:{port}"));
    assert_eq!(
        new_store(&c, "unlisted", &s.endpoint, XKS_SECRET)
            .await
            .unwrap_err(),
        "XksProxyUriUnreachableException"
    );
    let listed = format!("https://localhost:{port}");
    new_store(&c, "listed", &listed, XKS_SECRET).await.unwrap();
}

/// The proxy members as AWS's model constrains them: `XksProxyUriEndpoint` is
/// `^https://[a-zA-Z0-9.-]+$` (no path, no trailing slash; a port is this service's one
/// extension, for proxies on premises), and the VPC endpoint service members are checked
/// before they are refused as unsupported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_members_are_checked_as_awss_model_constrains_them() {
    let s = Server::start().await;
    let c = s.client();
    let create = |endpoint: &str| {
        c.create_custom_key_store()
            .custom_key_store_name(format!("s-{}", uuid::Uuid::new_v4()))
            .custom_key_store_type(CustomKeyStoreType::ExternalKeyStore)
            .xks_proxy_connectivity(XksProxyConnectivityType::PublicEndpoint)
            .xks_proxy_uri_endpoint(endpoint)
            .xks_proxy_uri_path("/kms/xks/v1")
            .xks_proxy_authentication_credential(
                aws_sdk_kms::types::XksProxyAuthenticationCredentialType::builder()
                    .access_key_id(XKS_ID)
                    .raw_secret_access_key(XKS_SECRET)
                    .build()
                    .unwrap(),
            )
            .send()
    };
    for bad in [
        "http://xks.example.com",
        "https://xks.example.com/",
        "https://xks.example.com/kms",
        "https://xks.example.com:",
        "https://xks.example.com:99999",
        "https://user@xks.example.com",
    ] {
        let (code, m) = message(create(bad).await);
        assert_eq!(code, "ValidationException", "{bad}: {m}");
        assert_eq!(
            m,
            format!("1 validation error detected: Value '{bad}' at 'xksProxyUriEndpoint' failed to satisfy constraint: Member must satisfy regular expression pattern: ^https://[a-zA-Z0-9.-]+$")
        );
    }
    // Past validation, to the proxy's health check (nothing listens there).
    for good in ["https://127.0.0.1", "https://127.0.0.1:1"] {
        let (code, m) = message(create(good).await);
        assert_eq!(code, "XksProxyUriUnreachableException", "{good}: {m}");
    }
    let vpc = |name: Option<&str>, owner: Option<&str>| {
        c.create_custom_key_store()
            .custom_key_store_name(format!("v-{}", uuid::Uuid::new_v4()))
            .custom_key_store_type(CustomKeyStoreType::ExternalKeyStore)
            .xks_proxy_connectivity(XksProxyConnectivityType::VpcEndpointService)
            .xks_proxy_uri_endpoint("https://127.0.0.1")
            .xks_proxy_uri_path("/kms/xks/v1")
            .set_xks_proxy_vpc_endpoint_service_name(name.map(str::to_string))
            .set_xks_proxy_vpc_endpoint_service_owner(owner.map(str::to_string))
            .xks_proxy_authentication_credential(
                aws_sdk_kms::types::XksProxyAuthenticationCredentialType::builder()
                    .access_key_id(XKS_ID)
                    .raw_secret_access_key(XKS_SECRET)
                    .build()
                    .unwrap(),
            )
            .send()
    };
    let (code, m) = message(vpc(Some("bad-name-of-a-service"), None).await);
    assert_eq!(code, "ValidationException");
    assert!(m.contains("at 'xksProxyVpcEndpointServiceName' failed to satisfy constraint: Member must satisfy regular expression pattern"), "{m}");
    let (code, m) = message(vpc(None, Some("123")).await);
    assert_eq!(code, "ValidationException");
    assert!(m.contains("at 'xksProxyVpcEndpointServiceOwner'"), "{m}");
    let (code, _) = message(
        vpc(
            Some("com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"),
            Some("111122223333"),
        )
        .await,
    );
    assert_eq!(code, "UnsupportedOperationException");
}
