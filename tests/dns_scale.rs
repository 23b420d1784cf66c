//! Memory with a large config: 10k GSLB names and 100k latency prefixes must stay
//! within 100 MiB RSS (the target), measured from /proc on the running binary.

#[path = "support/dns.rs"]
mod dns_support;

use std::time::Instant;

use causeway_testbed::testing::rss_kib;
use dns_support::*;
use hickory_proto::rr::RecordType;

#[test]
fn ten_thousand_names_and_100k_prefixes_fit_in_100_mib() {
    let dir = tempfile::tempdir().unwrap();
    let text = causeway_dns::scalegen::generate(10_000, 100_000);
    let path = write_config(dir.path(), "scale.yaml", &text);
    let started = Instant::now();
    let s = Server::start(&path);
    let load = started.elapsed();
    // Answers come from the big map (100.64.5.0/24 is one of its prefixes).
    for i in [0, 4_999, 9_999] {
        let r = s.udp(
            &format!("g{i:05}.svc.example."),
            RecordType::A,
            true,
            Some(("100.64.5.0", 24)),
        );
        assert_eq!(r.answers.len(), 1);
    }
    let r = s.udp(
        "g00001.svc.example.",
        RecordType::AAAA,
        true,
        Some(("2001:db8:10::", 48)),
    );
    assert!(r.answers.is_empty(), "no IPv6 addresses configured: NODATA");
    let (_, m) = s.http("GET", "/metrics", "");
    assert!(
        m.contains("causeway_dns_latency_map_prefixes 100000"),
        "all prefixes loaded"
    );
    let rss = rss_kib(s.pid()).expect("VmRSS of the running server");
    eprintln!(
        "scale: 10000 GSLB names + 100000 prefixes ({} bytes of YAML): ready in {:.1} s, RSS {:.1} MiB (limit 100 MiB)",
        text.len(),
        load.as_secs_f64(),
        rss as f64 / 1024.0
    );
    assert!(rss <= 100 * 1024, "RSS {rss} KiB > 100 MiB");
}
