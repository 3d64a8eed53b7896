use clap::Parser;
use kms::cli::{Cli, Command};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    // Development mode sets its defaults in the environment, before the settings are read and
    // before any thread starts.
    let dev = match &cli.command {
        Command::Serve { dev: true, dev_dir } => match kms::cli::dev::dev_environment(dev_dir) {
            Ok(credentials) => Some(credentials),
            Err(e) => fail(&format!("{e:#}")),
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
    let result = rt.block_on(async { kms::cli::run(cli.command, &settings, dev.as_deref()).await });
    // Drop every task (and with them the HSM sessions) before the process exits.
    rt.shutdown_timeout(std::time::Duration::from_secs(10));
    if let Err(e) = result {
        fail(&format!("{e:#}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("kms: {msg}");
    std::process::exit(1);
}
