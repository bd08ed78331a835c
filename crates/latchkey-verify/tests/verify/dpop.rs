//! DPoP-bound tokens at a resource server (docs/MACHINES.md, "Binding tokens with DPoP"): the
//! tower layer needs `Authorization: DPoP` and a proof for the request's method and
//! URI, with `ath`, by the key of `cnf.jkt`, inside the window, used once. Every attack
//! beside its control; the answers carry RFC 9449's `DPoP` challenge.

use crate::support::{Fixture, header, sign};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header as http_header};
use axum::routing::get;
use latchkey_verify::dpop::testing::ProofKey;
use latchkey_verify::dpop::{ALGS, ProofError};
use latchkey_verify::{Clock, DpopRequest, InvalidReason, Scopes, VerifyError};
use serde_json::json;
use std::time::Duration;
use tower::ServiceExt;

const HOST: &str = "api.example.com";
const URI: &str = "http://api.example.com/reports";

fn app(f: &Fixture) -> Router {
    let layer = f.verifier.require(Scopes::all_of(["reports:read"]));
    Router::new().route(
        "/reports",
        get(|| async { "reports" })
            .post(|| async { "posted" })
            .route_layer(layer),
    )
}

/// A token bound to `key`.
fn bound_token(f: &Fixture, key: &ProofKey) -> String {
    let mut claims = f.claims();
    claims["cnf"] = json!({ "jkt": key.jkt() });
    sign(&f.ed, &header(&f.ed), &claims)
}

async fn call(
    app: &Router,
    method: &str,
    path: &str,
    authorization: &str,
    proofs: &[&str],
) -> Response<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(http_header::HOST, HOST)
        .header(http_header::AUTHORIZATION, authorization);
    for proof in proofs {
        request = request.header("dpop", *proof);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn challenge(response: &Response<Body>) -> String {
    response.headers()[http_header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .to_owned()
}

fn assert_refused(response: &Response<Body>, error: &str, why: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
    assert_eq!(
        challenge(response),
        format!("DPoP error=\"{error}\", algs=\"{ALGS}\""),
        "{why}"
    );
}

#[tokio::test]
async fn a_bound_token_with_a_good_proof_passes_the_layer_with_each_algorithm() {
    let f = Fixture::start().await;
    let app = app(&f);
    let now = f.clock.now().unix_seconds();
    for key in [ProofKey::es256(), ProofKey::ed25519(), ProofKey::rs256()] {
        let token = bound_token(&f, &key);
        let proof = key.proof("GET", URI, now, Some(&token));
        let response = call(
            &app,
            "GET",
            "/reports?page=2",
            &format!("DPoP {token}"),
            &[&proof],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{}", key.alg());
        // A second request needs a fresh proof; the cached token still checks it.
        let again = key.proof("GET", URI, now, Some(&token));
        let response = call(&app, "GET", "/reports", &format!("DPoP {token}"), &[&again]).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", key.alg());
    }
}

#[tokio::test]
async fn every_bad_proof_is_refused_with_the_dpop_challenge() {
    let f = Fixture::start().await;
    let app = app(&f);
    let key = ProofKey::es256();
    let token = bound_token(&f, &key);
    let auth = format!("DPoP {token}");
    let now = f.clock.now().unix_seconds();
    let other_key = ProofKey::es256();
    let mut none = key.header();
    none.insert("alg".into(), json!("none"));
    let mut hmac = key.header();
    hmac.insert("alg".into(), json!("HS256"));
    let mut private = key.header();
    private["jwk"]["d"] = json!("AAAA");
    let attacks: Vec<(&str, String)> = vec![
        ("another method", key.proof("POST", URI, now, Some(&token))),
        (
            "another URL",
            key.proof("GET", "http://api.example.com/admin", now, Some(&token)),
        ),
        (
            "another host",
            key.proof("GET", "http://evil.example.com/reports", now, Some(&token)),
        ),
        ("stale iat", key.proof("GET", URI, now - 61, Some(&token))),
        ("future iat", key.proof("GET", URI, now + 61, Some(&token))),
        (
            "wrong ath",
            key.proof("GET", URI, now, Some("another.token.here")),
        ),
        ("no ath", key.proof("GET", URI, now, None)),
        (
            "proof by a key other than cnf's",
            other_key.proof("GET", URI, now, Some(&token)),
        ),
        (
            "alg none",
            key.sign(&none, &key.claims("GET", URI, now, Some(&token))),
        ),
        (
            "HS256",
            key.sign(&hmac, &key.claims("GET", URI, now, Some(&token))),
        ),
        (
            "private key in jwk",
            key.sign(&private, &key.claims("GET", URI, now, Some(&token))),
        ),
    ];
    for (why, proof) in &attacks {
        let response = call(&app, "GET", "/reports", &auth, &[proof]).await;
        assert_refused(&response, "invalid_dpop_proof", why);
    }
    let response = call(&app, "GET", "/reports", &auth, &[]).await;
    assert_refused(
        &response,
        "invalid_dpop_proof",
        "bound token without a proof",
    );
    let proof = key.proof("GET", URI, now, Some(&token));
    let response = call(&app, "GET", "/reports", &auth, &[&proof, &proof]).await;
    assert_refused(&response, "invalid_dpop_proof", "two DPoP headers");

    // Replay: the first use passes, the second is refused.
    let proof = key.proof("GET", URI, now, Some(&token));
    let response = call(&app, "GET", "/reports", &auth, &[&proof]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(&app, "GET", "/reports", &auth, &[&proof]).await;
    assert_refused(&response, "invalid_dpop_proof", "replayed jti");
}

#[tokio::test]
async fn a_bound_token_presented_as_bearer_is_refused_and_an_unbound_one_as_dpop_too() {
    let f = Fixture::start().await;
    let app = app(&f);
    let key = ProofKey::ed25519();
    let token = bound_token(&f, &key);
    let now = f.clock.now().unix_seconds();
    let proof = key.proof("GET", URI, now, Some(&token));
    let response = call(
        &app,
        "GET",
        "/reports",
        &format!("Bearer {token}"),
        &[&proof],
    )
    .await;
    assert_refused(&response, "invalid_token", "bound token as Bearer");
    // Verifier::verify knows no request, so it cannot check a proof: refused too.
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidDpopToken(InvalidReason::DpopBound)
    );
    // An unbound token under the DPoP scheme.
    let plain = f.token(&f.ed);
    let proof = key.proof("GET", URI, now, Some(&plain));
    let response = call(&app, "GET", "/reports", &format!("DPoP {plain}"), &[&proof]).await;
    assert_refused(&response, "invalid_token", "unbound token as DPoP");
    // Control: the unbound token as Bearer passes, with no proof at all.
    let response = call(&app, "GET", "/reports", &format!("Bearer {plain}"), &[]).await;
    assert_eq!(response.status(), StatusCode::OK);
    // A token whose cnf this verifier cannot honour is not read as unbound.
    let mut claims = f.claims();
    claims["cnf"] = json!({ "x5t#S256": "abc" });
    let odd = sign(&f.ed, &header(&f.ed), &claims);
    let response = call(&app, "GET", "/reports", &format!("Bearer {odd}"), &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_proof_window_follows_the_verifiers_clock_and_replays_expire_with_it() {
    let f = Fixture::with(|options| options.dpop_proof_window = Duration::from_secs(10)).await;
    let key = ProofKey::es256();
    let token = bound_token(&f, &key);
    let now = f.clock.now().unix_seconds();
    let proof = key.proof("GET", URI, now, Some(&token));
    let request = DpopRequest {
        method: "GET",
        uri: URI,
        proof: Some(&proof),
    };
    assert!(f.verifier.verify_dpop(&token, &request, None).await.is_ok());
    assert_eq!(
        f.verifier
            .verify_dpop(&token, &request, None)
            .await
            .unwrap_err(),
        VerifyError::InvalidDpopProof(ProofError::Replayed)
    );
    f.clock.advance(Duration::from_secs(11));
    assert_eq!(
        f.verifier
            .verify_dpop(&token, &request, None)
            .await
            .unwrap_err(),
        VerifyError::InvalidDpopProof(ProofError::Stale)
    );
}

#[tokio::test]
async fn behind_a_tls_load_balancer_the_public_origin_is_what_proofs_name() {
    let f = Fixture::with(|options| {
        options.public_origin = Some("https://api.example.com".to_owned());
    })
    .await;
    let app = app(&f);
    let key = ProofKey::es256();
    let token = bound_token(&f, &key);
    let now = f.clock.now().unix_seconds();
    let auth = format!("DPoP {token}");
    // The request reached us over plain HTTP; the client addressed https.
    let proof = key.proof("POST", "https://api.example.com/reports", now, Some(&token));
    let response = call(&app, "POST", "/reports", &auth, &[&proof]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let proof = key.proof("POST", URI, now, Some(&token));
    let response = call(&app, "POST", "/reports", &auth, &[&proof]).await;
    assert_refused(
        &response,
        "invalid_dpop_proof",
        "http htu behind an https origin",
    );
}

#[tokio::test]
async fn a_full_replay_cache_refuses_new_proofs_instead_of_forgetting_old_ones() {
    let f = Fixture::with(|options| options.dpop_replay_capacity = 16).await;
    let key = ProofKey::ed25519();
    let token = bound_token(&f, &key);
    let now = f.clock.now().unix_seconds();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let proof = key.proof("GET", URI, now, Some(&token));
        let request = DpopRequest {
            method: "GET",
            uri: URI,
            proof: Some(&proof),
        };
        statuses.push(match f.verifier.verify_dpop(&token, &request, None).await {
            Ok(_) => 200,
            Err(error) => error.status().as_u16(),
        });
    }
    assert!(statuses.contains(&503), "the cache is bounded");
    assert!(!statuses.contains(&401));
}
