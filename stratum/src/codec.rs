//! [`LineCodec`]: newline-delimited UTF-8 lines with a hard length limit.
//!
//! Stratum v1 is one JSON object per line. The limit is what keeps a peer
//! that never sends `\n` from growing the read buffer without bound: once a
//! line (finished or not) is longer than the limit the decoder fails, and
//! since `FramedRead` ends the stream after an error, the connection closes.
//! There is no attempt to skip to the next line: a peer that sends such a
//! line is broken or hostile.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Errors that end a line-oriented connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// A line (not counting `\r\n`) grew past the limit.
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The configured maximum line length.
        limit: usize,
    },
    /// A line is not valid UTF-8.
    #[error("line is not UTF-8 (invalid byte at offset {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// Unfinished lines across all connections already hold the shared
    /// [`LineBudget`], and this one grew past its free allowance.
    #[error("partial lines of all connections hold the budget of {budget} bytes")]
    OverBudget {
        /// The budget's size.
        budget: usize,
    },
    /// An outgoing line contains a newline, which would split it in two.
    #[error("outgoing line contains a newline at offset {offset}")]
    NewlineInLine {
        /// Where the newline is.
        offset: usize,
    },
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into lines and writes lines with a trailing `\n`.
///
/// Lines end in `\n` or `\r\n`; empty lines are skipped. At end of stream a
/// last line without `\n` is returned, since some miners do not end their
/// final line.
#[derive(Debug, Clone)]
pub struct LineCodec {
    max_length: usize,
    /// Bytes of the buffer already searched for `\n`, so a long line
    /// arriving in small reads is scanned once.
    scanned: usize,
}

impl LineCodec {
    /// A limit for the miner side: miners send short lines (a submit is
    /// under 300 bytes), so 16 KiB is generous.
    pub const DOWNSTREAM_MAX_LENGTH: usize = 16 * 1024;
    /// A limit for the pool side: a `mining.notify` carries the coinbase,
    /// which pools paying many outputs in it make tens of kilobytes long.
    pub const UPSTREAM_MAX_LENGTH: usize = 1024 * 1024;

    /// Returns a codec that rejects lines longer than `max_length` bytes
    /// (excluding the line ending).
    pub fn new(max_length: usize) -> Self {
        LineCodec {
            max_length,
            scanned: 0,
        }
    }

    /// Returns the maximum line length.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    fn too_long(&self) -> CodecError {
        CodecError::LineTooLong {
            limit: self.max_length,
        }
    }

    /// Returns the next line without its ending, skipping blank lines, or
    /// `None` when no whole line is buffered yet.
    fn next_line(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        loop {
            match buf[self.scanned..].iter().position(|b| *b == b'\n') {
                Some(at) => {
                    let mut raw = buf.split_to(self.scanned + at + 1);
                    self.scanned = 0;
                    if let Some(line) = self.trim(&mut raw)? {
                        return Ok(Some(line));
                    }
                }
                None => {
                    // One byte of slack for a `\r` whose `\n` is still to come.
                    if buf.len() > self.max_length + 1 {
                        return Err(self.too_long());
                    }
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    /// Returns the last line of a stream that ended without `\n`.
    fn last_line(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        if let Some(line) = self.next_line(buf)? {
            return Ok(Some(line));
        }
        let mut rest = buf.split();
        self.scanned = 0;
        self.trim(&mut rest)
    }

    /// Strips the line ending off `raw`; `None` if nothing but blanks is left.
    fn trim(&self, raw: &mut BytesMut) -> Result<Option<BytesMut>, CodecError> {
        let mut len = raw.len();
        if raw[..len].ends_with(b"\n") {
            len -= 1;
        }
        if raw[..len].ends_with(b"\r") {
            len -= 1;
        }
        if len > self.max_length {
            return Err(self.too_long());
        }
        raw.truncate(len);
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(Some(std::mem::take(raw)))
    }
}

/// Returns the line as text, or where its first invalid byte is.
fn to_text(line: BytesMut) -> Result<String, usize> {
    String::from_utf8(Vec::from(line)).map_err(|e| e.utf8_error().valid_up_to())
}

impl Decoder for LineCodec {
    type Item = String;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, CodecError> {
        self.next_line(buf)?
            .map(|line| {
                to_text(line).map_err(|valid_up_to| CodecError::InvalidUtf8 { valid_up_to })
            })
            .transpose()
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<String>, CodecError> {
        self.last_line(buf)?
            .map(|line| {
                to_text(line).map_err(|valid_up_to| CodecError::InvalidUtf8 { valid_up_to })
            })
            .transpose()
    }
}

/// A line read by [`LenientLineCodec`]: text, or bytes that are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line of text, without its ending.
    Text(String),
    /// A line that is not UTF-8 (so not JSON either).
    NotUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
}

/// A ceiling on the bytes of unfinished lines held by many connections
/// together, so memory under hostile traffic is bounded by configuration:
/// without it, every connection may hold a partial line of the full
/// `max_line_length`. Each [`LenientLineCodec`] holds up to
/// [`LenientLineCodec::FREE_PARTIAL`] bytes of a partial line without
/// counting (what any real miner's line fits in); beyond that it takes
/// from the budget, and gives back when the line ends or the codec drops.
#[derive(Debug, Clone)]
pub struct LineBudget {
    held: Arc<AtomicUsize>,
    limit: usize,
}

impl LineBudget {
    /// Returns a budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LineBudget {
            held: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// Returns the bytes taken now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.held
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// [`LineCodec`] for a side that answers an unreadable line and reads on:
/// a line that is not UTF-8 is an item ([`Line::NotUtf8`]) rather than an
/// error, since `FramedRead` ends the stream after any error. A line over
/// the limit still fails (there is no line boundary to resume at).
///
/// With a [`LineBudget`], a partial line longer than
/// [`Self::FREE_PARTIAL`] also fails when the budget cannot cover it; and
/// a read buffer that grew for a long line is given back once the line is
/// read, so an idle connection does not keep a long line's memory.
#[derive(Debug)]
pub struct LenientLineCodec {
    lines: LineCodec,
    budget: Option<LineBudget>,
    /// Bytes this codec took from the budget.
    charged: usize,
}

impl LenientLineCodec {
    /// Bytes of a partial line held without taking from the budget.
    pub const FREE_PARTIAL: usize = 4096;
    /// A read buffer with more room than this is replaced by a small one
    /// once it holds little.
    pub const SHRINK_ABOVE: usize = 64 * 1024;

    /// Returns a codec that rejects lines longer than `max_length` bytes.
    pub fn new(max_length: usize) -> Self {
        LenientLineCodec {
            lines: LineCodec::new(max_length),
            budget: None,
            charged: 0,
        }
    }

    /// Returns a codec whose partial lines beyond the free allowance take
    /// from `budget`.
    pub fn with_budget(max_length: usize, budget: LineBudget) -> Self {
        LenientLineCodec {
            lines: LineCodec::new(max_length),
            budget: Some(budget),
            charged: 0,
        }
    }

    /// Charges the partial line left in `buf` to the budget, and shrinks a
    /// buffer that grew for a line already read.
    fn settle(&mut self, buf: &mut BytesMut) -> Result<(), CodecError> {
        if buf.capacity() > Self::SHRINK_ABOVE && buf.len() <= Self::SHRINK_ABOVE / 4 {
            *buf = BytesMut::from(&buf[..]);
        }
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        let want = buf.len().saturating_sub(Self::FREE_PARTIAL);
        if want > self.charged {
            if !budget.try_take(want - self.charged) {
                return Err(CodecError::OverBudget {
                    budget: budget.limit,
                });
            }
        } else {
            budget.give_back(self.charged - want);
        }
        self.charged = want;
        Ok(())
    }
}

impl Drop for LenientLineCodec {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.give_back(self.charged);
        }
    }
}

fn to_line(line: BytesMut) -> Line {
    to_text(line).map_or_else(|valid_up_to| Line::NotUtf8 { valid_up_to }, Line::Text)
}

impl Decoder for LenientLineCodec {
    type Item = Line;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, CodecError> {
        let line = self.lines.next_line(buf)?.map(to_line);
        self.settle(buf)?;
        Ok(line)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Line>, CodecError> {
        let line = self.lines.last_line(buf)?.map(to_line);
        self.settle(buf)?;
        Ok(line)
    }
}

impl<T: AsRef<str>> Encoder<T> for LenientLineCodec {
    type Error = CodecError;

    fn encode(&mut self, line: T, buf: &mut BytesMut) -> Result<(), CodecError> {
        self.lines.encode(line.as_ref(), buf)
    }
}

impl Encoder<&str> for LineCodec {
    type Error = CodecError;

    fn encode(&mut self, line: &str, buf: &mut BytesMut) -> Result<(), CodecError> {
        if let Some(offset) = line.bytes().position(|b| b == b'\n') {
            return Err(CodecError::NewlineInLine { offset });
        }
        buf.reserve(line.len() + 1);
        buf.put_slice(line.as_bytes());
        buf.put_u8(b'\n');
        Ok(())
    }
}

impl Encoder<String> for LineCodec {
    type Error = CodecError;

    fn encode(&mut self, line: String, buf: &mut BytesMut) -> Result<(), CodecError> {
        self.encode(line.as_str(), buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, input: &[u8]) -> Vec<String> {
        let mut buf = BytesMut::from(input);
        let mut lines = Vec::new();
        while let Some(line) = codec.decode(&mut buf).unwrap() {
            lines.push(line);
        }
        lines
    }

    #[test]
    fn splits_on_lf_and_crlf_and_skips_empty_lines() {
        let mut codec = LineCodec::new(64);
        let lines = decode_all(&mut codec, b"{\"a\":1}\r\n\n\r\n  \n{\"b\":2}\n{\"c\"");
        assert_eq!(lines, ["{\"a\":1}", "{\"b\":2}"]);
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        let mut codec = LineCodec::new(64);
        let mut buf = BytesMut::new();
        let mut lines = Vec::new();
        for chunk in [
            &b"{\"id\":4,"[..],
            b"\"method\"",
            b":\"x\"}\r",
            b"\n{}",
            b"\n",
        ] {
            buf.extend_from_slice(chunk);
            while let Some(line) = codec.decode(&mut buf).unwrap() {
                lines.push(line);
            }
        }
        assert_eq!(lines, ["{\"id\":4,\"method\":\"x\"}", "{}"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn the_limit_counts_the_line_without_its_ending() {
        let mut codec = LineCodec::new(4);
        assert_eq!(decode_all(&mut codec, b"abcd\r\n"), ["abcd"]);
        let mut buf = BytesMut::from(&b"abcde\n"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::LineTooLong { limit: 4 })
        ));
    }

    #[test]
    fn an_endless_line_fails_once_past_the_limit() {
        let limit = 1000;
        let mut codec = LineCodec::new(limit);
        let mut buf = BytesMut::new();
        let chunk = [b'x'; 100];
        let mut fed = 0;
        let err = loop {
            buf.extend_from_slice(&chunk);
            fed += chunk.len();
            match codec.decode(&mut buf) {
                Ok(None) => assert!(fed <= limit + 1, "kept buffering past the limit"),
                Ok(Some(line)) => panic!("no newline was sent, got {} bytes", line.len()),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, CodecError::LineTooLong { limit: 1000 }));
        assert!(fed <= limit + chunk.len());
    }

    #[test]
    fn eof_returns_an_unterminated_last_line() {
        let mut codec = LineCodec::new(64);
        let mut buf = BytesMut::from(&b"{\"a\":1}\n{\"b\":2}"[..]);
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap(), "{\"a\":1}");
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap(), "{\"b\":2}");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        let mut buf = BytesMut::from(&b"\r\n  "[..]);
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut codec = LineCodec::new(64);
        let mut buf = BytesMut::from(&b"{\"a\":\"\xff\"}\n"[..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::InvalidUtf8 { valid_up_to: 6 })
        ));
    }

    #[test]
    fn the_lenient_codec_reads_on_after_a_line_that_is_not_utf8() {
        let mut codec = LenientLineCodec::new(64);
        let mut buf = BytesMut::from(&b"{\"a\":\"\xff\"}\r\n\xc3\n{}\n\xe2\x82"[..]);
        let mut lines = Vec::new();
        while let Some(line) = codec.decode(&mut buf).unwrap() {
            lines.push(line);
        }
        lines.push(codec.decode_eof(&mut buf).unwrap().unwrap());
        assert_eq!(
            lines,
            [
                Line::NotUtf8 { valid_up_to: 6 },
                Line::NotUtf8 { valid_up_to: 0 },
                Line::Text("{}".into()),
                Line::NotUtf8 { valid_up_to: 0 },
            ]
        );
        let mut buf = BytesMut::from(&[b'x'; 66][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::LineTooLong { limit: 64 })
        ));
    }

    #[test]
    fn partial_lines_beyond_the_free_allowance_share_one_budget() {
        const FREE: usize = LenientLineCodec::FREE_PARTIAL;
        let budget = LineBudget::new(10_000);
        let mut first = LenientLineCodec::with_budget(100_000, budget.clone());
        let mut second = LenientLineCodec::with_budget(100_000, budget.clone());
        let mut a = BytesMut::from(&vec![b'x'; FREE + 6_000][..]);
        assert_eq!(first.decode(&mut a).unwrap(), None);
        assert_eq!(budget.held(), 6_000);

        // A short partial line is free; a long one finds the budget short.
        let mut b = BytesMut::from(&vec![b'y'; FREE][..]);
        assert_eq!(second.decode(&mut b).unwrap(), None);
        b.extend_from_slice(&[b'y'; 4_001]);
        assert!(matches!(
            second.decode(&mut b),
            Err(CodecError::OverBudget { budget: 10_000 })
        ));
        assert_eq!(budget.held(), 6_000, "a refused charge takes nothing");

        // The first line ends: its bytes go back, and its big buffer too.
        a.extend_from_slice(b"\n{}");
        assert!(matches!(first.decode(&mut a).unwrap(), Some(Line::Text(_))));
        assert_eq!(budget.held(), 0);
        let mut c = BytesMut::from(&vec![b'z'; FREE + 10_000][..]);
        assert_eq!(second.decode(&mut c).unwrap(), None);
        assert_eq!(budget.held(), 10_000);
        drop(second);
        assert_eq!(budget.held(), 0, "a closed connection gives back");
    }

    #[test]
    fn a_buffer_grown_for_a_long_line_shrinks_once_it_is_read() {
        let mut codec = LenientLineCodec::new(1 << 20);
        let mut buf = BytesMut::from(&vec![b'x'; 500_000][..]);
        buf.extend_from_slice(b"\n{}");
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(Line::Text(_))
        ));
        assert_eq!(&buf[..], b"{}");
        assert!(
            buf.capacity() <= LenientLineCodec::SHRINK_ABOVE,
            "{}",
            buf.capacity()
        );
    }

    #[test]
    fn encodes_one_line_per_message() {
        let mut codec = LineCodec::new(64);
        let mut buf = BytesMut::new();
        codec.encode("{\"a\":1}", &mut buf).unwrap();
        codec.encode(String::from("{}"), &mut buf).unwrap();
        assert_eq!(&buf[..], b"{\"a\":1}\n{}\n");
        assert!(matches!(
            codec.encode("{}\n{}", &mut buf),
            Err(CodecError::NewlineInLine { offset: 2 })
        ));
    }

    /// Tests through `FramedRead`, the way sessions and upstreams read.
    mod framed {
        use super::*;
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        use tokio_util::codec::FramedRead;

        #[tokio::test]
        async fn reads_lines_written_in_pieces_and_a_last_line_without_newline() {
            let (mut writer, reader) = tokio::io::duplex(16);
            let mut lines = FramedRead::new(reader, LineCodec::new(128));
            let feed = tokio::spawn(async move {
                for piece in [
                    "{\"id\":1,",
                    "\"result\":true}\r",
                    "\n\n{\"id\":2}\n{\"id\":3}",
                ] {
                    writer.write_all(piece.as_bytes()).await.unwrap();
                }
            });
            let mut got = Vec::new();
            while let Some(line) = lines.next().await {
                got.push(line.unwrap());
            }
            feed.await.unwrap();
            assert_eq!(
                got,
                ["{\"id\":1,\"result\":true}", "{\"id\":2}", "{\"id\":3}"]
            );
        }

        #[tokio::test]
        async fn a_megabyte_without_newline_ends_the_stream_without_buffering_it() {
            const LIMIT: usize = 4096;
            const PIPE: usize = 64;
            let (mut writer, reader) = tokio::io::duplex(PIPE);
            let mut lines = FramedRead::new(reader, LineCodec::new(LIMIT));
            tokio::spawn(async move {
                // Fails with a broken pipe once the reader is gone. The writer
                // then stays open, so only the limit (not end of stream) can
                // end the read.
                let _ = writer.write_all(&vec![b'x'; 1 << 20]).await;
                std::future::pending::<()>().await;
                drop(writer);
            });
            let first = lines.next().await.expect("an error, not the end");
            assert!(matches!(
                first,
                Err(CodecError::LineTooLong { limit: LIMIT })
            ));
            assert!(
                lines.read_buffer().len() <= LIMIT + 1 + PIPE,
                "buffered {} bytes",
                lines.read_buffer().len()
            );
            // No resynchronisation: the stream is over.
            assert!(lines.next().await.is_none());
        }
    }
}
