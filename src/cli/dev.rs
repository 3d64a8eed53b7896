//! `kms serve --dev`: a working service with no database server and no HSM to set up.

use crate::config::Settings;
use anyhow::{anyhow, Result};

/// `kms serve --dev`: everything a working KMS needs, under `dir`, with no database server —
/// the embedded SQLite store (`dir/kms.db`), a SoftHSM2 token (`dir/softhsm`, created through
/// PKCS#11 on first start), its PIN (`dir/pin`) and the administrator's credentials
/// (`dir/credentials`), all mode 600 in a mode 700 directory. Sets the environment the settings
/// are read from (only what is not set already); call before `Settings::load` and before any
/// thread starts. Returns the credentials file.
pub fn dev_environment(dir: &std::path::Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir.join("softhsm/tokens"))
        .map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    let secret_file = |name: &str, make: &dyn Fn() -> String| -> Result<std::path::PathBuf> {
        let p = dir.join(name);
        if !p.exists() {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .map_err(|e| anyhow!("cannot create {}: {e}", p.display()))?;
            std::io::Write::write_all(&mut f, make().as_bytes())?;
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
        )?;
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
    // The console beside the API: the next port (any free one where the API's is chosen).
    let listen = std::env::var("KMS_LISTEN").unwrap_or_else(|_| Settings::default().listen);
    if let Some((host, port)) = listen.rsplit_once(':') {
        let port: u16 = port.parse().unwrap_or(0);
        let console = if port == 0 { 0 } else { port.wrapping_add(1) };
        set("KMS_CONSOLE_LISTEN", &format!("{host}:{console}"));
    }
    set("KMS_HSM__PIN_FILE", pin.to_str().unwrap_or_default());
    // `kms init` imports these as the administrator's key on first start.
    let creds = std::fs::read_to_string(&credentials)?;
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
pub async fn serve_dev(s: &Settings, credentials: &std::path::Path) -> Result<()> {
    let dir = credentials.parent().unwrap_or(std::path::Path::new("."));
    let so_pin = crate::config::read_pin_file(&dir.join("so-pin")).map_err(|e| anyhow!(e))?;
    let pin = s.pin().map_err(|e| anyhow!(e))?;
    let (module, label) = (s.hsm.module.clone(), s.hsm.token_label.clone());
    let created = tokio::task::spawn_blocking(move || {
        crate::hsm::ensure_soft_token(&module, &label, &so_pin, &pin)
    })
    .await?
    .map_err(|e| anyhow!("cannot create the development token: {e}"))?;
    if created {
        eprintln!(
            "kms serve --dev: created the SoftHSM2 token '{}' in {}",
            s.hsm.token_label,
            dir.join("softhsm").display()
        );
    }
    super::init::run(s).await?;
    let creds = std::fs::read_to_string(credentials)?;
    eprintln!(
        "kms serve --dev: development mode — SQLite store and SoftHSM2 token in {}; not for production.\n\
         Credentials (also in {}):\n{creds}",
        dir.display(),
        credentials.display()
    );
    crate::server::serve(s).await
}
