//! Tenant policies on the management API (docs/API.md, "Tenant policies"): the body of
//! `PUT /v1/tenants/{tid}/policy` and the resource both `GET` and `PUT` answer with.

use latchkey_core::policy::{PolicyRule, TenantPolicy};
use latchkey_core::token::{Owner, TokenKind, TokenName};
use latchkey_core::{TenantId, Timestamp, TokenId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `PUT /v1/tenants/{tid}/policy`: the whole policy, in the client's text.
/// An absent rule is no rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutPolicy {
    /// Tokens must expire at most this many days after they are made.
    #[serde(default)]
    pub max_token_lifetime_days: Option<i64>,
    /// Tokens must have an expiry.
    #[serde(default)]
    pub require_expiry: bool,
    /// Only these kinds may be made.
    #[schema(value_type = Option<Vec<crate::schema::TokenKindSchema>>)]
    #[serde(default)]
    pub allowed_kinds: Option<Vec<String>>,
    /// Tokens must name an IP allowlist.
    #[serde(default)]
    pub require_ip_allowlist: bool,
    /// Tokens unused this many days are revoked.
    #[serde(default)]
    pub revoke_unused_after_days: Option<i64>,
    /// Client-credentials tokens' access tokens live at most this long.
    #[serde(default)]
    pub max_access_token_ttl_seconds: Option<i64>,
    /// Where the tenant's tokens may be used from; absent is no rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<PutNetwork>,
    /// Access tokens only against a DPoP proof (docs/API.md, "DPoP").
    #[serde(default)]
    pub require_dpop: bool,
}

/// The `network` rules of a [`PutPolicy`], in the client's text (CIDR networks).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PutNetwork {
    /// Only these networks; absent or `null` allows every address.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Never these networks.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Only clients in these countries (ISO 3166-1 alpha-2); absent or `null` allows
    /// every country.
    #[serde(default)]
    pub allow_countries: Option<Vec<String>>,
    /// Never clients in these countries.
    #[serde(default)]
    pub deny_countries: Vec<String>,
}

/// A tenant's policy: its own rules, the rules in force once the operator's floor is
/// applied, and, in the answer to a `PUT`, the live tokens that break them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyResource {
    /// The tenant.
    #[schema(value_type = String)]
    pub tenant_id: TenantId,
    /// The tenant's own rules, as last set (all unset when never set).
    #[schema(value_type = crate::schema::TenantPolicySchema)]
    pub policy: TenantPolicy,
    /// The rules in force: the tenant's, tightened by the operator's floor.
    #[schema(value_type = crate::schema::TenantPolicySchema)]
    pub effective: TenantPolicy,
    /// When the tenant's policy was last set; `null` when never.
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub updated_at: Option<Timestamp>,
    /// Only in the answer to a `PUT`: the live tokens that break the rules in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violations: Option<PolicyViolations>,
}

/// The live tokens that break a policy: the first 100, and how many in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyViolations {
    /// How many live tokens break it.
    pub total: u64,
    /// The first of them (at most 100), least recently used first.
    pub tokens: Vec<PolicyBreach>,
}

/// One token that breaks a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyBreach {
    /// The token.
    #[schema(value_type = String, format = Uuid)]
    pub id: TokenId,
    /// Its display name.
    #[schema(value_type = String)]
    pub name: TokenName,
    /// Its kind.
    #[schema(value_type = crate::schema::TokenKindSchema)]
    pub kind: TokenKind,
    /// Its owner.
    #[schema(value_type = crate::schema::OwnerSchema)]
    pub owner: Owner,
    /// The rules it breaks.
    #[schema(value_type = Vec<crate::schema::PolicyRuleSchema>)]
    pub rules: Vec<PolicyRule>,
}
