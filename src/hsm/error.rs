//! Errors of the HSM layer. A PKCS#11 failure keeps the function that failed and its `CK_RV`
//! (as cryptoki reports them), so that callers translate return codes to domain meanings in
//! one place and operators see exactly which call the token refused.

use cryptoki::error::{Error as CkError, RvError};
use std::fmt;

#[derive(Debug)]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded (missing file, wrong architecture, missing symbol).
    ModuleLoad { path: String, detail: String },
    /// No slot holds a token with the configured label.
    TokenNotFound { label: String },
    /// `C_Login` refused the PIN.
    PinIncorrect,
    /// The user PIN is locked (too many wrong PINs): the security officer must reset it.
    PinLocked,
    /// This process is logged in to the token with another PIN, so the token did not check
    /// this one (`CKR_USER_ALREADY_LOGGED_IN`) and it is refused (strict logins only).
    LoggedInWithAnotherPin,
    /// A mechanism the service needs is not offered by the token.
    MechanismMissing { what: &'static str },
    /// The root wrapping key (or the MAC key) is not on the token.
    ServiceKeyMissing { label: String },
    /// A PKCS#11 function returned an error.
    Call { function: String, rv: RvError },
    /// The token was re-opened during the call: the key object it was given is gone.
    Reopened,
    /// The token is lost and could not be re-opened (the reason).
    Unavailable(String),
    /// A decryption's input did not authenticate or decode (a failed GCM tag check, a bad
    /// RSA-OAEP block), by the token profile's codes: the caller's bad ciphertext, not a fault.
    BadCiphertext,
    /// Any other cryptoki failure (conversion, unsupported feature).
    Other(String),
}

impl HsmError {
    /// A short, bounded name for the failure (a metrics label).
    pub fn label(&self) -> String {
        match self {
            HsmError::ModuleLoad { .. } => "ModuleLoad".into(),
            HsmError::TokenNotFound { .. } => "TokenNotFound".into(),
            HsmError::PinIncorrect => "PinIncorrect".into(),
            HsmError::PinLocked => "PinLocked".into(),
            HsmError::LoggedInWithAnotherPin => "LoggedInWithAnotherPin".into(),
            HsmError::MechanismMissing { .. } => "MechanismMissing".into(),
            HsmError::ServiceKeyMissing { .. } => "ServiceKeyMissing".into(),
            HsmError::Call { rv, .. } => format!("{rv:?}"),
            HsmError::Reopened => "Reopened".into(),
            HsmError::Unavailable(_) => "Unavailable".into(),
            HsmError::BadCiphertext => "BadCiphertext".into(),
            HsmError::Other(_) => "Other".into(),
        }
    }

    /// The token refused the PIN offered (wrong, or not a PIN it could hold).
    pub fn is_pin_incorrect(&self) -> bool {
        matches!(
            self,
            HsmError::PinIncorrect | HsmError::LoggedInWithAnotherPin
        ) || matches!(
            self.rv(),
            Some(RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid)
        )
    }

    /// The token's user PIN is locked (too many wrong PINs).
    pub fn is_pin_locked(&self) -> bool {
        matches!(self, HsmError::PinLocked) || matches!(self.rv(), Some(RvError::PinLocked))
    }

    /// The return code of a failed PKCS#11 call, if that is what failed.
    pub fn rv(&self) -> Option<RvError> {
        match self {
            HsmError::Call { rv, .. } => Some(*rv),
            _ => None,
        }
    }
}

impl From<CkError> for HsmError {
    fn from(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) => HsmError::Call {
                function: format!("{function:?}"),
                rv,
            },
            CkError::LibraryLoading(l) => HsmError::ModuleLoad {
                path: String::new(),
                detail: l.to_string(),
            },
            other => HsmError::Other(other.to_string()),
        }
    }
}

impl fmt::Display for HsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsmError::ModuleLoad { path, detail } => {
                write!(f, "the PKCS#11 module {path} could not be loaded: {detail}")
            }
            HsmError::TokenNotFound { label } => {
                write!(f, "no PKCS#11 token labelled '{label}' was found; initialise one (see hsm/) or fix hsm.token_label")
            }
            HsmError::PinIncorrect => write!(
                f,
                "the token refused the user PIN (CKR_PIN_INCORRECT); check hsm.pin / KMS_HSM__PIN"
            ),
            HsmError::PinLocked => write!(
                f,
                "the user PIN is locked (CKR_PIN_LOCKED); the security officer must reset it"
            ),
            HsmError::LoggedInWithAnotherPin => write!(
                f,
                "this process is logged in to the token with another PIN, so the token did not check this one (CKR_USER_ALREADY_LOGGED_IN): refused; if the token's PIN was changed, disconnect every custom key store using the token and connect again"
            ),
            HsmError::MechanismMissing { what } => write!(
                f,
                "the token does not offer {what}, which the service requires"
            ),
            HsmError::ServiceKeyMissing { label } => {
                write!(
                    f,
                    "the token holds no key labelled '{label}'; run `kms init` first"
                )
            }
            HsmError::Call { function, rv } => write!(f, "PKCS#11 {function} failed: {rv:?}"),
            HsmError::Reopened => write!(
                f,
                "the token was re-opened during the call; its key objects were loaded again"
            ),
            HsmError::Unavailable(why) => write!(f, "the token is unavailable: {why}"),
            HsmError::BadCiphertext => write!(f, "the ciphertext did not decrypt"),
            HsmError::Other(s) => write!(f, "PKCS#11 error: {s}"),
        }
    }
}

impl std::error::Error for HsmError {}
