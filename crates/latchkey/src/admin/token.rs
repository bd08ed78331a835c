//! `latchkey token …`: create, list, show, rename and revoke tenant and personal tokens.
//!
//! Secrets: the create response is the only one that carries a secret, and `create` is
//! the only command that prints one, once, labelled and with a warning. Everything else
//! shows at most the server's `secret_hint`.

use super::Format;
use super::client::{Client, printable};
use super::output::{emit, fields, items, table, text};
use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a tenant token, or a personal token with --user; prints its secret once.
    Create(CreateArgs),
    /// List a tenant's tokens, or one user's personal tokens with --user.
    List {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// List this user's personal tokens instead of the tenant's.
        #[arg(long)]
        user: Option<String>,
    },
    /// Show one token.
    Show {
        /// The token id.
        id: String,
    },
    /// Change a token's display name, the only thing about it that can change.
    Rename {
        /// The token id.
        id: String,
        /// The new name.
        name: String,
    },
    /// Revoke a token; it stops authenticating at once.
    Revoke {
        /// The token id.
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The tenant the token belongs to.
    #[arg(long)]
    tenant: String,
    /// Make a personal token of this member; it can hold only what the user holds.
    #[arg(long)]
    user: Option<String>,
    /// Display name, e.g. "ci deploy".
    #[arg(long)]
    name: String,
    /// How the token is presented.
    #[arg(long)]
    kind: Kind,
    /// A role whose permissions the token carries (tenant tokens; repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// A permission granted directly (repeatable).
    #[arg(long = "permission", value_name = "PERMISSION")]
    permissions: Vec<String>,
    /// When the token stops working, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    expires_at: Option<String>,
    /// Lifetime of the access tokens it is exchanged for, in seconds.
    #[arg(long, value_name = "SECONDS")]
    ttl: Option<u32>,
    /// A client network it may be used from, e.g. 203.0.113.0/24 (repeatable).
    #[arg(long = "allow", value_name = "CIDR")]
    ip_allowlist: Vec<String>,
    /// The user who stands behind a tenant token; it may hold only what they hold.
    #[arg(long, value_name = "USER")]
    created_by: Option<String>,
    /// Also issue rotating refresh tokens on exchange (client_credentials only).
    #[arg(long)]
    refresh_tokens: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
enum Kind {
    /// A client id and secret, exchanged at /oauth/token for short-lived JWTs.
    ClientCredentials,
    /// One opaque key, sent as a bearer token.
    ApiKey,
    /// One long-lived signed JWT.
    Jwt,
}

/// The create body; `roles` and `created_by` are left out of personal tokens.
#[derive(Debug, Serialize)]
struct CreateToken<'a> {
    name: &'a str,
    kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a [String]>,
    permissions: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token_ttl_seconds: Option<u32>,
    ip_allowlist: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    created_by: Option<&'a str>,
    refresh_tokens: bool,
}

impl CreateArgs {
    /// The path and body of the create request; refuses flags a personal token cannot
    /// take before anything is sent.
    fn request(&self) -> anyhow::Result<(Vec<&str>, CreateToken<'_>)> {
        let mut path = vec!["v1", "tenants", self.tenant.as_str()];
        let personal = match &self.user {
            Some(user) => {
                if !self.roles.is_empty() {
                    bail!(
                        "--role cannot be used with --user: a personal token holds no roles, \
                         only --permission entries its owner holds"
                    );
                }
                if self.created_by.is_some() {
                    bail!(
                        "--created-by cannot be used with --user: the owner of a personal \
                         token is its creator"
                    );
                }
                path.extend(["users", user.as_str()]);
                true
            }
            None => false,
        };
        path.push("tokens");
        let body = CreateToken {
            name: &self.name,
            kind: self.kind,
            roles: (!personal).then_some(self.roles.as_slice()),
            permissions: &self.permissions,
            expires_at: self.expires_at.as_deref(),
            access_token_ttl_seconds: self.ttl,
            ip_allowlist: &self.ip_allowlist,
            created_by: self.created_by.as_deref(),
            refresh_tokens: self.refresh_tokens,
        };
        Ok((path, body))
    }
}

#[derive(Serialize)]
struct Rename<'a> {
    name: &'a str,
}

pub async fn run(client: &Client, format: Format, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let (path, body) = args.request()?;
            let created = client.send(Method::POST, &path, &body).await?;
            emit(format, &created, created_text);
        }
        TokenCommand::List { tenant, user } => {
            let mut path = vec!["v1", "tenants", tenant.as_str()];
            if let Some(user) = &user {
                path.extend(["users", user.as_str()]);
            }
            path.push("tokens");
            let list = client.list_all(&path).await?;
            emit(format, &list, list_text);
        }
        TokenCommand::Show { id } => {
            let token = client.get(&["v1", "tokens", &id]).await?;
            emit(format, &token, show_text);
        }
        TokenCommand::Rename { id, name } => {
            let token = client
                .send(
                    Method::PATCH,
                    &["v1", "tokens", &id],
                    &Rename { name: &name },
                )
                .await?;
            emit(format, &token, |t| {
                format!("renamed token {} to {:?}", text(&t["id"]), text(&t["name"]))
            });
        }
        TokenCommand::Revoke { id } => {
            client.delete(&["v1", "tokens", &id]).await?;
            // 204: there is no response to print with --json.
            if format == Format::Text {
                println!("revoked token {id}");
            }
        }
    }
    Ok(())
}

/// Who owns a token, in words: `tenant acme` or `user u_42 in tenant acme`.
fn owner(token: &Value) -> String {
    let owner = &token["owner"];
    match owner["user_id"].as_str() {
        Some(_) => format!(
            "user {} in tenant {}",
            text(&owner["user_id"]),
            text(&owner["tenant_id"])
        ),
        None => format!("tenant {}", text(&owner["tenant_id"])),
    }
}

fn created_text(created: &Value) -> String {
    let token = &created["token"];
    let summary = format!(
        "created {} token {} ({:?}) for {}",
        text(&token["kind"]),
        text(&token["id"]),
        text(&token["name"]),
        owner(token)
    );
    let secrets: Vec<(&str, String)> = ["client_id", "client_secret", "api_key", "jwt"]
        .into_iter()
        .filter_map(|key| created[key].as_str().map(|value| (key, printable(value))))
        .collect();
    if secrets.iter().all(|(key, _)| *key == "client_id") {
        return format!("{summary}\nwarning: the server returned no secret for this token");
    }
    format!(
        "{summary}\n\n{}\n\nStore the secret now: it is shown only this once and cannot be \
         retrieved again.",
        fields(&secrets)
    )
}

fn list_text(list: &Value) -> String {
    let rows = items(list)
        .iter()
        .map(|t| {
            vec![
                text(&t["id"]),
                text(&t["kind"]),
                text(&t["name"]),
                owner(t),
                text(&t["expires_at"]),
                text(&t["revoked_at"]),
            ]
        })
        .collect();
    table(
        &["ID", "KIND", "NAME", "OWNER", "EXPIRES", "REVOKED"],
        rows,
        "no tokens",
    )
}

fn show_text(token: &Value) -> String {
    let mut rows = vec![
        ("id", text(&token["id"])),
        ("name", text(&token["name"])),
        ("kind", text(&token["kind"])),
        ("owner", owner(token)),
    ];
    rows.extend(
        [
            "roles",
            "permissions",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "last_used_ip",
            "ip_allowlist",
            "access_token_ttl_seconds",
            "refresh_tokens",
            "secret_hint",
        ]
        .into_iter()
        .map(|key| (key, text(&token[key]))),
    );
    fields(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TokenCommand,
    }

    fn create(args: &[&str]) -> CreateArgs {
        let argv = ["token", "create", "--tenant", "acme", "--name", "n"];
        match Cli::parse_from(argv.iter().chain(args)).command {
            TokenCommand::Create(args) => args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn a_personal_token_goes_to_the_user_path_without_roles_or_created_by() {
        let args = create(&["--user", "u_42", "--kind", "api_key", "--permission", "p:r"]);
        let (path, body) = args.request().unwrap();
        assert_eq!(path, ["v1", "tenants", "acme", "users", "u_42", "tokens"]);
        let body = serde_json::to_value(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"name": "n", "kind": "api_key", "permissions": ["p:r"],
                "ip_allowlist": [], "refresh_tokens": false})
        );
        let refused = create(&["--user", "u", "--kind", "jwt", "--role", "viewer"]);
        assert!(
            refused
                .request()
                .unwrap_err()
                .to_string()
                .contains("--role")
        );
        let refused = create(&["--user", "u", "--kind", "jwt", "--created-by", "u"]);
        assert!(
            refused
                .request()
                .unwrap_err()
                .to_string()
                .contains("--created-by")
        );
    }
}
