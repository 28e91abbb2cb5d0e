//! `JwtAuthStore`: issuers and roles of JWT login, per organization.

use coffer::storage::StorageError;
use coffer::storage::jwt_auth::{JwtIssuerRow, JwtRoleRow};
use uuid::Uuid;

use super::{add_tenant, with_tenant};

fn issuer(org: Uuid, name: &str) -> JwtIssuerRow {
    JwtIssuerRow {
        id: Uuid::new_v4(),
        org_id: org,
        name: name.into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
        preset: "github".into(),
        discovery_url: Some("https://token.actions.githubusercontent.com/.well-known/openid-configuration".into()),
        jwks_url: None,
        jwks: None,
        created_by: "root:root".into(),
        created_at: 7,
    }
}

fn role(i: &JwtIssuerRow, name: &str) -> JwtRoleRow {
    JwtRoleRow {
        id: Uuid::new_v4(),
        org_id: i.org_id,
        name: name.into(),
        issuer_id: i.id,
        audience: "https://coffer.test".into(),
        bound_claims: r#"{"repository":["acme/api"]}"#.into(),
        sa_id: Uuid::new_v4(),
        max_ttl_s: 900,
        created_by: "root:root".into(),
        created_at: 8,
    }
}

#[tokio::test]
async fn jwt_issuers_and_roles_are_per_organization() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    let i = issuer(org, "github");
    let i2 = issuer(other, "github");
    b.insert_jwt_issuer(&i).await.unwrap();
    b.insert_jwt_issuer(&i2).await.unwrap();
    assert!(matches!(
        b.insert_jwt_issuer(&issuer(org, "github")).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(b.jwt_issuers(org).await.unwrap(), vec![i.clone()]);
    assert_eq!(b.jwt_issuer(org, i.id).await.unwrap(), Some(i.clone()));
    assert_eq!(b.jwt_issuer(org, i2.id).await.unwrap(), None, "another org's issuer");

    let r = role(&i, "deploy");
    let r2 = role(&i2, "deploy");
    b.insert_jwt_role(&r).await.unwrap();
    b.insert_jwt_role(&r2).await.unwrap();
    assert!(matches!(
        b.insert_jwt_role(&role(&i, "deploy")).await,
        Err(StorageError::Conflict(_))
    ));
    // A role of another organization's issuer is refused.
    let mut cross = role(&i2, "cross");
    cross.org_id = org;
    assert!(matches!(
        b.insert_jwt_role(&cross).await,
        Err(StorageError::Conflict(_))
    ));
    assert_eq!(b.jwt_roles(org).await.unwrap(), vec![r.clone()]);
    let mut named = b.jwt_roles_named("deploy").await.unwrap();
    named.sort_by_key(|x| x.id);
    let mut want = vec![r.clone(), r2.clone()];
    want.sort_by_key(|x| x.id);
    assert_eq!(named, want, "the name across organizations");

    // An issuer in use cannot go; the role first.
    assert!(matches!(
        b.delete_jwt_issuer(org, i.id).await,
        Err(StorageError::Conflict(_))
    ));
    assert!(!b.delete_jwt_role(other, "nope").await.unwrap());
    assert!(b.delete_jwt_role(org, "deploy").await.unwrap());
    assert!(b.delete_jwt_issuer(org, i.id).await.unwrap());
    assert!(!b.delete_jwt_issuer(org, i.id).await.unwrap());
    assert_eq!(b.jwt_roles_named("deploy").await.unwrap(), vec![r2.clone()]);
    assert_eq!(b.jwt_issuers(other).await.unwrap(), vec![i2]);
}
