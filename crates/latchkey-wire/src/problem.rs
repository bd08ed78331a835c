//! The management API's error body: RFC 9457 `application/problem+json` (docs/API.md,
//! "Problem types").

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A problem document. Besides the four standard members it carries, for some types, one
/// extension member naming what the problem is about; the others are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:latchkey:problem:` followed by the type, e.g. `not-found`.
    pub r#type: String,
    /// The type's fixed, short title.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, in a sentence about this request.
    pub detail: String,
    /// The field or JSON path (`permissions[0]`): `invalid-field`, `invalid-value`,
    /// `immutable-field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The permission: `permission-not-held`, `reserved-permission`,
    /// `unknown-permission`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// The role: `unknown-role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The user: `unknown-member`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The permission the operation needs: `insufficient-scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The policy rule, as its field name: `policy-violation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}
