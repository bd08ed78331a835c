//! The gateway's HTTP/1.1 client connection: a request written and its response read
//! by the task that serves the client, with no connection task, channel or wake-up
//! between them (docs/BENCHMARKS.md, "The gateway's own HTTP/1.1 client").
//!
//! Policy (RFC 9112):
//! - **The gateway frames what it sends.** A client's `Content-Length` and
//!   `Transfer-Encoding` are never forwarded: a body of known length is sent with the
//!   gateway's own `Content-Length`, any other as chunked, and a body longer or shorter
//!   than it said ends the exchange as the client's fault.
//! - **A response's length is read strictly** (RFC 9112 §6.3): no body after `HEAD`,
//!   1xx, 204 or 304; chunked when chunked is the last transfer coding; read to the
//!   close for any other transfer coding, or with no length at all; otherwise the
//!   `Content-Length`, whose values must all be one number. Anything else — lengths
//!   that disagree or are not numbers, chunked applied twice, a malformed chunk — is a
//!   broken exchange (502), never guessed at: a wrong guess is how a second response
//!   is smuggled into the next exchange on the connection.
//! - **A connection is reused only when nothing about it is in doubt:** an HTTP/1.1
//!   response without `Connection: close`, framed by its length or by chunks (never by
//!   both), read exactly to its end, with nothing after it.
//! - **Interim answers are skipped** (100, 102, 103); a 101 is a broken exchange, as
//!   the gateway never asks for an upgrade.
//! - **Bounded:** a response head of at most [`MAX_HEAD`] bytes and [`MAX_FIELDS`]
//!   fields; chunk-size lines and trailers are bounded as `latchkey_listener::framing`
//!   says, and trailers are read and dropped.

use crate::body::{BoxError, GatewayBody};
use crate::headers;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header;
use hyper::http::request;
use hyper::{Method, Response, StatusCode, Version};
use latchkey_listener::framing::{
    Framing, Piece, SendError, Sending, content_length_of, has_token_of, poll_piece, push_decimal,
    send_body, transfer_coding_of,
};
use latchkey_listener::{WireFieldError, WireFields};
use std::fmt;

use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The largest response head read from an upstream.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The most header fields in a response head.
pub(crate) const MAX_FIELDS: usize = 100;

/// Bytes asked of the socket at a time.
const READ_SIZE: usize = 16 * 1024;

/// A connection to an upstream, plain or over TLS.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection failed or closed before any of the response arrived.
    Closed(io::Error),
    /// The connection failed once the response had begun.
    Io(io::Error),
    /// The upstream's response broke the protocol.
    Malformed(&'static str),
    /// The client's request body failed (its error, as the body gave it).
    Client(BoxError),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(error) => write!(f, "the connection closed before a response: {error}"),
            Self::Io(error) => write!(f, "{error}"),
            Self::Malformed(reason) => write!(f, "malformed response: {reason}"),
            Self::Client(error) => write!(f, "client request body: {error}"),
        }
    }
}

/// A request's head in wire form, kept so that a request without a body can be sent
/// again on another connection.
pub(crate) struct Outgoing {
    head: Vec<u8>,
    sending: Sending,
    head_method: bool,
    idempotent: bool,
}

impl Outgoing {
    /// The head of `parts` (its URI in origin form) for a body like `body`.
    pub(crate) fn new(parts: &request::Parts, body: &GatewayBody) -> Self {
        let sending = if body.is_end_stream() {
            let declared = parts.headers.contains_key(header::CONTENT_LENGTH);
            let usually_has_body =
                matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
            if declared || usually_has_body {
                Sending::Length(0)
            } else {
                Sending::Nothing
            }
        } else {
            match body.size_hint().exact() {
                Some(length) => Sending::Length(length),
                None => Sending::Chunked,
            }
        };
        let target = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        // Sized once: a forwarded JWT alone outgrows any fixed guess.
        let fields: usize = parts
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        // 64 holds the spaces, the version, the framing field and the CRLFs.
        let mut head = Vec::with_capacity(parts.method.as_str().len() + target.len() + fields + 64);
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        match sending {
            Sending::Nothing | Sending::Close => {}
            Sending::Length(length) => {
                head.extend_from_slice(b"content-length: ");
                push_decimal(&mut head, length);
                head.extend_from_slice(b"\r\n");
            }
            Sending::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        head.extend_from_slice(b"\r\n");
        Self {
            head,
            sending,
            head_method: parts.method == Method::HEAD,
            // RFC 9110 §9.2.2.
            idempotent: matches!(
                parts.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::TRACE
                    | Method::PUT
                    | Method::DELETE
            ),
        }
    }

    /// Whether the request may be sent again after a reused connection closed before
    /// answering: it has no body to have lost, and sending it twice means what sending
    /// it once does.
    pub(crate) fn retryable(&self) -> bool {
        self.idempotent && matches!(self.sending, Sending::Nothing | Sending::Length(0))
    }
}

/// Where a connection goes back to once its answer has been read to the end: the
/// pool it was lent from.
pub(crate) trait TakeBack: Send + Unpin + 'static {
    fn take_back(self, conn: Conn);
}

/// An open connection to an upstream and the bytes read from it but not yet used.
pub(crate) struct Conn {
    io: Io,
    read: BytesMut,
}

impl Conn {
    pub(crate) fn new(io: Io) -> Self {
        Self {
            io,
            read: BytesMut::new(),
        }
    }

    /// Whether an idle connection can take a request: the upstream has neither closed
    /// it nor sent anything on it since its last answer. Asks the reactor first, which
    /// costs no system call; only when it has seen the socket readable is the socket
    /// itself asked. Over TLS, records already taken off the socket are looked at too.
    pub(crate) fn is_usable(&mut self) -> bool {
        if let Io::Tls(tls) = &mut self.io {
            // Anything readable (a close, an alert, bytes nobody asked for) ends it.
            let waiting = io::Read::read(&mut tls.get_mut().1.reader(), &mut [0u8; 1]);
            if !matches!(waiting, Err(error) if error.kind() == io::ErrorKind::WouldBlock) {
                return false;
            }
        }
        let tcp = self.io.tcp();
        let mut cx = Context::from_waker(Waker::noop());
        if tcp.poll_read_ready(&mut cx).is_pending() {
            return true;
        }
        // Readable: the upstream's close, or bytes no request asked for. Either way the
        // connection is done; only "nothing after all" leaves it usable.
        matches!(tcp.try_read(&mut [0u8; 1]), Err(error) if error.kind() == io::ErrorKind::WouldBlock)
    }

    /// Sends `request` with `body` (none when it has no body) and reads the response
    /// head, skipping interim answers.
    pub(crate) async fn exchange(
        &mut self,
        request: &Outgoing,
        body: Option<&mut GatewayBody>,
    ) -> Result<Head, Failure> {
        match body {
            None => self
                .io
                .write_all(&request.head)
                .await
                .map_err(Failure::Closed)?,
            Some(body) => self.send_body(request, body).await?,
        }
        self.io.flush().await.map_err(Failure::Closed)?;
        self.read_head(request.head_method).await
    }

    /// Sends the head and `body`, framed as `request` says.
    async fn send_body(
        &mut self,
        request: &Outgoing,
        body: &mut GatewayBody,
    ) -> Result<(), Failure> {
        let mut out = request.head.clone();
        send_body(&mut self.io, &mut out, body, request.sending)
            .await
            .map_err(|error| match error {
                SendError::Body(error) => Failure::Client(error),
                SendError::Length(reason) => Failure::Client(reason.into()),
                SendError::Io(error) => Failure::Closed(error),
            })
    }

    async fn read_head(&mut self, head_method: bool) -> Result<Head, Failure> {
        let mut received = !self.read.is_empty();
        loop {
            if !self.read.is_empty() {
                received = true;
                if let Some(head) = parse_head(&mut self.read, head_method)? {
                    return Ok(head);
                }
                if self.read.len() >= MAX_HEAD {
                    return Err(Failure::Malformed("the response head is too large"));
                }
            }
            self.read.reserve(READ_SIZE);
            match self.io.read_buf(&mut self.read).await {
                Ok(0) if received => {
                    return Err(Failure::Malformed(
                        "the connection closed within the response head",
                    ));
                }
                Ok(0) => return Err(Failure::Closed(io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {}
                Err(error) if received => return Err(Failure::Io(error)),
                Err(error) => return Err(Failure::Closed(error)),
            }
        }
    }
}

/// A response head, and how its body is framed.
pub(crate) struct Head {
    status: StatusCode,
    version: Version,
    fields: WireFields,
    framing: Framing,
    reusable: bool,
}

impl Head {
    /// The response, its body read from `conn`, which goes `home` once the body has
    /// been read to its end if nothing about the connection is in doubt.
    pub(crate) fn into_response<H: TakeBack>(
        self,
        conn: Conn,
        home: H,
    ) -> Response<UpstreamBody<H>> {
        let mut response = Response::new(UpstreamBody {
            conn: Some(conn),
            framing: self.framing,
            reusable: self.reusable,
            home: Some(home),
        });
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        response.extensions_mut().insert(self.fields);
        response
    }
}

/// Parses a whole response head at the start of `read` and takes it off, or gives
/// `None` while it is incomplete; interim answers are taken off and skipped. The
/// fields that go on to the client (`headers::passed_back`) are checked and copied
/// into one `WireFields`; the length is kept beside them.
fn parse_head(read: &mut BytesMut, head_method: bool) -> Result<Option<Head>, Failure> {
    let parser = httparse::ParserConfig::default();
    loop {
        let bytes = read.split().freeze();
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut response = httparse::Response::new(&mut []);
        let length =
            match parser.parse_response_with_uninit_headers(&mut response, &bytes, &mut fields) {
                Ok(httparse::Status::Complete(length)) => length,
                Ok(httparse::Status::Partial) => {
                    // Nothing shares the bytes yet, so they go back without a copy.
                    *read = bytes
                        .try_into_mut()
                        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
                    return Ok(None);
                }
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Failure::Malformed("too many header fields"));
                }
                Err(_) => return Err(Failure::Malformed("the response head does not parse")),
            };
        // What came after the head: the body's start, or the next head after an
        // interim answer.
        read.extend_from_slice(&bytes[length..]);
        let code = response.code.unwrap_or(0);
        if code == 101 {
            return Err(Failure::Malformed(
                "101 Switching Protocols, which was not asked for",
            ));
        }
        if (100..200).contains(&code) {
            continue;
        }
        let status = StatusCode::from_u16(code)
            .map_err(|_| Failure::Malformed("the status is not a number from 100 to 999"))?;
        let version = if response.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        let fields = &*response.headers;
        let (framing, reusable, length) = framing(status, version, fields, head_method)?;
        let named = || {
            fields
                .iter()
                .map(|field| (field.name.as_bytes(), field.value))
        };
        let passes = headers::passed_back(named());
        let size: usize = named()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        let mut passed = WireFields::with_capacity(size);
        for (name, value) in named() {
            if passes(name) && !name.eq_ignore_ascii_case(b"content-length") {
                passed.push(name, value).map_err(|error| match error {
                    WireFieldError::Name => Failure::Malformed("a header field name is invalid"),
                    WireFieldError::Value => Failure::Malformed("a header field value is invalid"),
                    // `passed_back` and the length's own check leave none to come here.
                    WireFieldError::Framing(_) => {
                        Failure::Malformed("a framing field would have been passed on")
                    }
                })?;
            }
        }
        passed.set_length(length);
        return Ok(Some(Head {
            status,
            version,
            fields: passed,
            framing,
            reusable,
        }));
    }
}

/// Decides how the body of a response with `status`, `version` and `fields` to a
/// request (`HEAD` or not) is framed, whether its connection may be reused after it
/// (RFC 9112 §6.3 and §9.3), and the length the client is told. A `Content-Length`
/// overridden by `Transfer-Encoding` is not told, so the client never hears of a length
/// the body does not have; one given several times over is told once.
fn framing(
    status: StatusCode,
    version: Version,
    fields: &[httparse::Header<'_>],
    head_method: bool,
) -> Result<(Framing, bool, Option<u64>), Failure> {
    let values = |name: &'static str| {
        fields
            .iter()
            .filter(move |field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value)
    };
    let mut reusable = version == Version::HTTP_11 && !has_token_of(values("connection"), "close");
    let bodiless = head_method
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if values("transfer-encoding").next().is_some() {
        let framing =
            transfer_coding_of(values("transfer-encoding")).map_err(Failure::Malformed)?;
        if values("content-length").next().is_some() {
            reusable = false;
        }
        if bodiless {
            return Ok((Framing::Done, reusable, None));
        }
        if framing == Framing::Close {
            reusable = false;
        }
        return Ok((framing, reusable, None));
    }
    let length = content_length_of(values("content-length")).map_err(Failure::Malformed)?;
    if bodiless {
        return Ok((Framing::Done, reusable, length));
    }
    match length {
        Some(0) => Ok((Framing::Done, reusable, length)),
        Some(more) => Ok((Framing::Length(more), reusable, length)),
        None => Ok((Framing::Close, false, None)),
    }
}

/// An upstream's response body, streamed to the client as it arrives. Read to its end
/// on a connection that can be reused, it sends the connection home; cut off, broken
/// or dropped before its end, it closes the connection.
pub(crate) struct UpstreamBody<H: TakeBack> {
    conn: Option<Conn>,
    framing: Framing,
    reusable: bool,
    home: Option<H>,
}

impl<H: TakeBack> UpstreamBody<H> {
    /// The body is read to its end: the connection goes home if it can be reused and
    /// the upstream sent nothing after the response.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        let conn = self.conn.take();
        if let (Some(conn), Some(home), true) = (conn, self.home.take(), self.reusable)
            && conn.read.is_empty()
        {
            home.take_back(conn);
        }
    }

    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.home = None;
        Poll::Ready(Some(Err(error)))
    }
}

impl<H: TakeBack> Body for UpstreamBody<H> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let piece = ready!(poll_piece(
            &mut this.framing,
            &mut conn.read,
            &mut conn.io,
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
            Piece::Closed if this.framing == Framing::Close => {
                this.reusable = false;
                this.finish();
                Poll::Ready(None)
            }
            Piece::Closed => this
                .fail("the upstream closed the connection before the end of its response".into()),
            Piece::Malformed(reason) => {
                this.fail(format!("malformed response body: {reason}").into())
            }
            Piece::Io(error) => this.fail(error.into()),
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

impl<H: TakeBack> Drop for UpstreamBody<H> {
    /// A body the server never polled because it was empty (a 204, an answer to
    /// `HEAD`) was read to its end all the same.
    fn drop(&mut self) {
        if self.framing.is_done() {
            self.finish();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full};
    use latchkey_listener::framing::Chunk;

    fn head_of(text: &str, head_method: bool) -> Result<Option<Head>, Failure> {
        let mut read = BytesMut::from(text.as_bytes());
        parse_head(&mut read, head_method)
    }

    fn framed(text: &str) -> Result<(Framing, bool, WireFields), &'static str> {
        match head_of(text, false) {
            Ok(Some(head)) => Ok((head.framing, head.reusable, head.fields)),
            Ok(None) => Err("incomplete"),
            Err(Failure::Malformed(reason)) => Err(reason),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn a_response_is_framed_by_its_one_length_or_by_chunks() {
        let ok = |fields: &str| framed(&format!("HTTP/1.1 200 OK\r\n{fields}\r\n"));
        assert_eq!(ok("content-length: 5\r\n").unwrap().0, Framing::Length(5));
        assert!(ok("content-length: 5\r\n").unwrap().1);
        assert_eq!(ok("content-length: 0\r\n").unwrap().0, Framing::Done);
        for repeated in [
            "content-length: 5, 5\r\n",
            "content-length: 5\r\ncontent-length: 5\r\n",
        ] {
            let (framing, reusable, fields) = ok(repeated).unwrap();
            assert_eq!((framing, reusable), (Framing::Length(5), true));
            assert_eq!(fields.length(), Some(5), "{repeated:?}");
            assert!(
                fields.as_bytes().is_empty(),
                "the listener writes the length"
            );
        }
        for chunked in [
            "transfer-encoding: chunked\r\n",
            "transfer-encoding: gzip, CHUNKED\r\n",
            "transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n",
        ] {
            assert_eq!(
                ok(chunked).unwrap().0,
                Framing::Chunked(Chunk::Size),
                "{chunked:?}"
            );
            assert!(ok(chunked).unwrap().1);
        }
        // No length at all, or a coding the end of which only the close shows.
        for until_close in ["", "transfer-encoding: gzip\r\n"] {
            assert_eq!(ok(until_close).unwrap().0, Framing::Close);
            assert!(!ok(until_close).unwrap().1, "{until_close:?}");
        }
    }

    #[test]
    fn a_length_overridden_by_chunks_is_dropped_and_the_connection_not_reused() {
        let (framing, reusable, fields) =
            framed("HTTP/1.1 200 OK\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
        assert_eq!(framing, Framing::Chunked(Chunk::Size));
        assert!(!reusable);
        assert_eq!(fields.length(), None);
        assert!(fields.as_bytes().is_empty(), "{fields:?}");
    }

    #[test]
    fn every_length_that_is_not_one_decimal_number_is_malformed() {
        for length in [
            "5, 6",
            "+5",
            "-1",
            "0x5",
            "5a",
            "",
            ",",
            "1 2",
            "5\r\ncontent-length: 6",
            "99999999999999999999",
            "٥",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n");
            assert!(framed(&text).is_err(), "{length:?} was accepted");
        }
        let text = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip, chunked\r\n\r\n";
        assert_eq!(
            framed(text).unwrap_err(),
            "chunked is not the last transfer coding"
        );
    }

    #[test]
    fn only_an_http_1_1_response_without_close_keeps_its_connection() {
        let reusable = |text: &str| framed(text).unwrap().1;
        assert!(reusable("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"));
        assert!(!reusable("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n"));
        assert!(!reusable(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\n"
        ));
        assert!(!reusable(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\n"
        ));
        assert!(!reusable(
            "HTTP/1.1 200 OK\r\nConnection: CLOSE\r\ncontent-length: 2\r\n\r\n"
        ));
    }

    #[test]
    fn no_body_follows_head_1xx_204_or_304_whatever_the_length_says() {
        let head = head_of("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!((head.framing, head.reusable), (Framing::Done, true));
        assert_eq!(
            head.fields.length(),
            Some(5),
            "the client is told the length"
        );
        for status in ["204 No Content", "304 Not Modified"] {
            let text = format!("HTTP/1.1 {status}\r\ncontent-length: 5\r\n\r\n");
            assert_eq!(framed(&text).unwrap().0, Framing::Done);
        }
    }

    #[test]
    fn interim_answers_are_skipped_and_an_upgrade_refused() {
        let mut read = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nokextra"[..],
        );
        let head = parse_head(&mut read, false).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::CREATED);
        assert!(head.fields.iter().all(|(name, _)| name != b"link"));
        assert_eq!(&read[..], b"okextra", "the body's bytes stay for the body");
        let upgrade = head_of(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            false,
        );
        assert!(matches!(upgrade, Err(Failure::Malformed(_))));
    }

    #[test]
    fn an_answer_passes_on_all_but_hop_by_hop_fields_and_the_request_id() {
        let text = "HTTP/1.1 200 OK\r\n\
            Server: up\r\n\
            Connection: keep-alive, X-Private\r\n\
            x-private: secret\r\n\
            KEEP-ALIVE: timeout=5\r\n\
            Proxy-Connection: keep-alive\r\n\
            Proxy-Authenticate: Basic\r\n\
            TE: trailers\r\n\
            Trailer: x-sum\r\n\
            Upgrade: h2c\r\n\
            X-Request-Id: upstream-chosen\r\n\
            Content-Length: 2\r\n\
            x-padded:   kept   \r\n\
            Set-Cookie: a=1\r\n\
            set-cookie: b=2\r\n\r\nok";
        let (framing, reusable, fields) = framed(text).unwrap();
        assert_eq!((framing, reusable), (Framing::Length(2), true));
        assert_eq!(
            String::from_utf8_lossy(fields.as_bytes()),
            "Server: up\r\nx-padded: kept\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n",
            "names as sent, in order, values trimmed"
        );
        assert_eq!(fields.length(), Some(2));
        // Every spelling of a listing: fields given twice, empty items, blanks, case.
        let text = "HTTP/1.1 200 OK\r\nconnection: ,\tx-One ,\r\nCONNECTION: X-TWO,,\r\n\
            X-ONE: 1\r\nx-two: 2\r\nx-three: 3\r\ncontent-length: 0\r\n\r\n";
        let (_, _, fields) = framed(text).unwrap();
        assert_eq!(String::from_utf8_lossy(fields.as_bytes()), "x-three: 3\r\n");
        // Control: a name that only looks like a listed or hop-by-hop one passes.
        let text = "HTTP/1.1 204 No Content\r\nConnection: x-a\r\nx-ab: 1\r\nupgrades: 2\r\nx-request: 3\r\n\r\n";
        let (_, _, fields) = framed(text).unwrap();
        let names: Vec<_> = fields.iter().map(|(name, _)| name.to_vec()).collect();
        assert_eq!(names, [&b"x-ab"[..], b"upgrades", b"x-request"]);
    }

    #[test]
    fn an_incomplete_head_waits_for_more_and_a_broken_one_is_malformed() {
        let mut read = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
        assert!(parse_head(&mut read, false).unwrap().is_none());
        assert_eq!(&read[..], b"HTTP/1.1 200 OK\r\ncontent-le", "kept whole");
        read.extend_from_slice(b"ngth: 2\r\n\r\nok");
        assert_eq!(
            parse_head(&mut read, false).unwrap().unwrap().framing,
            Framing::Length(2)
        );
        for broken in [
            "HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx: a\r\n folded\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx: a\0b\r\n\r\n",
        ] {
            assert!(
                matches!(head_of(broken, false), Err(Failure::Malformed(_))),
                "{broken:?}"
            );
        }
        let many: String = (0..=MAX_FIELDS).map(|n| format!("x-{n}: y\r\n")).collect();
        let text = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(matches!(
            head_of(&text, false),
            Err(Failure::Malformed("too many header fields"))
        ));
    }

    fn parts(method: Method, headers: &[(&str, &str)]) -> request::Parts {
        let mut request = hyper::Request::builder().method(method).uri("/a?b=c");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn boxed<B>(body: B) -> GatewayBody
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        body.map_err(Into::into).boxed_unsync()
    }

    #[test]
    fn the_gateway_frames_the_request_itself() {
        let text = |outgoing: &Outgoing| String::from_utf8(outgoing.head.clone()).unwrap();
        let get = Outgoing::new(&parts(Method::GET, &[("host", "up")]), &boxed(Empty::new()));
        assert_eq!(text(&get), "GET /a?b=c HTTP/1.1\r\nhost: up\r\n\r\n");
        assert!(get.retryable());
        let empty_post = Outgoing::new(&parts(Method::POST, &[]), &boxed(Empty::new()));
        assert_eq!(
            text(&empty_post),
            "POST /a?b=c HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        assert!(!empty_post.retryable());
        // The client's framing is never forwarded, whatever it said.
        let client_said = [("content-length", "99"), ("transfer-encoding", "chunked")];
        let put = Outgoing::new(
            &parts(Method::PUT, &client_said),
            &boxed(Full::new(Bytes::from("hello"))),
        );
        assert_eq!(
            text(&put),
            "PUT /a?b=c HTTP/1.1\r\ncontent-length: 5\r\n\r\n"
        );
        assert!(!put.retryable(), "a body is not sent twice");
        let frames = unsized_body(vec![Bytes::from("a")]);
        let streamed = Outgoing::new(&parts(Method::PUT, &client_said), &frames);
        assert_eq!(
            text(&streamed),
            "PUT /a?b=c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert!(!streamed.retryable());
    }

    /// A body of `frames` whose length is not known in advance.
    pub(crate) fn unsized_body(frames: Vec<Bytes>) -> GatewayBody {
        boxed(Unsized(frames))
    }

    struct Unsized(Vec<Bytes>);

    impl Body for Unsized {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready((!self.0.is_empty()).then(|| Ok(Frame::data(self.0.remove(0)))))
        }
    }
}
