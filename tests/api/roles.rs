//! Roles assumed through the STS-compatible AssumeRole, with the real aws-sdk-sts.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;

pub(crate) fn sts(s: &Server, id: &str, secret: &str) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new(REGION))
        .endpoint_url(&s.endpoint)
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            id, secret, None, None, "test",
        ))
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

/// An STS client signing with a role session's credentials (role chaining).
pub(crate) fn sts_with_session(
    s: &Server,
    c: &aws_sdk_sts::types::Credentials,
) -> aws_sdk_sts::Client {
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new(REGION))
        .endpoint_url(&s.endpoint)
        .credentials_provider(aws_sdk_sts::config::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            Some(c.session_token.clone()),
            None,
            "sts",
        ))
        .retry_config(aws_sdk_sts::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sts::Client::from_conf(conf)
}

pub(crate) fn kms_with_session(
    s: &Server,
    c: &aws_sdk_sts::types::Credentials,
) -> aws_sdk_kms::Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new(REGION))
        .endpoint_url(&s.endpoint)
        .credentials_provider(aws_sdk_kms::config::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            Some(c.session_token.clone()),
            None,
            "sts",
        ))
        .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assumed_role_works_and_then_expires() {
    let s = Server::start_with(&[("KMS_STS_MIN_SESSION_SECONDS", "1")]).await;
    let root = s.client();
    let key = new_key(&root).await;
    let (alice_arn, alice_id, alice_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "alice", None));
    let (_, bob_id, bob_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "bob", None));
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"sts:AssumeRole","Resource":"*"}}]}}"#
    );
    let role = tokio::task::block_in_place(|| s.create_role("123456789012", "app", &trust));
    tokio::task::block_in_place(|| s.put_user_policy(&role, "use", super::access::ALL));

    // Bob is not trusted.
    let e = sts(&s, &bob_id, &bob_secret)
        .assume_role()
        .role_arn(&role)
        .role_session_name("bob-1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&e),
        Some("AccessDenied"),
        "{e:?}"
    );

    let out = sts(&s, &alice_id, &alice_secret)
        .assume_role()
        .role_arn(&role)
        .role_session_name("web-1")
        .duration_seconds(3)
        .send()
        .await
        .unwrap();
    let who = sts(&s, &alice_id, &alice_secret)
        .get_caller_identity()
        .send()
        .await
        .unwrap();
    assert_eq!(who.arn.as_deref(), Some(alice_arn.as_str()));
    assert_eq!(who.account.as_deref(), Some("123456789012"));
    let user = out.assumed_role_user.unwrap();
    assert_eq!(user.arn, "arn:aws:sts::123456789012:assumed-role/app/web-1");
    let creds = out.credentials.unwrap();
    assert!(creds.access_key_id.starts_with("ASIA"));
    let session = kms_with_session(&s, &creds);
    let blob = session
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"as a role".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    session
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap();

    // Without its session token, or with another, the session key is refused.
    let no_token = s.client_with(&creds.access_key_id, &creds.secret_access_key, REGION, None);
    assert_eq!(
        code(no_token.list_keys().send().await),
        "UnrecognizedClientException"
    );
    // After expiry.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let (c, m) = message(session.list_keys().send().await);
    assert_eq!(c, "ExpiredTokenException", "{m}");

    // Validation errors read like STS's.
    let e = sts(&s, &alice_id, &alice_secret)
        .assume_role()
        .role_arn(&role)
        .role_session_name("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&e),
        Some("ValidationError"),
        "{e:?}"
    );
    let e = sts(&s, &alice_id, &alice_secret)
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/nope")
        .role_session_name("web-2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&e),
        Some("AccessDenied"),
        "{e:?}"
    );
}

/// The attack: a key policy denies every session of the contractors' roles by
/// `ArnLike aws:PrincipalArn arn:aws:iam::<account>:role/contractor-*`, as AWS recommends. A
/// session of such a role is known to policies by its role's ARN (IAM's aws:PrincipalArn), so
/// the deny holds; with the session's own ARN there, it never matched and the session used the
/// key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_on_the_role_arn_holds_for_its_sessions() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},
        {"Effect":"Deny","Principal":"*","Action":"kms:*","Resource":"*","Condition":{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:role/contractor-*"}}}]}"#;
    root.put_key_policy()
        .key_id(&key)
        .policy(policy)
        .send()
        .await
        .unwrap();
    let (alice_arn, alice_id, alice_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "alice", None));
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"sts:AssumeRole","Resource":"*"}}]}}"#
    );
    for (role_name, refused) in [("contractor-7", true), ("staff", false)] {
        let role = tokio::task::block_in_place(|| s.create_role("123456789012", role_name, &trust));
        tokio::task::block_in_place(|| s.put_user_policy(&role, "use", super::access::ALL));
        let creds = sts(&s, &alice_id, &alice_secret)
            .assume_role()
            .role_arn(&role)
            .role_session_name("s-1")
            .send()
            .await
            .unwrap()
            .credentials
            .unwrap();
        let session = kms_with_session(&s, &creds);
        let got = session
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await;
        if refused {
            let (c, m) = message(got);
            assert_eq!(c, "AccessDeniedException", "{m}");
            assert!(m.contains("explicit deny"), "{m}");
        } else {
            got.unwrap();
        }
    }
}

/// Role chaining: a role's session that assumes a role gets at most an hour, as from STS
/// ("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role
/// chaining."). Before, a stolen session of minutes renewed itself for twelve hours at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_assumed_by_role_chaining_gets_at_most_an_hour() {
    let s = Server::start().await;
    let (alice_arn, alice_id, alice_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "alice", None));
    let trusting = |who: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{who}"}},"Action":"sts:AssumeRole","Resource":"*"}}]}}"#
        )
    };
    let first = tokio::task::block_in_place(|| {
        s.create_role("123456789012", "first", &trusting(&alice_arn))
    });
    tokio::task::block_in_place(|| {
        s.put_user_policy(
            &first,
            "chain",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*"}]}"#,
        )
    });
    let second =
        tokio::task::block_in_place(|| s.create_role("123456789012", "second", &trusting(&first)));
    // A user may ask for twelve hours.
    let out = sts(&s, &alice_id, &alice_secret)
        .assume_role()
        .role_arn(&first)
        .role_session_name("hop-1")
        .duration_seconds(43200)
        .send()
        .await
        .unwrap();
    let session = sts_with_session(&s, &out.credentials.unwrap());
    // Its session may not.
    let e = session
        .assume_role()
        .role_arn(&second)
        .role_session_name("hop-2")
        .duration_seconds(3601)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&e),
        Some("ValidationError"),
        "{e:?}"
    );
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::message(&e),
        Some("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
    );
    // An hour, or the default, it may.
    for duration in [Some(3600), None] {
        let out = session
            .assume_role()
            .role_arn(&second)
            .role_session_name("hop-2")
            .set_duration_seconds(duration)
            .send()
            .await
            .unwrap();
        let expires = out.credentials.unwrap().expiration;
        let left = expires.secs() - chrono::Utc::now().timestamp();
        assert!((3500..=3600).contains(&left), "{left}");
    }
}
