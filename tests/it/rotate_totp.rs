//! Root-key rotation carries the users' TOTP seeds (encrypted under the
//! root key) over to the new root: two-factor logins keep working.

use serde_json::json;

use crate::util;

#[tokio::test]
async fn totp_logins_survive_root_rotation() {
    let dir = util::tempdir();
    let server = util::Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, keys) = util::boot(&anon).await;
    util::create_user(&root, "ann@acme.test", "correct horse battery").await;
    let ann = util::user_client(&anon, "ann@acme.test", "correct horse battery").await;
    let enroll = util::ok_data(
        "enroll",
        ann.post("/api/v1/auth/totp/enroll", json!({"password": "correct horse battery"}))
            .await,
    );
    let seed = util::base32_decode(enroll["secret"].as_str().expect("secret"));
    let step = util::unix_now() / 30;
    util::ok_data(
        "verify",
        ann.post("/api/v1/auth/totp/verify", json!({"code": util::totp_at(&seed, step)}))
            .await,
    );

    let mut done = false;
    for key in &keys[..2] {
        let (st, body) = root.put("/v1/sys/rotate-root", json!({"key": key})).await;
        assert_eq!(st, 200, "rotate-root share: {body}");
        done = body["complete"] == true;
    }
    assert!(done, "root rotation completed with a quorum of shares");

    // The next step's code (inside the ±1 step window) logs in: the seed
    // decrypts under the new root key.
    let (st, body) = anon
        .post(
            "/api/v1/auth/login",
            json!({"email": "ann@acme.test", "password": "correct horse battery",
                   "totp": util::totp_at(&seed, step + 1)}),
        )
        .await;
    assert!(st.is_success(), "TOTP login after root rotation: {st} {body}");
    assert!(
        !server.log_text().contains("does not decrypt"),
        "no seed failed to decrypt:\n{}",
        server.log_text()
    );
}
