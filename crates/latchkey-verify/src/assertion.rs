//! JWTs that other parties sign and latchkey receives: a CI platform's ID token at the
//! JWT-bearer grant (RFC 7523 §2.1) and a client's `private_key_jwt` assertion
//! (RFC 7523 §2.2). The server uses this module so that both get the same hardening as
//! access tokens (RFC 8725), from the same code.
//!
//! Policy: a size limit before any decoding; exactly three segments of strict base64url;
//! a header that is a JSON object with distinct members, names no key of its own
//! (`jku`, `x5u`, `x5c`, `jwk`), has no `crit`, and an asymmetric `alg` (EdDSA, ES256,
//! RS256 — never `none` or HMAC); a `typ`, when present, that is not one of latchkey's
//! own token types (an access token or a DPoP proof is not an assertion). The key comes
//! from the issuer's JWKS by `kid`, or is the one key a client registered; its own
//! algorithm must equal the header's. Only then are the claims read: `iss` exactly,
//! `aud` among the accepted audiences, `exp` required and `nbf`/`iat` checked with a
//! small leeway, `sub` and `jti` strings. Nothing here fetches anything.

use crate::error::InvalidReason;
use crate::json::{JsonError, parse_object};
use crate::jwk::{self, KeySet, VerifyingKey};
use crate::jwt::{Segments, numeric_date, split};
use latchkey_core::Timestamp;
use latchkey_core::jwt::{Algorithm, b64url_decode};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest assertion read; longer ones are refused before decoding.
pub const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// The longest `sub` accepted: it is carried into access tokens and upstream headers.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// The longest `jti` accepted: replay guards keep it, keyed, until the assertion expires.
pub const MAX_JTI_LEN: usize = 256;

/// The algorithms an assertion may use: asymmetric only.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// Header members that would let a token name or carry its own key, or belong to JWE.
const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "x5u", "x5c", "jwk", "enc", "zip"];

/// `typ` values of latchkey's own tokens, which are never assertions.
const FOREIGN_TYPES: [&str; 2] = ["at+jwt", "dpop+jwt"];

/// JWK members that hold private or symmetric key material (RFC 7518 §6.2.2, §6.3.2,
/// §6.4.1; RFC 8037 §2): a key with any of them was meant to stay with its owner.
pub const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public key set (RFC 7517) of an outside issuer, parsed once.
#[derive(Debug, Default)]
pub struct JwkSet {
    keys: KeySet,
}

impl JwkSet {
    /// Parses a JWK Set document, keeping the signing keys of the asymmetric algorithms
    /// (others are skipped, not fatal).
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        Ok(Self {
            keys: jwk::parse_jwks(bytes, &ALGORITHMS)?,
        })
    }

    /// The key published under `kid`.
    pub fn get(&self, kid: &str) -> Option<PublicKey> {
        self.keys.get(kid).map(PublicKey)
    }

    /// How many keys are usable.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }
}

/// One public key and the one algorithm it verifies.
#[derive(Debug, Clone)]
pub struct PublicKey(Arc<VerifyingKey>);

impl PublicKey {
    /// Parses one public JWK (an OKP Ed25519, EC P-256 or RSA ≥ 2048-bit key). A JWK
    /// holding private material (`d`, `p`, `q`, …) is refused: it was meant to stay
    /// with its owner.
    pub fn from_jwk(json: &[u8]) -> Result<Self, String> {
        let object = parse_object(json).map_err(|_| "not a JSON object".to_owned())?;
        Self::from_jwk_object(&object)
    }

    /// [`PublicKey::from_jwk`] of a JWK already read as a JSON object.
    pub fn from_jwk_object(object: &Map<String, Value>) -> Result<Self, String> {
        if PRIVATE_JWK_MEMBERS.iter().any(|m| object.contains_key(*m)) {
            return Err("holds private key material; send only the public key".to_owned());
        }
        jwk::parse_jwk(object, &ALGORITHMS)
            .map(|key| Self(Arc::new(key)))
            .map_err(str::to_owned)
    }

    /// The key's algorithm.
    pub fn alg(&self) -> Algorithm {
        self.0.alg()
    }
}

/// A parsed, not yet verified, assertion: its header is acceptable.
#[derive(Debug, Clone)]
pub struct Assertion<'a> {
    segments: Segments<'a>,
    alg: Algorithm,
    kid: Option<String>,
}

/// Parses `token` and checks its header.
pub fn parse(token: &str) -> Result<Assertion<'_>, InvalidReason> {
    if token.len() > MAX_ASSERTION_BYTES {
        return Err(InvalidReason::TooLarge);
    }
    let segments = split(token)?;
    let header = decode_object(segments.header)?;
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|n| header.contains_key(**n)) {
        return Err(InvalidReason::ForbiddenHeader(name));
    }
    if header.contains_key("crit") {
        return Err(InvalidReason::CriticalExtension);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::parse)
        .filter(|alg| ALGORITHMS.contains(alg))
        .ok_or(InvalidReason::AlgorithmNotAllowed)?;
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) => {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if FOREIGN_TYPES.iter().any(|t| typ.eq_ignore_ascii_case(t)) {
                return Err(InvalidReason::WrongType);
            }
        }
        Some(_) => return Err(InvalidReason::WrongType),
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) if !kid.is_empty() && kid.len() <= jwk::MAX_KID_LEN => {
            Some(kid.clone())
        }
        Some(_) => return Err(InvalidReason::MissingKid),
    };
    // The payload and signature must be strict base64url before any key is looked up.
    b64url_decode(segments.payload).ok_or(InvalidReason::BadEncoding)?;
    b64url_decode(segments.signature).ok_or(InvalidReason::BadEncoding)?;
    Ok(Assertion { segments, alg, kid })
}

impl Assertion<'_> {
    /// The header's `alg`.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The header's `kid`, when it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies the signature with `key`, whose algorithm must be the header's, and
    /// returns the claims: a JSON object with distinct members whose registered claims
    /// have their registered types.
    pub fn verify(&self, key: &PublicKey) -> Result<Map<String, Value>, InvalidReason> {
        if key.alg() != self.alg {
            return Err(InvalidReason::AlgorithmMismatch);
        }
        let signature = b64url_decode(self.segments.signature).ok_or(InvalidReason::BadEncoding)?;
        if !key
            .0
            .verify(self.segments.signing_input.as_bytes(), &signature)
        {
            return Err(InvalidReason::BadSignature);
        }
        let claims = decode_object(self.segments.payload)?;
        for name in ["iss", "sub", "jti"] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(InvalidReason::ClaimType(name));
            }
        }
        for name in ["exp", "nbf", "iat"] {
            if claims.get(name).is_some_and(|v| !v.is_number()) {
                return Err(InvalidReason::ClaimType(name));
            }
        }
        Ok(claims)
    }
}

/// What a verified assertion's claims must match.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `iss`, exactly.
    pub issuer: &'a str,
    /// `aud` must be, or contain, one of these.
    pub audiences: &'a [&'a str],
    /// Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_seconds: i64,
    /// The longest `exp - now` accepted, so a replay guard need not remember forever;
    /// `None` for no limit.
    pub max_lifetime_seconds: Option<i64>,
}

/// The registered claims of an assertion that passed [`check_claims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// `sub`.
    pub subject: String,
    /// `jti`, when present.
    pub jti: Option<String>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Checks `iss`, `aud`, `exp` (required), `nbf` and `iat` of verified claims at `now`.
pub fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expect<'_>,
    now: Timestamp,
) -> Result<Checked, InvalidReason> {
    let now = now.unix_seconds();
    if claims.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err(InvalidReason::WrongIssuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(one)) => expect.audiences.contains(&one.as_str()),
        Some(Value::Array(many)) if many.iter().all(Value::is_string) => many
            .iter()
            .filter_map(Value::as_str)
            .any(|a| expect.audiences.contains(&a)),
        None => return Err(InvalidReason::MissingClaim("aud")),
        Some(_) => return Err(InvalidReason::ClaimType("aud")),
    };
    if !audience_ok {
        return Err(InvalidReason::WrongAudience);
    }
    let exp = claims
        .get("exp")
        .map(numeric_date)
        .ok_or(InvalidReason::MissingClaim("exp"))?;
    if now >= exp.saturating_add(expect.leeway_seconds) {
        return Err(InvalidReason::Expired);
    }
    if let Some(max) = expect.max_lifetime_seconds
        && exp.saturating_sub(now) > max
    {
        return Err(InvalidReason::InvalidClaim("exp"));
    }
    if claims
        .get("nbf")
        .map(numeric_date)
        .is_some_and(|nbf| nbf > now.saturating_add(expect.leeway_seconds))
    {
        return Err(InvalidReason::NotYetValid);
    }
    if claims
        .get("iat")
        .map(numeric_date)
        .is_some_and(|iat| iat > now.saturating_add(expect.leeway_seconds))
    {
        return Err(InvalidReason::IssuedInFuture);
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(InvalidReason::MissingClaim("sub"))?
        .to_owned();
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(InvalidReason::InvalidClaim("sub"));
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .map(str::to_owned);
    if jti.as_ref().is_some_and(|j| j.len() > MAX_JTI_LEN) {
        return Err(InvalidReason::InvalidClaim("jti"));
    }
    Ok(Checked {
        subject,
        jti,
        expires_at: exp,
    })
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, InvalidReason> {
    let bytes = b64url_decode(segment).ok_or(InvalidReason::BadEncoding)?;
    parse_object(&bytes).map_err(|e| match e {
        JsonError::DuplicateMember => InvalidReason::DuplicateMember,
        JsonError::Malformed => InvalidReason::Malformed,
    })
}
