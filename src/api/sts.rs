//! An STS-compatible `AssumeRole` (and `GetCallerIdentity`) on the same endpoint: the AWS Query protocol
//! (`application/x-www-form-urlencoded`, `Action=AssumeRole&Version=2011-06-15&…`), SigV4 with
//! service `sts`, XML responses. STS has its own error names, so this protocol has its own
//! error mapping, next to the JSON one in `error.rs`: every `ApiError` named, and of the domain's
//! errors the four STS answers by name (any other is `InternalFailure`, as STS has no name for it).

use super::error::ApiError;
use super::ApiState;
use crate::domain::{Caller, KmsError};
use secrecy::ExposeSecret;
use std::collections::HashMap;

pub const CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// STS's names and statuses for the errors this endpoint can give.
pub fn wire(e: &ApiError) -> (u16, &'static str, String) {
    match e {
        ApiError::UnrecognizedClient => (
            403,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.".into(),
        ),
        ApiError::InvalidSignature(m) => (403, "SignatureDoesNotMatch", m.clone()),
        ApiError::IncompleteSignature(m) => (400, "IncompleteSignature", m.clone()),
        ApiError::MissingAuthenticationToken => (
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token".into(),
        ),
        ApiError::ExpiredToken => (
            400,
            "ExpiredToken",
            "The security token included in the request is expired".into(),
        ),
        ApiError::Serialization(m) => (400, "MalformedInput", m.clone()),
        ApiError::UnknownOperation(m) => (400, "InvalidAction", m.clone()),
        ApiError::RequestTooLarge(n) => (
            400,
            "ValidationError",
            format!("Request body exceeds the maximum size of {n} bytes."),
        ),
        ApiError::Kms(k) => match k {
            KmsError::AccessDenied(m) => (403, "AccessDenied", m.clone()),
            KmsError::Validation(m) => (400, "ValidationError", m.clone()),
            // STS's own name for it (the SDKs retry it with back-off).
            KmsError::Throttled => (400, "Throttling", "Rate exceeded".into()),
            KmsError::DependencyTimeout => (
                503,
                "ServiceUnavailable",
                "Service unavailable; retry the request.".into(),
            ),
            _ => (
                500,
                "InternalFailure",
                "The request failed because of an internal error.".into(),
            ),
        },
    }
}

pub fn error_body(e: &ApiError, request_id: &str) -> (u16, String) {
    let (status, code, message) = wire(e);
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    (
        status,
        format!(
            "<ErrorResponse xmlns=\"{NS}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            xml_escape(&message)
        ),
    )
}

fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// The actions this STS answers; any other is `UnknownOperation`, and its event is named `-`.
pub const ACTIONS: &[&str] = &["AssumeRole", "GetCallerIdentity"];

/// Handle an authenticated Query request. Returns the XML body.
pub async fn handle(
    state: &ApiState,
    caller: &Caller,
    body: &[u8],
    request_id: &str,
) -> Result<String, ApiError> {
    let params: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    match params.get("Action").map(String::as_str) {
        Some("AssumeRole") => {}
        Some("GetCallerIdentity") => {
            return Ok(format!(
                "<GetCallerIdentityResponse xmlns=\"{NS}\"><GetCallerIdentityResult><Arn>{}</Arn><UserId>{}</UserId>\
<Account>{}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>\
</GetCallerIdentityResponse>",
                xml_escape(&caller.principal_arn),
                xml_escape(&caller.access_key_id),
                xml_escape(&caller.account_id),
            ))
        }
        Some(other) => return Err(ApiError::UnknownOperation(format!("Could not find operation {}", other.chars().take(64).collect::<String>()))),
        None => return Err(ApiError::UnknownOperation("Missing Action".into())),
    }
    let mut errors = Vec::new();
    let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
    if role_arn.is_empty() {
        errors.push(
            "Value null at 'roleArn' failed to satisfy constraint: Member must not be null"
                .to_string(),
        );
    } else if !(20..=2048).contains(&role_arn.len()) {
        errors.push(format!("Value '{role_arn}' at 'roleArn' failed to satisfy constraint: Member must have length greater than or equal to 20"));
    }
    let session = params.get("RoleSessionName").cloned().unwrap_or_default();
    if session.is_empty() {
        errors.push(
            "Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null"
                .to_string(),
        );
    } else if !(2..=64).contains(&session.len()) {
        errors.push(format!(
            "Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must have length {}",
            if session.len() < 2 { "greater than or equal to 2" } else { "less than or equal to 64" }
        ));
    } else if !valid_session_name(&session) {
        errors.push(format!(
            "Value '{session}' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*"
        ));
    }
    let min = state.sts_min_session_seconds;
    let duration = match params.get("DurationSeconds") {
        None => 3600,
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (min..=43200).contains(&n) => n,
            _ => {
                errors.push(format!(
                    "Value '{d}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {min} and 43200"
                ));
                0
            }
        },
    };
    if !errors.is_empty() {
        let n = errors.len();
        return Err(KmsError::Validation(format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            errors.join("; ")
        ))
        .into());
    }
    if params.contains_key("Policy") || params.keys().any(|k| k.starts_with("PolicyArns")) {
        return Err(KmsError::Validation(
            "Session policies are not supported by this service.".into(),
        )
        .into());
    }
    let role = state
        .kms
        .authorize_assume_role(
            caller,
            &role_arn,
            params.get("ExternalId").map(String::as_str),
        )
        .await?;
    // Role chaining (a role's session assuming a role): STS holds such sessions to an hour.
    if caller.role_arn.is_some() && duration > 3600 {
        return Err(KmsError::Validation(
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining."
                .into(),
        )
        .into());
    }
    let s = state
        .kms
        .credentials
        .create_session(
            &role,
            &role_arn,
            &session,
            chrono::Duration::seconds(duration),
        )
        .await?;
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"{NS}\"><AssumeRoleResult><Credentials><AccessKeyId>{}</AccessKeyId>\
<SecretAccessKey>{}</SecretAccessKey><SessionToken>{}</SessionToken><Expiration>{}</Expiration></Credentials>\
<AssumedRoleUser><AssumedRoleId>{}</AssumedRoleId><Arn>{}</Arn></AssumedRoleUser></AssumeRoleResult>\
<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></AssumeRoleResponse>",
        s.access_key_id,
        xml_escape(s.secret.expose_secret()),
        xml_escape(s.token.expose_secret()),
        s.expires_at.format("%Y-%m-%dT%H:%M:%SZ"),
        xml_escape(&s.assumed_role_id),
        xml_escape(&s.assumed_role_arn),
    ))
}
