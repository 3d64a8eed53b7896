//! Shared wire shapes: base64 blobs, JSON parsing with AWS's error types, and a collector for
//! AWS-style validation messages ("1 validation error detected: Value ... at 'keyId' failed to
//! satisfy constraint: Member must ...").

use super::error::ApiError;
use crate::domain::KmsError;
use crate::messages;
use crate::vocab::Vocabulary;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use zeroize::Zeroizing;

/// A base64 blob member. Its bytes are wiped when dropped.
pub struct Blob(pub Zeroizing<Vec<u8>>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Zeroizing::new(String::deserialize(d)?);
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(|v| Blob(Zeroizing::new(v)))
            .map_err(|_| serde::de::Error::custom("Base64 encoded value is not valid"))
    }
}

pub use crate::encoding::b64;

/// serde messages can quote the offending value; a value may be a secret, so quotes are
/// emptied before the message is returned.
fn redact(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut inside = false;
    for c in msg.chars() {
        if c == '"' {
            inside = !inside;
            out.push(c);
            if !inside {
                continue;
            }
            out.push_str("...");
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Parse a request body. An empty body is an empty structure, as AWS treats it.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let body = if body.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::Serialization(format!("Malformed JSON: {}", redact(&e.to_string())))
            }
            Category::Data => ApiError::Serialization(redact(&e.to_string())),
        }
    })
}

/// How deep a request's JSON may nest: no member of AWS's model nests deeper than a few levels
/// (a grant's constraints, a list of tags). A request nested deeper is refused before it is
/// read or kept in the trail, where the event holds it one level deeper again.
pub const MAX_JSON_DEPTH: usize = 32;

/// The deepest nesting of objects and arrays in `body` (text in strings aside), read once.
pub fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

pub type Context = BTreeMap<String, String>;

/// A string member as given, or empty when absent (where the member is required, the
/// validation before has refused its absence).
pub fn or_empty(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

/// A dry run that skips the ciphertext: `DryRun` with `IGNORE_CIPHERTEXT` among the
/// `DryRunModifiers` (`Decrypt`, `ReEncrypt`).
pub fn ignores_ciphertext(dry_run: Option<bool>, modifiers: Option<&Vec<String>>) -> bool {
    dry_run == Some(true) && modifiers.is_some_and(|m| m.iter().any(|x| x == "IGNORE_CIPHERTEXT"))
}

/// A `Tags` member (`CreateKey`, `TagResource`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagIn {
    tag_key: Option<String>,
    tag_value: Option<String>,
}

pub fn into_tags(tags: Option<Vec<TagIn>>) -> Vec<crate::vocab::Tag> {
    tags.unwrap_or_default()
        .into_iter()
        .map(|t| crate::vocab::Tag {
            key: t.tag_key.unwrap_or_default(),
            value: t.tag_value.unwrap_or_default(),
        })
        .collect()
}

/// A request member that is one of AWS's words (a [`Vocabulary`]), parsed as the request is
/// read. A word that is not one of them is kept, for [`Validator::word`] to report with AWS's
/// message among the request's other validation errors.
#[derive(Debug, Clone)]
pub enum Word<T> {
    Known(T),
    Unknown(String),
}

impl<T: Vocabulary> Word<T> {
    /// The word, once the request is validated (`None`: absent, or not one of `T`'s).
    pub fn known(w: &Option<Word<T>>) -> Option<T> {
        match w {
            Some(Word::Known(t)) => Some(*t),
            _ => None,
        }
    }

    /// A member the validator required: present and known once `finish` has passed.
    pub fn required(w: &Option<Word<T>>, field: &str) -> Result<T, ApiError> {
        Word::known(w).ok_or_else(|| {
            ApiError::Kms(KmsError::Validation(messages::validation(&[
                messages::member_null(field),
            ])))
        })
    }
}

impl<'de, T: Vocabulary> Deserialize<'de> for Word<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.parse::<T>() {
            Ok(t) => Word::Known(t),
            Err(_) => Word::Unknown(s),
        })
    }
}

tokio::task_local! {
    /// Set while a request names an alias to an operation that takes a key id or key ARN only
    /// ([`crate::operations::Operation::key_only`]): AWS checks the model's constraints first,
    /// then refuses the alias, so the handler's validation answers it.
    pub static ALIAS_REFUSED: ();
}

#[derive(Default)]
pub struct Validator {
    errors: Vec<String>,
}

/// The string members AWS's model marks `sensitive` (a custom key store's password, an external
/// key store proxy's credential): a failed constraint names the member, never its value, so
/// the secret reaches neither the caller's error, the audit trail nor the log.
const SENSITIVE_MEMBERS: &[&str] = &[
    "keyStorePassword",
    "xksProxyAuthenticationCredential.accessKeyId",
    "xksProxyAuthenticationCredential.rawSecretAccessKey",
];

impl Validator {
    pub fn new() -> Validator {
        Validator::default()
    }

    fn push(&mut self, value: Option<String>, field: &str, constraint: String) {
        let value = value.filter(|_| !SENSITIVE_MEMBERS.contains(&field));
        self.errors.push(messages::constraint_failed(
            value.as_deref(),
            field,
            &constraint,
        ));
    }

    pub fn required<T>(&mut self, v: &Option<T>, field: &str) -> &mut Self {
        if v.is_none() {
            self.errors.push(messages::member_null(field));
        }
        self
    }

    pub fn str_len(&mut self, v: Option<&str>, field: &str, min: usize, max: usize) -> &mut Self {
        if let Some(s) = v {
            let n = s.chars().count();
            if n < min {
                self.push(
                    Some(s.to_string()),
                    field,
                    format!("have length greater than or equal to {min}"),
                );
            } else if n > max {
                self.push(
                    Some(s.to_string()),
                    field,
                    format!("have length less than or equal to {max}"),
                );
            }
        }
        self
    }

    /// Blob lengths. A value of the model's sensitive blob (`PlaintextType`: `plaintext`,
    /// `message`) is never echoed; any other blob is shown as AWS's Java service shows a
    /// buffer, by its length only (`java.nio.HeapByteBuffer[pos=0 lim=0 cap=0]`).
    pub fn blob_len(&mut self, v: Option<&Blob>, field: &str, min: usize, max: usize) -> &mut Self {
        if let Some(b) = v {
            let n = b.0.len();
            let shown = (!matches!(field, "plaintext" | "message"))
                .then(|| format!("java.nio.HeapByteBuffer[pos=0 lim={n} cap={n}]"));
            if n < min {
                self.push(
                    shown,
                    field,
                    format!("have length greater than or equal to {min}"),
                );
            } else if n > max {
                self.push(
                    shown,
                    field,
                    format!("have length less than or equal to {max}"),
                );
            }
        }
        self
    }

    pub fn int_range(&mut self, v: Option<i64>, field: &str, min: i64, max: i64) -> &mut Self {
        if let Some(n) = v {
            if n < min {
                self.push(
                    Some(n.to_string()),
                    field,
                    format!("have value greater than or equal to {min}"),
                );
            } else if n > max {
                self.push(
                    Some(n.to_string()),
                    field,
                    format!("have value less than or equal to {max}"),
                );
            }
        }
        self
    }

    pub fn one_of(&mut self, v: Option<&str>, field: &str, allowed: &[&str]) -> &mut Self {
        if let Some(s) = v {
            if !allowed.contains(&s) {
                self.push(
                    Some(s.to_string()),
                    field,
                    format!("satisfy enum value set: [{}]", allowed.join(", ")),
                );
            }
        }
        self
    }

    /// `KeyId` (AWS's `KeyIdType`): required, 1 to 2,048 characters.
    pub fn key_id(&mut self, v: &Option<String>) -> &mut Self {
        self.required(v, "keyId")
            .str_len(v.as_deref(), "keyId", 1, 2048)
    }

    /// `Limit` and `Marker` of a listing: the model's bounds (`LimitType`, 1 to 1,000, for
    /// every listing). A listing whose documented maximum is lower answers at most that many
    /// (see [`Page::of`]), as AWS does.
    pub fn paging(&mut self, limit: Option<i64>, marker: Option<&str>) -> &mut Self {
        self.int_range(limit, "limit", 1, 1000)
            .str_len(marker, "marker", 1, 1024)
            .pattern(marker, "marker", "[\\u0020-\\u00FF]*", |s| {
                s.chars().all(|c| ('\u{20}'..='\u{ff}').contains(&c))
            })
    }

    /// `PolicyName`: 1 to 128 word characters (AWS's model; only `default` exists).
    pub fn policy_name(&mut self, v: Option<&str>) -> &mut Self {
        self.str_len(v, "policyName", 1, 128)
            .pattern(v, "policyName", "[\\w]+", |s| {
                s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
    }

    /// `AliasName`: required, 1 to 256 characters of AWS's model pattern (a name outside it is
    /// a `ValidationException`, before the alias rules' `InvalidAliasNameException`).
    pub fn alias_name(&mut self, v: &Option<String>) -> &mut Self {
        self.required(v, "aliasName")
            .str_len(v.as_deref(), "aliasName", 1, 256)
            .pattern(v.as_deref(), "aliasName", NAME_PATTERN, name_ok)
    }

    /// A principal (AWS's `PrincipalIdType`): 1 to 256 characters of [`PRINCIPAL_PATTERN`].
    pub fn principal(&mut self, v: Option<&str>, field: &str) -> &mut Self {
        self.str_len(v, field, 1, 256)
            .pattern(v, field, PRINCIPAL_PATTERN, principal_ok)
    }

    /// One of `T`'s words (AWS's `enum value set` constraint, its words in the order AWS's
    /// message lists them).
    pub fn word<T: Vocabulary>(&mut self, v: &Option<Word<T>>, field: &str) -> &mut Self {
        if let Some(Word::Unknown(s)) = v {
            self.push(
                Some(s.clone()),
                field,
                format!("satisfy enum value set: [{}]", T::MESSAGE_ORDER.join(", ")),
            );
        }
        self
    }

    /// An AWS region name (`RegionType`: `^([a-z]+-){2,3}\d+$`, 1–32 characters).
    pub fn region(&mut self, v: Option<&str>, field: &str) -> &mut Self {
        if let Some(s) = v {
            let parts: Vec<&str> = s.split('-').collect();
            let ok = (3..=4).contains(&parts.len())
                && parts[..parts.len() - 1]
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
                && parts
                    .last()
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
            self.str_len(Some(s), field, 1, 32);
            if !ok {
                self.push(
                    Some(s.to_string()),
                    field,
                    "satisfy regular expression pattern: ^([a-z]+-){2,3}\\d+$".into(),
                );
            }
        }
        self
    }

    /// `GrantTokens`: at most 10, each 1 to 8,192 characters.
    pub fn grant_tokens(&mut self, v: Option<&Vec<String>>) -> &mut Self {
        self.list_len(v, "grantTokens", 0..=10)
            .list_of_strings(v, "grantTokens", 1, 8192)
    }

    /// A list's own length (`ResourceOwners`: one or two members).
    pub fn list_len(
        &mut self,
        v: Option<&Vec<String>>,
        field: &str,
        bounds: std::ops::RangeInclusive<usize>,
    ) -> &mut Self {
        if let Some(list) = v {
            let failed = if list.len() < *bounds.start() {
                Some(format!(
                    "have length greater than or equal to {}",
                    bounds.start()
                ))
            } else if list.len() > *bounds.end() {
                Some(format!(
                    "have length less than or equal to {}",
                    bounds.end()
                ))
            } else {
                None
            };
            if let Some(constraint) = failed {
                self.push(Some(list_value(list)), field, constraint);
            }
        }
        self
    }

    /// A list of strings whose member shape has a length (`GrantTokens`, `TagKeys`). A member
    /// out of bounds fails the list, as AWS reports it: the whole list quoted, with every
    /// constraint of the member's shape (`Member must satisfy constraint: [Member must have
    /// length less than or equal to 128, Member must have length greater than or equal to 1]`).
    pub fn list_of_strings(
        &mut self,
        v: Option<&Vec<String>>,
        field: &str,
        min: usize,
        max: usize,
    ) -> &mut Self {
        let fails = |s: &String| !(min..=max).contains(&s.chars().count());
        if let Some(list) = v.filter(|l| l.iter().any(fails)) {
            self.push(
                Some(list_value(list)),
                field,
                format!(
                    "satisfy constraint: [Member must have length less than or equal to {max}, \
                     Member must have length greater than or equal to {min}]"
                ),
            );
        }
        self
    }

    /// A list of enum words (`Operations`, `DryRunModifiers`): a word outside the set fails
    /// the list, reported as AWS does (`Member must satisfy constraint: [Member must satisfy
    /// enum value set: [...]]`).
    pub fn list_of_words(
        &mut self,
        v: Option<&Vec<String>>,
        field: &str,
        allowed: &[&str],
    ) -> &mut Self {
        if let Some(list) = v.filter(|l| l.iter().any(|s| !allowed.contains(&s.as_str()))) {
            self.push(
                Some(list_value(list)),
                field,
                format!(
                    "satisfy constraint: [Member must satisfy enum value set: [{}]]",
                    allowed.join(", ")
                ),
            );
        }
        self
    }

    pub fn tags(&mut self, tags: Option<&Vec<TagIn>>) -> &mut Self {
        for (i, t) in tags.into_iter().flatten().enumerate() {
            let (k, v) = (
                format!("tags.{}.member.tagKey", i + 1),
                format!("tags.{}.member.tagValue", i + 1),
            );
            self.required(&t.tag_key, &k)
                .required(&t.tag_value, &v)
                .str_len(t.tag_key.as_deref(), &k, 1, 128)
                .str_len(t.tag_value.as_deref(), &v, 0, 256);
        }
        self
    }

    /// A key policy document (`PolicyType`): 1 to 131,072 characters, each a tab, a line
    /// break or one of U+0020 to U+00FF.
    pub fn policy(&mut self, v: Option<&str>) -> &mut Self {
        self.str_len(v, "policy", 1, 131072).pattern(
            v,
            "policy",
            "[\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
            |s| {
                s.chars()
                    .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FF}'))
            },
        )
    }

    /// Decrypt's and ReEncrypt's ciphertext: required unless a dry run ignores it
    /// (`IGNORE_CIPHERTEXT`); then the dry-run modifiers, which must be known.
    pub fn ciphertext(
        &mut self,
        blob: &Option<Blob>,
        ignored: bool,
        modifiers: Option<&Vec<String>>,
    ) -> &mut Self {
        if !ignored {
            self.required(blob, "ciphertextBlob");
        }
        self.dry_run_modifiers(modifiers)
    }

    /// `DryRunModifiers`: each one of AWS's (`IGNORE_CIPHERTEXT`).
    pub fn dry_run_modifiers(&mut self, v: Option<&Vec<String>>) -> &mut Self {
        self.list_of_words(v, "dryRunModifiers", &["IGNORE_CIPHERTEXT"])
    }

    /// A string member that must match AWS's `pattern` (`matches` decides it). A pattern
    /// that ends in `+` (`[\w]+`, `^[a-f0-9]+$`) takes one character at least: an empty value
    /// fails it as well as its length, two errors as AWS counts them.
    pub fn pattern(
        &mut self,
        v: Option<&str>,
        field: &str,
        pattern: &str,
        matches: impl Fn(&str) -> bool,
    ) -> &mut Self {
        let needs_one = pattern.trim_end_matches('$').ends_with('+');
        if let Some(s) = v {
            if !matches(s) || (needs_one && s.is_empty()) {
                self.push(
                    Some(s.to_string()),
                    field,
                    format!("satisfy regular expression pattern: {pattern}"),
                );
            }
        }
        self
    }

    /// The request's first failed constraints, as AWS's one `ValidationException` lists them;
    /// with none, an alias named where the operation takes a key id or key ARN only
    /// ([`ALIAS_REFUSED`]).
    pub fn finish(&mut self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            if ALIAS_REFUSED.try_with(|()| ()).is_ok() {
                let m = messages::ALIASES_NOT_SUPPORTED;
                return Err(ApiError::Kms(KmsError::InvalidArn(m.into())));
            }
            return Ok(());
        }
        Err(ApiError::Kms(KmsError::Validation(messages::validation(
            &self.errors,
        ))))
    }
}

/// A list of strings as AWS's messages quote it (Java's `List.toString`: `[a, b]`).
fn list_value(list: &[String]) -> String {
    format!("[{}]", list.join(", "))
}

/// AWS's pattern for an alias name (`AliasNameType`) and a grant's name (`GrantNameType`).
pub const NAME_PATTERN: &str = "^[a-zA-Z0-9:/_-]+$";

/// Whether `s` matches [`NAME_PATTERN`] (one character at least, as its `+` says).
pub fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
}

/// AWS's pattern for a principal (`PrincipalIdType`).
pub const PRINCIPAL_PATTERN: &str = "^[\\w+=,.@:/-]+$";

/// Whether `p` matches [`PRINCIPAL_PATTERN`]: `\w` as AWS's (Java) pattern means it, ASCII
/// letters, digits and `_`.
pub fn principal_ok(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

/// The page a list request asks for: its `Limit` (the operation's default when absent) and
/// its `Marker`, the id of the last item of the previous page.
pub struct Page<'a> {
    limit: usize,
    marker: Option<&'a str>,
}

impl<'a> Page<'a> {
    /// The page a `Limit` asks for (validated by [`Validator::paging`]): the listing's
    /// default without one, and never more than the listing's documented maximum.
    pub fn of(
        limit: Option<i64>,
        marker: &'a Option<String>,
        default_limit: usize,
        max: usize,
    ) -> Self {
        Page {
            limit: limit.map_or(default_limit, |l| (l as usize).min(max)),
            marker: marker.as_deref(),
        }
    }

    /// How many items the page holds.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A page the domain cut (it read only what the page needs), AWS style: `{"<list>": [...],
    /// "Truncated": bool, "NextMarker": next}`, truncated where there is a next marker.
    pub fn cut(
        list: &str,
        items: Vec<serde_json::Value>,
        next: Option<String>,
    ) -> serde_json::Value {
        let mut v = serde_json::json!({ list: items, "Truncated": next.is_some() });
        if let Some(m) = next {
            v["NextMarker"] = serde_json::json!(m);
        }
        v
    }

    /// The page of an already-ordered list, AWS style: `{"<list>": [...], "Truncated": bool,
    /// "NextMarker": id}`. A marker that names no item is `InvalidMarkerException`.
    pub fn of_list<T>(
        &self,
        items: &[T],
        list: &str,
        id: impl Fn(&T) -> String,
        render: impl Fn(&T) -> serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let limit = self.limit;
        let start = match self.marker {
            None => 0,
            Some(m) => items
                .iter()
                .position(|x| id(x) == m)
                .map(|i| i + 1)
                .ok_or(KmsError::InvalidMarker)?,
        };
        let rest = &items[start..];
        let shown: Vec<serde_json::Value> = rest.iter().take(limit).map(render).collect();
        let mut v = serde_json::json!({ list: shown, "Truncated": rest.len() > limit });
        if rest.len() > limit {
            v["NextMarker"] = serde_json::json!(id(&rest[limit - 1]));
        }
        Ok(v)
    }
}

/// `Recipient` (`RecipientInfo`): read, so that it is refused rather than ignored.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
pub struct Recipient {
    key_encryption_algorithm: Option<String>,
    attestation_document: Option<Blob>,
}

pub fn refuse_recipient(recipient: &Option<Recipient>) -> Result<(), ApiError> {
    match recipient {
        None => Ok(()),
        Some(_) => Err(ApiError::Kms(KmsError::UnsupportedOperation(
            "Recipient (Nitro Enclaves attestation) is not supported.".into(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_like_aws() {
        let mut v = Validator::new();
        v.int_range(Some(0), "numberOfBytes", 1, 1024);
        let Err(ApiError::Kms(KmsError::Validation(m))) = v.finish() else {
            panic!()
        };
        assert_eq!(
            m,
            "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: \
             Member must have value greater than or equal to 1"
        );
    }

    fn message(v: &mut Validator) -> String {
        let Err(ApiError::Kms(KmsError::Validation(m))) = v.finish() else {
            panic!("no validation error")
        };
        m
    }

    /// The model's patterns for a policy's name and a list's marker, quoted as AWS prints
    /// them (the model's text).
    #[test]
    fn policy_names_and_markers_follow_the_models_patterns() {
        let mut v = Validator::new();
        v.policy_name(Some("default"))
            .paging(None, Some("next é ÿ"));
        assert!(v.finish().is_ok());
        assert_eq!(
            message(Validator::new().policy_name(Some("de-fault"))),
            "1 validation error detected: Value 'de-fault' at 'policyName' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: [\\w]+"
        );
        // Empty: both the length and the pattern fail, as AWS counts them.
        assert!(message(Validator::new().policy_name(Some("")))
            .starts_with("2 validation errors detected: "));
        assert_eq!(
            message(Validator::new().paging(None, Some("ā"))),
            "1 validation error detected: Value 'ā' at 'marker' failed to satisfy constraint: \
             Member must satisfy regular expression pattern: [\\u0020-\\u00FF]*"
        );
    }

    /// A list of plain values is named once, quoted whole, with every constraint of its
    /// member's shape, as AWS reports it; a list of structures names the member by its place
    /// (`tags.1.member.tagKey`).
    #[test]
    fn a_list_of_strings_is_reported_whole() {
        let tokens = vec!["ok".to_string(), String::new()];
        assert_eq!(
            message(Validator::new().grant_tokens(Some(&tokens))),
            "1 validation error detected: Value '[ok, ]' at 'grantTokens' failed to satisfy \
             constraint: Member must satisfy constraint: [Member must have length less than or \
             equal to 8192, Member must have length greater than or equal to 1]"
        );
        let eleven: Vec<String> = (0..11).map(|i| i.to_string()).collect();
        assert_eq!(
            message(Validator::new().grant_tokens(Some(&eleven))),
            "1 validation error detected: Value '[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]' at \
             'grantTokens' failed to satisfy constraint: Member must have length less than or \
             equal to 10"
        );
        let ops = vec!["Encrypt".to_string(), "ListGrants".to_string()];
        assert_eq!(
            message(Validator::new().list_of_words(
                Some(&ops),
                "operations",
                &["Encrypt", "Decrypt"]
            )),
            "1 validation error detected: Value '[Encrypt, ListGrants]' at 'operations' failed \
             to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum \
             value set: [Encrypt, Decrypt]]"
        );
        assert!(Validator::new()
            .grant_tokens(Some(&vec!["a".into(); 10]))
            .list_of_words(Some(&ops), "operations", &["Encrypt", "ListGrants"])
            .finish()
            .is_ok());
    }

    /// The members AWS's model marks sensitive are named, never quoted.
    #[test]
    fn sensitive_members_are_never_quoted() {
        let m = message(
            Validator::new()
                .str_len(Some("hunter2hunter2"), "keyStorePassword", 1, 8)
                .str_len(
                    Some("SECRET-ID"),
                    "xksProxyAuthenticationCredential.accessKeyId",
                    20,
                    30,
                )
                .pattern(
                    Some("SECRET-KEY"),
                    "xksProxyAuthenticationCredential.rawSecretAccessKey",
                    "^[a-zA-Z0-9\\/+=]+$",
                    |_| false,
                )
                .str_len(Some("visible"), "customKeyStoreName", 1, 3),
        );
        for secret in ["hunter2", "SECRET-ID", "SECRET-KEY"] {
            assert!(!m.contains(secret), "{m}");
        }
        assert!(m.contains("Value at 'keyStorePassword' failed"), "{m}");
        assert!(m.contains("Value 'visible' at 'customKeyStoreName'"), "{m}");
    }

    #[test]
    fn serde_messages_do_not_echo_values() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            a: Option<BTreeMap<String, String>>,
        }
        let e = parse::<T>(br#"{"a": "topsecret"}"#).unwrap_err();
        let (_, _, m) = e.wire();
        assert!(!m.contains("topsecret"), "{m}");
    }
}
