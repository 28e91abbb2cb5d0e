//! The CLI's stored logins: `$XDG_CONFIG_HOME/coffer/credentials.json`
//! (default `~/.config/coffer/credentials.json`), one entry per server
//! address holding the session of `coffer login`: access token, refresh
//! token and when the access token expires.
//!
//! Tokens are stored encrypted: each token is `enc:` + base64 of an
//! AES-256-GCM blob (bound to the server address) under a 32-byte key in
//! `key` next to the file, created with mode 0600. A credentials file from
//! an older coffer (plaintext tokens) is rewritten encrypted on first use.
//! The OS keyring is not used (docs/cli.md: headless Linux has none, and the
//! `keyring` crate's Linux backends need D-Bus). Both files are also kept
//! private by their modes:
//! - the directory is created 0700 and the file 0600 *at creation*
//!   (`O_CREAT` with the mode, written to a fresh `O_EXCL` temp file and
//!   renamed over the old one), never widened and then narrowed with chmod;
//! - a file that group or others may access, or one in a directory others
//!   may write, is refused, with the `chmod` that fixes it, before a byte of
//!   it is parsed;
//! - a symlink in place of the file is refused (`O_NOFOLLOW`);
//! - every read-modify-write (login, refresh, logout) holds an exclusive
//!   lock on `credentials.lock`, so two `coffer` processes refreshing at once
//!   do not both spend the same refresh token (the server would take the
//!   second use for theft and revoke the whole login).
//!
//! This module never prints or logs a token; `Debug` is redacted.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::crypto::aead;
use crate::secure_mem::KeyBytes;

/// File name of the store inside `$XDG_CONFIG_HOME/coffer/`.
const FILE_NAME: &str = "credentials.json";
/// Lock file serializing read-modify-write cycles of the store.
const LOCK_NAME: &str = "credentials.lock";
/// The 32-byte encryption key of the stored tokens.
const KEY_NAME: &str = "key";
/// Prefix of an encrypted token in the file.
const ENC_PREFIX: &str = "enc:";

/// One stored login.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Server address exactly as the client uses it (no trailing slash).
    pub(crate) address: String,
    /// Bearer token sent on every request.
    #[serde(serialize_with = "expose", deserialize_with = "conceal")]
    pub(crate) access_token: Zeroizing<String>,
    /// Spent once to get the next pair (`POST /auth/refresh`).
    #[serde(
        default,
        serialize_with = "expose_opt",
        deserialize_with = "conceal_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) refresh_token: Option<Zeroizing<String>>,
    /// Unix seconds after which the access token is no longer accepted.
    #[serde(default)]
    pub(crate) expires_at: Option<i64>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("address", &self.address)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Entry {
    /// Build an entry from a `Session` (`{access_token, refresh_token,
    /// expires_in, …}`) the server just issued.
    pub(crate) fn from_session(address: &str, session: &serde_json::Value) -> anyhow::Result<Entry> {
        let access = session["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .context("the server's session has no access_token")?;
        let refresh = session["refresh_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| Zeroizing::new(t.to_owned()));
        let expires_at = session["expires_in"].as_i64().map(|s| unix_now().saturating_add(s));
        Ok(Entry {
            address: address.to_owned(),
            access_token: Zeroizing::new(access.to_owned()),
            refresh_token: refresh,
            expires_at,
        })
    }

    /// Whether the access token is expired, or will be within `margin` seconds.
    pub(crate) fn expires_within(&self, margin: i64) -> bool {
        self.expires_at
            .is_some_and(|at| at <= unix_now().saturating_add(margin))
    }
}

/// The whole file.
#[derive(Default, Serialize, Deserialize)]
struct CredentialsFile {
    #[serde(default)]
    credentials: Vec<Entry>,
}

/// The credentials store of this user.
#[derive(Debug)]
pub(crate) struct Store {
    dir: PathBuf,
}

/// An exclusive hold on the store; released on drop (the lock file is closed).
#[derive(Debug)]
pub(crate) struct StoreLock {
    _file: File,
}

impl Store {
    /// Locate the store: `$XDG_CONFIG_HOME/coffer` (when set to an absolute
    /// path, as the XDG spec requires) or `$HOME/.config/coffer`.
    pub(crate) fn locate() -> anyhow::Result<Store> {
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute());
        let base = match xdg {
            Some(p) => p,
            None => match std::env::var_os("HOME").map(PathBuf::from).filter(|p| p.is_absolute()) {
                Some(home) => home.join(".config"),
                None => bail!("cannot locate the credentials file: set XDG_CONFIG_HOME or HOME"),
            },
        };
        Ok(Store {
            dir: base.join("coffer"),
        })
    }

    /// The directory of the store (`$XDG_CONFIG_HOME/coffer`).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the credentials file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// Take the exclusive lock (blocks while another `coffer` holds it).
    /// Creates the directory (0700) when needed.
    pub(crate) fn lock(&self) -> anyhow::Result<StoreLock> {
        self.ensure_dir()?;
        let path = self.dir.join(LOCK_NAME);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(StoreLock { _file: file })
    }

    /// The stored login for `address`, if any.
    pub(crate) fn get(&self, address: &str) -> anyhow::Result<Option<Entry>> {
        Ok(self.load()?.0.credentials.into_iter().find(|e| e.address == address))
    }

    /// Store (or replace) the login of `entry.address`. Hold the lock.
    pub(crate) fn put(&self, _lock: &StoreLock, entry: Entry) -> anyhow::Result<()> {
        let (mut file, _) = self.load()?;
        file.credentials.retain(|e| e.address != entry.address);
        file.credentials.push(entry);
        self.save(&file)
    }

    /// Forget the login of `address`; returns whether there was one. Hold the lock.
    pub(crate) fn remove(&self, _lock: &StoreLock, address: &str) -> anyhow::Result<bool> {
        let (mut file, _) = self.load()?;
        let before = file.credentials.len();
        file.credentials.retain(|e| e.address != address);
        if file.credentials.len() == before {
            return Ok(false);
        }
        self.save(&file)?;
        Ok(true)
    }

    /// Rewrite a credentials file that still holds plaintext tokens (from an
    /// older coffer) encrypted. Takes the lock; a no-op otherwise.
    pub(crate) fn migrate(&self) -> anyhow::Result<()> {
        if !self.path().exists() {
            return self.load().map(drop);
        }
        let lock = self.lock()?;
        let (file, legacy) = self.load()?;
        if legacy {
            self.save(&file)?;
            eprintln!(
                "note: {} held plaintext tokens; they are now encrypted",
                self.path().display()
            );
        }
        drop(lock);
        Ok(())
    }

    /// Path of the key file.
    pub(crate) fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_NAME)
    }

    /// The token key; `None` when there is no key file and `create` is false.
    /// A key file that group or others may access is refused with the fix.
    pub(crate) fn key(&self, create: bool) -> anyhow::Result<Option<KeyBytes>> {
        let path = self.key_path();
        let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if !create {
                    return Ok(None);
                }
                self.ensure_dir()?;
                let key = KeyBytes::random().map_err(|_| anyhow::anyhow!("cannot allocate the token key"))?;
                let mut out = create_private(&path).with_context(|| format!("cannot create {}", path.display()))?;
                out.write_all(key.expose())
                    .and_then(|()| out.sync_all())
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(Some(key));
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                bail!("{} is a symbolic link; coffer refuses to use it", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let meta = file
            .metadata()
            .with_context(|| format!("cannot inspect {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file; coffer refuses to use it", path.display());
        }
        check_mode(&path, meta.permissions().mode())?;
        let mut raw = Zeroizing::new(Vec::new());
        file.read_to_end(&mut raw)
            .with_context(|| format!("cannot read {}", path.display()))?;
        match KeyBytes::from_slice(&raw) {
            Some(k) => Ok(Some(k)),
            None => bail!(
                "{} is not a 32-byte coffer key; remove it and {} then run `coffer login` again",
                path.display(),
                self.path().display()
            ),
        }
    }

    fn ensure_dir(&self) -> anyhow::Result<()> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))
    }

    /// Read the file; a missing file is an empty store. Refuses a file that
    /// is not a regular file or that group or others may access.
    fn load(&self) -> anyhow::Result<(CredentialsFile, bool)> {
        let path = self.path();
        // A key file others may read is refused even before it is needed.
        let key = self.key(false)?;
        let mut file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((CredentialsFile::default(), false)),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                bail!(
                    "{} is a symbolic link; coffer refuses to use it (remove it and run `coffer login`)",
                    path.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        // Checked on the open descriptor: no window between check and read.
        let meta = file
            .metadata()
            .with_context(|| format!("cannot inspect {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is not a regular file; coffer refuses to use it", path.display());
        }
        check_mode(&path, meta.permissions().mode())?;
        // Others who may write the directory could swap the file for theirs.
        if let Ok(dir) = std::fs::metadata(&self.dir)
            && dir.permissions().mode() & 0o022 != 0
        {
            bail!(
                "{dir} is writable by other users (mode {mode:04o}), so the credentials in it cannot be trusted. \
                 Fix it with `chmod 700 {dir}`",
                dir = self.dir.display(),
                mode = dir.permissions().mode() & 0o7777,
            );
        }
        let mut raw = Zeroizing::new(Vec::new());
        file.read_to_end(&mut raw)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok((CredentialsFile::default(), false));
        }
        let mut parsed: CredentialsFile = serde_json::from_slice(&raw).with_context(|| {
            format!(
                "{} is not a valid credentials file; remove it and run `coffer login` again",
                path.display()
            )
        })?;
        let mut legacy = false;
        for e in &mut parsed.credentials {
            let address = e.address.clone();
            let mut tokens = vec![&mut e.access_token];
            tokens.extend(e.refresh_token.as_mut());
            for t in tokens {
                match t.strip_prefix(ENC_PREFIX) {
                    Some(blob) => *t = decrypt(key.as_ref(), &path, &address, blob)?,
                    None => legacy = true,
                }
            }
        }
        Ok((parsed, legacy))
    }

    /// Replace the file atomically: a new 0600 temp file, then rename.
    /// An empty store removes the file.
    fn save(&self, file: &CredentialsFile) -> anyhow::Result<()> {
        self.ensure_dir()?;
        let path = self.path();
        if file.credentials.is_empty() {
            // No login left: the file and its key both go (`coffer logout`),
            // and the offline snapshots encrypted by that key with them.
            match std::fs::remove_dir_all(self.dir.join(crate::cli::fallback::DIR_NAME)) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(e).context("cannot remove the offline snapshots");
                }
                _ => {}
            }
            for p in [path, self.key_path()] {
                match std::fs::remove_file(&p) {
                    Err(e) if e.kind() != ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("cannot remove {}", p.display()));
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        let Some(key) = self.key(true)? else {
            bail!("cannot create the token key {}", self.key_path().display());
        };
        let mut sealed = CredentialsFile::default();
        for e in &file.credentials {
            let mut e = e.clone();
            let aad = e.address.clone();
            let mut tokens = vec![&mut e.access_token];
            tokens.extend(e.refresh_token.as_mut());
            for t in tokens {
                let blob = aead::seal(&key, aad.as_bytes(), t.as_bytes());
                *t = Zeroizing::new(format!("{ENC_PREFIX}{}", B64.encode(blob)));
            }
            sealed.credentials.push(e);
        }
        let mut bytes = Zeroizing::new(Vec::new());
        serde_json::to_writer_pretty(&mut *bytes, &sealed).context("cannot encode the credentials")?;
        bytes.push(b'\n');
        let tmp = self.dir.join(format!("{FILE_NAME}.tmp"));
        let mut out = match create_private(&tmp) {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Left over by a crashed writer (we hold the lock, so no live one).
                std::fs::remove_file(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
                create_private(&tmp)
            }
            other => other,
        }
        .with_context(|| format!("cannot create {}", tmp.display()))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(out);
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot replace {}", path.display()))
    }
}

/// One `enc:` token of the file at `path`, bound to its server `address`.
fn decrypt(key: Option<&KeyBytes>, path: &Path, address: &str, blob: &str) -> anyhow::Result<Zeroizing<String>> {
    let Some(key) = key else {
        bail!(
            "{} holds encrypted tokens but their key is missing; remove the file and run `coffer login` again",
            path.display()
        );
    };
    let mut plain = B64
        .decode(blob)
        .ok()
        .and_then(|b| aead::open(key, address.as_bytes(), &b).ok())
        .with_context(|| {
            format!(
                "a token in {} does not decrypt with its key (altered, or the key was replaced); \
                 remove the file and run `coffer login` again",
                path.display()
            )
        })?;
    let text = String::from_utf8(std::mem::take(&mut *plain))
        .ok()
        .context("a stored token is not text")?;
    Ok(Zeroizing::new(text))
}

/// A new file readable and writable by its owner only, created with that mode.
pub(crate) fn create_private(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Refuse a mode that lets group or others at the tokens.
fn check_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    if mode & 0o077 != 0 {
        bail!(
            "{path} has mode {mode:04o}: other users may read the stored tokens, so coffer refuses to use it. \
             Fix it with `chmod 600 {path}` (and consider the stored login compromised if others could read it: \
             `coffer logout` then `coffer login`)",
            path = path.display(),
            mode = mode & 0o7777,
        );
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn expose<S: Serializer>(v: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

fn expose_opt<S: Serializer>(v: &Option<Zeroizing<String>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_some(t.as_str()),
        None => s.serialize_none(),
    }
}

fn conceal<'de, D: Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

fn conceal_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Zeroizing<String>>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Zeroizing::new))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Store {
        Store {
            dir: dir.join("coffer"),
        }
    }

    fn entry(address: &str, token: &str) -> Entry {
        Entry {
            address: address.to_owned(),
            access_token: Zeroizing::new(token.to_owned()),
            refresh_token: Some(Zeroizing::new(format!("{token}-refresh"))),
            expires_at: Some(unix_now() + 3600),
        }
    }

    #[test]
    fn round_trip_with_private_modes_and_one_entry_per_address() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        assert!(s.get("http://a").unwrap().is_none(), "no file is an empty store");
        let lock = s.lock().unwrap();
        s.put(&lock, entry("http://a", "t1")).unwrap();
        s.put(&lock, entry("http://b", "t2")).unwrap();
        s.put(&lock, entry("http://a", "t3")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.dir), 0o700);
        assert_eq!(mode(&s.path()), 0o600);
        assert_eq!(s.get("http://a").unwrap().unwrap().access_token.as_str(), "t3");
        assert_eq!(s.get("http://b").unwrap().unwrap().access_token.as_str(), "t2");
        assert!(s.remove(&lock, "http://a").unwrap());
        assert!(!s.remove(&lock, "http://a").unwrap());
        assert!(s.remove(&lock, "http://b").unwrap());
        assert!(!s.path().exists(), "an empty store leaves no file");
    }

    #[test]
    fn loose_modes_and_symlinks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let lock = s.lock().unwrap();
        s.put(&lock, entry("http://a", "t1")).unwrap();
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = format!("{:#}", s.get("http://a").unwrap_err());
        assert!(err.contains("chmod 600") && err.contains("0640"), "{err}");
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(s.get("http://a").unwrap().is_some());

        let target = tmp.path().join("elsewhere.json");
        std::fs::rename(s.path(), &target).unwrap();
        std::os::unix::fs::symlink(&target, s.path()).unwrap();
        let err = format!("{:#}", s.get("http://a").unwrap_err());
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::remove_file(s.path()).unwrap();
        std::fs::rename(&target, s.path()).unwrap();

        std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", s.get("http://a").unwrap_err());
        assert!(err.contains("chmod 700"), "{err}");
        std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(s.get("http://a").unwrap().is_some());
    }

    #[test]
    fn tokens_are_encrypted_with_a_private_key_file_and_logout_wipes_both() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let lock = s.lock().unwrap();
        s.put(&lock, entry("http://a", "cfr_plaintoken")).unwrap();
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains("cfr_plaintoken"), "{text}");
        assert!(text.contains("\"enc:"), "{text}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&s.key_path()), 0o600);
        assert_eq!(std::fs::read(s.key_path()).unwrap().len(), 32);
        let got = s.get("http://a").unwrap().unwrap();
        assert_eq!(got.access_token.as_str(), "cfr_plaintoken");
        assert_eq!(got.refresh_token.unwrap().as_str(), "cfr_plaintoken-refresh");

        // A key others may read: refused, with the fix.
        std::fs::set_permissions(s.key_path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", s.get("http://a").unwrap_err());
        assert!(err.contains(&format!("chmod 600 {}", s.key_path().display())), "{err}");
        std::fs::set_permissions(s.key_path(), std::fs::Permissions::from_mode(0o600)).unwrap();

        // A token moved to another address does not decrypt (bound by AAD).
        let moved = std::fs::read_to_string(s.path())
            .unwrap()
            .replace("http://a", "http://b");
        std::fs::write(s.path(), moved).unwrap();
        assert!(s.get("http://b").is_err());
        std::fs::remove_file(s.path()).unwrap();

        s.put(&lock, entry("http://a", "t1")).unwrap();
        assert!(s.remove(&lock, "http://a").unwrap());
        assert!(
            !s.path().exists() && !s.key_path().exists(),
            "logout leaves neither file nor key"
        );
    }

    #[test]
    fn a_plaintext_file_is_migrated_on_first_use() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        std::fs::create_dir_all(&s.dir).unwrap();
        std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let legacy =
            r#"{"credentials":[{"address":"http://a","access_token":"cfr_legacy","refresh_token":"cfr_legacy_r"}]}"#;
        let mut f = create_private(&s.path()).unwrap();
        f.write_all(legacy.as_bytes()).unwrap();
        drop(f);
        assert_eq!(s.get("http://a").unwrap().unwrap().access_token.as_str(), "cfr_legacy");
        s.migrate().unwrap();
        let text = std::fs::read_to_string(s.path()).unwrap();
        assert!(!text.contains("cfr_legacy"), "{text}");
        let got = s.get("http://a").unwrap().unwrap();
        assert_eq!(got.access_token.as_str(), "cfr_legacy");
        assert_eq!(got.refresh_token.unwrap().as_str(), "cfr_legacy_r");
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let e = entry("http://a", "cfr_secret");
        assert!(!format!("{e:?}").contains("cfr_secret"));
    }

    #[test]
    fn expiry_margin() {
        let mut e = entry("http://a", "t");
        assert!(!e.expires_within(30));
        e.expires_at = Some(unix_now() + 10);
        assert!(e.expires_within(30));
        e.expires_at = None;
        assert!(!e.expires_within(30));
    }
}
