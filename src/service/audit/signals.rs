//! Security signals read off the committed audit stream: bulk reveal,
//! bursts of failed logins from one source, a service account used from
//! outside its allowed networks. Each raises a counter
//! (`coffer_security_signals_total{signal}`) and a warning naming the actor
//! or source — never a value — and, for the organization the record names,
//! a `security.signal` webhook event (`service::webhooks`). Owned by the
//! audit writer task, so no locks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::config::AuditConfig;
use crate::storage::audit::AuditRow;

const WINDOW: Duration = Duration::from_secs(60);
/// Counters tracked before the oldest windows are dropped.
const MAX_KEYS: usize = 10_000;

/// Thresholds, per minute.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// values revealed by one actor in one call or one minute
    pub bulk_reveal: u64,
    /// failed logins from one source address in one minute
    pub failed_logins: u64,
}

impl Default for Thresholds {
    /// The defaults of `[audit]` (`config::AuditConfig`).
    fn default() -> Self {
        let c = AuditConfig::default();
        Thresholds {
            bulk_reveal: c.bulk_reveal_threshold,
            failed_logins: c.failed_login_threshold,
        }
    }
}

/// A count over a one-minute window that fires once per window.
#[derive(Debug)]
struct Window {
    start: Instant,
    count: u64,
    fired: bool,
}

#[derive(Debug, Default)]
struct Windows(HashMap<String, Window>);

impl Windows {
    /// Add `n` to `key`'s window; true the first time it passes `limit`.
    fn add(&mut self, key: &str, n: u64, limit: u64, now: Instant) -> bool {
        if self.0.len() >= MAX_KEYS {
            self.0.retain(|_, w| now.duration_since(w.start) < WINDOW);
        }
        if !self.0.contains_key(key) {
            self.0.insert(
                key.to_owned(),
                Window {
                    start: now,
                    count: 0,
                    fired: false,
                },
            );
        }
        let Some(w) = self.0.get_mut(key) else { return false };
        if now.duration_since(w.start) >= WINDOW {
            *w = Window {
                start: now,
                count: 0,
                fired: false,
            };
        }
        w.count += n;
        if w.count > limit && !w.fired {
            w.fired = true;
            return true;
        }
        false
    }
}

/// What the signals saw (for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// more values revealed than allowed per call or minute
    BulkReveal,
    /// too many failed logins from one source
    FailedLoginBurst,
    /// a service account called from outside its CIDR ranges
    OutsideCidr,
}

impl Signal {
    /// The metric label and webhook name.
    pub fn label(self) -> &'static str {
        match self {
            Signal::BulkReveal => "bulk_reveal",
            Signal::FailedLoginBurst => "failed_login_burst",
            Signal::OutsideCidr => "service_account_outside_cidr",
        }
    }
}

/// The detectors' state.
#[derive(Debug, Default)]
pub struct Detector {
    limits: Thresholds,
    reveals: Windows,
    failures: Windows,
}

impl Detector {
    /// Detectors with these thresholds.
    pub fn new(limits: Thresholds) -> Detector {
        Detector {
            limits,
            ..Detector::default()
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> Thresholds {
        self.limits
    }

    /// Look at one committed record that revealed `values` plaintexts.
    pub fn observe(&mut self, r: &AuditRow, values: u64) -> Vec<Signal> {
        let now = Instant::now();
        let mut out = Vec::new();
        if values > 0 && r.outcome == "allowed" {
            let who = if r.accessor.is_empty() { &r.actor } else { &r.accessor };
            let bulk_call = values > self.limits.bulk_reveal;
            let bulk_minute = self.reveals.add(who, values, self.limits.bulk_reveal, now);
            if bulk_call || bulk_minute {
                tracing::warn!(
                    actor = %r.actor,
                    accessor = %r.accessor,
                    values,
                    threshold = self.limits.bulk_reveal,
                    "security signal: bulk reveal"
                );
                out.push(Signal::BulkReveal);
            }
        }
        if r.action.starts_with("auth.")
            && matches!(r.reason.as_str(), "invalid_credentials" | "invalid_totp")
            && self.failures.add(&r.source, 1, self.limits.failed_logins, now)
        {
            tracing::warn!(
                source = %r.source,
                threshold = self.limits.failed_logins,
                "security signal: burst of failed logins from one source"
            );
            out.push(Signal::FailedLoginBurst);
        }
        if r.reason == "source_not_allowed" {
            tracing::warn!(
                source = %r.source,
                resource = %r.resource,
                "security signal: a service account was used from outside its allowed networks"
            );
            out.push(Signal::OutsideCidr);
        }
        for s in &out {
            metrics::counter!("coffer_security_signals_total", "signal" => s.label()).increment(1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reveal(actor: &str) -> AuditRow {
        AuditRow {
            actor: actor.into(),
            accessor: format!("acc-{actor}"),
            action: "secret.reveal".into(),
            outcome: "allowed".into(),
            ..AuditRow::default()
        }
    }

    #[test]
    fn bulk_reveal_fires_on_one_big_call_and_on_many_small_ones_once() {
        let mut d = Detector::new(Thresholds {
            bulk_reveal: 3,
            failed_logins: 2,
        });
        assert_eq!(d.observe(&reveal("a"), 4), vec![Signal::BulkReveal]);
        assert!(d.observe(&reveal("b"), 1).is_empty());
        assert!(d.observe(&reveal("b"), 2).is_empty());
        assert_eq!(d.observe(&reveal("b"), 1), vec![Signal::BulkReveal]);
        assert!(d.observe(&reveal("b"), 1).is_empty(), "once per window");
    }

    #[test]
    fn failed_login_burst_counts_per_source() {
        let mut d = Detector::new(Thresholds {
            bulk_reveal: 100,
            failed_logins: 2,
        });
        let fail = |src: &str| AuditRow {
            action: "auth.login".into(),
            outcome: "denied".into(),
            reason: "invalid_credentials".into(),
            source: src.into(),
            ..AuditRow::default()
        };
        assert!(d.observe(&fail("10.0.0.1"), 0).is_empty());
        assert!(d.observe(&fail("10.0.0.2"), 0).is_empty());
        assert!(d.observe(&fail("10.0.0.1"), 0).is_empty());
        assert_eq!(d.observe(&fail("10.0.0.1"), 0), vec![Signal::FailedLoginBurst]);
    }

    #[test]
    fn outside_cidr_fires_on_its_reason() {
        let mut d = Detector::default();
        let r = AuditRow {
            reason: "source_not_allowed".into(),
            outcome: "denied".into(),
            ..AuditRow::default()
        };
        assert_eq!(d.observe(&r, 0), vec![Signal::OutsideCidr]);
    }
}
