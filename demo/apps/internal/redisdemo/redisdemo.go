// Package redisdemo is the Redis demo client: each round writes a key under
// one of a few prefixes and reads it back, so that key-prefix routes of a
// RedisService show up in the proxy's statistics.
package redisdemo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefixes are the key prefixes the client cycles through; "user:" is
// the prefix route of demo/redis/redis-sample.yaml.
const DefaultPrefixes = "user:,order:,session:"

// NewClient returns a client for one Redis address. It speaks RESP2 and sends
// no CLIENT SETINFO, which Envoy's redis_proxy does not know.
func NewClient(addr, password string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Password:        password,
		Protocol:        2,
		DisableIdentity: true,
		DialTimeout:     2 * time.Second,
		ReadTimeout:     2 * time.Second,
		WriteTimeout:    2 * time.Second,
	})
}

// Client runs rounds of SET then GET.
type Client struct {
	rdb      redis.Cmdable
	prefixes []string
	from     string
}

// New returns a Client that uses rdb, cycles through the comma-separated
// prefixes and puts from (e.g. the pod name) into every value.
func New(rdb redis.Cmdable, prefixes, from string) *Client {
	var ps []string
	for p := range strings.SplitSeq(prefixes, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		ps = []string{""}
	}
	return &Client{rdb: rdb, prefixes: ps, from: from}
}

// Key returns the key of round seq.
func (c *Client) Key(seq int) string {
	return fmt.Sprintf("%sdemo-%d", c.prefixes[seq%len(c.prefixes)], seq%100)
}

// Round writes the key of round seq with a one-minute expiry, reads it back and
// returns a summary; a value read back that differs is an error.
func (c *Client) Round(ctx context.Context, seq int) (string, error) {
	key := c.Key(seq)
	value := fmt.Sprintf("%s#%d", c.from, seq)
	if err := c.rdb.Set(ctx, key, value, time.Minute).Err(); err != nil {
		return "", fmt.Errorf("SET %s: %w", key, err)
	}
	got, err := c.rdb.Get(ctx, key).Result()
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", key, err)
	}
	if got != value {
		return "", fmt.Errorf("GET %s = %q, want %q", key, got, value)
	}
	return fmt.Sprintf("SET/GET %s = %s", key, got), nil
}
