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
    let key = new_key(&root).await;
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
    // A grant created without a name lists an empty one, as AWS lists it ("Name": "").
    assert_eq!(lg.name.as_deref(), Some(""));
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
    // A grant id that is not one: InvalidGrantIdException, wherever a grant id is taken.
    assert_eq!(
        code(
            root.revoke_grant()
                .key_id(&key)
                .grant_id("not-a-grant")
                .send()
                .await
        ),
        "InvalidGrantIdException"
    );
    assert_eq!(
        code(
            root.retire_grant()
                .key_id(&key)
                .grant_id(grant_id.to_uppercase())
                .send()
                .await
        ),
        "InvalidGrantIdException"
    );
    assert_eq!(
        code(root.list_grants().key_id(&key).grant_id("x").send().await),
        "InvalidGrantIdException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_constraints_tokens_names_and_retirement() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
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
    // A dry run answers as the real call would: refused for carol (the grantee, without
    // RetireGrant), "would succeed" for dave, and nothing is retired.
    let dry = |c: aws_sdk_kms::Client, grant: String| {
        let key = key.clone();
        async move {
            c.retire_grant()
                .key_id(key)
                .grant_id(grant)
                .dry_run(true)
                .send()
                .await
        }
    };
    let g1_id = g1.grant_id.clone().unwrap();
    assert_eq!(
        code(dry(carol.clone(), g1_id.clone()).await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(dry(dave.clone(), "0".repeat(64)).await),
        "NotFoundException"
    );
    assert_eq!(
        code(dry(dave.clone(), g1_id.clone()).await),
        "DryRunOperationException"
    );
    carol
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .encryption_context("app", "web")
        .send()
        .await
        .unwrap();
    dave.retire_grant()
        .key_id(&key)
        .grant_id(g1_id)
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

/// AWS's bounds on a grant constraint: at most 8 encryption context pairs, each key and value
/// at most 384 characters. Every call on the key reads its grants' constraints, so without
/// them one grantor could make each call on the key as costly as it liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_grant_refuses_constraints_beyond_awss_bounds() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (grantee, _, _) = tokio::task::block_in_place(|| s.new_user("123456789012", "dave", None));
    let grant = |pairs: Vec<(String, String)>, subset: bool| {
        let mut c = aws_sdk_kms::types::GrantConstraints::builder();
        for (k, v) in pairs {
            c = if subset {
                c.encryption_context_subset(k, v)
            } else {
                c.encryption_context_equals(k, v)
            };
        }
        root.create_grant()
            .key_id(&key)
            .grantee_principal(&grantee)
            .operations(GrantOperation::Encrypt)
            .constraints(c.build())
            .send()
    };
    let pairs = |n: usize, len: usize| -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), "v".repeat(len))).collect()
    };
    for subset in [false, true] {
        grant(pairs(8, 384), subset).await.unwrap();
        let (c, m) = message(grant(pairs(9, 1), subset).await);
        assert_eq!(c, "ValidationException", "{m}");
        assert!(m.contains("up to 8"), "{m}");
        let (c, m) = message(grant(pairs(1, 385), subset).await);
        assert_eq!(c, "ValidationException", "{m}");
        assert!(m.contains("384"), "{m}");
        let long_key = vec![("k".repeat(385), "v".into())];
        assert_eq!(
            message(grant(long_key, subset).await).0,
            "ValidationException"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_grant_refuses_what_the_key_cannot_do() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (grantee, _, _) = tokio::task::block_in_place(|| s.new_user("123456789012", "carol", None));
    let grantee = grantee.as_str();
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
    // A grant of nothing but CreateGrant (recorded).
    let (c, m) = message(
        root.create_grant()
            .key_id(&key)
            .grantee_principal(grantee)
            .operations(GrantOperation::CreateGrant)
            .send()
            .await,
    );
    assert_eq!(
        (c.as_str(), m.as_str()),
        (
            "ValidationException",
            "Grants must not contain only the CreateGrant operation."
        )
    );
    // A principal and a name outside the model's patterns: one answer counts both, as AWS's
    // model validation reports every failed member at once.
    let (c, m) = message(
        root.create_grant()
            .key_id(&key)
            .grantee_principal("not a principal!")
            .name("not a name!")
            .operations(GrantOperation::Encrypt)
            .send()
            .await,
    );
    assert_eq!(c, "ValidationException");
    assert!(m.starts_with("2 validation errors detected: "), "{m}");
    assert!(
        m.contains("Value 'not a principal!' at 'granteePrincipal' failed"),
        "{m}"
    );
    assert!(
        m.contains(
            "Value 'not a name!' at 'name' failed to satisfy constraint: Member must satisfy \
             regular expression pattern: ^[a-zA-Z0-9:/_-]+$"
        ),
        "{m}"
    );
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
    let key = new_key(&root).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:CreateGrant","Resource":"*",
        "Condition":{"ForAllValues:StringEquals":{"kms:GrantOperations":["Encrypt","Decrypt"]},
                     "Bool":{"kms:GrantIsForAWSResource":"false"},
                     "ArnLike":{"kms:GranteePrincipal":"arn:aws:iam::123456789012:user/app-*"}}}]}"#;
    let (_, _, ops) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "ops", Some(policy)));
    for name in ["app-web", "intruder"] {
        tokio::task::block_in_place(|| s.new_user("123456789012", name, None));
    }
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

/// Each key type takes AWS's grant operations for it: a signing key's grantee signs, an HMAC
/// key's grantee makes MACs, a key-agreement key's grantee reads its public key; operations the
/// key cannot do are refused with `ValidationException`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_follow_the_key_type() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType, MacAlgorithmSpec, SigningAlgorithmSpec};
    let s = Server::start().await;
    let root = s.client();
    let (carol_arn, _, carol) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "carol", None));
    let key = |spec: KeySpec, usage: KeyUsageType| {
        let root = root.clone();
        async move { new_key_with(&root, spec, usage).await.key_id }
    };
    let grant = |key: String, ops: Vec<GrantOperation>| {
        let (root, carol_arn) = (root.clone(), carol_arn.clone());
        async move {
            root.create_grant()
                .key_id(key)
                .grantee_principal(carol_arn)
                .set_operations(Some(ops))
                .send()
                .await
        }
    };
    let signing = key(KeySpec::EccNistP256, KeyUsageType::SignVerify).await;
    let hmac = key(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac).await;
    let agreement = key(KeySpec::EccNistP384, KeyUsageType::KeyAgreement).await;
    let rsa = key(KeySpec::Rsa2048, KeyUsageType::EncryptDecrypt).await;
    let symmetric = key(KeySpec::SymmetricDefault, KeyUsageType::EncryptDecrypt).await;

    let token = grant(
        signing.clone(),
        vec![GrantOperation::Sign, GrantOperation::GetPublicKey],
    )
    .await
    .unwrap()
    .grant_token
    .unwrap();
    carol
        .sign()
        .key_id(&signing)
        .message(pt())
        .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
        .grant_tokens(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            carol
                .verify()
                .key_id(&signing)
                .message(pt())
                .signature(Blob::new(vec![0x30, 0]))
                .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                .grant_tokens(&token)
                .send()
                .await
        ),
        "AccessDeniedException",
        "only the granted operations"
    );
    let token = grant(hmac.clone(), vec![GrantOperation::GenerateMac])
        .await
        .unwrap()
        .grant_token
        .unwrap();
    carol
        .generate_mac()
        .key_id(&hmac)
        .message(pt())
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .grant_tokens(&token)
        .send()
        .await
        .unwrap();
    let token = grant(
        agreement.clone(),
        vec![
            GrantOperation::DeriveSharedSecret,
            GrantOperation::GetPublicKey,
        ],
    )
    .await
    .unwrap()
    .grant_token
    .unwrap();
    carol
        .get_public_key()
        .key_id(&agreement)
        .grant_tokens(&token)
        .send()
        .await
        .unwrap();
    grant(
        rsa.clone(),
        vec![
            GrantOperation::Encrypt,
            GrantOperation::Decrypt,
            GrantOperation::GetPublicKey,
        ],
    )
    .await
    .unwrap();

    // Encryption context constraints are for symmetric encryption keys only.
    assert_eq!(
        code(
            root.create_grant()
                .key_id(&rsa)
                .grantee_principal(&carol_arn)
                .operations(GrantOperation::Decrypt)
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
    // What each key cannot do.
    for (key, op) in [
        (&hmac, GrantOperation::Encrypt),
        (&hmac, GrantOperation::Sign),
        (&signing, GrantOperation::Decrypt),
        (&signing, GrantOperation::GenerateMac),
        (&agreement, GrantOperation::Sign),
        (&rsa, GrantOperation::GenerateDataKey),
        (&rsa, GrantOperation::Sign),
        (&symmetric, GrantOperation::GetPublicKey),
        (&symmetric, GrantOperation::DeriveSharedSecret),
    ] {
        let (c, m) = message(grant(key.clone(), vec![op.clone()]).await);
        assert_eq!(c, "ValidationException", "{op:?} on {key}: {m}");
        assert!(m.contains(op.as_str()), "{m}");
    }
}

/// AWS's grants for AWS service principals (`GranteeServicePrincipal`,
/// `RetiringServicePrincipal`, and the `ListGrants` / `ListRetirableGrants` filters on them) need
/// AWS services this service does not have: each is refused with a clear error, never ignored
/// (an ignored grantee would create a grant for someone else, an ignored filter list other
/// grants), and nothing is created.
#[tokio::test]
async fn grants_for_aws_service_principals_are_refused_not_ignored() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (c, m) = message(
        root.create_grant()
            .key_id(&key)
            .grantee_service_principal("rds.amazonaws.com")
            .operations(GrantOperation::Decrypt)
            .send()
            .await,
    );
    assert_eq!(c, "UnsupportedOperationException");
    assert!(m.contains("GranteeServicePrincipal"), "{m}");
    let (c, m) = message(
        root.create_grant()
            .key_id(&key)
            .grantee_principal("arn:aws:iam::123456789012:user/carol")
            .retiring_service_principal("rds.amazonaws.com")
            .operations(GrantOperation::Decrypt)
            .send()
            .await,
    );
    assert_eq!(c, "UnsupportedOperationException");
    assert!(m.contains("RetiringServicePrincipal"), "{m}");
    let grants = root.list_grants().key_id(&key).send().await.unwrap();
    assert!(grants.grants().is_empty(), "{grants:?}");
    let (c, m) = message(
        root.list_grants()
            .key_id(&key)
            .grantee_service_principal("rds.amazonaws.com")
            .send()
            .await,
    );
    assert_eq!(c, "UnsupportedOperationException");
    assert!(m.contains("GranteeServicePrincipal"), "{m}");
    let (c, m) = message(
        root.list_retirable_grants()
            .retiring_service_principal("rds.amazonaws.com")
            .send()
            .await,
    );
    assert_eq!(c, "UnsupportedOperationException");
    assert!(m.contains("RetiringServicePrincipal"), "{m}");
}

/// A grant names a principal that exists, as AWS checks (recorded): a session of a role that
/// exists (never issued too) and a federated user of the caller's account are taken; a
/// session of a missing role, a federated user of an account that does not exist and a user
/// that does not exist are "ARN does not refer to a valid principal: <arn>", an assumed-role
/// ARN with a path "ARN is not valid: <arn>" (InvalidArnException), and no grant is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_names_a_principal_that_exists() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"sts:AssumeRole","Resource":"*"}]}"#;
    tokio::task::block_in_place(|| s.create_role("123456789012", "probe", trust));
    let grant = |p: &str| {
        c.create_grant()
            .key_id(&key)
            .grantee_principal(p)
            .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
            .send()
    };
    for ok in [
        "arn:aws:sts::123456789012:assumed-role/probe/never-issued",
        "arn:aws:sts::123456789012:federated-user/unissued",
        "arn:aws:iam::123456789012:role/probe",
        "arn:aws:iam::123456789012:root",
    ] {
        grant(ok).await.unwrap_or_else(|e| panic!("{ok}: {e:?}"));
    }
    for (bad, why) in [
        (
            "arn:aws:sts::123456789012:assumed-role/missing/target",
            "ARN does not refer to a valid principal",
        ),
        (
            "arn:aws:sts::999999999999:federated-user/unissued",
            "ARN does not refer to a valid principal",
        ),
        (
            "arn:aws:iam::123456789012:user/nobody",
            "ARN does not refer to a valid principal",
        ),
        (
            "arn:aws:iam::999999999999:root",
            "ARN does not refer to a valid principal",
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/path/probe/target",
            "ARN is not valid",
        ),
    ] {
        assert_eq!(
            message(grant(bad).await),
            ("InvalidArnException".to_string(), format!("{why}: {bad}")),
        );
    }
    // A unique id, not an ARN (recorded: AWS names the member).
    assert_eq!(
        message(grant("AROA00000000000000100:future").await),
        (
            "InvalidArnException".to_string(),
            "GranteePrincipal does not refer to a valid principal.".to_string()
        ),
    );
    // The filters of ListGrants and ListRetirableGrants name a principal too (recorded).
    let nobody = "arn:aws:iam::123456789012:user/nobody";
    let unique_id = "AROA00000000000000100:future";
    let listed = |p: &'static str| c.list_grants().key_id(&key).grantee_principal(p).send();
    assert_eq!(
        message(listed(nobody).await),
        (
            "InvalidArnException".to_string(),
            format!("ARN does not refer to a valid principal: {nobody}")
        ),
    );
    assert_eq!(
        message(listed(unique_id).await),
        (
            "InvalidArnException".to_string(),
            "Input does not refer to a valid principal".to_string()
        ),
    );
    let probe = listed("arn:aws:iam::123456789012:role/probe")
        .await
        .unwrap();
    assert_eq!(probe.grants().len(), 1);
    let retirable = |p: &'static str| c.list_retirable_grants().retiring_principal(p).send();
    assert_eq!(
        message(retirable(nobody).await),
        (
            "InvalidArnException".to_string(),
            format!("ARN does not refer to a valid principal: {nobody}")
        ),
    );
    assert_eq!(
        message(retirable(unique_id).await),
        (
            "NotFoundException".to_string(),
            format!("Retiring principal {unique_id} could not be found")
        ),
    );
    // Whether a principal exists is told only to a caller that may create the grant.
    let (_, _, nosy) = tokio::task::block_in_place(|| s.new_user("123456789012", "nosy", None));
    assert_eq!(
        code(
            nosy.create_grant()
                .key_id(&key)
                .grantee_principal("arn:aws:iam::123456789012:user/nobody")
                .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    let grants = c
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .grants
        .unwrap();
    assert_eq!(grants.len(), 4);
}

/// In a CreateGrant, `kms:EncryptionContext:<key>` and `kms:EncryptionContextKeys` are the
/// pairs of the grant's constraint, as AWS sets them there. Before, neither was set: a Deny on
/// one tenant's context never applied to a grant for that tenant, and a policy requiring every
/// grant to be constrained (`Null` on the keys) refused every grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_context_condition_keys_apply_to_a_grants_constraint() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kms:*","Resource":"*"},
        {"Effect":"Deny","Action":"kms:CreateGrant","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"acme"}}},
        {"Effect":"Deny","Action":"kms:CreateGrant","Resource":"*","Condition":{"Null":{"kms:EncryptionContextKeys":"true"}}}]}"#;
    let (_, _, user) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "granter", Some(policy)));
    let grant = |constraints: Option<GrantConstraints>| {
        user.create_grant()
            .key_id(&key)
            .grantee_principal("arn:aws:iam::123456789012:root")
            .operations(GrantOperation::Decrypt)
            .set_constraints(constraints)
            .send()
    };
    let acme = GrantConstraints::builder()
        .encryption_context_subset("tenant", "acme")
        .build();
    assert_eq!(code(grant(Some(acme)).await), "AccessDeniedException");
    assert_eq!(code(grant(None).await), "AccessDeniedException");
    let other = GrantConstraints::builder()
        .encryption_context_equals("tenant", "other")
        .build();
    grant(Some(other)).await.unwrap();
}

/// Who may retire a grant, as AWS has it: the grant decides, the account that owns the key may
/// always, and "the kms:RetireGrant permission is not effective in a key policy" — but "to
/// deny permission to retire a grant, you can use a Deny action with the kms:RetireGrant
/// permission in your IAM policies". Before, a grant's retiring principal retired it through
/// an IAM Deny, and a principal that only the key policy named retired every grant of the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_grant_the_account_and_iam_policies_decide_who_retires_a_grant() {
    const ACCOUNT: &str = "123456789012";
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:RetireGrant","Resource":"*"}]}"#;
    let (bob_arn, _, bob) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "bob", Some(deny)));
    let (carol_arn, _, carol) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "carol", None));
    let (dave_arn, _, dave) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "dave", None));
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Effect":"Allow","Principal":{{"AWS":"{dave_arn}"}},"Action":["kms:RetireGrant","kms:ListGrants"],"Resource":"*"}}]}}"#
    );
    root.put_key_policy()
        .key_id(&key)
        .policy(policy)
        .send()
        .await
        .unwrap();
    let grant = |retiring: &str| {
        root.create_grant()
            .key_id(&key)
            .grantee_principal(&carol_arn)
            .retiring_principal(retiring)
            .operations(GrantOperation::Decrypt)
            .send()
    };
    let retire =
        |who: &aws_sdk_kms::Client, id: &str| who.retire_grant().key_id(&key).grant_id(id).send();
    let by_bob = grant(&bob_arn).await.unwrap().grant_id.unwrap();
    assert_eq!(
        message(retire(&bob, &by_bob).await).0,
        "AccessDeniedException",
        "bob's IAM policy denies kms:RetireGrant"
    );
    let by_carol = grant(&carol_arn).await.unwrap().grant_id.unwrap();
    assert_eq!(
        code(retire(&dave, &by_carol).await),
        "AccessDeniedException",
        "only the key policy names dave"
    );
    retire(&carol, &by_carol).await.unwrap();
    let other = grant(&carol_arn).await.unwrap().grant_id.unwrap();
    s.put_user_policy(
        &dave_arn,
        "retire",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:RetireGrant","Resource":"*"}]}"#,
    );
    once_allowed(|| retire(&dave, &other)).await;
    // The account retires what its principals may not.
    retire(&root, &by_bob).await.unwrap();
    let left = root.list_grants().key_id(&key).send().await.unwrap();
    assert!(left.grants().is_empty(), "{:?}", left.grants());
}

/// ListRetirableGrants reads its page from the database a page at a time (any account may
/// name a principal as its grants' retiring principal, so the list can be long): a row that
/// fails its checks is passed over and the page is still full, the marker continues after the
/// last grant shown, and a marker that is not one of the principal's grants is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_retirable_grants_pages_past_rows_that_fail_their_checks() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (ops_arn, _, ops) = tokio::task::block_in_place(|| {
        s.new_user(
            "123456789012",
            "ops",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListRetirableGrants","Resource":"*"}]}"#),
        )
    });
    let mut ids = Vec::new();
    for _ in 0..5 {
        let g = root
            .create_grant()
            .key_id(&key)
            .grantee_principal(&ops_arn)
            .retiring_principal(&ops_arn)
            .operations(GrantOperation::Decrypt)
            .send()
            .await
            .unwrap();
        ids.push(g.grant_id.unwrap());
    }
    let elsewhere = root
        .create_grant()
        .key_id(&key)
        .grantee_principal(&ops_arn)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    // The second grant's row is edited in the database: it allows nothing and is not listed.
    s.db.execute(&format!(
        "UPDATE grants SET name = 'edited' WHERE grant_id = {}",
        s.db.text(&ids[1])
    ))
    .await;
    let page = |marker: Option<String>| {
        let (ops, ops_arn) = (ops.clone(), ops_arn.clone());
        async move {
            ops.list_retirable_grants()
                .retiring_principal(ops_arn)
                .limit(2)
                .set_marker(marker)
                .send()
                .await
        }
    };
    let listed = |p: &aws_sdk_kms::operation::list_retirable_grants::ListRetirableGrantsOutput| {
        p.grants()
            .iter()
            .map(|g| g.grant_id.clone().unwrap())
            .collect::<Vec<_>>()
    };
    let first = page(None).await.unwrap();
    assert_eq!(listed(&first), [ids[0].clone(), ids[2].clone()]);
    assert!(first.truncated);
    assert_eq!(first.next_marker.as_deref(), Some(ids[2].as_str()));
    let second = page(first.next_marker.clone()).await.unwrap();
    assert_eq!(listed(&second), [ids[3].clone(), ids[4].clone()]);
    assert!(!second.truncated && second.next_marker.is_none());
    for marker in ["nope".to_string(), elsewhere] {
        assert_eq!(code(page(Some(marker)).await), "InvalidMarkerException");
    }
}
