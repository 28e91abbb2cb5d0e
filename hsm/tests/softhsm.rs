//! The crate against a real PKCS#11 module: SoftHSM2 (`apt-get install
//! softhsm2`; module path from `PKCS11_SOFTHSM2_MODULE`, default Debian's).
//!
//! SoftHSM reads `SOFTHSM2_CONF` at `C_Initialize`, and setting an
//! environment variable inside a threaded test process is unsound, so the
//! test re-runs itself as a child process with a private configuration and
//! token directory: hermetic, and parallel-safe with every other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use hsm::{Hsm, HsmConfig, HsmError, PinSource};

const CHILD: &str = "HSM_SOFTHSM_TEST_CHILD";

fn module() -> PathBuf {
    let m = PathBuf::from(
        std::env::var("PKCS11_SOFTHSM2_MODULE").unwrap_or_else(|_| "/usr/lib/softhsm/libsofthsm2.so".into()),
    );
    assert!(
        m.is_file(),
        "SoftHSM2 module not found at {}: apt-get install -y softhsm2",
        m.display()
    );
    m
}

#[test]
fn softhsm_wraps_and_unwraps_the_root_key_and_names_every_failure() {
    let Ok(dir) = std::env::var(CHILD) else {
        // Parent: a private token, then this same test in a child process.
        let tmp = tempfile::tempdir().unwrap();
        let tokens = tmp.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = tmp.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\n",
                tokens.display()
            ),
        )
        .unwrap();
        let init = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                "t1",
                "--pin",
                "1111",
                "--so-pin",
                "2222",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .expect("softhsm2-util (apt-get install -y softhsm2)");
        assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
        std::fs::write(tmp.path().join("pin"), "1111\n").unwrap();
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "softhsm_wraps_and_unwraps_the_root_key_and_names_every_failure",
                "--nocapture",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .env(CHILD, tmp.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "child run failed:\n{text}"
        );
        return;
    };
    let dir = PathBuf::from(dir);
    let cfg = HsmConfig {
        module: module(),
        token_label: "t1".into(),
        key_label: "root".into(),
        pin: PinSource::File(dir.join("pin")),
    };
    let hsm = Hsm::new(cfg.clone());
    // No key yet.
    assert!(matches!(
        hsm.wrap_root(&[1u8; 32]),
        Err(HsmError::KeyNotFound { found: 0, .. })
    ));
    hsm.generate_key().expect("keygen");
    assert!(matches!(hsm.generate_key(), Err(HsmError::KeyExists { .. })));

    let root = [0x5au8; 32];
    let blob = hsm.wrap_root(&root).expect("wrap");
    assert_eq!(blob[0], hsm::FORMAT_V1);
    assert_ne!(hsm.wrap_root(&root).expect("wrap"), blob, "fresh IV each time");
    let started = Instant::now();
    let back = hsm.unwrap_root(&blob).expect("unwrap");
    eprintln!("unwrap (fresh context, login, find, decrypt): {:?}", started.elapsed());
    assert_eq!(back.as_slice(), &root);

    let mut bad = blob.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(
        matches!(hsm.unwrap_root(&bad), Err(HsmError::Decrypt(_))),
        "tampered blob"
    );
    let other_key = Hsm::new(HsmConfig {
        key_label: "other".into(),
        ..cfg.clone()
    });
    assert!(matches!(
        other_key.unwrap_root(&blob),
        Err(HsmError::KeyNotFound { .. })
    ));
    let other_token = Hsm::new(HsmConfig {
        token_label: "nope".into(),
        ..cfg.clone()
    });
    assert!(matches!(
        other_token.unwrap_root(&blob),
        Err(HsmError::TokenNotFound(_))
    ));
    std::fs::write(dir.join("pin"), "9999\n").unwrap();
    let err = hsm.unwrap_root(&blob).expect_err("wrong PIN");
    assert!(matches!(err, HsmError::PinIncorrect), "{err}");
    assert!(!err.to_string().contains("9999"));
}
