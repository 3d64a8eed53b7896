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
    let create = |spec: KeySpec, usage: KeyUsageType| {
        let c = c.clone();
        async move {
            c.create_key()
                .key_spec(spec)
                .key_usage(usage)
                .send()
                .await
                .unwrap()
                .key_metadata
                .unwrap()
                .key_id
        }
    };
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
            serde_json::json!({"CiphertextBlob": b64(&[1u8; 64])}),
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
