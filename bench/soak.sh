#!/usr/bin/env bash
# bench/soak.sh: leak check. Runs mixed traffic through all three modes at once for
# SOAK (default 10m) and reports each proxy's RSS and open file descriptors after a
# warm-up and again after the soak, both measured once traffic has stopped and
# SETTLE seconds have passed. Both should come back to within 10% of the first figure.
#
# Traffic, all on 127.0.0.1: an `interpose echo` origin; `interpose reverse` in front of
# it (TLS, self-signed: also the https origin for the others); `interpose forward`;
# `interpose mitm` (--insecure-upstream, towards that self-signed origin). Mixed in:
# keep-alive and new-connection plain HTTP through forward, CONNECT tunnels, intercepted
# keep-alive and new connections, reverse over HTTP/1.1 and HTTP/2, clients that abort
# mid-request or mid-body, and requests to an upstream that refuses (502).
#
# Environment:
#   SOAK=10m      how long the mixed traffic runs (SOAK=1m for a smoke run)
#   WARMUP=20s    the same traffic before the first measurement
#   SETTLE=200    seconds between the end of traffic and each measurement: hyper's
#                 client closes idle connections after 90 s, checked every 90 s, so one may
#                 live 180 s (the engine's pools check theirs every 10 s, and close those
#                 the origin closed or idle over 90 s)
#   INTERPOSE_BIN=...  binary (default target/release/interpose, built if missing)
#   RESULTS=...   markdown output (default bench/results/soak-latest.md)

set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SOAK=${SOAK:-10m}
WARMUP=${WARMUP:-20s}
SETTLE=${SETTLE:-200}
BIN=${INTERPOSE_BIN:-$ROOT/target/release/interpose}
RESULTS=${RESULTS:-$BENCH_DIR/results/soak-latest.md}
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[soak %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

secs() {
    case $1 in
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) echo "$1" ;;
    esac
}

command -v oha >/dev/null || die "oha is missing (cargo install oha, or run bench/run.sh once)"
command -v curl >/dev/null || die "curl is missing"
if [[ ! -x $BIN ]]; then
    (cd "$ROOT" && cargo build --release) || die "build failed"
fi

TMP=$(mktemp -d /tmp/interpose-soak.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

ECHO=$(free_port); REV=$(free_port); FWD=$(free_port); MITM=$(free_port); DEAD=$(free_port)
"$BIN" echo --listen "127.0.0.1:$ECHO" > /dev/null 2> "$TMP/echo.err" & PIDS+=($!)
"$BIN" reverse --listen "127.0.0.1:$REV" --to "127.0.0.1:$ECHO" > /dev/null 2> "$TMP/reverse.err" &
REV_PID=$!; PIDS+=($REV_PID)
"$BIN" forward --listen "127.0.0.1:$FWD" > /dev/null 2> "$TMP/forward.err" &
FWD_PID=$!; PIDS+=($FWD_PID)
"$BIN" mitm --listen "127.0.0.1:$MITM" --ca-dir "$TMP/ca" --insecure-upstream > /dev/null 2> "$TMP/mitm.err" &
MITM_PID=$!; PIDS+=($MITM_PID)
for p in $ECHO $REV $FWD $MITM; do wait_port "$p" || die "port $p did not open"; done
log "echo :$ECHO, reverse :$REV, forward :$FWD, mitm :$MITM (nothing listens on :$DEAD)"

# One round of the mix, lasting about $1 seconds.
mix() {
    local d=$1 jobs=()
    local o=(--no-tui -z "${d}s" --insecure)
    oha "${o[@]}" -c 20 -x "http://127.0.0.1:$FWD" "http://127.0.0.1:$ECHO/ka" >/dev/null 2>&1 & jobs+=($!)
    oha "${o[@]}" -c 5 --disable-keepalive -x "http://127.0.0.1:$FWD" "http://127.0.0.1:$ECHO/new" >/dev/null 2>&1 & jobs+=($!)
    oha "${o[@]}" -c 10 -x "http://127.0.0.1:$FWD" --proxy-header "Host: 127.0.0.1:$REV" "https://127.0.0.1:$REV/tunnel" >/dev/null 2>&1 & jobs+=($!)
    oha "${o[@]}" -c 10 -x "http://127.0.0.1:$MITM" --proxy-header "Host: 127.0.0.1:$REV" "https://127.0.0.1:$REV/mitm" >/dev/null 2>&1 & jobs+=($!)
    oha "${o[@]}" -c 3 --disable-keepalive -x "http://127.0.0.1:$MITM" --proxy-header "Host: 127.0.0.1:$REV" "https://127.0.0.1:$REV/mitm-new" >/dev/null 2>&1 & jobs+=($!)
    oha "${o[@]}" -c 10 "https://127.0.0.1:$REV/reverse" >/dev/null 2>&1 & jobs+=($!)
    oha "${o[@]}" -c 5 --http2 -p 4 "https://127.0.0.1:$REV/reverse-h2" >/dev/null 2>&1 & jobs+=($!)
    python3 "$BENCH_DIR/soak_abuse.py" "$d" "$FWD" "$MITM" "$REV" "$ECHO" "$DEAD" >/dev/null 2>&1 & jobs+=($!)
    wait "${jobs[@]}"
}

fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
rss() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }
declare -A START END
measure() {  # measure ARRAY
    local -n into=$1
    local name pid
    for name in forward mitm reverse; do
        case $name in forward) pid=$FWD_PID ;; mitm) pid=$MITM_PID ;; reverse) pid=$REV_PID ;; esac
        kill -0 "$pid" 2>/dev/null || die "$name died (see $TMP/$name.err)"
        into[$name,rss]=$(rss "$pid"); into[$name,fds]=$(fds "$pid")
    done
}

log "warm-up: $WARMUP"
mix "$(secs "$WARMUP")"
sleep "$SETTLE"
measure START
log "after warm-up: forward ${START[forward,rss]} MiB/${START[forward,fds]} fds, mitm ${START[mitm,rss]}/${START[mitm,fds]}, reverse ${START[reverse,rss]}/${START[reverse,fds]}"

total=$(secs "$SOAK"); round=30; done_s=0; rounds=0
log "soak: $SOAK in rounds of ${round}s"
while (( done_s < total )); do
    mix "$round"
    done_s=$(( done_s + round )); rounds=$(( rounds + 1 ))
    for pid in $FWD_PID $MITM_PID $REV_PID; do kill -0 "$pid" 2>/dev/null || die "a proxy died during the soak"; done
    log "round $rounds: forward $(rss $FWD_PID) MiB/$(fds $FWD_PID) fds, mitm $(rss $MITM_PID)/$(fds $MITM_PID), reverse $(rss $REV_PID)/$(fds $REV_PID)"
done
sleep "$SETTLE"
measure END

mkdir -p "$(dirname "$RESULTS")"
{
    echo "# Soak: $SOAK of mixed traffic, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"
    echo
    echo "| mode | RSS after warm-up MiB | RSS after soak MiB | change | fds after warm-up | fds after soak | change |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for name in forward mitm reverse; do
        awk -v n="$name" -v r0="${START[$name,rss]}" -v r1="${END[$name,rss]}" -v f0="${START[$name,fds]}" -v f1="${END[$name,fds]}" \
            'BEGIN { printf "| %s | %s | %s | %+.0f%% | %s | %s | %+.0f%% |\n", n, r0, r1, 100 * (r1 - r0) / r0, f0, f1, 100 * (f1 - f0) / f0 }'
    done
} | tee "$RESULTS"
log "wrote $RESULTS"
