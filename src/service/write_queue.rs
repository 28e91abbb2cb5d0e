//! Writers of one secret take turns in this process.
//!
//! A write reads the secret's current version, encrypts the new value and
//! appends version `current + 1` with a compare-and-set. Two concurrent
//! writers of one key both read the same current version, so one of them
//! loses the compare-and-set and retries — under load, a client saw the
//! retries run out (409) and the tail grow with each round. Here the writers
//! of a key queue instead: a write holds its key's turn from the read to the
//! commit, so within one server the compare-and-set never loses. (Between
//! servers on one PostgreSQL it still can; the retry loop covers that.)
//!
//! The turns are a fixed set of fair (FIFO) async mutexes, a key picking
//! one by hash: memory stays bounded whatever the number of keys, and two
//! keys that share a stripe merely take turns too.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// Number of stripes: enough that unrelated writers rarely share one.
const STRIPES: usize = 256;

/// The turns of the writers of every secret.
#[derive(Debug)]
pub(super) struct WriteQueue {
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl WriteQueue {
    pub(super) fn new() -> WriteQueue {
        WriteQueue {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Wait for the turn of secret `key` of environment `env_id`; the turn
    /// lasts as long as the guard.
    pub(super) async fn turn(&self, env_id: Uuid, key: &str) -> MutexGuard<'_, ()> {
        let i = (self.hasher.hash_one((env_id, key)) % STRIPES as u64) as usize;
        self.stripes[i].lock().await
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::WriteQueue;

    #[tokio::test]
    async fn writers_of_one_key_take_turns_and_other_keys_do_not_wait() {
        let q = Arc::new(WriteQueue::new());
        let env = uuid::Uuid::new_v4();
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (q, inside, most) = (q.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = q.turn(env, "KEY").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.expect("writer task");
        }
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "two writers of one key were inside at once"
        );

        // A key on another stripe is not held up by a held turn.
        let held = q.turn(env, "KEY").await;
        let other = (0..1000)
            .map(|i| format!("OTHER_{i}"))
            .find(|k| {
                let h = |key: &str| q.hasher.hash_one((env, key)) % super::STRIPES as u64;
                h(k) != h("KEY")
            })
            .expect("some key on another stripe");
        let got = tokio::time::timeout(Duration::from_millis(500), q.turn(env, &other)).await;
        assert!(got.is_ok(), "a writer of another key waited for KEY's turn");
        drop(held);
    }
}
