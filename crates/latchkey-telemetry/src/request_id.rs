//! `X-Request-Id` (docs/OPERATIONS.md, "Request ids"): a client's own id is kept when
//! it is sane, 1 to 64 characters of `A-Z a-z 0-9 . _ : -`; anything else (empty, too
//! long, control characters, spaces, non-ASCII, quotes, anything that could split a log
//! line or a header) is replaced by a generated one, never echoed.
//!
//! Generated ids are a random per-process prefix and a counter (`8f3a…-1f`): unique
//! within a process and across restarts, with no system call per request.

use http::HeaderValue;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header's name.
pub const HEADER: &str = "x-request-id";

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
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let text = format!("{prefix}-{n:x}");
    // Hex digits and a hyphen only: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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
    fn generated_ids_differ_and_are_sane() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(is_sane(a.as_bytes()) && is_sane(b.as_bytes()), "{a:?}");
    }
}
