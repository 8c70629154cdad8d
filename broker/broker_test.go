package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestPublishConsumeAck(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	q, err := ch.QueueDeclare("jobs", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Name != "jobs" || q.Messages != 0 {
		t.Fatalf("declare-ok: %+v", q)
	}
	props := amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent,
		Priority: 3, CorrelationId: "c1", ReplyTo: "r", Expiration: "60000", MessageId: "m1",
		Timestamp: time.Unix(1700000000, 0), Type: "t", UserId: "guest", AppId: "app",
		Headers: amqp.Table{"k": "v", "n": int32(7)},
	}
	for i := 0; i < 10; i++ {
		props.Body = []byte(fmt.Sprintf(`{"n":%d}`, i))
		publish(t, ch, "", "jobs", props)
	}
	ds, err := ch.Consume("jobs", "c1", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := recvN(t, ds, 10)
	for i, d := range got {
		if string(d.Body) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Fatalf("message %d: body %q", i, d.Body)
		}
		if d.ContentType != "application/json" || d.MessageId != "m1" || d.Headers["n"] != int32(7) ||
			d.DeliveryMode != 2 || d.Priority != 3 || !d.Timestamp.Equal(props.Timestamp) || d.AppId != "app" {
			t.Fatalf("properties not kept: %+v", d)
		}
		if d.Redelivered || d.RoutingKey != "jobs" || d.Exchange != "" || d.ConsumerTag != "c1" {
			t.Fatalf("delivery fields: %+v", d)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	}
	// After acking, a passive declare shows an empty queue.
	q, err = ch.QueueDeclarePassive("jobs", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 || q.Consumers != 1 {
		t.Fatalf("after ack: %+v", q)
	}
}

func TestLargeMessageSplitsFrames(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("big", false, false, false, false, nil)
	body := make([]byte, 1<<20+17)
	for i := range body {
		body[i] = byte(i * 7)
	}
	publish(t, ch, "", "big", amqp.Publishing{Body: body})
	m, ok, err := ch.Get("big", true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if string(m.Body) != string(body) {
		t.Fatal("1 MiB body corrupted")
	}
}

func TestPublisherConfirms(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("durable-q", true, false, false, false, nil)
	ch.QueueDeclare("transient-q", false, false, false, false, nil)
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	const n = 500
	for i := 0; i < n; i++ {
		q := "durable-q"
		mode := amqp.Persistent
		if i%3 == 0 {
			q, mode = "transient-q", amqp.Transient
		}
		if i%7 == 0 {
			q = "no-such-queue" // unroutable: confirmed at once
		}
		publish(t, ch, "", q, amqp.Publishing{DeliveryMode: mode, Body: []byte("x")})
	}
	seen := make(map[uint64]bool)
	timeout := time.After(10 * time.Second)
	for len(seen) < n {
		select {
		case c := <-confirms:
			if !c.Ack {
				t.Fatalf("nack for %d", c.DeliveryTag)
			}
			if seen[c.DeliveryTag] {
				t.Fatalf("confirm %d twice", c.DeliveryTag)
			}
			seen[c.DeliveryTag] = true
		case <-timeout:
			t.Fatalf("got %d of %d confirms", len(seen), n)
		}
	}
	for i := uint64(1); i <= n; i++ {
		if !seen[i] {
			t.Fatalf("confirm %d missing", i)
		}
	}
}

func TestQueueDeclareErrors(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()

	_, err := ch.QueueDeclarePassive("missing", false, false, false, false, nil)
	wantAMQPError(t, err, 404, "NOT_FOUND - no queue 'missing' in vhost '/'")

	ch, _ = c.Channel()
	if _, err := ch.QueueDeclare("q1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclare("q1", false, false, false, false, nil)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q1' in vhost '/': received 'false' but current is 'true'")

	ch, _ = c.Channel()
	ch.QueueDeclare("q2", false, false, false, false, amqp.Table{"x-message-ttl": int32(1000)})
	_, err = ch.QueueDeclare("q2", false, false, false, false, amqp.Table{"x-message-ttl": int32(2000)})
	wantAMQPError(t, err, 406, "")

	ch, _ = c.Channel()
	_, err = ch.QueueDeclare("amq.mine", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - queue name 'amq.mine' contains reserved prefix 'amq.*'")

	// Server-named queue.
	ch, _ = c.Channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil || !strings.HasPrefix(q.Name, "amq.gen-") {
		t.Fatalf("server-named: %q %v", q.Name, err)
	}
}

func TestExclusiveQueue(t *testing.T) {
	b := startBroker(t, "")
	c1, ch1 := b.channel()
	if _, err := ch1.QueueDeclare("mine", false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	_, ch2 := b.channel()
	_, err := ch2.QueueDeclarePassive("mine", false, false, true, false, nil)
	wantAMQPError(t, err, 405, "")
	c1.Close()
	// The queue vanishes with its connection.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ch3 := b.channel()
		_, err = ch3.QueueDeclarePassive("mine", false, false, true, false, nil)
		if err != nil {
			wantAMQPError(t, err, 404, "")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("exclusive queue survived its connection")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAutoDeleteQueue(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("ad", false, true, false, false, nil)
	if _, err := ch.Consume("ad", "t1", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Cancel("t1", false); err != nil {
		t.Fatal(err)
	}
	ch2, _ := c.Channel()
	_, err := ch2.QueueDeclarePassive("ad", false, true, false, false, nil)
	wantAMQPError(t, err, 404, "")
}

func TestExchangeErrors(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()

	err := ch.ExchangeDeclarePassive("nope", "direct", false, false, false, false, nil)
	wantAMQPError(t, err, 404, "NOT_FOUND - no exchange 'nope' in vhost '/'")

	ch, _ = c.Channel()
	if err := ch.ExchangeDeclare("x1", "direct", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	err = ch.ExchangeDeclare("x1", "fanout", true, false, false, false, nil)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x1' in vhost '/': received 'fanout' but current is 'direct'")

	ch, _ = c.Channel()
	err = ch.ExchangeDeclare("amq.custom", "direct", true, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - exchange name 'amq.custom' contains reserved prefix 'amq.*'")

	ch, _ = c.Channel()
	chClosed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.PublishWithContext(context.Background(), "nope", "k", false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-chClosed:
		// The error arrives asynchronously as a channel close.
		wantAMQPError(t, e, 404, "NOT_FOUND - no exchange 'nope' in vhost '/'")
	case <-time.After(5 * time.Second):
		t.Fatal("publish to a missing exchange did not close the channel")
	}

	// An unknown exchange type is a channel error (406), as in RabbitMQ 4.x:
	// the connection stays open.
	ch, _ = c.Channel()
	err = ch.ExchangeDeclare("x2", "x-unknown", false, false, false, false, nil)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - unknown exchange type 'x-unknown'")
	time.Sleep(50 * time.Millisecond)
	if c.IsClosed() {
		t.Fatal("an unknown exchange type closed the connection")
	}
	if ch, err = c.Channel(); err != nil {
		t.Fatalf("new channel after the 406: %v", err)
	}
	if err := ch.ExchangeDeclare("x2", "direct", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

func TestExchangeDeleteIfUnused(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.ExchangeDeclare("src", "fanout", false, false, false, false, nil)
	ch.QueueDeclare("dst", false, false, false, false, nil)
	if err := ch.QueueBind("dst", "", "src", false, nil); err != nil {
		t.Fatal(err)
	}
	err := ch.ExchangeDelete("src", true, false)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - exchange 'src' in vhost '/' in use")
	ch, _ = c.Channel()
	if err := ch.ExchangeDelete("src", false, false); err != nil {
		t.Fatal(err)
	}
	// Deleting a missing exchange is fine.
	if err := ch.ExchangeDelete("src", false, false); err != nil {
		t.Fatal(err)
	}
}

func TestRouting(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	for _, q := range []string{"q-direct", "q-topic-a", "q-topic-b", "q-fan1", "q-fan2", "q-hdr-all", "q-hdr-any", "q-e2e"} {
		if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(ch.QueueBind("q-direct", "rk", "amq.direct", false, nil))
	must(ch.QueueBind("q-topic-a", "a.*.c", "amq.topic", false, nil))
	must(ch.QueueBind("q-topic-b", "a.#", "amq.topic", false, nil))
	must(ch.QueueBind("q-fan1", "", "amq.fanout", false, nil))
	must(ch.QueueBind("q-fan2", "ignored", "amq.fanout", false, nil))
	must(ch.QueueBind("q-hdr-all", "", "amq.headers", false, amqp.Table{"x-match": "all", "a": "1", "b": "2"}))
	must(ch.QueueBind("q-hdr-any", "", "amq.headers", false, amqp.Table{"x-match": "any", "a": "1", "b": "2"}))
	must(ch.ExchangeDeclare("inner", "direct", false, false, false, false, nil))
	must(ch.ExchangeBind("inner", "e2e", "amq.direct", false, nil))
	must(ch.QueueBind("q-e2e", "e2e", "inner", false, nil))

	publish(t, ch, "amq.direct", "rk", amqp.Publishing{Body: []byte("direct")})
	publish(t, ch, "amq.topic", "a.b.c", amqp.Publishing{Body: []byte("abc")})
	publish(t, ch, "amq.topic", "a", amqp.Publishing{Body: []byte("a")})
	publish(t, ch, "amq.fanout", "whatever", amqp.Publishing{Body: []byte("fan")})
	publish(t, ch, "amq.headers", "", amqp.Publishing{Headers: amqp.Table{"a": "1"}, Body: []byte("h-a")})
	publish(t, ch, "amq.headers", "", amqp.Publishing{Headers: amqp.Table{"a": "1", "b": "2"}, Body: []byte("h-ab")})
	publish(t, ch, "amq.direct", "e2e", amqp.Publishing{Body: []byte("via-e2e")})

	want := map[string][]string{
		"q-direct":  {"direct"},
		"q-topic-a": {"abc"},
		"q-topic-b": {"a", "abc"},
		"q-fan1":    {"fan"},
		"q-fan2":    {"fan"},
		"q-hdr-all": {"h-ab"},
		"q-hdr-any": {"h-a", "h-ab"},
		"q-e2e":     {"via-e2e"},
	}
	for q, bodies := range want {
		var got []string
		for {
			m, ok, err := ch.Get(q, true)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			got = append(got, string(m.Body))
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(bodies, ",") {
			t.Errorf("%s: got %v want %v", q, got, bodies)
		}
	}
}

func TestMandatoryReturn(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := ch.PublishWithContext(context.Background(), "amq.direct", "nobody", true, false,
		amqp.Publishing{MessageId: "lost", Body: []byte("ret")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || r.ReplyText != "NO_ROUTE" || string(r.Body) != "ret" || r.MessageId != "lost" || r.RoutingKey != "nobody" {
			t.Fatalf("return: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return")
	}
	// Through the default exchange, to a queue that does not exist.
	if err := ch.PublishWithContext(context.Background(), "", "no-such-queue", true, false,
		amqp.Publishing{Body: []byte("ret2")}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-returns:
		if r.ReplyCode != 312 || string(r.Body) != "ret2" {
			t.Fatalf("return: %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return for the default exchange")
	}
}

func TestPrefetchAndRedelivery(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("pf", false, false, false, false, nil)
	for i := 0; i < 5; i++ {
		publish(t, ch, "", "pf", amqp.Publishing{Body: []byte{byte('0' + i)}})
	}
	cch, _ := c.Channel()
	if err := cch.Qos(2, 0, false); err != nil {
		t.Fatal(err)
	}
	ds, err := cch.Consume("pf", "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := recvN(t, ds, 2)
	expectNone(t, ds, 200*time.Millisecond)
	got[0].Ack(false)
	got = append(got, recvN(t, ds, 1)...)
	if string(got[2].Body) != "2" {
		t.Fatalf("third delivery %q", got[2].Body)
	}
	// Closing the channel requeues the unacked 1 and 2, in order, flagged.
	cch.Close()
	ch2, _ := c.Channel()
	var bodies []string
	for {
		m, ok, err := ch2.Get("pf", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		bodies = append(bodies, fmt.Sprintf("%s:%v", m.Body, m.Redelivered))
	}
	if strings.Join(bodies, " ") != "1:true 2:true 3:false 4:false" {
		t.Fatalf("after requeue: %v", bodies)
	}
}

func TestNackRejectRequeue(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("nr", false, false, false, false, nil)
	publish(t, ch, "", "nr", amqp.Publishing{Body: []byte("a")})
	publish(t, ch, "", "nr", amqp.Publishing{Body: []byte("b")})
	m, _, _ := ch.Get("nr", false)
	if err := m.Reject(true); err != nil {
		t.Fatal(err)
	}
	m, _, _ = ch.Get("nr", false)
	if string(m.Body) != "a" || !m.Redelivered {
		t.Fatalf("rejected message: %q redelivered=%v", m.Body, m.Redelivered)
	}
	m.Nack(false, false) // discard
	m, _, _ = ch.Get("nr", false)
	if string(m.Body) != "b" {
		t.Fatalf("got %q", m.Body)
	}
	m.Ack(false)
	if _, ok, _ := ch.Get("nr", false); ok {
		t.Fatal("queue should be empty")
	}
	// Unknown delivery tag.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	if err := ch.Ack(999, false); err != nil {
		t.Fatal(err)
	}
	wantChannelClose(t, closed, 406, "PRECONDITION_FAILED - unknown delivery tag 999")
}

func TestPurgeAndDelete(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("pd", false, false, false, false, nil)
	for i := 0; i < 7; i++ {
		publish(t, ch, "", "pd", amqp.Publishing{Body: []byte("x")})
	}
	n, err := ch.QueuePurge("pd", false)
	if err != nil || n != 7 {
		t.Fatalf("purge: %d %v", n, err)
	}
	publish(t, ch, "", "pd", amqp.Publishing{Body: []byte("x")})
	_, err = ch.QueueDelete("pd", false, true, false)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - queue 'pd' in vhost '/' is not empty")
	ch, _ = c.Channel()
	ch.Consume("pd", "cons", false, false, false, false, nil)
	ch2, _ := c.Channel()
	_, err = ch2.QueueDelete("pd", true, false, false)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - queue 'pd' in vhost '/' in use")
	ch2, _ = c.Channel()
	cancels := ch.NotifyCancel(make(chan string, 1))
	n, err = ch2.QueueDelete("pd", false, false, false)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case tag := <-cancels:
		if tag != "cons" {
			t.Fatalf("cancel for %q", tag)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no server-sent basic.cancel")
	}
	_ = n
}

func TestTransactions(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("tx", true, false, false, false, nil)
	if err := ch.Tx(); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "tx", amqp.Publishing{Body: []byte("rolled-back")})
	if err := ch.TxRollback(); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "tx", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("committed")})
	q, _ := ch.QueueDeclarePassive("tx", true, false, false, false, nil)
	if q.Messages != 0 {
		t.Fatalf("uncommitted publish visible: %d", q.Messages)
	}
	if err := ch.TxCommit(); err != nil {
		t.Fatal(err)
	}
	m, ok, err := ch.Get("tx", false)
	if err != nil || !ok || string(m.Body) != "committed" {
		t.Fatalf("get: %v %v %q", ok, err, m.Body)
	}
	// An ack inside a rolled-back transaction does not happen.
	m.Ack(false)
	ch.TxRollback()
	q, _ = ch.QueueDeclarePassive("tx", true, false, false, false, nil)
	if q.Messages != 0 {
		t.Fatalf("messages ready: %d", q.Messages)
	}
	ch.Close()
	_, ch2 := b.channel()
	m, ok, _ = ch2.Get("tx", true)
	if !ok || string(m.Body) != "committed" || !m.Redelivered {
		t.Fatalf("rolled-back ack should leave the message unacked: ok=%v", ok)
	}
	if err := ch2.Confirm(false); err != nil {
		t.Fatal(err)
	}
	err = ch2.Tx()
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - cannot switch from confirm to tx mode")
}

func TestRoundRobin(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("rr", false, false, false, false, nil)
	ch1, _ := c.Channel()
	ch2, _ := c.Channel()
	d1, _ := ch1.Consume("rr", "", true, false, false, false, nil)
	d2, _ := ch2.Consume("rr", "", true, false, false, false, nil)
	for i := 0; i < 10; i++ {
		publish(t, ch, "", "rr", amqp.Publishing{Body: []byte("x")})
	}
	a := recvN(t, d1, 5)
	bb := recvN(t, d2, 5)
	if len(a) != 5 || len(bb) != 5 {
		t.Fatal("uneven")
	}
}

func TestNotImplementedReplies(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	err := ch.Qos(10, 1024, false)
	wantAMQPError(t, err, 540, "NOT_IMPLEMENTED - prefetch_size!=0 (1024)")

	c, ch := b.channel()
	err = ch.PublishWithContext(context.Background(), "", "q", false, true, amqp.Publishing{Body: []byte("x")})
	if err == nil {
		select {
		case e := <-c.NotifyClose(make(chan *amqp.Error, 1)):
			err = e
		case <-time.After(5 * time.Second):
		}
	}
	wantAMQPError(t, err, 540, "NOT_IMPLEMENTED - immediate=true")
}

func TestDurabilityAcrossRestart(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.ExchangeDeclare("dx", "topic", true, false, false, false, nil)
	ch.ExchangeDeclare("tx-ex", "topic", false, false, false, false, nil)
	ch.QueueDeclare("dq", true, false, false, false, nil)
	ch.QueueDeclare("tq", false, false, false, false, nil)
	ch.QueueBind("dq", "a.#", "dx", false, nil)
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	for i := 0; i < 20; i++ {
		mode := amqp.Persistent
		if i%2 == 1 {
			mode = amqp.Transient
		}
		publish(t, ch, "dx", "a.b", amqp.Publishing{DeliveryMode: mode, Body: []byte(fmt.Sprint(i))})
	}
	publish(t, ch, "", "tq", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("gone")})
	for i := 0; i < 21; i++ {
		if c := <-confirms; !c.Ack {
			t.Fatal("nack")
		}
	}
	// Deliver two without acking: they come back flagged redelivered.
	cch, _ := b.dial().Channel()
	m1, _, _ := cch.Get("dq", false)
	if string(m1.Body) != "0" {
		t.Fatalf("first %q", m1.Body)
	}

	b = b.restart()
	_, ch = b.channel()
	if err := ch.ExchangeDeclarePassive("dx", "topic", true, false, false, false, nil); err != nil {
		t.Fatalf("durable exchange lost: %v", err)
	}
	ch, _ = b.dial().Channel()
	if err := ch.ExchangeDeclarePassive("tx-ex", "topic", false, false, false, false, nil); err == nil {
		t.Fatal("transient exchange survived")
	}
	ch, _ = b.dial().Channel()
	if _, err := ch.QueueDeclarePassive("tq", false, false, false, false, nil); err == nil {
		t.Fatal("transient queue survived")
	}
	ch, _ = b.dial().Channel()
	var got []string
	for {
		m, ok, err := ch.Get("dq", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, fmt.Sprintf("%s:%v", m.Body, m.Redelivered))
	}
	want := "0:true 2:false 4:false 6:false 8:false 10:false 12:false 14:false 16:false 18:false"
	if strings.Join(got, " ") != want {
		t.Fatalf("after restart:\n got %v\nwant %v", got, want)
	}
	// The binding survived too.
	publish(t, ch, "dx", "a.z", amqp.Publishing{Body: []byte("again")})
	if m, ok, _ := ch.Get("dq", true); !ok || string(m.Body) != "again" {
		t.Fatal("durable binding lost")
	}
}

func TestSecondBrokerOnSameDirRefused(t *testing.T) {
	b := startBroker(t, "")
	_, err := New(Config{DataDir: b.dir, Logger: testLogger(t)})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("want ErrLocked, got %v", err)
	}
}

func TestShutdownClosesWith320(t *testing.T) {
	b := startBroker(t, "")
	c := b.dial()
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	b.stop()
	select {
	case e := <-closed:
		if e == nil || e.Code != 320 {
			t.Fatalf("want 320, got %v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed on shutdown")
	}
}

func TestAuthentication(t *testing.T) {
	b := startBroker(t, "")
	url := strings.Replace(b.url, "guest:guest", "guest:wrong", 1)
	_, err := amqp.Dial(url)
	if err == nil {
		t.Fatal("wrong password accepted")
	}
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != 403 {
		t.Fatalf("want 403 ACCESS_REFUSED, got %v", err)
	}
	url = strings.Replace(b.url, "/", "/nosuchvhost", 3)
	url = b.url + "nosuchvhost"
	_, err = amqp.Dial(url)
	if !errors.As(err, &ae) || ae.Code != 530 {
		t.Fatalf("want 530 NOT_ALLOWED, got %v", err)
	}
}

func TestChannelErrorsAreSoft(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	_, err := ch.QueueDeclarePassive("missing", false, false, false, false, nil)
	wantAMQPError(t, err, 404, "")
	if c.IsClosed() {
		t.Fatal("a soft error closed the connection")
	}
	ch2, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch2.QueueDeclare("ok", false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

func TestDeadLetterOnReject(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.ExchangeDeclare("dlx", "fanout", false, false, false, false, nil)
	ch.QueueDeclare("dead", false, false, false, false, nil)
	ch.QueueBind("dead", "", "dlx", false, nil)
	if _, err := ch.QueueDeclare("work", false, false, false, false, amqp.Table{
		"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "dl-key"}); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "work", amqp.Publishing{Body: []byte("poison"), Expiration: "60000", Headers: amqp.Table{"h": "v"}})
	m, ok, err := ch.Get("work", false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if err := m.Reject(false); err != nil {
		t.Fatal(err)
	}
	var d amqp.Delivery
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, ok, err = ch.Get("dead", true)
		if err != nil {
			t.Fatal(err)
		}
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !ok || string(d.Body) != "poison" || d.RoutingKey != "dl-key" || d.Headers["h"] != "v" || d.Expiration != "" {
		t.Fatalf("dead-lettered: ok=%v %+v", ok, d)
	}
	deaths, _ := d.Headers["x-death"].([]any)
	if len(deaths) != 1 {
		t.Fatalf("x-death: %#v", d.Headers["x-death"])
	}
	death := deaths[0].(amqp.Table)
	if death["reason"] != "rejected" || death["queue"] != "work" || death["count"] != int64(1) || death["original-expiration"] != "60000" {
		t.Fatalf("x-death entry: %#v", death)
	}
	if d.Headers["x-first-death-reason"] != "rejected" {
		t.Fatalf("headers: %#v", d.Headers)
	}
	// Nothing left in the original queue.
	if _, ok, _ := ch.Get("work", true); ok {
		t.Fatal("rejected message still in its queue")
	}
}

func TestMessageTTLAndDeadLetter(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("expired", false, false, false, false, nil)
	if _, err := ch.QueueDeclare("ttl", false, false, false, false, amqp.Table{
		"x-message-ttl": int32(100), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "expired"}); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "ttl", amqp.Publishing{Body: []byte("short-lived")})
	// Per-message expiration on a queue without TTL.
	ch.QueueDeclare("plain", false, false, false, false, nil)
	publish(t, ch, "", "plain", amqp.Publishing{Expiration: "50", Body: []byte("m")})
	publish(t, ch, "", "plain", amqp.Publishing{Body: []byte("stays")})
	q, _ := ch.QueueDeclarePassive("ttl", false, false, false, false, nil)
	if q.Messages != 1 {
		t.Fatalf("before expiry: %d messages", q.Messages)
	}
	time.Sleep(300 * time.Millisecond)
	q, _ = ch.QueueDeclarePassive("ttl", false, false, false, false, nil)
	if q.Messages != 0 {
		t.Fatalf("after expiry: %d messages", q.Messages)
	}
	m, ok, err := ch.Get("expired", true)
	if err != nil || !ok || string(m.Body) != "short-lived" {
		t.Fatalf("expired message not dead-lettered: %v %v", ok, err)
	}
	if d := m.Headers["x-death"].([]any)[0].(amqp.Table); d["reason"] != "expired" {
		t.Fatalf("x-death: %#v", d)
	}
	m, ok, _ = ch.Get("plain", true)
	if !ok || string(m.Body) != "stays" {
		t.Fatalf("per-message expiration: ok=%v body=%q", ok, m.Body)
	}
}

func TestMaxLengthDropsHead(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("ml", false, false, false, false, amqp.Table{"x-max-length": int32(3)})
	for i := 0; i < 5; i++ {
		publish(t, ch, "", "ml", amqp.Publishing{Body: []byte{byte('0' + i)}})
	}
	var got []string
	for {
		m, ok, err := ch.Get("ml", true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(m.Body))
	}
	if strings.Join(got, "") != "234" {
		t.Fatalf("x-max-length kept %v", got)
	}
}

func TestQueueExpires(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("idle", false, false, false, false, amqp.Table{"x-expires": int32(100)})
	time.Sleep(400 * time.Millisecond)
	_, err := ch.QueueDeclarePassive("idle", false, false, false, false, nil)
	wantAMQPError(t, err, 404, "")
}

func TestSingleActiveConsumer(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("sac", false, false, false, false, amqp.Table{"x-single-active-consumer": true})
	ch1, _ := c.Channel()
	ch2, _ := c.Channel()
	d1, _ := ch1.Consume("sac", "first", true, false, false, false, nil)
	d2, _ := ch2.Consume("sac", "second", true, false, false, false, nil)
	for i := 0; i < 6; i++ {
		publish(t, ch, "", "sac", amqp.Publishing{Body: []byte("x")})
	}
	recvN(t, d1, 6)
	expectNone(t, d2, 100*time.Millisecond)
	ch1.Cancel("first", false)
	publish(t, ch, "", "sac", amqp.Publishing{Body: []byte("y")})
	recvN(t, d2, 1)
}

// TestLargeMessagesAcrossFlushes sends large messages in small frames while
// other publishes are batched, so that batch flushes fall between the body
// frames of a message.
func TestLargeMessagesAcrossFlushes(t *testing.T) {
	b := startBroker(t, "")
	c, err := amqp.Dial(b.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	ch.QueueDeclare("large", false, false, false, false, nil)
	ch.Confirm(false)
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100))
	const n = 10
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = make([]byte, 1<<20+i)
		for j := range bodies[i] {
			bodies[i][j] = byte(i + j*31)
		}
		publish(t, ch, "", "large", amqp.Publishing{DeliveryMode: amqp.Persistent, Body: bodies[i]})
		publish(t, ch, "", "large", amqp.Publishing{Body: []byte("small")})
	}
	for i := 0; i < 2*n; i++ {
		if cf := <-confirms; !cf.Ack {
			t.Fatal("nack")
		}
	}
	ds, _ := ch.Consume("large", "", true, false, false, false, nil)
	got := recvN(t, ds, 2*n)
	for i := 0; i < n; i++ {
		if string(got[2*i].Body) != string(bodies[i]) || string(got[2*i+1].Body) != "small" {
			t.Fatalf("message %d corrupted (len %d)", i, len(got[2*i].Body))
		}
	}
}

func TestUnbindSurvivesRestart(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.ExchangeDeclare("ux", "direct", true, false, false, false, nil)
	ch.QueueDeclare("uq", true, false, false, false, nil)
	if err := ch.QueueBind("uq", "k", "ux", false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueUnbind("uq", "k", "ux", nil); err != nil {
		t.Fatal(err)
	}
	b = b.restart()
	_, ch = b.channel()
	publish(t, ch, "ux", "k", amqp.Publishing{Body: []byte("x")})
	q, err := ch.QueueDeclarePassive("uq", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Fatal("an unbound binding came back after a restart")
	}
}

func TestGlobalQosAcrossQueues(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("ga", false, false, false, false, nil)
	ch.QueueDeclare("gb", false, false, false, false, nil)
	cch, _ := c.Channel()
	if err := cch.Qos(1, 0, true); err != nil {
		t.Fatal(err)
	}
	da, _ := cch.Consume("ga", "", false, false, false, false, nil)
	db, _ := cch.Consume("gb", "", false, false, false, false, nil)
	publish(t, ch, "", "ga", amqp.Publishing{Body: []byte("a")})
	m := recvN(t, da, 1)[0]
	publish(t, ch, "", "gb", amqp.Publishing{Body: []byte("b")})
	expectNone(t, db, 100*time.Millisecond) // the channel-wide limit of 1 is used
	m.Ack(false)
	// Freeing credit on ga must let gb deliver.
	recvN(t, db, 1)
}

func TestMaxLengthDeliversToWaitingConsumerFirst(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("ml0", false, false, false, false, amqp.Table{"x-max-length": int32(0)})
	ds, _ := ch.Consume("ml0", "", true, false, false, false, nil)
	publish(t, ch, "", "ml0", amqp.Publishing{Body: []byte("x")})
	recvN(t, ds, 1)
}

func TestExclusiveConsumeRefusedWithoutConsumeOk(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("ex", false, false, false, false, nil)
	if _, err := ch.Consume("ex", "first", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	ch2, _ := c.Channel()
	_, err := ch2.Consume("ex", "second", false, false, false, false, nil)
	wantAMQPError(t, err, 403, "ACCESS_REFUSED - queue 'ex' in vhost '/' in exclusive use")
}

func TestAckMultipleOfAckedTagRefused(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("am", false, false, false, false, nil)
	for i := 0; i < 3; i++ {
		publish(t, ch, "", "am", amqp.Publishing{Body: []byte("x")})
	}
	ds, _ := ch.Consume("am", "", false, false, false, false, nil)
	ms := recvN(t, ds, 3)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	ms[1].Ack(false)
	ms[1].Ack(true) // tag 2 again, with multiple
	wantChannelClose(t, closed, 406, "PRECONDITION_FAILED - unknown delivery tag 2")
}

func TestTxDoubleAckFailsBeforeCommit(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("txd", false, false, false, false, nil)
	publish(t, ch, "", "txd", amqp.Publishing{Body: []byte("x")})
	m, ok, _ := ch.Get("txd", false)
	if !ok {
		t.Fatal("no message")
	}
	ch.Tx()
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	m.Ack(false)
	m.Ack(false) // the same tag twice in one transaction: refused before any commit
	wantChannelClose(t, closed, 406, "PRECONDITION_FAILED - unknown delivery tag 1")
}

func TestAMQPLAINLogin(t *testing.T) {
	b := startBroker(t, "")
	c, err := amqp.DialConfig(b.url, amqp.Config{SASL: []amqp.Authentication{&amqp.AMQPlainAuth{Username: "guest", Password: "guest"}}})
	if err != nil {
		t.Fatalf("AMQPLAIN login: %v", err)
	}
	c.Close()
	_, err = amqp.DialConfig(b.url, amqp.Config{SASL: []amqp.Authentication{&amqp.AMQPlainAuth{Username: "guest", Password: "nope"}}})
	var ae *amqp.Error
	if !errors.As(err, &ae) || ae.Code != 403 {
		t.Fatalf("want 403 for a wrong AMQPLAIN password, got %v", err)
	}
}

func TestInternalAndAlternateExchanges(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.ExchangeDeclare("internal-x", "fanout", false, false, true, false, nil)
	ch.ExchangeDeclare("ae", "fanout", false, false, false, false, nil)
	ch.ExchangeDeclare("main", "direct", false, false, false, false, amqp.Table{"alternate-exchange": "ae"})
	ch.QueueDeclare("unrouted", false, false, false, false, nil)
	ch.QueueBind("unrouted", "", "ae", false, nil)
	publish(t, ch, "main", "no-binding", amqp.Publishing{Body: []byte("to-ae")})
	m, ok, err := ch.Get("unrouted", true)
	if err != nil || !ok || string(m.Body) != "to-ae" {
		t.Fatalf("alternate exchange: ok=%v err=%v", ok, err)
	}
	ch2, _ := c.Channel()
	closed := ch2.NotifyClose(make(chan *amqp.Error, 1))
	publish(t, ch2, "internal-x", "", amqp.Publishing{Body: []byte("x")})
	select {
	case e := <-closed:
		wantAMQPError(t, e, 403, "ACCESS_REFUSED - cannot publish to internal exchange 'internal-x' in vhost '/'")
	case <-time.After(5 * time.Second):
		t.Fatal("publish to an internal exchange was accepted")
	}
}

func TestAutoDeleteExchange(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.ExchangeDeclare("adx", "fanout", false, true, false, false, nil)
	ch.QueueDeclare("adq", false, false, false, false, nil)
	ch.QueueBind("adq", "", "adx", false, nil)
	if err := ch.QueueUnbind("adq", "", "adx", nil); err != nil {
		t.Fatal(err)
	}
	err := ch.ExchangeDeclarePassive("adx", "fanout", false, true, false, false, nil)
	wantAMQPError(t, err, 404, "")
}

func TestRecoverRequeues(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("rec", false, false, false, false, nil)
	publish(t, ch, "", "rec", amqp.Publishing{Body: []byte("r")})
	ds, _ := ch.Consume("rec", "", false, false, false, false, nil)
	first := recvN(t, ds, 1)[0]
	if first.Redelivered {
		t.Fatal("first delivery flagged redelivered")
	}
	if err := ch.Recover(true); err != nil {
		t.Fatal(err)
	}
	again := recvN(t, ds, 1)[0]
	if !again.Redelivered || string(again.Body) != "r" {
		t.Fatalf("after basic.recover: %+v", again)
	}
	if err := ch.Flow(true); err != nil {
		t.Fatalf("channel.flow active=true: %v", err)
	}
}

func TestConsumerPriority(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.QueueDeclare("prio-c", false, false, false, false, nil)
	low, _ := c.Channel()
	high, _ := c.Channel()
	dl, _ := low.Consume("prio-c", "low", true, false, false, false, amqp.Table{"x-priority": int32(1)})
	dh, _ := high.Consume("prio-c", "high", true, false, false, false, amqp.Table{"x-priority": int32(10)})
	for i := 0; i < 5; i++ {
		publish(t, ch, "", "prio-c", amqp.Publishing{Body: []byte("p")})
	}
	recvN(t, dh, 5)
	expectNone(t, dl, 100*time.Millisecond)
}

// TestEmptyQueueNameMeansLastDeclared checks RabbitMQ's shortcut: an empty
// queue name in bind, get and purge names the channel's last declared queue.
func TestEmptyQueueNameMeansLastDeclared(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind("", "k", "amq.direct", false, nil); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "amq.direct", "k", amqp.Publishing{Body: []byte("x")})
	m, ok, err := ch.Get("", true)
	if err != nil || !ok || string(m.Body) != "x" {
		t.Fatalf("get from the last declared queue %s: ok=%v err=%v", q.Name, ok, err)
	}
	fresh, _ := c.Channel()
	_, _, err = fresh.Get("", true)
	wantAMQPError(t, err, 404, "NOT_FOUND - no previously declared queue")
}
