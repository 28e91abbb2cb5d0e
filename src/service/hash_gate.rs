//! The bound on password hashing. Each argon2id hash holds 19 MiB and a
//! core for tens of milliseconds, and every login runs one (an unknown email
//! too), so unbounded parallel logins are a memory bomb. At most
//! [`permits`] hashes run at once (about the core count); up to
//! [`QUEUE_PER_PERMIT`] callers per permit wait, each at most [`QUEUE_WAIT`];
//! everyone else gets [`ServiceError::Busy`] (503 with `Retry-After`) at
//! once, before any memory is taken.
//!
//! A hash's memory goes back to the kernel when it ends: `harden_process`
//! fixes glibc's mmap threshold at 1 MiB (without that, glibc keeps freed
//! 19 MiB blocks in its heaps, fragmented, and RSS grew by about one block
//! per hash: 420 MiB after a burst of 25 hashes run 2 at a time).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Result, ServiceError};

/// Hashes at once: the core count, at most this many.
const MAX_PERMITS: usize = 8;
/// Waiting callers per permit before new ones are refused.
pub(crate) const QUEUE_PER_PERMIT: usize = 8;
/// Longest wait for a permit.
pub(crate) const QUEUE_WAIT: Duration = Duration::from_secs(5);
/// `Retry-After` of a refusal.
const RETRY_AFTER_S: u64 = 1;

/// Concurrent hashes allowed in this process.
pub(crate) fn permits() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(MAX_PERMITS)
}

/// A semaphore with a bounded queue in front of it.
#[derive(Debug)]
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

/// Counts a waiting caller; uncounts it however the wait ends (a client
/// that hangs up drops the future).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn busy() -> ServiceError {
    metrics::counter!("coffer_password_hash_refused_total").increment(1);
    ServiceError::Busy {
        retry_after_s: RETRY_AFTER_S,
    }
}

impl Gate {
    pub(crate) fn new(permits: usize, max_waiting: usize, wait: Duration) -> Gate {
        Gate {
            permits: Arc::new(Semaphore::new(permits)),
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
        }
    }

    /// Run blocking `work` on the blocking pool once a permit is free. The
    /// permit moves into the blocking task, so it is held until the work
    /// ends even if the caller stops waiting.
    pub(crate) async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::SeqCst);
                    return Err(busy());
                }
                let _waiting = Waiting(&self.waiting);
                match tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await {
                    Ok(Ok(p)) => p,
                    _ => return Err(busy()),
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|_| ServiceError::Internal("password hashing task failed".into()))
    }
}

/// The process's gate for password hashing.
pub(crate) fn gate() -> &'static Gate {
    static GATE: OnceLock<Gate> = OnceLock::new();
    GATE.get_or_init(|| {
        let n = permits();
        Gate::new(n, n * QUEUE_PER_PERMIT, QUEUE_WAIT)
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_at_most_the_permits_queues_a_few_and_refuses_the_rest() {
        let gate = Arc::new(Gate::new(2, 3, Duration::from_secs(5)));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                gate.run(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        let mut done = 0;
        let mut refused = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(()) => done += 1,
                Err(ServiceError::Busy { retry_after_s }) => {
                    assert!(retry_after_s >= 1);
                    refused += 1;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than the permits at once");
        assert_eq!((done, refused), (5, 5), "2 running + 3 queued served, the rest refused");
        assert_eq!(gate.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_wait_ends_with_busy_after_the_queue_wait() {
        let gate = Arc::new(Gate::new(1, 4, Duration::from_millis(50)));
        let slow = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(|| std::thread::sleep(Duration::from_millis(500))).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(matches!(gate.run(|| ()).await, Err(ServiceError::Busy { .. })));
        assert_eq!(gate.waiting.load(Ordering::SeqCst), 0);
        assert!(slow.await.expect("task").is_ok());
    }
}
