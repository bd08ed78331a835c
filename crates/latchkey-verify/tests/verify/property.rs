//! Property tests: arbitrary input and mutated valid tokens never panic the verifier
//! and are never accepted unless byte-identical to a token that is valid.

use crate::support::{Fixture, api_key};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ ";

/// One edit of a token: flip a bit, overwrite, insert or delete a byte, or truncate.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Overwrite(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = any::<usize>();
    let token_char = prop::sample::select(TOKEN_CHARS);
    prop_oneof![
        (at, 0u8..8).prop_map(|(i, bit)| Edit::Flip(i, bit)),
        (at, token_char.clone()).prop_map(|(i, c)| Edit::Overwrite(i, c)),
        (at, token_char).prop_map(|(i, c)| Edit::Insert(i, c)),
        at.prop_map(Edit::Delete),
        at.prop_map(Edit::Truncate),
    ]
}

fn apply(token: &str, edits: &[Edit]) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Flip(i, bit) if !bytes.is_empty() => bytes[i % len] ^= 1 << bit,
            Edit::Overwrite(i, c) if !bytes.is_empty() => bytes[i % len] = c,
            Edit::Insert(i, c) => bytes.insert(i % (bytes.len() + 1), c),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % len),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn arbitrary_and_mutated_tokens_never_panic_and_are_never_accepted_unless_byte_identical() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let f = runtime.block_on(Fixture::start());
    let (key, id) = api_key();
    f.issuer.activate(&key, id, "reports:read");
    let valid = vec![f.token(&f.ed), f.token(&f.es), f.token(&f.rs), key];
    for token in &valid {
        assert!(runtime.block_on(f.verifier.verify(token)).is_ok());
    }
    let check = |candidate: String| -> Result<(), TestCaseError> {
        let accepted = runtime.block_on(f.verifier.verify(&candidate)).is_ok();
        prop_assert!(
            !accepted || valid.contains(&candidate),
            "accepted a token that is not byte-identical to a valid one: {candidate:?}"
        );
        Ok(())
    };
    let config = Config {
        cases: 1500,
        failure_persistence: None,
        ..Config::default()
    };

    let mutated = (0..valid.len(), prop::collection::vec(edit(), 1..4));
    TestRunner::new(config.clone())
        .run(&mutated, |(which, edits)| {
            check(apply(&valid[which], &edits))
        })
        .unwrap();

    let bytes = prop::collection::vec(any::<u8>(), 0..1200);
    TestRunner::new(config.clone())
        .run(&bytes, |bytes| {
            check(String::from_utf8_lossy(&bytes).into_owned())
        })
        .unwrap();

    let token_like = prop::collection::vec(prop::sample::select(TOKEN_CHARS), 0..700);
    TestRunner::new(config)
        .run(&token_like, |chars| {
            check(String::from_utf8(chars).unwrap())
        })
        .unwrap();

    assert_eq!(f.issuer.jwks_fetches(), 1, "mutated kids caused no refetch");
}
