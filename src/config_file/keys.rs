//! One mode's table to the command-line arguments it stands for, found by asking clap's
//! definition of that mode which long flags it has and what each does with values.

use std::ffi::OsString;

use clap::{Arg, ArgAction, Command};
use toml::Value;

use super::{ConfigFile, ConfigFileError, Problem, CONFIG_ID};

/// One key of a mode's table, as the arguments it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileArg {
    /// `table.key` as written in the file, to name it in errors.
    pub key: String,
    /// The clap id of the flag it sets.
    pub id: String,
    /// The flag's long name (`allow-client`), as clap names it in its errors.
    pub long: String,
    /// `--long=value` once per value, or `--long` for a flag given; empty for `false`.
    pub tokens: Vec<OsString>,
}

/// The modes a file can have tables for: the subcommands of `cli` that take `--config`.
pub fn modes(cli: &Command) -> impl Iterator<Item = &Command> {
    cli.get_subcommands()
        .filter(|sub| sub.get_arguments().any(|a| a.get_id() == CONFIG_ID))
}

/// Checks that every top-level entry of `file` is a table named after a mode of `cli`.
pub fn check_tables(file: &ConfigFile, cli: &Command) -> Result<(), ConfigFileError> {
    let names: Vec<&str> = modes(cli).map(Command::get_name).collect();
    for (name, value) in &file.root {
        if !names.contains(&name.as_str()) {
            let problem = match value {
                Value::Table(_) => Problem::UnknownTable {
                    name: name.clone(),
                    suggestion: closest(name, names.iter().copied()),
                },
                _ => Problem::NotATable(name.clone()),
            };
            return Err(file.error(problem));
        }
        if !value.is_table() {
            return Err(file.error(Problem::NotATable(name.clone())));
        }
    }
    Ok(())
}

/// The arguments `file`'s table for the mode `sub` stands for, every key checked against
/// `sub`'s long flags (or their snake_case spelling) and every value's TOML type against
/// what the flag takes. Values themselves are left to clap's value parsers.
pub fn table_args(file: &ConfigFile, sub: &Command) -> Result<Vec<FileArg>, ConfigFileError> {
    let mode = sub.get_name();
    let table = match file.root.get(mode) {
        None => return Err(file.error(Problem::MissingTable(mode.to_string()))),
        Some(Value::Table(table)) => table,
        Some(_) => return Err(file.error(Problem::NotATable(mode.to_string()))),
    };
    let mut args: Vec<FileArg> = Vec::with_capacity(table.len());
    for (name, value) in table {
        let key = format!("{mode}.{name}");
        let Some(arg) = find_flag(sub, name) else {
            let longs = sub.get_arguments().filter_map(Arg::get_long);
            let suggestion = closest(&name.replace('_', "-"), longs);
            return Err(file.error(Problem::UnknownKey { key, suggestion }));
        };
        let id = arg.get_id().as_str();
        if let Some(first) = args.iter().find(|a| a.id == id) {
            let first = first.key.clone();
            return Err(file.error(Problem::Repeated { key, first }));
        }
        let long = arg.get_long().unwrap_or(name).to_string();
        let tokens = tokens(arg, &long, &key, value).map_err(|p| file.error(p))?;
        args.push(FileArg {
            key,
            id: id.to_string(),
            long,
            tokens,
        });
    }
    Ok(args)
}

/// The argument of `sub` whose long name, or a long alias, is `key` (or its snake_case form).
fn find_flag<'a>(sub: &'a Command, key: &str) -> Option<&'a Arg> {
    let wanted = key.replace('_', "-");
    sub.get_arguments().find(|arg| {
        let aliases = arg.get_all_aliases().unwrap_or_default();
        arg.get_long()
            .into_iter()
            .chain(aliases)
            .any(|name| name == key || name == wanted)
    })
}

/// What `value` stands for on `arg`'s command line.
fn tokens(arg: &Arg, long: &str, key: &str, value: &Value) -> Result<Vec<OsString>, Problem> {
    let wrong = |expected, found: &Value| Problem::WrongType {
        key: key.to_string(),
        expected,
        found: a_type(found),
    };
    let flag = || OsString::from(format!("--{long}"));
    let with_value = |v: &Value| {
        scalar(v)
            .map(|text| OsString::from(format!("--{long}={text}")))
            .ok_or_else(|| wrong("a string, number or boolean", v))
    };
    if arg.get_id() == CONFIG_ID {
        return Err(Problem::NotSettable(key.to_string()));
    }
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            Value::Boolean(given) => Ok(if *given { vec![flag()] } else { vec![] }),
            other => Err(wrong("true or false", other)),
        },
        ArgAction::Count => match value {
            Value::Boolean(given) => Ok(if *given { vec![flag()] } else { vec![] }),
            Value::Integer(n @ 0..=255) => Ok((0..*n).map(|_| flag()).collect()),
            other => Err(wrong("true, false or a count from 0 to 255", other)),
        },
        ArgAction::Append => match value {
            Value::Array(items) => items.iter().map(with_value).collect(),
            single => with_value(single).map(|t| vec![t]),
        },
        ArgAction::Set => match value {
            Value::Array(_) => Err(wrong("a single value (the flag does not repeat)", value)),
            single => with_value(single).map(|t| vec![t]),
        },
        // --help, --version and whatever else only acts on the command line.
        _ => Err(Problem::NotSettable(key.to_string())),
    }
}

/// The command-line text of a TOML scalar; `None` for arrays and tables.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Datetime(d) => Some(d.to_string()),
        Value::Array(_) | Value::Table(_) => None,
    }
}

fn a_type(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// The candidate most like `name`, if any is close (clap's own threshold for "did you mean").
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::jaro(name, c), c))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;
    use crate::cli::Cli;

    fn cli() -> Command {
        let mut cmd = Cli::command();
        cmd.build();
        cmd
    }

    fn args_of(mode: &str, text: &str) -> Result<Vec<FileArg>, Problem> {
        let cli = cli();
        let file = ConfigFile::parse(Path::new("t.toml"), text).map_err(|e| e.problem)?;
        check_tables(&file, &cli).map_err(|e| e.problem)?;
        let sub = cli.find_subcommand(mode).expect("mode");
        table_args(&file, sub).map_err(|e| e.problem)
    }

    fn tokens_of(mode: &str, text: &str) -> Vec<String> {
        args_of(mode, text)
            .expect("valid table")
            .into_iter()
            .flat_map(|a| a.tokens)
            .map(|t| t.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_modes_are_the_subcommands_with_config() {
        let cli = cli();
        let names: Vec<&str> = modes(&cli).map(Command::get_name).collect();
        assert_eq!(names, ["forward", "echo", "reverse", "mitm"]);
    }

    #[test]
    fn every_long_flag_of_every_mode_is_a_key_in_both_spellings() {
        let cli = cli();
        for sub in modes(&cli) {
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                for key in [long.to_string(), long.replace('-', "_")] {
                    let found = find_flag(sub, &key).map(Arg::get_id);
                    assert_eq!(found, Some(arg.get_id()), "{}.{key}", sub.get_name());
                }
            }
        }
    }

    #[test]
    fn scalars_become_long_flags_with_values() {
        let t = tokens_of(
            "forward",
            "[forward]\nlisten = \"127.0.0.1:0\"\nmax-connections = 7\n",
        );
        assert_eq!(t, ["--listen=127.0.0.1:0", "--max-connections=7"]);
    }

    #[test]
    fn snake_case_keys_are_aliases_of_the_long_names() {
        let t = tokens_of("forward", "[forward]\nallow_connect_port = \"443\"\n");
        assert_eq!(t, ["--allow-connect-port=443"]);
    }

    #[test]
    fn a_flag_and_its_snake_spelling_together_are_refused() {
        let p = args_of(
            "forward",
            "[forward]\nallow-open = true\nallow_open = false\n",
        )
        .unwrap_err();
        assert!(matches!(p, Problem::Repeated { .. }), "{p:?}");
    }

    #[test]
    fn booleans_give_a_flag_or_leave_it_out() {
        let t = tokens_of(
            "mitm",
            "[mitm]\nallow-open = true\ninsecure-upstream = false\n",
        );
        assert_eq!(t, ["--allow-open"]);
    }

    #[test]
    fn arrays_repeat_a_repeatable_flag_and_a_scalar_gives_it_once() {
        let t = tokens_of(
            "forward",
            "[forward]\nallow-client = [\"10.0.0.0/8\", \"127.0.0.1/32\"]\n",
        );
        assert_eq!(
            t,
            ["--allow-client=10.0.0.0/8", "--allow-client=127.0.0.1/32"]
        );
        let t = tokens_of("reverse", "[reverse]\nto = \"127.0.0.1:9\"\n");
        assert_eq!(t, ["--to=127.0.0.1:9"]);
    }

    #[test]
    fn unknown_key_is_named_with_its_table_and_the_closest_flag() {
        let p = args_of("mitm", "[mitm]\nlissten = \"127.0.0.1:0\"\n").unwrap_err();
        assert_eq!(
            p,
            Problem::UnknownKey {
                key: "mitm.lissten".into(),
                suggestion: Some("listen".into())
            }
        );
        let p = args_of("forward", "[forward]\nzzz = 1\n").unwrap_err();
        assert_eq!(
            p,
            Problem::UnknownKey {
                key: "forward.zzz".into(),
                suggestion: None
            }
        );
    }

    #[test]
    fn a_key_of_another_mode_is_unknown_in_this_one() {
        let p = args_of("forward", "[forward]\nca-dir = \"/tmp\"\n").unwrap_err();
        assert!(matches!(p, Problem::UnknownKey { .. }), "{p:?}");
    }

    #[test]
    fn config_and_help_cannot_be_set_from_the_file() {
        let p = args_of("echo", "[echo]\nconfig = \"other.toml\"\n").unwrap_err();
        assert_eq!(p, Problem::NotSettable("echo.config".into()));
        let p = args_of("echo", "[echo]\nhelp = true\n").unwrap_err();
        assert_eq!(p, Problem::NotSettable("echo.help".into()));
    }

    #[test]
    fn unknown_table_is_named_with_the_closest_mode() {
        let p = args_of("mitm", "[mitmm]\nlisten = \"127.0.0.1:0\"\n").unwrap_err();
        assert_eq!(
            p,
            Problem::UnknownTable {
                name: "mitmm".into(),
                suggestion: Some("mitm".into())
            }
        );
        let p = args_of("mitm", "[ca]\ndir = \"x\"\n").unwrap_err();
        assert!(matches!(p, Problem::UnknownTable { .. }), "{p:?}");
    }

    #[test]
    fn a_top_level_value_must_be_inside_a_table() {
        let p = args_of("forward", "listen = \"127.0.0.1:0\"\n").unwrap_err();
        assert_eq!(p, Problem::NotATable("listen".into()));
        let p = args_of("forward", "forward = 1\n").unwrap_err();
        assert_eq!(p, Problem::NotATable("forward".into()));
    }

    #[test]
    fn a_missing_table_for_the_mode_is_an_error() {
        let p = args_of("reverse", "[forward]\n").unwrap_err();
        assert_eq!(p, Problem::MissingTable("reverse".into()));
    }

    #[test]
    fn wrong_types_name_the_key_and_what_was_expected() {
        let cases = [
            ("[forward]\nlisten = [\"127.0.0.1:0\"]\n", "forward.listen"),
            ("[forward]\nlisten = { port = 1 }\n", "forward.listen"),
            ("[forward]\nallow-open = \"yes\"\n", "forward.allow-open"),
            (
                "[forward]\nallow-client = [[\"10.0.0.0/8\"]]\n",
                "forward.allow-client",
            ),
            (
                "[forward]\nallow-client = [{ a = 1 }]\n",
                "forward.allow-client",
            ),
        ];
        for (text, want) in cases {
            match args_of("forward", text) {
                Err(Problem::WrongType { key, .. }) => assert_eq!(key, want, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn numbers_and_strings_keep_their_command_line_text() {
        let t = tokens_of(
            "forward",
            "[forward]\ngrace = \"1.5s\"\nmax-body-size = 1048576\n",
        );
        assert_eq!(t, ["--grace=1.5s", "--max-body-size=1048576"]);
    }
}
