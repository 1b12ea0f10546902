package xds

import (
	"context"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	istiobackoff "istio.io/istio/pkg/backoff"
)

// newExponentialBackOff returns an exponential backoff that never gives up: the
// watcher must keep trying for as long as the process runs.
func newExponentialBackOff(initial, maxInterval time.Duration) *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(initial),
		backoff.WithMaxInterval(maxInterval),
		backoff.WithMaxElapsedTime(0),
	)
}

// adscBackOff adapts cenkalti's ExponentialBackOff to istio's backoff.BackOff, the
// interface adsc uses to schedule reconnects after a stream breaks. adsc calls it
// from its receive goroutine and from timer goroutines, and cenkalti's type is not
// safe for concurrent use, hence the lock.
type adscBackOff struct {
	mu sync.Mutex
	b  *backoff.ExponentialBackOff
}

var _ istiobackoff.BackOff = (*adscBackOff)(nil)

func newADSCBackOff(initial, maxInterval time.Duration) *adscBackOff {
	return &adscBackOff{b: newExponentialBackOff(initial, maxInterval)}
}

// NextBackOff never returns backoff.Stop: adsc would schedule a reconnect with a
// negative delay (immediately, in a hot loop).
func (a *adscBackOff) NextBackOff() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.b.NextBackOff(); d != backoff.Stop {
		return d
	}
	return a.b.MaxInterval
}

func (a *adscBackOff) Reset() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.b.Reset()
}

// RetryWithContext runs operation until it succeeds or ctx is done, waiting
// NextBackOff between attempts. It starts from a reset backoff, like istio's own.
func (a *adscBackOff) RetryWithContext(ctx context.Context, operation func() error) error {
	return backoff.Retry(operation, backoff.WithContext(a, ctx))
}
