//! Grants through the AWS SDK.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantConstraints, GrantOperation};

fn pt() -> Blob {
    Blob::new(b"granted".to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_allowed_only_by_a_grant_until_it_is_revoked() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let (carol_arn, _, carol) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "carol", None));
    assert_eq!(
        code(carol.encrypt().key_id(&key).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    let g = root
        .create_grant()
        .key_id(&key)
        .grantee_principal(&carol_arn)
        .operations(GrantOperation::Encrypt)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let (grant_id, token) = (g.grant_id.unwrap(), g.grant_token.unwrap());
    assert_eq!(grant_id.len(), 64);
    // With the token at once, and without it.
    let blob = carol
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .grant_tokens(&token)
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    carol
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    // Only the granted operations.
    assert_eq!(
        code(
            carol
                .generate_data_key()
                .key_id(&key)
                .number_of_bytes(16)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(carol.describe_key().key_id(&key).send().await),
        "AccessDeniedException"
    );
    let listed = root.list_grants().key_id(&key).send().await.unwrap();
    assert_eq!(listed.grants().len(), 1);
    let lg = &listed.grants()[0];
    assert_eq!(lg.grantee_principal.as_deref(), Some(carol_arn.as_str()));
    assert_eq!(
        lg.issuing_account.as_deref(),
        Some("arn:aws:iam::123456789012:root")
    );
    assert_eq!(lg.operations().len(), 2);
    // Revoked: stops at once.
    root.revoke_grant()
        .key_id(&key)
        .grant_id(&grant_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(carol.decrypt().ciphertext_blob(blob).send().await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            carol
                .encrypt()
                .key_id(&key)
                .plaintext(pt())
                .grant_tokens(&token)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert!(root
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .grants()
        .is_empty());
    assert_eq!(
        code(
            root.revoke_grant()
                .key_id(&key)
                .grant_id(&grant_id)
                .send()
                .await
        ),
        "NotFoundException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_constraints_tokens_names_and_retirement() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let (carol_arn, _, carol) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "carol", None));
    let (dave_arn, _, dave) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "dave", None));
    let subset = GrantConstraints::builder()
        .encryption_context_subset("app", "web")
        .build();
    let create = || {
        root.create_grant()
            .key_id(&key)
            .grantee_principal(&carol_arn)
            .retiring_principal(&dave_arn)
            .operations(GrantOperation::Encrypt)
            .constraints(subset.clone())
            .name("carol-web")
    };
    let g1 = create().send().await.unwrap();
    let g2 = create().send().await.unwrap();
    assert_eq!(
        g1.grant_id, g2.grant_id,
        "same Name and parameters: the same grant"
    );
    carol
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .encryption_context("app", "web")
        .encryption_context("x", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            carol
                .encrypt()
                .key_id(&key)
                .plaintext(pt())
                .encryption_context("app", "db")
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(carol.encrypt().key_id(&key).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // EncryptionContextEquals needs the exact context.
    let eq = GrantConstraints::builder()
        .encryption_context_equals("app", "api")
        .build();
    root.create_grant()
        .key_id(&key)
        .grantee_principal(&carol_arn)
        .operations(GrantOperation::Encrypt)
        .constraints(eq)
        .send()
        .await
        .unwrap();
    carol
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .encryption_context("app", "api")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            carol
                .encrypt()
                .key_id(&key)
                .plaintext(pt())
                .encryption_context("app", "api")
                .encryption_context("x", "1")
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    // The retiring principal lists and retires it (dave has no policy at all).
    let retirable = dave
        .list_retirable_grants()
        .retiring_principal(&dave_arn)
        .send()
        .await;
    assert_eq!(
        code(retirable),
        "AccessDeniedException",
        "ListRetirableGrants needs an identity policy"
    );
    dave.retire_grant()
        .key_id(&key)
        .grant_id(g1.grant_id.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            carol
                .encrypt()
                .key_id(&key)
                .plaintext(pt())
                .encryption_context("app", "web")
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    // Retire by token.
    let g3 = root
        .create_grant()
        .key_id(&key)
        .grantee_principal(&carol_arn)
        .retiring_principal(&dave_arn)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    dave.retire_grant()
        .grant_token(g3.grant_token.unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        root.list_grants()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .grants()
            .len(),
        1
    );
    // Tokens that were not issued here are refused.
    assert_eq!(
        code(
            carol
                .encrypt()
                .key_id(&key)
                .plaintext(pt())
                .grant_tokens("bm90LWEtdG9rZW4")
                .send()
                .await
        ),
        "InvalidGrantTokenException"
    );
    // One character changed in the middle of a real token (inside its MAC).
    let mut forged: Vec<char> = g1.grant_token.clone().unwrap().chars().collect();
    let i = forged.len() - 20;
    forged[i] = if forged[i] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    assert_eq!(
        code(
            carol
                .encrypt()
                .key_id(&key)
                .plaintext(pt())
                .grant_tokens(forged)
                .send()
                .await
        ),
        "InvalidGrantTokenException"
    );
}

#[tokio::test]
async fn create_grant_refuses_what_the_key_cannot_do() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let grantee = "arn:aws:iam::123456789012:user/carol";
    let (c, m) = message(
        root.create_grant()
            .key_id(&key)
            .grantee_principal(grantee)
            .operations(GrantOperation::Sign)
            .send()
            .await,
    );
    assert_eq!(c, "ValidationException");
    assert!(m.contains("Sign"), "{m}");
    assert_eq!(
        code(
            root.create_grant()
                .key_id(&key)
                .grantee_principal("not a principal")
                .operations(GrantOperation::Encrypt)
                .send()
                .await
        ),
        "ValidationException"
    );
    assert_eq!(
        code(
            root.create_grant()
                .key_id(&key)
                .grantee_principal(grantee)
                .operations(GrantOperation::DescribeKey)
                .constraints(
                    GrantConstraints::builder()
                        .encryption_context_subset("a", "b")
                        .build()
                )
                .send()
                .await
        ),
        "ValidationException"
    );
    assert_eq!(
        code(
            root.create_grant()
                .key_id(&key)
                .grantee_principal(grantee)
                .send()
                .await
        ),
        "ValidationException"
    );
    assert_eq!(
        code(
            root.create_grant()
                .key_id(uuid::Uuid::new_v4().to_string())
                .grantee_principal(grantee)
                .operations(GrantOperation::Encrypt)
                .send()
                .await
        ),
        "NotFoundException"
    );
    assert_eq!(
        code(
            root.create_grant()
                .key_id(&key)
                .grantee_principal(grantee)
                .operations(GrantOperation::Encrypt)
                .dry_run(true)
                .send()
                .await
        ),
        "DryRunOperationException"
    );
    assert!(root
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .grants()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_grant_conditions_limit_what_may_be_granted() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:CreateGrant","Resource":"*",
        "Condition":{"ForAllValues:StringEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]},
                     "Bool":{"kms:GrantIsForAWSResource":"false"},
                     "ArnLike":{"kms:GranteePrincipal":"arn:aws:iam::123456789012:user/app-*"}}}]}"#;
    let (_, _, ops) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "ops", Some(policy)));
    ops.create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::123456789012:user/app-web")
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            ops.create_grant()
                .key_id(&key)
                .grantee_principal("arn:aws:iam::123456789012:user/app-web")
                .operations(GrantOperation::Encrypt)
                .operations(GrantOperation::ReEncryptFrom)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            ops.create_grant()
                .key_id(&key)
                .grantee_principal("arn:aws:iam::123456789012:user/intruder")
                .operations(GrantOperation::Decrypt)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        root.list_grants()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .grants()
            .len(),
        1
    );
}
