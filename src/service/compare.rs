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
