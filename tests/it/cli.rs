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
