#!/usr/bin/env bash
# Where a proxy's CPU goes per request, kernel included: the companion of callgrind.sh (which
# counts user-space instructions only). For each proxy, under wrk -t1 -c64 (or, with LOAD=h2c,
# h2load -c 32 -m 10 over h2c) pinned as in the e2e run (proxy and upstreams on core 1, the
# load generator on core 0), it prints per 1000 requests:
#   - perf cpu-clock samples of the proxy, kernel / user (its binary and libc) / all;
#   - the whole server core's samples by process: the proxy, the upstream nginx, anything
#     else, idle (the core is the bottleneck: these add up to the time a request takes it);
#   - the proxy's kernel symbols with the most samples;
# and per request: context switches of every thread of the proxy (voluntary / involuntary),
# TCP segments out and in (nstat, loopback: both hops), bytes on the wire, and the CPU time
# (user + system, from /proc) of the proxy and of the two upstream nginx, which share its core:
# what a proxy sends upstream is work for them too.
#
# Usage: benches/e2e/kernel.sh [PROXY...]     PROXY: sluice (default) and/or haproxy
#   BENCH_DIR=DIR  a folder benches/e2e/run.sh has set up (its run/conf and run/sluice are used)
#   BIN=PATH       the sluice-proxy to measure (default: target/release/sluice-proxy)
#   PROFILE_SECONDS=4  seconds of profile per proxy (the load runs 2 s longer around it)
#   TOP=12         kernel symbols to list
#   LOAD=h1        h1: wrk -t1 -c64; h2c: h2load -c 32 -m 10 (prior knowledge), as the e2e run
# Needs perf (apt install linux-perf; the profile covers the whole server core, which needs
# root or kernel.perf_event_paranoid <= 0), nstat (iproute2), nginx, wrk or h2load, curl;
# haproxy for that proxy. Samples are statistical: compare proxies (or builds) measured in the
# same call, and repeat; single runs here spread about +-5 %.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release/sluice-proxy}
SECS=${PROFILE_SECONDS:-4}
TOP=${TOP:-12}
ME=kernel.sh
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
OUT=$BENCH_DIR/kernel
PROXIES=("$@")
[ ${#PROXIES[@]} -gt 0 ] || PROXIES=(sluice)
LOAD=${LOAD:-h1}
case $LOAD in
    h1) needs wrk ;;
    h2c) needs h2load ;;
    *) echo "$ME: LOAD=$LOAD: h1 or h2c" >&2; exit 2 ;;
esac
needs perf nstat nginx curl taskset
mkdir -p "$OUT"
start_upstreams "$OUT" taskset -c 1

# "voluntary involuntary" context switches summed over the threads of $1.
switches() {
    cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/^voluntary_ctxt/{v += $2} /^nonvoluntary_ctxt/{n += $2} END {print v + 0, n + 0}'
}

# User + system clock ticks of $@ and their children (nginx: master and workers).
ticks() {
    local p all=()
    for p in "$@"; do
        all+=("$p")
        while read -r child; do all+=("$child"); done < <(pgrep -P "$p" || true)
    done
    for p in "${all[@]}"; do awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true; done |
        awk '{t += $1} END {print t + 0}'
}
upstreams=("${pids[@]}")

# load SECONDS URL: the chosen load on core 0 for SECONDS; prints "REQUESTS RPS".
load() {
    case $LOAD in
        h1) taskset -c 0 wrk -t1 -c64 -d"$1s" "$2" |
            awk '/requests in/{n = $1} /Requests\/sec/{r = $2} END {print n, r}' ;;
        h2c) taskset -c 0 h2load -D "$1" -c 32 -m 10 "$2" |
            awk '/^finished in/{r = $4} /^requests:/{n = $8} END {print n, r}' ;;
    esac
}
hz=$(getconf CLK_TCK)

for proxy in "${PROXIES[@]}"; do
    start_proxy "$proxy" "$OUT"
    pid=$proxy_pid
    url=http://127.0.0.1:$proxy_port/
    wait_ready "$url"
    load 2 "$url" >/dev/null

    # Context switches and segments over one run, the profile over another.
    read -r v0 n0 < <(switches "$pid")
    p0=$(ticks "$pid")
    u0=$(ticks "${upstreams[@]}")
    nstat -n >/dev/null
    read -r requests _ < <(load "$SECS" "$url")
    read -r v1 n1 < <(switches "$pid")
    p1=$(ticks "$pid")
    u1=$(ticks "${upstreams[@]}")
    nstat >"$OUT/$proxy.nstat"
    load "$((SECS + 2))" "$url" >"$OUT/$proxy.load" &
    load_pid=$!
    pids+=("$load_pid")
    sleep 1
    # the whole server core: the proxy, its upstreams and whatever else ran there
    perf record -q -e cpu-clock -F 4999 -g -C 1 -o "$OUT/$proxy.perf" -- sleep "$SECS" \
        >"$OUT/$proxy.perf.log" 2>&1 || {
        echo "$ME: perf record -C 1 failed (a CPU-wide profile needs root or" \
            "kernel.perf_event_paranoid <= 0): $(tail -1 "$OUT/$proxy.perf.log")" >&2
        exit 1
    }
    wait "$load_pid"
    read -r _ rps <"$OUT/$proxy.load"

    echo "== $proxy ($requests requests for switches and segments; $rps rps while profiled)"
    awk -v n="$requests" -v v="$((v1 - v0))" -v i="$((n1 - n0))" '
        $1 == "TcpOutSegs" {o = $2} $1 == "TcpInSegs" {s = $2} $1 == "IpExtInOctets" {b = $2}
        END {
            printf "per request: %.3f voluntary + %.3f involuntary context switches; ", v / n, i / n
            printf "%.2f TCP segments out, %.2f in; %.0f bytes\n", o / n, s / n, b / n
        }' "$OUT/$proxy.nstat"
    awk -v n="$requests" -v p="$((p1 - p0))" -v u="$((u1 - u0))" -v hz="$hz" 'BEGIN {
        printf "CPU per request (us, /proc ticks): proxy %.2f, upstream nginx %.2f, both %.2f\n",
            p / hz / n * 1e6, u / hz / n * 1e6, (p + u) / hz / n * 1e6
    }'
    # perf's sample counts, scaled to 1000 requests of the profiled span: the proxy's threads
    # by DSO, then the whole core by process, then the proxy's kernel symbols; one report by
    # thread, DSO and symbol gives all three. Samples are told apart by thread id: the proxy's
    # threads, the upstream nginx's (master and worker), the idle task (0); fields separated by
    # "|" (names hold spaces).
    per=$(awk -v r="$rps" -v s="$SECS" 'BEGIN {print r * s / 1000}')
    mine=",$(cd /proc/"$pid"/task && echo * | tr ' ' ','),"
    theirs=",$(for p in "${upstreams[@]}"; do echo "$p"; pgrep -P "$p" || true; done | paste -sd, -),"
    perf report -i "$OUT/$proxy.perf" --no-children --sort pid,dso,sym -g none --stdio -n -t '|' \
        2>/dev/null |
        awk -F'|' -v per="$per" -v mine="$mine" -v theirs="$theirs" -v syms="$OUT/$proxy.ksyms" '
            $2 ~ /^ *[0-9]+ *$/ {
                t = $3; sub(/^ +/, "", t); sub(/:.*/, "", t)
                # on one line: mawk, the awk of Debian, takes no line break inside a ?: expression
                who = index(mine, "," t ",") ? "proxy" : index(theirs, "," t ",") ? "upstreams" : (t == "0" ? "idle" : "other")
                part = $4 ~ /\[kernel.kallsyms\]/ ? "kernel" : "user"
                n[who "/" part] += $2
                all += $2
                if (who "/" part == "proxy/kernel") {
                    sym = $5; sub(/^ *\[k\] */, "", sym); gsub(/ +$/, "", sym)
                    ksym[sym] += $2
                }
            }
            END {
                printf "perf samples per 1000 requests: kernel %.1f, user %.1f, all %.1f\n",
                    n["proxy/kernel"] / per, n["proxy/user"] / per,
                    (n["proxy/kernel"] + n["proxy/user"]) / per
                printf "server core, samples per 1000 requests (4999 a second): "
                printf "proxy %.1f + %.1f, upstreams %.1f + %.1f, other %.1f, idle %.1f (kernel + user); all %.1f\n",
                    n["proxy/kernel"] / per, n["proxy/user"] / per, n["upstreams/kernel"] / per,
                    n["upstreams/user"] / per, (n["other/kernel"] + n["other/user"]) / per,
                    (n["idle/kernel"] + n["idle/user"]) / per, all / per
                for (s in ksym) printf "%.2f%% %s\n", 100 * ksym[s] / n["proxy/kernel"], s >syms
            }'
    echo "top kernel symbols of the proxy (share of its kernel samples):"
    sort -rn "$OUT/$proxy.ksyms" | awk -v top="$TOP" 'NR <= top {print "  " $0}'   # no SIGPIPE

    kill "$pid"
    wait "$pid" 2>/dev/null || true
done
