//! The accept loop: connection limits, an extranonce1 per miner, and one
//! session task each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::extranonce::ExtranonceAllocator;
use crate::session::{Session, Shared};

/// Counts live connections per IP address; a slot frees itself on drop.
#[derive(Debug, Clone, Default)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct Slot {
    ip: IpAddr,
    counts: PerIp,
}

impl PerIp {
    fn take(&self, ip: IpAddr, limit: usize) -> Option<Slot> {
        let mut counts = self.0.lock().expect("per-IP lock");
        let count = counts.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            ip,
            counts: self.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut counts) = self.counts.0.lock()
            && let Some(count) = counts.get_mut(&self.ip)
        {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Accepts miners until `accepting` is cancelled.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    accepting: CancellationToken,
    stopping: CancellationToken,
    tasks: TaskTracker,
) {
    let server = &shared.config.server;
    let max_connections = server.max_connections as usize;
    let per_ip_limit = server.max_connections_per_ip as usize;
    let allocator =
        ExtranonceAllocator::new(usize::from(shared.config.downstream.extranonce1_size));
    let per_ip = PerIp::default();
    let metrics = shared.metrics.clone();
    loop {
        let (stream, peer) = tokio::select! {
            () = accepting.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little
                    // rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let refuse = |reason: &str| {
            metrics.downstream_connects.inc();
            metrics
                .downstream_disconnects
                .with_label_values(&[reason])
                .inc();
        };
        if metrics.downstream_connections.get() as usize >= max_connections {
            debug!(%peer, "connection limit reached; refused");
            refuse("connection-limit");
            continue;
        }
        let Some(slot) = per_ip.take(peer.ip(), per_ip_limit) else {
            debug!(%peer, "per-IP connection limit reached; refused");
            refuse("connection-limit");
            continue;
        };
        let Some(extranonce1) = allocator.allocate() else {
            warn!(%peer, "every extranonce1 is in use; refused");
            refuse("extranonce-exhausted");
            continue;
        };
        metrics.downstream_connects.inc();
        metrics.downstream_connections.inc();
        let session = Session::new(
            Arc::clone(&shared),
            stream,
            peer,
            extranonce1,
            stopping.child_token(),
        );
        let metrics = metrics.clone();
        tasks.spawn(async move {
            let ended = session.run().await;
            drop(slot);
            metrics.downstream_connections.dec();
            metrics
                .downstream_disconnects
                .with_label_values(&[ended.as_str()])
                .inc();
        });
    }
}
