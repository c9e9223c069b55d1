#!/usr/bin/env bash
# bench/reverse.sh: TLS reverse-proxy benchmark, nginx vs HAProxy vs interpose, side by side.
#
# Method (see ../shared/BENCHMARKING.md): the proxy under test is pinned to CPU 0, the
# load generator and the nginx origin (plain HTTP, `return 200 "hello\n"`) to CPU 1;
# every peer runs one core (nginx one worker with upstream keepalive, HAProxy
# nbthread 1, interpose's runtime sees one CPU through its affinity). All peers are
# measured in the same run, one after another, with the same certificate (ECDSA
# P-256), origin and load; the table reports ratios. Everything listens on 127.0.0.1
# only, in a temp dir, and is killed at exit.
#
# Scenarios: RSS at idle and with IDLE_CONNS idle TLS connections open (measured first, on
# a fresh process), HTTPS HTTP/1.1 keep-alive (wrk -t1 -cCONNS), HTTP/2 (h2load -t1
# -cCONNS -mSTREAMS).
#
# The load scenarios run in ROUNDS interleaved rounds with every peer up at once (idle
# when not measured): round 1 measures nginx, HAProxy, interpose, round 2 again, and so
# on. Each cell is the median over the rounds, and each ratio the median of the
# per-round ratios, so that the machine's drift over minutes (large on a shared VM)
# weighs on every peer alike instead of on whichever ran last.
#
# Environment:
#   DURATION=10s       length of each load run (DURATION=2s for a smoke run)
#   ROUNDS=3           interleaved rounds of the load scenarios
#   CONNS=50           concurrent connections (wrk and h2load)
#   STREAMS=10         concurrent streams per HTTP/2 connection (h2load -m)
#   IDLE_CONNS=1000    idle TLS connections held open for the RSS-under-load figure
#   PEERS="nginx haproxy interpose"   which columns to measure (others: skip)
#   SKIP_INSTALL=1     do not install missing tools
#   SKIP_BUILD=1       do not run `cargo build --release`
#   INTERPOSE_BIN=...  interpose binary (default: target/release/interpose)
#   RESULTS=...        markdown output (default: bench/results/reverse-latest.md)
#   KEEP_TMP=1         keep the temp dir (configs, logs, raw outputs)
#   ACCESS_LOG=off     interpose's access lines: off (--no-access-log), like the peers
#                      (nginx `access_log off`, HAProxy without a log), or on

set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
STREAMS=${STREAMS:-10}
IDLE_CONNS=${IDLE_CONNS:-1000}
ACCESS_LOG=${ACCESS_LOG:-off}
PEERS=${PEERS:-"nginx haproxy interpose"}
INTERPOSE_BIN=${INTERPOSE_BIN:-$ROOT/target/release/interpose}
RESULTS=${RESULTS:-$BENCH_DIR/results/reverse-latest.md}
ALL_PEERS=(nginx haproxy interpose)

export PATH="$PATH:/usr/sbin:${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

duration_secs() {
    local d=$1
    case $d in
        *ms) echo 1 ;;
        *s) echo "${d%s}" ;;
        *m) echo $(( ${d%m} * 60 )) ;;
        *) echo "$d" ;;
    esac
}
DUR_S=$(duration_secs "$DURATION")
[[ $DUR_S =~ ^[0-9]+$ ]] || die "DURATION must look like 10s, 2s or 1m (got '$DURATION')"

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
apt_install() {
    (( EUID == 0 )) || { log "not root: cannot apt-get install $*"; return 1; }
    apt-get update -qq >/dev/null 2>&1 || log "warning: apt-get update failed"
    # Keep Debian's maintainer scripts from starting nginx/haproxy as system daemons.
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

install_deps() {
    local pkgs=()
    command -v haproxy >/dev/null || pkgs+=(haproxy)
    command -v h2load >/dev/null || pkgs+=(nghttp2-client)
    command -v wrk >/dev/null || pkgs+=(wrk)
    command -v curl >/dev/null || pkgs+=(curl)
    command -v openssl >/dev/null || pkgs+=(openssl)
    command -v python3 >/dev/null || pkgs+=(python3)
    command -v nginx >/dev/null || pkgs+=(nginx-light)
    if (( ${#pkgs[@]} )); then
        log "installing Debian packages: ${pkgs[*]}"
        apt_install "${pkgs[@]}" || {
            pkgs=("${pkgs[@]/nginx-light/nginx}")
            apt_install "${pkgs[@]}" || log "warning: apt-get install ${pkgs[*]} failed"
        }
    fi
}

# ---------------------------------------------------------------- processes
TMP=""
PIDS=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
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

start_bg() {  # start_bg NAME PIN_ARRAY_NAME CMD...: sets STARTED_PID
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

wait_port() {  # wait_port PORT PID SECONDS
    local port=$1 pid=$2 secs=$3 i
    for i in $(seq $(( secs * 10 ))); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

rss_mib() {  # RSS of PID plus its children (nginx workers), MiB
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
# User and system ticks of PID and its children: "USER SYS".
cpu_split() {
    local pid=$1 u=0 s=0 p line
    local pids=("$pid")
    while read -r p; do [[ -n $p ]] && pids+=("$p"); done < <(pgrep -P "$pid" 2>/dev/null)
    for p in "${pids[@]}"; do
        line=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}')
        [[ -n $line ]] && { u=$(( u + ${line% *} )); s=$(( s + ${line#* } )); }
    done
    echo "$u $s"
}
# per_request TICKS RPS: microseconds of CPU per request over DUR_S seconds.
per_request() {
    awk -v t="$1" -v rps="$2" -v d="$DUR_S" -v hz="$CLK_TCK" \
        'BEGIN { if (rps !~ /^[0-9.]+$/ || rps <= 0) { print "fail"; exit } printf "%.1f", t / hz * 1e6 / (rps * d) }'
}
now_s() { date +%s.%N; }
cpu_pct() {
    awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$CLK_TCK" \
        'BEGIN { w = t1 - t0; if (w <= 0) { print "fail"; exit } printf "%.0f", 100 * (b - a) / hz / w }'
}

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

fill() {  # fill TEMPLATE OUT
    sed -e "s|@DIR@|$TMP|g" -e "s|@PORT@|${PORT:-}|g" \
        -e "s|@ORIGIN_HTTP@|$ORIGIN_HTTP|g" -e "s|@ORIGIN_TLS@|$ORIGIN_TLS|g" "$1" > "$2"
}

# ---------------------------------------------------------------- origin and certificate
make_certs() {
    openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$TMP/origin.key" -out "$TMP/origin.crt" -days 2 \
        -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 \
        || die "openssl could not make the origin certificate"
    openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$TMP/proxy.key" -out "$TMP/proxy.crt" -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
        || die "openssl could not make the proxy certificate"
    cat "$TMP/proxy.crt" "$TMP/proxy.key" > "$TMP/proxy.pem"   # HAProxy wants both in one file
}

start_origin() {
    mkdir -p "$TMP/www" "$TMP/nginx-tmp" "$TMP/nginx-rtmp"
    chmod 755 "$TMP" "$TMP/www"
    : > "$TMP/www/big"
    fill "$BENCH_DIR/conf/nginx.conf.in" "$TMP/nginx.conf"
    start_bg origin PIN_LOAD nginx -e "$TMP/nginx-error.log" -p "$TMP/" -c "$TMP/nginx.conf"
    ORIGIN_PID=$STARTED_PID
    wait_port "$ORIGIN_HTTP" "$ORIGIN_PID" 10 \
        || { cat "$TMP/origin.err" "$TMP/nginx-error.log" >&2 2>/dev/null; die "nginx origin did not start"; }
    [[ $(curl -sS --max-time 5 "http://127.0.0.1:$ORIGIN_HTTP/") == hello ]] || die "origin check failed"
    log "origin nginx pid $ORIGIN_PID on http :$ORIGIN_HTTP"
}

# ---------------------------------------------------------------- peers
start_peer() {  # start_peer NAME PORT: sets PROXY_PID
    local name=$1
    PORT=$2
    case $name in
        nginx)
            fill "$BENCH_DIR/conf/nginx-reverse.conf.in" "$TMP/nginx-reverse.conf"
            start_bg nginx PIN_PROXY nginx -e "$TMP/nginx-reverse-error.log" -p "$TMP/" \
                -c "$TMP/nginx-reverse.conf" ;;
        haproxy)
            fill "$BENCH_DIR/conf/haproxy-reverse.cfg.in" "$TMP/haproxy.cfg"
            start_bg haproxy PIN_PROXY haproxy -db -f "$TMP/haproxy.cfg" ;;
        interpose)
            [[ -x $INTERPOSE_BIN ]] || return 1
            # access lines (ACCESS_LOG=on) go to stdout: discarded
            BG_STDOUT=/dev/null start_bg interpose PIN_PROXY "$INTERPOSE_BIN" reverse \
                --listen "127.0.0.1:$PORT" --to "127.0.0.1:$ORIGIN_HTTP" \
                --cert "$TMP/proxy.crt" --key "$TMP/proxy.key" \
                $( [[ $ACCESS_LOG == off ]] && echo --no-access-log ) ;;
    esac
    PROXY_PID=$STARTED_PID
    if ! wait_port "$PORT" "$PROXY_PID" 15; then
        log "$name did not start listening on 127.0.0.1:$PORT; stderr:"
        tail -n 20 "$TMP/$name.err" >&2
        stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"
        return 1
    fi
    local v body
    for v in --http1.1 --http2; do
        body=$("${PIN_LOAD[@]}" curl -sS "$v" --max-time 5 --cacert "$TMP/proxy.crt" \
            --resolve "localhost:$PORT:127.0.0.1" "https://localhost:$PORT/" 2>>"$TMP/$name.check")
        if [[ $body != hello ]]; then
            log "$name: sanity request ($v) returned '$body': $(tail -n 2 "$TMP/$name.check")"
            stop_pid "$PROXY_PID"; forget_pid "$PROXY_PID"
            return 1
        fi
    done
}

alive() { kill -0 "$PROXY_PID" 2>/dev/null; }

declare -A RES ROUND RATIO
NOTES=()
note() { NOTES+=("$*"); log "note: $*"; }

scenario_h1() {
    local peer=$1 port=$2 out="$TMP/$1.wrk.txt" c0 c1 t0 t1 rps p99 err u0 s0 u1 s1
    read -r u0 s0 < <(cpu_split "$PROXY_PID")
    c0=$(cpu_ticks "$PROXY_PID"); t0=$(now_s)
    "${PIN_LOAD[@]}" timeout $(( DUR_S + 30 )) wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
        "https://127.0.0.1:$port/" > "$out" 2>&1
    c1=$(cpu_ticks "$PROXY_PID"); t1=$(now_s)
    read -r u1 s1 < <(cpu_split "$PROXY_PID")
    RES[h1_cpu,$peer]=$(cpu_pct "$c0" "$c1" "$t0" "$t1")
    read -r rps p99 err < <(python3 "$BENCH_DIR/parse.py" wrk "$out")
    RES[h1_rps,$peer]=$rps; RES[h1_p99,$peer]=$p99; RES[h1_err,$peer]=$err
    RES[h1_usr,$peer]=$(per_request $(( u1 - u0 )) "$rps")
    RES[h1_sys,$peer]=$(per_request $(( s1 - s0 )) "$rps")
    [[ $rps == fail ]] && note "$peer HTTPS h1: wrk failed: $(tail -n 3 "$out" | tr '\n' ' ')"
    log "$peer HTTPS h1: $rps req/s, p99 $p99 ms, errors $err, proxy CPU ${RES[h1_cpu,$peer]}%"
}

# h2load's summary: "finished in 2.00s, 51234.50 req/s, ..." and
# "requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout".
parse_h2load() {
    awk '
        /^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) rps = $i }
        /^requests:/ { failed = $10 + $12 + $14 }
        /^status codes:/ { for (i = 3; i <= NF; i += 2) if ($(i+1) !~ /^2xx/) bad += $i }
        END { if (rps == "") print "fail fail"; else printf "%.0f %d\n", rps, failed + bad }
    ' "$1"
}

scenario_h2() {
    local peer=$1 port=$2 out="$TMP/$1.h2load.txt" c0 c1 t0 t1 rps err u0 s0 u1 s1
    read -r u0 s0 < <(cpu_split "$PROXY_PID")
    c0=$(cpu_ticks "$PROXY_PID"); t0=$(now_s)
    "${PIN_LOAD[@]}" timeout $(( DUR_S + 30 )) h2load -t1 -c"$CONNS" -m"$STREAMS" -D "$DUR_S" \
        "https://127.0.0.1:$port/" > "$out" 2>&1
    c1=$(cpu_ticks "$PROXY_PID"); t1=$(now_s)
    read -r u1 s1 < <(cpu_split "$PROXY_PID")
    RES[h2_cpu,$peer]=$(cpu_pct "$c0" "$c1" "$t0" "$t1")
    read -r rps err < <(parse_h2load "$out")
    RES[h2_rps,$peer]=$rps; RES[h2_err,$peer]=$err
    RES[h2_usr,$peer]=$(per_request $(( u1 - u0 )) "$rps")
    RES[h2_sys,$peer]=$(per_request $(( s1 - s0 )) "$rps")
    [[ $rps == fail ]] && note "$peer HTTP/2: h2load failed: $(tail -n 3 "$out" | tr '\n' ' ')"
    log "$peer HTTP/2: $rps req/s, errors $err, proxy CPU ${RES[h2_cpu,$peer]}%"
}

scenario_idle_conns() {
    local peer=$1 port=$2 i ready="" holder
    start_bg "$peer.hold" PIN_LOAD python3 "$BENCH_DIR/hold_tls.py" "127.0.0.1:$port" "$IDLE_CONNS" 120
    holder=$STARTED_PID
    for i in $(seq 900); do
        ready=$(grep -m1 '^ready ' "$TMP/$peer.hold.out" 2>/dev/null)
        [[ -n $ready ]] && break
        kill -0 "$holder" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $ready == "ready $IDLE_CONNS/$IDLE_CONNS" ]]; then
        sleep 1
        RES[rss_conns,$peer]=$(rss_mib "$PROXY_PID")
    else
        RES[rss_conns,$peer]=fail
        note "$peer: only '${ready:-no ready line}' TLS connections opened; $(sort "$TMP/$peer.hold.err" 2>/dev/null | uniq -c | head -3 | tr '\n' ' ')"
    fi
    stop_pid "$holder"; forget_pid "$holder"
    log "$peer RSS with $IDLE_CONNS idle TLS connections: ${RES[rss_conns,$peer]} MiB"
}

declare -A PEER_PID

# Starts a peer and takes its memory figures; it stays up for the load rounds.
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
    # Idle connections first: the figure is then the cost of the connections themselves,
    # not of pools and buffers left over from the load runs.
    scenario_idle_conns "$peer" "$port"
    PEER_PID[$peer]=$PROXY_PID
}

# One load scenario for one running peer; its figures are kept per round.
measure_round() {
    local step=$1 peer=$2 port=$3 round=$4 k
    PROXY_PID=${PEER_PID[$peer]}
    alive || { note "$peer died before $step (round $round)"; unset 'PEER_PID[$peer]'; return; }
    "$step" "$peer" "$port"
    # Only this step's figures (scenario_h1 sets h1_*): the others are from earlier steps.
    local prefix=${step#scenario_}_
    for k in "${KEYS[@]}"; do
        [[ $k != "$prefix"* || -z ${RES[$k,$peer]:-} ]] && continue
        ROUND[$k,$peer]+=" ${RES[$k,$peer]}"
        ROUND[$k,$peer,$round]=${RES[$k,$peer]}
    done
    sleep 1
}

# Each load cell becomes the median over the rounds; each ratio the median of the
# per-round ratios.
summarize_rounds() {
    local k peer base
    for k in "${KEYS[@]}"; do
        [[ $k == rss_* ]] && continue
        for peer in "${ALL_PEERS[@]}"; do
            [[ -n ${ROUND[$k,$peer]:-} ]] || continue
            # shellcheck disable=SC2086
            RES[$k,$peer]=$(python3 "$BENCH_DIR/parse.py" "$(median_kind "$k")" ${ROUND[$k,$peer]})
        done
        for base in nginx haproxy; do
            RATIO[$k,$base]=$(round_ratio "$k" "$base")
        done
    done
}

median_kind() {  # req/s, errors and CPU % are whole numbers; latencies and µs keep decimals
    [[ $1 == *_p99 || $1 == *_usr || $1 == *_sys ]] && echo median2 || echo median
}

round_ratio() {  # round_ratio KEY BASE: median over rounds of interpose/BASE
    local k=$1 base=$2 r a b ratios=()
    for r in $(seq "$ROUNDS"); do
        a=${ROUND[$k,interpose,$r]:-}; b=${ROUND[$k,$base,$r]:-}
        [[ -n $a && -n $b ]] || continue
        ratios+=("$(ratio "$a" "$b")")
    done
    (( ${#ratios[@]} )) || { echo "-"; return; }
    python3 "$BENCH_DIR/parse.py" median2 "${ratios[@]}"
}

# ---------------------------------------------------------------- table
KEYS=(h1_rps h1_p99 h1_err h1_cpu h1_usr h1_sys h2_rps h2_err h2_cpu h2_usr h2_sys rss_idle rss_conns)
declare -A LABEL=(
    [h1_rps]="HTTPS HTTP/1.1 keep-alive, $CONNS conns (wrk): req/s"
    [h1_p99]="HTTPS HTTP/1.1: p99 latency ms"
    [h1_err]="HTTPS HTTP/1.1: errors"
    [h1_cpu]="HTTPS HTTP/1.1: proxy CPU % of one core"
    [h1_usr]="HTTPS HTTP/1.1: proxy user CPU µs per request"
    [h1_sys]="HTTPS HTTP/1.1: proxy system CPU µs per request"
    [h2_rps]="HTTP/2, $CONNS conns x $STREAMS streams (h2load): req/s"
    [h2_err]="HTTP/2: errors"
    [h2_cpu]="HTTP/2: proxy CPU % of one core"
    [h2_usr]="HTTP/2: proxy user CPU µs per request"
    [h2_sys]="HTTP/2: proxy system CPU µs per request"
    [rss_idle]="RSS idle: MiB"
    [rss_conns]="RSS with $IDLE_CONNS idle TLS connections (before load): MiB"
)

ratio() { python3 "$BENCH_DIR/parse.py" ratio "$1" "$2"; }

print_table() {
    local k r1 r2 md=""
    md+="| scenario | nginx | HAProxy | interpose | interpose/nginx | interpose/HAProxy |"$'\n'
    md+="|---|---:|---:|---:|---:|---:|"$'\n'
    printf '\n%-52s %9s %9s %9s %10s %10s\n' scenario nginx haproxy interpose "/nginx" "/haproxy"
    for k in "${KEYS[@]}"; do
        if [[ $k == *_err || $k == *_cpu ]]; then r1="-"; r2="-"
        elif [[ -n ${RATIO[$k,nginx]:-} ]]; then r1=${RATIO[$k,nginx]}; r2=${RATIO[$k,haproxy]}
        else
            r1=$(ratio "${RES[$k,interpose]}" "${RES[$k,nginx]}")
            r2=$(ratio "${RES[$k,interpose]}" "${RES[$k,haproxy]}")
        fi
        printf '%-52s %9s %9s %9s %10s %10s\n' "${LABEL[$k]}" \
            "${RES[$k,nginx]}" "${RES[$k,haproxy]}" "${RES[$k,interpose]}" "$r1" "$r2"
        md+="| ${LABEL[$k]} | ${RES[$k,nginx]} | ${RES[$k,haproxy]} | ${RES[$k,interpose]} | $r1 | $r2 |"$'\n'
    done
    echo
    TABLE_MD=$md
}

version_of() {
    case $1 in
        nginx) nginx -v 2>&1 | sed 's|.*nginx/||' ;;
        haproxy) haproxy -v 2>/dev/null | head -n1 | awk '{print $3}' ;;
        wrk) wrk -v 2>&1 | head -n1 | awk '{print $2}' ;;
        h2load) h2load --version 2>/dev/null | head -n1 | awk '{print $NF}' ;;
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
        echo "# TLS reverse proxy benchmark: latest run"
        echo
        echo "Written by \`bench/reverse.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
        echo
        echo "- $ROUNDS interleaved rounds: load cells are medians over the rounds, their ratios medians of the per-round ratios"
        echo "- DURATION=$DURATION, $CONNS connections, $STREAMS streams per h2 connection, $IDLE_CONNS idle TLS connections"
        echo "- access lines: nginx and HAProxy none; interpose ${ACCESS_LOG} (ACCESS_LOG)"
        echo "- machine: $NCPU CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)), kernel $(uname -r)"
        echo "- load average before / after: $LOAD_BEFORE / $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "- pinning: proxy on CPU 0, wrk/h2load and the nginx origin on CPU 1$( (( ${#PIN_PROXY[@]} )) || echo ' (NOT pinned)')"
        echo "- certificate: ECDSA P-256 for every peer; origin: nginx plain HTTP \`return 200 \"hello\\n\"\`"
        echo "- versions: nginx $(version_of nginx), HAProxy $(version_of haproxy), wrk $(version_of wrk), h2load $(version_of h2load), interpose $(version_of interpose)"
        echo "- logging: nginx access_log off, HAProxy no log target, interpose access lines to /dev/null"
        echo
        printf '%s' "$TABLE_MD"
        echo
        echo "Ratios above 1 are better for req/s, below 1 better for latency, CPU per request and RSS."
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
    for tool in haproxy h2load wrk curl openssl python3 nginx; do
        command -v "$tool" >/dev/null || die "$tool is missing (run without SKIP_INSTALL=1, as root)"
    done
    if [[ " $PEERS " == *" interpose "* && ${SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release"
        (cd "$ROOT" && cargo build --release) > /tmp/interpose-bench-build.log 2>&1 \
            || { log "warning: cargo build --release failed"; tail -n 5 /tmp/interpose-bench-build.log >&2; }
    fi
    local interpose_ok=1
    if [[ ! -x $INTERPOSE_BIN ]] || ! "$INTERPOSE_BIN" reverse --help >/dev/null 2>&1; then
        interpose_ok=0
        log "no interpose binary with 'reverse' at $INTERPOSE_BIN: its column will read n/a"
    fi
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    if awk -v l="${LOAD_BEFORE%% *}" -v n="$NCPU" 'BEGIN { exit !(l > n / 4) }'; then
        note "machine busy before the run (load average $LOAD_BEFORE): compare ratios, re-run on a quiet machine"
    fi

    TMP=$(mktemp -d /tmp/interpose-rbench.XXXXXX)
    read -r ORIGIN_HTTP ORIGIN_TLS NGINX_PORT HAPROXY_PORT INTERPOSE_PORT < <(free_ports 5)
    [[ -n ${INTERPOSE_PORT:-} ]] || die "could not pick free ports"
    make_certs
    start_origin

    local peer k step round
    declare -A PORT_OF=([nginx]=$NGINX_PORT [haproxy]=$HAPROXY_PORT [interpose]=$INTERPOSE_PORT)
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
    for step in scenario_h1 scenario_h2; do
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
        for k in "${KEYS[@]}"; do
            [[ -n ${RES[$k,$peer]:-} ]] || RES[$k,$peer]=fail
        done
        [[ -n ${PEER_PID[$peer]:-} ]] && { stop_pid "${PEER_PID[$peer]}"; forget_pid "${PEER_PID[$peer]}"; }
    done
    print_table
    write_markdown
}

main "$@"
