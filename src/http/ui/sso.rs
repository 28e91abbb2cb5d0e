//! Dashboard sign-in with single sign-on (issue 20, docs/sso.md).
//!
//! `GET /ui/sso/start?org=…` starts the code flow and sets the
//! `coffer_sso` cookie (random, `SameSite=Lax` so that the provider's
//! redirect back carries it, `Path=/ui/sso`, ten minutes): the state is
//! bound to its hash, so a callback URL replayed into another browser —
//! a login-CSRF attempt — is refused. `GET /ui/sso/callback` finishes it
//! and opens a dashboard session like the password login does.
//!
//! Both answer with a small page that moves on by `<meta refresh>` rather
//! than a redirect: the CSP's `form-action 'self'` would block a form's
//! redirect to the provider, and the `SameSite=Strict` session cookie set
//! on the provider's cross-site redirect is only sent on a navigation
//! that starts on this site.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::response::Response;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::super::AppState;
use super::super::audit::AuditNote;
use super::{SESSION_COOKIE, after_login, cookie, error_page, html as page, random_secret, set_cookie};
use crate::service::ServiceError;
use crate::service::sso::SsoPurpose;

/// The browser binding of a started sign-in.
const SSO_COOKIE: &str = "coffer_sso";

/// `GET /ui/sso/start` query.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct StartQuery {
    org: String,
    next: String,
}

/// `GET /ui/sso/callback` query. Debug leaves out the code.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct CallbackQuery {
    state: String,
    code: Zeroizing<String>,
    error: String,
    error_description: String,
}

impl std::fmt::Debug for CallbackQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackQuery").finish_non_exhaustive()
    }
}

/// The "Sign in with …" part of the login page: a button for a known
/// organization (`?org=` on the login page), else a field for its slug.
pub(super) fn login_block(org: Option<(&str, &str)>, device: bool) -> Markup {
    html! {
        section.card #sso {
            h2 { "Single sign-on" }
            form method="get" action="/ui/sso/start" {
                @if device {
                    input type="hidden" name="next" value="device";
                }
                @if let Some((slug, name)) = org {
                    input type="hidden" name="org" value=(slug);
                    button #sso-submit type="submit" { "Sign in with " (name) }
                } @else {
                    label for="sso-org" { "Organization" }
                    input #sso-org type="text" name="org" autocomplete="organization" spellcheck="false" required;
                    button #sso-submit type="submit" { "Sign in with SSO" }
                }
            }
        }
    }
}

/// This server's callback URL, as the client addressed it (the provider
/// must have it registered as a redirect URI).
fn callback_url(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    let scheme = if state.tls { "https" } else { "http" };
    format!("{scheme}://{host}/ui/sso/callback")
}

/// A page that moves on to `to` at once (and links it).
fn moving_on(to: &str, what: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                meta http-equiv="refresh" content={ "0;url=" (to) };
                title { (what) " · coffer" }
            }
            body {
                p { (what) " " a #continue href=(to) { "Continue" } }
            }
        }
    }
}

/// The `coffer_sso` cookie (or its removal).
fn sso_cookie(state: &AppState, value: &str, max_age: u32) -> Option<HeaderValue> {
    let secure = if state.tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SSO_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/ui/sso{secure}; Max-Age={max_age}"
    ))
    .ok()
}

/// `GET /ui/sso/start?org=…`: to the organization's provider.
pub(in crate::http) async fn start(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let org = q.org.trim().to_ascii_lowercase();
    if org.is_empty() {
        return error_page(
            None,
            &ServiceError::Invalid("name the organization to sign in to".into()),
        );
    }
    let next = if after_login(&q.next) == "/device" {
        "device"
    } else {
        "orgs"
    };
    let binding = match random_secret() {
        Ok(r) => format!("{next}~{}", r.as_str()),
        Err(e) => return error_page(None, &e),
    };
    match s
        .coffer
        .sso
        .begin(&org, &callback_url(&s, &headers), &binding, SsoPurpose::Ui)
        .await
    {
        Ok(url) => {
            let mut res = page(
                StatusCode::OK,
                moving_on(&url, "Signing in with your identity provider…"),
            );
            if let Some(v) = sso_cookie(&s, &binding, 600) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => error_page(None, &e),
    }
}

/// `GET /ui/sso/callback`: the provider sends the browser back here.
pub(in crate::http) async fn callback(
    State(s): State<AppState>,
    headers: HeaderMap,
    note: AuditNote,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if !q.error.is_empty() {
        let clean = |v: &str| v.chars().filter(|c| !c.is_control()).take(200).collect::<String>();
        return error_page(
            None,
            &ServiceError::SsoFailed(format!(
                "the identity provider answered {}: {}",
                clean(&q.error),
                clean(&q.error_description)
            )),
        );
    }
    let binding = cookie(&headers, SSO_COOKIE).unwrap_or_default().to_owned();
    let login = match s.coffer.sso.finish(&q.state, &q.code, &binding, SsoPurpose::Ui).await {
        Ok(l) => l,
        Err(e) => return error_page(None, &e),
    };
    note.tried(&login.email);
    let expires_at = crate::service::now_ms() + login.session.expires_in * 1000;
    let cookie_value = match s.coffer.ui_sessions.create(login.session.access_token, expires_at) {
        Ok(c) => c,
        Err(e) => return error_page(None, &e),
    };
    let to = if binding.starts_with("device~") {
        "/device"
    } else {
        "/ui/orgs"
    };
    let mut res = page(StatusCode::OK, moving_on(to, "Signed in."));
    if let Some(v) = set_cookie(&s, SESSION_COOKIE, &cookie_value, None) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Some(v) = sso_cookie(&s, "", 0) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}
