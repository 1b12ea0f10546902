// Command dubbo-server serves DemoService.sayHello with the dubbo protocol;
// replies carry its VERSION.
package main

import (
	"flag"
	"os"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/dubbodemo"
)

func main() { os.Exit(run()) }

func run() int {
	port := flag.Int("port", dubbodemo.Port, "dubbo protocol port, on every address")
	version := flag.String("version", app.Env("VERSION", "v1"), "version label put into replies (env VERSION)")
	flag.Parse()

	log := app.NewLogger("dubbo-server").With("version", *version, "interface", dubbodemo.Interface)
	ctx, stop := app.SignalContext()
	defer stop()
	hostname, _ := os.Hostname()
	served := make(chan error, 1)
	go func() { served <- dubbodemo.Serve(log, *port, *version, hostname) }()
	log.Info("serving", "port", *port)
	select {
	case err := <-served:
		return app.Exit(log, err)
	case <-ctx.Done():
		// dubbo-go cannot stop a server: open connections end with the process.
		return app.Exit(log, nil)
	}
}
