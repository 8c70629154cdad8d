package broker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestManyDurableQueuesLowFDLimit declares 20,000 durable queues, with a
// persistent message each, on a broker process limited to 1024 file
// descriptors (the usual default of ulimit -n), kills it with SIGKILL,
// restarts it under the same limit and checks that it listens, holds
// every message, and never needs more descriptors than the limit.
func TestManyDurableQueuesLowFDLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("20,000 queues")
	}
	n := 20000
	if v := os.Getenv("WARREN_SCALE_QUEUES"); v != "" {
		fmt.Sscan(v, &n)
	}
	dir := t.TempDir()
	const limit = "WARREN_CHILD_NOFILE=1024"
	c := startChild(t, dir, limit)
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var dcs []*amqp.DeferredConfirmation
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("job-%05d", i)
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatalf("declare %d: %v", i, err)
		}
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", name, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(name)})
		if err != nil {
			t.Fatal(err)
		}
		dcs = append(dcs, dc)
	}
	for i, dc := range dcs {
		if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("publish %d not confirmed: %v", i, err)
		}
	}
	declared := time.Since(start)
	fds := countFDs(t, c.cmd.Process.Pid)
	conn.Close()
	c.kill()
	start = time.Now()
	c = startChild(t, dir, limit)
	restarted := time.Since(start)
	after := countFDs(t, c.cmd.Process.Pid)
	conn, err = amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ = conn.Channel()
	for i := 0; i < n; i += n / 200 {
		q, err := ch.QueueDeclarePassive(fmt.Sprintf("job-%05d", i), true, false, false, false, nil)
		if err != nil || q.Messages != 1 {
			t.Fatalf("queue %d after restart: %+v %v", i, q, err)
		}
	}
	t.Logf("%d durable queues with a message each under a limit of 1024 descriptors: declared and confirmed in %v (%d descriptors open), restarted after kill -9 in %v (%d open)",
		n, declared.Round(time.Millisecond), fds, restarted.Round(time.Millisecond), after)
}

func countFDs(t *testing.T, pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skip("no /proc")
	}
	return len(ents)
}

// TestIdleQueueMemoryBroker measures the heap a durable queue holds in the
// whole broker (queue, store, log, topology) once it has taken, delivered
// and lost its messages and sat idle: goal 16 KiB.
func TestIdleQueueMemoryBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	const n = 5000
	b := startBroker(t, "")
	_, ch := b.channel()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	body := make([]byte, 16<<10)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("idle-%05d", i)
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		publish(t, ch, "", name, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
	}
	for i := 0; i < n; i++ {
		for {
			_, ok, err := ch.Get(fmt.Sprintf("idle-%05d", i), true)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Acked segments go in the store's reclaim pass (every second), and
	// buffers are released two passes after a queue was last touched. On a
	// busy machine (CI runs packages side by side) a pass over 5,000
	// queues takes longer, so the test waits for the state to settle, up
	// to a minute, rather than a fixed time.
	var per, size float64
	var files int
	deadline := time.Now().Add(time.Minute)
	for {
		time.Sleep(500 * time.Millisecond)
		size, files = 0, 0
		filepath.Walk(filepath.Join(b.dir, "queues"), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				size += float64(fi.Size())
				files++
			}
			return nil
		})
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&after)
		per = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
		if (files == 0 && per <= 16<<10) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("%d idle durable queues after a 16 KiB message each: %.0f B of heap per queue (goal 16 KiB); %d files, %.0f bytes under queues/",
		n, per, files, size)
	if per > 16<<10 {
		t.Fatalf("%.0f B per idle queue after a minute idle", per)
	}
	if files != 0 {
		t.Fatalf("%d segment files left under queues/ after a minute: drained queues keep no file", files)
	}
}

// TestDrainedQueuesReturnMemory: 200 durable queues take 200 persistent
// 16 KiB messages each (640 MB through the broker) and are drained; once
// idle, the broker process gives the memory back to the operating system
// (resident set), not only to its heap.
func TestDrainedQueuesReturnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("640 MB through a broker process")
	}
	c := startChild(t, t.TempDir())
	pid := c.cmd.Process.Pid
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	base := rss(t, pid)
	const queues, per = 200, 200
	body := make([]byte, 16<<10)
	for i := range body {
		body[i] = byte(i * 13)
	}
	var dcs []*amqp.DeferredConfirmation
	for q := 0; q < queues; q++ {
		name := fmt.Sprintf("drained-%03d", q)
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		for m := 0; m < per; m++ {
			dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", name, false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
			if err != nil {
				t.Fatal(err)
			}
			dcs = append(dcs, dc)
		}
	}
	for _, dc := range dcs {
		if ok, err := dc.WaitContext(context.Background()); !ok || err != nil {
			t.Fatalf("not confirmed: %v", err)
		}
	}
	cch, _ := conn.Channel()
	cch.Qos(100, 0, false)
	for q := 0; q < queues; q++ {
		ds, err := cch.Consume(fmt.Sprintf("drained-%03d", q), "", false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < per; i++ {
			select {
			case d := <-ds:
				d.Ack(false)
			case <-time.After(10 * time.Second):
				t.Fatalf("queue %d: %d of %d deliveries", q, i, per)
			}
		}
	}
	peak := peakRSS(t, pid)
	var now uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		now = rss(t, pid)
		if now < base+64<<20 || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("resident: %d MiB before, peak %d MiB, %d MiB once drained and idle", base>>20, peak>>20, now>>20)
	if now >= base+64<<20 {
		t.Fatalf("the drained broker keeps %d MiB resident over its %d MiB at start", (now-base)>>20, base>>20)
	}
}

// rss returns a process's resident set (VmRSS).
func rss(t *testing.T, pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skip("no /proc")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
