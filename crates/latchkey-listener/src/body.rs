//! The request-body guard behind `body_read_timeout_seconds`: a body that sends
//! nothing for that long while it is being read fails, and says so.

use crate::framing::BoxError;
use crate::h1::Http1Body;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// A request body as the application receives it: read by latchkey's own HTTP/1.1,
/// or by hyper's HTTP/2.
pub struct RequestBody(Inner);

enum Inner {
    Http1(Http1Body),
    Http2(Incoming),
}

impl RequestBody {
    pub(crate) fn http1(body: Http1Body) -> Self {
        Self(Inner::Http1(body))
    }

    pub(crate) fn http2(body: Incoming) -> Self {
        Self(Inner::Http2(body))
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Http1(_) => f.write_str("RequestBody(HTTP/1.1)"),
            Inner::Http2(_) => f.write_str("RequestBody(HTTP/2)"),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().0 {
            Inner::Http1(body) => Pin::new(body).poll_frame(cx),
            Inner::Http2(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Http1(body) => body.is_end_stream(),
            Inner::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Http1(body) => body.size_hint(),
            Inner::Http2(body) => body.size_hint(),
        }
    }
}

/// A client's request body that fails with [`BodyStalled`] once it has sent nothing
/// for `timeout` while being read. The limit is per read, not for the whole body: a
/// slow upload that keeps arriving is not cut, a stalled one is.
pub struct StallGuard {
    inner: RequestBody,
    timeout: Duration,
    /// Armed while a read waits; dropped whenever bytes arrive.
    idle: Option<Pin<Box<Sleep>>>,
    /// Set when the body stalled, for a caller that answers after its handler did.
    stalled: Option<Arc<AtomicBool>>,
}

impl StallGuard {
    /// Guards `inner`.
    pub fn new(inner: RequestBody, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            idle: None,
            stalled: None,
        }
    }

    /// Also sets `flag` when the body stalls: a handler that reads the body sees only
    /// a failed read, and the caller needs to know that it was the client's silence.
    pub fn flagging(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stalled = Some(flag);
        self
    }
}

/// The error a stalled body ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyStalled(pub Duration);

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

impl Body for StallGuard {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
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
                if let Some(flag) = &this.stalled {
                    flag.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(Box::new(BodyStalled(timeout)))))
            }
            Poll::Ready(frame) => {
                this.idle = None;
                Poll::Ready(frame)
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
