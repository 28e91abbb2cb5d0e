//! The access model's vocabulary: the six environment permissions, the
//! role presets, and the table of environment-scoped routes with the one
//! permission each needs. Pure data; the service layer enforces it, the HTTP
//! layer builds its environment routes from [`ENV_ROUTES`], and the
//! permission-matrix test is generated from the same table.

use serde::Serialize;

/// A permission on an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// metadata: keys, types, versions, timestamps, lengths; never a value
    Read,
    /// one plaintext value
    Reveal,
    /// write a key that does not exist yet
    Create,
    /// write a new version of an existing key, roll back
    Update,
    /// soft delete, restore, purge
    Delete,
    /// every value of the environment at once (inject)
    Export,
    /// act at once on a protected environment, with a reason, audited and
    /// reviewed afterwards (break-glass, `service::approvals`)
    BreakGlass,
}

impl Permission {
    /// All seven, in bit order.
    pub const ALL: [Permission; 7] = [
        Permission::Read,
        Permission::Reveal,
        Permission::Create,
        Permission::Update,
        Permission::Delete,
        Permission::Export,
        Permission::BreakGlass,
    ];

    /// The permission's bit in a [`PermSet`].
    pub const fn bit(self) -> u8 {
        match self {
            Permission::Read => 1,
            Permission::Reveal => 2,
            Permission::Create => 4,
            Permission::Update => 8,
            Permission::Delete => 16,
            Permission::Export => 32,
            Permission::BreakGlass => 64,
        }
    }

    /// Wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Reveal => "reveal",
            Permission::Create => "create",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Export => "export",
            Permission::BreakGlass => "break_glass",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A set of permissions as a bit mask (what the `grants` table stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermSet(pub u8);

impl PermSet {
    /// Every permission.
    pub const ALL: PermSet = PermSet(127);

    /// The six permissions on secrets (all but break-glass): holding them
    /// makes an environment admin.
    pub const ENV_ADMIN: PermSet = PermSet(63);

    /// Does the set hold every permission of `other`?
    pub const fn covers(self, other: PermSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Does the set hold `p`?
    pub const fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// Union.
    pub const fn with(self, other: PermSet) -> PermSet {
        PermSet(self.0 | other.0)
    }

    /// Difference: the permissions of `self` not in `other`.
    pub const fn without(self, other: PermSet) -> PermSet {
        PermSet(self.0 & !other.0)
    }

    /// Only the defined bits.
    pub const fn from_bits(bits: i64) -> PermSet {
        PermSet((bits & 127) as u8)
    }

    /// Wire names, in bit order.
    pub fn names(self) -> Vec<&'static str> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.has(*p))
            .map(Permission::as_str)
            .collect()
    }

    /// The preset of a role name: viewer, developer, admin.
    pub fn role(name: &str) -> Option<PermSet> {
        let set = |ps: &[Permission]| PermSet(ps.iter().fold(0, |acc, p| acc | p.bit()));
        match name {
            "viewer" => Some(set(&[Permission::Read])),
            "developer" => Some(set(&[
                Permission::Read,
                Permission::Reveal,
                Permission::Create,
                Permission::Update,
            ])),
            "admin" => Some(PermSet::ALL),
            _ => None,
        }
    }
}

impl FromIterator<Permission> for PermSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        PermSet(iter.into_iter().fold(0, |acc, p| acc | p.bit()))
    }
}

/// What an environment route acts on, so a generated test can set it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// the environment itself
    Env,
    /// a live secret `{key}`
    Existing,
    /// a key that does not exist
    New,
    /// a soft-deleted secret `{key}`
    Deleted,
    /// `{key}` is a variable name `coffer run` refuses ([`BLOCKED_EXAMPLE`])
    Blocked,
}

/// The variable name a generated test puts in `{key}` of a
/// [`Target::Blocked`] route.
pub const BLOCKED_EXAMPLE: &str = "EDITOR";

/// One environment-scoped route and the permission it needs.
#[derive(Debug, Clone, Copy)]
pub struct EnvRoute {
    /// HTTP method
    pub method: &'static str,
    /// path after `/api/v1/orgs/{org}/projects/{project}/environments/{env}`
    pub path: &'static str,
    /// query string ("" for none)
    pub query: &'static str,
    /// an example JSON body ("" for none)
    pub body: &'static str,
    /// what the route acts on
    pub target: Target,
    /// the permission it needs
    pub permission: Permission,
    /// needs every permission on the environment (an environment admin),
    /// not only `permission`
    pub admin: bool,
}

impl EnvRoute {
    /// The audit action of this route (`http::audit` records it; a GET of
    /// a secret with `reveal=true` is recorded as `secret.reveal`).
    pub const fn action(&self) -> &'static str {
        match (self.path.as_bytes(), self.method.as_bytes()) {
            (b"", b"PATCH") => "env.update",
            (b"", _) => "env.read",
            (b"/secrets", _) => "secret.list",
            (b"/inject", _) => "secret.inject",
            (b"/secrets/{key}", b"GET") => "secret.read",
            (b"/secrets/{key}", b"DELETE") => "secret.delete",
            (b"/secrets/{key}", _) => "secret.write",
            (b"/secrets/{key}/restore", _) => "secret.restore",
            (b"/secrets/{key}/permanent", _) => "secret.purge",
            (b"/secrets/{key}/history", _) => "secret.history",
            (b"/secrets/{key}/rollback", _) => "secret.rollback",
            (b"/allowed-variables", _) => "env.allowed_variables",
            (b"/allowed-variables/{key}", b"PUT") => "env.variable_allow",
            (b"/allowed-variables/{key}", b"DELETE") => "env.variable_disallow",
            // a dry run is recorded as `env.push_plan`
            (b"/sync/push", _) => "env.push",
            (b"/sync/pull", _) => "env.pull",
            (b"/sync/diff", _) => "env.file_diff",
            (b"/break-glass", _) => "approval.break_glass",
            _ => "env.unknown",
        }
    }
}

const fn route(
    method: &'static str,
    path: &'static str,
    query: &'static str,
    body: &'static str,
    target: Target,
    permission: Permission,
) -> EnvRoute {
    EnvRoute {
        method,
        path,
        query,
        body,
        target,
        permission,
        admin: false,
    }
}

/// A route only an environment admin (every permission) may call.
const fn admin_route(method: &'static str, path: &'static str, target: Target) -> EnvRoute {
    EnvRoute {
        method,
        path,
        query: "",
        body: "",
        target,
        // what the allowance affects: the values inject (export) returns
        permission: Permission::Export,
        admin: true,
    }
}

/// Every environment-scoped route. The router registers exactly these paths
/// (see `http::routes`), and the service checks `permission` for each.
pub const ENV_ROUTES: &[EnvRoute] = &[
    route("GET", "", "", "", Target::Env, Permission::Read),
    // protected environments (service/approvals.rs): open a time-boxed
    // break-glass window with a reason (audited, reviewed afterwards)
    route(
        "POST",
        "/break-glass",
        "",
        r#"{"reason":"access matrix"}"#,
        Target::Env,
        Permission::BreakGlass,
    ),
    // slug, name, protection: an environment admin (org owners and admins
    // are admins of every environment)
    EnvRoute {
        body: r#"{"name":"renamed"}"#,
        ..admin_route("PATCH", "", Target::Env)
    },
    route("GET", "/secrets", "", "", Target::Env, Permission::Read),
    route("POST", "/inject", "", "", Target::Env, Permission::Export),
    route("GET", "/secrets/{key}", "", "", Target::Existing, Permission::Read),
    route(
        "GET",
        "/secrets/{key}",
        "reveal=true",
        "",
        Target::Existing,
        Permission::Reveal,
    ),
    route(
        "POST",
        "/secrets/{key}",
        "",
        r#"{"value":"v2"}"#,
        Target::New,
        Permission::Create,
    ),
    route(
        "POST",
        "/secrets/{key}",
        "",
        r#"{"value":"v2"}"#,
        Target::Existing,
        Permission::Update,
    ),
    route(
        "PUT",
        "/secrets/{key}",
        "",
        r#"{"value":"v2"}"#,
        Target::Existing,
        Permission::Update,
    ),
    route("DELETE", "/secrets/{key}", "", "", Target::Existing, Permission::Delete),
    route(
        "POST",
        "/secrets/{key}/restore",
        "",
        "",
        Target::Deleted,
        Permission::Delete,
    ),
    route(
        "DELETE",
        "/secrets/{key}/permanent",
        "",
        "",
        Target::Existing,
        Permission::Delete,
    ),
    route(
        "GET",
        "/secrets/{key}/history",
        "",
        "",
        Target::Existing,
        Permission::Read,
    ),
    route(
        "POST",
        "/secrets/{key}/rollback",
        "",
        r#"{"version":1}"#,
        Target::Existing,
        Permission::Update,
    ),
    // `coffer run`'s allow list (src/env_policy.rs): reading it is metadata,
    // changing it lets a program-loading variable through, so only an
    // environment admin may.
    route("GET", "/allowed-variables", "", "", Target::Env, Permission::Read),
    admin_route("PUT", "/allowed-variables/{key}", Target::Blocked),
    admin_route("DELETE", "/allowed-variables/{key}", Target::Blocked),
    // A file to and from the environment (src/service/sync.rs). A push
    // plan compares values, so it needs reveal; applying it needs create
    // for each new key and update for each existing one too (this example
    // applies an empty file: nothing to write).
    route(
        "POST",
        "/sync/push",
        "",
        r#"{"content":"","format":"env","apply":true}"#,
        Target::Env,
        Permission::Reveal,
    ),
    route("GET", "/sync/pull", "format=env", "", Target::Env, Permission::Export),
    route(
        "POST",
        "/sync/diff",
        "",
        r#"{"content":"SYNC_DIFF=x\n","format":"env"}"#,
        Target::Env,
        Permission::Reveal,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_names() {
        assert_eq!(PermSet::role("admin"), Some(PermSet::ALL));
        assert_eq!(PermSet::role("viewer").map(PermSet::names), Some(vec!["read"]));
        assert!(PermSet::role("developer").is_some_and(|s| s.has(Permission::Reveal) && !s.has(Permission::Delete)));
        assert_eq!(PermSet::role("root"), None);
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Some(p));
        }
        assert_eq!(PermSet::from_bits(255), PermSet::ALL);
    }

    #[test]
    fn every_permission_guards_some_route() {
        for p in Permission::ALL {
            assert!(ENV_ROUTES.iter().any(|r| r.permission == p), "{p:?} guards no route");
        }
    }
}
