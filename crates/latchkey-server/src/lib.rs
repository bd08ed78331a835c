//! The latchkey server: the management API and the authorization server over a
//! [`Store`](latchkey_core::store::Store), started by [`Application::build`].

pub mod api;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod config;
pub mod extract;
pub mod keyfile;
pub mod listener;
pub mod oauth;
pub mod problem;
pub mod revocation;
pub mod startup;
pub mod state;

pub use api::router;
pub use config::Config;
pub use startup::{Application, maintain_once};
