//! AWS JSON 1.1 framing: request ids, content types, malformed bodies, unknown operations.

use crate::support::*;

const CT: &str = "application/x-amz-json-1.1";

#[tokio::test]
async fn framing_errors_are_400s_with_aws_names() {
    let s = Server::start().await;
    let ok = s
        .raw(Some("TrentService.ListKeys"), CT, b"{}".to_vec(), true)
        .await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.get("x-amzn-requestid").is_some());
    assert_eq!(ok.headers.get("content-type").unwrap(), CT);
    assert!(ok.json["Keys"].is_array());

    let r = s
        .raw(
            Some("TrentService.ListKeys"),
            CT,
            b"{not json".to_vec(),
            true,
        )
        .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "SerializationException"),
        "{:?}",
        r.json
    );
    assert!(r.headers.get("x-amzn-requestid").is_some());

    let r = s
        .raw(
            Some("TrentService.GenerateRandom"),
            CT,
            br#"{"NumberOfBytes":"many"}"#.to_vec(),
            true,
        )
        .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "SerializationException"),
        "{:?}",
        r.json
    );

    let r = s
        .raw(
            Some("TrentService.Encrypt"),
            CT,
            br#"{"KeyId":"x","Plaintext":"%%%notbase64"}"#.to_vec(),
            true,
        )
        .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "SerializationException"),
        "{:?}",
        r.json
    );

    let r = s
        .raw(Some("TrentService.FlyToTheMoon"), CT, b"{}".to_vec(), true)
        .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "UnknownOperationException")
    );
    let r = s.raw(None, CT, b"{}".to_vec(), true).await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "UnknownOperationException")
    );

    let r = s
        .raw(
            Some("TrentService.ListKeys"),
            "application/json",
            b"{}".to_vec(),
            true,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_type(), "UnknownOperationException", "{:?}", r.json);

    let big = vec![b' '; 2 * 1024 * 1024];
    let r = s.raw(Some("TrentService.ListKeys"), CT, big, true).await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "ValidationException"),
        "{:?}",
        r.json
    );

    // Unknown members are ignored, as AWS does.
    let r = s
        .raw(
            Some("TrentService.ListKeys"),
            CT,
            br#"{"Limit":5,"Whatever":true}"#.to_vec(),
            true,
        )
        .await;
    assert_eq!(r.status, 200);
    // Members of a sibling operation too: DisableKeyRotation has no Limit, EnableKeyRotation
    // no IncludeKeyMaterial, ListKeyRotations no RotationPeriodInDays, GetKeyRotationStatus
    // none of them; each answers as if they were absent, whatever their JSON type.
    let key = s.client().create_key().send().await.unwrap();
    let key = key.key_metadata.unwrap().key_id;
    for (op, extra) in [
        ("DisableKeyRotation", r#""Limit":0"#),
        (
            "DisableKeyRotation",
            r#""RotationPeriodInDays":"x","IncludeKeyMaterial":7"#,
        ),
        ("ListKeyRotations", r#""RotationPeriodInDays":[]"#),
        ("EnableKeyRotation", r#""Limit":"many","Marker":{}"#),
        (
            "EnableKeyRotation",
            r#""IncludeKeyMaterial":"NONE","Limit":0"#,
        ),
        ("ListKeyRotations", r#""RotationPeriodInDays":1"#),
        (
            "GetKeyRotationStatus",
            r#""RotationPeriodInDays":1,"Marker":"""#,
        ),
    ] {
        let r = s
            .raw(
                Some(&format!("TrentService.{op}")),
                CT,
                format!(r#"{{"KeyId":"{key}",{extra}}}"#).into_bytes(),
                true,
            )
            .await;
        assert_eq!(r.status, 200, "{op}: {:?}", r.json);
    }

    // The server still works after all that.
    s.client().create_key().send().await.unwrap();
}

/// The operation table (`src/operations.rs`) is what the server routes: every operation in it
/// reaches a handler (here it refuses an empty request, or answers it), and every AWS
/// operation the table lists as not built yet is `UnknownOperationException`.
#[tokio::test(flavor = "multi_thread")]
async fn every_operation_of_the_table_is_routed_and_no_other() {
    let s = Server::start().await;
    for o in kms::operations::OPERATIONS {
        let r = s
            .raw(
                Some(&format!("TrentService.{}", o.name)),
                CT,
                b"{}".to_vec(),
                true,
            )
            .await;
        assert_ne!(
            r.error_type(),
            "UnknownOperationException",
            "{}: {:?}",
            o.name,
            r.json
        );
    }
    for name in kms::operations::NOT_YET {
        let r = s
            .raw(
                Some(&format!("TrentService.{name}")),
                CT,
                b"{}".to_vec(),
                true,
            )
            .await;
        assert_eq!(
            (r.status, r.error_type()),
            (400, "UnknownOperationException"),
            "{name}"
        );
    }
}

/// AWS sends `KMSInvalidSignatureException`, `KMSInvalidMacException` and
/// `InvalidCiphertextException` with no message member at all; a client that prints the
/// message (the `aws` CLI) shows nothing after the colon, not an empty string from JSON.
#[tokio::test]
async fn errors_aws_sends_without_a_message_carry_none() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let s = Server::start().await;
    let c = s.client();
    let create = |spec, usage| async { new_key_with(&c, spec, usage).await.key_id };
    let signing = create(KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let hmac = create(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let cases = [
        (
            "TrentService.Verify",
            serde_json::json!({"KeyId": signing, "Message": b64(b"m"), "Signature": b64(&[0x30, 0x06, 2, 1, 1, 2, 1, 1]), "SigningAlgorithm": "ECDSA_SHA_256"}),
            "KMSInvalidSignatureException",
        ),
        (
            "TrentService.VerifyMac",
            serde_json::json!({"KeyId": hmac, "Message": b64(b"m"), "Mac": b64(&[0u8; 32]), "MacAlgorithm": "HMAC_SHA_256"}),
            "KMSInvalidMacException",
        ),
        (
            "TrentService.Decrypt",
            serde_json::json!({"CiphertextBlob": b64(&[9u8; 64])}),
            "InvalidCiphertextException",
        ),
    ];
    for (target, body, want) in cases {
        let r = s
            .raw(Some(target), CT, serde_json::to_vec(&body).unwrap(), true)
            .await;
        assert_eq!((r.status, r.error_type()), (400, want), "{:?}", r.json);
        assert!(
            r.json.get("message").is_none(),
            "{target}: AWS sends no message: {:?}",
            r.json
        );
    }
    // Errors AWS words keep their message.
    let r = s
        .raw(
            Some("TrentService.DescribeKey"),
            CT,
            br#"{"KeyId":"alias/none"}"#.to_vec(),
            true,
        )
        .await;
    assert_eq!(r.error_type(), "NotFoundException");
    assert!(!r.message().is_empty(), "{:?}", r.json);
}

/// Error texts as real AWS answered them (recordings made against AWS and published with
/// LocalStack's snapshot tests): the same code and the same message, to the letter.
#[tokio::test]
async fn error_texts_are_those_aws_answers() {
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::{
        EncryptionAlgorithmSpec, KeySpec, KeyUsageType, MacAlgorithmSpec, MessageType,
        SigningAlgorithmSpec,
    };
    let s = Server::start().await;
    let c = s.client();
    let create = |spec, usage| new_key_with(&c, spec, usage);
    // A key id that is neither a UUID, an mrk- id, an alias nor an ARN.
    let (c_, m) = message(c.describe_key().key_id("not-a-key").send().await);
    assert_eq!(
        (c_.as_str(), m.as_str()),
        ("NotFoundException", "Invalid keyId 'not-a-key'")
    );
    // A key ARN of another region names only that region.
    let symmetric = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let elsewhere = symmetric.arn().unwrap().replace(REGION, "ap-southeast-1");
    let (c_, m) = message(c.describe_key().key_id(&elsewhere).send().await);
    assert_eq!(
        (c_.as_str(), m.as_str()),
        ("NotFoundException", "Invalid arn ap-southeast-1")
    );
    // A key spec other than SYMMETRIC_DEFAULT without a KeyUsage.
    let (c_, m) = message(c.create_key().key_spec(KeySpec::Hmac256).send().await);
    assert_eq!(c_, "ValidationException");
    assert_eq!(
        m,
        "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys."
    );
    // GenerateRandom without NumberOfBytes (optional in the model).
    let (c_, m) = message(c.generate_random().send().await);
    assert_eq!(
        (c_.as_str(), m.as_str()),
        ("ValidationException", "NumberOfBytes is required.")
    );
    // A digest of the wrong length names the signing algorithm.
    let signing = create(KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let (c_, m) = message(
        c.sign()
            .key_id(signing.key_id())
            .message(Blob::new(vec![1u8; 31]))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await,
    );
    assert_eq!(c_, "ValidationException");
    assert_eq!(m, "Digest is invalid length for algorithm ECDSA_SHA_256.");
    // RSA plaintext over the algorithm's limit.
    let rsa = create(KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let (c_, m) = message(
        c.encrypt()
            .key_id(rsa.key_id())
            .plaintext(Blob::new(vec![0u8; 215]))
            .encryption_algorithm(EncryptionAlgorithmSpec::RsaesOaepSha1)
            .send()
            .await,
    );
    assert_eq!(c_, "ValidationException");
    assert_eq!(
        m,
        "Algorithm RSAES_OAEP_SHA_1 and key spec RSA_2048 cannot encrypt data larger than 214 bytes."
    );
    // An unknown MacAlgorithm: AWS's list, in AWS's order.
    let hmac = create(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let (c_, m) = message(
        c.generate_mac()
            .key_id(hmac.key_id())
            .message(Blob::new(b"m".to_vec()))
            .mac_algorithm(MacAlgorithmSpec::from("HMAC_SHA_1"))
            .send()
            .await,
    );
    assert_eq!(c_, "ValidationException");
    assert_eq!(
        m,
        "1 validation error detected: Value 'HMAC_SHA_1' at 'macAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [HMAC_SHA_384, HMAC_SHA_256, HMAC_SHA_224, HMAC_SHA_512]"
    );
    // A blob out of its bounds: a plaintext is never shown, any other blob as AWS's Java
    // service shows a buffer (before, no value was shown for any blob).
    let (c_, m) = message(
        c.decrypt()
            .ciphertext_blob(Blob::new(Vec::new()))
            .send()
            .await,
    );
    assert_eq!(c_, "ValidationException");
    assert_eq!(m, "1 validation error detected: Value 'java.nio.HeapByteBuffer[pos=0 lim=0 cap=0]' at 'ciphertextBlob' failed to satisfy constraint: Member must have length greater than or equal to 1");
    let (_, m) = message(
        c.verify_mac()
            .key_id(hmac.key_id())
            .message(Blob::new(vec![0; 4097]))
            .mac(Blob::new(vec![0; 6145]))
            .mac_algorithm(MacAlgorithmSpec::HmacSha256)
            .send()
            .await,
    );
    assert_eq!(m, "2 validation errors detected: Value at 'message' failed to satisfy constraint: Member must have length less than or equal to 4096; Value 'java.nio.HeapByteBuffer[pos=0 lim=6145 cap=6145]' at 'mac' failed to satisfy constraint: Member must have length less than or equal to 6144");
    // A key of the wrong usage: the error names the operation called.
    let (c_, m) = message(
        c.generate_data_key_without_plaintext()
            .key_id(hmac.key_id())
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await,
    );
    assert_eq!(c_, "InvalidKeyUsageException");
    assert!(
        m.ends_with("key usage is GENERATE_VERIFY_MAC which is not valid for GenerateDataKeyWithoutPlaintext."),
        "{m}"
    );
    let answer = |r: (String, String)| r;
    // Unknown KeySpec and KeyUsage: AWS's lists in AWS's order (recorded before SM2, ML-DSA,
    // Ed25519 and KEY_AGREEMENT were added, which come last).
    let (c_, m) = answer(message(
        c.create_key()
            .key_spec(KeySpec::from("HMAC_random"))
            .send()
            .await,
    ));
    assert_eq!(c_, "ValidationException");
    assert!(m.starts_with("1 validation error detected: Value 'HMAC_random' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [RSA_2048, ECC_NIST_P384, ECC_NIST_P256, ECC_NIST_P521, HMAC_384, RSA_3072, ECC_SECG_P256K1, RSA_4096, SYMMETRIC_DEFAULT, HMAC_256, HMAC_224, HMAC_512, "), "{m}");
    let (_, m) = answer(message(
        c.create_key()
            .key_spec(KeySpec::Hmac256)
            .key_usage(KeyUsageType::from("RANDOM"))
            .send()
            .await,
    ));
    assert_eq!(m, "1 validation error detected: Value 'RANDOM' at 'keyUsage' failed to satisfy constraint: Member must satisfy enum value set: [ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC, KEY_AGREEMENT, ENCAPSULATE_DECAPSULATE]");
    // Tags: the reserved prefix in any case, duplicate keys, more than 50.
    let tag = |k: &str, v: &str| {
        aws_sdk_kms::types::Tag::builder()
            .tag_key(k)
            .tag_value(v)
            .build()
            .unwrap()
    };
    for prefix in ["aws:", "AWS:"] {
        let (c_, m) = message(
            c.create_key()
                .tags(tag(&format!("{prefix}key1"), "value1"))
                .send()
                .await,
        );
        assert_eq!(
            (c_.as_str(), m.as_str()),
            ("TagException", "Tags beginning with aws: are reserved")
        );
    }
    let (c_, m) = message(
        c.tag_resource()
            .key_id(symmetric.key_id())
            .tags(tag("aws:key1", "value1"))
            .send()
            .await,
    );
    assert_eq!(
        (c_.as_str(), m.as_str()),
        ("TagException", "Tags beginning with aws: are reserved")
    );
    let (c_, m) = message(
        c.tag_resource()
            .key_id(symmetric.key_id())
            .tags(tag("tag1", "value1"))
            .tags(tag("tag1", "another-value1"))
            .send()
            .await,
    );
    assert_eq!(
        (c_.as_str(), m.as_str()),
        ("TagException", "Duplicate tag keys")
    );
    let mut many = c.create_key().key_usage(KeyUsageType::EncryptDecrypt);
    for i in 0..51 {
        many = many.tags(tag(&format!("key{i}"), "value"));
    }
    let (c_, m) = message(many.send().await);
    assert_eq!((c_.as_str(), m.as_str()), ("TagException", "Too many tags"));
    // DeriveSharedSecret with a public key that is not one: no message.
    let agreement = create(KeySpec::EccNistP256, KeyUsageType::KeyAgreement).await;
    let (c_, m) = message(
        c.derive_shared_secret()
            .key_id(agreement.key_id())
            .key_agreement_algorithm(aws_sdk_kms::types::KeyAgreementAlgorithmSpec::Ecdh)
            .public_key(Blob::new(b"InvalidPublicKey".to_vec()))
            .send()
            .await,
    );
    assert_eq!((c_.as_str(), m.as_str()), ("ValidationException", ""));
    // RotateKeyOnDemand on an RSA key: no message.
    let (c_, m) = message(c.rotate_key_on_demand().key_id(rsa.key_id()).send().await);
    assert_eq!(
        (c_.as_str(), m.as_str()),
        ("UnsupportedOperationException", "")
    );
    // ReEncrypt whose SourceKeyId is not the ciphertext's key: the source is judged first,
    // even when the destination (an HMAC key) could not take it either.
    let blob = c
        .encrypt()
        .key_id(symmetric.key_id())
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let hmac224 = create(KeySpec::Hmac224, KeyUsageType::GenerateVerifyMac).await;
    let (c_, m) = message(
        c.re_encrypt()
            .ciphertext_blob(blob)
            .source_key_id(hmac224.key_id())
            .destination_key_id(hmac224.key_id())
            .source_encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .destination_encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .send()
            .await,
    );
    assert_eq!(
        (c_.as_str(), m.as_str()),
        (
            "IncorrectKeyException",
            "The key ID in the request does not identify a CMK that can perform this operation."
        )
    );
    // ReplicateKey on a replica.
    let primary = c
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let replica = c
        .replicate_key()
        .key_id(primary.key_id())
        .replica_region(OTHER_REGION)
        .send()
        .await
        .unwrap()
        .replica_key_metadata
        .unwrap();
    let west = s.client_in(OTHER_REGION);
    let (c_, m) = message(
        west.replicate_key()
            .key_id(replica.key_id())
            .replica_region(OTHER_REGION)
            .send()
            .await,
    );
    assert_eq!(c_, "UnsupportedOperationException");
    assert_eq!(
        m,
        format!(
            "{} is not a multi-region primary key.",
            replica.arn().unwrap()
        )
    );
}

/// Every input member of every operation in AWS's model (the model's `<Op>Request` shapes,
/// listed in `tests/api/model_members.rs`) is read by this service's request — implemented or
/// refused with a clear error, never dropped unread. The probe: each member alone, as a JSON
/// object and then as a number; a member the request reads refuses one of them with a
/// `SerializationException` naming the type it wanted, while a member it did not know would be
/// skipped and the call would go on to other answers.
#[tokio::test(flavor = "multi_thread")]
async fn every_request_member_of_the_model_is_read() {
    let s = Server::start().await;
    let key = new_key(&s.client()).await;
    // Taken as any JSON and judged member by member once the required members are there
    // (every member of Constraints read or refused): probed within a whole request.
    let whole = |op: &str, member: &str| match (op, member) {
        ("CreateGrant", "Constraints") => Some(serde_json::json!({
            "KeyId": key,
            "GranteePrincipal": "arn:aws:iam::123456789012:root",
            "Operations": ["Decrypt"],
        })),
        _ => None,
    };
    let mut unread = Vec::new();
    for (op, members) in crate::model_members::MODEL_MEMBERS {
        if kms::operations::NOT_YET.contains(op) {
            continue;
        }
        for member in *members {
            let mut answers = Vec::new();
            for probe in [
                serde_json::json!({ "probe": true }),
                serde_json::json!(12345),
            ] {
                let mut body = whole(op, member).unwrap_or_else(|| serde_json::json!({}));
                body[*member] = probe;
                let r = s
                    .raw(
                        Some(&format!("TrentService.{op}")),
                        CT,
                        serde_json::to_vec(&body).unwrap(),
                        true,
                    )
                    .await;
                answers.push(format!("{} {}", r.error_type(), r.message()));
            }
            let refused_by_name = |a: &String| {
                a.starts_with("ValidationException") && a.contains(&format!("{member} "))
            };
            if !answers
                .iter()
                .any(|a| a.starts_with("SerializationException") || refused_by_name(a))
            {
                unread.push(format!("{op}.{member}: {answers:?}"));
            }
        }
    }
    assert!(
        unread.is_empty(),
        "members not read:\n{}",
        unread.join("\n")
    );
    // Recipient (Nitro Enclaves attestation) is read and refused by name.
    let r = s
        .raw(
            Some("TrentService.GenerateRandom"),
            CT,
            br#"{"NumberOfBytes": 16, "Recipient": {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "AAAA"}}"#.to_vec(),
            true,
        )
        .await;
    assert_eq!(r.error_type(), "UnsupportedOperationException");
    assert!(r.message().contains("Recipient"), "{}", r.message());
    // The WithoutPlaintext operations have no Recipient member: there it is ignored, as any
    // member an operation does not have.
    let key = s.client().create_key().send().await.unwrap();
    let key = key.key_metadata.unwrap().key_id;
    for (op, spec) in [
        ("GenerateDataKeyWithoutPlaintext", r#""KeySpec": "AES_256""#),
        (
            "GenerateDataKeyPairWithoutPlaintext",
            r#""KeyPairSpec": "ECC_NIST_P256""#,
        ),
    ] {
        let r = s
            .raw(
                Some(&format!("TrentService.{op}")),
                CT,
                format!(
                    r#"{{"KeyId": "{key}", {spec}, "Recipient": {{"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": "AAAA"}}}}"#
                )
                .into_bytes(),
                true,
            )
            .await;
        assert_eq!(r.status, 200, "{op}: {:?}", r.json);
        assert!(
            r.json.get("CiphertextBlob").is_some()
                || r.json.get("PrivateKeyCiphertextBlob").is_some()
        );
    }
}

/// The texts of AWS's model validation for lists, and of two request shapes AWS refuses with a
/// text of its own: a list of plain values is quoted whole; a `Limit` within the model's 1 to
/// 1,000 is accepted, and a listing answers no more than its documented maximum.
#[tokio::test]
async fn list_and_constraint_texts_are_those_aws_answers() {
    use aws_sdk_kms::types::{DataKeySpec, GrantConstraints, GrantOperation};
    let s = Server::start().await;
    let c = s.client();
    let key = c.create_key().send().await.unwrap().key_metadata.unwrap();
    let key_id = key.key_id();
    // NumberOfBytes and KeySpec both: the same text as neither.
    for both in [true, false] {
        let mut r = c.generate_data_key().key_id(key_id);
        if both {
            r = r.number_of_bytes(32).key_spec(DataKeySpec::Aes256);
        }
        let (code, m) = message(r.send().await);
        assert_eq!(
            (code.as_str(), m.as_str()),
            (
                "ValidationException",
                "Please specify either number of bytes or key spec."
            )
        );
    }
    // Both constraints of a grant.
    let (code, m) = message(
        c.create_grant()
            .key_id(key_id)
            .grantee_principal("arn:aws:iam::111122223333:user/bob")
            .operations(GrantOperation::Decrypt)
            .constraints(
                GrantConstraints::builder()
                    .encryption_context_equals("a", "1")
                    .encryption_context_subset("b", "2")
                    .build(),
            )
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), m.as_str()),
        ("ValidationException", "More than one constraint supplied")
    );
    // An operation outside the set: the list is quoted whole.
    let (code, m) = message(
        c.create_grant()
            .key_id(key_id)
            .grantee_principal("arn:aws:iam::111122223333:user/bob")
            .operations(GrantOperation::Decrypt)
            .operations(GrantOperation::from("ListGrants"))
            .send()
            .await,
    );
    assert_eq!(code, "ValidationException");
    assert!(
        m.starts_with(
            "1 validation error detected: Value '[Decrypt, ListGrants]' at 'operations' failed \
             to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum \
             value set: ["
        ) && m.ends_with("]]"),
        "{m}"
    );
    // A tag key out of bounds.
    let (code, m) = message(
        c.untag_resource()
            .key_id(key_id)
            .tag_keys("ok")
            .tag_keys("")
            .send()
            .await,
    );
    assert_eq!(
        (code.as_str(), m.as_str()),
        (
            "ValidationException",
            "1 validation error detected: Value '[ok, ]' at 'tagKeys' failed to satisfy \
             constraint: Member must satisfy constraint: [Member must have length less than or \
             equal to 128, Member must have length greater than or equal to 1]"
        )
    );
    // Limit: the model's 1 to 1,000; ListAliases answers at most 100 of them (three keys,
    // as a key may have 50 aliases).
    let mut keys = vec![key_id.to_string()];
    for _ in 0..2 {
        let k = c.create_key().send().await.unwrap().key_metadata.unwrap();
        keys.push(k.key_id().to_string());
    }
    for i in 0..101 {
        c.create_alias()
            .alias_name(format!("alias/page-{i:03}"))
            .target_key_id(&keys[i / 40])
            .send()
            .await
            .unwrap();
    }
    let page = c.list_aliases().limit(1000).send().await.unwrap();
    assert_eq!(page.aliases().len(), 100);
    assert!(page.truncated());
    let rest = c
        .list_aliases()
        .limit(1000)
        .marker(page.next_marker().unwrap())
        .send()
        .await
        .unwrap();
    assert!(!rest.truncated());
    let named = |l: &[aws_sdk_kms::types::AliasListEntry]| {
        l.iter()
            .filter(|a| a.alias_name().unwrap().starts_with("alias/page-"))
            .count()
    };
    assert_eq!(named(page.aliases()) + named(rest.aliases()), 101);
    let (code, m) = message(c.list_aliases().limit(1001).send().await);
    assert_eq!(
        (code.as_str(), m.as_str()),
        (
            "ValidationException",
            "1 validation error detected: Value '1001' at 'limit' failed to satisfy constraint: \
             Member must have value less than or equal to 1000"
        )
    );
}
