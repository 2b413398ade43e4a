// task_client: the Task API calls ctr cannot make, through containerd's own Go
// client, for tests/e2e/task_api_e2e.sh.
//
//	task_client ADDRESS NAMESPACE kill-created IMAGE RUNTIME ID [SHIM_CGROUP]
//	    creates a task (with runc's shim options naming SHIM_CGROUP, when given),
//	    prints "created", reads one line from stdin (the caller looks at the shim
//	    meanwhile), then SIGKILLs the task it never started; prints the /tasks/exit
//	    event's status, Wait's and Delete's (one "what: value" a line).
//	task_client ADDRESS NAMESPACE hooks IMAGE RUNTIME ID HOOK DIR
//	    runs /bin/true in a container whose spec has prestart, createRuntime,
//	    poststart and poststop hooks, each HOOK with args [HOOK KIND DIR]; prints
//	    "exit: N" once it is deleted.
//	task_client ADDRESS NAMESPACE checkpoint-exit ID
//	    checkpoints the running task ID with runc's CheckpointOptions.Exit set (what
//	    `ctr task checkpoint --exit` sends, but only to runc's runtimes), then prints
//	    "image: NAME" and the task's "exit: N".
//	task_client ADDRESS NAMESPACE resize-noterm ID
//	    ResizePty of the running task ID (started without a terminal) and of an exec
//	    without one; prints "init: ok|error" and "exec: ok|error".
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/containerd/runtime/v2/runc/options"
	"github.com/containerd/typeurl"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "task_client: "+format+"\n", args...)
	os.Exit(1)
}

func result(err error) string {
	if err != nil {
		return "error " + err.Error()
	}
	return "ok"
}

func killCreated(ctx context.Context, client *containerd.Client, ref, runtime, id, shimCgroup string) {
	image, err := client.GetImage(ctx, ref)
	if err != nil {
		die("image %s: %v", ref, err)
	}
	var runtimeOptions interface{}
	if shimCgroup != "" {
		runtimeOptions = &options.Options{ShimCgroup: shimCgroup}
	}
	container, err := client.NewContainer(ctx, id, containerd.WithRuntime(runtime, runtimeOptions),
		containerd.WithNewSnapshot(id+"-snapshot", image),
		containerd.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("/bin/sleep", "600")))
	if err != nil {
		die("new container: %v", err)
	}
	defer container.Delete(ctx, containerd.WithSnapshotCleanup)
	eventsCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	messages, errs := client.Subscribe(eventsCtx, `topic=="/tasks/exit"`)
	task, err := container.NewTask(ctx, cio.NullIO)
	if err != nil {
		die("new task: %v", err)
	}
	status, err := task.Status(ctx)
	fmt.Printf("status before kill: %s %v\n", status.Status, err)
	fmt.Printf("created\n")
	bufio.NewReader(os.Stdin).ReadString('\n')
	exitc, err := task.Wait(ctx)
	if err != nil {
		die("wait: %v", err)
	}
	fmt.Printf("kill: %s\n", result(task.Kill(ctx, syscall.SIGKILL)))
	select {
	case exit := <-exitc:
		fmt.Printf("wait: %d\n", exit.ExitCode())
	case <-time.After(120 * time.Second):
		fmt.Printf("wait: none within 120 s\n")
	}
	deadline := time.After(30 * time.Second)
event:
	for {
		select {
		case envelope := <-messages:
			decoded, err := typeurl.UnmarshalAny(envelope.Event)
			if err != nil {
				continue
			}
			if exit, ok := decoded.(*events.TaskExit); ok && exit.ContainerID == id {
				fmt.Printf("exit event: %d\n", exit.ExitStatus)
				break event
			}
		case err := <-errs:
			fmt.Printf("exit event: subscribe error %v\n", err)
			break event
		case <-deadline:
			fmt.Printf("exit event: none within 30 s\n")
			break event
		}
	}
	deleteCtx, deleteCancel := context.WithTimeout(ctx, 120*time.Second)
	defer deleteCancel()
	exit, err := task.Delete(deleteCtx, containerd.WithProcessKill)
	if err != nil {
		fmt.Printf("delete: error %v\n", err)
	} else {
		fmt.Printf("delete: %d\n", exit.ExitCode())
	}
}

func withHooks(hookPath, dir string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		hook := func(kind string) []specs.Hook {
			return []specs.Hook{{Path: hookPath, Args: []string{hookPath, kind, dir}}}
		}
		s.Hooks = &specs.Hooks{Prestart: hook("prestart"), CreateRuntime: hook("createRuntime"),
			Poststart: hook("poststart"), Poststop: hook("poststop")}
		return nil
	}
}

func runWithHooks(ctx context.Context, client *containerd.Client, ref, runtime, id, hookPath, dir string) {
	image, err := client.GetImage(ctx, ref)
	if err != nil {
		die("image %s: %v", ref, err)
	}
	container, err := client.NewContainer(ctx, id, containerd.WithRuntime(runtime, nil),
		containerd.WithNewSnapshot(id+"-snapshot", image),
		containerd.WithNewSpec(oci.WithImageConfig(image), oci.WithProcessArgs("/bin/true"),
			withHooks(hookPath, dir)))
	if err != nil {
		die("new container: %v", err)
	}
	defer container.Delete(ctx, containerd.WithSnapshotCleanup)
	task, err := container.NewTask(ctx, cio.NullIO)
	if err != nil {
		fmt.Printf("create: error %v\n", err)
		return
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		die("wait: %v", err)
	}
	if err := task.Start(ctx); err != nil {
		fmt.Printf("start: error %v\n", err)
	}
	select {
	case <-exitc:
	case <-time.After(300 * time.Second):
		task.Kill(ctx, syscall.SIGKILL)
		<-exitc
	}
	exit, err := task.Delete(ctx)
	if err != nil {
		fmt.Printf("delete: error %v\n", err)
		return
	}
	fmt.Printf("exit: %d\n", exit.ExitCode())
}

func resizeNoTerminal(ctx context.Context, client *containerd.Client, id string) {
	container, err := client.LoadContainer(ctx, id)
	if err != nil {
		die("container %s: %v", id, err)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		die("task %s: %v", id, err)
	}
	fmt.Printf("init: %s\n", result(task.Resize(ctx, 100, 30)))
	spec, err := container.Spec(ctx)
	if err != nil {
		die("spec: %v", err)
	}
	process := *spec.Process
	process.Terminal = false
	process.Args = []string{"/bin/sleep", "600"}
	exec, err := task.Exec(ctx, "resize-noterm", &process, cio.NullIO)
	if err != nil {
		die("exec: %v", err)
	}
	if err := exec.Start(ctx); err != nil {
		die("exec start: %v", err)
	}
	fmt.Printf("exec: %s\n", result(exec.Resize(ctx, 100, 30)))
	exitc, _ := exec.Wait(ctx)
	exec.Kill(ctx, syscall.SIGKILL)
	<-exitc
	exec.Delete(ctx)
}

// update sends containerd's Tasks.Update for task ID, as `ctr task update` of newer
// releases does (neither 1.6's nor 1.7's ctr has it): an OCI LinuxResources with the
// fields given (the others unset, so they stay as they are). Prints one line and
// exits 1 when containerd refuses.
func update(ctx context.Context, client *containerd.Client, args []string) {
	flags := flag.NewFlagSet("update", flag.ExitOnError)
	memory := flags.Int64("memory-limit", 0, "memory limit in bytes (0: unchanged)")
	quota := flags.Int64("cpu-quota", 0, "CPU quota in microseconds per period (0: unchanged)")
	period := flags.Uint64("cpu-period", 0, "CPU period in microseconds (0: unchanged)")
	shares := flags.Uint64("cpu-shares", 0, "CPU shares (0: unchanged)")
	pids := flags.Int64("pids-limit", 0, "pids limit (0: unchanged)")
	flags.Parse(args)
	if flags.NArg() != 1 {
		die("update [--memory-limit B] [--cpu-quota US] [--cpu-period US] [--cpu-shares N] [--pids-limit N] ID")
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
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	container, err := client.LoadContainer(ctx, flags.Arg(0))
	if err != nil {
		die("update: %v", err)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		die("update: %v", err)
	}
	if err := task.Update(ctx, containerd.WithResources(resources)); err != nil {
		die("update: %v", err)
	}
}

// checkpointExit checkpoints task ID through containerd with CheckpointOptions.Exit:
// the task is to exit once it is saved. Prints the image's name and the exit status.
func checkpointExit(ctx context.Context, client *containerd.Client, id string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	container, err := client.LoadContainer(ctx, id)
	if err != nil {
		die("checkpoint-exit: %v", err)
	}
	task, err := container.Task(ctx, nil)
	if err != nil {
		die("checkpoint-exit: %v", err)
	}
	exitc, err := task.Wait(ctx)
	if err != nil {
		die("checkpoint-exit: wait: %v", err)
	}
	withExit := func(info *containerd.CheckpointTaskInfo) error {
		info.Options = &options.CheckpointOptions{Exit: true}
		return nil
	}
	image, err := task.Checkpoint(ctx, withExit)
	if err != nil {
		die("checkpoint-exit: %v", err)
	}
	fmt.Printf("image: %s\n", image.Name())
	select {
	case status := <-exitc:
		if err := status.Error(); err != nil {
			die("checkpoint-exit: wait: %v", err)
		}
		fmt.Printf("exit: %d\n", status.ExitCode())
	case <-ctx.Done():
		die("checkpoint-exit: the task did not exit after its checkpoint")
	}
}

func main() {
	if len(os.Args) < 4 {
		die("usage: task_client ADDRESS NAMESPACE kill-created IMAGE RUNTIME ID [SHIM_CGROUP] | hooks IMAGE RUNTIME ID HOOK DIR | resize-noterm ID | update [LIMITS] ID | checkpoint-exit ID")
	}
	client, err := containerd.New(os.Args[1])
	if err != nil {
		die("connect to %s: %v", os.Args[1], err)
	}
	defer client.Close()
	ctx := namespaces.WithNamespace(context.Background(), os.Args[2])
	switch args := os.Args[4:]; os.Args[3] {
	case "kill-created":
		if len(args) != 3 && len(args) != 4 {
			die("kill-created IMAGE RUNTIME ID [SHIM_CGROUP]")
		}
		shimCgroup := ""
		if len(args) == 4 {
			shimCgroup = args[3]
		}
		killCreated(ctx, client, args[0], args[1], args[2], shimCgroup)
	case "hooks":
		if len(args) != 5 {
			die("hooks IMAGE RUNTIME ID HOOK DIR")
		}
		runWithHooks(ctx, client, args[0], args[1], args[2], args[3], args[4])
	case "resize-noterm":
		if len(args) != 1 {
			die("resize-noterm ID")
		}
		resizeNoTerminal(ctx, client, args[0])
	case "update":
		update(ctx, client, args)
	case "checkpoint-exit":
		if len(args) != 1 {
			die("checkpoint-exit ID")
		}
		checkpointExit(ctx, client, args[0])
	default:
		die("unknown command %s", os.Args[3])
	}
}
