//! Parsing of the `KeyId` parameter: a key id, a key ARN, an alias name or an alias ARN.
//! Parse, don't validate: the rest of the domain layer only ever sees a [`KeyRef`].

use super::KmsError;
use crate::domain::Result;
use crate::store::KeyRecord;
use std::fmt;
use uuid::Uuid;

/// A key id as users see it: a UUID, or `mrk-` and 32 hex digits for a multi-Region key
/// (the same in every region).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicId {
    Key(Uuid),
    Mrk(Uuid),
}

impl fmt::Display for PublicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicId::Key(u) => write!(f, "{}", u.hyphenated()),
            PublicId::Mrk(m) => write!(f, "mrk-{}", m.simple()),
        }
    }
}

impl PublicId {
    /// The key's row id in `region`: a multi-Region key has one row per region.
    pub fn internal(&self, region: &str) -> Uuid {
        match self {
            PublicId::Key(u) => *u,
            PublicId::Mrk(m) => mrk_key_id(m, region),
        }
    }

    /// Whether a ciphertext header's key id is a multi-Region key's shared id. Shared ids are
    /// version-8 UUIDs; single-region key ids are version 4.
    pub fn of_blob(id: Uuid) -> PublicId {
        if id.get_version_num() == 8 {
            PublicId::Mrk(id)
        } else {
            PublicId::Key(id)
        }
    }
}

/// A fresh multi-Region id: 122 random bits, marked as a version-8 UUID.
pub fn new_mrk() -> Uuid {
    uuid::Builder::from_custom_bytes(*Uuid::new_v4().as_bytes()).into_uuid()
}

/// The row id of a multi-Region key's copy in one region.
pub fn mrk_key_id(mrk: &Uuid, region: &str) -> Uuid {
    let mut input = b"kms.mrk-key-id.v1\0".to_vec();
    input.extend_from_slice(mrk.as_bytes());
    input.extend_from_slice(region.as_bytes());
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let mut b = [0u8; 16];
    b.copy_from_slice(&d.as_ref()[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

impl KeyRecord {
    /// The id users see and name the key by.
    pub fn public_id(&self) -> PublicId {
        match self.mrk_id {
            Some(m) => PublicId::Mrk(m),
            None => PublicId::Key(self.key_id),
        }
    }

    /// The id written into ciphertext headers and material ids: shared by the regions of a
    /// multi-Region key, so a blob made in one decrypts in another.
    pub fn blob_id(&self) -> Uuid {
        self.mrk_id.unwrap_or(self.key_id)
    }

    pub fn arn(&self) -> String {
        key_arn(&self.region, &self.account_id, &self.public_id())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    Id(PublicId),
    Arn {
        region: String,
        account: String,
        id: PublicId,
    },
    /// `alias/name` (in the caller's account and region) or an alias ARN.
    Alias {
        name: String,
        region: Option<String>,
        account: Option<String>,
    },
}

pub fn key_arn(region: &str, account: &str, id: &PublicId) -> String {
    format!("arn:aws:kms:{region}:{account}:key/{id}")
}

pub fn alias_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:kms:{region}:{account}:{name}")
}

/// The ARN `r` names when it is another account's than `account`, in `region`: a key ARN or an
/// alias ARN (a reference to another Region is answered for its Region alone).
pub fn foreign_arn(r: &KeyRef, region: &str, account: &str) -> Option<String> {
    match r {
        KeyRef::Arn {
            region: rg,
            account: a,
            id,
        } if rg == region && a != account => Some(key_arn(rg, a, id)),
        KeyRef::Alias {
            name,
            region: Some(rg),
            account: Some(a),
        } if rg == region && a != account => Some(alias_arn(rg, a, name)),
        _ => None,
    }
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

/// A key id: a UUID or `mrk-` and 32 lower-case hex digits.
fn parse_id(s: &str) -> Option<PublicId> {
    if let Some(hex) = s.strip_prefix("mrk-") {
        if hex.len() != 32
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return None;
        }
        return Uuid::try_parse(hex).ok().map(PublicId::Mrk);
    }
    parse_uuid(s).map(PublicId::Key)
}

pub fn parse(s: &str) -> Result<KeyRef> {
    let invalid = || KmsError::NotFound(crate::messages::invalid_key_id(s));
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
            let id = parse_id(id).ok_or_else(invalid)?;
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
    parse_id(s).map(KeyRef::Id).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let id = PublicId::Key(Uuid::new_v4());
        assert_eq!(parse(&id.to_string()).unwrap(), KeyRef::Id(id));
        let m = PublicId::Mrk(new_mrk());
        assert!(m.to_string().starts_with("mrk-") && m.to_string().len() == 36);
        assert_eq!(parse(&m.to_string()).unwrap(), KeyRef::Id(m));
        assert_eq!(
            parse(&key_arn("eu-west-1", "123456789012", &m)).unwrap(),
            KeyRef::Arn {
                region: "eu-west-1".into(),
                account: "123456789012".into(),
                id: m
            }
        );
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
    fn multi_region_ids_are_told_apart_from_key_ids() {
        let m = new_mrk();
        assert_eq!(PublicId::of_blob(m), PublicId::Mrk(m));
        let k = Uuid::new_v4();
        assert_eq!(PublicId::of_blob(k), PublicId::Key(k));
        assert_ne!(mrk_key_id(&m, "us-east-1"), mrk_key_id(&m, "eu-west-1"));
        assert_eq!(
            PublicId::Mrk(m).internal("eu-west-1"),
            mrk_key_id(&m, "eu-west-1")
        );
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
            "mrk-1234abcd12ab34cd56ef1234567890a",
            "mrk-1234ABCD12AB34CD56EF1234567890AB",
            "mrk-1234abcd-12ab-34cd-56ef-1234567890ab",
        ] {
            assert!(matches!(parse(s), Err(KmsError::NotFound(_))), "{s}");
        }
    }
}
