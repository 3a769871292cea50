//! Probing a Stratum pool: the handshake the proxy would do (configure,
//! subscribe, authorize), then listening for its difficulty and first job.
//! No share is ever sent.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hashsplit_policy::PoolConfig;
use hashsplit_stratum::{
    ClientMethod, Configure, ConfigureResult, Id, Incoming, LineCodec, Method, Response,
    ServerMethod, SubscribeResult,
};
use tokio::time::{Instant, timeout};
use tokio_util::codec::Framed;

use super::PoolReport;
use crate::jobs::Layout;
use crate::transport;

/// How long to listen after authorizing for the difficulty and a job.
const LISTEN: Duration = Duration::from_secs(8);

const CONFIGURE: u64 = 1;
const SUBSCRIBE: u64 = 2;
const AUTHORIZE: u64 = 3;

/// What the pool said so far.
#[derive(Default)]
struct Heard {
    subscribed: bool,
    authorized: bool,
    difficulty: Option<f64>,
    job: bool,
}

/// Asks the Stratum pool `pool` what it offers, into `report`.
pub(super) async fn probe(pool: &PoolConfig, layout: Layout, mask: u32, report: &mut PoolReport) {
    let started = Instant::now();
    let stream = match transport::connect(&pool.url, &pool.tls).await {
        Ok(stream) => stream,
        Err(e) => {
            report.problems.push(format!("connect: {e}"));
            return;
        }
    };
    report.facts.push(format!(
        "connected in {} ms{}",
        started.elapsed().as_millis(),
        if pool.url.scheme.is_tls() {
            " (TLS, certificate accepted)"
        } else {
            ""
        }
    ));
    let mut framed = Framed::new(stream, LineCodec::new(LineCodec::UPSTREAM_MAX_LENGTH));
    let mut requests = Vec::new();
    if mask != 0 {
        let configure = ClientMethod::Configure(Configure::version_rolling(mask, 0));
        requests.push(configure.to_line(Id::from(CONFIGURE)));
    }
    let subscribe = ClientMethod::Subscribe {
        user_agent: Some(format!("hashsplit/{} (probe)", env!("CARGO_PKG_VERSION"))),
        session_id: None,
    };
    requests.push(subscribe.to_line(Id::from(SUBSCRIBE)));
    let authorize = ClientMethod::Authorize {
        user: pool.user.clone(),
        password: Some(pool.password.clone()),
    };
    requests.push(authorize.to_line(Id::from(AUTHORIZE)));
    let sent = Instant::now();
    for line in requests {
        if let Err(e) = framed.feed(line).await {
            report.problems.push(format!("write: {e}"));
            return;
        }
    }
    if let Err(e) = SinkExt::<String>::flush(&mut framed).await {
        report.problems.push(format!("write: {e}"));
        return;
    }
    let mut heard = Heard::default();
    let mut deadline = sent + super::PROBE_TIMEOUT;
    while !(heard.subscribed && heard.authorized && heard.difficulty.is_some() && heard.job) {
        let line = match timeout(
            deadline.saturating_duration_since(Instant::now()),
            framed.next(),
        )
        .await
        {
            Err(_) => break,
            Ok(None) => {
                report
                    .problems
                    .push("the pool closed the connection".into());
                break;
            }
            Ok(Some(Err(e))) => {
                report.problems.push(format!("read: {e}"));
                break;
            }
            Ok(Some(Ok(line))) => line,
        };
        match Incoming::<ServerMethod>::from_line(&line) {
            Ok(Incoming::Response(response)) => {
                let stop = on_answer(&response, &mut heard, sent, layout, mask, report);
                if stop {
                    return;
                }
                if heard.authorized {
                    deadline = deadline.min(Instant::now() + LISTEN);
                }
            }
            Ok(Incoming::Call { method, .. }) => on_call(method, &mut heard, sent, report),
            Err(e) => report
                .facts
                .push(format!("unreadable line from the pool: {e}")),
        }
    }
    if !heard.subscribed || !heard.authorized {
        report
            .problems
            .push("no answer to subscribe and authorize".into());
    } else if !heard.job {
        report.problems.push(format!(
            "no job within {}s of authorizing",
            LISTEN.as_secs()
        ));
    } else if heard.difficulty.is_none() {
        report
            .facts
            .push("no mining.set_difficulty: the pool's default, 1".into());
    }
}

/// Reads an answer to one of the probe's requests; returns true when the
/// pool cannot be used and listening further is pointless.
fn on_answer(
    response: &Response,
    heard: &mut Heard,
    sent: Instant,
    layout: Layout,
    mask: u32,
    report: &mut PoolReport,
) -> bool {
    match response.id.as_u64() {
        Some(CONFIGURE) => {
            let granted = ConfigureResult::from_result(&response.result)
                .ok()
                .and_then(|r| r.version_rolling)
                .filter(|_| response.error.is_none());
            report.facts.push(match granted {
                Some(granted) => format!("version rolling: mask {granted:08x} (asked {mask:08x})"),
                None => "no version rolling (miners roll none on this pool)".into(),
            });
            false
        }
        Some(SUBSCRIBE) => {
            heard.subscribed = true;
            if let Some(error) = &response.error {
                report
                    .problems
                    .push(format!("subscribe refused: {}", error.message));
                return true;
            }
            let result = match SubscribeResult::from_result(&response.result) {
                Ok(result) => result,
                Err(e) => {
                    report
                        .problems
                        .push(format!("subscribe answer unreadable: {e}"));
                    return true;
                }
            };
            let needed = layout.extranonce1_size + layout.extranonce2_size;
            let fit = if result.extranonce2_size >= needed {
                format!("fits the miners' {needed}")
            } else if result.extranonce2_size > layout.extranonce1_size {
                format!(
                    "under the miners' {needed}: new miners get a {}-byte extranonce2",
                    result.extranonce2_size - layout.extranonce1_size
                )
            } else {
                report.problems.push(format!(
                    "extranonce2 of {} bytes leaves no room after the {}-byte miner extranonce1",
                    result.extranonce2_size, layout.extranonce1_size
                ));
                "too small".into()
            };
            report.facts.push(format!(
                "subscribe answered in {} ms: extranonce1 {} bytes, extranonce2 {} bytes ({fit})",
                sent.elapsed().as_millis(),
                result.extranonce1.len(),
                result.extranonce2_size
            ));
            false
        }
        Some(AUTHORIZE) => {
            heard.authorized = true;
            let accepted = response.error.is_none() && response.result.as_bool() != Some(false);
            if accepted {
                report.facts.push("worker authorized".into());
                false
            } else {
                report.problems.push("the pool refused the worker".into());
                true
            }
        }
        _ => false,
    }
}

fn on_call(method: ServerMethod, heard: &mut Heard, sent: Instant, report: &mut PoolReport) {
    match method {
        ServerMethod::SetDifficulty(difficulty) => {
            if heard.difficulty.is_none() {
                report
                    .facts
                    .push(format!("difficulty {}", difficulty.as_f64()));
            }
            heard.difficulty = Some(difficulty.as_f64());
        }
        ServerMethod::Notify(notify) if !heard.job => {
            heard.job = true;
            report.facts.push(format!(
                "first job after {} ms (nbits {:08x}, {} merkle steps)",
                sent.elapsed().as_millis(),
                notify.nbits,
                notify.merkle_branch.len()
            ));
        }
        ServerMethod::SetVersionMask(mask) => {
            report.facts.push(format!("version mask set to {mask:08x}"));
        }
        _ => {}
    }
}
