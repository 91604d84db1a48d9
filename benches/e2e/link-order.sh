#!/usr/bin/env bash
# Writes proxy/link-order.txt: the functions sluice-proxy runs, hottest first, which the
# linker places together at the start of the binary's code (proxy/build.rs, release builds).
# Code the proxy runs is then a few contiguous megabytes instead of being spread over the
# whole 9 MiB: the kernel maps a file's pages around each one touched, so scattered code
# kept most of the binary resident (idle RSS 10.3 -> 7.0 MiB, benches/RESULTS.md row 15).
#
# Usage: benches/e2e/link-order.sh [BIN...]         regenerate from the BINs (release builds)
#        benches/e2e/link-order.sh --check [BIN...] how many listed functions each BIN has
#   BIN            default: target/release/sluice-proxy. With several, the list is the first's
#                  functions, then those of the next that it lacks, and so on: one list for
#                  the shipped build (proxy/release-build.sh, with the execution profile,
#                  which inlines differently) and a plain `cargo build --release -p sluice-proxy`
#   BENCH_DIR=DIR  a folder benches/e2e/run.sh has set up (its upstream nginx and sluice.yaml)
# Needs valgrind, nginx, wrk, h2load, curl, nm, readelf, python3.
#
# The names are mangled symbols. A non-generic function keeps its name when its code changes;
# the names of generic instances (most of hyper's, h2's and tokio's code) carry a hash that
# moves when the crate graph changes (a new dependency, a build script). A function the list
# does not name lands after the listed ones (the linker ignores names it does not find), so a
# stale list costs memory, not correctness. --check (needs only nm) says how much of the list
# a build still matches: regenerate when it is much less than the whole. Every name also
# carries a hash of the compiler's version: the list's first line names the rustc that built
# BIN (from its .comment section), and proxy/build.rs warns a build by another rustc.
#
# What is run, under callgrind from the first instruction: start-up (config, listeners,
# admin, file watch), HTTP/1.1 (wrk -c8), h2c (h2load), the admin endpoints and a weights
# reload. A function's place is its own instruction count, highest first.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LIST=$ROOT/proxy/link-order.txt
CHECK=0
[ "${1:-}" = --check ] && { CHECK=1; shift; }
BINS=("$@")
[ ${#BINS[@]} -gt 0 ] || BINS=("$ROOT/target/release/sluice-proxy")
ME=link-order.sh

# listed: how many functions the list names (its first line is a comment naming the rustc)
listed() { grep -c -v -e '^#' -e '^$' "$LIST"; }

if [ $CHECK = 1 ]; then
    total=$(listed)
    for BIN in "${BINS[@]}"; do
        found=$(nm --defined-only "$BIN" | awk 'NR == FNR { have[$3] = 1; next } ($1 in have) { k++ } END { print k + 0 }' - "$LIST")
        echo "$found of the $total functions of proxy/link-order.txt are in $BIN"
    done
    exit 0
fi

# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
needs valgrind nginx wrk h2load curl nm readelf python3
OUT=$(mktemp -d)
trap 'cleanup; rm -rf "$OUT"' EXIT
URL=http://127.0.0.1:$(sluice_port)/
ADMIN=http://$(sluice_admin)
start_upstreams "$OUT"
# run_profiled BIN DIR: the workload, under callgrind; its main process's profile is DIR/cg.*
run_profiled() {
    local bin=$1 dir=$2 vp
    mkdir -p "$dir"
    rm -f "$R/sluice/weights.yaml"
    valgrind --tool=callgrind --demangle=no --callgrind-out-file="$dir/cg.%p" \
        "$bin" --config "$R/sluice/sluice.yaml" --workers 1 --log-level warn >"$dir/valgrind.log" 2>&1 &
    vp=$!
    pids+=("$vp")
    wait_ready "$URL" 300
    wrk -t1 -c8 -d3s "$URL" >/dev/null
    h2load -n 3000 -c 8 -m 10 "$URL" >/dev/null
    admin_and_reload "$ADMIN"
    kill "$vp"
    wait "$vp" 2>/dev/null || true
}
profiles=()
for i in "${!BINS[@]}"; do
    run_profiled "${BINS[$i]}" "$OUT/$i"
    # the largest file is the main process's (valgrind may write others for helpers)
    profiles+=("$(largest "$OUT/$i" 'cg.*')" "$(basename "${BINS[$i]}")")
done
BIN=${BINS[0]}
# the rustc that built BIN, e.g. "rustc version 1.95.0 (59807616e 2026-04-14)"
built_by=$(readelf -p .comment "$BIN" | grep -o 'rustc version .*' | head -1 || true)
if [ -n "$built_by" ]; then echo "# $built_by" >"$LIST"; else : >"$LIST"; fi
python3 - "${profiles[@]}" >>"$LIST" <<'PY'
# Self cost per function of the binary itself (not libc), from callgrind's compressed format:
# "fn=(id) name" names a function once, "fn=(id)" refers back; a cost line follows "calls="
# for the call's inclusive cost, which is not the caller's own. Arguments: pairs of a profile
# and its binary's file name; each adds the functions the ones before did not name.
import re, sys

def functions(path, binary):
    names, objs, cost, fn_obj = {}, {}, {}, {}
    cur = cur_obj = None
    after_calls = False
    ref = re.compile(r"(ob|fn|cob|cfn|cfi|cfl)=\((\d+)\)(?: (.*))?")
    for line in open(path):
        m = ref.match(line)
        if m:
            kind, ident, name = m.groups()
            table = objs if kind in ("ob", "cob") else names if kind in ("fn", "cfn") else None
            if table is not None and name:
                table[ident] = name.strip()
            if kind == "ob":
                cur_obj = objs.get(ident)
            elif kind == "fn":
                cur, after_calls = ident, False
                fn_obj[cur] = cur_obj
        elif line.startswith("calls="):
            after_calls = True
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_calls:
                after_calls = False
                continue
            parts = line.split()
            if cur is not None and len(parts) >= 2:
                cost[cur] = cost.get(cur, 0) + int(parts[1])
    ours = [(c, names[k]) for k, c in cost.items()
            if c > 0 and (fn_obj.get(k) or "").endswith("/" + binary)]
    return [name for _, name in sorted(ours, key=lambda x: (-x[0], x[1]))]

seen = set()
args = sys.argv[1:]
for path, binary in zip(args[::2], args[1::2]):
    for name in functions(path, binary):
        if name not in seen:
            seen.add(name)
            print(name)
PY
echo "$ME: $(listed) functions written to $LIST"
"$0" --check "${BINS[@]}"
