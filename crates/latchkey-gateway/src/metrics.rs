//! The gateway's metrics and the listener that serves them (docs/OPERATIONS.md,
//! "Metrics").
//!
//! Policy: a request costs a read-locked look-up of its route's cell and a few relaxed
//! atomic additions. `/metrics` is served on `metrics_listen` only, never on the proxy
//! listener (where every path belongs to the routes), to peers in
//! `metrics_allowed_networks` (others get 403). With `metrics_enabled = false`
//! nothing is recorded and the endpoint answers 404.

use crate::body::{GatewayBody, full};
use crate::stats::GatewayStats;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use latchkey_core::cidr::IpNet;
use latchkey_telemetry::metrics::{self, CONTENT_TYPE, Collector, Encoder, RouteMetrics, render};
use latchkey_verify::{ReplicaMetrics, RevocationReplica};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The route label of requests that matched no route.
pub(crate) const UNMATCHED: &str = "unmatched";

/// What requests count.
#[derive(Debug)]
pub(crate) struct GatewayMetrics {
    enabled: bool,
    routes: RouteMetrics,
}

impl GatewayMetrics {
    pub(crate) fn new(enabled: bool) -> Self {
        Self {
            enabled,
            routes: RouteMetrics::default(),
        }
    }

    /// Counts a request to `route` (a configured prefix) answered `status`.
    pub(crate) fn request(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        if !self.enabled {
            return;
        }
        self.routes.record(route, method, status, elapsed);
    }
}

/// One scrape.
struct Scrape {
    metrics: Arc<GatewayMetrics>,
    stats: GatewayStats,
    replica: Option<ReplicaMetrics>,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: Encoder) -> Result<(), std::fmt::Error> {
        self.metrics.routes.encode(
            &mut encoder,
            (
                "latchkey_gateway_requests",
                "Requests answered, by route prefix, method and status.",
            ),
            (
                "latchkey_gateway_request_duration_seconds",
                "Time from a request's head to its answer's head, by route prefix.",
            ),
        )?;
        let s = &self.stats;
        metrics::counters(
            &mut encoder,
            "latchkey_gateway_results",
            "Requests by outcome: forwarded, or answered by the gateway and why.",
            [
                (&[("result", "forwarded")][..], s.forwarded),
                (&[("result", "bad_request")][..], s.bad_request),
                (&[("result", "unauthorized")][..], s.unauthorized),
                (&[("result", "forbidden")][..], s.forbidden),
                (&[("result", "no_route")][..], s.no_route),
                (
                    &[("result", "method_not_allowed")][..],
                    s.method_not_allowed,
                ),
                (&[("result", "unavailable")][..], s.unavailable),
                (
                    &[("result", "upstream_unreachable")][..],
                    s.upstream_unreachable,
                ),
                (&[("result", "upstream_timeout")][..], s.upstream_timeout),
                (&[("result", "internal")][..], s.internal),
            ],
        )?;
        metrics::gauge(
            &mut encoder,
            "latchkey_gateway_usage_pending",
            "Usage entries waiting to be sent to the server.",
            i64::try_from(s.usage.pending_entries).unwrap_or(i64::MAX),
        )?;
        if let Some(replica) = &self.replica {
            metrics::gauge(
                &mut encoder,
                "latchkey_gateway_replica_seq",
                "The seq of the last revocation-feed entry applied.",
                replica.last_seq,
            )?;
            metrics::gauge(
                &mut encoder,
                "latchkey_gateway_replica_head_seq",
                "The highest seq the server has announced.",
                replica.head_seq,
            )?;
            metrics::gauge(
                &mut encoder,
                "latchkey_gateway_replica_lag",
                "Feed entries announced but not yet applied.",
                (replica.head_seq - replica.last_seq).max(0),
            )?;
            metrics::gauge(
                &mut encoder,
                "latchkey_gateway_replica_stale",
                "1 while the deny list is stale and tokens are refused (fail closed).",
                i64::from(replica.stale),
            )?;
            metrics::gauge(
                &mut encoder,
                "latchkey_gateway_replica_entries",
                "Deny-list entries held.",
                i64::try_from(replica.entries).unwrap_or(i64::MAX),
            )?;
            let silent = replica
                .since_heard
                .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            metrics::gauge(
                &mut encoder,
                "latchkey_gateway_replica_silence_milliseconds",
                "Since the feed was last heard from (-1 before the first snapshot).",
                silent,
            )?;
            metrics::counters(
                &mut encoder,
                "latchkey_gateway_replica_reconnects",
                "Times the connection to the feed ended and was retried.",
                [(&[][..], replica.reconnects)],
            )?;
        }
        Ok(())
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    metrics: Arc<GatewayMetrics>,
    allowed: Vec<IpNet>,
    stats: impl Fn() -> GatewayStats + Send + Sync + 'static,
    listener: TcpListener,
    replica: Option<RevocationReplica>,
    shutdown: impl Future<Output = ()>,
) {
    let allowed: Arc<[IpNet]> = allowed.into();
    let stats = Arc::new(stats);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "the metrics listener failed to accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let allowed = allowed.clone();
        let stats = stats.clone();
        let replica = replica.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let permitted = allowed.iter().any(|net| net.contains(peer.ip()));
            let answer = answer(&metrics, permitted, &request, || Scrape {
                metrics: metrics.clone(),
                stats: stats(),
                replica: replica.as_ref().map(RevocationReplica::metrics),
            });
            async move { Ok::<_, Infallible>(answer) }
        });
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(
    metrics: &GatewayMetrics,
    permitted: bool,
    request: &Request<Incoming>,
    scrape: impl FnOnce() -> Scrape,
) -> Response<GatewayBody> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(full(text.as_bytes().to_vec()));
        *response.status_mut() = status;
        response
    };
    if !permitted {
        return plain(
            StatusCode::FORBIDDEN,
            "this address may not read the metrics\n",
        );
    }
    if request.uri().path() != "/metrics" || !metrics.enabled {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let text = render(Arc::new(scrape()));
    let mut response = Response::new(full(text.into_bytes()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}
