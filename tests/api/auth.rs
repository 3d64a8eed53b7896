//! SigV4: every way a request can fail authentication, through the SDK and raw HTTP.

use crate::support::*;
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn sigv4_failures() {
    let s = Server::start().await;
    // A correct client works.
    s.client().list_keys().send().await.unwrap();

    // Wrong secret.
    let bad = s.client_with(
        &s.access_key_id,
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        REGION,
        None,
    );
    let (c, m) = message(bad.list_keys().send().await);
    assert_eq!(c, "InvalidSignatureException");
    assert!(
        m.starts_with("The request signature we calculated does not match"),
        "{m}"
    );

    // Unknown access key.
    let unknown = s.client_with("AKIAIOSFODNN7EXAMPLE", &s.secret, REGION, None);
    assert_eq!(
        code(unknown.list_keys().send().await),
        "UnrecognizedClientException"
    );

    // Signed more than 5 minutes ago (a replay) and more than 5 minutes ahead.
    let old = s.client_with(
        &s.access_key_id,
        &s.secret,
        REGION,
        Some(SystemTime::now() - Duration::from_secs(6 * 60)),
    );
    let (c, m) = message(old.list_keys().send().await);
    assert_eq!(c, "InvalidSignatureException");
    assert!(m.starts_with("Signature expired"), "{m}");
    let future = s.client_with(
        &s.access_key_id,
        &s.secret,
        REGION,
        Some(SystemTime::now() + Duration::from_secs(6 * 60)),
    );
    let (c, m) = message(future.list_keys().send().await);
    assert_eq!(c, "InvalidSignatureException");
    assert!(m.starts_with("Signature not yet current"), "{m}");
    // Within the skew is fine.
    let skewed = s.client_with(
        &s.access_key_id,
        &s.secret,
        REGION,
        Some(SystemTime::now() - Duration::from_secs(4 * 60)),
    );
    skewed.list_keys().send().await.unwrap();

    // A region this server does not serve.
    let (c, m) = message(s.client_in("ap-south-1").list_keys().send().await);
    assert_eq!(c, "InvalidSignatureException");
    assert!(m.contains("valid region"), "{m}");
}

#[tokio::test]
async fn raw_requests_without_or_with_broken_signatures() {
    let s = Server::start().await;
    let body = b"{}".to_vec();
    let ct = "application/x-amz-json-1.1";
    let r = s
        .raw(Some("TrentService.ListKeys"), ct, body.clone(), false)
        .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "MissingAuthenticationTokenException")
    );

    // A captured, valid request replayed 6 minutes later is refused.
    let at = SystemTime::now() - Duration::from_secs(6 * 60);
    let r = raw_request(
        &s.endpoint,
        &s.access_key_id,
        &s.secret,
        REGION,
        Some("TrentService.ListKeys"),
        ct,
        body.clone(),
        true,
        at,
    )
    .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "InvalidSignatureException")
    );
    assert!(r.message().starts_with("Signature expired"));

    // Valid signature, then the body is changed in flight.
    let signed = raw_request(
        &s.endpoint,
        &s.access_key_id,
        &s.secret,
        REGION,
        Some("TrentService.ListKeys"),
        ct,
        body.clone(),
        true,
        SystemTime::now(),
    )
    .await;
    assert_eq!(signed.status, 200, "{:?}", signed.json);
    let client = reqwest::Client::new();
    let send = |auth: &str, date: &str, body: &'static str| {
        client
            .post(format!("{}/", s.endpoint))
            .header("content-type", ct)
            .header("x-amz-target", "TrentService.ListKeys")
            .header("x-amz-date", date.to_string())
            .header("authorization", auth.to_string())
            .body(body)
            .send()
    };
    let now = chrono_like_now();
    let day = &now[..8];
    let forged = format!(
        "AWS4-HMAC-SHA256 Credential={}/{day}/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
        s.access_key_id,
        "0".repeat(64)
    );
    let r = send(&forged, &now, "{}").await.unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["__type"], "InvalidSignatureException");

    for incomplete in [
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{day}/us-east-1/kms/aws4_request",
            s.access_key_id
        ),
        "AWS4-HMAC-SHA256 Credential=abc, SignedHeaders=host, Signature=00".to_string(),
        "Bearer abc".to_string(),
    ] {
        let r = send(&incomplete, &now, "{}").await.unwrap();
        assert_eq!(r.status(), 400);
        let j: serde_json::Value = r.json().await.unwrap();
        assert_eq!(j["__type"], "IncompleteSignatureException", "{incomplete}");
    }
}

/// The current time as an ISO-8601 basic timestamp.
fn chrono_like_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The operation header must be signed: otherwise a request for
/// GenerateDataKeyWithoutPlaintext could be turned into GenerateDataKey in flight.
#[tokio::test]
async fn the_operation_must_be_signed() {
    let s = Server::start().await;
    let ct = "application/x-amz-json-1.1";
    // Signed without any X-Amz-Target, which is then added.
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("{}/", s.endpoint))
        .header("host", s.endpoint.trim_start_matches("http://"))
        .header("content-type", ct)
        .body(b"{}".to_vec())
        .unwrap();
    sign_request(
        &mut req,
        &s.access_key_id,
        &s.secret,
        REGION,
        SystemTime::now(),
    );
    let mut rb = reqwest::Client::new()
        .post(format!("{}/", s.endpoint))
        .header("x-amz-target", "TrentService.ListKeys");
    for (k, v) in req.headers() {
        if k.as_str() != "host" {
            rb = rb.header(k.as_str(), v.to_str().unwrap());
        }
    }
    let r = rb.body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    assert_eq!(j["__type"], "InvalidSignatureException");
    assert!(
        j["message"].as_str().unwrap().contains("x-amz-target"),
        "{j}"
    );
}
