//! JWT/OIDC workload-identity login (issue 19) on the real binary, with a
//! local OIDC issuer in the test (discovery document + JWKS over HTTP, test
//! keys under tests/fixtures/jwt): a valid RS256 or ES256 token gets a token
//! of the role's service account that reads only its grants, and
//! `coffer login --jwt` + `coffer run` inject them; wrong audience, expired,
//! a mismatched bound claim, an unknown kid, `alg: none`, HS256 signed with
//! the RSA public key and an alg that does not fit the key are refused
//! with what is wrong, and audited without the token; a key rotated at the
//! issuer is picked up, with unknown-kid refetches rate-limited; Vault's
//! `auth/jwt/login` answers Vault's auth shape. Runs on SQLite and
//! PostgreSQL (`COFFER_TEST_STORAGE`).

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, Method};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::util::{self, ENV, Http, Server};

const AUD: &str = "https://coffer.acme.test";
const DB_URL: &str = "postgres://deploy:jwt-secret-value-9@db/app";
const STAGING_KEY: &str = "staging-only-secret-value-4";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

fn public_jwk(kid: &str) -> Value {
    let all: Value = serde_json::from_slice(&fixture("public-jwks.json")).expect("jwks json");
    all[kid].clone()
}

/// The local issuer's state: which keys its JWKS serves, and what it saw.
#[derive(Default)]
struct IssuerState {
    base: Mutex<String>,
    kids: Mutex<Vec<&'static str>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    /// requests that were not a plain GET asking for JSON
    bad_requests: AtomicUsize,
}

/// A local OIDC issuer: `/.well-known/openid-configuration` and `/jwks`.
#[derive(Clone)]
struct Issuer {
    base: String,
    state: Arc<IssuerState>,
}

fn check_request(state: &IssuerState, method: &Method, headers: &HeaderMap) {
    let accepts_json = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    if method != Method::GET || !accepts_json {
        state.bad_requests.fetch_add(1, Ordering::SeqCst);
    }
}

impl Issuer {
    fn start(kids: &[&'static str]) -> Issuer {
        let state = Arc::new(IssuerState::default());
        *state.kids.lock().unwrap() = kids.to_vec();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(
                    |State(s): State<Arc<IssuerState>>, method: Method, headers: HeaderMap| async move {
                        check_request(&s, &method, &headers);
                        s.discovery_hits.fetch_add(1, Ordering::SeqCst);
                        let base = s.base.lock().unwrap().clone();
                        axum::Json(json!({
                            "issuer": base,
                            "jwks_uri": format!("{base}/jwks"),
                            "subject_types_supported": ["public", "pairwise"],
                            "response_types_supported": ["id_token"],
                            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref",
                                                 "repository", "environment", "workflow"],
                            "id_token_signing_alg_values_supported": ["RS256"],
                            "scopes_supported": ["openid"],
                        }))
                    },
                ),
            )
            .route(
                "/jwks",
                axum::routing::get(
                    |State(s): State<Arc<IssuerState>>, method: Method, headers: HeaderMap| async move {
                        check_request(&s, &method, &headers);
                        s.jwks_hits.fetch_add(1, Ordering::SeqCst);
                        let kids = s.kids.lock().unwrap().clone();
                        axum::Json(json!({ "keys": kids.iter().map(|k| public_jwk(k)).collect::<Vec<_>>() }))
                    },
                ),
            )
            .with_state(state.clone());
        // On a thread of its own: the test blocks its runtime while the
        // CLI runs, and the server fetches keys meanwhile.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("issuer runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap()).unwrap();
                let _ = axum::serve(listener, app).await;
            });
        });
        let base = format!("http://{}", rx.recv().expect("issuer address"));
        *state.base.lock().unwrap() = base.clone();
        Issuer { base, state }
    }

    fn rotate_to(&self, kids: &[&'static str]) {
        *self.state.kids.lock().unwrap() = kids.to_vec();
    }

    fn hits(&self) -> (usize, usize) {
        (
            self.state.discovery_hits.load(Ordering::SeqCst),
            self.state.jwks_hits.load(Ordering::SeqCst),
        )
    }

    /// GitHub-Actions-shaped claims of acme/api on main, production.
    fn claims(&self) -> Value {
        let now = util::unix_now();
        json!({
            "iss": self.base,
            "aud": AUD,
            "sub": "repo:acme/api:environment:production",
            "repository": "acme/api",
            "repository_owner": "acme",
            "ref": "refs/heads/main",
            "environment": "production",
            "workflow": "deploy",
            "run_id": "4242",
            "jti": "5d3c1a0e-jti",
            "iat": now,
            "nbf": now - 5,
            "exp": now + 300,
        })
    }
}

/// Sign `claims` with test key `kid` (rsa1, rsa2: RS256; ec1: ES256).
fn sign(kid: &str, claims: &Value) -> String {
    let (alg, key) = match kid {
        "ec1" => (Algorithm::ES256, EncodingKey::from_ec_der(&fixture("ec1.p8.der"))),
        "rsa1" | "rsa2" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_der(&fixture(&format!("{kid}.pk1.der"))),
        ),
        other => panic!("no test key {other}"),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_owned());
    let t = jsonwebtoken::encode(&h, claims, &key).expect("sign");
    util::remember_secret(&t);
    t
}

/// A token signed by `rsa1` whose header claims another `kid`.
fn sign_as(kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_der(&fixture("rsa1.pk1.der"))).expect("sign")
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

struct World {
    server: Server,
    root: Http,
    anon: Http,
    issuer: Issuer,
    home: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl World {
    /// acme/api/{production,staging} with a secret each; service account
    /// `deployer` may read, reveal and export production only; issuer `ci`
    /// (GitHub preset pointed at the local issuer) and role `deploy`.
    async fn new() -> World {
        let dir = util::tempdir();
        let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
        let anon = server.client(None);
        let (root, _) = util::boot(&anon).await;
        util::tenant(&root).await;
        util::ok_data(
            "staging",
            root.post(
                "/api/v1/orgs/acme/projects/api/environments",
                json!({"slug": "staging", "name": "Staging"}),
            )
            .await,
        );
        util::write_secret(&root, ENV, "DB_URL", DB_URL).await;
        util::write_secret(
            &root,
            &util::env_path("acme", "api", "staging"),
            "ONLY_STAGING",
            STAGING_KEY,
        )
        .await;
        util::service_account(&root, "acme", "deployer", json!({})).await;
        util::grant(
            &root,
            "acme",
            json!({"service_account": "deployer", "project": "api", "environment": "production",
                   "permissions": ["read", "reveal", "export"]}),
        )
        .await;
        let issuer = Issuer::start(&["rsa1", "ec1"]);
        let w = World {
            server,
            root,
            anon,
            issuer,
            home: util::tempdir(),
            _dir: dir,
        };
        // Issuer and role through the CLI, as an admin would.
        let out = w.cli(
            &[
                "jwt",
                "issuer",
                "add",
                "ci",
                "--preset",
                "github",
                "--issuer",
                &w.issuer.base,
            ],
            true,
        );
        assert!(out.status.success(), "issuer add: {}", text(&out));
        assert!(stdout(&out).contains("keys from discovery"), "{}", text(&out));
        let out = w.cli(
            &[
                "jwt",
                "role",
                "add",
                "deploy",
                "--issuer",
                "ci",
                "--audience",
                AUD,
                "--service-account",
                "deployer",
                "--bound-claim",
                "repository=acme/api",
                "--bound-claim",
                "ref=refs/heads/main",
                "--bound-claim",
                "ref=refs/tags/v*",
                "--bound-claim",
                "environment=production",
            ],
            true,
        );
        assert!(out.status.success(), "role add: {}", text(&out));
        w
    }

    /// `coffer ARGS` with a temp HOME, acme/api/production, and the root
    /// token when `as_root`.
    fn cli(&self, args: &[&str], as_root: bool) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.args(args)
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("COFFER_TOKEN")
            .env("COFFER_ADDR", &self.server.base)
            .env("COFFER_ORG", "acme")
            .env("COFFER_PROJECT", "api")
            .env("COFFER_ENV", "production")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if as_root {
            cmd.env("COFFER_TOKEN", self.root.token());
        }
        cmd.output().expect("run coffer")
    }

    async fn login(&self, body: Value) -> (u16, Value) {
        let (st, b) = self.anon.post("/api/v1/auth/jwt/login", body).await;
        (st.as_u16(), b)
    }

    /// A refused native login: 401 `jwt_refused` whose message has `want`
    /// and not the token.
    async fn refused(&self, what: &str, jwt: &str, want: &str) {
        let (st, b) = self.login(json!({"org": "acme", "role": "deploy", "jwt": jwt})).await;
        assert_eq!((st, b["code"].as_str()), (401, Some("jwt_refused")), "{what}: {b}");
        let msg = b["message"].as_str().unwrap_or("");
        assert!(msg.contains(want), "{what}: {msg:?} should say {want:?}");
        assert!(!b.to_string().contains(jwt), "{what}: the answer echoes the token");
        for part in jwt.split('.').filter(|p| p.len() > 8) {
            assert!(
                !b.to_string().contains(part),
                "{what}: the answer echoes a part of the token"
            );
        }
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn jwt_login_gives_a_scoped_token_that_coffer_run_injects() {
    let w = World::new().await;
    assert_eq!(w.issuer.state.bad_requests.load(Ordering::SeqCst), 0);
    // RS256 over the native route: the service account's token.
    let jwt = sign("rsa1", &w.issuer.claims());
    let (st, s) = w.login(json!({"org": "acme", "role": "deploy", "jwt": jwt})).await;
    assert_eq!(st, 200, "{s}");
    let s = &s["data"];
    assert_eq!(s["service_account"], "deployer", "{s}");
    assert_eq!((s["org"].as_str(), s["role"].as_str()), (Some("acme"), Some("deploy")));
    assert_eq!(s["expires_in"], 900, "default max TTL is 15 min: {s}");
    let token = s["access_token"].as_str().expect("token").to_owned();
    util::remember_secret(&token);
    let sa = w.anon.with_token(&token);
    let me = util::ok_data("whoami", sa.get("/api/v1/auth/whoami").await);
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str()),
        (Some("service_account"), Some("deployer"))
    );
    // It reads its grants, and nothing else.
    let v = util::ok_data("reveal", sa.get(&format!("{ENV}/secrets/DB_URL?reveal=true")).await);
    assert_eq!(v["value"], DB_URL, "{v}");
    let (st, b) = sa
        .get(&format!(
            "{}/secrets/ONLY_STAGING?reveal=true",
            util::env_path("acme", "api", "staging")
        ))
        .await;
    assert!(matches!(st.as_u16(), 403 | 404), "staging is not granted: {st} {b}");
    assert!(!b.to_string().contains(STAGING_KEY));
    let (st, b) = sa.get("/api/v1/orgs/acme/jwt/roles").await;
    assert_eq!(st.as_u16(), 403, "the account cannot manage roles: {b}");

    // ES256 works too; a tag ref matches the `refs/tags/v*` glob.
    let mut c = w.issuer.claims();
    c["ref"] = json!("refs/tags/v1.4.2");
    let (st, b) = w.login(json!({"role": "deploy", "jwt": sign("ec1", &c)})).await;
    assert_eq!(st, 200, "ES256 with no org (the role name is unique): {b}");

    // The CI path: `coffer login --jwt … --role deploy` then `coffer run`.
    let jwt = sign("rsa1", &w.issuer.claims());
    let out = w.cli(&["login", "--jwt", &jwt, "--role", "deploy", "--org", "acme"], false);
    assert!(out.status.success(), "coffer login --jwt: {}", text(&out));
    assert!(stdout(&out).contains("deployer (service_account)"), "{}", text(&out));
    assert!(!text(&out).contains(&jwt), "the CLI printed the ID token");
    let out = w.cli(&["run", "--", "sh", "-c", "printf '%s' \"$DB_URL\""], false);
    assert!(out.status.success(), "coffer run: {}", text(&out));
    assert_eq!(stdout(&out), DB_URL);
    let out = w.cli(
        &[
            "run",
            "--env",
            "staging",
            "--",
            "sh",
            "-c",
            "printf '%s' \"$ONLY_STAGING\"",
        ],
        false,
    );
    assert!(!out.status.success(), "staging must be refused: {}", text(&out));
    assert!(!stdout(&out).contains(STAGING_KEY));

    // Listings show what was configured (no secret exists to hide).
    let roles = util::ok_data("roles", w.root.get("/api/v1/orgs/acme/jwt/roles").await);
    assert_eq!(
        roles[0]["bound_claims"]["ref"],
        json!(["refs/heads/main", "refs/tags/v*"]),
        "{roles}"
    );
    let out = w.cli(&["jwt", "issuer", "list"], true);
    assert!(stdout(&out).contains(&w.issuer.base), "{}", text(&out));
    // An issuer in use cannot go; the role first, then the issuer.
    let out = w.cli(&["jwt", "issuer", "remove", "ci"], true);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(w.cli(&["jwt", "role", "remove", "deploy"], true).status.success());
    assert!(w.cli(&["jwt", "issuer", "remove", "ci"], true).status.success());
    let (st, _) = w
        .login(json!({"org": "acme", "role": "deploy", "jwt": sign("rsa1", &w.issuer.claims())}))
        .await;
    assert_eq!(st, 404, "a removed role logs nobody in");
    assert_eq!(w.issuer.state.bad_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn jwt_login_refuses_bad_tokens_and_audits_without_the_token() {
    let w = World::new().await;
    let mut c = w.issuer.claims();
    c["aud"] = json!("https://someone-else.test");
    w.refused("wrong audience", &sign("rsa1", &c), "wrong audience").await;

    let mut c = w.issuer.claims();
    c["exp"] = json!(util::unix_now() - 3600);
    c["iat"] = json!(util::unix_now() - 4000);
    c["nbf"] = json!(util::unix_now() - 4000);
    w.refused("expired", &sign("rsa1", &c), "expired").await;

    let mut c = w.issuer.claims();
    c["ref"] = json!("refs/heads/feature-x");
    w.refused("mismatched claim", &sign("ec1", &c), "claim `ref` mismatched")
        .await;

    w.refused(
        "unknown kid",
        &sign_as("not-a-key", &w.issuer.claims()),
        "unknown key id (kid) \"not-a-key\"",
    )
    .await;

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa1"})),
        b64(&w.issuer.claims())
    );
    w.refused("alg none", &none, "alg \"none\"").await;

    // The classic key confusion: HMAC keyed with the RSA public key.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa1".to_owned());
    let hs = jsonwebtoken::encode(
        &h,
        &w.issuer.claims(),
        &EncodingKey::from_secret(&fixture("rsa1.pub.pem")),
    )
    .expect("hs256");
    w.refused(
        "HS256 with the public key",
        &hs,
        "\"HS256\" (a shared-secret MAC) is never accepted",
    )
    .await;

    // An RS256 header naming the EC key: the key type decides.
    w.refused(
        "alg/kty mismatch",
        &sign_as("ec1", &w.issuer.claims()),
        "does not match key \"ec1\"",
    )
    .await;

    // A valid token signed by the right key but for another key id fails
    // the signature (rsa1 signed, rsa1 named: fine; tampered payload: not).
    let good = sign("rsa1", &w.issuer.claims());
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut c = w.issuer.claims();
    c["repository"] = json!("acme/api");
    c["environment"] = json!("production");
    c["sub"] = json!("repo:evil/fork:environment:production");
    parts[1] = b64(&c);
    w.refused("tampered payload", &parts.join("."), "signature does not verify")
        .await;

    // The audit log names role, issuer and (verified) sub, never the token.
    let data = util::ok_data(
        "audit",
        w.root
            .get("/api/v1/audit/records?org=acme&action=auth.jwt_login&limit=100")
            .await,
    );
    let records = data["records"]
        .as_array()
        .or_else(|| data.as_array())
        .cloned()
        .unwrap_or_default();
    let denied: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "denied").collect();
    assert!(denied.len() >= 8, "every refusal is recorded: {records:?}");
    assert!(
        denied
            .iter()
            .all(|r| r["actor"].as_str().unwrap_or("").starts_with("jwt role=deploy")),
        "{denied:?}"
    );
    assert!(
        denied
            .iter()
            .any(|r| r["actor"].as_str().unwrap_or("").contains(&format!(
                "iss={} sub=repo:acme/api:environment:production",
                w.issuer.base
            ))),
        "a refusal after the signature verified names the sub: {denied:?}"
    );
    assert!(
        !denied
            .iter()
            .any(|r| r["actor"].as_str().unwrap_or("").contains("evil/fork")),
        "an unverified sub is never recorded"
    );
    let all = serde_json::to_string(&records).unwrap();
    for jwt in [&good, &hs, &none] {
        for part in jwt.split('.').filter(|p| p.len() > 8) {
            assert!(!all.contains(part), "the audit log holds part of a token");
        }
    }

    // Failed logins count against the source's login limit (10 a minute):
    // the next refusals turn into 429.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (st, _) = w
            .login(json!({"org": "acme", "role": "deploy", "jwt": sign_as("nope", &w.issuer.claims())}))
            .await;
        statuses.push(st);
    }
    assert!(
        statuses.contains(&429),
        "rate-limited after repeated failures: {statuses:?}"
    );
    let (st, _) = w
        .login(json!({"org": "acme", "role": "deploy", "jwt": sign("rsa1", &w.issuer.claims())}))
        .await;
    assert_eq!(st, 429, "a blocked source is refused before any check");
}

#[tokio::test]
async fn jwt_key_rotation_is_followed_and_refetches_are_rate_limited() {
    let w = World::new().await;
    let at_add = w.issuer.hits();
    assert_eq!(at_add, (1, 1), "adding the issuer fetched discovery and JWKS once");
    let ok = |kid: &'static str| {
        let w = &w;
        async move {
            w.login(json!({"org": "acme", "role": "deploy", "jwt": sign(kid, &w.issuer.claims())}))
                .await
        }
    };
    assert_eq!(ok("rsa1").await.0, 200);
    assert_eq!(ok("ec1").await.0, 200);
    assert_eq!(w.issuer.hits(), at_add, "cached keys: no fetch per login");

    // The issuer rotates: rsa2 replaces rsa1.
    w.issuer.rotate_to(&["rsa2", "ec1"]);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, b) = ok("rsa2").await;
    assert_eq!(st, 200, "the new key is fetched on its unknown kid: {b}");
    assert_eq!(w.issuer.hits(), (2, 2), "one refetch");
    // The old key is gone; unknown kids right after a fetch fetch nothing.
    let (st, b) = ok("rsa1").await;
    assert_eq!(st, 401, "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("fetched less than"), "{b}");
    w.refused("junk kid", &sign_as("junk-1", &w.issuer.claims()), "unknown key id")
        .await;
    assert_eq!(w.issuer.hits(), (2, 2), "unknown kids do not hammer the issuer");
    assert_eq!(ok("rsa2").await.0, 200);
    assert_eq!(w.issuer.state.bad_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn jwt_vault_wire_login_answers_vaults_auth_shape() {
    let w = World::new().await;
    let jwt = sign("rsa1", &w.issuer.claims());
    let (st, b) = w
        .anon
        .post("/v1/auth/jwt/login", json!({"role": "deploy", "jwt": jwt}))
        .await;
    assert_eq!(st, 200, "{b}");
    for k in [
        "request_id",
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(b.get(k).is_some(), "envelope field {k} in {b}");
    }
    let auth = &b["auth"];
    assert_eq!(auth["policies"], json!(["default", "coffer-grants"]), "{auth}");
    assert_eq!(auth["token_policies"], auth["policies"]);
    assert_eq!(auth["lease_duration"], 900);
    assert_eq!(auth["renewable"], false);
    assert_eq!(auth["orphan"], true);
    assert_eq!(auth["token_type"], "service");
    assert_eq!(auth["metadata"]["role"], "deploy");
    assert_eq!(auth["metadata"]["org"], "acme");
    assert_eq!(auth["metadata"]["coffer_name"], "deployer");
    assert!(auth["accessor"].as_str().is_some_and(|a| !a.is_empty()));
    let token = auth["client_token"].as_str().expect("client_token").to_owned();
    util::remember_secret(&token);
    // The token works with X-Vault-Token.
    let client = reqwest::Client::new();
    let me: Value = client
        .get(format!("{}/v1/auth/token/lookup-self", w.server.base))
        .header("X-Vault-Token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["data"]["meta"]["coffer_name"], "deployer", "{me}");
    assert_eq!(me["data"]["policies"], json!(["default", "coffer-grants"]), "{me}");

    // X-Vault-Namespace names the organization; PUT is POST.
    let r = client
        .put(format!("{}/v1/auth/jwt/login", w.server.base))
        .header("X-Vault-Namespace", "acme")
        .json(&json!({"role": "deploy", "jwt": sign("ec1", &w.issuer.claims())}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A refusal: Vault's 400 {"errors": [reason]}, no token in it.
    let mut c = w.issuer.claims();
    c["environment"] = json!("staging");
    let bad = sign("rsa1", &c);
    let (st, b) = w
        .anon
        .post("/v1/auth/jwt/login", json!({"role": "deploy", "jwt": bad}))
        .await;
    assert_eq!(st, 400, "{b}");
    let msg = b["errors"][0].as_str().unwrap_or("");
    assert!(msg.contains("claim `environment` mismatched"), "{b}");
    assert!(!b.to_string().contains(&bad));
    let (st, b) = w
        .anon
        .post("/v1/auth/jwt/login", json!({"role": "nobody", "jwt": jwt}))
        .await;
    assert_eq!(st, 404, "{b}");
}

#[tokio::test]
async fn jwt_roles_must_pin_the_repository_and_issuers_must_be_reachable() {
    let w = World::new().await;
    let role = |extra: Value| {
        let mut body = json!({"name": "r2", "issuer": "ci", "audience": AUD, "service_account": "deployer"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        body
    };
    for (what, extra, want) in [
        ("no bound claim", json!({}), "bound claims"),
        (
            "only ref",
            json!({"bound_claims": {"ref": "refs/heads/main"}}),
            "must bind one of",
        ),
        (
            "wildcard repo",
            json!({"bound_claims": {"repository": "*"}}),
            "must bind one of",
        ),
        (
            "typo",
            json!({"bound_claims": {"repo": "acme/api"}}),
            "claim `repo` is not a github claim",
        ),
        (
            "no audience",
            json!({"audience": " ", "bound_claims": {"repository": "acme/api"}}),
            "audience is required",
        ),
        (
            "ttl",
            json!({"max_ttl": "13h", "bound_claims": {"repository": "acme/api"}}),
            "max_ttl",
        ),
    ] {
        let (st, b) = w.root.post("/api/v1/orgs/acme/jwt/roles", role(extra)).await;
        assert_eq!(st.as_u16(), 400, "{what}: {b}");
        assert!(b["message"].as_str().unwrap_or("").contains(want), "{what}: {b}");
    }
    let made = util::ok_data(
        "role with 1h",
        w.root
            .post(
                "/api/v1/orgs/acme/jwt/roles",
                role(json!({"max_ttl": "1h", "bound_claims": {"repository_owner": "acme"}})),
            )
            .await,
    );
    assert_eq!(made["max_ttl"], 3600);
    let (st, b) = w
        .login(json!({"org": "acme", "role": "r2", "jwt": sign("rsa1", &w.issuer.claims())}))
        .await;
    assert_eq!((st, b["data"]["expires_in"].as_i64()), (200, Some(3600)), "{b}");

    // Issuers: plain http only on loopback; a dead URL fails at creation.
    for (what, body, status) in [
        (
            "http remote",
            json!({"name": "x", "issuer": "http://issuer.example"}),
            400,
        ),
        (
            "two sources",
            json!({"name": "x", "issuer": w.issuer.base, "jwks_url": format!("{}/jwks", w.issuer.base),
                               "discovery_url": format!("{}/.well-known/openid-configuration", w.issuer.base)}),
            400,
        ),
        ("unreachable", json!({"name": "x", "issuer": "http://127.0.0.1:9"}), 422),
        (
            "wrong issuer in discovery",
            json!({"name": "x", "issuer": format!("{}/other", w.issuer.base),
                               "discovery_url": format!("{}/.well-known/openid-configuration", w.issuer.base)}),
            422,
        ),
    ] {
        let (st, b) = w.root.post("/api/v1/orgs/acme/jwt/issuers", body).await;
        assert_eq!(st.as_u16(), status, "{what}: {b}");
    }
    // A static JWKS needs no fetch.
    let before = w.issuer.hits();
    let jwks = json!({"keys": [public_jwk("ec1")]});
    let i = util::ok_data(
        "static issuer",
        w.root
            .post(
                "/api/v1/orgs/acme/jwt/issuers",
                json!({"name": "static", "issuer": "https://static.issuer.test", "jwks": jwks}),
            )
            .await,
    );
    assert_eq!(
        (i["source"].as_str(), i["static_kids"].clone()),
        (Some("static"), json!(["ec1"]))
    );
    util::ok_data(
        "static role",
        w.root
            .post(
                "/api/v1/orgs/acme/jwt/roles",
                json!({"name": "s", "issuer": "static", "audience": AUD, "service_account": "deployer",
                       "bound_claims": {"sub": "job-*"}}),
            )
            .await,
    );
    let mut c = w.issuer.claims();
    c["iss"] = json!("https://static.issuer.test");
    c["sub"] = json!("job-17");
    let (st, b) = w
        .login(json!({"org": "acme", "role": "s", "jwt": sign("ec1", &c)}))
        .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = w
        .login(json!({"org": "acme", "role": "s", "jwt": sign("rsa1", &c)}))
        .await;
    assert_eq!(st, 401, "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("static key set"), "{b}");
    assert_eq!(w.issuer.hits(), before);
}
