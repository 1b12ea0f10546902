// Command thrift-client calls HelloService.sayHello in a loop.
package main

import (
	"flag"
	"os"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/thriftdemo"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", app.Env("THRIFT_ADDR", "thrift-sample-server:9090"), "server address host:port (env THRIFT_ADDR)")
	loop := app.RegisterLoopFlags(flag.CommandLine)
	flag.Parse()

	log := app.NewLogger("thrift-client").With("addr", *addr)
	ctx, stop := app.SignalContext()
	defer stop()
	hostname, _ := os.Hostname()
	c := thriftdemo.NewClient(*addr, hostname)
	defer c.Close()
	return app.Exit(log, app.Loop(ctx, log, *loop, c.Round))
}
