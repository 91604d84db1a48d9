# Shared by callgrind.sh, kernel.sh and link-order.sh (sourced, not run): the checks, the two
# upstream nginx of a folder benches/e2e/run.sh has set up, and stopping on exit what was
# started.
# Expects ME (the script's name, for messages) and BENCH_DIR; sets R (the run's folder).
# shellcheck shell=bash

: "${BENCH_DIR:?set BENCH_DIR to a folder benches/e2e/run.sh has run in}"
R=$BENCH_DIR/run
[ -f "$R/sluice/sluice.yaml" ] || { echo "$ME: no $R/sluice/sluice.yaml" >&2; exit 1; }

# needs TOOL...: exits when one is not installed.
needs() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "$ME: $tool not found" >&2; exit 1; }
    done
}

# Every server started here (by PID) is stopped on exit, Ctrl-C or error.
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_upstreams LOGDIR [PREFIX...]: the stable and canary nginx, run under PREFIX (e.g.
# taskset -c 1, which execs nginx, so $! is nginx itself).
start_upstreams() {
    local logs=$1 b
    shift
    for b in stable canary; do
        "$@" nginx -c "$R/conf/backend-$b.conf" -e "$logs/backend-$b.err" &
        pids+=($!)
    done
}

# sluice_port: the port of sluice.yaml's first listener.
sluice_port() { awk '/address: 127.0.0.1:/{sub(/.*:/, ""); print; exit}' "$R/sluice/sluice.yaml"; }

# sluice_admin: host:port of sluice.yaml's admin endpoint.
sluice_admin() { awk '/^admin:/{a = 1} a && /address:/{print $2; exit}' "$R/sluice/sluice.yaml"; }

# largest DIR NAME: the largest file in DIR whose name matches the pattern NAME (callgrind
# writes a file per process and per dump; the profile wanted is the largest).
largest() { find "$1" -name "$2" -printf '%s %p\n' | sort -rn | awk 'NR == 1 {print $2}'; }

# wait_ready URL [TRIES]: until URL answers, at most TRIES (default 100) x 0.2 s.
wait_ready() {
    for _ in $(seq "${2:-100}"); do
        curl -sf -o /dev/null "$1" && return
        sleep 0.2
    done
}
