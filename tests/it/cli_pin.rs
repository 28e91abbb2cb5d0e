//! Certificate pinning in the CLI: a self-signed (private-CA) server is
//! refused with a hint, `coffer trust` shows its fingerprint and pins it
//! once confirmed, pinned commands work, and a changed certificate is
//! refused loudly.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

use crate::tls::make_pki;
use crate::util::{self, Server};

fn coffer(home: &Path, address: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env("COFFER_ADDR", address)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env_remove("COFFER_TOKEN")
        .env_remove("COFFER_CACERT")
        .env_remove("COFFER_PIN")
        .output()
        .expect("run coffer")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn pin_of(pem_file: &Path) -> String {
    let pem = std::fs::read(pem_file).expect("pem");
    let (_, p) = x509_parser::pem::parse_x509_pem(&pem).expect("pem block");
    let cert = p.parse_x509().expect("certificate");
    format!("sha256:{}", hex::encode(Sha256::digest(cert.public_key().raw)))
}

#[tokio::test]
async fn trust_on_first_use_pins_and_a_changed_certificate_is_refused() {
    let dir = util::tempdir();
    make_pki(dir.path());
    let d = dir.path().display();
    let listener = format!("tls_cert = \"{d}/server.pem\"\ntls_key = \"{d}/server.key\"");
    let server = Server::start_with(dir.path(), &util::fresh_storage_url(dir.path()).await, &listener);
    let home = util::tempdir();
    let addr = server.base.as_str();
    let pin = pin_of(&dir.path().join("server.pem"));

    // Not signed by a CA this machine trusts: refused, and told what to do.
    // (`operator status` exits 2 for a sealed server: the status table
    // shows that the command got through.)
    let o = coffer(home.path(), addr, &["operator", "status"]);
    assert!(!text(&o).contains("Initialized"), "{}", text(&o));
    assert!(text(&o).contains("coffer trust"), "{}", text(&o));

    // No terminal to confirm on: the fingerprint is shown, nothing stored.
    let o = coffer(home.path(), addr, &["trust"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&pin) && text(&o).contains("--expect"), "{}", text(&o));
    let known = home.path().join(".config/coffer/known_servers.json");
    assert!(!known.exists());

    // A fingerprint that does not match what the server presents: refused.
    let wrong = format!("sha256:{}", "00".repeat(32));
    let o = coffer(home.path(), addr, &["trust", "--expect", &wrong]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!known.exists());

    // Confirmed out of band: pinned (0600), and commands now connect.
    let o = coffer(home.path(), addr, &["trust", "--expect", &pin]);
    assert!(o.status.success(), "{}", text(&o));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&known).expect("pins").permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&known).expect("pins").contains(&pin));
    let o = coffer(home.path(), addr, &["operator", "status"]);
    assert!(text(&o).contains("Initialized"), "pinned: {}", text(&o));

    // An explicit pin works without the store, and a wrong one is refused.
    let other_home = util::tempdir();
    let o = coffer(other_home.path(), addr, &["operator", "status", "--pin", &pin]);
    assert!(text(&o).contains("Initialized"), "--pin: {}", text(&o));
    let o = coffer(other_home.path(), addr, &["operator", "status", "--pin", &wrong]);
    assert!(!text(&o).contains("Initialized"), "{}", text(&o));
    assert!(text(&o).contains("CERTIFICATE CHANGED"), "{}", text(&o));

    // The server's key changed since it was pinned: refused loudly.
    std::fs::write(&known, format!("{{\"{addr}\": \"{wrong}\"}}")).expect("rewrite pins");
    let o = coffer(home.path(), addr, &["operator", "status"]);
    assert!(!text(&o).contains("Initialized"), "{}", text(&o));
    assert!(
        text(&o).contains("CERTIFICATE CHANGED") && text(&o).contains(&pin),
        "{}",
        text(&o)
    );
}
