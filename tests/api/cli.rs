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
