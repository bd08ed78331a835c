//! Property tests of `client_secret_basic` decoding (RFC 6749 §2.3.1): both halves are
//! form-urlencoded before Basic encoding, so any id and secret a client encodes that
//! way decode back to themselves, and no header value panics the reader.
//!
//! Budgets are fixed (see docs/BENCHMARKS.md, "Property-test budgets");
//! `PROPTEST_CASES` raises them for a deeper run.

use super::*;
use axum::http::HeaderValue;
use proptest::prelude::*;
use proptest::test_runner::Config;

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

/// `application/x-www-form-urlencoded` as a client library writes it: unreserved
/// characters as they are, spaces as `+`, everything else `%XX`.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(budget(512))]

    #[test]
    fn an_encoded_id_and_secret_decode_back_to_themselves(id in any::<String>(), secret in any::<String>()) {
        let pair = format!("{}:{}", form_encode(&id), form_encode(&secret));
        let presented = decode_basic(&STANDARD.encode(pair)).unwrap();
        prop_assert_eq!(presented.client_id, id);
        prop_assert_eq!(presented.secret, secret);
    }

    #[test]
    fn no_authorization_value_panics_the_reader(
        value in prop::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')], 0..64),
        basic in any::<bool>(),
    ) {
        let value = if basic {
            [&b"Basic "[..], &value].concat()
        } else {
            value
        };
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(header::AUTHORIZATION, value);
        }
        match presented(&headers, &Form::default()) {
            Ok(_) => {}
            Err(error) => prop_assert!(matches!(error.code(), "invalid_client" | "invalid_request")),
        }
    }
}

/// Each half of a Basic credential is one form-encoded value (RFC 6749 §2.3.1): a raw
/// `&` or `=` in it is text, not a separator, so no part of what the client sent is
/// dropped before the secret is checked.
#[test]
fn a_raw_ampersand_or_equals_in_a_basic_half_is_kept_as_text() {
    let presented = decode_basic(&STANDARD.encode("id&x=1:se=cr&et")).unwrap();
    assert_eq!(presented.client_id, "id&x=1");
    assert_eq!(presented.secret, "se=cr&et");
    // Control: the encoded spellings decode to the same text.
    let presented = decode_basic(&STANDARD.encode("id%26x%3D1:se%3Dcr%26et")).unwrap();
    assert_eq!(presented.client_id, "id&x=1");
    assert_eq!(presented.secret, "se=cr&et");
}
