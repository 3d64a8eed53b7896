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
        let mut access: std::collections::BTreeMap<String, (String, serde_json::Value)> =
            Default::default();
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
                    access.insert(target.to_string(), (name.to_string(), from));
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
                    if store
                        .deleted_per_trail(arn, chrono::DateTime::<chrono::Utc>::UNIX_EPOCH)
                        .await?
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
        for (target, (name, from)) in access {
            if name == "ActivateAccessKey" {
                continue;
            }
            let restored = self.store.access_key_per_trail(&target).await?;
            if restored.is_some_and(|(n, _)| n == name) {
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

/// The operator's words on an access key's status, as its events name them.
const ACCESS_KEY_WORDS: &[&str] = &[
    "DeactivateAccessKey",
    "ActivateAccessKey",
    "DeleteAccessKey",
];
