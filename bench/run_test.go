package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestRunRejectsInvalidConfig(t *testing.T) {
	c := DefaultConfig()
	c.Producers, c.Consumers = 0, 0
	if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
		t.Fatalf("err %v, want ErrConfig", err)
	}
}

func TestRunClosedPortFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := DefaultConfig()
	c.URIs = []string{"amqp://guest:guest@" + addr + "/"}
	c.Duration = 30 * time.Second
	start := time.Now()
	_, err = Run(context.Background(), c)
	if !errors.Is(err, ErrConnect) {
		t.Fatalf("err %v, want ErrConnect", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to fail", d)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, addr) || !strings.Contains(msg, "refused") {
		t.Fatalf("unclear error %q", msg)
	}
}

// A server that accepts TCP connections but never answers must not hang the
// run: the handshake deadline ends it.
func TestRunSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		mu.Unlock()
	}()
	c := DefaultConfig()
	c.URIs = []string{"amqp://guest:guest@" + ln.Addr().String() + "/"}
	c.DialTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err = Run(context.Background(), c)
	if !errors.Is(err, ErrConnect) {
		t.Fatalf("err %v, want ErrConnect", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v to give up", d)
	}
}

// brokerURL returns the broker of the end-to-end tests or skips.
// WARREN_BENCH_URL=warren builds Warren from this repository and starts it
// on a free port for the tests.
func brokerURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("WARREN_BENCH_URL")
	if u == "" {
		t.Skip("needs a real broker: set WARREN_BENCH_URL=amqp://guest:guest@localhost:5672/ (or =warren to start one)")
	}
	if u == "warren" {
		warrenOnce.Do(startWarren)
		if warrenErr != nil {
			t.Fatalf("start warren: %v", warrenErr)
		}
		return warrenURL
	}
	return u
}

var (
	warrenOnce sync.Once
	warrenURL  string
	warrenErr  error
	warrenCmd  *exec.Cmd
	warrenDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if warrenCmd != nil {
		_ = warrenCmd.Process.Kill()
		_ = warrenCmd.Wait()
	}
	if warrenDir != "" {
		os.RemoveAll(warrenDir)
	}
	os.Exit(code)
}

// startWarren builds cmd/warren and runs it on a free port with a fresh
// data directory, waiting until it accepts connections.
func startWarren() {
	dir, err := os.MkdirTemp("", "warrenperf-test-")
	if err != nil {
		warrenErr = err
		return
	}
	warrenDir = dir
	bin := filepath.Join(dir, "warren")
	build := exec.Command("go", "build", "-o", bin, "github.com/warrenmq/warren/cmd/warren")
	if out, err := build.CombinedOutput(); err != nil {
		warrenErr = fmt.Errorf("build: %v: %s", err, out)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		warrenErr = err
		return
	}
	addr := ln.Addr().String()
	ln.Close()
	warrenCmd = exec.Command(bin, "--data-dir", filepath.Join(dir, "data"), "--amqp-listen", addr, "--log-level", "warn")
	warrenCmd.Stderr = os.Stderr
	if err := warrenCmd.Start(); err != nil {
		warrenErr = err
		warrenCmd = nil
		return
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if nc, err := net.Dial("tcp", addr); err == nil {
			nc.Close()
			warrenURL = "amqp://guest:guest@" + addr + "/"
			return
		}
	}
	warrenErr = fmt.Errorf("warren did not listen on %s within 20 s", addr)
}

// eachClient runs fn as one subtest per client engine.
func eachClient(t *testing.T, fn func(t *testing.T, client ClientKind)) {
	for _, k := range []ClientKind{ClientAMQP091, ClientFast} {
		t.Run(string(k), func(t *testing.T) { fn(t, k) })
	}
}

func e2eConfig(t *testing.T, id string, client ClientKind) Config {
	c := DefaultConfig()
	c.URIs = []string{brokerURL(t)}
	c.Client = client
	id += "-" + string(client)
	c.ID = id
	c.Queue = "warrenperf-test-" + id
	c.Interval = 250 * time.Millisecond
	c.DialTimeout = 3 * time.Second
	return c
}

// queueExists reports whether queue exists on the broker.
func queueExists(t *testing.T, uri, queue string) bool {
	t.Helper()
	conn, err := amqp.Dial(uri)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	return err == nil
}

func TestBrokerTwoSecondRun_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "two-seconds", client)
		c.Duration = 2 * time.Second
		c.Size = 1024
		c.Persistent = true
		c.Confirm = 256
		c.Prefetch = 500
		c.BodyKind = BodyRandom
		var progress bytes.Buffer
		c.Progress = &progress
		start := time.Now()
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("2 s run took %v", d)
		}
		if res.Sent == 0 || res.Confirmed == 0 || res.Received == 0 || res.Confirmed > res.Sent || res.Received > res.Sent {
			t.Fatalf("counts sent %d confirmed %d received %d", res.Sent, res.Confirmed, res.Received)
		}
		if res.Elapsed < 1.9 || res.Elapsed > 4 {
			t.Fatalf("elapsed %.2f s", res.Elapsed)
		}
		if res.Latency.Count != res.Received || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P999 {
			t.Fatalf("latency %+v for %d received", res.Latency, res.Received)
		}
		if len(res.Samples) < 4 || !strings.Contains(progress.String(), "received:") {
			t.Fatalf("%d samples, progress %q", len(res.Samples), progress.String())
		}
		if res.ClientCPUSeconds <= 0 {
			t.Errorf("client CPU %v", res.ClientCPUSeconds)
		}
		if queueExists(t, c.URIs[0], c.Queue) {
			t.Error("declared queue left behind")
		}
		t.Logf("sent %.0f/s received %.0f/s p50 %.3f ms p99 %.3f ms, %.2f µs CPU/msg",
			res.SentRate, res.ReceivedRate, res.Latency.P50, res.Latency.P99, res.ClientCPUMicrosPerMessage)
	})
}

func TestBrokerExactCounts_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "exact", client)
		c.Producers, c.Consumers = 2, 1
		c.ProducerMessages, c.ConsumerMessages = 1500, 3000
		c.Confirm = 100
		c.Prefetch = 200
		c.MultiAckEvery = 50
		c.BodyKind = BodyJSON
		c.Size = 100
		c.Duration = 30 * time.Second
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 3000 || res.Confirmed != 3000 || res.Received != 3000 || res.Latency.Count != 3000 {
			t.Fatalf("sent %d confirmed %d received %d latencies %d, want 3000 each",
				res.Sent, res.Confirmed, res.Received, res.Latency.Count)
		}
		if res.Elapsed > 20 {
			t.Fatalf("limited run did not end when done: %.1f s", res.Elapsed)
		}
	})
}

func TestBrokerFixedRate_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "rate", client)
		c.Rate = 500
		c.Duration = 2 * time.Second
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if want := 500 * res.Elapsed; float64(res.Sent) < want*0.8 || float64(res.Sent) > want*1.1+10 {
			t.Fatalf("sent %d in %.2f s at 500 msg/s", res.Sent, res.Elapsed)
		}
	})
}

func TestBrokerQueueDeletedMidRun_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "vanish", client)
		c.Duration = 30 * time.Second
		c.Rate = 1000
		go func() {
			time.Sleep(time.Second)
			conn, err := amqp.Dial(c.URIs[0])
			if err != nil {
				return
			}
			defer conn.Close()
			if ch, err := conn.Channel(); err == nil {
				_, _ = ch.QueueDelete(c.Queue, false, false, false)
			}
		}()
		start := time.Now()
		res, err := Run(context.Background(), c)
		if !errors.Is(err, ErrCancelled) {
			t.Fatalf("err %v, want ErrCancelled", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v to notice the deleted queue", d)
		}
		if !strings.Contains(err.Error(), c.Queue) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("unclear error %q", err)
		}
		if res.Sent == 0 {
			t.Fatal("no partial result")
		}
	})
}

func TestBrokerBadCredentials_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "creds", client)
		u, err := url.Parse(c.URIs[0])
		if err != nil {
			t.Fatal(err)
		}
		u.User = url.UserPassword("warrenperf-nobody", "wrong")
		c.URIs = []string{u.String()}
		start := time.Now()
		_, err = Run(context.Background(), c)
		if !errors.Is(err, ErrConnect) {
			t.Fatalf("err %v, want ErrConnect", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Fatalf("error leaks the password: %q", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v", d)
		}
	})
}

func TestBrokerBacklog_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "backlog", client)
		c.Producers, c.Consumers = 2, 2
		c.Backlog, c.BacklogSlice = 3000, 1000
		c.Confirm = 100
		c.Prefetch = 100
		c.Persistent = true
		c.Duration = 60 * time.Second
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		b := res.Backlog
		if b == nil || b.Messages != 3000 || len(b.Slices) != 3 || b.Drained != 3000 || b.DrainRate <= 0 || b.PublishRate <= 0 {
			t.Fatalf("backlog %+v", b)
		}
		for _, s := range b.Slices {
			if s.Rate <= 0 {
				t.Fatalf("slice %+v", s)
			}
		}
		if res.Throughput() != b.DrainRate {
			t.Fatalf("throughput %v, drain %v", res.Throughput(), b.DrainRate)
		}
	})
}

func TestBrokerFanoutAndTopic_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		f := e2eConfig(t, "fanout", client)
		f.Exchange, f.ExchangeType = "warrenperf-test-fanout", "fanout"
		f.QueuePattern, f.QueueCount = "warrenperf-test-fanout-%d", 3
		f.Producers, f.Consumers = 1, 3
		f.ProducerMessages, f.ConsumerMessages = 300, 300
		f.Confirm = 50
		f.Duration = 30 * time.Second
		res, err := Run(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		if res.Received != 900 {
			t.Fatalf("fan-out to 3 queues received %d, want 900", res.Received)
		}

		tp := e2eConfig(t, "topic", client)
		tp.Exchange, tp.ExchangeType = "warrenperf-test-topic", "topic"
		tp.TopicBindings = 50
		tp.QueuePattern, tp.QueueCount = "warrenperf-test-topic-%d", 2
		tp.Producers, tp.Consumers = 2, 2
		tp.ProducerMessages = 500
		tp.Mandatory = true
		tp.Confirm = 50
		tp.Duration = 2 * time.Second
		res, err = Run(context.Background(), tp)
		if err != nil {
			t.Fatal(err)
		}
		if res.Confirmed != 1000 || res.Returned != 0 || res.Received == 0 {
			t.Fatalf("topic: confirmed %d returned %d received %d", res.Confirmed, res.Returned, res.Received)
		}
	})
}

func TestBrokerCompare_NeedsWARREN_BENCH_URL(t *testing.T) {
	u := brokerURL(t)
	s, err := ParseScenarios([]byte(`{"scenarios": [{"name": "tiny", "options": {"queue": "warrenperf-test-cmp", "size": 64, "confirm": 32, "time": 1}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cr, err := Compare(context.Background(), CompareConfig{A: u, B: u, Scenarios: s, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Rows) != 1 || cr.Rows[0].ARate <= 0 || cr.Rows[0].BRate <= 0 || cr.Rows[0].Ratio <= 0 || len(cr.Rows[0].ARates) != 1 {
		t.Fatalf("rows %+v", cr.Rows)
	}
}

// TestBrokerStreamReplay_NeedsWARREN_BENCH_URL publishes a backlog to a
// stream and replays it from the first offset.
func TestBrokerStreamReplay_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "stream", client)
		c.QueueArgs = map[string]any{"x-queue-type": "stream"}
		c.ConsumerArgs = map[string]any{"x-stream-offset": "first"}
		c.Backlog, c.BacklogSlice = 2000, 1000
		c.Confirm, c.Prefetch = 100, 100
		c.Persistent = true
		c.Duration = 60 * time.Second
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if b := res.Backlog; b == nil || b.Drained != 2000 || res.Received != 2000 {
			t.Fatalf("stream replay: backlog %+v, received %d", b, res.Received)
		}
	})
}

// TestBrokerPrioritiesAndRejectPublish_NeedsWARREN_BENCH_URL publishes
// with priorities to a priority queue, and to a full reject-publish queue
// whose consumer is slower than its producer (nacks counted).
func TestBrokerPrioritiesAndRejectPublish_NeedsWARREN_BENCH_URL(t *testing.T) {
	eachClient(t, func(t *testing.T, client ClientKind) {
		c := e2eConfig(t, "prio", client)
		c.QueueArgs = map[string]any{"x-max-priority": 9}
		c.Priorities = 10
		c.ProducerMessages, c.ConsumerMessages = 1000, 1000
		c.Confirm, c.Prefetch = 50, 50
		c.Duration = 30 * time.Second
		res, err := Run(context.Background(), c)
		if err != nil || res.Received != 1000 {
			t.Fatalf("priorities: received %d, %v", res.Received, err)
		}
		c = e2eConfig(t, "reject", client)
		c.QueueArgs = map[string]any{"x-max-length": 10, "x-overflow": "reject-publish"}
		c.Rate, c.ConsumerRate = 400, 200
		c.Confirm, c.Prefetch = 20, 10
		c.Duration = 2 * time.Second
		res, err = Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if res.Nacked == 0 || res.Confirmed == 0 || res.Received == 0 {
			t.Fatalf("reject-publish: confirmed %d nacked %d received %d", res.Confirmed, res.Nacked, res.Received)
		}
	})
}
