//! Grants as a grantee plays them: sequences of CreateGrant (by the administrator, and by the
//! grantee for others), RetireGrant, RevokeGrant and Encrypt under the grants, against the real
//! service. After every step a grant the grantee created is never wider than a grant it holds
//! with CreateGrant (its operations a subset, its constraints at least as strict), and the
//! grantee's Encrypt succeeds only where one of its grants allows it.
//!
//! Input: a sequence of steps, each one byte choosing the step and the bytes it uses.
#![no_main]
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const GRANTEE: &str = "arn:aws:iam::123456789012:user/fuzz-grantee";
const OTHER: &str = "arn:aws:iam::123456789012:user/fuzz-other";
const OPS: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
    "DescribeKey",
    "CreateGrant",
    "RetireGrant",
];
const KEYS: &[&str] = &["a", "A", "b"];
const VALUES: &[&str] = &["1", "2"];

fn ops(bits: u8) -> Vec<&'static str> {
    OPS.iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, o)| *o)
        .collect()
}

fn context(b: u8) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    for (i, k) in KEYS.iter().enumerate() {
        match (b >> (2 * i)) & 3 {
            1 => {
                c.insert(k.to_string(), VALUES[0].to_string());
            }
            2 => {
                c.insert(k.to_string(), VALUES[1].to_string());
            }
            _ => {}
        }
    }
    c
}

fn constraints(b: u8, c: u8) -> Option<Value> {
    match b % 3 {
        0 => None,
        1 => Some(json!({ "EncryptionContextEquals": context(c) })),
        _ => Some(json!({ "EncryptionContextSubset": context(c) })),
    }
}

/// Whether a grant's constraints admit a context (keys compared without case, as AWS does).
/// A constraint or a context holding two keys that differ only by case admits nothing: AWS
/// says not to use such pairs and does not say how it decides them, so the service refuses
/// rather than pick one of the two values.
fn admits(constraints: &Option<Value>, ctx: &BTreeMap<String, String>) -> bool {
    let fold = |m: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        m.iter()
            .map(|(k, v)| (k.to_lowercase(), v.clone()))
            .collect()
    };
    let Some(c) = constraints else { return true };
    let obj = c.as_object().unwrap();
    let read =
        |v: &Value| -> BTreeMap<String, String> { serde_json::from_value(v.clone()).unwrap() };
    let distinct = |m: &BTreeMap<String, String>| fold(m).len() == m.len();
    if let Some(eq) = obj.get("EncryptionContextEquals") {
        let eq = read(eq);
        return distinct(&eq) && distinct(ctx) && fold(&eq) == fold(ctx);
    }
    if let Some(sub) = obj.get("EncryptionContextSubset") {
        let sub = read(sub);
        let (folded_sub, f) = (fold(&sub), fold(ctx));
        return distinct(&sub)
            && distinct(ctx)
            && folded_sub.iter().all(|(k, v)| f.get(k) == Some(v));
    }
    true
}

/// Every context over the fuzzing alphabet.
fn all_contexts() -> Vec<BTreeMap<String, String>> {
    (0u8..64).map(context).collect()
}

fuzz_target!(|data: &[u8]| {
    let fx = kms::fuzzing::fixture();
    let key = fx.dispatch("CreateKey", b"{}").expect("CreateKey")["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut by_grantee: Vec<String> = Vec::new();
    let mut steps = data.chunks(4);
    for _ in 0..12 {
        let Some(s) = steps.next() else { break };
        let b = |i: usize| s.get(i).copied().unwrap_or(0);
        match b(0) % 5 {
            // The administrator grants the grantee.
            0 => {
                let mut body =
                    json!({ "KeyId": key, "GranteePrincipal": GRANTEE, "Operations": ops(b(1)) });
                if let Some(c) = constraints(b(2), b(3)) {
                    body["Constraints"] = c;
                }
                let _ = fx.dispatch("CreateGrant", body.to_string().as_bytes());
            }
            // The grantee grants another principal (or itself).
            1 => {
                let to = if b(1) & 0x80 != 0 { GRANTEE } else { OTHER };
                let mut body =
                    json!({ "KeyId": key, "GranteePrincipal": to, "Operations": ops(b(1)) });
                let asked = constraints(b(2), b(3));
                if let Some(c) = &asked {
                    body["Constraints"] = c.clone();
                }
                if let Ok(v) = fx.dispatch_as(GRANTEE, "CreateGrant", body.to_string().as_bytes()) {
                    let id = v["GrantId"].as_str().unwrap().to_string();
                    let asked_ops = ops(b(1));
                    // Never wider than a grant the grantee held with CreateGrant.
                    let held: Vec<_> = fx
                        .grants_of(&key)
                        .into_iter()
                        .filter(|g| {
                            g.grantee_principal == GRANTEE
                                && g.grant_id != id
                                && g.operations.iter().any(|o| o == "CreateGrant")
                        })
                        .collect();
                    let covered = held.iter().any(|g| {
                        asked_ops
                            .iter()
                            .all(|o| g.operations.iter().any(|x| x == o))
                            && all_contexts()
                                .iter()
                                .all(|c| !admits(&asked, c) || admits(&g.constraints, c))
                    });
                    assert!(
                        covered,
                        "the grantee created a grant wider than any it holds: {body} (held: {:?})",
                        held.iter()
                            .map(|g| (&g.operations, &g.constraints))
                            .collect::<Vec<_>>()
                    );
                    by_grantee.push(id);
                }
            }
            // The grantee retires a grant it created, or one of its own.
            2 => {
                let grants = fx.grants_of(&key);
                if let Some(g) = grants.get(b(1) as usize % grants.len().max(1)) {
                    let _ = fx.dispatch_as(
                        GRANTEE,
                        "RetireGrant",
                        json!({ "KeyId": key, "GrantId": g.grant_id })
                            .to_string()
                            .as_bytes(),
                    );
                }
            }
            // The administrator revokes one.
            3 => {
                let grants = fx.grants_of(&key);
                if let Some(g) = grants.get(b(1) as usize % grants.len().max(1)) {
                    let _ = fx.dispatch(
                        "RevokeGrant",
                        json!({ "KeyId": key, "GrantId": g.grant_id })
                            .to_string()
                            .as_bytes(),
                    );
                }
            }
            // The grantee encrypts: only where one of its grants allows it.
            _ => {
                let ctx = context(b(1));
                let body = json!({ "KeyId": key, "Plaintext": "AAAA", "EncryptionContext": ctx });
                let r = fx.dispatch_as(GRANTEE, "Encrypt", body.to_string().as_bytes());
                let allowed = fx.grants_of(&key).iter().any(|g| {
                    g.grantee_principal == GRANTEE
                        && g.operations.iter().any(|o| o == "Encrypt")
                        && admits(&g.constraints, &ctx)
                });
                assert_eq!(
                    r.is_ok(),
                    allowed,
                    "Encrypt as the grantee with {ctx:?}: {:?}",
                    r.err().map(|e| e.wire())
                );
            }
        }
    }
    let _ = fx.dispatch(
        "ScheduleKeyDeletion",
        json!({ "KeyId": key, "PendingWindowInDays": 7 })
            .to_string()
            .as_bytes(),
    );
});
