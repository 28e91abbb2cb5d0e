//! The audit log (issue 4), on the real binary: tampering with the stored
//! chain is found and named by `coffer audit verify`; the database refuses
//! updates and deletes; every route leaves a record; reveals fail closed
//! while the audit store is unavailable and resume without a restart; no
//! secret reaches a record, a sink or a log line; pruning keeps the chain
//! verifiable; security signals are raised.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection, Row};

use crate::util::{self, ENV, Http, Server};

async fn db(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.expect("connect to the store")
}

async fn exec(conn: &mut AnyConnection, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .map(|r| r.rows_affected())
}

async fn scalar(conn: &mut AnyConnection, sql: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut *conn)
        .await
        .expect(sql)
        .try_get::<i64, _>(0)
        .expect("integer")
}

fn coffer(server: &Server, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_TOKEN", token)
        .env("HOME", server.config_path().parent().expect("dir"))
        .output()
        .expect("run coffer")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A booted server with a tenant, a dozen audited requests and a signed
/// checkpoint covering them.
struct Logged {
    url: String,
    server: Server,
    root: Http,
    token: String,
    /// dropped last: the server's log lives in it
    _dir: tempfile::TempDir,
}

/// `audit_keys`: more `[audit]` settings; checkpoints are signed every second.
async fn logged(audit_keys: &str) -> Logged {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let extra = format!("[audit]\ncheckpoint_interval_s = 1\n{audit_keys}");
    let server = Server::start_full(dir.path(), &url, "tls_disable = true", &extra, &[]);
    let anon = server.client(None);
    let (keys, _, token) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let root = anon.with_token(&token);
    util::tenant(&root).await;
    for (k, v) in [("A", "alpha-value"), ("B", "bravo-value"), ("C", "charlie-value")] {
        util::write_secret(&root, ENV, k, v).await;
        root.get(&format!("{ENV}/secrets/{k}?reveal=true")).await;
    }
    anon.get(&format!("{ENV}/secrets/A?reveal=true")).await;
    let mut conn = db(&url).await;
    let head = scalar(&mut conn, "SELECT MAX(seq) FROM audit_log").await;
    assert!(head >= 12, "expected a dozen records, have {head}");
    for _ in 0..100 {
        if scalar(&mut conn, "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").await >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let signed = scalar(&mut conn, "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints").await;
    assert!(signed >= head, "no checkpoint covers record {head} (newest: {signed})");
    let ok = coffer(&server, &token, &["audit", "verify"]);
    assert!(ok.status.success(), "untouched log must verify: {}", out(&ok));
    assert!(out(&ok).contains("audit log OK"), "{}", out(&ok));
    Logged {
        url,
        server,
        root,
        token,
        _dir: dir,
    }
}

/// Let a superuser-like attacker change rows: drop the triggers.
async fn disable_append_only(conn: &mut AnyConnection) {
    if util::storage_kind() == "postgres" {
        exec(conn, "ALTER TABLE audit_log DISABLE TRIGGER USER")
            .await
            .expect("disable");
    } else {
        for t in ["audit_log_no_update", "audit_log_no_delete"] {
            exec(conn, &format!("DROP TRIGGER {t}")).await.expect("drop trigger");
        }
    }
}

/// `coffer audit verify` must fail and name `seq` as the first bad record.
fn assert_broken_at(l: &Logged, seq: i64, why: &str) {
    let o = coffer(&l.server, &l.token, &["audit", "verify"]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(1), "{why}: verify must fail: {text}");
    assert!(
        text.contains(&format!("BROKEN at record {seq}:")),
        "{why}: must name record {seq}: {text}"
    );
}

#[tokio::test]
async fn the_database_refuses_updates_and_deletes() {
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    for sql in [
        "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3",
        "DELETE FROM audit_log WHERE seq = 3",
        "UPDATE audit_checkpoints SET seq = 1",
        "DELETE FROM audit_checkpoints",
    ] {
        let e = exec(&mut conn, sql).await.expect_err(sql);
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    if util::storage_kind() == "postgres" {
        // The application's role has no right to try at all.
        exec(&mut conn, "SET ROLE coffer_app").await.expect("set role");
        let e = exec(&mut conn, "UPDATE audit_log SET actor = 'x' WHERE seq = 3")
            .await
            .expect_err("coffer_app update");
        assert!(e.to_string().contains("permission denied"), "{e}");
        let e = exec(&mut conn, "DELETE FROM audit_log WHERE seq = 3")
            .await
            .expect_err("coffer_app delete");
        assert!(e.to_string().contains("permission denied"), "{e}");
        exec(&mut conn, "RESET ROLE").await.expect("reset role");
    }
    let ok = coffer(&l.server, &l.token, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", out(&ok));
}

#[tokio::test]
async fn a_modified_record_is_named() {
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    disable_append_only(&mut conn).await;
    exec(&mut conn, "UPDATE audit_log SET outcome = 'denied' WHERE seq = 5")
        .await
        .expect("tamper");
    assert_broken_at(&l, 5, "modified");
}

#[tokio::test]
async fn a_deleted_record_is_named() {
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    disable_append_only(&mut conn).await;
    exec(&mut conn, "DELETE FROM audit_log WHERE seq = 6")
        .await
        .expect("tamper");
    assert_broken_at(&l, 6, "deleted");
}

#[tokio::test]
async fn reordered_records_are_named() {
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    disable_append_only(&mut conn).await;
    // Swap records 4 and 7 (their positions, keeping their contents).
    for sql in [
        "UPDATE audit_log SET seq = -4 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 7",
        "UPDATE audit_log SET seq = 7 WHERE seq = -4",
    ] {
        exec(&mut conn, sql).await.expect(sql);
    }
    assert_broken_at(&l, 4, "reordered");
}

#[tokio::test]
async fn an_inserted_record_is_named() {
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    disable_append_only(&mut conn).await;
    // Make room after record 7, then insert a copy of record 7 as record 8.
    for sql in [
        "UPDATE audit_log SET seq = -seq - 1 WHERE seq >= 8",
        "UPDATE audit_log SET seq = -seq WHERE seq < 0",
        "INSERT INTO audit_log (seq, time, request_id, actor_kind, actor, accessor, cert_spki, source, method, \
         action, resource, org, outcome, status, reason, detail, prev_hash, hash) \
         SELECT 8, time, 'forged', actor_kind, 'mallory', accessor, cert_spki, source, method, action, resource, \
         org, outcome, status, reason, detail, hash, hash FROM audit_log WHERE seq = 7",
    ] {
        exec(&mut conn, sql).await.expect(sql);
    }
    assert_broken_at(&l, 8, "inserted");
}

#[tokio::test]
async fn a_record_appended_behind_the_servers_back_is_named() {
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    let head = scalar(&mut conn, "SELECT MAX(seq) FROM audit_log").await;
    // No trigger stops an INSERT: the forged record takes the next position.
    exec(
        &mut conn,
        &format!(
            "INSERT INTO audit_log (seq, time, request_id, actor_kind, actor, accessor, cert_spki, source, method, \
             action, resource, org, outcome, status, reason, detail, prev_hash, hash) \
             SELECT {}, time, 'forged', actor_kind, 'mallory', accessor, cert_spki, source, method, action, \
             resource, org, outcome, status, reason, detail, hash, hash FROM audit_log WHERE seq = {head}",
            head + 1
        ),
    )
    .await
    .expect("append");
    // The server's next record finds its position taken.
    l.root.get(&format!("{ENV}/secrets")).await;
    if util::storage_kind() == "sqlite" {
        assert!(
            l.server.log_text().contains("appended to behind coffer's back"),
            "one SQLite writer: a taken position is an intrusion: {}",
            l.server.log_text()
        );
    }
    assert_broken_at(&l, head + 1, "appended");
}

#[tokio::test]
async fn a_rehashed_history_fails_against_the_signed_checkpoint() {
    use coffer::service::audit::chain::record_hash;
    use coffer::storage::audit::AuditRow;
    let l = logged("").await;
    let mut conn = db(&l.url).await;
    disable_append_only(&mut conn).await;
    // The attacker edits record 3 and recomputes every hash after it, so
    // the chain itself is consistent again; only the signature can tell.
    let head = scalar(&mut conn, "SELECT MAX(seq) FROM audit_log").await;
    let signed = scalar(&mut conn, "SELECT MIN(seq) FROM audit_checkpoints WHERE seq >= 3").await;
    let mut prev: Vec<u8> = sqlx::query("SELECT hash FROM audit_log WHERE seq = 2")
        .fetch_one(&mut conn)
        .await
        .expect("record 2")
        .try_get("hash")
        .expect("hash");
    for seq in 3..=head {
        let r = sqlx::query(
            "SELECT time, request_id, actor_kind, actor, accessor, cert_spki, source, method, action, \
             resource, org, outcome, status, reason, detail FROM audit_log WHERE seq = $1",
        )
        .bind(seq)
        .fetch_one(&mut conn)
        .await
        .expect("row");
        let mut row = AuditRow {
            seq,
            time: r.try_get("time").expect("time"),
            request_id: r.try_get("request_id").expect("c"),
            actor_kind: r.try_get("actor_kind").expect("c"),
            actor: r.try_get("actor").expect("c"),
            accessor: r.try_get("accessor").expect("c"),
            cert_spki: r.try_get("cert_spki").expect("c"),
            source: r.try_get("source").expect("c"),
            method: r.try_get("method").expect("c"),
            action: r.try_get("action").expect("c"),
            resource: r.try_get("resource").expect("c"),
            org: r.try_get("org").expect("c"),
            outcome: r.try_get("outcome").expect("c"),
            status: r.try_get("status").expect("c"),
            reason: r.try_get("reason").expect("c"),
            detail: r.try_get("detail").expect("c"),
            prev_hash: prev.clone(),
            hash: Vec::new(),
        };
        if seq == 3 {
            row.actor = "nobody".into();
        }
        row.hash = record_hash(&row).to_vec();
        sqlx::query("UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(row.actor.clone())
            .bind(row.prev_hash.clone())
            .bind(row.hash.clone())
            .bind(seq)
            .execute(&mut conn)
            .await
            .expect("rewrite");
        prev = row.hash;
    }
    assert_broken_at(&l, signed, "re-hashed");
}

/// Path parameters for the route walk.
const PARAMS: &[(&str, &str)] = &[
    ("{org}", "acme"),
    ("{project}", "api"),
    ("{env}", "production"),
    ("{key}", "A"),
    ("{version}", "1"),
    ("{email}", "nobody@example.com"),
    ("{group}", "nogroup"),
    ("{name}", "nosa"),
    ("{id}", "00000000-0000-0000-0000-000000000000"),
    ("{accessor}", "noaccessor"),
    ("{user}", "nobody"),
    ("{*rest}", "data/acme/api/production/A"),
    ("{*path}", "secret/"),
];

fn fill(template: &str) -> String {
    fill_with(template, str::to_owned)
}

/// `template` with each parameter's value passed through `spell`.
fn fill_with(template: &str, spell: impl Fn(&str) -> String) -> String {
    PARAMS
        .iter()
        .fold(template.to_owned(), |t, (name, value)| t.replace(name, &spell(value)))
}

/// Every byte percent-encoded but `/`, `=` and `&` (the router matches the
/// raw path; handlers decode parameters and queries).
fn percent(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'/' | b'=' | b'&' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn every_route_leaves_a_record_for_allowed_and_denied_requests() {
    use coffer::access::{ENV_ROUTES, Target};
    use coffer::http::routes::{ENV_PREFIX, ROUTE_ACTIONS, RouteAudit};

    let l = logged("").await;
    // Environment routes first, each on a key of its own in the state its
    // target needs, so root's request can succeed.
    let mut routes: Vec<(String, String, String, &str)> = Vec::new(); // method, path, body, action
    for (i, r) in ENV_ROUTES.iter().enumerate() {
        let key = format!("WALK{i}");
        match r.target {
            Target::Env | Target::New | Target::Blocked => {}
            Target::Existing => util::write_secret(&l.root, ENV, &key, "v1").await,
            Target::Deleted => {
                util::write_secret(&l.root, ENV, &key, "v1").await;
                l.root.delete(&format!("{ENV}/secrets/{key}")).await;
            }
        }
        let query = if r.query.is_empty() {
            String::new()
        } else {
            format!("?{}", r.query)
        };
        let body = if r.body.is_empty() { "{}" } else { r.body };
        routes.push((
            r.method.to_owned(),
            format!(
                "{}{query}",
                fill(&format!("{ENV_PREFIX}{}", r.path))
                    .replace("/secrets/A", &format!("/secrets/{key}"))
                    .replace(
                        "/allowed-variables/A",
                        &format!("/allowed-variables/{}", coffer::access::BLOCKED_EXAMPLE)
                    )
            ),
            body.to_owned(),
            r.action(),
        ));
    }
    // The ones that end the session or seal the server go last.
    let last = ["/api/v1/auth/logout", "/v1/sys/seal"];
    let mut tail = Vec::new();
    for (m, p, a) in ROUTE_ACTIONS {
        let action = match a {
            RouteAudit::Public => continue,
            RouteAudit::Action(action) => *action,
            // A read of the KV mount's data is a reveal.
            RouteAudit::Kv => "secret.reveal",
        };
        let method = if *m == "*" { "GET" } else { *m };
        let entry = (method.to_owned(), fill(p), "{}".to_owned(), action);
        if last.contains(p) {
            tail.push(entry);
        } else {
            routes.push(entry);
        }
    }
    tail.sort_by_key(|(_, p, _, _)| last.iter().position(|l| l == p));
    routes.extend(tail);

    let client = reqwest::Client::new();
    let mut sent: Vec<(String, u16, String, &str)> = Vec::new(); // request id, status, method, action
    for (i, (method, path, body, action)) in routes.iter().enumerate() {
        for who in ["anon", "root"] {
            let id = format!("walk-{i}-{who}");
            let mut req = client
                .request(method.parse().expect("method"), format!("{}{path}", l.server.base))
                .header("x-request-id", &id)
                .header("content-type", "application/json")
                .body(body.clone());
            if who == "root" {
                req = req.header("X-Vault-Token", &l.token);
            }
            let res = req.send().await.expect("send");
            let status = res.status().as_u16();
            assert_ne!(
                status,
                500,
                "{method} {path} ({who}) answered 500: {:?}",
                res.text().await
            );
            assert_eq!(
                res.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
                Some(id.as_str()),
                "{method} {path} ({who}): the record's id must come back"
            );
            sent.push((id, status, method.clone(), action));
        }
    }

    let mut conn = db(&l.url).await;
    let mut denied = 0;
    for (id, status, method, action) in &sent {
        // A mutation has a write-ahead record too (outcome `begun`): this is the outcome.
        let r = sqlx::query(
            "SELECT method, action, outcome, status FROM audit_log WHERE request_id = $1 AND outcome <> 'begun'",
        )
        .bind(id.clone())
        .fetch_optional(&mut conn)
        .await
        .expect("query")
        .unwrap_or_else(|| panic!("{method} {action}: request {id} left no audit record"));
        let recorded: String = r.try_get("action").expect("action");
        let family = action.split('.').next().expect("family");
        assert!(
            recorded == *action || recorded.starts_with(&format!("{family}.")),
            "request {id}: recorded {recorded}, route says {action}"
        );
        assert_eq!(r.try_get::<String, _>("method").expect("m"), *method);
        assert_eq!(r.try_get::<i64, _>("status").expect("s"), i64::from(*status), "{id}");
        let outcome: String = r.try_get("outcome").expect("o");
        let expected = match status {
            0..=399 => "allowed",
            401 | 403 | 429 => "denied",
            _ => "error",
        };
        assert_eq!(outcome, expected, "{id} ({action}, {status})");
        if id.ends_with("-anon") && outcome == "denied" {
            denied += 1;
        }
        // Dashboard routes take a session cookie, never a token: root's
        // token is refused there by design (docs/dashboard.md).
        let dashboard = routes.iter().enumerate().any(|(i, (_, p, _, _))| {
            id.starts_with(&format!("walk-{i}-")) && (p.starts_with("/ui/") || p == "/device")
        });
        if id.ends_with("-root") && recorded.starts_with("secret.") && !dashboard {
            assert_eq!(
                outcome, "allowed",
                "{id}: root's {recorded} must succeed on the prepared data"
            );
        }
    }
    assert!(
        denied * 2 > sent.len() / 2,
        "most anonymous requests must be denied ({denied})"
    );
}

/// (action, org, outcome, detail, resource) of every record of one request, in order.
async fn records_of(conn: &mut AnyConnection, id: &str) -> Vec<(String, String, String, String, String)> {
    sqlx::query("SELECT action, org, outcome, detail, resource FROM audit_log WHERE request_id = $1 ORDER BY seq")
        .bind(id.to_owned())
        .fetch_all(&mut *conn)
        .await
        .expect("records")
        .iter()
        .map(|r| {
            let get = |c: &str| r.try_get::<String, _>(c).expect(c);
            (
                get("action"),
                get("org"),
                get("outcome"),
                get("detail"),
                get("resource"),
            )
        })
        .collect()
}

/// (who, method, plain path+query, encoded path+query, body, the key of
/// each spelling where they differ)
type Spellings = (&'static str, String, String, String, String, [String; 2]);

#[tokio::test]
async fn percent_encoded_spellings_leave_the_same_record_as_plain_ones() {
    use coffer::access::{ENV_ROUTES, Target};
    use coffer::http::routes::{ENV_PREFIX, ROUTE_ACTIONS, RouteAudit};

    let l = logged("").await;
    let mut walk: Vec<Spellings> = Vec::new();
    // One spelling of a route: plain, or every parameter and the query
    // percent-encoded.
    let spell = |template: &str, query: &str, key: &str, enc: bool| {
        let f = |v: &str| if enc { percent(v) } else { v.to_owned() };
        let path = fill_with(&template.replace("{key}", &f(key)), f);
        match query {
            "" => path,
            q => format!("{path}?{}", f(q)),
        }
    };
    // Environment routes as root (each spelling on a key of its own, in the
    // state the route's target needs) and anonymously.
    for (i, r) in ENV_ROUTES.iter().enumerate() {
        let body = if r.body.is_empty() { "{}" } else { r.body };
        let template = format!("{ENV_PREFIX}{}", r.path);
        for who in ["root", "anon"] {
            let keys = [format!("PE{i}{who}P"), format!("PE{i}{who}E")];
            for key in &keys {
                match r.target {
                    Target::Env | Target::New | Target::Blocked => {}
                    Target::Existing => util::write_secret(&l.root, ENV, key, "v1").await,
                    Target::Deleted => {
                        util::write_secret(&l.root, ENV, key, "v1").await;
                        l.root.delete(&format!("{ENV}/secrets/{key}")).await;
                    }
                }
            }
            let plain = spell(&template, r.query, &keys[0], false);
            let encoded = spell(&template, r.query, &keys[1], true);
            walk.push((who, r.method.to_owned(), plain, encoded, body.to_owned(), keys));
        }
    }
    // Every other audited route anonymously; its reads as root too (their
    // writes would change the state the second spelling meets).
    for (m, p, a) in ROUTE_ACTIONS {
        if *a == RouteAudit::Public {
            continue;
        }
        let method = if *m == "*" { "GET" } else { *m };
        let (plain, encoded) = (spell(p, "", "A", false), spell(p, "", "A", true));
        walk.push((
            "anon",
            method.to_owned(),
            plain.clone(),
            encoded.clone(),
            "{}".into(),
            Default::default(),
        ));
        if method == "GET" {
            walk.push((
                "root",
                method.to_owned(),
                plain,
                encoded,
                "{}".into(),
                Default::default(),
            ));
        }
    }
    // The KV mount's operations as root: list (query), write, metadata.
    for (method, rest, query, body) in [
        ("GET", "metadata/acme/api/production/", "list=true", "{}"),
        ("GET", "data/acme/api/", "list=true", "{}"),
        ("GET", "metadata/acme/api/production/A", "", "{}"),
        ("GET", "subkeys/acme/api/production/A", "", "{}"),
        ("GET", "data/acme/api/production/A", "version=1", "{}"),
        ("POST", "data/acme/api/production/KVW", "", r#"{"data":{"value":"x"}}"#),
    ] {
        let (plain, encoded) = (
            spell(&format!("/v1/secret/{rest}"), query, "", false),
            spell(&format!("/v1/secret/{}", percent(rest)), query, "", true),
        );
        walk.push((
            "root",
            method.to_owned(),
            plain,
            encoded,
            body.to_owned(),
            Default::default(),
        ));
    }

    let client = reqwest::Client::new();
    let mut conn = db(&l.url).await;
    let mut reveals = 0;
    for (i, (who, method, plain, encoded, body, keys)) in walk.iter().enumerate() {
        let mut ids = Vec::new();
        for (spelling, path) in [("plain", plain), ("encoded", encoded)] {
            let id = format!("pct-{i}-{who}-{spelling}");
            let mut req = client
                .request(method.parse().expect("method"), format!("{}{path}", l.server.base))
                .header("x-request-id", &id)
                .header("content-type", "application/json")
                .body(body.clone());
            if *who == "root" {
                req = req.header("X-Vault-Token", &l.token);
            }
            let status = req.send().await.expect("send").status().as_u16();
            assert_ne!(status, 500, "{method} {path} ({who}) answered 500");
            ids.push(id);
            // A seal ceremony the request may have started must not change
            // what the other spelling meets.
            for (prefix, cancel) in [
                ("/v1/sys/generate-root/", "/v1/sys/generate-root/attempt"),
                ("/v1/sys/generate-root-token/", "/v1/sys/generate-root-token/attempt"),
                ("/v1/sys/rekey/", "/v1/sys/rekey/init"),
                ("/v1/sys/rekey-recovery-key/", "/v1/sys/rekey-recovery-key/init"),
            ] {
                if path.starts_with(prefix) {
                    l.root.delete(cancel).await;
                }
            }
        }
        let a = records_of(&mut conn, &ids[0]).await;
        let mut b = records_of(&mut conn, &ids[1]).await;
        if !keys[1].is_empty() {
            for r in &mut b {
                r.4 = r.4.replace(&keys[1], &keys[0]);
            }
        }
        assert!(!a.is_empty(), "{method} {plain} ({who}) left no record");
        assert_eq!(
            a, b,
            "{who} {method}: {plain} and {encoded} must leave the same records"
        );
        let last = a.last().expect("record");
        let names_org = plain.contains("/orgs/acme") || plain.contains("/acme/api");
        if names_org {
            assert_eq!(
                last.1, "acme",
                "{who} {method} {plain}: the record names the organization"
            );
        }
        if last.0 == "secret.reveal" && last.2 == "allowed" {
            assert_eq!(last.3, r#"{"values":1}"#, "{method} {plain}: a reveal counts its value");
            reveals += 1;
        }
    }
    assert!(
        reveals >= 2,
        "root's native and KV reveals must be in the walk ({reveals})"
    );
}

#[tokio::test]
async fn reveals_fail_closed_while_the_audit_store_is_locked_and_resume_after() {
    let l = logged("timeout_ms = 800\n").await;
    let mut lock = db(&l.url).await;
    let path = format!("{ENV}/secrets/B?reveal=true");
    let (st, body) = l.root.get(&path).await;
    assert_eq!(
        (st.as_u16(), body["data"]["value"].as_str()),
        (200, Some("bravo-value"))
    );

    if util::storage_kind() == "postgres" {
        exec(&mut lock, "BEGIN").await.expect("begin");
        exec(&mut lock, "LOCK TABLE audit_log IN EXCLUSIVE MODE")
            .await
            .expect("lock");
    } else {
        exec(&mut lock, "BEGIN IMMEDIATE")
            .await
            .expect("lock the database for writing");
    }
    let (st, body) = l.root.get(&path).await;
    assert_eq!(st.as_u16(), 503, "{body}");
    assert_eq!(body["code"], "audit_unavailable", "{body}");
    assert!(
        !body.to_string().contains("bravo-value"),
        "the value left unaudited: {body}"
    );
    assert!(
        body["message"].as_str().unwrap_or("").contains("audit log"),
        "the error must say why: {body}"
    );
    let (st, body) = l.root.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(st.as_u16(), 503, "inject must fail closed too: {body}");
    assert!(!body.to_string().contains("value"), "{body}");
    // Public endpoints keep answering.
    let (st, _) = l.root.get("/v1/sys/health").await;
    assert_eq!(st.as_u16(), 200);
    let (st, s) = l.root.get("/v1/sys/seal-status").await;
    assert_eq!((st.as_u16(), &s["sealed"]), (200, &json!(false)));

    exec(&mut lock, "ROLLBACK").await.expect("release");
    let mut resumed = false;
    for _ in 0..100 {
        let (st, body) = l.root.get(&path).await;
        if st == 200 {
            assert_eq!(body["data"]["value"], "bravo-value");
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        resumed,
        "reveals must resume once the audit store is back, without a restart"
    );
    let ok = coffer(&l.server, &l.token, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", out(&ok));
}

#[tokio::test]
async fn writes_are_refused_before_any_change_while_the_audit_store_is_locked() {
    let l = logged("timeout_ms = 800\n").await;
    let kv = "/v1/secret/data/acme/api/production";
    let mut lock = db(&l.url).await;
    if util::storage_kind() == "postgres" {
        exec(&mut lock, "BEGIN").await.expect("begin");
        exec(&mut lock, "LOCK TABLE audit_log IN EXCLUSIVE MODE")
            .await
            .expect("lock");
    } else {
        exec(&mut lock, "BEGIN IMMEDIATE")
            .await
            .expect("lock the database for writing");
    }
    let (st, body) = l
        .root
        .post(&format!("{ENV}/secrets/B"), json!({"value": "changed-unaudited"}))
        .await;
    assert_eq!(
        (st.as_u16(), &body["code"]),
        (503, &json!("audit_unavailable")),
        "{body}"
    );
    let (st, body) = l
        .root
        .post(&format!("{ENV}/secrets/NEW"), json!({"value": "created-unaudited"}))
        .await;
    assert_eq!(st.as_u16(), 503, "native create: {body}");
    let (st, body) = l
        .root
        .post(&format!("{kv}/C"), json!({"data": {"value": "changed-unaudited"}}))
        .await;
    assert_eq!(st.as_u16(), 503, "KV write: {body}");
    assert!(body["errors"][0].as_str().unwrap_or("").contains("audit log"), "{body}");
    let (st, body) = l.root.delete(&format!("{ENV}/secrets/A")).await;
    assert_eq!(st.as_u16(), 503, "delete: {body}");
    exec(&mut lock, "ROLLBACK").await.expect("release");

    // Once the store is back: nothing of the refused writes happened.
    let mut resumed = false;
    for _ in 0..100 {
        let (st, body) = l.root.get(&format!("{ENV}/secrets/B?reveal=true")).await;
        if st == 200 {
            assert_eq!(body["data"]["value"], "bravo-value", "the refused write changed B");
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "service must resume once the audit store is back");
    let (st, body) = l.root.get(&format!("{ENV}/secrets/B/history")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        body["data"].as_array().map(Vec::len),
        Some(1),
        "B must have no new version: {body}"
    );
    let (st, body) = l.root.get(&format!("{ENV}/secrets/NEW")).await;
    assert_eq!(st.as_u16(), 404, "the refused create made NEW: {body}");
    let (st, body) = l.root.get(&format!("{kv}/C")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["data"]["value"], "charlie-value", "{body}");
    assert_eq!(
        body["data"]["metadata"]["version"], 1,
        "C must have no new version: {body}"
    );
    let (st, body) = l.root.get(&format!("{ENV}/secrets/A")).await;
    assert_eq!(st, 200, "the refused delete removed A: {body}");

    // A write now leaves its write-ahead record and its outcome.
    let id = "write-after-lock";
    let res = reqwest::Client::new()
        .post(format!("{}{ENV}/secrets/B", l.server.base))
        .header("x-request-id", id)
        .header("X-Vault-Token", &l.token)
        .json(&json!({"value": "changed-audited"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let mut conn = db(&l.url).await;
    let records = records_of(&mut conn, id).await;
    let outcomes: Vec<(&str, &str)> = records.iter().map(|r| (r.0.as_str(), r.2.as_str())).collect();
    assert_eq!(
        outcomes,
        [("secret.write", "begun"), ("secret.update", "allowed")],
        "{records:?}"
    );
    let ok = coffer(&l.server, &l.token, &["audit", "verify"]);
    assert!(ok.status.success(), "{}", out(&ok));
}

/// Every string in `needles` that occurs in `hay`.
fn leaks<'a>(hay: &str, needles: &'a [String]) -> Vec<&'a str> {
    needles
        .iter()
        .filter(|n| hay.contains(n.as_str()))
        .map(String::as_str)
        .collect()
}

async fn dump_audit(url: &str) -> String {
    let mut conn = db(url).await;
    let rows = sqlx::query(
        "SELECT request_id, actor_kind, actor, accessor, cert_spki, source, method, action, resource, org, \
         outcome, reason, detail FROM audit_log ORDER BY seq",
    )
    .fetch_all(&mut conn)
    .await
    .expect("dump");
    let mut text = String::new();
    for r in rows {
        for i in 0..13 {
            text.push_str(&r.try_get::<String, _>(i).expect("text"));
            text.push('\t');
        }
        text.push('\n');
    }
    text
}

#[tokio::test]
async fn no_secret_reaches_a_record_a_sink_or_a_log_line_and_sighup_reopens_the_file() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let file = dir.path().join("audit.jsonl");
    let extra = format!("[audit]\nfile = \"{}\"\n", file.display());
    let server = Server::start_full(dir.path(), &url, "tls_disable = true", &extra, &[]);
    let anon = server.client(None);
    let (keys, keys_b64, token) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let root = anon.with_token(&token);
    util::tenant(&root).await;
    let mut needles: Vec<String> = keys.iter().chain(&keys_b64).cloned().collect();
    needles.push(token.clone());

    let values = [
        "s3cr3t-db-password-9f1c",
        "sk_live_51HxTESTVALUE",
        "multi\nline-cert-body",
    ];
    for (i, v) in values.iter().enumerate() {
        util::write_secret(&root, ENV, &format!("K{i}"), v).await;
        needles.push((*v).to_owned());
    }
    root.get(&format!("{ENV}/secrets/K0?reveal=true")).await;
    root.post(&format!("{ENV}/inject"), json!({})).await;

    let password = "correct horse battery staple 42";
    util::create_user(&root, "dev@example.com", password).await;
    needles.push(password.to_owned());
    // A failed login with a password that is also a secret.
    let wrong = "wrong-password-0b1d7e";
    anon.post(
        "/api/v1/auth/login",
        json!({"email": "dev@example.com", "password": wrong}),
    )
    .await;
    needles.push(wrong.to_owned());
    // A password typed into the name field (native and Vault userpass):
    // only its length may be recorded.
    let misplaced = "Misplaced-Passw0rd@home";
    anon.post("/api/v1/auth/login", json!({"email": misplaced, "password": "x"}))
        .await;
    let misplaced_vault = "hunter2-typed-as-name";
    anon.post(
        &format!("/v1/auth/userpass/login/{misplaced_vault}"),
        json!({"password": "x"}),
    )
    .await;
    needles.extend([misplaced.to_owned(), misplaced_vault.to_owned()]);
    let session = util::login(&anon, "dev@example.com", password).await;
    for k in ["access_token", "refresh_token"] {
        needles.push(session[k].as_str().expect(k).to_owned());
    }
    let user = anon.with_token(session["access_token"].as_str().expect("token"));
    let enroll = util::ok_data(
        "enroll",
        user.post("/api/v1/auth/totp/enroll", json!({"password": password}))
            .await,
    );
    let seed = enroll["secret"].as_str().expect("totp secret").to_owned();
    needles.push(seed.clone());
    let code = util::totp_at(&util::base32_decode(&seed), util::unix_now() / 30);
    let verified = util::ok_data(
        "totp",
        user.post("/api/v1/auth/totp/verify", json!({ "code": code })).await,
    );
    needles.push(code);
    for c in verified["recovery_codes"].as_array().expect("recovery codes") {
        needles.push(c.as_str().expect("code").to_owned());
    }
    let issued = util::ok_data(
        "token",
        root.post("/api/v1/tokens", json!({"name": "ci", "ttl_seconds": 3600}))
            .await,
    );
    needles.push(issued["token"].as_str().expect("token").to_owned());
    // Another unseal ceremony's shares pass through the audited route too.
    let (st, body) = root.put("/v1/sys/seal", json!({})).await;
    assert_eq!(st.as_u16(), 204, "seal: {body}");
    util::unseal(&anon, &[&keys[1], &keys[2]]).await;

    // Wait for the sink thread to catch up with the store.
    let mut conn = db(&url).await;
    let head = scalar(&mut conn, "SELECT MAX(seq) FROM audit_log").await;
    let mut lines = 0;
    for _ in 0..50 {
        lines = std::fs::read_to_string(&file).unwrap_or_default().lines().count() as i64;
        if lines >= head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lines >= head, "the file sink has {lines} of {head} records");

    let records = dump_audit(&url).await;
    assert!(records.contains("auth.login"), "{records}");
    assert!(
        records.contains("dev@example.com"),
        "failed logins name the account tried"
    );
    for n in [misplaced.len(), misplaced_vault.len()] {
        assert!(
            records.contains(&format!("invalid ({n} chars)")),
            "a name that is no address is recorded as its length ({n}): {records}"
        );
    }
    let sink = std::fs::read_to_string(&file).expect("sink");
    let log = server.log_text();
    assert!(!log.is_empty());
    for (what, text) in [("audit records", &records), ("audit file", &sink), ("server log", &log)] {
        let found = leaks(text, &needles);
        assert!(found.is_empty(), "{what} contain secrets: {found:?}");
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).expect("meta").permissions());
    assert_eq!(mode & 0o777, 0o600, "the audit file is private");

    // logrotate: move the file away, SIGHUP, the next record lands in a new file.
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&file, &rotated).expect("rotate");
    let pid = server.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    root.get(&format!("{ENV}/secrets")).await;
    let mut reopened = false;
    for _ in 0..50 {
        if std::fs::read_to_string(&file).is_ok_and(|t| t.contains("secret.list")) {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened, "after SIGHUP the sink must write to a new {}", file.display());
}

#[tokio::test]
async fn pruning_exports_and_keeps_the_chain_verifiable() {
    let l = logged("retention_days = 0\n").await;
    let export = l.server.config_path().parent().expect("dir").join("export.jsonl");
    let mut conn = db(&l.url).await;
    let before_prune = scalar(&mut conn, "SELECT MAX(seq) FROM audit_log").await;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("time");
    let o = coffer(
        &l.server,
        &l.token,
        &[
            "audit",
            "prune",
            "--before",
            &now,
            "--export",
            export.to_str().expect("path"),
            "--yes",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    let exported = std::fs::read_to_string(&export).expect("export");
    let n = exported.lines().count() as i64;
    assert!(
        n >= before_prune,
        "exported {n} records, expected at least {before_prune}"
    );
    let first: Value = serde_json::from_str(exported.lines().next().expect("line")).expect("json");
    assert_eq!(first["seq"], 1);
    let remaining_min = scalar(&mut conn, "SELECT COALESCE(MIN(seq), 0) FROM audit_log").await;
    assert!(remaining_min == 0 || remaining_min > n, "pruned records are gone");
    l.root.get(&format!("{ENV}/secrets")).await;
    let v = coffer(&l.server, &l.token, &["audit", "verify"]);
    assert!(
        v.status.success(),
        "after pruning the chain still verifies: {}",
        out(&v)
    );
    assert!(
        out(&v).contains(&format!("records through {n} were pruned")),
        "{}",
        out(&v)
    );
    // A second prune of the same records has nothing left to do.
    let again = l.root.post("/api/v1/audit/prune", json!({"through_seq": 1})).await;
    assert_eq!(again.0.as_u16(), 404, "{}", again.1);
    // And nobody but root may prune.
    let (st, _) = l
        .server
        .client(Some("not-a-token"))
        .post("/api/v1/audit/prune", json!({"through_seq": 1}))
        .await;
    assert_eq!(st.as_u16(), 401);
}

#[tokio::test]
async fn security_signals_are_raised() {
    let l = logged("bulk_reveal_threshold = 2\nfailed_login_threshold = 2\n").await;
    let (st, _) = l.root.post(&format!("{ENV}/inject"), json!({})).await;
    assert_eq!(st.as_u16(), 200);
    util::create_user(&l.root, "ops@example.com", "a long enough password 1").await;
    let anon = l.server.client(None);
    for _ in 0..3 {
        anon.post(
            "/api/v1/auth/login",
            json!({"email": "ops@example.com", "password": "nope nope nope"}),
        )
        .await;
    }
    let mut log = String::new();
    for _ in 0..50 {
        log = l.server.log_text();
        if log.contains("bulk reveal") && log.contains("failed logins") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log.contains("security signal: bulk reveal"), "{log}");
    assert!(log.contains("security signal: burst of failed logins"), "{log}");
    assert!(!log.contains("nope nope nope"), "a password reached the log");
}

#[tokio::test]
async fn servers_sharing_one_postgresql_append_to_one_chain() {
    let l = logged("").await;
    // SQLite is one process; on PostgreSQL a second server joins.
    let second = if util::storage_kind() == "postgres" {
        let dir = util::tempdir();
        let s = Server::start_full(dir.path(), &l.url, "tls_disable = true", "", &[]);
        let anon = s.client(None);
        let (st, body) = anon.get("/v1/sys/seal-status").await;
        assert_eq!(st.as_u16(), 200, "{body}");
        Some((s, dir))
    } else {
        None
    };
    let mut clients = vec![l.root.clone()];
    if let Some((s, _)) = &second {
        // The second server stays sealed: its refusals (503) are recorded
        // all the same, interleaved with the first server's records.
        clients.push(s.client(Some(&l.token)));
    }
    let mut tasks = Vec::new();
    for i in 0..40 {
        let c = clients[i % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            c.get(&format!("{ENV}/secrets/A?reveal=true")).await.0.as_u16()
        }));
    }
    for t in tasks {
        let st = t.await.expect("task");
        assert!(st == 200 || st == 503, "status {st}");
    }
    let mut conn = db(&l.url).await;
    let n = scalar(&mut conn, "SELECT COUNT(*) FROM audit_log").await;
    let head = scalar(&mut conn, "SELECT MAX(seq) FROM audit_log").await;
    assert_eq!(n, head, "no gap and no fork: {n} records, head {head}");
    let ok = coffer(&l.server, &l.token, &["audit", "verify"]);
    assert!(ok.status.success(), "one chain from two writers: {}", out(&ok));
    drop(second);
}
