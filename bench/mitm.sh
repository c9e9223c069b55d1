#!/usr/bin/env bash
# bench/mitm.sh: interception benchmark, mitmproxy vs interpose mitm, with
# interpose forward (a blind CONNECT tunnel) as our own reference.
#
# Method (see docs/benchmarks.md, "Interception (mitm) benchmark"): the proxy
# under test is pinned to CPU 0, oha and the nginx origin to CPU 1; every peer
# runs one core; all peers are measured in the same run against the same https
# origin with the same load. The table reports mitm/mitmproxy, mitm/blind
# (target: mitm at least 0.9x of blind) and record/mitm ratios.
# Everything listens on 127.0.0.1 only, in a temp dir, and is killed at exit.
#
# Every peer is started first (idle RSS taken on the fresh process, then one
# checked request through it), and all stay up, idle when not measured. The two
# load scenarios (keep-alive, new connection per request) then run in ROUNDS
# interleaved rounds: round 1 measures mitmproxy, mitm, blind, record, round 2
# again, and so on; every oha run lasts DURATION, mitmproxy's too. Each cell is
# the median over the rounds, and each ratio the median of the per-round ratios,
# so that the machine's drift over minutes (large on a shared VM) weighs on every
# peer alike instead of on whichever ran last. RSS after the run and its peak are
# taken once per peer, after all the rounds.
#
# The origin's certificate is a real leaf (CA:FALSE, SAN IP:127.0.0.1 and
# DNS:localhost) signed by a test CA made for the run: both interceptors
# verify the upstream against that CA (webpki refuses a self-signed CA
# certificate used as a server certificate, "CaUsedAsEndEntity").
#
# Environment:
#   DURATION=10s       length of each oha run (DURATION=2s for a smoke run)
#   ROUNDS=3           interleaved rounds of the load scenarios
#   CONNS=50           concurrent connections for oha
#   PEERS="mitmproxy mitm blind record"   which columns to measure (others: skip);
#                      record = interpose mitm writing every flow to --flows
#                      (bodies captured up to the default 1 MiB), for the
#                      recording cost (target: at most 15% below mitm)
#   RECORD_ARGS=...    the record column's flags instead of --flows FILE
#                      (e.g. "--filter ~s" to measure building flows alone)
#   SKIP_INSTALL=1     do not install missing tools
#   SKIP_BUILD=1       do not run `cargo build --release`
#   SKIP_DIRECT=1      skip the no-proxy reference figures
#   INTERPOSE_BIN=...  interpose binary (default: target/release/interpose)
#   MITM_VENV=...      mitmproxy virtualenv
#                      (default: ${XDG_CACHE_HOME:-~/.cache}/interpose-bench/mitmproxy-venv)
#   RESULTS=...        markdown output (default: bench/results/mitm-latest.md)
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw outputs)

set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/rounds.sh
. "$BENCH_DIR/rounds.sh"
DECIMAL_KEYS='*_p99'  # medians with two decimals
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
PEERS=${PEERS:-"mitmproxy mitm blind record"}
INTERPOSE_BIN=${INTERPOSE_BIN:-$ROOT/target/release/interpose}
MITM_VENV=${MITM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/interpose-bench/mitmproxy-venv}
MITMPROXY_VERSION=11.0.2
RESULTS=${RESULTS:-$BENCH_DIR/results/mitm-latest.md}
ALL_PEERS=(mitmproxy mitm blind record)
declare -A PEER_TITLE=(
    [mitmproxy]="mitmproxy"
    [mitm]="interpose mitm"
    [blind]="interpose forward (blind)"
    [record]="interpose mitm --flows"
)

export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[mitm-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
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
    # Keep Debian's maintainer scripts from starting nginx as a system daemon
    # during the install (standard policy-rc.d convention).
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

have_nginx() { command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]]; }

mitmproxy_ok() {
    [[ -x $MITM_VENV/bin/mitmdump ]] \
        && "$MITM_VENV/bin/mitmdump" --version 2>/dev/null | grep -q "Mitmproxy: $MITMPROXY_VERSION"
}

install_deps() {
    local pkgs=()
    command -v curl >/dev/null || pkgs+=(curl)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v python3 >/dev/null || pkgs+=(python3)
    have_nginx || pkg_installed nginx-light || pkg_installed nginx || pkgs+=(nginx-light)
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
    if [[ " $PEERS " == *" mitmproxy "* ]] && ! mitmproxy_ok; then
        log "installing mitmproxy $MITMPROXY_VERSION in $MITM_VENV (takes a minute or two)"
        mkdir -p "$(dirname "$MITM_VENV")"
        if [[ ! -x $MITM_VENV/bin/python3 ]]; then
            if ! python3 -m venv "$MITM_VENV" >/dev/null 2>&1; then
                # Debian splits venv out of python3.
                rm -rf "$MITM_VENV"
                apt_install python3-venv && python3 -m venv "$MITM_VENV" >/dev/null 2>&1 \
                    || log "warning: python3 -m venv failed"
            fi
        fi
        if [[ -x $MITM_VENV/bin/pip ]]; then
            "$MITM_VENV/bin/pip" install -q "mitmproxy==$MITMPROXY_VERSION" \
                > "/tmp/interpose-mitm-bench-pip.log" 2>&1 \
                || log "warning: pip install mitmproxy==$MITMPROXY_VERSION failed (see /tmp/interpose-mitm-bench-pip.log)"
        fi
    fi
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

# RSS in MiB of PID plus its descendants; FIELD=VmHWM gives the peak instead.
rss_mib() {
    local pid=$1 field=${2:-VmRSS} total=0 p kb
    local pids=("$pid")
    while read -r p; do [[ -n $p ]] && pids+=("$p"); done < <(pgrep -P "$pid" 2>/dev/null)
    for p in "${pids[@]}"; do
        kb=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null)
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

# cpu_us_per_req TICKS_BEFORE TICKS_AFTER T0 T1 RPS: proxy CPU microseconds per
# response. Unlike req/s, this holds when the load core (CPU 1), not the proxy, is the limit.
cpu_us_per_req() {
    awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v r="$5" -v hz="$CLK_TCK" \
        'BEGIN { w = t1 - t0; if (w <= 0 || r + 0 <= 0) { print "fail"; exit }
                 printf "%.0f", 1e6 * (b - a) / hz / w / r }'
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
    sed -e "s|@DIR@|$TMP|g" -e "s|@ORIGIN_TLS@|$ORIGIN_TLS|g" "$1" > "$2"
}

# ---------------------------------------------------------------- certificates
# A test CA (CA:TRUE) and the origin's leaf (CA:FALSE, SAN IP:127.0.0.1 and
# DNS:localhost, serverAuth) signed by it. `openssl req -x509` alone would make
# a CA certificate, which rustls/webpki refuses as a server certificate.
make_certs() {
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout "$TMP/testca.key" -out "$TMP/testca.pem" -days 2 \
        -subj "/CN=interpose bench test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1 \
        || die "openssl could not make the test CA"
    openssl req -new "${ec[@]}" -keyout "$TMP/origin.key" -out "$TMP/origin.csr" \
        -subj "/CN=localhost" >/dev/null 2>&1 \
        || die "openssl could not make the origin key"
    cat > "$TMP/origin.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl x509 -req -in "$TMP/origin.csr" -CA "$TMP/testca.pem" -CAkey "$TMP/testca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 2 -sha256 \
        -extfile "$TMP/origin.ext" -out "$TMP/origin.crt" >/dev/null 2>&1 \
        || die "openssl could not sign the origin leaf"
    openssl verify -CAfile "$TMP/testca.pem" "$TMP/origin.crt" >/dev/null 2>&1 \
        || die "the origin leaf does not verify against the test CA"
}

# ---------------------------------------------------------------- origin
start_origin() {
    mkdir -p "$TMP/nginx-tmp"
    chmod 755 "$TMP"
    make_certs
    chmod 644 "$TMP/origin.crt" "$TMP/origin.key"
    fill "$BENCH_DIR/mitm-nginx.conf.in" "$TMP/nginx.conf"
    local nginx_bin
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    start_bg nginx PIN_LOAD "$nginx_bin" -e "$TMP/nginx-error.log" -p "$TMP/" -c "$TMP/nginx.conf"
    ORIGIN_PID=$STARTED_PID
    wait_port "$ORIGIN_TLS" "$ORIGIN_PID" 10 \
        || { cat "$TMP/nginx.err" "$TMP/nginx-error.log" >&2 2>/dev/null; die "nginx origin did not start"; }
    local body
    # verified against the test CA: proves the leaf is what the proxies will see
    body=$(curl -sS --max-time 5 --cacert "$TMP/testca.pem" "https://127.0.0.1:$ORIGIN_TLS/") \
        || die "origin https check (verified against the test CA) failed"
    [[ $body == hello ]] || die "origin https returned '$body'"
    log "origin nginx pid $ORIGIN_PID: https :$ORIGIN_TLS (leaf signed by the run's test CA)"
}

# ---------------------------------------------------------------- peers
# The CA a client must trust to verify what each peer presents.
client_ca() {
    case $1 in
        mitmproxy) echo "$TMP/mitmproxy-conf/mitmproxy-ca-cert.pem" ;;
        mitm|record) echo "$TMP/interpose-ca/ca.pem" ;;
        blind) echo "$TMP/testca.pem" ;;
    esac
}

# start_peer NAME PORT: sets PROXY_PID, returns non-zero if it did not come up.
start_peer() {
    local name=$1 port=$2
    case $name in
        mitmproxy)
            [[ -x $MITM_VENV/bin/mitmdump ]] || return 1
            mkdir -p "$TMP/mitmproxy-conf"
            start_bg mitmproxy PIN_PROXY "$MITM_VENV/bin/mitmdump" -q \
                --listen-host 127.0.0.1 -p "$port" \
                --set confdir="$TMP/mitmproxy-conf" \
                --set ssl_verify_upstream_trusted_ca="$TMP/testca.pem"
            ;;
        mitm)
            [[ -x $INTERPOSE_BIN ]] || return 1
            # one access-log line per exchange on stdout: discard it
            BG_STDOUT=/dev/null start_bg mitm PIN_PROXY \
                "$INTERPOSE_BIN" mitm --listen "127.0.0.1:$port" \
                --ca-dir "$TMP/interpose-ca" --upstream-ca "$TMP/testca.pem"
            ;;
        blind)
            [[ -x $INTERPOSE_BIN ]] || return 1
            BG_STDOUT=/dev/null start_bg blind PIN_PROXY \
                "$INTERPOSE_BIN" forward --listen "127.0.0.1:$port"
            ;;
        record)
            [[ -x $INTERPOSE_BIN ]] || return 1
            rm -f "$TMP/flows.jsonl"
            BG_STDOUT=/dev/null start_bg record PIN_PROXY \
                "$INTERPOSE_BIN" mitm --listen "127.0.0.1:$port" \
                --ca-dir "$TMP/interpose-ca" --upstream-ca "$TMP/testca.pem" \
                ${RECORD_ARGS:---flows "$TMP/flows.jsonl"}
            ;;
    esac
    PROXY_PID=$STARTED_PID
    if ! wait_port "$port" "$PROXY_PID" 30; then
        log "$name did not start listening on 127.0.0.1:$port; stderr:"
        tail -n 20 "$TMP/$name.err" >&2
        stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"
        return 1
    fi
    return 0
}

# check_peer NAME PORT: one request through the proxy, the client verifying the
# certificate it sees against the peer's CA (the interceptor's own CA, or the
# test CA for the blind tunnel). Success proves the traffic was intercepted
# (or not) as the column says.
check_peer() {
    local name=$1 port=$2 ca body i
    ca=$(client_ca "$name")
    for i in $(seq 50); do [[ -s $ca ]] && break; sleep 0.1; done
    [[ -s $ca ]] || { note "$name: no CA certificate at $ca"; return 1; }
    body=$("${PIN_LOAD[@]}" curl -sS --max-time 10 -x "http://127.0.0.1:$port" --cacert "$ca" \
        "https://127.0.0.1:$ORIGIN_TLS/" 2>>"$TMP/$name.check")
    if [[ $body != hello ]]; then
        note "$name: request through the proxy, verified against $(basename "$ca"), failed (got '$body': $(tail -n 2 "$TMP/$name.check" | tr '\n' ' '))"
        return 1
    fi
    return 0
}

declare -A RES ROUND RATIO
NOTES=()
note() { NOTES+=("$1"); log "note: $1"; }

alive() { kill -0 "$PROXY_PID" 2>/dev/null; }

# run_oha OUT [EXTRA ARGS...]: oha through the proxy at $PORT, pinned to CPU 1.
# oha (1.16) sends its CONNECT with no Host header; interpose accepts that, but
# RFC 9112 section 3.2 requires one, so add it for every peer (as bench/run.sh does).
run_oha() {
    local out=$1; shift
    "${PIN_LOAD[@]}" timeout $(( DUR_S + 60 )) oha --no-tui -z "$DURATION" -c "$CONNS" \
        --output-format json --insecure -x "http://127.0.0.1:$PORT" \
        --proxy-header "Host: 127.0.0.1:$ORIGIN_TLS" "$@" \
        "https://127.0.0.1:$ORIGIN_TLS/" > "$out" 2> "$out.err"
}

# scenario KEY PEER [OHA ARGS...]: one oha run; fills RES[KEY_{rps,p99,err,cpu},PEER].
scenario() {
    local key=$1 peer=$2; shift 2
    local out="$TMP/$peer.$key.oha.json" c0 c1 t0 t1 rps p99 err
    c0=$(cpu_ticks "$PROXY_PID"); t0=$(now_s)
    run_oha "$out" "$@"
    c1=$(cpu_ticks "$PROXY_PID"); t1=$(now_s)
    RES[${key}_cpu,$peer]=$(cpu_pct "$c0" "$c1" "$t0" "$t1")
    read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" oha "$out")
    RES[${key}_rps,$peer]=$rps; RES[${key}_p99,$peer]=$p99; RES[${key}_err,$peer]=$err
    RES[${key}_cost,$peer]=$(cpu_us_per_req "$c0" "$c1" "$t0" "$t1" "$rps")
    if [[ $rps == fail ]]; then
        note "$peer $key: oha failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("errorDistribution"))' "$out" 2>/dev/null) $(tail -c 300 "$out.err" | tr '\n' ' ')"
    elif [[ $err != 0 ]]; then
        note "$peer $key: $err errors: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({k: v for k, v in (d.get("errorDistribution") or {}).items() if "deadline" not in k.lower()}, {k: v for k, v in (d.get("statusCodeDistribution") or {}).items() if not str(k).startswith("2")})' "$out" 2>/dev/null)"
    fi
    log "$peer $key: $rps req/s, p99 $p99 ms, errors $err, proxy CPU ${RES[${key}_cpu,$peer]}% (${RES[${key}_cost,$peer]} us per request)"
}

# Reference figures without any proxy (client -> origin), to show the ceiling
# set by the origin and oha sharing CPU 1.
run_direct() {
    local out rps p99 err
    BASE_KA=fail; BASE_NEW=fail
    out="$TMP/direct.ka.oha.json"
    "${PIN_LOAD[@]}" timeout $(( DUR_S + 60 )) oha --no-tui -z "$DURATION" -c "$CONNS" \
        --output-format json --insecure "https://127.0.0.1:$ORIGIN_TLS/" > "$out" 2> "$out.err"
    read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" oha "$out")
    BASE_KA=$rps
    sleep 1
    out="$TMP/direct.new.oha.json"
    "${PIN_LOAD[@]}" timeout $(( DUR_S + 60 )) oha --no-tui -z "$DURATION" -c "$CONNS" \
        --output-format json --insecure --disable-keepalive \
        "https://127.0.0.1:$ORIGIN_TLS/" > "$out" 2> "$out.err"
    read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" oha "$out")
    BASE_NEW=$rps
    log "no proxy: https keep-alive $BASE_KA req/s, new connection per request $BASE_NEW req/s"
}

declare -A PEER_PID

# Starts a peer, takes its idle RSS on the fresh process and checks one request
# through it; it stays up for the rounds.
start_and_measure_memory() {
    local peer=$1 k
    PORT=$2
    log "=== ${PEER_TITLE[$peer]} (pinned: ${PIN_PROXY[*]:-none}) on 127.0.0.1:$PORT"
    if ! start_peer "$peer" "$PORT"; then
        for k in "${KEYS[@]}"; do RES[$k,$peer]=fail; done
        note "${PEER_TITLE[$peer]} did not start"
        return
    fi
    sleep 1
    RES[rss_idle,$peer]=$(rss_mib "$PROXY_PID")
    log "$peer idle RSS ${RES[rss_idle,$peer]} MiB"
    check_peer "$peer" "$PORT"
    PEER_PID[$peer]=$PROXY_PID
}

# The load scenarios: oha's extra arguments for each.
declare -A STEP_ARGS=([ka]="" [new]="--disable-keepalive")
LOAD_STEPS=(ka new)
STEP_SUFFIXES=(rps p99 err cpu cost)

# One load scenario for one running peer; its figures are kept per round. Only
# the scenario's own keys are recorded, and cleared first, so no figure from an
# earlier scenario or round is counted again.
measure_round() {
    local step=$1 peer=$2 port=$3 round=$4 x k
    PROXY_PID=${PEER_PID[$peer]}
    PORT=$port
    if ! alive; then
        note "${PEER_TITLE[$peer]} died before $step (round $round); stderr: $(tail -n 3 "$TMP/$peer.err" | tr '\n' ' ')"
        unset 'PEER_PID[$peer]'
        return
    fi
    for x in "${STEP_SUFFIXES[@]}"; do unset "RES[${step}_$x,$peer]"; done
    # shellcheck disable=SC2086
    scenario "$step" "$peer" ${STEP_ARGS[$step]}
    for x in "${STEP_SUFFIXES[@]}"; do
        k=${step}_$x
        ROUND[$k,$peer,$round]=${RES[$k,$peer]:-fail}
        ROUND[$k,$peer]+=" ${RES[$k,$peer]:-fail}"
    done
    sleep 1
}

# Each load cell becomes the median over the rounds; each ratio (mitm/mitmproxy,
# mitm/blind, record/mitm) the median of the per-round ratios.
summarize_rounds() {
    local step x k peer
    for step in "${LOAD_STEPS[@]}"; do
        for x in "${STEP_SUFFIXES[@]}"; do
            k=${step}_$x
            for peer in "${ALL_PEERS[@]}"; do
                [[ -n ${ROUND[$k,$peer]:-} ]] || continue
                # shellcheck disable=SC2086
                RES[$k,$peer]=$(median_cell "$k" ${ROUND[$k,$peer]})
            done
            [[ $x == err || $x == cpu ]] && continue   # the table shows no ratio for these
            RATIO[$k,m]=$(round_ratio "$k" mitm mitmproxy "$ROUNDS")
            RATIO[$k,b]=$(round_ratio "$k" mitm blind "$ROUNDS")
            RATIO[$k,r]=$(round_ratio "$k" record mitm "$ROUNDS")
        done
        for peer in "${ALL_PEERS[@]}"; do
            [[ -n ${ROUND[${step}_rps,$peer]:-} ]] || continue
            log "$peer $step, $ROUNDS rounds:$(for x in "${STEP_SUFFIXES[@]}"; do k=${step}_$x; printf ' %s [%s] -> %s;' "$k" "${ROUND[$k,$peer]# }" "${RES[$k,$peer]}"; done)"
        done
    done
}

# ---------------------------------------------------------------- table
KEYS=(ka_rps ka_p99 ka_err ka_cpu ka_cost new_rps new_p99 new_err new_cpu new_cost rss_idle rss_after rss_peak)
declare -A LABEL=(
    [ka_rps]="keep-alive, $CONNS conns: req/s"
    [ka_p99]="keep-alive: p99 latency ms"
    [ka_err]="keep-alive: errors"
    [ka_cpu]="keep-alive: proxy CPU % of one core"
    [ka_cost]="keep-alive: proxy CPU us per request"
    [new_rps]="new connection per request, $CONNS conns: req/s"
    [new_p99]="new connection per request: p99 latency ms"
    [new_err]="new connection per request: errors"
    [new_cpu]="new connection per request: proxy CPU %"
    [new_cost]="new connection per request: proxy CPU us per request"
    [rss_idle]="RSS idle: MiB"
    [rss_after]="RSS after the run: MiB"
    [rss_peak]="RSS peak (VmHWM): MiB"
)

print_table() {
    local k ratio_m ratio_b ratio_r md="" c1 c2 c3 c4 h5="mitm/mitmproxy" h6="mitm/blind" h7="record/mitm"
    c1=${PEER_TITLE[mitmproxy]}; c2=${PEER_TITLE[mitm]}; c3=${PEER_TITLE[blind]}; c4=${PEER_TITLE[record]}
    md+="| scenario | $c1 | $c2 | $c3 | $c4 | $h5 | $h6 | $h7 |"$'\n'
    md+="|---|---:|---:|---:|---:|---:|---:|---:|"$'\n'
    printf '\n%-54s %10s %15s %26s %23s %15s %11s %12s\n' scenario "$c1" "$c2" "$c3" "$c4" "$h5" "$h6" "$h7"
    printf '%s\n' "$(printf '%.0s-' $(seq 172))"
    for k in "${KEYS[@]}"; do
        if [[ $k == *_err || $k == *_cpu ]]; then
            ratio_m="-"; ratio_b="-"; ratio_r="-"
        elif [[ -n ${RATIO[$k,m]:-} ]]; then   # medians of the per-round ratios
            ratio_m=${RATIO[$k,m]}; ratio_b=${RATIO[$k,b]}; ratio_r=${RATIO[$k,r]}
        else
            ratio_m=$(python3 "$BENCH_DIR/parse.py" ratio "${RES[$k,mitm]}" "${RES[$k,mitmproxy]}")
            ratio_b=$(python3 "$BENCH_DIR/parse.py" ratio "${RES[$k,mitm]}" "${RES[$k,blind]}")
            ratio_r=$(python3 "$BENCH_DIR/parse.py" ratio "${RES[$k,record]}" "${RES[$k,mitm]}")
        fi
        printf '%-54s %10s %15s %26s %23s %15s %11s %12s\n' "${LABEL[$k]}" \
            "${RES[$k,mitmproxy]}" "${RES[$k,mitm]}" "${RES[$k,blind]}" "${RES[$k,record]}" \
            "$ratio_m" "$ratio_b" "$ratio_r"
        md+="| ${LABEL[$k]} | ${RES[$k,mitmproxy]} | ${RES[$k,mitm]} | ${RES[$k,blind]} | ${RES[$k,record]} | $ratio_m | $ratio_b | $ratio_r |"$'\n'
    done
    BASE_LINE="Without a proxy (oha straight to the origin, same pinning): https keep-alive ${BASE_KA:-skip} req/s, new connection per request ${BASE_NEW:-skip} req/s."
    echo "$BASE_LINE"
    echo
    TABLE_MD=$md
}

version_of() {
    case $1 in
        mitmproxy) "$MITM_VENV/bin/mitmdump" --version 2>/dev/null | awk '/^Mitmproxy:/ {print $2}' ;;
        python) "$MITM_VENV/bin/python3" --version 2>/dev/null | awk '{print $2}' ;;
        nginx) nginx -v 2>&1 | sed 's|.*nginx/||' ;;
        oha) oha --version 2>/dev/null | awk '{print $2}' ;;
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
        echo "# Interception (mitm) benchmark: latest run"
        echo
        echo "Written by \`bench/mitm.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'); see docs/benchmarks.md, \"Interception (mitm) benchmark\", for the method."
        echo
        echo "- $ROUNDS interleaved rounds, every peer up at once: load cells are medians over the rounds, their ratios medians of the per-round ratios; RSS idle is taken on the fresh process, RSS after the run and the peak once all rounds are done"
        echo "- DURATION=$DURATION per oha run, $CONNS connections, https origin (nginx, \`return 200 \"hello\\n\"\`)"
        echo "- machine: $NCPU CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)), kernel $(uname -r)"
        echo "- load average before / after the run: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "- pinning: proxy on CPU 0, oha and the nginx origin on CPU 1$( (( ${#PIN_PROXY[@]} )) || echo ' (NOT pinned: fewer than 2 CPUs)')"
        echo "- versions: mitmproxy $(version_of mitmproxy) (Python $(version_of python)), nginx $(version_of nginx) (origin), oha $(version_of oha), interpose $(version_of interpose)"
        echo
        printf '%s' "$TABLE_MD"
        echo
        echo "$BASE_LINE"
        echo
        echo "record/mitm: interpose mitm writing every flow (heads, bodies up to 1 MiB, timings) to a JSON-lines file, over interpose mitm without it; target at least 0.85 on req/s."
        echo "mitm/mitmproxy and mitm/blind: above 1 is better for req/s, below 1 is better for latency, CPU per request and RSS. Target: interpose mitm at least 0.9x of the blind tunnel's req/s."
        echo "Both interceptors terminate the client's TLS with a leaf minted by their own CA and open a verified TLS connection to the origin (test CA); the blind tunnel only relays bytes, so TLS runs end to end between oha and nginx."
        echo "Proxy CPU %: CPU time the proxy used during the oha run over its wall time; near 100 the proxy core was the limit, well below it the client side (CPU 1: oha and nginx) was, and req/s then measures CPU 1 more than the proxy: compare the CPU-per-request rows instead."
        echo "New connection per request: oha opens a CONNECT tunnel and a TLS session per request. Through the blind tunnel CPU 1 runs both ends of every full handshake (oha and nginx); through an interceptor nginx only sees the interceptor's upstream connections (which may resume TLS sessions) and the proxy core does the client-side handshake, so mitm can beat blind on req/s there without being cheaper."
        echo "\"fail\": the peer did not complete that scenario; \"n/a\": interpose (with \`mitm\`) was not built; \"skip\": not in PEERS."
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
    for tool in curl openssl python3 oha; do
        command -v "$tool" >/dev/null || die "$tool is missing (run without SKIP_INSTALL=1, as root)"
    done
    have_nginx || die "nginx is missing (run without SKIP_INSTALL=1, as root)"
    if [[ " $PEERS " == *" mitmproxy "* ]] && ! mitmproxy_ok; then
        log "warning: no mitmproxy $MITMPROXY_VERSION in $MITM_VENV: its column will read fail"
    fi

    if [[ " $PEERS " == *" mitm "* || " $PEERS " == *" blind "* ]] && [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release"
        if ! (cd "$ROOT" && cargo build --release) > /tmp/interpose-mitm-bench-build.log 2>&1; then
            log "warning: cargo build --release failed (tail of /tmp/interpose-mitm-bench-build.log):"
            tail -n 5 /tmp/interpose-mitm-bench-build.log >&2
            [[ -x $INTERPOSE_BIN ]] && note "cargo build --release failed: measured the existing, possibly stale, $INTERPOSE_BIN"
        fi
    fi
    local interpose_ok=1
    if [[ ! -x $INTERPOSE_BIN ]]; then
        interpose_ok=0
        log "no interpose binary at $INTERPOSE_BIN: its columns will read n/a"
    elif ! "$INTERPOSE_BIN" mitm --help >/dev/null 2>&1; then
        interpose_ok=0
        log "$INTERPOSE_BIN has no 'mitm' subcommand yet: its columns will read n/a"
    fi

    local cur_nofile max_nofile
    max_nofile=$(ulimit -Hn)
    [[ $max_nofile == unlimited ]] && max_nofile=65536
    (( max_nofile > 65536 )) && max_nofile=65536
    cur_nofile=$(ulimit -Sn)
    if [[ $cur_nofile != unlimited ]] && (( cur_nofile < max_nofile )); then
        ulimit -n "$max_nofile" 2>/dev/null || log "warning: could not raise ulimit -n"
    fi

    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOAD_BEFORE%% *}" -v n="$NCPU" 'BEGIN { exit !(l > n / 4) }'; then
        note "machine busy before the run (load average $LOAD_BEFORE): absolute figures are noisy, compare ratios and re-run on a quiet machine"
    fi

    TMP=$(mktemp -d /tmp/interpose-mitm-bench.XXXXXX)
    read -r ORIGIN_TLS MITMPROXY_PORT MITM_PORT BLIND_PORT RECORD_PORT < <(free_ports 5)
    [[ -n ${BLIND_PORT:-} ]] || die "could not pick free ports"
    start_origin
    if [[ ${SKIP_DIRECT:-0} == 1 ]]; then BASE_KA=skip; BASE_NEW=skip; else run_direct; sleep 2; fi

    local peer k step round
    declare -A PORT_OF=([mitmproxy]=$MITMPROXY_PORT [mitm]=$MITM_PORT [blind]=$BLIND_PORT [record]=$RECORD_PORT)
    for peer in "${ALL_PEERS[@]}"; do
        if [[ " $PEERS " != *" $peer "* ]]; then
            for k in "${KEYS[@]}"; do RES[$k,$peer]=skip; done
            continue
        fi
        if [[ $peer != mitmproxy && $interpose_ok == 0 ]]; then
            for k in "${KEYS[@]}"; do RES[$k,$peer]=n/a; done
            continue
        fi
        start_and_measure_memory "$peer" "${PORT_OF[$peer]}"
        sleep 1
    done
    for step in "${LOAD_STEPS[@]}"; do
        for round in $(seq "$ROUNDS"); do
            log "--- $step, round $round of $ROUNDS"
            for peer in "${ALL_PEERS[@]}"; do
                [[ -n ${PEER_PID[$peer]:-} ]] || continue
                measure_round "$step" "$peer" "${PORT_OF[$peer]}" "$round"
            done
        done
    done
    summarize_rounds
    for peer in "${ALL_PEERS[@]}"; do
        if [[ -n ${PEER_PID[$peer]:-} ]]; then
            PROXY_PID=${PEER_PID[$peer]}
            if alive; then
                RES[rss_after,$peer]=$(rss_mib "$PROXY_PID")
                RES[rss_peak,$peer]=$(rss_mib "$PROXY_PID" VmHWM)
                log "$peer RSS after the rounds ${RES[rss_after,$peer]} MiB, peak ${RES[rss_peak,$peer]} MiB"
            else
                note "${PEER_TITLE[$peer]} died during the run; stderr: $(tail -n 3 "$TMP/$peer.err" | tr '\n' ' ')"
            fi
            stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"
        fi
        for k in "${KEYS[@]}"; do
            [[ -n ${RES[$k,$peer]:-} ]] || RES[$k,$peer]=fail
        done
    done

    print_table
    write_markdown
}

main "$@"
