//! SigV4 verification for `POST /` requests (AWS JSON 1.1). The canonical request is rebuilt
//! from what the client says it signed; the signature is compared in constant time.

use super::error::{ApiError, SIGNATURE_MISMATCH};
use crate::domain::credentials::{CredentialError, Credentials, SigningKey};
use aws_lc_rs::digest;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use hyper::HeaderMap;
use std::sync::Arc;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const MAX_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The parsed `Authorization` header.
#[derive(Debug, PartialEq, Eq)]
pub struct AuthHeader {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Result<AuthHeader, ApiError> {
    let value = value.trim();
    let (alg, rest) = value.split_once(' ').unwrap_or((value, ""));
    if alg != ALGORITHM {
        return Err(ApiError::IncompleteSignature(format!(
            "Unsupported AWS 'algorithm': '{alg}'"
        )));
    }
    let (mut cred, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some((k, v)) = part.split_once('=') {
            match k.trim() {
                "Credential" => cred = Some(v.trim()),
                "SignedHeaders" => signed = Some(v.trim()),
                "Signature" => sig = Some(v.trim()),
                _ => {}
            }
        }
    }
    let mut missing = Vec::new();
    if cred.is_none() {
        missing.push("Authorization header requires 'Credential' parameter.");
    }
    if sig.is_none() {
        missing.push("Authorization header requires 'Signature' parameter.");
    }
    if signed.is_none() {
        missing.push("Authorization header requires 'SignedHeaders' parameter.");
    }
    if !missing.is_empty() {
        return Err(ApiError::IncompleteSignature(missing.join(" ")));
    }
    let cred = cred.unwrap_or_default();
    let parts: Vec<&str> = cred.split('/').collect();
    if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
        return Err(ApiError::IncompleteSignature(format!(
            "Credential should have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{cred}'"
        )));
    }
    if parts[4] != "aws4_request" {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
            parts[4]
        )));
    }
    let signed_headers: Vec<String> = signed
        .unwrap_or_default()
        .split(';')
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(ApiError::InvalidSignature(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    Ok(AuthHeader {
        access_key_id: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers,
        signature: sig.unwrap_or_default().to_ascii_lowercase(),
    })
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data).as_ref())
}

fn canonical_header_value(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if values.is_empty() {
        None
    } else {
        Some(values.join(","))
    }
}

/// The canonical URI: the path with its dot segments removed (RFC 3986 §5.2.4) and
/// URI-encoded as SigV4 does for every service but S3 — every byte outside the unreserved set
/// and `/` as `%XX`, so an already-encoded path is encoded twice.
fn canonical_path(path: &str) -> String {
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let path = if path.contains('.') || path.contains("//") {
        let mut kept: Vec<&str> = Vec::new();
        for seg in path.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    kept.pop();
                }
                s => kept.push(s),
            }
        }
        let mut out = format!("/{}", kept.join("/"));
        let trailing = ["/", "/.", "/./", "/..", "/../"]
            .iter()
            .any(|e| path.ends_with(e));
        if trailing && !out.ends_with('/') {
            out.push('/');
        }
        out
    } else {
        path
    };
    uri_encode(&path, true)
}

/// `%XX` for every byte outside the unreserved set (and outside `/` when `keep_slash`).
fn uri_encode(v: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical query string: each parameter decoded as a form would be, then URI-encoded,
/// sorted by encoded name and value (as the AWS SDKs' signer builds it).
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request and the string to sign, as SigV4 defines them.
pub fn string_to_sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    auth: &AuthHeader,
    amz_date: &str,
    body: &[u8],
) -> String {
    let mut canonical_headers = String::new();
    for h in &auth.signed_headers {
        canonical_headers.push_str(h);
        canonical_headers.push(':');
        canonical_headers.push_str(&canonical_header_value(headers, h).unwrap_or_default());
        canonical_headers.push('\n');
    }
    let canonical_request = format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{}",
        canonical_path(path),
        canonical_query(query),
        auth.signed_headers.join(";"),
        hex_sha256(body)
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

fn parse_amz_date(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|n| n.and_utc())
}

fn parse_http_date(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

pub struct Verified {
    pub key: Arc<SigningKey>,
    pub region: String,
}

/// Authenticate a request. `regions` are the regions this server serves.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    creds: &Credentials,
    service: &str,
    regions: &[String],
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Verified, ApiError> {
    let Some(value) = headers.get(hyper::header::AUTHORIZATION) else {
        return Err(ApiError::MissingAuthenticationToken);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::IncompleteSignature("Authorization header is not ASCII".into()))?;
    let auth = parse_authorization(value)?;
    let (amz_date, when) = if let Some(d) = headers.get("x-amz-date") {
        let s = d.to_str().unwrap_or_default().to_string();
        let t = parse_amz_date(&s).ok_or_else(|| {
            ApiError::IncompleteSignature(format!(
                "Date must be in ISO-8601 'basic format'. Got '{s}'. See http://en.wikipedia.org/wiki/ISO_8601"
            ))
        })?;
        (s, t)
    } else if let Some(d) = headers.get(hyper::header::DATE) {
        let s = d.to_str().unwrap_or_default().to_string();
        let t = parse_http_date(&s).ok_or_else(|| {
            ApiError::IncompleteSignature(format!("Date header is not an RFC 2822 date: '{s}'"))
        })?;
        // The string to sign always carries the ISO-8601 basic form.
        (t.format("%Y%m%dT%H%M%SZ").to_string(), t)
    } else {
        return Err(ApiError::IncompleteSignature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        ));
    };
    // What selects the operation and the time must be covered by the signature.
    for required in ["x-amz-target", "x-amz-date", "x-amz-security-token"] {
        if headers.contains_key(required) && !auth.signed_headers.iter().any(|h| h == required) {
            return Err(ApiError::InvalidSignature(format!(
                "'{required}' must be a 'SignedHeader' in the AWS Authorization."
            )));
        }
    }
    let day = when.format("%Y%m%d").to_string();
    if auth.date != day {
        return Err(ApiError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{day}', from '{amz_date}'.",
            auth.date
        )));
    }
    if auth.service != service {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if !regions.iter().any(|r| r == &auth.region) {
        return Err(ApiError::InvalidSignature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            auth.region
        )));
    }
    let fmt = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    if when < now - MAX_SKEW {
        return Err(ApiError::InvalidSignature(format!(
            "Signature expired: {} is now earlier than {} ({} - 5 min.)",
            fmt(when),
            fmt(now - MAX_SKEW),
            fmt(now)
        )));
    }
    if when > now + MAX_SKEW {
        return Err(ApiError::InvalidSignature(format!(
            "Signature not yet current: {} is still later than {} ({} + 5 min.)",
            fmt(when),
            fmt(now + MAX_SKEW),
            fmt(now)
        )));
    }
    let key = match creds
        .signing_key(&auth.access_key_id, &auth.date, &auth.region, &auth.service)
        .await
    {
        Ok(k) => k,
        Err(CredentialError::Unrecognized) => return Err(ApiError::UnrecognizedClient),
        Err(CredentialError::Failed(e)) => return Err(ApiError::Kms(e)),
    };
    let sts = string_to_sign(method, path, query, headers, &auth, &amz_date, body);
    let expected = hex::encode(key.sign(sts.as_bytes()));
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        auth.signature.as_bytes(),
    )) {
        return Err(ApiError::InvalidSignature(SIGNATURE_MISMATCH.into()));
    }
    // Temporary credentials need their session token; long-term ones must not carry one.
    let token = headers.get("x-amz-security-token").map(|v| v.as_bytes());
    match (&key.session, token) {
        (None, None) => {}
        (None, Some(_)) | (Some(_), None) => return Err(ApiError::UnrecognizedClient),
        (Some(s), Some(t)) => {
            let h = digest::digest(&digest::SHA256, t);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                h.as_ref(),
                s.token_sha256.as_slice(),
            )) {
                return Err(ApiError::UnrecognizedClient);
            }
            if now >= s.expires_at {
                return Err(ApiError::ExpiredToken);
            }
        }
    }
    Ok(Verified {
        key,
        region: auth.region,
    })
}

/// Sign an outgoing request with SigV4 (the `aws-sigv4` crate, as every AWS client does), over
/// the headers it carries now and its body: `kms-bench` calling the API (`kms`), the XKS proxy
/// client calling a proxy (`kms-xks-proxy`).
pub fn sign_request(
    req: &mut http::Request<Vec<u8>>,
    access_key_id: &str,
    secret: &str,
    region: &str,
    service: &str,
) -> Result<(), String> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    // The id goes into the Authorization header as it is: one that no header can carry (a line
    // break, a control character) is refused here, where `aws-sigv4` would panic applying it.
    if access_key_id.is_empty() || !access_key_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the access key id holds characters no header can carry".into());
    }
    let identity =
        aws_credential_types::Credentials::new(access_key_id, secret, None, None, "kms").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
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
    let uri = req.uri().to_string();
    let signable = SignableRequest::new(
        "POST",
        &uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_paths_are_normalised_and_encoded_like_the_sdk_signs_them() {
        use super::canonical_path as c;
        assert_eq!(c("/"), "/");
        assert_eq!(c(""), "/");
        assert_eq!(c("/'"), "/%27");
        assert_eq!(c("/a%20b"), "/a%2520b");
        assert_eq!(c("/a/./b/../c"), "/a/c");
        assert_eq!(c("/a//b/"), "/a/b/");
        assert_eq!(c("/.."), "/");
        assert_eq!(super::canonical_query("b=2&a=x y&c"), "a=x%20y&b=2&c=");
        assert_eq!(super::canonical_query("?=%3f"), "%3F=%3F");
    }

    use super::*;

    #[test]
    fn parses_a_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7",
        )
        .unwrap();
        assert_eq!(a.access_key_id, "AKIDEXAMPLE");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.signed_headers, vec!["content-type", "host", "x-amz-date"]);
    }

    #[test]
    fn incomplete_headers_are_named() {
        assert!(
            matches!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request"), Err(ApiError::IncompleteSignature(m)) if m.contains("Signature") && m.contains("SignedHeaders"))
        );
        assert!(matches!(
            parse_authorization("Basic abc"),
            Err(ApiError::IncompleteSignature(_))
        ));
        assert!(matches!(
            parse_authorization(
                "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=00"
            ),
            Err(ApiError::IncompleteSignature(_))
        ));
    }

    /// The AWS SigV4 test suite's `get-vanilla` string to sign, rebuilt here.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let mut h = HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        let auth = AuthHeader {
            access_key_id: "AKIDEXAMPLE".into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
            signed_headers: vec!["host".into(), "x-amz-date".into()],
            signature: String::new(),
        };
        let sts = string_to_sign("GET", "/", "", &h, &auth, "20150830T123600Z", b"");
        assert_eq!(
            sts,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        // Signing key and signature from the suite (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY).
        use aws_lc_rs::hmac;
        let mut k = b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec();
        for d in ["20150830", "us-east-1", "service", "aws4_request"] {
            k = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), d.as_bytes())
                .as_ref()
                .to_vec();
        }
        let sig = hex::encode(
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &k), sts.as_bytes()).as_ref(),
        );
        assert_eq!(
            sig,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }
}
