//! CI sync targets (issue 19, part 1) on the real binary against a local
//! fake GitHub API and a local fake GitLab API, each speaking the real
//! request and response shapes and checking the auth headers. The fake
//! GitHub holds an X25519 key pair and opens every sealed box with its
//! private key, so each value it stores was decrypted there. Failure
//! injection (500, 429 with Retry-After, a timeout) is retried to success
//! with nothing lost or duplicated; a deleted key is deleted at the target;
//! reconcile reports a hand-edited value (GitLab: the value; GitHub: the
//! secret's `updated_at`); no API answer or log line carries a credential.
//! Runs on SQLite and PostgreSQL (`COFFER_TEST_STORAGE`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use crate::util::{self, Http, Server};

pub(crate) const GH_TOKEN: &str = "github_pat_11TESTTOKENabcdefghijklmnop";
const GL_TOKEN: &str = "glpat-TESTtokenABCDEFGHIJ0123";

/// An injected failure, used by the next write request.
#[derive(Debug, Clone, Copy)]
enum Fail {
    /// 500 Internal Server Error
    Status500,
    /// 429 with `Retry-After: n`
    TooMany(u64),
    /// answer after this many ms (longer than the target's timeout)
    Slow(u64),
}

/// Take the next injected failure, if any: an error response, or a delay.
async fn inject(plan: &Mutex<VecDeque<Fail>>) -> Option<Response> {
    let next = plan.lock().unwrap().pop_front();
    match next {
        Some(Fail::Status500) => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"message": "Server Error"})),
            )
                .into_response(),
        ),
        Some(Fail::TooMany(s)) => Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", s.to_string())],
                Json(json!({"message": "You have exceeded a secondary rate limit"})),
            )
                .into_response(),
        ),
        Some(Fail::Slow(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
        None => None,
    }
}

// ---------------------------------------------------------------- GitHub

#[derive(Debug, Clone)]
struct GhSecret {
    value: String,
    created_at: String,
    updated_at: String,
}

/// A GitHub App the fake knows: its id, its installation, the public key
/// that verifies its JWTs, and the lifetimes of the next installation
/// tokens it issues (seconds; empty: an hour).
struct GhApp {
    app_id: String,
    installation_id: String,
    key: jsonwebtoken::DecodingKey,
    ttls: VecDeque<i64>,
}

pub(crate) struct GhInner {
    sk: crypto_box::SecretKey,
    /// bearer tokens GitHub accepts, with their expiry (unix ms)
    tokens: Mutex<Vec<(String, u128)>>,
    /// the bearer token of each write (PUT), in order
    pub(crate) put_tokens: Mutex<Vec<String>>,
    app: Mutex<Option<GhApp>>,
    /// installation tokens issued
    pub(crate) exchanges: AtomicUsize,
    /// App JWTs refused (bad signature, claims or lifetime)
    pub(crate) bad_jwts: AtomicUsize,
    key_id: String,
    owner: String,
    repo: String,
    secrets: Mutex<BTreeMap<String, GhSecret>>,
    plan: Mutex<VecDeque<Fail>>,
    /// unix ms of each write request (PUT), failed or not
    writes: Mutex<Vec<u128>>,
    unauthorized: AtomicUsize,
    clock: AtomicUsize,
}

#[derive(Clone)]
pub(crate) struct FakeGitHub {
    pub(crate) url: String,
    pub(crate) inner: Arc<GhInner>,
}

/// The auth headers and the repository of a request: None when both are right.
fn gh_check(inner: &GhInner, h: &HeaderMap, owner: &str, repo: &str) -> Option<Response> {
    let hv = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let auth = hv("authorization");
    let now = now_ms();
    let known = inner
        .tokens
        .lock()
        .unwrap()
        .iter()
        .any(|(t, exp)| auth == format!("Bearer {t}") && *exp > now);
    if !known || hv("accept") != "application/vnd.github+json" || hv("x-github-api-version") != "2022-11-28" {
        inner.unauthorized.fetch_add(1, Ordering::SeqCst);
        return Some((StatusCode::UNAUTHORIZED, Json(json!({"message": "Bad credentials"}))).into_response());
    }
    if owner == inner.owner && repo == inner.repo {
        None
    } else {
        Some((StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response())
    }
}

fn jwt_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Test key `rsa1` as the PKCS#1 PEM GitHub hands out for an App.
fn app_private_key_pem() -> String {
    let b64 = B64.encode(jwt_fixture("rsa1.pk1.der"));
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// `POST /app/installations/{id}/access_tokens`: GitHub's exchange of an
/// App JWT (RS256, `iss` the App id, `iat`/`exp` at most 10 min apart, not
/// expired) for an installation token, verified with the App's public key.
async fn gh_exchange(i: &GhInner, installation: &str, h: &HeaderMap) -> Response {
    let hv = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut app = i.app.lock().unwrap();
    let Some(app) = app.as_mut() else {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    };
    let refuse = |m: &str| {
        i.bad_jwts.fetch_add(1, Ordering::SeqCst);
        (StatusCode::UNAUTHORIZED, Json(json!({"message": m}))).into_response()
    };
    if hv("accept") != "application/vnd.github+json" || hv("x-github-api-version") != "2022-11-28" {
        return refuse("missing GitHub API headers");
    }
    let Some(jwt) = hv("authorization").strip_prefix("Bearer ").map(str::to_owned) else {
        return refuse("A JSON web token could not be decoded");
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[app.app_id.as_str()]);
    v.set_required_spec_claims(&["exp", "iat", "iss"]);
    v.validate_aud = false;
    v.leeway = 0;
    let claims = match jsonwebtoken::decode::<Value>(&jwt, &app.key, &v) {
        Ok(d) => d.claims,
        Err(_) => return refuse("A JSON web token could not be decoded"),
    };
    let now = (now_ms() / 1000) as i64;
    let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
    if iat > now || exp - iat > 600 || exp <= now {
        return refuse("'Expiration time' claim ('exp') is too far in the future");
    }
    if installation != app.installation_id {
        return (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response();
    }
    let n = i.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
    let ttl = app.ttls.pop_front().unwrap_or(3600);
    let token = format!("ghs_installation{n}TOKEN0123456789abcdef");
    let expires = now + ttl;
    i.tokens.lock().unwrap().push((token.clone(), (expires as u128) * 1000));
    let expires_at = time::OffsetDateTime::from_unix_timestamp(expires)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    (
        StatusCode::CREATED,
        Json(json!({
            "token": token,
            "expires_at": expires_at,
            "permissions": {"secrets": "write", "metadata": "read"},
            "repository_selection": "selected",
        })),
    )
        .into_response()
}

impl FakeGitHub {
    pub(crate) async fn start(owner: &str, repo: &str) -> FakeGitHub {
        let sk = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        let inner = Arc::new(GhInner {
            tokens: Mutex::new(vec![(GH_TOKEN.to_owned(), u128::MAX)]),
            put_tokens: Mutex::default(),
            app: Mutex::default(),
            exchanges: AtomicUsize::new(0),
            bad_jwts: AtomicUsize::new(0),
            sk,
            key_id: "568250167242549743".to_owned(),
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            secrets: Mutex::default(),
            plan: Mutex::default(),
            writes: Mutex::default(),
            unauthorized: AtomicUsize::new(0),
            clock: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route(
                "/app/installations/{id}/access_tokens",
                axum::routing::post(
                    |State(i): State<Arc<GhInner>>, Path(id): Path<String>, h: HeaderMap| async move {
                        gh_exchange(&i, &id, &h).await
                    },
                ),
            )
            .route(
                "/repos/{owner}/{repo}/actions/secrets/public-key",
                get(
                    |State(i): State<Arc<GhInner>>, Path((o, r)): Path<(String, String)>, h: HeaderMap| async move {
                        if let Some(e) = gh_check(&i, &h, &o, &r) {
                            return e;
                        }
                        Json(json!({"key_id": i.key_id, "key": B64.encode(i.sk.public_key().as_bytes())}))
                            .into_response()
                    },
                ),
            )
            .route(
                "/repos/{owner}/{repo}/actions/secrets",
                get(
                    |State(i): State<Arc<GhInner>>,
                     Path((o, r)): Path<(String, String)>,
                     Query(q): Query<BTreeMap<String, String>>,
                     h: HeaderMap| async move {
                        if let Some(e) = gh_check(&i, &h, &o, &r) {
                            return e;
                        }
                        let per_page: usize = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(30);
                        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                        let all = i.secrets.lock().unwrap().clone();
                        let list: Vec<Value> = all
                            .iter()
                            .skip((page - 1) * per_page)
                            .take(per_page)
                            .map(|(n, s)| json!({"name": n, "created_at": s.created_at, "updated_at": s.updated_at}))
                            .collect();
                        Json(json!({"total_count": all.len(), "secrets": list})).into_response()
                    },
                ),
            )
            .route(
                "/repos/{owner}/{repo}/actions/secrets/{name}",
                get(
                    |State(i): State<Arc<GhInner>>,
                     Path((o, r, n)): Path<(String, String, String)>,
                     h: HeaderMap| async move {
                        if let Some(e) = gh_check(&i, &h, &o, &r) {
                            return e;
                        }
                        match i.secrets.lock().unwrap().get(&n.to_uppercase()) {
                            Some(s) => {
                                Json(json!({"name": n.to_uppercase(), "created_at": s.created_at, "updated_at": s.updated_at}))
                                    .into_response()
                            }
                            None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
                        }
                    },
                )
                .put(
                    |State(i): State<Arc<GhInner>>,
                     Path((o, r, n)): Path<(String, String, String)>,
                     h: HeaderMap,
                     Json(body): Json<Value>| async move {
                        i.writes.lock().unwrap().push(now_ms());
                        let bearer = h.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
                        i.put_tokens
                            .lock()
                            .unwrap()
                            .push(bearer.trim_start_matches("Bearer ").to_owned());
                        if let Some(e) = gh_check(&i, &h, &o, &r) {
                            return e;
                        }
                        if let Some(resp) = inject(&i.plan).await {
                            return resp;
                        }
                        let unprocessable = |m: &str| {
                            (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"message": m}))).into_response()
                        };
                        if body["key_id"].as_str() != Some(i.key_id.as_str()) {
                            return unprocessable("key_id does not match the current public key");
                        }
                        let Some(sealed) = body["encrypted_value"].as_str().and_then(|v| B64.decode(v).ok()) else {
                            return unprocessable("encrypted_value is not base64");
                        };
                        // The proof: only the private key opens the box.
                        let Ok(plain) = i.sk.unseal(&sealed) else {
                            return unprocessable("encrypted_value does not open with the repository key");
                        };
                        let Ok(value) = String::from_utf8(plain) else {
                            return unprocessable("not UTF-8");
                        };
                        let t = i.clock.fetch_add(1, Ordering::SeqCst);
                        let at = format!("2026-01-01T00:{:02}:{:02}Z", t / 60, t % 60);
                        let mut all = i.secrets.lock().unwrap();
                        let name = n.to_uppercase();
                        let created = !all.contains_key(&name);
                        let created_at = all.get(&name).map_or(at.clone(), |s| s.created_at.clone());
                        all.insert(
                            name,
                            GhSecret {
                                value,
                                created_at,
                                updated_at: at,
                            },
                        );
                        if created { StatusCode::CREATED } else { StatusCode::NO_CONTENT }.into_response()
                    },
                )
                .delete(
                    |State(i): State<Arc<GhInner>>,
                     Path((o, r, n)): Path<(String, String, String)>,
                     h: HeaderMap| async move {
                        if let Some(e) = gh_check(&i, &h, &o, &r) {
                            return e;
                        }
                        match i.secrets.lock().unwrap().remove(&n.to_uppercase()) {
                            Some(_) => StatusCode::NO_CONTENT.into_response(),
                            None => (StatusCode::NOT_FOUND, Json(json!({"message": "Not Found"}))).into_response(),
                        }
                    },
                ),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitHub { url, inner }
    }

    /// GitHub accepts `token` from now on.
    pub(crate) fn accept(&self, token: &str) {
        self.inner.tokens.lock().unwrap().push((token.to_owned(), u128::MAX));
    }

    /// GitHub no longer accepts `token`.
    pub(crate) fn revoke(&self, token: &str) {
        self.inner.tokens.lock().unwrap().retain(|(t, _)| t != token);
    }

    /// Install GitHub App `app_id` (JWTs verified with test key `rsa1`)
    /// on the repository as `installation_id`; its next installation
    /// tokens live `ttls` seconds each (then an hour).
    fn install_app(&self, app_id: &str, installation_id: &str, ttls: &[i64]) {
        let all: Value = serde_json::from_slice(&jwt_fixture("public-jwks.json")).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(all["rsa1"].clone()).unwrap();
        *self.inner.app.lock().unwrap() = Some(GhApp {
            app_id: app_id.to_owned(),
            installation_id: installation_id.to_owned(),
            key: jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            ttls: ttls.iter().copied().collect(),
        });
    }

    pub(crate) fn values(&self) -> BTreeMap<String, String> {
        self.inner
            .secrets
            .lock()
            .unwrap()
            .iter()
            .map(|(k, s)| (k.clone(), s.value.clone()))
            .collect()
    }

    fn fail_next(&self, plan: &[Fail]) {
        self.inner.plan.lock().unwrap().extend(plan.iter().copied());
    }

    /// Wait until the stored values are exactly `want` (30 s at most).
    pub(crate) async fn wait_for(&self, want: &[(&str, &str)]) {
        let want: BTreeMap<String, String> = want.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        for _ in 0..300 {
            if self.values() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fake GitHub holds {:?}, wanted {want:?}", self.values());
    }
}

// ---------------------------------------------------------------- GitLab

#[derive(Debug, Clone, PartialEq, Eq)]
struct GlVar {
    key: String,
    value: String,
    environment_scope: String,
    masked: bool,
    protected: bool,
    raw: bool,
}

impl GlVar {
    fn json(&self) -> Value {
        json!({
            "variable_type": "env_var", "key": self.key, "value": self.value,
            "protected": self.protected, "masked": self.masked, "raw": self.raw,
            "environment_scope": self.environment_scope, "description": null,
        })
    }
}

struct GlInner {
    project: String,
    vars: Mutex<Vec<GlVar>>,
    plan: Mutex<VecDeque<Fail>>,
    unauthorized: AtomicUsize,
}

#[derive(Clone)]
struct FakeGitLab {
    url: String,
    inner: Arc<GlInner>,
}

type Filter = Query<BTreeMap<String, String>>;

fn gl_check(i: &GlInner, h: &HeaderMap, project: &str) -> Option<Response> {
    if h.get("private-token").and_then(|v| v.to_str().ok()) != Some(GL_TOKEN) {
        i.unauthorized.fetch_add(1, Ordering::SeqCst);
        return Some((StatusCode::UNAUTHORIZED, Json(json!({"message": "401 Unauthorized"}))).into_response());
    }
    if project != i.project {
        return Some((StatusCode::NOT_FOUND, Json(json!({"message": "404 Project Not Found"}))).into_response());
    }
    None
}

fn scope_of(q: &BTreeMap<String, String>) -> String {
    q.get("filter[environment_scope]")
        .cloned()
        .unwrap_or_else(|| "*".to_owned())
}

fn gl_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "404 Variable Not Found"})),
    )
        .into_response()
}

fn gl_fields(v: &mut GlVar, body: &Value) {
    if let Some(x) = body["value"].as_str() {
        v.value = x.to_owned();
    }
    if let Some(x) = body["masked"].as_bool() {
        v.masked = x;
    }
    if let Some(x) = body["protected"].as_bool() {
        v.protected = x;
    }
    if let Some(x) = body["raw"].as_bool() {
        v.raw = x;
    }
}

impl FakeGitLab {
    async fn start(project: &str) -> FakeGitLab {
        let inner = Arc::new(GlInner {
            project: project.to_owned(),
            vars: Mutex::default(),
            plan: Mutex::default(),
            unauthorized: AtomicUsize::new(0),
        });
        let app =
            axum::Router::new()
                .route(
                    "/api/v4/projects/{id}/variables",
                    axum::routing::post(
                        |State(i): State<Arc<GlInner>>,
                         Path(id): Path<String>,
                         h: HeaderMap,
                         Json(body): Json<Value>| async move {
                            if let Some(e) = gl_check(&i, &h, &id) {
                                return e;
                            }
                            if let Some(resp) = inject(&i.plan).await {
                                return resp;
                            }
                            let key = body["key"].as_str().unwrap_or_default().to_owned();
                            let scope = body["environment_scope"].as_str().unwrap_or("*").to_owned();
                            let mut vars = i.vars.lock().unwrap();
                            if vars.iter().any(|v| v.key == key && v.environment_scope == scope) {
                                return (
                                    StatusCode::BAD_REQUEST,
                                    Json(json!({"message": {"key": [format!("({key}) has already been taken")]}})),
                                )
                                    .into_response();
                            }
                            let mut v = GlVar {
                                key,
                                value: String::new(),
                                environment_scope: scope,
                                masked: false,
                                protected: false,
                                raw: false,
                            };
                            gl_fields(&mut v, &body);
                            vars.push(v.clone());
                            (StatusCode::CREATED, Json(v.json())).into_response()
                        },
                    ),
                )
                .route(
                    "/api/v4/projects/{id}/variables/{key}",
                    get(
                        |State(i): State<Arc<GlInner>>,
                         Path((id, key)): Path<(String, String)>,
                         Query(q): Filter,
                         h: HeaderMap| async move {
                            if let Some(e) = gl_check(&i, &h, &id) {
                                return e;
                            }
                            let scope = scope_of(&q);
                            match i
                                .vars
                                .lock()
                                .unwrap()
                                .iter()
                                .find(|v| v.key == key && v.environment_scope == scope)
                            {
                                Some(v) => Json(v.json()).into_response(),
                                None => gl_not_found(),
                            }
                        },
                    )
                    .put(
                        |State(i): State<Arc<GlInner>>,
                         Path((id, key)): Path<(String, String)>,
                         Query(q): Filter,
                         h: HeaderMap,
                         Json(body): Json<Value>| async move {
                            if let Some(e) = gl_check(&i, &h, &id) {
                                return e;
                            }
                            if let Some(resp) = inject(&i.plan).await {
                                return resp;
                            }
                            let scope = scope_of(&q);
                            let mut vars = i.vars.lock().unwrap();
                            match vars.iter_mut().find(|v| v.key == key && v.environment_scope == scope) {
                                Some(v) => {
                                    gl_fields(v, &body);
                                    Json(v.json()).into_response()
                                }
                                None => gl_not_found(),
                            }
                        },
                    )
                    .delete(
                        |State(i): State<Arc<GlInner>>,
                         Path((id, key)): Path<(String, String)>,
                         Query(q): Filter,
                         h: HeaderMap| async move {
                            if let Some(e) = gl_check(&i, &h, &id) {
                                return e;
                            }
                            let scope = scope_of(&q);
                            let mut vars = i.vars.lock().unwrap();
                            let before = vars.len();
                            vars.retain(|v| !(v.key == key && v.environment_scope == scope));
                            if vars.len() < before {
                                StatusCode::NO_CONTENT.into_response()
                            } else {
                                gl_not_found()
                            }
                        },
                    ),
                )
                .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGitLab { url, inner }
    }

    fn vars(&self) -> Vec<GlVar> {
        self.inner.vars.lock().unwrap().clone()
    }

    fn values(&self) -> BTreeMap<String, String> {
        self.vars().into_iter().map(|v| (v.key, v.value)).collect()
    }

    async fn wait_for(&self, want: &[(&str, &str)]) {
        let want: BTreeMap<String, String> = want.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        for _ in 0..300 {
            if self.values() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("fake GitLab holds {:?}, wanted {want:?}", self.vars());
    }
}

// ---------------------------------------------------------------- world

struct World {
    server: Server,
    root: Http,
    env: String,
    /// every API answer the tests saw, to scan for credentials
    answers: Mutex<Vec<String>>,
}

impl World {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (st, b) = self.root.req(method, path, body).await;
        self.answers.lock().unwrap().push(b.to_string());
        assert!(st.is_success(), "{method} {path}: {st} {b}");
        b["data"].clone()
    }

    async fn add_target(&self, spec: Value) -> String {
        let data = self.call("POST", "/api/v1/orgs/acme/ci-sync", Some(spec)).await;
        data["id"].as_str().expect("target id").to_owned()
    }

    async fn status(&self, id: &str) -> Value {
        self.call("GET", &format!("/api/v1/orgs/acme/ci-sync/{id}"), None).await
    }

    async fn jobs(&self, id: &str) -> Vec<Value> {
        self.call("GET", &format!("/api/v1/orgs/acme/ci-sync/{id}/jobs"), None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Wait until `f` holds for the target's status (30 s at most).
    async fn wait_status(&self, id: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..300 {
            let s = self.status(id).await;
            if f(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("target {id}: {what} never held: {}", self.status(id).await);
    }

    /// No answer the tests saw, and no server log line, holds a credential.
    fn assert_no_credentials(&self) {
        let log = self.server.log_text();
        for token in [GH_TOKEN, GL_TOKEN] {
            for a in self.answers.lock().unwrap().iter() {
                assert!(!a.contains(token), "an API answer carries a credential: {a}");
            }
            assert!(!log.contains(token), "the server log carries a credential");
        }
    }
}

/// acme/api/production with jobs every 200 ms.
async fn world(dir: &std::path::Path) -> World {
    util::remember_secret(GH_TOKEN);
    util::remember_secret(GL_TOKEN);
    let url = util::fresh_storage_url(dir).await;
    let server = Server::start_full(dir, &url, "tls_disable = true", "[jobs]\ninterval_ms = 200\n", &[]);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::org_tree(&root, "acme", &[("api", &["production", "staging"])]).await;
    World {
        server,
        root,
        env: util::env_path("acme", "api", "production"),
        answers: Mutex::default(),
    }
}

pub(crate) fn github_spec(gh: &FakeGitHub, extra: Value) -> Value {
    let mut spec = json!({
        "project": "api", "environment": "production", "provider": "github",
        "scope": "repository", "owner": "acme", "repo": "api",
        "api_url": gh.url, "token": GH_TOKEN, "timeout_ms": 400,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    spec
}

fn gitlab_spec(gl: &FakeGitLab, extra: Value) -> Value {
    let mut spec = json!({
        "project": "api", "environment": "production", "provider": "gitlab",
        "scope": "project", "gitlab_id": "acme/api", "environment_scope": "production",
        "masked": true, "protected": true,
        "api_url": gl.url, "token": GL_TOKEN, "timeout_ms": 400,
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        spec[k] = v;
    }
    spec
}

// ---------------------------------------------------------------- tests

/// GitHub repository secrets: every value arrives as a sealed box the
/// fake opens with its private key; set, update, rollback and delete in
/// coffer reach GitHub; the status shows the last success and an empty
/// queue; no answer or log carries the token.
#[tokio::test]
async fn github_secrets_are_sealed_synced_and_deleted() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    util::write_secret(&w.root, &w.env, "DB_URL", "postgres://db-value-one").await;
    util::write_secret(&w.root, &w.env, "API_KEY", "api-key-value-one-77").await;
    let id = w.add_target(github_spec(&gh, json!({}))).await;
    gh.wait_for(&[
        ("API_KEY", "api-key-value-one-77"),
        ("DB_URL", "postgres://db-value-one"),
    ])
    .await;

    // update, then delete: the target follows
    util::write_secret(&w.root, &w.env, "DB_URL", "postgres://db-value-two").await;
    let (st, b) = w.root.delete(&format!("{}/secrets/API_KEY", w.env)).await;
    assert!(st.is_success(), "{b}");
    gh.wait_for(&[("DB_URL", "postgres://db-value-two")]).await;

    // rollback is a write too
    let (st, b) = w
        .root
        .post(&format!("{}/secrets/DB_URL/rollback", w.env), json!({"version": 1}))
        .await;
    assert!(st.is_success(), "{b}");
    gh.wait_for(&[("DB_URL", "postgres://db-value-one")]).await;

    let s = w
        .wait_status(&id, "idle", |s| s["pending"] == 0 && !s["last_success_at"].is_null())
        .await;
    assert_eq!(s["dead"], 0, "{s}");
    assert!(s["last_error"].is_null(), "{s}");
    assert_eq!(s["provider"], "github");
    assert_eq!(s["environment"], "production");
    assert!(s.get("token").is_none() && s.get("credential").is_none(), "{s}");
    assert_eq!(
        gh.inner.unauthorized.load(Ordering::SeqCst),
        0,
        "every request carried the token"
    );

    // another environment's writes do not reach this target
    let staging = util::env_path("acme", "api", "staging");
    util::write_secret(&w.root, &staging, "OTHER", "staging-only-value-1").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(gh.values().len(), 1, "{:?}", gh.values());

    // the list, the queue and the audit trail name keys, never the token
    w.call(
        "GET",
        "/api/v1/orgs/acme/ci-sync?project=api&environment=production",
        None,
    )
    .await;
    let jobs = w.jobs(&id).await;
    assert!(jobs.iter().all(|j| j["status"] != "dead"), "{jobs:?}");
    assert!(
        jobs.iter()
            .any(|j| j["op"] == "delete" && j["key"] == "API_KEY" && j["status"] == "done")
    );
    let audit = w
        .call("GET", "/api/v1/audit/records?org=acme&action=ci_sync.&limit=1000", None)
        .await;
    let audit = audit.to_string();
    assert!(
        audit.contains("ci_sync.create") && audit.contains("ci_sync.put"),
        "{audit}"
    );
    assert!(!audit.contains("postgres://db-value"), "no value in the audit trail");
    w.assert_no_credentials();

    // removed: nothing more is written
    w.call("DELETE", &format!("/api/v1/orgs/acme/ci-sync/{id}"), None).await;
    util::write_secret(&w.root, &w.env, "LATE", "written-after-removal").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!gh.values().contains_key("LATE"));
}

/// A 500, a 429 with Retry-After and a timeout are retried until every
/// value is there: nothing lost, nothing duplicated, Retry-After honoured.
#[tokio::test]
async fn github_failures_are_retried_until_success() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    for (k, v) in [
        ("A_ONE", "value-number-one-1"),
        ("B_TWO", "value-number-two-2"),
        ("C_THREE", "value-number-three"),
    ] {
        util::write_secret(&w.root, &w.env, k, v).await;
    }
    gh.fail_next(&[Fail::Status500, Fail::TooMany(2), Fail::Slow(1500)]);
    let id = w.add_target(github_spec(&gh, json!({}))).await;
    gh.wait_for(&[
        ("A_ONE", "value-number-one-1"),
        ("B_TWO", "value-number-two-2"),
        ("C_THREE", "value-number-three"),
    ])
    .await;
    // the write after the 429 waited at least its Retry-After (2 s)
    let writes = gh.inner.writes.lock().unwrap().clone();
    assert!(writes.len() >= 6, "3 failed + 3 good writes at least: {writes:?}");
    let gap = writes[2] - writes[1];
    assert!(gap >= 1900, "the write after `Retry-After: 2` came {gap} ms later");
    let s = w.wait_status(&id, "idle", |s| s["pending"] == 0).await;
    assert_eq!(s["dead"], 0, "{s}");
    let err = s["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(err.contains("timed out"), "the last error was the timeout: {s}");
    let jobs = w.jobs(&id).await;
    let puts: Vec<&Value> = jobs.iter().filter(|j| j["op"] == "put").collect();
    assert_eq!(puts.len(), 3, "one job per key and version: {jobs:?}");
    assert!(puts.iter().all(|j| j["status"] == "done"), "{jobs:?}");
    assert!(
        puts.iter().any(|j| j["attempts"].as_i64().unwrap_or(0) >= 3),
        "retried: {jobs:?}"
    );
    w.assert_no_credentials();
}

/// GitHub cannot return values: a secret changed by hand moves its
/// `updated_at`, which reconcile reports as drift; a target whose token
/// is refused gets a dead letter with its error at once, and `run`
/// requeues it.
#[tokio::test]
async fn github_drift_and_dead_letters() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    util::write_secret(&w.root, &w.env, "DB_URL", "postgres://drift-value-1").await;
    let id = w.add_target(github_spec(&gh, json!({}))).await;
    gh.wait_for(&[("DB_URL", "postgres://drift-value-1")]).await;
    w.wait_status(&id, "reconciled", |s| !s["reconciled_at"].is_null())
        .await;
    assert_eq!(w.status(&id).await["drift"], json!([]));

    // someone sets the secret by hand in GitHub
    {
        let mut all = gh.inner.secrets.lock().unwrap();
        let s = all.get_mut("DB_URL").expect("synced");
        s.value = "set-by-hand-in-github".to_owned();
        s.updated_at = "2026-02-02T02:02:02Z".to_owned();
    }
    w.call("POST", &format!("/api/v1/orgs/acme/ci-sync/{id}/run"), Some(json!({})))
        .await;
    let s = w
        .wait_status(&id, "drift reported", |s| {
            s["drift"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    assert_eq!(s["drift"][0]["key"], "DB_URL", "{s}");
    assert_eq!(s["drift"][0]["reason"], "changed", "{s}");
    assert_eq!(
        gh.values()["DB_URL"],
        "set-by-hand-in-github",
        "reported, not overwritten"
    );

    // a refused token: dead letter at once, with the provider's error
    let bad = w
        .add_target(github_spec(
            &gh,
            json!({"environment": "staging", "token": "ghp_wrongTOKEN0123456789"}),
        ))
        .await;
    util::remember_secret("ghp_wrongTOKEN0123456789");
    let staging = util::env_path("acme", "api", "staging");
    util::write_secret(&w.root, &staging, "STAGING_KEY", "staging-value-123").await;
    let s = w
        .wait_status(&bad, "dead letter", |s| {
            s["dead"].as_i64() >= Some(1) && !s["last_error"].is_null()
        })
        .await;
    assert!(s["last_error"].as_str().unwrap_or_default().contains("401"), "{s}");
    let jobs = w.jobs(&bad).await;
    let dead: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "dead").collect();
    assert!(
        !dead.is_empty()
            && dead
                .iter()
                .all(|j| j["last_error"].as_str().unwrap_or("").contains("401"))
    );
    let run = w
        .call("POST", &format!("/api/v1/orgs/acme/ci-sync/{bad}/run"), Some(json!({})))
        .await;
    assert!(run["requeued"].as_u64() >= Some(1), "{run}");
    assert!(!gh.values().contains_key("STAGING_KEY"));
    w.assert_no_credentials();
}

/// GitLab project variables: created with the masked and protected flags
/// and the environment scope, updated in place (never a duplicate), also
/// through a 500 and a 429; a deleted key is deleted; a value changed by
/// hand is reported by reconcile, and overwritten where the target says so.
#[tokio::test]
async fn gitlab_variables_sync_and_reconcile() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gl = FakeGitLab::start("acme/api").await;
    util::write_secret(&w.root, &w.env, "DB_URL", "postgres://gitlab-value-1").await;
    util::write_secret(&w.root, &w.env, "TOKEN_X", "token-x-value-12345").await;
    gl.inner
        .plan
        .lock()
        .unwrap()
        .extend([Fail::Status500, Fail::TooMany(1), Fail::Slow(1500)]);
    let id = w.add_target(gitlab_spec(&gl, json!({}))).await;
    gl.wait_for(&[
        ("DB_URL", "postgres://gitlab-value-1"),
        ("TOKEN_X", "token-x-value-12345"),
    ])
    .await;
    let vars = gl.vars();
    assert!(
        vars.iter()
            .all(|v| v.masked && v.protected && v.raw && v.environment_scope == "production"),
        "{vars:?}"
    );

    util::write_secret(&w.root, &w.env, "DB_URL", "postgres://gitlab-value-2").await;
    let (st, b) = w.root.delete(&format!("{}/secrets/TOKEN_X", w.env)).await;
    assert!(st.is_success(), "{b}");
    gl.wait_for(&[("DB_URL", "postgres://gitlab-value-2")]).await;
    assert_eq!(gl.vars().len(), 1, "updated in place: {:?}", gl.vars());
    let s = w.wait_status(&id, "idle", |s| s["pending"] == 0).await;
    assert_eq!(s["dead"], 0, "{s}");

    // a hand edit in GitLab: reported, left alone
    gl.inner.vars.lock().unwrap()[0].value = "edited-by-hand-in-gitlab".to_owned();
    w.call("POST", &format!("/api/v1/orgs/acme/ci-sync/{id}/run"), Some(json!({})))
        .await;
    let s = w
        .wait_status(&id, "drift reported", |s| {
            s["drift"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await;
    assert_eq!(s["drift"][0]["key"], "DB_URL", "{s}");
    assert_eq!(s["drift"][0]["reason"], "changed", "{s}");
    assert_eq!(s["drift"][0]["overwritten"], false, "{s}");
    assert_eq!(gl.values()["DB_URL"], "edited-by-hand-in-gitlab");

    // a second target over staging with overwrite_drift: the coffer value wins
    let gl2 = FakeGitLab::start("acme/api").await;
    let staging = util::env_path("acme", "api", "staging");
    util::write_secret(&w.root, &staging, "S_KEY", "staging-gitlab-value").await;
    let id2 = w
        .add_target(gitlab_spec(
            &gl2,
            json!({"environment": "staging", "overwrite_drift": true}),
        ))
        .await;
    gl2.wait_for(&[("S_KEY", "staging-gitlab-value")]).await;
    gl2.inner.vars.lock().unwrap()[0].value = "edited-by-hand-too".to_owned();
    let started = Instant::now();
    w.call("POST", &format!("/api/v1/orgs/acme/ci-sync/{id2}/run"), Some(json!({})))
        .await;
    gl2.wait_for(&[("S_KEY", "staging-gitlab-value")]).await;
    let s = w.status(&id2).await;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        s["drift"]
            .as_array()
            .is_some_and(|d| d.is_empty() || d[0]["overwritten"] == true),
        "{s}"
    );
    assert_eq!(gl.inner.unauthorized.load(Ordering::SeqCst), 0);
    let audit = w
        .call("GET", "/api/v1/audit/records?org=acme&action=ci_sync.&limit=1000", None)
        .await
        .to_string();
    assert!(audit.contains("ci_sync.drift"), "drift is audited");
    w.assert_no_credentials();
}

/// Bad input is refused with a message naming the field; a member who is
/// not an organization admin may not add targets.
#[tokio::test]
async fn targets_are_validated_and_admin_only() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let cases = [
        (json!({"provider": "bitbucket"}), "provider"),
        (json!({"provider": "github", "repo": ""}), "repo"),
        (json!({"provider": "github", "scope": "team"}), "scope"),
        (
            json!({"provider": "github", "api_url": "http://github.example"}),
            "https",
        ),
        (json!({"provider": "github", "token": ""}), "token"),
        (json!({"provider": "gitlab", "gitlab_id": ""}), "gitlab_id"),
        (json!({"environment": "nope"}), "not found"),
    ];
    for (extra, word) in cases {
        let mut spec = json!({
            "project": "api", "environment": "production", "provider": "github",
            "owner": "acme", "repo": "api", "gitlab_id": "1", "token": "t0ken-for-validation",
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            spec[k] = v;
        }
        let (st, b) = w.root.post("/api/v1/orgs/acme/ci-sync", spec.clone()).await;
        assert!(st.is_client_error(), "{spec}: {st} {b}");
        assert!(b["message"].as_str().unwrap_or("").contains(word), "{spec}: {b}");
    }
    util::create_user(&w.root, "dev@acme.test", "correct horse battery staple 19").await;
    util::add_member(&w.root, "acme", "dev@acme.test", "member").await;
    let dev = util::user_client(
        &w.server.client(None),
        "dev@acme.test",
        "correct horse battery staple 19",
    )
    .await;
    let (st, _) = dev
        .post(
            "/api/v1/orgs/acme/ci-sync",
            json!({"project": "api", "environment": "production", "provider": "github",
                   "owner": "acme", "repo": "api", "token": "t0ken-for-validation"}),
        )
        .await;
    assert_eq!(st.as_u16(), 403);
    let (st, _) = dev.get("/api/v1/orgs/acme/ci-sync").await;
    assert_eq!(st.as_u16(), 403);
}

/// A KEK version that still seals a target's token is not crypto-shredded
/// (the token would be lost with it): destroying it is refused until a
/// rewrap moved the token (tests/it/keys.rs checks it still pushes then).
#[tokio::test]
async fn a_kek_still_sealing_a_target_token_cannot_be_destroyed() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    w.add_target(github_spec(&gh, json!({}))).await;
    util::ok_data("rotate", w.root.post("/api/v1/orgs/acme/keks/rotate", json!({})).await);
    let (st, b) = w.root.delete("/api/v1/orgs/acme/keks/1").await;
    assert_eq!(st.as_u16(), 409, "{b}");
    assert!(b["message"].as_str().unwrap_or("").contains("CI sync"), "{b}");
    let done = util::ok_data("rewrap", w.root.post("/api/v1/orgs/acme/keks/rewrap", json!({})).await);
    assert_eq!(done["done"], true, "{done}");
    assert_eq!(done["credentials"]["ci_sync_tokens"], 1, "{done}");
    util::ok_data("destroy v1", w.root.delete("/api/v1/orgs/acme/keks/1").await);
}

/// `coffer sync …`: add (the token from stdin, never argv), status, run,
/// jobs, remove; no output carries the token.
#[tokio::test]
async fn cli_sync_commands() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    util::write_secret(&w.root, &w.env, "DB_URL", "postgres://cli-value-one").await;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let coffer = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(args)
            .env("HOME", &home)
            .env("COFFER_ADDR", &w.server.base)
            .env("COFFER_TOKEN", w.root.token())
            .env("COFFER_ORG", "acme")
            .env("COFFER_PROJECT", "api")
            .env("COFFER_ENV", "production")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run coffer");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "coffer {args:?}: {text}");
        assert!(!text.contains(GH_TOKEN), "the CLI printed the token");
        text
    };
    let added = coffer(
        &[
            "sync",
            "add",
            "github",
            "--repo",
            "acme/api",
            "--api-url",
            &gh.url,
            "--timeout-ms",
            "400",
        ],
        GH_TOKEN,
    );
    assert!(added.contains("sync target"), "{added}");
    gh.wait_for(&[("DB_URL", "postgres://cli-value-one")]).await;
    let list = w
        .call(
            "GET",
            "/api/v1/orgs/acme/ci-sync?project=api&environment=production",
            None,
        )
        .await;
    let id = list[0]["id"].as_str().expect("target").to_owned();
    w.wait_status(&id, "idle", |s| s["pending"] == 0 && !s["last_success_at"].is_null())
        .await;
    let status = coffer(&["sync", "status"], "");
    assert!(
        status.contains(&id) && status.contains("acme/api") && status.contains("dead 0"),
        "{status}"
    );
    let json: Value = serde_json::from_str(&coffer(&["sync", "status", "--json"], "")).expect("json");
    assert_eq!(json[0]["provider"], "github", "{json}");
    let run = coffer(&["sync", "run"], "");
    assert!(run.contains("queued"), "{run}");
    let jobs = coffer(&["sync", "jobs", &id], "");
    assert!(jobs.contains("DB_URL") && jobs.contains("done"), "{jobs}");
    let removed = coffer(&["sync", "remove", &id], "");
    assert!(removed.contains("removed"), "{removed}");
    assert_eq!(
        coffer(&["sync", "status"], "").trim(),
        "no sync targets in acme/api/production"
    );
    w.assert_no_credentials();
}

/// A target's token replaced in place: a token the target refuses is
/// refused (422) and the old one keeps syncing; one it accepts (through
/// `coffer sync set-token --token-stdin`) replaces it; the change is
/// audited; no answer, output or log carries either token. (Multi-thread:
/// the fake GitHub answers while the test waits for the CLI.)
#[tokio::test(flavor = "multi_thread")]
async fn a_targets_token_is_replaced_only_when_the_target_accepts_it() {
    const WRONG: &str = "github_pat_11WRONGtokenZZZZZZZZZZZZZZ";
    const NEW: &str = "github_pat_11ROTATEDtokenYYYYYYYYYYYYY";
    util::remember_secret(WRONG);
    util::remember_secret(NEW);
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    util::write_secret(&w.root, &w.env, "A_KEY", "value-before-rotation").await;
    let id = w.add_target(github_spec(&gh, json!({}))).await;
    gh.wait_for(&[("A_KEY", "value-before-rotation")]).await;
    let target = format!("/api/v1/orgs/acme/ci-sync/{id}");

    // refused by the target: 422, the old token stays and keeps working
    let (st, b) = w.root.req("PATCH", &target, Some(json!({"token": WRONG}))).await;
    w.answers.lock().unwrap().push(b.to_string());
    assert_eq!(
        (st.as_u16(), b["code"].as_str()),
        (422, Some("ci_sync_credential_refused")),
        "{b}"
    );
    assert!(
        b["message"].as_str().unwrap_or("").contains("old one is kept")
            && b["message"].as_str().unwrap_or("").contains("401"),
        "{b}"
    );
    util::write_secret(&w.root, &w.env, "B_KEY", "value-with-the-old-token").await;
    gh.wait_for(&[
        ("A_KEY", "value-before-rotation"),
        ("B_KEY", "value-with-the-old-token"),
    ])
    .await;
    // a malformed one never reaches the target
    let (st, b) = w.root.req("PUT", &target, Some(json!({"token": ""}))).await;
    assert_eq!(st.as_u16(), 400, "{b}");

    // rotated at GitHub: the new token through the CLI, from stdin
    gh.accept(NEW);
    let out = {
        use std::io::Write;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["sync", "set-token", &id, "--token-stdin"])
            .env("HOME", &home)
            .env("COFFER_ADDR", &w.server.base)
            .env("COFFER_TOKEN", w.root.token())
            .env("COFFER_ORG", "acme")
            .env("COFFER_PROJECT", "api")
            .env("COFFER_ENV", "production")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run coffer");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{NEW}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "set-token: {text}");
    assert!(text.contains("accepted the new token") && !text.contains(NEW), "{text}");
    gh.revoke(GH_TOKEN);
    let before = gh.inner.put_tokens.lock().unwrap().len();
    util::write_secret(&w.root, &w.env, "C_KEY", "value-with-the-new-token").await;
    gh.wait_for(&[
        ("A_KEY", "value-before-rotation"),
        ("B_KEY", "value-with-the-old-token"),
        ("C_KEY", "value-with-the-new-token"),
    ])
    .await;
    let used = gh.inner.put_tokens.lock().unwrap()[before..].to_vec();
    assert!(!used.is_empty() && used.iter().all(|t| t == NEW), "{used:?}");

    let audit = w
        .call(
            "GET",
            "/api/v1/audit/records?org=acme&action=ci_sync.set_credential&limit=100",
            None,
        )
        .await
        .to_string();
    assert!(audit.contains("ci_sync.set_credential"), "{audit}");
    for t in [WRONG, NEW] {
        assert!(!audit.contains(t), "the audit trail carries a token");
        assert!(!w.server.log_text().contains(t), "the log carries a token");
    }
    w.assert_no_credentials();
}

/// A GitHub target authenticated as a GitHub App: coffer signs an App JWT
/// with the App's key (the fake verifies signature and claims with the
/// public key), exchanges it for an installation token, caches it until
/// 5 min before its `expires_at` and then gets a new one; the private key
/// is sealed and never returned; a wrong key is refused up front.
#[tokio::test]
async fn github_app_installation_tokens_are_minted_cached_and_refreshed() {
    let dir = util::tempdir();
    let w = world(dir.path()).await;
    let gh = FakeGitHub::start("acme", "api").await;
    // The first token expires within coffer's 5-minute margin: used for
    // its run, not cached; the next ones live an hour.
    gh.install_app("123456", "987654", &[299]);
    let pem = app_private_key_pem();
    let body_line = pem.lines().nth(3).unwrap().to_owned();
    util::remember_secret(&body_line);
    util::write_secret(&w.root, &w.env, "A_KEY", "app-synced-value-one").await;

    // added with the App instead of a token
    let mut spec = github_spec(
        &gh,
        json!({"app_id": 123456, "installation_id": "987654", "private_key": pem}),
    );
    spec.as_object_mut().unwrap().remove("token");
    let id = w.add_target(spec).await;
    gh.wait_for(&[("A_KEY", "app-synced-value-one")]).await;
    let s = w.status(&id).await;
    assert_eq!(s["auth"], "github_app", "{s}");
    assert_eq!(s["location"]["app_id"], "123456", "{s}");
    assert!(!s.to_string().contains(&body_line), "the private key is never returned");
    assert_eq!(gh.inner.exchanges.load(Ordering::SeqCst), 1);

    // the next run: the first token is within 5 min of expiry → a new one
    util::write_secret(&w.root, &w.env, "B_KEY", "app-synced-value-two").await;
    gh.wait_for(&[("A_KEY", "app-synced-value-one"), ("B_KEY", "app-synced-value-two")])
        .await;
    assert_eq!(gh.inner.exchanges.load(Ordering::SeqCst), 2, "refreshed");
    // and then cached: no exchange for the third write
    util::write_secret(&w.root, &w.env, "C_KEY", "app-synced-value-three").await;
    gh.wait_for(&[
        ("A_KEY", "app-synced-value-one"),
        ("B_KEY", "app-synced-value-two"),
        ("C_KEY", "app-synced-value-three"),
    ])
    .await;
    assert_eq!(gh.inner.exchanges.load(Ordering::SeqCst), 2, "cached");
    let used = gh.inner.put_tokens.lock().unwrap().clone();
    assert_eq!(
        used,
        vec![
            "ghs_installation1TOKEN0123456789abcdef".to_owned(),
            "ghs_installation2TOKEN0123456789abcdef".to_owned(),
            "ghs_installation2TOKEN0123456789abcdef".to_owned(),
        ],
        "each write used the installation token of its time"
    );
    assert_eq!(gh.inner.bad_jwts.load(Ordering::SeqCst), 0, "every App JWT verified");

    // another App key (rsa2) for this App: GitHub refuses its JWT, so the
    // change is refused and the right key stays
    let other = {
        let b64 = B64.encode(jwt_fixture("rsa2.pk1.der"));
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            lines.join("\n")
        )
    };
    let (st, b) = w
        .root
        .req(
            "PUT",
            &format!("/api/v1/orgs/acme/ci-sync/{id}"),
            Some(json!({"app_id": "123456", "installation_id": "987654", "private_key": other})),
        )
        .await;
    assert_eq!(
        (st.as_u16(), b["code"].as_str()),
        (422, Some("ci_sync_credential_refused")),
        "{b}"
    );
    assert_eq!(
        gh.inner.bad_jwts.load(Ordering::SeqCst),
        1,
        "the fake verified and refused it"
    );
    // a key that is no key: refused before any request
    let (st, b) = w
        .root
        .req(
            "PUT",
            &format!("/api/v1/orgs/acme/ci-sync/{id}"),
            Some(json!({"app_id": "123456", "installation_id": "987654", "private_key": "not a pem"})),
        )
        .await;
    assert_eq!(st.as_u16(), 400, "{b}");
    util::write_secret(&w.root, &w.env, "D_KEY", "app-synced-value-four").await;
    gh.wait_for(&[
        ("A_KEY", "app-synced-value-one"),
        ("B_KEY", "app-synced-value-two"),
        ("C_KEY", "app-synced-value-three"),
        ("D_KEY", "app-synced-value-four"),
    ])
    .await;
    assert!(!w.server.log_text().contains(&body_line), "the log carries the key");
    w.assert_no_credentials();
}
