// Command kafka-consumer reads a topic as a member of a consumer group and
// logs every record.
package main

import (
	"flag"
	"os"
	"time"

	"aeraki.io/aeraki/demo/apps/internal/app"
	"aeraki.io/aeraki/demo/apps/internal/kafkademo"
)

func main() { os.Exit(run()) }

func run() int {
	brokers := flag.String("brokers", app.Env("KAFKA_BROKERS", "kafka:9092"), "comma-separated seed brokers (env KAFKA_BROKERS)")
	topic := flag.String("topic", app.Env("KAFKA_TOPIC", "demo"), "topic (env KAFKA_TOPIC)")
	group := flag.String("group", app.Env("KAFKA_GROUP", "demo-consumer"), "consumer group (env KAFKA_GROUP)")
	poll := flag.Duration("poll-timeout", 5*time.Second, "how long one poll waits for records")
	loop := app.RegisterLoopFlags(flag.CommandLine)
	flag.Parse()

	log := app.NewLogger("kafka-consumer").With("brokers", *brokers, "topic", *topic, "group", *group)
	ctx, stop := app.SignalContext()
	defer stop()
	c, err := kafkademo.NewConsumer(log, *brokers, *topic, *group, *poll)
	if err != nil {
		return app.Exit(log, err)
	}
	defer c.Close()
	return app.Exit(log, app.Loop(ctx, log, *loop, c.Round))
}
