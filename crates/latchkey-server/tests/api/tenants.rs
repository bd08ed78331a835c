//! Tenants: creation, listing, visibility and deletion.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::json;

both_backends!(
    a_tenant_is_created_once_and_a_duplicate_id_conflicts,
    a_malformed_tenant_id_is_refused_naming_the_field,
    tenants_are_listed_by_id_with_a_cursor,
    a_manager_sees_only_its_own_tenant,
    deleting_a_tenant_revokes_and_removes_its_tokens,
    the_system_tenant_cannot_be_deleted,
);

async fn a_tenant_is_created_once_and_a_duplicate_id_conflicts(app: TestApp) {
    let reply = app
        .post("/v1/tenants", json!({ "id": "acme", "name": "Acme Inc." }))
        .await;
    reply.assert_status(201);
    assert_eq!(reply.body["id"], "acme");
    assert_eq!(reply.body["name"], "Acme Inc.");
    assert!(reply.body["created_at"].as_str().unwrap().ends_with('Z'));
    let again = app
        .post("/v1/tenants", json!({ "id": "acme", "name": "Other" }))
        .await;
    again.assert_problem(409, "already-exists");
    assert_eq!(app.get("/v1/tenants/acme").await.body["name"], "Acme Inc.");
    assert_eq!(app.audit_count("tenant.created").await, 2);
}

async fn a_malformed_tenant_id_is_refused_naming_the_field(app: TestApp) {
    for id in ["", "a b", "ä", &"x".repeat(129)] {
        let reply = app.post("/v1/tenants", json!({ "id": id })).await;
        reply.assert_problem(400, "invalid-field");
        assert_eq!(reply.body["field"], "id");
    }
    let reply = app.get("/v1/tenants/a%20b").await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "tenant_id");
    assert_eq!(
        app.get("/v1/tenants").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

async fn tenants_are_listed_by_id_with_a_cursor(app: TestApp) {
    for id in ["c", "a", "b"] {
        app.create_tenant(id).await;
    }
    let first = app.get("/v1/tenants?limit=2").await;
    first.assert_status(200);
    let ids: Vec<&str> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/v1/tenants?limit=2&cursor={cursor}"))
        .await;
    let ids: Vec<&str> = second.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "latchkey"]);
    assert!(second.body["next_cursor"].is_null());
    app.get("/v1/tenants?limit=0")
        .await
        .assert_problem(400, "invalid-field");
    app.get("/v1/tenants?cursor=%%%")
        .await
        .assert_problem(400, "invalid-field");
    app.get("/v1/tenants?color=red")
        .await
        .assert_problem(400, "invalid-field");
}

async fn a_manager_sees_only_its_own_tenant(app: TestApp) {
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let key = app.manager_key("acme").await;
    let own = app
        .call(Method::GET, "/v1/tenants/acme", Some(&key), None)
        .await;
    own.assert_status(200);
    let other = app
        .call(Method::GET, "/v1/tenants/globex", Some(&key), None)
        .await;
    other.assert_problem(404, "not-found");
    let missing = app
        .call(Method::GET, "/v1/tenants/nowhere", Some(&key), None)
        .await;
    missing.assert_problem(404, "not-found");
    assert_eq!(
        other.body["detail"]
            .as_str()
            .unwrap()
            .replace("globex", "X"),
        missing.body["detail"]
            .as_str()
            .unwrap()
            .replace("nowhere", "X")
    );
    let delete = app
        .call(Method::DELETE, "/v1/tenants/globex", Some(&key), None)
        .await;
    delete.assert_problem(404, "not-found");
    app.get("/v1/tenants/globex").await.assert_status(200);
}

async fn deleting_a_tenant_revokes_and_removes_its_tokens(app: TestApp) {
    app.create_tenant("acme").await;
    let key = app.manager_key("acme").await;
    let id = app.get("/v1/tenants/acme/tokens").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete("/v1/tenants/acme").await.assert_status(204);
    app.get("/v1/tenants/acme")
        .await
        .assert_problem(404, "not-found");
    app.get(&format!("/v1/tokens/{id}"))
        .await
        .assert_problem(404, "not-found");
    let reply = app
        .call(Method::GET, "/v1/tenants/acme", Some(&key), None)
        .await;
    reply.assert_problem(401, "invalid-token");
    let db = app.db().await;
    let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revocations WHERE subject = $1")
        .bind(id)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(logged, 1);
    assert_eq!(app.audit_count("tenant.deleted").await, 1);
    app.delete("/v1/tenants/acme")
        .await
        .assert_problem(404, "not-found");
}

async fn the_system_tenant_cannot_be_deleted(app: TestApp) {
    app.delete("/v1/tenants/latchkey")
        .await
        .assert_problem(409, "protected-resource");
    app.get("/v1/tenants/latchkey").await.assert_status(200);
}
