package xds

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestADSCBackOff(t *testing.T) {
	b := newADSCBackOff(10*time.Millisecond, 40*time.Millisecond)
	// Randomisation is ±50%, so the bounds are loose; what matters is the cap and
	// that it never returns backoff.Stop (-1), which adsc would take as "now".
	for i := range 50 {
		d := b.NextBackOff()
		if d <= 0 || d > 60*time.Millisecond {
			t.Fatalf("attempt %d: NextBackOff = %v, want in (0, 60ms]", i, d)
		}
	}
	b.Reset()
	if d := b.NextBackOff(); d > 15*time.Millisecond {
		t.Errorf("after Reset: NextBackOff = %v, want about 10ms", d)
	}

	calls := 0
	err := b.RetryWithContext(context.Background(), func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("RetryWithContext = %v after %d calls, want nil after 3", err, calls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err = b.RetryWithContext(ctx, func() error { return errors.New("never") })
	if err == nil {
		t.Error("RetryWithContext with an expiring context returned nil")
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.DomainSuffix != DefaultDomainSuffix || o.Namespace != DefaultNamespace ||
		o.InitialBackoff != DefaultInitialBackoff || o.MaxBackoff != DefaultMaxBackoff {
		t.Errorf("defaults: %+v", o)
	}
	o = Options{InitialBackoff: time.Minute, MaxBackoff: time.Second}.withDefaults()
	if o.MaxBackoff != time.Minute {
		t.Errorf("MaxBackoff below InitialBackoff not raised: %+v", o)
	}
}

func TestRunErrors(t *testing.T) {
	if err := NewWatcher(Options{}, nil).Run(context.Background()); err == nil {
		t.Error("Run without address: want error")
	}
	w := NewWatcher(Options{Address: "127.0.0.1:1"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Errorf("Run with a done context = %v, want nil", err)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run: want error")
	}
	if w.Connected() || w.HasSynced() {
		t.Error("never connected watcher reports connected or synced")
	}
}
