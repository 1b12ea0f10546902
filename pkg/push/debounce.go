package push

import (
	"context"
	"time"
)

// DebounceOptions bound how long changes wait before a push.
type DebounceOptions struct {
	// Quiet is how long no new change must arrive before a push.
	Quiet time.Duration
	// Max is the longest a change waits while changes keep arriving.
	Max time.Duration
}

// Debounce merges the signals from trigger and calls push with the number merged:
// once Quiet has passed without a new signal, or Max after the oldest unpushed one.
// Only one push runs at a time; signals that arrive meanwhile go into the next push.
// It returns when ctx is done, after a running push has returned.
func Debounce(ctx context.Context, trigger <-chan struct{}, opts DebounceOptions, push func(ctx context.Context, merged int)) {
	var (
		pending     int
		first, last time.Time
		timer       *time.Timer
		timerC      <-chan time.Time
		busy        bool
		done        = make(chan struct{})
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
		untilQuiet := opts.Quiet - now.Sub(last)
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
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
			last = time.Now()
			if pending == 0 {
				first = last
			}
			pending++
			maybePush()
		case <-timerC:
			timerC = nil
			maybePush()
		case <-done:
			busy = false
			maybePush()
		}
	}
}
