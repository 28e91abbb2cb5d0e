//! `WebhookStore`: hooks per organization and their delivery queue.

use coffer::storage::webhooks::{DeliveryRow, WebhookRow};
use uuid::Uuid;

use super::{add_tenant, with_tenant};

fn hook(org: Uuid, url: &str) -> WebhookRow {
    WebhookRow {
        id: Uuid::new_v4(),
        org_id: org,
        url: url.into(),
        sealed_secret: Some(vec![1, 2, 3]),
        kek_version: Some(1),
        legacy_secret: String::new(),
        events: "approval.requested,approval.applied".into(),
        format: "coffer".into(),
        created_by: "user:a@b".into(),
        created_at: 5,
    }
}

fn delivery(h: &WebhookRow, at: i64) -> DeliveryRow {
    DeliveryRow {
        id: Uuid::new_v4(),
        org_id: h.org_id,
        hook_id: h.id,
        event: "approval.requested".into(),
        body: format!("{{\"n\":{at}}}"),
        attempts: 0,
        next_at: at,
        status: "pending".into(),
        last_status: None,
        last_error: None,
        created_at: at,
        delivered_at: None,
    }
}

#[tokio::test]
async fn hooks_and_deliveries_are_per_organization_and_queued_until_done() {
    let (b, org, _env, _dir) = with_tenant().await;
    let (other, _) = add_tenant(b.as_ref(), "other").await;
    let h = hook(org, "https://a.test/");
    let h2 = hook(other, "https://b.test/");
    b.insert_webhook(&h).await.unwrap();
    b.insert_webhook(&h2).await.unwrap();
    assert_eq!(b.webhooks(org).await.unwrap(), vec![h.clone()]);
    assert!(!format!("{h:?}").contains("whsec_"), "Debug hides the secret");

    let d1 = delivery(&h, 10);
    let d2 = delivery(&h, 20);
    let d3 = delivery(&h2, 15);
    b.insert_deliveries(org, &[d1.clone(), d2.clone()]).await.unwrap();
    b.insert_deliveries(other, std::slice::from_ref(&d3)).await.unwrap();
    // due: by next_at, across organizations, oldest first, with the hook
    let due = b.due_deliveries(16, 10).await.unwrap();
    let ids: Vec<Uuid> = due.iter().map(|(d, _)| d.id).collect();
    assert_eq!(ids, vec![d1.id, d3.id]);
    assert_eq!(due[0].1, h);
    assert_eq!(b.due_deliveries(100, 1).await.unwrap().len(), 1, "limit");

    // a failure waits; a success leaves the queue
    let mut failed = d1.clone();
    failed.attempts = 1;
    failed.next_at = 50;
    failed.last_status = Some(500);
    failed.last_error = Some("receiver answered 500".into());
    assert!(b.update_delivery(&failed).await.unwrap());
    let due: Vec<Uuid> = b
        .due_deliveries(30, 10)
        .await
        .unwrap()
        .iter()
        .map(|(d, _)| d.id)
        .collect();
    assert_eq!(due, vec![d3.id, d2.id]);
    let mut done = failed.clone();
    done.attempts = 2;
    done.status = "delivered".into();
    done.last_status = Some(200);
    done.last_error = None;
    done.delivered_at = Some(60);
    assert!(b.update_delivery(&done).await.unwrap());
    assert!(
        !b.update_delivery(&done).await.unwrap(),
        "only a pending delivery is updated"
    );
    let log = b.deliveries(org, h.id, 10).await.unwrap();
    assert_eq!(
        log.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![d2.id, d1.id],
        "newest first"
    );
    assert_eq!(log[1], done);
    assert!(
        b.deliveries(other, h.id, 10).await.unwrap().is_empty(),
        "another org's view"
    );

    // deleting a hook cancels its pending deliveries, and only in its org
    assert!(!b.delete_webhook(other, h.id).await.unwrap());
    assert!(b.delete_webhook(org, h.id).await.unwrap());
    assert!(b.webhooks(org).await.unwrap().is_empty());
    let due: Vec<Uuid> = b
        .due_deliveries(100, 10)
        .await
        .unwrap()
        .iter()
        .map(|(d, _)| d.id)
        .collect();
    assert_eq!(due, vec![d3.id]);
    let log = b.deliveries(org, h.id, 10).await.unwrap();
    assert_eq!(log[0].status, "cancelled");
}

#[tokio::test]
async fn a_clear_secret_of_an_older_hook_is_sealed_once_and_rewrapped_by_version() {
    let (b, org, _env, _dir) = with_tenant().await;
    let mut legacy = hook(org, "https://old.test/");
    legacy.sealed_secret = None;
    legacy.kek_version = None;
    legacy.legacy_secret = "whsec_legacy".into();
    let sealed = hook(org, "https://new.test/");
    b.insert_webhook(&legacy).await.unwrap();
    b.insert_webhook(&sealed).await.unwrap();
    assert!(!format!("{legacy:?}").contains("whsec_"), "Debug hides the secret");
    assert_eq!(b.legacy_webhooks().await.unwrap(), vec![legacy.clone()]);

    // sealing blanks the clear column, once (compare-and-set on the version)
    assert!(b.seal_webhook_secret(org, legacy.id, &[9, 9], 1, None).await.unwrap());
    assert!(!b.seal_webhook_secret(org, legacy.id, &[8, 8], 1, None).await.unwrap());
    assert!(b.legacy_webhooks().await.unwrap().is_empty());
    let now = b.webhooks(org).await.unwrap();
    let got = now.iter().find(|w| w.id == legacy.id).expect("still there");
    assert_eq!(
        (
            got.sealed_secret.as_deref(),
            got.kek_version,
            got.legacy_secret.as_str()
        ),
        (Some(&[9u8, 9][..]), Some(1), "")
    );
    // a re-wrap applies only from the version it was read with
    assert!(!b.seal_webhook_secret(org, sealed.id, &[7], 3, Some(2)).await.unwrap());
    assert!(b.seal_webhook_secret(org, sealed.id, &[7], 2, Some(1)).await.unwrap());
    let now = b.webhooks(org).await.unwrap();
    let got = now.iter().find(|w| w.id == sealed.id).expect("still there");
    assert_eq!(
        (got.sealed_secret.as_deref(), got.kek_version),
        (Some(&[7u8][..]), Some(2))
    );
}
