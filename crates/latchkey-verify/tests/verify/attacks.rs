//! The attack suite: crafted tokens for every known JWT attack, each refused with its
//! exact reason (and so a 401 `invalid_token`), with no panic and no request to any URL
//! a token names.

use crate::support::{Fixture, TestKey, sign, sign_raw};
use aws_lc_rs::hmac;
use base64::Engine;
use latchkey_core::jwt::b64url_encode;
use latchkey_verify::{Clock, InvalidReason, VerifyError};
use serde_json::{Value, json};
use std::collections::HashSet;

struct Case {
    name: String,
    token: String,
    expected: InvalidReason,
}

fn case(name: impl Into<String>, token: String, expected: InvalidReason) -> Case {
    Case {
        name: name.into(),
        token,
        expected,
    }
}

/// Header and claims joined without a signature check in mind: `signature` is appended
/// as given.
fn unsigned(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes()),
        b64url_encode(signature)
    )
}

fn with(mut value: Value, name: &str, member: Value) -> Value {
    value[name] = member;
    value
}

fn without(mut value: Value, name: &str) -> Value {
    value.as_object_mut().unwrap().remove(name);
    value
}

fn alg_none(f: &Fixture) -> Vec<Case> {
    let mut cases = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE", ""] {
        let header = json!({ "alg": alg, "typ": "at+jwt", "kid": f.ed.kid });
        cases.push(case(
            format!("alg {alg:?} with an empty signature"),
            unsigned(&header, &f.claims(), b""),
            InvalidReason::AlgorithmNotAllowed,
        ));
    }
    let header = json!({ "alg": "none", "typ": "at+jwt", "kid": f.ed.kid });
    let real = f.token(&f.ed);
    let signature = real.rsplit('.').next().unwrap();
    let token = format!(
        "{}.{signature}",
        unsigned(&header, &f.claims(), b"").trim_end_matches('.')
    );
    cases.push(case(
        "alg none with a real signature",
        token,
        InvalidReason::AlgorithmNotAllowed,
    ));
    cases.push(case(
        "no alg at all",
        unsigned(
            &without(crate::support::header(&f.ed), "alg"),
            &f.claims(),
            b"",
        ),
        InvalidReason::AlgorithmNotAllowed,
    ));
    cases
}

fn hs256_with(secret: &[u8], kid: &str, claims: &Value) -> String {
    let header = json!({ "alg": "HS256", "typ": "at+jwt", "kid": kid });
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string().as_bytes()),
        b64url_encode(claims.to_string().as_bytes())
    );
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", b64url_encode(tag.as_ref()))
}

fn key_confusion(f: &Fixture) -> Vec<Case> {
    let der = f.rs.public_der();
    let body = base64::engine::general_purpose::STANDARD.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let claims = f.claims();
    vec![
        case(
            "HS256 keyed with the RSA public key as PEM",
            hs256_with(pem.as_bytes(), &f.rs.kid, &claims),
            InvalidReason::AlgorithmNotAllowed,
        ),
        case(
            "HS256 keyed with the RSA public key as DER",
            hs256_with(&der, &f.rs.kid, &claims),
            InvalidReason::AlgorithmNotAllowed,
        ),
        case(
            "HS256 keyed with the RSA public JWK",
            hs256_with(f.rs.jwk().to_string().as_bytes(), &f.rs.kid, &claims),
            InvalidReason::AlgorithmNotAllowed,
        ),
        case(
            "HS256 keyed with the Ed25519 public key bytes",
            hs256_with(&f.ed.public_der(), &f.ed.kid, &claims),
            InvalidReason::AlgorithmNotAllowed,
        ),
    ]
}

fn algorithm_mismatch(f: &Fixture) -> Vec<Case> {
    let claims = f.claims();
    let lie = |alg: &str, kid: &TestKey, signer: &TestKey| {
        sign(
            signer,
            &json!({ "alg": alg, "typ": "at+jwt", "kid": kid.kid }),
            &claims,
        )
    };
    vec![
        case(
            "ES256 header naming the Ed25519 key",
            lie("ES256", &f.ed, &f.es),
            InvalidReason::AlgorithmMismatch,
        ),
        case(
            "RS256 header naming the Ed25519 key",
            lie("RS256", &f.ed, &f.rs),
            InvalidReason::AlgorithmMismatch,
        ),
        case(
            "EdDSA header naming the RSA key",
            lie("EdDSA", &f.rs, &f.ed),
            InvalidReason::AlgorithmMismatch,
        ),
        case(
            "EdDSA header naming the P-256 key",
            lie("EdDSA", &f.es, &f.ed),
            InvalidReason::AlgorithmMismatch,
        ),
    ]
}

fn bad_kids(f: &Fixture) -> Vec<Case> {
    let claims = f.claims();
    let kid = |kid: Value| {
        sign(
            &f.ed,
            &json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": kid }),
            &claims,
        )
    };
    vec![
        case(
            "kid as a traversal path",
            kid(json!("../../../../etc/passwd")),
            InvalidReason::UnknownKey,
        ),
        case(
            "kid as SQL",
            kid(json!("' OR '1'='1' --")),
            InvalidReason::UnknownKey,
        ),
        case(
            "kid of 10 KB",
            kid(json!("k".repeat(10_000))),
            InvalidReason::TooLarge,
        ),
        case(
            "unknown kid",
            kid(json!(uuid::Uuid::new_v4().to_string())),
            InvalidReason::UnknownKey,
        ),
        case("empty kid", kid(json!("")), InvalidReason::MissingKid),
        case("numeric kid", kid(json!(42)), InvalidReason::MissingKid),
        case(
            "no kid",
            sign(&f.ed, &json!({ "alg": "EdDSA", "typ": "at+jwt" }), &claims),
            InvalidReason::MissingKid,
        ),
    ]
}

fn token_supplied_keys(f: &Fixture) -> Vec<Case> {
    let attacker = TestKey::ed25519("attacker");
    let url = format!("{}/attacker/jwks.json", f.issuer.url);
    let claims = f.claims();
    let header = |name: &str, member: Value| {
        sign(
            &attacker,
            &with(crate::support::header(&attacker), name, member),
            &claims,
        )
    };
    vec![
        case(
            "jku pointing at an attacker JWKS",
            header("jku", json!(url)),
            InvalidReason::ForbiddenHeader("jku"),
        ),
        case(
            "x5u pointing at an attacker certificate",
            header("x5u", json!(url)),
            InvalidReason::ForbiddenHeader("x5u"),
        ),
        case(
            "jwk embedding the attacker key",
            header("jwk", attacker.jwk()),
            InvalidReason::ForbiddenHeader("jwk"),
        ),
        case(
            "x5c embedding a certificate chain",
            header("x5c", json!(["MIIBAA=="])),
            InvalidReason::ForbiddenHeader("x5c"),
        ),
        case(
            "zip asking for decompression",
            header("zip", json!("DEF")),
            InvalidReason::ForbiddenHeader("zip"),
        ),
    ]
}

fn critical(f: &Fixture) -> Vec<Case> {
    let claims = f.claims();
    let header = crate::support::header(&f.ed);
    vec![
        case(
            "crit naming an unknown extension",
            sign(
                &f.ed,
                &with(header.clone(), "crit", json!(["urn:example:ext"])),
                &claims,
            ),
            InvalidReason::CriticalExtension,
        ),
        case(
            "crit b64=false (unencoded payload)",
            sign(
                &f.ed,
                &with(with(header, "crit", json!(["b64"])), "b64", json!(false)),
                &claims,
            ),
            InvalidReason::CriticalExtension,
        ),
    ]
}

fn wrong_typ(f: &Fixture) -> Vec<Case> {
    let claims = f.claims();
    let typ = |typ: Option<&str>| {
        let header = crate::support::header(&f.ed);
        let header = match typ {
            Some(t) => with(header, "typ", json!(t)),
            None => without(header, "typ"),
        };
        sign(&f.ed, &header, &claims)
    };
    vec![
        case("typ JWT", typ(Some("JWT")), InvalidReason::WrongType),
        case(
            "typ dpop+jwt",
            typ(Some("dpop+jwt")),
            InvalidReason::WrongType,
        ),
        case("typ missing", typ(None), InvalidReason::WrongType),
        case(
            "typ application/jwt",
            typ(Some("application/jwt")),
            InvalidReason::WrongType,
        ),
    ]
}

fn time_window(f: &Fixture) -> Vec<Case> {
    let now = f.clock.now().unix_seconds();
    let claims = |name: &str, value: Value| {
        sign(
            &f.ed,
            &crate::support::header(&f.ed),
            &with(f.claims(), name, value),
        )
    };
    vec![
        case(
            "expired beyond the leeway",
            claims("exp", json!(now - 61)),
            InvalidReason::Expired,
        ),
        case(
            "nbf beyond the leeway",
            claims("nbf", json!(now + 61)),
            InvalidReason::NotYetValid,
        ),
        case(
            "iat beyond the leeway",
            claims("iat", json!(now + 61)),
            InvalidReason::IssuedInFuture,
        ),
        case(
            "exp as a string",
            claims("exp", json!((now + 900).to_string())),
            InvalidReason::ClaimType("exp"),
        ),
        case(
            "exp as null",
            claims("exp", Value::Null),
            InvalidReason::ClaimType("exp"),
        ),
        case(
            "exp as an array",
            claims("exp", json!([now + 900])),
            InvalidReason::ClaimType("exp"),
        ),
        case(
            "exp as a boolean",
            claims("exp", json!(true)),
            InvalidReason::ClaimType("exp"),
        ),
        case(
            "nbf as a string",
            claims("nbf", json!(now.to_string())),
            InvalidReason::ClaimType("nbf"),
        ),
        case(
            "iat as an object",
            claims("iat", json!({ "t": now })),
            InvalidReason::ClaimType("iat"),
        ),
    ]
}

fn missing_claims(f: &Fixture) -> Vec<Case> {
    [
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
    ]
    .into_iter()
    .map(|name| {
        let token = sign(
            &f.ed,
            &crate::support::header(&f.ed),
            &without(f.claims(), name),
        );
        let reason = InvalidReason::MissingClaim(match name {
            "iss" => "iss",
            "sub" => "sub",
            "aud" => "aud",
            "exp" => "exp",
            "iat" => "iat",
            "nbf" => "nbf",
            "jti" => "jti",
            "client_id" => "client_id",
            "scope" => "scope",
            "tid" => "tid",
            _ => "tkt",
        });
        case(format!("{name} missing"), token, reason)
    })
    .collect()
}

fn issuer_and_audience(f: &Fixture) -> Vec<Case> {
    let ours = f.issuer.url.clone();
    let claims = |name: &str, value: Value| {
        sign(
            &f.ed,
            &crate::support::header(&f.ed),
            &with(f.claims(), name, value),
        )
    };
    vec![
        case(
            "a foreign aud",
            claims("aud", json!("http://other.example")),
            InvalidReason::WrongAudience,
        ),
        case(
            "an aud array without ours",
            claims("aud", json!(["http://other.example"])),
            InvalidReason::WrongAudience,
        ),
        case(
            "an empty aud array",
            claims("aud", json!([])),
            InvalidReason::ClaimType("aud"),
        ),
        case(
            "iss a prefix of ours",
            claims("iss", json!(&ours[..ours.len() - 1])),
            InvalidReason::WrongIssuer,
        ),
        case(
            "iss ours plus a slash",
            claims("iss", json!(format!("{ours}/"))),
            InvalidReason::WrongIssuer,
        ),
        case(
            "iss ours plus a domain",
            claims("iss", json!(format!("{ours}.evil.example"))),
            InvalidReason::WrongIssuer,
        ),
        case(
            "iss in upper case",
            claims("iss", json!(ours.to_uppercase())),
            InvalidReason::WrongIssuer,
        ),
        case(
            "iss as a number",
            claims("iss", json!(7)),
            InvalidReason::ClaimType("iss"),
        ),
    ]
}

fn encodings(f: &Fixture) -> Vec<Case> {
    let good = f.token(&f.ed);
    let parts: Vec<&str> = good.split('.').collect();
    let join = |h: &str, p: &str, s: &str| format!("{h}.{p}.{s}");
    // A signature using the standard alphabet: re-sign until it contains `-` or `_`.
    let standard = loop {
        let token = f.token(&f.ed);
        let signature = token.rsplit('.').next().unwrap().to_owned();
        if signature.contains(['-', '_']) {
            let prefix = &token[..token.len() - signature.len()];
            break format!("{prefix}{}", signature.replace('-', "+").replace('_', "/"));
        }
    };
    // 64 signature bytes leave 4 unused bits in the last character; set the lowest.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut noncanonical = parts[2].to_owned();
    let last = noncanonical.pop().unwrap();
    let index = ALPHABET.iter().position(|&c| c == last as u8).unwrap();
    noncanonical.push(ALPHABET[index ^ 1] as char);
    let (p_left, p_right) = parts[1].split_at(parts[1].len() / 2);
    vec![
        case(
            "padded header",
            join(&format!("{}=", parts[0]), parts[1], parts[2]),
            InvalidReason::BadEncoding,
        ),
        case(
            "padded payload",
            join(parts[0], &format!("{}==", parts[1]), parts[2]),
            InvalidReason::BadEncoding,
        ),
        case(
            "padded signature",
            join(parts[0], parts[1], &format!("{}==", parts[2])),
            InvalidReason::BadEncoding,
        ),
        case(
            "standard-alphabet signature",
            standard,
            InvalidReason::BadEncoding,
        ),
        case(
            "space inside the payload",
            join(parts[0], &format!("{p_left} {p_right}"), parts[2]),
            InvalidReason::BadEncoding,
        ),
        case(
            "newline inside the signature",
            join(
                parts[0],
                parts[1],
                &format!("{}\n{}", &parts[2][..10], &parts[2][10..]),
            ),
            InvalidReason::BadEncoding,
        ),
        case(
            "tab inside the header",
            join(&format!("\t{}", parts[0]), parts[1], parts[2]),
            InvalidReason::BadEncoding,
        ),
        case(
            "non-canonical trailing bits",
            join(parts[0], parts[1], &noncanonical),
            InvalidReason::BadEncoding,
        ),
    ]
}

/// A DER `ECDSA-Sig-Value` of a fixed-size signature, the encoding JWS forbids.
fn der_signature(fixed: &[u8]) -> Vec<u8> {
    let integer = |bytes: &[u8]| {
        let mut out = vec![0x02];
        let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
        let needs_pad = trimmed.first().is_some_and(|b| b & 0x80 != 0);
        out.push((trimmed.len() + usize::from(needs_pad)) as u8);
        if needs_pad {
            out.push(0);
        }
        out.extend(trimmed);
        out
    };
    let body = [integer(&fixed[..32]), integer(&fixed[32..])].concat();
    [vec![0x30, body.len() as u8], body].concat()
}

fn signatures(f: &Fixture) -> Vec<Case> {
    let header = crate::support::header(&f.es);
    let claims = f.claims();
    let good = sign(&f.es, &header, &claims);
    let valid = latchkey_core::jwt::b64url_decode(good.rsplit('.').next().unwrap()).unwrap();
    let attacker = TestKey::ed25519(&f.ed.kid);
    let other = f.token(&f.ed);
    let spliced = {
        let a: Vec<&str> = other.split('.').collect();
        let b =
            f.ed.sign_token(&with(f.claims(), "scope", json!("reports:admin")));
        format!("{}.{}.{}", a[0], b.split('.').nth(1).unwrap(), a[2])
    };
    vec![
        case(
            "ECDSA signature with r = s = 0",
            unsigned(&header, &claims, &[0; 64]),
            InvalidReason::BadSignature,
        ),
        case(
            "ECDSA signature one byte short",
            unsigned(&header, &claims, &valid[..63]),
            InvalidReason::BadSignature,
        ),
        case(
            "ECDSA signature one byte long",
            unsigned(&header, &claims, &[valid.clone(), vec![0]].concat()),
            InvalidReason::BadSignature,
        ),
        case(
            "ECDSA signature DER-encoded",
            unsigned(&header, &claims, &der_signature(&valid)),
            InvalidReason::BadSignature,
        ),
        case(
            "Ed25519 signature by an attacker key under our kid",
            attacker.sign_token(&f.claims()),
            InvalidReason::BadSignature,
        ),
        case(
            "payload of one token under the signature of another",
            spliced,
            InvalidReason::BadSignature,
        ),
    ]
}

fn sizes_and_shapes(f: &Fixture) -> Vec<Case> {
    let claims = f.claims();
    let huge = with(
        crate::support::header(&f.ed),
        "pad",
        json!("h".repeat(1024 * 1024)),
    );
    vec![
        case(
            "1 MB of header",
            sign(&f.ed, &huge, &claims),
            InvalidReason::TooLarge,
        ),
        case("100,000 dots", ".".repeat(100_000), InvalidReason::TooLarge),
        case(
            "four segments",
            format!("{}.e30", f.token(&f.ed)),
            InvalidReason::Malformed,
        ),
        case(
            "two segments",
            "e30.e30".to_owned(),
            InvalidReason::Malformed,
        ),
        case(
            "payload that is not an object",
            sign_raw(&f.ed, &crate::support::header(&f.ed).to_string(), "[1,2]"),
            InvalidReason::Malformed,
        ),
        case(
            "payload that is not JSON",
            sign_raw(
                &f.ed,
                &crate::support::header(&f.ed).to_string(),
                "{\"iss\":",
            ),
            InvalidReason::Malformed,
        ),
    ]
}

fn duplicates_and_values(f: &Fixture) -> Vec<Case> {
    let header = crate::support::header(&f.ed).to_string();
    let claims = f.claims();
    let claims_text = claims.to_string();
    let dup_claim = format!(
        "{},\"sub\":\"someone-else\"}}",
        claims_text.trim_end_matches('}')
    );
    let dup_escaped = format!(
        "{},\"sc\\u006fpe\":\"latchkey:admin\"}}",
        claims_text.trim_end_matches('}')
    );
    let dup_header = format!("{},\"alg\":\"none\"}}", header.trim_end_matches('}'));
    let value = |name: &str, v: Value| {
        sign(
            &f.ed,
            &crate::support::header(&f.ed),
            &with(f.claims(), name, v),
        )
    };
    vec![
        case(
            "duplicate alg in the header",
            sign_raw(&f.ed, &dup_header, &claims_text),
            InvalidReason::DuplicateMember,
        ),
        case(
            "duplicate sub in the claims",
            sign_raw(&f.ed, &header, &dup_claim),
            InvalidReason::DuplicateMember,
        ),
        case(
            "duplicate scope spelled with an escape",
            sign_raw(&f.ed, &header, &dup_escaped),
            InvalidReason::DuplicateMember,
        ),
        case(
            "knd other than jwt",
            value("knd", json!("api_key")),
            InvalidReason::InvalidClaim("knd"),
        ),
        case(
            "tkt user without uid",
            value("tkt", json!("user")),
            InvalidReason::InvalidClaim("uid"),
        ),
        case(
            "tkt of an unknown owner type",
            value("tkt", json!("robot")),
            InvalidReason::InvalidClaim("tkt"),
        ),
        case(
            "client_id that is not a token id",
            value("client_id", json!("admin")),
            InvalidReason::InvalidClaim("client_id"),
        ),
        case(
            "scope outside the permission charset",
            value("scope", json!("Reports:READ")),
            InvalidReason::InvalidClaim("scope"),
        ),
        case(
            "tid outside the tenant charset",
            value("tid", json!("acme/../other")),
            InvalidReason::InvalidClaim("tid"),
        ),
    ]
}

impl TestKey {
    /// A token with this key's standard header.
    fn sign_token(&self, claims: &Value) -> String {
        sign(self, &crate::support::header(self), claims)
    }
}

fn all_cases(f: &Fixture) -> Vec<Case> {
    [
        alg_none(f),
        key_confusion(f),
        algorithm_mismatch(f),
        bad_kids(f),
        token_supplied_keys(f),
        critical(f),
        wrong_typ(f),
        time_window(f),
        missing_claims(f),
        issuer_and_audience(f),
        encodings(f),
        signatures(f),
        sizes_and_shapes(f),
        duplicates_and_values(f),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[tokio::test]
async fn every_crafted_attack_token_is_rejected_with_its_exact_reason() {
    let f = Fixture::start().await;
    let cases = all_cases(&f);
    let distinct: HashSet<&str> = cases.iter().map(|c| c.token.as_str()).collect();
    assert_eq!(distinct.len(), cases.len(), "every case is its own token");
    assert!(cases.len() >= 30, "only {} cases", cases.len());

    let mut wrong = Vec::new();
    for case in &cases {
        let got = f.verifier.verify(&case.token).await.err();
        let expected = VerifyError::InvalidToken(case.expected);
        if got.as_ref() != Some(&expected) {
            wrong.push(format!("{}: expected {expected:?}, got {got:?}", case.name));
        } else {
            assert_eq!(expected.status(), 401);
            assert_eq!(
                expected.www_authenticate().unwrap(),
                "Bearer error=\"invalid_token\""
            );
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert_eq!(f.issuer.hits("/attacker/jwks.json"), 0);
}

#[tokio::test]
async fn untampered_tokens_of_every_algorithm_are_accepted() {
    let f = Fixture::start().await;
    for key in [&f.ed, &f.es, &f.rs] {
        let claims = f.claims();
        let principal = f.verifier.verify(&key.sign_token(&claims)).await.unwrap();
        assert_eq!(principal.token_id.to_string(), claims["client_id"]);
        assert_eq!(principal.tenant.as_str(), "acme");
        assert!(principal.has_scope("reports:read"));
        assert_eq!(
            principal.kind,
            latchkey_verify::TokenKind::ClientCredentials
        );
    }
}

#[tokio::test]
async fn a_token_within_the_leeway_is_accepted_and_rfc_9068_forms_are_understood() {
    let f = Fixture::start().await;
    let now = f.clock.now().unix_seconds();
    let ours = f.issuer.url.clone();
    let tolerant = with(
        with(f.claims(), "exp", json!(now - 30)),
        "iat",
        json!(now + 30),
    );
    assert!(f.verifier.verify(&f.ed.sign_token(&tolerant)).await.is_ok());
    let many = with(f.claims(), "aud", json!(["http://other.example", ours]));
    assert!(f.verifier.verify(&f.ed.sign_token(&many)).await.is_ok());
    let full_type = with(
        crate::support::header(&f.ed),
        "typ",
        json!("application/at+jwt"),
    );
    assert!(
        f.verifier
            .verify(&sign(&f.ed, &full_type, &f.claims()))
            .await
            .is_ok()
    );
    let personal = with(with(f.claims(), "tkt", json!("user")), "uid", json!("u_42"));
    let principal = f
        .verifier
        .verify(&f.ed.sign_token(&personal))
        .await
        .unwrap();
    assert_eq!(principal.user.as_ref().unwrap().as_str(), "u_42");
}
