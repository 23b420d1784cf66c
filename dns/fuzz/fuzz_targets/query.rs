//! Fuzzes the whole query path: parse → cache → prepare → patch, over UDP and TCP
//! rules, against the example zone. Every reply must be a DNS response with the
//! query's ID and, over UDP, fit 1232 bytes.
#![no_main]

use std::cell::RefCell;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use causeway_dns::LoadedConfig;
use causeway_dns::handler::{Handler, Transport};
use causeway_dns::state::ServerState;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static HANDLER: RefCell<Handler> = RefCell::new({
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dns/causeway-dns.yaml");
        let loaded = LoadedConfig::load(&path).expect("example config loads");
        Handler::new(Arc::new(ServerState::serving(&loaded)))
    });
}

fuzz_target!(|data: &[u8]| {
    let (transport, src): (Transport, IpAddr) = match data.first().map(|b| b & 3) {
        Some(0) => (Transport::Tcp, "127.0.0.1".parse().unwrap()),
        Some(1) => (Transport::Udp, "::1".parse().unwrap()),
        _ => (Transport::Udp, "198.51.100.7".parse().unwrap()),
    };
    let mut out = Vec::new();
    HANDLER.with(|h| {
        if h.borrow_mut().handle(data, src, transport, &mut out) {
            assert!(
                out.len() >= 12 && out[..2] == data[..2],
                "reply carries the query ID"
            );
            assert!(out[2] & 0x80 != 0, "reply is a response");
            if transport == Transport::Udp {
                assert!(out.len() <= 1232);
            }
        }
    });
});
