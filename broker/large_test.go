package broker

import (
	"bytes"
	"math/rand"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestAckedLargeMessagesSkipTheDisk: persistent 256 KiB messages (each
// more than a frame, so read through the body sink) that their consumer
// acknowledges within the hold are confirmed without being written; the
// same bodies routed to a second queue nobody consumes are written and
// survive a restart whole, as do messages published while no consumer
// takes them.
func TestAckedLargeMessagesSkipTheDisk(t *testing.T) {
	b := startBrokerConfig(t, Config{LargeHold: 5 * time.Second})
	_, ch := b.channel()
	if err := ch.ExchangeDeclare("fx", "fanout", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"big", "keep"} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		if err := ch.QueueBind(q, "", "fx", false, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	_, cch := b.channel()
	deliveries, err := cch.Consume("big", "c", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	body := func() []byte {
		p := make([]byte, 256<<10)
		rng.Read(p)
		return p
	}
	confirm := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for i := 0; i < n; i++ {
			select {
			case c := <-confirms:
				if !c.Ack {
					t.Fatalf("publish %d nacked", c.DeliveryTag)
				}
			case <-deadline:
				t.Fatalf("%d of %d confirms within %v", i, n, within)
			}
		}
	}
	// consume acks n deliveries as they come and checks their bodies.
	consume := func(want [][]byte) {
		t.Helper()
		for i, w := range want {
			select {
			case d := <-deliveries:
				if !bytes.Equal(d.Body, w) {
					t.Fatalf("delivery %d: %d bytes differ from the %d published", i, len(d.Body), len(w))
				}
				if err := d.Ack(false); err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("delivery %d of %d missing", i, len(want))
			}
		}
	}

	// One message first, so that the broker sees the consumer take them.
	var kept [][]byte
	warm := body()
	kept = append(kept, warm)
	publish(t, ch, "fx", "", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: warm})
	consume([][]byte{warm})
	confirm(1, 10*time.Second)
	before := b.srv.StorageStats().Skipped

	const n = 20
	var sent [][]byte
	start := time.Now()
	for i := 0; i < n; i++ {
		p := body()
		sent = append(sent, p)
		publish(t, ch, "fx", "", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: p})
	}
	kept = append(kept, sent...)
	consume(sent)
	confirm(n, 10*time.Second)
	took := time.Since(start)
	st := b.srv.StorageStats()
	if got := st.Skipped - before; got < n {
		t.Fatalf("%d of the %d acknowledged messages were not written; want all", got, n)
	}
	if took > 4*time.Second {
		t.Fatalf("confirms took %v: the hold was waited out though every message was acknowledged", took)
	}

	// No consumer: published, confirmed after the hold at most, written.
	if err := cch.Cancel("c", false); err != nil {
		t.Fatal(err)
	}
	var waiting [][]byte
	for i := 0; i < 2; i++ {
		p := body()
		waiting = append(waiting, p)
		publish(t, ch, "fx", "", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: p})
	}
	kept = append(kept, waiting...)
	confirm(2, 10*time.Second)

	b = b.restart()
	_, ch = b.channel()
	for _, c := range []struct {
		queue string
		want  [][]byte
	}{{"big", waiting}, {"keep", kept}} {
		for i, w := range c.want {
			m, ok, err := ch.Get(c.queue, true)
			if err != nil || !ok {
				t.Fatalf("%s after restart: message %d of %d missing (%v)", c.queue, i, len(c.want), err)
			}
			if !bytes.Equal(m.Body, w) {
				t.Fatalf("%s after restart: message %d has %d bytes, not the %d published", c.queue, i, len(m.Body), len(w))
			}
		}
		if _, ok, _ := ch.Get(c.queue, true); ok {
			t.Fatalf("%s after restart: more messages than published and not acknowledged", c.queue)
		}
	}
}
