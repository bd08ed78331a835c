//! The latchkey server: the management API and the authorization server over a
//! [`Store`](latchkey_core::store::Store), started by [`Application::build`].
//!
//! Its public surface is what a program needs to run one: [`Config`] (and
//! [`config::parse_trusted_proxies`] for flags) and [`Application`]. Everything else is
//! the crate's own, so the compiler sees what is unused.

pub mod config;
pub(crate) mod http;
pub(crate) mod keyfile;
pub(crate) mod service;
pub(crate) mod startup;

pub use config::Config;
pub use startup::{
    Application, CERT_WATCH_INTERVAL, Maintenance, RECOVER_ACTOR, check_config, recover,
};
