//! Tenant policies (docs/API.md, "Tenant policies"): rules that every token of a tenant
//! must follow when it is created or rolled, and how long an unused token lives.
//!
//! Two policies bind a tenant: the operator's floor (`[policy_floor]` in the server's
//! configuration) and the tenant's own. A tenant may only tighten the floor, so the
//! rules in force — the *effective* policy — are the stricter of the two, rule by rule.

use crate::Timestamp;
use crate::network::NetworkRules;
use crate::token::TokenKind;
use serde::{Deserialize, Serialize};

/// The longest `max_token_lifetime_days` a policy may name: 100 years.
pub const MAX_LIFETIME_DAYS: u32 = 36_500;
/// The longest `revoke_unused_after_days` a policy may name: 10 years.
pub const MAX_UNUSED_DAYS: u32 = 3_650;

const DAY_SECONDS: i64 = 86_400;

/// A policy. Every rule is optional: `null` or `false` is no rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPolicy {
    /// Tokens must expire at most this many days after they are made.
    #[serde(default)]
    pub max_token_lifetime_days: Option<u32>,
    /// Tokens must have an expiry.
    #[serde(default)]
    pub require_expiry: bool,
    /// Only these kinds may be made; `None` allows every kind.
    #[serde(default)]
    pub allowed_kinds: Option<Vec<TokenKind>>,
    /// Tokens must name an IP allowlist.
    #[serde(default)]
    pub require_ip_allowlist: bool,
    /// Tokens not used for this many days are revoked (reason `unused`).
    #[serde(default)]
    pub revoke_unused_after_days: Option<u32>,
    /// Client-credentials tokens' access tokens live at most this long.
    #[serde(default)]
    pub max_access_token_ttl_seconds: Option<u32>,
    /// Where the tenant's tokens may be used from (docs/API.md, "Where tokens may be
    /// used from").
    #[serde(default)]
    pub network: NetworkRules,
    /// Access tokens are issued only against a DPoP proof, bound to its key
    /// (docs/API.md, "DPoP"); the kinds that cannot carry a proof (`api_key`, `jwt`)
    /// may not be made.
    #[serde(default)]
    pub require_dpop: bool,
}

/// A rule of a policy, named as its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyRule {
    /// `max_token_lifetime_days`.
    MaxTokenLifetimeDays,
    /// `require_expiry`.
    RequireExpiry,
    /// `allowed_kinds`.
    AllowedKinds,
    /// `require_ip_allowlist`.
    RequireIpAllowlist,
    /// `revoke_unused_after_days`.
    RevokeUnusedAfterDays,
    /// `max_access_token_ttl_seconds`.
    MaxAccessTokenTtlSeconds,
    /// `require_dpop`.
    RequireDpop,
}

impl PolicyRule {
    /// The rule's field name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MaxTokenLifetimeDays => "max_token_lifetime_days",
            Self::RequireExpiry => "require_expiry",
            Self::AllowedKinds => "allowed_kinds",
            Self::RequireIpAllowlist => "require_ip_allowlist",
            Self::RevokeUnusedAfterDays => "revoke_unused_after_days",
            Self::MaxAccessTokenTtlSeconds => "max_access_token_ttl_seconds",
            Self::RequireDpop => "require_dpop",
        }
    }
}

/// A token as the rules see it: what it is and when it starts to live.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// How it is presented.
    pub kind: TokenKind,
    /// When it was (or is being) made: its lifetime counts from here.
    pub start: Timestamp,
    /// When it stops authenticating.
    pub expires_at: Option<Timestamp>,
    /// Whether it names an IP allowlist.
    pub has_ip_allowlist: bool,
    /// Its access tokens' lifetime.
    pub access_token_ttl_seconds: u32,
    /// Its last successful authentication, if any.
    pub last_used_at: Option<Timestamp>,
    /// Whether it holds a built-in permission: the unused sweep never revokes those.
    pub holds_builtin: bool,
    /// For messages: its id or name.
    pub label: &'a str,
}

/// A rule a token breaks, with the sentence that says how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: PolicyRule,
    /// What is wrong, in a sentence about the token.
    pub detail: String,
}

/// Why a policy cannot be set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl PolicyError {
    fn new(field: PolicyRule, reason: impl Into<String>) -> Self {
        Self::at(field.as_str(), reason)
    }

    fn at(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl TenantPolicy {
    /// True when the policy names no rule at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks the values on their own: in range and not contradictory.
    /// `max_ttl` is the server's longest access-token lifetime.
    pub fn validate(&self, max_ttl: u32) -> Result<(), PolicyError> {
        use PolicyRule::*;
        if let Some(days) = self.max_token_lifetime_days
            && !(1..=MAX_LIFETIME_DAYS).contains(&days)
        {
            return Err(PolicyError::new(
                MaxTokenLifetimeDays,
                format!("must be between 1 and {MAX_LIFETIME_DAYS}"),
            ));
        }
        if let Some(days) = self.revoke_unused_after_days
            && !(1..=MAX_UNUSED_DAYS).contains(&days)
        {
            return Err(PolicyError::new(
                RevokeUnusedAfterDays,
                format!("must be between 1 and {MAX_UNUSED_DAYS}"),
            ));
        }
        if let Some(ttl) = self.max_access_token_ttl_seconds
            && !(1..=max_ttl).contains(&ttl)
        {
            return Err(PolicyError::new(
                MaxAccessTokenTtlSeconds,
                format!("must be between 1 and {max_ttl}, the server's longest"),
            ));
        }
        if let Some(kinds) = &self.allowed_kinds {
            if kinds.is_empty() {
                return Err(PolicyError::new(
                    AllowedKinds,
                    "must name at least one kind; null allows every kind",
                ));
            }
            let mut sorted = kinds.clone();
            sorted.sort_by_key(|kind| kind.as_str());
            sorted.dedup();
            if sorted.len() != kinds.len() {
                return Err(PolicyError::new(AllowedKinds, "names a kind twice"));
            }
        }
        // An access-token limit only binds client-credentials tokens: a policy that both
        // sets one and forbids the only kind it binds says two things that cannot both
        // be meant.
        if self.max_access_token_ttl_seconds.is_some()
            && self
                .allowed_kinds
                .as_ref()
                .is_some_and(|kinds| !kinds.contains(&TokenKind::ClientCredentials))
        {
            return Err(PolicyError::new(
                MaxAccessTokenTtlSeconds,
                "binds only client_credentials tokens, which allowed_kinds forbids",
            ));
        }
        // Only client-credentials tokens can show a proof; a policy that requires one
        // and allows no such token could never be met.
        if self.require_dpop
            && self
                .allowed_kinds
                .as_ref()
                .is_some_and(|kinds| !kinds.contains(&TokenKind::ClientCredentials))
        {
            return Err(PolicyError::new(
                RequireDpop,
                "binds only client_credentials tokens, which allowed_kinds forbids",
            ));
        }
        self.network
            .validate()
            .map_err(|(field, reason)| PolicyError::at(field, reason))
    }

    /// Refuses a tenant policy that loosens `floor`, rule by rule: a bound the floor
    /// sets may only be lowered, a kind list only narrowed. A rule the tenant leaves
    /// unset keeps the floor's.
    pub fn check_within(&self, floor: &TenantPolicy) -> Result<(), PolicyError> {
        use PolicyRule::*;
        let bounds = [
            (
                MaxTokenLifetimeDays,
                self.max_token_lifetime_days,
                floor.max_token_lifetime_days,
            ),
            (
                RevokeUnusedAfterDays,
                self.revoke_unused_after_days,
                floor.revoke_unused_after_days,
            ),
            (
                MaxAccessTokenTtlSeconds,
                self.max_access_token_ttl_seconds,
                floor.max_access_token_ttl_seconds,
            ),
        ];
        for (rule, own, floor) in bounds {
            if let (Some(own), Some(floor)) = (own, floor)
                && own > floor
            {
                return Err(PolicyError::new(
                    rule,
                    format!("must be at most {floor}, the operator's policy floor"),
                ));
            }
        }
        if let (Some(own), Some(floor)) = (&self.allowed_kinds, &floor.allowed_kinds)
            && let Some(kind) = own.iter().find(|kind| !floor.contains(kind))
        {
            return Err(PolicyError::new(
                AllowedKinds,
                format!(
                    "names {}, which the operator's policy floor does not allow",
                    kind.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// The rules in force when both `self` and `other` bind: the stricter of each.
    pub fn stricter(&self, other: &TenantPolicy) -> TenantPolicy {
        fn min(a: Option<u32>, b: Option<u32>) -> Option<u32> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        let allowed_kinds = match (&self.allowed_kinds, &other.allowed_kinds) {
            (Some(a), Some(b)) => Some(a.iter().filter(|k| b.contains(k)).copied().collect()),
            (a, b) => a.clone().or_else(|| b.clone()),
        };
        TenantPolicy {
            max_token_lifetime_days: min(
                self.max_token_lifetime_days,
                other.max_token_lifetime_days,
            ),
            require_expiry: self.require_expiry || other.require_expiry,
            allowed_kinds,
            require_ip_allowlist: self.require_ip_allowlist || other.require_ip_allowlist,
            revoke_unused_after_days: min(
                self.revoke_unused_after_days,
                other.revoke_unused_after_days,
            ),
            max_access_token_ttl_seconds: min(
                self.max_access_token_ttl_seconds,
                other.max_access_token_ttl_seconds,
            ),
            // The floor holds no network rules (the server refuses them there): an
            // operator restricts networks at its edge, for every tenant alike.
            network: if self.network.is_empty() {
                other.network.clone()
            } else {
                self.network.clone()
            },
            require_dpop: self.require_dpop || other.require_dpop,
        }
    }

    /// The access-token lifetime a new client-credentials token gets when its request
    /// names none: the server's default, lowered to the policy's bound.
    pub fn default_access_token_ttl(&self, server_default: u32) -> u32 {
        self.max_access_token_ttl_seconds
            .map_or(server_default, |max| max.min(server_default))
    }

    /// The first rule a new token breaks, in the order of [`PolicyRule`]; the unused
    /// rule binds only tokens already made.
    pub fn check_new(&self, token: &Candidate<'_>) -> Result<(), Violation> {
        match self.rules_broken(token).into_iter().next() {
            Some(violation) => Err(violation),
            None => Ok(()),
        }
    }

    /// Every rule an existing token breaks at `now`, including the unused rule.
    pub fn violations(&self, token: &Candidate<'_>, now: Timestamp) -> Vec<Violation> {
        let mut broken = self.rules_broken(token);
        if let Some(days) = self.revoke_unused_after_days
            && !token.holds_builtin
            && token.last_used_at.unwrap_or(token.start) <= now.plus_seconds(-days_seconds(days))
        {
            broken.push(Violation {
                rule: PolicyRule::RevokeUnusedAfterDays,
                detail: format!(
                    "token {} has not been used for {days} days and will be revoked",
                    token.label
                ),
            });
        }
        broken
    }

    fn rules_broken(&self, token: &Candidate<'_>) -> Vec<Violation> {
        let mut broken = Vec::new();
        let label = token.label;
        if let Some(days) = self.max_token_lifetime_days {
            let limit = token.start.plus_seconds(days_seconds(days));
            if token.expires_at.is_none_or(|expiry| expiry > limit) {
                broken.push(Violation {
                    rule: PolicyRule::MaxTokenLifetimeDays,
                    detail: format!("token {label} must expire within {days} days"),
                });
            }
        }
        if self.require_expiry && token.expires_at.is_none() {
            broken.push(Violation {
                rule: PolicyRule::RequireExpiry,
                detail: format!("token {label} must have an expiry (expires_at)"),
            });
        }
        if let Some(kinds) = &self.allowed_kinds
            && !kinds.contains(&token.kind)
        {
            let names: Vec<&str> = kinds.iter().map(|kind| kind.as_str()).collect();
            broken.push(Violation {
                rule: PolicyRule::AllowedKinds,
                detail: format!(
                    "token {label} is of kind {}; the policy allows {}",
                    token.kind.as_str(),
                    names.join(", ")
                ),
            });
        }
        if self.require_ip_allowlist && !token.has_ip_allowlist {
            broken.push(Violation {
                rule: PolicyRule::RequireIpAllowlist,
                detail: format!("token {label} must name an ip_allowlist"),
            });
        }
        if self.require_dpop && token.kind != TokenKind::ClientCredentials {
            broken.push(Violation {
                rule: PolicyRule::RequireDpop,
                detail: format!(
                    "token {label} is of kind {}, which cannot carry a DPoP proof; the policy requires DPoP",
                    token.kind.as_str()
                ),
            });
        }
        if let Some(max) = self.max_access_token_ttl_seconds
            && token.kind == TokenKind::ClientCredentials
            && token.access_token_ttl_seconds > max
        {
            broken.push(Violation {
                rule: PolicyRule::MaxAccessTokenTtlSeconds,
                detail: format!(
                    "token {label}'s access tokens may live at most {max} seconds, not {}",
                    token.access_token_ttl_seconds
                ),
            });
        }
        broken
    }
}

fn days_seconds(days: u32) -> i64 {
    i64::from(days) * DAY_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn candidate(kind: TokenKind) -> Candidate<'static> {
        Candidate {
            kind,
            start: NOW,
            expires_at: Some(NOW.plus_seconds(10 * DAY_SECONDS)),
            has_ip_allowlist: true,
            access_token_ttl_seconds: 600,
            last_used_at: None,
            holds_builtin: false,
            label: "t",
        }
    }

    fn rules(policy: &TenantPolicy, token: &Candidate<'_>) -> Vec<PolicyRule> {
        policy
            .violations(token, NOW)
            .into_iter()
            .map(|v| v.rule)
            .collect()
    }

    #[test]
    fn each_rule_refuses_what_it_names_and_passes_the_rest() {
        let token = candidate(TokenKind::ClientCredentials);
        let policy = TenantPolicy {
            max_token_lifetime_days: Some(10),
            require_expiry: true,
            allowed_kinds: Some(vec![TokenKind::ClientCredentials]),
            require_ip_allowlist: true,
            revoke_unused_after_days: Some(30),
            max_access_token_ttl_seconds: Some(600),
            network: NetworkRules::default(),
            require_dpop: true,
        };
        assert_eq!(rules(&policy, &token), vec![]);

        let longer = Candidate {
            expires_at: Some(NOW.plus_seconds(10 * DAY_SECONDS + 1)),
            ..token
        };
        assert_eq!(
            rules(&policy, &longer),
            vec![PolicyRule::MaxTokenLifetimeDays]
        );
        let forever = Candidate {
            expires_at: None,
            ..token
        };
        assert_eq!(
            rules(&policy, &forever),
            vec![PolicyRule::MaxTokenLifetimeDays, PolicyRule::RequireExpiry]
        );
        let api_key = candidate(TokenKind::ApiKey);
        // An api key cannot carry a DPoP proof either.
        assert_eq!(
            rules(&policy, &api_key),
            vec![PolicyRule::AllowedKinds, PolicyRule::RequireDpop]
        );
        let any_kind = TenantPolicy {
            allowed_kinds: None,
            ..policy.clone()
        };
        assert_eq!(rules(&any_kind, &api_key), vec![PolicyRule::RequireDpop]);
        let open = Candidate {
            has_ip_allowlist: false,
            ..token
        };
        assert_eq!(rules(&policy, &open), vec![PolicyRule::RequireIpAllowlist]);
        let slow = Candidate {
            access_token_ttl_seconds: 601,
            ..token
        };
        assert_eq!(
            rules(&policy, &slow),
            vec![PolicyRule::MaxAccessTokenTtlSeconds]
        );
    }

    #[test]
    fn the_access_token_bound_binds_only_client_credentials() {
        let policy = TenantPolicy {
            max_access_token_ttl_seconds: Some(60),
            ..TenantPolicy::default()
        };
        let api_key = Candidate {
            access_token_ttl_seconds: 3600,
            ..candidate(TokenKind::ApiKey)
        };
        assert!(policy.check_new(&api_key).is_ok());
        assert_eq!(policy.default_access_token_ttl(3600), 60);
        assert_eq!(TenantPolicy::default().default_access_token_ttl(3600), 3600);
    }

    #[test]
    fn unused_counts_from_the_last_use_or_the_creation_and_spares_builtin_holders() {
        let policy = TenantPolicy {
            revoke_unused_after_days: Some(30),
            ..TenantPolicy::default()
        };
        let old = Candidate {
            start: NOW.plus_seconds(-31 * DAY_SECONDS),
            ..candidate(TokenKind::ApiKey)
        };
        assert_eq!(
            rules(&policy, &old),
            vec![PolicyRule::RevokeUnusedAfterDays]
        );
        assert!(policy.check_new(&old).is_ok(), "binds only existing tokens");
        let used = Candidate {
            last_used_at: Some(NOW.plus_seconds(-29 * DAY_SECONDS)),
            ..old
        };
        assert_eq!(rules(&policy, &used), vec![]);
        let admin = Candidate {
            holds_builtin: true,
            ..old
        };
        assert_eq!(rules(&policy, &admin), vec![]);
    }

    #[test]
    fn validation_refuses_out_of_range_and_contradictory_values() {
        let field = |policy: TenantPolicy| policy.validate(3600).err().map(|e| e.field);
        assert_eq!(field(TenantPolicy::default()), None);
        for (policy, expected) in [
            (
                TenantPolicy {
                    max_token_lifetime_days: Some(0),
                    ..TenantPolicy::default()
                },
                "max_token_lifetime_days",
            ),
            (
                TenantPolicy {
                    max_token_lifetime_days: Some(MAX_LIFETIME_DAYS + 1),
                    ..TenantPolicy::default()
                },
                "max_token_lifetime_days",
            ),
            (
                TenantPolicy {
                    revoke_unused_after_days: Some(0),
                    ..TenantPolicy::default()
                },
                "revoke_unused_after_days",
            ),
            (
                TenantPolicy {
                    max_access_token_ttl_seconds: Some(3601),
                    ..TenantPolicy::default()
                },
                "max_access_token_ttl_seconds",
            ),
            (
                TenantPolicy {
                    allowed_kinds: Some(vec![]),
                    ..TenantPolicy::default()
                },
                "allowed_kinds",
            ),
            (
                TenantPolicy {
                    allowed_kinds: Some(vec![TokenKind::Jwt, TokenKind::Jwt]),
                    ..TenantPolicy::default()
                },
                "allowed_kinds",
            ),
            (
                TenantPolicy {
                    allowed_kinds: Some(vec![TokenKind::ApiKey]),
                    max_access_token_ttl_seconds: Some(60),
                    ..TenantPolicy::default()
                },
                "max_access_token_ttl_seconds",
            ),
        ] {
            assert_eq!(field(policy), Some(expected));
        }
    }

    #[test]
    fn a_tenant_may_tighten_the_floor_but_not_loosen_it() {
        let floor = TenantPolicy {
            max_token_lifetime_days: Some(90),
            allowed_kinds: Some(vec![TokenKind::ClientCredentials, TokenKind::ApiKey]),
            require_expiry: true,
            ..TenantPolicy::default()
        };
        let tighter = TenantPolicy {
            max_token_lifetime_days: Some(30),
            allowed_kinds: Some(vec![TokenKind::ApiKey]),
            revoke_unused_after_days: Some(60),
            ..TenantPolicy::default()
        };
        assert!(tighter.check_within(&floor).is_ok());
        let effective = tighter.stricter(&floor);
        assert_eq!(effective.max_token_lifetime_days, Some(30));
        assert!(effective.require_expiry, "the floor's requirement stays");
        assert_eq!(effective.allowed_kinds, Some(vec![TokenKind::ApiKey]));
        assert_eq!(effective.revoke_unused_after_days, Some(60));

        let looser = TenantPolicy {
            max_token_lifetime_days: Some(91),
            ..TenantPolicy::default()
        };
        assert_eq!(
            looser.check_within(&floor).unwrap_err().field,
            "max_token_lifetime_days"
        );
        let wider = TenantPolicy {
            allowed_kinds: Some(vec![TokenKind::Jwt]),
            ..TenantPolicy::default()
        };
        assert_eq!(
            wider.check_within(&floor).unwrap_err().field,
            "allowed_kinds"
        );
        // Unset rules inherit the floor's.
        assert_eq!(TenantPolicy::default().stricter(&floor), floor);
    }
}
