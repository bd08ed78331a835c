//! The whole path: a real server, a real gateway following its revocation feed, and an
//! upstream. Revocation reaches the gateway, usage reaches the server.

use crate::helpers::TestApp;
use axum::Json;
use axum::http::HeaderMap;
use axum::routing::get;
use latchkey_gateway::{GatewayConfig, assemble};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// An upstream that answers with the `x-latchkey-*` headers it received.
async fn upstream() -> u16 {
    async fn echo(headers: HeaderMap) -> Json<Value> {
        let seen: serde_json::Map<String, Value> = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-latchkey-"))
            .map(|(name, value)| (name.to_string(), json!(value.to_str().unwrap_or(""))))
            .collect();
        Json(Value::Object(seen))
    }
    let app = axum::Router::new()
        .route("/reports", get(echo).post(echo))
        .route("/public/ping", get(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

struct Edge {
    base: String,
    replica: latchkey_verify::RevocationReplica,
}

/// A gateway in front of `upstream`, following `server`'s feed.
async fn gateway(app: &TestApp, server: &str, upstream: u16, dead: u16) -> Edge {
    gateway_with(app, server, upstream, dead, "").await
}

/// [`gateway`] with more top-level settings (TOML lines).
async fn gateway_with(app: &TestApp, server: &str, upstream: u16, dead: u16, extra: &str) -> Edge {
    let credential = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gateway", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = GatewayConfig::from_toml(&format!(
        r#"
        listen = "127.0.0.1:0"
        server = "{server}"
        audience = "{audience}"
        credential = "{credential}"
        max_staleness_seconds = 30
        {extra}

        [[route]]
        prefix = "/reports"
        upstream = "http://127.0.0.1:{upstream}"
        scopes = {{ GET = ["reports:read"], POST = ["reports:write"] }}

        [[route]]
        prefix = "/public"
        upstream = "http://127.0.0.1:{upstream}"
        public = true

        [[route]]
        prefix = "/down"
        upstream = "http://127.0.0.1:{dead}"
        scopes = {{ "*" = [] }}
        "#,
        audience = server,
    ))
    .unwrap();
    let (gateway, replica) = assemble(config).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), replica.ready())
        .await
        .unwrap();
    // ready() means the snapshot is loaded; the live stream connects right after.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });
    Edge { base, replica }
}

/// For `count` fresh tokens of `admin`'s tenant acme, issued by `issuer`: the time from
/// the revoke call (through `admin`) returning to the gateway's first refusal, sorted.
async fn revocation_latencies(
    admin: &TestApp,
    issuer: &TestApp,
    edge: &Edge,
    count: usize,
) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(count);
    for _ in 0..count {
        let (id, secret) = admin.client("acme", json!({ "roles": ["viewer"] })).await;
        let granted = issuer.exchange(&id, &secret, &[]).await;
        let jwt = granted.body["access_token"].as_str().unwrap().to_owned();
        assert_eq!(
            call(&edge.base, "/reports", Some(&jwt), "127.0.0.1")
                .await
                .0,
            200
        );
        admin
            .delete(&format!("/v1/tokens/{id}"))
            .await
            .assert_status(204);
        let returned = Instant::now();
        while call(&edge.base, "/reports", Some(&jwt), "127.0.0.1")
            .await
            .0
            != 401
        {
            assert!(
                returned.elapsed() < Duration::from_secs(5),
                "refused within 5 s"
            );
        }
        latencies.push(returned.elapsed());
    }
    latencies.sort();
    latencies
}

fn report(what: &str, latencies: &[Duration]) {
    eprintln!(
        "{what}: p50 {:?}, max {:?} over {}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len()
    );
}

fn closed_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

async fn call(base: &str, path: &str, bearer: Option<&str>, from: &str) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut request = client
        .get(format!("{base}{path}"))
        .header("x-latchkey-tenant", "spoofed");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forwards_identity_and_refuses_a_revoked_token_at_once() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let edge = gateway(&app, &app.base, upstream, closed_port()).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, seen) = call(&edge.base, "/reports", Some(&jwt), "127.0.0.1").await;
    assert_eq!(status, 200);
    assert_eq!(
        seen["x-latchkey-tenant"], "acme",
        "the spoofed header was replaced"
    );
    assert_eq!(seen["x-latchkey-token-id"], id);
    assert_eq!(seen["x-latchkey-scopes"], "reports:read");
    let (status, _) = call(&edge.base, "/reports", None, "127.0.0.1").await;
    assert_eq!(status, 401);
    let (status, seen) = call(&edge.base, "/public/ping", None, "127.0.0.1").await;
    assert_eq!(status, 200);
    assert!(
        seen.get("x-latchkey-tenant").is_none(),
        "spoofed headers never reach the upstream"
    );
    let (status, _) = call(&edge.base, "/down/x", Some(&jwt), "127.0.0.1").await;
    assert_eq!(status, 502);

    // Revocation with wait=propagated: when it returns, the gateway already refuses.
    let reply = app
        .delete(&format!("/v1/tokens/{id}?wait=propagated"))
        .await;
    reply.assert_status(200);
    assert_eq!(reply.body["connected"], 1);
    assert_eq!(reply.body["acknowledged"], 1);
    let (status, _) = call(&edge.base, "/reports", Some(&jwt), "127.0.0.1").await;
    assert_eq!(status, 401, "no window after wait=propagated");

    // Without wait: the first refusal follows within milliseconds.
    let latencies = revocation_latencies(&app, &app, &edge, 20).await;
    report(
        "revoke returned -> first refusal at the gateway",
        &latencies,
    );
    assert!(edge.replica.last_seq() >= 21);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_through_the_gateway_reaches_the_token_split_by_address_and_route() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let edge = gateway(&app, &app.base, upstream, closed_port()).await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    let key = created["api_key"].as_str().unwrap();
    let id = created["token"]["id"].as_str().unwrap();
    for _ in 0..7 {
        assert_eq!(
            call(&edge.base, "/reports", Some(key), "127.0.0.1").await.0,
            200
        );
    }
    for _ in 0..5 {
        assert_eq!(
            call(&edge.base, "/reports", Some(key), "127.0.0.2").await.0,
            200
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let usage = loop {
        let usage = app
            .get(&format!("/v1/tokens/{id}/usage?group_by=ip"))
            .await
            .body;
        if usage["total"] == 12 {
            break usage;
        }
        assert!(
            Instant::now() < deadline,
            "usage arrives within 10 s: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let totals: Vec<(&str, i64)> = usage["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap(), g["total"].as_i64().unwrap()))
        .collect();
    assert_eq!(totals, [("127.0.0.1", 7), ("127.0.0.2", 5)]);
    let by_route = app
        .get(&format!("/v1/tokens/{id}/usage?group_by=route"))
        .await
        .body;
    assert_eq!(by_route["groups"][0]["key"], "/reports");
    assert_eq!(by_route["groups"][0]["total"], 12);
    let token = app.get(&format!("/v1/tokens/{id}")).await.body;
    assert!(token["last_used_at"].is_string());
    assert!(["127.0.0.1", "127.0.0.2"].contains(&token["last_used_ip"].as_str().unwrap()));
    let first_seen = app
        .get(&format!(
            "/v1/audit?action=token.first_seen_ip&token_id={id}"
        ))
        .await
        .body;
    assert_eq!(
        first_seen["items"].as_array().unwrap().len(),
        2,
        "one per address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_replica_a_is_refused_by_a_gateway_following_replica_b() {
    let Some(a) = TestApp::postgres().await else {
        return;
    };
    let b = a.replica(|_| {}).await;
    a.seed_catalogue().await;
    a.create_tenant("acme").await;
    let upstream = upstream().await;
    let edge = gateway(&a, &b.base, upstream, closed_port()).await;
    // Issued by B (whose URL is the issuer the gateway knows), revoked through A.
    let latencies = revocation_latencies(&a, &b, &edge, 20).await;
    report(
        "revoke on replica A -> refusal at a gateway following replica B",
        &latencies,
    );
    assert!(latencies[latencies.len() / 2] < Duration::from_millis(500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_enforces_an_api_keys_ip_allowlist_against_its_client() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let edge = gateway(&app, &app.base, upstream, closed_port()).await;
    let key = |allow: &'static str| {
        let app = &app;
        async move {
            let created = app
                .create_tenant_token(
                    "acme",
                    json!({ "name": allow, "kind": "api_key", "roles": ["viewer"], "ip_allowlist": [allow] }),
                )
                .await;
            created["api_key"].as_str().unwrap().to_owned()
        }
    };
    let elsewhere = key("10.0.0.0/8").await;
    let loopback = key("127.0.0.2/32").await;
    // Introspection leaves the allowlist to a caller holding latchkey:introspect that
    // names no client_ip: the gateway judges the client it sees.
    let introspector = app.introspection_key().await;
    assert_eq!(
        app.introspect_as(&introspector, &elsewhere, &[]).await["ip_allowlist"],
        json!(["10.0.0.0/8"])
    );
    assert_eq!(
        call(&edge.base, "/reports", Some(&elsewhere), "127.0.0.1")
            .await
            .0,
        401
    );
    assert_eq!(
        call(&edge.base, "/reports", Some(&loopback), "127.0.0.1")
            .await
            .0,
        401
    );
    assert_eq!(
        call(&edge.base, "/reports", Some(&loopback), "127.0.0.2")
            .await
            .0,
        200
    );
}

/// Polls `through` the gateway until the upstream sees exactly `scopes` for `bearer`.
async fn until_scopes(edge: &Edge, bearer: &str, scopes: &str) -> Duration {
    let started = std::time::Instant::now();
    loop {
        let (status, seen) = call(&edge.base, "/reports", Some(bearer), "127.0.0.1").await;
        if status == 200 && seen["x-latchkey-scopes"] == scopes {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the gateway still shows {seen} ({status}), not {scopes}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_narrows_a_long_lived_jwt_and_an_api_key_with_their_roles_and_user() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
    let upstream = upstream().await;
    let edge = gateway(&app, &app.base, upstream, closed_port()).await;
    let personal = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "laptop", "kind": "jwt", "permissions": ["reports:read", "reports:write"] }),
        )
        .await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "api_key", "roles": ["editor"] }),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for bearer in [&personal, &key] {
        until_scopes(&edge, bearer, "reports:read reports:write").await;
    }

    // The user is moved to a read-only role: the personal JWT stops writing.
    app.put_member("acme", "u_42", &["viewer"]).await;
    let waited = until_scopes(&edge, &personal, "reports:read").await;
    eprintln!("member change reached the gateway in {waited:?}");
    let client = reqwest::Client::new();
    let write = |bearer: &str| {
        client
            .post(format!("{}/reports", edge.base))
            .bearer_auth(bearer)
            .send()
    };
    assert_eq!(write(&personal).await.unwrap().status(), 403);
    assert_eq!(write(&key).await.unwrap().status(), 200, "control");

    // The role loses write: the api key stops writing too.
    app.put(
        "/v1/roles/editor",
        json!({ "permissions": ["reports:read"] }),
    )
    .await
    .assert_status(200);
    until_scopes(&edge, &key, "reports:read").await;
    assert_eq!(write(&key).await.unwrap().status(), 403);
    assert_eq!(
        call(&edge.base, "/reports", Some(&key), "127.0.0.1")
            .await
            .0,
        200,
        "control: reading still works"
    );

    // The membership ends: the personal token is refused outright.
    app.delete("/v1/tenants/acme/users/u_42")
        .await
        .assert_status(204);
    let started = std::time::Instant::now();
    while call(&edge.base, "/reports", Some(&personal), "127.0.0.1")
        .await
        .0
        != 401
    {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_enforces_a_long_lived_jwts_ip_allowlist_against_its_client() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let edge = gateway(&app, &app.base, upstream, closed_port()).await;
    let jwt = app
        .create_tenant_token(
            "acme",
            json!({ "name": "pinned", "kind": "jwt", "roles": ["viewer"], "ip_allowlist": ["127.0.0.2/32"] }),
        )
        .await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&edge.base, "/reports", Some(&jwt), "127.0.0.1")
            .await
            .0,
        401,
        "the attack: the review got 200 here"
    );
    assert_eq!(
        call(&edge.base, "/reports", Some(&jwt), "127.0.0.2")
            .await
            .0,
        200,
        "control"
    );
}

/// Waits until the gateway at `base` answers `status` to `bearer` from `from`, within
/// the 5 s the revocation tests hold a gateway to.
async fn until_status(base: &str, bearer: &str, from: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(base, "/reports", Some(bearer), from).await.0 != status {
        assert!(
            Instant::now() < deadline,
            "the gateway did not answer {status} from {from}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A tenant's network rules reach a running gateway through the feed (docs/API.md,
/// "Where tokens may be used from"): a long-lived JWT and an api key are refused from a
/// denied address within the propagation bound, and let in again once the rule goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_network_rule_change_reaches_a_running_gateway() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let edge = gateway(&app, &app.base, upstream, closed_port()).await;
    let jwt = app
        .create_tenant_token(
            "acme",
            json!({ "name": "edge", "kind": "jwt", "roles": ["viewer"] }),
        )
        .await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = app
        .create_tenant_token(
            "acme",
            json!({ "name": "edge key", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for bearer in [&jwt, &key] {
        assert_eq!(
            call(&edge.base, "/reports", Some(bearer), "127.0.0.2")
                .await
                .0,
            200
        );
    }
    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "deny": ["127.0.0.2/32"] } }),
    )
    .await
    .assert_status(200);
    until_status(&edge.base, &jwt, "127.0.0.2", 401).await;
    until_status(&edge.base, &key, "127.0.0.2", 401).await;
    for bearer in [&jwt, &key] {
        assert_eq!(
            call(&edge.base, "/reports", Some(bearer), "127.0.0.1")
                .await
                .0,
            200,
            "control: an address the rule does not deny"
        );
    }
    app.put("/v1/tenants/acme/policy", json!({}))
        .await
        .assert_status(200);
    until_status(&edge.base, &jwt, "127.0.0.2", 200).await;
    until_status(&edge.base, &key, "127.0.0.2", 200).await;
}

/// Country rules at the gateway, with the operator's GeoIP database (here one the test
/// writes: 127.0.0.2 is in Germany, 127.0.0.1 in the United States): a denied country
/// is refused, another passes, and a gateway without a database refuses the tenant's
/// tokens altogether (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_judges_a_tenants_country_rules_with_its_geoip_database() {
    let dir = tempfile::tempdir().unwrap();
    let countries = dir.path().join("countries.mmdb");
    latchkey_geoip::test_mmdb::write_country_db(
        &countries,
        &[("127.0.0.2/32", "DE"), ("127.0.0.1/32", "US")],
        6,
        latchkey_geoip::test_mmdb::Layout::IsoCode,
    );
    let path = countries.clone();
    let app = TestApp::sqlite_with(move |config| config.geoip_database_file = Some(path)).await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let extra = format!("geoip_database_file = {:?}", countries.to_str().unwrap());
    let edge = gateway_with(&app, &app.base, upstream, closed_port(), &extra).await;
    let blind = gateway(&app, &app.base, upstream, closed_port()).await;
    let jwt = app
        .create_tenant_token(
            "acme",
            json!({ "name": "edge", "kind": "jwt", "roles": ["viewer"] }),
        )
        .await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(&edge.base, "/reports", Some(&jwt), "127.0.0.2")
            .await
            .0,
        200
    );
    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "deny_countries": ["DE"] } }),
    )
    .await
    .assert_status(200);
    until_status(&edge.base, &jwt, "127.0.0.2", 401).await;
    assert_eq!(
        call(&edge.base, "/reports", Some(&jwt), "127.0.0.1")
            .await
            .0,
        200,
        "control: the United States are not denied"
    );
    // Without a database, a gateway cannot tell: it refuses (fail closed).
    until_status(&blind.base, &jwt, "127.0.0.1", 401).await;
}

/// The deployment of docs/DEPLOYMENT.md: the server's public URL is https (a TLS proxy
/// in front), and a gateway on the same machine reaches it on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reaching_the_server_on_loopback_accepts_tokens_of_its_https_public_url() {
    let public = "https://auth.example.com";
    let app = TestApp::sqlite_with(|c| c.public_url = Some(public.to_owned())).await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let upstream = upstream().await;
    let credential = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gateway", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let config = |issuer: &str| {
        GatewayConfig::from_toml(&format!(
            r#"
            listen = "127.0.0.1:0"
            server = "{server}"
            {issuer}
            credential = "{credential}"

            [[route]]
            prefix = "/reports"
            upstream = "http://127.0.0.1:{upstream}"
            scopes = {{ GET = ["reports:read"] }}
            "#,
            server = app.base,
        ))
        .unwrap()
    };

    // Without `issuer`, the server's own address is taken for the issuer, and the
    // metadata names another: refused, saying which setting to fix.
    let error = assemble(config("")).await.unwrap_err().to_string();
    assert!(error.contains(public), "{error}");
    assert!(error.contains("set issuer"), "{error}");

    let (gateway, replica) = assemble(config(&format!("issuer = \"{public}\"")))
        .await
        .unwrap();
    assert_eq!(gateway.verifier().issuer(), public);
    assert_eq!(gateway.verifier().audience(), public);
    tokio::time::timeout(Duration::from_secs(10), replica.ready())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { gateway.serve(listener, std::future::pending()).await });

    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, seen) = call(&base, "/reports", Some(&jwt), "127.0.0.1").await;
    assert_eq!(status, 200);
    assert_eq!(seen["x-latchkey-token-id"], id);

    // The revocation feed, reached at `server`, still reaches the gateway.
    app.delete(&format!("/v1/tokens/{id}?wait=propagated"))
        .await
        .assert_status(200);
    let (status, _) = call(&base, "/reports", Some(&jwt), "127.0.0.1").await;
    assert_eq!(status, 401);
}
