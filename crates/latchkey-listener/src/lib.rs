//! latchkey's accept loop, shared by the server and the gateway: HTTP/1.1 over plain
//! TCP, HTTP/1.1 or HTTP/2 over TLS, with the limits that keep slow or idle clients
//! from holding a listener (docs/DEPLOYMENT.md, "Slow clients and connection limits"
//! and "TLS at latchkey").
//!
//! Policy:
//! - **TLS handshakes are timed** (`tls_handshake_timeout_seconds`): the header-read
//!   timeout starts only once a request can be read, so without its own limit a client
//!   that opens a connection and never finishes the handshake would hold it.
//!   Handshakes run beside the accept loop, never in it.
//! - **Request heads are timed.** Over HTTP/1.1 a client has `header_read_timeout_seconds`
//!   to send a whole request head, counted from when the listener starts waiting for
//!   it: on a new connection and again between requests on a kept-alive one, so an idle
//!   connection is closed after that long too. Over HTTP/2 a connection with no request
//!   in flight (none started, or the last answered) for that long is closed with
//!   GOAWAY, which also bounds a header block that never ends.
//! - **Request bodies must keep moving** (`body_read_timeout_seconds`, see
//!   [`StallGuard`]); what the client is told is the application's choice.
//! - **Responses are never timed**, so event streams and long downloads run as long as
//!   the client reads them.
//! - **Connections are capped** (`max_connections`): beyond, the loop stops accepting
//!   until one closes, so new clients wait in the kernel's backlog instead of being
//!   refused. A connection holds its place from accept, handshake included.
//! - **HTTP/2 is bounded** beside that: at most [`H2_MAX_CONCURRENT_STREAMS`] streams
//!   at once, a header list of at most [`H2_MAX_HEADER_LIST_SIZE`] bytes however many
//!   CONTINUATION frames carry it, and at most [`H2_MAX_PENDING_RESETS`] streams reset
//!   by the client before the application saw them (the "rapid reset" attack) before
//!   the connection is closed.
//! - `TCP_NODELAY` on every connection: small revocation events must not wait for
//!   Nagle's algorithm and a delayed ACK.
//! - **Shutdown** stops accepting, asks every connection to finish (HTTP/1.1: after the
//!   request in flight; HTTP/2: GOAWAY, streams in flight finish) and waits for them,
//!   up to a drain timeout when one is given.

mod body;
pub mod framing;
mod h1;
#[cfg(test)]
mod h1_tests;
#[cfg(feature = "test-pki")]
pub mod test_pki;
#[cfg(test)]
mod tests;
mod tls;
mod wire;

pub use body::{BodyStalled, RequestBody, StallGuard};
pub use h1::{BodyError, Http1Body, MAX_FIELDS, MAX_HEAD};

use h1::{ReadSide, WriteSide};
pub use tls::{Protocols, ServerTls, TlsError, TlsFiles};
pub use wire::{WireFieldError, WireFields};

use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http2;
use hyper::service::{Service, service_fn};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Streams open at once on one HTTP/2 connection; more are refused with
/// REFUSED_STREAM.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// The largest HTTP/2 header list (decoded names and values, plus 32 bytes an entry),
/// whatever number of CONTINUATION frames it arrives in.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 32 * 1024;

/// Streams the client may reset before the application accepts them; beyond, the
/// connection is closed (the "rapid reset" attack).
pub const H2_MAX_PENDING_RESETS: usize = 20;

/// Streams the listener may reset for the client's errors before it closes the
/// connection.
pub const H2_MAX_LOCAL_RESETS: usize = 256;

/// The pause after a failed `accept` (out of file descriptors, …), so the loop does
/// not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The least time between two "max_connections reached" warnings, so a flood does not
/// also flood the log.
const FULL_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What a listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest wait for a whole request head (HTTP/1.1), or the longest a
    /// connection may sit with no request in flight (HTTP/2).
    pub header_read_timeout: Duration,
    /// The longest wait for the next bytes of a request body.
    pub body_read_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// The longest a TLS handshake may take.
    pub handshake_timeout: Duration,
}

/// One accepted connection, as the application's service sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The connection is TLS.
    pub tls: bool,
    /// The client presented a certificate that chains to the listener's client CA.
    pub client_certificate: bool,
    /// The connection speaks HTTP/2.
    pub http2: bool,
}

/// A listener: the bound socket, its TLS if any, and its limits.
#[derive(Debug)]
pub struct Listener {
    tcp: TcpListener,
    tls: Option<ServerTls>,
    limits: Limits,
}

impl Listener {
    /// Serves `tcp` as is, or over `tls`.
    pub fn new(tcp: TcpListener, tls: Option<ServerTls>, limits: Limits) -> Self {
        Self { tcp, tls, limits }
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// What the listener allows its clients.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The TLS the listener serves, to reload it.
    pub fn tls(&self) -> Option<&ServerTls> {
        self.tls.as_ref()
    }

    /// Serves connections until `shutdown` completes, each with the service `make`
    /// builds for it; then stops accepting, asks every connection to finish and waits
    /// for them, at most `drain` when given.
    pub async fn serve<M, S, B>(
        self,
        make: M,
        shutdown: impl Future<Output = ()>,
        drain: Option<Duration>,
    ) where
        M: Fn(Accepted) -> S + Send + Sync + 'static,
        S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible>
            + Send
            + 'static,
        S::Future: Send + 'static,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Self { tcp, tls, limits } = self;
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopping) = watch::channel(false);
        let make = Arc::new(make);
        let http2 = http2_builder(&limits);
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
                accepted = tcp.accept() => match accepted {
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
            let connection = Connection {
                make: make.clone(),
                http2: http2.clone(),
                stop: stopping.clone(),
                limits,
                peer,
            };
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => connection.plain(stream).await,
                    Some(tls) => connection.tls(stream, &tls).await,
                }
                drop(slot);
            });
        }
        drop(tcp);
        // Receivers may all be gone already; then nothing is left to stop.
        let _ = stop.send(true);
        let everyone = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let closed = slots.acquire_many(everyone);
        match drain {
            None => {
                let _ = closed.await;
            }
            Some(drain) => {
                if tokio::time::timeout(drain, closed).await.is_err() {
                    tracing::warn!(
                        ?drain,
                        "requests still in flight after the drain timeout; closing them"
                    );
                }
            }
        }
    }
}

/// The HTTP/2 builder, configured once; HTTP/1.1 is latchkey's own (`h1`).
fn http2_builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        // A peer that stops answering pings while streams are open is gone.
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    http2
}

/// One accepted TCP connection, before its protocol is known.
struct Connection<M> {
    make: Arc<M>,
    http2: http2::Builder<TokioExecutor>,
    stop: watch::Receiver<bool>,
    limits: Limits,
    peer: SocketAddr,
}

impl<M, S, B> Connection<M>
where
    M: Fn(Accepted) -> S,
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    async fn plain(self, stream: TcpStream) {
        let accepted = Accepted {
            peer: self.peer,
            tls: false,
            client_certificate: false,
            http2: false,
        };
        let service = (self.make)(accepted);
        let (read, write) = stream.into_split();
        h1::serve(
            ReadSide::Plain(read),
            WriteSide::Plain(write),
            service,
            self.limits,
            self.stop,
            self.peer,
        )
        .await;
    }

    async fn tls(self, stream: TcpStream, tls: &ServerTls) {
        let handshake = tls.acceptor().accept(stream);
        let stream = match tokio::time::timeout(self.limits.handshake_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return handshake_failed(self.peer, &error),
            Err(_) => return handshake_failed(self.peer, &"timed out"),
        };
        let (_, session) = stream.get_ref();
        let accepted = Accepted {
            peer: self.peer,
            tls: true,
            client_certificate: session.peer_certificates().is_some_and(|c| !c.is_empty()),
            http2: session.alpn_protocol() == Some(b"h2"),
        };
        let service = (self.make)(accepted);
        if accepted.http2 {
            let activity = Arc::new(Activity::new());
            let counted = counted(service, activity.clone());
            let connection = self.http2.serve_connection(TokioIo::new(stream), counted);
            let idle = Some((activity, self.limits.header_read_timeout));
            drive(connection, self.stop, idle, self.peer).await;
        } else {
            let (read, write) = tokio::io::split(stream);
            h1::serve(
                ReadSide::Tls(read),
                WriteSide::Tls(write),
                service,
                self.limits,
                self.stop,
                self.peer,
            )
            .await;
        }
    }
}

fn handshake_failed(peer: SocketAddr, reason: &dyn Display) {
    // Scanners and clients with the wrong trust fail here all day; not worth a warning.
    tracing::debug!(%peer, reason = %reason, "TLS handshake failed");
}

/// Runs one connection until it ends, asking it to finish when the listener stops or,
/// with `idle`, when it has had no request in flight for that long.
async fn drive<C>(
    connection: C,
    mut stop: watch::Receiver<bool>,
    idle: Option<(Arc<Activity>, Duration)>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: Display,
{
    let mut connection = pin!(connection);
    let mut finishing = false;
    loop {
        let idle_check = async {
            match &idle {
                Some((activity, limit)) => {
                    tokio::time::sleep_until(activity.idle_deadline(*limit).into()).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, %peer, "client connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stopped| *stopped), if !finishing => {
                finishing = true;
                connection.as_mut().graceful_shutdown();
            }
            () = idle_check, if !finishing => {
                if let Some((activity, limit)) = &idle
                    && activity.idle_for() >= *limit
                {
                    finishing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Requests in flight on one HTTP/2 connection and when the last one ended.
struct Activity {
    origin: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `origin` when a request last ended.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// How long the connection has had nothing in flight; zero while it has.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        last.elapsed()
    }

    /// When the connection would have been idle for `limit`, as far as is known now.
    fn idle_deadline(&self, limit: Duration) -> Instant {
        Instant::now() + limit.saturating_sub(self.idle_for())
    }
}

/// Held from a request's start until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = u64::try_from(activity.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_ms.fetch_max(now, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `service`, counting each request in flight on `activity` until its response body
/// is finished.
fn counted<S, B>(
    service: S,
    activity: Arc<Activity>,
) -> impl Service<
    Request<Incoming>,
    Response = Response<CountedBody<B>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<CountedBody<B>>, Infallible>> + Send + 'static,
> + Send
+ 'static
where
    S: Service<Request<RequestBody>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + Unpin + 'static,
{
    service_fn(move |request: Request<Incoming>| {
        let guard = activity.enter();
        let response = service.call(request.map(RequestBody::http2));
        async move {
            let mut response = response.await?;
            // HTTP/2 carries every field in the map (`WireFields`' policy).
            if let Some(fields) = response.extensions_mut().remove::<WireFields>() {
                fields.add_to(response.headers_mut());
            }
            Ok(response.map(|inner| CountedBody {
                inner,
                _guard: guard,
            }))
        }
    })
}

/// A response body that keeps its request counted as in flight until it is dropped.
struct CountedBody<B> {
    inner: B,
    _guard: InFlight,
}

impl<B: Body + Unpin> Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
