#!/usr/bin/env bash
# What the fields sluice adds to every request cost the upstream: user-space instructions per
# request of the e2e comparison's upstream nginx (callgrind), for wrk's request as it is and
# for the same request with the three fields sluice's contract adds (x-forwarded-for,
# x-forwarded-proto, x-request-id, as sluice writes them: 105 bytes). The plain peers of the
# comparison send none of them; the upstreams share the proxy's core, so this is work on the
# core every proxy is measured on.
#
# Usage: benches/e2e/upstream-cost.sh
#   BENCH_DIR=DIR  a folder benches/e2e/run.sh has set up (its run/conf/backend-stable.conf)
#   OUT=DIR        where the callgrind files go (default: $BENCH_DIR/upstream-cost)
# Needs valgrind (apt install valgrind), nginx, wrk, curl, python3.
set -euo pipefail
ME=upstream-cost.sh
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
OUT=${OUT:-$BENCH_DIR/upstream-cost}
needs valgrind callgrind_control callgrind_annotate nginx wrk curl python3
mkdir -p "$OUT"

# The stable upstream's config, one process (no master), on a port nothing holds.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s/127.0.0.1:18081/127.0.0.1:$port/" -e 's/^worker_processes 1;/master_process off;\nworker_processes 1;/' \
    -e "s#^pid .*#pid $OUT/nginx.pid;#" -e "s#^error_log .*#error_log $OUT/nginx.err warn;#" \
    "$R/conf/backend-stable.conf" >"$OUT/nginx.conf"
URL=http://127.0.0.1:$port/

for mode in plain sluice-fields; do
    extra=()
    [ "$mode" = sluice-fields ] && extra=(-H 'x-forwarded-for: 127.0.0.1' -H 'x-forwarded-proto: http'
        -H 'x-request-id: 63c563dd-0737-48c9-a9bd-e6e920f67794')
    rm -f "$OUT"/cg.tmp.*
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cg.tmp.%p" \
        nginx -c "$OUT/nginx.conf" >"$OUT/valgrind.log" 2>&1 &
    vp=$!
    pids+=("$vp")
    wait_ready "$URL" 200
    wrk -t1 -c8 -d2s "${extra[@]}" "$URL" >/dev/null
    callgrind_control -i on "$vp" >/dev/null 2>&1
    n=$(wrk -t1 -c8 -d4s "${extra[@]}" "$URL" | awk '/requests in/{print $1}')
    # nginx under valgrind may sleep through SIGTERM in epoll_wait: KILL (the dump is written)
    callgrind_finish "$vp" "$OUT/$mode.out" KILL
    echo "upstream nginx, $mode: $n requests, $CG_IR instructions, $((CG_IR / n)) per request ($OUT/$mode.out)"
done
