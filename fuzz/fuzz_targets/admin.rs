//! The administrator's principal changes (`kms admin` create-user, create-role, put-/delete-
//! user-policy, tag-principal, set-integrated-service) in any order, through the same guarded
//! path the command uses, against the real token and database. After every change the stored
//! principal is exactly what the changes made it (nothing more, nothing less), and its MAC holds;
//! a change that is refused leaves it as it was.
//!
//! Input: a sequence of changes, each one byte choosing the change and bytes for its values.
#![no_main]
use kms::store::{PrincipalChange, Tag};
use libfuzzer_sys::fuzz_target;

const ACCOUNT: &str = "123456789012";
const NAMES: &[&str] = &["p1", "p2", "weird.name+x", "p1"];
const DOCS: &[&str] = &[
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#,
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:*","Resource":"*"}]}"#,
];

fn sorted(
    a: &kms::store::PrincipalAuthz,
) -> (
    String,
    String,
    Option<String>,
    Option<String>,
    Vec<(String, String)>,
    Vec<(String, String)>,
) {
    let mut p = a.policies.clone();
    p.sort();
    let mut t: Vec<(String, String)> = a
        .tags
        .iter()
        .map(|t| (t.key.clone(), t.value.clone()))
        .collect();
    t.sort();
    (
        a.account_id.clone(),
        a.kind.clone(),
        a.trust_policy.clone(),
        a.via_service.clone(),
        p,
        t,
    )
}

fuzz_target!(|data: &[u8]| {
    let fx = kms::fuzzing::fixture();
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let role = first & 1 == 1;
    let name = format!("fuzz-{}", uuid::Uuid::new_v4().simple());
    let arn = if role {
        format!("arn:aws:iam::{ACCOUNT}:role/{name}")
    } else {
        format!("arn:aws:iam::{ACCOUNT}:user/{name}")
    };
    let mut expected: Option<kms::store::PrincipalAuthz> = None;
    for s in rest.chunks(3).take(16) {
        let b = |i: usize| s.get(i).copied().unwrap_or(0);
        let change = match b(0) % 6 {
            0 => PrincipalChange::CreateUser {
                account_id: ACCOUNT.into(),
                name: name.clone(),
                admin: false,
            },
            1 => PrincipalChange::PutRole {
                account_id: ACCOUNT.into(),
                name: name.clone(),
                trust_policy: DOCS[b(1) as usize % 2].into(),
            },
            2 => PrincipalChange::PutPolicy {
                name: NAMES[b(1) as usize % NAMES.len()].into(),
                document: DOCS[b(2) as usize % 2].into(),
            },
            3 => PrincipalChange::DeletePolicy {
                name: NAMES[b(1) as usize % NAMES.len()].into(),
            },
            4 => PrincipalChange::PutTag(Tag {
                key: NAMES[b(1) as usize % NAMES.len()].into(),
                value: format!("v{}", b(2)),
            }),
            _ => PrincipalChange::SetService(if b(1) % 2 == 0 {
                None
            } else {
                Some("ebs".into())
            }),
        };
        // A user created over a role (or a role over a user) is not this test's business.
        if matches!(
            (&change, role),
            (PrincipalChange::CreateUser { .. }, true) | (PrincipalChange::PutRole { .. }, false)
        ) {
            continue;
        }
        let predicted = change.apply(expected.as_ref());
        let done = fx.change_principal(&arn, &change);
        match (&predicted, &done) {
            (Ok(next), Ok(())) => {
                // CreateUser of an existing user changes nothing.
                if !(matches!(change, PrincipalChange::CreateUser { .. }) && expected.is_some()) {
                    expected = Some(next.clone());
                }
            }
            (Err(_), Err(_)) => {}
            (p, d) => panic!(
                "{change:?}: predicted {:?}, the service said {d:?}",
                p.as_ref().map(|_| ())
            ),
        }
        let stored = fx.principal(&arn);
        match (&expected, stored) {
            (None, None) => {}
            (Some(e), Some((a, mac_ok))) => {
                assert!(mac_ok, "{arn} fails its MAC after {change:?}");
                assert_eq!(sorted(e), sorted(&a), "{arn} after {change:?}");
            }
            (e, a) => panic!("{arn} after {change:?}: expected {e:?}, stored {a:?}"),
        }
    }
});
