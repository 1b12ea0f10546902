package push

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// bubble runs f in a synctest bubble and fails the test run if f has not returned
// after ten seconds of real time. Fake time only advances while every goroutine of
// the bubble is blocked, so a debouncer that spins (one that ignores its ceiling and
// rearms its timer at once, say) would otherwise hang until the test binary's
// timeout.
func bubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		synctest.Test(t, f)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		panic(t.Name() + ": still running after 10s of real time: the debouncer spins or never returns")
	}
}

type pushRecord struct {
	at     time.Duration
	merged int
}

// runDebounce starts Debounce in a bubble with a recording push that takes pushTime.
// It returns the trigger and settle channels.
func runDebounce(t *testing.T, opts DebounceOptions, pushTime time.Duration) (chan<- struct{}, chan<- struct{}, func() []pushRecord, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	trigger, settle := make(chan struct{}), make(chan struct{})
	start := time.Now()
	var mu sync.Mutex
	var pushes []pushRecord
	inFlight := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Debounce(ctx, trigger, settle, opts, func(_ context.Context, merged int) {
			mu.Lock()
			inFlight++
			if inFlight > 1 {
				t.Errorf("%d pushes in flight", inFlight)
			}
			pushes = append(pushes, pushRecord{time.Since(start), merged})
			mu.Unlock()
			time.Sleep(pushTime)
			mu.Lock()
			inFlight--
			mu.Unlock()
		})
	}()
	get := func() []pushRecord {
		mu.Lock()
		defer mu.Unlock()
		return append([]pushRecord(nil), pushes...)
	}
	stop := func() {
		cancel()
		<-done
	}
	return trigger, settle, get, stop
}

func TestDebounceQuietPeriod(t *testing.T) {
	bubble(t, func(t *testing.T) {
		trigger, _, pushes, stop := runDebounce(t, DebounceOptions{Quiet: 500 * time.Millisecond, Max: 10 * time.Second}, 0)
		defer stop()
		// Three signals 100 ms apart: one push, 500 ms after the last.
		for range 3 {
			trigger <- struct{}{}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := pushes()
		if len(got) != 1 || got[0].merged != 3 || got[0].at != 700*time.Millisecond {
			t.Fatalf("pushes = %+v, want one push of 3 at 700ms", got)
		}
	})
}

func TestDebounceCeiling(t *testing.T) {
	bubble(t, func(t *testing.T) {
		trigger, _, pushes, stop := runDebounce(t, DebounceOptions{Quiet: 500 * time.Millisecond, Max: 2 * time.Second}, 0)
		defer stop()
		// A signal every 300 ms from 0 to 2.7s never leaves a quiet period: the ceiling
		// pushes the seven signals up to 1.8s at 2s; the last three go out after a quiet
		// period, at 3.2s.
		for range 10 {
			trigger <- struct{}{}
			time.Sleep(300 * time.Millisecond)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got := pushes()
		want := []pushRecord{{2 * time.Second, 7}, {3200 * time.Millisecond, 3}}
		if !slices.Equal(got, want) {
			t.Fatalf("pushes = %+v, want %+v", got, want)
		}
	})
}

func TestDebounceOnePushInFlight(t *testing.T) {
	bubble(t, func(t *testing.T) {
		trigger, _, pushes, stop := runDebounce(t, DebounceOptions{Quiet: 100 * time.Millisecond, Max: time.Second}, 3*time.Second)
		defer stop()
		trigger <- struct{}{}
		time.Sleep(200 * time.Millisecond) // first push starts at 100ms and runs 3s
		for range 5 {
			trigger <- struct{}{}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		got := pushes()
		// The five signals wait for the running push, then go out together when it ends.
		want := []pushRecord{{100 * time.Millisecond, 1}, {3100 * time.Millisecond, 5}}
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("pushes = %+v, want %+v", got, want)
		}
	})
}

func TestDebounceSettle(t *testing.T) {
	bubble(t, func(t *testing.T) {
		trigger, settle, pushes, stop := runDebounce(t, DebounceOptions{Quiet: 100 * time.Millisecond, Max: 10 * time.Second, Settle: time.Second}, 0)
		defer stop()
		// A settle signal at 0 and a plain one at 300ms: the push waits for the config
		// to have been still for a second, not for the quiet period after the last.
		settle <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		trigger <- struct{}{}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		// A plain signal alone afterwards waits the quiet period only.
		trigger <- struct{}{}
		time.Sleep(time.Second)
		synctest.Wait()
		// Settle signals keep coming: the ceiling still holds.
		for range 20 {
			settle <- struct{}{}
			time.Sleep(600 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := pushes()
		want := []pushRecord{{time.Second, 2}, {2400 * time.Millisecond, 1}, {13300 * time.Millisecond, 17}, {15700 * time.Millisecond, 3}}
		if !slices.Equal(got, want) {
			t.Fatalf("pushes = %+v, want %+v", got, want)
		}
	})
}

func TestDebounceStopsWithContext(t *testing.T) {
	bubble(t, func(t *testing.T) {
		trigger, _, pushes, stop := runDebounce(t, DebounceOptions{Quiet: time.Second, Max: 5 * time.Second}, 0)
		trigger <- struct{}{}
		stop() // returns although a signal is pending
		synctest.Wait()
		if got := pushes(); len(got) != 0 {
			t.Fatalf("pushes after stop = %+v", got)
		}
	})
}
