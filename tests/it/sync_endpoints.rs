//! The sync endpoints (`…/sync/push`, `…/sync/pull`, `…/sync/diff`; issue
//! 16) on the real binary: a plan writes nothing, every kind of error names
//! its key, an apply is all or nothing and only over the versions the plan
//! read, the permissions (a plan compares values: reveal; apply: create or
//! update per key; pull: export), pulls in every format come back through
//! push unchanged, and no plan, diff or audit record carries a value.

use serde_json::{Value, json};

use crate::util::{self, Http, Server};

/// Values that must never appear in a plan, a diff or an audit record.
const A: &str = "alpha-value-sy1";
const B_NEW: &str = "bravo-new-value-sy2";
const REF_TARGET: &str = "target-value-sy3";

/// acme/api/dev with A (text), PORT (integer 8080), T and R = `${T}`;
/// returns the server, root and the environment's path.
async fn setup(dir: &std::path::Path) -> (Server, Http, String) {
    let server = Server::start(dir, &util::fresh_storage_url(dir).await);
    let (root, _) = util::boot(&server.client(None)).await;
    util::org_tree(&root, "acme", &[("api", &["dev"])]).await;
    let env = util::env_path("acme", "api", "dev");
    util::write_secret(&root, &env, "A", A).await;
    util::ok_data(
        "typed PORT",
        root.post(
            &format!("{env}/secrets/PORT"),
            json!({"value": "8080", "type": "integer"}),
        )
        .await,
    );
    util::write_secret(&root, &env, "T", REF_TARGET).await;
    util::write_secret(&root, &env, "R", "${T}").await;
    (server, root, env)
}

/// (key, action) of a plan, and the versions.
fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A plan's `base`: every key's version, as the plan read it.
fn base_of(plan: &Value) -> serde_json::Map<String, Value> {
    plan["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| (k["key"].as_str().expect("key").to_owned(), k["version"].clone()))
        .collect()
}

fn pair(k: &str, a: &str) -> (String, String) {
    (k.to_owned(), a.to_owned())
}

/// Every key's version as root sees it (what a write changes).
async fn versions(root: &Http, env: &str) -> Vec<(String, i64)> {
    let list = util::ok_data("list", root.get(&format!("{env}/secrets")).await);
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap().to_owned(), s["version"].as_i64().unwrap()))
        .collect()
}

async fn reveal(root: &Http, env: &str, key: &str) -> String {
    util::ok_data("reveal", root.get(&format!("{env}/secrets/{key}?reveal=true")).await)["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[track_caller]
fn no_values(what: &str, answer: &Value) {
    let text = answer.to_string();
    for v in [A, B_NEW, REF_TARGET, "8080", "8081"] {
        assert!(!text.contains(v), "{what} carries a value ({v}): {text}");
    }
}

#[tokio::test]
async fn sync_push_plans_then_applies_in_one_transaction_and_names_every_bad_key() {
    let dir = util::tempdir();
    let (_server, root, env) = setup(dir.path()).await;
    let push = format!("{env}/sync/push");
    let before = versions(&root, &env).await;

    // A plan: compared from the plaintexts; nothing written.
    let file = format!("A={A}\nB={B_NEW}\nPORT=8081\nR=\"${{T}}\"\n");
    let plan = util::ok_data(
        "plan",
        root.post(&push, json!({"content": file, "format": "env"})).await,
    );
    assert_eq!(
        actions(&plan),
        [
            pair("A", "unchanged"),
            pair("B", "create"),
            pair("PORT", "update"),
            pair("R", "unchanged")
        ]
    );
    assert_eq!((plan["created"].as_u64(), plan["updated"].as_u64()), (Some(1), Some(1)));
    assert_eq!(plan["applied"], false);
    assert_eq!(plan["keys"][1]["version"], 0, "B does not exist: {plan}");
    assert_eq!(plan["keys"][2]["line"], 3, "{plan}");
    no_values("a plan", &plan);
    assert_eq!(versions(&root, &env).await, before, "a plan writes nothing");

    // Every kind of error names its key; applying refuses and writes nothing.
    let bad = json!({
        "1BAD": "x", "LD_PRELOAD": "/x.so", "PORT": "eighty", "LIST": [1], "OK": "fine-value-sy4"
    })
    .to_string();
    let plan = util::ok_data(
        "bad plan",
        root.post(&push, json!({"content": bad, "format": "json"})).await,
    );
    let errors: Vec<(String, String)> = plan["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["action"] == "error")
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(errors.len(), 4, "{plan}");
    let error_of = |key: &str| errors.iter().find(|(k, _)| k == key).map(|(_, e)| e.clone()).unwrap();
    assert!(error_of("1BAD").contains("invalid key"), "{plan}");
    assert!(error_of("LD_PRELOAD").contains("programs load"), "{plan}");
    assert!(error_of("PORT").contains("not a valid integer"), "{plan}");
    assert!(error_of("LIST").contains("list"), "{plan}");
    assert!(!plan.to_string().contains("eighty"), "{plan}");
    let (st, body) = root
        .post(&push, json!({"content": bad, "format": "json", "apply": true}))
        .await;
    assert_eq!(st, 400, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    for key in ["1BAD", "LD_PRELOAD", "PORT", "LIST"] {
        assert!(msg.contains(key), "the refusal names {key}: {msg}");
    }
    assert!(!msg.contains("eighty"), "{msg}");
    assert_eq!(
        versions(&root, &env).await,
        before,
        "one bad value: nothing written (not even OK)"
    );

    // A file that does not parse: its line, nothing written.
    let (st, body) = root
        .post(&push, json!({"content": "N1=1\nnot a pair\n", "apply": true}))
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or_default().contains("line 2"),
        "{body}"
    );
    let (st, body) = root.post(&push, json!({"content": "[1]", "format": "yaml"})).await;
    assert_eq!(st, 400, "{body}");
    // Content and values at once, or neither: refused.
    let (st, _) = root.post(&push, json!({"content": "A=1", "values": {"A": "1"}})).await;
    assert_eq!(st, 400);
    let (st, _) = root.post(&push, json!({"format": "env"})).await;
    assert_eq!(st, 400);
    assert_eq!(versions(&root, &env).await, before);

    // Apply: exactly the plan, in one go.
    let applied = util::ok_data(
        "apply",
        root.post(&push, json!({"content": file, "format": "env", "apply": true}))
            .await,
    );
    assert_eq!(applied["applied"], true);
    no_values("an applied plan", &applied);
    assert_eq!(reveal(&root, &env, "B").await, B_NEW);
    assert_eq!(reveal(&root, &env, "PORT").await, "8081");
    assert_eq!(reveal(&root, &env, "R").await, "${T}", "the reference is kept");
    let after = versions(&root, &env).await;
    let v = |key: &str| after.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    assert_eq!(
        (v("A"), v("B"), v("PORT"), v("R")),
        (Some(1), Some(1), Some(2), Some(1))
    );
    let meta = util::ok_data("PORT", root.get(&format!("{env}/secrets/PORT")).await);
    assert_eq!(meta["type"], "integer", "the type is kept");

    // A parsed map (what the dashboard may send) goes the same way.
    let plan = util::ok_data(
        "values",
        root.post(&push, json!({"values": {"A": "changed-sy5", "C": "c-sy6"}}))
            .await,
    );
    assert_eq!(actions(&plan), [pair("A", "update"), pair("C", "create")]);
}

#[tokio::test]
async fn sync_push_apply_refuses_a_plan_a_concurrent_write_overtook() {
    let dir = util::tempdir();
    let (_server, root, env) = setup(dir.path()).await;
    let push = format!("{env}/sync/push");
    let file = format!("A=a-from-file-sy7\nB={B_NEW}\n");
    let plan = util::ok_data("plan", root.post(&push, json!({"content": file})).await);
    let base = base_of(&plan);
    assert_eq!(Value::Object(base.clone()), json!({"A": 1, "B": 0}));

    // Someone writes A between the plan and its apply.
    util::write_secret(&root, &env, "A", "concurrent-sy8").await;
    let before = versions(&root, &env).await;
    let (st, body) = root
        .post(&push, json!({"content": file, "apply": true, "base": base}))
        .await;
    assert_eq!(st, 409, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("A changed since the plan") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert_eq!(versions(&root, &env).await, before, "nothing applied, not even B");
    assert_eq!(reveal(&root, &env, "A").await, "concurrent-sy8");

    // A key created meanwhile (planned as new) is refused the same way.
    let plan = util::ok_data("plan", root.post(&push, json!({"content": "NEWK=n1\n"})).await);
    assert_eq!(plan["keys"][0]["version"], 0);
    util::write_secret(&root, &env, "NEWK", "someone-else").await;
    let (st, body) = root
        .post(
            &push,
            json!({"content": "NEWK=n1\n", "apply": true, "base": {"NEWK": 0}}),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    // A key the applied plan did not have: refused too.
    let (st, body) = root
        .post(
            &push,
            json!({"content": "NEWK=n1\nZ=z\n", "apply": true, "base": {"NEWK": 1}}),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Z is not in the plan"),
        "{body}"
    );
    assert_eq!(reveal(&root, &env, "NEWK").await, "someone-else");

    // With the current base, it applies.
    let plan = util::ok_data("plan", root.post(&push, json!({"content": file})).await);
    let base = base_of(&plan);
    util::ok_data(
        "apply",
        root.post(&push, json!({"content": file, "apply": true, "base": base}))
            .await,
    );
    assert_eq!(reveal(&root, &env, "A").await, "a-from-file-sy7");
}

/// A service account of acme with `perms` on api/dev.
async fn sa(server: &Server, root: &Http, name: &str, perms: &[&str]) -> Http {
    util::service_account(root, "acme", name, json!({})).await;
    util::grant(
        root,
        "acme",
        json!({"service_account": name, "project": "api", "environment": "dev", "permissions": perms}),
    )
    .await;
    let token = util::sa_token(root, "acme", name, json!({})).await;
    server.client(token["token"].as_str())
}

#[tokio::test]
async fn sync_permissions_plan_needs_reveal_apply_needs_writes_pull_needs_export() {
    let dir = util::tempdir();
    let (server, root, env) = setup(dir.path()).await;
    let (push, diff, pull) = (
        format!("{env}/sync/push"),
        format!("{env}/sync/diff"),
        format!("{env}/sync/pull?format=env"),
    );
    let file = format!("A={A}\nB={B_NEW}\n");
    let before = versions(&root, &env).await;

    // Read only: listing is fine, but comparing values is not (an equality
    // oracle on values it may not see).
    let reader = sa(&server, &root, "reader", &["read"]).await;
    util::ok_data("list", reader.get(&format!("{env}/secrets")).await);
    for (what, (st, body)) in [
        ("plan", reader.post(&push, json!({"content": file})).await),
        ("diff", reader.post(&diff, json!({"content": file})).await),
        ("pull", reader.get(&pull).await),
    ] {
        util::expect_error(what, (st, body), 403, "permission_denied");
    }

    // Read and reveal: plans and diffs, but cannot apply a change or pull.
    let revealer = sa(&server, &root, "revealer", &["read", "reveal"]).await;
    let plan = util::ok_data("plan", revealer.post(&push, json!({"content": file})).await);
    assert_eq!(actions(&plan), [pair("A", "unchanged"), pair("B", "create")]);
    util::ok_data("diff", revealer.post(&diff, json!({"content": file})).await);
    let (st, body) = revealer.post(&push, json!({"content": file, "apply": true})).await;
    util::expect_error("apply without create", (st, body), 403, "permission_denied");
    util::expect_error(
        "pull without export",
        revealer.get(&pull).await,
        403,
        "permission_denied",
    );
    assert_eq!(versions(&root, &env).await, before, "a refused apply writes nothing");

    // Create but not update: a plan with an update is refused as a whole.
    let creator = sa(&server, &root, "creator", &["read", "reveal", "create"]).await;
    let (st, body) = creator
        .post(
            &push,
            json!({"content": format!("A=changed-sy9\n{}", "B=b\n"), "apply": true}),
        )
        .await;
    util::expect_error("apply an update without update", (st, body), 403, "permission_denied");
    assert_eq!(versions(&root, &env).await, before, "B was not created either");
    util::ok_data(
        "create only",
        creator.post(&push, json!({"content": file, "apply": true})).await,
    );
    assert_eq!(reveal(&root, &env, "B").await, B_NEW);

    // Export alone: pull.
    let exporter = sa(&server, &root, "exporter", &["export"]).await;
    util::ok_data("pull", exporter.get(&pull).await);
}

#[tokio::test]
async fn sync_pull_in_every_format_comes_back_unchanged_and_diff_names_keys_only() {
    let dir = util::tempdir();
    let (_server, root, env) = setup(dir.path()).await;
    for format in ["env", "json", "yaml"] {
        let (st, headers, body) = root
            .req_full("GET", &format!("{env}/sync/pull?format={format}"), None)
            .await;
        assert_eq!(st, 200, "{body}");
        assert_eq!(
            headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        let data = &body["data"];
        assert_eq!(
            (data["format"].as_str(), data["count"].as_u64()),
            (Some(format), Some(4))
        );
        let content = data["content"].as_str().unwrap().to_owned();
        assert!(content.contains(A) && content.contains(REF_TARGET), "{content}");
        // The reference is resolved, as inject does.
        assert!(!content.contains("${T}"), "{content}");
        let plan = util::ok_data(
            "push back",
            root.post(
                &format!("{env}/sync/push"),
                json!({"content": content, "format": format}),
            )
            .await,
        );
        assert_eq!(
            (
                plan["unchanged"].as_u64(),
                plan["created"].as_u64(),
                plan["updated"].as_u64()
            ),
            (Some(4), Some(0), Some(0)),
            "{format}: {plan}"
        );
        let d = util::ok_data(
            "diff",
            root.post(
                &format!("{env}/sync/diff"),
                json!({"content": content, "format": format}),
            )
            .await,
        );
        assert_eq!(d["differs"], false, "{format}: {d}");
    }
    let (st, body) = root.get(&format!("{env}/sync/pull?format=toml")).await;
    assert_eq!(st, 400, "{body}");

    // diff: every status, no value.
    let file = format!("A=other-sy10\nPORT=8080\nNEW={B_NEW}\nR=${{T}}\n");
    let d = util::ok_data(
        "diff",
        root.post(&format!("{env}/sync/diff"), json!({"content": file})).await,
    );
    let statuses: Vec<(String, String)> = d["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_owned(),
                k["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            pair("A", "different"),
            pair("NEW", "only_in_file"),
            pair("PORT", "same"),
            pair("R", "same"),
            pair("T", "only_in_coffer"),
        ]
    );
    assert_eq!(d["differs"], true);
    no_values("a diff", &d);

    // Audited: names, value counts for pull only, never a value.
    let (st, recs) = root.get("/api/v1/audit/records?action=env.&limit=1000").await;
    assert_eq!(st, 200, "{recs}");
    let rows = recs["data"].as_array().unwrap();
    // Requests, not records (a change's write-ahead record has the same id).
    let count = |action: &str| {
        let mut ids: Vec<&str> = rows
            .iter()
            .filter(|r| r["action"] == action)
            .filter_map(|r| r["request_id"].as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    };
    assert_eq!(count("env.pull"), 4, "three pulls and a refused format");
    assert_eq!(count("env.push_plan"), 3);
    assert_eq!(count("env.file_diff"), 4);
    let pulled = rows
        .iter()
        .find(|r| r["action"] == "env.pull" && r["outcome"] == "allowed")
        .unwrap();
    assert_eq!(pulled["detail"]["values"], 4, "{pulled}");
    assert!(
        rows.iter()
            .filter(|r| r["action"] != "env.pull")
            .all(|r| r["detail"].get("values").is_none()),
        "only a pull reveals values"
    );
    for v in [A, B_NEW, REF_TARGET, "other-sy10"] {
        assert!(!recs.to_string().contains(v), "an audit record holds a value");
    }
}
