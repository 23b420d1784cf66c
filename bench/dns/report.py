#!/usr/bin/env python3
"""Turns the results.tsv of bench/dns/run.sh into the markdown report (stdout)."""
import argparse
import csv
import statistics


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt(v, digits=0):
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    for k in ["stamp", "quick", "secs", "max-runs", "max-secs", "fix-secs", "mem-names",
              "mem-prefixes", "mem-ready", "mem-rss-idle", "mem-hwm", "causeway", "commit",
              "knot", "dnsperf", "gdnsd", "miss-fraction", "miss-note", "miss-measured", "only"]:
        ap.add_argument("--" + k, default="–")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.results), delimiter="\t"))

    def pick(scen, server, mode, rate):
        return [r for r in rows if (r["scenario"], r["server"], r["mode"], r["rate"]) ==
                (scen, server, mode, rate)]

    def median_run(rs):
        """The run with the median qps (the middle one of an odd count)."""
        rs = [r for r in rs if num(r["qps"]) is not None]
        if not rs:
            return None
        rs.sort(key=lambda r: num(r["qps"]))
        return rs[(len(rs) - 1) // 2]

    def one(scen, server, mode, rate):
        rs = pick(scen, server, mode, rate)
        return rs[0] if rs else None

    p = print
    p(f"# DNS benchmark: causeway vs Knot vs gdnsd ({a.stamp})")
    p()
    p(f"- causeway: `{a.causeway}` at commit `{a.commit}`; {a.knot}; gdnsd {a.gdnsd}; dnsperf {a.dnsperf}")
    only = " --only gslb (no pinned, latency, zero-loss, memory or signed runs);" if a.only == "gslb" else ""
    p(f"- mode: {'--quick' if a.quick == '1' else 'full'};{only} max-rate runs {a.max_runs} × {a.max_secs} s "
      f"(median shown), CPU runs at 50k {a.max_runs} × {a.fix_secs} s (median), other fixed-rate runs "
      f"{a.fix_secs} s; the servers' runs alternate; measuring took {a.secs} s")
    p("- method: /work/shared/peer-baselines.md §1. Unpinned: `dnsperf -c 4 -T 2 -q 500`; "
      "pinned: server `taskset -a -p -c 1`, `taskset -c 0 dnsperf -c 4 -T 1 -q 200`; "
      "latency: pinned at 20k qps with `-v`; CPU µs/query: utime+stime of the server process "
      "(procfs, all threads) over the run / completed queries, at 50k qps unpinned.")
    p("- load: the `load` column is /proc/loadavg (1, 5, 15 min) at the start of each run; the "
      "machine has 2 cores shared with dnsperf (and anything else running).")
    p("- queries: `static` = peer-baselines mix (10 % www, 80 % h0000–h0999, 10 % NXDOMAIN); "
      "`gslb-ecs` = `app.svc.example. A` with EDNS0 + ECS, a /24 source prefix drawn per query from "
      "the 4,096 prefixes of the latency map (dnsperf `-B` wire-format file). Knot serves `app` "
      "as a static A record and ignores ECS, so its gslb-ecs row is a static answer to the same bytes. "
      "`miss-ecs` = `big.svc.example. A` with ECS against a 100,000-prefix latency map (its own "
      "causeway instance; gdnsd serves `app` and `big` from one process, each a geoip `nets` map "
      "holding the same prefixes): 200,000 queries, each of the 100,000 /24s asked twice, "
      "about 100,000 queries apart, so causeway's per-worker reply caches mostly miss; "
      f"expected miss fraction: {a.miss_note or '–'}. Measured: a uprobe on "
      "`causeway_dns::answer::prepare` (one call per miss) counted with `perf stat` during "
      "separate fixed-rate runs on a copy of the binary (scenario `miss-count`; their CPU "
      "figures include the probe's traps and are not used): "
      f"{a.miss_measured.strip() or 'not run (needs root, perf with uprobes)'}")
    p("- gdnsd's geoip plugin computes every answer (longest-prefix match in its merged nets "
      "tree, then the first datacenter of the list) and has no reply cache; causeway prepares "
      "the reply on a miss and serves repeats from the worker's cache. Both give the same A for "
      "every sampled subnet (checked with kdig before the load).")
    p()

    servers = ["knot", "causeway", "gdnsd"]
    scens = ["static", "gslb-ecs", "miss-ecs"]
    summary = {}
    p("## Summary")
    p()
    p("| scenario | server | max qps unpinned, median (range) | lost | avg ms | max qps pinned | "
      "CPU µs/query @ 50k, median (range) | completed @ 50k (all runs) | lost @ 50k | p50 / p99 ms @ 20k pinned | RSS MiB | load (max-rate median run) | 1-min load @ 50k runs |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for scen in scens:
        for s in servers:
            summary[(scen, s)] = dict(qps=None, pinned=None, cpu=None, p99=None)
            if not [r for r in rows if (r["scenario"], r["server"]) == (scen, s)]:
                continue
            mx = pick(scen, s, "unpinned", "max")
            med = median_run(mx)
            qs = [num(r["qps"]) for r in mx if num(r["qps"]) is not None]
            pin = one(scen, s, "pinned", "max")
            cpus = pick(scen, s, "unpinned", "50000")
            cpu_vals = sorted(num(r["cpu_us_per_q"]) for r in cpus if num(r["cpu_us_per_q"]) is not None)
            cpu = cpus[0] if cpus else None
            cpu_med = statistics.median(cpu_vals) if cpu_vals else None
            cpu_txt = "–" if cpu_med is None else (
                f"{cpu_med:.2f}" + (f" ({cpu_vals[0]:.2f}–{cpu_vals[-1]:.2f})" if len(cpu_vals) > 1 else ""))
            done_50k = sum(int(r["completed"]) for r in cpus if r["completed"].isdigit())
            lost_50k = sum(int(r["lost"]) for r in cpus if r["lost"].isdigit())
            lat = one(scen, s, "latency", "20000")
            summary[(scen, s)] = dict(
                qps=num(med["qps"]) if med else None,
                pinned=num(pin["qps"]) if pin else None,
                cpu=cpu_med,
                p99=num(lat["p99_ms"]) if lat else None,
            )
            rng = f" ({fmt(min(qs))}–{fmt(max(qs))})" if len(qs) > 1 else ""
            loads = "/".join(r["load"].split()[0] for r in cpus if r["load"]) or "–"
            p(f"| {scen} | {s} | {fmt(num(med['qps']) if med else None)}{rng} | "
              f"{med['lost'] if med else '–'} | {med['avg_ms'] if med else '–'} | "
              f"{fmt(summary[(scen, s)]['pinned'])} | {cpu_txt} | "
              f"{done_50k if cpu else '–'} | {lost_50k if cpu else '–'} | "
              f"{(lat['p50_ms'] + ' / ' + lat['p99_ms']) if lat else '–'} | "
              f"{med['rss_mib'] if med else '–'} | {med['load'] if med else '–'} | {loads} |")
    p()

    for peer, label in [("knot", "Knot"), ("gdnsd", "gdnsd")]:
        if not any(summary[(sc, peer)]["qps"] or summary[(sc, peer)]["cpu"] for sc in scens):
            continue
        p(f"## Ratios causeway / {label}")
        p()
        p("| scenario | max qps unpinned | max qps pinned | CPU µs/query @ 50k | p99 @ 20k |")
        p("|---|---|---|---|---|")
        for scen in scens:
            c, k = summary[(scen, "causeway")], summary[(scen, peer)]
            p(f"| {scen} | {ratio(c['qps'], k['qps'])} | {ratio(c['pinned'], k['pinned'])} | "
              f"{ratio(c['cpu'], k['cpu'])} | {ratio(c['p99'], k['p99'])} |")
        p()

    p("## Targets (issues 3 and 14)")
    p()
    p("| target | measured | met |")
    p("|---|---|---|")
    m, mg = summary[("miss-ecs", "causeway")]["cpu"], summary[("miss-ecs", "gdnsd")]["cpu"]
    mk = summary[("miss-ecs", "knot")]["cpu"]
    if m is not None or mg is not None:
        met = "–" if m is None or mg is None else ("yes" if m <= mg else f"no ({m / mg:.2f}×)")
        share = num(a.miss_fraction)
        share = f"≈{share:.0%} reply-cache misses simulated" if share is not None else "reply-cache misses"
        measured = sorted(v for v in (num(x) for x in a.miss_measured.split()) if v is not None)
        if measured:
            share += (f", {statistics.median(measured):.0%} measured (median of "
                      f"{', '.join(f'{v:.1%}' for v in measured)})")
        p(f"| miss-heavy ({share}): causeway CPU per answer ≤ gdnsd geoip's | "
          f"{fmt(m, 2)} µs vs {fmt(mg, 2)} µs = {ratio(m, mg)} (Knot's static answer to the same "
          f"bytes: {fmt(mk, 2)} µs) | {met} |")
    g, ks = summary[("gslb-ecs", "causeway")]["cpu"], summary[("static", "knot")]["cpu"]
    met = "–" if g is None or ks is None else ("yes" if g <= ks else f"no ({g / ks:.2f}×)")
    kg = summary[("gslb-ecs", "knot")]["cpu"]
    p(f"| hit-heavy (gslb-ecs, 4,096 prefixes): GSLB (latency + ECS) answer CPU ≤ 1.0× Knot's CPU per static answer | "
      f"{fmt(g, 2)} µs vs {fmt(ks, 2)} µs = {ratio(g, ks)} (vs Knot's static answer to the same "
      f"ECS query bytes, {fmt(kg, 2)} µs: {ratio(g, kg)}; gdnsd geoip on the same file: "
      f"{fmt(summary[('gslb-ecs', 'gdnsd')]['cpu'], 2)} µs) | {met} |")
    for scen, label in [("half-max", "GSLB-ECS config"), ("memory-half", "memory config")]:
        rs = [r for r in rows if r["scenario"] == scen]
        if rs:
            r = rs[0]
            lost = int(r["lost"]) if r["lost"].isdigit() else None
            p(f"| zero loss at half the max rate ({label}) | {r['rate']} qps for {a.fix_secs} s: "
              f"{r['completed']} completed, {r['lost']} lost ({r['rcvbuf_errors']} kernel "
              f"receive-buffer drops), load {r['load']} | "
              f"{'yes' if lost == 0 else 'no'} |")
    hwm = num(a.mem_hwm)
    mem_rows = [r for r in rows
                if r["scenario"].startswith("memory") and not r["scenario"].startswith("memory-signed")]
    rss_load = max((num(r["rss_mib"]) for r in mem_rows if num(r["rss_mib"]) is not None), default=None)
    idle = num(a.mem_rss_idle)
    steady = max(x for x in (idle, rss_load) if x is not None) if (idle or rss_load) else None
    if steady is None:
        met = "–"
    elif steady <= 100 and (hwm is None or hwm <= 100):
        met = "yes"
    elif steady <= 100:
        met = f"steady state yes; transient peak no ({hwm:.0f} MiB)"
    else:
        met = "no"
    if steady is not None:
        p(f"| RSS ≤ 100 MiB with {a.mem_names} GSLB names + {a.mem_prefixes} latency prefixes | "
          f"{a.mem_rss_idle} MiB after start ({a.mem_ready} s to first answer), up to {fmt(rss_load, 1)} MiB "
          f"after the load runs; peak {a.mem_hwm} MiB (VmHWM: the highest RSS ever, which includes "
          f"loading the config) | {met} |")
    mem = median_run(pick("memory", "causeway", "unpinned", "max"))
    if mem:
        p(f"| (info) max qps, memory config, ECS over all {a.mem_names} names | "
          f"{mem['qps']} qps, CPU {mem['cpu_us_per_q']} µs/query, load {mem['load']} | |")
    cold = one("memory-cold", "causeway", "steady", "50000")
    warm = one("memory-warm", "causeway", "steady", "50000")
    if cold and warm:
        p(f"| (info) reply-cache misses vs hits, memory config, 50k qps, the same 200k queries twice | "
          f"first pass (misses) {cold['cpu_us_per_q']} µs/query, second pass (hits) "
          f"{warm['cpu_us_per_q']} µs/query; lost {cold['lost']} / {warm['lost']}; load {cold['load']} | |")
    scold = one("memory-signed-cold", "causeway", "steady", "50000")
    swarm = one("memory-signed-warm", "causeway", "steady", "50000")
    if scold and swarm:
        p(f"| (info) the same, signed (DNSSEC, CSK, queries with DO) | "
          f"first pass (misses, signing) {scold['cpu_us_per_q']} µs/query, second pass (hits) "
          f"{swarm['cpu_us_per_q']} µs/query; lost {scold['lost']} / {swarm['lost']}; load {scold['load']} | |")
    p()

    p("## Every run")
    p()
    cols = ["scenario", "server", "mode", "rate", "qps", "sent", "completed", "lost", "rcvbuf_errors", "avg_ms",
            "p50_ms", "p99_ms", "cpu_us_per_q", "rss_mib", "load", "other_cores"]
    p("| " + " | ".join(cols) + " |")
    p("|" + "---|" * len(cols))
    for r in rows:
        p("| " + " | ".join(r.get(c) or "–" for c in cols) + " |")
    p()
    p("`other_cores`: cores used during the run by everything except this server and dnsperf "
      "(host busy time from /proc/stat minus the server's and dnsperf's CPU time, over the wall time); "
      "anything well above 0 means the run competed with other work.")
    p("CPU µs/query in max-rate runs includes the cost of dropped/queued work and is noisier; "
      "use the 50k column. `rate` is the dnsperf `-Q` limit or `max`.")


if __name__ == "__main__":
    main()
