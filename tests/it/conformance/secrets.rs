//! `SecretStore`: secrets, their versions (compare-and-set appends), soft
//! delete and purge, the inject query and its cache, tenant isolation.

use coffer::storage::StorageError;
use uuid::Uuid;

use super::{add_tenant, secret, version, with_tenant};

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
    // The listing names the writer of each current version ("updated by").
    assert!(
        listed.iter().all(|s| s.author == "user:someone@example.com"),
        "{listed:?}"
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

#[tokio::test]
async fn soft_delete_keeps_the_row_listed_and_a_new_version_revives_it() {
    let (b, org, env, _dir) = with_tenant().await;
    let mut s = secret(org, env, "API_KEY", 1);
    s.description = "the key".into();
    b.put_version(&s, 0, &version(&s, 1, 1)).await.unwrap();
    let listed = b.list_secrets(org, env).await.unwrap();
    assert_eq!(
        (
            listed[0].key.as_str(),
            listed[0].description.as_str(),
            listed[0].ciphertext_len
        ),
        ("API_KEY", "the key", 40),
        "the listing carries the current ciphertext's length"
    );
    assert!(
        !b.set_deleted(org, Uuid::new_v4(), Some(5), 5).await.unwrap(),
        "no such secret"
    );
    assert!(b.set_deleted(org, s.id, Some(50), 51).await.unwrap());
    let got = b.secret(org, env, "API_KEY").await.unwrap().expect("still there");
    assert_eq!((got.deleted_at, got.updated_at), (Some(50), 51));
    assert_eq!(
        b.list_secrets(org, env).await.unwrap().len(),
        1,
        "soft-deleted secrets are listed"
    );
    assert!(b.current_values(org, env).await.unwrap().is_empty(), "but not injected");
    // Writing a new version brings it back.
    s.current_version = 2;
    s.updated_at = 60;
    s.value_type = "json".into();
    let mut v2 = version(&s, 2, 2);
    v2.ciphertext = vec![2; 10];
    b.put_version(&s, 1, &v2).await.unwrap();
    let got = b.secret(org, env, "API_KEY").await.unwrap().unwrap();
    assert_eq!(
        (
            got.deleted_at,
            got.current_version,
            got.value_type.as_str(),
            got.updated_at,
            got.ciphertext_len
        ),
        (None, 2, "json", 60, 10)
    );
    assert_eq!(b.current_values(org, env).await.unwrap().len(), 1);
    // A version number taken already is a conflict too.
    s.current_version = 3;
    let clash = version(&s, 2, 9);
    assert!(matches!(
        b.put_version(&s, 2, &clash).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(
        b.secret(org, env, "API_KEY").await.unwrap().unwrap().current_version,
        2,
        "rolled back"
    );
}

#[tokio::test]
async fn versions_keep_their_metadata_and_belong_to_one_secret() {
    let (b, org, env, _dir) = with_tenant().await;
    let a = secret(org, env, "A", 1);
    let c = secret(org, env, "C", 1);
    let mut va = version(&a, 1, 1);
    va.kek_version = 1;
    va.created_by = "writer-acc".into();
    b.put_version(&a, 0, &va).await.unwrap();
    b.put_version(&c, 0, &version(&c, 1, 3)).await.unwrap();
    let got = b.version(org, a.id, 1).await.unwrap().expect("v1");
    assert_eq!(
        (
            got.id,
            got.secret_id,
            got.org_id,
            got.kek_version,
            got.created_by.as_str(),
            got.created_at
        ),
        (va.id, a.id, org, 1, "writer-acc", 11)
    );
    assert!(b.version(org, a.id, 2).await.unwrap().is_none());
    let history = b.versions(org, a.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].id, history[0].created_by.as_str()), (va.id, "writer-acc"));
    assert!(history[0].wrapped_dek.is_empty(), "history loads no blobs");
    assert!(b.versions(org, Uuid::new_v4()).await.unwrap().is_empty());
    // Purging one secret leaves the other's versions alone.
    assert!(b.purge_secret(org, a.id).await.unwrap());
    assert!(b.versions(org, a.id).await.unwrap().is_empty());
    assert_eq!(b.versions(org, c.id).await.unwrap().len(), 1);
}

#[tokio::test]
async fn inject_rows_are_per_environment_and_survive_forgetting_the_cache() {
    let (b, org, env, _dir) = with_tenant().await;
    let (org_b, env_b) = add_tenant(b.as_ref(), "beta").await;
    let s = secret(org, env, "X", 1);
    let v = version(&s, 1, 6);
    b.put_version(&s, 0, &v).await.unwrap();
    let t = secret(org_b, env_b, "X", 1);
    b.put_version(&t, 0, &version(&t, 1, 8)).await.unwrap();
    let first = b.current_values(org, env).await.unwrap();
    assert_eq!(
        (first[0].version_id, first[0].kek_version, &first[0].ciphertext),
        (v.id, 1, &vec![6; 40])
    );
    b.forget_values(env);
    b.drop_caches();
    let again = b.current_values(org, env).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].version_id, v.id);
    let other = b.current_values(org_b, env_b).await.unwrap();
    assert_eq!((other.len(), &other[0].ciphertext), (1, &vec![8; 40]));
    assert!(b.current_values(org, Uuid::new_v4()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_of_versions_is_written_whole_or_not_at_all() {
    let (b, org, env, _dir) = with_tenant().await;
    let mut a = secret(org, env, "A", 1);
    b.put_version(&a, 0, &version(&a, 1, 1)).await.expect("A v1");
    let c = secret(org, env, "C", 1);
    a.current_version = 2;
    // The second write of the batch lost a race (C exists by now): the
    // first one is rolled back with it.
    let c_first = secret(org, env, "C", 1);
    b.put_version(&c_first, 0, &version(&c_first, 1, 5)).await.expect("C");
    assert!(matches!(
        b.put_versions(&[(a.clone(), 1, version(&a, 2, 2)), (c.clone(), 0, version(&c, 1, 3))])
            .await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(b.secret(org, env, "A").await.unwrap().expect("A").current_version, 1);
    assert_eq!(b.versions(org, a.id).await.unwrap().len(), 1);
    // Without the race both land, with their authors.
    let d = secret(org, env, "D", 1);
    b.put_versions(&[(a.clone(), 1, version(&a, 2, 2)), (d.clone(), 0, version(&d, 1, 4))])
        .await
        .expect("batch");
    assert_eq!(b.secret(org, env, "A").await.unwrap().expect("A").current_version, 2);
    let dv = b.versions(org, d.id).await.unwrap();
    assert_eq!(dv.len(), 1);
    assert_eq!(dv[0].author, "user:someone@example.com");
}
