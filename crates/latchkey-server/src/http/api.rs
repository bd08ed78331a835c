//! The management API's handlers (docs/API.md, "Endpoints"), one module per resource.

pub(crate) mod catalogue;
pub(crate) mod console_sessions;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod leaks;
pub(crate) mod members;
pub(crate) mod policy;
pub(crate) mod tenants;
pub(crate) mod tokens;
pub(crate) mod trusts;
pub(crate) mod usage;
pub(crate) mod webhooks;
