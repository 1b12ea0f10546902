package kafkademo

import (
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"aeraki.io/aeraki/demo/apps/internal/app"
)

func TestProducerAndConsumerAgainstKfake(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	p, err := NewProducer(brokers, "demo", "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	const n = 5
	if err := app.Loop(t.Context(), log, app.LoopConfig{Interval: time.Millisecond, Count: n, MaxFailures: 1}, p.Round); err != nil {
		t.Fatalf("producer: %v", err)
	}

	c, err := NewConsumer(log, brokers, "demo", "demo-consumer", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	var got []string
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		records, err := c.Poll(t.Context())
		if err != nil {
			t.Fatalf("poll: %v", err)
		}
		for _, r := range records {
			got = append(got, string(r.Value))
		}
	}
	var want []string
	for seq := 1; seq <= n; seq++ {
		want = append(want, p.Value(seq))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("consumed %q, want %q", got, want)
	}
	if _, err := c.Round(t.Context(), 1); err != nil {
		t.Errorf("Round on a drained topic: %v", err)
	}
}
