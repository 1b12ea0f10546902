// Command redis-client writes and reads keys under a few prefixes in a loop.
package main

import (
	"flag"
	"os"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/redisdemo"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", app.Env("REDIS_ADDR", "cache:6379"), "Redis address host:port (env REDIS_ADDR)")
	password := flag.String("password", os.Getenv("REDIS_PASSWORD"), "Redis password, if any (env REDIS_PASSWORD)")
	prefixes := flag.String("prefixes", app.Env("KEY_PREFIXES", redisdemo.DefaultPrefixes), "comma-separated key prefixes (env KEY_PREFIXES)")
	loop := app.RegisterLoopFlags(flag.CommandLine)
	flag.Parse()

	log := app.NewLogger("redis-client").With("addr", *addr)
	ctx, stop := app.SignalContext()
	defer stop()
	rdb := redisdemo.NewClient(*addr, *password)
	defer func() { _ = rdb.Close() }()
	hostname, _ := os.Hostname()
	c := redisdemo.New(rdb, *prefixes, hostname)
	return app.Exit(log, app.Loop(ctx, log, *loop, c.Round))
}
