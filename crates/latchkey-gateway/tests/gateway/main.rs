//! latchkey-gateway's integration tests, one binary: a gateway on 127.0.0.1:0 in front
//! of an in-process fake upstream, verifying tokens signed here, reporting usage to an
//! in-process fake server (`support`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod config;
mod dpop;
mod edge;
mod forward;
mod listener;
mod narrow;
mod reload;
mod support;
mod trust;
mod upstream_tls;
mod usage;
