//! `TenantStore`: organizations (with their first KEK and the creator's
//! quota), projects, environments, slug resolution.

use coffer::storage::{EnvRow, KekRow, OrgRow, ProjectRow, StorageError};
use uuid::Uuid;

use super::{add_tenant, empty, user, with_tenant};

fn org(slug: &str) -> (OrgRow, KekRow) {
    let org = OrgRow {
        id: Uuid::new_v4(),
        slug: slug.into(),
        name: slug.to_uppercase(),
        created_at: 5,
    };
    let kek = KekRow {
        org_id: org.id,
        version: 1,
        wrapped_key: vec![3; 61],
        created_at: 5,
    };
    (org, kek)
}

fn project(org_id: Uuid, slug: &str) -> ProjectRow {
    ProjectRow {
        id: Uuid::new_v4(),
        org_id,
        slug: slug.into(),
        name: slug.into(),
        created_at: 5,
    }
}

fn env(p: &ProjectRow, slug: &str) -> EnvRow {
    EnvRow {
        id: Uuid::new_v4(),
        org_id: p.org_id,
        project_id: p.id,
        slug: slug.into(),
        name: slug.into(),
        protected: false,
        created_at: 5,
    }
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
async fn the_creators_quota_is_counted_with_the_org_and_a_refusal_writes_nothing() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    let (first, kek) = org("first");
    b.create_org(&first, &kek, Some((alice.id, 2))).await.unwrap();
    // A slug conflict rolls the count back: the quota is still one short.
    let (dup, dup_kek) = org("first");
    assert!(matches!(
        b.create_org(&dup, &dup_kek, Some((alice.id, 2))).await,
        Err(StorageError::Conflict(_))
    ));
    let (second, kek2) = org("second");
    b.create_org(&second, &kek2, Some((alice.id, 2))).await.unwrap();
    let (third, kek3) = org("third");
    assert!(matches!(
        b.create_org(&third, &kek3, Some((alice.id, 2))).await,
        Err(StorageError::LimitReached)
    ));
    assert!(b.org("third").await.unwrap().is_none());
    assert!(b.kek(third.id, 1).await.unwrap().is_none());
    // Another user has a quota of their own; no creator means no quota.
    let bob = user("bob@example.com");
    b.create_user(&bob).await.unwrap();
    b.create_org(&third, &kek3, Some((bob.id, 1))).await.unwrap();
    let (fourth, kek4) = org("fourth");
    b.create_org(&fourth, &kek4, None).await.unwrap();
    // A creator that does not exist cannot create.
    let (fifth, kek5) = org("fifth");
    assert!(matches!(
        b.create_org(&fifth, &kek5, Some((Uuid::new_v4(), 5))).await,
        Err(StorageError::LimitReached)
    ));
    let slugs: Vec<String> = b.list_orgs().await.unwrap().into_iter().map(|o| o.slug).collect();
    assert_eq!(slugs, vec!["first", "fourth", "second", "third"], "by slug");
    let got = b.org("second").await.unwrap().expect("org");
    assert_eq!((got.id, got.name.as_str(), got.created_at), (second.id, "SECOND", 5));
    let k = b.kek(second.id, 1).await.unwrap().expect("kek");
    assert_eq!((k.org_id, k.version, k.wrapped_key), (second.id, 1, vec![3; 61]));
    assert!(b.kek(second.id, 2).await.unwrap().is_none());
}

#[tokio::test]
async fn project_and_environment_slugs_are_unique_per_parent_and_listed_in_order() {
    let (b, org_a, _env, _dir) = with_tenant().await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    let web = project(org_a, "web");
    b.create_project(&web).await.unwrap();
    assert!(matches!(
        b.create_project(&project(org_a, "web")).await,
        Err(StorageError::Conflict(_))
    ));
    // The same slug in another organization is another project.
    b.create_project(&project(org_b, "web")).await.unwrap();
    let slugs: Vec<String> = b
        .list_projects(org_a)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.slug)
        .collect();
    assert_eq!(slugs, vec!["api", "web"]);
    let got = b.project(org_a, "web").await.unwrap().expect("project");
    assert_eq!((got.id, got.org_id), (web.id, org_a));
    assert!(b.project(org_a, "nope").await.unwrap().is_none());
    assert_ne!(b.project(org_b, "web").await.unwrap().unwrap().id, web.id);

    let staging = env(&web, "staging");
    b.create_env(&staging).await.unwrap();
    b.create_env(&env(&web, "dev")).await.unwrap();
    assert!(matches!(
        b.create_env(&env(&web, "dev")).await,
        Err(StorageError::Conflict(_))
    ));
    // "prod" exists in project api; in project web it is new.
    b.create_env(&env(&web, "prod")).await.unwrap();
    let envs = b.list_envs(org_a).await.unwrap();
    assert_eq!(envs.len(), 4);
    let mut expected: Vec<(Uuid, String)> = envs.iter().map(|e| (e.project_id, e.slug.clone())).collect();
    expected.sort();
    assert_eq!(
        envs.iter().map(|e| (e.project_id, e.slug.clone())).collect::<Vec<_>>(),
        expected,
        "by project, then slug"
    );
    assert!(envs.iter().all(|e| e.org_id == org_a));
    let path = b
        .resolve_env("acme", "web", "staging")
        .await
        .unwrap()
        .expect("resolves");
    assert_eq!(
        (path.org_id, path.project_id, path.env_id, path.kek_version),
        (org_a, web.id, staging.id, 1)
    );
    assert!(b.resolve_env("acme", "web", "nope").await.unwrap().is_none());
    assert!(b.resolve_env("acme", "nope", "staging").await.unwrap().is_none());
    assert!(
        b.resolve_env("beta", "web", "staging").await.unwrap().is_none(),
        "beta's web has no staging"
    );
}

#[tokio::test]
async fn a_rename_keeps_the_id_and_moves_the_slug() {
    let (b, org_a, env_id, _dir) = with_tenant().await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    // Organization: slug and name change, id and KEK stay.
    assert!(b.rename_org(org_a, "acme-corp", "Acme Corp").await.unwrap());
    assert!(b.org("acme").await.unwrap().is_none());
    let got = b.org("acme-corp").await.unwrap().expect("renamed");
    assert_eq!((got.id, got.name.as_str()), (org_a, "Acme Corp"));
    assert!(b.kek(org_a, 1).await.unwrap().is_some());
    let path = b
        .resolve_env("acme-corp", "api", "prod")
        .await
        .unwrap()
        .expect("resolves");
    assert_eq!((path.org_id, path.env_id), (org_a, env_id));
    assert!(b.resolve_env("acme", "api", "prod").await.unwrap().is_none());
    assert!(matches!(
        b.rename_org(org_a, "beta", "x").await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(b.org("beta").await.unwrap().expect("untouched").id, org_b);
    assert!(!b.rename_org(Uuid::new_v4(), "ghost", "x").await.unwrap());

    // Project: unique per organization, renamed within its own only.
    let api = b.project(org_a, "api").await.unwrap().expect("project");
    b.create_project(&project(org_a, "web")).await.unwrap();
    b.create_project(&project(org_b, "backend")).await.unwrap();
    assert!(matches!(
        b.rename_project(org_a, api.id, "web", "x").await,
        Err(StorageError::Conflict(_))
    ));
    assert!(b.rename_project(org_a, api.id, "backend", "Backend").await.unwrap());
    let got = b.project(org_a, "backend").await.unwrap().expect("renamed");
    assert_eq!((got.id, got.name.as_str()), (api.id, "Backend"));
    assert!(b.project(org_a, "api").await.unwrap().is_none());
    let path = b
        .resolve_env("acme-corp", "backend", "prod")
        .await
        .unwrap()
        .expect("resolves");
    assert_eq!((path.project_id, path.env_id), (api.id, env_id));
    // Another organization's id does not reach this project.
    assert!(!b.rename_project(org_b, api.id, "stolen", "x").await.unwrap());
    assert_eq!(b.project(org_a, "backend").await.unwrap().expect("kept").id, api.id);
}

#[tokio::test]
async fn an_environment_update_keeps_the_id() {
    let (b, org, env_id, _dir) = with_tenant().await;
    let api = b.project(org, "api").await.unwrap().expect("project");
    let staging = env(&api, "staging");
    b.create_env(&staging).await.unwrap();
    let mut row = b
        .list_envs(org)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.id == env_id)
        .expect("prod");
    row.slug = "staging".into();
    assert!(matches!(b.update_env(&row).await, Err(StorageError::Conflict(_))));
    row.slug = "production".into();
    row.name = "Production".into();
    row.protected = false;
    assert!(b.update_env(&row).await.unwrap());
    let got = b.list_envs(org).await.unwrap();
    let got = got.iter().find(|e| e.id == env_id).expect("kept");
    assert_eq!(
        (got.slug.as_str(), got.name.as_str(), got.protected),
        ("production", "Production", false)
    );
    let path = b
        .resolve_env("acme", "api", "production")
        .await
        .unwrap()
        .expect("resolves");
    assert_eq!(path.env_id, env_id);
    assert!(b.resolve_env("acme", "api", "prod").await.unwrap().is_none());
    // The row's project must match: another project's id updates nothing.
    let web = project(org, "web");
    b.create_project(&web).await.unwrap();
    row.project_id = web.id;
    row.slug = "moved".into();
    assert!(!b.update_env(&row).await.unwrap());
    assert!(b.resolve_env("acme", "web", "moved").await.unwrap().is_none());
}

#[tokio::test]
async fn a_deleted_node_is_hidden_restorable_and_purged_with_everything_under_it() {
    use coffer::storage::TenantNode;
    let (b, org_id, env_id, _dir) = with_tenant().await;
    let s = super::secret(org_id, env_id, "DB_URL", 1);
    b.put_version(&s, 0, &super::version(&s, 1, 1)).await.expect("v1");
    let p = b.project(org_id, "api").await.unwrap().expect("api");
    let node = TenantNode::Env { org_id, id: env_id };

    // Deleted: no lookup finds it, the slug stays taken, it is listed as deleted.
    assert!(b.mark_deleted(node, Some(100)).await.unwrap());
    assert!(!b.mark_deleted(node, Some(101)).await.unwrap(), "already deleted");
    assert!(b.resolve_env("acme", "api", "prod").await.unwrap().is_none());
    assert!(b.list_envs(org_id).await.unwrap().is_empty());
    assert!(matches!(
        b.create_env(&env(&p, "prod")).await,
        Err(StorageError::Conflict(_))
    ));
    let deleted = b.deleted_envs(org_id).await.unwrap();
    assert_eq!((deleted.len(), deleted[0].1), (1, 100));
    assert_eq!(b.expired_deletions(99).await.unwrap(), vec![]);
    assert_eq!(b.expired_deletions(100).await.unwrap(), vec![node]);
    // Restored: back as it was.
    assert!(b.mark_deleted(node, None).await.unwrap());
    assert!(b.resolve_env("acme", "api", "prod").await.unwrap().is_some());
    // A live node is never purged.
    assert!(b.purge_node(node, i64::MAX).await.unwrap().is_none());
    assert!(b.version(org_id, s.id, 1).await.unwrap().is_some());

    // A deleted project hides its environments.
    let pn = TenantNode::Project { org_id, id: p.id };
    assert!(b.mark_deleted(pn, Some(200)).await.unwrap());
    assert!(b.project(org_id, "api").await.unwrap().is_none());
    assert!(b.resolve_env("acme", "api", "prod").await.unwrap().is_none());
    assert!(b.list_envs(org_id).await.unwrap().is_empty());
    assert!(b.mark_deleted(pn, None).await.unwrap());

    // The organization: deleted, then purged with its versions and KEKs.
    let o = TenantNode::Org(org_id);
    assert!(b.mark_deleted(o, Some(300)).await.unwrap());
    assert!(b.org("acme").await.unwrap().is_none());
    assert!(b.list_orgs().await.unwrap().is_empty());
    assert_eq!(b.deleted_orgs().await.unwrap()[0].0.slug, "acme");
    assert!(
        b.purge_node(o, 299).await.unwrap().is_none(),
        "deleted after the cutoff"
    );
    let purged = b.purge_node(o, 300).await.unwrap().expect("purged");
    assert_eq!((purged.versions, purged.secrets, purged.envs), (1, 1, 1));
    assert_eq!(purged.kek_versions, vec![1]);
    assert!(b.kek(org_id, 1).await.unwrap().is_none());
    assert!(b.version(org_id, s.id, 1).await.unwrap().is_none());
    assert!(b.deleted_orgs().await.unwrap().is_empty());
    // The slug is free again.
    let (again, kek) = org("acme");
    b.create_org(&again, &kek, None).await.expect("slug free");
}
