//! The nodes of the deployment, as each reports itself every few seconds (its address,
//! release, token and readiness), for the console's operator view. What a node says of itself
//! is shown, never trusted: nothing is decided from it.

use super::*;
pub use crate::store::NodeRecord;

/// A node not seen for a day is forgotten.
const FORGET_AFTER_DAYS: i64 = 1;

impl Kms {
    /// Report this node as it is now.
    pub async fn report_node(&self, node: &NodeRecord) -> Result<()> {
        let forget_before = node.last_seen - chrono::Duration::days(FORGET_AFTER_DAYS);
        Ok(self.cks.store()?.node_seen(node, forget_before).await?)
    }

    /// The nodes that reported themselves, most recently seen first. For a principal allowed
    /// `cloudwatch:GetMetricData` (AWS's action for reading a service's metrics): the operator
    /// view shows the deployment, not an account's resources.
    pub async fn nodes_seen(&self, caller: &Caller) -> Result<Vec<NodeRecord>> {
        self.may_view_operations(caller).await?;
        Ok(self.cks.store()?.nodes().await?)
    }

    /// Whether `caller` may see the operator view (`cloudwatch:GetMetricData`): a principal of
    /// the deployment's own account only. The view is of every node and every tenant's rates;
    /// another account's administrator (`"Action": "*"`) may not see it.
    pub async fn may_view_operations(&self, caller: &Caller) -> Result<()> {
        if self.operator_account.get() != Some(&caller.account_id) {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to perform: cloudwatch:GetMetricData because the operator view is the deployment's operators'",
                caller.principal_arn
            )));
        }
        self.authorize(caller, "cloudwatch:GetMetricData", None, None, &[])
            .await
    }
}
