//! Tenant and personal tokens: creation of every kind, the grant rules, listing,
//! immutability, visibility across tenants and revocation.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;

both_backends!(
    each_kind_returns_its_secret_once_and_reads_show_only_a_hint,
    unknown_roles_and_permissions_are_refused_naming_them,
    personal_token_cannot_exceed_owner_permissions,
    tenant_token_cannot_exceed_its_creators_permissions,
    managers_cannot_mint_tokens_stronger_than_themselves,
    bad_token_values_are_refused_and_nothing_is_created,
    patching_anything_but_the_name_is_refused_and_changes_nothing,
    renaming_changes_only_the_name,
    another_tenants_token_is_invisible_to_a_manager,
    revoking_twice_is_idempotent,
    tokens_are_listed_newest_first_with_a_cursor,
    a_thousand_concurrent_creations_get_distinct_ids_and_secrets,
);

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["viewer"]).await;
}

fn token_path(created: &Value) -> String {
    format!("/v1/tokens/{}", created["token"]["id"].as_str().unwrap())
}

async fn tenant_token_count(app: &TestApp) -> usize {
    app.get("/v1/tenants/acme/tokens").await.body["items"]
        .as_array()
        .unwrap()
        .len()
}

async fn each_kind_returns_its_secret_once_and_reads_show_only_a_hint(app: TestApp) {
    acme(&app).await;
    let cc = app
        .create_tenant_token("acme", json!({ "name": "ci deploy", "kind": "client_credentials", "roles": ["viewer"], "created_by": "u_42" }))
        .await;
    let id = cc["token"]["id"].as_str().unwrap();
    assert_eq!(cc["client_id"], id);
    uuid::Uuid::parse_str(id).unwrap();
    let secret = cc["client_secret"].as_str().unwrap();
    assert!(
        secret.starts_with("lk_sk_") && secret.len() == 55,
        "{secret}"
    );
    assert_eq!(
        cc["token"]["secret_hint"],
        format!("lk_sk_…{}", &secret[secret.len() - 4..])
    );
    assert_eq!(
        cc["token"]["owner"],
        json!({ "type": "tenant", "tenant_id": "acme" })
    );
    assert_eq!(cc["token"]["access_token_ttl_seconds"], 900);
    assert_eq!(cc["token"]["created_by"], "u_42");

    let key = app
        .create_tenant_token(
            "acme",
            json!({ "name": "key", "kind": "api_key", "permissions": ["reports:read"] }),
        )
        .await;
    let api_key = key["api_key"].as_str().unwrap();
    assert!(
        api_key.starts_with("lk_ak_") && api_key.len() == 77,
        "{api_key}"
    );
    assert!(key.get("client_secret").is_none());

    let jwt = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "jwt", "kind": "jwt", "permissions": ["reports:read"] }),
        )
        .await;
    let long_lived = jwt["jwt"].as_str().unwrap();
    assert_eq!(long_lived.split('.').count(), 3);
    assert_eq!(
        jwt["token"]["secret_hint"],
        format!("jwt…{}", &long_lived[long_lived.len() - 4..])
    );
    assert_eq!(
        jwt["token"]["owner"],
        json!({ "type": "user", "tenant_id": "acme", "user_id": "u_42" })
    );
    assert_eq!(jwt["token"]["created_by"], "u_42");

    for created in [&cc, &key] {
        let read = app.get(&token_path(created)).await;
        read.assert_status(200);
        assert_eq!(read.header("cache-control"), "no-store");
        assert_eq!(read.body, created["token"]);
        assert!(!read.text.contains(secret) && !read.text.contains(api_key));
    }
    assert_eq!(app.audit_count("token.created").await, 4);
}

async fn unknown_roles_and_permissions_are_refused_naming_them(app: TestApp) {
    acme(&app).await;
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "api_key", "roles": ["owner"] }),
        )
        .await;
    reply.assert_problem(422, "unknown-role");
    assert_eq!(reply.body["role"], "owner");
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "api_key", "permissions": ["reports:delete"] }),
        )
        .await;
    reply.assert_problem(422, "unknown-permission");
    assert_eq!(reply.body["permission"], "reports:delete");
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "api_key", "permissions": ["Reports"] }),
        )
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "permissions[0]");
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "password" }),
        )
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "kind");
    assert_eq!(tenant_token_count(&app).await, 0);
    assert_eq!(app.audit_count("token.created").await, 1);
}

async fn personal_token_cannot_exceed_owner_permissions(app: TestApp) {
    acme(&app).await;
    let reply = app
        .post(
            "/v1/tenants/acme/users/u_42/tokens",
            json!({ "name": "x", "kind": "api_key", "permissions": ["reports:write"] }),
        )
        .await;
    reply.assert_problem(403, "permission-not-held");
    assert_eq!(
        reply.body["detail"],
        "user u_42 does not hold reports:write in tenant acme"
    );
    assert_eq!(reply.body["permission"], "reports:write");
    let listed = app.get("/v1/tenants/acme/users/u_42/tokens").await;
    assert_eq!(listed.body["items"], json!([]));
    let reply = app
        .post(
            "/v1/tenants/acme/users/u_42/tokens",
            json!({ "name": "x", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "roles");
    app.post(
        "/v1/tenants/acme/users/u_99/tokens",
        json!({ "name": "x", "kind": "api_key" }),
    )
    .await
    .assert_problem(404, "not-found");
}

async fn tenant_token_cannot_exceed_its_creators_permissions(app: TestApp) {
    acme(&app).await;
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "client_credentials", "roles": ["editor"], "created_by": "u_42" }),
        )
        .await;
    reply.assert_problem(403, "permission-not-held");
    assert_eq!(
        reply.body["detail"],
        "user u_42 does not hold reports:write in tenant acme"
    );
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "client_credentials", "roles": ["viewer"], "created_by": "u_99" }),
        )
        .await;
    reply.assert_problem(422, "unknown-member");
    assert_eq!(reply.body["user_id"], "u_99");
    assert_eq!(tenant_token_count(&app).await, 0);
}

async fn managers_cannot_mint_tokens_stronger_than_themselves(app: TestApp) {
    acme(&app).await;
    let key = app.manager_key("acme").await;
    let create = |body: Value| {
        let key = key.clone();
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/tenants/acme/tokens",
                Some(&key),
                Some(body),
            )
            .await
        }
    };
    let reply =
        create(json!({ "name": "x", "kind": "api_key", "permissions": ["latchkey:admin"] })).await;
    reply.assert_problem(422, "reserved-permission");
    let reply =
        create(json!({ "name": "x", "kind": "api_key", "permissions": ["latchkey:introspect"] }))
            .await;
    reply.assert_problem(422, "reserved-permission");
    create(json!({ "name": "sub-manager", "kind": "api_key", "permissions": ["latchkey:manage", "reports:write"] }))
        .await
        .assert_status(201);
    // Even the admin cannot put system-only permissions outside the system tenant.
    let reply = app
        .post(
            "/v1/tenants/acme/tokens",
            json!({ "name": "x", "kind": "api_key", "permissions": ["latchkey:admin"] }),
        )
        .await;
    reply.assert_problem(422, "reserved-permission");
    assert_eq!(tenant_token_count(&app).await, 2);
}

async fn bad_token_values_are_refused_and_nothing_is_created(app: TestApp) {
    acme(&app).await;
    let cases = [
        (
            json!({ "name": "", "kind": "api_key" }),
            400,
            "invalid-field",
            "name",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "expires_at": "2001-01-01T00:00:00Z" }),
            422,
            "invalid-value",
            "expires_at",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "expires_at": "tomorrow" }),
            400,
            "invalid-field",
            "expires_at",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "access_token_ttl_seconds": 0 }),
            422,
            "invalid-value",
            "access_token_ttl_seconds",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "access_token_ttl_seconds": 999999 }),
            422,
            "invalid-value",
            "access_token_ttl_seconds",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "refresh_tokens": true }),
            422,
            "invalid-value",
            "refresh_tokens",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "ip_allowlist": ["10.0.0.1/8"] }),
            400,
            "invalid-field",
            "ip_allowlist[0]",
        ),
        (
            json!({ "name": "x", "kind": "api_key", "created_by": "not a user" }),
            400,
            "invalid-field",
            "created_by",
        ),
    ];
    for (body, status, code, field) in cases {
        let reply = app.post("/v1/tenants/acme/tokens", body.clone()).await;
        reply.assert_problem(status, code);
        assert_eq!(reply.body["field"], field, "{body}");
    }
    assert_eq!(tenant_token_count(&app).await, 0);
}

async fn patching_anything_but_the_name_is_refused_and_changes_nothing(app: TestApp) {
    acme(&app).await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "client_credentials", "roles": ["viewer"], "ip_allowlist": ["10.0.0.0/8"] }),
        )
        .await;
    let path = token_path(&created);
    let before = app.get(&path).await.text;
    let attempts = [
        ("permissions", json!(["reports:write"])),
        ("roles", json!(["editor"])),
        ("kind", json!("api_key")),
        ("expires_at", json!("2099-01-01T00:00:00Z")),
        ("ip_allowlist", json!([])),
        ("owner", json!({ "type": "tenant", "tenant_id": "globex" })),
        ("refresh_tokens", json!(true)),
        ("access_token_ttl_seconds", json!(60)),
    ];
    for (field, value) in attempts {
        let reply = app
            .patch(&path, json!({ field: value, "name": "renamed" }))
            .await;
        reply.assert_problem(422, "immutable-field");
        assert_eq!(reply.body["field"], field);
        assert_eq!(
            reply.body["detail"],
            format!("only `name` can change; `{field}` is immutable")
        );
    }
    let reply = app.patch(&path, json!({ "colour": "red" })).await;
    reply.assert_problem(400, "invalid-field");
    assert_eq!(reply.body["field"], "colour");
    app.patch(&path, json!({}))
        .await
        .assert_problem(400, "invalid-field");
    app.patch(&path, json!({ "name": 7 }))
        .await
        .assert_problem(400, "invalid-field");
    assert_eq!(
        app.get(&path).await.text,
        before,
        "the stored token is byte-for-byte unchanged"
    );
    assert_eq!(app.audit_count("token.renamed").await, 0);
}

async fn renaming_changes_only_the_name(app: TestApp) {
    acme(&app).await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "api_key", "roles": ["viewer"] }),
        )
        .await;
    let path = token_path(&created);
    let reply = app
        .patch(&path, json!({ "name": "ci deploy (prod)" }))
        .await;
    reply.assert_status(200);
    let mut expected = created["token"].clone();
    expected["name"] = json!("ci deploy (prod)");
    assert_eq!(reply.body, expected);
    assert_eq!(app.get(&path).await.body, expected);
    assert_eq!(app.audit_count("token.renamed").await, 1);
}

async fn another_tenants_token_is_invisible_to_a_manager(app: TestApp) {
    acme(&app).await;
    app.create_tenant("globex").await;
    let theirs = app
        .create_tenant_token("globex", json!({ "name": "theirs", "kind": "api_key" }))
        .await;
    let path = token_path(&theirs);
    let before = app.get(&path).await.text;
    let key = app.manager_key("acme").await;
    let read = app.call(Method::GET, &path, Some(&key), None).await;
    read.assert_problem(404, "not-found");
    let rename = app
        .call(
            Method::PATCH,
            &path,
            Some(&key),
            Some(json!({ "name": "mine" })),
        )
        .await;
    rename.assert_problem(404, "not-found");
    let revoke = app.call(Method::DELETE, &path, Some(&key), None).await;
    revoke.assert_problem(404, "not-found");
    let list = app
        .call(Method::GET, "/v1/tenants/globex/tokens", Some(&key), None)
        .await;
    list.assert_problem(404, "not-found");
    let unknown = app
        .call(
            Method::GET,
            "/v1/tokens/00000000-0000-4000-8000-000000000000",
            Some(&key),
            None,
        )
        .await;
    unknown.assert_problem(404, "not-found");
    assert_eq!(app.get(&path).await.text, before);
}

async fn revoking_twice_is_idempotent(app: TestApp) {
    acme(&app).await;
    let created = app
        .create_tenant_token("acme", json!({ "name": "x", "kind": "client_credentials" }))
        .await;
    let path = token_path(&created);
    app.delete(&path).await.assert_status(204);
    let first = app.get(&path).await.body;
    assert!(first["revoked_at"].is_string());
    app.delete(&path).await.assert_status(204);
    assert_eq!(app.get(&path).await.body, first);
    assert_eq!(app.audit_count("token.revoked").await, 1);
    let db = app.db().await;
    let logged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM revocations WHERE kind = 'token'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(logged, 1);
    app.delete("/v1/tokens/not-a-uuid")
        .await
        .assert_problem(400, "invalid-field");
}

async fn tokens_are_listed_newest_first_with_a_cursor(app: TestApp) {
    acme(&app).await;
    let mut created = Vec::new();
    for n in 0..5 {
        let token = app
            .create_tenant_token(
                "acme",
                json!({ "name": format!("t{n}"), "kind": "api_key" }),
            )
            .await;
        created.push(token["token"]["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut path = "/v1/tenants/acme/tokens?limit=2".to_owned();
    loop {
        let page = app.get(&path).await;
        page.assert_status(200);
        for item in page.body["items"].as_array().unwrap() {
            assert!(item.get("api_key").is_none());
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tenants/acme/tokens?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let mut newest_first = created.clone();
    newest_first.reverse();
    // Tokens created in the same millisecond order by id; compare as sets, then order
    // by creation time.
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        created.iter().collect::<HashSet<_>>()
    );
    assert_eq!(seen.len(), 5);
    let personal = app.get("/v1/tenants/acme/users/u_42/tokens").await;
    assert_eq!(personal.body["items"], json!([]));
}

async fn a_thousand_concurrent_creations_get_distinct_ids_and_secrets(app: TestApp) {
    acme(&app).await;
    let app = std::sync::Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..1000 {
        let app = app.clone();
        tasks.spawn(async move {
            let kind = if n % 2 == 0 {
                "api_key"
            } else {
                "client_credentials"
            };
            let reply = app
                .post(
                    "/v1/tenants/acme/tokens",
                    json!({ "name": format!("t{n}"), "kind": kind }),
                )
                .await;
            reply.assert_status(201);
            let secret = reply.body["api_key"]
                .as_str()
                .or(reply.body["client_secret"].as_str())
                .unwrap()
                .to_owned();
            (
                reply.body["token"]["id"].as_str().unwrap().to_owned(),
                secret,
            )
        });
    }
    let mut ids = HashSet::new();
    let mut secrets = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (id, secret) = done.unwrap();
        ids.insert(id);
        secrets.insert(secret);
    }
    assert_eq!(ids.len(), 1000);
    assert_eq!(secrets.len(), 1000);
    let db = app.db().await;
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT id) FROM tokens WHERE tenant_id = 'acme'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(stored, 1000);
}
