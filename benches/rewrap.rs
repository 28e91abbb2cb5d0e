//! Re-wrap throughput: how many DEKs per second `rewrap` moves from an old
//! KEK version to the new one, on a table of `REWRAP_ROWS` secret versions
//! (default 1,000,000). Target: ≥ 20,000 DEKs/s.
//!
//! ```sh
//! cargo bench --bench rewrap                                    # SQLite, 1M rows
//! BACKEND=postgres PG_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench rewrap
//! REWRAP_ROWS=100000 REWRAP_BATCH=5000 cargo bench --bench rewrap
//! ```
//!
//! Seeding writes real rows (every DEK wrapped under KEK v1 with its row's
//! AAD, values encrypted) straight through SQL for speed; the measured part
//! is the service's `rewrap_batch` loop, exactly what each
//! `POST …/keks/rewrap` request runs (HTTP framing excluded: one request per
//! batch of 5,000). Afterwards every row must reference KEK v2 and a sample
//! of values must decrypt. Prints one `RESULT {json}` line.

use std::sync::Arc;
use std::time::Instant;

use coffer::keys::{Keyring, ValueRow, encrypt_value};
use coffer::secure_mem::KeyBytes;
use coffer::service::Coffer;
use coffer::storage::{Backend, EnvRow, KekRow, KeyringRow, OrgRow, ProjectRow, TenantStore, TokenRow};
use sha2::Digest;
use sqlx::Connection;
use uuid::Uuid;

const VERSIONS_PER_SECRET: usize = 1000;
const INSERT_ROWS: usize = 500;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The store to seed: `REWRAP_URL` as given (bench/rewrap.sh makes and drops
/// a schema), else a fresh SQLite file, or with `BACKEND=postgres` a fresh
/// schema of `PG_URL` that is dropped after a successful run (returned).
async fn storage_url(dir: &std::path::Path) -> (String, Option<(String, String)>) {
    if let Some(url) = std::env::var("REWRAP_URL").ok().filter(|u| !u.is_empty()) {
        return (url, None);
    }
    if std::env::var("BACKEND").as_deref() != Ok("postgres") {
        return (format!("sqlite://{}", dir.join("rewrap.db").display()), None);
    }
    let base = std::env::var("PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&base).await.expect("connect to PG_URL");
    let schema = format!("bench_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create schema");
    eprintln!("PostgreSQL schema {schema} (dropped after a successful run)");
    let url = format!("{base}?options=-c%20search_path%3D{schema}");
    (url, Some((base, schema)))
}

#[allow(clippy::expect_used, clippy::unwrap_used)]
fn main() {
    let rows = env_usize("REWRAP_ROWS", 1_000_000);
    let batch = env_usize("REWRAP_BATCH", 5_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = coffer::secure_mem::harden_process(true);
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async move {
        let (url, schema) = storage_url(dir.path()).await;
        let store = coffer::storage::open(&url).await.expect("open storage");
        let backend = store.kind();

        // A keyring we hold the keys of: root under a known unseal key.
        let unseal_key = KeyBytes::random().expect("key");
        let share = unseal::split(unseal_key.expose(), 1, 1).expect("split").remove(0).to_hex();
        let (ring, blob) = Keyring::generate(&unseal_key).expect("keyring");
        let token = "cfr_bench_token";
        store
            .init_keyring(
                &KeyringRow {
                    seal_type: "shamir".into(),
                    secret_shares: 1,
                    secret_threshold: 1,
                    encrypted_root: blob.encrypted_root,
                    verify_tag: blob.verify_tag,
                    created_at: 0,
                },
                &TokenRow {
                    accessor: "bench".into(),
                    token_hash: sha2::Sha256::digest(token.as_bytes()).to_vec(),
                    policy: "root".into(),
                    display_name: "bench".into(),
                    created_at: 0,
                    expires_at: None,
                    principal_id: None,
                    org_id: None,
                    bound_spki: None,
                    family_id: None,
                    parent_accessor: None,
                    auth_at: None,
                },
            )
            .await
            .expect("init");
        let org = Uuid::new_v4();
        let wrapped = ring.new_kek(org, 1).expect("kek");
        let kek = ring.cached_kek(org, 1).expect("cached");
        store
            .create_org(
                &OrgRow { id: org, slug: "bench".into(), name: "Bench".into(), created_at: 0 },
                &KekRow { org_id: org, version: 1, wrapped_key: wrapped, created_at: 0 },
                None,
            )
            .await
            .expect("org");
        let project = Uuid::new_v4();
        store
            .create_project(&ProjectRow { id: project, org_id: org, slug: "p".into(), name: "P".into(), created_at: 0 })
            .await
            .expect("project");
        let env = Uuid::new_v4();
        store
            .create_env(&EnvRow {
                id: env,
                org_id: org,
                project_id: project,
                slug: "e".into(),
                name: "E".into(),
                protected: false,
                created_at: 0,
            })
            .await
            .expect("env");

        // Seed: secrets of VERSIONS_PER_SECRET versions each, in big transactions.
        let seed_start = Instant::now();
        let pool = store.pool().clone();
        let secrets = rows.div_ceil(VERSIONS_PER_SECRET);
        // PostgreSQL: the pool's sessions run as coffer_app, under row-level
        // security; a transaction sees and writes the org's rows only while
        // it acts for it.
        let postgres = backend == "postgres";
        let begin = || async {
            let mut tx = pool.begin().await.unwrap();
            if postgres {
                sqlx::query("SELECT set_config('coffer.org_id', $1, true)")
                    .bind(org.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx
        };
        let mut tx = begin().await;
        for s in 0..secrets {
            let sid = Uuid::new_v4();
            let n = VERSIONS_PER_SECRET.min(rows - s * VERSIONS_PER_SECRET);
            sqlx::query(
                "INSERT INTO secrets (id, org_id, env_id, key, type, description, current_version, deleted_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'text', '', $5, NULL, 0, 0)",
            )
            .bind(sid.to_string())
            .bind(org.to_string())
            .bind(env.to_string())
            .bind(format!("S{s}"))
            .bind(n as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
            let mut v = 1;
            while v <= n {
                let chunk = INSERT_ROWS.min(n - v + 1);
                let mut sql = String::from(
                    "INSERT INTO secret_versions (id, org_id, secret_id, version, type, ciphertext, wrapped_dek, kek_version, created_by, created_at) VALUES ",
                );
                for i in 0..chunk {
                    let p = 4 * i;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("(${}, $1, $2, ${}, 'text', ${}, ${}, 1, 'bench', 0)", p + 3, p + 4, p + 5, p + 6));
                }
                let mut q = sqlx::query::<sqlx::Any>(sqlx::AssertSqlSafe(sql)).bind(org.to_string()).bind(sid.to_string());
                for i in 0..chunk {
                    let version = (v + i) as i64;
                    let row = ValueRow { org_id: org, env_id: env, secret_id: sid, version_id: Uuid::new_v4(), version };
                    let sealed = encrypt_value(&kek, &row, format!("value-{s}-{version}").as_bytes()).unwrap();
                    q = q.bind(row.version_id.to_string()).bind(version).bind(sealed.ciphertext).bind(sealed.wrapped_dek);
                }
                q.execute(&mut *tx).await.unwrap();
                v += chunk;
            }
            if s % 20 == 19 {
                tx.commit().await.unwrap();
                tx = begin().await;
                eprint!("\rseeded {}/{rows}", (s + 1) * VERSIONS_PER_SECRET);
            }
        }
        tx.commit().await.unwrap();
        let seed_s = seed_start.elapsed().as_secs_f64();
        eprintln!("\rseeded {rows} versions in {seed_s:.1} s");
        drop(ring);

        // The measured part: a server-side service, unsealed, rotating and re-wrapping.
        let coffer = Coffer::load(Arc::new(store)).await.expect("load");
        coffer.operator.unseal(&share).await.expect("unseal");
        let who = coffer
            .identity
            .authenticate(&coffer::service::Caller {
                token: Some(token),
                source: None,
                cert: None,
                org_hint: None,
            })
            .await
            .expect("root");
        coffer.keys.rotate_kek(&who, "bench").await.expect("rotate");
        let start = Instant::now();
        let mut moved = 0u64;
        let mut batches = 0u64;
        loop {
            let b = coffer.keys.rewrap_batch(&who, "bench", batch).await.expect("batch");
            moved += b.rewrapped;
            batches += 1;
            if b.done {
                break;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let rate = moved as f64 / secs;
        eprintln!("rewrapped {moved} DEKs in {secs:.2} s: {rate:.0} DEKs/s ({batches} batches of {batch})");
        assert_eq!(moved as usize, rows, "every DEK moved");
        let keks = coffer.keys.list_keks(&who, "bench").await.expect("keks");
        assert!(keks.iter().all(|k| k.active || k.references == 0), "nothing left under v1");
        for s in [0, secrets / 2, secrets - 1] {
            let v = coffer.secrets.get_secret(&who, ("bench", "p", "e"), &format!("S{s}"), true).await.expect("reveal");
            assert_eq!(v.value.as_ref().map(|s| s.as_str()), Some(format!("value-{s}-{}", v.version).as_str()));
        }
        println!(
            "RESULT {{\"figure\":\"rewrap_deks_per_s\",\"backend\":\"{backend}\",\"rows\":{rows},\"batch\":{batch},\"seconds\":{secs:.3},\"deks_per_s\":{rate:.0},\"target\":20000,\"pass\":{}}}",
            rate >= 20_000.0
        );
        drop(coffer);
        if let Some((base, schema)) = schema {
            let mut conn = sqlx::AnyConnection::connect(&base).await.expect("connect to PG_URL");
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await
                .expect("drop schema");
        }
    });
}
