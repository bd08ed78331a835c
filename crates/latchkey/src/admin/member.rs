//! `latchkey member …`: the roles a user holds in a tenant. Removing a member revokes
//! their personal tokens in that tenant (the server does it; we say so).

use super::Format;
use super::client::Client;
use super::output::{emit, text};
use clap::Subcommand;
use reqwest::Method;
use serde::Serialize;

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
    /// Remove a user from a tenant, revoking their personal tokens there.
    Remove {
        /// The tenant id.
        tenant: String,
        /// The user id.
        user: String,
    },
}

#[derive(Serialize)]
struct PutMembership<'a> {
    roles: &'a [String],
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
                .send(Method::PUT, &path, &PutMembership { roles: &roles })
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
