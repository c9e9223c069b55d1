#!/usr/bin/env bash
# bench/run.sh: forward-proxy benchmark, squid vs tinyproxy vs interpose, side by side.
#
# Method (see docs/benchmarks.md): the proxy under test is pinned to CPU 0, the
# load generator and the nginx origin to CPU 1; every peer runs one core; all
# peers are measured in the same run against the same origin with the same load,
# and the table reports interpose/squid ratios.
# Everything listens on 127.0.0.1 only, in a temp dir, and is killed at exit.
#
# Every peer is started first (its idle RSS is taken on the fresh process), and
# all stay up, idle when not measured. The load scenarios then run in interleaved
# rounds: plain HTTP and CONNECT in ROUNDS rounds (round 1 measures squid,
# tinyproxy, interpose, round 2 again, and so on), the 1 GiB download in
# DOWNLOAD_RUNS rounds of one download per peer. Each cell is the median over the
# rounds, and each ratio the median of the per-round ratios, so that the machine's
# drift over minutes (large on a shared VM) weighs on every peer alike instead of
# on whichever ran last. The tunnels RSS figure is taken once per peer, in STEPS
# order (by default last, after the load, as before the rounds).
#
# Environment:
#   DURATION=10s       length of each wrk/oha run (DURATION=2s for a smoke run)
#   ROUNDS=3           interleaved rounds of the plain HTTP and CONNECT scenarios
#   CONNS=50           concurrent connections for wrk and oha
#   TUNNELS=1000       tunnels held open for the RSS-under-load figure
#   DOWNLOAD_RUNS=3    interleaved rounds of one 1 GiB download per peer (medians reported)
#   DOWNLOAD_TLS=1     fetch the 1 GiB file over https inside the tunnel (default: http)
#   PEERS="squid tinyproxy interpose"   which columns to measure (others: skip)
#   SKIP_INSTALL=1     do not install missing tools
#   SKIP_BUILD=1       do not run `cargo build --release`
#   INTERPOSE_BIN=...  interpose binary (default: target/release/interpose)
#   RESULTS=...        markdown output (default: bench/results/forward-latest.md)
#   SKIP_DIRECT=1      skip the no-proxy reference figures
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw outputs)
#   STEPS="http connect download tunnels"   which scenarios to run (others: fail)

set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/rounds.sh
. "$BENCH_DIR/rounds.sh"
DECIMAL_KEYS='@(*_p99|conn_us_*)'  # medians with two decimals
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
TUNNELS=${TUNNELS:-1000}
DOWNLOAD_RUNS=${DOWNLOAD_RUNS:-3}
PEERS=${PEERS:-"squid tinyproxy interpose"}
STEPS=${STEPS:-"http connect download tunnels"}
INTERPOSE_BIN=${INTERPOSE_BIN:-$ROOT/target/release/interpose}
RESULTS=${RESULTS:-$BENCH_DIR/results/forward-latest.md}
ALL_PEERS=(squid tinyproxy interpose)
BIG_SIZE=1073741824   # 1 GiB

export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Duration in whole seconds, for timeouts ("10s", "2m", "500ms" -> 1, "10").
duration_secs() {
    local d=$1
    case $d in
        *ms) echo 1 ;;
        *s) echo "${d%s}" ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *h) echo $(( ${d%h} * 3600 )) ;;
        *) echo "$d" ;;
    esac
}
DUR_S=$(duration_secs "$DURATION")
[[ $DUR_S =~ ^[0-9]+$ ]] || die "DURATION must look like 10s, 2s or 1m (got '$DURATION')"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number (got '$ROUNDS')"
[[ $DOWNLOAD_RUNS =~ ^[1-9][0-9]*$ ]] || die "DOWNLOAD_RUNS must be a positive whole number (got '$DOWNLOAD_RUNS')"
for _step in $STEPS; do
    [[ " http connect download tunnels " == *" $_step "* ]] || die "unknown step in STEPS: '$_step'"
done

# ---------------------------------------------------------------- CPU pinning
NCPU=$(nproc 2>/dev/null || echo 1)
if (( NCPU >= 2 )) && command -v taskset >/dev/null; then
    PIN_PROXY=(taskset -c 0)
    PIN_LOAD=(taskset -c 1)
else
    log "warning: fewer than 2 CPUs or no taskset: running unpinned"
    PIN_PROXY=()
    PIN_LOAD=()
fi

# ---------------------------------------------------------------- install
APT_UPDATED=0
apt_install() {
    (( EUID == 0 )) || { log "not root: cannot apt-get install $*"; return 1; }
    if (( APT_UPDATED == 0 )); then
        apt-get update -qq >/dev/null 2>&1 || log "warning: apt-get update failed"
        APT_UPDATED=1
    fi
    # Keep Debian's maintainer scripts from starting squid/nginx/tinyproxy as
    # system daemons during the install (standard policy-rc.d convention).
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
    local rc=$?
    (( made_policy )) && rm -f /usr/sbin/policy-rc.d
    return $rc
}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

# Stop Debian's own squid/tinyproxy/nginx daemons if something started them:
# the bench starts its own instances and must not share the machine with them.
stop_system_services() {
    local svc pidfile pid
    for svc in squid tinyproxy nginx; do
        for pidfile in /run/$svc.pid /var/run/$svc.pid /run/$svc/$svc.pid /var/run/$svc/$svc.pid; do
            [[ -r $pidfile ]] || continue
            pid=$(tr -dc '0-9' < "$pidfile")
            [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || continue
            log "stopping system $svc daemon (pid $pid)"
            if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
                systemctl stop "$svc" >/dev/null 2>&1
            else
                service "$svc" stop >/dev/null 2>&1
            fi
            sleep 1
            kill -0 "$pid" 2>/dev/null && kill "$pid" 2>/dev/null
        done
    done
}

install_deps() {
    local pkgs=()
    command -v squid >/dev/null || pkgs+=(squid)
    command -v tinyproxy >/dev/null || pkgs+=(tinyproxy)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v python3 >/dev/null || pkgs+=(python3)
    if ! command -v nginx >/dev/null && ! pkg_installed nginx-light && ! pkg_installed nginx; then
        pkgs+=(nginx-light)
    fi
    if (( ${#pkgs[@]} )); then
        log "installing Debian packages: ${pkgs[*]}"
        if ! apt_install "${pkgs[@]}"; then
            # nginx-light is gone from newer Debian releases: fall back to nginx.
            local i
            for i in "${!pkgs[@]}"; do [[ ${pkgs[$i]} == nginx-light ]] && pkgs[$i]=nginx; done
            apt_install "${pkgs[@]}" || log "warning: apt-get install ${pkgs[*]} failed"
        fi
    fi
    if ! command -v oha >/dev/null; then
        log "installing oha with cargo (takes a few minutes)"
        cargo install oha --locked --quiet >/dev/null 2>&1 || log "warning: cargo install oha failed"
    fi
    stop_system_services
}

# ---------------------------------------------------------------- processes
TMP=""
PIDS=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# start_bg NAME CPU_PIN_ARRAY_NAME CMD... : start in the background, stdout to
# $TMP/NAME.out (or to $BG_STDOUT if set), stderr to $TMP/NAME.err; sets STARTED_PID.
start_bg() {
    local name=$1 pinvar=$2; shift 2
    local -n pin=$pinvar
    "${pin[@]}" "$@" > "${BG_STDOUT:-$TMP/$name.out}" 2> "$TMP/$name.err" < /dev/null &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

forget_pid() {
    local pid=$1 i
    for i in "${!PIDS[@]}"; do [[ ${PIDS[$i]} == "$pid" ]] && unset 'PIDS[i]'; done
}

# wait_port PORT PID SECONDS: wait until 127.0.0.1:PORT accepts connections.
wait_port() {
    local port=$1 pid=$2 secs=$3 i
    for i in $(seq $(( secs * 10 ))); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

# RSS in MiB of PID plus its descendants (squid helpers, if any).
rss_mib() {
    local pid=$1 total=0 p kb
    local pids=("$pid")
    while read -r p; do [[ -n $p ]] && pids+=("$p"); done < <(pgrep -P "$pid" 2>/dev/null)
    for p in "${pids[@]}"; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
        [[ -n $kb ]] && total=$(( total + kb ))
    done
    (( total > 0 )) || { echo fail; return; }
    awk -v kb="$total" 'BEGIN { printf "%.1f", kb / 1024 }'
}

# CPU time (user + system, in clock ticks) used so far by PID and its children.
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ticks() {
    local pid=$1 total=0 p t
    local pids=("$pid")
    while read -r p; do [[ -n $p ]] && pids+=("$p"); done < <(pgrep -P "$pid" 2>/dev/null)
    for p in "${pids[@]}"; do
        t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        [[ -n $t ]] && total=$(( total + t ))
    done
    echo "$total"
}
now_s() { date +%s.%N; }
# cpu_pct TICKS_BEFORE TICKS_AFTER T0 T1: CPU use of the proxy in % of one core.
cpu_pct() {
    awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$CLK_TCK" \
        'BEGIN { w = t1 - t0; if (w <= 0) { print "fail"; exit } printf "%.0f", 100 * (b - a) / hz / w }'
}

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

fill() {  # fill TEMPLATE OUT: substitute @VARS@
    sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|${PORT:-}|g" \
        -e "s|@ORIGIN_HTTP@|$ORIGIN_HTTP|g" -e "s|@ORIGIN_TLS@|$ORIGIN_TLS|g" "$1" > "$2"
}

# ---------------------------------------------------------------- origin
start_origin() {
    mkdir -p "$TMP/www" "$TMP/nginx-tmp"
    chmod 755 "$TMP" "$TMP/www"
    truncate -s "$BIG_SIZE" "$TMP/www/big"   # sparse: instant, reads as zeros
    chmod 644 "$TMP/www/big"
    openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$TMP/origin.key" -out "$TMP/origin.crt" -days 2 \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 \
        || die "openssl could not make the origin certificate"
    fill "$BENCH_DIR/conf/nginx.conf.in" "$TMP/nginx.conf"
    local nginx_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    start_bg nginx PIN_LOAD "$nginx_bin" -e "$TMP/nginx-error.log" -p "$TMP/" -c "$TMP/nginx.conf"
    ORIGIN_PID=$STARTED_PID
    wait_port "$ORIGIN_HTTP" "$ORIGIN_PID" 10 && wait_port "$ORIGIN_TLS" "$ORIGIN_PID" 5 \
        || { cat "$TMP/nginx.err" "$TMP/nginx-error.log" >&2 2>/dev/null; die "nginx origin did not start"; }
    local body
    body=$(curl -sS --max-time 5 "http://127.0.0.1:$ORIGIN_HTTP/") || die "origin http check failed"
    [[ $body == hello ]] || die "origin http returned '$body'"
    body=$(curl -sSk --max-time 5 "https://127.0.0.1:$ORIGIN_TLS/") || die "origin https check failed"
    [[ $body == hello ]] || die "origin https returned '$body'"
    log "origin nginx pid $ORIGIN_PID: http :$ORIGIN_HTTP, https :$ORIGIN_TLS, /big = 1 GiB"
}

# ---------------------------------------------------------------- peers
# start_peer NAME PORT: sets PROXY_PID, returns non-zero if it did not come up.
start_peer() {
    local name=$1
    PORT=$2
    case $name in
        squid)
            mkdir -p "$TMP/squid"
            id proxy >/dev/null 2>&1 && chown proxy: "$TMP/squid" || chmod 777 "$TMP/squid"
            fill "$BENCH_DIR/conf/squid.conf.in" "$TMP/squid.conf"
            start_bg squid PIN_PROXY squid -N -f "$TMP/squid.conf"
            ;;
        tinyproxy)
            mkdir -p "$TMP/tinyproxy"
            fill "$BENCH_DIR/conf/tinyproxy.conf.in" "$TMP/tinyproxy.conf"
            start_bg tinyproxy PIN_PROXY tinyproxy -d -c "$TMP/tinyproxy.conf"
            ;;
        interpose)
            [[ -x $INTERPOSE_BIN ]] || return 1
            # one access-log line per request on stdout: discard it
            BG_STDOUT=/dev/null start_bg interpose PIN_PROXY \
                "$INTERPOSE_BIN" forward --listen "127.0.0.1:$PORT"
            ;;
    esac
    PROXY_PID=$STARTED_PID
    if ! wait_port "$PORT" "$PROXY_PID" 15; then
        log "$name did not start listening on 127.0.0.1:$PORT; stderr:"
        tail -n 20 "$TMP/$name.err" >&2
        [[ -f $TMP/squid/cache.log && $name == squid ]] && tail -n 20 "$TMP/squid/cache.log" >&2
        stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"
        return 1
    fi
    # sanity: one request through the proxy
    local body
    body=$("${PIN_LOAD[@]}" curl -sS --max-time 5 -x "http://127.0.0.1:$PORT" \
        "http://127.0.0.1:$ORIGIN_HTTP/" 2>>"$TMP/$name.check")
    if [[ $body != hello ]]; then
        log "$name: plain request through the proxy failed (got '$body')"
    fi
    return 0
}

declare -A RES ROUND RATIO
NOTES=()
note() { NOTES+=("$1"); log "note: $1"; }

alive() { kill -0 "$PROXY_PID" 2>/dev/null; }

scenario_http() {  # plain-HTTP forwarding with wrk
    local peer=$1 port=$2 out="$TMP/$1.wrk.txt" c0 c1 t0 t1
    c0=$(cpu_ticks "$PROXY_PID"); t0=$(now_s)
    ORIGIN_HOSTPORT="127.0.0.1:$ORIGIN_HTTP" "${PIN_LOAD[@]}" timeout $(( DUR_S + 30 )) \
        wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s "$BENCH_DIR/forward.lua" \
        "http://127.0.0.1:$port/" > "$out" 2>&1
    c1=$(cpu_ticks "$PROXY_PID"); t1=$(now_s)
    RES[http_cpu,$peer]=$(cpu_pct "$c0" "$c1" "$t0" "$t1")
    local rps p99 err
    read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" wrk "$out")
    RES[http_rps,$peer]=$rps; RES[http_p99,$peer]=$p99; RES[http_err,$peer]=$err
    [[ ${RES[http_rps,$peer]} == fail ]] && note "$peer plain HTTP: wrk failed: $(tail -n 3 "$out" | tr '\n' ' ')"
    log "$peer plain HTTP: ${RES[http_rps,$peer]} req/s, p99 ${RES[http_p99,$peer]} ms, errors ${RES[http_err,$peer]}, proxy CPU ${RES[http_cpu,$peer]}%"
}

scenario_connect() {  # CONNECT tunnels carrying keep-alive TLS, with oha
    local peer=$1 port=$2 out="$TMP/$1.oha.json" c0 c1 t0 t1
    if ! command -v oha >/dev/null; then
        RES[conn_rps,$peer]=fail; RES[conn_p99,$peer]=fail; RES[conn_err,$peer]=fail
        note "oha is not installed: CONNECT scenario skipped"
        return
    fi
    local o0 o1
    c0=$(cpu_ticks "$PROXY_PID"); t0=$(now_s); o0=$(cpu_ticks "$ORIGIN_PID")
    # oha (1.16) sends its CONNECT with no Host header, which HTTP/1.1 requires
    # (RFC 9112 section 3.2; interpose answers 400 to it): add one, for every peer.
    # The load core's own spend (oha's CPU seconds, the origin's ticks) shows how a
    # proxy's way of relaying changes the work of the client and origin it sits between.
    "${PIN_LOAD[@]}" timeout $(( DUR_S + 60 )) python3 "$BENCH_DIR/cpu_of.py" "$out.cpu" \
        oha --no-tui -z "$DURATION" -c "$CONNS" \
        --output-format json --insecure -x "http://127.0.0.1:$port" \
        --proxy-header "Host: 127.0.0.1:$ORIGIN_TLS" \
        "https://127.0.0.1:$ORIGIN_TLS/" > "$out" 2> "$out.err"
    c1=$(cpu_ticks "$PROXY_PID"); t1=$(now_s); o1=$(cpu_ticks "$ORIGIN_PID")
    RES[conn_cpu,$peer]=$(cpu_pct "$c0" "$c1" "$t0" "$t1")
    local rps p99 err
    read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" oha "$out")
    if [[ $rps =~ ^[0-9]+$ ]] && (( rps > 0 )); then
        RES[conn_us_oha,$peer]=$(awk -v s="$(cat "$out.cpu" 2>/dev/null)" -v n="$rps" -v d="$DUR_S" 'BEGIN { printf "%.1f", s * 1e6 / (n * d) }')
        RES[conn_us_origin,$peer]=$(awk -v a="$o0" -v b="$o1" -v hz="$CLK_TCK" -v n="$rps" -v d="$DUR_S" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / (n * d) }')
        RES[conn_us_proxy,$peer]=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" -v n="$rps" -v d="$DUR_S" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / (n * d) }')
        log "$peer CONNECT+TLS load side per request: oha ${RES[conn_us_oha,$peer]} us, origin ${RES[conn_us_origin,$peer]} us, proxy ${RES[conn_us_proxy,$peer]} us"
    fi
    RES[conn_rps,$peer]=$rps; RES[conn_p99,$peer]=$p99; RES[conn_err,$peer]=$err
    [[ ${RES[conn_rps,$peer]} == fail ]] && note "$peer CONNECT: oha failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("errorDistribution"))' "$out" 2>/dev/null) $(tail -c 300 "$out.err" | tr '\n' ' ')"
    log "$peer CONNECT+TLS: ${RES[conn_rps,$peer]} req/s, p99 ${RES[conn_p99,$peer]} ms, errors ${RES[conn_err,$peer]}, proxy CPU ${RES[conn_cpu,$peer]}%"
}

# The bulk file's URL. By default plain HTTP travels inside the CONNECT tunnel (curl -p),
# so curl's TLS decryption on the load core does not cap what the tunnel can carry;
# DOWNLOAD_TLS=1 fetches it over https instead.
big_url() {
    if [[ ${DOWNLOAD_TLS:-0} == 1 ]]; then
        echo "https://127.0.0.1:$ORIGIN_TLS/big"
    else
        echo "http://127.0.0.1:$ORIGIN_HTTP/big"
    fi
}

scenario_download() {  # one 1 GiB download through a CONNECT tunnel (one round)
    local peer=$1 port=$2 line code size speed c0 c1
    c0=$(cpu_ticks "$PROXY_PID")
    line=$("${PIN_LOAD[@]}" curl -sS -p -x "http://127.0.0.1:$port" -k --max-time 120 \
        -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
        "$(big_url)" 2>>"$TMP/$peer.curl.err")
    c1=$(cpu_ticks "$PROXY_PID")
    read -r code size speed <<< "$line"
    if [[ $code == 200 && $size == "$BIG_SIZE" ]]; then
        RES[dl,$peer]=$(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1e6 }')
        # proxy CPU time for the GiB carried
        RES[dl_cpu,$peer]=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" \
            'BEGIN { printf "%.0f", 1000 * (b - a) / hz }')
    else
        RES[dl,$peer]=fail
        RES[dl_cpu,$peer]=fail
        note "$peer 1 GiB download failed (code ${code:-none}, ${size:-0} bytes)"
    fi
    log "$peer 1 GiB download: ${RES[dl,$peer]} MB/s, proxy CPU ${RES[dl_cpu,$peer]} ms/GiB"
}

scenario_tunnels() {  # RSS with TUNNELS idle tunnels held open
    local peer=$1 port=$2 out="$TMP/$1.hold.txt" i ready="" holder
    start_bg "$peer.hold" PIN_LOAD python3 "$BENCH_DIR/hold_tunnels.py" \
        "127.0.0.1:$port" "127.0.0.1:$ORIGIN_TLS" "$TUNNELS" 120
    holder=$STARTED_PID
    for i in $(seq 900); do   # up to 90 s
        ready=$(grep -m1 '^ready ' "$TMP/$peer.hold.out" 2>/dev/null)
        [[ -n $ready ]] && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $ready == "ready $TUNNELS/$TUNNELS" ]]; then
        sleep 1
        RES[rss_tun,$peer]=$(rss_mib "$PROXY_PID")
    else
        RES[rss_tun,$peer]=fail
        note "$peer: only '${ready:-no ready line}' tunnels opened; $(sort "$TMP/$peer.hold.err" 2>/dev/null | uniq -c | head -3 | tr '\n' ' ')"
    fi
    stop_pid "$holder"; forget_pid "$holder"
    log "$peer RSS with $TUNNELS tunnels: ${RES[rss_tun,$peer]} MiB (${ready:-not ready})"
}

# Reference figures without any proxy (client -> origin), to show the ceiling
# set by the origin and the load generator sharing CPU 1.
run_direct() {
    local out="$TMP/direct.oha.json" rps p99 err line code size speed
    BASE_CONN=fail; BASE_DL=fail
    if command -v oha >/dev/null; then
        "${PIN_LOAD[@]}" timeout $(( DUR_S + 60 )) oha --no-tui -z "$DURATION" -c "$CONNS" \
            --output-format json --insecure "https://127.0.0.1:$ORIGIN_TLS/" > "$out" 2> "$out.err"
        read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" oha "$out")
        BASE_CONN=$rps
    fi
    line=$("${PIN_LOAD[@]}" curl -sS -k --max-time 120 -o /dev/null \
        -w '%{http_code} %{size_download} %{speed_download}' \
        "$(big_url)" 2>>"$TMP/direct.curl.err")
    read -r code size speed <<< "$line"
    if [[ $code == 200 && $size == "$BIG_SIZE" ]]; then
        BASE_DL=$(awk -v s="$speed" 'BEGIN { printf "%.0f", s / 1e6 }')
    fi
    log "no proxy: https keep-alive $BASE_CONN req/s, 1 GiB download $BASE_DL MB/s"
}

declare -A PEER_PID

# Starts a peer and takes its idle RSS on the fresh process; it stays up for the
# rounds.
start_and_measure_memory() {
    local peer=$1 port=$2 k
    log "=== $peer (pinned: ${PIN_PROXY[*]:-none}) on 127.0.0.1:$port"
    if ! start_peer "$peer" "$port"; then
        for k in "${KEYS[@]}"; do RES[$k,$peer]=fail; done
        note "$peer did not start"
        return
    fi
    sleep 1
    RES[rss_idle,$peer]=$(rss_mib "$PROXY_PID")
    log "$peer idle RSS ${RES[rss_idle,$peer]} MiB"
    PEER_PID[$peer]=$PROXY_PID
}

# The figures each load step fills, kept per round (conn_us_*: load-side CPU per
# request, logged, not in the table).
declare -A STEP_KEYS=(
    [http]="http_rps http_p99 http_err http_cpu"
    [connect]="conn_rps conn_p99 conn_err conn_cpu conn_us_oha conn_us_origin conn_us_proxy"
    [download]="dl dl_cpu"
)
step_rounds() {  # the download has its own count of rounds
    [[ $1 == download ]] && echo "$DOWNLOAD_RUNS" || echo "$ROUNDS"
}

# One load step for one running peer; its figures are kept per round. Only the
# step's own keys are recorded, and cleared first, so no figure from an earlier
# step or round is counted again.
measure_round() {
    local step=$1 peer=$2 port=$3 round=$4 k
    PROXY_PID=${PEER_PID[$peer]}
    if ! alive; then
        note "$peer died before $step (round $round)"
        unset 'PEER_PID[$peer]'
        return
    fi
    for k in ${STEP_KEYS[$step]}; do unset "RES[$k,$peer]"; done
    "scenario_$step" "$peer" "$port"
    for k in ${STEP_KEYS[$step]}; do
        ROUND[$k,$peer,$round]=${RES[$k,$peer]:-fail}
        ROUND[$k,$peer]+=" ${RES[$k,$peer]:-fail}"
    done
    sleep 1
}

# Each load cell becomes the median over the rounds, each ratio the median of the
# per-round ratios.
summarize_rounds() {
    local step k peer n
    for step in $STEPS; do
        [[ -n ${STEP_KEYS[$step]:-} ]] || continue
        n=$(step_rounds "$step")
        for k in ${STEP_KEYS[$step]}; do
            for peer in "${ALL_PEERS[@]}"; do
                [[ -n ${ROUND[$k,$peer]:-} ]] || continue
                # shellcheck disable=SC2086
                RES[$k,$peer]=$(median_cell "$k" ${ROUND[$k,$peer]})
            done
            # the table shows no ratio for errors and CPU % (conn_us_*: not in the table)
            [[ $k == *_err || $k == *_cpu && $k != dl_cpu || $k == conn_us_* ]] && continue
            RATIO[$k]=$(round_ratio "$k" interpose squid "$n")
        done
        for peer in "${ALL_PEERS[@]}"; do
            [[ -n ${ROUND[${k},$peer]:-} ]] || continue
            # shellcheck disable=SC2086
            log "$peer $step, $n rounds:$(for k in ${STEP_KEYS[$step]}; do printf ' %s [%s] -> %s;' "$k" "${ROUND[$k,$peer]# }" "${RES[$k,$peer]}"; done)"
        done
    done
    for peer in "${ALL_PEERS[@]}"; do
        [[ -n ${ROUND[conn_us_proxy,$peer]:-} ]] || continue
        log "$peer CONNECT+TLS load side per request, median of $ROUNDS rounds: oha ${RES[conn_us_oha,$peer]} us, origin ${RES[conn_us_origin,$peer]} us, proxy ${RES[conn_us_proxy,$peer]} us"
    done
}

# ---------------------------------------------------------------- table
KEYS=(http_rps http_p99 http_err http_cpu conn_rps conn_p99 conn_err conn_cpu dl dl_cpu rss_idle rss_tun)
declare -A LABEL=(
    [http_rps]="plain HTTP, $CONNS conns (wrk): req/s"
    [http_p99]="plain HTTP: p99 latency ms"
    [http_err]="plain HTTP: errors"
    [http_cpu]="plain HTTP: proxy CPU % of one core"
    [conn_rps]="CONNECT + keep-alive TLS, $CONNS conns (oha): req/s"
    [conn_p99]="CONNECT + TLS: p99 latency ms"
    [conn_err]="CONNECT + TLS: errors"
    [conn_cpu]="CONNECT + TLS: proxy CPU % of one core"
    [dl]="1 GiB via CONNECT (curl -p, median of $DOWNLOAD_RUNS): MB/s"
    [dl_cpu]="1 GiB via CONNECT: proxy CPU ms per GiB"
    [rss_idle]="RSS idle: MiB"
    [rss_tun]="RSS with $TUNNELS open tunnels: MiB"
)

print_table() {
    local k p ratio md="" row
    md+="| scenario | squid | tinyproxy | interpose | interpose/squid |"$'\n'
    md+="|---|---:|---:|---:|---:|"$'\n'
    printf '\n%-52s %10s %10s %10s %16s\n' scenario squid tinyproxy interpose interpose/squid
    printf '%s\n' "$(printf '%.0s-' $(seq 101))"
    for k in "${KEYS[@]}"; do
        if [[ $k == *_err || $k == *_cpu && $k != dl_cpu ]]; then
            ratio="-"
        elif [[ -n ${RATIO[$k]:-} ]]; then
            ratio=${RATIO[$k]}   # median of the per-round ratios
        else
            ratio=$(python3 "$BENCH_DIR/parse.py" ratio "${RES[$k,interpose]}" "${RES[$k,squid]}")
        fi
        printf '%-52s %10s %10s %10s %16s\n' "${LABEL[$k]}" \
            "${RES[$k,squid]}" "${RES[$k,tinyproxy]}" "${RES[$k,interpose]}" "$ratio"
        md+="| ${LABEL[$k]} | ${RES[$k,squid]} | ${RES[$k,tinyproxy]} | ${RES[$k,interpose]} | $ratio |"$'\n'
    done
    BASE_LINE="Without a proxy (client straight to the origin, same pinning): https keep-alive ${BASE_CONN:-skip} req/s, 1 GiB download ${BASE_DL:-skip} MB/s."
    echo "$BASE_LINE"
    echo
    TABLE_MD=$md
}

version_of() {
    case $1 in
        squid) squid -v 2>/dev/null | head -n1 | sed 's/.*Version //' ;;
        tinyproxy) tinyproxy -v 2>/dev/null | awk '{print $2}' ;;
        nginx) nginx -v 2>&1 | sed 's|.*nginx/||' ;;
        wrk) wrk -v 2>&1 | head -n1 | awk '{print $2}' ;;
        oha) oha --version 2>/dev/null | awk '{print $2}' ;;
        curl) curl --version 2>/dev/null | head -n1 | awk '{print $2}' ;;
        interpose)
            local rev
            rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
            [[ -n $(git -C "$ROOT" status --porcelain -- src Cargo.toml 2>/dev/null) ]] && rev+=" + uncommitted changes"
            echo "$rev" ;;
    esac
}

write_markdown() {
    mkdir -p "$(dirname "$RESULTS")"
    {
        echo "# Forward proxy benchmark: latest run"
        echo
        echo "Written by \`bench/run.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); see docs/benchmarks.md for the method."
        echo
        echo "- interleaved rounds, every peer up at once: plain HTTP and CONNECT in $ROUNDS rounds, the 1 GiB download in $DOWNLOAD_RUNS rounds of one download per peer; load cells are medians over the rounds, their ratios medians of the per-round ratios; RSS figures are taken once per peer"
        echo "- DURATION=$DURATION, $CONNS connections, $TUNNELS tunnels, $DOWNLOAD_RUNS downloads of 1 GiB, STEPS=\"$STEPS\""
        echo "- machine: $NCPU CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)), kernel $(uname -r)"
        echo "- load average before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "- pinning: proxy on CPU 0, wrk/oha/curl and the nginx origin on CPU 1$( (( ${#PIN_PROXY[@]} )) || echo ' (NOT pinned: fewer than 2 CPUs)')"
        echo "- versions: squid $(version_of squid), tinyproxy $(version_of tinyproxy), nginx $(version_of nginx) (origin), wrk $(version_of wrk), oha $(version_of oha), curl $(version_of curl), interpose $(version_of interpose)"
        echo
        printf '%s' "$TABLE_MD"
        echo
        echo "$BASE_LINE"
        echo
        echo "interpose/squid: above 1 is better for req/s and MB/s, below 1 is better for latency, CPU per GiB and RSS."
        echo "Proxy CPU %: CPU time the proxy used during the load run over its wall time; near 100 the proxy core was the limit, well below it the client side (CPU 1) was."
        echo "\"fail\": the peer did not complete that scenario; \"n/a\": interpose was not built."
        if (( ${#NOTES[@]} )); then
            echo
            echo "Notes from this run:"
            echo
            local n
            for n in "${NOTES[@]}"; do echo "- $n"; done
        fi
    } > "$RESULTS"
    log "wrote $RESULTS"
}

# ---------------------------------------------------------------- main
main() {
    [[ ${SKIP_INSTALL:-0} == 1 ]] || install_deps
    local tool
    for tool in squid tinyproxy wrk curl openssl python3 nginx; do
        command -v "$tool" >/dev/null || [[ $tool == nginx && -x /usr/sbin/nginx ]] \
            || die "$tool is missing (run without SKIP_INSTALL=1, as root)"
    done

    if [[ " $PEERS " == *" interpose "* && ${SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release"
        if ! (cd "$ROOT" && cargo build --release) > /tmp/interpose-bench-build.log 2>&1; then
            log "warning: cargo build --release failed (tail of /tmp/interpose-bench-build.log):"
            tail -n 5 /tmp/interpose-bench-build.log >&2
            [[ -x $INTERPOSE_BIN ]] && note "cargo build --release failed: measured the existing, possibly stale, $INTERPOSE_BIN"
        fi
    fi
    local interpose_ok=1
    if [[ ! -x $INTERPOSE_BIN ]]; then
        interpose_ok=0
        log "no interpose binary at $INTERPOSE_BIN: its column will read n/a"
    elif ! "$INTERPOSE_BIN" forward --help >/dev/null 2>&1; then
        interpose_ok=0
        log "$INTERPOSE_BIN has no 'forward' subcommand yet: its column will read n/a"
    fi

    local cur_nofile max_nofile
    max_nofile=$(ulimit -Hn)
    [[ $max_nofile == unlimited ]] && max_nofile=65536
    (( max_nofile > 65536 )) && max_nofile=65536
    cur_nofile=$(ulimit -Sn)
    if [[ $cur_nofile != unlimited ]] && (( cur_nofile < max_nofile )); then
        ulimit -n "$max_nofile" 2>/dev/null || log "warning: could not raise ulimit -n"
    fi
    (( $(ulimit -Sn) >= TUNNELS * 2 + 100 )) || log "warning: ulimit -n $(ulimit -Sn) may be too low for $TUNNELS tunnels"

    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOAD_BEFORE%% *}" -v n="$NCPU" 'BEGIN { exit !(l > n / 4) }'; then
        note "machine busy before the run (load average $LOAD_BEFORE): absolute figures are noisy, compare ratios and re-run on a quiet machine"
    fi

    TMP=$(mktemp -d /tmp/interpose-bench.XXXXXX)
    read -r ORIGIN_HTTP ORIGIN_TLS SQUID_PORT TINY_PORT INTERPOSE_PORT < <(free_ports 5)
    [[ -n ${INTERPOSE_PORT:-} ]] || die "could not pick free ports"
    start_origin
    [[ ${SKIP_DIRECT:-0} == 1 ]] || run_direct

    local peer k step round
    declare -A PORT_OF=([squid]=$SQUID_PORT [tinyproxy]=$TINY_PORT [interpose]=$INTERPOSE_PORT)
    for peer in "${ALL_PEERS[@]}"; do
        if [[ " $PEERS " != *" $peer "* ]]; then
            for k in "${KEYS[@]}"; do RES[$k,$peer]=skip; done
            continue
        fi
        if [[ $peer == interpose && $interpose_ok == 0 ]]; then
            for k in "${KEYS[@]}"; do RES[$k,$peer]=n/a; done
            continue
        fi
        start_and_measure_memory "$peer" "${PORT_OF[$peer]}"
        sleep 1
    done
    for step in $STEPS; do
        if [[ $step == tunnels ]]; then   # a memory figure: once per peer
            for peer in "${ALL_PEERS[@]}"; do
                [[ -n ${PEER_PID[$peer]:-} ]] || continue
                PROXY_PID=${PEER_PID[$peer]}
                if ! alive; then
                    note "$peer died before scenario_tunnels"
                    unset 'PEER_PID[$peer]'
                    continue
                fi
                scenario_tunnels "$peer" "${PORT_OF[$peer]}"
                sleep 1
            done
            continue
        fi
        for round in $(seq "$(step_rounds "$step")"); do
            log "--- $step, round $round of $(step_rounds "$step")"
            for peer in "${ALL_PEERS[@]}"; do
                [[ -n ${PEER_PID[$peer]:-} ]] || continue
                measure_round "$step" "$peer" "${PORT_OF[$peer]}" "$round"
            done
        done
    done
    summarize_rounds
    for peer in "${ALL_PEERS[@]}"; do
        for k in "${KEYS[@]}"; do
            [[ -n ${RES[$k,$peer]:-} ]] || RES[$k,$peer]=fail
        done
        if [[ -n ${PEER_PID[$peer]:-} ]]; then
            stop_pid "${PEER_PID[$peer]}"; forget_pid "${PEER_PID[$peer]}"
        fi
    done

    print_table
    write_markdown
}

main "$@"
