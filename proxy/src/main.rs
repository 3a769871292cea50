//! `hashsplit`: the command line of the proxy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hashsplit::Config;
use hashsplit::simulate::{check_summary, to_json, to_table};
use hashsplit_policy::parse::parse_duration;
use hashsplit_policy::{Fleet, Problem, SimOptions, simulate};

/// Stratum v1 proxy that caps every pool's share of your hashrate.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a simulated farm on 127.0.0.1: three pools, a dozen miners and
    /// the proxy between them, printing each pool's share every few seconds.
    #[cfg(feature = "demo")]
    Demo {
        /// Stops after this long (e.g. 90s, 5m); runs until Ctrl-C otherwise.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// How often to print the table.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        every: Duration,
    },
    /// Runs the proxy: listens for miners and connects to every pool.
    /// SIGHUP reloads the policy from the file without dropping a miner;
    /// SIGUSR1 drains it (miners move to other instances) and stops it.
    Run {
        /// The hashsplit TOML file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Validates a config file and prints every problem, or a summary.
    Check {
        /// The hashsplit TOML file.
        #[arg(long)]
        config: PathBuf,
        /// Also connects to every pool and node and reports what each
        /// offers (no work is sent); fails if one cannot be used.
        #[arg(long)]
        probe: bool,
    },
    /// Runs the policy on a virtual clock against a fleet file.
    Simulate {
        /// The hashsplit TOML file.
        #[arg(long)]
        config: PathBuf,
        /// The fleet file: miners, share rate, events.
        #[arg(long)]
        fleet: PathBuf,
        /// Length of the simulated run, e.g. 2h or 90m.
        #[arg(long, default_value = "2h", value_parser = parse_duration)]
        duration: Duration,
        /// Seed of the share-arrival noise.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Prints one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    match Cli::parse().command {
        #[cfg(feature = "demo")]
        Command::Demo { duration, every } => {
            init_tracing("warn");
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(async {
                    hashsplit::demo::run(duration, every, shutdown_signal()).await
                })?;
        }
        Command::Run { config: path } => {
            let Some(config) = load(&path)? else {
                return Ok(ExitCode::FAILURE);
            };
            init_tracing("info");
            tokio::runtime::Runtime::new()
                .context("starting the async runtime")?
                .block_on(serve(config, path))?;
        }
        Command::Check {
            config: path,
            probe,
        } => {
            let Some(config) = load(&path)? else {
                return Ok(ExitCode::FAILURE);
            };
            if !ca_files_usable(&path, &config) {
                return Ok(ExitCode::FAILURE);
            }
            print!("{}", check_summary(&config));
            if probe {
                let reports = tokio::runtime::Runtime::new()
                    .context("starting the async runtime")?
                    .block_on(hashsplit::probe::probe(&config));
                print!("\nprobe:\n{}", hashsplit::probe::render(&reports));
                if !reports.iter().all(|r| r.usable()) {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Simulate {
            config,
            fleet,
            duration,
            seed,
            json,
        } => {
            let Some(config) = load(&config)? else {
                return Ok(ExitCode::FAILURE);
            };
            let text = std::fs::read_to_string(&fleet)
                .with_context(|| format!("reading {}", fleet.display()))?;
            let fleet = match Fleet::from_toml_str(&text, &config.policy) {
                Ok(parsed) => parsed,
                Err(error) => {
                    for problem in &error.errors {
                        eprintln!("{}", located(&fleet, problem));
                    }
                    eprintln!("{} error(s) in {}", error.errors.len(), fleet.display());
                    return Ok(ExitCode::FAILURE);
                }
            };
            let report = simulate(&config.policy, &fleet, SimOptions { duration, seed });
            if json {
                println!("{}", to_json(&report)?);
            } else {
                print!("{}", to_table(&report));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `level`).
fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Binds the miners' and the metrics listeners and serves until SIGINT or
/// SIGTERM, reloading `path` on SIGHUP (and on `POST /api/v1/reload`).
async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let listener = hashsplit::listen::miners(listen)
        .with_context(|| format!("listening for miners on {listen}"))?;
    open_files(&config);
    let metrics_listen = config.metrics.listen;
    let metrics = tokio::net::TcpListener::bind(metrics_listen)
        .await
        .with_context(|| format!("listening for metrics on {metrics_listen}"))?;
    let http = hashsplit::HttpOptions {
        config_file: Some(path.clone()),
        ..hashsplit::HttpOptions::default()
    };
    let (reloads, reloaded) = tokio::sync::mpsc::channel(1);
    // Listening, and the pools connect as soon as the proxy starts: what
    // systemd's Type=notify waits for.
    #[cfg(target_os = "linux")]
    let notifier = hashsplit::service::Notifier::from_env();
    #[cfg(target_os = "linux")]
    let alive = tokio_util::sync::CancellationToken::new();
    #[cfg(unix)]
    {
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        #[cfg(target_os = "linux")]
        let notifier = notifier.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!(file = %path.display(), "SIGHUP: reloading the config file");
                #[cfg(target_os = "linux")]
                notifier.notify(hashsplit::service::Notice::Reloading);
                let sent = reloads.send(reload(&path)).await;
                #[cfg(target_os = "linux")]
                notifier.notify(hashsplit::service::Notice::Ready);
                if sent.is_err() {
                    return;
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop((reloads, path));
    let stop = shutdown_signal();
    let drain = drain_signal();
    // Every signal handler is in place: a signal from now on is heard.
    #[cfg(target_os = "linux")]
    {
        notifier.notify(hashsplit::service::Notice::Ready);
        tokio::spawn(notifier.clone().keep_alive(alive.clone()));
    }
    let shutdown = async move {
        stop.await;
        #[cfg(target_os = "linux")]
        {
            notifier.notify(hashsplit::service::Notice::Stopping);
            alive.cancel();
        }
    };
    hashsplit::run(
        config,
        listener,
        Some((metrics, http)),
        shutdown,
        drain,
        reloaded,
    )
    .await?;
    Ok(())
}

/// Raises the open-file limit to fit `max_connections`, or warns that it
/// cannot: past the limit, accepts fail and miners are turned away.
fn open_files(config: &Config) {
    let needed = u64::from(config.server.max_connections) + hashsplit::listen::SPARE_FILES;
    match hashsplit::listen::raise_open_files(needed) {
        Ok(limit) if limit.enough() => {}
        Ok(limit) => tracing::warn!(
            soft = limit.soft,
            hard = limit.hard,
            needed,
            "the open-file limit is below max_connections: raise it (LimitNOFILE= in \
             systemd, `ulimit -n`) or lower server.max_connections"
        ),
        Err(e) => tracing::warn!(error = %e, needed, "cannot read or raise the open-file limit"),
    }
}

/// Reads the config file again, logging its warnings and problems.
fn reload(path: &Path) -> Option<Config> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read the config file");
            return None;
        }
    };
    match Config::from_toml_str(&text) {
        Ok((config, warnings)) => {
            for warning in warnings {
                tracing::warn!("{}", located(path, &warning));
            }
            Some(config)
        }
        Err(error) => {
            for problem in &error.errors {
                tracing::error!("{}", located(path, problem));
            }
            None
        }
    }
}

/// Completes on the first SIGUSR1: the operator takes this instance out of
/// its farm (a rolling restart). Never completes where there is no SIGUSR1.
///
/// The handler is installed at once, not when the future is first polled,
/// so a signal sent as soon as the service says it is ready is not lost.
fn drain_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut usr1) = usr1
            && usr1.recv().await.is_some()
        {
            tracing::info!("SIGUSR1: draining for a restart");
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM; the handlers are
/// installed at once (see [`drain_signal`]).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        if let (Some(mut int), Some(mut term)) = handlers {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Loads a config file, printing its warnings to stderr; prints every
/// problem and returns `None` if it is invalid.
fn load(path: &Path) -> anyhow::Result<Option<Config>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    match Config::from_toml_str(&text) {
        Ok((config, warnings)) => {
            for warning in warnings {
                eprintln!("{} (warning)", located(path, &warning));
            }
            Ok(Some(config))
        }
        Err(error) => {
            for problem in &error.errors {
                eprintln!("{}", located(path, problem));
            }
            for warning in &error.warnings {
                eprintln!("{} (warning)", located(path, warning));
            }
            eprintln!("{} error(s) in {}", error.errors.len(), path.display());
            Ok(None)
        }
    }
}

/// Reads every pool's `ca_file` as a connection would, printing each one
/// that cannot be used; returns whether all can.
fn ca_files_usable(path: &Path, config: &Config) -> bool {
    let mut usable = true;
    for (index, pool) in config.policy.pools.iter().enumerate() {
        let Some(ca_file) = &pool.tls.ca_file else {
            continue;
        };
        if let Err(error) = hashsplit::transport::check_ca_file(ca_file) {
            eprintln!("{}: pool[{index}].ca_file: {error}", path.display());
            usable = false;
        }
    }
    usable
}

/// Returns `file:line:column: path: message`, the shape editors jump to.
fn located(file: &Path, problem: &Problem) -> String {
    match problem.location {
        Some(_) => format!("{}:{problem}", file.display()),
        None => format!("{}: {problem}", file.display()),
    }
}
