//! Property tests through a verifier with pinned keys (`Verifier::from_jwks`): any JWK
//! Set document builds a verifier or is refused, never a panic; arbitrary bytes and
//! arbitrary three-segment strings (real headers and claims with forged signatures,
//! real signatures over other segments, garbage in every segment) never verify; and a
//! genuinely signed token whose claims are arbitrary JSON verifies only when those
//! claims name this issuer and audience and are current.
//!
//! Budgets are fixed (see docs/BENCHMARKS.md, "Property-test budgets");
//! `PROPTEST_CASES` raises them for a deeper run.

use crate::support::{TestKey, claims, header, jwks, sign, sign_raw, unix_now};
use latchkey_core::jwt::b64url_encode;
use latchkey_verify::{Verifier, VerifierOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.example";

fn budget(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Pinned {
    verifier: Verifier,
    keys: Vec<TestKey>,
}

/// A verifier pinned to one key of each algorithm, with no introspection credential:
/// nothing here may reach the network.
fn pinned() -> Pinned {
    let keys = vec![
        TestKey::ed25519("ed-1"),
        TestKey::es256("es-1"),
        TestKey::rs256("rs-1"),
    ];
    let set = jwks(&keys.iter().collect::<Vec<_>>()).to_string();
    let verifier = Verifier::from_jwks(ISSUER, set.as_bytes(), VerifierOptions::default()).unwrap();
    Pinned { verifier, keys }
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,12}".prop_map(Value::from),
        prop::sample::select(vec![
            ISSUER, "EdDSA", "ES256", "RS256", "none", "HS256", "at+jwt", "JWT", "ed-1", "es-1",
            "rs-1", "OKP", "EC", "RSA", "Ed25519", "P-256", "sig", "AQAB",
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JOSE header: mostly the members a verifier reads, with values right or wrong.
fn jose_header() -> impl Strategy<Value = Value> {
    let alg = prop::sample::select(vec![
        "EdDSA", "ES256", "RS256", "none", "HS256", "PS256", "",
    ]);
    let kid = prop::sample::select(vec!["ed-1", "es-1", "rs-1", "", "../../etc/passwd"]);
    let typ = prop::sample::select(vec!["at+jwt", "JWT", "application/at+jwt", ""]);
    (
        alg,
        kid,
        typ,
        prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..2),
    )
        .prop_map(|(alg, kid, typ, extra)| {
            let mut header = json!({ "alg": alg, "kid": kid, "typ": typ });
            header.as_object_mut().unwrap().extend(extra);
            header
        })
}

/// Valid claims for `ISSUER` now, with some members replaced or removed.
fn claims_like() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "client_id",
        "scope",
        "tid",
        "tkt",
    ]);
    prop::collection::vec((names, prop::option::of(json_value())), 0..4).prop_map(|edits| {
        let mut claims = claims(ISSUER, unix_now());
        for (name, value) in edits {
            match value {
                Some(value) => claims[name] = value,
                None => {
                    claims.as_object_mut().unwrap().remove(name);
                }
            }
        }
        claims
    })
}

/// One segment of a compact JWS: structured JSON, arbitrary bytes, or characters that
/// are not base64url at all.
fn segment(json: BoxedStrategy<Value>) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => json.prop_map(|v| b64url_encode(v.to_string().as_bytes())),
        2 => prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| b64url_encode(&b)),
        1 => "[A-Za-z0-9_=+/.-]{0,40}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(budget(64))]

    #[test]
    fn any_jwk_set_document_builds_a_verifier_or_is_refused_without_panicking(
        document in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..128),
            json_value().prop_map(|v| json!({ "keys": [v] }).to_string().into_bytes()),
            prop::collection::vec(
                prop::collection::btree_map(
                    prop::sample::select(vec!["kty", "crv", "x", "y", "n", "e", "alg", "use", "kid", "d"]),
                    json_value(),
                    0..7,
                ),
                0..3,
            )
            .prop_map(|keys| json!({ "keys": keys }).to_string().into_bytes()),
        ],
    ) {
        let _ = Verifier::from_jwks(ISSUER, &document, VerifierOptions::default());
    }
}

#[test]
fn arbitrary_bytes_and_three_segment_strings_never_verify_through_pinned_keys() {
    let runtime = runtime();
    let Pinned { verifier, keys } = pinned();
    let genuine = sign(&keys[0], &header(&keys[0]), &claims(ISSUER, unix_now()));
    assert!(
        runtime.block_on(verifier.verify(&genuine)).is_ok(),
        "control: a genuine token verifies"
    );
    let never = |token: String| {
        let verdict = runtime.block_on(verifier.verify(&token));
        prop_assert!(verdict.is_err(), "accepted {token:?}");
        Ok(())
    };
    let mut runner = TestRunner::new(budget(256));
    let bytes = prop::collection::vec(any::<u8>(), 0..600);
    runner
        .run(&bytes, |b| never(String::from_utf8_lossy(&b).into_owned()))
        .unwrap();

    let three = (
        segment(jose_header().boxed()),
        segment(claims_like().boxed()),
        prop_oneof![
            // Signatures of the right length for each algorithm, forged.
            prop::sample::select(vec![64usize, 256])
                .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
                .prop_map(|b| b64url_encode(&b)),
            // A real signature, of other segments.
            Just(genuine.rsplit('.').next().unwrap().to_owned()),
            segment(json_value().boxed()),
        ],
    );
    runner
        .run(&three, |(h, c, s)| never(format!("{h}.{c}.{s}")))
        .unwrap();
}

#[test]
fn a_signed_token_with_arbitrary_claims_verifies_only_when_they_are_valid() {
    let runtime = runtime();
    let Pinned { verifier, keys } = pinned();
    for key in &keys {
        let genuine = sign(key, &header(key), &claims(ISSUER, unix_now()));
        assert!(
            runtime.block_on(verifier.verify(&genuine)).is_ok(),
            "control: untouched claims verify with {}",
            key.kid
        );
    }
    let cases = (0..keys.len(), claims_like(), any::<bool>());
    TestRunner::new(budget(128))
        .run(&cases, |(which, claims, as_text)| {
            let key = &keys[which];
            let token = if as_text {
                sign_raw(key, &header(key).to_string(), &claims.to_string())
            } else {
                sign(key, &header(key), &claims)
            };
            let now = unix_now();
            let verdict = runtime.block_on(verifier.verify(&token));
            if verdict.is_ok() {
                prop_assert_eq!(&claims["iss"], ISSUER);
                let aud = &claims["aud"];
                prop_assert!(
                    aud == ISSUER
                        || aud
                            .as_array()
                            .is_some_and(|a| a.iter().any(|v| v == ISSUER)),
                    "accepted aud {aud}"
                );
                // Within the default 60 s leeway; only a long-lived JWT may lack `exp`.
                let now = now as f64;
                match claims.get("exp") {
                    Some(exp) => prop_assert!(exp.as_f64().is_some_and(|exp| exp > now - 60.0)),
                    None => prop_assert_eq!(&claims["knd"], "jwt"),
                }
                if let Some(nbf) = claims.get("nbf") {
                    prop_assert!(nbf.as_f64().is_some_and(|nbf| nbf <= now + 60.0));
                }
                prop_assert!(
                    claims["scope"].is_string(),
                    "accepted scope {}",
                    claims["scope"]
                );
            }
            Ok(())
        })
        .unwrap();
}
