//! Request counters by outcome, read with [`Gateway::stats`](crate::Gateway::stats).
//!
//! Policy: plain relaxed atomics, one increment per request, so counting never costs a
//! lock on the hot path. A snapshot is not atomic across fields; for a dashboard or a
//! test that is enough. Prometheus export comes later and will read the same counters.

use crate::error::ProxyError;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the gateway's counters since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayStats {
    /// Requests answered, whatever the outcome.
    pub requests: u64,
    /// Requests the upstream answered (any status).
    pub forwarded: u64,
    /// 400: ambiguous path, malformed `Authorization`, client body aborted; and 408, a
    /// client body that stopped arriving.
    pub bad_request: u64,
    /// 401: no token, or a refused one (revoked included).
    pub unauthorized: u64,
    /// 403: the token lacks the route's scopes.
    pub forbidden: u64,
    /// 404: no route.
    pub no_route: u64,
    /// 405: the route lists no scopes for the method.
    pub method_not_allowed: u64,
    /// 503: credentials could not be checked (stale deny list, introspection down).
    pub unavailable: u64,
    /// 502: the upstream could not be reached.
    pub upstream_unreachable: u64,
    /// 504: the upstream did not answer in time.
    pub upstream_timeout: u64,
    /// 500: the gateway's own fault.
    pub internal: u64,
    /// The usage reporter's counters.
    pub usage: UsageStats,
}

/// The usage reporter's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageStats {
    /// Entries waiting to be sent.
    pub pending_entries: u64,
    /// Batches the server accepted.
    pub batches_sent: u64,
    /// Entries in those batches.
    pub entries_sent: u64,
    /// Attempts that failed and will be retried.
    pub send_failures: u64,
    /// Entries dropped: over the memory cap, or in a batch the server refused as
    /// malformed.
    pub entries_dropped: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    forwarded: AtomicU64,
    bad_request: AtomicU64,
    unauthorized: AtomicU64,
    forbidden: AtomicU64,
    no_route: AtomicU64,
    method_not_allowed: AtomicU64,
    unavailable: AtomicU64,
    upstream_unreachable: AtomicU64,
    upstream_timeout: AtomicU64,
    internal: AtomicU64,
}

impl Counters {
    /// Counts one request: forwarded (`None`) or answered by the gateway.
    pub(crate) fn count(&self, refused: Option<&ProxyError>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let counter = match refused {
            None => &self.forwarded,
            Some(error) => match error.status().as_u16() {
                400 | 408 => &self.bad_request,
                401 => &self.unauthorized,
                403 => &self.forbidden,
                404 => &self.no_route,
                405 => &self.method_not_allowed,
                502 => &self.upstream_unreachable,
                503 => &self.unavailable,
                504 => &self.upstream_timeout,
                _ => &self.internal,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, usage: UsageStats) -> GatewayStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        GatewayStats {
            requests: read(&self.requests),
            forwarded: read(&self.forwarded),
            bad_request: read(&self.bad_request),
            unauthorized: read(&self.unauthorized),
            forbidden: read(&self.forbidden),
            no_route: read(&self.no_route),
            method_not_allowed: read(&self.method_not_allowed),
            unavailable: read(&self.unavailable),
            upstream_unreachable: read(&self.upstream_unreachable),
            upstream_timeout: read(&self.upstream_timeout),
            internal: read(&self.internal),
            usage,
        }
    }
}
