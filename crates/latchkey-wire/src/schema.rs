//! OpenAPI schemas of the latchkey-core values that the wire types carry (docs/API.md,
//! "OpenAPI"). latchkey-core stays free of any documentation dependency, so the wire
//! types name these stand-ins with `#[schema(value_type = …)]`; each describes exactly
//! the JSON that core's `Serialize` writes, and the tests in this crate pin that.
//!
//! The enumerations list their values from core itself (`as_str` over every variant,
//! matched exhaustively), so a new kind or reason cannot be missing from the spec.

use latchkey_core::policy::PolicyRule;
use latchkey_core::token::{AuthMethod, RevokedReason, TokenKind};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// Every token kind, as core spells it; the match fails to compile when a kind is added
/// and not listed.
pub fn token_kinds() -> [TokenKind; 3] {
    let all = [
        TokenKind::ClientCredentials,
        TokenKind::ApiKey,
        TokenKind::Jwt,
    ];
    for kind in all {
        match kind {
            TokenKind::ClientCredentials | TokenKind::ApiKey | TokenKind::Jwt => {}
        }
    }
    all
}

/// Every reason a token is revoked for.
pub fn revoked_reasons() -> [RevokedReason; 4] {
    let all = [
        RevokedReason::Revoked,
        RevokedReason::Rolled,
        RevokedReason::Leaked,
        RevokedReason::Unused,
    ];
    for reason in all {
        match reason {
            RevokedReason::Revoked
            | RevokedReason::Rolled
            | RevokedReason::Leaked
            | RevokedReason::Unused => {}
        }
    }
    all
}

/// Every way an OAuth client authenticates.
pub fn auth_methods() -> [AuthMethod; 2] {
    let all = [AuthMethod::ClientSecretBasic, AuthMethod::PrivateKeyJwt];
    for method in all {
        match method {
            AuthMethod::ClientSecretBasic | AuthMethod::PrivateKeyJwt => {}
        }
    }
    all
}

/// Every rule of a tenant policy.
pub fn policy_rules() -> [PolicyRule; 7] {
    let all = [
        PolicyRule::MaxTokenLifetimeDays,
        PolicyRule::RequireExpiry,
        PolicyRule::AllowedKinds,
        PolicyRule::RequireIpAllowlist,
        PolicyRule::RevokeUnusedAfterDays,
        PolicyRule::MaxAccessTokenTtlSeconds,
        PolicyRule::RequireDpop,
    ];
    for rule in all {
        match rule {
            PolicyRule::MaxTokenLifetimeDays
            | PolicyRule::RequireExpiry
            | PolicyRule::AllowedKinds
            | PolicyRule::RequireIpAllowlist
            | PolicyRule::RevokeUnusedAfterDays
            | PolicyRule::MaxAccessTokenTtlSeconds
            | PolicyRule::RequireDpop => {}
        }
    }
    all
}

fn string_enum(description: &str, values: impl IntoIterator<Item = &'static str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .into()
}

/// Declares a stand-in type whose schema is a string enumeration.
macro_rules! string_enum_schema {
    ($name:ident, $spec_name:literal, $description:literal, $values:expr) => {
        #[doc = $description]
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                RefOr::T(string_enum($description, $values))
            }
        }

        impl ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($spec_name)
            }
        }
    };
}

string_enum_schema!(
    TokenKindSchema,
    "TokenKind",
    "How a token is presented.",
    token_kinds().map(TokenKind::as_str)
);
string_enum_schema!(
    AuthMethodSchema,
    "AuthMethod",
    "How an OAuth client authenticates.",
    auth_methods().map(AuthMethod::as_str)
);
string_enum_schema!(
    RevokedReasonSchema,
    "RevokedReason",
    "Why a token was revoked.",
    revoked_reasons().map(RevokedReason::as_str)
);
string_enum_schema!(
    PolicyRuleSchema,
    "PolicyRule",
    "A rule of a tenant policy, by its field name.",
    policy_rules().map(PolicyRule::as_str)
);

/// A token's owner: the tenant, or one user in a tenant (`type` tells which).
#[derive(ToSchema)]
#[schema(as = Owner)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum OwnerSchema {
    /// A tenant token.
    Tenant {
        /// The tenant.
        tenant_id: String,
    },
    /// A personal token.
    User {
        /// The tenant.
        tenant_id: String,
        /// The user.
        user_id: String,
    },
}

/// The `aud` claim: one audience or several.
pub struct AudienceSchema;

impl PartialSchema for AudienceSchema {
    fn schema() -> RefOr<Schema> {
        let one = ObjectBuilder::new().schema_type(Type::String);
        let many = ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String));
        RefOr::T(OneOfBuilder::new().item(one).item(many).into())
    }
}

impl ToSchema for AudienceSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Audience")
    }
}

/// Where a tenant's tokens may be used from (docs/API.md, "Where tokens may be used
/// from"). `null` allow lists allow all; deny wins.
#[derive(ToSchema)]
#[schema(as = NetworkRules)]
#[allow(dead_code)]
pub struct NetworkRulesSchema {
    /// Only these networks (CIDR); `null` allows every address.
    #[schema(required = true)]
    allow: Option<Vec<String>>,
    /// Never these networks (CIDR).
    deny: Vec<String>,
    /// Only clients in these countries (ISO 3166-1 alpha-2); `null` allows every country.
    #[schema(required = true)]
    allow_countries: Option<Vec<String>>,
    /// Never clients in these countries.
    deny_countries: Vec<String>,
}

/// A tenant policy's rules (docs/API.md, "Tenant policies"); `null` is no rule.
#[derive(ToSchema)]
#[schema(as = TenantPolicy)]
#[allow(dead_code)]
pub struct TenantPolicySchema {
    /// Tokens must expire at most this many days after they are made.
    #[schema(required = true)]
    max_token_lifetime_days: Option<u32>,
    /// Tokens must have an expiry.
    require_expiry: bool,
    /// Only these kinds may be made.
    #[schema(value_type = Option<Vec<TokenKindSchema>>, required = true)]
    allowed_kinds: Option<Vec<String>>,
    /// Tokens must name an IP allowlist.
    require_ip_allowlist: bool,
    /// Tokens unused this many days are revoked.
    #[schema(required = true)]
    revoke_unused_after_days: Option<u32>,
    /// Client-credentials tokens' access tokens live at most this long.
    #[schema(required = true)]
    max_access_token_ttl_seconds: Option<u32>,
    /// Where the tenant's tokens may be used from.
    network: NetworkRulesSchema,
}
