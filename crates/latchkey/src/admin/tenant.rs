//! `latchkey tenant …`: create a tenant, list every tenant (all pages).

use super::Format;
use super::client::Client;
use super::output::{emit, items, table, text};
use clap::Subcommand;
use latchkey_wire::CreateTenant;
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
    }
    Ok(())
}
