//! Rate budgets shared by all work in the process.
//!
//! AWS limits some APIs per account and per resource (EBS direct:
//! GetSnapshotBlock at 1,000 requests per second per snapshot and per
//! account). Every request of such an API waits for a token from each budget
//! it falls under, so concurrent acquisitions in one process (the webhook
//! server runs several) stay under the limits together instead of each
//! assuming it has the account to itself. Throttling that happens anyway is
//! retried by the SDK with backoff.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// GetSnapshotBlock requests per second, per snapshot and per account.
pub const EBS_GET_BLOCK_PER_SECOND: u32 = 1000;

static BUDGETS: LazyLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The process-wide budget named `key` (e.g. `ebs-get:account:123456789012`),
/// created with `per_second` on first use.
pub fn budget(key: &str, per_second: u32) -> Arc<DefaultDirectRateLimiter> {
    let quota = Quota::per_second(NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN));
    let mut map = match BUDGETS.lock() {
        Ok(m) => m,
        // A panic elsewhere while holding the lock leaves a usable map.
        Err(poisoned) => poisoned.into_inner(),
    };
    map.entry(key.to_owned())
        .or_insert_with(|| Arc::new(RateLimiter::direct(quota)))
        .clone()
}

/// Requests that had to wait for a budget: throttling custody did itself,
/// for the server's metrics.
pub static WAITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Waits for a token from every budget in `budgets`.
pub async fn acquire(budgets: &[Arc<DefaultDirectRateLimiter>]) {
    for b in budgets {
        if b.check().is_ok() {
            continue;
        }
        WAITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_key_is_the_same_budget() {
        let a = budget("test:same", 10);
        let b = budget("test:same", 10);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &budget("test:other", 10)));
    }

    #[tokio::test]
    async fn a_budget_holds_requests_to_its_rate() {
        let b = budget("test:rate", 20);
        // The burst is the quota (20); the next 10 need about half a second.
        let start = std::time::Instant::now();
        for _ in 0..30 {
            acquire(std::slice::from_ref(&b)).await;
        }
        let took = start.elapsed();
        assert!(
            took >= std::time::Duration::from_millis(400),
            "30 tokens at 20/s took {took:?}"
        );
    }
}
