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
    let server = Server::start(dir, &util::fresh_storage_url(dir).await);
    let anon_http = server.client(None);
    let (keys, _, root_token) = util::init(&anon_http, 3, 2).await;
    util::unseal(&anon_http, &[&keys[0], &keys[1]]).await;
    let http = anon_http.with_token(&root_token);
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
