//! Causeway's authoritative GSLB DNS server (not built yet).
