//! After a restore from a backup: the live trail's ends (keys deleted, grants retired or
//! revoked, access keys deactivated or deleted after the backup was taken) carried into the
//! restored trail, so the restored database does not revive them.

use super::Operator;
use anyhow::{anyhow, Result};

/// What [`Operator::carry_forward_ends`] recorded.
pub struct CarriedForward {
    pub keys: usize,
    pub grants: usize,
    /// Access keys the live trail's operator last deactivated or deleted.
    pub access_keys: usize,
    /// The last signed checkpoint of the live trail: nothing after it was taken.
    pub signed_to: i64,
}

impl Operator {
    /// `kms admin carry-forward-ends`: the live trail's key deletions and grant ends, signed
    /// by its checkpoints, recorded in this (restored) trail where they are missing, so the
    /// deleted-key and ended-grant checks refuse the rows the backup brought back.
    pub async fn carry_forward_ends(
        &self,
        text: &str,
        source: &str,
        key: &[u8],
    ) -> Result<CarriedForward> {
        let store = self.store.as_ref();
        let (links, checkpoints) =
            crate::audit::verify::parse_export(text).map_err(|e| anyhow!(e))?;
        let report = crate::audit::verify::verify(&links, &checkpoints, key, false, None);
        if let Some((seq, problem)) = report.problems.first() {
            anyhow::bail!(
                "the live trail {source} does not verify (event {seq}: {problem}); nothing was carried forward"
            );
        }
        // Only what a signed checkpoint covers: events past the last one could have been written
        // by anyone who edited the export.
        let signed_to = checkpoints.iter().map(|c| c.seq).max().unwrap_or(0);
        let (mut keys, mut grants) = (0, 0);
        // Per access key, the operator's last word on it in the live trail.
        #[allow(clippy::type_complexity)]
        let mut access: std::collections::BTreeMap<
            String,
            (String, serde_json::Value, serde_json::Value),
        > = Default::default();
        for l in links.iter().filter(|l| l.seq <= signed_to) {
            let Some(body) = &l.body else { continue };
            let v: serde_json::Value = serde_json::from_str(body)
                .map_err(|_| anyhow!("event {} of the live trail is not JSON", l.seq))?;
            let name = v["eventName"].as_str().unwrap_or_default();
            let by = v.pointer("/userIdentity/type").and_then(|t| t.as_str());
            let by_service = by == Some("AWSService");
            let from = serde_json::json!({ "seq": l.seq, "eventId": v["eventID"], "eventTime": v["eventTime"] });
            if by == Some("Operator") && ACCESS_KEY_WORDS.contains(&name) {
                if let Some(target) = v
                    .pointer("/requestParameters/target")
                    .and_then(|t| t.as_str())
                {
                    access.insert(target.to_string(), (name.to_string(), from, v.clone()));
                }
                continue;
            }
            let (Some(arn), Some(region)) = (
                v.pointer("/resources/0/ARN").and_then(|a| a.as_str()),
                v["awsRegion"].as_str(),
            ) else {
                continue;
            };
            let event = match name {
                "DeleteKey" if by_service => {
                    // This deletion, not any deletion of the ARN (a multi-Region replica
                    // deleted, replicated again and deleted again; a backup that plants a
                    // deletion dated 1970): carried unless the restored trail holds it.
                    if in_restored_trail(store, &v).await? {
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
                    let ended = store.ended_grants_per_trail(arn).await?;
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
            self.record(event).await?;
        }
        // An access key deactivated or deleted after the backup: its Active row in the backup is
        // refused once the restored trail says so too (where it says nothing later already).
        let mut access_keys = 0;
        for (target, (name, from, event)) in access {
            // This word, not one of the same name before it (the key deactivated, imported
            // again and deactivated again): carried unless the restored trail holds it.
            if name == "ActivateAccessKey" || in_restored_trail(store, &event).await? {
                continue;
            }
            access_keys += 1;
            self.record(crate::audit::admin_event(
                &name,
                &target,
                &self.name,
                serde_json::json!({
                    "reason": "in the live trail after the backup this database was restored from",
                    "carriedForwardFrom": from,
                }),
            ))
            .await?;
        }
        Ok(CarriedForward {
            keys,
            grants,
            access_keys,
            signed_to,
        })
    }
}

/// Whether the restored trail holds the live trail's event `v` (its `eventID`, within the
/// second its `eventTime` names): the backup was taken after it.
async fn in_restored_trail(store: &dyn crate::store::Store, v: &serde_json::Value) -> Result<bool> {
    let id = v["eventID"]
        .as_str()
        .and_then(|i| uuid::Uuid::parse_str(i).ok());
    let time = v["eventTime"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let (Some(id), Some(time)) = (id, time) else {
        return Ok(false);
    };
    let second = time.to_utc();
    let within = (second, second + chrono::Duration::microseconds(999_999));
    Ok(store.event_in_trail(id, within).await?)
}

/// The operator's words on an access key's status, as its events name them.
const ACCESS_KEY_WORDS: &[&str] = &[
    "DeactivateAccessKey",
    "ActivateAccessKey",
    "DeleteAccessKey",
];
