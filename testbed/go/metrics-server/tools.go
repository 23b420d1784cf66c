//go:build tools

// Package tools pins metrics-server, which serves metrics.k8s.io (pod and node CPU and
// memory, scraped from kwok's simulated kubelet endpoints) to HPAs and `kubectl top`.
package tools

import _ "sigs.k8s.io/metrics-server/cmd/metrics-server"
