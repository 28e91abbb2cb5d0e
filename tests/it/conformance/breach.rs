//! `BreachPolicyStore`: the per-organization leaked-password policy.

use uuid::Uuid;

use super::{add_tenant, with_tenant};

#[tokio::test]
async fn the_breach_policy_is_per_organization_and_off_by_default() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    assert!(!b.block_breached_passwords(org).await.unwrap(), "off by default");
    assert!(b.set_block_breached_passwords(org, true).await.unwrap());
    assert!(b.block_breached_passwords(org).await.unwrap());
    assert!(
        !b.block_breached_passwords(other).await.unwrap(),
        "another organization's own policy"
    );
    assert!(b.set_block_breached_passwords(org, false).await.unwrap());
    assert!(!b.block_breached_passwords(org).await.unwrap());
    let unknown = Uuid::new_v4();
    assert!(
        !b.set_block_breached_passwords(unknown, true).await.unwrap(),
        "no such organization"
    );
    assert!(!b.block_breached_passwords(unknown).await.unwrap());
}
