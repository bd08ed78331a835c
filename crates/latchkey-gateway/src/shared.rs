//! What every request and the gateway's background tasks share: the verifier, the
//! upstream clients, the usage reporter, the counters, the TLS the listener serves and
//! the current routing table. Its own module, so the request phases (`proxy`) and the
//! gateway's lifecycle (`gateway`) both read it without importing each other.

use crate::config::GatewayConfig;
use crate::metrics::GatewayMetrics;
use crate::route::RouteTable;
use crate::stats::Counters;
use crate::upstream::Upstream;
use crate::usage::UsageReporter;
use latchkey_listener::ServerTls;
use latchkey_verify::Verifier;
use std::sync::{Arc, PoisonError, RwLock};

/// What every request and the background tasks share.
pub(crate) struct Shared {
    pub(crate) verifier: Verifier,
    /// The client of routes without `tls_ca_file`; reloads reuse it, so their
    /// connection pools survive a reload.
    pub(crate) upstream: Upstream,
    pub(crate) usage: Option<Arc<UsageReporter>>,
    pub(crate) counters: Counters,
    /// Counts by route, method and status, and durations (docs/OPERATIONS.md).
    pub(crate) metrics: Arc<GatewayMetrics>,
    /// The certificate clients are served, when `tls_cert_file` is set.
    pub(crate) tls: Option<ServerTls>,
    pub(crate) routes: RwLock<Arc<RouteTable>>,
    /// The configuration the gateway started with, to tell which changes need a
    /// restart.
    pub(crate) started_with: GatewayConfig,
}

impl Shared {
    /// The current routing table.
    pub(crate) fn routes(&self) -> Arc<RouteTable> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
