//! `SsoStore`: an organization's OIDC provider, and pending sign-ins taken
//! once.

use coffer::storage::sso::{SsoProviderRow, SsoStateRow};
use uuid::Uuid;

use super::{add_tenant, with_tenant};

fn provider(org: Uuid, issuer: &str) -> SsoProviderRow {
    SsoProviderRow {
        org_id: org,
        display_name: "Acme IdP".into(),
        issuer: issuer.into(),
        client_id: "client".into(),
        client_secret: vec![1, 2, 3, 4],
        kek_version: 1,
        scopes: "openid email".into(),
        allowed_domains: "acme.test".into(),
        groups_claim: "groups".into(),
        sso_required: true,
        break_glass: "ops@acme.test".into(),
        updated_by: "root".into(),
        updated_at: 7,
    }
}

fn state(org: Uuid, hash: u8, expires_at: i64) -> SsoStateRow {
    SsoStateRow {
        state_hash: vec![hash; 32],
        org_id: org,
        nonce: "nonce-value".into(),
        pkce_verifier: "verifier-value".into(),
        redirect_uri: "http://127.0.0.1:1/oidc/callback".into(),
        binding_hash: vec![9; 32],
        purpose: "api".into(),
        expires_at,
        created_at: 10,
    }
}

#[tokio::test]
async fn providers_are_per_organization_and_states_are_taken_once() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    assert_eq!(b.sso_provider(org).await.unwrap(), None);
    let p = provider(org, "https://a.test");
    b.put_sso_provider(&p).await.unwrap();
    b.put_sso_provider(&provider(other, "https://b.test")).await.unwrap();
    assert_eq!(b.sso_provider(org).await.unwrap(), Some(p.clone()));
    assert!(!format!("{p:?}").contains("[1, 2, 3, 4]"), "Debug hides the secret");
    // Replaced, not duplicated.
    let mut p2 = p.clone();
    p2.sso_required = false;
    b.put_sso_provider(&p2).await.unwrap();
    assert_eq!(b.sso_provider(org).await.unwrap(), Some(p2));

    b.insert_sso_state(&state(org, 1, 1_000)).await.unwrap();
    b.insert_sso_state(&state(org, 2, 1_000)).await.unwrap();
    let taken = b.take_sso_state(&[1; 32]).await.unwrap().expect("state");
    assert_eq!(taken, state(org, 1, 1_000));
    assert_eq!(b.take_sso_state(&[1; 32]).await.unwrap(), None, "single use");
    assert_eq!(b.take_sso_state(&[3; 32]).await.unwrap(), None);

    // Removing the provider drops its pending sign-ins, not the other org's.
    assert!(b.delete_sso_provider(org).await.unwrap());
    assert!(!b.delete_sso_provider(org).await.unwrap());
    assert_eq!(b.take_sso_state(&[2; 32]).await.unwrap(), None);
    assert!(b.sso_provider(other).await.unwrap().is_some());
}

/// Re-wrap of the client secret: a compare-and-set on the KEK version.
#[tokio::test]
async fn the_client_secret_is_resealed_only_from_the_version_it_was_read_with() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    b.put_sso_provider(&provider(org, "https://a.test")).await.unwrap();
    b.put_sso_provider(&provider(other, "https://b.test")).await.unwrap();
    assert!(!b.reseal_sso_secret(org, &[9], 3, 2).await.unwrap(), "stale expect");
    assert!(b.reseal_sso_secret(org, &[5, 6], 2, 1).await.unwrap());
    let got = b.sso_provider(org).await.unwrap().expect("provider");
    assert_eq!((got.client_secret, got.kek_version), (vec![5, 6], 2));
    let untouched = b.sso_provider(other).await.unwrap().expect("provider");
    assert_eq!((untouched.client_secret, untouched.kek_version), (vec![1, 2, 3, 4], 1));
}
