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
//! - **A connection goes back to its pool when its answer has been read to the end**
//!   and nothing about it is in doubt (`h1.rs`), most recently used first out; one
//!   whose answer was cut off, or that the upstream closed or sent anything on while
//!   idle, is never reused. When a reused connection closes before any of its answer
//!   arrived (the upstream had closed it meanwhile), a request without a body and with
//!   an idempotent method is sent again on a new connection; any other is a 502, as
//!   the upstream may have acted on it. Idle connections are closed after a minute, at
//!   most 128 are kept per upstream.
//!
//! The pool is the gateway's own rather than a general-purpose client's: a proxied
//! request then costs no task spawn, no boxed future and no hashing of the upstream's
//! name (docs/BENCHMARKS.md, "The gateway against nginx"). So is the protocol (`h1.rs`):
//! the task serving the client writes the request and reads the response itself.

use crate::body::{BoxError, GatewayBody};
use crate::error::ProxyError;
use crate::h1::{self, Conn, Failure, Outgoing};
use crate::listener::BodyStalled;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, SizeHint};
use hyper::http::uri::{Authority, PathAndQuery, Scheme};
use hyper::{Request, Response, Uri};
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
    conn: Conn,
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

    /// One exchange: a pooled connection, or a new one, and the response head. A
    /// request that may be sent twice (bodiless and idempotent) goes again on a new
    /// connection when a reused one closed before answering: the upstream had closed it
    /// meanwhile.
    async fn exchange(
        &self,
        target: &Target,
        request: Request<GatewayBody>,
    ) -> Result<Response<GatewayBody>, ProxyError> {
        let (parts, body) = request.into_parts();
        let outgoing = Outgoing::new(&parts, &body);
        let mut body = (!body.is_end_stream()).then_some(body);
        loop {
            let (mut conn, reused) = match self.checkout(target) {
                Some(conn) => (conn, true),
                // Boxed: a new connection is rare, and its future (TLS included) is
                // large; inline, it would be moved with every exchange's.
                None => (Box::pin(self.connect(target)).await?, false),
            };
            match conn.exchange(&outgoing, body.as_mut()).await {
                Ok(head) => {
                    let home = Home {
                        target: target.clone(),
                        pool: Arc::downgrade(&self.inner),
                    };
                    return Ok(head.into_response(conn, home).map(BodyExt::boxed_unsync));
                }
                Err(Failure::Closed(_)) if reused && body.is_none() && outgoing.retryable() => {}
                Err(failure) => return Err(classify(failure, target)),
            }
        }
    }

    /// The most recently used idle connection to `target` that is still open.
    fn checkout(&self, target: &Target) -> Option<Conn> {
        let mut pools = self.inner.lock();
        let pool = pools.iter_mut().find(|pool| pool.target == *target)?;
        while let Some(mut idle) = pool.idle.pop() {
            if idle.since.elapsed() < POOL_IDLE_TIMEOUT && idle.conn.is_usable() {
                return Some(idle.conn);
            }
        }
        None
    }

    /// A new connection to `target`, TLS handshake included.
    async fn connect(&self, target: &Target) -> Result<Conn, ProxyError> {
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
            return Ok(Conn::new(h1::Io::Plain(tcp)));
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
        Ok(Conn::new(h1::Io::Tls(Box::new(tls))))
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
                    pool.idle.retain_mut(|idle| {
                        idle.since.elapsed() < POOL_IDLE_TIMEOUT && idle.conn.is_usable()
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

    /// Puts a connection whose exchange is over back in `target`'s pool.
    fn checkin(&self, target: Target, conn: Conn) {
        let idle = Idle {
            conn,
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

/// Makes `uri` its origin form (`/path?query`), as HTTP/1.1 sends it to an origin.
fn origin_form(uri: &mut Uri) {
    // Moved out, not cloned: the path's bytes are not shared a second time.
    let path = std::mem::take(uri)
        .into_parts()
        .path_and_query
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *uri = Uri::from(path);
}

/// Where a connection lent to one exchange goes back to once its answer has been read
/// to the end.
struct Home {
    target: Target,
    pool: Weak<Inner>,
}

impl h1::TakeBack for Home {
    fn take_back(self, conn: Conn) {
        if let Some(pool) = self.pool.upgrade() {
            pool.checkin(self.target, conn);
        }
    }
}

/// Decides whose fault a failed exchange with `target` was, and logs what an operator
/// must fix: broken exchanges, not refused connections.
fn classify(failure: Failure, target: &Target) -> ProxyError {
    if let Failure::Client(error) = &failure {
        return match error.downcast_ref::<ClientBodyError>() {
            Some(ClientBodyError(inner)) if inner.is::<BodyStalled>() => ProxyError::ClientTimeout,
            _ => ProxyError::ClientAborted,
        };
    }
    tracing::warn!(upstream = %target, error = %failure, "upstream exchange failed");
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
    use hyper::Method;
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

    /// A raw upstream on loopback: `answer(connection, request)` gives the bytes to send
    /// after reading each request whole (head and body), or `None` to close the
    /// connection instead. Counts connections and keeps every request's bytes.
    async fn raw_upstream(
        answer: impl Fn(usize, usize) -> Option<&'static [u8]> + Send + Sync + 'static,
    ) -> (String, Arc<AtomicU64>, Arc<Mutex<Vec<Vec<u8>>>>) {
        raw_upstream_closing(answer, false).await
    }

    /// [`raw_upstream`], closing each connection right after its first answer when
    /// `close_after` is set.
    async fn raw_upstream_closing(
        answer: impl Fn(usize, usize) -> Option<&'static [u8]> + Send + Sync + 'static,
        close_after: bool,
    ) -> (String, Arc<AtomicU64>, Arc<Mutex<Vec<Vec<u8>>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let (counted, kept) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let connection = usize::try_from(counted.fetch_add(1, Ordering::SeqCst)).unwrap();
                let (answer, kept) = (answer.clone(), kept.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    for request in 0.. {
                        let whole = loop {
                            if let Some(length) = whole_request(&buffer) {
                                break length;
                            }
                            let mut more = [0u8; 4096];
                            match stream.read(&mut more).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buffer.extend_from_slice(&more[..n]),
                            }
                        };
                        kept.lock().unwrap().push(buffer.drain(..whole).collect());
                        match answer(connection, request) {
                            Some(bytes) => stream.write_all(bytes).await.unwrap(),
                            None => return,
                        }
                        if close_after {
                            return;
                        }
                    }
                });
            }
        });
        (format!("http://{address}"), connections, requests)
    }

    /// The length of the whole request at the start of `bytes`, if it is all there: its
    /// body framed by `content-length` or chunks, as the gateway sends it.
    fn whole_request(bytes: &[u8]) -> Option<usize> {
        let text = String::from_utf8_lossy(bytes);
        let head = text.find("\r\n\r\n")? + 4;
        let lower = text[..head].to_ascii_lowercase();
        if lower.contains("transfer-encoding: chunked") {
            return text[head..].find("0\r\n\r\n").map(|end| head + end + 5);
        }
        let length = lower
            .split("\r\n")
            .find_map(|line| line.strip_prefix("content-length: "))
            .map_or(0, |n| n.parse::<usize>().unwrap());
        (bytes.len() >= head + length).then_some(head + length)
    }

    async fn exchange(
        upstream: &Upstream,
        origin: &str,
        method: Method,
        body: GatewayBody,
    ) -> Result<(hyper::StatusCode, Vec<u8>), ProxyError> {
        let request = Request::builder()
            .method(method)
            .uri(format!("{origin}/x"))
            .header("host", "upstream")
            .body(body)
            .unwrap();
        let progress = Progress::since(std::time::Instant::now());
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, progress.track(body));
        let response = upstream
            .send(request, Duration::from_secs(10), &progress)
            .await?;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Ok((status, body.to_vec()))
    }

    fn empty() -> GatewayBody {
        crate::body::full(Bytes::new())
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_connection_read_to_the_end_of_its_answer_is_used_again() {
        let (origin, connections, _) = raw_upstream(|_, _| Some(OK)).await;
        let upstream = Upstream::new(None).unwrap();
        for _ in 0..3 {
            let answer = exchange(&upstream, &origin, Method::GET, empty())
                .await
                .unwrap();
            assert_eq!(answer, (hyper::StatusCode::OK, b"ok".to_vec()));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_response_smuggled_behind_another_never_reaches_a_client() {
        // Framed two ways: by chunks the first answer ends before the second begins; by
        // its length it would swallow it. Or bytes after an answer nobody asked for.
        const TWO_WAYS: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 44\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled";
        const TRAILING: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled";
        for first in [TWO_WAYS, TRAILING] {
            let (origin, connections, _) = raw_upstream(move |connection, request| {
                Some(if connection == 0 && request == 0 {
                    first
                } else {
                    OK
                })
            })
            .await;
            let upstream = Upstream::new(None).unwrap();
            let answer = exchange(&upstream, &origin, Method::GET, empty())
                .await
                .unwrap();
            assert_eq!(answer.1, b"hello");
            let answer = exchange(&upstream, &origin, Method::GET, empty())
                .await
                .unwrap();
            assert_eq!(answer.1, b"ok", "the next request gets its own answer");
            assert_eq!(
                connections.load(Ordering::SeqCst),
                2,
                "the first connection was dropped"
            );
        }
        // The control: a chunked answer alone keeps its connection.
        const CHUNKED: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        let (origin, connections, _) = raw_upstream(|_, _| Some(CHUNKED)).await;
        let upstream = Upstream::new(None).unwrap();
        for _ in 0..2 {
            let answer = exchange(&upstream, &origin, Method::GET, empty())
                .await
                .unwrap();
            assert_eq!(answer.1, b"hello");
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_answer_whose_length_is_in_doubt_is_a_502() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: -2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, identity, chunked\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            let (origin, _, _) = raw_upstream(move |_, _| Some(answer)).await;
            let upstream = Upstream::new(None).unwrap();
            let outcome = exchange(&upstream, &origin, Method::GET, empty()).await;
            assert_eq!(outcome.unwrap_err(), ProxyError::UpstreamUnreachable);
        }
    }

    #[tokio::test]
    async fn a_bodiless_idempotent_request_goes_again_when_a_kept_connection_closed_unanswered() {
        // The upstream reads the second request on its first connection and closes it.
        let script = |connection, request| (connection > 0 || request == 0).then_some(OK);
        let (origin, connections, _) = raw_upstream(script).await;
        let upstream = Upstream::new(None).unwrap();
        exchange(&upstream, &origin, Method::GET, empty())
            .await
            .unwrap();
        let again = exchange(&upstream, &origin, Method::GET, empty())
            .await
            .unwrap();
        assert_eq!(again.1, b"ok");
        assert_eq!(connections.load(Ordering::SeqCst), 2);
        // A POST may have been acted on: it is never sent twice.
        let (origin, connections, requests) = raw_upstream(script).await;
        let upstream = Upstream::new(None).unwrap();
        exchange(&upstream, &origin, Method::GET, empty())
            .await
            .unwrap();
        let post = exchange(&upstream, &origin, Method::POST, empty()).await;
        assert_eq!(post.unwrap_err(), ProxyError::UpstreamUnreachable);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(requests.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_body_of_unknown_length_goes_in_chunks_and_a_known_one_with_its_length() {
        let (origin, _, requests) = raw_upstream(|_, _| Some(OK)).await;
        let upstream = Upstream::new(None).unwrap();
        let parts = ["ab", "", "cd"].map(Bytes::from).to_vec();
        let streamed = crate::h1::tests::unsized_body(parts);
        exchange(&upstream, &origin, Method::PUT, streamed)
            .await
            .unwrap();
        exchange(&upstream, &origin, Method::PUT, crate::body::full("abcd"))
            .await
            .unwrap();
        let requests = requests.lock().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&requests[0]),
            "PUT /x HTTP/1.1\r\nhost: upstream\r\ntransfer-encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8_lossy(&requests[1]),
            "PUT /x HTTP/1.1\r\nhost: upstream\r\ncontent-length: 4\r\n\r\nabcd"
        );
    }

    #[tokio::test]
    async fn a_body_without_a_length_ends_at_the_close_and_its_connection_is_not_kept() {
        let answer: &'static [u8] = b"HTTP/1.1 200 OK\r\n\r\nuntil the close";
        let (origin, connections, _) = raw_upstream_closing(move |_, _| Some(answer), true).await;
        let upstream = Upstream::new(None).unwrap();
        for _ in 0..2 {
            let answer = exchange(&upstream, &origin, Method::GET, empty())
                .await
                .unwrap();
            assert_eq!(answer, (hyper::StatusCode::OK, b"until the close".to_vec()));
        }
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_cut_short_of_its_length_is_an_error_to_whoever_reads_it() {
        let answer: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
        let (origin, _, _) = raw_upstream_closing(move |_, _| Some(answer), true).await;
        let upstream = Upstream::new(None).unwrap();
        let request = Request::builder()
            .uri(format!("{origin}/x"))
            .header("host", "upstream")
            .body(empty())
            .unwrap();
        let progress = Progress::since(std::time::Instant::now());
        let response = upstream
            .send(request, Duration::from_secs(10), &progress)
            .await
            .unwrap();
        assert_eq!(response.status(), hyper::StatusCode::OK);
        let error = response.into_body().collect().await.unwrap_err();
        assert!(
            error.to_string().contains("before the end of its response"),
            "{error}"
        );
        // The control: the same answer whole.
        let whole: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort, now";
        let (origin, _, _) = raw_upstream_closing(move |_, _| Some(whole), true).await;
        let answer = exchange(&upstream, &origin, Method::GET, empty())
            .await
            .unwrap();
        assert_eq!(answer.1, b"short, now");
    }

    #[tokio::test]
    async fn a_response_head_past_its_limit_is_a_502() {
        let padding = "x".repeat(crate::h1::MAX_HEAD);
        let huge: &'static [u8] = format!("HTTP/1.1 200 OK\r\nx-pad: {padding}\r\n\r\n")
            .leak()
            .as_bytes();
        let (origin, _, _) = raw_upstream(move |_, _| Some(huge)).await;
        let upstream = Upstream::new(None).unwrap();
        let outcome = exchange(&upstream, &origin, Method::GET, empty()).await;
        assert_eq!(outcome.unwrap_err(), ProxyError::UpstreamUnreachable);
        // The control: a large head within the limit goes through.
        let padding = "x".repeat(crate::h1::MAX_HEAD / 2);
        let large: &'static [u8] =
            format!("HTTP/1.1 200 OK\r\nx-pad: {padding}\r\ncontent-length: 2\r\n\r\nok")
                .leak()
                .as_bytes();
        let (origin, _, _) = raw_upstream(move |_, _| Some(large)).await;
        let answer = exchange(&upstream, &origin, Method::GET, empty())
            .await
            .unwrap();
        assert_eq!(answer, (hyper::StatusCode::OK, b"ok".to_vec()));
    }
}
