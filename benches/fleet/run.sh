#!/usr/bin/env bash
# Fleet mode: propagation of a weights write through etcd to N proxies (N = 10, 50) and the
# per-proxy RSS / idle CPU of the etcd watch vs file mode. From the repository root:
#   benches/fleet/run.sh                  # ~6 min after the build
#   BUILD=0 FLEET_NS="10" benches/fleet/run.sh
# Knobs: BUILD (1), FLEET_NS ("10 50"), WRITES_10 (50), WRITES_50 (30), IDLE_WAIT (10 s),
# IDLE_MEASURE (30 s), WORKERS (1, proxy --workers), KEEP (0), ETCD (etcd on PATH), OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${BUILD:-1}" = 1 ]; then
    proxy/release-build.sh                      # the proxy as it ships (profile, layout)
    cargo build --release -p sluice-control
fi
command -v "${ETCD:-etcd}" >/dev/null || { echo "etcd not found (apt-get install etcd-server, or ETCD=/path)" >&2; exit 1; }
OUT=${OUT:-$(mktemp -d)/fleet.md}
python3 benches/fleet/propagation.py --proxy target/release/sluice-proxy \
    --etcd "$(command -v "${ETCD:-etcd}")" --out "$OUT"
echo "tables written to $OUT (raw samples: $OUT.json)" >&2
