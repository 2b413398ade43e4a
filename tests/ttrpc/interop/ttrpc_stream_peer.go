// ttrpc_stream_peer: containerd's Go ttrpc 1.2 (Debian trixie's
// golang-github-containerd-ttrpc-dev, extracted by fetch-ttrpc-1.2.sh) on one side
// of beaconbox's stream interop test. Bookworm's ttrpc 1.1 predates streams.
//
//	ttrpc_stream_peer serve SOCKET   serve test.Streams until stdin closes
//	ttrpc_stream_peer call SOCKET    stream to a C++ server, exit 0 when all checks pass
//
// test.Streams:
//
//	Count (server stream): request "N" -> messages "0" .. "N-1"
//	Sum (client stream):   messages of integers -> one response, their sum
//	Echo (both):           each message comes back with "echo:" in front
//	Fail (server stream):  one message "partial", then NotFound "gone"
//	Hang (server stream):  sends nothing until the caller's deadline
//	Unary (unary):         "x" -> "unary:x"; "fail" -> PermissionDenied "denied"
//	Deadline (unary):      "yes" when the call carries a deadline, else "no"
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const service = "test.Streams"

func str(s string) *wrapperspb.StringValue { return wrapperspb.String(s) }

func serve(path string) error {
	server, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	server.RegisterService(service, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"Unary": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req wrapperspb.StringValue
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			if req.Value == "fail" {
				return nil, status.Errorf(codes.PermissionDenied, "denied")
			}
			return str("unary:" + req.Value), nil
		},
		"Deadline": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req wrapperspb.StringValue
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			if _, ok := ctx.Deadline(); ok {
				return str("yes"), nil
			}
			return str("no"), nil
		},
	}, Streams: map[string]ttrpc.Stream{
		"Hang": {StreamingServer: true, Handler: func(ctx context.Context, ss ttrpc.StreamServer) (interface{}, error) {
			var req wrapperspb.StringValue
			if err := ss.RecvMsg(&req); err != nil {
				return nil, err
			}
			<-ctx.Done()
			return nil, status.Errorf(codes.DeadlineExceeded, "hang: %v", ctx.Err())
		}},
		"Count": {StreamingServer: true, Handler: func(ctx context.Context, ss ttrpc.StreamServer) (interface{}, error) {
			var req wrapperspb.StringValue
			if err := ss.RecvMsg(&req); err != nil {
				return nil, err
			}
			n, err := strconv.Atoi(req.Value)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "count %q", req.Value)
			}
			for i := 0; i < n; i++ {
				if err := ss.SendMsg(str(fmt.Sprint(i))); err != nil {
					return nil, err
				}
			}
			return nil, nil
		}},
		"Sum": {StreamingClient: true, Handler: func(ctx context.Context, ss ttrpc.StreamServer) (interface{}, error) {
			sum := 0
			for {
				var msg wrapperspb.StringValue
				if err := ss.RecvMsg(&msg); err != nil {
					if errors.Is(err, io.EOF) {
						return str(fmt.Sprint(sum)), nil
					}
					return nil, err
				}
				n, _ := strconv.Atoi(msg.Value)
				sum += n
			}
		}},
		"Echo": {StreamingClient: true, StreamingServer: true, Handler: func(ctx context.Context, ss ttrpc.StreamServer) (interface{}, error) {
			for {
				var msg wrapperspb.StringValue
				if err := ss.RecvMsg(&msg); err != nil {
					if errors.Is(err, io.EOF) {
						return nil, nil
					}
					return nil, err
				}
				if err := ss.SendMsg(str("echo:" + msg.Value)); err != nil {
					return nil, err
				}
			}
		}},
		"Fail": {StreamingServer: true, Handler: func(ctx context.Context, ss ttrpc.StreamServer) (interface{}, error) {
			var req wrapperspb.StringValue
			if err := ss.RecvMsg(&req); err != nil {
				return nil, err
			}
			if err := ss.SendMsg(str("partial")); err != nil {
				return nil, err
			}
			return nil, status.Errorf(codes.NotFound, "gone")
		}},
	}})
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

func recvAll(stream ttrpc.ClientStream) ([]string, error) {
	var got []string
	for {
		var msg wrapperspb.StringValue
		if err := stream.RecvMsg(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return got, nil
			}
			return got, err
		}
		got = append(got, msg.Value)
	}
}

func call(path string) error {
	conn, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	ctx := context.Background()

	// Server stream.
	count, err := client.NewStream(ctx, &ttrpc.StreamDesc{StreamingServer: true}, service, "Count", str("4"))
	if err != nil {
		return fmt.Errorf("Count: %w", err)
	}
	got, err := recvAll(count)
	if err != nil || fmt.Sprint(got) != "[0 1 2 3]" {
		return fmt.Errorf("Count: got %v, %v; want [0 1 2 3]", got, err)
	}

	// Client stream with one answer.
	sum, err := client.NewStream(ctx, &ttrpc.StreamDesc{StreamingClient: true}, service, "Sum", nil)
	if err != nil {
		return fmt.Errorf("Sum: %w", err)
	}
	for i := 1; i <= 10; i++ {
		if err := sum.SendMsg(str(fmt.Sprint(i))); err != nil {
			return fmt.Errorf("Sum send: %w", err)
		}
	}
	if err := sum.CloseSend(); err != nil {
		return fmt.Errorf("Sum close: %w", err)
	}
	var total wrapperspb.StringValue
	if err := sum.RecvMsg(&total); err != nil || total.Value != "55" {
		return fmt.Errorf("Sum: got %q, %v; want 55", total.Value, err)
	}

	// Both directions, in lock step.
	echo, err := client.NewStream(ctx, &ttrpc.StreamDesc{StreamingClient: true, StreamingServer: true}, service, "Echo", nil)
	if err != nil {
		return fmt.Errorf("Echo: %w", err)
	}
	for _, word := range []string{"a", "b", "c"} {
		if err := echo.SendMsg(str(word)); err != nil {
			return fmt.Errorf("Echo send: %w", err)
		}
		var back wrapperspb.StringValue
		if err := echo.RecvMsg(&back); err != nil || back.Value != "echo:"+word {
			return fmt.Errorf("Echo: got %q, %v; want echo:%s", back.Value, err, word)
		}
	}
	if err := echo.CloseSend(); err != nil {
		return fmt.Errorf("Echo close: %w", err)
	}
	if rest, err := recvAll(echo); err != nil || len(rest) != 0 {
		return fmt.Errorf("Echo end: got %v, %v; want a clean end", rest, err)
	}

	// A stream ending in an error after a message.
	fail, err := client.NewStream(ctx, &ttrpc.StreamDesc{StreamingServer: true}, service, "Fail", str(""))
	if err != nil {
		return fmt.Errorf("Fail: %w", err)
	}
	got, err = recvAll(fail)
	if s, _ := status.FromError(err); fmt.Sprint(got) != "[partial]" || s.Code() != codes.NotFound || s.Message() != "gone" {
		return fmt.Errorf("Fail: got %v, %v; want [partial] then NotFound gone", got, err)
	}

	// Unary calls on the same connection, an error, and a deadline the server sees.
	var answer wrapperspb.StringValue
	if err := client.Call(ctx, service, "Unary", str("x"), &answer); err != nil || answer.Value != "unary:x" {
		return fmt.Errorf("Unary: got %q, %v; want unary:x", answer.Value, err)
	}
	err = client.Call(ctx, service, "Unary", str("fail"), &answer)
	if s, _ := status.FromError(err); s.Code() != codes.PermissionDenied || s.Message() != "denied" {
		return fmt.Errorf("Unary fail: got %v; want PermissionDenied denied", err)
	}
	timed, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Call(timed, service, "Deadline", str(""), &answer); err != nil || answer.Value != "yes" {
		return fmt.Errorf("Deadline: got %q, %v; want yes (the deadline reached the server)", answer.Value, err)
	}

	// A stream past its deadline ends with DeadlineExceeded, and the connection lives on.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	hang, err := client.NewStream(short, &ttrpc.StreamDesc{StreamingServer: true}, service, "Hang", str(""))
	if err != nil {
		return fmt.Errorf("Hang: %w", err)
	}
	got, err = recvAll(hang)
	if s, _ := status.FromError(err); len(got) != 0 || (s.Code() != codes.DeadlineExceeded && !errors.Is(err, context.DeadlineExceeded)) {
		return fmt.Errorf("Hang: got %v, %v; want DeadlineExceeded", got, err)
	}
	if err := client.Call(ctx, service, "Unary", str("after"), &answer); err != nil || answer.Value != "unary:after" {
		return fmt.Errorf("Unary after a deadline: got %q, %v", answer.Value, err)
	}
	return nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: ttrpc_stream_peer serve|call SOCKET")
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
		fmt.Fprintln(os.Stderr, "ttrpc_stream_peer:", err)
		os.Exit(1)
	}
}
