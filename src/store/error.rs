//! What a store call fails with ([`StoreError`]) and the constraint names a `Conflict` carries
//! that the domain acts on. Separate so every repository and both dialects' `map_err` share one
//! error type without the row types or traits.

use std::fmt;

/// The constraint a `Conflict` names when a resource quota (keys per region, grants per key,
/// aliases per region) refused the insert.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

/// The constraint a `Conflict` names when the key an alias would name has its most aliases.
pub const KEY_ALIASES_EXCEEDED: &str = "key_aliases_exceeded";

#[derive(Debug)]
pub enum StoreError {
    /// A uniqueness or foreign-key constraint refused the write; carries the constraint name.
    Conflict { constraint: String },
    /// The database could not be reached or is shutting down (by SQLSTATE class or I/O).
    Unavailable(String),
    /// A row holds a value the service never writes (a key state that is not one of AWS's):
    /// it was written by someone else, and what depends on it is refused.
    Invalid(String),
    /// Anything else; logged, never shown to a client.
    Other(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict { constraint } => {
                write!(f, "constraint {constraint} refused the write")
            }
            StoreError::Unavailable(s) => write!(f, "database unavailable: {s}"),
            StoreError::Invalid(s) => write!(f, "a row the service did not write: {s}"),
            StoreError::Other(s) => write!(f, "database error: {s}"),
        }
    }
}
impl std::error::Error for StoreError {}
