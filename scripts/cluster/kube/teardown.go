// Stops and removes every pod sandbox through the container runtime's CRI socket.
//
// Stopping a sandbox through CRI (rather than killing its processes) is what makes the
// runtime call the CNI plugins' DEL: the veth, the IP lease and the network namespace go
// away with it, so a cluster's teardown leaves none behind.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func criTeardown(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: kube cri-teardown unix:///path/to/containerd.sock")
		return 2
	}
	conn, err := grpc.NewClient(args[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-teardown: %v\n", err)
		return 1
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := client.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri-teardown: list sandboxes: %v\n", err)
		return 1
	}
	failed := 0
	for _, pod := range pods.Items {
		name := pod.Metadata.Namespace + "/" + pod.Metadata.Name
		if _, err := client.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-teardown: stop %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := client.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "cri-teardown: remove %s: %v\n", name, err)
			failed++
		}
	}
	fmt.Printf("cri-teardown: removed %d of %d pod sandboxes\n", len(pods.Items)-failed, len(pods.Items))
	if failed > 0 {
		return 1
	}
	return 0
}
