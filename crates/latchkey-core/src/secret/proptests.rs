//! Property tests of the secret codec against an independent reading of the format the
//! README and docs/API.md describe: `PREFIX_TYPE_BODY`, where the body of a client
//! secret (`sk`) is 43 base62 characters, that of an api key (`ak`) or refresh token
//! (`rt`) a 128-bit id in 22 base62 characters followed by the same 43, and every secret
//! ends in six base62 characters of the IEEE CRC32 of everything before them.
//!
//! The reference below shares no code with `encoding.rs`: a bitwise CRC32 and base62
//! by integer arithmetic, so that a bug in the codec is not mirrored in its oracle.
//!
//! Budgets are fixed (see docs/BENCHMARKS.md, "Property-test budgets");
//! `PROPTEST_CASES` raises them for a deeper run.

use super::*;
use aws_lc_rs::test::rand::FixedSliceSequenceRandom;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::cell::UnsafeCell;

const DIGITS: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

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

fn reference_crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn reference_checksum(text: &str) -> String {
    let mut value = u64::from(reference_crc32(text.as_bytes()));
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = DIGITS.as_bytes()[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(digits.to_vec()).unwrap()
}

fn reference_base62(text: &str) -> Option<u128> {
    text.chars().try_fold(0u128, |value, c| {
        let digit = DIGITS.find(c)? as u128;
        value.checked_mul(62)?.checked_add(digit)
    })
}

/// What the documented format says `text` is: its type and embedded id, or `None`.
fn reference(prefix: &str, text: &str) -> Option<(SecretType, Option<u128>)> {
    let rest = text.strip_prefix(prefix)?.strip_prefix('_')?;
    let (kind, body) = match rest.get(..3)? {
        "sk_" => (SecretType::ClientSecret, &rest[3..]),
        "ak_" => (SecretType::ApiKey, &rest[3..]),
        "rt_" => (SecretType::RefreshToken, &rest[3..]),
        _ => return None,
    };
    let id_len = if kind == SecretType::ClientSecret {
        0
    } else {
        22
    };
    let all_base62 = body.chars().all(|c| DIGITS.contains(c));
    if !all_base62 || body.len() != id_len + 43 + 6 {
        return None;
    }
    let (signed, sum) = text.split_at(text.len() - 6);
    if reference_checksum(signed) != sum {
        return None;
    }
    let id = if id_len == 0 {
        None
    } else {
        Some(reference_base62(&body[..id_len])?)
    };
    Some((kind, id))
}

fn kind() -> impl Strategy<Value = SecretType> {
    prop_oneof![
        Just(SecretType::ClientSecret),
        Just(SecretType::ApiKey),
        Just(SecretType::RefreshToken),
    ]
}

fn prefix() -> impl Strategy<Value = SecretPrefix> {
    "[a-z0-9]{1,16}".prop_map(|text| SecretPrefix::parse(&text).unwrap())
}

/// A secret generated from chosen "random" bytes, so that the extremes (all zero, all
/// `0xff`) are reached, not only what the system generator happens to give.
fn generated(
    codec: &SecretCodec,
    kind: SecretType,
    id: u128,
    random: &[u8; 32],
    salt: &[u8; 16],
) -> IssuedSecret {
    let slices: [&[u8]; 2] = [random, salt];
    let rng = FixedSliceSequenceRandom {
        bytes: &slices,
        current: UnsafeCell::new(0),
    };
    codec.generate(kind, TokenId::from_u128(id), &rng).unwrap()
}

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    prop_oneof![
        1 => Just([0u8; 32]),
        1 => Just([0xffu8; 32]),
        8 => any::<[u8; 32]>(),
    ]
}

fn id128() -> impl Strategy<Value = u128> {
    prop_oneof![
        1 => Just(0u128),
        1 => Just(u128::MAX),
        8 => any::<u128>(),
    ]
}

/// Text shaped almost like a secret: a known or unknown prefix and type, a body of
/// base62 characters (with now and then a foreign one) near the right lengths, and
/// half the time the correct checksum, so that acceptance is reached, not only refusal.
fn near_secret() -> impl Strategy<Value = String> {
    let prefix = prop_oneof![
        6 => Just("lk"),
        1 => Just("lk2"),
        1 => Just("l"),
        1 => Just("LK"),
        1 => Just(""),
    ];
    let kind = prop_oneof![
        3 => Just("sk"),
        3 => Just("ak"),
        3 => Just("rt"),
        1 => Just("SK"),
        1 => Just("xx"),
        1 => Just("s"),
    ];
    let body = prop::collection::vec(
        prop_oneof![
            300 => prop::sample::select(DIGITS.chars().collect::<Vec<_>>()),
            1 => prop::sample::select(vec!['_', '-', '+', '/', '=', ' ', 'é', '\0']),
        ],
        45..=75,
    );
    // The right length for the type most of the time; a random one otherwise.
    let length = prop_oneof![2 => Just(true), 1 => Just(false)];
    // A leading `0` keeps an embedded id within 128 bits; random digits mostly overflow.
    let small_id = any::<bool>();
    (prefix, kind, body, length, small_id, any::<bool>()).prop_map(
        |(prefix, kind, body, length, small_id, sum)| {
            let mut body: String = body.into_iter().collect();
            if length {
                let wanted = if kind == "sk" { 49 } else { 71 };
                body = body.chars().cycle().take(wanted).collect();
            }
            if small_id {
                body = format!("0{}", body.chars().skip(1).collect::<String>());
            }
            let mut text = format!("{prefix}_{kind}_{body}");
            if sum && text.is_char_boundary(text.len() - 6) {
                text.truncate(text.len() - 6);
                let sum = reference_checksum(&text);
                text.push_str(&sum);
            }
            text
        },
    )
}

fn assert_matches_reference(codec: &SecretCodec, text: &str) -> Result<(), TestCaseError> {
    let expected = reference(codec.prefix().as_str(), text);
    match (codec.parse(text), expected) {
        (Ok(parsed), Some((kind, id))) => {
            prop_assert_eq!(parsed.kind, kind);
            prop_assert_eq!(parsed.id.map(TokenId::as_u128), id);
        }
        (Err(_), None) => {}
        (got, expected) => {
            prop_assert!(false, "{text:?}: codec {got:?}, reference {expected:?}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(budget(512))]

    #[test]
    fn every_generated_secret_parses_back_with_its_type_and_id(
        prefix in prefix(),
        kind in kind(),
        id in id128(),
        random in bytes32(),
        salt in any::<[u8; 16]>(),
    ) {
        let codec = SecretCodec::new(prefix.clone(), &[7u8; 32]);
        let issued = generated(&codec, kind, id, &random, &salt);
        let text = issued.secret.expose();
        let parsed = codec.parse(text).unwrap();
        prop_assert_eq!(parsed.kind, kind);
        let expected_id = (kind != SecretType::ClientSecret).then_some(id);
        prop_assert_eq!(parsed.id.map(TokenId::as_u128), expected_id);
        prop_assert!(codec.verify(&parsed, &issued.stored));
        prop_assert_eq!(reference(prefix.as_str(), text), Some((kind, expected_id)));
        let id_chars = if kind == SecretType::ClientSecret { 0 } else { 22 };
        prop_assert_eq!(text.len(), prefix.as_str().len() + 4 + id_chars + 43 + 6);
    }

    #[test]
    fn parse_never_panics_and_accepts_exactly_what_the_format_describes(
        text in prop_oneof![any::<String>(), near_secret()],
    ) {
        assert_matches_reference(&SecretCodec::new(SecretPrefix::default(), &[7u8; 32]), &text)?;
    }

    #[test]
    fn one_changed_character_anywhere_is_refused(
        kind in kind(),
        id in id128(),
        random in bytes32(),
        position in any::<prop::sample::Index>(),
        replacement in prop_oneof![
            8 => prop::sample::select(DIGITS.chars().collect::<Vec<_>>()),
            1 => any::<char>(),
        ],
    ) {
        let codec = SecretCodec::new(SecretPrefix::default(), &[7u8; 32]);
        let issued = generated(&codec, kind, id, &random, &[0u8; 16]);
        let original = issued.secret.expose();
        let at = position.index(original.len());
        prop_assume!(!original[at..].starts_with(replacement));
        let mut mutated = original.to_owned();
        mutated.replace_range(at..=at, replacement.encode_utf8(&mut [0u8; 4]));
        // CRC32 catches every change confined to one byte, and a changed checksum
        // digit names another value: no single substitution can collide.
        prop_assert!(codec.parse(&mutated).is_err(), "accepted {mutated:?}");
        assert_matches_reference(&codec, &mutated)?;
    }

    #[test]
    fn a_deleted_or_inserted_character_is_refused(
        kind in kind(),
        random in bytes32(),
        position in any::<prop::sample::Index>(),
        inserted in prop::option::of(any::<char>()),
    ) {
        let codec = SecretCodec::new(SecretPrefix::default(), &[7u8; 32]);
        let issued = generated(&codec, kind, 42, &random, &[0u8; 16]);
        let mut mutated = issued.secret.expose().to_owned();
        match inserted {
            Some(c) => mutated.insert(position.index(mutated.len() + 1), c),
            None => {
                mutated.remove(position.index(mutated.len()));
            }
        }
        prop_assert!(codec.parse(&mutated).is_err(), "accepted {mutated:?}");
    }
}

#[test]
fn the_reference_agrees_with_the_documented_crc32_check_value() {
    // The IEEE CRC32 check value, so that the oracle itself is known to be right.
    assert_eq!(reference_crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(reference_checksum(""), "000000");
}

#[test]
fn an_id_wider_than_128_bits_is_refused_even_with_a_correct_checksum() {
    // 22 base62 digits reach 62^22 - 1 > 2^128 - 1: the format holds a 128-bit id, so
    // the largest spelling must not wrap around to some other token's id.
    let mut text = format!("lk_ak_{}{}", "z".repeat(22), "0".repeat(43));
    let sum = reference_checksum(&text);
    text.push_str(&sum);
    let codec = SecretCodec::new(SecretPrefix::default(), &[7u8; 32]);
    assert_eq!(reference("lk", &text), None);
    assert_eq!(codec.parse(&text), Err(SecretFormatError::Malformed));
}
