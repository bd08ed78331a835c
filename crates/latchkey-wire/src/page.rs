//! A page of a list (docs/API.md, "Endpoints"): `{"items": […], "next_cursor": …}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One page of a list. Pass `next_cursor` back as `cursor` for the next page; it is
/// `null` on the last one. A page may hold fewer than `limit` items and still not be the
/// last (docs/API.md, "Who may call").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Where the next page starts: opaque base64url, or `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}
