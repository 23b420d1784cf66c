//! Prints a large generated config: `gen_scale NAMES PREFIXES` (default 10000 100000).

use std::io::Write;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let names = args.next().and_then(Result::ok).unwrap_or(10_000);
    let prefixes = args.next().and_then(Result::ok).unwrap_or(100_000);
    let text = causeway_dns::scalegen::generate(names, prefixes);
    let _ = std::io::stdout().write_all(text.as_bytes());
}
