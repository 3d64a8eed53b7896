// botocore kms 2014-11-01 service-2.json at commit cd9207757d459bba9c524475b601e59f55760a3a (boto/botocore) is the only
// stored botocore version and it has 53 operations WITHOUT GetKeyLastUsage. The members below are therefore taken from the
// newer copy of the same AWS model (identical api-2/service-2 format, docs stripped): aws/aws-sdk-php
// src/data/kms/2014-11-01/api-2.json at commit 20b58ddb3d561cddda6bff835aad715d78b4456c (54 operations, incl. GetKeyLastUsage).
// No Encapsulate/Decapsulate operations exist in either model. Every operation has an input shape (<Op>Request).
// Encapsulate and Decapsulate (ML-KEM) are newer than that model: their members are aws-sdk-kms
// 1.129's (`EncapsulateInput`, `DecapsulateInput`).
pub const MODEL_MEMBERS: &[(&str, &[&str])] = &[
    (
        "Decapsulate",
        &[
            "KeyId",
            "SharedSecretCiphertextBlob",
            "EncapsulationAlgorithm",
            "GrantTokens",
            "DryRun",
        ],
    ), // required: KeyId, SharedSecretCiphertextBlob, EncapsulationAlgorithm
    (
        "Encapsulate",
        &["KeyId", "EncapsulationAlgorithm", "GrantTokens", "DryRun"],
    ), // required: KeyId, EncapsulationAlgorithm
    ("CancelKeyDeletion", &["KeyId"]), // required: KeyId
    ("ConnectCustomKeyStore", &["CustomKeyStoreId"]), // required: CustomKeyStoreId
    ("CreateAlias", &["AliasName", "TargetKeyId"]), // required: AliasName, TargetKeyId
    (
        "CreateCustomKeyStore",
        &[
            "CustomKeyStoreName",
            "CloudHsmClusterId",
            "TrustAnchorCertificate",
            "KeyStorePassword",
            "CustomKeyStoreType",
            "XksProxyUriEndpoint",
            "XksProxyUriPath",
            "XksProxyVpcEndpointServiceName",
            "XksProxyVpcEndpointServiceOwner",
            "XksProxyAuthenticationCredential",
            "XksProxyConnectivity",
        ],
    ), // required: CustomKeyStoreName
    (
        "CreateGrant",
        &[
            "KeyId",
            "GranteePrincipal",
            "RetiringPrincipal",
            "Operations",
            "Constraints",
            "GrantTokens",
            "Name",
            "DryRun",
            // aws-sdk-kms 1.129's model, newer than the one above.
            "GranteeServicePrincipal",
            "RetiringServicePrincipal",
        ],
    ), // required: KeyId, GranteePrincipal, Operations
    (
        "CreateKey",
        &[
            "Policy",
            "Description",
            "KeyUsage",
            "CustomerMasterKeySpec",
            "KeySpec",
            "Origin",
            "CustomKeyStoreId",
            "BypassPolicyLockoutSafetyCheck",
            "Tags",
            "MultiRegion",
            "XksKeyId",
        ],
    ), // required: (none)
    (
        "Decrypt",
        &[
            "CiphertextBlob",
            "EncryptionContext",
            "GrantTokens",
            "KeyId",
            "EncryptionAlgorithm",
            "Recipient",
            "DryRun",
            "DryRunModifiers",
        ],
    ), // required: (none)
    ("DeleteAlias", &["AliasName"]),   // required: AliasName
    ("DeleteCustomKeyStore", &["CustomKeyStoreId"]), // required: CustomKeyStoreId
    ("DeleteImportedKeyMaterial", &["KeyId", "KeyMaterialId"]), // required: KeyId
    (
        "DeriveSharedSecret",
        &[
            "KeyId",
            "KeyAgreementAlgorithm",
            "PublicKey",
            "GrantTokens",
            "DryRun",
            "Recipient",
        ],
    ), // required: KeyId, KeyAgreementAlgorithm, PublicKey
    (
        "DescribeCustomKeyStores",
        &["CustomKeyStoreId", "CustomKeyStoreName", "Limit", "Marker"],
    ), // required: (none)
    ("DescribeKey", &["KeyId", "GrantTokens"]), // required: KeyId
    ("DisableKey", &["KeyId"]),        // required: KeyId
    ("DisableKeyRotation", &["KeyId"]), // required: KeyId
    ("DisconnectCustomKeyStore", &["CustomKeyStoreId"]), // required: CustomKeyStoreId
    ("EnableKey", &["KeyId"]),         // required: KeyId
    ("EnableKeyRotation", &["KeyId", "RotationPeriodInDays"]), // required: KeyId
    (
        "Encrypt",
        &[
            "KeyId",
            "Plaintext",
            "EncryptionContext",
            "GrantTokens",
            "EncryptionAlgorithm",
            "DryRun",
        ],
    ), // required: KeyId, Plaintext
    (
        "GenerateDataKey",
        &[
            "KeyId",
            "EncryptionContext",
            "NumberOfBytes",
            "KeySpec",
            "GrantTokens",
            "Recipient",
            "DryRun",
        ],
    ), // required: KeyId
    (
        "GenerateDataKeyPair",
        &[
            "EncryptionContext",
            "KeyId",
            "KeyPairSpec",
            "GrantTokens",
            "Recipient",
            "DryRun",
        ],
    ), // required: KeyId, KeyPairSpec
    (
        "GenerateDataKeyPairWithoutPlaintext",
        &[
            "EncryptionContext",
            "KeyId",
            "KeyPairSpec",
            "GrantTokens",
            "DryRun",
        ],
    ), // required: KeyId, KeyPairSpec
    (
        "GenerateDataKeyWithoutPlaintext",
        &[
            "KeyId",
            "EncryptionContext",
            "KeySpec",
            "NumberOfBytes",
            "GrantTokens",
            "DryRun",
        ],
    ), // required: KeyId
    (
        "GenerateMac",
        &["Message", "KeyId", "MacAlgorithm", "GrantTokens", "DryRun"],
    ), // required: Message, KeyId, MacAlgorithm
    (
        "GenerateRandom",
        &["NumberOfBytes", "CustomKeyStoreId", "Recipient"],
    ), // required: (none)
    ("GetKeyLastUsage", &["KeyId"]),   // required: KeyId
    ("GetKeyPolicy", &["KeyId", "PolicyName"]), // required: KeyId
    ("GetKeyRotationStatus", &["KeyId"]), // required: KeyId
    (
        "GetParametersForImport",
        &["KeyId", "WrappingAlgorithm", "WrappingKeySpec"],
    ), // required: KeyId, WrappingAlgorithm, WrappingKeySpec
    ("GetPublicKey", &["KeyId", "GrantTokens"]), // required: KeyId
    (
        "ImportKeyMaterial",
        &[
            "KeyId",
            "ImportToken",
            "EncryptedKeyMaterial",
            "ValidTo",
            "ExpirationModel",
            "ImportType",
            "KeyMaterialDescription",
            "KeyMaterialId",
        ],
    ), // required: KeyId, ImportToken, EncryptedKeyMaterial
    ("ListAliases", &["KeyId", "Limit", "Marker"]), // required: (none)
    (
        "ListGrants",
        // GranteeServicePrincipal: aws-sdk-kms 1.129's model, newer than the one above.
        &[
            "Limit",
            "Marker",
            "KeyId",
            "GrantId",
            "GranteePrincipal",
            "GranteeServicePrincipal",
        ],
    ), // required: KeyId
    ("ListKeyPolicies", &["KeyId", "Limit", "Marker"]), // required: KeyId
    (
        "ListKeyRotations",
        &["KeyId", "IncludeKeyMaterial", "Limit", "Marker"],
    ), // required: KeyId
    ("ListKeys", &["Limit", "Marker"]), // required: (none)
    ("ListResourceTags", &["KeyId", "Limit", "Marker"]), // required: KeyId
    (
        "ListRetirableGrants",
        // RetiringServicePrincipal: aws-sdk-kms 1.129's model.
        &[
            "Limit",
            "Marker",
            "RetiringPrincipal",
            "RetiringServicePrincipal",
        ],
    ), // required: RetiringPrincipal
    (
        "PutKeyPolicy",
        &[
            "KeyId",
            "PolicyName",
            "Policy",
            "BypassPolicyLockoutSafetyCheck",
        ],
    ), // required: KeyId, Policy
    (
        "ReEncrypt",
        &[
            "CiphertextBlob",
            "SourceEncryptionContext",
            "SourceKeyId",
            "DestinationKeyId",
            "DestinationEncryptionContext",
            "SourceEncryptionAlgorithm",
            "DestinationEncryptionAlgorithm",
            "GrantTokens",
            "DryRun",
            "DryRunModifiers",
        ],
    ), // required: DestinationKeyId
    (
        "ReplicateKey",
        &[
            "KeyId",
            "ReplicaRegion",
            "Policy",
            "BypassPolicyLockoutSafetyCheck",
            "Description",
            "Tags",
        ],
    ), // required: KeyId, ReplicaRegion
    ("RetireGrant", &["GrantToken", "KeyId", "GrantId", "DryRun"]), // required: (none)
    ("RevokeGrant", &["KeyId", "GrantId", "DryRun"]), // required: KeyId, GrantId
    ("RotateKeyOnDemand", &["KeyId"]), // required: KeyId
    ("ScheduleKeyDeletion", &["KeyId", "PendingWindowInDays"]), // required: KeyId
    (
        "Sign",
        &[
            "KeyId",
            "Message",
            "MessageType",
            "GrantTokens",
            "SigningAlgorithm",
            "DryRun",
        ],
    ), // required: KeyId, Message, SigningAlgorithm
    ("TagResource", &["KeyId", "Tags"]), // required: KeyId, Tags
    ("UntagResource", &["KeyId", "TagKeys"]), // required: KeyId, TagKeys
    ("UpdateAlias", &["AliasName", "TargetKeyId"]), // required: AliasName, TargetKeyId
    (
        "UpdateCustomKeyStore",
        &[
            "CustomKeyStoreId",
            "NewCustomKeyStoreName",
            "KeyStorePassword",
            "CloudHsmClusterId",
            "XksProxyUriEndpoint",
            "XksProxyUriPath",
            "XksProxyVpcEndpointServiceName",
            "XksProxyVpcEndpointServiceOwner",
            "XksProxyAuthenticationCredential",
            "XksProxyConnectivity",
        ],
    ), // required: CustomKeyStoreId
    ("UpdateKeyDescription", &["KeyId", "Description"]), // required: KeyId, Description
    ("UpdatePrimaryRegion", &["KeyId", "PrimaryRegion"]), // required: KeyId, PrimaryRegion
    (
        "Verify",
        &[
            "KeyId",
            "Message",
            "MessageType",
            "Signature",
            "SigningAlgorithm",
            "GrantTokens",
            "DryRun",
        ],
    ), // required: KeyId, Message, Signature, SigningAlgorithm
    (
        "VerifyMac",
        &[
            "Message",
            "KeyId",
            "MacAlgorithm",
            "Mac",
            "GrantTokens",
            "DryRun",
        ],
    ), // required: Message, KeyId, MacAlgorithm, Mac
];
