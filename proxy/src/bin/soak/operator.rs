//! What the operator does: the config file rewritten and reloaded by
//! SIGHUP and through the control API, and what the proxy must have
//! counted for it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use miner_sim::SimPool;

use crate::chaos::POOLS;
use crate::child::{Exposition, Proxy};

/// The config file and what the soak last wrote into it.
pub struct ConfigFile {
    pub path: PathBuf,
    pub token: String,
    pool_urls: Vec<String>,
    handshake_timeout: Duration,
    token_path: PathBuf,
}

/// One version of the operator's policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variant {
    /// Cap of pool `a`.
    pub cap_a: f64,
    /// Weight of pool `b`.
    pub weight_b: f64,
    /// Whether pool `c` is in the file.
    pub with_c: bool,
    /// A file `hashsplit check` refuses (a cap above 1).
    pub broken: bool,
}

impl Variant {
    /// Every pool, even weights and caps: the file at the start and at
    /// every quiet point.
    pub const BASE: Variant = Variant {
        cap_a: 0.5,
        weight_b: 1.0,
        with_c: true,
        broken: false,
    };

    /// Returns the `n`th change of the rotation (never [`Variant::BASE`]).
    pub fn nth(n: u64) -> Variant {
        let caps = [0.4, 0.6, 0.35];
        Variant {
            cap_a: caps[(n % 3) as usize],
            weight_b: if n.is_multiple_of(2) { 2.0 } else { 1.0 },
            with_c: n % 3 != 1,
            broken: n % 4 == 3,
        }
    }
}

impl ConfigFile {
    /// Writes the token file and the base config into `dir`.
    pub fn create(
        dir: &Path,
        pools: &[SimPool],
        handshake_timeout: Duration,
    ) -> anyhow::Result<ConfigFile> {
        let token = format!("soak-{:016x}", rand::random::<u64>());
        let token_path = dir.join("token");
        std::fs::write(&token_path, format!("{token}\n")).context("writing the token file")?;
        let file = ConfigFile {
            path: dir.join("hashsplit.toml"),
            token,
            pool_urls: pools
                .iter()
                .map(|p| format!("stratum+tcp://{}", p.addr()))
                .collect(),
            handshake_timeout,
            token_path,
        };
        file.write(Variant::BASE)?;
        Ok(file)
    }

    /// Replaces the file with `variant` in one step.
    pub fn write(&self, variant: Variant) -> anyhow::Result<()> {
        let mut toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nhandshake_timeout = \"{}s\"\n\
             idle_timeout = \"60s\"\nmax_connections = 2000\n\
             [downstream]\nmin_difficulty = 0.000001\ninitial_difficulty = 0.00003\n\
             share_rate = 60\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\
             [http]\ntoken_file = {:?}\n\
             [policy]\nmax_share = 0.5\nwindow = \"2m\"\nmin_dwell = \"10s\"\n\
             rebalance_every = \"2s\"\n",
            self.handshake_timeout.as_secs(),
            self.token_path.display().to_string(),
        );
        for (i, (name, url)) in POOLS.iter().zip(&self.pool_urls).enumerate() {
            if i == 2 && !variant.with_c {
                continue;
            }
            toml.push_str(&format!(
                "\n[[pool]]\nname = \"{name}\"\nurl = \"{url}\"\nuser = \"soak\"\n"
            ));
            match i {
                0 if variant.broken => toml.push_str("max_share = 1.5\n"),
                0 => toml.push_str(&format!("max_share = {}\n", variant.cap_a)),
                1 => toml.push_str(&format!("weight = {}\n", variant.weight_b)),
                _ => {}
            }
        }
        let staged = self.path.with_extension("toml.new");
        std::fs::write(&staged, toml).context("writing the config")?;
        std::fs::rename(&staged, &self.path).context("replacing the config")?;
        Ok(())
    }
}

/// Reloads the proxy's config and keeps count of what it should have
/// counted.
pub struct Operator {
    pub config: ConfigFile,
    applied: f64,
    rejected: f64,
    unauthorized: f64,
}

impl Operator {
    pub fn new(config: ConfigFile) -> Operator {
        Operator {
            config,
            applied: 0.0,
            rejected: 0.0,
            unauthorized: 0.0,
        }
    }

    /// Writes `variant` and sends SIGHUP.
    pub fn sighup(&mut self, proxy: &Proxy, variant: Variant) -> anyhow::Result<()> {
        self.config.write(variant)?;
        proxy.signal("HUP").context("reload by SIGHUP")?;
        if variant.broken {
            self.rejected += 1.0;
        } else {
            self.applied += 1.0;
        }
        Ok(())
    }

    /// Writes `variant` and reloads it through the control API, changes a
    /// weight through it, and tries it once with a wrong token; returns
    /// what was not answered as it should have been.
    pub async fn api(&mut self, proxy: &Proxy, variant: Variant) -> Vec<String> {
        let mut failures = Vec::new();
        if let Err(e) = self.config.write(variant) {
            return vec![format!("{e:#}")];
        }
        let token = self.config.token.clone();
        let reload = proxy
            .request("POST", "/api/v1/reload", Some(&token), "")
            .await;
        let expected = if variant.broken { 422 } else { 200 };
        expect_status(&mut failures, "POST /api/v1/reload", reload, expected);
        // A file the API refuses is answered 422 with its errors and
        // counted as a rejected reload, as a SIGHUP of it is.
        if variant.broken {
            self.rejected += 1.0;
        } else {
            self.applied += 1.0;
        }
        let patch = proxy
            .request("PATCH", "/api/v1/pools/b", Some(&token), r#"{"weight": 3}"#)
            .await;
        expect_status(&mut failures, "PATCH /api/v1/pools/b", patch, 200);
        self.applied += 1.0;
        let wrong = proxy
            .request("POST", "/api/v1/reload", Some("not-the-token"), "")
            .await;
        expect_status(
            &mut failures,
            "POST /api/v1/reload (wrong token)",
            wrong,
            401,
        );
        self.unauthorized += 1.0;
        failures
    }

    /// Compares the proxy's reload and refusal counters with what was done.
    pub fn check(&self, metrics: &Exposition) -> Vec<String> {
        let mut failures = Vec::new();
        let applied = metrics.sum("hashsplit_config_reloads_total", &[("result", "applied")]);
        let rejected = metrics.sum("hashsplit_config_reloads_total", &[("result", "rejected")]);
        if (applied, rejected) != (self.applied, self.rejected) {
            failures.push(format!(
                "reloads applied {applied} and rejected {rejected}, expected {} and {}",
                self.applied, self.rejected
            ));
        }
        let unauthorized = metrics.sum("hashsplit_api_unauthorized_total", &[]);
        if unauthorized != self.unauthorized {
            failures.push(format!(
                "{unauthorized} unauthorized API requests counted, expected {}",
                self.unauthorized
            ));
        }
        failures
    }
}

fn expect_status(
    failures: &mut Vec<String>,
    what: &str,
    got: anyhow::Result<(u16, String)>,
    want: u16,
) {
    match got {
        Ok((status, _)) if status == want => {}
        Ok((status, body)) => {
            failures.push(format!("{what} answered {status}, not {want}: {body}"))
        }
        Err(e) => failures.push(format!("{what}: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_changes_the_file_and_sometimes_breaks_it() {
        let variants: Vec<_> = (0..12).map(Variant::nth).collect();
        assert!(variants.iter().all(|v| *v != Variant::BASE));
        assert!(variants.iter().any(|v| v.broken));
        assert!(variants.iter().any(|v| !v.with_c && !v.broken));
    }
}
