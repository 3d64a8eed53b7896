//! Integration tests: the real `kms` binary, a real SoftHSM2 token, a real Postgres database,
//! real HTTP, and the AWS SDK with SigV4 credentials. One binary for the whole area.

mod model_members;
mod support;

mod access;
mod asymmetric;
mod attacks;
mod audit;
mod auth;
mod browser;
mod cli;
mod console;
mod console_audit;
mod custom_key_stores;
mod external_key_stores;
mod failover;
mod faults;
mod grants;
mod import;
mod key_states;
mod lifecycle;
mod mac_keys;
mod multi_region;
mod nodes;
mod operator;
mod protocol;
mod restore;
mod roles;
mod root_keys;
mod rotation;
mod security;
mod startup;
mod symmetric;
mod tamper;
mod terraform;
mod tls;
mod upgrade;
mod xks;
