//! The dashboard's Edit area in a real browser (issue 16): create and
//! edit a typed secret, history with its value diff, rollback, delete /
//! restore / purge with confirmation, .env import through the push plan,
//! export, CSRF on every new POST, and a read-only viewer.

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use super::{Browser, PASSWORD, assert_no_inline_code, assert_page_headers, csrf_of, fresh_server, login, post, raw};
use crate::util;

/// A form POST with the session cookie; (status, headers, body).
async fn post_form(
    base: &str,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let body = serde_urlencoded::to_string(fields).expect("form");
    let res = raw()
        .post(format!("{base}{path}"))
        .header("Cookie", cookie)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, headers, res.text().await.unwrap_or_default())
}

/// A JSON POST with the CSRF header (the page's fetches).
async fn post_json(base: &str, path: &str, cookie: &str, csrf: &str, body: Value) -> (u16, Value) {
    let res = raw()
        .post(format!("{base}{path}"))
        .header("Cookie", cookie)
        .header("X-CSRF-Token", csrf)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// The `value` property of an input (what the person would submit).
async fn prop(b: &Browser, css: &str) -> String {
    b.element(css)
        .await
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default()
}

/// Wait (10 s at most) until the text of `css` contains `want`.
async fn wait_contains(b: &Browser, css: &str, want: &str) {
    for _ in 0..200 {
        if let Ok(el) = b.client.find(Locator::Css(css)).await
            && el.text().await.is_ok_and(|t| t.contains(want))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{css} never contained {want:?}: {:?}", b.text(css).await);
}

async fn select(b: &Browser, css: &str, value: &str) {
    b.element(css)
        .await
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("select {value} in {css}: {e}"));
}

/// The secret's current value and version through the API.
async fn api_value(root: &util::Http, env: &str, key: &str) -> (u16, Value) {
    let (st, body) = root.get(&format!("{env}/secrets/{key}?reveal=true")).await;
    (st.as_u16(), body)
}

/// Issue 16: create a JSON secret (invalid JSON refused as you type and by
/// the server), edit it (the field empty until revealed), its history with
/// a value diff after reveal, rollback, delete → restore → purge with
/// confirmation; CSRF on every new POST; the pages' headers; 375 px.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_edit_history_rollback_and_delete() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    let env = util::env_path("acme", "api", "dev");
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "admin").await;
    let v1 = r#"{"host": "db.internal", "port": 5432}"#;
    let v2 = "{\n  \"host\": \"db.internal\",\n  \"port\": 6543,\n  \"tls\": true\n}";
    util::remember_secret(v1);
    util::remember_secret(v2);

    let b = Browser::start().await;
    login(&b, &server.base, "ann@acme.test", None).await;
    let cookie = format!("coffer_session={}", b.cookie("coffer_session").await);
    let env_page = "/ui/orgs/acme/projects/api/envs/dev";
    b.client
        .goto(&format!("{}{env_page}", server.base))
        .await
        .expect("goto");
    let csrf = csrf_of(&b.source().await);

    // New secret: JSON checked as you type; the browser will not submit it.
    b.click("#new-secret").await;
    b.wait_path(&format!("{env_page}/secrets/new")).await;
    assert_page_headers(&server.base, &format!("{env_page}/secrets/new"), &cookie).await;
    b.fill("#key", "DB_CONFIG").await;
    select(&b, "#value_type", "json").await;
    b.fill("#value-text", r#"{"host": "db.internal","#).await;
    wait_contains(&b, "#value-check", "not valid JSON").await;
    b.click("#secret-form button[type=submit]").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.path().await,
        format!("{env_page}/secrets/new"),
        "invalid JSON not submitted"
    );
    assert_eq!(api_value(&root, &env, "DB_CONFIG").await.0, 404);
    // …and by the server, for a client without the script.
    let (st, _, body) = post_form(
        &server.base,
        &format!("{env_page}/secrets/new"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("key", "DB_CONFIG"),
            ("value_type", "json"),
            ("value", "{\"a\":"),
        ],
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("not a valid json") && !body.contains("{\"a\":"), "{body}");
    // A control per type: a true/false menu, a whole-number field.
    select(&b, "#value_type", "boolean").await;
    assert!(b.element("#value-boolean").await.is_displayed().await.expect("shown"));
    assert!(
        !b.element("#value-text").await.is_enabled().await.expect("enabled"),
        "one value control at a time"
    );
    select(&b, "#value_type", "integer").await;
    assert!(b.element("#value-integer").await.is_enabled().await.expect("enabled"));
    assert!(!b.element("#value-boolean").await.is_enabled().await.expect("enabled"));
    // YAML: checked by the server as you type.
    select(&b, "#value_type", "yaml").await;
    b.fill("#value-text", "a: [unclosed").await;
    wait_contains(&b, "#value-check", "not valid YAML").await;
    select(&b, "#value_type", "json").await;
    b.fill("#value-text", v1).await;
    b.wait_text("#value-check", "").await;
    b.fill("#description", "primary database").await;
    b.click("#secret-form button[type=submit]").await;
    b.wait_path(env_page).await;
    let (st, got) = api_value(&root, &env, "DB_CONFIG").await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["data"]["value"], v1);
    assert_eq!(got["data"]["type"], "json");
    assert_eq!(got["data"]["description"], "primary database");
    assert_eq!(
        b.text("tr[data-key='DB_CONFIG'] td.by").await,
        "ann@acme.test",
        "updated by"
    );
    // "New secret" never overwrites one.
    let (st, _, body) = post_form(
        &server.base,
        &format!("{env_page}/secrets/new"),
        &cookie,
        &[
            ("csrf", &csrf),
            ("key", "DB_CONFIG"),
            ("value_type", "text"),
            ("value", "x"),
        ],
    )
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("exists already"), "{body}");
    assert_eq!(api_value(&root, &env, "DB_CONFIG").await.1["data"]["version"], 1);

    // Edit: the value field is empty until revealed into it.
    b.click("tr[data-key='DB_CONFIG'] a.edit").await;
    let edit_page = format!("{env_page}/secrets/DB_CONFIG/edit");
    b.wait_path(&edit_page).await;
    assert_page_headers(&server.base, &edit_page, &cookie).await;
    let html = b.source().await;
    assert!(!html.contains("db.internal"), "no value in the edit page");
    assert_eq!(prop(&b, "#value-text").await, "");
    b.click("#reveal-into").await;
    for _ in 0..100 {
        if prop(&b, "#value-text").await == v1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(prop(&b, "#value-text").await, v1, "revealed into the field");
    b.fill("#value-text", v2).await;
    b.wait_text("#value-check", "").await;
    b.shot("secret-edit").await;
    // 375 px: the edit page does not scroll sideways.
    b.client.set_window_size(375, 800).await.expect("resize");
    assert!(b.page_width().await <= 375, "the edit page scrolls sideways at 375 px");
    b.client.set_window_size(1280, 800).await.expect("resize");
    b.click("#secret-form button[type=submit]").await;
    b.wait_path(env_page).await;
    let (_, got) = api_value(&root, &env, "DB_CONFIG").await;
    assert_eq!(got["data"]["value"], v2);
    assert_eq!(got["data"]["version"], 2);
    // A form opened at version 1 by someone else, saved now: refused, no
    // lost update.
    let (st, _, body) = post_form(
        &server.base,
        &edit_page,
        &cookie,
        &[
            ("csrf", &csrf),
            ("value_type", "json"),
            ("value", "{\"stale\": true}"),
            ("description", "primary database"),
            ("base", "1"),
        ],
    )
    .await;
    assert_eq!(st, 409, "{body}");
    assert!(body.contains("changed since you opened it at version 1"), "{body}");
    let (_, got) = api_value(&root, &env, "DB_CONFIG").await;
    assert_eq!(
        (got["data"]["version"].as_i64(), got["data"]["value"].as_str()),
        (Some(2), Some(v2))
    );

    // History: two versions, metadata compared, values only after reveal.
    b.click("tr[data-key='DB_CONFIG'] a.history").await;
    let history = format!("{env_page}/secrets/DB_CONFIG/history");
    b.wait_path(&history).await;
    assert_page_headers(&server.base, &history, &cookie).await;
    b.wait_count("#versions tbody tr", 2).await;
    assert_eq!(b.count("#meta-diff").await, 1);
    assert!(!b.source().await.contains("6543"), "no value before the reveal");
    b.click("#diff-values").await;
    b.wait_count("#value-diff pre.diff", 1).await;
    wait_contains(&b, "#value-diff pre.diff", "\"tls\": true").await;
    let diff = b.text("#value-diff pre.diff").await;
    assert!(diff.contains("6543") && diff.contains("5432"), "{diff}");
    assert!(b.count("#value-diff .add").await >= 1 && b.count("#value-diff .del").await >= 1);
    b.client
        .execute("document.getElementById('value-diff').scrollIntoView();", vec![])
        .await
        .expect("scroll");
    b.shot("history-diff").await;
    let (_, found) = root.get("/api/v1/audit/records?org=acme&action=secret.reveal").await;
    let diffs = found["data"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["resource"].as_str().unwrap_or("").ends_with("/history/diff") && r["outcome"] == "allowed")
        .count();
    assert_eq!(diffs, 1, "the diff is recorded as a reveal: {found}");
    b.client.set_window_size(375, 800).await.expect("resize");
    assert!(
        b.page_width().await <= 375,
        "the history page scrolls sideways at 375 px"
    );
    b.client.set_window_size(1280, 800).await.expect("resize");

    // Rollback: refused unconfirmed; confirmed, a new version with v1's value.
    let rollback = format!("{env_page}/secrets/DB_CONFIG/rollback");
    let (st, _, _) = post_form(&server.base, &rollback, &cookie, &[("csrf", &csrf), ("version", "1")]).await;
    assert_eq!(st, 400, "a rollback without confirmation");
    assert_eq!(api_value(&root, &env, "DB_CONFIG").await.1["data"]["version"], 2);
    b.click("tr[data-version='1'] input[name=confirm]").await;
    b.click("tr[data-version='1'] form.rollback button").await;
    b.wait_count("#versions tbody tr", 3).await;
    let (_, got) = api_value(&root, &env, "DB_CONFIG").await;
    assert_eq!(got["data"]["value"], v1, "rolled back");
    assert_eq!(got["data"]["version"], 3, "as a new version");

    // Delete: refused unconfirmed; confirmed in the page; restore; purge.
    let delete = format!("{env_page}/secrets/DB_CONFIG/delete");
    let (st, _, _) = post_form(&server.base, &delete, &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(st, 400, "a delete without confirmation");
    assert_eq!(api_value(&root, &env, "DB_CONFIG").await.0, 200);
    b.client
        .goto(&format!("{}{edit_page}", server.base))
        .await
        .expect("goto");
    b.click("#delete-confirm").await;
    b.click("#delete-form button[type=submit]").await;
    b.wait_path(env_page).await;
    assert_eq!(api_value(&root, &env, "DB_CONFIG").await.0, 404, "deleted");
    b.wait_count("#deleted-secrets li[data-key='DB_CONFIG']", 1).await;
    b.click("#deleted-secrets li[data-key='DB_CONFIG'] form.restore button")
        .await;
    b.wait_count("#deleted-secrets", 0).await;
    assert_eq!(api_value(&root, &env, "DB_CONFIG").await.0, 200, "restored");
    util::ok_data("delete", root.delete(&format!("{env}/secrets/DB_CONFIG")).await);
    b.client.refresh().await.expect("reload");
    let purge = format!("{env_page}/secrets/DB_CONFIG/purge");
    let (st, _, _) = post_form(&server.base, &purge, &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(st, 400, "a purge without confirmation");
    b.click("#deleted-secrets li[data-key='DB_CONFIG'] form.purge input[name=confirm]")
        .await;
    b.click("#deleted-secrets li[data-key='DB_CONFIG'] form.purge button")
        .await;
    b.wait_count("#deleted-secrets", 0).await;
    let (st, _) = root.post(&format!("{env}/secrets/DB_CONFIG/restore"), json!({})).await;
    assert_eq!(st, 404, "purged: nothing to restore");

    // CSRF: every new POST without (or with a wrong) token → 403.
    util::write_secret(&root, &env, "K", "some-value-for-csrf").await;
    for p in [
        "/secrets/new",
        "/secrets/K/edit",
        "/validate",
        "/secrets/K/delete",
        "/secrets/K/restore",
        "/secrets/K/purge",
        "/secrets/K/history/diff",
        "/secrets/K/rollback",
        "/import",
        "/import/apply",
        "/export",
    ] {
        let path = format!("{env_page}{p}");
        assert_eq!(
            post(&server.base, &path, &cookie, None).await.0,
            403,
            "{p} without a token"
        );
        assert_eq!(
            post(&server.base, &path, &cookie, Some("forged")).await.0,
            403,
            "{p} with a wrong token"
        );
    }
    assert_eq!(api_value(&root, &env, "K").await.0, 200, "nothing happened");
    b.close().await;
}

/// Issue 16: .env import shows the push plan (created / updated /
/// unchanged / an error line), then applies it; export downloads the env
/// file (`no-store`); a viewer sees no edit, delete, import or export
/// control, and forged POSTs from its session get 403.
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_import_export_and_a_viewer() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    let env = util::env_path("acme", "api", "dev");
    util::write_secret(&root, &env, "EXISTING", "old-value-1234567").await;
    util::write_secret(&root, &env, "SAME", "same-value-123456").await;
    util::ok_data(
        "an integer",
        root.post(
            &format!("{env}/secrets/PORT"),
            json!({"value": "8080", "type": "integer"}),
        )
        .await,
    );
    util::write_secret(&root, &env, "GONE", "deleted-value-12345").await;
    util::ok_data("delete", root.delete(&format!("{env}/secrets/GONE")).await);
    util::create_user(&root, "ann@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "ann@acme.test", "admin").await;
    util::create_user(&root, "vic@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "vic@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "vic@acme.test", "project": "api", "environment": "dev", "permissions": ["read"]}),
    )
    .await;
    util::remember_secret("new-value-abcdef");
    util::remember_secret("changed-value-7890");

    let b = Browser::start().await;
    login(&b, &server.base, "ann@acme.test", None).await;
    let cookie = format!("coffer_session={}", b.cookie("coffer_session").await);
    let env_page = "/ui/orgs/acme/projects/api/envs/dev";
    b.client
        .goto(&format!("{}{env_page}", server.base))
        .await
        .expect("goto");
    let csrf = csrf_of(&b.source().await);
    b.click("#import").await;
    let import = format!("{env_page}/import");
    b.wait_path(&import).await;
    assert_page_headers(&server.base, &import, &cookie).await;

    // A file read into the text area; a line that does not parse: the
    // whole file refused, naming the line.
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, "NEW_KEY=new-value-abcdef\nthis is not a line\n").expect("write file");
    b.element("#import-file")
        .await
        .send_keys(&bad.display().to_string())
        .await
        .expect("choose the file");
    for _ in 0..100 {
        if prop(&b, "#import-content").await.contains("this is not a line") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        prop(&b, "#import-content").await.contains("this is not a line"),
        "the file was read"
    );
    b.click("#import-form button[type=submit]").await;
    wait_contains(&b, "p.error", "line 2").await;

    // A plan: created, updated, unchanged, and a key that cannot be written.
    let file = "NEW_KEY=new-value-abcdef\nEXISTING=changed-value-7890\nSAME=same-value-123456\nPORT=eighty\n";
    b.fill("#import-content", file).await;
    b.click("#import-form button[type=submit]").await;
    b.wait_count("#plan tbody tr", 4).await;
    assert_no_inline_code("plan", &b.source().await);
    assert_eq!(b.text("#plan-created").await, "1");
    assert_eq!(b.text("#plan-updated").await, "1");
    assert_eq!(b.text("#plan-unchanged").await, "1");
    assert_eq!(b.text("#plan-errors").await, "1");
    let port = b.text("#plan tr[data-key='PORT']").await;
    assert!(
        port.contains("error") && port.contains("integer") && port.contains('4'),
        "{port}"
    );
    assert_eq!(b.count("#apply-form").await, 0, "no Apply with errors");
    assert_eq!(b.count("#plan-blocked").await, 1);

    // Fixed: the plan, then Apply.
    b.click("a[href$='/import']").await;
    b.wait_path(&import).await;
    b.fill("#import-content", &file.replace("PORT=eighty\n", "PORT=8080\n"))
        .await;
    b.click("#import-form button[type=submit]").await;
    b.wait_count("#plan tbody tr", 4).await;
    assert_eq!(b.text("#plan-unchanged").await, "2");
    assert_eq!(b.text("#plan-errors").await, "0");
    b.shot("import-plan").await;
    assert_eq!(api_value(&root, &env, "NEW_KEY").await.0, 404, "a plan writes nothing");
    b.click("#apply-form button[type=submit]").await;
    b.wait_count("#plan-applied", 1).await;
    assert_eq!(
        api_value(&root, &env, "NEW_KEY").await.1["data"]["value"],
        "new-value-abcdef"
    );
    let (_, existing) = api_value(&root, &env, "EXISTING").await;
    assert_eq!(existing["data"]["value"], "changed-value-7890");
    assert_eq!(existing["data"]["version"], 2);
    assert_eq!(
        api_value(&root, &env, "SAME").await.1["data"]["version"],
        1,
        "unchanged"
    );

    // Export: an attachment, no-store, the env file.
    b.client
        .goto(&format!("{}{env_page}", server.base))
        .await
        .expect("goto");
    assert_eq!(b.count("#export-form").await, 1);
    let (st, h, body) = post_form(
        &server.base,
        &format!("{env_page}/export"),
        &cookie,
        &[("csrf", &csrf), ("format", "env")],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(get("cache-control"), "no-store");
    assert!(get("content-disposition").starts_with("attachment; filename=\"dev.env\""));
    assert!(get("content-type").starts_with("text/plain"));
    let pulled = util::ok_data("pull", root.get(&format!("{env}/sync/pull?format=env")).await);
    assert_eq!(body, pulled["content"].as_str().expect("content"), "the env file");
    assert!(body.contains("NEW_KEY=") && body.contains("new-value-abcdef"));

    // A viewer: keys and history, no edit/delete/import/export control.
    b.click("header form[action='/ui/logout'] button").await;
    b.wait_path("/ui/login").await;
    login(&b, &server.base, "vic@acme.test", None).await;
    b.client
        .goto(&format!("{}{env_page}", server.base))
        .await
        .expect("goto");
    b.wait_count("#secrets tbody tr", 4).await;
    for control in [
        "#new-secret",
        "#import",
        "#export-form",
        "a.edit",
        "form.restore",
        "form.purge",
        "button.reveal",
    ] {
        assert_eq!(b.count(control).await, 0, "the viewer sees {control}");
    }
    assert_eq!(b.count("#deleted-secrets li").await, 1, "the deleted key is listed");
    let viewer = format!("coffer_session={}", b.cookie("coffer_session").await);
    let vcsrf = csrf_of(&b.source().await);
    b.click("tr[data-key='EXISTING'] a.history").await;
    b.wait_count("#versions tbody tr", 2).await;
    assert_eq!(b.count("form.rollback").await, 0, "no rollback");
    assert_eq!(b.count("#diff-values").await, 0, "no value diff");
    assert_eq!(b.count("#no-value-diff").await, 1);
    let res = raw()
        .get(format!("{}{env_page}/secrets/EXISTING/edit", server.base))
        .header("Cookie", &viewer)
        .send()
        .await
        .expect("GET");
    assert_eq!(res.status().as_u16(), 403, "no edit page for a viewer");
    // Forged POSTs from the viewer's session, with its own CSRF token.
    let forged: [(&str, Vec<(&str, &str)>); 8] = [
        ("/secrets/new", vec![("key", "EVIL"), ("value", "x")]),
        ("/secrets/EXISTING/edit", vec![("value", "forged")]),
        ("/secrets/EXISTING/delete", vec![("confirm", "yes")]),
        ("/secrets/GONE/restore", vec![]),
        ("/secrets/GONE/purge", vec![("confirm", "yes")]),
        ("/secrets/EXISTING/rollback", vec![("version", "1"), ("confirm", "yes")]),
        ("/import", vec![("format", "env"), ("content", "EVIL=x")]),
        ("/export", vec![("format", "env")]),
    ];
    for (p, fields) in forged {
        let mut all = vec![("csrf", vcsrf.as_str())];
        all.extend(fields);
        let (st, _, body) = post_form(&server.base, &format!("{env_page}{p}"), &viewer, &all).await;
        assert_eq!(st, 403, "{p} from a viewer: {body}");
        assert!(!body.contains("changed-value-7890"));
    }
    let (st, body) = post_json(
        &server.base,
        &format!("{env_page}/secrets/EXISTING/history/diff"),
        &viewer,
        &vcsrf,
        json!({"a": 1, "b": 2}),
    )
    .await;
    assert_eq!(st, 403, "a forged value diff: {body}");
    let (_, existing) = api_value(&root, &env, "EXISTING").await;
    assert_eq!(existing["data"]["value"], "changed-value-7890", "unchanged");
    assert_eq!(existing["data"]["version"], 2);
    assert_eq!(api_value(&root, &env, "EVIL").await.0, 404);
    util::ok_data(
        "GONE was not purged",
        root.post(&format!("{env}/secrets/GONE/restore"), json!({})).await,
    );
    b.close().await;
}
