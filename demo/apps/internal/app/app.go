// Package app holds what every demo program shares: flag defaults from the
// environment, a structured logger, a context cancelled on SIGTERM, and the
// client loop.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// Env returns the environment variable name, or def when it is unset or empty.
func Env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// NewLogger returns a JSON logger on stderr that names the program.
func NewLogger(program string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("program", program)
}

// SignalContext returns a context cancelled on SIGTERM or SIGINT.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

// LoopConfig controls a client loop.
type LoopConfig struct {
	// Interval is the pause between two calls.
	Interval time.Duration
	// MaxFailures ends the loop with an error after that many failed calls in a
	// row; 0 never ends it.
	MaxFailures int
	// Count ends the loop after that many calls; 0 loops until the context ends.
	Count int
}

// RegisterLoopFlags defines -interval, -max-failures and -count on fs, with
// defaults from INTERVAL, MAX_FAILURES and COUNT.
func RegisterLoopFlags(fs *flag.FlagSet) *LoopConfig {
	c := &LoopConfig{}
	interval, err := time.ParseDuration(Env("INTERVAL", "1s"))
	if err != nil {
		interval = time.Second
	}
	fs.DurationVar(&c.Interval, "interval", interval, "pause between two calls (env INTERVAL)")
	fs.IntVar(&c.MaxFailures, "max-failures", envInt("MAX_FAILURES", 0), "exit non-zero after this many failures in a row; 0 never (env MAX_FAILURES)")
	fs.IntVar(&c.Count, "count", envInt("COUNT", 0), "stop after this many calls; 0 loops for ever (env COUNT)")
	return c
}

func envInt(name string, def int) int {
	n, err := strconv.Atoi(Env(name, strconv.Itoa(def)))
	if err != nil {
		return def
	}
	return n
}

// ErrTooManyFailures is returned by Loop when MaxFailures calls in a row failed.
var ErrTooManyFailures = errors.New("too many failures in a row")

// Call is one round of a client: it returns the reply to log.
type Call func(ctx context.Context, seq int) (string, error)

// Loop calls call every c.Interval until ctx ends (nil), c.Count calls were
// made (nil) or c.MaxFailures calls in a row failed (ErrTooManyFailures).
func Loop(ctx context.Context, log *slog.Logger, c LoopConfig, call Call) error {
	failures := 0
	ticker := time.NewTicker(max(c.Interval, time.Millisecond))
	defer ticker.Stop()
	for seq := 1; c.Count == 0 || seq <= c.Count; seq++ {
		start := time.Now()
		reply, err := call(ctx, seq)
		latency := time.Since(start)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			log.Warn("call failed", "seq", seq, "latency", latency, "failures", failures, "error", err)
			if c.MaxFailures > 0 && failures >= c.MaxFailures {
				return fmt.Errorf("%w: %d: %w", ErrTooManyFailures, failures, err)
			}
		default:
			failures = 0
			log.Info("reply", "seq", seq, "latency", latency, "reply", reply)
		}
		if c.Count != 0 && seq == c.Count {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
	return nil
}

// Exit logs err and returns the process exit code for it.
func Exit(log *slog.Logger, err error) int {
	if err != nil {
		log.Error("exiting", "error", err)
		return 1
	}
	log.Info("stopped")
	return 0
}
