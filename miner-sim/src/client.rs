//! [`StratumClient`]: a line-level Stratum client for transcript-style
//! tests ("the pool sends notify; the client submits; the pool answers").
//!
//! It does nothing on its own: every line is sent or read by the test.
//! Calls the server makes while the test waits for an answer are kept and
//! handed out by [`StratumClient::next_call`] in order.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit_stratum::{
    ClientMethod, Difficulty, Id, Incoming, LineCodec, Method, Notify, Response, ServerMethod,
    Submission, Submit, SubscribeResult,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::eventually::within;

/// How long a read waits before the client reports the server silent.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the server said, or why it said nothing.
#[derive(Debug)]
pub enum Heard {
    /// A call from the server (id null for a notification).
    Call(Id, ServerMethod),
    /// An answer to one of the client's calls.
    Response(Response),
    /// A line the client could not read as Stratum.
    Unreadable(String),
}

/// A raw Stratum connection driven line by line.
#[derive(Debug)]
pub struct StratumClient {
    lines: Framed<TcpStream, LineCodec>,
    next_id: u64,
    /// Calls read while waiting for an answer.
    pending: VecDeque<(Id, ServerMethod)>,
}

/// What a pool told a client at the start of a session.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The subscribe result.
    pub subscribed: SubscribeResult,
    /// The difficulty sent before the first job.
    pub difficulty: Difficulty,
    /// The first job.
    pub job: Notify,
}

impl StratumClient {
    /// Connects to `addr` (loopback only).
    pub async fn connect(addr: SocketAddr) -> io::Result<StratumClient> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{addr} is not a loopback address"),
            ));
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(StratumClient {
            lines: Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH)),
            next_id: 1,
            pending: VecDeque::new(),
        })
    }

    /// Sends a raw line.
    pub async fn send_line(&mut self, line: &str) -> io::Result<()> {
        self.lines.send(line).await.map_err(io::Error::other)
    }

    /// Sends raw bytes, which need not be UTF-8 or whole lines.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        SinkExt::<&str>::flush(&mut self.lines)
            .await
            .map_err(io::Error::other)?;
        let stream = self.lines.get_mut();
        stream.write_all(bytes).await?;
        stream.flush().await
    }

    /// Sends `method` with the next id and returns that id.
    pub async fn send(&mut self, method: &ClientMethod) -> io::Result<Id> {
        let id = Id::from(self.next_id);
        self.next_id += 1;
        self.send_line(&method.to_line(id.clone())).await?;
        Ok(id)
    }

    /// Sends `method` and waits for its answer, keeping calls read meanwhile.
    pub async fn call(&mut self, method: &ClientMethod) -> io::Result<Response> {
        let id = self.send(method).await?;
        self.response_to(&id).await
    }

    /// Waits for the answer to the call with `id`.
    pub async fn response_to(&mut self, id: &Id) -> io::Result<Response> {
        loop {
            match self.read().await? {
                Heard::Response(r) if &r.id == id => return Ok(r),
                Heard::Response(_) | Heard::Unreadable(_) => {}
                Heard::Call(id, method) => self.pending.push_back((id, method)),
            }
        }
    }

    /// Returns the next call from the server, skipping answers and
    /// unreadable lines.
    pub async fn next_call(&mut self) -> io::Result<(Id, ServerMethod)> {
        if let Some(call) = self.pending.pop_front() {
            return Ok(call);
        }
        loop {
            if let Heard::Call(id, method) = self.read().await? {
                return Ok((id, method));
            }
        }
    }

    /// Returns the next job, skipping other calls.
    pub async fn next_job(&mut self) -> io::Result<Notify> {
        loop {
            if let (_, ServerMethod::Notify(job)) = self.next_call().await? {
                return Ok(job);
            }
        }
    }

    /// Reads lines until an answer, keeping calls read meanwhile.
    pub async fn read_until_response(&mut self) -> io::Result<Heard> {
        loop {
            match self.read().await? {
                Heard::Call(id, method) => self.pending.push_back((id, method)),
                heard @ Heard::Response(_) => return Ok(heard),
                Heard::Unreadable(_) => {}
            }
        }
    }

    /// Reads the next line (kept calls are not returned here). Fails if the
    /// connection closes or nothing comes for [`READ_TIMEOUT`] (on both the
    /// tokio and the wall clock, so a paused clock does not cut it short).
    pub async fn read(&mut self) -> io::Result<Heard> {
        let line = within(READ_TIMEOUT, self.lines.next())
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "server silent"))?
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?
            .map_err(io::Error::other)?;
        Ok(match Incoming::<ServerMethod>::from_line(&line) {
            Ok(Incoming::Call { id, method }) => Heard::Call(id, method),
            Ok(Incoming::Response(r)) => Heard::Response(r),
            Err(_) => Heard::Unreadable(line),
        })
    }

    /// Returns true once the server has closed the connection (reading and
    /// dropping whatever it sent first), false if it is still open after
    /// `timeout`.
    pub async fn closed_within(&mut self, timeout: Duration) -> bool {
        let lines = &mut self.lines;
        let closed = async move {
            // Reads and drops lines until the end of the stream.
            while let Some(Ok(_)) = lines.next().await {}
        };
        within(timeout, closed).await.is_some()
    }

    /// Subscribes and authorizes `user`, then waits for the difficulty and
    /// the first job.
    pub async fn handshake(&mut self, user: &str) -> io::Result<Handshake> {
        let subscribe = ClientMethod::Subscribe {
            user_agent: Some("stratum-client/test".into()),
            session_id: None,
        };
        let answer = self.call(&subscribe).await?;
        let subscribed = SubscribeResult::from_result(&answer.result).map_err(io::Error::other)?;
        self.authorize(user).await?;
        let mut difficulty = Difficulty::ONE;
        loop {
            match self.next_call().await? {
                (_, ServerMethod::SetDifficulty(d)) => difficulty = d,
                (_, ServerMethod::Notify(job)) => {
                    return Ok(Handshake {
                        subscribed,
                        difficulty,
                        job,
                    });
                }
                _ => {}
            }
        }
    }

    /// Authorizes `user` with password `x`; returns the answer.
    pub async fn authorize(&mut self, user: &str) -> io::Result<Response> {
        let authorize = ClientMethod::Authorize {
            user: user.into(),
            password: Some("x".into()),
        };
        self.call(&authorize).await
    }

    /// Submits `share` for `job_id` as `worker` and waits for the answer.
    pub async fn submit(
        &mut self,
        worker: &str,
        job_id: &str,
        share: &Submission,
    ) -> io::Result<Response> {
        self.call(&ClientMethod::Submit(submit_params(worker, job_id, share)))
            .await
    }
}

/// Returns the params of `mining.submit` for a share.
pub fn submit_params(worker: &str, job_id: &str, share: &Submission) -> Submit {
    Submit {
        worker: worker.into(),
        job_id: job_id.into(),
        extranonce2: hex::encode(share.extranonce2()),
        ntime: format!("{:08x}", share.ntime),
        nonce: format!("{:08x}", share.nonce),
        version_bits: share.version_bits.map(|bits| format!("{bits:08x}")),
    }
}
