//! Log setup: access lines (target `access`) go to stdout through a background
//! writer so a busy proxy never blocks on its terminal; diagnostics go to stderr
//! under `RUST_LOG` (default `info`).

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the subscriber; keep the guard alive so buffered access lines are flushed at exit.
pub fn init() -> WorkerGuard {
    let (stdout, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let access = tracing_subscriber::fmt::layer()
        .with_writer(stdout)
        .with_target(false)
        .with_level(false)
        .with_filter(Targets::new().with_target("access", tracing::Level::INFO));
    let diagnostics_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(diagnostics_filter)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            meta.target() != "access"
        }));
    let _ = tracing_subscriber::registry()
        .with(access)
        .with(diagnostics)
        .try_init();
    guard
}
