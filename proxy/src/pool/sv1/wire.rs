//! Shares on the wire to a Stratum v1 pool: each `mining.submit` line is
//! built in one buffer (no intermediate strings per field), and shares are
//! written in batches — every queued share fed, one flush — so a busy pool
//! costs one write per batch rather than one per share.

use std::fmt::Write;

use futures_util::SinkExt;
use tokio::time::{Instant, timeout};

use super::{Link, Pending, PoolFramed, WRITE_TIMEOUT};
use crate::pool::Forward;
use crate::pool::backend::LinkError;
use crate::pool::owner::Pool;

/// Shares written between two flushes at most, so the pool's answers and
/// the health tick are not starved behind a long queue.
const MAX_BATCH: usize = 256;

/// Returns `worker` as a JSON string, to be spliced into every submit.
pub(super) fn json_string(worker: &str) -> String {
    let mut out = String::with_capacity(worker.len() + 2);
    push_json_str(&mut out, worker);
    out
}

/// Writes the `mining.submit` line for `share` with request `id` into
/// `line` (cleared first, so one buffer serves every share);
/// `worker_json` is the worker name as a JSON string.
pub(super) fn write_submit(line: &mut String, id: u64, worker_json: &str, share: &Forward) {
    line.clear();
    line.push_str(r#"{"id":"#);
    // Writing to a String cannot fail.
    let _ = write!(line, "{id}");
    line.push_str(r#","method":"mining.submit","params":["#);
    line.push_str(worker_json);
    line.push(',');
    push_json_str(line, &share.pool_job_id);
    line.push_str(",\"");
    push_hex(line, &share.extranonce2);
    line.push_str("\",\"");
    push_hex(line, &share.ntime.to_be_bytes());
    line.push_str("\",\"");
    push_hex(line, &share.nonce.to_be_bytes());
    line.push('"');
    if let Some(bits) = share.version_bits {
        line.push_str(",\"");
        push_hex(line, &bits.to_be_bytes());
        line.push('"');
    }
    line.push_str("]}");
}

/// Appends `bytes` in lower-case hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// Appends `s` as a JSON string: as is when it needs no escaping (job ids
/// and worker names nearly always), through serde_json otherwise.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(s).to_string());
    }
}

impl Link {
    /// Writes `first` and every share queued behind it (block candidates
    /// first, at most [`MAX_BATCH`]), then flushes once, all within
    /// [`WRITE_TIMEOUT`].
    pub(super) async fn forward(
        &mut self,
        up: &mut Pool,
        framed: &mut PoolFramed,
        first: Forward,
    ) -> Result<(), LinkError> {
        let mut next = Some(first);
        let mut fed = 0;
        let batch = async {
            while let Some(share) = next.take() {
                if self.submit(up, share) {
                    let line = self.line.as_str();
                    framed.feed(line).await.map_err(LinkError::Write)?;
                }
                fed += 1;
                if fed < MAX_BATCH {
                    next = up.blocks.try_recv().or_else(|_| up.shares.try_recv()).ok();
                }
            }
            SinkExt::<String>::flush(framed)
                .await
                .map_err(LinkError::Write)
        };
        // A share taken from the queue is in `pending` before any await, so
        // a stalled write loses none: failing the link settles them all.
        timeout(WRITE_TIMEOUT, batch)
            .await
            .unwrap_or(Err(LinkError::WriteStalled(WRITE_TIMEOUT.as_secs())))
    }

    /// Records `share` as sent and writes its line into `self.line`;
    /// settles it as unavailable instead (and returns false) if the
    /// connection cannot take shares yet.
    fn submit(&mut self, up: &Pool, share: Forward) -> bool {
        if !self.authorized || self.extranonce.is_none() {
            up.settle_unsent(share);
            return false;
        }
        let sent = Instant::now();
        self.next_id += 1;
        write_submit(&mut self.line, self.next_id, &self.worker_json, &share);
        self.pending.insert(
            self.next_id,
            Pending::Submit {
                settlement: share.settlement,
                sent,
            },
        );
        self.owed_since.get_or_insert(sent);
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hashsplit_stratum::{ClientMethod, Id, Incoming, Method, Submit};
    use tokio::sync::oneshot;

    use super::*;

    fn share(job: &str, version_bits: Option<u32>) -> Forward {
        Forward {
            pool_job_id: Arc::from(job),
            extranonce2: crate::jobs::PoolExtranonce2::new(1, &[0xab], &[0x01, 0xff]),
            ntime: 0x6543_21ff,
            nonce: 0x0000_00a1,
            version_bits,
            settlement: crate::pool::Settlement::new(
                crate::metrics::ShareSeries::new("p").submit(0.0),
                oneshot::channel().0,
            ),
        }
    }

    fn parsed(line: &str) -> (Id, Submit) {
        match Incoming::<ClientMethod>::from_line(line).expect("a valid line") {
            Incoming::Call {
                id,
                method: ClientMethod::Submit(submit),
            } => (id, submit),
            other => panic!("not a submit: {other:?}"),
        }
    }

    #[test]
    fn a_submit_line_reads_back_as_the_share_it_was_built_from() {
        for (worker, job, bits) in [
            ("bc1q.rig", "6a1f", None),
            ("odd \"name\"\\", "job\n\u{e9}", Some(0x1fff_e000)),
        ] {
            let mut line = String::from("left over from the last share");
            write_submit(&mut line, 42, &json_string(worker), &share(job, bits));
            let expected = Submit {
                worker: worker.into(),
                job_id: job.into(),
                extranonce2: "00ab01ff".into(),
                ntime: "654321ff".into(),
                nonce: "000000a1".into(),
                version_bits: bits.map(|b| format!("{b:08x}")),
            };
            assert_eq!(parsed(&line), (Id::from(42), expected.clone()), "{line}");
            // The same line the generic encoder would write, field for field.
            let generic = ClientMethod::Submit(expected).to_line(Id::from(42));
            assert_eq!(parsed(&line), parsed(&generic));
        }
    }
}
