//! The repository traits, one file per area; `store` re-exports them, so callers name
//! `store::KeyStore` and so on. The traits are what the domain sees; how they are written for
//! both databases is in the sibling modules of `store` (`keys.rs`, `grants.rs`, …).

mod audit;
mod custom_key_stores;
mod grants;
mod identity;
mod keys;
mod service;

pub use audit::*;
pub use custom_key_stores::*;
pub use grants::*;
pub use identity::*;
pub use keys::*;
pub use service::*;
