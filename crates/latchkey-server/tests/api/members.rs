//! Memberships, and what removing a member or deleting a user does to their tokens.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::json;

both_backends!(
    a_membership_shows_the_permissions_its_roles_give,
    an_unknown_role_is_refused_naming_it_and_nothing_is_stored,
    removing_a_membership_revokes_that_users_personal_tokens_in_that_tenant_only,
    deleting_a_user_revokes_and_removes_their_personal_tokens_everywhere,
    a_manager_cannot_hand_out_builtin_permissions_through_roles,
);

async fn a_membership_shows_the_permissions_its_roles_give(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let reply = app
        .put(
            "/v1/tenants/acme/users/u_42",
            json!({ "roles": ["viewer", "editor"] }),
        )
        .await;
    reply.assert_status(200);
    assert_eq!(
        reply.body,
        json!({"tenant_id": "acme", "user_id": "u_42", "roles": ["editor", "viewer"],
               "permissions": ["reports:read", "reports:write"]})
    );
    let listed = app.get("/v1/tenants/acme/users").await;
    assert_eq!(listed.body["items"], json!([reply.body]));
    app.put("/v1/tenants/nowhere/users/u_42", json!({ "roles": [] }))
        .await
        .assert_problem(404, "not-found");
}

async fn an_unknown_role_is_refused_naming_it_and_nothing_is_stored(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let reply = app
        .put(
            "/v1/tenants/acme/users/u_42",
            json!({ "roles": ["viewer", "owner"] }),
        )
        .await;
    reply.assert_problem(422, "unknown-role");
    assert_eq!(reply.body["role"], "owner");
    assert_eq!(
        app.get("/v1/tenants/acme/users").await.body["items"],
        json!([])
    );
    let reply = app
        .put("/v1/tenants/acme/users/bad%20user", json!({ "roles": [] }))
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "user_id");
}

async fn removing_a_membership_revokes_that_users_personal_tokens_in_that_tenant_only(
    app: TestApp,
) {
    app.seed_catalogue().await;
    for tenant in ["acme", "globex"] {
        app.create_tenant(tenant).await;
        app.put_member(tenant, "u_42", &["viewer"]).await;
    }
    let body = json!({ "name": "laptop", "kind": "api_key", "permissions": ["reports:read"] });
    let in_acme = app
        .create_personal_token("acme", "u_42", body.clone())
        .await;
    let in_globex = app.create_personal_token("globex", "u_42", body).await;
    app.delete("/v1/tenants/acme/users/u_42")
        .await
        .assert_status(204);
    let acme_token = app
        .get(&format!(
            "/v1/tokens/{}",
            in_acme["token"]["id"].as_str().unwrap()
        ))
        .await;
    assert!(acme_token.body["revoked_at"].is_string());
    let globex_token = app
        .get(&format!(
            "/v1/tokens/{}",
            in_globex["token"]["id"].as_str().unwrap()
        ))
        .await;
    assert!(globex_token.body["revoked_at"].is_null());
    assert_eq!(app.audit_count("membership.removed").await, 1);
    app.delete("/v1/tenants/acme/users/u_42")
        .await
        .assert_problem(404, "not-found");
}

async fn deleting_a_user_revokes_and_removes_their_personal_tokens_everywhere(app: TestApp) {
    app.seed_catalogue().await;
    for tenant in ["acme", "globex"] {
        app.create_tenant(tenant).await;
        app.put_member(tenant, "u_42", &["viewer"]).await;
    }
    let body = json!({ "name": "laptop", "kind": "api_key", "permissions": ["reports:read"] });
    let personal = [
        app.create_personal_token("acme", "u_42", body.clone())
            .await,
        app.create_personal_token("globex", "u_42", body).await,
    ];
    let tenant_token = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "api_key", "roles": ["viewer"], "created_by": "u_42" }),
        )
        .await;
    app.delete("/v1/users/u_42").await.assert_status(204);
    let db = app.db().await;
    for created in &personal {
        let id = created["token"]["id"].as_str().unwrap();
        app.get(&format!("/v1/tokens/{id}"))
            .await
            .assert_problem(404, "not-found");
        let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revocations WHERE subject = $1")
            .bind(id.to_owned())
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(logged, 1, "revocation of {id} is on the deny list");
    }
    // The tenant token survives the user who created it.
    let survivor = app
        .get(&format!(
            "/v1/tokens/{}",
            tenant_token["token"]["id"].as_str().unwrap()
        ))
        .await;
    assert!(survivor.body["revoked_at"].is_null());
    assert_eq!(
        app.get("/v1/tenants/acme/users").await.body["items"],
        json!([])
    );
    assert_eq!(app.audit_count("user.deleted").await, 1);
    app.delete("/v1/users/u_42")
        .await
        .assert_problem(404, "not-found");
}

async fn a_manager_cannot_hand_out_builtin_permissions_through_roles(app: TestApp) {
    app.put(
        "/v1/roles/superuser",
        json!({ "permissions": ["latchkey:admin"] }),
    )
    .await
    .assert_status(200);
    app.create_tenant("acme").await;
    let key = app.manager_key("acme").await;
    let reply = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/users/u_1",
            Some(&key),
            Some(json!({ "roles": ["superuser"] })),
        )
        .await;
    reply.assert_problem(422, "reserved-permission");
    assert_eq!(
        app.get("/v1/tenants/acme/users").await.body["items"],
        json!([])
    );
}
