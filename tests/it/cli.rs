//! The CLI binary against a real server: operator ceremony and the daily
//! secrets commands, values through stdin (never argv).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::util::{self, Server};

/// Run `coffer ARGS` with `stdin` piped in and the given token.
fn coffer(server: &Server, token: Option<&str>, args: &[&str], stdin: &str) -> Output {
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
    if let Some(t) = token {
        cmd.env("COFFER_TOKEN", t);
    }
    let mut child = cmd.spawn().expect("run coffer");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn operator_ceremony_and_secrets_commands() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);

    let out = coffer(&server, None, &["operator", "status"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "uninitialized counts as sealed: {}",
        stdout(&out)
    );

    let out = coffer(
        &server,
        None,
        &["operator", "init", "--shares", "3", "--threshold", "2", "--json"],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let init: Value = serde_json::from_slice(&out.stdout).unwrap();
    let share = |i: usize| init["keys"][i].as_str().unwrap().to_owned();
    let root = init["root_token"].as_str().unwrap().to_owned();

    // A typo is refused with the reason; progress is kept.
    let out = coffer(&server, None, &["operator", "unseal"], "zz-not-a-share\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("share"), "{}", stderr(&out));
    let out = coffer(&server, None, &["operator", "unseal"], &format!("{}\n", share(0)));
    assert!(stdout(&out).contains("Progress      1/2"), "{}", stdout(&out));
    let out = coffer(&server, None, &["operator", "unseal"], &format!("  {}  \n", share(2)));
    assert!(stdout(&out).contains("Sealed        false"), "{}", stdout(&out));
    assert_eq!(
        coffer(&server, None, &["operator", "status"], "").status.code(),
        Some(0)
    );

    util::tenant(&server.client(Some(&root))).await;
    let t = Some(root.as_str());

    let out = coffer(&server, None, &["secrets", "list"], "");
    assert!(
        !out.status.success() && stderr(&out).contains("COFFER_TOKEN"),
        "{}",
        stderr(&out)
    );

    let out = coffer(
        &server,
        t,
        &["secrets", "set", "DB_URL", "--description", "main db"],
        "postgres://db/app\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = coffer(&server, t, &["secrets", "get", "DB_URL"], "");
    assert_eq!(stdout(&out), "postgres://db/app\n");
    let out = coffer(&server, t, &["secrets", "set", "PORT", "--type", "integer"], "80x80");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a valid integer"), "{}", stderr(&out));
    coffer(&server, t, &["secrets", "set", "DB_URL"], "postgres://db/v2");
    let out = coffer(&server, t, &["secrets", "history", "DB_URL"], "");
    assert_eq!(stdout(&out).lines().count(), 3, "header + 2 versions: {}", stdout(&out));
    let out = coffer(&server, t, &["secrets", "rollback", "DB_URL", "1"], "");
    assert!(stdout(&out).contains("version 3"), "{}", stdout(&out));
    assert_eq!(
        stdout(&coffer(&server, t, &["secrets", "get", "DB_URL"], "")),
        "postgres://db/app\n"
    );
    let out = coffer(&server, t, &["secrets", "get", "DB_URL", "--meta"], "");
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((meta["version"].as_i64(), meta.get("value")), (Some(3), None));

    coffer(&server, t, &["secrets", "delete", "DB_URL"], "");
    assert!(!stdout(&coffer(&server, t, &["secrets", "list"], "")).contains("DB_URL"));
    coffer(&server, t, &["secrets", "restore", "DB_URL"], "");
    assert!(stdout(&coffer(&server, t, &["secrets", "list"], "")).contains("DB_URL"));

    // -o json on every listing command.
    let list: Value =
        serde_json::from_slice(&coffer(&server, t, &["secrets", "list", "-o", "json"], "").stdout).unwrap();
    assert!(list.as_array().unwrap().iter().any(|s| s["key"] == "DB_URL"), "{list}");
    let hist: Value =
        serde_json::from_slice(&coffer(&server, t, &["secrets", "history", "DB_URL", "-o", "json"], "").stdout)
            .unwrap();
    assert_eq!(hist.as_array().unwrap().len(), 3, "{hist}");
    let got: Value =
        serde_json::from_slice(&coffer(&server, t, &["secrets", "get", "DB_URL", "-o", "json"], "").stdout).unwrap();
    assert_eq!(got["value"], "postgres://db/app", "{got}");
    // secrets diff: keys only, never values.
    let local = dir.path().join("local.env");
    std::fs::write(
        &local,
        "DB_URL=something-else
NEW_ONE=x
",
    )
    .unwrap();
    let out = coffer(&server, t, &["secrets", "diff", local.to_str().unwrap()], "");
    let d = stdout(&out);
    assert!(d.contains("~ DB_URL") && d.contains("+ NEW_ONE"), "{d}{}", stderr(&out));
    assert!(!d.contains("something-else") && !d.contains("postgres://"), "{d}");

    let out = coffer(&server, t, &["operator", "seal"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        coffer(&server, None, &["operator", "status"], "").status.code(),
        Some(2)
    );
    let out = coffer(&server, t, &["secrets", "get", "DB_URL"], "");
    assert!(
        stderr(&out).contains("sealed") && stderr(&out).contains("503"),
        "{}",
        stderr(&out)
    );
}

/// `coffer completion` and `coffer man` work without a server; the bash
/// script parses (`bash -n`) and the man pages are troff.
#[test]
fn completion_scripts_and_man_pages() {
    let bin = env!("CARGO_BIN_EXE_coffer");
    let dir = util::tempdir();
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(bin).args(["completion", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("coffer") && script.contains("secrets"), "{shell}");
        if shell == "bash" {
            let path = dir.path().join("coffer.bash");
            std::fs::write(&path, &out.stdout).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
            assert!(check.status.success(), "bash -n: {}", stderr(&check));
        }
    }
    let man = dir.path().join("man");
    let out = Command::new(bin).args(["man", "-o"]).arg(&man).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["coffer.1", "coffer-run.1", "coffer-secrets.1"] {
        let text = std::fs::read_to_string(man.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let run = std::fs::read_to_string(man.join("coffer-run.1")).unwrap();
    assert!(run.contains("fallback"), "options documented");
}

/// A tiny HTTP/1.1 server on 127.0.0.1: answers every request with
/// `respond(request head)` and keeps each request head it saw.
fn tiny_http(
    respond: impl Fn(&str) -> String + Send + 'static,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().expect("clone"));
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            head.push_str(&String::from_utf8_lossy(&body));
            let answer = respond(&head);
            log.lock().unwrap().push(head);
            let _ = conn.write_all(answer.as_bytes());
        }
    });
    (port, seen)
}

/// A server that redirects the CLI to another origin (here another port of
/// the same host, plain http) never receives the token there: the CLI stops
/// and names the target instead of following.
#[test]
fn cli_never_carries_the_token_across_a_redirect() {
    let json = r#"{"error":false,"message":"","data":{"kind":"root","name":"root","accessor":"a"}}"#;
    let (other, other_seen) = tiny_http(move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
            json.len()
        )
    });
    for status in [
        "301 Moved Permanently",
        "302 Found",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ] {
        let (first, first_seen) = tiny_http(move |head| {
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            format!(
                "HTTP/1.1 {status}\r\nLocation: http://127.0.0.1:{other}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        });
        let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["whoami"])
            .env("COFFER_ADDR", format!("http://127.0.0.1:{first}"))
            .env("COFFER_TOKEN", "cfr_redirect_probe_token")
            .env_remove("COFFER_PIN")
            .stdin(Stdio::null())
            .output()
            .expect("run coffer");
        assert!(
            first_seen
                .lock()
                .unwrap()
                .iter()
                .any(|h| h.contains("cfr_redirect_probe_token")),
            "the first server got the request"
        );
        let leaked: Vec<String> = other_seen.lock().unwrap().clone();
        assert!(
            leaked.iter().all(|h| !h.contains("cfr_redirect_probe_token")),
            "{status}: the token reached the redirect target: {leaked:?}"
        );
        assert!(leaked.is_empty(), "{status}: the CLI followed the redirect: {leaked:?}");
        assert!(!out.status.success(), "{status}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(&format!("redirected to http://127.0.0.1:{other}")),
            "{status}: {}",
            stderr(&out)
        );
    }
}
