//! HAR validation by npm's `har-validator` (the HAR 1.2 JSON schema), installed on
//! first use under the target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `node` and `npm`, or why the test cannot run.
pub fn node_tools() -> Option<()> {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    (ok("node") && ok("npm")).then_some(())
}

/// The directory whose node_modules holds har-validator, installed there on first use.
pub fn har_validator() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("har-validator");
    if !dir.join("node_modules/har-validator/package.json").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&dir)
            .arg("har-validator@5")
            .status()
            .expect("run npm");
        assert!(status.success(), "npm install har-validator failed");
    }
    dir
}

/// Runs har-validator on a file: Ok, or the schema errors it reports.
pub fn validate(modules: &Path, har: &Path) -> Result<(), String> {
    let script = r#"
        const fs = require('fs');
        const validator = require('har-validator');
        const har = JSON.parse(fs.readFileSync(process.argv[1], 'utf8'));
        validator.har(har).then(
            () => console.log('valid'),
            (e) => { console.error(JSON.stringify(e.errors, null, 1)); process.exit(1); });
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(har)
        .env("NODE_PATH", modules.join("node_modules"))
        .output()
        .expect("run node");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
