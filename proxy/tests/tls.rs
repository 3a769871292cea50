//! Pools reached over TLS (`stratum+ssl://`, `stratum+tls://`): a
//! simulated pool behind a TLS front on 127.0.0.1 whose certificate is made
//! here, signed by a test CA the proxy trusts through `ca_file`.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{POOL_USER, config};
use hashsplit::Proxy;
use hashsplit::transport::{self, TransportError};
use hashsplit_policy::{PoolTls, PoolUrl};
use miner_sim::{SimMiner, SimMinerConfig, SimPool, SimPoolConfig, eventually};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made for one test.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// Returns a new CA called `name` (CAs are told apart by name first,
    /// then by key).
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Returns a pool certificate for `names` signed by this CA, and its key.
    fn pool_certificate(
        &self,
        names: &[&str],
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("pool key");
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let cert = CertificateParams::new(names)
            .expect("pool params")
            .signed_by(&key, &self.issuer)
            .expect("pool certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// Writes this CA as a PEM `ca_file` in a fresh directory.
    fn write_ca_file(&self, test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hashsplit-tls-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("pool-ca.pem");
        std::fs::write(&path, &self.pem).expect("ca_file written");
        path
    }
}

/// A TLS front for a simulated pool: completes the handshake with its
/// certificate and relays the plain lines to the pool.
struct TlsFront {
    addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    async fn start(
        pool: SocketAddr,
        cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
    ) -> Self {
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.0], cert.1)
            .expect("server certificate");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (handshakes, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counts = (Arc::clone(&handshakes), Arc::clone(&refused));
        let task = tokio::spawn(async move {
            // Relays live in the set, so aborting the front ends them too.
            let mut relays = JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, (ok, failed)) = (acceptor.clone(), counts.clone());
                relays.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    };
                    ok.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut plain) = TcpStream::connect(pool).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        TlsFront {
            addr,
            handshakes,
            refused,
            task,
        }
    }

    fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A pool difficulty low enough that two slow miners find shares often.
fn easy_pool() -> SimPoolConfig {
    SimPoolConfig {
        difficulty: hashsplit_stratum::Difficulty::try_new(1e-4).unwrap(),
        ..SimPoolConfig::default()
    }
}

fn pool_entry(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[pool]]\nname = \"{name}\"\nurl = \"{url}\"\nuser = \"{POOL_USER}\"\npassword = \"x\"\n{extra}\n"
    )
}

const POLICY: &str =
    "[policy]\nmax_share = 1.0\nwindow = \"20s\"\nmin_dwell = \"2s\"\nrebalance_every = \"1s\"\n";

async fn start_proxy(toml: &str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Proxy::start(config(toml), listener).expect("proxy starts")
}

fn start_miners(proxy: &Proxy, count: usize) -> Vec<SimMiner> {
    (0..count)
        .map(|i| {
            let mut config = SimMinerConfig::new(
                proxy.local_addr(),
                miner_sim::Profile::Asic,
                &format!("m{i}"),
            );
            config.hashrate = Some(2e6);
            SimMiner::start(config)
        })
        .collect()
}

/// Everything the proxy logs in this test binary, for the tests that
/// check what an operator is told.
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || LogSink(Arc::clone(&sink)))
            .try_init();
        logs
    })
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        // Shown by the test harness for a failing test.
        eprint!("{}", String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Returns whether a logged line holds every one of `parts`.
fn logged(parts: &[&str]) -> bool {
    let logs = logs().lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .any(|line| parts.iter().all(|part| line.contains(part)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miners_mine_through_the_proxy_into_a_tls_pool() {
    logs();
    let ca = TestCa::new("pool operator CA");
    let ca_file = ca.write_ca_file("mine");
    let pool = SimPool::start(easy_pool()).await.expect("pool starts");
    let front = TlsFront::start(pool.addr(), ca.pool_certificate(&["127.0.0.1"])).await;
    let toml = format!(
        "{POLICY}\n{}",
        pool_entry(
            "private",
            &format!("stratum+tls://{}", front.addr),
            &format!("ca_file = \"{}\"", ca_file.display()),
        )
    );
    let proxy = start_proxy(&toml).await;
    let metrics = proxy.metrics();
    assert!(
        eventually(Duration::from_secs(10), || {
            metrics.sum("hashsplit_pool_up", &[("pool", "private")]) == 1.0
        })
        .await,
        "the TLS pool came up at the proxy"
    );
    let miners = start_miners(&proxy, 2);
    let mined = eventually(Duration::from_secs(60), || {
        pool.stats().worker(POOL_USER).accepted >= 6
            && miners.iter().all(|m| m.stats().accepted >= 2)
    })
    .await;
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }
    let at_pool = pool.stats().worker(POOL_USER);
    assert!(
        mined,
        "shares went through TLS and were accepted: {at_pool:?}"
    );
    assert_eq!(at_pool.rejected, 0, "{at_pool:?}");
    assert!(front.handshakes() >= 1, "the shares went over TLS");
    assert_eq!(front.refused(), 0);
    proxy.shutdown(Duration::from_secs(2)).await;
    pool.shutdown().await;
    let _ = std::fs::remove_dir_all(ca_file.parent().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_with_a_wrong_name_or_an_untrusted_ca_stay_down_and_get_no_share() {
    logs();
    let ca = TestCa::new("pool operator CA");
    let stranger = TestCa::new("someone else's CA");
    let ca_file = ca.write_ca_file("refuse");
    let good = SimPool::start(easy_pool()).await.expect("pool starts");
    let impostor_pool = SimPool::start(easy_pool()).await.expect("pool starts");
    let untrusted_pool = SimPool::start(easy_pool()).await.expect("pool starts");
    // Signed by the trusted CA, but for another host.
    let impostor =
        TlsFront::start(impostor_pool.addr(), ca.pool_certificate(&["pool.example"])).await;
    // For the right host, but signed by a CA the proxy does not trust.
    let untrusted = TlsFront::start(
        untrusted_pool.addr(),
        stranger.pool_certificate(&["127.0.0.1"]),
    )
    .await;
    let ca_line = format!("ca_file = \"{}\"", ca_file.display());
    let toml = format!(
        "{POLICY}\n{}{}{}",
        pool_entry("good", &format!("stratum+tcp://{}", good.addr()), ""),
        pool_entry(
            "impostor",
            &format!("stratum+ssl://{}", impostor.addr),
            &ca_line
        ),
        pool_entry(
            "untrusted",
            &format!("stratum+tls://{}", untrusted.addr),
            &ca_line
        ),
    );
    let proxy = start_proxy(&toml).await;
    let miners = start_miners(&proxy, 2);
    let refused_and_mined = eventually(Duration::from_secs(60), || {
        impostor.refused() >= 1
            && untrusted.refused() >= 1
            && good.stats().worker(POOL_USER).accepted >= 4
    })
    .await;
    for miner in miners {
        let stats = miner.stop().await;
        assert_eq!(stats.rejected, 0, "{stats:?}");
    }
    assert!(
        refused_and_mined,
        "both bad pools were tried and refused while the good pool took the work"
    );
    let metrics = proxy.metrics();
    for (name, front, pool) in [
        ("impostor", &impostor, &impostor_pool),
        ("untrusted", &untrusted, &untrusted_pool),
    ] {
        assert_eq!(front.handshakes(), 0, "{name}: no TLS session was accepted");
        assert_eq!(
            pool.stats().connections_accepted,
            0,
            "{name}: nothing reached it"
        );
        assert_eq!(
            pool.stats().totals.accepted,
            0,
            "{name}: no share reached it"
        );
        assert_eq!(
            metrics.sum("hashsplit_pool_up", &[("pool", name)]),
            0.0,
            "{name} is down"
        );
        assert_eq!(
            metrics.sum("hashsplit_shares_submitted_total", &[("pool", name)]),
            0.0,
            "{name}: no share was sent its way"
        );
    }
    assert!(
        logged(&[
            "pool=impostor",
            &format!("certificate for pool stratum+ssl://{}", impostor.addr),
            "is not valid for name \"127.0.0.1\"",
            "pool.example",
        ]),
        "the wrong name is logged with the pool and both names"
    );
    assert!(
        logged(&[
            "pool=untrusted",
            "is not signed by a trusted CA",
            &format!("ca_file {}", ca_file.display()),
        ]),
        "the untrusted CA is logged with the pool and what was trusted"
    );
    proxy.shutdown(Duration::from_secs(2)).await;
    for pool in [good, impostor_pool, untrusted_pool] {
        pool.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(ca_file.parent().unwrap());
}

#[tokio::test]
async fn connect_names_what_is_wrong_with_a_tls_pool() {
    let ca = TestCa::new("pool operator CA");
    let ca_file = ca.write_ca_file("connect");
    let pool = SimPool::start(SimPoolConfig::default())
        .await
        .expect("pool starts");
    let right = TlsFront::start(pool.addr(), ca.pool_certificate(&["127.0.0.1"])).await;
    let wrong = TlsFront::start(pool.addr(), ca.pool_certificate(&["pool.example"])).await;
    let url = |front: &TlsFront| PoolUrl::parse(&format!("stratum+ssl://{}", front.addr)).unwrap();
    let private = PoolTls {
        ca_file: Some(ca_file.clone()),
        insecure: false,
    };

    let stream = transport::connect(&url(&right), &private).await;
    assert!(
        matches!(stream, Ok(transport::Stream::Tls(_))),
        "{stream:?}"
    );

    match transport::connect(&url(&wrong), &private).await {
        Err(TransportError::WrongName {
            host, presented, ..
        }) => {
            assert_eq!(host, "127.0.0.1");
            assert!(
                presented.iter().any(|name| name.contains("pool.example")),
                "{presented:?}"
            );
        }
        other => panic!("a wrong name must be refused as such: {other:?}"),
    }

    // The test CA is not among the public roots.
    match transport::connect(&url(&right), &PoolTls::default()).await {
        Err(error @ TransportError::UntrustedIssuer { .. }) => {
            assert!(
                error.to_string().contains("the public webpki roots"),
                "{error}"
            );
        }
        other => panic!("an unknown CA must be refused as such: {other:?}"),
    }

    // A CA that takes the trusted CA's name cannot take its place.
    let twin = TestCa::new("pool operator CA");
    let forged = TlsFront::start(pool.addr(), twin.pool_certificate(&["127.0.0.1"])).await;
    match transport::connect(&url(&forged), &private).await {
        Err(error @ TransportError::UntrustedIssuer { .. }) => {
            assert!(error.to_string().contains("ca_file"), "{error}");
        }
        other => panic!("a forged chain must be refused: {other:?}"),
    }

    // A plain Stratum port answers in JSON, not TLS.
    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let plain_url =
        PoolUrl::parse(&format!("stratum+ssl://{}", plain.local_addr().unwrap())).unwrap();
    let answer = tokio::spawn(async move {
        let (mut tcp, _) = plain.accept().await.expect("accept");
        let line = b"{\"id\":null,\"result\":null,\"error\":[20,\"bad json\",null]}\n";
        let _ = tokio::io::AsyncWriteExt::write_all(&mut tcp, line).await;
        tcp
    });
    match transport::connect(&plain_url, &private).await {
        Err(error @ TransportError::NotTls { .. }) => {
            assert!(
                error.to_string().contains("plain stratum+tcp://"),
                "{error}"
            );
        }
        other => panic!("a plain port must be named as such: {other:?}"),
    }
    drop(answer.await);

    // tls_insecure takes any certificate.
    let insecure = PoolTls {
        ca_file: None,
        insecure: true,
    };
    let stream = transport::connect(&url(&wrong), &insecure).await;
    assert!(
        matches!(stream, Ok(transport::Stream::Tls(_))),
        "{stream:?}"
    );

    pool.shutdown().await;
    let _ = std::fs::remove_dir_all(ca_file.parent().unwrap());
}

fn check(toml: &str, test: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("hashsplit-tls-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("hashsplit.toml");
    std::fs::write(&path, toml).expect("config written");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hashsplit"))
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .expect("the hashsplit binary runs");
    let _ = std::fs::remove_file(&path);
    output
}

#[test]
fn check_says_how_each_tls_pool_is_verified_and_warns_when_it_is_not() {
    let ca_file = TestCa::new("pool operator CA").write_ca_file("check");
    let toml = format!(
        "{POLICY}\n{}{}{}{}",
        pool_entry("plain", "stratum+tcp://a.example:3333", ""),
        pool_entry("public", "stratum+ssl://b.example:4443", ""),
        pool_entry(
            "private",
            "stratum+tls://10.0.0.7:4443",
            &format!("ca_file = \"{}\"", ca_file.display())
        ),
        pool_entry(
            "blind",
            "stratum+ssl://d.example:4443",
            "tls_insecure = true"
        ),
    );
    let output = check(&toml, "check");
    let _ = std::fs::remove_dir_all(ca_file.parent().unwrap());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|line| line.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}: {stdout}"))
            .to_owned()
    };
    assert!(
        row("plain").ends_with("stratum+tcp://a.example:3333"),
        "{stdout}"
    );
    assert!(
        row("public").contains(
            "stratum+ssl://b.example:4443  (tls, verified against the public webpki roots)"
        ),
        "{stdout}"
    );
    assert!(
        row("private").contains(&format!(
            "(tls, verified against ca_file {})",
            ca_file.display()
        )),
        "{stdout}"
    );
    assert!(
        row("blind").contains("CERTIFICATE NOT VERIFIED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARNING: pool blind is reached over TLS WITHOUT CERTIFICATE VERIFICATION"),
        "{stdout}"
    );
    assert!(
        stderr.contains("pool[3].tls_insecure: TLS CERTIFICATE VERIFICATION IS OFF"),
        "{stderr}"
    );
}

#[test]
fn check_fails_on_a_ca_file_it_cannot_use() {
    let toml = format!(
        "{POLICY}\n{}",
        pool_entry(
            "private",
            "stratum+ssl://pool.example:4443",
            "ca_file = \"/nonexistent/hashsplit/pool-ca.pem\""
        ),
    );
    let output = check(&toml, "check-missing");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("pool[0].ca_file: ca_file /nonexistent/hashsplit/pool-ca.pem is unusable"),
        "{stderr}"
    );
}
