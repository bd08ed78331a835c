//! Header fields in wire form, for an answer the application passes through without
//! reading it into a `HeaderMap`: the gateway's answers from its upstreams
//! (docs/BENCHMARKS.md, "Upstream answers passed through as they came").
//!
//! Policy:
//! - **Every field is checked as it is added**, as `HeaderName` and `HeaderValue`
//!   would check it (RFC 9110 §5.1 and §5.5): a name of one or more token characters,
//!   a value of visible ASCII, spaces, tabs and obs-text, without leading or trailing
//!   blanks. Nothing that could end a line or a head gets in.
//! - **The listener frames the answer**, so the fields that frame it are refused:
//!   `Connection`, `Content-Length` and `Transfer-Encoding`. A length the application
//!   declares goes in [`WireFields::set_length`] and is read as a `Content-Length` in
//!   the response's own map would be.
//! - **Both protocols answer the same fields.** Over HTTP/1.1 the fields are written
//!   after the response's own map, byte for byte; over HTTP/2 they are added to the map
//!   (names lower-cased, as HTTP/2 requires). The application sets no name both ways.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::fmt;

/// Header fields already in wire form, set as a response extension
/// (`response.extensions_mut().insert(fields)`).
#[derive(Clone, Default)]
pub struct WireFields {
    /// `name: value\r\n`, once per field.
    bytes: Vec<u8>,
    length: Option<u64>,
    date: bool,
}

/// Why a field was not added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireFieldError {
    #[error("a header field name is not a token")]
    Name,
    #[error("a header field value holds a character no value may")]
    Value,
    #[error("the listener frames the answer itself: {0} is not passed through")]
    Framing(&'static str),
}

/// The names the listener writes itself, as they are refused.
const FRAMING: [&str; 3] = ["connection", "content-length", "transfer-encoding"];

impl WireFields {
    /// Room for `bytes` of fields without growing.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            ..Self::default()
        }
    }

    /// Adds the field `name: value`, or says why it cannot be.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> Result<(), WireFieldError> {
        // Every byte is looked at without a branch on it: a header's bytes are almost
        // always valid, and the checks are all of the cost of passing a field on.
        let token = name
            .iter()
            .fold(true, |all, &byte| all & TOKEN[usize::from(byte)]);
        if name.is_empty() || !token {
            return Err(WireFieldError::Name);
        }
        if let Some(framing) = FRAMING.iter().find(|framing| {
            framing.len() == name.len() && name.eq_ignore_ascii_case(framing.as_bytes())
        }) {
            return Err(WireFieldError::Framing(framing));
        }
        let blank = |byte: Option<&u8>| matches!(byte, Some(b' ' | b'\t'));
        let visible = value
            .iter()
            .fold(true, |all, &byte| all & VALUE[usize::from(byte)]);
        if !visible || blank(value.first()) || blank(value.last()) {
            return Err(WireFieldError::Value);
        }
        self.date |= name.eq_ignore_ascii_case(b"date");
        self.bytes.reserve(name.len() + value.len() + 4);
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(b": ");
        self.bytes.extend_from_slice(value);
        self.bytes.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The length the answer's body has, or would have had for a `HEAD` or a 304.
    pub fn set_length(&mut self, length: Option<u64>) {
        self.length = length;
    }

    /// The length [`WireFields::set_length`] gave.
    pub fn length(&self) -> Option<u64> {
        self.length
    }

    /// Whether a `Date` is among the fields.
    pub fn has_date(&self) -> bool {
        self.date
    }

    /// The fields as they are written: `name: value\r\n`, once per field.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Each field's name and value, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.bytes
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
            .filter_map(|line| {
                let line = line.strip_suffix(b"\r")?;
                let colon = line.iter().position(|&byte| byte == b':')?;
                let (name, rest) = line.split_at(colon);
                Some((name, rest.get(2..).unwrap_or_default()))
            })
    }

    /// Adds the fields, and the length as a `Content-Length`, to `headers`: what an
    /// HTTP/2 answer carries.
    pub fn add_to(&self, headers: &mut HeaderMap) {
        for (name, value) in self.iter() {
            // Both were checked as they were added; neither fails.
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        if let Some(length) = self.length {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
}

impl fmt::Debug for WireFields {
    /// The names only: values may be anything an upstream sent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.iter().map(|(name, _)| String::from_utf8_lossy(name));
        f.debug_struct("WireFields")
            .field("names", &names.collect::<Vec<_>>())
            .field("length", &self.length)
            .finish()
    }
}

/// RFC 9110 §5.6.2: which bytes are a `tchar`.
static TOKEN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let marks = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < marks.len() {
        table[marks[i] as usize] = true;
        i += 1;
    }
    table
};

/// RFC 9110 §5.5: which bytes a field value may hold (`field-vchar`, `SP`, `HTAB`).
static VALUE: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = byte == 0x09 || (byte >= 0x20 && byte != 0x7f);
        byte += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_are_written_as_given_and_read_back() {
        let mut fields = WireFields::default();
        fields.push(b"Server", b"up/1.0").unwrap();
        fields.push(b"x-empty", b"").unwrap();
        fields
            .push(b"Date", b"Tue, 01 Dec 2026 14:00:00 GMT")
            .unwrap();
        assert_eq!(
            fields.as_bytes(),
            b"Server: up/1.0\r\nx-empty: \r\nDate: Tue, 01 Dec 2026 14:00:00 GMT\r\n"
        );
        assert!(fields.has_date());
        let read: Vec<_> = fields.iter().collect();
        assert_eq!(
            read,
            [
                (&b"Server"[..], &b"up/1.0"[..]),
                (b"x-empty", b""),
                (b"Date", b"Tue, 01 Dec 2026 14:00:00 GMT")
            ]
        );
        let mut map = HeaderMap::new();
        fields.set_length(Some(12));
        fields.add_to(&mut map);
        assert_eq!(map["server"], "up/1.0");
        assert_eq!(map["x-empty"], "");
        assert_eq!(map[header::CONTENT_LENGTH], "12");
        assert_eq!(map.len(), 4);
    }

    #[test]
    fn a_field_that_could_break_the_head_or_its_framing_is_refused() {
        let mut fields = WireFields::default();
        for (name, value, error) in [
            (&b""[..], &b"x"[..], WireFieldError::Name),
            (b"a b", b"x", WireFieldError::Name),
            (b"a:b", b"x", WireFieldError::Name),
            (b"a\r\nb", b"x", WireFieldError::Name),
            (b"x", b"a\r\nsmuggled: yes", WireFieldError::Value),
            (b"x", b"a\nb", WireFieldError::Value),
            (b"x", b"a\rb", WireFieldError::Value),
            (b"x", b"a\0b", WireFieldError::Value),
            (b"x", b"a\x7fb", WireFieldError::Value),
            (b"x", b" padded", WireFieldError::Value),
            (b"x", b"padded\t", WireFieldError::Value),
            (
                b"Content-Length",
                b"5",
                WireFieldError::Framing("content-length"),
            ),
            (
                b"TRANSFER-ENCODING",
                b"chunked",
                WireFieldError::Framing("transfer-encoding"),
            ),
            (
                b"connection",
                b"close",
                WireFieldError::Framing("connection"),
            ),
        ] {
            assert_eq!(fields.push(name, value), Err(error), "{name:?}: {value:?}");
        }
        assert!(fields.as_bytes().is_empty(), "nothing refused was kept");
        // Controls: what HeaderValue accepts is accepted.
        fields.push(b"x", b"a\tb \xc3\xa9").unwrap();
        fields.push(b"Content-Type", b"text/plain").unwrap();
        assert!(!fields.has_date());
    }

    proptest! {
        /// Any field `HeaderName` and `HeaderValue` accept without change is accepted
        /// and read back exactly; anything pushed is one line and one field.
        #[test]
        fn a_pushed_field_is_one_line_read_back_exactly(
            name in proptest::collection::vec(any::<u8>(), 0..12),
            value in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let mut fields = WireFields::default();
            let pushed = fields.push(&name, &value);
            let framing = FRAMING.iter().any(|f| name.eq_ignore_ascii_case(f.as_bytes()));
            let trimmed = value.trim_ascii() == &value[..];
            let valid = HeaderName::from_bytes(&name).is_ok()
                && HeaderValue::from_bytes(&value).is_ok()
                && trimmed
                && !framing;
            prop_assert_eq!(pushed.is_ok(), valid);
            if valid {
                prop_assert_eq!(fields.as_bytes().iter().filter(|&&b| b == b'\n').count(), 1);
                let read: Vec<_> = fields.iter().collect();
                prop_assert_eq!(read, vec![(&name[..], &value[..])]);
            }
        }
    }
}
