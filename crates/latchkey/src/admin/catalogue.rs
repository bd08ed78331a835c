//! `latchkey permission …` and `latchkey role …`: the vendor's permission catalogue and
//! the roles built from it. Writing needs latchkey:admin; any management key may read.
//! `put` replaces the whole definition, description included.

use super::Format;
use super::client::Client;
use super::output::{emit, items, table, text};
use clap::Subcommand;
use latchkey_wire::{PutPermission, PutRole};
use reqwest::Method;

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Create or replace a permission, e.g. `reports:read`.
    Put {
        /// 1–128 of [a-z0-9_.:-].
        name: String,
        /// What it allows, in words.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the catalogue, built-in permissions included.
    List,
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create or replace a role with exactly the given permissions.
    Put {
        /// 1–128 of [a-z0-9_.:-].
        name: String,
        /// A permission of the role (repeat the flag for more).
        #[arg(long = "permission", value_name = "PERMISSION")]
        permissions: Vec<String>,
        /// What the role is for, in words.
        #[arg(long)]
        description: Option<String>,
    },
    /// List the roles.
    List,
}

pub async fn run_permission(
    client: &Client,
    format: Format,
    command: PermissionCommand,
) -> anyhow::Result<()> {
    match command {
        PermissionCommand::Put { name, description } => {
            let body = PutPermission { description };
            let permission = client
                .send(Method::PUT, &["v1", "permissions", &name], &body)
                .await?;
            emit(format, &permission, |p| {
                format!("saved permission {}", text(&p["name"]))
            });
        }
        PermissionCommand::List => {
            let list = client.get(&["v1", "permissions"]).await?;
            emit(format, &list, |list| {
                let rows = items(list)
                    .iter()
                    .map(|p| {
                        let builtin = if p["builtin"] == true { "yes" } else { "no" };
                        vec![
                            text(&p["name"]),
                            builtin.to_owned(),
                            text(&p["description"]),
                        ]
                    })
                    .collect();
                table(&["NAME", "BUILTIN", "DESCRIPTION"], rows, "no permissions")
            });
        }
    }
    Ok(())
}

pub async fn run_role(client: &Client, format: Format, command: RoleCommand) -> anyhow::Result<()> {
    match command {
        RoleCommand::Put {
            name,
            permissions,
            description,
        } => {
            let body = PutRole {
                permissions,
                description,
            };
            let role = client
                .send(Method::PUT, &["v1", "roles", &name], &body)
                .await?;
            emit(format, &role, |r| {
                format!(
                    "saved role {} with permissions: {}",
                    text(&r["name"]),
                    text(&r["permissions"])
                )
            });
        }
        RoleCommand::List => {
            let list = client.get(&["v1", "roles"]).await?;
            emit(format, &list, |list| {
                let rows = items(list)
                    .iter()
                    .map(|r| {
                        vec![
                            text(&r["name"]),
                            text(&r["permissions"]),
                            text(&r["description"]),
                        ]
                    })
                    .collect();
                table(&["NAME", "PERMISSIONS", "DESCRIPTION"], rows, "no roles")
            });
        }
    }
    Ok(())
}
