#!/usr/bin/env bash
# bench/body_rss.sh: peak RSS of `interpose forward` while 1 GiB goes through it each way.
# Download: nginx serves a 1 GiB sparse file; upload: curl -T streams it to `interpose echo`.
# Loopback only; everything started here is killed at exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${INTERPOSE_BIN:-$ROOT/target/release/interpose}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PROXY=$(free_port); ECHO=$(free_port); ORIGIN=$(free_port)
truncate -s 1G "$TMP/big"
cat > "$TMP/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $TMP/nginx.pid; error_log $TMP/error.log;
events { worker_connections 64; }
http { access_log off; server { listen 127.0.0.1:$ORIGIN; root $TMP; } }
CONF
nginx -c "$TMP/nginx.conf" & pids+=($!)
"$BIN" forward --listen "127.0.0.1:$PROXY" >/dev/null 2>&1 & pids+=($!); P=$!
"$BIN" echo --listen "127.0.0.1:$ECHO" >/dev/null 2>&1 & pids+=($!)
sleep 0.5
rss() { awk '/VmRSS/{print $2}' "/proc/$P/status"; }
watch_peak() { # runs "$@" in the background, prints the proxy's peak RSS in kB
  "$@" & local c=$! peak=0 r
  while kill -0 "$c" 2>/dev/null; do r=$(rss); (( r > peak )) && peak=$r; sleep 0.1; done
  wait "$c"; echo "$peak"
}
echo "idle RSS: $(rss) kB"
down=$(watch_peak curl -sS -x "http://127.0.0.1:$PROXY" -o /dev/null "http://127.0.0.1:$ORIGIN/big")
echo "1 GiB download through the proxy: peak RSS $down kB"
up=$(watch_peak curl -sS -x "http://127.0.0.1:$PROXY" -T "$TMP/big" -o "$TMP/echo.txt" "http://127.0.0.1:$ECHO/up")
echo "1 GiB upload through the proxy: peak RSS $up kB ($(grep '^body:' "$TMP/echo.txt"))"
