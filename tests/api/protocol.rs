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
