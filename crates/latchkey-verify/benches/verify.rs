//! Verification cost: a fresh token (full validation and signature check) per
//! algorithm, and a token already in the verified-token cache.
//!
//! The verifier uses pinned keys, so nothing touches the network, and each call is
//! polled directly: neither path ever waits, so what is measured is the verifier alone.

// Benchmark setup fails loudly, like a test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use criterion::{Criterion, criterion_group, criterion_main};
use latchkey_core::jwt::b64url_encode;
use latchkey_verify::{Verifier, VerifierOptions};
use serde_json::{Value, json};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "http://127.0.0.1:7700";

/// Runs a future that never waits to completion without a runtime.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Signs a message with a key of the benchmark.
type Signer = Box<dyn Fn(&[u8]) -> Vec<u8>>;

struct Key {
    kid: &'static str,
    alg: &'static str,
    jwk: Value,
    sign: Signer,
}

fn keys() -> Vec<Key> {
    let ed = Ed25519KeyPair::generate().unwrap();
    let es = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let rs = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let point = es.public_key().as_ref().to_vec();
    let rs_public = rs.public_key();
    vec![
        Key {
            kid: "ed",
            alg: "EdDSA",
            jwk: json!({"kid":"ed","kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig",
                        "x": b64url_encode(ed.public_key().as_ref())}),
            sign: Box::new(move |m| ed.sign(m).as_ref().to_vec()),
        },
        Key {
            kid: "es",
            alg: "ES256",
            jwk: json!({"kid":"es","kty":"EC","crv":"P-256","alg":"ES256","use":"sig",
                        "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..])}),
            sign: Box::new(move |m| es.sign(&SystemRandom::new(), m).unwrap().as_ref().to_vec()),
        },
        Key {
            kid: "rs",
            alg: "RS256",
            jwk: json!({"kid":"rs","kty":"RSA","alg":"RS256","use":"sig",
                        "n": b64url_encode(rs_public.modulus().big_endian_without_leading_zero()),
                        "e": b64url_encode(rs_public.exponent().big_endian_without_leading_zero())}),
            sign: Box::new(move |m| {
                let mut signature = vec![0; rs.public_modulus_len()];
                rs.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), m, &mut signature)
                    .unwrap();
                signature
            }),
        },
    ]
}

/// A token shaped like the server's: the same header and claims, a 900 s lifetime.
fn token(key: &Key) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": key.alg, "typ": "at+jwt", "kid": key.kid});
    let claims = json!({
        "iss": ISSUER, "sub": "0b9f6c1e-3c1a-4f7e-9b51-8a2f7d0e4c11", "aud": ISSUER,
        "exp": now + 900, "iat": now, "nbf": now, "jti": "5f1c2b7e-8d1a-4c3e-9f0b-2a6d4e8c1b37",
        "client_id": "0b9f6c1e-3c1a-4f7e-9b51-8a2f7d0e4c11", "scope": "reports:read reports:write",
        "tid": "acme", "tkt": "tenant",
    });
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let signature = (key.sign)(input.as_bytes());
    format!("{input}.{}", b64url_encode(&signature))
}

fn verify(c: &mut Criterion) {
    let keys = keys();
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string();
    let uncached = VerifierOptions {
        verified_cache_bytes: 0,
        ..VerifierOptions::default()
    };
    let fresh = Verifier::from_jwks(ISSUER, jwks.as_bytes(), uncached).unwrap();
    let cached = Verifier::from_jwks(ISSUER, jwks.as_bytes(), VerifierOptions::default()).unwrap();

    for key in &keys {
        let token = token(key);
        run(fresh.verify(&token)).unwrap();
        c.bench_function(&format!("verify fresh {}", key.alg), |b| {
            b.iter(|| run(fresh.verify(black_box(&token))).unwrap())
        });
    }
    let token = token(&keys[0]);
    run(cached.verify(&token)).unwrap();
    c.bench_function("verify cached EdDSA", |b| {
        b.iter(|| run(cached.verify(black_box(&token))).unwrap())
    });
}

/// The signature check alone, with the key parsed once: the floor under "verify fresh
/// EdDSA" on this machine, measured in the same run.
fn signature_alone(c: &mut Criterion) {
    use aws_lc_rs::signature::{ED25519, ParsedPublicKey};
    let pair = Ed25519KeyPair::generate().unwrap();
    let message = vec![7u8; 400];
    let signature = pair.sign(&message).as_ref().to_vec();
    let key = ParsedPublicKey::new(&ED25519, pair.public_key().as_ref()).unwrap();
    c.bench_function("aws-lc-rs Ed25519 verify alone", |b| {
        b.iter(|| key.verify_sig(&message, &signature).is_ok())
    });
}

criterion_group!(benches, verify, signature_alone);
criterion_main!(benches);
