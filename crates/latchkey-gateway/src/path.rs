//! The request path, normalised once: the gateway routes on it and forwards exactly it,
//! so what the gateway checked and what the upstream receives are the same string.
//!
//! Policy (README.md, "The gateway"; docs/API.md, "The gateway's edge"):
//! - **Normalisation** follows RFC 3986 §6.2.2: percent-encoded unreserved characters
//!   (`A-Z a-z 0-9 - . _ ~`) are decoded, the hex digits of every other escape are
//!   upper-cased, and characters that may not appear raw in a path (`"`, `{`, `|`,
//!   non-ASCII, …) are percent-encoded. The result is idempotent and percent-decodes to
//!   the same bytes as the path the client sent.
//! - **Refused everywhere**, because upstreams disagree about what they mean: a `%` not
//!   followed by two hex digits, `\` raw or encoded, an encoded `/` (`%2F`), control
//!   characters raw or encoded, escapes that do not decode to UTF-8, empty segments
//!   (`//`, which nginx merges) and dot segments (`.`, `..` and their encodings, also
//!   followed by `;` parameters, as servlet containers read `..;x` as `..`).
//! - What depends on the routes (`;` parameters, `%25`, case, trailing dots) is judged
//!   by the routing table (`route.rs`) against [`NormalisedPath::readings`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// Why a path was refused; the message is the `error_description` of the 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PathError {
    #[error("the path must start with `/`")]
    NotAbsolute,
    #[error("the path has a `%` that is not followed by two hex digits")]
    MalformedEscape,
    #[error("the path must not contain `\\` or an encoded `/` or `\\` (%2F, %5C)")]
    Separator,
    #[error("the path must not contain control characters, raw or percent-encoded")]
    Control,
    #[error("the percent-encoded bytes of the path are not UTF-8")]
    NotUtf8,
    #[error("the path must not contain empty segments (`//`)")]
    EmptySegment,
    #[error("the path must not contain `.` or `..` segments, raw or percent-encoded")]
    DotSegment,
    #[error("`;` path parameters and `%25` are accepted on public routes only")]
    PublicOnly,
    #[error(
        "the path could be read as another route (ignoring case, `;` parameters, trailing dots, full-width forms, an encoded `?` or `#`, or a second decoding)"
    )]
    ReadsAsAnotherRoute,
}

/// A request path in normal form (see the module policy). The only way to build one is
/// [`NormalisedPath::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NormalisedPath {
    /// What is forwarded: ASCII, escapes upper-case.
    text: String,
    /// `text` percent-decoded once, as a typical upstream framework reads it; `None`
    /// when that is `text` itself, as for most paths, which then cost one string.
    decoded: Option<String>,
    /// A `;` (raw or `%3B`) is present.
    parameters: bool,
    /// A `%25` is present, which an upstream that decodes twice reads as an escape.
    escaped_percent: bool,
}

impl NormalisedPath {
    /// Normalises the path of a request target (without its query), or says why it
    /// cannot be read one way only.
    pub(crate) fn parse(raw: &[u8]) -> Result<Self, PathError> {
        if raw.first() != Some(&b'/') {
            return Err(PathError::NotAbsolute);
        }
        if raw
            .iter()
            .all(|&byte| is_unreserved(byte) || is_reserved_in_path(byte))
        {
            // No escape and nothing to escape, the common case: the path as sent is
            // its own normal form and its own decoding ([`Self::parse_each_byte`]
            // would copy it byte by byte to the same result).
            let text = String::from_utf8(raw.to_vec()).map_err(|_| PathError::NotUtf8)?;
            check_segments(&text)?;
            return Ok(Self {
                decoded: None,
                parameters: text.contains(';'),
                escaped_percent: false,
                text,
            });
        }
        Self::parse_each_byte(raw)
    }

    /// [`Self::parse`] of any absolute path, a byte at a time.
    fn parse_each_byte(raw: &[u8]) -> Result<Self, PathError> {
        let mut text = String::with_capacity(raw.len());
        let mut decoded = Vec::with_capacity(raw.len());
        let mut parameters = false;
        let mut escaped_percent = false;
        let mut rest = raw;
        while let Some((&byte, tail)) = rest.split_first() {
            rest = tail;
            let (value, was_escaped) = if byte == b'%' {
                let [high, low, tail @ ..] = rest else {
                    return Err(PathError::MalformedEscape);
                };
                let value = hex(*high)
                    .zip(hex(*low))
                    .map(|(h, l)| h << 4 | l)
                    .ok_or(PathError::MalformedEscape)?;
                rest = tail;
                (value, true)
            } else {
                (byte, false)
            };
            match value {
                b'\\' => return Err(PathError::Separator),
                b'/' if was_escaped => return Err(PathError::Separator),
                b';' => parameters = true,
                b'%' if was_escaped => escaped_percent = true,
                _ => {}
            }
            let raw_is_fine = is_unreserved(value) || (!was_escaped && is_reserved_in_path(value));
            if raw_is_fine {
                text.push(char::from(value));
            } else {
                // Infallible: writing to a String.
                let _ = write!(text, "%{value:02X}");
            }
            decoded.push(value);
        }
        let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
        if decoded.chars().any(char::is_control) {
            return Err(PathError::Control);
        }
        check_segments(&decoded)?;
        Ok(Self {
            decoded: (decoded != text).then_some(decoded),
            text,
            parameters,
            escaped_percent,
        })
    }

    /// The path to forward.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The path percent-decoded once; routes match on this.
    pub(crate) fn decoded(&self) -> &str {
        self.decoded.as_deref().unwrap_or(&self.text)
    }

    /// Whether the path holds `;` parameters or `%25`, which upstreams read in more
    /// than one way.
    pub(crate) fn has_parameters_or_escaped_percent(&self) -> bool {
        self.parameters || self.escaped_percent
    }

    /// The ways some upstream could read the path: the decoded path itself, the same
    /// read loosely (see [`loosely`]), and, when it holds `%25`, decoded a second time
    /// and read loosely. A plain path's readings borrow from it: nothing is allocated.
    pub(crate) fn readings(&self) -> impl Iterator<Item = Cow<'_, str>> {
        let twice = self
            .escaped_percent
            .then(|| Cow::Owned(loosely(&decode_lossy(self.decoded())).into_owned()));
        [
            Some(Cow::Borrowed(self.decoded())),
            Some(loosely(self.decoded())),
            twice,
        ]
        .into_iter()
        .flatten()
    }
}

impl std::fmt::Display for NormalisedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// No empty segment but a trailing one, and no segment that is `.` or `..` once its
/// `;` parameters are cut off.
fn check_segments(decoded: &str) -> Result<(), PathError> {
    let mut segments = decoded.split('/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let name = segment.split_once(';').map_or(segment, |(name, _)| name);
        if name == "." || name == ".." {
            return Err(PathError::DotSegment);
        }
        if name.is_empty() && segments.peek().is_some() {
            return Err(PathError::EmptySegment);
        }
    }
    Ok(())
}

/// The path as the most lenient upstreams read it: full-width forms as ASCII (IIS's
/// "best fit"), `\` as `/`, cut at a `?` or `#` (servers that decode the whole target
/// before splitting off the query), each segment cut at its first `;` (servlet
/// containers), trailing dots, spaces and `+` dropped (Windows file names, `+` read as
/// a space), dot segments resolved and empty segments merged.
///
/// A plain path, which none of that changes but for a trailing `/` (see
/// [`reads_plainly`]), is returned borrowed.
fn loosely(path: &str) -> Cow<'_, str> {
    if reads_plainly(path) {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        return Cow::Borrowed(if trimmed.is_empty() { "/" } else { trimmed });
    }
    Cow::Owned(loosely_in_full(path))
}

/// [`loosely`], step by step.
fn loosely_in_full(path: &str) -> String {
    let folded: String = path
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .map(|c| if c == '\\' { '/' } else { c })
        .take_while(|c| !matches!(c, '?' | '#'))
        .collect();
    let mut segments: Vec<&str> = Vec::new();
    for segment in folded.split('/') {
        let name = segment.split(';').next().unwrap_or_default();
        match name {
            "." => {}
            ".." => {
                segments.pop();
            }
            _ => {
                let name = name.trim_end_matches(['.', ' ', '+']);
                if !name.is_empty() {
                    segments.push(name);
                }
            }
        }
    }
    format!("/{}", segments.join("/"))
}

/// Whether [`loosely`] reads `path` as itself without its trailing `/`: it starts with
/// `/`, is ASCII, has no empty segment but a trailing one, none of `\ ? # ;`, space
/// or `+`, and no `.` at the end of a segment (which also rules out dot segments).
fn reads_plainly(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && !path.contains("//")
        && bytes.iter().enumerate().all(|(i, &byte)| match byte {
            b'\\' | b'?' | b'#' | b';' | b' ' | b'+' => false,
            b'.' => bytes.get(i + 1).is_some_and(|&next| next != b'/'),
            _ => byte.is_ascii(),
        })
}

/// Percent-decodes what decodes, keeping anything else as it is.
fn decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| Some((hex(*bytes.get(i + 1)?)?, hex(*bytes.get(i + 2)?)?)))
            .flatten();
        match escaped {
            Some((high, low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// The other characters RFC 3986 allows raw in a path (`sub-delims`, `:`, `@`, `/`).
/// They keep their form: decoding or encoding them could change their meaning.
fn is_reserved_in_path(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
            | b':'
            | b'@'
            | b'/'
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Cases per property; docs/BENCHMARKS.md, "Property-test budgets", lists them.
    const CASES: u32 = 2000;

    fn normal(raw: &str) -> Result<String, PathError> {
        NormalisedPath::parse(raw.as_bytes()).map(|p| p.as_str().to_owned())
    }

    /// Percent-decodes strictly; `None` on a malformed escape.
    fn decode(bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            if byte == b'%' {
                let high = hex(*bytes.get(i + 1)?)?;
                let low = hex(*bytes.get(i + 2)?)?;
                out.push(high << 4 | low);
                i += 3;
            } else {
                out.push(byte);
                i += 1;
            }
        }
        Some(out)
    }

    /// Pieces of paths that exercise every rule, mixed with arbitrary bytes.
    pub(crate) fn path_piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            6 => prop::sample::select(vec![
                "/", "/", "/", "api", "admin", "API", "Admin", "public", "%61", "%41", "%2F",
                "%2f", "%5C", "%5c", "\\", ".", "..", "%2e", "%2E", ";", ";x=1", "%3B", "%3b",
                "%25", "%2561", "%", "%4", "%zz", "%00", "%0a", "%7F", "%C3%A9", "é", "%FF",
                "%C0%AF", "%7e", "%7E", "~", "-", "_", "%20", " ", "\"", "{", "|", "+", "@",
                ":", "%3A", "%e2%84%aa", "\u{212A}", "\u{FF0F}", "%ef%bc%8f", "\u{FF0E}",
                "\u{17F}", "%c2%85", "?", "#", "%3F", "%23", "%ef%bc%bc",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
            1 => prop::collection::vec(any::<u8>(), 1..3),
        ]
    }

    pub(crate) fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(path_piece(), 0..12).prop_map(|pieces| {
            let mut path = b"/".to_vec();
            path.extend(pieces.concat());
            path
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(CASES))]

        #[test]
        fn a_path_parses_as_it_does_a_byte_at_a_time(raw in path_bytes()) {
            prop_assert_eq!(NormalisedPath::parse(&raw), NormalisedPath::parse_each_byte(&raw));
        }

        #[test]
        fn a_plain_path_reads_loosely_as_in_full(path in "/[a-zA-Z0-9./;+ ?#\\\\~_%-]{0,24}") {
            if reads_plainly(&path) {
                prop_assert_eq!(loosely(&path), loosely_in_full(&path));
            }
        }

        #[test]
        fn normalisation_never_panics_on_any_bytes(raw in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = NormalisedPath::parse(&raw);
        }

        #[test]
        fn normalisation_is_idempotent(raw in path_bytes()) {
            if let Ok(once) = NormalisedPath::parse(&raw) {
                let twice = NormalisedPath::parse(once.as_str().as_bytes());
                prop_assert_eq!(twice.as_ref(), Ok(&once));
            }
        }

        #[test]
        fn an_accepted_path_has_no_ambiguous_form_and_decodes_as_sent(raw in path_bytes()) {
            if let Ok(path) = NormalisedPath::parse(&raw) {
                let text = path.as_str();
                prop_assert!(text.starts_with('/'));
                prop_assert!(text.is_ascii());
                prop_assert!(!text.contains("//") && !text.contains('\\'));
                let bytes = text.as_bytes();
                for (i, _) in text.match_indices('%') {
                    let escape = &bytes[i + 1..i + 3];
                    prop_assert!(escape.iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
                    let value = u8::from_str_radix(std::str::from_utf8(escape).unwrap(), 16).unwrap();
                    prop_assert!(!is_unreserved(value), "{text}");
                    prop_assert!(!matches!(value, b'/' | b'\\') && !value.is_ascii_control());
                }
                let decoded = decode(text.as_bytes()).unwrap();
                let decoded = String::from_utf8(decoded).expect("accepted paths decode to UTF-8");
                prop_assert_eq!(&decoded, path.decoded());
                prop_assert!(!decoded.chars().any(char::is_control));
                for segment in decoded.split('/').skip(1) {
                    let name = segment.split(';').next().unwrap();
                    prop_assert!(name != "." && name != "..", "{text}");
                }
                prop_assert_eq!(Some(decoded.into_bytes()), decode(&raw));
            }
        }
    }

    // The corpus: inputs from the outside review and from the properties above.

    #[test]
    fn encoded_unreserved_characters_are_decoded_and_other_escapes_upper_cased() {
        assert_eq!(normal("/api/%61dmin/users").unwrap(), "/api/admin/users");
        assert_eq!(normal("/api/%41DMIN").unwrap(), "/api/ADMIN");
        assert_eq!(normal("/api/%7euser").unwrap(), "/api/~user");
        assert_eq!(normal("/api/%7Euser").unwrap(), "/api/~user");
        assert_eq!(normal("/a/%c3%a9t%C3%A9").unwrap(), "/a/%C3%A9t%C3%A9");
        assert_eq!(normal("/a/%3a%40%2b").unwrap(), "/a/%3A%40%2B");
        assert_eq!(
            normal("/a:b@c+d,e=f!$&'()*").unwrap(),
            "/a:b@c+d,e=f!$&'()*"
        );
    }

    #[test]
    fn characters_a_path_may_not_hold_raw_are_percent_encoded() {
        assert_eq!(normal("/a/é").unwrap(), "/a/%C3%A9");
        assert_eq!(normal("/a/{\"x\"|y}").unwrap(), "/a/%7B%22x%22%7Cy%7D");
        assert_eq!(normal("/a b").unwrap(), "/a%20b");
        assert_eq!(normal("/a?b#c").unwrap(), "/a%3Fb%23c");
    }

    #[test]
    fn separators_escapes_and_controls_that_upstreams_read_differently_are_refused() {
        let cases = [
            ("/api%2Fadmin", PathError::Separator),
            ("/api%2fadmin", PathError::Separator),
            ("/api%5Cadmin", PathError::Separator),
            ("/api%5cadmin", PathError::Separator),
            ("/api\\admin", PathError::Separator),
            ("/api/%", PathError::MalformedEscape),
            ("/api/%4", PathError::MalformedEscape),
            ("/api/%zz", PathError::MalformedEscape),
            ("/api/%u0061dmin", PathError::MalformedEscape),
            ("/api/%00", PathError::Control),
            ("/api/%0a", PathError::Control),
            ("/api/%0D%0AX-Injected:%201", PathError::Control),
            ("/api/%7F", PathError::Control),
            ("/api/%C2%85", PathError::Control),
            ("/api/\tadmin", PathError::Control),
            ("/api/%FF", PathError::NotUtf8),
            ("/api/%C0%AF", PathError::NotUtf8),
            ("/api/%C3", PathError::NotUtf8),
            ("api/admin", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
        ];
        for (raw, error) in cases {
            assert_eq!(normal(raw), Err(error), "{raw}");
        }
        assert_eq!(
            NormalisedPath::parse(b"/api/\xC3\x28"),
            Err(PathError::NotUtf8)
        );
    }

    #[test]
    fn empty_and_dot_segments_are_refused_in_every_spelling() {
        for raw in [
            "//api/admin",
            "/api//admin",
            "/public/;x/admin",
            "/public/../api/admin",
            "/public/./api",
            "/public/%2e%2e/api",
            "/public/%2E%2e/api",
            "/public/.%2E/api",
            "/public/%2e/api",
            "/public/..;/api/admin",
            "/public/..;x=1/api",
            "/public/.;x/api",
            "/api/admin/..",
            "/.",
        ] {
            let error = normal(raw).unwrap_err();
            assert!(
                matches!(error, PathError::DotSegment | PathError::EmptySegment),
                "{raw}: {error:?}"
            );
        }
        for raw in [
            "/",
            "/a/",
            "/a/b.c",
            "/a/..b",
            "/a/.well-known",
            "/a/...",
            "/a;x/",
        ] {
            assert!(normal(raw).is_ok(), "{raw}");
        }
    }

    #[test]
    fn the_readings_cover_parameters_case_trailing_dots_full_width_and_double_decoding() {
        let readings = |raw: &str| {
            let path = NormalisedPath::parse(raw.as_bytes()).unwrap();
            path.readings().map(Cow::into_owned).collect::<Vec<_>>()
        };
        assert!(readings("/api;x=1/admin").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/admin;jsessionid=1").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/admin.").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/admin%20").contains(&"/api/admin".to_owned()));
        assert!(readings("/api%EF%BC%8Fadmin").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/x%EF%BC%BC..%EF%BC%BCadmin").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/admin%3F/x").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/admin%23x").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/admin+").contains(&"/api/admin".to_owned()));
        assert!(readings("/api/%2561dmin").contains(&"/api/admin".to_owned()));
        assert!(readings("/public/%252e%252e/api/admin").contains(&"/api/admin".to_owned()));
        assert!(readings("/public/a%255c..%255capi").contains(&"/public/api".to_owned()));
        let plain = NormalisedPath::parse(b"/api/reports").unwrap();
        assert!(!plain.has_parameters_or_escaped_percent());
        assert!(plain.readings().all(|r| r == "/api/reports"));
        // The common case costs no allocation.
        assert!(matches!(
            loosely("/api/reports/"),
            Cow::Borrowed("/api/reports")
        ));
        assert!(matches!(loosely("/"), Cow::Borrowed("/")));
        assert!(matches!(
            loosely("/api/v1.2/x"),
            Cow::Borrowed("/api/v1.2/x")
        ));
    }
}
