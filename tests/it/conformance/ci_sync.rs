//! `CiSyncStore`: sync targets per organization, their idempotent job
//! queue (one live job per target, key, version and op), dead letters,
//! per-key state, and the reconcile time that a request is never lost to.

use coffer::storage::ci_sync::{CiJobRow, CiStateRow, CiTargetRow};
use uuid::Uuid;

use super::{add_tenant, with_tenant};

fn target(org: Uuid, env: Uuid) -> CiTargetRow {
    CiTargetRow {
        id: Uuid::new_v4(),
        org_id: org,
        env_id: env,
        provider: "github".into(),
        scope: "repository".into(),
        api_url: "https://api.github.com".into(),
        location: r#"{"owner":"acme","repo":"api"}"#.into(),
        overwrite_drift: true,
        timeout_ms: 1000,
        credential: b"ciphertext-of-the-token".to_vec(),
        wrapped_dek: vec![9, 9, 9],
        kek_version: 1,
        created_by: "user:a@b".into(),
        created_at: 5,
        last_success_at: None,
        last_error: None,
        last_error_at: None,
        blocked_until: 0,
        drift: "[]".into(),
        reconciled_at: None,
    }
}

fn job(t: &CiTargetRow, key: &str, version: i64, at: i64) -> CiJobRow {
    CiJobRow {
        id: Uuid::new_v4(),
        org_id: t.org_id,
        target_id: t.id,
        key: key.into(),
        version,
        op: "put".into(),
        attempts: 0,
        next_at: at,
        status: "pending".into(),
        last_error: None,
        created_at: at,
        done_at: None,
    }
}

#[tokio::test]
async fn targets_queue_and_state_are_per_organization_and_idempotent() {
    let (b, org, env, _dir) = with_tenant().await;
    let (other, other_env) = add_tenant(b.as_ref(), "other").await;
    let t = target(org, env);
    let t2 = target(other, other_env);
    b.insert_ci_target(&t).await.unwrap();
    b.insert_ci_target(&t2).await.unwrap();
    assert_eq!(b.ci_targets(org).await.unwrap(), vec![t.clone()]);
    assert_eq!(b.all_ci_targets().await.unwrap().len(), 2);
    assert!(!format!("{t:?}").contains("9, 9"), "Debug hides the credential");

    // idempotent enqueue: the same (target, key, version, op) once
    let j1 = job(&t, "DB", 1, 10);
    assert_eq!(
        b.enqueue_ci_jobs(org, &[j1.clone(), job(&t, "DB", 1, 11)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(b.enqueue_ci_jobs(org, &[job(&t, "DB", 2, 12)]).await.unwrap(), 1);
    assert_eq!(b.ci_job_counts(org, t.id).await.unwrap(), (2, 0));
    assert_eq!(b.ci_job_counts(other, t2.id).await.unwrap(), (0, 0));
    let due = b.due_ci_jobs(org, t.id, 11, 10).await.unwrap();
    assert_eq!(due.iter().map(|j| j.id).collect::<Vec<_>>(), vec![j1.id]);
    assert!(b.due_ci_jobs(other, t.id, 100, 10).await.unwrap().is_empty(), "tenant");

    // dead: kept with its error, blocks a re-enqueue, requeued on request
    let mut dead = j1.clone();
    dead.attempts = 8;
    dead.status = "dead".into();
    dead.last_error = Some("the provider answered 401".into());
    dead.done_at = Some(20);
    assert!(b.update_ci_job(&dead).await.unwrap());
    assert!(!b.update_ci_job(&dead).await.unwrap(), "only pending jobs change");
    assert_eq!(b.enqueue_ci_jobs(org, &[job(&t, "DB", 1, 21)]).await.unwrap(), 0);
    assert_eq!(b.ci_job_counts(org, t.id).await.unwrap(), (1, 1));
    let listed = b.ci_jobs(org, t.id, 10).await.unwrap();
    assert!(listed.iter().any(|j| j.status == "dead" && j.last_error.is_some()));
    assert_eq!(b.requeue_ci_jobs(org, t.id, 30).await.unwrap(), 2);
    assert_eq!(b.ci_job_counts(org, t.id).await.unwrap(), (2, 0));
    // done: a later job for the same version may be queued again (drift overwrite)
    for mut j in b.due_ci_jobs(org, t.id, 30, 10).await.unwrap() {
        j.status = "done".into();
        j.done_at = Some(31);
        assert!(b.update_ci_job(&j).await.unwrap());
    }
    assert_eq!(b.enqueue_ci_jobs(org, &[job(&t, "DB", 2, 40)]).await.unwrap(), 1);

    // state: upsert and delete by key
    let mut s = CiStateRow {
        org_id: org,
        target_id: t.id,
        key: "DB".into(),
        version: 1,
        written_at: 10,
        remote_updated_at: "2026-01-01T00:00:00Z".into(),
    };
    b.put_ci_state(&s).await.unwrap();
    s.version = 2;
    b.put_ci_state(&s).await.unwrap();
    assert_eq!(b.ci_state(org, t.id).await.unwrap(), vec![s.clone()]);
    assert!(b.ci_state(other, t.id).await.unwrap().is_empty(), "tenant");
    b.delete_ci_state(org, t.id, "DB").await.unwrap();
    assert!(b.ci_state(org, t.id).await.unwrap().is_empty());

    // status and reconcile: a request made during a reconcile survives it
    let mut st = t.clone();
    st.last_error = Some("timed out".into());
    st.blocked_until = 99;
    assert!(b.update_ci_target_status(&st).await.unwrap());
    b.record_ci_reconcile(org, t.id, "[]", 50, None).await.unwrap();
    assert_eq!(b.ci_targets(org).await.unwrap()[0].reconciled_at, Some(50));
    assert!(b.request_ci_reconcile(org, t.id).await.unwrap());
    b.record_ci_reconcile(org, t.id, r#"[{"key":"DB"}]"#, 60, Some(50))
        .await
        .unwrap();
    let now = b.ci_targets(org).await.unwrap().remove(0);
    assert_eq!(now.reconciled_at, None, "the request is still open");
    assert_eq!(now.drift, r#"[{"key":"DB"}]"#);
    assert_eq!((now.last_error.as_deref(), now.blocked_until), (Some("timed out"), 99));

    // credential: replaced with the location, nothing else; tenant-bound
    let mut cred = now.clone();
    cred.credential = vec![9, 9, 9];
    cred.wrapped_dek = vec![8, 8];
    cred.location = r#"{"owner":"acme","app_id":"7"}"#.into();
    let mut foreign = cred.clone();
    foreign.org_id = other;
    assert!(!b.set_ci_target_credential(&foreign).await.unwrap(), "tenant");
    assert!(b.set_ci_target_credential(&cred).await.unwrap());
    assert_eq!(b.ci_targets(org).await.unwrap().remove(0), cred);

    // delete: the target with its queue and state
    b.put_ci_state(&s).await.unwrap();
    assert!(b.delete_ci_target(org, t.id).await.unwrap());
    assert!(!b.delete_ci_target(org, t.id).await.unwrap());
    assert!(b.ci_targets(org).await.unwrap().is_empty());
    assert_eq!(b.ci_job_counts(org, t.id).await.unwrap(), (0, 0));
    assert!(b.ci_state(org, t.id).await.unwrap().is_empty());
    assert_eq!(b.ci_targets(other).await.unwrap(), vec![t2]);
}

/// Re-wrap of a target token's DEK: a compare-and-set on the wrapped DEK
/// it was read with; the token ciphertext is untouched.
#[tokio::test]
async fn a_target_dek_is_rewrapped_only_from_what_was_read() {
    let (b, org, env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    let t = target(org, env);
    b.insert_ci_target(&t).await.unwrap();
    assert!(
        !b.rewrap_ci_credential(org, t.id, &[4, 4], 2, &[1, 1]).await.unwrap(),
        "stale"
    );
    assert!(
        !b.rewrap_ci_credential(other, t.id, &[4, 4], 2, &[9, 9, 9])
            .await
            .unwrap(),
        "another organization"
    );
    assert!(b.rewrap_ci_credential(org, t.id, &[4, 4], 2, &[9, 9, 9]).await.unwrap());
    let got = b.ci_targets(org).await.unwrap().remove(0);
    assert_eq!((got.wrapped_dek, got.kek_version), (vec![4, 4], 2));
    assert_eq!(got.credential, t.credential, "the ciphertext is untouched");
}
