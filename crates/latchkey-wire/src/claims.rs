//! The claims of a latchkey access token (docs/API.md, "Access tokens"): RFC 9068's with
//! latchkey's own (`tid`, `uid`, `tkt`, `knd`, `rol`, `prm`, `ipa`). The server signs
//! them; latchkey-verify reads them after its own checks of the raw JSON.

use latchkey_core::jwt::{Audience, TokenOwnerType};
use latchkey_core::token::TokenKind;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;

/// The claims of a latchkey access token (docs/API.md, "Access tokens").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The issuer: the server's public URL.
    pub iss: String,
    /// The token id.
    pub sub: String,
    /// The audience: the `resource` asked for, or the default audience (and the issuer
    /// too when the grant holds a built-in permission; docs/API.md, "Audiences").
    pub aud: Audience,
    /// Expiry, seconds since the epoch; absent on long-lived JWTs without expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// A fresh UUID v4 per issued JWT.
    pub jti: String,
    /// The token id (the OAuth client id).
    pub client_id: String,
    /// Space-separated effective permissions.
    pub scope: String,
    /// The tenant.
    pub tid: String,
    /// The user, on personal tokens only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// `tenant` or `user`.
    pub tkt: TokenOwnerType,
    /// `jwt` on long-lived JWTs (token kind `jwt`); absent on access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knd: Option<JwtKind>,
    /// The token's roles: what its grant is computed from, so a verifier can narrow
    /// `scope` to what the token grants now. Absent only on JWTs issued before latchkey
    /// wrote it, which verifiers check by introspection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rol: Option<Vec<String>>,
    /// The token's direct permissions, beside `rol`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prm: Option<Vec<String>>,
    /// The token's IP allowlist (CIDR networks); absent when it has none. A verifier that
    /// does not know the client's address refuses a JWT carrying it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipa: Vec<String>,
    /// On access tokens issued through a trust (the JWT-bearer grant): the trust's id,
    /// which is also `client_id`; `sub` is then the assertion's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_id: Option<String>,
    /// The key the token is bound to (RFC 9449 §6.1), when it was issued for a DPoP
    /// proof; every use then needs a proof by that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` claim of a DPoP-bound token (RFC 7800 §3.1, RFC 9449 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Confirmation {
    /// The RFC 7638 SHA-256 thumbprint of the proof key, base64url.
    pub jkt: String,
}

impl Claims {
    /// True for the claims of a long-lived JWT (`"knd":"jwt"`, token kind `jwt`); false
    /// for an access token from `/oauth/token`, which has no `knd`, and for any `knd`
    /// latchkey does not write.
    pub fn is_long_lived(&self) -> bool {
        matches!(self.knd, Some(JwtKind::Jwt))
    }
}

/// The `knd` claim. latchkey writes only `jwt`; any other string still reads, as
/// [`JwtKind::Unknown`], so that claims a newer or foreign issuer wrote parse and are
/// simply not long-lived. Whoever must refuse them (latchkey-verify) does so itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwtKind {
    /// `jwt`: a long-lived JWT, token kind `jwt`.
    Jwt,
    /// A `knd` latchkey does not write, kept as it came.
    Unknown(String),
}

impl JwtKind {
    /// The kind `text` names; exact and case-sensitive, so `JWT` is unknown.
    pub fn parse(text: &str) -> Self {
        if text == TokenKind::Jwt.as_str() {
            Self::Jwt
        } else {
            Self::Unknown(text.to_owned())
        }
    }

    /// The claim's text.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Jwt => TokenKind::Jwt.as_str(),
            Self::Unknown(text) => text,
        }
    }
}

impl Serialize for JwtKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JwtKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KindVisitor)
    }
}

/// Reads `knd` without allocating for the one kind latchkey writes.
struct KindVisitor;

impl Visitor<'_> for KindVisitor {
    type Value = JwtKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<JwtKind, E> {
        Ok(JwtKind::parse(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_omit_absent_optional_members() {
        let claims = Claims {
            iss: "http://127.0.0.1:7700".into(),
            sub: "t".into(),
            aud: "http://127.0.0.1:7700".into(),
            exp: None,
            iat: 1,
            nbf: 1,
            jti: "j".into(),
            client_id: "t".into(),
            scope: "a:r".into(),
            tid: "acme".into(),
            uid: None,
            tkt: TokenOwnerType::Tenant,
            knd: Some(JwtKind::Jwt),
            rol: Some(vec![]),
            prm: None,
            ipa: vec![],
            cnf: None,
            trust_id: None,
        };
        let text = serde_json::to_string(&claims).unwrap();
        assert!(!text.contains("exp") && !text.contains("uid"));
        assert!(text.contains("\"tkt\":\"tenant\"") && text.contains("\"knd\":\"jwt\""));
        assert!(text.contains("\"rol\":[]") && !text.contains("prm") && !text.contains("ipa"));
    }

    #[test]
    fn only_knd_jwt_makes_claims_long_lived() {
        let mut claims: Claims = serde_json::from_value(json!({
            "iss": "i", "sub": "t", "aud": "i", "iat": 1, "nbf": 1, "jti": "j",
            "client_id": "t", "scope": "", "tid": "acme", "tkt": "tenant", "knd": "jwt"
        }))
        .unwrap();
        assert!(claims.is_long_lived());
        for other in [
            None,
            Some("JWT"),
            Some("api_key"),
            Some("client_credentials"),
            Some(""),
        ] {
            claims.knd = other.map(JwtKind::parse);
            assert!(!claims.is_long_lived(), "{other:?}");
        }
    }

    #[test]
    fn a_knd_latchkey_does_not_write_reads_and_writes_back_unchanged() {
        let mut value = json!({
            "iss": "i", "sub": "t", "aud": ["a", "i"], "iat": 1, "nbf": 1, "jti": "j",
            "client_id": "t", "scope": "", "tid": "acme", "tkt": "user", "uid": "u",
            "knd": "api_key"
        });
        let claims: Claims = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(claims.knd, Some(JwtKind::Unknown("api_key".into())));
        assert!(!claims.is_long_lived());
        assert_eq!(serde_json::to_value(&claims).unwrap(), value);
        // Not a string: refused, as it was when `knd` was a plain string.
        value["knd"] = json!(1);
        assert!(serde_json::from_value::<Claims>(value.clone()).is_err());
        value["knd"] = json!(null);
        let claims: Claims = serde_json::from_value(value).unwrap();
        assert_eq!(claims.knd, None);
    }
}
