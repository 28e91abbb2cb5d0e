//! The leaked-password check (issue 18): is a password in the Have I Been
//! Pwned corpus? Asked through its k-anonymity range API: only the first 5
//! hex characters of the password's SHA-1 leave the host
//! (`GET {url}/range/{prefix}` with `Add-Padding: true`); the suffixes of
//! the answer are compared here. Padding lines (count 0) are not hits.
//!
//! Used for `password`-typed secrets (a hit is a warning on the write, or a
//! refusal when the organization's policy says so) and for user passwords
//! (a hit is refused). The check fails open: when the range server cannot
//! be asked within [`TIMEOUT`], or answers badly, the password is accepted,
//! a warning is logged (never the password, its hash or its prefix) and
//! `coffer_breach_check_failures_total` is counted.
//!
//! `[breach_check]` (docs/operations.md): `enabled` (default false in the
//! code, true in the packaged config), `url` (default [`DEFAULT_URL`]; a
//! self-hosted mirror of the range files works the same).

use std::time::Duration;

use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The public range API.
pub const DEFAULT_URL: &str = "https://api.pwnedpasswords.com";
/// How long one range query may take before the check fails open.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest range answer read (real ones are ~30–40 KiB with padding).
const MAX_ANSWER: usize = 1024 * 1024;

/// `[breach_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachSettings {
    /// ask the range API at all
    pub enabled: bool,
    /// base URL of the range API (`{url}/range/{prefix}`)
    pub url: String,
    /// per-query deadline
    pub timeout: Duration,
}

impl Default for BreachSettings {
    fn default() -> Self {
        BreachSettings {
            enabled: false,
            url: DEFAULT_URL.to_owned(),
            timeout: TIMEOUT,
        }
    }
}

/// What the range API said about a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// not in the corpus
    Clean,
    /// in the corpus, seen this many times
    Breached(u64),
    /// not asked (check off) or no usable answer (failed open)
    Unchecked,
}

/// The configured checker.
#[derive(Debug, Clone)]
pub struct BreachChecker {
    settings: BreachSettings,
    http: Option<reqwest::Client>,
}

impl Default for BreachChecker {
    fn default() -> Self {
        BreachChecker::new(BreachSettings::default())
    }
}

impl BreachChecker {
    /// A checker for these settings (no HTTP client when disabled).
    pub fn new(settings: BreachSettings) -> BreachChecker {
        let http = if settings.enabled {
            match reqwest::Client::builder()
                .timeout(settings.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
                .build()
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "breach check: no HTTP client; passwords are not checked");
                    None
                }
            }
        } else {
            None
        };
        BreachChecker { settings, http }
    }

    /// Whether passwords are checked at all.
    pub fn enabled(&self) -> bool {
        self.http.is_some()
    }

    /// Ask the range API about `password`.
    pub async fn check(&self, password: &str) -> Verdict {
        let Some(http) = &self.http else {
            return Verdict::Unchecked;
        };
        let digest = Zeroizing::new(hex::encode_upper(Sha1::digest(password.as_bytes())));
        let (prefix, suffix) = digest.split_at(5);
        let url = format!("{}/range/{prefix}", self.settings.url.trim_end_matches('/'));
        let fail = |reason: &'static str| {
            // No password, hash or prefix in the log: only why.
            tracing::warn!(
                reason,
                "breach check unavailable; the password was accepted unchecked (fail open)"
            );
            metrics::counter!("coffer_breach_check_failures_total", "reason" => reason).increment(1);
            Verdict::Unchecked
        };
        let res = match http.get(&url).header("Add-Padding", "true").send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return fail("timeout"),
            Err(_) => return fail("unreachable"),
        };
        if !res.status().is_success() {
            return fail("bad_status");
        }
        if res.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return fail("too_large");
        }
        let body = match res.bytes().await {
            Ok(b) if b.len() <= MAX_ANSWER => b,
            Ok(_) => return fail("too_large"),
            Err(e) if e.is_timeout() => return fail("timeout"),
            Err(_) => return fail("unreadable"),
        };
        let Ok(text) = std::str::from_utf8(&body) else {
            return fail("unreadable");
        };
        match find(text, suffix) {
            Some(n) => {
                metrics::counter!("coffer_breach_check_total", "outcome" => "breached").increment(1);
                Verdict::Breached(n)
            }
            None => {
                metrics::counter!("coffer_breach_check_total", "outcome" => "clean").increment(1);
                Verdict::Clean
            }
        }
    }
}

/// The count of `suffix` (35 upper-case hex characters) in a range answer
/// (`SUFFIX:COUNT` lines); None when absent or only a padding line (count 0).
fn find(answer: &str, suffix: &str) -> Option<u64> {
    let mut found = None;
    for line in answer.lines() {
        let Some((s, count)) = line.trim().split_once(':') else {
            continue;
        };
        let s = s.trim().to_ascii_uppercase();
        // Every line is compared, in constant time each: the position of a
        // hit does not show in the timing.
        if s.len() == suffix.len() && bool::from(s.as_bytes().ct_eq(suffix.as_bytes())) {
            found = count.trim().parse::<u64>().ok().filter(|n| *n > 0);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_need_a_positive_count() {
        let answer = "0018A45C4D1DEF81644B54AB7F969B88D65:1\r\n\
                      00D4F6E8FA6EECAD2A3AA415EEC418D38EC:0\r\n\
                      011053FD0102E94D6AE2F8B83D76FAF94F6:13\r\n";
        assert_eq!(find(answer, "011053FD0102E94D6AE2F8B83D76FAF94F6"), Some(13));
        assert_eq!(find(answer, "00D4F6E8FA6EECAD2A3AA415EEC418D38EC"), None, "padding");
        assert_eq!(find(answer, "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"), None);
        assert_eq!(find("garbage\n:\n", "0018A45C4D1DEF81644B54AB7F969B88D65"), None);
    }
}
