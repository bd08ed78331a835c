//! Validation of a compact JWS access token (RFC 7515, RFC 9068) against the hardening
//! rules of RFC 8725. Pure: keys, time and expectations come in as arguments.
//!
//! Policy, in the order the checks run (cheapest and most telling first):
//! size, then shape (exactly three segments), then the header — strict base64url, a
//! JSON object with distinct member names, no `jku`/`x5u`/`x5c`/`jwk` (nothing in the
//! token may name or carry its own key, and nothing here ever fetches a URL from a
//! token), no `crit`, an allowed `alg`, `typ` `at+jwt`, a `kid` — then strict
//! base64url of the other two segments (so no malformed token costs a key lookup or a
//! refetch), then the signature with the key the issuer published under that `kid`,
//! whose algorithm must equal the header's, and only then the claims: JSON types first (`exp`/`nbf`/`iat` must be
//! numbers), required claims, `iss` exactly, `aud`, the time window with leeway, and
//! the values latchkey issues (`client_id` a token id, `tid`, `scope`, `tkt`/`uid`, and
//! on tokens issued through a trust `trust_id` equal to `client_id`, with `sub` the
//! outside caller's subject).

use crate::error::InvalidReason;
use crate::json::{JsonError, parse_object};
use crate::narrow::GrantBasis;
use crate::principal::{Principal, TokenKind, TrustCaller};
use latchkey_core::cidr::IpNet;
use latchkey_core::jwt::{ACCESS_TOKEN_TYPE, Algorithm, Header, TokenOwnerType, b64url_decode};
use latchkey_core::permission::parse_scope;
use latchkey_core::{TenantId, Timestamp, TokenId, UserId};
use latchkey_wire::{Claims, JwtKind};
use serde_json::{Map, Value};

/// What a token must match.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expectations<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) leeway_seconds: i64,
}

/// The three segments of a compact JWS and the bytes the signature covers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Segments<'a> {
    pub(crate) header: &'a str,
    pub(crate) payload: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) signing_input: &'a str,
}

/// Splits `token` into exactly three segments.
pub(crate) fn split(token: &str) -> Result<Segments<'_>, InvalidReason> {
    let mut parts = token.splitn(4, '.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InvalidReason::Malformed);
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Segments {
        header,
        payload,
        signature,
        signing_input,
    })
}

/// A header that passed every check, with its algorithm parsed.
#[derive(Debug, Clone)]
pub(crate) struct CheckedHeader {
    pub(crate) alg: Algorithm,
    pub(crate) kid: String,
}

/// Members that would let a token choose or carry its own key, or that belong to JWE.
const FORBIDDEN_HEADERS: [&str; 6] = ["jku", "x5u", "x5c", "jwk", "enc", "zip"];

/// Checks the protected header.
pub(crate) fn check_header(
    segment: &str,
    allowed: &[Algorithm],
) -> Result<CheckedHeader, InvalidReason> {
    let map = decode_object(segment)?;
    if let Some(name) = FORBIDDEN_HEADERS.iter().find(|n| map.contains_key(**n)) {
        return Err(InvalidReason::ForbiddenHeader(name));
    }
    // latchkey defines no header extensions, so every `crit` names one not understood.
    if map.contains_key("crit") {
        return Err(InvalidReason::CriticalExtension);
    }
    let alg = map
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::parse)
        .filter(|alg| allowed.contains(alg))
        .ok_or(InvalidReason::AlgorithmNotAllowed)?;
    // RFC 9068 §4: `at+jwt`, or its full media type; media types ignore case.
    let typ_ok = map.get("typ").and_then(Value::as_str).is_some_and(|typ| {
        let typ = typ.strip_prefix("application/").unwrap_or(typ);
        typ.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
    });
    if !typ_ok {
        return Err(InvalidReason::WrongType);
    }
    if map
        .get("kid")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(InvalidReason::MissingKid);
    }
    // Every member this model reads is now known to be a string.
    let header: Header =
        serde_json::from_value(Value::Object(map)).map_err(|_| InvalidReason::Malformed)?;
    Ok(CheckedHeader {
        alg,
        kid: header.kid,
    })
}

/// Claims that must be JSON strings when present.
const STRING_CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "jti",
    "client_id",
    "scope",
    "tid",
    "tkt",
    "uid",
    "knd",
    "trust_id",
];

/// Claims that must be arrays of strings when present.
const LIST_CLAIMS: [&str; 3] = ["rol", "prm", "ipa"];

/// Claims that must be JSON numbers when present (RFC 7519 NumericDate).
const TIME_CLAIMS: [&str; 3] = ["exp", "nbf", "iat"];

/// Claims every token carries; `exp` too, except on long-lived JWTs.
const REQUIRED_CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "jti",
    "client_id",
    "scope",
    "tid",
    "tkt",
];

/// A verified token's caller, what its grant is computed from (`None` on a JWT from an
/// issuer that does not write `rol`/`prm`), and whether it is a long-lived JWT.
#[derive(Debug, Clone)]
pub(crate) struct CheckedClaims {
    pub(crate) principal: Principal,
    pub(crate) basis: Option<GrantBasis>,
    pub(crate) long_lived: bool,
    /// The DPoP key thumbprint the token is bound to (`cnf.jkt`).
    pub(crate) jkt: Option<std::sync::Arc<str>>,
}

/// Checks the decoded payload of a token whose signature has verified.
pub(crate) fn check_claims(
    payload: &[u8],
    expect: &Expectations<'_>,
    now: Timestamp,
) -> Result<CheckedClaims, InvalidReason> {
    let mut map = parse_object(payload).map_err(json_error)?;
    check_types(&map)?;
    let long_lived = match map.get("knd").and_then(Value::as_str).map(JwtKind::parse) {
        None => false,
        Some(JwtKind::Jwt) => true,
        Some(JwtKind::Unknown(_)) => return Err(InvalidReason::InvalidClaim("knd")),
    };
    if let Some(name) = REQUIRED_CLAIMS.iter().find(|n| !map.contains_key(**n)) {
        return Err(InvalidReason::MissingClaim(name));
    }
    if !long_lived && !map.contains_key("exp") {
        return Err(InvalidReason::MissingClaim("exp"));
    }
    if map.get("iss").and_then(Value::as_str) != Some(expect.issuer) {
        return Err(InvalidReason::WrongIssuer);
    }
    if !audience_matches(map.get("aud"), expect.audience)? {
        return Err(InvalidReason::WrongAudience);
    }
    // The shared model holds one audience; it is the one just matched.
    map.insert("aud".to_owned(), Value::String(expect.audience.to_owned()));
    for name in TIME_CLAIMS {
        if let Some(value) = map.get_mut(name) {
            *value = Value::from(numeric_date(value));
        }
    }
    let claims: Claims = serde_json::from_value(Value::Object(map))
        .map_err(|_| InvalidReason::InvalidClaim("tkt"))?;
    check_times(&claims, expect.leeway_seconds, now.unix_seconds())?;
    let kind = if long_lived {
        TokenKind::Jwt
    } else {
        TokenKind::ClientCredentials
    };
    let jkt = claims
        .cnf
        .as_ref()
        .map(|cnf| std::sync::Arc::from(cnf.jkt.as_str()));
    let basis = match (&claims.rol, &claims.prm) {
        (None, None) => None,
        (Some(roles), Some(permissions)) => Some(
            GrantBasis::parse(Some(roles), Some(permissions))
                .ok_or(InvalidReason::InvalidClaim("rol"))?,
        ),
        // latchkey writes both or neither; one alone is not a token it issued.
        (None, Some(_)) => return Err(InvalidReason::MissingClaim("rol")),
        (Some(_), None) => return Err(InvalidReason::MissingClaim("prm")),
    };
    Ok(CheckedClaims {
        principal: principal(claims, kind)?,
        basis,
        long_lived,
        jkt,
    })
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, InvalidReason> {
    let bytes = b64url_decode(segment).ok_or(InvalidReason::BadEncoding)?;
    parse_object(&bytes).map_err(json_error)
}

fn json_error(error: JsonError) -> InvalidReason {
    match error {
        JsonError::DuplicateMember => InvalidReason::DuplicateMember,
        JsonError::Malformed => InvalidReason::Malformed,
    }
}

fn check_types(map: &Map<String, Value>) -> Result<(), InvalidReason> {
    for name in STRING_CLAIMS {
        if map.get(name).is_some_and(|v| !v.is_string()) {
            return Err(InvalidReason::ClaimType(name));
        }
    }
    for name in TIME_CLAIMS {
        if map.get(name).is_some_and(|v| !v.is_number()) {
            return Err(InvalidReason::ClaimType(name));
        }
    }
    // A binding this verifier cannot honour (no `jkt`, or another confirmation method)
    // must not be read as no binding at all.
    if let Some(cnf) = map.get("cnf") {
        let jkt = cnf.as_object().and_then(|cnf| cnf.get("jkt"));
        if jkt.and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(InvalidReason::BadConfirmation);
        }
    }
    for name in LIST_CLAIMS {
        let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if map.get(name).is_some_and(|v| !strings(v)) {
            return Err(InvalidReason::ClaimType(name));
        }
    }
    Ok(())
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audience_matches(aud: Option<&Value>, audience: &str) -> Result<bool, InvalidReason> {
    match aud {
        Some(Value::String(one)) => Ok(one == audience),
        Some(Value::Array(many)) if !many.is_empty() && many.iter().all(Value::is_string) => {
            Ok(many.iter().any(|v| v.as_str() == Some(audience)))
        }
        _ => Err(InvalidReason::ClaimType("aud")),
    }
}

/// A JSON number as whole seconds; fractions round down, out-of-range values saturate.
pub(crate) fn numeric_date(value: &Value) -> i64 {
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_u64().map(|_| i64::MAX))
            // `as` saturates and maps NaN to 0; serde_json never yields NaN.
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .unwrap_or(0),
        _ => 0,
    }
}

fn check_times(claims: &Claims, leeway: i64, now: i64) -> Result<(), InvalidReason> {
    if let Some(exp) = claims.exp
        && now >= exp.saturating_add(leeway)
    {
        return Err(InvalidReason::Expired);
    }
    if claims.nbf > now.saturating_add(leeway) {
        return Err(InvalidReason::NotYetValid);
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(InvalidReason::IssuedInFuture);
    }
    Ok(())
}

fn principal(claims: Claims, kind: TokenKind) -> Result<Principal, InvalidReason> {
    let token_id =
        TokenId::parse(&claims.client_id).map_err(|_| InvalidReason::InvalidClaim("client_id"))?;
    let tenant = TenantId::parse(&claims.tid).map_err(|_| InvalidReason::InvalidClaim("tid"))?;
    let user = claims
        .uid
        .as_deref()
        .map(UserId::parse)
        .transpose()
        .map_err(|_| InvalidReason::InvalidClaim("uid"))?;
    // A personal token always names its user and a tenant token never does (§4).
    if (claims.tkt == TokenOwnerType::User) != user.is_some() {
        return Err(InvalidReason::InvalidClaim("uid"));
    }
    let scopes = parse_scope(&claims.scope).map_err(|_| InvalidReason::InvalidClaim("scope"))?;
    if claims.jti.is_empty() {
        return Err(InvalidReason::InvalidClaim("jti"));
    }
    let ip_allowlist = claims
        .ipa
        .iter()
        .map(|net| IpNet::parse(net))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| InvalidReason::InvalidClaim("ipa"))?;
    let trust = trust_caller(&claims, &token_id)?;
    Ok(Principal {
        token_id,
        tenant,
        user,
        owner: claims.tkt,
        kind,
        scopes,
        jti: Some(claims.jti),
        expires_at: claims.exp,
        ip_allowlist,
        trust,
    })
}

/// The outside caller of a token issued through a trust. The server writes `trust_id`
/// equal to `client_id` on tenant access tokens only (crates/latchkey-server/src/http/
/// oauth/jwt_bearer.rs), so any other shape is not a token it issued: a `trust_id`
/// naming another id would let revoking one trust miss tokens that claim it.
fn trust_caller(claims: &Claims, token_id: &TokenId) -> Result<Option<TrustCaller>, InvalidReason> {
    let Some(trust_id) = &claims.trust_id else {
        return Ok(None);
    };
    let trust_id = TokenId::parse(trust_id)
        .ok()
        .filter(|id| id == token_id)
        .ok_or(InvalidReason::InvalidClaim("trust_id"))?;
    if claims.tkt != TokenOwnerType::Tenant || claims.is_long_lived() {
        return Err(InvalidReason::InvalidClaim("trust_id"));
    }
    if claims.sub.is_empty() {
        return Err(InvalidReason::InvalidClaim("sub"));
    }
    Ok(Some(TrustCaller {
        trust_id,
        subject: claims.sub.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::jwt::b64url_encode;

    const ALL: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

    fn header(json: &str) -> Result<CheckedHeader, InvalidReason> {
        check_header(&b64url_encode(json.as_bytes()), &ALL)
    }

    #[test]
    fn split_needs_exactly_three_segments() {
        assert!(split("a.b.c").is_ok());
        assert_eq!(split("a.b.c").unwrap().signing_input, "a.b");
        assert_eq!(split("a.b").unwrap_err(), InvalidReason::Malformed);
        assert_eq!(split("a.b.c.d").unwrap_err(), InvalidReason::Malformed);
    }

    #[test]
    fn header_checks_run_in_order() {
        assert!(header(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k"}"#).is_ok());
        assert!(header(r#"{"alg":"EdDSA","typ":"application/AT+JWT","kid":"k"}"#).is_ok());
        assert_eq!(
            header(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"k","jku":"x"}"#).unwrap_err(),
            InvalidReason::ForbiddenHeader("jku")
        );
        assert_eq!(
            header(r#"{"alg":"HS256","typ":"at+jwt","kid":"k"}"#).unwrap_err(),
            InvalidReason::AlgorithmNotAllowed
        );
        assert_eq!(
            header(r#"{"alg":"EdDSA","typ":"JWT","kid":"k"}"#).unwrap_err(),
            InvalidReason::WrongType
        );
        assert_eq!(
            header(r#"{"alg":"EdDSA","typ":"at+jwt","kid":7}"#).unwrap_err(),
            InvalidReason::MissingKid
        );
    }

    #[test]
    fn numeric_dates_accept_any_json_number() {
        assert_eq!(numeric_date(&serde_json::json!(5)), 5);
        assert_eq!(numeric_date(&serde_json::json!(5.9)), 5);
        assert_eq!(numeric_date(&serde_json::json!(u64::MAX)), i64::MAX);
        assert_eq!(numeric_date(&serde_json::json!(-1e300)), i64::MIN);
    }
}
