//! The caches of rows read from the database and verified (key metadata, tags, policies,
//! grants, aliases, identities, signing keys): bounded, least recently used first out, and
//! with a maximum age.
//!
//! Every node drops an entry when the database announces that its row changed (Postgres's
//! NOTIFY from the tables' triggers, SQLite's change table). The age bounds how long a node can
//! act on a row another node changed when that announcement does not come: the listening
//! connection lost it, or a database writer disabled the triggers that send it (a DisableKey,
//! RevokeGrant or deactivated access key would otherwise go unseen by every other node until
//! it restarted). An entry past its age is read and verified again; the rows' seals, already
//! verified once, cost the token nothing then (`hsm::mac::VerifiedMacs`).

use lru::LruCache;
use std::borrow::Borrow;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

pub struct Cache<K: Hash + Eq, V> {
    entries: LruCache<K, (Instant, V)>,
    max_age: Duration,
    /// Moved on every drop ([`Cache::pop`], [`Cache::clear`]): a row read before a drop and
    /// put after it ([`Cache::put_unless_dropped_since`]) is not kept.
    drops: u64,
}

impl<K: Hash + Eq, V> Cache<K, V> {
    pub fn new(capacity: NonZeroUsize, max_age: Duration) -> Self {
        Cache {
            entries: LruCache::new(capacity),
            max_age,
            drops: 0,
        }
    }

    /// How long an entry is used before it is read again.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Where the drops stand now: taken before a row is read, given back to
    /// [`Cache::put_unless_dropped_since`] with what was read.
    pub fn drops(&self) -> u64 {
        self.drops
    }

    /// Keep `v` for `k` unless an entry was dropped since `drops` was taken: the row was read
    /// before a change's drop reached this cache, and may be the row from before the change.
    pub fn put_unless_dropped_since(&mut self, drops: u64, k: K, v: V) {
        if self.drops == drops {
            self.put(k, v);
        }
    }

    fn fresh<Q>(&self, k: &Q) -> Option<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries
            .peek(k)
            .map(|(at, _)| at.elapsed() < self.max_age)
    }

    /// The entry for `k`, unless it is older than the maximum age (then it is dropped).
    pub fn get<Q>(&mut self, k: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.fresh(k)? {
            true => self.entries.get(k).map(|(_, v)| v),
            false => {
                self.entries.pop(k);
                None
            }
        }
    }

    pub fn contains<Q>(&self, k: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.fresh(k).unwrap_or(false)
    }

    pub fn put(&mut self, k: K, v: V) -> Option<V> {
        self.entries.put(k, (Instant::now(), v)).map(|(_, v)| v)
    }

    pub fn pop<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.drops += 1;
        self.entries.pop(k).map(|(_, v)| v)
    }

    pub fn clear(&mut self) {
        self.drops += 1;
        self.entries.clear()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_past_its_age_is_gone() {
        let mut c = Cache::new(NonZeroUsize::new(2).unwrap(), Duration::from_millis(50));
        c.put("a", 1);
        assert_eq!(c.get(&"a"), Some(&1));
        assert!(c.contains(&"a"));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!c.contains(&"a"));
        assert_eq!(c.get(&"a"), None);
        c.put("a", 2);
        assert_eq!(c.get(&"a"), Some(&2));
        assert_eq!(c.pop(&"a"), Some(2));
        assert_eq!(c.get(&"a"), None);
    }

    #[test]
    fn a_row_read_before_a_drop_is_not_kept_after_it() {
        let mut c = Cache::new(NonZeroUsize::new(2).unwrap(), Duration::from_secs(60));
        let before = c.drops();
        c.pop(&"a"); // A change reached the cache while "a" was being read.
        c.put_unless_dropped_since(before, "a", 1);
        assert_eq!(c.get(&"a"), None);
        let now = c.drops();
        c.put_unless_dropped_since(now, "a", 2);
        assert_eq!(c.get(&"a"), Some(&2));
    }
}
