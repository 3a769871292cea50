//! The control API: changes to pools made by editing the config's TOML
//! text, checked by the same validation as the file, and applied by the
//! same reload path as SIGHUP.
//!
//! An edit starts from the text of the config in force, changes the named
//! keys of one `[[pool]]` with `toml_edit` (so comments and layout
//! survive), and is parsed with [`Config::from_toml_str`]: a bad value gets
//! the errors `hashsplit check` would print. A valid one is, if
//! `[http] write_config` is on, written to the config file first, then
//! handed to the proxy's reload entry point ([`Apply`]). Edits are applied
//! one at a time.
//!
//! Every control request needs `Authorization: Bearer <token>` with the
//! token in `[http] token_file`; a missing or wrong token gets 401, changes
//! nothing and is counted in `hashsplit_api_unauthorized_total`.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Map, Value, json};
use thiserror::Error;
use tokio::sync::{Mutex, watch};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::reload::Reloaded;

/// The proxy's reload entry point: applies a validated config as SIGHUP
/// does, without disconnecting a miner.
pub type Apply = Arc<dyn Fn(Config) -> Reloaded + Send + Sync>;

/// The keys a pool change may set.
pub const POOL_KEYS: [&str; 4] = ["max_share", "weight", "network_share", "enabled"];

/// What the control API is built from.
pub struct ControlSettings {
    /// The bearer token requests must carry.
    pub token: String,
    /// Where validated configs are applied.
    pub apply: Apply,
    /// The config in force, whose text an edit starts from.
    pub config: watch::Receiver<Arc<Config>>,
    /// The config file, for reloads and writing edits back.
    pub file: Option<PathBuf>,
    /// Whether edits are written to `file` (`[http] write_config`).
    pub write_back: bool,
    /// Where refused tokens are counted.
    pub metrics: Metrics,
}

/// What control requests need: the settings, and the lock that applies
/// edits one at a time.
pub struct Control {
    settings: ControlSettings,
    serial: Mutex<()>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("file", &self.settings.file)
            .field("write_back", &self.settings.write_back)
            .finish_non_exhaustive()
    }
}

/// Why a control request was refused.
#[derive(Debug, Error)]
pub enum Refused {
    /// No token, or the wrong one.
    #[error("a valid bearer token is needed")]
    Unauthorized,
    /// The request body is not what the endpoint takes.
    #[error("{0}")]
    BadRequest(String),
    /// No pool of that name in the config in force.
    #[error("no pool named {0:?}")]
    NoSuchPool(String),
    /// The edited config is invalid: every problem, as `check` prints them.
    #[error("the change makes the config invalid")]
    Invalid(Vec<String>),
    /// There is no config file to reload or write.
    #[error("{0}")]
    NoFile(&'static str),
    /// The config file could not be read or written.
    #[error("{0}")]
    File(String),
}

impl Refused {
    /// Returns the HTTP status and JSON body of the refusal.
    pub fn to_answer(&self) -> (StatusCode, Value) {
        let status = match self {
            Refused::Unauthorized => StatusCode::UNAUTHORIZED,
            Refused::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refused::NoSuchPool(_) => StatusCode::NOT_FOUND,
            Refused::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refused::NoFile(_) => StatusCode::CONFLICT,
            Refused::File(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match self {
            Refused::Invalid(errors) => json!({ "error": self.to_string(), "errors": errors }),
            _ => json!({ "error": self.to_string() }),
        };
        (status, body)
    }
}

/// What an applied change did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// What the reload changed (`name: old -> new`, pools added or removed).
    pub changes: Vec<String>,
    /// Warnings about the new config, as `check` prints them.
    pub warnings: Vec<String>,
    /// Whether the config file was rewritten.
    pub written: bool,
}

impl Applied {
    /// Returns the JSON body of the answer.
    pub fn to_json(&self) -> Value {
        json!({
            "changes": self.changes,
            "warnings": self.warnings,
            "written": self.written,
        })
    }
}

impl Control {
    /// Returns the control side for `settings`.
    pub fn new(settings: ControlSettings) -> Self {
        Control {
            settings,
            serial: Mutex::new(()),
        }
    }

    /// Checks the request's bearer token, counting a refusal.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), Refused> {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(token) if same(token.as_bytes(), self.settings.token.as_bytes()) => Ok(()),
            _ => {
                self.settings.metrics.api_unauthorized.inc();
                Err(Refused::Unauthorized)
            }
        }
    }

    /// Changes pool `name` as `body` (a JSON object of [`POOL_KEYS`]) says.
    pub async fn change_pool(&self, name: &str, body: &[u8]) -> Result<Applied, Refused> {
        let changes = parse_changes(body)?;
        let _one_at_a_time = self.serial.lock().await;
        let text = self.settings.config.borrow().source.to_string();
        let edited = edit_pool(&text, name, &changes)?;
        self.apply_text(edited, true).await
    }

    /// Reloads the config file, as SIGHUP does.
    pub async fn reload(&self) -> Result<Applied, Refused> {
        let Some(file) = &self.settings.file else {
            return Err(Refused::NoFile(
                "the proxy was not started from a config file",
            ));
        };
        let _one_at_a_time = self.serial.lock().await;
        // Config files are small: a blocking read is quicker than a thread.
        let result = match std::fs::read_to_string(file) {
            Ok(text) => self.apply_text(text, false).await,
            Err(e) => Err(Refused::File(format!("reading {}: {e}", file.display()))),
        };
        if let Err(refused) = &result {
            // A refused file is a refused reload, exactly as with SIGHUP:
            // counted, and the reload-failed alert sees it.
            self.settings.metrics.count_reload(false);
            tracing::error!(file = %file.display(), %refused, "config reload refused; the running policy stays in force");
        }
        result
    }

    async fn apply_text(&self, text: String, write: bool) -> Result<Applied, Refused> {
        let (config, warnings) = match Config::from_toml_str(&text) {
            Ok(parsed) => parsed,
            Err(error) => {
                let errors = error.errors.iter().map(ToString::to_string).collect();
                return Err(Refused::Invalid(errors));
            }
        };
        let written = match (&self.settings.file, write && self.settings.write_back) {
            (Some(file), true) => {
                write_file(file, &text)?;
                true
            }
            _ => false,
        };
        let reloaded = (self.settings.apply)(config);
        Ok(Applied {
            changes: reloaded.changes,
            warnings: warnings.iter().map(ToString::to_string).collect(),
            written,
        })
    }
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a change body: an object of [`POOL_KEYS`], numbers (or `null` to
/// drop the key) and `enabled` a boolean.
fn parse_changes(body: &[u8]) -> Result<Map<String, Value>, Refused> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refused::BadRequest(format!("the body is not JSON: {e}")))?;
    let Value::Object(changes) = value else {
        return Err(Refused::BadRequest(
            "the body must be a JSON object".to_owned(),
        ));
    };
    if changes.is_empty() {
        return Err(Refused::BadRequest(format!(
            "nothing to change: give one of {}",
            POOL_KEYS.join(", ")
        )));
    }
    for (key, value) in &changes {
        let fits = match key.as_str() {
            "enabled" => value.is_boolean(),
            "max_share" | "weight" | "network_share" => value.is_number() || value.is_null(),
            _ => {
                return Err(Refused::BadRequest(format!(
                    "unknown key {key:?}, expected one of {}",
                    POOL_KEYS.join(", ")
                )));
            }
        };
        if !fits {
            let wanted = if key == "enabled" {
                "true or false"
            } else {
                "a number or null"
            };
            return Err(Refused::BadRequest(format!("{key} must be {wanted}")));
        }
    }
    Ok(changes)
}

/// Returns `text` with pool `name`'s keys set as `changes` say.
fn edit_pool(text: &str, name: &str, changes: &Map<String, Value>) -> Result<String, Refused> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| Refused::File(format!("the config in force does not parse: {e}")))?;
    let pool = doc
        .get_mut("pool")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
        .and_then(|pools| {
            pools
                .iter_mut()
                .find(|pool| pool.get("name").and_then(toml_edit::Item::as_str) == Some(name))
        })
        .ok_or_else(|| Refused::NoSuchPool(name.to_owned()))?;
    for (key, value) in changes {
        match value {
            Value::Null => {
                pool.remove(key);
            }
            Value::Bool(true) => {
                // Enabled is the default: the key goes, as an operator would
                // write it.
                pool.remove(key);
            }
            Value::Bool(false) => pool[key.as_str()] = toml_edit::value(false),
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                pool[key.as_str()] = toml_edit::value(x);
            }
            _ => {}
        }
    }
    Ok(doc.to_string())
}

/// Replaces `file` with `text` in one step (a reader sees old or new).
fn write_file(file: &std::path::Path, text: &str) -> Result<(), Refused> {
    let mut temporary = file.as_os_str().to_owned();
    temporary.push(".hashsplit-new");
    let temporary = PathBuf::from(temporary);
    let failed = |e: std::io::Error| Refused::File(format!("writing {}: {e}", file.display()));
    std::fs::write(&temporary, text).map_err(failed)?;
    std::fs::rename(&temporary, file).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# my farm\n[policy]\nmax_share = 0.6\n\n[[pool]]\nname = \"a\" # first\n\
        url = \"stratum+tcp://a.example:3333\"\nuser = \"u\"\n\n[[pool]]\nname = \"b\"\n\
        url = \"stratum+tcp://b.example:3333\"\nuser = \"u\"\nmax_share = 0.5\n";

    fn changes(json: &str) -> Map<String, Value> {
        parse_changes(json.as_bytes()).unwrap()
    }

    #[test]
    fn an_edit_sets_the_keys_and_keeps_the_rest_of_the_file() {
        let edited = edit_pool(TEXT, "b", &changes(r#"{"max_share": 0.3, "weight": 2}"#)).unwrap();
        assert!(edited.starts_with("# my farm\n"), "{edited}");
        assert!(edited.contains("name = \"a\" # first"), "{edited}");
        let (config, _) = Config::from_toml_str(&edited).unwrap();
        let b = &config.policy.pools[1];
        assert_eq!(b.max_share.map(|r| r.get()), Some(0.3));
        assert_eq!(b.weight, 2.0);
        assert_eq!(config.policy.pools[0].max_share, None);
    }

    #[test]
    fn null_drops_a_key_and_enabled_false_disables_the_pool() {
        let edited = edit_pool(TEXT, "b", &changes(r#"{"max_share": null}"#)).unwrap();
        let (config, _) = Config::from_toml_str(&edited).unwrap();
        assert_eq!(config.policy.pools[1].max_share, None);

        let off = edit_pool(TEXT, "a", &changes(r#"{"enabled": false}"#)).unwrap();
        let (config, _) = Config::from_toml_str(&off).unwrap();
        let names: Vec<_> = config
            .policy
            .pools
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["b"]);
        assert_eq!(config.policy.disabled[0].name, "a");
        let on = edit_pool(&off, "a", &changes(r#"{"enabled": true}"#)).unwrap();
        assert_eq!(Config::from_toml_str(&on).unwrap().0.policy.pools.len(), 2);
    }

    #[test]
    fn a_bad_value_gets_the_errors_check_prints() {
        let edited = edit_pool(TEXT, "a", &changes(r#"{"max_share": 1.5}"#)).unwrap();
        let error = Config::from_toml_str(&edited).unwrap_err();
        let message = error.errors[0].to_string();
        assert!(
            message.contains("pool[0].max_share: must be in (0, 1], got 1.5"),
            "{message}"
        );
    }

    #[test]
    fn bodies_are_checked_before_anything_is_edited() {
        for (body, wanted) in [
            ("[]", "must be a JSON object"),
            ("{}", "nothing to change"),
            (r#"{"cap": 0.3}"#, "unknown key \"cap\""),
            (
                r#"{"max_share": "0.3"}"#,
                "max_share must be a number or null",
            ),
            (r#"{"enabled": 1}"#, "enabled must be true or false"),
            ("{", "not JSON"),
        ] {
            let refused = parse_changes(body.as_bytes()).unwrap_err();
            assert!(refused.to_string().contains(wanted), "{body}: {refused}");
        }
        let refused = edit_pool(TEXT, "nope", &changes(r#"{"weight": 1}"#)).unwrap_err();
        assert!(matches!(refused, Refused::NoSuchPool(_)));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }
}
