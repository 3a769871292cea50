//! A farm behind a real HAProxy: simulated pools, `hashsplit run`
//! instances as processes and HAProxy in front of them, all configured from
//! the files in `examples/haproxy/` with their ports, paths and windows
//! replaced (each replacement must match, so the example and the tests
//! cannot drift apart). Miners connect only to HAProxy.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use hashsplit_stratum::Difficulty;
use miner_sim::{MinerStats, PoolStats, Profile, SimMiner, SimMinerConfig, SimPool, SimPoolConfig};

/// The pools of the example, in its order, and their caps.
pub const POOLS: [(&str, f64); 3] = [("big-pool", 0.4), ("mid-pool", 0.5), ("small-pool", 0.5)];
/// The example's targets with every pool up (weights 3:1:1, big-pool
/// capped at 0.4).
pub const TARGETS: [f64; 3] = [0.4, 0.3, 0.3];
/// The pools' share difficulty, also the miners' lowest: a power of two
/// (2^-17), as vardiff's difficulties are, so the miners mine at exactly
/// the pools' difficulty and every share they find is forwarded.
const POOL_DIFFICULTY: f64 = 1.0 / 131_072.0;
/// How long a test waits for anything a farm does.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// What differs between farms.
pub struct FarmOptions {
    /// `[server] max_connections_per_ip` of every instance.
    pub max_per_ip: u32,
    /// More `(example text, replacement)` pairs for the instance files.
    pub instance_lines: Vec<(&'static str, String)>,
}

/// One `hashsplit run` process.
pub struct Instance {
    pub name: String,
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Pools, instances and HAProxy.
pub struct Farm {
    pub pools: Vec<SimPool>,
    pub instances: Vec<Instance>,
    /// HAProxy's frontend: where miners connect.
    pub addr: SocketAddr,
    haproxy: Child,
    socket: PathBuf,
    dir: PathBuf,
}

/// Returns the HAProxy binary, or `None` (and says so) when it is not
/// installed and `HASHSPLIT_REQUIRE_HAPROXY` is unset; CI sets it, so there
/// the test fails rather than skips.
pub fn haproxy_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("HASHSPLIT_REQUIRE_HAPROXY").is_none(),
            "haproxy is not installed (apt-get install haproxy)"
        );
        eprintln!("SKIPPED: haproxy is not installed (apt-get install haproxy)");
    }
    found
}

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/haproxy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `from` (which must occur exactly once) with `to`.
fn replace(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the example no longer has exactly one {from:?}"
    );
    text.replacen(from, to, 1)
}

/// Returns a port free at the time of asking. The processes under test
/// bind their own ports, so this is the one place a race is possible; on
/// loopback with the kernel's ephemeral-port rotation it does not occur in
/// practice.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr")
}

/// Pools at a low difficulty, so a short run has many shares to measure.
fn busy_pool() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: Difficulty::try_new(POOL_DIFFICULTY).unwrap(),
        job_interval: Duration::from_secs(2),
        ..SimPoolConfig::default()
    }
}

impl Farm {
    /// Starts the example's farm: three pools, three instances (each
    /// ready), then HAProxy, and waits until HAProxy sees every instance
    /// up. Returns `None` when HAProxy is not installed (see
    /// [`haproxy_binary`]).
    pub async fn start(options: FarmOptions) -> Option<Farm> {
        let haproxy = haproxy_binary()?;
        let dir = std::env::temp_dir().join(format!(
            "hashsplit-farm-{}-{}",
            std::process::id(),
            free_port().port()
        ));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let mut pools = Vec::new();
        for _ in POOLS {
            pools.push(SimPool::start(busy_pool()).await.expect("sim pool starts"));
        }
        let mut instances = Vec::new();
        for n in 1..=3 {
            let (listen, metrics) = (free_port(), free_port());
            let mut text = example(&format!("hs{n}.toml"));
            for (from, to) in [
                (
                    format!("listen = \"127.0.0.1:340{n}\""),
                    format!("listen = \"{listen}\""),
                ),
                (
                    format!("listen = \"127.0.0.1:920{n}\""),
                    format!("listen = \"{metrics}\""),
                ),
                (
                    "max_connections_per_ip = 64".to_owned(),
                    format!("max_connections_per_ip = {}", options.max_per_ip),
                ),
                // Short windows, so a test sees several of them.
                ("window = \"10m\"".to_owned(), "window = \"20s\"".to_owned()),
                (
                    "min_dwell = \"30s\"".to_owned(),
                    "min_dwell = \"2s\"".to_owned(),
                ),
                (
                    "rebalance_every = \"5s\"".to_owned(),
                    "rebalance_every = \"1s\"".to_owned(),
                ),
            ] {
                text = replace(&text, &from, &to);
            }
            for ((name, _), pool) in POOLS.iter().zip(&pools) {
                text = replace(
                    &text,
                    &format!("stratum+tcp://{name}.example:3333"),
                    &format!("stratum+tcp://{}", pool.addr()),
                );
            }
            for (from, to) in &options.instance_lines {
                text = replace(&text, from, to);
            }
            // Miners at the pools' difficulty, so every share reaches a pool
            // and the pools' counts weigh miners by hashrate.
            text.push_str(&format!(
                "\n[downstream]\nmin_difficulty = {POOL_DIFFICULTY}\n"
            ));
            let config = dir.join(format!("hs{n}.toml"));
            std::fs::write(&config, text).expect("instance config written");
            let mut instance = Instance {
                name: format!("hs{n}"),
                listen,
                metrics,
                log: dir.join(format!("hs{n}.log")),
                config,
                child: None,
            };
            instance.start();
            instances.push(instance);
        }
        for instance in &instances {
            assert!(
                eventually_sync(PATIENCE, || instance.ready()).await,
                "{} became ready",
                instance.name
            );
        }

        let addr = free_port();
        let socket = dir.join("haproxy.sock");
        let mut cfg = example("haproxy.cfg");
        cfg = replace(
            &cfg,
            "/run/haproxy/hashsplit.sock",
            socket.to_str().expect("utf-8 path"),
        );
        cfg = replace(&cfg, "bind :3333", &format!("bind {addr}"));
        for (i, instance) in instances.iter().enumerate() {
            let n = i + 1;
            cfg = replace(
                &cfg,
                &format!("127.0.0.1:340{n} port 920{n}"),
                &format!("{} port {}", instance.listen, instance.metrics.port()),
            );
        }
        let cfg_path = dir.join("haproxy.cfg");
        std::fs::write(&cfg_path, cfg).expect("haproxy.cfg written");
        let haproxy_log = std::fs::File::create(dir.join("haproxy.log")).expect("log file");
        let haproxy = Command::new(haproxy)
            .args(["-db", "-f", cfg_path.to_str().expect("utf-8 path")])
            .stdout(haproxy_log.try_clone().expect("log file"))
            .stderr(haproxy_log)
            .spawn()
            .expect("haproxy starts");
        let farm = Farm {
            pools,
            instances,
            addr,
            haproxy,
            socket,
            dir,
        };
        for instance in &farm.instances {
            farm.wait_status(&instance.name, "UP").await;
        }
        Some(farm)
    }

    /// Starts a miner connecting to HAProxy from `source`.
    pub fn miner(&self, name: &str, source: IpAddr, hashrate: f64) -> SimMiner {
        let mut config = SimMinerConfig::new(self.addr, Profile::Asic, name);
        config.hashrate = Some(hashrate);
        config.source = Some(source);
        SimMiner::start(config)
    }

    /// Returns HAProxy's `show stat` rows of the instances: (server name,
    /// status, current sessions).
    pub fn servers(&self) -> Vec<(String, String, u64)> {
        let Ok(text) = self.admin("show stat") else {
            return Vec::new();
        };
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or("")
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(status), Some(scur)) = (
            column("pxname"),
            column("svname"),
            column("status"),
            column("scur"),
        ) else {
            return Vec::new();
        };
        lines
            .map(|line| line.split(',').collect::<Vec<_>>())
            .filter(|row| {
                row.get(px) == Some(&"hashsplit")
                    && row.get(sv).is_some_and(|s| s.starts_with("hs"))
            })
            .map(|row| {
                (
                    row[sv].to_owned(),
                    row[status].to_owned(),
                    row[scur].parse().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Returns what HAProxy says of `server`: (status, current sessions).
    pub fn server(&self, server: &str) -> Option<(String, u64)> {
        self.servers()
            .into_iter()
            .find(|(name, _, _)| name == server)
            .map(|(_, status, sessions)| (status, sessions))
    }

    /// Waits until HAProxy's check says `status` (`UP`, `DOWN`) of `server`.
    pub async fn wait_status(&self, server: &str, status: &str) {
        let seen = eventually_sync(PATIENCE, || {
            self.server(server)
                .is_some_and(|(now, _)| now.split(' ').next() == Some(status))
        })
        .await;
        assert!(
            seen,
            "HAProxy never saw {server} {status}: {:?}",
            self.servers()
        );
    }

    /// Sends one command to HAProxy's stats socket and returns its answer.
    fn admin(&self, command: &str) -> std::io::Result<String> {
        let mut stream = UnixStream::connect(&self.socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// Returns every pool's own accounting.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        self.pools.iter().map(SimPool::stats).collect()
    }

    /// Checks that the pools refused no share but stale ones (a share
    /// forwarded as its pool announced a new block).
    pub fn assert_pools_refused_only_stale(&self) {
        for ((name, _), pool) in POOLS.iter().zip(self.pool_stats()) {
            let stale = pool.totals.rejected_for("stale");
            assert_eq!(pool.totals.rejected, stale, "{name}: {:?}", pool.totals);
        }
    }

    /// Returns the difficulty each pool accepted, from every instance.
    pub fn delivered(&self) -> Vec<f64> {
        self.pools
            .iter()
            .map(|pool| pool.stats().totals.accepted_difficulty)
            .collect()
    }

    /// Returns the shares the pools accepted, all together.
    pub fn pool_shares(&self) -> u64 {
        self.pools
            .iter()
            .map(|pool| pool.stats().totals.accepted)
            .sum()
    }

    /// Returns the sum of one metric over every running instance.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.instances
            .iter()
            .filter_map(|instance| instance.scrape().ok())
            .map(|text| sum(&text, name, labels))
            .sum()
    }

    /// Stops the miners' way in, the instances and the pools.
    pub async fn stop(mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        for instance in &mut self.instances {
            instance.kill();
        }
        for pool in std::mem::take(&mut self.pools) {
            pool.shutdown().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Farm {
    /// Leaves no process behind, and shows the logs of a failed test.
    fn drop(&mut self) {
        let _ = self.haproxy.kill();
        let _ = self.haproxy.wait();
        for instance in &mut self.instances {
            instance.kill();
        }
        if std::thread::panicking() {
            for name in ["haproxy.log", "hs1.log", "hs2.log", "hs3.log"] {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("---- last lines of {name}");
                for line in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{line}");
                }
            }
        }
    }
}

impl Instance {
    /// Starts (or starts again) the process with its config file.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_hashsplit"))
            .args(["run", "--config", self.config.to_str().expect("utf-8 path")])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("hashsplit starts");
        self.child = Some(child);
    }

    /// Sends a signal (`USR1`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the instance runs");
        let status = Command::new("kill")
            .args([format!("-{name}"), child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Kills the process (SIGKILL), as a crash or a lost machine would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit by itself and returns its status.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("the instance runs");
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not exit within {within:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Returns the status of `GET /readyz`.
    pub fn readyz(&self) -> Option<u16> {
        let answer = http_get(self.metrics, "/readyz").ok()?;
        answer.split(' ').nth(1)?.parse().ok()
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        self.readyz() == Some(200)
    }

    /// Returns the `/metrics` exposition.
    pub fn scrape(&self) -> std::io::Result<String> {
        http_get(self.metrics, "/metrics")
    }

    /// Returns the process's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A blocking `GET path` on loopback; returns the whole answer.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Sums the samples of `name` whose labels include `labels`.
pub fn sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|line| {
            labels
                .iter()
                .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Returns a miner's stale shares: refused by the proxy (`stale job`) or
/// by the pool (`stale (pool)`).
pub fn stale_rejects(stats: &MinerStats) -> u64 {
    stats
        .rejects_by_reason
        .iter()
        .filter(|(reason, _)| reason.starts_with("stale"))
        .map(|(_, count)| count)
        .sum()
}

/// The loopback address 127.0.0.`n`: a miner's own address.
pub fn source(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Like `miner_sim::eventually`, for conditions that block briefly (a
/// scrape, a stats-socket command): they run off the runtime's workers.
pub async fn eventually_sync(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    miner_sim::eventually(timeout, || tokio::task::block_in_place(&mut condition)).await
}

/// Each pool's share of the difficulty delivered between two readings.
pub fn split(before: &[f64], after: &[f64]) -> Vec<f64> {
    let delivered: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    let total: f64 = delivered.iter().sum();
    delivered.iter().map(|d| d / total).collect()
}
