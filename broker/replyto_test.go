package broker

import (
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestDirectReplyTo: an RPC client consumes from amq.rabbitmq.reply-to
// (automatic acks) and publishes a request with that reply_to; the server
// sees a reply name of the client's channel, publishes its reply to the
// default exchange with that name, and the client gets it without any
// queue. The refusals are RabbitMQ's.
func TestDirectReplyTo(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, sch := p.channel(t)
		p.declare(t, sch, "rpc", false, nil)
		reqs, err := sch.Consume(p.n("rpc"), "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, cch := p.channel(t)
		replies, err := cch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
		if err != nil {
			t.Fatalf("consume from amq.rabbitmq.reply-to: %v", err)
		}
		publish(t, cch, "", p.n("rpc"), amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "c1", Body: []byte("ping")})
		req := recvN(t, reqs, 1)[0]
		if !strings.HasPrefix(req.ReplyTo, "amq.rabbitmq.reply-to.") {
			t.Fatalf("the server saw reply_to %q", req.ReplyTo)
		}
		// The reply name "exists" while its channel does.
		if q, err := sch.QueueDeclarePassive(req.ReplyTo, false, false, false, false, nil); err != nil || q.Consumers != 1 {
			t.Fatalf("passive declare of the reply name: %+v %v", q, err)
		}
		publish(t, sch, "", req.ReplyTo, amqp.Publishing{CorrelationId: req.CorrelationId, Body: []byte("pong")})
		rep := recvN(t, replies, 1)[0]
		if string(rep.Body) != "pong" || rep.CorrelationId != "c1" || rep.Exchange != "" || rep.RoutingKey != req.ReplyTo {
			t.Fatalf("reply %q corr %q ex %q key %q", rep.Body, rep.CorrelationId, rep.Exchange, rep.RoutingKey)
		}
		// Binding to it is refused (403; RabbitMQ 3.10 answers otherwise).
		_, bch := p.channel(t)
		err = bch.QueueBind(req.ReplyTo, "k", "amq.direct", false, nil)
		if !p.rabbit {
			wantAMQPError(t, err, 403, "ACCESS_REFUSED - cannot bind or unbind to a volatile (direct reply-to) queue")
		} else if err == nil {
			t.Fatal("RabbitMQ bound a reply name")
		}
		// Publishing with reply_to on a channel without a reply consumer.
		_, nch := p.channel(t)
		closed := nch.NotifyClose(make(chan *amqp.Error, 1))
		publish(t, nch, "", p.n("rpc"), amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", Body: []byte("x")})
		wantChannelClose(t, closed, 406, "PRECONDITION_FAILED - fast reply consumer does not exist")
		// Manual acks and a second reply consumer are refused.
		_, ach := p.channel(t)
		_, err = ach.Consume("amq.rabbitmq.reply-to", "", false, false, false, false, nil)
		wantAMQPError(t, err, 406, "PRECONDITION_FAILED - reply consumer cannot acknowledge")
		_, err = cch.Consume("amq.rabbitmq.reply-to", "again", true, false, false, false, nil)
		wantAMQPError(t, err, 406, "PRECONDITION_FAILED - reply consumer already set")
		// Once the client is gone the name is unroutable.
		cch.Close()
		sch.Confirm(false)
		rets := sch.NotifyReturn(make(chan amqp.Return, 1))
		if err := sch.Publish("", req.ReplyTo, true, false, amqp.Publishing{Body: []byte("late")}); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-rets:
			if r.ReplyCode != 312 {
				t.Fatalf("returned with %d", r.ReplyCode)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("a reply to a closed channel was not returned")
		}
		_, err = sch.QueueDeclarePassive(req.ReplyTo, false, false, false, false, nil)
		wantAMQPError(t, err, 404, "")
	})
}

// TestSenderSelected: CC and BCC route a message with extra keys; BCC is
// removed before delivery, CC is kept; a CC that is not an array is a 406.
func TestSenderSelected(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		for _, q := range []string{"cc.a", "cc.b", "cc.c"} {
			p.declare(t, ch, q, false, nil)
		}
		x := p.n("cc-x")
		ch.ExchangeDeclare(x, "direct", false, false, false, false, nil)
		p.cleanup(t, "cc-x", true)
		ch.QueueBind(p.n("cc.b"), "kb", x, false, nil)
		ch.QueueBind(p.n("cc.c"), "kc", x, false, nil)
		// Default exchange: keys are queue names.
		publish(t, ch, "", p.n("cc.a"), amqp.Publishing{Body: []byte("1"),
			Headers: amqp.Table{"CC": []any{p.n("cc.b")}, "BCC": []any{p.n("cc.c")}}})
		// A direct exchange: keys are binding keys.
		publish(t, ch, x, "none", amqp.Publishing{Body: []byte("2"), Headers: amqp.Table{"CC": []any{"kb", "kc", "kb"}}})
		for q, want := range map[string][]string{"cc.a": {"1"}, "cc.b": {"1", "2"}, "cc.c": {"1", "2"}} {
			waitReady(t, ch, p.n(q), len(want))
			var got []string
			for range want {
				m, _, _ := ch.Get(p.n(q), true)
				got = append(got, string(m.Body))
				if _, ok := m.Headers["BCC"]; ok {
					t.Fatalf("%s: BCC delivered: %v", q, m.Headers)
				}
				if string(m.Body) == "1" {
					if cc, _ := m.Headers["CC"].([]any); len(cc) != 1 {
						t.Fatalf("%s: CC not kept: %v", q, m.Headers)
					}
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s got %v, want %v", q, got, want)
			}
		}
		_, bch := p.channel(t)
		closed := bch.NotifyClose(make(chan *amqp.Error, 1))
		publish(t, bch, "", p.n("cc.a"), amqp.Publishing{Headers: amqp.Table{"CC": "cc.b"}})
		wantChannelClose(t, closed, 406, `PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,"CC",longstr}`)
	})
}
