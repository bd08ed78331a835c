//! Secrets are shown once, in the create (or token) response, and nowhere else: not in
//! the database files (WAL included), not in the logs, not in any GET response. That
//! covers client secrets, api keys, the root key, refresh tokens and JWTs.

use crate::both_backends;
use crate::helpers::{TestApp, basic, captured_logs};
use serde_json::json;
use sqlx::Row;

both_backends!(no_secret_reaches_the_store_the_logs_or_a_get_response);

/// The parts of a secret that must never be seen again: the whole string and the
/// 43-character random part (an api key's id part is not secret).
fn needles(secret: &str) -> Vec<String> {
    let random = &secret[secret.len() - 49..secret.len() - 6];
    vec![secret.to_owned(), random.to_owned()]
}

async fn no_secret_reaches_the_store_the_logs_or_a_get_response(app: TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for kind in ["client_credentials", "api_key", "jwt"] {
        let tenant = app
            .create_tenant_token(
                "acme",
                json!({ "name": kind, "kind": kind, "roles": ["viewer"], "created_by": "u_42" }),
            )
            .await;
        let personal = app
            .create_personal_token(
                "acme",
                "u_42",
                json!({ "name": kind, "kind": kind, "permissions": ["reports:write"] }),
            )
            .await;
        for created in [tenant, personal] {
            ids.push(created["token"]["id"].as_str().unwrap().to_owned());
            for field in ["client_secret", "api_key"] {
                if let Some(secret) = created[field].as_str() {
                    secrets.push(secret.to_owned());
                }
            }
        }
    }
    secrets.push(app.root_key.clone());
    assert_eq!(secrets.len(), 5);

    // Bearer credentials minted later: access and refresh tokens, a long-lived JWT.
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "refresh_tokens": true }),
        )
        .await;
    let granted = app.exchange(&id, &secret, &[]).await;
    granted.assert_status(200);
    let mut bearer = vec![
        granted.body["access_token"].as_str().unwrap().to_owned(),
        granted.body["refresh_token"].as_str().unwrap().to_owned(),
    ];
    let long = app
        .create_tenant_token(
            "acme",
            json!({ "name": "long", "kind": "jwt", "roles": ["viewer"] }),
        )
        .await;
    bearer.push(long["jwt"].as_str().unwrap().to_owned());
    ids.push(long["token"]["id"].as_str().unwrap().to_owned());
    secrets.push(secret.clone());

    // Use every credential once so the authentication paths log too: the api keys on
    // the management API, the bearer JWTs there and at introspection, and the refresh
    // token in a refresh (whose rotated successor joins the list).
    for secret in secrets.iter().filter(|s| s.starts_with("lk_ak_")) {
        let _ = app
            .call(reqwest::Method::GET, "/v1/tenants/acme", Some(secret), None)
            .await;
    }
    for token in &bearer {
        let _ = app
            .call(reqwest::Method::GET, "/v1/tenants/acme", Some(token), None)
            .await;
        assert_eq!(app.introspect(token).await["active"], true);
    }
    let refreshed = app
        .form(
            "/oauth/token",
            Some(&basic(&id, &secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &bearer[1]),
            ],
        )
        .await;
    refreshed.assert_status(200);
    for field in ["access_token", "refresh_token"] {
        bearer.push(refreshed.body[field].as_str().unwrap().to_owned());
    }
    assert_eq!(bearer.len(), 5);

    let mut seen = String::new();
    for path in [
        "/v1/tenants".to_owned(),
        "/v1/tenants/acme".to_owned(),
        "/v1/tenants/acme/tokens".to_owned(),
        "/v1/tenants/acme/users".to_owned(),
        "/v1/tenants/acme/users/u_42/tokens".to_owned(),
        "/v1/tenants/latchkey/tokens".to_owned(),
        "/v1/permissions".to_owned(),
        "/v1/roles".to_owned(),
        "/v1/audit".to_owned(),
    ]
    .into_iter()
    .chain(ids.iter().map(|id| format!("/v1/tokens/{id}")))
    {
        let reply = app.get(&path).await;
        reply.assert_status(200);
        seen.push_str(&reply.text);
    }

    let stored = stored_text(&app).await;
    let logs = captured_logs();
    assert!(!logs.is_empty());
    let all_needles: Vec<(String, &str)> = secrets
        .iter()
        .flat_map(|secret| needles(secret))
        .map(|needle| (needle, "a secret"))
        .chain(
            bearer
                .iter()
                .flat_map(|token| bearer_needles(token))
                .map(|needle| (needle, "a bearer token")),
        )
        .collect();
    assert_eq!(all_needles.len(), 2 * secrets.len() + 2 * bearer.len());
    for (needle, what) in &all_needles {
        assert!(!seen.contains(needle), "a GET response shows {what}");
        assert!(
            !stored.contains(needle),
            "the store holds {what} in readable form"
        );
        assert!(!logs.contains(needle), "the logs show {what}");
    }
}

/// The parts of a bearer token that must never be seen again: the whole token, and
/// what makes it usable: a refresh token's random part, a JWT's signature (its header
/// and claims are not secret).
fn bearer_needles(token: &str) -> Vec<String> {
    if token.starts_with("lk_rt_") {
        return needles(token);
    }
    let signature = token.rsplit('.').next().unwrap();
    assert!(signature.len() >= 43, "a JWT: {token}");
    vec![token.to_owned(), signature.to_owned()]
}

/// Everything the database holds, as text: the raw files for SQLite (WAL and shared
/// memory included), every row of every table for PostgreSQL.
async fn stored_text(app: &TestApp) -> String {
    if app.database_url.starts_with("sqlite:") {
        let mut text = String::new();
        for entry in std::fs::read_dir(app.data_dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("latchkey.db")
            {
                text.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
        assert!(text.contains("acme"), "the database files were read");
        return text;
    }
    let db = app.db().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut text = String::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT t::text AS row FROM {table} t"))
            .fetch_all(&db)
            .await
            .unwrap();
        for row in rows {
            text.push_str(&row.get::<String, _>("row"));
        }
    }
    assert!(text.contains("acme"));
    text
}
