//! Row seals, and the generation that refuses an older row put back.
//!
//! A row whose change alters a decision (a key's policy, state, tags, attributes and rotation
//! state, its import record, an alias, a principal's authorization) carries a seal: an HMAC computed in the token
//! over the row's content. A seal says the service wrote the row, not that it is the row's
//! latest content: a database writer can put back an older row with the seal it had then (a
//! replay: the policy before the last `PutKeyPolicy`, an `Enabled` state before `DisableKey`).
//!
//! So each seal also covers the row's *generation*. A change writes the next one: above the
//! generation of the row as it verified it, and above every generation the audit trail holds
//! for the row. Once the change's write committed, the generation is noted in the change's
//! scope, and the change's event names it (`additionalEventData.rowGenerations`, in the hashed
//! body, indexed in `audit_generations`). A row loaded cold is refused when its generation is
//! below the highest one the trail holds for it: it is an older row put back. A row above it is
//! a change whose event is still on its way (or was refused by the trail), so a failed append
//! never locks a key out; the next change's event moves the mark past it.
//!
//! Stored form: `1 || generation (8 bytes, big-endian) || MAC`, the MAC as the token layer
//! stores one (`crate::hsm::mac_parts`: 32 bytes under MAC key version 1, 41 in all; `2 ||
//! version || HMAC` above it, 46 in all). A seal of 32 or 37 bytes (a bare MAC) was written
//! before rows had generations and reads as generation 0, which any generation the trail holds
//! refuses.

use super::Kms;
use crate::domain::Result;
use crate::store::{AliasRecord, KeyRecord};

const FORMAT: u8 = 1;
#[cfg(test)]
const HMAC_LEN: usize = 32;

/// A stored seal with a generation: (generation, the MAC as the token layer stores it).
fn with_generation_parts(stored: &[u8]) -> Option<(i64, &[u8])> {
    match stored {
        [FORMAT, rest @ ..] if rest.len() >= 8 => {
            let (g, mac) = rest.split_at(8);
            crate::hsm::mac_parts(mac)?;
            Some((i64::from_be_bytes(g.try_into().expect("8 bytes")), mac))
        }
        _ => None,
    }
}

/// The generation a stored seal carries (0: a seal from before generations, or none).
pub(crate) fn generation_of(stored: &[u8]) -> i64 {
    with_generation_parts(stored).map_or(0, |(g, _)| g)
}

/// The seal's MAC key version (1 for a seal from before MAC keys had versions); `None` for
/// something that is no seal.
pub(crate) fn mac_version_of(stored: &[u8]) -> Option<u32> {
    let mac = with_generation_parts(stored).map_or(stored, |(_, m)| m);
    crate::hsm::mac_parts(mac).map(|(v, _)| v)
}

/// What a seal of generation `generation` covers: the row's MAC input and, as one more
/// length-prefixed field, its generation (so no input of the older form reads as one with a
/// generation).
fn with_generation(mut input: Vec<u8>, generation: i64) -> Vec<u8> {
    for f in [b"\0generation".as_slice(), &generation.to_be_bytes()] {
        input.extend_from_slice(&(f.len() as u32).to_be_bytes());
        input.extend_from_slice(f);
    }
    input
}

/// The name the trail knows one of a key's sealed parts by (its ARN names region and account).
pub(crate) fn key_row(rec: &KeyRecord, part: &str) -> String {
    format!("{}#{part}", rec.arn())
}

/// The name the trail knows an alias row by: the alias's ARN.
pub(crate) fn alias_row(a: &AliasRecord) -> String {
    alias_row_of(&a.account_id, &a.region, &a.alias_name)
}

/// [`alias_row`] by account, region and name, before the row is read.
pub(crate) fn alias_row_of(account: &str, region: &str, name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{name}")
}

/// The name the trail knows a key's import record of one material version (expiration
/// model, `ValidTo`, description, pending rotation) by. Version 1 keeps the name it had before
/// keys held several imported materials.
pub(crate) fn import_row(key_id: uuid::Uuid, version: i32) -> String {
    match version {
        1 => format!("key/{key_id}#import"),
        v => format!("key/{key_id}#import/v{v}"),
    }
}

/// A custom key store's row.
pub(crate) fn custom_key_store_row(id: &str) -> String {
    format!("custom-key-store/{id}")
}

/// The name the trail knows a principal's authorization (identity policies, tags, trust
/// policy, service registration) by.
pub(crate) fn principal_row(arn: &str) -> String {
    format!("{arn}#authorization")
}

/// The name the trail knows a role's sessions by. Its generation moves each time the role's
/// sessions end (its trust policy replaced, the role deleted); a session is sealed at the
/// generation it was issued under, so a session's row put back after they ended is behind
/// the trail.
pub(crate) fn sessions_row(role_arn: &str) -> String {
    format!("{role_arn}#sessions")
}

/// The stored seal of `input` at `generation`, made in `hsm` under its current MAC key.
pub(crate) async fn seal_in(
    hsm: &crate::hsm::Hsm,
    input: Vec<u8>,
    generation: i64,
) -> Result<Vec<u8>> {
    let hmac = hsm.row_mac(with_generation(input, generation)).await?;
    let mut mac = Vec::with_capacity(1 + 8 + hmac.len());
    mac.push(FORMAT);
    mac.extend_from_slice(&generation.to_be_bytes());
    mac.extend_from_slice(&hmac);
    Ok(mac)
}

/// Whether `stored` (a seal with a generation, or a bare MAC from before generations) is
/// `hsm`'s seal over `input`.
pub(crate) async fn sealed_in(
    hsm: &crate::hsm::Hsm,
    input: Vec<u8>,
    stored: &[u8],
) -> Result<bool> {
    Ok(match with_generation_parts(stored) {
        Some((g, mac)) => hsm.row_mac_matches(with_generation(input, g), mac).await?,
        // A bare MAC: a seal from before generations (32 bytes, or 37 re-MAC'd since).
        None => hsm.row_mac_matches(input, stored).await?,
    })
}

/// A row to seal: its name, its MAC input, and its previous seal as verified (if any).
pub(crate) type RowToSeal<'a> = (String, Vec<u8>, Option<&'a [u8]>);

/// A row's new seal, to be stored with the row; once the write committed, pass it to
/// [`Kms::written`].
#[derive(Debug, Clone)]
pub(crate) struct Seal {
    pub row: String,
    pub generation: i64,
    pub mac: Vec<u8>,
}

impl Kms {
    /// Seal `input` as the next generation of each row: above its `previous` seal (as
    /// verified; `None` for a new row or one deleted before) and above every generation the
    /// trail holds for it.
    pub(crate) async fn seal_rows(&self, rows: Vec<RowToSeal<'_>>) -> Result<Vec<Seal>> {
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let trail = self.keys.generations_per_trail(&names).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (row, input, previous) in rows {
            let held = trail.iter().find(|(r, _)| *r == row).map_or(0, |(_, g)| *g);
            let generation = previous.map_or(0, generation_of).max(held) + 1;
            let mac = self.seal_at(input, generation).await?;
            out.push(Seal {
                row,
                generation,
                mac,
            });
        }
        Ok(out)
    }

    /// The stored seal of `input` at `generation`, under the current MAC key.
    async fn seal_at(&self, input: Vec<u8>, generation: i64) -> Result<Vec<u8>> {
        seal_in(&self.hsm, input, generation).await
    }

    /// A new seal over `input` of the form `stored` has: at the generation it carries, or a
    /// bare MAC for a row sealed before generations. (It does not verify `stored`.)
    pub(crate) async fn seal_like(&self, stored: &[u8], input: Vec<u8>) -> Result<Vec<u8>> {
        match with_generation_parts(stored) {
            Some((g, _)) => self.seal_at(input, g).await,
            None => Ok(self.hsm.row_mac(input).await?),
        }
    }

    /// A stored seal made again under the current MAC key, over `input` (the row as it is
    /// now) at the generation `stored` carries, once `stored` verifies over `verified_input`
    /// (the row as stored): `None` if it does not (nothing unverified is sealed again). The
    /// generation stays: the row's content is the same change, so a row put back is still
    /// behind the trail exactly when it was before.
    pub(crate) async fn reseal_under_current(
        &self,
        verified_input: Vec<u8>,
        input: Vec<u8>,
        stored: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        if !self.sealed(verified_input, &Some(stored.to_vec())).await? {
            return Ok(None);
        }
        Ok(Some(self.seal_like(stored, input).await?))
    }

    /// [`Kms::seal_rows`] for one row.
    pub(crate) async fn seal_row(
        &self,
        row: String,
        input: Vec<u8>,
        previous: Option<&[u8]>,
    ) -> Result<Seal> {
        let mut s = self.seal_rows(vec![(row, input, previous)]).await?;
        Ok(s.pop().expect("one seal per row"))
    }

    /// The write that stored `seal` committed: the running change's event names its
    /// generation. (Noted only after the commit: an event naming a generation never written
    /// would refuse the row that is there.)
    pub(crate) fn written(&self, seal: &Seal) {
        crate::store::note_written(&seal.row, seal.generation);
    }

    /// The removal of a row committed (an alias deleted): its generation moves one past the
    /// row as verified, so the row put back is refused.
    pub(crate) fn removed(&self, row: &str, previous: &[u8]) {
        crate::store::note_written(row, generation_of(previous) + 1);
    }

    /// Whether a row's stored seal (none for a row stored before it had one) is the token's
    /// seal over `input` at the generation it carries.
    pub(crate) async fn sealed(&self, input: Vec<u8>, stored: &Option<Vec<u8>>) -> Result<bool> {
        sealed_in(&self.hsm, input, stored.as_deref().unwrap_or_default()).await
    }

    /// The highest generation the trail holds for each of `rows`. Asked *before* the rows are
    /// read, it holds only generations committed before the read: a row read afterwards is at
    /// or above them unless it is an older row put back, whatever commits meanwhile.
    pub(crate) async fn trail_of(&self, rows: &[String]) -> Result<Vec<(String, i64)>> {
        Ok(self.keys.generations_per_trail(rows).await?)
    }

    /// [`Kms::current_seal`] against generations read from the trail before the row was
    /// ([`Kms::trail_of`]).
    pub(crate) async fn current_under(
        &self,
        row: String,
        input: Vec<u8>,
        stored: &Option<Vec<u8>>,
        trail: &[(String, i64)],
    ) -> Result<bool> {
        if !self.sealed(input, stored).await? {
            return Ok(false);
        }
        let stored = stored.as_deref().unwrap_or_default();
        Ok(first_behind(&[(row, stored)], trail).is_none())
    }

    /// Whether a row read to be rewritten is as the service last wrote it: its seal holds and
    /// its generation is not behind the trail (an older row put back is never re-sealed).
    pub(crate) async fn current_seal(
        &self,
        row: String,
        input: Vec<u8>,
        stored: &Option<Vec<u8>>,
    ) -> Result<bool> {
        if !self.sealed(input, stored).await? {
            return Ok(false);
        }
        let stored = stored.as_deref().unwrap_or_default();
        Ok(self.behind_trail(&[(row, stored)]).await?.is_none())
    }

    /// [`Kms::current_seal`] of a key's state row: its state, deletion date and waiting period
    /// as the service sealed them, and not an older state put back.
    pub(crate) async fn current_state_seal(&self, k: &KeyRecord) -> Result<bool> {
        self.current_seal(key_row(k, "state"), super::state_mac_input(k), &k.state_mac)
            .await
    }

    /// The first of `rows` (name, stored seal) whose generation is below the highest the
    /// trail holds for it: an older row put back. `None` when every row is current.
    pub(crate) async fn behind_trail(
        &self,
        rows: &[(String, &[u8])],
    ) -> Result<Option<(String, i64, i64)>> {
        let names: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let trail = self.keys.generations_per_trail(&names).await?;
        Ok(first_behind(rows, &trail))
    }
}

/// The first of `rows` (name, stored seal) whose generation is below the highest `trail`
/// holds for it, with both generations.
pub(crate) fn first_behind(
    rows: &[(String, &[u8])],
    trail: &[(String, i64)],
) -> Option<(String, i64, i64)> {
    for (row, stored) in rows {
        let have = generation_of(stored);
        if let Some((_, held)) = trail.iter().find(|(r, _)| r == row) {
            if have < *held {
                return Some((row.clone(), have, *held));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generation_reads_back_from_its_stored_form_and_older_seals_read_as_zero() {
        let mut s = vec![FORMAT];
        s.extend_from_slice(&7i64.to_be_bytes());
        s.extend_from_slice(&[0u8; HMAC_LEN]);
        assert_eq!(generation_of(&s), 7);
        assert_eq!(mac_version_of(&s), Some(1));
        assert_eq!(generation_of(&[0u8; HMAC_LEN]), 0);
        assert_eq!(mac_version_of(&[0u8; HMAC_LEN]), Some(1));
        assert_eq!(generation_of(&[]), 0);
        // Under MAC key version 3: `2 || 3 || HMAC` after the generation.
        let mut t = vec![FORMAT];
        t.extend_from_slice(&9i64.to_be_bytes());
        t.push(2);
        t.extend_from_slice(&3u32.to_be_bytes());
        t.extend_from_slice(&[0u8; HMAC_LEN]);
        assert_eq!(t.len(), 46);
        assert_eq!(generation_of(&t), 9);
        assert_eq!(mac_version_of(&t), Some(3));
        assert_eq!(mac_version_of(&t[9..]), Some(3));
        s[0] = 2;
        assert_eq!(generation_of(&s), 0);
        assert_eq!(mac_version_of(&s), None);
    }

    #[test]
    fn an_input_with_a_generation_never_encodes_like_one_without() {
        let a = super::super::mac_input("d", &[b"x"]);
        assert_ne!(with_generation(a.clone(), 0), a);
        assert_ne!(with_generation(a.clone(), 1), with_generation(a, 2));
    }
}
