//! Share links in the dashboard (docs/share-links.md):
//!
//! - `GET /s/{id}`: the page a link opens. It holds no value and fetches
//!   nothing by itself (chat unfurlers that load it burn no view): only a
//!   click on "Reveal" POSTs the link id to `/api/v1/shares/open`, and the
//!   script (app.js, section "share links") decrypts the answer in the
//!   browser with WebCrypto, with the key from the URL fragment, which the
//!   browser never sends. A passphrase is stretched in the browser by the
//!   vendored argon2id of `hash-wasm` (MIT, `assets/vendor/`), which needs
//!   WebAssembly: this page alone gets [`SHARE_CSP`], the dashboard's CSP
//!   plus `'wasm-unsafe-eval'`. The page is the same for every id, live or
//!   not (nothing is looked up to render it).
//! - "My share links" on the account page, with revoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::pages::{csrf_field, layout};
use super::{SessionForm, see_other};
use crate::http::AppState;
use crate::http::error::{ErrorCode, describe};
use crate::service::shares::ShareInfo;

/// The share page's CSP: the dashboard's ([`super::CSP`]) with
/// `'wasm-unsafe-eval'`, which lets the vendored argon2id compile its
/// WebAssembly (no `eval` of JavaScript is allowed by it).
pub(crate) const SHARE_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                                    img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                                    frame-ancestors 'none'; base-uri 'none'";

/// Marks the share page's answer for [`super::security_headers`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShareCsp;

/// `GET /s/{id}`: the same page for every id; the script reads the id
/// from the path and the key from the fragment.
pub(in crate::http) async fn page(Path(_id): Path<String>) -> Response {
    let assets = super::Assets::get();
    let body = html! {
        h1 { "Someone shared a secret with you" }
        p { "It can be opened a limited number of times. Revealing it here uses one view; after the last view it is gone for good." }
        p.muted { "Your browser decrypts it with the key after # in the link, which is never sent to the server." }
        div #share-open data-argon2=(assets.argon2_url) data-argon2-integrity=(assets.argon2_integrity) {
            p.error #share-error role="alert" hidden {}
            div #share-pass-row hidden {
                label for="share-passphrase" { "Passphrase" }
                input #share-passphrase type="password" autocomplete="off" spellcheck="false";
            }
            button #share-reveal type="button" hidden data-js { "Reveal" }
            noscript { p.error { "Opening a share link needs JavaScript (it decrypts in your browser)." } }
            div #share-result hidden {
                h2 { "The shared value" }
                pre.secret-value #share-value {}
                button.secondary.copy-once type="button" data-copy="share-value" hidden data-js { "Copy" }
                p.muted { "This view is used. Copy the value now: reloading the page will not show it again." }
            }
        }
    };
    let mut res = (StatusCode::OK, layout("Shared secret", None, body)).into_response();
    res.extensions_mut().insert(ShareCsp);
    res
}

/// The "My share links" section of the account page.
pub(super) fn my_links(csrf: &str, links: &[ShareInfo]) -> Markup {
    html! {
        section #share-links {
            h2 { "My share links" }
            @if links.is_empty() {
                p.muted { "No live share links. Make one with " code { "coffer share create" } "." }
            } @else {
                div.table-wrap {
                    table #share-table {
                        thead { tr {
                            th scope="col" { "Link" }
                            th scope="col" { "Organization" }
                            th scope="col" { "From" }
                            th scope="col" { "Views left" }
                            th scope="col" { "Expires" }
                            th scope="col" { span.muted { "Actions" } }
                        } }
                        tbody {
                            @for l in links {
                                @let handle = &l.handle;
                                tr data-share=(handle) {
                                    th scope="row" {
                                        code { (handle.get(..8).unwrap_or(handle)) "…" }
                                        @if l.passphrase { span.badge { "passphrase" } }
                                    }
                                    td { (l.org) }
                                    td { @if l.source.is_empty() { span.muted { "typed value" } } @else { code { (l.source) } } }
                                    td { (l.views_left) " of " (l.max_views) }
                                    td { time datetime=(l.expires_at) { (l.expires_at) } }
                                    td.actions {
                                        form.inline method="post" action={ "/ui/account/shares/" (handle) "/revoke" } {
                                            (csrf_field(csrf))
                                            button.secondary.revoke-share type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `POST /ui/account/shares/{handle}/revoke`.
pub(in crate::http) async fn revoke(
    State(s): State<AppState>,
    Path(handle): Path<String>,
    SessionForm(user, _): SessionForm<super::CsrfForm>,
) -> Response {
    match s.coffer.shares.revoke(&user.who, &handle).await {
        Ok(()) => see_other("/ui/account"),
        Err(e) => {
            let (status, code, message) = describe(&e);
            let mut res = (status, super::pages::error(Some(&user.viewer()), &message)).into_response();
            res.extensions_mut().insert(ErrorCode(code));
            res
        }
    }
}
