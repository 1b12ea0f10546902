// Command kafka-producer writes one record to a topic per interval.
package main

import (
	"flag"
	"os"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/kafkademo"
)

func main() { os.Exit(run()) }

func run() int {
	brokers := flag.String("brokers", app.Env("KAFKA_BROKERS", "kafka:9092"), "comma-separated seed brokers (env KAFKA_BROKERS)")
	topic := flag.String("topic", app.Env("KAFKA_TOPIC", "demo"), "topic (env KAFKA_TOPIC)")
	loop := app.RegisterLoopFlags(flag.CommandLine)
	flag.Parse()

	log := app.NewLogger("kafka-producer").With("brokers", *brokers, "topic", *topic)
	ctx, stop := app.SignalContext()
	defer stop()
	hostname, _ := os.Hostname()
	p, err := kafkademo.NewProducer(*brokers, *topic, hostname)
	if err != nil {
		return app.Exit(log, err)
	}
	defer p.Close()
	return app.Exit(log, app.Loop(ctx, log, *loop, p.Round))
}
