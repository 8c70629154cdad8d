package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warrenmq/warren/index"
)

// peer is a broker a scenario runs against: the Warren under test and,
// when WARREN_TEST_RABBITMQ_URL names one (.ci/run starts Debian's
// RabbitMQ 3.10), a real RabbitMQ, so that the assertions that hold for
// both are checked against both. Behaviour RabbitMQ changed in 4.x is
// asserted for Warren only (rabbit is false).
type peer struct {
	name   string
	url    string
	rabbit bool
	// prefix makes queue and exchange names unique on a shared RabbitMQ.
	prefix string
	// srv is Warren's server (policies are set through its management
	// interface); api is RabbitMQ's HTTP API.
	srv *Server
	api string
}

// peers returns Warren and, when configured, RabbitMQ.
func peers(t *testing.T, b *testBroker) []peer {
	t.Helper()
	ps := []peer{{name: "warren", url: b.url, srv: b.srv}}
	if u := os.Getenv("WARREN_TEST_RABBITMQ_URL"); u != "" {
		ps = append(ps, peer{name: "rabbitmq", url: u, rabbit: true, prefix: fmt.Sprintf("wt%d-", rand.Uint32()),
			api: os.Getenv("WARREN_TEST_RABBITMQ_API")})
	}
	return ps
}

// setPolicy sets a policy (operator policy when operator is set) in vhost
// "/" whose pattern is anchored on the peer's name for name; it is cleared
// when the test ends.
func (p peer) setPolicy(t *testing.T, operator bool, name, pattern string, priority int64, applyTo string, def map[string]any) {
	t.Helper()
	name, pattern = p.n(name), "^"+p.prefix+pattern
	js, _ := json.Marshal(def)
	path := "policies"
	if operator {
		path = "operator-policies"
	}
	if !p.rabbit {
		pol := index.Policy{VHost: "/", Name: name, Pattern: pattern, ApplyTo: applyTo, Priority: priority, Definition: js}
		var err error
		if operator {
			err = p.srv.PutOperatorPolicy(pol)
		} else {
			err = p.srv.PutPolicy(pol)
		}
		if err != nil {
			t.Fatalf("set policy: %v", err)
		}
		t.Cleanup(func() {
			if !p.srv.closing.Load() {
				p.srv.deletePolicy("/", name, operator)
			}
		})
		return
	}
	if p.api == "" {
		t.Skip("WARREN_TEST_RABBITMQ_API not set")
	}
	body, _ := json.Marshal(map[string]any{"pattern": pattern, "priority": priority, "apply-to": applyTo, "definition": json.RawMessage(js)})
	u := p.api + "/api/" + path + "/%2F/" + url.PathEscape(name)
	call := func(method string, body []byte) int {
		req, _ := http.NewRequest(method, u, bytes.NewReader(body))
		req.SetBasicAuth("guest", "guest")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("RabbitMQ API: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := call(http.MethodPut, body); code/100 != 2 {
		t.Fatalf("RabbitMQ refused the policy: %d", code)
	}
	t.Cleanup(func() { call(http.MethodDelete, nil) })
	time.Sleep(50 * time.Millisecond) // RabbitMQ applies policies asynchronously
}

// run runs fn as a subtest per peer.
func runPeers(t *testing.T, b *testBroker, fn func(t *testing.T, p peer)) {
	for _, p := range peers(t, b) {
		t.Run(p.name, func(t *testing.T) { fn(t, p) })
	}
}

// n returns the peer's name for a queue or exchange.
func (p peer) n(name string) string { return p.prefix + name }

func (p peer) dial(t *testing.T) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(p.url)
	if err != nil {
		t.Fatalf("%s: dial: %v", p.name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (p peer) channel(t *testing.T) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c := p.dial(t)
	ch, err := c.Channel()
	if err != nil {
		t.Fatalf("%s: channel: %v", p.name, err)
	}
	return c, ch
}

// declare declares a queue, to be deleted when the test ends.
func (p peer) declare(t *testing.T, ch *amqp.Channel, name string, durable bool, args amqp.Table) {
	t.Helper()
	if _, err := ch.QueueDeclare(p.n(name), durable, false, false, false, args); err != nil {
		t.Fatalf("%s: declare %s: %v", p.name, name, err)
	}
	p.cleanup(t, name, false)
}

// cleanup deletes a queue (or exchange) of the peer when the test ends.
func (p peer) cleanup(t *testing.T, name string, exchange bool) {
	t.Cleanup(func() {
		c, err := amqp.Dial(p.url)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			if exchange {
				ch.ExchangeDelete(p.n(name), false, false)
			} else {
				ch.QueueDelete(p.n(name), false, false, false)
			}
		}
	})
}

// tryDeclare declares a queue on a channel of its own and returns the
// error, deleting the queue if it was made.
func (p peer) tryDeclare(t *testing.T, name string, durable, autoDelete, exclusive bool, args amqp.Table) error {
	t.Helper()
	_, ch := p.channel(t)
	_, err := ch.QueueDeclare(p.n(name), durable, autoDelete, exclusive, false, args)
	if err == nil {
		ch.QueueDelete(p.n(name), false, false, false)
	}
	return err
}

// publishConfirmed publishes on a confirm channel and waits for each
// confirm, returning the acks (true) and nacks (false) in order.
func publishConfirmed(t *testing.T, ch *amqp.Channel, exchange, key string, msgs ...amqp.Publishing) []bool {
	t.Helper()
	var out []bool
	for _, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false, m)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		if err != nil {
			t.Fatalf("confirm: %v", err)
		}
		out = append(out, ok)
	}
	return out
}

// getAll drains a queue with basic.get (auto-ack) and returns the bodies.
func getAll(t *testing.T, ch *amqp.Channel, q string) []string {
	t.Helper()
	var out []string
	for {
		m, ok, err := ch.Get(q, true)
		if err != nil {
			t.Fatalf("get %s: %v", q, err)
		}
		if !ok {
			return out
		}
		out = append(out, string(m.Body))
	}
}

// waitReady waits until a queue holds n ready messages (RabbitMQ enqueues
// asynchronously; quorum queues later still).
func waitReady(t *testing.T, ch *amqp.Channel, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
		if err == nil && st.Messages == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d messages, want %d (%v)", q, st.Messages, n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
