//! `kms admin …`: accounts, users, roles, access keys, identity policies, sealing reviewed
//! rows and carrying forward a live trail's ends after a restore. Each command is parsed here
//! and carried out, audited, by the domain's operator service
//! ([`crate::domain::operator::Operator`]).

use crate::config::Settings;
use crate::domain::operator::{admin_arn, Operator, Review};
use crate::server::wiring;
use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;

/// `kms admin …`: manage accounts, users, access keys and identity policies.
#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Create an account (a tenant).
    CreateAccount {
        #[arg(long)]
        account_id: String,
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Create a user in an account; prints its ARN.
    CreateUser {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        user_name: String,
    },
    /// Create a role (or replace its trust policy); prints its ARN. The trust policy (a JSON
    /// file) says who may assume it through STS AssumeRole.
    CreateRole {
        #[arg(long)]
        account_id: String,
        #[arg(long)]
        role_name: String,
        #[arg(long)]
        trust_policy: std::path::PathBuf,
    },
    /// Create an access key for a user; prints AWS_ACCESS_KEY_ID=… and, once,
    /// AWS_SECRET_ACCESS_KEY=…. With --access-key-id, imports an existing key whose secret is
    /// read from KMS_IMPORT_SECRET_ACCESS_KEY (never from the command line).
    CreateAccessKey {
        #[arg(long)]
        user_arn: String,
        #[arg(long)]
        access_key_id: Option<String>,
    },
    /// Deactivate an access key (it stops working on every node at once).
    DeactivateAccessKey {
        #[arg(long)]
        access_key_id: String,
    },
    /// Reactivate an access key.
    ActivateAccessKey {
        #[arg(long)]
        access_key_id: String,
    },
    /// Attach (or replace) a named identity policy of a user or role, read from a JSON file.
    PutUserPolicy {
        #[arg(long, alias = "role-arn", alias = "principal-arn")]
        user_arn: String,
        #[arg(long)]
        policy_name: String,
        #[arg(long)]
        policy_document: std::path::PathBuf,
    },
    /// Tag a user or role (`aws:PrincipalTag/<key>` in policy conditions).
    TagPrincipal {
        #[arg(long, alias = "user-arn", alias = "role-arn")]
        principal_arn: String,
        /// key=value
        #[arg(long)]
        tag: String,
    },
    /// Register a user or role as the identity of an integrated service: its requests carry
    /// `kms:ViaService` = `<service>.<region>.amazonaws.com` (AWS managed keys `alias/aws/<service>`
    /// allow exactly that). Without `--service`, the registration is removed.
    SetIntegratedService {
        #[arg(long, alias = "user-arn", alias = "role-arn")]
        principal_arn: String,
        /// The service's name as in `alias/aws/<service>`, e.g. `ebs` or `s3`.
        #[arg(long)]
        service: Option<String>,
    },
    /// Delete a user or role, with its access keys, sessions, policies and tags.
    DeletePrincipal {
        #[arg(long, alias = "user-arn", alias = "role-arn")]
        principal_arn: String,
    },
    /// Delete an access key.
    DeleteAccessKey {
        #[arg(long)]
        access_key_id: String,
    },
    /// Detach a named identity policy.
    DeleteUserPolicy {
        #[arg(long, alias = "role-arn", alias = "principal-arn")]
        user_arn: String,
        #[arg(long)]
        policy_name: String,
    },
    /// Rows stored before they carried a MAC (principals, key policies, key states) are
    /// refused until sealed. Without --confirm: show them, and the digest of what was shown.
    /// With --confirm <digest>: seal exactly those rows (refused if anything changed since).
    Seal {
        #[arg(long)]
        confirm: Option<String>,
    },
    /// After a restore from a backup: carry forward from the live trail (an export, verified
    /// with the audit public key) the ends that happened after the backup — keys deleted and
    /// grants retired or revoked — so the restored database does not revive them.
    CarryForwardEnds {
        /// `kms audit export` of the live trail (the whole trail, or its DeleteKey and
        /// GrantEnded events).
        #[arg(long)]
        live_trail: std::path::PathBuf,
        /// The audit public key (`kms audit public-key`) the trail's checkpoints verify with.
        #[arg(long)]
        public_key: std::path::PathBuf,
    },
}

pub async fn run(s: &Settings, cmd: AdminCommand) -> Result<()> {
    let op = wiring::open_operator(s).await?;
    if let AdminCommand::Seal { confirm: None } = cmd {
        // Showing changes nothing: not audited.
        return show_unsealed(&op).await;
    }
    if let AdminCommand::DeletePrincipal { principal_arn } = &cmd {
        // Its access keys go first, each as its own recorded DeleteAccessKey: a key's row
        // saved and put back once a principal of the same name exists again is then refused
        // by the trail, as a key deleted on its own is.
        op.check_deletable(principal_arn, &admin_arn(&s.account_id))
            .await?;
        for id in op.access_key_ids_of(principal_arn).await? {
            let detail = serde_json::json!({ "principal": principal_arn });
            op.audited("DeleteAccessKey", &id, detail, op.delete_access_key(&id))
                .await?;
            eprintln!("kms admin: access key {id} of {principal_arn} deleted");
        }
    }
    // A new access key's id is drawn before its creation is recorded, so that the event names
    // it: a principal deleted after that event ends the key, whatever the database shows.
    let generated = match &cmd {
        AdminCommand::CreateAccessKey {
            access_key_id: None,
            ..
        } => Some(op.new_access_key().await?),
        _ => None,
    };
    let (action, target, mut detail) = describe_admin(&cmd);
    if let Some((id, _)) = &generated {
        detail["access_key_id"] = serde_json::json!(id);
    }
    op.audited(action, &target, detail, execute(s, &op, cmd, generated))
        .await
}

/// `kms admin seal` without `--confirm`: the rows without a MAC, and the digest to seal them.
async fn show_unsealed(op: &Operator) -> Result<()> {
    let review = op.review().await?;
    refused(&review);
    for r in &review.rows {
        println!("{}", r.shown);
    }
    if review.rows.is_empty() {
        eprintln!("kms admin: no row can be sealed");
    } else {
        eprintln!(
            "kms admin: {} rows above carry no MAC and are refused. Review them; to seal exactly these: kms admin seal --confirm {}",
            review.rows.len(),
            review.digest()
        );
    }
    Ok(())
}

/// Rows of a kind the trail says every row carried (a SealCoverage event) had their MAC
/// removed: tampering, never offered for sealing.
fn refused(review: &Review) {
    for r in &review.refused {
        eprintln!(
            "kms admin: REFUSED {}: it has no MAC, but every row of its kind carried one when the trail's SealCoverage event {} was recorded; its MAC was removed in the database. It is never sealed: restore the row from a backup, or delete it",
            r.name,
            review.coverage_seq.unwrap_or_default()
        );
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

async fn execute(
    s: &Settings,
    op: &Operator,
    cmd: AdminCommand,
    generated: Option<(String, SecretString)>,
) -> Result<()> {
    match cmd {
        AdminCommand::CreateAccount { account_id, name } => {
            op.create_account(&account_id, &name).await?;
            eprintln!("kms admin: account {account_id} exists");
        }
        AdminCommand::CreateUser {
            account_id,
            user_name,
        } => println!("{}", op.create_user(&account_id, &user_name, false).await?),
        AdminCommand::CreateRole {
            account_id,
            role_name,
            trust_policy,
        } => {
            let text = read(&trust_policy)?;
            println!("{}", op.put_role(&account_id, &role_name, &text).await?);
        }
        AdminCommand::CreateAccessKey {
            user_arn,
            access_key_id: Some(id),
        } => {
            let secret = std::env::var("KMS_IMPORT_SECRET_ACCESS_KEY")
                .context("set KMS_IMPORT_SECRET_ACCESS_KEY to the secret to import")?;
            op.import_access_key(&user_arn, &id, &SecretString::from(secret))
                .await?;
            println!("AWS_ACCESS_KEY_ID={id}");
        }
        AdminCommand::CreateAccessKey {
            user_arn,
            access_key_id: None,
        } => {
            let (id, secret) =
                generated.context("a new access key is drawn before it is created")?;
            op.import_access_key(&user_arn, &id, &secret).await?;
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={}", secret.expose_secret());
        }
        AdminCommand::DeactivateAccessKey { access_key_id } => {
            op.set_access_key_status(&access_key_id, false).await?;
            eprintln!("kms admin: access key {access_key_id} deactivated");
        }
        AdminCommand::ActivateAccessKey { access_key_id } => {
            op.set_access_key_status(&access_key_id, true).await?;
            eprintln!("kms admin: access key {access_key_id} activated");
        }
        AdminCommand::PutUserPolicy {
            user_arn,
            policy_name,
            policy_document,
        } => {
            let text = read(&policy_document)?;
            op.put_principal_policy(&user_arn, &policy_name, &text)
                .await?;
            eprintln!("kms admin: policy {policy_name} attached to {user_arn}");
        }
        AdminCommand::DeleteUserPolicy {
            user_arn,
            policy_name,
        } => {
            op.delete_principal_policy(&user_arn, &policy_name).await?;
            eprintln!("kms admin: policy {policy_name} detached from {user_arn}");
        }
        AdminCommand::TagPrincipal { principal_arn, tag } => {
            let (k, v) = tag.split_once('=').context("tags are given as key=value")?;
            op.tag_principal(&principal_arn, k, v).await?;
            eprintln!("kms admin: {principal_arn} tagged {k}={v}");
        }
        AdminCommand::SetIntegratedService {
            principal_arn,
            service,
        } => {
            op.set_integrated_service(&principal_arn, service.as_deref())
                .await?;
            match service {
                Some(svc) => {
                    eprintln!("kms admin: {principal_arn} now acts as the integrated service {svc}")
                }
                None => eprintln!("kms admin: {principal_arn} is no longer an integrated service"),
            }
        }
        AdminCommand::DeletePrincipal { principal_arn } => {
            let f = op
                .delete_principal(&principal_arn, &admin_arn(&s.account_id))
                .await?;
            eprintln!(
                "kms admin: {principal_arn} deleted; {} key policies and {} trust policies now name it {}",
                f.key_policies, f.trust_policies, f.unique_id
            );
        }
        AdminCommand::DeleteAccessKey { access_key_id } => {
            op.delete_access_key(&access_key_id).await?;
            eprintln!("kms admin: access key {access_key_id} deleted");
        }
        AdminCommand::CarryForwardEnds {
            live_trail,
            public_key,
        } => {
            let text = read(&live_trail)?;
            let key = super::audit::read_public_key(&public_key)?;
            let source = live_trail.display().to_string();
            let c = op.carry_forward_ends(&text, &source, &key).await?;
            eprintln!(
                "kms admin: carried forward {} key deletions, {} grant ends and {} access key deactivations or deletions from {source} (events up to {}, the last signed checkpoint)",
                c.keys, c.grants, c.access_keys, c.signed_to
            );
        }
        AdminCommand::Seal { confirm } => {
            let review = op.review().await?;
            refused(&review);
            op.seal(&review, confirm.as_deref().unwrap_or_default(), |name| {
                eprintln!("kms admin: sealed {name}")
            })
            .await?;
        }
    }
    Ok(())
}

/// The audit record of an admin command: never a secret (secrets are not arguments).
fn describe_admin(cmd: &AdminCommand) -> (&'static str, String, serde_json::Value) {
    use serde_json::json;
    match cmd {
        AdminCommand::CreateAccount { account_id, name } => {
            ("CreateAccount", account_id.clone(), json!({ "name": name }))
        }
        AdminCommand::CreateUser {
            account_id,
            user_name,
        } => (
            "CreateUser",
            format!("arn:aws:iam::{account_id}:user/{user_name}"),
            json!({}),
        ),
        AdminCommand::CreateRole {
            account_id,
            role_name,
            ..
        } => (
            "CreateRole",
            format!("arn:aws:iam::{account_id}:role/{role_name}"),
            json!({}),
        ),
        AdminCommand::CreateAccessKey {
            user_arn,
            access_key_id,
        } => (
            "CreateAccessKey",
            user_arn.clone(),
            json!({ "imported": access_key_id.is_some(), "access_key_id": access_key_id }),
        ),
        AdminCommand::DeactivateAccessKey { access_key_id } => {
            ("DeactivateAccessKey", access_key_id.clone(), json!({}))
        }
        AdminCommand::ActivateAccessKey { access_key_id } => {
            ("ActivateAccessKey", access_key_id.clone(), json!({}))
        }
        AdminCommand::PutUserPolicy {
            user_arn,
            policy_name,
            ..
        } => (
            "PutPrincipalPolicy",
            user_arn.clone(),
            json!({ "policy_name": policy_name }),
        ),
        AdminCommand::DeleteUserPolicy {
            user_arn,
            policy_name,
        } => (
            "DeletePrincipalPolicy",
            user_arn.clone(),
            json!({ "policy_name": policy_name }),
        ),
        AdminCommand::TagPrincipal { principal_arn, tag } => {
            ("TagPrincipal", principal_arn.clone(), json!({ "tag": tag }))
        }
        AdminCommand::SetIntegratedService {
            principal_arn,
            service,
        } => (
            "SetIntegratedService",
            principal_arn.clone(),
            json!({ "service": service }),
        ),
        AdminCommand::DeletePrincipal { principal_arn } => {
            ("DeletePrincipal", principal_arn.clone(), json!({}))
        }
        AdminCommand::DeleteAccessKey { access_key_id } => {
            ("DeleteAccessKey", access_key_id.clone(), json!({}))
        }
        AdminCommand::Seal { confirm } => ("SealRows", "*".into(), json!({ "digest": confirm })),
        AdminCommand::CarryForwardEnds { live_trail, .. } => (
            "CarryForwardEnds",
            "*".into(),
            json!({ "liveTrail": live_trail.display().to_string() }),
        ),
    }
}
