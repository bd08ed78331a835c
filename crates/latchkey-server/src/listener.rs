//! The accept loop: serving HTTP/1.1 on the bound listener with the limits that keep
//! slow or idle clients from holding the server (docs/DEPLOYMENT.md, "Slow clients and
//! connection limits").
//!
//! Policy:
//! - **Request heads are timed.** A client has `header_read_timeout_seconds` to send a
//!   whole request head, counted from when the server starts waiting for it: on a new
//!   connection and again between requests on a kept-alive one, so an idle connection
//!   is closed after that long too. The connection is closed without an answer.
//! - **Request bodies must keep moving.** A body that sends nothing for
//!   `body_read_timeout_seconds` while a handler waits for it ends the request with
//!   408 and the connection is closed. The limit is per read, not for the whole body:
//!   a slow upload that keeps arriving is not cut, a stalled one is.
//! - **Responses are never timed.** The timeouts are about reading the request, so the
//!   revocation stream and long answers run as long as the client reads them.
//! - **Connections are capped.** At most `max_connections` are open; beyond that the
//!   loop stops accepting until one closes, so new clients wait in the kernel's backlog
//!   instead of being refused.
//! - `TCP_NODELAY` on every connection: small revocation events must not wait for
//!   Nagle's algorithm and a delayed ACK.
//! - On shutdown the loop stops accepting and waits for requests in flight.

use crate::problem::PROBLEM_PREFIX;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower::ServiceExt;

/// The pause after a failed `accept` (out of file descriptors, …), so the loop does
/// not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The least time between two "max_connections reached" warnings, so a flood does not
/// also flood the log.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What a listener allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The longest wait for a whole request head.
    pub header_read_timeout: Duration,
    /// The longest wait for the next bytes of a request body.
    pub body_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and
/// waits until every open connection has finished its request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = pin!(shutdown);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_full_warning.is_none_or(|at| at.elapsed() >= FULL_WARNING_INTERVAL) {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "max_connections reached; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        // Never closed; if it were, nothing more could be served.
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        let router = router.clone();
        let body_timeout = limits.body_read_timeout;
        let service = service_fn(move |request: Request<Incoming>| {
            let router = router.clone();
            async move {
                let stalled = Arc::new(AtomicBool::new(false));
                let oauth = request.uri().path().starts_with("/oauth/");
                let (mut parts, body) = request.into_parts();
                parts.extensions.insert(ConnectInfo(peer));
                let body = Body::new(StallGuard::new(body, body_timeout, stalled.clone()));
                let response = router.oneshot(Request::from_parts(parts, body)).await;
                // The handler saw a failed body and answered for that; the client needs
                // to know it was too slow instead.
                if stalled.load(Ordering::Relaxed) {
                    return Ok::<_, Infallible>(request_timeout(oauth, body_timeout));
                }
                response
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "client connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The 408 for a stalled body, in the error format of the endpoint: RFC 6749's shape on
/// `/oauth/…`, problem+json elsewhere (docs/API.md, "Slow clients").
fn request_timeout(oauth: bool, timeout: Duration) -> Response<Body> {
    let detail = format!("the request body sent nothing for {} s", timeout.as_secs());
    let (content_type, body) = if oauth {
        (
            "application/json",
            json!({ "error": "invalid_request", "error_description": detail }),
        )
    } else {
        (
            "application/problem+json",
            json!({
                "type": format!("{PROBLEM_PREFIX}request-timeout"),
                "title": "Request timeout",
                "status": StatusCode::REQUEST_TIMEOUT.as_u16(),
                "detail": detail,
            }),
        )
    };
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The rest of the body may still arrive; the connection cannot be reused.
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once it has sent nothing for `timeout` while being read.
struct StallGuard {
    inner: Incoming,
    timeout: Duration,
    /// Armed while a read waits; dropped whenever bytes arrive.
    idle: Option<Pin<Box<Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl StallGuard {
    fn new(inner: Incoming, timeout: Duration, stalled: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            timeout,
            idle: None,
            stalled,
        }
    }
}

/// The error a stalled body ends with.
#[derive(Debug)]
struct BodyStalled(Duration);

impl fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the request body sent nothing for {} s",
            self.0.as_secs()
        )
    }
}

impl StdError for BodyStalled {}

impl hyper::body::Body for StallGuard {
    type Data = hyper::body::Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let timeout = this.timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if idle.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.idle = None;
                this.stalled.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyStalled(timeout)))))
            }
            Poll::Ready(frame) => {
                this.idle = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
