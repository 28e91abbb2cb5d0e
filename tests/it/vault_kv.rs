//! The KV v2 mount and the Vault token/login endpoints, driven by the real
//! Vault client library `vaultrs` (plus raw HTTP where vaultrs 0.8 has no
//! function: PATCH, subkeys, the 404 body of a deleted version), and the
//! same secret through the Vault API, the native API and the `coffer` CLI.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use vaultrs::api::kv2::requests::{SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::api::token::requests::CreateTokenRequest;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::util::{self, Server};

fn client(base: &str, token: &str) -> VaultClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = VaultClientSettingsBuilder::default()
        .address(base)
        .token(token)
        .verify(true)
        .ca_certs(Vec::new())
        .identity(None)
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .expect("vaultrs settings");
    VaultClient::new(settings).expect("vaultrs client")
}

/// The status of a vaultrs error: `{"errors":[…]}` answers are `APIError`;
/// others (the 404 of a deleted version carries Vault's envelope, not
/// `errors`) are rustify's `ServerResponseError`, read from the Debug form.
fn code(e: &ClientError) -> u16 {
    if let ClientError::APIError { code, .. } = e {
        return *code;
    }
    let dbg = format!("{e:?}");
    dbg.split("ServerResponseError { code: ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected an HTTP error status, got {dbg}"))
}

const PATH: &str = "acme/api/production/DB";

/// `coffer ARGS` against `server` in acme/api/production, `stdin` piped in.
fn coffer_cli(server: &Server, token: &str, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .env("COFFER_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "coffer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn vaultrs_kv_v2_tokens_and_permissions() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = client(&server.base, "");

    // Seal ceremony through vaultrs.
    let init = vaultrs::sys::start_initialization(&anon, 3, 2, None).await.unwrap();
    let st = vaultrs::sys::unseal(&anon, Some(init.keys[0].clone()), None, None)
        .await
        .unwrap();
    assert!(
        st.sealed && st.progress == 1 && st.threshold == 2 && st.n_shares == 3,
        "{st:?}"
    );
    let st = vaultrs::sys::unseal(&anon, Some(init.keys[1].clone()), None, None)
        .await
        .unwrap();
    assert!(!st.sealed, "{st:?}");
    let h = vaultrs::sys::health(&anon).await.unwrap();
    assert!(h.initialized && !h.sealed, "{h:?}");
    let (st, s) = server.client(None).get("/v1/sys/seal-status").await;
    assert_eq!((st.as_u16(), &s["sealed"]), (200, &json!(false)), "{s}");

    let root_token = init.root_token.clone();
    let root = client(&server.base, &root_token);
    let http = server.client(Some(&root_token));
    util::org_tree(&http, "acme", &[("api", &["production", "staging"])]).await;

    // Preflight the CLIs make, and the one mount.
    let (st, m) = http.get("/v1/sys/internal/ui/mounts/secret/acme").await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(
        (&m["data"]["type"], &m["data"]["path"]),
        (&json!("kv"), &json!("secret/"))
    );
    assert_eq!(m["data"]["options"]["version"], "2");
    let (st, m) = http.get("/v1/sys/mounts").await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["data"]["secret/"]["type"], "kv");
    let (st, e) = http.post("/v1/sys/mounts/other", json!({"type": "kv"})).await;
    assert_eq!(st, 400, "{e}");
    assert!(e["errors"][0].as_str().unwrap().contains("exactly one mount"), "{e}");

    // Write text, then JSON: versions 1 and 2.
    let v1 = vaultrs::kv2::set(&root, "secret", PATH, &json!({"value": "postgres://one"}))
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    let v2 = vaultrs::kv2::set(&root, "secret", PATH, &json!({"user": "app", "pass": "pw"}))
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let got: Value = vaultrs::kv2::read(&root, "secret", PATH).await.unwrap();
    assert_eq!(got, json!({"user": "app", "pass": "pw"}));
    let old: Value = vaultrs::kv2::read_version(&root, "secret", PATH, 1).await.unwrap();
    assert_eq!(old, json!({"value": "postgres://one"}));
    // The native API sees the same two versions, the JSON one typed json.
    let native = util::env_path("acme", "api", "production");
    let (_, n) = http.get(&format!("{native}/secrets/DB?reveal=true")).await;
    assert_eq!(
        (&n["data"]["type"], &n["data"]["version"]),
        (&json!("json"), &json!(2)),
        "{n}"
    );

    // Check-and-set.
    let e = vaultrs::kv2::set_with_options(
        &root,
        "secret",
        PATH,
        &json!({"value": "x"}),
        SetSecretRequestOptions { cas: 1 },
    )
    .await
    .expect_err("stale cas");
    assert_eq!(code(&e), 400, "{e:?}");
    let v3 = vaultrs::kv2::set_with_options(
        &root,
        "secret",
        PATH,
        &json!({"user": "app", "pass": "pw3"}),
        SetSecretRequestOptions { cas: 2 },
    )
    .await
    .unwrap();
    assert_eq!(v3.version, 3);

    // PATCH (merge patch) makes version 4.
    let (st, p) = http
        .req(
            "PATCH",
            &format!("/v1/secret/data/{PATH}"),
            Some(json!({"data": {"pass": null, "host": "db1"}})),
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["data"]["version"], 4, "{p}");
    let got: Value = vaultrs::kv2::read(&root, "secret", PATH).await.unwrap();
    assert_eq!(got, json!({"user": "app", "host": "db1"}));

    // Subkeys: structure only.
    let (st, sk) = http.get(&format!("/v1/secret/subkeys/{PATH}")).await;
    assert_eq!(st, 200, "{sk}");
    assert_eq!(sk["data"]["subkeys"], json!({"user": null, "host": null}));

    // Delete the latest: 404 with metadata and data null; undelete brings it back.
    vaultrs::kv2::delete_latest(&root, "secret", PATH).await.unwrap();
    let e = vaultrs::kv2::read::<Value>(&root, "secret", PATH)
        .await
        .expect_err("deleted");
    assert_eq!(code(&e), 404, "{e:?}");
    let (st, d) = http.get(&format!("/v1/secret/data/{PATH}")).await;
    assert_eq!(st, 404, "{d}");
    assert!(d["data"]["data"].is_null(), "{d}");
    assert_eq!(d["data"]["metadata"]["version"], 4, "{d}");
    assert_ne!(d["data"]["metadata"]["deletion_time"], "", "{d}");
    let (st, _) = http.get(&format!("{native}/secrets/DB?reveal=true")).await;
    assert_eq!(st, 404, "the native API agrees the secret is deleted");
    vaultrs::kv2::undelete_versions(&root, "secret", PATH, vec![4])
        .await
        .unwrap();
    let got: Value = vaultrs::kv2::read(&root, "secret", PATH).await.unwrap();
    assert_eq!(got["host"], "db1");

    // Delete an older version only; destroy version 1 for good.
    vaultrs::kv2::delete_versions(&root, "secret", PATH, vec![2])
        .await
        .unwrap();
    let e = vaultrs::kv2::read_version::<Value>(&root, "secret", PATH, 2)
        .await
        .expect_err("v2 deleted");
    assert_eq!(code(&e), 404);
    vaultrs::kv2::destroy_versions(&root, "secret", PATH, vec![1])
        .await
        .unwrap();
    let (st, d) = http.get(&format!("/v1/secret/data/{PATH}?version=1")).await;
    assert_eq!(st, 404, "{d}");
    assert_eq!(d["data"]["metadata"]["destroyed"], true, "{d}");
    vaultrs::kv2::undelete_versions(&root, "secret", PATH, vec![1])
        .await
        .unwrap();
    let (st, _) = http.get(&format!("/v1/secret/data/{PATH}?version=1")).await;
    assert_eq!(st, 404, "a destroyed version stays destroyed");
    let (st, r) = http
        .post(&format!("{native}/secrets/DB/rollback"), json!({"version": 1}))
        .await;
    assert_eq!(st, 404, "native rollback to a destroyed version: {r}");

    // Metadata.
    let mut opts = SetSecretMetadataRequest::builder();
    opts.max_versions(7u64)
        .custom_metadata(std::collections::HashMap::from([(
            "owner".to_owned(),
            "payments".to_owned(),
        )]));
    vaultrs::kv2::set_metadata(&root, "secret", PATH, Some(&mut opts))
        .await
        .unwrap();
    let meta = vaultrs::kv2::read_metadata(&root, "secret", PATH).await.unwrap();
    assert_eq!(
        (meta.current_version, meta.oldest_version, meta.max_versions),
        (4, 1, 7)
    );
    assert_eq!(meta.custom_metadata.unwrap()["owner"], "payments");
    assert!(meta.versions["1"].destroyed);
    assert!(!meta.versions["2"].deletion_time.is_empty());
    assert!(meta.versions["3"].deletion_time.is_empty() && !meta.versions["3"].destroyed);
    for q in ["", "?version=3"] {
        let (_, d) = http.get(&format!("/v1/secret/data/{PATH}{q}")).await;
        assert_eq!(
            d["data"]["metadata"]["custom_metadata"],
            json!({"owner": "payments"}),
            "{q}: {d}"
        );
    }

    // LIST at every level (and GET ?list=true).
    assert_eq!(vaultrs::kv2::list(&root, "secret", "").await.unwrap(), ["acme/"]);
    assert_eq!(vaultrs::kv2::list(&root, "secret", "acme/").await.unwrap(), ["api/"]);
    let mut envs = vaultrs::kv2::list(&root, "secret", "acme/api/").await.unwrap();
    envs.sort();
    assert_eq!(envs, ["production/", "staging/"]);
    assert_eq!(
        vaultrs::kv2::list(&root, "secret", "acme/api/production/")
            .await
            .unwrap(),
        ["DB"]
    );
    let (st, l) = http.get("/v1/secret/metadata/acme/api/production?list=true").await;
    assert_eq!((st.as_u16(), &l["data"]["keys"]), (200, &json!(["DB"])), "{l}");
    let e = vaultrs::kv2::list(&root, "secret", "acme/api/staging/")
        .await
        .expect_err("empty");
    assert_eq!(code(&e), 404);

    // The envelope and the error shapes.
    let (_, r) = http.get(&format!("/v1/secret/data/{PATH}")).await;
    for f in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
        "mount_type",
    ] {
        assert!(r.get(f).is_some(), "envelope field {f} in {r}");
    }
    let (st, e) = http.get("/v1/secret/data/acme/api/production/NOPE").await;
    assert_eq!((st.as_u16(), e), (404, json!({"errors": []})));
    let (st, e) = http.get("/v1/secret/data/acme/api").await;
    assert_eq!(st, 400, "{e}");
    assert!(
        e["errors"][0]
            .as_str()
            .unwrap()
            .contains("<org>/<project>/<environment>/<KEY>")
    );

    // Tokens.
    let me = vaultrs::token::lookup_self(&root).await.unwrap();
    assert_eq!(me.policies, ["root"]);
    assert_eq!(me.id, root_token);
    let mut req = CreateTokenRequest::builder();
    req.ttl("1h").display_name("ci");
    let child = vaultrs::token::new(&root, Some(&mut req)).await.unwrap();
    assert!(child.lease_duration > 3500 && child.lease_duration <= 3600, "{child:?}");
    let child_client = client(&server.base, &child.client_token);
    let info = vaultrs::token::lookup_self(&child_client).await.unwrap();
    assert!(info.ttl > 3500 && info.ttl <= 3600, "{info:?}");
    assert_eq!(info.accessor, child.accessor);
    let by_acc = vaultrs::token::lookup_accessor(&root, &child.accessor).await.unwrap();
    assert_eq!(by_acc.display_name, "ci");
    let mut bad = CreateTokenRequest::builder();
    bad.policies(vec!["admin".to_owned()]);
    let e = vaultrs::token::new(&child_client, Some(&mut bad))
        .await
        .expect_err("policy");
    assert_eq!(code(&e), 400);
    vaultrs::token::renew_self(&child_client, None).await.unwrap();
    vaultrs::token::revoke_self(&child_client).await.unwrap();
    let e = vaultrs::token::lookup_self(&child_client).await.expect_err("revoked");
    assert_eq!(code(&e), 403);

    // A viewer (read, no reveal) via userpass: metadata and list yes, data 403.
    util::create_user(&http, "viewer@acme.test", "correct horse battery").await;
    util::add_member(&http, "acme", "viewer@acme.test", "member").await;
    util::grant(
        &http,
        "acme",
        json!({"user": "viewer@acme.test", "project": "api", "environment": "production", "role": "viewer"}),
    )
    .await;
    let login = vaultrs::auth::userpass::login(&anon, "userpass", "viewer@acme.test", "correct horse battery")
        .await
        .unwrap();
    let viewer = client(&server.base, &login.client_token);
    assert_eq!(
        vaultrs::token::lookup_self(&viewer).await.unwrap().policies,
        ["default", "coffer-grants"]
    );
    let e = vaultrs::kv2::read::<Value>(&viewer, "secret", PATH)
        .await
        .expect_err("no reveal");
    match &e {
        ClientError::APIError { code, errors } => {
            assert_eq!((*code, errors.as_slice()), (403, &["permission denied".to_owned()][..]));
        }
        other => panic!("{other:?}"),
    }
    vaultrs::kv2::read_metadata(&viewer, "secret", PATH).await.unwrap();
    assert_eq!(
        vaultrs::kv2::list(&viewer, "secret", "acme/api/production/")
            .await
            .unwrap(),
        ["DB"]
    );
    let e = vaultrs::kv2::set(&viewer, "secret", PATH, &json!({"value": "x"}))
        .await
        .expect_err("no update");
    assert_eq!(code(&e), 403);
    let e = vaultrs::kv2::destroy_versions(&viewer, "secret", PATH, vec![3])
        .await
        .expect_err("no delete");
    assert_eq!(code(&e), 403);
    let e = vaultrs::auth::userpass::login(&anon, "userpass", "viewer@acme.test", "wrong password!!")
        .await
        .expect_err("bad password");
    assert!(matches!(e, ClientError::APIError { .. }), "{e:?}");

    // One secret, three doors: Vault API, native API, CLI.
    vaultrs::kv2::set(
        &root,
        "secret",
        "acme/api/production/API_KEY",
        &json!({"value": "k-1 ü"}),
    )
    .await
    .unwrap();
    let (_, n) = http.get(&format!("{native}/secrets/API_KEY?reveal=true")).await;
    assert_eq!(
        (&n["data"]["value"], &n["data"]["type"]),
        (&json!("k-1 ü"), &json!("text"))
    );
    assert_eq!(
        coffer_cli(&server, &root_token, &["secrets", "get", "API_KEY"], "").trim_end(),
        "k-1 ü"
    );
    coffer_cli(&server, &root_token, &["secrets", "set", "API_KEY"], "k-2 from the CLI");
    let got: Value = vaultrs::kv2::read(&root, "secret", "acme/api/production/API_KEY")
        .await
        .unwrap();
    assert_eq!(got, json!({"value": "k-2 from the CLI"}));
    util::write_secret(&http, &native, "API_KEY", "k-3 native").await;
    let got: Value = vaultrs::kv2::read(&root, "secret", "acme/api/production/API_KEY")
        .await
        .unwrap();
    assert_eq!(got, json!({"value": "k-3 native"}));
    assert_eq!(
        coffer_cli(&server, &root_token, &["secrets", "get", "API_KEY"], "").trim_end(),
        "k-3 native"
    );

    // Purge; then seal through vaultrs: 503 "Vault is sealed".
    vaultrs::kv2::delete_metadata(&root, "secret", PATH).await.unwrap();
    let e = vaultrs::kv2::read_metadata(&root, "secret", PATH)
        .await
        .expect_err("purged");
    assert_eq!(code(&e), 404);
    // max_versions prunes the oldest versions on write.
    let rot = "acme/api/staging/ROT";
    let mut opts = SetSecretMetadataRequest::builder();
    opts.max_versions(2u64);
    vaultrs::kv2::set_metadata(&root, "secret", rot, Some(&mut opts))
        .await
        .unwrap();
    for i in 1..=3 {
        vaultrs::kv2::set(&root, "secret", rot, &json!({"value": format!("v{i}")}))
            .await
            .unwrap();
    }
    let meta = vaultrs::kv2::read_metadata(&root, "secret", rot).await.unwrap();
    assert_eq!(
        (meta.current_version, meta.oldest_version, meta.versions.len()),
        (3, 2, 2)
    );
    let e = vaultrs::kv2::read_version::<Value>(&root, "secret", rot, 1)
        .await
        .expect_err("pruned");
    assert_eq!(code(&e), 404);

    vaultrs::sys::seal(&root).await.unwrap();
    match vaultrs::kv2::read::<Value>(&root, "secret", "acme/api/production/API_KEY").await {
        Err(ClientError::APIError { code, errors }) => {
            assert_eq!((code, errors), (503, vec!["Vault is sealed".to_owned()]));
        }
        other => panic!("sealed read: {other:?}"),
    }
}

/// Run a client-compatibility script against `server`; its output is the
/// failure message.
fn run_script(program: &str, script: &str, server: &Server, envs: &[(&str, &str)]) {
    let path = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new("timeout");
    cmd.args(["300", program, &path])
        .env("BAO_ADDR", &server.base)
        .env("VAULT_ADDR", &server.base)
        .env_remove("BAO_TOKEN")
        .env_remove("VAULT_TOKEN")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {path}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed ({:?})\n--- stdout\n{}\n--- stderr\n{}\n--- server log\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
}

#[tokio::test]
async fn bao_cli_kv_token_and_operator_commands() {
    let bao = crate::vault_clients::bao_bin();
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    run_script("bash", "sh/bao_kv.sh", &server, &[("BAO_BIN", bao.to_str().unwrap())]);
}

#[tokio::test]
async fn hvac_python_client() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    // scripts/test points COFFER_TEST_PYTHON at its virtualenv with hvac.
    let python = std::env::var("COFFER_TEST_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    run_script(&python, "py/test_hvac.py", &server, &[]);
}

#[tokio::test]
async fn cert_login_and_userpass_totp() {
    use crate::access_mtls::{mtls_server, spki_sha256, tls_client};
    let dir = util::tempdir();
    let d = dir.path();
    let server = mtls_server(d).await;
    let with =
        |cert: &str, token: Option<&str>| util::Http::from_client(&server.base, tls_client(d, Some(cert)), token);
    let (root, _) = util::boot(&with("a", None)).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    util::write_secret(
        &root,
        &util::env_path("acme", "api", "production"),
        "DB",
        "postgres://p",
    )
    .await;
    util::service_account(
        &root,
        "acme",
        "ci",
        json!({"certificate": {"spki_sha256": spki_sha256(d, "a")}}),
    )
    .await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "ci", "project": "api", "environment": "production", "role": "developer"}),
    )
    .await;

    // Cert A logs in as the service account; the token is bound to cert A.
    let (st, l) = with("a", None).post("/v1/auth/cert/login", json!({})).await;
    assert_eq!(st, 200, "{l}");
    assert_eq!(
        (&l["auth"]["lease_duration"], &l["auth"]["metadata"]["coffer_name"]),
        (&json!(3600), &json!("ci"))
    );
    let token = l["auth"]["client_token"].as_str().unwrap();
    let (st, r) = with("a", Some(token))
        .get("/v1/secret/data/acme/api/production/DB")
        .await;
    assert_eq!(
        (st.as_u16(), &r["data"]["data"]),
        (200, &json!({"value": "postgres://p"})),
        "{r}"
    );
    let (st, _) = with("b", Some(token))
        .get("/v1/secret/data/acme/api/production/DB")
        .await;
    assert_eq!(st, 403, "a cert-login token is bound to its certificate");
    // Cert B maps to no account.
    let (st, e) = with("b", None).post("/v1/auth/cert/login", json!({})).await;
    assert_eq!((st.as_u16(), e), (403, json!({"errors": ["permission denied"]})));

    // userpass with TOTP: refused with a clear message, accepted through
    // Vault's MFA header.
    util::create_user(&root, "dev@acme.test", "correct horse battery").await;
    let dev = util::user_client(&with("a", None), "dev@acme.test", "correct horse battery").await;
    let e = util::ok_data(
        "totp enroll",
        dev.post("/api/v1/auth/totp/enroll", json!({"password": "correct horse battery"}))
            .await,
    );
    let secret = util::base32_decode(e["secret"].as_str().unwrap());
    let step = util::unix_now() / 30;
    util::ok_data(
        "totp verify",
        dev.post(
            "/api/v1/auth/totp/verify",
            json!({"code": util::totp_at(&secret, step - 1)}),
        )
        .await,
    );
    let anon = with("a", None);
    let login = "/v1/auth/userpass/login/dev@acme.test";
    let (st, e) = anon.post(login, json!({"password": "correct horse battery"})).await;
    assert_eq!(st, 400, "{e}");
    assert!(e["errors"][0].as_str().unwrap().contains("X-Vault-MFA"), "{e}");
    let res = tls_client(d, Some("a"))
        .post(format!("{}{login}", server.base))
        .header("X-Vault-MFA", format!("totp:{}", util::totp_at(&secret, step)))
        .json(&json!({"password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let l: Value = res.json().await.unwrap();
    assert_eq!(l["auth"]["policies"], json!(["default", "coffer-grants"]), "{l}");
}

/// `auth/token/create` never yields a broader token than asked for:
/// `["default"]` is Vault's self-only token (look itself up, renew, revoke
/// itself, nothing else), for root and for a user; a set coffer cannot
/// express is 400; the full set (or none) is the parent's grants.
#[tokio::test]
async fn vault_token_create_default_policy_is_self_only() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    util::write_secret(&root, util::ENV, "DB", "s3cret-db-value").await;
    util::create_user(&root, "dev@acme.test", "correct horse battery").await;
    util::add_member(&root, "acme", "dev@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "dev@acme.test", "project": "api", "environment": "production", "role": "developer"}),
    )
    .await;
    let dev = util::user_client(&anon, "dev@acme.test", "correct horse battery").await;

    for (who, parent, full) in [
        ("root", &root, json!(["root"])),
        ("user", &dev, json!(["default", "coffer-grants"])),
    ] {
        let (st, me) = parent.get("/v1/auth/token/lookup-self").await;
        assert_eq!((st.as_u16(), &me["data"]["policies"]), (200, &full), "{who}: {me}");

        let (st, l) = parent
            .post("/v1/auth/token/create", json!({"policies": ["default"], "ttl": "1h"}))
            .await;
        assert_eq!(st, 200, "{who}: {l}");
        assert_eq!(l["auth"]["policies"], json!(["default"]), "{who}: {l}");
        let small = anon.with_token(l["auth"]["client_token"].as_str().unwrap());
        let (st, me) = small.get("/v1/auth/token/lookup-self").await;
        assert_eq!(
            (st.as_u16(), &me["data"]["policies"]),
            (200, &json!(["default"])),
            "{who}: {me}"
        );
        let (st, r) = small.post("/v1/auth/token/renew-self", json!({})).await;
        assert_eq!(st, 200, "{who}: renew-self {r}");
        // Nothing else: no secret, no metadata, no child, no native route.
        for (method, path, body) in [
            ("GET", format!("/v1/secret/data/{PATH}"), None),
            ("GET", format!("/v1/secret/metadata/{PATH}"), None),
            ("GET", format!("/v1/secret/subkeys/{PATH}"), None),
            ("LIST", "/v1/secret/metadata/acme/api/production".to_owned(), None),
            (
                "POST",
                format!("/v1/secret/data/{PATH}"),
                Some(json!({"data": {"value": "x"}})),
            ),
            (
                "POST",
                "/v1/auth/token/create".to_owned(),
                Some(json!({"policies": ["default"]})),
            ),
            ("POST", "/v1/auth/token/create".to_owned(), Some(json!({}))),
            (
                "POST",
                "/v1/auth/token/lookup-accessor".to_owned(),
                Some(json!({"accessor": "x"})),
            ),
            ("GET", format!("{}/secrets/DB?reveal=true", util::ENV), None),
            ("POST", format!("{}/inject", util::ENV), None),
            ("GET", "/api/v1/auth/whoami".to_owned(), None),
            ("POST", "/api/v1/tokens".to_owned(), Some(json!({"name": "x"}))),
            ("GET", "/api/v1/orgs".to_owned(), None),
        ] {
            let (st, b) = small.req(method, &path, body).await;
            assert_eq!(st, 403, "{who}: {method} {path} with a default-policy token: {b}");
            assert!(!b.to_string().contains("s3cret-db-value"), "{b}");
        }
        let (st, _) = small.post("/v1/auth/token/revoke-self", json!({})).await;
        assert_eq!(st, 204, "{who}: revoke-self");
        let (st, _) = small.get("/v1/auth/token/lookup-self").await;
        assert_eq!(st, 403, "{who}: revoked");

        // The full set, or none, is the parent's grants; anything else is 400.
        for asked in [json!([]), full.clone()] {
            let (st, l) = parent.post("/v1/auth/token/create", json!({"policies": asked})).await;
            assert_eq!(
                (st.as_u16(), &l["auth"]["policies"]),
                (200, &full),
                "{who} asked {asked}: {l}"
            );
        }
        for asked in [
            json!(["admin"]),
            json!(["default", "admin"]),
            json!(["root", "coffer-grants"]),
        ] {
            let (st, e) = parent.post("/v1/auth/token/create", json!({"policies": asked})).await;
            assert_eq!(st, 400, "{who} asked {asked}: {e}");
        }
    }
    let (st, e) = dev.post("/v1/auth/token/create", json!({"policies": ["root"]})).await;
    assert_eq!(st, 400, "a user asking for root: {e}");
}

/// Permission edges of the KV mount: lowering `max_versions` deletes
/// history on the next write, so it needs delete (update alone may raise
/// it or change other metadata); `subkeys` decrypts, so it needs reveal
/// (read never decrypts).
#[tokio::test]
async fn kv_max_versions_needs_delete_and_subkeys_needs_reveal() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    let data = format!("/v1/secret/data/{PATH}");
    let meta = format!("/v1/secret/metadata/{PATH}");
    let sub = format!("/v1/secret/subkeys/{PATH}");
    for v in ["one", "two", "three"] {
        let (st, b) = root
            .post(&data, json!({"data": {"user": "app", "pass": format!("pw-{v}")}}))
            .await;
        assert_eq!(st, 200, "{b}");
    }
    let mut users = Vec::new();
    for (email, perms) in [
        ("updater@acme.test", json!(["read", "reveal", "create", "update"])),
        ("deleter@acme.test", json!(["read", "update", "delete"])),
        ("viewer@acme.test", json!(["read"])),
    ] {
        util::create_user(&root, email, "correct horse battery").await;
        util::add_member(&root, "acme", email, "member").await;
        util::grant(
            &root,
            "acme",
            json!({"user": email, "project": "api", "environment": "production", "permissions": perms}),
        )
        .await;
        users.push(util::user_client(&anon, email, "correct horse battery").await);
    }
    let (updater, deleter, viewer) = (&users[0], &users[1], &users[2]);

    // update without delete: no limit where there was none, nothing lower.
    let (st, b) = updater.post(&meta, json!({"max_versions": 1})).await;
    assert_eq!(st, 403, "update alone lowers max_versions: {b}");
    let (st, b) = updater
        .post(&meta, json!({"custom_metadata": {"owner": "payments"}}))
        .await;
    assert_eq!(st, 204, "other metadata needs update only: {b}");
    // delete may lower it; update may raise it again, not lower it.
    let (st, b) = deleter.post(&meta, json!({"max_versions": 5})).await;
    assert_eq!(st, 204, "{b}");
    let (st, b) = updater.post(&meta, json!({"max_versions": 10})).await;
    assert_eq!(st, 204, "raising needs update only: {b}");
    let (st, b) = updater.post(&meta, json!({"max_versions": 2})).await;
    assert_eq!(st, 403, "update alone lowers 10 -> 2: {b}");
    let (st, b) = updater.post(&meta, json!({"max_versions": 10})).await;
    assert_eq!(st, 204, "unchanged is not lower: {b}");
    // After the refused attempts a write keeps every version.
    let (st, b) = updater
        .post(&data, json!({"data": {"user": "app", "pass": "pw-four"}}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (_, m) = root.get(&meta).await;
    assert_eq!(m["data"]["versions"].as_object().map(|v| v.len()), Some(4), "{m}");
    assert_eq!(m["data"]["max_versions"], 10, "{m}");

    // subkeys: reveal yes, read alone no.
    let (st, b) = viewer.get(&sub).await;
    assert_eq!(st, 403, "subkeys with read only: {b}");
    let (st, b) = updater.get(&sub).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"]["subkeys"], json!({"user": null, "pass": null}), "{b}");
    let (st, b) = viewer.get(&meta).await;
    assert_eq!(st, 200, "metadata stays read: {b}");
}

/// `levels` objects and arrays alternating, outermost an object (a KV map).
fn nested_json(levels: usize) -> Value {
    let mut v = json!("leaf");
    for i in (0..levels).rev() {
        v = if i % 2 == 0 { json!({ "k": v }) } else { json!([v]) };
    }
    v
}

#[tokio::test]
async fn kv_and_native_refuse_json_deeper_than_the_limit_alike() {
    const LIMIT: usize = 64; // MAX_JSON_DEPTH in src/service/values.rs
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    let native = util::env_path("acme", "api", "production");
    let too_deep = nested_json(LIMIT + 1);
    let at_limit = nested_json(LIMIT);

    // One level over: 400 from both APIs, naming the limit and the depth.
    let (st, b) = root
        .post(
            &format!("{native}/secrets/DEEP"),
            json!({"value": too_deep.to_string(), "type": "json"}),
        )
        .await;
    assert_eq!(st, 400, "{b}");
    let msg = b.to_string();
    assert!(msg.contains("65 levels") && msg.contains("the limit is 64"), "{b}");
    let (st, b) = root
        .post("/v1/secret/data/acme/api/production/DEEP", json!({"data": too_deep}))
        .await;
    assert_eq!(st, 400, "{b}");
    let msg = b.to_string();
    assert!(msg.contains("65 levels") && msg.contains("the limit is 64"), "{b}");
    let (st, _) = root.get(&format!("{native}/secrets/DEEP")).await;
    assert_eq!(st, 404, "nothing stored");

    // At the limit: written natively, KV reads the same structure, and a
    // KV write of it reveals natively as the same JSON.
    let (st, b) = root
        .post(
            &format!("{native}/secrets/DEEP"),
            json!({"value": at_limit.to_string(), "type": "json"}),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = root.get("/v1/secret/data/acme/api/production/DEEP").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        b["data"]["data"], at_limit,
        "KV shows the object, not {{\"value\": text}}"
    );
    let (st, b) = root
        .post("/v1/secret/data/acme/api/production/DEEP2", json!({"data": at_limit}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (_, n) = root.get(&format!("{native}/secrets/DEEP2?reveal=true")).await;
    assert_eq!(n["data"]["type"], "json", "{n}");
    let revealed: Value = serde_json::from_str(n["data"]["value"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(revealed, at_limit, "{n}");
    // A KV PATCH of a deep value keeps it JSON and stays under the limit.
    let (st, b) = root
        .req(
            "PATCH",
            "/v1/secret/data/acme/api/production/DEEP2",
            Some(json!({"data": {"extra": nested_json(LIMIT + 1)}})),
        )
        .await;
    assert_eq!(st, 400, "a patch over the limit is refused too: {b}");
    let (_, b) = root.get("/v1/secret/data/acme/api/production/DEEP2").await;
    assert_eq!(b["data"]["data"], at_limit, "{b}");
}

/// A started server with the acme tenant, its root client and a user of
/// acme/api/production holding `perms`.
async fn with_user(perms: Value) -> (tempfile::TempDir, Server, util::Http, util::Http) {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    let email = "kv-user@acme.test";
    util::create_user(&root, email, "correct horse battery").await;
    util::add_member(&root, "acme", email, "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": email, "project": "api", "environment": "production", "permissions": perms}),
    )
    .await;
    let user = util::user_client(&anon, email, "correct horse battery").await;
    (dir, server, root, user)
}

/// Issue 24 item 9: deleting a key that never existed succeeds (Vault is
/// idempotent), still needs delete, and is audited.
#[tokio::test]
async fn vault_kv_delete_of_missing_key_is_idempotent() {
    let (_dir, _server, root, viewer) = with_user(json!(["read"])).await;
    let missing = "/v1/secret/data/acme/api/production/NEVER_WRITTEN";
    let (st, b) = root.delete(missing).await;
    assert_eq!(st, 204, "delete of a missing key: {b}");
    let (st, b) = root.delete(missing).await;
    assert_eq!(st, 204, "again: {b}");
    for op in ["delete", "undelete", "destroy"] {
        let (st, b) = root
            .post(
                &format!("/v1/secret/{op}/acme/api/production/NEVER_WRITTEN"),
                json!({"versions": [1]}),
            )
            .await;
        assert_eq!(st, 204, "{op} of a missing key: {b}");
    }
    let (st, b) = viewer.delete(missing).await;
    assert_eq!(st, 403, "delete still needs the delete permission: {b}");
    let (st, b) = root.get(missing).await;
    assert_eq!(st, 404, "nothing was created: {b}");
    let (st, found) = root.get("/api/v1/audit/records?org=acme&action=secret.delete").await;
    assert_eq!(st, 200, "{found}");
    let records = found["data"].as_array().expect("records");
    let of_key = records
        .iter()
        .filter(|r| r.to_string().contains("NEVER_WRITTEN"))
        .count();
    assert!(of_key >= 4, "each delete of the missing key is audited: {found}");
}

/// Issue 24 item 8: `?list=` takes Go's booleans (`1`, `t`, `T`, `TRUE`…),
/// and a key with metadata but no version is listed.
#[tokio::test]
async fn vault_kv_list_flags_and_metadata_only_keys() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    let (st, b) = root
        .post(&format!("/v1/secret/data/{PATH}"), json!({"data": {"value": "v"}}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = root
        .post(
            "/v1/secret/metadata/acme/api/production/PLANNED",
            json!({"custom_metadata": {"owner": "ops"}}),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let folder = "/v1/secret/metadata/acme/api/production/";
    for flag in ["true", "1", "t", "T", "TRUE", "True"] {
        let (st, b) = root.get(&format!("{folder}?list={flag}")).await;
        assert_eq!(st, 200, "list={flag}: {b}");
        assert_eq!(b["data"]["keys"], json!(["DB", "PLANNED"]), "list={flag}: {b}");
    }
    let (st, b) = root.req("LIST", folder, None).await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(b["data"]["keys"], json!(["DB", "PLANNED"]), "LIST: {b}");
    let (st, b) = root.get("/v1/secret/metadata/acme/api/production/PLANNED?list=0").await;
    assert_eq!(st, 200, "list=0 reads the metadata: {b}");
    assert_eq!(b["data"]["custom_metadata"], json!({"owner": "ops"}), "{b}");
    let (st, b) = root.get(&format!("{folder}?list=yes")).await;
    assert_eq!(st, 400, "list=yes is not a Go boolean: {b}");
    assert!(b.to_string().contains("list must be a boolean"), "{b}");
}

/// Issue 24 item 7: PATCH on metadata merges `custom_metadata` (JSON merge
/// patch: a key set to null is removed) instead of replacing it; POST
/// still replaces it.
#[tokio::test]
async fn vault_kv_metadata_patch_merges_custom_metadata() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    let meta = format!("/v1/secret/metadata/{PATH}");
    let (st, b) = root
        .post(&format!("/v1/secret/data/{PATH}"), json!({"data": {"value": "v"}}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = root
        .post(&meta, json!({"custom_metadata": {"owner": "ops", "tier": "gold"}}))
        .await;
    assert_eq!(st, 204, "{b}");
    let custom = |b: &Value| b["data"]["custom_metadata"].clone();

    let (st, b) = root
        .req(
            "PATCH",
            &meta,
            Some(json!({"custom_metadata": {"team": "payments", "tier": null}})),
        )
        .await;
    assert_eq!(st, 204, "{b}");
    let (_, b) = root.get(&meta).await;
    assert_eq!(custom(&b), json!({"owner": "ops", "team": "payments"}), "merged: {b}");

    // Other fields alone keep the custom metadata.
    let (st, b) = root.req("PATCH", &meta, Some(json!({"max_versions": 0}))).await;
    assert_eq!(st, 204, "{b}");
    let (_, b) = root.get(&meta).await;
    assert_eq!(custom(&b), json!({"owner": "ops", "team": "payments"}), "{b}");

    // A merged value must still be a string.
    let (st, b) = root
        .req("PATCH", &meta, Some(json!({"custom_metadata": {"owner": {"x": "y"}}})))
        .await;
    assert_eq!(st, 400, "{b}");

    // POST replaces.
    let (st, b) = root.post(&meta, json!({"custom_metadata": {"only": "this"}})).await;
    assert_eq!(st, 204, "{b}");
    let (_, b) = root.get(&meta).await;
    assert_eq!(custom(&b), json!({"only": "this"}), "replaced: {b}");

    // PATCH with null custom_metadata removes them all.
    let (st, b) = root.req("PATCH", &meta, Some(json!({"custom_metadata": null}))).await;
    assert_eq!(st, 204, "{b}");
    let (_, b) = root.get(&meta).await;
    assert_eq!(custom(&b), Value::Null, "cleared: {b}");

    // Nothing to patch: 404, as Vault.
    let (st, b) = root
        .req(
            "PATCH",
            "/v1/secret/metadata/acme/api/production/NOTHING_HERE",
            Some(json!({"custom_metadata": {"a": "b"}})),
        )
        .await;
    assert_eq!(st, 404, "{b}");
}

/// `auth/token/{lookup,renew,revoke}` by token and `…-accessor` by
/// accessor follow coffer's rules (issue 24 item 6): a principal's own
/// tokens, any token for root, an org admin its org's service accounts'.
/// Any other token answers exactly as a nonexistent one (lookup 403,
/// lookup/renew by accessor and renew 400, revoke 200 with a warning and
/// nothing revoked), and revoking a token revokes the tokens derived from it.
#[tokio::test]
async fn vault_token_lookup_renew_revoke_follow_coffer_rules() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    util::org_tree(&root, "other", &[("app", &["dev"])]).await;
    for (email, role) in [("ann@acme.test", "admin"), ("bob@acme.test", "member")] {
        util::create_user(&root, email, "correct horse battery").await;
        util::add_member(&root, "acme", email, role).await;
    }
    let ann = util::user_client(&anon, "ann@acme.test", "correct horse battery").await;
    let bob = util::user_client(&anon, "bob@acme.test", "correct horse battery").await;
    util::service_account(&root, "acme", "ci", json!({})).await;
    util::service_account(&root, "other", "ext", json!({})).await;

    let child = |parent: &util::Http| {
        let parent = parent.clone();
        async move {
            let (st, l) = parent.post("/v1/auth/token/create", json!({"ttl": "1h"})).await;
            assert_eq!(st, 200, "{l}");
            let t = l["auth"]["client_token"].as_str().unwrap().to_owned();
            util::remember_secret(&t);
            (t, l["auth"]["accessor"].as_str().unwrap().to_owned())
        }
    };
    let alive = |t: &str| {
        let c = anon.with_token(t);
        async move { c.get("/v1/auth/token/lookup-self").await.0 == 200 }
    };
    // What a caller sees of a token: the status of each of the six calls,
    // revoke last (a 204 ends the token).
    let probe = |who: &util::Http, token: &str, accessor: &str| {
        let (who, token, accessor) = (who.clone(), token.to_owned(), accessor.to_owned());
        async move {
            let mut seen = Vec::new();
            for (path, body) in [
                ("lookup", json!({"token": token})),
                ("lookup-accessor", json!({"accessor": accessor})),
                ("renew", json!({"token": token, "increment": "1h"})),
                ("renew-accessor", json!({"accessor": accessor})),
            ] {
                let (st, b) = who.post(&format!("/v1/auth/token/{path}"), body).await;
                seen.push((path, st.as_u16(), b["errors"].is_array()));
            }
            seen
        }
    };
    // lookup-self echoes the caller's own token as `id`.
    let own = |who: &util::Http| {
        let who = who.clone();
        async move {
            let (_, me) = who.get("/v1/auth/token/lookup-self").await;
            let d = &me["data"];
            (
                d["id"].as_str().unwrap().to_owned(),
                d["accessor"].as_str().unwrap().to_owned(),
            )
        }
    };
    let own_view = vec![
        ("lookup", 200, false),
        ("lookup-accessor", 200, false),
        ("renew", 200, false),
        ("renew-accessor", 200, false),
    ];
    let missing_view = vec![
        ("lookup", 403, true),
        ("lookup-accessor", 400, true),
        ("renew", 400, true),
        ("renew-accessor", 400, true),
    ];
    assert_eq!(probe(&bob, "cfr_no_such_token", "no-such-accessor").await, missing_view);

    // Own tokens: every call; lookup by token shows it as `id`, renewal
    // keeps the expiry (with a warning), revoke by token is 204.
    let (t, a) = child(&bob).await;
    assert_eq!(probe(&bob, &t, &a).await, own_view);
    let (st, l) = bob.post("/v1/auth/token/lookup", json!({"token": t})).await;
    assert_eq!(
        (
            st.as_u16(),
            &l["data"]["id"],
            &l["data"]["accessor"],
            &l["data"]["orphan"]
        ),
        (200, &json!(t), &json!(a), &json!(false)),
        "{l}"
    );
    let (_, r) = bob
        .post("/v1/auth/token/renew", json!({"token": t, "increment": "10h"}))
        .await;
    assert!(r["auth"]["lease_duration"].as_i64().unwrap() <= 3600, "{r}");
    assert_eq!(
        (
            r["auth"]["client_token"].as_str(),
            r["warnings"].as_array().map(Vec::len)
        ),
        (Some(t.as_str()), Some(1))
    );
    let (_, r) = bob.post("/v1/auth/token/renew-accessor", json!({"accessor": a})).await;
    assert_eq!(r["auth"]["client_token"], "", "{r}");
    let (st, _) = bob.post("/v1/auth/token/revoke", json!({"token": t})).await;
    assert_eq!(st, 204);
    assert!(!alive(&t).await);
    let (t, a) = child(&bob).await;
    let (st, _) = bob.post("/v1/auth/token/revoke-accessor", json!({"accessor": a})).await;
    assert_eq!(st, 204);
    assert!(!alive(&t).await);

    // Another user's token, and root's: exactly like a missing one; a
    // revoke leaves it alive and says so.
    let (t, a) = child(&bob).await;
    let (root_t, root_a) = own(&root).await;
    for (token, accessor) in [(t.as_str(), a.as_str()), (root_t.as_str(), root_a.as_str())] {
        assert_eq!(probe(&ann, token, accessor).await, missing_view);
        for (path, body) in [
            ("revoke", json!({"token": token})),
            ("revoke-accessor", json!({"accessor": accessor})),
        ] {
            let (st, b) = ann.post(&format!("/v1/auth/token/{path}"), body).await;
            assert_eq!(
                (st.as_u16(), b["warnings"].as_array().map(Vec::len)),
                (200, Some(1)),
                "{path}: {b}"
            );
            let (st, m) = ann
                .post(
                    &format!("/v1/auth/token/{path}"),
                    json!({"token": "cfr_x", "accessor": "x"}),
                )
                .await;
            assert_eq!(
                (st.as_u16(), &m["warnings"]),
                (200, &b["warnings"]),
                "{path}: same as a missing one"
            );
        }
        assert!(alive(token).await);
    }

    // Root: any token.
    assert_eq!(probe(&root, &t, &a).await, own_view);
    let (st, _) = root
        .post("/v1/auth/token/revoke-accessor", json!({"accessor": a}))
        .await;
    assert_eq!(st, 204);
    assert!(!alive(&t).await);

    // An org admin: its org's service accounts' tokens, not another org's.
    let ci = util::sa_token(&root, "acme", "ci", json!({})).await;
    let ext = util::sa_token(&root, "other", "ext", json!({})).await;
    let (ci_t, ci_a) = (ci["token"].as_str().unwrap(), ci["accessor"].as_str().unwrap());
    let (ext_t, ext_a) = (ext["token"].as_str().unwrap(), ext["accessor"].as_str().unwrap());
    assert_eq!(probe(&ann, ci_t, ci_a).await, own_view);
    assert_eq!(probe(&bob, ci_t, ci_a).await, missing_view, "a member is no admin");
    assert_eq!(probe(&ann, ext_t, ext_a).await, missing_view);
    let (st, _) = ann.post("/v1/auth/token/revoke", json!({"token": ci_t})).await;
    assert_eq!(st, 204);
    assert!(!alive(ci_t).await && alive(ext_t).await);

    // Revoking a token revokes what was derived from it, not its parent.
    let (t, _) = child(&bob).await;
    let (g, _) = child(&anon.with_token(&t)).await;
    let (st, _) = bob.post("/v1/auth/token/revoke", json!({"token": t})).await;
    assert_eq!(st, 204);
    let (bob_t, _) = own(&bob).await;
    assert!(!alive(&t).await && !alive(&g).await && alive(&bob_t).await);

    // Without a token, lookup is lookup-self; revoke and renew need one.
    let (st, me) = bob.post("/v1/auth/token/lookup", json!({})).await;
    assert_eq!((st.as_u16(), &me["data"]["id"]), (200, &json!(bob_t)));
    for path in ["revoke", "renew", "revoke-accessor", "renew-accessor"] {
        let (st, _) = bob.post(&format!("/v1/auth/token/{path}"), json!({})).await;
        assert_eq!(st, 400, "{path} without a token");
    }
}

/// The `sys/` reads and fields of issue 24 item 10: auth and audit lists,
/// capabilities from coffer's permissions, key status, the mount's tune,
/// Vault's 400 for a wrong userpass password, `orphan` and the root
/// token's `path`.
#[tokio::test]
async fn vault_sys_reads_and_token_fields() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    util::create_user(&root, "dev@acme.test", "correct horse battery").await;
    util::add_member(&root, "acme", "dev@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        json!({"user": "dev@acme.test", "project": "api", "environment": "production", "role": "developer"}),
    )
    .await;
    let dev = util::user_client(&anon, "dev@acme.test", "correct horse battery").await;

    // sys/auth: Vault's shape, the table at the top level and under data.
    for who in [&root, &dev] {
        let (st, b) = who.get("/v1/sys/auth").await;
        assert_eq!(st, 200, "{b}");
        let mut keys: Vec<&String> = b["data"].as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["cert/", "token/", "userpass/"]);
        assert_eq!(
            (&b["userpass/"]["type"], &b["data"]["token/"]["type"]),
            (&json!("userpass"), &json!("token"))
        );
    }
    // sys/audit and sys/key-status: root only.
    let (st, b) = root.get("/v1/sys/audit").await;
    assert_eq!(
        (st.as_u16(), &b["data"]["coffer/"]["type"]),
        (200, &json!("coffer")),
        "{b}"
    );
    let (st, b) = root.get("/v1/sys/key-status").await;
    assert_eq!(
        (st.as_u16(), &b["term"], &b["data"]["term"]),
        (200, &json!(1), &json!(1)),
        "{b}"
    );
    assert!(
        b["data"]["install_time"].as_str().is_some_and(|t| t.starts_with("20")),
        "{b}"
    );
    for path in ["/v1/sys/audit", "/v1/sys/key-status"] {
        let (st, b) = dev.get(path).await;
        assert_eq!(st, 403, "{path}: {b}");
    }
    // sys/mounts/secret/tune.
    let (st, b) = dev.get("/v1/sys/mounts/secret/tune").await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(
        (&b["data"]["options"]["version"], &b["max_lease_ttl"]),
        (&json!("2"), &json!(0)),
        "{b}"
    );

    // sys/capabilities-self from coffer's permissions.
    let data = format!("secret/data/{PATH}");
    let meta = format!("secret/metadata/{PATH}");
    let caps = |who: &util::Http, body: Value| {
        let who = who.clone();
        async move {
            let (st, b) = who.post("/v1/sys/capabilities-self", body).await;
            assert_eq!(st, 200, "{b}");
            b["data"].clone()
        }
    };
    let c = caps(&root, json!({"paths": [data, "sys/seal"]})).await;
    assert_eq!((&c[&data], &c["sys/seal"]), (&json!(["root"]), &json!(["root"])));
    let c = caps(
        &dev,
        json!({"paths": [data, meta, format!("secret/destroy/{PATH}"), "secret/data/other/x/y/K", "secret/metadata/acme/api/production/", "sys/seal", "auth/token/lookup-self"]}),
    )
    .await;
    assert_eq!(c[&data], json!(["create", "patch", "read", "update"]), "{c}");
    assert_eq!(c[&meta], json!(["create", "patch", "read", "update"]), "{c}");
    assert_eq!(
        c[format!("secret/destroy/{PATH}")],
        json!(["deny"]),
        "developer has no delete: {c}"
    );
    assert_eq!(c["secret/data/other/x/y/K"], json!(["deny"]), "{c}");
    assert_eq!(c["secret/metadata/acme/api/production/"], json!(["list"]), "{c}");
    assert_eq!(c["sys/seal"], json!(["deny"]), "{c}");
    assert_eq!(c["auth/token/lookup-self"], json!(["read", "update"]), "{c}");
    let c = caps(&dev, json!({"path": data})).await;
    assert_eq!(
        (&c["capabilities"], &c[&data]),
        (&json!(["create", "patch", "read", "update"]), &c[&data])
    );
    let (_, l) = dev
        .post("/v1/auth/token/create", json!({"policies": ["default"]}))
        .await;
    let small = anon.with_token(l["auth"]["client_token"].as_str().unwrap());
    let c = caps(&small, json!({"paths": [data, "auth/token/renew-self"]})).await;
    assert_eq!(
        (&c[&data], &c["auth/token/renew-self"]),
        (&json!(["deny"]), &json!(["update"])),
        "{c}"
    );

    // A wrong password: Vault's 400 on userpass, the native 401 stays.
    let (st, e) = anon
        .post(
            "/v1/auth/userpass/login/dev@acme.test",
            json!({"password": "wrong horse battery"}),
        )
        .await;
    assert_eq!(
        (st.as_u16(), &e["errors"]),
        (400, &json!(["invalid username or password"])),
        "{e}"
    );
    let (st, _) = anon
        .post(
            "/api/v1/auth/login",
            json!({"email": "dev@acme.test", "password": "wrong horse battery"}),
        )
        .await;
    assert_eq!(st, 401);

    // orphan and path: a login's and the root token are orphans, a derived
    // token is not; the root token's path is Vault's.
    let (_, me) = root.get("/v1/auth/token/lookup-self").await;
    assert_eq!(
        (&me["data"]["path"], &me["data"]["orphan"]),
        (&json!("auth/token/root"), &json!(true)),
        "{me}"
    );
    let (_, me) = dev.get("/v1/auth/token/lookup-self").await;
    assert_eq!(
        (&me["data"]["path"], &me["data"]["orphan"]),
        (&json!("auth/userpass/login/dev@acme.test"), &json!(true)),
        "{me}"
    );
    let (_, l) = dev.post("/v1/auth/token/create", json!({"ttl": "1h"})).await;
    assert_eq!(l["auth"]["orphan"], false, "{l}");
    let (_, me) = anon
        .with_token(l["auth"]["client_token"].as_str().unwrap())
        .get("/v1/auth/token/lookup-self")
        .await;
    assert_eq!(
        (&me["data"]["path"], &me["data"]["orphan"]),
        (&json!("auth/token/create"), &json!(false)),
        "{me}"
    );
}

/// Issue 24 item 5 / issue 15: concurrent plain writes to one key never
/// fail — writers of a key take turns instead of losing a compare-and-set —
/// and concurrent metadata patches of one key lose no change.
#[tokio::test]
async fn concurrent_writes_to_one_key_all_land_and_patches_lose_nothing() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::tenant(&root).await;
    const TASKS: usize = 8;
    const EACH: usize = 20;
    let kv = format!("/v1/secret/data/{PATH}");
    let native = "/api/v1/orgs/acme/projects/api/environments/production/secrets/DB";
    let mut writers = Vec::new();
    for t in 0..TASKS {
        let (root, kv) = (root.clone(), kv.clone());
        writers.push(tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in 0..EACH {
                // Both APIs write the same secret.
                let (st, b) = if (t + i) % 2 == 0 {
                    root.post(&kv, json!({"data": {"value": format!("kv-{t}-{i}")}})).await
                } else {
                    root.put(native, json!({"value": format!("native-{t}-{i}")})).await
                };
                if !st.is_success() {
                    failed.push(format!("{st} {b}"));
                }
            }
            failed
        }));
    }
    let mut failed = Vec::new();
    for w in writers {
        failed.extend(w.await.expect("writer task"));
    }
    assert!(
        failed.is_empty(),
        "{} of {} writes failed: {failed:?}",
        failed.len(),
        TASKS * EACH
    );
    let (st, meta) = root.get(&format!("/v1/secret/metadata/{PATH}")).await;
    assert_eq!(st, 200, "{meta}");
    assert_eq!(
        meta["data"]["current_version"],
        json!(TASKS * EACH),
        "every write made exactly one version: {meta}"
    );
    let (st, history) = root.get(&format!("{native}/history")).await;
    assert_eq!(st, 200, "{history}");
    assert_eq!(
        history["data"].as_array().map(Vec::len),
        Some(TASKS * EACH),
        "{history}"
    );

    // Concurrent merges of custom_metadata: each adds its own key; all stay.
    let meta_path = format!("/v1/secret/metadata/{PATH}");
    let mut patches = Vec::new();
    for i in 0..24 {
        let (root, meta_path) = (root.clone(), meta_path.clone());
        patches.push(tokio::spawn(async move {
            root.req(
                "PATCH",
                &meta_path,
                Some(json!({"custom_metadata": {format!("k{i}"): "v"}})),
            )
            .await
        }));
    }
    for p in patches {
        let (st, b) = p.await.expect("patch task");
        assert_eq!(st, 204, "metadata patch: {b}");
    }
    let (st, meta) = root.get(&meta_path).await;
    assert_eq!(st, 200, "{meta}");
    let custom = meta["data"]["custom_metadata"].as_object().cloned().unwrap_or_default();
    let missing: Vec<String> = (0..24)
        .map(|i| format!("k{i}"))
        .filter(|k| !custom.contains_key(k))
        .collect();
    assert!(missing.is_empty(), "concurrent patches lost {missing:?}: {meta}");
}
