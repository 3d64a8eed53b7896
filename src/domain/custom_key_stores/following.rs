//! A node following the custom key stores other nodes connect and disconnect.

use super::CONNECTED;
use crate::domain::Kms;

impl Kms {
    /// Another node changed store `id` (or, `None`, changes may have been missed): this node
    /// follows its recorded state, logging in to a store recorded connected and out of one that
    /// is not any more (its keys' handles go with it).
    pub async fn follow_custom_key_store(&self, id: Option<&str>) {
        self.follow_custom_key_stores(id, true).await
    }

    /// [`Kms::follow_custom_key_store`], logging in to stores connected elsewhere only if
    /// `log_in` (the periodic pass only closes: a store whose PIN no longer works is not tried
    /// again every pass, which would lock its HSM user).
    pub async fn follow_custom_key_stores(&self, id: Option<&str>, log_in: bool) {
        let Ok(store) = self.cks.store() else {
            return;
        };
        let ids: Vec<String> = match id {
            Some(id) => vec![id.to_string()],
            None => {
                let mut all: std::collections::BTreeSet<String> =
                    self.cks.open.lock().unwrap().keys().cloned().collect();
                all.extend(self.cks.proxies.lock().unwrap().keys().cloned());
                if log_in {
                    if let Ok(connected) = store.connected_custom_key_stores().await {
                        all.extend(connected);
                    }
                }
                all.into_iter().collect()
            }
        };
        for id in ids {
            let row = match store.custom_key_store(&id).await {
                Ok(Some(r)) => self.verified_store(r).await.ok(),
                _ => None,
            };
            match row {
                Some(r) if r.connection_state == CONNECTED => {
                    if log_in && !self.connected_here(&id) {
                        let _ = self.log_in_following(&r).await;
                    }
                }
                _ => self.close_partition(&id),
            }
        }
    }
}
