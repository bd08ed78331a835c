//! latchkey's wire types: the JSON shapes of docs/API.md, shared by the server, the
//! `latchkey` CLI and latchkey-verify, so each side reads and writes one definition of
//! every field, its name and when it is absent.
//!
//! Policy: a change here is a change of the public contract. A new, renamed or
//! differently optional member changes what every client of the API sees, so it goes
//! together with docs/API.md — each type's tests pin its JSON to the example docs/API.md
//! marks for it (`<!-- wire: TypeName -->`).
//!
//! Request bodies carry the client's text (`String`): the server parses it into
//! latchkey-core's values at its boundary and names the field it refuses, so a client
//! built on these types never refuses locally what the server would have explained.
//! Response bodies carry latchkey-core's values (`TokenId`, `Timestamp`, …), which the
//! server wrote from checked data.
//!
//! Nothing here performs I/O; the crate depends on latchkey-core, serde, and utoipa for
//! the OpenAPI schema of every body (`ToSchema`, docs/API.md "OpenAPI").

mod catalogue;
mod claims;
mod oauth;
mod page;
mod policy;
mod problem;
pub mod schema;
mod tenant;
mod token;

pub use catalogue::{PutPermission, PutRole};
pub use claims::{Claims, Confirmation, JwtKind};
pub use oauth::{IntrospectionResponse, OAuthErrorBody, TokenResponse};
pub use page::Page;
pub use policy::{PolicyBreach, PolicyResource, PolicyViolations, PutNetwork, PutPolicy};
pub use problem::Problem;
pub use tenant::{CreateTenant, PutMembership};
pub use token::{CreateToken, CreatedToken, RenameToken, RollToken, TokenResource};

#[cfg(test)]
mod tests;
