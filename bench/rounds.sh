# bench/rounds.sh: the medians of interleaved rounds, shared by bench/run.sh and
# bench/mitm.sh (sourced). Each round's figures are in ROUND[KEY,PEER,ROUND]; a cell is
# the median over the rounds, a ratio the median of the per-round ratios.
#
# DECIMAL_KEYS: a glob of the keys whose medians keep two decimals (latencies).

is_number() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]; }

# median_cell KEY VALUES...: the median over the rounds, or fail if a round failed.
median_cell() {
    local k=$1 v; shift
    for v in "$@"; do is_number "$v" || { echo fail; return; }; done
    # shellcheck disable=SC2053
    if [[ $k == $DECIMAL_KEYS ]]; then
        python3 "$BENCH_DIR/parse.py" median2 "$@"
    else
        python3 "$BENCH_DIR/parse.py" median "$@"
    fi
}

# round_ratio KEY A B N: median over N rounds of A/B; "-" unless every round has both.
round_ratio() {
    local k=$1 a=$2 b=$3 n=$4 r x y ratios=()
    for r in $(seq "$n"); do
        x=${ROUND[$k,$a,$r]:-}; y=${ROUND[$k,$b,$r]:-}
        is_number "$x" && is_number "$y" || { echo "-"; return; }
        # x/y to 2 decimals, as parse.py ratio (awk: no python start-up per round)
        ratios+=("$(awk -v x="$x" -v y="$y" 'BEGIN { if (y == 0) print "-"; else printf "%.2f", x / y }')")
    done
    python3 "$BENCH_DIR/parse.py" median2 "${ratios[@]}"
}
