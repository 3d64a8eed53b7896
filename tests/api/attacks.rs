//! Attacks through the API, each written as the attacker plays it (issue 16): the grantee who
//! widens its grant, the other tenant who lists, the account principal with no permission of
//! its own, the caller who slips a constraint past the parser. Each failed before its fix.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantConstraints, GrantOperation};

const ACCOUNT: &str = "123456789012";
const OTHER: &str = "210987654321";

fn pt() -> Blob {
    Blob::new(b"attack".to_vec())
}

async fn new_key(c: &aws_sdk_kms::Client) -> String {
    c.create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

/// A key whose policy trusts only the account's root user itself (not the account's
/// principals through their identity policies): whatever else is allowed comes from grants.
async fn key_for_root_only(c: &aws_sdk_kms::Client) -> String {
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:user/admin"}},"Action":"kms:*","Resource":"*"}},{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*","Condition":{{"StringEquals":{{"aws:PrincipalArn":"arn:aws:iam::{ACCOUNT}:root"}}}}}}]}}"#
    );
    c.create_key()
        .policy(policy)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grantee_with_create_grant_cannot_mint_a_wider_grant() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (bob_arn, _, bob) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "bob", None));
    let (carol_arn, _, carol) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "carol", None));
    let blob = root
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    // Bob may encrypt and create grants, nothing else.
    root.create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Encrypt)
        .operations(GrantOperation::CreateGrant)
        .send()
        .await
        .unwrap();
    // The attack: bob grants himself Decrypt, then decrypts.
    let minted = bob
        .create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Decrypt)
        .send()
        .await;
    assert_eq!(code(minted), "AccessDeniedException");
    let (code_, msg) = message(
        bob.create_grant()
            .key_id(&key)
            .grantee_principal(&carol_arn)
            .operations(GrantOperation::Encrypt)
            .operations(GrantOperation::Decrypt)
            .send()
            .await,
    );
    assert_eq!(code_, "AccessDeniedException");
    assert!(
        msg.starts_with(&format!(
            "User: {bob_arn} is not authorized to perform: kms:CreateGrant on resource: arn:aws:kms:"
        )),
        "{msg}"
    );
    assert_eq!(
        code(bob.decrypt().ciphertext_blob(blob.clone()).send().await),
        "AccessDeniedException"
    );
    // What bob's grant has, he may pass on.
    let g = bob
        .create_grant()
        .key_id(&key)
        .grantee_principal(&carol_arn)
        .operations(GrantOperation::Encrypt)
        .send()
        .await
        .unwrap();
    carol
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .grant_tokens(g.grant_token.unwrap())
        .send()
        .await
        .unwrap();
    // Nor can carol, holding no CreateGrant, mint anything.
    assert_eq!(
        code(
            carol
                .create_grant()
                .key_id(&key)
                .grantee_principal(&carol_arn)
                .operations(GrantOperation::Encrypt)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    // Nobody's Decrypt was widened.
    for c in [&bob, &carol] {
        assert_eq!(
            code(c.decrypt().ciphertext_blob(blob.clone()).send().await),
            "AccessDeniedException"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constrained_grantee_cannot_loosen_its_constraints() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (bob_arn, _, bob) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "bob", None));
    let (carol_arn, _, carol) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "carol", None));
    // As EBS's grants are: cryptographic operations and CreateGrant under one constraint.
    root.create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Encrypt)
        .operations(GrantOperation::Decrypt)
        .operations(GrantOperation::CreateGrant)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_subset("tenant", "blue")
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Bob uses it within the constraint (keys without case, as AWS compares them).
    let blob = bob
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .encryption_context("Tenant", "blue")
        .encryption_context("doc", "1")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(
        code(
            bob.encrypt()
                .key_id(&key)
                .plaintext(pt())
                .encryption_context("tenant", "red")
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    let try_grant = |c: Option<GrantConstraints>| {
        let mut b = bob
            .create_grant()
            .key_id(&key)
            .grantee_principal(&carol_arn)
            .operations(GrantOperation::Decrypt);
        if let Some(c) = c {
            b = b.constraints(c);
        }
        b.send()
    };
    // The attacks: a child grant with no constraint, another tenant's, a partial one.
    assert_eq!(code(try_grant(None).await), "AccessDeniedException");
    assert_eq!(
        code(
            try_grant(Some(
                GrantConstraints::builder()
                    .encryption_context_subset("tenant", "red")
                    .build()
            ))
            .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            try_grant(Some(
                GrantConstraints::builder()
                    .encryption_context_subset("doc", "1")
                    .build()
            ))
            .await
        ),
        "AccessDeniedException"
    );
    // At least as strict: the same subset and more, or an exact context that includes it.
    try_grant(Some(
        GrantConstraints::builder()
            .encryption_context_subset("TENANT", "blue")
            .encryption_context_subset("doc", "1")
            .build(),
    ))
    .await
    .unwrap();
    try_grant(Some(
        GrantConstraints::builder()
            .encryption_context_equals("tenant", "blue")
            .encryption_context_equals("doc", "1")
            .build(),
    ))
    .await
    .unwrap();
    carol
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("Tenant", "blue")
        .encryption_context("doc", "1")
        .send()
        .await
        .unwrap();

    // Under an Equals constraint only the same Equals will do.
    let key2 = new_key(&root).await;
    root.create_grant()
        .key_id(&key2)
        .grantee_principal(&bob_arn)
        .operations(GrantOperation::Encrypt)
        .operations(GrantOperation::CreateGrant)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_equals("tenant", "blue")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let child = |c: GrantConstraints| {
        bob.create_grant()
            .key_id(&key2)
            .grantee_principal(&carol_arn)
            .operations(GrantOperation::Encrypt)
            .constraints(c)
            .send()
    };
    assert_eq!(
        code(
            child(
                GrantConstraints::builder()
                    .encryption_context_subset("tenant", "blue")
                    .build()
            )
            .await
        ),
        "AccessDeniedException"
    );
    child(
        GrantConstraints::builder()
            .encryption_context_equals("tenant", "blue")
            .build(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_cannot_list_retirable_grants() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (bob_arn, _, _) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "bob", None));
    let (_, _, bob_lister) = tokio::task::block_in_place(|| {
        s.new_user(
            ACCOUNT,
            "lister",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:ListRetirableGrants","Resource":"*"}]}"#),
        )
    });
    let (_, _, eve) = tokio::task::block_in_place(|| {
        s.new_user(
            OTHER,
            "eve",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#),
        )
    });
    root.create_grant()
        .key_id(&key)
        .grantee_principal(&bob_arn)
        .retiring_principal(&bob_arn)
        .operations(GrantOperation::Decrypt)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_equals("secret-project", "x")
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Within the account: listed.
    let own = bob_lister
        .list_retirable_grants()
        .retiring_principal(&bob_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(own.grants().len(), 1);
    // The attack: eve, in another account, names bob as the retiring principal.
    let r = eve
        .list_retirable_grants()
        .retiring_principal(&bob_arn)
        .send()
        .await;
    assert_eq!(code(r), "AccessDeniedException");
    let r = eve
        .list_retirable_grants()
        .retiring_principal(format!("arn:aws:iam::{ACCOUNT}:root"))
        .send()
        .await;
    assert_eq!(code(r), "AccessDeniedException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_to_an_account_needs_its_principals_identity_policies() {
    let s = Server::start().await;
    let (_, _, admin) = tokio::task::block_in_place(|| {
        s.new_user(
            ACCOUNT,
            "admin",
            Some(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#),
        )
    });
    let key = key_for_root_only(&admin).await;
    let arn = admin
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let allow_encrypt = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
    // Same account: a grant to the account root.
    let (_, _, dave) = tokio::task::block_in_place(|| s.new_user(ACCOUNT, "dave", None));
    let (_, _, erin) =
        tokio::task::block_in_place(|| s.new_user(ACCOUNT, "erin", Some(allow_encrypt)));
    // Another account: a grant to that account's root.
    let (_, _, frank) = tokio::task::block_in_place(|| s.new_user(OTHER, "frank", None));
    let (_, _, gina) =
        tokio::task::block_in_place(|| s.new_user(OTHER, "gina", Some(allow_encrypt)));
    for account in [ACCOUNT, OTHER] {
        admin
            .create_grant()
            .key_id(&key)
            .grantee_principal(format!("arn:aws:iam::{account}:root"))
            .operations(GrantOperation::Encrypt)
            .operations(GrantOperation::Decrypt)
            .send()
            .await
            .unwrap();
    }
    // The attack: principals with no permission of their own use the account's grant.
    for c in [&dave, &frank] {
        assert_eq!(
            code(c.encrypt().key_id(&arn).plaintext(pt()).send().await),
            "AccessDeniedException"
        );
    }
    // Delegated by an identity policy, as AWS has it: allowed, for what that policy allows.
    let mut blob = None;
    for c in [&erin, &gina] {
        blob = Some(
            c.encrypt()
                .key_id(&arn)
                .plaintext(pt())
                .send()
                .await
                .unwrap()
                .ciphertext_blob
                .unwrap(),
        );
        assert_eq!(
            code(
                c.decrypt()
                    .ciphertext_blob(blob.clone().unwrap())
                    .send()
                    .await
            ),
            "AccessDeniedException"
        );
    }
    admin
        .decrypt()
        .ciphertext_blob(blob.unwrap())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn create_grant_refuses_constraints_it_cannot_enforce() {
    let s = Server::start().await;
    let key = new_key(&s.client()).await;
    let grantee = format!("arn:aws:iam::{ACCOUNT}:user/bob");
    let send = |constraints: serde_json::Value| {
        let body = serde_json::json!({
            "KeyId": key,
            "GranteePrincipal": grantee,
            "Operations": ["Decrypt"],
            "Constraints": constraints,
        });
        s.raw(
            Some("TrentService.CreateGrant"),
            "application/x-amz-json-1.1",
            serde_json::to_vec(&body).unwrap(),
            true,
        )
    };
    // Each would have been dropped, leaving an unconstrained Decrypt grant.
    for c in [
        serde_json::json!({"SourceArn": "arn:aws:s3:::bucket"}),
        serde_json::json!({"EncryptionContextSubset": {"a": "b"}, "SourceArn": "arn:aws:s3:::bucket"}),
        serde_json::json!({"EncryptionContextSubsets": {"a": "b"}}),
        serde_json::json!({"encryptionContextEquals": {"a": "b"}}),
        serde_json::json!({"EncryptionContextEquals": {"a": 1}}),
        serde_json::json!("EncryptionContextEquals"),
    ] {
        let r = send(c.clone()).await;
        assert_eq!(r.status, 400, "{c}: {}", r.json);
        assert_eq!(r.error_type(), "ValidationException", "{c}: {}", r.json);
    }
    let listed = s.client().list_grants().key_id(&key).send().await.unwrap();
    assert!(listed.grants().is_empty(), "{listed:?}");
    // What it knows it takes.
    let r = send(serde_json::json!({"EncryptionContextSubset": {"a": "b"}})).await;
    assert_eq!(r.status, 200, "{}", r.json);
}

/// An administrator command that cannot reach the token (wrong PIN, wrong token) changes
/// nothing: before, `put-user-policy` wrote the policy, failed to seal it, and locked the user
/// out of everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_command_that_cannot_seal_writes_nothing() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let allow_encrypt = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
    let (arn, _, user) =
        tokio::task::block_in_place(|| s.new_user(ACCOUNT, "ivan", Some(allow_encrypt)));
    user.encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    let f = s.path("wider.json");
    std::fs::write(
        &f,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#,
    )
    .unwrap();
    let before = s
        .db
        .strings(&format!(
            "SELECT policy_name || ':' || document FROM identity_policies WHERE principal_arn = '{arn}' ORDER BY policy_name"
        ))
        .await;
    for env in [
        vec![("KMS_HSM__PIN", "000000")],
        vec![("KMS_HSM__TOKEN_LABEL", "no-such-token")],
    ] {
        for args in [
            vec![
                "put-user-policy",
                "--user-arn",
                arn.as_str(),
                "--policy-name",
                "wide",
                "--policy-document",
                f.to_str().unwrap(),
            ],
            vec![
                "delete-user-policy",
                "--user-arn",
                arn.as_str(),
                "--policy-name",
                "policy",
            ],
            vec![
                "tag-principal",
                "--principal-arn",
                arn.as_str(),
                "--tag",
                "team=red",
            ],
            vec![
                "create-user",
                "--account-id",
                ACCOUNT,
                "--user-name",
                "ghost",
            ],
        ] {
            let out = s.admin(&args, &env);
            assert!(!out.status.success(), "{args:?} with {env:?} succeeded");
        }
    }
    let after = s
        .db
        .strings(&format!(
            "SELECT policy_name || ':' || document FROM identity_policies WHERE principal_arn = '{arn}' ORDER BY policy_name"
        ))
        .await;
    assert_eq!(before, after);
    assert_eq!(
        s.db.int(&format!(
            "SELECT count(*) FROM principal_tags WHERE principal_arn = '{arn}'"
        ))
        .await,
        0
    );
    assert_eq!(
        s.db.int(&format!(
            "SELECT count(*) FROM principals WHERE arn = 'arn:aws:iam::{ACCOUNT}:user/ghost'"
        ))
        .await,
        0
    );
    // The user works as before.
    user.encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
}

/// A principal inserted with SQL (no MAC) is not sealed by routine administration — not by
/// `kms init`, not by a change to it — and `kms admin seal` shows it before sealing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_inserted_with_sql_is_never_sealed_as_a_side_effect() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (arn, id, secret, _) =
        tokio::task::block_in_place(|| s.new_user_with_secret(ACCOUNT, "judy", None));
    let judy = s.client_with(&id, &secret, REGION, None);
    assert_eq!(
        code(judy.encrypt().key_id(&key).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // The attack: her MAC removed and a policy inserted, as rows from before sealing look.
    s.db.execute(&format!(
        "UPDATE principals SET authz_mac = NULL WHERE arn = '{arn}'"
    ))
    .await;
    s.db.execute(&format!(
        "INSERT INTO identity_policies (principal_arn, policy_name, document) VALUES ('{arn}', 'sneaky', '{{\"Version\":\"2012-10-17\",\"Statement\":[{{\"Effect\":\"Allow\",\"Action\":\"kms:*\",\"Resource\":\"*\"}}]}}')"
    ))
    .await;
    // Routine administration that used to seal it: init, and a change to her.
    let out = s.kms(&["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.admin(
        &[
            "tag-principal",
            "--principal-arn",
            &arn,
            "--tag",
            "team=blue",
        ],
        &[],
    );
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(said.contains(&arn) && said.contains("no MAC"), "{said}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        code(judy.encrypt().key_id(&key).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // The explicit command shows exactly what it would seal.
    let out = s.admin(&["seal"], &[]);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains(&arn) && shown.contains("sneaky"), "{shown}");
}
