#!/usr/bin/env bash
# The test command: installs what the tests use beyond cargo (if missing), then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# tests/har_schema.rs validates HAR with npm's har-validator (installed on first use).
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Tests open many sockets at once (idle-connection and tunnel tests).
ulimit -n 65536 2>/dev/null || ulimit -n 4096 2>/dev/null || true

# Library, binary and integration tests (benches are compiled by clippy, run by `cargo bench`).
cargo test --lib --bins --tests "$@"
