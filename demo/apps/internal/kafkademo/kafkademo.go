// Package kafkademo is the Kafka demo producer and consumer, on franz-go.
package kafkademo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer writes one record per round.
type Producer struct {
	cl    *kgo.Client
	topic string
	from  string
}

// NewProducer returns a producer to the comma-separated seed brokers that
// writes to topic (created by the broker when it allows auto-creation) and puts
// from (e.g. the pod name) into every value. Close it when done.
func NewProducer(brokers, topic, from string, opts ...kgo.Opt) (*Producer, error) {
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(splitList(brokers)...),
		kgo.DefaultProduceTopic(topic),
		kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(10 * time.Second),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return &Producer{cl: cl, topic: topic, from: from}, nil
}

// Close flushes nothing and closes the connections.
func (p *Producer) Close() { p.cl.Close() }

// Value returns the value of round seq.
func (p *Producer) Value(seq int) string { return fmt.Sprintf("%s#%d", p.from, seq) }

// Round writes the record of round seq and waits until the broker has it.
func (p *Producer) Round(ctx context.Context, seq int) (string, error) {
	r := &kgo.Record{Key: fmt.Appendf(nil, "key-%d", seq%10), Value: []byte(p.Value(seq))}
	if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return "", fmt.Errorf("produce to %s: %w", p.topic, err)
	}
	return fmt.Sprintf("produced %s to %s/%d@%d", r.Value, r.Topic, r.Partition, r.Offset), nil
}

// Consumer reads the records of a topic as a member of a consumer group.
type Consumer struct {
	cl      *kgo.Client
	log     *slog.Logger
	timeout time.Duration
}

// NewConsumer returns a consumer of topic in group, starting at the oldest
// record when the group has no committed offset. A round waits up to timeout
// for records and logs each one on log. Close it when done.
func NewConsumer(log *slog.Logger, brokers, topic, group string, timeout time.Duration, opts ...kgo.Opt) (*Consumer, error) {
	opts = append([]kgo.Opt{
		kgo.SeedBrokers(splitList(brokers)...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(group),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AllowAutoTopicCreation(),
	}, opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	return &Consumer{cl: cl, log: log, timeout: timeout}, nil
}

// Close leaves the group and closes the connections.
func (c *Consumer) Close() { c.cl.Close() }

// Poll waits up to the consumer's timeout for records and returns them; a
// timeout with no record is not an error.
func (c *Consumer) Poll(ctx context.Context) ([]*kgo.Record, error) {
	pctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	fetches := c.cl.PollFetches(pctx)
	var errs []error
	fetches.EachError(func(topic string, partition int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("fetch %s/%d: %w", topic, partition, err))
		}
	})
	return fetches.Records(), errors.Join(errs...)
}

// Round polls once, logs every record read and returns how many there were.
func (c *Consumer) Round(ctx context.Context, _ int) (string, error) {
	records, err := c.Poll(ctx)
	for _, r := range records {
		c.log.Info("record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset,
			"key", string(r.Key), "value", string(r.Value))
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("consumed %d records", len(records)), nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
