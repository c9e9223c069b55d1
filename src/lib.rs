//! interpose: a forward, reverse and intercepting HTTP(S) proxy in one binary.
//!
//! Module map:
//! - [`cli`], [`config`]: flags and the validated configuration they become.
//! - [`config_file`]: `--config FILE.toml` (flags from a table per mode) and `check-config`.
//! - [`server`]: the accept loop with graceful shutdown, shared by every mode.
//! - [`h1`]: our strict HTTP/1 server side (request heads, bodies, responses).
//! - [`proxy`]: the engine: connection loop, forwarding, CONNECT, tunnels, header rules,
//!   HTTP/2 inside interception (served by hyper, translated to and from HTTP/1.1).
//! - [`upstream`]: connections towards origins (HTTP/1 pool, HTTP/2 cache) and their
//!   error classification.
//! - [`error`]: errors with the side that caused them, and their HTTP answers.
//! - [`access_log`]: the one-line-per-exchange access log.
//! - [`allocator`]: the global allocator (mimalloc, plain blocks where aligned enough).
//! - [`flow`]: flow records, the `--filter` language, JSONL and HAR sinks.
//! - [`echo`]: the debugging origin server.
//! - [`ca`]: the interception CA: store, loading, leaf minting and caching.
//! - [`mitm`]: setting up the intercepting mode (CA, policy, upstream TLS).
//! - [`reverse`], [`tls`]: the TLS-terminating reverse proxy and shared TLS plumbing.
//! - [`reverse`]: the TLS-terminating reverse proxy (`interpose reverse`).
//! - [`tls`]: certificates (PEM, SNI store, reload, self-signed) and rustls configs.
//! - [`logging`]: access lines on stdout, diagnostics on stderr.
//! - [`line_batch`]: lines gathered between writes (access lines, flow lines).
//! - [`stream_set`]: runs a connection's HTTP/2 streams inside the connection's task.
//! - [`rules`]: rewrite rules (modify headers and bodies, map remote and local, block).

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod access_log;
pub mod allocator;
pub mod ca;
pub mod cli;
pub mod config;
pub mod config_file;
pub mod echo;
pub mod error;
pub mod flow;
pub mod h1;
pub mod line_batch;
pub mod logging;
pub mod memory;
pub mod mitm;
pub mod proxy;
pub mod reverse;
pub mod rules;
pub mod server;
pub mod stream_set;
pub mod tls;
pub mod upstream;
