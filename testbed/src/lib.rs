//! Real Kubernetes control planes on loopback (being built).
