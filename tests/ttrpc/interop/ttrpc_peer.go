// ttrpc_peer: containerd's Go ttrpc (Debian's golang-github-containerd-ttrpc-dev)
// on one side of beaconbox's interop test, as a server or as a client.
//
//	ttrpc_peer serve SOCKET        serve test.Echo until stdin closes
//	ttrpc_peer call SOCKET         call a C++ server's test.Echo, exit 0 when all checks pass
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/gogo/protobuf/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const service = "test.Echo"

func serve(path string) error {
	server, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	server.Register(service, map[string]ttrpc.Method{
		"Echo": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.StringValue
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			suffix := ""
			if md, ok := ttrpc.GetMetadata(ctx); ok {
				if values, ok := md.Get("suffix"); ok && len(values) > 0 {
					suffix = values[0]
				}
			}
			return &types.StringValue{Value: req.Value + suffix}, nil
		},
		"Fail": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			return nil, status.Errorf(codes.NotFound, "no such thing")
		},
		"Sleep": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			select {
			case <-ctx.Done():
				return nil, status.Errorf(codes.DeadlineExceeded, "deadline seen by the Go server")
			case <-time.After(2 * time.Second):
				return &types.Empty{}, nil
			}
		},
	})
	os.Remove(path)
	listener, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	go server.Serve(context.Background(), listener)
	fmt.Println("ready")
	buf := make([]byte, 1)
	os.Stdin.Read(buf) // the test closes stdin to stop us
	return server.Close()
}

func call(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx := ttrpc.WithMetadata(context.Background(), ttrpc.MD{"suffix": []string{"!"}})

	var resp types.StringValue
	if err := client.Call(ctx, service, "Echo", &types.StringValue{Value: "hello"}, &resp); err != nil {
		return fmt.Errorf("Echo: %w", err)
	}
	if resp.Value != "hello!" {
		return fmt.Errorf("Echo: got %q, want %q", resp.Value, "hello!")
	}
	err = client.Call(context.Background(), service, "Fail", &types.Empty{}, &types.Empty{})
	if s, _ := status.FromError(err); s.Code() != codes.NotFound || s.Message() != "no such thing" {
		return fmt.Errorf("Fail: got %v, want NotFound 'no such thing'", err)
	}
	timeoutCtx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = client.Call(timeoutCtx, service, "Sleep", &types.Empty{}, &types.Empty{})
	if err == nil {
		return fmt.Errorf("Sleep: a 100ms deadline did not end the call")
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var resp types.StringValue
			value := fmt.Sprint(i)
			if err := client.Call(context.Background(), service, "Echo", &types.StringValue{Value: value}, &resp); err != nil {
				errs <- err
			} else if resp.Value != value {
				errs <- fmt.Errorf("concurrent Echo %d: got %q", i, resp.Value)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: ttrpc_peer serve|call SOCKET")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "call":
		err = call(os.Args[2])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ttrpc_peer:", err)
		os.Exit(1)
	}
}
