#!/usr/bin/env python3
"""Summarise one results/<timestamp>/ folder written by benches/e2e/run.sh.

Usage: analyze.py RESULTS_DIR   -> markdown on stdout and in RESULTS_DIR/summary.md

Per proxy: medians (min-max) over every run of both round sets of wrk c64 / c8 (rps, p50,
p99) and h2load (h2c rps), RSS idle / after load / after the second load; a ratio table
sluice / peer; the targets with PASS/MISS computed from the numbers of this run; and the
reload-under-load comparison; CPU per request of the proxy process (user + system clock
ticks from /proc/PID/stat around each run, divided by the run's requests), and of the two
upstream nginx behind it, which share its core; paired ratios: sluice / peer per pair of runs
of the same round set and rep (minutes apart, so both met about the same host), median and
range, beside the ratio of medians the targets use.
"""
import glob
import os
import re
import statistics
import sys

UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
ORDER = ["sluice", "nginx", "haproxy", "envoy", "nginx_work", "haproxy_work", "direct"]
# the "same work" variants of a peer's config (x-forwarded-for, a generated x-request-id, a
# header-match rule ahead of the split): versions as the plain peer's
SAME_WORK = {"nginx_work": "nginx", "haproxy_work": "haproxy"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
NAN = float("nan")


def ms(tok):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", tok)
    return float(m.group(1)) * UNIT[m.group(2)] if m else NAN


def parse_wrk(path):
    txt = open(path).read()
    r = {"file": os.path.basename(path)}
    m = re.search(r"Requests/sec:\s+([0-9.]+)", txt)
    r["rps"] = float(m.group(1)) if m else NAN
    for pct in ("50", "75", "90", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, txt, re.M)
        r["p" + pct] = ms(m.group(1)) if m else NAN
    m = re.search(r"(\d+) requests in", txt)
    r["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", txt)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", txt)
    r["sockerr"] = sum(int(x) for x in m.groups()) if m else 0
    r["valid"] = r["rps"] == r["rps"]
    return r


def parse_h2load(path):
    txt = open(path).read()
    r = {"file": os.path.basename(path)}
    m = re.search(r"finished in ([0-9.]+)s, ([0-9.]+) req/s", txt)
    r["rps"] = float(m.group(2)) if m else NAN
    m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", txt)
    r["total"], r["ok"], r["failed"], r["errored"] = (
        (int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4))) if m else (0, 0, 0, 0))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", txt)
    r["2xx"] = int(m.group(1)) if m else 0
    r["non2xx"] = sum(int(m.group(i)) for i in (2, 3, 4)) if m else 0
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", txt)
    r["mean_ms"] = ms(m.group(3)) if m else NAN
    return r


def med(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else NAN


def f_ms(x):
    if x != x:
        return "-"
    return "%.3f" % x if x < 1 else "%.2f" % x


def f_rps(x):
    return "-" if x != x else "%.0f" % x


def f_ratio(x):
    return "-" if x != x else "%.2f" % x


def f_mib(kb):
    return "-" if kb is None else "%.1f" % (kb / 1024.0)


def mm(xs, fmt):
    """'median (min-max)', or just the value for one run."""
    xs = [x for x in xs if x == x]
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt(xs[0])
    return "%s (%s-%s)" % (fmt(med(xs)), fmt(min(xs)), fmt(max(xs)))


def split_tol(n):
    """Tolerance in percentage points for the canary share of n requests: 4.5 standard
    deviations of a binomial with p = 0.1 (3 points for n = 2000)."""
    return 4.5 * 100.0 * (0.09 / max(1, n)) ** 0.5


def split_ok(share, n):
    return n > 0 and abs(share - 10.0) <= split_tol(n)


def read_lines(d, name):
    p = os.path.join(d, name)
    return open(p).read().splitlines() if os.path.exists(p) else []


def main(d):
    out = []
    w = out.append

    versions = {}
    for line in read_lines(d, "versions.txt"):
        k, _, v = line.partition(":")
        versions.setdefault(k.strip(), v.strip())
    vshort = {}
    for k, v in versions.items():
        m = re.search(r"(\d+\.\d+\.\d+)", v)
        vshort[k] = m.group(1) if m else v
    vshort["direct"] = "no proxy (backend)"
    for t, plain in SAME_WORK.items():
        vshort[t] = "%s, same work" % vshort.get(plain, "?")
    if "sluice" in versions:
        m = re.search(r"\(git ([^)]*)\)", versions["sluice"])
        vshort["sluice"] = "%s %s" % (vshort.get("sluice", "?"), m.group(1) if m else "")

    meta = {}
    for ln in read_lines(d, "meta.tsv")[1:]:
        f = ln.split("\t")
        if len(f) < 10:
            continue
        meta[(f[0], f[1], f[2], f[3])] = dict(load=float(f[4]), srv=float(f[5]), steal=float(f[6]),
                                              sreq=int(f[7]), creq=int(f[8]), nconn=int(f[9]))
        if len(f) >= 12:
            meta[(f[0], f[1], f[2], f[3])].update(utime=int(f[10]), stime=int(f[11]))
        if len(f) >= 13:
            meta[(f[0], f[1], f[2], f[3])].update(uptime=int(f[12]))

    runs = {}   # (kind, target) -> [run]
    for p in glob.glob(os.path.join(d, "wrk-c*-*-s*r*.txt")):
        m = re.search(r"wrk-c(\d+)-(\w+)-s(\d+)r(\d+)\.txt$", p)
        if not m:
            continue
        kind, t, s, rep = "c" + m.group(1), m.group(2), m.group(3), m.group(4)
        r = parse_wrk(p)
        r["set"], r["rep"] = int(s), int(rep)
        r.update(meta.get((kind, t, s, rep), {}))
        runs.setdefault((kind, t), []).append(r)
    for p in glob.glob(os.path.join(d, "h2load-*-s*r*.txt")):
        m = re.search(r"h2load-(\w+)-s(\d+)r(\d+)\.txt$", p)
        if not m:
            continue
        t, s, rep = m.group(1), m.group(2), m.group(3)
        r = parse_h2load(p)
        r["set"], r["rep"] = int(s), int(rep)
        r.update(meta.get(("h2", t, s, rep), {}))
        runs.setdefault(("h2", t), []).append(r)
    for (kind, _), rs in runs.items():
        rs.sort(key=lambda r: (r["set"], r["rep"]))
        for r in rs:
            n = r["ok"] if kind == "h2" else r["requests"]
            if "utime" in r and n > 0:
                r["cpu_user_us"] = r["utime"] * 1e6 / CLK_TCK / n
                r["cpu_sys_us"] = r["stime"] * 1e6 / CLK_TCK / n
                r["cpu_us"] = r["cpu_user_us"] + r["cpu_sys_us"]
            if "uptime" in r and n > 0:
                r["up_us"] = r["uptime"] * 1e6 / CLK_TCK / n
                if "cpu_us" in r:
                    r["core_us"] = r["cpu_us"] + r["up_us"]

    targets = [t.strip() for t in read_lines(d, "targets.txt") if t.strip()]
    targets = [t for t in ORDER if t in targets] + [t for t in targets if t not in ORDER]
    peers = [t for t in targets if t not in ("sluice", "direct")]

    split = {}
    for ln in read_lines(d, "split.txt")[1:]:
        f = ln.split()
        if len(f) == 4:
            split[f[0]] = tuple(int(x) for x in f[1:])

    rss = {}   # (proxy, phase) -> (rss_kb, hwm_kb)
    for ln in read_lines(d, "rss.txt")[1:]:
        f = ln.split()
        if len(f) >= 4 and f[3].isdigit():
            rss[(f[0], f[2])] = (int(f[3]), int(f[4]) if len(f) > 4 and f[4].isdigit() else None)

    def rss_of(t, phase):
        v = rss.get((t, phase))
        return v[0] if v else None

    def stat(kind, t, key):
        return med([r[key] for r in runs.get((kind, t), [])])

    def paired(kind, key, peer):
        """sluice / peer for each (set, rep) both ran: the two runs were minutes apart."""
        theirs = {(r["set"], r["rep"]): r.get(key, NAN) for r in runs.get((kind, peer), [])}
        out = []
        for r in runs.get((kind, "sluice"), []):
            b = theirs.get((r["set"], r["rep"]), NAN)
            a = r.get(key, NAN)
            if a == a and b == b and b:
                out.append(a / b)
        return out

    def errs(kind, t):
        rs = runs.get((kind, t), [])
        if kind == "h2":
            return sum(r["failed"] + r["errored"] + r["non2xx"] + (0 if r["rps"] == r["rps"] else 1) for r in rs)
        return sum(r["non2xx"] + r["sockerr"] + (0 if r["valid"] else 1) for r in rs)

    nruns = max([len(v) for k, v in runs.items() if k[0] == "c64"] or [0])
    sets = sorted({r["set"] for v in runs.values() for r in v})

    w("# sluice end-to-end comparison: results/%s\n" % os.path.basename(os.path.normpath(d)))
    w("```")
    for name in ("machine.txt", "versions.txt"):
        for ln in read_lines(d, name):
            w(ln)
    w("```\n")
    notes = [ln for ln in read_lines(d, "notes.txt") if ln.strip()]
    if notes:
        w("Notes:\n")
        for ln in notes:
            w("- " + ln)
        w("")

    # ------------------------------------------------------------ split check
    if split:
        n = sum(next(iter(split.values())))
        w("## Split check (%d sequential requests on one keep-alive connection)\n" % n)
        w("| proxy | stable | canary | other | canary share | ~90/10 (canary %.1f-%.1f%%) |" % (max(0.0, 10 - split_tol(n)), 10 + split_tol(n)))
        w("|---|---|---|---|---|---|")
        for t in targets:
            if t not in split:
                continue
            s, c, o = split[t]
            share = 100.0 * c / max(1, s + c + o)
            okk = o == 0 and split_ok(share, s + c + o)
            w("| %s | %d | %d | %d | %.1f%% | %s |" % (t, s, c, o, share, "yes" if okk else "NO"))
        w("")

    # ------------------------------------------------------------ main table
    w("## Per proxy: median (min-max) over %d run(s) per cell (%d round set(s) x REPS), latency in ms\n"
      % (nruns, len(sets)))
    hdr = ["proxy", "version", "rps c64", "p50 c64", "p99 c64", "rps c8", "p50 c8", "p99 c8",
           "h2c rps", "RSS MiB idle / after load / after 2nd load (10 s later: set 1 / set 2)", "errors"]
    w("| " + " | ".join(hdr) + " |")
    w("|" + "---|" * len(hdr))
    for t in targets:
        row = [t, vshort.get(t, "?")]
        for kind in ("c64", "c8"):
            rs = runs.get((kind, t), [])
            row += [mm([r["rps"] for r in rs], f_rps), mm([r["p50"] for r in rs], f_ms),
                    mm([r["p99"] for r in rs], f_ms)]
        rs = runs.get(("h2", t), [])
        row.append(mm([r["rps"] for r in rs], f_rps) if rs else "-")
        row.append(" / ".join(f_mib(rss_of(t, ph)) for ph in ("idle", "after1", "after2"))
                   + " (%s / %s)" % (f_mib(rss_of(t, "settled1")), f_mib(rss_of(t, "settled2"))))
        row.append(str(errs("c64", t) + errs("c8", t) + errs("h2", t)))
        w("| " + " | ".join(row) + " |")
    w("")
    w("errors = wrk non-2xx + socket errors, h2load failed + errored + non-2xx, over all runs. "
      "RSS = VmRSS of the proxy process (nginx: its single worker), after set 1 and after set 2.\n")

    # ------------------------------------------------------------ ratio table
    RATIOS = [
        ("rps c64", "c64", "rps", "higher"), ("p50 c64", "c64", "p50", "lower"), ("p99 c64", "c64", "p99", "lower"),
        ("rps c8", "c8", "rps", "higher"), ("p50 c8", "c8", "p50", "lower"), ("p99 c8", "c8", "p99", "lower"),
        ("h2c rps", "h2", "rps", "higher"),
    ]
    if "sluice" in targets and peers:
        w("## RATIO TABLE: sluice / peer (medians)\n")
        w("| metric | better | " + " | ".join("sluice / %s" % p for p in peers) + " |")
        w("|---|---|" + "---|" * len(peers))
        for label, kind, key, better in RATIOS:
            cells = []
            for p in peers:
                a, b = stat(kind, "sluice", key), stat(kind, p, key)
                cells.append(f_ratio(a / b) if b and b == b and a == a else "-")
            w("| %s | %s | %s |" % (label, better, " | ".join(cells)))
        for label, phase in (("RSS idle", "idle"), ("RSS after load", "after1"), ("RSS after 2nd load", "after2"),
                             ("RSS 10 s after load", "settled1"), ("RSS 10 s after 2nd load", "settled2")):
            cells = []
            for p in peers:
                a, b = rss_of("sluice", phase), rss_of(p, phase)
                cells.append(f_ratio(a / b) if a and b else "-")
            w("| %s | lower | %s |" % (label, " | ".join(cells)))
        w("")
        paired_rows = [(label, better, [paired(kind, key, p) for p in peers]) for label, kind, key, better
                       in RATIOS + [("CPU per request c64", "c64", "cpu_us", "lower")]]
        if any(len(pairs) > 1 for _, _, cells in paired_rows for pairs in cells):
            w("Paired: sluice / peer for each pair of runs of the same round set and rep (each pair "
              "ran minutes apart, so both met about the same host), median (min-max). The ratio of "
              "medians above compares runs that may have met different hours; this compares "
              "neighbours.\n")
            w("| metric | better | " + " | ".join("sluice / %s" % p for p in peers) + " |")
            w("|---|---|" + "---|" * len(peers))
            for label, better, cells in paired_rows:
                w("| %s | %s | %s |" % (label, better, " | ".join(mm(pairs, f_ratio) for pairs in cells)))
            w("")
    elif "sluice" in targets:
        w("## RATIO TABLE\n\nno peer ran: nothing to compare against (sluice alone).\n")

    # ------------------------------------------------------------ CPU per request
    def f_us(x):
        return "-" if x != x else "%.2f" % x

    if any("cpu_us" in r for v in runs.values() for r in v):
        w("## CPU per request of the proxy process (us; median over runs)\n")
        w("user + system clock ticks of the proxy process (nginx: its worker) from /proc/PID/stat "
          "around each run (tick = %d ms), divided by the requests of the run; the proxy shares "
          "the server core with the two upstream nginx, whose CPU is not counted here (the next table, "
          "when the run recorded it).\n" % (1000 // CLK_TCK))
        w("| proxy | c64 total | c64 user | c64 system | c8 total | c8 user | c8 system | h2c total | h2c user | h2c system |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for t in targets:
            row = [t]
            for kind in ("c64", "c8", "h2"):
                row += [f_us(stat(kind, t, k)) if runs.get((kind, t)) else "-" for k in ("cpu_us", "cpu_user_us", "cpu_sys_us")]
            w("| %s |" % " | ".join(row))
        w("")
        if any("core_us" in r for v in runs.values() for r in v):
            w("The server core per request: the proxy (as above) and the two upstream nginx behind it "
              "(their workers' ticks over the same run). sluice sends three fields more upstream "
              "than the plain peers (`x-forwarded-for`, `x-forwarded-proto`, `x-request-id`, 105 "
              "bytes), as the same-work peers do; parsing them is upstream work on the same core.\n")
            w("| proxy | c64 proxy | c64 upstreams | c64 both | c8 proxy | c8 upstreams | c8 both | h2c proxy | h2c upstreams | h2c both |")
            w("|---|---|---|---|---|---|---|---|---|---|")
            for t in targets:
                if t == "direct":
                    continue
                row = [t]
                for kind in ("c64", "c8", "h2"):
                    row += [f_us(stat(kind, t, k)) if runs.get((kind, t)) else "-" for k in ("cpu_us", "up_us", "core_us")]
                w("| %s |" % " | ".join(row))
            w("")
        if "sluice" in targets and peers:
            w("| sluice / peer (CPU per request) | " + " | ".join(peers) + " |")
            w("|---|" + "---|" * len(peers))
            for label, kind, key in (("c64 total", "c64", "cpu_us"), ("c64 user", "c64", "cpu_user_us"),
                                     ("c8 total", "c8", "cpu_us"), ("c8 user", "c8", "cpu_user_us"),
                                     ("h2c total", "h2", "cpu_us"), ("h2c user", "h2", "cpu_user_us"),
                                     ("c64 proxy + upstreams", "c64", "core_us"),
                                     ("h2c proxy + upstreams", "h2", "core_us")):
                if not runs.get((kind, "sluice")) or key not in runs[(kind, "sluice")][0]:
                    continue
                cells = []
                for p in peers:
                    a, b = stat(kind, "sluice", key), stat(kind, p, key)
                    cells.append(f_ratio(a / b) if b and b == b and a == a else "-")
                w("| %s | %s |" % (label, " | ".join(cells)))
            w("")

    # ------------------------------------------------------------ targets
    checks = []   # (target, measured, verdict)

    def vs_peer(label, kind, key, peer, factor, ge):
        a, b = stat(kind, "sluice", key), stat(kind, peer, key)
        if peer not in targets or b != b or b == 0:
            checks.append((label, "%s not run (or no data)" % peer, "n/a"))
            return
        if a != a:
            checks.append((label, "sluice: no data", "MISS"))
            return
        fmt = f_rps if key == "rps" else (lambda x: f_us(x) + " us") if key.startswith("cpu") else (lambda x: f_ms(x) + " ms")
        ok = a >= factor * b if ge else a <= factor * b
        pairs = paired(kind, key, peer)
        checks.append((label, "sluice %s vs %s x %s %s = %s (ratio %.2f%s)" % (
            fmt(a), factor, peer, fmt(b), fmt(factor * b), a / b,
            "; paired runs %s" % mm(pairs, f_ratio) if len(pairs) > 1 else ""), "PASS" if ok else "MISS"))

    if "sluice" in targets:
        # the targets hold against the plain peers (not the same-work variants)
        vs_peer("HTTP/1.1 c64: rps >= 1.0 x HAProxy", "c64", "rps", "haproxy", 1.0, True)
        vs_peer("HTTP/1.1 c64: rps >= 1.0 x nginx", "c64", "rps", "nginx", 1.0, True)
        vs_peer("HTTP/1.1 c64: p99 <= 1.0 x HAProxy", "c64", "p99", "haproxy", 1.0, False)
        vs_peer("HTTP/1.1 c8: p50 <= 1.0 x nginx", "c8", "p50", "nginx", 1.0, False)
        vs_peer("HTTP/1.1 c8: p99 <= 1.0 x nginx", "c8", "p99", "nginx", 1.0, False)
        if runs.get(("h2", "sluice")):
            vs_peer("h2c c32 m10: rps >= 1.0 x HAProxy", "h2", "rps", "haproxy", 1.0, True)
        else:
            checks.append(("h2c c32 m10: rps >= 1.0 x HAProxy", "h2c not run", "n/a"))
        if runs.get(("c64", "sluice")) and "cpu_us" in runs[("c64", "sluice")][0]:
            vs_peer("CPU per request (c64, user + system) <= 1.0 x HAProxy", "c64", "cpu_us", "haproxy", 1.0, False)
            vs_peer("(stretch) user CPU per request (c64) <= 0.8 x HAProxy", "c64", "cpu_user_us", "haproxy", 0.8, False)
        idle, a1, a2 = rss_of("sluice", "idle"), rss_of("sluice", "after1"), rss_of("sluice", "after2")
        if idle:
            checks.append(("RSS idle <= 10 MiB", "%.1f MiB" % (idle / 1024.0),
                           "PASS" if idle <= 10 * 1024 else "MISS"))
        if idle and a1:
            checks.append(("RSS after load <= 2 x idle", "%.1f MiB vs 2 x %.1f = %.1f MiB" % (
                a1 / 1024.0, idle / 1024.0, 2 * idle / 1024.0), "PASS" if a1 <= 2 * idle else "MISS"))
        if a1 and a2:
            checks.append(("no growth: after 2nd load <= 1.1 x after 1st", "%.1f MiB vs 1.1 x %.1f = %.1f MiB" % (
                a2 / 1024.0, a1 / 1024.0, 1.1 * a1 / 1024.0), "PASS" if a2 <= 1.1 * a1 else "MISS"))
        s1, s2 = rss_of("sluice", "settled1"), rss_of("sluice", "settled2")
        if idle and s1:
            checks.append(("RSS 10 s after load <= 2 x idle", "%.1f MiB vs 2 x %.1f = %.1f MiB" % (
                s1 / 1024.0, idle / 1024.0, 2 * idle / 1024.0), "PASS" if s1 <= 2 * idle else "MISS"))
        if s1 and s2:
            checks.append(("no growth, settled: 10 s after 2nd load <= 1.1 x 10 s after 1st", "%.1f MiB vs 1.1 x %.1f = %.1f MiB" % (
                s2 / 1024.0, s1 / 1024.0, 1.1 * s1 / 1024.0), "PASS" if s2 <= 1.1 * s1 else "MISS"))
        e = errs("c64", "sluice") + errs("c8", "sluice") + errs("h2", "sluice")
        checks.append(("(extra) sluice: no errors in any wrk/h2load run", "%d" % e, "PASS" if e == 0 else "MISS"))
        if "sluice" in split:
            s, c, o = split["sluice"]
            share = 100.0 * c / max(1, s + c + o)
            n = s + c + o
            checks.append(("(extra) split check ~90/10 (canary %.1f-%.1f%%, no other)" % (max(0.0, 10 - split_tol(n)), 10 + split_tol(n)),
                           "%.1f%% canary, %d other" % (share, o), "PASS" if o == 0 and split_ok(share, n) else "MISS"))

    # ------------------------------------------------------------ reload under load
    base = [parse_wrk(p) for p in sorted(glob.glob(os.path.join(d, "wrk-reload-base-r*.txt")))]
    on = [parse_wrk(p) for p in sorted(glob.glob(os.path.join(d, "wrk-reload-on-r*.txt")))]
    reload_rows = [ln.split() for ln in read_lines(d, "reload.txt")[1:] if len(ln.split()) == 4]
    if base and on:
        rb, ro = med([r["rps"] for r in base]), med([r["rps"] for r in on])
        eb = sum(r["non2xx"] + r["sockerr"] for r in base)
        eo = sum(r["non2xx"] + r["sockerr"] for r in on)
        writes = sum(int(x[1]) for x in reload_rows)
        rok = sum(int(x[2]) for x in reload_rows)
        rerr = sum(int(x[3]) for x in reload_rows)
        share_on = []
        for r in range(1, len(on) + 1):
            m = meta.get(("reload-on", "sluice", "1", str(r)))
            if m and m["sreq"] + m["creq"] > 0:
                share_on.append(100.0 * m["creq"] / (m["sreq"] + m["creq"]))
        ratio = ro / rb if rb else NAN
        w("## Reload under load (sluice, wrk -t1 -c64, weights file rewritten every 100 ms, 90/10 <-> 80/20)\n")
        w("| run | rps median (min-max) | p50 ms | p99 ms | non-2xx | socket errors |")
        w("|---|---|---|---|---|---|")
        for label, rs in (("no rewrites", base), ("rewrites every 100 ms", on)):
            w("| %s | %s | %s | %s | %d | %d |" % (
                label, mm([r["rps"] for r in rs], f_rps), f_ms(med([r["p50"] for r in rs])),
                f_ms(med([r["p99"] for r in rs])), sum(r["non2xx"] for r in rs), sum(r["sockerr"] for r in rs)))
        w("")
        w("weights file writes: %d; sluice reloads ok: %d, failed: %d (sluice_config_reloads_total deltas; "
          "bursts are debounced, so reloads <= writes); canary share under rewrites: %s (expected ~15%%)\n" % (
              writes, rok, rerr, ", ".join("%.1f%%" % x for x in share_on) or "-"))
        checks.append(("reload under load: wrk non-2xx + socket errors = 0", "%d (base runs: %d)" % (eo, eb),
                       "PASS" if eo == 0 else "MISS"))
        checks.append(("reload under load: rps within 5% of no-reload run", "%s vs %s rps (ratio %s)" % (
            f_rps(ro), f_rps(rb), f_ratio(ratio)), "PASS" if ratio == ratio and ratio >= 0.95 else "MISS"))
        checks.append(("(extra) reloads applied and none failed", "%d ok, %d failed" % (rok, rerr),
                       "PASS" if rok > 0 and rerr == 0 else "MISS"))

    if checks:
        w("## Targets (computed from this run's medians)\n")
        w("| target | measured | result |")
        w("|---|---|---|")
        for label, measured, verdict in checks:
            w("| %s | %s | **%s** |" % (label, measured, verdict))
        npass = sum(1 for c in checks if c[2] == "PASS")
        nmiss = sum(1 for c in checks if c[2] == "MISS")
        w("")
        w("%d PASS, %d MISS, %d n/a\n" % (npass, nmiss, len(checks) - npass - nmiss))

    # ------------------------------------------------------------ detail
    w("## Detail per run\n")
    w("| kind | target | rps per run (set.rep) | load core busy % | server core busy % | steal % | canary share under load |")
    w("|---|---|---|---|---|---|---|")
    for kind in ("c64", "c8", "h2"):
        for t in targets:
            rs = runs.get((kind, t), [])
            if not rs:
                continue
            sreq = sum(r.get("sreq", 0) for r in rs)
            creq = sum(r.get("creq", 0) for r in rs)
            w("| %s | %s | %s | %s | %s | %s | %s |" % (
                kind, t, ", ".join("%d.%d: %s" % (r["set"], r["rep"], f_rps(r["rps"])) for r in rs),
                "%.0f" % med([r["load"] for r in rs if "load" in r]) if "load" in rs[0] else "-",
                "%.0f" % med([r["srv"] for r in rs if "srv" in r]) if "srv" in rs[0] else "-",
                "%.1f" % med([r["steal"] for r in rs if "steal" in r]) if "steal" in rs[0] else "-",
                "%.2f%%" % (100.0 * creq / (sreq + creq)) if t != "direct" and sreq + creq > 0 else "-"))
    w("")
    w("RSS (kB, VmRSS / VmHWM):\n")
    w("| process | idle | after set 1 | 10 s later | after set 2 | 10 s later |")
    w("|---|---|---|---|---|---|")
    for t in targets + (["nginx-master"] if ("nginx-master", "idle") in rss else []):
        cells = []
        for ph in ("idle", "after1", "settled1", "after2", "settled2"):
            v = rss.get((t, ph))
            cells.append("-" if not v else "%d / %s" % (v[0], v[1] if v[1] is not None else "-"))
        w("| %s | %s |" % (t, " | ".join(cells)))
    w("")

    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit("usage: analyze.py RESULTS_DIR")
    main(sys.argv[1])
