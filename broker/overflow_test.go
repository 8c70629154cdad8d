package broker

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/amqpwire"
)

// TestMaxLengthBytes: x-max-length-bytes counts message bodies only
// (headers do not count) and drops from the head; a message larger than
// the limit on its own is dropped too.
func TestMaxLengthBytes(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("mlb")
		p.declare(t, ch, "mlb", false, amqp.Table{"x-max-length-bytes": int32(10)})
		for i := 0; i < 5; i++ {
			publish(t, ch, "", q, amqp.Publishing{Headers: amqp.Table{"big": string(make([]byte, 100))}, Body: []byte(fmt.Sprintf("abc%d", i))})
		}
		waitReady(t, ch, q, 2)
		if got := getAll(t, ch, q); !slices.Equal(got, []string{"abc3", "abc4"}) {
			t.Fatalf("kept %v, want the last two 4-byte bodies", got)
		}
		publish(t, ch, "", q, amqp.Publishing{Body: []byte("0123456789AB")})
		publish(t, ch, "", q, amqp.Publishing{Body: []byte("ok")})
		waitReady(t, ch, q, 1)
		if got := getAll(t, ch, q); !slices.Equal(got, []string{"ok"}) {
			t.Fatalf("after an oversized message: %v", got)
		}
	})
}

// TestRejectPublish: with x-overflow reject-publish a full queue refuses
// new messages: a confirming publisher gets basic.nack for each refused
// one and basic.ack for the others; unacked messages do not count; a
// mandatory message refused is not returned.
func TestRejectPublish(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("rp")
		p.declare(t, ch, "rp", false, amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
		ch.Confirm(false)
		msg := func(s string) amqp.Publishing { return amqp.Publishing{Body: []byte(s)} }
		if got := publishConfirmed(t, ch, "", q, msg("a"), msg("b"), msg("c"), msg("d")); !slices.Equal(got, []bool{true, true, false, false}) {
			t.Fatalf("confirms %v", got)
		}
		_, cch := p.channel(t)
		cch.Qos(1, 0, false)
		ds, _ := cch.Consume(q, "", false, false, false, false, nil)
		if d := recvN(t, ds, 1)[0]; string(d.Body) != "a" {
			t.Fatalf("consumed %q", d.Body)
		}
		waitReady(t, ch, q, 1)
		if got := publishConfirmed(t, ch, "", q, msg("e"), msg("f")); !slices.Equal(got, []bool{true, false}) {
			t.Fatalf("with one unacked: %v", got)
		}
		// A mandatory message that the queue refuses is nacked, not returned.
		rets := ch.NotifyReturn(make(chan amqp.Return, 1))
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q, true, false, msg("g"))
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := dc.WaitContext(context.Background()); ok {
			t.Fatal("refused mandatory message acked")
		}
		select {
		case r := <-rets:
			t.Fatalf("refused message returned: %d %s", r.ReplyCode, r.ReplyText)
		case <-time.After(100 * time.Millisecond):
		}
	})
}

// TestRejectPublishZero: the length check comes before delivery, as in
// RabbitMQ: with x-max-length 0 and reject-publish even a waiting consumer
// gets nothing, while drop-head hands it the message.
func TestRejectPublishZero(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		ch.Confirm(false)
		for _, mode := range []string{"reject-publish", "drop-head"} {
			name := "zero-" + mode
			p.declare(t, ch, name, false, amqp.Table{"x-max-length": int32(0), "x-overflow": mode})
			_, cch := p.channel(t)
			ds, _ := cch.Consume(p.n(name), "", true, false, false, false, nil)
			time.Sleep(30 * time.Millisecond)
			acked := publishConfirmed(t, ch, "", p.n(name), amqp.Publishing{Body: []byte("z")})[0]
			got := false
			select {
			case <-ds:
				got = true
			case <-time.After(200 * time.Millisecond):
			}
			if want := mode == "drop-head"; acked != want || got != want {
				t.Fatalf("%s: acked %v, delivered %v", mode, acked, got)
			}
		}
		// A consumer with credit takes messages at once: they never count.
		name := "one-waiting"
		p.declare(t, ch, name, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
		_, cch := p.channel(t)
		ds, _ := cch.Consume(p.n(name), "", true, false, false, false, nil)
		time.Sleep(30 * time.Millisecond)
		var msgs []amqp.Publishing
		for i := 0; i < 20; i++ {
			msgs = append(msgs, amqp.Publishing{Body: []byte{byte(i)}})
		}
		for i, ok := range publishConfirmed(t, ch, "", p.n(name), msgs...) {
			if !ok {
				t.Fatalf("message %d refused although a consumer was taking them", i)
			}
		}
		recvN(t, ds, 20)
	})
}

// TestRejectPublishDLX: reject-publish-dlx also dead-letters what it
// refuses, with reason maxlen.
func TestRejectPublishDLX(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		dlx := p.n("rpdlx-x")
		if err := ch.ExchangeDeclare(dlx, "fanout", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		p.cleanup(t, "rpdlx-x", true)
		p.declare(t, ch, "rpdlx-dead", false, nil)
		ch.QueueBind(p.n("rpdlx-dead"), "", dlx, false, nil)
		q := p.n("rpdlx")
		p.declare(t, ch, "rpdlx", false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx})
		ch.Confirm(false)
		got := publishConfirmed(t, ch, "", q, amqp.Publishing{Body: []byte("x0")}, amqp.Publishing{Body: []byte("x1")}, amqp.Publishing{Body: []byte("x2")})
		if !slices.Equal(got, []bool{true, false, false}) {
			t.Fatalf("confirms %v", got)
		}
		waitReady(t, ch, p.n("rpdlx-dead"), 2)
		for _, want := range []string{"x1", "x2"} {
			m, ok, _ := ch.Get(p.n("rpdlx-dead"), true)
			if !ok || string(m.Body) != want {
				t.Fatalf("dead letter %q %v, want %s", m.Body, ok, want)
			}
			deaths, _ := m.Headers["x-death"].([]any)
			if len(deaths) != 1 {
				t.Fatalf("x-death %v", m.Headers)
			}
			d := deaths[0].(amqp.Table)
			if d["reason"] != "maxlen" || d["queue"] != q || d["count"] != int64(1) {
				t.Fatalf("x-death entry %v", d)
			}
		}
	})
}

// TestRejectPublishNacksOnTheWire publishes four messages in one write to
// a queue holding at most two, on a raw connection: the broker must ack
// tags 1 and 2 and nack 3 and 4, in order, and never ack a refused one
// (the client library could hide a missing or misplaced nack).
func TestRejectPublishNacksOnTheWire(t *testing.T) {
	b := startBroker(t, "")
	r := dialRaw(t, b)
	r.open()
	r.method(1, &amqpwire.ChannelOpen{})
	expect[*amqpwire.ChannelOpenOk](r)
	r.method(1, &amqpwire.QueueDeclare{Queue: "rp-wire", Durable: true,
		Arguments: amqpwire.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"}})
	expect[*amqpwire.QueueDeclareOk](r)
	r.method(1, &amqpwire.ConfirmSelect{})
	expect[*amqpwire.ConfirmSelectOk](r)
	persistent := (&amqpwire.Properties{Flags: amqpwire.FlagDeliveryMode, DeliveryMode: 2}).AppendTo(nil)
	var frames []byte
	for i := 0; i < 4; i++ {
		frames = amqpwire.AppendMethodFrame(frames, 1, &amqpwire.BasicPublish{RoutingKey: "rp-wire"})
		frames = amqpwire.AppendContentFrames(frames, 1, amqpwire.ClassBasic, 1, persistent, []byte{byte('a' + i)}, 131072)
	}
	r.send(frames)
	status := map[uint64]string{}
	next := uint64(1)
	for next <= 4 {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d confirms: %v", next-1, err)
		}
		m, err := amqpwire.DecodeMethod(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var tag uint64
		var multiple bool
		kind := ""
		switch x := m.(type) {
		case *amqpwire.BasicAck:
			tag, multiple, kind = x.DeliveryTag, x.Multiple, "ack"
		case *amqpwire.BasicNack:
			tag, multiple, kind = x.DeliveryTag, x.Multiple, "nack"
		default:
			t.Fatalf("unexpected %s", m.Name())
		}
		if tag < next || (!multiple && tag != next) {
			t.Fatalf("%s of tag %d (multiple=%v) while %d is the next unconfirmed", kind, tag, multiple, next)
		}
		for ; next <= tag; next++ {
			status[next] = kind
		}
	}
	want := map[uint64]string{1: "ack", 2: "ack", 3: "nack", 4: "nack"}
	for tag, k := range want {
		if status[tag] != k {
			t.Fatalf("confirms %v, want %v", status, want)
		}
	}
}

// TestByteLimitSurvivesKill9 fills a durable queue up to its byte limit
// (reject-publish), kills the broker with SIGKILL, and checks after the
// restart that the queue still knows its ready bytes: the next message is
// refused, and after consuming one there is room for exactly one more.
func TestByteLimitSurvivesKill9(t *testing.T) {
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
	args := amqp.Table{"x-max-length-bytes": int32(1000), "x-overflow": "reject-publish"}
	if _, err := ch.QueueDeclare("bk", true, false, false, false, args); err != nil {
		t.Fatal(err)
	}
	ch.Confirm(false)
	body := make([]byte, 100)
	var msgs []amqp.Publishing
	for i := 0; i < 10; i++ {
		msgs = append(msgs, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
	}
	for i, ok := range publishConfirmed(t, ch, "", "bk", msgs...) {
		if !ok {
			t.Fatalf("message %d refused below the limit", i)
		}
	}
	c.kill()
	conn.Close()

	c2 := startChild(t, dir)
	conn2, err := amqp.Dial(c2.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	ch2.Confirm(false)
	one := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")}
	if got := publishConfirmed(t, ch2, "", "bk", one); got[0] {
		t.Fatal("a full queue took a message after the restart: its bytes were forgotten")
	}
	if _, ok, err := ch2.Get("bk", true); !ok || err != nil {
		t.Fatalf("get: %v %v", ok, err)
	}
	big := amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}
	if got := publishConfirmed(t, ch2, "", "bk", big, big); !slices.Equal(got, []bool{true, false}) {
		t.Fatalf("after taking 100 bytes out: %v, want room for one", got)
	}
}

// TestRejectPublishWithoutConfirms: without confirms the refused messages
// are dropped, silently: the channel stays open and the queue keeps the
// first ones, as in RabbitMQ.
func TestRejectPublishWithoutConfirms(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		q := p.n("rpnc")
		p.declare(t, ch, "rpnc", false, amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
		for _, s := range []string{"a", "b", "c", "d"} {
			if err := ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: []byte(s)}); err != nil {
				t.Fatal(err)
			}
		}
		waitReady(t, ch, q, 2)
		var got []string
		for {
			d, ok, err := ch.Get(q, true)
			if err != nil {
				t.Fatalf("get: %v (the channel was closed)", err)
			}
			if !ok {
				break
			}
			got = append(got, string(d.Body))
		}
		if !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("queue held %v, want [a b]", got)
		}
	})
}
