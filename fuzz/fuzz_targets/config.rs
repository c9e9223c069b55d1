//! Fuzzes the configuration value parsers: sizes, durations, CIDRs, port lists and
//! credentials. Any text parses or is refused; a port list and a CIDR print back to
//! text that parses to the same value.

#![no_main]

use std::str::FromStr;

use libfuzzer_sys::fuzz_target;

use interpose::config::{parse_cidr, parse_duration, parse_size, Credentials, PortSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_size(text);
    let _ = parse_duration(text);
    if let Ok(net) = parse_cidr(text) {
        let again = parse_cidr(&net.to_string()).expect("a printed CIDR parses");
        assert_eq!(net, again);
    }
    if let Ok(spec) = PortSpec::from_str(text) {
        assert!(!spec.allows(0), "port 0 allowed by {text:?}");
        let printed = spec.to_string();
        let again = PortSpec::from_str(&printed).expect("a printed port list parses");
        assert_eq!(spec, again, "{text:?} printed as {printed:?}");
    }
    if let Ok(c) = Credentials::from_str(text) {
        assert!(!c.user.is_empty() && !c.user.contains(':'));
    }
});
