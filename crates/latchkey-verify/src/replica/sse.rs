//! A Server-Sent Events parser: bytes in, events out, for the revocation stream.
//!
//! Policy: the WHATWG event-stream rules that the feed can produce — `event`, `data`
//! (several lines joined by `\n`), `id`, comments, any of `\n`, `\r\n` or `\r` as the
//! line end, chunks split anywhere, an optional space after the colon. `retry` is
//! ignored: the replica has its own backoff. A line longer than [`MAX_LINE_BYTES`] or an
//! event larger than [`MAX_EVENT_BYTES`] is an error, so a misbehaving server cannot
//! exhaust memory.

/// Longest line accepted.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Largest event (its data lines together) accepted.
const MAX_EVENT_BYTES: usize = 256 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event` field; `message` when absent.
    pub(crate) event: String,
    /// The `data` lines, joined by `\n`.
    pub(crate) data: String,
}

/// The stream broke the size limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// An incremental parser.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes not yet forming a whole line.
    pending: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` opening the next one belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds `chunk` and returns the events it completes, in order.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, TooLarge> {
        let mut events = Vec::new();
        let mut rest = chunk;
        // An empty chunk says nothing about whether a `\n` follows the `\r`.
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.pending.extend_from_slice(&rest[..end]);
            let line = std::mem::take(&mut self.pending);
            if let Some(event) = self.line(&line)? {
                events.push(event);
            }
            let crlf = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if crlf {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.pending.len() + rest.len() > MAX_LINE_BYTES {
            return Err(TooLarge);
        }
        self.pending.extend_from_slice(rest);
        Ok(events)
    }

    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, TooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(TooLarge);
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "" => {} // a comment
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(TooLarge);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            // The seq is in the data too, and `retry` is the replica's own business.
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = std::mem::take(&mut self.event);
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event: if event.is_empty() {
                "message".to_owned()
            } else {
                event
            },
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_split_across_chunks_anywhere_are_reassembled() {
        let text: &[u8] = b"event: heartbeat\ndata: {\"head\":3}\n\n\
            id: 4\nevent: revocation\ndata: {\"seq\":4}\n\n";
        for split in 0..text.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&text[..split]).unwrap();
            events.extend(parser.push(&text[split..]).unwrap());
            assert_eq!(
                events,
                [
                    event("heartbeat", "{\"head\":3}"),
                    event("revocation", "{\"seq\":4}")
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn crlf_and_cr_line_ends_comments_and_multiline_data_follow_the_spec() {
        let text = b": keep-alive\r\n\r\ndata:a\r\ndata: b\r\rdata: c\n\n";
        for split in 0..text.len() {
            let mut parser = SseParser::default();
            let mut events = parser.push(&text[..split]).unwrap();
            events.extend(parser.push(&text[split..]).unwrap());
            assert_eq!(
                events,
                [event("message", "a\nb"), event("message", "c")],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::default();
        let chunk = vec![b'x'; MAX_LINE_BYTES / 2 + 1];
        assert!(parser.push(&chunk).is_ok());
        assert_eq!(parser.push(&chunk), Err(TooLarge));
    }
}

#[cfg(test)]
mod proptests;
