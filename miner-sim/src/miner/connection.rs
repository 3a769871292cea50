//! The Stratum side of a [`SimMiner`](super::SimMiner): connect, handshake
//! as the profile does, turn jobs into work for the hasher and found shares
//! into submits, count the answers, and start over when the connection
//! ends.
//!
//! Difficulty, extranonce and version mask changes apply from the next job,
//! as Stratum says: a share is always mined at the difficulty in force when
//! its job arrived, which is what the pool judges it at.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit_stratum::{
    ClientMethod, CodecError, Configure, ConfigureResult, Difficulty, Id, Incoming, Job, LineCodec,
    Method, Notify, Response, ServerMethod, Submit, SubmitResult, SubscribeResult,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use super::hasher::{Found, Work};
use super::{ASIC_VERSION_MASK, MinerShared, Profile, SimMinerConfig};

/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The JSON-RPC id cpuminer sends every submit with.
const CPUMINER_SUBMIT_ID: u64 = 4;

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// The miner is stopping.
    Stopped,
    /// The pool asked to reconnect, to `to` after `wait`.
    Reconnect { to: SocketAddr, wait: Duration },
    /// Something went wrong; `mined` says whether the session got work.
    Failed { reason: String, mined: bool },
}

/// A request awaiting its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Configure,
    Subscribe,
    ExtranonceSubscribe,
    SuggestDifficulty,
    Authorize,
}

/// Runs connections one after another until cancelled.
pub(super) async fn run(
    config: SimMinerConfig,
    shared: Arc<MinerShared>,
    token: CancellationToken,
    work: watch::Sender<Option<Arc<Work>>>,
    mut found: mpsc::Receiver<Found>,
) {
    let mut addr = config.addr;
    let mut backoff = config.reconnect_backoff;
    let mut connection = 0u64;
    loop {
        let ended = match connect(addr, config.source).await {
            Ok(stream) => {
                connection += 1;
                let mut session = Session::new(
                    &config, &shared, &work, &mut found, &token, stream, addr, connection,
                );
                let ended = session.run().await;
                work.send_replace(None);
                ended
            }
            Err(e) => Ended::Failed {
                reason: format!("connect to {addr}: {e}"),
                mined: false,
            },
        };
        if shared.snapshot_connected() {
            shared.session_ended();
        }
        shared.update(|s| s.connected = false);
        let wait = match ended {
            Ended::Stopped => return,
            Ended::Reconnect { to, wait } => {
                addr = to;
                backoff = config.reconnect_backoff;
                wait
            }
            Ended::Failed { reason, mined } => {
                tracing::debug!(%reason, "sim miner: connection ended");
                shared.update(|s| s.last_error = Some(reason));
                if mined {
                    backoff = config.reconnect_backoff;
                }
                let wait = backoff;
                backoff = (backoff * 2).min(config.max_reconnect_wait);
                wait
            }
        };
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(wait.min(config.max_reconnect_wait)) => {}
        }
    }
}

async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    if !addr.ip().is_loopback() || source.is_some_and(|ip| !ip.is_loopback()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "simulated miners connect to and from loopback addresses only",
        ));
    }
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    // Bounded on both clocks: a paused test clock must not fail a connect
    // that loopback completes in real microseconds.
    let stream = crate::within(CONNECT_TIMEOUT, socket.connect(addr))
        .await
        .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

struct Session<'a> {
    config: &'a SimMinerConfig,
    shared: &'a MinerShared,
    work: &'a watch::Sender<Option<Arc<Work>>>,
    found: &'a mut mpsc::Receiver<Found>,
    token: &'a CancellationToken,
    lines: Framed<TcpStream, LineCodec>,
    addr: SocketAddr,
    connection: u64,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// Ids of submits awaiting an answer, oldest first (cpuminer reuses one).
    submits: VecDeque<u64>,
    extranonce1: Option<Vec<u8>>,
    extranonce2_size: usize,
    extranonce_subscribed: bool,
    granted_mask: Option<u32>,
    difficulty: Difficulty,
    /// Changes that apply from the next job.
    next_difficulty: Option<Difficulty>,
    next_extranonce: Option<(Vec<u8>, usize)>,
    next_mask: Option<u32>,
    block: u64,
    mined: bool,
}

type Step = Result<(), Ended>;

impl<'a> Session<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &'a SimMinerConfig,
        shared: &'a MinerShared,
        work: &'a watch::Sender<Option<Arc<Work>>>,
        found: &'a mut mpsc::Receiver<Found>,
        token: &'a CancellationToken,
        stream: TcpStream,
        addr: SocketAddr,
        connection: u64,
    ) -> Self {
        Session {
            config,
            shared,
            work,
            found,
            token,
            lines: Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH)),
            addr,
            connection,
            // Past cpuminer's fixed ids, should it ever send anything else.
            next_id: if config.profile == Profile::Cpuminer {
                5
            } else {
                1
            },
            pending: HashMap::new(),
            submits: VecDeque::new(),
            extranonce1: None,
            extranonce2_size: 0,
            extranonce_subscribed: false,
            granted_mask: None,
            difficulty: Difficulty::ONE,
            next_difficulty: None,
            next_extranonce: None,
            next_mask: None,
            block: 0,
            mined: false,
        }
    }

    fn profile(&self) -> Profile {
        self.config.profile
    }

    async fn run(&mut self) -> Ended {
        match self.serve().await {
            Ok(()) => Ended::Stopped,
            Err(ended) => ended,
        }
    }

    async fn serve(&mut self) -> Step {
        if self.profile().rolls_version() {
            let configure = Configure::version_rolling(ASIC_VERSION_MASK, 2);
            self.request(Pending::Configure, ClientMethod::Configure(configure))
                .await?;
        }
        let subscribe = ClientMethod::Subscribe {
            user_agent: Some(self.profile().user_agent().to_owned()),
            session_id: None,
        };
        self.request(Pending::Subscribe, subscribe).await?;
        loop {
            tokio::select! {
                biased;
                () = self.token.cancelled() => return Ok(()),
                line = self.lines.next() => match line {
                    None => return Err(self.failed("closed by the pool")),
                    Some(Err(e)) => return Err(self.failed(&e.to_string())),
                    Some(Ok(line)) => self.on_line(&line).await?,
                },
                Some(found) = self.found.recv() => self.on_found(found).await?,
            }
        }
    }

    fn failed(&self, reason: &str) -> Ended {
        Ended::Failed {
            reason: reason.to_owned(),
            mined: self.mined,
        }
    }

    /// Ends the connection if this miner is strict; otherwise goes on.
    fn unexpected(&self, what: &str) -> Step {
        tracing::debug!(what, "sim miner: unexpected line");
        if self.profile() == Profile::Strict {
            Err(self.failed(&format!("unexpected: {what}")))
        } else {
            Ok(())
        }
    }

    async fn on_line(&mut self, line: &str) -> Step {
        match Incoming::<ServerMethod>::from_line(line) {
            Ok(Incoming::Response(response)) => self.on_response(response).await,
            Ok(Incoming::Call { id, method }) => self.on_call(id, method).await,
            Err(e) => self.unexpected(&e.to_string()),
        }
    }

    async fn on_call(&mut self, id: Id, method: ServerMethod) -> Step {
        match method {
            ServerMethod::SetDifficulty(d) => self.next_difficulty = Some(d),
            ServerMethod::Notify(notify) => return self.on_notify(&notify),
            ServerMethod::SetExtranonce {
                extranonce1,
                extranonce2_size,
            } => {
                if self.profile() == Profile::Cpuminer || !self.extranonce_subscribed {
                    self.shared.update(|s| s.ignored_set_extranonce += 1);
                    return self.unexpected("mining.set_extranonce without subscribing");
                }
                self.next_extranonce = Some((extranonce1, extranonce2_size));
            }
            ServerMethod::SetVersionMask(mask) => {
                if self.profile().rolls_version() {
                    self.next_mask = Some(mask);
                }
            }
            ServerMethod::Reconnect {
                host,
                port,
                wait_secs,
            } => return self.on_reconnect(host, port, wait_secs).await,
            ServerMethod::ShowMessage(text) => {
                tracing::info!(message = %text, "sim miner: pool says");
            }
            ServerMethod::GetVersion => {
                if !id.is_null() {
                    let answer = Response::ok(id, self.profile().user_agent());
                    self.write(answer.to_line()).await?;
                }
            }
        }
        Ok(())
    }

    async fn on_reconnect(
        &mut self,
        host: Option<String>,
        port: Option<u16>,
        wait_secs: Option<u64>,
    ) -> Step {
        let port = port.unwrap_or(self.addr.port());
        let to = match host {
            None => Some(SocketAddr::new(self.addr.ip(), port)),
            Some(host) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback())),
        };
        let Some(to) = to else {
            // Fake work must not leave the machine: stay where we are.
            self.shared.update(|s| {
                s.last_error = Some("client.reconnect to a non-loopback host ignored".into())
            });
            return Ok(());
        };
        let wait = Duration::from_secs(wait_secs.unwrap_or(0));
        Err(Ended::Reconnect { to, wait })
    }

    async fn on_response(&mut self, response: Response) -> Step {
        let Some(id) = response.id.as_u64() else {
            return self.unexpected("an answer with a non-numeric id");
        };
        if let Some(kind) = self.pending.remove(&id) {
            return self.on_answer(kind, response).await;
        }
        let Some(at) = self.submits.iter().position(|s| *s == id) else {
            return self.unexpected("an answer to nothing");
        };
        self.submits.remove(at);
        match SubmitResult::from_response(&response) {
            Ok(SubmitResult::Accepted) => self.shared.update(|s| s.accepted += 1),
            Ok(SubmitResult::Rejected(error)) => self.shared.update(|s| {
                s.rejected += 1;
                *s.rejects_by_code.entry(error.code).or_default() += 1;
                *s.rejects_by_reason.entry(error.message).or_default() += 1;
            }),
            Err(e) => {
                self.shared.update(|s| s.rejected += 1);
                return self.unexpected(&format!("submit answer: {e}"));
            }
        }
        Ok(())
    }

    async fn on_answer(&mut self, kind: Pending, response: Response) -> Step {
        match kind {
            Pending::Configure => {
                let granted = ConfigureResult::from_result(&response.result).unwrap_or_default();
                self.granted_mask = granted.version_rolling;
                self.shared
                    .update(|s| s.version_mask = granted.version_rolling);
            }
            Pending::Subscribe => {
                let subscribed = match SubscribeResult::from_result(&response.result) {
                    Ok(result) if response.error.is_none() => result,
                    _ => return Err(self.failed("mining.subscribe refused")),
                };
                return self.on_subscribed(subscribed).await;
            }
            Pending::ExtranonceSubscribe => {
                self.extranonce_subscribed =
                    SubmitResult::from_response(&response).is_ok_and(|r| r.is_accepted());
            }
            Pending::SuggestDifficulty => {}
            Pending::Authorize => {
                if !SubmitResult::from_response(&response).is_ok_and(|r| r.is_accepted()) {
                    return Err(self.failed("mining.authorize refused"));
                }
            }
        }
        Ok(())
    }

    /// Sends what follows subscribe, as the profile does: extranonce
    /// subscription and suggested difficulty first, then authorize.
    async fn on_subscribed(&mut self, subscribed: SubscribeResult) -> Step {
        let reconnect = self.connection > 1;
        self.shared.update(|s| {
            s.connected = true;
            s.addr = Some(self.addr);
            s.extranonce1 = Some(hex::encode(&subscribed.extranonce1));
            s.extranonce2_size = Some(subscribed.extranonce2_size);
            s.reconnects += u64::from(reconnect);
        });
        self.shared.session_subscribed();
        self.extranonce1 = Some(subscribed.extranonce1);
        self.extranonce2_size = subscribed.extranonce2_size;
        let mut calls = Vec::new();
        if self.profile().subscribes_extranonce() {
            calls.push((
                Pending::ExtranonceSubscribe,
                ClientMethod::ExtranonceSubscribe,
            ));
        }
        if let (Profile::Asic, Some(d)) = (self.profile(), self.config.suggest_difficulty) {
            calls.push((
                Pending::SuggestDifficulty,
                ClientMethod::SuggestDifficulty(d),
            ));
        }
        calls.push((
            Pending::Authorize,
            ClientMethod::Authorize {
                user: self.config.user.clone(),
                password: Some(self.config.password.clone()),
            },
        ));
        for (kind, method) in calls {
            self.request(kind, method).await?;
        }
        Ok(())
    }

    fn on_notify(&mut self, notify: &Notify) -> Step {
        self.shared.update(|s| s.jobs_received += 1);
        if let Some((extranonce1, size)) = self.next_extranonce.take() {
            self.shared.update(|s| {
                s.extranonce1 = Some(hex::encode(&extranonce1));
                s.extranonce2_size = Some(size);
            });
            self.extranonce1 = Some(extranonce1);
            self.extranonce2_size = size;
        }
        if let Some(d) = self.next_difficulty.take() {
            self.difficulty = d;
        }
        if let Some(mask) = self.next_mask.take() {
            self.granted_mask = Some(mask);
            self.shared.update(|s| s.version_mask = Some(mask));
        }
        let Some(extranonce1) = self.extranonce1.clone() else {
            return self.unexpected("mining.notify before subscribe");
        };
        let job = match Job::from_notify(notify, extranonce1.len() + self.extranonce2_size) {
            Ok(job) => job,
            Err(e) => return self.unexpected(&format!("unusable job: {e}")),
        };
        if notify.clean_jobs {
            self.block += 1;
        }
        self.shared.update(|s| {
            s.clean_jobs_received += u64::from(notify.clean_jobs);
            s.prevhash = Some(hex::encode(notify.prevhash));
        });
        let roll_mask = match (
            self.profile().rolls_version(),
            self.config.rolls_outside_mask,
        ) {
            (false, _) => None,
            (true, true) => Some(ASIC_VERSION_MASK),
            (true, false) => self.granted_mask,
        };
        let work = Work {
            connection: self.connection,
            block: self.block,
            job_id: notify.job_id.clone(),
            job,
            extranonce1,
            extranonce2_size: self.extranonce2_size,
            target: self.difficulty.to_target(),
            roll_mask,
            ntime: notify.ntime,
        };
        self.mined = true;
        self.shared
            .update(|s| s.difficulty = Some(self.difficulty.as_f64()));
        self.work.send_replace(Some(Arc::new(work)));
        Ok(())
    }

    async fn on_found(&mut self, found: Found) -> Step {
        let work = &found.work;
        if work.connection != self.connection {
            return Ok(());
        }
        if work.block != self.block {
            // cgminer drops work for a replaced block rather than send it.
            self.shared.update(|s| s.stale_dropped += 1);
            return Ok(());
        }
        let share = &found.submission;
        let submit = ClientMethod::Submit(Submit {
            worker: self.config.user.clone(),
            job_id: work.job_id.clone(),
            extranonce2: hex::encode(share.extranonce2()),
            ntime: format!("{:08x}", share.ntime),
            nonce: format!("{:08x}", share.nonce),
            version_bits: share.version_bits.map(|bits| format!("{bits:08x}")),
        });
        let id = self.take_id(None);
        self.submits.push_back(id);
        self.shared.update(|s| s.submitted += 1);
        self.write(submit.to_line(Id::from(id))).await
    }

    /// Returns the id of the next request: cpuminer's fixed ones (1 for
    /// subscribe, 2 for authorize, 4 for every submit), or the next number.
    fn take_id(&mut self, kind: Option<Pending>) -> u64 {
        if self.profile() == Profile::Cpuminer {
            match kind {
                Some(Pending::Subscribe) => return 1,
                Some(Pending::Authorize) => return 2,
                None => return CPUMINER_SUBMIT_ID,
                Some(_) => {}
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn request(&mut self, kind: Pending, method: ClientMethod) -> Step {
        let id = self.take_id(Some(kind));
        self.pending.insert(id, kind);
        self.write(method.to_line(Id::from(id))).await
    }

    async fn write(&mut self, line: String) -> Step {
        let sent = tokio::select! {
            () = self.token.cancelled() => return Err(Ended::Stopped),
            sent = self.lines.send(line) => sent,
        };
        sent.map_err(|e: CodecError| self.failed(&e.to_string()))
    }
}
