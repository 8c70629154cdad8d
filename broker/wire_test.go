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
	if out, max := b.outBytes(), DefaultCongestionLimit+2*len(body); out > max {
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

// openBlockedCapable performs the handshake announcing connection.blocked support.
func (r *rawConn) openBlockedCapable() {
	r.t.Helper()
	r.send([]byte(amqpwire.ProtocolHeader))
	expect[*amqpwire.ConnectionStart](r)
	r.method(0, &amqpwire.ConnectionStartOk{ClientProperties: amqpwire.Table{"capabilities": amqpwire.Table{"connection.blocked": true}},
		Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	expect[*amqpwire.ConnectionTune](r)
	r.method(0, &amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072})
	r.method(0, &amqpwire.ConnectionOpen{VirtualHost: "/"})
	expect[*amqpwire.ConnectionOpenOk](r)
}

func publishFrames(ch uint16, key string, body []byte) []byte {
	msg := amqpwire.AppendMethodFrame(nil, ch, &amqpwire.BasicPublish{RoutingKey: key})
	return amqpwire.AppendContentFrames(msg, ch, amqpwire.ClassBasic, uint64(len(body)), []byte{0, 0}, body, 131072)
}

// TestResourceAlarmsBlockPublishers raises the memory alarm, then the disk
// alarm: a publishing connection gets connection.blocked, its publishes
// are not read, while a consuming connection keeps receiving and acking;
// when the alarm clears it gets connection.unblocked and its publishes go
// through.
func TestResourceAlarmsBlockPublishers(t *testing.T) {
	b := startBrokerConfig(t, Config{AlarmInterval: 20 * time.Millisecond})
	_, cch := b.channel()
	cch.QueueDeclare("alarm-in", false, false, false, false, nil)
	cch.QueueDeclare("alarm-backlog", false, false, false, false, nil)
	// cch publishes only while no alarm is active: a publish the broker
	// reads during an alarm blocks cch too (as RabbitMQ blocks any
	// publishing connection), and its consume below would never be answered.
	// So each batch is waited for, before the next alarm is raised.
	backlog := func() {
		t.Helper()
		for i := 0; i < 10; i++ {
			publish(t, cch, "", "alarm-backlog", amqp.Publishing{Body: []byte("b")})
		}
		if q, err := cch.QueueDeclarePassive("alarm-backlog", false, false, false, false, nil); err != nil || q.Messages != 10 {
			t.Fatalf("backlog: %+v %v, want 10 messages", q, err)
		}
	}
	backlog()
	for _, tc := range []struct {
		name, reason string
		raise, clear func() error
	}{
		{"memory", "low on memory",
			func() error { return b.srv.SetMemoryHighWatermark("absolute 1") },
			func() error { return b.srv.SetMemoryHighWatermark("0.4") }},
		{"disk", "low on disk",
			func() error { return b.srv.SetDiskFreeLimit("1000000TB") },
			func() error { return b.srv.SetDiskFreeLimit("50MB") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, b)
			r.openBlockedCapable()
			r.method(1, &amqpwire.ChannelOpen{})
			expect[*amqpwire.ChannelOpenOk](r)
			if err := tc.raise(); err != nil {
				t.Fatal(err)
			}
			if b.srv.Alarms().Active == 0 {
				t.Fatal("alarm not raised")
			}
			r.send(publishFrames(1, "alarm-in", []byte("p1")))
			bl := expect[*amqpwire.ConnectionBlocked](r)
			if bl.Reason != tc.reason {
				t.Fatalf("reason %q", bl.Reason)
			}
			r.send(publishFrames(1, "alarm-in", []byte("p2")))
			// A consumer on another connection is not blocked.
			ds, err := cch.Consume("alarm-backlog", "c-"+tc.name, false, false, false, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range recvN(t, ds, 10) {
				if err := d.Ack(false); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := cch.QueueDeclare("alarm-tmp-"+tc.name, false, true, false, false, nil); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
			q, err := cch.QueueDeclarePassive("alarm-in", false, false, false, false, nil)
			if err != nil || q.Messages != 0 {
				t.Fatalf("publishes of a blocked connection were taken: %+v %v", q, err)
			}
			if err := tc.clear(); err != nil {
				t.Fatal(err)
			}
			expect[*amqpwire.ConnectionUnblocked](r)
			deadline := time.Now().Add(5 * time.Second)
			for {
				q, _ := cch.QueueDeclarePassive("alarm-in", false, false, false, false, nil)
				if q.Messages == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after unblocking: %d messages, want 2", q.Messages)
				}
				time.Sleep(10 * time.Millisecond)
			}
			cch.QueuePurge("alarm-in", false)
			cch.Cancel("c-"+tc.name, false)
			backlog()
		})
	}
}

// TestBlockedPublisherKeptAfterLongAlarm: a publisher with a heartbeat of
// 1 s is blocked by an alarm for 3 s, with half a message already read
// into the broker's buffer. When the alarm clears the broker reads on: the
// heartbeat deadline is re-armed for the socket read that completes the
// frame (it was set before the block and has long passed), so the
// connection is not dropped as dead and both messages arrive.
func TestBlockedPublisherKeptAfterLongAlarm(t *testing.T) {
	b := startBrokerConfig(t, Config{AlarmInterval: 20 * time.Millisecond})
	_, cch := b.channel()
	cch.QueueDeclare("alarm-hb", false, false, false, false, nil)
	r := dialRaw(t, b)
	r.send([]byte(amqpwire.ProtocolHeader))
	expect[*amqpwire.ConnectionStart](r)
	r.method(0, &amqpwire.ConnectionStartOk{ClientProperties: amqpwire.Table{"capabilities": amqpwire.Table{"connection.blocked": true}},
		Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"})
	expect[*amqpwire.ConnectionTune](r)
	r.method(0, &amqpwire.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 1})
	r.method(0, &amqpwire.ConnectionOpen{VirtualHost: "/"})
	expect[*amqpwire.ConnectionOpenOk](r)
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	if err := b.srv.SetMemoryHighWatermark("absolute 1"); err != nil {
		t.Fatal(err)
	}
	second := publishFrames(1, "alarm-hb", []byte("second message"))
	half := len(second) - 8
	r.send(append(publishFrames(1, "alarm-hb", []byte("p1")), second[:half]...))
	expect[*amqpwire.ConnectionBlocked](r)
	// Blocked for longer than two heartbeat intervals; the client stays
	// alive and sends its heartbeats, which the blocked broker does not
	// read yet.
	for i := 0; i < 6; i++ {
		time.Sleep(500 * time.Millisecond)
		r.send(amqpwire.AppendHeartbeatFrame(nil))
	}
	if err := b.srv.SetMemoryHighWatermark("0.4"); err != nil {
		t.Fatal(err)
	}
	expect[*amqpwire.ConnectionUnblocked](r)
	r.send(second[half:])
	deadline := time.Now().Add(5 * time.Second)
	for {
		q, err := cch.QueueDeclarePassive("alarm-hb", false, false, false, false, nil)
		if err == nil && q.Messages == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the alarm: %+v %v, want 2 messages (was the publisher dropped?)", q, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if conns := b.srv.Connections(); len(conns) != 2 {
		t.Fatalf("%d connections open, want the publisher and the checker", len(conns))
	}
}
