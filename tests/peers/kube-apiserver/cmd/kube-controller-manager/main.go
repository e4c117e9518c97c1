// The kube-controller-manager command of the pinned Kubernetes release, as
// k8s.io/kubernetes/cmd/kube-controller-manager builds it (Deployments, ServiceAccounts, root CA ConfigMaps).
package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
