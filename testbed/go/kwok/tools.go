//go:build tools

// Package tools pins kwok, which runs fake nodes and pods for the testbed.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
