//! The request bodies for tenants and their members (docs/API.md, "Endpoints"). Values
//! are the client's text; the server parses and checks them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// The tenant id, chosen by the host application: `[A-Za-z0-9._-]`, 1–128.
    pub id: String,
    /// Display name; the id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The body of `PUT /v1/tenants/{tid}/users/{uid}`: the roles the user holds there,
/// replacing those held before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMembership {
    /// The role names.
    pub roles: Vec<String>,
}
