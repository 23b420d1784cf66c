#!/usr/bin/env python3
"""Generates the zone, query files and configs for bench/dns/run.sh.

Everything is seeded, so two runs with the same arguments write the same bytes.

  gen.py static  DIR            Knot zone file + queries.txt (peer-baselines §1 mix)
  gen.py gslb    DIR            causeway config (same zone + GSLB name) + ECS query file
  gen.py memory  DIR NAMES PFX  causeway config with NAMES GSLB names, PFX latency prefixes
  gen.py miss    DIR PFX SENT   causeway config with one GSLB name (`big`) over PFX latency
                                prefixes + the miss-heavy ECS query file; prints the
                                expected reply-cache miss fraction (for SENT queries);
                                expected.tsv (subnet, name, A) for the answer checks
  gen.py gdnsd   DIR ADDR PORT PFX  gdnsd config dir DIR/gdnsd: the same zone, `app` and
                                `big` as geoip DYNA over `nets` maps with the same prefixes
"""
import random
import re
import struct
import sys
from pathlib import Path

ORIGIN = "svc.example."
SEED = 20261125
# The GSLB name of the bench and its three clusters (one address each).
GSLB_NAME = "app"
CLUSTERS = [("idc-bj", "127.1.0.1"), ("aws-sg", "127.2.0.1"), ("gcp-us", "127.3.0.1")]
# Number of latency-map prefixes of the bench config (each a /24 under 10.0.0.0/8).
BENCH_PREFIXES = 4096
# The GSLB name of the miss-heavy file (its own causeway instance: the latency map is
# per server, so it cannot share the 4,096-prefix one).
MISS_NAME = "big"
# Miss-heavy file: this many queries, each distinct /24 asked twice (see miss_order).
MISS_QUERIES = 200000


def static_records():
    """(name, address) of the peer-baselines zone: www + h0000..h0999 (10.x.y.1)."""
    recs = [("www", "192.0.2.10")]
    for i in range(1000):
        recs.append((f"h{i:04d}", f"10.{i // 256}.{i % 256}.1"))
    return recs


def write_knot_zone(path: Path):
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 300",
        f"@     IN SOA ns1.{ORIGIN} hostmaster.{ORIGIN} ( 2024010101 3600 900 604800 300 )",
        f"@     IN NS  ns1.{ORIGIN}",
        "ns1   IN A   127.0.0.53",
    ]
    lines += [f"{n:<5} IN A   {a}" for n, a in static_records()]
    # Knot has no GSLB: it serves the GSLB name as a plain A record, so the very same
    # ECS query file can be sent to both servers (Knot ignores the ECS option).
    lines.append(f"{GSLB_NAME:<5} IN A   {CLUSTERS[0][1]}")
    lines.append(f"{MISS_NAME:<5} IN A   {CLUSTERS[0][1]}")
    path.write_text("\n".join(lines) + "\n")


def write_queries(path: Path, n=10000):
    """peer-baselines mix: 10 % www, 80 % hNNNN, 10 % nxNNNNN (NXDOMAIN), seeded."""
    rnd = random.Random(SEED)
    out = []
    for _ in range(n):
        r = rnd.random()
        if r < 0.10:
            out.append(f"www.{ORIGIN} A")
        elif r < 0.90:
            out.append(f"h{rnd.randrange(1000):04d}.{ORIGIN} A")
        else:
            out.append(f"nx{rnd.randrange(100000):05d}.{ORIGIN} A")
    path.write_text("\n".join(out) + "\n")


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ecs_query(name: str, addr: str, prefix: int) -> bytes:
    """A query for NAME/A with EDNS0 (UDP 1232) and an ECS option (RFC 7871 §6)."""
    header = struct.pack(">HHHHHH", 0, 0x0000, 1, 0, 0, 1)  # RD=0 (authoritative)
    question = encode_name(name) + struct.pack(">HH", 1, 1)
    octets = bytes(int(x) for x in addr.split("."))[: (prefix + 7) // 8]
    ecs = struct.pack(">HBB", 1, prefix, 0) + octets
    opt_rdata = struct.pack(">HH", 8, len(ecs)) + ecs
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0, len(opt_rdata)) + opt_rdata
    return header + question + opt


def bench_prefixes(n=BENCH_PREFIXES):
    """n distinct /24s under 10.0.0.0/8 (seeded), each with latencies to the 3 clusters."""
    rnd = random.Random(SEED + 1)
    nets = rnd.sample(range(1 << 16), n)
    out = []
    for net in nets:
        lat = [rnd.randrange(5, 300) for _ in CLUSTERS]
        out.append((f"10.{net >> 8}.{net & 255}.0", 24, lat))
    return out


def write_ecs_queries(path: Path, names, prefixes, n=10000):
    """n wire-format queries (dnsperf -B): random name of NAMES, ECS from a random prefix."""
    rnd = random.Random(SEED + 2)
    with path.open("wb") as f:
        for _ in range(n):
            name = rnd.choice(names)
            net, plen, _ = rnd.choice(prefixes)
            base = net.split(".")
            # a random host inside the /24, sent as a /24 source prefix like real resolvers
            addr = ".".join(base[:3] + [str(rnd.randrange(256))])
            q = ecs_query(name, addr, plen)
            f.write(struct.pack(">H", len(q)) + q)


def with_do(src: Path, dst: Path):
    """Copies a dnsperf -B file of ecs_query messages with the DO bit set in each OPT."""
    data, out, pos = src.read_bytes(), bytearray(), 0
    while pos < len(data):
        (n,) = struct.unpack(">H", data[pos:pos + 2])
        q = bytearray(data[pos + 2:pos + 2 + n])
        end = 12
        while q[end]:
            end += q[end] + 1
        opt = end + 1 + 4  # root label of OPT follows QTYPE/QCLASS
        q[opt + 7] |= 0x80  # TTL = ext-rcode, version, flags: DO is the top flag bit
        out += struct.pack(">H", n) + q
        pos += 2 + n
    dst.write_bytes(bytes(out))


def big_prefixes(n):
    """n distinct /24s in 11.0.0.0 .. 199.255.255.0 (seeded), latencies to the 3 clusters."""
    rnd = random.Random(SEED + 3)
    nets = rnd.sample(range(11 << 16, 200 << 16), n)
    return [(f"{x >> 16}.{(x >> 8) & 255}.{x & 255}.0", 24,
             [rnd.randrange(5, 300) for _ in CLUSTERS]) for x in nets]


def dc_order(lat):
    """Cluster indexes by RTT, lowest first; ties in target order (causeway's latency policy)."""
    return sorted(range(len(lat)), key=lambda i: (lat[i], i))


def miss_order(prefixes, n=MISS_QUERIES):
    """Indexes into PREFIXES for the miss-heavy file: two independent random permutations
    of all prefixes one after the other (each /24 asked twice, about len(prefixes) queries
    apart; the file then repeats)."""
    rnd = random.Random(SEED + 4)
    order = []
    while len(order) < n:
        perm = list(range(len(prefixes)))
        rnd.shuffle(perm)
        order += perm
    return order[:n]


def cache_limit():
    """causeway's per-worker reply-cache limit (CACHE_LIMIT in dns/src/handler.rs)."""
    src = Path(__file__).resolve().parents[2] / "dns" / "src" / "handler.rs"
    try:
        m = re.search(r"const CACHE_LIMIT: usize = ([0-9_]+);", src.read_text())
    except OSError:
        m = None
    return int(m[1].replace("_", "")) if m else 50000


def simulate_misses(order, sent, limit, workers=2, sockets=4):
    """Expected fraction of queries that miss causeway's per-worker reply caches when
    dnsperf sends SENT queries from ORDER (cycling): each query leaves on one of dnsperf's
    `-c 4` sockets (taken as uniform), the kernel's SO_REUSEPORT hash puts each socket on
    one of the `workers` UDP workers (unknown per run: every assignment, weighted), and a
    worker's cache (keyed by name and client /24) starts over once it holds LIMIT replies.
    Returns (weighted mean, {sockets on worker 0: fraction})."""
    from math import comb

    per_k = {}
    for k in range(sockets // 2, sockets + 1):  # k and sockets-k are symmetric
        rnd = random.Random(SEED + 5 + k)
        caches = [set() for _ in range(workers)]
        misses = 0
        for i in range(sent):
            w = 0 if rnd.randrange(sockets) < k else 1
            c = caches[w]
            if len(c) >= limit:
                c.clear()
            key = order[i % len(order)]
            if key not in c:
                misses += 1
                c.add(key)
        per_k[k] = misses / sent
    mean = sum(comb(sockets, k) * per_k[max(k, sockets - k)] for k in range(sockets + 1)) / 2**sockets
    return mean, per_k


def write_miss(out: Path, pfx_n: int, sent: int):
    """causeway-miss.yaml (static zone + GSLB `big` over PFX_N prefixes) and
    queries-miss-ecs.bin; prints and writes (miss-fraction.txt: first line the fraction
    for SENT queries, the fixed-rate run's count) the expected miss fraction."""
    import causeway_config

    prefixes = big_prefixes(pfx_n)
    causeway_config.write(out / "causeway-miss.yaml", ORIGIN, static_records(),
                          [MISS_NAME], CLUSTERS, prefixes, ttl=30)
    order = miss_order(prefixes)
    rnd = random.Random(SEED + 6)
    name = f"{MISS_NAME}.{ORIGIN}"
    with (out / "queries-miss-ecs.bin").open("wb") as f:
        for i in order:
            net = prefixes[i][0].split(".")
            q = ecs_query(name, ".".join(net[:3] + [str(rnd.randrange(256))]), 24)
            f.write(struct.pack(">H", len(q)) + q)
    write_expected(out, pfx_n)
    limit = cache_limit()
    distinct = len(set(order))
    lines = [f"miss-heavy file: {len(order)} queries, {distinct} distinct client /24s "
             f"({distinct / len(order):.0%} first seen in the file), per-worker cache limit {limit}"]
    fractions = {}
    for label, n in [("one pass", len(order)), ("the fixed-rate run", sent)]:
        mean, per_k = simulate_misses(order, n, limit)
        fractions[label] = mean
        ks = ", ".join(f"{k}/4 sockets on one worker: {v:.1%}" for k, v in sorted(per_k.items()))
        lines.append(f"expected reply-cache miss fraction, {label} ({n} queries): "
                     f"{mean:.1%} ({ks})")
    print("\n".join(lines), file=sys.stderr)
    one, run = fractions["one pass"], fractions["the fixed-rate run"]
    lo, hi = min(per_k.values()), max(per_k.values())
    summary = (f"{distinct:,} distinct client /24s in {len(order):,} queries; simulated "
               f"reply-cache misses (limit {limit} per worker, 2 workers, dnsperf's 4 sockets "
               f"over every socket-to-worker assignment): {one:.1%} of one pass, {run:.1%} of "
               f"the {sent:,} queries of a fixed-rate run ({lo:.1%}–{hi:.1%} by assignment)")
    (out / "miss-fraction.txt").write_text(
        f"{run:.3f}\n{summary}\n" + "\n".join(lines) + "\n")


def write_expected(out: Path, pfx_n: int):
    """expected.tsv: sampled (subnet, name, A) that the GSLB servers must answer: 8
    subnets per map + one outside every prefix (answered in the clusters' default
    order: the first target)."""
    rnd = random.Random(SEED + 7)
    rows = []
    for name, prefixes in [(GSLB_NAME, bench_prefixes()), (MISS_NAME, big_prefixes(pfx_n))]:
        for net, plen, lat in rnd.sample(prefixes, 8):
            rows.append(f"{net}/{plen}\t{name}.{ORIGIN}\t{CLUSTERS[dc_order(lat)[0]][1]}")
        rows.append(f"203.0.113.0/24\t{name}.{ORIGIN}\t{CLUSTERS[0][1]}")
    (out / "expected.tsv").write_text("\n".join(rows) + "\n")


def write_gdnsd(out: Path, addr: str, port: int, pfx_n: int):
    """gdnsd config dir OUT/gdnsd: the Knot zone with `app` and `big` as geoip DYNA
    records, each over a `nets` map holding the same prefixes as causeway's latency map,
    every prefix mapped to the clusters in the order causeway's latency policy picks
    (lowest RTT first, ties in target order), ECS on."""
    d = out / "gdnsd"
    for sub in ["zones", "geoip", "run", "state"]:
        (d / sub).mkdir(parents=True, exist_ok=True)
    maps = {GSLB_NAME: bench_prefixes(), MISS_NAME: big_prefixes(pfx_n)}
    dcs = ", ".join(c for c, _ in CLUSTERS)
    dcmap = ", ".join(f"{c} => {a}" for c, a in CLUSTERS)
    for name, prefixes in maps.items():
        with (d / "geoip" / f"nets-{name}").open("w") as f:
            for net, plen, lat in prefixes:
                order = ", ".join(CLUSTERS[i][0] for i in dc_order(lat))
                f.write(f"{net}/{plen} => [ {order} ]\n")
    (d / "config").write_text(f"""options => {{
  listen => [ {addr}:{port} ]
  udp_threads => 2
  tcp_threads => 1
  edns_client_subnet => true
  run_dir => {d / "run"}
  state_dir => {d / "state"}
}}
plugins => {{
  geoip => {{
    maps => {{
""" + "".join(f"""      {n} => {{ datacenters => [ {dcs} ], nets => nets-{n} }}
""" for n in maps) + """    }
    resources => {
""" + "".join(f"""      {n} => {{ map => {n}, dcmap => {{ {dcmap} }} }}
""" for n in maps) + """    }
  }
}
""")
    write_knot_zone(d / "zones" / "svc.example")
    zone = (d / "zones" / "svc.example").read_text().splitlines()
    zone = [line for line in zone if line.split(" ")[0] not in maps]
    zone += [f"{n:<5} 30 DYNA geoip!{n}" for n in maps]
    (d / "zones" / "svc.example").write_text("\n".join(zone) + "\n")


def main():
    cmd, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if cmd == "static":
        write_knot_zone(out / "svc.example.zone")
        write_queries(out / "queries.txt")
    elif cmd == "gslb":
        import causeway_config

        prefixes = bench_prefixes()
        causeway_config.write(out / "causeway.yaml", ORIGIN, static_records(),
                              [GSLB_NAME], CLUSTERS, prefixes, ttl=30)
        write_ecs_queries(out / "queries-gslb-ecs.bin", [f"{GSLB_NAME}.{ORIGIN}"], prefixes)
        (out / "queries-gslb.txt").write_text(f"{GSLB_NAME}.{ORIGIN} A\n" * 1000)
    elif cmd == "memory":
        import causeway_config

        names_n, pfx_n = int(sys.argv[3]), int(sys.argv[4])
        names = [f"g{i:05d}" for i in range(names_n)]
        prefixes = big_prefixes(pfx_n)
        causeway_config.write(out / "causeway-mem.yaml", ORIGIN, static_records(),
                              names, CLUSTERS, prefixes, ttl=30)
        write_ecs_queries(out / "queries-mem-ecs.bin",
                          [f"{n}.{ORIGIN}" for n in names], prefixes, n=200000)
        # The same queries with DO, for the signed run (the zone with spec.dnssec).
        with_do(out / "queries-mem-ecs.bin", out / "queries-mem-ecs-do.bin")
    elif cmd == "miss":
        write_miss(out, int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "gdnsd":
        write_gdnsd(out, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
