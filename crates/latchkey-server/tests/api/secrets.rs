//! Secrets are shown once, in the create (or token) response, and nowhere else: not in
//! the database files (WAL included), not in the logs, not in any GET response. That
//! covers client secrets, api keys, the root key, refresh tokens and JWTs.

use crate::both_backends;
use crate::helpers::{TestApp, captured_logs};
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
    secrets.push(secret);

    // Use the api keys once so authentication paths log too.
    for secret in secrets.iter().filter(|s| s.starts_with("lk_ak_")) {
        let _ = app
            .call(reqwest::Method::GET, "/v1/tenants/acme", Some(secret), None)
            .await;
    }

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
    for secret in &secrets {
        for needle in needles(secret) {
            assert!(!seen.contains(&needle), "a GET response shows a secret");
            assert!(
                !stored.contains(&needle),
                "the store holds a secret in readable form"
            );
            assert!(!logs.contains(&needle), "the logs show a secret");
        }
    }
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
