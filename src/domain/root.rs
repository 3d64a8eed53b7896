//! Root key rotation. `kms hsm rotate-root-key` creates a new root wrapping key in the token
//! and records its version; from then on every new blob is wrapped under it, and a job (on
//! every node, and in the command itself) re-wraps the stored blobs that are still under an
//! older one, in batches. Each blob is unwrapped under its old root into an extractable session
//! object and wrapped under the new one inside the token (its key never leaves the token in
//! plaintext), its row verified before and sealed again after, and stored only if the row is
//! still as verified: each blob is re-wrapped once, whichever nodes run the job and however
//! often they are killed. Reads work throughout: a blob unwraps under the root key it records,
//! and older root keys stay in the token until `kms hsm destroy-root-key` removes one that no
//! blob needs (the database's foreign key refuses to forget a version a blob still records).

use super::asymmetric::{self, Kind};
use super::{attrs_mac_input, credentials, import, material_mac_input, Kms, KmsError};
use crate::domain::Result;
use crate::hsm::{BlobKind, PairKind, PrivateUse};
use crate::store::{
    AccessKeyRecord, BlobRef, ImportTokenRecord, MaterialRecord, ServiceStore, SessionRecord,
};

/// What one pass of the re-wrap job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewrapped {
    /// Blobs this pass re-wrapped under the current root key.
    pub rewrapped: usize,
    /// Blobs another process re-wrapped (or changed) first.
    pub elsewhere: usize,
    /// Rows that failed their integrity check: left as they are, and reported.
    pub refused: usize,
}

/// The current root key version (the newest recorded) and how many blobs are still under an
/// older one, from the blobs per root key version.
pub fn current_and_backlog(per_root: &[(i32, i64)]) -> (i32, i64) {
    let current = per_root.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let backlog = per_root
        .iter()
        .filter(|(v, _)| *v < current)
        .map(|(_, n)| n)
        .sum();
    (current, backlog)
}

impl Rewrapped {
    /// Whether the pass moved anything (a pass that moved nothing is the end of the work, or
    /// of what can be done: refused rows stay under their old root).
    pub fn moved(&self) -> bool {
        self.rewrapped + self.elsewhere > 0
    }
}

impl Kms {
    /// Follow a root key version the database records beyond the one this process wraps
    /// under (another process rotated it): load it from the token, so new blobs are wrapped
    /// under it from now on. Returns the version followed, if any.
    pub async fn follow_root_key<S: ServiceStore + ?Sized>(
        &self,
        roots: &S,
    ) -> Result<Option<u32>> {
        let Some(recorded) = roots.current_root_version().await? else {
            return Ok(None);
        };
        let recorded = recorded as u32;
        if recorded <= self.hsm.root_version()? {
            return Ok(None);
        }
        let h = self.hsm.clone();
        tokio::task::spawn_blocking(move || h.load_service_keys(recorded))
            .await
            .map_err(|e| KmsError::Internal(e.to_string()))?
            .map_err(|e| {
                tracing::error!(root_version = recorded, error = %e, "the database records a newer root key than the token provides; new blobs stay under the older one");
                KmsError::from(e)
            })?;
        tracing::warn!(
            root_version = recorded,
            "root key rotated: new blobs are wrapped under the new root key from now on"
        );
        Ok(Some(recorded))
    }

    /// Re-wrap up to `limit` blobs of each kind that are still under a root key older than
    /// the current one.
    pub async fn rewrap_batch<S: ServiceStore + ?Sized>(
        &self,
        roots: &S,
        limit: i64,
    ) -> Result<Rewrapped> {
        let current = self.hsm.root_version()? as i32;
        let mut out = Rewrapped::default();
        let blobs = roots.blobs_below_root(current, limit).await?;
        // Several at once: the token calls run on the blocking pool, the queries meanwhile.
        for wave in blobs.chunks(CONCURRENT) {
            let done = join_all(wave.iter().map(|b| self.rewrap_one(roots, b)).collect()).await;
            for r in done {
                match r {
                    Ok(true) => out.rewrapped += 1,
                    Ok(false) => out.elsewhere += 1,
                    Err(KmsError::KeyUnavailable) => out.refused += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        crate::metrics::rewrapped(out.rewrapped);
        Ok(out)
    }

    /// Blobs per root key version, and the metric of those left to re-wrap.
    pub async fn root_key_status<S: ServiceStore + ?Sized>(
        &self,
        roots: &S,
    ) -> Result<Vec<(i32, i64)>> {
        let per_root = roots.blobs_per_root().await?;
        crate::metrics::rewrap_backlog(current_and_backlog(&per_root).1);
        Ok(per_root)
    }

    /// How many stored key material rows fail their MAC (which covers the root key version
    /// each records), each logged. Before a root key is destroyed none may: a row relabelled
    /// with SQL as wrapped under another root key could be wrapped under it, and would be lost
    /// with it.
    pub async fn materials_failing_their_check(&self) -> Result<usize> {
        let (mut after, mut bad) = (None, 0);
        let mut key: Option<crate::store::KeyRecord> = None;
        loop {
            let page = self.keys.materials_after(after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.key_id, last.version));
            for m in page {
                if key.as_ref().is_none_or(|k| k.key_id != m.key_id) {
                    key = self.keys.key(m.key_id).await?;
                }
                // A row that fails is logged (by `verify_material`, or here without its key).
                let holds = match &key {
                    Some(k) => match self.verify_material(k, &m).await {
                        Ok(()) => true,
                        Err(KmsError::KeyUnavailable) => false,
                        Err(e) => return Err(e),
                    },
                    None => {
                        tracing::error!(key_id = %m.key_id, version = m.version, "a key material row has no key row (written in the database?)");
                        false
                    }
                };
                bad += usize::from(!holds);
            }
        }
        Ok(bad)
    }

    /// Re-wrap one blob: false if its row is gone or another process re-wrapped it first;
    /// `KeyUnavailable` (logged) if its row fails its integrity check.
    async fn rewrap_one<S: ServiceStore + ?Sized>(
        &self,
        roots: &S,
        blob: &BlobRef,
    ) -> Result<bool> {
        let refused = || {
            tracing::error!(?blob, "a row holding a wrapped blob failed its integrity check; not re-wrapping it (the older root key cannot be destroyed while the row records it)");
            KmsError::KeyUnavailable
        };
        let moved = match blob {
            BlobRef::KeyStorePin(id) => return self.rewrap_store_pin(id).await,
            BlobRef::Material(key_id, version) => {
                let (Some(rec), Some(m)) = (
                    self.keys.key(*key_id).await?,
                    self.keys.material(*key_id, *version).await?,
                ) else {
                    return Ok(false);
                };
                // The token is chosen by the key's custom key store, which its material's MAC
                // does not cover: the key's attributes seal (which does) must hold first, or a
                // store set with SQL would have the job write a root key into that partition.
                if !self.sealed(attrs_mac_input(&rec), &rec.attrs_mac).await? {
                    return Err(refused());
                }
                let kind = match asymmetric::kind(rec.key_spec) {
                    Some(Kind::Pair(k)) => {
                        BlobKind::Private(k, asymmetric::private_use(rec.key_usage))
                    }
                    Some(Kind::Hmac(..)) => BlobKind::Secret,
                    _ => BlobKind::Aes,
                };
                // A key in a custom key store: its material moves to its partition's root key
                // of the same version, in the partition (connected, here), never the service's.
                let token = match &rec.custom_key_store_id {
                    None => self.hsm.clone(),
                    Some(store) => self.partition_at_current_root(&rec).await.map_err(|e| {
                        tracing::error!(key_id = %rec.key_id, store, error = ?e, "the key's custom key store is not connected: its material stays under the older root key until it is");
                        KmsError::KeyUnavailable
                    })?,
                };
                self.reseal_in(&token, &m, kind, |m| material_mac_input(&rec, m))
                    .await?
            }
            BlobRef::AccessKey(id) => match self.ids.access_key(id).await? {
                Some(r) => {
                    self.reseal(&r, BlobKind::Secret, credentials::access_key_mac_input)
                        .await?
                }
                None => return Ok(false),
            },
            BlobRef::Session(id) => match self.ids.session(id).await? {
                Some(r) => {
                    self.reseal(&r, BlobKind::Secret, credentials::session_mac_input)
                        .await?
                }
                None => return Ok(false),
            },
            BlobRef::ImportToken(id) => {
                let Some(t) = self.keys.import_token(*id).await? else {
                    return Ok(false);
                };
                let bits = t
                    .wrapping_key_spec
                    .strip_prefix("RSA_")
                    .and_then(|b| b.parse::<u32>().ok());
                let Some(bits) = bits else {
                    return Err(refused());
                };
                let kind = BlobKind::Private(PairKind::Rsa(bits), PrivateUse::Unwrap);
                self.reseal(&t, kind, import::token_mac_input).await?
            }
        };
        let Some((old_mac, wrapped, root_version, mac)) = moved else {
            return Err(refused());
        };
        Ok(roots
            .rewrap_blob(blob, &old_mac, &wrapped, root_version, &mac)
            .await?)
    }

    /// One row's blob re-wrapped and the row sealed again: `None` if the row as stored fails
    /// its MAC (nothing unverified is sealed); `input`: what its MAC covers. Returns (the old
    /// MAC, the new blob, its root version, the new MAC).
    async fn reseal<R: WrappedRow>(
        &self,
        row: &R,
        kind: BlobKind,
        input: impl Fn(&R) -> Vec<u8>,
    ) -> Result<Option<Resealed>> {
        self.reseal_in(&self.hsm.clone(), row, kind, input).await
    }

    /// [`Kms::reseal`] with the blob re-wrapped in `token` (a custom key store's partition);
    /// the MAC is still the service token's.
    async fn reseal_in<R: WrappedRow>(
        &self,
        token: &crate::hsm::Hsm,
        row: &R,
        kind: BlobKind,
        input: impl Fn(&R) -> Vec<u8>,
    ) -> Result<Option<Resealed>> {
        let (blob, root_version, mac) = row.parts();
        if !super::seal::sealed_in(&self.hsm, input(row), mac).await? {
            return Ok(None);
        }
        let (wrapped, rv) = token
            .rewrap(blob.clone(), root_version as u32, kind)
            .await?;
        let new = row.with(wrapped, rv as i32);
        // Of the form the row had: a session's seal keeps the generation it was issued under.
        let new_mac = self.seal_like(mac, input(&new)).await?;
        let (wrapped, root_version, _) = new.parts();
        Ok(Some((mac.clone(), wrapped.clone(), root_version, new_mac)))
    }

    /// Root key rotation: the key that encrypts store `id`'s PIN re-wrapped under the service
    /// token's current root key, and the row sealed again. False if the row is gone or moved
    /// already; `KeyUnavailable` if it fails its seal.
    pub(crate) async fn rewrap_store_pin(&self, id: &str) -> Result<bool> {
        let store = self.cks.store()?;
        let Some(row) = store.custom_key_store(id).await? else {
            return Ok(false);
        };
        let old = self.verified_store(row).await?;
        let (Some(wrapped), Some(version)) = (old.password_key.clone(), old.password_root_version)
        else {
            return Ok(false);
        };
        let (rewrapped, v) = self
            .hsm
            .rewrap(wrapped, version as u32, crate::hsm::BlobKind::Aes)
            .await?;
        if v as i32 == version {
            return Ok(false);
        }
        let mut next = old.clone();
        next.password_key = Some(rewrapped);
        next.password_root_version = Some(v as i32);
        match self.rewrite_store(&old, next).await {
            Ok(()) => Ok(true),
            Err(KmsError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Blobs re-wrapped at once by one process.
const CONCURRENT: usize = 16;

/// Run `futs` concurrently on this task; their outputs in order (a small `join_all`).
pub(super) async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future completed"))
        .collect()
}

/// A row that holds a blob wrapped under a root key, and the MAC that seals it.
trait WrappedRow: Sized {
    /// Its blob, the blob's root key version, its MAC.
    fn parts(&self) -> (&Vec<u8>, i32, &Vec<u8>);
    /// The row with another blob, wrapped under root key `root_version`.
    fn with(&self, blob: Vec<u8>, root_version: i32) -> Self;
}

/// `impl WrappedRow for $row` whose blob is column `$blob`.
macro_rules! wrapped_row {
    ($row:ty, $blob:ident) => {
        impl WrappedRow for $row {
            fn parts(&self) -> (&Vec<u8>, i32, &Vec<u8>) {
                (&self.$blob, self.root_version, &self.mac)
            }
            fn with(&self, $blob: Vec<u8>, root_version: i32) -> Self {
                Self {
                    $blob,
                    root_version,
                    ..self.clone()
                }
            }
        }
    };
}
wrapped_row!(MaterialRecord, wrapped);
wrapped_row!(AccessKeyRecord, secret_blob);
wrapped_row!(SessionRecord, secret_blob);
wrapped_row!(ImportTokenRecord, wrapped_private);

/// A re-wrapped row: (the old MAC, the new blob, its root version, the new MAC).
type Resealed = (Vec<u8>, Vec<u8>, i32, Vec<u8>);
