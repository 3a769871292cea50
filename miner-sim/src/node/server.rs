//! [`TestNode`]: Bitcoin Core's JSON-RPC in front of a [`TestChain`], on
//! loopback, for the proxy's own-node pool to mine on.
//!
//! It serves `getblockchaininfo`, `getbestblockhash`, `getblocktemplate`
//! (segwit rules required, as Core does) and `submitblock` (every block
//! checked by the chain with the `bitcoin` crate; `null` when accepted,
//! Core's reason otherwise), over HTTP/1.1 with basic auth, one request per
//! connection. The tip moves on demand ([`TestNode::advance`]) or on a
//! timer, as if another miner had found a block.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bitcoin::{Network, ScriptBuf};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{REGTEST_BITS, TestChain};

/// Largest request read (a block of a few MiB of hex).
const MAX_REQUEST: usize = 16 << 20;

/// How a [`TestNode`] is set up.
#[derive(Debug, Clone)]
pub struct TestNodeConfig {
    /// The chain it says it runs.
    pub network: Network,
    /// The script every block must pay the whole coinbase value to.
    pub payout: ScriptBuf,
    /// `rpcuser`.
    pub user: String,
    /// `rpcpassword`.
    pub password: String,
    /// Compact network target.
    pub bits: u32,
    /// Height of the tip at start.
    pub height: u64,
    /// Transactions in the first template's mempool.
    pub transactions: usize,
    /// Moves the tip this often, as another miner would (`None`: only on
    /// demand).
    pub advance_every: Option<Duration>,
}

impl TestNodeConfig {
    /// Returns a regtest node at height 200 paying `payout`, logged in to
    /// as `hashsplit` / `hashsplit`, at regtest's target.
    pub fn regtest(payout: ScriptBuf) -> Self {
        TestNodeConfig {
            network: Network::Regtest,
            payout,
            user: "hashsplit".to_owned(),
            password: "hashsplit".to_owned(),
            bits: REGTEST_BITS,
            height: 200,
            transactions: 6,
            advance_every: None,
        }
    }
}

/// What the server task and the test share.
#[derive(Debug)]
struct Shared {
    chain: Mutex<TestChain>,
    /// The `Authorization` header value a request must carry.
    authorization: String,
    calls: AtomicU64,
    unauthorized: AtomicU64,
    submitted: AtomicU64,
}

/// A running test node.
#[derive(Debug)]
pub struct TestNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl TestNode {
    /// Starts a node on `listen` (a loopback address; port 0 picks one).
    pub async fn start(config: TestNodeConfig, listen: SocketAddr) -> std::io::Result<TestNode> {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{listen} is not a loopback address: the test node serves loopback only"),
            ));
        }
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let chain = TestChain::new(
            config.network,
            config.payout.clone(),
            config.height,
            config.transactions,
        )
        .with_bits(config.bits);
        let login = format!("{}:{}", config.user, config.password);
        let shared = Arc::new(Shared {
            chain: Mutex::new(chain),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(login)
            ),
            calls: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            submitted: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            Arc::clone(&shared),
            stop.clone(),
            config.advance_every,
        ));
        Ok(TestNode {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// Returns the address of its JSON-RPC.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns its chain (do not hold it across an await).
    pub fn chain(&self) -> MutexGuard<'_, TestChain> {
        self.shared.chain.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the tip as if another miner had found a block.
    pub fn advance(&self) {
        self.chain().advance();
    }

    /// Returns how many requests it answered.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    /// Returns how many requests it refused for a wrong login.
    pub fn unauthorized(&self) -> u64 {
        self.shared.unauthorized.load(Ordering::Relaxed)
    }

    /// Returns how many blocks were submitted to it.
    pub fn submitted(&self) -> u64 {
        self.shared.submitted.load(Ordering::Relaxed)
    }

    /// Stops serving; the port is closed when this returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    advance_every: Option<Duration>,
) {
    let mut advance = advance_every
        .map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            Some(_) = async {
                match &mut advance {
                    Some(timer) => Some(timer.tick().await),
                    None => None,
                }
            } => {
                shared.chain.lock().unwrap_or_else(|e| e.into_inner()).advance();
            }
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        _ = answer(stream, &shared) => {}
                    }
                });
            }
        }
    }
}

/// Reads one request and answers it.
async fn answer(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some((authorization, body)) = read_request(&mut stream).await? else {
        return respond(&mut stream, 400, "").await;
    };
    if authorization.as_deref() != Some(shared.authorization.as_str()) {
        shared.unauthorized.fetch_add(1, Ordering::Relaxed);
        return respond(&mut stream, 401, "").await;
    }
    shared.calls.fetch_add(1, Ordering::Relaxed);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let params = request.get("params").cloned().unwrap_or(json!([]));
    let (status, reply) = match call(shared, method, &params) {
        Ok(result) => (200, json!({"result": result, "error": null, "id": id})),
        Err((code, message)) => {
            let status = if code == -32601 { 404 } else { 500 };
            (
                status,
                json!({"result": null, "error": {"code": code, "message": message}, "id": id}),
            )
        }
    };
    respond(&mut stream, status, &reply.to_string()).await
}

/// Runs one JSON-RPC method against the chain.
fn call(shared: &Shared, method: &str, params: &Value) -> Result<Value, (i64, String)> {
    let mut chain = shared.chain.lock().unwrap_or_else(|e| e.into_inner());
    match method {
        "getblockchaininfo" => Ok(chain.blockchain_info()),
        "getbestblockhash" => Ok(json!(chain.best_block_hash().to_string())),
        "getblocktemplate" => {
            let segwit = params
                .get(0)
                .and_then(|request| request.get("rules"))
                .and_then(Value::as_array)
                .is_some_and(|rules| rules.iter().any(|rule| rule == "segwit"));
            if !segwit {
                return Err((
                    -8,
                    "getblocktemplate must be called with the segwit rule set (call with {\"rules\": [\"segwit\"]})"
                        .to_owned(),
                ));
            }
            Ok(chain.template())
        }
        "submitblock" => {
            let Some(hex) = params.get(0).and_then(Value::as_str) else {
                return Err((-1, "submitblock \"hexdata\"".to_owned()));
            };
            shared.submitted.fetch_add(1, Ordering::Relaxed);
            match chain.submit(hex) {
                Ok(_) => Ok(Value::Null),
                Err(super::Rejection::Decode) => Err((-22, "Block decode failed".to_owned())),
                Err(rejection) => Ok(json!(rejection.to_string())),
            }
        }
        _ => Err((-32601, "Method not found".to_owned())),
    }
}

/// Reads a request's `Authorization` header and body; `None` if it is not
/// a readable HTTP request.
async fn read_request(
    stream: &mut TcpStream,
) -> std::io::Result<Option<(Option<String>, Vec<u8>)>> {
    let mut buffer = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 << 10 || stream.read_buf(&mut buffer).await? == 0 {
            return Ok(None);
        }
    };
    let Ok(head) = std::str::from_utf8(&buffer[..head_end]) else {
        return Ok(None);
    };
    let mut authorization = None;
    let mut length = 0usize;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_owned());
        } else if name.trim().eq_ignore_ascii_case("content-length") {
            match value.trim().parse() {
                Ok(n) if n <= MAX_REQUEST => length = n,
                _ => return Ok(None),
            }
        }
    }
    let mut body = buffer.split_off(head_end + 4);
    while body.len() < length {
        if stream.read_buf(&mut body).await? == 0 {
            return Ok(None);
        }
    }
    body.truncate(length);
    Ok(Some((authorization, body)))
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
