//! The trust boundary at the server: a token never grants more than its roles and user
//! hold now (introspection and the management API), the management API takes only JWTs
//! meant for it, system-tenant managers cannot act on stronger tokens, and the feed
//! carries the state verifiers narrow with. Each attack comes with its control.

use crate::helpers::{Reply, TestApp};
use crate::{both_backends, both_backends_with};
use latchkey_core::jwt::b64url_decode;
use latchkey_server::config::Config;
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    a_personal_jwt_loses_what_its_user_lost_at_introspection,
    a_tenant_jwt_loses_what_its_role_lost_at_introspection,
    outstanding_access_jwts_and_api_keys_narrow_with_their_roles,
    a_role_that_gains_a_permission_never_widens_a_jwt,
    jwts_carry_their_grants_basis_and_allowlist,
    introspection_judges_the_client_ip_an_introspector_names,
    an_allowlisted_jwt_is_refused_at_the_management_api_from_elsewhere,
    a_management_jwt_loses_its_authority_with_its_role,
    a_system_manager_cannot_see_or_touch_admin_and_introspection_keys,
    the_feed_carries_role_and_member_state_compacted_to_the_latest,
    a_restarted_server_backfills_the_state_of_roles_and_members_once,
);

both_backends_with!(
    api_default_audience;
    a_default_audience_elsewhere_still_admits_management_tokens,
);

both_backends_with!(
    api_audience;
    the_management_api_refuses_a_jwt_minted_for_another_resource,
);

fn api_audience(config: &mut Config) {
    config.audiences = vec!["https://api.example.com".to_owned()];
}

fn api_default_audience(config: &mut Config) {
    config.audiences = vec!["https://api.example.com".to_owned()];
    config.default_audience = Some("https://api.example.com".to_owned());
}

fn claims(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64url_decode(part).unwrap()).unwrap()
}

async fn setup(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
}

fn scope(answer: &Value) -> &str {
    answer["scope"].as_str().unwrap_or_default()
}

async fn exchange(app: &TestApp, client_id: &str, secret: &str, extra: &[(&str, &str)]) -> String {
    let reply = app.exchange(client_id, secret, extra).await;
    reply.assert_status(200);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn a_personal_jwt_loses_what_its_user_lost_at_introspection(app: TestApp) {
    setup(&app).await;
    let created = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "laptop", "kind": "jwt", "permissions": ["reports:read", "reports:write"] }),
        )
        .await;
    let jwt = created["jwt"].as_str().unwrap().to_owned();
    let before = app.introspect(&jwt).await;
    assert_eq!(before["active"], true);
    assert_eq!(scope(&before), "reports:read reports:write");

    // The attack: the user is moved to a read-only role; the JWT must not keep writing.
    app.put_member("acme", "u_42", &["viewer"]).await;
    let after = app.introspect(&jwt).await;
    assert_eq!(after["active"], true, "control: reading still works");
    assert_eq!(scope(&after), "reports:read");
}

async fn a_tenant_jwt_loses_what_its_role_lost_at_introspection(app: TestApp) {
    setup(&app).await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "jwt", "roles": ["editor"] }),
        )
        .await;
    let jwt = created["jwt"].as_str().unwrap().to_owned();
    assert_eq!(
        scope(&app.introspect(&jwt).await),
        "reports:read reports:write"
    );
    app.put(
        "/v1/roles/editor",
        json!({ "permissions": ["reports:read"] }),
    )
    .await
    .assert_status(200);
    let after = app.introspect(&jwt).await;
    assert_eq!(after["active"], true);
    assert_eq!(scope(&after), "reports:read");
}

async fn outstanding_access_jwts_and_api_keys_narrow_with_their_roles(app: TestApp) {
    setup(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["editor"] })).await;
    let access = exchange(&app, &id, &secret, &[]).await;
    let key = app
        .create_tenant_token(
            "acme",
            json!({ "name": "k", "kind": "api_key", "roles": ["editor"] }),
        )
        .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for credential in [&access, &key] {
        assert_eq!(
            scope(&app.introspect(credential).await),
            "reports:read reports:write"
        );
    }
    app.put(
        "/v1/roles/editor",
        json!({ "permissions": ["reports:read"] }),
    )
    .await
    .assert_status(200);
    for credential in [&access, &key] {
        let answer = app.introspect(credential).await;
        assert_eq!(answer["active"], true);
        assert_eq!(scope(&answer), "reports:read");
    }
    // A new exchange asking for the lost permission is refused; the rest still works.
    let reply = app
        .exchange(&id, &secret, &[("scope", "reports:write")])
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"], "invalid_scope");
    let fresh = exchange(&app, &id, &secret, &[]).await;
    assert_eq!(claims(&fresh)["scope"], "reports:read");
}

async fn a_role_that_gains_a_permission_never_widens_a_jwt(app: TestApp) {
    setup(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let access = exchange(&app, &id, &secret, &[]).await;
    app.put(
        "/v1/roles/viewer",
        json!({ "permissions": ["reports:read", "billing:read"] }),
    )
    .await
    .assert_status(200);
    assert_eq!(scope(&app.introspect(&access).await), "reports:read");
}

async fn jwts_carry_their_grants_basis_and_allowlist(app: TestApp) {
    setup(&app).await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "permissions": ["billing:read"], "ip_allowlist": ["127.0.0.0/8"] }),
        )
        .await;
    let access = claims(&exchange(&app, &id, &secret, &[]).await);
    assert_eq!(access["rol"], json!(["viewer"]));
    assert_eq!(access["prm"], json!(["billing:read"]));
    assert_eq!(access["ipa"], json!(["127.0.0.0/8"]));
    let open = app
        .create_tenant_token(
            "acme",
            json!({ "name": "j", "kind": "jwt", "roles": ["viewer"] }),
        )
        .await;
    let long_lived = claims(open["jwt"].as_str().unwrap());
    assert_eq!(long_lived["rol"], json!(["viewer"]));
    assert_eq!(long_lived["prm"], json!([]));
    assert!(long_lived.get("ipa").is_none(), "no allowlist, no claim");
    let answer = app.introspect(open["jwt"].as_str().unwrap()).await;
    assert_eq!(answer["rol"], json!(["viewer"]));
    assert_eq!(answer["prm"], json!([]));
}

async fn introspection_judges_the_client_ip_an_introspector_names(app: TestApp) {
    setup(&app).await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "pinned", "kind": "jwt", "roles": ["viewer"], "ip_allowlist": ["203.0.113.0/24"] }),
        )
        .await;
    let jwt = created["jwt"].as_str().unwrap().to_owned();
    let introspector = app.introspection_key().await;
    let inside = app
        .introspect_as(&introspector, &jwt, &[("client_ip", "203.0.113.7")])
        .await;
    assert_eq!(inside["active"], true);
    let outside = app
        .introspect_as(&introspector, &jwt, &[("client_ip", "198.51.100.7")])
        .await;
    assert_eq!(outside, json!({ "active": false }));
    // Without client_ip the introspector enforces the allowlist it is given.
    let deferred = app.introspect_as(&introspector, &jwt, &[]).await;
    assert_eq!(deferred["active"], true);
    assert_eq!(deferred["ip_allowlist"], json!(["203.0.113.0/24"]));
    // A caller holding only latchkey:admin is judged by its own address (loopback here).
    assert_eq!(app.introspect(&jwt).await, json!({ "active": false }));
    let refused = app
        .form(
            "/oauth/introspect",
            Some(&format!("Bearer {}", app.root_key)),
            &[("token", &jwt), ("client_ip", "203.0.113.7")],
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"], "invalid_request");
    for bad in ["203.0.113", "203.0.113.7/32", " 203.0.113.7", "::ffff:zz"] {
        let reply = app
            .form(
                "/oauth/introspect",
                Some(&format!("Bearer {introspector}")),
                &[("token", &jwt), ("client_ip", bad)],
            )
            .await;
        assert_eq!(reply.status, 400, "client_ip {bad:?}");
        assert_eq!(reply.body["error"], "invalid_request");
    }
}

async fn an_allowlisted_jwt_is_refused_at_the_management_api_from_elsewhere(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let bearer = |allow: &str| json!({ "name": allow, "kind": "jwt", "permissions": ["latchkey:manage"], "ip_allowlist": [allow] });
    let elsewhere = app.create_tenant_token("acme", bearer("10.0.0.0/8")).await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let here = app.create_tenant_token("acme", bearer("127.0.0.1")).await["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = |jwt: String| {
        let app = &app;
        async move {
            app.send(
                app.request(Method::GET, "/v1/tenants/acme/tokens")
                    .bearer_auth(jwt),
            )
            .await
        }
    };
    list(elsewhere).await.assert_problem(401, "invalid-token");
    list(here).await.assert_status(200);
}

async fn the_management_api_refuses_a_jwt_minted_for_another_resource(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (id, secret) = app
        .client("acme", json!({ "permissions": ["latchkey:manage"] }))
        .await;
    let api = &app;
    let foreign = exchange(
        api,
        &id,
        &secret,
        &[("resource", "https://api.example.com")],
    )
    .await;
    assert_eq!(claims(&foreign)["aud"], "https://api.example.com");
    let list = |jwt: &str| {
        api.send(
            api.request(Method::GET, "/v1/tenants/acme/tokens")
                .bearer_auth(jwt),
        )
    };
    let refused: Reply = list(&foreign).await;
    refused.assert_problem(401, "invalid-token");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("audience")
    );
    // Control: the same client's token without `resource` is meant for the server.
    let own = exchange(api, &id, &secret, &[]).await;
    list(&own).await.assert_status(200);
}

async fn a_default_audience_elsewhere_still_admits_management_tokens(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (manager_id, manager_secret) = app
        .client("acme", json!({ "permissions": ["latchkey:manage"] }))
        .await;
    let managing = exchange(&app, &manager_id, &manager_secret, &[]).await;
    assert_eq!(
        claims(&managing)["aud"],
        json!(["https://api.example.com", app.base])
    );
    app.send(
        app.request(Method::GET, "/v1/tenants/acme/tokens")
            .bearer_auth(&managing),
    )
    .await
    .assert_status(200);
    let long_lived = app
        .create_tenant_token(
            "acme",
            json!({ "name": "m", "kind": "jwt", "permissions": ["latchkey:manage"] }),
        )
        .await;
    app.send(
        app.request(Method::GET, "/v1/tenants/acme/tokens")
            .bearer_auth(long_lived["jwt"].as_str().unwrap()),
    )
    .await
    .assert_status(200);
    // A token holding no built-in permission is for the API alone.
    let (reader_id, reader_secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let reading = exchange(&app, &reader_id, &reader_secret, &[]).await;
    assert_eq!(claims(&reading)["aud"], "https://api.example.com");
}

async fn a_management_jwt_loses_its_authority_with_its_role(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put(
        "/v1/roles/admins",
        json!({ "permissions": ["latchkey:manage", "reports:read"] }),
    )
    .await
    .assert_status(200);
    let (id, secret) = app.client("acme", json!({ "roles": ["admins"] })).await;
    let access = exchange(&app, &id, &secret, &[]).await;
    let list = || {
        app.send(
            app.request(Method::GET, "/v1/tenants/acme/tokens")
                .bearer_auth(&access),
        )
    };
    list().await.assert_status(200);
    app.put(
        "/v1/roles/admins",
        json!({ "permissions": ["reports:read"] }),
    )
    .await
    .assert_status(200);
    list().await.assert_problem(403, "insufficient-scope");
}

async fn a_system_manager_cannot_see_or_touch_admin_and_introspection_keys(app: TestApp) {
    app.seed_catalogue().await;
    let manager = app.manager_key("latchkey").await;
    let introspector = app.introspection_key().await;
    let plain = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "plain", "kind": "api_key", "permissions": ["reports:read"] }),
        )
        .await["token"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_manager = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        let manager = manager.clone();
        async move {
            let mut request = app.request(method, &path).bearer_auth(manager);
            if let Some(body) = body {
                request = request.json(&body);
            }
            app.send(request).await
        }
    };
    let all = app.get("/v1/tenants/latchkey/tokens").await.body["items"]
        .as_array()
        .unwrap()
        .clone();
    let strong: Vec<String> = all
        .iter()
        .filter(|t| {
            t["permissions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == "latchkey:admin" || p == "latchkey:introspect")
        })
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(strong.len(), 2, "the root key and the introspection key");

    let listed = as_manager(Method::GET, "/v1/tenants/latchkey/tokens".into(), None).await;
    listed.assert_status(200);
    let seen: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(seen.contains(&plain.as_str()), "control: {seen:?}");
    for id in &strong {
        assert!(!seen.contains(&id.as_str()), "{id} listed to a manager");
        let path = format!("/v1/tokens/{id}");
        let before = app.get(&path).await.body;
        as_manager(Method::GET, path.clone(), None)
            .await
            .assert_problem(404, "not-found");
        as_manager(
            Method::PATCH,
            path.clone(),
            Some(json!({ "name": "pwned" })),
        )
        .await
        .assert_problem(404, "not-found");
        as_manager(Method::DELETE, path.clone(), None)
            .await
            .assert_problem(404, "not-found");
        as_manager(Method::GET, format!("{path}/usage"), None)
            .await
            .assert_problem(404, "not-found");
        assert_eq!(app.get(&path).await.body, before, "nothing changed");
    }
    // The keys still work.
    app.get("/v1/tenants").await.assert_status(200);
    assert_eq!(
        app.introspect_as(&introspector, &manager, &[]).await["active"],
        true
    );
    // Control: the manager acts on the ordinary system-tenant token.
    let path = format!("/v1/tokens/{plain}");
    as_manager(
        Method::PATCH,
        path.clone(),
        Some(json!({ "name": "renamed" })),
    )
    .await
    .assert_status(200);
    as_manager(Method::DELETE, path, None)
        .await
        .assert_status(204);
    assert_eq!(app.audit_count("token.revoked").await, 1);
}

async fn feed_entries(app: &TestApp) -> Vec<Value> {
    let reply = app.get("/v1/revocations?after=0&limit=10000").await;
    reply.assert_status(200);
    reply.body["entries"].as_array().unwrap().clone()
}

fn state_of<'e>(entries: &'e [Value], kind: &str, subject: &str) -> Vec<&'e Value> {
    entries
        .iter()
        .filter(|e| e["kind"] == kind && e["subject"] == subject)
        .collect()
}

async fn the_feed_carries_role_and_member_state_compacted_to_the_latest(app: TestApp) {
    setup(&app).await;
    app.put(
        "/v1/roles/editor",
        json!({ "permissions": ["reports:write"] }),
    )
    .await
    .assert_status(200);
    app.put_member("acme", "u_42", &["viewer", "editor"]).await;
    let entries = feed_entries(&app).await;
    let editor = state_of(&entries, "role", "editor");
    assert_eq!(editor.len(), 1, "compacted: {editor:?}");
    assert_eq!(editor[0]["permissions"], json!(["reports:write"]));
    assert!(editor[0]["tenant_id"].is_null());
    let member = state_of(&entries, "member", "u_42");
    assert_eq!(member.len(), 1);
    assert_eq!(member[0]["tenant_id"], "acme");
    assert_eq!(member[0]["roles"], json!(["editor", "viewer"]));
    let seqs: Vec<i64> = entries.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");

    app.delete("/v1/tenants/acme/users/u_42")
        .await
        .assert_status(204);
    let entries = feed_entries(&app).await;
    let member = state_of(&entries, "member", "u_42");
    assert_eq!(member.len(), 1);
    assert_eq!(
        member[0]["roles"],
        json!([]),
        "an ended membership holds no roles"
    );
    let last = entries.last().unwrap();
    assert_eq!(last["kind"], "member");
}

async fn a_restarted_server_backfills_the_state_of_roles_and_members_once(app: TestApp) {
    setup(&app).await;
    // A database from before the feed carried state: no state entries, marker unset.
    let db = app.db().await;
    sqlx::query("DELETE FROM revocations WHERE kind IN ('role', 'member')")
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_heads SET seq = 0 WHERE name = 'feed_state'")
        .execute(&db)
        .await
        .unwrap();
    assert!(state_of(&feed_entries(&app).await, "role", "viewer").is_empty());
    let restarted = app.replica(|_| {}).await;
    let entries = feed_entries(&restarted).await;
    assert_eq!(
        state_of(&entries, "role", "viewer")[0]["permissions"],
        json!(["reports:read"])
    );
    assert_eq!(
        state_of(&entries, "member", "u_42")[0]["roles"],
        json!(["editor"])
    );
    let count = entries.len();
    let again = app.replica(|_| {}).await;
    assert_eq!(feed_entries(&again).await.len(), count, "once only");
}
