package broker

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// crashLedger is what the clients of the crash harness saw, across rounds.
type crashLedger struct {
	mu        sync.Mutex
	confirmed map[uint64]bool // id -> acked by the broker's confirm
	delivered map[uint64]int  // id -> deliveries seen
	acked     map[uint64]bool // id -> the client sent its ack
	// unflagged counts deliveries of a message seen before that came
	// without the redelivered flag; dups counts repeated deliveries.
	unflagged int
	dups      int
}

// TestCrashHarness kills the broker with SIGKILL again and again while
// publishers with confirms and consumers with manual acks run on two
// durable queues, restarts it on the same data directory, and at the end
// checks that every confirmed message was delivered (or is still queued),
// that queue counts match what is drained, and how redeliveries were
// flagged. WARREN_CRASH_ROUNDS sets the number of kills (default 3).
func TestCrashHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	rounds := 3
	if n, err := strconv.Atoi(os.Getenv("WARREN_CRASH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	dir := t.TempDir()
	queues := []string{"crash-a", "crash-b"}
	led := &crashLedger{confirmed: map[uint64]bool{}, delivered: map[uint64]int{}, acked: map[uint64]bool{}}
	var nextID uint64
	for round := 0; round < rounds; round++ {
		c := startChild(t, dir)
		crashRound(t, c, queues, led, &nextID, time.Duration(150+rand.IntN(450))*time.Millisecond)
		c.kill()
	}
	// Final restart: drain what is left and account for everything.
	c := startChild(t, dir)
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	left := map[uint64]bool{}
	for _, q := range queues {
		st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		drained := 0
		ds, err := ch.Consume(q, "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		for drained < st.Messages {
			var m amqp.Delivery
			select {
			case m = <-ds:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: declare-ok said %d messages, only %d delivered", q, st.Messages, drained)
			}
			drained++
			id := binary.BigEndian.Uint64(m.Body)
			led.mu.Lock()
			if led.delivered[id] > 0 && !m.Redelivered {
				led.unflagged++
			}
			led.mu.Unlock()
			left[id] = true
		}
		expectNone(t, ds, 300*time.Millisecond) // and not more than it said
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	lost, nconf := 0, 0
	for id, ok := range led.confirmed {
		if !ok {
			continue
		}
		nconf++
		// A confirmed message leaves the broker only by an ack: one that
		// the consumer did not ack (nacked and requeued, unacked at a
		// kill, or never delivered) must still be there at the end.
		if !led.acked[id] && !left[id] {
			lost++
			if lost <= 5 {
				t.Errorf("confirmed message %d lost", id)
			}
		}
	}
	// Every acked message was delivered; one that comes back after its ack
	// must have been acked just before a kill, and must be flagged.
	t.Logf("rounds %d: published %d, confirmed %d, deliveries %d of %d messages, acked %d, left %d, duplicates %d, redeliveries without the flag %d, lost %d",
		rounds, nextID, nconf, sumDeliveries(led.delivered), len(led.delivered), len(led.acked), len(left), led.dups, led.unflagged, lost)
	if lost > 0 {
		t.Fatalf("%d confirmed messages lost", lost)
	}
	if led.unflagged > 0 {
		// The store delivers only below a delivery lease the index holds.
		t.Fatalf("%d redeliveries of messages delivered before a kill came without the redelivered flag", led.unflagged)
	}
	if nconf == 0 {
		t.Fatal("nothing was confirmed")
	}
}

func sumDeliveries(m map[uint64]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// crashRound runs publishers and consumers against c until it is killed
// after d.
func crashRound(t *testing.T, c *child, queues []string, led *crashLedger, nextID *uint64, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var idMu sync.Mutex
	newID := func() uint64 {
		idMu.Lock()
		defer idMu.Unlock()
		*nextID++
		return *nextID
	}
	var conns []*amqp.Connection
	dial := func() *amqp.Connection {
		conn, err := amqp.Dial(c.url())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, conn)
		return conn
	}
	setup, _ := dial().Channel()
	for _, q := range queues {
		if _, err := setup.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, q := range queues {
		// A publisher with confirms per queue.
		pch, _ := dial().Channel()
		pch.Confirm(false)
		wg.Add(1)
		go func() {
			defer wg.Done()
			inflight := make(chan struct{}, 256) // confirms awaited at once
			for ctx.Err() == nil {
				select {
				case inflight <- struct{}{}:
				case <-ctx.Done():
					return
				}
				id := newID()
				body := make([]byte, 32+i*200)
				binary.BigEndian.PutUint64(body, id)
				dc, err := pch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false,
					amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
				if err != nil {
					return
				}
				go func() {
					ok, err := dc.WaitContext(context.Background())
					if err == nil {
						led.mu.Lock()
						led.confirmed[id] = ok
						led.mu.Unlock()
					}
					<-inflight
				}()
			}
		}()
		// A consumer with manual acks per queue.
		cch, _ := dial().Channel()
		cch.Qos(50, 0, false)
		ds, err := cch.Consume(q, "", false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m := range ds {
				id := binary.BigEndian.Uint64(m.Body)
				led.mu.Lock()
				if led.delivered[id] > 0 {
					led.dups++
					if !m.Redelivered {
						led.unflagged++
					}
				}
				led.delivered[id]++
				led.mu.Unlock()
				if id%10 == 0 && !m.Redelivered {
					m.Nack(false, true) // requeued: comes back flagged
					continue
				}
				if m.Ack(false) == nil {
					led.mu.Lock()
					led.acked[id] = true
					led.mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(d)
	c.kill()
	cancel()
	for _, conn := range conns {
		conn.Close()
	}
	wg.Wait()
}
