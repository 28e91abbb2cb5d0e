//! Secret references (issue 23) on the real binary: `${KEY}`,
//! `${env.KEY}`, `${project.env.KEY}` resolved through `coffer run` and a
//! reveal with `resolve=true`, never in the stored value; refused across a
//! missing grant, for a missing secret, a cycle and a chain deeper than 5,
//! each with the path named.

use serde_json::json;

use crate::cli_tenants::{ALICE, As, PASSWORD, coffer, fails, ok, stderr, stdout};
use crate::util::{self, Server};

#[tokio::test]
async fn references_resolve_through_run_and_reveal_under_the_callers_grants() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon_http = server.client(None);
    let (http, _) = util::boot(&anon_http).await;
    let root_token = http.token().to_owned();
    util::org_tree(
        &http,
        "acme",
        &[
            ("api", &["staging", "production", "qa", "cyc", "deep"]),
            ("web", &["prod"]),
        ],
    )
    .await;
    let put = |env: (&'static str, &'static str), key: &'static str, value: &'static str| {
        let http = &http;
        async move { util::write_secret(http, &util::env_path("acme", env.0, env.1), key, value).await }
    };
    put(("api", "staging"), "HOST", "db.internal").await;
    put(("api", "staging"), "URL", "postgres://${HOST}/app").await;
    put(("api", "staging"), "PROD_REF", "k=${production.API_KEY}").await;
    put(("api", "staging"), "WEB", "${web.prod.TOKEN}!").await;
    put(("api", "staging"), "LIT", "cost $5, $${NOT} and ${not a ref}").await;
    put(("api", "production"), "API_KEY", "prod-key-7").await;
    put(("web", "prod"), "TOKEN", "web-token-8").await;
    put(("api", "qa"), "MISSING", "x${NOPE}").await;
    put(("api", "cyc"), "A", "${B}").await;
    put(("api", "cyc"), "B", "${api.cyc.A}").await;
    for (key, value) in [
        ("K0", "${K1}"),
        ("K1", "${K2}"),
        ("K2", "${K3}"),
        ("K3", "${K4}"),
        ("K4", "${K5}"),
        ("K5", "${K6}"),
        ("K6", "end"),
    ] {
        put(("api", "deep"), key, value).await;
    }

    let root_home = dir.path().join("root");
    let root = As::Token(&root_home, &root_token);
    // run: every reference resolved, the rest kept as written.
    let out = coffer(&server, &root, &["run", "--", "env"], "");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let env = stdout(&out);
    for line in [
        "URL=postgres://db.internal/app",
        "PROD_REF=k=prod-key-7",
        "WEB=web-token-8!",
        "LIT=cost $5, ${NOT} and ${not a ref}",
        "HOST=db.internal",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    // The stored value keeps the reference; reveal resolves only when asked.
    assert_eq!(
        ok(&server, &root, &["secrets", "get", "URL"], ""),
        "postgres://${HOST}/app\n"
    );
    assert_eq!(
        ok(&server, &root, &["secrets", "get", "URL", "--resolve"], ""),
        "postgres://db.internal/app\n"
    );
    let (st, b) = http
        .get(&format!(
            "{}/secrets/WEB?reveal=true&resolve=true",
            util::env_path("acme", "api", "staging")
        ))
        .await;
    assert_eq!(
        (st.as_u16(), b["data"]["value"].as_str()),
        (200, Some("web-token-8!")),
        "{b}"
    );

    // Alice may export staging but not read production: a reference may not
    // read what she cannot, so run and the resolving reveal are refused.
    util::create_user(&http, ALICE, PASSWORD).await;
    util::add_member(&http, "acme", ALICE, "member").await;
    util::grant(
        &http,
        "acme",
        json!({"user": ALICE, "project": "api", "environment": "staging",
               "permissions": ["read", "reveal", "export"]}),
    )
    .await;
    let alice_home = dir.path().join("alice");
    let alice = As::Login(&alice_home);
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    let out = coffer(&server, &alice, &["run", "--", "env"], "");
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    assert!(!stdout(&out).contains("prod-key-7"), "{}", stdout(&out));
    let err = fails(&server, &alice, &["secrets", "get", "PROD_REF", "--resolve"], "");
    assert!(err.contains("403"), "{err}");
    assert_eq!(
        ok(&server, &alice, &["secrets", "get", "URL", "--resolve"], ""),
        "postgres://db.internal/app\n"
    );
    // With reveal on production too, it resolves.
    util::grant(
        &http,
        "acme",
        json!({"user": ALICE, "project": "api", "environment": "production", "permissions": ["reveal"]}),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        ok(&server, &alice, &["secrets", "get", "PROD_REF", "--resolve"], ""),
        "k=prod-key-7\n"
    );

    // A missing secret, a cycle, a chain deeper than 5: refused, path named.
    let err = fails(&server, &root, &["run", "--env", "qa", "--", "env"], "");
    assert!(err.contains("${NOPE}") && err.contains("acme/api/qa/NOPE"), "{err}");
    let err = fails(
        &server,
        &root,
        &["secrets", "get", "A", "--resolve", "--env", "cyc"],
        "",
    );
    assert!(
        err.contains("cycle") && err.contains("api/cyc/A -> api/cyc/B -> api/cyc/A"),
        "{err}"
    );
    let err = fails(&server, &root, &["run", "--env", "cyc", "--", "env"], "");
    assert!(err.contains("cycle"), "{err}");
    let err = fails(
        &server,
        &root,
        &["secrets", "get", "K0", "--resolve", "--env", "deep"],
        "",
    );
    assert!(
        err.contains("deeper than 5") && err.contains("api/deep/K0 -> api/deep/K1") && err.contains("api/deep/K6"),
        "{err}"
    );
    assert_eq!(
        ok(
            &server,
            &root,
            &["secrets", "get", "K1", "--resolve", "--env", "deep"],
            ""
        ),
        "end\n"
    );
}
