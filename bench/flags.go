package bench

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// BindFlags registers the PerfTest-style flags of c on fs, short and long
// names sharing one variable (-x and --producers, ...). The current values of
// c are the defaults, so binding is idempotent: c keeps its values until a
// flag is set. Scenario files use the long names as option keys.
func BindFlags(fs *flag.FlagSet, c *Config) {
	str := func(p *string, usage string, names ...string) {
		for _, n := range names {
			fs.StringVar(p, n, *p, usage)
		}
	}
	num := func(p *int, usage string, names ...string) {
		for _, n := range names {
			fs.IntVar(p, n, *p, usage)
		}
	}
	num64 := func(p *int64, usage string, names ...string) {
		for _, n := range names {
			fs.Int64Var(p, n, *p, usage)
		}
	}
	boolean := func(p *bool, usage string, names ...string) {
		for _, n := range names {
			fs.BoolVar(p, n, *p, usage)
		}
	}
	value := func(v flag.Value, usage string, names ...string) {
		for _, n := range names {
			fs.Var(v, n, usage)
		}
	}

	str(&c.ID, "run label shown in progress lines and results", "id")
	value(&listValue{dst: &c.URIs}, "broker `URI` (repeatable: producers and consumers spread over them)", "uri")
	num(&c.Producers, "number of producers", "x", "producers")
	num(&c.Consumers, "number of consumers", "y", "consumers")
	str(&c.Queue, "queue `name`", "u", "queue")
	str(&c.QueuePattern, "queue name `pattern` with one %d, e.g. perf-%d (numbered from 1)", "queue-pattern")
	num(&c.QueueCount, "number of queues made from --queue-pattern", "queue-count")
	str(&c.Exchange, "exchange `name` (default: the default exchange, routing by queue name)", "e", "exchange")
	str(&c.ExchangeType, "exchange `type` when declared: direct, fanout, topic, headers", "t", "type")
	str(&c.RoutingKey, "routing and binding `key` (default: the queue name)", "k", "routing-key")
	num(&c.TopicBindings, "bind `N` wildcard patterns (stock.<n>.* / #.<n>) and publish random matching keys", "topic-bindings")
	num(&c.Size, "message body size in `bytes`", "s", "size")
	value((*bodyKindValue)(&c.BodyKind), "body content: random, json or zeros", "body-kind")
	num64(&c.ProducerMessages, "messages per producer (0 = unlimited)", "C", "pmessages")
	num64(&c.ConsumerMessages, "messages per consumer (0 = unlimited)", "D", "cmessages")
	value((*secondsValue)(&c.Duration), "run time in `seconds` (0 = until message counts are reached)", "z", "time")
	value((*floatValue)(&c.Rate), "publish rate per producer in `msgs/s` (0 = unlimited)", "r", "rate")
	num(&c.Confirm, "publisher confirm `window` per producer (0 = no confirms)", "c", "confirm")
	value(&publishFlagValue{c: c}, "publishing flag: persistent or mandatory (repeatable)", "f", "flag")
	boolean(&c.Persistent, "publish persistent messages (delivery mode 2)", "persistent")
	boolean(&c.Mandatory, "publish with the mandatory flag and count returns", "mandatory")
	boolean(&c.AutoAck, "consume with automatic acknowledgement", "a", "autoack")
	num(&c.Prefetch, "consumer prefetch count (0 = unlimited)", "q", "qos")
	num(&c.MultiAckEvery, "acknowledge with multiple=true every `N` messages", "A", "multi-ack-every")
	value(&queueArgsValue{dst: &c.QueueArgs}, "queue `arguments` k=v,k=v (integers and booleans typed)", "queue-args")
	value(&queueArgsValue{dst: &c.ConsumerArgs}, "consumer `arguments` k=v,k=v, e.g. x-stream-offset=first", "consumer-args")
	num(&c.Priorities, "publish with priorities 0..`N`-1 in turn (for x-max-priority queues)", "priorities")
	value((*floatValue)(&c.ConsumerRate), "consume rate per consumer in `msgs/s` (0 = unlimited)", "consumer-rate")
	boolean(&c.Predeclared, "use existing exchanges and queues: declare, bind and delete nothing", "predeclared")
	value(&durableValue{dst: &c.Durable}, "declare durable queues and exchanges (default: true with persistent messages)", "durable")
	boolean(&c.KeepTopology, "keep declared queues and exchanges after the run", "keep")
	num64(&c.Backlog, "publish `N` messages with no consumer first, then drain them", "backlog")
	num64(&c.BacklogSlice, "slice size of the backlog publish-rate report", "backlog-slice")
	value((*clientValue)(&c.Client), "client `engine`: amqp091 (amqp091-go) or fast (buffered raw connections, less client CPU)", "client")
	value((*secondsValue)(&c.DialTimeout), "connect and handshake timeout in `seconds`", "dial-timeout")
	num(&c.ChannelsPerConnection, "producers (and consumers) per connection, a channel each (amqp091 engine)", "channels-per-connection")
	boolean(&c.ExclusiveQueues, "each consumer declares a server-named exclusive queue and consumes it; producers publish to them in turn (the RPC pattern)", "exclusive-queues")
	num(&c.Churn, "`N` workers that declare, bind and delete server-named exclusive queues in a loop, timing each cycle", "churn")
	num(&c.BrokerPID, "the broker's process `ID`: report its memory, open files and CPU from /proc", "broker-pid")
	str(&c.BrokerDir, "the broker's data `directory`: report its size with the broker's figures", "broker-dir")
	value((*secondsValue)(&c.Settle), "after the load, stay connected and idle this many `seconds`, then read the broker's figures again", "settle")
}

// ParseArgs returns DefaultConfig with args applied, validated.
func ParseArgs(args []string) (Config, error) {
	c := DefaultConfig()
	fs := flag.NewFlagSet("warrenperf", flag.ContinueOnError)
	fs.SetOutput(discard{})
	BindFlags(fs, &c)
	if err := fs.Parse(args); err != nil {
		return c, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%w: unexpected argument %q", ErrConfig, fs.Arg(0))
	}
	return c, c.Validate()
}

// ApplyOptions sets the options named like the long flags (as in scenario
// files) on c. Values may be strings, numbers, booleans or, for repeatable
// flags, arrays of those.
func ApplyOptions(c *Config, opts map[string]any) error {
	fs := flag.NewFlagSet("options", flag.ContinueOnError)
	fs.SetOutput(discard{})
	BindFlags(fs, c)
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("%w: unknown option %q", ErrConfig, k)
		}
		vals, ok := opts[k].([]any)
		if !ok {
			vals = []any{opts[k]}
		}
		for _, v := range vals {
			s, err := optionString(v)
			if err != nil {
				return fmt.Errorf("%w: option %q: %v", ErrConfig, k, err)
			}
			if err := fs.Set(k, s); err != nil {
				return fmt.Errorf("%w: option %q: %v", ErrConfig, k, err)
			}
		}
	}
	return nil
}

func optionString(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case json.Number:
		return v.String(), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case int:
		return strconv.Itoa(v), nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	default:
		return "", fmt.Errorf("unsupported value %v (%T)", v, v)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// listValue is a repeatable string flag; the first Set replaces the default.
type listValue struct {
	dst     *[]string
	touched bool
}

func (l *listValue) String() string {
	if l == nil || l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l *listValue) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty value")
	}
	if !l.touched {
		*l.dst = nil
		l.touched = true
	}
	*l.dst = append(*l.dst, s)
	return nil
}

// secondsValue is a duration given in (possibly fractional) seconds.
type secondsValue time.Duration

func (d *secondsValue) String() string {
	if d == nil {
		return "0"
	}
	return strconv.FormatFloat(time.Duration(*d).Seconds(), 'f', -1, 64)
}

func (d *secondsValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || f > 1e9 {
		return fmt.Errorf("%q is not a number of seconds", s)
	}
	*d = secondsValue(f * float64(time.Second))
	return nil
}

type floatValue float64

func (f *floatValue) String() string {
	if f == nil {
		return "0"
	}
	return strconv.FormatFloat(float64(*f), 'f', -1, 64)
}

func (f *floatValue) Set(s string) error {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return fmt.Errorf("%q is not a non-negative number", s)
	}
	*f = floatValue(v)
	return nil
}

type bodyKindValue BodyKind

func (b *bodyKindValue) String() string {
	if b == nil {
		return ""
	}
	return string(*b)
}

func (b *bodyKindValue) Set(s string) error {
	switch k := BodyKind(s); k {
	case BodyRandom, BodyZeros, BodyJSON:
		*b = bodyKindValue(k)
		return nil
	}
	return fmt.Errorf("%q is not random, json or zeros", s)
}

type clientValue ClientKind

func (v *clientValue) String() string {
	if v == nil || *v == "" {
		return string(ClientAMQP091)
	}
	return string(*v)
}

func (v *clientValue) Set(s string) error {
	switch k := ClientKind(strings.ToLower(s)); k {
	case ClientAMQP091, ClientFast:
		*v = clientValue(k)
		return nil
	}
	return fmt.Errorf("%q is not amqp091 or fast", s)
}

// publishFlagValue implements PerfTest's -f persistent / -f mandatory.
type publishFlagValue struct{ c *Config }

func (p *publishFlagValue) String() string {
	if p == nil || p.c == nil {
		return ""
	}
	var f []string
	if p.c.Persistent {
		f = append(f, "persistent")
	}
	if p.c.Mandatory {
		f = append(f, "mandatory")
	}
	return strings.Join(f, ",")
}

func (p *publishFlagValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "persistent":
		p.c.Persistent = true
	case "mandatory":
		p.c.Mandatory = true
	default:
		return fmt.Errorf("%q is not persistent or mandatory", s)
	}
	return nil
}

type queueArgsValue struct{ dst *map[string]any }

func (q *queueArgsValue) String() string {
	if q == nil || q.dst == nil || len(*q.dst) == 0 {
		return ""
	}
	keys := make([]string, 0, len(*q.dst))
	for k := range *q.dst {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, (*q.dst)[k])
	}
	return strings.Join(parts, ",")
}

func (q *queueArgsValue) Set(s string) error {
	args, err := ParseQueueArgs(s)
	if err != nil {
		return err
	}
	*q.dst = args
	return nil
}

// durableValue is a bool flag whose unset state means "follow Persistent".
type durableValue struct{ dst **bool }

func (d *durableValue) String() string {
	if d == nil || d.dst == nil || *d.dst == nil {
		return "auto"
	}
	return strconv.FormatBool(**d.dst)
}

func (d *durableValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q is not a boolean", s)
	}
	*d.dst = &b
	return nil
}

func (d *durableValue) IsBoolFlag() bool { return true }
