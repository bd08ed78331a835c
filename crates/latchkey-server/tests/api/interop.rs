//! Interoperability with OAuth and JWT libraries written by others: the `oauth2` crate
//! obtains the token, `jsonwebtoken` verifies it against the published JWKS, for each
//! signing algorithm, and keeps verifying through a key rotation.

use crate::helpers::TestApp;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::{Value, json};

async fn obtain_with_oauth2_crate(app: &TestApp, id: &str, secret: &str) -> String {
    let client = BasicClient::new(ClientId::new(id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", app.base)).unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .exchange_client_credentials()
        .add_scope(Scope::new("reports:read".to_owned()))
        .request_async(&http)
        .await
        .expect("the oauth2 crate obtains a token");
    assert_eq!(
        response.scopes().unwrap()[0].as_str(),
        "reports:read",
        "scope is echoed"
    );
    response.access_token().secret().clone()
}

/// Fetches the JWKS the way a resource server would and verifies with `jsonwebtoken`.
async fn verify_with_jsonwebtoken(
    app: &TestApp,
    jwt: &str,
    alg: Algorithm,
) -> Result<Value, String> {
    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        app.base
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let jwks: JwkSet = reqwest::get(metadata["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = decode_header(jwt).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[&app.base]);
    validation.set_issuer(&[&app.base]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    decode::<Value>(jwt, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn interoperates(signing_algorithm: &str, alg: Algorithm) {
    let app =
        TestApp::sqlite_with(|config| config.signing_algorithm = signing_algorithm.to_owned())
            .await;
    app.seed_catalogue().await;
    app.create_tenant("acme").await;
    let (id, secret) = app.client("acme", json!({ "roles": ["editor"] })).await;
    let jwt = obtain_with_oauth2_crate(&app, &id, &secret).await;
    let claims = verify_with_jsonwebtoken(&app, &jwt, alg).await.unwrap();
    assert_eq!(claims["client_id"], id);
    assert_eq!(claims["scope"], "reports:read");
    assert_eq!(claims["tid"], "acme");

    // Through one rotation the token still verifies; after the second its key is gone.
    app.post("/v1/keys/rotate", json!({}))
        .await
        .assert_status(200);
    verify_with_jsonwebtoken(&app, &jwt, alg).await.unwrap();
    app.post("/v1/keys/rotate", json!({}))
        .await
        .assert_status(200);
    let gone = verify_with_jsonwebtoken(&app, &jwt, alg).await.unwrap_err();
    assert!(gone.contains("is not published"), "{gone}");
    // Tokens signed now verify with the library too.
    let fresh = obtain_with_oauth2_crate(&app, &id, &secret).await;
    verify_with_jsonwebtoken(&app, &fresh, alg).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_libraries_obtain_and_verify_eddsa_tokens() {
    interoperates("EdDSA", Algorithm::EdDSA).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_libraries_obtain_and_verify_es256_tokens() {
    interoperates("ES256", Algorithm::ES256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_libraries_obtain_and_verify_rs256_tokens() {
    interoperates("RS256", Algorithm::RS256).await;
}
