//! Api keys and long-lived JWTs: introspection with the verifier's own credential, its
//! cache (positive and negative TTLs, single-flight) and the scope check on cache hits.

use crate::support::{DenyList, Fixture, api_key, header, sign};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header as h};
use axum::routing::get;
use latchkey_verify::{InvalidReason, Revocation, Scopes, TokenKind, VerifyError};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::task::JoinSet;
use tower::ServiceExt;

#[tokio::test]
async fn an_api_key_is_introspected_once_and_then_served_from_the_cache() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read reports:write");
    let principal = f.verifier.verify(&key).await.unwrap();
    assert_eq!(principal.token_id, id);
    assert_eq!(principal.kind, TokenKind::ApiKey);
    assert_eq!(principal.tenant.as_str(), "acme");
    assert!(principal.has_scope("reports:write"));
    for _ in 0..5 {
        assert_eq!(f.verifier.verify(&key).await.unwrap(), principal);
    }
    assert_eq!(f.issuer.introspections(), 1);
}

#[tokio::test]
async fn an_active_answer_expires_after_the_positive_ttl() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    f.verifier.verify(&key).await.unwrap();
    f.clock.advance(Duration::from_secs(29));
    f.verifier.verify(&key).await.unwrap();
    assert_eq!(f.issuer.introspections(), 1);
    f.clock.advance(Duration::from_secs(2));
    f.verifier.verify(&key).await.unwrap();
    assert_eq!(f.issuer.introspections(), 2);
}

#[tokio::test]
async fn an_inactive_key_is_remembered_for_the_shorter_negative_ttl() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    let inactive = VerifyError::InvalidToken(InvalidReason::Inactive);
    assert_eq!(f.verifier.verify(&key).await.unwrap_err(), inactive);
    assert_eq!(f.verifier.verify(&key).await.unwrap_err(), inactive);
    assert_eq!(f.issuer.introspections(), 1);

    // The key is created now; the negative answer holds for 5 s, not the 30 s of a
    // positive one.
    f.issuer.activate(&key, id, "reports:read");
    f.clock.advance(Duration::from_secs(4));
    assert_eq!(f.verifier.verify(&key).await.unwrap_err(), inactive);
    f.clock.advance(Duration::from_secs(2));
    assert!(f.verifier.verify(&key).await.is_ok());
    assert_eq!(f.issuer.introspections(), 2);
}

#[tokio::test]
async fn the_scope_check_runs_on_introspection_cache_hits() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    let app = Router::new()
        .route(
            "/reports",
            get(|| async { "list" })
                .route_layer(f.verifier.require(Scopes::all_of(["reports:read"]))),
        )
        .route(
            "/reports",
            axum::routing::post(|| async { "made" })
                .route_layer(f.verifier.require(Scopes::all_of(["reports:write"]))),
        );
    let call = |method: &str| {
        Request::builder()
            .method(method)
            .uri("/reports")
            .header(h::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.clone().oneshot(call("GET")).await.unwrap().status(),
        StatusCode::OK
    );
    let denied = app.clone().oneshot(call("POST")).await.unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        denied.headers()[h::WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\", scope=\"reports:write\""
    );
    assert_eq!(
        f.issuer.introspections(),
        1,
        "the 403 came from a cache hit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_key_share_a_single_introspection() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    // Holds the one flight open while the others pile up behind it.
    f.issuer.delay_introspection(Duration::from_millis(200));
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let (verifier, key) = (f.verifier.clone(), key.clone());
        tasks.spawn(async move { verifier.verify(&key).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().is_ok());
    }
    assert_eq!(f.issuer.introspections(), 1);
}

#[tokio::test]
async fn a_malformed_api_key_is_refused_without_introspection() {
    let f = Fixture::start().await;
    let (key, _) = api_key();
    let mut typo = key.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'a' { 'b' } else { 'a' });
    let client_secret = format!("lk_sk_{}", &key[6..55]);
    for bad in [
        typo.as_str(),
        &key[..40],
        "lk_ak_",
        "not-a-key",
        &client_secret,
    ] {
        assert_eq!(
            f.verifier.verify(bad).await.unwrap_err(),
            VerifyError::InvalidToken(InvalidReason::MalformedApiKey),
            "{bad}"
        );
    }
    assert_eq!(f.issuer.introspections(), 0);
}

#[tokio::test]
async fn a_verifier_without_a_credential_refuses_api_keys() {
    let f = Fixture::with(|o| o.credential = None).await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    assert_eq!(
        f.verifier.verify(&key).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::IntrospectionNotConfigured)
    );
    assert_eq!(f.issuer.introspections(), 0);
}

#[tokio::test]
async fn an_introspection_failure_fails_closed_and_is_not_cached() {
    let f = Fixture::start().await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    f.issuer.fail_introspection(StatusCode::UNAUTHORIZED);
    let err = f.verifier.verify(&key).await.unwrap_err();
    assert!(matches!(err, VerifyError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
    f.issuer.fail_introspection(StatusCode::OK);
    let err = f.verifier.verify(&key).await.unwrap_err();
    assert!(
        matches!(err, VerifyError::Unavailable(_)),
        "a 200 without JSON: {err:?}"
    );
    assert_eq!(f.issuer.introspections(), 2);
}

#[tokio::test]
async fn an_api_key_on_the_deny_list_is_refused_before_any_introspection() {
    let deny = DenyList::new(Revocation::NotRevoked);
    let f = Fixture::with(|o| o.revocation = deny.clone()).await;
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    assert!(f.verifier.verify(&key).await.is_ok());
    deny.revoke(&id.to_string());
    assert_eq!(
        f.verifier.verify(&key).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Revoked)
    );
    let (other, _) = api_key();
    deny.revoke(&api_key_id(&other));
    assert_eq!(
        f.verifier.verify(&other).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Revoked)
    );
    assert_eq!(f.issuer.introspections(), 1);
}

fn api_key_id(key: &str) -> String {
    let codec = latchkey_core::secret::SecretCodec::new(Default::default(), &[0; 32]);
    codec.parse(key).unwrap().id.unwrap().to_string()
}

fn long_lived(f: &Fixture) -> (String, Value) {
    let mut claims = f.claims();
    claims.as_object_mut().unwrap().remove("exp");
    claims["knd"] = json!("jwt");
    (sign(&f.ed, &header(&f.ed), &claims), claims)
}

#[tokio::test]
async fn a_long_lived_jwt_without_a_deny_list_is_admitted_by_introspection() {
    let f = Fixture::start().await;
    let (token, claims) = long_lived(&f);
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Inactive),
        "revoked (inactive) at the issuer"
    );
    f.clock.advance(Duration::from_secs(6));
    f.issuer.answer(&token, json!({ "active": true, "client_id": claims["client_id"], "tid": "acme", "scope": "reports:read" }));
    let principal = f.verifier.verify(&token).await.unwrap();
    assert_eq!(principal.kind, TokenKind::Jwt);
    assert_eq!(principal.expires_at, None);
    f.verifier.verify(&token).await.unwrap();
    assert_eq!(
        f.issuer.introspections(),
        2,
        "the second active answer came from the cache"
    );
}

#[tokio::test]
async fn a_long_lived_jwt_with_a_deny_list_that_knows_the_grants_needs_no_introspection() {
    let deny = DenyList::new(Revocation::NotRevoked);
    deny.script(|_| {});
    let f = Fixture::with(|o| o.revocation = deny.clone()).await;
    let (token, claims) = long_lived(&f);
    assert!(f.verifier.verify(&token).await.is_ok());
    deny.revoke(claims["client_id"].as_str().unwrap());
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Revoked)
    );
    assert_eq!(f.issuer.introspections(), 0);
}

#[tokio::test]
async fn a_short_lived_access_token_without_exp_is_refused() {
    let f = Fixture::start().await;
    let (_, mut claims) = long_lived(&f);
    claims.as_object_mut().unwrap().remove("knd");
    assert_eq!(
        f.verifier
            .verify(&sign(&f.ed, &header(&f.ed), &claims))
            .await
            .unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::MissingClaim("exp"))
    );
}
