//! Comparing two environments of a project (issue 23): which keys only one
//! side has, and which both have with equal or different values — computed
//! here from the plaintexts, so the answer never needs a value to say
//! "differs". The values themselves are in the answer only when the caller
//! holds *reveal* on both environments and asks for them.

use std::collections::BTreeMap;

use serde::Serialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Result, SecretService, Unsealed};
use crate::access::Permission;
use crate::keys::Keyring;
use crate::storage::EnvPath;

/// How a key compares between the two environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffStatus {
    /// only the first environment has it
    OnlyInA,
    /// only the second environment has it
    OnlyInB,
    /// both, same value
    Equal,
    /// both, different values
    Differs,
}

/// One key of a comparison. Its Debug never shows a value.
#[derive(Serialize)]
pub struct DiffEntry {
    /// variable name
    pub key: String,
    /// how it compares
    pub status: DiffStatus,
    /// the first environment's value (only when asked for, with reveal on both)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_value: Option<Zeroizing<String>>,
    /// the second environment's value (likewise)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_value: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for DiffEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiffEntry")
            .field("key", &self.key)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The comparison of two environments.
#[derive(Debug, Serialize)]
pub struct DiffView {
    /// first environment's slug
    pub a: String,
    /// second environment's slug
    pub b: String,
    /// whether values are included
    pub values: bool,
    /// every key of either side, by key
    pub keys: Vec<DiffEntry>,
}

impl DiffView {
    /// How many plaintext values the answer carries (for the audit record).
    pub fn value_count(&self) -> usize {
        self.keys
            .iter()
            .map(|e| usize::from(e.a_value.is_some()) + usize::from(e.b_value.is_some()))
            .sum()
    }
}

/// Equal plaintexts, compared in constant time for equal lengths.
pub(super) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SecretService {
    /// Every live value of an environment, decrypted (the caller checked
    /// the permission).
    pub(super) async fn plaintexts(
        &self,
        keyring: &Keyring,
        path: &EnvPath,
    ) -> Result<BTreeMap<String, Zeroizing<String>>> {
        let mut out = BTreeMap::new();
        for v in self.secret_store.current_values(path.org_id, path.env_id).await?.iter() {
            let value = self.decrypt_current(keyring, path, v).await?;
            out.insert(v.key.clone(), value);
        }
        Ok(out)
    }

    /// Compare environments `a` and `b` of `org/project`: *read* on both;
    /// with `values`, *reveal* on both too.
    pub async fn diff(
        &self,
        who: &Unsealed,
        (org, project): (&str, &str),
        (a, b): (&str, &str),
        values: bool,
    ) -> Result<DiffView> {
        let keyring = who.keyring();
        let need = if values { Permission::Reveal } else { Permission::Read };
        let (pa, access_a) = self.access.env_access(who, (org, project, a)).await?;
        access_a.require(&pa, Permission::Read)?;
        access_a.require(&pa, need)?;
        let (pb, access_b) = self.access.env_access(who, (org, project, b)).await?;
        access_b.require(&pb, Permission::Read)?;
        access_b.require(&pb, need)?;
        let mut left = self.plaintexts(keyring, &pa).await?;
        let mut right = self.plaintexts(keyring, &pb).await?;
        let mut keys: Vec<String> = left.keys().chain(right.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        let entries = keys
            .into_iter()
            .map(|key| {
                let (va, vb) = (left.remove(&key), right.remove(&key));
                let status = match (&va, &vb) {
                    (Some(x), Some(y)) if same(x, y) => DiffStatus::Equal,
                    (Some(_), Some(_)) => DiffStatus::Differs,
                    (Some(_), None) => DiffStatus::OnlyInA,
                    (None, _) => DiffStatus::OnlyInB,
                };
                DiffEntry {
                    key,
                    status,
                    a_value: va.filter(|_| values),
                    b_value: vb.filter(|_| values),
                }
            })
            .collect();
        Ok(DiffView {
            a: a.to_owned(),
            b: b.to_owned(),
            values,
            keys: entries,
        })
    }
}

/// What a copy does to one key of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyAction {
    /// the target has no such live key: a new secret (or a new version of a
    /// soft-deleted one, which it restores)
    Created,
    /// the target's value or type differs: a new version
    Updated,
    /// same value and type: nothing written
    Unchanged,
}

/// One key of a copy plan (never a value).
#[derive(Debug, Serialize)]
pub struct CopyItem {
    /// variable name
    pub key: String,
    /// what happens to it
    pub action: CopyAction,
}

/// A copy plan, and whether it was applied.
#[derive(Debug, Serialize)]
pub struct CopyView {
    /// source environment
    pub from: String,
    /// target environment
    pub to: String,
    /// only planned
    pub dry_run: bool,
    /// written (in one transaction)
    pub applied: bool,
    /// every key copied, by key
    pub plan: Vec<CopyItem>,
}

/// What `secrets copy` asks for.
#[derive(Debug, Clone, Copy)]
pub struct CopyRequest<'a> {
    /// source environment
    pub from: &'a str,
    /// target environment
    pub to: &'a str,
    /// the keys to copy (or `all`)
    pub keys: &'a [String],
    /// every live key of the source
    pub all: bool,
    /// plan only
    pub dry_run: bool,
}

impl SecretService {
    /// Copy values from one environment of `org/project` to another: a plan
    /// (created / updated / unchanged, from the plaintexts), then every
    /// change in one transaction — all or nothing; if a target key changes
    /// meanwhile the plan is made again. Needs *reveal* on the source, and
    /// on the target *read* plus *create* for new keys and *update* for
    /// existing ones (checked for the plan too, so a dry run shows only what
    /// the caller could do).
    pub async fn copy(&self, who: &Unsealed, (org, project): (&str, &str), req: CopyRequest<'_>) -> Result<CopyView> {
        let keyring = who.keyring();
        if req.all != req.keys.is_empty() {
            return Err(super::ServiceError::Invalid(
                "name the keys to copy, or all (not both)".into(),
            ));
        }
        if req.from == req.to {
            return Err(super::ServiceError::Invalid(
                "the source and the target are the same environment".into(),
            ));
        }
        for k in req.keys {
            super::secrets::check_key(k)?;
        }
        let (src, sa) = self.access.env_access(who, (org, project, req.from)).await?;
        sa.require(&src, Permission::Read)?;
        sa.require(&src, Permission::Reveal)?;
        let (dst, da) = self.access.env_access(who, (org, project, req.to)).await?;
        da.require(&dst, Permission::Read)?;
        for _ in 0..super::secrets::WRITE_RETRIES {
            let source_rows: BTreeMap<String, crate::storage::SecretRow> = self
                .secret_store
                .list_secrets(src.org_id, src.env_id)
                .await?
                .into_iter()
                .filter(|s| s.deleted_at.is_none())
                .map(|s| (s.key.clone(), s))
                .collect();
            let mut target_rows: BTreeMap<String, crate::storage::SecretRow> = self
                .secret_store
                .list_secrets(dst.org_id, dst.env_id)
                .await?
                .into_iter()
                .map(|s| (s.key.clone(), s))
                .collect();
            let mut source = self.plaintexts(keyring, &src).await?;
            let target = self.plaintexts(keyring, &dst).await?;
            let keys: Vec<String> = if req.all {
                source_rows.keys().cloned().collect()
            } else {
                let mut k = req.keys.to_vec();
                k.sort();
                k.dedup();
                k
            };
            let mut plan = Vec::new();
            let mut writes = Vec::new();
            for key in keys {
                let (Some(row), Some(value)) = (source_rows.get(&key), source.remove(&key)) else {
                    return Err(super::ServiceError::NotFound(format!(
                        "secret {key} in {org}/{project}/{}",
                        req.from
                    )));
                };
                let existing = target_rows.remove(&key);
                let live = existing.as_ref().filter(|t| t.deleted_at.is_none());
                let action = match (live, target.get(&key)) {
                    (Some(t), Some(old)) if t.value_type == row.value_type && same(old, &value) => {
                        CopyAction::Unchanged
                    }
                    (Some(_), _) => CopyAction::Updated,
                    (None, _) => CopyAction::Created,
                };
                match (action, &existing) {
                    (CopyAction::Unchanged, _) => {}
                    (_, Some(_)) => da.require(&dst, Permission::Update)?,
                    (_, None) => da.require(&dst, Permission::Create)?,
                }
                if action != CopyAction::Unchanged && !req.dry_run {
                    let input = super::SecretInput {
                        value,
                        value_type: Some(row.value_type.clone()),
                        description: existing.is_none().then(|| row.description.clone()),
                    };
                    writes.push(self.prepare_version(keyring, who, &dst, existing, &key, &input).await?);
                }
                plan.push(CopyItem { key, action });
            }
            if !req.dry_run && !writes.is_empty() {
                match self.secret_store.put_versions(&writes).await {
                    Ok(()) => self.shared.broadcast(super::cluster::Event::Env(dst.env_id)),
                    Err(crate::storage::StorageError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(CopyView {
                from: req.from.to_owned(),
                to: req.to.to_owned(),
                dry_run: req.dry_run,
                applied: !req.dry_run,
                plan,
            });
        }
        Err(super::ServiceError::Conflict(format!(
            "secrets of {org}/{project}/{} are being written by others; try again",
            req.to
        )))
    }
}
