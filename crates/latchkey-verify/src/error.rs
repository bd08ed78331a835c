//! The verifier's errors and the one place that maps them to HTTP.
//!
//! Policy: a rejected credential is the client's fault and follows RFC 6750 §3 — a
//! missing token is a 401 with a bare `Bearer` challenge, a bad one a 401 with
//! `error="invalid_token"`, a missing scope a 403 with `error="insufficient_scope"` and
//! the scope needed, a malformed `Authorization` header a 400 with
//! `error="invalid_request"`. The precise [`InvalidReason`] is for logs and tests only:
//! it never reaches the client, because telling an attacker which check failed helps them
//! and helps no honest caller. When the verifier cannot decide (introspection or the
//! deny list is unreachable or stale) it fails closed with a 503, which is our fault,
//! not the client's. A DPoP-bound token's refusals follow RFC 9449 §7.1 instead: a 401
//! with a `DPoP` challenge naming `error="invalid_token"` or `"invalid_dpop_proof"` and
//! the proof algorithms accepted.

use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::response::IntoResponse;

/// Why a presented token was not accepted. Stable: tests and logs match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The token may only be used from other addresses (its IP allowlist).
    #[error("the token is not allowed from this address")]
    AddressNotAllowed,
    /// The token has an IP allowlist and the verifier was not told the client's
    /// address, so the allowlist cannot be enforced.
    #[error("the token has an IP allowlist and the client address is unknown")]
    AddressUnknown,
    /// The token's tenant does not allow the client's network (docs/API.md, "Where
    /// tokens may be used from"). Said as the allowlist's refusal is, so the client does
    /// not learn which rule matched.
    #[error("the token is not allowed from this address")]
    NetworkNotAllowed,
    /// A personal token whose user is no longer a member of its tenant.
    #[error("the token's user has left its tenant")]
    UserLeft,
    /// Longer than the configured maximum; refused before any decoding.
    #[error("token exceeds the size limit")]
    TooLarge,
    /// Not three dot-separated segments, or not JSON objects where objects belong.
    #[error("malformed token")]
    Malformed,
    /// A segment is not strict base64url (padding, `+`, `/`, white space,
    /// non-canonical trailing bits).
    #[error("segment is not strict base64url")]
    BadEncoding,
    /// A JSON object repeats a member name.
    #[error("duplicate JSON member name")]
    DuplicateMember,
    /// `alg` is not one the verifier allows (`none`, `HS256`, …).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// `alg` differs from the algorithm of the key named by `kid`.
    #[error("algorithm does not match the key")]
    AlgorithmMismatch,
    /// A header that would make the verifier fetch or trust a key named by the token
    /// itself (`jku`, `x5u`, `x5c`, `jwk`), or a JWE-only header.
    #[error("forbidden header parameter `{0}`")]
    ForbiddenHeader(&'static str),
    /// A `crit` header: latchkey understands no extensions, so any is unknown.
    #[error("critical header extension not understood")]
    CriticalExtension,
    /// `typ` is not `at+jwt`.
    #[error("wrong token type")]
    WrongType,
    /// No usable `kid`.
    #[error("missing key id")]
    MissingKid,
    /// `kid` is not in the issuer's key set, even after a permitted refetch.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `iss` is not exactly the issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future")]
    IssuedInFuture,
    /// A claim has the wrong JSON type (`exp` as a string, `sub` as a number, …).
    #[error("claim `{0}` has the wrong type")]
    ClaimType(&'static str),
    /// A required claim is absent.
    #[error("claim `{0}` is missing")]
    MissingClaim(&'static str),
    /// A claim has the right type but a value latchkey never issues.
    #[error("claim `{0}` is invalid")]
    InvalidClaim(&'static str),
    /// Not a JWT and not a well-formed api key (bad prefix, length or checksum).
    #[error("malformed api key")]
    MalformedApiKey,
    /// The token or its token id is on the deny list.
    #[error("token revoked")]
    Revoked,
    /// Introspection says the token is not active (unknown, expired or revoked).
    #[error("token not active")]
    Inactive,
    /// The token needs introspection and this verifier has no introspection credential.
    #[error("this verifier accepts no api keys or long-lived JWTs")]
    IntrospectionNotConfigured,
    /// A DPoP-bound token (`cnf.jkt`) presented as a bearer token, or where the request
    /// it came with is not known, so no proof can be checked.
    #[error("the token is bound to a DPoP key and needs a proof")]
    DpopBound,
    /// A token that is not DPoP-bound presented with the `DPoP` scheme.
    #[error("the token is not bound to a DPoP key")]
    NotDpopBound,
    /// `cnf` is not an object with a string `jkt`.
    #[error("the token's cnf claim is not a DPoP key binding")]
    BadConfirmation,
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No bearer token was presented (401, bare `Bearer` challenge).
    #[error("no bearer token")]
    MissingToken,
    /// The `Authorization` header is malformed or repeated (400, `invalid_request`).
    #[error("malformed authorization header")]
    InvalidRequest,
    /// The token was refused (401, `invalid_token`).
    #[error("invalid token: {0}")]
    InvalidToken(InvalidReason),
    /// The token is valid but lacks the scope the route needs (403,
    /// `insufficient_scope`).
    #[error("insufficient scope, needs `{scope}`")]
    InsufficientScope {
        /// The scope the route needs, space-separated, as sent in the challenge.
        scope: String,
    },
    /// The verifier could not reach a decision (introspection or the deny list is
    /// unreachable or stale) and fails closed (503).
    #[error("verifier unavailable: {0}")]
    Unavailable(String),
    /// A token presented with the `DPoP` scheme, or bound to a DPoP key, was refused
    /// (401, `DPoP error="invalid_token"`).
    #[error("invalid DPoP token: {0}")]
    InvalidDpopToken(InvalidReason),
    /// The DPoP proof of a bound token is missing or invalid (401,
    /// `DPoP error="invalid_dpop_proof"`; RFC 9449 §7.1).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(crate::dpop::ProofError),
}

impl From<InvalidReason> for VerifyError {
    fn from(reason: InvalidReason) -> Self {
        Self::InvalidToken(reason)
    }
}

impl VerifyError {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::InvalidToken(_)
            | Self::InvalidDpopToken(_)
            | Self::InvalidDpopProof(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The RFC 6750 `WWW-Authenticate` challenge, when the status calls for one.
    pub fn www_authenticate(&self) -> Option<HeaderValue> {
        match self {
            Self::MissingToken => Some(HeaderValue::from_static("Bearer")),
            Self::InvalidRequest => {
                Some(HeaderValue::from_static("Bearer error=\"invalid_request\""))
            }
            Self::InvalidToken(_) => {
                Some(HeaderValue::from_static("Bearer error=\"invalid_token\""))
            }
            Self::InsufficientScope { scope } => {
                // The scope comes from the route's own configuration, but a quote or a
                // control character would still break the quoted-string, so drop them.
                let safe: String = scope
                    .chars()
                    .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
                    .collect();
                HeaderValue::from_str(&format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{safe}\""
                ))
                .ok()
            }
            Self::InvalidDpopToken(_) => Some(HeaderValue::from_static(concat!(
                "DPoP error=\"invalid_token\", algs=\"",
                "ES256 EdDSA RS256",
                "\""
            ))),
            Self::InvalidDpopProof(_) => Some(HeaderValue::from_static(concat!(
                "DPoP error=\"invalid_dpop_proof\", algs=\"",
                "ES256 EdDSA RS256",
                "\""
            ))),
            Self::Unavailable(_) => None,
        }
    }

    /// The complete response: status, challenge, `Cache-Control: no-store`, empty body.
    ///
    /// Generic over the body so the tower layer can answer for any inner service.
    pub fn to_response<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        if let Some(challenge) = self.www_authenticate() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl IntoResponse for VerifyError {
    fn into_response(self) -> axum::response::Response {
        self.to_response()
    }
}

/// Why [`Verifier::discover`](crate::Verifier::discover) or a key refresh failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The issuer or connect URL is not an absolute `http://` or `https://` URL
    /// naming a host, without query, fragment or user information.
    #[error("bad issuer URL: {0}")]
    BadIssuer(String),
    /// A plain `http://` address beyond loopback, without `allow_insecure_issuer`.
    #[error(
        "{setting} `{url}` is plain http:// beyond loopback: use https://, or set allow_insecure_issuer to accept it unprotected"
    )]
    InsecureIssuer {
        /// The setting the address came from (`issuer`, `connect`, or the metadata).
        setting: String,
        /// The address refused.
        url: String,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    BadOption(String),
    /// The request failed, timed out or was answered with a non-200 status.
    #[error("fetching {url}: {detail}")]
    Http {
        /// What was fetched.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// The document is not the JSON expected.
    #[error("{url} is not a valid document: {detail}")]
    Document {
        /// What was fetched.
        url: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The metadata names an issuer other than the one asked for (RFC 8414 §3.3).
    #[error(
        "metadata issuer `{found}` differs from the configured issuer `{expected}`: set issuer to the server's public URL (its --public-url) and connect to the address to reach it at"
    )]
    IssuerMismatch {
        /// The issuer asked for.
        expected: String,
        /// The issuer the metadata claims.
        found: String,
    },
    /// The JWKS holds no key this verifier can use.
    #[error("the JWKS holds no usable signing key")]
    NoUsableKeys,
}
