//! `KeyStore` re-wrap: `stale_deks` finds the DEKs under an older KEK
//! version batch after batch, `replace_deks` moves them with a per-row
//! compare-and-set on the KEK version they were read with and returns the
//! exact number of rows it changed; other organizations' rows are never
//! touched.

use coffer::storage::keystore::DekRow;
use coffer::storage::{Backend, KekRow, SecretRow, VersionRow};
use uuid::Uuid;

use super::{add_tenant, secret, version, with_tenant};

/// `secrets` secrets of `versions` versions each, every DEK under KEK v1.
async fn seed(b: &dyn Backend, org: Uuid, env: Uuid, secrets: usize, versions: i64) -> Vec<(SecretRow, VersionRow)> {
    let mut out = Vec::new();
    for i in 0..secrets {
        let mut s = secret(org, env, &format!("K{i}"), 1);
        for n in 1..=versions {
            s.current_version = n;
            let v = version(&s, n, 1);
            b.put_version(&s, n - 1, &v).await.expect("put version");
            out.push((s.clone(), v));
        }
    }
    out
}

async fn rotate_to_v2(b: &dyn Backend, org: Uuid) {
    b.rotate_kek(&KekRow {
        org_id: org,
        version: 2,
        wrapped_key: vec![8; 61],
        created_at: 2,
    })
    .await
    .expect("rotate");
}

/// The "re-wrapped" DEK of row `id` (any bytes the test can recognise).
fn new_dek(id: Uuid, tag: u8) -> Vec<u8> {
    let mut d = id.as_bytes().to_vec();
    d.extend_from_slice(&[tag; 45]);
    d
}

fn moved(rows: &[DekRow], tag: u8) -> Vec<DekRow> {
    rows.iter()
        .map(|r| DekRow {
            id: r.id,
            kek_version: r.kek_version,
            wrapped_dek: new_dek(r.id, tag),
        })
        .collect()
}

#[tokio::test]
async fn rewrap_batches_move_every_dek_once_with_exact_counts() {
    let (b, org, env, _dir) = with_tenant().await;
    // 520 rows: more than one of SQLite's 250-row statements per batch.
    let rows = seed(b.as_ref(), org, env, 4, 130).await;
    rotate_to_v2(b.as_ref(), org).await;
    let mut seen = std::collections::HashSet::new();
    let mut batches = 0;
    loop {
        let stale = b.stale_deks(org, 2, 300).await.expect("stale");
        if stale.is_empty() {
            break;
        }
        batches += 1;
        assert!(stale.len() <= 300);
        for r in &stale {
            assert_eq!(r.kek_version, 1);
            assert_eq!(r.wrapped_dek, vec![1; 61], "stale_deks returns the stored DEK");
            assert!(seen.insert(r.id), "row {} offered twice", r.id);
        }
        let n = b.replace_deks(org, 2, &moved(&stale, 2)).await.expect("replace");
        assert_eq!(n as usize, stale.len(), "every row of the batch moved");
    }
    assert_eq!((seen.len(), batches), (520, 2));
    let usage = b.kek_usage(org).await.unwrap();
    assert_eq!(
        usage
            .iter()
            .map(|k| (k.version, k.active, k.references))
            .collect::<Vec<_>>(),
        vec![(1, false, 0), (2, true, 520)]
    );
    for (s, v) in &rows {
        let got = b.version(org, s.id, v.version).await.unwrap().expect("version");
        assert_eq!(got.kek_version, 2);
        assert_eq!(got.wrapped_dek, new_dek(v.id, 2));
        assert_eq!(got.ciphertext, v.ciphertext, "re-wrap never touches the ciphertext");
    }
}

#[tokio::test]
async fn replace_deks_changes_only_rows_still_under_the_version_read() {
    let (b, org, env, _dir) = with_tenant().await;
    let rows = seed(b.as_ref(), org, env, 2, 5).await;
    let (other, other_env) = add_tenant(b.as_ref(), "other").await;
    let theirs = seed(b.as_ref(), other, other_env, 1, 3).await;
    rotate_to_v2(b.as_ref(), org).await;
    assert_eq!(b.replace_deks(org, 2, &[]).await.unwrap(), 0);

    let stale = b.stale_deks(org, 2, 100).await.unwrap();
    assert_eq!(stale.len(), 10);
    // A concurrent re-wrap moves three rows first …
    assert_eq!(b.replace_deks(org, 2, &moved(&stale[..3], 7)).await.unwrap(), 3);
    // … so the batch read before it changes the seven others only.
    assert_eq!(b.replace_deks(org, 2, &moved(&stale, 9)).await.unwrap(), 7);
    assert_eq!(
        b.replace_deks(org, 2, &moved(&stale, 9)).await.unwrap(),
        0,
        "nothing left to move"
    );
    for (s, v) in &rows {
        let got = b.version(org, s.id, v.version).await.unwrap().expect("version");
        let first = stale[..3].iter().any(|r| r.id == v.id);
        assert_eq!(got.wrapped_dek, new_dek(v.id, if first { 7 } else { 9 }), "{}", v.id);
        assert_eq!(got.kek_version, 2);
    }
    assert!(b.stale_deks(org, 2, 100).await.unwrap().is_empty());

    // Another organization's rows, named by id: neither moved nor counted.
    let foreign: Vec<DekRow> = theirs
        .iter()
        .map(|(_, v)| DekRow {
            id: v.id,
            kek_version: 1,
            wrapped_dek: new_dek(v.id, 5),
        })
        .collect();
    assert_eq!(b.replace_deks(org, 2, &foreign).await.unwrap(), 0);
    assert!(b.stale_deks(org, 2, 100).await.unwrap().is_empty());
    for (s, v) in &theirs {
        let got = b.version(other, s.id, v.version).await.unwrap().expect("version");
        assert_eq!((got.kek_version, got.wrapped_dek.clone()), (1, vec![1; 61]));
    }
    assert_eq!(b.stale_deks(other, 2, 100).await.unwrap().len(), 3);
}
