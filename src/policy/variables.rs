//! Policy variables: IAM's placeholders (`${aws:username}`, `${aws:PrincipalTag/team, 'none'}`,
//! and `${*}`, `${?}`, `${$}` for the characters themselves) in a statement's `Resource` and in
//! the values of its String and ARN conditions, replaced from the request's context when the
//! statement is evaluated. Only in documents of Version `2012-10-17`: in older ones, and in a
//! document without a Version, `${…}` is text, as in IAM.
//!
//! A variable whose key the request does not have (or has several values of) and that gives no
//! default has no value, and a policy value holding it matches no request value (IAM: "the value
//! is effectively null; there is no equal or like value"). A value put in by a variable is
//! matched as it is: a `*` in a tag value is not a wildcard.

use super::Request;

/// One part of a policy value once its variables are replaced.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece<'a> {
    /// The policy's own text: `*` and `?` are wildcards where the operator has them.
    Policy(&'a str),
    /// What a variable stood for: matched character for character.
    Literal(String),
}

/// Whether `text` may hold a variable (the caller knows the document's Version allows them).
pub(super) fn has_variables(text: &str) -> bool {
    text.contains("${")
}

/// `text` with its variables replaced from `req`, or `None` if one of them has no value.
pub(super) fn resolve<'a>(text: &'a str, req: &Request) -> Option<Vec<Piece<'a>>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        if start > 0 {
            out.push(Piece::Policy(&rest[..start]));
        }
        out.push(Piece::Literal(value_of(
            &rest[start + 2..start + 2 + len],
            req,
        )?));
        rest = &rest[start + 2 + len + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Policy(rest));
    }
    Some(out)
}

/// What one variable (the text between `${` and `}`) stands for.
fn value_of(inner: &str, req: &Request) -> Option<String> {
    let inner = inner.trim();
    if matches!(inner, "*" | "?" | "$") {
        return Some(inner.to_string());
    }
    // `${key, 'default'}`: the key's name is not case-sensitive, the default is.
    let (key, default) = match inner.split_once(',') {
        Some((key, default)) => {
            let default = default.trim();
            let quoted = default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''));
            (key.trim(), quoted)
        }
        None => (inner, None),
    };
    match req.value(key).map(Vec::as_slice) {
        Some([one]) => Some(one.clone()),
        _ => default.map(str::to_string),
    }
}

/// The value as plain text (for the operators without wildcards).
pub(super) fn text(pieces: &[Piece]) -> String {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Policy(s) => *s,
            Piece::Literal(s) => s.as_str(),
        })
        .collect()
}

/// The value as a pattern (for the operators with wildcards, and `Resource`).
pub(super) fn pattern(pieces: &[Piece]) -> Vec<super::Tok> {
    let mut out = Vec::new();
    for p in pieces {
        match p {
            Piece::Policy(s) => out.extend(super::tokens(s)),
            Piece::Literal(s) => out.extend(s.chars().map(super::Tok::Char)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request::default()
            .with("aws:username", &["alice"])
            .with("aws:PrincipalTag/team", &["blue"])
            .with("kms:EncryptionContextKeys", &["a", "b"])
    }

    fn resolved(text: &str) -> Option<String> {
        resolve(text, &req()).map(|p| super::text(&p))
    }

    #[test]
    fn variables_are_replaced_from_the_request() {
        for (text, want) in [
            ("plain", Some("plain")),
            ("${aws:username}", Some("alice")),
            ("home/${aws:username}/*", Some("home/alice/*")),
            ("${AWS:UserName}", Some("alice")),
            ("${ aws:username }", Some("alice")),
            (
                "${aws:PrincipalTag/team}-${aws:username}",
                Some("blue-alice"),
            ),
            // No value: the whole value has none, unless a default is given.
            ("${aws:PrincipalTag/dept}", None),
            ("x-${aws:PrincipalTag/dept}", None),
            ("${aws:PrincipalTag/dept, 'none'}", Some("none")),
            ("${aws:PrincipalTag/dept,'None'}", Some("None")),
            ("${aws:username, 'none'}", Some("alice")),
            ("${aws:PrincipalTag/dept, none}", None),
            // A key with several values is no value.
            ("${kms:EncryptionContextKeys}", None),
            // The characters themselves.
            ("${*}${?}${$}", Some("*?$")),
            // An opening without its end is text.
            ("${aws:username", Some("${aws:username")),
        ] {
            assert_eq!(resolved(text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn only_documents_of_version_2012_10_17_have_variables() {
        use crate::policy::{evaluate, parse, Outcome, PolicyKind, PrincipalMatch};
        let req = Request {
            action: "kms:Encrypt".into(),
            resource: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            ..Request::default()
        }
        .with("aws:PrincipalAccount", &["111122223333"])
        .with("aws:username", &["alice"])
        .with("kms:EncryptionContext:owner", &["alice-2"]);
        let applies = |version: &str, resource: &str, condition: &str| {
            let text = format!(
                r#"{{"Version":"{version}","Statement":[{{"Effect":"Allow","Action":"kms:*","Resource":"{resource}","Condition":{condition}}}]}}"#
            );
            evaluate(&parse(&text, PolicyKind::Identity).unwrap(), &req)
                == Outcome::Allow(PrincipalMatch::Direct)
        };
        let by_account = "arn:aws:kms:*:${aws:PrincipalAccount}:key/*";
        let by_name = r#"{"StringLike":{"kms:EncryptionContext:owner":"${aws:username}-*"}}"#;
        assert!(applies("2012-10-17", by_account, by_name));
        assert!(!applies("2008-10-17", by_account, "{}"));
        assert!(!applies("2008-10-17", "*", by_name));
        assert!(applies("2008-10-17", "*", "{}"));
    }

    #[test]
    fn only_the_policy_text_has_wildcards() {
        let r = req().with("aws:PrincipalTag/team", &["b*"]);
        let glob = |pattern: &str, text: &str| {
            let p = resolve(pattern, &r).unwrap();
            super::super::glob_tokens(&super::pattern(&p), &text.chars().collect::<Vec<_>>())
        };
        assert!(glob("team/${aws:PrincipalTag/team}/*", "team/b*/x"));
        assert!(!glob("team/${aws:PrincipalTag/team}/*", "team/blue/x"));
        assert!(glob("a${*}", "a*"));
        assert!(!glob("a${*}", "ab"));
        assert!(glob("a${?}?", "a?b"));
        assert!(!glob("a${?}", "ab"));
    }
}
