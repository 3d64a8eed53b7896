//! Custom key stores (`AWS_CLOUDHSM`): a second token of the module, registered as a partition
//! under a cluster id, managed through the AWS SDK as on AWS.

use crate::support::*;
use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    ConnectionErrorCodeType, ConnectionStateType, CustomKeyStoreType, KeySpec, KeyState,
    KeyUsageType, OriginType,
};

pub(crate) const CLUSTER: &str = "cluster-abcdefg2345";
const OTHER_CLUSTER: &str = "cluster-hijklmn2345";
/// The account whose stores may use the partitions (`accounts` of `[[partitions]]`).
const OWNER: &str = "accounts = [\"123456789012\"]\n";
const ANCHOR: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A server whose settings register a partition token (another slot of the same module) as
/// `CLUSTER`, and a cluster whose token does not exist as `OTHER_CLUSTER`; the partition's
/// label.
pub(crate) async fn with_partition() -> (Server, String) {
    with_partition_and(&[]).await
}

async fn with_partition_and(env: &[(&str, &str)]) -> (Server, String) {
    with_partitions(env, |label| {
        format!(
            "[[partitions]]\ncluster_id = \"{CLUSTER}\"\ntoken_label = \"{label}\"\n{OWNER}\n\
             [[partitions]]\ncluster_id = \"{OTHER_CLUSTER}\"\ntoken_label = \"no-such-token\"\n{OWNER}"
        )
    })
    .await
}

/// A server with a partition token (another slot of the same module) and the settings
/// `partitions` writes for its label; the label.
async fn with_partitions(
    env: &[(&str, &str)],
    partitions: impl Fn(&str) -> String,
) -> (Server, String) {
    let mut s = Server::start_with(env).await;
    let label = s.token.add_token();
    let conf = s.token.dir.path().join("partitions.toml");
    std::fs::write(&conf, partitions(&label)).unwrap();
    s.env
        .push(("KMS_CONFIG".into(), conf.to_str().unwrap().into()));
    tokio::task::block_in_place(|| s.spawn());
    (s, label)
}

/// `CreateCustomKeyStore` of an `AWS_CLOUDHSM` store.
async fn create(
    c: &aws_sdk_kms::Client,
    name: &str,
    cluster: &str,
    pin: &str,
) -> Result<
    aws_sdk_kms::operation::create_custom_key_store::CreateCustomKeyStoreOutput,
    aws_sdk_kms::error::SdkError<
        aws_sdk_kms::operation::create_custom_key_store::CreateCustomKeyStoreError,
    >,
> {
    c.create_custom_key_store()
        .custom_key_store_name(name)
        .cloud_hsm_cluster_id(cluster)
        .trust_anchor_certificate(ANCHOR)
        .key_store_password(pin)
        .send()
        .await
}

async fn connect(c: &aws_sdk_kms::Client, id: &str) {
    c.connect_custom_key_store()
        .custom_key_store_id(id)
        .send()
        .await
        .unwrap();
}

async fn disconnect(c: &aws_sdk_kms::Client, id: &str) {
    c.disconnect_custom_key_store()
        .custom_key_store_id(id)
        .send()
        .await
        .unwrap();
}

fn failed(code: ConnectionErrorCodeType) -> (ConnectionStateType, Option<ConnectionErrorCodeType>) {
    (ConnectionStateType::Failed, Some(code))
}

/// Whether `check` holds within five seconds (another node follows a change through the
/// change feed).
async fn eventually<F: std::future::Future<Output = bool>>(check: impl Fn() -> F) -> bool {
    for _ in 0..50 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A store `tenant-a` over `CLUSTER`, connected, and a key created in it: (store id, key id).
async fn store_with_key(c: &aws_sdk_kms::Client) -> (String, String) {
    let id = create(c, "tenant-a", CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    connect(c, &id).await;
    let key = c
        .create_key()
        .custom_key_store_id(&id)
        .origin(OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    (id, key)
}

/// A client of a user of another account, allowed every KMS action by its identity policy.
fn other_account(s: &Server) -> aws_sdk_kms::Client {
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    tokio::task::block_in_place(|| s.new_user("111122223333", "tenant", Some(ALL)).2)
}

/// The labels of the objects of the token labelled `label` (after logging in), sorted, as
/// pkcs11-tool lists them (Kryoptic also lists unlabelled objects of its own, in no order).
fn objects(s: &Server, label: &str) -> String {
    let out = pkcs11_tool(
        &s.token.conf(),
        &[
            "--token-label",
            label,
            "--login",
            "--pin",
            PIN,
            "--list-objects",
        ],
    );
    let mut labels: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("label:")
                .map(|v| v.trim().to_string())
        })
        .collect();
    labels.sort();
    labels.join("\n")
}

async fn state(
    c: &aws_sdk_kms::Client,
    id: &str,
) -> (ConnectionStateType, Option<ConnectionErrorCodeType>) {
    let d = c
        .describe_custom_key_stores()
        .custom_key_store_id(id)
        .send()
        .await
        .unwrap();
    let e = &d.custom_key_stores()[0];
    (
        e.connection_state().unwrap().clone(),
        e.connection_error_code().cloned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_is_a_custom_key_store_managed_as_on_aws() {
    let (s, label) = with_partition().await;
    let c = s.client();
    let service_objects = objects(&s, &s.token.label);

    // Created disconnected, with a wrong PIN: nothing is checked until it connects (AWS).
    let id = create(&c, "tenant-a", CLUSTER, "wrong-pin")
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    assert!(id.starts_with("cks-") && id.len() == 21, "{id}");
    let d = c.describe_custom_key_stores().send().await.unwrap();
    let e = &d.custom_key_stores()[0];
    assert_eq!(e.custom_key_store_id(), Some(id.as_str()));
    assert_eq!(e.custom_key_store_name(), Some("tenant-a"));
    assert_eq!(e.cloud_hsm_cluster_id(), Some(CLUSTER));
    assert_eq!(e.trust_anchor_certificate(), Some(ANCHOR));
    assert_eq!(
        e.custom_key_store_type(),
        Some(&CustomKeyStoreType::AwsCloudhsm)
    );
    assert_eq!(
        e.connection_state(),
        Some(&ConnectionStateType::Disconnected)
    );
    assert!(e.creation_date().is_some());
    assert!(!d.truncated());

    // The PIN is nowhere in the database.
    let dump =
        s.db.strings(
            "SELECT custom_key_store_id || name || coalesce(cluster_id, '') FROM custom_key_stores",
        )
        .await
        .join("");
    assert!(!dump.contains("wrong-pin"));
    let sealed =
        s.db.int(&format!(
            "SELECT count(*) FROM custom_key_stores WHERE password_ciphertext IS NOT NULL \
             AND password_key IS NOT NULL AND custom_key_store_id = {}",
            s.db.text(&id)
        ))
        .await;
    assert_eq!(sealed, 1);

    // The same name, the same cluster: refused as AWS refuses them.
    let again = create(&c, "tenant-a", OTHER_CLUSTER, "another-pin").await;
    assert_eq!(code(again), "CustomKeyStoreNameInUseException");
    let taken = create(&c, "tenant-b", CLUSTER, "another-pin").await;
    assert_eq!(code(taken), "CloudHsmClusterInUseException");
    let unknown = create(&c, "tenant-c", "cluster-zzzzzzzzzzz", "another-pin").await;
    assert_eq!(code(unknown), "CloudHsmClusterNotFoundException");
    let (code_, msg) = message(
        c.create_custom_key_store()
            .custom_key_store_name("x")
            .cloud_hsm_cluster_id("not-a-cluster")
            .send()
            .await,
    );
    assert_eq!(code_, "ValidationException");
    assert!(msg.contains("cloudHsmClusterId"), "{msg}");

    // Connecting with the wrong PIN fails as AWS reports it; a failed store is disconnected
    // before anything else (connect again: CustomKeyStoreInvalidStateException).
    connect(&c, &id).await;
    assert_eq!(
        state(&c, &id).await,
        failed(ConnectionErrorCodeType::InvalidCredentials)
    );
    let r = c
        .connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreInvalidStateException");
    let r = c
        .update_custom_key_store()
        .custom_key_store_id(&id)
        .key_store_password(PIN)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreInvalidStateException");
    disconnect(&c, &id).await;
    let r = c
        .disconnect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreInvalidStateException");

    // The PIN corrected with UpdateCustomKeyStore: it connects, and the partition (not the
    // service token) now holds the partition's own root key.
    c.update_custom_key_store()
        .custom_key_store_id(&id)
        .key_store_password(PIN)
        .new_custom_key_store_name("tenant-a-renamed")
        .send()
        .await
        .unwrap();
    connect(&c, &id).await;
    assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
    // Connecting a connected store changes nothing (AWS).
    connect(&c, &id).await;
    assert!(
        objects(&s, &label).contains("kms-root"),
        "{}",
        objects(&s, &label)
    );
    assert_eq!(objects(&s, &s.token.label), service_objects);
    let d = c
        .describe_custom_key_stores()
        .custom_key_store_name("tenant-a-renamed")
        .send()
        .await
        .unwrap();
    assert_eq!(d.custom_key_stores().len(), 1);

    // Connected: neither updated nor deleted.
    let r = c
        .update_custom_key_store()
        .custom_key_store_id(&id)
        .new_custom_key_store_name("x")
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreInvalidStateException");
    let r = c
        .delete_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreInvalidStateException");

    // An unrelated cluster is refused; a cluster whose token is gone fails to connect with
    // NETWORK_ERRORS.
    disconnect(&c, &id).await;
    let r = c
        .update_custom_key_store()
        .custom_key_store_id(&id)
        .cloud_hsm_cluster_id(OTHER_CLUSTER)
        .send()
        .await;
    assert_eq!(code(r), "CloudHsmClusterNotRelatedException");
    let b = create(&c, "tenant-b", OTHER_CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    connect(&c, &b).await;
    assert_eq!(
        state(&c, &b).await,
        failed(ConnectionErrorCodeType::NetworkErrors)
    );

    // Another account sees none of them.
    let other = other_account(&s);
    let listed = other.describe_custom_key_stores().send().await.unwrap();
    assert!(listed.custom_key_stores().is_empty());
    let r = other
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreNotFoundException");
    let r = other
        .delete_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreNotFoundException");

    // Deleted once disconnected; gone afterwards.
    c.delete_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    let r = c
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreNotFoundException");
    let r = c
        .connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreNotFoundException");

    // The trail has each change, and never the PIN.
    let trail =
        s.db.strings("SELECT body FROM audit_events WHERE body LIKE '%CustomKeyStore%'")
            .await
            .join("\n");
    assert!(trail.contains("\"ConnectCustomKeyStore\"") && trail.contains("tenant-a"));
    assert!(
        !trail.contains(PIN) && !trail.contains("wrong-pin"),
        "{trail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_custom_key_store_row_altered_with_sql_is_refused() {
    let (s, _) = with_partition().await;
    let c = s.client();
    let id = create(&c, "tenant-a", CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    let other = other_account(&s);
    s.db.execute("CREATE TABLE cks_backup AS SELECT * FROM custom_key_stores")
        .await;
    let restore = || async {
        s.db.execute("DELETE FROM custom_key_stores").await;
        s.db.execute("INSERT INTO custom_key_stores SELECT * FROM cks_backup")
            .await;
    };
    // Moved to another account with SQL: the other account is refused it.
    s.db.execute("UPDATE custom_key_stores SET account_id = '111122223333'")
        .await;
    let r = other
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "KeyUnavailableException");
    let r = c
        .describe_custom_key_stores()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreNotFoundException");
    restore().await;
    // Each sealed column altered in turn is refused, by every call that reads it.
    for (col, value) in [
        ("custom_key_store_id", s.db.text("cks-0000000000000000a")),
        ("name", s.db.text("forged")),
        ("cluster_id", s.db.text(OTHER_CLUSTER)),
        ("connection_state", s.db.text("CONNECTED")),
        ("password_key", s.db.bytes(&[0u8; 40])),
        ("password_root_version", "7".to_string()),
        ("password_ciphertext", s.db.bytes(&[0u8; 40])),
        ("trust_anchor", s.db.text("forged")),
        ("store_type", s.db.text("EXTERNAL_KEY_STORE")),
        ("created_at", s.db.now().to_string()),
        ("mac", s.db.bytes(&[0u8; 41])),
        ("xks_uri_endpoint", s.db.text("https://proxy.example.com")),
        ("xks_uri_path", s.db.text("/forged/kms/xks/v1")),
        ("xks_access_key_id", s.db.text("FORGEDFORGEDFORGED2345")),
        ("xks_connectivity", s.db.text("PUBLIC_ENDPOINT")),
    ] {
        s.db.execute(&format!("UPDATE custom_key_stores SET {col} = {value}"))
            .await;
        let r = c.describe_custom_key_stores().send().await;
        assert_eq!(code(r), "KeyUnavailableException", "{col}");
        restore().await;
    }
    // Moved to another Region: refused there, gone here.
    s.db.execute(&format!(
        "UPDATE custom_key_stores SET region = {}",
        s.db.text(OTHER_REGION)
    ))
    .await;
    let r = s
        .client_in(OTHER_REGION)
        .describe_custom_key_stores()
        .send()
        .await;
    assert_eq!(code(r), "KeyUnavailableException");
    restore().await;
    // The connection's last error code is not a decision: shown as written.
    s.db.execute("UPDATE custom_key_stores SET connection_error = 'NETWORK_ERRORS'")
        .await;
    assert_eq!(
        state(&c, &id).await.1,
        Some(ConnectionErrorCodeType::NetworkErrors)
    );
    restore().await;
    connect(&c, &id).await;
    assert_eq!(state(&c, &id).await.0, ConnectionStateType::Connected);
}

async fn encrypt(c: &aws_sdk_kms::Client, key: &str) -> Result<Blob, String> {
    c.encrypt()
        .key_id(key)
        .plaintext(Blob::new(b"tenant secret".to_vec()))
        .send()
        .await
        .map(|o| o.ciphertext_blob.unwrap())
        .map_err(|e| e.code().unwrap_or_default().to_string())
}

async fn decrypt(c: &aws_sdk_kms::Client, blob: &Blob) -> Result<Vec<u8>, String> {
    c.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .map(|o| o.plaintext.unwrap().into_inner())
        .map_err(|e| e.code().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_in_a_custom_key_store_live_in_its_partition() {
    let (s, label) = with_partition().await;
    let c = s.client();
    let id = create(&c, "tenant-a", CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    let in_store = || {
        c.create_key()
            .custom_key_store_id(&id)
            .origin(OriginType::AwsCloudhsm)
    };
    // Not connected yet: no key can be created in it.
    assert_eq!(
        code(in_store().send().await),
        "CustomKeyStoreInvalidStateException"
    );
    connect(&c, &id).await;
    let (service_before, partition_before) = (objects(&s, &s.token.label), objects(&s, &label));

    let key = in_store()
        .description("tenant-a's key")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(key.origin(), Some(&OriginType::AwsCloudhsm));
    assert_eq!(key.custom_key_store_id(), Some(id.as_str()));
    assert_eq!(key.cloud_hsm_cluster_id(), Some(CLUSTER));
    assert_eq!(key.key_state(), Some(&KeyState::Enabled));
    // AWS names the current material only of AWS_KMS and EXTERNAL keys.
    assert_eq!(key.current_key_material_id(), None);
    // Generated in the partition and wrapped there: no token object in either token.
    assert_eq!(objects(&s, &s.token.label), service_before);
    assert_eq!(objects(&s, &label), partition_before);

    let k = key.key_id();
    let blob = encrypt(&c, k).await.unwrap();
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");
    let dk = c
        .generate_data_key()
        .key_id(k)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypt(&c, dk.ciphertext_blob().unwrap()).await.unwrap(),
        dk.plaintext().unwrap().as_ref()
    );
    let random = c
        .generate_random()
        .number_of_bytes(24)
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(random.plaintext().unwrap().as_ref().len(), 24);

    // AWS's rules for keys in a custom key store.
    let r = in_store()
        .key_spec(KeySpec::Rsa2048)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    assert_eq!(code(r), "UnsupportedOperationException");
    let r = in_store().multi_region(true).send().await;
    assert_eq!(code(r), "UnsupportedOperationException");
    let r = c.create_key().custom_key_store_id(&id).send().await;
    assert_eq!(code(r), "ValidationException");
    let r = c.create_key().origin(OriginType::AwsCloudhsm).send().await;
    assert_eq!(code(r), "ValidationException");
    let r = c.enable_key_rotation().key_id(k).send().await;
    let (code_, msg) = message(r);
    assert_eq!(code_, "UnsupportedOperationException");
    assert_eq!(
        msg,
        format!(
            "{} origin is AWS_CLOUDHSM which is not valid for this operation.",
            key.arn().unwrap()
        )
    );
    // Nor has it a rotation status (recorded, in the same words).
    let r = c.get_key_rotation_status().key_id(k).send().await;
    assert_eq!(message(r), (code_, msg));
    let other = other_account(&s);
    let r = other
        .create_key()
        .custom_key_store_id(&id)
        .origin(OriginType::AwsCloudhsm)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreNotFoundException");

    // A second node follows the store's connection.
    let second = tokio::task::block_in_place(|| s.second_node());
    let c2 = s.client_of(&second, &s.access_key_id, &s.secret);
    assert_eq!(decrypt(&c2, &blob).await.unwrap(), b"tenant secret");

    // Disconnected: its keys are Unavailable and unusable on every node, management still
    // works, and the store cannot be deleted while they exist.
    disconnect(&c, &id).await;
    let d = describe(&c, k).await;
    assert_eq!(d.key_state(), Some(&KeyState::Unavailable));
    assert_eq!(
        encrypt(&c, k).await.unwrap_err(),
        "KMSInvalidStateException"
    );
    assert_eq!(
        decrypt(&c, &blob).await.unwrap_err(),
        "KMSInvalidStateException"
    );
    let refused = eventually(|| async {
        decrypt(&c2, &blob).await.err().as_deref() == Some("KMSInvalidStateException")
    })
    .await;
    assert!(
        refused,
        "the second node still used the disconnected store's key: {:?}",
        decrypt(&c2, &blob).await
    );
    c.update_key_description()
        .key_id(k)
        .description("still managed")
        .send()
        .await
        .unwrap();
    let r = c
        .generate_random()
        .number_of_bytes(8)
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreInvalidStateException");
    let r = c
        .delete_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    assert_eq!(code(r), "CustomKeyStoreHasCMKsException");

    // The partition's PIN changed by its owner: connecting fails until it is re-entered.
    // (SoftHSM2 reads a token's PIN when the module is initialised: the nodes restart, as a
    // process does; a network HSM checks each login.)
    drop(c2);
    drop(second);
    pkcs11_tool(
        &s.token.conf(),
        &[
            "--token-label",
            &label,
            "--login",
            "--pin",
            PIN,
            "--change-pin",
            "--new-pin",
            "11223344",
        ],
    );
    let mut s = s;
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    connect(&c, &id).await;
    assert_eq!(
        state(&c, &id).await,
        failed(ConnectionErrorCodeType::InvalidCredentials)
    );
    disconnect(&c, &id).await;
    c.update_custom_key_store()
        .custom_key_store_id(&id)
        .key_store_password("11223344")
        .send()
        .await
        .unwrap();
    let second = tokio::task::block_in_place(|| s.second_node());
    let c2 = s.client_of(&second, &s.access_key_id, &s.secret);
    assert_eq!(
        decrypt(&c2, &blob).await.unwrap_err(),
        "KMSInvalidStateException"
    );
    connect(&c, &id).await;
    assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");
    let back = eventually(|| async { decrypt(&c2, &blob).await.is_ok() }).await;
    assert!(
        back,
        "the second node did not follow the store's connection"
    );

    // The key's store is under its attributes seal: moved to another store with SQL, refused.
    s.db.execute(&format!(
        "UPDATE keys SET custom_key_store_id = NULL WHERE custom_key_store_id = {}",
        s.db.text(&id)
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        decrypt(&c, &blob).await.unwrap_err(),
        "KeyUnavailableException"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_root_key_rotates_past_custom_key_stores() {
    let (s, label) = with_partition_and(&[("KMS_SCHEDULER_INTERVAL_MS", "100")]).await;
    let c = s.client();
    let (id, key) = store_with_key(&c).await;
    let blob = encrypt(&c, &key).await.unwrap();
    let partition_objects = objects(&s, &label);

    // The service's root key rotates: the store's PIN key moves to it, and the key's material
    // to its partition's own root key of the same version, re-wrapped in the partition.
    let out = tokio::task::block_in_place(|| s.kms(&["hsm", "rotate-root-key"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pin_root =
        s.db.int("SELECT password_root_version FROM custom_key_stores")
            .await;
    assert_eq!(pin_root, 2);
    let material_root =
        s.db.int(&format!(
            "SELECT root_version FROM key_materials WHERE key_id = {}",
            s.db.key(&key)
        ))
        .await;
    assert_eq!(material_root, 2);
    let now = objects(&s, &label);
    assert!(
        now.contains("kms-root-wrapping-key-v2")
            && !partition_objects.contains("kms-root-wrapping-key-v2"),
        "{now}"
    );
    assert!(!objects(&s, &s.token.label).contains(&key));
    let out = tokio::task::block_in_place(|| s.kms(&["hsm", "destroy-root-key", "--version", "1"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The PIN decrypts under the new root key: the store connects again, its key works.
    disconnect(&c, &id).await;
    let mut s = s;
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    connect(&c, &id).await;
    assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");
}

/// Disconnect and connect while clients encrypt and decrypt with the store's key: every call
/// either works or answers `KMSInvalidStateException` (never an internal error, never a hang),
/// and the service's own keys are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_disconnected_and_connected_under_load_fails_only_its_own_keys() {
    let (s, _) = with_partition().await;
    let c = s.client();
    let (id, in_store) = store_with_key(&c).await;
    let own = new_key(&c).await;
    let load = Load::start(&c, &[&in_store, &in_store, &own]);
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        disconnect(&c, &id).await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        connect(&c, &id).await;
    }
    for (key, ok, errors) in load.finish().await {
        assert!(ok > 0, "{key}: nothing worked");
        if key == own {
            assert!(
                errors.is_empty(),
                "the service's own key failed: {errors:?}"
            );
        } else {
            assert!(
                errors.iter().all(|e| e == "KMSInvalidStateException"),
                "{errors:?}"
            );
        }
    }
    assert_eq!(
        decrypt(&c, &encrypt(&c, &in_store).await.unwrap())
            .await
            .unwrap(),
        b"tenant secret"
    );
}

/// Clients encrypting and decrypting, one per key given, until [`Load::finish`]: no call may
/// take 10 seconds.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<(String, usize, Vec<String>)>>,
}

impl Load {
    fn start(c: &aws_sdk_kms::Client, keys: &[&String]) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = keys
            .iter()
            .map(|key| {
                let (c, stop, key) = (c.clone(), stop.clone(), key.to_string());
                tokio::spawn(async move {
                    let (mut ok, mut errors) = (0, Vec::new());
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let started = std::time::Instant::now();
                        let r = match encrypt(&c, &key).await {
                            Ok(blob) => decrypt(&c, &blob).await.map(|_| ()),
                            Err(e) => Err(e),
                        };
                        assert!(
                            started.elapsed() < std::time::Duration::from_secs(10),
                            "a call hung"
                        );
                        match r {
                            Ok(()) => ok += 1,
                            Err(e) => errors.push(e),
                        }
                    }
                    (key, ok, errors)
                })
            })
            .collect();
        Load { stop, workers }
    }

    /// Each worker's key, its round trips, and the errors it met.
    async fn finish(self) -> Vec<(String, usize, Vec<String>)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut out = Vec::new();
        for w in self.workers {
            out.push(w.await.unwrap());
        }
        out
    }
}

/// An account has at most 10 custom key stores in a Region (AWS's quota):
/// `LimitExceededException` for the eleventh.
#[tokio::test(flavor = "multi_thread")]
async fn an_account_has_at_most_ten_custom_key_stores_in_a_region() {
    let mut s = Server::start().await;
    let conf = s.token.dir.path().join("partitions.toml");
    let mut text = String::new();
    for i in 0..11 {
        text.push_str(&format!(
            "[[partitions]]\ncluster_id = \"cluster-quotaquota{}\"\ntoken_label = \"t{i}\"\n{OWNER}\n",
            ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"][i]
        ));
    }
    std::fs::write(&conf, text).unwrap();
    s.env
        .push(("KMS_CONFIG".into(), conf.to_str().unwrap().into()));
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    for (i, l) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
        .iter()
        .enumerate()
    {
        create(
            &c,
            &format!("store-{i}"),
            &format!("cluster-quotaquota{l}"),
            PIN,
        )
        .await
        .unwrap();
    }
    let r = create(&c, "store-10", "cluster-quotaquotak", PIN).await;
    assert_eq!(code(r), "LimitExceededException");
}

/// The race of two processes each finding no root key in a new partition and each creating
/// one (PKCS#11 has no create-if-absent): two nodes connect a store whose partition holds no
/// root key yet, eight requests at the same moment, in several rounds (the window is one
/// object creation long). The partition always ends with one root key, and the store works.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_connecting_a_new_store_at_once_create_one_partition_root_key() {
    let (s, label) = with_partition().await;
    let c = s.client();
    let second = tokio::task::block_in_place(|| s.second_node());
    let c2 = s.client_of(&second, &s.access_key_id, &s.secret);
    let id = create(&c, "tenant-a", CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    let roots = || {
        objects(&s, &label)
            .lines()
            .filter(|l| *l == "kms-root-wrapping-key-v1")
            .count()
    };
    for round in 0..6 {
        let attempts: Vec<_> = (0..8)
            .map(|i| {
                let c = if i % 2 == 0 { c.clone() } else { c2.clone() };
                let id = id.clone();
                tokio::spawn(async move {
                    let _ = c
                        .connect_custom_key_store()
                        .custom_key_store_id(id)
                        .send()
                        .await;
                })
            })
            .collect();
        for a in attempts {
            a.await.unwrap();
        }
        assert_eq!(
            tokio::task::block_in_place(roots),
            1,
            "round {round}: {}",
            objects(&s, &label)
        );
        assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
        // The partition is made new again: disconnected, its root key removed.
        disconnect(&c, &id).await;
        tokio::task::block_in_place(|| {
            pkcs11_tool(
                &s.token.conf(),
                &[
                    "--token-label",
                    &label,
                    "--login",
                    "--pin",
                    PIN,
                    "--delete-object",
                    "--type",
                    "secrkey",
                    "--label",
                    "kms-root-wrapping-key-v1",
                ],
            )
        });
    }
    connect(&c, &id).await;
    let key = c
        .create_key()
        .custom_key_store_id(&id)
        .origin(OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let blob = encrypt(&c, &key).await.unwrap();
    assert_eq!(decrypt(&c2, &blob).await.unwrap(), b"tenant secret");
}

/// Where the partition token `label` keeps its objects (SoftHSM2: its directory; Kryoptic: the
/// second slot's database).
fn partition_storage(s: &Server, label: &str) -> std::path::PathBuf {
    if kryoptic() {
        return s.token.dir.path().join("token-1.sql");
    }
    std::fs::read_dir(s.token.dir.path().join("tokens"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|d| {
            std::fs::read(d.join("token.object"))
                .is_ok_and(|b| b.windows(label.len()).any(|w| w == label.as_bytes()))
        })
        .expect("the partition token's directory")
}

/// A partition lost under load: its storage taken away and every session on it closed (the
/// fault hook), while clients encrypt and decrypt with a key in it and with one of the
/// service's own. The store's key fails with AWS's exceptions, promptly; the service's own key
/// never fails; once the partition is back and the store connected again, its key works and
/// what it encrypted before still decrypts.
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_lost_under_load_fails_only_its_own_keys() {
    let fault = tempfile::tempdir().unwrap().keep().join("fault");
    // The database's commits may wait longer than the 2 s default here: the own key is to
    // fail for no partition's sake, and a CI machine under the whole suite has stalled
    // Postgres commits past 2 s in this test (a DependencyTimeoutException that is the
    // database's, not the partition's).
    let (s, label) = with_partition_and(&[
        ("KMS_FAULT_INJECTION_FILE", fault.to_str().unwrap()),
        ("KMS_ENABLE_TEST_HOOKS", "true"),
        ("KMS_DATABASE_COMMIT_TIMEOUT_MS", "8000"),
    ])
    .await;
    let c = s.client();
    let (id, in_store) = store_with_key(&c).await;
    let own = new_key(&c).await;
    let before = encrypt(&c, &in_store).await.unwrap();
    let load = Load::start(&c, &[&in_store, &in_store, &own]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let storage = partition_storage(&s, &label);
    let hidden = storage.with_extension("lost");
    std::fs::rename(&storage, &hidden).unwrap();
    std::fs::write(&fault, format!("store {id} close-sessions")).unwrap();
    s.signal("USR1");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    // A key made in the lost partition: an AWS error (or, where the token kept it open, a key).
    let made = c
        .create_key()
        .custom_key_store_id(&id)
        .origin(OriginType::AwsCloudhsm)
        .send()
        .await;
    if let Err(e) = &made {
        let code = e
            .as_service_error()
            .and_then(|e| e.meta().code())
            .map(str::to_string);
        assert!(code.is_some(), "{e:?}");
    }
    std::fs::rename(&hidden, &storage).unwrap();
    for (key, ok, errors) in load.finish().await {
        assert!(ok > 0, "{key}: nothing worked");
        if key == own {
            assert!(
                errors.is_empty(),
                "the service's own key failed: {errors:?}"
            );
        } else {
            assert!(
                errors.iter().all(|e| [
                    "KMSInternalException",
                    "KMSInvalidStateException",
                    "DependencyTimeoutException"
                ]
                .contains(&e.as_str())),
                "{errors:?}"
            );
            eprintln!(
                "the store's key while its partition was lost: {ok} round trips, errors {errors:?}"
            );
        }
    }
    // Back (SoftHSM2 marks a token it failed to read invalid until the module is initialised
    // again: the node restarts, as an operator would after a partition outage), connected again:
    // the store's key works, and what it encrypted before decrypts.
    let mut s = s;
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    let _ = c
        .disconnect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await;
    connect(&c, &id).await;
    assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
    assert_eq!(decrypt(&c, &before).await.unwrap(), b"tenant secret");
    assert_eq!(
        decrypt(&c, &encrypt(&c, &in_store).await.unwrap())
            .await
            .unwrap(),
        b"tenant secret"
    );
}

/// A node that cannot reach a partition another node connected (here: its settings name a
/// token it does not have for the cluster) answers `KMSInvalidStateException` for the store's
/// keys, again and again without hanging, while it serves the service's own keys, the
/// connecting node serves the store's, and the store stays `CONNECTED` (AWS has one state per
/// store).
#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_cannot_reach_a_partition_refuses_only_that_stores_keys() {
    let (mut s, _) = with_partition().await;
    let c = s.client();
    let (id, key) = store_with_key(&c).await;
    let conf = s.token.dir.path().join("elsewhere.toml");
    std::fs::write(
        &conf,
        format!("[[partitions]]\ncluster_id = \"{CLUSTER}\"\ntoken_label = \"not-here\"\n{OWNER}"),
    )
    .unwrap();
    s.env
        .push(("KMS_CONFIG".into(), conf.to_str().unwrap().into()));
    let second = tokio::task::block_in_place(|| s.second_node());
    s.env.pop();
    let c2 = s.client_of(&second, &s.access_key_id, &s.secret);
    let blob = encrypt(&c, &key).await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            decrypt(&c2, &blob).await.unwrap_err(),
            "KMSInvalidStateException"
        );
    }
    let own = c2
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    assert_eq!(
        decrypt(&c2, &encrypt(&c2, &own).await.unwrap())
            .await
            .unwrap(),
        b"tenant secret"
    );
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");
    assert_eq!(
        state(&c2, &id).await,
        (ConnectionStateType::Connected, None)
    );
}

/// A key in a custom key store is governed as any other: an alias names it, a grant lets
/// another user use it (and only as granted), its key policy decides who may, disabling it
/// refuses its use (`DisabledException`), and the trail records its use under its ARN.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_in_a_store_has_aliases_grants_policies_and_a_trail_as_any_other() {
    let (s, _) = with_partition().await;
    let c = s.client();
    let (_, key) = store_with_key(&c).await;
    let arn = describe(&c, &key).await.arn.unwrap();
    c.create_alias()
        .alias_name("alias/tenant-a")
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let blob = encrypt(&c, "alias/tenant-a").await.unwrap();
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");

    // A grant: the grantee may decrypt, and nothing else.
    let (carol_arn, _, carol) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "carol", None));
    assert_eq!(
        decrypt(&carol, &blob).await.unwrap_err(),
        "AccessDeniedException"
    );
    c.create_grant()
        .key_id(&key)
        .grantee_principal(&carol_arn)
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    assert_eq!(decrypt(&carol, &blob).await.unwrap(), b"tenant secret");
    assert_eq!(
        encrypt(&carol, &key).await.unwrap_err(),
        "AccessDeniedException"
    );

    // The key policy: one that names only the account root leaves a user with an identity
    // policy allowing everything able to; one that denies that user refuses it.
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let (dave_arn, _, dave) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "dave", Some(ALL)));
    assert_eq!(decrypt(&dave, &blob).await.unwrap(), b"tenant secret");
    let deny = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":"kms:*","Resource":"*"}},{{"Effect":"Deny","Principal":{{"AWS":"{dave_arn}"}},"Action":"kms:Decrypt","Resource":"*"}}]}}"#
    );
    c.put_key_policy()
        .key_id(&key)
        .policy(deny)
        .send()
        .await
        .unwrap();
    assert_eq!(
        decrypt(&dave, &blob).await.unwrap_err(),
        "AccessDeniedException"
    );

    // Disabled: refused as any key is.
    c.disable_key().key_id(&key).send().await.unwrap();
    assert_eq!(decrypt(&c, &blob).await.unwrap_err(), "DisabledException");
    c.enable_key().key_id(&key).send().await.unwrap();
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");

    // The trail: its uses under its ARN, the grantee's among them.
    let decrypts =
        s.db.strings(&format!(
            "SELECT body FROM audit_events WHERE event_name = 'Decrypt' AND body LIKE '%{arn}%'"
        ))
        .await
        .join("\n");
    assert!(decrypts.contains("carol"), "{decrypts}");
}

/// The metadata MAC key rotates past custom key stores: a store's sealed row is re-MAC'd under
/// the new MAC key like every other sealed row, so destroying the old MAC key leaves the store
/// usable. (Its rows were left out of the re-MAC and of the count `destroy-mac-key` checks:
/// after it, every custom key store was refused.)
#[tokio::test(flavor = "multi_thread")]
async fn the_mac_key_rotates_past_custom_key_stores() {
    let (s, _) = with_partition_and(&[("KMS_SCHEDULER_INTERVAL_MS", "100")]).await;
    let c = s.client();
    let (id, key) = store_with_key(&c).await;
    let blob = encrypt(&c, &key).await.unwrap();
    for args in [
        vec!["hsm", "rotate-mac-key"],
        vec!["hsm", "remac"],
        vec!["hsm", "destroy-mac-key", "--version", "1"],
    ] {
        let out = tokio::task::block_in_place(|| s.kms(&args));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A node started now reads the store's row only as stored (no change re-seals it).
    let mut s = s;
    tokio::task::block_in_place(|| s.spawn());
    let c = s.client();
    assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
    assert_eq!(decrypt(&c, &blob).await.unwrap(), b"tenant secret");
}

/// The SQL writer gives a key of the service's token a custom key store's id: the root key's
/// re-wrap chose the token from that column (which the material's MAC does not cover), created
/// a root key in the store's partition, and failed there on every run. The key's attributes
/// seal (which covers the column) is now checked first: the key is refused, and the partition
/// is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_key_moved_into_a_store_with_sql_is_not_rewrapped_there() {
    let (s, label) = with_partition().await;
    let c = s.client();
    let id = create(&c, "empty", CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    connect(&c, &id).await;
    let key = new_key(&c).await;
    s.db.execute(&format!(
        "UPDATE keys SET custom_key_store_id = '{id}' WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    let before = objects(&s, &label);
    let out = tokio::task::block_in_place(|| s.kms(&["hsm", "rotate-root-key"]));
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !objects(&s, &label).contains("kms-root-wrapping-key-v2"),
        "{said}\n{before}"
    );
    assert!(said.contains("failed its integrity check"), "{said}");
}

/// AWS generates no data key pair under a key in a custom key store:
/// `UnsupportedOperationException`, whatever the key's state otherwise allows.
#[tokio::test(flavor = "multi_thread")]
async fn no_data_key_pair_comes_from_a_key_in_a_custom_key_store() {
    let (s, _) = with_partition().await;
    let c = s.client();
    let (_, key) = store_with_key(&c).await;
    let spec = aws_sdk_kms::types::DataKeyPairSpec::Rsa2048;
    let r = c
        .generate_data_key_pair()
        .key_id(&key)
        .key_pair_spec(spec)
        .send()
        .await;
    assert_eq!(code(r), "UnsupportedOperationException");
}

/// A partition serves the accounts its settings name (`accounts`): another account that names
/// its cluster is answered as for a cluster that does not exist, before and after the owner's
/// store is on it. Before, any account could create a store over any registered partition,
/// claiming it from its tenant (`CloudHsmClusterInUseException` told it was taken) and trying
/// PINs against it through Connect.
#[tokio::test(flavor = "multi_thread")]
async fn another_account_cannot_use_or_find_a_partition_it_was_not_given() {
    let (s, _) = with_partition().await;
    let c = s.client();
    let admin = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    let (_, _, other) =
        tokio::task::block_in_place(|| s.new_user("210987654321", "admin", Some(admin)));
    let absent = "cluster-zzzzzzzzzzz";
    let unregistered = message(create(&other, "mine", absent, PIN).await);
    assert_eq!(unregistered.0, "CloudHsmClusterNotFoundException");
    let as_absent = |m: (String, String)| (m.0, m.1.replace(CLUSTER, absent));
    let taken = message(create(&other, "mine", CLUSTER, PIN).await);
    assert_eq!(as_absent(taken), unregistered);
    let id = create(&c, "owned", CLUSTER, PIN)
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    connect(&c, &id).await;
    let taken = message(create(&other, "mine", CLUSTER, PIN).await);
    assert_eq!(as_absent(taken), unregistered);
    assert!(other
        .describe_custom_key_stores()
        .send()
        .await
        .unwrap()
        .custom_key_stores()
        .is_empty());
}

/// A store disconnected on one node is disconnected on the others even when the database's
/// change notifications are stopped (the SQL writer disables the table's triggers): a node
/// follows its connected stores again every `cache.max_age_secs` (here 2). Before, the other
/// node kept using its logged-in partition until it restarted.
#[tokio::test(flavor = "multi_thread")]
async fn a_disconnection_reaches_the_other_node_even_when_the_notifications_are_stopped() {
    let (s, _) = with_partition_and(&[("KMS_CACHE__MAX_AGE_SECS", "2")]).await;
    let c = s.client();
    let (id, key) = store_with_key(&c).await;
    let second = tokio::task::block_in_place(|| s.second_node());
    let c2 = s.client_of(&second, &s.access_key_id, &s.secret);
    encrypt(&c2, &key).await.unwrap();
    let stop: &[&str] = if sqlite() {
        &[
            "DROP TRIGGER custom_key_stores_insert_change",
            "DROP TRIGGER custom_key_stores_update_change",
            "DROP TRIGGER custom_key_stores_delete_change",
        ]
    } else {
        &["ALTER TABLE custom_key_stores DISABLE TRIGGER USER"]
    };
    for sql in stop {
        s.db.execute(sql).await;
    }
    disconnect(&c, &id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while encrypt(&c2, &key).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the other node still uses the disconnected store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Two clusters of one account over the same token: once a store logged the process in to the
/// token, the token checks no PIN another session offers (`CKR_USER_ALREADY_LOGGED_IN`). A
/// second store with a wrong PIN is refused all the same (`INVALID_CREDENTIALS`), as the token
/// would have refused it. Before, it connected with any PIN.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_store_over_a_logged_in_token_still_needs_its_pin() {
    let twin = "cluster-opqrstu2345";
    let (s, _) = with_partitions(&[], |label| {
        format!(
            "[[partitions]]\ncluster_id = \"{CLUSTER}\"\ntoken_label = \"{label}\"\n{OWNER}\n\
             [[partitions]]\ncluster_id = \"{twin}\"\ntoken_label = \"{label}\"\n{OWNER}"
        )
    })
    .await;
    let c = s.client();
    let store = |name: &'static str, cluster: &'static str, pin: &'static str| {
        let c = &c;
        async move {
            create(c, name, cluster, pin)
                .await
                .unwrap()
                .custom_key_store_id
                .unwrap()
        }
    };
    let first = store("first", CLUSTER, PIN).await;
    connect(&c, &first).await;
    assert_eq!(state(&c, &first).await.0, ConnectionStateType::Connected);
    let wrong = store("wrong", twin, "not-the-pin").await;
    connect(&c, &wrong).await;
    assert_eq!(
        state(&c, &wrong).await,
        failed(ConnectionErrorCodeType::InvalidCredentials)
    );
    assert_eq!(state(&c, &first).await.0, ConnectionStateType::Connected);
    disconnect(&c, &wrong).await;
    let update = c
        .update_custom_key_store()
        .custom_key_store_id(&wrong)
        .key_store_password(PIN)
        .send()
        .await;
    update.unwrap();
    connect(&c, &wrong).await;
    assert_eq!(state(&c, &wrong).await.0, ConnectionStateType::Connected);
}
