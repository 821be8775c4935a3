// criclient calls one CRI method many times over a unix socket and prints each
// call's latency, as the kubelet's Go gRPC client would see it (bench/grpc_floor.py,
// bench/small_calls.py).
//
//	criclient -socket /run/crib/crib.sock -method Version -calls 2000
//	criclient -socket /run/crib/crib.sock -method ContainerStatus -id <container id>
//	criclient -socket /run/crib/crib.sock -method ImageStatus -image busybox:1
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	socket := flag.String("socket", "", "unix socket of the CRI server")
	method := flag.String("method", "Version", "Version, Status, ListPodSandbox, ListContainers, "+
		"ContainerStatus, PodSandboxStatus, ImageStatus or ListImages")
	id := flag.String("id", "", "the container (ContainerStatus) or pod (PodSandboxStatus) ID")
	image := flag.String("image", "", "the image ImageStatus asks for")
	calls := flag.Int("calls", 1000, "timed calls (after 100 untimed)")
	flag.Parse()
	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	img := runtimeapi.NewImageServiceClient(conn)
	call := func(ctx context.Context) error {
		var err error
		switch *method {
		case "Version":
			_, err = rt.Version(ctx, &runtimeapi.VersionRequest{})
		case "Status":
			_, err = rt.Status(ctx, &runtimeapi.StatusRequest{})
		case "ListPodSandbox":
			_, err = rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		case "ListContainers":
			_, err = rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
		case "ContainerStatus":
			_, err = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: *id})
		case "PodSandboxStatus":
			_, err = rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: *id})
		case "ImageStatus":
			_, err = img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: *image}})
		case "ListImages":
			_, err = img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
		default:
			err = fmt.Errorf("unknown method %q", *method)
		}
		return err
	}
	out := make([]float64, 0, *calls)
	for i := 0; i < 100+*calls; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		err := call(ctx)
		ms := float64(time.Since(t0).Microseconds()) / 1000
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if i >= 100 {
			out = append(out, ms)
		}
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
