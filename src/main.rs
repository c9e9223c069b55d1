//! The `interpose` binary: parse flags, validate, bind, run; map failures to exit codes.

use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use interpose::cli::{
    CaAction, CaArgs, Command, EchoArgs, ForwardArgs, HarArgs, MitmArgs, ReverseArgs,
};
use interpose::proxy::{conn::serve_connection, Engine};
use interpose::server::{serve, serve_limited, shutdown_signal};

/// mimalloc: see its note in Cargo.toml and `interpose::allocator` (measured under load).
#[global_allocator]
static GLOBAL: interpose::allocator::Allocator = interpose::allocator::Allocator;

fn main() -> ExitCode {
    let cli = match interpose::config_file::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        // --help and --version (exit 0), or one line on stderr (exit 2).
        Err(e) => return e.report(),
    };
    let command = match cli.command {
        Command::CheckConfig(args) => return interpose::config_file::check::run(&args.file),
        other => other,
    };
    let _log_guard = interpose::logging::init();
    let no_access_log = match &command {
        Command::Forward(args) => args.record.no_access_log,
        Command::Mitm(args) => args.proxy.record.no_access_log,
        Command::Reverse(args) => args.record.no_access_log,
        _ => false,
    };
    interpose::access_log::set_enabled(!no_access_log);
    interpose::server::raise_fd_limit();
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
        interpose::memory::trim_periodically();
        match command {
            Command::Forward(args) => run_forward(args).await,
            Command::Echo(args) => run_echo(args).await,
            Command::Reverse(args) => run_reverse(args).await,
            Command::Mitm(args) => run_mitm(args).await,
            Command::Ca(args) => run_ca(args),
            Command::Har(args) => run_har(args),
            Command::CheckConfig(_) => Ok(()),
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
    let mut cfg = args.into_config()?;
    cfg.open_recorder()?;
    let listener = bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    println!("  try: http_proxy=http://{addr} curl http://example.org/");
    println!("       https_proxy=http://{addr} curl https://example.org/");
    serve_engine(listener, Engine::new(cfg)).await;
    Ok(())
}

/// Runs an engine (forward or intercepting) until SIGINT/SIGTERM and its grace period;
/// then completes the flow files.
async fn serve_engine(listener: TcpListener, engine: std::sync::Arc<Engine>) {
    let shutdown = shutdown_on_signal();
    let (grace, max) = (engine.cfg.grace, engine.cfg.max_connections);
    let recorder = engine.record.recorder.clone();
    serve_limited(
        listener,
        shutdown,
        grace,
        max,
        move |stream, peer, token| serve_connection(engine.clone(), stream, peer, token),
    )
    .await;
    if let Some(recorder) = recorder {
        // Exchanges may still be ending (HTTP/2 streams run in tasks of their own).
        recorder.finish(std::time::Duration::from_secs(2)).await;
    }
}

async fn run_mitm(args: MitmArgs) -> anyhow::Result<()> {
    let (mut cfg, settings) = args.into_settings()?;
    cfg.open_recorder()?;
    let insecure = settings.insecure_upstream;
    let listen = cfg.listen;
    let mitm = interpose::mitm::build(cfg, settings)?;
    let listener = bind(listen).await?;
    let addr = listener.local_addr()?;
    if insecure {
        tracing::warn!("--insecure-upstream: upstream certificates are NOT verified");
    }
    let cacert = mitm
        .ca_cert_path
        .as_ref()
        .map_or("CA.pem".to_string(), |p| p.display().to_string());
    if mitm.created {
        eprintln!("created a new interception CA: {cacert}");
        eprint!(
            "{}",
            interpose::ca::trust_instructions(std::path::Path::new(&cacert))
        );
    }
    println!(
        "listening on {addr} (intercepting with CA \"{}\", SHA-256 {})",
        mitm.ca_subject, mitm.ca_fingerprint
    );
    println!("  try: curl -x http://{addr} --cacert {cacert} https://example.org/");
    serve_engine(listener, mitm.engine).await;
    Ok(())
}

/// `interpose har FLOWS.jsonl`: HAR on stdout; a line a crash cut short is skipped, said on stderr.
fn run_har(args: HarArgs) -> anyhow::Result<()> {
    let path = args.flows.display();
    let file = std::fs::File::open(&args.flows).with_context(|| format!("cannot open {path}"))?;
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    let skipped =
        |e: interpose::flow::jsonl::ReadError| eprintln!("interpose: {path}: {e} (skipped)");
    interpose::flow::har::convert_jsonl(std::io::BufReader::new(file), out, skipped)?;
    Ok(())
}

fn run_ca(args: CaArgs) -> anyhow::Result<()> {
    match args.action {
        CaAction::Init(dir) => {
            let store = dir.store()?;
            let ca = store.init()?;
            let path = store.cert_path();
            eprintln!("created {} (SHA-256 {})", path.display(), ca.fingerprint());
            eprint!("{}", interpose::ca::trust_instructions(&path));
        }
        CaAction::Path(dir) => {
            let store = dir.store()?;
            if !store.exists() {
                anyhow::bail!(
                    "no CA in {} yet: run `interpose ca init`",
                    store.dir().display()
                );
            }
            println!("{}", store.cert_path().display());
        }
        CaAction::Export { dir, der } => {
            let ca = dir.store()?.load()?;
            print!("{}", ca.cert_pem());
            if let Some(der) = der {
                interpose::ca::export::write_der(&ca, &der)?;
            }
        }
    }
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

async fn run_reverse(args: ReverseArgs) -> anyhow::Result<()> {
    use interpose::reverse::{conn::serve_tls_connection, ReverseProxy};
    let mut cfg = args.into_config()?;
    cfg.open_recorder()?;
    let proxy = ReverseProxy::new(cfg)?;
    if let Some(minted) = proxy.self_signed() {
        tracing::warn!(
            "no --cert/--key: serving a self-signed certificate for localhost and 127.0.0.1, \
             SHA-256 fingerprint {}",
            minted.fingerprint
        );
    }
    if proxy.cfg.insecure_upstream {
        tracing::warn!("--insecure-upstream: https upstream certificates are NOT verified");
    }
    let listener = bind(proxy.cfg.listen).await?;
    let addr = listener.local_addr()?;
    let upstreams: Vec<String> = proxy.cfg.upstreams.iter().map(|u| u.origin()).collect();
    println!(
        "listening on https://{addr}, forwarding to {}",
        upstreams.join(", ")
    );
    reload_on_sighup(proxy.clone());
    let shutdown = shutdown_on_signal();
    let grace = proxy.cfg.grace;
    let recorder = proxy.record.recorder.clone();
    serve(listener, shutdown, grace, move |stream, peer, token| {
        serve_tls_connection(proxy.clone(), stream, peer, token)
    })
    .await;
    if let Some(recorder) = recorder {
        // Exchanges may still be ending (HTTP/2 streams run in tasks of their own).
        recorder.finish(std::time::Duration::from_secs(2)).await;
    }
    Ok(())
}

/// Reloads the reverse proxy's certificates on every SIGHUP.
fn reload_on_sighup(proxy: std::sync::Arc<interpose::reverse::ReverseProxy>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP: certificates will not be reloaded");
            return;
        };
        while hup.recv().await.is_some() {
            match proxy.reload_certificates() {
                Ok(n) => tracing::info!("SIGHUP: reloaded {n} certificates"),
                Err(e) => {
                    tracing::warn!("SIGHUP: reload failed, keeping the old certificates: {e}")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = proxy;
}
