//! `IdentityStore`: users, tokens, login sessions (refresh families), device
//! codes, recovery codes, expiry.

use std::sync::Arc;

use coffer::storage::{Backend, DeviceRow, RefreshRow, RefreshUse, StorageError};
use uuid::Uuid;

use super::{add_tenant, empty, token, user, user_token};

fn refresh(hash: u8, family: &str, user_id: Uuid, expires_at: i64) -> RefreshRow {
    RefreshRow {
        token_hash: vec![hash; 32],
        family_id: family.into(),
        user_id,
        expires_at,
        created_at: 1,
        auth_at: 1,
    }
}

fn device(hash: u8, user_code: &str, expires_at: i64) -> DeviceRow {
    DeviceRow {
        device_hash: vec![hash; 32],
        user_code: user_code.into(),
        user_id: None,
        status: "pending".into(),
        interval_s: 5,
        last_poll: 0,
        expires_at,
        family_id: None,
        auth_at: None,
        client_agent: "coffer-cli/1.0".into(),
        client_ip: "192.0.2.7".into(),
    }
}

async fn tokens_of(b: &dyn Backend, user_id: Uuid) -> Vec<String> {
    let mut acc: Vec<String> = b
        .list_tokens(Some(user_id))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.accessor)
        .collect();
    acc.sort();
    acc
}

#[tokio::test]
async fn tokens_are_found_by_hash_and_accessor_and_listed_per_principal() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    let mut t1 = user_token("t1", 1, alice.id, Some("f1"), None);
    t1.created_at = 20;
    t1.expires_at = Some(99);
    t1.bound_spki = Some("ab".repeat(32));
    t1.auth_at = Some(7);
    let mut t2 = user_token("t2", 2, alice.id, None, Some("t1"));
    t2.created_at = 10;
    b.create_token(&t1).await.unwrap();
    b.create_token(&t2).await.unwrap();
    b.create_token(&token(3)).await.unwrap();
    // Every column round-trips.
    let got = b.token_by_hash(&[1; 32]).await.unwrap().expect("by hash");
    assert_eq!(
        (
            got.accessor.as_str(),
            got.policy.as_str(),
            got.principal_id,
            got.expires_at,
            got.family_id.as_deref(),
            got.auth_at
        ),
        ("t1", "user", Some(alice.id), Some(99), Some("f1"), Some(7))
    );
    assert_eq!(got.bound_spki, Some("ab".repeat(32)));
    let by_acc = b.token_by_accessor("t2").await.unwrap().expect("by accessor");
    assert_eq!(
        (by_acc.token_hash, by_acc.parent_accessor.as_deref()),
        (vec![2; 32], Some("t1"))
    );
    assert!(b.token_by_hash(&[9; 32]).await.unwrap().is_none());
    assert!(b.token_by_accessor("nope").await.unwrap().is_none());
    // A token with a taken hash or accessor is a conflict.
    let dup_hash = user_token("t9", 1, alice.id, None, None);
    assert!(matches!(
        b.create_token(&dup_hash).await,
        Err(StorageError::Conflict(_))
    ));
    let dup_acc = user_token("t1", 8, alice.id, None, None);
    assert!(matches!(b.create_token(&dup_acc).await, Err(StorageError::Conflict(_))));
    // Per principal, oldest first; None lists every token.
    let listed: Vec<String> = b
        .list_tokens(Some(alice.id))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.accessor)
        .collect();
    assert_eq!(listed, vec!["t2", "t1"]);
    assert_eq!(b.list_tokens(None).await.unwrap().len(), 3);
    assert!(b.list_tokens(Some(Uuid::new_v4())).await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_token_deletes_what_was_derived_from_it_transitively() {
    let (b, _dir) = empty().await;
    let u = Uuid::new_v4();
    // a ← b ← c, a ← d; e unrelated.
    for (acc, hash, parent) in [
        ("a", 1, None),
        ("b", 2, Some("a")),
        ("c", 3, Some("b")),
        ("d", 4, Some("a")),
        ("e", 5, None),
    ] {
        b.create_token(&user_token(acc, hash, u, None, parent)).await.unwrap();
    }
    assert_eq!(b.delete_token_tree("b").await.unwrap(), 2);
    assert_eq!(tokens_of(b.as_ref(), u).await, vec!["a", "d", "e"]);
    assert_eq!(b.delete_token_tree("a").await.unwrap(), 2);
    assert_eq!(tokens_of(b.as_ref(), u).await, vec!["e"]);
    assert_eq!(b.delete_token_tree("a").await.unwrap(), 0);
}

#[tokio::test]
async fn revoking_a_family_ends_its_tokens_refresh_tokens_and_approved_devices() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_token(&user_token("f1-a", 1, alice.id, Some("f1"), None))
        .await
        .unwrap();
    b.create_token(&user_token("f2-a", 2, alice.id, Some("f2"), None))
        .await
        .unwrap();
    b.create_refresh(&refresh(11, "f1", alice.id, i64::MAX)).await.unwrap();
    b.create_refresh(&refresh(12, "f2", alice.id, i64::MAX)).await.unwrap();
    b.create_device(&device(21, "AAAA-BBBB", i64::MAX)).await.unwrap();
    assert!(b.approve_device("AAAA-BBBB", alice.id, "f1", 5, 10).await.unwrap());
    b.create_device(&device(22, "CCCC-DDDD", i64::MAX)).await.unwrap();
    assert!(b.approve_device("CCCC-DDDD", alice.id, "f2", 5, 10).await.unwrap());

    b.revoke_family("f1").await.unwrap();
    assert_eq!(tokens_of(b.as_ref(), alice.id).await, vec!["f2-a"]);
    assert!(matches!(
        b.spend_refresh(&[11; 32]).await.unwrap(),
        RefreshUse::Reused(_)
    ));
    assert!(matches!(
        b.spend_refresh(&[12; 32]).await.unwrap(),
        RefreshUse::Fresh(_)
    ));
    let denied = b.device_by_user_code("AAAA-BBBB").await.unwrap().expect("device");
    assert_eq!(denied.status, "denied");
    assert!(
        !b.finish_device(&[21; 32]).await.unwrap(),
        "a denied device login cannot finish"
    );
    let other = b.device_by_user_code("CCCC-DDDD").await.unwrap().expect("device");
    assert_eq!(other.status, "approved");
}

#[tokio::test]
async fn revoking_user_sessions_keeps_only_the_named_family() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    let bob = user("bob@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_user(&bob).await.unwrap();
    b.create_token(&user_token("keep", 1, alice.id, Some("f-keep"), None))
        .await
        .unwrap();
    b.create_token(&user_token("old", 2, alice.id, Some("f-old"), None))
        .await
        .unwrap();
    b.create_token(&user_token("plain", 3, alice.id, None, None))
        .await
        .unwrap();
    // Derived from "old" by someone else's principal: goes with it.
    let mut derived = token(4);
    derived.accessor = "derived".into();
    derived.parent_accessor = Some("old".into());
    b.create_token(&derived).await.unwrap();
    b.create_token(&user_token("bob", 5, bob.id, Some("f-bob"), None))
        .await
        .unwrap();
    b.create_refresh(&refresh(11, "f-keep", alice.id, i64::MAX))
        .await
        .unwrap();
    b.create_refresh(&refresh(12, "f-old", alice.id, i64::MAX))
        .await
        .unwrap();
    b.create_refresh(&refresh(13, "f-bob", bob.id, i64::MAX)).await.unwrap();
    b.create_device(&device(21, "AAAA-BBBB", i64::MAX)).await.unwrap();
    assert!(b.approve_device("AAAA-BBBB", alice.id, "f-old", 5, 10).await.unwrap());

    assert_eq!(b.revoke_user_sessions(alice.id, Some("f-keep")).await.unwrap(), 3);
    assert_eq!(tokens_of(b.as_ref(), alice.id).await, vec!["keep"]);
    assert!(b.token_by_accessor("derived").await.unwrap().is_none());
    assert!(
        b.token_by_accessor("bob").await.unwrap().is_some(),
        "another user's session stays"
    );
    assert!(matches!(
        b.spend_refresh(&[12; 32]).await.unwrap(),
        RefreshUse::Reused(_)
    ));
    assert!(matches!(
        b.spend_refresh(&[11; 32]).await.unwrap(),
        RefreshUse::Fresh(_)
    ));
    assert!(matches!(
        b.spend_refresh(&[13; 32]).await.unwrap(),
        RefreshUse::Fresh(_)
    ));
    assert_eq!(
        b.device_by_user_code("AAAA-BBBB")
            .await
            .unwrap()
            .expect("device")
            .status,
        "denied"
    );
    // Without a family to keep, everything goes.
    assert_eq!(b.revoke_user_sessions(alice.id, None).await.unwrap(), 1);
    assert!(b.list_tokens(Some(alice.id)).await.unwrap().is_empty());
}

#[tokio::test]
async fn users_are_created_once_per_email_and_updated_in_place() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    let again = user("alice@example.com");
    assert!(matches!(b.create_user(&again).await, Err(StorageError::Conflict(_))));
    assert!(b.user(again.id).await.unwrap().is_none());
    let got = b.user_by_email("alice@example.com").await.unwrap().expect("by email");
    assert_eq!(got.id, alice.id);
    assert!(
        b.user_by_email("ALICE@example.com").await.unwrap().is_none(),
        "the lookup is exact (the service lower-cases)"
    );
    assert!(b.user(Uuid::new_v4()).await.unwrap().is_none());

    b.set_password(alice.id, "$argon2id$new").await.unwrap();
    b.set_login_state(alice.id, 3, 500).await.unwrap();
    b.set_totp(alice.id, Some(&[7u8; 20][..]), true).await.unwrap();
    let got = b.user(alice.id).await.unwrap().unwrap();
    assert_eq!(
        (
            got.password_hash.as_str(),
            got.failed_logins,
            got.locked_until,
            got.totp_secret.clone(),
            got.totp_enabled
        ),
        ("$argon2id$new", 3, 500, Some(vec![7; 20]), true)
    );
    // A lock only ever grows.
    b.lock_user_until(alice.id, 400).await.unwrap();
    assert_eq!(b.user(alice.id).await.unwrap().unwrap().locked_until, 500);
    b.lock_user_until(alice.id, 900).await.unwrap();
    assert_eq!(b.user(alice.id).await.unwrap().unwrap().locked_until, 900);
    b.set_totp(alice.id, None, false).await.unwrap();
    let got = b.user(alice.id).await.unwrap().unwrap();
    assert_eq!((got.totp_secret, got.totp_enabled), (None, false));

    assert!(b.set_user_disabled(alice.id, true).await.unwrap());
    assert!(b.user(alice.id).await.unwrap().unwrap().disabled);
    assert!(b.set_user_disabled(alice.id, false).await.unwrap());
    assert!(!b.user(alice.id).await.unwrap().unwrap().disabled);
    assert!(!b.set_user_disabled(Uuid::new_v4(), true).await.unwrap());
}

#[tokio::test]
async fn deleting_a_user_removes_every_row_naming_it() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    let bob = user("bob@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_user(&bob).await.unwrap();
    let (org_a, _) = add_tenant(b.as_ref(), "acme").await;
    let (org_b, _) = add_tenant(b.as_ref(), "beta").await;
    for org in [org_a, org_b] {
        b.set_membership(org, alice.id, "admin", 1).await.unwrap();
        b.set_membership(org, bob.id, "member", 1).await.unwrap();
        let g = super::access::group(org, "ops");
        b.create_group(&g).await.unwrap();
        b.add_group_member(org, g.id, alice.id).await.unwrap();
        b.add_group_member(org, g.id, bob.id).await.unwrap();
        b.create_grant(&super::access::grant(org, "user", alice.id, None))
            .await
            .unwrap();
        b.create_grant(&super::access::grant(org, "user", bob.id, None))
            .await
            .unwrap();
    }
    b.create_token(&user_token("a1", 1, alice.id, Some("fa"), None))
        .await
        .unwrap();
    let mut child = token(2);
    child.parent_accessor = Some("a1".into());
    b.create_token(&child).await.unwrap();
    b.create_token(&user_token("b1", 3, bob.id, None, None)).await.unwrap();
    b.create_refresh(&refresh(11, "fa", alice.id, i64::MAX)).await.unwrap();
    b.set_recovery_codes(alice.id, &[vec![1; 32]]).await.unwrap();
    b.create_device(&device(21, "AAAA-BBBB", i64::MAX)).await.unwrap();
    assert!(b.approve_device("AAAA-BBBB", alice.id, "fa", 5, 10).await.unwrap());

    assert!(b.delete_user(alice.id).await.unwrap());
    assert!(b.user(alice.id).await.unwrap().is_none());
    assert!(b.list_tokens(Some(alice.id)).await.unwrap().is_empty());
    assert!(
        b.token_by_hash(&[2; 32]).await.unwrap().is_none(),
        "derived tokens go too"
    );
    assert!(matches!(b.spend_refresh(&[11; 32]).await.unwrap(), RefreshUse::Unknown));
    assert!(b.device_by_user_code("AAAA-BBBB").await.unwrap().is_none());
    assert!(b.orgs_of(alice.id).await.unwrap().is_empty());
    for org in [org_a, org_b] {
        assert_eq!(b.membership(org, alice.id).await.unwrap(), None);
        assert!(b.user_groups(org, alice.id).await.unwrap().is_empty());
        let grants = b.grants(org).await.unwrap();
        assert_eq!(
            grants.iter().map(|g| g.subject_id).collect::<Vec<_>>(),
            vec![bob.id],
            "only bob's grant is left"
        );
        assert_eq!(b.membership(org, bob.id).await.unwrap().as_deref(), Some("member"));
        assert_eq!(b.user_groups(org, bob.id).await.unwrap().len(), 1);
    }
    assert!(b.token_by_accessor("b1").await.unwrap().is_some());
    assert!(!b.delete_user(alice.id).await.unwrap());
}

#[tokio::test]
async fn login_failures_count_atomically_under_concurrency() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let b = Arc::clone(&b);
        tasks.spawn(async move { b.count_login_failure(alice.id).await.unwrap() });
    }
    let mut seen: Vec<i64> = tasks.join_all().await;
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<_>>(), "every failure counts once");
    assert_eq!(b.user(alice.id).await.unwrap().unwrap().failed_logins, 20);
    assert_eq!(b.count_login_failure(Uuid::new_v4()).await.unwrap(), 0, "no such user");
    b.set_login_state(alice.id, 0, 0).await.unwrap();
    assert_eq!(b.count_login_failure(alice.id).await.unwrap(), 1);
}

#[tokio::test]
async fn totp_steps_are_accepted_only_forward() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    assert!(b.use_totp_step(alice.id, 100).await.unwrap());
    assert!(!b.use_totp_step(alice.id, 100).await.unwrap(), "a code works once");
    assert!(!b.use_totp_step(alice.id, 99).await.unwrap(), "no step back");
    assert!(b.use_totp_step(alice.id, 101).await.unwrap());
    assert_eq!(b.user(alice.id).await.unwrap().unwrap().totp_last_step, 101);
    // Racing uses of one step: exactly one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let b = Arc::clone(&b);
        tasks.spawn(async move { b.use_totp_step(alice.id, 200).await.unwrap() });
    }
    let wins = tasks.join_all().await.into_iter().filter(|w| *w).count();
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn recovery_codes_are_single_use_and_replaced_as_a_set() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    let bob = user("bob@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_user(&bob).await.unwrap();
    b.set_recovery_codes(alice.id, &[vec![1; 32], vec![2; 32]])
        .await
        .unwrap();
    assert!(
        !b.use_recovery_code(bob.id, &[1; 32]).await.unwrap(),
        "another user's code"
    );
    assert!(b.use_recovery_code(alice.id, &[1; 32]).await.unwrap());
    assert!(!b.use_recovery_code(alice.id, &[1; 32]).await.unwrap(), "used up");
    assert!(!b.use_recovery_code(alice.id, &[3; 32]).await.unwrap());
    b.set_recovery_codes(alice.id, &[vec![3; 32]]).await.unwrap();
    assert!(!b.use_recovery_code(alice.id, &[2; 32]).await.unwrap(), "replaced");
    assert!(b.use_recovery_code(alice.id, &[3; 32]).await.unwrap());
}

#[tokio::test]
async fn a_refresh_token_is_spent_once_and_reuse_is_detected() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_refresh(&refresh(1, "f1", alice.id, 500)).await.unwrap();
    assert!(matches!(
        b.create_refresh(&refresh(1, "f2", alice.id, 500)).await,
        Err(StorageError::Conflict(_))
    ));
    match b.spend_refresh(&[1; 32]).await.unwrap() {
        RefreshUse::Fresh(r) => assert_eq!(
            (r.family_id.as_str(), r.user_id, r.expires_at, r.auth_at),
            ("f1", alice.id, 500, 1)
        ),
        other => panic!("expected fresh, got {other:?}"),
    }
    match b.spend_refresh(&[1; 32]).await.unwrap() {
        RefreshUse::Reused(r) => assert_eq!(r.family_id, "f1"),
        other => panic!("expected reused, got {other:?}"),
    }
    assert!(matches!(b.spend_refresh(&[9; 32]).await.unwrap(), RefreshUse::Unknown));
    // Concurrent uses: exactly one is fresh.
    b.create_refresh(&refresh(2, "f3", alice.id, 500)).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let b = Arc::clone(&b);
        tasks.spawn(async move { matches!(b.spend_refresh(&[2; 32]).await.unwrap(), RefreshUse::Fresh(_)) });
    }
    assert_eq!(tasks.join_all().await.into_iter().filter(|f| *f).count(), 1);
}

#[tokio::test]
async fn device_logins_are_approved_polled_and_finished_once() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_device(&device(1, "WXYZ-1234", 1_000)).await.unwrap();
    assert!(matches!(
        b.create_device(&device(2, "WXYZ-1234", 1_000)).await,
        Err(StorageError::Conflict(_))
    ));
    let pending = b.device_by_user_code("WXYZ-1234").await.unwrap().expect("device");
    assert_eq!((pending.status.as_str(), pending.user_id), ("pending", None));
    assert!(!b.finish_device(&[1; 32]).await.unwrap(), "not approved yet");
    // Polling records the poll time and returns the row as it was.
    let polled = b.poll_device(&[1; 32], 77).await.unwrap().expect("poll");
    assert_eq!(polled.last_poll, 0);
    assert_eq!(b.poll_device(&[1; 32], 88).await.unwrap().unwrap().last_poll, 77);
    assert!(b.poll_device(&[9; 32], 88).await.unwrap().is_none());
    // Expired: no approval.
    assert!(!b.approve_device("WXYZ-1234", alice.id, "fam", 5, 1_000).await.unwrap());
    assert!(!b.approve_device("NOPE-NOPE", alice.id, "fam", 5, 10).await.unwrap());
    assert!(b.approve_device("WXYZ-1234", alice.id, "fam", 5, 999).await.unwrap());
    assert!(
        !b.approve_device("WXYZ-1234", alice.id, "other", 6, 999).await.unwrap(),
        "approved once"
    );
    let approved = b.poll_device(&[1; 32], 90).await.unwrap().unwrap();
    assert_eq!(
        (
            approved.status.as_str(),
            approved.user_id,
            approved.family_id.as_deref(),
            approved.auth_at
        ),
        ("approved", Some(alice.id), Some("fam"), Some(5))
    );
    assert!(b.finish_device(&[1; 32]).await.unwrap());
    assert!(!b.finish_device(&[1; 32]).await.unwrap(), "finished once");
    assert_eq!(
        b.device_by_user_code("WXYZ-1234").await.unwrap().unwrap().status,
        "done"
    );
}

/// Issue 16: a pending device login can be denied (once, unexpired); its
/// poll then sees `denied`, and it can no longer be approved. The asking
/// client's agent and address are kept.
#[tokio::test]
async fn device_logins_are_denied_once_and_keep_their_client() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    b.create_device(&device(1, "DENY-1234", 1_000)).await.unwrap();
    let row = b.device_by_user_code("DENY-1234").await.unwrap().expect("device");
    assert_eq!(
        (row.client_agent.as_str(), row.client_ip.as_str()),
        ("coffer-cli/1.0", "192.0.2.7")
    );
    assert!(!b.deny_device("DENY-1234", 1_000).await.unwrap(), "expired");
    assert!(!b.deny_device("NOPE-NOPE", 10).await.unwrap());
    assert!(b.deny_device("DENY-1234", 10).await.unwrap());
    assert!(!b.deny_device("DENY-1234", 10).await.unwrap(), "denied once");
    assert!(
        !b.approve_device("DENY-1234", alice.id, "fam", 5, 10).await.unwrap(),
        "no approval after a denial"
    );
    assert_eq!(b.poll_device(&[1; 32], 20).await.unwrap().unwrap().status, "denied");
    assert!(!b.finish_device(&[1; 32]).await.unwrap());
}

#[tokio::test]
async fn purge_expired_removes_only_expired_identity_rows() {
    let (b, _dir) = empty().await;
    let alice = user("alice@example.com");
    b.create_user(&alice).await.unwrap();
    let mut old = user_token("old", 1, alice.id, None, None);
    old.expires_at = Some(99);
    let mut live = user_token("live", 2, alice.id, None, None);
    live.expires_at = Some(101);
    b.create_token(&old).await.unwrap();
    b.create_token(&live).await.unwrap();
    b.create_token(&user_token("forever", 3, alice.id, None, None))
        .await
        .unwrap();
    b.create_refresh(&refresh(11, "f", alice.id, 99)).await.unwrap();
    b.create_refresh(&refresh(12, "f", alice.id, 100)).await.unwrap();
    b.create_device(&device(21, "AAAA-AAAA", 50)).await.unwrap();
    b.create_device(&device(22, "BBBB-BBBB", 200)).await.unwrap();

    assert_eq!(b.purge_expired(100).await.unwrap(), 3);
    assert_eq!(tokens_of(b.as_ref(), alice.id).await, vec!["forever", "live"]);
    assert!(matches!(b.spend_refresh(&[11; 32]).await.unwrap(), RefreshUse::Unknown));
    assert!(matches!(
        b.spend_refresh(&[12; 32]).await.unwrap(),
        RefreshUse::Fresh(_)
    ));
    assert!(b.device_by_user_code("AAAA-AAAA").await.unwrap().is_none());
    assert!(b.device_by_user_code("BBBB-BBBB").await.unwrap().is_some());
    assert_eq!(b.purge_expired(100).await.unwrap(), 0);
}

#[tokio::test]
async fn users_are_listed_by_email() {
    let (b, _dir) = empty().await;
    assert!(b.list_users().await.unwrap().is_empty());
    for email in ["carol@example.com", "alice@example.com", "bob@example.com"] {
        b.create_user(&user(email)).await.unwrap();
    }
    let bob = b.user_by_email("bob@example.com").await.unwrap().expect("bob");
    assert!(b.set_user_disabled(bob.id, true).await.unwrap());
    let all = b.list_users().await.unwrap();
    let got: Vec<(&str, bool)> = all.iter().map(|u| (u.email.as_str(), u.disabled)).collect();
    assert_eq!(
        got,
        [
            ("alice@example.com", false),
            ("bob@example.com", true),
            ("carol@example.com", false)
        ]
    );
    assert_eq!(all[1].id, bob.id);
}
