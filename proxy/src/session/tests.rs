//! What an idle session costs: the size of its task's future.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{ReconnectLimiter, Session, Shared};
use crate::config::Config;
use crate::drain::Drain;
use crate::extranonce::ExtranonceAllocator;
use crate::jobs::{Layout, Layouts};
use crate::metrics::Metrics;
use crate::policy_task;
use crate::pool::PoolRegistry;

const CONFIG: &str = "[policy]\nmax_share = 1.0\n\
    [[pool]]\nname = \"a\"\nurl = \"stratum+tcp://127.0.0.1:1\"\nuser = \"u\"\n";

/// Returns what a session needs, with no pool running.
fn shared(tasks: &TaskTracker) -> Arc<Shared> {
    let (config, _) = Config::from_toml_str(CONFIG).expect("valid config");
    let metrics = Metrics::new(&["a".to_owned()]);
    let pools = PoolRegistry::default().subscribe();
    let (policy, _reloads) = policy_task::spawn(
        Arc::new(config.policy.clone()),
        pools.clone(),
        metrics.clone(),
        CancellationToken::new(),
        tasks,
    );
    let layouts = Arc::new(Layouts::new(Layout {
        extranonce1_size: usize::from(config.downstream.extranonce1_size),
        extranonce2_size: usize::from(config.downstream.extranonce2_size),
    }));
    let drain = Arc::new(Drain::new(
        config.server.drain_period,
        CancellationToken::new(),
        CancellationToken::new(),
        metrics.clone(),
    ));
    let line_budget = hashsplit_stratum::LineBudget::new(config.server.line_buffer_budget);
    Arc::new(Shared {
        drain,
        line_budget,
        config: Arc::new(config),
        metrics,
        pools,
        policy,
        layouts,
        reconnects: ReconnectLimiter::default(),
        draining: CancellationToken::new(),
        directory: Arc::default(),
    })
}

/// The largest an idle miner's task future may be. A session is one
/// task, whose future is as large as its largest state: handlers deep in a
/// submit's path would make every idle miner pay for them, so they are
/// boxed while they run (see `Session::serve`). Measured in the test
/// (debug) build, which lays futures out larger than a release build.
const MAX_TASK_BYTES: usize = 1792;

#[tokio::test]
async fn an_idle_session_task_is_small() {
    let tasks = TaskTracker::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, peer) = listener.accept().await.unwrap();
    let allocator = ExtranonceAllocator::new(3);
    let session = Session::new(
        shared(&tasks),
        stream,
        peer,
        allocator.allocate().unwrap(),
        CancellationToken::new(),
    );
    // The whole future the accept loop spawns, with a slot and a gauge
    // handle's worth of what it holds.
    let task = crate::accept::miner_task(session, [0usize; 4], shared(&tasks));
    let bytes = std::mem::size_of_val(&task);
    println!("an idle miner's task future: {bytes} bytes");
    assert!(
        bytes <= MAX_TASK_BYTES,
        "a session's future grew to {bytes} bytes (at most {MAX_TASK_BYTES}): \
         box what a handler awaits rather than holding it in every idle miner"
    );
    drop((task, client));
}
