//! Shares on the wire to a Stratum v1 pool: each `mining.submit` line is
//! built in one buffer (no intermediate strings per field), and shares are
//! written in batches — every queued share fed, one flush — so a busy pool
//! costs one write per batch rather than one per share.

use std::fmt::Write;

use crate::pool::Forward;

/// Shares written between two flushes at most, so the pool's answers and
/// the health tick are not starved behind a long queue.
pub(super) const MAX_BATCH: usize = 256;

/// Returns `worker` as a JSON string, to be spliced into every submit.
pub(super) fn json_string(worker: &str) -> String {
    let mut out = String::with_capacity(worker.len() + 2);
    push_json_str(&mut out, worker);
    out
}

/// Returns the `mining.submit` line for `share` with request `id`;
/// `worker_json` is the worker name as a JSON string.
pub(super) fn submit_line(id: u64, worker_json: &str, share: &Forward) -> String {
    let mut line = String::with_capacity(
        96 + worker_json.len() + share.pool_job_id.len() + 2 * share.extranonce2.len(),
    );
    // Writing to a String cannot fail.
    let _ = write!(
        line,
        r#"{{"id":{id},"method":"mining.submit","params":[{worker_json},"#
    );
    push_json_str(&mut line, &share.pool_job_id);
    line.push_str(",\"");
    for byte in &share.extranonce2 {
        let _ = write!(line, "{byte:02x}");
    }
    let _ = write!(line, r#"","{:08x}","{:08x}""#, share.ntime, share.nonce);
    if let Some(bits) = share.version_bits {
        let _ = write!(line, r#","{bits:08x}""#);
    }
    line.push_str("]}");
    line
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hashsplit_stratum::{ClientMethod, Id, Incoming, Method, Submit};
    use tokio::sync::oneshot;

    use super::*;

    fn share(job: &str, version_bits: Option<u32>) -> Forward {
        Forward {
            pool_job_id: Arc::from(job),
            extranonce2: vec![0, 0xab, 0x01, 0xff],
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
            let line = submit_line(42, &json_string(worker), &share(job, bits));
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
