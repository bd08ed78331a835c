//! Following one failed request (docs/OPERATIONS.md, "Request ids"): a 500 carries the
//! request's id in its header and its body, and the log line that holds the cause
//! carries the same id, on the management API and on the OAuth endpoints alike.

use crate::both_backends;
use crate::helpers::{TestApp, captured_logs};
use reqwest::Method;
use serde_json::{Value, json};

both_backends!(a_server_error_names_the_request_id_in_its_body_and_its_log_line);

/// The log lines of request `id`: the one that says why it failed (its cause), and its
/// access line.
fn logged_for(id: &str) -> (Option<String>, Option<String>) {
    let logs = captured_logs();
    let mine: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains(&format!("request_id=\"{id}\"")))
        .collect();
    let find = |needle: &str| {
        mine.iter()
            .find(|line| line.contains(needle))
            .map(|line| (*line).to_owned())
    };
    (find("internal error"), find("status=500"))
}

async fn a_server_error_names_the_request_id_in_its_body_and_its_log_line(app: TestApp) {
    app.create_tenant("acme").await;
    let (client_id, secret) = app.client("acme", json!({ "permissions": [] })).await;
    // Control: before the store breaks, the same requests succeed with the client's id.
    let control = app
        .send(
            app.request(Method::GET, "/v1/webhooks")
                .bearer_auth(&app.root_key)
                .header("X-Request-Id", "control-1"),
        )
        .await;
    control.assert_status(200);
    assert_eq!(control.header("x-request-id"), "control-1");
    assert!(control.body.get("request_id").is_none());

    // The operator's database loses the tables these requests read.
    let db = app.db().await;
    for (from, to) in [("webhooks", "webhooks_gone"), ("tokens", "tokens_gone")] {
        sqlx::query(&format!("ALTER TABLE {from} RENAME TO {to}"))
            .execute(&db)
            .await
            .unwrap();
    }
    db.close().await;

    let unique = uuid::Uuid::new_v4().simple().to_string();
    let api_id = format!("api-{unique}");
    let failed = app
        .send(
            app.request(Method::GET, "/v1/webhooks")
                .bearer_auth(&app.root_key)
                .header("X-Request-Id", &api_id),
        )
        .await;
    failed.assert_problem(500, "internal");
    assert_eq!(failed.header("x-request-id"), api_id);
    assert_eq!(failed.body["request_id"], api_id.as_str());
    // The cause is in the log, not in the answer.
    let detail = failed.body["detail"].as_str().unwrap();
    assert!(!detail.contains("webhooks"), "{detail}");

    // A client with no id of its own gets a generated one, the same in both places.
    let oauth = app
        .send(
            app.request(Method::POST, "/oauth/token")
                .basic_auth(&client_id, Some(&secret))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_eq!(oauth.status, 500, "{}", oauth.text);
    let generated = oauth.header("x-request-id").to_owned();
    assert!(!generated.is_empty());
    assert_eq!(oauth.body["request_id"], Value::from(generated.as_str()));
    assert!(!oauth.text.contains(&secret));

    for id in [&api_id, &generated] {
        let (cause, access) = logged_for(id);
        let cause = cause.unwrap_or_else(|| panic!("no log line with the cause for {id}"));
        assert!(access.is_some(), "no access line for {id}");
        assert!(cause.contains("cause="), "{cause}");
        assert!(!cause.contains(&secret), "a secret reached the log");
    }
}
