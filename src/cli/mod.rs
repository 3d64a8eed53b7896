//! The `kms` command line: one file per subcommand. Each parses its arguments, opens what it
//! needs through [`crate::server::wiring`], calls the domain (the operator's writes go through
//! [`crate::domain::operator::Operator`]) and prints. Errors are `anyhow` sentences with their
//! context, printed by `main` as `kms: <what failed>: <why>`.

pub mod admin;
pub mod audit;
pub mod backup;
pub mod dev;
pub mod hsm;
pub mod init;

use crate::config::Settings;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// An HSM-backed key management service that speaks the AWS KMS API.
#[derive(Parser)]
#[command(name = "kms", version = crate::store::VERSION)]
pub struct Cli {
    /// TOML configuration file; every setting can be overridden by a KMS_* environment variable.
    #[arg(long, global = true, env = "KMS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run migrations, create or verify the token's keys, create the default account and its
    /// administrator, and print the administrator's credentials once.
    Init,
    /// Serve the API until SIGINT/SIGTERM, then drain in-flight requests.
    Serve {
        /// Development mode: no database server and no HSM to set up. An embedded SQLite store
        /// and a SoftHSM2 token are created under --dev-dir on first start, initialised, and
        /// the administrator's credentials printed.
        #[arg(long)]
        dev: bool,
        /// Where development mode keeps its store, token, PIN and credentials.
        #[arg(long, env = "KMS_DEV_DIR", default_value = ".kms-dev")]
        dev_dir: PathBuf,
    },
    /// Manage accounts, users, access keys and identity policies.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The audit trail: export it, verify it, print the key that verifies it.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Operate on the token itself.
    #[command(subcommand)]
    Hsm(hsm::HsmCommand),
    /// Check a backup (restored database and token) before relying on it.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
}

/// Run `command` with `settings`. `dev`: the credentials file of development mode, when
/// `kms serve --dev` prepared its environment ([`dev::dev_environment`]).
pub async fn run(
    command: Command,
    settings: &Settings,
    dev: Option<&std::path::Path>,
) -> Result<()> {
    match command {
        Command::Init => init::run(settings).await,
        Command::Serve { .. } => match dev {
            Some(credentials) => dev::serve_dev(settings, credentials).await,
            None => crate::server::serve(settings).await,
        },
        Command::Admin(cmd) => admin::run(settings, cmd).await,
        Command::Audit(cmd) => audit::run(settings, cmd).await,
        Command::Hsm(cmd) => hsm::run(settings, cmd).await,
        Command::Backup(cmd) => backup::run(settings, cmd).await,
    }
}
