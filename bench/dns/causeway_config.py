"""Writes a causeway dns config (docs/dns.md format, apiVersion causeway.dev/v1alpha1).

The zone matches the Knot zone of gen.py record for record (SOA, NS, glue, www,
h0000..h0999); GSLB names use the latency policy over the given clusters, and one
LatencyMap document carries every prefix.
"""


def write(path, origin, records, gslb_names, clusters, prefixes, ttl=30):
    with open(path, "w") as f:
        w = f.write
        w("apiVersion: causeway.dev/v1alpha1\n")
        w("kind: DnsServer\n")
        w("metadata: {name: bench}\n")
        w("spec:\n")
        w("  watch: false\n")
        w("---\n")
        w("apiVersion: causeway.dev/v1alpha1\n")
        w("kind: Zone\n")
        w("metadata: {name: svc-example}\n")
        w("spec:\n")
        w(f"  origin: {origin}\n")
        w("  ttl: 300\n")
        w(f"  soa: {{mname: ns1.{origin}, rname: hostmaster.{origin}, serial: 2024010101, "
          "refresh: 3600, retry: 900, expire: 604800, minimum: 300}\n")
        w("  nameservers: [{name: ns1, addresses: [127.0.0.53]}]\n")
        w("  records:\n")
        for name, addr in records:
            w(f"    - {{name: {name}, type: A, data: [{addr}]}}\n")
        w("  gslb:\n")
        for name in gslb_names:
            w(f"    - name: {name}\n")
            w(f"      ttl: {ttl}\n")
            w("      policy: latency\n")
            w("      targets:\n")
            for cid, addr in clusters:
                w(f"        - {{cluster: {cid}, addresses: [{addr}]}}\n")
        w("---\n")
        w("apiVersion: causeway.dev/v1alpha1\n")
        w("kind: LatencyMap\n")
        w("metadata: {name: bench}\n")
        w("spec:\n")
        w("  entries:\n")
        for net, plen, lat in prefixes:
            rtts = ", ".join(f"{cid}: {ms}" for (cid, _), ms in zip(clusters, lat))
            w(f"    - {{prefix: {net}/{plen}, rttMs: {{{rtts}}}}}\n")
