//! Rolling a token (docs/API.md, "Rolling a token"): the successor with the identical
//! grant, the grace window during which both secrets work, the revocation through the
//! feed when it ends, and the refusals that create nothing.

use crate::both_backends;
use crate::helpers::TestApp;
use latchkey_verify::{
    Credential, ReplicaOptions, RevocationReplica, Verifier, VerifierOptions, VerifyError,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

both_backends!(
    both_secrets_work_through_the_grace_window_then_only_the_successor,
    a_roll_without_grace_revokes_the_old_token_at_once,
    every_kind_rolls_to_a_successor_with_the_identical_grant,
    the_window_never_outlasts_the_old_token_and_the_successor_may_get_a_new_expiry,
    refused_rolls_create_nothing,
);

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
}

fn id_of(created: &Value) -> String {
    created["token"]["id"].as_str().unwrap().to_owned()
}

async fn roll(app: &TestApp, id: &str, body: Value) -> Value {
    let reply = app.post(&format!("/v1/tokens/{id}/roll"), body).await;
    reply.assert_status(201);
    reply.body
}

async fn token(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/v1/tokens/{id}")).await;
    reply.assert_status(200);
    reply.body
}

/// Every token of acme, tenant and personal (of u_42), as the API lists them.
async fn all_tokens(app: &TestApp) -> Vec<Value> {
    let mut all = Vec::new();
    for path in [
        "/v1/tenants/acme/tokens",
        "/v1/tenants/acme/users/u_42/tokens",
        "/v1/tenants/latchkey/tokens",
    ] {
        let page = app.get(&format!("{path}?limit=200")).await;
        page.assert_status(200);
        all.extend(page.body["items"].as_array().unwrap().iter().cloned());
    }
    all
}

/// A verifier following the server's revocation feed, as a gateway does.
async fn following_verifier(app: &TestApp) -> (Verifier, RevocationReplica) {
    let credential = Credential::new(app.introspection_key().await);
    let replica =
        RevocationReplica::start(&app.base, credential.clone(), ReplicaOptions::default()).unwrap();
    let verifier = Verifier::discover(
        &app.base,
        VerifierOptions {
            credential: Some(credential),
            revocation: Arc::new(replica.clone()),
            ..VerifierOptions::default()
        },
    )
    .await
    .unwrap();
    replica.attach(verifier.evictor());
    tokio::time::timeout(Duration::from_secs(10), replica.ready())
        .await
        .unwrap();
    (verifier, replica)
}

fn access_token(reply: &crate::helpers::Reply) -> String {
    reply.assert_status(200);
    reply.body["access_token"].as_str().unwrap().to_owned()
}

async fn both_secrets_work_through_the_grace_window_then_only_the_successor(app: TestApp) {
    acme(&app).await;
    let old = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "client_credentials", "roles": ["viewer"] }),
        )
        .await;
    let old_id = id_of(&old);
    let old_secret = old["client_secret"].as_str().unwrap();
    let (verifier, _replica) = following_verifier(&app).await;
    let old_jwt = access_token(&app.exchange(&old_id, old_secret, &[]).await);
    verifier
        .verify(&old_jwt)
        .await
        .expect("the old JWT verifies");

    let before = app.now();
    let new = roll(&app, &old_id, json!({ "grace_seconds": 60 })).await;
    let new_id = id_of(&new);
    let new_secret = new["client_secret"].as_str().unwrap();
    assert_eq!(new["client_id"], new_id.as_str());
    assert_ne!(new_id, old_id);
    assert_ne!(new_secret, old_secret);
    assert_eq!(new["token"]["rolled_from"], old_id.as_str());
    assert_eq!(new["token"]["name"], "ci");

    let rolled = token(&app, &old_id).await;
    assert_eq!(rolled["rolled_to"], new_id.as_str());
    assert_eq!(rolled["revokes_at"], json!(before.plus_seconds(60)));
    assert_eq!(rolled["revoked_at"], Value::Null);
    assert_eq!(rolled["revoked_reason"], Value::Null);

    // The grace window: both secrets work.
    access_token(&app.exchange(&old_id, old_secret, &[]).await);
    let new_jwt = access_token(&app.exchange(&new_id, new_secret, &[]).await);
    verifier.verify(&old_jwt).await.expect("still within grace");

    let audit = app
        .get(&format!("/v1/audit?action=token.rolled&token_id={old_id}"))
        .await;
    let events = audit.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{audit:?}", audit = audit.body);
    assert_eq!(events[0]["details"]["successor"], new_id.as_str());
    assert_eq!(events[0]["details"]["revokes_at"], rolled["revokes_at"]);
    let created = app
        .get(&format!("/v1/audit?action=token.created&token_id={new_id}"))
        .await;
    assert_eq!(created.body["items"].as_array().unwrap().len(), 1);

    // Just before the window ends nothing happens; once it has, maintenance revokes.
    app.clock.advance(Duration::from_secs(59));
    app.maintain().await;
    access_token(&app.exchange(&old_id, old_secret, &[]).await);
    app.clock.advance(Duration::from_secs(2));
    // Past the window the server refuses the old secret at once, before maintenance
    // has revoked it through the feed.
    app.exchange(&old_id, old_secret, &[])
        .await
        .assert_status(401);
    access_token(&app.exchange(&new_id, new_secret, &[]).await);
    app.maintain().await;
    app.exchange(&old_id, old_secret, &[])
        .await
        .assert_status(401);
    access_token(&app.exchange(&new_id, new_secret, &[]).await);
    let revoked = token(&app, &old_id).await;
    assert_eq!(revoked["revoked_reason"], "rolled");
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(token(&app, &new_id).await["revoked_at"], Value::Null);
    let revocations = app
        .get(&format!("/v1/audit?action=token.revoked&token_id={old_id}"))
        .await;
    let events = revocations.body["items"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["details"]["reason"], "rolled");

    // The old token's access JWT is refused by a verifier following the feed, the new
    // one's is not. Maintenance runs again without revoking anything twice.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while verifier.verify(&old_jwt).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed revokes the old token within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        verifier.verify(&old_jwt).await,
        Err(VerifyError::InvalidToken(_))
    ));
    verifier
        .verify(&new_jwt)
        .await
        .expect("the successor's JWT verifies");
    app.maintain().await;
    assert_eq!(app.audit_count("token.revoked").await, 1);
}

/// Lists acme's tokens with `key` on the management API.
async fn list_as(app: &TestApp, key: &str) -> crate::helpers::Reply {
    let request = app
        .request(reqwest::Method::GET, "/v1/tenants/acme/tokens")
        .bearer_auth(key);
    app.send(request).await
}

async fn a_roll_without_grace_revokes_the_old_token_at_once(app: TestApp) {
    acme(&app).await;
    let old = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ops", "kind": "api_key", "permissions": ["latchkey:manage"] }),
        )
        .await;
    let old_key = old["api_key"].as_str().unwrap();
    list_as(&app, old_key).await.assert_status(200);
    let new = roll(&app, &id_of(&old), json!({ "grace_seconds": 0 })).await;
    let new_key = new["api_key"].as_str().unwrap();
    assert!(new_key.starts_with("lk_ak_"));
    list_as(&app, old_key)
        .await
        .assert_problem(401, "invalid-token");
    list_as(&app, new_key).await.assert_status(200);
    let revoked = token(&app, &id_of(&old)).await;
    assert_eq!(revoked["revoked_reason"], "rolled");
    assert_eq!(revoked["revoked_at"], revoked["revokes_at"]);
    assert_eq!(revoked["rolled_to"], new["token"]["id"]);
    let feed = app.get("/v1/revocations?after=0").await;
    let subjects: Vec<&Value> = feed.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| &entry["subject"])
        .collect();
    assert!(
        subjects.contains(&&old["token"]["id"]),
        "{feed:?}",
        feed = feed.body
    );
}

/// The parts of a token resource that make its grant: all but its identity, its secret's
/// hint, its times and its roll links.
fn grant(token: &Value) -> Value {
    let mut grant = token.clone();
    let object = grant.as_object_mut().unwrap();
    for key in [
        "id",
        "secret_hint",
        "created_at",
        "last_used_at",
        "last_used_ip",
        "rolled_from",
        "rolled_to",
        "revokes_at",
    ] {
        object.remove(key);
    }
    grant
}

async fn every_kind_rolls_to_a_successor_with_the_identical_grant(app: TestApp) {
    acme(&app).await;
    let expiry = app.in_millis(30 * 86_400_000);
    let bodies = [
        json!({ "name": "cc", "kind": "client_credentials", "roles": ["viewer"],
                "permissions": ["reports:write"], "created_by": "u_42",
                "expires_at": expiry, "access_token_ttl_seconds": 120,
                "ip_allowlist": ["127.0.0.0/8", "203.0.113.0/24"], "refresh_tokens": true }),
        json!({ "name": "key", "kind": "api_key", "permissions": ["reports:read"],
                "ip_allowlist": ["127.0.0.1/32"] }),
        json!({ "name": "long", "kind": "jwt", "roles": ["viewer"] }),
    ];
    for body in bodies {
        let old = app.create_tenant_token("acme", body).await;
        let new = roll(&app, &id_of(&old), json!({})).await;
        let successor = token(&app, &id_of(&new)).await;
        assert_eq!(new["token"], successor);
        assert_eq!(grant(&successor), grant(&old["token"]));
        let rolled = token(&app, &id_of(&old)).await;
        assert_eq!(rolled["rolled_to"], successor["id"]);
        assert_eq!(successor["rolled_from"], rolled["id"]);
        // The default window is a day.
        assert_eq!(rolled["revokes_at"], json!(app.now().plus_seconds(86_400)));
        match successor["kind"].as_str().unwrap() {
            "client_credentials" => {
                let secret = new["client_secret"].as_str().unwrap();
                assert_ne!(Some(secret), old["client_secret"].as_str());
                access_token(
                    &app.exchange(new["client_id"].as_str().unwrap(), secret, &[])
                        .await,
                );
            }
            "api_key" => {
                let key = new["api_key"].as_str().unwrap();
                assert_ne!(Some(key), old["api_key"].as_str());
                assert_eq!(app.introspect(key).await["active"], true);
            }
            _ => {
                let jwt = new["jwt"].as_str().unwrap();
                assert_ne!(Some(jwt), old["jwt"].as_str());
                let seen = app.introspect(jwt).await;
                assert_eq!(seen["active"], true, "{seen}");
                assert_eq!(
                    seen["scope"],
                    app.introspect(old["jwt"].as_str().unwrap()).await["scope"]
                );
            }
        }
    }
    // Personal tokens roll too, and stay their user's.
    let personal = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "laptop", "kind": "api_key", "permissions": ["reports:read"] }),
        )
        .await;
    let new = roll(&app, &id_of(&personal), json!({ "grace_seconds": 3600 })).await;
    assert_eq!(grant(&new["token"]), grant(&personal["token"]));
    assert_eq!(new["token"]["owner"]["user_id"], "u_42");
}

async fn the_window_never_outlasts_the_old_token_and_the_successor_may_get_a_new_expiry(
    app: TestApp,
) {
    acme(&app).await;
    let expiry = app.in_millis(3_600_000);
    let old = app
        .create_tenant_token(
            "acme",
            json!({ "name": "short", "kind": "api_key", "permissions": ["reports:read"],
                    "expires_at": expiry }),
        )
        .await;
    let later = app.in_millis(90 * 86_400_000);
    let new = roll(
        &app,
        &id_of(&old),
        json!({ "grace_seconds": 86_400, "expires_at": later }),
    )
    .await;
    assert_eq!(new["token"]["expires_at"], json!(later));
    assert_eq!(token(&app, &id_of(&old)).await["revokes_at"], json!(expiry));
}

/// What a refused roll must leave as it was: every token, and the count of token events.
async fn snapshot(app: &TestApp) -> (Vec<Value>, [i64; 3]) {
    let mut counts = [0; 3];
    for (count, action) in counts
        .iter_mut()
        .zip(["token.created", "token.rolled", "token.revoked"])
    {
        *count = app.audit_count(action).await;
    }
    (all_tokens(app).await, counts)
}

async fn refused_rolls_create_nothing(app: TestApp) {
    acme(&app).await;
    let manager = app.manager_key("acme").await;
    let system_manager = app.manager_key("latchkey").await;
    let admin = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "admin", "kind": "api_key", "permissions": ["latchkey:admin"] }),
        )
        .await;
    let old = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "client_credentials", "roles": ["viewer"] }),
        )
        .await;
    let path = format!("/v1/tokens/{}/roll", id_of(&old));
    let before = snapshot(&app).await;

    for grace in [json!(-1), json!(2_592_001)] {
        let reply = app.post(&path, json!({ "grace_seconds": grace })).await;
        reply.assert_problem(422, "invalid-value");
        assert_eq!(reply.body["field"], "grace_seconds");
    }
    let reply = app
        .post(&path, json!({ "expires_at": app.in_millis(-1_000) }))
        .await;
    reply.assert_problem(422, "invalid-value");
    assert_eq!(reply.body["field"], "expires_at");
    // A manager, even of the system tenant, cannot see, so cannot roll, a token holding
    // latchkey:admin.
    for key in [&manager, &system_manager] {
        let request = app
            .request(
                reqwest::Method::POST,
                &format!("/v1/tokens/{}/roll", id_of(&admin)),
            )
            .bearer_auth(key)
            .json(&json!({}));
        app.send(request).await.assert_problem(404, "not-found");
    }
    app.post(
        "/v1/tokens/00000000-0000-4000-8000-000000000000/roll",
        json!({}),
    )
    .await
    .assert_problem(404, "not-found");
    assert_eq!(snapshot(&app).await, before, "the refusals wrote nothing");

    // The manager may roll acme's own tokens, once.
    let mine = app
        .request(reqwest::Method::POST, &path)
        .bearer_auth(&manager)
        .json(&json!({ "grace_seconds": 60 }));
    app.send(mine).await.assert_status(201);
    let before = snapshot(&app).await;
    app.post(&path, json!({}))
        .await
        .assert_problem(409, "already-rolled");
    assert_eq!(snapshot(&app).await, before, "a second roll wrote nothing");

    let gone = app
        .create_tenant_token("acme", json!({ "name": "gone", "kind": "api_key" }))
        .await;
    app.delete(&format!("/v1/tokens/{}", id_of(&gone)))
        .await
        .assert_status(204);
    assert_eq!(
        token(&app, &id_of(&gone)).await["revoked_reason"],
        "revoked"
    );
    let soon = app
        .create_tenant_token(
            "acme",
            json!({ "name": "soon", "kind": "api_key", "expires_at": app.in_millis(1_000) }),
        )
        .await;
    app.clock.advance(Duration::from_secs(2));
    let before = snapshot(&app).await;
    for ended in [&gone, &soon] {
        app.post(&format!("/v1/tokens/{}/roll", id_of(ended)), json!({}))
            .await
            .assert_problem(409, "revoked");
    }
    assert_eq!(
        snapshot(&app).await,
        before,
        "rolling an ended token wrote nothing"
    );
}
