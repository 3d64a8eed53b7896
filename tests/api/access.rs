//! Access control through the AWS SDK: accounts, key policies, identity policies.

use crate::support::*;
use aws_sdk_kms::primitives::Blob;

pub const ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;
const B: &str = "444455556666";

fn pt() -> Blob {
    Blob::new(b"secret".to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_accounts_cannot_see_or_use_each_others_keys() {
    let s = Server::start().await;
    let a = s.client();
    let (_, _, b) = tokio::task::block_in_place(|| s.new_user(B, "bob", Some(ALL)));
    let ka = a.create_key().send().await.unwrap().key_metadata.unwrap();
    let kb = b.create_key().send().await.unwrap().key_metadata.unwrap();
    assert!(kb.arn.as_deref().unwrap().contains(&format!(":{B}:key/")));
    // Each lists only its own.
    let la: Vec<String> = a
        .list_keys()
        .send()
        .await
        .unwrap()
        .keys()
        .iter()
        .map(|k| k.key_id.clone().unwrap())
        .collect();
    let lb: Vec<String> = b
        .list_keys()
        .send()
        .await
        .unwrap()
        .keys()
        .iter()
        .map(|k| k.key_id.clone().unwrap())
        .collect();
    assert_eq!(la, vec![ka.key_id.clone()]);
    assert_eq!(lb, vec![kb.key_id.clone()]);
    // ResourceOwners (newer than this SDK): no key is shared through RAM here, so a listing
    // of shared keys alone is empty (never the other tenant's keys, nor one's own); with SELF
    // it is one's own keys, as without it.
    let list = |body: &str| {
        s.raw(
            Some("TrentService.ListKeys"),
            "application/x-amz-json-1.1",
            body.as_bytes().to_vec(),
            true,
        )
    };
    let shared = list(r#"{"ResourceOwners":["OTHER_ACCOUNTS_VIA_RAM"]}"#).await;
    assert_eq!(shared.status, 200, "{}", shared.json);
    assert_eq!(
        shared.json,
        serde_json::json!({"Keys": [], "Truncated": false})
    );
    let both = list(r#"{"ResourceOwners":["OTHER_ACCOUNTS_VIA_RAM","SELF"]}"#).await;
    assert_eq!(
        both.json["Keys"][0]["KeyId"],
        ka.key_id.as_str(),
        "{}",
        both.json
    );
    assert_eq!(both.json["Keys"].as_array().unwrap().len(), 1);
    let marker = format!(
        r#"{{"ResourceOwners":["OTHER_ACCOUNTS_VIA_RAM"],"Marker":"{}"}}"#,
        ka.key_id
    );
    assert_eq!(list(&marker).await.error_type(), "InvalidMarkerException");
    let bad = list(r#"{"ResourceOwners":["EVERYONE"]}"#).await;
    assert_eq!(
        (bad.error_type(), bad.message()),
        (
            "ValidationException",
            "1 validation error detected: Value '[EVERYONE]' at 'resourceOwners' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [SELF, OTHER_ACCOUNTS_VIA_RAM]]"
        )
    );
    let empty = list(r#"{"ResourceOwners":[]}"#).await;
    assert_eq!(
        empty.message(),
        "1 validation error detected: Value '[]' at 'resourceOwners' failed to satisfy constraint: Member must have length greater than or equal to 1"
    );
    // By id, the other account's key does not exist; by ARN it is refused.
    assert_eq!(
        code(a.describe_key().key_id(&kb.key_id).send().await),
        "NotFoundException"
    );
    let (c, m) = message(
        a.encrypt()
            .key_id(kb.arn.clone().unwrap())
            .plaintext(pt())
            .send()
            .await,
    );
    assert_eq!(c, "AccessDeniedException");
    assert!(
        m.ends_with("on this resource because the resource does not exist in this Region, no resource-based policies allow access, or a resource-based policy explicitly denies access"),
        "{m}"
    );
    assert_eq!(
        code(
            b.describe_key()
                .key_id(ka.arn.clone().unwrap())
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    // Ciphertexts of one account do not decrypt in the other.
    let blob = a
        .encrypt()
        .key_id(&ka.key_id)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_eq!(
        code(b.decrypt().ciphertext_blob(blob).send().await),
        "AccessDeniedException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_can_manage_but_not_use_a_key() {
    let s = Server::start().await;
    let manage = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Create*","kms:Describe*","kms:List*","kms:Get*","kms:Put*"],"Resource":"*"}]}"#;
    let (arn, _, admin) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "keyadmin", Some(manage)));
    let key = new_key(&admin).await;
    admin.describe_key().key_id(&key).send().await.unwrap();
    admin.get_key_policy().key_id(&key).send().await.unwrap();
    assert_eq!(
        admin
            .list_key_policies()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .policy_names(),
        &["default".to_string()]
    );
    let (c, m) = message(admin.encrypt().key_id(&key).plaintext(pt()).send().await);
    assert_eq!(c, "AccessDeniedException");
    assert_eq!(
        m,
        format!(
            "User: {arn} is not authorized to perform: kms:Encrypt on resource: arn:aws:kms:us-east-1:123456789012:key/{key} \
             because no identity-based policy allows the kms:Encrypt action"
        )
    );
    assert_eq!(
        code(
            admin
                .generate_data_key()
                .key_id(&key)
                .number_of_bytes(32)
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(admin.generate_random().number_of_bytes(8).send().await),
        "AccessDeniedException"
    );
    // The account's administrator (kms:*) can use it.
    s.client()
        .encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_policies_scope_users_to_keys_and_contexts() {
    let s = Server::start().await;
    let root = s.client();
    let k1 = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let k2 = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"{}","Condition":{{"StringEquals":{{"kms:EncryptionContext:app":"web"}}}}}}]}}"#,
        k1.arn.clone().unwrap()
    );
    let (_, _, alice) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "alice", Some(&policy)));
    let blob = alice
        .encrypt()
        .key_id(&k1.key_id)
        .plaintext(pt())
        .encryption_context("app", "web")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    alice
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("app", "web")
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(
            alice
                .encrypt()
                .key_id(&k1.key_id)
                .plaintext(pt())
                .encryption_context("app", "db")
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            alice
                .encrypt()
                .key_id(&k1.key_id)
                .plaintext(pt())
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            alice
                .encrypt()
                .key_id(&k2.key_id)
                .plaintext(pt())
                .encryption_context("app", "web")
                .send()
                .await
        ),
        "AccessDeniedException"
    );
    assert_eq!(
        code(alice.list_keys().send().await),
        "AccessDeniedException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_deny_beats_every_allow_and_takes_effect_at_once() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let (alice_arn, _, alice) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "alice", Some(ALL)));
    let blob = alice
        .encrypt()
        .key_id(&key.key_id)
        .plaintext(pt())
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    alice
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Sid":"root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Sid":"alice","Effect":"Allow","Principal":{{"AWS":"{alice_arn}"}},"Action":"kms:Decrypt","Resource":"*"}},
            {{"Sid":"no","Effect":"Deny","Principal":{{"AWS":"{alice_arn}"}},"Action":"kms:Decrypt","Resource":"*"}}]}}"#
    );
    root.put_key_policy()
        .key_id(&key.key_id)
        .policy(&policy)
        .send()
        .await
        .unwrap();
    let (c, m) = message(alice.decrypt().ciphertext_blob(blob.clone()).send().await);
    assert_eq!(c, "AccessDeniedException");
    // The key found from the ciphertext alone is "the resource associated with this
    // ciphertext" (AWS's words); named by KeyId, it is named back.
    assert_eq!(
        m,
        format!("User: {alice_arn} is not authorized to perform: kms:Decrypt on the resource associated with this ciphertext with an explicit deny in a resource-based policy")
    );
    let (_, m) = message(
        alice
            .decrypt()
            .key_id(&key.key_id)
            .ciphertext_blob(blob.clone())
            .send()
            .await,
    );
    assert_eq!(
        m,
        format!(
            "User: {alice_arn} is not authorized to perform: kms:Decrypt on resource: {} with an explicit deny in a resource-based policy",
            key.arn.as_deref().unwrap()
        )
    );
    alice
        .encrypt()
        .key_id(&key.key_id)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    assert_eq!(
        root.get_key_policy()
            .key_id(&key.key_id)
            .send()
            .await
            .unwrap()
            .policy
            .unwrap(),
        policy
    );
    // An identity-policy deny, added by the administrator, takes effect on the running server.
    s.put_user_policy(
        &alice_arn,
        "deny-encrypt",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*"}]}"#,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match alice
            .encrypt()
            .key_id(&key.key_id)
            .plaintext(pt())
            .send()
            .await
        {
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "the deny never took effect"
            ),
            Err(e) => {
                let (c, m) = message::<(), _>(Err(e));
                assert_eq!(c, "AccessDeniedException");
                assert!(
                    m.ends_with("with an explicit deny in an identity-based policy"),
                    "{m}"
                );
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_account_use_needs_both_sides() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = key.arn.clone().unwrap();
    let (bob_arn, _, bob) = tokio::task::block_in_place(|| s.new_user(B, "bob", None));
    // Neither side allows.
    assert_eq!(
        code(bob.encrypt().key_id(&arn).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // The key policy trusts account B, but bob's account has not allowed him.
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{B}:root"}},"Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*"}}]}}"#
    );
    root.put_key_policy()
        .key_id(&key.key_id)
        .policy(&policy)
        .send()
        .await
        .unwrap();
    let (c, m) = message(bob.encrypt().key_id(&arn).plaintext(pt()).send().await);
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains("no identity-based policy"), "{m}");
    // Now both sides allow.
    s.put_user_policy(&bob_arn, "use-a", &format!(r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"{arn}"}}]}}"#));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let blob = loop {
        match bob.encrypt().key_id(&arn).plaintext(pt()).send().await {
            Ok(o) => break o.ciphertext_blob.unwrap(),
            Err(e) => {
                assert_eq!(code::<(), _>(Err(e)), "AccessDeniedException");
                assert!(std::time::Instant::now() < deadline);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    };
    bob.decrypt().ciphertext_blob(blob).send().await.unwrap();
    // Identity allows but the key policy no longer trusts account B.
    root.put_key_policy()
        .key_id(&key.key_id)
        .policy(crate::access::default_policy())
        .send()
        .await
        .unwrap();
    let (c, m) = message(bob.encrypt().key_id(&arn).plaintext(pt()).send().await);
    assert_eq!(c, "AccessDeniedException");
    assert!(m.contains("no resource-based policies allow access"), "{m}");
}

/// The key policy AWS gives a key created without one, to the byte (botocore's GetKeyPolicy
/// example, account 123456789012).
pub fn aws_default_policy_text() -> String {
    "{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {\n    \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {\n      \"AWS\" : \"arn:aws:iam::123456789012:root\"\n    },\n    \"Action\" : \"kms:*\",\n    \"Resource\" : \"*\"\n  } ]\n}".to_string()
}

pub fn default_policy() -> &'static str {
    r#"{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"}]}"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_policy_validation_and_lockout_safety() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let got = root.get_key_policy().key_id(&key).send().await.unwrap();
    assert_eq!(got.policy_name.as_deref(), Some("default"));
    assert_eq!(got.policy, Some(aws_default_policy_text()));
    let doc: serde_json::Value = serde_json::from_str(got.policy.as_deref().unwrap()).unwrap();
    assert_eq!(
        doc["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::123456789012:root"
    );
    let (c, m) = message(
        root.put_key_policy()
            .key_id(&key)
            .policy(r#"{"Statement":[{"Effect":"Allow"}]}"#)
            .send()
            .await,
    );
    assert_eq!(c, "MalformedPolicyDocumentException");
    assert!(m.contains("Principal"), "{m}");
    // A statement without Resource, or without Action, is taken and has no effect, as AWS
    // takes it (the model's Policy: "the CreateKey and PutKeyPolicy API requests succeed, even
    // though the policy statement is ineffective"). Before, MalformedPolicyDocumentException.
    let inert = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Encrypt"},{"Effect":"Deny","Principal":"*","Resource":"*"}]}"#;
    root.put_key_policy()
        .key_id(&key)
        .policy(inert)
        .send()
        .await
        .unwrap();
    root.encrypt()
        .key_id(&key)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    // Nor does such a statement count as the caller's way back in.
    let only_inert = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*"}]}"#;
    let (c, m) = message(
        root.put_key_policy()
            .key_id(&key)
            .policy(only_inert)
            .send()
            .await,
    );
    assert_eq!(c, "MalformedPolicyDocumentException");
    assert!(
        m.contains("will not allow you to update the key policy"),
        "{m}"
    );
    // A key repeated in one object: refused, not read as its last occurrence (here the
    // Deny's account restriction would have vanished, leaving a Deny on every caller but the
    // reviewer reading another).
    let (c, m) = message(
        root.put_key_policy()
            .key_id(&key)
            .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":"*","Action":"kms:Decrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:CallerAccount":"123456789012"},"StringNotEquals":{"kms:ViaService":"ec2.us-east-1.amazonaws.com"}}}]}"#)
            .send()
            .await,
    );
    assert_eq!(c, "MalformedPolicyDocumentException");
    assert!(m.contains("appears twice"), "{m}");
    // Characters outside the model's pattern (beyond U+00FF): a validation error.
    let (c, m) = message(
        root.put_key_policy()
            .key_id(&key)
            .policy(r#"{"Version":"2012-10-17","Id":"✓","Statement":[]}"#)
            .send()
            .await,
    );
    assert_eq!(c, "ValidationException");
    assert!(m.contains("regular expression pattern"), "{m}");
    let big = format!(
        r#"{{"Version":"2012-10-17","Id":"{}","Statement":[]}}"#,
        "x".repeat(33 * 1024)
    );
    assert_eq!(
        code(root.put_key_policy().key_id(&key).policy(big).send().await),
        "LimitExceededException"
    );
    // A principal that does not exist (AWS: "The principals in the key policy must exist"):
    // refused in AWS's words, not kept to apply to no one (here a Deny on a misspelt user).
    let ghost = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:root"},"Action":"kms:*","Resource":"*"},{"Effect":"Deny","Principal":{"AWS":["arn:aws:iam::123456789012:root","arn:aws:iam::123456789012:user/nobdoy"]},"Action":"kms:Decrypt","Resource":"*"}]}"#;
    assert_eq!(
        message(
            root.put_key_policy()
                .key_id(&key)
                .policy(ghost)
                .send()
                .await
        ),
        (
            "MalformedPolicyDocumentException".to_string(),
            "Policy contains a statement with one or more invalid principals.".to_string()
        )
    );
    // A policy that would lock the caller out is refused unless the check is bypassed.
    tokio::task::block_in_place(|| s.new_user("123456789012", "nobody", None));
    let lockout = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/nobody"},"Action":"kms:*","Resource":"*"}]}"#;
    let (c, m) = message(
        root.put_key_policy()
            .key_id(&key)
            .policy(lockout)
            .send()
            .await,
    );
    assert_eq!(c, "MalformedPolicyDocumentException");
    assert!(
        m.contains("will not allow you to update the key policy"),
        "{m}"
    );
    assert_eq!(
        code(root.create_key().policy(lockout).send().await),
        "MalformedPolicyDocumentException"
    );
    root.put_key_policy()
        .key_id(&key)
        .policy(lockout)
        .bypass_policy_lockout_safety_check(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(root.get_key_policy().key_id(&key).send().await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(root.encrypt().key_id(&key).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    assert_eq!(
        code(
            root.get_key_policy()
                .key_id(&key)
                .policy_name("other")
                .send()
                .await
        ),
        "NotFoundException"
    );
    // RAM's key policy: there is none to get (no key is shared through RAM here), and it is
    // never set by PutKeyPolicy (AWS's model: a ValidationException).
    assert_eq!(
        code(
            root.get_key_policy()
                .key_id(&key)
                .policy_name("AWS_RAM")
                .send()
                .await
        ),
        "NotFoundException"
    );
    let (c, _) = message(
        root.put_key_policy()
            .key_id(&key)
            .policy_name("AWS_RAM")
            .policy(ALL)
            .send()
            .await,
    );
    assert_eq!(c, "ValidationException");
    // An empty policy fails its length and its pattern (`[…]+`), two errors as AWS counts them.
    let (c, m) = message(root.put_key_policy().key_id(&key).policy("").send().await);
    assert_eq!(c, "ValidationException");
    assert!(m.starts_with("2 validation errors detected: "), "{m}");
    assert!(
        m.contains("Member must satisfy regular expression pattern"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_access_key_stops_working_at_once() {
    let s = Server::start().await;
    let (_, id, alice) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "alice", Some(ALL)));
    alice.list_keys().send().await.unwrap();
    let out = tokio::task::block_in_place(|| {
        s.admin(&["deactivate-access-key", "--access-key-id", &id], &[])
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match alice.list_keys().send().await {
            Ok(_) => assert!(std::time::Instant::now() < deadline, "the key kept working"),
            Err(e) => {
                assert_eq!(code::<(), _>(Err(e)), "UnrecognizedClientException");
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let out = tokio::task::block_in_place(|| {
        s.admin(&["activate-access-key", "--access-key-id", &id], &[])
    });
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_refuse_bad_input_and_import_keys() {
    let s = Server::start().await;
    tokio::task::block_in_place(|| {
        let bad = |args: &[&str], words: &str| {
            let out = s.admin(args, &[]);
            assert!(!out.status.success(), "{args:?}");
            let e = String::from_utf8_lossy(&out.stderr);
            assert!(e.contains(words), "{args:?}: {e}");
        };
        bad(&["create-account", "--account-id", "12"], "12 digits");
        bad(
            &[
                "create-user",
                "--account-id",
                "999999999999",
                "--user-name",
                "x",
            ],
            "no account",
        );
        bad(
            &[
                "create-user",
                "--account-id",
                "123456789012",
                "--user-name",
                "bad name",
            ],
            "user names",
        );
        bad(
            &[
                "create-access-key",
                "--user-arn",
                "arn:aws:iam::123456789012:user/ghost",
            ],
            "no user",
        );
        let f = s.token.dir.path().join("bad.json");
        std::fs::write(
            &f,
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"kms:*","Resource":"*"}]}"#,
        )
        .unwrap();
        bad(
            &[
                "put-user-policy",
                "--user-arn",
                "arn:aws:iam::123456789012:user/admin",
                "--policy-name",
                "p",
                "--policy-document",
                f.to_str().unwrap(),
            ],
            "cannot name a Principal",
        );
        bad(
            &[
                "deactivate-access-key",
                "--access-key-id",
                "AKIANOSUCHKEY0000000",
            ],
            "does not exist",
        );
        bad(
            &[
                "create-access-key",
                "--user-arn",
                "arn:aws:iam::123456789012:user/admin",
                "--access-key-id",
                "AKIAIMPORTED00000001",
            ],
            "KMS_IMPORT_SECRET_ACCESS_KEY",
        );
    });
    // An application's existing key, imported: the secret comes from the environment.
    let secret = "Imported/Secret/For/An/Existing/App/00001";
    let out = tokio::task::block_in_place(|| {
        s.admin(
            &[
                "create-access-key",
                "--user-arn",
                "arn:aws:iam::123456789012:user/admin",
                "--access-key-id",
                "AKIAIMPORTED00000001",
            ],
            &[("KMS_IMPORT_SECRET_ACCESS_KEY", secret)],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
    s.client_with("AKIAIMPORTED00000001", secret, REGION, None)
        .list_keys()
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_conditions_and_recorded_admin_changes() {
    let s = Server::start().await;
    let root = s.client();
    let tag = |k: &str, v: &str| {
        aws_sdk_kms::types::Tag::builder()
            .tag_key(k)
            .tag_value(v)
            .build()
            .unwrap()
    };
    let blue = root
        .create_key()
        .tags(tag("team", "blue"))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let red = root
        .create_key()
        .tags(tag("team", "red"))
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
        "Condition":{"StringEquals":{"aws:ResourceTag/team":"blue","aws:PrincipalTag/dept":"eng"}}}]}"#;
    let (arn, _, secret, erin) = tokio::task::block_in_place(|| {
        s.new_user_with_secret("123456789012", "erin", Some(policy))
    });
    // Not tagged yet: the principal-tag condition fails.
    assert_eq!(
        code(erin.encrypt().key_id(&blue).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    let out = tokio::task::block_in_place(|| {
        s.admin(
            &[
                "tag-principal",
                "--principal-arn",
                &arn,
                "--tag",
                "dept=eng",
            ],
            &[],
        )
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while erin
        .encrypt()
        .key_id(&blue)
        .plaintext(pt())
        .send()
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the principal tag never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        code(erin.encrypt().key_id(&red).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // Deleting the user stops its key at once.
    let out = tokio::task::block_in_place(|| {
        s.admin(&["delete-principal", "--principal-arn", &arn], &[])
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match erin.encrypt().key_id(&blue).plaintext(pt()).send().await {
            Ok(_) => assert!(
                std::time::Instant::now() < deadline,
                "a deleted user's key kept working"
            ),
            Err(e) => {
                assert_eq!(code::<(), _>(Err(e)), "UnrecognizedClientException");
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Every change was recorded, and no secret with it.
    let actions =
        s.db.strings("SELECT action FROM admin_events ORDER BY id")
            .await;
    for a in [
        "CreateAccount",
        "CreateUser",
        "PutPrincipalPolicy",
        "CreateAccessKey",
        "TagPrincipal",
        "DeletePrincipal",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} not in {actions:?}");
    }
    let recorded =
        s.db.strings("SELECT target || ' ' || CAST(detail AS TEXT) FROM admin_events ORDER BY id")
            .await;
    assert_eq!(recorded.len(), actions.len());
    assert!(recorded.iter().all(|r| !r.contains(&secret)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_aliases_in_conditions() {
    let s = Server::start().await;
    let root = s.client();
    let named = new_key(&root).await;
    let other = new_key(&root).await;
    root.create_alias()
        .alias_name("alias/app-web")
        .target_key_id(&named)
        .send()
        .await
        .unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
        "Condition":{"ForAnyValue:StringLike":{"kms:ResourceAliases":"alias/app-*"}}}]}"#;
    let (_, _, frank) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "frank", Some(policy)));
    frank
        .encrypt()
        .key_id(&named)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    frank
        .encrypt()
        .key_id("alias/app-web")
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(frank.encrypt().key_id(&other).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // kms:RequestAlias: only when the request names the key by that alias.
    let by_alias = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
        "Condition":{"StringEquals":{"kms:RequestAlias":"alias/app-web"}}}]}"#;
    let (_, _, gina) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "gina", Some(by_alias)));
    gina.encrypt()
        .key_id("alias/app-web")
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    gina.encrypt()
        .key_id("arn:aws:kms:us-east-1:123456789012:alias/app-web")
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(gina.encrypt().key_id(&named).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
    // Moving the alias moves the permission, at once.
    root.update_alias()
        .alias_name("alias/app-web")
        .target_key_id(&other)
        .send()
        .await
        .unwrap();
    frank
        .encrypt()
        .key_id(&other)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(frank.encrypt().key_id(&named).plaintext(pt()).send().await),
        "AccessDeniedException"
    );
}

/// The attack: account A's key policy trusts account B for `kms:*`, and B's user has `kms:*` on
/// the key in its own identity policy. AWS lets another account only use a key (encrypt,
/// describe, grant...), never administer it: each administrative call fails and changes
/// nothing, above all ReplicateKey (a replica owned by A under a policy B wrote would decrypt
/// every ciphertext of A) and RetireGrant of A's grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_trusted_by_the_key_policy_still_cannot_administer_the_key() {
    let s = Server::start().await;
    let root = s.client();
    let key = root
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = key.arn.clone().unwrap();
    let trusting = format!(
        r#"{{"Version":"2012-10-17","Statement":[
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::123456789012:root"}},"Action":"kms:*","Resource":"*"}},
            {{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{B}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    root.put_key_policy()
        .key_id(&key.key_id)
        .policy(&trusting)
        .send()
        .await
        .unwrap();
    let (carol_arn, _, _) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "carol", None));
    let grant = root
        .create_grant()
        .key_id(&key.key_id)
        .grantee_principal(&carol_arn)
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let (bob_arn, _, bob) = tokio::task::block_in_place(|| s.new_user(B, "bob", None));
    s.put_user_policy(
        &bob_arn,
        "all-of-a",
        &format!(r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"kms:*","Resource":"{arn}"}}]}}"#),
    );
    // Using the key across accounts works, as on AWS (once bob's policy is seen).
    once_allowed(|| bob.encrypt().key_id(&arn).plaintext(pt()).send()).await;
    bob.describe_key().key_id(&arn).send().await.unwrap();
    bob.get_key_rotation_status()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    bob.list_grants().key_id(&arn).send().await.unwrap();

    let own_policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{B}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#
    );
    let denied = |what: &str, r: (String, String)| {
        assert_eq!(r.0, "AccessDeniedException", "{what}: {}", r.1);
        assert!(
            r.1.contains("because the resource does not exist in this Region"),
            "{what}: {}",
            r.1
        );
    };
    denied(
        "PutKeyPolicy",
        message(
            bob.put_key_policy()
                .key_id(&arn)
                .policy(&own_policy)
                .bypass_policy_lockout_safety_check(true)
                .send()
                .await,
        ),
    );
    denied(
        "GetKeyPolicy",
        message(bob.get_key_policy().key_id(&arn).send().await),
    );
    denied(
        "ScheduleKeyDeletion",
        message(
            bob.schedule_key_deletion()
                .key_id(&arn)
                .pending_window_in_days(7)
                .send()
                .await,
        ),
    );
    denied(
        "DisableKey",
        message(bob.disable_key().key_id(&arn).send().await),
    );
    denied(
        "TagResource",
        message(
            bob.tag_resource()
                .key_id(&arn)
                .tags(
                    aws_sdk_kms::types::Tag::builder()
                        .tag_key("Team")
                        .tag_value("B")
                        .build()
                        .unwrap(),
                )
                .send()
                .await,
        ),
    );
    denied(
        "ListResourceTags",
        message(bob.list_resource_tags().key_id(&arn).send().await),
    );
    denied(
        "UpdateKeyDescription",
        message(
            bob.update_key_description()
                .key_id(&arn)
                .description("B's now")
                .send()
                .await,
        ),
    );
    denied(
        "ReplicateKey",
        message(
            bob.replicate_key()
                .key_id(&arn)
                .replica_region(OTHER_REGION)
                .policy(&own_policy)
                .bypass_policy_lockout_safety_check(true)
                .send()
                .await,
        ),
    );
    denied(
        "RetireGrant",
        message(
            bob.retire_grant()
                .key_id(&arn)
                .grant_id(&grant)
                .send()
                .await,
        ),
    );
    // Nothing changed.
    let now = root
        .describe_key()
        .key_id(&key.key_id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(now.key_state, Some(aws_sdk_kms::types::KeyState::Enabled));
    assert_eq!(now.description.as_deref(), Some(""));
    let replicas = now.multi_region_configuration.unwrap().replica_keys;
    assert!(replicas.unwrap_or_default().is_empty());
    let policy = root
        .get_key_policy()
        .key_id(&key.key_id)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(policy, trusting);
    assert!(root
        .list_resource_tags()
        .key_id(&key.key_id)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default()
        .is_empty());
    let grants = root
        .list_grants()
        .key_id(&key.key_id)
        .send()
        .await
        .unwrap()
        .grants
        .unwrap();
    assert_eq!(grants.len(), 1);
    assert!(s
        .client_in(OTHER_REGION)
        .describe_key()
        .key_id(arn.replace(REGION, OTHER_REGION))
        .send()
        .await
        .is_err());
}

/// The condition keys AWS sets for the administrative calls, each the lever of a documented
/// policy pattern, attacked: a user whose identity policy allows tagging only with the key
/// `Project` (`ForAllValues:StringEquals aws:TagKeys`) sets `Team`; a user denied the lockout
/// bypass (`kms:BypassPolicyLockoutSafetyCheck`) bypasses it; a user denied a waiting period
/// under 30 days (`kms:ScheduleKeyDeletionPendingWindowInDays`) schedules 7; a user denied
/// `aws:RequestTag/Team` creates a key with that tag, and one without `kms:TagResource` tags a
/// new key through CreateKey. Before these keys were set, a missing key made every one of them
/// pass (a ForAllValues on no values holds, a Deny on a missing key never applies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_condition_keys_of_administrative_calls_are_set() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (dana_arn, _, dana) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "dana", None));
    s.put_user_policy(
        &dana_arn,
        "guarded",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["kms:DescribeKey","kms:PutKeyPolicy","kms:ScheduleKeyDeletion","kms:CancelKeyDeletion","kms:CreateKey","kms:UntagResource","kms:ReplicateKey"],"Resource":"*"},
            {"Effect":"Allow","Action":"kms:TagResource","Resource":"*","Condition":{"ForAllValues:StringEquals":{"aws:TagKeys":["Project"]}}},
            {"Effect":"Deny","Action":["kms:PutKeyPolicy","kms:CreateKey"],"Resource":"*","Condition":{"Bool":{"kms:BypassPolicyLockoutSafetyCheck":"true"}}},
            {"Effect":"Deny","Action":"kms:ScheduleKeyDeletion","Resource":"*","Condition":{"NumericLessThan":{"kms:ScheduleKeyDeletionPendingWindowInDays":"30"}}},
            {"Effect":"Deny","Action":"kms:CreateKey","Resource":"*","Condition":{"StringEquals":{"aws:RequestTag/Team":"Finance"}}}]}"#,
    );
    once_allowed(|| dana.describe_key().key_id(&key).send()).await;
    let tag = |k: &str, v: &str| {
        aws_sdk_kms::types::Tag::builder()
            .tag_key(k)
            .tag_value(v)
            .build()
            .unwrap()
    };
    let denied = |what: &str, r: (String, String)| {
        assert_eq!(r.0, "AccessDeniedException", "{what}: {}", r.1);
    };
    denied(
        "a tag key outside aws:TagKeys",
        message(
            dana.tag_resource()
                .key_id(&key)
                .tags(tag("Team", "Finance"))
                .send()
                .await,
        ),
    );
    dana.tag_resource()
        .key_id(&key)
        .tags(tag("Project", "x"))
        .send()
        .await
        .unwrap();
    denied(
        "the lockout bypass",
        message(
            dana.put_key_policy()
                .key_id(&key)
                .policy(default_policy())
                .bypass_policy_lockout_safety_check(true)
                .send()
                .await,
        ),
    );
    dana.put_key_policy()
        .key_id(&key)
        .policy(default_policy())
        .send()
        .await
        .unwrap();
    denied(
        "a 7-day deletion",
        message(
            dana.schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(7)
                .send()
                .await,
        ),
    );
    dana.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(30)
        .send()
        .await
        .unwrap();
    dana.cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    denied(
        "CreateKey with a denied request tag",
        message(dana.create_key().tags(tag("Team", "Finance")).send().await),
    );
    denied(
        "CreateKey with a tag key TagResource does not allow",
        message(dana.create_key().tags(tag("Owner", "dana")).send().await),
    );
    dana.create_key()
        .tags(tag("Project", "y"))
        .send()
        .await
        .unwrap();
    dana.create_key().send().await.unwrap();
    // ReplicateKey creates a key too: the same condition keys hold for it.
    let mrk = root
        .create_key()
        .multi_region(true)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    denied(
        "a replica with the lockout bypass",
        message(
            dana.replicate_key()
                .key_id(&mrk)
                .replica_region(OTHER_REGION)
                .policy(default_policy())
                .bypass_policy_lockout_safety_check(true)
                .send()
                .await,
        ),
    );
    denied(
        "a replica with a tag key TagResource does not allow",
        message(
            dana.replicate_key()
                .key_id(&mrk)
                .replica_region(OTHER_REGION)
                .tags(tag("Owner", "dana"))
                .send()
                .await,
        ),
    );
    // Two tag keys that differ only by case are one condition key: such a set is refused
    // rather than judged on one of its values.
    for (who, twins) in [
        (&dana, vec![tag("Project", "x"), tag("project", "y")]),
        // (The key has Project already.)
        (&root, vec![tag("project", "y")]),
    ] {
        let (c, m) = message(
            who.tag_resource()
                .key_id(&key)
                .set_tags(Some(twins))
                .send()
                .await,
        );
        assert_eq!(c, "TagException", "{m}");
    }
    let tags = root
        .list_resource_tags()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap_or_default();
    assert_eq!(tags.len(), 1, "{tags:?}");
}

/// The attack: a key administrator whose identity policy denies changing the `alias/prod-*`
/// aliases (the resource AWS authorizes alias operations on, besides each key) points
/// `alias/prod-db` at a key of its own, so that applications encrypting through the alias use
/// its key. Before, only the keys were asked, and the deny on the alias never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_policy_on_alias_arns_governs_the_alias_operations() {
    let s = Server::start().await;
    let root = s.client();
    let prod = new_key(&root).await;
    root.create_alias()
        .alias_name("alias/prod-db")
        .target_key_id(&prod)
        .send()
        .await
        .unwrap();
    let (ops_arn, _, ops) = tokio::task::block_in_place(|| s.new_user("123456789012", "ops", None));
    s.put_user_policy(
        &ops_arn,
        "no-prod-aliases",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"kms:*","Resource":"*"},
            {"Effect":"Deny","Action":["kms:CreateAlias","kms:UpdateAlias","kms:DeleteAlias"],"Resource":"arn:aws:kms:*:123456789012:alias/prod-*"}]}"#,
    );
    let own = once_allowed(|| ops.create_key().send())
        .await
        .key_metadata
        .unwrap()
        .key_id;
    let denied = |r: (String, String)| {
        assert_eq!(r.0, "AccessDeniedException", "{}", r.1);
        assert!(
            r.1.contains("on resource: arn:aws:kms:us-east-1:123456789012:alias/prod-")
                && r.1
                    .ends_with("with an explicit deny in an identity-based policy"),
            "{}",
            r.1
        );
    };
    denied(message(
        ops.update_alias()
            .alias_name("alias/prod-db")
            .target_key_id(&own)
            .send()
            .await,
    ));
    denied(message(
        ops.create_alias()
            .alias_name("alias/prod-new")
            .target_key_id(&own)
            .send()
            .await,
    ));
    denied(message(
        ops.delete_alias().alias_name("alias/prod-db").send().await,
    ));
    // Other aliases are its to manage.
    ops.create_alias()
        .alias_name("alias/dev-db")
        .target_key_id(&own)
        .send()
        .await
        .unwrap();
    ops.update_alias()
        .alias_name("alias/dev-db")
        .target_key_id(&prod)
        .send()
        .await
        .unwrap();
    ops.delete_alias()
        .alias_name("alias/dev-db")
        .send()
        .await
        .unwrap();
    let target = root
        .describe_key()
        .key_id("alias/prod-db")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    assert_eq!(target, prod);
}

/// A grant's retiring principal in another account retires the grant only where its own
/// identity policies allow kms:RetireGrant, as recorded on AWS ("... on this resource because
/// no identity-based policy allows the kms:RetireGrant action"); same-account principals of a
/// grant need no policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retiring_principal_of_another_account_needs_its_own_policy() {
    let s = Server::start().await;
    let root = s.client();
    let key = new_key(&root).await;
    let (bob_arn, _, bob) = tokio::task::block_in_place(|| s.new_user(B, "bob", None));
    let grant = root
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::123456789012:root")
        .retiring_principal(&bob_arn)
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let arn = root
        .describe_key()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let retire = || bob.retire_grant().key_id(&arn).grant_id(&grant).send();
    assert_eq!(
        message(retire().await),
        (
            "AccessDeniedException".to_string(),
            format!("User: {bob_arn} is not authorized to perform: kms:RetireGrant on this resource because no identity-based policy allows the kms:RetireGrant action")
        )
    );
    s.put_user_policy(
        &bob_arn,
        "retire",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:RetireGrant","Resource":"*"}]}"#,
    );
    once_allowed(retire).await;
    let left = root
        .list_grants()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .grants
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// The bypass: a policy that lets a principal re-encrypt only onto the key a ciphertext is
/// already under (AWS's example: a Deny of ReEncrypt* where `kms:ReEncryptOnSameKey` is
/// false). The key was never set, so the Deny never matched and the principal moved
/// ciphertexts to any key it could use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_on_reencrypt_to_another_key_holds() {
    let s = Server::start().await;
    let root = s.client();
    let (here, there) = (new_key(&root).await, new_key(&root).await);
    let (erin_arn, _, erin) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "erin", None));
    s.put_user_policy(
        &erin_arn,
        "same-key-only",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["kms:Encrypt","kms:ReEncrypt*"],"Resource":"*"},
            {"Effect":"Deny","Action":["kms:ReEncryptFrom","kms:ReEncryptTo"],"Resource":"*","Condition":{"Bool":{"kms:ReEncryptOnSameKey":"false"}}}]}"#,
    );
    let blob = once_allowed(|| {
        erin.encrypt()
            .key_id(&here)
            .plaintext(aws_sdk_kms::primitives::Blob::new(b"moved?".to_vec()))
            .send()
    })
    .await
    .ciphertext_blob
    .unwrap();
    let again = erin
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .destination_key_id(&here)
        .send()
        .await
        .unwrap();
    assert!(again.key_id.unwrap().ends_with(&here));
    let moved = message(
        erin.re_encrypt()
            .ciphertext_blob(blob.clone())
            .destination_key_id(&there)
            .send()
            .await,
    );
    assert_eq!(moved.0, "AccessDeniedException", "{}", moved.1);
    // The same with DryRun, and naming the source key.
    let dry = code(
        erin.re_encrypt()
            .ciphertext_blob(blob)
            .source_key_id(&here)
            .destination_key_id(&there)
            .dry_run(true)
            .send()
            .await,
    );
    assert_eq!(dry, "AccessDeniedException");
}

/// The multi-Region condition keys AWS documents are set: `kms:MultiRegion` on every call on a
/// key, `kms:MultiRegionKeyType` (PRIMARY or REPLICA) on a multi-Region key's calls and on
/// CreateKey of one. Before, neither was set on a key's calls, nor the type on CreateKey, so a
/// Deny on them never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_region_condition_keys_are_set() {
    let s = Server::start().await;
    let c = s.client();
    let family = new_multi_region_key(&c).await;
    let single = new_key(&c).await;
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{"Bool":{"kms:MultiRegion":"true"}}},{"Effect":"Deny","Action":"kms:CreateKey","Resource":"*","Condition":{"StringEquals":{"kms:MultiRegionKeyType":"PRIMARY"}}},{"Effect":"Deny","Action":"kms:DescribeKey","Resource":"*","Condition":{"StringEquals":{"kms:MultiRegionKeyType":"PRIMARY"}}}]}"#;
    let (_, _, user) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "regional", Some(policy)));
    let encrypt = |k: &str| user.encrypt().key_id(k).plaintext(pt()).send();
    assert_eq!(code(encrypt(&family).await), "AccessDeniedException");
    encrypt(&single).await.unwrap();
    assert_eq!(
        code(user.describe_key().key_id(&family).send().await),
        "AccessDeniedException"
    );
    user.describe_key().key_id(&single).send().await.unwrap();
    assert_eq!(
        code(user.create_key().multi_region(true).send().await),
        "AccessDeniedException"
    );
    user.create_key().send().await.unwrap();
}

/// `kms:GrantIsForAWSResource` is set on ListGrants and RevokeGrant as on CreateGrant (false:
/// no AWS service calls this server), so a Deny on it applies to all three. Before, it was
/// missing on the two, and a Deny "unless for an AWS resource" never applied to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_is_for_aws_resource_is_set_on_every_grant_call() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let g = c
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::123456789012:root")
        .operations(aws_sdk_kms::types::GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*","Resource":"*"},{"Effect":"Deny","Action":["kms:CreateGrant","kms:ListGrants","kms:RevokeGrant"],"Resource":"*","Condition":{"Bool":{"kms:GrantIsForAWSResource":"false"}}}]}"#;
    let (_, _, user) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "granter", Some(policy)));
    assert_eq!(
        code(user.list_grants().key_id(&key).send().await),
        "AccessDeniedException"
    );
    let revoke = user
        .revoke_grant()
        .key_id(&key)
        .grant_id(g.grant_id.unwrap());
    assert_eq!(code(revoke.send().await), "AccessDeniedException");
}

/// Policy variables are replaced from the request (IAM's `${aws:username}`), in a statement's
/// Resource and in its String conditions. Before, they were compared as text: a Deny on
/// `"aws:ResourceTag/frozen-for": "${aws:username}"` never applied, and the frozen user
/// encrypted with the key frozen for them. In a document of the older Version they are text,
/// as in IAM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_variables_are_replaced_from_the_request() {
    let s = Server::start().await;
    let c = s.client();
    let frozen = new_key(&c).await;
    let other = new_key(&c).await;
    for (key, user) in [(&frozen, "vars"), (&other, "someone-else")] {
        let tag = aws_sdk_kms::types::Tag::builder()
            .tag_key("frozen-for")
            .tag_value(user)
            .build()
            .unwrap();
        c.tag_resource().key_id(key).tags(tag).send().await.unwrap();
    }
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"},
        {"Effect":"Allow","Action":"kms:DescribeKey","Resource":"arn:aws:kms:*:${aws:PrincipalAccount}:key/*"},
        {"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/frozen-for":"${aws:username}"}}}]}"#;
    let (_, _, user) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "vars", Some(policy)));
    let encrypt = |k: &str| user.encrypt().key_id(k).plaintext(pt()).send();
    assert_eq!(code(encrypt(&frozen).await), "AccessDeniedException");
    encrypt(&other).await.unwrap();
    user.describe_key().key_id(&frozen).send().await.unwrap();

    // The same statements in a document of Version 2008-10-17: the variables are text.
    let old = policy.replace("2012-10-17", "2008-10-17");
    let (_, _, older) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "vars-2008", Some(&old)));
    older
        .encrypt()
        .key_id(&other)
        .plaintext(pt())
        .send()
        .await
        .unwrap();
    assert_eq!(
        code(older.describe_key().key_id(&frozen).send().await),
        "AccessDeniedException"
    );
}

/// The global condition keys of the caller and the request (`aws:PrincipalType`,
/// `aws:username`, `aws:RequestedRegion`, `aws:EpochTime`) are set, so a Deny on each applies.
/// Before, none was set and none of these Denies applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_condition_keys_of_the_caller_are_set() {
    let s = Server::start().await;
    let c = s.client();
    let key = new_key(&c).await;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[
        {{"Effect":"Allow","Action":"kms:*","Resource":"*"}},
        {{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{{"StringEquals":{{"aws:PrincipalType":"User"}}}}}},
        {{"Effect":"Deny","Action":"kms:DescribeKey","Resource":"*","Condition":{{"StringEquals":{{"aws:username":"globals"}}}}}},
        {{"Effect":"Deny","Action":"kms:ListKeys","Resource":"*","Condition":{{"StringEquals":{{"aws:RequestedRegion":"{REGION}"}}}}}},
        {{"Effect":"Deny","Action":"kms:GenerateRandom","Resource":"*","Condition":{{"NumericGreaterThan":{{"aws:EpochTime":"1700000000"}}}}}}]}}"#
    );
    let (_, _, user) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "globals", Some(&policy)));
    let denied = |code: String| assert_eq!(code, "AccessDeniedException");
    denied(code(
        user.encrypt().key_id(&key).plaintext(pt()).send().await,
    ));
    denied(code(user.describe_key().key_id(&key).send().await));
    denied(code(user.list_keys().send().await));
    denied(code(user.generate_random().number_of_bytes(8).send().await));
    // Another user of the account is held to none of the username's Deny.
    let (_, _, other) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "globals-2", Some(&policy)));
    other.describe_key().key_id(&key).send().await.unwrap();

    // A role's session is an AssumedRole and has no user name.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/admin"},"Action":"sts:AssumeRole","Resource":"*"}]}"#;
    let role = tokio::task::block_in_place(|| s.create_role("123456789012", "globals", trust));
    let role_policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kms:*","Resource":"*"},
        {"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalType":"AssumedRole"}}},
        {"Effect":"Deny","Action":"kms:DescribeKey","Resource":"*","Condition":{"Null":{"aws:username":"false"}}}]}"#;
    tokio::task::block_in_place(|| s.put_user_policy(&role, "use", role_policy));
    let assumed = crate::roles::sts(&s, &s.access_key_id, &s.secret)
        .assume_role()
        .role_arn(&role)
        .role_session_name("globals")
        .send()
        .await
        .unwrap();
    let session = crate::roles::kms_with_session(&s, assumed.credentials().unwrap());
    denied(code(
        session.encrypt().key_id(&key).plaintext(pt()).send().await,
    ));
    session.describe_key().key_id(&key).send().await.unwrap();
}

/// Behind a reverse proxy listed in `trusted_proxies`, a request is the client's its
/// `X-Forwarded-For` names (the rightmost address that is not a trusted proxy), over TLS when
/// its `X-Forwarded-Proto` says so: an `aws:SourceIp` deny list applies to the clients, not to
/// the proxy, and no address a client writes to the left of its own is believed. Without the
/// setting the headers say nothing, so a client cannot choose its own `aws:SourceIp`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_forwards_its_clients_address_and_no_one_else_does() {
    let policy = r#"{"Version":"2012-10-17","Statement":[
        {"Effect":"Allow","Action":"kms:*","Resource":"*"},
        {"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}},
        {"Effect":"Deny","Action":"kms:DescribeKey","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("proxy.toml");
    std::fs::write(&conf, "trusted_proxies = [\"127.0.0.0/8\"]\n").unwrap();
    let behind = Server::start_with(&[("KMS_CONFIG", conf.to_str().unwrap())]).await;
    let direct = Server::start().await;
    for (s, trusted) in [(&behind, true), (&direct, false)] {
        let key = new_key(&s.client()).await;
        let (_, _, user) =
            tokio::task::block_in_place(|| s.new_user("123456789012", "proxied", Some(policy)));
        let encrypt = |forwarded: &'static str| {
            let mut call = user.encrypt().key_id(&key).plaintext(pt()).customize();
            if !forwarded.is_empty() {
                call = call.mutate_request(move |r| {
                    r.headers_mut().insert("x-forwarded-for", forwarded);
                });
            }
            call.send()
        };
        encrypt("").await.unwrap();
        for (forwarded, from_the_list) in [
            ("203.0.113.7", true),
            ("203.0.113.7, 127.0.0.1", true),
            ("198.51.100.1, 203.0.113.7", true),
            ("203.0.113.7, 198.51.100.1", false),
            ("203.0.113.7, not-an-address, 127.0.0.1", false),
        ] {
            let r = encrypt(forwarded).await;
            if trusted && from_the_list {
                assert_eq!(code(r), "AccessDeniedException", "{forwarded}");
            } else {
                r.unwrap_or_else(|e| panic!("{forwarded} (trusted {trusted}): {e:?}"));
            }
        }
        let describe = |proto: &'static str| {
            user.describe_key()
                .key_id(&key)
                .customize()
                .mutate_request(move |r| {
                    r.headers_mut().insert("x-forwarded-proto", proto);
                })
                .send()
        };
        assert_eq!(code(describe("http").await), "AccessDeniedException");
        let https = describe("https").await;
        if trusted {
            https.unwrap();
        } else {
            assert_eq!(code(https), "AccessDeniedException");
        }
    }
}

/// Encryption context keys that differ only in case (`Tenant`, `tenant`) are one condition
/// key, `kms:EncryptionContext:tenant`, to a policy. Before, it held the value of the key that
/// sorted last, so a caller chose which value its policy saw: allowed only `tenant=alice`, it
/// encrypted with `tenant=alice` beside `Tenant=bob`, and a Deny unless `tenant=alice` never
/// applied to it. Now an Allow's condition must hold for each such value, a Deny's for any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_context_keys_that_differ_only_in_case_cannot_choose_what_a_policy_sees() {
    let s = Server::start().await;
    let key = new_key(&s.client()).await;
    let scoped = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*","Condition":{"StringEquals":{"kms:EncryptionContext:tenant":"alice"}}}]}"#;
    let denied_unless = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"},{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*","Condition":{"StringNotEquals":{"kms:EncryptionContext:tenant":"alice"}}}]}"#;
    let (_, _, alice) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "alice", Some(scoped)));
    let (_, _, carol) =
        tokio::task::block_in_place(|| s.new_user("123456789012", "carol", Some(denied_unless)));
    for (who, user) in [("alice", &alice), ("carol", &carol)] {
        let encrypt = |pairs: &[(&str, &str)]| {
            let mut req = user.encrypt().key_id(&key).plaintext(pt());
            for (k, v) in pairs {
                req = req.encryption_context(*k, *v);
            }
            req.send()
        };
        // What the policy allows, alone and beside a twin that says the same.
        encrypt(&[("tenant", "alice")]).await.unwrap();
        encrypt(&[("Tenant", "alice"), ("tenant", "alice")])
            .await
            .unwrap_or_else(|e| panic!("{who}: {e:?}"));
        // A twin that says otherwise, on either side of the sort.
        for pairs in [
            [("Tenant", "bob"), ("tenant", "alice")],
            [("Tenant", "alice"), ("tenant", "bob")],
            [("TENANT", "bob"), ("tenant", "alice")],
        ] {
            assert_eq!(
                code(encrypt(&pairs).await),
                "AccessDeniedException",
                "{who} with {pairs:?}"
            );
        }
        assert_eq!(
            code(encrypt(&[("tenant", "bob")]).await),
            "AccessDeniedException"
        );
    }
}
