//! Faults a test switches on in a running [`SimPool`](super::SimPool).
//!
//! Some are modes that last until cleared (blackhole, delay, reject all,
//! refuse connections); the others are events that happen once to every
//! open connection (close, garbage, bad difficulty, a huge line,
//! `client.reconnect`, a new extranonce).

use std::time::Duration;

/// A broken `mining.set_difficulty` a pool might send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadDifficulty {
    /// `NaN` (not even JSON, as a JavaScript pool writes it).
    NaN,
    /// `0`.
    Zero,
    /// `-1`.
    Negative,
    /// `1e300`: valid, but no share will ever meet it.
    Huge,
}

impl BadDifficulty {
    /// Returns the number as it appears on the wire.
    fn literal(self) -> &'static str {
        match self {
            BadDifficulty::NaN => "NaN",
            BadDifficulty::Zero => "0",
            BadDifficulty::Negative => "-1",
            BadDifficulty::Huge => "1e300",
        }
    }
}

/// Something going wrong with a pool, on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Once: close every open connection.
    CloseAll,
    /// Mode: read everything, answer nothing, send no jobs (a hung pool).
    Blackhole,
    /// Mode: send every answer this long after its request.
    Delay(Duration),
    /// Once: send lines that are not Stratum (broken JSON, a non-object, an
    /// unknown method, an answer to nothing, a notify with missing params).
    Garbage,
    /// Once: send a broken `mining.set_difficulty`. The pool keeps judging
    /// shares at its real difficulty.
    BadDifficulty(BadDifficulty),
    /// Once: send a line of [`HUGE_LINE_BYTES`], longer than any line limit.
    HugeLine,
    /// Mode: refuse every share (code 20, counted as `injected`).
    RejectAll,
    /// Mode: accept new connections and reset them at once.
    RefuseConnections,
    /// Once: send `client.reconnect` with these params.
    Reconnect {
        /// Host to move to; `None` means the same one.
        host: Option<String>,
        /// Port to move to; `None` means the same one.
        port: Option<u16>,
        /// Seconds to wait first.
        wait_secs: Option<u64>,
    },
    /// Once: give connections a new extranonce1 with
    /// `mining.set_extranonce`, used for jobs sent from then on. Real pools
    /// send it only to connections that sent `mining.extranonce.subscribe`;
    /// `to_all` sends it to the others too (a broken pool).
    SetExtranonce {
        /// Also send it to connections that did not subscribe to it.
        to_all: bool,
    },
}

/// The length of the [`Fault::HugeLine`] line: just over 1 MiB, the longest
/// line a pool-side reader is expected to take.
pub const HUGE_LINE_BYTES: usize = 1024 * 1024 + 64;

/// The faults that last: what sessions consult before answering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Modes {
    pub(crate) blackhole: bool,
    pub(crate) delay: Option<Duration>,
    pub(crate) reject_all: bool,
    pub(crate) refuse_connections: bool,
}

impl Modes {
    /// Switches on `fault` if it is a mode; returns false for a one-shot.
    pub(crate) fn switch_on(&mut self, fault: &Fault) -> bool {
        match fault {
            Fault::Blackhole => self.blackhole = true,
            Fault::Delay(by) => self.delay = Some(*by),
            Fault::RejectAll => self.reject_all = true,
            Fault::RefuseConnections => self.refuse_connections = true,
            _ => return false,
        }
        true
    }
}

/// Returns the lines of [`Fault::Garbage`].
pub(crate) fn garbage_lines() -> Vec<String> {
    [
        "}{ this is not json",
        "\"a bare string\"",
        "[1,2,3]",
        r#"{"id":null,"method":"mining.frobnicate","params":[]}"#,
        r#"{"id":987654,"result":true,"error":null}"#,
        r#"{"id":null,"method":"mining.notify","params":["x"]}"#,
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Returns the line of [`Fault::BadDifficulty`].
pub(crate) fn bad_difficulty_line(bad: BadDifficulty) -> String {
    format!(
        r#"{{"id":null,"method":"mining.set_difficulty","params":[{}]}}"#,
        bad.literal()
    )
}

/// Returns the line of [`Fault::HugeLine`]: a `client.show_message` whose
/// text makes it [`HUGE_LINE_BYTES`] long.
pub(crate) fn huge_line() -> String {
    let head = r#"{"id":null,"method":"client.show_message","params":[""#;
    let tail = r#""]}"#;
    let mut line = String::with_capacity(HUGE_LINE_BYTES);
    line.push_str(head);
    line.extend(std::iter::repeat_n(
        'x',
        HUGE_LINE_BYTES - head.len() - tail.len(),
    ));
    line.push_str(tail);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_switch_on_and_one_shots_do_not() {
        let mut modes = Modes::default();
        assert!(modes.switch_on(&Fault::Delay(Duration::from_millis(5))));
        assert!(!modes.switch_on(&Fault::CloseAll));
        assert_eq!(modes.delay, Some(Duration::from_millis(5)));
        assert!(!modes.blackhole);
    }

    #[test]
    fn the_huge_line_is_valid_json_of_the_stated_length() {
        let line = huge_line();
        assert_eq!(line.len(), HUGE_LINE_BYTES);
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
        assert!(bad_difficulty_line(BadDifficulty::Zero).ends_with("[0]}"));
    }
}
