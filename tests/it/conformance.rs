//! Storage conformance: the same behaviour from every `Backend`
//! implementation, run on the backend under test.

use coffer::storage::{
    self, Backend, EnvRow, KekRow, KeyringRow, OrgRow, ProjectRow, SecretRow, StorageError, TokenRow, VersionRow,
};
use uuid::Uuid;

use crate::util;

fn keyring() -> KeyringRow {
    KeyringRow {
        seal_type: "shamir".into(),
        secret_shares: 5,
        secret_threshold: 3,
        encrypted_root: vec![1, 2, 3],
        verify_tag: vec![4, 5, 6],
        created_at: 1,
    }
}

fn token(hash: u8) -> TokenRow {
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

fn secret(org: Uuid, env: Uuid, key: &str, version: i64) -> SecretRow {
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
    }
}

fn version(s: &SecretRow, n: i64, byte: u8) -> VersionRow {
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
        created_at: 10 + n,
    }
}

/// A backend with org `acme`, project `api`, env `prod`; returns it and the ids.
async fn with_tenant() -> (Box<dyn Backend>, Uuid, Uuid, tempfile::TempDir) {
    let dir = util::tempdir();
    let b = storage::open(&util::fresh_storage_url(dir.path()).await)
        .await
        .expect("open");
    assert_eq!(b.kind(), util::storage_kind());
    let (org, env) = add_tenant(&b, "acme").await;
    (Box::new(b), org, env, dir)
}

/// Org `slug` with project `api` and env `prod`; returns (org id, env id).
async fn add_tenant(b: &dyn Backend, slug: &str) -> (Uuid, Uuid) {
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

#[tokio::test]
async fn tenant_tree_resolves_and_slugs_are_unique() {
    let (b, org, env, _dir) = with_tenant().await;
    let path = b.resolve_env("acme", "api", "prod").await.unwrap().expect("resolves");
    assert_eq!((path.org_id, path.env_id, path.kek_version), (org, env, 1));
    assert!(b.resolve_env("acme", "api", "staging").await.unwrap().is_none());
    assert!(b.resolve_env("other", "api", "prod").await.unwrap().is_none());
    let dup = OrgRow {
        id: Uuid::new_v4(),
        slug: "acme".into(),
        name: "again".into(),
        created_at: 2,
    };
    let kek = KekRow {
        org_id: dup.id,
        version: 1,
        wrapped_key: vec![1],
        created_at: 2,
    };
    assert!(matches!(
        b.create_org(&dup, &kek, None).await,
        Err(StorageError::Conflict(_))
    ));
    // The failed org left no KEK behind (one transaction).
    assert!(b.kek(dup.id, 1).await.unwrap().is_none());
    assert_eq!(b.kek(org, 1).await.unwrap().expect("kek").wrapped_key, vec![9; 61]);
    assert_eq!(b.list_orgs().await.unwrap().len(), 1);
    let envs = b.list_envs(org).await.unwrap();
    assert_eq!(envs.len(), 1);
    assert!(envs[0].protected);
}

#[tokio::test]
async fn versions_append_and_lost_races_write_nothing() {
    let (b, org, env, _dir) = with_tenant().await;
    let mut s = secret(org, env, "DB_URL", 1);
    let v1 = version(&s, 1, 1);
    b.put_version(&s, 0, &v1).await.expect("v1");
    // A second "create" of the same key loses.
    let other = secret(org, env, "DB_URL", 1);
    assert!(matches!(
        b.put_version(&other, 0, &version(&other, 1, 7)).await,
        Err(StorageError::Conflict(_))
    ));
    s.current_version = 2;
    b.put_version(&s, 1, &version(&s, 2, 2)).await.expect("v2");
    // A writer that based its write on v1 loses and writes nothing.
    let stale = version(&s, 2, 3);
    assert!(matches!(
        b.put_version(&s, 1, &stale).await,
        Err(StorageError::Conflict(_))
    ));
    let got = b.secret(org, env, "DB_URL").await.unwrap().expect("secret");
    assert_eq!(got.current_version, 2);
    let v2 = b.version(org, s.id, 2).await.unwrap().expect("v2");
    assert_eq!(v2.ciphertext, vec![2; 40]);
    assert_eq!(v2.wrapped_dek, vec![2; 61]);
    let (cur, cur_v) = b.current_secret(org, env, "DB_URL").await.unwrap().expect("current");
    assert_eq!(
        (cur.id, cur.current_version, cur_v.version, cur_v.id),
        (s.id, 2, 2, v2.id)
    );
    assert_eq!(cur_v.ciphertext, vec![2; 40]);
    assert!(b.current_secret(org, env, "NOPE").await.unwrap().is_none());
    let history = b.versions(org, s.id).await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
    assert!(
        history.iter().all(|v| v.ciphertext.is_empty()),
        "history must not load ciphertexts"
    );
}

#[tokio::test]
async fn inject_sees_current_live_versions_only() {
    let (b, org, env, _dir) = with_tenant().await;
    let mut a = secret(org, env, "A", 1);
    b.put_version(&a, 0, &version(&a, 1, 1)).await.unwrap();
    a.current_version = 2;
    b.put_version(&a, 1, &version(&a, 2, 2)).await.unwrap();
    let gone = secret(org, env, "GONE", 1);
    b.put_version(&gone, 0, &version(&gone, 1, 5)).await.unwrap();
    assert!(b.set_deleted(org, gone.id, Some(99), 99).await.unwrap());
    let current = b.current_values(org, env).await.unwrap();
    assert_eq!(current.len(), 1);
    assert_eq!(
        (current[0].key.as_str(), current[0].version, current[0].secret_id),
        ("A", 2, a.id)
    );
    assert_eq!(
        (&current[0].ciphertext, &current[0].wrapped_dek),
        (&vec![2; 40], &vec![2; 61])
    );
    // Restore brings it back (through the inject cache, which every change
    // invalidates); purge removes it and its versions for good.
    assert!(b.set_deleted(org, gone.id, None, 100).await.unwrap());
    assert_eq!(b.current_values(org, env).await.unwrap().len(), 2);
    let mut b2 = secret(org, env, "B", 1);
    b.put_version(&b2, 0, &version(&b2, 1, 3)).await.unwrap();
    assert_eq!(
        b.current_values(org, env).await.unwrap().len(),
        3,
        "a new secret is seen at once"
    );
    b2.current_version = 2;
    b.put_version(&b2, 1, &version(&b2, 2, 4)).await.unwrap();
    let now = b.current_values(org, env).await.unwrap();
    let got = now.iter().find(|v| v.key == "B").unwrap();
    assert_eq!(
        (got.version, &got.ciphertext),
        (2, &vec![4; 40]),
        "an update is seen at once"
    );
    assert!(b.purge_secret(org, gone.id).await.unwrap());
    assert_eq!(
        b.current_values(org, env).await.unwrap().len(),
        2,
        "a purge is seen at once"
    );
    assert!(b.secret(org, env, "GONE").await.unwrap().is_none());
    assert!(b.version(org, gone.id, 1).await.unwrap().is_none());
    assert!(!b.purge_secret(org, gone.id).await.unwrap());
    let listed = b.list_secrets(org, env).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(),
        vec!["A", "B"]
    );
}

#[tokio::test]
async fn tenant_queries_never_cross_organizations() {
    let (b, org_a, env_a, _dir) = with_tenant().await;
    let (org_b, env_b) = add_tenant(b.as_ref(), "beta").await;
    let s = secret(org_a, env_a, "TOKEN", 1);
    b.put_version(&s, 0, &version(&s, 1, 7)).await.expect("write A");
    // Every tenant read asked with B's organization but A's ids finds nothing.
    assert!(b.secret(org_b, env_a, "TOKEN").await.unwrap().is_none());
    assert!(b.current_secret(org_b, env_a, "TOKEN").await.unwrap().is_none());
    assert!(b.version(org_b, s.id, 1).await.unwrap().is_none());
    assert!(b.versions(org_b, s.id).await.unwrap().is_empty());
    assert!(b.list_secrets(org_b, env_a).await.unwrap().is_empty());
    assert!(b.current_values(org_b, env_a).await.unwrap().is_empty());
    assert!(b.kek(org_b, 1).await.unwrap().is_some_and(|k| k.org_id == org_b));
    assert!(
        b.list_envs(org_b).await.unwrap().iter().all(|e| e.id == env_b),
        "B lists only its own environment"
    );
    // Writes through B's organization cannot touch A's rows.
    assert!(!b.set_deleted(org_b, s.id, Some(5), 5).await.unwrap());
    assert!(!b.purge_secret(org_b, s.id).await.unwrap());
    let mut hijack = s.clone();
    hijack.org_id = org_b;
    hijack.current_version = 2;
    assert!(b.put_version(&hijack, 1, &version(&hijack, 2, 9)).await.is_err());
    let still = b
        .current_secret(org_a, env_a, "TOKEN")
        .await
        .unwrap()
        .expect("A's secret");
    assert_eq!(
        (still.0.current_version, still.0.deleted_at, still.1.ciphertext),
        (1, None, vec![7; 40])
    );
    // Slug resolution returns the owning organization's ids.
    let path = b
        .resolve_env("beta", "api", "prod")
        .await
        .unwrap()
        .expect("beta resolves");
    assert_eq!((path.org_id, path.env_id), (org_b, env_b));
}
