package broker

import (
	"slices"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func fillQueue(t *testing.T, ch *amqp.Channel, q string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		publish(t, ch, "", q, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
	}
}

// TestPolicyLimits: a policy's max-length applies to a queue that exists
// (trimming it at once) and to queues declared later; between a queue's
// argument and a policy the lower limit wins; an operator policy's lower
// value wins over the policy's.
func TestPolicyLimits(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		p.declare(t, ch, "plim.old", false, nil)
		fillQueue(t, ch, p.n("plim.old"), 10)
		waitReady(t, ch, p.n("plim.old"), 10)
		p.setPolicy(t, false, "plim", `plim\.`, 0, "queues", map[string]any{"max-length": 5})
		waitReady(t, ch, p.n("plim.old"), 5)
		if got := getAll(t, ch, p.n("plim.old")); !slices.Equal(got, []string{"5", "6", "7", "8", "9"}) {
			t.Fatalf("trimmed to %v", got)
		}
		p.declare(t, ch, "plim.new", false, nil)
		p.declare(t, ch, "plim.arg", false, amqp.Table{"x-max-length": int32(2)})
		p.declare(t, ch, "plim.big", false, amqp.Table{"x-max-length": int32(50)})
		for q, want := range map[string]int{"plim.new": 5, "plim.arg": 2, "plim.big": 5} {
			fillQueue(t, ch, p.n(q), 10)
			waitReady(t, ch, p.n(q), want)
		}
		// An operator policy: the lower of the two.
		p.setPolicy(t, true, "plim-op", `plim\.`, 0, "queues", map[string]any{"max-length": 3})
		fillQueue(t, ch, p.n("plim.new"), 1)
		waitReady(t, ch, p.n("plim.new"), 3)
		p.setPolicy(t, true, "plim-op", `plim\.`, 0, "queues", map[string]any{"max-length": 30})
		fillQueue(t, ch, p.n("plim.new"), 10)
		waitReady(t, ch, p.n("plim.new"), 5)
	})
}

// TestPolicyDeadLettering: message-ttl and dead-letter-exchange from a
// policy expire and dead-letter messages; the queue's own
// x-dead-letter-exchange wins over the policy's.
func TestPolicyDeadLettering(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		_, ch := p.channel(t)
		for _, x := range []string{"pdl-pol", "pdl-arg"} {
			if err := ch.ExchangeDeclare(p.n(x), "fanout", false, false, false, false, nil); err != nil {
				t.Fatal(err)
			}
			p.cleanup(t, x, true)
			p.declare(t, ch, x+"-q", false, nil)
			ch.QueueBind(p.n(x+"-q"), "", p.n(x), false, nil)
		}
		p.setPolicy(t, false, "pdl", `pdl\.`, 0, "queues", map[string]any{"message-ttl": 50, "dead-letter-exchange": p.n("pdl-pol")})
		p.declare(t, ch, "pdl.a", false, nil)
		p.declare(t, ch, "pdl.b", false, amqp.Table{"x-dead-letter-exchange": p.n("pdl-arg")})
		publish(t, ch, "", p.n("pdl.a"), amqp.Publishing{Body: []byte("a")})
		publish(t, ch, "", p.n("pdl.b"), amqp.Publishing{Body: []byte("b")})
		waitReady(t, ch, p.n("pdl-pol-q"), 1)
		waitReady(t, ch, p.n("pdl-arg-q"), 1)
		m, _, _ := ch.Get(p.n("pdl-pol-q"), true)
		deaths, _ := m.Headers["x-death"].([]any)
		if string(m.Body) != "a" || len(deaths) != 1 || deaths[0].(amqp.Table)["reason"] != "expired" {
			t.Fatalf("dead letter %q %v", m.Body, m.Headers)
		}
		if m, _, _ := ch.Get(p.n("pdl-arg-q"), true); string(m.Body) != "b" {
			t.Fatalf("the argument's dead-letter exchange got %q", m.Body)
		}
	})
}

// TestPolicyExpires: expires from a policy deletes an unused queue.
func TestPolicyExpires(t *testing.T) {
	b := startBroker(t, "")
	runPeers(t, b, func(t *testing.T, p peer) {
		p.setPolicy(t, false, "pexp", `pexp\.`, 0, "queues", map[string]any{"expires": 200})
		_, ch := p.channel(t)
		p.declare(t, ch, "pexp.q", false, nil)
		time.Sleep(1200 * time.Millisecond)
		_, err := ch.QueueDeclarePassive(p.n("pexp.q"), false, false, false, false, nil)
		wantAMQPError(t, err, 404, "")
	})
}

// TestPolicyChoice: of the matching policies the highest priority applies;
// apply-to exchanges does not apply to queues; a policy holding a key the
// queue's type does not support (delivery-limit for a classic queue) does
// not apply to it at all, so the next one does (RabbitMQ 4.x); policies
// survive a restart.
func TestPolicyChoice(t *testing.T) {
	b := startBroker(t, "")
	p := peer{name: "warren", url: b.url, srv: b.srv}
	p.setPolicy(t, false, "low", `pc\.`, 1, "queues", map[string]any{"max-length": 4})
	p.setPolicy(t, false, "high", `pc\.`, 5, "queues", map[string]any{"max-length": 2})
	p.setPolicy(t, false, "xonly", `pc\.`, 9, "exchanges", map[string]any{"alternate-exchange": "ae"})
	p.setPolicy(t, false, "qq-only", `pc\.`, 7, "all", map[string]any{"max-length": 6, "delivery-limit": 3})
	_, ch := b.channel()
	ch.QueueDeclare("pc.classic", true, false, false, false, nil)
	ch.QueueDeclare("pc.quorum", true, false, false, false, quorumArgs)
	fillQueue(t, ch, "pc.classic", 10)
	fillQueue(t, ch, "pc.quorum", 10)
	waitReady(t, ch, "pc.classic", 2)
	waitReady(t, ch, "pc.quorum", 6)
	qi, _ := b.srv.Queue("/", "pc.quorum")
	if qi.Policy != "qq-only" || qi.DeliveryLimit != 3 {
		t.Fatalf("quorum queue: policy %q, delivery limit %d", qi.Policy, qi.DeliveryLimit)
	}
	b = b.restart()
	_, ch = b.channel()
	fillQueue(t, ch, "pc.classic", 10)
	waitReady(t, ch, "pc.classic", 2)
	if qi, _ := b.srv.Queue("/", "pc.classic"); qi.Policy != "high" {
		t.Fatalf("after a restart the classic queue has policy %q", qi.Policy)
	}
}

// TestPolicyQuorumAndStream: for quorum queues a policy's overflow wins
// over the argument and delivery-limit is the lower of the two; for
// streams the policy's retention wins over the arguments (RabbitMQ 4.x).
func TestPolicyQuorumAndStream(t *testing.T) {
	b := startBroker(t, "")
	p := peer{name: "warren", url: b.url, srv: b.srv}
	_, ch := b.channel()
	ch.QueueDeclare("pq.q", true, false, false, false, withArgs(quorumArgs, "x-max-length", int32(2), "x-overflow", "drop-head", "x-delivery-limit", int32(10)))
	p.setPolicy(t, false, "pq", `pq\.`, 0, "quorum_queues", map[string]any{"overflow": "reject-publish", "delivery-limit": 1})
	ch.Confirm(false)
	got := publishConfirmed(t, ch, "", "pq.q", amqp.Publishing{Body: []byte("1")}, amqp.Publishing{Body: []byte("2")}, amqp.Publishing{Body: []byte("3")})
	if !slices.Equal(got, []bool{true, true, false}) {
		t.Fatalf("quorum queue with a reject-publish policy over a drop-head argument: %v", got)
	}
	for i := 0; i < 2; i++ {
		m, ok, _ := ch.Get("pq.q", false)
		if !ok {
			t.Fatalf("get %d", i)
		}
		m.Reject(true)
	}
	// The first message failed twice: past the policy's limit of 1.
	waitReady(t, ch, "pq.q", 1)

	ch.QueueDeclare("ps.s", true, false, false, false, withArgs(streamArgs, "x-stream-max-segment-size-bytes", int32(2_000)))
	body := make([]byte, 300)
	for i := range body {
		body[i] = byte(i * 7)
	}
	var msgs []amqp.Publishing
	for i := 0; i < 100; i++ {
		msgs = append(msgs, amqp.Publishing{Body: body})
	}
	publishConfirmed(t, ch, "", "ps.s", msgs...)
	before, _ := b.srv.Queue("/", "ps.s")
	p.setPolicy(t, false, "ps", `ps\.`, 0, "streams", map[string]any{"max-length-bytes": 5_000})
	after, _ := b.srv.Queue("/", "ps.s")
	if after.Policy != "ps" || after.Ready >= before.Ready || after.ReadyBytes > 5_000+3_000 {
		t.Fatalf("stream before %d messages %d bytes, after the policy %d messages %d bytes (policy %q)",
			before.Ready, before.ReadyBytes, after.Ready, after.ReadyBytes, after.Policy)
	}
}
