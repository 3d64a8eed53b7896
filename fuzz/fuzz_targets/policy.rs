//! The policy parser and evaluator: any text as a key or identity policy, evaluated against a
//! request whose action, resource and condition values come from the input too.
//!
//! Input: `policy \0 action \0 resource \0 key \0 value \0 key \0 value …`.
#![no_main]
use kms::policy::{self, PolicyKind, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let Some(text) = parts.next() else { return };
    let action = parts.next().unwrap_or_default().to_string();
    let resource = parts.next().unwrap_or_default().to_string();
    let mut req = Request {
        principal_arn: "arn:aws:iam::111122223333:user/alice".into(),
        principal_account: "111122223333".into(),
        role_arn: None,
        action: action.clone(),
        resource: resource.clone(),
        context: Default::default(),
        alternatives: Default::default(),
    };
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        // A key given twice holds both values as alternatives (context keys that differ only
        // in case).
        let key = k.to_ascii_lowercase();
        if req.context.contains_key(&key) {
            req.context.get_mut(&key).unwrap().push(v.to_string());
            req.alternatives.insert(key);
        } else {
            req = req.with(&k, &[&v]);
        }
    }
    for kind in [PolicyKind::Key, PolicyKind::Identity, PolicyKind::Trust] {
        let _ = policy::parse_new(&text, kind);
        if let Ok(doc) = policy::parse(&text, kind) {
            let _ = policy::evaluate(&doc, &req);
            let _ = policy::decide_identity_only(std::slice::from_ref(&doc), &req);
        }
    }
    // Wildcard matching on its own: patterns are caller-controlled.
    let _ = policy::glob(&action, &resource, false);
    let _ = policy::glob(&action, &resource, true);
});
