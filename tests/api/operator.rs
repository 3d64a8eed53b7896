//! The operator's view: `/healthz` and `/readyz` without signing, Prometheus metrics on their
//! own listener, and JSON logs whose lines carry the request id.

use crate::support::*;
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use std::collections::HashMap;

/// `GET url`: (status, content type, body).
pub async fn get(url: &str) -> (u16, String, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.text().await.unwrap())
}

/// Samples of an OpenMetrics text: `name{labels}` → value.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn sample(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in {:#?}", m.keys().collect::<Vec<_>>()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_request_ids_in_json_logs() {
    let s = Server::start_with(&[
        ("KMS_METRICS_LISTEN", "127.0.0.1:0"),
        ("KMS_LOG_FORMAT", "json"),
    ])
    .await;
    let metrics = s.metrics.clone().expect("the metrics URL is printed");
    let base = metrics.trim_end_matches("/metrics").to_string();

    // Health and readiness: unsigned, on the API listener and on the metrics listener.
    for root in [s.endpoint.clone(), base.clone()] {
        let (status, _, body) = get(&format!("{root}/healthz")).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (status, ct, body) = get(&format!("{root}/readyz")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["token"]["ok"], true);
        assert_eq!(v["database"]["ok"], true);
    }
    // Any other unsigned request is still refused.
    let (status, _, _) = get(&format!("{}/metrics", s.endpoint)).await;
    assert_ne!(status, 200);

    let c = s.client();
    let key = new_key(&c).await;
    for _ in 0..3 {
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap();
    }
    let r = c
        .decrypt()
        .ciphertext_blob(Blob::new(vec![9u8; 80]))
        .send()
        .await;
    assert_eq!(code(r), "InvalidCiphertextException");

    let (status, ct, text) = get(&metrics).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let m = samples(&text);
    assert_eq!(
        sample(&m, r#"kms_requests_total{operation="Encrypt",error=""}"#),
        3.0
    );
    assert_eq!(
        sample(&m, r#"kms_requests_total{operation="CreateKey",error=""}"#),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"kms_requests_total{operation="Decrypt",error="InvalidCiphertextException"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            r#"kms_request_duration_seconds_count{operation="Encrypt"}"#
        ),
        3.0
    );
    assert!(
        sample(
            &m,
            r#"kms_request_duration_seconds_sum{operation="Encrypt"}"#
        ) > 0.0
    );
    assert!(
        sample(
            &m,
            r#"kms_request_duration_seconds_bucket{le="+Inf",operation="Encrypt"}"#
        ) == 3.0
    );
    assert_eq!(sample(&m, "kms_token_up"), 1.0);
    assert!(sample(&m, "kms_token_sessions_max") >= 1.0);
    assert!(m.contains_key("kms_token_sessions_in_use"));
    let token_calls: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("kms_token_calls_total"))
        .map(|(_, v)| v)
        .sum();
    assert!(token_calls >= 4.0, "{text}");
    assert!(
        sample(
            &m,
            r#"kms_cache_lookups_total{cache="key_material",result="hit"}"#
        ) >= 2.0,
        "{text}"
    );
    assert!(sample(&m, "kms_audit_append_duration_seconds_count") >= 5.0);
    assert!(sample(&m, "kms_audit_batch_events_count") >= 1.0);
    // Where each request's time went: every stage of each Encrypt counted once, the stages
    // together within the requests' own time, and the event's commit taking some of it.
    let mut staged = 0.0;
    for stage in ["receive", "authenticate", "operation", "record", "respond"] {
        let series = format!(r#"operation="Encrypt",stage="{stage}""#);
        assert_eq!(
            sample(
                &m,
                &format!("kms_request_stage_duration_seconds_count{{{series}}}")
            ),
            3.0,
            "{stage}"
        );
        staged += sample(
            &m,
            &format!("kms_request_stage_duration_seconds_sum{{{series}}}"),
        );
    }
    let record = r#"kms_request_stage_duration_seconds_sum{operation="Encrypt",stage="record"}"#;
    assert!(sample(&m, record) > 0.0);
    assert!(
        staged
            <= sample(
                &m,
                r#"kms_request_duration_seconds_sum{operation="Encrypt"}"#
            ),
        "{text}"
    );

    // JSON logs: every line is an object; a request's lines carry its request id, including
    // lines written below the API layer.
    let rotated = c.rotate_key_on_demand().key_id(&key).send().await.unwrap();
    let id = rotated.request_id().expect("a request id").to_string();
    let ok = c.list_keys().send().await.unwrap();
    let ok_id = ok.request_id().expect("a request id").to_string();
    let log = s.server_log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |id: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["request_id"] == id)
            .collect()
    };
    for id in [&id, &ok_id] {
        let mine = of(id);
        assert!(
            mine.iter().any(|l| l["fields"]["message"] == "request"),
            "{id}: {mine:#?}"
        );
    }
    assert!(
        of(&id)
            .iter()
            .any(|l| l["fields"]["message"] == "on-demand rotation started"),
        "the domain layer's lines carry the id too: {log}"
    );
    for l in &lines {
        if l["fields"]["message"] == "request" {
            assert!(l["span"]["request_id"].is_string(), "{l}");
        }
    }

    // Readiness follows the database's migrations: one missing → not ready.
    s.db.execute(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .await;
    // The operator's listener says why; the API listener, which anyone reaching the port may
    // ask, says only that a check failed; the log says why.
    let (status, _, body) = get(&format!("{base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["token"]["ok"], true);
    assert!(
        v["database"]["error"]
            .as_str()
            .unwrap()
            .contains("is not applied"),
        "{body}"
    );
    let (status, _, body) = get(&format!("{}/readyz", s.endpoint)).await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["database"], serde_json::json!({"ok": false}), "{body}");
    assert!(!body.contains("is not applied"), "{body}");
    let log = s.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("not ready") && l.contains("is not applied")),
        "{log}"
    );
    // Liveness does not depend on it.
    assert_eq!(get(&format!("{}/healthz", s.endpoint)).await.0, 200);
}

/// A warm key's Encrypt and Decrypt are one token call each where the token has PKCS#11 3.0
/// messages (Kryoptic): a pooled session is set up for the key once, then every message is one
/// `C_EncryptMessage` or `C_DecryptMessage`. On a PKCS#11 2.40 token (SoftHSM2) each is two
/// calls. Counted by `kms_token_gcm_calls_total`; the bytes are the same either way (the
/// rolling-upgrade test decrypts each release's ciphertexts with the other).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_keys_encrypt_is_one_token_call_where_the_token_has_messages() {
    let s = Server::start_with(&[
        ("KMS_METRICS_LISTEN", "127.0.0.1:0"),
        ("KMS_HSM__SESSION_POOL_SIZE", "2"),
    ])
    .await;
    let c = s.client();
    let key = new_key(&c).await;
    let encrypt = |pt: Vec<u8>| {
        let req = c.encrypt().key_id(&key).plaintext(Blob::new(pt));
        async move {
            req.send()
                .await
                .unwrap()
                .ciphertext_blob
                .unwrap()
                .into_inner()
        }
    };
    let decrypt = |ct: Vec<u8>| c.decrypt().ciphertext_blob(Blob::new(ct)).send();
    let mut ciphertexts = Vec::new();
    for i in 0..21u8 {
        ciphertexts.push((i, encrypt(vec![i; 64]).await));
    }
    for (i, ct) in ciphertexts {
        let out = decrypt(ct).await.unwrap();
        assert_eq!(out.plaintext.unwrap().into_inner(), vec![i; 64]);
    }
    // A tampered ciphertext is refused as one, and the session's operation still serves.
    let mut bad = encrypt(b"tamper".to_vec()).await;
    *bad.last_mut().unwrap() ^= 1;
    assert_eq!(code(decrypt(bad).await), "InvalidCiphertextException");
    let out = decrypt(encrypt(b"after".to_vec()).await).await.unwrap();
    assert_eq!(out.plaintext.unwrap().into_inner(), b"after");

    let (_, _, text) = get(s.metrics.as_deref().unwrap()).await;
    let m = samples(&text);
    let calls = |call: &str| {
        m.get(&format!(r#"kms_token_gcm_calls_total{{call="{call}"}}"#))
            .copied()
            .unwrap_or(0.0)
    };
    // 23 encryptions and 23 decryptions (one refused) of the customer key.
    if kryoptic() {
        assert!(calls("message") >= 46.0, "{text}");
        // Two sessions, each set up once a direction, and once more for the session whose
        // decryption failed (a failed message ends its operation).
        assert!(calls("setup") <= 5.0, "{text}");
        assert!(calls("setup") >= 2.0, "{text}");
        assert_eq!(calls("two_calls"), 0.0, "{text}");
    } else {
        assert_eq!(calls("message"), 0.0, "{text}");
        assert_eq!(calls("setup"), 0.0, "{text}");
        assert!(calls("two_calls") >= 46.0, "{text}");
    }
}

/// One session, two keys in turns, one unwrapped key at a time: each message is made under its
/// own key. On a token with messages the session's operation is set up again at every change of
/// key (each set-up counted), with the other key's handle evicted in between (its operation ended
/// as stale), and every ciphertext decrypts to its own plaintext, so no message went out under
/// the key the session was set up for before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_serving_two_keys_in_turns_encrypts_each_under_its_own() {
    let s = Server::start_with(&[
        ("KMS_METRICS_LISTEN", "127.0.0.1:0"),
        ("KMS_HSM__SESSION_POOL_SIZE", "1"),
        ("KMS_CACHE__KEY_HANDLES", "1"),
    ])
    .await;
    let c = s.client();
    let keys = [new_key(&c).await, new_key(&c).await];
    let mut made = Vec::new();
    for i in 0..10u8 {
        let key = &keys[usize::from(i % 2)];
        let out = c
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(vec![i; 32]))
            .send()
            .await
            .unwrap();
        made.push((i, key.clone(), out.ciphertext_blob.unwrap()));
    }
    for (i, key, ct) in made {
        let out = c
            .decrypt()
            .key_id(&key)
            .ciphertext_blob(ct)
            .send()
            .await
            .unwrap();
        assert_eq!(out.plaintext.unwrap().into_inner(), vec![i; 32]);
        assert!(out.key_id.unwrap().ends_with(key.as_str()));
    }
    let (_, _, text) = get(s.metrics.as_deref().unwrap()).await;
    let m = samples(&text);
    let setups = m
        .get(r#"kms_token_gcm_calls_total{call="setup"}"#)
        .copied()
        .unwrap_or(0.0);
    if kryoptic() {
        // Ten encryptions and ten decryptions, the key changing at each.
        assert!(setups >= 20.0, "{text}");
    } else {
        assert_eq!(setups, 0.0, "{text}");
    }
}

/// The flood: anyone who reaches the API port asks `/readyz` as fast as it can. Each answer
/// used to run the checks again (a database query and a call on the token's pinned session,
/// which every unwrap needs); now one run answers every probe for a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_readiness_probes_costs_one_check_a_second() {
    let s = Server::start_with(&[("KMS_METRICS_LISTEN", "127.0.0.1:0")]).await;
    let metrics = s.metrics.clone().expect("the metrics URL is printed");
    let pinned = || async {
        let (_, _, text) = get(&metrics).await;
        samples(&text)
            .get(r#"kms_token_calls_total{session="pinned"}"#)
            .copied()
            .unwrap_or(0.0)
    };
    let before = pinned().await;
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    let url = format!("{}/readyz", s.endpoint);
    const N: usize = 400;
    let answers = futures_util::future::join_all((0..N).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == 200), "{answers:?}");
    let seconds = started.elapsed().as_secs_f64();
    let calls = pinned().await - before;
    assert!(
        calls <= seconds.ceil() + 2.0,
        "{calls} token calls for {N} probes in {seconds:.1} s"
    );
}
