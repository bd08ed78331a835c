//! The API token: who owns it, how it is presented, what it may do, and the rules that
//! keep it immutable after creation (only its display name can change).

use crate::cidr::IpNet;
use crate::ids::{FieldError, RoleName, TenantId, TokenId, UserId};
use crate::permission::Permission;
use crate::secret::StoredSecret;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// How a token is presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// Client id and secret, exchanged at `/oauth/token` for a short-lived JWT.
    ClientCredentials,
    /// One opaque string, checked against the store.
    ApiKey,
    /// One long-lived signed JWT, revocable through the deny list.
    Jwt,
}

impl TokenKind {
    /// The wire and storage name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
        }
    }

    /// The inverse of [`TokenKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "client_credentials" => Some(Self::ClientCredentials),
            "api_key" => Some(Self::ApiKey),
            "jwt" => Some(Self::Jwt),
            _ => None,
        }
    }
}

/// Why a token was revoked (docs/API.md, "Tokens").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedReason {
    /// Revoked by a caller, or with its tenant, membership or user.
    Revoked,
    /// Its roll's grace window ended.
    Rolled,
    /// Its secret was reported leaked.
    Leaked,
    /// It went unused for longer than its tenant allows.
    Unused,
}

impl RevokedReason {
    /// The wire and storage name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Rolled => "rolled",
            Self::Leaked => "leaked",
            Self::Unused => "unused",
        }
    }

    /// The inverse of [`RevokedReason::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "revoked" => Some(Self::Revoked),
            "rolled" => Some(Self::Rolled),
            "leaked" => Some(Self::Leaked),
            "unused" => Some(Self::Unused),
            _ => None,
        }
    }
}

/// Who owns a token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Owner {
    /// The tenant itself; the token survives users leaving.
    Tenant {
        /// The owning tenant.
        tenant_id: TenantId,
    },
    /// One user inside one tenant; the token dies with the user or the membership.
    User {
        /// The tenant the token acts in.
        tenant_id: TenantId,
        /// The user it acts for.
        user_id: UserId,
    },
}

impl Owner {
    /// The tenant the token belongs to, whoever owns it.
    pub fn tenant_id(&self) -> &TenantId {
        match self {
            Self::Tenant { tenant_id } | Self::User { tenant_id, .. } => tenant_id,
        }
    }

    /// The owning user of a personal token.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Self::Tenant { .. } => None,
            Self::User { user_id, .. } => Some(user_id),
        }
    }
}

/// A token's display name: 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TokenName(String);

impl TokenName {
    /// Accepts 1–200 characters with no control characters and not only white space.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let length = text.chars().count();
        if length == 0 || length > 200 || text.trim().is_empty() {
            return Err(FieldError(
                "must be 1–200 characters and not blank".to_owned(),
            ));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError("must not contain control characters".to_owned()));
        }
        Ok(Self(text.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TokenName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// How an OAuth client authenticates (RFC 7591 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A client secret, by HTTP Basic (or, equally accepted, in the form body).
    ClientSecretBasic,
    /// A JWT signed with the client's private key (RFC 7523 §2.2).
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// The public key a `private_key_jwt` client signs its assertions with (docs/API.md,
/// "Clients with a private key"). It holds only the members of a public key: those
/// RFC 7638 hashes for its type, and `kid`, `alg` and `use` when given as strings.
/// Whether the material is a usable key is the server's check; this type only keeps
/// it, with its thumbprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKey {
    jwk: serde_json::Map<String, serde_json::Value>,
    thumbprint: String,
}

/// Members of a public JWK kept besides those RFC 7638 hashes.
const KEPT_JWK_MEMBERS: [&str; 3] = ["kid", "alg", "use"];

impl ClientKey {
    /// The public part of `jwk`, or `None` when its type is not EC, OKP or RSA or a
    /// member the thumbprint needs is missing.
    pub fn from_jwk(jwk: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        let kty = jwk.get("kty").and_then(serde_json::Value::as_str)?;
        let members = crate::jwt::thumbprint_members(kty)?;
        let kept: serde_json::Map<String, serde_json::Value> = members
            .iter()
            .chain(KEPT_JWK_MEMBERS.iter())
            .filter_map(|name| {
                jwk.get(*name)
                    .filter(|value| value.is_string())
                    .map(|value| ((*name).to_owned(), value.clone()))
            })
            .collect();
        let thumbprint = crate::jwt::jwk_thumbprint(&kept)?;
        Some(Self {
            jwk: kept,
            thumbprint,
        })
    }

    /// Reads the stored form ([`ClientKey::to_json`]).
    pub fn parse_stored(text: &str) -> Option<Self> {
        match serde_json::from_str(text).ok()? {
            serde_json::Value::Object(jwk) => Self::from_jwk(&jwk),
            _ => None,
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.jwk
    }

    /// Its RFC 7638 SHA-256 thumbprint, base64url.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public JWK as compact JSON: the stored form.
    pub fn to_json(&self) -> String {
        serde_json::Value::Object(self.jwk.clone()).to_string()
    }
}

impl Serialize for ClientKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.jwk.serialize(serializer)
    }
}

/// The fields of a token resource that can never change after creation.
pub const IMMUTABLE_FIELDS: [&str; 24] = [
    "id",
    "kind",
    "owner",
    "roles",
    "permissions",
    "created_by",
    "created_at",
    "expires_at",
    "revoked_at",
    "revoked_reason",
    "rolled_from",
    "rolled_to",
    "revokes_at",
    "last_used_at",
    "last_used_ip",
    "ip_allowlist",
    "access_token_ttl_seconds",
    "refresh_tokens",
    "secret_hint",
    "client_secret",
    "secret",
    "auth_method",
    "public_key",
    "public_key_thumbprint",
];

/// The one field a rename may carry.
pub const MUTABLE_FIELD: &str = "name";

/// A token as the management API shows it. It never holds a secret. Its JSON also names
/// its `auth_method` and its public key's `public_key_thumbprint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The token id, also its OAuth `client_id`.
    pub id: TokenId,
    /// How it is presented.
    pub kind: TokenKind,
    /// Its owner.
    pub owner: Owner,
    /// Display name, the only mutable field.
    pub name: TokenName,
    /// Roles whose current permissions it carries (tenant tokens).
    pub roles: Vec<RoleName>,
    /// Permissions granted directly.
    pub permissions: Vec<Permission>,
    /// The user who stands behind it: given for tenant tokens, the owner for personal ones.
    pub created_by: Option<UserId>,
    /// Creation time.
    pub created_at: Timestamp,
    /// After this instant it no longer authenticates.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Why it was revoked; `None` while it is not.
    pub revoked_reason: Option<RevokedReason>,
    /// The token it was rolled from: this one is its successor.
    pub rolled_from: Option<TokenId>,
    /// The token it was rolled to: its successor.
    pub rolled_to: Option<TokenId>,
    /// When a roll's grace window ends and it is revoked (never after `expires_at`).
    pub revokes_at: Option<Timestamp>,
    /// The last successful authentication.
    pub last_used_at: Option<Timestamp>,
    /// The client IP of that authentication.
    pub last_used_ip: Option<String>,
    /// Client networks it may be used from; empty means anywhere.
    pub ip_allowlist: Vec<IpNet>,
    /// Lifetime of the access tokens it is exchanged for.
    pub access_token_ttl_seconds: u32,
    /// Whether exchanges also issue rotating refresh tokens.
    pub refresh_tokens: bool,
    /// Type and last four characters of its secret.
    pub secret_hint: Option<String>,
    /// The public key of a `private_key_jwt` client, which has no secret.
    pub public_key: Option<ClientKey>,
}

impl Token {
    /// True when it is neither revoked nor expired at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expiry| expiry > now)
    }

    /// How it authenticates at the OAuth endpoints; `None` for kinds that do not.
    pub fn auth_method(&self) -> Option<AuthMethod> {
        match (self.kind, &self.public_key) {
            (TokenKind::ClientCredentials, Some(_)) => Some(AuthMethod::PrivateKeyJwt),
            (TokenKind::ClientCredentials, None) => Some(AuthMethod::ClientSecretBasic),
            _ => None,
        }
    }
}

impl Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("Token", 23)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("kind", &self.kind)?;
        out.serialize_field("owner", &self.owner)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("roles", &self.roles)?;
        out.serialize_field("permissions", &self.permissions)?;
        out.serialize_field("created_by", &self.created_by)?;
        out.serialize_field("created_at", &self.created_at)?;
        out.serialize_field("expires_at", &self.expires_at)?;
        out.serialize_field("revoked_at", &self.revoked_at)?;
        out.serialize_field("revoked_reason", &self.revoked_reason)?;
        out.serialize_field("rolled_from", &self.rolled_from)?;
        out.serialize_field("rolled_to", &self.rolled_to)?;
        out.serialize_field("revokes_at", &self.revokes_at)?;
        out.serialize_field("last_used_at", &self.last_used_at)?;
        out.serialize_field("last_used_ip", &self.last_used_ip)?;
        out.serialize_field("ip_allowlist", &self.ip_allowlist)?;
        out.serialize_field("access_token_ttl_seconds", &self.access_token_ttl_seconds)?;
        out.serialize_field("refresh_tokens", &self.refresh_tokens)?;
        out.serialize_field("secret_hint", &self.secret_hint)?;
        out.serialize_field("auth_method", &self.auth_method())?;
        out.serialize_field("public_key", &self.public_key)?;
        out.serialize_field(
            "public_key_thumbprint",
            &self.public_key.as_ref().map(ClientKey::thumbprint),
        )?;
        out.end()
    }
}

/// A token with what the store keeps of its secret, for authentication.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// The token.
    pub token: Token,
    /// Salt and hash of its secret; `None` for kinds without a stored secret.
    pub secret: Option<StoredSecret>,
    /// The key that signed a long-lived JWT; it stays published while the token lives.
    pub signing_kid: Option<String>,
    /// The indexed lookup value of its secret (`SecretCodec::lookup`), by which a leaked
    /// secret is found; `None` for kinds without a secret and for secrets made before
    /// migration 0010 (docs/SECRET_SCANNING.md).
    pub secret_lookup: Option<Vec<u8>>,
}
