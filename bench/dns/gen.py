#!/usr/bin/env python3
"""Generates the zone, query files and configs for bench/dns/run.sh.

Everything is seeded, so two runs with the same arguments write the same bytes.

  gen.py static  DIR            Knot zone file + queries.txt (peer-baselines §1 mix)
  gen.py gslb    DIR            causeway config (same zone + GSLB name) + ECS query file
  gen.py memory  DIR NAMES PFX  causeway config with NAMES GSLB names, PFX latency prefixes
"""
import random
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
        rnd = random.Random(SEED + 3)
        nets = rnd.sample(range(11 << 16, 200 << 16), pfx_n)  # 11.0.0.0 .. 199.255.255.0
        prefixes = [(f"{n >> 16}.{(n >> 8) & 255}.{n & 255}.0", 24,
                     [rnd.randrange(5, 300) for _ in CLUSTERS]) for n in nets]
        causeway_config.write(out / "causeway-mem.yaml", ORIGIN, static_records(),
                              names, CLUSTERS, prefixes, ttl=30)
        write_ecs_queries(out / "queries-mem-ecs.bin",
                          [f"{n}.{ORIGIN}" for n in names], prefixes, n=200000)
        # The same queries with DO, for the signed run (the zone with spec.dnssec).
        with_do(out / "queries-mem-ecs.bin", out / "queries-mem-ecs-do.bin")
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
