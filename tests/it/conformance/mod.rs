//! Storage conformance: the same behaviour from every `Backend`
//! implementation, run on the backend under test (`COFFER_TEST_STORAGE`).
//! One module per store; this one holds the shared fixtures and the
//! cross-cutting `Backend` methods (keyring).

mod access;
mod approvals;
mod audit;
mod breach;
mod ci_sync;
mod dbcreds;
mod idempotency;
mod identity;
mod jwt_auth;
mod keystore;
mod secrets;
mod shares;
mod sso;
mod tenants;
mod webhooks;

use std::sync::Arc;

use coffer::storage::{
    self, Backend, EnvRow, IdentityStore, KekRow, KeyringRow, OrgRow, ProjectRow, SecretRow, StorageError, TokenRow,
    UserRow, VersionRow,
};
use uuid::Uuid;

use crate::util;

pub(super) fn keyring() -> KeyringRow {
    KeyringRow {
        seal_type: "shamir".into(),
        secret_shares: 5,
        secret_threshold: 3,
        encrypted_root: vec![1, 2, 3],
        verify_tag: vec![4, 5, 6],
        created_at: 1,
    }
}

pub(super) fn token(hash: u8) -> TokenRow {
    TokenRow {
        accessor: format!("acc-{hash}"),
        token_hash: vec![hash; 32],
        policy: "root".into(),
        display_name: "root".into(),
        created_at: 1,
        expires_at: None,
        principal_id: None,
        org_id: None,
        bound_spki: None,
        family_id: None,
        parent_accessor: None,
        auth_at: None,
    }
}

pub(super) fn secret(org: Uuid, env: Uuid, key: &str, version: i64) -> SecretRow {
    SecretRow {
        id: Uuid::new_v4(),
        org_id: org,
        env_id: env,
        key: key.into(),
        value_type: "text".into(),
        description: String::new(),
        current_version: version,
        deleted_at: None,
        created_at: 10,
        updated_at: 10,
        ciphertext_len: 0,
        author: String::new(),
    }
}

pub(super) fn version(s: &SecretRow, n: i64, byte: u8) -> VersionRow {
    VersionRow {
        id: Uuid::new_v4(),
        org_id: s.org_id,
        secret_id: s.id,
        version: n,
        value_type: s.value_type.clone(),
        ciphertext: vec![byte; 40],
        wrapped_dek: vec![byte; 61],
        kek_version: 1,
        created_by: "acc".into(),
        author: "user:someone@example.com".into(),
        created_at: 10 + n,
    }
}

/// A backend with org `acme`, project `api`, env `prod`; returns it and the ids.
pub(super) async fn with_tenant() -> (Box<dyn Backend>, Uuid, Uuid, tempfile::TempDir) {
    let dir = util::tempdir();
    let b = storage::open(&util::fresh_storage_url(dir.path()).await)
        .await
        .expect("open");
    assert_eq!(b.kind(), util::storage_kind());
    let (org, env) = add_tenant(&b, "acme").await;
    (Box::new(b), org, env, dir)
}

/// Org `slug` with project `api` and env `prod`; returns (org id, env id).
pub(super) async fn add_tenant(b: &dyn Backend, slug: &str) -> (Uuid, Uuid) {
    let org = OrgRow {
        id: Uuid::new_v4(),
        slug: slug.into(),
        name: "Acme".into(),
        created_at: 1,
    };
    let kek = KekRow {
        org_id: org.id,
        version: 1,
        wrapped_key: vec![9; 61],
        created_at: 1,
    };
    b.create_org(&org, &kek, None).await.expect("org");
    let project = ProjectRow {
        id: Uuid::new_v4(),
        org_id: org.id,
        slug: "api".into(),
        name: "API".into(),
        created_at: 1,
    };
    b.create_project(&project).await.expect("project");
    let env = EnvRow {
        id: Uuid::new_v4(),
        org_id: org.id,
        project_id: project.id,
        slug: "prod".into(),
        name: "Prod".into(),
        protected: true,
        created_at: 1,
    };
    b.create_env(&env).await.expect("env");
    (org.id, env.id)
}

/// An empty backend of the kind under test.
pub(super) async fn empty() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = util::tempdir();
    let b = storage::open(&util::fresh_storage_url(dir.path()).await)
        .await
        .expect("open");
    assert_eq!(b.kind(), util::storage_kind());
    (Arc::new(b), dir)
}

/// A user row with `email` (nothing locked, no TOTP).
pub(super) fn user(email: &str) -> UserRow {
    UserRow {
        id: Uuid::new_v4(),
        email: email.into(),
        password_hash: "$argon2id$fake".into(),
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        failed_logins: 0,
        locked_until: 0,
        created_at: 1,
        disabled: false,
    }
}

/// A user token (`policy = user`) with accessor `acc`, hash `[hash; 32]`.
pub(super) fn user_token(acc: &str, hash: u8, user: Uuid, family: Option<&str>, parent: Option<&str>) -> TokenRow {
    TokenRow {
        accessor: acc.into(),
        policy: "user".into(),
        display_name: acc.into(),
        principal_id: Some(user),
        family_id: family.map(str::to_owned),
        parent_accessor: parent.map(str::to_owned),
        ..token(hash)
    }
}

#[tokio::test]
async fn keyring_is_written_once_with_its_root_token() {
    let dir = util::tempdir();
    let b = storage::open(&util::fresh_storage_url(dir.path()).await)
        .await
        .expect("open");
    assert!(b.keyring().await.unwrap().is_none());
    b.init_keyring(&keyring(), &token(1)).await.expect("first init");
    let again = b.init_keyring(&keyring(), &token(2)).await;
    assert!(matches!(again, Err(StorageError::AlreadyInitialized)), "{again:?}");
    // The failed second init wrote nothing: its token does not exist.
    assert!(b.token_by_hash(&[2; 32]).await.unwrap().is_none());
    let k = b.keyring().await.unwrap().expect("keyring");
    assert_eq!(
        (k.secret_shares, k.secret_threshold, k.encrypted_root),
        (5, 3, vec![1, 2, 3])
    );
    let t = b.token_by_hash(&[1; 32]).await.unwrap().expect("root token");
    assert_eq!(
        (t.accessor.as_str(), t.policy.as_str(), t.expires_at),
        ("acc-1", "root", None)
    );
}
