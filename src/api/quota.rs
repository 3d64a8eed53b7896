//! Request quotas per account and region (token buckets refilled continuously, one second of
//! burst), in two shares as AWS counts them: cryptographic operations, and the rest.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Operations that count against the cryptographic quota.
const CRYPTO: &[&str] = &[
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateRandom",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

struct Bucket {
    tokens: f64,
    at: Instant,
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
        let crypto = CRYPTO.contains(&op);
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
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
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
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(q.allow("a", "r", "Encrypt"));
    }
}
