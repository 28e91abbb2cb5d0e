//! Envelope-encryption micro-benchmarks (criterion, no plots, < 1 min).
//!
//! ```sh
//! cargo bench --bench envelope                 # all
//! cargo bench --bench envelope -- decrypt      # a filter
//! ```
//!
//! What one request of the server pays in crypto:
//! - `envelope/decrypt/*`: one reveal = DEK unwrap under the (cached) KEK +
//!   value decryption under the DEK ([`decrypt_value`]); an inject of N
//!   secrets pays it N times;
//! - `envelope/encrypt/*`: one write = fresh DEK + value encryption + DEK wrap
//!   ([`encrypt_value`]);
//! - `kek/unwrap`, `kek/wrap`: a KEK under the root key (KEK cache miss after
//!   unseal / a new KEK); `unwrap_key` returns a fresh guarded key page;
//! - `parts/*` split the cost: a guarded, locked key page (`KeyBytes::zeroed`
//!   and its drop: mprotect, mlock, madvise, munlock, ~10 syscalls) versus
//!   the AES-256-GCM work alone (`aead::open` with an existing key). Since DEKs
//!   use the thread's locked scratch page, `envelope/*` no longer pays the
//!   key page per value; `kek/unwrap` still does.

use std::hint::black_box;
use std::time::Duration;

use coffer::crypto::aead::{self, unwrap_key, wrap_key};
use coffer::keys::{ValueRow, decrypt_value, encrypt_value, kek_aad};
use coffer::secure_mem::KeyBytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use uuid::Uuid;

const SIZES: [(usize, &str); 2] = [(64, "64B"), (4096, "4KiB")];

fn key() -> KeyBytes {
    match KeyBytes::random() {
        Ok(k) => k,
        Err(_) => {
            // No CAP_IPC_LOCK / low memlock limit: allow unlocked key pages
            // (guard pages and zeroization still apply), as disable_mlock does.
            eprintln!("note: key memory cannot be locked here; benchmarking with disable_mlock = true");
            #[allow(clippy::expect_used)]
            coffer::secure_mem::harden_process(true).expect("process hardening");
            #[allow(clippy::expect_used)]
            KeyBytes::random().expect("key page")
        }
    }
}

fn row() -> ValueRow {
    ValueRow {
        org_id: Uuid::new_v4(),
        env_id: Uuid::new_v4(),
        secret_id: Uuid::new_v4(),
        version_id: Uuid::new_v4(),
        version: 7,
    }
}

fn value(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

#[allow(clippy::expect_used)]
fn envelope(c: &mut Criterion) {
    let kek = key();
    let row = row();
    let mut g = c.benchmark_group("envelope");
    for (len, name) in SIZES {
        let plain = value(len);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_with_input(BenchmarkId::new("encrypt", name), &plain, |b, p| {
            b.iter(|| encrypt_value(black_box(&kek), black_box(&row), black_box(p)).expect("encrypt"))
        });
        let sealed = encrypt_value(&kek, &row, &plain).expect("encrypt");
        assert_eq!(
            decrypt_value(&kek, &row, &sealed.ciphertext, &sealed.wrapped_dek)
                .expect("decrypt")
                .as_slice(),
            plain.as_slice()
        );
        g.bench_with_input(BenchmarkId::new("decrypt", name), &sealed, |b, s| {
            b.iter(|| {
                decrypt_value(
                    black_box(&kek),
                    black_box(&row),
                    black_box(&s.ciphertext),
                    black_box(&s.wrapped_dek),
                )
                .expect("decrypt")
            })
        });
    }
    g.finish();
}

#[allow(clippy::expect_used)]
fn kek(c: &mut Criterion) {
    let root = key();
    let kek = key();
    let aad = kek_aad(&Uuid::new_v4(), 1);
    let blob = wrap_key(&root, &aad, &kek);
    let mut g = c.benchmark_group("kek");
    g.bench_function("wrap", |b| {
        b.iter(|| wrap_key(black_box(&root), black_box(&aad), black_box(&kek)))
    });
    g.bench_function("unwrap", |b| {
        b.iter(|| unwrap_key(black_box(&root), black_box(&aad), black_box(&blob)).expect("unwrap"))
    });
    g.finish();
}

#[allow(clippy::expect_used)]
fn parts(c: &mut Criterion) {
    let dek = key();
    let aad = b"value-aad-of-some-row-0123456789";
    let blob = aead::seal(&dek, aad, &value(64));
    let mut g = c.benchmark_group("parts");
    g.bench_function("keypage_alloc_free", |b| {
        b.iter(|| KeyBytes::zeroed().expect("key page"))
    });
    g.bench_function("aes_gcm_open_64B", |b| {
        b.iter(|| aead::open(black_box(&dek), black_box(aad), black_box(&blob)).expect("open"))
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = envelope, kek, parts
}
criterion_main!(benches);
