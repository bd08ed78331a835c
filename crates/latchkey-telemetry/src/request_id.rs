//! `X-Request-Id` (docs/OPERATIONS.md, "Request ids"): a client's own id is kept when
//! it is sane, 1 to 64 characters of `A-Z a-z 0-9 . _ : -`; anything else (empty, too
//! long, control characters, spaces, non-ASCII, quotes, anything that could split a log
//! line or a header) is replaced by a generated one, never echoed.
//!
//! Generated ids are a random per-process prefix and a counter (`8f3a…-1f`): unique
//! within a process and across restarts, with no system call per request.

use http::{HeaderName, HeaderValue};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header's name.
pub const HEADER: &str = "x-request-id";

/// The header's name as a [`HeaderName`], built at compile time: looking it up or
/// setting it costs no parsing of the name per request.
pub const NAME: HeaderName = HeaderName::from_static(HEADER);

/// The longest request id kept from a client.
pub const MAX_LEN: usize = 64;

/// Whether `value` is an id latchkey keeps as the client sent it.
pub fn is_sane(value: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&value.len())
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The request's id: the client's `sent` one if sane, else a new one.
pub fn from_client(sent: Option<&HeaderValue>) -> HeaderValue {
    match sent {
        Some(value) if is_sane(value.as_bytes()) => value.clone(),
        _ => generate(),
    }
}

/// A new id, unique within this process and, by its random prefix, across processes.
pub fn generate() -> HeaderValue {
    static PREFIX: OnceLock<[u8; PREFIX_LEN]> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| {
        let mut prefix = [0; PREFIX_LEN];
        uuid::Uuid::new_v4().simple().encode_lower(&mut prefix);
        prefix
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut buffer = [0; ID_LEN];
    // Hex digits and a hyphen only: always a valid header value.
    HeaderValue::from_bytes(write_id(&mut buffer, prefix, n))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The random prefix's length: a simple UUID, 32 hex digits.
const PREFIX_LEN: usize = uuid::fmt::Simple::LENGTH;

/// The longest generated id: the prefix, a hyphen and 16 hex digits.
const ID_LEN: usize = PREFIX_LEN + 1 + 16;

/// Writes `{prefix}-{n:x}` into `buffer`, on the stack: no formatter and no `String`
/// per request.
fn write_id<'a>(buffer: &'a mut [u8; ID_LEN], prefix: &[u8; PREFIX_LEN], n: u64) -> &'a [u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // At most 16 digits, at least one.
    let digits = (u64::BITS - n.leading_zeros()).div_ceil(4).max(1) as usize;
    let (head, tail) = buffer.split_at_mut(PREFIX_LEN);
    head.copy_from_slice(prefix);
    let (hyphen, hex) = tail.split_at_mut(1);
    hyphen.copy_from_slice(b"-");
    for (i, out) in hex.iter_mut().take(digits).enumerate() {
        let shift = 4 * (digits - 1 - i);
        *out = HEX[((n >> shift) & 0xf) as usize];
    }
    &buffer[..PREFIX_LEN + 1 + digits]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_id_is_kept_and_anything_else_is_replaced() {
        for kept in ["abc", "req-42", "a.b_c:d-E", &"x".repeat(64)] {
            let value = HeaderValue::from_str(kept).unwrap();
            assert_eq!(from_client(Some(&value)), value, "{kept}");
        }
        for replaced in [
            "".as_bytes(),
            "x".repeat(65).as_bytes(),
            b"has space",
            b"tab\there",
            "caf\u{e9}".as_bytes(),
            b"quote\"",
            b"a,b",
            b"<script>",
            b"semi;colon",
            b"\x7f",
        ] {
            let Ok(value) = HeaderValue::from_bytes(replaced) else {
                continue;
            };
            let id = from_client(Some(&value));
            assert_ne!(id, value);
            assert!(is_sane(id.as_bytes()));
        }
        assert!(is_sane(from_client(None).as_bytes()));
    }

    #[test]
    fn an_id_is_the_prefix_a_hyphen_and_the_counter_in_hex() {
        let prefix = *b"0123456789abcdef0123456789abcdef";
        let text = std::str::from_utf8(&prefix).unwrap();
        for n in [
            0,
            1,
            9,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::MAX >> 4,
            u64::MAX,
        ] {
            let mut buffer = [0; ID_LEN];
            let id = write_id(&mut buffer, &prefix, n);
            assert_eq!(id, format!("{text}-{n:x}").as_bytes(), "{n}");
        }
    }

    #[test]
    fn generated_ids_differ_and_are_sane() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(is_sane(a.as_bytes()) && is_sane(b.as_bytes()), "{a:?}");
    }
}
