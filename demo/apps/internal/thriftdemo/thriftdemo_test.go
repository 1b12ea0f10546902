package thriftdemo

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"aeraki.io/aeraki/demo/apps/internal/app"
)

func TestClientCallsServer(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := Listen(log, "127.0.0.1:0", "v2", "server-0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()

	c := NewClient(srv.Addr().String(), "tester")
	reply, err := c.Call(t.Context())
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if reply.Version != "v2" || reply.Host != "server-0" || !strings.Contains(reply.Message, "hello tester") {
		t.Errorf("reply = %+v, want version v2 from server-0 greeting tester", reply)
	}
	// The loop reuses the connection.
	if err := app.Loop(t.Context(), log, app.LoopConfig{Interval: time.Millisecond, Count: 3, MaxFailures: 1}, c.Round); err != nil {
		t.Fatalf("Loop: %v", err)
	}
	c.Close()

	if err := srv.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := NewClient(srv.Addr().String(), "late").Call(t.Context()); err == nil {
		t.Error("Call after Stop succeeded")
	}
}
