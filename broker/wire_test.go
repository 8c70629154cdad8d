package broker

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/amqpwire"
)

// Wire-level tests of protocol guarantees that a client library can hide
// (amqp091-go reorders confirms itself), driven with a raw connection.

// TestConfirmsArriveInOrder publishes alternately persistent messages to a
// durable queue (confirmed after their fsync) and transient ones to a
// transient queue (confirmable at once), and checks on the wire that acks
// come in order: every ack covers the next unconfirmed tags and nothing
// beyond, never a later tag before an earlier one.
func TestConfirmsArriveInOrder(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.QueueDeclare{Queue: "co-durable", Durable: true})
	expect[*amqpwire.QueueDeclareOk](r)
	r.method(1, &amqpwire.QueueDeclare{Queue: "co-transient"})
	expect[*amqpwire.QueueDeclareOk](r)
	r.method(1, &amqpwire.ConfirmSelect{})
	expect[*amqpwire.ConfirmSelectOk](r)

	persistent := (&amqpwire.Properties{Flags: amqpwire.FlagDeliveryMode, DeliveryMode: 2}).AppendTo(nil)
	const n = 400
	go func() {
		for i := 0; i < n; i++ {
			q, props := "co-transient", []byte{0, 0}
			if i%2 == 0 {
				q, props = "co-durable", persistent
			}
			var msg []byte
			msg = amqpwire.AppendMethodFrame(msg, 1, &amqpwire.BasicPublish{RoutingKey: q})
			msg = amqpwire.AppendContentFrames(msg, 1, amqpwire.ClassBasic, 3, props, []byte("abc"), 131072)
			if _, err := r.nc.Write(msg); err != nil {
				return
			}
			if i%2 == 1 {
				// Separate socket reads, so the two kinds land in
				// different batches whose confirms race.
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
	next := uint64(1)
	r.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for next <= n {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d confirms: %v", next-1, err)
		}
		if f.Type != amqpwire.FrameMethod {
			continue
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		ack, ok := m.(*amqpwire.BasicAck)
		if !ok {
			t.Fatalf("unexpected %s", m.Name())
		}
		switch {
		case ack.DeliveryTag < next:
			t.Fatalf("ack of tag %d (multiple=%v) after tags up to %d were confirmed", ack.DeliveryTag, ack.Multiple, next-1)
		case !ack.Multiple && ack.DeliveryTag != next:
			t.Fatalf("ack of tag %d while tag %d is unconfirmed", ack.DeliveryTag, next)
		}
		next = ack.DeliveryTag + 1
	}
}

// TestSlowConsumerStallsDelivery: a consumer that does not read gets no
// more than the congestion limit queued in the broker for it; the rest of
// the backlog stays in the queue (on disk), not in the broker's memory.
func TestSlowConsumerStallsDelivery(t *testing.T) {
	b := startBroker(t, "")
	_, pch := b.channel()
	pch.QueueDeclare("stall", false, false, false, false, nil)
	body := make([]byte, 64<<10)
	const n = 800 // 51 MB
	for i := 0; i < n; i++ {
		publish(t, pch, "", "stall", amqp.Publishing{Body: body})
	}
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.BasicConsume{Queue: "stall", NoAck: true})
	// Read nothing more; let the broker deliver what it will.
	time.Sleep(500 * time.Millisecond)
	if out, max := b.outBytes(), congestLimit+2*len(body); out > max {
		t.Fatalf("%d bytes queued for a consumer that does not read; bound %d", out, max)
	}
	q, err := pch.QueueDeclarePassive("stall", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages < n/2 {
		t.Fatalf("only %d of %d messages left in the queue: the rest went to a consumer that reads nothing", q.Messages, n)
	}
}
