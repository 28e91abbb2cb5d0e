//! Abuse limits kept in memory per server: failed logins and unknown tokens
//! per source address, in fixed one-minute windows. (Per-account lockout
//! lives in the database, so every server sees it; see `auth.rs`.)
//!
//! The two kinds are enforced differently. A password is guessable, so a
//! source that used up its login failures is refused before any check
//! ([`Limits::blocked`]). A token is 256 random bits, so nobody guesses one:
//! the token limit only slows down spraying, and many clients share one
//! address (a NAT, a proxy), so it refuses further *failures* only and a
//! valid token from a blocked source still works ([`Limits::failure`]).
//! The source is the client address as `http::proxy` resolved it
//! (`listener.trusted_proxies`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::ServiceError;

/// Failed logins (password or TOTP) a source may make per minute.
pub(crate) const LOGIN_FAILURES_PER_MIN: u32 = 10;
/// Unknown bearer tokens a source may present per minute.
pub(crate) const TOKEN_FAILURES_PER_MIN: u32 = 20;
const WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked before the table is flushed (bounds memory under spraying).
const MAX_SOURCES: usize = 100_000;

/// What a counter limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// password or TOTP failures
    Login,
    /// unknown tokens
    Token,
}

impl Kind {
    fn max(self) -> u32 {
        match self {
            Kind::Login => LOGIN_FAILURES_PER_MIN,
            Kind::Token => TOKEN_FAILURES_PER_MIN,
        }
    }
}

/// Failure counters per (kind, source).
#[derive(Debug, Default)]
pub(crate) struct Limits {
    map: Mutex<HashMap<(Kind, IpAddr), (Instant, u32)>>,
}

impl Limits {
    /// Seconds to wait if `source` used up its failures, else None.
    pub(crate) fn blocked(&self, kind: Kind, source: Option<IpAddr>) -> Option<u64> {
        let source = source?;
        let map = self.map.lock().ok()?;
        let (start, n) = map.get(&(kind, source))?;
        let left = WINDOW.checked_sub(start.elapsed())?;
        (*n >= kind.max()).then(|| left.as_secs().max(1))
    }

    /// The answer to a failure of `source` that would otherwise be `err`:
    /// 429 once the source used up its failures of `kind` (the refusal is
    /// not counted again), else `err`, counted.
    pub(crate) fn failure(&self, kind: Kind, source: Option<IpAddr>, err: ServiceError) -> ServiceError {
        if let Some(retry_after_s) = self.blocked(kind, source) {
            return ServiceError::RateLimited { retry_after_s };
        }
        self.fail(kind, source);
        err
    }

    /// Count one failure of `source`.
    pub(crate) fn fail(&self, kind: Kind, source: Option<IpAddr>) {
        let (Some(source), Ok(mut map)) = (source, self.map.lock()) else {
            return;
        };
        if map.len() >= MAX_SOURCES {
            map.clear();
        }
        let entry = map.entry((kind, source)).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 == kind.max() {
            tracing::warn!(%source, kind = ?kind, "source blocked for the rest of the minute after repeated failures");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_per_source_and_kind() {
        let l = Limits::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..LOGIN_FAILURES_PER_MIN - 1 {
            l.fail(Kind::Login, Some(a));
        }
        assert_eq!(l.blocked(Kind::Login, Some(a)), None);
        l.fail(Kind::Login, Some(a));
        assert!(l.blocked(Kind::Login, Some(a)).is_some_and(|s| (1..=60).contains(&s)));
        assert_eq!(l.blocked(Kind::Login, Some(b)), None, "another source is not blocked");
        assert_eq!(l.blocked(Kind::Token, Some(a)), None, "another kind is not blocked");
        assert_eq!(l.blocked(Kind::Login, None), None);
    }

    #[test]
    fn failures_are_answered_with_the_error_until_the_limit_then_429() {
        let l = Limits::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        for i in 0..TOKEN_FAILURES_PER_MIN {
            let e = l.failure(Kind::Token, Some(a), ServiceError::Unauthenticated);
            assert!(matches!(e, ServiceError::Unauthenticated), "failure {i}: {e:?}");
        }
        let e = l.failure(Kind::Token, Some(a), ServiceError::Unauthenticated);
        assert!(
            matches!(e, ServiceError::RateLimited { retry_after_s: 1..=60 }),
            "{e:?}"
        );
        let e = l.failure(Kind::Token, None, ServiceError::Unauthenticated);
        assert!(matches!(e, ServiceError::Unauthenticated), "no source, no limit: {e:?}");
    }
}
