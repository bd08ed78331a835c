//! The access-token model shared by the issuer (server) and the verifiers: the JOSE
//! header and its algorithms, the values of the `aud` and `tkt` claims, and strict
//! base64url (RFC 7515 §2: no padding, URL-safe alphabet only, canonical trailing bits),
//! so a token has exactly one accepted encoding. The claims themselves are a wire type,
//! `latchkey_wire::Claims`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// `typ` of every latchkey access token (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// A signing algorithm latchkey issues with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519 (RFC 8037), the default.
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl Algorithm {
    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
        }
    }

    /// The inverse of [`Algorithm::as_str`]; exact, case-sensitive.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "EdDSA" => Some(Self::EdDSA),
            "ES256" => Some(Self::ES256),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// The protected header latchkey writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The signing algorithm.
    pub alg: Algorithm,
    /// Always `at+jwt`.
    pub typ: String,
    /// The signing key's id in the JWKS.
    pub kid: String,
}

/// Whether a token acts for a tenant or for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenOwnerType {
    /// A tenant token.
    Tenant,
    /// A personal token.
    User,
}

/// A JWT's `aud`: one string, or an array of them (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// `primary`, with `issuer` added when `with_issuer` holds and it is not already it.
    pub fn new(primary: &str, issuer: &str, with_issuer: bool) -> Self {
        if with_issuer && primary != issuer {
            Self::Many(vec![primary.to_owned(), issuer.to_owned()])
        } else {
            Self::One(primary.to_owned())
        }
    }

    /// True when `audience` is, or is among, these audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }
}

impl From<&str> for Audience {
    fn from(audience: &str) -> Self {
        Self::One(audience.to_owned())
    }
}

/// base64url without padding.
pub fn b64url_encode(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the SHA-256 of the JSON
/// object of its required members only, in lexicographic order, without white space.
/// `None` when the key type is not EC, OKP or RSA, or a required member is missing or
/// not a string.
pub fn jwk_thumbprint(jwk: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let members = thumbprint_members(jwk.get("kty").and_then(serde_json::Value::as_str)?)?;
    let mut canonical = String::with_capacity(256);
    canonical.push('{');
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name).and_then(serde_json::Value::as_str)?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push_str(&serde_json::to_string(name).ok()?);
        canonical.push(':');
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    Some(b64url_encode(digest.as_ref()))
}

/// The members of a public JWK of type `kty` that RFC 7638 §3.2 hashes, in order.
pub fn thumbprint_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        "RSA" => Some(&["e", "kty", "n"]),
        _ => None,
    }
}

/// Appends `data` to `out` in base64url without padding.
pub fn b64url_encode_into(data: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(data, out);
}

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Strict base64url decoding: the URL-safe alphabet only, no padding, no white space,
/// and zero unused trailing bits, so every byte string has exactly one encoding.
pub fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= b64_value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() - 1;
        let unused_mask = match produced {
            1 => 0xFFFF,
            2 => 0xFF,
            _ => 0,
        };
        if n & unused_mask != 0 {
            return None;
        }
        for i in 0..produced {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_every_length() {
        let data: Vec<u8> = (0..=255u8).collect();
        for len in 0..40 {
            let encoded = b64url_encode(&data[..len]);
            assert!(!encoded.contains('='));
            assert_eq!(b64url_decode(&encoded).unwrap(), &data[..len]);
        }
        assert_eq!(b64url_encode(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url_decode("QQ"), Some(b"A".to_vec()));
        assert_eq!(b64url_decode("QR"), None, "non-zero trailing bits");
        assert_eq!(b64url_decode("QQ=="), None, "padding");
        assert_eq!(b64url_decode("+/8"), None, "standard alphabet");
        assert_eq!(b64url_decode("Q Q"), None, "white space");
        assert_eq!(b64url_decode("QUJDR"), None, "impossible length");
    }

    #[test]
    fn audiences_are_one_string_or_an_array() {
        let one: Audience = serde_json::from_str("\"https://api\"").unwrap();
        assert!(one.contains("https://api") && !one.contains("https://auth"));
        let many = Audience::new("https://api", "https://auth", true);
        assert_eq!(
            serde_json::to_string(&many).unwrap(),
            "[\"https://api\",\"https://auth\"]"
        );
        assert!(many.contains("https://auth"));
        assert_eq!(
            Audience::new("https://auth", "https://auth", true),
            Audience::One("https://auth".into())
        );
    }
}
