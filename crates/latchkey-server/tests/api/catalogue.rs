//! The permission catalogue and roles.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::json;

both_backends!(
    the_catalogue_lists_builtins_and_vendor_permissions,
    a_malformed_permission_or_role_name_is_refused_naming_the_field,
    builtin_permissions_cannot_be_changed,
    a_role_with_an_unknown_permission_is_refused_and_not_stored,
    a_role_put_replaces_its_permissions,
    managers_can_read_but_not_change_the_catalogue,
);

async fn the_catalogue_lists_builtins_and_vendor_permissions(app: TestApp) {
    let reply = app
        .put(
            "/v1/permissions/reports:read",
            json!({ "description": "Read reports" }),
        )
        .await;
    reply.assert_status(200);
    assert_eq!(
        reply.body,
        json!({ "name": "reports:read", "description": "Read reports", "builtin": false })
    );
    let items = app.get("/v1/permissions").await.body["items"].clone();
    let names: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "latchkey:admin",
            "latchkey:introspect",
            "latchkey:manage",
            "reports:read"
        ]
    );
    assert_eq!(items[0]["builtin"], true);
}

async fn a_malformed_permission_or_role_name_is_refused_naming_the_field(app: TestApp) {
    let reply = app.put("/v1/permissions/Reports:Read", json!({})).await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "name");
    let reply = app
        .put("/v1/roles/Viewer", json!({ "permissions": [] }))
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "name");
    let reply = app
        .put("/v1/roles/viewer", json!({ "permissions": ["bad perm"] }))
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "permissions[0]");
    assert_eq!(
        app.get("/v1/permissions").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(app.get("/v1/roles").await.body["items"], json!([]));
}

async fn builtin_permissions_cannot_be_changed(app: TestApp) {
    let reply = app
        .put(
            "/v1/permissions/latchkey:admin",
            json!({ "description": "mine now" }),
        )
        .await;
    reply.assert_problem(409, "protected-resource");
    let items = app.get("/v1/permissions").await.body["items"].clone();
    assert_eq!(
        items[0]["description"],
        "Full control of latchkey, every tenant"
    );
}

async fn a_role_with_an_unknown_permission_is_refused_and_not_stored(app: TestApp) {
    let reply = app
        .put(
            "/v1/roles/viewer",
            json!({ "permissions": ["reports:read"] }),
        )
        .await;
    reply.assert_problem(422, "unknown-permission");
    assert_eq!(reply.body["permission"], "reports:read");
    assert_eq!(app.get("/v1/roles").await.body["items"], json!([]));
    assert_eq!(app.audit_count("role.put").await, 0);
}

async fn a_role_put_replaces_its_permissions(app: TestApp) {
    app.seed_catalogue().await;
    let reply = app
        .put(
            "/v1/roles/viewer",
            json!({ "permissions": ["billing:read", "reports:read", "billing:read"], "description": "Read-only" }),
        )
        .await;
    reply.assert_status(200);
    assert_eq!(
        reply.body,
        json!({ "name": "viewer", "permissions": ["billing:read", "reports:read"], "description": "Read-only" })
    );
    let roles = app.get("/v1/roles").await.body["items"].clone();
    assert_eq!(roles[1], reply.body);
    assert_eq!(roles[0]["name"], "editor");
}

async fn managers_can_read_but_not_change_the_catalogue(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let key = app.manager_key("acme").await;
    app.call(Method::GET, "/v1/roles", Some(&key), None)
        .await
        .assert_status(200);
    app.call(Method::GET, "/v1/permissions", Some(&key), None)
        .await
        .assert_status(200);
    let reply = app
        .call(
            Method::PUT,
            "/v1/roles/viewer",
            Some(&key),
            Some(json!({ "permissions": [] })),
        )
        .await;
    reply.assert_problem(403, "insufficient-scope");
    let roles = app.get("/v1/roles").await.body["items"].clone();
    assert_eq!(roles[1]["permissions"], json!(["reports:read"]));
}
