//! Request bodies: JSON only, at most 64 KiB, no unknown fields; a refusal changes
//! nothing.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::json;

both_backends!(
    a_body_over_64_kib_is_refused_with_413,
    a_body_that_is_not_json_is_refused_with_400,
    a_body_without_a_json_content_type_is_refused_with_400,
    an_unknown_field_is_refused_with_400_naming_it,
    a_body_that_is_not_an_object_is_refused_with_400,
);

async fn tenants_count(app: &TestApp) -> usize {
    app.get("/v1/tenants").await.body["items"]
        .as_array()
        .unwrap()
        .len()
}

async fn a_body_over_64_kib_is_refused_with_413(app: TestApp) {
    let body = json!({ "id": "big", "name": "x".repeat(70 * 1024) }).to_string();
    let reply = app
        .raw(
            Method::POST,
            "/v1/tenants",
            "application/json",
            body.into_bytes(),
        )
        .await;
    reply.assert_problem(413, "payload-too-large");
    assert_eq!(tenants_count(&app).await, 1);
}

async fn a_body_that_is_not_json_is_refused_with_400(app: TestApp) {
    for body in ["{\"id\": ", "id=acme", "{\"id\":\"acme\"} trailing"] {
        let reply = app
            .raw(
                Method::POST,
                "/v1/tenants",
                "application/json",
                body.as_bytes().to_vec(),
            )
            .await;
        reply.assert_problem(400, "invalid-body");
    }
    assert_eq!(tenants_count(&app).await, 1);
}

async fn a_body_without_a_json_content_type_is_refused_with_400(app: TestApp) {
    let reply = app
        .raw(
            Method::POST,
            "/v1/tenants",
            "text/plain",
            br#"{"id":"acme"}"#.to_vec(),
        )
        .await;
    reply.assert_problem(400, "invalid-body");
    assert_eq!(tenants_count(&app).await, 1);
}

async fn an_unknown_field_is_refused_with_400_naming_it(app: TestApp) {
    let reply = app
        .post("/v1/tenants", json!({ "id": "acme", "plan": "gold" }))
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "plan");
    assert_eq!(
        reply.body["detail"],
        "`plan` is not a field of this request (expected `id` or `name`)"
    );
    app.create_tenant("acme").await;
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "api_key", "scopes": [] }),
        )
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "scopes");
    assert_eq!(
        app.get("/v1/tenants/acme/tokens").await.body["items"],
        json!([])
    );
}

/// serde reads a derived struct from an array, member by position: `["acme"]` would
/// create tenant acme. Every body of the API is an object.
async fn a_body_that_is_not_an_object_is_refused_with_400(app: TestApp) {
    for body in [
        json!(["acme"]),
        json!(["acme", "Acme"]),
        json!("acme"),
        json!(7),
    ] {
        let reply = app.post("/v1/tenants", body.clone()).await;
        reply.assert_problem(400, "invalid-body");
        assert_eq!(
            reply.body["detail"], "the request body must be a JSON object",
            "{body}"
        );
    }
    assert_eq!(tenants_count(&app).await, 1);
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let positional = app
        .put("/v1/tenants/acme/users/u_42", json!([["viewer"]]))
        .await;
    positional.assert_problem(400, "invalid-body");
    let members = app.get("/v1/tenants/acme/users").await;
    assert_eq!(members.body["items"], json!([]));
    // The control: the same member as an object.
    app.post("/v1/tenants", json!({ "id": "globex" }))
        .await
        .assert_status(201);
}
