#!/usr/bin/env bash
# Writes proxy/pgo/sluice-proxy.profdata: the execution profile proxy/release-build.sh optimises
# sluice-proxy with (profile-guided optimisation: the compiler inlines, lays out branches and
# places code by how often each path ran; benches/RESULTS.md row 17).
#
# Usage: benches/e2e/pgo.sh
#   BENCH_DIR=DIR       a folder benches/e2e/run.sh has set up (its upstream nginx and sluice.yaml)
#   LLVM_PROFDATA=PATH  the llvm-profdata to merge with (default: rustup's llvm-tools component,
#                       else llvm-profdata-NN or llvm-profdata on PATH; Debian's llvm-19 read
#                       rustc 1.95's raw profiles: it has the same raw format version)
# Needs cargo, nginx, wrk, h2load, curl.
#
# It builds an instrumented proxy (-Cprofile-generate, into target/pgo-gen so that the normal
# build is left alone), runs it on the benchmark's setup and writes what it counted:
#   - HTTP/1.1 GETs at 64 and 8 connections (wrk), and POSTs with a 4 KiB body;
#   - h2c (h2load -c 32 -m 10), GETs and POSTs with a body;
#   - the admin endpoints and a weights reload.
# The profile is sparse: functions that did not run (TLS, gRPC, fleet mode, faults, ...) are
# left out of it, so the compiler optimises them as it would without a profile, not as cold.
# A function whose code changed since the profile was taken loses its profile and is
# optimised as without one: regenerate after changes to the request path. Then rebuild with
# proxy/release-build.sh and regenerate proxy/link-order.txt from that build and a plain one
# (benches/e2e/link-order.sh with both binaries, benches/README.md), since the profile changes
# what is inlined.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ME=pgo.sh
# shellcheck source=SCRIPTDIR/common.sh
. "$(dirname "$0")/common.sh"
needs cargo nginx wrk h2load curl
PROFILE=$ROOT/proxy/pgo/sluice-proxy.profdata
GEN=$ROOT/target/pgo-gen

# llvm-profdata: from rustup's llvm-tools, else the newest versioned one on PATH, else plain.
profdata() {
    if [ -n "${LLVM_PROFDATA:-}" ]; then echo "$LLVM_PROFDATA"; return; fi
    local host tool v
    host=$(rustc -vV | awk '/^host:/{print $2}')
    tool=$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata
    if [ -x "$tool" ]; then echo "$tool"; return; fi
    for v in $(seq 40 -1 19); do
        command -v "llvm-profdata-$v" && return
    done
    command -v llvm-profdata || true
}
MERGE=$(profdata)
[ -n "$MERGE" ] || {
    echo "$ME: llvm-profdata not found: rustup component add llvm-tools, or apt install" \
        "llvm-19 (or newer), or set LLVM_PROFDATA" >&2
    exit 1
}

echo "$ME: building the instrumented proxy into $GEN"
CARGO_ENCODED_RUSTFLAGS="-Cprofile-generate=$GEN/profiles" \
    cargo build --release --locked -p sluice-proxy --target-dir "$GEN" --manifest-path "$ROOT/Cargo.toml"
BIN=$GEN/release/sluice-proxy

OUT=$(mktemp -d)
trap 'cleanup; rm -rf "$OUT"' EXIT
URL=http://127.0.0.1:$(sluice_port)/
ADMIN=http://$(sluice_admin)
start_upstreams "$OUT"
rm -f "$R/sluice/weights.yaml"
LLVM_PROFILE_FILE="$OUT/sluice-%p.profraw" \
    "$BIN" --config "$R/sluice/sluice.yaml" --workers 1 --log-level warn >"$OUT/sluice.log" 2>&1 &
sp=$!
pids+=("$sp")
wait_ready "$URL"

# one 4 KiB body for both load generators' POSTs
head -c 4096 /dev/zero | tr '\0' x >"$OUT/body"
cat >"$OUT/post.lua" <<EOF
wrk.method = "POST"
wrk.body = io.open("$OUT/body", "rb"):read("*a")
wrk.headers["Content-Type"] = "application/octet-stream"
EOF
echo "$ME: training (about 15 s)"
wrk -t1 -c64 -d4s "$URL" >/dev/null
wrk -t1 -c8 -d3s "$URL" >/dev/null
wrk -t1 -c8 -d2s -s "$OUT/post.lua" "$URL" >/dev/null
h2load -n 100000 -c 32 -m 10 "$URL" >/dev/null
h2load -n 10000 -c 8 -m 10 -d "$OUT/body" "$URL" >/dev/null
admin_and_reload "$ADMIN"
kill "$sp"
wait "$sp" 2>/dev/null || true   # the profile is written as the process exits
ls "$OUT"/sluice-*.profraw >/dev/null 2>&1 || { echo "$ME: the proxy wrote no profile" >&2; exit 1; }

mkdir -p "$(dirname "$PROFILE")"
"$MERGE" merge --sparse -o "$PROFILE" "$OUT"/sluice-*.profraw
echo "$ME: wrote $PROFILE ($("$MERGE" show "$PROFILE" | awk '/^Total functions:/{print $3}') functions, with $MERGE)"
echo "$ME: next: proxy/release-build.sh, then proxy/link-order.txt (benches/README.md, Code layout)"
