//! `ShareStore`: a link is viewed at most `max_views` times, the last view
//! deletes the row in the same step, concurrent last views have exactly one
//! winner, expired links are neither viewed nor listed and are purged,
//! revoke deletes, and the per-organization policy reads back.

use std::sync::Arc;

use coffer::storage::Backend;
use coffer::storage::shares::{SharePolicyRow, ShareRow};
use uuid::Uuid;

use super::with_tenant;

fn link(org: Uuid, creator: Uuid, lookup: u8, views: i64, expires_at: i64) -> ShareRow {
    ShareRow {
        id: Uuid::new_v4(),
        lookup: vec![lookup; 32],
        org_id: org,
        created_by: creator,
        creator_name: "alice@example.com".into(),
        env_id: None,
        source: String::new(),
        ciphertext: vec![lookup; 48],
        kdf: "none".into(),
        max_views: views,
        views_left: views,
        created_at: 1,
        expires_at,
    }
}

const FUTURE: i64 = i64::MAX / 2;

#[tokio::test]
async fn views_count_down_and_the_last_one_deletes_the_row() {
    let (b, org, _env, _dir) = with_tenant().await;
    let alice = Uuid::new_v4();
    let row = link(org, alice, 1, 2, FUTURE);
    b.create_share(&row).await.expect("create");
    let v1 = b.take_view(&[1; 32], 100).await.unwrap().expect("first view");
    assert_eq!((v1.views_left, v1.ciphertext.clone(), v1.id), (1, vec![1; 48], row.id));
    assert_eq!(b.shares_by(alice, 100).await.unwrap()[0].views_left, 1);
    let v2 = b.take_view(&[1; 32], 100).await.unwrap().expect("last view");
    assert_eq!(v2.views_left, 0);
    assert!(b.take_view(&[1; 32], 100).await.unwrap().is_none(), "spent");
    assert!(
        b.share(row.id).await.unwrap().is_none(),
        "the last view deleted the row"
    );
    assert!(b.take_view(&[9; 32], 100).await.unwrap().is_none(), "unknown");
    // A second link with the same lookup is a conflict.
    b.create_share(&link(org, alice, 2, 1, FUTURE)).await.expect("create");
    assert!(b.create_share(&link(org, alice, 2, 1, FUTURE)).await.is_err());
}

#[tokio::test]
async fn concurrent_last_views_have_exactly_one_winner() {
    let (b, org, _env, _dir) = with_tenant().await;
    let b: Arc<dyn Backend> = Arc::from(b);
    b.create_share(&link(org, Uuid::new_v4(), 3, 1, FUTURE))
        .await
        .expect("create");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move { b.take_view(&[3; 32], 100).await.expect("view") })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test]
async fn expired_links_are_not_viewed_listed_or_kept() {
    let (b, org, _env, _dir) = with_tenant().await;
    let alice = Uuid::new_v4();
    let old = link(org, alice, 4, 5, 1000);
    let live = link(org, alice, 5, 5, FUTURE);
    b.create_share(&old).await.unwrap();
    b.create_share(&live).await.unwrap();
    assert!(
        b.take_view(&[4; 32], 1000).await.unwrap().is_none(),
        "expired at its expiry"
    );
    let listed: Vec<Uuid> = b.shares_by(alice, 1000).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed, vec![live.id]);
    assert_eq!(b.org_shares(org, 1000).await.unwrap().len(), 1);
    assert!(
        b.shares_by(alice, 1000).await.unwrap()[0].ciphertext.is_empty(),
        "lists carry no ciphertext"
    );
    assert_eq!(b.purge_expired_shares(1000).await.unwrap(), vec![(old.id, org)]);
    assert!(b.share(old.id).await.unwrap().is_none());
    assert!(b.share(live.id).await.unwrap().is_some());
    assert!(b.delete_share(live.id).await.unwrap(), "revoke");
    assert!(!b.delete_share(live.id).await.unwrap());
    assert!(b.take_view(&[5; 32], 100).await.unwrap().is_none(), "revoked");
}

#[tokio::test]
async fn the_policy_reads_back_per_organization() {
    let (b, org, _env, _dir) = with_tenant().await;
    assert!(b.share_policy(org).await.unwrap().is_none());
    let mut p = SharePolicyRow {
        org_id: org,
        max_expiry_s: 3600,
        min_role: "admin".into(),
        allow_protected: true,
        updated_at: 5,
    };
    b.set_share_policy(&p).await.unwrap();
    assert_eq!(b.share_policy(org).await.unwrap(), Some(p.clone()));
    p.min_role = "member".into();
    p.allow_protected = false;
    b.set_share_policy(&p).await.unwrap();
    assert_eq!(b.share_policy(org).await.unwrap(), Some(p));
    let (other, _) = super::add_tenant(b.as_ref(), "other").await;
    assert!(b.share_policy(other).await.unwrap().is_none());
}

#[tokio::test]
async fn purging_an_organization_takes_its_links_and_policy() {
    use coffer::storage::TenantNode;
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = super::add_tenant(b.as_ref(), "other").await;
    let mine = link(org, Uuid::new_v4(), 6, 1, FUTURE);
    let theirs = link(other, Uuid::new_v4(), 7, 1, FUTURE);
    b.create_share(&mine).await.unwrap();
    b.create_share(&theirs).await.unwrap();
    b.set_share_policy(&SharePolicyRow {
        org_id: org,
        max_expiry_s: 60,
        min_role: "owner".into(),
        allow_protected: false,
        updated_at: 1,
    })
    .await
    .unwrap();
    assert!(b.mark_deleted(TenantNode::Org(org), Some(10)).await.unwrap());
    b.purge_node(TenantNode::Org(org), 10).await.unwrap().expect("purged");
    assert!(b.share(mine.id).await.unwrap().is_none());
    assert!(b.take_view(&[6; 32], 100).await.unwrap().is_none());
    assert!(b.share_policy(org).await.unwrap().is_none());
    assert!(
        b.share(theirs.id).await.unwrap().is_some(),
        "another organization's link stays"
    );
}
