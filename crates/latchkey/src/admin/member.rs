//! `latchkey member …`: the roles a user holds in a tenant, and every member of a tenant
//! (all pages). Removing a member revokes their personal tokens in that tenant (the
//! server does it; we say so).

use super::Format;
use super::client::{Client, printable};
use super::output::{emit, items, table, text};
use clap::Subcommand;
use latchkey_wire::PutMembership;
use reqwest::Method;

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Make a user a member of a tenant with exactly the given roles.
    Put {
        /// The tenant id.
        tenant: String,
        /// The user id your application uses: 1–128 of [A-Za-z0-9._-].
        user: String,
        /// A role the user holds there (repeat the flag for more).
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// List every member of a tenant with their roles and permissions.
    List {
        /// The tenant id.
        tenant: String,
    },
    /// Remove a user from a tenant, revoking their personal tokens there.
    Remove {
        /// The tenant id.
        tenant: String,
        /// The user id.
        user: String,
    },
}

pub async fn run(client: &Client, format: Format, command: MemberCommand) -> anyhow::Result<()> {
    match command {
        MemberCommand::Put {
            tenant,
            user,
            roles,
        } => {
            let path = ["v1", "tenants", &tenant, "users", &user];
            let membership = client
                .send(Method::PUT, &path, &PutMembership { roles })
                .await?;
            emit(format, &membership, |m| {
                format!(
                    "user {} in tenant {}: roles {}; permissions {}",
                    text(&m["user_id"]),
                    text(&m["tenant_id"]),
                    text(&m["roles"]),
                    text(&m["permissions"])
                )
            });
        }
        MemberCommand::List { tenant } => {
            let list = client
                .list_all(&["v1", "tenants", &tenant, "users"])
                .await?;
            emit(format, &list, |list| {
                let rows = items(list)
                    .iter()
                    .map(|m| {
                        vec![
                            text(&m["user_id"]),
                            text(&m["roles"]),
                            text(&m["permissions"]),
                        ]
                    })
                    .collect();
                table(
                    &["USER", "ROLES", "PERMISSIONS"],
                    rows,
                    &format!("no members in tenant {}", printable(&tenant)),
                )
            });
        }
        MemberCommand::Remove { tenant, user } => {
            client
                .delete(&["v1", "tenants", &tenant, "users", &user])
                .await?;
            // 204: there is no response to print with --json.
            if format == Format::Text {
                println!(
                    "removed user {user} from tenant {tenant}; their personal tokens there are revoked"
                );
            }
        }
    }
    Ok(())
}
