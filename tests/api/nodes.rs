//! Two server instances on one database: a change made through one is enforced by the other
//! within a second (Postgres NOTIFY drops the other's caches).

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::GrantOperation;
use std::time::{Duration, Instant};

fn pt() -> Blob {
    Blob::new(b"two nodes".to_vec())
}

/// Poll `f` until it yields `want` as its error code, for at most one second.
async fn within_a_second<F, Fut>(what: &str, want: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let start = Instant::now();
    loop {
        if f().await.as_deref() == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{what}: not enforced on the other node within a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_on_one_node_are_enforced_by_the_other_within_a_second() {
    let s = Server::start().await;
    let second = tokio::task::block_in_place(|| s.second_node());
    let one = s.client();
    let (carol_arn, carol_id, carol_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "carol", None));
    let carol_two = s.client_of(&second, &carol_id, &carol_secret);
    let two = s.client_of(&second, &s.access_key_id, &s.secret);

    let key = new_key(&one).await;
    let grant = one
        .create_grant()
        .key_id(&key)
        .grantee_principal(&carol_arn)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    // Warm the second node's caches.
    two.encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    carol_two
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap();

    // A revoked grant.
    one.revoke_grant()
        .key_id(&key)
        .grant_id(grant.grant_id.unwrap())
        .send()
        .await
        .unwrap();
    within_a_second("revoked grant", "AccessDeniedException", || async {
        carol_two
            .encrypt()
            .key_id(&key)
            .plaintext(pt())
            .send()
            .await
            .err()
            .and_then(|e| aws_sdk_kms::error::ProvideErrorMetadata::code(&e).map(str::to_string))
    })
    .await;

    // A disabled key.
    one.disable_key().key_id(&key).send().await.unwrap();
    within_a_second("disabled key", "DisabledException", || async {
        two.encrypt()
            .key_id(&key)
            .plaintext(pt())
            .send()
            .await
            .err()
            .and_then(|e| aws_sdk_kms::error::ProvideErrorMetadata::code(&e).map(str::to_string))
    })
    .await;
    one.enable_key().key_id(&key).send().await.unwrap();
    within_a_second("enabled key", "ok", || async {
        two.encrypt()
            .key_id(&key)
            .plaintext(pt())
            .send()
            .await
            .ok()
            .map(|_| "ok".to_string())
    })
    .await;

    // A changed key policy: an explicit deny for the administrator's Encrypt.
    let deny = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},
        {"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::123456789012:user/admin"},"Action":"kms:Encrypt","Resource":"*"}]}"#;
    one.put_key_policy()
        .key_id(&key)
        .policy(deny)
        .send()
        .await
        .unwrap();
    within_a_second("changed key policy", "AccessDeniedException", || async {
        two.encrypt()
            .key_id(&key)
            .plaintext(pt())
            .send()
            .await
            .err()
            .and_then(|e| aws_sdk_kms::error::ProvideErrorMetadata::code(&e).map(str::to_string))
    })
    .await;
}

/// The SQL writer stops the change notifications (disables the triggers that send them), and
/// a key disabled and a grant revoked on one node went on working on the other for as long as
/// it kept them cached: until it restarted. Now a cached row is read again once it is
/// `cache.max_age_secs` old (here 2): the other node refuses both within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_other_node_even_when_the_notifications_are_stopped() {
    let s = Server::start_with(&[("KMS_CACHE__MAX_AGE_SECS", "2")]).await;
    let second = tokio::task::block_in_place(|| s.second_node());
    let one = s.client();
    let (carol_arn, carol_id, carol_secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret("123456789012", "carol", None));
    let carol_two = s.client_of(&second, &carol_id, &carol_secret);
    let two = s.client_of(&second, &s.access_key_id, &s.secret);
    let (disabled, granted) = (new_key(&one).await, new_key(&one).await);
    let grant = one
        .create_grant()
        .key_id(&granted)
        .grantee_principal(&carol_arn)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    let encrypt = |c: &aws_sdk_kms::Client, key: &str| {
        let (c, key) = (c.clone(), key.to_string());
        async move {
            c.encrypt()
                .key_id(key)
                .plaintext(pt())
                .send()
                .await
                .err()
                .and_then(|e| {
                    aws_sdk_kms::error::ProvideErrorMetadata::code(&e).map(str::to_string)
                })
        }
    };
    assert_eq!(encrypt(&two, &disabled).await, None);
    assert_eq!(encrypt(&carol_two, &granted).await, None);
    let stop = if sqlite() {
        [
            "DROP TRIGGER keys_update_change",
            "DROP TRIGGER grants_delete_change",
        ]
    } else {
        [
            "ALTER TABLE keys DISABLE TRIGGER USER",
            "ALTER TABLE grants DISABLE TRIGGER USER",
        ]
    };
    for sql in stop {
        s.db.execute(sql).await;
    }
    one.disable_key().key_id(&disabled).send().await.unwrap();
    one.revoke_grant()
        .key_id(&granted)
        .grant_id(grant.grant_id.unwrap())
        .send()
        .await
        .unwrap();
    let start = Instant::now();
    loop {
        let (d, g) = (
            encrypt(&two, &disabled).await,
            encrypt(&carol_two, &granted).await,
        );
        if d.as_deref() == Some("DisabledException")
            && g.as_deref() == Some("AccessDeniedException")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "still served by the other node: {d:?} {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
