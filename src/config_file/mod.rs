//! `--config FILE.toml`: a table per mode (`[forward]`, `[mitm]`, `[reverse]`, `[echo]`)
//! whose keys are that mode's long flag names, turned into command-line arguments and
//! parsed by clap with the flags given on the command line, which win.
//!
//! Nothing here lists flags: the keys a table takes, whether a key is a flag, takes one
//! value or repeats, and how its value is checked all come from the clap definitions in
//! [`crate::cli`], so a flag added there is a config key at once.
//!
//! - [`keys`]: one table to the arguments it stands for.
//! - [`merge`]: [`parse_args`], the command line and the file together.
//! - [`check`]: `interpose check-config FILE`.

pub mod check;
pub mod keys;
pub mod merge;

use std::fmt;
use std::path::{Path, PathBuf};

pub use merge::{parse_args, ArgsError};

/// The clap id of `--config` ([`crate::cli::ConfigArg`]); a subcommand that has it is a mode
/// with a table in the file.
pub const CONFIG_ID: &str = "config";

/// A config file, read and parsed as TOML (not yet checked against any mode).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    root: toml::Table,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            path: path.to_path_buf(),
            problem: Problem::Unreadable(e.to_string()),
        })?;
        Self::parse(path, &text)
    }

    /// Parses `text` as the contents of `path` (which is only used to name it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigFileError> {
        let root = text.parse::<toml::Table>().map_err(|e| {
            let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
            ConfigFileError {
                path: path.to_path_buf(),
                problem: Problem::Syntax {
                    line,
                    column,
                    message: one_line(e.message()),
                },
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            root,
        })
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The names of the top-level entries (the mode tables), sorted.
    pub fn table_names(&self) -> impl Iterator<Item = &str> {
        self.root.keys().map(String::as_str)
    }

    /// An error about this file.
    pub(crate) fn error(&self, problem: Problem) -> ConfigFileError {
        ConfigFileError {
            path: self.path.clone(),
            problem,
        }
    }
}

/// What is wrong with a config file, with the file's path: one line when displayed.
#[derive(Debug)]
pub struct ConfigFileError {
    pub path: PathBuf,
    pub problem: Problem,
}

/// The ways a config file can be wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The file could not be read (the OS error).
    Unreadable(String),
    /// Not TOML; where (1-based) and why.
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    /// A top-level table that is no mode; `suggestion` is the closest mode's name.
    UnknownTable {
        name: String,
        suggestion: Option<String>,
    },
    /// A top-level key that is not a table (`listen = ...` outside `[forward]`).
    NotATable(String),
    /// The running mode has no table in the file.
    MissingTable(String),
    /// `table.key` is no long flag of that mode; `suggestion` is the closest one.
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    /// `table.key` names a flag the file cannot set (`config` itself).
    NotSettable(String),
    /// Two spellings of one flag (`allow-client` and `allow_client`) in one table.
    Repeated { key: String, first: String },
    /// `table.key` has a value of the wrong TOML type.
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// The `[mode]` table does not make a valid mode: clap refused the arguments it stands
    /// for (`key` when one key is to blame), or the mode's own checks did.
    Invalid {
        mode: String,
        key: Option<String>,
        message: String,
    },
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            Problem::Unreadable(e) => write!(f, "cannot read config {path}: {e}"),
            Problem::Syntax {
                line,
                column,
                message,
            } => write!(f, "config {path}:{line}:{column}: {message}"),
            Problem::UnknownTable { name, suggestion } => {
                write!(f, "config {path}: unknown table \"{name}\"")?;
                did_you_mean(f, suggestion)
            }
            Problem::NotATable(key) => write!(
                f,
                "config {path}: \"{key}\" must be inside a mode's table, e.g. [forward]"
            ),
            Problem::MissingTable(mode) => write!(f, "config {path}: no [{mode}] table"),
            Problem::UnknownKey { key, suggestion } => {
                write!(f, "config {path}: unknown key \"{key}\"")?;
                did_you_mean(f, suggestion)
            }
            Problem::NotSettable(key) => {
                write!(
                    f,
                    "config {path}: key \"{key}\" cannot be set in a config file"
                )
            }
            Problem::Repeated { key, first } => {
                write!(f, "config {path}: key \"{key}\" repeats \"{first}\"")
            }
            Problem::WrongType {
                key,
                expected,
                found,
            } => write!(
                f,
                "config {path}: key \"{key}\": expected {expected}, found {found}"
            ),
            Problem::Invalid {
                key: Some(key),
                message,
                ..
            } => write!(f, "config {path}: key \"{key}\": {message}"),
            Problem::Invalid {
                mode,
                key: None,
                message,
            } => write!(f, "config {path}: [{mode}] {message}"),
        }
    }
}

impl std::error::Error for ConfigFileError {}

fn did_you_mean(f: &mut fmt::Formatter<'_>, suggestion: &Option<String>) -> fmt::Result {
    match suggestion {
        Some(s) => write!(f, " (did you mean \"{s}\"?)"),
        None => Ok(()),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, ConfigFileError> {
        ConfigFile::parse(Path::new("t.toml"), text)
    }

    #[test]
    fn syntax_error_is_one_line_with_line_and_column() {
        let err = parse("[forward]\nlisten = \"127.0.0.1:1\"\nauth = \n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("config t.toml:3:"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(matches!(err.problem, Problem::Syntax { line: 3, .. }));
    }

    #[test]
    fn unreadable_file_says_so_with_the_os_error() {
        let err = ConfigFile::read(Path::new("/nonexistent/interpose.toml")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("cannot read config /nonexistent/interpose.toml: "),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
    }
}
