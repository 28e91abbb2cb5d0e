//! Comparing and promoting between environments (issue 23) on the real
//! binary: `coffer env diff` (computed by the server from the plaintexts,
//! values only with reveal on both and when asked), `coffer secrets copy`
//! (a plan, then one atomic apply).

use serde_json::{Value, json};

use crate::cli_tenants::{ALICE, As, PASSWORD, fails, ok};
use crate::util::{self, Server};

const BOB: &str = "bob@example.com";

/// The values written, none of which may leak into an answer without reveal.
const VALUES: &[(&str, &str, &str)] = &[
    ("dev", "A", "dev-value-of-A-q1"),
    ("dev", "B", "shared-value-of-B-q2"),
    ("dev", "C", "dev-only-C-q3"),
    ("production", "A", "prod-value-of-A-q4"),
    ("production", "B", "shared-value-of-B-q2"),
    ("production", "D", "prod-only-D-q5"),
];

/// (key, status) of a diff answer.
fn statuses(diff: &Value) -> Vec<(String, String)> {
    diff["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A server with acme/api/{dev,production} holding [`VALUES`], Alice (read
/// on both), Bob (read and reveal on dev only); returns root's HTTP client
/// and token too.
async fn setup(dir: &std::path::Path) -> (Server, util::Http, String) {
    setup_at(dir, &util::fresh_storage_url(dir).await).await
}

/// [`setup`] on the store at `url`.
async fn setup_at(dir: &std::path::Path, url: &str) -> (Server, util::Http, String) {
    let server = Server::start(dir, url);
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(&http, "acme", &[("api", &["dev", "production", "staging"])]).await;
    for (env, key, value) in VALUES {
        util::write_secret(&http, &util::env_path("acme", "api", env), key, value).await;
    }
    for email in [ALICE, BOB] {
        util::create_user(&http, email, PASSWORD).await;
        util::add_member(&http, "acme", email, "member").await;
    }
    for env in ["dev", "production"] {
        util::grant(
            &http,
            "acme",
            json!({"user": ALICE, "project": "api", "environment": env, "permissions": ["read"]}),
        )
        .await;
    }
    util::grant(
        &http,
        "acme",
        json!({"user": BOB, "project": "api", "environment": "dev", "permissions": ["read", "reveal"]}),
    )
    .await;
    (server, http, root_token)
}

#[tokio::test]
async fn env_diff_names_keys_and_shows_values_only_with_reveal_on_both() {
    let dir = util::tempdir();
    let (server, http, root_token) = setup(dir.path()).await;
    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    let bob_home = dir.path().join("bob");
    let bob = As::Login(&bob_home);
    ok(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));

    let want = vec![
        ("A".to_owned(), "differs".to_owned()),
        ("B".to_owned(), "equal".to_owned()),
        ("C".to_owned(), "only_in_a".to_owned()),
        ("D".to_owned(), "only_in_b".to_owned()),
    ];
    // Read on both: keys and statuses, never a value.
    let out = ok(&server, &alice, &["env", "diff", "dev", "production", "--json"], "");
    let diff: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(statuses(&diff), want, "{diff}");
    let table = ok(&server, &alice, &["env", "diff", "dev", "production"], "");
    assert!(table.contains("only in dev") && table.contains("differs"), "{table}");
    for (_, _, value) in VALUES {
        assert!(
            !out.contains(value) && !table.contains(value),
            "{value} leaked: {out}\n{table}"
        );
    }
    // Values need reveal on both: Alice has it on neither, Bob on one side
    // (and no read on the other at all).
    let err = fails(&server, &alice, &["env", "diff", "dev", "production", "--values"], "");
    assert!(err.contains("403"), "{err}");
    let err = fails(&server, &bob, &["env", "diff", "dev", "production"], "");
    assert!(err.contains("403"), "{err}");
    let (st, body) = http.get("/api/v1/orgs/acme/projects/api/diff?a=dev&b=nope").await;
    assert_eq!(st, 404, "{body}");

    // Root asks for the values and gets them.
    let out = ok(
        &server,
        &root,
        &["env", "diff", "dev", "production", "--values", "--json"],
        "",
    );
    let diff: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(statuses(&diff), want, "{diff}");
    assert_eq!(diff["keys"][0]["a_value"], "dev-value-of-A-q1", "{diff}");
    assert_eq!(diff["keys"][0]["b_value"], "prod-value-of-A-q4", "{diff}");
    assert_eq!(diff["keys"][3]["a_value"], Value::Null, "{diff}");

    // Audited: the value-less diffs carry no value count, root's does.
    let (st, found) = http.get("/api/v1/audit/records?action=env.diff").await;
    assert_eq!(st, 200, "{found}");
    let recs: Vec<&Value> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "allowed")
        .collect();
    assert_eq!(recs.len(), 3, "{found}");
    assert!(
        recs.iter().any(|r| r["actor"] == "root" && r["detail"]["values"] == 6),
        "{found}"
    );
    assert!(
        recs.iter()
            .filter(|r| r["actor"] == ALICE)
            .all(|r| r["detail"]["values"].is_null()),
        "{found}"
    );
}

/// Make every insert of a version of key `ZZ_FAIL` fail inside the
/// database (`on`), or stop it.
async fn failing_key(url: &str, on: bool) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    let stmts: &[&str] = match (util::storage_kind() == "sqlite", on) {
        (true, true) => &["CREATE TRIGGER copy_boom BEFORE INSERT ON secret_versions \
             WHEN NEW.secret_id IN (SELECT id FROM secrets WHERE key = 'ZZ_FAIL') \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END"],
        (true, false) => &["DROP TRIGGER copy_boom"],
        (false, true) => &[
            "CREATE FUNCTION copy_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.secret_id IN (SELECT id FROM secrets WHERE key = 'ZZ_FAIL') THEN \
             RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER copy_boom BEFORE INSERT ON secret_versions FOR EACH ROW EXECUTE FUNCTION copy_boom()",
        ],
        (false, false) => &["DROP TRIGGER copy_boom ON secret_versions"],
    };
    for s in stmts {
        sqlx::query(sqlx::AssertSqlSafe(*s)).execute(&mut conn).await.expect(s);
    }
    conn.close().await.ok();
}

/// Production's value and number of versions of `key` (None: no such key).
async fn prod(http: &util::Http, key: &str) -> Option<(String, usize)> {
    let env = util::env_path("acme", "api", "production");
    let (st, b) = http.get(&format!("{env}/secrets/{key}?reveal=true")).await;
    if st == 404 {
        return None;
    }
    let (_, h) = http.get(&format!("{env}/secrets/{key}/history")).await;
    Some((
        b["data"]["value"].as_str().expect("value").to_owned(),
        h["data"].as_array().expect("history").len(),
    ))
}

#[tokio::test]
async fn secrets_copy_plans_then_applies_in_one_transaction() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let (server, http, root_token) = setup_at(dir.path(), &url).await;
    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    let bob_home = dir.path().join("bob");
    let bob = As::Login(&bob_home);
    ok(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));
    let copy = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["secrets", "copy", "--from", "dev", "--to", "production"];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect()
    };
    let run = |who: &As<'_>, extra: &[&str], must: bool| -> String {
        let args = copy(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if must {
            ok(&server, who, &args, "")
        } else {
            fails(&server, who, &args, "")
        }
    };
    let untouched = || async {
        assert_eq!(prod(&http, "A").await, Some(("prod-value-of-A-q4".to_owned(), 1)));
        assert_eq!(prod(&http, "C").await, None);
    };

    // Reveal on the source and write on the target are needed, for the
    // plan too: Alice reads only, Bob cannot touch production.
    let err = run(&alice, &["--all", "--dry-run"], false);
    assert!(err.contains("403"), "{err}");
    let err = run(&bob, &["A"], false);
    assert!(err.contains("403"), "{err}");
    untouched().await;

    // The plan: A differs, B is equal, C is new; nothing written.
    let out = run(&root, &["--all", "--dry-run", "--json"], true);
    let plan: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(plan["applied"], false, "{plan}");
    assert_eq!(
        plan["plan"],
        json!([{"key": "A", "action": "updated"}, {"key": "B", "action": "unchanged"},
               {"key": "C", "action": "created"}]),
        "{plan}"
    );
    for (_, _, value) in VALUES {
        assert!(!out.contains(value), "{value} in the plan: {out}");
    }
    untouched().await;
    // A key the source lacks is named.
    let err = run(&root, &["NOPE"], false);
    assert!(err.contains("404") && err.contains("NOPE"), "{err}");

    // Atomic: the store refuses the last write, so none is kept (A's new
    // version was written before it in the same transaction).
    util::write_secret(&http, &util::env_path("acme", "api", "dev"), "ZZ_FAIL", "z").await;
    failing_key(&url, true).await;
    let err = run(&root, &["--all"], false);
    assert!(err.contains("500") || err.contains("error"), "{err}");
    untouched().await;
    assert_eq!(prod(&http, "ZZ_FAIL").await, None);
    failing_key(&url, false).await;

    // Applied: one new version of A, C and ZZ_FAIL created, B untouched.
    let out = run(&root, &["A", "B", "C", "ZZ_FAIL"], true);
    assert!(
        out.contains("Copied dev -> production: 2 created, 1 updated, 1 unchanged"),
        "{out}"
    );
    assert_eq!(prod(&http, "A").await, Some(("dev-value-of-A-q1".to_owned(), 2)));
    assert_eq!(prod(&http, "B").await, Some(("shared-value-of-B-q2".to_owned(), 1)));
    assert_eq!(prod(&http, "C").await, Some(("dev-only-C-q3".to_owned(), 1)));
    assert_eq!(prod(&http, "D").await, Some(("prod-only-D-q5".to_owned(), 1)));
    // Again: nothing to do.
    let out = run(&root, &["--all"], true);
    assert!(out.contains("0 created, 0 updated, 4 unchanged"), "{out}");
    assert_eq!(prod(&http, "A").await, Some(("dev-value-of-A-q1".to_owned(), 2)));
}
