//! What the gateway's listener allows its clients, and the request-body guard that
//! enforces the body timeout (README.md, "The gateway"; docs/DEPLOYMENT.md, "Slow
//! clients and connection limits").
//!
//! Policy, the same as the latchkey server's listener:
//! - **Request heads are timed** (`header_read_timeout_seconds`), counted from when the
//!   gateway starts waiting for one: on a new connection and again between requests on
//!   a kept-alive one, so an idle connection is closed after that long too.
//! - **Request bodies must keep moving.** A body that sends nothing for
//!   `body_read_timeout_seconds` while it is being forwarded ends the request with 408
//!   `request_timeout` and the connection is closed. The limit is per read, not for the
//!   whole body: a slow upload that keeps arriving is not cut, a stalled one is.
//! - **Responses are never timed** here: downloads and event streams from an upstream
//!   run as long as the client reads them.
//! - **Connections are capped** (`max_connections`): beyond, the accept loop waits for
//!   one to close, so new clients wait in the kernel's backlog instead of being refused.

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// What a listener allows its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The longest wait for a whole request head.
    pub(crate) header_read_timeout: Duration,
    /// The longest wait for the next bytes of a request body.
    pub(crate) body_read_timeout: Duration,
    /// Open connections at most.
    pub(crate) max_connections: usize,
}

/// A client's request body that fails once it has sent nothing for `timeout` while
/// being read.
pub(crate) struct StallGuard {
    inner: Incoming,
    timeout: Duration,
    /// Armed while a read waits; dropped whenever bytes arrive.
    idle: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    pub(crate) fn new(inner: Incoming, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            idle: None,
        }
    }
}

/// The error a stalled body ends with; the forward phase answers 408 for it.
#[derive(Debug)]
pub(crate) struct BodyStalled(Duration);

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
