//! `/device`, the device-flow page `coffer login` points at (issue 16):
//! enter the code the CLI printed → see which client asked, from where and
//! when → Approve (the password again, plus TOTP when enrolled, as the API
//! requires) or Deny (the CLI's poll then stops with "denied"). Every step
//! is a POST with the session's CSRF token, checked first.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::pages::{Viewer, csrf_field, error_line, layout, masked_input};
use super::{SessionForm, UiUser, html as page};
use crate::http::AppState;
use crate::http::error::{ErrorCode, describe};
use crate::http::extract::Peer;
use crate::service::{DeviceRequest, ServiceError, rfc3339};

#[derive(Default, Deserialize)]
#[serde(default)]
pub(crate) struct DeviceForm {
    user_code: String,
    password: Zeroizing<String>,
    totp: String,
}

/// A service error on the device page: the code form again, with the
/// API's message (and its code for the audit record).
fn refused(user: &UiUser, code: &str, e: &ServiceError) -> Response {
    let (status, reason, message) = describe(e);
    let mut res = page(status, enter_page(&user.viewer(), code, Some(&message)));
    res.extensions_mut().insert(ErrorCode(reason));
    res
}

/// `GET /device`: the code form; without a session, the login form first
/// (and back here).
pub(crate) async fn device_page(user: UiUser) -> Response {
    page(StatusCode::OK, enter_page(&user.viewer(), "", None))
}

/// `POST /device/confirm`: the pending login of that code — which client
/// asked, from where, when — with Approve and Deny.
pub(crate) async fn device_confirm(
    State(s): State<AppState>,
    SessionForm(user, f): SessionForm<DeviceForm>,
) -> Response {
    match s.coffer.identity.device_request(&user.who, &f.user_code).await {
        Ok(req) => page(StatusCode::OK, confirm_page(&user.viewer(), &req, None)),
        Err(e) => refused(&user, &f.user_code, &e),
    }
}

/// `POST /device`: approve, proving the person again (password, plus TOTP
/// when enrolled) as the API requires.
pub(crate) async fn device_approve(
    State(s): State<AppState>,
    peer: Peer,
    SessionForm(user, f): SessionForm<DeviceForm>,
) -> Response {
    let password = Some(f.password).filter(|p| !p.is_empty());
    let totp = Some(f.totp.trim()).filter(|t| !t.is_empty());
    match s
        .coffer
        .identity
        .device_approve(&user.who, peer.source, &f.user_code, password, totp)
        .await
    {
        Ok(()) => {
            let code = f.user_code.trim().to_ascii_uppercase();
            page(StatusCode::OK, done_page(&user.viewer(), &code, true))
        }
        Err(e) => {
            // A wrong password: the confirmation again, with the message.
            let (status, reason, message) = describe(&e);
            let mut res = match s.coffer.identity.device_request(&user.who, &f.user_code).await {
                Ok(req) => page(status, confirm_page(&user.viewer(), &req, Some(&message))),
                Err(_) => page(status, enter_page(&user.viewer(), &f.user_code, Some(&message))),
            };
            res.extensions_mut().insert(ErrorCode(reason));
            res
        }
    }
}

/// `POST /device/deny`: refuse the pending login; its CLI stops.
pub(crate) async fn device_deny(State(s): State<AppState>, SessionForm(user, f): SessionForm<DeviceForm>) -> Response {
    match s.coffer.identity.device_deny(&user.who, &f.user_code).await {
        Ok(()) => {
            let code = f.user_code.trim().to_ascii_uppercase();
            page(StatusCode::OK, done_page(&user.viewer(), &code, false))
        }
        Err(e) => refused(&user, &f.user_code, &e),
    }
}

fn enter_page(viewer: &Viewer<'_>, code: &str, error: Option<&str>) -> Markup {
    layout(
        "Approve a device login",
        Some(viewer),
        html! {
            h1 { "Approve a device login" }
            p { "Enter the code " code { "coffer login" } " printed. Next you see which client asked, and when, "
                "before you approve or deny it." }
            (error_line(error))
            form.card #device-code-form method="post" action="/device/confirm" {
                (csrf_field(viewer.csrf))
                label for="user_code" { "Code shown by the device (ABCD-EFGH)" }
                input #user_code type="text" name="user_code" value=(code) autocomplete="off"
                    spellcheck="false" autocapitalize="characters" required autofocus;
                button type="submit" { "Continue" }
            }
        },
    )
}

fn confirm_page(viewer: &Viewer<'_>, req: &DeviceRequest, error: Option<&str>) -> Markup {
    layout(
        "Approve a device login",
        Some(viewer),
        html! {
            h1 { "Approve a device login?" }
            p { "Approve only a login you started yourself, just now. The device gets a session as "
                strong { (viewer.name) } ", ended when this session ends." }
            dl.record #device-client {
                dt { "Code" } dd #device-code { code { (req.user_code) } }
                dt { "Client" } dd #device-agent { @if req.client.is_empty() { span.muted { "unknown (it sent no User-Agent)" } } @else { (req.client) } }
                dt { "From address" } dd #device-address { @if req.address.is_empty() { span.muted { "unknown" } } @else { (req.address) } }
                dt { "Asked at (UTC)" } dd #device-asked { time datetime=(rfc3339(req.created_at)) { (rfc3339(req.created_at)) } }
                dt { "Expires (UTC)" } dd { (rfc3339(req.expires_at)) }
            }
            (error_line(error))
            form.card #device-form method="post" action="/device" {
                (csrf_field(viewer.csrf))
                input type="hidden" name="user_code" value=(req.user_code);
                (masked_input("device-password", "password", "Your password", true))
                label for="device-totp" { "Authenticator code (if enrolled)" }
                input #device-totp type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" maxlength="10";
                button type="submit" { "Approve" }
            }
            form #device-deny-form method="post" action="/device/deny" {
                (csrf_field(viewer.csrf))
                input type="hidden" name="user_code" value=(req.user_code);
                button.danger type="submit" { "Deny" }
            }
        },
    )
}

fn done_page(viewer: &Viewer<'_>, code: &str, approved: bool) -> Markup {
    layout(
        if approved {
            "Device login approved"
        } else {
            "Device login denied"
        },
        Some(viewer),
        html! {
            @if approved {
                h1 { "Approved" }
                p.notice #device-approved role="status" {
                    "Approved " code { (code) } ": that device is now logged in as " (viewer.name) "."
                }
            } @else {
                h1 { "Denied" }
                p.notice #device-denied role="status" {
                    "Denied " code { (code) } ": the device was refused and its " code { "coffer login" } " stops."
                }
            }
            p { a href="/ui/orgs" { "Continue to your organizations" } }
        },
    )
}
