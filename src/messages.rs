//! AWS KMS's error messages, word for word: the texts real AWS answers, as recorded against AWS
//! (LocalStack's snapshot tests, `tests/aws/services/kms/test_kms.snapshot.json`) or quoted in
//! AWS's API reference. Every message the service sends for which AWS's text is known comes from
//! this one table; where AWS sends no message at all, the error carries none (an empty text).
//!
//! Each entry says where its text was recorded. `tests/api/protocol.rs`
//! (`error_texts_are_those_aws_answers`) makes each request through `aws-sdk-kms` and compares
//! the answer to the recording; the unit tests below pin each text.
//!
//! Shared by the domain and the API layers, like the vocabulary, so it sits at the crate root.

/// `CreateKey`/`TagResource` with a tag key starting `aws:` (any case). Recorded, no final
/// period.
pub const TAGS_RESERVED: &str = "Tags beginning with aws: are reserved";

/// `TagResource` with the same tag key twice. Recorded.
pub const DUPLICATE_TAG_KEYS: &str = "Duplicate tag keys";

/// `CreateKey` (and `ReplicateKey`) with more than 50 tags. Recorded for `CreateKey`.
pub const TOO_MANY_TAGS: &str = "Too many tags";

/// `Decrypt`/`ReEncrypt` whose `KeyId`/`SourceKeyId` is not the key of the ciphertext.
/// Recorded.
pub const INCORRECT_KEY: &str =
    "The key ID in the request does not identify a CMK that can perform this operation.";

/// Any call with `DryRun` that would have succeeded. Recorded.
pub const DRY_RUN: &str = "The request would have succeeded, but the DryRun option is set.";

/// `PutKeyPolicy` naming RAM's key policy (`PolicyName` `AWS_RAM`): AWS's model says it fails
/// with a `ValidationException`. Not recorded: the service's own words.
pub const AWS_RAM_POLICY_NOT_SETTABLE: &str =
    "The AWS_RAM key policy is managed by AWS RAM; PutKeyPolicy sets only the default key policy.";

/// `CreateKey` with a `KeySpec` other than `SYMMETRIC_DEFAULT` and no `KeyUsage`. Recorded.
pub const KEY_USAGE_REQUIRED: &str =
    "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.";

/// `GenerateRandom` without `NumberOfBytes` (optional in the model). Recorded.
pub const NUMBER_OF_BYTES_REQUIRED: &str = "NumberOfBytes is required.";

/// `GenerateDataKey`/`GenerateDataKeyWithoutPlaintext` with neither `NumberOfBytes` nor
/// `KeySpec`, or with both: the same text for the two (moto, LocalStack and local-kms, which
/// follow AWS's answers, all send it for both).
pub const BYTES_OR_KEY_SPEC: &str = "Please specify either number of bytes or key spec.";

/// `CreateGrant` whose `Constraints` has both `EncryptionContextEquals` and
/// `EncryptionContextSubset`. Recorded by a client against AWS (quoted in the Terraform AWS
/// provider's grant resource: "ValidationException: More than one constraint supplied").
pub const MORE_THAN_ONE_CONSTRAINT: &str = "More than one constraint supplied";

/// `ScheduleKeyDeletion` with a `PendingWindowInDays` the model allows (1 to 365) outside 7 to
/// 30. Recorded by a client against AWS (aws-sdk-go, status 400), no final period.
pub const PENDING_WINDOW_RANGE: &str = "PendingWindowInDays must be between 7 and 30";

/// `CreateKey` past the account's key quota in the region. Recorded by a client against AWS
/// (aws-sdk-go, status 400, 2016): "Key quota for this account in this region is 101 but the
/// current usage is 101."
pub fn key_quota(limit: usize, usage: usize) -> String {
    format!(
        "Key quota for this account in this region is {limit} but the current usage is {usage}."
    )
}

/// `CreateAlias`/`UpdateAlias` giving a key more aliases than its quota. Recorded by a client
/// against AWS (2024): "Aliases per key quota for this account in this region is 50, current
/// usage is 60."
pub fn aliases_per_key_quota(limit: usize, usage: usize) -> String {
    format!("Aliases per key quota for this account in this region is {limit}, current usage is {usage}.")
}

/// `CreateGrant` whose only operation is `CreateGrant`. Recorded by a client against AWS
/// (botocore, 2019).
pub const GRANT_ONLY_CREATE_GRANT: &str = "Grants must not contain only the CreateGrant operation.";

/// Any call over the account's request quota (`ThrottlingException`). Recorded by a client
/// against AWS (aws-java-sdk, 2015) and quoted in AWS's KMS Developer Guide (request quotas).
pub const THROTTLED: &str =
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.";

/// `GetKeyRotationStatus`, `ListKeyRotations`, `Enable/DisableKeyRotation` and
/// `RotateKeyOnDemand` named by an alias. Recorded (`InvalidArnException`).
pub const ALIASES_NOT_SUPPORTED: &str = "Key Aliases are not supported for this operation.";

/// `CreateGrant` with operations the key's kind does not have. Recorded for an HMAC key
/// ("a symmetric KMS key with key usage GENERATE_VERIFY_MAC").
pub fn grant_operations_not_supported(
    refused: &[&str],
    symmetric: bool,
    usage: &str,
    valid: &[&str],
) -> String {
    format!(
        "Operations [{}] are not supported when creating a grant for a{} KMS key with key usage {usage}. Valid operations are [{}]",
        refused.join(", "),
        if symmetric { " symmetric" } else { "n asymmetric" },
        valid.join(", ")
    )
}

/// `CreateGrant` with an encryption context constraint on a key that is not a symmetric
/// encryption key. Recorded.
pub const GRANT_CONTEXT_SYMMETRIC_ONLY: &str =
    "EncryptionContext is supported only when creating a grant for a symmetric encryption KMS key.";

/// `ImportKeyMaterial` with `KEY_MATERIAL_DOES_NOT_EXPIRE` and a `ValidTo`. Recorded.
pub const VALID_TO_NOT_ALLOWED: &str =
    "A validTo date cannot be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE";

/// `ImportKeyMaterial` with a `ValidTo` not in the future. Recorded.
pub const VALID_TO_PAST: &str = "ValidTo must be in the future";

/// `ImportKeyMaterial` with a `ValidTo` more than 365 days ahead. Recorded.
pub const VALID_TO_TOO_FAR: &str = "ValidTo must be less than 365 days in the future";

/// `GetParametersForImport` with a wrapping algorithm and wrapping key spec that cannot carry
/// the key's material (an RSA private key under RSAES-OAEP, symmetric or HMAC material under
/// RSA-AES key wrap, RSAES_PKCS1_V1_5 for anything, a P-521 or Ed25519 key under RSAES-OAEP
/// with RSA_2048). Recorded.
pub fn wrapping_cannot_import(algorithm: &str, wrapping_spec: &str, key_spec: &str) -> String {
    format!("Wrapping algorithm {algorithm} and wrapping key spec {wrapping_spec} cannot be used to import a {key_spec} key.")
}

/// `ImportKeyMaterial` with `KEY_MATERIAL_EXPIRES` (or no model) and no `ValidTo`. Recorded.
pub const VALID_TO_REQUIRED: &str =
    "A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES";

/// `CreateAlias` with a name not starting `alias/`. Recorded.
pub const ALIAS_PREFIX: &str = "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html";

/// A `KeyId` that is neither a key id, an alias nor an ARN. Recorded (`DescribeKey`,
/// `GenerateMac`, `VerifyMac`).
pub fn invalid_key_id(key_id: &str) -> String {
    format!("Invalid keyId '{key_id}'")
}

/// A key id or ARN of this account and region that names no key. Recorded.
pub fn key_does_not_exist(arn: &str) -> String {
    format!("Key '{arn}' does not exist")
}

/// A key ARN of another region: AWS names only the region. Recorded.
pub fn invalid_arn_region(region: &str) -> String {
    format!("Invalid arn {region}")
}

/// `Sign`/`Verify` with `MessageType=DIGEST` and a digest of the wrong length. Recorded.
pub fn digest_length(algorithm: &str) -> String {
    format!("Digest is invalid length for algorithm {algorithm}.")
}

/// RSA `Encrypt` (and `ReEncrypt` to an RSA key) over AWS's plaintext limit. Recorded for every
/// RSA spec and OAEP hash.
pub fn rsa_plaintext_limit(algorithm: &str, key_spec: &str, max: usize) -> String {
    format!("Algorithm {algorithm} and key spec {key_spec} cannot encrypt data larger than {max} bytes.")
}

/// An algorithm the key spec does not take (`GenerateMac` with another HMAC, `Encrypt` with an
/// RSA algorithm on a symmetric key, …). Recorded.
pub fn algorithm_incompatible(algorithm: &str, key_spec: &str) -> String {
    format!("Algorithm {algorithm} is incompatible with key spec {key_spec}.")
}

/// An operation the key's usage does not allow. Recorded (`GenerateMac`, `Sign`, `Verify`,
/// `Encrypt`, `DeriveSharedSecret`).
pub fn usage_not_valid(arn: &str, key_usage: &str, operation: &str) -> String {
    format!("{arn} key usage is {key_usage} which is not valid for {operation}.")
}

/// An operation the key's origin does not allow (`GetParametersForImport` on an `AWS_KMS` key).
/// Recorded.
pub fn origin_not_valid(arn: &str, origin: &str) -> String {
    format!("{arn} origin is {origin} which is not valid for this operation.")
}

/// A key in a state the operation does not accept (`… is pending import.`, `… is disabled.`).
/// Recorded.
pub fn key_state(arn: &str, state_words: &str) -> String {
    format!("{arn} is {state_words}.")
}

/// `CreateKey` with a usage the spec does not have. Recorded (no final period).
pub fn usage_incompatible_with_spec(key_usage: &str, key_spec: &str) -> String {
    format!("KeyUsage {key_usage} is not compatible with KeySpec {key_spec}")
}

/// `RotateKeyOnDemand` past the on-demand limit. Recorded.
pub fn on_demand_rotation_limit(arn: &str) -> String {
    format!("The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {arn}")
}

/// `ReplicateKey` to a Region of another AWS partition (`cn-north-1` for a key in
/// `us-east-1`). Recorded.
pub const REPLICA_IN_ANOTHER_PARTITION: &str =
    "The replica key Region must be in the same AWS partition as the primary key Region.";

/// `ReplicateKey` on a multi-Region replica key. Recorded.
pub fn not_multi_region_primary(arn: &str) -> String {
    format!("{arn} is not a multi-region primary key.")
}

// Imported key material with several materials per key (on-demand rotation of imported
// keys). Recorded: captures of real AWS published as test data by radkawar/stackd
// (`testdata/aws/kms/imports*.json`, September 2026).

/// `ImportKeyMaterial` (existing material) of material other than the one expected: `id` is
/// the `KeyMaterialId` asked for, or the key's current material's. Recorded.
pub fn unexpected_key_material(id: &str) -> String {
    format!("Imported key material does not have the expected identifier ({id}).")
}

/// `ImportKeyMaterial` with `NEW_KEY_MATERIAL` of material the key already has. Recorded.
pub fn key_material_already_associated(id: &str, arn: &str) -> String {
    format!("Key material (id: {id}) being imported as NEW_KEY_MATERIAL is already associated with KMS key {arn}.")
}

/// `ImportKeyMaterial` with `NEW_KEY_MATERIAL` while another material is pending rotation.
/// Recorded.
pub fn another_key_material_pending(new_id: &str, arn: &str, pending_id: &str) -> String {
    format!("New key material (id: {new_id}) cannot be imported into KMS key {arn}, because another key material (id: {pending_id}) is pending rotation.")
}

/// `RotateKeyOnDemand` of a key with imported material and none pending rotation. Recorded.
pub fn no_pending_key_material(arn: &str) -> String {
    format!("No available key material pending rotation for the key: {arn}.")
}

/// `DeleteImportedKeyMaterial` with a `KeyMaterialId` the key never had. Recorded.
pub fn key_material_never_imported(id: &str, arn: &str) -> String {
    format!("Key material (id: {id}) has never been imported into KMS key {arn}.")
}

/// `ImportKeyMaterial` with `KeyMaterialId` and `NEW_KEY_MATERIAL`. Recorded.
pub const KEY_MATERIAL_ID_WITH_NEW: &str =
    "Input parameter keyMaterialId cannot be used with NEW_KEY_MATERIAL importType.";

/// `ImportKeyMaterial` with `ImportType`, `KeyMaterialId` or `KeyMaterialDescription` (`member`,
/// as AWS writes it) into a key that is not a symmetric encryption key. Recorded for HMAC keys.
pub fn import_member_not_for_spec(member: &str, spec: &str) -> String {
    format!("Input parameter {member} cannot be used with {spec} imported keys.")
}

/// `ImportKeyMaterial` with `NEW_KEY_MATERIAL` into a multi-Region replica. Recorded.
pub const NEW_KEY_MATERIAL_ON_REPLICA: &str =
    "Input parameter ImportType NEW_KEY_MATERIAL cannot be used on replica Multi-Region keys";

/// `RotateKeyOnDemand` of a multi-Region primary with imported material before every replica
/// has the material imported for the rotation. Recorded.
pub const REPLICAS_LACK_ROTATION_MATERIAL: &str = "Cannot perform key material rotation: Key material has not been imported for replicas of the Multi-Region key.";

/// `ImportKeyMaterial` with `KeyMaterialDescription` into a multi-Region replica. Recorded.
pub const DESCRIPTION_ON_REPLICA: &str =
    "Key material description can only be specified on primary Multi-Region keys";

/// `ListKeyRotations` with `IncludeKeyMaterial` on a key that is not a symmetric encryption key.
/// Recorded.
pub const INCLUDE_KEY_MATERIAL_SYMMETRIC_ONLY: &str =
    "Input parameter includeKeyMaterial can only be used with symmetric keys.";

/// `ImportKeyMaterial` of other material into an HMAC or asymmetric key (which have no
/// `KeyMaterialId`).
pub const INCORRECT_KEY_MATERIAL: &str =
    "The key material is not the key material previously imported into this KMS key.";

/// One failed constraint of a validation error, as AWS words it: `Value 'v' at 'field' failed to
/// satisfy constraint: Member must …`, the value left out for blobs and secrets. Recorded for
/// lengths, ranges and enums (`Member must satisfy enum value set: [A, B]`).
pub fn constraint_failed(value: Option<&str>, field: &str, constraint: &str) -> String {
    match value {
        Some(v) => format!(
            "Value '{v}' at '{field}' failed to satisfy constraint: Member must {constraint}"
        ),
        None => {
            format!("Value at '{field}' failed to satisfy constraint: Member must {constraint}")
        }
    }
}

/// A required member that is absent.
pub fn member_null(field: &str) -> String {
    format!("Value null at '{field}' failed to satisfy constraint: Member must not be null")
}

/// The request's failed constraints, counted: `1 validation error detected: …` (several joined
/// by `; `). Recorded.
pub fn validation(errors: &[String]) -> String {
    let n = errors.len();
    format!(
        "{n} validation error{} detected: {}",
        if n == 1 { "" } else { "s" },
        errors.join("; ")
    )
}

// Custom key stores. No recording of AWS's messages for these is public (moto, localstack
// and the recorded captures have none): each is the first sentence of the exception's
// documentation in botocore's model (`kms/2014-11-01/service-2.json`); clients match on the
// exception name.

/// `CustomKeyStoreNotFoundException`.
pub fn key_store_not_found(_id: Option<&str>, _name: Option<&str>) -> String {
    "The request was rejected because KMS cannot find a custom key store with the specified key store name or ID.".into()
}

/// `CustomKeyStoreInvalidStateException` for `UpdateCustomKeyStore` or `DeleteCustomKeyStore`
/// of a store that is not disconnected (the model's condition, in its words).
pub fn key_store_not_disconnected(op: &str) -> String {
    format!("The request was rejected because of the ConnectionState of the custom key store. You requested the {op} operation on a custom key store that is not disconnected. This operation is valid only when the custom key store ConnectionState is DISCONNECTED.")
}

/// `CustomKeyStoreInvalidStateException` for `ConnectCustomKeyStore` of a store `FAILED` or
/// `DISCONNECTING`.
pub fn key_store_cannot_connect(state: &str) -> String {
    format!("The request was rejected because of the ConnectionState of the custom key store. You requested the ConnectCustomKeyStore operation on a custom key store with a ConnectionState of {state}. This operation is valid for all other ConnectionState values.")
}

/// `CustomKeyStoreInvalidStateException` for `DisconnectCustomKeyStore` of a disconnected
/// store.
pub fn key_store_cannot_disconnect(state: &str) -> String {
    format!("The request was rejected because of the ConnectionState of the custom key store. You requested the DisconnectCustomKeyStore operation on a custom key store with a ConnectionState of {state}.")
}

/// `CustomKeyStoreInvalidStateException` for `CreateKey` (or `GenerateRandom`) in a store that
/// is not connected (the model's condition, in its words).
pub fn key_store_not_connected(op: &str) -> String {
    format!("The request was rejected because of the ConnectionState of the custom key store. You requested the {op} operation in a custom key store that is not connected. This operation is valid only when the custom key store ConnectionState is CONNECTED.")
}

/// `CustomKeyStoreNameInUseException`.
pub fn key_store_name_in_use(_name: &str) -> String {
    "The request was rejected because the specified custom key store name is already assigned to another custom key store in the account. Try again with a custom key store name that is unique in the account.".into()
}

/// `CustomKeyStoreHasCMKsException`.
pub fn key_store_has_keys(_id: &str) -> String {
    "The request was rejected because the custom key store contains KMS keys. After verifying that you do not need to use the KMS keys, use the ScheduleKeyDeletion operation to delete the KMS keys. After they are deleted, you can delete the custom key store.".into()
}

/// `CloudHsmClusterInUseException`.
pub fn cluster_in_use(_cluster: &str) -> String {
    "The request was rejected because the specified CloudHSM cluster is already associated with an CloudHSM key store in the account, or it shares a backup history with an CloudHSM key store in the account.".into()
}

/// `CloudHsmClusterNotFoundException`.
pub fn cluster_not_found(_cluster: &str) -> String {
    "The request was rejected because KMS cannot find the CloudHSM cluster with the specified cluster ID. Retry the request with a different cluster ID.".into()
}

/// `CloudHsmClusterNotRelatedException`.
pub fn cluster_not_related(_cluster: &str) -> String {
    "The request was rejected because the specified CloudHSM cluster has a different cluster certificate than the original cluster. You cannot use the operation to specify an unrelated cluster for an CloudHSM key store.".into()
}

/// `IncorrectTrustAnchorException`.
pub const INCORRECT_TRUST_ANCHOR: &str = "The request was rejected because the trust anchor certificate in the request to create an CloudHSM key store is not the trust anchor certificate for the specified CloudHSM cluster.";

/// `LimitExceededException` at the quota of custom key stores (AWS: 10 per account and
/// Region).
pub const CUSTOM_KEY_STORE_LIMIT: &str =
    "The request was rejected because a quota was exceeded: an account can have at most 10 custom key stores in a Region.";

/// `CreateKey` with `CustomKeyStoreId` and another origin (AWS's rule: the origin must be the
/// store's; no recording of its text is public).
pub const CUSTOM_KEY_STORE_NEEDS_ORIGIN: &str =
    "A KMS key in a custom key store must have Origin AWS_CLOUDHSM or EXTERNAL_KEY_STORE.";

/// `CreateKey` with `Origin=AWS_CLOUDHSM` and no store.
pub const ORIGIN_NEEDS_CUSTOM_KEY_STORE: &str = "Origin AWS_CLOUDHSM requires a CustomKeyStoreId.";

/// `CreateKey` in a custom key store of anything but a single-Region symmetric encryption key.
pub const CUSTOM_KEY_STORE_KEYS: &str =
    "Custom key stores support only single-Region symmetric encryption keys (KeySpec SYMMETRIC_DEFAULT, KeyUsage ENCRYPT_DECRYPT).";

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    /// Each entry against its recorded text.
    #[test]
    fn each_text_is_the_recorded_one() {
        assert_eq!(invalid_key_id("fake-key-id"), "Invalid keyId 'fake-key-id'");
        assert_eq!(
            key_does_not_exist(ARN),
            format!("Key '{ARN}' does not exist")
        );
        assert_eq!(
            invalid_arn_region("ap-southeast-1"),
            "Invalid arn ap-southeast-1"
        );
        assert_eq!(
            digest_length("ECDSA_SHA_256"),
            "Digest is invalid length for algorithm ECDSA_SHA_256."
        );
        assert_eq!(
            rsa_plaintext_limit("RSAES_OAEP_SHA_1", "RSA_2048", 214),
            "Algorithm RSAES_OAEP_SHA_1 and key spec RSA_2048 cannot encrypt data larger than 214 bytes."
        );
        assert_eq!(
            algorithm_incompatible("HMAC_SHA_256", "HMAC_224"),
            "Algorithm HMAC_SHA_256 is incompatible with key spec HMAC_224."
        );
        assert_eq!(
            usage_not_valid(ARN, "ENCRYPT_DECRYPT", "GenerateMac"),
            format!("{ARN} key usage is ENCRYPT_DECRYPT which is not valid for GenerateMac.")
        );
        assert_eq!(
            origin_not_valid(ARN, "AWS_KMS"),
            format!("{ARN} origin is AWS_KMS which is not valid for this operation.")
        );
        assert_eq!(
            key_state(ARN, "pending import"),
            format!("{ARN} is pending import.")
        );
        assert_eq!(
            usage_incompatible_with_spec("KEY_AGREEMENT", "RSA_2048"),
            "KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048"
        );
        assert_eq!(
            on_demand_rotation_limit(ARN),
            format!("The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {ARN}")
        );
        assert_eq!(
            not_multi_region_primary(ARN),
            format!("{ARN} is not a multi-region primary key.")
        );
        assert_eq!(
            validation(&[constraint_failed(Some("0"), "numberOfBytes", "have value greater than or equal to 1")]),
            "1 validation error detected: Value '0' at 'numberOfBytes' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        assert_eq!(
            validation(&[constraint_failed(None, "plaintext", "have length less than or equal to 4096")]),
            "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096"
        );
        assert_eq!(
            validation(&[member_null("keyId"), member_null("plaintext")]),
            "2 validation errors detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null; Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
        );
        assert_eq!(TAGS_RESERVED, "Tags beginning with aws: are reserved");
        assert_eq!(DUPLICATE_TAG_KEYS, "Duplicate tag keys");
        assert_eq!(TOO_MANY_TAGS, "Too many tags");
        assert!(INCORRECT_KEY.ends_with("that can perform this operation."));
        assert!(DRY_RUN.ends_with("but the DryRun option is set."));
        assert!(KEY_USAGE_REQUIRED.starts_with("You must specify a KeyUsage value"));
        assert_eq!(NUMBER_OF_BYTES_REQUIRED, "NumberOfBytes is required.");
        assert!(!VALID_TO_REQUIRED.ends_with('.'));
        assert!(ALIAS_PREFIX.starts_with("Alias must start with the prefix \"alias/\"."));
        assert_eq!(
            unexpected_key_material("00"),
            "Imported key material does not have the expected identifier (00)."
        );
        assert_eq!(
            key_material_already_associated("ab", ARN),
            format!("Key material (id: ab) being imported as NEW_KEY_MATERIAL is already associated with KMS key {ARN}.")
        );
        assert_eq!(
            another_key_material_pending("n", ARN, "p"),
            format!("New key material (id: n) cannot be imported into KMS key {ARN}, because another key material (id: p) is pending rotation.")
        );
        assert_eq!(
            no_pending_key_material(ARN),
            format!("No available key material pending rotation for the key: {ARN}.")
        );
        assert_eq!(
            key_material_never_imported("00", ARN),
            format!("Key material (id: 00) has never been imported into KMS key {ARN}.")
        );
        assert!(KEY_MATERIAL_ID_WITH_NEW.ends_with("NEW_KEY_MATERIAL importType."));
        assert_eq!(
            import_member_not_for_spec("keyMaterialDescription", "HMAC_224"),
            "Input parameter keyMaterialDescription cannot be used with HMAC_224 imported keys."
        );
        assert!(!DESCRIPTION_ON_REPLICA.ends_with('.'));
        assert_eq!(
            wrapping_cannot_import("RSAES_PKCS1_V1_5", "RSA_2048", "SYMMETRIC_DEFAULT"),
            "Wrapping algorithm RSAES_PKCS1_V1_5 and wrapping key spec RSA_2048 cannot be used to import a SYMMETRIC_DEFAULT key."
        );
        assert!(!VALID_TO_NOT_ALLOWED.ends_with('.'));
        assert_eq!(
            grant_operations_not_supported(
                &["Encrypt"],
                true,
                "GENERATE_VERIFY_MAC",
                &["CreateGrant", "RetireGrant", "DescribeKey", "GenerateMac", "VerifyMac"]
            ),
            "Operations [Encrypt] are not supported when creating a grant for a symmetric KMS key with key usage GENERATE_VERIFY_MAC. Valid operations are [CreateGrant, RetireGrant, DescribeKey, GenerateMac, VerifyMac]"
        );
        assert!(ALIASES_NOT_SUPPORTED.starts_with("Key Aliases"));
        assert_eq!(VALID_TO_PAST, "ValidTo must be in the future");
        assert_eq!(
            VALID_TO_TOO_FAR,
            "ValidTo must be less than 365 days in the future"
        );
        assert!(NEW_KEY_MATERIAL_ON_REPLICA.ends_with("on replica Multi-Region keys"));
        assert!(
            REPLICAS_LACK_ROTATION_MATERIAL.starts_with("Cannot perform key material rotation:")
        );
        assert!(INCLUDE_KEY_MATERIAL_SYMMETRIC_ONLY.ends_with("only be used with symmetric keys."));
    }
}
