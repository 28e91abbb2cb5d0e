//! The dashboard's pages as maud templates: compiled into the binary,
//! every interpolation HTML-escaped by maud. No page carries an inline
//! script, an inline style or a `style` attribute (the CSP forbids them),
//! and no page carries a secret value: the secrets table shows lengths and
//! a reveal control, and values arrive only through the reveal fetch.
//! The init page is the one exception by design: it shows the new shares
//! and root token once, in a `no-store` answer.

use maud::{DOCTYPE, Markup, html};

use super::{Assets, seg};
use crate::access::{PermSet, Permission};
use crate::seal::SealStatus;
use crate::service::{EnvView, OrgView, ProjectView, SecretView};

/// Who is looking at a page, for the header: name and session CSRF token.
pub(super) struct Viewer<'a> {
    pub(super) name: &'a str,
    pub(super) csrf: &'a str,
    /// root: the header links the server page
    pub(super) root: bool,
}

/// The frame of every page.
pub(super) fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    let assets = Assets::get();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                @if let Some(v) = viewer {
                    meta name="csrf-token" content=(v.csrf);
                }
                title { (title) " · coffer" }
                link rel="stylesheet" href=(assets.css_url) integrity=(assets.css_integrity);
                script src=(assets.js_url) integrity=(assets.js_integrity) defer {}
            }
            body {
                header {
                    a href="/ui" { "coffer" }
                    @if let Some(v) = viewer {
                        // One link per area; each area adds its own line.
                        nav.main-nav aria-label="Main" {
                            a href="/ui/orgs" { "Organizations" }
                            a href="/ui/account" { "Account" }
                            (super::admin::nav_links(v.root))
                        }
                        div.row {
                            span.who { (v.name) }
                            form method="post" action="/ui/logout" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button.secondary type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub(super) fn error_line(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            p.error role="alert" { (e) }
        }
    }
}

pub(super) fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A masked secret input with a show/hide toggle (shown with script only).
pub(super) fn masked_input(id: &str, name: &str, label: &str, required: bool) -> Markup {
    html! {
        label for=(id) { (label) }
        div.row {
            input id=(id) type="password" name=(name) autocomplete="off" spellcheck="false" required[required];
            button.secondary.toggle-mask type="button" aria-controls=(id) aria-pressed="false" hidden data-js { "Show" }
        }
    }
}

/// Uninitialized: how many shares, how many to unseal.
pub(super) fn init_form(csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Initialize",
        None,
        html! {
            h1 { "Initialize coffer" }
            p { "This server has no keys yet. Choose how many custodians hold an unseal share, and how many of them it takes to unseal." }
            (error_line(error))
            form.card method="post" action="/ui/init" {
                (csrf_field(csrf))
                label for="shares" { "Shares (custodians)" }
                input #shares type="number" name="shares" min="1" max="255" value="5" required;
                label for="threshold" { "Threshold (shares needed to unseal)" }
                input #threshold type="number" name="threshold" min="1" max="255" value="3" required;
                p.muted { "Each share and the root token are shown once, on the next page. Nothing stores them for you." }
                button type="submit" { "Initialize" }
            }
        },
    )
}

/// The new shares and root token, each shown once, one step at a time
/// (all at once without script).
pub(super) fn init_done(threshold: u8, shares: &[&str], root_token: &str) -> Markup {
    let n = shares.len();
    layout(
        "Initialized",
        None,
        html! {
            h1 { "Store the shares" }
            p.notice role="status" {
                "coffer is initialized and sealed. Give each share to its custodian; "
                (threshold) " of " (n) " unseal it. They are shown only now."
            }
            div.ceremony {
                @for (i, share) in shares.iter().enumerate() {
                    section.card.step data-step=(i + 1) {
                        h2 { "Share " (i + 1) " of " (n) }
                        code.secret-value.share-value { (share) }
                        div.row {
                            button.secondary.copy type="button" hidden data-js { "Copy" }
                            button.stored type="button" { "I stored it" }
                        }
                    }
                }
                section.card.step data-step="root" {
                    h2 { "Root token" }
                    p.muted { "Keep it offline: it may do everything. Use it to create the first users, then revoke it." }
                    code.secret-value.root-token { (root_token) }
                    div.row {
                        button.secondary.copy type="button" hidden data-js { "Copy" }
                        button.stored type="button" { "I stored it" }
                    }
                }
            }
            p #ceremony-done {
                a href="/ui/unseal" { "Continue to unseal" }
            }
        },
    )
}

/// Sealed: the ceremony's progress and the share field (Shamir), or why
/// the HSM has not unsealed it (pkcs11).
pub(super) fn unseal(status: &SealStatus, hsm: bool, csrf: &str, error: Option<&str>) -> Markup {
    layout(
        "Unseal",
        None,
        html! {
            h1 { "Unseal" }
            @if hsm {
                p.notice role="status" {
                    "This server unseals itself through its HSM. "
                    @if let Some(reason) = &status.reason {
                        "It has not yet: " (reason)
                    } @else {
                        "It has not yet; see the server log."
                    }
                }
            } @else {
                div data-seal-progress=(status.progress) {
                    p #unseal-status role="status" {
                        "Sealed. " span #progress-count { (status.progress) } " of " (status.threshold)
                        " shares entered (" (status.shares) " exist)."
                    }
                    progress #unseal-progress value=(status.progress) max=(status.threshold) {
                        (status.progress) "/" (status.threshold)
                    }
                }
                (error_line(error))
                form.card #unseal-form method="post" action="/ui/unseal" {
                    (csrf_field(csrf))
                    (masked_input("share", "key", "Unseal share", true))
                    button type="submit" { "Submit share" }
                }
                form method="post" action="/ui/unseal/reset" {
                    (csrf_field(csrf))
                    button.secondary type="submit" { "Reset (discard the shares entered)" }
                }
            }
        },
    )
}

/// Password plus TOTP or a recovery code; `device`: back to the
/// device-flow page afterwards.
/// `sso`: the organization (slug, provider name) whose "Sign in with …"
/// button to show; else a field for the organization.
pub(super) fn login(csrf: &str, email: &str, device: bool, error: Option<&str>, sso: Option<(&str, &str)>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            (error_line(error))
            form.card method="post" action="/ui/login" {
                (csrf_field(csrf))
                @if device {
                    input type="hidden" name="next" value="device";
                }
                label for="email" { "Email" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                (masked_input("password", "password", "Password", true))
                label for="totp" { "Authenticator code (if enrolled)" }
                input #totp type="text" name="totp" inputmode="numeric" autocomplete="one-time-code" maxlength="10";
                label for="recovery" { "…or a recovery code" }
                input #recovery type="text" name="recovery_code" autocomplete="off" spellcheck="false";
                button type="submit" { "Log in" }
            }
            (super::sso::login_block(sso, device))
            p.muted { "Operating the server? " a #root-login href="/ui/login/token" { "Log in with a root token" } }
        },
    )
}

/// An error page inside the frame.
pub(super) fn error(viewer: Option<&Viewer<'_>>, message: &str) -> Markup {
    layout(
        "Error",
        viewer,
        html! {
            h1 { "That did not work" }
            p.error role="alert" { (message) }
            p { a href="/ui" { "Back to the start" } }
        },
    )
}

pub(super) fn crumbs(org: Option<&str>, project: Option<&str>) -> Markup {
    html! {
        nav.crumbs aria-label="breadcrumb" {
            a href="/ui/orgs" { "Organizations" }
            @if let Some(o) = org {
                " / " a href={ "/ui/orgs/" (seg(o)) } { (o) }
                @if let Some(p) = project {
                    " / " a href={ "/ui/orgs/" (seg(o)) "/projects/" (seg(p)) } { (p) }
                }
            }
        }
    }
}

pub(super) fn orgs(viewer: &Viewer<'_>, orgs: &[OrgView]) -> Markup {
    layout(
        "Organizations",
        Some(viewer),
        html! {
            (crumbs(None, None))
            h1 { "Organizations" }
            @if orgs.is_empty() {
                p.muted { "You belong to no organization yet." }
            } @else {
                ul.list #orgs {
                    @for o in orgs {
                        li { a href={ "/ui/orgs/" (seg(&o.slug)) } { (o.slug) } " " span.muted { (o.name) } }
                    }
                }
            }
        },
    )
}

pub(super) fn projects(viewer: &Viewer<'_>, org: &str, projects: &[ProjectView]) -> Markup {
    layout(
        org,
        Some(viewer),
        html! {
            (crumbs(Some(org), None))
            h1 { "Projects of " (org) }
            p { a #access-link href={ "/ui/orgs/" (seg(org)) "/access" } { "Access: members, groups, service accounts" } }
            p { a #approvals-link href={ "/ui/orgs/" (seg(org)) "/approvals" } { "Approvals: pending changes, break-glass review" } }
            p { a #webhooks-link href={ "/ui/orgs/" (seg(org)) "/webhooks" } { "Webhooks: signed notifications, delivery log" } }
            p { a #database-link href={ "/ui/orgs/" (seg(org)) "/database" } { "Database credentials: connections, roles, leases" } }
            p { a #ci-sync-link href={ "/ui/orgs/" (seg(org)) "/ci-sync" } { "CI sync: GitHub Actions and GitLab CI/CD targets" } }
            p { a #jwt-link href={ "/ui/orgs/" (seg(org)) "/jwt" } { "Workload identity: JWT/OIDC issuers and roles for CI" } }
            @if projects.is_empty() {
                p.muted { "No project you can see." }
            } @else {
                ul.list #projects {
                    @for p in projects {
                        li {
                            a href={ "/ui/orgs/" (seg(org)) "/projects/" (seg(&p.slug)) } { (p.slug) }
                            " " span.muted { (p.name) }
                        }
                    }
                }
            }
        },
    )
}

pub(super) fn envs(viewer: &Viewer<'_>, org: &str, project: &str, envs: &[EnvView]) -> Markup {
    layout(
        project,
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            h1 { "Environments of " (project) }
            @if envs.is_empty() {
                p.muted { "No environment you can see." }
            } @else {
                ul.list #envs {
                    @for e in envs {
                        li {
                            a href={ "/ui/orgs/" (seg(org)) "/projects/" (seg(project)) "/envs/" (seg(&e.slug)) } { (e.slug) }
                            @if e.protected { span.badge.protected title="protected environment" { "protected" } }
                            " " span.muted { (e.name) }
                            " " a.grants-link href={ "/ui/orgs/" (seg(org)) "/projects/" (seg(project)) "/envs/" (seg(&e.slug)) "/grants" } { "Grants" }
                            " " a.policy-link href={ "/ui/orgs/" (seg(org)) "/projects/" (seg(project)) "/envs/" (seg(&e.slug)) "/approval-policy" } { "Approval policy" }
                        }
                    }
                }
            }
        },
    )
}

/// The secrets of one environment: metadata only; values masked, each
/// fetched on "reveal" when the viewer may reveal (else no control). Edit,
/// History, New secret, Import, Export and the deleted secrets' Restore and
/// Purge (`edit.rs`) show only with their permission.
pub(super) fn secrets(
    viewer: &Viewer<'_>,
    (org, project, env): (&str, &str, &str),
    protected: bool,
    (secrets, deleted): (&[SecretView], &[SecretView]),
    perms: PermSet,
) -> Markup {
    let base = format!("/ui/orgs/{}/projects/{}/envs/{}", seg(org), seg(project), seg(env));
    let may_reveal = perms.has(Permission::Reveal);
    let may_update = perms.has(Permission::Update);
    let may_delete = perms.has(Permission::Delete);
    let may_import = may_reveal && (perms.has(Permission::Create) || may_update);
    layout(
        env,
        Some(viewer),
        html! {
            (crumbs(Some(org), Some(project)))
            h1 {
                "Secrets in " (env)
                @if protected { span.badge.protected title="protected environment" { "protected" } }
            }
            div.row.env-actions {
                @if perms.has(Permission::Create) {
                    a.button #new-secret href={ (base) "/secrets/new" } { "New secret" }
                }
                @if may_import {
                    a.button.secondary #import href={ (base) "/import" } { "Import" }
                }
                @if perms.has(Permission::Export) {
                    form.row #export-form method="post" action={ (base) "/export" } {
                        (csrf_field(viewer.csrf))
                        label.inline for="export-format" { "Export as" }
                        select #export-format name="format" {
                            option value="env" { ".env" }
                            option value="json" { "JSON" }
                            option value="yaml" { "YAML" }
                        }
                        button.secondary type="submit" { "Export" }
                    }
                }
            }
            @if !may_reveal {
                p.muted #no-reveal { "You may see the keys here, not the values." }
            }
            @if secrets.is_empty() {
                p.muted { "No secrets." }
            } @else {
                div.table-wrap {
                    table #secrets {
                        thead { tr {
                            th scope="col" { "Key" }
                            th scope="col" { "Value" }
                            th scope="col" { "Type" }
                            th scope="col" { "Version" }
                            th scope="col" { "Updated" }
                            th scope="col" { "By" }
                            th scope="col" { span.muted { "Actions" } }
                        } }
                        tbody {
                            @for s in secrets {
                                @let url = format!("{base}/secrets/{}", seg(&s.key));
                                @let reveal_url = format!("{url}/reveal");
                                tr data-key=(s.key) data-reveal=[may_reveal.then_some(&reveal_url)] {
                                    th scope="row" { code { (s.key) } }
                                    td.value.masked aria-live="polite" { "•••••••• (" (s.length) " bytes)" }
                                    td { (s.value_type) }
                                    td { (s.version) }
                                    td { time datetime=(s.updated_at) { (s.updated_at) } }
                                    td.by { (s.updated_by) }
                                    td.actions {
                                        @if may_reveal {
                                            button.reveal type="button" aria-pressed="false" hidden data-js { "Reveal" }
                                            button.secondary.copy type="button" hidden { "Copy" }
                                        }
                                        @if may_update {
                                            a.edit href={ (url) "/edit" } { "Edit" }
                                            " "
                                        }
                                        a.history href={ (url) "/history" } { "History" }
                                    }
                                }
                            }
                        }
                    }
                }
                @if may_reveal {
                    p.muted { "A revealed value is recorded in the audit log and masked again after 30 seconds." }
                }
            }
            @if !deleted.is_empty() {
                h2 #deleted { "Deleted secrets" }
                ul.list #deleted-secrets {
                    @for s in deleted {
                        @let url = format!("{base}/secrets/{}", seg(&s.key));
                        li data-key=(s.key) {
                            code { (s.key) } " " span.muted { "v" (s.version) ", deleted" }
                            @if may_delete {
                                div.row {
                                    form.restore method="post" action={ (url) "/restore" } {
                                        (csrf_field(viewer.csrf))
                                        button.secondary type="submit" { "Restore" }
                                    }
                                    form.purge.row method="post" action={ (url) "/purge" } {
                                        (csrf_field(viewer.csrf))
                                        label.check {
                                            input type="checkbox" name="confirm" value="yes" required;
                                            " I understand it is gone for good"
                                        }
                                        button.danger type="submit" { "Purge" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
