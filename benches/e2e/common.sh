# Shared by callgrind.sh, cohorts.sh, kernel.sh, link-order.sh, pgo.sh, tail.sh, tail-trace.sh and
# upstream-cost.sh (sourced, not run): the checks, the two upstream nginx of a folder
# benches/e2e/run.sh has set up, and stopping on exit what was started.
# Expects ME (the script's name, for messages) and BENCH_DIR (and BIN for pinned_sluice); sets R
# (the run's folder).
# shellcheck shell=bash
# shellcheck disable=SC2034 # proxy_port and CG_IR are read by the scripts that source this file

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
# taskset -c 1, which execs nginx, so $! is nginx itself). Their configs come from
# UPSTREAM_CONF (default: the run's conf folder).
start_upstreams() {
    local logs=$1 b
    shift
    for b in stable canary; do
        "$@" nginx -c "${UPSTREAM_CONF:-$R/conf}/backend-$b.conf" -e "$logs/backend-$b.err" &
        pids+=($!)
    done
}

# sluice_port: the port of sluice.yaml's first listener.
sluice_port() { awk '/address: 127.0.0.1:/{sub(/.*:/, ""); print; exit}' "$R/sluice/sluice.yaml"; }

# upstream_port stable|canary: the port that upstream nginx listens on.
upstream_port() { awk '/listen/{sub(/.*:/, "", $2); sub(/;/, "", $2); print $2; exit}' "$R/conf/backend-$1.conf"; }

# haproxy_port: the first bind port of the run's haproxy.cfg.
haproxy_port() { awk '/^ *bind 127.0.0.1:/{sub(/.*:/, "", $2); print $2; exit}' "$R/conf/haproxy.cfg"; }

# pinned_sluice CONFIG LOG, pinned_haproxy CONFIG LOG: that proxy (sluice: the binary BIN) with
# CONFIG, pinned to core 1 as in the run, its output in LOG; set proxy_pid (also added to pids).
pinned_sluice() {
    taskset -c 1 "$BIN" --config "$1" --workers 1 --log-level warn >"$2" 2>&1 &
    proxy_pid=$!
    pids+=("$proxy_pid")
}
pinned_haproxy() {
    needs haproxy
    taskset -c 1 haproxy -db -f "$1" >"$2" 2>&1 &
    proxy_pid=$!
    pids+=("$proxy_pid")
}

# start_proxy sluice|haproxy LOGDIR: that proxy with the run's config, pinned to core 1 as in the
# run (sluice: the binary BIN); sets proxy_pid (also added to pids) and proxy_port.
start_proxy() {
    case $1 in
        sluice)
            pinned_sluice "$R/sluice/sluice.yaml" "$2/sluice.log"
            proxy_port=$(sluice_port) ;;
        haproxy)
            pinned_haproxy "$R/conf/haproxy.cfg" "$2/haproxy.log"
            proxy_port=$(haproxy_port) ;;
        *) echo "$ME: unknown proxy $1 (sluice or haproxy)" >&2; exit 2 ;;
    esac
}

# sluice_admin: host:port of sluice.yaml's admin endpoint.
sluice_admin() { awk '/^admin:/{a = 1} a && /address:/{print $2; exit}' "$R/sluice/sluice.yaml"; }

# largest DIR NAME: the largest file in DIR whose name matches the pattern NAME (callgrind
# writes a file per process and per dump; the profile wanted is the largest).
largest() { find "$1" -name "$2" -printf '%s %p\n' | sort -rn | awk 'NR == 1 {print $2}'; }

# wait_ready URL [TRIES]: until URL answers, at most TRIES (default 100) x 0.2 s; fails (with a
# message) if it never does.
wait_ready() {
    for _ in $(seq "${2:-100}"); do
        curl -sf -o /dev/null "$1" && return
        sleep 0.2
    done
    echo "$ME: nothing answers at $1" >&2
    return 1
}

# admin_and_reload ADMIN: calls sluice's admin endpoints at ADMIN (http://host:port), then has
# it reload a weights file (80/20), waits until its metrics count the reload, and removes the
# file again. The part of the workloads of link-order.sh and pgo.sh beyond the traffic.
admin_and_reload() {
    local path
    for path in metrics ready health config; do curl -s -o /dev/null "$1/$path"; done
    printf 'routes:\n  default: { stable: 80, canary: 20 }\n' >"$R/sluice/weights.yaml"
    local metrics reloaded=0
    for _ in $(seq 100); do
        # captured first: grep -q stopping early must not fail curl's write (pipefail)
        metrics=$(curl -s "$1/metrics" || true)
        if grep -q 'sluice_config_reloads_total{.*result="ok".*} [1-9]' <<<"$metrics"; then
            reloaded=1
            break
        fi
        sleep 0.2
    done
    [ $reloaded = 1 ] || echo "$ME: sluice did not report the weights reload within 20 s" >&2
    rm -f "$R/sluice/weights.yaml"
}

# callgrind_finish PID DEST [SIGNAL]: for a process started under callgrind with
# --callgrind-out-file=DIR/cg.tmp.%p (DIR = DEST's folder) and instrumentation switched on:
# switches it off, dumps, stops the process (SIGNAL, default TERM), keeps the dump as DEST and
# sets CG_IR to its instruction total. Not in a subshell: it waits for PID, a child of the caller.
callgrind_finish() {
    local vp=$1 dest=$2 dir f
    dir=$(dirname "$dest")
    callgrind_control -i off "$vp" >/dev/null 2>&1
    callgrind_control -d "$vp" >/dev/null 2>&1
    kill -"${3:-TERM}" "$vp"
    wait "$vp" 2>/dev/null || true
    # the dump is the largest file (the one written at exit holds what came after it)
    f=$(largest "$dir" 'cg.tmp.*')
    mv "$f" "$dest"
    rm -f "$dir"/cg.tmp.*
    CG_IR=$(callgrind_annotate "$dest" 2>/dev/null |
        awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
}
