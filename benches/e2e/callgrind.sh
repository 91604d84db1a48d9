#!/usr/bin/env bash
# User-space instructions per request of sluice-proxy, by callgrind: the deciding measure for
# request-path changes on a noisy machine (identical runs agree to ~0.1 %; wall-clock A/B
# runs here move +-15 %). Kernel time is not counted.
#
# Usage: benches/e2e/callgrind.sh [BIN] [LABEL]
#   BIN    sluice-proxy to measure (default: target/release/sluice-proxy; build it first)
#   LABEL  names the outputs: $OUT/LABEL.h1.out and $OUT/LABEL.h2c.out (default: sluice)
#   BENCH_DIR=DIR  a folder benches/e2e/run.sh has set up (its run/conf and run/sluice are
#                  used: the same upstream nginx and sluice.yaml as the e2e comparison)
#   OUT=DIR        where the callgrind files go (default: $BENCH_DIR/callgrind)
# Needs valgrind (apt install valgrind), nginx, wrk, h2load, curl.
#
# For each of HTTP/1.1 (wrk -t1 -c8, 5 s) and h2c (h2load -n 20000 -c 32 -m 10): start the
# proxy under callgrind with instrumentation off, warm up, switch it on for the measured
# load, dump, and print instructions / requests. Inspect with callgrind_annotate.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/target/release/sluice-proxy}
LABEL=${2:-sluice}
ME=callgrind.sh
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
OUT=${OUT:-$BENCH_DIR/callgrind}
needs valgrind callgrind_control callgrind_annotate nginx wrk h2load curl
mkdir -p "$OUT"
URL=http://127.0.0.1:$(sluice_port)/
start_upstreams "$OUT"

for mode in h1 h2c; do
    rm -f "$OUT"/cg.tmp.*
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.tmp.%p" \
        "$BIN" --config "$R/sluice/sluice.yaml" --workers 1 --log-level warn >"$OUT/valgrind.log" 2>&1 &
    vp=$!
    pids+=("$vp")
    wait_ready "$URL" 200
    if [ "$mode" = h1 ]; then
        wrk -t1 -c8 -d3s "$URL" >/dev/null
        callgrind_control -i on "$vp" >/dev/null 2>&1
        n=$(wrk -t1 -c8 -d5s "$URL" | awk '/requests in/{print $1}')
    else
        h2load -n 5000 -c 32 -m 10 "$URL" >/dev/null
        callgrind_control -i on "$vp" >/dev/null 2>&1
        n=$(h2load -n 20000 -c 32 -m 10 "$URL" | awk '/^requests:/{print $8}')
    fi
    callgrind_finish "$vp" "$OUT/$LABEL.$mode.out"
    echo "$LABEL $mode: $n requests, $CG_IR instructions, $((CG_IR / n)) per request ($OUT/$LABEL.$mode.out)"
done
