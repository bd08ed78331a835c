//! What the gateway's listener allows its clients (README.md, "The gateway";
//! docs/DEPLOYMENT.md, "Slow clients and connection limits" and "TLS at latchkey").
//!
//! The accept loop is latchkey's shared one (`latchkey-listener`), with its policy:
//! - **TLS handshakes are timed** (`tls_handshake_timeout_seconds`).
//! - **Request heads are timed** (`header_read_timeout_seconds`), counted from when the
//!   gateway starts waiting for one: on a new connection and again between requests on
//!   a kept-alive one, so an idle connection is closed after that long too. An HTTP/2
//!   connection with no request in flight for that long is closed with GOAWAY.
//! - **Request bodies must keep moving.** A body that sends nothing for
//!   `body_read_timeout_seconds` while it is being forwarded ends the request with 408
//!   `request_timeout` and the connection is closed. The limit is per read, not for the
//!   whole body: a slow upload that keeps arriving is not cut, a stalled one is.
//! - **Responses are never timed** here: downloads and event streams from an upstream
//!   run as long as the client reads them.
//! - **Connections are capped** (`max_connections`): beyond, the accept loop waits for
//!   one to close, so new clients wait in the kernel's backlog instead of being refused.
//! - **HTTP/2** (over TLS, by ALPN) keeps every rule of the HTTP/1.1 edge — the same
//!   path normalisation and header stripping run on each stream — and is bounded in
//!   concurrent streams, header list size (CONTINUATION floods included) and streams
//!   reset before they were served (rapid reset).

pub(crate) use latchkey_listener::{BodyStalled, Limits, StallGuard};
