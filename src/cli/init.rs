//! `kms init`: migrations, the token's keys, the default account and its administrator.
//! Idempotent: run again, it verifies what exists and creates what is missing.

use crate::config::Settings;
use crate::domain::operator::{bootstrap_token_keys, AdminKey, Operator};
use crate::domain::Kms;
use crate::server::wiring;
use anyhow::{bail, Result};
use secrecy::{ExposeSecret, SecretString};

/// Prints the administrator's credentials (the secret once) on stdout, progress on stderr.
pub async fn run(s: &Settings) -> Result<()> {
    let store = wiring::connect_store(s).await?;
    store.migrate().await?;
    let hsm = wiring::open_hsm(s).await?;
    for line in bootstrap_token_keys(store.as_ref(), &hsm).await? {
        eprintln!("kms init: {line}");
    }
    let kms = Kms::new(
        hsm,
        store.clone(),
        store.clone(),
        store.clone(),
        &wiring::cache_sizes(s),
        s.regions.clone(),
    );
    let op = Operator::new(kms, store, wiring::open_anchor(s)?);
    let given_id = std::env::var("KMS_ADMIN_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let given_secret = std::env::var("KMS_ADMIN_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from);
    let given = match (given_id, given_secret) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        _ => bail!("set both KMS_ADMIN_ACCESS_KEY_ID and KMS_ADMIN_SECRET_ACCESS_KEY, or neither"),
    };
    let key = op.bootstrap_admin(&s.account_id, given).await?;
    // Rows stored before they carried a MAC are not sealed here: an operator reviews and
    // seals them with `kms admin seal`.
    let unsealed = op.unsealed_at_init().await?;
    if unsealed > 0 {
        eprintln!(
            "kms init: {unsealed} rows carry no MAC and are refused until an operator reviews and seals them (a key's set of aliases from before sets were kept is kept from its next alias change): run `kms admin seal`"
        );
    }
    match key {
        AdminKey::Present(id) => {
            eprintln!("kms init: administrator access key {id} already present");
            println!("AWS_ACCESS_KEY_ID={id}");
        }
        AdminKey::Imported(id) => {
            eprintln!("kms init: administrator access key {id} imported from the environment");
            println!("AWS_ACCESS_KEY_ID={id}");
        }
        AdminKey::Existing(id) => {
            eprintln!(
                "kms init: the administrator already has access key {id}; its secret was shown when it was created"
            );
            println!("AWS_ACCESS_KEY_ID={id}");
        }
        AdminKey::Created(id, secret) => {
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={}", secret.expose_secret());
        }
    }
    Ok(())
}
