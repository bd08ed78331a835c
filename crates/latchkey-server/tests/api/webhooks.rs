//! Webhooks (docs/API.md, "Webhooks"): signed deliveries from the outbox, retried in
//! order, surviving a restart, sent once across replicas, scoped to a manager's tenant,
//! and the targets a webhook may not reach.

use crate::helpers::TestApp;
use crate::{both_backends, both_backends_with};
use aws_lc_rs::hmac;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::clock::ManualClock;
use latchkey_server::{Application, Config};
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Receivers run on loopback, so these servers allow private targets; deliveries are
/// looked for every 50 ms.
fn private_allowed(config: &mut Config) {
    config.webhook_allow_private_targets = true;
    config.webhook_poll_interval_ms = 50;
}

both_backends_with!(
    private_allowed;
    a_created_token_is_delivered_signed_and_carries_no_secret,
    a_failing_receiver_gets_the_events_after_retries_in_order,
    a_tenant_managers_webhook_sees_only_its_tenants_events,
    repeated_failures_disable_the_endpoint_and_say_why,
    deleting_a_webhook_removes_its_deliveries,
    an_expiring_token_is_announced_a_week_and_a_day_ahead_once_each,
    a_ping_and_a_redelivery_are_sent_on_request_and_enable_the_webhook,
    a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends,
    a_token_first_seen_from_an_address_is_delivered_from_usage_ingest,
    a_redirect_is_not_followed_and_fails_the_attempt,
);

/// Rounds two seconds apart: a backlog must drain within one.
fn slow_rounds(config: &mut Config) {
    config.webhook_allow_private_targets = true;
    config.webhook_poll_interval_ms = 2000;
}

both_backends_with!(
    slow_rounds;
    a_backlog_drains_within_one_round,
);

both_backends!(
    bad_webhooks_are_refused_and_change_nothing,
    a_name_resolving_to_loopback_is_refused_at_delivery,
);

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook receiver on loopback that answers 500 to its first `fail_first` requests
/// and 204 after.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    fail_next: Arc<AtomicUsize>,
}

async fn record(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    receiver.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
    });
    let failing = receiver
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

impl Receiver {
    async fn start(fail_first: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            url: format!("http://{}/hook", listener.local_addr().unwrap()),
            got: Arc::default(),
            fail_next: Arc::new(AtomicUsize::new(fail_first)),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(record))
            .with_state(receiver.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        receiver
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// The requests once there are at least `count`; fails after 10 s.
    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.got();
            if got.len() >= count {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} requests within 10 s; got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// True when one of the request's signatures is the HMAC computed here from the shown
/// secret.
fn verifies(received: &Received, secret: &str) -> bool {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .unwrap();
    assert_eq!(key.len(), 32);
    let signed = format!("{}.{}.{}", received.id, received.timestamp, received.body);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), signed.as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(tag.as_ref()));
    received.signature.split(' ').any(|value| value == expected)
}

/// Checks a request's signature with an HMAC computed here, from the shown secret.
#[track_caller]
fn assert_signed(received: &Received, secret: &str) {
    assert!(
        verifies(received, secret),
        "signature {} is not by {secret}",
        received.signature
    );
    assert!(received.timestamp.parse::<i64>().is_ok());
}

/// Creates a webhook as `key` and returns the create response.
async fn create_webhook(app: &TestApp, key: &str, body: Value) -> Value {
    let reply = app
        .call(Method::POST, "/v1/webhooks", Some(key), Some(body))
        .await;
    reply.assert_status(201);
    reply.body
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    reply.assert_status(200);
    reply.body["items"].as_array().unwrap().clone()
}

/// The deliveries once `done` holds of them: an attempt is recorded a moment after the
/// receiver has answered it. Fails after 10 s.
async fn wait_for_deliveries(
    app: &TestApp,
    id: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let items = deliveries(app, id).await;
        if done(&items) {
            return items;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries as expected within 10 s: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_delivered(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|d| d["status"] == "delivered")
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let db = app.db().await;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&db).await.unwrap();
    db.close().await;
    n
}

async fn a_created_token_is_delivered_signed_and_carries_no_secret(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(0).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created"], "tenant_id": "acme" }),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let hook = &created["webhook"];
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    assert_eq!(hook["tenant_id"], "acme");
    assert_eq!(hook["events"], json!(["token.created"]));
    assert_eq!(hook["url"], receiver.url);
    assert!(hook.get("secret").is_none());

    let token = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "client_credentials" }),
        )
        .await;
    let token_id = token["token"]["id"].as_str().unwrap();
    let client_secret = token["client_secret"].as_str().unwrap();
    let got = receiver.wait_for(1).await;
    let delivery = &got[0];
    assert_signed(delivery, &secret);
    assert!(delivery.id.starts_with("evt_"));
    let body = delivery.json();
    assert_eq!(body["type"], "token.created");
    assert!(body["timestamp"].is_string());
    assert_eq!(body["data"]["token_id"], token_id);
    assert_eq!(body["data"]["tenant_id"], "acme");
    assert_eq!(body["data"]["details"]["name"], "ci");
    assert!(!delivery.body.contains(client_secret));
    assert!(!delivery.body.contains(&secret));

    // An exchange writes `token.exchanged`, which no webhook receives: no outbox row.
    app.exchange(token["client_id"].as_str().unwrap(), client_secret, &[])
        .await
        .assert_status(200);
    let items = wait_for_deliveries(&app, &hook_id, all_delivered).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], delivery.id);
    assert_eq!(items[0]["event"], "token.created");
    assert_eq!(items[0]["payload"], body);
    let attempts = items[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status_code"], 204);
    assert_eq!(attempts[0]["error"], Value::Null);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_deliveries").await,
        1
    );

    // Reads never show the secret; the database holds it sealed, not as text or bytes.
    let listed = app.get("/v1/webhooks").await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"][0]["id"], hook_id.as_str());
    assert!(!listed.text.contains(&secret));
    let shown = app.get(&format!("/v1/webhooks/{hook_id}")).await;
    shown.assert_status(200);
    assert!(!shown.text.contains(&secret[6..]));
    let db = app.db().await;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret_sealed FROM webhooks")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    let raw = STANDARD.decode(&secret[6..]).unwrap();
    assert!(!sealed.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert!(!sealed.windows(6).any(|w| w == b"whsec_"));
    assert_eq!(app.audit_count("webhook.created").await, 1);
    let audit = app.get("/v1/audit?action=webhook.created").await;
    assert!(!audit.text.contains(&secret[6..]));
}

async fn a_failing_receiver_gets_the_events_after_retries_in_order(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(2).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created", "token.revoked"] }),
    )
    .await;
    let secret = created["secret"].as_str().unwrap();
    let hook_id = created["webhook"]["id"].as_str().unwrap();
    assert_eq!(created["webhook"]["tenant_id"], Value::Null);
    let first = app
        .create_tenant_token("acme", json!({ "name": "a", "kind": "api_key" }))
        .await;
    let first_id = first["token"]["id"].as_str().unwrap();
    app.delete(&format!("/v1/tokens/{first_id}"))
        .await
        .assert_status(204);
    receiver.wait_for(1).await;
    // The first delivery failed and waits for its backoff; the second waits behind it.
    let items = wait_for_deliveries(&app, hook_id, |items| {
        items.len() == 2
            && items[1]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["status"], "pending");
    assert_eq!(items[1]["attempts"][0]["status_code"], 500);
    assert_eq!(items[1]["attempts"][0]["error"], "HTTP 500");
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(items[0]["attempts"], json!([]));

    app.clock.advance(Duration::from_secs(3600));
    receiver.wait_for(2).await;
    wait_for_deliveries(&app, hook_id, |items| {
        items[1]["attempts"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 2, "one retry per backoff");
    app.clock.advance(Duration::from_secs(3600));
    let got = receiver.wait_for(4).await;
    let types: Vec<String> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "token.created",
            "token.created",
            "token.created",
            "token.revoked"
        ]
    );
    // Every retry is the same message under the same webhook-id, each signed anew.
    assert_eq!(got[0].id, got[1].id);
    assert_eq!(got[1].id, got[2].id);
    assert_ne!(got[2].id, got[3].id);
    assert_eq!(got[0].body, got[2].body);
    for received in &got {
        assert_signed(received, secret);
    }
    assert_eq!(got[3].json()["data"]["token_id"], first_id);
    let items = wait_for_deliveries(&app, hook_id, all_delivered).await;
    let codes: Vec<&Value> = items[1]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(500), &json!(204)]);
    assert_eq!(items[0]["attempts"].as_array().unwrap().len(), 1);
}

async fn a_tenant_managers_webhook_sees_only_its_tenants_events(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let manager = app.manager_key("acme").await;
    let own = Receiver::start(0).await;
    let everything = Receiver::start(0).await;
    let created = create_webhook(
        &app,
        &manager,
        json!({ "url": own.url, "events": ["token.created"] }),
    )
    .await;
    assert_eq!(created["webhook"]["tenant_id"], "acme");
    let own_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    // Another tenant's events are out of reach, as if the tenant did not exist.
    app.call(
        Method::POST,
        "/v1/webhooks",
        Some(&manager),
        Some(json!({ "url": own.url, "events": ["token.created"], "tenant_id": "globex" })),
    )
    .await
    .assert_problem(404, "not-found");
    let admins = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": everything.url, "events": ["token.created"] }),
    )
    .await;
    let admins_id = admins["webhook"]["id"].as_str().unwrap().to_owned();
    // The manager neither sees nor deletes the admin's all-tenant webhook.
    for method in [Method::GET, Method::DELETE] {
        app.call(
            method,
            &format!("/v1/webhooks/{admins_id}"),
            Some(&manager),
            None,
        )
        .await
        .assert_problem(404, "not-found");
    }
    app.call(
        Method::GET,
        &format!("/v1/webhooks/{admins_id}/deliveries"),
        Some(&manager),
        None,
    )
    .await
    .assert_problem(404, "not-found");
    let listed = app
        .call(Method::GET, "/v1/webhooks", Some(&manager), None)
        .await;
    listed.assert_status(200);
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [own_id.as_str()]);
    let all = app.get("/v1/webhooks").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);

    let globex = app
        .create_tenant_token("globex", json!({ "name": "g", "kind": "api_key" }))
        .await;
    let acme = app
        .create_tenant_token("acme", json!({ "name": "a", "kind": "api_key" }))
        .await;
    let seen = everything.wait_for(2).await;
    let tenants: Vec<&str> = seen
        .iter()
        .map(|r| {
            if r.json()["data"]["tenant_id"] == "globex" {
                "globex"
            } else {
                "acme"
            }
        })
        .collect();
    assert_eq!(tenants, ["globex", "acme"]);
    let mine = own.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(own.got().len(), 1, "only acme's event");
    assert_eq!(mine[0].json()["data"]["token_id"], acme["token"]["id"]);
    assert_ne!(mine[0].json()["data"]["token_id"], globex["token"]["id"]);
    let shown = app
        .call(
            Method::GET,
            &format!("/v1/webhooks/{own_id}/deliveries"),
            Some(&manager),
            None,
        )
        .await;
    shown.assert_status(200);
    assert_eq!(shown.body["items"].as_array().unwrap().len(), 1);
}

async fn repeated_failures_disable_the_endpoint_and_say_why(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(usize::MAX).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created"] }),
    )
    .await;
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    for n in 0..3 {
        app.create_tenant_token(
            "acme",
            json!({ "name": format!("t{n}"), "kind": "api_key" }),
        )
        .await;
    }
    receiver.wait_for(1).await;
    wait_for_deliveries(&app, &hook_id, |items| {
        items.len() == 3
            && items[2]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    })
    .await;
    // Retried until a day has passed, then given up; three in a row disable it.
    app.clock.advance(Duration::from_secs(12 * 3600));
    receiver.wait_for(2).await;
    let pending = wait_for_deliveries(&app, &hook_id, |items| {
        items[2]["attempts"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await;
    assert!(pending.iter().all(|d| d["status"] == "pending"));
    app.clock.advance(Duration::from_secs(13 * 3600));
    receiver.wait_for(5).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = app.get(&format!("/v1/webhooks/{hook_id}")).await;
        shown.assert_status(200);
        if !shown.body["disabled_at"].is_null() {
            break shown;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "disabled within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = shown.body["disabled_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("3 deliveries in a row failed for 24 hours")
            && reason.ends_with("HTTP 500"),
        "{reason}"
    );
    let items = deliveries(&app, &hook_id).await;
    assert!(items.iter().all(|d| d["status"] == "failed"), "{items:?}");
    assert_eq!(app.audit_count("webhook.disabled").await, 1);
    // A disabled endpoint gets no new deliveries.
    app.create_tenant_token("acme", json!({ "name": "later", "kind": "api_key" }))
        .await;
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_deliveries").await,
        3
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 5);
    // Once the receiver is fixed, a ping enables the webhook again and is delivered.
    receiver.fail_next.store(0, Ordering::SeqCst);
    app.post(&format!("/v1/webhooks/{hook_id}/ping"), json!({}))
        .await
        .assert_status(202);
    let got = receiver.wait_for(6).await;
    assert_eq!(got[5].json()["type"], "webhook.ping");
    let shown = app.get(&format!("/v1/webhooks/{hook_id}")).await;
    assert_eq!(shown.body["disabled_at"], Value::Null);
    assert_eq!(shown.body["disabled_reason"], Value::Null);
}

async fn deleting_a_webhook_removes_its_deliveries(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(usize::MAX).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created"] }),
    )
    .await;
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    app.create_tenant_token("acme", json!({ "name": "t", "kind": "api_key" }))
        .await;
    receiver.wait_for(1).await;
    app.delete(&format!("/v1/webhooks/{hook_id}"))
        .await
        .assert_status(204);
    app.get(&format!("/v1/webhooks/{hook_id}"))
        .await
        .assert_problem(404, "not-found");
    app.delete(&format!("/v1/webhooks/{hook_id}"))
        .await
        .assert_problem(404, "not-found");
    app.get("/v1/webhooks/not-a-uuid/deliveries")
        .await
        .assert_problem(400, "invalid-field");
    for table in [
        "webhooks",
        "webhook_events",
        "webhook_deliveries",
        "webhook_attempts",
    ] {
        assert_eq!(
            count(&app, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(app.audit_count("webhook.deleted").await, 1);
    app.clock.advance(Duration::from_secs(3600));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1);

    // A tenant's webhooks go with the tenant.
    app.create_tenant("gone").await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created"], "tenant_id": "gone" }),
    )
    .await;
    let gone_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    app.delete("/v1/tenants/gone").await.assert_status(204);
    app.get(&format!("/v1/webhooks/{gone_id}"))
        .await
        .assert_problem(404, "not-found");
    for table in ["webhooks", "webhook_events"] {
        assert_eq!(
            count(&app, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}

async fn bad_webhooks_are_refused_and_change_nothing(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(0).await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let manager = app.manager_key("acme").await;
    for (body, status, code, field) in [
        (
            json!({ "url": "ftp://example.com/x", "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": "example.com/x", "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": "https://u:p@example.com/", "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": receiver.url, "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": format!("http://[::1]:{port}/hook"), "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": format!("http://[::ffff:127.0.0.1]:{port}/"), "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": "http://169.254.169.254/latest/meta-data", "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": format!("http://localhost:{port}/hook"), "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": "http://10.1.2.3/", "events": ["token.created"] }),
            422,
            "invalid-value",
            "url",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "events": ["token.exchanged"] }),
            422,
            "invalid-value",
            "events",
        ),
        (
            json!({ "url": "https://hooks.example.com/", "events": [] }),
            422,
            "invalid-value",
            "events",
        ),
    ] {
        for key in [&app.root_key, &manager] {
            let reply = app
                .call(Method::POST, "/v1/webhooks", Some(key), Some(body.clone()))
                .await;
            reply.assert_problem(status, code);
            assert_eq!(reply.body["field"], field, "{body}");
        }
    }
    app.post(
        "/v1/webhooks",
        json!({ "url": "https://hooks.example.com/", "events": ["token.created"], "secret": "x" }),
    )
    .await
    .assert_problem(400, "invalid-field")
    .body["field"]
        .as_str()
        .map(|field| assert_eq!(field, "secret"))
        .unwrap();
    app.post(
        "/v1/webhooks",
        json!({ "url": "https://hooks.example.com/", "events": ["token.created"], "tenant_id": "nope" }),
    )
    .await
    .assert_problem(404, "not-found");
    // Without a credential, or with one that cannot manage, nothing is created either.
    app.call(
        Method::POST,
        "/v1/webhooks",
        None,
        Some(json!({ "url": "https://hooks.example.com/", "events": ["token.created"] })),
    )
    .await
    .assert_problem(401, "invalid-token");
    for table in ["webhooks", "webhook_events"] {
        assert_eq!(
            count(&app, &format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(app.audit_count("webhook.created").await, 0);
    // The control: a public name is accepted (it is judged again at each delivery).
    let created = create_webhook(
        &app,
        &manager,
        json!({ "url": "https://hooks.example.com/in", "events": ["token.revoked"] }),
    )
    .await;
    assert_eq!(created["webhook"]["tenant_id"], "acme");
    assert!(receiver.got().is_empty());
}

/// A name other than `localhost` that this machine resolves to loopback, from
/// /etc/hosts.
fn loopback_name() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let mut fields = line.split('#').next()?.split_whitespace();
        let address: std::net::IpAddr = fields.next()?.parse().ok()?;
        if !address.is_loopback() {
            return None;
        }
        fields
            .find(|name| {
                let name = name.to_ascii_lowercase();
                name != "localhost" && !name.ends_with(".localhost")
            })
            .map(str::to_owned)
    })
}

async fn a_name_resolving_to_loopback_is_refused_at_delivery(app: TestApp) {
    app.create_tenant("acme").await;
    let Some(name) = loopback_name() else {
        eprintln!("no name in /etc/hosts resolves to loopback: skipping the delivery check");
        return;
    };
    let receiver = Receiver::start(0).await;
    let url = receiver.url.replace("127.0.0.1", &name);
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": url, "events": ["token.created"] }),
    )
    .await;
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    app.create_tenant_token("acme", json!({ "name": "t", "kind": "api_key" }))
        .await;
    // The default poll is once a second.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let attempt = loop {
        let items = deliveries(&app, &hook_id).await;
        if let Some(attempt) = items[0]["attempts"].as_array().unwrap().first() {
            break attempt.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an attempt within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!(
            "refused: {name} resolves only to non-public addresses"
        )),
        "{error}"
    );
    assert_eq!(attempt["status_code"], Value::Null);
    assert!(receiver.got().is_empty(), "the receiver was never reached");
    assert_eq!(deliveries(&app, &hook_id).await[0]["status"], "pending");
}

/// A server that can be stopped: its base URL, the stop signal and its task.
struct Stoppable {
    base: String,
    root_key: Option<String>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_stoppable(config: Config, clock: Arc<ManualClock>) -> Stoppable {
    let app = Application::build_with_clock(config, clock).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let root_key = app.root_key().map(|k| k.expose().to_owned());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    Stoppable {
        base,
        root_key,
        stop,
        task,
    }
}

mod deliveries_survive_a_restart {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::deliveries_survive_a_restart(None).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        if let Some((url, _name)) = TestApp::fresh_postgres_database().await {
            super::deliveries_survive_a_restart(Some(url)).await;
        }
    }
}

async fn deliveries_survive_a_restart(database_url: Option<String>) {
    let data_dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.path().to_path_buf(),
        database_url,
        database_max_connections: 4,
        webhook_allow_private_targets: true,
        webhook_poll_interval_ms: 50,
        ..Config::default()
    };
    let receiver = Receiver::start(usize::MAX).await;
    let first = start_stoppable(config.clone(), Arc::new(ManualClock::starting_now())).await;
    let root = first.root_key.clone().unwrap();
    let client = TestApp::probe(first.base.clone(), root.clone());
    client.create_tenant("acme").await;
    let created = create_webhook(
        &client,
        &root,
        json!({ "url": receiver.url, "events": ["token.created"] }),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    client
        .create_tenant_token("acme", json!({ "name": "t", "kind": "api_key" }))
        .await;
    receiver.wait_for(1).await;
    first.stop.send(()).unwrap();
    first.task.await.unwrap().unwrap();

    // The receiver recovers while the server is down; the next start, an hour later
    // by its clock, sends the delivery it finds in the outbox.
    receiver.fail_next.store(0, Ordering::SeqCst);
    let later = ManualClock::starting_now();
    later.advance(Duration::from_secs(3600));
    let second = start_stoppable(config, Arc::new(later)).await;
    assert!(second.root_key.is_none(), "the same database, bootstrapped");
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].id, got[1].id);
    assert_signed(&got[1], &secret);
    let client = TestApp::probe(second.base.clone(), root);
    let items = wait_for_deliveries(&client, &hook_id, all_delivered).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["attempts"].as_array().unwrap().len(), 2);
    second.stop.send(()).unwrap();
    second.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_deliver_each_event_once_and_in_order() {
    let Some(a) = TestApp::postgres_with(private_allowed).await else {
        return;
    };
    let b = a.replica(private_allowed).await;
    a.create_tenant("acme").await;
    let receiver = Receiver::start(0).await;
    let created = create_webhook(
        &a,
        &a.root_key,
        json!({ "url": receiver.url, "events": ["token.created"] }),
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    for n in 0..20 {
        let server = if n % 2 == 0 { &a } else { &b };
        server
            .create_tenant_token(
                "acme",
                json!({ "name": format!("t{n}"), "kind": "api_key" }),
            )
            .await;
    }
    let got = receiver.wait_for(20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = receiver.got();
    assert_eq!(got_after.len(), 20, "each event once");
    let seqs: Vec<i64> = got
        .iter()
        .map(|r| r.id.trim_start_matches("evt_").parse().unwrap())
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in commit order, none twice");
    let names: Vec<String> = got
        .iter()
        .map(|r| {
            r.json()["data"]["details"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
    assert_eq!(names, expected);
    for received in &got {
        assert_signed(received, &secret);
    }
}

async fn an_expiring_token_is_announced_a_week_and_a_day_ahead_once_each(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(0).await;
    create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.expiring"] }),
    )
    .await;
    let day = 86_400_000;
    let expiring = app
        .create_tenant_token(
            "acme",
            json!({ "name": "soon", "kind": "api_key", "expires_at": app.in_millis(6 * day) }),
        )
        .await;
    let expiring_id = expiring["token"]["id"].as_str().unwrap().to_owned();
    // Controls: one expiring later than a week, one revoked, one that never expires.
    app.create_tenant_token(
        "acme",
        json!({ "name": "later", "kind": "api_key", "expires_at": app.in_millis(30 * day) }),
    )
    .await;
    let revoked = app
        .create_tenant_token(
            "acme",
            json!({ "name": "gone", "kind": "api_key", "expires_at": app.in_millis(2 * day) }),
        )
        .await;
    app.delete(&format!(
        "/v1/tokens/{}",
        revoked["token"]["id"].as_str().unwrap()
    ))
    .await
    .assert_status(204);
    app.create_tenant_token("acme", json!({ "name": "forever", "kind": "api_key" }))
        .await;

    app.maintain().await;
    app.maintain().await;
    let got = receiver.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["type"], "token.expiring");
    assert_eq!(body["data"]["token_id"], expiring_id.as_str());
    assert_eq!(body["data"]["details"]["days"], 7);
    assert_eq!(
        body["data"]["details"]["expires_at"],
        expiring["token"]["expires_at"]
    );
    assert_eq!(app.audit_count("token.expiring").await, 1);

    app.clock.advance(Duration::from_secs(5 * 86_400 + 3_600));
    app.maintain().await;
    app.maintain().await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].json()["data"]["details"]["days"], 1);
    assert_eq!(got[1].json()["data"]["token_id"], expiring_id.as_str());
    // Past its expiry nothing more is said.
    app.clock.advance(Duration::from_secs(2 * 86_400));
    app.maintain().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 2);
    assert_eq!(app.audit_count("token.expiring").await, 2);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM token_expiry_notices").await,
        2
    );
}

async fn a_ping_and_a_redelivery_are_sent_on_request_and_enable_the_webhook(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let receiver = Receiver::start(0).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.revoked"], "tenant_id": "acme" }),
    )
    .await;
    let secret = created["secret"].as_str().unwrap();
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let pinged = app
        .post(&format!("/v1/webhooks/{hook_id}/ping"), json!({}))
        .await;
    pinged.assert_status(202);
    let ping_id = pinged.body["id"].as_str().unwrap().to_owned();
    let got = receiver.wait_for(1).await;
    assert_signed(&got[0], secret);
    assert_eq!(got[0].id, ping_id);
    assert_eq!(got[0].json()["type"], "webhook.ping");
    assert_eq!(got[0].json()["data"]["webhook_id"], hook_id.as_str());
    wait_for_deliveries(&app, &hook_id, all_delivered).await;

    let again = app
        .post(
            &format!("/v1/webhooks/{hook_id}/deliveries/{ping_id}/redeliver"),
            json!({}),
        )
        .await;
    again.assert_status(202);
    assert_eq!(again.body["id"], ping_id.as_str());
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].id, ping_id);
    assert_eq!(got[1].body, got[0].body);
    assert_signed(&got[1], secret);
    let items = wait_for_deliveries(&app, &hook_id, |items| {
        items[0]["attempts"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
    })
    .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "delivered");
    assert_eq!(app.audit_count("webhook.pinged").await, 1);
    assert_eq!(app.audit_count("webhook.redelivered").await, 1);

    // Refusals change nothing: an unknown delivery, a malformed id, another tenant's
    // manager.
    app.post(
        &format!("/v1/webhooks/{hook_id}/deliveries/evt_999999/redeliver"),
        json!({}),
    )
    .await
    .assert_problem(404, "not-found");
    app.post(
        &format!("/v1/webhooks/{hook_id}/deliveries/nope/redeliver"),
        json!({}),
    )
    .await
    .assert_problem(400, "invalid-field");
    let outsider = app.manager_key("globex").await;
    for path in [
        format!("/v1/webhooks/{hook_id}/ping"),
        format!("/v1/webhooks/{hook_id}/deliveries/{ping_id}/redeliver"),
    ] {
        app.call(Method::POST, &path, Some(&outsider), Some(json!({})))
            .await
            .assert_problem(404, "not-found");
    }
    let insider = app.manager_key("acme").await;
    app.call(
        Method::POST,
        &format!("/v1/webhooks/{hook_id}/ping"),
        Some(&insider),
        Some(json!({})),
    )
    .await
    .assert_status(202);
    receiver.wait_for(3).await;
    assert_eq!(app.audit_count("webhook.pinged").await, 2);
    assert_eq!(app.audit_count("webhook.redelivered").await, 1);
}

async fn a_rotated_secret_signs_beside_the_old_one_until_the_overlap_ends(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let receiver = Receiver::start(0).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created"], "tenant_id": "acme" }),
    )
    .await;
    let old = created["secret"].as_str().unwrap().to_owned();
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/webhooks/{hook_id}/rotate-secret");
    // Refusals first: they change nothing.
    for overlap in [-1, 7 * 86_400 + 1] {
        let reply = app.post(&path, json!({ "overlap_seconds": overlap })).await;
        reply.assert_problem(422, "invalid-value");
        assert_eq!(reply.body["field"], "overlap_seconds");
    }
    let outsider = app.manager_key("globex").await;
    app.call(Method::POST, &path, Some(&outsider), Some(json!({})))
        .await
        .assert_problem(404, "not-found");
    assert_eq!(app.audit_count("webhook.secret_rotated").await, 0);

    let rotated = app.post(&path, json!({ "overlap_seconds": 3600 })).await;
    rotated.assert_status(200);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(
        rotated.body["webhook"]["previous_secret_expires_at"],
        json!(app.in_millis(3_600_000))
    );
    assert_eq!(app.audit_count("webhook.secret_rotated").await, 1);
    let audit = app.get("/v1/audit?action=webhook.secret_rotated").await;
    assert!(!audit.text.contains(&new[6..]) && !audit.text.contains(&old[6..]));

    app.create_tenant_token("acme", json!({ "name": "during", "kind": "api_key" }))
        .await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].signature.split(' ').count(), 2);
    assert!(verifies(&got[0], &new) && verifies(&got[0], &old));

    app.clock.advance(Duration::from_secs(3601));
    app.create_tenant_token("acme", json!({ "name": "after", "kind": "api_key" }))
        .await;
    let got = receiver.wait_for(2).await;
    assert_eq!(got[1].signature.split(' ').count(), 1);
    assert!(verifies(&got[1], &new));
    assert!(!verifies(&got[1], &old), "the old secret no longer signs");
}

async fn a_token_first_seen_from_an_address_is_delivered_from_usage_ingest(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(0).await;
    create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.first_seen_ip"] }),
    )
    .await;
    let token = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token_id = token["token"]["id"].as_str().unwrap();
    let gateway = app.introspection_key().await;
    let minute = app.in_millis(-3_600_000).millis();
    let minute = latchkey_core::Timestamp::from_millis(minute - minute.rem_euclid(60_000));
    let entry = |ip: &str| {
        json!({ "token_id": token_id, "route": "/reports", "method": "GET",
                "status_class": "2xx", "client_ip": ip, "count": 1,
                "last_used_at": minute.plus_seconds(5).to_rfc3339() })
    };
    let batch = json!({ "window_start": minute.to_rfc3339(),
                        "entries": [entry("203.0.113.7"), entry("203.0.113.7")] });
    app.call(
        Method::POST,
        "/v1/usage",
        Some(&gateway),
        Some(batch.clone()),
    )
    .await
    .assert_status(202);
    let got = receiver.wait_for(1).await;
    let body = got[0].json();
    assert_eq!(body["type"], "token.first_seen_ip");
    assert_eq!(body["data"]["token_id"], token_id);
    assert_eq!(body["data"]["tenant_id"], "acme");
    assert_eq!(body["data"]["details"]["ip"], "203.0.113.7");
    // The same address again is not new: nothing more is sent.
    app.call(Method::POST, "/v1/usage", Some(&gateway), Some(batch))
        .await
        .assert_status(202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got().len(), 1);
    assert_eq!(
        count(&app, "SELECT COUNT(*) FROM webhook_deliveries").await,
        1
    );
}

async fn a_backlog_drains_within_one_round(app: TestApp) {
    app.create_tenant("acme").await;
    let receiver = Receiver::start(usize::MAX).await;
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": receiver.url, "events": ["token.created"] }),
    )
    .await;
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    for n in 0..10 {
        app.create_tenant_token(
            "acme",
            json!({ "name": format!("t{n}"), "kind": "api_key" }),
        )
        .await;
    }
    // The head fails and holds the rest back until its retry is due.
    receiver.wait_for(1).await;
    wait_for_deliveries(&app, &hook_id, |items| {
        items.len() == 10
            && items[9]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 1)
    })
    .await;
    receiver.fail_next.store(0, Ordering::SeqCst);
    app.clock.advance(Duration::from_secs(60));
    let first = std::time::Instant::now();
    receiver.wait_for(2).await;
    let started = std::time::Instant::now();
    let got = receiver.wait_for(11).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the other nine follow in the same round, not one a round: {:?} (round began {:?} ago)",
        started.elapsed(),
        first.elapsed()
    );
    let names: Vec<String> = got[1..]
        .iter()
        .map(|r| {
            r.json()["data"]["details"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
    assert_eq!(names, expected);
    wait_for_deliveries(&app, &hook_id, all_delivered).await;
}

async fn a_redirect_is_not_followed_and_fails_the_attempt(app: TestApp) {
    app.create_tenant("acme").await;
    // The attack: a receiver that answers 307 towards another address (an internal
    // service, say) to make the server POST there.
    let internal = Receiver::start(0).await;
    let location = internal.url.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}/hook", listener.local_addr().unwrap());
    let app_router = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let location = location.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", location)]) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app_router).await });
    let created = create_webhook(
        &app,
        &app.root_key,
        json!({ "url": redirector, "events": ["token.created"] }),
    )
    .await;
    let hook_id = created["webhook"]["id"].as_str().unwrap().to_owned();
    app.create_tenant_token("acme", json!({ "name": "t", "kind": "api_key" }))
        .await;
    let items = wait_for_deliveries(&app, &hook_id, |items| {
        items[0]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    })
    .await;
    let attempt = &items[0]["attempts"][0];
    assert_eq!(attempt["status_code"], 307);
    assert_eq!(attempt["error"], "HTTP 307: redirects are not followed");
    assert_eq!(items[0]["status"], "pending");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        internal.got().is_empty(),
        "the redirect target was never called"
    );
}
