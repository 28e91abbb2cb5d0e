//! `coffer run --fallback`: an encrypted local snapshot of the last
//! successful inject of one server/org/project/environment, used only when
//! the server cannot be reached (a connection error or timeout, never a
//! 401/403 or any other answer), with a warning giving its age, and refused
//! when older than `--max-age`.
//!
//! Snapshots live in `$XDG_CONFIG_HOME/coffer/snapshots/` (directory 0700,
//! files 0600 created as such), one file per target named by a SHA-256 of
//! it; the content is one AES-256-GCM blob under the same key as the stored
//! tokens (`credentials::Store::key`), bound to the target, holding the
//! values and the time they were fetched. Without `--fallback` nothing is
//! written.

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::context::Target;
use super::credentials::{Store, create_private, unix_now};
use crate::crypto::aead;

/// Directory of the snapshots inside the config directory.
pub(crate) const DIR_NAME: &str = "snapshots";

#[derive(Serialize, Deserialize)]
struct Snapshot {
    saved_at: i64,
    values: BTreeMap<String, String>,
}

fn binding(address: &str, env: &Target) -> String {
    format!(
        "coffer-snapshot-v1\n{address}\n{}\n{}\n{}",
        env.org, env.project, env.env
    )
}

fn path(store: &Store, bind: &str) -> PathBuf {
    store
        .dir()
        .join(DIR_NAME)
        .join(hex::encode(Sha256::digest(bind.as_bytes())))
}

/// Whether `err` means the server could not be reached at all.
pub(crate) fn is_unreachable(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(|r| r.is_connect() || r.is_timeout())
    })
}

/// Parse `30s`, `15m`, `24h`, `7d` (or bare seconds) into seconds.
pub(crate) fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 30m, 24h or 7d"))?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("`{s}`: the unit must be s, m, h or d")),
    };
    if n <= 0 {
        return Err(format!("`{s}`: the maximum age must be positive"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

/// Store the values just fetched.
pub(crate) fn save(address: &str, env: &Target, values: &BTreeMap<String, Zeroizing<String>>) -> anyhow::Result<()> {
    let store = Store::locate()?;
    let Some(key) = store.key(true)? else {
        bail!("cannot create the snapshot key");
    };
    let dir = store.dir().join(DIR_NAME);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let snap = Snapshot {
        saved_at: unix_now(),
        values: values.iter().map(|(k, v)| (k.clone(), v.as_str().to_owned())).collect(),
    };
    let plain = Zeroizing::new(serde_json::to_vec(&snap).context("cannot encode the snapshot")?);
    // Wipe the plain copies of the values.
    for (_, v) in snap.values {
        drop(Zeroizing::new(v));
    }
    let bind = binding(address, env);
    let blob = aead::seal(&key, bind.as_bytes(), &plain);
    let target = path(&store, &bind);
    let tmp = target.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot remove {}", tmp.display()));
        }
        _ => {}
    }
    let mut out = create_private(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    out.write_all(&blob)
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("cannot replace {}", target.display()))
}

/// The snapshot of this target when not older than `max_age` seconds;
/// warns with its age. Errors say why there is none to use.
pub(crate) fn load(address: &str, env: &Target, max_age: i64) -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
    let store = Store::locate()?;
    let bind = binding(address, env);
    let file = path(&store, &bind);
    let blob = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            bail!("no offline snapshot of {}/{}/{} yet", env.org, env.project, env.env)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let Some(key) = store.key(false)? else {
        bail!("the snapshot key is missing (after `coffer logout`?)");
    };
    let plain = aead::open(&key, bind.as_bytes(), &blob)
        .ok()
        .with_context(|| format!("{} does not decrypt (altered or from another key)", file.display()))?;
    let snap: Snapshot = serde_json::from_slice(&plain).context("the offline snapshot is not valid")?;
    let age = unix_now().saturating_sub(snap.saved_at);
    if age > max_age {
        bail!(
            "the offline snapshot of {}/{}/{} is {} old, more than --max-age {}; refusing to use it",
            env.org,
            env.project,
            env.env,
            human(age),
            human(max_age)
        );
    }
    eprintln!(
        "warning: coffer is unreachable at {address}; using the offline snapshot of {}/{}/{} from {} ago",
        env.org,
        env.project,
        env.env,
        human(age)
    );
    Ok(snap.values.into_iter().map(|(k, v)| (k, Zeroizing::new(v))).collect())
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(parse_age("24h"), Ok(86_400));
        assert_eq!(parse_age("90"), Ok(90));
        assert_eq!(parse_age("15m"), Ok(900));
        assert_eq!(parse_age("2d"), Ok(172_800));
        assert!(parse_age("0h").is_err());
        assert!(parse_age("5y").is_err());
        assert!(parse_age("h").is_err());
    }
}
