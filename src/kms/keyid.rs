//! Parsing of the `KeyId` parameter: a key id, a key ARN, an alias name or an alias ARN.
//! Parse, don't validate: the rest of the domain layer only ever sees a [`KeyRef`].

use super::KmsError;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Id(Uuid),
    Arn {
        region: String,
        account: String,
        id: Uuid,
    },
    /// `alias/name` (in the caller's account and region) or an alias ARN.
    Alias {
        name: String,
        region: Option<String>,
        account: Option<String>,
    },
}

pub fn key_arn(region: &str, account: &str, id: &Uuid) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{id}")
}

pub fn alias_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{name}")
}

/// AWS's `NotFoundException` for an alias that names no key.
pub fn alias_not_found(region: &str, account: &str, name: &str) -> KmsError {
    KmsError::NotFound(format!(
        "Alias {} is not found.",
        alias_arn(region, account, name)
    ))
}

/// Key ids are lower-case, hyphenated UUIDs as AWS prints them.
fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    let u = Uuid::parse_str(s).ok()?;
    (u.hyphenated().to_string() == s.to_ascii_lowercase()).then_some(u)
}

pub fn parse(s: &str) -> Result<KeyRef, KmsError> {
    let invalid = || KmsError::NotFound(format!("Invalid keyId {s}"));
    if let Some(rest) = s.strip_prefix("arn:") {
        // arn:<partition>:kms:<region>:<account>:<resource>
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        if parts.len() != 5 || parts[1] != "kms" || parts[2].is_empty() {
            return Err(KmsError::NotFound(format!("Invalid arn {s}")));
        }
        let (region, account, resource) = (parts[2], parts[3], parts[4]);
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(KmsError::NotFound(format!("Invalid arn {s}")));
        }
        if let Some(id) = resource.strip_prefix("key/") {
            let id = parse_uuid(id).ok_or_else(invalid)?;
            return Ok(KeyRef::Arn {
                region: region.into(),
                account: account.into(),
                id,
            });
        }
        if resource.starts_with("alias/") && resource.len() > 6 {
            return Ok(KeyRef::Alias {
                name: resource.to_string(),
                region: Some(region.into()),
                account: Some(account.into()),
            });
        }
        return Err(KmsError::NotFound(format!("Invalid arn {s}")));
    }
    if s.starts_with("alias/") && s.len() > 6 {
        return Ok(KeyRef::Alias {
            name: s.to_string(),
            region: None,
            account: None,
        });
    }
    parse_uuid(s).map(KeyRef::Id).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let id = Uuid::new_v4();
        assert_eq!(parse(&id.to_string()).unwrap(), KeyRef::Id(id));
        assert_eq!(
            parse(&key_arn("us-east-1", "123456789012", &id)).unwrap(),
            KeyRef::Arn {
                region: "us-east-1".into(),
                account: "123456789012".into(),
                id
            }
        );
        assert!(matches!(
            parse("alias/x").unwrap(),
            KeyRef::Alias { region: None, .. }
        ));
        assert!(matches!(
            parse("arn:aws:kms:us-east-1:123456789012:alias/x").unwrap(),
            KeyRef::Alias {
                region: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn refuses_garbage() {
        for s in [
            "",
            "x",
            "alias/",
            "key/abc",
            "arn:aws:kms:us-east-1:1234:key/x",
            "arn:aws:s3:::bucket",
            "1234abcd-12ab-34cd-56ef-1234567890abX",
        ] {
            assert!(matches!(parse(s), Err(KmsError::NotFound(_))), "{s}");
        }
    }
}
