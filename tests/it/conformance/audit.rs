//! `AuditStore` appends: a batch of any size is one atomic INSERT whose
//! rows read back field for field (text with quotes, backslashes, control
//! characters and non-ASCII; hashes as bytes), and a batch that reuses a
//! taken sequence number lands not at all (`Conflict`).

use coffer::storage::StorageError;
use coffer::storage::audit::{AuditFilter, AuditRow};

use super::empty;

fn row(seq: i64, text: &str) -> AuditRow {
    AuditRow {
        seq,
        time: 1_700_000_000_000 + seq,
        request_id: format!("req-{seq}"),
        actor_kind: "user".into(),
        actor: format!("{text}@example.com"),
        accessor: String::new(),
        cert_spki: "ab".repeat(32),
        source: "::1".into(),
        method: "GET".into(),
        action: "secret.reveal".into(),
        resource: format!("/api/v1/orgs/{text}"),
        org: text.into(),
        outcome: "allowed".into(),
        status: 200,
        reason: String::new(),
        detail: "{\"values\":1}".into(),
        prev_hash: vec![(seq as u8).wrapping_sub(1); 32],
        hash: vec![seq as u8; 32],
    }
}

#[tokio::test]
async fn batches_of_any_size_read_back_field_for_field() {
    let (b, _dir) = empty().await;
    let awkward = "q\"u'o\\te\n\t\u{1}é漢🙂";
    let mut seq = 0;
    let mut written = Vec::new();
    for size in [1usize, 2, 9, 64, 65, 300] {
        let batch: Vec<AuditRow> = (0..size)
            .map(|i| {
                seq += 1;
                row(seq, if i % 2 == 0 { awkward } else { "" })
            })
            .collect();
        b.append_audit(&batch).await.expect("append");
        written.extend(batch);
    }
    let read = b.audit_range(0, 10_000).await.expect("range");
    assert_eq!(read.len(), written.len());
    assert_eq!(read, written, "every field reads back as written");
    assert_eq!(b.audit_head().await.expect("head"), Some((seq, vec![seq as u8; 32])));
}

#[tokio::test]
async fn a_batch_with_a_taken_position_lands_not_at_all() {
    let (b, _dir) = empty().await;
    b.append_audit(&[row(1, "a"), row(2, "b")]).await.expect("append");
    // Positions 3 and 4 are free, 2 is taken: nothing of this batch lands.
    let err = b
        .append_audit(&[row(3, "c"), row(2, "x"), row(4, "d")])
        .await
        .expect_err("a taken seq must conflict");
    assert!(matches!(err, StorageError::Conflict(_)), "{err:?}");
    let read = b.audit_range(0, 100).await.expect("range");
    assert_eq!(read.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(read[1].org, "b");
}

/// Issue 16 (the dashboard's audit page): newest first, paged by keyset
/// (`before_seq`), with the filters applied before the limit.
#[tokio::test]
async fn searches_page_newest_first_by_keyset() {
    let (b, _dir) = empty().await;
    let rows: Vec<AuditRow> = (1..=10)
        .map(|seq| {
            let mut r = row(seq, if seq % 2 == 0 { "even" } else { "odd" });
            if seq % 3 == 0 {
                r.action = "secret.list".into();
            }
            r
        })
        .collect();
    b.append_audit(&rows).await.expect("append");
    let page = |before: Option<i64>, org: Option<&str>, action: Option<&str>| AuditFilter {
        org: org.map(str::to_owned),
        action: action.map(str::to_owned),
        before_seq: before,
        newest_first: true,
        limit: 3,
        ..AuditFilter::default()
    };
    let seqs = |v: Vec<AuditRow>| v.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs(b.search_audit(&page(None, None, None)).await.unwrap()), [10, 9, 8]);
    assert_eq!(
        seqs(b.search_audit(&page(Some(8), None, None)).await.unwrap()),
        [7, 6, 5]
    );
    assert_eq!(seqs(b.search_audit(&page(Some(2), None, None)).await.unwrap()), [1]);
    assert_eq!(
        seqs(
            b.search_audit(&page(None, Some("even"), Some("secret.reveal")))
                .await
                .unwrap()
        ),
        [10, 8, 4]
    );
    assert_eq!(
        seqs(
            b.search_audit(&page(Some(4), Some("even"), Some("secret.reveal")))
                .await
                .unwrap()
        ),
        [2]
    );
    // The API's order is unchanged: oldest first.
    let oldest = AuditFilter {
        limit: 2,
        ..AuditFilter::default()
    };
    assert_eq!(seqs(b.search_audit(&oldest).await.unwrap()), [1, 2]);
}
