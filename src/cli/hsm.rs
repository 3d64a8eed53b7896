//! `kms hsm …`: the token itself: its PIN, root key and MAC key rotations.

use crate::config::Settings;
use crate::domain::operator::{token_list, KeyChange};
use crate::domain::root::current_and_backlog;
use crate::domain::Kms;
use crate::hsm::root_key_label;
use crate::server::wiring;
use crate::store::Store;
use anyhow::{anyhow, bail, Result};
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum HsmCommand {
    /// Change the token's user PIN (logs in with the configured PIN). Running servers that
    /// read `hsm.pin_file` pick the new PIN up when they next log in; update the file.
    SetPin {
        /// A file holding the new PIN.
        #[arg(long)]
        new_pin_file: std::path::PathBuf,
    },
    /// Create a new root wrapping key in the token (in every token of a pool) and make it the
    /// one new blobs are wrapped under, then re-wrap every stored blob under it, with
    /// progress. Running nodes follow the new key within a scheduler interval and re-wrap in
    /// the background too; each blob is re-wrapped once. Killed, it resumes with `rewrap`.
    RotateRootKey {
        /// Blobs of each kind per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Only create the key: leave the re-wrapping to the running nodes.
        #[arg(long)]
        no_wait: bool,
    },
    /// Re-wrap, with progress, the blobs still under an older root key (resumes a rotation).
    Rewrap {
        /// Blobs of each kind per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// The root key versions and how many stored blobs each one wraps.
    RootKeys,
    /// Destroy an older root key in the token (every token of a pool), once no stored blob
    /// records it. Irreversible; recorded in the audit trail.
    DestroyRootKey {
        /// The root key version to destroy (not the current one).
        #[arg(long)]
        version: i32,
    },
    /// Create a new metadata MAC key in the token (in every token of a pool) and make it the
    /// one new row MACs are made with, then make every stored MAC again under it, with
    /// progress (the response to a MAC key that may be compromised). Running nodes follow
    /// within a scheduler interval and work through the rows in the background too; each row
    /// moves once. Killed, it resumes with `remac`.
    RotateMacKey {
        /// Rows of each MAC'd column per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Only create the key: leave the rows to the running nodes.
        #[arg(long)]
        no_wait: bool,
    },
    /// Make again under the current MAC key, with progress, the MACs still under an older one
    /// (resumes a MAC key rotation).
    Remac {
        /// Rows of each MAC'd column per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// The MAC key versions the token holds, and how many MACs are still under older ones.
    MacKeys,
    /// The private keys the token keeps as token objects because it cannot wrap them
    /// (Ed25519 on SoftHSM 2.6.1), each with the key that uses it, or `orphaned` where no key
    /// does any more (remove those with the token's own tools).
    HeldKeys,
    /// Destroy an older MAC key in the token (every token of a pool), once no stored MAC was
    /// made under it: from then on any row or grant token MAC'd under it is refused.
    /// Irreversible; recorded in the audit trail.
    DestroyMacKey {
        /// The MAC key version to destroy (not the current one).
        #[arg(long)]
        version: i32,
    },
}

pub async fn run(s: &Settings, cmd: HsmCommand) -> Result<()> {
    let batch = match &cmd {
        HsmCommand::RotateRootKey { batch, .. }
        | HsmCommand::Rewrap { batch }
        | HsmCommand::RotateMacKey { batch, .. }
        | HsmCommand::Remac { batch } => *batch,
        _ => 1,
    };
    if batch < 1 {
        bail!("--batch must be at least 1, not {batch}");
    }
    if let HsmCommand::SetPin { new_pin_file } = cmd {
        return set_pin(s, &new_pin_file).await;
    }
    let op = wiring::open_operator(s).await?;
    let (kms, store) = (op.kms(), op.store());
    match cmd {
        HsmCommand::RotateRootKey { no_wait, .. } => {
            let k = op.rotate_root_key().await?;
            rotated(&k, "root key", "new blobs are wrapped under it");
            if no_wait {
                eprintln!("kms hsm: the running nodes re-wrap the stored blobs; `kms hsm root-keys` shows how far they are");
                return Ok(());
            }
            rewrap_all(kms, store, batch).await
        }
        HsmCommand::Rewrap { .. } => rewrap_all(kms, store, batch).await,
        HsmCommand::RootKeys => {
            let per_root = kms.root_key_status(store).await?;
            let (current, _) = current_and_backlog(&per_root);
            println!("VERSION  BLOBS  LABEL");
            for (v, n) in per_root {
                println!(
                    "{v:>7}  {n:>5}  {}{}",
                    root_key_label(v as u32),
                    if v == current { "  (current)" } else { "" }
                );
            }
            Ok(())
        }
        HsmCommand::DestroyRootKey { version } => {
            let tokens = op.destroy_root_key(version).await?;
            if tokens.is_empty() {
                eprintln!("kms hsm: root key v{version} was no longer in the token; the database no longer records it");
            } else {
                eprintln!(
                    "kms hsm: root key v{version} destroyed in token {}",
                    token_list(&tokens)
                );
            }
            Ok(())
        }
        HsmCommand::RotateMacKey { no_wait, .. } => {
            let k = op.rotate_mac_key().await?;
            rotated(&k, "MAC key", "new row MACs are made under it");
            if no_wait {
                eprintln!("kms hsm: the running nodes make the stored MACs again; `kms hsm mac-keys` shows how far they are");
                return Ok(());
            }
            remac_all(kms, store, batch).await
        }
        HsmCommand::Remac { .. } => remac_all(kms, store, batch).await,
        HsmCommand::MacKeys => {
            let (current, behind) = kms.mac_key_status(store).await?;
            println!("VERSION  LABEL");
            for v in kms.hsm().mac_versions() {
                println!(
                    "{v:>7}  {}{}",
                    crate::hsm::mac_key_label(v),
                    if v == current { "  (current)" } else { "" }
                );
            }
            println!("{behind} stored MACs are under an older MAC key");
            Ok(())
        }
        HsmCommand::DestroyMacKey { version } => {
            let tokens = op.destroy_mac_key(version).await?;
            eprintln!(
                "kms hsm: MAC key v{version} destroyed in token {}; rows and grant tokens MAC'd under it are refused from now on",
                token_list(&tokens)
            );
            Ok(())
        }
        HsmCommand::HeldKeys => {
            let held = kms.held_objects().await?;
            println!("LABEL  KEY");
            for h in &held {
                match h.key {
                    Some((key_id, version)) => {
                        println!("{}  {key_id} (version {version})", h.label)
                    }
                    None => println!("{}  orphaned: no key names it", h.label),
                }
            }
            let orphans = held.iter().filter(|h| h.key.is_none()).count();
            eprintln!(
                "kms hsm: {} key objects held in the token, {orphans} orphaned{}",
                held.len(),
                if orphans > 0 {
                    " (check the audit trail for the key's DeleteKey before removing one: rows removed from the database, or a key being created right now, show as orphaned too)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        // Answered above, before the store is opened (it needs only the token).
        HsmCommand::SetPin { .. } => Ok(()),
    }
}

/// Change the token's user PIN (logged in with the configured one).
async fn set_pin(s: &Settings, new_pin_file: &std::path::Path) -> Result<()> {
    let new = crate::config::read_pin_file(new_pin_file).map_err(|e| anyhow!(e))?;
    let hsm = wiring::open_hsm(s).await?;
    let changed = tokio::task::spawn_blocking(move || hsm.set_pin(&new)).await??;
    println!(
        "the user PIN is changed on token {}; update hsm.pin_file (or KMS_HSM__PIN) to match",
        token_list(&changed)
    );
    Ok(())
}

/// What a rotation made current.
fn rotated(k: &KeyChange, what: &str, effect: &str) {
    eprintln!(
        "kms hsm: {what} v{} {} ('{}'); {effect} (running nodes follow within a scheduler interval)",
        k.version,
        if k.created { "created" } else { "found in the token" },
        k.label
    );
}

/// `done` of `total`, in per cent (100 when there was nothing to do).
fn percent(done: i64, total: i64) -> f64 {
    if total == 0 {
        100.0
    } else {
        done as f64 * 100.0 / total as f64
    }
}

/// Passes in a row that move nothing while the backlog stays before a re-wrap or re-MAC
/// gives up on the rows left (200 ms apart).
const STALLED_PASSES: u32 = 5;

/// Re-wrap every blob still under an older root key, in batches, printing progress.
async fn rewrap_all(kms: &Kms, store: &dyn Store, batch: i64) -> Result<()> {
    let backlog = |per_root: &[(i32, i64)]| current_and_backlog(per_root).1;
    let status = kms.root_key_status(store).await?;
    let (current, total) = current_and_backlog(&status);
    eprintln!("kms hsm: {total} stored blobs to re-wrap under root key v{current}");
    let (mut mine, mut others) = (0usize, 0usize);
    let mut left = total;
    let mut stalled = 0;
    while left > 0 {
        let r = kms
            .rewrap_batch(store, batch)
            .await
            .map_err(|e| anyhow!("re-wrapping stopped ({e}); run `kms hsm rewrap` to resume"))?;
        mine += r.rewrapped;
        others += r.elsewhere;
        let before = left;
        left = backlog(&kms.root_key_status(store).await?);
        // Passes that move nothing here and leave the backlog where it was: rows the listing
        // names but no reader finds (a key material without its key, an access key without its
        // principal: written in the database), not rows another process is moving.
        stalled = if r.rewrapped == 0 && r.elsewhere > 0 && left >= before {
            stalled + 1
        } else {
            0
        };
        if stalled >= STALLED_PASSES {
            return Err(anyhow!(
                "{left} stored blobs are left under an older root key and no process moves them: rows that belong to nothing the service reads (a key material without its key, an access key without its principal: written in the database?); review them before the older root key can be destroyed"
            ));
        }
        let done = (total - left).max(0);
        eprintln!(
            "kms hsm: re-wrapped {done} of {total} blobs ({:.0} %), {left} left",
            percent(done, total)
        );
        if (!r.moved() || stalled > 0) && left > 0 {
            if r.refused > 0 {
                return Err(anyhow!(
                    "{left} stored blobs are left under an older root key: {} rows failed their integrity check (logged); review them before the older root key can be destroyed",
                    r.refused
                ));
            }
            // Rows being re-wrapped by another process, or written under the older key by
            // a node that has not followed the rotation yet: look again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "kms hsm: every stored blob is wrapped under root key v{current} ({mine} re-wrapped by this command, {others} by other processes)"
    );
    Ok(())
}

/// Make every MAC still under an older MAC key again under the current one, in batches,
/// printing progress.
async fn remac_all(kms: &Kms, store: &dyn Store, batch: i64) -> Result<()> {
    let (current, total) = kms.mac_key_status(store).await?;
    eprintln!("kms hsm: {total} stored MACs to make again under MAC key v{current}");
    let (mut mine, mut others) = (0usize, 0usize);
    let mut left = total;
    let mut stalled = 0;
    while left > 0 {
        let r = kms
            .remac_batch(store, batch)
            .await
            .map_err(|e| anyhow!("re-MACing stopped ({e}); run `kms hsm remac` to resume"))?;
        mine += r.remacced;
        others += r.elsewhere;
        let before = left;
        left = kms.mac_key_status(store).await?.1;
        // As for the re-wrap: rows listed that no reader finds (written in the database).
        // (Change records the trail has still to take are counted, never listed: waited for.)
        stalled = if r.remacced == 0 && r.elsewhere > 0 && left >= before {
            stalled + 1
        } else {
            0
        };
        if stalled >= STALLED_PASSES {
            return Err(anyhow!(
                "{left} stored MACs are left under an older MAC key and no process moves them: rows that belong to nothing the service reads (a key material without its key, an access key without its principal: written in the database?); review them before the older MAC key can be destroyed"
            ));
        }
        let done = (total - left).max(0);
        eprintln!(
            "kms hsm: made {done} of {total} MACs again ({:.0} %), {left} left",
            percent(done, total)
        );
        if (!r.moved() || stalled > 0) && left > 0 {
            if r.refused > 0 {
                return Err(anyhow!(
                    "{left} stored MACs are left under an older MAC key: {} rows failed their integrity check (logged); review them before the older MAC key can be destroyed",
                    r.refused
                ));
            }
            if r.waiting > 0 {
                return Err(anyhow!(
                    "{left} stored MACs are left under an older MAC key: {} keys' imported material is deleted, so their import records' material checks move only when the same material is imported again (or the key is deleted)",
                    r.waiting
                ));
            }
            // Rows moved by another process, or written under the older key by a node that
            // has not followed the rotation yet (or records the trail has still to take):
            // look again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "kms hsm: every stored MAC is made under MAC key v{current} ({mine} by this command, {others} by other processes)"
    );
    Ok(())
}
