//! Real TLS on the real binary: certificates made with the `openssl` CLI, a
//! rustls client that trusts only the test CA, and mutual TLS that refuses
//! clients without a certificate from the configured CA.

use std::path::Path;
use std::process::Command;

use crate::util::{self, Server};

pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all
/// P-256, in `dir`.
pub(crate) fn make_pki(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for name in ["ca", "server", "client", "rogue"] {
        openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("{name}.key"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=coffer test CA",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ],
    );
    // A self-signed "client" certificate from no CA the server trusts.
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "rogue.key",
            "-subj",
            "/CN=rogue",
            "-days",
            "2",
            "-out",
            "rogue.pem",
        ],
    );
    for (name, cn) in [("server", "127.0.0.1"), ("client", "ci-job")] {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
}

fn client(dir: &Path, identity: Option<&str>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut b = reqwest::Client::builder().tls_certs_only([ca]);
    if let Some(name) = identity {
        let mut pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        pem.extend(std::fs::read(dir.join(format!("{name}.key"))).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// A server with a fresh PKI in `dir`, TLS on, client certificates
/// required when `mutual`.
async fn tls_server(dir: &Path, mutual: bool) -> Server {
    make_pki(dir);
    let d = dir.display();
    let mut listener = format!("tls_cert = \"{d}/server.pem\"\ntls_key = \"{d}/server.key\"");
    if mutual {
        listener.push_str(&format!("\ntls_client_ca = \"{d}/ca.pem\""));
    }
    Server::start_with(dir, &util::fresh_storage_url(dir).await, &listener)
}

#[tokio::test]
async fn https_serves_and_plain_http_does_not() {
    let dir = util::tempdir();
    let server = tls_server(dir.path(), false).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let res = client(dir.path(), None)
        .get(format!("{}/v1/sys/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 501);
    // The same port does not speak plain HTTP.
    let plain = server.base.replacen("https://", "http://", 1);
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/v1/sys/health"))
            .send()
            .await
            .is_err()
    );
    // A client that does not trust our CA refuses the server.
    let stranger = reqwest::Client::builder().build().unwrap();
    assert!(
        stranger
            .get(format!("{}/v1/sys/health", server.base))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let dir = util::tempdir();
    let server = tls_server(dir.path(), true).await;
    let url = format!("{}/v1/sys/seal-status", server.base);
    let ok = client(dir.path(), Some("client")).get(&url).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        client(dir.path(), None).get(&url).send().await.is_err(),
        "no client certificate must be refused"
    );
    assert!(
        client(dir.path(), Some("rogue")).get(&url).send().await.is_err(),
        "untrusted client certificate must be refused"
    );
}

#[tokio::test]
async fn tls_misconfiguration_is_reported_with_the_file() {
    let dir = util::tempdir();
    let d = dir.path().display();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    std::fs::write(
        dir.path().join("coffer.toml"),
        format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_cert = \"{d}/empty.pem\"\ntls_key = \"{d}/empty.pem\"\n[storage]\nurl = \"{}\"\n",
            util::fresh_storage_url(dir.path()).await
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["server", "--config"])
        .arg(dir.path().join("coffer.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty.pem") && err.contains("CERTIFICATE"), "{err}");
}
