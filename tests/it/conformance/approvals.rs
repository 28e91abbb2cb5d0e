//! `ApprovalStore`: policies, requests, votes, compare-and-set of status,
//! the CAS delete, expiry across organizations, and tenant isolation.

use coffer::storage::approvals::{PolicyRow, RequestRow, VoteRow};
use uuid::Uuid;

use super::{add_tenant, secret, version, with_tenant};

fn policy(org_id: Uuid, env_id: Uuid) -> PolicyRow {
    PolicyRow {
        org_id,
        env_id,
        actions: 1 | 8,
        required: 2,
        approver_role: "admin".into(),
        approver_group: None,
        sa_inject_exempt: true,
        request_ttl_ms: 1000,
        grant_ttl_ms: 1000,
        break_glass_ttl_ms: 1000,
        updated_by: "root".into(),
        updated_at: 1,
    }
}

fn request(org_id: Uuid, env_id: Uuid, kind: &str, author: Uuid, expires_at: i64) -> RequestRow {
    RequestRow {
        id: Uuid::new_v4(),
        org_id,
        env_id,
        kind: kind.into(),
        key: "DB".into(),
        value_type: "text".into(),
        description: None,
        base_version: 1,
        rollback_to: None,
        secret_id: Some(Uuid::new_v4()),
        version_id: Some(Uuid::new_v4()),
        ciphertext: Some(vec![7; 40]),
        wrapped_dek: Some(vec![8; 61]),
        kek_version: Some(1),
        author_id: author,
        author: "user:dev@example.com".into(),
        reason: String::new(),
        status: "pending".into(),
        required: 2,
        created_at: 10,
        expires_at,
        decided_at: None,
        grant_until: None,
        reviewed_by: None,
        review_comment: None,
    }
}

#[tokio::test]
async fn policies_are_replaced_listed_and_removed_per_environment() {
    let (b, org, env, _dir) = with_tenant().await;
    assert_eq!(b.approval_policy(org, env).await.unwrap(), None);
    b.put_approval_policy(&policy(org, env)).await.unwrap();
    let changed = PolicyRow {
        required: 3,
        approver_group: Some(Uuid::new_v4()),
        ..policy(org, env)
    };
    b.put_approval_policy(&changed).await.unwrap();
    assert_eq!(b.approval_policy(org, env).await.unwrap(), Some(changed.clone()));
    assert_eq!(b.approval_policies(org).await.unwrap(), vec![changed]);
    let (other, _) = add_tenant(b.as_ref(), "beta").await;
    assert!(
        b.approval_policies(other).await.unwrap().is_empty(),
        "another org sees none"
    );
    assert!(b.delete_approval_policy(org, env).await.unwrap());
    assert!(!b.delete_approval_policy(org, env).await.unwrap());
}

#[tokio::test]
async fn requests_votes_and_status_changes_are_compare_and_set() {
    let (b, org, env, _dir) = with_tenant().await;
    let author = Uuid::new_v4();
    let r = request(org, env, "write", author, i64::MAX);
    b.insert_request(&r).await.unwrap();
    assert_eq!(b.request(org, r.id).await.unwrap(), Some(r.clone()));
    let (other, _) = add_tenant(b.as_ref(), "beta").await;
    assert_eq!(
        b.request(other, r.id).await.unwrap(),
        None,
        "another org's id finds nothing"
    );
    // One vote per approver.
    let vote = VoteRow {
        request_id: r.id,
        org_id: org,
        approver_id: Uuid::new_v4(),
        approver: "user:alice@example.com".into(),
        decision: "approve".into(),
        comment: "ok".into(),
        created_at: 11,
    };
    b.add_vote(&vote).await.unwrap();
    assert!(b.add_vote(&vote).await.is_err(), "a second vote of the same approver");
    assert_eq!(b.votes(org, r.id).await.unwrap(), vec![vote]);
    // Only the first mover changes the status.
    assert!(
        b.set_request_status(org, r.id, ("pending", "applying"), 12, None)
            .await
            .unwrap()
    );
    assert!(
        !b.set_request_status(org, r.id, ("pending", "applying"), 12, None)
            .await
            .unwrap()
    );
    // Grants: approved reveal and break-glass windows, while they last.
    let mut g = request(org, env, "reveal", author, i64::MAX);
    b.insert_request(&g).await.unwrap();
    assert!(
        b.set_request_status(org, g.id, ("pending", "approved"), 20, Some(100))
            .await
            .unwrap()
    );
    g.status = "approved".into();
    let held = b.active_grants(org, author, 50).await.unwrap();
    assert_eq!(held.iter().map(|x| x.id).collect::<Vec<_>>(), vec![g.id]);
    assert!(b.active_grants(org, author, 100).await.unwrap().is_empty(), "ended");
    assert!(
        b.active_grants(org, Uuid::new_v4(), 50).await.unwrap().is_empty(),
        "the requester alone"
    );
    // Reviews happen once.
    let mut glass = request(org, env, "break_glass", author, 0);
    glass.status = "unreviewed".into();
    b.insert_request(&glass).await.unwrap();
    assert!(
        b.review_request(org, glass.id, "flagged", "user:bob@example.com", "why", 30)
            .await
            .unwrap()
    );
    assert!(
        !b.review_request(org, glass.id, "accepted", "user:bob@example.com", "", 31)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn expiry_reaches_every_organization_and_only_pending_requests() {
    let (b, org, env, _dir) = with_tenant().await;
    let (other, other_env) = add_tenant(b.as_ref(), "beta").await;
    let due = request(org, env, "write", Uuid::new_v4(), 5);
    let due_other = request(other, other_env, "export", Uuid::new_v4(), 5);
    let later = request(org, env, "write", Uuid::new_v4(), 500);
    let mut decided = request(org, env, "write", Uuid::new_v4(), 5);
    decided.status = "rejected".into();
    for r in [&due, &due_other, &later, &decided] {
        b.insert_request(r).await.unwrap();
    }
    let mut expired: Vec<Uuid> = b.expire_requests(100).await.unwrap().iter().map(|r| r.id).collect();
    expired.sort();
    let mut want = vec![due.id, due_other.id];
    want.sort();
    assert_eq!(expired, want);
    assert_eq!(
        b.request(org, due.id).await.unwrap().map(|r| r.status).as_deref(),
        Some("expired")
    );
    assert_eq!(
        b.request(org, later.id).await.unwrap().map(|r| r.status).as_deref(),
        Some("pending")
    );
    assert!(b.expire_requests(100).await.unwrap().is_empty(), "once");
}

#[tokio::test]
async fn an_approved_delete_applies_only_to_the_version_it_saw() {
    let (b, org, env, _dir) = with_tenant().await;
    let s = secret(org, env, "DB", 1);
    b.put_version(&s, 0, &version(&s, 1, 1)).await.unwrap();
    let s2 = super::SecretRow {
        current_version: 2,
        ..s.clone()
    };
    b.put_version(&s2, 1, &version(&s, 2, 2)).await.unwrap();
    assert!(
        !b.delete_secret_if(org, s.id, 1, 50).await.unwrap(),
        "stale: version 2 is current"
    );
    assert!(b.delete_secret_if(org, s.id, 2, 50).await.unwrap());
    let row = b.secret(org, env, "DB").await.unwrap().expect("kept, soft-deleted");
    assert_eq!(row.deleted_at, Some(50));
    assert!(!b.delete_secret_if(org, s.id, 2, 60).await.unwrap(), "already deleted");
}
