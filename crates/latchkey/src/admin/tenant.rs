//! `latchkey tenant …`: create a tenant, list every tenant (all pages), show or set a
//! tenant's policy (docs/API.md, "Tenant policies").

use super::Format;
use super::client::Client;
use super::output::{emit, emit_read, fields, items, table, text};
use super::token::duration_seconds;
use clap::{Args, Subcommand};
use latchkey_core::policy::TenantPolicy;
use latchkey_wire::{CreateTenant, PolicyResource, PutNetwork, PutPolicy};
use reqwest::Method;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (needs latchkey:admin).
    Create {
        /// The tenant id your application uses: 1–128 of [A-Za-z0-9._-].
        id: String,
        /// Display name [default: the id].
        #[arg(long)]
        name: Option<String>,
    },
    /// List every tenant (needs latchkey:admin).
    List,
    /// Show or set a tenant's policy: rules its tokens must follow.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the tenant's own rules and the rules in force (with the operator's floor).
    Show {
        /// The tenant id.
        tenant: String,
    },
    /// Replace the tenant's whole policy: a rule not given here is removed. Lists the
    /// live tokens that break the new rules.
    Set {
        /// The tenant id.
        tenant: String,
        #[command(flatten)]
        rules: PolicyRules,
    },
}

#[derive(Debug, Args)]
pub struct PolicyRules {
    /// Tokens must expire within this long of being made, e.g. 90d.
    #[arg(long, value_parser = duration_days)]
    max_lifetime: Option<i64>,
    /// Tokens must have an expiry.
    #[arg(long)]
    require_expiry: bool,
    /// Only these kinds may be made: client_credentials, api_key, jwt (comma-separated).
    #[arg(long, value_delimiter = ',')]
    allowed_kinds: Option<Vec<String>>,
    /// Tokens must name an IP allowlist.
    #[arg(long)]
    require_ip_allowlist: bool,
    /// Revoke tokens not used for this long, e.g. 60d.
    #[arg(long, value_parser = duration_days)]
    revoke_unused_after: Option<i64>,
    /// Client-credentials tokens' access tokens live at most this long, e.g. 15m.
    #[arg(long, value_parser = duration_seconds)]
    max_access_token_ttl: Option<u32>,
    /// Tokens may be used only from these networks (CIDR, comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    allow_network: Vec<String>,
    /// Tokens may never be used from these networks (CIDR); a deny wins over an allow.
    #[arg(long, value_delimiter = ',')]
    deny_network: Vec<String>,
    /// Tokens may be used only from these countries (ISO codes such as DE; needs the
    /// server's geoip_database_file).
    #[arg(long, value_delimiter = ',')]
    allow_country: Vec<String>,
    /// Tokens may never be used from these countries.
    #[arg(long, value_delimiter = ',')]
    deny_country: Vec<String>,
    /// Access tokens only against a DPoP proof, bound to its key; no api_key or jwt
    /// tokens.
    #[arg(long)]
    require_dpop: bool,
}

/// A duration in whole days, such as `90d`.
fn duration_days(text: &str) -> Result<i64, String> {
    let seconds = duration_seconds(text)?;
    if seconds % 86_400 != 0 {
        return Err("must be whole days, e.g. 90d".to_owned());
    }
    Ok(i64::from(seconds / 86_400))
}

impl From<PolicyRules> for PutPolicy {
    fn from(rules: PolicyRules) -> Self {
        Self {
            max_token_lifetime_days: rules.max_lifetime,
            require_expiry: rules.require_expiry,
            allowed_kinds: rules.allowed_kinds,
            require_ip_allowlist: rules.require_ip_allowlist,
            revoke_unused_after_days: rules.revoke_unused_after,
            max_access_token_ttl_seconds: rules.max_access_token_ttl.map(i64::from),
            network: (!rules.allow_network.is_empty()
                || !rules.deny_network.is_empty()
                || !rules.allow_country.is_empty()
                || !rules.deny_country.is_empty())
            .then(|| PutNetwork {
                allow: (!rules.allow_network.is_empty()).then_some(rules.allow_network),
                deny: rules.deny_network,
                allow_countries: (!rules.allow_country.is_empty()).then_some(rules.allow_country),
                deny_countries: rules.deny_country,
            }),
            require_dpop: rules.require_dpop,
        }
    }
}

/// One policy's rules as `label: value` lines; unset rules read `-`.
fn rules_text(policy: &TenantPolicy) -> Vec<(&'static str, String)> {
    let bound =
        |value: Option<u32>, unit: &str| value.map_or("-".to_owned(), |n| format!("{n}{unit}"));
    let flag = |on: bool| if on { "yes" } else { "no" }.to_owned();
    vec![
        ("max lifetime", bound(policy.max_token_lifetime_days, "d")),
        ("require expiry", flag(policy.require_expiry)),
        (
            "allowed kinds",
            policy
                .allowed_kinds
                .as_ref()
                .map_or("all".to_owned(), |kinds| {
                    kinds
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
        ),
        ("require ip allowlist", flag(policy.require_ip_allowlist)),
        (
            "revoke unused after",
            bound(policy.revoke_unused_after_days, "d"),
        ),
        (
            "max access token ttl",
            bound(policy.max_access_token_ttl_seconds, "s"),
        ),
        (
            "allowed networks",
            policy
                .network
                .allow
                .as_ref()
                .map_or("all".to_owned(), |nets| {
                    nets.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
        ),
        (
            "allowed countries",
            policy
                .network
                .allow_countries
                .as_ref()
                .map_or("all".to_owned(), |ccs| {
                    ccs.iter()
                        .map(|cc| cc.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }),
        ),
        (
            "denied countries",
            if policy.network.deny_countries.is_empty() {
                "-".to_owned()
            } else {
                let ccs: Vec<&str> = policy
                    .network
                    .deny_countries
                    .iter()
                    .map(|cc| cc.as_str())
                    .collect();
                ccs.join(", ")
            },
        ),
        (
            "denied networks",
            if policy.network.deny.is_empty() {
                "-".to_owned()
            } else {
                let nets: Vec<String> = policy
                    .network
                    .deny
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                nets.join(", ")
            },
        ),
    ]
}

fn policy_text(policy: &PolicyResource) -> String {
    let mut out = format!("policy of tenant {}", policy.tenant_id);
    match policy.updated_at {
        Some(at) => out.push_str(&format!(" (set {})\n", at.to_rfc3339())),
        None => out.push_str(" (never set)\n"),
    }
    out.push_str("in force (with the operator's floor):\n");
    out.push_str(&fields(&rules_text(&policy.effective)));
    if policy.policy != policy.effective {
        out.push_str("\nthe tenant's own:\n");
        out.push_str(&fields(&rules_text(&policy.policy)));
    }
    if let Some(violations) = &policy.violations {
        out.push('\n');
        if violations.total == 0 {
            out.push_str("no live token breaks it");
        } else {
            let rows = violations
                .tokens
                .iter()
                .map(|breach| {
                    let rules: Vec<&str> = breach.rules.iter().map(|r| r.as_str()).collect();
                    vec![
                        breach.id.to_string(),
                        breach.name.as_str().to_owned(),
                        breach.kind.as_str().to_owned(),
                        rules.join(", "),
                    ]
                })
                .collect();
            out.push_str(&format!(
                "{} live token(s) break it (existing tokens are not changed):\n",
                violations.total
            ));
            out.push_str(&table(&["ID", "NAME", "KIND", "BREAKS"], rows, ""));
        }
    }
    out
}

pub async fn run(client: &Client, format: Format, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { id, name } => {
            let body = CreateTenant { id, name };
            let tenant = client.send(Method::POST, &["v1", "tenants"], &body).await?;
            emit(format, &tenant, |t| {
                format!("created tenant {} ({})", text(&t["id"]), text(&t["name"]))
            });
        }
        TenantCommand::List => {
            let list = client.list_all(&["v1", "tenants"]).await?;
            emit(format, &list, |list| {
                let rows = items(list)
                    .iter()
                    .map(|t| vec![text(&t["id"]), text(&t["name"]), text(&t["created_at"])])
                    .collect();
                table(&["ID", "NAME", "CREATED"], rows, "no tenants")
            });
        }
        TenantCommand::Policy(PolicyCommand::Show { tenant }) => {
            let policy = client.get(&["v1", "tenants", &tenant, "policy"]).await?;
            emit_read(format, &policy, policy_text)?;
        }
        TenantCommand::Policy(PolicyCommand::Set { tenant, rules }) => {
            let body = PutPolicy::from(rules);
            let policy = client
                .send(Method::PUT, &["v1", "tenants", &tenant, "policy"], &body)
                .await?;
            emit_read(format, &policy, policy_text)?;
        }
    }
    Ok(())
}
