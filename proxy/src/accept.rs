//! The accept loop: connection limits, an extranonce1 per miner, and one
//! session task each. With `[server] proxy_protocol`, each connection's
//! PROXY header is read in a task of its own (a slow one stalls nobody) and
//! the connection comes back to the loop under the miner's own address.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use prometheus::IntGauge;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::extranonce::ExtranonceAllocator;
use crate::metrics::{Disconnect, Metrics};
use crate::proxy_protocol;
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

/// A connected miner in `hashsplit_downstream_connections`, until dropped.
struct Open(IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Accepts miners until `accepting` is cancelled.
pub(crate) async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    allocator: ExtranonceAllocator,
    accepting: CancellationToken,
    stopping: CancellationToken,
    tasks: TaskTracker,
) {
    let server = &shared.config.server;
    let max_connections = server.max_connections as usize;
    let per_ip_limit = server.max_connections_per_ip as usize;
    let per_ip = PerIp::default();
    // Behind a balancer, the direct peer's connections still reading their
    // header: one address cannot fill every slot with silent connections.
    let header_per_ip = PerIp::default();
    let metrics = shared.metrics.clone();
    let (unwrapped, mut headed) = mpsc::channel::<(TcpStream, SocketAddr)>(64);
    // Connections whose PROXY header is still being read.
    let reading = Arc::new(AtomicUsize::new(0));
    let refuse = |reason| {
        metrics.downstream_connects.inc();
        metrics.disconnected(reason);
    };
    loop {
        let (stream, peer) = tokio::select! {
            () = accepting.cancelled() => return,
            Some(pair) = headed.recv() => {
                reading.fetch_sub(1, Ordering::Relaxed);
                pair
            }
            accepted = listener.accept() => match accepted {
                Ok(pair) if server.proxy_protocol => {
                    let open = metrics.downstream_connections.get() as usize
                        + reading.load(Ordering::Relaxed);
                    if open >= max_connections {
                        debug!(peer = %pair.1, "connection limit reached; refused");
                        refuse(Disconnect::ConnectionLimit);
                        continue;
                    }
                    let Some(reading_slot) = header_per_ip.take(pair.1.ip(), per_ip_limit) else {
                        debug!(peer = %pair.1, "per-IP limit of connections without a header; refused");
                        refuse(Disconnect::ConnectionLimit);
                        continue;
                    };
                    reading.fetch_add(1, Ordering::Relaxed);
                    tasks.spawn(unwrap_header(
                        pair,
                        reading_slot,
                        server.handshake_timeout,
                        unwrapped.clone(),
                        Arc::clone(&reading),
                        metrics.clone(),
                        stopping.clone(),
                    ));
                    continue;
                }
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
        if metrics.downstream_connections.get() as usize >= max_connections {
            debug!(%peer, "connection limit reached; refused");
            refuse(Disconnect::ConnectionLimit);
            continue;
        }
        let Some(slot) = per_ip.take(peer.ip(), per_ip_limit) else {
            debug!(%peer, "per-IP connection limit reached; refused");
            refuse(Disconnect::ConnectionLimit);
            continue;
        };
        let Some(extranonce1) = allocator.allocate() else {
            warn!(%peer, "every extranonce1 is in use; refused");
            refuse(Disconnect::ExtranonceExhausted);
            continue;
        };
        metrics.downstream_connects.inc();
        metrics.downstream_connections.inc();
        // A clone of the proxy's token, not a child: a child token is a
        // node of its own (with a lock and a list) for every miner, and
        // nothing cancels one session alone.
        let session = Session::new(
            Arc::clone(&shared),
            stream,
            peer,
            extranonce1,
            stopping.clone(),
        );
        // Counted down even if the session were to panic.
        let open = Open(metrics.downstream_connections.clone());
        tasks.spawn(miner_task(session, (slot, open), Arc::clone(&shared)));
    }
}

/// The task of one miner: its session, then the count of why it ended.
/// `held` (its per-address slot, its place in the connections gauge) is
/// let go when the session ends.
///
/// `map`, not an `async` block awaiting the session: such a block would
/// keep room for the session and for its running future. What the closure
/// captures every idle miner holds: pointers, not a `Metrics`.
pub(crate) fn miner_task(
    session: Session,
    held: impl Send + 'static,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    session.run().map(move |ended| {
        drop(held);
        shared.metrics.disconnected(ended);
    })
}

/// Reads a connection's PROXY header within `timeout` and hands the
/// connection back under the address it names; a connection without a
/// valid header is closed and counted as bad input.
async fn unwrap_header(
    (mut stream, peer): (TcpStream, SocketAddr),
    reading_slot: Slot,
    timeout: Duration,
    admit: mpsc::Sender<(TcpStream, SocketAddr)>,
    reading: Arc<AtomicUsize>,
    metrics: Metrics,
    stopping: CancellationToken,
) {
    let read = tokio::time::timeout(timeout, proxy_protocol::read_header(&mut stream));
    let header = tokio::select! {
        () = stopping.cancelled() => return refused(&reading, &metrics, Disconnect::Shutdown),
        header = read => header,
    };
    let source = match header {
        Ok(Ok(source)) => source.unwrap_or(peer),
        Ok(Err(e)) => {
            warn!(%peer, error = %e, "connection refused");
            return refused(&reading, &metrics, Disconnect::BadInput);
        }
        Err(_) => {
            debug!(%peer, "no PROXY protocol header in time");
            return refused(&reading, &metrics, Disconnect::HandshakeTimeout);
        }
    };
    drop(reading_slot);
    if admit.send((stream, source)).await.is_err() {
        // The accept loop has stopped: the proxy is shutting down.
        reading.fetch_sub(1, Ordering::Relaxed);
    }
}

fn refused(reading: &AtomicUsize, metrics: &Metrics, reason: Disconnect) {
    reading.fetch_sub(1, Ordering::Relaxed);
    metrics.downstream_connects.inc();
    metrics.disconnected(reason);
}
