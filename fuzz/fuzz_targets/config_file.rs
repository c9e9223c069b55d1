//! Fuzzes the config file: any text read as `--config FILE.toml` for each mode, through
//! our key mapping and the merge with the command line (then clap's value parsers).
//! Any text parses or is refused with one line; nothing panics.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

use interpose::config_file::merge::parse_args_with;
use interpose::config_file::ConfigFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    for mode in ["forward", "mitm", "reverse", "echo"] {
        let argv = ["interpose", mode, "--config", "fuzz.toml", "--listen", "127.0.0.1:0"];
        match parse_args_with(argv, |p| ConfigFile::parse(p, text)) {
            Ok(_) => {}
            Err(e) => {
                let line = e.to_string();
                assert!(!line.contains('\n'), "{mode}: a multi-line error: {line:?}");
            }
        }
    }
    let _ = ConfigFile::parse(path, text);
});
