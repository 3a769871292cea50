//! Running under systemd: `Type=notify` readiness, reload and stop news,
//! and the watchdog, over the datagram socket systemd names in
//! `NOTIFY_SOCKET` (sd_notify(3)'s protocol, written with the standard
//! library so the proxy needs no libsystemd).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// One message to the service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Listening, and the pools are being connected.
    Ready,
    /// Re-reading the config file (SIGHUP).
    Reloading,
    /// Shutting down.
    Stopping,
    /// Still alive (the watchdog).
    Watchdog,
}

impl Notice {
    fn as_str(self) -> &'static str {
        match self {
            Notice::Ready => "READY=1",
            Notice::Reloading => "RELOADING=1",
            Notice::Stopping => "STOPPING=1",
            Notice::Watchdog => "WATCHDOG=1",
        }
    }
}

/// Where notices go, read from the environment systemd gives the service.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Returns the notifier for this process: `NOTIFY_SOCKET`, and the
    /// watchdog interval from `WATCHDOG_USEC` when `WATCHDOG_PID` is unset
    /// or this process.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok(), std::process::id())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>, pid: u32) -> Self {
        let socket = var("NOTIFY_SOCKET").filter(|s| !s.is_empty());
        let for_us = var("WATCHDOG_PID").is_none_or(|p| p.trim() == pid.to_string());
        let watchdog = var("WATCHDOG_USEC")
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Returns whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.socket.is_some()
    }

    /// Returns the watchdog interval systemd expects, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `notice`; a failure is logged, never fatal (the proxy serves
    /// miners whether or not systemd hears it).
    pub fn notify(&self, notice: Notice) {
        if let Some(socket) = &self.socket
            && let Err(error) = send(socket, notice.as_str())
        {
            warn!(socket = %socket, %error, "cannot notify the service manager");
        }
    }

    /// Pings the watchdog at half its interval until `stop` is cancelled.
    pub async fn keep_alive(self, stop: CancellationToken) {
        let Some(interval) = self.watchdog.filter(|_| self.is_active()) else {
            return;
        };
        let mut ticks = tokio::time::interval(interval / 2);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => self.notify(Notice::Watchdog),
            }
        }
    }
}

/// Sends one datagram to `socket`: a path, or `@name` for an abstract
/// socket (as systemd usually gives).
fn send(socket: &str, message: &str) -> io::Result<()> {
    let datagram = UnixDatagram::unbound()?;
    match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            datagram.send_to_addr(message.as_bytes(), &address)?;
        }
        None => {
            datagram.send_to(message.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_watchdog_is_ours_only_without_a_pid_or_with_our_pid() {
        let ours = Notifier::from_vars(
            vars(&[("NOTIFY_SOCKET", "/run/x"), ("WATCHDOG_USEC", "2000000")]),
            7,
        );
        assert_eq!(ours.watchdog(), Some(Duration::from_secs(2)));
        let other = Notifier::from_vars(
            vars(&[("WATCHDOG_USEC", "2000000"), ("WATCHDOG_PID", "8")]),
            7,
        );
        assert_eq!(other.watchdog(), None);
        assert!(!Notifier::from_vars(vars(&[]), 7).is_active());
    }

    #[test]
    fn notices_reach_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("hashsplit-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", path.to_str().unwrap())]), 1);
        notifier.notify(Notice::Ready);
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("hashsplit-test-{}", std::process::id());
        let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listener = UnixDatagram::bind_addr(&address).unwrap();
        let notifier = Notifier::from_vars(vars(&[("NOTIFY_SOCKET", &format!("@{name}"))]), 1);
        notifier.notify(Notice::Stopping);
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
