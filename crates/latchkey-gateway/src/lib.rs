//! The latchkey gateway: a reverse proxy in front of a vendor's services that lets a
//! request through only with a latchkey credential holding the route's scopes, tells
//! the upstream who called, and reports usage to the latchkey server.
//!
//! Each request goes through phases over a per-request context (pingora's shape; see
//! `proxy.rs`): **route** (the path put in normal form once, routed on and forwarded
//! as is; 400 when upstreams could read it another way; longest whole-segment prefix;
//! 404 when none) →
//! **authenticate** (a Bearer access JWT, long-lived JWT or api key, by
//! [`latchkey_verify::Verifier`]; public routes skip it) → **authorize** (the route's
//! scopes for the method, `"*"` for others) → **forward** (identity headers set from
//! the verified principal after any client-sent ones are stripped, hop-by-hop headers
//! dropped, `X-Forwarded-For` appended, bodies streamed both ways) → **record** (counts
//! by outcome, usage per token, route, method, status class and client IP). Errors say
//! whose fault they are: 400/401/403/404/405 the client's, 502/504 the upstream's, 503
//! the deny list's or introspection's, 500 ours.
//!
//! Running a gateway from its configuration file, with the deny-list replica as the
//! verifier's [`RevocationCheck`](latchkey_verify::RevocationCheck):
//!
//! ```no_run
//! use latchkey_gateway::{Gateway, GatewayConfig, GatewayDeps, reload_on_sighup};
//! use latchkey_verify::{Credential, ReplicaOptions, RevocationReplica, Verifier};
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let path = "gateway.toml";
//! let config = GatewayConfig::load(path)?; // also reads LATCHKEY_GATEWAY_CREDENTIAL
//! let replica = RevocationReplica::start(
//!     &config.server,
//!     Credential::new(config.credential()?),
//!     ReplicaOptions { max_staleness: config.max_staleness(), ..ReplicaOptions::default() },
//! )?;
//! let options = config.verifier_options(Arc::new(replica.clone()))?;
//! let verifier = Verifier::discover(&config.server, options).await?;
//! replica.attach(verifier.evictor());
//!
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! let gateway = Gateway::build(config, GatewayDeps::new(verifier))?;
//! tokio::spawn(reload_on_sighup(gateway.clone(), path)?);
//! gateway.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(())
//! # }
//! ```
//!
//! Transport: plain HTTP/1.1 to clients for now (no TLS, no HTTP/2, no WebSocket
//! upgrades; terminate TLS in front of the gateway); HTTP/1.1 to upstreams, over TLS
//! for an `https://` upstream, trusting the system's roots and the route's
//! `tls_ca_file`.

mod body;
mod config;
mod error;
mod gateway;
mod h1;
pub mod headers;
mod listener;
mod metrics;
mod path;
mod proxy;
mod route;
mod shared;
mod stats;
mod upstream;
mod usage;

pub use config::{CREDENTIAL_ENV, ConfigError, GatewayConfig, RouteConfig};
#[cfg(unix)]
pub use gateway::reload_on_sighup;
pub use gateway::{Gateway, GatewayDeps, assemble};
pub use stats::{GatewayStats, UsageStats};
pub use usage::UsageOptions;
