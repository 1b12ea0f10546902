package push

import (
	"context"
	"time"
)

// DefaultSettle is DebounceOptions.Settle by default: ten times istiod's own
// debounce (PILOT_DEBOUNCE_AFTER, 100ms by default).
const DefaultSettle = time.Second

// DebounceOptions bound how long changes wait before a push.
type DebounceOptions struct {
	// Quiet is how long no new change must arrive before a push.
	Quiet time.Duration
	// Max is the longest a change waits while changes keep arriving.
	Max time.Duration
	// Settle is how long no change of the user's config (signals on the settle
	// channel) must arrive before a push: longer than istiod's own debounce, so that
	// objects applied together reach one push even when istiod sends them in two,
	// or later than the apiserver shows the controller the others (see package xds).
	Settle time.Duration
}

// Debounce merges the signals from trigger and settle and calls push with the
// number merged: once Quiet has passed without a new signal and Settle without a
// new settle signal, or Max after the oldest unpushed one. Only one push runs at a
// time; signals that arrive meanwhile go into the next push. It returns when ctx is
// done, after a running push has returned.
func Debounce(ctx context.Context, trigger, settle <-chan struct{}, opts DebounceOptions, push func(ctx context.Context, merged int)) {
	var (
		pending     int
		first, last time.Time
		// settled is when the last settle signal came.
		settled time.Time
		timer   *time.Timer
		timerC  <-chan time.Time
		busy    bool
		done    = make(chan struct{})
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		if busy {
			<-done
		}
	}()
	arm := func(d time.Duration) {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		timerC = timer.C
	}
	// maybePush pushes if the pending signals are due, or waits for when they are.
	maybePush := func() {
		if busy || pending == 0 {
			return
		}
		now := time.Now()
		untilQuiet := max(opts.Quiet-now.Sub(last), opts.Settle-now.Sub(settled))
		untilMax := opts.Max - now.Sub(first)
		if untilQuiet > 0 && untilMax > 0 {
			arm(min(untilQuiet, untilMax))
			return
		}
		merged := pending
		pending = 0
		busy = true
		go func() {
			push(ctx, merged)
			done <- struct{}{}
		}()
	}
	signal := func(now time.Time) {
		last = now
		if pending == 0 {
			first = last
		}
		pending++
		maybePush()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
			signal(time.Now())
		case <-settle:
			settled = time.Now()
			signal(settled)
		case <-timerC:
			timerC = nil
			maybePush()
		case <-done:
			busy = false
			maybePush()
		}
	}
}
