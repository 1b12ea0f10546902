package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

func TestLoopStopsAfterMaxFailuresInARow(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	calls := 0
	err := Loop(t.Context(), log, LoopConfig{MaxFailures: 2}, func(context.Context, int) (string, error) {
		calls++
		if calls == 2 { // a success resets the count
			return "ok", nil
		}
		return "", errors.New("boom")
	})
	if !errors.Is(err, ErrTooManyFailures) || calls != 4 {
		t.Fatalf("Loop = %v after %d calls, want ErrTooManyFailures after 4", err, calls)
	}
}

func TestLoopCount(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var seqs []int
	err := Loop(t.Context(), log, LoopConfig{Count: 3}, func(_ context.Context, seq int) (string, error) {
		seqs = append(seqs, seq)
		return "ok", nil
	})
	if err != nil || len(seqs) != 3 || seqs[2] != 3 {
		t.Fatalf("Loop = %v, seqs %v; want nil, [1 2 3]", err, seqs)
	}
}
