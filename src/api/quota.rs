//! Request quotas per account and region (token buckets refilled continuously, one second of
//! burst), in two shares as AWS counts them: cryptographic operations, and the rest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Refilled at `rate` a second since it was last, up to `burst`.
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
    }

    /// Refilled, then one token taken if there is one.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.refill(now, rate, burst);
        let taken = self.tokens >= 1.0;
        if taken {
            self.tokens -= 1.0;
        }
        taken
    }
}

pub struct Quotas {
    crypto_per_second: f64,
    management_per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Quotas {
    pub fn new(crypto_per_second: u32, management_per_second: u32) -> Quotas {
        Quotas {
            crypto_per_second: crypto_per_second as f64,
            management_per_second: management_per_second as f64,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from the account's share for `op`; false when it is used up.
    pub fn allow(&self, account: &str, region: &str, op: &str) -> bool {
        let crypto = crate::operations::find_any(op)
            .is_some_and(|o| o.quota == crate::operations::Quota::Cryptographic);
        let rate = if crypto {
            self.crypto_per_second
        } else {
            self.management_per_second
        };
        if rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let key = format!("{account}/{region}/{}", if crypto { 'c' } else { 'm' });
        let mut buckets = self.buckets.lock().unwrap();
        let b = buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        b.take(now, rate, rate)
    }
}

impl Quotas {
    /// An account's two shares in a Region now: for the cryptographic share, then the
    /// rest, the rate per second (0: unlimited) and what is left of this second's burst.
    pub fn usage(&self, account: &str, region: &str) -> [(f64, f64); 2] {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap();
        let left =
            |share: char, rate: f64| match buckets.get(&format!("{account}/{region}/{share}")) {
                Some(b) => (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate),
                None => rate,
            };
        [
            (self.crypto_per_second, left('c', self.crypto_per_second)),
            (
                self.management_per_second,
                left('m', self.management_per_second),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_allows_its_rate_then_refuses_and_refills() {
        let q = Quotas::new(5, 2);
        let ok = (0..10).filter(|_| q.allow("a", "r", "Encrypt")).count();
        assert_eq!(ok, 5);
        // Another account, and the management share, are separate.
        assert!(q.allow("b", "r", "Encrypt"));
        assert!(q.allow("a", "r", "DescribeKey"));
        assert!(q.allow("a", "r", "DescribeKey"));
        assert!(!q.allow("a", "r", "DescribeKey"));
        let [(crypto, left), (management, _)] = q.usage("a", "r");
        assert_eq!((crypto, management), (5.0, 2.0));
        assert!(left < 1.0, "{left}");
        assert_eq!(q.usage("c", "r")[0], (5.0, 5.0));
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(q.allow("a", "r", "Encrypt"));
    }
}

/// Requests that fail authentication, per source address. A source that keeps failing is
/// throttled before its requests reach the database (`blocked`), and only the failures within
/// its budget are audited one by one; the rest are counted and written as one summary event
/// a minute (`take_suppressed`), so a flood grows neither the chain nor the database's load.
pub struct AuthGuard {
    per_second: f64,
    burst: f64,
    /// Failures audited one by one per second from all sources together (0: no limit), a
    /// second's worth at once: many sources, each within its budget, are summarised too.
    audited_per_second: f64,
    state: Mutex<AuthState>,
}

struct AuthState {
    /// Least recently failing sources go first when the table is full.
    buckets: lru::LruCache<std::net::IpAddr, Bucket>,
    /// The budget of all sources together.
    all: Bucket,
    suppressed: HashMap<std::net::IpAddr, u64>,
}

/// At most this many sources are tracked at once.
const MAX_SOURCES: usize = 100_000;

/// The source a budget belongs to: an IPv4 address, or an IPv6 /64 (one host's share of a
/// network; an attacker rotating addresses inside its /64 is still one source).
fn source_of(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                std::net::IpAddr::V6(std::net::Ipv6Addr::from(o))
            }
        },
        v4 => v4,
    }
}

impl AuthState {
    /// Count a suppressed failure; past `MAX_SOURCES` sources they are counted together under
    /// 0.0.0.0, so the summary stays bounded.
    fn suppress(&mut self, source: std::net::IpAddr) {
        let key = if self.suppressed.len() >= MAX_SOURCES && !self.suppressed.contains_key(&source)
        {
            std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            source
        };
        *self.suppressed.entry(key).or_default() += 1;
    }
}

impl AuthGuard {
    /// `per_second` failures per source, with a burst of `burst` (0: no limit), and
    /// `audited_per_second` audited one by one from all sources together (0: no limit).
    pub fn new(per_second: u32, burst: u32, audited_per_second: u32) -> AuthGuard {
        AuthGuard {
            per_second: per_second as f64,
            burst: burst.max(1) as f64,
            audited_per_second: audited_per_second as f64,
            state: Mutex::new(AuthState {
                buckets: lru::LruCache::new(
                    std::num::NonZeroUsize::new(MAX_SOURCES).expect("non-zero"),
                ),
                all: Bucket {
                    tokens: audited_per_second as f64,
                    at: Instant::now(),
                },
                suppressed: HashMap::new(),
            }),
        }
    }

    /// Whether the source has used up its failures: its request is refused (and counted, not
    /// audited) before any work is done for it.
    pub fn blocked(&self, source: std::net::IpAddr) -> bool {
        if self.per_second <= 0.0 {
            return false;
        }
        let source = source_of(source);
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        let blocked = match st.buckets.peek_mut(&source) {
            Some(b) => {
                b.refill(now, self.per_second, self.burst);
                b.tokens < 1.0
            }
            None => false,
        };
        if blocked {
            st.suppress(source);
        }
        blocked
    }

    /// A request from `source` failed authentication. True: audit it as usual; false: the
    /// source is over its budget, and the failure is counted for the summary instead.
    pub fn failed(&self, source: std::net::IpAddr) -> bool {
        let source = source_of(source);
        let now = Instant::now();
        let mut st = self.state.lock().unwrap();
        // The source's own budget (none when `per_second` is 0), then all sources' together.
        let (rate, burst) = (self.per_second, self.burst);
        let within_source = rate <= 0.0
            || st
                .buckets
                .get_or_insert_mut(source, || Bucket {
                    tokens: burst,
                    at: now,
                })
                .take(now, rate, burst);
        let all = self.audited_per_second;
        if within_source && (all <= 0.0 || st.all.take(now, all, all)) {
            true
        } else {
            st.suppress(source);
            false
        }
    }

    /// The failures counted since the last call, by source (for the summary event).
    pub fn take_suppressed(&self) -> Vec<(std::net::IpAddr, u64)> {
        let mut st = self.state.lock().unwrap();
        let mut v: Vec<_> = st.suppressed.drain().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    #[test]
    fn a_failing_source_is_blocked_and_counted_others_are_not() {
        let g = AuthGuard::new(1, 3, 0);
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(!g.blocked(a));
        assert!(g.failed(a) && g.failed(a) && g.failed(a));
        assert!(!g.failed(a));
        assert!(g.blocked(a));
        assert!(!g.blocked(b));
        assert!(g.failed(b));
        assert_eq!(g.take_suppressed(), vec![(a, 2)]);
        assert!(g.take_suppressed().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(!g.blocked(a));
    }

    #[test]
    fn many_sources_within_their_budgets_are_audited_together_within_one() {
        let g = AuthGuard::new(1, 3, 5);
        let ip = |i: u8| -> std::net::IpAddr { std::net::Ipv4Addr::new(10, 1, 0, i).into() };
        // Five sources' first failures are audited; the next sources', each within its own
        // budget, are counted for the summary instead (and not throttled: that is their own
        // budget's say).
        let audited = (1..=20).filter(|i| g.failed(ip(*i))).count();
        assert_eq!(audited, 5);
        assert!((1..=20).all(|i| !g.blocked(ip(i))));
        assert_eq!(g.take_suppressed().len(), 15);
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(g.failed(ip(1)) && g.failed(ip(2)));
    }

    #[test]
    fn the_budget_of_all_sources_holds_without_one_per_source() {
        let g = AuthGuard::new(0, 3, 2);
        let ip = |i: u8| -> std::net::IpAddr { std::net::Ipv4Addr::new(10, 2, 0, i).into() };
        assert_eq!((1..=6).filter(|i| g.failed(ip(*i))).count(), 2);
        assert!((1..=6).all(|i| !g.blocked(ip(i))));
    }

    #[test]
    fn an_ipv6_network_is_one_source() {
        let g = AuthGuard::new(1, 2, 0);
        let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap() };
        assert!(g.failed(ip("2001:db8::1")) && g.failed(ip("2001:db8::2")));
        // Another address of the same /64: the same budget, used up.
        assert!(!g.failed(ip("2001:db8::ffff:1")));
        assert!(g.blocked(ip("2001:db8::9")));
        // Another /64 has its own; an IPv4-mapped address is its IPv4 address.
        assert!(!g.blocked(ip("2001:db8:0:1::1")));
        assert!(g.failed(ip("::ffff:10.0.0.9")));
        assert!(g.failed(ip("10.0.0.9")));
        assert!(!g.failed(ip("::ffff:10.0.0.9")));
    }
}

/// The connections each source (see [`source_of`]) holds on a listener.
#[derive(Clone, Default)]
pub struct SourceConnections(Arc<Mutex<HashMap<std::net::IpAddr, usize>>>);

/// One connection of a source, counted until it is dropped.
pub struct SourceShare {
    of: SourceConnections,
    source: std::net::IpAddr,
}

impl SourceConnections {
    /// A share for a new connection from `ip`, unless its source holds `limit` already.
    pub fn take(&self, ip: std::net::IpAddr, limit: usize) -> Option<SourceShare> {
        let source = source_of(ip);
        let mut held = self.0.lock().unwrap();
        let n = held.entry(source).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceShare {
            of: self.clone(),
            source,
        })
    }
}

impl Drop for SourceShare {
    fn drop(&mut self) {
        let mut held = self.of.0.lock().unwrap();
        if let Some(n) = held.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.source);
            }
        }
    }
}
