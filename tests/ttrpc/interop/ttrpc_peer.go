// ttrpc_peer: containerd's Go ttrpc (Debian's golang-github-containerd-ttrpc-dev)
// on one side of beaconbox's interop test, as a server or as a client.
//
//	ttrpc_peer serve SOCKET        serve test.Echo until stdin closes
//	ttrpc_peer call SOCKET         call a C++ server's test.Echo, exit 0 when all checks pass
//	ttrpc_peer bench CALLS         Go client to Go server over a unix socketpair: the
//	                               empty unary call's latency (bench/ttrpc's baseline)
package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
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
		// Big answers with as many bytes as the request's value says.
		"Big": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req types.StringValue
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(req.Value)
			if err != nil || n < 0 || n > 3<<20 {
				return nil, status.Errorf(codes.InvalidArgument, "size %q", req.Value)
			}
			return &types.StringValue{Value: strings.Repeat("x", n)}, nil
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

// bench times CALLS empty unary calls, one at a time, and prints p50 and p99 in the
// format of bench/ttrpc.
func bench(calls int) error {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	clientConn, err := net.FileConn(os.NewFile(uintptr(fds[0]), "client"))
	if err != nil {
		return err
	}
	server, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	server.Register("bench.Echo", map[string]ttrpc.Method{
		"Empty": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			return &types.Empty{}, nil
		},
	})
	// Serve needs a listener: one that hands out the socketpair's other end once.
	go server.Serve(context.Background(), &onceListener{file: os.NewFile(uintptr(fds[1]), "server")})
	client := ttrpc.NewClient(clientConn)
	defer client.Close()
	micros := make([]float64, 0, calls)
	for i := 0; i < calls; i++ {
		start := time.Now()
		if err := client.Call(context.Background(), "bench.Echo", "Empty", &types.Empty{}, &types.Empty{}); err != nil {
			return err
		}
		micros = append(micros, float64(time.Since(start).Nanoseconds())/1000)
	}
	sort.Float64s(micros)
	at := func(q float64) float64 { return micros[int(q*float64(len(micros)-1))] }
	fmt.Printf("%-34s n=%d  p50 %7.1f us  p99 %7.1f us\n", "go ttrpc 1.1 empty unary (Go/Go)", calls, at(0.5), at(0.99))
	return nil
}

type onceListener struct {
	file *os.File
	done chan struct{}
}

func (l *onceListener) Accept() (net.Conn, error) {
	if l.file != nil {
		f := l.file
		l.file = nil
		l.done = make(chan struct{})
		return net.FileConn(f)
	}
	<-l.done // blocks until Close
	return nil, net.ErrClosed
}
func (l *onceListener) Close() error   { return nil }
func (l *onceListener) Addr() net.Addr { return &net.UnixAddr{Name: "socketpair", Net: "unix"} }

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: ttrpc_peer serve|call SOCKET | bench CALLS")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2])
	case "call":
		err = call(os.Args[2])
	case "bench":
		calls, convErr := strconv.Atoi(os.Args[2])
		if convErr != nil || calls < 1 {
			err = fmt.Errorf("bench: CALLS must be a positive number")
		} else {
			err = bench(calls)
		}
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ttrpc_peer:", err)
		os.Exit(1)
	}
}
