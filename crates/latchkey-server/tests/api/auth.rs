//! Who may call the management API, and the 401/403 answers for everyone else.

use crate::both_backends;
use crate::helpers::TestApp;
use reqwest::Method;
use serde_json::json;

both_backends!(
    a_missing_credential_gets_a_bare_bearer_challenge,
    malformed_and_foreign_credentials_get_invalid_token,
    a_key_whose_checksum_does_not_match_is_refused_before_any_lookup,
    a_revoked_key_no_longer_authenticates,
    an_expired_key_no_longer_authenticates,
    a_key_without_manage_or_admin_gets_insufficient_scope,
    a_key_outside_its_ip_allowlist_is_refused,
    an_access_jwt_with_manage_authenticates_within_its_scope,
    two_authorization_headers_are_refused_wherever_a_bearer_is_read,
);

async fn a_missing_credential_gets_a_bare_bearer_challenge(app: TestApp) {
    let reply = app.call(Method::GET, "/v1/tenants", None, None).await;
    reply.assert_problem(401, "invalid-token");
    assert_eq!(
        reply.header("www-authenticate"),
        "Bearer realm=\"latchkey\""
    );
    assert_eq!(reply.header("cache-control"), "no-store");
}

async fn malformed_and_foreign_credentials_get_invalid_token(app: TestApp) {
    for key in [
        "nonsense",
        "lk_ak_short",
        "lk_zz_0000000000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let reply = app.call(Method::GET, "/v1/tenants", Some(key), None).await;
        reply.assert_problem(401, "invalid-token");
        assert!(
            reply
                .header("www-authenticate")
                .contains("error=\"invalid_token\""),
            "{}",
            reply.header("www-authenticate")
        );
    }
}

async fn a_key_whose_checksum_does_not_match_is_refused_before_any_lookup(app: TestApp) {
    // Change one character of the secret part of a valid key: the id inside still names
    // a real token, so only the checksum can explain the refusal.
    let mut key = app.root_key.clone();
    let index = 40;
    let replacement = if &key[index..=index] == "A" { "B" } else { "A" };
    key.replace_range(index..=index, replacement);
    let reply = app.call(Method::GET, "/v1/tenants", Some(&key), None).await;
    reply.assert_problem(401, "invalid-token");
    assert_eq!(reply.body["detail"], "credential checksum mismatch");
}

async fn a_revoked_key_no_longer_authenticates(app: TestApp) {
    app.create_tenant("acme").await;
    let key = app.manager_key("acme").await;
    app.call(Method::GET, "/v1/tenants/acme", Some(&key), None)
        .await
        .assert_status(200);
    let id = app.get("/v1/tenants/acme/tokens").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("/v1/tokens/{id}"))
        .await
        .assert_status(204);
    let reply = app
        .call(Method::GET, "/v1/tenants/acme", Some(&key), None)
        .await;
    reply.assert_problem(401, "invalid-token");
    assert_eq!(reply.body["detail"], "credential revoked");
}

async fn an_expired_key_no_longer_authenticates(app: TestApp) {
    app.create_tenant("acme").await;
    let expires_at = app.in_millis(1500).to_rfc3339();
    let created = app
        .create_tenant_token(
            "acme",
            json!({"name": "short", "kind": "api_key", "permissions": ["latchkey:manage"], "expires_at": expires_at}),
        )
        .await;
    let key = created["api_key"].as_str().unwrap();
    app.call(Method::GET, "/v1/tenants/acme", Some(key), None)
        .await
        .assert_status(200);
    app.clock.advance(std::time::Duration::from_millis(1600));
    let reply = app
        .call(Method::GET, "/v1/tenants/acme", Some(key), None)
        .await;
    reply.assert_problem(401, "invalid-token");
    assert_eq!(reply.body["detail"], "credential expired");
}

async fn a_key_without_manage_or_admin_gets_insufficient_scope(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({"name": "reader", "kind": "api_key", "permissions": ["reports:read"]}),
        )
        .await;
    let reply = app
        .call(
            Method::GET,
            "/v1/tenants/acme/tokens",
            created["api_key"].as_str(),
            None,
        )
        .await;
    reply.assert_problem(403, "insufficient-scope");
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"insufficient_scope\"")
    );
    // A manager may not do what only an admin may.
    let manager = app.manager_key("acme").await;
    let reply = app
        .call(Method::GET, "/v1/tenants", Some(&manager), None)
        .await;
    reply.assert_problem(403, "insufficient-scope");
    assert!(
        reply
            .header("www-authenticate")
            .contains("scope=\"latchkey:admin\"")
    );
}

async fn a_key_outside_its_ip_allowlist_is_refused(app: TestApp) {
    app.create_tenant("acme").await;
    let elsewhere = app
        .create_tenant_token(
            "acme",
            json!({"name": "pinned", "kind": "api_key", "permissions": ["latchkey:manage"], "ip_allowlist": ["203.0.113.0/24"]}),
        )
        .await;
    let reply = app
        .call(
            Method::GET,
            "/v1/tenants/acme",
            elsewhere["api_key"].as_str(),
            None,
        )
        .await;
    reply.assert_problem(401, "invalid-token");
    assert_eq!(
        reply.body["detail"],
        "credential not allowed from this address"
    );
    let here = app
        .create_tenant_token(
            "acme",
            json!({"name": "local", "kind": "api_key", "permissions": ["latchkey:manage"], "ip_allowlist": ["127.0.0.0/8", "::1"]}),
        )
        .await;
    app.call(
        Method::GET,
        "/v1/tenants/acme",
        here["api_key"].as_str(),
        None,
    )
    .await
    .assert_status(200);
}

async fn an_access_jwt_with_manage_authenticates_within_its_scope(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "permissions": ["latchkey:manage", "reports:read"] }),
        )
        .await;
    let full = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = app
        .call(Method::GET, "/v1/tenants/acme/tokens", Some(&full), None)
        .await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    // A JWT narrowed to reports:read cannot manage, though its client could.
    let narrow = app
        .exchange(&id, &secret, &[("scope", "reports:read")])
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = app
        .call(Method::GET, "/v1/tenants/acme/tokens", Some(&narrow), None)
        .await;
    reply.assert_problem(403, "insufficient-scope");
    let mut tampered = full.clone();
    tampered.pop();
    tampered.push(if full.ends_with('A') { 'B' } else { 'A' });
    let reply = app
        .call(
            Method::GET,
            "/v1/tenants/acme/tokens",
            Some(&tampered),
            None,
        )
        .await;
    reply.assert_problem(401, "invalid-token");
    app.delete(&format!("/v1/tokens/{id}"))
        .await
        .assert_status(204);
    let reply = app
        .call(Method::GET, "/v1/tenants/acme/tokens", Some(&full), None)
        .await;
    reply.assert_problem(401, "invalid-token");
    assert_eq!(reply.body["detail"], "credential revoked");
}

/// A proxy that reads one `Authorization` header and a server that reads the other
/// would disagree on who is calling: two headers are malformed (docs/API.md, "Who may
/// call"), on the management API and at introspection, even when both are the same
/// good key, and nothing is created.
async fn two_authorization_headers_are_refused_wherever_a_bearer_is_read(app: TestApp) {
    let good = format!("Bearer {}", app.root_key);
    let reply = app
        .send(
            app.request(Method::POST, "/v1/tenants")
                .header("authorization", &good)
                .header("authorization", &good)
                .json(&json!({ "id": "twice" })),
        )
        .await;
    reply.assert_problem(401, "invalid-token");
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"invalid_token\"")
    );
    app.get("/v1/tenants/twice")
        .await
        .assert_problem(404, "not-found");
    let reply = app
        .send(
            app.request(Method::POST, "/oauth/introspect")
                .header("authorization", &good)
                .header("authorization", "Bearer other")
                .form(&[("token", "anything")]),
        )
        .await;
    reply.assert_status(401);
    assert_eq!(reply.body["error"], "invalid_token");
    // A value that is not text (obs-text bytes: after the key, as the credential, or a
    // Latin-1 no-break space read as the separator) is malformed however good the key
    // in it: the bytes are read, never decoded in part.
    for value in [
        [good.as_bytes(), b"\xe9"].concat(),
        [b"Bearer \xc3\xa9".as_slice(), app.root_key.as_bytes()].concat(),
        [b"Bearer\xa0".as_slice(), app.root_key.as_bytes()].concat(),
    ] {
        let reply = app
            .send(
                app.request(Method::POST, "/v1/tenants")
                    .header(
                        "authorization",
                        reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
                    )
                    .json(&json!({ "id": "bytes" })),
            )
            .await;
        reply.assert_problem(401, "invalid-token");
        assert_eq!(
            reply.body["detail"], "malformed Authorization header",
            "{value:?}"
        );
    }
    app.get("/v1/tenants/bytes")
        .await
        .assert_problem(404, "not-found");
    // Controls: one header is read, in any case of the scheme, after any run of spaces.
    let reply = app
        .send(
            app.request(Method::POST, "/v1/tenants")
                .header("authorization", format!("bearer   {}", app.root_key))
                .json(&json!({ "id": "once" })),
        )
        .await;
    reply.assert_status(201);
    app.get("/v1/tenants/once").await.assert_status(200);
}
