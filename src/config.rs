//! Typed, validated configuration for each mode; parsed whole before anything binds.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

/// A configuration value that does not make sense, said in one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    fn new(msg: impl Into<String>) -> Self {
        ConfigError(msg.into())
    }
}

/// Which destination ports CONNECT may reach: a list of single ports and ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    ranges: Vec<(u16, u16)>,
}

impl PortSpec {
    /// Only the HTTPS port, the safe default for a proxy reachable from other hosts.
    pub fn https_only() -> Self {
        PortSpec {
            ranges: vec![(443, 443)],
        }
    }

    /// Every port: used when the proxy only listens on loopback.
    pub fn any() -> Self {
        PortSpec {
            ranges: vec![(1, u16::MAX)],
        }
    }

    pub fn allows(&self, port: u16) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }
}

impl FromStr for PortSpec {
    type Err = ConfigError;

    /// Parses `443,8443,1000-2000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parse_port = |p: &str| -> Result<u16, ConfigError> {
            match p.trim().parse::<u16>() {
                Ok(0) | Err(_) => Err(ConfigError::new(format!(
                    "invalid port {:?} in port list {s:?} (expected 1-65535)",
                    p.trim()
                ))),
                Ok(n) => Ok(n),
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            if part.trim().is_empty() {
                return Err(ConfigError::new(format!("empty entry in port list {s:?}")));
            }
            let range = match part.split_once('-') {
                Some((lo, hi)) => (parse_port(lo)?, parse_port(hi)?),
                None => {
                    let p = parse_port(part)?;
                    (p, p)
                }
            };
            if range.0 > range.1 {
                return Err(ConfigError::new(format!(
                    "port range {part:?} runs backwards in {s:?}"
                )));
            }
            ranges.push(range);
        }
        Ok(PortSpec { ranges })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// `USER:PASS` for HTTP Basic proxy authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub pass: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}:***)", self.user)
    }
}

impl FromStr for Credentials {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((user, pass)) if !user.is_empty() => Ok(Credentials {
                user: user.to_string(),
                pass: pass.to_string(),
            }),
            _ => Err(ConfigError::new(
                "--auth expects USER:PASS with a non-empty USER",
            )),
        }
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let s = s.trim();
    let bad = || ConfigError::new(format!("invalid duration {s:?} (try 10s, 500ms, 2m)"));
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(d)
}

/// Parses a size: `4096`, `64k`, `4KiB`, `1m`, `2MiB` (k and m are binary: 1024, 1024²).
pub fn parse_size(s: &str) -> Result<usize, ConfigError> {
    let t = s.trim();
    let bad = || ConfigError::new(format!("invalid size {s:?} (try 4096, 64k, 4KiB, 1MiB)"));
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().map_err(|_| bad())?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// Parses a CIDR (`10.0.0.0/8`) or a single address (`192.168.1.5`).
pub fn parse_cidr(s: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| ConfigError::new(format!("invalid CIDR {s:?} (try 10.0.0.0/8 or ::1)")))
}

/// Everything the forward proxy needs, validated.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub listen: SocketAddr,
    pub connect_ports: PortSpec,
    pub auth: Option<Credentials>,
    pub allow_clients: Vec<IpNet>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
    pub grace: Duration,
    /// Open client connections allowed at once.
    pub max_connections: usize,
    /// Print every request and response head (`--dump headers`).
    pub dump_headers: bool,
    /// With `dump_headers`, also print the first this many bytes of each body
    /// (`--dump bodies`); 0 captures no body.
    pub dump_body_max: usize,
    /// With `dump_headers`, show Authorization, Cookie and Set-Cookie values
    /// (`--dump-secrets`); Proxy-Authorization stays redacted.
    pub show_secrets: bool,
    /// Largest request body forwarded (`--max-body-size`); `None`: no limit.
    pub max_body_size: Option<u64>,
    /// What to record: `--flows`, `--har`, `--filter`, `--capture-max-body`.
    pub record: crate::flow::recorder::RecordConfig,
    /// The recorder for `record`, once opened at start ([`ForwardConfig::open_recorder`]).
    pub recorder: Option<std::sync::Arc<crate::flow::recorder::Recorder>>,
    /// `--modify-header`, `--modify-body`, `--map-remote`, `--map-local`, `--block`.
    pub rules: Option<std::sync::Arc<crate::rules::Rules>>,
}

impl ForwardConfig {
    /// The defaults a user gets with no flags: loopback only, any CONNECT port.
    pub fn new(listen: SocketAddr) -> Self {
        ForwardConfig {
            listen,
            connect_ports: if listen.ip().is_loopback() {
                PortSpec::any()
            } else {
                PortSpec::https_only()
            },
            auth: None,
            allow_clients: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            max_connections: crate::server::DEFAULT_MAX_CONNECTIONS,
            dump_headers: false,
            dump_body_max: 0,
            show_secrets: false,
            max_body_size: None,
            record: crate::flow::recorder::RecordConfig::default(),
            recorder: None,
            rules: None,
        }
    }

    /// How dumps treat secret header values.
    pub fn dump_secrets(&self) -> crate::proxy::dump::Secrets {
        if self.show_secrets {
            crate::proxy::dump::Secrets::Show
        } else {
            crate::proxy::dump::Secrets::Redact
        }
    }

    /// Opens the files `record` names and starts their writer (done at start, after
    /// validation, so that `check-config` creates nothing).
    pub fn open_recorder(&mut self) -> Result<(), ConfigError> {
        if self.record.is_active() {
            let recorder =
                crate::flow::recorder::Recorder::open(&self.record).map_err(ConfigError)?;
            self.recorder = Some(std::sync::Arc::new(recorder));
        }
        Ok(())
    }

    /// Refuses to become an open proxy by accident.
    pub fn check_not_open(&self, allow_open: bool) -> Result<(), ConfigError> {
        let guarded = self.auth.is_some() || !self.allow_clients.is_empty();
        if !self.listen.ip().is_loopback() && !guarded && !allow_open {
            return Err(ConfigError::new(format!(
                "listening on {} without --auth or --allow-client would be an open proxy; \
                 add one of them, or --allow-open if that is really what you want",
                self.listen
            )));
        }
        Ok(())
    }

    /// Whether a client at `ip` may use the proxy at all.
    pub fn client_allowed(&self, ip: IpAddr) -> bool {
        if self.allow_clients.is_empty() {
            return true;
        }
        let ip = canonical_ip(ip);
        self.allow_clients.iter().any(|net| net.contains(&ip))
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) to IPv4 so CIDRs match either way.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_spec_parses_lists_and_ranges() {
        let spec: PortSpec = "443,8443,1000-2000".parse().unwrap();
        assert!(spec.allows(443) && spec.allows(8443) && spec.allows(1500));
        assert!(!spec.allows(80) && !spec.allows(2001));
        assert_eq!(spec.to_string(), "443,8443,1000-2000");
        for bad in ["", "0", "70000", "2000-1000", "443,", "a", "1-"] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64k").unwrap(), 64 * 1024);
        assert_eq!(parse_size("4KiB").unwrap(), 4096);
        assert_eq!(parse_size("1 MiB").unwrap(), 1024 * 1024);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in ["", "k", "4x", "-1", "4.5k", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn open_proxy_refused_off_loopback() {
        let cfg = ForwardConfig::new("0.0.0.0:8080".parse().unwrap());
        assert!(cfg.check_not_open(false).is_err());
        assert!(cfg.check_not_open(true).is_ok());
        assert_eq!(cfg.connect_ports, PortSpec::https_only());
        let mut guarded = cfg.clone();
        guarded
            .allow_clients
            .push(parse_cidr("10.0.0.0/8").unwrap());
        assert!(guarded.check_not_open(false).is_ok());
        assert!(guarded.client_allowed("10.1.2.3".parse().unwrap()));
        assert!(guarded.client_allowed("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!guarded.client_allowed("11.0.0.1".parse().unwrap()));
        let local = ForwardConfig::new("127.0.0.1:8080".parse().unwrap());
        assert!(local.check_not_open(false).is_ok());
        assert!(local.connect_ports.allows(22));
    }

    #[test]
    fn credentials_need_a_user() {
        assert!("alice:secret".parse::<Credentials>().is_ok());
        assert!(":x".parse::<Credentials>().is_err());
        assert!("nocolon".parse::<Credentials>().is_err());
    }
}
