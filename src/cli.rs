//! Command-line definitions (clap derive) and their conversion to validated configs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::config::{
    parse_cidr, parse_duration, parse_size, ConfigError, Credentials, ForwardConfig, PortSpec,
};
use crate::reverse::config::{parse_sni_cert, parse_upstream, ReverseConfig, UpstreamTarget};
use crate::tls::pem::CertSource;
use crate::tls::server::{CertSources, MinTls};

/// interpose: a fast, trustworthy HTTP(S) proxy.
#[derive(Debug, Parser)]
#[command(name = "interpose", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Forward proxy: forwards absolute-form http:// requests and tunnels CONNECT.
    Forward(ForwardArgs),
    /// Debugging origin server: answers every request with a description of it.
    Echo(EchoArgs),
    /// TLS-terminating reverse proxy in front of one or more upstreams.
    Reverse(ReverseArgs),
    /// Intercepting proxy: the forward proxy, but TLS inside CONNECT is terminated with
    /// certificates from our CA so every exchange is visible, then re-encrypted upstream.
    Mitm(MitmArgs),
    /// Create the interception CA, or show where it is, or export it.
    Ca(CaArgs),
    /// Convert a --flows file (JSON lines) to a HAR 1.2 document on stdout.
    Har(HarArgs),
    /// Validate a --config file: every mode table in it, as that mode would start.
    ///
    /// Binds nothing and creates no CA. Exits 0 printing "config FILE: ok (MODES)", or 2
    /// with one line saying what is wrong.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The TOML file, as --config reads it.
    #[arg(value_name = "FILE.toml")]
    pub file: PathBuf,
}

/// `--config`, flattened into every mode; its id ([`crate::config_file::CONFIG_ID`]) is what
/// makes a subcommand a mode with a table of its own in the file.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// Take flags from this TOML file's table for this mode, e.g. [forward] (keys: long flag names); flags given here win.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct HarArgs {
    /// The flows file, as --flows writes it.
    #[arg(value_name = "FLOWS.jsonl")]
    pub flows: PathBuf,
}

#[derive(Debug, Args)]
pub struct MitmArgs {
    #[command(flatten)]
    pub proxy: ForwardArgs,
    /// Directory of our CA (ca.pem, ca-key.pem), created on first run [default: $XDG_DATA_HOME/interpose or ~/.local/share/interpose].
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
    /// Use this CA certificate instead (with --ca-key, or a file holding key and certificate, as mitmproxy's).
    #[arg(long, value_name = "PEM", conflicts_with = "ca_dir")]
    pub ca_cert: Option<PathBuf>,
    /// The private key of --ca-cert (PKCS#8, SEC1 or PKCS#1 PEM).
    #[arg(long, value_name = "PEM", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// How many hosts' certificates to keep.
    #[arg(long, default_value_t = crate::ca::DEFAULT_CAPACITY, value_name = "N")]
    pub leaf_cache: usize,
    /// Tunnel matching hosts blind, so the client sees the real certificate (repeatable).
    #[arg(long = "ignore-hosts", value_name = "REGEX", value_parser = parse_regex)]
    pub ignore_hosts: Vec<regex::Regex>,
    /// When a client aborts our TLS handshake (it does not trust our CA, or pins the real
    /// certificate), remember the host and tunnel it blind from then on (logged once).
    #[arg(long)]
    pub auto_passthrough: bool,
    /// Also trust this CA (PEM) when verifying upstream certificates.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
    /// Do not verify upstream certificates (warned about at start).
    #[arg(long)]
    pub insecure_upstream: bool,
}

#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    pub action: CaAction,
}

#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Create the CA (refuses to overwrite one) and say how to trust it.
    Init(CaDirArg),
    /// Print the CA certificate's path, e.g. for curl --cacert "$(interpose ca path)".
    Path(CaDirArg),
    /// Print the CA certificate (PEM); with --der also write it as DER to FILE.
    Export {
        #[command(flatten)]
        dir: CaDirArg,
        /// Also write the certificate in DER form to this file.
        #[arg(long, value_name = "FILE")]
        der: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct CaDirArg {
    /// Directory of the CA [default: $XDG_DATA_HOME/interpose or ~/.local/share/interpose].
    #[arg(long, value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,
}

impl CaDirArg {
    /// The store this argument names, or the default one.
    pub fn store(&self) -> Result<crate::ca::CaStore, crate::ca::CaError> {
        match &self.ca_dir {
            Some(dir) => Ok(crate::ca::CaStore::new(dir)),
            None => crate::ca::CaStore::default_store(),
        }
    }
}

impl MitmArgs {
    /// Splits into the forward settings and the interception settings, validated.
    pub fn into_settings(
        self,
    ) -> Result<(ForwardConfig, crate::mitm::MitmSettings), crate::mitm::MitmError> {
        use crate::mitm::CaSource;
        let ca = match (self.ca_cert, self.ca_key) {
            (Some(cert), Some(key)) => CaSource::Pair { cert, key },
            (Some(file), None) => CaSource::Combined(file),
            _ => CaSource::Store(
                CaDirArg {
                    ca_dir: self.ca_dir,
                }
                .store()?,
            ),
        };
        let cfg = self.proxy.into_config()?;
        let settings = crate::mitm::MitmSettings {
            ca,
            leaf_cache: self.leaf_cache,
            ignore_hosts: self.ignore_hosts,
            auto_passthrough: self.auto_passthrough,
            upstream_ca: self.upstream_ca,
            insecure_upstream: self.insecure_upstream,
        };
        Ok((cfg, settings))
    }
}

fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("invalid regex {s:?}: {e}"))
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub config_file: ConfigArg,
    /// Address to listen on. A non-loopback address needs --auth, --allow-client or --allow-open.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Ports CONNECT may reach, e.g. 443,8443,1000-2000 [default: any when listening on loopback, else 443].
    #[arg(long, value_name = "SPEC", value_parser = parse_port_spec)]
    pub allow_connect_port: Option<PortSpec>,
    /// Require HTTP Basic proxy authentication with these credentials.
    #[arg(long, value_name = "USER:PASS", value_parser = parse_credentials)]
    pub auth: Option<Credentials>,
    /// Only accept clients from this network (repeatable), e.g. 10.0.0.0/8.
    #[arg(long = "allow-client", value_name = "CIDR", value_parser = parse_cidr_arg)]
    pub allow_clients: Vec<IpNet>,
    /// Allow listening off loopback with no client restriction (an open proxy).
    #[arg(long)]
    pub allow_open: bool,
    /// Time allowed to connect to an upstream before answering 504.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub connect_timeout: Duration,
    /// Time allowed for an upstream to start its response before answering 504.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub response_timeout: Duration,
    /// Close keep-alive connections and tunnels idle this long.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub idle_timeout: Duration,
    /// Time allowed to receive a whole request head (slow clients get 408).
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub header_timeout: Duration,
    /// On SIGINT/SIGTERM, let open exchanges and tunnels finish for this long.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub grace: Duration,
    /// Open client connections allowed at once; beyond it new ones wait briefly, then are closed.
    #[arg(long, default_value_t = crate::server::DEFAULT_MAX_CONNECTIONS, value_name = "N")]
    pub max_connections: usize,
    /// Also print each exchange on stdout: its heads (credentials redacted), or heads and bodies.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub dump: Option<DumpWhat>,
    /// With --dump bodies, show at most this much of each body, e.g. 4096, 64k, 1MiB (0: none).
    #[arg(long, default_value = "4KiB", value_name = "SIZE", value_parser = parse_size_arg)]
    pub dump_max_body: usize,
    /// With --dump, show Authorization, Cookie and Set-Cookie values instead of redacting them.
    #[arg(long, requires = "dump")]
    pub dump_secrets: bool,
    /// Refuse request bodies larger than this with 413, e.g. 10MiB [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub max_body_size: Option<usize>,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub rules: RulesArgs,
}

/// Rewrite rules: shared by the forward, mitm and reverse modes. Each rule's first
/// character is its separator, as in mitmproxy; FILTER (optional) is a --filter expression.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// Set a header, or remove it with an empty VALUE: /FILTER/NAME/VALUE (repeatable;
    /// requests and responses, ~q or ~s for one side).
    #[arg(long, value_name = "/FILTER/NAME/VALUE")]
    pub modify_header: Vec<String>,
    /// Replace REGEX in bodies (decoded first, re-encoded after): /FILTER/REGEX/REPLACEMENT
    /// (repeatable; ~q requests, ~s responses; @FILE reads the replacement from a file).
    #[arg(long, value_name = "/FILTER/REGEX/REPLACEMENT")]
    pub modify_body: Vec<String>,
    /// Send matching requests elsewhere: /FILTER/URL-REGEX/REPLACEMENT (repeatable).
    #[arg(long, value_name = "/FILTER/URL-REGEX/REPLACEMENT")]
    pub map_remote: Vec<String>,
    /// Answer matching requests from a local file or directory: /FILTER/URL-REGEX/PATH (repeatable).
    #[arg(long, value_name = "/FILTER/URL-REGEX/PATH")]
    pub map_local: Vec<String>,
    /// Answer matching requests 403 without contacting the upstream (repeatable).
    #[arg(long, value_name = "FILTER")]
    pub block: Vec<String>,
    /// Bodies --modify-body buffers at most; larger ones pass unmodified, with a warning.
    #[arg(long, default_value = "16MiB", value_name = "SIZE", value_parser = parse_size_arg)]
    pub modify_max_body: usize,
}

impl RulesArgs {
    /// The parsed rules, `None` when there are none; a bad rule is one line naming it.
    pub fn into_rules(self) -> Result<Option<std::sync::Arc<crate::rules::Rules>>, ConfigError> {
        let args = crate::rules::RuleArgs {
            modify_header: self.modify_header,
            modify_body: self.modify_body,
            map_remote: self.map_remote,
            map_local: self.map_local,
            block: self.block,
            modify_max_body: self.modify_max_body,
        };
        let rules = crate::rules::Rules::parse(&args).map_err(|e| ConfigError(e.to_string()))?;
        Ok((!rules.is_empty()).then(|| std::sync::Arc::new(rules)))
    }
}

/// Recording flows: shared by the forward, mitm and reverse modes.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Append each finished exchange to this file as one JSON line (flushed per line).
    #[arg(long, value_name = "FILE.jsonl")]
    pub flows: Option<PathBuf>,
    /// Write the exchanges as a HAR 1.2 file, completed when the proxy exits.
    #[arg(long, value_name = "FILE.har")]
    pub har: Option<PathBuf>,
    /// Only print and record exchanges matching this expression, e.g.
    /// '~d example.org & ~m POST', '~c 500-599 | ~t json', '!~u \.png$'.
    /// Operators: ~d ~u ~m ~c ~h ~hq ~hs ~t ~b ~bq ~bs ~q ~s ! & | ( ); a bare word is ~u.
    #[arg(long, value_name = "EXPR", value_parser = parse_filter_arg)]
    pub filter: Option<crate::flow::filter::Filter>,
    /// Keep at most this much of each body in recorded flows; longer ones are marked truncated.
    #[arg(long, default_value = "1MiB", value_name = "SIZE", value_parser = parse_size_arg)]
    pub capture_max_body: usize,
    /// Print no access line per exchange (as nginx's `access_log off`); --dump, flows
    /// and diagnostics on stderr are not affected.
    #[arg(long)]
    pub no_access_log: bool,
}

impl RecordArgs {
    pub fn into_config(self) -> crate::flow::recorder::RecordConfig {
        crate::flow::recorder::RecordConfig {
            flows: self.flows,
            har: self.har,
            filter: self.filter,
            capture_max_body: self.capture_max_body,
        }
    }
}

fn parse_filter_arg(s: &str) -> Result<crate::flow::filter::Filter, String> {
    crate::flow::filter::parse(s).map_err(|e| e.to_string())
}

/// What `--dump` prints besides the access line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DumpWhat {
    /// The full request and response heads.
    Headers,
    /// The heads and then the bodies, decoded for display (gzip, deflate, br, zstd),
    /// text shown, binary summarised, each cut at --dump-max-body; printed as one
    /// block when the exchange ends. Bodies stream through untouched.
    Bodies,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub config_file: ConfigArg,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct ReverseArgs {
    #[command(flatten)]
    pub config_file: ConfigArg,
    /// Address to listen on (TLS).
    #[arg(long, default_value = "127.0.0.1:8443", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Upstream to forward to (repeatable: round-robin), e.g. 127.0.0.1:8080 or https://host.
    #[arg(long = "to", value_name = "URL", required = true, value_parser = parse_upstream_arg)]
    pub to: Vec<UpstreamTarget>,
    /// Certificate chain (PEM) served by default [default: self-signed for localhost].
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, SEC1 or PKCS#1) for --cert.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Certificate for one server name (SNI), repeatable; NAME may be *.example.org.
    #[arg(long = "sni-cert", value_name = "NAME=CERT:KEY", value_parser = parse_sni_cert_arg)]
    pub sni_certs: Vec<(String, CertSource)>,
    /// Lowest TLS version accepted: 1.2 or 1.3.
    #[arg(long, default_value = "1.2", value_name = "VERSION", value_parser = parse_min_tls)]
    pub min_tls: MinTls,
    /// Extra CA (PEM) trusted for https upstreams, besides the system store.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Option<PathBuf>,
    /// Do not verify https upstreams' certificates (warns at start).
    #[arg(long)]
    pub insecure_upstream: bool,
    /// Peer network whose X-Forwarded-*/Forwarded values are kept (repeatable).
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = parse_cidr_arg)]
    pub trusted_proxies: Vec<IpNet>,
    /// Send the upstream's own host as Host instead of the client's.
    #[arg(long)]
    pub upstream_host: bool,
    /// Time allowed to connect to an upstream (then it is marked down).
    #[arg(long, default_value = "5s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub connect_timeout: Duration,
    /// Time allowed for an upstream to start its response before answering 504.
    #[arg(long, default_value = "60s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub response_timeout: Duration,
    /// Time allowed for the TLS handshake and for each request head.
    #[arg(long, default_value = "30s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub header_timeout: Duration,
    /// How long an upstream that refused or timed out is skipped.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub down_cooldown: Duration,
    /// On SIGINT/SIGTERM, let open exchanges finish for this long.
    #[arg(long, default_value = "10s", value_name = "DUR", value_parser = parse_duration_arg)]
    pub grace: Duration,
    /// HTTP/2: concurrent streams per client connection; more are refused (REFUSED_STREAM).
    #[arg(long, default_value_t = crate::reverse::config::DEFAULT_H2_MAX_STREAMS, value_name = "N")]
    pub h2_max_streams: u32,
    /// HTTP/2: streams a client may reset before we accept them, then GOAWAY (rapid reset, CVE-2023-44487).
    #[arg(long, default_value_t = crate::reverse::config::DEFAULT_H2_MAX_PENDING_RESETS, value_name = "N")]
    pub h2_max_resets: usize,
    /// HTTP/2: streams we may reset over a client's errors, then GOAWAY (MadeYouReset, CVE-2025-8671).
    #[arg(long, default_value_t = crate::reverse::config::DEFAULT_H2_MAX_ERROR_RESETS, value_name = "N")]
    pub h2_max_error_resets: usize,
    /// Refuse request bodies larger than this with 413, e.g. 10MiB [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size_arg)]
    pub max_body_size: Option<usize>,
    #[command(flatten)]
    pub record: RecordArgs,
    #[command(flatten)]
    pub rules: RulesArgs,
}

impl ReverseArgs {
    /// Builds and validates the reverse proxy configuration (certificates are read later).
    pub fn into_config(self) -> Result<ReverseConfig, ConfigError> {
        let mut cfg = ReverseConfig::new(self.listen, self.to);
        cfg.certs = CertSources {
            default: match (self.cert, self.key) {
                (Some(cert), Some(key)) => Some(CertSource { cert, key }),
                _ => None,
            },
            by_name: self.sni_certs,
        };
        cfg.min_tls = self.min_tls;
        cfg.upstream_ca = self.upstream_ca;
        cfg.insecure_upstream = self.insecure_upstream;
        cfg.trusted_proxies = self.trusted_proxies;
        cfg.upstream_host = self.upstream_host;
        cfg.connect_timeout = self.connect_timeout;
        cfg.response_timeout = self.response_timeout;
        cfg.header_timeout = self.header_timeout;
        cfg.down_cooldown = self.down_cooldown;
        cfg.grace = self.grace;
        cfg.h2_max_streams = self.h2_max_streams;
        cfg.h2_max_pending_resets = self.h2_max_resets;
        cfg.h2_max_error_resets = self.h2_max_error_resets;
        cfg.max_body_size = self.max_body_size.map(|n| n as u64);
        cfg.record = self.record.into_config();
        cfg.rules = self.rules.into_rules()?;
        cfg.validate()?;
        Ok(cfg)
    }
}

fn parse_upstream_arg(s: &str) -> Result<UpstreamTarget, String> {
    parse_upstream(s).map_err(|e| e.to_string())
}

fn parse_sni_cert_arg(s: &str) -> Result<(String, CertSource), String> {
    parse_sni_cert(s).map_err(|e| e.to_string())
}

fn parse_min_tls(s: &str) -> Result<MinTls, String> {
    match s {
        "1.2" => Ok(MinTls::V12),
        "1.3" => Ok(MinTls::V13),
        _ => Err(format!("invalid TLS version {s:?} (expected 1.2 or 1.3)")),
    }
}

impl ForwardArgs {
    /// Builds and validates the forward proxy configuration.
    pub fn into_config(self) -> Result<ForwardConfig, ConfigError> {
        let mut cfg = ForwardConfig::new(self.listen);
        if let Some(ports) = self.allow_connect_port {
            cfg.connect_ports = ports;
        }
        cfg.auth = self.auth;
        cfg.allow_clients = self.allow_clients;
        cfg.connect_timeout = self.connect_timeout;
        cfg.response_timeout = self.response_timeout;
        cfg.idle_timeout = self.idle_timeout;
        cfg.header_timeout = self.header_timeout;
        cfg.grace = self.grace;
        cfg.max_connections = self.max_connections;
        cfg.dump_headers = self.dump.is_some();
        cfg.show_secrets = self.dump_secrets;
        cfg.max_body_size = self.max_body_size.map(|n| n as u64);
        if self.dump == Some(DumpWhat::Bodies) {
            cfg.dump_body_max = self.dump_max_body;
        }
        cfg.record = self.record.into_config();
        cfg.rules = self.rules.into_rules()?;
        cfg.check_not_open(self.allow_open)?;
        Ok(cfg)
    }
}

fn parse_port_spec(s: &str) -> Result<PortSpec, String> {
    s.parse().map_err(|e: ConfigError| e.to_string())
}

fn parse_credentials(s: &str) -> Result<Credentials, String> {
    s.parse().map_err(|e: ConfigError| e.to_string())
}

fn parse_cidr_arg(s: &str) -> Result<IpNet, String> {
    parse_cidr(s).map_err(|e| e.to_string())
}

fn parse_size_arg(s: &str) -> Result<usize, String> {
    parse_size(s).map_err(|e| e.to_string())
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}
