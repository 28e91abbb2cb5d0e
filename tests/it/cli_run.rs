//! `coffer run` (and the developer commands around it) with the real binary
//! against a real server: injection, exit statuses, signal forwarding, the
//! program-loading refusal on both sides, and no trace on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{self, ENV, Server};

/// A booted server with acme/api/production and the root token.
struct Fixture {
    server: Server,
    root: String,
    /// Temp HOME of the CLI (no config, no credentials).
    home: tempfile::TempDir,
    /// Working directory of the CLI.
    cwd: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(secrets: &[(&str, &str)]) -> Fixture {
        let dir = util::tempdir();
        let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
        let anon = server.client(None);
        let (keys, _, root) = util::init(&anon, 3, 2).await;
        util::unseal(&anon, &[&keys[0], &keys[1]]).await;
        let http = server.client(Some(&root));
        util::tenant(&http).await;
        for (k, v) in secrets {
            util::write_secret(&http, ENV, k, v).await;
        }
        Fixture {
            server,
            root,
            home: util::tempdir(),
            cwd: util::tempdir(),
            _dir: dir,
        }
    }

    /// `coffer ARGS` with the root token, a temp HOME and working dir, and
    /// the acme/api/production environment from the environment variables.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.args(args)
            .current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env_remove("XDG_CONFIG_HOME")
            .env("COFFER_ADDR", &self.server.base)
            .env("COFFER_TOKEN", &self.root)
            .env("COFFER_ORG", "acme")
            .env("COFFER_PROJECT", "api")
            .env("COFFER_ENV", "production")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run coffer")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `NAME=value` lines of `env` output, as pairs.
fn env_lines(o: &Output) -> Vec<(String, String)> {
    stdout(o)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get<'a>(vars: &'a [(String, String)], name: &str) -> Option<&'a str> {
    vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Every path under `root`, sorted (files and directories).
fn listing(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

const SECRETS: &[(&str, &str)] = &[
    ("DB_URL", "postgres://u:p@db/app?sslmode=require&x=a=b"),
    ("GREETING", "héllo wörld ✓"),
    ("API_KEY", "k-123"),
    ("LD_PRELOAD", "/nonexistent/evil.so"),
    ("PATH", "/nonexistent/evil-bin"),
];

#[tokio::test]
async fn cli_run_injects_secrets_without_loader_variables_and_leaves_no_trace() {
    let f = Fixture::new(SECRETS).await;

    // Server side: inject itself never returns the program-loading names,
    // and logs their names (not the values).
    let (st, body) = f
        .server
        .client(Some(&f.root))
        .post(&format!("{ENV}/inject"), serde_json::json!({}))
        .await;
    assert_eq!(st, 200, "{body}");
    let data = &body["data"];
    assert_eq!(data["DB_URL"], SECRETS[0].1);
    assert!(data.get("LD_PRELOAD").is_none() && data.get("PATH").is_none(), "{data}");
    let log = f.server.log_text();
    assert!(log.contains("LD_PRELOAD") && log.contains("PATH"), "{log}");
    assert!(!log.contains("/nonexistent/evil"), "values never reach the log");

    let home_before = listing(f.home.path());
    let cwd_before = listing(f.cwd.path());

    let out = f.run(&["run", "--", "env"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let vars = env_lines(&out);
    assert_eq!(get(&vars, "DB_URL"), Some(SECRETS[0].1));
    assert_eq!(get(&vars, "GREETING"), Some(SECRETS[1].1));
    assert_eq!(get(&vars, "API_KEY"), Some("k-123"));
    assert_eq!(get(&vars, "LD_PRELOAD"), None);
    assert_ne!(get(&vars, "PATH"), Some(SECRETS[4].1));
    assert!(!stdout(&out).contains("/nonexistent/evil"));
    assert!(!stderr(&out).contains("k-123"), "values are never printed by coffer");

    // The client refuses too (a name asked for explicitly), with a warning.
    let out = f.run(&["run", "--only", "API_KEY,LD_PRELOAD,PATH", "--", "env"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not injecting LD_PRELOAD") && err.contains("not injecting PATH"),
        "{err}"
    );
    let vars = env_lines(&out);
    assert_eq!(get(&vars, "API_KEY"), Some("k-123"));
    assert_eq!(get(&vars, "DB_URL"), None, "--only keeps only the named keys");
    assert_eq!(get(&vars, "LD_PRELOAD"), None);
    // A prefix that would make a loader variable is refused as well.
    let out = f.run(&["run", "--only", "API_KEY", "--prefix", "LD_", "--", "env"]);
    assert!(stderr(&out).contains("not injecting LD_API_KEY"), "{}", stderr(&out));
    assert_eq!(get(&env_lines(&out), "LD_API_KEY"), None);

    let out = f.run(&["run", "--only", "NOPE", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("NOPE"), "{}", stderr(&out));

    let out = f.run(&["run", "--prefix", "APP_", "--", "env"]);
    let vars = env_lines(&out);
    assert_eq!(get(&vars, "APP_DB_URL"), Some(SECRETS[0].1));
    assert_eq!(get(&vars, "DB_URL"), None);

    let out = f
        .cmd(&["run", "--no-override", "--", "env"])
        .env("GREETING", "keep")
        .output()
        .unwrap();
    let vars = env_lines(&out);
    assert_eq!(get(&vars, "GREETING"), Some("keep"));
    assert_eq!(get(&vars, "API_KEY"), Some("k-123"));
    let out = f.cmd(&["run", "--", "env"]).env("GREETING", "keep").output().unwrap();
    assert_eq!(
        get(&env_lines(&out), "GREETING"),
        Some(SECRETS[1].1),
        "secrets override by default"
    );

    // No shell in between: the argument reaches the program verbatim.
    let out = f.run(&["run", "--", "printf", "%s", "$DB_URL;`x`"]);
    assert_eq!(stdout(&out), "$DB_URL;`x`");

    assert_eq!(listing(f.home.path()), home_before, "nothing written under $HOME");
    assert_eq!(
        listing(f.cwd.path()),
        cwd_before,
        "nothing written in the working directory"
    );
}

#[tokio::test]
async fn cli_run_exit_statuses_and_signal_forwarding() {
    let f = Fixture::new(&[("API_KEY", "k-123")]).await;

    let out = f.run(&["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let out = f.run(&["run", "--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "killed by SIGTERM → 128+15");
    assert_eq!(stderr(&out), "", "nothing extra is printed");
    let out = f.run(&["run", "--", "/nonexistent/program"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));

    // --shell: $SHELL, interactive, with the secrets; its status is ours.
    let mut child = f
        .cmd(&["run", "--shell"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"echo \"key=$API_KEY\"; exit 3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("key=k-123"), "{}", stdout(&out));

    // SIGTERM to coffer reaches the child, which traps it and exits 0.
    let marks = util::tempdir();
    let ready = marks.path().join("ready");
    let got = marks.path().join("got");
    let script = format!(
        "trap 'echo \"$API_KEY\" > {got}; exit 0' TERM; : > {ready}; while :; do sleep 0.05; done",
        got = got.display(),
        ready = ready.display()
    );
    let child = f.cmd(&["run", "--", "sh", "-c", &script]).spawn().unwrap();
    let start = Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "the child never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&got).unwrap(), "k-123\n");
}

#[tokio::test]
async fn cli_run_context_precedence_offline_and_private() {
    let f = Fixture::new(&[("API_KEY", "k-prod")]).await;
    let bare = |args: &[&str]| {
        let mut c = f.cmd(args);
        c.env_remove("COFFER_ORG")
            .env_remove("COFFER_PROJECT")
            .env_remove("COFFER_ENV")
            .env_remove("COFFER_ADDR");
        c
    };

    // Offline: no server address given or reachable, context set/show work.
    let out = bare(&["context", "show"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("env ") && l.contains(" dev ") && l.ends_with("(default)")),
        "{}",
        stdout(&out)
    );
    let out = bare(&[
        "context",
        "set",
        "--name",
        "prod",
        "--org",
        "acme",
        "--project",
        "api",
        "--env",
        "production",
        "--address",
        &f.server.base,
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bare(&[
        "context",
        "set",
        "--name",
        "other",
        "--org",
        "x",
        "--project",
        "y",
        "--env",
        "z",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let cfg_dir = f.home.path().join(".config/coffer");
    let cfg = cfg_dir.join("config.toml");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!((mode(&cfg_dir), mode(&cfg)), (0o700, 0o600));
    let out = bare(&["context", "use", "prod"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bare(&["context", "use", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = bare(&["context", "list"]).output().unwrap();
    assert!(
        stdout(&out).contains("* prod") && stdout(&out).contains("  other"),
        "{}",
        stdout(&out)
    );

    // The current context alone (address included) reaches the server.
    let out = bare(&["run", "--", "sh", "-c", "printf %s \"$API_KEY\""])
        .output()
        .unwrap();
    assert_eq!(stdout(&out), "k-prod", "{}", stderr(&out));

    // .coffer.toml beats the context; the environment variable beats the file;
    // the flag beats the environment variable.
    let sub = f.cwd.path().join("src/deep");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(f.cwd.path().join(".coffer.toml"), "env = \"staging\"\n").unwrap();
    let out = bare(&["context", "show"]).current_dir(&sub).output().unwrap();
    let show = stdout(&out);
    assert!(show.contains("staging") && show.contains(".coffer.toml"), "{show}");
    assert!(show.contains("acme") && show.contains("context prod"), "{show}");
    let out = bare(&["run", "--", "true"]).current_dir(&sub).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "acme/api/staging does not exist");
    assert!(stderr(&out).contains("staging"), "{}", stderr(&out));
    let out = bare(&["run", "--", "true"])
        .current_dir(&sub)
        .env("COFFER_ENV", "production")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = bare(&["run", "--env", "nowhere", "--", "true"])
        .current_dir(&sub)
        .env("COFFER_ENV", "production")
        .output()
        .unwrap();
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
    // A .coffer.toml holds no secret: anything but org/project/env is refused.
    std::fs::write(f.cwd.path().join(".coffer.toml"), "token = \"cfr_x\"\n").unwrap();
    let out = bare(&["context", "show"]).current_dir(&sub).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_file(f.cwd.path().join(".coffer.toml")).unwrap();

    // Loose permissions are refused with the fix.
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = bare(&["context", "show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
}

/// A .env in the common dialect: comments, `export`, quotes, escapes,
/// `=` in values, multi-line values, unicode.
const DOTENV: &str = "# app settings\n\
export DB_URL=postgres://u:p@db/app?sslmode=require&x=a=b\n\
SINGLE='lit $HOME \\n \"q\"'   # comment\n\
DOUBLE=\"tab\\there \\\"quoted\\\" back\\\\slash\"\n\
MULTI=\"-----BEGIN KEY-----\n\
abc=\n\
-----END KEY-----\"\n\
\n\
UNICODE=héllo wörld ✓ ключ 鍵\n\
EMPTY=\n";

#[tokio::test]
async fn cli_run_push_pull_diff_round_trip() {
    let f = Fixture::new(&[("OLD", "stays")]).await;
    let http = f.server.client(Some(&f.root));
    let file = f.cwd.path().join("app.env");
    std::fs::write(&file, DOTENV).unwrap();

    let out = f.run(&["push", "app.env", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains("+ DB_URL") && plan.contains("6 created, 0 updated, 0 unchanged, 0 errors"),
        "{plan}"
    );
    assert_eq!(
        util::ok_data("list", http.get(&format!("{ENV}/secrets")).await)
            .as_array()
            .unwrap()
            .len(),
        1,
        "--dry-run writes nothing"
    );
    let out = f.run(&["push", "app.env"]);
    assert_eq!(out.status.code(), Some(1), "not a terminal and no --yes");
    let out = f.run(&["push", "app.env", "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Exactly the intended bytes on the server.
    let reveal = |key: &str| {
        let http = &http;
        let key = key.to_owned();
        async move {
            util::ok_data("reveal", http.get(&format!("{ENV}/secrets/{key}?reveal=true")).await)["value"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(reveal("DB_URL").await, "postgres://u:p@db/app?sslmode=require&x=a=b");
    assert_eq!(reveal("SINGLE").await, "lit $HOME \\n \"q\"");
    assert_eq!(reveal("DOUBLE").await, "tab\there \"quoted\" back\\slash");
    assert_eq!(reveal("MULTI").await, "-----BEGIN KEY-----\nabc=\n-----END KEY-----");
    assert_eq!(reveal("UNICODE").await, "héllo wörld ✓ ключ 鍵");
    assert_eq!(reveal("EMPTY").await, "");

    // Pull, push back: all unchanged; pull again: byte-for-byte the same.
    let out = f.run(&["pull", "--format", "env", "-o", "pulled.env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("plaintext"), "{}", stderr(&out));
    let pulled = f.cwd.path().join("pulled.env");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&pulled).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let first = std::fs::read(&pulled).unwrap();
    let out = f.run(&["push", "pulled.env", "--yes"]);
    assert!(
        stdout(&out).contains("0 created, 0 updated, 7 unchanged, 0 errors"),
        "{}",
        stdout(&out)
    );
    let out = f.run(&["pull"]);
    assert_eq!(out.stdout, first, "pull to stdout = pull to a file, byte for byte");
    let out = f.run(&["pull", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["MULTI"], "-----BEGIN KEY-----\nabc=\n-----END KEY-----");
    // The other formats come back through push (and diff) unchanged too.
    for format in ["json", "yaml"] {
        let name = format!("pulled.{format}");
        let out = f.run(&["pull", "--format", format, "-o", &name]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = f.run(&["push", &name, "--format", format, "--yes"]);
        assert!(
            stdout(&out).contains("0 created, 0 updated, 7 unchanged, 0 errors"),
            "{format}: {}",
            stdout(&out)
        );
        let out = f.run(&["diff", &name, "--format", format]);
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stdout(&out));
    }
    let out = f.run(&["pull", "--format", "yaml"]);
    assert!(
        stdout(&out).contains("\"UNICODE\": \"héllo wörld ✓ ключ 鍵\""),
        "{}",
        stdout(&out)
    );

    // diff: keys only, never values.
    let out = f.run(&["diff", "app.env"]);
    assert_eq!(out.status.code(), Some(1));
    let d = stdout(&out);
    assert!(d.contains("- OLD"), "{d}");
    std::fs::write(&file, DOTENV.replace("✓", "✗") + "NEWKEY=topsecret-new\n").unwrap();
    let out = f.run(&["diff", "app.env"]);
    let d = stdout(&out);
    assert!(
        d.contains("~ UNICODE") && d.contains("+ NEWKEY") && d.contains("- OLD"),
        "{d}"
    );
    for v in ["topsecret-new", "héllo", "stays", "postgres://"] {
        assert!(!d.contains(v) && !stderr(&out).contains(v), "diff printed a value: {d}");
    }

    // A malformed file: the line number, and nothing changes on the server.
    let before = f.run(&["pull"]).stdout;
    std::fs::write(&file, "A=1\nB=\"unterminated\nC=3\n").unwrap();
    std::fs::write(
        f.cwd.path().join("bad.env"),
        "NEW1=1\nNEW2=2\nthis is not a pair\nNEW3=3\n",
    )
    .unwrap();
    let out = f.run(&["push", "bad.env", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("line 3"), "{}", stderr(&out));
    let out = f.run(&["push", "app.env", "--yes"]);
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    std::fs::write(f.cwd.path().join("bad.env"), "NEW1=1\nLD_PRELOAD=/x.so\n").unwrap();
    let out = f.run(&["push", "bad.env", "--yes"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("! LD_PRELOAD"), "{}", stdout(&out));
    assert_eq!(f.run(&["pull"]).stdout, before, "the server is unchanged");
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn fallback_snapshot_only_when_the_server_is_unreachable() {
    let mut f = Fixture::new(&[("DB_URL", "postgres://fallback-value"), ("API_KEY", "k-fallback-42")]).await;
    let has = |o: &Output, k: &str, v: &str| env_lines(o).iter().any(|(a, b)| a == k && b == v);

    // Without --fallback nothing is written.
    assert!(f.run(&["run", "--", "true"]).status.success());
    assert!(files_under(f.home.path()).is_empty());

    // Online with --fallback: fresh values, an encrypted snapshot, no warning.
    let out = f.run(&["run", "--fallback", "--", "env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has(&out, "DB_URL", "postgres://fallback-value"));
    assert!(!stderr(&out).contains("snapshot"), "{}", stderr(&out));
    let snaps: Vec<PathBuf> = files_under(&f.home.path().join(".config/coffer/snapshots"));
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let raw = std::fs::read(&snaps[0]).unwrap();
    for v in ["fallback-value", "k-fallback-42", "DB_URL"] {
        assert!(
            !raw.windows(v.len()).any(|w| w == v.as_bytes()),
            "snapshot holds {v} in clear"
        );
    }
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&snaps[0]), 0o600);
    assert!(files_under(f.cwd.path()).is_empty(), "nothing in the working directory");

    // A refusal is never bypassed: a bad token with the server up fails.
    let out = f
        .cmd(&["run", "--fallback", "--", "env"])
        .env("COFFER_TOKEN", "cfr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!has(&out, "DB_URL", "postgres://fallback-value"));

    // Server stopped: the snapshot, with a warning giving its age.
    f.server.kill9();
    let out = f.run(&["run", "--fallback", "--", "env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(has(&out, "DB_URL", "postgres://fallback-value"));
    assert!(has(&out, "API_KEY", "k-fallback-42"));
    let err = stderr(&out);
    assert!(err.contains("offline snapshot") && err.contains("ago"), "{err}");

    // Without --fallback: the connection error, no values.
    let out = f.run(&["run", "--", "env"]);
    assert!(!out.status.success());
    assert!(!has(&out, "DB_URL", "postgres://fallback-value"));

    // Too old for --max-age: refused.
    std::thread::sleep(Duration::from_millis(2100));
    let out = f.run(&["run", "--fallback", "--max-age", "1s", "--", "env"]);
    assert!(!out.status.success());
    assert!(!has(&out, "DB_URL", "postgres://fallback-value"));
    assert!(stderr(&out).contains("--max-age"), "{}", stderr(&out));
}

/// A value holding a NUL byte cannot be an environment variable: `coffer
/// run` skips it with a warning naming it, and the program still starts
/// with the other secrets (it used to exit 126 for the whole environment).
#[tokio::test]
async fn cli_run_skips_a_value_with_a_nul_byte() {
    let f = Fixture::new(&[("GOOD", "fine-value"), ("BAD_NUL", "before\u{0}after")]).await;
    let out = f.run(&["run", "--", "env"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let vars = env_lines(&out);
    assert_eq!(get(&vars, "GOOD"), Some("fine-value"));
    assert_eq!(get(&vars, "BAD_NUL"), None);
    let err = stderr(&out);
    assert!(
        err.contains("not injecting BAD_NUL") && err.contains("NUL byte"),
        "{err}"
    );
    assert!(
        !err.contains("before") && !err.contains("after"),
        "the value is never printed: {err}"
    );
    let out = f.run(&["run", "--only", "BAD_NUL,GOOD", "--", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Names of issue 13 item 15 (and members of the families): a secret with
/// any of them must never reach a program started by `coffer run`.
const ISSUE_NAMES: &[&str] = &[
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_KEY_0",
    "GIT_CONFIG_VALUE_0",
    "GIT_CONFIG_PARAMETERS",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_ASKPASS",
    "GIT_EXEC_PATH",
    "SSH_ASKPASS",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "PS0",
    "PS1",
    "PS2",
    "PS3",
    "LUA_INIT",
    "LUA_INIT_5_4",
    "ERL_AFLAGS",
    "ERL_ZFLAGS",
    "PYTHONWARNINGS",
    "PYTHONBREAKPOINT",
    "CLASSPATH",
    "DOTNET_STARTUP_HOOKS",
    "CORECLR_PROFILER_PATH",
    "CORECLR_ENABLE_PROFILING",
    "COMPlus_EnableDiagnostics",
    "complus_gcServer",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
    "PERLLIB",
    "NODE_PATH",
    "GEM_HOME",
    "GEM_PATH",
    "MALLOC_CHECK_",
    "MALLOC_PERTURB_",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "GLIBC_TUNABLES",
];

/// Every listed name is refused by the server's inject and by the CLI; an
/// environment admin may allow one name (audited), which inject then
/// returns and names in `allowed_variables`, and the CLI sets; anyone with
/// less (create, update, export…) may not.
#[tokio::test]
async fn cli_run_refuses_program_loading_names_unless_an_admin_allows_one() {
    let mut secrets: Vec<(String, String)> = vec![("GOOD".into(), "fine-value".into())];
    secrets.extend(ISSUE_NAMES.iter().map(|n| ((*n).to_owned(), format!("evil-{n}"))));
    let pairs: Vec<(&str, &str)> = secrets.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let f = Fixture::new(&pairs).await;
    let root = f.server.client(Some(&f.root));

    // Server: inject drops every one of them.
    let (st, body) = root.post(&format!("{ENV}/inject"), serde_json::json!({})).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["data"]["GOOD"], "fine-value");
    for n in ISSUE_NAMES {
        assert!(body["data"].get(*n).is_none(), "inject returned {n}: {body}");
    }
    assert_eq!(body["allowed_variables"], serde_json::json!([]), "{body}");

    // CLI: asked for each by name, each is refused with a warning.
    let only = format!("GOOD,{}", ISSUE_NAMES.join(","));
    let out = f.run(&["run", "--only", &only, "--", "env"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    for n in ISSUE_NAMES {
        assert!(err.contains(&format!("not injecting {n}:")), "{n}: {err}");
    }
    assert!(!stdout(&out).contains("evil-"), "{}", stdout(&out));
    assert_eq!(get(&env_lines(&out), "GOOD"), Some("fine-value"));

    // Allowing needs every permission on the environment: a developer with
    // export (create, update, reveal…) is refused, and nothing changes.
    util::create_user(&root, "dev@acme.test", "correct horse battery").await;
    util::add_member(&root, "acme", "dev@acme.test", "member").await;
    util::grant(
        &root,
        "acme",
        serde_json::json!({"user": "dev@acme.test", "project": "api", "environment": "production",
               "permissions": ["read", "reveal", "create", "update", "export"]}),
    )
    .await;
    let anon = f.server.client(None);
    let dev = util::user_client(&anon, "dev@acme.test", "correct horse battery").await;
    let allow = format!("{ENV}/allowed-variables/EDITOR");
    util::expect_error(
        "developer allows",
        dev.put(&allow, serde_json::json!({})).await,
        403,
        "permission_denied",
    );
    let (st, list) = dev.get(&format!("{ENV}/allowed-variables")).await;
    assert_eq!((st.as_u16(), &list["data"]), (200, &serde_json::json!([])), "{list}");
    // A service account with the admin role on the environment may.
    util::service_account(&root, "acme", "envadmin", serde_json::json!({})).await;
    util::grant(
        &root,
        "acme",
        serde_json::json!({"service_account": "envadmin", "project": "api", "environment": "production", "role": "admin"}),
    )
    .await;
    let t = util::sa_token(&root, "acme", "envadmin", serde_json::json!({})).await;
    let admin = f.server.client(t["token"].as_str());
    util::expect_error(
        "a name coffer run does not refuse",
        admin
            .put(&format!("{ENV}/allowed-variables/GOOD"), serde_json::json!({}))
            .await,
        400,
        "invalid",
    );
    let v = util::ok_data("admin allows EDITOR", admin.put(&allow, serde_json::json!({})).await);
    assert_eq!(
        (v["name"].as_str(), v["allowed_by"].as_str()),
        (Some("EDITOR"), Some("envadmin")),
        "{v}"
    );

    let (_, body) = root.post(&format!("{ENV}/inject"), serde_json::json!({})).await;
    assert_eq!(body["data"]["EDITOR"], "evil-EDITOR", "{body}");
    assert!(body["data"].get("VISUAL").is_none(), "{body}");
    assert_eq!(body["allowed_variables"], serde_json::json!(["EDITOR"]), "{body}");
    let out = f.run(&["run", "--", "env"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let vars = env_lines(&out);
    assert_eq!(get(&vars, "EDITOR"), Some("evil-EDITOR"));
    assert_eq!(get(&vars, "VISUAL"), None);
    // The CLI command lists it, and withdraws it.
    let out = f.run(&["secrets", "allow-var"]);
    assert!(stdout(&out).contains("EDITOR"), "{}{}", stdout(&out), stderr(&out));
    let out = f.run(&["secrets", "allow-var", "--remove", "EDITOR"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = f.run(&["run", "--", "env"]);
    assert_eq!(get(&env_lines(&out), "EDITOR"), None, "withdrawn");
    let out = f.run(&["secrets", "allow-var", "PAGER"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = f.run(&["run", "--", "env"]);
    assert_eq!(get(&env_lines(&out), "PAGER"), Some("evil-PAGER"), "{}", stderr(&out));

    // Audited: who allowed, denied attempts too.
    let (st, recs) = root.get("/api/v1/audit/records?action=env.&limit=1000").await;
    assert_eq!(st, 200, "{recs}");
    let rows: Vec<(String, String, String)> = recs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap_or("").to_owned(),
                r["actor"].as_str().unwrap_or("").to_owned(),
                r["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    for want in [
        ("env.variable_allow", "dev@acme.test", "denied"),
        ("env.variable_allow", "envadmin", "allowed"),
        ("env.variable_disallow", "root", "allowed"),
        ("env.variable_allow", "root", "allowed"),
    ] {
        assert!(
            rows.iter()
                .any(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()) == want),
            "{want:?} in {rows:?}"
        );
    }
}
