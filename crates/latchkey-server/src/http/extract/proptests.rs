//! Property tests of the parsers that read request bytes: form and query decoding
//! (against a reference decoder of `application/x-www-form-urlencoded`), the OAuth
//! form reader and its one-value-per-parameter rule (docs/API.md, "The authorization
//! server"), the JSON body reader (against a strict serde_json reading), and cursors.
//!
//! Budgets are fixed (see docs/BENCHMARKS.md, "Property-test budgets");
//! `PROPTEST_CASES` raises them for a deeper run.

use super::*;
use crate::http::oauth::client::{Form, read_form};
use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// The largest page a list query takes.
const MAX_LIMIT: u32 = 200;

/// A `cursor` value as the list query reads it.
fn decode_cursor(text: &str) -> Result<String, ApiError> {
    Cursor::parse(text)
        .map(|cursor| cursor.0)
        .map_err(|reason| ApiError::field("cursor", reason))
}

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

/// The WHATWG URL standard's `application/x-www-form-urlencoded` parser, written from
/// the standard: split on `&`, drop empty pieces, split at the first `=`, `+` is a
/// space, `%XX` a byte (anything else after `%` stays as it is), then UTF-8 with
/// replacement characters.
fn reference_form(text: &str) -> Vec<(String, String)> {
    fn decode(text: &str) -> String {
        let bytes: Vec<u8> = text
            .bytes()
            .map(|b| if b == b'+' { b' ' } else { b })
            .collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            match (bytes[i], hex) {
                (b'%', Some(hex)) => {
                    let text = std::str::from_utf8(hex).unwrap();
                    out.push(u8::from_str_radix(text, 16).unwrap());
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    text.split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.find('=') {
            Some(at) => (decode(&piece[..at]), decode(&piece[at + 1..])),
            None => (decode(piece), String::new()),
        })
        .collect()
}

/// Encodes `text` as a client might: unreserved characters as they are or escaped,
/// spaces as `+` or `%20`, hex digits in either case.
fn client_encode(text: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    for (i, byte) in text.bytes().enumerate() {
        let choice = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        let unreserved = byte.is_ascii_alphanumeric() || b"-._~".contains(&byte);
        match byte {
            b' ' if choice % 2 == 0 => out.push('+'),
            _ if unreserved && choice % 3 != 0 => out.push(byte as char),
            _ if choice % 5 == 0 => out.push_str(&format!("%{byte:02x}")),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Text from the characters that matter to a form decoder.
fn form_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => prop::sample::select(vec![
                "a", "Z", "0", "&", "=", "+", "%", "%2", "%41", "%e9", "%C3%A9", "%ff",
                "%00", "%zz", "%%", "é", " ", "\u{1F600}", "%2B", "%26", "%3D",
            ])
            .prop_map(str::to_owned),
            1 => any::<char>().prop_map(|c| c.to_string()),
        ],
        0..32,
    )
    .prop_map(|parts| parts.concat())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// The status and JSON body of an error response.
fn read_error(runtime: &tokio::runtime::Runtime, response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = runtime
        .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn read(
    runtime: &tokio::runtime::Runtime,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<Form, (StatusCode, Value)> {
    let mut request = HttpRequest::builder().method("POST").uri("/oauth/token");
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(Body::from(body)).unwrap();
    runtime
        .block_on(read_form(request))
        .map(|(_, form)| form)
        .map_err(|error| read_error(runtime, error.into_response()))
}

const NAMES: [&str; 5] = ["grant_type", "scope", "client_id", "client_secret", "token"];

proptest! {
    #![proptest_config(budget(512))]

    #[test]
    fn form_pairs_decode_as_the_form_standard_does(text in form_text()) {
        prop_assert_eq!(form_pairs(&text), reference_form(&text));
    }

    #[test]
    fn every_pair_a_client_encodes_decodes_back_to_itself(
        pairs in prop::collection::vec((any::<String>(), any::<String>()), 0..6),
        choices in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let text: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{}={}", client_encode(k, &choices), client_encode(v, &choices)))
            .collect();
        prop_assert_eq!(form_pairs(&text.join("&")), pairs);
    }

    #[test]
    fn a_parameter_sent_twice_is_refused_however_its_name_is_spelled(
        names in prop::collection::vec(prop::sample::select(NAMES.to_vec()), 0..8),
        values in prop::collection::vec("[a-z0-9 ]{0,3}", 8),
        choices in prop::collection::vec(any::<u8>(), 1..16),
        asked in prop::sample::select(NAMES.to_vec()),
    ) {
        let runtime = runtime();
        let body: Vec<String> = names
            .iter()
            .zip(&values)
            .map(|(n, v)| format!("{}={}", client_encode(n, &choices), client_encode(v, &choices)))
            .collect();
        let form = read(
            &runtime,
            Some("application/x-www-form-urlencoded"),
            body.join("&").into_bytes(),
        )
        .unwrap();
        let sent: Vec<&String> = names
            .iter()
            .zip(&values)
            .filter(|(n, _)| **n == asked)
            .map(|(_, v)| v)
            .collect();
        match form.get(asked) {
            Ok(value) => {
                prop_assert!(sent.len() <= 1, "{asked} sent {} times", sent.len());
                let expected = sent.first().map(|v| v.as_str()).filter(|v| !v.is_empty());
                prop_assert_eq!(value, expected);
            }
            Err(error) => {
                prop_assert!(sent.len() >= 2, "refused {asked} sent {} times", sent.len());
                let (status, body) = read_error(&runtime, error.into_response());
                prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                prop_assert_eq!(&body["error"], "invalid_request");
            }
        }
    }

    #[test]
    fn only_a_form_content_type_is_read(
        content_type in prop::option::of(prop_oneof![
            Just("application/x-www-form-urlencoded".to_owned()),
            "(APPLICATION|application|Application)/(x-www-form-urlencoded|X-WWW-Form-URLEncoded|json|x-www-form-urlencodedx)( ?; ?charset=(utf-8|latin1))?",
            "[ -~]{0,40}",
        ]),
        body in form_text(),
    ) {
        let runtime = runtime();
        let expected = content_type.as_deref().is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or("").trim();
            essence.eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        match read(&runtime, content_type.as_deref(), body.clone().into_bytes()) {
            Ok(form) => {
                prop_assert!(expected, "read a body sent as {content_type:?}");
                for name in NAMES {
                    let sent = reference_form(&body).into_iter().filter(|(k, _)| k == name).count();
                    prop_assert_eq!(form.get(name).is_err(), sent > 1);
                }
            }
            Err((status, body)) => {
                prop_assert!(!expected, "refused a form sent as {content_type:?}");
                prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                prop_assert_eq!(&body["error"], "invalid_request");
            }
        }
    }

    #[test]
    fn a_form_body_must_be_utf8_and_at_most_64_kib(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            (BODY_LIMIT - 2..=BODY_LIMIT + 2).prop_map(|n| vec![b'a'; n]),
        ],
    ) {
        let runtime = runtime();
        let result = read(&runtime, Some("application/x-www-form-urlencoded"), body.clone());
        if body.len() > BODY_LIMIT {
            let (status, error) = result.err().unwrap();
            prop_assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
            prop_assert_eq!(&error["error"], "invalid_request");
        } else if std::str::from_utf8(&body).is_err() {
            let (status, error) = result.err().unwrap();
            prop_assert_eq!(status, StatusCode::BAD_REQUEST);
            prop_assert_eq!(&error["error"], "invalid_request");
        } else {
            prop_assert!(result.is_ok());
        }
    }

    #[test]
    fn a_json_body_is_accepted_exactly_when_a_strict_reading_accepts_it(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            json_text().prop_map(String::into_bytes),
        ],
    ) {
        let strict = strict_json(&body);
        match parse_json::<Value>(&body) {
            Ok(value) => prop_assert_eq!(Some(value), strict),
            Err(error) => {
                prop_assert!(strict.is_none(), "refused {:?}", String::from_utf8_lossy(&body));
                let response = error.into_response();
                prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                prop_assert_eq!(
                    response.headers().get(header::CONTENT_TYPE).unwrap(),
                    "application/problem+json"
                );
            }
        }
    }

    #[test]
    fn a_cursor_is_accepted_only_in_the_spelling_the_server_issues(
        cursor in prop_oneof![
            "[A-Za-z0-9_=+/-]{0,12}",
            any::<String>().prop_map(|key| URL_SAFE_NO_PAD.encode(key)),
        ],
    ) {
        match decode_cursor(&cursor) {
            Ok(key) => prop_assert_eq!(URL_SAFE_NO_PAD.encode(key), cursor),
            Err(error) => {
                prop_assert_eq!(error.into_response().status(), StatusCode::BAD_REQUEST);
            }
        }
    }

    #[test]
    fn every_issued_cursor_decodes_to_its_key_and_no_other_is_read(key in any::<String>()) {
        // Sort keys are ids: no control characters (PostgreSQL refuses a NUL in text).
        let decoded = decode_cursor(&URL_SAFE_NO_PAD.encode(&key)).ok();
        if key.chars().any(char::is_control) {
            prop_assert_eq!(decoded, None);
        } else {
            prop_assert_eq!(decoded, Some(key));
        }
    }

    #[test]
    fn a_list_query_gives_a_page_request_in_range_or_a_400(query in query_text()) {
        let runtime = runtime();
        let (mut parts, ()) = HttpRequest::builder()
            .uri(format!("/v1/tenants?{query}"))
            .body(())
            .unwrap()
            .into_parts();
        let pairs = form_pairs(&query);
        match runtime.block_on(Query::<ListQuery>::from_request_parts(&mut parts, &())) {
            Ok(Query(list)) => {
                prop_assert!((1..=MAX_LIMIT).contains(&list.limit.0));
                prop_assert!(pairs.iter().all(|(k, _)| k == "limit" || k == "cursor"));
                if let Some(Cursor(cursor)) = &list.cursor {
                    prop_assert!(pairs.iter().any(|(k, v)| k == "cursor"
                        && decode_cursor(v).ok().as_ref() == Some(cursor)));
                }
            }
            Err(error) => {
                let response = error.into_response();
                prop_assert_eq!(response.status(), StatusCode::BAD_REQUEST);
                prop_assert_eq!(
                    response.headers().get(header::CONTENT_TYPE).unwrap(),
                    "application/problem+json"
                );
            }
        }
    }
}

/// serde_json's own reading, made strict: one value, nothing after it, and no object
/// naming a member twice (which serde_json would otherwise settle by keeping the last).
fn strict_json(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<UniqueCheck>(bytes).ok()?;
    serde_json::from_slice(bytes).ok()
}

/// A JSON document in which no object names a member twice.
struct UniqueCheck;

impl<'de> serde::Deserialize<'de> for UniqueCheck {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueCheckVisitor)
    }
}

struct UniqueCheckVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueCheckVisitor {
    type Value = UniqueCheck;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueCheck, E> {
        Ok(UniqueCheck)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueCheck, E> {
        Ok(UniqueCheck)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueCheck, E> {
        Ok(UniqueCheck)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueCheck, E> {
        Ok(UniqueCheck)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueCheck, E> {
        Ok(UniqueCheck)
    }

    fn visit_unit<E>(self) -> Result<UniqueCheck, E> {
        Ok(UniqueCheck)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueCheck, A::Error> {
        while seq.next_element::<UniqueCheck>()?.is_some() {}
        Ok(UniqueCheck)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueCheck, A::Error> {
        let mut names: Vec<String> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if names.contains(&name) {
                return Err(serde::de::Error::custom("a member named twice"));
            }
            map.next_value::<UniqueCheck>()?;
            names.push(name);
        }
        Ok(UniqueCheck)
    }
}

fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1.5".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        "\"[a-z]{0,4}\"",
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let value = leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (prop::sample::select(vec!["a", "b", "id", "name"]), inner),
                0..4
            )
            .prop_map(|members| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    });
    let nesting =
        (1usize..200).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    let trailer = prop::sample::select(vec!["", "", "", " ", "\n", " x", "{}", ",", "\u{feff}"]);
    (prop_oneof![4 => value, 1 => nesting], trailer).prop_map(|(v, t)| format!("{v}{t}"))
}

fn query_text() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "limit", "cursor", "Limit", "limit ", "after", "", "l%69mit",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            "0",
            "1",
            "50",
            "200",
            "201",
            "-1",
            "+5",
            "05",
            "1e2",
            "4294967296",
            "%31",
            "1%00",
            "YQ",
            "YQ==",
            "_-8",
            "%FF",
        ])
        .prop_map(str::to_owned),
        form_text(),
    ];
    prop::collection::vec((key, value), 0..4).prop_map(|pairs| {
        let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // What a client's URL library would escape before the request leaves it.
        pairs
            .join("&")
            .bytes()
            .map(|b| match b {
                b'!'..=b'~' if !b"\"#<>\\^`{|}".contains(&b) => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    })
}

fn problem_field(error: ApiError) -> (StatusCode, Value) {
    let runtime = runtime();
    read_error(&runtime, error.into_response())
}

#[test]
fn a_percent_sign_before_a_signed_digit_is_not_an_escape() {
    // Found by `form_pairs_decode_as_the_form_standard_does`: `%+a` decoded as a
    // newline, because the hex reader also takes a sign.
    assert_eq!(form_pairs("%%+a"), vec![("%% a".to_owned(), String::new())]);
    assert_eq!(
        form_pairs("scope=%+0reports&x=%-1"),
        vec![
            ("scope".to_owned(), "% 0reports".to_owned()),
            ("x".to_owned(), "%-1".to_owned())
        ]
    );
    // Control: real escapes in either case still decode.
    assert_eq!(form_pairs("a=%2b%2B%0a")[0].1, "++\n");
}

#[test]
fn a_member_named_twice_is_refused_naming_it_wherever_it_is() {
    // Found by `a_json_body_is_accepted_exactly_when_a_strict_reading_accepts_it`: a
    // body read into a map (the token rename) kept the last of two `name` members.
    for (body, field) in [
        (&br#"{"name":"a","name":"b"}"#[..], "name"),
        (br#"{"name":"a","n\u0061me":"b"}"#, "name"),
        (br#"{"a":{"b":1,"b":2}}"#, "a.b"),
        (br#"{"a":[{"b":1},{"c":1,"c":1}]}"#, "a[1].c"),
    ] {
        let error = parse_json::<serde_json::Map<String, Value>>(body).unwrap_err();
        let (status, problem) = problem_field(error);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["type"], "urn:latchkey:problem:invalid-field");
        assert_eq!(problem["field"], field, "{}", String::from_utf8_lossy(body));
    }
    // A derived request struct refuses a repeated field itself, with the same answer.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Tenant {
        id: String,
        name: Option<String>,
    }
    let error = parse_json::<Tenant>(br#"{"id":"a","name":"b","name":"c"}"#).unwrap_err();
    let (status, problem) = problem_field(error);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "urn:latchkey:problem:invalid-field");
    assert_eq!(problem["field"], "name");
    // Control: the same members once each, and the same name in different objects.
    let accepted: serde_json::Map<String, Value> =
        parse_json(br#"{"name":"a","a":{"name":1},"b":[{"name":2},{"name":3}]}"#).unwrap();
    assert_eq!(accepted.len(), 3);
}

#[test]
fn json_that_strains_a_parser_is_a_400_not_a_panic() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    for body in [
        deep.as_bytes(),
        b"1e400",
        b"\"\\ud800\"",
        b"\xef\xbb\xbf{}",
        b"{} {}",
        b"\xff",
        b"",
    ] {
        let error = parse_json::<Value>(body).unwrap_err();
        let (status, problem) = problem_field(error);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(problem["type"], "urn:latchkey:problem:invalid-body");
    }
}
