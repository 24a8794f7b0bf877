// Command kube is one binary holding the five Kubernetes node and control-plane components.
//
// One link instead of five keeps the first build on a small machine short and the cache
// small. It dispatches on the name it was invoked as (a symlink such as kube-apiserver) or,
// failing that, on its first argument (`kube kubelet --config ...`).
// `kube cri-teardown SOCKET` removes every pod sandbox (see teardown.go).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as the upstream controller manager and API server do

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var components = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-proxy":              proxy.NewProxyCommand,
}

func main() {
	if build, ok := components[filepath.Base(os.Args[0])]; ok {
		os.Exit(cli.Run(build()))
	}
	if len(os.Args) > 1 && os.Args[1] == "cri-teardown" {
		os.Exit(criTeardown(os.Args[2:]))
	}
	if len(os.Args) > 1 {
		if build, ok := components[os.Args[1]]; ok {
			command := build()
			command.SetArgs(os.Args[2:])
			os.Exit(cli.Run(command))
		}
	}
	names := make([]string, 0, len(components))
	for name := range components {
		names = append(names, name)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: kube COMPONENT [flags]  (COMPONENT is one of %v, or invoke through a symlink of that name)\n", names)
	os.Exit(2)
}
