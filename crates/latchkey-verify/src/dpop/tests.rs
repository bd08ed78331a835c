//! Each check of [`super::check_proof`], attacked, with the honest proof as control.

use super::testing::ProofKey;
use super::*;
use serde_json::json;

const URI: &str = "https://api.example.com/reports?page=2";
const NOW: i64 = 1_800_000_000;

fn expect(access_token: Option<&str>) -> ProofExpectations<'_> {
    ProofExpectations {
        method: "GET",
        uri: URI,
        access_token,
        now: Timestamp::from_millis(NOW * 1000),
        window_seconds: 60,
    }
}

fn check(proof: &str) -> Result<CheckedProof, ProofError> {
    check_proof(proof, &expect(Some("the.access.token")))
}

#[test]
fn an_honest_proof_of_each_algorithm_passes_and_names_its_key() {
    for key in [ProofKey::ed25519(), ProofKey::es256(), ProofKey::rs256()] {
        let proof = key.proof("GET", URI, NOW, Some("the.access.token"));
        let checked = check(&proof).unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
        assert_eq!(checked.jkt, key.jkt());
        assert_eq!(checked.iat, NOW);
    }
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    // RFC 7638 §3.1's example key and thumbprint.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    });
    let Value::Object(jwk) = jwk else {
        unreachable!()
    };
    assert_eq!(
        thumbprint(&jwk).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn a_proof_for_another_method_or_uri_is_refused() {
    let key = ProofKey::es256();
    let token = Some("the.access.token");
    assert_eq!(
        check(&key.proof("POST", URI, NOW, token)),
        Err(ProofError::WrongMethod)
    );
    assert_eq!(
        check(&key.proof("get", URI, NOW, token)),
        Err(ProofError::WrongMethod)
    );
    for other in [
        "https://api.example.com/reports/",
        "https://api.example.com/other",
        "http://api.example.com/reports",
        "https://api.example.com:8443/reports",
        "https://evil.example.com/reports",
        "https://user@api.example.com/reports",
        "/reports",
        "not a url",
    ] {
        assert_eq!(
            check(&key.proof("GET", other, NOW, token)),
            Err(ProofError::WrongUri),
            "{other}"
        );
    }
    // Equivalent spellings normalise to the same URI; query and fragment are ignored.
    for same in [
        "https://api.example.com/reports",
        "HTTPS://API.example.COM:443/reports",
        "https://api.example.com/a/../reports#frag",
        "https://api.example.com/reports?other=1",
    ] {
        assert!(check(&key.proof("GET", same, NOW, token)).is_ok(), "{same}");
    }
}

#[test]
fn a_stale_or_future_proof_is_refused_at_the_edges_of_the_window() {
    let key = ProofKey::ed25519();
    let token = Some("the.access.token");
    assert!(check(&key.proof("GET", URI, NOW - 60, token)).is_ok());
    assert!(check(&key.proof("GET", URI, NOW + 60, token)).is_ok());
    assert_eq!(
        check(&key.proof("GET", URI, NOW - 61, token)),
        Err(ProofError::Stale)
    );
    assert_eq!(
        check(&key.proof("GET", URI, NOW + 61, token)),
        Err(ProofError::Future)
    );
}

#[test]
fn ath_must_be_the_hash_of_the_token_presented() {
    let key = ProofKey::ed25519();
    assert_eq!(
        check(&key.proof("GET", URI, NOW, Some("another.access.token"))),
        Err(ProofError::WrongAccessTokenHash)
    );
    assert_eq!(
        check(&key.proof("GET", URI, NOW, None)),
        Err(ProofError::WrongAccessTokenHash)
    );
    // At the token endpoint no token is presented, so `ath` is not asked for.
    assert!(check_proof(&key.proof("GET", URI, NOW, None), &expect(None)).is_ok());
}

#[test]
fn none_hmac_and_algorithms_that_do_not_fit_the_key_are_refused() {
    let key = ProofKey::es256();
    let claims = key.claims("GET", URI, NOW, Some("the.access.token"));
    for alg in ["none", "HS256", "", "es256", "ES384"] {
        let mut header = key.header();
        header.insert("alg".into(), json!(alg));
        assert_eq!(
            check(&key.sign(&header, &claims)),
            Err(ProofError::AlgorithmNotAllowed),
            "{alg}"
        );
    }
    let mut header = key.header();
    header.insert("alg".into(), json!("EdDSA"));
    assert_eq!(check(&key.sign(&header, &claims)), Err(ProofError::BadKey));
    // An unsigned proof: alg none, empty signature.
    let mut unsigned = key.sign(&key.header(), &claims);
    unsigned.truncate(unsigned.rfind('.').unwrap() + 1);
    assert_eq!(check(&unsigned), Err(ProofError::BadSignature));
}

#[test]
fn a_jwk_with_private_members_is_refused() {
    let key = ProofKey::ed25519();
    let claims = key.claims("GET", URI, NOW, Some("the.access.token"));
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let mut header = key.header();
        header["jwk"][member] = json!("AAAA");
        assert_eq!(
            check(&key.sign(&header, &claims)),
            Err(ProofError::PrivateKey),
            "{member}"
        );
    }
    let mut header = key.header();
    header.insert("jwk".into(), json!({"kty": "oct", "k": "c2VjcmV0"}));
    assert_eq!(
        check(&key.sign(&header, &claims)),
        Err(ProofError::PrivateKey)
    );
    header.remove("jwk");
    assert_eq!(
        check(&key.sign(&header, &claims)),
        Err(ProofError::MissingKey)
    );
}

#[test]
fn a_proof_signed_by_a_key_other_than_its_jwk_is_refused() {
    let key = ProofKey::es256();
    let other = ProofKey::es256();
    let proof = other.sign(
        &key.header(),
        &key.claims("GET", URI, NOW, Some("the.access.token")),
    );
    assert_eq!(check(&proof), Err(ProofError::BadSignature));
}

#[test]
fn a_proof_of_the_wrong_type_or_shape_is_refused() {
    let key = ProofKey::ed25519();
    let claims = key.claims("GET", URI, NOW, Some("the.access.token"));
    for typ in [json!("JWT"), json!("at+jwt"), json!(1)] {
        let mut header = key.header();
        header.insert("typ".into(), typ);
        assert_eq!(
            check(&key.sign(&header, &claims)),
            Err(ProofError::WrongType)
        );
    }
    let mut header = key.header();
    header.insert("crit".into(), json!(["exp"]));
    assert_eq!(
        check(&key.sign(&header, &claims)),
        Err(ProofError::CriticalExtension)
    );
    assert_eq!(check("a.b"), Err(ProofError::Malformed));
    assert_eq!(check(&"a".repeat(5000)), Err(ProofError::TooLarge));
    let proof = key.sign(&key.header(), &claims);
    assert_eq!(check(&format!("{proof}=")), Err(ProofError::BadEncoding));
}

#[test]
fn each_claim_is_required_with_its_type() {
    let key = ProofKey::ed25519();
    for name in ["jti", "htm", "htu", "iat"] {
        let mut claims = key.claims("GET", URI, NOW, Some("the.access.token"));
        claims.remove(name);
        assert_eq!(
            check(&key.sign(&key.header(), &claims)),
            Err(ProofError::MissingClaim(name))
        );
        let mut claims = key.claims("GET", URI, NOW, Some("the.access.token"));
        claims.insert(name.into(), json!([1]));
        assert_eq!(
            check(&key.sign(&key.header(), &claims)),
            Err(ProofError::InvalidClaim(name))
        );
    }
    let mut claims = key.claims("GET", URI, NOW, Some("the.access.token"));
    claims.insert("jti".into(), json!(""));
    assert_eq!(
        check(&key.sign(&key.header(), &claims)),
        Err(ProofError::InvalidClaim("jti"))
    );
}

#[test]
fn the_dpop_header_must_appear_at_most_once() {
    assert_eq!(proof_header([]), Ok(None));
    assert_eq!(proof_header([Some("a")]), Ok(Some("a")));
    assert_eq!(
        proof_header([Some("a"), Some("a")]),
        Err(ProofError::Repeated)
    );
    assert_eq!(proof_header([None]), Err(ProofError::Repeated));
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    static KEY: LazyLock<ProofKey> = LazyLock::new(ProofKey::es256);
    static PROOF: LazyLock<String> =
        LazyLock::new(|| KEY.proof("GET", URI, NOW, Some("the.access.token")));

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text at all is refused without a panic.
        #[test]
        fn arbitrary_text_is_never_accepted(text in ".{0,600}") {
            prop_assert!(check(&text).is_err());
        }

        /// Changing any one character of an honest proof breaks it: every byte is
        /// covered by the signature or is the signature.
        #[test]
        fn any_one_character_changed_is_refused(at in 0usize..4096, with in "[A-Za-z0-9_.-]") {
            let proof: &str = &PROOF;
            let at = at % proof.len();
            let mut changed = proof.to_owned();
            changed.replace_range(at..=at, &with);
            prop_assume!(changed != proof);
            prop_assert!(check(&changed).is_err(), "accepted with byte {at} changed");
        }

        /// A proof naming any other method or path is refused.
        #[test]
        fn any_other_method_or_path_is_refused(method in "[A-Z]{3,7}", path in "/[a-z]{1,12}") {
            prop_assume!(method != "GET" || path != "/reports");
            let uri = format!("https://api.example.com{path}");
            let proof = KEY.proof(&method, &uri, NOW, Some("the.access.token"));
            prop_assert!(check(&proof).is_err());
        }
    }

    #[test]
    fn the_honest_proof_of_the_properties_passes() {
        assert!(check(&PROOF).is_ok());
    }
}
