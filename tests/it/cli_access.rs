//! The identity and access CLI on the real binary and a real server:
//! `user create`, `login` (password, TOTP, device flow), the stored
//! credentials file (modes, refusal when loose, refresh), `whoami`,
//! `logout`, `org members`, `service-account`, `grant`, `revoke`, `token`.
//! Every command runs with its own `XDG_CONFIG_HOME`/`HOME`, so the stored
//! login of the person running the tests is never read or written.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{self, Server};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// How one `coffer` run authenticates.
enum As<'a> {
    /// `COFFER_TOKEN`.
    Token(&'a str),
    /// The login stored under this config directory.
    Login(&'a Path),
}

fn command(server: &Server, who: &As<'_>, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args)
        .env("COFFER_ADDR", &server.base)
        .env("COFFER_ORG", "acme")
        .env("COFFER_PROJECT", "api")
        .env("COFFER_ENV", "production")
        .env_remove("COFFER_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match who {
        As::Token(t) => {
            // A config dir nobody logs in to: the token alone decides.
            let empty = std::env::temp_dir().join("coffer-cli-access-no-login");
            cmd.env("COFFER_TOKEN", t)
                .env("XDG_CONFIG_HOME", &empty)
                .env("HOME", &empty);
        }
        As::Login(dir) => {
            cmd.env("XDG_CONFIG_HOME", dir).env("HOME", dir);
        }
    }
    cmd
}

/// Run `coffer ARGS` with `stdin` piped in.
fn coffer(server: &Server, who: &As<'_>, args: &[&str], stdin: &str) -> Output {
    let mut child = command(server, who, args).spawn().expect("run coffer");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Run and require success; returns stdout.
#[track_caller]
fn ok(server: &Server, who: &As<'_>, args: &[&str], stdin: &str) -> String {
    let out = coffer(server, who, args, stdin);
    assert!(
        out.status.success(),
        "coffer {args:?} failed: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    stdout(&out)
}

/// Run and require failure; returns stderr.
#[track_caller]
fn fails(server: &Server, who: &As<'_>, args: &[&str], stdin: &str) -> String {
    let out = coffer(server, who, args, stdin);
    assert_eq!(
        out.status.code(),
        Some(1),
        "coffer {args:?} must fail: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn credentials_file(config: &Path) -> PathBuf {
    config.join("coffer").join("credentials.json")
}

/// The one stored entry of a credentials file.
fn stored(config: &Path) -> Value {
    let v: Value = serde_json::from_slice(&std::fs::read(credentials_file(config)).unwrap()).unwrap();
    let entries = v["credentials"].as_array().expect("credentials list");
    assert_eq!(entries.len(), 1, "one login stored: {v}");
    entries[0].clone()
}

/// A stored token in clear: the file holds `enc:` + base64 of an AES-GCM
/// blob bound to the address, under the 32-byte `key` next to it.
fn plain(config: &Path, field: &str) -> String {
    use base64::Engine as _;
    let entry = stored(config);
    let enc = entry[field].as_str().unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(enc.strip_prefix("enc:").expect("encrypted token"))
        .unwrap();
    let key = std::fs::read(config.join("coffer").join("key")).unwrap();
    let key = coffer::secure_mem::KeyBytes::from_slice(&key).unwrap();
    let clear = coffer::crypto::aead::open(&key, entry["address"].as_str().unwrap().as_bytes(), &blob).unwrap();
    String::from_utf8(clear.to_vec()).unwrap()
}

/// Rewrite the one stored entry (keeps the file and its mode).
fn edit_stored(config: &Path, f: impl FnOnce(&mut Value)) {
    let mut entry = stored(config);
    f(&mut entry);
    let v = serde_json::json!({ "credentials": [entry] });
    std::fs::write(credentials_file(config), serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// A fresh server with `acme/api/production` holding `DB_URL`; returns
/// the server, a root HTTP client and the root token.
async fn setup(dir: &Path) -> (Server, util::Http, String) {
    let server = Server::start(dir, &util::fresh_storage_url(dir).await);
    let anon = server.client(None);
    let (keys, _, root) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let http = anon.with_token(&root);
    util::org_tree(&http, "acme", &[("api", &["production"])]).await;
    util::write_secret(&http, util::ENV, "DB_URL", "postgres://db/app").await;
    (server, http, root)
}

#[tokio::test]
async fn login_whoami_refresh_and_logout_with_a_private_credentials_file() {
    let dir = util::tempdir();
    let (server, _http, root_token) = setup(dir.path()).await;
    let root = As::Token(&root_token);

    // Root creates a user (password on stdin) and makes them a developer.
    let out = ok(&server, &root, &["user", "create", ALICE], &format!("{PASSWORD}\n"));
    assert!(out.contains(ALICE), "{out}");
    ok(
        &server,
        &root,
        &["org", "members", "add", ALICE, "--role", "member"],
        "",
    );
    let members: Value = serde_json::from_str(&ok(&server, &root, &["org", "members", "list", "--json"], "")).unwrap();
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["email"] == ALICE && m["role"] == "member"),
        "{members}"
    );
    let table = ok(&server, &root, &["org", "members", "list"], "");
    assert!(table.starts_with("EMAIL") && table.contains(ALICE), "{table}");
    ok(
        &server,
        &root,
        &[
            "grant",
            "--user",
            ALICE,
            "--project",
            "api",
            "--env",
            "production",
            "--role",
            "developer",
        ],
        "",
    );

    // Nothing stored yet: a clear pointer to `coffer login`.
    let config = dir.path().join("alice-config");
    let alice = As::Login(&config);
    let err = fails(&server, &alice, &["whoami"], "");
    assert!(err.contains("coffer login"), "{err}");

    // A wrong password is refused and stores nothing.
    let err = fails(&server, &alice, &["login", "--email", ALICE], "not the password\n");
    assert!(err.contains("invalid email or password"), "{err}");
    assert!(!credentials_file(&config).exists());

    // Password from stdin; the file is created 0600 in a 0700 directory.
    let out = ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    assert!(out.contains(&format!("as {ALICE}")), "{out}");
    let file = credentials_file(&config);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    let entry = stored(&config);
    assert_eq!(entry["address"], server.base.as_str());
    // Encrypted at rest: no token in the file, a private 32-byte key beside it.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("cfr_"), "no plaintext token stored: {text}");
    assert!(plain(&config, "access_token").starts_with("cfr_"));
    assert!(plain(&config, "refresh_token").starts_with("cfr_"));
    let key_file = config.join("coffer").join("key");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(std::fs::read(&key_file).unwrap().len(), 32);
    // Nothing else was written in the config directory.
    let mut names: Vec<String> = std::fs::read_dir(config.join("coffer"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["credentials.json", "credentials.lock", "key"]);
    // A key file others may read: refused, with the fix.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = fails(&server, &alice, &["whoami"], "");
    assert!(err.contains(&format!("chmod 600 {}", key_file.display())), "{err}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(entry["access_token"].is_string() && entry["refresh_token"].is_string());
    assert!(
        entry["expires_at"].as_i64().unwrap() > util::unix_now() as i64 + 3000,
        "{entry}"
    );

    // Logging in again replaces the stored session and ends the old one.
    let first = plain(&config, "access_token");
    ok(&server, &alice, &["login", "--email", ALICE], &format!("{PASSWORD}\n"));
    assert_ne!(stored(&config)["access_token"], first.as_str());
    util::expect_error(
        "the replaced session",
        server.client(Some(&first)).get("/api/v1/auth/whoami").await,
        401,
        "unauthenticated",
    );

    let me = ok(&server, &alice, &["whoami"], "");
    assert!(me.contains(ALICE) && me.contains("user"), "{me}");
    let me: Value = serde_json::from_str(&ok(&server, &alice, &["whoami", "--json"], "")).unwrap();
    assert_eq!((me["kind"].as_str(), me["name"].as_str()), (Some("user"), Some(ALICE)));
    assert_eq!(
        ok(&server, &alice, &["secrets", "get", "DB_URL"], ""),
        "postgres://db/app\n"
    );

    // COFFER_TOKEN wins over the stored login.
    let with_both = {
        let mut cmd = command(&server, &alice, &["whoami", "--json"]);
        cmd.env("COFFER_TOKEN", &root_token);
        cmd.output().unwrap()
    };
    let me: Value = serde_json::from_slice(&with_both.stdout).unwrap();
    assert_eq!(me["kind"], "root", "{me}");

    // An expired access token is refreshed once, and the new pair stored.
    let before = stored(&config);
    edit_stored(&config, |e| e["expires_at"] = Value::from(0));
    assert!(ok(&server, &alice, &["whoami"], "").contains(ALICE));
    let after = stored(&config);
    assert_ne!(after["access_token"], before["access_token"]);
    assert_ne!(after["refresh_token"], before["refresh_token"]);
    assert!(after["expires_at"].as_i64().unwrap() > util::unix_now() as i64);
    assert_eq!(mode(&file), 0o600, "the rewritten file stays private");

    // Several processes find the token expired at once: one refreshes, the
    // others take its pair (a second use of a spent refresh token would
    // revoke the whole login).
    edit_stored(&config, |e| e["expires_at"] = Value::from(0));
    let racers: Vec<Child> = (0..4)
        .map(|_| {
            command(&server, &alice, &["whoami", "--json"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in racers {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "concurrent refresh: {}", stderr(&out));
    }
    assert!(
        ok(&server, &alice, &["whoami"], "").contains(ALICE),
        "the login survived"
    );

    // A 401 on a token the client thought valid: refresh, store, retry.
    edit_stored(&config, |e| {
        e["access_token"] = Value::from("cfr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    });
    assert!(ok(&server, &alice, &["whoami"], "").contains(ALICE));
    // That plaintext entry (an older coffer's format) was migrated.
    assert!(!std::fs::read_to_string(&file).unwrap().contains("cfr_"));
    assert_ne!(
        plain(&config, "access_token"),
        "cfr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    );

    // Loose permissions: refused, with the fix in the message.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = fails(&server, &alice, &["whoami"], "");
    assert!(
        err.contains(&format!("chmod 600 {}", file.display())),
        "names the fix: {err}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(ok(&server, &alice, &["whoami"], "").contains(ALICE));

    // Tokens acting as the user.
    let token = ok(
        &server,
        &alice,
        &["token", "create", "--name", "laptop", "--ttl", "1h"],
        "",
    );
    let token = token.trim();
    assert!(
        !token.is_empty() && !token.contains(char::is_whitespace),
        "only the token on stdout: {token:?}"
    );
    let me: Value = serde_json::from_str(&ok(&server, &As::Token(token), &["whoami", "--json"], "")).unwrap();
    assert_eq!(me["name"], ALICE, "{me}");
    let list: Value = serde_json::from_str(&ok(&server, &alice, &["token", "list", "--json"], "")).unwrap();
    assert!(list.as_array().unwrap().iter().any(|t| t["name"] == "laptop"), "{list}");
    let err = fails_clap(&server, &alice, &["token", "create", "--ttl", "5x"]);
    assert!(err.contains("\"5x\"") && err.contains("1h"), "{err}");

    // Groups: members, a grant to the group, removal.
    ok(&server, &root, &["group", "create", "ops"], "");
    ok(&server, &root, &["group", "add-member", "ops", ALICE], "");
    let groups: Value = serde_json::from_str(&ok(&server, &root, &["group", "list", "--json"], "")).unwrap();
    assert_eq!(groups, serde_json::json!([{"name": "ops", "members": [ALICE]}]));
    let out = ok(
        &server,
        &root,
        &[
            "grant",
            "--group",
            "ops",
            "--project",
            "*",
            "--env",
            "*",
            "--perms",
            "read,export",
        ],
        "",
    );
    assert!(out.contains("Granted read,export on */* to group:ops"), "{out}");
    ok(&server, &root, &["group", "remove-member", "ops", ALICE], "");
    let groups: Value = serde_json::from_str(&ok(&server, &root, &["group", "list", "--json"], "")).unwrap();
    assert_eq!(groups[0]["members"], serde_json::json!([]), "{groups}");

    // Logout revokes the session on the server and deletes it here.
    let access = plain(&config, "access_token");
    let refresh = plain(&config, "refresh_token");
    let out = ok(&server, &alice, &["logout"], "");
    assert!(out.contains("Logged out"), "{out}");
    assert!(!file.exists(), "no login left in {}", file.display());
    assert!(!key_file.exists(), "logout wipes the key too");
    util::expect_error(
        "the logged-out session",
        server.client(Some(&access)).get("/api/v1/auth/whoami").await,
        401,
        "unauthenticated",
    );
    let (st, body) = server
        .client(None)
        .post("/api/v1/auth/refresh", serde_json::json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(st, 401, "the refresh token died with the session: {body}");
    let err = fails(&server, &alice, &["whoami"], "");
    assert!(err.contains("coffer login"), "{err}");
    assert!(ok(&server, &alice, &["logout"], "").contains("Not logged in"));

    ok(&server, &root, &["org", "members", "remove", ALICE], "");
    let members: Value = serde_json::from_str(&ok(&server, &root, &["org", "members", "list", "--json"], "")).unwrap();
    assert!(!members.to_string().contains(ALICE), "{members}");
}

#[tokio::test]
async fn device_login_is_approved_from_another_session() {
    let dir = util::tempdir();
    let (server, _http, root) = setup(dir.path()).await;
    ok(
        &server,
        &As::Token(&root),
        &["user", "create", ALICE],
        &format!("{PASSWORD}\n"),
    );
    let laptop = dir.path().join("laptop");
    ok(
        &server,
        &As::Login(&laptop),
        &["login", "--email", ALICE],
        &format!("{PASSWORD}\n"),
    );

    // The new machine starts the device flow and shows a code.
    let server_box = dir.path().join("server-box");
    let mut child: Child = command(&server, &As::Login(&server_box), &["login"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("coffer login approve ").nth(1) {
                let code: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                let _ = tx.send(code);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let code = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the device login prints `coffer login approve CODE`");
    assert_eq!(code.len(), 9, "ABCD-EFGH: {code}");
    // Let at least one poll find the login still pending.
    std::thread::sleep(Duration::from_secs(6));
    assert!(child.try_wait().unwrap().is_none(), "still waiting for approval");

    // Approved from the logged-in laptop (lower case is fine).
    let out = ok(
        &server,
        &As::Login(&laptop),
        &["login", "approve", &code.to_lowercase()],
        "",
    );
    assert!(out.contains("Approved"), "{out}");

    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "device login did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    let progress = reader.join().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{progress}\n{out}");
    assert!(out.contains(&format!("as {ALICE}")), "{out}");
    assert_eq!(mode(&credentials_file(&server_box)), 0o600);
    let me: Value = serde_json::from_str(&ok(&server, &As::Login(&server_box), &["whoami", "--json"], "")).unwrap();
    assert_eq!(me["name"], ALICE);

    // A code nobody issued cannot be approved.
    let err = fails(&server, &As::Login(&laptop), &["login", "approve", "ZZZZ-ZZZZ"], "");
    assert!(err.contains("cannot approve"), "{err}");
}

#[tokio::test]
async fn totp_enrollment_then_login_asks_for_the_code() {
    let dir = util::tempdir();
    let (server, _http, root) = setup(dir.path()).await;
    ok(
        &server,
        &As::Token(&root),
        &["user", "create", BOB],
        &format!("{PASSWORD}\n"),
    );
    let config = dir.path().join("bob");
    let bob = As::Login(&config);
    ok(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));

    let out = ok(&server, &bob, &["user", "totp", "enroll"], &format!("{PASSWORD}\n"));
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("Secret"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("secret in {out}"))
        .to_owned();
    assert!(out.contains("otpauth://totp/"), "{out}");
    let raw = util::base32_decode(&secret);
    let step = util::unix_now() / 30;
    let out = coffer(
        &server,
        &bob,
        &["user", "totp", "verify", &util::totp_at(&raw, step - 1)],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let codes: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(codes.len(), 10, "ten recovery codes on stdout: {codes:?}");
    assert!(stderr(&out).contains("will not be shown again"), "{}", stderr(&out));

    ok(&server, &bob, &["logout"], "");
    // No code: the second line of stdin is missing.
    let err = fails(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));
    assert!(err.contains("TOTP"), "{err}");
    // The code on the second line of stdin.
    let out = ok(
        &server,
        &bob,
        &["login", "--email", BOB],
        &format!("{PASSWORD}\n{}\n", util::totp_at(&raw, step)),
    );
    assert!(out.contains(BOB), "{out}");
    ok(&server, &bob, &["logout"], "");
    // --totp with a fresh code, then a recovery code in its place.
    ok(
        &server,
        &bob,
        &["login", "--email", BOB, "--totp", &util::totp_at(&raw, step + 1)],
        &format!("{PASSWORD}\n"),
    );
    ok(&server, &bob, &["logout"], "");
    ok(
        &server,
        &bob,
        &["login", "--email", BOB],
        &format!("{PASSWORD}\n{}\n", codes[0]),
    );
}

#[tokio::test]
async fn service_account_token_lists_but_cannot_reveal_until_revoked() {
    let dir = util::tempdir();
    let (server, _http, root) = setup(dir.path()).await;
    let root = As::Token(&root);

    ok(
        &server,
        &root,
        &["service-account", "create", "ci", "--cidr", "127.0.0.0/8"],
        "",
    );
    let list: Value = serde_json::from_str(&ok(&server, &root, &["service-account", "list", "--json"], "")).unwrap();
    assert_eq!(list[0]["name"], "ci", "{list}");
    assert!(ok(&server, &root, &["service-account", "list"], "").contains("127.0.0.0/8"));

    // Bad permission names and durations are refused before any request.
    let err = fails_clap(
        &server,
        &root,
        &[
            "grant",
            "--service-account",
            "ci",
            "--project",
            "api",
            "--env",
            "production",
            "--perms",
            "read,write",
        ],
    );
    assert!(err.contains("\"write\"") && err.contains("reveal"), "{err}");

    let out = ok(
        &server,
        &root,
        &[
            "grant",
            "--service-account",
            "ci",
            "--project",
            "api",
            "--env",
            "production",
            "--role",
            "viewer",
        ],
        "",
    );
    assert!(out.contains("Granted read on api/production"), "{out}");
    let grants: Value = serde_json::from_str(&ok(&server, &root, &["grant", "list", "--json"], "")).unwrap();
    assert_eq!(grants.as_array().unwrap().len(), 1, "{grants}");
    assert_eq!(grants[0]["subject"]["service_account"], "ci", "{grants}");
    let grant_id = grants[0]["id"].as_str().unwrap().to_owned();
    let table = ok(&server, &root, &["grant", "list"], "");
    assert!(
        table.contains(&grant_id) && table.contains("service_account:ci"),
        "{table}"
    );

    // Only the token on stdout, so $(coffer service-account token ci) works.
    let out = coffer(&server, &root, &["service-account", "token", "ci", "--ttl", "1h"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    assert_eq!(token.lines().count(), 1, "{token:?}");
    let token = token.trim().to_owned();
    let accessor = stderr(&out)
        .split("accessor ")
        .nth(1)
        .and_then(|s| s.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("accessor in {}", stderr(&out)))
        .to_owned();

    let sa = As::Token(&token);
    assert!(ok(&server, &sa, &["secrets", "list"], "").contains("DB_URL"));
    let err = fails(&server, &sa, &["secrets", "get", "DB_URL"], "");
    assert!(err.contains("403"), "read but not reveal: {err}");
    let me: Value = serde_json::from_str(&ok(&server, &sa, &["whoami", "--json"], "")).unwrap();
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str()),
        (Some("service_account"), Some("ci"))
    );

    // Revoking the token ends it (the server's token cache lives 1 s).
    ok(&server, &root, &["token", "revoke", &accessor], "");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = coffer(&server, &sa, &["secrets", "list"], "");
        if !out.status.success() {
            assert!(stderr(&out).contains("401"), "{}", stderr(&out));
            break;
        }
        assert!(Instant::now() < deadline, "the revoked token still works");
        std::thread::sleep(Duration::from_millis(250));
    }

    ok(&server, &root, &["revoke", &grant_id], "");
    let grants: Value = serde_json::from_str(&ok(&server, &root, &["grant", "list", "--json"], "")).unwrap();
    assert_eq!(grants, serde_json::json!([]));
    let err = fails(&server, &root, &["revoke", &grant_id], "");
    assert!(err.contains("404"), "{err}");

    ok(&server, &root, &["service-account", "delete", "ci"], "");
    let list: Value = serde_json::from_str(&ok(&server, &root, &["service-account", "list", "--json"], "")).unwrap();
    assert_eq!(list, serde_json::json!([]));
}

/// Run and require a usage error (exit 2, from argument parsing); returns stderr.
#[track_caller]
fn fails_clap(server: &Server, who: &As<'_>, args: &[&str]) -> String {
    let out = coffer(server, who, args, "");
    assert_eq!(out.status.code(), Some(2), "coffer {args:?}: {}", stderr(&out));
    stderr(&out)
}

/// `openssl ARGS` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
}

/// A CA, a server certificate for 127.0.0.1 and client certificates
/// `robot.pem`/`robot.key` and `other.pem`/`other.key`, all P-256.
fn make_pki(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=cli-test-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for (name, ext) in [
        ("server", "server.ext"),
        ("robot", "client.ext"),
        ("other", "client.ext"),
    ] {
        let (key, csr, pem, subj) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("/CN={name}"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &pem,
            ],
        );
    }
}

#[tokio::test]
async fn certificate_identity_and_bound_tokens_over_mutual_tls() {
    let dir = util::tempdir();
    let d = dir.path();
    make_pki(d);
    let listener = format!(
        "tls_cert = \"{0}/server.pem\"\ntls_key = \"{0}/server.key\"\ntls_client_ca = \"{0}/ca.pem\"",
        d.display()
    );
    let server = Server::start_with(d, &util::fresh_storage_url(d).await, &listener);
    // Every run trusts the test CA and presents a client certificate.
    let run = |cert: &str, token: Option<&str>, args: &[&str], stdin: &str| -> Output {
        let nobody = d.join("no-login");
        let mut cmd = command(&server, &As::Login(&nobody), args);
        cmd.env("COFFER_CACERT", d.join("ca.pem"))
            .env("COFFER_CLIENT_CERT", d.join(format!("{cert}.pem")))
            .env("COFFER_CLIENT_KEY", d.join(format!("{cert}.key")));
        if let Some(t) = token {
            cmd.env("COFFER_TOKEN", t);
        }
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let must = |out: Output| -> String {
        assert!(out.status.success(), "{}\n{}", stderr(&out), stdout(&out));
        stdout(&out)
    };

    let init: Value = serde_json::from_str(&must(run(
        "robot",
        None,
        &["operator", "init", "--shares", "1", "--threshold", "1", "--json"],
        "",
    )))
    .unwrap();
    let root = init["root_token"].as_str().unwrap().to_owned();
    must(run(
        "robot",
        None,
        &["operator", "unseal"],
        &format!("{}\n", init["keys"][0].as_str().unwrap()),
    ));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut pem = std::fs::read(d.join("robot.pem")).unwrap();
    pem.extend(std::fs::read(d.join("robot.key")).unwrap());
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.pem")).unwrap()).unwrap()])
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let http = util::Http::from_client(&server.base, http, Some(&root));
    util::org_tree(&http, "acme", &[("api", &["production"])]).await;
    util::write_secret(&http, util::ENV, "DB_URL", "postgres://db/app").await;

    // A service account identified by its certificate (key hash, and the CN
    // must match too), no token at all.
    let r = Some(root.as_str());
    let out = run(
        "robot",
        r,
        &["service-account", "create", "cn-only", "--cert-subject-cn", "robot"],
        "",
    );
    assert!(
        !out.status.success() && stderr(&out).contains("--cert-spki-sha256"),
        "a CN alone identifies nothing: {}",
        stderr(&out)
    );
    let spki = crate::access_mtls::spki_sha256(d, "robot");
    must(run(
        "robot",
        r,
        &[
            "service-account",
            "create",
            "robot",
            "--cert-spki-sha256",
            &spki,
            "--cert-subject-cn",
            "robot",
        ],
        "",
    ));
    must(run(
        "robot",
        r,
        &[
            "grant",
            "--service-account",
            "robot",
            "--project",
            "api",
            "--env",
            "production",
            "--role",
            "viewer",
        ],
        "",
    ));
    let me: Value = serde_json::from_str(&must(run("robot", None, &["whoami", "--json"], ""))).unwrap();
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str()),
        (Some("service_account"), Some("robot")),
        "{me}"
    );
    assert!(must(run("robot", None, &["secrets", "list"], "")).contains("DB_URL"));
    // Another certificate of the same CA is nobody.
    let out = run("other", None, &["secrets", "list"], "");
    assert!(
        !out.status.success() && stderr(&out).contains("401"),
        "{}",
        stderr(&out)
    );

    // A token bound to the certificate it was created over.
    let out = run(
        "robot",
        None,
        &["token", "create", "--name", "bound", "--bind-certificate"],
        "",
    );
    let bound = must(out).trim().to_owned();
    let me: Value = serde_json::from_str(&must(run("robot", Some(&bound), &["whoami", "--json"], ""))).unwrap();
    assert_eq!(me["certificate_bound"], true, "{me}");
    let out = run("other", Some(&bound), &["whoami"], "");
    assert!(
        !out.status.success() && stderr(&out).contains("401"),
        "refused with another certificate: {}",
        stderr(&out)
    );
}

#[tokio::test]
async fn user_commands_change_the_password_end_sessions_and_disable() {
    let dir = util::tempdir();
    let (server, _http, root) = setup(dir.path()).await;
    let root = As::Token(&root);
    ok(&server, &root, &["user", "create", BOB], &format!("{PASSWORD}\n"));
    let config = dir.path().join("bob");
    let bob = As::Login(&config);
    let laptop_dir = dir.path().join("bob-laptop");
    let laptop = As::Login(&laptop_dir);
    ok(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));
    ok(&server, &laptop, &["login", "--email", BOB], &format!("{PASSWORD}\n"));

    // passwd: old, then new; the laptop's session ends, this one stays.
    let new_password = "another horse battery staple";
    util::remember_secret(new_password);
    let err = fails(
        &server,
        &bob,
        &["user", "passwd"],
        &format!("wrong old password\n{new_password}\n"),
    );
    assert!(err.contains("invalid email or password"), "{err}");
    let out = ok(
        &server,
        &bob,
        &["user", "passwd"],
        &format!("{PASSWORD}\n{new_password}\n"),
    );
    assert!(out.contains("Password changed"), "{out}");
    ok(&server, &bob, &["whoami"], "");
    fails(&server, &laptop, &["whoami"], "");

    // revoke-sessions of oneself ends this session too.
    let out = ok(&server, &bob, &["user", "revoke-sessions"], "");
    assert!(out.contains(&format!("Ended every session of {BOB}")), "{out}");
    fails(&server, &bob, &["whoami"], "");

    // disable / enable / totp-reset / delete, by root.
    ok(&server, &bob, &["login", "--email", BOB], &format!("{new_password}\n"));
    ok(&server, &root, &["user", "disable", BOB], "");
    fails(&server, &bob, &["whoami"], "");
    let err = fails(&server, &bob, &["login", "--email", BOB], &format!("{new_password}\n"));
    assert!(err.contains("disabled"), "{err}");
    ok(&server, &root, &["user", "enable", BOB], "");
    ok(&server, &bob, &["login", "--email", BOB], &format!("{new_password}\n"));
    let out = ok(&server, &root, &["user", "totp-reset", BOB], "");
    assert!(out.contains("TOTP of"), "{out}");
    ok(&server, &root, &["user", "delete", BOB], "");
    fails(&server, &bob, &["whoami"], "");
    fails(&server, &bob, &["login", "--email", BOB], &format!("{new_password}\n"));
}

#[tokio::test]
async fn login_approve_asks_for_the_password_when_the_login_is_old() {
    let dir = util::tempdir();
    let url = util::fresh_storage_url(dir.path()).await;
    let server = Server::start(dir.path(), &url);
    let anon = server.client(None);
    let (root, _) = util::boot(&anon).await;
    util::create_user(&root, BOB, PASSWORD).await;
    let config = dir.path().join("bob");
    let bob = As::Login(&config);
    ok(&server, &bob, &["login", "--email", BOB], &format!("{PASSWORD}\n"));
    crate::sessions::age_logins(&url, 10).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let code = util::ok_data(
        "device code",
        anon.post("/api/v1/auth/device/code", serde_json::json!({})).await,
    );
    let user_code = code["user_code"].as_str().unwrap_or_else(|| panic!("{code}"));
    let err = fails(&server, &bob, &["login", "approve", user_code], "");
    assert!(err.contains("no password given"), "{err}");
    let out = ok(
        &server,
        &bob,
        &["login", "approve", user_code],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.contains(&format!("Approved {user_code}")), "{out}");
}
