//! The web dashboard at `/ui` (docs/dashboard.md): server-rendered HTML
//! (maud templates, `pages.rs`) plus one script and one stylesheet compiled
//! into the binary. Handlers call the services directly, as the API's do,
//! and are registered in the one route table with their audit actions.
//!
//! Security model, enforced here:
//! - a login makes a dashboard session (`service::ui_session`): the browser
//!   holds only a random cookie (`HttpOnly; SameSite=Strict; Path=/`, and
//!   `Secure` unless the listener is plain HTTP); the API token behind it
//!   stays in the server, so the cookie is no API token and no API token is
//!   a cookie;
//! - every state change carries a CSRF token, compared in constant time,
//!   before anything runs: the session's (form field `csrf` or header
//!   `X-CSRF-Token`), or before login the double-submit token of the
//!   `coffer_csrf` cookie; without it the answer is 403. A form after
//!   login can only be taken through [`SessionForm`], which checks the
//!   token before the handler runs (the fetches check the header);
//! - every `/ui` answer carries the strict CSP of [`CSP`], `nosniff`,
//!   `no-referrer`, `frame-ancestors 'none'`; `Cache-Control: no-store`
//!   comes from the router for everything but the two fingerprinted assets;
//! - no value is in a page before its reveal, nor in a URL: a reveal is a
//!   POST answered with JSON, recorded as `secret.reveal`.
//!
//! It must never: accept the session cookie as an API credential, render a
//! value outside the reveal answer (the init page's shares and root token
//! are shown once by design), or act on a POST whose CSRF token is wrong.

pub(super) mod access;
pub(super) mod account;
mod admin;
pub(super) mod approvals; // protected environments (issue 17)
pub(super) mod ci_sync; // CI sync targets (issue 19)
pub(super) mod dbcreds; // database credentials (issue 21)
mod device;
pub(super) mod edit;
pub(super) mod jwt_auth; // JWT/OIDC workload identity (issue 19)
mod pages;
pub(super) mod shares;
pub(super) mod sso; // single sign-on (issue 20)
pub(super) mod webhooks; // signed webhooks of an org (issue 17)

use std::sync::OnceLock;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use maud::Markup;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::AppState;
use super::audit::AuditNote;
use super::error::{ErrorCode, describe};
use super::extract::Peer;
use crate::seal::SealKind;
use crate::service::ui_session::{random_secret, tokens_equal};
use crate::service::{Caller, ServiceError, Unsealed};
use pages::Viewer;

/// The Content-Security-Policy of every dashboard answer.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                              connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The session cookie (a dashboard session's secret, never an API token).
const SESSION_COOKIE: &str = "coffer_session";
/// The pre-login CSRF cookie (double submit on init, unseal and login).
const CSRF_COOKIE: &str = "coffer_csrf";
/// The header a fetch carries its CSRF token in.
const CSRF_HEADER: &str = "x-csrf-token";

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// argon2id for share links opened with a passphrase (`/s/…` only): the
/// `hash-wasm` npm package's build, vendored unchanged (MIT, its licence
/// next to it).
const ARGON2_JS: &str = include_str!("assets/vendor/hash-wasm-argon2.umd.min.js");

/// Marks an answer the router may let caches keep (the fingerprinted
/// assets only); everything else is `no-store`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cacheable;

/// The assets' URLs (fingerprinted) and Subresource Integrity values.
pub(super) struct Assets {
    js_url: String,
    js_integrity: String,
    css_url: String,
    css_integrity: String,
    argon2_url: String,
    argon2_integrity: String,
}

impl Assets {
    fn get() -> &'static Assets {
        static ASSETS: OnceLock<Assets> = OnceLock::new();
        ASSETS.get_or_init(|| {
            let of = |text: &str, name: &str| {
                let digest = Sha256::digest(text.as_bytes());
                (
                    format!("/ui/assets/{name}?v={}", &hex::encode(digest)[..16]),
                    format!("sha256-{}", base64::engine::general_purpose::STANDARD.encode(digest)),
                )
            };
            let (js_url, js_integrity) = of(APP_JS, "app.js");
            let (css_url, css_integrity) = of(APP_CSS, "app.css");
            let (argon2_url, argon2_integrity) = of(ARGON2_JS, "argon2.js");
            Assets {
                js_url,
                js_integrity,
                css_url,
                css_integrity,
                argon2_url,
                argon2_integrity,
            }
        })
    }
}

/// A path segment, percent-encoded (slugs and keys in links).
pub(super) fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The security headers of every `/ui` answer (and `/`), added by the
/// router around the dashboard's routes.
pub(super) async fn security_headers(mut res: Response) -> Response {
    let csp = if res.extensions().get::<shares::ShareCsp>().is_some() {
        shares::SHARE_CSP
    } else {
        CSP
    };
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// The value of cookie `name`, if the request has it once.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for v in headers.get_all(header::COOKIE) {
        for pair in v.to_str().ok()?.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    // Two cookies of one name (one planted by a sibling
                    // host): trust neither.
                    return None;
                }
                found = Some(v);
            }
        }
    }
    found.filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure on TLS.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Option<u32>) -> Option<HeaderValue> {
    let secure = if state.tls { "; Secure" } else { "" };
    let age = max_age.map(|s| format!("; Max-Age={s}")).unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/{secure}{age}"
    ))
    .ok()
}

fn html(status: StatusCode, page: Markup) -> Response {
    (status, page).into_response()
}

fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A service error as a dashboard page, with its code for the audit record.
fn error_page(viewer: Option<&Viewer<'_>>, e: &ServiceError) -> Response {
    let (status, code, message) = describe(e);
    let mut res = html(status, pages::error(viewer, &message));
    res.extensions_mut().insert(ErrorCode(code));
    res
}

/// 403 for a state change without its CSRF token; nothing ran.
fn csrf_refused(json: bool) -> Response {
    let message = "missing or wrong CSRF token: reload the page and try again";
    let mut res = if json {
        (
            StatusCode::FORBIDDEN,
            axum::Json(json!({ "error": true, "code": "csrf", "message": message })),
        )
            .into_response()
    } else {
        html(StatusCode::FORBIDDEN, pages::error(None, message))
    };
    res.extensions_mut().insert(ErrorCode("csrf"));
    res
}

/// A form body, parsed leniently (every field has a default) so that a
/// missing CSRF token is answered 403, not as a malformed form.
pub(super) struct UiForm<T>(T);

impl<T: serde::de::DeserializeOwned + Default> axum::extract::FromRequest<AppState> for UiForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request<axum::body::Body>, state: &AppState) -> Result<Self, Response> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(UiForm(serde_urlencoded::from_bytes(&bytes).unwrap_or_default()))
    }
}

/// A state change by a session: the caller (no session: the login form,
/// 401) and its form, whose `csrf` field matched the session's token
/// (constant time) before the handler runs; without it the answer is 403
/// and nothing runs. Every dashboard POST after login takes its form this
/// way, so none can skip the check.
pub(super) struct SessionForm<T>(UiUser, T);

#[derive(Default, Deserialize)]
#[serde(default)]
struct CsrfField {
    csrf: String,
}

impl<T: serde::de::DeserializeOwned + Default> axum::extract::FromRequest<AppState> for SessionForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request<axum::body::Body>, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let user = UiUser::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let presented: CsrfField = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        if !user.csrf_ok(&presented.csrf) {
            return Err(csrf_refused(false));
        }
        Ok(SessionForm(
            user,
            serde_urlencoded::from_bytes(&bytes).unwrap_or_default(),
        ))
    }
}

/// The pre-login CSRF token of a page: the browser's `coffer_csrf`
/// cookie, or a fresh one (then set on the answer).
struct PreCsrf {
    token: String,
    set: Option<HeaderValue>,
}

impl PreCsrf {
    fn of(state: &AppState, headers: &HeaderMap) -> Result<PreCsrf, ServiceError> {
        if let Some(t) = cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 43) {
            return Ok(PreCsrf {
                token: t.to_owned(),
                set: None,
            });
        }
        let token = random_secret()?.to_string();
        let set = set_cookie(state, CSRF_COOKIE, &token, None);
        Ok(PreCsrf { token, set })
    }

    fn respond(self, mut res: Response) -> Response {
        if let Some(v) = self.set {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    }

    /// Whether a form's token matches the cookie's (double submit).
    fn matches(headers: &HeaderMap, presented: &str) -> bool {
        cookie(headers, CSRF_COOKIE).is_some_and(|c| !presented.is_empty() && tokens_equal(c, presented))
    }
}

/// A caller with a live dashboard session; without one the answer is 401
/// with the login form (sealed: 503 and a link to the ceremony).
pub(crate) struct UiUser {
    who: Unsealed,
    csrf: String,
}

impl std::fmt::Debug for UiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UiUser").field("who", &self.who).finish_non_exhaustive()
    }
}

impl UiUser {
    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            name: &self.who.name,
            csrf: &self.csrf,
            root: self.who.kind == crate::service::PrincipalKind::Root,
        }
    }

    /// The session's CSRF token matches `presented` (constant time).
    fn csrf_ok(&self, presented: &str) -> bool {
        !presented.is_empty() && tokens_equal(&self.csrf, presented)
    }
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let device = parts.uri.path() == "/device" || parts.uri.path().starts_with("/device/");
        let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Err(login_required(state, &parts.headers, device));
        };
        let cookie = Zeroizing::new(cookie);
        let session = match state.coffer.ui_sessions.get(&cookie) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(login_required(state, &parts.headers, device)),
            Err(e) => return Err(error_page(None, &e)),
        };
        let peer = match Peer::from_request_parts(parts, state).await {
            Ok(p) => p,
            Err(never) => match never {},
        };
        let caller = Caller {
            token: Some(session.token.as_str()),
            source: peer.source,
            cert: peer.cert.as_deref(),
            org_hint: None,
        };
        match state.coffer.identity.authenticate(&caller).await {
            Ok(who) => {
                if let Some(note) = parts.extensions.get::<AuditNote>() {
                    note.principal(&who);
                }
                Ok(UiUser {
                    who,
                    csrf: session.csrf.clone(),
                })
            }
            // Revoked or expired behind the session: the session is over.
            Err(ServiceError::Unauthenticated) => {
                let _ = state.coffer.ui_sessions.end(&cookie);
                Err(login_required(state, &parts.headers, device))
            }
            // Sealed (503) and the rest: the error page, linking to /ui.
            Err(e) => Err(error_page(None, &e)),
        }
    }
}

/// A page that needs a session, without one: 401 with the login form in
/// place (not a redirect, so the audit record says `denied`); the login
/// then goes to the organizations, or back to `/device`.
fn login_required(state: &AppState, headers: &HeaderMap, device: bool) -> Response {
    match PreCsrf::of(state, headers) {
        Ok(pre) => {
            let page = pages::login(&pre.token, "", device, Some("Log in to continue."), None);
            let mut res = html(StatusCode::UNAUTHORIZED, page);
            res.extensions_mut().insert(ErrorCode("unauthenticated"));
            pre.respond(res)
        }
        Err(e) => error_page(None, &e),
    }
}

/// `GET /`: the dashboard.
pub(super) async fn root() -> Response {
    see_other("/ui")
}

/// `GET /ui`: where the server's state says to go.
pub(super) async fn home(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let status = match s.coffer.operator.seal_status().await {
        Ok(st) => st,
        Err(e) => return error_page(None, &e),
    };
    if !status.initialized {
        return see_other("/ui/init");
    }
    if status.sealed {
        return see_other("/ui/unseal");
    }
    let live =
        cookie(&headers, SESSION_COOKIE).is_some_and(|c| s.coffer.ui_sessions.get(c).is_ok_and(|sess| sess.is_some()));
    see_other(if live { "/ui/orgs" } else { "/ui/login" })
}

/// `GET /ui/assets/{name}`: the script and the stylesheet, cacheable for
/// a year (their URLs carry their hash; pages pin them with integrity).
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "argon2.js" => (ARGON2_JS, "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    let mut res = (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response();
    res.extensions_mut().insert(Cacheable);
    res
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct InitForm {
    csrf: String,
    shares: String,
    threshold: String,
}

fn count_field(name: &str, v: &str) -> Result<u8, ServiceError> {
    v.trim()
        .parse::<u8>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| ServiceError::Invalid(format!("{name} must be a whole number from 1 to 255, got {v:?}")))
}

/// `GET /ui/init`.
pub(super) async fn init_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match s.coffer.operator.seal_status().await {
        Ok(st) if st.initialized => return see_other("/ui"),
        Ok(_) => {}
        Err(e) => return error_page(None, &e),
    }
    match PreCsrf::of(&s, &headers) {
        Ok(pre) => {
            let page = pages::init_form(&pre.token, None);
            pre.respond(html(StatusCode::OK, page))
        }
        Err(e) => error_page(None, &e),
    }
}

/// `POST /ui/init`: split the root key; the shares and root token are
/// in this answer only.
pub(super) async fn init_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    UiForm(f): UiForm<InitForm>,
) -> Response {
    if !PreCsrf::matches(&headers, &f.csrf) {
        return csrf_refused(false);
    }
    let counts = count_field("shares", &f.shares).and_then(|n| Ok((n, count_field("threshold", &f.threshold)?)));
    let result = match counts {
        Ok((n, k)) => s.coffer.operator.init(n, k).await.map(|r| (k, r)),
        Err(e) => Err(e),
    };
    match result {
        Ok((k, out)) => {
            let shares: Vec<&str> = out.keys_hex.iter().map(|k| k.as_str()).collect();
            html(StatusCode::OK, pages::init_done(k, &shares, &out.root_token))
        }
        Err(e) => {
            let (status, code, message) = describe(&e);
            let mut res = html(status, pages::init_form(&f.csrf, Some(&message)));
            res.extensions_mut().insert(ErrorCode(code));
            res
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct UnsealForm {
    csrf: String,
    key: Zeroizing<String>,
}

/// The unseal page for the current state, with an error line.
async fn unseal_view(s: &AppState, headers: &HeaderMap, status: StatusCode, error: Option<&str>) -> Response {
    let st = match s.coffer.operator.seal_status().await {
        Ok(st) => st,
        Err(e) => return error_page(None, &e),
    };
    if !st.initialized {
        return see_other("/ui/init");
    }
    if !st.sealed {
        return see_other("/ui");
    }
    match PreCsrf::of(s, headers) {
        Ok(pre) => {
            let page = pages::unseal(&st, st.kind == SealKind::Pkcs11, &pre.token, error);
            pre.respond(html(status, page))
        }
        Err(e) => error_page(None, &e),
    }
}

/// `GET /ui/unseal`.
pub(super) async fn unseal_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    unseal_view(&s, &headers, StatusCode::OK, None).await
}

/// `POST /ui/unseal`: one share. A refused share leaves the progress as
/// it was and shows the API's message; the last one moves on.
pub(super) async fn unseal_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    UiForm(f): UiForm<UnsealForm>,
) -> Response {
    if !PreCsrf::matches(&headers, &f.csrf) {
        return csrf_refused(false);
    }
    match s.coffer.operator.unseal(&f.key).await {
        Ok(st) if !st.sealed => see_other("/ui"),
        Ok(_) => see_other("/ui/unseal"),
        Err(e) => {
            let (status, code, message) = describe(&e);
            let mut res = unseal_view(&s, &headers, status, Some(&message)).await;
            res.extensions_mut().insert(ErrorCode(code));
            res
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct CsrfForm {
    csrf: String,
}

/// `POST /ui/unseal/reset`: discard the shares entered.
pub(super) async fn unseal_reset(
    State(s): State<AppState>,
    headers: HeaderMap,
    UiForm(f): UiForm<CsrfForm>,
) -> Response {
    if !PreCsrf::matches(&headers, &f.csrf) {
        return csrf_refused(false);
    }
    s.coffer.operator.unseal_reset();
    see_other("/ui/unseal")
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct LoginForm {
    csrf: String,
    /// where to go after login: `device` (the device-flow page) or the
    /// organizations; nothing else, so no open redirect
    next: String,
    email: String,
    password: Zeroizing<String>,
    totp: String,
    recovery_code: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NextQuery {
    next: String,
    /// an organization whose "Sign in with …" button to show
    org: String,
}

/// Where a login goes next: only the device page or the organizations.
fn after_login(next: &str) -> &'static str {
    if next == "device" { "/device" } else { "/ui/orgs" }
}

/// `GET /ui/login`.
pub(super) async fn login_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    axum::extract::Query(q): axum::extract::Query<NextQuery>,
) -> Response {
    if let Err(e) = s.coffer.operator.require_unsealed() {
        return match e {
            ServiceError::Sealed | ServiceError::NotInitialized => see_other("/ui"),
            e => error_page(None, &e),
        };
    }
    match PreCsrf::of(&s, &headers) {
        Ok(pre) => {
            // The organization's provider name, when it has single sign-on.
            let org = q.org.trim().to_ascii_lowercase();
            let sso = match s.coffer.sso.display_name(&org).await {
                Ok(Some(name)) if !org.is_empty() => Some((org, name)),
                _ => None,
            };
            let sso = sso.as_ref().map(|(o, n)| (o.as_str(), n.as_str()));
            let page = pages::login(&pre.token, "", after_login(&q.next) == "/device", None, sso);
            pre.respond(html(StatusCode::OK, page))
        }
        Err(e) => error_page(None, &e),
    }
}

/// `POST /ui/login`: the API's login (its rate limits, lockout and
/// messages), then a dashboard session around the new access token.
pub(super) async fn login_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    note: AuditNote,
    UiForm(f): UiForm<LoginForm>,
) -> Response {
    if !PreCsrf::matches(&headers, &f.csrf) {
        return csrf_refused(false);
    }
    note.tried(&f.email);
    let opt = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let (totp, recovery) = (opt(&f.totp), opt(&f.recovery_code));
    let session = s
        .coffer
        .identity
        .login(peer.source, &f.email, f.password, totp.as_deref(), recovery.as_deref())
        .await;
    let created = session.and_then(|sess| {
        let expires_at = crate::service::now_ms() + sess.expires_in * 1000;
        s.coffer.ui_sessions.create(sess.access_token, expires_at)
    });
    match created {
        Ok(cookie) => session_started(&s, &cookie, after_login(&f.next)),
        Err(e) => {
            let (status, code, message) = describe(&e);
            let device = after_login(&f.next) == "/device";
            let mut res = html(status, pages::login(&f.csrf, &f.email, device, Some(&message), None));
            if let ServiceError::RateLimited { retry_after_s } = e
                && let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string())
            {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res.extensions_mut().insert(ErrorCode(code));
            res
        }
    }
}

/// A new dashboard session: its cookie set on a redirect to `to`.
fn session_started(state: &AppState, cookie: &str, to: &str) -> Response {
    let mut res = see_other(to);
    if let Some(v) = set_cookie(state, SESSION_COOKIE, cookie, None) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `POST /ui/logout`: the session ends server-side and its token (and
/// login session) is revoked.
pub(super) async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    SessionForm(user, _): SessionForm<CsrfForm>,
) -> Response {
    if let Some(c) = cookie(&headers, SESSION_COOKIE) {
        let _ = s.coffer.ui_sessions.end(c);
    }
    if let Err(e) = s.coffer.identity.logout(&user.who).await {
        return error_page(None, &e);
    }
    let mut res = see_other("/ui/login");
    if let Some(v) = set_cookie(&s, SESSION_COOKIE, "", Some(0)) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `GET /ui/orgs`.
pub(super) async fn orgs(State(s): State<AppState>, user: UiUser) -> Response {
    match s.coffer.tenants.list_orgs(&user.who).await {
        Ok(list) => html(StatusCode::OK, pages::orgs(&user.viewer(), &list)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/orgs/{org}`: its projects.
pub(super) async fn org(State(s): State<AppState>, user: UiUser, Path(org): Path<String>) -> Response {
    match s.coffer.tenants.list_projects(&user.who, &org).await {
        Ok(list) => html(StatusCode::OK, pages::projects(&user.viewer(), &org, &list)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/orgs/{org}/projects/{project}`: its environments.
pub(super) async fn project(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, project)): Path<(String, String)>,
) -> Response {
    match s.coffer.tenants.list_envs(&user.who, &org, &project).await {
        Ok(list) => html(StatusCode::OK, pages::envs(&user.viewer(), &org, &project, &list)),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/orgs/{org}/projects/{project}/envs/{env}`: the secrets,
/// values masked.
pub(super) async fn env(
    State(s): State<AppState>,
    user: UiUser,
    Path((org, project, env)): Path<(String, String, String)>,
) -> Response {
    let path = (org.as_str(), project.as_str(), env.as_str());
    let loaded = async {
        let list = s.coffer.secrets.list_secrets(&user.who, &org, &project, &env).await?;
        let meta = s.coffer.tenants.get_env(&user.who, &org, &project, &env).await?;
        let perms = s.coffer.secrets.env_perms(&user.who, path).await?;
        let deleted = s.coffer.secrets.deleted_secrets(&user.who, path).await?;
        Ok::<_, ServiceError>((list, meta.protected, perms, deleted))
    }
    .await;
    match loaded {
        Ok((list, protected, perms, deleted)) => html(
            StatusCode::OK,
            pages::secrets(&user.viewer(), path, protected, (&list, &deleted), perms),
        ),
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `POST …/envs/{env}/secrets/{key}/reveal` (fetch, `X-CSRF-Token`): one
/// value as JSON, recorded as `secret.reveal`; refused unless the session
/// may reveal it.
pub(super) async fn reveal(
    State(s): State<AppState>,
    headers: HeaderMap,
    user: UiUser,
    note: AuditNote,
    Path((org, project, env, key)): Path<(String, String, String, String)>,
) -> Response {
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !user.csrf_ok(presented) {
        return csrf_refused(true);
    }
    match s
        .coffer
        .secrets
        .get_secret(&user.who, (&org, &project, &env), &key, true)
        .await
    {
        Ok(secret) => {
            note.values(1);
            let value = secret.value.as_ref().map(|v| v.as_str()).unwrap_or("");
            axum::Json(json!({ "key": secret.key, "value": value })).into_response()
        }
        Err(e) => {
            let (status, code, message) = describe(&e);
            let mut res = (
                status,
                axum::Json(json!({ "error": true, "code": code, "message": message })),
            )
                .into_response();
            res.extensions_mut().insert(ErrorCode(code));
            res
        }
    }
}

pub(super) use admin::{
    audit, audit_record, audit_verify, seal, seal_confirm, server, token_login, token_login_submit,
};
pub(super) use device::{device_approve, device_confirm, device_deny, device_page};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_exactly_and_duplicates_distrusted() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; coffer_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "coffer"), None);
        h.append(header::COOKIE, HeaderValue::from_static("coffer_session=evil"));
        assert_eq!(cookie(&h, SESSION_COOKIE), None, "two cookies of one name");
    }

    #[test]
    fn a_login_goes_only_to_the_device_page_or_the_organizations() {
        assert_eq!(after_login("device"), "/device");
        for next in ["", "//evil.example", "https://evil.example/", "/ui/orgs/x", "/device"] {
            assert_eq!(after_login(next), "/ui/orgs", "{next}");
        }
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(seg("DB_URL"), "DB_URL");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg("\"><"), "%22%3E%3C");
    }

    #[test]
    fn the_csp_forbids_inline_code_and_framing() {
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'") && CSP.contains("default-src 'none'"));
    }

    #[test]
    fn no_page_template_has_inline_style_or_script() {
        for (file, text) in [
            ("mod.rs", include_str!("mod.rs")),
            ("pages.rs", include_str!("pages.rs")),
            ("access.rs", include_str!("access.rs")),
            ("account.rs", include_str!("account.rs")),
            ("admin.rs", include_str!("admin.rs")),
            ("device.rs", include_str!("device.rs")),
            ("edit.rs", include_str!("edit.rs")),
            ("approvals.rs", include_str!("approvals.rs")),
            ("ci_sync.rs", include_str!("ci_sync.rs")),
            ("dbcreds.rs", include_str!("dbcreds.rs")),
            ("jwt_auth.rs", include_str!("jwt_auth.rs")),
        ] {
            let (code, _) = text.split_once("#[cfg(test)]").unwrap_or((text, ""));
            assert!(!code.contains("style="), "{file}: a style attribute");
            assert!(
                !code.contains("onclick") && !code.contains("javascript:"),
                "{file}: an inline handler"
            );
        }
    }

    #[test]
    fn every_form_after_login_is_taken_through_session_form() {
        // A handler taking a plain UiForm next to a session would have to
        // remember the CSRF check; only the pre-login forms may.
        for (file, text) in [
            ("access.rs", include_str!("access.rs")),
            ("account.rs", include_str!("account.rs")),
            ("admin.rs", include_str!("admin.rs")),
            ("device.rs", include_str!("device.rs")),
            ("edit.rs", include_str!("edit.rs")),
            ("approvals.rs", include_str!("approvals.rs")),
            ("dbcreds.rs", include_str!("dbcreds.rs")),
            ("ci_sync.rs", include_str!("ci_sync.rs")),
            ("jwt_auth.rs", include_str!("jwt_auth.rs")),
        ] {
            let plain = text.matches(concat!("UiForm", "(f)")).count();
            let allowed = usize::from(file == "admin.rs"); // the root-token login (pre-login, double submit)
            assert_eq!(plain, allowed, "{file}: a form taken without SessionForm");
        }
    }
}
