//! Usage batches from gateways: aggregates, last use, and first sight of an address;
//! every number a gateway sends is bounded, and stored absurd numbers still read.

use crate::both_backends;
use crate::helpers::{Reply, TestApp};
use latchkey_core::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    usage_batches_add_up_and_move_last_use_forward,
    a_gateways_full_batch_of_a_thousand_entries_is_taken_whole,
    a_malformed_usage_batch_is_refused_and_changes_nothing,
    absurd_numbers_in_a_usage_batch_are_refused_and_change_nothing,
    absurd_counts_already_stored_read_as_saturated_totals,
    any_json_body_sent_as_a_usage_batch_gets_2xx_or_4xx_and_a_refusal_stores_nothing,
);

async fn gateway_key(app: &TestApp) -> String {
    let created = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gateway", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await;
    created["api_key"].as_str().unwrap().to_owned()
}

fn entry(token: &str, route: &str, ip: &str, count: i64, at: &str) -> Value {
    json!({ "token_id": token, "route": route, "method": "GET", "status_class": "2xx",
            "client_ip": ip, "count": count, "last_used_at": at })
}

/// The start of the minute `hours_ago` hours before now: usage is only taken for minutes
/// the server still keeps and its clock has reached.
fn minute_hours_ago(hours_ago: i64) -> Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let at = now - hours_ago * 3_600_000;
    Timestamp::from_millis(at - at.rem_euclid(60_000))
}

/// `minute` plus `seconds`, as RFC 3339.
fn at(minute: Timestamp, seconds: i64) -> String {
    minute.plus_seconds(seconds).to_rfc3339()
}

/// What a refused batch must leave untouched: the stored aggregates, every token's last
/// use, and the first-sight events.
async fn usage_state(app: &TestApp) -> (i64, Vec<Option<i64>>, i64) {
    let db = app.db().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_minutes")
        .fetch_one(&db)
        .await
        .unwrap();
    // The tokens a batch can name: the system tenant's keys (root, the gateway's)
    // are used by calling the server, which moves their own `last_used_at`.
    let last_used: Vec<Option<i64>> = sqlx::query_scalar(
        "SELECT last_used_at FROM tokens WHERE tenant_id <> 'latchkey' ORDER BY id",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    db.close().await;
    (
        rows,
        last_used,
        app.audit_count("token.first_seen_ip").await,
    )
}

/// A gateway sends up to 1,000 entries a batch (about 150 KB), more than the 64 KiB any
/// other body may hold; a refusal would have dropped the counts for good.
async fn a_gateways_full_batch_of_a_thousand_entries_is_taken_whole(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap();
    let key = gateway_key(&app).await;
    let minute = minute_hours_ago(1);
    let entries: Vec<Value> = (0..1_000)
        .map(|i| {
            let route = format!("/reports/a-fairly-long-route-name-{i:04}");
            entry(token, &route, "203.0.113.7", 1, &at(minute, 30))
        })
        .collect();
    let batch = json!({ "window_start": at(minute, 0), "entries": entries });
    assert!(
        batch.to_string().len() > 64 * 1024,
        "the old limit is exceeded"
    );
    let reply = app
        .call(Method::POST, "/v1/usage", Some(&key), Some(batch))
        .await;
    reply.assert_status(202);
    assert_eq!(reply.body["accepted"], 1_000);
    assert_eq!(usage_state(&app).await.0, 1_000);
    // Control: a body beyond the usage limit is still refused, naming that limit, and
    // nothing more is stored.
    let huge = "x".repeat(5 * 1024 * 1024);
    let reply = app
        .call(
            Method::POST,
            "/v1/usage",
            Some(&key),
            Some(json!({ "window_start": at(minute, 0), "entries": [], "pad": huge })),
        )
        .await;
    reply.assert_problem(413, "payload-too-large");
    assert!(
        reply.body["detail"].as_str().unwrap().contains("4194304"),
        "{}",
        reply.text
    );
    assert_eq!(usage_state(&app).await.0, 1_000);
}

async fn usage_batches_add_up_and_move_last_use_forward(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap();
    let key = gateway_key(&app).await;
    let minute = minute_hours_ago(2);
    let batch = json!({ "window_start": at(minute, 0), "entries": [
        entry(token, "/reports", "203.0.113.7", 3, &at(minute, 10)),
        entry(token, "/reports", "198.51.100.2", 2, &at(minute, 40)),
        entry(token, "/billing", "203.0.113.7", 1, &at(minute, 20)),
        entry("00000000-0000-4000-8000-000000000000", "/reports", "203.0.113.7", 9, &at(minute, 20)),
    ]});
    let reply = app
        .call(Method::POST, "/v1/usage", Some(&key), Some(batch.clone()))
        .await;
    reply.assert_status(202);
    assert_eq!(
        reply.body["accepted"], 3,
        "the unknown token's record is skipped"
    );
    let read = app.get(&format!("/v1/tokens/{token}")).await.body;
    assert_eq!(read["last_used_at"], at(minute, 40));
    assert_eq!(read["last_used_ip"], "198.51.100.2");
    assert_eq!(app.audit_count("token.first_seen_ip").await, 2);
    // The same batch again: counts double, no address is new, last use does not go back.
    app.call(Method::POST, "/v1/usage", Some(&key), Some(batch))
        .await
        .assert_status(202);
    assert_eq!(app.audit_count("token.first_seen_ip").await, 2);
    let db = app.db().await;
    let total: i64 = sqlx::query_scalar(
        "SELECT CAST(SUM(count) AS BIGINT) FROM usage_minutes WHERE token_id = $1",
    )
    .bind(token.to_owned())
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(total, 12);
    let window = format!("since={}&until={}", at(minute, -1800), at(minute, 1800));
    let by_ip = app
        .get(&format!("/v1/tokens/{token}/usage?{window}&group_by=ip"))
        .await;
    by_ip.assert_status(200);
    assert_eq!(by_ip.body["total"], 12);
    assert_eq!(by_ip.body["last_used_ip"], "198.51.100.2");
    let groups = by_ip.body["groups"].as_array().unwrap();
    let totals: Vec<(&str, i64)> = groups
        .iter()
        .map(|g| (g["key"].as_str().unwrap(), g["total"].as_i64().unwrap()))
        .collect();
    assert_eq!(totals, [("198.51.100.2", 4), ("203.0.113.7", 8)]);
    assert_eq!(
        groups[1]["series"],
        json!([{ "at": at(minute, 0), "count": 8 }])
    );
    let by_route = app
        .get(&format!("/v1/tokens/{token}/usage?{window}&group_by=route"))
        .await;
    let totals: Vec<i64> = by_route.body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, [2, 10], "/billing then /reports");
    let by_day = app
        .get(&format!("/v1/tokens/{token}/usage?{window}&group_by=day"))
        .await;
    assert_eq!(by_day.body["groups"][0]["key"], at(minute, 0)[..10]);
    app.get(&format!("/v1/tokens/{token}/usage?group_by=colour"))
        .await
        .assert_problem(400, "invalid-field");
    app.get(&format!(
        "/v1/tokens/{token}/usage?since=2026-12-01T00:00:00Z&until=2026-11-01T00:00:00Z"
    ))
    .await
    .assert_problem(422, "invalid-value");
    let older = json!({ "window_start": at(minute, -3600), "entries": [
        entry(token, "/reports", "192.0.2.1", 1, &at(minute, -3590)) ]});
    app.call(Method::POST, "/v1/usage", Some(&key), Some(older))
        .await
        .assert_status(202);
    assert_eq!(
        app.get(&format!("/v1/tokens/{token}")).await.body["last_used_ip"],
        "198.51.100.2"
    );
    let manager = app.manager_key("acme").await;
    let refused = app
        .call(
            Method::POST,
            "/v1/usage",
            Some(&manager),
            Some(json!({ "window_start": at(minute, 0), "entries": [] })),
        )
        .await;
    refused.assert_problem(403, "insufficient-scope");
}

async fn a_malformed_usage_batch_is_refused_and_changes_nothing(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap();
    let key = gateway_key(&app).await;
    let minute = minute_hours_ago(1);
    let good = entry(token, "/reports", "203.0.113.7", 1, &at(minute, 10));
    let before = usage_state(&app).await;
    let with = |field: &str, value: Value| {
        let mut bad = good.clone();
        bad[field] = value;
        bad
    };
    for (bad, field) in [
        (
            with("status_class", json!("200")),
            "entries[1].status_class",
        ),
        (
            with("client_ip", json!("somewhere")),
            "entries[1].client_ip",
        ),
        (with("route", json!("")), "entries[1].route"),
        (with("route", json!("/".repeat(257))), "entries[1].route"),
        (with("route", json!("/a\u{7}b")), "entries[1].route"),
        (with("method", json!("get")), "entries[1].method"),
        (
            with("token_id", json!("not-a-token")),
            "entries[1].token_id",
        ),
        (
            with("last_used_at", json!("yesterday")),
            "entries[1].last_used_at",
        ),
        (with("colour", json!("red")), "entries[1].colour"),
    ] {
        let batch = json!({ "window_start": at(minute, 0), "entries": [good.clone(), bad] });
        let reply = app
            .call(Method::POST, "/v1/usage", Some(&key), Some(batch))
            .await;
        reply.assert_problem(400, "invalid-field");
        assert_eq!(reply.body["field"], field);
    }
    assert_eq!(usage_state(&app).await, before);
    assert!(app.get(&format!("/v1/tokens/{token}")).await.body["last_used_at"].is_null());
}

/// Sends a batch of `minute` with `good` and a copy of `good` with `field` set to `value`.
async fn send_with(
    app: &TestApp,
    key: &str,
    (minute, good): (Timestamp, &Value),
    field: &str,
    value: Value,
) -> Reply {
    let mut bad = good.clone();
    bad[field] = value;
    let batch = json!({ "window_start": minute.to_rfc3339(), "entries": [good, bad] });
    app.call(Method::POST, "/v1/usage", Some(key), Some(batch))
        .await
}

async fn absurd_numbers_in_a_usage_batch_are_refused_and_change_nothing(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap();
    let key = gateway_key(&app).await;
    let minute = minute_hours_ago(1);
    let good = entry(token, "/reports", "203.0.113.7", 1, &at(minute, 10));
    let before = usage_state(&app).await;

    // Well-formed counts out of range: 422 naming the field.
    for count in [
        json!(0),
        json!(-1),
        json!(1_000_000_001),
        json!(i64::MAX),
        json!(i64::MIN),
    ] {
        let reply = send_with(&app, &key, (minute, &good), "count", count.clone()).await;
        reply.assert_problem(422, "invalid-value");
        assert_eq!(reply.body["field"], "entries[1].count", "{count}");
    }
    // Not an integer an entry can hold at all: 400 naming the field.
    for count in [
        json!(u64::MAX),
        json!(1e30),
        json!(1.5),
        json!("3"),
        json!(null),
    ] {
        let reply = send_with(&app, &key, (minute, &good), "count", count.clone()).await;
        reply.assert_problem(400, "invalid-field");
        assert_eq!(reply.body["field"], "entries[1].count", "{count}");
    }
    // A last use outside the batch's minute, however far.
    for last_used in [
        at(minute, -1),
        at(minute, 60),
        "9999-12-31T23:59:59Z".to_owned(),
        "1970-01-01T00:00:00Z".to_owned(),
    ] {
        let reply = send_with(
            &app,
            &key,
            (minute, &good),
            "last_used_at",
            json!(last_used),
        )
        .await;
        reply.assert_problem(422, "invalid-value");
        assert_eq!(
            reply.body["field"], "entries[1].last_used_at",
            "{last_used}"
        );
    }
    // A window the server no longer keeps, or one ahead of its clock.
    let year = 365 * 86_400;
    for window in [
        minute_hours_ago(91 * 24),
        minute_hours_ago(-1),
        Timestamp::from_millis(0),
        Timestamp::from_millis(253_402_300_740_000),
        Timestamp::from_millis(-62_135_596_800_000).plus_seconds(year),
    ] {
        let batch = json!({ "window_start": window.to_rfc3339(), "entries": [
            entry(token, "/reports", "203.0.113.7", 1, &at(window, 10)) ]});
        let reply = app
            .call(Method::POST, "/v1/usage", Some(&key), Some(batch))
            .await;
        reply.assert_problem(422, "invalid-value");
        assert_eq!(reply.body["field"], "window_start", "{window}");
    }
    assert_eq!(usage_state(&app).await, before);

    // The largest count there is, twice, and a clock a little ahead: taken.
    let ahead = minute_hours_ago(0).plus_seconds(60);
    let batch = json!({ "window_start": ahead.to_rfc3339(), "entries": [
        entry(token, "/reports", "203.0.113.7", 1_000_000_000, &at(ahead, 0)),
        entry(token, "/reports", "203.0.113.7", 1_000_000_000, &at(ahead, 59)),
    ]});
    let reply = app
        .call(Method::POST, "/v1/usage", Some(&key), Some(batch))
        .await;
    reply.assert_status(202);
    assert_eq!(reply.body["accepted"], 2);
    let db = app.db().await;
    let stored: i64 = sqlx::query_scalar("SELECT count FROM usage_minutes WHERE token_id = $1")
        .bind(token.to_owned())
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    assert_eq!(stored, 2_000_000_000);
}

/// Puts an aggregate straight into the database, as a server without bounds (or a
/// person) could have.
async fn store_aggregate(app: &TestApp, token: &str, minute: Timestamp, route: &str, count: Value) {
    let db = app.db().await;
    let query = format!(
        "INSERT INTO usage_minutes (token_id, minute, route, method, status_class, client_ip, count) \
         VALUES ($1, $2, $3, 'GET', '2xx', '203.0.113.7', {count})"
    );
    sqlx::query(&query)
        .bind(token.to_owned())
        .bind(minute.millis())
        .bind(route.to_owned())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

async fn absurd_counts_already_stored_read_as_saturated_totals(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap();
    let minute = minute_hours_ago(1);
    store_aggregate(&app, token, minute, "/a", json!(i64::MAX)).await;
    store_aggregate(&app, token, minute, "/b", json!(i64::MAX)).await;
    store_aggregate(&app, token, minute.plus_seconds(60), "/c", json!(-5)).await;
    if app.database_url.starts_with("sqlite:") {
        // What SQLite makes of an overflowing `count + excluded.count`: a float.
        store_aggregate(&app, token, minute.plus_seconds(120), "/d", json!(1.8e19)).await;
    }
    let window = format!("since={}&until={}", at(minute, -60), at(minute, 600));
    for group_by in ["route", "ip", "status", "method", "day"] {
        let reply = app
            .get(&format!(
                "/v1/tokens/{token}/usage?{window}&group_by={group_by}"
            ))
            .await;
        reply.assert_status(200);
        assert_eq!(reply.body["total"], i64::MAX, "{group_by}: {}", reply.text);
        for group in reply.body["groups"].as_array().unwrap() {
            let total = group["total"].as_i64().unwrap();
            assert!((0..=i64::MAX).contains(&total), "{group_by}: {group}");
        }
    }
    let by_route = app
        .get(&format!("/v1/tokens/{token}/usage?{window}&group_by=route"))
        .await;
    assert_eq!(by_route.body["groups"][0]["total"], i64::MAX);
    assert_eq!(
        by_route.body["groups"][2]["total"], 0,
        "a negative count reads as none"
    );

    // A batch merged into an absurd aggregate saturates instead of failing.
    let key = gateway_key(&app).await;
    let batch = json!({ "window_start": at(minute, 0), "entries": [
        entry(token, "/a", "203.0.113.7", 1_000_000_000, &at(minute, 30)) ]});
    app.call(Method::POST, "/v1/usage", Some(&key), Some(batch))
        .await
        .assert_status(202);
    let db = app.db().await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT CAST(count AS BIGINT) FROM usage_minutes WHERE token_id = $1 AND route = '/a'",
    )
    .bind(token.to_owned())
    .fetch_one(&db)
    .await
    .unwrap();
    db.close().await;
    assert_eq!(stored, i64::MAX);
    let reread = app
        .get(&format!("/v1/tokens/{token}/usage?{window}&group_by=route"))
        .await;
    reread.assert_status(200);
    assert_eq!(reread.body["total"], i64::MAX);
}

/// The property test's case budget (docs/BENCHMARKS.md, "Property-test budgets").
const BATCH_CASES: u32 = 64;

/// Anything JSON can hold in a field: most often nothing a usage entry takes.
fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        any_text(40).prop_map(Value::from),
        prop::collection::vec(any::<i64>().prop_map(Value::from), 0..3).prop_map(Value::from),
    ]
}

fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

/// A timestamp field: in the batch's minute, anywhere, or not a timestamp.
fn timestamp(minute: Timestamp) -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0i64..60).prop_map(move |s| json!(at(minute, s))),
        2 => (-200_000i64..200_000).prop_map(move |s| json!(at(minute, s * 60))),
        1 => any::<i64>().prop_map(|ms| json!(Timestamp::from_millis(ms).to_rfc3339())),
        1 => any_json(),
    ]
}

/// One entry: each field plausible most of the time, absurd or foreign otherwise, and
/// now and then a field too many or too few.
fn usage_entry(tokens: Vec<String>, minute: Timestamp) -> impl Strategy<Value = Value> {
    let token = prop_oneof![
        8 => prop::sample::select(tokens).prop_map(Value::from),
        1 => any_json(),
    ];
    let route = prop_oneof![
        8 => Just(json!("/reports")),
        1 => any_text(300).prop_map(Value::from),
        1 => any_json(),
    ];
    let method = prop_oneof![
        8 => Just(json!("GET")),
        1 => any_json(),
    ];
    let class = prop_oneof![
        8 => Just(json!("2xx")),
        1 => any_json(),
    ];
    let ip = prop_oneof![
        8 => prop::sample::select(vec!["203.0.113.7", "2001:db8::1"]).prop_map(Value::from),
        1 => any_json(),
    ];
    let count = prop_oneof![
        8 => (1i64..=1_000_000_000).prop_map(Value::from),
        2 => prop::sample::select(vec![0i64, -1, 1_000_000_001, i64::MAX, i64::MIN])
            .prop_map(Value::from),
        1 => any_json(),
    ];
    let shape = prop_oneof![
        6 => Just(None),
        1 => any_text(12).prop_map(|name| Some((name, true))),
        1 => prop::sample::select(vec!["token_id", "count", "last_used_at"])
            .prop_map(|name| Some((name.to_owned(), false))),
    ];
    (
        token,
        route,
        method,
        class,
        ip,
        count,
        timestamp(minute),
        shape,
    )
        .prop_map(
            |(token_id, route, method, status_class, client_ip, count, last_used_at, shape)| {
                let mut entry = json!({ "token_id": token_id, "route": route, "method": method,
                "status_class": status_class, "client_ip": client_ip, "count": count,
                "last_used_at": last_used_at });
                match shape {
                    Some((name, true)) => entry[name] = json!(1),
                    Some((name, false)) => {
                        entry.as_object_mut().unwrap().remove(&name);
                    }
                    None => {}
                }
                entry
            },
        )
}

/// A batch body: mostly the right shape with entries of [`usage_entry`], sometimes any
/// JSON at all.
fn usage_body(tokens: Vec<String>, minute: Timestamp) -> impl Strategy<Value = Value> {
    let batch = (
        timestamp(minute),
        prop::collection::vec(usage_entry(tokens, minute), 0..5),
    )
        .prop_map(
            |(window_start, entries)| json!({ "window_start": window_start, "entries": entries }),
        );
    prop_oneof![
        6 => batch,
        1 => any_json(),
        1 => prop::collection::vec(any_json(), 0..3).prop_map(|items| json!({ "entries": items })),
    ]
}

async fn any_json_body_sent_as_a_usage_batch_gets_2xx_or_4xx_and_a_refusal_stores_nothing(
    app: TestApp,
) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let tokens = vec![
        created["token"]["id"].as_str().unwrap().to_owned(),
        "00000000-0000-4000-8000-000000000000".to_owned(),
    ];
    let key = gateway_key(&app).await;
    let minute = minute_hours_ago(1);
    let strategy = usage_body(tokens, minute);
    let mut runner = TestRunner::new(Config {
        cases: BATCH_CASES,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let statuses = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |body| {
            handle.block_on(async {
                let before = usage_state(&app).await;
                let reply = app
                    .call(Method::POST, "/v1/usage", Some(&key), Some(body.clone()))
                    .await;
                statuses.lock().unwrap().insert(reply.status);
                prop_assert!(
                    (200..500).contains(&reply.status),
                    "{} for {body}: {}",
                    reply.status,
                    reply.text
                );
                if reply.status >= 400 {
                    prop_assert_eq!(reply.header("content-type"), "application/problem+json");
                    prop_assert_eq!(
                        usage_state(&app).await,
                        before,
                        "refused, yet stored: {}",
                        body
                    );
                } else {
                    prop_assert_eq!(reply.status, 202);
                    let sent = body["entries"].as_array().map_or(0, Vec::len) as u64;
                    let accepted = reply.body["accepted"].as_u64().unwrap();
                    prop_assert!(accepted <= sent, "{}", reply.text);
                }
                Ok(())
            })
        })
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    // The generator reaches both sides of the rules, not only the refusals.
    let statuses = statuses.into_inner().unwrap();
    assert!(statuses.contains(&202), "{statuses:?}");
    assert!(
        statuses.iter().any(|s| (400..500).contains(s)),
        "{statuses:?}"
    );
}
