//! Domain errors with AWS KMS meanings. The API layer maps each variant to exactly one
//! `(status, __type, message)` in `api/error.rs`.

use crate::hsm::HsmError;
use crate::store::StoreError;

#[derive(Debug)]
pub enum KmsError {
    NotFound(String),
    /// Deliberately opaque: AWS says nothing about why a ciphertext was refused.
    InvalidCiphertext,
    IncorrectKey,
    /// Over the account's request quota.
    Throttled,
    /// `Verify`: the signature does not verify.
    InvalidSignature,
    /// `VerifyMac`: the MAC does not verify.
    InvalidMac,
    Disabled(String),
    InvalidState(String),
    InvalidKeyUsage(String),
    Validation(String),
    InvalidArn(String),
    InvalidMarker,
    InvalidGrantToken,
    /// A `GrantId` that is not one this service issues (64 hex digits).
    InvalidGrantId(String),
    InvalidAliasName(String),
    AlreadyExists(String),
    Conflict(String),
    Tag(String),
    MalformedPolicy(String),
    UnsupportedOperation(String),
    DryRun,
    LimitExceeded(String),
    AccessDenied(String),
    /// `CreateAlias`, `UpdateAlias`, `DeleteAlias` of an `alias/aws/…` name (reserved for AWS
    /// managed keys): AWS answers `NotAuthorizedException` with no message.
    NotAuthorized,
    /// `ImportKeyMaterial`: the import token is past its validity.
    ExpiredImportToken,
    /// `ImportKeyMaterial`: not an import token of this key.
    InvalidImportToken,
    /// `ImportKeyMaterial`: not the material imported into this key before.
    IncorrectKeyMaterial(String),
    /// A custom key store's refusal (`CustomKeyStoreNotFoundException`…), with its message.
    KeyStore(KeyStoreError, String),
    /// Key material cannot be used right now (unwrap failed, row failed its integrity check).
    KeyUnavailable,
    /// The HSM or the database did not answer in time / is unreachable.
    DependencyTimeout,
    /// Anything else. The string is logged with the request id and never sent to the client.
    Internal(String),
    /// A compare-and-set write found this key's row changed since it was read (another request
    /// or node changed it first): [`super::Kms::as_current`] reads the key again and decides
    /// again. Never meant for a client (answered as an internal error if it ever reaches one).
    Changed(uuid::Uuid),
}

/// The custom key store exceptions, each AWS's `__type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStoreError {
    NotFound,
    InvalidState,
    NameInUse,
    HasCmks,
    ClusterInUse,
    ClusterNotFound,
    ClusterNotRelated,
    IncorrectTrustAnchor,
    XksProxyUriInUse,
    XksProxyUriUnreachable,
    XksProxyIncorrectAuthenticationCredential,
    XksProxyInvalidResponse,
    XksProxyInvalidConfiguration,
    XksKeyNotFound,
    XksKeyInvalidConfiguration,
    XksKeyAlreadyInUse,
}

impl KeyStoreError {
    /// AWS's exception name.
    pub fn exception(self) -> &'static str {
        match self {
            KeyStoreError::NotFound => "CustomKeyStoreNotFoundException",
            KeyStoreError::InvalidState => "CustomKeyStoreInvalidStateException",
            KeyStoreError::NameInUse => "CustomKeyStoreNameInUseException",
            KeyStoreError::HasCmks => "CustomKeyStoreHasCMKsException",
            KeyStoreError::ClusterInUse => "CloudHsmClusterInUseException",
            KeyStoreError::ClusterNotFound => "CloudHsmClusterNotFoundException",
            KeyStoreError::ClusterNotRelated => "CloudHsmClusterNotRelatedException",
            KeyStoreError::IncorrectTrustAnchor => "IncorrectTrustAnchorException",
            KeyStoreError::XksProxyUriInUse => "XksProxyUriInUseException",
            KeyStoreError::XksProxyUriUnreachable => "XksProxyUriUnreachableException",
            KeyStoreError::XksProxyIncorrectAuthenticationCredential => {
                "XksProxyIncorrectAuthenticationCredentialException"
            }
            KeyStoreError::XksProxyInvalidResponse => "XksProxyInvalidResponseException",
            KeyStoreError::XksProxyInvalidConfiguration => "XksProxyInvalidConfigurationException",
            KeyStoreError::XksKeyNotFound => "XksKeyNotFoundException",
            KeyStoreError::XksKeyInvalidConfiguration => "XksKeyInvalidConfigurationException",
            KeyStoreError::XksKeyAlreadyInUse => "XksKeyAlreadyInUseException",
        }
    }
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(s) => {
                tracing::error!(error = %s, "database unavailable");
                KmsError::DependencyTimeout
            }
            StoreError::Invalid(s) => {
                tracing::error!(error = %s, "a row the service did not write; refusing what depends on it");
                KmsError::KeyUnavailable
            }
            other => KmsError::Internal(other.to_string()),
        }
    }
}

impl From<HsmError> for KmsError {
    fn from(e: HsmError) -> Self {
        use cryptoki::error::RvError;
        if matches!(e, HsmError::BadCiphertext) {
            return KmsError::InvalidCiphertext;
        }
        if matches!(e, HsmError::Reopened | HsmError::Unavailable(_)) {
            tracing::error!(error = %e, "HSM unavailable");
            return KmsError::DependencyTimeout;
        }
        match e.rv() {
            Some(RvError::DeviceRemoved)
            | Some(RvError::TokenNotPresent)
            | Some(RvError::DeviceError)
            | Some(RvError::SessionHandleInvalid)
            | Some(RvError::SessionClosed)
            | Some(RvError::UserNotLoggedIn)
            | Some(RvError::CryptokiNotInitialized)
            | Some(RvError::TokenNotRecognized)
            | Some(RvError::SlotIdInvalid)
            | Some(RvError::ObjectHandleInvalid)
            | Some(RvError::KeyHandleInvalid) => {
                tracing::error!(error = %e, "HSM unavailable");
                KmsError::DependencyTimeout
            }
            _ => KmsError::Internal(e.to_string()),
        }
    }
}

impl std::fmt::Display for KmsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use KmsError::*;
        match self {
            NotFound(m)
            | Disabled(m)
            | InvalidState(m)
            | InvalidKeyUsage(m)
            | Validation(m)
            | InvalidArn(m)
            | Tag(m)
            | MalformedPolicy(m)
            | InvalidAliasName(m)
            | InvalidGrantId(m)
            | AlreadyExists(m)
            | Conflict(m)
            | UnsupportedOperation(m)
            | LimitExceeded(m)
            | AccessDenied(m)
            | Internal(m) => f.write_str(m),
            other => write!(f, "{other:?}"),
        }
    }
}
impl std::error::Error for KmsError {}

/// A store write refused by a uniqueness or compare-and-set check (another request changed the
/// rows first) answered as the operation says; every other store error as it is.
pub(crate) trait OnConflict<T> {
    fn on_conflict(self, answer: impl FnOnce() -> KmsError) -> Result<T, KmsError>;
}

impl<T> OnConflict<T> for Result<T, StoreError> {
    fn on_conflict(self, answer: impl FnOnce() -> KmsError) -> Result<T, KmsError> {
        self.map_err(|e| match e {
            StoreError::Conflict { .. } => answer(),
            other => other.into(),
        })
    }
}

impl KmsError {
    /// `Conflict`: the key `arn` names changed while the call was writing (`what`: "is being
    /// updated", "changed while its key material was being imported"…); try again.
    pub(crate) fn changed(arn: impl std::fmt::Display, what: &str) -> KmsError {
        KmsError::Conflict(format!("{arn} {what}; try again."))
    }
}
