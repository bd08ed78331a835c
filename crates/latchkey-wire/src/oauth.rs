//! The bodies of the authorization server (docs/API.md, "The authorization server"): the
//! token endpoint's answer, RFC 7662 introspection answers, and RFC 6749 §5.2 errors.

use latchkey_core::cidr::IpNet;
use latchkey_core::jwt::Audience;
use latchkey_core::{Permission, RoleName, TenantId, TokenId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The answer of `POST /oauth/token` (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    /// The access JWT.
    pub access_token: String,
    /// `Bearer`, or `DPoP` for a token bound to the request's DPoP proof key.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// What it grants, space-separated.
    pub scope: String,
    /// The next refresh token (`lk_rt_…`), when the token uses refresh tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// An error of the OAuth endpoints (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OAuthErrorBody {
    /// The RFC 6749 error code, e.g. `invalid_client`.
    pub error: String,
    /// Why, in the characters RFC 6749 §5.2 allows.
    pub error_description: String,
}

/// The answer of `POST /oauth/introspect` (RFC 7662 §2.2). Anything not active is
/// exactly `{"active":false}` ([`IntrospectionResponse::inactive`]); an active answer
/// has the members docs/API.md, "Introspection", lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntrospectionResponse {
    /// Whether the credential is usable now.
    pub active: bool,
    /// What it grants now, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The token id; for an access token issued through a trust, the trust's id.
    #[schema(value_type = Option<String>, format = Uuid)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<TokenId>,
    /// The token id; for an access token issued through a trust, the subject of the
    /// assertion it was exchanged for (any string its issuer wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The trust that issued the access token (the JWT-bearer grant); absent otherwise.
    #[schema(value_type = Option<String>, format = Uuid)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_id: Option<TokenId>,
    /// The token's tenant.
    #[schema(value_type = Option<String>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<TenantId>,
    /// The user, on personal tokens.
    #[schema(value_type = Option<String>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<UserId>,
    /// `Bearer`, `DPoP` for a DPoP-bound JWT, or `refresh_token` for a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The token's roles, as the JWT claim `rol`.
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rol: Option<Vec<RoleName>>,
    /// The token's direct permissions, as the JWT claim `prm`.
    #[schema(value_type = Option<Vec<String>>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prm: Option<Vec<Permission>>,
    /// The networks the token may be used from; absent when it has none.
    #[schema(value_type = Vec<String>)]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<IpNet>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Expiry, seconds since the epoch; absent when the credential has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not before (JWTs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The audience (JWTs).
    #[schema(value_type = Option<crate::schema::AudienceSchema>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// The JWT id (JWTs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The key a DPoP-bound JWT is bound to (RFC 9449 §6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<crate::Confirmation>,
}

impl IntrospectionResponse {
    /// `{"active":false}`.
    pub fn inactive() -> Self {
        Self::default()
    }
}
