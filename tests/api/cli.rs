//! The README's walk-through with the real `aws` CLI: create a key, encrypt, decrypt.
//! scripts/test.sh installs the CLI and sets KMS_TEST_REQUIRE_AWS_CLI=1, so there it cannot
//! be skipped.

use crate::support::*;
use std::process::Command;

fn aws(s: &Server, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("aws")
        .current_dir(dir)
        .env("AWS_ACCESS_KEY_ID", &s.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &s.secret)
        .env("AWS_DEFAULT_REGION", REGION)
        .env("AWS_CONFIG_FILE", dir.join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("none"))
        .env("AWS_RETRY_MODE", "standard")
        .env("AWS_MAX_ATTEMPTS", "1")
        .arg("kms")
        .args(args)
        .args(["--endpoint-url", &s.endpoint])
        .output()
        .expect("run aws")
}

#[tokio::test]
async fn aws_cli_walk_through() {
    if Command::new("aws").arg("--version").output().is_err() {
        assert!(
            std::env::var("KMS_TEST_REQUIRE_AWS_CLI").is_err(),
            "the aws CLI is required but missing"
        );
        eprintln!("aws CLI not installed; run scripts/test.sh to include this test");
        return;
    }
    let s = Server::start().await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        let out = aws(
            &s,
            dir.path(),
            &[
                "create-key",
                "--description",
                "cli",
                "--query",
                "KeyMetadata.KeyId",
                "--output",
                "text",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        std::fs::write(dir.path().join("pt.txt"), "hello from the aws CLI").unwrap();
        let out = aws(
            &s,
            dir.path(),
            &[
                "encrypt",
                "--key-id",
                &key,
                "--plaintext",
                "fileb://pt.txt",
                "--encryption-context",
                "app=cli",
                "--query",
                "CiphertextBlob",
                "--output",
                "text",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        use base64::Engine;
        let ct = base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8(out.stdout).unwrap().trim())
            .unwrap();
        std::fs::write(dir.path().join("ct.bin"), ct).unwrap();
        let out = aws(
            &s,
            dir.path(),
            &[
                "decrypt",
                "--ciphertext-blob",
                "fileb://ct.bin",
                "--encryption-context",
                "app=cli",
                "--query",
                "Plaintext",
                "--output",
                "text",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pt = base64::engine::general_purpose::STANDARD
            .decode(String::from_utf8(out.stdout).unwrap().trim())
            .unwrap();
        assert_eq!(pt, b"hello from the aws CLI");
        // An error reads as AWS's would.
        let out = aws(
            &s,
            dir.path(),
            &["decrypt", "--ciphertext-blob", "fileb://pt.txt"],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("(InvalidCiphertextException) when calling the Decrypt operation"),
            "{err}"
        );
        let out = aws(
            &s,
            dir.path(),
            &["list-keys", "--query", "Keys[0].KeyId", "--output", "text"],
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), key);
    })
    .await
    .unwrap();
}

/// A custom key store through the `aws` CLI: created over a partition, connected, a key made
/// in it used, and AWS's refusal to delete a store that holds keys.
#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_custom_key_store() {
    if Command::new("aws").arg("--version").output().is_err() {
        assert!(
            std::env::var("KMS_TEST_REQUIRE_AWS_CLI").is_err(),
            "the aws CLI is required but missing"
        );
        return;
    }
    use crate::custom_key_stores::{with_partition, CLUSTER};
    let (s, _) = with_partition().await;
    tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let ok = |args: &[&str]| {
            let out = aws(&s, dir.path(), args);
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let id = ok(&[
            "create-custom-key-store",
            "--custom-key-store-name",
            "cli-store",
            "--cloud-hsm-cluster-id",
            CLUSTER,
            "--trust-anchor-certificate",
            "file://ca.pem",
            "--key-store-password",
            PIN,
            "--query",
            "CustomKeyStoreId",
            "--output",
            "text",
        ]);
        assert!(id.starts_with("cks-"), "{id}");
        ok(&["connect-custom-key-store", "--custom-key-store-id", &id]);
        let state = ok(&[
            "describe-custom-key-stores",
            "--custom-key-store-name",
            "cli-store",
            "--query",
            "CustomKeyStores[0].ConnectionState",
            "--output",
            "text",
        ]);
        assert_eq!(state, "CONNECTED");
        let key = ok(&[
            "create-key",
            "--custom-key-store-id",
            &id,
            "--origin",
            "AWS_CLOUDHSM",
            "--query",
            "KeyMetadata.KeyId",
            "--output",
            "text",
        ]);
        std::fs::write(dir.path().join("pt.txt"), "in the partition").unwrap();
        let ct = ok(&[
            "encrypt",
            "--key-id",
            &key,
            "--plaintext",
            "fileb://pt.txt",
            "--query",
            "CiphertextBlob",
            "--output",
            "text",
        ]);
        use base64::Engine;
        let ct = base64::engine::general_purpose::STANDARD
            .decode(ct)
            .unwrap();
        std::fs::write(dir.path().join("ct.bin"), ct).unwrap();
        let pt = ok(&[
            "decrypt",
            "--ciphertext-blob",
            "fileb://ct.bin",
            "--query",
            "Plaintext",
            "--output",
            "text",
        ]);
        let pt = base64::engine::general_purpose::STANDARD
            .decode(pt)
            .unwrap();
        assert_eq!(pt, b"in the partition");
        ok(&["disconnect-custom-key-store", "--custom-key-store-id", &id]);
        let out = aws(
            &s,
            dir.path(),
            &["delete-custom-key-store", "--custom-key-store-id", &id],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                "(CustomKeyStoreHasCMKsException) when calling the DeleteCustomKeyStore operation"
            ),
            "{err}"
        );
    })
    .await
    .unwrap();
}
