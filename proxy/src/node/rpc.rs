//! A JSON-RPC client for Bitcoin Core: one HTTP/1.1 `POST` per call over a
//! fresh TCP connection, with basic auth from a user and password or from
//! the node's cookie file.
//!
//! Hand-written rather than hyper's client: the proxy asks a few small
//! questions a second of one trusted local node, so a connection per call
//! (`Connection: close`, the body read to its `Content-Length` or to the
//! end) is all it takes, and it keeps hyper's client features out of the
//! build.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest answer read: a full block template is a few MiB of hex.
const MAX_ANSWER: usize = 64 << 20;

/// How the node is logged in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcAuth {
    /// `rpcuser` / `rpcpassword` (or `rpcauth`).
    Password {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// The `.cookie` file the node writes at start (`__cookie__:...`),
    /// read at every call so a restarted node's new cookie is picked up.
    Cookie(PathBuf),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The TCP connection could not be made or broke.
    #[error("node {addr}: {source}")]
    Io {
        /// Where the node was.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// No whole answer within the call's time.
    #[error("node {addr}: no answer to {method} within {secs}s")]
    Timeout {
        /// Where the node was.
        addr: String,
        /// The call.
        method: String,
        /// The limit.
        secs: u64,
    },
    /// The cookie file could not be read.
    #[error("cookie file {path}: {source}")]
    Cookie {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// HTTP 401/403: the user, password or cookie is wrong.
    #[error("node {addr} refused the login (HTTP {status}): check user/password or cookie_file")]
    Unauthorized {
        /// Where the node was.
        addr: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer is not HTTP with a JSON-RPC body.
    #[error("node {addr}: unreadable answer to {method}: {reason}")]
    Malformed {
        /// Where the node was.
        addr: String,
        /// The call.
        method: String,
        /// What was wrong.
        reason: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("node refused {method}: {message} (code {code})")]
    Rpc {
        /// The call.
        method: String,
        /// Core's error code (e.g. -10: still in initial block download).
        code: i64,
        /// Core's message.
        message: String,
    },
}

/// A client for one node.
#[derive(Debug, Clone)]
pub struct RpcClient {
    addr: String,
    auth: RpcAuth,
    limit: Duration,
}

impl RpcClient {
    /// Returns a client for the node at `host:port`; every call must be
    /// answered within `limit`.
    pub fn new(host: &str, port: u16, auth: RpcAuth, limit: Duration) -> Self {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        RpcClient { addr, auth, limit }
    }

    /// Returns the node's `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Calls `method` with `params` and returns its result.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let login = self.login()?;
        let body = json!({"jsonrpc": "1.0", "id": "hashsplit", "method": method, "params": params})
            .to_string();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            base64::engine::general_purpose::STANDARD.encode(login),
            body.len()
        );
        let exchange = async {
            let mut stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            stream.write_all(request.as_bytes()).await?;
            read_answer(&mut stream).await
        };
        let answer = match timeout(self.limit, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(source)) => {
                return Err(RpcError::Io {
                    addr: self.addr.clone(),
                    source,
                });
            }
            Err(_) => {
                return Err(RpcError::Timeout {
                    addr: self.addr.clone(),
                    method: method.to_owned(),
                    secs: self.limit.as_secs(),
                });
            }
        };
        self.result(method, answer)
    }

    /// Returns `user:password` for basic auth.
    fn login(&self) -> Result<String, RpcError> {
        match &self.auth {
            RpcAuth::Password { user, password } => Ok(format!("{user}:{password}")),
            // A local file of a hundred bytes: read in place rather than
            // with tokio's fs feature for this one read.
            RpcAuth::Cookie(path) => std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(|source| RpcError::Cookie {
                    path: path.clone(),
                    source,
                }),
        }
    }

    /// Reads the JSON-RPC answer out of an HTTP answer: Core sends RPC
    /// errors with HTTP 500 (or 404 for an unknown method) and a JSON body,
    /// so the body decides unless the login was refused.
    fn result(&self, method: &str, answer: Answer) -> Result<Value, RpcError> {
        let malformed = |reason: String| RpcError::Malformed {
            addr: self.addr.clone(),
            method: method.to_owned(),
            reason,
        };
        if matches!(answer.status, 401 | 403) {
            return Err(RpcError::Unauthorized {
                addr: self.addr.clone(),
                status: answer.status,
            });
        }
        let mut body: Value = serde_json::from_slice(&answer.body).map_err(|e| {
            malformed(format!(
                "HTTP {} with a body that is not JSON ({e})",
                answer.status
            ))
        })?;
        let error = body.get("error").filter(|e| !e.is_null());
        if let Some(error) = error {
            return Err(RpcError::Rpc {
                method: method.to_owned(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .chars()
                    .take(200)
                    .collect(),
            });
        }
        match body.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(malformed(format!(
                "HTTP {} without a result",
                answer.status
            ))),
        }
    }
}

/// An HTTP answer: its status and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 answer: the head, then the body to its
/// `Content-Length` or, without one, to the end of the connection.
async fn read_answer(stream: &mut TcpStream) -> std::io::Result<Answer> {
    let invalid = |reason: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, reason);
    let mut buffer = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > 64 << 10 {
            return Err(invalid("HTTP head over 64 KiB"));
        }
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(invalid("connection closed before the HTTP head ended"));
        }
    };
    let head =
        std::str::from_utf8(&buffer[..head_end]).map_err(|_| invalid("HTTP head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| invalid("no HTTP status line"))?;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .trim()
                    .parse::<usize>()
                    .map_err(|_| invalid("bad Content-Length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.trim().eq_ignore_ascii_case("chunked")
        {
            return Err(invalid("chunked answers are not supported"));
        }
    }
    if length.is_some_and(|n| n > MAX_ANSWER) {
        return Err(invalid("answer over 64 MiB"));
    }
    let mut body = buffer.split_off(head_end + 4);
    match length {
        Some(length) => {
            while body.len() < length {
                if stream.read_buf(&mut body).await? == 0 {
                    return Err(invalid("connection closed inside the body"));
                }
            }
            body.truncate(length);
        }
        None => loop {
            if body.len() > MAX_ANSWER {
                return Err(invalid("answer over 64 MiB"));
            }
            if stream.read_buf(&mut body).await? == 0 {
                break;
            }
        },
    }
    Ok(Answer { status, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bitcoin::ScriptBuf;
    use miner_sim::node::{TestNode, TestNodeConfig};

    use super::*;

    async fn node(user: &str, password: &str) -> TestNode {
        let config = TestNodeConfig {
            user: user.to_owned(),
            password: password.to_owned(),
            ..TestNodeConfig::regtest(ScriptBuf::new())
        };
        TestNode::start(config, SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("test node starts")
    }

    fn client(node: &TestNode, auth: RpcAuth) -> RpcClient {
        let addr = node.addr();
        RpcClient::new(
            &addr.ip().to_string(),
            addr.port(),
            auth,
            Duration::from_secs(5),
        )
    }

    fn password(user: &str, password: &str) -> RpcAuth {
        RpcAuth::Password {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    #[tokio::test]
    async fn calls_are_answered_with_their_result_or_the_nodes_error() {
        let node = node("u", "p").await;
        let rpc = client(&node, password("u", "p"));
        let tip = rpc.call("getbestblockhash", json!([])).await.unwrap();
        assert_eq!(tip, json!(node.chain().best_block_hash().to_string()));
        match rpc.call("getblocktemplate", json!([{}])).await {
            Err(RpcError::Rpc {
                code: -8, message, ..
            }) => {
                assert!(message.contains("segwit"), "{message}");
            }
            other => panic!("expected Core's -8, got {other:?}"),
        }
        match rpc.call("stop", json!([])).await {
            Err(RpcError::Rpc { code: -32601, .. }) => {}
            other => panic!("expected method not found, got {other:?}"),
        }
        node.shutdown().await;
    }

    #[tokio::test]
    async fn a_wrong_login_a_cookie_file_and_a_closed_port() {
        let node = node("__cookie__", "s3cret").await;
        let wrong = client(&node, password("__cookie__", "guess"));
        assert!(matches!(
            wrong.call("getbestblockhash", json!([])).await,
            Err(RpcError::Unauthorized { status: 401, .. })
        ));
        let dir = std::env::temp_dir().join(format!("hashsplit-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cookie = dir.join(".cookie");
        std::fs::write(&cookie, "__cookie__:s3cret").unwrap();
        let by_cookie = client(&node, RpcAuth::Cookie(cookie.clone()));
        assert!(by_cookie.call("getblockchaininfo", json!([])).await.is_ok());
        std::fs::remove_dir_all(&dir).ok();
        assert!(matches!(
            by_cookie.call("getblockchaininfo", json!([])).await,
            Err(RpcError::Cookie { .. })
        ));
        let addr = node.addr();
        node.shutdown().await;
        let closed = RpcClient::new(
            &addr.ip().to_string(),
            addr.port(),
            password("u", "p"),
            Duration::from_secs(5),
        );
        assert!(matches!(
            closed.call("getbestblockhash", json!([])).await,
            Err(RpcError::Io { .. })
        ));
    }
}
