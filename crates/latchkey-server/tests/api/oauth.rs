//! The authorization server: grants, JWT shape and interoperability, key rotation,
//! refresh tokens, introspection and RFC 7009 revocation.

use crate::both_backends;
use crate::helpers::{TestApp, basic};
use latchkey_core::jwt::b64url_decode;
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(
    client_credentials_issue_an_rfc9068_jwt,
    scope_narrows_and_resource_sets_the_audience,
    unknown_clients_and_wrong_secrets_get_the_same_answer,
    unusable_clients_get_invalid_client,
    failed_authentications_are_throttled_per_client,
    malformed_token_requests_get_rfc6749_errors,
    metadata_and_jwks_publish_public_keys_only,
    a_rotation_keeps_old_tokens_verifying_until_their_key_leaves,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    concurrent_refreshes_let_exactly_one_through,
    refresh_families_are_capped_per_token,
    introspection_needs_the_introspect_permission,
    introspection_describes_every_kind_of_active_token,
    inactive_tokens_introspect_as_exactly_active_false,
    revocation_endpoint_revokes_only_the_clients_own_tokens,
    revoking_through_the_management_api_deactivates_derived_jwts_at_once,
);

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
}

fn segment(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).unwrap();
    serde_json::from_slice(&b64url_decode(part).unwrap()).unwrap()
}

fn assert_oauth_error(reply: &crate::helpers::Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "body: {}", reply.text);
    assert_eq!(reply.body["error"], error, "body: {}", reply.text);
    assert!(reply.body["error_description"].is_string());
    assert_eq!(reply.header("cache-control"), "no-store");
    assert!(reply.header("content-type").starts_with("application/json"));
}

async fn client_credentials_issue_an_rfc9068_jwt(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "permissions": ["billing:read"] }),
        )
        .await;
    let reply = app.exchange(&id, &secret, &[]).await;
    reply.assert_status(200);
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert_eq!(reply.body["scope"], "billing:read reports:read");
    assert!(reply.body.get("refresh_token").is_none());
    let jwt = reply.body["access_token"].as_str().unwrap();
    let header = segment(jwt, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"])
    );
    let claims = segment(jwt, 1);
    assert_eq!(claims["iss"], app.base);
    assert_eq!(claims["aud"], app.base);
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["client_id"], id);
    assert_eq!(claims["tid"], "acme");
    assert_eq!(claims["tkt"], "tenant");
    assert_eq!(claims["scope"], "billing:read reports:read");
    assert!(claims.get("uid").is_none() && claims.get("knd").is_none());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 900);
    assert_eq!(claims["nbf"], claims["iat"]);
    uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).unwrap();
    // client_secret_post works too, and each grant gets its own jti.
    let posted = app
        .form(
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    posted.assert_status(200);
    let other = segment(posted.body["access_token"].as_str().unwrap(), 1);
    assert_ne!(other["jti"], claims["jti"]);
    // A personal token's JWT names its user.
    let personal = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "p", "kind": "client_credentials", "permissions": ["reports:write"] }),
        )
        .await;
    let reply = app
        .exchange(
            personal["client_id"].as_str().unwrap(),
            personal["client_secret"].as_str().unwrap(),
            &[],
        )
        .await;
    let claims = segment(reply.body["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["tkt"], "user");
    assert_eq!(claims["uid"], "u_42");
    assert_eq!(claims["scope"], "reports:write");
}

async fn scope_narrows_and_resource_sets_the_audience(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["editor"] })).await;
    let reply = app
        .exchange(&id, &secret, &[("scope", "reports:read")])
        .await;
    reply.assert_status(200);
    assert_eq!(reply.body["scope"], "reports:read");
    assert_eq!(
        segment(reply.body["access_token"].as_str().unwrap(), 1)["scope"],
        "reports:read"
    );
    let wider = app
        .exchange(&id, &secret, &[("scope", "reports:read billing:read")])
        .await;
    assert_oauth_error(&wider, 400, "invalid_scope");
    let malformed = app.exchange(&id, &secret, &[("scope", "Reports")]).await;
    assert_oauth_error(&malformed, 400, "invalid_scope");
    let base = app.base.clone();
    let aimed = app.exchange(&id, &secret, &[("resource", &base)]).await;
    aimed.assert_status(200);
    assert_eq!(
        segment(aimed.body["access_token"].as_str().unwrap(), 1)["aud"],
        base
    );
    let foreign = app
        .exchange(&id, &secret, &[("resource", "https://elsewhere.example")])
        .await;
    assert_oauth_error(&foreign, 400, "invalid_target");
}

async fn unknown_clients_and_wrong_secrets_get_the_same_answer(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({})).await;
    let (_, other_secret) = app.client("acme", json!({})).await;
    let wrong = app.exchange(&id, &other_secret, &[]).await;
    let unknown = app
        .exchange("00000000-0000-4000-8000-000000000000", &secret, &[])
        .await;
    for reply in [&wrong, &unknown] {
        assert_oauth_error(reply, 401, "invalid_client");
        assert_eq!(reply.header("www-authenticate"), "Basic realm=\"latchkey\"");
    }
    assert_eq!(wrong.text, unknown.text);
    let missing = app
        .form(
            "/oauth/token",
            None,
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_oauth_error(&missing, 401, "invalid_client");
    let both = app
        .form(
            "/oauth/token",
            Some(&basic(&id, &secret)),
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_oauth_error(&both, 400, "invalid_request");
}

async fn unusable_clients_get_invalid_client(app: TestApp) {
    acme(&app).await;
    // Revoked.
    let created = app
        .create_tenant_token("acme", json!({ "name": "r", "kind": "client_credentials" }))
        .await;
    let (id, secret) = (
        created["client_id"].as_str().unwrap(),
        created["client_secret"].as_str().unwrap(),
    );
    app.exchange(id, secret, &[]).await.assert_status(200);
    app.delete(&format!("/v1/tokens/{id}"))
        .await
        .assert_status(204);
    assert_oauth_error(&app.exchange(id, secret, &[]).await, 401, "invalid_client");
    // A personal token whose user left the tenant.
    let personal = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "p", "kind": "client_credentials" }),
        )
        .await;
    let (pid, psecret) = (
        personal["client_id"].as_str().unwrap(),
        personal["client_secret"].as_str().unwrap(),
    );
    app.exchange(pid, psecret, &[]).await.assert_status(200);
    app.delete("/v1/tenants/acme/users/u_42")
        .await
        .assert_status(204);
    assert_oauth_error(
        &app.exchange(pid, psecret, &[]).await,
        401,
        "invalid_client",
    );
    // Outside its allowlist.
    let (aid, asecret) = app
        .client("acme", json!({ "ip_allowlist": ["203.0.113.0/24"] }))
        .await;
    assert_oauth_error(
        &app.exchange(&aid, &asecret, &[]).await,
        401,
        "invalid_client",
    );
    // Expired.
    let expires_at = app.in_millis(1200).to_rfc3339();
    let (eid, esecret) = app
        .client("acme", json!({ "expires_at": expires_at }))
        .await;
    let fresh = app.exchange(&eid, &esecret, &[]).await;
    fresh.assert_status(200);
    assert!(
        fresh.body["expires_in"].as_i64().unwrap() <= 2,
        "capped at the token's expiry"
    );
    app.clock.advance(std::time::Duration::from_millis(2300));
    assert_oauth_error(
        &app.exchange(&eid, &esecret, &[]).await,
        401,
        "invalid_client",
    );
    // An api key is not a client secret.
    let key = app
        .create_tenant_token("acme", json!({ "name": "k", "kind": "api_key" }))
        .await;
    let kid = key["token"]["id"].as_str().unwrap();
    assert_oauth_error(
        &app.exchange(kid, key["api_key"].as_str().unwrap(), &[])
            .await,
        401,
        "invalid_client",
    );
}

async fn failed_authentications_are_throttled_per_client(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({})).await;
    let (other_id, other_secret) = app.client("acme", json!({})).await;
    let wrong = other_secret.clone();
    for _ in 0..10 {
        assert_oauth_error(&app.exchange(&id, &wrong, &[]).await, 401, "invalid_client");
    }
    let throttled = app.exchange(&id, &secret, &[]).await;
    assert_eq!(throttled.status, 429, "{}", throttled.text);
    let wait: u64 = throttled.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait));
    app.exchange(&other_id, &other_secret, &[])
        .await
        .assert_status(200);
}

async fn malformed_token_requests_get_rfc6749_errors(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({})).await;
    let auth = basic(&id, &secret);
    let get = app.call(Method::GET, "/oauth/token", None, None).await;
    assert_oauth_error(&get, 405, "invalid_request");
    assert_eq!(get.header("allow"), "POST");
    let json_body = app
        .client_request_raw(
            "/oauth/token",
            &auth,
            "application/json",
            br#"{"grant_type":"client_credentials"}"#.to_vec(),
        )
        .await;
    assert_oauth_error(&json_body, 400, "invalid_request");
    assert_oauth_error(
        &app.form("/oauth/token", Some(&auth), &[]).await,
        400,
        "invalid_request",
    );
    for grant in [
        "password",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        let reply = app
            .form("/oauth/token", Some(&auth), &[("grant_type", grant)])
            .await;
        assert_oauth_error(&reply, 400, "unsupported_grant_type");
    }
    let twice = app
        .form(
            "/oauth/token",
            Some(&auth),
            &[
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
        )
        .await;
    assert_oauth_error(&twice, 400, "invalid_request");
    let big = format!(
        "grant_type=client_credentials&scope={}",
        "a".repeat(70 * 1024)
    );
    let reply = app
        .client_request_raw(
            "/oauth/token",
            &auth,
            "application/x-www-form-urlencoded",
            big.into_bytes(),
        )
        .await;
    assert_oauth_error(&reply, 413, "invalid_request");
    for path in ["/oauth/introspect", "/oauth/revoke"] {
        let reply = app.call(Method::GET, path, None, None).await;
        assert_oauth_error(&reply, 405, "invalid_request");
    }
}

async fn metadata_and_jwks_publish_public_keys_only(app: TestApp) {
    let metadata = app
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await;
    metadata.assert_status(200);
    let base = &app.base;
    assert_eq!(metadata.body["issuer"], *base);
    assert_eq!(
        metadata.body["token_endpoint"],
        format!("{base}/oauth/token")
    );
    assert_eq!(
        metadata.body["jwks_uri"],
        format!("{base}/.well-known/jwks.json")
    );
    assert_eq!(
        metadata.body["introspection_endpoint"],
        format!("{base}/oauth/introspect")
    );
    assert_eq!(
        metadata.body["revocation_endpoint"],
        format!("{base}/oauth/revoke")
    );
    assert_eq!(
        metadata.body["grant_types_supported"],
        json!([
            "client_credentials",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ])
    );
    assert_eq!(
        metadata.body["token_endpoint_auth_methods_supported"],
        json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt"
        ])
    );
    assert_eq!(
        metadata.body["token_endpoint_auth_signing_alg_values_supported"],
        json!(["EdDSA", "ES256", "RS256"])
    );
    assert_eq!(
        metadata.body["revocation_endpoint_auth_methods_supported"],
        metadata.body["token_endpoint_auth_methods_supported"]
    );
    assert_eq!(
        metadata.body["access_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await;
    let keys = jwks.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "current and next");
    for key in keys {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "{private} published");
        }
    }
}

async fn a_rotation_keeps_old_tokens_verifying_until_their_key_leaves(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let kid = segment(&jwt, 0)["kid"].as_str().unwrap().to_owned();
    let rotated = app.post("/v1/keys/rotate", json!({})).await;
    rotated.assert_status(200);
    assert_eq!(rotated.body["published_kids"].as_array().unwrap().len(), 3);
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    );
    assert_eq!(
        app.introspect(&jwt).await["active"],
        true,
        "verifies through the overlap"
    );
    let newer = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(
        segment(&newer, 0)["kid"],
        kid,
        "the next key signs after a rotation"
    );
    app.post("/v1/keys/rotate", json!({}))
        .await
        .assert_status(200);
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .body;
    assert!(
        !jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid)
    );
    assert_eq!(app.introspect(&jwt).await, json!({ "active": false }));
    assert_eq!(app.introspect(&newer).await["active"], true);
    assert_eq!(app.audit_count("key.rotated").await, 4);
}

async fn refresh_tokens_rotate_and_reuse_revokes_the_family(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["editor"], "refresh_tokens": true }),
        )
        .await;
    let first = app
        .exchange(&id, &secret, &[("scope", "reports:read")])
        .await;
    first.assert_status(200);
    let rt1 = first.body["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt1.starts_with("lk_rt_") && rt1.len() == 77);
    let auth = basic(&id, &secret);
    let refresh = |token: String| {
        let auth = auth.clone();
        let app = &app;
        async move {
            app.form(
                "/oauth/token",
                Some(&auth),
                &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            )
            .await
        }
    };
    let second = refresh(rt1.clone()).await;
    second.assert_status(200);
    assert_eq!(
        second.body["scope"], "reports:read",
        "a refresh keeps the family's scope"
    );
    let rt2 = second.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    assert_eq!(app.introspect(&rt2).await["token_type"], "refresh_token");
    assert_eq!(app.introspect(&rt1).await, json!({ "active": false }));
    let reused = refresh(rt1.clone()).await;
    assert_oauth_error(&reused, 400, "invalid_grant");
    // The family is gone: the successor and the access token issued with it too.
    assert_eq!(app.introspect(&rt2).await, json!({ "active": false }));
    let second_jwt = second.body["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(second_jwt).await, json!({ "active": false }));
    assert_oauth_error(&refresh(rt2).await, 400, "invalid_grant");
    // Another client cannot use this client's refresh token; tokens without refresh
    // get none.
    let (other, other_secret) = app.client("acme", json!({})).await;
    assert!(
        app.exchange(&other, &other_secret, &[])
            .await
            .body
            .get("refresh_token")
            .is_none()
    );
    let fresh = app.exchange(&id, &secret, &[]).await.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let stolen = app
        .form(
            "/oauth/token",
            Some(&basic(&other, &other_secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", &fresh)],
        )
        .await;
    assert_oauth_error(&stolen, 400, "invalid_grant");
    assert_oauth_error(&refresh("lk_rt_garbage".into()).await, 400, "invalid_grant");
}

async fn concurrent_refreshes_let_exactly_one_through(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "refresh_tokens": true }),
        )
        .await;
    let auth = basic(&id, &secret);
    for _ in 0..5 {
        let rt = app.exchange(&id, &secret, &[]).await.body["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let pairs = [
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ];
        let (a, b) = tokio::join!(
            app.form("/oauth/token", Some(&auth), &pairs),
            app.form("/oauth/token", Some(&auth), &pairs)
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [200, 400], "{} / {}", a.text, b.text);
        let loser = if a.status == 400 { &a } else { &b };
        assert_eq!(loser.body["error"], "invalid_grant");
    }
}

async fn refresh_families_are_capped_per_token(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "refresh_tokens": true }),
        )
        .await;
    let mut tokens = Vec::new();
    for _ in 0..101 {
        let reply = app.exchange(&id, &secret, &[]).await;
        tokens.push(reply.body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        app.introspect(&tokens[0]).await,
        json!({ "active": false }),
        "the oldest family goes"
    );
    assert_eq!(app.introspect(&tokens[1]).await["active"], true);
    assert_eq!(app.introspect(&tokens[100]).await["active"], true);
}

async fn introspection_needs_the_introspect_permission(app: TestApp) {
    acme(&app).await;
    let none = app.form("/oauth/introspect", None, &[("token", "x")]).await;
    assert_oauth_error(&none, 401, "invalid_token");
    assert!(none.header("www-authenticate").starts_with("Bearer"));
    let manager = app.manager_key("acme").await;
    let reply = app
        .form(
            "/oauth/introspect",
            Some(&format!("Bearer {manager}")),
            &[("token", "x")],
        )
        .await;
    assert_oauth_error(&reply, 403, "insufficient_scope");
    let gateway = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gateway", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await;
    let key = gateway["api_key"].as_str().unwrap();
    let reply = app
        .form(
            "/oauth/introspect",
            Some(&format!("Bearer {key}")),
            &[("token", "x")],
        )
        .await;
    reply.assert_status(200);
    assert_eq!(reply.body, json!({ "active": false }));
    let missing = app
        .form("/oauth/introspect", Some(&format!("Bearer {key}")), &[])
        .await;
    assert_oauth_error(&missing, 400, "invalid_request");
}

async fn introspection_describes_every_kind_of_active_token(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let claims = segment(&jwt, 1);
    let answer = app.introspect(&jwt).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["scope"], "reports:read");
    assert_eq!(answer["client_id"], id);
    assert_eq!(answer["sub"], id);
    assert_eq!(answer["tid"], "acme");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["iss"], app.base);
    assert_eq!(answer["exp"], claims["exp"]);
    assert_eq!(answer["iat"], claims["iat"]);

    let key = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "k", "kind": "api_key", "permissions": ["reports:read"] }),
        )
        .await;
    let answer = app.introspect(key["api_key"].as_str().unwrap()).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["uid"], "u_42");
    assert_eq!(answer["scope"], "reports:read");

    let expires_at = "2099-01-01T00:00:00Z";
    let long = app
        .create_tenant_token(
            "acme",
            json!({ "name": "l", "kind": "jwt", "roles": ["editor"], "expires_at": expires_at }),
        )
        .await;
    let long_jwt = long["jwt"].as_str().unwrap();
    let long_claims = segment(long_jwt, 1);
    assert_eq!(long_claims["knd"], "jwt");
    assert_eq!(long_claims["exp"], 4_070_908_800i64);
    assert_eq!(long_claims["scope"], "reports:read reports:write");
    assert_eq!(segment(long_jwt, 0)["typ"], "at+jwt");
    let answer = app.introspect(long_jwt).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["exp"], 4_070_908_800i64);
    let forever = app
        .create_tenant_token("acme", json!({ "name": "f", "kind": "jwt" }))
        .await;
    let forever_jwt = forever["jwt"].as_str().unwrap();
    assert!(segment(forever_jwt, 1).get("exp").is_none());
    assert_eq!(app.introspect(forever_jwt).await["active"], true);
}

async fn inactive_tokens_introspect_as_exactly_active_false(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tampered = jwt.clone();
    tampered.pop();
    tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    let key = app
        .create_tenant_token("acme", json!({ "name": "k", "kind": "api_key" }))
        .await;
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let mut wrong_key = api_key.clone();
    wrong_key.replace_range(40..41, if &api_key[40..41] == "A" { "B" } else { "A" });
    for token in [
        "garbage".to_owned(),
        tampered,
        secret.clone(),
        wrong_key,
        "a.b.c".to_owned(),
        "lk_ak_".to_owned() + &"0".repeat(71),
    ] {
        let answer = app.introspect(&token).await;
        assert_eq!(answer, json!({ "active": false }), "{token}");
    }
    app.delete(&format!(
        "/v1/tokens/{}",
        key["token"]["id"].as_str().unwrap()
    ))
    .await
    .assert_status(204);
    assert_eq!(app.introspect(&api_key).await, json!({ "active": false }));
}

async fn revocation_endpoint_revokes_only_the_clients_own_tokens(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "refresh_tokens": true }),
        )
        .await;
    let (other, other_secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let mine = app.exchange(&id, &secret, &[]).await;
    let theirs = app.exchange(&other, &other_secret, &[]).await;
    let my_jwt = mine.body["access_token"].as_str().unwrap();
    let their_jwt = theirs.body["access_token"].as_str().unwrap();
    // Another client's token is left alone, and the answer is still 200.
    let reply = app
        .form(
            "/oauth/revoke",
            Some(&basic(&id, &secret)),
            &[("token", their_jwt)],
        )
        .await;
    reply.assert_status(200);
    assert_eq!(reply.header("cache-control"), "no-store");
    assert_eq!(app.introspect(their_jwt).await["active"], true);
    app.form(
        "/oauth/revoke",
        Some(&basic(&id, &secret)),
        &[("token", "unknown")],
    )
    .await
    .assert_status(200);
    app.form(
        "/oauth/revoke",
        Some(&basic(&id, &secret)),
        &[("token", my_jwt), ("token_type_hint", "access_token")],
    )
    .await
    .assert_status(200);
    assert_eq!(app.introspect(my_jwt).await, json!({ "active": false }));
    let rt = mine.body["refresh_token"].as_str().unwrap();
    app.form(
        "/oauth/revoke",
        Some(&basic(&id, &secret)),
        &[("token", rt)],
    )
    .await
    .assert_status(200);
    assert_eq!(app.introspect(rt).await, json!({ "active": false }));
    let unauthenticated = app
        .form("/oauth/revoke", None, &[("token", their_jwt)])
        .await;
    assert_oauth_error(&unauthenticated, 401, "invalid_client");
    let missing = app
        .form("/oauth/revoke", Some(&basic(&id, &secret)), &[])
        .await;
    assert_oauth_error(&missing, 400, "invalid_request");
    assert_eq!(app.introspect(their_jwt).await["active"], true);
}

async fn revoking_through_the_management_api_deactivates_derived_jwts_at_once(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let long = app
        .create_tenant_token(
            "acme",
            json!({ "name": "l", "kind": "jwt", "roles": ["viewer"] }),
        )
        .await;
    let long_jwt = long["jwt"].as_str().unwrap();
    assert_eq!(app.introspect(&jwt).await["active"], true);
    assert_eq!(app.introspect(long_jwt).await["active"], true);
    app.delete(&format!("/v1/tokens/{id}"))
        .await
        .assert_status(204);
    app.delete(&format!(
        "/v1/tokens/{}",
        long["token"]["id"].as_str().unwrap()
    ))
    .await
    .assert_status(204);
    assert_eq!(app.introspect(&jwt).await, json!({ "active": false }));
    assert_eq!(app.introspect(long_jwt).await, json!({ "active": false }));
}
