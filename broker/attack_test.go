package broker

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/amqpwire"
)

// TestMemoryAttacksPeakRSS measures the broker's peak resident memory
// (VmHWM of a child broker process) under the three memory attacks of a
// careless or hostile client, with the default limits in place. It is a
// measurement for docs/reliability.md: run it with WARREN_ATTACK_SECONDS
// (e.g. 10); it fails only if a peak passes 1 GiB.
func TestMemoryAttacksPeakRSS(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("WARREN_ATTACK_SECONDS"))
	if secs <= 0 {
		t.Skip("set WARREN_ATTACK_SECONDS to measure")
	}
	d := time.Duration(secs) * time.Second
	// WARREN_ATTACK_CLIENTS attackers at once (default 1), against a
	// broker with WARREN_ATTACK_WATERMARK as its memory high watermark
	// (default: the broker's, 0.4 of RAM): the per-connection bounds
	// multiply by the clients, and the memory alarm caps their sum.
	clients, _ := strconv.Atoi(os.Getenv("WARREN_ATTACK_CLIENTS"))
	clients = max(clients, 1)
	var env []string
	if w := os.Getenv("WARREN_ATTACK_WATERMARK"); w != "" {
		env = append(env, "WARREN_CHILD_WATERMARK="+w)
	}
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, c *child, d time.Duration, id int) string
	}{
		{"unread mandatory returns", attackReturns},
		{"prefetch-0 consumer that never acks", attackUnacked},
		{"uncommitted transactions", attackTx},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startChild(t, t.TempDir(), env...)
			var wg sync.WaitGroup
			what := make([]string, clients)
			for i := range clients {
				wg.Go(func() { what[i] = tc.attack(t, c, d, i) })
			}
			wg.Wait()
			peak := peakRSS(t, c.cmd.Process.Pid)
			t.Logf("%s, %d clients: %s; broker peak RSS %d MiB", tc.name, clients, what[0], peak>>20)
			if clients > 1 {
				t.Logf("(the line above is the first client's; %d ran at once)", clients)
			}
			if peak > 1<<30+uint64(clients-1)*(64<<20) {
				t.Errorf("peak RSS %d MiB", peak>>20)
			}
		})
	}
}

func peakRSS(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

func attackReturns(t *testing.T, c *child, d time.Duration, _ int) string {
	r := dialRaw(t, &testBroker{t: t, url: c.url()})
	r.nc.SetDeadline(time.Time{})
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	body := make([]byte, 64<<10)
	msg := amqpwire.AppendMethodFrame(nil, 1, &amqpwire.BasicPublish{RoutingKey: "nowhere", Mandatory: true})
	msg = amqpwire.AppendContentFrames(msg, 1, amqpwire.ClassBasic, uint64(len(body)), []byte{0, 0}, body, 131072)
	written := 0
	r.nc.SetWriteDeadline(time.Now().Add(d))
	for {
		n, err := r.nc.Write(msg)
		written += n
		if err != nil {
			break
		}
	}
	return strconv.Itoa(written>>20) + " MiB of unroutable mandatory publishes accepted in " + d.String() + ", no return read"
}

func attackUnacked(t *testing.T, c *child, d time.Duration, id int) string {
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	hoard := "hoard-" + strconv.Itoa(id)
	ch.QueueDeclare(hoard, false, false, false, false, nil)
	cconn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer cconn.Close()
	cch, _ := cconn.Channel()
	ds, _ := cch.Consume(hoard, "", false, false, false, false, nil)
	got := 0
	go func() {
		for range ds {
			got++
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	sent := 0
	body := make([]byte, 100)
	for ctx.Err() == nil {
		if ch.PublishWithContext(ctx, "", hoard, false, false, amqp.Publishing{Body: body}) != nil {
			break
		}
		sent++
	}
	time.Sleep(500 * time.Millisecond)
	return strconv.Itoa(sent) + " published, " + strconv.Itoa(got) + " delivered and never acked"
}

func attackTx(t *testing.T, c *child, d time.Duration, _ int) string {
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	setup, _ := conn.Channel()
	setup.QueueDeclare("txhoard", false, false, false, false, nil)
	body := make([]byte, 256<<10)
	deadline := time.Now().Add(d)
	published, closes := 0, 0
	for time.Now().Before(deadline) {
		ch, err := conn.Channel()
		if err != nil {
			break
		}
		ch.Tx()
		for time.Now().Before(deadline) {
			if ch.PublishWithContext(context.Background(), "", "txhoard", false, false, amqp.Publishing{Body: body}) != nil {
				closes++
				break
			}
			published += len(body)
			if ch.IsClosed() {
				closes++
				break
			}
		}
	}
	return strconv.Itoa(published>>20) + " MiB published in transactions never committed, " + strconv.Itoa(closes) + " channels closed at the limit"
}
