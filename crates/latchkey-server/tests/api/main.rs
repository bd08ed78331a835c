//! Integration tests of the latchkey server over HTTP: one test binary, one module per
//! resource. Each test runs on SQLite and, with `LATCHKEY_TEST_POSTGRES_URL`, on
//! PostgreSQL (see `helpers::TestApp`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod gateway;

mod interop;

mod listener;

mod audit;
mod auth;
mod bodies;
mod boundary;
mod catalogue;
mod console;
mod dpop;
mod files;
mod fuzz;
mod leaks;
mod members;
mod networks;
mod oauth;
mod observe;
mod openapi;
mod policies;
mod private_key_jwt;
mod proxies;
mod replicas;
mod revocations;
mod roll;
mod secrets;
mod tenants;
mod throttle;
mod tls;
mod tokens;
mod trusts;
mod usage;
mod verifier;
mod webhooks;
