//! DPoP proofs (RFC 9449): the checks a proof passes before a token request or a
//! resource request may rely on it, the RFC 7638 thumbprint that binds a token to the
//! proof's key, and the replay cache that lets each proof be used once.
//!
//! Policy (docs/MACHINES.md, "Binding tokens with DPoP"; docs/API.md, "DPoP"): a proof is a
//! compact JWS, at most [`MAX_PROOF_BYTES`], checked in this order — shape, strict
//! base64url, a header with distinct members, `typ` `dpop+jwt`, an asymmetric `alg`
//! (EdDSA, ES256, RS256; never `none` or HMAC), a `jwk` holding a public key only (a
//! private member such as `d` is refused, not ignored) whose type fits `alg`, no
//! `crit`, the signature by that key, then the claims: `jti`, `htm`, `htu` and `iat` of
//! the right JSON types, `htm` equal to the request's method, `htu` equal to the
//! request's URI once both are normalised (RFC 3986 §6.2.2–6.2.3; query and fragment
//! ignored, RFC 9449 §4.3), `iat` within the window either side of now and, when an
//! access token comes with the proof, `ath` equal to base64url(SHA-256(token)). The
//! replay check ([`ReplayCache`], or the server's store) comes last, so only a proof
//! that is otherwise good takes a place in it.

mod replay;
#[cfg(any(test, feature = "test-dpop"))]
pub mod testing;

pub use replay::{ReplayCache, Seen};

use crate::json::{JsonError, parse_object};
use crate::jwk::parse_jwk;
use aws_lc_rs::digest::{SHA256, digest};
use latchkey_core::Timestamp;
use latchkey_core::jwt::{Algorithm, b64url_decode, b64url_encode};
use serde_json::{Map, Value};

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The algorithms a proof may be signed with, as `algs` and
/// `dpop_signing_alg_values_supported` list them.
pub const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

/// [`ALGORITHMS`] as the space-separated `algs` of a `WWW-Authenticate: DPoP` challenge.
pub const ALGS: &str = "ES256 EdDSA RS256";

/// Proofs longer than this are refused before any decoding: a proof carries one public
/// key (an RSA-4096 `n` is 683 characters) and a signature.
pub const MAX_PROOF_BYTES: usize = 4096;

/// Longest accepted `jti`.
const MAX_JTI_BYTES: usize = 256;

/// Private-key members of a JWK (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2). A `jwk`
/// with any of them is refused: the client has leaked its key to us and to every log on
/// the way, and a server that ignored it would teach the client nothing.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused. Stable: tests and logs match on it; the client is only told
/// `invalid_dpop_proof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// No `DPoP` header where one is needed.
    #[error("no DPoP proof")]
    Missing,
    /// More than one `DPoP` header, or a value that is not text.
    #[error("more than one DPoP header, or one that is not text")]
    Repeated,
    /// Longer than [`MAX_PROOF_BYTES`].
    #[error("the proof exceeds the size limit")]
    TooLarge,
    /// Not a compact JWS of JSON objects.
    #[error("malformed proof")]
    Malformed,
    /// A segment is not strict base64url.
    #[error("a proof segment is not strict base64url")]
    BadEncoding,
    /// A JSON object repeats a member name.
    #[error("duplicate JSON member name in the proof")]
    DuplicateMember,
    /// `typ` is not `dpop+jwt`.
    #[error("the proof's typ is not dpop+jwt")]
    WrongType,
    /// `alg` is not an asymmetric algorithm this server accepts.
    #[error("the proof's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// A `crit` header, which names an extension not understood.
    #[error("critical header extension not understood")]
    CriticalExtension,
    /// No `jwk` header, or one that is not an object.
    #[error("the proof carries no jwk")]
    MissingKey,
    /// The `jwk` holds private-key material.
    #[error("the proof's jwk holds a private key")]
    PrivateKey,
    /// The `jwk` is not a usable public key, or its type does not fit `alg`.
    #[error("the proof's jwk is not a usable public key for its alg")]
    BadKey,
    /// The signature does not verify with the `jwk`.
    #[error("bad proof signature")]
    BadSignature,
    /// A required claim is absent.
    #[error("the proof's claim `{0}` is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an impossible value.
    #[error("the proof's claim `{0}` is invalid")]
    InvalidClaim(&'static str),
    /// `htm` is not the request's method.
    #[error("the proof is for another method")]
    WrongMethod,
    /// `htu` is not the request's URI.
    #[error("the proof is for another URI")]
    WrongUri,
    /// `iat` is older than the window.
    #[error("the proof is too old")]
    Stale,
    /// `iat` is further ahead than the window.
    #[error("the proof is issued in the future")]
    Future,
    /// `ath` is missing or is not the hash of the access token presented with it.
    #[error("the proof's ath does not match the access token")]
    WrongAccessTokenHash,
    /// The proof's key is not the one the token is bound to.
    #[error("the proof's key is not the token's")]
    KeyMismatch,
    /// This `jti` was seen already within the window.
    #[error("the proof was used before")]
    Replayed,
}

/// What a proof must match.
#[derive(Debug, Clone, Copy)]
pub struct ProofExpectations<'a> {
    /// The request's method, compared exactly (`POST`).
    pub method: &'a str,
    /// The request's absolute URI as the client addressed it; its query and fragment
    /// are ignored.
    pub uri: &'a str,
    /// The access token presented with the proof, whose hash `ath` must be; `None` at
    /// the token endpoint, where no token is presented yet.
    pub access_token: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
    /// How far `iat` may be from now, either way, in seconds.
    pub window_seconds: i64,
}

/// A proof that passed every check but the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The RFC 7638 SHA-256 thumbprint of its key, base64url: the `cnf.jkt` it binds.
    pub jkt: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`, seconds since the epoch.
    pub iat: i64,
}

impl CheckedProof {
    /// Until when (milliseconds since the epoch) its `jti` must be remembered: after
    /// that the window refuses the proof anyway.
    pub fn remember_until_ms(&self, window_seconds: i64) -> i64 {
        self.iat
            .saturating_add(window_seconds)
            .saturating_add(1)
            .saturating_mul(1000)
    }

    /// The replay key: a digest of the thumbprint and the `jti`, so one client's
    /// proofs never collide with another's and the cache holds fixed-size keys.
    pub fn replay_key(&self) -> [u8; 32] {
        let mut input = Vec::with_capacity(self.jkt.len() + 1 + self.jti.len());
        input.extend_from_slice(self.jkt.as_bytes());
        input.push(b'.');
        input.extend_from_slice(self.jti.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(digest(&SHA256, &input).as_ref());
        key
    }
}

/// The one `DPoP` header value of a request, from its values in order (`None` for a
/// value that is not text): `Ok(None)` without one, an error for two or more.
pub fn proof_header<'a>(
    values: impl IntoIterator<Item = Option<&'a str>>,
) -> Result<Option<&'a str>, ProofError> {
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ProofError::Repeated);
    }
    first.map(Some).ok_or(ProofError::Repeated)
}

/// `base64url(SHA-256(access_token))`, the `ath` a proof carries (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    b64url_encode(digest(&SHA256, access_token.as_bytes()).as_ref())
}

/// `uri` normalised for comparing `htu` (RFC 9449 §4.3): an absolute `http`/`https`
/// URL without user information, scheme and host in lower case, the default port
/// dropped, dot segments resolved, and no query or fragment. `None` for anything else.
pub fn normalise_htu(uri: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    Some(url.into())
}

/// Checks `proof` against `expect`; see the module docs for the order. The replay check
/// is the caller's.
pub fn check_proof(
    proof: &str,
    expect: &ProofExpectations<'_>,
) -> Result<CheckedProof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::TooLarge);
    }
    let mut parts = proof.splitn(4, '.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    let signing_input = &proof[..header.len() + 1 + payload.len()];
    let header = decode_object(header)?;
    let payload = decode_object(payload)?;
    let signature = b64url_decode(signature).ok_or(ProofError::BadEncoding)?;
    let typ_ok = header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|typ| {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            typ.eq_ignore_ascii_case(PROOF_TYPE)
        });
    if !typ_ok {
        return Err(ProofError::WrongType);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::parse)
        .filter(|alg| ALGORITHMS.contains(alg))
        .ok_or(ProofError::AlgorithmNotAllowed)?;
    if header.contains_key("crit") {
        return Err(ProofError::CriticalExtension);
    }
    let Some(Value::Object(jwk)) = header.get("jwk") else {
        return Err(ProofError::MissingKey);
    };
    if PRIVATE_MEMBERS.iter().any(|name| jwk.contains_key(*name)) {
        return Err(ProofError::PrivateKey);
    }
    let key = parse_jwk(jwk, &ALGORITHMS).map_err(|_| ProofError::BadKey)?;
    if key.alg() != alg {
        return Err(ProofError::BadKey);
    }
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(ProofError::BadSignature);
    }
    let claims = check_claims(&payload, expect)?;
    Ok(CheckedProof {
        jkt: thumbprint(jwk).ok_or(ProofError::BadKey)?,
        jti: claims.jti.to_owned(),
        iat: claims.iat,
    })
}

struct Claims<'a> {
    jti: &'a str,
    iat: i64,
}

fn check_claims<'a>(
    payload: &'a Map<String, Value>,
    expect: &ProofExpectations<'_>,
) -> Result<Claims<'a>, ProofError> {
    let string = move |name: &'static str| match payload.get(name) {
        None => Err(ProofError::MissingClaim(name)),
        Some(Value::String(text)) => Ok(text.as_str()),
        Some(_) => Err(ProofError::InvalidClaim(name)),
    };
    let jti = string("jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(ProofError::InvalidClaim("jti"));
    }
    let htm = string("htm")?;
    let htu = string("htu")?;
    let iat = match payload.get("iat") {
        None => return Err(ProofError::MissingClaim("iat")),
        // Whole seconds; a fraction rounds down, an out-of-range value saturates.
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .unwrap_or(0),
        Some(_) => return Err(ProofError::InvalidClaim("iat")),
    };
    let ath = match payload.get("ath") {
        None => None,
        Some(Value::String(text)) => Some(text.as_str()),
        Some(_) => return Err(ProofError::InvalidClaim("ath")),
    };
    if htm != expect.method {
        return Err(ProofError::WrongMethod);
    }
    match (normalise_htu(htu), normalise_htu(expect.uri)) {
        (Some(claimed), Some(actual)) if claimed == actual => {}
        _ => return Err(ProofError::WrongUri),
    }
    let now = expect.now.unix_seconds();
    if iat < now.saturating_sub(expect.window_seconds) {
        return Err(ProofError::Stale);
    }
    if iat > now.saturating_add(expect.window_seconds) {
        return Err(ProofError::Future);
    }
    match (expect.access_token, ath) {
        (None, _) => {}
        (Some(token), Some(ath)) if ath == access_token_hash(token) => {}
        (Some(_), _) => return Err(ProofError::WrongAccessTokenHash),
    }
    Ok(Claims { jti, iat })
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, ProofError> {
    let bytes = b64url_decode(segment).ok_or(ProofError::BadEncoding)?;
    parse_object(&bytes).map_err(|error| match error {
        JsonError::DuplicateMember => ProofError::DuplicateMember,
        JsonError::Malformed => ProofError::Malformed,
    })
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url (see
/// `latchkey_core::jwt::jwk_thumbprint`). `None` when a required member is missing or
/// not a string.
pub fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    latchkey_core::jwt::jwk_thumbprint(jwk)
}

#[cfg(test)]
mod tests;
