//! Symmetric keys and envelope encryption, success and every user-caused error.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeySpec, EncryptionAlgorithmSpec, KeySpec, KeyState, KeyUsageType, Tag,
};

async fn new_key(c: &aws_sdk_kms::Client) -> String {
    c.create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

#[tokio::test]
async fn create_describe_and_list_keys() {
    let s = Server::start().await;
    let c = s.client();
    let created = c
        .create_key()
        .description("payments")
        .tags(
            Tag::builder()
                .tag_key("team")
                .tag_value("pay")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(created.aws_account_id.as_deref(), Some("123456789012"));
    assert_eq!(created.description.as_deref(), Some("payments"));
    assert_eq!(created.key_state, Some(KeyState::Enabled));
    assert_eq!(created.key_usage, Some(KeyUsageType::EncryptDecrypt));
    assert_eq!(created.key_spec, Some(KeySpec::SymmetricDefault));
    assert_eq!(
        created.encryption_algorithms(),
        &[EncryptionAlgorithmSpec::SymmetricDefault]
    );
    assert_eq!(created.multi_region, Some(false));
    assert!(created.enabled);
    let arn = created.arn.clone().unwrap();
    assert_eq!(
        arn,
        format!("arn:aws:kms:us-east-1:123456789012:key/{}", created.key_id)
    );
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - created.creation_date.unwrap().as_secs_f64();
    assert!((-5.0..60.0).contains(&age), "creation date is now");

    for id in [created.key_id.clone(), arn.clone()] {
        let d = c
            .describe_key()
            .key_id(id)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(d.key_id, created.key_id);
        assert_eq!(d.arn.as_deref(), Some(arn.as_str()));
        assert_eq!(d.key_manager, created.key_manager);
        assert_eq!(d.origin, created.origin);
    }

    let mut ids = vec![created.key_id.clone()];
    for _ in 0..4 {
        ids.push(new_key(&c).await);
    }
    ids.sort();
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c
            .list_keys()
            .limit(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert!(page.keys().len() <= 2);
        for k in page.keys() {
            assert_eq!(
                k.key_arn.as_deref().unwrap(),
                format!(
                    "arn:aws:kms:us-east-1:123456789012:key/{}",
                    k.key_id.as_deref().unwrap()
                )
            );
            seen.push(k.key_id.clone().unwrap());
        }
        if !page.truncated {
            assert!(page.next_marker.is_none());
            break;
        }
        marker = page.next_marker;
    }
    seen.sort();
    assert_eq!(seen, ids);
    assert_eq!(c.list_keys().send().await.unwrap().keys().len(), 5);

    assert_eq!(
        code(c.list_keys().marker("not-a-marker").send().await),
        "InvalidMarkerException"
    );
    assert_eq!(
        code(c.list_keys().limit(0).send().await),
        "ValidationException"
    );
    assert_eq!(
        code(c.list_keys().limit(1001).send().await),
        "ValidationException"
    );
}

#[tokio::test]
async fn create_key_refuses_what_it_cannot_do() {
    let s = Server::start().await;
    let c = s.client();
    let (code_, msg) = message(
        c.create_key()
            .key_usage(KeyUsageType::SignVerify)
            .send()
            .await,
    );
    assert_eq!(code_, "ValidationException", "{msg}");
    assert_eq!(
        code(
            c.create_key()
                .key_spec(KeySpec::Sm2)
                .key_usage(KeyUsageType::SignVerify)
                .send()
                .await
        ),
        "UnsupportedOperationException"
    );
    assert_eq!(
        code(c.create_key().description("x".repeat(8193)).send().await),
        "ValidationException"
    );
    let dup = Tag::builder().tag_key("a").tag_value("1").build().unwrap();
    assert_eq!(
        code(c.create_key().tags(dup.clone()).tags(dup).send().await),
        "TagException"
    );
    assert_eq!(
        code(c.create_key().policy("not json").send().await),
        "MalformedPolicyDocumentException"
    );
    // Nothing was half-created.
    assert_eq!(c.list_keys().send().await.unwrap().keys().len(), 0);
}

#[tokio::test]
async fn encrypt_decrypt_round_trip_with_context() {
    let s = Server::start().await;
    let c = s.client();
    let key = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn.unwrap();
    let pt = b"attack at dawn".to_vec();
    let enc = c
        .encrypt()
        .key_id(&key.key_id)
        .plaintext(Blob::new(pt.clone()))
        .encryption_context("purpose", "test")
        .encryption_context("tenant", "42")
        .send()
        .await
        .unwrap();
    assert_eq!(enc.key_id.as_deref(), Some(arn.as_str()));
    assert_eq!(
        enc.encryption_algorithm,
        Some(EncryptionAlgorithmSpec::SymmetricDefault)
    );
    let blob = enc.ciphertext_blob.unwrap().into_inner();
    assert_eq!(blob.len(), pt.len() + 49, "documented overhead");
    assert_eq!(blob[0], 1, "format v1");

    // Without KeyId, with the key id, with the ARN.
    for key_id in [None, Some(key.key_id.clone()), Some(arn.clone())] {
        let dec = c
            .decrypt()
            .ciphertext_blob(Blob::new(blob.clone()))
            .encryption_context("tenant", "42")
            .encryption_context("purpose", "test")
            .set_key_id(key_id)
            .send()
            .await
            .unwrap();
        assert_eq!(dec.plaintext.unwrap().into_inner(), pt);
        assert_eq!(dec.key_id.as_deref(), Some(arn.as_str()));
    }

    // Two encryptions of the same plaintext differ (random IVs).
    let enc2 = c
        .encrypt()
        .key_id(&key.key_id)
        .plaintext(Blob::new(pt.clone()))
        .send()
        .await
        .unwrap();
    assert_ne!(enc2.ciphertext_blob.unwrap().into_inner(), blob);

    // Wrong KeyId.
    let other = new_key(&c).await;
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(Blob::new(blob.clone()))
                .key_id(&other)
                .send()
                .await
        ),
        "IncorrectKeyException"
    );
    // Unknown key.
    let unknown = uuid::Uuid::new_v4().to_string();
    let (code_, msg) = message(
        c.encrypt()
            .key_id(&unknown)
            .plaintext(Blob::new(pt.clone()))
            .send()
            .await,
    );
    assert_eq!(code_, "NotFoundException");
    assert!(msg.contains(&unknown), "{msg}");
    assert_eq!(
        code(
            c.encrypt()
                .key_id("alias/nope")
                .plaintext(Blob::new(pt.clone()))
                .send()
                .await
        ),
        "NotFoundException"
    );
    assert_eq!(
        code(
            c.encrypt()
                .key_id("not-a-key")
                .plaintext(Blob::new(pt.clone()))
                .send()
                .await
        ),
        "NotFoundException"
    );
    // Asymmetric algorithm on a symmetric key.
    assert_eq!(
        code(
            c.encrypt()
                .key_id(&key.key_id)
                .plaintext(Blob::new(pt.clone()))
                .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha256)
                .send()
                .await
        ),
        "InvalidKeyUsageException"
    );
    // DryRun.
    assert_eq!(
        code(
            c.encrypt()
                .key_id(&key.key_id)
                .plaintext(Blob::new(pt.clone()))
                .dry_run(true)
                .send()
                .await
        ),
        "DryRunOperationException"
    );
    // A permission-only dry run without a ciphertext (DryRunModifiers IGNORE_CIPHERTEXT): the
    // key comes from KeyId / SourceKeyId, and a disabled key still fails as the call would.
    use aws_sdk_kms::types::DryRunModifierType::IgnoreCiphertext;
    assert_eq!(
        code(
            c.decrypt()
                .key_id(&key.key_id)
                .dry_run(true)
                .dry_run_modifiers(IgnoreCiphertext)
                .send()
                .await
        ),
        "DryRunOperationException"
    );
    assert_eq!(
        code(
            c.decrypt()
                .dry_run(true)
                .dry_run_modifiers(IgnoreCiphertext)
                .send()
                .await
        ),
        "ValidationException",
        "without a ciphertext the key must be named"
    );
    assert_eq!(
        code(c.decrypt().key_id(&key.key_id).send().await),
        "ValidationException",
        "without DryRun the ciphertext is required"
    );
    assert_eq!(
        code(
            c.re_encrypt()
                .source_key_id(&key.key_id)
                .destination_key_id(&key.key_id)
                .dry_run(true)
                .dry_run_modifiers(IgnoreCiphertext)
                .send()
                .await
        ),
        "DryRunOperationException"
    );
    c.disable_key().key_id(&key.key_id).send().await.unwrap();
    assert_eq!(
        code(
            c.decrypt()
                .key_id(&key.key_id)
                .dry_run(true)
                .dry_run_modifiers(IgnoreCiphertext)
                .send()
                .await
        ),
        "DisabledException"
    );
}

#[tokio::test]
async fn any_change_to_the_context_is_rejected() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .encryption_context("a", "1")
        .encryption_context("b", "2")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let variants: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("a", "1")],
        vec![("a", "1"), ("b", "3")],
        vec![("a", "1"), ("B", "2")],
        vec![("a", "1"), ("b", "2"), ("c", "3")],
        vec![("a", "12"), ("b", "")],
        vec![("a1", ""), ("b", "2")],
    ];
    for v in variants {
        let mut req = c.decrypt().ciphertext_blob(blob.clone());
        for (k, val) in &v {
            req = req.encryption_context(*k, *val);
        }
        assert_eq!(
            code(req.send().await),
            "InvalidCiphertextException",
            "context {v:?}"
        );
    }
    // And a context on a blob encrypted without one.
    let plain = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(plain)
                .encryption_context("a", "1")
                .send()
                .await
        ),
        "InvalidCiphertextException"
    );
}

#[tokio::test]
async fn every_single_byte_change_to_a_blob_is_rejected() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"0123456789abcdef".to_vec()))
        .encryption_context("k", "v")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    let mut variants = Vec::new();
    for i in 0..blob.len() {
        for flip in [0x01u8, 0x80] {
            let mut b = blob.clone();
            b[i] ^= flip;
            variants.push((format!("byte {i} ^ {flip:#x}"), b));
        }
    }
    variants.push(("truncated by one".into(), blob[..blob.len() - 1].to_vec()));
    variants.push(("extended by one".into(), [blob.clone(), vec![0]].concat()));
    variants.push(("header only".into(), blob[..33].to_vec()));
    let c = std::sync::Arc::new(c);
    let mut tasks = Vec::new();
    for (what, b) in variants {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let r = c
                .decrypt()
                .ciphertext_blob(Blob::new(b))
                .encryption_context("k", "v")
                .send()
                .await;
            (what, code(r))
        }));
    }
    for t in tasks {
        let (what, code) = t.await.unwrap();
        // A changed key id (bytes 1 to 16) names a key that does not exist: refused as AWS
        // refuses a ciphertext whose key is not in the Region. Any other change fails the
        // ciphertext's checks.
        let key_id_byte = (1..17).any(|i| what.starts_with(&format!("byte {i} ")));
        let expected = if key_id_byte {
            "AccessDeniedException"
        } else {
            "InvalidCiphertextException"
        };
        assert_eq!(code, expected, "{what}");
    }
    // The untouched blob still decrypts.
    let ok = c
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .encryption_context("k", "v")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.plaintext.unwrap().into_inner(), b"0123456789abcdef");
}

#[tokio::test]
async fn plaintext_and_blob_limits() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let max = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(vec![7u8; 4096]))
        .send()
        .await
        .unwrap();
    let blob = max.ciphertext_blob.unwrap().into_inner();
    assert!(blob.len() < 6144);
    let dec = c
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext.unwrap().into_inner(), vec![7u8; 4096]);
    let (code_, msg) = message(
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(vec![7u8; 4097]))
            .send()
            .await,
    );
    assert_eq!(code_, "ValidationException");
    assert!(msg.contains("'plaintext'") && msg.contains("4096"), "{msg}");
    assert!(!msg.contains("BwcH"), "the plaintext is not echoed: {msg}");
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(Blob::new(vec![1u8; 6145]))
                .send()
                .await
        ),
        "ValidationException"
    );
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(Blob::new(vec![1u8; 10]))
                .send()
                .await
        ),
        "InvalidCiphertextException"
    );
    let (code_, msg) = message(c.encrypt().plaintext(Blob::new(vec![1])).send().await);
    assert_eq!(code_, "ValidationException");
    assert!(msg.contains("Value null at 'keyId'"), "{msg}");
}

#[tokio::test]
async fn generate_data_keys() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    for (spec, len) in [(DataKeySpec::Aes256, 32), (DataKeySpec::Aes128, 16)] {
        let dk = c
            .generate_data_key()
            .key_id(&key)
            .key_spec(spec)
            .encryption_context("f", "1")
            .send()
            .await
            .unwrap();
        let pt = dk.plaintext.unwrap().into_inner();
        assert_eq!(pt.len(), len);
        let dec = c
            .decrypt()
            .ciphertext_blob(dk.ciphertext_blob.unwrap())
            .encryption_context("f", "1")
            .send()
            .await
            .unwrap();
        assert_eq!(dec.plaintext.unwrap().into_inner(), pt);
    }
    for n in [1, 1024] {
        let dk = c
            .generate_data_key()
            .key_id(&key)
            .number_of_bytes(n)
            .send()
            .await
            .unwrap();
        assert_eq!(dk.plaintext.unwrap().into_inner().len(), n as usize);
    }
    for n in [0, 1025] {
        let (code_, msg) = message(
            c.generate_data_key()
                .key_id(&key)
                .number_of_bytes(n)
                .send()
                .await,
        );
        assert_eq!(code_, "ValidationException");
        assert!(msg.contains("numberOfBytes"), "{msg}");
        assert_eq!(
            code(
                c.generate_data_key_without_plaintext()
                    .key_id(&key)
                    .number_of_bytes(n)
                    .send()
                    .await
            ),
            "ValidationException"
        );
    }
    assert_eq!(
        code(c.generate_data_key().key_id(&key).send().await),
        "ValidationException"
    );
    assert_eq!(
        code(
            c.generate_data_key()
                .key_id(&key)
                .number_of_bytes(32)
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await
        ),
        "ValidationException"
    );
    let wp = c
        .generate_data_key_without_plaintext()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert!(wp.key_id.unwrap().ends_with(&key));
    let dec = c
        .decrypt()
        .ciphertext_blob(wp.ciphertext_blob.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext.unwrap().into_inner().len(), 32);
    assert_eq!(
        code(
            c.generate_data_key()
                .key_id(uuid::Uuid::new_v4().to_string())
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await
        ),
        "NotFoundException"
    );
    // Two data keys differ.
    let a = c
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    let b = c
        .generate_data_key()
        .key_id(&key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_ne!(a, b);
}

#[tokio::test]
async fn generate_random_bounds() {
    let s = Server::start().await;
    let c = s.client();
    for n in [1, 32, 1024] {
        let r = c.generate_random().number_of_bytes(n).send().await.unwrap();
        assert_eq!(r.plaintext.unwrap().into_inner().len(), n as usize);
    }
    for n in [0, 1025] {
        assert_eq!(
            code(c.generate_random().number_of_bytes(n).send().await),
            "ValidationException"
        );
    }
}

#[tokio::test]
async fn re_encrypt_between_keys_and_contexts() {
    let s = Server::start().await;
    let c = s.client();
    let a = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let b = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let blob = c
        .encrypt()
        .key_id(&a.key_id)
        .plaintext(Blob::new(b"move me".to_vec()))
        .encryption_context("from", "a")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let re = c
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .source_encryption_context("from", "a")
        .destination_key_id(&b.key_id)
        .destination_encryption_context("to", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(re.source_key_id, a.arn);
    assert_eq!(re.key_id, b.arn);
    assert_eq!(
        re.source_encryption_algorithm,
        Some(EncryptionAlgorithmSpec::SymmetricDefault)
    );
    let nb = re.ciphertext_blob.unwrap();
    let dec = c
        .decrypt()
        .ciphertext_blob(nb.clone())
        .encryption_context("to", "b")
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext.unwrap().into_inner(), b"move me");
    assert_eq!(dec.key_id, b.arn);
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(nb)
                .encryption_context("from", "a")
                .send()
                .await
        ),
        "InvalidCiphertextException"
    );
    // Wrong source context, wrong source key, unknown destination, missing destination.
    assert_eq!(
        code(
            c.re_encrypt()
                .ciphertext_blob(blob.clone())
                .destination_key_id(&b.key_id)
                .send()
                .await
        ),
        "InvalidCiphertextException"
    );
    assert_eq!(
        code(
            c.re_encrypt()
                .ciphertext_blob(blob.clone())
                .source_encryption_context("from", "a")
                .source_key_id(&b.key_id)
                .destination_key_id(&b.key_id)
                .send()
                .await
        ),
        "IncorrectKeyException"
    );
    assert_eq!(
        code(
            c.re_encrypt()
                .ciphertext_blob(blob.clone())
                .source_encryption_context("from", "a")
                .destination_key_id(uuid::Uuid::new_v4().to_string())
                .send()
                .await
        ),
        "NotFoundException"
    );
    assert_eq!(
        code(c.re_encrypt().ciphertext_blob(blob).send().await),
        "ValidationException"
    );
}

#[tokio::test]
async fn a_key_belongs_to_one_region() {
    let s = Server::start().await;
    let east = s.client();
    let west = s.client_in(OTHER_REGION);
    let key = east
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let blob = east
        .encrypt()
        .key_id(&key.key_id)
        .plaintext(Blob::new(b"r".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(
        code(west.describe_key().key_id(&key.key_id).send().await),
        "NotFoundException"
    );
    assert_eq!(
        code(
            west.describe_key()
                .key_id(key.arn.clone().unwrap())
                .send()
                .await
        ),
        "NotFoundException"
    );
    assert!(west.list_keys().send().await.unwrap().keys().is_empty());
    // AWS's answer for a ciphertext of another Region's key (recorded, 2024).
    let (c, m) = message(west.decrypt().ciphertext_blob(blob).send().await);
    assert_eq!(c, "AccessDeniedException");
    assert!(
        m.ends_with(" is not authorized to perform: kms:Decrypt on the resource associated with this ciphertext because the resource does not exist in this Region, no resource-based policies allow access, or a resource-based policy explicitly denies access"),
        "{m}"
    );
    let wkey = west
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert!(wkey.arn.unwrap().starts_with("arn:aws:kms:eu-west-1:"));
    assert_eq!(east.list_keys().send().await.unwrap().keys().len(), 1);
}
