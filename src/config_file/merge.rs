//! The command line and the `--config` file together: the file's table becomes arguments
//! placed before the command line's, less those the command line gives, and clap parses
//! the lot, so a value from the file is checked exactly as the same flag typed.
//!
//! Precedence: command line (and environment), then the file, then clap's defaults. A flag
//! given on the command line replaces the file's value, a repeatable one its whole list,
//! and drops the file's flags it conflicts with (`--ca-cert` beats the file's `ca-dir`).

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, Parser};

use super::keys::{self, FileArg};
use super::{ConfigFile, ConfigFileError, Problem, CONFIG_ID};
use crate::cli::Cli;

/// Why the arguments (with their config file) do not make a command.
#[derive(Debug)]
pub enum ArgsError {
    /// clap's own answer about the command line: also `--help` and `--version`.
    Clap(clap::Error),
    /// The config file is unreadable, not TOML, or has a bad table, key or value.
    Config(ConfigFileError),
}

impl ArgsError {
    /// Prints the error (help and version on stdout, else one line on stderr prefixed
    /// `interpose: `) and says how to exit: 0 for help and version, 2 otherwise.
    pub fn report(&self) -> ExitCode {
        match self {
            ArgsError::Clap(e) if !e.use_stderr() => {
                let _ = e.print();
                ExitCode::SUCCESS
            }
            other => {
                eprintln!("interpose: {other}");
                ExitCode::from(2)
            }
        }
    }
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Clap(e) => f.write_str(&clap_line(e)),
            ArgsError::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ArgsError {}

impl From<ConfigFileError> for ArgsError {
    fn from(e: ConfigFileError) -> Self {
        ArgsError::Config(e)
    }
}

/// Parses `argv` (with the program name first), reading the mode's `--config` file if one is given.
pub fn parse_args<I, T>(argv: I) -> Result<Cli, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    parse_args_with(argv, ConfigFile::read)
}

/// [`parse_args`] with the file loaded by `load` (tests and `check-config` pass one in).
pub fn parse_args_with<I, T>(
    argv: I,
    load: impl FnOnce(&Path) -> Result<ConfigFile, ConfigFileError>,
) -> Result<Cli, ArgsError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut cli = Cli::command();
    cli.build();
    let Some(found) = find_config(&cli, &argv) else {
        return Cli::try_parse_from(argv).map_err(ArgsError::Clap);
    };
    let file = load(&found.path)?;
    keys::check_tables(&file, &cli)?;
    let Some(sub) = cli.find_subcommand(&found.mode) else {
        return Cli::try_parse_from(argv).map_err(ArgsError::Clap);
    };
    let from_file: Vec<FileArg> = keys::table_args(&file, sub)?
        .into_iter()
        .filter(|a| !found.given.contains(&a.id) && !conflicts_with_any(sub, &a.id, &found.given))
        .collect();
    let (head, tail) = argv.split_at(found.at + 1);
    let merged = head
        .iter()
        .cloned()
        .chain(from_file.iter().flat_map(|a| a.tokens.iter().cloned()))
        .chain(tail.iter().cloned());
    Cli::try_parse_from(merged).map_err(|e| blame(e, &file, &found.mode, &from_file, &argv))
}

/// A mode run with `--config`, as a lenient first parse of the command line sees it.
struct Found {
    mode: String,
    /// Index of the mode's name in argv: the file's arguments go right after it.
    at: usize,
    path: PathBuf,
    /// Ids the command line (or the environment) gives: the file's are not used.
    given: Vec<String>,
}

/// The mode and config file of `argv`, or `None` when there is no `--config` to read (then
/// the command line is parsed as it is, and any error is clap's).
fn find_config(cli: &Command, argv: &[OsString]) -> Option<Found> {
    let pre = cli
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(argv)
        .ok()?;
    let (mode, matches) = pre.subcommand()?;
    let sub = cli.find_subcommand(mode)?;
    let path = matches.try_get_one::<PathBuf>(CONFIG_ID).ok()??.clone();
    let names: Vec<&str> = std::iter::once(sub.get_name())
        .chain(sub.get_all_aliases())
        .collect();
    let at = argv
        .iter()
        .skip(1)
        .position(|a| a.to_str().is_some_and(|a| names.contains(&a)))?
        + 1;
    Some(Found {
        mode: mode.to_string(),
        at,
        path,
        given: given_ids(sub, matches),
    })
}

fn given_ids(sub: &Command, matches: &ArgMatches) -> Vec<String> {
    sub.get_arguments()
        .map(|a| a.get_id().as_str())
        .filter(|id| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(str::to_string)
        .collect()
}

/// Whether the flag `id` conflicts (either way round) with one of `given`.
fn conflicts_with_any(sub: &Command, id: &str, given: &[String]) -> bool {
    let find = |id: &str| sub.get_arguments().find(|a| a.get_id() == id);
    let Some(arg) = find(id) else { return false };
    let ours = sub.get_arg_conflicts_with(arg);
    given.iter().any(|g| {
        ours.iter().any(|c| c.get_id() == g.as_str())
            || find(g).is_some_and(|g| {
                sub.get_arg_conflicts_with(g)
                    .iter()
                    .any(|c| c.get_id() == id)
            })
    })
}

/// Says whose error `e` is: one key of the file's, the file's as a whole (the command line
/// alone does not fail this way), or the command line's.
fn blame(
    e: clap::Error,
    file: &ConfigFile,
    mode: &str,
    from_file: &[FileArg],
    argv: &[OsString],
) -> ArgsError {
    if let Some(arg) = failing_flag(&e).and_then(|long| from_file.iter().find(|a| a.long == long)) {
        return ArgsError::Config(file.error(Problem::Invalid {
            mode: mode.to_string(),
            key: Some(arg.key.clone()),
            message: clap_line(&e),
        }));
    }
    let cli_alone = Cli::try_parse_from(argv).err().map(|c| c.kind());
    if cli_alone == Some(e.kind()) {
        return ArgsError::Clap(e);
    }
    ArgsError::Config(file.error(Problem::Invalid {
        mode: mode.to_string(),
        key: None,
        message: clap_line(&e),
    }))
}

/// The long name of the one flag a clap error is about, for errors about a value or a use.
fn failing_flag(e: &clap::Error) -> Option<String> {
    let about_one_flag = matches!(
        e.kind(),
        ErrorKind::InvalidValue
            | ErrorKind::ValueValidation
            | ErrorKind::InvalidUtf8
            | ErrorKind::NoEquals
            | ErrorKind::WrongNumberOfValues
            | ErrorKind::TooManyValues
            | ErrorKind::TooFewValues
            | ErrorKind::ArgumentConflict
    );
    if !about_one_flag {
        return None;
    }
    // clap names it as "--long <VALUE>" (or "--long=<VALUE>").
    let ContextValue::String(text) = e.get(ContextKind::InvalidArg)? else {
        return None;
    };
    let long = text.strip_prefix("--")?;
    let end = long.find([' ', '=', '<']).unwrap_or(long.len());
    Some(long.get(..end)?.to_string())
}

/// clap's error as one line: its first line without "error: " and the "try --help" footer;
/// a line ending in ':' ("the following required arguments were not provided:") takes the next.
pub fn clap_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    if line.ends_with(':') {
        if let Some(next) = lines.next() {
            line = format!("{line} {next}");
        }
    }
    line
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
