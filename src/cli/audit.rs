//! `kms audit …`: the auditor's commands: the public key, verify, export, checkpoint.

use crate::config::Settings;
use crate::server::wiring::{connect_store, open_anchor, open_kms};
use anyhow::{anyhow, Result};

/// `kms audit …`: the auditor's commands.
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the audit public key (PEM) that verifies checkpoints.
    PublicKey,
    /// Verify the trail in the database, or an export, with the audit public key.
    Verify {
        /// The audit public key (PEM or DER), as `kms audit public-key` printed it.
        #[arg(long)]
        public_key: std::path::PathBuf,
        /// Verify this export instead of the database (no database or token needed).
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        /// An anchor file (`audit_anchor_file` of a node) to check the trail against; one per
        /// node. Default: this configuration's `audit_anchor_file`.
        #[arg(long)]
        anchor: Vec<std::path::PathBuf>,
        /// Refuse a trail whose events run past a last checkpoint older than this. Default:
        /// `audit_max_checkpoint_age_secs` (0: no bound).
        #[arg(long)]
        max_checkpoint_age_secs: Option<u64>,
        /// Verify a signed report of the console instead: its signature, then that the chain
        /// head it names is in the trail (the export given, or else the database).
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// Write events as JSON Lines, with what `verify` needs to check them.
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
        /// RFC 3339 times.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        /// An account: its callers' events, and other accounts' calls that used its keys.
        #[arg(long)]
        account: Option<String>,
        /// A key id or key ARN.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        event_name: Option<String>,
    },
    /// Sign a checkpoint over the chain head now.
    Checkpoint,
}

pub fn read_public_key(path: &std::path::Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&raw);
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        use base64::Engine;
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| anyhow!("{} is not a PEM public key", path.display()));
    }
    Ok(raw)
}

fn print_report(r: &crate::audit::verify::Report) -> Result<()> {
    println!(
        "checked {} events ({} with content), {} checkpoints, up to event {}",
        r.events, r.bodies_checked, r.checkpoints, r.last_seq
    );
    if r.ok() {
        println!("OK: the trail is intact");
        return Ok(());
    }
    for (_, p) in &r.problems {
        println!("TAMPERED: {p}");
    }
    Err(anyhow!(
        "the audit trail failed verification: {}",
        r.problems[0].1
    ))
}

pub async fn run(s: &Settings, cmd: AuditCommand) -> Result<()> {
    use crate::audit::verify;
    let parse_time = |t: &Option<String>| -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        t.as_ref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .map_err(|_| anyhow!("{t} is not an RFC 3339 time"))
            })
            .transpose()
    };
    match cmd {
        AuditCommand::Verify {
            public_key,
            export,
            report: Some(report),
            ..
        } => {
            let key = read_public_key(&public_key)?;
            let text = std::fs::read(&report)
                .map_err(|e| anyhow!("cannot read {}: {e}", report.display()))?;
            let signed = crate::audit::report::verify(&text, &key).map_err(|e| anyhow!(e))?;
            println!(
                "the report's signature verifies: signed {} over the trail up to event {}",
                signed.signed_at, signed.seq
            );
            let hash = match export {
                Some(file) => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
                    let (links, _) = verify::parse_export(&text).map_err(|e| anyhow!(e))?;
                    links
                        .into_iter()
                        .find(|l| l.seq == signed.seq)
                        .map(|l| l.hash)
                }
                None => {
                    let store = connect_store(s).await?;
                    let row = store.audit_events(signed.seq - 1, 1).await?;
                    row.into_iter()
                        .find(|r| r.seq == signed.seq)
                        .map(|r| r.hash)
                }
            };
            match hash {
                Some(h) if h == signed.head => {
                    println!("OK: the trail holds the chain head the report was built from");
                    Ok(())
                }
                Some(_) => Err(anyhow!(
                    "the trail's event {} does not have the hash the report was built from: the trail was rewritten since",
                    signed.seq
                )),
                None => Err(anyhow!(
                    "the trail has no event {}: the report's chain head cannot be checked against it",
                    signed.seq
                )),
            }
        }
        AuditCommand::Verify {
            public_key,
            export: Some(file),
            ..
        } => {
            let key = read_public_key(&public_key)?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
            let (links, cps) = verify::parse_export(&text).map_err(|e| anyhow!(e))?;
            print_report(&verify::verify(&links, &cps, &key, false, None))
        }
        AuditCommand::Verify {
            public_key,
            export: None,
            anchor,
            max_checkpoint_age_secs,
            report: None,
        } => {
            let key = read_public_key(&public_key)?;
            let anchors: Vec<std::path::PathBuf> = if anchor.is_empty() {
                s.audit_anchor_file.iter().cloned().collect()
            } else {
                anchor
            };
            let anchored = anchors
                .iter()
                .map(|a| crate::audit::anchor::read(a).map_err(|e| anyhow!(e)))
                .collect::<Result<Vec<_>>>()?;
            // The events the anchors name: their hashes are kept while the trail is read.
            let wanted: Vec<i64> = anchored
                .iter()
                .flat_map(|a| {
                    a.head
                        .iter()
                        .map(|h| h.0)
                        .chain(a.checkpoints.iter().map(|c| c.seq))
                })
                .collect();
            let store = connect_store(s).await?;
            let (mut report, hashes, cps) = verify::stored(store.as_ref(), &key, &wanted).await?;
            for (a, anchored) in anchors.iter().zip(&anchored) {
                verify::check_anchor(
                    &mut report,
                    &hashes,
                    &cps,
                    anchored,
                    &a.display().to_string(),
                    &key,
                );
            }
            let age = max_checkpoint_age_secs.unwrap_or(s.audit_max_checkpoint_age_secs);
            if age > 0 {
                verify::check_freshness(
                    &mut report,
                    &cps,
                    chrono::Duration::seconds(age as i64),
                    chrono::Utc::now(),
                );
            }
            if anchors.is_empty() {
                eprintln!("kms audit: no anchor outside the database was checked (audit_anchor_file): events deleted after the last checkpoint cannot be detected");
            }
            print_report(&report)
        }
        AuditCommand::Export {
            out,
            from,
            to,
            account,
            key,
            event_name,
        } => {
            let filter = verify::Filter {
                from: parse_time(&from)?,
                to: parse_time(&to)?,
                account,
                key,
                event_name,
            };
            let store = connect_store(s).await?;
            let (lines, n) = verify::export_stored(store.as_ref(), &filter).await?;
            std::fs::write(&out, lines.join("\n") + "\n")
                .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
            eprintln!("kms audit: {n} events exported to {}", out.display());
            Ok(())
        }
        AuditCommand::PublicKey | AuditCommand::Checkpoint => {
            let store = connect_store(s).await?;
            let kms = open_kms(s, store.clone()).await?;
            if let AuditCommand::Checkpoint = cmd {
                let anchor = open_anchor(s)?;
                match crate::audit::checkpoint(store.as_ref(), kms.hsm(), anchor.as_deref()).await?
                {
                    Some(seq) => eprintln!("kms audit: checkpoint signed at event {seq}"),
                    None => eprintln!("kms audit: the last checkpoint already covers the head"),
                }
                return Ok(());
            }
            let der = crate::audit::public_key_der(kms.hsm()).await?;
            print!("{}", crate::audit::public_key_pem(&der));
            Ok(())
        }
    }
}
