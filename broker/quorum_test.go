package broker

import (
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/index"
)

var quorumArgs = amqp.Table{"x-queue-type": "quorum"}

func withArgs(base amqp.Table, kv ...any) amqp.Table {
	out := amqp.Table{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// TestQuorumDeclare: the 406s RabbitMQ gives quorum queue declarations.
func TestQuorumDeclare(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		rs := "queue '" + p.n("qd") + "' in vhost '/'"
		for _, tc := range []struct {
			durable, autoDelete, exclusive bool
			args                           amqp.Table
			want                           string
		}{
			{false, false, false, quorumArgs, "invalid property 'non-durable' for " + rs},
			{true, true, false, quorumArgs, "invalid property 'auto-delete' for " + rs},
			{true, false, true, quorumArgs, "invalid property 'exclusive-owner' for " + rs},
			{true, false, false, withArgs(quorumArgs, "x-max-priority", int32(3)), "invalid arg 'x-max-priority' for " + rs + " of queue type rabbit_quorum_queue"},
			{true, false, false, withArgs(quorumArgs, "x-queue-mode", "lazy"), "invalid arg 'x-queue-mode' for " + rs + " of queue type rabbit_quorum_queue"},
			{true, false, false, amqp.Table{"x-delivery-limit": int32(3)}, "invalid arg 'x-delivery-limit' for " + rs + " of queue type rabbit_classic_queue"},
			{true, false, false, amqp.Table{"x-queue-type": "foo"}, "invalid arg 'x-queue-type' for " + rs + `: "unsupported queue type 'foo'"`},
		} {
			err := p.tryDeclare(t, "qd", tc.durable, tc.autoDelete, tc.exclusive, tc.args)
			wantAMQPError(t, err, 406, "PRECONDITION_FAILED - "+tc.want)
		}
		_, ch := p.channel(t)
		_, err := ch.QueueDeclare("", true, false, false, false, quorumArgs)
		wantAMQPError(t, err, 406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_quorum_queue")
		// Accepted and ignored, as in current RabbitMQ.
		if err := p.tryDeclare(t, "qd", true, false, false, amqp.Table{"x-queue-mode": "lazy"}); err != nil {
			t.Fatalf("x-queue-mode lazy: %v", err)
		}
		if err := p.tryDeclare(t, "qd", true, false, false, withArgs(quorumArgs, "x-delivery-limit", int32(5), "x-overflow", "reject-publish")); err != nil {
			t.Fatalf("quorum queue: %v", err)
		}
	})
	// RabbitMQ 4.x accepts only version 2 (3.10 also took 1), and, as the
	// default type fills in an absent x-queue-type, a quorum queue
	// redeclared without one is not equivalent.
	p := peer{name: "warren", url: b.url}
	if err := p.tryDeclare(t, "qv", true, false, false, amqp.Table{"x-queue-version": int32(2)}); err != nil {
		t.Fatal(err)
	}
	err := p.tryDeclare(t, "qv", true, false, false, amqp.Table{"x-queue-version": int32(1)})
	wantAMQPError(t, err, 406, `PRECONDITION_FAILED - invalid arg 'x-queue-version' for queue 'qv' in vhost '/': "unsupported queue version '1'"`)
	_, ch := p.channel(t)
	if _, err := ch.QueueDeclare("qq-redecl", true, false, false, false, quorumArgs); err != nil {
		t.Fatal(err)
	}
	_, err = ch.QueueDeclare("qq-redecl", true, false, false, false, nil)
	wantAMQPError(t, err, 406, "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'qq-redecl' in vhost '/': received the value 'classic' of type 'longstr' but current is the value 'quorum' of type 'longstr'")
}

func countHeaders(d amqp.Delivery) (acquired, failed any) {
	return d.Headers["x-acquired-count"], d.Headers["x-delivery-count"]
}

// TestQuorumDeliveryLimit: RabbitMQ 4.x's poison-message handling. A
// rejected (basic.reject, requeue) message comes back with
// x-acquired-count and x-delivery-count; a nacked one with
// x-acquired-count only; a channel closed holding it counts as a failed
// delivery; past x-delivery-limit failed deliveries it is dead-lettered
// with reason delivery_limit.
func TestQuorumDeliveryLimit(t *testing.T) {
	b := startBroker(t, "")
	c, ch := b.channel()
	ch.ExchangeDeclare("qq-dlx", "fanout", true, false, false, false, nil)
	ch.QueueDeclare("qq-dead", true, false, false, false, nil)
	ch.QueueBind("qq-dead", "", "qq-dlx", false, nil)
	if _, err := ch.QueueDeclare("qq", true, false, false, false,
		withArgs(quorumArgs, "x-delivery-limit", int32(2), "x-dead-letter-exchange", "qq-dlx")); err != nil {
		t.Fatal(err)
	}
	publish(t, ch, "", "qq", amqp.Publishing{Body: []byte("poison")})
	get := func() amqp.Delivery {
		t.Helper()
		m, ok, err := ch.Get("qq", false)
		if err != nil || !ok {
			t.Fatalf("get: %v %v", ok, err)
		}
		return m
	}
	m := get()
	if a, f := countHeaders(m); a != nil || f != nil || m.Redelivered {
		t.Fatalf("first delivery: %v %v redelivered=%v", a, f, m.Redelivered)
	}
	m.Nack(false, true) // not a failure
	m = get()
	if a, f := countHeaders(m); a != int64(1) || f != nil || !m.Redelivered {
		t.Fatalf("after a nack: acquired %v delivery %v", a, f)
	}
	m.Reject(true)
	m = get()
	if a, f := countHeaders(m); a != int64(2) || f != int64(1) {
		t.Fatalf("after a reject: acquired %v delivery %v", a, f)
	}
	// A consumer whose channel closes holding it: a failed delivery.
	cch, _ := c.Channel()
	m.Nack(false, true)
	cch.Qos(1, 0, false)
	ds, _ := cch.Consume("qq", "", false, false, false, false, nil)
	d := recvN(t, ds, 1)[0]
	if a, f := countHeaders(d); a != int64(3) || f != int64(1) {
		t.Fatalf("consumer got acquired %v delivery %v", a, f)
	}
	cch.Close()
	m = get()
	if a, f := countHeaders(m); a != int64(4) || f != int64(2) {
		t.Fatalf("after a closed channel: acquired %v delivery %v", a, f)
	}
	m.Reject(true) // the third failure passes the limit of 2
	deadline := time.Now().Add(5 * time.Second)
	var dead amqp.Delivery
	for {
		var ok bool
		dead, ok, _ = ch.Get("qq-dead", true)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("poison message not dead-lettered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	deaths, _ := dead.Headers["x-death"].([]any)
	if len(deaths) != 1 || deaths[0].(amqp.Table)["reason"] != "delivery_limit" || dead.Headers["x-first-death-reason"] != "delivery_limit" {
		t.Fatalf("dead letter headers %v", dead.Headers)
	}
	if st, _ := ch.QueueDeclarePassive("qq", true, false, false, false, nil); st.Messages != 0 {
		t.Fatalf("%d messages left in the quorum queue", st.Messages)
	}
}

// TestQuorumDefaultLimit: without x-delivery-limit, RabbitMQ 4.x's default
// of 20 applies; -1 turns it off. Transient messages are kept as
// persistent ones (they survive a restart).
func TestQuorumDefaultLimit(t *testing.T) {
	b := startBroker(t, "")
	_, ch := b.channel()
	ch.QueueDeclare("qq-default", true, false, false, false, quorumArgs)
	ch.QueueDeclare("qq-unlimited", true, false, false, false, withArgs(quorumArgs, "x-delivery-limit", int32(-1)))
	for _, q := range []string{"qq-default", "qq-unlimited"} {
		publish(t, ch, "", q, amqp.Publishing{Body: []byte(q)})
	}
	for _, q := range []string{"qq-default", "qq-unlimited"} {
		for i := 0; i < 21; i++ {
			m, ok, err := ch.Get(q, false)
			if err != nil || !ok {
				t.Fatalf("%s: get %d: %v %v", q, i, ok, err)
			}
			m.Reject(true) // the 21st failure drops it from qq-default
		}
	}
	if st, _ := ch.QueueDeclarePassive("qq-default", true, false, false, false, nil); st.Messages != 0 {
		t.Fatalf("qq-default kept a message rejected 21 times (limit 20)")
	}
	if st, _ := ch.QueueDeclarePassive("qq-unlimited", true, false, false, false, nil); st.Messages != 1 {
		t.Fatalf("qq-unlimited lost its message")
	}
	ch.Confirm(false)
	publishConfirmed(t, ch, "", "qq-default", amqp.Publishing{Body: []byte("transient")})
	b = b.restart()
	_, ch = b.channel()
	if m, ok, _ := ch.Get("qq-default", true); !ok || string(m.Body) != "transient" {
		t.Fatal("a transient message of a quorum queue did not survive a restart")
	}
}

// TestQuorumCountsSurviveKill9: delivery counts live in the store, so a
// message rejected twice before a SIGKILL comes back with
// x-delivery-count 2 and is dead-lettered at its third failure (limit 2).
func TestQuorumCountsSurviveKill9(t *testing.T) {
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
	ch.ExchangeDeclare("k-dlx", "fanout", true, false, false, false, nil)
	ch.QueueDeclare("k-dead", true, false, false, false, nil)
	ch.QueueBind("k-dead", "", "k-dlx", false, nil)
	ch.QueueDeclare("kq", true, false, false, false, withArgs(quorumArgs, "x-delivery-limit", int32(2), "x-dead-letter-exchange", "k-dlx"))
	ch.Confirm(false)
	publishConfirmed(t, ch, "", "kq", amqp.Publishing{Body: []byte("p")})
	for i := 0; i < 2; i++ {
		m, ok, _ := ch.Get("kq", false)
		if !ok {
			t.Fatal("empty")
		}
		m.Reject(true)
	}
	// The counts reach the index with the next commit; wait for it.
	time.Sleep(300 * time.Millisecond)
	c.kill()
	conn.Close()

	c2 := startChild(t, dir)
	conn2, err := amqp.Dial(c2.url())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	ch2, _ := conn2.Channel()
	m, ok, _ := ch2.Get("kq", false)
	if !ok {
		t.Fatal("message lost")
	}
	if a, f := countHeaders(m); a != int64(2) || f != int64(2) || !m.Redelivered {
		t.Fatalf("after kill -9: acquired %v delivery %v redelivered %v", a, f, m.Redelivered)
	}
	m.Reject(true)
	time.Sleep(100 * time.Millisecond)
	if st, _ := ch2.QueueDeclarePassive("k-dead", true, false, false, false, nil); st.Messages != 1 {
		t.Fatalf("third failure after the restart not dead-lettered (%d dead)", st.Messages)
	}
}

// TestDefaultQueueType: a vhost whose default queue type is quorum makes
// durable queues declared without x-queue-type quorum queues (recorded
// with the argument, as RabbitMQ records it); an exclusive or non-durable
// one, which a quorum queue cannot be, stays classic.
func TestDefaultQueueType(t *testing.T) {
	b := startBroker(t, "")
	if _, err := b.srv.PutVHost(index.VHost{Name: "qv", DefaultQueueType: "quorum"}, "guest"); err != nil {
		t.Fatal(err)
	}
	c, err := amqp.Dial(strings.TrimSuffix(b.url, "/") + "/qv")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch, _ := c.Channel()
	ch.QueueDeclare("d", true, false, false, false, nil)
	ch.QueueDeclare("t", false, false, false, false, nil)
	ch.QueueDeclare("", false, false, true, false, nil)
	qs, _ := b.srv.Queues("qv")
	types := map[string]string{}
	for _, q := range qs {
		types[q.Name] = q.Type
		if q.Name == "d" && q.Arguments["x-queue-type"] != "quorum" {
			t.Fatalf("arguments recorded %v", q.Arguments)
		}
	}
	if types["d"] != "quorum" || types["t"] != "classic" || len(types) != 3 {
		t.Fatalf("types %v", types)
	}
	// Redeclaring without the argument is equivalent.
	if _, err := ch.QueueDeclare("d", true, false, false, false, nil); err != nil {
		t.Fatalf("redeclare: %v", err)
	}
}
