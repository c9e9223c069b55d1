//! Command-line definitions (clap derive) and their conversion to validated configs.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::config::{
    parse_cidr, parse_duration, ConfigError, Credentials, ForwardConfig, PortSpec,
};

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
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
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
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub listen: SocketAddr,
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

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}
