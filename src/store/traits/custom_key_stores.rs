//! [`CustomKeyStores`]: the repository of custom key stores (its one implementation for both
//! stores is `store/custom_key_stores.rs`).

use crate::store::*;
use async_trait::async_trait;

#[async_trait]
pub trait CustomKeyStores: Send + Sync {
    /// Insert a custom key store unless its account has `max` in the region already (counted
    /// in the same transaction): `Conflict` ([`QUOTA_EXCEEDED`]); a name or cluster already
    /// taken: `Conflict` (`custom_key_stores_name`, `custom_key_stores_cluster`).
    async fn insert_custom_key_store(
        &self,
        r: &CustomKeyStoreRecord,
        max: i64,
    ) -> Result<(), StoreError>;
    /// The custom key stores of an account in a region, oldest first.
    async fn custom_key_stores(
        &self,
        account_id: &str,
        region: &str,
    ) -> Result<Vec<CustomKeyStoreRecord>, StoreError>;
    async fn custom_key_store(&self, id: &str) -> Result<Option<CustomKeyStoreRecord>, StoreError>;
    /// Replace a custom key store's row if its MAC is still `expected_mac` (compare and set):
    /// `Conflict` (`custom_key_store_changed`) otherwise, or a name or cluster already taken.
    async fn update_custom_key_store(
        &self,
        r: &CustomKeyStoreRecord,
        expected_mac: &[u8],
    ) -> Result<(), StoreError>;
    /// Delete a custom key store if its MAC is still `expected_mac` and no key lives in it:
    /// `Conflict` (`custom_key_store_changed`, `custom_key_store_has_keys`).
    async fn delete_custom_key_store(
        &self,
        id: &str,
        expected_mac: &[u8],
    ) -> Result<(), StoreError>;
    /// The ids of every custom key store recorded connected (the nodes follow them).
    async fn connected_custom_key_stores(&self) -> Result<Vec<String>, StoreError>;
    /// How many keys (in any state) live in the custom key store.
    async fn keys_in_custom_key_store(&self, id: &str) -> Result<i64, StoreError>;
}
