//! Bring your own key: material wrapped outside the service — with aws-lc-rs, and with the
//! `openssl` command line as the README shows a user — is unwrapped inside the token and is
//! the same material: ciphertexts open outside with it, MACs equal those computed outside, and
//! a ciphertext made before `DeleteImportedKeyMaterial` decrypts after the same material is
//! imported again.

use crate::support::*;
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{
    AlgorithmSpec, ExpirationModelType, KeySpec, KeyState, KeyUsageType, MacAlgorithmSpec,
    OriginType, WrappingKeySpec,
};
use std::process::Command;

pub(crate) fn oaep_sha1(public_der: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1};
    let k =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap()).unwrap();
    let mut out = vec![0u8; k.ciphertext_size()];
    k.encrypt(&OAEP_SHA1_MGF1SHA1, plaintext, &mut out, None)
        .unwrap()
        .to_vec()
}

pub(crate) async fn external_key(
    c: &aws_sdk_kms::Client,
    spec: KeySpec,
    usage: KeyUsageType,
) -> String {
    let m = c
        .create_key()
        .origin(OriginType::External)
        .key_spec(spec)
        .key_usage(usage)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.key_state, Some(KeyState::PendingImport));
    assert_eq!(m.origin, Some(OriginType::External));
    m.key_id
}

/// (import token, public key DER).
pub(crate) async fn parameters(
    c: &aws_sdk_kms::Client,
    key: &str,
    alg: AlgorithmSpec,
    spec: WrappingKeySpec,
) -> (Blob, Vec<u8>) {
    let p = c
        .get_parameters_for_import()
        .key_id(key)
        .wrapping_algorithm(alg)
        .wrapping_key_spec(spec)
        .send()
        .await
        .unwrap();
    assert!(p.parameters_valid_to.is_some());
    (p.import_token.unwrap(), p.public_key.unwrap().into_inner())
}

pub(crate) async fn import(
    c: &aws_sdk_kms::Client,
    key: &str,
    token: Blob,
    wrapped: Vec<u8>,
) -> Result<(), String> {
    c.import_key_material()
        .key_id(key)
        .import_token(token)
        .encrypted_key_material(Blob::new(wrapped))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| code::<(), _>(Err(e)))
}

/// What ImportKeyMaterial answers through the SDK.
type Imported = Result<
    aws_sdk_kms::operation::import_key_material::ImportKeyMaterialOutput,
    aws_sdk_kms::error::SdkError<
        aws_sdk_kms::operation::import_key_material::ImportKeyMaterialError,
        aws_sdk_kms::config::http::HttpResponse,
    >,
>;

/// Fresh import parameters (RSAES_OAEP_SHA_1, RSA_2048), then `material` wrapped under them
/// and imported to expire at `valid_to` (Unix seconds) or never, with `import_type` and
/// `key_material_id`.
async fn import_wrapped(
    c: &aws_sdk_kms::Client,
    key: &str,
    material: &[u8],
    valid_to: Option<i64>,
    import_type: Option<aws_sdk_kms::types::ImportType>,
    key_material_id: Option<String>,
) -> Imported {
    let (token, public) = parameters(
        c,
        key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    let model = match valid_to {
        Some(_) => ExpirationModelType::KeyMaterialExpires,
        None => ExpirationModelType::KeyMaterialDoesNotExpire,
    };
    c.import_key_material()
        .key_id(key)
        .import_token(token)
        .encrypted_key_material(Blob::new(oaep_sha1(&public, material)))
        .expiration_model(model)
        .set_valid_to(valid_to.map(DateTime::from_secs))
        .set_import_type(import_type)
        .set_key_material_id(key_material_id)
        .send()
        .await
}

/// [`import_wrapped`], not expiring.
async fn import_oaep(
    c: &aws_sdk_kms::Client,
    key: &str,
    material: &[u8],
    import_type: Option<aws_sdk_kms::types::ImportType>,
    key_material_id: Option<String>,
) -> Imported {
    import_wrapped(c, key, material, None, import_type, key_material_id).await
}

/// [`import_wrapped`] to expire at `valid_to` (Unix seconds).
async fn import_expiring(c: &aws_sdk_kms::Client, key: &str, material: &[u8], valid_to: i64) {
    try_import_expiring(c, key, material, valid_to)
        .await
        .unwrap();
}

/// [`import_expiring`], its answer.
async fn try_import_expiring(
    c: &aws_sdk_kms::Client,
    key: &str,
    material: &[u8],
    valid_to: i64,
) -> Imported {
    import_wrapped(c, key, material, Some(valid_to), None, None).await
}

/// Open one of this service's v1 ciphertexts outside it, with the raw key.
pub(crate) fn open_outside(key: &[u8], blob: &[u8]) -> Vec<u8> {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let (header, body) = blob.split_at(33);
    let mut aad = header.to_vec();
    aad.extend_from_slice(&0u32.to_be_bytes()); // an empty encryption context
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut buf = body.to_vec();
    let nonce = Nonce::try_assume_unique_for_key(&header[21..33]).unwrap();
    k.open_in_place(nonce, Aad::from(aad), &mut buf)
        .expect("the ciphertext opens outside with the imported key")
        .to_vec()
}

/// Run a bash script in `dir`; its output. The test fails if the script does.
fn shell(dir: &std::path::Path, script: &str) -> Vec<u8> {
    let out = Command::new("bash")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut v).unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_material_imported_with_oaep_is_the_same_material() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let r = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(r), "KMSInvalidStateException");

    let material = random(32);
    let p = c
        .get_parameters_for_import()
        .key_id(&key)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await
        .unwrap();
    let valid = p.parameters_valid_to.unwrap().secs() - chrono::Utc::now().timestamp();
    assert!((23 * 3600..=24 * 3600 + 60).contains(&valid), "{valid}");
    let (token, public) = (p.import_token.unwrap(), p.public_key.unwrap().into_inner());
    // Refused: a token that is not one, a wrap that is not one, material of the wrong size.
    assert_eq!(
        import(
            &c,
            &key,
            Blob::new(vec![7u8; 16]),
            oaep_sha1(&public, &material)
        )
        .await,
        Err("InvalidImportTokenException".into())
    );
    assert_eq!(
        import(&c, &key, token.clone(), random(256)).await,
        Err("InvalidCiphertextException".into())
    );
    assert_eq!(
        import(&c, &key, token.clone(), oaep_sha1(&public, &random(16))).await,
        Err("InvalidCiphertextException".into())
    );
    // A token of another key.
    let other = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let (other_token, other_public) = parameters(
        &c,
        &other,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    assert_eq!(
        import(
            &c,
            &key,
            other_token.clone(),
            oaep_sha1(&other_public, &material)
        )
        .await,
        Err("InvalidImportTokenException".into())
    );
    // With no message, as AWS answers it (recorded for a token of another key).
    let r = c
        .import_key_material()
        .key_id(&key)
        .import_token(other_token)
        .encrypted_key_material(Blob::new(oaep_sha1(&other_public, &material)))
        .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
        .send()
        .await;
    assert_eq!(
        message(r),
        ("InvalidImportTokenException".to_string(), String::new())
    );
    // Material that is not in a pending-import key's place: a key the service made.
    let own = new_key(&c).await;
    assert_eq!(
        code(
            c.get_parameters_for_import()
                .key_id(&own)
                .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
                .wrapping_key_spec(WrappingKeySpec::Rsa2048)
                .send()
                .await
        ),
        "UnsupportedOperationException"
    );
    // RSA-AES key wrap is for private keys; symmetric material is refused it, in AWS's words.
    for alg in [
        AlgorithmSpec::RsaAesKeyWrapSha1,
        AlgorithmSpec::RsaAesKeyWrapSha256,
        AlgorithmSpec::RsaesPkcs1V15,
    ] {
        let r = c
            .get_parameters_for_import()
            .key_id(&key)
            .wrapping_algorithm(alg.clone())
            .wrapping_key_spec(WrappingKeySpec::Rsa2048)
            .send()
            .await;
        assert_eq!(
            message(r),
            (
                "ValidationException".to_string(),
                format!(
                    "Wrapping algorithm {} and wrapping key spec RSA_2048 cannot be used to import a SYMMETRIC_DEFAULT key.",
                    alg.as_str()
                )
            )
        );
    }
    // RSAES_OAEP_SHA_256: the same material imports through it where the token has OAEP with
    // SHA-256, since its block is the material itself (SoftHSM 2.6.1 has SHA-1 only: below).
    let mut algorithms = vec![];
    if kryoptic() {
        algorithms.push(AlgorithmSpec::RsaesOaepSha256);
    }
    for alg in algorithms {
        let other = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
        let material = random(32);
        let wrap = |public: &[u8]| {
            if alg == AlgorithmSpec::RsaesOaepSha256 {
                oaep_sha256(public, &material)
            } else {
                rsa_aes(public, &material, true)
            }
        };
        // A flipped bit in the RSA block is refused like any bad wrap, and loses nothing.
        let (token, public) = parameters(&c, &other, alg.clone(), WrappingKeySpec::Rsa3072).await;
        let mut flipped = wrap(&public);
        flipped[7] ^= 4;
        assert_eq!(
            import(&c, &other, token, flipped).await.unwrap_err(),
            "InvalidCiphertextException",
            "{alg:?}"
        );
        let (token, public) = parameters(&c, &other, alg.clone(), WrappingKeySpec::Rsa3072).await;
        import(&c, &other, token, wrap(&public)).await.unwrap();
        let blob = c
            .encrypt()
            .key_id(&other)
            .plaintext(Blob::new(b"sha-256".to_vec()))
            .send()
            .await
            .unwrap()
            .ciphertext_blob
            .unwrap()
            .into_inner();
        assert_eq!(open_outside(&material, &blob), b"sha-256", "{alg:?}");
    }
    if !kryoptic() {
        let r = c
            .get_parameters_for_import()
            .key_id(&key)
            .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
            .wrapping_key_spec(WrappingKeySpec::Rsa2048)
            .send()
            .await;
        let (code, m) = message(r);
        assert_eq!(code, "UnsupportedOperationException");
        assert!(
            m.contains(
                "has no RSAES-OAEP with SHA-256, and the key material would have to leave it"
            ) && m.ends_with(
                "Use RSAES_OAEP_SHA_1, or let the service decode it (hsm.oaep_sha256_import_in_service = true)."
            ),
            "{m}"
        );
    }

    import(&c, &key, token, oaep_sha1(&public, &material))
        .await
        .unwrap();
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.key_state, Some(KeyState::Enabled));
    assert_eq!(
        m.expiration_model,
        Some(ExpirationModelType::KeyMaterialDoesNotExpire)
    );
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"made before the deletion".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    assert_eq!(open_outside(&material, &blob), b"made before the deletion");

    let sql = format!(
        "SELECT invocations_reserved FROM key_materials WHERE key_id = {}",
        s.db.key(&key)
    );
    let reserved = || s.db.int(&sql);
    let before = reserved().await;
    assert!(before > 0);
    c.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.key_state, Some(KeyState::PendingImport));
    assert_eq!(
        code(
            c.decrypt()
                .ciphertext_blob(Blob::new(blob.clone()))
                .send()
                .await
        ),
        "KMSInvalidStateException"
    );
    // Other material is refused; the same material brings the old ciphertext back.
    let (token, public) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa4096,
    )
    .await;
    assert_eq!(
        import(&c, &key, token.clone(), oaep_sha1(&public, &random(32))).await,
        Err("IncorrectKeyMaterialException".into())
    );
    import(&c, &key, token, oaep_sha1(&public, &material))
        .await
        .unwrap();
    let out = c
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.plaintext.unwrap().into_inner(),
        b"made before the deletion"
    );
    // The material's AES-GCM invocations before the deletion still count after it.
    assert!(reserved().await >= before);
}

/// `RSAES_OAEP_SHA_1`, done with the `openssl` command line exactly as the README tells a user,
/// into an HMAC key: `GenerateMac` equals the HMAC computed outside. (RSA-AES key wrap is for
/// private keys: AWS refuses it for HMAC material.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_material_wrapped_with_the_openssl_command_line() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let (token, public) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa3072,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("WrappingPublicKey.bin"), &public).unwrap();
    let secret = random(32);
    std::fs::write(p("PlaintextKeyMaterial.bin"), &secret).unwrap();
    let sh = |script: &str| shell(dir.path(), script);
    sh(README_OPENSSL_OAEP);
    let wrapped = std::fs::read(p("EncryptedKeyMaterial.bin")).unwrap();
    let valid_to = chrono::Utc::now() + chrono::Duration::days(1);
    c.import_key_material()
        .key_id(&key)
        .import_token(token)
        .encrypted_key_material(Blob::new(wrapped))
        .expiration_model(ExpirationModelType::KeyMaterialExpires)
        .valid_to(DateTime::from_secs(valid_to.timestamp()))
        .send()
        .await
        .unwrap();
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.valid_to.unwrap().secs(), valid_to.timestamp());
    let msg = b"a message to authenticate";
    let mac = c
        .generate_mac()
        .key_id(&key)
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .message(Blob::new(msg.to_vec()))
        .send()
        .await
        .unwrap()
        .mac
        .unwrap()
        .into_inner();
    let outside = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
        msg,
    );
    assert_eq!(mac, outside.as_ref());
}

/// The README's openssl step for `RSAES_OAEP_SHA_1` (symmetric and HMAC material; the README
/// quotes this text).
const README_OPENSSL_OAEP: &str = r#"
openssl pkeyutl -encrypt -pubin -keyform DER -inkey WrappingPublicKey.bin \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 \
    -in PlaintextKeyMaterial.bin -out EncryptedKeyMaterial.bin
"#;

/// The README's openssl steps for `RSA_AES_KEY_WRAP_SHA_1` (kept in one place so the README
/// and this test cannot drift: the README quotes this text).
const README_OPENSSL: &str = r#"
openssl rand -out aes-key.bin 32
openssl pkeyutl -encrypt -pubin -keyform DER -inkey WrappingPublicKey.bin \
    -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha1 -pkeyopt rsa_mgf1_md:sha1 \
    -in aes-key.bin -out aes-key.enc
openssl enc -id-aes256-wrap-pad -K "$(xxd -p -c 64 aes-key.bin)" -iv A65959A6 \
    -in PlaintextKeyMaterial.bin -out material.wrapped
cat aes-key.enc material.wrapped > EncryptedKeyMaterial.bin
"#;

/// Imported material works until `ValidTo` and then stops: the scheduler deletes it (once
/// across two servers, audited) and the key is pending import again. An import token is good
/// for 24 hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_material_expires_and_import_tokens_expire() {
    let s = clocked().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let material = random(32);
    let (token, public) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    c.import_key_material()
        .key_id(&key)
        .import_token(token)
        .encrypted_key_material(Blob::new(oaep_sha1(&public, &material)))
        .valid_to(DateTime::from_secs(
            chrono::Utc::now().timestamp() + 2 * 86400,
        ))
        .send()
        .await
        .unwrap();
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    // A second server on the same database runs the same background jobs.
    let _second = tokio::task::block_in_place(|| s.second_node());
    s.advance_days(1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    s.advance_days(2);
    let c2 = c.clone();
    let k2 = key.clone();
    eventually("the imported material expires", move || {
        let (c, k) = (c2.clone(), k2.clone());
        async move {
            c.describe_key()
                .key_id(&k)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .key_state
                == Some(KeyState::PendingImport)
        }
    })
    .await;
    assert_eq!(
        code(
            c.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
        ),
        "KMSInvalidStateException"
    );
    let n =
        s.db.int("SELECT count(*) FROM audit_events WHERE event_name = 'DeleteExpiredKeyMaterial'")
            .await;
    assert_eq!(n, 1, "expired once, audited once");
    // A token a day and a minute old is expired.
    let (token, public) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    s.advance_days(2);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        import(&c, &key, token, oaep_sha1(&public, &material)).await,
        Err("ExpiredImportTokenException".into())
    );
    // ValidTo must be ahead, and within 365 days.
    let (token, public) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    let r = c
        .import_key_material()
        .key_id(&key)
        .import_token(token)
        .encrypted_key_material(Blob::new(oaep_sha1(&public, &material)))
        .send()
        .await;
    assert_eq!(code(r), "ValidationException");
    for (valid_to, said_) in [
        (1_000_000, "ValidTo must be in the future"),
        (
            chrono::Utc::now().timestamp() + 10 * 366 * 86_400,
            "ValidTo must be less than 365 days in the future",
        ),
    ] {
        let (token, public) = parameters(
            &c,
            &key,
            AlgorithmSpec::RsaesOaepSha1,
            WrappingKeySpec::Rsa2048,
        )
        .await;
        let r = c
            .import_key_material()
            .key_id(&key)
            .import_token(token)
            .encrypted_key_material(Blob::new(oaep_sha1(&public, &material)))
            .valid_to(DateTime::from_secs(valid_to))
            .send()
            .await;
        assert_eq!(
            message(r),
            ("ValidationException".to_string(), said_.to_string())
        );
    }
}

/// An RSA signing key made with openssl and imported (PKCS#8 inside `RSA_AES_KEY_WRAP_SHA_1`):
/// its public key is openssl's, the service's signatures verify with openssl, and openssl's
/// signatures pass `Verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_signing_key_imported_from_openssl_signs_like_it() {
    use aws_sdk_kms::types::SigningAlgorithmSpec;
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::Rsa2048, KeyUsageType::SignVerify).await;
    // RSAES-OAEP cannot carry a private key.
    let r = c
        .get_parameters_for_import()
        .key_id(&key)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(WrappingKeySpec::Rsa4096)
        .send()
        .await;
    assert_eq!(
        message(r),
        (
            "ValidationException".to_string(),
            "Wrapping algorithm RSAES_OAEP_SHA_1 and wrapping key spec RSA_4096 cannot be used to import a RSA_2048 key.".to_string()
        )
    );
    openssl_key_signs_like_it(
        &c,
        &key,
        WrappingKeySpec::Rsa4096,
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out private.pem",
        SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
    )
    .await;
}

fn oaep_sha256(public_der: &[u8], plaintext: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
    let k =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap()).unwrap();
    let mut out = vec![0u8; k.ciphertext_size()];
    k.encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
        .unwrap()
        .to_vec()
}

/// `RSA_AES_KEY_WRAP_SHA_1` done with aws-lc-rs: RSAES-OAEP over a fresh AES key, then the
/// material wrapped under it with RFC 5649.
fn rsa_aes_sha1(public_der: &[u8], material: &[u8]) -> Vec<u8> {
    rsa_aes(public_der, material, false)
}

/// `RSA_AES_KEY_WRAP_SHA_1` (or `_SHA_256`) done with aws-lc-rs.
pub(crate) fn rsa_aes(public_der: &[u8], material: &[u8], sha256: bool) -> Vec<u8> {
    use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded, AES_256};
    let aes = random(32);
    let mut out = if sha256 {
        oaep_sha256(public_der, &aes)
    } else {
        oaep_sha1(public_der, &aes)
    };
    let kek = AesKek::new(&AES_256, &aes).unwrap();
    let mut buf = vec![0u8; material.len() + 16];
    out.extend_from_slice(kek.wrap_with_padding(material, &mut buf).unwrap());
    out
}

async fn public_key(c: &aws_sdk_kms::Client, key: &str) -> Vec<u8> {
    c.get_public_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .public_key
        .unwrap()
        .into_inner()
}

/// EC private keys made outside (aws-lc-rs) and imported: the served public key is theirs,
/// the service's signatures verify outside and outside signatures pass `Verify`, and ECDH with
/// an imported key-agreement key gives the secret computed outside. The token does not show a
/// private key's public point; the service works it out, and this is what proves it right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec_keys_imported_from_outside_sign_and_agree_like_the_material() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
    use aws_sdk_kms::types::{KeyAgreementAlgorithmSpec, SigningAlgorithmSpec};
    let s = Server::start().await;
    let c = s.client();
    let rng = SystemRandom::new();
    let message = b"signed inside and outside".to_vec();
    let r = c
        .create_key()
        .origin(OriginType::External)
        .key_spec(KeySpec::EccNistEdwards25519)
        .key_usage(KeyUsageType::SignVerify)
        .send()
        .await;
    assert_eq!(code(r), "UnsupportedOperationException");

    // P-256 through RSAES-OAEP, P-384 through RSA_AES_KEY_WRAP_SHA_1.
    for (spec, signing, verifying, alg, wrap, wrap_spec) in [
        (
            KeySpec::EccNistP256,
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &signature::ECDSA_P256_SHA256_ASN1,
            SigningAlgorithmSpec::EcdsaSha256,
            AlgorithmSpec::RsaesOaepSha1,
            WrappingKeySpec::Rsa2048,
        ),
        (
            KeySpec::EccNistP384,
            &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &signature::ECDSA_P384_SHA384_ASN1,
            SigningAlgorithmSpec::EcdsaSha384,
            AlgorithmSpec::RsaAesKeyWrapSha1,
            WrappingKeySpec::Rsa3072,
        ),
    ] {
        let key = external_key(&c, spec.clone(), KeyUsageType::SignVerify).await;
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
        let (token, wrapping) = parameters(&c, &key, wrap.clone(), wrap_spec).await;
        let wrapped = if wrap == AlgorithmSpec::RsaesOaepSha1 {
            oaep_sha1(&wrapping, pkcs8.as_ref())
        } else {
            rsa_aes_sha1(&wrapping, pkcs8.as_ref())
        };
        import(&c, &key, token, wrapped).await.unwrap();
        let served = public_key(&c, &key).await;
        assert_eq!(
            served,
            pair.public_key().as_der().unwrap().as_ref(),
            "{spec:?}"
        );
        let inside = c
            .sign()
            .key_id(&key)
            .message(Blob::new(message.clone()))
            .signing_algorithm(alg.clone())
            .send()
            .await
            .unwrap()
            .signature
            .unwrap()
            .into_inner();
        UnparsedPublicKey::new(verifying, pair.public_key().as_ref())
            .verify(&message, &inside)
            .expect("the service's signature verifies outside");
        let outside = pair.sign(&rng, &message).unwrap();
        let ok = c
            .verify()
            .key_id(&key)
            .message(Blob::new(message.clone()))
            .signature(Blob::new(outside.as_ref().to_vec()))
            .signing_algorithm(alg)
            .send()
            .await
            .unwrap();
        assert!(ok.signature_valid, "{spec:?}");

        if spec == KeySpec::EccNistP256 {
            // Deleted and imported again: the same key; another P-256 key is refused, and so
            // is a key on another curve.
            c.delete_imported_key_material()
                .key_id(&key)
                .send()
                .await
                .unwrap();
            for (material, expect) in [
                (
                    EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap(),
                    "IncorrectKeyMaterialException",
                ),
                (
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng)
                        .unwrap(),
                    "InvalidCiphertextException",
                ),
            ] {
                let (token, wrapping) =
                    parameters(&c, &key, wrap.clone(), WrappingKeySpec::Rsa2048).await;
                let r = import(&c, &key, token, oaep_sha1(&wrapping, material.as_ref())).await;
                assert_eq!(r.unwrap_err(), expect);
            }
            let (token, wrapping) =
                parameters(&c, &key, wrap.clone(), WrappingKeySpec::Rsa2048).await;
            import(&c, &key, token, oaep_sha1(&wrapping, pkcs8.as_ref()))
                .await
                .unwrap();
            assert_eq!(public_key(&c, &key).await, served);
        }
    }

    // P-521 key agreement through RSA_AES_KEY_WRAP_SHA_1 (RSAES-OAEP with RSA_2048 cannot
    // carry P-521 material, as AWS says).
    use aws_lc_rs::agreement::{self, PrivateKey, ECDH_P521};
    let key = external_key(&c, KeySpec::EccNistP521, KeyUsageType::KeyAgreement).await;
    let r = c
        .get_parameters_for_import()
        .key_id(&key)
        .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha1)
        .wrapping_key_spec(WrappingKeySpec::Rsa2048)
        .send()
        .await;
    assert_eq!(
        said(&r),
        "Wrapping algorithm RSAES_OAEP_SHA_1 and wrapping key spec RSA_2048 cannot be used to import a ECC_NIST_P521 key."
    );
    assert_eq!(code(r), "ValidationException");
    let private = PrivateKey::generate(&ECDH_P521).unwrap();
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der = private.as_der().unwrap();
    let (token, wrapping) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaAesKeyWrapSha1,
        WrappingKeySpec::Rsa3072,
    )
    .await;
    import(&c, &key, token, rsa_aes_sha1(&wrapping, pkcs8.as_ref()))
        .await
        .unwrap();
    let public = private.compute_public_key().unwrap();
    assert_eq!(
        public_key(&c, &key).await,
        public.as_der().unwrap().as_ref()
    );
    let peer = PrivateKey::generate(&ECDH_P521).unwrap();
    let peer_public = peer.compute_public_key().unwrap();
    let out = c
        .derive_shared_secret()
        .key_id(&key)
        .key_agreement_algorithm(KeyAgreementAlgorithmSpec::Ecdh)
        .public_key(Blob::new(peer_public.as_der().unwrap().as_ref().to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_origin, Some(OriginType::External));
    let inside = out.shared_secret.unwrap().into_inner();
    let outside = agreement::agree(
        &private,
        agreement::UnparsedPublicKey::new(&ECDH_P521, peer_public.as_ref()),
        (),
        |k| Ok(k.to_vec()),
    )
    .unwrap();
    assert_eq!(inside, outside);
}

/// A secp256k1 signing key made with the `openssl` command line and imported as the README
/// shows: openssl's public key is served, and signatures verify both ways with openssl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secp256k1_key_imported_from_openssl_signs_like_it() {
    use aws_sdk_kms::types::SigningAlgorithmSpec;
    if skip_on_kryoptic("Kryoptic built against OpenSSL 3.0 has no secp256k1 keys") {
        return;
    }
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::EccSecgP256K1, KeyUsageType::SignVerify).await;
    openssl_key_signs_like_it(
        &c,
        &key,
        WrappingKeySpec::Rsa2048,
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp256k1 -out private.pem",
        SigningAlgorithmSpec::EcdsaSha256,
    )
    .await;
}

/// An RSA decryption key made outside (aws-lc-rs) and imported: its public key is served, a
/// ciphertext made outside decrypts inside, and one made inside decrypts outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_decryption_key_imported_from_outside_decrypts_like_it() {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rsa::{
        KeySize, OaepPrivateDecryptingKey, PrivateDecryptingKey, OAEP_SHA1_MGF1SHA1,
    };
    use aws_sdk_kms::types::EncryptionAlgorithmSpec;
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::Rsa3072, KeyUsageType::EncryptDecrypt).await;
    let private = PrivateDecryptingKey::generate(KeySize::Rsa3072).unwrap();
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der = private.as_der().unwrap();
    let public = private.public_key().as_der().unwrap().as_ref().to_vec();
    let (token, wrapping) = parameters(
        &c,
        &key,
        AlgorithmSpec::RsaAesKeyWrapSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    import(&c, &key, token, rsa_aes_sha1(&wrapping, pkcs8.as_ref()))
        .await
        .unwrap();
    assert_eq!(public_key(&c, &key).await, public);
    let secret = random(100);
    let inside = c
        .decrypt()
        .key_id(&key)
        .ciphertext_blob(Blob::new(oaep_sha1(&public, &secret)))
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha1)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap()
        .into_inner();
    assert_eq!(inside, secret);
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(secret.clone()))
        .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha1)
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
        .into_inner();
    let oaep = OaepPrivateDecryptingKey::new(private).unwrap();
    let mut out = vec![0u8; oaep.min_output_size()];
    let opened = oaep
        .decrypt(&OAEP_SHA1_MGF1SHA1, &blob, &mut out, None)
        .unwrap();
    assert_eq!(opened, &secret[..]);
}

/// A signing key made with the `openssl` command line (`keygen` writes `private.pem`) and
/// imported with the README's openssl steps (`RSA_AES_KEY_WRAP_SHA_1`): openssl's public key is
/// served, the service's signatures verify with openssl, and openssl's pass `Verify`.
async fn openssl_key_signs_like_it(
    c: &aws_sdk_kms::Client,
    key: &str,
    wrapping: WrappingKeySpec,
    keygen: &str,
    algorithm: aws_sdk_kms::types::SigningAlgorithmSpec,
) {
    let (token, public) = parameters(c, key, AlgorithmSpec::RsaAesKeyWrapSha1, wrapping).await;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("WrappingPublicKey.bin"), &public).unwrap();
    std::fs::write(p("message.txt"), b"signed inside and outside").unwrap();
    let sh = |script: &str| shell(dir.path(), script);
    sh(&format!(
        "{keygen}
        openssl pkcs8 -topk8 -nocrypt -outform DER -in private.pem -out PlaintextKeyMaterial.bin
        openssl pkey -in private.pem -pubout -outform DER -out public.der
        openssl pkey -in private.pem -pubout -out public.pem
        openssl dgst -sha256 -sign private.pem -out outside.sig message.txt"
    ));
    sh(README_OPENSSL);
    import(
        c,
        key,
        token,
        std::fs::read(p("EncryptedKeyMaterial.bin")).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        public_key(c, key).await,
        std::fs::read(p("public.der")).unwrap()
    );
    let message = Blob::new(std::fs::read(p("message.txt")).unwrap());
    let sig = c
        .sign()
        .key_id(key)
        .message(message.clone())
        .signing_algorithm(algorithm.clone())
        .send()
        .await
        .unwrap()
        .signature
        .unwrap()
        .into_inner();
    std::fs::write(p("inside.sig"), sig).unwrap();
    let out = sh("openssl dgst -sha256 -verify public.pem -signature inside.sig message.txt");
    assert!(String::from_utf8_lossy(&out).contains("Verified OK"));
    let ok = c
        .verify()
        .key_id(key)
        .message(message)
        .signature(Blob::new(std::fs::read(p("outside.sig")).unwrap()))
        .signing_algorithm(algorithm)
        .send()
        .await
        .unwrap();
    assert!(ok.signature_valid);
}

/// Multi-Region keys with imported material, as AWS has them: the replica starts pending
/// import (material is never copied between regions); each related key takes only the same
/// material, imported on its own; then a ciphertext made in one region decrypts in the other.
/// `ImportType`, `KeyMaterialId` and the material id in the answers follow AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_region_keys_take_the_same_imported_material_in_each_region() {
    use aws_sdk_kms::types::ImportType;
    let s = Server::start().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let m = east
        .create_key()
        .origin(OriginType::External)
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.key_state, Some(KeyState::PendingImport));
    assert!(m.key_id.starts_with("mrk-"), "{}", m.key_id);
    assert_eq!(m.current_key_material_id, None, "no material yet");
    let key = m.key_id;
    let material = random(32);
    // A primary pending import cannot be replicated (recorded).
    let r = east
        .replicate_key()
        .key_id(&key)
        .replica_region(OTHER_REGION)
        .send()
        .await;
    assert!(said(&r).ends_with(" is pending import."), "{}", said(&r));
    assert_eq!(code(r), "KMSInvalidStateException");
    // EXISTING_KEY_MATERIAL when no key of the family ever had material: refused.
    assert_eq!(
        code(
            import_oaep(
                &east,
                &key,
                &material,
                Some(ImportType::ExistingKeyMaterial),
                None
            )
            .await
        ),
        "IncorrectKeyMaterialException"
    );
    let out = import_oaep(
        &east,
        &key,
        &material,
        Some(ImportType::NewKeyMaterial),
        None,
    )
    .await
    .unwrap();
    let material_id = out.key_material_id.expect("the imported material's id");
    assert_eq!(material_id.len(), 64);
    assert_eq!(
        east.describe_key()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .current_key_material_id,
        Some(material_id.clone())
    );
    // Its replica is pending import (imported material is never copied), naming the
    // primary's material once settled; ReplicateKey's own answer names none (both as AWS
    // answers, recorded).
    let out = east
        .replicate_key()
        .key_id(&key)
        .replica_region(OTHER_REGION)
        .send()
        .await
        .unwrap();
    let replica = out.replica_key_metadata.unwrap();
    // `Creating` in ReplicateKey's answer, as on AWS; settled, `PendingImport`.
    assert_eq!(replica.key_state, Some(KeyState::Creating));
    let settled = describe(&west, &key).await;
    assert_eq!(settled.key_state, Some(KeyState::PendingImport));
    assert_eq!(replica.origin, Some(OriginType::External));
    assert_eq!(replica.current_key_material_id, None);
    assert_eq!(settled.current_key_material_id, Some(material_id.clone()));
    // The replica is still pending import: nothing was copied.
    let r = west
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(r), "KMSInvalidStateException");
    // Other material, or new material, is refused in the replica.
    assert_eq!(
        code(import_oaep(&west, &key, &random(32), None, None).await),
        "IncorrectKeyMaterialException"
    );
    assert_eq!(
        code(
            import_oaep(
                &west,
                &key,
                &material,
                Some(ImportType::NewKeyMaterial),
                None
            )
            .await
        ),
        "ValidationException"
    );
    // A material id that is not this key's (AWS's recorded answer: the material does not have
    // the identifier asked for).
    let r = import_oaep(&west, &key, &material, None, Some("ab".repeat(32))).await;
    assert_eq!(
        said(&r),
        format!(
            "Imported key material does not have the expected identifier ({}).",
            "ab".repeat(32)
        )
    );
    assert_eq!(code(r), "IncorrectKeyMaterialException");
    // A malformed one.
    assert_eq!(
        code(import_oaep(&west, &key, &material, None, Some("AB".repeat(32))).await),
        "ValidationException"
    );
    let out = import_oaep(
        &west,
        &key,
        &material,
        Some(ImportType::ExistingKeyMaterial),
        Some(material_id.clone()),
    )
    .await
    .unwrap();
    assert_eq!(out.key_material_id, Some(material_id.clone()));

    // Interoperable: made in one region, opened in the other, and outside with the material.
    let blob = east
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"across".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let out = west
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"across");
    assert_eq!(open_outside(&material, blob.as_ref()), b"across");

    // Key states are independent: deleting the replica's material leaves the primary working.
    let out = west
        .delete_imported_key_material()
        .key_id(&key)
        .key_material_id(&material_id)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_material_id, Some(material_id.clone()));
    assert_eq!(
        code(west.decrypt().ciphertext_blob(blob.clone()).send().await),
        "KMSInvalidStateException"
    );
    // ListKeyRotations with ALL_KEY_MATERIAL shows the imported material and its state.
    for (c, state) in [
        (&east, aws_sdk_kms::types::ImportState::Imported),
        (&west, aws_sdk_kms::types::ImportState::PendingImport),
    ] {
        let r = c
            .list_key_rotations()
            .key_id(&key)
            .include_key_material(aws_sdk_kms::types::IncludeKeyMaterial::AllKeyMaterial)
            .send()
            .await
            .unwrap();
        assert_eq!(r.rotations().len(), 1);
        let m = &r.rotations()[0];
        assert_eq!(m.key_material_id.as_deref(), Some(material_id.as_str()));
        assert_eq!(m.import_state, Some(state.clone()));
        assert_eq!(
            m.expiration_model,
            (state == aws_sdk_kms::types::ImportState::Imported)
                .then_some(ExpirationModelType::KeyMaterialDoesNotExpire)
        );
    }
    east.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    // A material id that is not the key's is not deleted.
    assert_eq!(
        code(
            east.delete_imported_key_material()
                .key_id(&key)
                .key_material_id("0".repeat(64))
                .send()
                .await
        ),
        "ValidationException"
    );
    east.decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    // Re-imported with the default import type (EXISTING after the first import).
    import_oaep(&west, &key, &material, None, None)
        .await
        .unwrap();
    let out = west
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"across");

    // The primary waiting for its replica's deletion keeps that state when its material is
    // deleted; cancelled, it is pending import. The replica works on.
    let state = |c: aws_sdk_kms::Client, key: String| async move {
        c.describe_key()
            .key_id(key)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_state
            .unwrap()
    };
    east.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    east.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        state(east.clone(), key.clone()).await,
        KeyState::PendingReplicaDeletion
    );
    east.cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        state(east.clone(), key.clone()).await,
        KeyState::PendingImport
    );
    west.decrypt().ciphertext_blob(blob).send().await.unwrap();

    // ImportType and KeyMaterialId are for symmetric encryption keys only; asymmetric and HMAC
    // keys name no material.
    let hmac = external_key(&east, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let (token, _) = parameters(
        &east,
        &hmac,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    assert_eq!(
        code(
            east.import_key_material()
                .key_id(&hmac)
                .import_token(token)
                .encrypted_key_material(Blob::new(random(256)))
                .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
                .import_type(ImportType::NewKeyMaterial)
                .send()
                .await
        ),
        "ValidationException"
    );
    let signing = new_key_with(&east, KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    assert_eq!(signing.current_key_material_id, None);
    // The description's `\s` is Java's (ASCII whitespace): a no-break space fails the pattern.
    let (token, public) = parameters(
        &east,
        &key,
        AlgorithmSpec::RsaesOaepSha1,
        WrappingKeySpec::Rsa2048,
    )
    .await;
    let (code, m) = message(
        east.import_key_material()
            .key_id(&key)
            .import_token(token)
            .encrypted_key_material(Blob::new(oaep_sha1(&public, &material)))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .key_material_description("ceremony\u{a0}2026-12")
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException", "{m}");
    assert!(m.contains("at 'keyMaterialDescription' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_\\s.-]+$"), "{m}");
    // A description of the material: only on the primary (recorded), kept with the material.
    for (c, ok) in [(&west, false), (&east, true)] {
        let (token, public) = parameters(
            c,
            &key,
            AlgorithmSpec::RsaesOaepSha1,
            WrappingKeySpec::Rsa2048,
        )
        .await;
        let r = c
            .import_key_material()
            .key_id(&key)
            .import_token(token)
            .encrypted_key_material(Blob::new(oaep_sha1(&public, &material)))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .key_material_description("ceremony 2026-12")
            .send()
            .await;
        if ok {
            r.unwrap();
        } else {
            assert_eq!(
                said(&r),
                "Key material description can only be specified on primary Multi-Region keys"
            );
        }
    }
    let r = east
        .list_key_rotations()
        .key_id(&key)
        .include_key_material(aws_sdk_kms::types::IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.rotations()[0].key_material_description.as_deref(),
        Some("ceremony 2026-12")
    );
}

/// As AWS: deleting the material of a key pending deletion leaves it pending deletion; when
/// the deletion is cancelled, a key without material is pending import (not `Disabled`, which
/// could be enabled with nothing to encrypt with), and the same material brings it back with
/// its old ciphertexts. A key scheduled for deletion before any import comes back pending
/// import too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_deleted_while_pending_deletion_comes_back_pending_import() {
    let s = Server::start().await;
    let c = s.client();
    let state = |key: String| {
        let c = c.clone();
        async move {
            c.describe_key()
                .key_id(key)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .key_state
                .unwrap()
        }
    };
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let material = random(32);
    import_oaep(&c, &key, &material, None, None).await.unwrap();
    // Imported again into the enabled key (AWS: "PendingImport or Enabled"), to change its
    // expiry: it stays enabled, now expiring; other material is still refused.
    let valid_to = chrono::Utc::now().timestamp() + 30 * 86400;
    import_expiring(&c, &key, &material, valid_to).await;
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(m.key_state, Some(KeyState::Enabled));
    assert_eq!(
        m.expiration_model,
        Some(ExpirationModelType::KeyMaterialExpires)
    );
    assert_eq!(m.valid_to.map(|t| t.secs()), Some(valid_to));
    assert_eq!(
        code(import_oaep(&c, &key, &random(32), None, None).await),
        "IncorrectKeyMaterialException"
    );
    import_oaep(&c, &key, &material, None, None).await.unwrap();
    let m = c
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(
        m.expiration_model,
        Some(ExpirationModelType::KeyMaterialDoesNotExpire)
    );
    assert_eq!(m.valid_to, None);
    let blob = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"kept".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    c.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(state(key.clone()).await, KeyState::PendingDeletion);
    // Deleting again is harmless.
    c.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    c.cancel_key_deletion().key_id(&key).send().await.unwrap();
    assert_eq!(state(key.clone()).await, KeyState::PendingImport);
    assert_eq!(
        code(c.enable_key().key_id(&key).send().await),
        "KMSInvalidStateException"
    );
    import_oaep(&c, &key, &material, None, None).await.unwrap();
    let out = c.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"kept");

    // Material kept through a cancelled deletion: Disabled, as for any key.
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    c.cancel_key_deletion().key_id(&key).send().await.unwrap();
    assert_eq!(state(key.clone()).await, KeyState::Disabled);

    // Never imported, scheduled, cancelled: pending import again.
    let never = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    // While waiting for material, a key is managed like any other (AWS's key-state table).
    c.create_alias()
        .alias_name("alias/awaiting-material")
        .target_key_id(&never)
        .send()
        .await
        .unwrap();
    c.tag_resource()
        .key_id(&never)
        .tags(
            aws_sdk_kms::types::Tag::builder()
                .tag_key("ceremony")
                .tag_value("pending")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    c.untag_resource()
        .key_id(&never)
        .tag_keys("ceremony")
        .send()
        .await
        .unwrap();
    c.update_key_description()
        .key_id(&never)
        .description("material arrives later")
        .send()
        .await
        .unwrap();
    // A grant needs an enabled key (the table's "is pending import").
    assert_eq!(
        code(
            c.create_grant()
                .key_id(&never)
                .grantee_principal("arn:aws:iam::123456789012:root")
                .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                .send()
                .await
        ),
        "KMSInvalidStateException"
    );
    assert!(
        !c.get_key_rotation_status()
            .key_id(&never)
            .send()
            .await
            .unwrap()
            .key_rotation_enabled
    );
    assert_eq!(
        code(c.enable_key().key_id(&never).send().await),
        "KMSInvalidStateException"
    );
    c.schedule_key_deletion()
        .key_id(&never)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    c.delete_imported_key_material()
        .key_id(&never)
        .send()
        .await
        .unwrap();
    c.cancel_key_deletion().key_id(&never).send().await.unwrap();
    assert_eq!(state(never).await, KeyState::PendingImport);
}

/// The count of AES-GCM invocations an imported material keeps across its deletion and
/// re-import (`key_imports.invocations`) set back with SQL: the material comes back with the
/// lower count, and the first lease from it starts before the leases the trail holds for that
/// material, so the key is refused rather than passing the 2^32 bound of one material.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_materials_count_set_back_with_sql_is_refused_after_re_import() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let material = random(32);
    import_oaep(&c, &key, &material, None, None).await.unwrap();
    c.encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();
    c.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    // The attack.
    s.db.execute(&format!(
        "UPDATE key_imports SET invocations = 0 WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    import_oaep(&c, &key, &material, None, None).await.unwrap();
    let node2 = s.second_node();
    let fresh = s.client_of(&node2, &s.access_key_id, &s.secret);
    assert_eq!(
        code(
            fresh
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
        ),
        "KeyUnavailableException"
    );
}

/// The import record put back as it was before a re-import gave the material an expiry (so
/// that it never expires): its seal holds, but the trail records a later generation of it, so
/// the key is refused rather than kept past its `ValidTo`.
#[tokio::test(flavor = "multi_thread")]
async fn an_import_record_put_back_to_escape_its_expiry_is_refused() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let material = random(32);
    import_oaep(&c, &key, &material, None, None).await.unwrap();
    let k = s.db.key(&key);
    s.db.execute(&format!(
        "CREATE TABLE saved_import AS SELECT * FROM key_imports WHERE key_id = {k}"
    ))
    .await;
    // The material imported again, now expiring in a day.
    import_expiring(&c, &key, &material, chrono::Utc::now().timestamp() + 86_400).await;
    // The attack: the record before the re-import, seal and all.
    s.db.execute(&format!("DELETE FROM key_imports WHERE key_id = {k}"))
        .await;
    s.db.execute("INSERT INTO key_imports SELECT * FROM saved_import")
        .await;
    let node2 = tokio::task::block_in_place(|| s.second_node());
    let fresh = s.client_of(&node2, &s.access_key_id, &s.secret);
    assert_eq!(
        code(fresh.describe_key().key_id(&key).send().await),
        "KeyUnavailableException"
    );
}

/// The message of a failed SDK call (the call's result kept for its code).
fn said<T: std::fmt::Debug, E: aws_sdk_kms::error::ProvideErrorMetadata + std::fmt::Debug>(
    r: &Result<T, E>,
) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.message().unwrap_or("").to_string(),
    }
}

async fn encrypt_with(c: &aws_sdk_kms::Client, key: &str, plaintext: &[u8]) -> Blob {
    c.encrypt()
        .key_id(key)
        .plaintext(Blob::new(plaintext.to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap()
}

async fn metadata(c: &aws_sdk_kms::Client, key: &str) -> aws_sdk_kms::types::KeyMetadata {
    c.describe_key()
        .key_id(key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
}

/// (material id, state, import state) of each entry of `ListKeyRotations`.
async fn materials(
    c: &aws_sdk_kms::Client,
    key: &str,
    all: bool,
) -> Vec<(String, String, String, bool)> {
    use aws_sdk_kms::types::IncludeKeyMaterial;
    let r = c
        .list_key_rotations()
        .key_id(key)
        .set_include_key_material(all.then_some(IncludeKeyMaterial::AllKeyMaterial))
        .send()
        .await
        .unwrap();
    r.rotations()
        .iter()
        .map(|e| {
            (
                e.key_material_id.clone().unwrap(),
                e.key_material_state.as_ref().unwrap().as_str().to_string(),
                e.import_state.as_ref().unwrap().as_str().to_string(),
                e.rotation_date.is_some() && e.rotation_type.is_some(),
            )
        })
        .collect()
}

/// On-demand rotation of imported material, as AWS has offered it since 2025 (each answer and
/// message as recorded against AWS): new material is imported for a rotation and kept pending,
/// never used, until `RotateKeyOnDemand` makes it current; every material that became part of
/// the key must be imported for the key to be usable; a pending material deleted goes, and the
/// same bytes imported again get the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_material_rotates_on_demand_to_new_material_imported_for_it() {
    use aws_sdk_kms::types::ImportType;
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let arn = metadata(&c, &key).await.arn.unwrap();
    let (a, b, x) = (random(32), random(32), random(32));
    let r = c.rotate_key_on_demand().key_id(&key).send().await;
    assert_eq!(code(r), "KMSInvalidStateException", "pending import");

    let first = import_oaep(&c, &key, &a, None, None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    let r = c.rotate_key_on_demand().key_id(&key).send().await;
    assert_eq!(
        said(&r),
        format!("No available key material pending rotation for the key: {arn}.")
    );
    assert_eq!(code(r), "KMSInvalidStateException");
    let under_a = encrypt_with(&c, &key, b"under a").await;

    // The same material as new: refused.
    let r = import_oaep(&c, &key, &a, Some(ImportType::NewKeyMaterial), None).await;
    assert_eq!(
        said(&r),
        format!("Key material (id: {first}) being imported as NEW_KEY_MATERIAL is already associated with KMS key {arn}.")
    );
    assert_eq!(code(r), "IncorrectKeyMaterialException");
    let r = import_oaep(
        &c,
        &key,
        &b,
        Some(ImportType::NewKeyMaterial),
        Some(first.clone()),
    )
    .await;
    assert_eq!(
        said(&r),
        "Input parameter keyMaterialId cannot be used with NEW_KEY_MATERIAL importType."
    );

    // New material: pending rotation, not used.
    let second = import_oaep(&c, &key, &b, Some(ImportType::NewKeyMaterial), None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    assert_ne!(second, first);
    let m = metadata(&c, &key).await;
    assert_eq!(m.key_state, Some(KeyState::Enabled));
    assert_eq!(m.current_key_material_id.as_deref(), Some(first.as_str()));
    let still_a = encrypt_with(&c, &key, b"still a").await;
    assert_eq!(open_outside(&a, still_a.as_ref()), b"still a");
    // One pending material at a time (recorded).
    let r = import_oaep(&c, &key, &x, Some(ImportType::NewKeyMaterial), None).await;
    assert!(
        said(&r).ends_with(&format!(
            "because another key material (id: {second}) is pending rotation."
        )),
        "{}",
        said(&r)
    );
    assert_eq!(code(r), "KMSInvalidStateException");
    assert!(materials(&c, &key, false).await.is_empty());
    assert_eq!(
        materials(&c, &key, true).await,
        vec![
            (first.clone(), "CURRENT".into(), "IMPORTED".into(), false),
            (
                second.clone(),
                "PENDING_ROTATION".into(),
                "IMPORTED".into(),
                false
            ),
        ]
    );

    // The rotation: the new material is current; the old one still decrypts.
    rotate_now(&c, &key).await;
    let m = metadata(&c, &key).await;
    assert_eq!(m.current_key_material_id.as_deref(), Some(second.as_str()));
    let under_b = encrypt_with(&c, &key, b"under b").await;
    assert_eq!(open_outside(&b, under_b.as_ref()), b"under b");
    for (blob, text) in [(&under_a, &b"under a"[..]), (&under_b, b"under b")] {
        let out = c
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.plaintext.unwrap().into_inner(), text);
    }
    assert_eq!(
        materials(&c, &key, false).await,
        vec![(second.clone(), "CURRENT".into(), "IMPORTED".into(), true)]
    );
    assert_eq!(
        materials(&c, &key, true).await,
        vec![
            (
                first.clone(),
                "NON_CURRENT".into(),
                "IMPORTED".into(),
                false
            ),
            (second.clone(), "CURRENT".into(), "IMPORTED".into(), true),
        ]
    );
    // Automatic rotation stays for generated material (recorded).
    assert_eq!(
        code(c.enable_key_rotation().key_id(&key).send().await),
        "UnsupportedOperationException"
    );

    // A material that is part of the key deleted (here the non-current one): the key waits for
    // it; imported again by its id, it is back with its ciphertexts.
    let out = c
        .delete_imported_key_material()
        .key_id(&key)
        .key_material_id(&first)
        .send()
        .await
        .unwrap();
    assert_eq!(out.key_material_id.as_deref(), Some(first.as_str()));
    let m = metadata(&c, &key).await;
    assert_eq!(m.key_state, Some(KeyState::PendingImport));
    assert_eq!(m.current_key_material_id.as_deref(), Some(second.as_str()));
    let r = c
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(r), "KMSInvalidStateException");
    // Other material as existing material: not the one expected (recorded).
    let r = import_oaep(&c, &key, &x, None, None).await;
    assert_eq!(
        said(&r),
        format!("Imported key material does not have the expected identifier ({second}).")
    );
    let back = import_oaep(
        &c,
        &key,
        &a,
        Some(ImportType::ExistingKeyMaterial),
        Some(first.clone()),
    )
    .await
    .unwrap();
    assert_eq!(back.key_material_id.as_deref(), Some(first.as_str()));
    assert_eq!(metadata(&c, &key).await.key_state, Some(KeyState::Enabled));
    let out = c.decrypt().ciphertext_blob(under_a).send().await.unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"under a");
    assert_eq!(
        metadata(&c, &key).await.current_key_material_id.as_deref(),
        Some(second.as_str()),
        "re-importing an old material does not rotate back"
    );

    // A pending material deleted goes, the key's state unchanged; the same bytes again get
    // the same id.
    let third = import_oaep(&c, &key, &x, Some(ImportType::NewKeyMaterial), None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    c.delete_imported_key_material()
        .key_id(&key)
        .key_material_id(&third)
        .send()
        .await
        .unwrap();
    assert_eq!(metadata(&c, &key).await.key_state, Some(KeyState::Enabled));
    assert_eq!(materials(&c, &key, true).await.len(), 2);
    let again = import_oaep(&c, &key, &x, Some(ImportType::NewKeyMaterial), None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    assert_eq!(again, third);
    // A disabled key that takes its current material again is enabled (recorded).
    c.disable_key().key_id(&key).send().await.unwrap();
    import_oaep(
        &c,
        &key,
        &b,
        Some(ImportType::ExistingKeyMaterial),
        Some(second.clone()),
    )
    .await
    .unwrap();
    assert_eq!(metadata(&c, &key).await.key_state, Some(KeyState::Enabled));
    // An id the key never had (recorded).
    let r = c
        .delete_imported_key_material()
        .key_id(&key)
        .key_material_id("0".repeat(64))
        .send()
        .await;
    assert_eq!(
        said(&r),
        format!(
            "Key material (id: {}) has never been imported into KMS key {arn}.",
            "0".repeat(64)
        )
    );
    assert_eq!(code(r), "ValidationException");
}

/// The attack: a material pending rotation made the key's current material with SQL (the
/// import record no longer pending, the key's version moved to it), so that the key encrypts
/// under material that was never rotated to. The record's seal and the key's rotation state
/// refuse it on every node, and the material is never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_material_made_current_with_sql_is_never_used() {
    use aws_sdk_kms::types::ImportType;
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    import_oaep(&c, &key, &random(32), None, None)
        .await
        .unwrap();
    import_oaep(
        &c,
        &key,
        &random(32),
        Some(ImportType::NewKeyMaterial),
        None,
    )
    .await
    .unwrap();
    let k = s.db.key(&key);
    s.db.execute(&format!(
        "UPDATE key_material_imports SET pending = (1 = 0) WHERE key_id = {k} AND version = 2"
    ))
    .await;
    let node2 = tokio::task::block_in_place(|| s.second_node());
    let fresh = s.client_of(&node2, &s.access_key_id, &s.secret);
    // Only the record changed: the rotation finds it altered and refuses the key's imports.
    assert_eq!(
        code(fresh.rotate_key_on_demand().key_id(&key).send().await),
        "KeyUnavailableException"
    );
    // The key's version moved too: the key is refused, not used under the pending material.
    s.db.execute(&format!(
        "UPDATE keys SET current_version = 2 WHERE key_id = {k}"
    ))
    .await;
    let node3 = tokio::task::block_in_place(|| s.second_node());
    let fresh = s.client_of(&node3, &s.access_key_id, &s.secret);
    assert_eq!(
        code(
            fresh
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
        ),
        "KeyUnavailableException"
    );
}

/// The tamper matrix's rows for `key_material_imports` (the records of a key's materials after
/// its first): on a key rotated to its second imported material, each column altered in turn
/// (the row put back between) makes a node with cold caches refuse the key rather than use the
/// material under a record the service did not write; and the material's invocation count set
/// back across a deletion and re-import is refused, as the first material's is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_column_of_a_later_materials_record_altered_with_sql_is_refused() {
    use aws_sdk_kms::types::ImportType;
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let second = random(32);
    import_oaep(&c, &key, &random(32), None, None)
        .await
        .unwrap();
    let id = import_oaep(&c, &key, &second, Some(ImportType::NewKeyMaterial), None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    rotate_now(&c, &key).await;
    encrypt_with(&c, &key, b"under the second material").await;
    let k = s.db.key(&key);
    let row = format!("key_id = {k} AND version = 2");
    let pg = !sqlite();
    let now = if pg {
        "now()"
    } else {
        "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"
    };
    let alterations: Vec<(&str, String)> = vec![
        ("version", "version + 1".into()),
        ("material_check", "mac".into()),
        ("expiration_model", "'KEY_MATERIAL_EXPIRES'".into()),
        ("valid_to", now.into()),
        ("description", "'forged'".into()),
        (
            "pending",
            if pg { "NOT pending" } else { "1 - pending" }.into(),
        ),
        ("rotated_at", now.into()),
        ("mac", "material_check".into()),
    ];
    s.db.execute(&format!(
        "CREATE TABLE saved_record AS SELECT * FROM key_material_imports WHERE {row}"
    ))
    .await;
    for (column, value) in alterations {
        s.db.execute(&format!(
            "UPDATE key_material_imports SET {column} = {value} WHERE {row}"
        ))
        .await;
        let node = tokio::task::block_in_place(|| s.second_node());
        let fresh = s.client_of(&node, &s.access_key_id, &s.secret);
        let r = fresh
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await;
        assert_eq!(code(r), "KeyUnavailableException", "{column} altered");
        drop(node);
        s.db.execute(&format!(
            "DELETE FROM key_material_imports WHERE key_id = {k}"
        ))
        .await;
        s.db.execute("INSERT INTO key_material_imports SELECT * FROM saved_record")
            .await;
    }
    // Put back as it was, the record works again.
    encrypt_with(&c, &key, b"back").await;

    // The count, set back across a deletion and a re-import.
    c.delete_imported_key_material()
        .key_id(&key)
        .key_material_id(&id)
        .send()
        .await
        .unwrap();
    s.db.execute(&format!(
        "UPDATE key_material_imports SET invocations = 0 WHERE {row}"
    ))
    .await;
    import_oaep(
        &c,
        &key,
        &second,
        Some(ImportType::ExistingKeyMaterial),
        Some(id),
    )
    .await
    .unwrap();
    let node = tokio::task::block_in_place(|| s.second_node());
    let fresh = s.client_of(&node, &s.access_key_id, &s.secret);
    let r = fresh
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await;
    assert_eq!(code(r), "KeyUnavailableException");
}

/// Multi-Region keys rotate to imported material as AWS has them (each answer as recorded):
/// new material goes into the primary only, and is pending in every region
/// (`PENDING_MULTI_REGION_IMPORT_AND_ROTATION`) until each replica has imported it; a rotation
/// before then is refused; the primary's pending material deleted goes from its replicas too;
/// then the rotation moves every region to it, and ciphertexts cross regions both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_region_keys_rotate_to_material_imported_into_every_region() {
    use aws_sdk_kms::types::ImportType;
    let s = Server::start().await;
    let (east, west) = (s.client(), s.client_in(OTHER_REGION));
    let key = east
        .create_key()
        .origin(OriginType::External)
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let (a, b) = (random(32), random(32));
    let first = import_oaep(&east, &key, &a, None, None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    east.replicate_key()
        .key_id(&key)
        .replica_region(OTHER_REGION)
        .send()
        .await
        .unwrap();
    let out = import_oaep(&west, &key, &a, None, None).await.unwrap();
    assert_eq!(out.key_material_id.as_deref(), Some(first.as_str()));
    let under_a = encrypt_with(&west, &key, b"under a").await;

    // New material into a replica: refused.
    let r = import_oaep(&west, &key, &b, Some(ImportType::NewKeyMaterial), None).await;
    assert_eq!(
        said(&r),
        "Input parameter ImportType NEW_KEY_MATERIAL cannot be used on replica Multi-Region keys"
    );
    assert_eq!(code(r), "ValidationException");

    // Into the primary: pending in every region until each holds it.
    let second = import_oaep(&east, &key, &b, Some(ImportType::NewKeyMaterial), None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    let waiting = "PENDING_MULTI_REGION_IMPORT_AND_ROTATION".to_string();
    assert_eq!(
        materials(&east, &key, true).await,
        vec![
            (first.clone(), "CURRENT".into(), "IMPORTED".into(), false),
            (second.clone(), waiting.clone(), "IMPORTED".into(), false),
        ]
    );
    assert_eq!(
        materials(&west, &key, true).await,
        vec![
            (first.clone(), "CURRENT".into(), "IMPORTED".into(), false),
            (
                second.clone(),
                waiting.clone(),
                "PENDING_IMPORT".into(),
                false
            ),
        ]
    );
    let r = east.rotate_key_on_demand().key_id(&key).send().await;
    assert_eq!(
        said(&r),
        "Cannot perform key material rotation: Key material has not been imported for replicas of the Multi-Region key."
    );
    assert_eq!(code(r), "KMSInvalidStateException");

    // The replica takes it (its default import type: existing material, the family's).
    let out = import_oaep(&west, &key, &b, None, None).await.unwrap();
    assert_eq!(out.key_material_id.as_deref(), Some(second.as_str()));
    assert_eq!(
        materials(&east, &key, true).await[1],
        (
            second.clone(),
            "PENDING_ROTATION".into(),
            "IMPORTED".into(),
            false
        )
    );
    // The primary's pending material deleted: gone from the replica too; the same bytes
    // again get the same id.
    east.delete_imported_key_material()
        .key_id(&key)
        .key_material_id(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(materials(&west, &key, true).await.len(), 1);
    let again = import_oaep(&east, &key, &b, Some(ImportType::NewKeyMaterial), None)
        .await
        .unwrap()
        .key_material_id
        .unwrap();
    assert_eq!(again, second);
    import_oaep(&west, &key, &b, None, None).await.unwrap();

    // The rotation moves every region.
    rotate_now(&east, &key).await;
    for c in [&east, &west] {
        assert_eq!(
            metadata(c, &key).await.current_key_material_id.as_deref(),
            Some(second.as_str())
        );
        assert_eq!(
            materials(c, &key, true).await,
            vec![
                (
                    first.clone(),
                    "NON_CURRENT".into(),
                    "IMPORTED".into(),
                    false
                ),
                (second.clone(), "CURRENT".into(), "IMPORTED".into(), true),
            ]
        );
    }
    let under_b = encrypt_with(&west, &key, b"under b").await;
    assert_eq!(open_outside(&b, under_b.as_ref()), b"under b");
    for (blob, text) in [(&under_a, &b"under a"[..]), (&under_b, b"under b")] {
        let out = east
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(out.plaintext.unwrap().into_inner(), text);
    }
}

/// The SQL writer keeps a copy of a key's material row, and puts it back once the material
/// was deleted while the key waited for deletion. The row's MAC is still good, and the key's
/// record said the material was gone, but CancelKeyDeletion looked only for a material row: it
/// brought the key back Disabled instead of pending import, and EnableKey then encrypted under
/// the deleted material. Now the key comes back pending import (decided from its sealed import
/// records), and a material whose import record says it is gone is never loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_material_put_back_with_sql_is_never_used() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    import_oaep(&c, &key, &random(32), None, None)
        .await
        .unwrap();
    let row = s.db.key(&key);
    s.db.execute(&format!(
        "CREATE TABLE saved_material AS SELECT * FROM key_materials WHERE key_id = {row}"
    ))
    .await;
    c.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    c.delete_imported_key_material()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    s.db.execute("INSERT INTO key_materials SELECT * FROM saved_material")
        .await;
    c.cancel_key_deletion().key_id(&key).send().await.unwrap();
    assert_eq!(
        metadata(&c, &key).await.key_state,
        Some(KeyState::PendingImport)
    );
    assert_eq!(
        code(
            c.encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"x".to_vec()))
                .send()
                .await
        ),
        "KMSInvalidStateException"
    );
    s.db.execute("DROP TABLE saved_material").await;
}

/// The attack: a database writer deletes a key's import records and its material rows, so
/// that the key looks as if it never had material, and a principal who may import then brings
/// material of its own (which it knows) as the key's first. On the previous code the import
/// was taken as the first one, and the key computed MACs with the attacker's material. Now a
/// key whose sealed record says it has material (its current version) takes no "first"
/// material: the missing records are an integrity failure.
#[tokio::test(flavor = "multi_thread")]
async fn import_records_deleted_with_sql_let_no_other_material_in() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    import_oaep(&c, &key, &random(32), None, None)
        .await
        .unwrap();
    let k = s.db.key(&key);
    for table in ["key_imports", "key_materials"] {
        s.db.execute(&format!("DELETE FROM {table} WHERE key_id = {k}"))
            .await;
    }
    let node2 = tokio::task::block_in_place(|| s.second_node());
    let fresh = s.client_of(&node2, &s.access_key_id, &s.secret);
    let theirs = random(32);
    let r = import_oaep(&fresh, &key, &theirs, None, None).await;
    assert_eq!(code(r), "KeyUnavailableException");
    assert!(fresh
        .generate_mac()
        .key_id(&key)
        .message(Blob::new(b"m".to_vec()))
        .mac_algorithm(aws_sdk_kms::types::MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .is_err());
}

/// Imported material is never used past its `ValidTo`, even on a node that loaded it before
/// and whose import record the database writer then deleted (so that the expiry job, which
/// goes by the records it finds, never expires it). Before, the node kept serving the cached
/// material until it was evicted or the node restarted.
#[tokio::test(flavor = "multi_thread")]
async fn cached_imported_material_is_not_used_past_its_valid_to() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let valid_to = chrono::Utc::now().timestamp() + 4;
    import_expiring(&c, &key, &random(32), valid_to).await;
    let blob = encrypt_with(&c, &key, b"before").await;
    s.db.execute(&format!(
        "DELETE FROM key_imports WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    let wait = (valid_to + 1 - chrono::Utc::now().timestamp()).max(0) as u64;
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    encrypt_refused_as_expired(&c, &key).await;
    let r = c.decrypt().ciphertext_blob(blob).send().await;
    assert!(EXPIRED_OR_UNAVAILABLE.contains(&code(r).as_str()));
}

/// How a node refuses material past its `ValidTo`: as expired (the cached material), or as
/// tampered with (loaded again, without its import row), whichever it meets first.
const EXPIRED_OR_UNAVAILABLE: [&str; 2] = ["KMSInvalidStateException", "KeyUnavailableException"];

/// Encrypt with `key` is refused as its material's `ValidTo` has passed.
async fn encrypt_refused_as_expired(c: &aws_sdk_kms::Client, key: &str) {
    let r = c
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(b"after".to_vec()))
        .send()
        .await;
    assert!(EXPIRED_OR_UNAVAILABLE.contains(&code(r).as_str()));
}

/// Material imported again with a later `ValidTo` serves on every node past the first one: a
/// node that loaded it under the first `ValidTo` loads it again once that passes (the import
/// record decides), rather than refusing a key that is still Enabled.
#[tokio::test(flavor = "multi_thread")]
async fn material_imported_again_with_a_later_valid_to_serves_on_every_node() {
    let s = Server::start().await;
    let now = chrono::Utc::now().timestamp();
    let (_node, other, key) = imported_again_beside_a_second_node(&s, now + 30, now + 86_430).await;
    encrypt_with(&other, &key, b"still served").await;
}

/// An EXTERNAL key's material imported to expire at `first` (Unix seconds), loaded on a
/// second node, then imported again (on the first node) to expire at `second`; returned once
/// the earlier of the two has passed: the second node, a client of it, and the key.
async fn imported_again_beside_a_second_node(
    s: &Server,
    first: i64,
    second: i64,
) -> (Node, aws_sdk_kms::Client, String) {
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let material = random(32);
    import_expiring(&c, &key, &material, first).await;
    let node = tokio::task::block_in_place(|| s.second_node());
    let other = s.client_of(&node, &s.access_key_id, &s.secret);
    encrypt_with(&other, &key, b"loaded there").await;
    import_expiring(&c, &key, &material, second).await;
    // Far enough ahead that the second node starts, loads the material and the second import
    // lands before the earlier ValidTo (import parameters are an RSA key pair: seconds on a
    // slow token under load).
    let earlier = first.min(second);
    assert!(
        chrono::Utc::now().timestamp() < earlier,
        "the second import landed after the earlier ValidTo: the test proves nothing"
    );
    let wait = (earlier + 1 - chrono::Utc::now().timestamp()).max(0) as u64;
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    (node, other, key)
}

/// `kms:ValidTo` is set on ImportKeyMaterial (the expiry in seconds since the epoch), so a
/// policy can cap how long imported material lives. Before, it was never set: a Deny on
/// material living past a day never applied, and material was imported to live a month.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_to_is_a_condition_key_of_import_key_material() {
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let day = chrono::Utc::now().timestamp() + 86_400;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
        {{"Effect":"Allow","Action":"kms:*","Resource":"*"}},
        {{"Effect":"Deny","Action":"kms:ImportKeyMaterial","Resource":"*","Condition":{{"NumericGreaterThan":{{"kms:ValidTo":"{day}"}}}}}}]}}"#
    );
    let (_, _, user) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "importer", Some(&policy)));
    let material = random(32);
    let import = |valid_to: i64| try_import_expiring(&user, &key, &material, valid_to);
    assert_eq!(
        code(import(day + 30 * 86_400).await),
        "AccessDeniedException"
    );
    import(day - 3_600).await.unwrap();
}

/// Material imported again with an earlier `ValidTo` stops serving on every node at that time.
/// Only its import record changes, and the other node, which had loaded the material under
/// the first record, heard nothing of it: it served past the new `ValidTo` until its expiry
/// job ran. A change to an import record now reaches every node as a change of its key.
#[tokio::test(flavor = "multi_thread")]
async fn material_imported_again_with_an_earlier_valid_to_stops_on_every_node() {
    let s = Server::start().await;
    let now = chrono::Utc::now().timestamp();
    let (_node, other, key) = imported_again_beside_a_second_node(&s, now + 86_400, now + 20).await;
    encrypt_refused_as_expired(&other, &key).await;
}

/// A node reads a loaded material's import record again within the caches' maximum age, so
/// a record deleted with SQL (its change's notification suppressed: here the triggers are
/// dropped first) stops the material there too. Before, the node kept using what it had
/// loaded until it restarted, while every other node refused the key.
#[tokio::test(flavor = "multi_thread")]
async fn imported_material_whose_record_is_deleted_quietly_stops_within_the_cache_age() {
    let s = Server::start_with(&[("KMS_CACHE__MAX_AGE_SECS", "2")]).await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    import_oaep(&c, &key, &random(32), None, None)
        .await
        .unwrap();
    encrypt_with(&c, &key, b"loaded").await;
    let drop_triggers = if sqlite() {
        "DROP TRIGGER IF EXISTS key_imports_delete_change"
    } else {
        "DROP TRIGGER IF EXISTS key_imports_changed ON key_imports"
    };
    s.db.execute(drop_triggers).await;
    s.db.execute(&format!(
        "DELETE FROM key_imports WHERE key_id = {}",
        s.db.key(&key)
    ))
    .await;
    eventually("the node to stop using the material", || {
        let (c, key) = (c.clone(), key.clone());
        async move {
            let r = c
                .encrypt()
                .key_id(&key)
                .plaintext(Blob::new(b"after".to_vec()))
                .send()
                .await;
            r.as_ref()
                .err()
                .and_then(aws_sdk_kms::error::ProvideErrorMetadata::code)
                == Some("KeyUnavailableException")
        }
    })
    .await;
}

/// DescribeKey's `ValidTo` is "the earliest time at which any imported key material
/// permanently associated with this KMS key expires" (AWS): one expiring material makes the
/// key unusable. Before, it was the current material's, so a key whose older material expired
/// first showed the later date. A material pending rotation is not part of the key yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_key_shows_the_earliest_valid_to_of_the_keys_materials() {
    use aws_sdk_kms::types::{ExpirationModelType, ImportType};
    let s = Server::start().await;
    let c = s.client();
    let key = external_key(&c, KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;
    let now = chrono::Utc::now().timestamp();
    let (earlier, later) = (now + 86_400, now + 2 * 86_400);
    let expiry = |m: &aws_sdk_kms::types::KeyMetadata| {
        (m.expiration_model.clone(), m.valid_to.map(|t| t.secs()))
    };
    let expires_at = |t: i64| (Some(ExpirationModelType::KeyMaterialExpires), Some(t));
    import_wrapped(&c, &key, &random(32), Some(earlier), None, None)
        .await
        .unwrap();
    assert_eq!(expiry(&metadata(&c, &key).await), expires_at(earlier));
    let second = import_wrapped(
        &c,
        &key,
        &random(32),
        Some(later),
        Some(ImportType::NewKeyMaterial),
        None,
    )
    .await
    .unwrap()
    .key_material_id
    .unwrap();
    assert_eq!(expiry(&metadata(&c, &key).await), expires_at(earlier));
    rotate_now(&c, &key).await;
    let m = metadata(&c, &key).await;
    assert_eq!(m.current_key_material_id.as_deref(), Some(second.as_str()));
    assert_eq!(expiry(&m), expires_at(earlier));
}
