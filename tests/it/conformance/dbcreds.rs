//! `DbCredsStore`: database connections, roles and leases per organization.

use coffer::storage::StorageError;
use coffer::storage::dbcreds::{DbConnectionRow, DbLeaseRow, DbRoleRow};
use uuid::Uuid;

use super::{add_tenant, with_tenant};

fn connection(org: Uuid, name: &str) -> DbConnectionRow {
    DbConnectionRow {
        id: Uuid::new_v4(),
        org_id: org,
        name: name.into(),
        project: "api".into(),
        environment: "production".into(),
        display: "postgres://admin@db:5432/app".into(),
        kek_version: 1,
        sealed_url: vec![1, 2, 3],
        created_by: "root:root".into(),
        created_at: 5,
    }
}

fn role(c: &DbConnectionRow, name: &str, kind: &str, next: i64) -> DbRoleRow {
    DbRoleRow {
        id: Uuid::new_v4(),
        org_id: c.org_id,
        name: name.into(),
        connection_id: c.id,
        kind: kind.into(),
        creation_sql: "CREATE ROLE {{name}}".into(),
        revocation_sql: "DROP ROLE {{name}}".into(),
        default_ttl_s: 60,
        max_ttl_s: 120,
        username: "app".into(),
        secret_key: "APP_PW".into(),
        rotation_period_s: if kind == "static" { 10 } else { 0 },
        next_rotation_at: next,
        created_by: "root:root".into(),
        created_at: 5,
    }
}

fn lease(r: &DbRoleRow, expires: i64) -> DbLeaseRow {
    let id = Uuid::new_v4();
    DbLeaseRow {
        id,
        org_id: r.org_id,
        lease_id: format!("database/creds/x/{}/{}", r.name, id.simple()),
        role_id: r.id,
        connection_id: r.connection_id,
        username: format!("v_{}", id.simple()),
        issued_at: 1,
        expires_at: expires,
        max_expires_at: expires + 100,
        status: "active".into(),
        revoked_at: None,
        attempts: 0,
        last_error: None,
        created_by: "root:root".into(),
    }
}

#[tokio::test]
async fn connections_roles_and_leases_are_per_organization() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    let c = connection(org, "main");
    let c2 = connection(other, "main");
    b.insert_db_connection(&c).await.unwrap();
    b.insert_db_connection(&c2).await.unwrap();
    assert!(matches!(
        b.insert_db_connection(&connection(org, "main")).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(b.db_connections(org).await.unwrap(), vec![c.clone()]);
    assert!(!format!("{c:?}").contains("sealed_url"), "Debug hides the sealed URL");

    let dynamic = role(&c, "rw", "dynamic", 0);
    let due = role(&c, "static-due", "static", 50);
    let later = role(&c2, "static-later", "static", 500);
    for r in [&dynamic, &due, &later] {
        b.insert_db_role(r).await.unwrap();
    }
    assert_eq!(b.db_roles(org).await.unwrap().len(), 2);
    let found: Vec<Uuid> = b.due_static_roles(100).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(found, vec![due.id], "due static roles across organizations");
    assert!(b.claim_rotation(org, due.id, 50, 150).await.unwrap());
    assert!(!b.claim_rotation(org, due.id, 50, 150).await.unwrap(), "claimed once");
    assert!(b.due_static_roles(100).await.unwrap().is_empty());

    let l1 = lease(&dynamic, 30);
    let l2 = lease(&dynamic, 10);
    let l3 = lease(&later, 20);
    for l in [&l1, &l2, &l3] {
        b.insert_db_lease(l).await.unwrap();
    }
    let active: Vec<Uuid> = b.active_db_leases().await.unwrap().iter().map(|l| l.id).collect();
    assert_eq!(
        active,
        vec![l2.id, l3.id, l1.id],
        "soonest expiry first, every organization"
    );
    assert!(b.set_lease_expiry(org, l1.id, 40).await.unwrap());
    b.lease_revocation_failed(org, l2.id, "cannot reach").await.unwrap();
    assert!(b.mark_lease_revoked(org, l2.id, 99).await.unwrap());
    assert!(!b.mark_lease_revoked(org, l2.id, 99).await.unwrap(), "revoked once");
    assert!(
        !b.set_lease_expiry(org, l2.id, 50).await.unwrap(),
        "a revoked lease keeps its expiry"
    );
    let mine = b.db_leases(org, 10).await.unwrap();
    assert_eq!(mine.len(), 2);
    let revoked = mine.iter().find(|l| l.id == l2.id).unwrap();
    assert_eq!(
        (revoked.status.as_str(), revoked.revoked_at, revoked.attempts),
        ("revoked", Some(99), 1)
    );
    assert_eq!(mine.iter().find(|l| l.id == l1.id).unwrap().expires_at, 40);
    assert!(b.db_leases(other, 10).await.unwrap().iter().all(|l| l.org_id == other));

    assert!(b.delete_db_role(org, dynamic.id).await.unwrap());
    assert!(
        !b.delete_db_role(other, due.id).await.unwrap(),
        "not another organization's"
    );
    assert!(b.delete_db_connection(org, c.id).await.unwrap());
    assert_eq!(b.db_connections(other).await.unwrap(), vec![c2]);
}

/// Re-wrap of a connection's admin URL: a compare-and-set on the KEK version.
#[tokio::test]
async fn a_connection_is_resealed_only_from_the_version_it_was_read_with() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    let c = connection(org, "main");
    b.insert_db_connection(&c).await.unwrap();
    assert!(
        !b.reseal_db_connection(org, c.id, &[9, 9], 3, 2).await.unwrap(),
        "stale expect"
    );
    assert!(
        !b.reseal_db_connection(other, c.id, &[9, 9], 2, 1).await.unwrap(),
        "another organization"
    );
    assert!(b.reseal_db_connection(org, c.id, &[7, 7, 7], 2, 1).await.unwrap());
    let got = b.db_connections(org).await.unwrap().remove(0);
    assert_eq!((got.sealed_url, got.kek_version), (vec![7, 7, 7], 2));
    assert!(
        !b.reseal_db_connection(org, c.id, &[8], 2, 1).await.unwrap(),
        "moved already"
    );
}
