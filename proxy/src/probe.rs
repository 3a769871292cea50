//! `hashsplit check --probe`: asks every configured pool and node what it
//! offers, without sending any work, and says whether the configuration
//! will work with it.
//!
//! - A Stratum pool ([`stratum`]) is connected to as the proxy would
//!   (configure, subscribe, authorize) and heard until it has said its
//!   difficulty and sent a job, or for a few seconds: extranonce sizes
//!   (against the miners' layout), version mask, difficulty, latency.
//! - A node ([`node`]) is asked `getblockchaininfo` and
//!   `getblocktemplate`: its chain (against the configured one), sync
//!   state, and whether the payout address is one of its chain.
//!
//! Every pool is probed at once; each report says what was learnt and,
//! when something stops the pool from being used, why.

mod node;
mod stratum;

use std::fmt::Write as _;
use std::time::Duration;

use hashsplit_policy::PoolConfig;

use crate::config::Config;
use crate::jobs::Layout;

/// Longest a probe of one pool may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What one pool said.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolReport {
    /// The pool's name.
    pub name: String,
    /// Where it was asked.
    pub url: String,
    /// What it offers, one fact a line.
    pub facts: Vec<String>,
    /// Why the configuration will not work with it, if it will not.
    pub problems: Vec<String>,
}

impl PoolReport {
    fn new(pool: &PoolConfig) -> Self {
        PoolReport {
            name: pool.name.clone(),
            url: pool.url.to_string(),
            facts: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Returns whether the pool can be used as configured.
    pub fn usable(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Probes every enabled pool of `config` at once.
pub async fn probe(config: &Config) -> Vec<PoolReport> {
    let layout = Layout {
        extranonce1_size: usize::from(config.downstream.extranonce1_size),
        extranonce2_size: usize::from(config.downstream.extranonce2_size),
    };
    let mask = config.downstream.version_mask;
    let probes = config.policy.pools.iter().map(|pool| async move {
        let mut report = PoolReport::new(pool);
        let asked = async {
            match &pool.node {
                Some(node) => node::probe(pool, node, &mut report).await,
                None => stratum::probe(pool, layout, mask, &mut report).await,
            }
        };
        if tokio::time::timeout(PROBE_TIMEOUT, asked).await.is_err() {
            report.problems.push(format!(
                "no complete answer within {}s",
                PROBE_TIMEOUT.as_secs()
            ));
        }
        report
    });
    futures_util::future::join_all(probes).await
}

/// Returns the reports as text: a block per pool and a verdict.
pub fn render(reports: &[PoolReport]) -> String {
    let mut out = String::new();
    for report in reports {
        let verdict = if report.usable() {
            "ok"
        } else {
            "WILL NOT WORK"
        };
        let _ = writeln!(out, "{}  {}  {verdict}", report.name, report.url);
        for fact in &report.facts {
            let _ = writeln!(out, "    {fact}");
        }
        for problem in &report.problems {
            let _ = writeln!(out, "    problem: {problem}");
        }
    }
    let usable = reports.iter().filter(|r| r.usable()).count();
    let _ = writeln!(
        out,
        "\n{usable} of {} pools usable{}",
        reports.len(),
        if usable == reports.len() {
            ": the configuration will work"
        } else if usable > 0 {
            ": the proxy runs, without the others"
        } else {
            ": no pool can take work"
        }
    );
    out
}
