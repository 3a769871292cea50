//! The miner's socket: lines in, lines out, and no buffer held while the
//! miner is idle.
//!
//! A `Framed` keeps an 8 KiB read buffer and an 8 KiB write buffer for the
//! life of the connection, which is most of what an idle miner would cost.
//! Here the read buffer exists only while bytes of an unfinished line are
//! waiting: a read starts with [`READ_CHUNK`] bytes, grows for a long line
//! (up to the codec's limit) and is freed once every line in it is taken.
//! Writes go straight to the socket from the caller's bytes, so a job's
//! rendered `mining.notify` is written from the one copy every miner
//! shares.

use bytes::BytesMut;
use hashsplit_stratum::{CodecError, LenientLineCodec, Line, LineBudget};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

/// Bytes reserved for one read: a Stratum line from a miner is rarely
/// longer (a submit is under 300 bytes), and a longer one just takes
/// another read.
pub(super) const READ_CHUNK: usize = 512;

/// A miner connection that reads and writes whole lines.
#[derive(Debug)]
pub(super) struct MinerWire {
    stream: TcpStream,
    codec: LenientLineCodec,
    /// Bytes of a line still to finish; empty with no capacity when idle.
    buf: BytesMut,
    /// The peer closed its side: nothing more will come.
    eof: bool,
}

impl MinerWire {
    /// Wraps `stream`, refusing lines longer than `max_line_length`; an
    /// unfinished line past the codec's free allowance takes from `budget`.
    pub(super) fn new(stream: TcpStream, max_line_length: usize, budget: LineBudget) -> Self {
        MinerWire {
            stream,
            codec: LenientLineCodec::with_budget(max_line_length, budget),
            buf: BytesMut::new(),
            eof: false,
        }
    }

    /// Returns the next line, or `None` once the miner closed the
    /// connection. Cancel-safe: the bytes of an unfinished line stay in
    /// `self`, and a read only happens once the socket is readable.
    pub(super) async fn next_line(&mut self) -> Option<Result<Line, CodecError>> {
        loop {
            match self.decode() {
                Ok(Some(line)) => return Some(Ok(line)),
                Ok(None) if self.eof => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            if let Err(e) = self.stream.readable().await {
                return Some(Err(e.into()));
            }
            self.buf.reserve(READ_CHUNK);
            match self.stream.try_read_buf(&mut self.buf) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// Takes a whole line from the buffer, and lets the buffer go once it
    /// holds nothing, so an idle miner keeps no read buffer.
    fn decode(&mut self) -> Result<Option<Line>, CodecError> {
        let line = if self.eof {
            self.codec.decode_eof(&mut self.buf)
        } else {
            self.codec.decode(&mut self.buf)
        };
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        line
    }

    /// Writes `line`, which ends in `\n`, whole.
    pub(super) async fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        debug_assert!(line.ends_with(b"\n"), "a line is sent with its newline");
        self.stream.write_all(line).await
    }

    /// Returns the read buffer's capacity (0 while the miner is idle).
    #[cfg(test)]
    pub(super) fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair(max_line_length: usize) -> (MinerWire, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (
            MinerWire::new(server, max_line_length, LineBudget::new(1 << 20)),
            client,
        )
    }

    #[tokio::test]
    async fn a_long_line_grows_the_buffer_which_is_freed_once_taken() {
        let (mut wire, mut miner) = pair(16 * 1024).await;
        let long = format!("{{\"x\":\"{}\"}}", "a".repeat(6000));
        miner
            .write_all(format!("{long}\n{{\"id\":1}}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(
            wire.next_line().await.unwrap().unwrap(),
            Line::Text(long.clone())
        );
        assert_eq!(
            wire.next_line().await.unwrap().unwrap(),
            Line::Text("{\"id\":1}".to_owned())
        );
        assert_eq!(wire.buffered_capacity(), 0, "idle: no read buffer held");

        // Half a line is kept (and only that) until the rest comes.
        miner.write_all(b"{\"id\":").await.unwrap();
        for _ in 0..500 {
            let wait = std::time::Duration::from_millis(10);
            let pending = tokio::time::timeout(wait, wire.next_line()).await;
            assert!(pending.is_err(), "no whole line yet");
            if wire.buffered_capacity() > 0 {
                break;
            }
        }
        assert!(wire.buffered_capacity() >= 6);
        assert!(wire.buffered_capacity() <= 2 * READ_CHUNK);
        miner.write_all(b"2}\n").await.unwrap();
        assert_eq!(
            wire.next_line().await.unwrap().unwrap(),
            Line::Text("{\"id\":2}".to_owned())
        );
        assert_eq!(wire.buffered_capacity(), 0);
    }

    #[tokio::test]
    async fn the_codec_limit_and_a_last_line_without_newline_still_apply() {
        let (mut wire, mut miner) = pair(256).await;
        miner.write_all(&[b'x'; 300]).await.unwrap();
        assert!(matches!(
            wire.next_line().await,
            Some(Err(CodecError::LineTooLong { limit: 256 }))
        ));

        let (mut wire, mut miner) = pair(256).await;
        miner.write_all(b"{\"id\":1}\n{\"id\":2}").await.unwrap();
        drop(miner);
        assert_eq!(
            wire.next_line().await.unwrap().unwrap(),
            Line::Text("{\"id\":1}".to_owned())
        );
        assert_eq!(
            wire.next_line().await.unwrap().unwrap(),
            Line::Text("{\"id\":2}".to_owned())
        );
        assert!(wire.next_line().await.is_none());
    }

    #[tokio::test]
    async fn lines_are_written_whole() {
        let (mut wire, miner) = pair(256).await;
        wire.write_line(b"{\"id\":1,\"result\":true}\n")
            .await
            .unwrap();
        let mut reader = MinerWire::new(miner, 256, LineBudget::new(1 << 20));
        assert_eq!(
            reader.next_line().await.unwrap().unwrap(),
            Line::Text("{\"id\":1,\"result\":true}".to_owned())
        );
    }
}
