//! latchkey-verify's integration tests, one binary: a fake issuer in-process
//! (`support`), the attack suite, the key cache, introspection, the verified-token
//! cache, the tower layer, property tests, and the deny-list replica against a fake
//! revocation feed (`feed`), and the same over TLS with a private CA (`tls`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attacks;
mod cache;
mod dpop;
mod feed;
mod fuzz;
mod introspection;
mod keys;
mod layer;
mod narrowing;
mod property;
mod replica;
mod support;
mod tls;
