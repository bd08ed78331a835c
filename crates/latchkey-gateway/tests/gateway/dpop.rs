//! DPoP-bound tokens at the gateway (docs/MACHINES.md, "Binding tokens with DPoP"): the same
//! checks as latchkey-verify's, with `htu` formed from the gateway's own address or
//! its `public_origin`. Each attack beside its control.

use crate::support::TestGateway;
use hyper::{Method, StatusCode};
use latchkey_verify::dpop::testing::ProofKey;
use serde_json::json;

const CHALLENGE_PROOF: &str = "DPoP error=\"invalid_dpop_proof\", algs=\"ES256 EdDSA RS256\"";
const CHALLENGE_TOKEN: &str = "DPoP error=\"invalid_token\", algs=\"ES256 EdDSA RS256\"";

fn now() -> i64 {
    crate::support::unix_now()
}

async fn call(
    gw: &TestGateway,
    path: &str,
    authorization: &str,
    proofs: &[&str],
) -> crate::support::Answer {
    let mut headers = vec![("authorization", authorization)];
    for proof in proofs {
        headers.push(("dpop", *proof));
    }
    gw.client
        .call(Method::GET, &gw.at(path), &headers, "")
        .await
}

#[tokio::test]
async fn a_bound_token_passes_the_gateway_only_with_a_proof_for_this_request() {
    let gw = TestGateway::start().await;
    let key = ProofKey::es256();
    let token = gw
        .token_with("reports:read", |claims| {
            claims["cnf"] = json!({ "jkt": key.jkt() });
        })
        .jwt;
    let auth = format!("DPoP {token}");
    let url = gw.at("/reports");
    // Control: a good proof is let through, and the next request needs a new one.
    let proof = key.proof("GET", &url, now(), Some(&token));
    let answer = call(&gw, "/reports", &auth, &[&proof]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let replay = call(&gw, "/reports", &auth, &[&proof]).await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replay.header("www-authenticate"), Some(CHALLENGE_PROOF));
    assert_eq!(replay.json()["error"], "invalid_dpop_proof");

    let other = ProofKey::es256();
    let attacks = [
        (
            "another method",
            key.proof("POST", &url, now(), Some(&token)),
        ),
        (
            "another URL",
            key.proof("GET", &gw.at("/billing"), now(), Some(&token)),
        ),
        ("stale", key.proof("GET", &url, now() - 300, Some(&token))),
        ("wrong ath", key.proof("GET", &url, now(), Some("x.y.z"))),
        ("another key", other.proof("GET", &url, now(), Some(&token))),
    ];
    for (why, proof) in &attacks {
        let answer = call(&gw, "/reports", &auth, &[proof]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{why}");
        assert_eq!(
            answer.header("www-authenticate"),
            Some(CHALLENGE_PROOF),
            "{why}"
        );
    }
    let bare = call(&gw, "/reports", &auth, &[]).await;
    assert_eq!(bare.header("www-authenticate"), Some(CHALLENGE_PROOF));
    // The stolen token alone, as a bearer token: refused.
    let proof = key.proof("GET", &url, now(), Some(&token));
    let bearer = call(&gw, "/reports", &format!("Bearer {token}"), &[&proof]).await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bearer.header("www-authenticate"), Some(CHALLENGE_TOKEN));
    // Control: an unbound token is still a plain bearer token.
    let plain = gw.token("reports:read");
    let answer = call(&gw, "/reports", &plain.bearer(), &[]).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn behind_a_load_balancer_proofs_name_the_public_origin() {
    let gw = TestGateway::start_with_settings("public_origin = \"https://api.example.com\"").await;
    let key = ProofKey::ed25519();
    let token = gw
        .token_with("reports:read", |claims| {
            claims["cnf"] = json!({ "jkt": key.jkt() });
        })
        .jwt;
    let auth = format!("DPoP {token}");
    let public = key.proof(
        "GET",
        "https://api.example.com/reports",
        now(),
        Some(&token),
    );
    assert_eq!(
        call(&gw, "/reports", &auth, &[&public]).await.status,
        StatusCode::OK
    );
    // What the gateway itself was reached at is not what the client addressed.
    let internal = key.proof("GET", &gw.at("/reports"), now(), Some(&token));
    assert_eq!(
        call(&gw, "/reports", &auth, &[&internal]).await.status,
        StatusCode::UNAUTHORIZED
    );
}
