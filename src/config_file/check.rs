//! `interpose check-config FILE`: every mode table of the file is parsed and turned into
//! its mode's configuration exactly as `interpose MODE --config FILE` would, short of
//! binding sockets or creating a CA.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::keys::{self, modes};
use super::merge::{clap_line, parse_args_with, ArgsError};
use super::{ConfigFile, ConfigFileError, Problem, CONFIG_ID};
use crate::cli::{Cli, Command, MitmArgs};

/// Checks every mode table of the file at `path`; the modes checked, in clap's order.
pub fn check_config(path: &Path) -> Result<Vec<String>, ConfigFileError> {
    let file = ConfigFile::read(path)?;
    let mut cli = Cli::command();
    cli.build();
    keys::check_tables(&file, &cli)?;
    let present: Vec<String> = modes(&cli)
        .map(|sub| sub.get_name().to_string())
        .filter(|mode| file.table_names().any(|t| t == mode))
        .collect();
    for mode in &present {
        check_mode(&file, mode)?;
    }
    Ok(present)
}

/// `interpose check-config FILE`: `config FILE: ok (forward, mitm)` on stdout and exit 0,
/// or the one-line error on stderr (prefixed `interpose: `) and exit 2.
pub fn run(path: &Path) -> ExitCode {
    match check_config(path) {
        Ok(modes) => {
            let modes = if modes.is_empty() {
                "no mode tables".to_string()
            } else {
                modes.join(", ")
            };
            println!("config {}: ok ({modes})", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interpose: {e}");
            ExitCode::from(2)
        }
    }
}

fn check_mode(file: &ConfigFile, mode: &str) -> Result<(), ConfigFileError> {
    let invalid = |message: String| {
        file.error(Problem::Invalid {
            mode: mode.to_string(),
            key: None,
            message,
        })
    };
    let path = file.path().as_os_str().to_os_string();
    let argv = [
        "interpose".into(),
        mode.into(),
        format!("--{CONFIG_ID}").into(),
        path,
    ];
    let cli = match parse_args_with(argv, |_| Ok(file.clone())) {
        Ok(cli) => cli,
        Err(ArgsError::Config(e)) => return Err(e),
        Err(ArgsError::Clap(e)) => return Err(invalid(clap_line(&e))),
    };
    validate(cli.command).map_err(invalid)
}

/// What each mode checks after clap, before it binds: its conversion to a configuration and
/// the files that configuration names (read, never written).
fn validate(command: Command) -> Result<(), String> {
    match command {
        Command::Forward(args) => args.into_config().map(drop).map_err(|e| e.to_string()),
        Command::Mitm(args) => validate_mitm(args),
        Command::Reverse(args) => {
            let cfg = args.into_config().map_err(|e| e.to_string())?;
            crate::reverse::ReverseProxy::new(cfg)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Command::Echo(_) | Command::Ca(_) | Command::Har(_) | Command::CheckConfig(_) => Ok(()),
    }
}

/// What `mitm::build` checks, except that a CA not yet in its store is not created.
fn validate_mitm(args: MitmArgs) -> Result<(), String> {
    use crate::mitm::CaSource;
    let (_, settings) = args.into_settings().map_err(|e| e.to_string())?;
    let loaded = match &settings.ca {
        CaSource::Store(store) if store.exists() => store.load().map(drop),
        CaSource::Store(_) => Ok(()),
        CaSource::Pair { cert, key } => crate::ca::load::load_pair(cert, key).map(drop),
        CaSource::Combined(file) => crate::ca::load::load_combined(file).map(drop),
    };
    loaded.map_err(|e| e.to_string())?;
    crate::tls::client::upstream_client_config(
        settings.upstream_ca.as_deref(),
        settings.insecure_upstream,
        crate::tls::provider(),
    )
    .map(drop)
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `text` to a fresh file; removed when the returned guard drops.
    struct Scratch(std::path::PathBuf);

    impl Scratch {
        fn new(tag: &str, text: &str) -> Scratch {
            let path = std::env::temp_dir()
                .join(format!("interpose-check-{tag}-{}.toml", std::process::id()));
            std::fs::write(&path, text).expect("write scratch file");
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn every_mode_table_is_checked_and_named() {
        let f = Scratch::new(
            "ok",
            "[reverse]\nto = \"127.0.0.1:9\"\n[forward]\nlisten = \"127.0.0.1:0\"\n[echo]\n",
        );
        assert_eq!(
            check_config(&f.0).expect("valid"),
            ["forward", "echo", "reverse"]
        );
    }

    #[test]
    fn a_mode_that_would_refuse_to_start_fails_the_check() {
        let f = Scratch::new("open", "[forward]\nlisten = \"0.0.0.0:0\"\n");
        let line = check_config(&f.0).unwrap_err().to_string();
        assert!(
            line.contains("[forward]") && line.contains("open proxy"),
            "{line}"
        );
        let f = Scratch::new("noto", "[reverse]\nlisten = \"127.0.0.1:0\"\n");
        let line = check_config(&f.0).unwrap_err().to_string();
        assert!(
            line.contains("[reverse]") && line.contains("--to"),
            "{line}"
        );
        let f = Scratch::new(
            "nocert",
            "[reverse]\nto = \"127.0.0.1:9\"\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n",
        );
        let line = check_config(&f.0).unwrap_err().to_string();
        assert!(line.contains("/nonexistent/c.pem"), "{line}");
    }

    #[test]
    fn a_missing_mitm_ca_file_fails_the_check() {
        let f = Scratch::new("mitm", "[mitm]\nca-cert = \"/nonexistent/ca.pem\"\n");
        let line = check_config(&f.0).unwrap_err().to_string();
        assert!(
            line.contains("[mitm]") && line.contains("/nonexistent/ca.pem"),
            "{line}"
        );
    }
}
