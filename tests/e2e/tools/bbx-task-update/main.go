// bbx-task-update: containerd's Tasks.Update for one task, through the containerd
// client library, because neither containerd 1.6's nor 1.7's ctr has `ctr task
// update`. It sends what `ctr task update` of newer releases sends: an OCI
// LinuxResources with the fields given on the command line (the others unset, so
// they stay as they are). Prints one line and exits 1 when containerd refuses.
//
//	bbx-task-update --address SOCK [--namespace NS] [--memory-limit BYTES]
//	    [--cpu-quota US] [--cpu-period US] [--cpu-shares N] [--pids-limit N] ID
//
// Built by tests/e2e/update_e2e.sh and bench/hotplug/run.sh against Debian's
// golang-github-containerd-containerd-dev (GOPATH mode, no network).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func main() {
	address := flag.String("address", "/run/containerd/containerd.sock", "containerd socket")
	namespace := flag.String("namespace", "default", "containerd namespace")
	memory := flag.Int64("memory-limit", 0, "memory limit in bytes (0: unchanged)")
	quota := flag.Int64("cpu-quota", 0, "CPU quota in microseconds per period (0: unchanged)")
	period := flag.Uint64("cpu-period", 0, "CPU period in microseconds (0: unchanged)")
	shares := flag.Uint64("cpu-shares", 0, "CPU shares (0: unchanged)")
	pids := flag.Int64("pids-limit", 0, "pids limit (0: unchanged)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: bbx-task-update --address SOCK [limits] TASK_ID")
		os.Exit(2)
	}
	resources := &specs.LinuxResources{}
	if *memory != 0 {
		resources.Memory = &specs.LinuxMemory{Limit: memory}
	}
	if *quota != 0 || *period != 0 || *shares != 0 {
		resources.CPU = &specs.LinuxCPU{}
		if *quota != 0 {
			resources.CPU.Quota = quota
		}
		if *period != 0 {
			resources.CPU.Period = period
		}
		if *shares != 0 {
			resources.CPU.Shares = shares
		}
	}
	if *pids != 0 {
		resources.Pids = &specs.LinuxPids{Limit: *pids}
	}
	client, err := containerd.New(*address)
	if err != nil {
		fmt.Println("bbx-task-update:", err)
		os.Exit(1)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), *namespace),
		5*time.Minute)
	defer cancel()
	container, err := client.LoadContainer(ctx, flag.Arg(0))
	if err != nil {
		fmt.Println("bbx-task-update:", err)
		os.Exit(1)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		fmt.Println("bbx-task-update:", err)
		os.Exit(1)
	}
	if err := task.Update(ctx, containerd.WithResources(resources)); err != nil {
		fmt.Println("bbx-task-update:", err)
		os.Exit(1)
	}
}
