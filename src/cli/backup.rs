//! `coffer operator backup|restore`.
//!
//! Backup goes through the server API (root token): only an unsealed server
//! holds the root key the file is signed with, and reading through the
//! server gives one consistent snapshot whatever the storage. Restore runs
//! offline against the target store's URL: the target is empty, so no
//! server could be unsealed on it; instead the custodians' shares verify the
//! file here, against the keyring row inside it, before anything is written.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use reqwest::Method;
use zeroize::Zeroizing;

use super::client::Client;
use crate::service::backup;

/// `coffer operator backup -o FILE`.
pub(crate) async fn backup(client: &Client, output: &Path) -> anyhow::Result<u8> {
    client.require_token()?;
    let out = client.call(Method::GET, "/v1/sys/backup", None).await?;
    let file = out["file"].as_str().context("the server sent no backup file")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(output)
        .with_context(|| format!("cannot create {} (it must not exist yet)", output.display()))?;
    f.write_all(file.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", output.display()))?;
    for t in out["tables"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!(
            "{:<18} {:>8} rows",
            t["name"].as_str().unwrap_or(""),
            t["rows"].as_u64().unwrap_or(0)
        );
    }
    println!("Backup written to {} ({} bytes, signed).", output.display(), file.len());
    Ok(0)
}

/// `coffer operator restore FILE --storage URL`.
pub(crate) async fn restore(file: &Path, storage: Option<&str>, config: Option<&Path>) -> anyhow::Result<u8> {
    let url = match (storage, config) {
        (Some(url), _) => url.to_owned(),
        (None, Some(path)) => crate::config::Settings::load(Some(path))?.storage_url,
        (None, None) => bail!("give the target store with --storage URL or --config FILE"),
    };
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let parsed = backup::parse(&bytes).with_context(|| format!("{} is not a usable backup", file.display()))?;
    let k = usize::try_from(parsed.threshold()).unwrap_or(0);
    let shares = read_shares(k)?;
    let verified = parsed
        .verify(&bytes, &shares)
        .with_context(|| format!("{} refused", file.display()))?;
    drop(shares);
    let store = crate::storage::open(&url)
        .await
        .context("cannot open the target store")?;
    let store: Arc<dyn crate::storage::Backend> = Arc::new(store);
    let mut total = 0usize;
    let mut progress = |table: &str, rows: usize| {
        total += rows;
        println!("{table:<18} {rows:>8} rows");
    };
    backup::restore(store.as_ref(), &verified, &mut progress)
        .await
        .context("restore failed; nothing was written")?;
    println!("Restored {total} rows. Start the server on this store and unseal it with the same shares.");
    Ok(0)
}

/// K shares: prompted without echo on a terminal, else one per line on stdin.
fn read_shares(k: usize) -> anyhow::Result<Vec<Zeroizing<String>>> {
    let mut shares = Vec::with_capacity(k);
    let tty = std::io::stdin().is_terminal();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    while shares.len() < k {
        let share = if tty {
            Zeroizing::new(
                rpassword::prompt_password(format!("Unseal share {}/{k} (input hidden): ", shares.len() + 1))
                    .context("cannot read the share")?,
            )
        } else {
            let mut line = Zeroizing::new(String::new());
            if lines.read_line(&mut line).context("cannot read shares from stdin")? == 0 {
                bail!(
                    "{k} unseal shares are needed to verify the backup, stdin gave {}",
                    shares.len()
                );
            }
            line
        };
        let trimmed = Zeroizing::new(share.trim().to_owned());
        if !trimmed.is_empty() {
            shares.push(trimmed);
        }
    }
    Ok(shares)
}
