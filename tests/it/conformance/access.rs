//! `AccessStore`: memberships, groups, service accounts, grants — and that
//! access never outlives what it was granted to.

use coffer::storage::{GrantRow, GroupRow, ServiceAccountRow, StorageError};
use uuid::Uuid;

use super::{add_tenant, empty, token, user};

pub(super) fn group(org_id: Uuid, name: &str) -> GroupRow {
    GroupRow {
        id: Uuid::new_v4(),
        org_id,
        name: name.into(),
        created_at: 1,
    }
}

pub(super) fn grant(org_id: Uuid, kind: &str, subject_id: Uuid, env_id: Option<Uuid>) -> GrantRow {
    GrantRow {
        id: Uuid::new_v4(),
        org_id,
        subject_kind: kind.into(),
        subject_id,
        project_id: None,
        env_id,
        permissions: 3,
        created_at: 1,
    }
}

fn sa(org_id: Uuid, name: &str, spki: Option<&str>) -> ServiceAccountRow {
    ServiceAccountRow {
        id: Uuid::new_v4(),
        org_id,
        name: name.into(),
        cidrs: "10.0.0.0/8".into(),
        cert_spki_sha256: spki.map(str::to_owned),
        cert_subject_cn: spki.map(|_| "ci".to_owned()),
        cert_dns_san: None,
        created_at: 1,
    }
}

#[tokio::test]
async fn memberships_are_set_changed_and_listed_both_ways() {
    let (b, _dir) = empty().await;
    let (org_a, _) = add_tenant(b.as_ref(), "acme").await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    let zed = user("zed@example.com");
    let amy = user("amy@example.com");
    b.create_user(&zed).await.unwrap();
    b.create_user(&amy).await.unwrap();
    b.set_membership(org_a, zed.id, "member", 1).await.unwrap();
    b.set_membership(org_a, amy.id, "owner", 1).await.unwrap();
    b.set_membership(org_b, zed.id, "admin", 1).await.unwrap();
    assert_eq!(b.membership(org_a, zed.id).await.unwrap().as_deref(), Some("member"));
    // Setting again changes the role, never adds a second row.
    b.set_membership(org_a, zed.id, "admin", 2).await.unwrap();
    assert_eq!(b.membership(org_a, zed.id).await.unwrap().as_deref(), Some("admin"));
    assert_eq!(b.membership(org_b, amy.id).await.unwrap(), None);
    let members: Vec<(String, String)> = b
        .members(org_a)
        .await
        .unwrap()
        .into_iter()
        .map(|(u, r)| (u.email, r))
        .collect();
    assert_eq!(
        members,
        vec![
            ("amy@example.com".to_owned(), "owner".to_owned()),
            ("zed@example.com".to_owned(), "admin".to_owned())
        ],
        "by email"
    );
    let orgs: Vec<(String, String)> = b
        .orgs_of(zed.id)
        .await
        .unwrap()
        .into_iter()
        .map(|(o, r)| (o.slug, r))
        .collect();
    assert_eq!(
        orgs,
        vec![
            ("acme".to_owned(), "admin".to_owned()),
            ("beta".to_owned(), "admin".to_owned())
        ],
        "by slug"
    );
}

#[tokio::test]
async fn removing_a_member_removes_their_grants_and_group_memberships_in_that_org_only() {
    let (b, _dir) = empty().await;
    let (org_a, env_a) = add_tenant(b.as_ref(), "acme").await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    let alice = user("alice@example.com");
    let bob = user("bob@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_user(&bob).await.unwrap();
    let mut groups = Vec::new();
    for org in [org_a, org_b] {
        b.set_membership(org, alice.id, "member", 1).await.unwrap();
        b.set_membership(org, bob.id, "member", 1).await.unwrap();
        let g = group(org, "ops");
        b.create_group(&g).await.unwrap();
        b.add_group_member(org, g.id, alice.id).await.unwrap();
        b.add_group_member(org, g.id, bob.id).await.unwrap();
        b.create_grant(&grant(org, "user", alice.id, None)).await.unwrap();
        b.create_grant(&grant(org, "user", bob.id, None)).await.unwrap();
        groups.push(g);
    }
    // A group's grant is not the member's: it stays.
    let group_grant = grant(org_a, "group", groups[0].id, Some(env_a));
    b.create_grant(&group_grant).await.unwrap();

    assert!(b.remove_membership(org_a, alice.id).await.unwrap());
    assert!(!b.remove_membership(org_a, alice.id).await.unwrap());
    assert_eq!(b.membership(org_a, alice.id).await.unwrap(), None);
    assert!(b.user_groups(org_a, alice.id).await.unwrap().is_empty());
    let left: Vec<Uuid> = b.grants(org_a).await.unwrap().iter().map(|g| g.subject_id).collect();
    assert!(!left.contains(&alice.id));
    assert!(left.contains(&bob.id) && left.contains(&groups[0].id));
    // Organization B is untouched.
    assert_eq!(b.membership(org_b, alice.id).await.unwrap().as_deref(), Some("member"));
    assert_eq!(b.user_groups(org_b, alice.id).await.unwrap(), vec![groups[1].id]);
    assert!(b.grants(org_b).await.unwrap().iter().any(|g| g.subject_id == alice.id));
    assert_eq!(b.user_groups(org_a, bob.id).await.unwrap(), vec![groups[0].id]);
}

#[tokio::test]
async fn groups_hold_members_once_and_list_their_emails() {
    let (b, _dir) = empty().await;
    let (org_a, _) = add_tenant(b.as_ref(), "acme").await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    let zed = user("zed@example.com");
    let amy = user("amy@example.com");
    b.create_user(&zed).await.unwrap();
    b.create_user(&amy).await.unwrap();
    b.set_membership(org_a, zed.id, "member", 1).await.unwrap();
    b.set_membership(org_a, amy.id, "member", 1).await.unwrap();
    let ops = group(org_a, "ops");
    let dev = group(org_a, "dev");
    b.create_group(&ops).await.unwrap();
    b.create_group(&dev).await.unwrap();
    assert!(matches!(
        b.create_group(&group(org_a, "ops")).await,
        Err(StorageError::Conflict(_))
    ));
    b.create_group(&group(org_b, "ops")).await.unwrap();
    b.add_group_member(org_a, ops.id, zed.id).await.unwrap();
    b.add_group_member(org_a, ops.id, amy.id).await.unwrap();
    assert!(matches!(
        b.add_group_member(org_a, ops.id, amy.id).await,
        Err(StorageError::Conflict(_))
    ));
    let listed: Vec<(String, Vec<String>)> = b
        .groups(org_a)
        .await
        .unwrap()
        .into_iter()
        .map(|(g, m)| (g.name, m))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("dev".to_owned(), vec![]),
            (
                "ops".to_owned(),
                vec!["amy@example.com".to_owned(), "zed@example.com".to_owned()]
            )
        ],
        "by name, members by email"
    );
    assert_eq!(b.groups(org_b).await.unwrap().len(), 1);
    assert_eq!(b.user_groups(org_a, zed.id).await.unwrap(), vec![ops.id]);
    assert!(b.user_groups(org_b, zed.id).await.unwrap().is_empty());
    assert!(
        !b.remove_group_member(org_b, ops.id, zed.id).await.unwrap(),
        "another org"
    );
    assert!(b.remove_group_member(org_a, ops.id, zed.id).await.unwrap());
    assert!(!b.remove_group_member(org_a, ops.id, zed.id).await.unwrap());
    assert!(b.user_groups(org_a, zed.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn service_accounts_are_unique_and_deleting_one_removes_its_grants_and_tokens() {
    let (b, _dir) = empty().await;
    let (org_a, env_a) = add_tenant(b.as_ref(), "acme").await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    let spki = "ab".repeat(32);
    let deploy = sa(org_a, "deploy", Some(&spki));
    let build = sa(org_a, "build", None);
    b.create_service_account(&deploy).await.unwrap();
    b.create_service_account(&build).await.unwrap();
    assert!(matches!(
        b.create_service_account(&sa(org_a, "deploy", None)).await,
        Err(StorageError::Conflict(_))
    ));
    // The certificate identifies one account server-wide.
    match b.create_service_account(&sa(org_b, "other", Some(&spki))).await {
        Err(StorageError::Conflict(msg)) => assert!(msg.contains("spki"), "{msg}"),
        other => panic!("expected conflict, got {other:?}"),
    }
    b.create_service_account(&sa(org_b, "deploy", None)).await.unwrap();
    let names: Vec<String> = b
        .service_accounts(org_a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["build", "deploy"]);
    let got = b.service_account(org_a, deploy.id).await.unwrap().expect("sa");
    assert_eq!(
        (
            got.cidrs.as_str(),
            got.cert_spki_sha256.as_deref(),
            got.cert_subject_cn.as_deref()
        ),
        ("10.0.0.0/8", Some(spki.as_str()), Some("ci"))
    );
    assert!(b.service_account(org_b, deploy.id).await.unwrap().is_none());

    let mut sa_token = token(1);
    sa_token.policy = "service_account".into();
    sa_token.principal_id = Some(deploy.id);
    sa_token.org_id = Some(org_a);
    b.create_token(&sa_token).await.unwrap();
    let mut other_token = token(2);
    other_token.policy = "service_account".into();
    other_token.principal_id = Some(build.id);
    other_token.org_id = Some(org_a);
    b.create_token(&other_token).await.unwrap();
    b.create_grant(&grant(org_a, "service_account", deploy.id, Some(env_a)))
        .await
        .unwrap();
    b.create_grant(&grant(org_a, "service_account", build.id, None))
        .await
        .unwrap();

    assert!(
        !b.delete_service_account(org_b, deploy.id).await.unwrap(),
        "another org"
    );
    assert!(b.token_by_hash(&[1; 32]).await.unwrap().is_some());
    assert!(b.delete_service_account(org_a, deploy.id).await.unwrap());
    assert!(!b.delete_service_account(org_a, deploy.id).await.unwrap());
    assert!(b.service_account(org_a, deploy.id).await.unwrap().is_none());
    assert!(b.token_by_hash(&[1; 32]).await.unwrap().is_none());
    assert!(b.token_by_hash(&[2; 32]).await.unwrap().is_some());
    let subjects: Vec<Uuid> = b.grants(org_a).await.unwrap().iter().map(|g| g.subject_id).collect();
    assert_eq!(subjects, vec![build.id]);
    // Its certificate is free again.
    b.create_service_account(&sa(org_b, "again", Some(&spki)))
        .await
        .unwrap();
}

#[tokio::test]
async fn grants_round_trip_in_creation_order_and_stay_in_their_org() {
    let (b, _dir) = empty().await;
    let (org_a, env_a) = add_tenant(b.as_ref(), "acme").await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    let project = b.resolve_env("acme", "api", "prod").await.unwrap().unwrap().project_id;
    let subject = Uuid::new_v4();
    let mut late = grant(org_a, "user", subject, Some(env_a));
    late.created_at = 20;
    late.project_id = Some(project);
    late.permissions = 0b1011;
    let mut early = grant(org_a, "group", Uuid::new_v4(), None);
    early.created_at = 10;
    b.create_grant(&late).await.unwrap();
    b.create_grant(&early).await.unwrap();
    let got = b.grants(org_a).await.unwrap();
    assert_eq!(got.iter().map(|g| g.id).collect::<Vec<_>>(), vec![early.id, late.id]);
    let g = &got[1];
    assert_eq!(
        (
            g.subject_kind.as_str(),
            g.subject_id,
            g.project_id,
            g.env_id,
            g.permissions,
            g.created_at
        ),
        ("user", subject, Some(project), Some(env_a), 0b1011, 20)
    );
    assert_eq!((got[0].project_id, got[0].env_id), (None, None));
    assert!(b.grants(org_b).await.unwrap().is_empty());
    assert!(!b.delete_grant(org_b, late.id).await.unwrap(), "another org");
    assert!(b.delete_grant(org_a, late.id).await.unwrap());
    assert!(!b.delete_grant(org_a, late.id).await.unwrap());
    assert_eq!(b.grants(org_a).await.unwrap().len(), 1);
}
