//! The dashboard's "My account" page (docs/dashboard.md): the caller's
//! tokens (never a token's value, except a new one in the answer that made
//! it), revoke; TOTP enrolment with the `otpauth://` URI as a QR code (an
//! SVG rendered here, in a `data:` image the CSP allows) and the secret as
//! text, confirmation with a code, then the recovery codes, once. Every
//! answer carrying a secret is a POST's answer (`no-store`, not in
//! history as a URL); every POST checks the session's CSRF token first.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use maud::{Markup, html};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::pages::{csrf_field, error_line, layout, masked_input};
use super::{SessionForm, UiUser, error_page, see_other};
use crate::http::AppState;
use crate::http::error::{ErrorCode, describe};
use crate::http::extract::Peer;
use crate::service::{IssuedToken, ServiceError, TokenView, TotpEnrollment};

/// What the account page shows besides the list.
enum Shown<'a> {
    Nothing,
    Error(&'a str),
    NewToken(&'a IssuedToken),
}

fn with_error(mut res: Response, e: &ServiceError) -> Response {
    let (status, code, _) = describe(e);
    *res.status_mut() = status;
    res.extensions_mut().insert(ErrorCode(code));
    res
}

async fn account_view(s: &AppState, user: &UiUser, shown: Shown<'_>) -> Response {
    let loaded = async {
        let tokens = s.coffer.identity.list_tokens(&user.who).await?;
        let totp = s.coffer.identity.totp_enabled(&user.who).await?;
        let links = s.coffer.shares.list_mine(&user.who).await?;
        Ok::<_, ServiceError>((tokens, totp, links))
    }
    .await;
    match loaded {
        Ok((tokens, totp, links)) => {
            (StatusCode::OK, account_page(user, &tokens, totp, &links, &shown)).into_response()
        }
        Err(e) => error_page(Some(&user.viewer()), &e),
    }
}

/// `GET /ui/account`.
pub(in crate::http) async fn account(State(s): State<AppState>, user: UiUser) -> Response {
    account_view(&s, &user, Shown::Nothing).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct TokenForm {
    name: String,
    /// hours; empty: as long as this session's token
    ttl_hours: String,
}

/// `POST /ui/account/tokens`: a token derived from this session's (it
/// ends with it), shown in this answer only.
pub(in crate::http) async fn create_token(
    State(s): State<AppState>,
    SessionForm(user, f): SessionForm<TokenForm>,
) -> Response {
    let issued = match super::access::ttl_seconds(&f.ttl_hours) {
        Ok(ttl) => {
            s.coffer
                .identity
                .create_token(&user.who, f.name.trim(), ttl, None, false)
                .await
        }
        Err(e) => Err(e),
    };
    match issued {
        Ok(t) => account_view(&s, &user, Shown::NewToken(&t)).await,
        Err(e) => {
            let (_, _, message) = describe(&e);
            with_error(account_view(&s, &user, Shown::Error(&message)).await, &e)
        }
    }
}

/// `POST /ui/account/tokens/{accessor}/revoke`: revoke one of the
/// caller's tokens (and what derives from it). Revoking this session's
/// own token ends the session: the next page is the login form.
pub(in crate::http) async fn revoke_token(
    State(s): State<AppState>,
    Path(accessor): Path<String>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    match s.coffer.identity.revoke_token(&user.who, &accessor).await {
        Ok(()) => see_other("/ui/account"),
        Err(e) => {
            let (_, _, message) = describe(&e);
            with_error(account_view(&s, &user, Shown::Error(&message)).await, &e)
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct EnrollForm {
    password: Zeroizing<String>,
}

/// The `otpauth://` URI as a QR code: an SVG (no style attribute, no
/// script) in a `data:` URI for an `<img>`.
fn qr_data_uri(uri: &str) -> Result<Zeroizing<String>, ServiceError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| ServiceError::Internal(format!("QR code: {e}")))?;
    let svg = Zeroizing::new(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .build(),
    );
    let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(svg.as_bytes()));
    Ok(Zeroizing::new(format!("data:image/svg+xml;base64,{}", b64.as_str())))
}

/// `POST /ui/account/totp/enroll`: a new TOTP seed (the password proves
/// the person), shown once as a QR code and as text, with the form that
/// confirms it.
pub(in crate::http) async fn totp_enroll(
    State(s): State<AppState>,
    peer: Peer,
    SessionForm(user, f): SessionForm<EnrollForm>,
) -> Response {
    let password = Some(f.password).filter(|p| !p.is_empty());
    let enrolled = s.coffer.identity.totp_enroll(&user.who, peer.source, password).await;
    match enrolled.and_then(|e| qr_data_uri(&e.otpauth_uri).map(|qr| (e, qr))) {
        Ok((e, qr)) => (StatusCode::OK, totp_page(&user, Some((&e, &qr)), None)).into_response(),
        Err(e) => {
            let (_, _, message) = describe(&e);
            with_error(account_view(&s, &user, Shown::Error(&message)).await, &e)
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(in crate::http) struct CodeForm {
    code: String,
}

/// `POST /ui/account/totp/verify`: the first code turns TOTP on; the ten
/// recovery codes are in this answer only.
pub(in crate::http) async fn totp_verify(
    State(s): State<AppState>,
    SessionForm(user, f): SessionForm<CodeForm>,
) -> Response {
    match s.coffer.identity.totp_verify(&user.who, f.code.trim()).await {
        Ok(codes) => (StatusCode::OK, recovery_page(&user, &codes)).into_response(),
        Err(e) => {
            let (_, _, message) = describe(&e);
            with_error(
                (StatusCode::OK, totp_page(&user, None, Some(&message))).into_response(),
                &e,
            )
        }
    }
}

fn account_page(
    user: &UiUser,
    tokens: &[TokenView],
    totp: Option<bool>,
    links: &[crate::service::shares::ShareInfo],
    shown: &Shown<'_>,
) -> Markup {
    let viewer = user.viewer();
    let csrf = viewer.csrf;
    let error = match shown {
        Shown::Error(m) => Some(*m),
        _ => None,
    };
    layout(
        "My account",
        Some(&viewer),
        html! {
            h1 { "My account" }
            p { "Signed in as " strong { (user.who.name) } "." }
            (error_line(error))
            @if let Shown::NewToken(t) = shown {
                section.card #new-token role="status" {
                    h2 { "New token " (t.name) }
                    p { "Shown only now; coffer keeps only its hash. It ends with this session at the latest." }
                    code.secret-value #new-token-value { (t.token.as_str()) }
                    button.secondary.copy-once type="button" data-copy="new-token-value" hidden data-js { "Copy" }
                }
            }
            section #tokens {
                h2 { "My tokens" }
                @if tokens.is_empty() {
                    p.muted { "No tokens." }
                } @else {
                    div.table-wrap {
                        table #token-table {
                            thead { tr {
                                th scope="col" { "Name" }
                                th scope="col" { "Accessor" }
                                th scope="col" { "Created" }
                                th scope="col" { "Expires" }
                                th scope="col" { span.muted { "Actions" } }
                            } }
                            tbody {
                                @for t in tokens {
                                    @let this = t.accessor == user.who.accessor;
                                    tr data-accessor=(t.accessor) {
                                        th scope="row" {
                                            (t.name)
                                            @if this { span.badge title="the token behind this dashboard session" { "this session" } }
                                            @if t.certificate_bound { span.badge { "certificate-bound" } }
                                        }
                                        td { code { (t.accessor.get(..12).unwrap_or(&t.accessor)) "…" } }
                                        td { time datetime=(t.created_at) { (t.created_at) } }
                                        td { @if let Some(x) = &t.expires_at { time datetime=(x) { (x) } } @else { span.muted { "never" } } }
                                        td.actions {
                                            form.inline method="post" action={ "/ui/account/tokens/" (super::seg(&t.accessor)) "/revoke" } {
                                                (csrf_field(csrf))
                                                button.secondary.revoke-token type="submit" {
                                                    @if this { "Revoke (logs out)" } @else { "Revoke" }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    p.muted { "Last use is not recorded. Revoking a token revokes the tokens made from it." }
                }
                form.card #create-token method="post" action="/ui/account/tokens" {
                    (csrf_field(csrf))
                    h3 { "New token" }
                    label for="token-name" { "Name" }
                    input #token-name type="text" name="name" maxlength="100" autocomplete="off";
                    label for="token-ttl" { "Lifetime in hours (empty: as long as this session)" }
                    input #token-ttl type="number" name="ttl_hours" min="1";
                    button type="submit" { "Create token" }
                }
            }
            (super::shares::my_links(csrf, links))
            section #totp {
                h2 { "Two-factor authentication" }
                @match totp {
                    None => p.muted { "This account has no second factor (root and service accounts)." },
                    Some(true) => p #totp-on { "TOTP is on: logins ask for an authenticator code or a recovery code. An administrator resets it." },
                    Some(false) => {
                        p #totp-off { "TOTP is off. Turn it on with an authenticator app." }
                        form.card #totp-enroll method="post" action="/ui/account/totp/enroll" {
                            (csrf_field(csrf))
                            (masked_input("totp-password", "password", "Your password", true))
                            button type="submit" { "Set up TOTP" }
                        }
                    }
                }
            }
        },
    )
}

/// The enrolment (QR, secret, confirm form), or just the confirm form
/// again after a wrong code.
fn totp_page(user: &UiUser, enrolment: Option<(&TotpEnrollment, &str)>, error: Option<&str>) -> Markup {
    let viewer = user.viewer();
    layout(
        "Set up TOTP",
        Some(&viewer),
        html! {
            h1 { "Set up TOTP" }
            (error_line(error))
            @if let Some((e, qr)) = enrolment {
                section.card #totp-setup {
                    p { "Scan this code with your authenticator app, or type the secret into it. Shown only now." }
                    img #totp-qr src=(qr) width="240" height="240" alt="QR code of the otpauth:// URI for your authenticator app";
                    p { "Secret: " code #totp-secret { (e.secret.as_str()) } }
                }
            }
            form.card #totp-verify method="post" action="/ui/account/totp/verify" {
                (csrf_field(viewer.csrf))
                label for="totp-code" { "The 6-digit code your app shows now" }
                input #totp-code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="10" required autofocus;
                button type="submit" { "Turn TOTP on" }
            }
            p { a href="/ui/account" { "Cancel" } }
        },
    )
}

/// TOTP is on: the recovery codes, once.
fn recovery_page(user: &UiUser, codes: &[Zeroizing<String>]) -> Markup {
    let viewer = user.viewer();
    layout(
        "Recovery codes",
        Some(&viewer),
        html! {
            h1 { "TOTP is on" }
            p.notice role="status" {
                "Store these recovery codes offline. Each logs in once without your authenticator. They are shown only now."
            }
            ol #recovery-codes {
                @for c in codes { li { code { (c.as_str()) } } }
            }
            p { a href="/ui/account" { "I stored them: back to my account" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_an_svg_data_uri_without_style_or_script() {
        let uri = qr_data_uri("otpauth://totp/coffer:a%40b?secret=JBSWY3DPEHPK3PXP&issuer=coffer").expect("qr");
        let b64 = uri.strip_prefix("data:image/svg+xml;base64,").expect("svg data uri");
        let svg = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
        let svg = String::from_utf8(svg).expect("utf-8");
        assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
        assert!(!svg.contains("style") && !svg.contains("script"), "{svg}");
    }
}
