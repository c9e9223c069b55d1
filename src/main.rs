//! The `interpose` binary: parse flags, validate, bind, run; map failures to exit codes.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use interpose::cli::{Cli, Command, EchoArgs, ForwardArgs};
use interpose::proxy::{conn::serve_connection, Engine};
use interpose::server::{serve, shutdown_signal};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One clear line: clap's first line, without its "try --help" footer.
            let text = e.render().to_string();
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments");
            eprintln!("interpose: {}", line.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let _log_guard = interpose::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interpose: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Forward(args) => run_forward(args).await,
            Command::Echo(args) => run_echo(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interpose: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Cancels the returned token on SIGINT/SIGTERM.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("signal received: no longer accepting connections");
        t.cancel();
    });
    token
}

async fn run_forward(args: ForwardArgs) -> anyhow::Result<()> {
    let cfg = args.into_config()?;
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    println!("  try: http_proxy=http://{addr} curl http://example.org/");
    println!("       https_proxy=http://{addr} curl https://example.org/");
    let grace = cfg.grace;
    let engine = Engine::new(cfg);
    let shutdown = shutdown_on_signal();
    serve(listener, shutdown, grace, move |stream, peer, token| {
        serve_connection(engine.clone(), stream, peer, token)
    })
    .await;
    Ok(())
}

async fn run_echo(args: EchoArgs) -> anyhow::Result<()> {
    let listener = bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = shutdown_on_signal();
    serve(
        listener,
        shutdown,
        std::time::Duration::from_secs(5),
        interpose::echo::serve_echo_connection,
    )
    .await;
    Ok(())
}
