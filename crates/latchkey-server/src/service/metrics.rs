//! The server's metrics (docs/OPERATIONS.md, "Metrics"): what requests bump as they
//! pass, and the gauges read when `/metrics` is scraped.
//!
//! Policy: a request costs a read-locked look-up of its route template and a few
//! relaxed atomic additions; nothing is formatted or allocated until a scrape. With
//! `metrics_enabled = false` nothing is recorded at all and `/metrics` answers 404, so
//! the cost of metrics can be measured against none.

use latchkey_telemetry::metrics::{self, Cells, Collector, Counter, Encoder, RouteMetrics};
use std::time::Duration;

/// The label of requests that matched no route: raw paths are never labels.
pub const UNMATCHED: &str = "unmatched";

/// The counters requests bump.
#[derive(Debug)]
pub struct ServerMetrics {
    enabled: bool,
    routes: RouteMetrics,
    grants: Cells<(&'static str, &'static str), Counter>,
    introspections: Cells<&'static str, Counter>,
}

impl ServerMetrics {
    /// Metrics that record (`enabled`) or do nothing.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            routes: RouteMetrics::default(),
            grants: Cells::default(),
            introspections: Cells::default(),
        }
    }

    /// Whether anything is recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Counts a request of `method` to `route` (a template) answered `status` after
    /// `elapsed`.
    pub fn request(&self, route: &str, method: &http::Method, status: u16, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        self.routes.record(route, method, status, elapsed);
    }

    /// Counts a token request of `grant_type` that ended with `result` (`issued` or the
    /// RFC 6749 error code).
    pub fn grant(&self, grant_type: &'static str, result: &'static str) {
        if self.enabled {
            self.grants.get(&(grant_type, result)).inc();
        }
    }

    /// Counts an introspection that ended with `result` (`active`, `inactive` or an
    /// error code).
    pub fn introspection(&self, result: &'static str) {
        if self.enabled {
            self.introspections.get(&result).inc();
        }
    }
}

/// What a scrape reads besides the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// The revocation log's head sequence number: every revocation ever appended.
    pub revocations: i64,
    /// Connected followers of this server's revocation feed.
    pub feed_followers: i64,
    /// Authentication events waiting in the audit queue.
    pub audit_queue: i64,
    /// Webhook deliveries waiting to be sent (all replicas).
    pub webhook_outbox: i64,
    /// Open database connections, and those of them idle.
    pub db_connections: i64,
    pub db_idle: i64,
    /// The most the pool opens.
    pub db_max: i64,
}

/// One scrape: the counters and the gauges read for it.
#[derive(Debug)]
pub struct Scrape {
    pub metrics: std::sync::Arc<ServerMetrics>,
    pub gauges: Gauges,
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        self.metrics.routes.encode(
            &mut encoder,
            (
                "latchkey_http_requests",
                "HTTP requests answered, by route template, method and status.",
            ),
            (
                "latchkey_http_request_duration_seconds",
                "Time from a request's head to its answer, by route template.",
            ),
        )?;
        let grants = self.metrics.grants.snapshot();
        let grant_rows: Vec<[(&str, &str); 2]> = grants
            .iter()
            .map(|((grant_type, result), _)| [("grant_type", *grant_type), ("result", *result)])
            .collect();
        metrics::counters(
            &mut encoder,
            "latchkey_grants",
            "Token requests at /oauth/token, by grant type and result.",
            grant_rows
                .iter()
                .zip(&grants)
                .map(|(row, (_, c))| (&row[..], c.get())),
        )?;
        let introspections = self.metrics.introspections.snapshot();
        let introspection_rows: Vec<[(&str, &str); 1]> = introspections
            .iter()
            .map(|(result, _)| [("result", *result)])
            .collect();
        metrics::counters(
            &mut encoder,
            "latchkey_introspections",
            "Introspections at /oauth/introspect, by result.",
            introspection_rows
                .iter()
                .zip(&introspections)
                .map(|(row, (_, c))| (&row[..], c.get())),
        )?;
        let g = self.gauges;
        metrics::counters(
            &mut encoder,
            "latchkey_revocations",
            "Revocations appended to the revocation log (its head sequence number).",
            [(&[][..], u64::try_from(g.revocations).unwrap_or(0))],
        )?;
        metrics::gauge(
            &mut encoder,
            "latchkey_feed_followers",
            "Followers connected to this server's revocation feed.",
            g.feed_followers,
        )?;
        metrics::gauge(
            &mut encoder,
            "latchkey_audit_queue_depth",
            "Authentication events queued for the audit trail's next group commit.",
            g.audit_queue,
        )?;
        metrics::gauge(
            &mut encoder,
            "latchkey_webhook_outbox_depth",
            "Webhook deliveries waiting to be sent.",
            g.webhook_outbox,
        )?;
        metrics::gauges(
            &mut encoder,
            "latchkey_db_connections",
            "Database connections of this server, by state.",
            [
                (&[("state", "open")][..], g.db_connections),
                (&[("state", "idle")][..], g.db_idle),
                (&[("state", "max")][..], g.db_max),
            ],
        )
    }
}
