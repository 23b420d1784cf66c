//! Generates large configurations for benchmarks and the memory test: `names` GSLB
//! names (latency policy, three clusters each) in zone `svc.example.` and `prefixes`
//! latency-map prefixes (IPv4 /24s first, then IPv6 /48s).
//!
//! `cargo run -p causeway-dns --example gen_scale -- 10000 100000 > big.yaml`

use std::fmt::Write;

/// Clusters used by generated names.
pub const CLUSTERS: [&str; 3] = ["idc-bj", "aws-sg", "gcp-us"];

/// The YAML text of a generated config (no `DnsServer` document: pass `--listen`).
pub fn generate(names: usize, prefixes: usize) -> String {
    let mut s = String::with_capacity(names * 260 + prefixes * 80 + 1024);
    s.push_str(
        "apiVersion: causeway.dev/v1alpha1\nkind: Zone\nmetadata: {name: scale}\nspec:\n  origin: svc.example.\n  \
         soa: {rname: hostmaster.svc.example.}\n  nameservers: [{name: ns1, addresses: [127.0.0.53]}]\n  \
         records:\n    - {name: www, type: A, data: [192.0.2.10]}\n  gslb:\n",
    );
    for i in 0..names {
        let (a, b) = (i / 250 % 250, i % 250 + 1);
        let _ = writeln!(
            s,
            "    - name: g{i:05}\n      policy: latency\n      targets:\n        - {{cluster: idc-bj, addresses: [10.1.{a}.{b}]}}\n        - {{cluster: aws-sg, addresses: [10.2.{a}.{b}]}}\n        - {{cluster: gcp-us, addresses: [10.3.{a}.{b}]}}"
        );
    }
    s.push_str("---\napiVersion: causeway.dev/v1alpha1\nkind: LatencyMap\nmetadata: {name: scale}\nspec:\n  entries:\n");
    for i in 0..prefixes {
        let prefix = if i < 65_536 {
            format!("100.{}.{}.0/24", i / 256, i % 256)
        } else {
            let j = i - 65_536;
            format!("\"2001:db8:{:x}::/48\"", j)
        };
        let r = |k: usize| (i * 7 + k * 13) % 200 + 1;
        let _ = writeln!(
            s,
            "    - {{prefix: {prefix}, rttMs: {{idc-bj: {}, aws-sg: {}, gcp-us: {}}}}}",
            r(0),
            r(1),
            r(2)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn small_generated_config_is_valid() {
        let text = super::generate(20, 300);
        let loaded = crate::LoadedConfig::parse(std::path::Path::new("gen.yaml"), &text).unwrap();
        assert_eq!(loaded.config.zones[0].spec.gslb.len(), 20);
        assert_eq!(loaded.zones.gslb.len(), 20);
        assert_eq!(loaded.config.latency.len(), 300);
    }
}
