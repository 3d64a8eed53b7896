//! The key inventory of the console and the reports: a page of the keys a principal may list,
//! each it may also describe with its aliases, through the same authorization as
//! `ListKeys`, `DescribeKey` and `ListAliases`.

use super::preamble::{Access, ANY_STATE};
use super::*;

/// One key of the inventory.
#[derive(Debug, Clone)]
pub struct InventoryRow {
    pub meta: KeyMetadata,
    /// Its aliases (none shown where the principal may not list aliases).
    pub aliases: Arc<Vec<String>>,
}

/// A page of the inventory.
#[derive(Debug, Clone, Default)]
pub struct InventoryPage {
    pub rows: Vec<InventoryRow>,
    /// Keys of the page the principal may list but not describe.
    pub hidden: usize,
    /// Where the next page starts, if there is one.
    pub next_marker: Option<String>,
}

impl Kms {
    /// At most `limit` of the keys `caller` may list (`kms:ListKeys`) after `marker`: each it
    /// may describe (`kms:DescribeKey`), with its aliases where it may list them
    /// (`kms:ListAliases`).
    pub async fn inventory(
        &self,
        caller: &Caller,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<InventoryPage> {
        let listed = self.list_keys(caller, limit, marker).await?;
        let aliases_shown = self
            .authorize(caller, "kms:ListAliases", None, None, &[])
            .await
            .is_ok();
        let mut page = InventoryPage {
            next_marker: listed.next_marker,
            ..InventoryPage::default()
        };
        for (_, arn) in listed.keys {
            let access = Access::to("kms:DescribeKey", ANY_STATE);
            let Ok(rec) = self.key_for(caller, &arn, access).await else {
                page.hidden += 1;
                continue;
            };
            let meta = self.metadata(&rec).await?;
            let aliases = if aliases_shown {
                // A key whose alias row fails its check shows none (the failure is logged).
                self.aliases_of(&rec).await.unwrap_or_default()
            } else {
                Arc::default()
            };
            page.rows.push(InventoryRow { meta, aliases });
        }
        Ok(page)
    }
}
