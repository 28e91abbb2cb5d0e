//! Certificates as identity (docs/access.md "Tokens", "service accounts"):
//! tokens bound to a client certificate (at creation over mutual TLS, or by
//! SPKI hash), certificate-only login of a service account, and handshakes
//! refused for expired and revoked client certificates. The PKI is made with
//! the `openssl` CLI (`openssl ca`, so validity dates and a CRL are real).

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::access::booted;
use crate::util::{self, Http, Server};

fn openssl(dir: &Path, args: &[&str]) {
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

const CA_CONFIG: &str = "\
[ ca ]
default_ca = testca
[ testca ]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
crlnumber = crlnumber
certificate = ca.pem
private_key = ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
[ req ]
distinguished_name = dn
[ dn ]
[ ca_ext ]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1
[ client_ext ]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
";

/// Clients of the test CA: `a`, `b` and `c` valid, `expired` (2020),
/// `revoked` (listed in `crl.pem`).
const CLIENTS: &[(&str, &str)] = &[
    ("a", "client-a"),
    ("b", "client-b"),
    ("c", "robot-c"),
    ("expired", "client-expired"),
    ("revoked", "client-revoked"),
];

/// CA, server certificate for 127.0.0.1, the clients above, and a CRL.
fn make_pki(dir: &Path) {
    std::fs::write(dir.join("ca.cnf"), CA_CONFIG).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    std::fs::write(dir.join("crlnumber"), "1000\n").unwrap();
    std::fs::create_dir_all(dir.join("newcerts")).unwrap();
    let mut names = vec!["ca", "server"];
    names.extend(CLIENTS.iter().map(|(n, _)| *n));
    for name in &names {
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
            "-config",
            "ca.cnf",
            "-extensions",
            "ca_ext",
            "-key",
            "ca.key",
            "-subj",
            "/CN=coffer access test CA",
            "-days",
            "2",
            "-out",
            "ca.pem",
        ],
    );
    let sign = |name: &str, cn: &str, ext: &str, dates: Option<(&str, &str)>| {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-config",
                "ca.cnf",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        let mut args = vec![
            "ca".to_owned(),
            "-batch".into(),
            "-notext".into(),
            "-config".into(),
            "ca.cnf".into(),
            "-extensions".into(),
            ext.into(),
            "-in".into(),
            format!("{name}.csr"),
            "-out".into(),
            format!("{name}.pem"),
        ];
        if let Some((start, end)) = dates {
            args.extend(["-startdate".into(), start.into(), "-enddate".into(), end.into()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &args);
    };
    sign("server", "127.0.0.1", "server_ext", None);
    for (name, cn) in CLIENTS {
        let dates = (*name == "expired").then_some(("20200101000000Z", "20200102000000Z"));
        sign(name, cn, "client_ext", dates);
    }
    openssl(dir, &["ca", "-config", "ca.cnf", "-revoke", "revoked.pem"]);
    openssl(dir, &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"]);
}

/// Hex SHA-256 of a certificate's SubjectPublicKeyInfo, as the openssl CLI
/// computes it.
pub(crate) fn spki_sha256(dir: &Path, name: &str) -> String {
    let out = Command::new("sh")
        .current_dir(dir)
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {name}.pem -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum"
        ))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex = String::from_utf8(out.stdout).unwrap();
    let hex = hex.split_whitespace().next().unwrap().to_owned();
    assert_eq!(hex.len(), 64, "{hex}");
    hex
}

/// A reqwest client trusting only the test CA, presenting `identity`.
pub(crate) fn tls_client(dir: &Path, identity: Option<&str>) -> reqwest::Client {
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

/// A mutual-TLS server with the CRL, and a cert-`a` client.
pub(crate) async fn mtls_server(dir: &Path) -> Server {
    make_pki(dir);
    let d = dir.display();
    let listener = format!(
        "tls_cert = \"{d}/server.pem\"\ntls_key = \"{d}/server.key\"\ntls_client_ca = \"{d}/ca.pem\"\ntls_client_crl = \"{d}/crl.pem\""
    );
    Server::start_with(dir, &util::fresh_storage_url(dir).await, &listener)
}

#[tokio::test]
async fn certificate_bound_tokens_and_certificate_login() {
    let dir = util::tempdir();
    let d = dir.path();
    let server = mtls_server(d).await;
    let with = |cert: &str, token: Option<&str>| Http::from_client(&server.base, tls_client(d, Some(cert)), token);
    let (root, _) = util::boot(&with("a", None)).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    let env = util::env_path("acme", "api", "production");
    util::write_secret(&root, &env, "DB_URL", "postgres://prod").await;
    let reveal = format!("{env}/secrets/DB_URL?reveal=true");

    util::service_account(&root, "acme", "ci", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "ci", "project": "api", "environment": "production", "role": "developer"}),
    )
    .await;
    let plain = util::sa_token(&root, "acme", "ci", json!({})).await;
    let plain = plain["token"].as_str().unwrap();

    // bind_certificate over a connection presenting cert A.
    let bound = util::ok_data(
        "bind_certificate token",
        with("a", Some(plain))
            .post("/api/v1/tokens", json!({"name": "bound-a", "bind_certificate": true}))
            .await,
    );
    let bound = bound["token"].as_str().unwrap_or_else(|| panic!("{bound}"));
    // "A new token acts as the caller (same identity and grants)": whoami
    // names the same principal as the token that created it.
    let parent = util::ok_data(
        "whoami, unbound",
        with("a", Some(plain)).get("/api/v1/auth/whoami").await,
    );
    let me = util::ok_data(
        "whoami with cert A",
        with("a", Some(bound)).get("/api/v1/auth/whoami").await,
    );
    assert_eq!(
        (me["kind"].as_str(), me["certificate_bound"].as_bool()),
        (Some("service_account"), Some(true)),
        "{me}"
    );
    let identity = |v: &serde_json::Value| (v["kind"].clone(), v["id"].clone(), v["name"].clone(), v["org"].clone());
    let same_identity = identity(&parent) == identity(&me);
    util::ok_data(
        "bound token with cert A reveals",
        with("a", Some(bound)).get(&reveal).await,
    );
    for path in ["/api/v1/auth/whoami", reveal.as_str()] {
        util::expect_error(
            &format!("bound to A, presented with cert B: GET {path}"),
            with("b", Some(bound)).get(path).await,
            401,
            "certificate_required",
        );
    }
    // The unbound token works with either (so the refusal is the binding).
    util::ok_data("unbound token with cert B", with("b", Some(plain)).get(&reveal).await);

    // A service-account token bound by SPKI hash to cert B.
    let by_spki = util::sa_token(&root, "acme", "ci", json!({"bind_spki_sha256": spki_sha256(d, "b")})).await;
    let by_spki = by_spki["token"].as_str().unwrap();
    util::ok_data(
        "SPKI-bound token with cert B",
        with("b", Some(by_spki)).get(&reveal).await,
    );
    util::expect_error(
        "SPKI-bound token to B, presented with cert A",
        with("a", Some(by_spki)).get(&reveal).await,
        401,
        "certificate_required",
    );

    // Certificate-only login: no token, the certificate names the account.
    util::service_account(
        &root,
        "acme",
        "robot",
        json!({"certificate": {"spki_sha256": spki_sha256(d, "c")}}),
    )
    .await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "robot", "project": "api", "environment": "production", "role": "viewer"}),
    )
    .await;
    let list = format!("{env}/secrets");
    util::ok_data("cert C, no token, lists secrets", with("c", None).get(&list).await);
    util::expect_error(
        "cert C (robot, viewer) reveals",
        with("c", None).get(&reveal).await,
        403,
        "permission_denied",
    );
    // Every field given must match: this admin account names B's key but
    // C's CN, so neither B nor C is it, and C stays the viewer robot.
    util::service_account(
        &root,
        "acme",
        "picky",
        json!({"certificate": {"spki_sha256": spki_sha256(d, "b"), "subject_cn": "robot-c"}}),
    )
    .await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "picky", "project": "*", "environment": "*", "role": "admin"}),
    )
    .await;
    util::ok_data("cert C after adding picky", with("c", None).get(&list).await);
    util::expect_error(
        "cert C after adding picky (must not be picky, an admin) reveals",
        with("c", None).get(&reveal).await,
        403,
        "permission_denied",
    );
    for cert in ["a", "b"] {
        util::expect_error(
            &format!("cert {cert}, no token, matches no account"),
            with(cert, None).get(&list).await,
            401,
            "unauthenticated",
        );
    }
    // Deviations that do not stop the rest are collected and reported last.
    let mut soft = Vec::new();
    if !same_identity {
        soft.push(format!(
            "whoami of a token made by POST /tokens must name its creator:\n  creator {parent}\n  token   {me}"
        ));
    }
    // "a request with no token whose client certificate matches … acts as
    // that account": any request, whoami included (it names no org).
    let (st, me) = with("c", None).get("/api/v1/auth/whoami").await;
    if !(st.is_success() && me["data"]["kind"] == "service_account" && me["data"]["name"] == "robot") {
        soft.push(format!(
            "GET /api/v1/auth/whoami with cert C, no token → {st} {me} (expected robot)"
        ));
    }
    util::ok_data(
        "delete robot",
        root.delete("/api/v1/orgs/acme/service-accounts/robot").await,
    );
    let (st, body) = with("c", None).get(&list).await;
    if st != 401 {
        soft.push(format!(
            "GET {list} with cert C right after robot was deleted → {st} {body} (expected 401 at once on the deleting server)"
        ));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    util::expect_error(
        "cert C 1.1 s after its account was deleted",
        with("c", None).get(&list).await,
        401,
        "unauthenticated",
    );
    assert!(soft.is_empty(), "{} deviation(s):\n{}", soft.len(), soft.join("\n"));
}

#[tokio::test]
async fn expired_and_revoked_client_certificates_fail_the_handshake() {
    let dir = util::tempdir();
    let d = dir.path();
    let server = mtls_server(d).await;
    let url = format!("{}/v1/sys/seal-status", server.base);
    for good in ["a", "b"] {
        let res = tls_client(d, Some(good)).get(&url).send().await;
        assert!(
            res.as_ref().is_ok_and(|r| r.status() == 200),
            "valid client certificate {good}: {res:?}"
        );
    }
    for bad in ["expired", "revoked"] {
        let res = tls_client(d, Some(bad)).get(&url).send().await;
        assert!(
            res.is_err(),
            "client certificate {bad} must fail the handshake: {res:?}"
        );
    }
}

#[tokio::test]
async fn certificate_bound_tokens_are_refused_without_a_certificate() {
    let dir = util::tempdir();
    let (server, root) = booted(dir.path()).await;
    util::org_tree(&root, "acme", &[("api", &["production"])]).await;
    util::service_account(&root, "acme", "ci", json!({})).await;
    util::grant(
        &root,
        "acme",
        json!({"service_account": "ci", "project": "api", "environment": "production", "role": "viewer"}),
    )
    .await;
    let env = util::env_path("acme", "api", "production");
    let bound = util::sa_token(&root, "acme", "ci", json!({"bind_spki_sha256": "ab".repeat(32)})).await;
    let bound = server.client(bound["token"].as_str());
    for path in ["/api/v1/auth/whoami".to_owned(), format!("{env}/secrets")] {
        util::expect_error(
            &format!("SPKI-bound token over plain HTTP: GET {path}"),
            bound.get(&path).await,
            401,
            "certificate_required",
        );
    }
    let plain = util::sa_token(&root, "acme", "ci", json!({})).await;
    let plain = server.client(plain["token"].as_str());
    util::ok_data("unbound token", plain.get(&format!("{env}/secrets")).await);
    // Binding to "the certificate of this request" without one must not
    // quietly hand out an unbound token.
    let (st, body) = plain
        .post(
            "/api/v1/tokens",
            json!({"name": "nothing-to-bind", "bind_certificate": true}),
        )
        .await;
    assert!(
        st.is_client_error(),
        "bind_certificate without a client certificate: {st} {body} (expected 4xx)"
    );
    // A malformed SPKI hash is refused.
    let (st, body) = root
        .post(
            "/api/v1/orgs/acme/service-accounts/ci/tokens",
            json!({"bind_spki_sha256": "not-hex"}),
        )
        .await;
    assert_eq!(st, 400, "malformed bind_spki_sha256: {body}");
}

#[tokio::test]
async fn a_certificate_maps_to_one_account_server_wide() {
    // A certificate is public, so an admin of any org could map another
    // tenant's SPKI to an account of their own. A certificate identifies at
    // most one account on the server: the second mapping is a 409 that does
    // not name the org holding the first.
    let dir = util::tempdir();
    let d = dir.path();
    let server = mtls_server(d).await;
    let with = |cert: &str, token: Option<&str>| Http::from_client(&server.base, tls_client(d, Some(cert)), token);
    let (root, _) = util::boot(&with("a", None)).await;
    let spki = spki_sha256(d, "c");
    util::org_tree(&root, "victim", &[("api", &["prod"])]).await;
    util::write_secret(&root, &util::env_path("victim", "api", "prod"), "KEY", "victim-value").await;
    util::service_account(&root, "victim", "robot", json!({"certificate": {"spki_sha256": spki}})).await;
    util::grant(
        &root,
        "victim",
        json!({"service_account": "robot", "project": "api", "environment": "prod", "role": "developer"}),
    )
    .await;
    let reveal = format!("{}/secrets/KEY?reveal=true", util::env_path("victim", "api", "prod"));
    let value = util::ok_data("cert C reveals in its org", with("c", None).get(&reveal).await);
    assert_eq!(value["value"], "victim-value", "{value}");

    // Mallory owns another org and tries to claim C's key (in upper case, too).
    util::create_user(&root, "mallory@evil.test", "mallory's long password").await;
    let mallory = util::user_client(&with("a", None), "mallory@evil.test", "mallory's long password").await;
    util::ok_data(
        "mallory creates her org",
        mallory
            .post("/api/v1/orgs", json!({"slug": "evil", "name": "Evil"}))
            .await,
    );
    for claim in [spki.clone(), spki.to_ascii_uppercase()] {
        let (st, body) = mallory
            .post(
                "/api/v1/orgs/evil/service-accounts",
                json!({"name": "claimer", "certificate": {"spki_sha256": claim, "subject_cn": "robot-c"}}),
            )
            .await;
        assert_eq!(
            (st.as_u16(), body["code"].as_str()),
            (409, Some("conflict")),
            "another org maps C's key: {body}"
        );
        let msg = body["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains("spki_sha256") && !msg.contains("victim") && !msg.contains("robot"),
            "the conflict names the field, not the org or account holding it: {msg}"
        );
    }
    // A CN (anyone can get one from the shared CA) identifies nobody.
    util::expect_error(
        "a CN-only mapping",
        mallory
            .post(
                "/api/v1/orgs/evil/service-accounts",
                json!({"name": "claimer", "certificate": {"subject_cn": "robot-c"}}),
            )
            .await,
        400,
        "invalid",
    );
    // In the same org the conflict names the account.
    let (st, body) = root
        .post(
            "/api/v1/orgs/victim/service-accounts",
            json!({"name": "twin", "certificate": {"spki_sha256": spki}}),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("robot")), "{body}");

    // C still logs in as robot, with and without an org in the path.
    let value = util::ok_data("cert C after the claims", with("c", None).get(&reveal).await);
    assert_eq!(value["value"], "victim-value", "{value}");
    let me = util::ok_data("whoami, cert C", with("c", None).get("/api/v1/auth/whoami").await);
    assert_eq!(
        (me["name"].as_str(), me["org"].as_str()),
        (Some("robot"), Some("victim")),
        "{me}"
    );
    util::expect_error(
        "cert C in mallory's org",
        with("c", None).get("/api/v1/orgs/evil/service-accounts").await,
        401,
        "unauthenticated",
    );

    // Once the victim deletes its account, the certificate is free again.
    util::ok_data(
        "delete robot",
        root.delete("/api/v1/orgs/victim/service-accounts/robot").await,
    );
    util::ok_data(
        "map C after robot is gone",
        mallory
            .post(
                "/api/v1/orgs/evil/service-accounts",
                json!({"name": "claimer", "certificate": {"spki_sha256": spki}}),
            )
            .await,
    );
}

#[tokio::test]
async fn certificate_login_reads_the_decoded_org_of_the_path() {
    // The organization a certificate-only request authenticates in is the
    // one its handler acts on: `%62ravo` is `bravo`, in the answer and in
    // the audit record.
    let dir = util::tempdir();
    let d = dir.path();
    let server = mtls_server(d).await;
    let with = |cert: &str, token: Option<&str>| Http::from_client(&server.base, tls_client(d, Some(cert)), token);
    let (root, _) = util::boot(&with("a", None)).await;
    let spki = spki_sha256(d, "c");
    util::org_tree(&root, "bravo", &[("api", &["prod"])]).await;
    util::write_secret(&root, &util::env_path("bravo", "api", "prod"), "KEY", "bravo-value").await;
    util::service_account(&root, "bravo", "robot", json!({"certificate": {"spki_sha256": spki}})).await;
    util::grant(
        &root,
        "bravo",
        json!({"service_account": "robot", "project": "api", "environment": "prod", "role": "developer"}),
    )
    .await;
    for path in [
        "/api/v1/orgs/bravo/projects/api/environments/prod/secrets/KEY?reveal=true",
        "/api/v1/orgs/%62ravo/projects/%61pi/environments/prod/secrets/KEY?re%76eal=%74rue",
    ] {
        let (st, body) = with("c", None).get(path).await;
        assert_eq!(
            (st.as_u16(), &body["data"]["value"]),
            (200, &json!("bravo-value")),
            "cert C, no token: GET {path}: {body}"
        );
    }
    let (st, found) = root.get("/api/v1/audit/records?org=bravo&action=secret.reveal").await;
    assert_eq!(st, 200, "{found}");
    let by_robot: Vec<&serde_json::Value> = found["data"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["actor_kind"] == "service_account")
        .collect();
    assert_eq!(
        by_robot.len(),
        2,
        "both spellings are bravo's reveals by robot: {found}"
    );
    assert!(by_robot.iter().all(|r| r["detail"]["values"] == 1), "{found}");
}
