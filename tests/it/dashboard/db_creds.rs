//! The Database credentials page in a real browser (issue 21): an org
//! admin adds a connection to the real PostgreSQL at 127.0.0.1:5432
//! (write-only URL field; a refused one shows the service's message and
//! never the URL), adds a dynamic role, sees a lease issued over the API
//! and revokes it in the page (the PostgreSQL role is gone), then revokes
//! by prefix with the confirmation. A POST without the CSRF token does
//! nothing.

use serde_json::json;
use sqlx::{Connection, PgConnection};

use super::{Browser, PASSWORD, assert_no_inline_code, fresh_server, login, post};
use crate::util;

async fn role_exists(name: &str) -> bool {
    let mut admin = PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .expect("connect to the target PostgreSQL");
    sqlx::query("SELECT 1 FROM pg_roles WHERE rolname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await
        .expect("pg_roles")
        .is_some()
}

async fn lease(root: &util::Http, role: &str) -> (String, String) {
    let c = util::ok_data(
        "creds",
        root.post(&format!("/api/v1/orgs/acme/database/creds/{role}"), json!({}))
            .await,
    );
    util::remember_secret(c["password"].as_str().unwrap_or(""));
    (
        c["lease_id"].as_str().expect("lease id").to_owned(),
        c["username"].as_str().expect("username").to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_manages_database_credentials_and_revokes_a_lease_in_the_page() {
    let dir = util::tempdir();
    let server = fresh_server(dir.path()).await;
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    util::create_user(&root, "alice@acme.test", PASSWORD).await;
    util::add_member(&root, "acme", "alice@acme.test", "admin").await;
    // trust authentication takes any password: this one must never be shown
    let admin_pw = format!("dashpw{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    util::remember_secret(&admin_pw);
    let role = format!("dash_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    let b = Browser::start().await;
    login(&b, &server.base, "alice@acme.test", None).await;
    b.click("a[href='/ui/orgs/acme']").await;
    b.click("#database-link").await;
    b.wait_path("/ui/orgs/acme/database").await;
    assert_no_inline_code("database", &b.source().await);
    b.wait_count("#no-connections", 1).await;

    // A connection that does not work: the service's message, no URL back.
    b.fill("#conn-name", "bad").await;
    b.fill(
        "#conn-url",
        &format!("postgres://postgres:{admin_pw}@127.0.0.1:1/postgres"),
    )
    .await;
    b.fill("#conn-project", "api").await;
    b.fill("#conn-env", "production").await;
    b.click("#connection-form button[type=submit]").await;
    b.wait_count("p.error", 1).await;
    let html = b.source().await;
    assert!(html.contains("the connection was not saved"), "{html}");
    assert!(!html.contains(&admin_pw), "the admin password is shown back");

    b.fill("#conn-name", "main").await;
    b.fill(
        "#conn-url",
        &format!("postgres://postgres:{admin_pw}@127.0.0.1:5432/postgres"),
    )
    .await;
    b.fill("#conn-project", "api").await;
    b.fill("#conn-env", "production").await;
    b.click("#connection-form button[type=submit]").await;
    b.wait_count("#connection-table tr[data-connection='main']", 1).await;
    let html = b.source().await;
    assert!(html.contains("postgres://postgres@127.0.0.1:5432/postgres"), "{html}");
    assert!(!html.contains(&admin_pw), "the admin password is shown back");

    b.fill("#dyn-name", &role).await;
    b.click("#dyn-defaults option[value=read-write]").await;
    b.fill("#dyn-ttl", "600").await;
    b.click("#dynamic-role-form button[type=submit]").await;
    b.wait_count(&format!("#role-table tr[data-role='{role}']"), 1).await;
    b.wait_count("#no-leases", 1).await;

    // A lease issued over the API is listed; Revoke drops its role.
    let (lease_id, user) = lease(&root, &role).await;
    assert!(role_exists(&user).await);
    b.client
        .goto(&format!("{}/ui/orgs/acme/database", server.base))
        .await
        .expect("reload");
    let row = format!("#lease-table tr[data-username='{user}']");
    b.wait_count(&row, 1).await;
    let text = b.text(&row).await;
    assert!(text.contains(&role) && text.contains(&lease_id), "{text}");
    b.shot("database-credentials").await;
    b.click(&format!("{row} button.revoke-lease")).await;
    b.wait_count("#no-leases", 1).await;
    assert!(
        !role_exists(&user).await,
        "revoked in the page: the PostgreSQL role is gone"
    );

    // Without the CSRF token nothing happens (403).
    let (lease2, user2) = lease(&root, &role).await;
    let cookie = format!("coffer_session={}", b.cookie("coffer_session").await);
    let (st, _) = post(&server.base, "/ui/orgs/acme/database/leases/revoke", &cookie, None).await;
    assert_eq!(st, 403);
    assert!(role_exists(&user2).await);

    // Revoke by prefix, with the confirmation box.
    b.client
        .goto(&format!("{}/ui/orgs/acme/database", server.base))
        .await
        .expect("reload");
    b.wait_count(&format!("#lease-table tr[data-lease='{lease2}']"), 1)
        .await;
    b.fill("#prefix", &format!("database/creds/acme/{role}")).await;
    b.click("#prefix-confirm").await;
    b.click("#revoke-prefix").await;
    b.wait_count("#no-leases", 1).await;
    assert!(b.text("#db-notice").await.contains("1 leases"));
    assert!(!role_exists(&user2).await, "revoked by prefix");

    // Remove: the connection is refused while a role uses it (the service's words).
    b.click("#connection-table tr[data-connection='main'] button.remove-connection")
        .await;
    b.wait_count("p.error", 1).await;
    assert!(b.text("p.error").await.contains("used by role"));
    b.click(&format!("#role-table tr[data-role='{role}'] button.remove-role"))
        .await;
    b.wait_count("#no-roles", 1).await;
    b.click("#connection-table tr[data-connection='main'] button.remove-connection")
        .await;
    b.wait_count("#no-connections", 1).await;
    b.close().await;
}
