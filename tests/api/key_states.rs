//! AWS's key-state table ("Key states of AWS KMS keys", the KMS Developer Guide): every
//! operation on a key in each state answers as the table says — success, `DisabledException`,
//! `KMSInvalidStateException`, or `UnsupportedOperationException` — each cell on a fresh key
//! brought into that state, so no cell depends on another.
//!
//! The table's "X [2] or [3]" cells (a cryptographic operation on a key pending deletion) are
//! `KMSInvalidStateException` here, the answer AWS gives for them. Cells the table has no answer
//! for (N/A: an asymmetric or HMAC key cannot be pending import) are left out, as are
//! `GetKeyRotationStatus` on a key pending import (the table predates the rotation of imported
//! material, which made it answer) and `Decrypt`/`ReEncrypt` of a key pending import (no
//! ciphertext can exist under a key that never had material; `import.rs` covers material
//! deleted after use).

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{
    DataKeyPairSpec, KeySpec, KeyUsageType, MacAlgorithmSpec, MessageType, OriginType,
    SigningAlgorithmSpec, Tag,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Symmetric,
    Rsa,
    Hmac,
}

const OK: &str = "ok";
const DIS: &str = "DisabledException";
const INV: &str = "KMSInvalidStateException";
const UNS: &str = "UnsupportedOperationException";

/// (operation, the key it needs, its answer when Enabled, Disabled, PendingDeletion,
/// PendingImport — `None` where the table has none).
#[rustfmt::skip]
fn table() -> Vec<(&'static str, Kind, [Option<&'static str>; 4])> {
    use Kind::*;
    let all = |a| [Some(a), Some(a), Some(a), Some(a)];
    let crypto = [Some(OK), Some(DIS), Some(INV), Some(INV)];
    let no_import = |e, d, p| [Some(e), Some(d), Some(p), None];
    vec![
        ("CancelKeyDeletion", Symmetric, [Some(INV), Some(INV), Some(OK), Some(INV)]),
        ("CreateAlias", Symmetric, [Some(OK), Some(OK), Some(INV), Some(OK)]),
        ("CreateGrant", Symmetric, crypto),
        ("Decrypt", Symmetric, no_import(OK, DIS, INV)),
        ("DeleteAlias", Symmetric, all(OK)),
        ("DeleteImportedKeyMaterial", Symmetric, [Some(UNS), Some(UNS), Some(UNS), Some(OK)]),
        ("DescribeKey", Symmetric, all(OK)),
        ("DisableKey", Symmetric, [Some(OK), Some(OK), Some(INV), Some(INV)]),
        ("DisableKeyRotation", Symmetric, [Some(OK), Some(DIS), Some(INV), Some(UNS)]),
        ("EnableKey", Symmetric, [Some(OK), Some(OK), Some(INV), Some(INV)]),
        ("EnableKeyRotation", Symmetric, [Some(OK), Some(DIS), Some(INV), Some(UNS)]),
        ("Encrypt", Symmetric, crypto),
        ("GenerateDataKey", Symmetric, crypto),
        ("GenerateDataKeyWithoutPlaintext", Symmetric, crypto),
        ("GenerateDataKeyPair", Symmetric, crypto),
        ("GenerateDataKeyPairWithoutPlaintext", Symmetric, crypto),
        ("GenerateMac", Hmac, no_import(OK, DIS, INV)),
        ("GetKeyPolicy", Symmetric, all(OK)),
        ("GetKeyRotationStatus", Symmetric, no_import(OK, OK, OK)),
        ("GetParametersForImport", Symmetric, [Some(UNS), Some(UNS), Some(UNS), Some(OK)]),
        // Recorded on AWS: a disabled key gives its public key (its table says DisabledException).
        ("GetPublicKey", Rsa, no_import(OK, OK, INV)),
        ("ListAliases", Symmetric, all(OK)),
        ("ListGrants", Symmetric, all(OK)),
        ("ListKeyPolicies", Symmetric, all(OK)),
        ("ListResourceTags", Symmetric, all(OK)),
        ("PutKeyPolicy", Symmetric, all(OK)),
        ("ReEncrypt", Symmetric, no_import(OK, DIS, INV)),
        ("RevokeGrant", Symmetric, all(OK)),
        ("RotateKeyOnDemand", Symmetric, [Some(OK), Some(DIS), Some(INV), Some(INV)]),
        ("ScheduleKeyDeletion", Symmetric, [Some(OK), Some(OK), Some(INV), Some(OK)]),
        ("Sign", Rsa, no_import(OK, DIS, INV)),
        ("TagResource", Symmetric, [Some(OK), Some(OK), Some(INV), Some(OK)]),
        ("UntagResource", Symmetric, [Some(OK), Some(OK), Some(INV), Some(OK)]),
        // The key the alias is moved to is in the state (table footnote 10).
        ("UpdateAlias", Symmetric, [Some(OK), Some(OK), Some(INV), Some(OK)]),
        ("UpdateKeyDescription", Symmetric, [Some(OK), Some(OK), Some(INV), Some(OK)]),
        ("Verify", Rsa, no_import(OK, DIS, INV)),
        ("VerifyMac", Hmac, no_import(OK, DIS, INV)),
    ]
}

/// A key of `kind` in `state`, with what the operations need made while it was enabled: an
/// alias, a grant, a ciphertext (symmetric), a signature or a MAC.
struct Fixture {
    key: String,
    alias: String,
    grant: Option<String>,
    blob: Option<Blob>,
    signature: Option<Blob>,
    mac: Option<Blob>,
    /// An enabled key whose alias `UpdateAlias` moves to the key in the state.
    other: String,
    other_alias: String,
}

async fn fixture(c: &aws_sdk_kms::Client, n: usize, kind: Kind, state: State) -> Fixture {
    let key = if state == State::PendingImport {
        c.create_key()
            .origin(OriginType::External)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap()
            .key_id
    } else {
        match kind {
            Kind::Symmetric => new_key(c).await,
            Kind::Rsa => {
                new_key_with(c, KeySpec::Rsa2048, KeyUsageType::SignVerify)
                    .await
                    .key_id
            }
            Kind::Hmac => {
                new_key_with(c, KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac)
                    .await
                    .key_id
            }
        }
    };
    let alias = format!("alias/state-{n}");
    c.create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .unwrap();
    let other = new_key(c).await;
    let other_alias = format!("alias/state-other-{n}");
    c.create_alias()
        .alias_name(&other_alias)
        .target_key_id(&other)
        .send()
        .await
        .unwrap();
    let mut f = Fixture {
        key: key.clone(),
        alias,
        grant: None,
        blob: None,
        signature: None,
        mac: None,
        other,
        other_alias,
    };
    if state != State::PendingImport {
        f.grant = Some(
            c.create_grant()
                .key_id(&key)
                .grantee_principal("arn:aws:iam::123456789012:root")
                .operations(aws_sdk_kms::types::GrantOperation::DescribeKey)
                .send()
                .await
                .unwrap()
                .grant_id
                .unwrap(),
        );
        match kind {
            Kind::Symmetric => {
                f.blob = c
                    .encrypt()
                    .key_id(&key)
                    .plaintext(Blob::new(b"state".to_vec()))
                    .send()
                    .await
                    .unwrap()
                    .ciphertext_blob
            }
            Kind::Rsa => {
                f.signature = c
                    .sign()
                    .key_id(&key)
                    .message(Blob::new(b"state".to_vec()))
                    .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
                    .send()
                    .await
                    .unwrap()
                    .signature
            }
            Kind::Hmac => {
                f.mac = c
                    .generate_mac()
                    .key_id(&key)
                    .message(Blob::new(b"state".to_vec()))
                    .mac_algorithm(MacAlgorithmSpec::HmacSha256)
                    .send()
                    .await
                    .unwrap()
                    .mac
            }
        }
    }
    match state {
        State::Disabled => {
            c.disable_key().key_id(&key).send().await.unwrap();
        }
        State::PendingDeletion => {
            c.schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(7)
                .send()
                .await
                .unwrap();
        }
        State::Enabled | State::PendingImport => {}
    }
    f
}

/// `Ok(())` or the error's code.
fn answer<T, E: aws_sdk_kms::error::ProvideErrorMetadata>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => OK.to_string(),
        Err(e) => e.code().unwrap_or("no code").to_string(),
    }
}

async fn run(c: &aws_sdk_kms::Client, op: &str, f: &Fixture) -> String {
    let k = f.key.as_str();
    let msg = || Blob::new(b"state".to_vec());
    match op {
        "CancelKeyDeletion" => answer(c.cancel_key_deletion().key_id(k).send().await),
        "CreateAlias" => answer(
            c.create_alias()
                .alias_name(format!("{}-more", f.alias))
                .target_key_id(k)
                .send()
                .await,
        ),
        "CreateGrant" => answer(
            c.create_grant()
                .key_id(k)
                .grantee_principal("arn:aws:iam::123456789012:root")
                .operations(aws_sdk_kms::types::GrantOperation::DescribeKey)
                .send()
                .await,
        ),
        "Decrypt" => answer(
            c.decrypt()
                .ciphertext_blob(f.blob.clone().unwrap())
                .send()
                .await,
        ),
        "DeleteAlias" => answer(c.delete_alias().alias_name(&f.alias).send().await),
        "DeleteImportedKeyMaterial" => {
            answer(c.delete_imported_key_material().key_id(k).send().await)
        }
        "DescribeKey" => answer(c.describe_key().key_id(k).send().await),
        "DisableKey" => answer(c.disable_key().key_id(k).send().await),
        "DisableKeyRotation" => answer(c.disable_key_rotation().key_id(k).send().await),
        "EnableKey" => answer(c.enable_key().key_id(k).send().await),
        "EnableKeyRotation" => answer(c.enable_key_rotation().key_id(k).send().await),
        "Encrypt" => answer(c.encrypt().key_id(k).plaintext(msg()).send().await),
        "GenerateDataKey" => answer(
            c.generate_data_key()
                .key_id(k)
                .number_of_bytes(32)
                .send()
                .await,
        ),
        "GenerateDataKeyWithoutPlaintext" => answer(
            c.generate_data_key_without_plaintext()
                .key_id(k)
                .number_of_bytes(32)
                .send()
                .await,
        ),
        "GenerateDataKeyPair" => answer(
            c.generate_data_key_pair()
                .key_id(k)
                .key_pair_spec(DataKeyPairSpec::EccNistP256)
                .send()
                .await,
        ),
        "GenerateDataKeyPairWithoutPlaintext" => answer(
            c.generate_data_key_pair_without_plaintext()
                .key_id(k)
                .key_pair_spec(DataKeyPairSpec::EccNistP256)
                .send()
                .await,
        ),
        "GenerateMac" => answer(
            c.generate_mac()
                .key_id(k)
                .message(msg())
                .mac_algorithm(MacAlgorithmSpec::HmacSha256)
                .send()
                .await,
        ),
        "GetKeyPolicy" => answer(c.get_key_policy().key_id(k).send().await),
        "GetKeyRotationStatus" => answer(c.get_key_rotation_status().key_id(k).send().await),
        "GetParametersForImport" => answer(
            c.get_parameters_for_import()
                .key_id(k)
                .wrapping_algorithm(aws_sdk_kms::types::AlgorithmSpec::RsaesOaepSha1)
                .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
                .send()
                .await,
        ),
        "GetPublicKey" => answer(c.get_public_key().key_id(k).send().await),
        "ListAliases" => answer(c.list_aliases().key_id(k).send().await),
        "ListGrants" => answer(c.list_grants().key_id(k).send().await),
        "ListKeyPolicies" => answer(c.list_key_policies().key_id(k).send().await),
        "ListResourceTags" => answer(c.list_resource_tags().key_id(k).send().await),
        "PutKeyPolicy" => answer(
            c.put_key_policy()
                .key_id(k)
                .policy(crate::access::default_policy())
                .send()
                .await,
        ),
        "ReEncrypt" => answer(
            c.re_encrypt()
                .ciphertext_blob(f.blob.clone().unwrap())
                .destination_key_id(&f.other)
                .send()
                .await,
        ),
        "RevokeGrant" => match &f.grant {
            Some(g) => answer(c.revoke_grant().key_id(k).grant_id(g).send().await),
            // A key pending import from its creation holds no grant: revoking an unknown one.
            None => OK.to_string(),
        },
        "RotateKeyOnDemand" => answer(c.rotate_key_on_demand().key_id(k).send().await),
        "ScheduleKeyDeletion" => answer(
            c.schedule_key_deletion()
                .key_id(k)
                .pending_window_in_days(7)
                .send()
                .await,
        ),
        "Sign" => answer(
            c.sign()
                .key_id(k)
                .message(msg())
                .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
                .send()
                .await,
        ),
        "TagResource" => answer(
            c.tag_resource()
                .key_id(k)
                .tags(Tag::builder().tag_key("t").tag_value("v").build().unwrap())
                .send()
                .await,
        ),
        "UntagResource" => answer(c.untag_resource().key_id(k).tag_keys("t").send().await),
        "UpdateAlias" => answer(
            c.update_alias()
                .alias_name(&f.other_alias)
                .target_key_id(k)
                .send()
                .await,
        ),
        "UpdateKeyDescription" => answer(
            c.update_key_description()
                .key_id(k)
                .description("state")
                .send()
                .await,
        ),
        "Verify" => answer(
            c.verify()
                .key_id(k)
                .message(msg())
                .message_type(MessageType::Raw)
                .signature(f.signature.clone().unwrap())
                .signing_algorithm(SigningAlgorithmSpec::RsassaPssSha256)
                .send()
                .await,
        ),
        "VerifyMac" => answer(
            c.verify_mac()
                .key_id(k)
                .message(msg())
                .mac(f.mac.clone().unwrap())
                .mac_algorithm(MacAlgorithmSpec::HmacSha256)
                .send()
                .await,
        ),
        other => panic!("no call for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_each_key_state_as_aws_documents() {
    let s = Server::start().await;
    let c = s.client();
    let states = [
        State::Enabled,
        State::Disabled,
        State::PendingDeletion,
        State::PendingImport,
    ];
    let mut wrong = Vec::new();
    let mut n = 0;
    for (op, kind, answers) in table() {
        for (state, want) in states.iter().zip(answers) {
            let Some(want) = want else { continue };
            n += 1;
            let f = fixture(&c, n, kind, *state).await;
            let got = run(&c, op, &f).await;
            if got != want {
                wrong.push(format!("{op} on a {state:?} key: {got}, AWS {want}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {n} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
