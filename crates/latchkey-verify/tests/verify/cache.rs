//! The verified-token cache: hits for byte-identical tokens only, never past `exp`,
//! never past a revocation. A hit hands back the very `Arc` the miss created, which is
//! how these tests tell a hit from a fresh verification.

use crate::support::{DenyList, Fixture, header, sign};
use latchkey_verify::{Clock, InvalidReason, Revocation, VerifyError};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn a_repeated_token_is_served_from_the_cache() {
    let f = Fixture::start().await;
    let token = f.token(&f.ed);
    let first = f.verifier.verify(&token).await.unwrap();
    let second = f.verifier.verify(&token).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
}

#[tokio::test]
async fn a_zero_budget_turns_the_cache_off() {
    let f = Fixture::with(|o| o.verified_cache_bytes = 0).await;
    let token = f.token(&f.ed);
    let first = f.verifier.verify(&token).await.unwrap();
    let second = f.verifier.verify(&token).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_cached_token_is_never_accepted_past_its_exp() {
    let f = Fixture::with(|o| o.leeway = Duration::ZERO).await;
    let mut claims = f.claims();
    claims["exp"] = (f.clock.now().unix_seconds() + 10).into();
    let token = sign(&f.ed, &header(&f.ed), &claims);
    assert!(f.verifier.verify(&token).await.is_ok());
    f.clock.advance(Duration::from_secs(9));
    assert!(f.verifier.verify(&token).await.is_ok());
    f.clock.advance(Duration::from_secs(1));
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Expired)
    );
}

#[tokio::test]
async fn past_exp_the_full_check_applies_the_leeway_and_then_refuses() {
    let f = Fixture::start().await;
    let mut claims = f.claims();
    claims["exp"] = (f.clock.now().unix_seconds() + 10).into();
    let token = sign(&f.ed, &header(&f.ed), &claims);
    let cached = f.verifier.verify(&token).await.unwrap();
    f.clock.advance(Duration::from_secs(30));
    let fresh = f.verifier.verify(&token).await.unwrap();
    assert!(
        !Arc::ptr_eq(&cached, &fresh),
        "not served from the cache past exp"
    );
    f.clock.advance(Duration::from_secs(40));
    assert_eq!(
        f.verifier.verify(&token).await.unwrap_err(),
        VerifyError::InvalidToken(InvalidReason::Expired)
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_even_when_cached() {
    let deny = DenyList::new(Revocation::NotRevoked);
    let f = Fixture::with(|o| o.revocation = deny.clone()).await;
    let by_jti = f.claims();
    let by_id = f.claims();
    let jti_token = sign(&f.ed, &header(&f.ed), &by_jti);
    let id_token = sign(&f.ed, &header(&f.ed), &by_id);
    for token in [&jti_token, &id_token] {
        f.verifier.verify(token).await.unwrap();
        f.verifier.verify(token).await.unwrap();
    }
    deny.revoke(by_jti["jti"].as_str().unwrap());
    deny.revoke(by_id["client_id"].as_str().unwrap());
    for token in [&jti_token, &id_token] {
        assert_eq!(
            f.verifier.verify(token).await.unwrap_err(),
            VerifyError::InvalidToken(InvalidReason::Revoked)
        );
    }
}

#[tokio::test]
async fn the_evictor_drops_cached_entries_of_a_revoked_token() {
    let f = Fixture::start().await;
    let claims = f.claims();
    let token = sign(&f.ed, &header(&f.ed), &claims);
    let other = f.token(&f.ed);
    let first = f.verifier.verify(&token).await.unwrap();
    let untouched = f.verifier.verify(&other).await.unwrap();
    let evictor = f.verifier.evictor();
    evictor.token_revoked(&first.token_id);
    assert!(!Arc::ptr_eq(
        &first,
        &f.verifier.verify(&token).await.unwrap()
    ));
    assert!(Arc::ptr_eq(
        &untouched,
        &f.verifier.verify(&other).await.unwrap()
    ));
    let again = f.verifier.verify(&token).await.unwrap();
    evictor.jti_revoked(claims["jti"].as_str().unwrap());
    assert!(!Arc::ptr_eq(
        &again,
        &f.verifier.verify(&token).await.unwrap()
    ));
}

#[tokio::test]
async fn a_token_differing_by_one_byte_never_hits_the_cache() {
    let f = Fixture::start().await;
    let token = f.token(&f.ed);
    f.verifier.verify(&token).await.unwrap();
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'Q' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(f.verifier.verify(&tampered).await.is_err());
}
