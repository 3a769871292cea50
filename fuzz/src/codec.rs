//! The line codec: an arbitrary byte stream, cut into reads at arbitrary
//! points, must give the same lines as a reference reading of the whole
//! stream, and never buffer more than one line's limit.

use bytes::BytesMut;
use hashsplit_stratum::{CodecError, LenientLineCodec, Line, LineCodec};
use tokio_util::codec::Decoder;

use crate::input::Input;

/// What a reader of the stream sees, in order.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Line(Line),
    TooLong,
    NotUtf8,
}

/// Reads the stream (the rest of `data`) with a limit and read sizes taken
/// from the first bytes, through both codecs.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let max_length = 1 + usize::from(input.byte() % 64);
    let cut_count = input.byte() % 8;
    let mut cuts: Vec<usize> = (0..cut_count).map(|_| usize::from(input.byte())).collect();
    let stream = input.rest();
    cuts.retain(|cut| *cut < stream.len());
    cuts.sort_unstable();
    cuts.push(stream.len());

    let expected = reference(stream, max_length);
    let lenient = read(
        &mut LenientLineCodec::new(max_length),
        stream,
        &cuts,
        max_length,
    );
    assert_eq!(
        lenient, expected,
        "lenient codec, limit {max_length}, cuts {cuts:?}"
    );

    // The strict codec stops at the first line that is not UTF-8.
    let mut strict_expected = Vec::new();
    for event in expected {
        match event {
            Event::Line(Line::NotUtf8 { .. }) => {
                strict_expected.push(Event::NotUtf8);
                break;
            }
            other => strict_expected.push(other),
        }
    }
    let strict = read(
        &mut Strict(LineCodec::new(max_length)),
        stream,
        &cuts,
        max_length,
    );
    assert_eq!(
        strict, strict_expected,
        "strict codec, limit {max_length}, cuts {cuts:?}"
    );
}

/// The strict codec's items as lines, to drive both codecs alike.
struct Strict(LineCodec);

impl Decoder for Strict {
    type Item = Line;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, CodecError> {
        Ok(self.0.decode(buf)?.map(Line::Text))
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, CodecError> {
        Ok(self.0.decode_eof(buf)?.map(Line::Text))
    }
}

/// Feeds `stream` in pieces ending at `cuts` and reads as `FramedRead` does:
/// decode until nothing is left after each read, `decode_eof` at the end.
fn read<D>(codec: &mut D, stream: &[u8], cuts: &[usize], max_length: usize) -> Vec<Event>
where
    D: Decoder<Item = Line, Error = CodecError>,
{
    let mut events = Vec::new();
    let mut buf = BytesMut::new();
    let mut from = 0;
    for &to in cuts {
        buf.extend_from_slice(&stream[from..to]);
        from = to;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(line)) => events.push(Event::Line(line)),
                Ok(None) => break,
                Err(error) => {
                    events.push(event_of(error));
                    return events;
                }
            }
        }
        assert!(
            buf.len() <= max_length + 1,
            "{} bytes buffered with a limit of {max_length}",
            buf.len()
        );
    }
    loop {
        match codec.decode_eof(&mut buf) {
            Ok(Some(line)) => events.push(Event::Line(line)),
            Ok(None) => break,
            Err(error) => {
                events.push(event_of(error));
                break;
            }
        }
    }
    events
}

fn event_of(error: CodecError) -> Event {
    match error {
        CodecError::LineTooLong { .. } => Event::TooLong,
        CodecError::InvalidUtf8 { .. } => Event::NotUtf8,
        other => panic!("a decoder reading memory failed with {other}"),
    }
}

/// Reads the whole stream the simple way: split at `\n`, drop one `\r`,
/// skip blank lines, fail on a line over the limit (or an unfinished one
/// that is already more than one byte over it).
fn reference(stream: &[u8], max_length: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let mut segments = stream.split(|b| *b == b'\n').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if last && segment.len() > max_length + 1 {
            events.push(Event::TooLong);
            break;
        }
        let line = segment.strip_suffix(b"\r").unwrap_or(segment);
        if line.len() > max_length {
            events.push(Event::TooLong);
            break;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        events.push(Event::Line(match std::str::from_utf8(line) {
            Ok(text) => Line::Text(text.to_owned()),
            Err(e) => Line::NotUtf8 {
                valid_up_to: e.valid_up_to(),
            },
        }));
    }
    events
}
