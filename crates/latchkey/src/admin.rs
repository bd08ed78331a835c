//! Admin commands: thin HTTP clients of the management API (`/v1/…`).
//!
//! Each command group (`tenant`, `permission`, `role`, `member`, `token`, `trust`, `keys`) lives in
//! its own module and shares the connection flags defined here: `--server`, `--token` and
//! `--json`. Policy: the server decides; the CLI only refuses locally what it can know to
//! be wrong before sending (flag combinations), and reports the server's refusals as
//! `<detail> (<status> <problem type>)`. With `--json` a command prints the server's
//! response body, pretty (keys in serde_json's order); a list is every page joined into
//! one, and a 204 (`member remove`, `token revoke`) prints nothing. Without `--json`, short
//! text. A secret is printed only by `token create`, the one response with one.

mod audit;
mod catalogue;
pub mod client;
mod keys;
mod member;
pub mod output;
mod tenant;
mod token;
mod trust;

use clap::{Args, Subcommand};
use client::{Client, Credential};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create and list tenants.
    Tenant(Group<tenant::TenantCommand>),
    /// Define and list the permission catalogue.
    Permission(Group<catalogue::PermissionCommand>),
    /// Define and list roles (named sets of permissions).
    Role(Group<catalogue::RoleCommand>),
    /// Set, list and remove users' roles in a tenant.
    Member(Group<member::MemberCommand>),
    /// Create, list, show, rename and revoke tokens.
    Token(Group<token::TokenCommand>),
    /// Create, list, show and revoke trusts: CI jobs exchange their platform's ID token
    /// for access tokens, with no stored secret.
    Trust(Group<trust::TrustCommand>),
    /// Manage the JWT signing keys.
    Keys(Group<keys::KeysCommand>),
    /// Read the audit trail and verify its hash chain.
    Audit(Group<audit::AuditCommand>),
}

/// A command group with the connection flags every admin command takes.
#[derive(Debug, Args)]
pub struct Group<C: Subcommand> {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: C,
}

/// Where the server is, who we are, and how to print.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
struct Connection {
    /// URL of the latchkey server.
    #[arg(
        long,
        env = "LATCHKEY_SERVER",
        default_value = "http://127.0.0.1:7700",
        global = true
    )]
    server: String,
    /// Credential sent as `Authorization: Bearer …`; prefer the variable, since flags
    /// show up in process listings.
    #[arg(long, env = "LATCHKEY_TOKEN", hide_env_values = true, global = true)]
    token: Option<Credential>,
    /// Print the server's JSON response instead of text.
    #[arg(long, global = true)]
    json: bool,
}

/// How a command should print what the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Tenant(group) => {
            let (client, format) = group.connection.open()?;
            tenant::run(&client, format, group.command).await
        }
        AdminCommand::Permission(group) => {
            let (client, format) = group.connection.open()?;
            catalogue::run_permission(&client, format, group.command).await
        }
        AdminCommand::Role(group) => {
            let (client, format) = group.connection.open()?;
            catalogue::run_role(&client, format, group.command).await
        }
        AdminCommand::Member(group) => {
            let (client, format) = group.connection.open()?;
            member::run(&client, format, group.command).await
        }
        AdminCommand::Token(group) => {
            let (client, format) = group.connection.open()?;
            token::run(&client, format, group.command).await
        }
        AdminCommand::Trust(group) => {
            let (client, format) = group.connection.open()?;
            trust::run(&client, format, group.command).await
        }
        AdminCommand::Keys(group) => {
            let (client, format) = group.connection.open()?;
            keys::run(&client, format, group.command).await
        }
        AdminCommand::Audit(group) => {
            let (client, format) = group.connection.open()?;
            audit::run(&client, format, group.command).await
        }
    }
}

impl Connection {
    fn open(self) -> anyhow::Result<(Client, Format)> {
        let format = if self.json {
            Format::Json
        } else {
            Format::Text
        };
        Ok((Client::new(&self.server, self.token)?, format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AdminCommand,
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
