//! The request bodies of the permission catalogue and its roles (docs/API.md,
//! "Endpoints"). `put` replaces the whole definition. Values are the client's text; the
//! server parses and checks them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `PUT /v1/permissions/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutPermission {
    /// What the permission allows, for people; empty when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The body of `PUT /v1/roles/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutRole {
    /// The permissions the role grants; each must be in the catalogue.
    pub permissions: Vec<String>,
    /// What the role is for, for people; empty when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
