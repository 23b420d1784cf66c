#!/usr/bin/env python3
"""Renders bench/tunnel/run.sh's results.jsonl as Markdown tables (see README.md).

    table.py rec RESULTS PATH TEST GEN_JSON SAMPLE0 SAMPLE1 [TUNNEL_PIDS...]
        appends one result: the generator's JSON (loadgen, or wrk's parsed output) plus
        CPU per request of the tunnel's processes and the machine's load during the run
    table.py sample [PIDS...]   prints /proc/stat totals, bench and tunnel ticks as JSON
    table.py wrk FILE TIMEFILE  parses wrk --latency output (+ bash `time` of wrk) as JSON
    table.py render RESULTS     prints the tables
    table.py perf DATA [PID=NAME...]  a perf.data file's shares by process, crate and symbol
"""
import json
import os
import re
import subprocess
import sys

HZ = os.sysconf("SC_CLK_TCK")
PATHS = ["direct", "direct-tls", "impersonated", "causeway", "causeway-tls", "remotedialer-hub", "remotedialer-hub-h2", "frp", "rathole"]


def ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        f = s[s.rindex(")") + 2:].split()
        return int(f[11]) + int(f[12])
    except (OSError, ValueError, IndexError):
        return None


def sample(out_dir, tunnel_pids):
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:9]]
    bench = {}
    r = subprocess.run(["pgrep", "-f", "--", out_dir], capture_output=True, text=True)
    mine = set(r.stdout.split()) - {str(os.getpid())}
    # and their children (nginx's workers retitle themselves, so their command line no
    # longer names the output directory)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                if s[s.rindex(")") + 2:].split()[1] in mine:
                    mine.add(d)
            except (OSError, ValueError, IndexError):
                pass
    for p in mine:
        t = ticks(p)
        if t is not None:
            bench[p] = t
    tun = {p: ticks(p) for p in tunnel_pids}
    with open("/proc/loadavg") as f:
        load1 = float(f.read().split()[0])
    return {"total": sum(cpu), "idle": cpu[3] + cpu[4], "bench": bench, "tun": tun, "load1": load1}


def us(v):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", v)
    if not m:
        return None
    return float(m[1]) * {"us": 1, "ms": 1e3, "s": 1e6}[m[2]]


def wrk(path, timefile):
    t = open(path).read()
    r = {"mode": "wrk"}
    m = re.search(r"(\d+) requests in ([0-9.]+)(ms|s|m)", t)
    if m:
        r["requests"] = int(m[1])
    m = re.search(r"Requests/sec:\s+([0-9.]+)", t)
    r["rps"] = float(m[1]) if m else 0
    for q, k in (("50%", "p50_us"), ("99%", "p99_us")):
        m = re.search(rf"^\s+{q}\s+(\S+)", t, re.M)
        r[k] = us(m[1]) if m else None
    m = re.search(r"Transfer/sec:\s+([0-9.]+)([KMG]?B)", t)
    if m:
        r["mib_per_s"] = float(m[1]) * {"B": 1 / 2**20, "KB": 1 / 1024, "MB": 1, "GB": 1024}[m[2]]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    e = int(m[1]) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    if m:
        e += sum(int(x) for x in m.groups())
    r["errors"] = e
    try:
        u, s = open(timefile).read().split()[-2:]
        r["cpu_us"] = (float(u) + float(s)) * 1e6
    except (OSError, ValueError):
        pass
    return r


def rec(results, path, test, gen, s0, s1):
    g = json.loads(gen)
    s0, s1 = json.loads(s0), json.loads(s1)
    dt = max(s1["total"] - s0["total"], 1)
    busy = 1 - (s1["idle"] - s0["idle"]) / dt
    bench = sum(v - s0["bench"][p] for p, v in s1["bench"].items() if p in s0["bench"]) / dt
    client = (g.get("cpu_us", 0) or 0) * HZ / 1e6 / dt
    tun = [s1["tun"][p] - s0["tun"][p] for p in s0["tun"] if s0["tun"][p] is not None and s1["tun"].get(p) is not None]
    n = g.get("requests") or 0
    r = dict(g)
    r.update(path=path, test=test, busy=round(busy * 100), bench=round((bench + client) * 100),
             other=round((busy - bench - client) * 100), load1=s1["load1"])
    if tun and n:
        r["cpu_us_req"] = round(sum(tun) * 1e6 / HZ / n, 1)
    with open(results, "a") as f:
        f.write(json.dumps(r) + "\n")


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and v >= 100:
        v = round(v)
    if isinstance(v, float):
        return f"{v:,.1f}{unit}"
    return f"{v:,}{unit}"


def render(results):
    rows = [json.loads(l) for l in open(results) if l.strip()]
    by = {}
    for r in rows:
        by[(r["test"], r["path"])] = r
    tests = []
    for r in rows:
        if r["test"] not in tests:
            tests.append(r["test"])
    paths = [p for p in PATHS if any(k[1] == p for k in by)]

    print("### Everything side by side (ratio = path ÷ Causeway; for p50/p99/CPU/memory lower is better, for req/s and MiB/s higher)")
    print()
    print("| test | metric | " + " | ".join(paths) + " |")
    print("|---|---|" + "---|" * len(paths))
    metrics = [("rps", "req/s", True), ("p50_us", "p50 µs", False), ("p99_us", "p99 µs", False),
               ("mib_per_s", "MiB/s", True), ("cpu_us_req", "tunnel CPU µs/req", False),
               ("kib_per_watch", "KiB per watch (tunnel processes)", False)]
    for t in tests:
        for key, name, _ in metrics:
            if not any(key in by.get((t, p), {}) and by[(t, p)][key] is not None for p in paths):
                continue
            if key == "mib_per_s" and not (t.startswith("list") or "1m" in t or t.startswith("exec") or t.startswith("port-forward")):
                continue
            if key in ("p50_us", "p99_us") and (t.startswith("list") or t.startswith("exec") or t.startswith("port-forward")):
                continue
            base = by.get((t, "causeway"), {}).get(key)
            cells = []
            for p in paths:
                v = by.get((t, p), {}).get(key)
                if v is None:
                    cells.append("–")
                elif p != "causeway" and base:
                    cells.append(f"{fmt(v)} ({v / base:.2f}×)")
                else:
                    cells.append(fmt(v))
            print(f"| {t} | {name} | " + " | ".join(cells) + " |")
        loads = []
        for p in paths:
            r = by.get((t, p))
            loads.append(f"{r['busy']}/{r['other']}/{r['load1']}" if r and "busy" in r else "–")
        print(f"| {t} | machine busy % / of which outside this bench % / load1 | " + " | ".join(loads) + " |")
    errs = [f"{r['test']} {r['path']}: {r['errors']}" for r in rows if r.get("errors")]
    fails = [f"{r['test']} {r['path']}: {r['failed']}" for r in rows if r.get("failed")]
    notes = [f"{r['test']} {r['path']}: {r['note']}" for r in rows if r.get("note")]
    if notes:
        print()
        print("Notes: " + "; ".join(notes))
    print()
    print("Errors (failed requests): " + (", ".join(errs) if errs else "none") +
          ("; failed watches: " + ", ".join(fails) if fails else ""))


def perf(data, names):
    """Shares of a flat profile by process and by crate (first `name::` of the symbol),
    plus the top symbols: `perf report --sort pid,dso,sym` over every sample."""
    names = dict(n.split("=", 1) for n in names)
    r = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "pid,dso,sym",
                        "--percent-limit", "0", "--stdio"], capture_output=True, text=True)
    rows = []
    for line in r.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\d+):\S+\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
        if m:
            rows.append((float(m[1]), names.get(m[2], m[2]), m[3], m[4], m[5]))
    by_proc, by_crate, by_sym = {}, {}, {}
    for pct, proc, dso, kind, sym in rows:
        by_proc[proc] = by_proc.get(proc, 0) + pct
        if kind == "k":
            crate = "kernel"
        elif dso.startswith("libc"):
            crate = "libc (" + ("malloc/free" if "malloc" in sym or "free" in sym or "alloc" in sym else
                                "memcpy/memmove" if "mem" in sym else "other") + ")"
        else:
            c = re.search(r"([a-z_][a-z0-9_]*)::", sym)
            crate = c[1] if c else ("ring (crypto)" if sym.startswith("ring_core") else dso)
            if crate.startswith("ring"):
                crate = "ring (crypto)"
        k = (proc, crate)
        by_crate[k] = by_crate.get(k, 0) + pct
        k = (proc, sym[:110])
        by_sym[k] = by_sym.get(k, 0) + pct
    print("by process: " + ", ".join(f"{p} {v:.1f}%" for p, v in sorted(by_proc.items(), key=lambda x: -x[1])))
    print()
    print("| process | crate / part | share of samples |")
    print("|---|---|---|")
    for (p, c), v in sorted(by_crate.items(), key=lambda x: -x[1])[:20]:
        print(f"| {p} | {c} | {v:.1f}% |")
    print()
    print("| process | symbol | share |")
    print("|---|---|---|")
    for (p, c), v in sorted(by_sym.items(), key=lambda x: -x[1])[:15]:
        print(f"| {p} | `{c}` | {v:.1f}% |")


def main():
    a = sys.argv[1:]
    if a[0] == "sample":
        print(json.dumps(sample(a[1], a[2:])))
    elif a[0] == "rec":
        rec(*a[1:7])
    elif a[0] == "wrk":
        print(json.dumps(wrk(a[1], a[2])))
    elif a[0] == "perf":
        perf(a[1], a[2:])
    elif a[0] == "render":
        render(a[1])


if __name__ == "__main__":
    main()
