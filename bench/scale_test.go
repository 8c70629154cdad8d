package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// brokerPID returns the process of the broker the end-to-end tests started,
// or skips when they run against a broker given by URL.
func brokerPID(t *testing.T) int {
	t.Helper()
	brokerURL(t)
	if warrenCmd == nil {
		t.Skip("needs WARREN_BENCH_URL=warren: the test reads the broker's process")
	}
	return warrenCmd.Process.Pid
}

// Producers and consumers share connections a channel each: 40 clients on
// 4 connections, which the broker's descriptors show, and messages flow.
func TestChannelsPerConnection_NeedsWARREN_BENCH_URL(t *testing.T) {
	c := e2eConfig(t, "channels", ClientAMQP091)
	c.BrokerPID = brokerPID(t)
	c.Producers, c.Consumers = 20, 20
	c.QueuePattern, c.QueueCount = "warrenperf-test-channels-%d", 20
	c.ChannelsPerConnection = 10
	c.Rate = 50
	c.Duration = 2 * time.Second
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	b := res.Broker
	if b == nil || b.Connections != 4 || b.Queues != 20 {
		t.Fatalf("broker result %+v, want 4 connections and 20 queues", b)
	}
	// The admin connection, 2 producer and 2 consumer connections: the
	// broker gained 5 sockets, plus queue files at most.
	if d := b.Connected.FDs - b.Base.FDs; d < 4 || d >= 20+20 {
		t.Fatalf("broker descriptors grew by %d for 4 shared connections", d)
	}
	if res.Received == 0 || res.Received > res.Sent {
		t.Fatalf("sent %d received %d", res.Sent, res.Received)
	}
	if b.Base.RSSBytes <= 0 || b.End.CPUSeconds < b.Base.CPUSeconds {
		t.Fatalf("broker samples not read: %+v", b)
	}
}

// Each consumer declares a server-named exclusive queue; producers publish
// to every one of them in turn; the queues go with their connections.
func TestExclusiveQueues_NeedsWARREN_BENCH_URL(t *testing.T) {
	c := e2eConfig(t, "exclusive", ClientAMQP091)
	c.Producers, c.Consumers = 2, 6
	c.ExclusiveQueues = true
	c.ProducerMessages = 300
	c.ConsumerMessages = 100
	c.Duration = 20 * time.Second
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 600 || res.Received != 600 {
		t.Fatalf("sent %d received %d, want 600 each (100 to every consumer)", res.Sent, res.Received)
	}
}

// Churn workers declare, bind and delete server-named queues and time each
// cycle; the summary reports them.
func TestChurn_NeedsWARREN_BENCH_URL(t *testing.T) {
	c := e2eConfig(t, "churn", ClientAMQP091)
	c.Producers, c.Consumers = 0, 0
	c.Churn = 2
	c.QueuePattern, c.QueueCount = "warrenperf-test-churn-bg-%d", 1500 // declared without waiting
	c.Duration = time.Second
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	ch := res.Churn
	if ch == nil || ch.Cycles == 0 || ch.Latency.Count != ch.Cycles || ch.Workers != 2 {
		t.Fatalf("churn result %+v", ch)
	}
	if res.Throughput() != ch.Rate || ch.Rate <= 0 || ch.Latency.P50 <= 0 {
		t.Fatalf("throughput %v, churn rate %v, p50 %v", res.Throughput(), ch.Rate, ch.Latency.P50)
	}
	if queueExists(t, brokerURL(t), "warrenperf-test-churn-bg-1500") {
		t.Fatal("the background queues were not deleted after the run")
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, &res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "declare-bind-delete cycles") {
		t.Fatalf("summary without the churn line:\n%s", out.String())
	}
}

// Settle keeps the connections open after the load and samples the broker
// again; the summary shows every phase.
func TestBrokerSettle_NeedsWARREN_BENCH_URL(t *testing.T) {
	c := e2eConfig(t, "settle", ClientAMQP091)
	c.BrokerPID = brokerPID(t)
	c.BrokerDir = warrenDir
	c.Producers, c.Consumers = 1, 1
	c.Persistent, c.Confirm, c.Size = true, 64, 1024
	c.ProducerMessages, c.ConsumerMessages = 2000, 2000
	c.Duration = 20 * time.Second
	c.Settle = 500 * time.Millisecond
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	b := res.Broker
	if b == nil || b.Idle == nil || b.Idle.At < b.End.At+0.4 || b.Idle.DiskBytes <= 0 || b.CPUMicrosPerMessage <= 0 {
		t.Fatalf("broker result %+v", b)
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, &res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"broker pid", "connected", "idle after the load", "disk"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("summary without %q:\n%s", want, out.String())
		}
	}
}
