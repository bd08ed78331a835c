//! The latchkey server: the management API and the authorization server over a
//! [`Store`](latchkey_core::store::Store), started by [`Application::build`].
//!
//! Its public surface is what a program needs to run one: [`Config`] (and
//! [`config::parse_trusted_proxies`] for flags) and [`Application`]. Everything else is
//! the crate's own, so the compiler sees what is unused.

pub(crate) mod api;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod cache;
pub mod config;
pub(crate) mod extract;
pub(crate) mod keyfile;
pub(crate) mod listener;
pub(crate) mod oauth;
pub(crate) mod problem;
pub(crate) mod revocation;
pub(crate) mod startup;
pub(crate) mod state;

pub use config::Config;
pub use startup::{Application, CERT_WATCH_INTERVAL, Maintenance};
