//go:build tools

// Package tools pins the old kubectl (v1.29, SPDY by default for exec, attach and
// port-forward) that the tunnel tests run beside the current one.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubectl"
)
