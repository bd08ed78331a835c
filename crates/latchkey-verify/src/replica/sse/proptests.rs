//! Property tests of the event-stream parser against a reference that reads the whole
//! stream at once by the WHATWG rules this module's documentation names: any chunking
//! gives the same events, `\n`, `\r\n` and `\r` are the same line end, the size limits
//! hold after every chunk, and nothing panics.
//!
//! Budgets are fixed (see docs/BENCHMARKS.md, "Property-test budgets");
//! `PROPTEST_CASES` raises them for a deeper run.

use super::*;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn budget(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// The events of `stream` read whole, and whether it broke a limit (then the events are
/// those dispatched before the offending line).
fn reference(stream: &[u8]) -> (Vec<SseEvent>, bool) {
    let mut events = Vec::new();
    let (mut event_type, mut data) = (String::new(), String::new());
    let mut start = 0;
    let mut i = 0;
    while i < stream.len() {
        let end = match stream[i] {
            b'\r' if stream.get(i + 1) == Some(&b'\n') => i + 2,
            b'\r' | b'\n' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        let line = String::from_utf8_lossy(&stream[start..i]).into_owned();
        (start, i) = (end, end);
        if line.is_empty() {
            if !data.is_empty() {
                data.pop();
                let name = if event_type.is_empty() {
                    "message".to_owned()
                } else {
                    event_type.clone()
                };
                events.push(SseEvent {
                    event: name,
                    data: std::mem::take(&mut data),
                });
            }
            (event_type, data) = (String::new(), String::new());
            continue;
        }
        if line.len() > MAX_LINE_BYTES {
            return (events, true);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => event_type = value.to_owned(),
            "data" => {
                // WHATWG's data buffer: every value followed by a newline.
                if data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return (events, true);
                }
                data.push_str(value);
                data.push('\n');
            }
            _ => {}
        }
    }
    let unterminated = stream.len() - start;
    (events, unterminated > MAX_LINE_BYTES)
}

/// Where to cut `stream`: half the cuts fall just after a line-end byte (where chunking
/// matters most), the others anywhere; each may also add an empty chunk there.
fn positions(stream: &[u8], cuts: &[(usize, bool)]) -> Vec<usize> {
    let ends: Vec<usize> = (0..stream.len())
        .filter(|&i| matches!(stream[i], b'\r' | b'\n'))
        .map(|i| i + 1)
        .collect();
    let mut positions = Vec::new();
    for &(cut, empty) in cuts {
        let at = match ends.len() {
            n if n > 0 && cut % 2 == 0 => ends[(cut / 2) % n],
            _ => cut % (stream.len() + 1),
        };
        positions.push(at);
        if empty {
            positions.push(at);
        }
    }
    positions.sort_unstable();
    positions
}

/// Feeds `stream` cut at `cuts` (see [`positions`]), checking the memory bounds after
/// every chunk; stops at the first error.
fn feed(stream: &[u8], cuts: &[(usize, bool)]) -> (Vec<SseEvent>, bool) {
    feed_at(stream, positions(stream, cuts))
}

fn feed_at(stream: &[u8], mut positions: Vec<usize>) -> (Vec<SseEvent>, bool) {
    positions.push(stream.len());
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    let mut from = 0;
    for to in positions {
        match parser.push(&stream[from..to]) {
            Ok(more) => events.extend(more),
            Err(TooLarge) => return (events, true),
        }
        assert!(
            parser.pending.len() <= MAX_LINE_BYTES,
            "pending line over the limit"
        );
        assert!(
            parser.data.len() <= MAX_EVENT_BYTES,
            "event data over the limit"
        );
        assert!(
            parser.event.len() <= MAX_LINE_BYTES,
            "event name over the limit"
        );
        from = to;
    }
    (events, false)
}

fn line_end() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])]
}

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(b"abc{}\":,0123 ".to_vec()),
            1 => prop::sample::select(vec![0u8, 0x7f, 0xc3, 0xa9, 0xe2, 0x82, 0xff]),
        ],
        0..24,
    )
}

/// One line without its end: a field the feed uses (or a near miss), a comment, a
/// blank line, or now and then one at the line limit.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let field = prop::sample::select(vec![
        &b"data"[..],
        b"event",
        b"id",
        b"retry",
        b"",
        b"dat",
        b"data ",
        b"Data",
    ]);
    let separator = prop::sample::select(vec![&b":"[..], b": ", b":  ", b""]);
    prop_oneof![
        12 => (field, separator, text()).prop_map(|(f, s, t)| [f, s, &t].concat()),
        6 => Just(Vec::new()),
        1 => (MAX_LINE_BYTES - 8..=MAX_LINE_BYTES + 2)
            .prop_map(|n| [&b"data:"[..], &vec![b'x'; n - 5]].concat()),
    ]
}

fn lines() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(line(), 0..24)
}

/// `lines`, each ended by the next of `ends` in turn. A blank line after a bare `\r`
/// ends in `\r\n` rather than `\n`, which would merge with that `\r`.
fn join(lines: &[Vec<u8>], ends: &[&[u8]]) -> Vec<u8> {
    let mut stream: Vec<u8> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let mut end = ends[i % ends.len()];
        if line.is_empty() && stream.last() == Some(&b'\r') && end == b"\n" {
            end = b"\r\n";
        }
        stream.extend_from_slice(line);
        stream.extend_from_slice(end);
    }
    stream
}

fn cuts() -> impl Strategy<Value = Vec<(usize, bool)>> {
    prop::collection::vec((any::<usize>(), any::<bool>()), 0..12)
}

proptest! {
    #![proptest_config(budget(384))]

    #[test]
    fn any_chunking_of_a_stream_gives_the_events_of_the_whole_stream(
        lines in lines(),
        ends in prop::collection::vec(line_end(), 1..6),
        unterminated in text(),
        cuts in cuts(),
    ) {
        let mut stream = join(&lines, &ends);
        stream.extend_from_slice(&unterminated);
        let (expected, broke) = reference(&stream);
        let (got, failed) = feed(&stream, &cuts);
        prop_assert_eq!(failed, broke);
        if broke {
            // Whatever was dispatched before the failing chunk came in order.
            prop_assert!(expected.starts_with(&got));
        } else {
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn cr_lf_and_crlf_line_ends_are_the_same(
        lines in lines(),
        ends in prop::collection::vec(line_end(), 1..6),
        cuts in cuts(),
    ) {
        let (expected, broke) = reference(&join(&lines, &[b"\n"]));
        let (got, failed) = feed(&join(&lines, &ends), &cuts);
        prop_assert_eq!(failed, broke);
        if broke {
            prop_assert!(expected.starts_with(&got));
        } else {
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_match_the_reference(
        stream in prop::collection::vec(any::<u8>(), 0..512),
        cuts in cuts(),
    ) {
        let (expected, broke) = reference(&stream);
        prop_assert!(!broke);
        prop_assert_eq!(feed(&stream, &cuts), (expected, false));
    }
}

proptest! {
    // Byte at a time is slow on streams with a line at the limit: fewer cases.
    #![proptest_config(budget(96))]

    #[test]
    fn byte_at_a_time_delivers_every_event_before_a_broken_limit(
        lines in lines(),
        ends in prop::collection::vec(line_end(), 1..6),
    ) {
        let stream = join(&lines, &ends);
        let every_byte = (0..stream.len()).collect();
        prop_assert_eq!(feed_at(&stream, every_byte), reference(&stream));
    }
}

#[test]
fn an_event_just_over_the_data_limit_is_refused_however_it_is_cut() {
    // Five lines of 60 KiB: the fifth crosses 256 KiB of data.
    let line = [&b"data:"[..], &vec![b'y'; 60 * 1024]].concat();
    let stream = join(&vec![line; 5], &[b"\n"]);
    assert_eq!(reference(&stream), (Vec::new(), true));
    for cuts in [
        vec![],
        vec![1, 61_445, 61_445],
        (0..stream.len()).step_by(997).collect(),
    ] {
        assert_eq!(
            feed_at(&stream, cuts.clone()),
            (Vec::new(), true),
            "cut at {cuts:?}"
        );
    }
}

#[test]
fn an_empty_chunk_between_cr_and_lf_does_not_make_a_blank_line() {
    // Found by `any_chunking_of_a_stream_gives_the_events_of_the_whole_stream`: the
    // parser forgot the pending `\r` on an empty chunk, so the `\n` after it read as
    // a blank line and dispatched half an event.
    let stream = b"data: a\r\ndata: b\n\n";
    let whole = feed_at(stream, vec![]);
    assert_eq!(
        whole,
        (
            vec![SseEvent {
                event: "message".to_owned(),
                data: "a\nb".to_owned()
            }],
            false
        )
    );
    assert_eq!(feed_at(stream, vec![8, 8]), whole);
}
