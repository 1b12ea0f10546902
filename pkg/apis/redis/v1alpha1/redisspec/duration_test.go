package redisspec

import (
	"encoding/json"
	"testing"
	"time"
)

func TestDurationJSON(t *testing.T) {
	var s RedisSettings
	if err := json.Unmarshal([]byte(`{"opTimeout":"1m30s","bufferFlushTimeout":"1.5ms"}`), &s); err != nil {
		t.Fatal(err)
	}
	if s.OpTimeout.Duration != 90*time.Second || s.BufferFlushTimeout.Duration != 1500*time.Microsecond {
		t.Errorf("read %v and %v, want 1m30s and 1.5ms", s.OpTimeout, s.BufferFlushTimeout)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"opTimeout":"1m30s","bufferFlushTimeout":"1.5ms"}`; got != want {
		t.Errorf("wrote %s, want %s", got, want)
	}
	for _, bad := range []string{`{"opTimeout":5}`, `{"opTimeout":"5"}`, `{"opTimeout":"soon"}`} {
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Errorf("%s read without error", bad)
		}
	}
}
