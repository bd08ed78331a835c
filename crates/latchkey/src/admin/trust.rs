//! `latchkey trust …`: trust relationships (docs/API.md, "Trusts") that let CI jobs
//! exchange their platform's ID token for access tokens: create, list (all pages),
//! show, revoke.

use super::Format;
use super::client::Client;
use super::output::{emit, fields, items, table, text};
use super::token::duration_seconds;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

// Parsed once per run: the size of the create variant costs nothing worth boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Create a trust in a tenant: tokens of ISSUER for AUDIENCE whose subject matches
    /// SUBJECT (exact, or a prefix ending in `*`) get the grant.
    Create {
        /// The tenant id.
        tenant: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// The issuer's exact `iss`, e.g. https://token.actions.githubusercontent.com.
        #[arg(long)]
        issuer: String,
        /// The `aud` the issuer's tokens must carry.
        #[arg(long)]
        audience: String,
        /// The `sub` accepted, e.g. 'repo:acme/app:ref:refs/heads/main' or 'repo:acme/app:*'.
        #[arg(long)]
        subject: String,
        /// A claim that must be present and equal, NAME=VALUE (repeatable).
        #[arg(long = "claim", value_parser = claim)]
        claims: Vec<(String, String)>,
        /// A role granted (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A permission granted (repeatable).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Lifetime of the access tokens issued, e.g. 10m [default: the server's].
        #[arg(long, value_parser = duration_seconds)]
        access_token_ttl: Option<u32>,
        /// Accept a token's `jti` more than once (for platforms that retry with one token).
        #[arg(long)]
        allow_reuse: bool,
        /// The user who stands behind the trust; it grants no more than they hold.
        #[arg(long)]
        created_by: Option<String>,
    },
    /// List a tenant's trusts, newest first, revoked included.
    List {
        /// The tenant id.
        tenant: String,
    },
    /// Show one trust.
    Show {
        /// The trust id.
        id: String,
    },
    /// Revoke a trust: it stops at once, and its access tokens are revoked.
    Revoke {
        /// The trust id.
        id: String,
    },
}

fn claim(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(name, value)| !name.is_empty() && !value.is_empty())
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .ok_or_else(|| "must be NAME=VALUE".to_owned())
}

fn trust_text(trust: &Value) -> String {
    let claims = trust["claims"]
        .as_object()
        .map(|claims| {
            claims
                .iter()
                .map(|(name, value)| format!("{name}={}", text(value)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "-".to_owned());
    fields(&[
        ("id", text(&trust["id"])),
        ("tenant", text(&trust["tenant_id"])),
        ("name", text(&trust["name"])),
        ("issuer", text(&trust["issuer"])),
        ("audience", text(&trust["audience"])),
        ("subject", text(&trust["subject"])),
        ("claims", claims),
        ("roles", list_text(&trust["roles"])),
        ("permissions", list_text(&trust["permissions"])),
        (
            "access token ttl",
            format!("{}s", text(&trust["access_token_ttl_seconds"])),
        ),
        ("replay protection", text(&trust["replay_protection"])),
        ("created", text(&trust["created_at"])),
        ("revoked", text(&trust["revoked_at"])),
    ])
}

fn list_text(value: &Value) -> String {
    let names: Vec<String> = value
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "-".to_owned()
    } else {
        names.join(", ")
    }
}

pub async fn run(client: &Client, format: Format, command: TrustCommand) -> anyhow::Result<()> {
    match command {
        TrustCommand::Create {
            tenant,
            name,
            issuer,
            audience,
            subject,
            claims,
            roles,
            permissions,
            access_token_ttl,
            allow_reuse,
            created_by,
        } => {
            let claims: Map<String, Value> = claims
                .into_iter()
                .map(|(name, value)| (name, Value::String(value)))
                .collect();
            let mut body = json!({
                "name": name, "issuer": issuer, "audience": audience, "subject": subject,
                "claims": claims, "roles": roles, "permissions": permissions,
                "replay_protection": !allow_reuse,
            });
            if let Some(ttl) = access_token_ttl {
                body["access_token_ttl_seconds"] = json!(ttl);
            }
            if let Some(user) = created_by {
                body["created_by"] = json!(user);
            }
            let trust = client
                .send(Method::POST, &["v1", "tenants", &tenant, "trusts"], &body)
                .await?;
            emit(format, &trust, |t| {
                format!("created trust {}\n{}", text(&t["id"]), trust_text(t))
            });
        }
        TrustCommand::List { tenant } => {
            let list = client
                .list_all(&["v1", "tenants", &tenant, "trusts"])
                .await?;
            emit(format, &list, |list| {
                let rows = items(list)
                    .iter()
                    .map(|t| {
                        vec![
                            text(&t["id"]),
                            text(&t["name"]),
                            text(&t["issuer"]),
                            text(&t["subject"]),
                            if t["revoked_at"].is_null() {
                                "active".to_owned()
                            } else {
                                "revoked".to_owned()
                            },
                        ]
                    })
                    .collect();
                table(
                    &["ID", "NAME", "ISSUER", "SUBJECT", "STATE"],
                    rows,
                    "no trusts",
                )
            });
        }
        TrustCommand::Show { id } => {
            let trust = client.get(&["v1", "trusts", &id]).await?;
            emit(format, &trust, trust_text);
        }
        TrustCommand::Revoke { id } => {
            client.delete(&["v1", "trusts", &id]).await?;
            // 204: there is no response to print with --json.
            if format == Format::Text {
                println!("revoked trust {id}");
            }
        }
    }
    Ok(())
}
