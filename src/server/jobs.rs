//! A node's background work: scheduled deletions and rotations, root and MAC key follow-up,
//! audit checkpoints, cache invalidation on other nodes' changes, fault injection in tests.

use crate::domain::Kms;
use crate::store::Store;
use anyhow::Result;
use std::sync::Arc;
use std::time::Duration;

/// Fault tests: each SIGUSR1 inflicts the fault named in `file` on the token.
pub fn spawn_fault_injection(kms: Arc<Kms>, file: std::path::PathBuf) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    tracing::warn!(file = %file.display(), "fault injection is enabled (SIGUSR1)");
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            // `<fault>` for the service's token, `store <id> <fault>` for the partition of a
            // custom key store this node is logged in to.
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let (token, fault) = match text.trim().strip_prefix("store ") {
                Some(rest) => {
                    let (id, fault) = rest.split_once(' ').unwrap_or((rest, ""));
                    (kms.open_partition(id), fault)
                }
                None => (Some(kms.hsm().clone()), text.trim()),
            };
            let (Some(token), Ok(fault)) = (token, fault.parse::<crate::hsm::Fault>()) else {
                tracing::error!(fault = %text.trim(), "no fault to inject (or no such open partition)");
                continue;
            };
            match token.inject_fault(fault).await {
                Ok(()) => tracing::warn!(?fault, "fault injected into the token"),
                Err(e) => tracing::error!(?fault, error = %e, "could not inject the fault"),
            }
        }
    });
    Ok(())
}

/// Every `every`: summarise throttled authentication failures, chain the change records left
/// over (older than `settle_after`), and sign a checkpoint over the audit chain head (when it moved).
pub fn spawn_checkpoints(
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

/// Background jobs: at start (catching up on anything that fell due while no server ran) and
/// then every `interval`, delete keys whose waiting period ended and rotate keys that are due.
pub fn spawn_scheduler(
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
            // The next run: after `interval`, or at once for work a request left (an
            // on-demand rotation to complete).
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = kms.background_jobs_woken() => {}
            }
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
fn apply_change(kms: &Arc<Kms>, change: Option<(&str, &str)>) {
    match change {
        Some(("kms_custom_key_store_changed", id)) => {
            let (kms, id) = (kms.clone(), id.to_string());
            tokio::spawn(async move { kms.follow_custom_key_store(Some(&id)).await });
        }
        Some(("kms_identity_changed", _)) => kms.invalidate_identities(),
        Some(("kms_grant_changed", p)) => kms.invalidate_grants(p.parse().ok()),
        Some(("kms_alias_changed", _)) => kms.invalidate_aliases(),
        Some((_, p)) => kms.invalidate(p.parse().ok()),
        None => {
            let k = kms.clone();
            tokio::spawn(async move { k.follow_custom_key_store(None).await });
            kms.invalidate(None);
            kms.invalidate_identities();
            kms.invalidate_grants(None);
            kms.invalidate_aliases();
        }
    }
}

/// Drop cached entries when any process changes what they hold ([`Store::changes`]). If
/// announcements may have been missed, the whole cache is dropped. The custom key stores are
/// followed again every `max_age` besides (as cached rows are read again once that old): a
/// store disconnected elsewhere is disconnected here even if its announcement never comes.
pub async fn spawn_invalidation(
    store: Arc<dyn Store>,
    kms: Arc<Kms>,
    max_age: Duration,
) -> Result<()> {
    // With several database hosts, the pool follows the one that takes writes.
    store.follow_primary(Duration::from_millis(500));
    let mut changes = store.changes().await?;
    // The custom key stores recorded connected are connected on this node too.
    let k = kms.clone();
    tokio::spawn(async move {
        k.follow_custom_key_store(None).await;
        loop {
            tokio::time::sleep(max_age.max(Duration::from_secs(1))).await;
            k.follow_custom_key_stores(None, false).await;
        }
    });
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

/// Every `every`: report this node (its address, release, token, readiness) for the console's
/// operator view.
pub fn spawn_node_reports(kms: Arc<Kms>, address: String, every: Duration) {
    let node_id = format!(
        "{}-{}",
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "node".into()),
        std::process::id()
    );
    let started_at = chrono::Utc::now();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r = kms.readiness(crate::api::READINESS_TIMEOUT).await;
            let node = crate::domain::nodes::NodeRecord {
                node_id: node_id.clone(),
                address: address.clone(),
                version: crate::domain::VERSION.to_string(),
                token_label: r.token_label.clone(),
                ready: r.ready(),
                started_at,
                last_seen: chrono::Utc::now(),
            };
            if let Err(e) = kms.report_node(&node).await {
                tracing::debug!(error = %e, "could not report this node");
            }
        }
    });
}
