use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// An HSM-backed key management service that speaks the AWS KMS API.
#[derive(Parser)]
#[command(name = "kms", version = kms::store::VERSION)]
struct Cli {
    /// TOML configuration file; every setting can be overridden by a KMS_* environment variable.
    #[arg(long, global = true, env = "KMS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    Admin(kms::app::AdminCommand),
    /// The audit trail: export it, verify it, print the key that verifies it.
    #[command(subcommand)]
    Audit(kms::app::AuditCommand),
    /// Operate on the token itself.
    #[command(subcommand)]
    Hsm(kms::app::HsmCommand),
    /// Check a backup (restored database and token) before relying on it.
    #[command(subcommand)]
    Backup(kms::app::BackupCommand),
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // Development mode sets its defaults in the environment, before the settings are read and
    // before any thread starts.
    let dev = match &cli.command {
        Command::Serve { dev: true, dev_dir } => match kms::app::dev_environment(dev_dir) {
            Ok(credentials) => Some(credentials),
            Err(e) => fail(&e),
        },
        _ => None,
    };
    let settings = match kms::config::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&settings.log));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_format == "json" {
        // One JSON object per line; a request's lines carry its span (`request_id`).
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Init => kms::app::init(&settings).await,
            Command::Serve { .. } => match &dev {
                Some(credentials) => kms::app::serve_dev(&settings, credentials).await,
                None => kms::app::serve(&settings).await,
            },
            Command::Admin(cmd) => kms::app::admin(&settings, cmd).await,
            Command::Audit(cmd) => kms::app::audit(&settings, cmd).await,
            Command::Hsm(cmd) => kms::app::hsm(&settings, cmd).await,
            Command::Backup(cmd) => kms::app::backup(&settings, cmd).await,
        }
    });
    // Drop every task (and with them the HSM sessions) before the process exits.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    if let Err(e) = result {
        fail(&e);
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("kms: {msg}");
    std::process::exit(1);
}
