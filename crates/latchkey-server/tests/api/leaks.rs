//! Leak reports (docs/API.md, "Leak reports"; docs/SECRET_SCANNING.md): a reported
//! credential of ours is revoked at once with reason `leaked` and refused by a verifier
//! following the feed; anything else gets the same answer and changes nothing; a
//! scanning partner's batch counts only with a valid signature.

use crate::helpers::{Reply, TestApp};
use crate::{both_backends, both_backends_with};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_server::{Application, Config};
use latchkey_verify::{
    Credential, ReplicaOptions, RevocationReplica, Verifier, VerifierOptions, VerifyError,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

both_backends!(
    a_leaked_api_key_is_revoked_at_once_and_refused_by_a_following_verifier,
    a_leaked_client_secret_is_found_by_its_lookup_value,
    leaked_jwts_and_refresh_tokens_are_revoked,
    a_body_that_is_not_json_is_refused_and_looked_at_by_no_one,
    without_partner_keys_the_partner_endpoint_is_not_configured,
);

both_backends_with!(
    with_partner_keys;
    a_signed_partner_report_revokes_true_positives_and_labels_each,
    an_unsigned_forged_or_unknown_key_report_is_401_and_revokes_nothing,
);

both_backends_with!(
    with_a_high_limit;
    anything_else_gets_the_same_answer_and_changes_nothing,
);

both_backends_with!(
    with_a_low_limit;
    reports_from_one_address_are_limited_per_minute,
);

async fn acme(app: &TestApp) {
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
}

async fn api_key(app: &TestApp) -> (String, String) {
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "ci", "kind": "api_key", "permissions": ["reports:read"] }),
        )
        .await;
    (
        created["token"]["id"].as_str().unwrap().to_owned(),
        created["api_key"].as_str().unwrap().to_owned(),
    )
}

/// `POST /v1/leaks` with no credential.
async fn report(app: &TestApp, body: Value) -> Reply {
    app.send(app.request(Method::POST, "/v1/leaks").json(&body))
        .await
}

#[track_caller]
fn assert_accepted(reply: &Reply) {
    reply.assert_status(202);
    assert_eq!(reply.body, json!({}), "{}", reply.text);
    assert_eq!(reply.header("content-type"), "application/json");
}

async fn token(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/v1/tokens/{id}")).await;
    reply.assert_status(200);
    reply.body
}

#[track_caller]
fn assert_active(token: &Value) {
    assert_eq!(token["revoked_at"], Value::Null, "{token}");
    assert_eq!(token["revoked_reason"], Value::Null, "{token}");
}

async fn assert_leaked(app: &TestApp, id: &str) {
    let token = token(app, id).await;
    assert_eq!(token["revoked_reason"], "leaked", "{token}");
    assert!(token["revoked_at"].is_string(), "{token}");
}

async fn events(app: &TestApp, action: &str, id: &str) -> Vec<Value> {
    let reply = app
        .get(&format!("/v1/audit?action={action}&token_id={id}"))
        .await;
    reply.assert_status(200);
    reply.body["items"].as_array().unwrap().clone()
}

/// The whole audit trail as text, to search for what must never be in it.
async fn audit_text(app: &TestApp) -> String {
    let db = app.db().await;
    let rows: Vec<String> = sqlx::query_scalar("SELECT details FROM audit_events")
        .fetch_all(&db)
        .await
        .unwrap();
    db.close().await;
    rows.join("\n")
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

async fn a_leaked_api_key_is_revoked_at_once_and_refused_by_a_following_verifier(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let (other_id, other_key) = api_key(&app).await;
    let (verifier, _replica) = following_verifier(&app).await;
    verifier.verify(&key).await.expect("the key verifies");
    verifier
        .verify(&other_key)
        .await
        .expect("so does the other");

    // A careless reporter repeats the secret in the url: it never reaches the trail.
    let url = format!("https://paste.invalid/raw/1?leak={key}");
    assert_accepted(&report(&app, json!({ "secret": key, "url": url })).await);
    assert_leaked(&app, &id).await;
    assert_active(&token(&app, &other_id).await);

    // The feed carries the revocation to the verifier within the propagation bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while verifier.verify(&key).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the verifier refuses the leaked key within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(matches!(
        verifier.verify(&key).await,
        Err(VerifyError::InvalidToken(_))
    ));
    verifier
        .verify(&other_key)
        .await
        .expect("the other key still verifies");
    // The server itself refuses the key at once.
    app.call(Method::GET, "/v1/tenants/acme/tokens", Some(&key), None)
        .await
        .assert_problem(401, "invalid-token");

    let leaked = events(&app, "token.leaked", &id).await;
    assert_eq!(leaked.len(), 1, "{leaked:?}");
    assert_eq!(
        leaked[0]["details"]["url"],
        "https://paste.invalid/raw/1?leak=[secret]"
    );
    assert_eq!(leaked[0]["details"]["credential"], "token");
    assert_eq!(leaked[0]["actor"], "leak_report");
    assert_eq!(leaked[0]["ip"], "127.0.0.1");
    let revoked = events(&app, "token.revoked", &id).await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["details"]["reason"], "leaked");
    assert!(!audit_text(&app).await.contains(&key[6..]));

    // A second report of the same secret changes nothing.
    let before = token(&app, &id).await;
    assert_accepted(&report(&app, json!({ "secret": key, "url": "https://x.invalid/" })).await);
    assert_eq!(token(&app, &id).await, before);
    assert_eq!(app.audit_count("token.leaked").await, 1);
    assert_eq!(app.audit_count("token.revoked").await, 1);
}

async fn a_leaked_client_secret_is_found_by_its_lookup_value(app: TestApp) {
    acme(&app).await;
    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let (old_id, old_secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    app.exchange(&id, &secret, &[]).await.assert_status(200);

    // The lookup value is stored, and it is not the secret nor its salted hash.
    let db = app.db().await;
    let row: (Option<Vec<u8>>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT secret_lookup, secret_hash FROM tokens WHERE id = $1")
            .bind(id.clone())
            .fetch_one(&db)
            .await
            .unwrap();
    let lookup = row.0.expect("a new client secret has a lookup value");
    assert_eq!(lookup.len(), 32);
    assert_ne!(Some(lookup.clone()), row.1);
    assert!(!String::from_utf8_lossy(&lookup).contains(&secret[6..20]));
    // A secret made before lookup values existed has none: a report cannot find it.
    sqlx::query("UPDATE tokens SET secret_lookup = NULL WHERE id = $1")
        .bind(old_id.clone())
        .execute(&db)
        .await
        .unwrap();
    db.close().await;

    assert_accepted(
        &report(
            &app,
            json!({ "secret": secret, "url": "https://ci.invalid/log" }),
        )
        .await,
    );
    assert_leaked(&app, &id).await;
    app.exchange(&id, &secret, &[]).await.assert_status(401);
    let leaked = events(&app, "token.leaked", &id).await;
    assert_eq!(leaked.len(), 1);
    assert_eq!(leaked[0]["details"]["url"], "https://ci.invalid/log");

    assert_accepted(&report(&app, json!({ "secret": old_secret })).await);
    assert_active(&token(&app, &old_id).await);
    app.exchange(&old_id, &old_secret, &[])
        .await
        .assert_status(200);
    assert_eq!(app.audit_count("token.leaked").await, 1);

    // Rolled once, such a token has a successor whose secret a report finds.
    let rolled = app
        .post(
            &format!("/v1/tokens/{old_id}/roll"),
            json!({ "grace_seconds": 60 }),
        )
        .await;
    rolled.assert_status(201);
    let successor = rolled.body["token"]["id"].as_str().unwrap().to_owned();
    let successor_secret = rolled.body["client_secret"].as_str().unwrap().to_owned();
    assert_accepted(&report(&app, json!({ "secret": successor_secret })).await);
    assert_leaked(&app, &successor).await;
    assert_active(&token(&app, &old_id).await);
    assert_eq!(app.audit_count("token.leaked").await, 2);
}

async fn leaked_jwts_and_refresh_tokens_are_revoked(app: TestApp) {
    acme(&app).await;
    // A long-lived JWT: its token is revoked.
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "jwt", "kind": "jwt", "permissions": ["reports:read"] }),
        )
        .await;
    let jwt_id = created["token"]["id"].as_str().unwrap().to_owned();
    let long_lived = created["jwt"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&long_lived).await["active"], true);
    assert_accepted(&report(&app, json!({ "secret": long_lived })).await);
    assert_leaked(&app, &jwt_id).await;
    assert_eq!(
        app.introspect(&long_lived).await,
        json!({ "active": false })
    );

    // An access token: only its jti goes on the deny list; its client keeps working.
    let (id, secret) = app
        .client(
            "acme",
            json!({ "roles": ["viewer"], "refresh_tokens": true }),
        )
        .await;
    let granted = app.exchange(&id, &secret, &[]).await;
    granted.assert_status(200);
    let access = granted.body["access_token"].as_str().unwrap().to_owned();
    let refresh = granted.body["refresh_token"].as_str().unwrap().to_owned();
    assert_accepted(&report(&app, json!({ "secret": access })).await);
    assert_eq!(app.introspect(&access).await, json!({ "active": false }));
    assert_active(&token(&app, &id).await);
    let leaked = events(&app, "token.leaked", &id).await;
    assert_eq!(leaked.len(), 1);
    assert_eq!(leaked[0]["details"]["credential"], "access_token");

    // A refresh token: its family goes; the client's own secret still works.
    assert_eq!(app.introspect(&refresh).await["active"], true);
    assert_accepted(&report(&app, json!({ "secret": refresh })).await);
    assert_eq!(app.introspect(&refresh).await, json!({ "active": false }));
    app.exchange(&id, &secret, &[]).await.assert_status(200);
    assert_active(&token(&app, &id).await);
    let leaked = events(&app, "token.leaked", &id).await;
    assert_eq!(leaked.len(), 2);
    assert_eq!(leaked[0]["details"]["credential"], "refresh_token");

    // Reported again, each changes nothing.
    for secret in [&long_lived, &access, &refresh] {
        assert_accepted(&report(&app, json!({ "secret": secret })).await);
    }
    assert_eq!(app.audit_count("token.leaked").await, 3);
    assert!(!audit_text(&app).await.contains(&refresh[6..]));
}

/// `text` with its checksum recomputed, as an attacker who knows the format makes it.
fn with_checksum(body: &str) -> String {
    format!("{body}{}", latchkey_core::encoding::checksum(body))
}

async fn anything_else_gets_the_same_answer_and_changes_nothing(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let (client_id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let created = app
        .create_tenant_token(
            "acme",
            json!({ "name": "jwt", "kind": "jwt", "permissions": ["reports:read"] }),
        )
        .await;
    let jwt_id = created["token"]["id"].as_str().unwrap().to_owned();
    let jwt = created["jwt"].as_str().unwrap().to_owned();
    // Well-formed forgeries: the real api key's id with another secret, a client secret
    // never issued, each with a correct checksum; a JWT with its signature altered.
    let forged_key = with_checksum(&format!("{}{}", &key[..28], "A".repeat(43)));
    let forged_secret = with_checksum(&format!("lk_sk_{}", "B".repeat(43)));
    let mut forged_jwt = jwt.clone();
    let last = if forged_jwt.ends_with('A') { "B" } else { "A" };
    forged_jwt.replace_range(jwt.len() - 1.., last);
    let bodies = [
        json!({ "secret": forged_key }),
        json!({ "secret": forged_secret }),
        json!({ "secret": forged_jwt }),
        json!({ "secret": format!("{key}x") }),
        json!({ "secret": key.to_uppercase() }),
        json!({ "secret": "garbage" }),
        json!({ "secret": "" }),
        json!({ "secret": 42 }),
        json!({ "secret": null }),
        json!({ "secret": [key.clone()] }),
        json!({ "token": key.clone() }),
        json!({}),
        json!([]),
        json!("lk_ak_"),
        json!(null),
    ];
    for body in bodies {
        let reply = report(&app, body.clone()).await;
        assert_accepted(&reply);
    }
    for id in [&id, &client_id, &jwt_id] {
        assert_active(&token(&app, id).await);
    }
    app.exchange(&client_id, &secret, &[])
        .await
        .assert_status(200);
    assert_eq!(app.introspect(&jwt).await["active"], true);
    app.call(Method::GET, "/v1/tenants/acme/tokens", Some(&key), None)
        .await
        .assert_problem(403, "insufficient-scope");
    assert_eq!(app.audit_count("token.leaked").await, 0);
    assert_eq!(app.audit_count("token.revoked").await, 0);
}

async fn a_body_that_is_not_json_is_refused_and_looked_at_by_no_one(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let attempts: [(&str, Vec<u8>); 4] = [
        ("text/plain", key.clone().into_bytes()),
        ("application/json", key.clone().into_bytes()),
        (
            "application/x-www-form-urlencoded",
            format!("secret={key}").into_bytes(),
        ),
        (
            "application/json",
            format!("{{\"secret\":\"{key}\"").into_bytes(),
        ),
    ];
    for (content_type, body) in attempts {
        let reply = app
            .send(
                app.request(Method::POST, "/v1/leaks")
                    .header("content-type", content_type)
                    .body(body),
            )
            .await;
        reply.assert_problem(400, "invalid-body");
        assert!(!reply.text.contains(&key[6..]), "{}", reply.text);
    }
    // A body over the limit is 413, nothing looked at either.
    let padding = "x".repeat(70 * 1024);
    let reply = report(&app, json!({ "secret": key, "url": padding })).await;
    reply.assert_problem(413, "payload-too-large");
    assert_active(&token(&app, &id).await);
    assert_eq!(app.audit_count("token.leaked").await, 0);
}

async fn without_partner_keys_the_partner_endpoint_is_not_configured(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let body =
        json!([{ "token": key, "type": "latchkey_api_key", "url": "u", "source": "content" }]);
    let signed = sign(&partner().current, body.to_string().as_bytes());
    let reply = post_partner(&app, "k-current", &signed, body.to_string()).await;
    reply.assert_problem(404, "not-configured");
    assert!(
        reply.body["detail"]
            .as_str()
            .unwrap()
            .contains("leak_report_public_keys_file")
    );
    assert_active(&token(&app, &id).await);
}

/// The scanning partner of these tests: two key pairs in its key document, and one key
/// it does not list.
struct Partner {
    current: EcdsaKeyPair,
    previous: EcdsaKeyPair,
    stranger: EcdsaKeyPair,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

fn pem_of(pair: &EcdsaKeyPair) -> String {
    let der = pair.public_key().as_der().unwrap();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der.as_ref())
    )
}

fn partner() -> &'static Partner {
    static PARTNER: OnceLock<Partner> = OnceLock::new();
    PARTNER.get_or_init(|| {
        let generate = || EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let (current, previous, stranger) = (generate(), generate(), generate());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("partner-keys.json");
        let document = json!({ "public_keys": [
            { "key_identifier": "k-current", "key": pem_of(&current), "is_current": true },
            { "key_identifier": "k-previous", "key": pem_of(&previous), "is_current": false },
        ]});
        std::fs::write(&file, document.to_string()).unwrap();
        Partner {
            current,
            previous,
            stranger,
            file,
            _dir: dir,
        }
    })
}

fn with_partner_keys(config: &mut Config) {
    config.leak_report_public_keys_file = Some(partner().file.clone());
}

fn sign(pair: &EcdsaKeyPair, body: &[u8]) -> String {
    STANDARD.encode(pair.sign(&SystemRandom::new(), body).unwrap())
}

async fn post_partner(app: &TestApp, key_id: &str, signature: &str, body: String) -> Reply {
    app.send(
        app.request(Method::POST, "/v1/leaks/github")
            .header("content-type", "application/json")
            .header("Github-Public-Key-Identifier", key_id)
            .header("Github-Public-Key-Signature", signature)
            .body(body),
    )
    .await
}

async fn a_signed_partner_report_revokes_true_positives_and_labels_each(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let (client_id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let (dead_id, dead_key) = api_key(&app).await;
    app.delete(&format!("/v1/tokens/{dead_id}"))
        .await
        .assert_status(204);
    let body = json!([
        { "token": key, "type": "latchkey_api_key", "url": "https://repo.invalid/a", "source": "content" },
        { "token": "lk_ak_not-a-key", "type": "latchkey_api_key", "url": "https://repo.invalid/b", "source": "commit" },
        { "token": dead_key, "type": "latchkey_api_key", "url": "https://repo.invalid/c", "source": "content" },
        { "token": secret, "type": "latchkey_client_secret", "url": "https://repo.invalid/d", "source": "issue", "extra": 1 },
    ])
    .to_string();
    // Signed with the previous key, still listed: it counts.
    let reply = post_partner(
        &app,
        "k-previous",
        &sign(&partner().previous, body.as_bytes()),
        body,
    )
    .await;
    reply.assert_status(200);
    assert_eq!(
        reply.body,
        json!([
            { "token_raw": key, "token_type": "latchkey_api_key", "label": "true_positive" },
            { "token_raw": "lk_ak_not-a-key", "token_type": "latchkey_api_key", "label": "false_positive" },
            { "token_raw": dead_key, "token_type": "latchkey_api_key", "label": "true_positive" },
            { "token_raw": secret, "token_type": "latchkey_client_secret", "label": "true_positive" },
        ])
    );
    assert_leaked(&app, &id).await;
    assert_leaked(&app, &client_id).await;
    // The token revoked before keeps its reason.
    assert_eq!(token(&app, &dead_id).await["revoked_reason"], "revoked");
    let leaked = events(&app, "token.leaked", &id).await;
    assert_eq!(leaked.len(), 1);
    assert_eq!(leaked[0]["actor"], "secret_scanning");
    assert_eq!(
        leaked[0]["details"],
        json!({ "url": "https://repo.invalid/a", "source": "content",
                "type": "latchkey_api_key", "credential": "token" })
    );
    assert_eq!(app.audit_count("token.leaked").await, 2);
    let trail = audit_text(&app).await;
    assert!(!trail.contains(&key[6..]) && !trail.contains(&secret[6..]));

    // A signed body that is not JSON is 400.
    let reply = post_partner(
        &app,
        "k-current",
        &sign(&partner().current, b"not json"),
        "not json".to_owned(),
    )
    .await;
    reply.assert_problem(400, "invalid-body");
}

async fn an_unsigned_forged_or_unknown_key_report_is_401_and_revokes_nothing(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let body =
        json!([{ "token": key, "type": "latchkey_api_key", "url": "u", "source": "content" }])
            .to_string();
    let other_body =
        json!([{ "token": "x", "type": "t", "url": "u", "source": "content" }]).to_string();
    let good = sign(&partner().current, body.as_bytes());
    let attempts = [
        // Signed by a key the document does not list, under a listed identifier.
        ("k-current", sign(&partner().stranger, body.as_bytes())),
        // Signed with the other listed key than the one it names.
        ("k-current", sign(&partner().previous, body.as_bytes())),
        // A valid signature of another body.
        ("k-current", sign(&partner().current, other_body.as_bytes())),
        // An identifier no key has.
        ("k-unknown", good.clone()),
        // Garbage.
        ("k-current", "bm90IGEgc2lnbmF0dXJl".to_owned()),
        ("k-current", "%%%".to_owned()),
        ("k-current", String::new()),
    ];
    for (key_id, signature) in attempts {
        let reply = post_partner(&app, key_id, &signature, body.clone()).await;
        reply.assert_problem(401, "invalid-signature");
    }
    // No headers at all.
    let reply = app
        .send(
            app.request(Method::POST, "/v1/leaks/github")
                .header("content-type", "application/json")
                .body(body.clone()),
        )
        .await;
    reply.assert_problem(401, "invalid-signature");
    assert_active(&token(&app, &id).await);
    assert_eq!(app.audit_count("token.leaked").await, 0);

    // The control: the same body, rightly signed, revokes.
    let reply = post_partner(&app, "k-current", &good, body).await;
    reply.assert_status(200);
    assert_eq!(reply.body[0]["label"], "true_positive");
    assert_leaked(&app, &id).await;
}

/// Room for more reports than the default limit of ten a minute.
fn with_a_high_limit(config: &mut Config) {
    config.leak_reports_per_minute = 100;
}

fn with_a_low_limit(config: &mut Config) {
    config.leak_reports_per_minute = 3;
}

async fn reports_from_one_address_are_limited_per_minute(app: TestApp) {
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    for _ in 0..3 {
        assert_accepted(&report(&app, json!({ "secret": "garbage" })).await);
    }
    // The fourth in the minute is refused before its body is looked at.
    let reply = report(&app, json!({ "secret": key })).await;
    reply.assert_problem(429, "too-many-requests");
    let wait: u64 = reply.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_active(&token(&app, &id).await);
    assert_eq!(app.audit_count("token.leaked").await, 0);
    // The limit is per endpoint: the management API still answers this address.
    app.get("/v1/tenants/acme").await.assert_status(200);
}

/// A key document the server cannot use stops the start, naming the setting.
#[tokio::test]
async fn a_bad_partner_key_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let p384 =
        EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING).unwrap();
    let cases = [
        ("missing.json", None, "No such file"),
        ("empty.json", Some(r#"{"public_keys":[]}"#.to_owned()), "lists no public keys"),
        ("text.json", Some("keys".to_owned()), "is not a public-keys document"),
        (
            "p384.json",
            Some(
                json!({ "public_keys": [{ "key_identifier": "k", "key": pem_of(&p384), "is_current": true }] })
                    .to_string(),
            ),
            "key \"k\" is not an ECDSA P-256 public key",
        ),
    ];
    for (name, content, expected) in cases {
        let file = dir.path().join(name);
        if let Some(content) = &content {
            std::fs::write(&file, content).unwrap();
        }
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            leak_report_public_keys_file: Some(file),
            ..Config::default()
        };
        let error = match Application::build(config).await {
            Ok(_) => panic!("the server started with {name}"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains("leak_report_public_keys_file") && error.contains(expected),
            "{name}: {error}"
        );
    }
}

/// A loopback host serving a key document that the test may replace, as a scanning
/// partner's key URL does.
async fn key_host(document: Arc<std::sync::Mutex<(u16, String)>>) -> String {
    async fn serve(
        axum::extract::State(document): axum::extract::State<Arc<std::sync::Mutex<(u16, String)>>>,
    ) -> (axum::http::StatusCode, String) {
        let (status, body) = document.lock().unwrap().clone();
        (axum::http::StatusCode::from_u16(status).unwrap(), body)
    }
    let app = axum::Router::new()
        .route("/keys", axum::routing::get(serve))
        .with_state(document);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/keys", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn key_document(entries: &[(&str, &EcdsaKeyPair)]) -> String {
    let keys: Vec<Value> = entries
        .iter()
        .map(|(id, pair)| json!({ "key_identifier": id, "key": pem_of(pair), "is_current": true }))
        .collect();
    json!({ "public_keys": keys }).to_string()
}

/// Keys read from a URL verify reports, and a refresh picks up the partner's new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partner_keys_are_read_from_a_url_and_refreshed() {
    let partner = partner();
    let document = Arc::new(std::sync::Mutex::new((
        200,
        key_document(&[("k-url", &partner.current)]),
    )));
    let url = key_host(document.clone()).await;
    let app = TestApp::sqlite_with(|config| {
        config.leak_report_public_keys_url = Some(url.clone());
        config.leak_report_public_keys_refresh_seconds = 1;
    })
    .await;
    acme(&app).await;
    let (id, key) = api_key(&app).await;
    let body =
        json!([{ "token": key, "type": "latchkey_api_key", "url": "u", "source": "content" }])
            .to_string();
    let reply = post_partner(
        &app,
        "k-url",
        &sign(&partner.current, body.as_bytes()),
        body,
    )
    .await;
    reply.assert_status(200);
    assert_eq!(reply.body[0]["label"], "true_positive");
    assert_leaked(&app, &id).await;

    // A key the document does not list yet is refused; once it is listed, and the
    // server has read the document again, it counts. A failed read keeps the last keys.
    let garbage = json!([{ "token": "garbage" }]).to_string();
    let by_new = sign(&partner.previous, garbage.as_bytes());
    post_partner(&app, "k-next", &by_new, garbage.clone())
        .await
        .assert_problem(401, "invalid-signature");
    *document.lock().unwrap() = (
        200,
        key_document(&[("k-url", &partner.current), ("k-next", &partner.previous)]),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = post_partner(&app, "k-next", &by_new, garbage.clone()).await;
        if reply.status == 200 {
            assert_eq!(reply.body[0]["label"], "false_positive");
            break;
        }
        reply.assert_problem(401, "invalid-signature");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refresh reads the new key"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    *document.lock().unwrap() = (500, "down".to_owned());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    post_partner(&app, "k-next", &by_new, garbage)
        .await
        .assert_status(200);
}

/// A key URL that is not https (beyond loopback), or that does not serve a good key
/// document at start, stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_partner_key_url_stops_the_start() {
    let document = Arc::new(std::sync::Mutex::new((500, "down".to_owned())));
    let down = key_host(document.clone()).await;
    let big = key_host(Arc::new(std::sync::Mutex::new((
        200,
        format!(
            "{{\"public_keys\":[],\"pad\":\"{}\"}}",
            "x".repeat(70 * 1024)
        ),
    ))))
    .await;
    for (url, expected) in [
        ("http://192.0.2.1/keys".to_owned(), "must be https://"),
        (down, "answered 500"),
        (big, "is larger than 65536 bytes"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            leak_report_public_keys_url: Some(url.clone()),
            ..Config::default()
        };
        let error = match Application::build(config).await {
            Ok(_) => panic!("the server started with {url}"),
            Err(error) => format!("{error:#}"),
        };
        assert!(
            error.contains("leak_report_public_keys_url") && error.contains(expected),
            "{url}: {error}"
        );
    }
}
