//! Unit tests of [`super::parse_args_with`]: the file's table with the command line.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::cli::{Command as Mode, ForwardArgs, MitmArgs, ReverseArgs};

/// Parses `args` (after the program name) with `text` as the config file's contents.
fn parse(text: &str, args: &[&str]) -> Result<Cli, ArgsError> {
    let argv = std::iter::once("interpose").chain(args.iter().copied());
    parse_args_with(argv, |path| ConfigFile::parse(path, text))
}

fn forward(text: &str, args: &[&str]) -> ForwardArgs {
    match parse(text, args) {
        Ok(Cli {
            command: Mode::Forward(a),
        }) => a,
        other => panic!("{other:?}"),
    }
}

fn mitm(text: &str, args: &[&str]) -> MitmArgs {
    match parse(text, args) {
        Ok(Cli {
            command: Mode::Mitm(a),
        }) => a,
        other => panic!("{other:?}"),
    }
}

fn reverse(text: &str, args: &[&str]) -> ReverseArgs {
    match parse(text, args) {
        Ok(Cli {
            command: Mode::Reverse(a),
        }) => a,
        other => panic!("{other:?}"),
    }
}

fn problem(result: Result<Cli, ArgsError>) -> (Problem, String) {
    match result {
        Err(ArgsError::Config(e)) => {
            let text = e.to_string();
            (e.problem, text)
        }
        other => panic!("expected a config file error, got {other:?}"),
    }
}

const FORWARD: &str = r#"
[forward]
listen = "127.0.0.1:3128"
auth = "alice:secret"
allow-connect-port = "443,8443"
allow-client = ["10.0.0.0/8", "127.0.0.1/32"]
connect-timeout = "3s"
"#;

#[test]
fn without_config_the_command_line_is_parsed_as_it_is() {
    let a = forward("not even toml [", &["forward", "--listen", "127.0.0.1:1"]);
    assert_eq!(a.listen.port(), 1);
    let err = parse("", &["forward", "--bogus"]).unwrap_err();
    assert!(matches!(&err, ArgsError::Clap(e) if e.kind() == ErrorKind::UnknownArgument));
}

#[test]
fn the_files_values_are_used_as_the_same_flags_would_be() {
    let a = forward(FORWARD, &["forward", "--config", "t.toml"]);
    assert_eq!(a.listen.to_string(), "127.0.0.1:3128");
    assert_eq!(a.auth.as_ref().map(|c| c.user.as_str()), Some("alice"));
    let ports = a.allow_connect_port.expect("ports");
    assert!(ports.allows(8443) && !ports.allows(80));
    assert_eq!(a.allow_clients.len(), 2);
    assert_eq!(a.connect_timeout, Duration::from_secs(3));
    // Not in the file: clap's default.
    assert_eq!(a.grace, Duration::from_secs(10));
}

#[test]
fn a_single_valued_flag_on_the_command_line_beats_the_file() {
    for args in [
        ["forward", "--config", "t.toml", "--listen", "127.0.0.1:9"],
        ["forward", "--listen", "127.0.0.1:9", "--config", "t.toml"],
    ] {
        let a = forward(FORWARD, &args);
        assert_eq!(a.listen.to_string(), "127.0.0.1:9", "{args:?}");
        assert_eq!(a.connect_timeout, Duration::from_secs(3), "{args:?}");
    }
}

#[test]
fn a_repeatable_flag_on_the_command_line_replaces_the_files_whole_list() {
    let args = [
        "forward",
        "--config=t.toml",
        "--allow-client",
        "192.168.0.0/16",
    ];
    let a = forward(FORWARD, &args);
    let clients: Vec<String> = a.allow_clients.iter().map(|n| n.to_string()).collect();
    assert_eq!(clients, ["192.168.0.0/16"]);
}

#[test]
fn a_flag_on_the_command_line_wins_over_false_in_the_file() {
    let text = "[mitm]\ninsecure-upstream = false\nauto-passthrough = true\n";
    let a = mitm(text, &["mitm", "--config", "t.toml", "--insecure-upstream"]);
    assert!(a.insecure_upstream && a.auto_passthrough);
    let a = mitm(text, &["mitm", "--config", "t.toml"]);
    assert!(!a.insecure_upstream);
}

#[test]
fn a_required_flag_may_come_from_the_file() {
    let text = "[reverse]\nto = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n";
    let a = reverse(text, &["reverse", "--config", "t.toml"]);
    assert_eq!(a.to.len(), 2);
    let a = reverse(
        text,
        &["reverse", "--config", "t.toml", "--to", "127.0.0.1:9003"],
    );
    assert_eq!(a.to.len(), 1);
}

#[test]
fn a_command_line_flag_drops_the_file_flags_it_conflicts_with() {
    let text = "[mitm]\nca-dir = \"/srv/ca\"\n";
    let a = mitm(
        text,
        &["mitm", "--config", "t.toml", "--ca-cert", "/x/ca.pem"],
    );
    assert_eq!(a.ca_dir, None);
    assert_eq!(a.ca_cert.as_deref(), Some(Path::new("/x/ca.pem")));
}

#[test]
fn a_command_line_flag_may_require_one_from_the_file() {
    let text = "[forward]\ndump = \"headers\"\n";
    let a = forward(text, &["forward", "--dump-secrets", "--config", "t.toml"]);
    assert!(a.dump_secrets && a.dump.is_some());
}

#[test]
fn an_invalid_value_names_the_key_and_the_file() {
    let text = "[forward]\nallow-connect-port = \"70000\"\n";
    let (p, line) = problem(parse(text, &["forward", "--config", "t.toml"]));
    assert!(
        matches!(&p, Problem::Invalid { key: Some(k), .. } if k == "forward.allow-connect-port"),
        "{p:?}"
    );
    assert!(
        line.starts_with("config t.toml: key \"forward.allow-connect-port\": "),
        "{line}"
    );
    assert!(line.contains("70000") && !line.contains('\n'), "{line}");
    let text = "[forward]\ndump = \"everything\"\n";
    let (_, line) = problem(parse(text, &["forward", "--config", "t.toml"]));
    assert!(line.contains("key \"forward.dump\""), "{line}");
}

#[test]
fn a_file_error_between_keys_names_the_file_and_table() {
    let text = "[forward]\ndump-secrets = true\n";
    let (p, line) = problem(parse(text, &["forward", "--config", "t.toml"]));
    assert!(matches!(p, Problem::Invalid { key: None, .. }), "{p:?}");
    assert!(line.starts_with("config t.toml: [forward] "), "{line}");
    assert!(line.contains("--dump"), "{line}");
}

#[test]
fn a_command_line_error_stays_the_command_lines() {
    let err = parse(FORWARD, &["forward", "--config", "t.toml", "--bogus"]).unwrap_err();
    assert!(matches!(&err, ArgsError::Clap(e) if e.kind() == ErrorKind::UnknownArgument));
    let err = parse(FORWARD, &["forward", "--config", "t.toml", "--grace", "x"]).unwrap_err();
    assert!(matches!(&err, ArgsError::Clap(e) if e.kind() == ErrorKind::ValueValidation));
}

#[test]
fn help_is_still_help_with_a_config() {
    let err = parse(FORWARD, &["forward", "--config", "t.toml", "--help"]).unwrap_err();
    assert!(matches!(&err, ArgsError::Clap(e) if e.kind() == ErrorKind::DisplayHelp));
}

#[test]
fn the_running_modes_table_must_be_there_and_others_are_not_read() {
    let (p, _) = problem(parse(FORWARD, &["mitm", "--config", "t.toml"]));
    assert_eq!(p, Problem::MissingTable("mitm".into()));
    let text = format!("{FORWARD}\n[reverse]\nlisten = \"nonsense\"\n");
    let a = forward(&text, &["forward", "--config", "t.toml"]);
    assert_eq!(a.listen.port(), 3128);
}

#[test]
fn the_loaders_error_is_reported() {
    let argv = ["interpose", "echo", "--config", "gone.toml"];
    let err = parse_args_with(argv, ConfigFile::read).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read config gone.toml: "),
        "{err}"
    );
}

#[test]
fn clap_line_is_the_first_line_without_the_footer() {
    let Err(e) = Cli::try_parse_from(["interpose", "reverse"]) else {
        panic!("reverse needs --to");
    };
    let line = clap_line(&e);
    assert!(
        line.starts_with("the following required arguments were not provided: --to"),
        "{line}"
    );
}
