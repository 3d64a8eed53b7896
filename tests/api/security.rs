//! What lives where: plaintext data keys never reach the database or the log, customer keys
//! are never token objects, and a database row that was tampered with is refused.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use base64::Engine as _;
use sqlx::Row;

async fn dump_database(pool: &sqlx::PgPool) -> String {
    let tables: Vec<String> =
        sqlx::query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<String, _>("tablename"))
            .collect();
    assert!(tables.len() >= 6, "{tables:?}");
    let mut all = String::new();
    for t in tables {
        let rows = sqlx::query(&format!("SELECT t::text AS row FROM {t} t"))
            .fetch_all(pool)
            .await
            .unwrap();
        for r in rows {
            all.push_str(&r.get::<String, _>("row"));
            all.push('\n');
        }
    }
    all.to_lowercase()
}

/// Every row of every table (on SQLite, every byte of the database file and its write-ahead
/// log, as hex and as text), lower-cased.
async fn database_text(s: &Server) -> String {
    if sqlite() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", s.db.url().trim_start_matches("sqlite://"));
            bytes.extend(std::fs::read(path).unwrap_or_default());
        }
        assert!(!bytes.is_empty());
        format!(
            "{}\n{}",
            hex::encode(&bytes),
            String::from_utf8_lossy(&bytes)
        )
        .to_lowercase()
    } else {
        dump_database(&s.db.pool().await).await
    }
}

#[tokio::test]
async fn plaintext_data_keys_and_secrets_appear_nowhere_in_the_database_or_log() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let mut secrets: Vec<Vec<u8>> = Vec::new();
    for _ in 0..5 {
        let dk = c
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
            .unwrap();
        secrets.push(dk.plaintext.unwrap().into_inner());
    }
    let pt = b"my database password is hunter2".to_vec();
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(pt.clone()))
        .send()
        .await
        .unwrap();
    secrets.push(pt);
    let dump = database_text(&s).await;
    assert!(dump.contains(&key), "the dump covers the keys table");
    let log = s.server_log().to_lowercase();
    use base64::Engine;
    for sec in &secrets {
        // bytea columns print as hex; look for any 16-byte window of the secret too.
        for window in sec.windows(16.min(sec.len())) {
            let h = hex::encode(window);
            assert!(!dump.contains(&h), "plaintext found in the database");
            assert!(!log.contains(&h), "plaintext found in the log");
        }
        let b64 = base64::engine::general_purpose::STANDARD
            .encode(sec)
            .to_lowercase();
        assert!(!dump.contains(&b64) && !log.contains(&b64));
    }
    // The administrator's secret access key is not in the database either.
    assert!(!dump.contains(&s.secret.to_lowercase()));
    assert!(!dump.contains(&hex::encode(s.secret.as_bytes())));
    assert!(!log.contains(&s.secret.to_lowercase()));
}

#[tokio::test]
async fn token_object_count_does_not_grow_with_keys() {
    let s = Server::start().await;
    let before = s.token.object_files();
    assert_eq!(
        before, 4,
        "root wrapping key, metadata MAC key, audit signing key pair"
    );
    let c = s.client();
    for _ in 0..25 {
        let key = new_key(&c).await;
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(s.token.object_files(), before);
}

#[tokio::test]
async fn tampered_key_rows_are_refused() {
    let s = Server::start().await;
    let c = s.client();
    let a = new_key(&c).await;
    let b = new_key(&c).await;
    // Swap b's wrapped material for a's: both blobs are genuine, but the MAC binds each to its key.
    s.db.execute(&format!(
        "UPDATE key_materials SET wrapped = (SELECT wrapped FROM key_materials WHERE key_id = {}) WHERE key_id = {}",
        s.db.key(&a),
        s.db.key(&b)
    ))
    .await;
    let r = c
        .encrypt()
        .key_id(&b)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(r), "KeyUnavailableException");
    // The untouched key still works.
    c.encrypt()
        .key_id(&a)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    assert!(s.server_log().contains("failed its integrity check"));
}

/// Tell every node of a change made behind the service's back, as a trigger would: Postgres
/// is told with NOTIFY (its triggers fire for most rows, but a test that bypasses them says
/// so); SQLite's triggers already recorded it.
async fn notify_change(s: &Server, channel: &str, payload: &str) {
    if !sqlite() {
        s.db.execute(&format!("SELECT pg_notify('{channel}', '{payload}')::text"))
            .await;
    }
}

/// The GCM invocations reserved for a key's first material version.
async fn reserved(s: &Server, key: &str) -> i64 {
    s.db.int(&format!(
        "SELECT invocations_reserved FROM key_materials WHERE key_id = {} ORDER BY version LIMIT 1",
        s.db.key(key)
    ))
    .await
}

/// AES-GCM's 2^32 bound per key is enforced through a durable counter, across restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcm_invocations_are_counted_durably() {
    let mut s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;

    assert_eq!(
        reserved(&s, &key).await,
        0,
        "creating a key encrypts nothing"
    );
    let mut blob = None;
    for _ in 0..3 {
        blob = Some(
            c.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
                .unwrap()
                .ciphertext_blob
                .unwrap(),
        );
    }
    assert_eq!(
        reserved(&s, &key).await,
        1024,
        "one small lease covers the first encryptions"
    );

    // Leave room for exactly one more lease, restart (the in-memory lease is gone): it works.
    let limit: i64 = 1 << 32;
    s.db.execute(&format!(
        "UPDATE key_materials SET invocations_reserved = {} WHERE key_id = {}",
        limit - 1024,
        s.db.key(&key)
    ))
    .await;
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(reserved(&s, &key).await, limit);

    // At the bound (after a restart, so no lease is left in memory): the key rotates to new
    // material by itself, and ciphertexts of the old material still decrypt.
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    let fresh = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"y".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(
        &fresh.as_ref()[17..21],
        &2u32.to_be_bytes(),
        "the new blob names material version 2"
    );
    let pt = c
        .decrypt()
        .ciphertext_blob(blob.unwrap())
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_eq!(pt.into_inner(), b"x");
    assert_eq!(
        reserved(&s, &key).await,
        limit,
        "version 1 is never used again"
    );
    let versions =
        s.db.int(&format!(
            "SELECT count(*) FROM key_materials WHERE key_id = {}",
            s.db.key(&key)
        ))
        .await;
    assert_eq!(versions, 2);
    let rotations = c.list_key_rotations().key_id(&key).send().await.unwrap();
    assert_eq!(rotations.rotations().len(), 1);
    assert!(s.server_log().contains("invocation limit"));
}

/// Cached key metadata is dropped when the row changes (Postgres NOTIFY), so a change made by
/// another node is seen without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_reach_the_metadata_cache() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    let second = tokio::task::block_in_place(|| s.second_node());
    s.client_of(&second, &s.access_key_id, &s.secret)
        .disable_key()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match c
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
        {
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the cache never saw the change"
            ),
            Err(e) => {
                assert_eq!(code::<(), _>(Err(e)), "DisabledException");
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let d = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert!(!d.enabled);
}

/// Moving a loaded key to another region (or account) in the database does not carry its
/// cached key material along: the row's MAC binds the material to where it was created.
#[tokio::test]
async fn a_key_moved_in_the_database_is_refused_even_when_cached() {
    let s = Server::start().await;
    let east = s.client();
    let key = new_key(&east).await;
    east.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    s.db.execute(&format!(
        "UPDATE keys SET region = 'eu-west-1' WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    let west = s.client_in(OTHER_REGION);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match west
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
        {
            Ok(_) => panic!("moved key material was used"),
            Err(e) => {
                let c = code::<(), _>(Err(e));
                if c == "KeyUnavailableException" {
                    break;
                }
                assert_eq!(c, "NotFoundException", "until the notification arrives");
                assert!(std::time::Instant::now() < deadline);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An access key whose principal is moved to another account in the database stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_moved_in_the_database_is_refused() {
    let mut s = Server::start().await;
    s.client().list_keys().send().await.unwrap();
    s.db.execute("INSERT INTO accounts (account_id, name) VALUES ('111122223333', 'other')")
        .await;
    s.db.execute("UPDATE principals SET account_id = '111122223333'")
        .await;
    tokio::task::block_in_place(|| s.spawn());
    assert_eq!(
        code(s.client().list_keys().send().await),
        "UnrecognizedClientException"
    );
}

#[tokio::test]
async fn requests_over_the_account_quota_are_throttled() {
    let s = Server::start_with(&[
        ("KMS_QUOTA__CRYPTO_PER_SECOND", "5"),
        ("KMS_QUOTA__MANAGEMENT_PER_SECOND", "20"),
    ])
    .await;
    let c = s.client();
    let key = new_key(&c).await;
    let mut throttled = 0;
    let mut ok = 0;
    for _ in 0..15 {
        match c
            .encrypt()
            .key_id(&key)
            .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
            .send()
            .await
        {
            Ok(_) => ok += 1,
            Err(e) => {
                let (code_, msg) =
                    message::<aws_sdk_kms::operation::encrypt::EncryptOutput, _>(Err(e));
                assert_eq!(code_, "ThrottlingException");
                assert_eq!(
                    msg,
                    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."
                );
                throttled += 1;
            }
        }
    }
    assert!(
        ok >= 5 && throttled >= 5,
        "{ok} allowed, {throttled} throttled"
    );
    // The management share is separate, and the crypto share refills.
    c.describe_key().key_id(&key).send().await.unwrap();
    // A call refused for its operation or its Content-Type counts against the management
    // share too (each is recorded in the trail): a flood of them is throttled.
    // Sent at once, and judged against the time they took (a slow machine refills the share
    // while they are sent): no more than the share's burst and its refill are answered.
    let started = std::time::Instant::now();
    let flood = (0..40).map(|i| {
        let (target, ct) = match i % 2 {
            0 => ("TrentService.FlyToTheMoon", "application/x-amz-json-1.1"),
            _ => ("TrentService.ListKeys", "application/json"),
        };
        s.raw(Some(target), ct, b"{}".to_vec(), true)
    });
    let answered = futures_util::future::join_all(flood).await;
    let took = started.elapsed().as_secs_f64();
    let mut answers = std::collections::BTreeMap::new();
    for r in &answered {
        *answers.entry(r.error_type().to_string()).or_insert(0) += 1;
    }
    let throttled = answers.get("ThrottlingException").copied().unwrap_or(0);
    assert!(
        (40 - throttled) as f64 <= 20.0 + 20.0 * took + 1.0,
        "{answers:?} in {took:.2} s"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    c.encrypt()
        .key_id(&key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_not_queued() {
    use tokio::io::AsyncReadExt;
    let s = Server::start_with(&[("KMS_MAX_CONNECTIONS", "2")]).await;
    let addr = s.endpoint.trim_start_matches("http://").to_string();
    let idle1 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let idle2 = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A third connection is closed at once.
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed promptly, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(s.client().list_keys().send().await.is_err());
    // Slots come back when connections close.
    drop((idle1, idle2));
    let c = s.client();
    let c2 = c.clone();
    eventually("a free connection slot", move || {
        let c = c2.clone();
        async move { c.list_keys().send().await.is_ok() }
    })
    .await;
}

/// The flood: one client opens connections and holds them (idle, or sending headers slowly)
/// until every slot is taken and everyone else is closed on connect. Now one source (an IPv4
/// address, an IPv6 /64) holds at most `max_connections_per_source`: its next ones are closed,
/// other sources are served, and its share comes back as its connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_hold_every_connection() {
    use tokio::io::AsyncReadExt;
    let s = Server::start_with(&[
        ("KMS_MAX_CONNECTIONS", "100"),
        ("KMS_MAX_CONNECTIONS_PER_SOURCE", "2"),
    ])
    .await;
    let addr: std::net::SocketAddr = s.endpoint.trim_start_matches("http://").parse().unwrap();
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(std::net::SocketAddr::new(ip, 0)).unwrap();
            sock.connect(addr).await.unwrap()
        }
    };
    let held = [from("127.0.0.6").await, from("127.0.0.6").await];
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut third = from("127.0.0.6").await;
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("closed promptly, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "the source's third connection is closed");
    // Everyone else is served meanwhile.
    s.client().list_keys().send().await.unwrap();
    drop(held);
    eventually("the source's share comes back", || async {
        let mut c = from("127.0.0.6").await;
        use tokio::io::AsyncWriteExt;
        let host = addr.to_string();
        c.write_all(format!("GET /healthz HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n").as_bytes())
            .await
            .is_ok()
            && matches!(
                tokio::time::timeout(std::time::Duration::from_secs(2), c.read(&mut [0u8; 64])).await,
                Ok(Ok(n)) if n > 0
            )
    })
    .await;
}

/// Whoever can write to Postgres cannot grant themselves a key: a key policy rewritten in the
/// database makes the key unusable (not open), and a grant inserted there allows nothing.
#[tokio::test]
async fn policies_and_grants_written_in_the_database_are_refused() {
    let s = Server::start().await;
    let c = s.client();
    let (mallory_arn, _, mallory) = s.new_user("123456789012", "mallory", None);
    let (bob_arn, _, bob) = s.new_user("123456789012", "bob", None);
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"secret".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(
        code(mallory.decrypt().ciphertext_blob(blob.clone()).send().await),
        "AccessDeniedException"
    );

    // A grant for bob, made through the API, works; a copy of it for mallory, made in the
    // database (same MAC, other grantee), does not.
    c.create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    bob.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    let (grant_id, now) = if sqlite() {
        (
            "lower(hex(randomblob(32)))",
            "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')",
        )
    } else {
        ("md5(random()::text) || md5(random()::text)", "now()")
    };
    s.db.execute(&format!(
        "INSERT INTO grants (grant_id, key_id, name, grantee_principal, retiring_principal, operations, constraints, issuing_account, created_at, mac) \
         SELECT {grant_id}, key_id, NULL, '{mallory_arn}', NULL, operations, constraints, issuing_account, {now}, mac \
         FROM grants WHERE grantee_principal = '{bob_arn}'"
    ))
    .await;
    // (SQLite's triggers announce the change themselves.)
    if !sqlite() {
        s.db.execute(&format!(
            "SELECT pg_notify('kms_grant_changed', '{key}')::text"
        ))
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        code(mallory.decrypt().ciphertext_blob(blob.clone()).send().await),
        "AccessDeniedException"
    );
    assert!(s
        .server_log()
        .contains("grant row failed its integrity check"));

    // A key policy rewritten to trust mallory: the key refuses everyone instead.
    let open = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{mallory_arn}"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    s.db.execute(&format!(
        "UPDATE keys SET policy = '{open}' WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        code(mallory.decrypt().ciphertext_blob(blob.clone()).send().await),
        "KeyUnavailableException"
    );
    assert_eq!(
        code(c.decrypt().ciphertext_blob(blob.clone()).send().await),
        "KeyUnavailableException"
    );
    assert!(s
        .server_log()
        .contains("key policy failed its integrity check"));

    // A key stored before policies had a MAC (none in the row) is refused until an operator
    // reviews and seals it with `kms admin seal`; `kms init` seals nothing it finds. (A
    // deployment from before MACs has no SealCoverage event in its trail: this one's is
    // removed to play one; with it, a missing MAC is a removed MAC and is never sealed.)
    s.db.execute("DELETE FROM audit_events WHERE event_name = 'SealCoverage'")
        .await;
    let old = new_key(&c).await;
    s.db.execute(&format!(
        "UPDATE keys SET policy_mac = NULL WHERE key_id = {}",
        s.db.key(&old)
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        code(c.describe_key().key_id(&old).send().await),
        "KeyUnavailableException"
    );
    let out = s.kms(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("kms admin seal"));
    assert_eq!(
        code(c.describe_key().key_id(&old).send().await),
        "KeyUnavailableException"
    );
    // Shown first, with a digest; sealed only with that digest.
    let out = s.kms(&["admin", "seal"]);
    let (shown, said) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{said}");
    assert!(
        shown.contains(&old) && shown.contains("key policy"),
        "{shown}"
    );
    let digest = said
        .split("--confirm ")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"))
        .trim()
        .to_string();
    let out = s.kms(&["admin", "seal", "--confirm", &"0".repeat(64)]);
    assert!(!out.status.success());
    let out = s.kms(&["admin", "seal", "--confirm", &digest]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c2 = c.clone();
    let o2 = old.clone();
    eventually("the sealed key to work again", move || {
        let (c, k) = (c2.clone(), o2.clone());
        async move { c.describe_key().key_id(&k).send().await.is_ok() }
    })
    .await;
}

/// No secret reaches the log at any level: with every target at `trace`, planted plaintexts,
/// data keys, the PIN and the secret access key appear nowhere in what the server wrote.
/// The attack: a caller sends a custom key store's password, or an external key store proxy's
/// credential, that breaks AWS's length or pattern rules. The validation error would quote the
/// value (as it does other members), and the error message is kept in the audit trail and the
/// log. AWS's model marks these members sensitive: the error names the member, never its value.
#[tokio::test]
async fn a_secret_that_fails_validation_is_quoted_nowhere() {
    let s = Server::start().await;
    let c = s.client();
    // 33 characters: one over KeyStorePassword's 32.
    let password = "Pw-NEVER-ECHOED-7f3a-0123456789ab";
    let (code_, m) = message(
        c.create_custom_key_store()
            .custom_key_store_name("echo-test")
            .cloud_hsm_cluster_id("cluster-234567abcde")
            .trust_anchor_certificate("anchor")
            .key_store_password(password)
            .send()
            .await,
    );
    assert_eq!(code_, "ValidationException");
    assert_eq!(
        m,
        "1 validation error detected: Value at 'keyStorePassword' failed to satisfy constraint: \
         Member must have length less than or equal to 32"
    );
    // An access key id of 19 characters (20 to 30) and a secret of 42 (43 to 64) with a
    // character outside the pattern.
    let id = "NEVERECHOEDIDABCDEF";
    let secret = "never-echoed-secret-0123456789abcdefghij!!";
    let (code_, m) = message(
        c.create_custom_key_store()
            .custom_key_store_name("echo-test-xks")
            .custom_key_store_type(aws_sdk_kms::types::CustomKeyStoreType::ExternalKeyStore)
            .xks_proxy_uri_endpoint("https://xks.example.com")
            .xks_proxy_uri_path("/kms/xks/v1")
            .xks_proxy_connectivity(aws_sdk_kms::types::XksProxyConnectivityType::PublicEndpoint)
            .xks_proxy_authentication_credential(
                aws_sdk_kms::types::XksProxyAuthenticationCredentialType::builder()
                    .access_key_id(id)
                    .raw_secret_access_key(secret)
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    assert_eq!(code_, "ValidationException");
    // Three: the id's length, the secret's length and its pattern.
    assert!(m.starts_with("3 validation errors detected: "), "{m}");
    for member in ["accessKeyId", "rawSecretAccessKey"] {
        assert!(
            m.contains(&format!(
                "Value at 'xksProxyAuthenticationCredential.{member}' failed"
            )),
            "{m}"
        );
    }
    // Half a credential (the SDK builds none such): the model requires both members, and
    // the one given is not quoted either.
    let r = s
        .raw(
            Some("TrentService.CreateCustomKeyStore"),
            "application/x-amz-json-1.1",
            serde_json::json!({
                "CustomKeyStoreName": "echo-test-half",
                "CustomKeyStoreType": "EXTERNAL_KEY_STORE",
                "XksProxyUriEndpoint": "https://xks.example.com",
                "XksProxyUriPath": "/kms/xks/v1",
                "XksProxyConnectivity": "PUBLIC_ENDPOINT",
                "XksProxyAuthenticationCredential": {"RawSecretAccessKey": secret},
            })
            .to_string()
            .into_bytes(),
            true,
        )
        .await;
    assert_eq!(r.error_type(), "ValidationException");
    assert!(
        r.message().starts_with(
            "3 validation errors detected: Value null at \
             'xksProxyAuthenticationCredential.accessKeyId' failed to satisfy constraint: \
             Member must not be null; "
        ),
        "{}",
        r.message()
    );
    assert!(!r.message().contains(secret));
    let dump = database_text(&s).await;
    assert!(
        dump.contains("echo-test") || dump.contains("createcustomkeystore"),
        "the failed calls are in the trail"
    );
    let log = s.server_log();
    for needle in [password, id, secret] {
        assert!(!m.contains(needle), "the error quotes a secret");
        assert!(
            !dump.contains(&needle.to_lowercase()),
            "the trail holds {needle}"
        );
        assert!(!log.contains(needle), "the log holds {needle}");
    }
}

#[tokio::test]
async fn no_secret_in_the_log_even_at_trace_level() {
    let s = Server::start_with(&[("KMS_LOG", "trace"), ("RUST_LOG", "trace")]).await;
    let c = s.client();
    let key = new_key(&c).await;
    let planted = b"PLANTED-AT-TRACE-91c3".to_vec();
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(planted.clone()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.decrypt().ciphertext_blob(blob).send().await.unwrap();
    let dk = c
        .generate_data_key()
        .key_id(&key)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap()
        .into_inner();
    let (_, _, secret, _) = s.new_user_with_secret("123456789012", "tracer", None);
    let log = s.server_log();
    // Nothing in the dependency tree emits TRACE events; DEBUG shows the filter let
    // everything through.
    assert!(log.contains("DEBUG"), "the server logged at full verbosity");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for (what, needle) in [
        ("plaintext", String::from_utf8(planted.clone()).unwrap()),
        ("plaintext (base64)", b64(&planted)),
        ("data key (base64)", b64(&dk)),
        ("data key (hex)", hex::encode(&dk)),
        ("PIN", PIN.to_string()),
        ("admin secret", s.secret.clone()),
        ("user secret", secret),
    ] {
        assert!(!log.contains(&needle), "the trace log holds the {what}");
    }
}

/// Identity policies, principal tags and trust policies live in the database too; one MAC
/// computed in the token covers all of a principal's. Each attack — rewriting a policy,
/// inserting one, deleting a Deny, changing a tag used in a condition, trusting oneself in a
/// role's trust policy — refuses the principal everything (fail closed) rather than granting or
/// keeping access; an administrator's change through `kms admin` seals the principal again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_policies_tags_and_trust_policies_written_in_the_database_are_refused() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let encrypt_only = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
    let (eve_arn, eve_id, eve_secret, eve) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("123456789012", "eve", Some(encrypt_only))
    });
    let encrypt = |c: aws_sdk_kms::Client, key: String| async move {
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
    };
    encrypt(eve.clone(), key.clone()).await.unwrap();
    assert_eq!(
        code(eve.disable_key().key_id(&key).send().await),
        "AccessDeniedException"
    );
    let notify = |arn: String| {
        let s = &s;
        async move {
            notify_change(s, "kms_identity_changed", &arn).await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    };

    // 1. Her policy rewritten to allow everything: she gets nothing, not even Encrypt.
    s.db.execute(&format!("UPDATE identity_policies SET document = replace(document, 'kms:Encrypt', 'kms:*') WHERE principal_arn = '{}'", &eve_arn)).await;
    notify(eve_arn.clone()).await;
    assert_eq!(
        code(eve.disable_key().key_id(&key).send().await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(encrypt(eve.clone(), key.clone()).await),
        "AccessDeniedException"
    );
    assert!(s.server_log().contains("failed their integrity check"));

    // A routine administrator's change does not launder the edit: it is refused, naming
    // the principal, and writes nothing. Undoing the edit (restoring the row) restores her.
    let f = s.path("policy.json");
    std::fs::write(&f, encrypt_only).unwrap();
    for args in [
        vec![
            "put-user-policy",
            "--user-arn",
            &eve_arn,
            "--policy-name",
            "other",
            "--policy-document",
            f.to_str().unwrap(),
        ],
        vec![
            "tag-principal",
            "--principal-arn",
            &eve_arn,
            "--tag",
            "team=blue",
        ],
    ] {
        let out = s.admin(&args, &[]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {said}");
        assert!(
            said.contains(&eve_arn) && said.contains("integrity check"),
            "{said}"
        );
    }
    assert_eq!(
        s.db.int(&format!(
            "SELECT count(*) FROM identity_policies WHERE principal_arn = '{eve_arn}'"
        ))
        .await,
        1
    );
    assert_eq!(
        s.db.int(&format!(
            "SELECT count(*) FROM principal_tags WHERE principal_arn = '{eve_arn}'"
        ))
        .await,
        0
    );
    s.db.execute(&format!("UPDATE identity_policies SET document = replace(document, 'kms:*', 'kms:Encrypt') WHERE principal_arn = '{}'", &eve_arn)).await;
    notify(eve_arn.clone()).await;
    encrypt(eve.clone(), key.clone()).await.unwrap();

    // 2. A second policy inserted for her.
    s.db.execute(&format!("INSERT INTO identity_policies (principal_arn, policy_name, document) SELECT principal_arn, 'extra', replace(document, 'kms:Encrypt', 'kms:*') FROM identity_policies WHERE principal_arn = '{}'", &eve_arn)).await;
    notify(eve_arn.clone()).await;
    assert_eq!(
        code(eve.disable_key().key_id(&key).send().await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(encrypt(eve.clone(), key.clone()).await),
        "AccessDeniedException"
    );
    s.db.execute("DELETE FROM identity_policies WHERE policy_name = 'extra'")
        .await;
    notify(eve_arn.clone()).await;
    encrypt(eve.clone(), key.clone()).await.unwrap();

    // 3. A Deny deleted: frank may not encrypt under keys tagged secret-project=yes, by tag
    //    condition on his own principal tag; deleting the Deny or changing the tag does not help.
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"},
        {"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"contractors"}}}]}"#;
    let (frank_arn, _, frank) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "frank", Some(policy)));
    s.admin_ok(&[
        "tag-principal",
        "--principal-arn",
        &frank_arn,
        "--tag",
        "team=contractors",
    ]);
    notify(frank_arn.clone()).await;
    assert_eq!(
        code(encrypt(frank.clone(), key.clone()).await),
        "AccessDeniedException"
    );
    s.db.execute(&format!(
        "UPDATE principal_tags SET tag_value = 'staff' WHERE principal_arn = '{}'",
        &frank_arn
    ))
    .await;
    notify(frank_arn.clone()).await;
    assert_eq!(
        code(encrypt(frank.clone(), key.clone()).await),
        "AccessDeniedException"
    );
    s.db.execute(&format!(
        "DELETE FROM principal_tags WHERE principal_arn = '{}'",
        &frank_arn
    ))
    .await;
    notify(frank_arn.clone()).await;
    assert_eq!(
        code(encrypt(frank.clone(), key.clone()).await),
        "AccessDeniedException"
    );

    // 4. A role's trust policy rewritten to trust eve: she still cannot assume it.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/nobody"},"Action":"sts:AssumeRole","Resource":"*"}]}"#;
    let role = tokio::task::block_in_place(|| s.create_role("123456789012", "vault", trust));
    s.db.execute(&format!("UPDATE principals SET trust_policy = replace(trust_policy, 'user/nobody', 'user/eve') WHERE arn = '{}'", &role)).await;
    notify(role.clone()).await;
    let e = crate::roles::sts(&s, &eve_id, &eve_secret)
        .assume_role()
        .role_arn(&role)
        .role_session_name("eve-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&e),
        Some("AccessDenied"),
        "{e:?}"
    );
}

/// A key's state is under a token MAC too: a key disabled (or scheduled for deletion) through
/// the API and re-enabled in the database is unusable, not usable; enabling it through the API
/// works as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_states_changed_in_the_database_are_refused() {
    let s = Server::start().await;
    let c = s.client();
    let mut keys = Vec::new();
    for _ in 0..2 {
        let k = new_key(&c).await;
        keys.push(k);
    }
    let blob = c
        .encrypt()
        .key_id(&keys[0])
        .plaintext(Blob::new(b"kept".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.disable_key().key_id(&keys[0]).send().await.unwrap();
    c.schedule_key_deletion()
        .key_id(&keys[1])
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    for k in &keys {
        s.db.execute(&format!(
            "UPDATE keys SET key_state = 'Enabled', deletion_date = NULL WHERE key_id = {}",
            s.db.key(k)
        ))
        .await;
        notify_change(&s, "kms_key_changed", k).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for k in &keys {
        let r = c
            .encrypt()
            .key_id(k)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await;
        assert_eq!(
            code(r),
            "KeyUnavailableException",
            "key {k} re-enabled in the database"
        );
    }
    assert_eq!(
        code(c.decrypt().ciphertext_blob(blob.clone()).send().await),
        "KeyUnavailableException"
    );
    assert!(s
        .server_log()
        .contains("key state failed its integrity check"));
    // Put back as the service left it, the key works through the API again.
    s.db.execute(&format!(
        "UPDATE keys SET key_state = 'Disabled' WHERE key_id = {}",
        s.db.key(&keys[0])
    ))
    .await;
    notify_change(&s, "kms_key_changed", &keys[0]).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.enable_key().key_id(&keys[0]).send().await.unwrap();
    let out = c
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"kept");
    // A word the service never writes (not one of AWS's key states) is refused the same way,
    // read as a row someone else wrote: never a panic, never an internal error.
    for word in ["enabled", "Deleted"] {
        s.db.execute(&format!(
            "UPDATE keys SET key_state = '{word}' WHERE key_id = {}",
            s.db.key(&keys[0])
        ))
        .await;
        notify_change(&s, "kms_key_changed", &keys[0]).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(
            code(c.describe_key().key_id(&keys[0]).send().await),
            "KeyUnavailableException",
            "key state {word:?}"
        );
        assert_eq!(
            code(c.decrypt().ciphertext_blob(blob.clone()).send().await),
            "KeyUnavailableException"
        );
    }
    assert!(s.server_log().contains("a row the service did not write"));
}
