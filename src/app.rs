//! `kms init` and `kms serve`: wiring of the layers, and start-up checks that fail fast with
//! one sentence an operator can act on.

use crate::api::{self, ApiState};
use crate::config::Settings;
use crate::domain::root::current_and_backlog;
use crate::domain::{CacheSizes, Kms};
use crate::hsm::{root_key_label, Hsm, HsmConfig};
use crate::store::{PrincipalChange, Store};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::Duration;

pub type Error = String;

pub async fn connect_store(s: &Settings) -> Result<Arc<dyn Store>, Error> {
    let store = crate::store::connect(
        &s.database_url,
        s.database_max_connections,
        s.commit_timeout(),
    )
    .await
    .map_err(|e| {
        let what = if s.database_url.starts_with("sqlite:") {
            "the SQLite database cannot be opened"
        } else {
            "Postgres is unreachable"
        };
        format!("{what} at {}: {e}", s.database_url_redacted())
    })?;
    // A database a newer release migrated is never served, migrated or changed by this one,
    // unless that release's migrations were additive for this build (its schema floor).
    let v = store.schema_versions().await.map_err(|e| e.to_string())?;
    crate::store::refuse_newer_schema(v)?;
    Ok(store)
}

/// [`connect_store`] for a command that does not migrate (`kms admin`, `kms hsm`, `kms backup`):
/// a database an older release left (this release's migrations not applied yet) is refused
/// in one sentence, before this build reads tables that are not there.
async fn connect_migrated_store(s: &Settings) -> Result<Arc<dyn Store>, Error> {
    let store = connect_store(s).await?;
    let v = store.schema_versions().await.map_err(|e| e.to_string())?;
    if v.database > 0 && v.database < v.build {
        return Err(format!(
            "the database's schema is at version {}, older than this build's {}: run this release's `kms init` (or start its `kms serve`) first, which migrates it",
            v.database, v.build
        ));
    }
    Ok(store)
}

pub async fn open_hsm(s: &Settings) -> Result<Hsm, Error> {
    let cfg = HsmConfig {
        module: s.hsm.module.clone(),
        token_label: s.hsm.token_label.clone(),
        failover_labels: s.hsm.failover_labels.clone(),
        pin: s.pin()?,
        pin_file: s
            .hsm
            .pin
            .is_none()
            .then(|| s.hsm.pin_file.clone())
            .flatten(),
        pool_size: s.hsm.session_pool_size,
        inline_calls: s.hsm.inline_calls,
    };
    tokio::task::spawn_blocking(move || Hsm::open(&cfg))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

pub const ADMIN_POLICY_NAME: &str = "KMSFullAccess";
pub const ADMIN_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"KMSFullAccess","Effect":"Allow","Action":"kms:*","Resource":"*"}]}"#;

pub fn admin_arn(account_id: &str) -> String {
    format!("arn:aws:iam::{account_id}:user/admin")
}

/// Idempotent bootstrap. Prints the administrator's credentials (once) on stdout.
pub async fn init(s: &Settings) -> Result<(), Error> {
    let store = connect_store(s).await?;
    store.migrate().await.map_err(|e| e.to_string())?;
    let hsm = open_hsm(s).await?;
    let recorded = store
        .current_root_version()
        .await
        .map_err(|e| e.to_string())?;
    match recorded {
        Some(v) => {
            // Blobs may already be wrapped under this root key: never replace it.
            let mac_version = store
                .current_mac_version()
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or(1) as u32;
            let h = hsm.clone();
            tokio::task::spawn_blocking(move || {
                if mac_version > 1 {
                    h.load_mac_key(h.newest_mac_key_from(mac_version)?)?;
                }
                // A pool's other tokens get the keys (or are checked to hold the same ones).
                for line in h.replicate_service_keys(v as u32)? {
                    eprintln!("kms init: {line}");
                }
                h.load_service_keys(v as u32)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!(
                    "the database records root key v{v} but the token cannot provide it ({e}); \
                         restore the token or use a fresh database"
                )
            })?;
            eprintln!("kms init: token keys verified (root key v{v})");
        }
        None => {
            let h = hsm.clone();
            let (root, mac) = tokio::task::spawn_blocking(move || h.ensure_service_keys(1))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            eprintln!(
                "kms init: root wrapping key {}, metadata MAC key {}",
                if root { "created" } else { "verified" },
                if mac { "created" } else { "verified" }
            );
            store
                .ensure_root_key(1, &root_key_label(1))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let h = hsm.clone();
    let audit_created = tokio::task::spawn_blocking(move || h.ensure_audit_key())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    eprintln!(
        "kms init: audit signing key {}",
        if audit_created { "created" } else { "verified" }
    );
    if hsm.is_pool() {
        let version = store
            .current_root_version()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the database records no root key")? as u32;
        let h = hsm.clone();
        let report = tokio::task::spawn_blocking(move || {
            let report = h.replicate_service_keys(version)?;
            h.load_service_keys(version)?;
            Ok::<_, crate::hsm::HsmError>(report)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("copying the service keys to the pool's tokens failed: {e}"))?;
        for line in report {
            eprintln!("kms init: {line}");
        }
    }
    store
        .ensure_account(&s.account_id, "default")
        .await
        .map_err(|e| e.to_string())?;
    let kms = Kms::new(
        hsm,
        store.clone(),
        store.clone(),
        store.clone(),
        &cache_sizes(s),
        s.regions.clone(),
    );
    // The administrator, created (or verified) and given its policy through the same guarded
    // change as every `kms admin` command: an administrator row that fails its check stops
    // `kms init` here, naming it, instead of being sealed as found.
    let admin = admin_arn(&s.account_id);
    let change = |c: PrincipalChange| {
        let (kms, admin) = (&kms, admin.clone());
        async move {
            kms.change_principal(&admin, &c)
                .await
                .map_err(|e| e.to_string())
        }
    };
    change(PrincipalChange::CreateUser {
        account_id: s.account_id.clone(),
        name: "admin".into(),
        admin: true,
    })
    .await?;
    // The default key policy trusts the account, which delegates to identity policies: the
    // administrator gets all of KMS through one (replace it with `kms admin` to narrow it).
    if !store
        .identity_policies(&admin)
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .any(|(n, _)| n == ADMIN_POLICY_NAME)
    {
        change(PrincipalChange::PutPolicy {
            name: ADMIN_POLICY_NAME.into(),
            document: ADMIN_POLICY.into(),
        })
        .await?;
    }
    // Rows stored before they carried a MAC are not sealed here: an operator reviews and
    // seals them with `kms admin seal`.
    let unsealed = unsealed_rows(&kms).await?;
    if !unsealed.is_empty() {
        eprintln!(
            "kms init: {} rows carry no MAC and are refused until an operator reviews and seals them: run `kms admin seal`",
            unsealed.len()
        );
    } else if sealed_coverage(store.as_ref()).await?.1.len() < MAC_KINDS.len() {
        // Every row carries every MAC: from now on a MAC missing is a MAC removed.
        record_coverage(s, store.as_ref()).await?;
    }
    let given_id = std::env::var("KMS_ADMIN_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let given_secret = std::env::var("KMS_ADMIN_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty())
        .map(SecretString::from);
    let existing = store
        .access_keys_of(&admin)
        .await
        .map_err(|e| e.to_string())?;
    match (given_id, given_secret) {
        (Some(id), Some(secret)) => {
            if let Some(found) = store.access_key(&id).await.map_err(|e| e.to_string())? {
                if found.principal_arn != admin {
                    return Err(format!(
                        "access key {id} already belongs to {}",
                        found.principal_arn
                    ));
                }
                eprintln!("kms init: administrator access key {id} already present");
            } else {
                kms.credentials
                    .import(&admin, &id, &secret)
                    .await
                    .map_err(|e| format!("cannot import the administrator's key: {e}"))?;
                eprintln!("kms init: administrator access key {id} imported from the environment");
            }
            println!("AWS_ACCESS_KEY_ID={id}");
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(
                "set both KMS_ADMIN_ACCESS_KEY_ID and KMS_ADMIN_SECRET_ACCESS_KEY, or neither"
                    .into(),
            );
        }
        (None, None) if !existing.is_empty() => {
            eprintln!(
                "kms init: the administrator already has access key {}; its secret was shown when it was created",
                existing[0].access_key_id
            );
            println!("AWS_ACCESS_KEY_ID={}", existing[0].access_key_id);
        }
        (None, None) => {
            let (id, secret) = kms
                .credentials
                .create(&admin)
                .await
                .map_err(|e| format!("cannot create the administrator's key: {e}"))?;
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={}", secret.expose_secret());
        }
    }
    Ok(())
}

fn cache_sizes(s: &Settings) -> CacheSizes {
    CacheSizes {
        key_metadata: s.cache.key_metadata,
        key_handles: s.cache.key_handles,
        signing_keys: s.cache.signing_keys,
    }
}

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

/// Backups: check what a restore would get.
#[derive(clap::Subcommand, Debug)]
pub enum BackupCommand {
    /// Against the configured database (a restored backup) and token: every key's rows pass
    /// their checks and every material version unwraps under the token, without any key
    /// material leaving it. Exits non-zero, naming each key that fails.
    Verify,
}

pub async fn backup(s: &Settings, cmd: BackupCommand) -> Result<(), Error> {
    match cmd {
        BackupCommand::Verify => {
            let store = connect_migrated_store(s).await?;
            if !store.is_initialised().await.map_err(|e| e.to_string())? {
                return Err(
                    "the database has no schema: it is not a backup of this service".into(),
                );
            }
            let kms = open_kms(s, store.clone()).await?;
            let ids = store.all_key_ids().await.map_err(|e| e.to_string())?;
            let (mut keys, mut versions, mut failed) = (0usize, 0usize, Vec::new());
            for id in ids {
                match kms.verify_key_material(id).await {
                    Ok(n) => {
                        keys += 1;
                        versions += n;
                    }
                    Err(e) => failed.push(format!("{id}: {e}")),
                }
            }
            println!(
                "kms backup verify: {keys} keys pass their checks; {versions} material versions unwrap under token '{}'",
                s.hsm.token_label
            );
            if failed.is_empty() {
                Ok(())
            } else {
                for f in &failed {
                    eprintln!("kms backup verify: FAILED {f}");
                }
                Err(format!(
                    "{} keys of this backup do not verify under token '{}' (listed above): a backup of another deployment, a token that is not this backup's, or rows altered",
                    failed.len(),
                    s.hsm.token_label
                ))
            }
        }
    }
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// Who ran `kms admin`, for the audit trail.
fn operator() -> String {
    std::env::var("KMS_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into())
}

pub async fn admin(s: &Settings, cmd: AdminCommand) -> Result<(), Error> {
    let store = connect_migrated_store(s).await?;
    let (action, target, detail) = describe_admin(&cmd);
    if !store.is_initialised().await.map_err(|e| e.to_string())? {
        return Err("the database has no schema; run `kms init` first".into());
    }
    let err = |e: crate::store::StoreError| e.to_string();
    // The token first: a command that cannot seal what it changes changes nothing.
    let kms = open_kms(s, store.clone()).await?;
    // The command's intent is in the trail before anything changes: a trail that cannot take
    // it leaves the database as it was. (Showing the unsealed rows changes nothing.)
    if !matches!(cmd, AdminCommand::Seal { confirm: None }) {
        crate::audit::record_direct(
            store.as_ref(),
            crate::audit::admin_intent_event(action, &target, &operator(), detail.clone()),
            open_anchor(s)?.as_deref(),
        )
        .await
        .map_err(|e| {
            format!("the audit trail cannot record this command, so nothing was changed: {e}")
        })?;
    }
    let change = |arn: String, c: PrincipalChange| {
        let kms = &kms;
        async move {
            kms.change_principal(&arn, &c)
                .await
                .map_err(|e| e.to_string())
        }
    };
    let need_principal = |arn: String| {
        let store = store.clone();
        async move {
            if store.principal_exists(&arn).await.map_err(err)? {
                Ok(())
            } else {
                Err(format!(
                    "no user {arn}; create it with `kms admin create-user`"
                ))
            }
        }
    };
    // The command's event is prepared now: every write transaction of the command carries
    // it as the change's record, so the change and the record that it committed are durable
    // together; the event itself is chained once the command is done.
    let done = crate::audit::admin_event(action, &target, &operator(), detail.clone());
    let record = if matches!(cmd, AdminCommand::Seal { confirm: None }) {
        None
    } else {
        Some(std::sync::Arc::new(
            crate::audit::change_record_of(kms.hsm(), done.clone())
                .await
                .map_err(|e| {
                    format!(
                        "the token cannot seal this command's record, so nothing was changed: {e}"
                    )
                })?,
        ))
    };
    let settles = record.as_ref().map(|r| r.event.event_id);
    let written = record
        .as_ref()
        .map(|r| r.written.clone())
        .unwrap_or_default();
    let changed = crate::store::in_change(record, async {
        match cmd {
            AdminCommand::CreateAccount { account_id, name } => {
                if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("account ids are 12 digits, not '{account_id}'"));
                }
                store
                    .ensure_account(&account_id, &name)
                    .await
                    .map_err(err)?;
                eprintln!("kms admin: account {account_id} exists");
            }
            AdminCommand::CreateUser {
                account_id,
                user_name,
            } => {
                if !store.account_exists(&account_id).await.map_err(err)? {
                    return Err(format!(
                        "no account {account_id}; create it with `kms admin create-account`"
                    ));
                }
                if !valid_name(&user_name) {
                    return Err("user names are 1 to 64 letters, digits and +=,.@_-".into());
                }
                let arn = format!("arn:aws:iam::{account_id}:user/{user_name}");
                change(
                    arn.clone(),
                    PrincipalChange::CreateUser {
                        account_id,
                        name: user_name,
                        admin: false,
                    },
                )
                .await?;
                println!("{arn}");
            }
            AdminCommand::CreateRole {
                account_id,
                role_name,
                trust_policy,
            } => {
                if !store.account_exists(&account_id).await.map_err(err)? {
                    return Err(format!(
                        "no account {account_id}; create it with `kms admin create-account`"
                    ));
                }
                if !valid_name(&role_name) {
                    return Err("role names are 1 to 64 letters, digits and +=,.@_-".into());
                }
                let text = std::fs::read_to_string(&trust_policy)
                    .map_err(|e| format!("cannot read {}: {e}", trust_policy.display()))?;
                crate::policy::parse(&text, crate::policy::PolicyKind::Key)
                    .map_err(|e| format!("the trust policy is not valid: {e}"))?;
                let arn = format!("arn:aws:iam::{account_id}:role/{role_name}");
                change(
                    arn.clone(),
                    PrincipalChange::PutRole {
                        account_id,
                        name: role_name,
                        trust_policy: text,
                    },
                )
                .await?;
                println!("{arn}");
            }
            AdminCommand::CreateAccessKey {
                user_arn,
                access_key_id,
            } => {
                need_principal(user_arn.clone()).await?;
                match access_key_id {
                    Some(id) => {
                        let secret = std::env::var("KMS_IMPORT_SECRET_ACCESS_KEY").map_err(|_| {
                            "set KMS_IMPORT_SECRET_ACCESS_KEY to the secret to import".to_string()
                        })?;
                        kms.credentials
                            .import(&user_arn, &id, &SecretString::from(secret))
                            .await
                            .map_err(|e| e.to_string())?;
                        println!("AWS_ACCESS_KEY_ID={id}");
                    }
                    None => {
                        let (id, secret) = kms
                            .credentials
                            .create(&user_arn)
                            .await
                            .map_err(|e| e.to_string())?;
                        println!("AWS_ACCESS_KEY_ID={id}");
                        println!("AWS_SECRET_ACCESS_KEY={}", secret.expose_secret());
                    }
                }
            }
            AdminCommand::DeactivateAccessKey { access_key_id } => {
                kms.credentials
                    .set_status(&access_key_id, false)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("kms admin: access key {access_key_id} deactivated");
            }
            AdminCommand::ActivateAccessKey { access_key_id } => {
                kms.credentials
                    .set_status(&access_key_id, true)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!("kms admin: access key {access_key_id} activated");
            }
            AdminCommand::PutUserPolicy {
                user_arn,
                policy_name,
                policy_document,
            } => {
                need_principal(user_arn.clone()).await?;
                let text = std::fs::read_to_string(&policy_document)
                    .map_err(|e| format!("cannot read {}: {e}", policy_document.display()))?;
                crate::policy::parse(&text, crate::policy::PolicyKind::Identity)
                    .map_err(|e| format!("the policy document is not valid: {e}"))?;
                if !(1..=128).contains(&policy_name.len())
                    || !policy_name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
                {
                    return Err("policy names are 1 to 128 letters, digits and +=,.@_-".into());
                }
                change(
                    user_arn.clone(),
                    PrincipalChange::PutPolicy {
                        name: policy_name.clone(),
                        document: text,
                    },
                )
                .await?;
                eprintln!("kms admin: policy {policy_name} attached to {user_arn}");
            }
            AdminCommand::DeleteUserPolicy {
                user_arn,
                policy_name,
            } => {
                need_principal(user_arn.clone()).await?;
                change(
                    user_arn.clone(),
                    PrincipalChange::DeletePolicy {
                        name: policy_name.clone(),
                    },
                )
                .await?;
                eprintln!("kms admin: policy {policy_name} detached from {user_arn}");
            }
            AdminCommand::TagPrincipal { principal_arn, tag } => {
                need_principal(principal_arn.clone()).await?;
                let (k, v) = tag.split_once('=').ok_or("tags are given as key=value")?;
                if !(1..=128).contains(&k.len()) || v.len() > 256 {
                    return Err("tag keys are 1 to 128 characters, values at most 256".into());
                }
                change(
                    principal_arn.clone(),
                    PrincipalChange::PutTag(crate::store::Tag {
                        key: k.into(),
                        value: v.into(),
                    }),
                )
                .await?;
                eprintln!("kms admin: {principal_arn} tagged {k}={v}");
            }
            AdminCommand::SetIntegratedService {
                principal_arn,
                service,
            } => {
                if let Some(svc) = &service {
                    let ok = (1..=63).contains(&svc.len())
                        && svc
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                        && !svc.starts_with('-');
                    if !ok {
                        return Err(format!(
                            "{svc:?} is not a service name (lower-case letters, digits and '-')"
                        ));
                    }
                }
                if !store.principal_exists(&principal_arn).await.map_err(err)? {
                    return Err(format!("no user or role {principal_arn}"));
                }
                change(
                    principal_arn.clone(),
                    PrincipalChange::SetService(service.clone()),
                )
                .await?;
                match service {
                    Some(svc) => {
                        eprintln!("kms admin: {principal_arn} now acts as the integrated service {svc}")
                    }
                    None => eprintln!("kms admin: {principal_arn} is no longer an integrated service"),
                }
            }
            AdminCommand::DeletePrincipal { principal_arn } => {
                if principal_arn == admin_arn(&s.account_id) {
                    return Err("the default account's administrator cannot be deleted".into());
                }
                if !store.principal_exists(&principal_arn).await.map_err(err)? {
                    return Err(format!("no user or role {principal_arn}"));
                }
                // First the policies naming it name its unique id instead (as AWS shows a deleted
                // principal), so one re-created with the same name inherits nothing; then it goes.
                let f = kms
                    .forget_principal(&principal_arn)
                    .await
                    .map_err(|e| e.to_string())?;
                if !store.delete_principal(&principal_arn).await.map_err(err)? {
                    return Err(format!("no user or role {principal_arn}"));
                }
                eprintln!(
                    "kms admin: {principal_arn} deleted; {} key policies and {} trust policies now name it {}",
                    f.key_policies, f.trust_policies, f.unique_id
                );
            }
            AdminCommand::DeleteAccessKey { access_key_id } => {
                if !store.delete_access_key(&access_key_id).await.map_err(err)? {
                    return Err(format!("access key {access_key_id} does not exist"));
                }
                eprintln!("kms admin: access key {access_key_id} deleted");
            }
            AdminCommand::CarryForwardEnds {
                live_trail,
                public_key,
            } => {
                carry_forward_ends(s, store.as_ref(), &live_trail, &public_key).await?;
            }
            AdminCommand::Seal { confirm } => {
                // Rows of a kind the trail says every row carried (a SealCoverage event) had their
                // MAC removed: tampering, never offered for sealing.
                let (coverage_seq, covered) = sealed_coverage(store.as_ref()).await?;
                let (cleared, rows): (Vec<UnsealedRow>, Vec<UnsealedRow>) = unsealed_rows(&kms)
                    .await?
                    .into_iter()
                    .partition(|r| covered.iter().any(|k| k == r.row.kind()));
                for r in &cleared {
                    eprintln!(
                        "kms admin: REFUSED {}: it has no MAC, but every row of its kind carried one when the trail's SealCoverage event {} was recorded; its MAC was removed in the database. It is never sealed: restore the row from a backup, or delete it",
                        r.name,
                        coverage_seq.unwrap_or_default()
                    );
                }
                let digest = rows_digest(&rows);
                let Some(confirm) = confirm else {
                    for r in &rows {
                        println!("{}", r.shown);
                    }
                    if rows.is_empty() {
                        eprintln!("kms admin: no row can be sealed");
                    } else {
                        eprintln!(
                            "kms admin: {} rows above carry no MAC and are refused. Review them; to seal exactly these: kms admin seal --confirm {digest}",
                            rows.len()
                        );
                    }
                    // Showing changes nothing: not audited.
                    return Ok(false);
                };
                if rows.is_empty() || confirm != digest {
                    return Err(format!(
                        "the rows without a MAC are not those of digest {confirm} (now {digest}); run `kms admin seal` again and review them"
                    ));
                }
                for r in &rows {
                    let sealed = match &r.row {
                        Unsealed::Principal(arn, a) => {
                            kms.seal_reviewed_principal(arn, a).await.map(|_| true)
                        }
                        Unsealed::KeyPolicy(k) => kms.seal_reviewed_policy(k).await,
                        Unsealed::KeyState(k) => kms.seal_reviewed_state(k).await,
                        Unsealed::Alias(a) => kms.seal_reviewed_alias(a).await,
                        Unsealed::KeyAttrs(k) => kms.seal_reviewed_attrs(k).await,
                        Unsealed::KeyRotation(k) => kms.seal_reviewed_rotation(k).await,
                        Unsealed::KeyTags(k, t) => kms.seal_reviewed_tags(k, t).await,
                    }
                    .map_err(|e| e.to_string())?;
                    if !sealed {
                        return Err(format!(
                            "{} changed after it was shown; it was not sealed (rows before it were). Run `kms admin seal` again",
                            r.name
                        ));
                    }
                    eprintln!("kms admin: sealed {}", r.name);
                }
                let (_, left): (Vec<UnsealedRow>, Vec<UnsealedRow>) = unsealed_rows(&kms)
                    .await?
                    .into_iter()
                    .partition(|r| covered.iter().any(|k| k == r.row.kind()));
                if left.is_empty() {
                    record_coverage(s, store.as_ref()).await?;
                }
            }
        }
        store
            .record_admin_event(&operator(), action, &target, detail.clone())
            .await
            .map_err(err)?;
        Ok::<bool, Error>(true)
    })
    .await?;
    if !changed {
        return Ok(());
    }
    let done = crate::audit::with_generations(done, &written);
    crate::audit::record_direct_settling(store.as_ref(), done, settles, open_anchor(s)?.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// `kms admin carry-forward-ends`: the live trail's key deletions and grant ends, signed
/// by its checkpoints, recorded in this (restored) trail where they are missing, so the
/// deleted-key and ended-grant checks refuse the rows the backup brought back.
async fn carry_forward_ends(
    s: &Settings,
    store: &dyn Store,
    live_trail: &std::path::Path,
    public_key: &std::path::Path,
) -> Result<(), Error> {
    let text = std::fs::read_to_string(live_trail)
        .map_err(|e| format!("cannot read {}: {e}", live_trail.display()))?;
    let (links, checkpoints) = crate::audit::verify::parse_export(&text)?;
    let key = read_public_key(public_key)?;
    let report = crate::audit::verify::verify(&links, &checkpoints, &key, false, None);
    if let Some((seq, problem)) = report.problems.first() {
        return Err(format!(
            "the live trail {} does not verify (event {seq}: {problem}); nothing was carried forward",
            live_trail.display()
        ));
    }
    // Only what a signed checkpoint covers: events past the last one could have been written
    // by anyone who edited the export.
    let signed_to = checkpoints.iter().map(|c| c.seq).max().unwrap_or(0);
    let anchor = open_anchor(s)?;
    let (mut keys, mut grants) = (0, 0);
    for l in links.iter().filter(|l| l.seq <= signed_to) {
        let Some(body) = &l.body else { continue };
        let v: serde_json::Value = serde_json::from_str(body)
            .map_err(|_| format!("event {} of the live trail is not JSON", l.seq))?;
        let name = v["eventName"].as_str().unwrap_or_default();
        let by_service =
            v.pointer("/userIdentity/type").and_then(|t| t.as_str()) == Some("AWSService");
        let (Some(arn), Some(region)) = (
            v.pointer("/resources/0/ARN").and_then(|a| a.as_str()),
            v["awsRegion"].as_str(),
        ) else {
            continue;
        };
        let from = serde_json::json!({ "seq": l.seq, "eventId": v["eventID"], "eventTime": v["eventTime"] });
        let event = match name {
            "DeleteKey" if by_service => {
                if store
                    .deleted_per_trail(arn, chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    continue;
                }
                keys += 1;
                crate::audit::service_event(
                    "DeleteKey",
                    arn,
                    region,
                    serde_json::json!({
                        "reason": "deleted in the live trail after the backup this database was restored from",
                        "carriedForwardFrom": from,
                    }),
                )
            }
            crate::audit::GRANT_ENDED_EVENT if by_service => {
                let Some(grant) = crate::audit::ended_grant_id(body) else {
                    continue;
                };
                let ended = store
                    .ended_grants_per_trail(arn)
                    .await
                    .map_err(|e| e.to_string())?;
                if ended
                    .iter()
                    .any(|b| crate::audit::ended_grant_id(b).as_ref() == Some(&grant))
                {
                    continue;
                }
                grants += 1;
                crate::audit::service_event(
                    crate::audit::GRANT_ENDED_EVENT,
                    arn,
                    region,
                    serde_json::json!({
                        "grantId": grant,
                        "operation": v.pointer("/additionalEventData/operation"),
                        "carriedForwardFrom": from,
                    }),
                )
            }
            _ => continue,
        };
        crate::audit::record_direct(store, event, anchor.as_deref())
            .await
            .map_err(|e| e.to_string())?;
    }
    eprintln!(
        "kms admin: carried forward {keys} key deletions and {grants} grant ends from {} (events up to {signed_to}, the last signed checkpoint)",
        live_trail.display()
    );
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

/// Every kind of row MAC. A `SealCoverage` event in the trail lists the kinds every row
/// carried when it was recorded (by `kms init` on a database with nothing unsealed, and by
/// `kms admin seal` once nothing is left to seal); afterwards a row of such a kind without its
/// MAC had it removed in the database.
const MAC_KINDS: &[&str] = &[
    "principal",
    "key-policy",
    "key-state",
    "alias",
    "key-attributes",
    "key-rotation",
    "key-tags",
];

/// The latest `SealCoverage` event's sequence number and the MAC kinds it lists.
async fn sealed_coverage(store: &dyn Store) -> Result<(Option<i64>, Vec<String>), Error> {
    let Some(row) = store
        .last_seal_coverage()
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok((None, vec![]));
    };
    let body: serde_json::Value = serde_json::from_str(&row.body).unwrap_or_default();
    let kinds = body
        .pointer("/requestParameters/details/kinds")
        .and_then(|k| k.as_array())
        .map(|k| {
            k.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((Some(row.seq), kinds))
}

/// Record that every row carries every kind of MAC.
async fn record_coverage(s: &Settings, store: &dyn Store) -> Result<(), Error> {
    crate::audit::record_direct(
        store,
        crate::audit::admin_event(
            "SealCoverage",
            "*",
            &operator(),
            serde_json::json!({ "kinds": MAC_KINDS }),
        ),
        open_anchor(s)?.as_deref(),
    )
    .await
    .map_err(|e| e.to_string())
}

/// One row without a MAC, as `kms admin seal` shows it.
enum Unsealed {
    Principal(String, crate::store::PrincipalAuthz),
    KeyPolicy(crate::store::KeyRecord),
    KeyState(crate::store::KeyRecord),
    Alias(crate::store::AliasRecord),
    KeyAttrs(crate::store::KeyRecord),
    KeyRotation(crate::store::KeyRecord),
    KeyTags(crate::store::KeyRecord, Vec<crate::store::Tag>),
}

impl Unsealed {
    /// Its kind of MAC (one of [`MAC_KINDS`]).
    fn kind(&self) -> &'static str {
        match self {
            Unsealed::Principal(..) => "principal",
            Unsealed::KeyPolicy(_) => "key-policy",
            Unsealed::KeyState(_) => "key-state",
            Unsealed::Alias(_) => "alias",
            Unsealed::KeyAttrs(_) => "key-attributes",
            Unsealed::KeyRotation(_) => "key-rotation",
            Unsealed::KeyTags(..) => "key-tags",
        }
    }
}

struct UnsealedRow {
    /// What the row is ("principal arn:…", "policy of key …").
    name: String,
    /// Everything that would be sealed, in one line.
    shown: String,
    row: Unsealed,
}

async fn unsealed_rows(kms: &Kms) -> Result<Vec<UnsealedRow>, Error> {
    let e = |e: crate::domain::KmsError| e.to_string();
    let mut out = Vec::new();
    for (arn, a) in kms.unsealed_principals().await.map_err(e)? {
        let mut policies = a.policies.clone();
        policies.sort();
        let mut tags: Vec<String> = a
            .tags
            .iter()
            .map(|t| format!("{}={}", t.key, t.value))
            .collect();
        tags.sort();
        let shown = serde_json::json!({
            "row": "principal",
            "arn": arn,
            "account": a.account_id,
            "kind": a.kind,
            "trust_policy": a.trust_policy,
            "integrated_service": a.via_service,
            "identity_policies": policies,
            "tags": tags,
        });
        out.push(UnsealedRow {
            name: format!("principal {arn}"),
            shown: shown.to_string(),
            row: Unsealed::Principal(arn, a),
        });
    }
    let (policies, states) = kms.unsealed_keys().await.map_err(e)?;
    for k in policies {
        let shown = serde_json::json!({
            "row": "key policy",
            "key": k.arn(),
            "policy": k.policy,
        });
        out.push(UnsealedRow {
            name: format!("policy of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyPolicy(k),
        });
    }
    for k in states {
        let shown = serde_json::json!({
            "row": "key state",
            "key": k.arn(),
            "state": k.key_state,
            "deletion_date": k.deletion_date.map(|d| d.to_rfc3339()),
        });
        out.push(UnsealedRow {
            name: format!("state of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyState(k),
        });
    }
    for k in kms.unsealed_attrs().await.map_err(e)? {
        let shown = serde_json::json!({
            "row": "key attributes",
            "key": k.arn(),
            "key_spec": k.key_spec,
            "key_usage": k.key_usage,
            "origin": k.origin,
            "key_manager": k.key_manager,
            "multi_region": k.multi_region,
            "mrk_id": k.mrk_id.map(|m| m.to_string()),
        });
        out.push(UnsealedRow {
            name: format!("attributes of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyAttrs(k),
        });
    }
    for k in kms.unsealed_rotation().await.map_err(e)? {
        let shown = serde_json::json!({
            "row": "key rotation state",
            "key": k.arn(),
            "current_version": k.current_version,
            "rotation_enabled": k.rotation_enabled,
            "rotation_period_days": k.rotation_period_days,
            "next_rotation_date": k.next_rotation_date.map(|d| d.to_rfc3339()),
            "on_demand_rotations": k.on_demand_rotations,
            "mrk_primary": k.mrk_primary,
        });
        out.push(UnsealedRow {
            name: format!("rotation state of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyRotation(k),
        });
    }
    let (aliases, tags) = kms.unsealed_aliases_and_tags().await.map_err(e)?;
    for a in aliases {
        let name = crate::domain::keyid::alias_arn(&a.region, &a.account_id, &a.alias_name);
        let shown = serde_json::json!({
            "row": "alias",
            "alias": name,
            "target_key_id": a.key_id.to_string(),
        });
        out.push(UnsealedRow {
            name: format!("alias {name}"),
            shown: shown.to_string(),
            row: Unsealed::Alias(a),
        });
    }
    for (k, t) in tags {
        let mut pairs: Vec<String> = t.iter().map(|t| format!("{}={}", t.key, t.value)).collect();
        pairs.sort();
        let shown = serde_json::json!({
            "row": "key tags",
            "key": k.arn(),
            "tags": pairs,
        });
        out.push(UnsealedRow {
            name: format!("tags of key {}", k.arn()),
            shown: shown.to_string(),
            row: Unsealed::KeyTags(k, t),
        });
    }
    Ok(out)
}

/// SHA-256 over what was shown, in hex: `--confirm` seals only what the operator saw.
fn rows_digest(rows: &[UnsealedRow]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for r in rows {
        ctx.update(r.shown.as_bytes());
        ctx.update(b"\n");
    }
    hex::encode(ctx.finish().as_ref())
}

/// The HSM (with its service keys verified) and the domain layer over `store`.
pub async fn open_kms(s: &Settings, store: Arc<dyn Store>) -> Result<Kms, Error> {
    let version = store
        .current_root_version()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the database records no root key; run `kms init` first")?;
    let mac_version = store
        .current_mac_version()
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(1);
    let hsm = open_hsm(s).await?;
    let h = hsm.clone();
    tokio::task::spawn_blocking(move || {
        // The MAC key first: the service keys are loaded with the MAC key version in use.
        h.load_mac_key(h.newest_mac_key_from(mac_version as u32)?)?;
        h.load_service_keys(version as u32)?;
        // Tokens initialised before the audit trail existed get their audit key now.
        if h.ensure_audit_key()? {
            tracing::info!("created the audit signing key in the token");
        }
        Ok::<_, crate::hsm::HsmError>(())
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    Ok(Kms::new(
        hsm,
        store.clone(),
        store.clone(),
        store,
        &cache_sizes(s),
        s.regions.clone(),
    )
    .with_limits(crate::domain::ResourceLimits {
        keys_per_region: s.quota.keys_per_region,
        grants_per_key: s.quota.grants_per_key,
        aliases_per_region: s.quota.aliases_per_region,
        import_parameters_per_second: s.quota.import_parameters_per_second,
    }))
}

#[derive(clap::Subcommand)]
pub enum HsmCommand {
    /// Change the token's user PIN (logs in with the configured PIN). Running servers that
    /// read `hsm.pin_file` pick the new PIN up when they next log in; update the file.
    SetPin {
        /// A file holding the new PIN.
        #[arg(long)]
        new_pin_file: std::path::PathBuf,
    },
    /// Create a new root wrapping key in the token (in every token of a pool) and make it the
    /// one new blobs are wrapped under, then re-wrap every stored blob under it, with
    /// progress. Running nodes follow the new key within a scheduler interval and re-wrap in
    /// the background too; each blob is re-wrapped once. Killed, it resumes with `rewrap`.
    RotateRootKey {
        /// Blobs of each kind per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Only create the key: leave the re-wrapping to the running nodes.
        #[arg(long)]
        no_wait: bool,
    },
    /// Re-wrap, with progress, the blobs still under an older root key (resumes a rotation).
    Rewrap {
        /// Blobs of each kind per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// The root key versions and how many stored blobs each one wraps.
    RootKeys,
    /// Destroy an older root key in the token (every token of a pool), once no stored blob
    /// records it. Irreversible; recorded in the audit trail.
    DestroyRootKey {
        /// The root key version to destroy (not the current one).
        #[arg(long)]
        version: i32,
    },
    /// Create a new metadata MAC key in the token (in every token of a pool) and make it the
    /// one new row MACs are made with, then make every stored MAC again under it, with
    /// progress (the response to a MAC key that may be compromised). Running nodes follow
    /// within a scheduler interval and work through the rows in the background too; each row
    /// moves once. Killed, it resumes with `remac`.
    RotateMacKey {
        /// Rows of each MAC'd column per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
        /// Only create the key: leave the rows to the running nodes.
        #[arg(long)]
        no_wait: bool,
    },
    /// Make again under the current MAC key, with progress, the MACs still under an older one
    /// (resumes a MAC key rotation).
    Remac {
        /// Rows of each MAC'd column per batch.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
    /// The MAC key versions the token holds, and how many MACs are still under older ones.
    MacKeys,
    /// Destroy an older MAC key in the token (every token of a pool), once no stored MAC was
    /// made under it: from then on any row or grant token MAC'd under it is refused.
    /// Irreversible; recorded in the audit trail.
    DestroyMacKey {
        /// The MAC key version to destroy (not the current one).
        #[arg(long)]
        version: i32,
    },
}

pub async fn hsm(s: &Settings, cmd: HsmCommand) -> Result<(), Error> {
    match cmd {
        HsmCommand::RotateRootKey { batch, no_wait } => {
            let (store, kms) = root_key_command(s, batch).await?;
            let per_root = kms
                .root_key_status(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let (current, behind) = current_and_backlog(&per_root);
            if behind > 0 {
                return Err(format!(
                    "the rotation to root key v{current} is not finished: {behind} blobs are still under an older root key; run `kms hsm rewrap` to finish it first"
                ));
            }
            let next = current + 1;
            let label = root_key_label(next as u32);
            let detail =
                serde_json::json!({ "rootKeyVersion": next, "previousRootKeyVersion": current });
            audit_root_command(s, store.as_ref(), "RotateRootKey", &label, &detail, true).await?;
            let h = kms.hsm().clone();
            let created = tokio::task::spawn_blocking(move || h.add_root_key(next as u32))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("the token could not create root key v{next}: {e}"))?;
            store
                .ensure_root_key(next, &label)
                .await
                .map_err(|e| e.to_string())?;
            audit_root_command(s, store.as_ref(), "RotateRootKey", &label, &detail, false).await?;
            eprintln!(
                "kms hsm: root key v{next} {} ('{label}'); new blobs are wrapped under it (running nodes follow within a scheduler interval)",
                if created { "created" } else { "found in the token" }
            );
            if no_wait {
                eprintln!("kms hsm: the running nodes re-wrap the stored blobs; `kms hsm root-keys` shows how far they are");
                return Ok(());
            }
            rewrap_all(&kms, store.as_ref(), batch).await
        }
        HsmCommand::Rewrap { batch } => {
            let (store, kms) = root_key_command(s, batch).await?;
            rewrap_all(&kms, store.as_ref(), batch).await
        }
        HsmCommand::RootKeys => {
            let (store, kms) = root_key_command(s, 1).await?;
            let per_root = kms
                .root_key_status(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let (current, _) = current_and_backlog(&per_root);
            println!("VERSION  BLOBS  LABEL");
            for (v, n) in per_root {
                println!(
                    "{v:>7}  {n:>5}  {}{}",
                    root_key_label(v as u32),
                    if v == current { "  (current)" } else { "" }
                );
            }
            Ok(())
        }
        HsmCommand::DestroyRootKey { version } => {
            let (store, kms) = root_key_command(s, 1).await?;
            let per_root = kms
                .root_key_status(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            let (current, _) = current_and_backlog(&per_root);
            if version == current {
                return Err(format!(
                    "root key v{version} is the current root key; rotate to a new one first (`kms hsm rotate-root-key`)"
                ));
            }
            if version < 1 || version > current {
                return Err(format!("there is no root key v{version}"));
            }
            if let Some((_, n)) = per_root.iter().find(|(v, n)| *v == version && *n > 0) {
                return Err(format!(
                    "root key v{version} still wraps {n} stored blobs; run `kms hsm rewrap` first, so that none needs it"
                ));
            }
            let label = root_key_label(version as u32);
            let detail = serde_json::json!({ "rootKeyVersion": version });
            audit_root_command(s, store.as_ref(), "DestroyRootKey", &label, &detail, true).await?;
            // The database forgets the version first: its foreign key refuses while any blob
            // (one written meanwhile by a node that had not followed the rotation) records it,
            // and from then on no blob can record it.
            store.forget_root_key(version).await.map_err(|e| {
                format!("root key v{version} is still recorded by a stored blob, so it was not destroyed; run `kms hsm rewrap` first ({e})")
            })?;
            let h = kms.hsm().clone();
            let tokens = tokio::task::spawn_blocking(move || h.destroy_root_key(version as u32))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("the token could not destroy root key v{version}: {e}; run the command again"))?;
            audit_root_command(s, store.as_ref(), "DestroyRootKey", &label, &detail, false).await?;
            if tokens.is_empty() {
                eprintln!("kms hsm: root key v{version} was no longer in the token; the database no longer records it");
            } else {
                eprintln!(
                    "kms hsm: root key v{version} destroyed in token {}",
                    tokens
                        .iter()
                        .map(|l| format!("'{l}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        HsmCommand::RotateMacKey { batch, no_wait } => {
            let (store, kms) = root_key_command(s, batch).await?;
            let (current, behind) = kms
                .mac_key_status(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if behind > 0 {
                return Err(format!(
                    "the rotation to MAC key v{current} is not finished: {behind} MACs are still under an older MAC key; run `kms hsm remac` to finish it first"
                ));
            }
            let next = current + 1;
            let label = crate::hsm::mac_key_label(next);
            let detail =
                serde_json::json!({ "macKeyVersion": next, "previousMacKeyVersion": current });
            audit_root_command(s, store.as_ref(), "RotateMacKey", &label, &detail, true).await?;
            let h = kms.hsm().clone();
            let created = tokio::task::spawn_blocking(move || h.add_mac_key(next))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("the token could not create MAC key v{next}: {e}"))?;
            store
                .ensure_mac_key(next as i32, &label)
                .await
                .map_err(|e| e.to_string())?;
            audit_root_command(s, store.as_ref(), "RotateMacKey", &label, &detail, false).await?;
            eprintln!(
                "kms hsm: MAC key v{next} {} ('{label}'); new row MACs are made under it (running nodes follow within a scheduler interval)",
                if created { "created" } else { "found in the token" }
            );
            if no_wait {
                eprintln!("kms hsm: the running nodes make the stored MACs again; `kms hsm mac-keys` shows how far they are");
                return Ok(());
            }
            remac_all(&kms, store.as_ref(), batch).await
        }
        HsmCommand::Remac { batch } => {
            let (store, kms) = root_key_command(s, batch).await?;
            remac_all(&kms, store.as_ref(), batch).await
        }
        HsmCommand::MacKeys => {
            let (store, kms) = root_key_command(s, 1).await?;
            let (current, behind) = kms
                .mac_key_status(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            println!("VERSION  LABEL");
            for v in kms.hsm().mac_versions() {
                println!(
                    "{v:>7}  {}{}",
                    crate::hsm::mac_key_label(v),
                    if v == current { "  (current)" } else { "" }
                );
            }
            println!("{behind} stored MACs are under an older MAC key");
            Ok(())
        }
        HsmCommand::DestroyMacKey { version } => {
            let (store, kms) = root_key_command(s, 1).await?;
            let (current, behind) = kms
                .mac_key_status(store.as_ref())
                .await
                .map_err(|e| e.to_string())?;
            if version == current as i32 {
                return Err(format!(
                    "MAC key v{version} is the current MAC key; rotate to a new one first (`kms hsm rotate-mac-key`)"
                ));
            }
            if version < 1 || !kms.hsm().mac_versions().contains(&(version as u32)) {
                return Err(format!("the token holds no MAC key v{version}"));
            }
            if behind > 0 {
                return Err(format!(
                    "{behind} stored MACs are still under an older MAC key; run `kms hsm remac` first, so that none needs MAC key v{version}"
                ));
            }
            let label = crate::hsm::mac_key_label(version as u32);
            let detail = serde_json::json!({ "macKeyVersion": version });
            audit_root_command(s, store.as_ref(), "DestroyMacKey", &label, &detail, true).await?;
            let h = kms.hsm().clone();
            let tokens = tokio::task::spawn_blocking(move || h.destroy_mac_key(version as u32))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("the token could not destroy MAC key v{version}: {e}; run the command again"))?;
            store
                .forget_mac_key(version)
                .await
                .map_err(|e| e.to_string())?;
            audit_root_command(s, store.as_ref(), "DestroyMacKey", &label, &detail, false).await?;
            eprintln!(
                "kms hsm: MAC key v{version} destroyed in token {}; rows and grant tokens MAC'd under it are refused from now on",
                tokens
                    .iter()
                    .map(|l| format!("'{l}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        HsmCommand::SetPin { new_pin_file } => {
            let new = crate::config::read_pin_file(&new_pin_file)?;
            let hsm = open_hsm(s).await?;
            let changed = tokio::task::spawn_blocking(move || hsm.set_pin(&new))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            println!(
                "the user PIN is changed on token {}; update hsm.pin_file (or KMS_HSM__PIN) to match",
                changed
                    .iter()
                    .map(|l| format!("'{l}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
    }
}

/// The store and the domain for a root key command, with the root key the database records
/// loaded from the token (and the older ones the token still holds).
async fn root_key_command(s: &Settings, batch: i64) -> Result<(Arc<dyn Store>, Kms), Error> {
    if batch < 1 {
        return Err(format!("--batch must be at least 1, not {batch}"));
    }
    let store = connect_migrated_store(s).await?;
    if !store.is_initialised().await.map_err(|e| e.to_string())? {
        return Err("the database has no schema; run `kms init` first".into());
    }
    let kms = open_kms(s, store.clone()).await?;
    Ok((store, kms))
}

/// Record a root key command in the trail: its intent before it acts (a trail that cannot
/// take it stops the command before anything changes), its event once done.
async fn audit_root_command(
    s: &Settings,
    store: &dyn Store,
    action: &str,
    target: &str,
    detail: &serde_json::Value,
    intent: bool,
) -> Result<(), Error> {
    let event = if intent {
        crate::audit::admin_intent_event(action, target, &operator(), detail.clone())
    } else {
        crate::audit::admin_event(action, target, &operator(), detail.clone())
    };
    crate::audit::record_direct(store, event, open_anchor(s)?.as_deref())
        .await
        .map_err(|e| {
            if intent {
                format!("the audit trail cannot record this command, so nothing was changed: {e}")
            } else {
                format!("the command is done but the audit trail could not record it: {e}")
            }
        })
}

/// Re-wrap every blob still under an older root key, in batches, printing progress.
async fn rewrap_all(kms: &Kms, store: &dyn Store, batch: i64) -> Result<(), Error> {
    let backlog = |per_root: &[(i32, i64)]| current_and_backlog(per_root).1;
    let status = kms
        .root_key_status(store)
        .await
        .map_err(|e| e.to_string())?;
    let (current, total) = current_and_backlog(&status);
    eprintln!("kms hsm: {total} stored blobs to re-wrap under root key v{current}");
    let (mut mine, mut others) = (0usize, 0usize);
    let mut left = total;
    while left > 0 {
        let r = kms
            .rewrap_batch(store, batch)
            .await
            .map_err(|e| format!("re-wrapping stopped ({e}); run `kms hsm rewrap` to resume"))?;
        mine += r.rewrapped;
        others += r.elsewhere;
        left = backlog(
            &kms.root_key_status(store)
                .await
                .map_err(|e| e.to_string())?,
        );
        let done = (total - left).max(0);
        eprintln!(
            "kms hsm: re-wrapped {done} of {total} blobs ({:.0} %), {left} left",
            if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            }
        );
        if !r.moved() && left > 0 {
            if r.refused > 0 {
                return Err(format!(
                    "{left} stored blobs are left under an older root key: {} rows failed their integrity check (logged); review them before the older root key can be destroyed",
                    r.refused
                ));
            }
            // Rows being re-wrapped by another process, or written under the older key by
            // a node that has not followed the rotation yet: look again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "kms hsm: every stored blob is wrapped under root key v{current} ({mine} re-wrapped by this command, {others} by other processes)"
    );
    Ok(())
}

/// Make every MAC still under an older MAC key again under the current one, in batches,
/// printing progress.
async fn remac_all(kms: &Kms, store: &dyn Store, batch: i64) -> Result<(), Error> {
    let (current, total) = kms.mac_key_status(store).await.map_err(|e| e.to_string())?;
    eprintln!("kms hsm: {total} stored MACs to make again under MAC key v{current}");
    let (mut mine, mut others) = (0usize, 0usize);
    let mut left = total;
    while left > 0 {
        let r = kms
            .remac_batch(store, batch)
            .await
            .map_err(|e| format!("re-MACing stopped ({e}); run `kms hsm remac` to resume"))?;
        mine += r.remacced;
        others += r.elsewhere;
        left = kms
            .mac_key_status(store)
            .await
            .map_err(|e| e.to_string())?
            .1;
        let done = (total - left).max(0);
        eprintln!(
            "kms hsm: made {done} of {total} MACs again ({:.0} %), {left} left",
            if total == 0 {
                100.0
            } else {
                done as f64 * 100.0 / total as f64
            }
        );
        if !r.moved() && left > 0 {
            if r.refused > 0 {
                return Err(format!(
                    "{left} stored MACs are left under an older MAC key: {} rows failed their integrity check (logged); review them before the older MAC key can be destroyed",
                    r.refused
                ));
            }
            if r.waiting > 0 {
                return Err(format!(
                    "{left} stored MACs are left under an older MAC key: {} keys' imported material is deleted, so their import records' material checks move only when the same material is imported again (or the key is deleted)",
                    r.waiting
                ));
            }
            // Rows moved by another process, or written under the older key by a node that
            // has not followed the rotation yet (or records the trail has still to take):
            // look again shortly.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "kms hsm: every stored MAC is made under MAC key v{current} ({mine} by this command, {others} by other processes)"
    );
    Ok(())
}

/// Fault tests: each SIGUSR1 inflicts the fault named in `file` on the token.
fn spawn_fault_injection(hsm: crate::hsm::Hsm, file: std::path::PathBuf) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
    tracing::warn!(file = %file.display(), "fault injection is enabled (SIGUSR1)");
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            let fault = match std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|t| t.parse::<crate::hsm::Fault>())
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(error = %e, "no fault to inject");
                    continue;
                }
            };
            match hsm.inject_fault(fault).await {
                Ok(()) => tracing::warn!(?fault, "fault injected into the token"),
                Err(e) => tracing::error!(?fault, error = %e, "could not inject the fault"),
            }
        }
    });
    Ok(())
}

/// Serve the API until SIGINT/SIGTERM, then drain.
pub async fn serve(s: &Settings) -> Result<(), Error> {
    // Settings that need neither the store nor the token are checked first, so a mistake in
    // them fails before anything is started.
    let tls = tls_acceptor(s)?;
    if tls.is_none() && !s.allow_plain_http && !is_loopback(&s.listen) {
        return Err(format!(
            "refusing to serve plain HTTP on {}: configure tls.cert_file and tls.key_file, listen on a loopback address, or set allow_plain_http = true (KMS_ALLOW_PLAIN_HTTP) behind a TLS-terminating proxy",
            s.listen
        ));
    }
    let store = connect_store(s).await?;
    if !store.is_initialised().await.map_err(|e| e.to_string())? {
        return Err(format!(
            "the database at {} has no schema; run `kms init` first",
            s.database_url_redacted()
        ));
    }
    store.migrate().await.map_err(|e| e.to_string())?;
    check_not_restored(s, store.as_ref()).await?;
    let kms = Arc::new(open_kms(s, store.clone()).await?);
    // Rows from before their MAC existed are refused until an operator seals them: say so
    // once at start, so an upgrade does not fail silently key by key.
    match unsealed_rows(&kms).await {
        Ok(rows) if !rows.is_empty() => tracing::warn!(
            rows = rows.len(),
            "rows carry no MAC and are refused until an operator reviews and seals them: run `kms admin seal`"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not count rows without a MAC"),
    }
    // Bind before starting background work: a port in use fails with nothing left running.
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let metrics_listener = match &s.metrics_listen {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .map_err(|e| format!("cannot listen on {m} (metrics_listen): {e}"))?,
        ),
        None => None,
    };
    spawn_invalidation(store.clone(), kms.clone()).await?;
    spawn_scheduler(
        kms.clone(),
        store.clone(),
        Duration::from_millis(s.scheduler_interval_ms.max(10)),
        s.clock_offset_file.clone(),
    );
    if s.enable_test_hooks {
        tracing::warn!(
            clock_offset_file = ?s.clock_offset_file,
            fault_injection_file = ?s.fault_injection_file,
            "TEST HOOKS ENABLED (enable_test_hooks = true): never run a production service like this"
        );
    }
    if let Some(f) = &s.fault_injection_file {
        spawn_fault_injection(kms.hsm().clone(), f.clone())?;
    }
    let metrics_note = match &metrics_listener {
        Some(l) => format!(
            "; metrics on http://{}/metrics",
            l.local_addr().map_err(|e| e.to_string())?
        ),
        None => String::new(),
    };
    println!(
        "kms listening on {scheme}://{addr} (regions: {}){metrics_note}",
        s.regions.join(", ")
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let caps = kms.hsm().capabilities();
    tracing::info!(
        %addr,
        token = caps.profile.name,
        manufacturer = %caps.manufacturer,
        model = %caps.model,
        rfc5649 = ?caps.wrap,
        notes = caps.profile.notes,
        "serving"
    );
    let audit = if s.audit_enabled {
        crate::audit::Audit::start(
            store.clone(),
            kms.hsm().clone(),
            Duration::from_millis(s.request_timeout_ms.max(100)),
            open_anchor(s)?,
        )
    } else {
        crate::audit::Audit::disabled(store.clone(), kms.hsm().clone())
    };
    kms.set_audit(audit.clone());
    let auth_guard = Arc::new(crate::api::quota::AuthGuard::new(
        s.quota.auth_failures_per_second,
        s.quota.auth_failure_burst,
    ));
    spawn_checkpoints(
        audit.clone(),
        auth_guard.clone(),
        Duration::from_millis(s.audit_checkpoint_interval_ms.max(100)),
        // A call's own event is written by then or never (its deadline, and the moment it
        // is given past it, are over).
        Duration::from_millis(s.request_timeout_ms.max(100)) + Duration::from_secs(5),
    );
    let state = Arc::new(ApiState {
        audit: audit.clone(),
        kms,
        regions: s.regions.clone(),
        max_body_bytes: s.max_body_bytes,
        request_timeout: Duration::from_millis(s.request_timeout_ms.max(100)),
        max_connections: s.max_connections.max(1),
        quotas: crate::api::quota::Quotas::new(
            s.quota.crypto_per_second,
            s.quota.management_per_second,
        ),
        auth_guard,
        sts_min_session_seconds: s.sts_min_session_seconds,
    });
    if let Some(l) = metrics_listener {
        // Runs until the process exits.
        tokio::spawn(api::serve_metrics(
            l,
            state.clone(),
            std::future::pending::<()>(),
        ));
    }
    api::serve(
        listener,
        state,
        tls,
        shutdown_signal(),
        Duration::from_secs(s.drain_seconds),
    )
    .await;
    // The last checkpoint covers every event of this instance.
    match audit.checkpoint().await {
        Ok(Some(seq)) => tracing::info!(seq, "audit checkpoint signed at shutdown"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "could not sign the final audit checkpoint"),
    }
    Ok(())
}

/// Every `every`: summarise throttled authentication failures, chain the change records left
/// over (older than `settle_after`), and sign a checkpoint over the audit chain head (when it moved).
fn spawn_checkpoints(
    audit: Arc<crate::audit::Audit>,
    auth_guard: Arc<crate::api::quota::AuthGuard>,
    every: Duration,
    settle_after: Duration,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Authentication failures over their source's budget, one event for all of them.
            let suppressed = auth_guard.take_suppressed();
            if !suppressed.is_empty() {
                let total: u64 = suppressed.iter().map(|(_, n)| n).sum();
                let by_source: serde_json::Map<String, serde_json::Value> = suppressed
                    .iter()
                    .take(1000)
                    .map(|(ip, n)| (ip.to_string(), serde_json::json!(n)))
                    .collect();
                tracing::warn!(
                    total,
                    sources = suppressed.len(),
                    "requests failing authentication were throttled"
                );
                let event = crate::audit::security_event(
                    "AuthenticationFailuresSummarized",
                    serde_json::json!({
                        "failures": total,
                        "sources": suppressed.len(),
                        "bySource": by_source,
                    }),
                );
                if let Err(e) = audit.record(event).await {
                    tracing::error!(error = %e, "could not record the authentication failure summary");
                }
            }
            // Changes that committed without their call's event (the trail refused it, or a
            // node died in between): their change records go into the trail now.
            if let Err(e) = audit.settle_change_records(settle_after).await {
                tracing::error!(error = %e, "could not chain the change records of committed changes");
            }
            if let Err(e) = audit.checkpoint().await {
                tracing::error!(error = %e, "audit checkpoint failed");
            }
        }
    });
}

/// A database restored from an old backup would revive every key deleted since (and forget
/// every change): the audit anchor outside the database knows the trail went further, so the
/// service refuses to start on it and says what to do.
async fn check_not_restored(s: &Settings, store: &dyn Store) -> Result<(), Error> {
    let Some(path) = &s.audit_anchor_file else {
        return Ok(());
    };
    let anchored = match crate::audit::anchor::read(path) {
        Ok(a) => a,
        // A new anchor (first start with one configured) has nothing to compare.
        Err(_) if !path.exists() => return Ok(()),
        Err(e) => return Err(e),
    };
    let (db_seq, _) = store.audit_head().await.map_err(|e| e.to_string())?;
    // The furthest point the anchor knows, with its hash: the event there must be in the
    // trail with that hash (the head row alone is a number anyone who writes the database can
    // move forward).
    let anchored_point = anchored
        .head
        .clone()
        .into_iter()
        .chain(anchored.checkpoints.iter().map(|c| (c.seq, c.hash.clone())))
        .max_by_key(|(seq, _)| *seq);
    let (anchored_seq, anchored_hash) = anchored_point.unwrap_or((0, vec![]));
    let present = if anchored_seq == 0 {
        true
    } else {
        store
            .audit_events(anchored_seq - 1, 1)
            .await
            .map_err(|e| e.to_string())?
            .first()
            .is_some_and(|e| e.seq == anchored_seq && e.hash == anchored_hash)
    };
    if anchored_seq > db_seq || !present {
        return Err(format!(
            "the database's audit trail (head at event {db_seq}) does not hold event {anchored_seq} as the audit anchor {} records it: the database was restored from an older backup (or events were deleted or rewritten). Serving it would revive keys deleted and undo changes made since. Keep the anchor as evidence, run `kms audit verify --anchor {}` to see what is missing, and start with a new audit_anchor_file only once the loss is understood",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// The audit anchor outside the database, when configured.
fn open_anchor(s: &Settings) -> Result<Option<Arc<crate::audit::anchor::Anchor>>, Error> {
    s.audit_anchor_file
        .as_deref()
        .map(|p| crate::audit::anchor::Anchor::open(p).map(Arc::new))
        .transpose()
}

/// `kms audit …`: the auditor's commands.
#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Print the audit public key (PEM) that verifies checkpoints.
    PublicKey,
    /// Verify the trail in the database, or an export, with the audit public key.
    Verify {
        /// The audit public key (PEM or DER), as `kms audit public-key` printed it.
        #[arg(long)]
        public_key: std::path::PathBuf,
        /// Verify this export instead of the database (no database or token needed).
        #[arg(long)]
        export: Option<std::path::PathBuf>,
        /// An anchor file (`audit_anchor_file` of a node) to check the trail against; one per
        /// node. Default: this configuration's `audit_anchor_file`.
        #[arg(long)]
        anchor: Vec<std::path::PathBuf>,
        /// Refuse a trail whose events run past a last checkpoint older than this. Default:
        /// `audit_max_checkpoint_age_secs` (0: no bound).
        #[arg(long)]
        max_checkpoint_age_secs: Option<u64>,
    },
    /// Write events as JSON Lines, with what `verify` needs to check them.
    Export {
        #[arg(long)]
        out: std::path::PathBuf,
        /// RFC 3339 times.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        account: Option<String>,
        /// A key id or key ARN.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        event_name: Option<String>,
    },
    /// Sign a checkpoint over the chain head now.
    Checkpoint,
}

fn read_public_key(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let raw = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&raw);
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        use base64::Engine;
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| format!("{} is not a PEM public key", path.display()));
    }
    Ok(raw)
}

fn print_report(r: &crate::audit::verify::Report) -> Result<(), Error> {
    println!(
        "checked {} events ({} with content), {} checkpoints, up to event {}",
        r.events, r.bodies_checked, r.checkpoints, r.last_seq
    );
    if r.ok() {
        println!("OK: the trail is intact");
        return Ok(());
    }
    for (_, p) in &r.problems {
        println!("TAMPERED: {p}");
    }
    Err(format!(
        "the audit trail failed verification: {}",
        r.problems[0].1
    ))
}

async fn all_events(store: &Arc<dyn Store>) -> Result<Vec<crate::store::AuditRow>, Error> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .audit_events(after, 5000)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let done = page.len() < 5000;
        out.extend(page);
        if done {
            break;
        }
    }
    Ok(out)
}

pub async fn audit(s: &Settings, cmd: AuditCommand) -> Result<(), Error> {
    use crate::audit::verify;
    let parse_time = |t: &Option<String>| -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
        t.as_ref()
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|d| d.with_timezone(&chrono::Utc))
                    .map_err(|_| format!("{t} is not an RFC 3339 time"))
            })
            .transpose()
    };
    match cmd {
        AuditCommand::Verify {
            public_key,
            export: Some(file),
            ..
        } => {
            let key = read_public_key(&public_key)?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let (links, cps) = verify::parse_export(&text)?;
            print_report(&verify::verify(&links, &cps, &key, false, None))
        }
        AuditCommand::Verify {
            public_key,
            export: None,
            anchor,
            max_checkpoint_age_secs,
        } => {
            let key = read_public_key(&public_key)?;
            let anchors: Vec<std::path::PathBuf> = if anchor.is_empty() {
                s.audit_anchor_file.iter().cloned().collect()
            } else {
                anchor
            };
            let store = connect_store(s).await?;
            let rows = all_events(&store).await?;
            let links: Vec<verify::Link> = rows.iter().map(verify::Link::from).collect();
            let cps = store.checkpoints().await.map_err(|e| e.to_string())?;
            let (head, _) = store.audit_head().await.map_err(|e| e.to_string())?;
            let mut report = verify::verify(&links, &cps, &key, true, Some(head));
            verify::check_columns(&mut report, &rows);
            let generations = store.audit_generations().await.map_err(|e| e.to_string())?;
            verify::check_generations(&mut report, &rows, &generations);
            for a in &anchors {
                let anchored = crate::audit::anchor::read(a)?;
                verify::check_anchor(
                    &mut report,
                    &links,
                    &cps,
                    &anchored,
                    &a.display().to_string(),
                    &key,
                );
            }
            let age = max_checkpoint_age_secs.unwrap_or(s.audit_max_checkpoint_age_secs);
            if age > 0 {
                verify::check_freshness(
                    &mut report,
                    &cps,
                    chrono::Duration::seconds(age as i64),
                    chrono::Utc::now(),
                );
            }
            if anchors.is_empty() {
                eprintln!("kms audit: no anchor outside the database was checked (audit_anchor_file): events deleted after the last checkpoint cannot be detected");
            }
            print_report(&report)
        }
        AuditCommand::Export {
            out,
            from,
            to,
            account,
            key,
            event_name,
        } => {
            let filter = verify::Filter {
                from: parse_time(&from)?,
                to: parse_time(&to)?,
                account,
                key,
                event_name,
            };
            let store = connect_store(s).await?;
            let rows = all_events(&store).await?;
            let cps = store.checkpoints().await.map_err(|e| e.to_string())?;
            let lines = verify::export(&rows, &cps, &filter);
            let n = rows.iter().filter(|r| filter.matches(r)).count();
            std::fs::write(&out, lines.join("\n") + "\n")
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            eprintln!("kms audit: {n} events exported to {}", out.display());
            Ok(())
        }
        AuditCommand::PublicKey | AuditCommand::Checkpoint => {
            let store = connect_store(s).await?;
            let kms = open_kms(s, store.clone()).await?;
            if let AuditCommand::Checkpoint = cmd {
                let anchor = open_anchor(s)?;
                match crate::audit::checkpoint(store.as_ref(), kms.hsm(), anchor.as_deref())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(seq) => eprintln!("kms audit: checkpoint signed at event {seq}"),
                    None => eprintln!("kms audit: the last checkpoint already covers the head"),
                }
                return Ok(());
            }
            let der = crate::audit::public_key_der(kms.hsm())
                .await
                .map_err(|e| e.to_string())?;
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
            println!("-----BEGIN PUBLIC KEY-----");
            for chunk in b64.as_bytes().chunks(64) {
                println!("{}", String::from_utf8_lossy(chunk));
            }
            println!("-----END PUBLIC KEY-----");
            Ok(())
        }
    }
}

/// Whether a listen address is loopback-only (`127.0.0.0/8`, `::1`, `localhost`).
fn is_loopback(listen: &str) -> bool {
    if let Ok(a) = listen.parse::<std::net::SocketAddr>() {
        return a.ip().is_loopback();
    }
    listen
        .rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// rustls on the aws-lc-rs provider, from the configured PEM files; `None` for plain HTTP.
fn tls_acceptor(s: &Settings) -> Result<Option<tokio_rustls::TlsAcceptor>, Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (&s.tls.cert_file, &s.tls.key_file) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        _ => return Err("tls.cert_file and tls.key_file go together".into()),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the TLS certificate file {} holds no certificate",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &s.tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("cannot read the client CA file {}: {e}", ca.display()))?
            {
                roots.add(c).map_err(|e| {
                    format!("a certificate in {} is not a usable CA: {e}", ca.display())
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "the client CA file {} holds no certificate",
                    ca.display()
                ));
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if s.tls.client_cert_optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
    };
    if s.tls.client_ca_file.is_none() && s.tls.client_cert_optional {
        return Err("tls.client_cert_optional needs tls.client_ca_file".into());
    }
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("the TLS certificate and key do not form a usable pair: {e}"))?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// Background jobs: at start (catching up on anything that fell due while no server ran) and
/// then every `interval`, delete keys whose waiting period ended and rotate keys that are due.
fn spawn_scheduler(
    kms: Arc<Kms>,
    store: Arc<dyn Store>,
    interval: Duration,
    clock_offset_file: Option<std::path::PathBuf>,
) {
    tokio::spawn(async move {
        loop {
            if let Some(f) = &clock_offset_file {
                if let Ok(text) = tokio::fs::read_to_string(f).await {
                    if let Ok(secs) = text.trim().parse::<i64>() {
                        kms.set_clock_offset(secs);
                    }
                }
            }
            match kms.run_due().await {
                Ok((0, 0)) => {}
                Ok((deleted, rotated)) => tracing::info!(deleted, rotated, "background jobs ran"),
                Err(e) => tracing::warn!(error = %e, "background jobs failed; retrying"),
            }
            if let Err(e) = root_key_job(&kms, store.as_ref()).await {
                tracing::warn!(error = %e, "root key re-wrap job failed; retrying");
            }
            if let Err(e) = mac_key_job(&kms, store.as_ref()).await {
                tracing::warn!(error = %e, "MAC key re-MAC job failed; retrying");
            }
            tokio::time::sleep(interval).await;
        }
    });
}

/// Follow a root key rotated by another process, and re-wrap a batch of the blobs still under
/// an older root key (the rest at the next ticks).
async fn root_key_job(kms: &Kms, store: &dyn Store) -> Result<(), crate::domain::KmsError> {
    kms.follow_root_key(store).await?;
    // Finding nothing under an older root key is a few indexed LIMIT queries.
    let r = kms.rewrap_batch(store, 200).await?;
    if r.moved() || r.refused > 0 {
        kms.root_key_status(store).await?;
        tracing::info!(
            rewrapped = r.rewrapped,
            refused = r.refused,
            "blobs re-wrapped under the current root key"
        );
    } else {
        crate::metrics::rewrap_backlog(0);
    }
    Ok(())
}

/// Follow a MAC key rotated by another process, and make a batch of the MACs still under an
/// older MAC key again under the current one (the rest at the next ticks).
async fn mac_key_job(kms: &Kms, store: &dyn Store) -> Result<(), crate::domain::KmsError> {
    kms.follow_mac_key(store).await?;
    let current = kms.hsm().mac_version()?;
    if current == 1 {
        return Ok(());
    }
    // Finding the MACs under an older key scans every MAC'd column: once a pass finds none
    // under this version, look again only every few minutes (rows a lagging node wrote).
    static CLEAN: std::sync::Mutex<Option<(u32, std::time::Instant)>> = std::sync::Mutex::new(None);
    if let Some((v, at)) = *CLEAN.lock().unwrap() {
        if v == current && at.elapsed() < Duration::from_secs(300) {
            return Ok(());
        }
    }
    let r = kms.remac_batch(store, 200).await?;
    if !r.moved() && r.refused == 0 && r.waiting == 0 {
        *CLEAN.lock().unwrap() = Some((current, std::time::Instant::now()));
    }
    if r.moved() || r.refused > 0 {
        kms.mac_key_status(store).await?;
        tracing::info!(
            remacced = r.remacced,
            refused = r.refused,
            "row MACs made again under the current MAC key"
        );
    } else {
        crate::metrics::remac_backlog(0);
    }
    Ok(())
}

/// What a change announced on `channel` (with `payload`) makes stale in the caches; `None`:
/// changes may have been missed, so everything is.
fn apply_change(kms: &Kms, change: Option<(&str, &str)>) {
    match change {
        Some(("kms_identity_changed", _)) => kms.invalidate_identities(),
        Some(("kms_grant_changed", p)) => kms.invalidate_grants(p.parse().ok()),
        Some(("kms_alias_changed", _)) => kms.invalidate_aliases(),
        Some((_, p)) => kms.invalidate(p.parse().ok()),
        None => {
            kms.invalidate(None);
            kms.invalidate_identities();
            kms.invalidate_grants(None);
            kms.invalidate_aliases();
        }
    }
}

/// Drop cached entries when any process changes what they hold ([`Store::changes`]). If
/// announcements may have been missed, the whole cache is dropped.
async fn spawn_invalidation(store: Arc<dyn Store>, kms: Arc<Kms>) -> Result<(), Error> {
    // With several database hosts, the pool follows the one that takes writes.
    store.follow_primary(Duration::from_millis(500));
    let mut changes = store.changes().await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            match change {
                crate::store::Change::Changed { channel, payload } => {
                    apply_change(&kms, Some((&channel, &payload)))
                }
                crate::store::Change::Missed => apply_change(&kms, None),
            }
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// `kms serve --dev`: everything a working KMS needs, under `dir`, with no database server —
/// the embedded SQLite store (`dir/kms.db`), a SoftHSM2 token (`dir/softhsm`, created through
/// PKCS#11 on first start), its PIN (`dir/pin`) and the administrator's credentials
/// (`dir/credentials`), all mode 600 in a mode 700 directory. Sets the environment the settings
/// are read from (only what is not set already); call before `Settings::load` and before any
/// thread starts. Returns the credentials file.
pub fn dev_environment(dir: &std::path::Path) -> Result<std::path::PathBuf, Error> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir.join("softhsm/tokens"))
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let secret_file =
        |name: &str, make: &dyn Fn() -> String| -> Result<std::path::PathBuf, Error> {
            let p = dir.join(name);
            if !p.exists() {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&p)
                    .map_err(|e| format!("cannot create {}: {e}", p.display()))?;
                std::io::Write::write_all(&mut f, make().as_bytes()).map_err(|e| e.to_string())?;
            }
            Ok(p)
        };
    let random_hex = |n: usize| {
        let mut b = vec![0u8; n];
        aws_lc_rs::rand::fill(&mut b).expect("system RNG");
        hex::encode(b)
    };
    let pin = secret_file("pin", &|| random_hex(8))?;
    secret_file("so-pin", &|| random_hex(8))?;
    let credentials = secret_file("credentials", &|| {
        const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut b = [0u8; 16];
        aws_lc_rs::rand::fill(&mut b).expect("system RNG");
        let id: String = b
            .iter()
            .map(|x| UPPER[(*x & 31) as usize] as char)
            .collect();
        let mut s = [0u8; 30];
        aws_lc_rs::rand::fill(&mut s).expect("system RNG");
        use base64::Engine;
        let secret = base64::engine::general_purpose::STANDARD.encode(s);
        format!("AWS_ACCESS_KEY_ID=AKIA{id}\nAWS_SECRET_ACCESS_KEY={secret}\n")
    })?;
    let conf = dir.join("softhsm/softhsm2.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                dir.join("softhsm/tokens").display()
            ),
        )
        .map_err(|e| e.to_string())?;
    }
    let set = |k: &str, v: &str| {
        if std::env::var_os(k).is_none() {
            std::env::set_var(k, v);
        }
    };
    set("SOFTHSM2_CONF", conf.to_str().unwrap_or_default());
    set(
        "KMS_DATABASE_URL",
        &format!("sqlite://{}", dir.join("kms.db").display()),
    );
    set("KMS_HSM__TOKEN_LABEL", "kms-dev");
    set("KMS_HSM__PIN_FILE", pin.to_str().unwrap_or_default());
    // `kms init` imports these as the administrator's key on first start.
    let creds = std::fs::read_to_string(&credentials).map_err(|e| e.to_string())?;
    for line in creds.lines() {
        if let Some(v) = line.strip_prefix("AWS_ACCESS_KEY_ID=") {
            std::env::set_var("KMS_ADMIN_ACCESS_KEY_ID", v);
        }
        if let Some(v) = line.strip_prefix("AWS_SECRET_ACCESS_KEY=") {
            std::env::set_var("KMS_ADMIN_SECRET_ACCESS_KEY", v);
        }
    }
    Ok(credentials)
}

/// `kms serve --dev` after `dev_environment`: create the token if absent, run the idempotent
/// `kms init`, print how to use the service, then serve.
pub async fn serve_dev(s: &Settings, credentials: &std::path::Path) -> Result<(), Error> {
    let dir = credentials.parent().unwrap_or(std::path::Path::new("."));
    let so_pin = crate::config::read_pin_file(&dir.join("so-pin"))?;
    let pin = s.pin()?;
    let (module, label) = (s.hsm.module.clone(), s.hsm.token_label.clone());
    let created = tokio::task::spawn_blocking(move || {
        crate::hsm::ensure_soft_token(&module, &label, &so_pin, &pin)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot create the development token: {e}"))?;
    if created {
        eprintln!(
            "kms serve --dev: created the SoftHSM2 token '{}' in {}",
            s.hsm.token_label,
            dir.join("softhsm").display()
        );
    }
    init(s).await?;
    let creds = std::fs::read_to_string(credentials).map_err(|e| e.to_string())?;
    eprintln!(
        "kms serve --dev: development mode — SQLite store and SoftHSM2 token in {}; not for production.\n\
         Credentials (also in {}):\n{creds}",
        dir.display(),
        credentials.display()
    );
    serve(s).await
}
