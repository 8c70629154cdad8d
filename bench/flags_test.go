package bench

import (
	"errors"
	"flag"
	"reflect"
	"testing"
	"time"
)

func TestParseArgsShortAndLongNames(t *testing.T) {
	short, err := ParseArgs([]string{"-x", "3", "-y", "4", "-u", "q1", "-s", "1024", "-C", "10", "-D", "20",
		"-z", "2.5", "-r", "500", "-c", "64", "-f", "persistent", "-a", "-q", "100", "-A", "10",
		"-e", "ex", "-t", "topic", "-k", "a.b"})
	if err != nil {
		t.Fatal(err)
	}
	long, err := ParseArgs([]string{"--producers", "3", "--consumers=4", "--queue", "q1", "--size", "1024",
		"--pmessages", "10", "--cmessages", "20", "--time", "2.5", "--rate", "500", "--confirm", "64",
		"--flag", "persistent", "--autoack", "--qos", "100", "--multi-ack-every", "10",
		"--exchange", "ex", "--type", "topic", "--routing-key", "a.b"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(short, long) {
		t.Fatalf("short and long flags differ:\n%+v\n%+v", short, long)
	}
	c := short
	if c.Producers != 3 || c.Consumers != 4 || c.Queue != "q1" || c.Size != 1024 ||
		c.ProducerMessages != 10 || c.ConsumerMessages != 20 || c.Duration != 2500*time.Millisecond ||
		c.Rate != 500 || c.Confirm != 64 || !c.Persistent || !c.AutoAck || c.Prefetch != 100 ||
		c.MultiAckEvery != 10 || c.Exchange != "ex" || c.ExchangeType != "topic" || c.RoutingKey != "a.b" {
		t.Fatalf("unexpected config %+v", c)
	}
}

func TestParseArgsDurableFollowsPersistent(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{nil, false},
		{[]string{"-f", "persistent"}, true},
		{[]string{"--persistent"}, true},
		{[]string{"-f", "persistent", "--durable=false"}, false},
		{[]string{"--durable"}, true},
	} {
		c, err := ParseArgs(tc.args)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.durable() != tc.want {
			t.Errorf("%v: durable %v, want %v", tc.args, c.durable(), tc.want)
		}
	}
}

func TestParseArgsRepeatableURIReplacesDefault(t *testing.T) {
	c, err := ParseArgs([]string{"--uri", "amqp://a:5672/", "--uri", "amqp://b:5672/"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"amqp://a:5672/", "amqp://b:5672/"}; !reflect.DeepEqual(c.URIs, want) {
		t.Fatalf("URIs %v, want %v", c.URIs, want)
	}
	c, err = ParseArgs(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.URIs, DefaultConfig().URIs) {
		t.Fatalf("default URIs %v", c.URIs)
	}
}

func TestParseArgsQueuePatternAndMandatory(t *testing.T) {
	c, err := ParseArgs([]string{"--queue-pattern", "perf-%d", "--queue-count", "3", "-f", "mandatory",
		"--queue-args", "x-max-length=1000,x-queue-type=classic", "--body-kind", "json", "--backlog", "5000"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"perf-1", "perf-2", "perf-3"}; !reflect.DeepEqual(c.QueueNames(), want) {
		t.Fatalf("queues %v, want %v", c.QueueNames(), want)
	}
	if !c.Mandatory || c.Persistent || c.BodyKind != BodyJSON || c.Backlog != 5000 {
		t.Fatalf("unexpected config %+v", c)
	}
	if c.QueueArgs["x-max-length"] != int64(1000) || c.QueueArgs["x-queue-type"] != "classic" {
		t.Fatalf("queue args %#v", c.QueueArgs)
	}
}

func TestParseArgsRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"-x", "-1"},
		{"-x", "0", "-y", "0"},
		{"-s", "-5"},
		{"-z", "soon"},
		{"-z", "-1"},
		{"-r", "-3"},
		{"-f", "sticky"},
		{"--body-kind", "lorem"},
		{"--queue-args", "novalue"},
		{"--queue-pattern", "perf"},
		{"--queue-pattern", "perf-%d-%d"},
		{"--queue-pattern", "perf-%d", "--queue-count", "0"},
		{"--uri", "http://example.com/"},
		{"-q", "70000"},
		{"--topic-bindings", "10"},
		{"--durable=maybe"},
		{"--no-such-flag"},
		{"stray"},
	} {
		if _, err := ParseArgs(args); !errors.Is(err, ErrConfig) {
			t.Errorf("%v: err %v, want ErrConfig", args, err)
		}
	}
}

func TestBindFlagsKeepsCurrentValues(t *testing.T) {
	c := DefaultConfig()
	c.Size = 4096
	c.URIs = []string{"amqp://x/"}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	BindFlags(fs, &c)
	if err := fs.Parse([]string{"-x", "2"}); err != nil {
		t.Fatal(err)
	}
	if c.Size != 4096 || c.URIs[0] != "amqp://x/" || c.Producers != 2 {
		t.Fatalf("binding reset values: %+v", c)
	}
}

func TestApplyOptions(t *testing.T) {
	c := DefaultConfig()
	err := ApplyOptions(&c, map[string]any{
		"size": 1024.0, "flag": []any{"persistent", "mandatory"}, "autoack": true,
		"uri": []any{"amqp://a/", "amqp://b/"}, "time": "3", "queue-args": "x-max-length=5",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Size != 1024 || !c.Persistent || !c.Mandatory || !c.AutoAck || len(c.URIs) != 2 ||
		c.Duration != 3*time.Second || c.QueueArgs["x-max-length"] != int64(5) {
		t.Fatalf("unexpected config %+v", c)
	}
	if err := ApplyOptions(&c, map[string]any{"sizee": 1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown option: err %v", err)
	}
	if err := ApplyOptions(&c, map[string]any{"size": map[string]any{}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("object value: err %v", err)
	}
}

func TestParseQueueArgs(t *testing.T) {
	got, err := ParseQueueArgs(" x-max-length=1000, x-queue-type=classic,x-single-active-consumer=true,x-message-ttl=-1,x-dead-letter-exchange=dlx,x-rate=1.5 ")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"x-max-length": int64(1000), "x-queue-type": "classic", "x-single-active-consumer": true,
		"x-message-ttl": int64(-1), "x-dead-letter-exchange": "dlx", "x-rate": "1.5",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if got, err := ParseQueueArgs(""); err != nil || got != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"x", "=1", "a=1,a=2", "a=1,,b=2"} {
		if _, err := ParseQueueArgs(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: err %v, want ErrConfig", bad, err)
		}
	}
}
