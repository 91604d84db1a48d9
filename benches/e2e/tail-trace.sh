#!/usr/bin/env bash
# Where a slow upstream round trip waits: a 0.7 s trace of the server core (the proxy and the
# two upstream nginx, pinned as in the e2e run) under wrk -t1 -c64 on core 0. Each request the
# proxy sends upstream is followed by its connection's ports through three steps: the upstream
# reads it, the upstream writes its answer, the proxy reads that answer. For the round trips
# grouped by length (fastest half, p50-90, p90-95, p95-99, slowest 1 %) it prints the mean time
# of each step, the canary's share, and what ran on the core while the request waited for the
# upstream to read it (from the scheduler's switches: the proxy P, the stable nginx S, the
# canary nginx C, idle). The trace slows every process on the core: compare proxies measured
# the same way, not with the e2e run's latencies.
#
# Usage: benches/e2e/tail-trace.sh [PROXY...]     PROXY: sluice (default) and/or haproxy
#   BENCH_DIR=DIR  a folder benches/e2e/run.sh has set up (its run/conf and run/sluice are used)
#   BIN=PATH       the sluice-proxy to measure (default: target/release/sluice-proxy)
# Needs perf (the sched and syscalls tracepoints of a CPU: root, or kernel.perf_event_paranoid
# at most -1), ss (iproute2), nginx, wrk, curl, python3; haproxy for that proxy.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release/sluice-proxy}
ME=tail-trace.sh
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
needs perf ss nginx wrk curl taskset python3
PROXIES=("$@")
[ ${#PROXIES[@]} -gt 0 ] || PROXIES=(sluice)
OUT=$BENCH_DIR/tail-trace
mkdir -p "$OUT"
start_upstreams "$OUT" taskset -c 1
masters=("${pids[@]}")

# The upstream nginx workers, "stable canary" (each master has one worker).
workers() {
    local m
    for m in "${masters[@]}"; do
        for _ in $(seq 50); do pgrep -P "$m" >/dev/null && break; sleep 0.1; done
        pgrep -P "$m" | head -1
    done | paste -sd' '
}

EVENTS=sched:sched_switch
for call in recvfrom sendto read write writev epoll_wait; do
    EVENTS+=",syscalls:sys_enter_$call,syscalls:sys_exit_$call"
done

for proxy in "${PROXIES[@]}"; do
    start_proxy "$proxy" "$OUT"
    pid=$proxy_pid
    port=$proxy_port
    wait_ready "http://127.0.0.1:$port/"
    taskset -c 0 wrk -t1 -c64 -d3s "http://127.0.0.1:$port/" >/dev/null   # warm-up
    taskset -c 0 wrk -t1 -c64 -d5s "http://127.0.0.1:$port/" >"$OUT/wrk-$proxy.txt" &
    load=$!
    sleep 2
    ss -tnpe state established >"$OUT/ss-$proxy.txt"
    perf record -q -m 8192 -C 1 -o "$OUT/$proxy.data" -e "$EVENTS" -- sleep 0.7 2>"$OUT/perf-$proxy.log" ||
        { echo "$ME: perf record failed (root or kernel.perf_event_paranoid = -1?):" >&2; cat "$OUT/perf-$proxy.log" >&2; exit 1; }
    wait "$load"
    perf script -i "$OUT/$proxy.data" -F tid,time,event,trace >"$OUT/$proxy.txt" 2>/dev/null
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    # shellcheck disable=SC2046 # two pids, split on purpose
    python3 - "$proxy" "$pid" $(workers) "$OUT" "$(upstream_port stable)" "$(upstream_port canary)" <<'EOF'
import bisect, collections, re, sys

name, proxy, stable, canary, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
UP = (sys.argv[6], sys.argv[7])   # the stable and canary upstream ports
# Sockets: the proxy's upstream connections (fd -> local port, upstream port) and the
# upstreams' ends (local port of the proxy's end -> (pid, fd)).
proxy_fd, upstream_end = {}, {}
for line in open(f"{out}/ss-{name}.txt"):
    f = line.split()
    if len(f) < 5:
        continue
    local, remote = f[2].rsplit(":", 1)[-1], f[3].rsplit(":", 1)[-1]
    for pid, fd in re.findall(r"pid=(\d+),fd=(\d+)", line):
        pid, fd = int(pid), int(fd)
        if pid == proxy and remote in UP:
            proxy_fd[fd] = (local, remote)
        elif pid in (stable, canary) and local in UP:
            upstream_end[remote] = (pid, fd)
# Successful reads and writes per (thread, fd), and the core's switches.
pending, io, switches = {}, collections.defaultdict(lambda: ([], [])), []
for line in open(f"{out}/{name}.txt"):
    p = line.split()
    if len(p) < 3:
        continue
    tid, t, event = int(p[0]), float(p[1].rstrip(":")), p[2].rstrip(":")
    if event == "sched:sched_switch":
        m = re.search(r"next_pid=(\d+)", line)
        switches.append((t, int(m.group(1))))
        continue
    call = event.split(":")[-1]
    if call.startswith("sys_enter_"):
        m = re.search(r"fd: 0x([0-9a-f]+)", line)
        pending[tid] = (call[10:], int(m.group(1), 16)) if m else None
        continue
    started = pending.pop(tid, None)
    if not started or len(p) < 4:
        continue
    ret = int(p[3], 16)
    if ret == 0 or ret >= 1 << 63:
        continue
    kind, fd = started
    io[(tid, fd)][0 if kind in ("recvfrom", "read") else 1].append(t)
times = [s[0] for s in switches]
label = {proxy: "P", stable: "S", canary: "C", 0: "idle"}

def on_core(a, b):
    """Seconds each task ran on the core within [a, b]."""
    use = collections.Counter()
    i = bisect.bisect_right(times, a) - 1
    running, t = (switches[i][1] if i >= 0 else None), a
    for when, nxt in switches[i + 1:]:
        if when >= b:
            break
        use[label.get(running, "other")] += when - t
        running, t = nxt, when
    use[label.get(running, "other")] += b - t
    return use

trips = []   # (round trip, to upstream read, upstream, to proxy read, canary?, sent, read)
for fd, (local, remote) in proxy_fd.items():
    if local not in upstream_end:
        continue
    p_in, p_out = io[(proxy, fd)]
    u_in, u_out = io[upstream_end[local]]
    for sent in p_out:
        a = bisect.bisect_left(u_in, sent)
        if a == len(u_in):
            break
        b = bisect.bisect_left(u_out, u_in[a])
        if b == len(u_out):
            break
        c = bisect.bisect_left(p_in, u_out[b])
        if c == len(p_in):
            break
        trips.append((p_in[c] - sent, u_in[a] - sent, u_out[b] - u_in[a], p_in[c] - u_out[b],
                      remote == UP[1], sent, u_in[a]))
if not trips:
    sys.exit(f"{name}: no upstream round trip found in the trace")
trips.sort()
n = len(trips)
print(f"\n{name}: {n} upstream round trips in 0.7 s (us; P proxy, S stable nginx, C canary nginx)")
print("| round trips | round trip | to upstream read | upstream | to proxy read | canary % | core while waiting for the upstream read |")
print("|---|---|---|---|---|---|---|")
for lo, hi, what in ((0, .5, "fastest 50 %"), (.5, .9, "p50-90"), (.9, .95, "p90-95"), (.95, .99, "p95-99"), (.99, 1, "slowest 1 %")):
    group = trips[int(n * lo):max(int(n * hi), int(n * lo) + 1)]
    mean = [1e6 * sum(r[i] for r in group) / len(group) for i in range(4)]
    use = collections.Counter()
    for r in group[::max(1, len(group) // 300)]:
        use.update(on_core(r[5], r[6]))
    total = sum(use.values()) or 1
    core = " ".join(f"{k} {100 * v / total:.0f} %" for k, v in sorted(use.items()) if v / total >= 0.005)
    share = 100 * sum(r[4] for r in group) / len(group)
    print(f"| {what} | {mean[0]:.0f} | {mean[1]:.0f} | {mean[2]:.0f} | {mean[3]:.0f} | {share:.0f} | {core} |")
EOF
done
