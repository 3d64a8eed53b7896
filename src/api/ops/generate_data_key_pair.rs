//! `GenerateDataKeyPair`, `GenerateDataKeyPairWithoutPlaintext`.

use crate::api::error::ApiError;
use crate::api::wire::{b64, or_empty, parse, refuse_recipient, Context, Recipient, Validator};
use crate::domain::{Caller, Kms};
use serde::Deserialize;
use serde_json::{json, Value};

const KEY_PAIR_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SM2",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request {
    key_id: Option<String>,
    key_pair_spec: Option<String>,
    encryption_context: Option<Context>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<Recipient>,
    dry_run: Option<bool>,
}

pub async fn handle(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
    with_plaintext: bool,
) -> Result<Value, ApiError> {
    let r: Request = parse(body)?;
    Validator::new()
        .key_id(&r.key_id)
        .required(&r.key_pair_spec, "keyPairSpec")
        .one_of(r.key_pair_spec.as_deref(), "keyPairSpec", KEY_PAIR_SPECS)
        .grant_tokens(r.grant_tokens.as_ref())
        .finish()?;
    // The WithoutPlaintext model has no Recipient: a member it does not have is ignored.
    if with_plaintext {
        refuse_recipient(&r.recipient)?;
    }
    let spec = r.key_pair_spec.clone().unwrap_or_default();
    let out = kms
        .generate_data_key_pair(
            &caller.for_request(r.grant_tokens.clone(), r.key_id.as_deref()),
            or_empty(&r.key_id),
            &spec,
            &r.encryption_context.unwrap_or_default(),
            with_plaintext,
            r.dry_run.unwrap_or(false),
        )
        .await?;
    let mut v = json!({
        "PrivateKeyCiphertextBlob": b64(&out.private_blob),
        "PublicKey": b64(&out.public_key),
        "KeyId": out.key_arn,
        "KeyPairSpec": spec,
    });
    if let Some(id) = crate::domain::rotation::material_id_of_blob(&out.private_blob) {
        v["KeyMaterialId"] = json!(id);
    }
    if let Some(p) = &out.private_plaintext {
        v["PrivateKeyPlaintext"] = json!(b64(p));
    }
    Ok(v)
}
