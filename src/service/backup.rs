//! Backup files: a signed, versioned, line-oriented copy of the whole store.
//!
//! ```text
//! {"format":"coffer-backup","version":1,"schema_version":3,"source":"sqlite","created_at":"…","tables":[{"name":"keyring","rows":1},…]}
//! {"t":"keyring","r":[1,"shamir",3,2,"<base64>",…]}        one line per row, BACKUP_TABLES order
//! …
//! {"hmac_sha256":"<hex>"}                                    over every byte above this line
//! ```
//! Values are the stored ones (ciphertexts, wrapped keys, hashes; bytes in
//! base64): a backup holds no plaintext secret, and opening one needs the
//! unseal shares like the live store.
//!
//! Signature: HMAC-SHA256 under a key derived from the root key
//! (`Keyring::backup_tag`). Why not Ed25519: a signing key pair would have
//! to be stored somewhere and protected by the root key anyway; the HMAC key
//! needs no storage, only a server unsealed with this root can make a
//! backup, and only custodians holding K shares of it can verify one — the
//! same people who can read the data. The restore recombines the shares
//! against the keyring row inside the file, so a file with any byte changed
//! (or a keyring row swapped for another root's) is refused before the
//! target is touched.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{OperatorService, Result, ServiceError, Unsealed, rfc3339};
use crate::keys::Keyring;
use crate::storage::backup::{BACKUP_TABLES, Cell, Kind, Snapshot, table};
use crate::storage::{Backend, KeyringRow};

/// Format name in the header line.
const FORMAT: &str = "coffer-backup";
/// Format version; a reader refuses any other.
pub const FORMAT_VERSION: i64 = 1;

/// A backup made by a server.
pub struct BackupFile {
    /// the file's bytes (UTF-8 JSON lines)
    pub bytes: Vec<u8>,
    /// rows per table, in file order
    pub counts: Vec<(String, usize)>,
}

/// Sizes only: the bytes hold password and token hashes, wrapped keys and
/// ciphertexts, none of which belongs in a log line.
impl std::fmt::Debug for BackupFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupFile")
            .field("bytes", &self.bytes.len())
            .field("counts", &self.counts)
            .finish()
    }
}

fn bad(line: usize, what: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(format!("backup file line {line}: {what}"))
}

fn encode_cell(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::Null,
        Cell::Int(v) => json!(v),
        Cell::Text(v) => json!(v),
        Cell::Bytes(v) => json!(B64.encode(v)),
    }
}

fn decode_cell(line: usize, kind: Kind, v: &Value) -> Result<Cell> {
    Ok(match (kind, v) {
        (_, Value::Null) => Cell::Null,
        (Kind::Int, Value::Number(n)) => Cell::Int(n.as_i64().ok_or_else(|| bad(line, "integer out of range"))?),
        (Kind::Text, Value::String(s)) => Cell::Text(s.clone()),
        (Kind::Bytes, Value::String(s)) => Cell::Bytes(B64.decode(s).map_err(|_| bad(line, "bytes are not base64"))?),
        _ => return Err(bad(line, "a value does not have its column's type")),
    })
}

/// Serialize a snapshot into the file body (everything but the last line).
fn encode_body(snap: &Snapshot, source: &str) -> Result<Vec<u8>> {
    let tables: Vec<Value> = snap
        .tables
        .iter()
        .map(|(name, rows)| json!({ "name": name, "rows": rows.len() }))
        .collect();
    let header = json!({
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "schema_version": snap.schema_version,
        "source": source,
        "created_at": rfc3339(super::now_ms()),
        "tables": tables,
    });
    let mut out = Vec::new();
    let mut push = |v: &Value| -> Result<()> {
        serde_json::to_writer(&mut out, v).map_err(|e| ServiceError::Internal(e.to_string()))?;
        out.push(b'\n');
        Ok(())
    };
    push(&header)?;
    for (name, rows) in &snap.tables {
        for row in rows {
            push(&json!({ "t": name, "r": row.iter().map(encode_cell).collect::<Vec<_>>() }))?;
        }
    }
    Ok(out)
}

/// A parsed, not yet verified backup file.
#[derive(Debug)]
pub struct ParsedBackup {
    snapshot: Snapshot,
    body_len: usize,
    tag: Vec<u8>,
    keyring: KeyringRow,
}

/// Parse a backup file; checks its structure, not its signature.
pub fn parse(bytes: &[u8]) -> Result<ParsedBackup> {
    let text = std::str::from_utf8(bytes).map_err(|_| bad(0, "not UTF-8: not a coffer backup file"))?;
    let trimmed = text
        .strip_suffix('\n')
        .ok_or_else(|| bad(0, "truncated (no final newline)"))?;
    let body_len = trimmed
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or_else(|| bad(1, "no signature line"))?;
    let lines: Vec<&str> = text[..body_len].lines().collect();
    let last = lines.len() + 1;
    let sig: Value = serde_json::from_str(&trimmed[body_len..]).map_err(|_| bad(last, "not JSON"))?;
    let tag = sig["hmac_sha256"]
        .as_str()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| bad(last, "expected {\"hmac_sha256\": HEX} as the last line"))?;
    let header: Value = serde_json::from_str(lines.first().copied().unwrap_or("")).map_err(|_| bad(1, "not JSON"))?;
    if header["format"] != FORMAT {
        return Err(bad(1, "not a coffer backup file"));
    }
    if header["version"].as_i64() != Some(FORMAT_VERSION) {
        return Err(bad(
            1,
            format!(
                "backup format version {} is not supported (this coffer reads version {FORMAT_VERSION})",
                header["version"]
            ),
        ));
    }
    let schema_version = header["schema_version"]
        .as_i64()
        .ok_or_else(|| bad(1, "schema_version missing"))?;
    let mut tables: Vec<(&'static str, Vec<Vec<Cell>>)> = Vec::new();
    for (i, line) in lines.iter().enumerate().skip(1) {
        let n = i + 1;
        let v: Value = serde_json::from_str(line).map_err(|_| bad(n, "not JSON"))?;
        let name = v["t"].as_str().ok_or_else(|| bad(n, "no table name"))?;
        let t = table(name).ok_or_else(|| bad(n, format!("unknown table {name:?}")))?;
        let r = v["r"].as_array().ok_or_else(|| bad(n, "no row"))?;
        if r.len() != t.columns.len() {
            return Err(bad(
                n,
                format!("{} values for the {} columns of {name}", r.len(), t.columns.len()),
            ));
        }
        let row = t
            .columns
            .iter()
            .zip(r)
            .map(|((_, kind), v)| decode_cell(n, *kind, v))
            .collect::<Result<Vec<_>>>()?;
        match tables.last_mut() {
            Some((last, rows)) if *last == t.name => rows.push(row),
            _ => {
                if tables.iter().any(|(seen, _)| *seen == t.name) {
                    return Err(bad(n, format!("rows of {name} are not together")));
                }
                tables.push((t.name, vec![row]));
            }
        }
    }
    // The header's counts must match the rows (a cut file fails here too).
    for entry in header["tables"].as_array().ok_or_else(|| bad(1, "tables missing"))? {
        let name = entry["name"].as_str().unwrap_or_default();
        let want = entry["rows"].as_u64().unwrap_or(u64::MAX);
        let have = tables.iter().find(|(t, _)| *t == name).map_or(0, |(_, r)| r.len());
        if want != have as u64 {
            return Err(bad(
                1,
                format!("header says {want} rows of {name}, the file has {have}"),
            ));
        }
    }
    let keyring = keyring_row(&tables).ok_or_else(|| bad(1, "the backup has no keyring row"))?;
    Ok(ParsedBackup {
        snapshot: Snapshot { schema_version, tables },
        body_len,
        tag,
        keyring,
    })
}

fn keyring_row(tables: &[(&'static str, Vec<Vec<Cell>>)]) -> Option<KeyringRow> {
    let (_, rows) = tables.iter().find(|(t, _)| *t == "keyring")?;
    let row = rows.first()?;
    let spec = table("keyring")?;
    let col = |name: &str| {
        spec.columns
            .iter()
            .position(|(c, _)| *c == name)
            .and_then(|i| row.get(i))
    };
    let int = |name: &str| match col(name) {
        Some(Cell::Int(v)) => Some(*v),
        _ => None,
    };
    let bytes = |name: &str| match col(name) {
        Some(Cell::Bytes(v)) => Some(v.clone()),
        _ => None,
    };
    Some(KeyringRow {
        seal_type: match col("seal_type") {
            Some(Cell::Text(v)) => v.clone(),
            _ => return None,
        },
        secret_shares: int("secret_shares")?,
        secret_threshold: int("secret_threshold")?,
        encrypted_root: bytes("encrypted_root")?,
        verify_tag: bytes("verify_tag")?,
        created_at: int("created_at")?,
    })
}

impl ParsedBackup {
    /// Recombine the custodians' shares against the file's keyring row and
    /// check the signature (constant time). Refuses a modified file.
    pub fn verify(self, bytes: &[u8], shares: &[Zeroizing<String>]) -> Result<VerifiedBackup> {
        let keyring: Keyring = crate::seal::keyring_from_shares(&self.keyring, shares)?;
        let body = bytes.get(..self.body_len).unwrap_or_default();
        if !keyring.check_backup_tag(body, &self.tag) {
            return Err(ServiceError::Invalid(
                "the backup file's signature does not match: the file was modified (or made by a coffer \
                 with another root key); refusing it"
                    .into(),
            ));
        }
        Ok(VerifiedBackup(self.snapshot))
    }

    /// Shares needed to verify the file (K of its keyring).
    pub fn threshold(&self) -> i64 {
        self.keyring.secret_threshold
    }

    /// (table, rows) of the file.
    pub fn counts(&self) -> Vec<(String, usize)> {
        self.snapshot
            .tables
            .iter()
            .map(|(t, r)| ((*t).to_owned(), r.len()))
            .collect()
    }
}

/// A backup whose signature was checked: the only thing [`restore`] takes.
#[derive(Debug)]
pub struct VerifiedBackup(Snapshot);

/// Write a verified backup into an empty store (either kind), one
/// transaction; `progress` gets (table, rows) after each table.
pub async fn restore(
    store: &dyn Backend,
    backup: &VerifiedBackup,
    progress: &mut (dyn FnMut(&str, usize) + Send),
) -> Result<()> {
    store.restore(&backup.0, progress).await.map_err(|e| match e {
        crate::storage::StorageError::Restore(msg) => ServiceError::Conflict(msg),
        other => other.into(),
    })
}

impl OperatorService {
    /// A signed snapshot of the whole store (root only; needs the keys to sign).
    pub async fn backup(&self, who: &Unsealed) -> Result<BackupFile> {
        who.require_root()?;
        let keyring = who.keyring();
        let snap = self.store.snapshot().await?;
        debug_assert_eq!(snap.tables.len(), BACKUP_TABLES.len());
        let mut bytes = encode_body(&snap, self.store.kind())?;
        let tag = keyring.backup_tag(&bytes);
        serde_json::to_writer(&mut bytes, &json!({ "hmac_sha256": hex::encode(tag) }))
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        bytes.push(b'\n');
        let counts = snap.tables.iter().map(|(t, r)| ((*t).to_owned(), r.len())).collect();
        Ok(BackupFile { bytes, counts })
    }
}
