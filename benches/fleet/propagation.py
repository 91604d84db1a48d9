#!/usr/bin/env python3
"""Fleet-mode benchmark: propagation of a weights write through etcd to N sluice proxies,
and the per-proxy cost (RSS, idle CPU) of the etcd watch compared with file mode.

For each N in FLEET_NS (default "10 50"):
  1. N proxies in file mode (weights file, no `store`): idle IDLE_WAIT s, then RSS (VmRSS)
     and CPU ticks (utime+stime) over IDLE_MEASURE s. Stopped.
  2. N proxies in etcd mode (`store.etcd`, one etcd member on loopback): the same idle
     measurement (also etcd's own CPU), then WRITES writes of the weights document
     (etcd JSON gateway, POST /v3/kv/put); for each write, the time from just before the
     write to the `reloaded` log line (what=weights, revision = the write's revision) of
     every proxy. Next write ~100 ms after every proxy applied the previous one.

Only the standard library. Everything it starts is stopped by PID; its temp dir is removed.
Usage: propagation.py [--proxy BIN] [--etcd BIN] [--out FILE.md]
Env: FLEET_NS="10 50", WRITES_10=50, WRITES_50=30 (WRITES_<N>, default 30), IDLE_WAIT=10,
IDLE_MEASURE=30, WORKERS=1 (proxy --workers), KEEP=0 (1 keeps the temp dir).
"""

import argparse
import base64
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PREFIX = "/sluice/bench"
KEY = PREFIX + "/weights"

CONFIG = """listeners:
  - name: http
    address: 127.0.0.1:0
admin:
  address: 127.0.0.1:0
upstreams:
  stable:
    version: v1
    endpoints: [127.0.0.1:9]
  canary:
    version: v2
    endpoints: [127.0.0.1:9]
routes:
  - name: default
    timeout: 5s
    backends:
      - { upstream: stable, weight: 100 }
      - { upstream: canary, weight: 0 }
weights_file: weights.yaml
"""
STORE = """store:
  etcd:
    endpoints: ["127.0.0.1:{port}"]
    prefix: {prefix}
    lease_ttl: 2s
"""


def weights_doc(canary):
    return f"routes:\n  default: {{ stable: {100 - canary}, canary: {canary} }}\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_ts(text):
    # RFC 3339, e.g. 2025-01-01T10:00:00.123456789Z; keep microseconds.
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    main, _, rest = text.partition(".")
    if rest:
        digits = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            digits += rest[i]
            i += 1
        text = main + "." + (digits + "000000")[:6] + rest[i:]
    return dt.datetime.fromisoformat(text).timestamp()


def pct(values, p):
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Proc:
    """A child process whose stderr goes to a file that is read incrementally."""

    def __init__(self, argv, cwd, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=self.log,
                                  start_new_session=True)
        self.reader = open(log_path, "rb")
        self.buf = b""

    @property
    def pid(self):
        return self.p.pid

    def lines(self):
        """New complete log lines since the last call."""
        chunk = self.reader.read()
        if not chunk:
            return []
        self.buf += chunk
        *done, self.buf = self.buf.split(b"\n")
        return done

    def stop(self):
        if self.p.poll() is None:
            try:
                os.kill(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=5)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.kill(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.log.close()
        self.reader.close()


class Proxy(Proc):
    def __init__(self, binary, directory, workers):
        super().__init__([binary, "--config", "sluice.yaml", "--log-format", "json",
                          "--workers", str(workers)], directory,
                         os.path.join(directory, "proxy.log"))
        self.admin = None
        self.applied = {}  # revision -> timestamp of its `reloaded` line

    def poll(self):
        for raw in self.lines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            msg = line.get("message")
            if msg == "admin listening":
                self.admin = line.get("address")
            elif msg == "reloaded" and line.get("what") == "weights" and "revision" in line:
                self.applied[int(line["revision"])] = parse_ts(line["timestamp"])


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime = field 14, stime = field 15
    return int(fields[11]) + int(fields[12])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_json(url, body=None, timeout=5):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data,
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def etcd_put(port, key, value):
    b64 = lambda s: base64.b64encode(s.encode()).decode()
    t0 = time.time()
    out = http_json(f"http://127.0.0.1:{port}/v3/kv/put", {"key": b64(key), "value": b64(value)})
    return t0, int(out["header"]["revision"]), (time.time() - t0) * 1000.0


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="sluice-fleet-")
        self.procs = []
        self.etcd = None
        self.etcd_port = None
        self.workers = int(os.environ.get("WORKERS", "1"))
        self.idle_wait = float(os.environ.get("IDLE_WAIT", "10"))
        self.idle_measure = float(os.environ.get("IDLE_MEASURE", "30"))

    # ---- processes -------------------------------------------------------------------
    def start_etcd(self):
        c, p = free_port(), free_port()
        d = os.path.join(self.tmp, "etcd")
        os.makedirs(d)
        self.etcd_port = c
        argv = [self.args.etcd, "--name", "m0", "--data-dir", os.path.join(d, "data"),
                "--listen-client-urls", f"http://127.0.0.1:{c}",
                "--advertise-client-urls", f"http://127.0.0.1:{c}",
                "--listen-peer-urls", f"http://127.0.0.1:{p}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
                "--initial-cluster", f"m0=http://127.0.0.1:{p}",
                "--log-level", "warn", "--logger", "zap"]
        self.etcd = Proc(argv, d, os.path.join(d, "etcd.log"))
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                http_json(f"http://127.0.0.1:{c}/health", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("etcd did not become healthy; see " + self.etcd.log_path)

    def start_proxies(self, n, mode):
        proxies = []
        for i in range(n):
            d = os.path.join(self.tmp, f"{mode}-{n}-{i}")
            os.makedirs(d)
            cfg = CONFIG
            if mode == "etcd":
                cfg += STORE.format(port=self.etcd_port, prefix=PREFIX)
            else:
                with open(os.path.join(d, "weights.yaml"), "w") as f:
                    f.write(weights_doc(0))
            with open(os.path.join(d, "sluice.yaml"), "w") as f:
                f.write(cfg)
            pr = Proxy(self.args.proxy, d, self.workers)
            self.procs.append(pr)
            proxies.append(pr)
        deadline = time.time() + 60
        while time.time() < deadline:
            for pr in proxies:
                pr.poll()
                if pr.p.poll() is not None:
                    raise SystemExit(f"proxy exited early; see {pr.log_path}")
            if all(pr.admin for pr in proxies):
                return proxies
            time.sleep(0.05)
        raise SystemExit("proxies did not log their admin address within 60 s")

    def stop_proxies(self, proxies):
        for pr in proxies:
            pr.stop()
            self.procs.remove(pr)
            shutil.rmtree(os.path.dirname(pr.log_path), ignore_errors=True)

    def cleanup(self):
        for pr in list(self.procs):
            pr.stop()
        if self.etcd:
            self.etcd.stop()
        if os.environ.get("KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            print(f"kept {self.tmp}", file=sys.stderr)

    # ---- measurements ----------------------------------------------------------------
    def idle(self, proxies, with_etcd):
        time.sleep(self.idle_wait)
        pids = [pr.pid for pr in proxies]
        t0 = time.monotonic()
        c0 = [proc_stat(p) for p in pids]
        e0 = proc_stat(self.etcd.pid) if with_etcd else 0
        time.sleep(self.idle_measure)
        c1 = [proc_stat(p) for p in pids]
        e1 = proc_stat(self.etcd.pid) if with_etcd else 0
        secs = time.monotonic() - t0
        rss = [rss_kib(p) for p in pids]
        per_min = lambda ticks: ticks * 1000.0 / CLK_TCK * 60.0 / secs  # ms CPU per minute
        cpu = [per_min(b - a) for a, b in zip(c0, c1)]
        return {
            "rss_mib": statistics.mean(rss) / 1024.0,
            "rss_max_mib": max(rss) / 1024.0,
            "cpu_ms_min": statistics.mean(cpu),
            "cpu_ms_min_max": max(cpu),
            "etcd_cpu_ms_min": per_min(e1 - e0) if with_etcd else None,
            "etcd_rss_mib": rss_kib(self.etcd.pid) / 1024.0 if with_etcd else None,
        }

    def propagation(self, proxies, writes):
        last, each, put = [], [], []
        for w in range(writes + 1):  # write 0 is a warm-up, not counted
            canary = 1 + (w % 49)
            t0, rev, put_ms = etcd_put(self.etcd_port, KEY, weights_doc(canary))
            deadline = time.time() + 30
            while True:
                for pr in proxies:
                    pr.poll()
                if all(rev in pr.applied for pr in proxies):
                    break
                if time.time() > deadline:
                    missing = sum(rev not in pr.applied for pr in proxies)
                    raise SystemExit(f"write {w} (revision {rev}): {missing} proxies never applied it")
                time.sleep(0.002)
            lat = [(pr.applied[rev] - t0) * 1000.0 for pr in proxies]
            if w > 0:
                last.append(max(lat))
                each.extend(lat)
                put.append(put_ms)
            time.sleep(0.1)
        # cross-check the applied revision through the admin API of a few proxies
        for pr in proxies[:3]:
            cfg = http_json(f"http://{pr.admin}/config")
            store_rev = cfg.get("store", {}).get("revision")
            if store_rev != rev:
                print(f"warning: {pr.admin}/config store.revision={store_rev}, expected {rev}",
                      file=sys.stderr)
        return last, each, put

    def run(self, ns):
        results = {}
        self.start_etcd()
        # The document exists before any etcd-mode proxy starts.
        etcd_put(self.etcd_port, KEY, weights_doc(0))
        for n in ns:
            writes = int(os.environ.get(f"WRITES_{n}", {10: "50", 50: "30"}.get(n, "30")))
            log(f"N={n}: {n} proxies in file mode, idle {self.idle_wait:.0f}+{self.idle_measure:.0f} s")
            ps = self.start_proxies(n, "file")
            file_idle = self.idle(ps, with_etcd=False)
            self.stop_proxies(ps)
            log(f"N={n}: {n} proxies in etcd mode, idle {self.idle_wait:.0f}+{self.idle_measure:.0f} s")
            etcd_before = proc_stat(self.etcd.pid)
            ps = self.start_proxies(n, "etcd")
            etcd_idle = self.idle(ps, with_etcd=True)
            log(f"N={n}: {writes} writes")
            last, each, put = self.propagation(ps, writes)
            self.stop_proxies(ps)
            del etcd_before
            results[n] = {"writes": writes, "last": last, "each": each, "put": put,
                          "file": file_idle, "etcd": etcd_idle}
            log(f"N={n}: last p50 {pct(last, 50):.1f} ms p99 {pct(last, 99):.1f} ms "
                f"max {max(last):.1f} ms")
        return results


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def report(results, workers):
    out = []
    out.append("| N proxies | writes | last proxy applied p50 / p99 / max (ms) "
               "| each proxy applied p50 / p99 / max (ms) | the put's own round trip p50 / p99 (ms) |")
    out.append("|---|---|---|---|---|")
    for n, r in results.items():
        last, each = r["last"], r["each"]
        out.append(f"| {n} | {r['writes']} | {pct(last, 50):.1f} / {pct(last, 99):.1f} / "
                   f"{max(last):.1f} | {pct(each, 50):.1f} / {pct(each, 99):.1f} / {max(each):.1f} "
                   f"| {pct(r['put'], 50):.1f} / {pct(r['put'], 99):.1f} |")
    out.append("| ConfigMap volume (kubelet) | - | up to ~120 000 (kubelet sync period 1 min + "
               "ConfigMap cache TTL 1 min, defaults) | - | - |")
    out.append("")
    out.append(f"Per proxy, idle (`--workers {workers}`), mean over the N proxies "
               "(max in brackets):")
    out.append("")
    out.append("| N | RSS file mode (MiB) | RSS etcd mode (MiB) | extra RSS (MiB) "
               "| idle CPU file mode (ms/min) | idle CPU etcd mode (ms/min) "
               "| extra CPU (ms/min) | etcd member CPU (ms/min, all N) | etcd member RSS (MiB) |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for n, r in results.items():
        f, e = r["file"], r["etcd"]
        out.append(
            f"| {n} | {f['rss_mib']:.2f} ({f['rss_max_mib']:.2f}) | {e['rss_mib']:.2f} "
            f"({e['rss_max_mib']:.2f}) | {e['rss_mib'] - f['rss_mib']:+.2f} "
            f"| {f['cpu_ms_min']:.0f} ({f['cpu_ms_min_max']:.0f}) | {e['cpu_ms_min']:.0f} "
            f"({e['cpu_ms_min_max']:.0f}) | {e['cpu_ms_min'] - f['cpu_ms_min']:+.0f} "
            f"| {e['etcd_cpu_ms_min']:.0f} | {e['etcd_rss_mib']:.1f} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--proxy", default="target/release/sluice-proxy")
    ap.add_argument("--etcd", default=shutil.which("etcd") or "/usr/bin/etcd")
    ap.add_argument("--out", help="also write the markdown tables (and raw JSON next to it)")
    args = ap.parse_args()
    args.proxy = os.path.abspath(args.proxy)
    args.etcd = os.path.abspath(args.etcd)
    ns = [int(x) for x in os.environ.get("FLEET_NS", "10 50").split()]
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = bench.run(ns)
    finally:
        bench.cleanup()
    md = report(results, bench.workers)
    print(md)
    if args.out:
        with open(args.out, "w") as f:
            f.write(md + "\n")
        with open(args.out + ".json", "w") as f:
            json.dump({str(k): v for k, v in results.items()}, f)


if __name__ == "__main__":
    main()
