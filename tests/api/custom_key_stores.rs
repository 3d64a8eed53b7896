//! Custom key stores (`AWS_CLOUDHSM`): a second token of the module, registered as a partition
//! under a cluster id, managed through the AWS SDK as on AWS.

use crate::support::*;
use aws_sdk_kms::types::{ConnectionErrorCodeType, ConnectionStateType, CustomKeyStoreType};

const CLUSTER: &str = "cluster-abcdefg2345";
const OTHER_CLUSTER: &str = "cluster-hijklmn2345";
const ANCHOR: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

/// A server whose settings register a partition token (another slot of the same module) as
/// `CLUSTER`, and a cluster whose token does not exist as `OTHER_CLUSTER`; the partition's
/// label.
async fn with_partition() -> (Server, String) {
    let mut s = Server::start().await;
    let label = s.token.add_token();
    let conf = s.token.dir.path().join("partitions.toml");
    std::fs::write(
        &conf,
        format!(
            "[[partitions]]\ncluster_id = \"{CLUSTER}\"\ntoken_label = \"{label}\"\n\n\
             [[partitions]]\ncluster_id = \"{OTHER_CLUSTER}\"\ntoken_label = \"no-such-token\"\n"
        ),
    )
    .unwrap();
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

/// A client of a user of another account, allowed every KMS action by its identity policy.
fn other_account(s: &Server) -> aws_sdk_kms::Client {
    const ALL: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
    tokio::task::block_in_place(|| s.new_user("111122223333", "tenant", Some(ALL)).2)
}

/// The objects of the token labelled `label` (after logging in), as pkcs11-tool lists them.
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
    String::from_utf8_lossy(&out.stdout).into_owned()
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
    c.connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        state(&c, &id).await,
        (
            ConnectionStateType::Failed,
            Some(ConnectionErrorCodeType::InvalidCredentials)
        )
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
    c.disconnect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
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
    c.connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(state(&c, &id).await, (ConnectionStateType::Connected, None));
    // Connecting a connected store changes nothing (AWS).
    c.connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
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
    c.disconnect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
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
    c.connect_custom_key_store()
        .custom_key_store_id(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(
        state(&c, &b).await,
        (
            ConnectionStateType::Failed,
            Some(ConnectionErrorCodeType::NetworkErrors)
        )
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
    c.connect_custom_key_store()
        .custom_key_store_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(state(&c, &id).await.0, ConnectionStateType::Connected);
}
