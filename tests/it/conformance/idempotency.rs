//! `IdempotencyStore`: one claim per principal and key, answers, release,
//! stale claims, expiry and purge.

use coffer::storage::idempotency::{IdempotencyClaim, IdempotencyRow};

use super::empty;

fn row(principal: &str, key: u8, fp: u8, now: i64) -> IdempotencyRow {
    IdempotencyRow {
        principal: principal.into(),
        key_hash: vec![key; 32],
        fingerprint: vec![fp; 32],
        status: 0,
        content_type: String::new(),
        body: None,
        claimed_at: now,
        expires_at: now + 1000,
    }
}

#[tokio::test]
async fn one_claim_per_principal_and_key_then_its_answer() {
    let (b, _dir) = empty().await;
    let first = row("user:a", 1, 7, 100);
    assert_eq!(
        b.claim_idempotency(&first, 100).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    // The same key again (even with another request): the claimed row.
    match b.claim_idempotency(&row("user:a", 1, 8, 101), 101).await.unwrap() {
        IdempotencyClaim::Exists(r) => {
            assert_eq!(r.fingerprint, vec![7; 32], "the first request's fingerprint");
            assert_eq!((r.status, r.body.as_deref()), (0, None), "still running");
        }
        other => panic!("{other:?}"),
    }
    // Keys are per principal.
    assert_eq!(
        b.claim_idempotency(&row("user:b", 1, 7, 100), 100).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    assert!(
        b.complete_idempotency("user:a", &[1; 32], 201, "application/json", b"sealed-answer")
            .await
            .unwrap()
    );
    assert!(
        !b.complete_idempotency("user:a", &[1; 32], 500, "", b"other")
            .await
            .unwrap(),
        "an answered key is not answered twice"
    );
    let stored = b.idempotency("user:a", &[1; 32]).await.unwrap().unwrap();
    assert_eq!(stored.status, 201);
    assert_eq!(stored.content_type, "application/json");
    assert_eq!(stored.body.as_deref(), Some(&b"sealed-answer"[..]));
    assert!(b.idempotency("user:c", &[1; 32]).await.unwrap().is_none());
}

#[tokio::test]
async fn released_claims_and_expired_rows_can_be_claimed_again() {
    let (b, _dir) = empty().await;
    b.claim_idempotency(&row("root", 2, 1, 100), 100).await.unwrap();
    b.release_idempotency("root", &[2; 32]).await.unwrap();
    assert_eq!(
        b.claim_idempotency(&row("root", 2, 9, 110), 110).await.unwrap(),
        IdempotencyClaim::Claimed,
        "a released key runs again"
    );
    b.complete_idempotency("root", &[2; 32], 200, "", b"x").await.unwrap();
    b.release_idempotency("root", &[2; 32]).await.unwrap();
    assert!(
        b.idempotency("root", &[2; 32]).await.unwrap().is_some(),
        "release never drops an answered key"
    );
    // Expired (expires_at 1110): claimable again, and purged.
    assert_eq!(
        b.claim_idempotency(&row("root", 2, 3, 1200), 1200).await.unwrap(),
        IdempotencyClaim::Claimed
    );
    b.claim_idempotency(&row("root", 3, 3, 10), 10).await.unwrap();
    assert_eq!(
        b.purge_idempotency(1100).await.unwrap(),
        1,
        "only the row that expired at 1010"
    );
    assert!(b.idempotency("root", &[3; 32]).await.unwrap().is_none());
    assert!(b.idempotency("root", &[2; 32]).await.unwrap().is_some());
}

#[tokio::test]
async fn a_stale_claim_is_taken_over_once() {
    let (b, _dir) = empty().await;
    b.claim_idempotency(&row("service_account:s", 4, 1, 100), 100)
        .await
        .unwrap();
    assert!(
        !b.reclaim_idempotency("service_account:s", &[4; 32], 50, 500)
            .await
            .unwrap(),
        "not stale yet"
    );
    assert!(
        b.reclaim_idempotency("service_account:s", &[4; 32], 200, 500)
            .await
            .unwrap()
    );
    assert!(
        !b.reclaim_idempotency("service_account:s", &[4; 32], 200, 501)
            .await
            .unwrap(),
        "the takeover refreshed the claim"
    );
    b.complete_idempotency("service_account:s", &[4; 32], 204, "", b"")
        .await
        .unwrap();
    assert!(
        !b.reclaim_idempotency("service_account:s", &[4; 32], i64::MAX, 600)
            .await
            .unwrap(),
        "an answered key is never taken over"
    );
}
