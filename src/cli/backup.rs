//! `kms backup verify`: what a restore would get.

use crate::config::Settings;
use crate::server::wiring;
use anyhow::{anyhow, Result};

/// Backups: check what a restore would get.
#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Against the configured database (a restored backup) and token: every key's rows pass
    /// their checks and every material version unwraps under the token, without any key
    /// material leaving it. Exits non-zero, naming each key that fails.
    Verify,
}

pub async fn run(s: &Settings, cmd: BackupCommand) -> Result<()> {
    match cmd {
        BackupCommand::Verify => {
            let store = wiring::connect_migrated_store(s).await?;
            if !store.is_initialised().await? {
                anyhow::bail!("the database has no schema: it is not a backup of this service");
            }
            let kms = wiring::open_kms(s, store.clone()).await?;
            let ids = store.all_key_ids().await?;
            let (mut keys, mut versions, mut failed) = (0usize, 0usize, Vec::new());
            for id in ids {
                match kms.verify_key_material(id).await {
                    Ok(n) => {
                        keys += 1;
                        versions += n;
                    }
                    Err(e) => failed.push(format!("{id}: {e}")),
                }
            }
            println!(
                "kms backup verify: {keys} keys pass their checks; {versions} material versions unwrap under token '{}'",
                s.hsm.token_label
            );
            if failed.is_empty() {
                Ok(())
            } else {
                for f in &failed {
                    eprintln!("kms backup verify: FAILED {f}");
                }
                Err(anyhow!(
                    "{} keys of this backup do not verify under token '{}' (listed above): a backup of another deployment, a token that is not this backup's, or rows altered",
                    failed.len(),
                    s.hsm.token_label
                ))
            }
        }
    }
}
