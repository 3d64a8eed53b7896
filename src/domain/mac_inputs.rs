//! What each row MAC covers: the bytes, bound to the row they belong to (key, account,
//! region), that the token MACs. A change here is a change of every stored MAC: give the new
//! layout a new domain string (`kms.<row>.vN`) and keep reading the old one.

use super::seal;
use crate::store::{KeyRecord, MaterialRecord, PrincipalAuthz, Tag};

/// The sealed parts of a key row, each with its own generation.
pub(crate) const KEY_PARTS: [&str; 4] = ["policy", "state", "attributes", "rotation"];

/// Each sealed part of a key row by name, with its stored seal.
pub(crate) fn key_part_rows(rec: &KeyRecord) -> Vec<(String, &[u8])> {
    let macs = [
        &rec.policy_mac,
        &rec.state_mac,
        &rec.attrs_mac,
        &rec.rotation_mac,
    ];
    KEY_PARTS
        .iter()
        .zip(macs)
        .map(|(part, mac)| (seal::key_row(rec, part), mac.as_deref().unwrap_or_default()))
        .collect()
}

/// Length-prefixed concatenation for MAC inputs, so no two field lists encode alike.
pub(crate) fn mac_input(domain: &str, fields: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in std::iter::once(domain.as_bytes()).chain(fields.iter().copied()) {
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// What a principal's MAC covers: its account, kind, trust policy, service registration, and
/// every identity policy and tag (sorted bytewise, so storage order does not matter).
pub(crate) fn principal_mac_input(arn: &str, a: &PrincipalAuthz) -> Vec<u8> {
    let mut policies: Vec<&(String, String)> = a.policies.iter().collect();
    policies.sort();
    let mut tags: Vec<(&str, &str)> = a
        .tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    tags.sort();
    let (np, nt) = (
        (policies.len() as u32).to_be_bytes(),
        (tags.len() as u32).to_be_bytes(),
    );
    let mut fields: Vec<&[u8]> = vec![
        arn.as_bytes(),
        a.account_id.as_bytes(),
        a.kind.as_bytes(),
        a.trust_policy.as_deref().unwrap_or("\u{0}none").as_bytes(),
        a.via_service.as_deref().unwrap_or("\u{0}none").as_bytes(),
        &np,
    ];
    for (n, d) in &policies {
        fields.push(n.as_bytes());
        fields.push(d.as_bytes());
    }
    fields.push(&nt);
    for (k, v) in &tags {
        fields.push(k.as_bytes());
        fields.push(v.as_bytes());
    }
    mac_input("kms.principal-authz.v1", &fields)
}

pub(crate) fn material_mac_input(k: &KeyRecord, m: &MaterialRecord) -> Vec<u8> {
    let mut fields: Vec<&[u8]> = vec![
        m.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        k.key_spec.as_str().as_bytes(),
        k.key_usage.as_str().as_bytes(),
    ];
    let (version, root_version) = (m.version.to_be_bytes(), m.root_version.to_be_bytes());
    fields.extend_from_slice(&[&version, &root_version, &m.wrapped]);
    match &m.public_key {
        None => mac_input("kms.key-material.v1", &fields),
        // A key pair's row also binds its public key.
        Some(p) => {
            fields.push(p);
            mac_input("kms.key-material.v2", &fields)
        }
    }
}

/// A key's policy, bound to the key it belongs to, for its MAC.
pub(crate) fn policy_mac_input(k: &KeyRecord) -> Vec<u8> {
    mac_input(
        "kms.key-policy.v1",
        &[
            k.key_id.as_bytes(),
            k.account_id.as_bytes(),
            k.region.as_bytes(),
            k.policy.as_bytes(),
        ],
    )
}

/// What a key's state MAC covers: its identity, state and deletion date, and for a primary
/// waiting for its replicas' deletion the waiting period its own deletion will get.
pub(crate) fn state_mac_input(k: &KeyRecord) -> Vec<u8> {
    let date = k
        .deletion_date
        .map(|d| d.timestamp_micros().to_be_bytes().to_vec())
        .unwrap_or_default();
    let mut fields: Vec<&[u8]> = vec![
        k.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        k.key_state.as_str().as_bytes(),
        &date,
    ];
    match k.pending_window_days {
        None => mac_input("kms.key-state.v1", &fields),
        Some(days) => {
            let days = days.to_be_bytes();
            fields.push(&days);
            mac_input("kms.key-state.v2", &fields)
        }
    }
}

/// What a key's tags MAC covers: its identity and every tag (sorted, so storage order does not
/// matter): a tag inserted, altered, deleted or moved from another key no longer matches.
pub(crate) fn tags_mac_input(k: &KeyRecord, tags: &[Tag]) -> Vec<u8> {
    let mut sorted: Vec<(&str, &str)> = tags
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    sorted.sort();
    let n = (sorted.len() as u32).to_be_bytes();
    let mut fields: Vec<&[u8]> = vec![
        k.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        &n,
    ];
    for (key, value) in &sorted {
        fields.push(key.as_bytes());
        fields.push(value.as_bytes());
    }
    mac_input("kms.key-tags.v1", &fields)
}

/// What a key's aliases seal covers: its identity and its set of aliases as stored
/// (`keys.alias_set`, each name with its row's generation then, by name).
pub(crate) fn aliases_mac_input(k: &KeyRecord, alias_set: &str) -> Vec<u8> {
    mac_input(
        "kms.key-aliases.v1",
        &[
            k.key_id.as_bytes(),
            k.account_id.as_bytes(),
            k.region.as_bytes(),
            alias_set.as_bytes(),
        ],
    )
}

/// What a key's attributes MAC covers: what the key is, fixed when it is created.
pub(crate) fn attrs_mac_input(k: &KeyRecord) -> Vec<u8> {
    let mrk = k.mrk_id.map(|m| m.as_bytes().to_vec()).unwrap_or_default();
    let multi_region = [k.multi_region as u8];
    let mut fields: Vec<&[u8]> = vec![
        k.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        k.key_spec.as_str().as_bytes(),
        k.key_usage.as_str().as_bytes(),
        k.origin.as_str().as_bytes(),
        k.key_manager.as_bytes(),
        &multi_region,
        &mrk,
    ];
    // A key in a custom key store names it too (v2); every other key's input is v1's.
    match &k.custom_key_store_id {
        None => mac_input("kms.key-attributes.v1", &fields),
        Some(store) => {
            fields.push(store.as_bytes());
            fields.push(k.xks_key_id.as_deref().unwrap_or("\u{0}none").as_bytes());
            mac_input("kms.key-attributes.v2", &fields)
        }
    }
}

/// What a key's rotation MAC covers: its identity and creation time (a deletion recorded in
/// the trail after it refuses the row), and what rotation and primary moves change (current
/// material version, schedule, on-demand count, primary flag).
pub(crate) fn rotation_mac_input(k: &KeyRecord) -> Vec<u8> {
    let period = k
        .rotation_period_days
        .map(|d| d.to_be_bytes().to_vec())
        .unwrap_or_default();
    let next = k
        .next_rotation_date
        .map(|d| d.timestamp_micros().to_be_bytes().to_vec())
        .unwrap_or_default();
    let created = k.created_at.timestamp_micros().to_be_bytes();
    let mut fields: Vec<&[u8]> = vec![
        k.key_id.as_bytes(),
        k.account_id.as_bytes(),
        k.region.as_bytes(),
        &created,
    ];
    let (version, on_demand) = (
        k.current_version.to_be_bytes(),
        k.on_demand_rotations.to_be_bytes(),
    );
    let (enabled, primary) = ([k.rotation_enabled as u8], [k.mrk_primary as u8]);
    fields.extend_from_slice(&[&version, &enabled, &period, &next, &on_demand, &primary]);
    match k.on_demand_rotation_start {
        // No on-demand rotation in progress: the form every row was sealed in before there
        // could be one.
        None => mac_input("kms.key-rotation.v1", &fields),
        Some(t) => {
            let started = t.timestamp_micros().to_be_bytes();
            fields.push(&started);
            mac_input("kms.key-rotation.v2", &fields)
        }
    }
}

/// What an alias row's MAC covers: where it lives, its name and the key it names.
pub(crate) fn alias_mac_input(a: &crate::store::AliasRecord) -> Vec<u8> {
    mac_input(
        "kms.alias.v1",
        &[
            a.account_id.as_bytes(),
            a.region.as_bytes(),
            a.alias_name.as_bytes(),
            a.key_id.as_bytes(),
        ],
    )
}
