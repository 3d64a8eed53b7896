//! An on-premises key management service that speaks the AWS KMS API, with every root and
//! backing key inside a PKCS#11 token and only wrapped blobs and metadata in Postgres.
//!
//! Layers (dependencies point down only): `api` → `kms` → (`hsm`, `store`).

pub mod api;
pub mod app;
pub mod audit;
pub mod config;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod hsm;
pub mod kms;
pub mod metrics;
pub mod operations;
pub mod policy;
pub mod store;
pub mod vocab;
