//! The OpenAPI document (`GET /api/v1/openapi.json`, src/http/openapi.rs)
//! and what the schemathesis runs found (bench/schemathesis.sh,
//! docs/reliability.md "OpenAPI contract and schemathesis").

use crate::util::{self, Server};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The document is public: no token, and also from a sealed server (it
/// describes routes, never data); it is OpenAPI 3.1 and names the core
/// routes with their typed bodies.
#[tokio::test]
async fn the_document_is_served_without_a_token_even_sealed() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (shares, _, _) = util::init(&anon, 1, 1).await;
    let fetch = || async {
        let res = client()
            .get(format!("{}/api/v1/openapi.json", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{:?}",
            res.headers()
        );
        res.json::<serde_json::Value>().await.unwrap()
    };
    let sealed = fetch().await;
    assert_eq!(sealed["openapi"], "3.1.0");
    let secret = &sealed["paths"]["/api/v1/orgs/{org}/projects/{project}/environments/{env}/secrets/{key}"];
    assert_eq!(
        secret["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/WriteSecret"
    );
    assert!(sealed["components"]["schemas"]["ErrorBody"].is_object());
    assert!(sealed["paths"]["/api/v1/openapi.json"]["get"].is_object());
    // nothing of the Vault API, the dashboard or the metrics
    let paths = sealed["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| p.starts_with("/api/v1/")), "{:?}", paths.keys());
    util::unseal(&anon, &[shares[0].as_str()]).await;
    assert_eq!(fetch().await, sealed, "the same document sealed and unsealed");
}

/// schemathesis (Vault spec, `sys/health`): a status override outside
/// 200–599 made hyper answer an empty 500 (100–199) or break the
/// connection (101). Such an override is now ignored, as a non-number is.
#[tokio::test]
async fn health_ignores_a_status_override_that_is_no_final_status() {
    let dir = util::tempdir();
    let server = Server::start(dir.path(), &util::fresh_storage_url(dir.path()).await);
    let anon = server.client(None);
    let (shares, _, _) = util::init(&anon, 1, 1).await;
    util::unseal(&anon, &[shares[0].as_str()]).await;
    let client = client();
    for (q, want) in [
        ("activecode=100", 200),
        ("activecode=101", 200),
        ("activecode=199", 200),
        ("activecode=999", 200),
        ("activecode=0", 200),
        ("activecode=x", 200),
        ("activecode=204", 204),
        ("activecode=473", 473),
        ("activecode=599", 599),
    ] {
        let res = client
            .get(format!("{}/v1/sys/health?{q}", server.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(res.status().as_u16(), want, "{q}");
        if want != 204 {
            let body: serde_json::Value = res.json().await.unwrap_or_else(|e| panic!("{q}: {e}"));
            assert_eq!(body["sealed"], false, "{q}");
        }
    }
}
