//! Discovery and the key cache: what makes the verifier fetch the JWKS, and what never
//! does.

use crate::support::{Fixture, Issuer, TestKey, header, manual_clock, sign};
use latchkey_verify::{DiscoveryError, InvalidReason, Verifier, VerifierOptions, VerifyError};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

async fn flood_of_random_kids(f: &Fixture, count: usize) {
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let verifier = f.verifier.clone();
        let key = f.ed.renamed(&uuid::Uuid::new_v4().to_string());
        let token = f.token(&key);
        tasks.spawn(async move { verifier.verify(&token).await.err() });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(
            result.unwrap(),
            Some(VerifyError::InvalidToken(InvalidReason::UnknownKey))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_causes_at_most_one_jwks_fetch_per_interval() {
    let f = Fixture::start().await;
    assert_eq!(f.issuer.jwks_fetches(), 1, "discovery fetches once");

    flood_of_random_kids(&f, 300).await;
    assert_eq!(
        f.issuer.jwks_fetches(),
        1,
        "within the interval of discovery: no refetch"
    );

    f.clock.advance(Duration::from_secs(31));
    flood_of_random_kids(&f, 300).await;
    assert_eq!(
        f.issuer.jwks_fetches(),
        2,
        "one refetch, shared by the whole flood"
    );

    flood_of_random_kids(&f, 300).await;
    assert_eq!(f.issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn jku_and_x5u_headers_never_cause_an_outbound_request() {
    let f = Fixture::start().await;
    f.clock.advance(Duration::from_secs(3600));
    let before = f.issuer.total_hits();
    let attacker = TestKey::ed25519("attacker-kid");
    for name in ["jku", "x5u"] {
        for url in [
            format!("{}/attacker/jwks.json", f.issuer.url),
            format!("{}/.well-known/jwks.json", f.issuer.url),
        ] {
            let mut h = header(&attacker);
            h[name] = json!(url);
            let token = sign(&attacker, &h, &f.claims());
            let err = f.verifier.verify(&token).await.unwrap_err();
            assert!(matches!(
                err,
                VerifyError::InvalidToken(InvalidReason::ForbiddenHeader(_))
            ));
        }
    }
    assert_eq!(
        f.issuer.total_hits(),
        before,
        "not even the real JWKS was refetched"
    );
}

#[tokio::test]
async fn an_oversized_kid_never_causes_a_fetch() {
    let f = Fixture::with(|o| o.max_token_bytes = 64 * 1024).await;
    f.clock.advance(Duration::from_secs(3600));
    let token = f.token(&f.ed.renamed(&"k".repeat(10_000)));
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::UnknownKey)
    );
    assert_eq!(f.issuer.jwks_fetches(), 1);
}

#[tokio::test]
async fn a_key_published_after_discovery_is_found_by_one_refetch() {
    let f = Fixture::start().await;
    let next = TestKey::ed25519("ed-2");
    f.issuer.publish(&[&f.ed, &next]);
    f.clock.advance(Duration::from_secs(31));
    assert!(f.verifier.verify(&f.token(&next)).await.is_ok());
    assert!(f.verifier.verify(&f.token(&next)).await.is_ok());
    assert_eq!(f.issuer.jwks_fetches(), 2);
}

#[tokio::test]
async fn a_token_signed_by_a_rotated_out_key_is_rejected_even_when_cached() {
    let f = Fixture::start().await;
    let next = TestKey::ed25519("ed-2");
    let old_token = f.token(&f.ed);
    assert!(f.verifier.verify(&old_token).await.is_ok(), "cached now");

    f.issuer.publish(&[&next, &f.es, &f.rs]);
    f.verifier.refresh_keys().await.unwrap();
    assert_eq!(
        f.verifier.verify(&old_token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::UnknownKey)
    );
    assert_eq!(
        f.verifier.verify(&f.token(&f.ed)).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::UnknownKey)
    );
    assert!(f.verifier.verify(&f.token(&next)).await.is_ok());
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_invalidates_what_it_verified() {
    let f = Fixture::start().await;
    let token = f.token(&f.ed);
    assert!(f.verifier.verify(&token).await.is_ok());
    let impostor = TestKey::ed25519(&f.ed.kid);
    f.issuer.publish(&[&impostor]);
    f.verifier.refresh_keys().await.unwrap();
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::BadSignature)
    );
}

#[tokio::test]
async fn keys_are_refreshed_periodically() {
    let f = Fixture::with(|o| o.jwks_refresh_interval = Duration::from_millis(20)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.issuer.jwks_fetches() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no periodic refresh happened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dropping_the_verifier_stops_its_refresh_task() {
    let f = Fixture::with(|o| o.jwks_refresh_interval = Duration::from_millis(10)).await;
    drop(f.verifier);
    // The task holds the verifier only while refreshing, so after at most one more
    // fetch it stops: some 100 ms window (ten intervals) must then see no fetch at all.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fetches = f.issuer.jwks_fetches();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if f.issuer.jwks_fetches() == fetches {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "refreshes go on");
    }
}

#[tokio::test]
async fn discovery_insists_on_the_exact_issuer() {
    let key = TestKey::ed25519("k");
    let issuer = Issuer::start(&[&key]).await;
    let err = Verifier::discover(&format!("{}/", issuer.url), VerifierOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, DiscoveryError::IssuerMismatch { .. }),
        "{err:?}"
    );
    let err = Verifier::discover("ftp://127.0.0.1:1", VerifierOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, DiscoveryError::BadIssuer(_)), "{err:?}");
}

#[tokio::test]
async fn discovery_refuses_a_key_set_with_no_usable_key() {
    let key = TestKey::ed25519("k");
    let issuer = Issuer::start(&[&key]).await;
    let clock = manual_clock();
    let only_rsa = VerifierOptions {
        algorithms: vec![latchkey_core::jwt::Algorithm::RS256],
        clock: Arc::clone(&clock) as _,
        ..VerifierOptions::default()
    };
    let err = Verifier::discover(&issuer.url, only_rsa).await.unwrap_err();
    assert_eq!(err, DiscoveryError::NoUsableKeys);
}

#[tokio::test]
async fn a_verifier_with_pinned_keys_never_fetches() {
    let f = Fixture::start().await;
    let jwks = crate::support::jwks(&[&f.ed]).to_string();
    let options = VerifierOptions {
        clock: f.clock.clone(),
        ..VerifierOptions::default()
    };
    let pinned = Verifier::from_jwks(&f.issuer.url, jwks.as_bytes(), options).unwrap();
    assert!(pinned.verify(&f.token(&f.ed)).await.is_ok());
    f.clock.advance(Duration::from_secs(3600));
    assert_eq!(
        pinned.verify(&f.token(&f.es)).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::UnknownKey)
    );
    assert_eq!(
        f.issuer.jwks_fetches(),
        1,
        "only the fixture's own discovery"
    );
}
