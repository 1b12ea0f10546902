// Command thrift-server serves HelloService; replies carry its VERSION.
package main

import (
	"flag"
	"os"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/thriftdemo"
)

func main() { os.Exit(run()) }

func run() int {
	addr := flag.String("addr", app.Env("LISTEN_ADDR", ":9090"), "listen address (env LISTEN_ADDR)")
	version := flag.String("version", app.Env("VERSION", "v1"), "version label put into replies (env VERSION)")
	flag.Parse()

	log := app.NewLogger("thrift-server").With("version", *version)
	ctx, stop := app.SignalContext()
	defer stop()
	hostname, _ := os.Hostname()
	srv, err := thriftdemo.Listen(log, *addr, *version, hostname)
	if err != nil {
		return app.Exit(log, err)
	}
	log.Info("listening", "addr", srv.Addr().String())
	go func() {
		<-ctx.Done()
		log.Info("stopping")
		_ = srv.Stop()
	}()
	return app.Exit(log, srv.Serve())
}
