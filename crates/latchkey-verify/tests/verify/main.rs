//! latchkey-verify's integration tests, one binary: a fake issuer in-process
//! (`support`), the attack suite, the key cache, introspection, the verified-token
//! cache, the tower layer, and property tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attacks;
mod cache;
mod introspection;
mod keys;
mod layer;
mod property;
mod support;
