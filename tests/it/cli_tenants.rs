//! The tenant tree through the CLI alone (issue 23): a fresh server is
//! initialized, unsealed and set up end to end with `coffer` commands only
//! (organization, project, environments, a user, a grant, a secret, `run`),
//! on the real binary and whichever store `COFFER_TEST_STORAGE` names.
//! Every command runs with its own `XDG_CONFIG_HOME`/`HOME` and working
//! directory, so no stored login, context or `.coffer.toml` of the person
//! running the tests is read.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util::{self, Server};

pub(crate) const ALICE: &str = "alice@example.com";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// How one `coffer` run authenticates.
pub(crate) enum As<'a> {
    /// Nobody (operator init and unseal).
    Anonymous(&'a Path),
    /// `COFFER_TOKEN`.
    Token(&'a Path, &'a str),
    /// The login stored under this config directory.
    Login(&'a Path),
}

pub(crate) fn coffer(server: &Server, who: &As<'_>, args: &[&str], stdin: &str) -> Output {
    let (home, token) = match who {
        As::Anonymous(h) | As::Login(h) => (*h, None),
        As::Token(h, t) => (*h, Some(*t)),
    };
    std::fs::create_dir_all(home).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args)
        .current_dir(home)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "staging")
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_CONTEXT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.env("COFFER_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("run coffer");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Run and require success; returns stdout.
#[track_caller]
pub(crate) fn ok(server: &Server, who: &As<'_>, args: &[&str], stdin: &str) -> String {
    let out = coffer(server, who, args, stdin);
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

/// Run and require failure (exit 1); returns stderr.
#[track_caller]
pub(crate) fn fails(server: &Server, who: &As<'_>, args: &[&str], stdin: &str) -> String {
    let out = coffer(server, who, args, stdin);
    assert_eq!(
        out.status.code(),
        Some(1),
        "coffer {args:?} must fail: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The slugs of a JSON list answer.
pub(crate) fn slugs(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a list")
        .iter()
        .filter_map(|o| o["slug"].as_str())
        .collect()
}

#[tokio::test]
async fn a_fresh_server_is_set_up_end_to_end_with_the_cli_only() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon_home = dir.path().join("anon");
    let anon = As::Anonymous(&anon_home);

    // Operator: init and unseal.
    let init = json(&ok(
        &server,
        &anon,
        &["operator", "init", "--shares", "3", "--threshold", "2", "--json"],
        "",
    ));
    let share = |i: usize| format!("{}\n", init["keys"][i].as_str().unwrap());
    let root_token = init["root_token"].as_str().unwrap().to_owned();
    util::remember_secret(&root_token);
    ok(&server, &anon, &["operator", "unseal"], &share(0));
    let out = ok(&server, &anon, &["operator", "unseal"], &share(2));
    assert!(out.contains("Sealed        false"), "{out}");

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);

    // Organization: create, a duplicate slug named in the refusal, list, show.
    let out = ok(&server, &root, &["org", "create", "acme", "--name", "Acme Inc"], "");
    assert!(out.contains("Created organization acme"), "{out}");
    let err = fails(&server, &root, &["org", "create", "acme"], "");
    assert!(err.contains("409") && err.contains("'acme'"), "{err}");
    let err = fails(&server, &root, &["org", "create", "Not_A_Slug"], "");
    assert!(err.contains("400") && err.contains("slug"), "{err}");
    let orgs = json(&ok(&server, &root, &["org", "list", "--json"], ""));
    assert_eq!(slugs(&orgs), ["acme"], "{orgs}");
    let table = ok(&server, &root, &["org", "list"], "");
    assert!(table.starts_with("SLUG") && table.contains("Acme Inc"), "{table}");
    let show = ok(&server, &root, &["org", "show"], "");
    assert!(show.contains("acme") && show.contains("Acme Inc"), "{show}");

    // Project in acme (COFFER_ORG), then two environments, one protected.
    ok(&server, &root, &["project", "create", "api", "--name", "API"], "");
    let err = fails(&server, &root, &["project", "create", "api"], "");
    assert!(err.contains("409") && err.contains("'api'"), "{err}");
    let projects = json(&ok(&server, &root, &["project", "list", "--json"], ""));
    assert_eq!(slugs(&projects), ["api"], "{projects}");
    let show = json(&ok(&server, &root, &["project", "show", "api", "--json"], ""));
    assert_eq!(show["name"], "API", "{show}");

    ok(&server, &root, &["env", "create", "staging"], "");
    let out = ok(&server, &root, &["env", "create", "production", "--protected"], "");
    assert!(out.contains("acme/api/production (protected)"), "{out}");
    let err = fails(&server, &root, &["env", "create", "production"], "");
    assert!(err.contains("409") && err.contains("'production'"), "{err}");
    let envs = json(&ok(&server, &root, &["env", "list", "--json"], ""));
    let mut got: Vec<(&str, bool)> = envs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["slug"].as_str().unwrap(), e["protected"].as_bool().unwrap()))
        .collect();
    got.sort();
    assert_eq!(got, [("production", true), ("staging", false)], "{envs}");
    let show = ok(&server, &root, &["env", "show", "production"], "");
    assert!(show.contains("Protected  yes"), "{show}");
    // --org/--project flags override the environment's defaults.
    let err = fails(&server, &root, &["env", "list", "--project", "nope"], "");
    assert!(err.contains("404"), "{err}");

    // A user, a membership and a grant on staging only.
    ok(&server, &root, &["user", "create", ALICE], &format!("{PASSWORD}\n"));
    ok(
        &server,
        &root,
        &["org", "members", "add", ALICE, "--role", "member"],
        "",
    );
    ok(
        &server,
        &root,
        &[
            "grant",
            "--user",
            ALICE,
            "--project",
            "api",
            "--env",
            "staging",
            "--perms",
            "read,reveal,create,update,export",
        ],
        "",
    );

    // Alice logs in and works in staging with her stored login.
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    assert_eq!(
        slugs(&json(&ok(&server, &alice, &["org", "list", "--json"], ""))),
        ["acme"]
    );
    // A member is not an admin: no new projects or environments.
    let err = fails(&server, &alice, &["project", "create", "web"], "");
    assert!(err.contains("403"), "{err}");
    let err = fails(&server, &alice, &["env", "create", "qa"], "");
    assert!(err.contains("403"), "{err}");
    ok(
        &server,
        &alice,
        &["secrets", "set", "DB_URL"],
        "postgres://db/staging\n",
    );
    let out = coffer(&server, &alice, &["run", "--", "env"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).lines().any(|l| l == "DB_URL=postgres://db/staging"),
        "{}",
        stdout(&out)
    );
    // No grant on production: neither its settings nor its secrets.
    fails(&server, &alice, &["env", "show", "production"], "");
    fails(&server, &alice, &["secrets", "list", "--env", "production"], "");
}

/// `org rename`, `project rename` and `env update` keep ids: the grant made on the old
/// slugs still admits Alice, her secret keeps its history, the old slugs
/// are gone at once, a taken slug is refused by name, a member may not
/// rename, and each rename is audited.
#[tokio::test]
async fn rename_keeps_grants_and_history() {
    // (env update also makes the environment protected)
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(&http, "acme", &[("api", &["staging"])]).await;
    util::org_tree(&http, "other", &[("web", &["dev"])]).await;
    util::create_user(&http, ALICE, PASSWORD).await;
    util::add_member(&http, "acme", ALICE, "member").await;
    util::grant(
        &http,
        "acme",
        serde_json::json!({"user": ALICE, "project": "api", "environment": "staging",
               "permissions": ["read", "reveal", "create", "update"]}),
    )
    .await;

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    ok(&server, &alice, &["secrets", "set", "DB_URL"], "postgres://db/v1\n");
    ok(&server, &alice, &["secrets", "set", "DB_URL"], "postgres://db/v2\n");

    // A member may not rename; nothing given is refused before any request.
    let err = fails(&server, &alice, &["org", "rename", "acme", "acme-corp"], "");
    assert!(err.contains("403"), "{err}");
    let err = fails(&server, &root, &["org", "rename", "acme"], "");
    assert!(err.contains("new slug"), "{err}");
    // A taken slug is named in the refusal; an invalid one is a 400.
    let err = fails(&server, &root, &["org", "rename", "acme", "other"], "");
    assert!(err.contains("409") && err.contains("'other'"), "{err}");
    let err = fails(&server, &root, &["org", "rename", "acme", "Bad_Slug"], "");
    assert!(err.contains("400"), "{err}");

    let out = ok(
        &server,
        &root,
        &["org", "rename", "acme", "acme-corp", "--name", "Acme Corp"],
        "",
    );
    assert!(out.contains("Renamed organization acme to acme-corp"), "{out}");
    let out = ok(
        &server,
        &root,
        &["project", "rename", "api", "backend", "--org", "acme-corp"],
        "",
    );
    assert!(out.contains("acme-corp/backend"), "{out}");
    // Project slugs are unique per organization: other's "web" is no conflict.
    ok(
        &server,
        &root,
        &["project", "rename", "backend", "web", "--org", "acme-corp"],
        "",
    );
    ok(
        &server,
        &root,
        &["project", "rename", "web", "backend", "--org", "acme-corp"],
        "",
    );
    // The environment: slug, name and protection (a member may not).
    let err = fails(
        &server,
        &alice,
        &[
            "env",
            "update",
            "staging",
            "--protected",
            "true",
            "--org",
            "acme-corp",
            "--project",
            "backend",
        ],
        "",
    );
    assert!(err.contains("403"), "{err}");
    let out = ok(
        &server,
        &root,
        &[
            "env",
            "update",
            "staging",
            "--slug",
            "qa",
            "--name",
            "QA",
            "--protected",
            "true",
            "--org",
            "acme-corp",
            "--project",
            "backend",
        ],
        "",
    );
    assert!(out.contains("acme-corp/backend/qa (protected: yes)"), "{out}");
    ok(
        &server,
        &root,
        &["env", "create", "dev", "--org", "acme-corp", "--project", "backend"],
        "",
    );
    let err = fails(
        &server,
        &root,
        &[
            "env",
            "update",
            "qa",
            "--slug",
            "dev",
            "--org",
            "acme-corp",
            "--project",
            "backend",
        ],
        "",
    );
    assert!(err.contains("409") && err.contains("'dev'"), "{err}");
    let env = json(&ok(
        &server,
        &root,
        &[
            "env",
            "show",
            "qa",
            "--json",
            "--org",
            "acme-corp",
            "--project",
            "backend",
        ],
        "",
    ));
    assert_eq!(
        (&env["name"], &env["protected"]),
        (&serde_json::json!("QA"), &serde_json::json!(true)),
        "{env}"
    );
    let show = json(&ok(&server, &root, &["org", "show", "acme-corp", "--json"], ""));
    assert_eq!(show["name"], "Acme Corp", "{show}");

    // Alice's grant followed the ids: her secret and its two versions are
    // there under the new slugs; the old ones are gone at once.
    let moved = ["--org", "acme-corp", "--project", "backend", "--env", "qa"];
    let get: Vec<&str> = [&["secrets", "get", "DB_URL"][..], &moved].concat();
    assert_eq!(ok(&server, &alice, &get, ""), "postgres://db/v2\n");
    let hist: Vec<&str> = [&["secrets", "history", "DB_URL", "-o", "json"][..], &moved].concat();
    let hist = json(&ok(&server, &alice, &hist, ""));
    assert_eq!(hist.as_array().map(Vec::len), Some(2), "{hist}");
    let err = fails(&server, &alice, &["secrets", "get", "DB_URL"], "");
    assert!(err.contains("404"), "old slugs: {err}");
    let grants = json(&ok(
        &server,
        &root,
        &["grant", "list", "--json", "--org", "acme-corp"],
        "",
    ));
    assert!(
        grants
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["project"] == "backend" && g["environment"] == "qa"),
        "{grants}"
    );
    // The old slug is free again for a new organization.
    ok(&server, &root, &["org", "create", "acme"], "");
    let err = fails(
        &server,
        &root,
        &["secrets", "list", "--org", "acme", "--project", "api"],
        "",
    );
    assert!(err.contains("404"), "the new acme has no project api: {err}");

    // Each rename is audited, allowed, under its action.
    for (action, n) in [("org.rename", 1), ("project.rename", 3), ("env.update", 1)] {
        let (st, found) = http.get(&format!("/api/v1/audit/records?action={action}")).await;
        assert_eq!(st, 200, "{found}");
        let allowed = found["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["outcome"] == "allowed")
            .count();
        assert_eq!(allowed, n, "{action}: {found}");
    }
}

/// `coffer user list|show`: root sees every user with every membership;
/// an org admin sees the members of their organizations with their roles
/// there only, and any other user is "not found"; a plain member is
/// refused; anyone sees themself.
#[tokio::test]
async fn users_are_listed_to_root_and_to_org_admins_within_their_orgs() {
    const CAROL: &str = "carol@example.com";
    const BOB: &str = "bob@example.com";
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(&http, "acme", &[("api", &["staging"])]).await;
    util::org_tree(&http, "other", &[("web", &["dev"])]).await;
    for email in [ALICE, BOB, CAROL] {
        util::create_user(&http, email, PASSWORD).await;
    }
    util::add_member(&http, "acme", CAROL, "admin").await;
    util::add_member(&http, "acme", ALICE, "member").await;
    util::add_member(&http, "other", ALICE, "owner").await;
    util::add_member(&http, "other", BOB, "member").await;

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    let all = json(&ok(&server, &root, &["user", "list", "--json"], ""));
    let emails: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, [ALICE, BOB, CAROL], "{all}");
    assert_eq!(
        all[0]["orgs"],
        serde_json::json!({"acme": "member", "other": "owner"}),
        "{all}"
    );
    assert!(
        all[0].get("password_hash").is_none() && !all.to_string().contains("argon2"),
        "{all}"
    );
    let table = ok(&server, &root, &["user", "list"], "");
    assert!(
        table.starts_with("EMAIL") && table.contains("acme:member,other:owner"),
        "{table}"
    );

    // Carol administers acme: she sees acme's members, roles in acme only.
    let carol_home = dir.path().join("carol");
    let carol = As::Login(&carol_home);
    ok(&server, &carol, &["login", "--email", CAROL], &format!("{PASSWORD}\n"));
    let seen = json(&ok(&server, &carol, &["user", "list", "--json"], ""));
    let emails: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, [ALICE, CAROL], "not bob, who is only in other: {seen}");
    assert_eq!(seen[0]["orgs"], serde_json::json!({"acme": "member"}), "{seen}");
    let show = ok(&server, &carol, &["user", "show", ALICE], "");
    assert!(
        show.contains("Orgs      acme:member") && !show.contains("other"),
        "{show}"
    );
    let err = fails(&server, &carol, &["user", "show", BOB], "");
    assert!(err.contains("404"), "{err}");

    // Bob administers nothing: refused a listing, yet sees himself.
    let bob_home = dir.path().join("bob");
    let bob = As::Login(&bob_home);
    ok(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));
    let err = fails(&server, &bob, &["user", "list"], "");
    assert!(err.contains("403"), "{err}");
    let me = json(&ok(&server, &bob, &["user", "show", BOB, "--json"], ""));
    assert_eq!(me["orgs"], serde_json::json!({"other": "member"}), "{me}");
    let err = fails(&server, &bob, &["user", "show", CAROL], "");
    assert!(err.contains("404"), "{err}");

    let (st, found) = http.get("/api/v1/audit/records?action=user.list").await;
    assert_eq!(st, 200, "{found}");
    let outcomes: Vec<&str> = found["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["outcome"].as_str())
        .collect();
    assert!(outcomes.contains(&"allowed") && outcomes.contains(&"denied"), "{found}");
}
