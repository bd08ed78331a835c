//! Tenant policies at work (docs/API.md, "Tenant policies"): the rules in force for a
//! tenant (its own, tightened by the operator's floor), the check every create and roll
//! passes, the tokens a new policy finds in breach, and the sweep that revokes tokens
//! left unused.

use crate::service::error::Result;
use crate::service::state::AppState;
use crate::service::tokens::NewToken;
use latchkey_core::audit::AuditContext;
use latchkey_core::policy::{Candidate, TenantPolicy, Violation};
use latchkey_core::token::Token;
use latchkey_core::{TenantId, Timestamp, TokenId};
use std::collections::BTreeMap;

/// How many tokens the unused sweep reads per policy and round.
const SWEEP_BATCH: u32 = 500;
/// How many breaches a policy update lists.
pub const MAX_VIOLATIONS_LISTED: usize = 100;
/// How many live tokens of one tenant a policy update examines for breaches.
const MAX_EXAMINED: u32 = 100_000;

/// The rules in force for `tenant`: its own policy tightened by the operator's floor.
pub async fn effective(state: &AppState, tenant: &TenantId) -> Result<TenantPolicy> {
    let own = state.store().get_policy(tenant).await?;
    Ok(own
        .map(|stored| stored.policy)
        .unwrap_or_default()
        .stricter(&state.settings().policy_floor))
}

/// Checks a token about to be made at `now` against its tenant's policy in force, and
/// gives it the access-token lifetime the policy allows when its request named none.
pub async fn admit(state: &AppState, new: &mut NewToken, now: Timestamp) -> Result<()> {
    let policy = effective(state, new.owner.tenant_id()).await?;
    let ttl = *new.access_token_ttl_seconds.get_or_insert(
        policy.default_access_token_ttl(state.settings().default_access_token_ttl_seconds),
    );
    let label = format!("\"{}\"", new.name.as_str());
    let candidate = Candidate {
        kind: new.kind,
        start: now,
        expires_at: new.expires_at,
        has_ip_allowlist: !new.ip_allowlist.is_empty(),
        access_token_ttl_seconds: ttl,
        last_used_at: None,
        holds_builtin: false,
        label: &label,
    };
    policy
        .check_new(&candidate)
        .map_err(crate::service::error::Error::PolicyViolation)
}

/// A token as the rules see it. `holds_builtin` matters only to the unused rule.
pub fn candidate<'a>(token: &Token, label: &'a str, holds_builtin: bool) -> Candidate<'a> {
    Candidate {
        kind: token.kind,
        start: token.created_at,
        expires_at: token.expires_at,
        has_ip_allowlist: !token.ip_allowlist.is_empty(),
        access_token_ttl_seconds: token.access_token_ttl_seconds,
        last_used_at: token.last_used_at,
        holds_builtin,
        label,
    }
}

/// One token that breaks a policy, and the rules it breaks.
pub struct Breach {
    /// The token.
    pub token: Token,
    /// What it breaks.
    pub violations: Vec<Violation>,
}

/// The live tokens of `tenant` that break `policy` at `now`: the first
/// [`MAX_VIOLATIONS_LISTED`] and how many there are in all.
pub async fn breaches(
    state: &AppState,
    tenant: &TenantId,
    policy: &TenantPolicy,
    now: Timestamp,
) -> Result<(Vec<Breach>, usize)> {
    let tokens = state
        .store()
        .live_tokens(Some(tenant), None, now, MAX_EXAMINED)
        .await?;
    let mut listed = Vec::new();
    let mut total = 0;
    for token in tokens {
        let builtin =
            policy.revoke_unused_after_days.is_some() && holds_builtin(state, &token).await?;
        let label = token.id.to_string();
        let violations = policy.violations(&candidate(&token, &label, builtin), now);
        if violations.is_empty() {
            continue;
        }
        total += 1;
        if listed.len() < MAX_VIOLATIONS_LISTED {
            listed.push(Breach { token, violations });
        }
    }
    Ok((listed, total))
}

/// Whether the token holds a built-in permission, directly or through its roles now:
/// the unused sweep never revokes such a token (an operator's admin key must not lapse
/// by a tenant's rule).
async fn holds_builtin(state: &AppState, token: &Token) -> Result<bool> {
    if token.permissions.iter().any(|p| p.is_builtin()) {
        return Ok(true);
    }
    Ok(state
        .token(token.id)
        .await?
        .is_some_and(|cached| cached.effective.iter().any(|p| p.is_builtin())))
}

/// Revokes the tokens that every policy in force says have been unused too long, with
/// reason `unused` (docs/API.md, "Tenant policies"). The operator's floor binds every
/// tenant, each tenant's own policy its own tokens. Returns the ids revoked.
pub async fn sweep_unused(state: &AppState, now: Timestamp) -> Result<Vec<TokenId>> {
    let floor = &state.settings().policy_floor;
    // Each tenant with a stricter rule of its own is swept by it; the floor sweeps all.
    let mut scopes: Vec<(Option<TenantId>, u32)> = Vec::new();
    if let Some(days) = floor.revoke_unused_after_days {
        scopes.push((None, days));
    }
    for (tenant, own) in state.store().list_policies().await? {
        if let Some(days) = own.stricter(floor).revoke_unused_after_days
            && floor.revoke_unused_after_days != Some(days)
        {
            scopes.push((Some(tenant), days));
        }
    }
    let mut due: BTreeMap<TokenId, Timestamp> = BTreeMap::new();
    for (tenant, days) in scopes {
        let idle_since = now.plus_seconds(-i64::from(days) * 86_400);
        let tokens = state
            .store()
            .live_tokens(tenant.as_ref(), Some(idle_since), now, SWEEP_BATCH)
            .await?;
        for token in tokens {
            if !holds_builtin(state, &token).await? {
                // Of two rules, the later instant is the stricter.
                let entry = due.entry(token.id).or_insert(idle_since);
                *entry = (*entry).max(idle_since);
            }
        }
    }
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let due: Vec<(TokenId, Timestamp)> = due.into_iter().collect();
    let revoked = state
        .store()
        .revoke_unused(&due, &AuditContext::system(now))
        .await?;
    if !revoked.is_empty() {
        state.auth_changed();
    }
    Ok(revoked)
}
