//! The trail's anchor outside the database (`audit_anchor_file`): the chain head after every
//! commit, and every signed checkpoint. Someone who can write the database but not this file
//! can no longer delete acknowledged events, or checkpoints and the chain after them, unseen:
//! `kms audit verify` finds the anchored head and checkpoints in the trail or says what is
//! missing.
//!
//! * `<file>.head`: one fixed-width line, rewritten in place after every group commit (one
//!   `pwrite`, no growth): `head <seq> <hash hex>`. A node only moves it forward.
//! * `<file>`: append-only, one line per checkpoint this node signed:
//!   `checkpoint <seq> <hash hex> <signed_at µs> <signature base64>`.

use crate::store::CheckpointRow;
use base64::Engine;
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Width of the head record: `head `, 19 digits, a space, 64 hex digits, a line break, padded.
const HEAD_RECORD: usize = 96;

pub struct Anchor {
    path: PathBuf,
    head: Mutex<(std::fs::File, i64)>,
    /// The head this file held when it was opened.
    opened_at: Option<(i64, Vec<u8>)>,
}

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn open(path: &Path, append: bool) -> Result<std::fs::File, String> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.read(true).write(true);
    }
    o.open(path)
        .map_err(|e| format!("cannot open the audit anchor {}: {e}", path.display()))
}

impl Anchor {
    /// Open (or create) the anchor; fails when it cannot be written.
    pub fn open(path: &Path) -> Result<Anchor, String> {
        open(path, true)?;
        let hp = head_path(path);
        let f = open(&hp, false)?;
        let opened_at = read_head(&hp)?;
        let last = opened_at.as_ref().map(|(s, _)| *s).unwrap_or(0);
        Ok(Anchor {
            path: path.to_path_buf(),
            head: Mutex::new((f, last)),
            opened_at,
        })
    }

    /// The head this anchor held when it was opened: a point the trail must still hold.
    pub fn opened_at(&self) -> Option<(i64, Vec<u8>)> {
        self.opened_at.clone()
    }

    /// Record the chain head after a commit (before its callers are answered).
    pub fn head(&self, seq: i64, hash: &[u8]) -> Result<(), String> {
        let mut g = self.head.lock().unwrap();
        if seq <= g.1 {
            return Ok(());
        }
        let mut line = format!("head {seq} {}", hex::encode(hash));
        while line.len() < HEAD_RECORD - 1 {
            line.push(' ');
        }
        line.push('\n');
        g.0.write_all_at(line.as_bytes(), 0)
            .map_err(|e| format!("cannot write the audit anchor head: {e}"))?;
        g.1 = seq;
        Ok(())
    }

    /// Append a signed checkpoint.
    pub fn checkpoint(&self, c: &CheckpointRow) -> Result<(), String> {
        let line = format!(
            "checkpoint {} {} {} {}\n",
            c.seq,
            hex::encode(&c.hash),
            c.signed_at.timestamp_micros(),
            base64::engine::general_purpose::STANDARD.encode(&c.signature)
        );
        let mut f = open(&self.path, true)?;
        f.write_all(line.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| format!("cannot append to the audit anchor: {e}"))
    }
}

fn read_head(hp: &Path) -> Result<Option<(i64, Vec<u8>)>, String> {
    let text = match std::fs::read_to_string(hp) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", hp.display())),
    };
    let Some(line) = text.lines().next().filter(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let bad = || format!("{} is not an audit anchor head", hp.display());
    let mut w = line.split_whitespace();
    if w.next() != Some("head") {
        return Err(bad());
    }
    let seq = w.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let hash = w.next().and_then(|h| hex::decode(h).ok()).ok_or_else(bad)?;
    Ok(Some((seq, hash)))
}

/// What one anchor holds.
#[derive(Debug, Default)]
pub struct Anchored {
    pub head: Option<(i64, Vec<u8>)>,
    pub checkpoints: Vec<CheckpointRow>,
}

/// Read an anchor (its head and checkpoints) for `kms audit verify`.
pub fn read(path: &Path) -> Result<Anchored, String> {
    let head = read_head(&head_path(path))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the audit anchor {}: {e}", path.display()))?;
    let mut checkpoints = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = || {
            format!(
                "{} line {}: not an audit anchor record",
                path.display(),
                i + 1
            )
        };
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["checkpoint", seq, hash, at, sig] => {
                let micros: i64 = at.parse().map_err(|_| bad())?;
                checkpoints.push(CheckpointRow {
                    seq: seq.parse().map_err(|_| bad())?,
                    hash: hex::decode(hash).map_err(|_| bad())?,
                    signed_at: chrono::DateTime::from_timestamp_micros(micros).ok_or_else(bad)?,
                    signature: base64::engine::general_purpose::STANDARD
                        .decode(sig)
                        .map_err(|_| bad())?,
                });
            }
            [] => {}
            _ => return Err(bad()),
        }
    }
    Ok(Anchored { head, checkpoints })
}
