//! An environment to and from a file (`.env`, JSON, YAML): the one
//! implementation of the push plan, behind `…/sync/push`, `…/sync/pull` and
//! `…/sync/diff` (the CLI's `push`, `pull` and `diff`, and the dashboard's
//! import and export, call these).
//!
//! - **push** plans key by key (created, updated, unchanged, error) from the
//!   plaintexts, so comparing needs *reveal*; applying writes every change
//!   in one transaction (all or nothing: any error in the plan, or a key
//!   whose version moved since the plan the caller saw, writes nothing) and
//!   needs *create* for new keys and *update* for existing ones. Keys the
//!   environment has but the file lacks are left alone.
//!   A `password`-typed key's new value goes through the leaked-password
//!   check (`breach.rs`; a new key is `text`, so it is not checked): a
//!   breached one carries a `warning` and is written, or, when the
//!   organization refuses breached passwords, is `refused`: that key is
//!   not written and the others are (a refusal is the policy working, not
//!   an error in the file).
//! - **pull** renders what `inject` returns (references resolved,
//!   program-loading variables only where allowed): *export*.
//! - **diff** names keys only (only in the file, only in coffer, different,
//!   same): *reveal*, since equality is information about a value.
//!
//! No answer carries a value except pull's rendering.

use std::collections::BTreeMap;

use serde::Serialize;
use zeroize::Zeroizing;

use super::compare::same;
use super::formats::{self, Entry, Format};
use super::values::ValueType;
use super::{Result, SecretService, ServiceError, Unsealed};
use crate::access::Permission;
use crate::env_policy::is_dangerous;
use crate::storage::{EnvPath, SecretRow, StorageError};

/// What a push does to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushAction {
    /// no live key of that name: a new secret (or a new version of a
    /// soft-deleted one, which it restores)
    Create,
    /// a different value: a new version (the type is kept)
    Update,
    /// the same value: nothing written
    Unchanged,
    /// the key cannot be written; see `error`
    Error,
    /// a `password` value found in a public breach corpus, in an
    /// organization that refuses breached passwords: this key is not
    /// written (see `error`), the others are
    Refused,
}

/// One key of a push plan (never a value).
#[derive(Debug, Serialize)]
pub struct PushItem {
    /// variable name
    pub key: String,
    /// what happens to it
    pub action: PushAction,
    /// the version the plan is based on (0: no such key); pass it back in
    /// `base` to apply exactly this plan
    pub version: i64,
    /// 1-based line in a `.env` file
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// what is wrong (with `action: error` or `refused`)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// what the writer should know (a `password` value found in a breach
    /// corpus); the key is written all the same
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A push plan, and whether it was applied.
#[derive(Debug, Serialize)]
pub struct PushView {
    /// written (in one transaction)
    pub applied: bool,
    /// every key of the file, by key
    pub keys: Vec<PushItem>,
    /// counts of each action
    pub created: usize,
    /// …
    pub updated: usize,
    /// …
    pub unchanged: usize,
    /// …
    pub errors: usize,
    /// breached passwords refused by the organization's policy (not
    /// written; the other keys are)
    pub refused: usize,
}

/// The file a push or diff reads. Its Debug never shows the content.
pub enum SyncInput {
    /// a file's text in a format
    Content(Format, Zeroizing<String>),
    /// names to values, already parsed (JSON bodies)
    Values(BTreeMap<String, Zeroizing<String>>),
}

impl std::fmt::Debug for SyncInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncInput::Content(format, _) => f.debug_tuple("Content").field(format).finish_non_exhaustive(),
            SyncInput::Values(v) => f.debug_tuple("Values").field(&v.keys().collect::<Vec<_>>()).finish(),
        }
    }
}

impl SyncInput {
    /// The file's keys, or why it is refused as a whole.
    fn entries(&self) -> Result<BTreeMap<String, Entry>> {
        match self {
            SyncInput::Content(format, text) => {
                formats::parse_file(*format, text).map_err(|e| ServiceError::Invalid(format!("the file: {e}")))
            }
            SyncInput::Values(map) => Ok(map
                .iter()
                .map(|(k, v)| {
                    let value = if formats::valid_key(k) {
                        Ok(v.clone())
                    } else {
                        Err("invalid key: keys must match [A-Za-z_][A-Za-z0-9_]* (at most 256 characters)".into())
                    };
                    (k.clone(), Entry { value, line: 0 })
                })
                .collect()),
        }
    }
}

/// What a push asks for.
#[derive(Debug)]
pub struct PushRequest {
    /// the file
    pub input: SyncInput,
    /// write the plan (else only show it)
    pub apply: bool,
    /// with `apply`: the version of every key of the file the shown plan
    /// was based on (its `version`s); a key whose version moved since
    /// refuses the whole push (409)
    pub base: Option<BTreeMap<String, i64>>,
}

/// How a key of a file compares with the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileDiffStatus {
    /// only the file has it
    OnlyInFile,
    /// only the environment has it
    OnlyInCoffer,
    /// both, different values
    Different,
    /// both, the same value
    Same,
}

/// One key of a file comparison (never a value).
#[derive(Debug, Serialize)]
pub struct FileDiffItem {
    /// variable name
    pub key: String,
    /// how it compares
    pub status: FileDiffStatus,
}

/// A file compared with an environment.
#[derive(Debug, Serialize)]
pub struct FileDiffView {
    /// any key not `same`
    pub differs: bool,
    /// every key of either side, by key
    pub keys: Vec<FileDiffItem>,
}

/// An environment rendered as a file. No Debug: it holds the values.
#[derive(Serialize)]
pub struct PullView {
    /// the format of `content`
    pub format: Format,
    /// how many values `content` holds
    pub count: usize,
    /// the file
    pub content: Zeroizing<String>,
}

/// The environment as a push or diff compares with it: every secret row
/// (deleted ones too) and the live plaintexts.
struct Current {
    rows: BTreeMap<String, SecretRow>,
    values: BTreeMap<String, Zeroizing<String>>,
}

impl SecretService {
    /// The rows and plaintexts of `path` (the caller checked *reveal*).
    async fn current(&self, who: &Unsealed, path: &EnvPath) -> Result<Current> {
        let rows = self
            .secret_store
            .list_secrets(path.org_id, path.env_id)
            .await?
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect();
        let values = self.plaintexts(who.keyring(), path).await?;
        Ok(Current { rows, values })
    }

    /// Whether the file's `value` is what `key` holds: its stored value, or,
    /// when that holds `${…}` references, their resolution (what a pull
    /// wrote), so pulling and pushing back changes nothing.
    async fn holds(
        &self,
        resolver: &mut Option<super::references::Resolver<'_>>,
        (project, env): (&str, &str),
        stored: &Zeroizing<String>,
        key: &str,
        value: &str,
    ) -> bool {
        if same(stored, value) {
            return true;
        }
        if !super::references::has_reference(stored) {
            return false;
        }
        match resolver {
            // A reference the caller may not follow cannot match.
            Some(r) => r.resolve_key(project, env, key).await.is_ok_and(|v| same(&v, value)),
            None => false,
        }
    }

    /// Plan, and with `apply` write, a push of a file to `org/project/env`.
    pub async fn sync_push(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        req: PushRequest,
    ) -> Result<PushView> {
        let entries = req.input.entries()?;
        let (path, access) = self.access.env_access(who, (org, project, env)).await?;
        access.require(&path, Permission::Reveal)?;
        let cur = self.current(who, &path).await?;
        let mut resolver = Some(super::references::Resolver::new(
            self,
            who,
            org,
            (project, env, cur.values.clone()),
        ));
        let mut keys = Vec::with_capacity(entries.len());
        let mut writes = Vec::new();
        for (key, entry) in &entries {
            let row = cur.rows.get(key);
            let version = row.map_or(0, |r| r.current_version);
            let live = cur.values.get(key);
            let checked = match (&entry.value, live) {
                (Err(e), _) => Err(e.clone()),
                (Ok(_), _) if is_dangerous(key) => {
                    Err("refused: it changes how programs load or start, and coffer never injects it".into())
                }
                (Ok(v), Some(stored)) if self.holds(&mut resolver, (project, env), stored, key, v).await => {
                    Ok(PushAction::Unchanged)
                }
                (Ok(v), _) => {
                    // The type is kept (text for a new key): the value must fit it.
                    let type_name = row.map_or(ValueType::Text.as_str(), |r| r.value_type.as_str());
                    match ValueType::parse(type_name).map(|t| t.validate(v)) {
                        Some(Ok(())) | None => Ok(if live.is_some() {
                            PushAction::Update
                        } else {
                            PushAction::Create
                        }),
                        Some(Err(msg)) => Err(format!("the value is not a valid {type_name}: {msg}")),
                    }
                }
            };
            let (mut action, mut error) = match checked {
                Ok(a) => (a, None),
                Err(e) => (PushAction::Error, Some(e)),
            };
            // The leaked-password check (breach.rs) of a `password`-typed
            // key's new value: a warning, or this key refused by the policy.
            let mut warning = None;
            if let (PushAction::Create | PushAction::Update, Ok(v), Some(r)) = (action, &entry.value, row)
                && r.value_type == ValueType::Password.as_str()
                && let Some(b) = self.breach_verdict(path.org_id, key, v).await?
            {
                match b {
                    super::secrets::Breached::Warning(w) => warning = Some(w),
                    super::secrets::Breached::Refused(e) => (action, error) = (PushAction::Refused, Some(e)),
                }
            }
            if req.apply && matches!(action, PushAction::Create | PushAction::Update) {
                writes.push((key, row, entry));
            }
            keys.push(PushItem {
                key: key.clone(),
                action,
                version,
                line: (entry.line > 0).then_some(entry.line),
                error,
                warning,
            });
        }
        drop(resolver);
        let count = |a: PushAction| keys.iter().filter(|k| k.action == a).count();
        let mut view = PushView {
            applied: false,
            created: count(PushAction::Create),
            updated: count(PushAction::Update),
            unchanged: count(PushAction::Unchanged),
            errors: count(PushAction::Error),
            refused: count(PushAction::Refused),
            keys,
        };
        if !req.apply {
            return Ok(view);
        }
        if view.errors > 0 {
            let named: Vec<String> = view
                .keys
                .iter()
                .filter_map(|k| k.error.as_ref().map(|e| format!("{}: {e}", k.key)))
                .collect();
            return Err(ServiceError::Invalid(format!(
                "{} key(s) cannot be pushed, nothing was written: {}",
                view.errors,
                named.join("; ")
            )));
        }
        if let Some(base) = &req.base {
            for item in &view.keys {
                match base.get(&item.key) {
                    Some(v) if *v == item.version => {}
                    Some(v) => {
                        return Err(ServiceError::Conflict(format!(
                            "{} changed since the plan (planned on version {v}, now {}): nothing was written; plan again",
                            item.key, item.version
                        )));
                    }
                    None => {
                        return Err(ServiceError::Conflict(format!(
                            "{} is not in the plan being applied: nothing was written; plan again",
                            item.key
                        )));
                    }
                }
            }
        }
        // Every permission first: a refusal writes nothing.
        for (_, row, _) in &writes {
            access.require(
                &path,
                if row.is_some() {
                    Permission::Update
                } else {
                    Permission::Create
                },
            )?;
        }
        let mut prepared = Vec::with_capacity(writes.len());
        for (key, row, entry) in writes {
            let Ok(value) = &entry.value else { continue };
            let input = super::SecretInput {
                value: value.clone(),
                value_type: None,
                description: None,
            };
            prepared.push(
                self.prepare_version(who.keyring(), who, &path, row.cloned(), key, &input)
                    .await?,
            );
        }
        if !prepared.is_empty() {
            // Each version is written only over the one the plan read.
            match self.secret_store.put_versions(&prepared).await {
                Ok(()) => self.shared.broadcast(super::cluster::Event::Env(path.env_id)),
                Err(StorageError::Conflict(_)) => {
                    return Err(ServiceError::Conflict(format!(
                        "secrets of {org}/{project}/{env} were written by others during the push: nothing was written; plan again"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        view.applied = true;
        Ok(view)
    }

    /// Compare a file with `org/project/env`, key by key (*reveal*).
    pub async fn sync_diff(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        input: &SyncInput,
    ) -> Result<FileDiffView> {
        let entries = input.entries()?;
        if let Some((key, e)) = entries.iter().find_map(|(k, e)| e.value.as_ref().err().map(|e| (k, e))) {
            return Err(ServiceError::Invalid(format!("the file: {key}: {e}")));
        }
        let (path, access) = self.access.env_access(who, (org, project, env)).await?;
        access.require(&path, Permission::Reveal)?;
        let values = self.plaintexts(who.keyring(), &path).await?;
        let mut resolver = Some(super::references::Resolver::new(
            self,
            who,
            org,
            (project, env, values.clone()),
        ));
        let mut keys = Vec::new();
        for (key, entry) in &entries {
            let status = match (&entry.value, values.get(key)) {
                (_, None) => FileDiffStatus::OnlyInFile,
                (Ok(v), Some(stored)) if self.holds(&mut resolver, (project, env), stored, key, v).await => {
                    FileDiffStatus::Same
                }
                _ => FileDiffStatus::Different,
            };
            keys.push(FileDiffItem {
                key: key.clone(),
                status,
            });
        }
        for key in values.keys().filter(|k| !entries.contains_key(*k)) {
            keys.push(FileDiffItem {
                key: key.clone(),
                status: FileDiffStatus::OnlyInCoffer,
            });
        }
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(FileDiffView {
            differs: keys.iter().any(|k| k.status != FileDiffStatus::Same),
            keys,
        })
    }

    /// `org/project/env` rendered in `format`: what inject returns (*export*).
    pub async fn sync_pull(
        &self,
        who: &Unsealed,
        (org, project, env): (&str, &str, &str),
        format: Format,
    ) -> Result<PullView> {
        let injected = self.inject(who, (org, project, env)).await?;
        let content = formats::render_as(format, &injected.values).map_err(ServiceError::Internal)?;
        Ok(PullView {
            format,
            count: injected.values.len(),
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_plans_never_show_a_value() {
        let input = SyncInput::Content(Format::Env, Zeroizing::new("A=s3cret-file".into()));
        let values = SyncInput::Values([("A".to_owned(), Zeroizing::new("s3cret-map".to_owned()))].into());
        for dbg in [format!("{input:?}"), format!("{values:?}")] {
            assert!(!dbg.contains("s3cret"), "{dbg}");
        }
        let entries = values.entries().unwrap_or_default();
        assert!(!format!("{entries:?}").contains("s3cret"));
    }

    #[test]
    fn a_bad_key_of_a_map_is_an_entry_error() {
        let input = SyncInput::Values([("1BAD".to_owned(), Zeroizing::new("v".to_owned()))].into());
        let entries = input.entries().unwrap_or_default();
        assert!(entries["1BAD"].value.as_ref().is_err_and(|e| e.contains("invalid key")));
    }
}
