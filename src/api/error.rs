//! The one mapping from errors to the wire: `(HTTP status, __type, message)`.
//! Only `DependencyTimeoutException`, `KMSInternalException` and `KeyUnavailableException`
//! are 5xx. Internal details are logged with the request id and never echoed.

use crate::domain::KmsError;

#[derive(Debug)]
pub enum ApiError {
    Kms(KmsError),
    /// Unknown or inactive access key id.
    UnrecognizedClient,
    InvalidSignature(String),
    IncompleteSignature(String),
    MissingAuthenticationToken,
    /// Temporary credentials past their expiry.
    ExpiredToken,
    /// The body is not JSON, or a member has the wrong type.
    Serialization(String),
    UnknownOperation(String),
    /// The body exceeds the service's limit.
    RequestTooLarge(usize),
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        ApiError::Kms(e)
    }
}

pub const SIGNATURE_MISMATCH: &str = "The request signature we calculated does not match the signature you provided. \
Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

impl ApiError {
    /// The request could not be authenticated (no, unknown, expired or wrong credentials).
    pub fn is_authentication_failure(&self) -> bool {
        matches!(
            self,
            ApiError::UnrecognizedClient
                | ApiError::InvalidSignature(_)
                | ApiError::IncompleteSignature(_)
                | ApiError::MissingAuthenticationToken
                | ApiError::ExpiredToken
        )
    }

    /// Status, AWS exception name and client-facing message.
    pub fn wire(&self) -> (u16, &'static str, String) {
        use KmsError as K;
        match self {
            ApiError::Kms(k) => match k {
                K::NotFound(m) => (400, "NotFoundException", m.clone()),
                K::InvalidCiphertext => (400, "InvalidCiphertextException", String::new()),
                K::IncorrectKey => (
                    400,
                    "IncorrectKeyException",
                    crate::messages::INCORRECT_KEY.into(),
                ),
                K::Throttled => (400, "ThrottlingException", crate::messages::THROTTLED.into()),
                K::InvalidSignature => (400, "KMSInvalidSignatureException", String::new()),
                K::InvalidMac => (400, "KMSInvalidMacException", String::new()),
                K::ExpiredImportToken => (
                    400,
                    "ExpiredImportTokenException",
                    "The import token is expired. Use GetParametersForImport to get a new import token and public key.".into(),
                ),
                // AWS sends no message (recorded: a token of another key, a corrupt one).
                K::InvalidImportToken => (400, "InvalidImportTokenException", String::new()),
                K::IncorrectKeyMaterial(m) => (400, "IncorrectKeyMaterialException", m.clone()),
                K::Disabled(m) => (400, "DisabledException", m.clone()),
                K::InvalidState(m) => (400, "KMSInvalidStateException", m.clone()),
                K::InvalidKeyUsage(m) => (400, "InvalidKeyUsageException", m.clone()),
                K::Validation(m) => (400, "ValidationException", m.clone()),
                K::InvalidArn(m) => (400, "InvalidArnException", m.clone()),
                // AWS sends no message (recorded).
                K::InvalidMarker => (400, "InvalidMarkerException", String::new()),
                K::InvalidAliasName(m) => (400, "InvalidAliasNameException", m.clone()),
                K::AlreadyExists(m) => (400, "AlreadyExistsException", m.clone()),
                K::Conflict(m) => (400, "ConflictException", m.clone()),
                K::InvalidGrantToken => (400, "InvalidGrantTokenException", "Grant token is invalid".into()),
                K::InvalidGrantId(m) => (400, "InvalidGrantIdException", m.clone()),
                K::Tag(m) => (400, "TagException", m.clone()),
                K::MalformedPolicy(m) => (400, "MalformedPolicyDocumentException", m.clone()),
                K::UnsupportedOperation(m) => (400, "UnsupportedOperationException", m.clone()),
                K::DryRun => (
                    400,
                    "DryRunOperationException",
                    crate::messages::DRY_RUN.into(),
                ),
                K::LimitExceeded(m) => (400, "LimitExceededException", m.clone()),
                K::KeyStore(e, m) => (400, e.exception(), m.clone()),
                K::AccessDenied(m) => (400, "AccessDeniedException", m.clone()),
                K::NotAuthorized => (400, "NotAuthorizedException", String::new()),
                K::KeyUnavailable => (
                    500,
                    "KeyUnavailableException",
                    "The request was rejected because the specified KMS key was not available. You can retry the request."
                        .into(),
                ),
                K::DependencyTimeout => (
                    503,
                    "DependencyTimeoutException",
                    "The system timed out while trying to fulfill the request. You can retry the request.".into(),
                ),
                K::Internal(_) | K::Changed(_) => (
                    500,
                    "KMSInternalException",
                    "The request was rejected because an internal exception occurred. You can retry the request.".into(),
                ),
            },
            ApiError::UnrecognizedClient => {
                (400, "UnrecognizedClientException", "The security token included in the request is invalid.".into())
            }
            ApiError::InvalidSignature(m) => (400, "InvalidSignatureException", m.clone()),
            ApiError::IncompleteSignature(m) => (400, "IncompleteSignatureException", m.clone()),
            ApiError::MissingAuthenticationToken => {
                (400, "MissingAuthenticationTokenException", "Missing Authentication Token".into())
            }
            ApiError::ExpiredToken => {
                (400, "ExpiredTokenException", "The security token included in the request is expired".into())
            }
            ApiError::Serialization(m) => (400, "SerializationException", m.clone()),
            ApiError::UnknownOperation(m) => (400, "UnknownOperationException", m.clone()),
            ApiError::RequestTooLarge(limit) => {
                (400, "ValidationException", format!("Request body exceeds the maximum size of {limit} bytes."))
            }
        }
    }

    /// Detail to log (never sent).
    pub fn internal_detail(&self) -> Option<&str> {
        match self {
            ApiError::Kms(KmsError::Internal(s)) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, its status and its AWS name. Only three names are 5xx.
    #[test]
    fn wire_table() {
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                KmsError::NotFound("x".into()).into(),
                400,
                "NotFoundException",
            ),
            (
                KmsError::InvalidCiphertext.into(),
                400,
                "InvalidCiphertextException",
            ),
            (KmsError::IncorrectKey.into(), 400, "IncorrectKeyException"),
            (
                KmsError::InvalidSignature.into(),
                400,
                "KMSInvalidSignatureException",
            ),
            (KmsError::InvalidMac.into(), 400, "KMSInvalidMacException"),
            (KmsError::Throttled.into(), 400, "ThrottlingException"),
            (
                KmsError::Disabled("x".into()).into(),
                400,
                "DisabledException",
            ),
            (
                KmsError::InvalidState("x".into()).into(),
                400,
                "KMSInvalidStateException",
            ),
            (
                KmsError::InvalidKeyUsage("x".into()).into(),
                400,
                "InvalidKeyUsageException",
            ),
            (
                KmsError::Validation("x".into()).into(),
                400,
                "ValidationException",
            ),
            (
                KmsError::InvalidArn("x".into()).into(),
                400,
                "InvalidArnException",
            ),
            (
                KmsError::InvalidMarker.into(),
                400,
                "InvalidMarkerException",
            ),
            (
                KmsError::InvalidGrantToken.into(),
                400,
                "InvalidGrantTokenException",
            ),
            (
                KmsError::InvalidGrantId("x".into()).into(),
                400,
                "InvalidGrantIdException",
            ),
            (
                KmsError::InvalidAliasName("x".into()).into(),
                400,
                "InvalidAliasNameException",
            ),
            (
                KmsError::AlreadyExists("x".into()).into(),
                400,
                "AlreadyExistsException",
            ),
            (
                KmsError::Conflict("x".into()).into(),
                400,
                "ConflictException",
            ),
            (KmsError::Tag("x".into()).into(), 400, "TagException"),
            (
                KmsError::MalformedPolicy("x".into()).into(),
                400,
                "MalformedPolicyDocumentException",
            ),
            (
                KmsError::UnsupportedOperation("x".into()).into(),
                400,
                "UnsupportedOperationException",
            ),
            (KmsError::DryRun.into(), 400, "DryRunOperationException"),
            (
                KmsError::LimitExceeded("x".into()).into(),
                400,
                "LimitExceededException",
            ),
            (
                KmsError::AccessDenied("x".into()).into(),
                400,
                "AccessDeniedException",
            ),
            (
                KmsError::KeyUnavailable.into(),
                500,
                "KeyUnavailableException",
            ),
            (
                KmsError::DependencyTimeout.into(),
                503,
                "DependencyTimeoutException",
            ),
            (
                KmsError::Internal("secret detail".into()).into(),
                500,
                "KMSInternalException",
            ),
            (
                ApiError::UnrecognizedClient,
                400,
                "UnrecognizedClientException",
            ),
            (
                ApiError::InvalidSignature("x".into()),
                400,
                "InvalidSignatureException",
            ),
            (
                ApiError::IncompleteSignature("x".into()),
                400,
                "IncompleteSignatureException",
            ),
            (
                ApiError::MissingAuthenticationToken,
                400,
                "MissingAuthenticationTokenException",
            ),
            (ApiError::ExpiredToken, 400, "ExpiredTokenException"),
            (
                ApiError::Serialization("x".into()),
                400,
                "SerializationException",
            ),
            (
                ApiError::UnknownOperation("x".into()),
                400,
                "UnknownOperationException",
            ),
            (ApiError::RequestTooLarge(10), 400, "ValidationException"),
        ];
        for (e, status, name) in cases {
            let (s, n, m) = e.wire();
            assert_eq!((s, n), (status, name), "{e:?}");
            assert!(!m.contains("secret detail"));
            assert_eq!(
                s >= 500,
                matches!(
                    n,
                    "KeyUnavailableException"
                        | "DependencyTimeoutException"
                        | "KMSInternalException"
                )
            );
        }
    }
}
