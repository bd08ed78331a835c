//! The bearer credential of a request (RFC 6750 §2.1), read strictly: the one parser
//! the server's management API and introspection, latchkey-verify and the gateway use.
//!
//! Policy: exactly one `Authorization` header, scheme `Bearer` in any case, one or
//! more spaces, then a credential with no space in it. A request with no header, or
//! with another scheme (`Basic`), carries no bearer credential; anything else that
//! names the scheme but is not that shape is malformed, never read in part: two
//! headers would let a proxy that reads one and a server that reads the other
//! disagree on who is calling.

/// Why a request carries no usable bearer credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// No `Authorization` header, or one with another scheme.
    Missing,
    /// A repeated header, a value that is not text, or no credential or one with a
    /// space after the scheme.
    Malformed,
}

/// How an access token was presented: RFC 6750's `Bearer`, or RFC 9449's `DPoP` (a
/// token bound to a key, with a proof of that key beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer …`.
    Bearer,
    /// `Authorization: DPoP …`.
    Dpop,
}

/// The credential of the `Authorization` header values `values`, in the order they
/// came, as raw bytes.
pub fn bearer<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<&'a str, BearerError> {
    match credential(values)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(BearerError::Missing),
    }
}

/// The scheme and credential of the `Authorization` header values `values` (raw bytes,
/// as HTTP delivers them), read as [`bearer`] reads them, with `DPoP` (in any case)
/// accepted beside `Bearer`. A value that is not text (visible ASCII, space or tab) is
/// malformed. The credential's bytes are checked in one pass that the compiler
/// vectorises, rather than checked as text and then searched for a space: this runs on
/// every request the gateway and the verifier see.
pub fn credential<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Scheme, &'a str), BearerError> {
    let value = only(values)?;
    let split = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(split);
    let scheme = if scheme.eq_ignore_ascii_case(b"bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        Scheme::Dpop
    } else if value.iter().all(|&b| is_text(b)) {
        return Err(BearerError::Missing);
    } else {
        return Err(BearerError::Malformed);
    };
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[start..];
    // Non-short-circuiting, so that it compiles to vector compares.
    let visible = token.iter().fold(true, |all, &b| {
        all & ((b.wrapping_sub(0x21) < 0x5e) | (b == b'\t'))
    });
    if token.is_empty() || !visible {
        return Err(BearerError::Malformed);
    }
    // ASCII by now, so this cannot fail.
    let token = std::str::from_utf8(token).map_err(|_| BearerError::Malformed)?;
    Ok((scheme, token))
}

/// The one `Authorization` value: none is missing, two are malformed.
fn only<T>(values: impl IntoIterator<Item = T>) -> Result<T, BearerError> {
    let mut values = values.into_iter();
    let value = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Malformed);
    }
    Ok(value)
}

/// A byte a header value may hold as text: what `HeaderValue::to_str` accepts.
fn is_text(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == b'\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Result<&str, BearerError> {
        bearer([value.as_bytes()])
    }

    /// The credential of header values given as text.
    fn credential_of(values: &[&'static str]) -> Result<(Scheme, &'static str), BearerError> {
        credential(values.iter().map(|value| value.as_bytes()))
    }

    /// A value `HeaderValue::to_str` refuses: not text.
    const NOT_TEXT: &[u8] = b"Bearer caf\xc3\xa9";

    #[test]
    fn a_bearer_credential_is_read_whatever_the_scheme_case() {
        assert_eq!(one("Bearer abc"), Ok("abc"));
        assert_eq!(one("bearer abc"), Ok("abc"));
        assert_eq!(one("BEARER  abc"), Ok("abc"));
    }

    #[test]
    fn no_header_or_another_scheme_is_missing() {
        assert_eq!(bearer([]), Err(BearerError::Missing));
        assert_eq!(one("Basic YTpi"), Err(BearerError::Missing));
        assert_eq!(one("Bearerabc"), Err(BearerError::Missing));
    }

    #[test]
    fn a_bearer_header_of_any_other_shape_is_malformed() {
        for value in [
            "Bearer",
            "Bearer ",
            "Bearer   ",
            "Bearer a b",
            "Bearer abc ",
        ] {
            assert_eq!(one(value), Err(BearerError::Malformed), "{value:?}");
        }
        assert_eq!(bearer([NOT_TEXT]), Err(BearerError::Malformed));
    }

    #[test]
    fn dpop_is_a_scheme_of_its_own_that_bearer_does_not_read() {
        assert_eq!(credential_of(&["DPoP abc"]), Ok((Scheme::Dpop, "abc")));
        assert_eq!(credential_of(&["dpop  abc"]), Ok((Scheme::Dpop, "abc")));
        assert_eq!(credential_of(&["Bearer abc"]), Ok((Scheme::Bearer, "abc")));
        assert_eq!(one("DPoP abc"), Err(BearerError::Missing));
        assert_eq!(credential_of(&["DPoP"]), Err(BearerError::Malformed));
    }

    #[test]
    fn two_headers_are_malformed_even_when_both_are_good() {
        assert_eq!(
            credential_of(&["Bearer abc", "Bearer abc"]),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            credential_of(&["Bearer abc", "Basic x"]),
            Err(BearerError::Malformed)
        );
        assert_eq!(
            bearer([b"Bearer abc".as_slice(), NOT_TEXT]),
            Err(BearerError::Malformed)
        );
    }

    mod bytes_and_text {
        use super::super::*;
        use proptest::prelude::*;

        /// The module policy read plainly, over text, as `HeaderValue::to_str` gives it
        /// (`None`: not text): the reference the byte parser must agree with.
        fn plainly<'a>(
            values: impl IntoIterator<Item = Option<&'a str>>,
        ) -> Result<(Scheme, &'a str), BearerError> {
            let value = only(values)?.ok_or(BearerError::Malformed)?;
            let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
            let scheme = if scheme.eq_ignore_ascii_case("bearer") {
                Scheme::Bearer
            } else if scheme.eq_ignore_ascii_case("dpop") {
                Scheme::Dpop
            } else {
                return Err(BearerError::Missing);
            };
            let credential = credential.trim_start_matches(' ');
            if credential.is_empty() || credential.contains(' ') {
                return Err(BearerError::Malformed);
            }
            Ok((scheme, credential))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn reading_the_bytes_answers_as_reading_the_text(
                values in prop::collection::vec(
                    prop_oneof![
                        "(Bearer|bearer|BEARER|DPoP|dpop|Basic|Bearerx|)( {0,3})[ -~\t]{0,12}",
                        "(Bearer|DPoP) {1,2}[A-Za-z0-9._-]{1,40}",
                        prop::collection::vec(any::<u8>(), 0..20)
                            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
                    ].prop_map(String::into_bytes),
                    0..3,
                ),
                raw in prop::collection::vec(any::<u8>(), 0..24),
            ) {
                let as_text = |value: &[u8]| {
                    std::str::from_utf8(value)
                        .ok()
                        .filter(|text| text.bytes().all(is_text))
                        .map(str::to_owned)
                };
                let mut all = values.clone();
                all.push([b"Bearer ".as_slice(), &raw].concat());
                for cut in 0..=all.len() {
                    let taken = &all[..cut];
                    let texts: Vec<Option<String>> = taken.iter().map(|v| as_text(v)).collect();
                    let expected = plainly(texts.iter().map(Option::as_deref));
                    let read = credential(taken.iter().map(Vec::as_slice));
                    prop_assert_eq!(read, expected, "{:?}", taken);
                }
            }
        }
    }
}
