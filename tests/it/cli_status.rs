//! Small truths of the CLI (issue 23): `secrets history` names who wrote
//! each version (email, service-account name, root) instead of a token
//! accessor; `coffer status` shows the resolved target, the server with its
//! seal state and the identity in one screen, whatever state the server is in.

use serde_json::{Value, json};

use crate::cli_tenants::{ALICE, As, PASSWORD, coffer, json, ok, stdout};
use crate::util::{self, Server};

#[tokio::test]
async fn history_names_the_writer_of_each_version() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(&http, "acme", &[("api", &["staging"])]).await;
    util::create_user(&http, ALICE, PASSWORD).await;
    util::add_member(&http, "acme", ALICE, "member").await;
    util::grant(
        &http,
        "acme",
        json!({"user": ALICE, "project": "api", "environment": "staging",
               "permissions": ["read", "create", "update"]}),
    )
    .await;
    util::service_account(&http, "acme", "ci-bot", json!({})).await;
    util::grant(
        &http,
        "acme",
        json!({"service_account": "ci-bot", "project": "api", "environment": "staging",
               "permissions": ["read", "update"]}),
    )
    .await;
    let sa = util::sa_token(&http, "acme", "ci-bot", json!({})).await;
    let sa_token = sa["token"].as_str().unwrap().to_owned();

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    let bot_home = dir.path().join("bot");
    let bot = As::Token(&bot_home, &sa_token);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    ok(&server, &root, &["secrets", "set", "DB_URL"], "v1\n");
    ok(&server, &alice, &["secrets", "set", "DB_URL"], "v2\n");
    ok(&server, &bot, &["secrets", "set", "DB_URL"], "v3\n");

    let hist = json(&ok(
        &server,
        &alice,
        &["secrets", "history", "DB_URL", "-o", "json"],
        "",
    ));
    let by: Vec<(&str, &str)> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["created_by"].as_str().unwrap(),
                v["created_by_kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [("root", "root"), (ALICE, "user"), ("ci-bot", "service_account")],
        "{hist}"
    );
    // The accessor is still there, as its own field.
    assert_eq!(hist[2]["accessor"], sa["accessor"], "{hist}");
    let table = ok(&server, &alice, &["secrets", "history", "DB_URL"], "");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].ends_with("BY"), "{table}");
    assert!(lines[1].ends_with(" root"), "{table}");
    assert!(lines[2].ends_with(ALICE), "{table}");
    assert!(lines[3].ends_with("ci-bot (service account)"), "{table}");
    for v in hist.as_array().unwrap() {
        let accessor = v["accessor"].as_str().unwrap();
        assert!(
            !table.contains(accessor),
            "the table shows names, not {accessor}: {table}"
        );
    }
}

/// `coffer status` in every state: before init, sealed, unsealed without
/// and with a login; always exit 0, one screen.
#[tokio::test]
async fn status_shows_target_server_seal_state_and_identity() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon_home = dir.path().join("anon");
    let anon = As::Anonymous(&anon_home);
    let status = |who: &As<'_>, extra: &[&str]| -> String {
        let mut args = vec!["status"];
        args.extend_from_slice(extra);
        let out = coffer(&server, who, &args, "");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        stdout(&out)
    };

    let out = status(&anon, &[]);
    assert!(out.contains("acme/api/staging"), "{out}");
    assert!(out.contains("($COFFER_ORG)"), "{out}");
    assert!(out.contains(&server.base), "{out}");
    assert!(out.contains("not initialized"), "{out}");
    assert!(out.contains("not logged in"), "{out}");

    let anon_http = server.client(None);
    let (keys, _, root_token) = util::init(&anon_http, 3, 2).await;
    util::unseal(&anon_http, &[&keys[0]]).await;
    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let out = status(&root, &["--env", "production"]);
    assert!(out.contains("sealed (1/2 unseal shares given"), "{out}");
    assert!(out.contains("acme/api/production") && out.contains("(flag)"), "{out}");
    assert!(out.contains("identity") && out.contains("sealed"), "{out}");

    util::unseal(&anon_http, &[&keys[1]]).await;
    let out = status(&root, &[]);
    assert!(out.contains("unsealed"), "{out}");
    let identity = out.lines().find(|l| l.starts_with("identity")).unwrap_or_default();
    assert!(identity.contains("root root"), "{out}");
    let j: Value = serde_json::from_str(&status(&root, &["--json"])).expect("json");
    assert_eq!(j["identity"]["kind"], "root", "{j}");
    assert_eq!(j["server"]["seal"]["sealed"], false, "{j}");
    assert_eq!(j["org"], json!({"value": "acme", "from": "$COFFER_ORG"}), "{j}");
}
