#!/usr/bin/env bash
# What the c64 latency tail is made of: the e2e run's wrk -t1 -c64 against sluice and HAProxy
# (pinned as in the run: proxies and upstreams on core 1, wrk on core 0), interleaved, with more
# percentiles than wrk prints (50 to 99.9) from its full latency histogram, in three setups:
#   90/10         the run's split
#   100/0         the canary's weight at 0
#   90/10-shared  the run's split with the canary backend pointed at the stable nginx: the same
#                 work for the proxy, one upstream process on the core instead of two
# It prints the medians per proxy and setup and sluice's ratio to HAProxy, and the canary
# nginx's share of the upstream requests.
#
# Usage: benches/e2e/tail.sh
#   BENCH_DIR=DIR  a folder benches/e2e/run.sh has set up (its run/conf and run/sluice are used)
#   BIN=PATH       the sluice-proxy to measure (default: target/release/sluice-proxy)
#   ROUNDS=5       runs per proxy and split (the order alternates each round)
#   DURATION=8     seconds per run
#   SETUPS="90/10 100/0 90/10-shared"  the setups to run, in this order
#   UPSTREAM_CPU=1 the core of the two upstream nginx: 1 shares the proxies' core as in the
#                  run; 0 puts them with wrk, so each proxy has its core to itself
# sluice's split changes through its weights file (a hot reload); HAProxy's 100/0 runs go to a
# second HAProxy, the run's config with the canary's weight at 0 and its port + 100. The shared
# setup runs a second sluice (ports + 100) and a third HAProxy (port + 200) whose canary
# backend's address is the stable nginx's. Needs nginx, haproxy, wrk, curl, taskset.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release/sluice-proxy}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
SETUPS=${SETUPS:-90/10 100/0 90/10-shared}
UPSTREAM_CPU=${UPSTREAM_CPU:-1}
ME=tail.sh
case $UPSTREAM_CPU in
    0 | 1) ;;
    *) echo "$ME: UPSTREAM_CPU=$UPSTREAM_CPU: use 1 (the proxies' core) or 0 (wrk's core)" >&2; exit 2 ;;
esac
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
needs nginx haproxy wrk curl taskset python3
OUT=$BENCH_DIR/tail
rm -rf "$OUT"
mkdir -p "$OUT/sluice" "$OUT/sluice-shared"
cp "$R/sluice/sluice.yaml" "$OUT/sluice/"
printf 'routes:\n  default: { stable: 90, canary: 10 }\n' >"$OUT/sluice/weights.yaml"
cp "$OUT/sluice/weights.yaml" "$OUT/sluice-shared/"
start_upstreams "$OUT" taskset -c "$UPSTREAM_CPU"

SPORT=$(sluice_port)
ADMIN=http://$(sluice_admin)
S2PORT=$((SPORT + 100))
HPORT=$(haproxy_port)
H0PORT=$((HPORT + 100))
H2PORT=$((HPORT + 200))
STABLE=127.0.0.1:$(upstream_port stable)
CANARY=127.0.0.1:$(upstream_port canary)
admin_port=${ADMIN##*:}
sed -e "s/127.0.0.1:$SPORT\$/127.0.0.1:$S2PORT/" -e "s/127.0.0.1:$admin_port\$/127.0.0.1:$((admin_port + 100))/" \
    -e "s/\[$CANARY\]/[$STABLE]/" "$R/sluice/sluice.yaml" >"$OUT/sluice-shared/sluice.yaml"
grep -q "$CANARY" "$OUT/sluice-shared/sluice.yaml" && { echo "$ME: the canary's address is still in $OUT/sluice-shared/sluice.yaml" >&2; exit 1; }
# haproxy_copy NAME PORT SED-EXPRESSION: the run's haproxy.cfg on PORT alone, changed by the
# expression, as $OUT/NAME.cfg
haproxy_copy() {
    sed -e "s/^\( *bind 127.0.0.1:\)$HPORT/\1$2/" -e '/^ *bind 127.0.0.1:/!s/^\( *bind .*\)/#\1/' \
        -e "$3" -e "s#^\( *pidfile\) .*#\1 $OUT/$1.pid#" "$R/conf/haproxy.cfg" >"$OUT/$1.cfg"
}
haproxy_copy haproxy0 "$H0PORT" 's/^\( *server canary .* weight\) [0-9]*/\1 0/'
grep -q "weight 0" "$OUT/haproxy0.cfg" || { echo "$ME: no canary weight in $R/conf/haproxy.cfg" >&2; exit 1; }
haproxy_copy haproxy-shared "$H2PORT" "s/^\( *server canary \)$CANARY/\1$STABLE/"
grep -q "server canary $STABLE" "$OUT/haproxy-shared.cfg" || { echo "$ME: no canary server in $R/conf/haproxy.cfg" >&2; exit 1; }

pinned_haproxy "$R/conf/haproxy.cfg" "$OUT/haproxy.log"
for name in haproxy0 haproxy-shared; do
    pinned_haproxy "$OUT/$name.cfg" "$OUT/$name.log"
done
for name in sluice sluice-shared; do
    pinned_sluice "$OUT/$name/sluice.yaml" "$OUT/$name.log"
done
for url in "http://127.0.0.1:$SPORT/" "http://127.0.0.1:$HPORT/" "http://127.0.0.1:$H0PORT/" \
    "http://127.0.0.1:$S2PORT/" "http://127.0.0.1:$H2PORT/"; do
    wait_ready "$url"
done

cat >"$OUT/pct.lua" <<'EOF'
done = function(summary, latency, requests)
  local s = string.format("rps=%.0f", summary.requests / (summary.duration / 1e6))
  for _, p in ipairs({50, 90, 95, 97, 98, 99, 99.9}) do
    s = s .. string.format(" p%s=%d", p, latency:percentile(p))
  end
  io.write("PCT " .. s .. "\n")
end
EOF

# sluice's weights for the default route, then wait until its metrics show them.
weights() {
    printf 'routes:\n  default: { stable: %s, canary: %s }\n' "$1" "$2" >"$OUT/sluice/weights.tmp"
    mv "$OUT/sluice/weights.tmp" "$OUT/sluice/weights.yaml"
    local want="sluice_route_backend_weight{route=\"default\",backend=\"canary\"} $2"
    for _ in $(seq 100); do
        curl -s "$ADMIN/metrics" | grep -qF "$want" && return
        sleep 0.1
    done
    echo "$ME: sluice did not apply the weights $1/$2" >&2
    exit 1
}

# requests the two upstream nginx have answered: "stable canary"
served() {
    local b
    for b in stable canary; do
        curl -s "http://127.0.0.1:$(upstream_port $b)/__status" | awk 'NR == 3 {printf "%s ", $3}'
    done
}

# one SPLIT NAME PORT: a run, its percentiles and the canary's share appended to results.txt
one() {
    local before after file=$OUT/wrk-${1/\//-}-$2-$round.txt
    before=$(served)
    taskset -c 0 wrk -t1 -c64 -d"${DURATION}s" -s "$OUT/pct.lua" "http://127.0.0.1:$3/" >"$file" 2>&1
    after=$(served)
    grep -q '^PCT' "$file" || { echo "$ME: wrk failed:" >&2; cat "$file" >&2; exit 1; }
    echo "$1 $2 $(grep '^PCT' "$file" | cut -d' ' -f2-) $before $after" >>"$OUT/results.txt"
}

for split in $SETUPS; do
    declare -A port=([sluice]=$SPORT [haproxy]=$HPORT)
    case $split in
        90/10) weights 90 10 ;;
        100/0) weights 100 0; port[haproxy]=$H0PORT ;;
        90/10-shared) port=([sluice]=$S2PORT [haproxy]=$H2PORT) ;;
        *) echo "$ME: unknown setup $split (SETUPS: 90/10 100/0 90/10-shared)" >&2; exit 1 ;;
    esac
    for name in sluice haproxy; do   # warm-up: upstream connections, caches
        taskset -c 0 wrk -t1 -c64 -d3s "http://127.0.0.1:${port[$name]}/" >/dev/null
    done
    for round in $(seq "$ROUNDS"); do
        if [ $((round % 2)) = 1 ]; then order="sluice haproxy"; else order="haproxy sluice"; fi
        for name in $order; do
            one "$split" "$name" "${port[$name]}"
            echo "$split $name round $round: $(tail -1 "$OUT/results.txt" | cut -d' ' -f3-10)"
        done
    done
done

python3 - "$OUT/results.txt" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    split, name = f[0], f[1]
    d = {k: float(v) for k, v in (kv.split("=") for kv in f[2:10])}
    s0, c0, s1, c1 = map(int, f[10:14])
    d["canary%"] = 100.0 * (c1 - c0) / max(1, (s1 - s0) + (c1 - c0))
    rows.setdefault((split, name), []).append(d)
keys = ["rps", "p50", "p90", "p95", "p97", "p98", "p99", "p99.9", "canary%"]
print()
print("medians of %d runs (latency in us)" % len(next(iter(rows.values()))))
print("| split | proxy | " + " | ".join(keys) + " |")
print("|---|---|" + "---|" * len(keys))
for (split, name), runs in rows.items():
    med = [statistics.median(r[k] for r in runs) for k in keys]
    print("| %s | %s | " % (split, name) + " | ".join("%.1f" % m if k == "canary%" else "%.0f" % m for k, m in zip(keys, med)) + " |")
for split in dict.fromkeys(split for split, _ in rows):
    s, h = rows.get((split, "sluice")), rows.get((split, "haproxy"))
    if s and h:
        print("| %s | sluice / haproxy | " % split + " | ".join(
            "%.2f" % (statistics.median(r[k] for r in s) / statistics.median(r[k] for r in h)) for k in keys[:-1]) + " | |")
EOF
