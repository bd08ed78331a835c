//! `trusted_proxies`: behind a reverse proxy the client's address comes from
//! `X-Forwarded-For`, and only then. The audit trail, token IP allowlists and the per-IP
//! throttle all see that address; from any other peer the header changes nothing.

use crate::helpers::{Reply, TestApp, encode};
use crate::{both_backends, both_backends_with};
use latchkey_core::cidr::IpNet;
use latchkey_server::Config;
use reqwest::Method;
use serde_json::{Value, json};

/// The tests reach the server from 127.0.0.1, which this configuration trusts.
fn behind_loopback_proxy(config: &mut Config) {
    config.trusted_proxies = vec![IpNet::parse("127.0.0.1/32").unwrap()];
}

/// A proxy is configured, but the tests' peer is not it.
fn behind_another_proxy(config: &mut Config) {
    config.trusted_proxies = vec![IpNet::parse("10.0.0.0/8").unwrap()];
}

/// Behind the loopback proxy, with a per-IP failure limit low enough to reach.
fn behind_loopback_proxy_with_low_ip_limit(config: &mut Config) {
    behind_loopback_proxy(config);
    config.ip_failures_per_minute = 2;
}

both_backends_with!(behind_loopback_proxy;
    a_trusted_proxy_forwards_the_client_address_to_the_audit_trail,
    a_client_cannot_forge_the_left_of_x_forwarded_for,
    ip_allowlists_check_the_forwarded_client_address,
);

both_backends_with!(behind_another_proxy;
    a_peer_outside_trusted_proxies_cannot_forward_an_address,
);

both_backends_with!(behind_loopback_proxy_with_low_ip_limit;
    the_per_ip_throttle_counts_forwarded_clients_apart,
);

both_backends!(without_trusted_proxies_x_forwarded_for_is_ignored);

const CLIENT: &str = "203.0.113.9";
const OTHER: &str = "198.51.100.7";
const ALLOWLIST: &str = "203.0.113.0/24";

/// Creates an api key in `acme` as root, sending `forwarded_for`.
async fn create_token_via(app: &TestApp, forwarded_for: &str) -> Reply {
    let request = app
        .request(Method::POST, "/v1/tenants/acme/tokens")
        .bearer_auth(&app.root_key)
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "name": "ci", "kind": "api_key" }));
    app.send(request).await
}

/// `GET /v1/tenants/acme` with `key`, sending `forwarded_for`.
async fn read_tenant_via(app: &TestApp, key: &str, forwarded_for: &str) -> Reply {
    let request = app
        .request(Method::GET, "/v1/tenants/acme")
        .bearer_auth(key)
        .header("x-forwarded-for", forwarded_for);
    app.send(request).await
}

/// Introspects `token` with `key`, sending `forwarded_for`.
async fn introspect_via(app: &TestApp, key: &str, token: &str, forwarded_for: &str) -> Reply {
    let request = app
        .request(Method::POST, "/oauth/introspect")
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", forwarded_for)
        .body(format!("token={}", encode(token)));
    app.send(request).await
}

#[track_caller]
fn assert_oauth_error(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    assert_eq!(reply.body["error"], error, "body: {}", reply.text);
    assert_eq!(reply.header("cache-control"), "no-store");
}

/// The stored `ip` of every event with `action` in tenant `acme`, oldest first.
async fn stored_ips(app: &TestApp, action: &str) -> Vec<Option<String>> {
    let db = app.db().await;
    let ips = sqlx::query_scalar(
        "SELECT ip FROM audit_events WHERE action = $1 AND tenant_id = 'acme' ORDER BY seq",
    )
    .bind(action.to_owned())
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    ips
}

/// The events with `action` (newest first) once there are `count`: authentications are
/// written by group commit, a moment after the answer.
async fn wait_for(app: &TestApp, action: &str, count: usize) -> Vec<Value> {
    let items = app.wait_for_audit(&format!("action={action}"), count).await;
    assert_eq!(items.len(), count, "{action}: {items:?}");
    items
}

async fn a_trusted_proxy_forwards_the_client_address_to_the_audit_trail(app: TestApp) {
    app.create_tenant("acme").await;
    create_token_via(&app, CLIENT).await.assert_status(201);
    assert_eq!(
        stored_ips(&app, "token.created").await,
        [Some(CLIENT.to_owned())]
    );
    let listed = app
        .get("/v1/audit?action=token.created&tenant_id=acme")
        .await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.body["items"][0]["ip"], CLIENT);
}

async fn a_client_cannot_forge_the_left_of_x_forwarded_for(app: TestApp) {
    app.create_tenant("acme").await;
    // The client sent `203.0.113.9` itself; the proxy appended the address it saw.
    create_token_via(&app, &format!("{CLIENT}, {OTHER}"))
        .await
        .assert_status(201);
    assert_eq!(
        stored_ips(&app, "token.created").await,
        [Some(OTHER.to_owned())]
    );
    // Garbage ends the walk: nothing left of it is believed.
    create_token_via(&app, &format!("{CLIENT}, not-an-address"))
        .await
        .assert_status(201);
    assert_eq!(
        stored_ips(&app, "token.created").await,
        [Some(OTHER.to_owned()), Some("127.0.0.1".to_owned())]
    );
}

async fn ip_allowlists_check_the_forwarded_client_address(app: TestApp) {
    app.create_tenant("acme").await;
    let (id, secret) = app
        .client("acme", json!({ "ip_allowlist": [ALLOWLIST] }))
        .await;
    let granted = app.exchange_via(&id, &secret, CLIENT).await;
    granted.assert_status(200);
    assert!(granted.body["access_token"].is_string());
    let refused = app.exchange_via(&id, &secret, OTHER).await;
    assert_oauth_error(&refused, 401, "invalid_client");
    // The same answer as any other refusal: an unknown client's.
    let unknown = app
        .exchange_via("00000000-0000-4000-8000-000000000000", &secret, CLIENT)
        .await;
    assert_eq!(refused.text, unknown.text);
    let exchanged = wait_for(&app, "token.exchanged", 1).await;
    assert_eq!(exchanged[0]["ip"], CLIENT);
    let failed = wait_for(&app, "auth.failed", 2).await;
    let refusal = failed
        .iter()
        .find(|event| event["details"]["reason"] == "ip_not_allowed")
        .unwrap();
    assert_eq!(refusal["ip"], OTHER);
    assert_eq!(refusal["target"], id);

    // An api key on the management API, and a gateway's key on introspection.
    let pinned = app
        .create_tenant_token(
            "acme",
            json!({ "name": "pinned", "kind": "api_key", "permissions": ["latchkey:manage"],
                    "ip_allowlist": [ALLOWLIST] }),
        )
        .await;
    let key = pinned["api_key"].as_str().unwrap();
    read_tenant_via(&app, key, CLIENT).await.assert_status(200);
    let refused = read_tenant_via(&app, key, OTHER).await;
    refused.assert_problem(401, "invalid-token");
    assert_eq!(
        refused.body["detail"],
        "credential not allowed from this address"
    );
    let gateway = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gateway", "kind": "api_key", "permissions": ["latchkey:introspect"],
                    "ip_allowlist": [ALLOWLIST] }),
        )
        .await;
    let gateway_key = gateway["api_key"].as_str().unwrap();
    let answer = introspect_via(&app, gateway_key, key, CLIENT).await;
    answer.assert_status(200);
    assert_eq!(answer.body["active"], true);
    let refused = introspect_via(&app, gateway_key, key, OTHER).await;
    assert_oauth_error(&refused, 401, "invalid_token");
}

async fn a_peer_outside_trusted_proxies_cannot_forward_an_address(app: TestApp) {
    assert_x_forwarded_for_is_ignored(&app).await;
}

async fn without_trusted_proxies_x_forwarded_for_is_ignored(app: TestApp) {
    assert_x_forwarded_for_is_ignored(&app).await;
}

/// The header names an address inside a token's allowlist, but the peer is not a
/// trusted proxy: the audit trail records the peer and the allowlist refuses it.
async fn assert_x_forwarded_for_is_ignored(app: &TestApp) {
    app.create_tenant("acme").await;
    create_token_via(app, CLIENT).await.assert_status(201);
    assert_eq!(
        stored_ips(app, "token.created").await,
        [Some("127.0.0.1".to_owned())]
    );
    let (id, secret) = app
        .client("acme", json!({ "ip_allowlist": [ALLOWLIST] }))
        .await;
    let refused = app.exchange_via(&id, &secret, CLIENT).await;
    assert_oauth_error(&refused, 401, "invalid_client");
    let failed = wait_for(app, "auth.failed", 1).await;
    assert_eq!(failed[0]["details"]["reason"], "ip_not_allowed");
    assert_eq!(failed[0]["ip"], "127.0.0.1");
    assert_eq!(wait_for(app, "token.exchanged", 0).await.len(), 0);
}

async fn the_per_ip_throttle_counts_forwarded_clients_apart(app: TestApp) {
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({})).await;
    let (other_id, other_secret) = app.client("acme", json!({})).await;
    // Two failures from OTHER, under two client ids: only the per-IP limit (2) is reached.
    assert_oauth_error(
        &app.exchange_via(&id, &other_secret, OTHER).await,
        401,
        "invalid_client",
    );
    assert_oauth_error(
        &app.exchange_via(&other_id, &secret, OTHER).await,
        401,
        "invalid_client",
    );
    let throttled = app.exchange_via(&id, &secret, OTHER).await;
    assert_oauth_error(&throttled, 429, "invalid_client");
    // The same proxy forwarding another client is not slowed.
    app.exchange_via(&id, &secret, CLIENT)
        .await
        .assert_status(200);
    let failed = wait_for(&app, "auth.failed", 3).await;
    assert!(
        failed.iter().all(|event| event["ip"] == OTHER),
        "{failed:?}"
    );
    assert_eq!(failed[0]["details"]["reason"], "throttled");
    assert_eq!(wait_for(&app, "token.exchanged", 1).await[0]["ip"], CLIENT);
}
