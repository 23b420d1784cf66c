//go:build tools

// Package tools pins helm and kubeconform, used to lint and render charts/.
package tools

import (
	_ "github.com/yannh/kubeconform/cmd/kubeconform"
	_ "helm.sh/helm/v3/cmd/helm"
)
