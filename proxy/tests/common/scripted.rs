//! A pool a test scripts line by line: it answers the handshake itself,
//! then sends whatever the test tells it to, when it tells it to, and can
//! stop reading altogether. For misbehaviour a SimPool does not offer.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use hashsplit_stratum::{
    ClientMethod, ConfigureResult, Id, Incoming, LineCodec, Method, Notify, Response, ServerMethod,
    SubscribeResult,
};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;

/// What the test can tell the pool to do.
#[derive(Debug)]
pub enum Script {
    /// Send this line to the connected proxy.
    Line(String),
    /// Answer the configure request held back until now (see
    /// [`ScriptedPool::start`]'s `hold_configure`).
    AnswerConfigure,
    /// Stop reading from the proxy (keep the connection open).
    StopReading,
    /// Stop reading for this long, then read on: a pool slower than the
    /// load for a moment, but up.
    PauseReading(std::time::Duration),
    /// Keep reading and answering, but never answer a `mining.submit`.
    IgnoreSubmits,
}

/// A scripted pool on 127.0.0.1.
pub struct ScriptedPool {
    pub addr: SocketAddr,
    script: mpsc::UnboundedSender<Script>,
    /// Every `mining.submit` the pool received.
    pub submits: Arc<Mutex<Vec<Vec<serde_json::Value>>>>,
    connections: watch::Receiver<u32>,
    /// The time of every job this pool sends: taken once at start, so the
    /// same job id sent again is the same work to the second.
    ntime: u32,
}

impl ScriptedPool {
    /// Starts a pool that gives `extranonce1` and `extranonce2_size`,
    /// grants `version_mask` (or refuses rolling with `None`), and holds its
    /// configure answer back until [`Script::AnswerConfigure`] if
    /// `hold_configure`.
    pub async fn start(
        extranonce1: &[u8],
        extranonce2_size: usize,
        version_mask: Option<u32>,
        hold_configure: bool,
    ) -> ScriptedPool {
        // A small receive buffer (inherited by accepted connections), so a
        // pool that reads slowly backs the proxy up after a few hundred
        // lines rather than megabytes.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(16).unwrap();
        let addr = listener.local_addr().unwrap();
        let (script, mut scripted) = mpsc::unbounded_channel();
        let submits = Arc::new(Mutex::new(Vec::new()));
        let (connected, connections) = watch::channel(0);
        let extranonce1 = extranonce1.to_vec();
        let recorded = Arc::clone(&submits);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connected.send_modify(|n| *n += 1);
                let config = Config {
                    extranonce1: extranonce1.clone(),
                    extranonce2_size,
                    version_mask,
                    hold_configure,
                };
                if !serve(stream, &config, &mut scripted, &recorded).await {
                    return;
                }
            }
        });
        ScriptedPool {
            addr,
            script,
            submits,
            connections,
            ntime: unix_now(),
        }
    }

    pub fn send(&self, step: Script) {
        let _ = self.script.send(step);
    }

    pub fn send_line(&self, line: String) {
        self.send(Script::Line(line));
    }

    /// Sends `mining.set_difficulty`.
    pub fn set_difficulty(&self, difficulty: f64) {
        let d = hashsplit_stratum::Difficulty::try_new(difficulty).unwrap();
        self.send_line(ServerMethod::SetDifficulty(d).to_line(Id::Null));
    }

    /// Sends `mining.notify` for a fixed job with this id.
    pub fn notify(&self, job_id: &str, clean: bool) {
        let job = job(job_id, clean, self.ntime);
        self.send_line(ServerMethod::Notify(job).to_line(Id::Null));
    }

    pub fn connections(&self) -> u32 {
        *self.connections.borrow()
    }
}

struct Config {
    extranonce1: Vec<u8>,
    extranonce2_size: usize,
    version_mask: Option<u32>,
    hold_configure: bool,
}

fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// A job with a tiny coinbase and no transactions at time `ntime`.
pub fn job(job_id: &str, clean: bool, ntime: u32) -> Notify {
    Notify {
        job_id: job_id.into(),
        prevhash: [0x11; 32],
        coinb1: vec![0x01, 0x02, 0x03],
        coinb2: vec![0x04, 0x05],
        merkle_branch: Vec::new(),
        version: 0x2000_0000,
        nbits: 0x1703_a30c,
        ntime,
        clean_jobs: clean,
    }
}

/// Serves one proxy connection; returns false when the script is over.
async fn serve(
    stream: TcpStream,
    config: &Config,
    script: &mut mpsc::UnboundedReceiver<Script>,
    submits: &Arc<Mutex<Vec<Vec<serde_json::Value>>>>,
) -> bool {
    let mut framed = Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH));
    let mut held_configure: Option<(Id, hashsplit_stratum::Configure)> = None;
    let mut reading = true;
    let mut answer_submits = true;
    let resume = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(resume);
    let mut paused = false;
    loop {
        tokio::select! {
            () = &mut resume, if paused => {
                paused = false;
                reading = true;
            }
            step = script.recv() => match step {
                None => return false,
                Some(Script::Line(line)) => {
                    if framed.send(line).await.is_err() {
                        return true;
                    }
                }
                Some(Script::AnswerConfigure) => {
                    if let Some((id, configure)) = held_configure.take() {
                        let result = ConfigureResult::reply_to(&configure, config.version_mask);
                        let _ = framed.send(Response::ok(id, result.to_value()).to_line()).await;
                    }
                }
                Some(Script::StopReading) => reading = false,
                Some(Script::PauseReading(pause)) => {
                    reading = false;
                    paused = true;
                    resume.as_mut().reset(tokio::time::Instant::now() + pause);
                }
                Some(Script::IgnoreSubmits) => answer_submits = false,
            },
            line = framed.next(), if reading => {
                let Some(Ok(line)) = line else { return true };
                let Ok(Incoming::Call { id, method }) = Incoming::<ClientMethod>::from_line(&line) else {
                    continue;
                };
                let answer = match method {
                    ClientMethod::Configure(configure) if config.hold_configure => {
                        held_configure = Some((id, configure));
                        continue;
                    }
                    ClientMethod::Configure(configure) => {
                        ConfigureResult::reply_to(&configure, config.version_mask).to_value()
                    }
                    ClientMethod::Subscribe { .. } => {
                        SubscribeResult::new("s1", config.extranonce1.clone(), config.extranonce2_size).to_value()
                    }
                    ClientMethod::Submit(submit) => {
                        let mut params = vec![
                            json!(submit.worker),
                            json!(submit.job_id),
                            json!(submit.extranonce2),
                            json!(submit.ntime),
                            json!(submit.nonce),
                        ];
                        params.extend(submit.version_bits.map(|b| json!(b)));
                        submits.lock().unwrap().push(params);
                        if !answer_submits {
                            continue;
                        }
                        json!(true)
                    }
                    _ => json!(true),
                };
                if framed.send(Response::ok(id, answer).to_line()).await.is_err() {
                    return true;
                }
            }
        }
    }
}
