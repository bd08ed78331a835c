//! A tenant's network rules (docs/API.md, "Where tokens may be used from"): a denied or
//! unlisted address is refused at exchange, on the management API and at
//! introspection, an allowed one passes, a change applies at once, a forged
//! `X-Forwarded-For` from an untrusted peer changes nothing, and rules that are
//! malformed or allow nothing are refused without a change.

use crate::both_backends_with;
use crate::helpers::{Reply, TestApp, basic, encode};
use latchkey_core::cidr::IpNet;
use latchkey_server::Config;
use reqwest::Method;
use serde_json::{Value, json};

/// The tests reach the server from 127.0.0.1, which this configuration trusts, and
/// name the client's address in `X-Forwarded-For`.
fn behind_loopback_proxy(config: &mut Config) {
    config.trusted_proxies = vec![IpNet::parse("127.0.0.1/32").unwrap()];
}

both_backends_with!(behind_loopback_proxy;
    denied_and_unlisted_addresses_are_refused_everywhere_the_server_verifies,
    a_rule_change_applies_at_once_and_bad_rules_change_nothing,
    a_forged_forwarded_address_from_an_untrusted_peer_changes_nothing,
);

both_backends_with!(behind_loopback_proxy_with_countries;
    countries_are_judged_with_the_operators_database,
    a_first_use_from_a_new_country_is_an_event_once_and_usage_groups_by_country,
);

/// Behind the loopback proxy, with a country database made here: 203.0.113.0/24 is in
/// Germany, 198.51.100.0/24 in the United States, and nothing else is known.
fn behind_loopback_proxy_with_countries(config: &mut Config) {
    behind_loopback_proxy(config);
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("countries.mmdb");
    latchkey_geoip::test_mmdb::write_country_db(
        &path,
        &[("203.0.113.0/24", "DE"), ("198.51.100.0/24", "US")],
        6,
        latchkey_geoip::test_mmdb::Layout::IsoCode,
    );
    config.geoip_database_file = Some(path);
}

const ALLOWED: &str = "203.0.113.9";
const DENIED: &str = "203.0.113.200";
const UNLISTED: &str = "198.51.100.7";

fn rules() -> Value {
    json!({ "network": { "allow": ["203.0.113.0/24"], "deny": ["203.0.113.128/25"] } })
}

async fn read_tenant_via(app: &TestApp, key: &str, client: &str) -> Reply {
    let request = app
        .request(Method::GET, "/v1/tenants/acme")
        .bearer_auth(key)
        .header("x-forwarded-for", client);
    app.send(request).await
}

/// Introspects `token` as `key`, the caller at `caller`, with an optional `client_ip`.
async fn introspect_via(
    app: &TestApp,
    key: &str,
    token: &str,
    caller: &str,
    client_ip: Option<&str>,
) -> bool {
    let mut body = format!("token={}", encode(token));
    if let Some(ip) = client_ip {
        body.push_str(&format!("&client_ip={ip}"));
    }
    let request = app
        .request(Method::POST, "/oauth/introspect")
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", caller)
        .body(body);
    let reply = app.send(request).await;
    reply.assert_status(200);
    reply.body["active"].as_bool().unwrap()
}

async fn acme_with_rules(app: &TestApp) -> (String, String, String) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let manager = app.manager_key("acme").await;
    let reply = app.put("/v1/tenants/acme/policy", rules()).await;
    reply.assert_status(200);
    let network = &reply.body["policy"]["network"];
    assert_eq!(network["allow"], rules()["network"]["allow"]);
    assert_eq!(network["deny"], rules()["network"]["deny"]);
    assert_eq!(network["allow_countries"], Value::Null);
    assert_eq!(network["deny_countries"], json!([]));
    (id, secret, manager)
}

async fn denied_and_unlisted_addresses_are_refused_everywhere_the_server_verifies(app: TestApp) {
    let (id, secret, manager) = acme_with_rules(&app).await;
    // The exchange.
    let granted = app.exchange_via(&id, &secret, ALLOWED).await;
    granted.assert_status(200);
    let jwt = granted.body["access_token"].as_str().unwrap().to_owned();
    for refused in [DENIED, UNLISTED] {
        let reply = app.exchange_via(&id, &secret, refused).await;
        assert_eq!(reply.status, 401, "{refused}: {}", reply.text);
        assert_eq!(reply.body["error"], "invalid_client");
    }
    let failures = app
        .wait_for_audit("action=auth.failed&tenant_id=acme", 2)
        .await;
    for failure in &failures {
        assert_eq!(failure["details"]["reason"], "network_not_allowed");
    }
    assert_eq!(failures[0]["ip"], UNLISTED);
    assert_eq!(failures[1]["ip"], DENIED);

    // The management API, with an api key of the tenant.
    read_tenant_via(&app, &manager, ALLOWED)
        .await
        .assert_status(200);
    for refused in [DENIED, UNLISTED] {
        let reply = read_tenant_via(&app, &manager, refused).await;
        reply.assert_problem(401, "invalid-token");
        // The client is not told which rule refused it.
        assert_eq!(
            reply.body["detail"],
            "credential not allowed from this address"
        );
    }

    // Introspection judges `client_ip`, or else the caller's own address.
    let gateway = app.introspection_key().await;
    assert!(introspect_via(&app, &gateway, &jwt, UNLISTED, Some(ALLOWED)).await);
    assert!(!introspect_via(&app, &gateway, &jwt, ALLOWED, Some(DENIED)).await);
    assert!(!introspect_via(&app, &gateway, &jwt, ALLOWED, Some(UNLISTED)).await);
    assert!(introspect_via(&app, &gateway, &jwt, ALLOWED, None).await);
    assert!(!introspect_via(&app, &gateway, &jwt, UNLISTED, None).await);

    // The control: another tenant's tokens are not bound by acme's rules.
    app.create_tenant("globex").await;
    let (other_id, other_secret) = app.client("globex", json!({})).await;
    app.exchange_via(&other_id, &other_secret, UNLISTED)
        .await
        .assert_status(200);
}

async fn a_rule_change_applies_at_once_and_bad_rules_change_nothing(app: TestApp) {
    let (id, secret, _) = acme_with_rules(&app).await;
    let set = app.get("/v1/tenants/acme/policy").await.body;
    for (body, status, code, field) in [
        (
            json!({ "network": { "allow": ["203.0.113.0/33"] } }),
            400,
            "invalid-field",
            "network.allow[0]",
        ),
        (
            json!({ "network": { "deny": ["10.0.0.1/8"] } }),
            400,
            "invalid-field",
            "network.deny[0]",
        ),
        (
            json!({ "network": { "allow": "10.0.0.0/8" } }),
            400,
            "invalid-field",
            "network.allow",
        ),
        (
            json!({ "network": { "allow": [] } }),
            422,
            "invalid-value",
            "network.allow",
        ),
        (
            json!({ "network": { "allow": ["10.1.0.0/16"], "deny": ["10.0.0.0/8"] } }),
            422,
            "invalid-value",
            "network.deny",
        ),
        (
            json!({ "network": { "allowed": ["10.0.0.0/8"] } }),
            400,
            "invalid-field",
            "network.allowed",
        ),
        (
            json!({ "network": { "deny_countries": ["XX"] } }),
            400,
            "invalid-field",
            "network.deny_countries[0]",
        ),
        (
            json!({ "network": { "allow_countries": ["de"] } }),
            400,
            "invalid-field",
            "network.allow_countries[0]",
        ),
        // A well-formed country rule on a server without a GeoIP database.
        (
            json!({ "network": { "deny_countries": ["DE"] } }),
            422,
            "invalid-value",
            "network.deny_countries",
        ),
        (
            json!({ "network": { "allow_countries": ["US"] } }),
            422,
            "invalid-value",
            "network.allow_countries",
        ),
    ] {
        let reply = app.put("/v1/tenants/acme/policy", body.clone()).await;
        reply.assert_problem(status, code);
        assert_eq!(reply.body["field"], field, "{body}");
    }
    let unchanged = app.get("/v1/tenants/acme/policy").await.body;
    assert_eq!(unchanged, set);
    app.exchange_via(&id, &secret, UNLISTED)
        .await
        .assert_status(401);

    // Lifting the rules lets the same client in at once, and setting them again shuts
    // it out at once: cached tokens carry their tenant's rules and are dropped.
    app.put("/v1/tenants/acme/policy", json!({}))
        .await
        .assert_status(200);
    app.exchange_via(&id, &secret, UNLISTED)
        .await
        .assert_status(200);
    app.put("/v1/tenants/acme/policy", rules())
        .await
        .assert_status(200);
    app.exchange_via(&id, &secret, UNLISTED)
        .await
        .assert_status(401);
}

async fn a_forged_forwarded_address_from_an_untrusted_peer_changes_nothing(app: TestApp) {
    let (id, secret, _) = acme_with_rules(&app).await;
    // 127.0.0.2 is not a trusted proxy: what it says of the client is ignored, and it
    // is itself the client, which the rules do not allow.
    let untrusted = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let forged = untrusted
        .post(format!("{}/oauth/token", app.base))
        .header("authorization", basic(&id, &secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", ALLOWED)
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let failure = app
        .wait_for_audit("action=auth.failed&tenant_id=acme", 1)
        .await;
    assert_eq!(failure[0]["ip"], "127.0.0.2");
    assert_eq!(failure[0]["details"]["reason"], "network_not_allowed");
    // The control: through the trusted proxy, the same address is allowed.
    app.exchange_via(&id, &secret, ALLOWED)
        .await
        .assert_status(200);
}

async fn countries_are_judged_with_the_operators_database(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    const GERMANY: &str = "203.0.113.9";
    const STATES: &str = "198.51.100.7";
    const NOWHERE: &str = "192.0.2.1";

    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "deny_countries": ["DE"] } }),
    )
    .await
    .assert_status(200);
    let granted = app.exchange_via(&id, &secret, STATES).await;
    granted.assert_status(200);
    let jwt = granted.body["access_token"].as_str().unwrap().to_owned();
    // An address the database does not know matches no country: a deny list lets it in.
    app.exchange_via(&id, &secret, NOWHERE)
        .await
        .assert_status(200);
    let refused = app.exchange_via(&id, &secret, GERMANY).await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.body["error"], "invalid_client");
    let failure = app
        .wait_for_audit("action=auth.failed&tenant_id=acme", 1)
        .await;
    assert_eq!(failure[0]["details"]["reason"], "country_not_allowed");
    assert_eq!(failure[0]["ip"], GERMANY);
    let gateway = app.introspection_key().await;
    assert!(introspect_via(&app, &gateway, &jwt, STATES, Some(STATES)).await);
    assert!(!introspect_via(&app, &gateway, &jwt, STATES, Some(GERMANY)).await);

    // An allow list refuses what the database does not know.
    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "allow_countries": ["US"] } }),
    )
    .await
    .assert_status(200);
    app.exchange_via(&id, &secret, STATES)
        .await
        .assert_status(200);
    for refused in [GERMANY, NOWHERE] {
        let reply = app.exchange_via(&id, &secret, refused).await;
        assert_eq!(reply.status, 401, "{refused}: {}", reply.text);
    }
    // Networks and countries together: both must pass.
    app.put(
        "/v1/tenants/acme/policy",
        json!({ "network": { "deny": ["198.51.100.0/25"], "allow_countries": ["US"] } }),
    )
    .await
    .assert_status(200);
    app.exchange_via(&id, &secret, STATES)
        .await
        .assert_status(401);
    app.exchange_via(&id, &secret, "198.51.100.200")
        .await
        .assert_status(200);
}

async fn a_first_use_from_a_new_country_is_an_event_once_and_usage_groups_by_country(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap().to_owned();
    let gateway = app.introspection_key().await;
    // A minute the server keeps and its clock has reached.
    let now = app.now().millis();
    let minute = latchkey_core::Timestamp::from_millis(now - 3_600_000 - (now % 60_000));
    let at = |seconds: i64| minute.plus_seconds(seconds).to_rfc3339();
    let batch = |entries: Vec<(&str, i64)>| {
        let entries: Vec<Value> = entries
            .into_iter()
            .map(|(ip, seconds)| {
                json!({ "token_id": token, "route": "/reports", "method": "GET",
                        "status_class": "2xx", "client_ip": ip, "count": 2,
                        "last_used_at": at(seconds) })
            })
            .collect();
        json!({ "window_start": at(0), "entries": entries })
    };
    let send = |body: Value| app.call(Method::POST, "/v1/usage", Some(&gateway), Some(body));
    // Two addresses in Germany, one in the United States, one the database does not know.
    send(batch(vec![
        ("203.0.113.9", 10),
        ("203.0.113.10", 20),
        ("198.51.100.7", 30),
        ("192.0.2.1", 40),
    ]))
    .await
    .assert_status(202);
    let events = app
        .wait_for_audit(
            &format!("action=token.first_seen_country&token_id={token}"),
            2,
        )
        .await;
    let mut countries: Vec<&str> = events
        .iter()
        .map(|event| event["details"]["country"].as_str().unwrap())
        .collect();
    countries.sort();
    assert_eq!(countries, ["DE", "US"]);
    let germany = events
        .iter()
        .find(|event| event["details"]["country"] == "DE")
        .unwrap();
    assert_eq!(germany["details"]["ip"], "203.0.113.9");
    assert_eq!(germany["details"]["token_id"], token.as_str());

    // Germany again, from a third address: no second event.
    send(batch(vec![("203.0.113.11", 50)]))
        .await
        .assert_status(202);
    assert_eq!(app.audit_count("token.first_seen_country").await, 2);

    let usage = app
        .get(&format!(
            "/v1/tokens/{token}/usage?group_by=country&since={}",
            at(-60)
        ))
        .await;
    usage.assert_status(200);
    let totals: Vec<(String, i64)> = usage.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| {
            (
                group["key"].as_str().unwrap().to_owned(),
                group["total"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("DE".to_owned(), 6),
            ("US".to_owned(), 2),
            ("unknown".to_owned(), 2)
        ]
    );
}
