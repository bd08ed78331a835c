//! The tower layer and the axum extractor: RFC 6750 answers and what handlers see.

use crate::support::{DenyList, Fixture};
use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, Response, StatusCode, header};
use axum::routing::get;
use latchkey_verify::{Clock, Principal, Revocation, Scopes};
use serde_json::Value;
use tower::ServiceExt;

fn app(f: &Fixture) -> Router {
    let v = &f.verifier;
    Router::new()
        .route(
            "/reports",
            get(|| async { "reports" }).route_layer(v.require(Scopes::all_of(["reports:read"]))),
        )
        .route(
            "/admin",
            get(|| async { "admin" })
                .route_layer(v.require(Scopes::all_of(["reports:read", "reports:admin"]))),
        )
        .route(
            "/either",
            get(|| async { "either" })
                .route_layer(v.require(Scopes::any_of(["reports:admin", "reports:read"]))),
        )
        .route(
            "/whoami",
            get(|p: Principal| async move { axum::Json(p) }).route_layer(v.layer()),
        )
        .route(
            "/unprotected",
            get(|p: Principal| async move { axum::Json(p) }),
        )
}

async fn call(app: &Router, path: &str, authorization: &[&str]) -> Response<Body> {
    let mut request = Request::builder().uri(path);
    for value in authorization {
        request = request.header(header::AUTHORIZATION, *value);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn challenge(response: &Response<Body>) -> &str {
    response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn a_request_without_a_token_gets_a_bare_bearer_challenge() {
    let f = Fixture::start().await;
    let response = call(&app(&f), "/reports", &[]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), "Bearer");
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn another_authorization_scheme_counts_as_no_token() {
    let f = Fixture::start().await;
    let response = call(&app(&f), "/reports", &["Basic YTpi"]).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge(&response), "Bearer");
}

#[tokio::test]
async fn an_invalid_token_gets_an_invalid_token_challenge() {
    let f = Fixture::start().await;
    let mut expired = f.claims();
    expired["exp"] = (f.clock.now().unix_seconds() - 3600).into();
    let token = crate::support::sign(&f.ed, &crate::support::header(&f.ed), &expired);
    for bad in [
        format!("Bearer {token}"),
        "Bearer e30.e30.".to_owned(),
        "Bearer lk_ak_x".to_owned(),
    ] {
        let response = call(&app(&f), "/reports", &[&bad]).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(challenge(&response), "Bearer error=\"invalid_token\"");
    }
}

#[tokio::test]
async fn a_malformed_or_repeated_authorization_header_is_an_invalid_request() {
    let f = Fixture::start().await;
    let token = format!("Bearer {}", f.token(&f.ed));
    for headers in [
        vec![token.as_str(), token.as_str()],
        vec!["Bearer"],
        vec!["Bearer a b"],
    ] {
        let response = call(&app(&f), "/reports", &headers).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{headers:?}");
        assert_eq!(challenge(&response), "Bearer error=\"invalid_request\"");
    }
}

#[tokio::test]
async fn a_token_without_the_scope_gets_403_naming_the_scope() {
    let f = Fixture::start().await;
    let token = format!("Bearer {}", f.token(&f.ed));
    let response = call(&app(&f), "/admin", &[&token]).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        challenge(&response),
        "Bearer error=\"insufficient_scope\", scope=\"reports:read reports:admin\""
    );
}

#[tokio::test]
async fn a_token_with_the_scope_reaches_the_handler_and_any_of_needs_only_one() {
    let f = Fixture::start().await;
    let token = format!("bearer {}", f.token(&f.ed));
    for path in ["/reports", "/either"] {
        let response = call(&app(&f), path, &[&token]).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn whoami_returns_the_verified_principal() {
    let f = Fixture::start().await;
    let claims = f.claims();
    let token = crate::support::sign(&f.ed, &crate::support::header(&f.ed), &claims);
    let response = call(&app(&f), "/whoami", &[&format!("Bearer {token}")]).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&to_bytes(response.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(body["token_id"], claims["client_id"]);
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["user"], Value::Null);
    assert_eq!(body["owner"], "tenant");
    assert_eq!(body["kind"], "client_credentials");
    assert_eq!(body["scopes"], serde_json::json!(["reports:read"]));
    assert_eq!(body["jti"], claims["jti"]);
}

#[tokio::test]
async fn a_trust_tokens_subject_and_trust_reach_the_handler_and_a_plain_tokens_do_not() {
    let f = Fixture::start().await;
    let whoami = |claims: Value| {
        let token = crate::support::sign(&f.ed, &crate::support::header(&f.ed), &claims);
        let app = app(&f);
        async move {
            let response = call(&app, "/whoami", &[&format!("Bearer {token}")]).await;
            let status = response.status();
            let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
            (status, serde_json::from_slice::<Value>(&body).ok())
        }
    };
    let subject = "repo:acme/app:ref:refs/heads/main";
    let mut trusted = f.claims();
    trusted["sub"] = subject.into();
    trusted["trust_id"] = trusted["client_id"].clone();
    let (status, body) = whoami(trusted.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let body = body.unwrap();
    assert_eq!(body["token_id"], trusted["client_id"]);
    assert_eq!(body["trust"]["trust_id"], trusted["client_id"]);
    assert_eq!(body["trust"]["subject"], subject);

    // Control: a client-credentials token has no trust.
    let (status, body) = whoami(f.claims()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.unwrap().get("trust").is_none());

    // A trust id other than the token's own, or of the wrong type, or on a personal
    // token or a long-lived JWT: not a token the server issued.
    let mut cases = Vec::new();
    for bad in [
        serde_json::json!(uuid::Uuid::new_v4().to_string()),
        serde_json::json!("trust"),
        serde_json::json!(1),
        Value::Null,
    ] {
        let mut claims = trusted.clone();
        claims["trust_id"] = bad;
        cases.push(claims);
    }
    let mut personal = trusted.clone();
    personal["tkt"] = "user".into();
    personal["uid"] = "u_42".into();
    cases.push(personal);
    let mut long_lived = trusted.clone();
    long_lived["knd"] = "jwt".into();
    cases.push(long_lived);
    for claims in cases {
        let (status, _) = whoami(claims.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{claims}");
    }
}

#[tokio::test]
async fn a_handler_behind_no_layer_cannot_extract_a_principal() {
    let f = Fixture::start().await;
    let token = format!("Bearer {}", f.token(&f.ed));
    let response = call(&app(&f), "/unprotected", &[&token]).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn a_stale_deny_list_fails_closed_with_503() {
    let deny = DenyList::new(Revocation::Stale);
    let f = Fixture::with(|o| o.revocation = deny.clone()).await;
    let token = format!("Bearer {}", f.token(&f.ed));
    let response = call(&app(&f), "/reports", &[&token]).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
}
