use crate::api::error::ApiError;
use crate::api::wire::{into_tags, parse, TagIn, Validator};
use crate::domain::{Caller, CreateKeyInput, Kms, KmsError};
use crate::vocab::{KeySpec, KeyUsage, Origin, UnknownWord, Vocabulary as _};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<TagIn>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

/// The validator's lists of allowed values: AWS's words, as the vocabulary has them.
pub const KEY_SPECS: &[&str] = KeySpec::WORDS;
/// The deprecated `CustomerMasterKeySpec`'s enum: `KeySpec`'s before ML-DSA and Ed25519
/// (the first 13 of `KEY_SPECS`).
pub const CUSTOMER_MASTER_KEY_SPECS: &[&str] = KEY_SPECS.split_at(13).0;

/// `CustomerMasterKeySpec` in an answer: the key spec where that enum has it, and Ed25519's
/// (recorded: AWS names it in the deprecated member too), else absent.
pub fn customer_master_key_spec(key_spec: KeySpec) -> Option<&'static str> {
    (CUSTOMER_MASTER_KEY_SPECS.contains(&key_spec.as_str())
        || key_spec == KeySpec::EccNistEdwards25519)
        .then_some(key_spec.as_str())
}

pub const ORIGINS: &[&str] = Origin::WORDS;

/// A word of the request (already checked against its list by the validator), or `default`
/// when the member is absent.
fn word<T: std::str::FromStr<Err = UnknownWord>>(
    v: Option<&str>,
    default: T,
) -> Result<T, KmsError> {
    v.map_or(Ok(default), |w| {
        w.parse()
            .map_err(|e: UnknownWord| KmsError::Validation(e.to_string()))
    })
}

pub async fn handle(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    let mut v = Validator::new();
    v.policy(r.policy.as_deref())
        .str_len(r.description.as_deref(), "description", 0, 8192)
        // Listed in the order AWS's messages list them (the vocabulary's `message_order`).
        .one_of(r.key_usage.as_deref(), "keyUsage", KeyUsage::MESSAGE_ORDER)
        .one_of(
            r.customer_master_key_spec.as_deref(),
            "customerMasterKeySpec",
            CUSTOMER_MASTER_KEY_SPECS,
        )
        .one_of(r.key_spec.as_deref(), "keySpec", KeySpec::MESSAGE_ORDER)
        .one_of(r.origin.as_deref(), "origin", ORIGINS)
        .str_len(r.custom_key_store_id.as_deref(), "customKeyStoreId", 1, 64)
        .str_len(r.xks_key_id.as_deref(), "xksKeyId", 1, 128)
        .pattern(
            r.xks_key_id.as_deref(),
            "xksKeyId",
            "^[a-zA-Z0-9-_.]+$",
            |s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            },
        );
    v.tags(r.tags.as_ref());
    v.finish()?;
    if r.key_spec.is_some() && r.customer_master_key_spec.is_some() {
        return Err(KmsError::Validation(
            "You cannot specify KeySpec and CustomerMasterKeySpec in the same request. CustomerMasterKeySpec is deprecated."
                .into(),
        )
        .into());
    }

    let spec = r
        .key_spec
        .as_deref()
        .or(r.customer_master_key_spec.as_deref());
    let key_spec = word(spec, KeySpec::SymmetricDefault)?;
    if r.key_usage.is_none() && key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::Validation(crate::messages::KEY_USAGE_REQUIRED.into()).into());
    }
    let meta = kms
        .create_key(
            caller,
            CreateKeyInput {
                description: r.description.unwrap_or_default(),
                key_usage: word(r.key_usage.as_deref(), KeyUsage::EncryptDecrypt)?,
                key_spec,
                origin: word(r.origin.as_deref(), Origin::AwsKms)?,
                policy: r.policy,
                tags: into_tags(r.tags),
                multi_region: r.multi_region.unwrap_or(false),
                custom_key_store_id: r.custom_key_store_id,
                xks_key_id: r.xks_key_id,
                bypass_policy_lockout_safety_check: r
                    .bypass_policy_lockout_safety_check
                    .unwrap_or(false),
            },
        )
        .await?;
    Ok(json!({ "KeyMetadata": super::key_metadata(&meta) }))
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    #[test]
    fn the_validator_accepts_exactly_the_specs_origins_and_usages_the_domain_knows() {
        let known: Vec<&str> = Origin::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(ORIGINS, known.as_slice());
        let mut known: Vec<&str> = KeyUsage::ALL.iter().map(|u| u.as_str()).collect();
        let mut listed = KeyUsage::MESSAGE_ORDER.to_vec();
        known.sort();
        listed.sort();
        assert_eq!(listed, known);
        let known: Vec<&str> = KeySpec::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(KEY_SPECS, known.as_slice());
    }
}
