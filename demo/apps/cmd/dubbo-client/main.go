// Command dubbo-client calls DemoService.sayHello in a loop.
package main

import (
	"flag"
	"os"
	"time"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/dubbodemo"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", app.Env("DUBBO_ADDR", "dubbo-sample-provider:20880"), "provider address host:port (env DUBBO_ADDR)")
	timeout := flag.Duration("timeout", 3*time.Second, "request timeout")
	loop := app.RegisterLoopFlags(flag.CommandLine)
	flag.Parse()

	log := app.NewLogger("dubbo-client").With("addr", *addr, "interface", dubbodemo.Interface)
	ctx, stop := app.SignalContext()
	defer stop()
	hostname, _ := os.Hostname()
	c, err := dubbodemo.NewClient(*addr, hostname, *timeout)
	if err != nil {
		return app.Exit(log, err)
	}
	return app.Exit(log, app.Loop(ctx, log, *loop, c.Round))
}
