//! The compliance reports an audit asks for (PCI DSS v4.0 3.6–3.7, NIST SP 800-57, ISO 27001
//! A.8.24): the key inventory with each key's cryptoperiod, the access review, and the keys
//! unused, pending deletion or expiring. Each is built from what the asking principal may see,
//! through the calls the API makes (every row authorized as that principal), and signed by the
//! caller with [`Kms::sign_report`] over the chain head.

use super::*;
use chrono::DateTime;

/// A report's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Inventory,
    Access,
    Unused,
}

impl ReportKind {
    pub const ALL: [ReportKind; 3] = [
        ReportKind::Inventory,
        ReportKind::Access,
        ReportKind::Unused,
    ];

    /// Its name in URLs and file names.
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Inventory => "inventory",
            ReportKind::Access => "access-review",
            ReportKind::Unused => "unused-keys",
        }
    }

    pub fn parse(name: &str) -> Option<ReportKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn title(self) -> &'static str {
        match self {
            ReportKind::Inventory => "Key inventory and cryptoperiods",
            ReportKind::Access => "Access review",
            ReportKind::Unused => "Unused keys, keys pending deletion and expiring key material",
        }
    }

    /// The requirements it answers.
    pub fn basis(self) -> &'static str {
        match self {
            ReportKind::Inventory => "PCI DSS v4.0 3.6.1, 3.7.1-3.7.5 (inventory, cryptoperiods, retirement); NIST SP 800-57 Part 1 Rev. 5, 5.3 (cryptoperiods); ISO/IEC 27001:2022 A.8.24",
            ReportKind::Access => "PCI DSS v4.0 3.6.1.2, 7.2.4 (review of access to cryptographic keys); ISO/IEC 27001:2022 A.5.18",
            ReportKind::Unused => "PCI DSS v4.0 3.7.5 (retirement of keys no longer needed); NIST SP 800-57 Part 1 Rev. 5, 5.3.4",
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ReportKind::Inventory => &[
                "account_id",
                "region",
                "key_id",
                "key_arn",
                "aliases",
                "description",
                "key_spec",
                "key_usage",
                "origin",
                "key_manager",
                "custom_key_store",
                "key_state",
                "created",
                "rotation_enabled",
                "rotation_period_days",
                "next_rotation",
                "rotations",
                "last_rotation",
                "last_used",
                "last_used_operation",
                "cryptoperiod_days",
                "cryptoperiod",
            ],
            ReportKind::Access => &[
                "key_id",
                "key_arn",
                "principal",
                "kind",
                "actions",
                "through",
            ],
            ReportKind::Unused => &[
                "finding",
                "key_id",
                "key_arn",
                "aliases",
                "key_state",
                "created",
                "last_used",
                "date",
                "detail",
            ],
        }
    }
}

/// What a report is asked for with.
#[derive(Debug, Clone, Copy)]
pub struct ReportParams {
    /// The cryptoperiod of a key without automatic rotation (days).
    pub cryptoperiod_days: i64,
    /// A key not used for this many days is reported as unused; material expiring within
    /// as many days is reported as expiring.
    pub unused_days: i64,
}

impl Default for ReportParams {
    fn default() -> Self {
        ReportParams {
            cryptoperiod_days: super::inventory::DEFAULT_CRYPTOPERIOD_DAYS,
            unused_days: 90,
        }
    }
}

/// A report's content, before it is written out and signed.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: ReportKind,
    pub account_id: String,
    pub region: String,
    pub principal: String,
    pub generated_at: DateTime<Utc>,
    pub parameters: Vec<(&'static str, String)>,
    pub rows: Vec<Vec<String>>,
    /// What the report leaves out, and why.
    pub notes: Vec<String>,
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

/// One key a report is being built for, and what it is built with.
struct KeyInReport<'a> {
    caller: &'a Caller,
    meta: &'a KeyMetadata,
    aliases: &'a [String],
    params: ReportParams,
    now: DateTime<Utc>,
}

/// What the inventory report says of its description column: every other column is read from
/// rows the service sealed (or from the trail), a description is not.
pub const UNSEALED_DESCRIPTIONS: &str = "A key's description (its purpose) is shown as stored: unlike the other columns, it is not sealed against a change made in the database.";

/// The keys of the caller's account and Region, a page at a time.
const PAGE: usize = 1000;

impl Kms {
    /// Build report `kind` as `caller` may see it: keys it may list and describe, and for each
    /// the parts it may read (a part it may not read is empty, and said in the notes).
    pub async fn report(
        &self,
        caller: &Caller,
        kind: ReportKind,
        params: ReportParams,
    ) -> Result<Report> {
        let now = self.now();
        let mut r = Report {
            kind,
            account_id: caller.account_id.clone(),
            region: caller.region.clone(),
            principal: caller.principal_arn.clone(),
            generated_at: now,
            parameters: match kind {
                ReportKind::Inventory => vec![(
                    "cryptoperiod_days (keys without automatic rotation)",
                    params.cryptoperiod_days.to_string(),
                )],
                ReportKind::Access => vec![],
                ReportKind::Unused => vec![("unused_days", params.unused_days.to_string())],
            },
            rows: Vec::new(),
            notes: Vec::new(),
        };
        let (mut hidden, mut unread) = (0, 0);
        let mut marker: Option<String> = None;
        loop {
            let page = self.inventory(caller, marker.as_deref(), PAGE).await?;
            hidden += page.hidden;
            for row in &page.rows {
                let k = KeyInReport {
                    caller,
                    meta: &row.meta,
                    aliases: &row.aliases,
                    params,
                    now,
                };
                let complete = match kind {
                    ReportKind::Inventory => self.inventory_row(&k, &mut r.rows).await,
                    ReportKind::Access => self.access_rows(caller, &row.meta, &mut r.rows).await,
                    ReportKind::Unused => self.unused_rows(&k, &mut r.rows).await,
                };
                if !complete {
                    unread += 1;
                }
            }
            match page.next_marker {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        if hidden > 0 {
            r.notes.push(format!(
                "{hidden} keys the principal may list but not describe are left out."
            ));
        }
        if unread > 0 {
            r.notes.push(format!(
                "For {unread} keys the principal may not read every part this report shows (rotations, last use, key policy or grants): those cells are empty, or the key's access rows are left out."
            ));
        }
        if matches!(kind, ReportKind::Inventory) {
            r.notes.push(UNSEALED_DESCRIPTIONS.into());
        }
        Ok(r)
    }

    /// The inventory row of one key; false if a part could not be read.
    async fn inventory_row(&self, k: &KeyInReport<'_>, rows: &mut Vec<Vec<String>>) -> bool {
        let (caller, m, aliases, params, now) = (k.caller, k.meta, k.aliases, k.params, k.now);
        let renewal = self.renewal(caller, &m.arn).await;
        let used = self.key_last_usage(caller, &m.arn).await.ok();
        let (period, verdict) = match renewal.cryptoperiod(m, params.cryptoperiod_days, now) {
            Some((p, v)) => (p.to_string(), v.to_string()),
            None => Default::default(),
        };
        let complete = renewal.status.is_some() && renewal.rotations.is_some() && used.is_some();
        let status = renewal.status;
        let (rotations, last_rotation) = match renewal.rotations {
            Some((n, last)) => (n.to_string(), last),
            None => Default::default(),
        };
        let last = used.as_ref().and_then(|u| u.last.as_ref());
        rows.push(vec![
            m.account_id.clone(),
            m.arn.split(':').nth(3).unwrap_or_default().to_string(),
            m.key_id.clone(),
            m.arn.clone(),
            aliases.join(" "),
            m.description.clone(),
            m.key_spec.to_string(),
            m.key_usage.to_string(),
            m.origin.to_string(),
            m.key_manager.clone(),
            m.custom_key_store
                .as_ref()
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
            m.key_state.to_string(),
            time(&m.created_at),
            status
                .as_ref()
                .map(|s| s.enabled.to_string())
                .unwrap_or_default(),
            status
                .as_ref()
                .and_then(|s| s.period_days)
                .map(|d| d.to_string())
                .unwrap_or_default(),
            opt_time(status.as_ref().and_then(|s| s.next.as_ref())),
            rotations,
            opt_time(last_rotation.as_ref()),
            opt_time(last.map(|l| &l.time)),
            last.map(|l| l.operation.clone()).unwrap_or_default(),
            period,
            verdict,
        ]);
        complete
    }

    /// The access rows of one key; false if the principal may not review its access.
    async fn access_rows(
        &self,
        caller: &Caller,
        m: &KeyMetadata,
        rows: &mut Vec<Vec<String>>,
    ) -> bool {
        let Ok(review) = self.access_review(caller, &m.arn).await else {
            return false;
        };
        let groups = [
            ("account principal", &review.principals),
            ("other account", &review.other_accounts),
            ("grant", &review.grants),
        ];
        for (kind, entries) in groups {
            for e in entries {
                rows.push(vec![
                    m.key_id.clone(),
                    m.arn.clone(),
                    e.principal.clone(),
                    kind.to_string(),
                    e.actions.join(" "),
                    e.through.join("; "),
                ]);
            }
        }
        if review.truncated {
            rows.push(vec![
                m.key_id.clone(),
                m.arn.clone(),
                String::new(),
                "account principal".into(),
                String::new(),
                format!(
                    "more than {} principals in the account: the rest were not reviewed",
                    simulate::REVIEWED_PRINCIPALS
                ),
            ]);
        }
        true
    }

    /// The findings of one key (unused, pending deletion, material expiring); false if its
    /// last use could not be read.
    async fn unused_rows(&self, k: &KeyInReport<'_>, rows: &mut Vec<Vec<String>>) -> bool {
        let (caller, m, aliases, params, now) = (k.caller, k.meta, k.aliases, k.params, k.now);
        let used = self.key_last_usage(caller, &m.arn).await.ok();
        let last = used.as_ref().and_then(|u| u.last.as_ref()).map(|l| l.time);
        let mut row = |finding: &str, date: String, detail: String| {
            rows.push(vec![
                finding.to_string(),
                m.key_id.clone(),
                m.arn.clone(),
                aliases.join(" "),
                m.key_state.to_string(),
                time(&m.created_at),
                last.as_ref().map(time).unwrap_or_else(|| "never".into()),
                date,
                detail,
            ])
        };
        let pending = matches!(
            m.key_state,
            KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
        );
        if pending {
            row(
                "pending deletion",
                opt_time(m.deletion_date.as_ref()),
                "scheduled for deletion".into(),
            );
        }
        if let Some((_, Some(valid_to))) = &m.expiration {
            let left = (*valid_to - now).num_days();
            if left <= params.unused_days {
                row(
                    "material expires",
                    time(valid_to),
                    if left < 0 {
                        "expired".into()
                    } else {
                        format!("in {left} days")
                    },
                );
            }
        }
        if used.is_some() && !pending {
            let since = last.unwrap_or(m.created_at);
            let idle = (now - since).num_days();
            if idle >= params.unused_days {
                let detail = match last {
                    Some(_) => format!("not used for {idle} days"),
                    None => format!("never used in {idle} days since its creation"),
                };
                row("unused", String::new(), detail);
            }
        }
        used.is_some()
    }

    /// Sign a report this service wrote (its bytes up to the signature line) with the audit
    /// key over the chain head now. Only for text the service itself produced from a
    /// [`Report`]: the signature says the service wrote it.
    pub async fn sign_report(
        &self,
        content: &[u8],
    ) -> Result<crate::audit::report::ReportSignature> {
        let audit = self
            .audit
            .get()
            .ok_or_else(|| KmsError::Internal("the audit trail is not running".into()))?;
        audit
            .sign_report(content)
            .await
            .map_err(|e| KmsError::Internal(e.to_string()))
    }
}
