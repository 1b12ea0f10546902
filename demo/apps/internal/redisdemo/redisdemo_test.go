package redisdemo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"aeraki.io/aeraki/demo/apps/internal/app"
)

// startRedis starts a real redis-server on a free loopback port, without
// persistence, and returns its address.
func startRedis(t *testing.T, password string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is not installed (apt-get install redis-server; .ci/run installs it): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", t.TempDir()}
	if password != "" {
		args = append(args, "--requirepass", password)
	}
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var out strings.Builder
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			out.WriteString(s.Text() + "\n")
			if strings.Contains(s.Text(), "Ready to accept connections") {
				close(ready)
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatalf("redis-server did not become ready in 10s:\n%s", out.String())
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func TestClientAgainstRedisServer(t *testing.T) {
	addr := startRedis(t, "s3cret")
	rdb := NewClient(addr, "s3cret")
	t.Cleanup(func() { _ = rdb.Close() })
	c := New(rdb, DefaultPrefixes, "test")

	var replies []string
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	err := app.Loop(t.Context(), log, app.LoopConfig{Interval: time.Millisecond, Count: 6, MaxFailures: 1},
		func(ctx context.Context, seq int) (string, error) {
			r, err := c.Round(ctx, seq)
			replies = append(replies, r)
			return r, err
		})
	if err != nil {
		t.Fatalf("Loop: %v", err)
	}
	for _, prefix := range strings.Split(DefaultPrefixes, ",") {
		n, err := rdb.Keys(t.Context(), prefix+"*").Result()
		if err != nil || len(n) != 2 {
			t.Errorf("keys %s* = %v, %v; want 2 keys", prefix, n, err)
		}
	}
	if want := fmt.Sprintf("SET/GET %s = test#6", c.Key(6)); replies[5] != want {
		t.Errorf("reply 6 = %q, want %q", replies[5], want)
	}
}

func TestClientWrongPasswordFails(t *testing.T) {
	addr := startRedis(t, "s3cret")
	rdb := NewClient(addr, "wrong")
	t.Cleanup(func() { _ = rdb.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	err := app.Loop(t.Context(), log, app.LoopConfig{Interval: time.Millisecond, MaxFailures: 2}, New(rdb, "", "test").Round)
	if err == nil {
		t.Fatal("Loop with a wrong password succeeded, want ErrTooManyFailures")
	}
}
