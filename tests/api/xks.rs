//! The service as an External Key Store (XKS) proxy for AWS KMS: the proxy API as the
//! specification (`aws/aws-kms-xksproxy-api-spec` 1.0.2) defines it, called the way AWS KMS
//! calls it — HTTP POSTs signed with SigV4 for `kms-xks-proxy` by the independent `aws-sigv4`
//! crate — on the real server, token and database.

use crate::support::*;
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use base64::Engine;
use serde_json::{json, Value};
use std::time::SystemTime;

const PREFIX: &str = "/tenant-a";
/// The Region AWS KMS calls from (not one this service serves).
const KMS_REGION: &str = "eu-central-1";

struct Proxy {
    s: Server,
    /// Where requests go: the server, or another node of it.
    endpoint: Option<String>,
    id: String,
    secret: String,
    /// Another tenant's credential: the key store under `/tenant-b` (its key `b1`).
    other: (String, String),
    /// The ARN behind the external key `k1`.
    k1: String,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().unwrap())
        .unwrap()
}

/// A server whose settings expose four external keys under `PREFIX`: `k1` (encrypt and
/// decrypt), `enc-only`, `dec-only`, and `hmac` (an HMAC key: not for encryption).
async fn proxy() -> Proxy {
    proxy_with(&[]).await
}

async fn proxy_with(env: &[(&str, &str)]) -> Proxy {
    let mut s = Server::start_with(env).await;
    let c = s.client();
    let arn = |m: aws_sdk_kms::types::KeyMetadata| m.arn.unwrap();
    let mut arns = Vec::new();
    for _ in 0..3 {
        arns.push(arn(c
            .create_key()
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()));
    }
    let hmac = arn(c
        .create_key()
        .key_spec(KeySpec::Hmac256)
        .key_usage(KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap());
    // A credential in the form AWS KMS takes (an id of 20-30 characters A-Z2-7, a secret of
    // 43-64 characters), imported for a user of this service: of an account of its own, as
    // the proxy's credential has nothing to do with the keys' account.
    let (user, _, _, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("444455556666", "xks", None));
    let (id, secret) = (
        "XKSPROXYTENANTA2345ABCDE".to_string(),
        "kR3mX9pQ2vL8wN4tY6uZ1aB5cD7eF0gH+jK/lM2nO4pQ6rS8tU0vW2xY4zA6bC8=".to_string(),
    );
    let out = tokio::task::block_in_place(|| {
        s.admin(
            &[
                "create-access-key",
                "--user-arn",
                &user,
                "--access-key-id",
                &id,
            ],
            &[("KMS_IMPORT_SECRET_ACCESS_KEY", &secret)],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The imported credential authenticates on the AWS API too (a secret over 60 characters:
    // its HMAC key is hashed first, RFC 2104; the user has no permission, so AccessDenied).
    let probe = s
        .client_with(&id, &secret, REGION, None)
        .list_keys()
        .send()
        .await;
    assert_eq!(code(probe), "AccessDeniedException");
    let other =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "xks-b", None));
    let conf = s.token.dir.path().join("xks.toml");
    std::fs::write(
        &conf,
        format!(
            "[[xks_stores]]\nuri_path_prefix = \"{PREFIX}\"\naccess_key_ids = [\"{id}\"]\n\
             [[xks_stores.keys]]\nxks_key_id = \"k1\"\nkey_arn = \"{}\"\n\
             [[xks_stores.keys]]\nxks_key_id = \"enc-only\"\nkey_arn = \"{}\"\nusage = [\"ENCRYPT\"]\n\
             [[xks_stores.keys]]\nxks_key_id = \"dec-only\"\nkey_arn = \"{}\"\nusage = [\"DECRYPT\"]\n\
             [[xks_stores.keys]]\nxks_key_id = \"hmac\"\nkey_arn = \"{hmac}\"\n\
             [[xks_stores.keys]]\nxks_key_id = \"app-only\"\nkey_arn = \"{}\"\n\
             allowed_principals = [\"arn:aws:iam::111122223333:role/app\"]\n\
             [[xks_stores.keys]]\nxks_key_id = \"ops-only\"\nkey_arn = \"{}\"\n\
             allowed_principals = [\"arn:aws:iam::111122223333:role/ops-*\"]\n\
             [[xks_stores]]\nuri_path_prefix = \"/tenant-b\"\naccess_key_ids = [\"{}\"]\n\
             [[xks_stores.keys]]\nxks_key_id = \"b1\"\nkey_arn = \"{}\"\n",
            arns[0], arns[1], arns[2], arns[0], arns[0], other.1, arns[1]
        ),
    )
    .unwrap();
    s.env
        .push(("KMS_CONFIG".into(), conf.to_str().unwrap().into()));
    tokio::task::block_in_place(|| s.spawn());
    Proxy {
        other: (other.1.clone(), other.2.clone()),
        endpoint: None,
        k1: arns[0].clone(),
        s,
        id,
        secret,
    }
}

impl Proxy {
    /// POST `body` to `path`, signed as AWS KMS signs (with `secret` for this access key).
    async fn post_as(&self, path: &str, body: &Value, secret: Option<&str>) -> (u16, Value) {
        self.post_by(path, body, &self.id.clone(), secret).await
    }

    /// POST signed with access key `id` (and `secret`, if any).
    async fn post_by(
        &self,
        path: &str,
        body: &Value,
        id: &str,
        secret: Option<&str>,
    ) -> (u16, Value) {
        let endpoint = self
            .endpoint
            .clone()
            .unwrap_or_else(|| self.s.endpoint.clone());
        let url = format!("{endpoint}{path}");
        let bytes = serde_json::to_vec(body).unwrap();
        let mut req = http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("host", endpoint.trim_start_matches("http://"))
            .header("content-type", "application/json")
            .body(bytes)
            .unwrap();
        if let Some(secret) = secret {
            sign_request_for(
                &mut req,
                id,
                secret,
                KMS_REGION,
                "kms-xks-proxy",
                SystemTime::now(),
            );
        }
        let mut rb = reqwest::Client::new().post(&url);
        for (k, v) in req.headers() {
            if k.as_str() != "host" {
                rb = rb.header(k.as_str(), v.to_str().unwrap());
            }
        }
        let resp = rb.body(req.into_body()).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(path, body, Some(&self.secret.clone())).await
    }

    fn path(&self, key: &str, op: &str) -> String {
        format!("{PREFIX}/kms/xks/v1/keys/{key}/{op}")
    }

    async fn encrypt(&self, key: &str, pt: &[u8], aad: &[u8]) -> (u16, Value) {
        let body = json!({
            "requestMetadata": meta("Encrypt", Some(&self.k1)),
            "plaintext": b64(pt),
            "additionalAuthenticatedData": b64(aad),
            "encryptionAlgorithm": "AES_GCM",
            "ciphertextDataIntegrityValueAlgorithm": "SHA_256",
        });
        self.post(&self.path(key, "encrypt"), &body).await
    }

    async fn decrypt(&self, key: &str, enc: &Value, aad: &[u8]) -> (u16, Value) {
        let body = json!({
            "requestMetadata": meta("Decrypt", Some(&self.k1)),
            "ciphertext": enc["ciphertext"],
            "ciphertextMetadata": enc["ciphertextMetadata"],
            "initializationVector": enc["initializationVector"],
            "authenticationTag": enc["authenticationTag"],
            "additionalAuthenticatedData": b64(aad),
            "encryptionAlgorithm": "AES_GCM",
        });
        self.post(&self.path(key, "decrypt"), &body).await
    }
}

/// The `requestMetadata` AWS KMS sends.
fn meta(op: &str, kms_key_arn: Option<&str>) -> Value {
    let mut m = json!({
        "awsPrincipalArn": "arn:aws:iam::111122223333:role/app",
        "kmsOperation": op,
        "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae",
    });
    if let Some(arn) = kms_key_arn {
        m["kmsKeyArn"] = json!(arn);
    }
    m
}

fn error(r: &(u16, Value)) -> (u16, &str) {
    (r.0, r.1["errorName"].as_str().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_api_encrypts_and_decrypts_as_the_specification_defines() {
    let p = proxy().await;
    let health = p
        .post(
            &format!("{PREFIX}/kms/xks/v1/health"),
            &json!({"requestMetadata": {"kmsRequestId": "r1", "kmsOperation": "KmsHealthCheck"}}),
        )
        .await;
    assert_eq!(health.0, 200, "{:?}", health.1);
    assert_eq!(health.1["xksProxyFleetSize"], 1);
    assert_eq!(health.1["ekmFleetDetails"][0]["healthStatus"], "ACTIVE");

    let md = p
        .post(
            &p.path("k1", "metadata"),
            &json!({"requestMetadata": meta("CreateKey", None)}),
        )
        .await;
    assert_eq!(md.0, 200);
    assert_eq!(
        md.1,
        json!({"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"], "keyStatus": "ENABLED"})
    );

    // Encrypt: GCM output split as the specification asks, with its integrity value.
    let aad = b"project=nile,department=marketing";
    let pt = b"AWS KMS's own ciphertext, encrypted again here";
    let enc = p.encrypt("k1", pt, aad).await;
    assert_eq!(enc.0, 200, "{:?}", enc.1);
    let (ct, iv, tag, m) = (
        unb64(&enc.1["ciphertext"]),
        unb64(&enc.1["initializationVector"]),
        unb64(&enc.1["authenticationTag"]),
        unb64(&enc.1["ciphertextMetadata"]),
    );
    assert_eq!((ct.len(), iv.len(), tag.len()), (pt.len(), 12, 16));
    assert!(m.len() <= 20);
    let mut covered = aad.to_vec();
    for part in [&m, &iv, &ct, &tag] {
        covered.extend_from_slice(part);
    }
    let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &covered);
    assert_eq!(unb64(&enc.1["ciphertextDataIntegrityValue"]), want.as_ref());
    let dec = p.decrypt("k1", &enc.1, aad).await;
    assert_eq!(dec.0, 200, "{:?}", dec.1);
    assert_eq!(unb64(&dec.1["plaintext"]), pt);

    // Anything changed is InvalidCiphertextException: the AAD, the metadata, the tag.
    assert_eq!(
        error(&p.decrypt("k1", &enc.1, b"other").await),
        (400, "InvalidCiphertextException")
    );
    let mut moved = enc.1.clone();
    moved["ciphertextMetadata"] = json!(b64(&[1, 0, 0, 0, 9]));
    assert_eq!(
        error(&p.decrypt("k1", &moved, aad).await).1,
        "InvalidCiphertextException"
    );
    let mut bad_tag = enc.1.clone();
    let mut t = tag.clone();
    t[0] ^= 1;
    bad_tag["authenticationTag"] = json!(b64(&t));
    assert_eq!(
        error(&p.decrypt("k1", &bad_tag, aad).await),
        (400, "InvalidCiphertextException")
    );
    // Another external key cannot open it.
    assert_eq!(
        error(&p.decrypt("dec-only", &enc.1, aad).await).1,
        "InvalidCiphertextException"
    );

    // The key behind k1 rotates: what it encrypted before still decrypts.
    let c = p.s.client();
    c.rotate_key_on_demand().key_id(&p.k1).send().await.unwrap();
    let mut rotated = false;
    for _ in 0..50 {
        let after = p.encrypt("k1", pt, aad).await;
        if after.1["ciphertextMetadata"] != enc.1["ciphertextMetadata"] {
            rotated = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(rotated, "the rotation did not reach the proxy");
    assert_eq!(
        unb64(&p.decrypt("k1", &enc.1, aad).await.1["plaintext"]),
        pt
    );

    // Disabled: its status says so, and it neither encrypts nor decrypts.
    c.disable_key().key_id(&p.k1).send().await.unwrap();
    let md = p
        .post(
            &p.path("k1", "metadata"),
            &json!({"requestMetadata": meta("DescribeKey", Some(&p.k1))}),
        )
        .await;
    assert_eq!(md.1["keyStatus"], "DISABLED");
    assert_eq!(
        error(&p.encrypt("k1", pt, aad).await),
        (400, "InvalidStateException")
    );
    assert_eq!(
        error(&p.decrypt("k1", &enc.1, aad).await),
        (400, "InvalidStateException")
    );

    // Every call is in the trail, under the key's ARN, without the data.
    let trail =
        p.s.db
            .strings("SELECT body FROM audit_events WHERE event_name LIKE 'Xks%'")
            .await
            .join("\n");
    assert!(trail.contains("XksEncrypt") && trail.contains("XksDecrypt") && trail.contains(&p.k1));
    // Each call mapped to the key is filed under it (its owner's trail viewer finds it
    // there), though the proxy's credential is another account's. (A call refused before its
    // key was looked up names the key only in the metadata the caller sent: not filed.)
    let filed =
        p.s.db
            .strings(&format!(
                "SELECT event_name FROM audit_events WHERE event_name LIKE 'Xks%' \
                 AND body LIKE '%\"keyId\":\"{}\"%'",
                p.k1
            ))
            .await;
    let under_key =
        p.s.db
            .int(&format!(
                "SELECT count(*) FROM audit_events WHERE event_name LIKE 'Xks%' \
                 AND CAST(key_arns AS TEXT) LIKE '%{}%'",
                p.k1
            ))
            .await;
    assert!(!filed.is_empty());
    assert_eq!(under_key, filed.len() as i64, "{filed:?}");
    assert!(trail.contains("4112f4d6-db54-4af4-ae30-c55a22a8dfae"));
    assert!(
        !trail.contains(&b64(pt)) && !trail.contains(&b64(&ct)),
        "{trail}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_error_of_the_specification_is_answered_with_its_name_and_status() {
    let p = proxy().await;
    let aad = b"ctx";
    let enc = p.encrypt("k1", b"data", aad).await;
    assert_eq!(enc.0, 200);
    let md = json!({"requestMetadata": meta("DescribeKey", Some(&p.k1))});

    // Authentication: a wrong secret, no signature, another service's signature.
    assert_eq!(
        error(
            &p.post_as(
                &p.path("k1", "metadata"),
                &md,
                Some("not-the-secret-of-this-key-000000000")
            )
            .await
        ),
        (401, "AuthenticationFailedException")
    );
    assert_eq!(
        error(&p.post_as(&p.path("k1", "metadata"), &md, None).await),
        (401, "AuthenticationFailedException")
    );
    // Tenants are apart: each key store's credential opens its own prefix only, and its own
    // keys only (another tenant's key id is not found under its prefix).
    let (b_id, b_secret) = p.other.clone();
    let b_md = json!({"requestMetadata": meta("DescribeKey", None)});
    assert_eq!(
        error(
            &p.post_by(&p.path("k1", "metadata"), &md, &b_id, Some(&b_secret))
                .await
        ),
        (401, "AuthenticationFailedException")
    );
    let secret_a = p.secret.clone();
    assert_eq!(
        error(
            &p.post_by(
                "/tenant-b/kms/xks/v1/keys/b1/metadata",
                &b_md,
                &p.id.clone(),
                Some(&secret_a)
            )
            .await
        ),
        (401, "AuthenticationFailedException")
    );
    assert_eq!(
        p.post_by(
            "/tenant-b/kms/xks/v1/keys/b1/metadata",
            &b_md,
            &b_id,
            Some(&b_secret)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        error(
            &p.post_by(
                "/tenant-b/kms/xks/v1/keys/k1/metadata",
                &b_md,
                &b_id,
                Some(&b_secret)
            )
            .await
        ),
        (404, "KeyNotFoundException")
    );
    // Paths: another prefix, an unknown operation, an invalid key id.
    assert_eq!(
        error(&p.post("/other/kms/xks/v1/keys/k1/metadata", &md).await),
        (404, "InvalidUriPathException")
    );
    assert_eq!(
        error(&p.post(&p.path("k1", "sign"), &md).await),
        (404, "InvalidUriPathException")
    );
    assert_eq!(
        error(&p.post(&p.path("bad%20id", "metadata"), &md).await),
        (404, "InvalidUriPathException")
    );
    // A key the mapping does not name.
    assert_eq!(
        error(&p.post(&p.path("unknown", "metadata"), &md).await),
        (404, "KeyNotFoundException")
    );
    // Malformed bodies and members.
    assert_eq!(
        error(&p.post(&p.path("k1", "metadata"), &json!({})).await),
        (400, "ValidationException")
    );
    assert_eq!(
        error(
            &p.post(&p.path("k1", "metadata"), &json!({"requestMetadata": {}}))
                .await
        ),
        (400, "ValidationException")
    );
    let mut no_arn = json!({
        "requestMetadata": meta("Encrypt", None),
        "plaintext": b64(b"x"),
        "encryptionAlgorithm": "AES_GCM",
    });
    assert_eq!(
        error(&p.post(&p.path("k1", "encrypt"), &no_arn).await),
        (400, "ValidationException")
    );
    no_arn["requestMetadata"] = meta("Encrypt", Some(&p.k1));
    no_arn["encryptionAlgorithm"] = json!("AES_CBC");
    assert_eq!(
        error(&p.post(&p.path("k1", "encrypt"), &no_arn).await),
        (400, "ValidationException")
    );
    no_arn["encryptionAlgorithm"] = json!("AES_GCM");
    no_arn["plaintext"] = json!("not base64!");
    assert_eq!(
        error(&p.post(&p.path("k1", "encrypt"), &no_arn).await),
        (400, "ValidationException")
    );
    let mut short_tag = enc.1.clone();
    short_tag["authenticationTag"] = json!(b64(&[0; 8]));
    assert_eq!(
        error(&p.decrypt("k1", &short_tag, aad).await),
        (400, "ValidationException")
    );
    // Key usage: the mapping's restrictions, and a key that is not for encryption.
    assert_eq!(
        error(&p.encrypt("dec-only", b"x", aad).await),
        (400, "InvalidKeyUsageException")
    );
    assert_eq!(
        error(&p.decrypt("enc-only", &enc.1, aad).await),
        (400, "InvalidKeyUsageException")
    );
    assert_eq!(
        error(&p.encrypt("hmac", b"x", aad).await),
        (400, "InvalidKeyUsageException")
    );
    // Secondary authorization: a key the operator allows to some AWS principals only. The
    // requests here come from role/app: allowed by name, refused where only role/ops-* is.
    assert_eq!(p.encrypt("app-only", b"x", aad).await.0, 200);
    assert_eq!(
        error(&p.encrypt("ops-only", b"x", aad).await),
        (403, "AccessDeniedException")
    );
    assert_eq!(
        error(&p.post(&p.path("ops-only", "metadata"), &md).await),
        (403, "AccessDeniedException")
    );
    let mut ops = md.clone();
    ops["requestMetadata"]["awsPrincipalArn"] = json!("arn:aws:iam::111122223333:role/ops-admin");
    assert_eq!(p.post(&p.path("ops-only", "metadata"), &ops).await.0, 200);
    // Beyond what this proxy takes (the specification's minimum is 4300 bytes).
    assert_eq!(
        error(&p.encrypt("k1", &vec![7u8; 70_000], aad).await),
        (501, "UnsupportedOperationException")
    );
    // A GET is refused with 405.
    let get = reqwest::Client::new()
        .get(format!("{}{}", p.s.endpoint, p.path("k1", "metadata")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 405);
    // The main API is unaffected.
    p.s.client().list_keys().send().await.unwrap();

    // A flood of forged requests: each refused, the trail records the failures within the
    // source's budget one by one (and the rest as a summary), not forty events.
    for _ in 0..40 {
        let r = p
            .post_as(
                &p.path("k1", "metadata"),
                &md,
                Some("forged-secret-forged-secret-forged-sec"),
            )
            .await;
        assert_eq!(error(&r), (401, "AuthenticationFailedException"));
    }
    let recorded =
        p.s.db
            .int(
                "SELECT count(*) FROM audit_events WHERE event_name = 'XksGetKeyMetadata' \
             AND body LIKE '%AuthenticationFailedException%'",
            )
            .await;
    assert!(
        (1..30).contains(&recorded),
        "{recorded} failures recorded one by one"
    );
}

/// Every node serves the proxy API (what one encrypts another decrypts), and each logical key
/// store has its request rate: beyond it, `ThrottlingException` (429).
#[tokio::test(flavor = "multi_thread")]
async fn every_node_serves_it_and_each_key_store_is_throttled() {
    let mut p = proxy_with(&[("KMS_XKS_REQUESTS_PER_SECOND", "5")]).await;
    let aad = b"ctx";
    let enc = p.encrypt("k1", b"data", aad).await;
    assert_eq!(enc.0, 200, "{:?}", enc.1);
    let second = tokio::task::block_in_place(|| p.s.second_node());
    p.endpoint = Some(second.endpoint.clone());
    let dec = p.decrypt("k1", &enc.1, aad).await;
    assert_eq!(dec.0, 200, "{:?}", dec.1);
    assert_eq!(unb64(&dec.1["plaintext"]), b"data");
    let mut throttled = 0;
    for _ in 0..20 {
        if error(&p.decrypt("k1", &enc.1, aad).await) == (429, "ThrottlingException") {
            throttled += 1;
        }
    }
    assert!(
        throttled > 0,
        "20 requests at once were all taken at 5 per second"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(p.decrypt("k1", &enc.1, aad).await.0, 200);
}

/// The token lost (its storage taken away and every session on it closed, by the fault hook):
/// a proxy call is the specification's `DependencyTimeoutException` (503, which AWS KMS
/// retries), answered at once, never a hang and never a plaintext error.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_token_is_the_specifications_dependency_timeout() {
    let fault = tempfile::tempdir().unwrap().keep().join("fault");
    let p = proxy_with(&[
        ("KMS_FAULT_INJECTION_FILE", fault.to_str().unwrap()),
        ("KMS_ENABLE_TEST_HOOKS", "true"),
    ])
    .await;
    let aad = b"context";
    assert_eq!(p.encrypt("k1", b"x", aad).await.0, 200);
    // SoftHSM2 keeps the token in a directory of its own; Kryoptic keeps its database open
    // and comes back at once (then the call simply works).
    let storage = if kryoptic() {
        p.s.token.dir.path().join("token-0.sql")
    } else {
        std::fs::read_dir(p.s.token.dir.path().join("tokens"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|d| d.is_dir())
            .unwrap()
    };
    let hidden = storage.with_extension("lost");
    std::fs::rename(&storage, &hidden).unwrap();
    std::fs::write(&fault, "close-sessions").unwrap();
    p.s.signal("USR1");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let r = p.encrypt("k1", b"x", aad).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    if kryoptic() {
        assert!(
            r.0 == 200 || error(&r) == (503, "DependencyTimeoutException"),
            "{r:?}"
        );
    } else {
        assert_eq!(error(&r), (503, "DependencyTimeoutException"), "{r:?}");
    }
    std::fs::rename(&hidden, &storage).unwrap();
}
