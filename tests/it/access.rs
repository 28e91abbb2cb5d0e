//! Access control on the real binary (docs/access.md): the permission matrix
//! generated from `coffer::access::ENV_ROUTES`, org roles, tenant isolation
//! (over HTTP and, on PostgreSQL, row-level security seen from the
//! `coffer_app` role), service-account scope and source addresses, and token
//! revocation seen by a second server on the same storage.
//!
//! Every check collects its failures with the exact request and answer, so
//! one run reports every broken route instead of the first.

use std::time::{Duration, Instant};

use coffer::access::{BLOCKED_EXAMPLE, ENV_ROUTES, EnvRoute, Permission, Target};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::util::{self, Http, Server};

/// A password that passes the 12-character rule.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The example body of a route, if it has one.
pub(crate) fn route_body(r: &EnvRoute) -> Option<Value> {
    (!r.body.is_empty()).then(|| serde_json::from_str(r.body).expect("ENV_ROUTES body is JSON"))
}

/// The request path of `r` under `env` for `key`, with its query.
pub(crate) fn route_path(env: &str, r: &EnvRoute, key: &str) -> String {
    let mut path = format!("{env}{}", r.path.replace("{key}", key));
    if !r.query.is_empty() {
        path.push('?');
        path.push_str(r.query);
    }
    path
}

/// Set up `r`'s target as `key` in `env` (as `root`) and return the path to
/// call. Existing = a live secret with two versions (so rollback to 1 is a
/// real change), Deleted = such a secret soft-deleted, New = nothing.
pub(crate) async fn prepare(root: &Http, env: &str, r: &EnvRoute, key: &str) -> String {
    match r.target {
        Target::Env | Target::New => {}
        // `{key}` is a variable name coffer run refuses, not a secret.
        Target::Blocked => return route_path(env, r, BLOCKED_EXAMPLE),
        Target::Existing | Target::Deleted => {
            util::write_secret(root, env, key, &format!("{key}-v1")).await;
            util::write_secret(root, env, key, &format!("{key}-v2")).await;
            if r.target == Target::Deleted {
                util::ok_data(
                    &format!("soft delete {key}"),
                    root.delete(&format!("{env}/secrets/{key}")).await,
                );
            }
        }
    }
    route_path(env, r, key)
}

/// Call every route of `ENV_ROUTES` on `env` as `caller` (targets prepared by
/// `root` under fresh keys `{tag}_{i}`): a route `allowed` must answer 2xx,
/// any other 403 `permission_denied`. Returns one line per violation.
pub(crate) async fn sweep(
    root: &Http,
    caller: &Http,
    env: &str,
    who: &str,
    tag: &str,
    allowed: impl Fn(&EnvRoute) -> bool,
) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, r) in ENV_ROUTES.iter().enumerate() {
        let key = format!("{tag}_{i}");
        let path = prepare(root, env, r, &key).await;
        let want_ok = allowed(r);
        // A refused write must leave no trace (no check-after-act).
        let writes = r.method != "GET" && !matches!(r.target, Target::Env | Target::Blocked);
        let before = if writes && !want_ok {
            Some(secret_state(root, env, &key).await)
        } else {
            None
        };
        let (st, body) = caller.req(r.method, &path, route_body(r)).await;
        let good = if want_ok {
            st.is_success()
        } else {
            st == 403 && body["code"] == "permission_denied"
        };
        if !good {
            failures.push(format!(
                "{who}: {} {path} body={} → {st} {body} (expected {})",
                r.method,
                r.body,
                if want_ok { "2xx" } else { "403 permission_denied" }
            ));
        }
        if let Some(before) = before {
            let after = secret_state(root, env, &key).await;
            if before != after {
                failures.push(format!(
                    "{who}: refused {} {path} still changed the secret:\n  before {before}\n  after  {after}",
                    r.method
                ));
            }
        }
    }
    failures
}

/// What root sees of a secret (metadata and history, with statuses).
async fn secret_state(root: &Http, env: &str, key: &str) -> Value {
    let (st, meta) = root.get(&format!("{env}/secrets/{key}")).await;
    let (hst, hist) = root.get(&format!("{env}/secrets/{key}/history")).await;
    let (lst, list) = root.get(&format!("{env}/secrets")).await;
    let listed = list["data"]
        .as_array()
        .map(|items| items.iter().any(|i| i["key"] == key))
        .unwrap_or_default();
    json!({"meta": [st.as_u16(), meta], "history": [hst.as_u16(), hist], "listed": [lst.as_u16(), listed]})
}

#[track_caller]
fn assert_none(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what}: {} violation(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A server on fresh storage, initialized and unsealed; returns it with a
/// root client.
pub(crate) async fn booted(dir: &std::path::Path) -> (Server, Http) {
    let server = Server::start(dir, &util::fresh_storage_url(dir).await);
    let (root, _) = util::boot(&server.client(None)).await;
    (server, root)
}

// ---------------------------------------------------------------------------
// 1. The permission matrix
// ---------------------------------------------------------------------------

#[tokio::test]
async fn permission_matrix_follows_env_routes_for_every_permission() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");

    let mut failures = Vec::new();
    for p in Permission::ALL {
        let name = format!("sa-{}", p.as_str().replace('_', "-"));
        util::service_account(&root, "acme", &name, json!({})).await;
        util::grant(
            &root,
            "acme",
            json!({"service_account": name, "project": "api", "environment": "production",
                   "permissions": [p.as_str()]}),
        )
        .await;
        let token = util::sa_token(&root, "acme", &name, json!({})).await;
        let sa = server.client(token["token"].as_str());
        let tag = format!("S{}", p.as_str().to_uppercase());
        failures.extend(sweep(&root, &sa, &env, &name, &tag, |r| r.permission == p && !r.admin).await);
    }

    // Users go through the same rule: a member with a direct grant of
    // {reveal}, and a member whose only grant ({export}) comes from a group.
    let anon = server.client(None);
    util::create_user(&root, "reader@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "reader@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "reader@acme.test", "project": "api", "environment": "production",
               "permissions": ["reveal"]}),
    )
    .await;
    let reader = util::user_client(&anon, "reader@acme.test", PASSWORD).await;
    failures.extend(
        sweep(&root, &reader, &env, "user reader (grant {reveal})", "UREVEAL", |r| {
            r.permission == Permission::Reveal && !r.admin
        })
        .await,
    );

    util::create_user(&root, "deployer@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "deployer@acme.test", "member").await;
    util::ok_data(
        "create group",
        root.post("/api/v1/orgs/acme/groups", json!({"name": "deployers"}))
            .await,
    );
    util::ok_data(
        "add group member",
        root.post(
            "/api/v1/orgs/acme/groups/deployers/members",
            json!({"email": "deployer@acme.test"}),
        )
        .await,
    );
    util::grant(
        &root,
        "acme",
        json!({"group": "deployers", "project": "api", "environment": "production",
               "permissions": ["export"]}),
    )
    .await;
    let deployer = util::user_client(&anon, "deployer@acme.test", PASSWORD).await;
    failures.extend(
        sweep(
            &root,
            &deployer,
            &env,
            "user deployer (group grant {export})",
            "GEXPORT",
            |r| r.permission == Permission::Export && !r.admin,
        )
        .await,
    );
    assert_none("permission matrix", &failures);
}

#[tokio::test]
async fn create_and_update_split_on_soft_deleted_and_purged_keys() {
    // docs/access.md: POST/PUT needs create when the key is new or purged,
    // update when it exists, even soft-deleted.
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    let mut callers = Vec::new();
    for p in ["create", "update"] {
        let name = format!("sa-{p}");
        util::service_account(&root, "acme", &name, json!({})).await;
        util::grant(
            &root,
            "acme",
            json!({"service_account": name, "project": "api", "environment": "production",
                   "permissions": [p]}),
        )
        .await;
        let t = util::sa_token(&root, "acme", &name, json!({})).await;
        callers.push(server.client(t["token"].as_str()));
    }
    let (create, update) = (&callers[0], &callers[1]);
    let mut failures = Vec::new();
    for (who, caller, method) in [
        ("create", create, "POST"),
        ("create", create, "PUT"),
        ("update", update, "POST"),
        ("update", update, "PUT"),
    ] {
        // Soft-deleted: an update.
        let key = format!("SOFT_{}_{method}", who.to_uppercase());
        util::write_secret(&root, &env, &key, "v1").await;
        util::ok_data("soft delete", root.delete(&format!("{env}/secrets/{key}")).await);
        let path = format!("{env}/secrets/{key}");
        let (st, body) = caller.req(method, &path, Some(json!({"value": "v2"}))).await;
        let ok = if who == "update" {
            st.is_success()
        } else {
            st == 403 && body["code"] == "permission_denied"
        };
        if !ok {
            failures.push(format!("{who}: {method} {path} (soft-deleted) → {st} {body}"));
        }
        // Purged: a create.
        let key = format!("PURGED_{}_{method}", who.to_uppercase());
        util::write_secret(&root, &env, &key, "v1").await;
        util::ok_data("purge", root.delete(&format!("{env}/secrets/{key}/permanent")).await);
        let path = format!("{env}/secrets/{key}");
        let (st, body) = caller.req(method, &path, Some(json!({"value": "v2"}))).await;
        let ok = if who == "create" {
            st.is_success()
        } else {
            st == 403 && body["code"] == "permission_denied"
        };
        if !ok {
            failures.push(format!("{who}: {method} {path} (purged) → {st} {body}"));
        }
    }
    assert_none("create/update on deleted keys", &failures);
}

#[tokio::test]
async fn read_permission_never_decrypts() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    // 14 bytes in UTF-8, 12 characters: `length` counts bytes.
    let value = "hé-secret-é!";
    assert_eq!(value.len(), 14);
    util::write_secret(&root, &env, "DB_PASSWORD", value).await;
    util::service_account(&root, "acme", "viewer", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "viewer", "project": "api", "environment": "production",
               "permissions": ["read"]}),
    )
    .await;
    let t = util::sa_token(&root, "acme", "viewer", json!({})).await;
    let viewer = server.client(t["token"].as_str());

    let meta = util::ok_data("metadata read", viewer.get(&format!("{env}/secrets/DB_PASSWORD")).await);
    assert!(meta.get("value").is_none(), "read must not carry the value: {meta}");
    assert_eq!(meta["length"], json!(value.len()), "read shows the byte length: {meta}");
    assert_eq!(meta["key"], "DB_PASSWORD", "{meta}");

    let list = util::ok_data("list", viewer.get(&format!("{env}/secrets")).await);
    let items = list.as_array().unwrap_or_else(|| panic!("list is an array: {list}"));
    assert_eq!(items.len(), 1, "{list}");
    for item in items {
        assert!(
            item.get("value").is_none(),
            "a list item must not carry a value: {item}"
        );
        assert_eq!(item["length"], json!(value.len()), "list items show length: {item}");
    }
    let hist = util::ok_data(
        "history",
        viewer.get(&format!("{env}/secrets/DB_PASSWORD/history")).await,
    );
    for item in hist.as_array().expect("history array") {
        assert!(item.get("value").is_none(), "history must not carry values: {item}");
    }
    for (what, (st, body)) in [
        ("metadata", viewer.get(&format!("{env}/secrets/DB_PASSWORD")).await),
        ("list", viewer.get(&format!("{env}/secrets")).await),
        (
            "history",
            viewer.get(&format!("{env}/secrets/DB_PASSWORD/history")).await,
        ),
        ("env", viewer.get(&env).await),
        (
            "reveal",
            viewer.get(&format!("{env}/secrets/DB_PASSWORD?reveal=true")).await,
        ),
        ("inject", viewer.post(&format!("{env}/inject"), json!({})).await),
    ] {
        assert!(
            !body.to_string().contains("secret-"),
            "{what} with read only leaked the value ({st}): {body}"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. Org roles
// ---------------------------------------------------------------------------

/// Org-level routes of `docs/access.md` for org `{org}` with a project `p`,
/// a member `email`, a group `g` and a service account `sa`.
fn org_routes(org: &str, p: &str, email: &str, g: &str, sa: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let o = format!("/api/v1/orgs/{org}");
    vec![
        ("GET", o.clone(), None),
        ("GET", format!("{o}/projects"), None),
        (
            "POST",
            format!("{o}/projects"),
            Some(json!({"slug": "probe", "name": "probe"})),
        ),
        ("GET", format!("{o}/projects/{p}"), None),
        ("GET", format!("{o}/projects/{p}/environments"), None),
        (
            "POST",
            format!("{o}/projects/{p}/environments"),
            Some(json!({"slug": "probe", "name": "probe"})),
        ),
        ("GET", format!("{o}/members"), None),
        (
            "POST",
            format!("{o}/members"),
            Some(json!({"email": email, "role": "owner"})),
        ),
        ("DELETE", format!("{o}/members/{email}"), None),
        ("GET", format!("{o}/groups"), None),
        ("POST", format!("{o}/groups"), Some(json!({"name": "probe"}))),
        ("POST", format!("{o}/groups/{g}/members"), Some(json!({"email": email}))),
        ("DELETE", format!("{o}/groups/{g}/members/{email}"), None),
        ("GET", format!("{o}/service-accounts"), None),
        ("POST", format!("{o}/service-accounts"), Some(json!({"name": "probe"}))),
        ("DELETE", format!("{o}/service-accounts/{sa}"), None),
        ("POST", format!("{o}/service-accounts/{sa}/tokens"), Some(json!({}))),
        ("GET", format!("{o}/grants"), None),
        (
            "POST",
            format!("{o}/grants"),
            Some(json!({"user": email, "project": "*", "environment": "*", "role": "admin"})),
        ),
        // deletion (docs/tenants.md), comparison and promotion (docs/cli.md)
        ("DELETE", o.clone(), None),
        ("POST", format!("{o}/restore"), None),
        ("DELETE", format!("{o}/permanent?now=true"), None),
        ("DELETE", format!("{o}/projects/{p}"), None),
        ("POST", format!("{o}/projects/{p}/restore"), None),
        ("DELETE", format!("{o}/projects/{p}/permanent?now=true"), None),
        ("DELETE", format!("{o}/projects/{p}/environments/dev"), None),
        ("POST", format!("{o}/projects/{p}/environments/dev/restore"), None),
        (
            "DELETE",
            format!("{o}/projects/{p}/environments/dev/permanent?now=true"),
            None,
        ),
        ("GET", format!("{o}/projects/{p}/diff?a=dev&b=prod"), None),
        (
            "POST",
            format!("{o}/projects/{p}/copy"),
            Some(json!({"from": "dev", "to": "prod", "keys": ["X"]})),
        ),
    ]
}

/// The key-encryption-key routes of `{org}` (root only; not in
/// docs/access.md, but an org's KEK is the last thing another tenant may
/// touch).
fn kek_routes(org: &str) -> Vec<(&'static str, String, Option<Value>)> {
    let o = format!("/api/v1/orgs/{org}/keks");
    vec![
        ("GET", o.clone(), None),
        ("POST", format!("{o}/rotate"), Some(json!({}))),
        ("POST", format!("{o}/rewrap"), Some(json!({}))),
        ("DELETE", format!("{o}/1"), None),
    ]
}

fn listed(data: &Value, field: &str) -> Vec<String> {
    data.as_array()
        .unwrap_or_else(|| panic!("expected a list: {data}"))
        .iter()
        .map(|x| x[field].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn org_roles_decide_who_manages_and_outsiders_see_not_found() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    let anon = server.client(None);
    for u in ["owner", "admin", "member", "idle"] {
        util::create_user(&root, &format!("{u}@alpha.test"), PASSWORD).await;
    }
    util::create_user(&root, "bowner@bravo.test", PASSWORD).await;
    let owner = util::user_client(&anon, "owner@alpha.test", PASSWORD).await;

    // A user creating an org becomes its owner.
    util::ok_data(
        "user creates org",
        owner
            .post("/api/v1/orgs", json!({"slug": "alpha", "name": "Alpha"}))
            .await,
    );
    let members = util::ok_data("members", owner.get("/api/v1/orgs/alpha/members").await);
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["email"] == "owner@alpha.test" && m["role"] == "owner"),
        "creator is owner: {members}"
    );
    util::add_member(&owner, "alpha", "admin@alpha.test", "admin").await;
    util::add_member(&owner, "alpha", "member@alpha.test", "member").await;
    util::add_member(&owner, "alpha", "idle@alpha.test", "member").await;
    let admin = util::user_client(&anon, "admin@alpha.test", PASSWORD).await;
    let member = util::user_client(&anon, "member@alpha.test", PASSWORD).await;
    let idle = util::user_client(&anon, "idle@alpha.test", PASSWORD).await;

    // Owner and admin create projects and environments and grant.
    util::org_tree_in(&owner, "alpha", "web", &["dev"]).await;
    util::org_tree_in(&admin, "alpha", "api", &["prod"]).await;
    util::grant(
        &admin,
        "alpha",
        json!({"user": "member@alpha.test", "project": "web", "environment": "dev", "role": "viewer"}),
    )
    .await;
    util::grant(
        &owner,
        "alpha",
        json!({"user": "member@alpha.test", "project": "api", "environment": "prod", "permissions": ["read"]}),
    )
    .await;
    util::service_account(&admin, "alpha", "bot", json!({})).await;
    util::ok_data(
        "owner creates a group",
        owner.post("/api/v1/orgs/alpha/groups", json!({"name": "team"})).await,
    );

    let mut failures = Vec::new();
    // Only an owner adds or removes an owner.
    for (what, (st, body)) in [
        (
            "admin adds an owner",
            admin
                .post(
                    "/api/v1/orgs/alpha/members",
                    json!({"email": "idle@alpha.test", "role": "owner"}),
                )
                .await,
        ),
        (
            "admin removes the owner",
            admin.delete("/api/v1/orgs/alpha/members/owner@alpha.test").await,
        ),
        (
            "admin demotes the owner",
            admin
                .post(
                    "/api/v1/orgs/alpha/members",
                    json!({"email": "owner@alpha.test", "role": "member"}),
                )
                .await,
        ),
    ] {
        if !(st == 403 && body["code"] == "permission_denied") {
            failures.push(format!("{what}: → {st} {body} (expected 403 permission_denied)"));
        }
    }
    // The last owner cannot be removed (nor demoted), even by itself.
    for (what, (st, body)) in [
        (
            "owner removes itself (last owner)",
            owner.delete("/api/v1/orgs/alpha/members/owner@alpha.test").await,
        ),
        (
            "owner demotes itself (last owner)",
            owner
                .post(
                    "/api/v1/orgs/alpha/members",
                    json!({"email": "owner@alpha.test", "role": "admin"}),
                )
                .await,
        ),
    ] {
        if st.is_success() || st.is_server_error() {
            failures.push(format!("{what}: → {st} {body} (expected a 4xx refusal)"));
        }
    }
    let members = util::ok_data("members", owner.get("/api/v1/orgs/alpha/members").await);
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["email"] == "owner@alpha.test" && m["role"] == "owner"),
        "the last owner is still owner: {members}; earlier failures: {failures:#?}"
    );

    // A plain member manages nothing…
    for (method, path, body) in org_routes("alpha", "web", "idle@alpha.test", "team", "bot")
        .into_iter()
        .chain(kek_routes("alpha"))
    {
        let reads = method == "GET"
            && (path.ends_with("/projects")
                || path.ends_with("/environments")
                || path.ends_with("/members")
                || path.ends_with("/groups")
                || path.ends_with("/alpha")
                || path.ends_with("/projects/web")
                || path.contains("/diff?"));
        if reads {
            continue;
        }
        let (st, b) = member.req(method, &path, body.clone()).await;
        if !(st == 403 && b["code"] == "permission_denied") {
            failures.push(format!(
                "member: {method} {path} {} → {st} {b} (expected 403 permission_denied)",
                body.map(|b| b.to_string()).unwrap_or_default()
            ));
        }
    }
    // …but may list projects, environments, members and groups.
    for path in [
        "/api/v1/orgs/alpha/projects",
        "/api/v1/orgs/alpha/projects/web/environments",
        "/api/v1/orgs/alpha/members",
        "/api/v1/orgs/alpha/groups",
    ] {
        let (st, b) = member.get(path).await;
        if !st.is_success() {
            failures.push(format!("member: GET {path} → {st} {b} (expected 2xx)"));
        }
    }
    let projects = util::ok_data("member lists projects", member.get("/api/v1/orgs/alpha/projects").await);
    let mut slugs = listed(&projects, "slug");
    slugs.sort();
    assert_eq!(slugs, ["api", "web"], "{projects}");
    // The member's viewer grant works (control for the 403s below).
    util::ok_data(
        "member reads with its grant",
        member
            .get(&format!("{}/secrets", util::env_path("alpha", "web", "dev")))
            .await,
    );

    // A member without grants gets 403 on every environment route.
    failures.extend(
        sweep(
            &root,
            &idle,
            &util::env_path("alpha", "web", "dev"),
            "member without grants",
            "IDLE",
            |_| false,
        )
        .await,
    );

    // Org bravo, made by root, with data; alpha's users are outsiders there.
    util::org_tree(&root, "bravo", &[("vault", &["prod"])]).await;
    util::add_member(&root, "bravo", "bowner@bravo.test", "owner").await;
    let benv = util::env_path("bravo", "vault", "prod");
    util::write_secret(&root, &benv, "BRAVO_KEY", "bravo-value").await;
    util::write_secret(&root, &benv, "BRAVO_GONE", "bravo-gone").await;
    util::ok_data("soft delete", root.delete(&format!("{benv}/secrets/BRAVO_GONE")).await);
    util::ok_data(
        "group",
        root.post("/api/v1/orgs/bravo/groups", json!({"name": "ops"})).await,
    );
    util::service_account(&root, "bravo", "bbot", json!({})).await;

    util::create_user(&root, "nobody@else.test", PASSWORD).await;
    let nobody = util::user_client(&anon, "nobody@else.test", PASSWORD).await;
    let normalize = |body: &Value, slug: &str| body.to_string().replace(slug, "{org}");
    for (who, caller) in [
        ("owner", &owner),
        ("admin", &admin),
        ("member", &member),
        ("idle", &idle),
        ("user of no org", &nobody),
    ] {
        let mut probes: Vec<(&str, String, String, Option<Value>)> = Vec::new();
        for ((m, b_path, body), (_, z_path, _)) in org_routes("bravo", "vault", "bowner@bravo.test", "ops", "bbot")
            .into_iter()
            .zip(org_routes("zulu", "vault", "bowner@bravo.test", "ops", "bbot"))
        {
            probes.push((m, b_path, z_path, body));
        }
        for ((m, b_path, body), (_, z_path, _)) in kek_routes("bravo").into_iter().zip(kek_routes("zulu")) {
            probes.push((m, b_path, z_path, body));
        }
        for r in ENV_ROUTES {
            let key = match r.target {
                Target::Deleted => "BRAVO_GONE",
                Target::Blocked => BLOCKED_EXAMPLE,
                _ => "BRAVO_KEY",
            };
            probes.push((
                r.method,
                route_path(&benv, r, key),
                route_path(&util::env_path("zulu", "vault", "prod"), r, key),
                route_body(r),
            ));
        }
        for (m, b_path, z_path, body) in probes {
            let (bst, bbody) = caller.req(m, &b_path, body.clone()).await;
            let (zst, zbody) = caller.req(m, &z_path, body.clone()).await;
            // Root-only KEK routes may refuse before any lookup (403 for
            // every org alike); the equality check below still applies.
            let kek = b_path.contains("/keks");
            let not_found = bst == 404 && bbody["code"] == "not_found";
            if !(kek || not_found) {
                failures.push(format!("{who}: {m} {b_path} → {bst} {bbody} (expected 404 not_found)"));
            }
            if kek && !bst.is_client_error() {
                failures.push(format!("{who}: {m} {b_path} → {bst} {bbody} (expected a 4xx refusal)"));
            }
            if bst != zst || normalize(&bbody, "bravo") != normalize(&zbody, "zulu") {
                failures.push(format!(
                    "{who}: {m} existing org answers differently from a missing one:\n  {b_path} → {bst} {bbody}\n  {z_path} → {zst} {zbody}"
                ));
            }
        }
        // Org lists show only the caller's organizations.
        let (st, orgs) = caller.get("/api/v1/orgs").await;
        if orgs.to_string().contains("bravo") {
            failures.push(format!("{who}: GET /api/v1/orgs → {st} {orgs} lists bravo"));
        }
    }
    // Root still sees bravo (the 404s above are not because it is missing).
    util::ok_data("root reads bravo", root.get("/api/v1/orgs/bravo").await);
    assert_none("org roles", &failures);
}

// ---------------------------------------------------------------------------
// 3. Cross-tenant probes
// ---------------------------------------------------------------------------

/// What org bravo holds, for "nothing leaked, nothing changed" checks.
struct Bravo {
    keys: Vec<&'static str>,
    values: Vec<String>,
    grant_id: String,
    token: String,
    accessor: String,
}

async fn seed_bravo(server: &Server, root: &Http) -> Bravo {
    util::org_tree(root, "bravo", &[("vault", &["prod", "qa"])]).await;
    util::create_user(root, "bmember@bravo.test", PASSWORD).await;
    util::add_member(root, "bravo", "bmember@bravo.test", "member").await;
    util::ok_data(
        "bravo group",
        root.post("/api/v1/orgs/bravo/groups", json!({"name": "bravo-ops"}))
            .await,
    );
    util::ok_data(
        "bravo group member",
        root.post(
            "/api/v1/orgs/bravo/groups/bravo-ops/members",
            json!({"email": "bmember@bravo.test"}),
        )
        .await,
    );
    util::service_account(root, "bravo", "bravo-bot", json!({})).await;
    let g = util::grant(
        root,
        "bravo",
        json!({"service_account": "bravo-bot", "project": "vault", "environment": "*", "role": "developer"}),
    )
    .await;
    util::grant(
        root,
        "bravo",
        json!({"group": "bravo-ops", "project": "vault", "environment": "prod", "role": "viewer"}),
    )
    .await;
    let t = util::sa_token(root, "bravo", "bravo-bot", json!({})).await;
    let keys = vec!["BRAVO_DB_PASSWORD_Q7", "BRAVO_STRIPE_KEY_Q7", "BRAVO_GONE_Q7"];
    let mut values = Vec::new();
    for env in ["prod", "qa"] {
        let path = util::env_path("bravo", "vault", env);
        for key in &keys {
            let v = format!("bravo-{}", uuid::Uuid::new_v4().simple());
            util::write_secret(root, &path, key, &v).await;
            values.push(v);
        }
        util::ok_data(
            "bravo soft delete",
            root.delete(&format!("{path}/secrets/BRAVO_GONE_Q7")).await,
        );
    }
    // The bot's token works (so later failures are not a broken fixture).
    let bot = server.client(t["token"].as_str());
    util::ok_data(
        "bravo bot reveals",
        bot.get(&format!(
            "{}/secrets/BRAVO_DB_PASSWORD_Q7?reveal=true",
            util::env_path("bravo", "vault", "prod")
        ))
        .await,
    );
    Bravo {
        keys,
        values,
        grant_id: g["id"].as_str().unwrap_or_else(|| panic!("grant id in {g}")).to_owned(),
        token: t["token"].as_str().unwrap().to_owned(),
        accessor: t["accessor"].as_str().unwrap().to_owned(),
    }
}

/// Everything root can see of bravo, to compare before and after probing.
async fn bravo_state(root: &Http) -> Value {
    let mut state = serde_json::Map::new();
    for path in [
        "/api/v1/orgs/bravo/projects".to_owned(),
        "/api/v1/orgs/bravo/projects/vault/environments".to_owned(),
        "/api/v1/orgs/bravo/members".to_owned(),
        "/api/v1/orgs/bravo/groups".to_owned(),
        "/api/v1/orgs/bravo/service-accounts".to_owned(),
        "/api/v1/orgs/bravo/grants".to_owned(),
        "/api/v1/orgs/bravo/keks".to_owned(),
        format!("{}/secrets", util::env_path("bravo", "vault", "prod")),
        format!("{}/secrets", util::env_path("bravo", "vault", "qa")),
        format!("{}/inject", util::env_path("bravo", "vault", "prod")),
        format!("{}/inject", util::env_path("bravo", "vault", "qa")),
    ] {
        let (st, body) = if path.ends_with("/inject") {
            root.post(&path, json!({})).await
        } else {
            root.get(&path).await
        };
        assert!(st.is_success(), "root {path}: {st} {body}");
        state.insert(path, body["data"].clone());
    }
    Value::Object(state)
}

#[tokio::test]
async fn cross_tenant_probes_find_nothing() {
    let dir = util::tempdir();
    let storage = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &storage);
    let (root, _) = util::boot(&server.client(None)).await;
    let anon = server.client(None);

    // Org alpha with an admin user and an all-powerful service account.
    util::org_tree(&root, "alpha", &[("web", &["dev", "stage"])]).await;
    let aenv = util::env_path("alpha", "web", "dev");
    util::write_secret(&root, &aenv, "ALPHA_KEY", "alpha-value").await;
    util::create_user(&root, "aadmin@alpha.test", PASSWORD).await;
    util::add_member(&root, "alpha", "aadmin@alpha.test", "admin").await;
    util::ok_data(
        "alpha group",
        root.post("/api/v1/orgs/alpha/groups", json!({"name": "alpha-ops"}))
            .await,
    );
    util::ok_data(
        "alpha group member",
        root.post(
            "/api/v1/orgs/alpha/groups/alpha-ops/members",
            json!({"email": "aadmin@alpha.test"}),
        )
        .await,
    );
    util::service_account(&root, "alpha", "deployer", json!({})).await;
    util::grant(
        &root,
        "alpha",
        json!({"service_account": "deployer", "project": "*", "environment": "*", "role": "admin"}),
    )
    .await;
    let sa = util::sa_token(&root, "alpha", "deployer", json!({})).await;
    let bravo = seed_bravo(&server, &root).await;
    let before = bravo_state(&root).await;

    let admin = util::user_client(&anon, "aadmin@alpha.test", PASSWORD).await;
    let deployer = server.client(sa["token"].as_str());
    // Controls: both principals really are all-powerful in alpha.
    for (who, c) in [("alpha admin", &admin), ("alpha deployer", &deployer)] {
        util::ok_data(
            &format!("{who} reveals in alpha"),
            c.get(&format!("{aenv}/secrets/ALPHA_KEY?reveal=true")).await,
        );
        util::ok_data(
            &format!("{who} inject in alpha"),
            c.post(&format!("{aenv}/inject"), json!({})).await,
        );
    }

    // Probe set: env routes under bravo's real slugs, mixed slugs and random
    // ids; org-level routes under bravo and random ids; bravo's ids through
    // alpha's paths.
    let rand = || uuid::Uuid::new_v4().to_string();
    let env_bases = [
        util::env_path("bravo", "vault", "prod"),
        util::env_path("bravo", "vault", "qa"),
        util::env_path("alpha", "vault", "prod"),
        util::env_path("alpha", "web", "prod"),
        util::env_path("bravo", "web", "dev"),
        util::env_path(&rand(), &rand(), &rand()),
        util::env_path("bravo", &rand(), &rand()),
        util::env_path("alpha", &rand(), &rand()),
    ];
    let mut probes: Vec<(&str, String, Option<Value>)> = Vec::new();
    for base in &env_bases {
        for r in ENV_ROUTES {
            let key = match r.target {
                Target::Deleted => "BRAVO_GONE_Q7",
                Target::Blocked => BLOCKED_EXAMPLE,
                Target::New => "BRAVO_NEW_Q7",
                Target::Env | Target::Existing => "BRAVO_DB_PASSWORD_Q7",
            };
            probes.push((r.method, route_path(base, r, key), route_body(r)));
        }
    }
    for org in ["bravo".to_owned(), rand()] {
        for (m, path, body) in org_routes(&org, "vault", "bmember@bravo.test", "bravo-ops", "bravo-bot")
            .into_iter()
            .chain(kek_routes(&org))
        {
            probes.push((m, path, body));
        }
        probes.push(("DELETE", format!("/api/v1/orgs/{org}/grants/{}", bravo.grant_id), None));
    }
    let org = "alpha";
    probes.push(("DELETE", format!("/api/v1/orgs/{org}/grants/{}", bravo.grant_id), None));
    probes.push(("GET", format!("/api/v1/orgs/{org}/projects/vault"), None));
    probes.push(("GET", format!("/api/v1/orgs/{org}/projects/vault/environments"), None));
    probes.push(("DELETE", format!("/api/v1/orgs/{org}/service-accounts/bravo-bot"), None));
    probes.push((
        "POST",
        format!("/api/v1/orgs/{org}/service-accounts/bravo-bot/tokens"),
        Some(json!({})),
    ));
    probes.push(("DELETE", format!("/api/v1/orgs/{org}/members/bmember@bravo.test"), None));
    probes.push((
        "POST",
        format!("/api/v1/orgs/{org}/groups/bravo-ops/members"),
        Some(json!({"email": "aadmin@alpha.test"})),
    ));
    // A group member must be an org member.
    probes.push((
        "POST",
        format!("/api/v1/orgs/{org}/groups/alpha-ops/members"),
        Some(json!({"email": "bmember@bravo.test"})),
    ));
    probes.push((
        "POST",
        format!("/api/v1/orgs/{org}/grants"),
        Some(json!({"group": "bravo-ops", "project": "*", "environment": "*", "role": "admin"})),
    ));
    probes.push((
        "POST",
        format!("/api/v1/orgs/{org}/grants"),
        Some(json!({"service_account": "bravo-bot", "project": "*", "environment": "*", "role": "admin"})),
    ));
    // A grant in alpha naming bravo's project or environment slugs.
    for (project, env) in [("vault", "prod"), ("vault", "*"), ("web", "qa")] {
        probes.push((
            "POST",
            "/api/v1/orgs/alpha/grants".to_owned(),
            Some(json!({"service_account": "deployer", "project": project, "environment": env, "role": "admin"})),
        ));
    }
    probes.push(("DELETE", format!("/api/v1/tokens/{}", bravo.accessor), None));

    // What must never show up in an answer: bravo's values, key names and
    // identifiers (an identifier the probe itself sent may be echoed).
    let mut secrets: Vec<String> = bravo.values.clone();
    secrets.extend(bravo.keys.iter().map(|k| (*k).to_owned()));
    secrets.extend(
        [
            "bmember@bravo.test",
            "bravo-bot",
            "bravo-ops",
            bravo.grant_id.as_str(),
            bravo.accessor.as_str(),
        ]
        .map(str::to_owned),
    );
    let mut failures = Vec::new();
    for (who, caller) in [("alpha admin", &admin), ("alpha deployer", &deployer)] {
        for (m, path, body) in &probes {
            let (st, answer) = caller.req(m, path, body.clone()).await;
            let sent = format!("{path} {}", body.as_ref().map(Value::to_string).unwrap_or_default());
            let text = answer.to_string();
            let leaked: Vec<&String> = secrets
                .iter()
                .filter(|s| !sent.contains(s.as_str()) && text.contains(s.as_str()))
                .collect();
            if st.is_success() || st.is_server_error() || !leaked.is_empty() {
                failures.push(format!(
                    "{who}: {m} {sent} → {st} {answer}{}",
                    if leaked.is_empty() {
                        String::new()
                    } else {
                        format!(" LEAKS {leaked:?}")
                    }
                ));
            }
            // bravo's slugs answer exactly as a nonexistent org does.
            if path.starts_with("/api/v1/orgs/bravo")
                && !path.contains("/keks")
                && !(st == 404 && answer["code"] == "not_found")
            {
                failures.push(format!("{who}: {m} {path} → {st} {answer} (expected 404 not_found)"));
            }
        }
        // Lists of the caller's own scope never mention bravo.
        for path in [
            "/api/v1/orgs".to_owned(),
            "/api/v1/tokens".to_owned(),
            "/api/v1/orgs/alpha/projects".to_owned(),
            "/api/v1/orgs/alpha/grants".to_owned(),
            "/api/v1/orgs/alpha/members".to_owned(),
            "/api/v1/orgs/alpha/groups".to_owned(),
            "/api/v1/orgs/alpha/service-accounts".to_owned(),
            format!("{aenv}/secrets"),
        ] {
            let (st, answer) = caller.get(&path).await;
            let text = answer.to_string();
            let leaked: Vec<&String> = secrets.iter().filter(|s| text.contains(s.as_str())).collect();
            if !leaked.is_empty() || text.contains("bravo") {
                failures.push(format!("{who}: GET {path} → {st} {answer} mentions bravo: {leaked:?}"));
            }
        }
    }
    // Nothing of bravo changed, and its bot's token still works.
    let after = bravo_state(&root).await;
    if before != after {
        failures.push(format!("bravo changed:\n  before {before}\n  after  {after}"));
    }
    let (st, body) = server
        .client(Some(&bravo.token))
        .get(&format!("{}/secrets", util::env_path("bravo", "vault", "prod")))
        .await;
    if !st.is_success() {
        failures.push(format!(
            "bravo's token stopped working after alpha's probes: {st} {body}"
        ));
    }

    if util::storage_kind() == "postgres" {
        failures.extend(rls_hides_other_tenants(&storage).await);
    }
    assert_none("cross-tenant probes", &failures);
}

/// Row-level security as coffer's own role sees it: with `coffer.org_id` set
/// to alpha, every tenant table shows exactly alpha's rows; unset or empty,
/// none.
async fn rls_hides_other_tenants(storage: &str) -> Vec<String> {
    // The tables docs/access.md puts under row-level security.
    const TABLES: &[&str] = &[
        "secrets",
        "secret_versions",
        "environments",
        "projects",
        "kms_keys",
        "grants",
        "service_accounts",
        "groups",
        "group_members",
    ];
    let mut conn = sqlx::PgConnection::connect(storage)
        .await
        .unwrap_or_else(|e| panic!("connect to the test schema: {e}"));
    let mut ids = Vec::new();
    for slug in ["alpha", "bravo"] {
        let (id,): (String,) = sqlx::query_as("SELECT id FROM orgs WHERE slug = $1")
            .bind(slug)
            .fetch_one(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("org id of {slug}: {e}"));
        ids.push(id);
    }
    let (alpha, bravo) = (&ids[0], &ids[1]);
    // Ground truth, as the (superuser) test connection sees it.
    let mut truth = Vec::new();
    for t in TABLES {
        let sql = format!("SELECT count(*) FROM {t} WHERE org_id = $1");
        let mut per_org = Vec::new();
        for id in [alpha, bravo] {
            let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            per_org.push(n);
        }
        assert!(
            per_org[0] > 0 && per_org[1] > 0,
            "fixture: {t} holds rows of both orgs (alpha {}, bravo {})",
            per_org[0],
            per_org[1]
        );
        truth.push((*t, per_org[0]));
    }

    let mut failures = Vec::new();
    sqlx::query("SET ROLE coffer_app")
        .execute(&mut conn)
        .await
        .expect("SET ROLE coffer_app");
    // Never set in this session: nothing.
    for t in TABLES {
        let sql = format!("SELECT count(*) FROM {t}");
        match sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut conn)
            .await
        {
            Ok((0,)) => {}
            Ok((n,)) => failures.push(format!(
                "as coffer_app without coffer.org_id: {sql} → {n} rows (expected 0)"
            )),
            Err(e) => failures.push(format!("as coffer_app: {sql} failed: {e}")),
        }
    }
    sqlx::query("SELECT set_config('coffer.org_id', $1, false)")
        .bind(alpha)
        .execute(&mut conn)
        .await
        .expect("set coffer.org_id");
    for (t, alpha_rows) in &truth {
        let sql = format!("SELECT count(*) FROM {t}");
        match sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut conn)
            .await
        {
            Ok((n,)) if n == *alpha_rows => {}
            Ok((n,)) => failures.push(format!(
                "as coffer_app with coffer.org_id = alpha: {sql} → {n} rows (alpha has {alpha_rows})"
            )),
            Err(e) => failures.push(format!("as coffer_app: {sql} failed: {e}")),
        }
        let sql = format!("SELECT count(*) FROM {t} WHERE org_id = $1");
        if let Ok((n,)) = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.clone()))
            .bind(bravo)
            .fetch_one(&mut conn)
            .await
            && n != 0
        {
            failures.push(format!(
                "as coffer_app with coffer.org_id = alpha: {sql} [bravo] → {n} rows"
            ));
        }
    }
    // Writing bravo's rows while set to alpha is refused too (WITH CHECK).
    let upd = sqlx::query("UPDATE projects SET name = 'pwned' WHERE org_id = $1")
        .bind(bravo)
        .execute(&mut conn)
        .await;
    if let Ok(done) = upd
        && done.rows_affected() != 0
    {
        failures.push(format!(
            "as coffer_app (alpha) UPDATE of bravo's projects touched {} rows",
            done.rows_affected()
        ));
    }
    sqlx::query("SELECT set_config('coffer.org_id', '', false)")
        .execute(&mut conn)
        .await
        .expect("clear coffer.org_id");
    for t in TABLES {
        let sql = format!("SELECT count(*) FROM {t}");
        match sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.clone()))
            .fetch_one(&mut conn)
            .await
        {
            Ok((0,)) => {}
            Ok((n,)) => failures.push(format!(
                "as coffer_app with coffer.org_id = '': {sql} → {n} rows (expected 0)"
            )),
            Err(e) => failures.push(format!("as coffer_app with coffer.org_id = '': {sql} failed: {e}")),
        }
    }
    failures
}

// ---------------------------------------------------------------------------
// 4. Revocation across instances
// ---------------------------------------------------------------------------

#[tokio::test]
async fn revocation_on_one_server_is_seen_by_another_within_a_second() {
    let dir1 = util::tempdir();
    let dir2 = util::tempdir();
    let storage = util::fresh_storage_url(dir1.path()).await;
    let s1 = Server::start(dir1.path(), &storage);
    let (root, shares) = util::boot(&s1.client(None)).await;
    let s2 = Server::start(dir2.path(), &storage);
    let status = util::unseal(&s2.client(None), &[&shares[1], &shares[2]]).await;
    assert_eq!(
        status["sealed"], false,
        "second server unseals with the same shares: {status}"
    );

    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB_URL", "postgres://x").await;
    util::service_account(&root, "acme", "ci", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "ci", "project": "api", "environment": "production", "role": "viewer"}),
    )
    .await;
    let t = util::sa_token(&root, "acme", "ci", json!({})).await;
    let token = t["token"].as_str().unwrap();
    let on1 = s1.client(Some(token));
    let on2 = s2.client(Some(token));
    let list = format!("{env}/secrets");
    // Works on both, and server 2 has it in its cache now.
    util::ok_data("token on server 1", on1.get(&list).await);
    util::ok_data("token on server 2", on2.get(&list).await);
    util::ok_data("token on server 2 again", on2.get(&list).await);

    let started = Instant::now();
    let revoked = util::ok_data(
        "revoke on server 1",
        root.delete(&format!("/api/v1/tokens/{}", t["accessor"].as_str().unwrap()))
            .await,
    );
    assert_eq!(revoked["revoked"], true, "{revoked}");
    // The revoking server refuses it at once (stricter than the 1-s bound of
    // docs/access.md: the server that revokes has no reason to trust its own
    // stale cache). Checked after server 2, so both results are reported.
    let (st1, body1) = on1.get(&list).await;
    let (elapsed, last) = loop {
        let answer = on2.get(&list).await;
        if answer.0 == 401 || started.elapsed() > Duration::from_secs(5) {
            break (started.elapsed(), answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (last.0.as_u16(), last.1["code"].as_str()),
        (401, Some("unauthenticated")),
        "server 2 still accepts the revoked token after {elapsed:?}: {}",
        last.1
    );
    assert!(
        elapsed <= Duration::from_millis(1500),
        "server 2 saw the revocation only after {elapsed:?} (limit 1.5 s)"
    );
    util::expect_error(
        "server 1, right after it revoked the token",
        (st1, body1),
        401,
        "unauthenticated",
    );
}

// ---------------------------------------------------------------------------
// 5. Service-account scope and source addresses
// ---------------------------------------------------------------------------

#[tokio::test]
async fn service_account_sees_only_its_environments() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["staging", "production"])]).await;
    let staging = util::env_path("acme", "api", "staging");
    let production = util::env_path("acme", "api", "production");
    util::write_secret(&root, &staging, "STAGING_KEY", "staging-value").await;
    util::write_secret(&root, &production, "PRODUCTION_KEY", "production-value").await;
    util::service_account(&root, "acme", "stager", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "stager", "project": "api", "environment": "staging", "role": "admin"}),
    )
    .await;
    let t = util::sa_token(&root, "acme", "stager", json!({})).await;
    let sa = server.client(t["token"].as_str());

    // Control: everything works on staging.
    let mut failures = sweep(&root, &sa, &staging, "stager on staging", "STG", |_| true).await;
    // Nothing on production.
    failures.extend(sweep(&root, &sa, &production, "stager on production", "PRD", |_| false).await);
    let envs = util::ok_data(
        "list environments",
        sa.get("/api/v1/orgs/acme/projects/api/environments").await,
    );
    if listed(&envs, "slug") != ["staging"] {
        failures.push(format!(
            "GET …/environments as stager lists {envs} (expected only staging)"
        ));
    }
    let (_, inject) = sa.post(&format!("{production}/inject"), json!({})).await;
    if inject.to_string().contains("production-value") {
        failures.push(format!("inject on production leaked: {inject}"));
    }
    assert_none("service-account scope", &failures);
}

#[tokio::test]
async fn service_account_cidrs_restrict_the_source_address() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["staging"])]).await;
    let env = util::env_path("acme", "api", "staging");
    util::write_secret(&root, &env, "KEY", "value").await;

    let mut clients = Vec::new();
    for (name, cidrs) in [("tenner", json!(["10.0.0.0/8"])), ("local", json!(["127.0.0.0/8"]))] {
        let sa = util::service_account(&root, "acme", name, json!({ "cidrs": cidrs })).await;
        assert_eq!(sa["cidrs"], cidrs, "the account shows its cidrs: {sa}");
        util::grant(
            &root,
            "acme",
            json!({"service_account": name, "project": "api", "environment": "staging", "role": "developer"}),
        )
        .await;
        let t = util::sa_token(&root, "acme", name, json!({})).await;
        clients.push(server.client(t["token"].as_str()));
    }
    let (tenner, local) = (&clients[0], &clients[1]);
    for path in [format!("{env}/secrets"), format!("{env}/secrets/KEY?reveal=true")] {
        util::expect_error(
            &format!("10.0.0.0/8 account from 127.0.0.1: GET {path}"),
            tenner.get(&path).await,
            403,
            "source_not_allowed",
        );
        util::ok_data(&format!("127.0.0.0/8 account: GET {path}"), local.get(&path).await);
    }
    // Every request of the account is refused from elsewhere, whoami too.
    util::expect_error(
        "10.0.0.0/8 account: whoami",
        tenner.get("/api/v1/auth/whoami").await,
        403,
        "source_not_allowed",
    );
    let me = util::ok_data("127.0.0.0/8 account: whoami", local.get("/api/v1/auth/whoami").await);
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str()),
        (Some("service_account"), Some("local")),
        "{me}"
    );
    // A malformed CIDR is refused, never read as "anywhere".
    for bad in ["10.0.0.0/33", "not-a-cidr", "300.1.1.1/8"] {
        let (st, body) = root
            .post(
                "/api/v1/orgs/acme/service-accounts",
                json!({"name": "badnet", "cidrs": [bad]}),
            )
            .await;
        assert!(
            st.is_client_error(),
            "service account with cidrs [{bad:?}] → {st} {body} (expected 4xx)"
        );
    }
}

// ---------------------------------------------------------------------------
// Grant scopes, and removals that must take effect
// ---------------------------------------------------------------------------

/// `GET {env}/secrets` as `http`: the status only.
async fn list_status(http: &Http, env: &str) -> u16 {
    http.get(&format!("{env}/secrets")).await.0.as_u16()
}

#[tokio::test]
async fn grant_scopes_and_removals_take_effect() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    let anon = server.client(None);
    util::org_tree(&root, "acme", &[("api", &["staging", "production"]), ("web", &["dev"])]).await;
    let staging = util::env_path("acme", "api", "staging");
    let production = util::env_path("acme", "api", "production");
    let web = util::env_path("acme", "web", "dev");
    let mut failures = Vec::new();
    let mut expect = |what: &str, got: u16, want: u16| {
        if got != want {
            failures.push(format!("{what}: GET …/secrets → {got} (expected {want})"));
        }
    };

    // environment "*" = every environment of one project; project "*" = all.
    for (name, project, env) in [("proj", "api", "*"), ("everything", "*", "*")] {
        util::service_account(&root, "acme", name, json!({})).await;
        util::grant(
            &root,
            "acme",
            json!({"service_account": name, "project": project, "environment": env, "role": "viewer"}),
        )
        .await;
    }
    let proj = server.client(util::sa_token(&root, "acme", "proj", json!({})).await["token"].as_str());
    let all = server.client(util::sa_token(&root, "acme", "everything", json!({})).await["token"].as_str());
    expect(
        "project-wide grant, api/staging",
        list_status(&proj, &staging).await,
        200,
    );
    expect(
        "project-wide grant, api/production",
        list_status(&proj, &production).await,
        200,
    );
    expect("project-wide grant, web/dev", list_status(&proj, &web).await, 403);
    expect("org-wide grant, web/dev", list_status(&all, &web).await, 200);
    // An environment created after the grant is covered too.
    util::org_tree_in(&root, "acme", "later", &["qa"]).await;
    expect(
        "org-wide grant, environment created later",
        list_status(&all, &util::env_path("acme", "later", "qa")).await,
        200,
    );

    // Revoking a grant takes the permission away (within the 1-s cache).
    util::service_account(&root, "acme", "temp", json!({})).await;
    let g = util::grant(
        &root,
        "acme",
        json!({"service_account": "temp", "project": "api", "environment": "staging", "role": "developer"}),
    )
    .await;
    let temp_token = util::sa_token(&root, "acme", "temp", json!({})).await;
    let temp = server.client(temp_token["token"].as_str());
    expect("temp before grant revocation", list_status(&temp, &staging).await, 200);
    let gid = g["id"].as_str().unwrap_or_else(|| panic!("grant id in {g}"));
    util::ok_data(
        "revoke grant",
        root.delete(&format!("/api/v1/orgs/acme/grants/{gid}")).await,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect("temp after grant revocation", list_status(&temp, &staging).await, 403);

    // Deleting an account revokes its tokens; a new account of the same name
    // inherits neither tokens nor grants.
    util::grant(
        &root,
        "acme",
        json!({"service_account": "temp", "project": "api", "environment": "staging", "role": "developer"}),
    )
    .await;
    let deleted = util::ok_data(
        "delete service account",
        root.delete("/api/v1/orgs/acme/service-accounts/temp").await,
    );
    assert_eq!(deleted["deleted"], true, "{deleted}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect("token of a deleted account", list_status(&temp, &staging).await, 401);
    util::service_account(&root, "acme", "temp", json!({})).await;
    let reborn = server.client(util::sa_token(&root, "acme", "temp", json!({})).await["token"].as_str());
    expect(
        "old token after the name is reused",
        list_status(&temp, &staging).await,
        401,
    );
    expect(
        "new account of a reused name (no grants)",
        list_status(&reborn, &staging).await,
        403,
    );

    // Users: a group grant ends with group membership; everything ends with
    // org membership.
    util::create_user(&root, "gina@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "gina@acme.test", "member").await;
    util::ok_data(
        "group",
        root.post("/api/v1/orgs/acme/groups", json!({"name": "ops"})).await,
    );
    util::ok_data(
        "group member",
        root.post(
            "/api/v1/orgs/acme/groups/ops/members",
            json!({"email": "gina@acme.test"}),
        )
        .await,
    );
    util::grant(
        &root,
        "acme",
        json!({"group": "ops", "project": "api", "environment": "staging", "role": "viewer"}),
    )
    .await;
    util::grant(
        &root,
        "acme",
        json!({"user": "gina@acme.test", "project": "web", "environment": "dev", "role": "viewer"}),
    )
    .await;
    let gina = util::user_client(&anon, "gina@acme.test", PASSWORD).await;
    expect("gina via group", list_status(&gina, &staging).await, 200);
    expect("gina via own grant", list_status(&gina, &web).await, 200);
    util::ok_data(
        "remove from group",
        root.delete("/api/v1/orgs/acme/groups/ops/members/gina@acme.test").await,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect("gina after leaving the group", list_status(&gina, &staging).await, 403);
    expect(
        "gina's own grant after leaving the group",
        list_status(&gina, &web).await,
        200,
    );
    let removed = util::ok_data(
        "remove member",
        root.delete("/api/v1/orgs/acme/members/gina@acme.test").await,
    );
    assert_eq!(removed["removed"], true, "{removed}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect("gina after leaving the org", list_status(&gina, &web).await, 404);
    // Re-added as a plain member, she does not get her old grants back.
    util::add_member(&root, "acme", "gina@acme.test", "member").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect(
        "gina re-added: old grant must be gone",
        list_status(&gina, &web).await,
        403,
    );
    assert_none("grant scopes and removals", &failures);
}

#[tokio::test]
async fn tokens_are_revoked_only_by_their_owner_root_or_their_org_admin() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    let anon = server.client(None);
    util::org_tree(&root, "acme", &[("api", &["staging"])]).await;
    let env = util::env_path("acme", "api", "staging");
    for (u, role) in [("admin", "admin"), ("mem", "member"), ("mem2", "member")] {
        util::create_user(&root, &format!("{u}@acme.test"), PASSWORD).await;
        util::add_member(&root, "acme", &format!("{u}@acme.test"), role).await;
    }
    util::service_account(&root, "acme", "bot", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "bot", "project": "api", "environment": "staging", "role": "viewer"}),
    )
    .await;
    let bot = util::sa_token(&root, "acme", "bot", json!({})).await;
    let bot_http = server.client(bot["token"].as_str());
    let session = |email: &'static str| {
        let anon = anon.clone();
        async move { util::login(&anon, email, PASSWORD).await }
    };
    let (s_admin, s_mem, s_mem2) = (
        session("admin@acme.test").await,
        session("mem@acme.test").await,
        session("mem2@acme.test").await,
    );
    let as_ = |s: &Value| anon.with_token(s["access_token"].as_str().unwrap());
    let (admin, mem, mem2) = (as_(&s_admin), as_(&s_mem), as_(&s_mem2));
    let acc = |s: &Value| s["accessor"].as_str().unwrap().to_owned();

    let mut failures = Vec::new();
    for (who, caller, target, victim) in [
        ("member", &mem, bot["accessor"].as_str().unwrap().to_owned(), &bot_http),
        ("member", &mem, acc(&s_admin), &admin),
        // A user's session belongs to no org: an org admin may not end it.
        ("org admin", &admin, acc(&s_mem2), &mem2),
    ] {
        let path = format!("/api/v1/tokens/{target}");
        let (st, body) = caller.delete(&path).await;
        if st.is_success() || st.is_server_error() {
            failures.push(format!("{who}: DELETE {path} → {st} {body} (expected a refusal)"));
        }
        let (st, body) = victim.get("/api/v1/auth/whoami").await;
        if !st.is_success() {
            failures.push(format!(
                "after {who}'s refused DELETE {path}, the token answers {st} {body}"
            ));
        }
    }
    // Lists show the caller's own tokens only.
    let listed = util::ok_data("member lists tokens", mem.get("/api/v1/tokens").await);
    let accessors = listed_field(&listed, "accessor");
    if !accessors.contains(&acc(&s_mem)) || accessors.iter().any(|a| [acc(&s_admin), acc(&s_mem2)].contains(a)) {
        failures.push(format!(
            "member's GET /api/v1/tokens → {listed} (expected only its own)"
        ));
    }
    // The org admin revokes the org's service-account token; a user its own.
    util::ok_data(
        "admin revokes the bot's token",
        admin
            .delete(&format!("/api/v1/tokens/{}", bot["accessor"].as_str().unwrap()))
            .await,
    );
    util::ok_data(
        "member revokes its own token",
        mem.delete(&format!("/api/v1/tokens/{}", acc(&s_mem))).await,
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    util::expect_error(
        "revoked bot token",
        bot_http.get(&format!("{env}/secrets")).await,
        401,
        "unauthenticated",
    );
    util::expect_error(
        "revoked own token",
        mem.get("/api/v1/auth/whoami").await,
        401,
        "unauthenticated",
    );
    assert_none("token revocation rights", &failures);
}

fn listed_field(data: &Value, field: &str) -> Vec<String> {
    listed(data, field)
}

#[tokio::test]
async fn only_root_seals_creates_users_and_service_accounts_create_no_orgs() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    let anon = server.client(None);
    util::create_user(&root, "owner@acme.test", PASSWORD).await;
    let owner = util::user_client(&anon, "owner@acme.test", PASSWORD).await;
    util::ok_data(
        "user creates its org",
        owner
            .post("/api/v1/orgs", json!({"slug": "acme", "name": "Acme"}))
            .await,
    );
    util::service_account(&owner, "acme", "ops", json!({})).await;
    util::grant(
        &owner,
        "acme",
        json!({"service_account": "ops", "project": "*", "environment": "*", "role": "admin"}),
    )
    .await;
    let ops = server.client(util::sa_token(&owner, "acme", "ops", json!({})).await["token"].as_str());
    for (who, caller) in [("org owner", &owner), ("admin service account", &ops)] {
        for method in ["PUT", "POST"] {
            let (st, body) = caller.req(method, "/v1/sys/seal", Some(json!({}))).await;
            assert_eq!(st, 403, "{who}: {method} /v1/sys/seal → {st} {body}");
        }
        let (_, status) = anon.get("/v1/sys/seal-status").await;
        assert_eq!(status["sealed"], false, "{who} sealed the server: {status}");
        util::expect_error(
            &format!("{who} creates a user"),
            caller
                .post("/api/v1/users", json!({"email": "x@acme.test", "password": PASSWORD}))
                .await,
            403,
            "permission_denied",
        );
    }
    util::expect_error(
        "service account creates an org",
        ops.post("/api/v1/orgs", json!({"slug": "sa-org", "name": "x"})).await,
        403,
        "permission_denied",
    );
}

#[tokio::test]
async fn derived_tokens_keep_the_grants_and_expire() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["staging"])]).await;
    let env = util::env_path("acme", "api", "staging");
    util::write_secret(&root, &env, "KEY", "value").await;
    util::service_account(&root, "acme", "viewer", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "viewer", "project": "api", "environment": "staging", "role": "viewer"}),
    )
    .await;
    let parent = server.client(util::sa_token(&root, "acme", "viewer", json!({})).await["token"].as_str());
    // A token made by a viewer is a viewer: it lists, it never reveals.
    let child = util::ok_data(
        "viewer creates a token",
        parent.post("/api/v1/tokens", json!({"name": "child"})).await,
    );
    let child = server.client(child["token"].as_str());
    util::ok_data("child lists", child.get(&format!("{env}/secrets")).await);
    util::expect_error(
        "child of a viewer reveals",
        child.get(&format!("{env}/secrets/KEY?reveal=true")).await,
        403,
        "permission_denied",
    );
    util::expect_error(
        "child of a viewer writes",
        child.post(&format!("{env}/secrets/NEW"), json!({"value": "x"})).await,
        403,
        "permission_denied",
    );
    // ttl_seconds is honoured, for derived and service-account tokens alike.
    let short = util::ok_data(
        "short-lived derived token",
        parent
            .post("/api/v1/tokens", json!({"name": "short", "ttl_seconds": 1}))
            .await,
    );
    assert!(short["expires_at"].is_string(), "expires_at is set: {short}");
    let short = server.client(short["token"].as_str());
    let short_sa = util::sa_token(&root, "acme", "viewer", json!({"ttl_seconds": 1})).await;
    assert!(short_sa["expires_at"].is_string(), "expires_at is set: {short_sa}");
    let short_sa = server.client(short_sa["token"].as_str());
    util::ok_data("short derived token, fresh", short.get(&format!("{env}/secrets")).await);
    util::ok_data("short SA token, fresh", short_sa.get(&format!("{env}/secrets")).await);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (what, c) in [("derived", &short), ("service-account", &short_sa)] {
        util::expect_error(
            &format!("expired {what} token"),
            c.get(&format!("{env}/secrets")).await,
            401,
            "unauthenticated",
        );
    }
    util::ok_data("the parent lives on", parent.get(&format!("{env}/secrets")).await);
}
