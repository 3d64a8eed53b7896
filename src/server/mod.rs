//! `kms serve`: the listeners, TLS, the background jobs and the start-up checks of a node.

mod jobs;
mod tls;
pub mod wiring;

use crate::api::{self, ApiState};
use crate::config::Settings;
use crate::store::Store;
use anyhow::{anyhow, Result};
use jobs::{
    spawn_checkpoints, spawn_fault_injection, spawn_invalidation, spawn_node_reports,
    spawn_scheduler,
};
use std::sync::Arc;
use std::time::Duration;
use wiring::{connect_store, open_anchor, open_kms};

/// Serve the API until SIGINT/SIGTERM, then drain.
pub async fn serve(s: &Settings) -> Result<()> {
    // Settings that need neither the store nor the token are checked first, so a mistake in
    // them fails before anything is started.
    let tls = tls::tls_acceptor(s)?;
    if tls.is_none() && !s.allow_plain_http && !is_loopback(&s.listen) {
        return Err(anyhow!(
            "refusing to serve plain HTTP on {}: configure tls.cert_file and tls.key_file, listen on a loopback address, or set allow_plain_http = true (KMS_ALLOW_PLAIN_HTTP) behind a TLS-terminating proxy",
            s.listen
        ));
    }
    let store = connect_store(s).await?;
    if !store.is_initialised().await? {
        return Err(anyhow!(
            "the database at {} has no schema; run `kms init` first",
            s.database_url_redacted()
        ));
    }
    store.migrate().await?;
    check_not_restored(s, store.as_ref()).await?;
    let kms = Arc::new(open_kms(s, store.clone()).await?);
    // Rows from before their MAC existed are refused until an operator seals them: say so
    // once at start, so an upgrade does not fail silently key by key.
    match crate::domain::operator::unsealed_rows(&kms).await {
        Ok(rows) if !rows.is_empty() => tracing::warn!(
            rows = rows.len(),
            "rows carry no MAC and are refused until an operator reviews and seals them (a key's set of aliases from before sets were kept is kept from its next alias change): run `kms admin seal`"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not count rows without a MAC"),
    }
    // Bind before starting background work: a port in use fails with nothing left running.
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| anyhow!("cannot listen on {}: {e}", s.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let console_listener = match &s.console_listen {
        Some(c) => {
            if tls.is_none() && !s.allow_plain_http && !is_loopback(c) {
                return Err(anyhow!(
                    "refusing to serve the console over plain HTTP on {c}: configure tls.cert_file and tls.key_file, use a loopback address, or set allow_plain_http = true"
                ));
            }
            Some(
                tokio::net::TcpListener::bind(c)
                    .await
                    .map_err(|e| anyhow!("cannot listen on {c} (console_listen): {e}"))?,
            )
        }
        None => None,
    };
    let metrics_listener = match &s.metrics_listen {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .map_err(|e| anyhow!("cannot listen on {m} (metrics_listen): {e}"))?,
        ),
        None => None,
    };
    let max_age = Duration::from_secs(s.cache.max_age_secs);
    spawn_invalidation(store.clone(), kms.clone(), max_age).await?;
    spawn_scheduler(
        kms.clone(),
        store.clone(),
        Duration::from_millis(s.scheduler_interval_ms.max(10)),
        s.clock_offset_file.clone(),
    );
    spawn_node_reports(kms.clone(), addr.to_string(), Duration::from_secs(5));
    if s.enable_test_hooks {
        tracing::warn!(
            clock_offset_file = ?s.clock_offset_file,
            fault_injection_file = ?s.fault_injection_file,
            "TEST HOOKS ENABLED (enable_test_hooks = true): never run a production service like this"
        );
    }
    if let Some(f) = &s.fault_injection_file {
        spawn_fault_injection(kms.clone(), f.clone())?;
    }
    let metrics_note = match &metrics_listener {
        Some(l) => format!("; metrics on http://{}/metrics", l.local_addr()?),
        None => String::new(),
    };
    let console_note = match &console_listener {
        Some(l) => format!("; console on {scheme}://{}/console/", l.local_addr()?),
        None => String::new(),
    };
    println!(
        "kms listening on {scheme}://{addr} (regions: {}){metrics_note}{console_note}",
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
    kms.set_operator_account(s.account_id.clone());
    let auth_guard = Arc::new(crate::api::quota::AuthGuard::new(
        s.quota.auth_failures_per_second,
        s.quota.auth_failure_burst,
        s.quota.auth_failures_audited_per_second,
    ));
    spawn_checkpoints(
        audit.clone(),
        auth_guard.clone(),
        Duration::from_millis(s.audit_checkpoint_interval_ms.max(100)),
        // A call's own event is written by then or never (its deadline, a key pair's
        // generation, and the moment it is given past them, are over).
        Duration::from_millis(s.request_timeout_ms.max(100) + s.key_generation_timeout_ms)
            + Duration::from_secs(5),
    );
    let state = Arc::new(ApiState {
        audit: audit.clone(),
        kms,
        regions: s.regions.clone(),
        max_body_bytes: s.max_body_bytes,
        request_timeout: Duration::from_millis(s.request_timeout_ms.max(100)),
        key_generation_timeout: Duration::from_millis(s.key_generation_timeout_ms),
        max_connections: s.max_connections.max(1),
        max_connections_per_source: s.max_connections_per_source.max(1),
        trusted_proxies: (s.trusted_proxies.iter())
            .filter_map(|p| crate::policy::condition::parse_cidr(p))
            .collect(),
        quotas: crate::api::quota::Quotas::new(
            s.quota.crypto_per_second,
            s.quota.management_per_second,
        ),
        auth_guard,
        sts_min_session_seconds: s.sts_min_session_seconds,
        xks: (!s.xks_stores.is_empty()).then(|| {
            Arc::new(crate::xks::XksState::new(
                s.xks_stores.clone(),
                s.xks_requests_per_second,
            ))
        }),
        readiness: Default::default(),
    });
    if let Some(l) = metrics_listener {
        // Runs until the process exits.
        tokio::spawn(api::serve_metrics(
            l,
            state.clone(),
            std::future::pending::<()>(),
        ));
    }
    if let Some(l) = console_listener {
        let console = Arc::new(crate::console::Console::new(
            Duration::from_secs(s.console_session_minutes.max(1) * 60),
            s.console_certificate_sign_in,
        ));
        console.samples.start(state.clone());
        // Runs until the process exits.
        tokio::spawn(api::serve(
            l,
            state.clone(),
            api::Serves::Console(console),
            tls.clone(),
            std::future::pending::<()>(),
            Duration::from_secs(s.drain_seconds),
        ));
    }
    api::serve(
        listener,
        state,
        api::Serves::Api,
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

/// A database restored from an old backup would revive every key deleted since (and forget
/// every change): the audit anchor outside the database knows the trail went further, so the
/// service refuses to start on it and says what to do.
async fn check_not_restored(s: &Settings, store: &dyn Store) -> Result<()> {
    let Some(path) = &s.audit_anchor_file else {
        return Ok(());
    };
    let anchored = match crate::audit::anchor::read(path) {
        Ok(a) => a,
        // A new anchor (first start with one configured) has nothing to compare.
        Err(_) if !path.exists() => return Ok(()),
        Err(e) => return Err(anyhow!(e)),
    };
    let (db_seq, _) = store.audit_head().await?;
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
    let present = crate::audit::holds_event(store, anchored_seq, &anchored_hash).await?;
    if anchored_seq > db_seq || !present {
        return Err(anyhow!(
            "the database's audit trail (head at event {db_seq}) does not hold event {anchored_seq} as the audit anchor {} records it: the database was restored from an older backup (or events were deleted or rewritten). Serving it would revive keys deleted and undo changes made since. Keep the anchor as evidence, run `kms audit verify --anchor {}` to see what is missing, and start with a new audit_anchor_file only once the loss is understood",
            path.display(),
            path.display()
        ));
    }
    Ok(())
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
