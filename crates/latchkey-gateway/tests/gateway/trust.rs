//! Access tokens issued through a trust (the JWT-bearer grant): the outside caller's
//! subject and the trust reach the upstream as `X-Latchkey-Subject` and
//! `X-Latchkey-Trust`, set by the gateway alone, percent-encoded when the subject holds
//! what no header may carry; a client can never supply them.

use crate::support::{TestGateway, Token};
use hyper::{Method, StatusCode};
use serde_json::json;

const SUBJECT: &str = "repo:acme/app:ref:refs/heads/main";

/// Every spelling an upstream could fold into `X-Latchkey-Subject` or
/// `X-Latchkey-Trust`.
const SPOOFED: [&str; 8] = [
    "x-latchkey-subject",
    "X-Latchkey-Subject",
    "X_Latchkey_Subject",
    "x_latchkey-subject",
    "X.Latchkey.Subject",
    "x~latchkey~subject",
    "X-LATCHKEY-TRUST",
    "x_latchkey_trust",
];

fn trust_token(gw: &TestGateway, subject: &str) -> Token {
    gw.token_with("reports:read", |claims| {
        claims["sub"] = json!(subject);
        claims["trust_id"] = claims["client_id"].clone();
    })
}

/// Calls `path` with `authorization` (if any) and every spoofed header set to `evil`.
async fn spoofing(
    gw: &TestGateway,
    path: &str,
    authorization: Option<&str>,
) -> crate::support::Answer {
    let mut headers: Vec<(&str, &str)> = SPOOFED.iter().map(|name| (*name, "evil")).collect();
    if let Some(authorization) = authorization {
        headers.push(("authorization", authorization));
    }
    gw.client
        .call(Method::GET, &gw.at(path), &headers, "")
        .await
}

/// No header the upstream saw carries the spoofed value.
#[track_caller]
fn no_spoofed_value(answer: &crate::support::Answer) {
    let headers = answer.json()["headers"].clone();
    for (name, values) in headers.as_object().unwrap() {
        assert!(
            values.as_array().unwrap().iter().all(|v| v != "evil"),
            "{name} reached the upstream: {headers}"
        );
    }
}

#[tokio::test]
async fn a_trust_tokens_subject_and_trust_reach_the_upstream() {
    let gw = TestGateway::start().await;
    let token = trust_token(&gw, SUBJECT);
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.upstream_saw("x-latchkey-subject"),
        Some(vec![SUBJECT.to_owned()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-trust"),
        Some(vec![token.id.clone()])
    );
    // The trust's id is the token id of its access tokens.
    assert_eq!(
        answer.upstream_saw("x-latchkey-token-id"),
        Some(vec![token.id.clone()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-tenant"),
        Some(vec!["acme".to_owned()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-scopes"),
        Some(vec!["reports:read".to_owned()])
    );
}

#[tokio::test]
async fn a_client_credentials_token_sets_no_subject_or_trust() {
    let gw = TestGateway::start().await;
    let token = gw.token("reports:read");
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.upstream_saw("x-latchkey-subject"), None);
    assert_eq!(answer.upstream_saw("x-latchkey-trust"), None);
    assert_eq!(
        answer.upstream_saw("x-latchkey-token-id"),
        Some(vec![token.id.clone()])
    );
}

#[tokio::test]
async fn a_spoofed_subject_is_removed_under_every_spelling_with_and_without_a_token() {
    let gw = TestGateway::start().await;
    // A client-credentials token: no subject at all reaches the upstream.
    let plain = gw.token("reports:read");
    let answer = spoofing(&gw, "/reports", Some(&plain.bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    no_spoofed_value(&answer);
    assert_eq!(answer.upstream_saw("x-latchkey-subject"), None);
    assert_eq!(answer.upstream_saw("x-latchkey-trust"), None);

    // A trust token: only the gateway's value, once.
    let trusted = trust_token(&gw, SUBJECT);
    let answer = spoofing(&gw, "/reports", Some(&trusted.bearer())).await;
    assert_eq!(answer.status, StatusCode::OK);
    no_spoofed_value(&answer);
    assert_eq!(
        answer.upstream_saw("x-latchkey-subject"),
        Some(vec![SUBJECT.to_owned()])
    );
    assert_eq!(
        answer.upstream_saw("x-latchkey-trust"),
        Some(vec![trusted.id.clone()])
    );

    // No token, on a public route: nothing.
    let answer = spoofing(&gw, "/public", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    no_spoofed_value(&answer);
    let headers = answer.json()["headers"].clone();
    assert!(
        headers.as_object().unwrap().keys().all(|name| !name
            .replace(['_', '.', '~'], "-")
            .starts_with("x-latchkey-")),
        "{headers}"
    );

    // No token, on a protected route: refused, and the upstream sees nothing.
    let before = gw.upstream.echoed();
    let answer = spoofing(&gw, "/reports", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.upstream.echoed(), before);
}

#[tokio::test]
async fn a_subject_no_header_may_carry_is_percent_encoded_not_injected() {
    let gw = TestGateway::start().await;
    for (subject, sent) in [
        (
            "repo:x\r\nX-Latchkey-Tenant: victim",
            "repo:x%0D%0AX-Latchkey-Tenant:%20victim",
        ),
        (
            "repo:acme/app:ref:refs/heads/réf",
            "repo:acme/app:ref:refs/heads/r%C3%A9f",
        ),
        ("a b\u{0}%", "a%20b%00%25"),
    ] {
        let token = trust_token(&gw, subject);
        let answer = gw.get("/reports", Some(&token.bearer())).await;
        assert_eq!(answer.status, StatusCode::OK, "{subject:?}");
        assert_eq!(
            answer.upstream_saw("x-latchkey-subject"),
            Some(vec![sent.to_owned()]),
            "{subject:?}"
        );
        assert_eq!(
            answer.upstream_saw("x-latchkey-tenant"),
            Some(vec!["acme".to_owned()])
        );
        assert_eq!(
            crate::support::percent_decode(sent),
            subject.as_bytes(),
            "{subject:?}"
        );
    }
}

#[tokio::test]
async fn a_token_whose_trust_id_is_not_its_client_id_is_refused() {
    let gw = TestGateway::start().await;
    let before = gw.upstream.echoed();
    let other = uuid::Uuid::new_v4().to_string();
    for edit in [json!(other), json!("not-a-uuid"), json!(7)] {
        let token = gw.token_with("reports:read", |claims| {
            claims["sub"] = json!(SUBJECT);
            claims["trust_id"] = edit.clone();
        });
        let answer = gw.get("/reports", Some(&token.bearer())).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{edit}");
        assert!(
            answer
                .header("www-authenticate")
                .unwrap()
                .contains("invalid_token"),
            "{edit}"
        );
    }
    // A personal token cannot claim a trust either.
    let token = gw.token_with("reports:read", |claims| {
        claims["tkt"] = json!("user");
        claims["uid"] = json!("u_42");
        claims["trust_id"] = claims["client_id"].clone();
    });
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(gw.upstream.echoed(), before);
}

#[tokio::test]
async fn revoking_the_trust_refuses_its_tokens_at_the_gateway() {
    let gw = TestGateway::start().await;
    let token = trust_token(&gw, SUBJECT);
    assert_eq!(
        gw.get("/reports", Some(&token.bearer())).await.status,
        StatusCode::OK
    );
    // A trust's revocation is a `token` entry with its id (docs/API.md, "Trusts").
    gw.deny.revoke(&token.id);
    let answer = gw.get("/reports", Some(&token.bearer())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}
