//! SigV4 canonicalization and verification, against the real credential store: arbitrary
//! headers, paths, queries and bodies, either with an arbitrary `Authorization` header or
//! signed by the AWS SDK's own signer (`aws-sigv4`) with the administrator's real key — which
//! must then verify: the service and the SDK must agree on every canonical request.
//!
//! Input: `flags(1) \0 path \0 query \0 target \0 name \0 value … \0\0 body`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

fuzz_target!(|data: &[u8]| {
    let fx = kms::fuzzing::fixture();
    let (head, body) = match data.windows(2).position(|w| w == [0, 0]) {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut parts = head
        .split(|b| *b == 0)
        .map(|p| String::from_utf8_lossy(p).to_string());
    let flags = parts.next().and_then(|f| f.bytes().next()).unwrap_or(0);
    let path = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let mut extra = Vec::new();
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        extra.push((k, v));
    }
    // Parsing and canonicalization alone, with whatever the input holds.
    if let Ok(auth) = kms::api::sigv4::parse_authorization(&target) {
        let _ = kms::api::sigv4::string_to_sign(
            "POST",
            &path,
            &query,
            &hyper::HeaderMap::new(),
            &auth,
            "20260101T000000Z",
            body,
        );
    }
    let sign = flags & 1 == 1;
    // What an SDK can send: visible ASCII in header values it signs.
    let target = if sign && !printable(&target) {
        "Encrypt".to_string()
    } else {
        target
    };
    let path = if sign && !(path.starts_with('/') && printable(&path)) {
        "/".to_string()
    } else {
        path
    };
    let query = if sign
        && !query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'&')
    {
        String::new()
    } else {
        query
    };
    let mut req = http::Request::builder().method("POST");
    let uri = if query.is_empty() {
        format!("http://localhost{path}")
    } else {
        format!("http://localhost{path}?{query}")
    };
    req = req.uri(uri.as_str());
    let Ok(mut req) = req.body(body.to_vec()) else {
        return;
    };
    let h = req.headers_mut();
    h.insert("host", http::HeaderValue::from_static("localhost"));
    h.insert(
        "content-type",
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = http::HeaderValue::from_str(&format!("TrentService.{target}")) {
        h.insert("x-amz-target", v);
    }
    for (k, v) in &extra {
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) else {
            continue;
        };
        // Headers the signer owns.
        if sign
            && (name.as_str().starts_with("x-amz-")
                || name == "authorization"
                || name == "host"
                || !printable(v))
        {
            continue;
        }
        h.append(name, value);
    }
    if sign {
        let identity = aws_credential_types::Credentials::new(
            &fx.access_key_id,
            &fx.secret,
            None,
            None,
            "fuzz",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&fx.regions[0])
            .name("kms")
            .time(std::time::SystemTime::now())
            .settings(aws_sigv4::http_request::SigningSettings::default())
            .build()
            .unwrap()
            .into();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let Ok(signable) = aws_sigv4::http_request::SignableRequest::new(
            "POST",
            &uri,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            aws_sigv4::http_request::SignableBody::Bytes(req.body()),
        ) else {
            return;
        };
        let Ok(out) = aws_sigv4::http_request::sign(signable, &params) else {
            return;
        };
        out.into_parts().0.apply_to_request_http1x(&mut req);
    } else if let Ok(v) = http::HeaderValue::from_str(&target) {
        req.headers_mut().insert("authorization", v);
        req.headers_mut().insert(
            "x-amz-date",
            http::HeaderValue::from_static("20260101T000000Z"),
        );
    }
    let (parts, body) = req.into_parts();
    let r = fx.verify(
        "POST",
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &parts.headers,
        &body,
    );
    if sign {
        assert!(
            r.is_ok(),
            "a request signed by aws-sigv4 did not verify: {r:?}\n{parts:?}"
        );
    }
});
