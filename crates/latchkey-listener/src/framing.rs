//! HTTP/1.1 message framing (RFC 9112 §6 and §7), shared by both sides of
//! latchkey's own HTTP/1.1: the listener reading requests, and the gateway's client
//! reading responses.
//!
//! Policy: a length is read strictly or refused, never guessed at — a wrong guess is
//! how a second message is smuggled behind the first. `Content-Length` values must all
//! be one run of at most 19 digits; chunked must be the last transfer coding and
//! appear once; chunk-size lines are hex digits, optional blanks and extensions, ended
//! by CRLF; bounded by [`MAX_CHUNK_LINE`] and [`MAX_TRAILERS`], and trailers are read
//! and dropped.

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::Body;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::future::Future;
use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Any error a body may carry.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The longest chunk-size line, extensions included.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;

/// The most bytes of trailer fields after a chunked body.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// How a message body is framed, and how much of it is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// This many bytes are left.
    Length(u64),
    /// Chunks, at this step.
    Chunked(Chunk),
    /// Everything until the peer closes the connection (responses only).
    Close,
    /// Read to its end.
    Done,
}

/// Chunked when chunked is the last transfer coding, [`Framing::Close`] for any other
/// (which a response is read to the close by, and a request is refused for).
pub fn transfer_coding(headers: &HeaderMap) -> Result<Framing, &'static str> {
    transfer_coding_of(values(headers, &header::TRANSFER_ENCODING))
}

/// [`transfer_coding`] of a message whose `Transfer-Encoding` values are `values`.
pub fn transfer_coding_of<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Framing, &'static str> {
    let mut codings = values
        .into_iter()
        .flat_map(|value| value.split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .peekable();
    let mut last_chunked = false;
    while let Some(coding) = codings.next() {
        let chunked = coding.eq_ignore_ascii_case(b"chunked");
        if chunked && codings.peek().is_some() {
            return Err("chunked is not the last transfer coding");
        }
        last_chunked = chunked;
    }
    Ok(if last_chunked {
        Framing::Chunked(Chunk::Size)
    } else {
        Framing::Close
    })
}

/// The values of the `name` fields of `headers`, as bytes.
fn values<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> {
    headers.get_all(name).iter().map(HeaderValue::as_bytes)
}

/// The one length every `Content-Length` value gives, if any is given; values that are
/// not all the same decimal number are a malformed message. A length repeated is
/// kept once.
pub fn content_length(headers: &mut HeaderMap) -> Result<Option<u64>, &'static str> {
    let (length, items) = lengths(values(headers, &header::CONTENT_LENGTH))?;
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

/// [`content_length`] of a message whose `Content-Length` values are `values`.
pub fn content_length_of<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Option<u64>, &'static str> {
    lengths(values).map(|(length, _)| length)
}

/// The one length `values` give, and how many items gave it.
fn lengths<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Option<u64>, usize), &'static str> {
    let mut length = None;
    let mut items = 0;
    for value in values {
        for item in value.split(|&byte| byte == b',') {
            let number = decimal(item.trim_ascii()).ok_or("Content-Length is not a number")?;
            if length.is_some_and(|known| known != number) {
                return Err("Content-Length values disagree");
            }
            length = Some(number);
            items += 1;
        }
    }
    Ok((length, items))
}

/// `1*DIGIT` as a number, `None` when empty, not all digits or too large.
pub fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |number, &byte| {
        byte.is_ascii_digit()
            .then(|| number * 10 + u64::from(byte - b'0'))
    })
}

/// Whether the comma-separated list in `name`'s values holds `token`, in any case.
pub fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    has_token_of(values(headers, name), token)
}

/// [`has_token`] among `values`.
pub fn has_token_of<'a>(values: impl IntoIterator<Item = &'a [u8]>, token: &str) -> bool {
    values.into_iter().any(|value| {
        value
            .split(|&byte| byte == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Where a chunked body's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
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
#[derive(Debug)]
pub enum Step {
    /// The next bytes of the body.
    Data(Bytes),
    /// The body is whole.
    End,
    /// The buffer holds too little; read more.
    More,
}

impl Framing {
    /// Takes the next piece of the body off `read`.
    pub fn step(&mut self, read: &mut BytesMut) -> Result<Step, &'static str> {
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

    pub fn is_done(self) -> bool {
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
pub fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
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

/// Appends `value` in decimal.
pub fn push_decimal(out: &mut Vec<u8>, value: u64) {
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

/// Appends `value` in lowercase hex.
pub fn push_hex(out: &mut Vec<u8>, value: usize) {
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

/// What reading a body from a connection gave next.
#[derive(Debug)]
pub enum Piece {
    /// The next bytes; the framing says whether they were the last.
    Data(Bytes),
    /// The body is whole.
    End,
    /// The peer closed the connection where the framing expected more; under
    /// [`Framing::Close`], that is the body's end.
    Closed,
    /// The framing was broken, for this reason.
    Malformed(&'static str),
    /// Reading failed.
    Io(io::Error),
}

/// Takes the next piece of a body framed by `framing` off `read`, reading `io` into
/// it, `read_size` bytes at a time, when it holds too little.
pub fn poll_piece<R: AsyncRead + Unpin>(
    framing: &mut Framing,
    read: &mut BytesMut,
    io: &mut R,
    read_size: usize,
    cx: &mut Context<'_>,
) -> Poll<Piece> {
    loop {
        match framing.step(read) {
            Ok(Step::Data(data)) => return Poll::Ready(Piece::Data(data)),
            Ok(Step::End) => return Poll::Ready(Piece::End),
            Ok(Step::More) => {}
            Err(reason) => return Poll::Ready(Piece::Malformed(reason)),
        }
        read.reserve(read_size);
        let reading = pin!(io.read_buf(read));
        match ready!(reading.poll(cx)) {
            Ok(0) => return Poll::Ready(Piece::Closed),
            Ok(_) => {}
            Err(error) => return Poll::Ready(Piece::Io(error)),
        }
    }
}

/// How a body is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sending {
    /// No body, and no length said.
    Nothing,
    /// `Content-Length`, possibly 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The bytes as they come, ended by closing the connection (a response to an
    /// HTTP/1.0 client whose length is not known).
    Close,
}

/// Body bytes copied beside a head or a chunk's size line into one write; larger
/// frames are written on their own.
const COALESCE: usize = 16 * 1024;

/// Why a body could not be sent whole.
#[derive(Debug)]
pub enum SendError {
    /// The body itself failed, with its own error.
    Body(BoxError),
    /// The body gave more or fewer bytes than its `Content-Length` said.
    Length(&'static str),
    /// Writing to the peer failed.
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body(error) => write!(f, "the body failed: {error}"),
            Self::Length(reason) => f.write_str(reason),
            Self::Io(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for SendError {}

/// Writes what `out` already holds (a head, usually), then `body` framed as `sending`
/// says. What is ready is written together — the head with a small body, a chunk with
/// its size line — and whatever is held is written as soon as the body has nothing
/// more ready, so a slow body reaches the peer as it comes. Trailers are dropped.
/// `out` is left empty.
pub async fn send_body<W, B>(
    io: &mut W,
    out: &mut Vec<u8>,
    body: &mut B,
    sending: Sending,
) -> Result<(), SendError>
where
    W: AsyncWrite + Unpin,
    B: Body + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let chunked = sending == Sending::Chunked;
    let mut left = match sending {
        Sending::Length(length) => Some(length),
        Sending::Nothing | Sending::Chunked | Sending::Close => None,
    };
    loop {
        // The body's own error becomes a `SendError` at once, so nothing of its type is
        // held across a write.
        let mut poll = |cx: &mut Context<'_>| match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(Ok(None)),
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Ok(Some(frame))),
            Poll::Ready(Some(Err(error))) => Poll::Ready(Err(SendError::Body(error.into()))),
            Poll::Pending => Poll::Pending,
        };
        let next = match poll_fn(|cx| Poll::Ready(poll(cx))).await {
            Poll::Ready(next) => next?,
            Poll::Pending => {
                // Nothing more is ready: what is held goes now, through any TLS buffer.
                write_out(io, out).await?;
                io.flush().await.map_err(SendError::Io)?;
                poll_fn(&mut poll).await?
            }
        };
        let Some(frame) = next else {
            break;
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let length = data.remaining();
        if length == 0 {
            continue;
        }
        if let Some(left) = &mut left {
            *left = left
                .checked_sub(length as u64)
                .ok_or(SendError::Length("the body is longer than it said"))?;
        }
        if chunked {
            push_hex(out, length);
            out.extend_from_slice(b"\r\n");
        }
        if out.len() + length <= COALESCE {
            while data.has_remaining() {
                let piece = data.chunk();
                out.extend_from_slice(piece);
                let taken = piece.len();
                data.advance(taken);
            }
        } else {
            write_out(io, out).await?;
            while data.has_remaining() {
                let piece = data.chunk();
                io.write_all(piece).await.map_err(SendError::Io)?;
                let taken = piece.len();
                data.advance(taken);
            }
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= COALESCE {
            write_out(io, out).await?;
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    } else if left.is_some_and(|left| left > 0) {
        return Err(SendError::Length("the body is shorter than it said"));
    }
    write_out(io, out).await
}

/// Writes what `out` holds, if anything, and empties it.
async fn write_out<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>) -> Result<(), SendError> {
    if !out.is_empty() {
        io.write_all(out).await.map_err(SendError::Io)?;
        out.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

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
}
