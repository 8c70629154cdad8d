package bench

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Errors returned by bench. Every error Run, Compare or the parsers return
// wraps one of these, so callers can tell bad input from a broker failure with
// errors.Is.
var (
	// ErrConfig reports invalid options.
	ErrConfig = errors.New("bench: invalid configuration")
	// ErrConnect reports a broker that could not be reached or refused the
	// connection (bad credentials, unknown vhost).
	ErrConnect = errors.New("bench: cannot connect")
	// ErrTopology reports a failure to declare, bind or consume from the
	// exchanges and queues of the run.
	ErrTopology = errors.New("bench: topology")
	// ErrBroker reports a connection or channel closed by the broker during
	// the run.
	ErrBroker = errors.New("bench: broker closed")
	// ErrCancelled reports a consumer cancelled by the broker, typically
	// because its queue was deleted.
	ErrCancelled = errors.New("bench: consumer cancelled by broker")
	// ErrScenario reports an unreadable or invalid scenario file.
	ErrScenario = errors.New("bench: scenario")
)

// ClientKind selects the AMQP client engine that drives producers and
// consumers.
type ClientKind string

// Client engines.
const (
	// ClientAMQP091 drives producers and consumers through amqp091-go, one
	// write per publish and per ack (the default).
	ClientAMQP091 ClientKind = "amqp091"
	// ClientFast drives them over raw connections with buffered writes,
	// batched flushes and allocation-free frame parsing, so the load
	// generator costs less CPU per message. Topology setup still uses
	// amqp091-go.
	ClientFast ClientKind = "fast"
)

// BodyKind selects how message bodies are filled after the latency header.
type BodyKind string

// Body kinds.
const (
	// BodyRandom fills bodies with pseudo-random bytes (incompressible).
	BodyRandom BodyKind = "random"
	// BodyZeros fills bodies with zero bytes (maximally compressible).
	BodyZeros BodyKind = "zeros"
	// BodyJSON makes each body a JSON document: {"ts":...,"p":...,"pad":"..."}.
	BodyJSON BodyKind = "json"
)

// Config describes one load-generation run. The zero value is not valid:
// start from DefaultConfig. Field comments name the matching warrenperf flag.
type Config struct {
	// ID labels the run in progress lines, connection names and results;
	// Run picks warrenperf-HHMMSS when empty (--id).
	ID string `json:"id"`
	// URIs are the brokers; producer i and consumer j connect to
	// URIs[i%len] and URIs[j%len] (--uri, repeatable).
	URIs []string `json:"uris"`
	// Producers is the number of producers, one connection each (-x).
	Producers int `json:"producers"`
	// Consumers is the number of consumers, one connection each (-y).
	Consumers int `json:"consumers"`
	// Queue is the queue name used when QueuePattern is empty (-u).
	Queue string `json:"queue"`
	// QueuePattern is a fmt pattern with one %d, expanded for 1..QueueCount
	// (--queue-pattern).
	QueuePattern string `json:"queue_pattern,omitempty"`
	// QueueCount is the number of queues made from QueuePattern (--queue-count).
	QueueCount int `json:"queue_count"`
	// Exchange is the exchange to publish to; "" is the default exchange,
	// which routes by queue name (-e).
	Exchange string `json:"exchange"`
	// ExchangeType is the type of Exchange when bench declares it (-t).
	ExchangeType string `json:"exchange_type"`
	// RoutingKey overrides the routing and binding key (-k). When empty,
	// producers publish with the name of their queue.
	RoutingKey string `json:"routing_key,omitempty"`
	// TopicBindings makes bench bind that many wildcard patterns
	// (stock.<n>.* and #.<n>, alternately) spread over the queues, and
	// producers publish random keys matching one of them each
	// (--topic-bindings).
	TopicBindings int `json:"topic_bindings,omitempty"`
	// Size is the message body size in bytes (-s).
	Size int `json:"size"`
	// BodyKind fills the bodies (--body-kind).
	BodyKind BodyKind `json:"body_kind"`
	// ProducerMessages is the number of messages each producer publishes;
	// 0 is unlimited (-C).
	ProducerMessages int64 `json:"producer_messages"`
	// ConsumerMessages is the number of messages each consumer receives
	// before stopping; 0 is unlimited (-D).
	ConsumerMessages int64 `json:"consumer_messages"`
	// Duration bounds the run; 0 runs until the message counts are reached
	// or the context ends (-z, seconds).
	Duration time.Duration `json:"duration"`
	// Rate is the publish rate per producer in messages per second; 0 is as
	// fast as possible (-r).
	Rate float64 `json:"rate"`
	// Confirm is the publisher-confirm window: unconfirmed messages each
	// producer may have outstanding; 0 disables confirms (-c).
	Confirm int `json:"confirm"`
	// Persistent publishes with delivery mode 2 (-f persistent).
	Persistent bool `json:"persistent"`
	// Mandatory publishes with the mandatory flag, counting basic.return
	// (-f mandatory).
	Mandatory bool `json:"mandatory"`
	// AutoAck consumes without acknowledgements (-a).
	AutoAck bool `json:"autoack"`
	// Prefetch is the consumer QoS prefetch count; 0 is unlimited (-q).
	Prefetch int `json:"prefetch"`
	// MultiAckEvery acknowledges with multiple=true every that many
	// messages; 0 or 1 acknowledges each message (-A).
	MultiAckEvery int `json:"multi_ack_every"`
	// QueueArgs are the x-arguments of declared queues (--queue-args).
	QueueArgs map[string]any `json:"queue_args,omitempty"`
	// ConsumerArgs are the arguments of basic.consume, e.g.
	// x-stream-offset=first (--consumer-args).
	ConsumerArgs map[string]any `json:"consumer_args,omitempty"`
	// Priorities, when positive, makes producers publish with priorities
	// 0..Priorities-1 in turn, for priority queues (--priorities).
	Priorities int `json:"priorities,omitempty"`
	// ConsumerRate bounds each consumer's rate in messages per second; 0
	// is as fast as possible (--consumer-rate).
	ConsumerRate float64 `json:"consumer_rate,omitempty"`
	// Predeclared uses existing exchanges and queues: nothing is declared,
	// bound or deleted (--predeclared).
	Predeclared bool `json:"predeclared"`
	// Durable declares durable queues and exchanges. Nil means durable when
	// Persistent (--durable).
	Durable *bool `json:"durable,omitempty"`
	// KeepTopology leaves declared queues and exchanges in place after the
	// run instead of deleting them (--keep).
	KeepTopology bool `json:"keep_topology,omitempty"`
	// Backlog, when positive, runs in two phases: producers first publish
	// Backlog messages in total with no consumer attached, then consumers
	// drain them (--backlog).
	Backlog int64 `json:"backlog,omitempty"`
	// BacklogSlice is the slice size for the backlog publish rate report
	// (--backlog-slice).
	BacklogSlice int64 `json:"backlog_slice,omitempty"`
	// Client is the engine of producers and consumers; empty means
	// ClientAMQP091 (--client).
	Client ClientKind `json:"client,omitempty"`
	// DialTimeout bounds the TCP connect and AMQP handshake (--dial-timeout).
	DialTimeout time.Duration `json:"dial_timeout"`
	// ChannelsPerConnection puts that many producers (and, separately,
	// consumers) on one connection, a channel each, as PerfTest's
	// --producer-channel-count does: 10,000 producers need 100 connections
	// at 100 (--channels-per-connection; amqp091 engine only).
	ChannelsPerConnection int `json:"channels_per_connection,omitempty"`
	// ExclusiveQueues makes each consumer declare a server-named,
	// exclusive queue of its own and consume from it, as RPC clients do
	// for their replies; producers publish to those queues in turn
	// (--exclusive-queues).
	ExclusiveQueues bool `json:"exclusive_queues,omitempty"`
	// Churn runs that many workers, each on a connection of its own, that
	// declare a server-named exclusive queue, bind it to amq.direct and
	// delete it, as fast as they can, timing each cycle (--churn).
	Churn int `json:"churn,omitempty"`
	// BrokerPID, when set, is the broker's process: its resident memory,
	// open files and CPU time are read from /proc before the run, once
	// connected, at the end and after Settle (--broker-pid).
	BrokerPID int `json:"broker_pid,omitempty"`
	// BrokerDir, when set, is the broker's data directory, whose size is
	// read with the broker's other figures (--broker-dir).
	BrokerDir string `json:"broker_dir,omitempty"`
	// Settle keeps the connections open and idle that long after the load
	// stops, then reads the broker's figures again: what an idle broker
	// keeps (--settle, seconds).
	Settle time.Duration `json:"settle,omitempty"`
	// Interval is the period of progress samples; 0 means one second.
	Interval time.Duration `json:"-"`
	// Progress receives one line per Interval when non-nil.
	Progress io.Writer `json:"-"`
}

// DefaultConfig returns the defaults warrenperf starts from.
func DefaultConfig() Config {
	return Config{
		URIs:         []string{"amqp://guest:guest@localhost:5672/"},
		Producers:    1,
		Consumers:    1,
		Queue:        "warrenperf",
		QueueCount:   1,
		ExchangeType: "direct",
		Size:         12,
		BodyKind:     BodyZeros,
		BacklogSlice: 100_000,
		Client:       ClientAMQP091,
		DialTimeout:  5 * time.Second,
	}
}

// stream reports whether the run's queues are streams.
func (c *Config) stream() bool { return c.QueueArgs["x-queue-type"] == "stream" }

// durable reports whether declared queues and exchanges are durable.
func (c *Config) durable() bool {
	if c.Durable != nil {
		return *c.Durable
	}
	return c.Persistent
}

// QueueNames returns the queues of the run in order.
func (c *Config) QueueNames() []string {
	if c.QueuePattern == "" {
		return []string{c.Queue}
	}
	n := max(c.QueueCount, 1)
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf(c.QueuePattern, i+1)
	}
	return names
}

// Validate checks the configuration for values Run cannot use.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case len(c.URIs) == 0:
		return bad("no broker URI")
	case c.Producers < 0 || c.Consumers < 0:
		return bad("negative producer or consumer count")
	case c.Producers == 0 && c.Consumers == 0 && c.Churn == 0:
		return bad("no producer, no consumer and no churn")
	case c.Size < 0:
		return bad("negative message size %d", c.Size)
	case c.ProducerMessages < 0 || c.ConsumerMessages < 0:
		return bad("negative message count")
	case c.Duration < 0:
		return bad("negative duration")
	case c.Rate < 0:
		return bad("negative rate")
	case c.Confirm < 0:
		return bad("negative confirm window")
	case c.Prefetch < 0 || c.Prefetch > 65535:
		return bad("prefetch %d out of range 0..65535", c.Prefetch)
	case c.MultiAckEvery < 0:
		return bad("negative multi-ack-every")
	case c.QueuePattern == "" && c.Queue == "":
		return bad("no queue name")
	case c.QueuePattern != "" && c.QueueCount < 1:
		return bad("queue-count %d must be at least 1", c.QueueCount)
	case c.TopicBindings < 0:
		return bad("negative topic-bindings")
	case c.TopicBindings > 0 && c.Exchange == "":
		return bad("topic-bindings needs an exchange (-e)")
	case c.Backlog < 0 || c.BacklogSlice < 0:
		return bad("negative backlog")
	case c.Backlog > 0 && c.Producers == 0:
		return bad("backlog needs at least one producer")
	case c.ChannelsPerConnection < 0 || c.Churn < 0 || c.Settle < 0:
		return bad("negative channels-per-connection, churn or settle")
	case c.ChannelsPerConnection > 1 && c.Client == ClientFast:
		return bad("channels-per-connection needs the amqp091 engine")
	case c.ExclusiveQueues && c.Consumers == 0:
		return bad("exclusive-queues needs consumers")
	case c.ExclusiveQueues && (c.Backlog > 0 || c.Exchange != "" || c.Client == ClientFast):
		return bad("exclusive-queues publishes through the default exchange, without a backlog, with the amqp091 engine")
	}
	switch c.Client {
	case "", ClientAMQP091, ClientFast:
	default:
		return bad("client %q (want amqp091 or fast)", c.Client)
	}
	switch c.BodyKind {
	case BodyRandom, BodyZeros, BodyJSON:
	default:
		return bad("body-kind %q (want random, json or zeros)", c.BodyKind)
	}
	if c.QueuePattern != "" {
		if strings.Count(c.QueuePattern, "%") != 1 || !strings.Contains(c.QueuePattern, "%d") {
			return bad("queue-pattern %q must hold exactly one %%d", c.QueuePattern)
		}
	}
	for _, u := range c.URIs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "amqp" && p.Scheme != "amqps") {
			return bad("broker URI %q is not amqp:// or amqps://", Redact(u))
		}
	}
	return nil
}

// fast reports whether producers and consumers use the fast engine.
func (c *Config) fast() bool { return c.Client == ClientFast }

// Redact returns uri with any password replaced by "xxxxx", for printing.
func Redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return "<unparsable uri>"
	}
	return u.Redacted()
}

// ParseQueueArgs parses "k=v,k=v" into queue x-arguments. Values that parse
// as integers become int64, "true" and "false" become bools, everything else
// stays a string. An empty string yields nil.
func ParseQueueArgs(s string) (map[string]any, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	args := make(map[string]any)
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: queue argument %q is not key=value", ErrConfig, kv)
		}
		if _, dup := args[k]; dup {
			return nil, fmt.Errorf("%w: queue argument %q given twice", ErrConfig, k)
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			args[k] = n
		} else if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
			args[k] = b
		} else {
			args[k] = v
		}
	}
	return args, nil
}
