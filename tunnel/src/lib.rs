//! Causeway's cluster tunnel (not built yet).
