//! Problems in a TOML file, each with its TOML path and line:column, and the
//! helpers that read a document section by section so one bad section does
//! not hide the problems in the others.
//!
//! Used by the policy and fleet files here and by the proxy's config loader.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// One problem (an error or a warning) in a TOML file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// TOML path of the offending item, e.g. `pool[2].max_share`.
    pub path: String,
    /// 1-based line and column of the item, when it has a place in the file.
    pub location: Option<(usize, usize)>,
    /// What is wrong, in lower case, with the offending input.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.location {
            write!(f, "{line}:{column}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every error found in a TOML file, plus the warnings found on the way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render(.errors))]
pub struct ConfigError {
    /// The errors, in file order of discovery; never empty.
    pub errors: Vec<Problem>,
    /// Warnings that would not have stopped the file from loading.
    pub warnings: Vec<Problem>,
}

fn render(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    format!("{} problem(s):\n  {}", problems.len(), lines.join("\n  "))
}

/// Collects errors and warnings against one source text.
#[derive(Debug)]
pub struct Diagnostics<'s> {
    source: &'s str,
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl<'s> Diagnostics<'s> {
    /// Reads a duration such as `"30s"` that must be positive; records the
    /// problem and returns `None` otherwise (and for a missing value).
    pub fn positive_duration(
        &mut self,
        path: &str,
        value: Option<Spanned<String>>,
    ) -> Option<std::time::Duration> {
        let value = value?;
        match crate::parse::parse_duration(value.get_ref()) {
            Ok(duration) if !duration.is_zero() => Some(duration),
            Ok(_) => {
                self.error(path, Some(value.span()), "duration must be positive");
                None
            }
            Err(error) => {
                self.error(path, Some(value.span()), error.to_string());
                None
            }
        }
    }

    /// Returns an empty collector for `source`.
    pub fn new(source: &'s str) -> Self {
        Diagnostics {
            source,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Records an error at `path`, placed at the start of `span` if given.
    pub fn error(
        &mut self,
        path: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        let problem = self.problem(path.into(), span, message.into());
        self.errors.push(problem);
    }

    /// Records a warning at `path`, placed at the start of `span` if given.
    pub fn warning(
        &mut self,
        path: impl Into<String>,
        span: Option<Range<usize>>,
        message: impl Into<String>,
    ) {
        let problem = self.problem(path.into(), span, message.into());
        self.warnings.push(problem);
    }

    /// Returns how many errors have been recorded so far.
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Returns `value` and the warnings if no error was recorded, or every
    /// problem otherwise.
    ///
    /// Problems are listed in file order, those without a place last.
    pub fn finish<T>(
        mut self,
        value: impl FnOnce() -> T,
    ) -> Result<(T, Vec<Problem>), ConfigError> {
        let file_order = |p: &Problem| p.location.unwrap_or((usize::MAX, 0));
        self.errors.sort_by_key(file_order);
        self.warnings.sort_by_key(file_order);
        if self.errors.is_empty() {
            Ok((value(), self.warnings))
        } else {
            Err(ConfigError {
                errors: self.errors,
                warnings: self.warnings,
            })
        }
    }

    fn problem(&self, path: String, span: Option<Range<usize>>, message: String) -> Problem {
        Problem {
            path,
            location: span.map(|span| line_column(self.source, span.start)),
            message,
        }
    }

    /// Parses the source as a TOML document and returns its top-level
    /// entries, or records every syntax error and returns `None`.
    pub fn parse_document(&mut self) -> Option<Vec<Entry<'s>>> {
        let (root, errors) = DeTable::parse_recoverable(self.source);
        if !errors.is_empty() {
            for error in errors {
                self.error("", error.span(), error.message().to_owned());
            }
            return None;
        }
        Some(entries(root.into_inner()))
    }

    /// Deserializes one section (a table or one entry of an array of tables)
    /// into `T`, or records the first problem serde finds in it, placed at
    /// the offending key under `path`.
    pub fn deserialize<T: DeserializeOwned>(
        &mut self,
        path: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        // Remember where each key sits, since the serde error only carries a
        // span and the path should name the key.
        let keys: Vec<(String, Range<usize>, Range<usize>)> = match value.get_ref() {
            DeValue::Table(table) => table
                .iter()
                .map(|(k, v)| (k.get_ref().to_string(), k.span(), v.span()))
                .collect(),
            _ => Vec::new(),
        };
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(parsed) => Some(parsed),
            Err(error) => {
                let span = error.span();
                let key = span.as_ref().and_then(|span| {
                    keys.iter()
                        .find(|(_, k, v)| k.contains(&span.start) || v.contains(&span.start))
                        .map(|(name, _, _)| name.clone())
                });
                let full_path = match key {
                    Some(key) => format!("{path}.{key}"),
                    None => path.to_owned(),
                };
                self.error(full_path, span, error.message().to_owned());
                None
            }
        }
    }

    /// Splits an array of tables (`[[pool]]`) into its entries, or records
    /// an error if `value` is not one.
    pub fn array_of_tables<'v>(
        &mut self,
        path: &str,
        value: Spanned<DeValue<'v>>,
    ) -> Vec<Spanned<DeValue<'v>>> {
        let span = value.span();
        match value.into_inner() {
            DeValue::Array(array) => array.into_iter().collect(),
            other => {
                self.error(
                    path,
                    Some(span),
                    format!(
                        "expected an array of tables ([[{path}]]), found {}",
                        other.type_str()
                    ),
                );
                Vec::new()
            }
        }
    }
}

/// One top-level entry of a document: key, where the key is, and value.
pub struct Entry<'s> {
    /// The key.
    pub key: String,
    /// Where the key is in the source.
    pub key_span: Range<usize>,
    /// The value, with its span.
    pub value: Spanned<DeValue<'s>>,
}

fn entries(table: DeTable<'_>) -> Vec<Entry<'_>> {
    let mut entries: Vec<Entry<'_>> = table
        .into_iter()
        .map(|(key, value)| Entry {
            key: key.get_ref().to_string(),
            key_span: key.span(),
            value,
        })
        .collect();
    // The map orders keys by name; problems read better in file order.
    entries.sort_by_key(|entry| entry.key_span.start);
    entries
}

/// Returns the 1-based line and column (in characters) of byte `offset`.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        name: String,
        size: u32,
    }

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 9), (2, 4));
    }

    #[test]
    fn syntax_errors_are_reported_with_their_line() {
        let mut diag = Diagnostics::new("a = 1\nb = = 2\n");
        assert!(diag.parse_document().is_none());
        let error = diag.finish(|| ()).unwrap_err();
        assert_eq!(error.errors[0].location.map(|l| l.0), Some(2));
    }

    #[test]
    fn serde_errors_name_the_offending_key() {
        let text = "[thing]\nname = \"x\"\nsize = \"big\"\n";
        let mut diag = Diagnostics::new(text);
        let entry = diag.parse_document().unwrap().pop().unwrap();
        assert!(diag.deserialize::<Section>("thing", entry.value).is_none());
        let error = diag.finish(|| ()).unwrap_err();
        assert_eq!(error.errors[0].path, "thing.size");
        assert_eq!(error.errors[0].location, Some((3, 8)));
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let text = "[thing]\nname = \"x\"\nsize = 1\ncolour = 2\n";
        let mut diag = Diagnostics::new(text);
        let entry = diag.parse_document().unwrap().pop().unwrap();
        assert!(diag.deserialize::<Section>("thing", entry.value).is_none());
        let error = diag.finish(|| ()).unwrap_err();
        assert_eq!(error.errors[0].path, "thing.colour");
        assert_eq!(error.errors[0].location.map(|l| l.0), Some(4));
    }
}
