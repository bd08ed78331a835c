//! TLS from client to gateway to server, with a private CA made here (docs/DEPLOYMENT.md,
//! "TLS at latchkey" and "Gateways in another network following an https issuer"):
//! the server on TLS reloading its certificate, a gateway following it by https at a
//! connect address that differs from the issuer, clients reaching the gateway over
//! HTTP/2 and HTTP/1.1, a revocation crossing the TLS feed, mutual TLS on the follower
//! endpoints, and the certificates a follower must refuse.

use crate::helpers::{TestApp, trusting_client};
use axum::Json;
use axum::http::HeaderMap;
use axum::routing::get;
use latchkey_gateway::{GatewayConfig, assemble};
use latchkey_listener::test_pki::{Issued, TestCa, Use};
use latchkey_server::Config;
use reqwest::Version;
use serde_json::{Value, json};
use std::time::Duration;

/// The issuer the server is known by; nothing here ever connects to it.
const PUBLIC_ISSUER: &str = "https://auth.example.com";

/// An upstream that answers with the `x-latchkey-*` headers and the `Host` it received.
async fn upstream() -> u16 {
    async fn echo(headers: HeaderMap) -> impl axum::response::IntoResponse {
        let mut seen: serde_json::Map<String, Value> = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-latchkey-"))
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or(""))))
            .collect();
        let host = headers.get("host").and_then(|h| h.to_str().ok());
        seen.insert("host".to_owned(), json!(host));
        let fields = [
            ("x-upstream", "echo"),
            ("x-request-id", "upstream-chosen"),
            ("proxy-authenticate", "Basic"),
        ];
        (fields, Json(Value::Object(seen)))
    }
    let app = axum::Router::new().route("/reports", get(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

/// A gateway configuration following `app` at its https address, checking tokens
/// against [`PUBLIC_ISSUER`], trusting `ca`, serving TLS with `serving`, plus `extra`.
fn gateway_config(
    app: &TestApp,
    ca: &TestCa,
    credential: &str,
    serving: &Issued,
    upstream: u16,
    extra: &str,
) -> GatewayConfig {
    GatewayConfig::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        server = "{server}"
        issuer = "{PUBLIC_ISSUER}"
        tls_ca_file = "{ca}"
        credential = "{credential}"
        tls_cert_file = "{cert}"
        tls_key_file = "{key}"
        {extra}

        [[route]]
        prefix = "/reports"
        upstream = "http://127.0.0.1:{upstream}"
        scopes = {{ GET = ["reports:read"] }}
        "#,
        server = app.base,
        ca = ca.pem_file.display(),
        cert = serving.cert_file.display(),
        key = serving.key_file.display(),
    ))
    .unwrap()
}

/// Starts a gateway from `config`; returns its https base URL and its replica.
async fn start_gateway(config: GatewayConfig) -> (String, latchkey_verify::RevocationReplica) {
    let (gateway, replica) = assemble(config).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), replica.ready())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    (base, replica)
}

async fn get_with(client: &reqwest::Client, url: &str, bearer: &str) -> (u16, Version, Value) {
    let response = client
        .get(url)
        .bearer_auth(bearer)
        .header("x-latchkey-tenant", "spoofed")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let version = response.version();
    (
        status,
        version,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_follows_a_tls_server_by_https_and_serves_http2_and_http1() {
    let ca = TestCa::new("deployment");
    let app = TestApp::tls(&ca, |config| {
        config.public_url = Some(PUBLIC_ISSUER.to_owned());
    })
    .await;
    assert!(app.base.starts_with("https://127.0.0.1:"), "{}", app.base);
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    // The metadata names the public issuer, not the address it was fetched from.
    let metadata = app.get("/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata.body["issuer"], PUBLIC_ISSUER);

    let credential = app.introspection_key().await;
    let serving = ca.issue("gateway", &["127.0.0.1", "localhost"], Use::Server);
    let upstream = upstream().await;
    let (edge, replica) = start_gateway(gateway_config(
        &app,
        &ca,
        &credential,
        &serving,
        upstream,
        "",
    ))
    .await;
    assert!(!replica.is_stale(), "the feed is followed over TLS");

    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let granted = app.exchange(&id, &secret, &[]).await;
    let jwt = granted.body["access_token"].as_str().unwrap().to_owned();

    let h2 = trusting_client(&ca, |b| b.http2_prior_knowledge());
    let h1 = trusting_client(&ca, |b| b.http1_only());
    let url = format!("{edge}/reports");
    for (client, version) in [(&h2, Version::HTTP_2), (&h1, Version::HTTP_11)] {
        let (status, spoken, seen) = get_with(client, &url, &jwt).await;
        assert_eq!((status, spoken), (200, version), "{seen}");
        assert_eq!(seen["x-latchkey-tenant"], "acme", "spoofed header replaced");
        assert_eq!(seen["x-latchkey-token-id"], id);
        assert_eq!(seen["x-latchkey-scopes"], "reports:read");
        // The upstream gets the client's host, from `:authority` over HTTP/2.
        assert_eq!(seen["host"], edge.trim_start_matches("https://"));
        // Path normalisation holds on both versions: an encoded slash is refused.
        let (status, _, body) = get_with(client, &format!("{edge}/reports%2Fx"), &jwt).await;
        assert_eq!(status, 400, "{body}");
        // The answer's fields pass on over either version, but for the hop-by-hop
        // ones and the upstream's request id, which the gateway's replaces.
        let response = client.get(&url).bearer_auth(&jwt).send().await.unwrap();
        let fields = response.headers();
        assert_eq!(fields["x-upstream"], "echo", "{version:?}");
        assert_eq!(fields["content-type"], "application/json", "{version:?}");
        assert!(!fields.contains_key("proxy-authenticate"), "{version:?}");
        let ids: Vec<_> = fields.get_all("x-request-id").iter().collect();
        assert_eq!(ids.len(), 1, "{version:?}: {ids:?}");
        assert_ne!(ids[0], "upstream-chosen", "{version:?}");
        let length = response.content_length();
        let body = response.bytes().await.unwrap();
        assert_eq!(length, Some(body.len() as u64), "{version:?}");
        // No token, no entry.
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }

    // A revocation crosses the TLS feed: after wait=propagated the gateway refuses.
    let reply = app
        .delete(&format!("/v1/tokens/{id}?wait=propagated"))
        .await;
    reply.assert_status(200);
    assert_eq!(reply.body["acknowledged"], 1, "{}", reply.body);
    for client in [&h2, &h1] {
        let (status, _, body) = get_with(client, &url, &jwt).await;
        assert_eq!(status, 401, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refuses_a_server_certificate_for_another_host_expired_or_from_an_unknown_ca() {
    let ca = TestCa::new("trusted");
    let serving = ca.issue("gateway", &["127.0.0.1"], Use::Server);
    let stranger = TestCa::new("stranger");
    let cases = [
        (
            "another host",
            ca.issue("other", &["other.example"], Use::Server),
            "not valid for name",
        ),
        (
            "expired",
            ca.issue_expired("old", &["127.0.0.1"], Use::Server),
            "expired",
        ),
        (
            "unknown CA",
            stranger.issue("stray", &["127.0.0.1"], Use::Server),
            "UnknownIssuer",
        ),
    ];
    for (what, leaf, reason) in cases {
        let app = TestApp::start_serving(&leaf).await;
        let config = gateway_config(&app, &ca, "lk_ak_unused", &serving, 9, "");
        let error = assemble(config).await.unwrap_err().to_string();
        assert!(
            error.contains("127.0.0.1"),
            "{what}: names the host: {error}"
        );
        let lower = error.to_lowercase();
        assert!(
            lower.contains(&reason.to_lowercase()) || lower.contains("unknown issuer"),
            "{what}: says why: {error}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reloads_its_certificate_and_keeps_the_old_one_when_the_new_is_bad() {
    let ca = TestCa::new("rotation");
    let app = TestApp::tls(&ca, |_| {}).await;
    let tls = app.tls.clone().unwrap();
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    let by_name = trusting_client(&ca, |b| {
        b.resolve("auth.test", format!("127.0.0.1:{port}").parse().unwrap())
    });
    let renamed = format!("https://auth.test:{port}/healthz");
    let error = by_name.get(&renamed).send().await.unwrap_err();
    assert!(
        error.is_connect(),
        "the first certificate is not for auth.test"
    );

    // A renewed certificate written over the files is served once reloaded.
    let renewed = ca.issue("renewed", &["auth.test"], Use::Server);
    let current = tls.current_certificate().unwrap();
    let (cert_file, key_file) = served_files(&ca);
    std::fs::copy(&renewed.cert_file, &cert_file).unwrap();
    std::fs::copy(&renewed.key_file, &key_file).unwrap();
    tls.reload().unwrap();
    assert_ne!(tls.current_certificate().unwrap(), current);
    let response = by_name.get(&renamed).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // A half-written file is refused, naming the setting; the renewed one stays.
    std::fs::write(&cert_file, "-----BEGIN CERTIFICATE-----\ngarbage").unwrap();
    let error = tls.reload().unwrap_err().to_string();
    assert!(error.starts_with("tls_cert_file "), "{error}");
    let response = by_name.get(&renamed).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "still served");
    // A key that does not belong to the certificate is refused too.
    std::fs::copy(&renewed.cert_file, &cert_file).unwrap();
    std::fs::copy(
        &ca.issue("stranger", &["x"], Use::Server).key_file,
        &key_file,
    )
    .unwrap();
    let error = tls.reload().unwrap_err().to_string();
    assert!(
        error.starts_with("tls_key_file ") && error.contains("does not match"),
        "{error}"
    );
    let response = by_name.get(&renamed).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "still served");
}

/// The files [`TestApp::tls`] serves from.
fn served_files(ca: &TestCa) -> (std::path::PathBuf, std::path::PathBuf) {
    (ca.dir().join("server.pem"), ca.dir().join("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_the_follower_endpoints_need_a_client_certificate() {
    let ca = TestCa::new("edge");
    let clients = TestCa::new("followers");
    let client_ca = clients.pem_file.clone();
    let app = TestApp::tls(&ca, |config: &mut Config| {
        config.public_url = Some(PUBLIC_ISSUER.to_owned());
        config.tls_client_ca_file = Some(client_ca);
    })
    .await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let credential = app.introspection_key().await;

    // Attack: the credential alone, without a certificate.
    let revocations = app.get("/v1/revocations").await;
    revocations.assert_problem(403, "client-certificate-required");
    let bearer = format!("Bearer {credential}");
    let introspected = app
        .form("/oauth/introspect", Some(&bearer), &[("token", "anything")])
        .await;
    introspected.assert_status(401);
    assert_eq!(
        introspected.body["error"], "invalid_client",
        "{}",
        introspected.body
    );
    app.post("/v1/usage", json!({ "records": [] }))
        .await
        .assert_problem(403, "client-certificate-required");
    // Control: the other endpoints need no certificate.
    app.get("/v1/tenants").await.assert_status(200);

    // A certificate from another CA fails the handshake itself.
    let strangers = TestCa::new("stranger");
    let stranger = strangers.issue("stray", &["gw"], Use::Client);
    let error = feed_as(&app, &ca, &stranger).await.unwrap_err();
    assert!(error.is_connect() || error.is_request(), "{error:?}");

    // With the followers' certificate the feed opens…
    let member = clients.issue("gateway-client", &["gateway"], Use::Client);
    let response = feed_as(&app, &ca, &member).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // …and a gateway presenting it follows the server and serves a token.
    let serving = ca.issue("gateway", &["127.0.0.1"], Use::Server);
    let extra = format!(
        "tls_client_cert_file = \"{}\"\ntls_client_key_file = \"{}\"",
        member.cert_file.display(),
        member.key_file.display()
    );
    let upstream = upstream().await;
    let (edge, replica) = start_gateway(gateway_config(
        &app,
        &ca,
        &credential,
        &serving,
        upstream,
        &extra,
    ))
    .await;
    assert!(!replica.is_stale());
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let h2 = trusting_client(&ca, |b| b.http2_prior_knowledge());
    let (status, _, seen) = get_with(&h2, &format!("{edge}/reports"), &jwt).await;
    assert_eq!(status, 200, "{seen}");
    let reply = app
        .delete(&format!("/v1/tokens/{id}?wait=propagated"))
        .await;
    assert_eq!(reply.body["acknowledged"], 1, "{}", reply.body);
}

/// Reads the revocation feed as root, presenting `certificate`.
async fn feed_as(
    app: &TestApp,
    ca: &TestCa,
    certificate: &Issued,
) -> reqwest::Result<reqwest::Response> {
    trusting_client(ca, |b| b.identity(identity(certificate)))
        .get(format!("{}/v1/revocations", app.base))
        .bearer_auth(&app.root_key)
        .send()
        .await
}

fn identity(issued: &Issued) -> reqwest::Identity {
    let mut pem = std::fs::read(&issued.cert_file).unwrap();
    pem.extend(std::fs::read(&issued.key_file).unwrap());
    reqwest::Identity::from_pem(&pem).unwrap()
}
