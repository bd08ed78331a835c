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
/// came (`None` for a value that is not text).
pub fn bearer<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<&'a str, BearerError> {
    match credential(values)? {
        (Scheme::Bearer, token) => Ok(token),
        (Scheme::Dpop, _) => Err(BearerError::Missing),
    }
}

/// The scheme and credential of the `Authorization` header values `values`, read as
/// [`bearer`] reads them, with `DPoP` (in any case) accepted beside `Bearer`.
pub fn credential<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<(Scheme, &'a str), BearerError> {
    let mut values = values.into_iter();
    let Some(value) = values.next() else {
        return Err(BearerError::Missing);
    };
    if values.next().is_some() {
        return Err(BearerError::Malformed);
    }
    let value = value.ok_or(BearerError::Malformed)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> Result<&str, BearerError> {
        bearer([Some(value)])
    }

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
        assert_eq!(bearer([None]), Err(BearerError::Malformed));
    }

    #[test]
    fn dpop_is_a_scheme_of_its_own_that_bearer_does_not_read() {
        assert_eq!(credential([Some("DPoP abc")]), Ok((Scheme::Dpop, "abc")));
        assert_eq!(credential([Some("dpop  abc")]), Ok((Scheme::Dpop, "abc")));
        assert_eq!(
            credential([Some("Bearer abc")]),
            Ok((Scheme::Bearer, "abc"))
        );
        assert_eq!(one("DPoP abc"), Err(BearerError::Missing));
        assert_eq!(credential([Some("DPoP")]), Err(BearerError::Malformed));
    }

    #[test]
    fn two_headers_are_malformed_even_when_both_are_good() {
        let twice = [Some("Bearer abc"), Some("Bearer abc")];
        assert_eq!(bearer(twice), Err(BearerError::Malformed));
        assert_eq!(
            bearer([Some("Bearer abc"), Some("Basic x")]),
            Err(BearerError::Malformed)
        );
    }
}
