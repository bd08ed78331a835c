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

use crate::body::{BoxError, GatewayBody};
use crate::error::ProxyError;
use crate::listener::BodyStalled;
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per upstream.
const POOL_MAX_IDLE_PER_HOST: usize = 128;

/// A client with its own connection pool, speaking `http://` and `https://`.
#[derive(Clone)]
pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, GatewayBody>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Upstream")
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
        // hyper-rustls writes the ALPN list itself from the protocols enabled, and
        // refuses a list already set (it panics); with HTTP/1.1 alone it offers none,
        // which a server reads as HTTP/1.1.
        tls.alpn_protocols.clear();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        // The TLS layer above passes `https://` URIs down to connect the TCP stream.
        http.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `request` (its body already wrapped by [`Progress::track`]) and waits for
    /// the response head, for at most `timeout` after the last request frame.
    pub(crate) async fn send(
        &self,
        request: Request<GatewayBody>,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Response<Incoming>, ProxyError> {
        let target = Origin(request.uri().clone());
        let mut exchange = pin!(self.client.request(request));
        loop {
            let deadline = progress.last() + timeout;
            match tokio::time::timeout_at(deadline, &mut exchange).await {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(error)) => return Err(classify(&error, &target)),
                // The client sent more meanwhile: the upstream's clock restarts.
                Err(_) if progress.last() + timeout > Instant::now() => {}
                Err(_) => return Err(ProxyError::UpstreamTimeout),
            }
        }
    }
}

/// The scheme and authority of a request's URI, for the log: never its path or query,
/// which may carry what a client would not want logged.
struct Origin(hyper::Uri);

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.scheme_str().unwrap_or("http");
        match self.0.authority() {
            Some(authority) => write!(f, "{scheme}://{authority}"),
            None => write!(f, "{scheme}://?"),
        }
    }
}

/// Decides whose fault a failed exchange with `target` was, and logs what an operator
/// must fix: TLS refusals and broken exchanges, not refused connections.
fn classify(error: &hyper_util::client::legacy::Error, target: &Origin) -> ProxyError {
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
    if let Some(reason) = tls_failure(error) {
        tracing::warn!(upstream = %target, %reason, "upstream TLS failed; check the route's upstream and tls_ca_file");
    } else if !error.is_connect() {
        tracing::warn!(upstream = %target, %error, "upstream exchange failed");
    }
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
    pub(crate) fn new() -> Self {
        Self {
            start: Instant::now(),
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
    fn the_logged_origin_leaves_out_the_path_and_query() {
        let uri: hyper::Uri = "https://api.internal:8443/a/b?token=x".parse().unwrap();
        assert_eq!(Origin(uri).to_string(), "https://api.internal:8443");
    }
}
