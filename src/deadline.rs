//! A request's deadline, and the one kind of work that stops its clock: generating a key pair.
//!
//! Every request is answered within `request_timeout_ms`, so that a database or a token that
//! stops answering fails calls promptly (`DependencyTimeoutException`) instead of holding them.
//! Generating an RSA key pair is different: the token is working, not stalled, and the time it
//! takes is long and random (a prime search). An RSA-4096 pair takes a second or more on a
//! busy machine, and can take tens of seconds on a network HSM. AWS answers `CreateKey` and
//! `GetParametersForImport` for RSA_4096; so must we. While a key pair is being generated the
//! request's clock stops, for at most `key_generation_timeout_ms`; the rest of the call (the
//! database, the other token calls, the audit event) keeps the whole of `request_timeout_ms`.
//!
//! A leaf: any layer may pause the clock of the request it runs in ([`generating`]); outside
//! a request (the CLI, the benchmarks, background jobs) there is no clock and it does nothing.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

tokio::task_local! {
    static CLOCK: Arc<Clock>;
}

/// A request's clock: its deadline, moved later by each pause that has ended.
pub struct Clock {
    state: Mutex<State>,
    /// Wakes the waiter in [`within`] when a pause ends (the deadline moved).
    resumed: Notify,
    /// The longest a pause counts for.
    pause_limit: Duration,
}

struct State {
    deadline: Instant,
    paused_since: Option<Instant>,
}

impl Clock {
    fn new(deadline: Instant, pause_limit: Duration) -> Clock {
        Clock {
            state: Mutex::new(State {
                deadline,
                paused_since: None,
            }),
            resumed: Notify::new(),
            pause_limit,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deadline as it stands: the request's own, plus the pauses that have ended, plus
    /// the one under way (as long as it has lasted, up to the limit).
    pub fn deadline(&self) -> Instant {
        let s = self.state();
        match s.paused_since {
            Some(p) => s.deadline + p.elapsed().min(self.pause_limit),
            None => s.deadline,
        }
    }

    /// When to look again: the deadline, or during a pause the latest it can move to.
    fn wake_at(&self) -> Instant {
        let s = self.state();
        match s.paused_since {
            Some(_) => s.deadline + self.pause_limit,
            None => s.deadline,
        }
    }
}

/// The clock stopped while this lives (see [`generating`]).
pub struct Pause(Arc<Clock>);

impl Drop for Pause {
    fn drop(&mut self) {
        let mut s = self.0.state();
        if let Some(p) = s.paused_since.take() {
            s.deadline += p.elapsed().min(self.0.pause_limit);
        }
        drop(s);
        self.0.resumed.notify_one();
    }
}

/// Stop the current request's clock while a key pair is generated: hold the guard for the
/// generation. Nothing when there is no request (or its clock is already stopped).
pub fn generating() -> Option<Pause> {
    let clock = CLOCK.try_with(|c| c.clone()).ok()?;
    {
        let mut s = clock.state();
        if s.paused_since.is_some() {
            return None;
        }
        s.paused_since = Some(Instant::now());
    }
    Some(Pause(clock))
}

/// The request's time ran out.
#[derive(Debug)]
pub struct TimedOut;

/// Run `f` by `deadline` (moved later by its key pair generations, each up to `pause_limit`);
/// the clock comes back with the outcome, for what follows the call (its audit event).
pub async fn within<F: Future>(
    deadline: Instant,
    pause_limit: Duration,
    f: F,
) -> (Result<F::Output, TimedOut>, Arc<Clock>) {
    let clock = Arc::new(Clock::new(deadline, pause_limit));
    let f = CLOCK.scope(clock.clone(), f);
    tokio::pin!(f);
    loop {
        let wake = clock.wake_at();
        tokio::select! {
            biased;
            out = &mut f => return (Ok(out), clock),
            // A pause ended: the deadline moved; look again.
            _ = clock.resumed.notified() => {}
            _ = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= clock.deadline() {
                    return (Err(TimedOut), clock);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_times_out() {
        let t0 = Instant::now();
        let (r, _) = within(t0 + ms(50), Duration::from_secs(5), async {
            tokio::time::sleep(Duration::from_secs(30)).await
        })
        .await;
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_key_pair_generation_stops_the_clock_and_the_rest_keeps_its_time() {
        let t0 = Instant::now();
        let (r, clock) = within(t0 + ms(1000), Duration::from_secs(30), async {
            // 300 ms of other work, then a 1.2 s generation: past the 1 s deadline.
            tokio::time::sleep(ms(300)).await;
            {
                let _p = generating().expect("inside a request");
                assert!(generating().is_none(), "one pause at a time");
                tokio::time::sleep(ms(1200)).await;
            }
            // The time left before the generation is still there after it.
            tokio::time::sleep(ms(50)).await;
            7
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        let moved = clock.deadline() - (t0 + ms(1000));
        assert!(moved >= ms(1200), "{moved:?}");

        // After a generation, the remaining time still runs out.
        let t0 = Instant::now();
        let (r, _) = within(t0 + ms(100), Duration::from_secs(30), async {
            drop(generating());
            tokio::time::sleep(Duration::from_secs(30)).await
        })
        .await;
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_pause_counts_only_up_to_its_limit() {
        let t0 = Instant::now();
        let (r, _) = within(t0 + ms(50), ms(300), async {
            let _p = generating();
            tokio::time::sleep(Duration::from_secs(30)).await
        })
        .await;
        assert!(r.is_err());
        let took = t0.elapsed();
        assert!(
            took >= ms(350) && took < Duration::from_secs(10),
            "{took:?}"
        );
    }

    #[test]
    fn outside_a_request_there_is_no_clock() {
        assert!(generating().is_none());
    }
}
