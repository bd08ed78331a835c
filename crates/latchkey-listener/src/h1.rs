//! latchkey's own HTTP/1.1 server connection: requests read, handed to the service
//! and answered by the task that accepted the connection, with no connection task,
//! channel or wake-up between them (docs/BENCHMARKS.md, "The listener's own
//! HTTP/1.1").
//!
//! Policy (RFC 9112), written for an edge that faces the internet:
//! - **A request's length is read strictly or the request is refused**, never guessed
//!   at: a wrong guess is how a second request is smuggled behind the first.
//!   - `Content-Length` and `Transfer-Encoding` together: 400.
//!   - `Transfer-Encoding` in an HTTP/1.0 request: 400.
//!   - chunked not the last coding, or given twice: 400; any coding but chunked alone:
//!     501.
//!   - `Content-Length` values that are not all one run of digits: 400.
//!   - a malformed chunk: the body fails, so the application answers it (400).
//!   - an HTTP/1.1 request without `Host`, any request with two, or a `Host` that is
//!     not a host and port: 400.
//!
//!   Every refusal closes the connection after its answer.
//! - **Heads are bounded**: at most [`MAX_HEAD`] bytes and [`MAX_FIELDS`] fields, or
//!   431. A head that does not parse (obsolete line folding, a space before a colon, a
//!   control byte, a target `http::Uri` refuses, an HTTP/2 preface) is a 400.
//! - **Heads are timed** (`header_read_timeout`): from when the connection starts
//!   waiting for one, on a new connection and between requests alike. A connection
//!   that runs out of time is closed without an answer.
//! - **A connection is kept** only when the client asked for it (HTTP/1.1 without
//!   `Connection: close`, HTTP/1.0 with `keep-alive`), the answer did not say close,
//!   its length was known, and the request body was read to its end. Otherwise the
//!   answer says `Connection: close`, and unread request bytes are drained for a moment
//!   so the client reads the answer rather than a reset.
//! - **`Expect: 100-continue`** is answered when the application first reads the
//!   body; an application that answers without reading it never asks for the body.
//! - **Answers are framed by the listener**: by the body's exact size, else the
//!   `Content-Length` the application set, else chunked (or, to an HTTP/1.0 client,
//!   the close). No body after `HEAD`, 1xx, 204 or 304. A `Date` is added when the
//!   application gave none.
//! - **Pipelined requests** are answered in order.
//! - **Shutdown**: an idle connection closes at once; one with a request in flight
//!   closes after answering it.

use crate::Limits;
use crate::framing::{
    BoxError, Framing, Piece, SendError, Sending, content_length, has_token, poll_piece,
    push_decimal, send_body, transfer_coding,
};
use crate::wire::WireFields;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::service::Service;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;

/// The largest request head.
pub const MAX_HEAD: usize = 64 * 1024;

/// The most header fields in a request head.
pub const MAX_FIELDS: usize = 100;

/// Bytes asked of the socket at a time.
const READ_SIZE: usize = 8 * 1024;

/// How long, and how much, unread request bytes are drained before a connection that
/// answered without reading them is closed.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// The reading side of a client connection.
pub(crate) enum ReadSide {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The writing side of a client connection.
pub(crate) enum WriteSide {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ReadSide {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteSide {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Self::Tls(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_flush(cx),
            Self::Tls(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Self::Tls(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

/// The reading side and the bytes read from it but not yet used.
struct Reader {
    io: ReadSide,
    buf: BytesMut,
}

/// Where a request body hands the connection's reader back — read to its end, or
/// given up on (dropped unread, or failed), which rules out reusing the connection but
/// still lets it drain — and how it asks for `100 Continue`.
struct Slot {
    state: Mutex<SlotState>,
}

struct SlotState {
    reader: Option<Reader>,
    /// The body was read exactly to its end.
    finished: bool,
    /// The body wants the client's bytes and the client waits for `100 Continue`.
    continue_asked: bool,
    /// The connection's task, woken when the body asks.
    waker: Option<Waker>,
}

impl Slot {
    fn new() -> Self {
        Self {
            state: Mutex::new(SlotState {
                reader: None,
                finished: false,
                continue_asked: false,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A request body read from an HTTP/1.1 connection, as it arrives.
pub struct Http1Body {
    reader: Option<Reader>,
    framing: Framing,
    slot: Option<Arc<Slot>>,
    /// The client waits for `100 Continue` before it sends the body.
    expect_continue: bool,
}

/// Why a request body could not be read.
#[derive(Debug)]
pub struct BodyError(&'static str);

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed request body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl Http1Body {
    fn empty() -> Self {
        Self {
            reader: None,
            framing: Framing::Done,
            slot: None,
            expect_continue: false,
        }
    }

    /// The body is read to its end: the reader goes back to its connection.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        self.give_back(true);
    }

    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.give_back(false);
        Poll::Ready(Some(Err(error)))
    }

    fn give_back(&mut self, finished: bool) {
        if let (Some(reader), Some(slot)) = (self.reader.take(), &self.slot) {
            let mut state = slot.lock();
            state.reader = Some(reader);
            state.finished = finished;
        }
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.expect_continue {
            this.expect_continue = false;
            if let Some(slot) = &this.slot {
                let mut state = slot.lock();
                state.continue_asked = true;
                if let Some(waker) = state.waker.take() {
                    waker.wake();
                }
            }
        }
        let Some(reader) = this.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let piece = ready!(poll_piece(
            &mut this.framing,
            &mut reader.buf,
            &mut reader.io,
            READ_SIZE,
            cx
        ));
        match piece {
            Piece::Data(data) => {
                if this.framing.is_done() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Piece::End => {
                this.finish();
                Poll::Ready(None)
            }
            Piece::Closed => this.fail(Box::new(BodyError(
                "the connection closed before the end of the body",
            ))),
            Piece::Malformed(reason) => this.fail(Box::new(BodyError(reason))),
            Piece::Io(error) => this.fail(Box::new(error)),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Done => SizeHint::with_exact(0),
            Framing::Chunked(_) | Framing::Close => SizeHint::default(),
        }
    }
}

impl Drop for Http1Body {
    /// A body dropped before its end gives the reader back unfinished, so the
    /// connection drains it rather than resetting under its answer.
    fn drop(&mut self) {
        let finished = self.framing.is_done();
        self.give_back(finished);
    }
}

/// A request the listener refuses itself, before any application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
}

impl Refusal {
    const fn too_large(reason: &'static str) -> Self {
        Self {
            status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            reason,
        }
    }

    const fn bad(reason: &'static str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
        }
    }
}

/// The refusal of a head httparse could not read, naming what was wrong.
fn unparsed(error: httparse::Error) -> Refusal {
    match error {
        httparse::Error::TooManyHeaders => Refusal::too_large("too many header fields"),
        httparse::Error::HeaderName => Refusal::bad("a header field name is invalid"),
        httparse::Error::HeaderValue => Refusal::bad("a header field value is invalid"),
        httparse::Error::NewLine => Refusal::bad("a line does not end with CRLF or LF"),
        httparse::Error::Token => Refusal::bad("the method or the target is invalid"),
        httparse::Error::Version => Refusal::bad("the version is not HTTP/1.0 or HTTP/1.1"),
        httparse::Error::Status => Refusal::bad("the request line does not parse"),
    }
}

/// A request head, and what the connection needs to know of it.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

/// Parses a whole request head at the start of `read` and takes it off, or gives
/// `None` while it is incomplete. The head's target and field values share the bytes
/// they were read into.
fn parse_head(read: &mut BytesMut) -> Result<Option<Head>, Refusal> {
    let bytes = read.split().freeze();
    let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        &bytes,
        &mut fields,
    );
    let length = match parsed {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => {
            // Nothing shares the bytes yet, so they go back without a copy.
            *read = bytes
                .try_into_mut()
                .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
            if read.len() >= MAX_HEAD {
                return Err(Refusal::too_large("the request head is too large"));
            }
            return Ok(None);
        }
        Err(error) => return Err(unparsed(error)),
    };
    if length > MAX_HEAD {
        return Err(Refusal::too_large("the request head is too large"));
    }
    // What came after the head: the body's start, or the next request.
    read.extend_from_slice(&bytes[length..]);
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(Refusal::bad("the request line is incomplete"));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| Refusal::bad("the method is not a token"))?;
    let uri = Uri::from_maybe_shared(bytes.slice_ref(target.as_bytes()))
        .map_err(|_| Refusal::bad("the request target is not a URI"))?;
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    // Room for what an application adds (a proxy's identity and forwarding fields, a
    // request id) without growing the map, which would hash every field again.
    let mut headers = HeaderMap::with_capacity(request.headers.len() + 8);
    let mut hosts = (0, None);
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Refusal::bad("a header field name is invalid"))?;
        let value = bytes.slice_ref(field.value);
        if name == header::HOST {
            hosts = (hosts.0 + 1, Some(value.clone()));
        }
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| Refusal::bad("a header field value is invalid"))?;
        headers.append(name, value);
    }
    host(version, hosts)?;
    let framing = request_framing(version, &mut headers)?;
    let keep_alive = if version == Version::HTTP_11 {
        !has_token(&headers, &header::CONNECTION, "close")
    } else {
        has_token(&headers, &header::CONNECTION, "keep-alive")
    };
    let expect_continue = version == Version::HTTP_11
        && framing != Framing::Done
        && has_token(&headers, &header::EXPECT, "100-continue");
    Ok(Some(Head {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    }))
}

/// An HTTP/1.1 request names its host exactly once, an HTTP/1.0 one at most once,
/// and a host is `uri-host [":" port]` or empty (RFC 9112 §3.2): two hosts could be
/// read one by the gateway (a DPoP proof's URI) and the other by an upstream.
/// `hosts` counts the `Host` fields and holds the last one's value, which is read where
/// it was received, without a copy.
fn host(version: Version, hosts: (usize, Option<Bytes>)) -> Result<(), Refusal> {
    let (count, last) = hosts;
    if count > 1 {
        return Err(Refusal::bad("more than one Host"));
    }
    let Some(host) = last else {
        return if version == Version::HTTP_11 {
            Err(Refusal::bad("an HTTP/1.1 request without Host"))
        } else {
            Ok(())
        };
    };
    let text = &host[..];
    let valid = text.is_empty()
        || (!text.contains(&b'@')
            && numeric_port(text)
            && hyper::http::uri::Authority::from_maybe_shared(host.clone()).is_ok());
    if valid {
        Ok(())
    } else {
        Err(Refusal::bad("Host is not a host and port"))
    }
}

/// Whether what follows the host in `authority` (a name, an IPv4 address or a
/// bracketed IPv6 one) is nothing, or `:` and digits only.
fn numeric_port(authority: &[u8]) -> bool {
    let after_host = if authority.first() == Some(&b'[') {
        match authority.iter().position(|&byte| byte == b']') {
            Some(end) => &authority[end + 1..],
            None => return false,
        }
    } else {
        match authority.iter().position(|&byte| byte == b':') {
            Some(colon) => &authority[colon..],
            None => &[],
        }
    };
    match after_host.split_first() {
        None => true,
        Some((b':', port)) => port.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    }
}

/// How a request's body is framed (RFC 9112 §6.3), or why the request is refused.
fn request_framing(version: Version, headers: &mut HeaderMap) -> Result<Framing, Refusal> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        if version != Version::HTTP_11 {
            return Err(Refusal::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err(Refusal::bad(
                "both Content-Length and Transfer-Encoding are given",
            ));
        }
        // Chunked alone: a body under any other coding would reach the application
        // as if it had none.
        let framing = transfer_coding(headers).map_err(Refusal::bad)?;
        let codings = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
            .filter(|coding| !coding.trim_ascii().is_empty())
            .count();
        return match framing {
            Framing::Chunked(_) if codings == 1 => Ok(framing),
            _ => Err(Refusal {
                status: StatusCode::NOT_IMPLEMENTED,
                reason: "a transfer coding other than chunked alone",
            }),
        };
    }
    match content_length(headers).map_err(Refusal::bad)? {
        None | Some(0) => Ok(Framing::Done),
        Some(length) => Ok(Framing::Length(length)),
    }
}

/// Why waiting for a request head ended without one.
// Returned once per request and moved once: boxing the head would cost an allocation
// per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Waited {
    Head(Head),
    /// The client closed, went silent too long, or the listener is stopping: close
    /// without an answer.
    Close,
    Refused(Refusal),
}

/// Serves one HTTP/1.1 connection until the client closes it, a request or answer
/// ends it, or the listener stops.
pub(crate) async fn serve<S, B>(
    read: ReadSide,
    mut write: WriteSide,
    service: S,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    S: Service<Request<crate::RequestBody>, Response = Response<B>, Error = Infallible>,
    B: Body + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut reader = Some(Reader {
        io: read,
        buf: BytesMut::with_capacity(READ_SIZE),
    });
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    let mut out = Vec::new();
    loop {
        let Some(mut current) = reader.take() else {
            break;
        };
        let head = match wait_for_head(&mut current, &mut timer, &limits, &mut stop).await {
            Waited::Head(head) => head,
            Waited::Close => break,
            Waited::Refused(refusal) => {
                tracing::debug!(%peer, status = refusal.status.as_u16(), reason = refusal.reason, "request refused by the listener");
                let _ = refuse(&mut write, refusal).await;
                linger(Some(current), write).await;
                return;
            }
        };
        let Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
        } = head;
        let head_method = method == Method::HEAD;
        let (body, slot) = if framing == Framing::Done {
            reader = Some(current);
            (Http1Body::empty(), None)
        } else {
            let slot = Arc::new(Slot::new());
            let body = Http1Body {
                reader: Some(current),
                framing,
                slot: Some(slot.clone()),
                expect_continue,
            };
            (body, Some(slot))
        };
        let mut request = Request::new(crate::RequestBody::http1(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        let response = match &slot {
            Some(slot) if expect_continue => {
                let call = service.call(request);
                match call_answering_continue(call, slot, &mut write).await {
                    Ok(response) => response,
                    Err(_) => return,
                }
            }
            _ => match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
        };
        let mut finished = slot.is_none();
        if let Some(slot) = &slot {
            let mut state = slot.lock();
            reader = state.reader.take();
            finished = state.finished;
        }
        let mut keep = keep_alive && finished && reader.is_some() && !*stop.borrow();
        let written = write_response(
            &mut write,
            &mut out,
            response,
            head_method,
            version,
            &mut keep,
        )
        .await;
        if let Err(error) = written {
            tracing::debug!(%peer, %error, "the answer could not be sent whole");
            return;
        }
        if !keep {
            if reader.is_none()
                && let Some(slot) = &slot
            {
                reader = slot.lock().reader.take();
            }
            linger(reader, write).await;
            return;
        }
    }
}

/// Waits for a whole request head, at most `header_read_timeout` from now.
async fn wait_for_head(
    reader: &mut Reader,
    timer: &mut Option<Pin<Box<Sleep>>>,
    limits: &Limits,
    stop: &mut watch::Receiver<bool>,
) -> Waited {
    let until = Instant::now() + limits.header_read_timeout;
    let sleep = match timer {
        Some(sleep) => {
            sleep.as_mut().reset(until.into());
            sleep
        }
        None => timer.insert(Box::pin(tokio::time::sleep_until(until.into()))),
    };
    loop {
        if !reader.buf.is_empty() {
            match parse_head(&mut reader.buf) {
                Ok(Some(head)) => return Waited::Head(head),
                Ok(None) => {}
                Err(refusal) => return Waited::Refused(refusal),
            }
        }
        if reader.buf.capacity() - reader.buf.len() < READ_SIZE / 2 {
            reader.buf.reserve(READ_SIZE);
        }
        if *stop.borrow() {
            return Waited::Close;
        }
        let read = tokio::select! {
            biased;
            read = reader.io.read_buf(&mut reader.buf) => read,
            () = sleep.as_mut() => return Waited::Close,
            _ = stop.wait_for(|stopped| *stopped) => return Waited::Close,
        };
        match read {
            Ok(0) | Err(_) => return Waited::Close,
            Ok(_) => {}
        }
    }
}

/// Runs the application's `call` for a request whose client waits for `100 Continue`,
/// and sends that when the application first reads the body.
async fn call_answering_continue<R>(
    call: impl Future<Output = Result<R, Infallible>>,
    slot: &Slot,
    write: &mut WriteSide,
) -> io::Result<R> {
    let mut call = pin!(call);
    let mut sent = false;
    loop {
        let step = poll_fn(|cx| {
            if let Poll::Ready(result) = call.as_mut().poll(cx) {
                return Poll::Ready(Some(result));
            }
            let mut state = slot.lock();
            if !sent && state.continue_asked {
                return Poll::Ready(None);
            }
            state.waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match step {
            Some(Ok(response)) => return Ok(response),
            Some(Err(never)) => match never {},
            None => {
                sent = true;
                write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                write.flush().await?;
            }
        }
    }
}

/// Writes the answer to a request of `version` (`HEAD` or not), framed by the
/// listener. `keep` says whether the connection may be kept, and is cleared when the
/// answer rules it out.
async fn write_response<B>(
    write: &mut WriteSide,
    out: &mut Vec<u8>,
    response: Response<B>,
    head_method: bool,
    version: Version,
    keep: &mut bool,
) -> Result<(), SendError>
where
    B: Body + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (mut parts, mut body) = response.into_parts();
    let status = parts.status;
    let passed = parts.extensions.remove::<WireFields>();
    let headers = parts.headers;
    let wire = passed.as_ref();
    let declared = declared_length(&headers).or(wire.and_then(WireFields::length));
    if has_token(&headers, &header::CONNECTION, "close") {
        *keep = false;
    }
    let bodiless = head_method
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let sending = if bodiless {
        Sending::Nothing
    } else if let Some(length) = body.size_hint().exact() {
        Sending::Length(length)
    } else if let Some(length) = declared {
        Sending::Length(length)
    } else if version == Version::HTTP_11 {
        Sending::Chunked
    } else {
        *keep = false;
        Sending::Close
    };
    out.clear();
    let fields: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    out.reserve(fields + wire.map_or(0, |wire| wire.as_bytes().len()) + 128);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &headers {
        let framing_field = name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && sending != Sending::Nothing);
        if framing_field {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(wire) = wire {
        out.extend_from_slice(wire.as_bytes());
    }
    // An answer to HEAD says the length a GET would have had: the one the application
    // declared, else its body's when that is known. An answer passed through says
    // only what it was given: its empty body tells nothing of the GET's.
    let head_length = match wire {
        _ if headers.contains_key(header::CONTENT_LENGTH) => None,
        Some(wire) => wire.length(),
        None if head_method => body.size_hint().exact(),
        None => None,
    };
    match (sending, head_length) {
        (Sending::Length(length), _) | (Sending::Nothing, Some(length)) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, length);
            out.extend_from_slice(b"\r\n");
        }
        (Sending::Chunked, _) => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        (Sending::Nothing | Sending::Close, _) => {}
    }
    if !*keep && version == Version::HTTP_11 {
        out.extend_from_slice(b"connection: close\r\n");
    } else if *keep && version == Version::HTTP_10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    if !headers.contains_key(header::DATE) && !wire.is_some_and(WireFields::has_date) {
        out.extend_from_slice(b"date: ");
        push_date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if sending == Sending::Nothing {
        drop(body);
        write.write_all(out).await.map_err(SendError::Io)?;
        out.clear();
    } else {
        let sent = send_body(write, out, &mut body, sending).await;
        if sent.is_err() {
            *keep = false;
        }
        sent?;
    }
    write.flush().await.map_err(SendError::Io)
}

/// The length an application's `Content-Length` gives, when it is one plain number.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    crate::framing::decimal(first.as_bytes())
}

/// Answers `refusal` and asks the connection to close.
async fn refuse(write: &mut WriteSide, refusal: Refusal) -> io::Result<()> {
    let reason = refusal.reason.as_bytes();
    let mut out = Vec::with_capacity(160 + reason.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(refusal.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(refusal.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ");
    push_decimal(&mut out, reason.len() as u64 + 1);
    out.extend_from_slice(b"\r\nconnection: close\r\ndate: ");
    push_date(&mut out);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(reason);
    out.push(b'\n');
    write.write_all(&out).await?;
    write.flush().await
}

/// Closes a connection the way a client can read its last answer: the write side is
/// shut, then what the client still sends is read and dropped for a moment, so that
/// closing with unread bytes does not reset the connection under the answer.
async fn linger(reader: Option<Reader>, mut write: WriteSide) {
    let _ = write.shutdown().await;
    let Some(mut reader) = reader else {
        return;
    };
    let drain = async {
        let mut drained = 0;
        let mut scratch = [0u8; 4096];
        while drained < LINGER_BYTES {
            match reader.io.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(read) => drained += read,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

thread_local! {
    /// The `Date` value of the current second, formatted once a second per thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current time as an HTTP date (RFC 9110 §5.6.7).
fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    DATE.with_borrow_mut(|(second, text)| {
        if *second != now {
            let formatted =
                httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(now));
            if formatted.len() == text.len() {
                text.copy_from_slice(formatted.as_bytes());
                *second = now;
            }
        }
        out.extend_from_slice(text);
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    /// Framing fields, in spellings a proxy in front might read differently.
    fn framing_field() -> impl Strategy<Value = (&'static str, &'static str)> {
        let names = prop::sample::select(vec![
            "Content-Length",
            "content-length",
            "CONTENT-LENGTH",
            "Transfer-Encoding",
            "transfer-encoding",
            "TRANSFER-ENCODING",
        ]);
        let values = prop::sample::select(vec![
            "0",
            "3",
            "03",
            "3, 3",
            "3,4",
            "+3",
            "-1",
            "3 ",
            "chunked",
            "Chunked",
            " chunked",
            "chunked,",
            "gzip, chunked",
            "chunked, chunked",
            "identity",
            "",
            "x",
        ]);
        (names, values)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever framing fields a request holds, it is refused, or read one way
        /// only: chunked when it has `Transfer-Encoding: chunked` alone over HTTP/1.1
        /// and no `Content-Length`; else by its one `Content-Length`; else as having
        /// no body. The bytes after the head are left for the body, untouched.
        #[test]
        fn a_request_is_refused_or_framed_exactly_one_way(
            fields in proptest::collection::vec(framing_field(), 0..4),
            http10 in any::<bool>(),
            after in "[a-z0-9\r\n]{0,12}",
        ) {
            let version = if http10 { "1.0" } else { "1.1" };
            let mut text = format!("POST /a HTTP/{version}\r\nHost: x\r\n");
            for (name, value) in &fields {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
            text.push_str("\r\n");
            text.push_str(&after);
            let mut read = BytesMut::from(text.as_bytes());
            let lower = |name: &str| name.to_ascii_lowercase();
            let te: Vec<&str> = fields.iter().filter(|(n, _)| lower(n) == "transfer-encoding").map(|(_, v)| *v).collect();
            let cl: Vec<&str> = fields.iter().filter(|(n, _)| lower(n) == "content-length").map(|(_, v)| *v).collect();
            match parse_head(&mut read) {
                Err(refusal) => {
                    prop_assert!(
                        [400, 501].contains(&refusal.status.as_u16()),
                        "{text:?}: {refusal:?}"
                    );
                }
                Ok(None) => prop_assert!(false, "{text:?} is a whole head"),
                Ok(Some(head)) => {
                    prop_assert_eq!(&read[..], after.as_bytes());
                    if te.is_empty() {
                        let items: Vec<&str> = cl.iter().flat_map(|v| v.split(',')).map(str::trim).collect();
                        let length = items.first().map(|item| item.parse::<u64>().unwrap());
                        prop_assert!(items.iter().all(|item| item.bytes().all(|b| b.is_ascii_digit()) && !item.is_empty()));
                        prop_assert!(items.windows(2).all(|pair| pair[0].parse::<u64>().ok() == pair[1].parse::<u64>().ok()));
                        let expected = match length {
                            None | Some(0) => Framing::Done,
                            Some(length) => Framing::Length(length),
                        };
                        prop_assert_eq!(head.framing, expected, "{:?}", text);
                    } else {
                        prop_assert!(!http10 && cl.is_empty(), "{text:?}");
                        let codings: Vec<&str> = te.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|c| !c.is_empty()).collect();
                        prop_assert_eq!(codings.len(), 1, "{:?}", text);
                        prop_assert!(codings[0].eq_ignore_ascii_case("chunked"));
                        prop_assert!(matches!(head.framing, Framing::Chunked(_)));
                    }
                }
            }
        }
    }
}
