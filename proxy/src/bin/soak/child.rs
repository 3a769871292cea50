//! The proxy under test: a `hashsplit run` child process, what its log
//! says, what `/proc` says about it, and its HTTP endpoints read over a
//! bare TCP connection (one request per connection, as the proxy serves).

use std::fs::File;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The longest an HTTP exchange with the proxy may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The proxy's log is copied to a file up to this size, then only counted.
const LOG_LIMIT_BYTES: u64 = 200 * 1024 * 1024;

/// What the log reader found worth failing over.
#[derive(Debug, Default)]
pub struct LogCounts {
    /// Lines at `ERROR`.
    pub errors: AtomicU64,
    /// Lines that say a thread panicked.
    pub panics: AtomicU64,
}

/// A running `hashsplit run` and the addresses it listens on.
pub struct Proxy {
    child: Child,
    /// Where miners connect.
    pub miners: SocketAddr,
    /// Where `/metrics` and the API are served.
    pub http: SocketAddr,
    /// Counts of bad log lines, kept up to date by the reader thread.
    pub log: Arc<LogCounts>,
    /// Where the whole log is copied.
    pub log_path: PathBuf,
}

impl Proxy {
    /// Starts `hashsplit run --config config` from the binary next to this
    /// one and waits until it says where it listens.
    pub fn start(config: &Path, log_path: PathBuf) -> anyhow::Result<Proxy> {
        let binary = std::env::current_exe()?.with_file_name("hashsplit");
        let mut child = Command::new(&binary)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn,hashsplit=info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("running {} (build it first)", binary.display()))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log = Arc::new(LogCounts::default());
        let (tx, rx) = mpsc::channel();
        let file = File::create(&log_path)
            .with_context(|| format!("creating the proxy's log {}", log_path.display()))?;
        let counts = Arc::clone(&log);
        std::thread::spawn(move || read_log(stderr, file, &counts, &tx));
        let (mut miners, mut http) = (None, None);
        while miners.is_none() || http.is_none() {
            let line = match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    bail!("hashsplit did not say where it listens within 20 s");
                }
            };
            let addr = line
                .split("listen=")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|addr| addr.parse::<SocketAddr>().ok());
            if line.contains("listening for miners") {
                miners = addr;
            } else if line.contains("serving HTTP") {
                http = addr;
            }
        }
        Ok(Proxy {
            child,
            miners: miners.expect("set above"),
            http: http.expect("set above"),
            log,
            log_path,
        })
    }

    /// Returns the proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Returns how the proxy exited, if it has.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends a signal by name (`HUP`, `INT`) with kill(1): the standard
    /// library has no way to, and the workspace forbids unsafe code.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -{name} {} failed: {status}", self.pid());
        }
        Ok(())
    }

    /// Stops the proxy with SIGINT and returns whether it exited 0 within
    /// `limit`; kills it otherwise.
    pub async fn stop(&mut self, limit: Duration) -> bool {
        if self.signal("INT").is_err() {
            let _ = self.child.kill();
            return false;
        }
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return status.success();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// Returns the proxy's resident memory in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("reading /proc/PID/status (the soak needs Linux)")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// Returns how many file descriptors the proxy has open.
    pub fn open_fds(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .context("reading /proc/PID/fd")?
            .count())
    }

    /// Scrapes `/metrics`.
    pub async fn scrape(&self) -> anyhow::Result<Exposition> {
        let (status, body) = self.request("GET", "/metrics", None, "").await?;
        if status != 200 {
            bail!("/metrics answered {status}");
        }
        Ok(Exposition::parse(&body))
    }

    /// Sends one HTTP request and returns the status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(u16, String)> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.http).await?;
            let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
                self.http,
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            anyhow::Ok(answer)
        };
        let answer = tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {path}: no answer within {HTTP_TIMEOUT:?}"))??;
        let text = String::from_utf8_lossy(&answer);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("{method} {path}: no HTTP status line"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, body)| unchunk(body));
        Ok((status, body))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Copies the proxy's log to `file` (up to [`LOG_LIMIT_BYTES`]), counts
/// errors and panics, and passes lines on until the start-up lines were
/// read (then the receiver is gone and sends just fail).
fn read_log(
    stderr: std::process::ChildStderr,
    mut file: File,
    counts: &LogCounts,
    tx: &mpsc::Sender<String>,
) {
    let mut written = 0u64;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        if line.contains(" ERROR ") {
            counts.errors.fetch_add(1, Ordering::Relaxed);
        }
        if line.contains("panicked") {
            counts.panics.fetch_add(1, Ordering::Relaxed);
            eprintln!("soak: the proxy panicked: {line}");
        }
        if written < LOG_LIMIT_BYTES {
            written += line.len() as u64 + 1;
            let _ = writeln!(file, "{line}");
        }
        let _ = tx.send(line);
    }
}

/// Undoes chunked transfer encoding if the body uses it (hyper chunks a
/// body of unknown length); a plain body comes back as it is.
fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 {
            return out;
        }
        let Some(chunk) = after.get(..size) else {
            return body.to_owned();
        };
        out.push_str(chunk);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// One sample: the metric's name, its labels and its value.
type Sample = (String, Vec<(String, String)>, f64);

/// A parsed Prometheus text exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    rows: Vec<Sample>,
}

impl Exposition {
    /// Parses the text format; lines it cannot read are skipped.
    pub fn parse(text: &str) -> Exposition {
        let mut rows = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                None => (series, Vec::new()),
            };
            rows.push((name.to_owned(), labels, value));
        }
        Exposition { rows }
    }

    /// Returns the sum of `name`'s samples that carry every label given.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.rows
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Returns each value of `label` on `name`'s samples with its sample.
    pub fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        self.rows
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, labels, value)| {
                labels
                    .iter()
                    .find(|(k, _)| k == label)
                    .map(|(_, v)| (v.clone(), *value))
            })
            .collect()
    }

    /// Returns whether any sample of `name` was exported.
    pub fn has(&self, name: &str) -> bool {
        self.rows.iter().any(|(n, _, _)| n == name)
    }

    /// Returns submitted − settled − in flight: zero when every share is
    /// accounted for.
    pub fn unaccounted(&self) -> f64 {
        self.sum("hashsplit_shares_submitted_total", &[])
            - self.sum("hashsplit_shares_total", &[])
            - self.sum("hashsplit_shares_in_flight", &[])
    }
}

/// Parses `a="x",b="y"` (our label values hold no quotes or commas).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split("\",")
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim().to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exposition_sums_by_label_and_balances() {
        let text = "# HELP x y\n\
            hashsplit_shares_submitted_total{pool=\"a\"} 5\n\
            hashsplit_shares_submitted_total{pool=\"none\"} 2\n\
            hashsplit_shares_total{pool=\"a\",result=\"accepted\",reason=\"pool-accepted\"} 3\n\
            hashsplit_shares_total{pool=\"none\",result=\"rejected\",reason=\"malformed\"} 2\n\
            hashsplit_shares_in_flight{pool=\"a\"} 2\n\
            hashsplit_tasks 17\n";
        let e = Exposition::parse(text);
        assert_eq!(
            e.sum("hashsplit_shares_total", &[("result", "accepted")]),
            3.0
        );
        assert_eq!(e.sum("hashsplit_shares_submitted_total", &[]), 7.0);
        assert_eq!(e.unaccounted(), 0.0);
        assert_eq!(e.sum("hashsplit_tasks", &[]), 17.0);
        assert_eq!(
            e.by_label("hashsplit_shares_submitted_total", "pool"),
            vec![("a".to_owned(), 5.0), ("none".to_owned(), 2.0)]
        );
    }

    #[test]
    fn a_chunked_body_is_joined() {
        assert_eq!(
            unchunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(unchunk("plain"), "plain");
    }
}
