//! latchkey-verify against the real server: discovery, the JWKS, local JWT checks, and
//! introspection of api keys and long-lived JWTs with a gateway credential.

use crate::helpers::TestApp;
use latchkey_verify::{Credential, Verifier, VerifierOptions, VerifyError};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_accepts_what_the_server_issues_and_refuses_what_it_revoked() {
    let app = TestApp::sqlite().await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    app.put_member("acme", "u_42", &["editor"]).await;
    let gateway = app
        .create_tenant_token(
            "latchkey",
            json!({ "name": "gateway", "kind": "api_key", "permissions": ["latchkey:introspect"] }),
        )
        .await;
    let options = VerifierOptions {
        credential: Some(Credential::new(gateway["api_key"].as_str().unwrap())),
        ..VerifierOptions::default()
    };
    let verifier = Verifier::discover(&app.base, options)
        .await
        .expect("discovery");

    let (id, secret) = app.client("acme", json!({ "roles": ["viewer"] })).await;
    let jwt = app.exchange(&id, &secret, &[]).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let principal = verifier
        .verify(&jwt)
        .await
        .expect("a fresh access token verifies");
    assert_eq!(principal.token_id.to_string(), id);
    assert_eq!(principal.tenant.as_str(), "acme");
    assert!(principal.has_scope("reports:read") && !principal.has_scope("reports:write"));

    let key = app
        .create_personal_token(
            "acme",
            "u_42",
            json!({ "name": "k", "kind": "api_key", "permissions": ["reports:write"] }),
        )
        .await;
    let api_key = key["api_key"].as_str().unwrap();
    let principal = verifier
        .verify(api_key)
        .await
        .expect("an api key verifies by introspection");
    assert_eq!(principal.user.as_ref().map(|u| u.as_str()), Some("u_42"));
    assert!(principal.has_scope("reports:write"));

    let long = app
        .create_tenant_token(
            "acme",
            json!({ "name": "l", "kind": "jwt", "roles": ["viewer"] }),
        )
        .await;
    let long_jwt = long["jwt"].as_str().unwrap();
    verifier
        .verify(long_jwt)
        .await
        .expect("a long-lived JWT verifies");

    // Revoked at the server: the long-lived JWT fails at once (no deny-list replica, so
    // introspection decides); the api key once its positive cache entry lapses.
    app.delete(&format!(
        "/v1/tokens/{}",
        long["token"]["id"].as_str().unwrap()
    ))
    .await
    .assert_status(204);
    let fresh = Verifier::discover(
        &app.base,
        VerifierOptions {
            credential: Some(Credential::new(gateway["api_key"].as_str().unwrap())),
            ..VerifierOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        fresh.verify(long_jwt).await,
        Err(VerifyError::InvalidToken(_))
    ));
    let mut tampered = jwt.clone();
    tampered.pop();
    tampered.push(if jwt.ends_with('A') { 'B' } else { 'A' });
    assert!(matches!(
        verifier.verify(&tampered).await,
        Err(VerifyError::InvalidToken(_))
    ));
}
