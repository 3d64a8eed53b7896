//! Every AWS KMS operation this service implements, described once.
//!
//! This table is the one source of the lists the layers above need: which operations exist
//! (`X-Amz-Target` dispatch and the metrics label), which request quota each counts against,
//! which CloudTrail marks read-only (a change's intent is recorded before it runs), which
//! response members the trail keeps, and which grant operations allow which operation on
//! which key types. `api::ops::dispatch` maps each name to its handler; a test keeps the two
//! equal, and another keeps the table equal to AWS's model minus [`NOT_YET`]. Adding an
//! operation: a line here, its handler module, its line in `dispatch`, its domain call.

/// The request quota an operation counts against, as AWS shares them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quota {
    /// The cryptographic operations' rate.
    Cryptographic,
    /// Everything else.
    Management,
}

/// An operation, by its `X-Amz-Target` suffix.
#[derive(Debug)]
pub struct Operation {
    pub name: &'static str,
    pub quota: Quota,
    /// CloudTrail's `readOnly`: the call changes nothing.
    pub read_only: bool,
    /// The response members the trail keeps (`responseElements`, camel-cased); none: null.
    pub response_elements: &'static [&'static str],
    /// AWS's "Cross-account use: Yes": a caller may name another account's key (by ARN) and
    /// that key's policy may allow it. For every other operation a key policy's allow for
    /// another account has no effect (AWS: "the user's attempts ... still fail").
    pub cross_account: bool,
    /// Its `KeyId` names a key by key id or key ARN only: an alias is refused with AWS's
    /// `InvalidArnException` ("Key Aliases are not supported for this operation.").
    pub key_only: bool,
}

const fn op(name: &'static str, quota: Quota, read_only: bool) -> Operation {
    Operation {
        name,
        quota,
        read_only,
        response_elements: &[],
        cross_account: false,
        key_only: false,
    }
}

/// An operation whose `KeyId` takes no alias.
const fn key_only(mut o: Operation) -> Operation {
    o.key_only = true;
    o
}

/// An operation that may be used on another account's key.
const fn across(mut o: Operation) -> Operation {
    o.cross_account = true;
    o
}

const fn with_response(mut o: Operation, members: &'static [&'static str]) -> Operation {
    o.response_elements = members;
    o
}

use Quota::{Cryptographic as C, Management as M};

/// Every operation this server implements.
pub const OPERATIONS: &[Operation] = &[
    // In the order the fuzz corpus indexes them (fuzz/fuzz_targets/request.rs): append only.
    key_only(op("GetParametersForImport", M, true)),
    key_only(op("ImportKeyMaterial", M, false)),
    key_only(op("DeleteImportedKeyMaterial", M, false)),
    key_only(op("EnableKeyRotation", M, false)),
    key_only(op("DisableKeyRotation", M, false)),
    across(key_only(op("GetKeyRotationStatus", M, true))),
    key_only(op("RotateKeyOnDemand", M, false)),
    key_only(op("ListKeyRotations", M, true)),
    with_response(key_only(op("CancelKeyDeletion", M, false)), &["KeyId"]),
    op("CreateAlias", M, false),
    op("DeleteAlias", M, false),
    key_only(op("DisableKey", M, false)),
    key_only(op("EnableKey", M, false)),
    key_only(op("ListAliases", M, true)),
    key_only(op("ListResourceTags", M, true)),
    with_response(
        key_only(op("ScheduleKeyDeletion", M, false)),
        &["KeyId", "DeletionDate", "KeyState", "PendingWindowInDays"],
    ),
    key_only(op("TagResource", M, false)),
    key_only(op("UntagResource", M, false)),
    op("UpdateAlias", M, false),
    key_only(op("UpdateKeyDescription", M, false)),
    with_response(across(key_only(op("CreateGrant", M, false))), &["GrantId"]),
    with_response(op("CreateKey", M, false), &["KeyMetadata"]),
    across(key_only(op("ListGrants", M, true))),
    op("ListRetirableGrants", M, true),
    across(key_only(op("RetireGrant", M, false))),
    across(key_only(op("RevokeGrant", M, false))),
    across(op("Decrypt", C, true)),
    across(op("DescribeKey", M, true)),
    across(op("Encrypt", C, true)),
    across(op("GenerateDataKey", C, true)),
    across(op("GenerateDataKeyWithoutPlaintext", C, true)),
    op("GenerateRandom", C, true),
    key_only(op("GetKeyPolicy", M, true)),
    key_only(op("ListKeyPolicies", M, true)),
    op("ListKeys", M, true),
    key_only(op("PutKeyPolicy", M, false)),
    across(op("ReEncrypt", C, true)),
    with_response(
        key_only(op("ReplicateKey", M, false)),
        &["ReplicaKeyMetadata"],
    ),
    key_only(op("UpdatePrimaryRegion", M, false)),
    across(op("Sign", C, true)),
    across(op("Verify", C, true)),
    across(op("GetPublicKey", M, true)),
    across(op("GenerateMac", C, true)),
    across(op("VerifyMac", C, true)),
    across(op("GenerateDataKeyPair", C, true)),
    across(op("GenerateDataKeyPairWithoutPlaintext", C, true)),
    across(op("DeriveSharedSecret", C, true)),
    key_only(op("GetKeyLastUsage", M, true)),
    across(op("Encapsulate", C, true)),
    across(op("Decapsulate", C, true)),
    with_response(op("CreateCustomKeyStore", M, false), &["CustomKeyStoreId"]),
    op("DescribeCustomKeyStores", M, true),
    op("UpdateCustomKeyStore", M, false),
    op("DeleteCustomKeyStore", M, false),
    op("ConnectCustomKeyStore", M, false),
    op("DisconnectCustomKeyStore", M, false),
];

/// The STS operations the service answers (`AssumeRole`, `GetCallerIdentity`): audited and
/// counted like the rest.
pub const STS_OPERATIONS: &[Operation] =
    &[op("AssumeRole", M, false), op("GetCallerIdentity", M, true)];

/// AWS KMS operations this service does not implement yet.
pub const NOT_YET: &[&str] = &[];

/// The KMS operation named `name`.
pub fn find(name: &str) -> Option<&'static Operation> {
    OPERATIONS.iter().find(|o| o.name == name)
}

/// Whether the key policy of another account's key may allow `action` (`kms:Encrypt`,
/// `kms:ReEncryptFrom`…) to a caller of this account.
pub fn crosses_accounts(action: &str) -> bool {
    let name = action.strip_prefix("kms:").unwrap_or(action);
    let name = match name {
        "ReEncryptFrom" | "ReEncryptTo" => "ReEncrypt",
        n => n,
    };
    find(name).is_some_and(|o| o.cross_account)
}

/// The KMS or STS operation named `name`.
pub fn find_any(name: &str) -> Option<&'static Operation> {
    find(name).or_else(|| STS_OPERATIONS.iter().find(|o| o.name == name))
}

/// Key types, as grants tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `SYMMETRIC_DEFAULT`.
    Symmetric,
    /// RSA keys for `ENCRYPT_DECRYPT`.
    AsymmetricEncryption,
    /// RSA, ECC and SM2 keys for `SIGN_VERIFY`.
    Signing,
    /// ECC keys for `KEY_AGREEMENT`.
    KeyAgreement,
    /// HMAC keys.
    Hmac,
    /// ML-KEM keys (`ENCAPSULATE_DECAPSULATE`).
    KeyEncapsulation,
}

use KeyKind::{
    AsymmetricEncryption as AE, Hmac as H, KeyAgreement as KA, KeyEncapsulation as KE,
    Signing as S, Symmetric as SY,
};

/// A grant operation (AWS's `GrantOperation`): what a grant may allow.
#[derive(Debug)]
pub struct GrantOperation {
    pub name: &'static str,
    /// The operation it allows (`ReEncryptFrom` and `ReEncryptTo` both allow `ReEncrypt`,
    /// on the source and the destination key).
    pub operation: &'static str,
    /// The key types a grant may name it for.
    pub kinds: &'static [KeyKind],
    /// Whether the operation takes an encryption context (grant constraints apply to it).
    pub with_context: bool,
}

const fn grant(
    name: &'static str,
    operation: &'static str,
    kinds: &'static [KeyKind],
    with_context: bool,
) -> GrantOperation {
    GrantOperation {
        name,
        operation,
        kinds,
        with_context,
    }
}

/// Every grant operation, in the order of AWS's enum (validation messages list them so).
pub const GRANT_OPERATIONS: &[GrantOperation] = &[
    grant("Decrypt", "Decrypt", &[SY, AE], true),
    grant("Encrypt", "Encrypt", &[SY, AE], true),
    grant("GenerateDataKey", "GenerateDataKey", &[SY], true),
    grant(
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext",
        &[SY],
        true,
    ),
    grant("ReEncryptFrom", "ReEncrypt", &[SY, AE], true),
    grant("ReEncryptTo", "ReEncrypt", &[SY, AE], true),
    grant("Sign", "Sign", &[S], false),
    grant("Verify", "Verify", &[S], false),
    grant("GetPublicKey", "GetPublicKey", &[AE, S, KA, KE], false),
    grant("CreateGrant", "CreateGrant", &[SY, AE, S, KA, H, KE], false),
    grant("RetireGrant", "RetireGrant", &[SY, AE, S, KA, H, KE], false),
    grant("DescribeKey", "DescribeKey", &[SY, AE, S, KA, H, KE], false),
    grant("GenerateDataKeyPair", "GenerateDataKeyPair", &[SY], true),
    grant(
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyPairWithoutPlaintext",
        &[SY],
        true,
    ),
    grant("GenerateMac", "GenerateMac", &[H], false),
    grant("VerifyMac", "VerifyMac", &[H], false),
    grant("DeriveSharedSecret", "DeriveSharedSecret", &[KA], false),
    grant("Encapsulate", "Encapsulate", &[KE], false),
    grant("Decapsulate", "Decapsulate", &[KE], false),
];

/// The grant operation named `name`.
pub fn grant_operation(name: &str) -> Option<&'static GrantOperation> {
    GRANT_OPERATIONS.iter().find(|g| g.name == name)
}

/// The names of the grant operations, in AWS's order.
pub fn grant_operation_names() -> Vec<&'static str> {
    GRANT_OPERATIONS.iter().map(|g| g.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS KMS's operations, as botocore's `kms/2014-11-01/service-2.json` (and the
    /// aws-sdk-kms 1.129 model built from it) lists them.
    const AWS: &[&str] = &[
        "CancelKeyDeletion",
        "ConnectCustomKeyStore",
        "CreateAlias",
        "CreateCustomKeyStore",
        "CreateGrant",
        "CreateKey",
        "Decapsulate",
        "Decrypt",
        "DeleteAlias",
        "DeleteCustomKeyStore",
        "DeleteImportedKeyMaterial",
        "DeriveSharedSecret",
        "DescribeCustomKeyStores",
        "DescribeKey",
        "DisableKey",
        "DisableKeyRotation",
        "DisconnectCustomKeyStore",
        "EnableKey",
        "EnableKeyRotation",
        "Encapsulate",
        "Encrypt",
        "GenerateDataKey",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateMac",
        "GenerateRandom",
        "GetKeyLastUsage",
        "GetKeyPolicy",
        "GetKeyRotationStatus",
        "GetParametersForImport",
        "GetPublicKey",
        "ImportKeyMaterial",
        "ListAliases",
        "ListGrants",
        "ListKeyPolicies",
        "ListKeyRotations",
        "ListKeys",
        "ListResourceTags",
        "ListRetirableGrants",
        "PutKeyPolicy",
        "ReEncrypt",
        "ReplicateKey",
        "RetireGrant",
        "RevokeGrant",
        "RotateKeyOnDemand",
        "ScheduleKeyDeletion",
        "Sign",
        "TagResource",
        "UntagResource",
        "UpdateAlias",
        "UpdateCustomKeyStore",
        "UpdateKeyDescription",
        "UpdatePrimaryRegion",
        "Verify",
        "VerifyMac",
    ];

    /// The names of the operations `pick` picks, sorted.
    fn names_where(pick: impl Fn(&&Operation) -> bool) -> Vec<&'static str> {
        let mut names: Vec<&str> = OPERATIONS.iter().filter(pick).map(|o| o.name).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn the_table_and_the_operations_not_built_yet_are_aws_s_operations() {
        assert_eq!(AWS.len(), 56);
        let mut ours: Vec<&str> = OPERATIONS
            .iter()
            .map(|o| o.name)
            .chain(NOT_YET.iter().copied())
            .collect();
        ours.sort_unstable();
        let before = ours.len();
        ours.dedup();
        assert_eq!(ours.len(), before, "an operation is listed twice");
        assert_eq!(ours, AWS);
    }

    #[test]
    fn every_grant_operation_allows_an_operation_of_the_table() {
        for g in GRANT_OPERATIONS {
            assert!(find(g.operation).is_some(), "{}", g.name);
            assert!(!g.kinds.is_empty(), "{}", g.name);
        }
    }

    #[test]
    fn cryptographic_operations_change_nothing() {
        for o in OPERATIONS {
            if o.quota == Quota::Cryptographic {
                assert!(o.read_only, "{}", o.name);
            }
            if !o.response_elements.is_empty() {
                assert!(!o.read_only, "{}", o.name);
            }
        }
    }

    /// AWS's API reference says "Cross-account use: Yes" for exactly these (botocore's
    /// documentation strings, and the API pages of the operations newer than its model).
    #[test]
    fn only_the_operations_aws_lets_cross_accounts_do() {
        assert_eq!(
            names_where(|o| o.cross_account),
            [
                "CreateGrant",
                "Decapsulate",
                "Decrypt",
                "DeriveSharedSecret",
                "DescribeKey",
                "Encapsulate",
                "Encrypt",
                "GenerateDataKey",
                "GenerateDataKeyPair",
                "GenerateDataKeyPairWithoutPlaintext",
                "GenerateDataKeyWithoutPlaintext",
                "GenerateMac",
                "GetKeyRotationStatus",
                "GetPublicKey",
                "ListGrants",
                "ReEncrypt",
                "RetireGrant",
                "RevokeGrant",
                "Sign",
                "Verify",
                "VerifyMac",
            ]
        );
        assert!(crosses_accounts("kms:ReEncryptFrom") && crosses_accounts("kms:ReEncryptTo"));
        assert!(!crosses_accounts("kms:PutKeyPolicy") && !crosses_accounts("kms:ReplicateKey"));
        assert!(!crosses_accounts("kms:CreateKey") && !crosses_accounts("kms:Unknown"));
    }

    /// botocore documents each of these `KeyId`s as "the key ID or key ARN" (no alias), and AWS
    /// answers an alias with InvalidArnException; RotateKeyOnDemand and ListKeyRotations, newer
    /// than that model, as recorded; GetKeyLastUsage ("Alias names are not supported").
    #[test]
    fn the_operations_that_take_no_alias_are_awss() {
        assert_eq!(
            names_where(|o| o.key_only),
            [
                "CancelKeyDeletion",
                "CreateGrant",
                "DeleteImportedKeyMaterial",
                "DisableKey",
                "DisableKeyRotation",
                "EnableKey",
                "EnableKeyRotation",
                "GetKeyLastUsage",
                "GetKeyPolicy",
                "GetKeyRotationStatus",
                "GetParametersForImport",
                "ImportKeyMaterial",
                "ListAliases",
                "ListGrants",
                "ListKeyPolicies",
                "ListKeyRotations",
                "ListResourceTags",
                "PutKeyPolicy",
                "ReplicateKey",
                "RetireGrant",
                "RevokeGrant",
                "RotateKeyOnDemand",
                "ScheduleKeyDeletion",
                "TagResource",
                "UntagResource",
                "UpdateKeyDescription",
                "UpdatePrimaryRegion",
            ]
        );
    }
}
