//! Tokens on the management API (docs/API.md, "Tokens"): the resource that reads and
//! lists show, the create response that carries the secret once, and the create and
//! rename bodies.

use latchkey_core::cidr::IpNet;
use latchkey_core::token::{AuthMethod, Owner, RevokedReason, Token, TokenKind, TokenName};
use latchkey_core::{Permission, RoleName, Timestamp, TokenId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A token as `GET /v1/tokens/{id}`, the lists and a rename show it. It never holds a
/// secret; `secret_hint` names its type and last four characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenResource {
    /// The token id, also its OAuth `client_id`.
    #[schema(value_type = String, format = Uuid)]
    pub id: TokenId,
    /// How it is presented.
    #[schema(value_type = crate::schema::TokenKindSchema)]
    pub kind: TokenKind,
    /// The tenant, or the user in a tenant, it belongs to.
    #[schema(value_type = crate::schema::OwnerSchema)]
    pub owner: Owner,
    /// Display name, the only field that can change.
    #[schema(value_type = String)]
    pub name: TokenName,
    /// Roles whose current permissions it carries; always empty on personal tokens.
    #[schema(value_type = Vec<String>)]
    pub roles: Vec<RoleName>,
    /// Permissions granted directly.
    #[schema(value_type = Vec<String>)]
    pub permissions: Vec<Permission>,
    /// The user who stands behind it: given for tenant tokens, the owner for personal
    /// ones.
    #[schema(value_type = Option<String>, required = true)]
    pub created_by: Option<UserId>,
    /// Creation time.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// After this instant it no longer authenticates; `null` for never.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub expires_at: Option<Timestamp>,
    /// When it was revoked; `null` while it is not.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked (`revoked`, `rolled`, `leaked`, `unused`); `null` while it is
    /// not.
    #[schema(value_type = Option<crate::schema::RevokedReasonSchema>, required = true)]
    pub revoked_reason: Option<RevokedReason>,
    /// The token this one was rolled from; `null` unless it is a successor.
    #[schema(value_type = Option<String>, format = Uuid, required = true)]
    pub rolled_from: Option<TokenId>,
    /// The token this one was rolled to; `null` unless it was rolled.
    #[schema(value_type = Option<String>, format = Uuid, required = true)]
    pub rolled_to: Option<TokenId>,
    /// When a roll's grace window ends and this token is revoked; `null` unless rolled.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub revokes_at: Option<Timestamp>,
    /// The last successful authentication.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub last_used_at: Option<Timestamp>,
    /// The client address of that authentication.
    #[schema(required = true)]
    pub last_used_ip: Option<String>,
    /// Client networks it may be used from; empty means anywhere.
    #[schema(value_type = Vec<String>)]
    pub ip_allowlist: Vec<IpNet>,
    /// Lifetime of the access tokens it is exchanged for, in seconds.
    pub access_token_ttl_seconds: u32,
    /// Whether exchanges also issue rotating refresh tokens.
    pub refresh_tokens: bool,
    /// Type and last four characters of its secret (`lk_sk_…k9Qz`); `null` for a
    /// `private_key_jwt` client, which has none.
    #[schema(required = true)]
    pub secret_hint: Option<String>,
    /// How a `client_credentials` token authenticates at the OAuth endpoints:
    /// `client_secret_basic` (a secret, by Basic or in the form) or `private_key_jwt` (a
    /// signed client assertion); `null` for the other kinds.
    #[schema(value_type = Option<crate::schema::AuthMethodSchema>, required = true)]
    #[serde(default)]
    pub auth_method: Option<AuthMethod>,
    /// The public JWK of a `private_key_jwt` client; `null` otherwise.
    #[schema(value_type = Option<Object>, required = true)]
    #[serde(default)]
    pub public_key: Option<Map<String, Value>>,
    /// The RFC 7638 SHA-256 thumbprint of `public_key`, base64url; `null` without one.
    #[schema(required = true)]
    #[serde(default)]
    pub public_key_thumbprint: Option<String>,
}

impl From<Token> for TokenResource {
    fn from(token: Token) -> Self {
        let auth_method = token.auth_method();
        let public_key_thumbprint = token
            .public_key
            .as_ref()
            .map(|key| key.thumbprint().to_owned());
        Self {
            id: token.id,
            kind: token.kind,
            owner: token.owner,
            name: token.name,
            roles: token.roles,
            permissions: token.permissions,
            created_by: token.created_by,
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked_at: token.revoked_at,
            revoked_reason: token.revoked_reason,
            rolled_from: token.rolled_from,
            rolled_to: token.rolled_to,
            revokes_at: token.revokes_at,
            last_used_at: token.last_used_at,
            last_used_ip: token.last_used_ip,
            ip_allowlist: token.ip_allowlist,
            access_token_ttl_seconds: token.access_token_ttl_seconds,
            refresh_tokens: token.refresh_tokens,
            secret_hint: token.secret_hint,
            auth_method,
            public_key: token.public_key.map(|key| key.jwk().clone()),
            public_key_thumbprint,
        }
    }
}

/// The answer to a create (201): the token, and its secret, in this response and
/// nowhere else, ever. Which member holds the secret follows the kind: `client_id` and
/// `client_secret` for `client_credentials`, `api_key` for `api_key`, `jwt` for `jwt`.
/// A `private_key_jwt` client (made with a `public_key`) gets `client_id` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    /// The token as reads show it.
    pub token: TokenResource,
    /// The client id of a `client_credentials` token: its token id.
    #[schema(value_type = Option<String>, format = Uuid)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<TokenId>,
    /// The client secret of a `client_credentials` token (`lk_sk_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The key of an `api_key` token (`lk_ak_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The signed long-lived JWT of a `jwt` token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<String>,
}

/// The body of both create endpoints, `POST /v1/tenants/{tid}/tokens` and
/// `POST /v1/tenants/{tid}/users/{uid}/tokens`. Only `name` and `kind` are required; a
/// personal token takes neither `roles` nor `created_by`.
///
/// Values are the client's text: the server parses and checks them, and names the field
/// it refuses (docs/API.md, "Problem types").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Display name, 1–200 characters.
    pub name: String,
    /// How the token is presented.
    #[schema(value_type = crate::schema::TokenKindSchema)]
    pub kind: TokenKind,
    /// Roles whose permissions the token carries (tenant tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Permissions granted directly.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// When the token stops working, RFC 3339.
    #[schema(format = DateTime)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Lifetime of the access tokens it is exchanged for, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_seconds: Option<u32>,
    /// Client networks it may be used from (CIDR); empty means anywhere.
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
    /// The member who stands behind a tenant token; it may hold only what they hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Whether exchanges also issue rotating refresh tokens (`client_credentials` only).
    #[serde(default)]
    pub refresh_tokens: bool,
    /// A public JWK (Ed25519, P-256 or RSA of at least 2048 bits) instead of a secret
    /// (`client_credentials` only): the client then authenticates with `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Map<String, Value>>,
}

/// The body of `POST /v1/tokens/{id}/roll`: how long the old token keeps working, and
/// optionally a new expiry for the successor (which otherwise keeps the old one's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollToken {
    /// Seconds the old token keeps working, 0–2,592,000; 86,400 when absent.
    #[schema(maximum = 2592000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u32>,
    /// When the successor stops working, RFC 3339; the old token's expiry when absent.
    #[schema(format = DateTime)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The successor's public JWK: required to roll a `private_key_jwt` client, refused
    /// for any other token.
    #[schema(value_type = Option<Object>)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Map<String, Value>>,
}

/// The body of `PATCH /v1/tokens/{id}`: a new display name, the only change a token
/// admits. The server refuses any other token field as `immutable-field`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameToken {
    /// The new name.
    pub name: String,
}
