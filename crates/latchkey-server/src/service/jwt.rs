//! Issuing JWTs, and checking the server's own (for introspection and RFC 7009
//! revocation). Checking here is strict but simple: the server knows exactly what it
//! issued. Resource servers use `latchkey-verify`, which defends against everything else.

use super::keys::{KeySet, SigningKey};
use crate::service::error::Error;
use latchkey_core::jwt::{ACCESS_TOKEN_TYPE, Header, b64url_decode, b64url_encode_into};
use latchkey_wire::Claims;

/// Tokens longer than this are not ours.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Signs `claims` with `key`.
pub fn sign(key: &SigningKey, claims: &Claims) -> Result<String, Error> {
    let header = Header {
        alg: key.alg,
        typ: ACCESS_TOKEN_TYPE.to_owned(),
        kid: key.kid.clone(),
    };
    // One buffer for the JSON of each part, one for the token: about 1 KiB in all.
    let mut json = Vec::with_capacity(512);
    let mut token = String::with_capacity(1024);
    segment(&header, &mut json, &mut token)?;
    token.push('.');
    segment(claims, &mut json, &mut token)?;
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    b64url_encode_into(&signature, &mut token);
    Ok(token)
}

/// Appends `value`'s JSON to `token` in base64url, through the reused buffer `json`.
fn segment<T: serde::Serialize>(
    value: &T,
    json: &mut Vec<u8>,
    token: &mut String,
) -> Result<(), Error> {
    json.clear();
    serde_json::to_writer(&mut *json, value).map_err(Error::internal)?;
    b64url_encode_into(json, token);
    Ok(())
}

/// Why one of our own tokens was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Not a JWT we could have issued, or not signed by a published key.
    Invalid,
    /// Ours, but past its `exp`.
    Expired,
}

/// Checks a token the server issued: shape, published `kid` with its own algorithm,
/// signature, `typ`, `iss`. Expiry is checked against `now_seconds` unless the token is a
/// long-lived JWT without `exp`.
pub fn verify(
    keys: &KeySet,
    issuer: &str,
    token: &str,
    now_seconds: i64,
) -> Result<Claims, Rejected> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejected::Invalid);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejected::Invalid);
    };
    let header_bytes = b64url_decode(header_b64).ok_or(Rejected::Invalid)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| Rejected::Invalid)?;
    let key = keys.find(&header.kid).ok_or(Rejected::Invalid)?;
    if header.alg != key.alg || header.typ != ACCESS_TOKEN_TYPE {
        return Err(Rejected::Invalid);
    }
    let signature = b64url_decode(signature_b64).ok_or(Rejected::Invalid)?;
    let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
    if !key.verify(signed.as_bytes(), &signature) {
        return Err(Rejected::Invalid);
    }
    let claims_bytes = b64url_decode(claims_b64).ok_or(Rejected::Invalid)?;
    let claims: Claims = serde_json::from_slice(&claims_bytes).map_err(|_| Rejected::Invalid)?;
    if claims.iss != issuer {
        return Err(Rejected::Invalid);
    }
    match claims.exp {
        Some(exp) if exp <= now_seconds => Err(Rejected::Expired),
        None if !claims.is_long_lived() => Err(Rejected::Invalid),
        _ => Ok(claims),
    }
}
