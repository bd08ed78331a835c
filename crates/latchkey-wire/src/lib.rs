//! latchkey's wire types: the JSON shapes of docs/API.md, shared by the server, the
//! `latchkey` CLI and latchkey-verify, so each side reads and writes one definition of
//! every field, its name and when it is absent.
//!
//! Policy: a change here is a change of the public contract. A new, renamed or
//! differently optional member changes what every client of the API sees, so it goes
//! together with docs/API.md.
//!
//! Nothing here performs I/O; the crate depends on latchkey-core and serde only.

mod claims;

pub use claims::{Claims, JwtKind};
