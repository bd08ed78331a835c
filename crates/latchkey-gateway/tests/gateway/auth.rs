//! Authentication and authorization at the gateway: RFC 6750 answers, per-method
//! scopes, api keys, and the deny list.

use crate::support::TestGateway;
use hyper::{Method, StatusCode};
use latchkey_verify::Revocation;

#[tokio::test]
async fn a_public_route_forwards_without_a_token() {
    let gw = TestGateway::start().await;
    let answer = gw.get("/public/hello?x=1", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let echoed = answer.json();
    assert_eq!(echoed["path"], "/public/hello?x=1");
    assert_eq!(echoed["upstream"], "one");
    assert_eq!(gw.gateway.stats().forwarded, 1);
}

#[tokio::test]
async fn a_missing_token_is_a_401_with_a_bare_bearer_challenge() {
    let gw = TestGateway::start().await;
    let answer = gw.get("/reports", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.json()["error"], "missing_token");
    // Another scheme is no bearer token either.
    let basic = gw.get("/reports", Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(basic.header("www-authenticate"), Some("Bearer"));
    assert_eq!(gw.gateway.stats().unauthorized, 2);
}

#[tokio::test]
async fn a_bad_token_is_a_401_invalid_token_without_the_reason() {
    let gw = TestGateway::start().await;
    let mut forged = gw.token("reports:read").jwt;
    // The last character of an Ed25519 signature is one of A, Q, g, w (two bits); swap
    // it for another of those, so the signature changes but stays canonical base64url.
    let last = forged.pop();
    forged.push(if last == Some('A') { 'Q' } else { 'A' });
    for token in [forged.as_str(), "not-a-token", "a.b.c"] {
        let answer = gw.get("/reports", Some(&format!("Bearer {token}"))).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer error=\"invalid_token\"")
        );
        let body = answer.json();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], "the bearer token is not valid");
    }
}

#[tokio::test]
async fn a_malformed_authorization_header_is_a_400_invalid_request() {
    let gw = TestGateway::start().await;
    let answer = gw.get("/reports", Some("Bearer two words")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer error=\"invalid_request\"")
    );
}

#[tokio::test]
async fn a_token_without_the_scope_is_a_403_naming_the_scope() {
    let gw = TestGateway::start().await;
    let token = gw.token("reports:read");
    let answer = gw
        .call(Method::POST, "/reports", Some(&token.bearer()))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\", scope=\"reports:write\"")
    );
    assert_eq!(answer.json()["error"], "insufficient_scope");
    assert_eq!(gw.gateway.stats().forbidden, 1);
}

#[tokio::test]
async fn scopes_are_chosen_by_method_with_star_for_the_rest() {
    let gw = TestGateway::start().await;
    let reader = gw.token("reports:read").bearer();
    let writer = gw.token("reports:write").bearer();
    let admin = gw.token("reports:admin").bearer();
    let cases = [
        (Method::GET, &reader, StatusCode::OK),
        (Method::HEAD, &reader, StatusCode::OK),
        (Method::GET, &writer, StatusCode::FORBIDDEN),
        (Method::POST, &writer, StatusCode::OK),
        (Method::POST, &reader, StatusCode::FORBIDDEN),
        (Method::DELETE, &reader, StatusCode::FORBIDDEN),
        (Method::DELETE, &admin, StatusCode::OK),
        (Method::PUT, &admin, StatusCode::OK),
        (Method::GET, &admin, StatusCode::FORBIDDEN),
    ];
    for (method, token, expected) in cases {
        let answer = gw.call(method.clone(), "/reports/7", Some(token)).await;
        assert_eq!(answer.status, expected, "{method}");
    }
    // The longer prefix has its own table: GET needs admin, and nothing else is listed.
    let nested = gw
        .call(Method::GET, "/reports/admin/x", Some(&reader))
        .await;
    assert_eq!(nested.status, StatusCode::FORBIDDEN);
    let nested = gw.call(Method::GET, "/reports/admin/x", Some(&admin)).await;
    assert_eq!(nested.status, StatusCode::OK);
    let unlisted = gw
        .call(Method::DELETE, "/reports/admin/x", Some(&admin))
        .await;
    assert_eq!(unlisted.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(unlisted.header("allow"), Some("GET, HEAD"));
    assert_eq!(unlisted.json()["error"], "method_not_allowed");
}

#[tokio::test]
async fn a_route_without_scopes_takes_any_valid_token() {
    let gw = TestGateway::start().await;
    let answer = gw.get("/any/x", Some(&gw.token("").bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        gw.get("/any/x", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_api_key_is_checked_through_introspection() {
    let gw = TestGateway::start().await;
    let (key, id) = gw.server.api_key("reports:read");
    let answer = gw.get("/reports", Some(&format!("Bearer {key}"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.upstream_saw("x-latchkey-token-id"),
        Some(vec![id.to_string()])
    );
    let (unknown, _) = crate::support::new_api_key();
    let refused = gw.get("/reports", Some(&format!("Bearer {unknown}"))).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_the_deny_list_revokes_is_a_401() {
    let gw = TestGateway::start().await;
    let token = gw.token("reports:read");
    assert_eq!(
        gw.get("/reports", Some(&token.bearer())).await.status,
        StatusCode::OK
    );
    gw.deny.revoke(&token.id);
    // The verified-token cache holds it now; the deny list still decides.
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

#[tokio::test]
async fn a_stale_deny_list_is_a_503_and_public_routes_still_work() {
    let gw = TestGateway::start().await;
    gw.deny.set_otherwise(Revocation::Stale);
    let answer = gw
        .get("/reports", Some(&gw.token("reports:read").bearer()))
        .await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.header("www-authenticate"), None);
    assert_eq!(answer.json()["error"], "temporarily_unavailable");
    assert_eq!(gw.get("/public", None).await.status, StatusCode::OK);
    assert_eq!(gw.gateway.stats().unavailable, 1);
}
