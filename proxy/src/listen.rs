//! The miners' listener and the process limits 100,000 miners need.
//!
//! A farm's miners come back together after a power cut or a restart of
//! the proxy: thousands of connects in the same second. The listen backlog
//! holds them until the accept loop takes them (the kernel caps it at
//! `net.core.somaxconn`), and every miner is a file descriptor, so the
//! open-file limit must fit `max_connections`.

use std::io;
use std::net::SocketAddr;

use rlimit::Resource;
use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel may hold for the accept loop; more than Linux's
/// usual `somaxconn` (4096), which then is the limit.
pub const BACKLOG: u32 = 65_535;

/// File descriptors the proxy needs besides its miners: pools, metrics,
/// logs, the runtime.
pub const SPARE_FILES: u64 = 128;

/// Binds `addr` for miners with a backlog of [`BACKLOG`].
pub fn miners(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted proxy can bind while the old connections linger in
    // TIME_WAIT, as `TcpListener::bind` allows.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The open-file limit after [`raise_open_files`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit, which only a privileged process can raise.
    pub hard: u64,
    /// What was asked for.
    pub needed: u64,
}

impl OpenFiles {
    /// Returns whether the limit fits what was asked for.
    pub fn enough(&self) -> bool {
        self.soft >= self.needed
    }
}

/// Raises the soft open-file limit to `needed`, and the hard one too if it
/// is lower and the process may (root, or `CAP_SYS_RESOURCE`); returns the
/// limit in force, which may still be short (see [`OpenFiles::enough`]).
pub fn raise_open_files(needed: u64) -> io::Result<OpenFiles> {
    let (soft, hard) = Resource::NOFILE.get()?;
    if soft >= needed {
        return Ok(OpenFiles { soft, hard, needed });
    }
    if hard < needed && Resource::NOFILE.set(needed, needed).is_ok() {
        return Ok(OpenFiles {
            soft: needed,
            hard: needed,
            needed,
        });
    }
    let soft = needed.min(hard);
    Resource::NOFILE.set(soft, hard)?;
    Ok(OpenFiles { soft, hard, needed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_what_is_needed_within_the_hard_one() {
        let (soft, hard) = Resource::NOFILE.get().unwrap();
        let wanted = (soft + 1).min(hard);
        let limit = raise_open_files(wanted).unwrap();
        assert!(limit.soft >= wanted);
        assert_eq!(Resource::NOFILE.get().unwrap().0, limit.soft);
        assert!(limit.enough());
    }

    #[tokio::test]
    async fn the_listener_accepts() {
        let listener = miners("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert!(peer.ip().is_loopback());
    }
}
