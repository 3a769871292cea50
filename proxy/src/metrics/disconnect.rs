//! Why a miner connection ended: the `reason` label of
//! `hashsplit_downstream_disconnects_total`.

/// Why a miner connection ended, from the accept loop or the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnect {
    /// The miner closed the connection.
    Closed,
    /// No line within the idle timeout.
    Idle,
    /// No subscribe and authorize (or PROXY header) within the handshake
    /// timeout.
    HandshakeTimeout,
    /// A line over the maximum length.
    LineTooLong,
    /// Too many unreadable lines in a row, or a bad PROXY header.
    BadInput,
    /// Too many shares rejected in a row.
    TooManyRejects,
    /// A read or write failed.
    IoError,
    /// The proxy is shutting down.
    Shutdown,
    /// Refused at accept: the proxy or the peer's address is at its
    /// connection limit.
    ConnectionLimit,
    /// Refused at accept: no extranonce1 was free.
    ExtranonceExhausted,
    /// The proxy drains: the miner was asked to reconnect elsewhere.
    Drained,
}

impl Disconnect {
    /// Every reason, so each series exists from the start.
    pub const ALL: [Disconnect; 11] = [
        Disconnect::Closed,
        Disconnect::Idle,
        Disconnect::HandshakeTimeout,
        Disconnect::LineTooLong,
        Disconnect::BadInput,
        Disconnect::TooManyRejects,
        Disconnect::IoError,
        Disconnect::Shutdown,
        Disconnect::ConnectionLimit,
        Disconnect::ExtranonceExhausted,
        Disconnect::Drained,
    ];

    /// Returns the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Disconnect::Closed => "closed",
            Disconnect::Idle => "idle",
            Disconnect::HandshakeTimeout => "handshake-timeout",
            Disconnect::LineTooLong => "line-too-long",
            Disconnect::BadInput => "bad-input",
            Disconnect::TooManyRejects => "too-many-rejects",
            Disconnect::IoError => "io-error",
            Disconnect::Shutdown => "shutdown",
            Disconnect::ConnectionLimit => "connection-limit",
            Disconnect::ExtranonceExhausted => "extranonce-exhausted",
            Disconnect::Drained => "drained",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_label() {
        let mut labels: Vec<_> = Disconnect::ALL.iter().map(|d| d.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Disconnect::ALL.len());
    }
}
