//! Usage batches from gateways: aggregates, last use, and first sight of an address.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    usage_batches_add_up_and_move_last_use_forward,
    a_malformed_usage_batch_is_refused_and_changes_nothing,
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

async fn usage_batches_add_up_and_move_last_use_forward(app: TestApp) {
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "ci", "kind": "api_key" }))
        .await;
    let token = created["token"]["id"].as_str().unwrap();
    let key = gateway_key(&app).await;
    let batch = json!({ "window_start": "2026-11-29T10:00:00Z", "entries": [
        entry(token, "/reports", "203.0.113.7", 3, "2026-11-29T10:00:10Z"),
        entry(token, "/reports", "198.51.100.2", 2, "2026-11-29T10:00:40Z"),
        entry(token, "/billing", "203.0.113.7", 1, "2026-11-29T10:00:20Z"),
        entry("00000000-0000-4000-8000-000000000000", "/reports", "203.0.113.7", 9, "2026-11-29T10:00:20Z"),
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
    assert_eq!(read["last_used_at"], "2026-11-29T10:00:40Z");
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
    let window = "since=2026-11-29T00:00:00Z&until=2026-11-30T00:00:00Z";
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
        json!([{ "at": "2026-11-29T10:00:00Z", "count": 8 }])
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
    assert_eq!(by_day.body["groups"][0]["key"], "2026-11-29");
    app.get(&format!("/v1/tokens/{token}/usage?group_by=colour"))
        .await
        .assert_problem(400, "invalid-field");
    app.get(&format!(
        "/v1/tokens/{token}/usage?since=2026-12-01T00:00:00Z&until=2026-11-01T00:00:00Z"
    ))
    .await
    .assert_problem(422, "invalid-value");
    let older = json!({ "window_start": "2026-11-29T09:00:00Z", "entries": [
        entry(token, "/reports", "192.0.2.1", 1, "2026-11-29T09:00:10Z") ]});
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
            Some(json!({ "window_start": "2026-11-29T09:00:00Z", "entries": [] })),
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
    let good = entry(token, "/reports", "203.0.113.7", 1, "2026-11-29T10:00:10Z");
    let mut bad_class = good.clone();
    bad_class["status_class"] = json!("200");
    let mut bad_ip = good.clone();
    bad_ip["client_ip"] = json!("somewhere");
    let mut zero = good.clone();
    zero["count"] = json!(0);
    for (bad, field) in [
        (bad_class, "entries[1].status_class"),
        (bad_ip, "entries[1].client_ip"),
        (zero, "entries[1].count"),
    ] {
        let batch =
            json!({ "window_start": "2026-11-29T10:00:00Z", "entries": [good.clone(), bad] });
        let reply = app
            .call(Method::POST, "/v1/usage", Some(&key), Some(batch))
            .await;
        reply.assert_problem(400, "invalid-field");
        assert_eq!(reply.body["field"], field);
    }
    assert!(app.get(&format!("/v1/tokens/{token}")).await.body["last_used_at"].is_null());
    assert_eq!(app.audit_count("token.first_seen_ip").await, 0);
}
