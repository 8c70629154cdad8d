package broker

import (
	"fmt"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestPriorityOrder: x-max-priority delivers higher priorities first and
// FIFO within one; priorities above the maximum count as the maximum (the
// property itself is delivered as published); messages without one count
// as 0.
func TestPriorityOrder(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("prio")
		p.declare(t, ch, "prio", false, amqp.Table{"x-max-priority": int32(5)})
		prios := []uint8{0, 3, 5, 9, 1, 0, 5, 255, 2}
		for i, pr := range prios {
			publish(t, ch, "", q, amqp.Publishing{Priority: pr, Body: []byte(fmt.Sprintf("m%d", i))})
		}
		publish(t, ch, "", q, amqp.Publishing{Body: []byte("none")})
		waitReady(t, ch, q, len(prios)+1)
		var got []string
		var gotPrio []uint8
		for {
			m, ok, err := ch.Get(q, true)
			if err != nil || !ok {
				break
			}
			got = append(got, string(m.Body))
			gotPrio = append(gotPrio, m.Priority)
		}
		want := []string{"m2", "m3", "m6", "m7", "m1", "m8", "m4", "m0", "m5", "none"}
		if !slices.Equal(got, want) {
			t.Fatalf("order %v, want %v", got, want)
		}
		if !slices.Equal(gotPrio[:4], []uint8{5, 9, 5, 255}) {
			t.Fatalf("priorities delivered %v: the property must be kept as published", gotPrio)
		}
	})
}

// TestPriorityDropHeadAndRequeue: with x-max-length the head dropped is the
// highest priority's, as in RabbitMQ; a requeued message goes back to its
// own level, ahead of lower ones.
func TestPriorityDropHeadAndRequeue(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("prio-ml")
		p.declare(t, ch, "prio-ml", false, amqp.Table{"x-max-priority": int32(5), "x-max-length": int32(3)})
		for i, pr := range []uint8{1, 5, 0, 3, 2} {
			publish(t, ch, "", q, amqp.Publishing{Priority: pr, Body: []byte(fmt.Sprintf("m%d-p%d", i, pr))})
		}
		waitReady(t, ch, q, 3)
		if got := getAll(t, ch, q); !slices.Equal(got, []string{"m4-p2", "m0-p1", "m2-p0"}) {
			t.Fatalf("after drop-head: %v", got)
		}

		q2 := p.n("prio-rq")
		p.declare(t, ch, "prio-rq", false, amqp.Table{"x-max-priority": int32(3)})
		for i, pr := range []uint8{3, 1, 3, 1} {
			publish(t, ch, "", q2, amqp.Publishing{Priority: pr, Body: []byte(fmt.Sprintf("r%d", i))})
		}
		waitReady(t, ch, q2, 4)
		_, cch := p.channel(t)
		cch.Qos(2, 0, false)
		ds, err := cch.Consume(q2, "", false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		first := recvN(t, ds, 2)
		if string(first[0].Body) != "r0" || string(first[1].Body) != "r2" {
			t.Fatalf("first two %q %q", first[0].Body, first[1].Body)
		}
		first[0].Nack(false, true)
		next := recvN(t, ds, 1)[0]
		if string(next.Body) != "r0" || !next.Redelivered {
			t.Fatalf("after requeue of r0 got %q redelivered=%v, want r0 again", next.Body, next.Redelivered)
		}
	})
}

// TestPriorityArgs checks x-max-priority's validation texts.
func TestPriorityArgs(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		for v, want := range map[any]string{
			int32(256): "{max_value_exceeded,256}",
			int32(-1):  "{value_negative,-1}",
			"5":        `"expected integer, got longstr"`,
		} {
			err := p.tryDeclare(t, "prio-bad", false, false, false, amqp.Table{"x-max-priority": v})
			wantAMQPError(t, err, 406, fmt.Sprintf("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue '%s' in vhost '/': %s", p.n("prio-bad"), want))
		}
		if err := p.tryDeclare(t, "prio-zero", false, false, false, amqp.Table{"x-max-priority": int32(0)}); err != nil {
			t.Fatalf("x-max-priority 0: %v", err)
		}
	})
}

// TestPriorityKill9 publishes persistent messages of several priorities to
// a durable priority queue, holds some unacked, kills the broker with
// SIGKILL and checks that after the restart every message comes back, in
// priority order, those delivered before flagged redelivered.
func TestPriorityKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess test")
	}
	dir := t.TempDir()
	c := startChild(t, dir)
	conn, err := amqp.Dial(c.url())
	if err != nil {
		t.Fatal(err)
	}
	ch, _ := conn.Channel()
	if _, err := ch.QueueDeclare("pk", true, false, false, false, amqp.Table{"x-max-priority": int32(9)}); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	var msgs []amqp.Publishing
	for i := 0; i < 300; i++ {
		msgs = append(msgs, amqp.Publishing{DeliveryMode: amqp.Persistent, Priority: uint8(i % 10), Body: []byte(fmt.Sprintf("%03d", i))})
	}
	for _, ok := range publishConfirmed(t, ch, "", "pk", msgs...) {
		if !ok {
			t.Fatal("nacked")
		}
	}
	cch, _ := conn.Channel()
	cch.Qos(15, 0, false)
	ds, _ := cch.Consume("pk", "", false, false, false, false, nil)
	held := recvN(t, ds, 15) // the first 15 of priority 9, unacked
	for _, d := range held[:5] {
		d.Ack(false)
	}
	time.Sleep(100 * time.Millisecond) // let the acks reach the store
	c.kill()
	conn.Close()

	c2 := startChild(t, dir)
	conn2, err := amqp.Dial(c2.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	var got []string
	redelivered := map[string]bool{}
	for {
		m, ok, err := ch2.Get("pk", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(m.Body))
		redelivered[string(m.Body)] = m.Redelivered
	}
	// Acks may or may not have been persisted before the kill: the first
	// five may come back (redelivered); nothing else may be missing.
	var want []string
	for level := 9; level >= 0; level-- {
		for i := level; i < 300; i += 10 {
			want = append(want, fmt.Sprintf("%03d", i))
		}
	}
	for len(got) < len(want) && len(want) > 0 && !slices.Contains(got, want[0]) {
		want = want[1:] // acked before the kill
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after kill -9: %d messages %v..., want %d %v...", len(got), got[:min(12, len(got))], len(want), want[:12])
	}
	for _, d := range held[5:] {
		if !redelivered[string(d.Body)] {
			t.Errorf("%s was delivered before the kill but is not flagged redelivered", d.Body)
		}
	}
}
