//! The gateway's HTTP client: forwarding requests to upstreams over pools of keep-alive
//! HTTP/1.1 connections, plain or over TLS.
//!
//! Policy:
//! - **Bodies stream.** The request body goes upstream frame by frame as the client
//!   sends it, and the response body comes back the same way; the gateway never holds
//!   a whole body, so memory per request is a few frames whatever the size.
//! - **The timeout is about the upstream.** An upstream has the route's timeout to send
//!   its response head, counted from the last request frame it was sent (or from the
//!   start, for a bodiless request) — a slow client upload does not count against the
//!   upstream. Connecting, TLS handshake included, is included. Once the head has
//!   arrived the body is not timed, so long downloads and event streams work.
//! - **Whose fault.** A refused or broken connection is the upstream's (502), silence is
//!   the upstream's (504), a request body that fails mid-way is the client's (400), and
//!   one that stops arriving for the body timeout is the client's too (408).
//! - **TLS is checked, never waved through.** An `https://` upstream's certificate is
//!   checked (rustls on aws-lc-rs, as everywhere in latchkey) against the system's
//!   trusted roots plus the route's `tls_ca_file`, if any (README.md, "The gateway").
//!   One that is refused — unknown CA, another host, expired — is a 502 like any
//!   failed connection, and is logged at warn with the upstream and rustls' reason:
//!   unlike a refused connection it is a configuration mistake, not a passing fault.
//! - **One pool per trust.** Routes without `tls_ca_file` share one client, kept
//!   across reloads; routes naming the same CA file share one client of their own,
//!   built when the routes are compiled, so a reload re-reads every CA file.
//! - **A connection goes back to its pool when its answer has been read to the end**,
//!   most recently used first out; one whose answer was cut off, or that the upstream
//!   closed, is never reused. A request that a reused connection could not even start
//!   (the upstream had closed it meanwhile) is retried on another, since none of it was
//!   sent. Idle connections are closed after a minute, at most 128 are kept per
//!   upstream.
//!
//! The pool is the gateway's own rather than a general-purpose client's: a proxied
//! request then costs no task spawn, no boxed future and no hashing of the upstream's
//! name (docs/BENCHMARKS.md, "The gateway against nginx").

use crate::body::{BoxError, GatewayBody};
use crate::error::ProxyError;
use crate::listener::BodyStalled;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per upstream.
const POOL_MAX_IDLE_PER_HOST: usize = 128;

/// How often idle connections past [`POOL_IDLE_TIMEOUT`] are looked for.
const POOL_SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// A client with its own connection pool, speaking `http://` and `https://`.
#[derive(Clone)]
pub(crate) struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    tls: TlsConnector,
    /// Idle connections by upstream; a handful of upstreams, so a list.
    pools: Mutex<Vec<Pool>>,
    /// Whether the task closing expired idle connections runs.
    sweeping: AtomicBool,
}

/// Where a request goes: the scheme and authority of its URI.
#[derive(Clone)]
struct Target {
    https: bool,
    authority: Authority,
}

impl PartialEq for Target {
    /// Byte for byte: every request of a route names its upstream as the route's
    /// configuration spelled it, so the case-insensitive comparison of `Authority`
    /// would only cost more.
    fn eq(&self, other: &Self) -> bool {
        self.https == other.https && self.authority.as_str() == other.authority.as_str()
    }
}

/// The idle connections to one upstream, the most recently used last.
struct Pool {
    target: Target,
    idle: Vec<Idle>,
}

struct Idle {
    sender: http1::SendRequest<GatewayBody>,
    since: Instant,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Upstream")
    }
}

impl fmt::Display for Target {
    /// The scheme and authority, for the log: never a path or query, which may carry
    /// what a client would not want logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority)
    }
}

impl Target {
    fn of(uri: &Uri) -> Option<Self> {
        Some(Self {
            https: uri.scheme() == Some(&Scheme::HTTPS),
            authority: uri.authority()?.clone(),
        })
    }

    /// The host to connect to, without the brackets of an IPv6 literal.
    fn host(&self) -> &str {
        let host = self.authority.host();
        host.strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(host)
    }

    fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.https { 443 } else { 80 })
    }
}

impl Upstream {
    /// A client whose `https://` connections trust the system's roots plus the CA
    /// certificates in `ca_file`. The error names the file and says what is wrong.
    pub(crate) fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let mut tls = latchkey_verify::tls_client_config(ca_file, None).map_err(|error| {
            let text = error.to_string();
            // The verifier's message names its own option and the file; the caller
            // names the route's, so keep only the reason.
            ca_file
                .map(|file| format!("invalid option: tls_ca_file {}: ", file.display()))
                .and_then(|own| text.strip_prefix(&own).map(str::to_owned))
                .unwrap_or(text)
        })?;
        // HTTP/1.1 alone: no ALPN is offered, which a server reads as HTTP/1.1.
        tls.alpn_protocols.clear();
        Ok(Self {
            inner: Arc::new(Inner {
                tls: TlsConnector::from(Arc::new(tls)),
                pools: Mutex::new(Vec::new()),
                sweeping: AtomicBool::new(false),
            }),
        })
    }

    /// Sends `request` (its URI absolute, its `Host` set, its body already wrapped by
    /// [`Progress::track`]) and waits for the response head, for at most `timeout`
    /// after the last request frame. The response body returns the connection to the
    /// pool once it has been read to its end.
    pub(crate) async fn send(
        &self,
        mut request: Request<GatewayBody>,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        let Some(target) = Target::of(request.uri()) else {
            tracing::error!("an upstream request without an authority");
            return Err(ProxyError::Internal);
        };
        origin_form(request.uri_mut());
        let mut exchange = pin!(self.exchange(&target, request));
        loop {
            let deadline = progress.last() + timeout;
            match tokio::time::timeout_at(deadline, &mut exchange).await {
                Ok(result) => return result,
                // The client sent more meanwhile: the upstream's clock restarts.
                Err(_) if progress.last() + timeout > Instant::now() => {}
                Err(_) => return Err(ProxyError::UpstreamTimeout),
            }
        }
    }

    /// One exchange: a pooled connection, or a new one, and the response head.
    async fn exchange(
        &self,
        target: &Target,
        mut request: Request<GatewayBody>,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        loop {
            let (mut sender, reused) = match self.checkout(target) {
                Some(sender) => (sender, true),
                // Boxed: a new connection is rare, and its future (TLS included) is
                // large; inline, it would be moved with every exchange's.
                None => (Box::pin(self.connect(target)).await?, false),
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let (parts, body) = response.into_parts();
                    let body = Returning {
                        inner: body,
                        ended: false,
                        connection: Some(Connection {
                            sender,
                            target: target.clone(),
                            pool: Arc::downgrade(&self.inner),
                        }),
                    };
                    return Ok(Response::from_parts(parts, body.boxed_unsync()));
                }
                Err(mut error) => match error.take_message() {
                    // Nothing was sent on a connection the upstream had closed: the
                    // request goes on another.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(classify(&error.into_error(), target)),
                },
            }
        }
    }

    /// The most recently used idle connection to `target` that is still open.
    fn checkout(&self, target: &Target) -> Option<http1::SendRequest<GatewayBody>> {
        let mut pools = self.inner.lock();
        let pool = pools.iter_mut().find(|pool| pool.target == *target)?;
        while let Some(idle) = pool.idle.pop() {
            if idle.sender.is_ready() && idle.since.elapsed() < POOL_IDLE_TIMEOUT {
                return Some(idle.sender);
            }
        }
        None
    }

    /// A new connection to `target`, TLS handshake included; its driver runs as its
    /// own task until the connection closes.
    async fn connect(
        &self,
        target: &Target,
    ) -> Result<http1::SendRequest<GatewayBody>, ProxyError> {
        self.start_sweeping();
        let tcp = TcpStream::connect((target.host(), target.port()))
            .await
            .map_err(|error| {
                tracing::debug!(upstream = %target, %error, "connecting to the upstream failed");
                ProxyError::UpstreamUnreachable
            })?;
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set");
        }
        if !target.https {
            return handshake(target, tcp).await;
        }
        let name = ServerName::try_from(target.host().to_owned()).map_err(|error| {
            tracing::warn!(upstream = %target, %error, "the upstream's host is no TLS server name");
            ProxyError::UpstreamUnreachable
        })?;
        let tls = self.inner.tls.connect(name, tcp).await.map_err(|error| {
            match tls_failure(&error) {
                Some(reason) => tracing::warn!(upstream = %target, %reason, "upstream TLS failed; check the route's upstream and tls_ca_file"),
                None => tracing::debug!(upstream = %target, %error, "the upstream's TLS handshake failed"),
            }
            ProxyError::UpstreamUnreachable
        })?;
        handshake(target, tls).await
    }

    /// Starts, once, the task that closes idle connections past their time; it ends
    /// with the client.
    fn start_sweeping(&self) {
        if self.inner.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pools = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POOL_SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                let Some(inner) = pools.upgrade() else { return };
                for pool in inner.lock().iter_mut() {
                    pool.idle.retain(|idle| {
                        !idle.sender.is_closed() && idle.since.elapsed() < POOL_IDLE_TIMEOUT
                    });
                }
            }
        });
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Vec<Pool>> {
        // The pool holds no invariant a panic could break half-way.
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts a connection whose exchange is over back in `target`'s pool, if it can
    /// take another request.
    fn checkin(&self, target: Target, sender: http1::SendRequest<GatewayBody>) {
        if !sender.is_ready() {
            return;
        }
        let idle = Idle {
            sender,
            since: Instant::now(),
        };
        let mut pools = self.lock();
        match pools.iter_mut().find(|pool| pool.target == target) {
            Some(pool) if pool.idle.len() >= POOL_MAX_IDLE_PER_HOST => {}
            Some(pool) => pool.idle.push(idle),
            None => pools.push(Pool {
                target,
                idle: vec![idle],
            }),
        }
    }
}

/// The HTTP/1.1 handshake over `io`, and the connection's driver spawned.
async fn handshake<I>(target: &Target, io: I) -> Result<http1::SendRequest<GatewayBody>, ProxyError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(|error| {
        tracing::warn!(upstream = %target, %error, "the upstream connection failed");
        ProxyError::UpstreamUnreachable
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "an upstream connection ended");
        }
    });
    Ok(sender)
}

/// Makes `uri` its origin form (`/path?query`), as HTTP/1.1 sends it to an origin.
fn origin_form(uri: &mut Uri) {
    // Moved out, not cloned: the path's bytes are not shared a second time.
    let path = std::mem::take(uri)
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(path);
}

/// A connection lent to one exchange, to go back to its pool.
struct Connection {
    sender: http1::SendRequest<GatewayBody>,
    target: Target,
    pool: Weak<Inner>,
}

impl Connection {
    fn checkin(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self.target, self.sender);
        }
    }
}

/// An upstream's response body, streamed to the client as it arrives, that returns
/// its connection to the pool once read to the end. Cut off or failed, it takes the
/// connection down with it.
struct Returning {
    inner: Incoming,
    ended: bool,
    connection: Option<Connection>,
}

impl Returning {
    fn end(&mut self) {
        self.ended = true;
        if let Some(connection) = self.connection.take() {
            connection.checkin();
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if self.inner.is_end_stream() {
                    self.end();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.connection = None;
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                self.end();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Returning {
    /// A body the server never polled because it was empty (a 204, an answer to
    /// `HEAD`) was read to its end all the same.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.end();
        }
    }
}

/// Decides whose fault a failed exchange with `target` was, and logs what an operator
/// must fix: broken exchanges, not refused connections.
fn classify(error: &hyper::Error, target: &Target) -> ProxyError {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(ClientBodyError(inner)) = cause.downcast_ref::<ClientBodyError>() {
            if inner.is::<BodyStalled>() {
                return ProxyError::ClientTimeout;
            }
            return ProxyError::ClientAborted;
        }
        source = cause.source();
    }
    tracing::warn!(upstream = %target, %error, "upstream exchange failed");
    ProxyError::UpstreamUnreachable
}

/// The rustls error somewhere in `error`'s causes. An `io::Error` does not give the
/// error it wraps as its source (it skips to that error's own source), and TLS failures
/// come wrapped in one or two of them (tokio-rustls, hyper-rustls), so those are opened
/// by hand.
fn tls_failure<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => current.source(),
        };
    }
    None
}

/// When the request last made progress towards the upstream.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    start: Instant,
    /// Milliseconds after `start` of the last request frame.
    last_ms: Arc<AtomicU64>,
}

impl Progress {
    /// Progress counted from `start`, when the request was received: the clock the
    /// request's duration is read from too, so no second reading of it is taken.
    pub(crate) fn since(start: std::time::Instant) -> Self {
        Self {
            start: Instant::from_std(start),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(elapsed, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    /// Wraps a client's request body so each frame counts as progress, and its errors
    /// are known to be the client's.
    pub(crate) fn track<B>(&self, body: B) -> GatewayBody
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        Tracked {
            inner: body,
            progress: self.clone(),
        }
        .boxed_unsync()
    }
}

/// A client's request body that failed.
#[derive(Debug)]
struct ClientBodyError(BoxError);

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client request body: {}", self.0)
    }
}

impl StdError for ClientBodyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.0.as_ref())
    }
}

struct Tracked<B> {
    inner: B,
    progress: Progress,
}

impl<B> Body for Tracked<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                self.progress.touch();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError(error.into())))))
            }
            Poll::Ready(None) => {
                self.progress.touch();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CertificateError;
    use std::io;

    #[test]
    fn a_tls_refusal_is_found_through_the_io_errors_that_wrap_it() {
        let refusal = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let handshake = io::Error::new(io::ErrorKind::InvalidData, refusal.clone());
        let connect: BoxError = Box::new(io::Error::other(handshake));
        assert_eq!(tls_failure(connect.as_ref()), Some(&refusal));
    }

    #[test]
    fn a_refused_connection_is_no_tls_failure() {
        let refused: BoxError = Box::new(io::Error::other(io::Error::from(
            io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(tls_failure(refused.as_ref()), None);
    }

    #[test]
    fn the_logged_target_leaves_out_the_path_and_query() {
        let uri: hyper::Uri = "https://api.internal:8443/a/b?token=x".parse().unwrap();
        assert_eq!(
            Target::of(&uri).unwrap().to_string(),
            "https://api.internal:8443"
        );
    }

    #[test]
    fn a_target_connects_to_its_host_and_port() {
        let target = |uri: &str| Target::of(&uri.parse().unwrap()).unwrap();
        assert_eq!(target("http://[::1]:8080/x").host(), "::1");
        assert_eq!(target("http://[::1]:8080/x").port(), 8080);
        assert_eq!(target("https://api.internal/x").port(), 443);
        assert_eq!(target("http://api.internal/x").port(), 80);
        assert!(Target::of(&"/relative".parse().unwrap()).is_none());
    }

    #[test]
    fn the_upstream_is_sent_the_origin_form() {
        let mut uri: hyper::Uri = "https://api.internal:8443/a/b?x=%2F".parse().unwrap();
        origin_form(&mut uri);
        assert_eq!(uri.to_string(), "/a/b?x=%2F");
        let mut bare: hyper::Uri = "http://api.internal".parse().unwrap();
        origin_form(&mut bare);
        assert_eq!(bare.to_string(), "/");
    }
}
