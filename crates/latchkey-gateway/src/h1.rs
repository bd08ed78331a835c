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
//!   fields, chunk-size lines of at most [`MAX_CHUNK_LINE`] bytes, trailers of at most
//!   [`MAX_TRAILERS`] bytes, which are read and dropped.

use crate::body::{BoxError, GatewayBody};
use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request;
use hyper::{Method, Response, StatusCode, Version};
use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The largest response head read from an upstream.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The most header fields in a response head.
pub(crate) const MAX_FIELDS: usize = 100;

/// The longest chunk-size line, extensions included.
pub(crate) const MAX_CHUNK_LINE: usize = 4 * 1024;

/// The most bytes of trailer fields after a chunked body.
pub(crate) const MAX_TRAILERS: usize = 16 * 1024;

/// Bytes asked of the socket at a time.
const READ_SIZE: usize = 16 * 1024;

/// Request body bytes copied beside the head or a chunk's size line into one write;
/// larger frames are written on their own.
const COALESCE: usize = 16 * 1024;

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

/// How a request's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sending {
    /// No body and no length.
    Nothing,
    /// `Content-Length`, possibly 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
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
            Sending::Nothing => {}
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

fn push_decimal(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn push_hex(out: &mut Vec<u8>, value: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
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

    /// Sends the head and `body`, framed as `request` says. What is ready is written
    /// together (the head with a small body, a chunk with its size line); whatever is
    /// held is written as soon as the client has nothing more ready, so a slow upload
    /// reaches the upstream as it comes.
    async fn send_body(
        &mut self,
        request: &Outgoing,
        body: &mut GatewayBody,
    ) -> Result<(), Failure> {
        let chunked = request.sending == Sending::Chunked;
        let mut left = match request.sending {
            Sending::Length(length) => length,
            Sending::Nothing | Sending::Chunked => 0,
        };
        let mut out = request.head.clone();
        loop {
            let next = match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    self.write_out(&mut out).await?;
                    poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
                }
            };
            let frame = match next {
                None => break,
                Some(Err(error)) => return Err(Failure::Client(error)),
                Some(Ok(frame)) => frame,
            };
            // Trailers of a client's request are not forwarded.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            if chunked {
                push_hex(&mut out, data.len());
                out.extend_from_slice(b"\r\n");
            } else {
                let length = data.len() as u64;
                if length > left {
                    return Err(Failure::Client(
                        "the request body is longer than it said".into(),
                    ));
                }
                left -= length;
            }
            if out.len() + data.len() <= COALESCE {
                out.extend_from_slice(&data);
            } else {
                self.write_out(&mut out).await?;
                self.io.write_all(&data).await.map_err(Failure::Closed)?;
            }
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
            if out.len() >= COALESCE {
                self.write_out(&mut out).await?;
            }
        }
        if chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        } else if left > 0 {
            return Err(Failure::Client(
                "the request body is shorter than it said".into(),
            ));
        }
        self.write_out(&mut out).await
    }

    /// Writes what `out` holds, if anything, and empties it.
    async fn write_out(&mut self, out: &mut Vec<u8>) -> Result<(), Failure> {
        if !out.is_empty() {
            self.io.write_all(out).await.map_err(Failure::Closed)?;
            out.clear();
        }
        Ok(())
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
    headers: HeaderMap,
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
        *response.headers_mut() = self.headers;
        response
    }
}

/// Parses a whole response head at the start of `read` and takes it off, or gives
/// `None` while it is incomplete; interim answers are taken off and skipped. The
/// head's field values share the bytes they were read into.
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
        let mut headers = HeaderMap::with_capacity(response.headers.len());
        for field in response.headers.iter() {
            let name = HeaderName::from_bytes(field.name.as_bytes())
                .map_err(|_| Failure::Malformed("a header field name is invalid"))?;
            let value = HeaderValue::from_maybe_shared(bytes.slice_ref(field.value))
                .map_err(|_| Failure::Malformed("a header field value is invalid"))?;
            headers.append(name, value);
        }
        let (framing, reusable) = framing(status, version, &mut headers, head_method)?;
        return Ok(Some(Head {
            status,
            version,
            headers,
            framing,
            reusable,
        }));
    }
}

/// How a response body is framed, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunks, at this step.
    Chunked(Chunk),
    /// Everything until the upstream closes the connection.
    Close,
    /// Read to its end.
    Done,
}

/// Decides how the body of a response with `status`, `version` and `headers` to a
/// request (`HEAD` or not) is framed, and whether its connection may be reused after
/// it (RFC 9112 §6.3 and §9.3). A `Content-Length` overridden by `Transfer-Encoding` is
/// removed, so the client is never told a length the body does not have; one given
/// several times over is kept once.
fn framing(
    status: StatusCode,
    version: Version,
    headers: &mut HeaderMap,
    head_method: bool,
) -> Result<(Framing, bool), Failure> {
    let mut reusable =
        version == Version::HTTP_11 && !has_token(headers, &header::CONNECTION, "close");
    let bodiless = head_method
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        let framing = transfer_coding(headers)?;
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            reusable = false;
        }
        if bodiless {
            return Ok((Framing::Done, reusable));
        }
        if framing == Framing::Close {
            reusable = false;
        }
        return Ok((framing, reusable));
    }
    let length = content_length(headers)?;
    if bodiless {
        return Ok((Framing::Done, reusable));
    }
    match length {
        Some(0) => Ok((Framing::Done, reusable)),
        Some(length) => Ok((Framing::Length(length), reusable)),
        None => Ok((Framing::Close, false)),
    }
}

/// Chunked when chunked is the last transfer coding, read to the close for any other.
fn transfer_coding(headers: &HeaderMap) -> Result<Framing, Failure> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .peekable();
    let mut last_chunked = false;
    while let Some(coding) = codings.next() {
        let chunked = coding.eq_ignore_ascii_case(b"chunked");
        if chunked && codings.peek().is_some() {
            return Err(Failure::Malformed(
                "chunked is not the last transfer coding",
            ));
        }
        last_chunked = chunked;
    }
    Ok(if last_chunked {
        Framing::Chunked(Chunk::Size)
    } else {
        Framing::Close
    })
}

/// The one length every `Content-Length` value gives, if any is given; values that are
/// not all the same decimal number are a malformed response. A length repeated is
/// kept once.
fn content_length(headers: &mut HeaderMap) -> Result<Option<u64>, Failure> {
    let mut length = None;
    let mut items = 0;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&byte| byte == b',') {
            let number = decimal(item.trim_ascii())
                .ok_or(Failure::Malformed("Content-Length is not a number"))?;
            if length.is_some_and(|known| known != number) {
                return Err(Failure::Malformed("Content-Length values disagree"));
            }
            length = Some(number);
            items += 1;
        }
    }
    if items > 1
        && let Some(length) = length
    {
        let mut text = Vec::with_capacity(20);
        push_decimal(&mut text, length);
        if let Ok(value) = HeaderValue::from_bytes(&text) {
            headers.insert(header::CONTENT_LENGTH, value);
        }
    }
    Ok(length)
}

/// `1*DIGIT` as a number, `None` when empty, not all digits or too large.
fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |number, &byte| {
        byte.is_ascii_digit()
            .then(|| number * 10 + u64::from(byte - b'0'))
    })
}

/// Whether the comma-separated list in `name`'s values holds `token`, in any case.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&byte| byte == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Where a chunked body's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line is next.
    Size,
    /// This many bytes of the chunk's data are left.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// Trailer lines, this many bytes of them so far, up to the empty line.
    Trailers(usize),
}

/// What one step of reading a body from the buffer gave.
enum Step {
    Data(Bytes),
    End,
    /// The buffer holds too little; read more.
    More,
}

impl Framing {
    /// Takes the next piece of the body off `read`.
    fn step(&mut self, read: &mut BytesMut) -> Result<Step, &'static str> {
        loop {
            match self {
                Self::Done => return Ok(Step::End),
                Self::Length(left) => {
                    if read.is_empty() {
                        return Ok(Step::More);
                    }
                    let take =
                        usize::try_from(*left).map_or(read.len(), |left| left.min(read.len()));
                    *left -= take as u64;
                    if *left == 0 {
                        *self = Self::Done;
                    }
                    return Ok(Step::Data(read.split_to(take).freeze()));
                }
                Self::Close => {
                    if read.is_empty() {
                        return Ok(Step::More);
                    }
                    return Ok(Step::Data(read.split().freeze()));
                }
                Self::Chunked(chunk) => match *chunk {
                    Chunk::Size => {
                        let Some(line) =
                            take_line(read, MAX_CHUNK_LINE, "the chunk-size line is too long")?
                        else {
                            return Ok(Step::More);
                        };
                        let size = chunk_size(&line)?;
                        *chunk = if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        if read.is_empty() {
                            return Ok(Step::More);
                        }
                        let take =
                            usize::try_from(left).map_or(read.len(), |left| left.min(read.len()));
                        let left = left - take as u64;
                        *chunk = if left == 0 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left)
                        };
                        return Ok(Step::Data(read.split_to(take).freeze()));
                    }
                    Chunk::DataEnd => {
                        if read.len() < 2 {
                            return Ok(Step::More);
                        }
                        if &read[..2] != b"\r\n" {
                            return Err("a chunk's data does not end with CRLF");
                        }
                        read.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        let room = MAX_TRAILERS.saturating_sub(seen);
                        let Some(line) = take_line(read, room, "the trailers are too large")?
                        else {
                            return Ok(Step::More);
                        };
                        if line.is_empty() {
                            *self = Self::Done;
                        } else {
                            *chunk = Chunk::Trailers(seen + line.len() + 2);
                        }
                    }
                },
            }
        }
    }

    fn is_done(self) -> bool {
        self == Self::Done
    }
}

/// Takes one CRLF-ended line off `read`, without its CRLF, if a whole one is there;
/// a line longer than `limit` (CRLF included) or ended by a bare LF is an error.
fn take_line(
    read: &mut BytesMut,
    limit: usize,
    too_long: &'static str,
) -> Result<Option<BytesMut>, &'static str> {
    let window = &read[..read.len().min(limit)];
    let Some(end) = window.iter().position(|&byte| byte == b'\n') else {
        return if read.len() >= limit {
            Err(too_long)
        } else {
            Ok(None)
        };
    };
    if end == 0 || read[end - 1] != b'\r' {
        return Err("a line does not end with CRLF");
    }
    let mut line = read.split_to(end + 1);
    line.truncate(end - 1);
    Ok(Some(line))
}

/// A chunk-size line's size: hex digits, then optional spaces or tabs, then nothing or
/// extensions after `;` (ignored, but never holding CR or another control byte).
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return Err("a chunk size is not a hex number");
    }
    let mut size: u64 = 0;
    for &byte in &line[..digits] {
        let value = u64::from(match byte {
            b'0'..=b'9' => byte - b'0',
            b'a'..=b'f' => byte - b'a' + 10,
            _ => byte - b'A' + 10,
        });
        size = size
            .checked_mul(16)
            .and_then(|size| size.checked_add(value))
            .ok_or("a chunk size is too large")?;
    }
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&byte| byte == b' ' || byte == b'\t')
        .count()..];
    match rest.first() {
        None => Ok(size),
        Some(b';')
            if rest
                .iter()
                .all(|&byte| byte == b'\t' || (b' '..=b'~').contains(&byte) || byte >= 0x80) =>
        {
            Ok(size)
        }
        _ => Err("a chunk-size line holds more than a size and extensions"),
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
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.step(&mut conn.read) {
                Ok(Step::Data(data)) => {
                    if this.framing.is_done() {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(reason) => {
                    return this.fail(format!("malformed response body: {reason}").into());
                }
            }
            conn.read.reserve(READ_SIZE);
            let read = pin!(conn.io.read_buf(&mut conn.read));
            match ready!(read.poll(cx)) {
                Ok(0) if this.framing == Framing::Close => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return this.fail(
                        "the upstream closed the connection before the end of its response".into(),
                    );
                }
                Ok(_) => {}
                Err(error) => return this.fail(error.into()),
            }
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

    fn head_of(text: &str, head_method: bool) -> Result<Option<Head>, Failure> {
        let mut read = BytesMut::from(text.as_bytes());
        parse_head(&mut read, head_method)
    }

    fn framed(text: &str) -> Result<(Framing, bool, HeaderMap), &'static str> {
        match head_of(text, false) {
            Ok(Some(head)) => Ok((head.framing, head.reusable, head.headers)),
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
            let (framing, reusable, headers) = ok(repeated).unwrap();
            assert_eq!((framing, reusable), (Framing::Length(5), true));
            let values: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
            assert_eq!(values, ["5"], "{repeated:?}");
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
        let (framing, reusable, headers) =
            framed("HTTP/1.1 200 OK\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap();
        assert_eq!(framing, Framing::Chunked(Chunk::Size));
        assert!(!reusable);
        assert!(!headers.contains_key(header::CONTENT_LENGTH));
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
            head.headers[header::CONTENT_LENGTH],
            "5",
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
        assert!(!head.headers.contains_key("link"));
        assert_eq!(&read[..], b"okextra", "the body's bytes stay for the body");
        let upgrade = head_of(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
            false,
        );
        assert!(matches!(upgrade, Err(Failure::Malformed(_))));
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

    /// Reads a chunked body from `wire`, given `piece` bytes at a time.
    fn dechunk(wire: &[u8], piece: usize) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut read = BytesMut::new();
        let mut body = Vec::new();
        let mut rest = wire;
        loop {
            match framing.step(&mut read)? {
                Step::Data(data) => body.extend_from_slice(&data),
                Step::End => return Ok((body, [&read[..], rest].concat())),
                Step::More if rest.is_empty() => return Err("incomplete"),
                Step::More => {
                    let (now, later) = rest.split_at(piece.min(rest.len()));
                    read.extend_from_slice(now);
                    rest = later;
                }
            }
        }
    }

    #[test]
    fn chunks_are_read_whole_or_a_byte_at_a_time() {
        let wire = b"5\r\nhello\r\n1;name=\"va lue\"\r\n \r\nA \t\r\n0123456789\r\n0\r\nx-sum: 1\r\n\r\nnext";
        for piece in [1, 2, 7, wire.len()] {
            let (body, left) = dechunk(wire, piece).unwrap();
            assert_eq!(body, b"hello 0123456789");
            assert_eq!(left, b"next", "piece {piece}");
        }
    }

    #[test]
    fn every_malformed_chunk_is_refused() {
        for wire in [
            &b"g\r\n"[..],
            b"\r\n",
            b";ext\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\nx: y\n\r\n",
        ] {
            assert!(
                dechunk(wire, 1).is_err(),
                "{:?} was read",
                String::from_utf8_lossy(wire)
            );
        }
        let long_line = format!("1;{}\r\n", "x".repeat(MAX_CHUNK_LINE));
        assert_eq!(
            dechunk(long_line.as_bytes(), 64).unwrap_err(),
            "the chunk-size line is too long"
        );
        let trailers = format!("0\r\n{}\r\n", "x-a: b\r\n".repeat(MAX_TRAILERS / 8 + 1));
        assert_eq!(
            dechunk(trailers.as_bytes(), 512).unwrap_err(),
            "the trailers are too large"
        );
    }

    /// `body` chunked at `cuts` (chunk lengths, cycled), each size line in `case`
    /// with `zeros` leading zeros and an extension when `extended`, then trailers.
    fn chunked(body: &[u8], cuts: &[usize], upper: bool, zeros: usize, extended: bool) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        for &cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, later) = rest.split_at(cut.clamp(1, rest.len()));
            let size = format!("{}{:x}", "0".repeat(zeros), chunk.len());
            wire.extend_from_slice(if upper { size.to_uppercase() } else { size }.as_bytes());
            if extended {
                wire.extend_from_slice(b" ;name=\"a b\"");
            }
            wire.extend_from_slice(b"\r\n");
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(b"\r\n");
            rest = later;
        }
        wire.extend_from_slice(b"0\r\nx-sum: 1\r\n\r\n");
        wire
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Any body, chunked any way and read in pieces of any size, comes back whole,
        /// and not one byte past its end is taken.
        #[test]
        fn any_chunking_read_in_any_pieces_gives_back_the_body(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(1usize..700, 1..6),
            upper in proptest::prelude::any::<bool>(),
            zeros in 0usize..4,
            extended in proptest::prelude::any::<bool>(),
            piece in 1usize..300,
            after in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
        ) {
            let mut wire = chunked(&body, &cuts, upper, zeros, extended);
            wire.extend_from_slice(&after);
            let (read, left) = dechunk(&wire, piece).unwrap();
            proptest::prop_assert_eq!(read, body);
            proptest::prop_assert_eq!(left, after);
        }

        /// Content-Length is accepted exactly when every comma-separated item of every
        /// field is the same run of at most 19 digits, spaces around it allowed.
        #[test]
        fn a_length_is_accepted_only_when_every_value_is_one_number(
            values in proptest::collection::vec("[ ]{0,2}(0|7|07|[0-9]{1,3}|[0-9]{19,20}|-1|\\+7|7a|7, 7|7,8|7,|)[ ]{0,2}", 1..4),
        ) {
            let mut headers = HeaderMap::new();
            for value in &values {
                headers.append(header::CONTENT_LENGTH, HeaderValue::from_str(value).unwrap());
            }
            let items: Vec<&str> = values.iter().flat_map(|value| value.split(',')).map(str::trim).collect();
            let agreed = items.iter().all(|item| {
                !item.is_empty() && item.len() <= 19 && item.bytes().all(|byte| byte.is_ascii_digit())
            }) && items.windows(2).all(|pair| pair[0].parse::<u64>().ok() == pair[1].parse::<u64>().ok());
            match content_length(&mut headers) {
                Ok(Some(length)) => {
                    proptest::prop_assert!(agreed, "{values:?} was accepted");
                    proptest::prop_assert_eq!(Some(length), items[0].parse::<u64>().ok());
                    let kept: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
                    proptest::prop_assert_eq!(kept.len(), 1);
                }
                Ok(None) => proptest::prop_assert!(false, "a length was given"),
                Err(_) => proptest::prop_assert!(!agreed, "{values:?} was refused"),
            }
        }
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
