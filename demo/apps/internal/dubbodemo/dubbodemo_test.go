package dubbodemo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"aeraki.io/aeraki/demo/apps/internal/app"
)

// consumerAddrEnv makes the test binary the consumer of the provider at that
// address instead of running tests. dubbo-go 3.3.1 keeps process-wide config: a
// consumer in the provider's process inherits its protocol config with an empty TLS
// config, dials TLS without a key pair and panics. So the consumer runs in a child
// process, as it does in the demo.
const consumerAddrEnv = "DUBBODEMO_CONSUMER_ADDR"

func TestMain(m *testing.M) {
	if addr := os.Getenv(consumerAddrEnv); addr != "" {
		os.Exit(consume(addr))
	}
	os.Exit(m.Run())
}

// consume calls the provider once, prints the reply, then loops as the demo client
// does; it returns the process's exit code.
func consume(addr string) int {
	ctx := context.Background()
	c, err := NewClient(addr, "tester", 3*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	reply, err := c.Call(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Call: %v\n", err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := app.Loop(ctx, log, app.LoopConfig{Interval: time.Millisecond, Count: 3, MaxFailures: 1}, c.Round); err != nil {
		fmt.Fprintf(os.Stderr, "Loop: %v\n", err)
		return 1
	}
	fmt.Printf("REPLY=%s\n", reply)
	return 0
}

func TestClientCallsServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	served := make(chan error, 1)
	go func() { served <- Serve(log, port, "v2", "server-0") }()

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			_ = conn.Close()
			break
		}
		select {
		case err := <-served:
			t.Fatalf("Serve: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), consumerAddrEnv+"="+addr)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("consumer: %v\n%s", err, out)
	}
	if want := "REPLY=hello tester, from server-0 v2\n"; !strings.Contains(string(out), want) {
		t.Errorf("consumer output lacks %q:\n%s", want, out)
	}
}
