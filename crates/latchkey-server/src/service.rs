//! The service layer: what the server does, with no knowledge of HTTP. It depends on
//! core, on the [`Store`](latchkey_core::store::Store) and on the injected
//! [`Clock`](latchkey_core::clock::Clock), and fails with one [`error::Error`]. The
//! HTTP layer (the `http` module) extracts a request, calls one function here and maps the
//! result; nothing here imports from it (`scripts/module-cycles.py` checks that).

pub(crate) mod audit;
pub(crate) mod cache;
pub(crate) mod client;
pub(crate) mod client_assertion;
pub(crate) mod console;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod federation;
pub(crate) mod introspection;
pub(crate) mod issuer;
pub(crate) mod jwt;
pub(crate) mod keyring;
pub(crate) mod keys;
pub(crate) mod leaks;
pub(crate) mod metrics;
pub(crate) mod policy;
pub(crate) mod revocation;
pub(crate) mod state;
pub(crate) mod throttle;
pub(crate) mod tokens;
pub(crate) mod used;
pub(crate) mod webhooks;
