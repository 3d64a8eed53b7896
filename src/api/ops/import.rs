//! `GetParametersForImport`, `ImportKeyMaterial`, `DeleteImportedKeyMaterial`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, or_empty, parse, Blob, Validator, Word};
use crate::domain::import::MaterialChoice;
use crate::domain::{Caller, Kms, KmsError};
use crate::vocab::{AlgorithmSpec, ExpirationModelType, WrappingKeySpec};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ParametersRequest {
    key_id: Option<String>,
    wrapping_algorithm: Option<Word<AlgorithmSpec>>,
    wrapping_key_spec: Option<Word<WrappingKeySpec>>,
}

pub async fn parameters(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: ParametersRequest = parse(body)?;
    Validator::new()
        .required(&r.key_id, "keyId")
        .required(&r.wrapping_algorithm, "wrappingAlgorithm")
        .required(&r.wrapping_key_spec, "wrappingKeySpec")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .word(&r.wrapping_algorithm, "wrappingAlgorithm")
        .word(&r.wrapping_key_spec, "wrappingKeySpec")
        .finish()?;
    let caller = caller.for_request(None, r.key_id.as_deref());
    let p = kms
        .get_parameters_for_import(
            &caller,
            or_empty(&r.key_id),
            Word::required(&r.wrapping_algorithm, "wrappingAlgorithm")?,
            Word::required(&r.wrapping_key_spec, "wrappingKeySpec")?,
        )
        .await?;
    Ok(json!({
        "KeyId": p.key_arn,
        "ImportToken": b64(&p.import_token),
        "PublicKey": b64(&p.public_key),
        "ParametersValidTo": super::epoch(&p.valid_to),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImportRequest {
    key_id: Option<String>,
    import_token: Option<Blob>,
    encrypted_key_material: Option<Blob>,
    valid_to: Option<f64>,
    expiration_model: Option<Word<ExpirationModelType>>,
    import_type: Option<String>,
    key_material_description: Option<String>,
    key_material_id: Option<String>,
}

/// `KeyMaterialId` (AWS's `BackingKeyIdType`): 64 lowercase hex digits.
fn check_material_id<'v>(v: &'v mut Validator, id: Option<&str>) -> &'v mut Validator {
    v.str_len(id, "keyMaterialId", 64, 64)
        .pattern(id, "keyMaterialId", "^[a-f0-9]+$", |s| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

pub async fn import(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: ImportRequest = parse(body)?;
    let mut v = Validator::new();
    v.required(&r.key_id, "keyId")
        .required(&r.import_token, "importToken")
        .required(&r.encrypted_key_material, "encryptedKeyMaterial")
        .str_len(r.key_id.as_deref(), "keyId", 1, 2048)
        .blob_len(r.import_token.as_ref(), "importToken", 1, 6144)
        .blob_len(
            r.encrypted_key_material.as_ref(),
            "encryptedKeyMaterial",
            1,
            6144,
        )
        .word(&r.expiration_model, "expirationModel")
        .one_of(
            r.import_type.as_deref(),
            "importType",
            &["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"],
        );
    // `KeyMaterialDescriptionType`: 0 to 256 characters of letters, digits, `:/_.-` and
    // whitespace.
    let description = r.key_material_description.as_deref();
    v.str_len(description, "keyMaterialDescription", 0, 256)
        .pattern(
            description,
            "keyMaterialDescription",
            "^[a-zA-Z0-9:/_\\s.-]+$",
            |s| {
                !s.is_empty()
                    && s.chars().all(|c| {
                        // Java's `\s`: ASCII whitespace only.
                        c.is_ascii_alphanumeric()
                            || matches!(c, ' ' | '\t' | '\n' | '\x0B' | '\x0C' | '\r')
                            || ":/_.-".contains(c)
                    })
            },
        );
    check_material_id(&mut v, r.key_material_id.as_deref()).finish()?;
    let valid_to = match r.valid_to {
        None => None,
        Some(t) if t.is_finite() && t.abs() < 1e11 => {
            chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64)
        }
        Some(_) => {
            return Err(KmsError::Validation("ValidTo is not a valid timestamp.".into()).into())
        }
    };
    let caller = caller.for_request(None, r.key_id.as_deref());
    let arn = kms
        .import_key_material(
            &caller,
            or_empty(&r.key_id),
            &r.import_token.map(|b| b.0).unwrap_or_default(),
            r.encrypted_key_material
                .map(|b| b.0.to_vec())
                .unwrap_or_default(),
            Word::known(&r.expiration_model),
            valid_to,
            MaterialChoice {
                import_type: r.import_type.as_deref(),
                key_material_id: r.key_material_id.as_deref(),
                description,
            },
        )
        .await?;
    Ok(with_material_id(arn))
}

fn with_material_id((arn, id): (String, Option<String>)) -> Value {
    match id {
        Some(id) => json!({ "KeyId": arn, "KeyMaterialId": id }),
        None => json!({ "KeyId": arn }),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRequest {
    key_id: Option<String>,
    key_material_id: Option<String>,
}

pub async fn delete(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Value, ApiError> {
    let r: DeleteRequest = parse(body)?;
    let mut v = Validator::new();
    v.key_id(&r.key_id);
    check_material_id(&mut v, r.key_material_id.as_deref()).finish()?;
    let caller = caller.for_request(None, r.key_id.as_deref());
    let out = kms
        .delete_imported_key_material(&caller, or_empty(&r.key_id), r.key_material_id.as_deref())
        .await?;
    Ok(with_material_id(out))
}
