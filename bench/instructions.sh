#!/usr/bin/env bash
# bench/instructions.sh: instructions (and simulated cache misses) per request of the
# reverse proxy, counted by callgrind: a figure this noisy machine cannot move, for A/B
# comparisons of builds. Wall-clock ratios against the peers still come from reverse.sh.
#
#   bench/instructions.sh [BIN ...]        default: target/release/interpose
#
# Each binary serves `interpose reverse` under valgrind in front of an nginx origin
# (`return 200 "hello\n"`); h2load warms it up (2,000 requests), the counters are zeroed,
# then N requests run and the counters are dumped. Printed per binary, divided by N:
# Ir (instructions), Dr/Dw (data reads/writes), I1mr/D1mr/D1mw (first-level misses).
# The N requests include 50 TLS handshakes (new connections after the warm-up).
#
# Environment:
#   N=20000          requests measured
#   MODE=h2          h2 (h2load -c50 -m10) or h1 (h2load --h1 -c50, one request at a time)
#   HAPROXY=1        also measure HAProxy proxying the same origin (its instruction count)
#   KEEP_TMP=1       keep the temp dir (callgrind outputs for callgrind_annotate)
#
# Everything listens on 127.0.0.1 only, in a temp dir, and is stopped at exit.
set -euo pipefail

N=${N:-20000}
MODE=${MODE:-h2}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=("$ROOT/target/release/interpose")

die() { echo "instructions.sh: $*" >&2; exit 1; }
for tool in valgrind callgrind_control h2load nginx openssl; do
    command -v "$tool" >/dev/null || die "needs $tool (apt-get install valgrind nghttp2-client nginx openssl)"
done

TMP=$(mktemp -d /tmp/interpose-instr.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [[ -n ${KEEP_TMP:-} ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 120); do ss -ltnH "sport = :$1" | grep -q LISTEN && return 0; sleep 0.5; done; return 1; }
pid_on() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }

openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$TMP/proxy.key" -out "$TMP/proxy.crt" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 || die "openssl failed"
cat "$TMP/proxy.crt" "$TMP/proxy.key" > "$TMP/proxy.pem"

ORIGIN=$(port)
cat > "$TMP/nginx.conf" <<EOF
daemon off;
master_process off;
worker_rlimit_nofile 16384;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $TMP/body;
    proxy_temp_path $TMP/proxy;
    fastcgi_temp_path $TMP/fastcgi;
    uwsgi_temp_path $TMP/uwsgi;
    scgi_temp_path $TMP/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server { listen 127.0.0.1:$ORIGIN; location / { return 200 "hello\n"; } }
}
EOF
taskset -c 1 nginx -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" &
PIDS+=($!)
wait_port "$ORIGIN" || die "nginx origin did not start"

load() {  # load PORT REQUESTS -> requests that succeeded
    local mode=(-m10)
    [[ $MODE == h1 ]] && mode=(--h1 -m1)
    taskset -c 1 h2load "${mode[@]}" -t1 -c50 -n "$2" "https://127.0.0.1:$1/" 2>&1 \
        | awk '/^requests:/ {print $8}'
}

measure() {  # measure NAME COMMAND... (the command listens on $PORT)
    local name=$1; shift
    local out="$TMP/$name"
    mkdir -p "$out"
    taskset -c 0 valgrind --tool=callgrind --cache-sim=yes \
        --callgrind-out-file="$out/callgrind.out.%p" "$@" >"$out/stdout" 2>"$out/stderr" &
    PIDS+=($!)
    wait_port "$PORT" || { tail -5 "$out/stderr" >&2; die "$name did not start"; }
    local pid; pid=$(pid_on "$PORT")
    load "$PORT" 2000 >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    local ok; ok=$(load "$PORT" "$N")
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    kill "$pid" 2>/dev/null || true
    local file; file=$(ls -t "$out"/callgrind.out.*.* | head -1)
    local events totals
    events=$(awk '/^events:/ {$1=""; print; exit}' "$file")
    totals=$(awk '/^summary:/ {$1=""; print; exit}' "$file")
    printf '%-28s ok=%s' "$name" "$ok"
    paste <(tr ' ' '\n' <<<"$events" | sed '/^$/d') <(tr ' ' '\n' <<<"$totals" | sed '/^$/d') \
        | awk -v n="$N" '{printf "  %s=%d", $1, $2 / n}'
    echo
}

echo "instructions per request, $MODE, $N requests (callgrind; 50 handshakes included)"
for bin in "${BINS[@]}"; do
    PORT=$(port)
    measure "$(basename "$bin")" "$bin" reverse --listen "127.0.0.1:$PORT" \
        --to "127.0.0.1:$ORIGIN" --cert "$TMP/proxy.crt" --key "$TMP/proxy.key" --no-access-log
done
if [[ -n ${HAPROXY:-} ]]; then
    command -v haproxy >/dev/null || die "HAPROXY=1 needs haproxy"
    PORT=$(port)
    cat > "$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    option forwardfor
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend tls
    bind 127.0.0.1:$PORT ssl crt $TMP/proxy.pem alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https
    default_backend origin
backend origin
    server o1 127.0.0.1:$ORIGIN
EOF
    measure haproxy haproxy -f "$TMP/haproxy.cfg"
fi
